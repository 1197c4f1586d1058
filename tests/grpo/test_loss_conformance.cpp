// SPDX-License-Identifier: Apache-2.0
// Conformance of KL estimators, agg_loss, verl policy losses and TRL GRPOTrainer._compute_loss
// against the peers' own outputs (/work/shared/conformance/grpo_peer_cases.json, float64).
// One SUBCASE per case id so a failure names the case.
#include <grpo/aggregate.hpp>
#include <grpo/kl.hpp>
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "support/shared_dir.hpp"

namespace {

/// Whether compute_loss would run the token rows for these options (token-level ratio, a kind of
/// the token rows): pass 1 then adds IS weights of 1 to force the general engine, as the entropy
/// input alone did before the token rows took it (IS weights of 1 are exact there: c = 1).
bool token_rows_config(const grpo::loss_options& o) {
  return o.policy.level == grpo::is_level::token && grpo::kind_traits_of(o.policy.kind).token_rows;
}

using json = nlohmann::json;

constexpr double kTol = 1e-10;        // losses, per-token losses, gradients (float64 peers)
constexpr double kMetricTol = 1e-12;  // verl metrics: float64, masked_mean's count + 1e-8 included

struct mat {
  grpo::index_t rows = 0, cols = 0;
  std::vector<double> v;
  [[nodiscard]] double operator()(grpo::index_t i, grpo::index_t t) const {
    return v[static_cast<std::size_t>(i * cols + t)];
  }
  [[nodiscard]] grpo::strided_view<const double, 2> view() const {
    return grpo::make_view(v.data(), {rows, cols});
  }
};

mat to_mat(const json& j) {
  mat m;
  if (j.is_array() && !j.empty() && j[0].is_array()) {
    m.rows = static_cast<grpo::index_t>(j.size());
    m.cols = static_cast<grpo::index_t>(j[0].size());
    for (const auto& row : j)
      for (const auto& x : row) m.v.push_back(x.get<double>());
  } else {  // rank 1: one row per element
    m.rows = static_cast<grpo::index_t>(j.size());
    m.cols = 1;
    for (const auto& x : j) m.v.push_back(x.get<double>());
  }
  return m;
}

const json& cases() {
  static const json all = [] {
    const std::string path = grpo_test::shared_path("conformance/grpo_peer_cases.json");
    std::ifstream f(path);
    REQUIRE_MESSAGE(f.good(), grpo_test::shared_missing(path));
    return json::parse(f);
  }();
  return all;
}

std::vector<const json*> cases_of(const std::string& prefix) {
  std::vector<const json*> out;
  for (const auto& c : cases())
    if (c["fn"].get<std::string>().rfind(prefix, 0) == 0) out.push_back(&c);
  return out;
}

void check_close(double got, double want, double tol, const std::string& what) {
  const double err = std::fabs(got - want);
  const double scale = std::fabs(want) > 1 ? std::fabs(want) : 1.0;
  CHECK_MESSAGE(err <= tol * scale, what << ": got " << got << " want " << want << " err " << err);
}

void check_mat(const std::vector<double>& got, const mat& want, const std::string& what,
               double tol = kTol) {
  REQUIRE(got.size() == want.v.size());
  double worst = 0;
  std::size_t at = 0;
  for (std::size_t k = 0; k < got.size(); ++k) {
    const double e = std::fabs(got[k] - want.v[k]);
    if (!(e <= worst)) {
      worst = e;
      at = k;
    }
  }
  CHECK_MESSAGE(worst <= tol, what << ": max abs error " << worst << " at flat index " << at
                                   << " (got " << got[at] << ", want " << want.v[at] << ")");
}

std::optional<double> opt_num(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  return j[key].get<double>();
}

}  // namespace

TEST_CASE("kl_penalty: verl estimators, values and gradients" * doctest::test_suite("loss")) {
  const auto cs = cases_of("kl_penalty");
  REQUIRE(cs.size() == 16);
  for (const json* cp : cs) {
    const json& c = *cp;
    SUBCASE(c["id"].get<std::string>().c_str()) {
      const auto name = c["options"]["kl_penalty"].get<std::string>();
      const grpo::kl_params p = grpo::kl_params_from_string(name);
      const mat lp = to_mat(c["inputs"]["logprob"]), lr = to_mat(c["inputs"]["ref_logprob"]);
      const mat m = to_mat(c["inputs"]["response_mask"]);
      std::vector<double> kl(lp.v.size()), g(lp.v.size());
      grpo::kl_penalty(p, lp.view(), lr.view(), grpo::make_view(kl.data(), {lp.rows, lp.cols}),
                       grpo::make_view(g.data(), {lp.rows, lp.cols}));
      check_mat(kl, to_mat(c["outputs"]["kl"]), "kl");
      check_mat(g, to_mat(c["outputs"]["grad_logprob_elementwise"]), "grad_logprob_elementwise");
      // token-mean of the KL and its gradient (chain: agg weight x elementwise gradient)
      std::vector<double> w(lp.v.size());
      grpo::agg_options ao;
      ao.mode = grpo::agg_mode::token_mean;
      const double loss =
          grpo::aggregate(grpo::make_view<const double>(kl.data(), {lp.rows, lp.cols}), m.view(),
                          ao, grpo::make_view(w.data(), {lp.rows, lp.cols}));
      check_close(loss, c["outputs"]["token_mean_loss"].get<double>(), kTol, "token_mean_loss");
      for (std::size_t k = 0; k < w.size(); ++k) w[k] *= g[k];
      check_mat(w, to_mat(c["outputs"]["grad_logprob_token_mean_loss"]), "grad token_mean_loss");
    }
  }
}

TEST_CASE("agg_loss: verl modes with global batch info" * doctest::test_suite("loss")) {
  const auto cs = cases_of("agg_loss");
  REQUIRE(cs.size() == 10);
  for (const json* cp : cs) {
    const json& c = *cp;
    SUBCASE(c["id"].get<std::string>().c_str()) {
      const json& o = c["options"];
      grpo::verl_args a;
      if (o.contains("dp_size")) a.dp_size = o["dp_size"].get<double>();
      a.batch_num_tokens = opt_num(o, "batch_num_tokens");
      a.global_batch_size = opt_num(o, "global_batch_size");
      a.loss_scale_factor = opt_num(o, "loss_scale_factor");
      const auto ao = grpo::verl_agg(o["loss_agg_mode"].get<std::string>(), a);
      const mat L = to_mat(c["inputs"]["loss_mat"]), M = to_mat(c["inputs"]["loss_mask"]);
      std::vector<double> g(L.v.size());
      const double loss =
          grpo::aggregate(L.view(), M.view(), ao, grpo::make_view(g.data(), {L.rows, L.cols}));
      check_close(loss, c["outputs"]["loss"].get<double>(), kTol, "loss");
      check_mat(g, to_mat(c["outputs"]["grad_loss_mat"]), "grad_loss_mat");
    }
  }
}

TEST_CASE("verl compute_policy_loss_*: loss, per-token loss, gradient, metrics" *
          doctest::test_suite("loss")) {
  const auto cs = cases_of("compute_policy_loss_");
  REQUIRE(cs.size() == 30);
  for (const json* cp : cs) {
    const json& c = *cp;
    SUBCASE(c["id"].get<std::string>().c_str()) {
      const std::string fn = c["fn"].get<std::string>();
      const std::string mode = fn.substr(std::string("compute_policy_loss_").size());
      const json& cfg = c["options"]["config"];
      grpo::verl_args a;
      a.loss_mode = mode;
      a.loss_agg_mode = c["options"]["loss_agg_mode"].get<std::string>();
      a.clip_ratio = cfg["clip_ratio"].get<double>();
      a.clip_ratio_low = opt_num(cfg, "clip_ratio_low");
      a.clip_ratio_high = opt_num(cfg, "clip_ratio_high");
      a.clip_ratio_c = cfg["clip_ratio_c"].get<double>();
      a.tau_pos = cfg["tau_pos"].get<double>();
      a.tau_neg = cfg["tau_neg"].get<double>();
      const auto opts = grpo::from_verl(a);
      const mat lo = to_mat(c["inputs"]["old_log_prob"]), lp = to_mat(c["inputs"]["log_prob"]);
      const mat A = to_mat(c["inputs"]["advantages"]), M = to_mat(c["inputs"]["response_mask"]);
      // Run twice: plain inputs (token-level fast path where it applies) and with an all-zero
      // entropy input (coefficient 0) and IS weights of 1, which force the general two-pass
      // engine (the entropy input alone no longer does: the token rows take it).
      const std::vector<double> zeros(lp.v.size(), 0.0), ones(lp.v.size(), 1.0);
      for (int pass = 0; pass < 2; ++pass) {
        CAPTURE(pass);
        grpo::loss_batch<double, double> bt;
        bt.logp = lp.view();
        bt.old_logp = lo.view();
        bt.advantages = A.view();
        bt.mask = M.view();
        if (pass == 1) bt.entropy = grpo::make_view(zeros.data(), {lp.rows, lp.cols});
        if (pass == 1 && !opts.tis.enabled && token_rows_config(opts))
          bt.is_weights = grpo::make_view(ones.data(), {lp.rows, lp.cols});
        const auto r = grpo::compute_loss(opts, bt);
        const json& out = c["outputs"];
        check_close(r.loss, out["loss"].get<double>(), kTol, "loss");
        if (mode == "geo_mean") {
          check_mat(r.per_seq_loss, to_mat(out["per_seq_loss"]), "per_seq_loss");
        } else {
          check_mat(r.per_token_loss, to_mat(out["per_token_loss"]), "per_token_loss");
        }
        check_mat(r.grad_logp, to_mat(out["grad_log_prob"]), "grad_log_prob");
        // verl's own metric values (verl_metrics: its per-mode indicators and masked_mean's
        // count + 1e-8), every one computed by the library from the engine's accumulators.
        const json& mt = out["metrics"];
        const auto vm = grpo::verl_metrics(a, r.metrics);
        check_close(vm.pg_clipfrac, mt["actor/pg_clipfrac"].get<double>(), kMetricTol,
                    "pg_clipfrac");
        check_close(vm.pg_clipfrac_lower, mt["actor/pg_clipfrac_lower"].get<double>(),
                    kMetricTol, "pg_clipfrac_lower");
        check_close(vm.ppo_kl, mt["actor/ppo_kl"].get<double>(), kMetricTol, "ppo_kl");
      }
    }
  }
}

TEST_CASE("TRL GRPOTrainer._compute_loss: every loss_type" * doctest::test_suite("loss")) {
  const auto cs = cases_of("GRPOTrainer._compute_loss");
  REQUIRE(cs.size() == 27);
  for (const json* cp : cs) {
    const json& c = *cp;
    SUBCASE(c["id"].get<std::string>().c_str()) {
      const json& o = c["options"];
      grpo::trl_args a;
      a.loss_type = o["loss_type"].get<std::string>();
      a.beta = o["beta"].get<double>();
      a.epsilon = o["epsilon"].get<double>();
      a.epsilon_high = opt_num(o, "epsilon_high");
      a.delta = opt_num(o, "delta");
      a.importance_sampling_level = o["importance_sampling_level"].get<std::string>();
      a.max_completion_length = o["max_completion_length"].get<double>();
      a.sapo_temperature_pos = o["sapo_temperature_pos"].get<double>();
      a.sapo_temperature_neg = o["sapo_temperature_neg"].get<double>();
      a.use_bias_correction_kl = o["use_bias_correction_kl"].get<bool>();
      a.off_policy_mask_threshold = opt_num(o, "off_policy_mask_threshold");
      a.num_items_in_batch = opt_num(o, "num_items_in_batch");
      a.num_processes = o["num_processes"].get<double>();
      a.gradient_accumulation_steps = o["gradient_accumulation_steps"].get<double>();
      if (o.contains("vespo_k_pos")) {
        a.vespo_k_pos = o["vespo_k_pos"].get<double>();
        a.vespo_lambda_pos = o["vespo_lambda_pos"].get<double>();
        a.vespo_k_neg = o["vespo_k_neg"].get<double>();
        a.vespo_lambda_neg = o["vespo_lambda_neg"].get<double>();
      }
      const auto opts = grpo::from_trl(a);
      const json& in = c["inputs"];
      const mat lp = to_mat(in["per_token_logps"]), lo = to_mat(in["old_per_token_logps"]);
      const mat adv = to_mat(in["advantages"]), M = to_mat(in["completion_mask"]);
      mat ref;
      if (in.contains("ref_per_token_logps")) ref = to_mat(in["ref_per_token_logps"]);
      grpo::loss_batch<double, double> b;
      b.logp = lp.view();
      b.old_logp = lo.view();
      if (!ref.v.empty()) b.ref_logp = ref.view();
      b.advantages = grpo::broadcast_rows(adv.v.data(), lp.rows, lp.cols);
      b.mask = M.view();
      // Run twice: plain (fast path where it applies) and with TRL's fake all-zero entropies
      // and IS weights of 1 (general engine; TRL's logged entropy metric is then checkable too).
      const std::vector<double> zeros(lp.v.size(), 0.0), ones(lp.v.size(), 1.0);
      for (int pass = 0; pass < 2; ++pass) {
        CAPTURE(pass);
        if (pass == 1) b.entropy = grpo::make_view(zeros.data(), {lp.rows, lp.cols});
        if (pass == 1 && !opts.tis.enabled && token_rows_config(opts))
          b.is_weights = grpo::make_view(ones.data(), {lp.rows, lp.cols});
        const auto r = grpo::compute_loss(opts, b);
        const json& out = c["outputs"];
        check_close(r.loss, out["loss"].get<double>(), kTol, "loss");
        mat ptl = to_mat(out["per_token_loss"]);
        if (ptl.cols == 1 && lp.cols != 1) {  // (B, 1) sequence-level loss: broadcast
          mat full{lp.rows, lp.cols, {}};
          for (grpo::index_t i = 0; i < lp.rows; ++i)
            for (grpo::index_t t = 0; t < lp.cols; ++t) full.v.push_back(ptl(i, 0));
          ptl = full;
        }
        check_mat(r.per_token_loss, ptl, "per_token_loss");
        check_mat(r.grad_logp, to_mat(out["grad_per_token_logps"]), "grad_per_token_logps");
        const json& mt = out["metrics"];
        const auto& m = r.metrics;
        auto metric = [&](const char* key, double got) {
          if (mt.contains(key)) check_close(got, mt[key][0].get<double>(), kTol, key);
        };
        metric("clip_ratio/low_mean", m.clip_low.mean());
        metric("clip_ratio/high_mean", m.clip_high.mean());
        metric("clip_ratio/region_mean", m.clip_region.mean());
        metric("clip_ratio/low_min", m.clip_low_seq.min);
        metric("clip_ratio/high_max", m.clip_high_seq.max);
        metric("cispo_clip_ratio", m.clip_high.mean());
        metric("vespo/phi_seq_mean", m.vespo_phi.mean());
        metric("kl", m.kl.mean());
        if (pass == 1) metric("entropy", m.entropy.mean());
      }
    }
  }
}

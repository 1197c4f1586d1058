// SPDX-License-Identifier: Apache-2.0
// Conformance with OpenRLHF's own outputs (/work/shared/conformance/openrlhf_peer_cases.json,
// OpenRLHF @ 3c3be62 run with torch 2.15 CPU in float64): PolicyLoss.forward through
// from_openrlhf + compute_loss and openrlhf_metrics, aggregate_loss through openrlhf_agg,
// compute_approx_kl and the actor's KL loss, and compute_advantages_and_returns. Every value and
// metric at 1e-10; where OpenRLHF casts to float32 the default (emulated) path is compared with
// `outputs` and the float64 option with `diag.float64_rerun`. One SUBCASE per case id.
#include <grpo/aggregate.hpp>
#include <grpo/loss.hpp>
#include <grpo/openrlhf.hpp>
#include <grpo/presets.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
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

constexpr double kTol = 1e-10;

struct mat {
  grpo::index_t rows = 0, cols = 0;
  std::vector<double> v;
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
  } else {
    m.rows = static_cast<grpo::index_t>(j.size());
    m.cols = 1;
    for (const auto& x : j) m.v.push_back(x.get<double>());
  }
  return m;
}

const json& cases() {
  static const json all = [] {
    const std::string path = grpo_test::shared_path("conformance/openrlhf_peer_cases.json");
    std::ifstream f(path);
    REQUIRE_MESSAGE(f.good(), grpo_test::shared_missing(path));
    return json::parse(f);
  }();
  return all;
}

std::vector<const json*> cases_of(const std::string& fn) {
  std::vector<const json*> out;
  for (const auto& c : cases())
    if (c["fn"].get<std::string>() == fn) out.push_back(&c);
  return out;
}

void check_close(double got, double want, const std::string& what) {
  const double err = std::fabs(got - want);
  const double scale = std::fabs(want) > 1 ? std::fabs(want) : 1.0;
  CHECK_MESSAGE(err <= kTol * scale, what << ": got " << got << " want " << want << " err " << err);
}

/// Max abs error over the positions where `where` (a mask, or null: all) is nonzero.
void check_mat(const std::vector<double>& got, const mat& want, const std::string& what,
               const mat* where = nullptr) {
  REQUIRE(got.size() == want.v.size());
  double worst = 0;
  std::size_t at = 0;
  for (std::size_t k = 0; k < got.size(); ++k) {
    if (where && where->v[k] == 0.0) continue;
    const double e = std::fabs(got[k] - want.v[k]);
    if (!(e <= worst)) {
      worst = e;
      at = k;
    }
  }
  CHECK_MESSAGE(worst <= kTol, what << ": max abs error " << worst << " at flat index " << at
                                    << " (got " << got[at] << ", want " << want.v[at] << ")");
}

std::optional<double> opt_num(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  return j[key].get<double>();
}

/// openrlhf_args from a case's options (PolicyLoss constructor + loss_batch_info names).
grpo::openrlhf_args policy_args(const json& o) {
  grpo::openrlhf_args a;
  a.actor.policy_loss_type = o["policy_loss_type"].get<std::string>();
  a.actor.eps_clip_low_high =
      std::array<double, 2>{o["clip_eps_low"].get<double>(), o["clip_eps_high"].get<double>()};
  a.actor.dual_clip = opt_num(o, "dual_clip");
  a.actor.token_level_loss = o["token_level_loss"].get<bool>();
  auto& ad = a.algo.advantage;
  ad.is_correction_enable = o["enable_vllm_is_correction"].get<bool>();
  if (!o["vllm_is_truncated_threshold"].is_null())
    ad.is_correction_threshold = {o["vllm_is_truncated_threshold"][0].get<double>(),
                                  o["vllm_is_truncated_threshold"][1].get<double>()};
  ad.is_correction_type = o["vllm_is_correction_type"].get<std::string>();
  a.dp_size = o["dp_size"].get<double>();
  a.batch_num_tokens = opt_num(o, "batch_num_tokens");
  a.global_batch_size = opt_num(o, "global_batch_size");
  return a;
}

}  // namespace

TEST_CASE("OpenRLHF PolicyLoss.forward: loss, per-token loss, gradient, metrics" *
          doctest::test_suite("loss")) {
  const auto cs = cases_of("PolicyLoss.forward");
  REQUIRE(cs.size() == 24);
  for (const json* cp : cs) {
    const json& c = *cp;
    SUBCASE(c["id"].get<std::string>().c_str()) {
      grpo::openrlhf_args a = policy_args(c["options"]);
      const auto opts = grpo::from_openrlhf(a);
      const json& in = c["inputs"];
      const mat lp = to_mat(in["log_probs"]), lo = to_mat(in["old_log_probs"]);
      const mat A = to_mat(in["advantages"]), M = to_mat(in["action_mask"]);
      mat ls;
      if (in.contains("rollout_log_probs")) ls = to_mat(in["rollout_log_probs"]);
      const bool gspo = a.actor.policy_loss_type == "gspo";
      const std::vector<double> zeros(lp.v.size(), 0.0), ones(lp.v.size(), 1.0);
      // Pass 0: the engine compute_loss picks (token fast path / sequence path / general);
      // pass 1: an all-zero entropy input (coefficient 0) and IS weights of 1 force the general
      // engine (the entropy input alone no longer does: the token rows take it).
      for (int pass = 0; pass < 2; ++pass) {
        CAPTURE(pass);
        grpo::loss_batch<double, double> b;
        b.logp = lp.view();
        b.old_logp = lo.view();
        b.advantages = A.view();
        b.mask = M.view();
        if (!ls.v.empty()) b.sampler_logp = ls.view();
        if (pass == 1) b.entropy = grpo::make_view(zeros.data(), {lp.rows, lp.cols});
        if (pass == 1 && !opts.tis.enabled && token_rows_config(opts))
          b.is_weights = grpo::make_view(ones.data(), {lp.rows, lp.cols});
        const auto r = grpo::compute_loss(opts, b);
        const json& out = c["outputs"];
        check_close(r.loss, out["loss"].get<double>(), "loss");
        // OpenRLHF's GSPO ratio is multiplied by the mask, so its per-token loss at padding is
        // -min(0, clip(0) A): compared on valid tokens only (it never reaches loss or gradient).
        check_mat(r.per_token_loss, to_mat(out["per_token_loss"]), "per_token_loss",
                  gspo ? &M : nullptr);
        check_mat(r.grad_logp, to_mat(out["grad_log_probs"]), "grad_log_probs");
        // The preset's approx_kl is OpenRLHF's ppo_kl (unclamped, against old_log_probs even
        // where GSPO's ratio base is the sampler).
        check_close(r.metrics.approx_kl.mean(), out["metrics"]["ppo_kl"].get<double>(),
                    "approx_kl (ppo_kl)");
      }
      grpo::loss_batch<double, double> b;
      b.logp = lp.view();
      b.old_logp = lo.view();
      b.advantages = A.view();
      b.mask = M.view();
      if (!ls.v.empty()) b.sampler_logp = ls.view();
      const json& mt = c["outputs"]["metrics"];
      const auto m = grpo::openrlhf_metrics(a, b);
      check_close(m.clip_ratio, mt["clip_ratio"].get<double>(), "clip_ratio");
      check_close(m.ppo_kl, mt["ppo_kl"].get<double>(), "ppo_kl");
      CHECK(m.vllm_kl.has_value() == mt.contains("vllm_kl"));
      if (mt.contains("vllm_kl") && m.vllm_kl)
        check_close(*m.vllm_kl, mt["vllm_kl"].get<double>(), "vllm_kl");
      // The float64 option gives the formula's value (OpenRLHF re-run with .float() -> float64).
      const json& d = c["diag"];
      if (d.contains("float64_rerun") && d["float64_rerun"].contains("metrics")) {
        a.emulate_float32 = false;
        const auto m64 = grpo::openrlhf_metrics(a, b);
        check_close(m64.clip_ratio, d["float64_rerun"]["metrics"]["clip_ratio"].get<double>(),
                    "clip_ratio (float64)");
      }
    }
  }
}

TEST_CASE("OpenRLHF PolicyLoss options: the preset's approx_kl is the unclamped ppo_kl" *
          doctest::test_suite("loss")) {
  // Case 010 has log ratios of +-25 on valid tokens: OpenRLHF's ppo_kl averages the raw values
  // (the preset's approx_kl_unclamped), our default approx_kl the clamped ones (+-20).
  const json* c = nullptr;
  for (const json* cp : cases_of("PolicyLoss.forward"))
    if ((*cp)["id"] == "PolicyLoss.forward-010") c = cp;
  REQUIRE(c != nullptr);
  const grpo::openrlhf_args a = policy_args((*c)["options"]);
  const json& in = (*c)["inputs"];
  const mat lp = to_mat(in["log_probs"]), lo = to_mat(in["old_log_probs"]);
  const mat A = to_mat(in["advantages"]), M = to_mat(in["action_mask"]);
  grpo::loss_batch<double, double> b;
  b.logp = lp.view();
  b.old_logp = lo.view();
  b.advantages = A.view();
  b.mask = M.view();
  const auto r = grpo::compute_loss(grpo::from_openrlhf(a), b);
  const double want = (*c)["outputs"]["metrics"]["ppo_kl"].get<double>();
  check_close(grpo::openrlhf_metrics(a, b).ppo_kl, want, "ppo_kl");
  check_close(r.metrics.approx_kl.mean(), want, "approx_kl (preset)");
  auto ours = grpo::from_openrlhf(a);
  ours.approx_kl_unclamped = false;
  CHECK(std::fabs(grpo::compute_loss(ours, b).metrics.approx_kl.mean() - want) > 1e-3);
}

TEST_CASE("OpenRLHF aggregate_loss" * doctest::test_suite("loss")) {
  const auto cs = cases_of("aggregate_loss");
  REQUIRE(cs.size() == 4);
  for (const json* cp : cs) {
    const json& c = *cp;
    SUBCASE(c["id"].get<std::string>().c_str()) {
      const json& o = c["options"];
      grpo::openrlhf_args a;
      a.dp_size = o["dp_size"].get<double>();
      a.batch_num_tokens = opt_num(o, "batch_num_tokens");
      a.global_batch_size = opt_num(o, "global_batch_size");
      const auto ao = grpo::openrlhf_agg(o["token_level_loss"].get<bool>(), a);
      const mat L = to_mat(c["inputs"]["loss_mat"]), M = to_mat(c["inputs"]["loss_mask"]);
      std::vector<double> g(L.v.size());
      const double loss =
          grpo::aggregate(L.view(), M.view(), ao, grpo::make_view(g.data(), {L.rows, L.cols}));
      check_close(loss, c["outputs"]["loss"].get<double>(), "loss");
      check_mat(g, to_mat(c["outputs"]["grad_loss_mat"]), "grad_loss_mat");
    }
  }
}

TEST_CASE("OpenRLHF compute_approx_kl and the actor's KL loss (float32 and float64)" *
          doctest::test_suite("loss")) {
  const auto cs = cases_of("compute_approx_kl");
  REQUIRE(cs.size() == 6);
  for (const json* cp : cs) {
    const json& c = *cp;
    SUBCASE(c["id"].get<std::string>().c_str()) {
      const json& o = c["options"];
      const mat lp = to_mat(c["inputs"]["log_probs"]), lb = to_mat(c["inputs"]["log_probs_base"]);
      const mat M = to_mat(c["inputs"]["action_mask"]);
      grpo::openrlhf_args a;
      a.algo.kl.estimator = o["kl_estimator"].get<std::string>();
      a.batch_num_tokens = opt_num(o, "batch_num_tokens");
      a.global_batch_size = opt_num(o, "global_batch_size");
      const auto e = grpo::kl_params_from_string(a.algo.kl.estimator, false).estimator;
      for (const bool f32 : {true, false}) {
        CAPTURE(f32);
        const json& out = f32 ? c["outputs"] : c["diag"]["float64_rerun"];
        a.emulate_float32 = f32;
        std::vector<double> kl(lp.v.size()), g(lp.v.size()), gl(lp.v.size());
        grpo::openrlhf_approx_kl(e, lp.view(), lb.view(),
                                 grpo::make_view(kl.data(), {lp.rows, lp.cols}),
                                 grpo::make_view(g.data(), {lp.rows, lp.cols}), f32);
        check_mat(kl, to_mat(out["kl"]), "kl");
        // k1's gradient is 1 in both precisions, so the re-run does not list it.
        check_mat(g,
                  to_mat(out.contains("grad_log_probs_elementwise")
                             ? out["grad_log_probs_elementwise"]
                             : c["outputs"]["grad_log_probs_elementwise"]),
                  "grad_log_probs_elementwise");
        const double loss = grpo::openrlhf_kl_loss(a, lp.view(), lb.view(), M.view(),
                                                   grpo::make_view(gl.data(), {lp.rows, lp.cols}));
        check_close(loss, out["kl_loss"].get<double>(), "kl_loss");
        check_mat(gl, to_mat(out["grad_kl_loss"]), "grad_kl_loss");
      }
    }
  }
}

TEST_CASE("OpenRLHF compute_advantages_and_returns (float32 and float64)" *
          doctest::test_suite("advantage")) {
  const auto cs = cases_of("RemoteExperienceMaker.compute_advantages_and_returns");
  REQUIRE(cs.size() == 17);
  for (const json* cp : cs) {
    const json& c = *cp;
    SUBCASE(c["id"].get<std::string>().c_str()) {
      const json& o = c["options"];
      const json& in = c["inputs"];
      grpo::openrlhf_args a;
      a.algo.advantage.estimator = o["estimator"].get<std::string>();
      a.rollout.n_samples_per_prompt = o["n_samples_per_prompt"].get<grpo::index_t>();
      a.algo.advantage.gamma = o["gamma"].get<double>();
      a.algo.advantage.lambd = o["lambd"].get<double>();
      a.algo.advantage.no_std_norm = o["no_std_norm"].get<bool>();
      a.reward.clip_range = std::array<double, 2>{o["reward_clip_range"][0].get<double>(),
                                                  o["reward_clip_range"][1].get<double>()};
      a.algo.kl.init_coef = o["kl_coef"].get<double>();
      const bool has_kl = !o["kl_estimator"].is_null();
      if (has_kl) a.algo.kl.estimator = o["kl_estimator"].get<std::string>();
      const mat R = to_mat(in["rewards"]), M = to_mat(in["action_mask"]);
      std::vector<std::int64_t> index;
      for (const auto& x : in["index"]) index.push_back(x.get<std::int64_t>());
      mat V, lp, lb;
      if (in.contains("values")) V = to_mat(in["values"]);
      if (has_kl) {
        lp = to_mat(in["action_log_probs"]);
        lb = to_mat(in["base_action_log_probs"]);
      }
      const bool has_rerun = c["diag"].contains("float64_rerun");
      for (const bool f32 : {true, false}) {
        CAPTURE(f32);
        a.emulate_float32 = f32;
        // The KL of the experience: OpenRLHF's compute_approx_kl (float32: the file's `kl` input).
        std::vector<double> kl(M.v.size(), 0.0), dummy(M.v.size());
        if (has_kl) {
          grpo::openrlhf_approx_kl(
              grpo::kl_params_from_string(a.algo.kl.estimator, false).estimator, lp.view(),
              lb.view(), grpo::make_view(kl.data(), {M.rows, M.cols}),
              grpo::strided_view<double, 2>{}, f32);
          if (f32) check_mat(kl, to_mat(in["kl"]), "kl input");
        }
        std::vector<double> adv(M.v.size()), ret(M.v.size());
        const auto st = grpo::compute_openrlhf_advantages(
            a, grpo::make_view<const double>(R.v.data(), {R.rows}),
            std::span<const std::int64_t>(index), M.view(),
            has_kl ? grpo::make_view<const double>(kl.data(), {M.rows, M.cols})
                   : grpo::strided_view<const double, 2>{},
            V.v.empty() ? grpo::strided_view<const double, 2>{} : V.view(),
            grpo::make_view(adv.data(), {M.rows, M.cols}),
            grpo::make_view(ret.data(), {M.rows, M.cols}));
        const json& want = (f32 || !has_rerun) ? c["outputs"] : c["diag"]["float64_rerun"];
        const json& adv_want =
            want.contains("advantages") ? want["advantages"] : c["outputs"]["advantages"];
        const json& ret_want = want.contains("returns") ? want["returns"] : c["outputs"]["returns"];
        check_mat(adv, to_mat(adv_want), "advantages");
        check_mat(ret, to_mat(ret_want), "returns");
        const mat sd = to_mat(c["outputs"]["metrics"]["group_reward_std"]);
        check_mat(st.group_reward_std, sd, "group_reward_std");
      }
    }
  }
}

TEST_CASE("OpenRLHF options: names, rejections, presets" * doctest::test_suite("loss")) {
  grpo::openrlhf_args a;
  a.actor.policy_loss_type = "cispo";
  CHECK_THROWS_WITH_AS(grpo::from_openrlhf(a), doctest::Contains("policy_loss_type"), grpo::error);
  a = {};
  a.actor.dual_clip = 1.0;
  CHECK_THROWS_WITH_AS(grpo::from_openrlhf(a), doctest::Contains("dual_clip"), grpo::error);
  a = {};
  a.algo.advantage.is_correction_type = "seq-tis";
  CHECK_THROWS_WITH_AS(grpo::from_openrlhf(a), doctest::Contains("is_correction_type"),
                       grpo::error);
  a = {};
  a.algo.kl.estimator = "abs";
  CHECK_THROWS_WITH_AS(grpo::from_openrlhf(a), doctest::Contains("kl.estimator"), grpo::error);
  // Defaults: ppo, eps 0.2, clamp +-20, token mean, KL out of the loss.
  const auto o = grpo::preset("openrlhf");
  CHECK(o.policy.eps_low == 0.2);
  CHECK(o.policy.log_ratio_max == 20.0);
  CHECK(o.agg.mode == grpo::agg_mode::token_mean);
  CHECK(o.kl_coef == 0.0);
  const auto g = grpo::preset("openrlhf_gspo");
  CHECK(g.policy.level == grpo::is_level::sequence);
  CHECK(g.agg.mode == grpo::agg_mode::seq_mean_token_mean);
  // KL as a loss: coefficient init_coef, token-level aggregation even for gspo.
  a = {};
  a.actor.policy_loss_type = "gspo";
  a.algo.kl.use_loss = true;
  a.algo.kl.estimator = "k3";
  const auto k = grpo::from_openrlhf(a);
  CHECK(k.kl_coef == 0.01);
  REQUIRE(k.kl_agg.has_value());
  CHECK(k.kl_agg->mode == grpo::agg_mode::token_mean);
  CHECK(k.kl.outer_clamp == 10.0);
  // Group estimators need n > 1; gae needs values.
  a = {};
  a.algo.advantage.estimator = "group_norm";
  const std::vector<double> r{1, 0}, m{1, 1}, z(2);
  std::vector<double> o1(2), o2(2);
  auto call = [&] {
    return grpo::compute_openrlhf_advantages(
        a, grpo::make_view<const double>(r.data(), {2}), {}, grpo::make_view(m.data(), {2, 1}),
        grpo::strided_view<const double, 2>{}, grpo::strided_view<const double, 2>{},
        grpo::make_view(o1.data(), {2, 1}), grpo::make_view(o2.data(), {2, 1}));
  };
  CHECK_THROWS_WITH_AS(call(), doctest::Contains("n_samples_per_prompt"), grpo::error);
  a.algo.advantage.estimator = "gae";
  CHECK_THROWS_WITH_AS(call(), doctest::Contains("values"), grpo::error);
  a.algo.advantage.estimator = "reinforce";
  a.reward.clip_range = std::array<double, 2>{1.0, -1.0};
  CHECK_THROWS_WITH_AS(call(), doctest::Contains("clip_range"), grpo::error);
  // seq_mask is refused with VESPO; the sampler base excludes an IS weight and needs sampler_logp.
  grpo::loss_options v;
  v.policy.kind = grpo::policy_loss_kind::vespo;
  v.tis.enabled = true;
  v.tis.c_max = 2.0;
  v.tis.seq_mask = true;
  CHECK_THROWS_WITH_AS(grpo::validate(v), doctest::Contains("seq_mask"), grpo::error);
  grpo::openrlhf_args gs;
  gs.actor.policy_loss_type = "gspo";
  gs.algo.advantage.is_correction_enable = true;
  grpo::loss_options w = grpo::from_openrlhf(gs);
  CHECK(w.ratio_base_sampler);
  CHECK_FALSE(w.tis.enabled);
  w.tis.enabled = true;
  w.tis.c_max = 2.0;
  CHECK_THROWS_WITH_AS(grpo::validate(w), doctest::Contains("ratio_base_sampler"), grpo::error);
  const std::vector<double> lp1{-1, -1}, A1{1, 1}, m1{1, 1};
  grpo::loss_batch<double, double> b1;
  b1.logp = grpo::make_view(lp1.data(), {1, 2});
  b1.old_logp = b1.logp;
  b1.advantages = grpo::make_view(A1.data(), {1, 2});
  b1.mask = grpo::make_view(m1.data(), {1, 2});
  CHECK_THROWS_WITH_AS(grpo::compute_loss(grpo::from_openrlhf(gs), b1),
                       doctest::Contains("sampler_logp"), grpo::error);
}

TEST_CASE("seq-mask-tis: hand-computed row filter and unbounded token weight" *
          doctest::test_suite("loss")) {
  // Two rows, on-policy ratio 1 (lp = lo), A = 1, token-mean: l_t = -rho_t A, rho_t = exp(lo - ls).
  // Row 0: lo - ls = (0.1, -0.1) -> geometric mean exp(0) = 1 in [0.5, 2]: kept, weights e^0.1,
  // e^-0.1 (unbounded although e^0.1 > nothing binds here). Row 1: lo - ls = (1, 1) -> mean e^1 =
  // 2.718 > 2: dropped (weight 0, still counted in the denominator).
  const std::vector<double> lp{-1, -1, -1, -1}, A{1, 1, 1, 1}, m{1, 1, 1, 1};
  const std::vector<double> ls{-1.1, -0.9, -2, -2};
  grpo::openrlhf_args a;
  a.algo.advantage.is_correction_enable = true;
  a.algo.advantage.is_correction_threshold = {0.5, 2.0};
  a.algo.advantage.is_correction_type = "seq-mask-tis";
  grpo::loss_batch<double, double> b;
  b.logp = grpo::make_view(lp.data(), {2, 2});
  b.old_logp = b.logp;
  b.advantages = grpo::make_view(A.data(), {2, 2});
  b.mask = grpo::make_view(m.data(), {2, 2});
  b.sampler_logp = grpo::make_view(ls.data(), {2, 2});
  const auto r = grpo::compute_loss(grpo::from_openrlhf(a), b);
  const double want = -(std::exp(0.1) + std::exp(-0.1)) / 4.0;
  CHECK(r.loss == doctest::Approx(want).epsilon(1e-15));
  CHECK(r.per_token_loss[2] == 0.0);
  CHECK(r.grad_logp[0] == doctest::Approx(-std::exp(0.1) / 4.0).epsilon(1e-15));
  CHECK(r.grad_logp[3] == 0.0);
  // Narrowing the band to [0.5, 0.9] drops row 0 too.
  a.algo.advantage.is_correction_threshold = {0.5, 0.9};
  CHECK(grpo::compute_loss(grpo::from_openrlhf(a), b).loss == 0.0);
}

TEST_CASE("no_std_norm in the generic estimator: whiten_options::center_only" *
          doctest::test_suite("advantage")) {
  // OpenRLHF reinforce_baseline with no_std_norm (case 009, no KL, gamma 1): A_it = a_i - mu at the
  // valid tokens, mu the token-weighted mean of a_i = R_i - mean_g. compute_advantages with
  // openrlhf_reinforce_baseline() and center_only gives the per-sequence a_i - mu: compared with
  // OpenRLHF's float64 re-run at the valid tokens.
  const json* c = nullptr;
  for (const json* cp : cases_of("RemoteExperienceMaker.compute_advantages_and_returns"))
    if ((*cp)["id"] == "compute_advantages_and_returns-009") c = cp;
  REQUIRE(c != nullptr);
  REQUIRE((*c)["options"]["no_std_norm"].get<bool>());
  const json& in = (*c)["inputs"];
  const mat R = to_mat(in["rewards"]), M = to_mat(in["action_mask"]);
  const auto n = (*c)["options"]["n_samples_per_prompt"].get<std::int64_t>();
  std::vector<std::int64_t> gid;
  for (const auto& x : in["index"]) gid.push_back(x.get<std::int64_t>() / n);
  auto o = grpo::advantage_options::openrlhf_reinforce_baseline();
  o.whiten.center_only = true;
  std::vector<double> a(static_cast<std::size_t>(R.rows));
  grpo::compute_advantages(std::span<const double>(R.v), grpo::group_spec::ids(gid), M.view(),
                           std::span<double>(a), o);
  std::vector<double> tok(M.v.size());
  for (grpo::index_t i = 0; i < M.rows; ++i)
    for (grpo::index_t t = 0; t < M.cols; ++t)
      tok[static_cast<std::size_t>(i * M.cols + t)] = a[static_cast<std::size_t>(i)];
  check_mat(tok, to_mat((*c)["diag"]["float64_rerun"]["advantages"]), "advantages", &M);
  // Without center_only the same call divides by the biased std: different values.
  o.whiten.center_only = false;
  std::vector<double> b(a.size());
  grpo::compute_advantages(std::span<const double>(R.v), grpo::group_spec::ids(gid), M.view(),
                           std::span<double>(b), o);
  CHECK(std::fabs(b[0] - a[0]) > 1e-3);
}

TEST_CASE("torch float32 sum order (the emulation's reduction)" * doctest::test_suite("loss")) {
  // Integers sum exactly in any order: every element is read exactly once, for sizes on both sides
  // of the scalar / vector switch (8), the ilp groups (32) and the cascade levels (16 rows of 32).
  for (const std::size_t n :
       {0u, 1u, 3u, 4u, 7u, 8u, 9u, 31u, 32u, 33u, 127u, 511u, 512u, 513u, 2053u, 16411u, 20000u}) {
    std::vector<float> x(n);
    double exact = 0;
    for (std::size_t k = 0; k < n; ++k)
      exact += x[k] = static_cast<float>(static_cast<int>(k % 7) - 2);
    CHECK(static_cast<double>(grpo::detail::torch_cpu_sum_f32(x.data(), n)) == exact);
  }
  // Hand-computed orders (2^24 + 1 rounds back to 2^24 in float).
  const float big = 16777216.0f;
  // n = 12: the 4 tail elements first (4), then the 8 lanes: 4 + 2^24 exact, each later + 1 lost.
  std::vector<float> v(12, 1.0f);
  v[0] = big;
  CHECK(grpo::detail::torch_cpu_sum_f32(v.data(), v.size()) == big + 4.0f);
  // n = 5 (scalar path): acc = (1, 1, 1, 1), the tail 2^24 into acc0 (1 lost), then + 1 three
  // times, each lost: 2^24 (a left-to-right sum gives 2^24 + 4).
  std::vector<float> s = {1, 1, 1, 1, big};
  CHECK(grpo::detail::torch_cpu_sum_f32(s.data(), s.size()) == big);
}

// ---- in-loss KL through compute_loss (algo.kl.use_loss) ----------------------------------------

namespace {

/// A batch for the in-loss KL tests: lp, old, ref, A, mask as [B, T] row-major vectors.
struct kl_batch {
  grpo::index_t B = 0, T = 0;
  std::vector<double> lp, lo, lr, A, M;
  [[nodiscard]] grpo::loss_batch<double, double> batch() const {
    grpo::loss_batch<double, double> b;
    b.logp = grpo::make_view(lp.data(), {B, T});
    b.old_logp = grpo::make_view(lo.data(), {B, T});
    b.ref_logp = grpo::make_view(lr.data(), {B, T});
    b.advantages = grpo::make_view(A.data(), {B, T});
    b.mask = grpo::make_view(M.data(), {B, T});
    return b;
  }
};

/// Deterministic inputs: log ratios lp - lr spread over [-spread, spread] (spread 6 makes k3 pass
/// the +-10 clamp for lp - lr < -2.6), right padding, one empty row.
kl_batch make_kl_batch(grpo::index_t B, grpo::index_t T, double spread, bool per_row_adv) {
  kl_batch k;
  k.B = B;
  k.T = T;
  for (grpo::index_t i = 0; i < B; ++i) {
    const grpo::index_t n = i == 1 ? 0 : T - (i % 3);
    for (grpo::index_t t = 0; t < T; ++t) {
      const double u = std::sin(0.7 * static_cast<double>(i * T + t) + 0.3);
      const double v = std::cos(1.3 * static_cast<double>(i * T + t) + 0.1);
      k.lp.push_back(-1.0 - 0.8 * std::fabs(v));
      k.lo.push_back(k.lp.back() + 0.15 * u);
      k.lr.push_back(k.lp.back() - spread * u * std::fabs(v) - 0.01 * v);
      k.A.push_back(per_row_adv ? 0.9 - 0.4 * static_cast<double>(i) : v);
      k.M.push_back(t < n ? 1.0 : 0.0);
    }
  }
  return k;
}

/// OpenRLHF's actor KL written from its source independently of the library's estimator code:
/// log_ratio = float(lp) - float(lr); k1 x, k2 x**2 / 2.0, k3 (-x).exp() - 1 + x (float ops,
/// exp rounded once to float), clamp(-10, 10); kl_loss = (kl * mask).sum() / N * dp (the sum in
/// torch's order: detail::torch_cpu_sum_f32, tested on its own above); the gradient of
/// kl_loss * coef by float32 autograd: g = fl(fl(fl(coef) fl(dp)) / fl(N)) on valid tokens, then
/// k1: g; k2: fl(fl(g / 2) fl(2 x)); k3: fl(g - fl(g exp(-x))); 0 where the clamp is active.
struct kl32_ref {
  double kl_loss = 0, term = 0;
  std::vector<double> kl, grad;
};
kl32_ref openrlhf_kl32_by_hand(const kl_batch& k, const std::string& est, double coef, double dp,
                               double N) {
  kl32_ref r;
  auto f = [](double x) { return static_cast<float>(x); };
  std::vector<float> prod;
  const float g = f(static_cast<double>(f(coef) * f(dp)) / static_cast<double>(f(N)));
  for (std::size_t j = 0; j < k.lp.size(); ++j) {
    const float x = f(k.lp[j]) - f(k.lr[j]);
    float v = 0, gx = 0;
    if (est == "k1") {
      v = x;
      gx = g;
    } else if (est == "k2") {
      v = f(static_cast<double>(x) * x) / 2.0f;
      gx = f(static_cast<double>(g / 2.0f) * (2.0f * x));
    } else {
      const float e = f(std::exp(-static_cast<double>(x)));
      v = (e - 1.0f) + x;
      gx = g - f(static_cast<double>(g) * e);
    }
    const bool flat = v < -10.0f || v > 10.0f;
    v = std::min(10.0f, std::max(-10.0f, v));
    r.kl.push_back(v);
    r.grad.push_back(k.M[j] != 0.0 && !flat ? gx : 0.0f);
    prod.push_back(k.M[j] != 0.0 ? v : 0.0f);
  }
  const float l = grpo::detail::torch_cpu_sum_f32(prod.data(), prod.size()) / f(N);
  r.kl_loss = static_cast<float>(static_cast<double>(l) * static_cast<double>(f(dp)));
  r.term = f(r.kl_loss * static_cast<double>(f(coef)));
  return r;
}

grpo::openrlhf_args kl_args(const std::string& est, double coef, bool f32) {
  grpo::openrlhf_args a;
  a.algo.kl.use_loss = true;
  a.algo.kl.init_coef = coef;
  a.algo.kl.estimator = est;
  a.emulate_float32 = f32;
  return a;
}

}  // namespace

TEST_CASE("OpenRLHF in-loss KL through compute_loss: compute_approx_kl cases" *
          doctest::test_suite("loss")) {
  // The file's KL-loss cases through compute_loss: zero advantages make the policy term and its
  // gradient 0, so loss = kl_loss (coefficient 1) and grad_logp = the KL loss's gradient. Float32
  // emulation against `outputs`, the float64 option against `diag.float64_rerun`.
  const auto cs = cases_of("compute_approx_kl");
  REQUIRE(cs.size() == 6);
  for (const json* cp : cs) {
    const json& c = *cp;
    SUBCASE(c["id"].get<std::string>().c_str()) {
      const json& o = c["options"];
      const mat lp = to_mat(c["inputs"]["log_probs"]), lb = to_mat(c["inputs"]["log_probs_base"]);
      const mat M = to_mat(c["inputs"]["action_mask"]);
      const std::vector<double> zeros(lp.v.size(), 0.0);
      for (const bool f32 : {true, false}) {
        CAPTURE(f32);
        grpo::openrlhf_args a = kl_args(o["kl_estimator"].get<std::string>(), 1.0, f32);
        a.batch_num_tokens = opt_num(o, "batch_num_tokens");
        const auto opts = grpo::from_openrlhf(a);
        CHECK(opts.kl_openrlhf_float32 == f32);
        grpo::loss_batch<double, double> b;
        b.logp = lp.view();
        b.old_logp = lp.view();
        b.ref_logp = lb.view();
        b.advantages = grpo::make_view(zeros.data(), {lp.rows, lp.cols});
        b.mask = M.view();
        const auto r = grpo::compute_loss(opts, b);
        const json& out = f32 ? c["outputs"] : c["diag"]["float64_rerun"];
        check_close(r.kl_loss, out["kl_loss"].get<double>(), "kl_loss");
        check_close(r.loss, out["kl_loss"].get<double>(), "loss");
        check_mat(r.grad_logp, to_mat(out["grad_kl_loss"]), "grad_kl_loss");
        // metrics.kl: the valid tokens' KL values (float32 when emulated).
        const mat kl = to_mat(out["kl"]);
        double s = 0, n = 0;
        for (std::size_t j = 0; j < kl.v.size(); ++j)
          if (M.v[j] != 0.0) {
            s += kl.v[j];
            n += 1;
          }
        check_close(r.metrics.kl.mean(), s / n, "metrics.kl");
      }
    }
  }
}

TEST_CASE("OpenRLHF in-loss KL: float32 emulation vs a float32 re-computation, float64 vs naive" *
          doctest::test_suite("loss")) {
  // Policy term on (ppo, per-token A), coefficient 0.37, dp 3 with batch_num_tokens, and the
  // local masked mean. The policy part is compute_loss without the KL; the KL part is the
  // by-hand float32 graph (emulation) or the naive double formula (emulation off).
  // Coefficients and global counts where OpenRLHF's chain fl(fl(coef dp) / N) and other orders
  // (fl(coef fl(dp / N))) round differently, so the test sees the order (checked below).
  bool order_matters = false;
  for (const double coef : {0.37, 0.011, 0.29})
    for (const double extra : {7.0, 11.0, 1000.0})
      for (const std::string est : {"k1", "k2", "k3"})
        for (const bool global : {false, true}) {
          CAPTURE(coef);
          CAPTURE(extra);
          CAPTURE(est);
          CAPTURE(global);
          const kl_batch k = make_kl_batch(5, 13, 6.0, false);
          double count = 0;
          for (const double m : k.M) count += m;
          for (const bool f32 : {true, false}) {
            CAPTURE(f32);
            grpo::openrlhf_args a = kl_args(est, coef, f32);
            if (global) {
              a.dp_size = 3;  // (not a power of 2: fl(coef dp) rounds, so the chain order shows)
              a.batch_num_tokens = count + extra;
            }
            const double N = global ? count + extra : count, dp = global ? 3.0 : 1.0;
            {
              const auto f = [](double x) { return static_cast<float>(x); };
              const float ours = f(static_cast<double>(f(coef) * f(dp)) / f(N));
              const float other =
                  f(static_cast<double>(f(coef)) * f(static_cast<double>(f(dp)) / f(N)));
              order_matters = order_matters || ours != other;
            }
            const auto opts = grpo::from_openrlhf(a);
            const auto r = grpo::compute_loss(opts, k.batch());
            auto pol_opts = opts;
            pol_opts.kl_coef = 0.0;
            const auto p = grpo::compute_loss(pol_opts, k.batch());
            CHECK(r.policy_loss == p.policy_loss);
            if (f32) {
              const kl32_ref h = openrlhf_kl32_by_hand(k, est, coef, dp, N);
              CHECK(r.kl_loss == h.kl_loss);
              CHECK(r.loss == p.policy_loss + h.term);
              for (std::size_t j = 0; j < k.lp.size(); ++j) {
                CHECK(r.grad_logp[j] == p.grad_logp[j] + h.grad[j]);
                CHECK(r.per_token_loss[j] == p.per_token_loss[j] + coef * h.kl[j]);
              }
            } else {
              // Naive double: kl_loss = sum m clamp(k(x), +-10) / N * dp; grad coef dp / N k'(x).
              double s = 0;
              std::vector<double> gk(k.lp.size(), 0.0);
              for (std::size_t j = 0; j < k.lp.size(); ++j) {
                const double x = k.lp[j] - k.lr[j];
                double v = x, d = 1;
                if (est == "k2") {
                  v = 0.5 * x * x;
                  d = x;
                } else if (est == "k3") {
                  v = std::exp(-x) - 1 + x;
                  d = 1 - std::exp(-x);
                }
                if (v > 10 || v < -10) d = 0;
                v = std::min(10.0, std::max(-10.0, v));
                s += k.M[j] * v;
                gk[j] = k.M[j] * coef * dp / N * d;
              }
              CHECK(r.kl_loss == doctest::Approx(s / N * dp).epsilon(1e-14));
              for (std::size_t j = 0; j < k.lp.size(); ++j)
                CHECK(r.grad_logp[j] == doctest::Approx(p.grad_logp[j] + gk[j]).epsilon(1e-13));
            }
          }
        }
  CHECK(order_matters);
}

TEST_CASE("OpenRLHF in-loss KL: gradient vs finite differences of the float64 path" *
          doctest::test_suite("loss")) {
  // Central differences of the float64 loss (emulation off; h = 1e-6, away from the clamp's
  // kinks) against its analytic gradient (1e-7) and against the float32 emulation's gradient,
  // which may differ by float32 rounding only (1e-6 relative to the largest entry).
  for (const std::string est : {"k1", "k2", "k3"}) {
    CAPTURE(est);
    kl_batch k = make_kl_batch(3, 7, 1.5, false);
    const auto o64 = grpo::from_openrlhf(kl_args(est, 0.5, false));
    const auto o32 = grpo::from_openrlhf(kl_args(est, 0.5, true));
    const auto r64 = grpo::compute_loss(o64, k.batch());
    const auto r32 = grpo::compute_loss(o32, k.batch());
    double gmax = 0;
    for (const double g : r64.grad_logp) gmax = std::max(gmax, std::fabs(g));
    REQUIRE(gmax > 1e-3);
    for (std::size_t j = 0; j < k.lp.size(); ++j) {
      const double h = 1e-6, x0 = k.lp[j];
      k.lp[j] = x0 + h;
      const double up = grpo::compute_loss(o64, k.batch()).loss;
      k.lp[j] = x0 - h;
      const double dn = grpo::compute_loss(o64, k.batch()).loss;
      k.lp[j] = x0;
      const double fd = (up - dn) / (2 * h);
      CHECK(std::fabs(r64.grad_logp[j] - fd) <= 1e-7);
      CHECK(std::fabs(r32.grad_logp[j] - r64.grad_logp[j]) <= 1e-6 * gmax);
    }
    // The two precisions are different computations (else the emulation would be a no-op).
    CHECK(r32.kl_loss != r64.kl_loss);
  }
}

TEST_CASE("OpenRLHF ppo_kl in the loss result: unclamped mean, hand-computed, every engine" *
          doctest::test_suite("loss")) {
  // lp - lo = -25, +1, -3 (padding), +30: OpenRLHF's ppo_kl = mean(lo - lp) over valid tokens
  // = (25 - 1 - 30) / 3 = -2; the clamped log ratio (+-20) gives (20 - 1 - 20) / 3 = -1 / 3.
  const std::vector<double> lp = {-1.0, -2.0, -0.5, -1.5}, lo = {24.0, -3.0, 2.5, -31.5};
  const std::vector<double> A = {1.0, -0.5, 0.25, 2.0}, M = {1, 1, 0, 1};
  const std::vector<float> lpf(lp.begin(), lp.end()), lof(lo.begin(), lo.end()),
      Af(A.begin(), A.end()), Mf(M.begin(), M.end());
  const std::vector<double> ones(4, 1.0);
  auto run = [&](const grpo::loss_options& o, int engine) {
    if (engine == 2) {  // float inputs
      grpo::loss_batch<float, float> b;
      b.logp = grpo::make_view(lpf.data(), {1, 4});
      b.old_logp = grpo::make_view(lof.data(), {1, 4});
      b.advantages = grpo::make_view(Af.data(), {1, 4});
      b.mask = grpo::make_view(Mf.data(), {1, 4});
      return grpo::compute_loss(o, b).metrics.approx_kl.mean();
    }
    grpo::loss_batch<double, double> b;
    b.logp = grpo::make_view(lp.data(), {1, 4});
    b.old_logp = grpo::make_view(lo.data(), {1, 4});
    b.advantages = grpo::make_view(A.data(), {1, 4});
    b.mask = grpo::make_view(M.data(), {1, 4});
    if (engine == 1) b.is_weights = grpo::make_view(ones.data(), {1, 4});  // general engine
    return grpo::compute_loss(o, b).metrics.approx_kl.mean();
  };
  const auto preset = grpo::from_openrlhf(grpo::openrlhf_args{});
  CHECK(preset.approx_kl_unclamped);
  auto ours = preset;
  ours.approx_kl_unclamped = false;
  auto noclamp = preset;  // no clamp: the vectorised rows run and the flag changes nothing
  noclamp.policy.log_ratio_min = -std::numeric_limits<double>::infinity();
  noclamp.policy.log_ratio_max = std::numeric_limits<double>::infinity();
  for (int engine = 0; engine < 3; ++engine) {
    CAPTURE(engine);
    CHECK(run(preset, engine) == doctest::Approx(-2.0).epsilon(1e-15));
    CHECK(run(ours, engine) == doctest::Approx(-1.0 / 3.0).epsilon(1e-15));
    CHECK(run(noclamp, engine) == doctest::Approx(-2.0).epsilon(1e-15));
  }
  // Sequence level (GSPO): the metric is the unclamped token log ratio either way.
  grpo::openrlhf_args g;
  g.actor.policy_loss_type = "gspo";
  auto gs = grpo::from_openrlhf(g);
  for (const bool flag : {true, false}) {
    gs.approx_kl_unclamped = flag;
    CHECK(run(gs, 0) == doctest::Approx(-2.0).epsilon(1e-15));
    CHECK(run(gs, 1) == doctest::Approx(-2.0).epsilon(1e-15));
  }
}

TEST_CASE("OpenRLHF in-loss KL: every engine honours kl_openrlhf_float32, refusals" *
          doctest::test_suite("loss")) {
  // The flag is handled before any engine is chosen: the policy term runs wherever the planner
  // sends it (token vectorised rows, sequence rows, general engine, float inputs), the KL term
  // always through the float32 emulation. Each must equal policy-only + the by-hand float32 KL.
  const kl_batch kd = make_kl_batch(4, 11, 4.0, true);  // per-row advantages (broadcast)
  double count = 0;
  for (const double m : kd.M) count += m;
  const kl32_ref h = openrlhf_kl32_by_hand(kd, "k3", 0.2, 1.0, count);
  const std::vector<double> zeros(kd.lp.size(), 0.0);
  for (const std::string type : {"ppo", "gspo"})
    for (int engine = 0; engine < 3; ++engine) {
      CAPTURE(type);
      CAPTURE(engine);
      grpo::openrlhf_args a = kl_args("k3", 0.2, true);
      a.actor.policy_loss_type = type;
      auto o = grpo::from_openrlhf(a);
      if (engine == 1) o.approx_kl_unclamped = false;  // ppo: the vectorised token rows
      auto b = kd.batch();
      if (engine == 2) b.entropy = grpo::make_view(zeros.data(), {kd.B, kd.T});  // general
      const auto r = grpo::compute_loss(o, b);
      auto po = o;
      po.kl_coef = 0.0;
      auto pb = b;
      pb.ref_logp = {};
      const auto p = grpo::compute_loss(po, pb);
      CHECK(r.kl_loss == h.kl_loss);
      CHECK(r.loss == p.policy_loss + h.term);
      double worst = 0;
      for (std::size_t j = 0; j < kd.lp.size(); ++j)
        worst = std::max(worst, std::fabs(r.grad_logp[j] - (p.grad_logp[j] + h.grad[j])));
      CHECK(worst == 0.0);
      // Float inputs and outputs (compute_loss_into, float gradient).
      const std::vector<float> lpf(kd.lp.begin(), kd.lp.end()), lof(kd.lo.begin(), kd.lo.end()),
          lrf(kd.lr.begin(), kd.lr.end()), Af(kd.A.begin(), kd.A.end()),
          Mf(kd.M.begin(), kd.M.end());
      grpo::loss_batch<float, float> bf;
      bf.logp = grpo::make_view(lpf.data(), {kd.B, kd.T});
      bf.old_logp = grpo::make_view(lof.data(), {kd.B, kd.T});
      bf.ref_logp = grpo::make_view(lrf.data(), {kd.B, kd.T});
      bf.advantages = grpo::make_view(Af.data(), {kd.B, kd.T});
      bf.mask = grpo::make_view(Mf.data(), {kd.B, kd.T});
      std::vector<float> gf(kd.lp.size());
      grpo::loss_outputs<float> of;
      of.grad_logp = grpo::make_view(gf.data(), {kd.B, kd.T});
      const auto rf = grpo::compute_loss_into(o, bf, of);
      // Float inputs are the same values (float -> double is exact only for the floats: compare
      // with the by-hand KL of those floats).
      kl_batch kf = kd;
      for (std::size_t j = 0; j < kf.lp.size(); ++j) {
        kf.lp[j] = lpf[j];
        kf.lr[j] = lrf[j];
      }
      CHECK(rf.kl_loss == openrlhf_kl32_by_hand(kf, "k3", 0.2, 1.0, count).kl_loss);
    }
  // Refusals (named errors, never a silent double KL).
  const auto base = grpo::from_openrlhf(kl_args("k3", 0.2, true));
  auto bad = base;
  bad.kl_bias_correction = true;
  CHECK_THROWS_WITH_AS(grpo::compute_loss(bad, kd.batch()), doctest::Contains("[grpo.bad_option]"),
                       grpo::error);
  bad = base;
  bad.opsm_threshold = 0.5;
  CHECK_THROWS_WITH_AS(grpo::compute_loss(bad, kd.batch()), doctest::Contains("[grpo.bad_option]"),
                       grpo::error);
  bad = base;
  bad.kl = grpo::kl_params{};  // k3 without OpenRLHF's +-10 clamp
  CHECK_THROWS_WITH_AS(grpo::compute_loss(bad, kd.batch()), doctest::Contains("kl_openrlhf"),
                       grpo::error);
  bad = base;
  bad.kl_agg->mode = grpo::agg_mode::seq_mean_token_mean;
  CHECK_THROWS_WITH_AS(grpo::compute_loss(bad, kd.batch()), doctest::Contains("token_mean"),
                       grpo::error);
  kl_batch frac = kd;
  frac.M[0] = 0.5;
  CHECK_THROWS_WITH_AS(grpo::compute_loss(base, frac.batch()), doctest::Contains("0 or 1"),
                       grpo::error);
  auto noref = kd.batch();
  noref.ref_logp = {};
  CHECK_THROWS_WITH_AS(grpo::compute_loss(base, noref), doctest::Contains("ref_logp"), grpo::error);
  // init_coef <= 0 with use_loss: OpenRLHF's KL is zero, so the preset has no KL term.
  CHECK(grpo::from_openrlhf(kl_args("k3", 0.0, true)).kl_coef == 0.0);
  CHECK(grpo::from_openrlhf(kl_args("k3", -0.1, true)).kl_coef == 0.0);
}

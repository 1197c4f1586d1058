// SPDX-License-Identifier: Apache-2.0
// Conformance of grpo::distill::divergence_loss with the peers' own code: TRL's
// GKDTrainer.generalized_jsd_loss and Liger's chunked
// LigerFusedLinearJSDFunction.distillation_loss_fn, run in float64 with torch autograd by
// tools/distill_peer_cases.py (snapshot commits and line ranges are recorded in every case of
// tests/distill/data/peer_jsd_cases.json). Loss and d loss / d student logits at 1e-12 (scaled by
// max(1, |value|)): both sides compute in double from the same float64 inputs, so only summation
// order separates them.
//
// Option mapping (docs/distillation.md, "Peer conformance"):
//   beta: same meaning in both peers and here (M = beta p + (1 - beta) q, p teacher, q student;
//         beta = 0 -> KL(p||q), beta = 1 -> KL(q||p): jsd_endpoints::kl_limits, our default).
//   temperature: same (both logits divided by T, no T^2 factor: scale_by_t2 = false).
//   TRL reduction "batchmean" with labels -> agg_mode::token_mean over label != -100
//   TRL "batchmean" without labels (divides by the batch size B) -> seq_mean_token_sum
//   TRL "sum" -> token_sum;  TRL num_items_in_batch = N -> token_mean with global_tokens = N
//   Liger distillation_loss_fn (sum over rows, target == ignore_index masked) -> token_sum.
#include <distill/distill.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace gd = grpo::distill;
using grpo::index_t;
using json = nlohmann::json;

namespace {

constexpr double kTol = 1e-12;

const json& doc() {
  static const json all = [] {
    const std::string path =
        std::string(GRPO_SOURCE_DIR) + "/tests/distill/data/peer_jsd_cases.json";
    std::ifstream f(path);
    REQUIRE_MESSAGE(f.good(), "peer case file not found: " << path);
    return json::parse(f);
  }();
  return all;
}

/// Flattens a nested list of numbers (any depth) and records its extents.
template <class T>
void flatten(const json& j, std::vector<T>& out, std::vector<index_t>& ext, std::size_t depth = 0) {
  if (!j.is_array()) {
    out.push_back(j.get<T>());
    return;
  }
  if (ext.size() <= depth) ext.push_back(static_cast<index_t>(j.size()));
  for (const auto& x : j) flatten(x, out, ext, depth + 1);
}

bool close(double got, double want) {
  const double scale = std::fabs(want) > 1 ? std::fabs(want) : 1.0;
  return std::fabs(got - want) <= kTol * scale;  // false for NaN on either side
}

struct mapped {
  gd::distill_options opts;
  bool use_labels = false;
};

mapped map_options(const json& c) {
  mapped m;
  const json& a = c["args"];
  m.opts.kind = gd::divergence::jsd;  // beta = 0 / 1 reach the KL limits (kl_limits, default)
  m.opts.beta = a["beta"].get<double>();
  REQUIRE(m.opts.endpoints == gd::jsd_endpoints::kl_limits);
  REQUIRE_FALSE(m.opts.scale_by_t2);
  if (c["peer"] == "trl") {
    m.opts.temperature = a["temperature"].get<double>();
    m.use_labels = a["labels"].get<bool>();
    const std::string red = a["reduction"].get<std::string>();
    if (!a["num_items_in_batch"].is_null()) {
      m.opts.aggregate.mode = grpo::agg_mode::token_mean;
      m.opts.aggregate.global_tokens = a["num_items_in_batch"].get<double>();
    } else if (red == "sum") {
      m.opts.aggregate.mode = grpo::agg_mode::token_sum;
    } else if (red == "batchmean" && m.use_labels) {
      m.opts.aggregate.mode = grpo::agg_mode::token_mean;
      m.opts.aggregate.token_count_floor = 1.0;  // TRL mask.sum().clamp_min(1)
    } else {
      REQUIRE(red == "batchmean");
      m.opts.aggregate.mode = grpo::agg_mode::seq_mean_token_sum;  // jsd.sum() / B
      m.opts.aggregate.count_empty_rows = true;
    }
  } else {
    REQUIRE(c["peer"] == "liger");
    m.use_labels = a["target"].get<bool>();
    m.opts.aggregate.mode = grpo::agg_mode::token_sum;
  }
  return m;
}

void run_case(const json& c) {
  std::vector<double> s, u, want_grad;
  std::vector<index_t> es, eu, eg;
  flatten(c["inputs"]["student_logits"], s, es);
  flatten(c["inputs"]["teacher_logits"], u, eu);
  flatten(c["outputs"]["grad_student_logits"], want_grad, eg);
  REQUIRE(es == eu);
  REQUIRE(es == eg);
  const mapped m = map_options(c);
  // [B, L, V] (TRL) or [N, V] (Liger, our [1, N] token grid).
  const index_t B = es.size() == 3 ? es[0] : 1;
  const index_t L = es.size() == 3 ? es[1] : es[0];
  const index_t V = es.back();
  std::vector<std::int64_t> labels;
  std::vector<index_t> el;
  gd::token_args args;
  if (m.use_labels) {
    flatten(c["inputs"]["labels"], labels, el);
    REQUIRE(static_cast<index_t>(labels.size()) == B * L);
    args.labels = grpo::make_view(static_cast<const std::int64_t*>(labels.data()), {B, L});
  }
  std::vector<double> grad(s.size(), std::nan(""));
  const auto res =
      gd::divergence_loss(grpo::make_view(static_cast<const double*>(s.data()), {B, L, V}),
                          grpo::make_view(static_cast<const double*>(u.data()), {B, L, V}),
                          grpo::make_view(grad.data(), {B, L, V}), m.opts, args);
  const double want = c["outputs"]["loss"].get<double>();
  CHECK_MESSAGE(close(res.loss, want), "loss got " << res.loss << " want " << want << " err "
                                                   << std::fabs(res.loss - want));
  double worst = 0;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < grad.size(); ++i) {
    if (!close(grad[i], want_grad[i])) ++bad;
    const double e = std::fabs(grad[i] - want_grad[i]);
    worst = std::isnan(e) || e > worst ? (std::isnan(e) ? INFINITY : e) : worst;
  }
  CHECK_MESSAGE(bad == 0, bad << " gradient entries off, max abs error " << worst);
}

}  // namespace

TEST_CASE("peer JSD file: provenance and coverage") {
  const json& d = doc();
  CHECK(d["dtype"] == "float64");
  const json& cs = d["cases"];
  int trl = 0, liger = 0, endpoints = 0, interior = 0;
  for (const auto& c : cs) {
    const json& src = c["source"];
    CHECK(src["commit"].get<std::string>().size() == 40);
    if (c["peer"] == "trl") {
      ++trl;
      CHECK(src["function"] == "GKDTrainer.generalized_jsd_loss");
    } else {
      ++liger;
      CHECK(src["function"] == "LigerFusedLinearJSDFunction.distillation_loss_fn");
    }
    const double beta = c["args"]["beta"].get<double>();
    (beta == 0.0 || beta == 1.0 ? endpoints : interior) += 1;
  }
  CHECK(trl >= 40);
  CHECK(liger >= 8);
  CHECK(endpoints > 0);
  CHECK(interior > 0);
}

TEST_CASE("divergence_loss(jsd) matches TRL GKD and Liger JSD: loss and student gradient") {
  for (const auto& c : doc()["cases"]) {
    SUBCASE(c["id"].get<std::string>().c_str()) {
      run_case(c);
    }
  }
}

TEST_CASE("peer JSD: a wrong beta convention is detected (the comparison can fail)") {
  // Swapping the roles (M = (1 - beta) p + beta q) must break an interior-beta case.
  for (const auto& c : doc()["cases"]) {
    const double beta = c["args"]["beta"].get<double>();
    if (c["peer"] != "trl" || beta != 0.1 || !c["args"]["labels"].get<bool>()) continue;
    std::vector<double> s, u;
    std::vector<index_t> es, eu, el;
    std::vector<std::int64_t> labels;
    flatten(c["inputs"]["student_logits"], s, es);
    flatten(c["inputs"]["teacher_logits"], u, eu);
    flatten(c["inputs"]["labels"], labels, el);
    mapped m = map_options(c);
    m.opts.beta = 1.0 - beta;
    gd::token_args args;
    args.labels = grpo::make_view(static_cast<const std::int64_t*>(labels.data()), {es[0], es[1]});
    const auto res = gd::divergence_loss(
        grpo::make_view(static_cast<const double*>(s.data()), {es[0], es[1], es[2]}),
        grpo::make_view(static_cast<const double*>(u.data()), {es[0], es[1], es[2]}), m.opts, args);
    CHECK_FALSE(close(res.loss, c["outputs"]["loss"].get<double>()));
  }
}

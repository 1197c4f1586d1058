// SPDX-License-Identifier: Apache-2.0
// grpo/sampler.hpp tie policies (ours, vllm_triton, vllm_torch) and min-p: a table of
// hand-computed kept sets at top-k / top-p ties for every policy, min-p against a naive double
// reference (softmax in double, p_j >= min_p p_max), and random tie-heavy (bf16-like) rows against
// a double transcription of each policy's rule.
#include <grpo/sampler.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

using grpo::index_t;
using pol = grpo::sampler_tie_policy;
constexpr double dinf = std::numeric_limits<double>::infinity();

/// Kept set of one row as the library computes it: the row repeated V times, id j in row j;
/// log p~(j) finite iff j is kept. Also returns the log-probs.
std::vector<bool> lib_support(const std::vector<float>& x, const grpo::sampler_options& o,
                              std::vector<float>* logp = nullptr) {
  const auto V = static_cast<index_t>(x.size());
  std::vector<float> rows;
  for (index_t i = 0; i < V; ++i) rows.insert(rows.end(), x.begin(), x.end());
  std::vector<std::int64_t> ids(static_cast<std::size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  std::vector<float> lp(static_cast<std::size_t>(V));
  std::vector<std::int64_t> sz(static_cast<std::size_t>(V));
  grpo::sampler_log_softmax(grpo::make_view(rows.data(), {V, V}), grpo::make_view(ids.data(), {V}),
                            grpo::make_view(lp.data(), {V}), {}, grpo::make_view(sz.data(), {V}),
                            o);
  std::vector<bool> keep(static_cast<std::size_t>(V));
  for (index_t j = 0; j < V; ++j) keep[j] = lp[j] > -std::numeric_limits<float>::infinity();
  const auto n = static_cast<std::int64_t>(std::count(keep.begin(), keep.end(), true));
  for (index_t j = 0; j < V; ++j) CHECK(sz[j] == n);
  if (logp) *logp = lp;
  return keep;
}

/// Double transcription of the documented rule of each policy (independent of the library):
/// min-p on softmax(x / T) (p_j >= min_p p_max), top-k (ties: all, or exactly k lowest id
/// first), top-p in descending order with ties by ascending id (ours, vllm_triton) or descending
/// id (vllm_torch), a token kept iff the mass before it is < p. `margin` returns the smallest
/// |cumulative mass - p| and |p_j / p_max - min_p| met at a decision (near-ties of the float
/// rounding are then skipped by the caller).
std::vector<bool> ref_support(const std::vector<double>& x, double T, index_t k, double p,
                              double min_p, pol ties, double* margin = nullptr) {
  const auto V = static_cast<index_t>(x.size());
  std::vector<double> z(x.size());
  double m = -dinf;
  for (std::size_t j = 0; j < x.size(); ++j) m = std::max(m, z[j] = x[j] / T);
  double s = 0;
  for (double v : z) s += std::exp(v - m);
  double marg = dinf;
  std::vector<bool> keep(x.size(), true);
  if (min_p > 0) {
    const double pmax = 1.0 / s;
    for (std::size_t j = 0; j < x.size(); ++j) {
      const double pj = std::exp(z[j] - m) / s;
      marg = std::min(marg, std::abs(pj / pmax - min_p));
      keep[j] = pj >= min_p * pmax;
    }
  }
  if (k > 0 && k < V) {
    std::vector<double> alive;
    for (std::size_t j = 0; j < x.size(); ++j)
      if (keep[j]) alive.push_back(z[j]);
    if (static_cast<index_t>(alive.size()) > k) {
      std::sort(alive.begin(), alive.end(), std::greater<>());
      const double tau = alive[static_cast<std::size_t>(k - 1)];
      index_t above = 0;
      for (std::size_t j = 0; j < x.size(); ++j) above += (keep[j] && z[j] > tau) ? 1 : 0;
      index_t tied_left = ties == pol::vllm_triton ? k - above : V;
      for (std::size_t j = 0; j < x.size(); ++j) {
        if (!keep[j]) continue;
        if (z[j] < tau) keep[j] = false;
        if (z[j] == tau) {
          if (tied_left > 0)
            --tied_left;
          else
            keep[j] = false;
        }
      }
    }
  }
  if (p < 1.0) {
    std::vector<index_t> ord;
    double s2 = 0;
    for (index_t j = 0; j < V; ++j)
      if (keep[j]) ord.push_back(j), s2 += std::exp(z[j] - m);
    std::sort(ord.begin(), ord.end(), [&](index_t a, index_t b) {
      return z[a] > z[b] || (z[a] == z[b] && (ties == pol::vllm_torch ? a > b : a < b));
    });
    double before = 0;
    for (std::size_t r = 0; r < ord.size(); ++r) {
      if (r > 0) marg = std::min(marg, std::abs(before - p));
      if (!(before < p) && r > 0) keep[ord[r]] = false;
      before += std::exp(z[ord[r]] - m) / s2;
    }
  }
  if (margin) *margin = marg;
  return keep;
}

std::string show(const std::vector<bool>& k) {
  std::string s = "{";
  for (std::size_t j = 0; j < k.size(); ++j)
    if (k[j]) s += std::to_string(j) + ",";
  return s + "}";
}

}  // namespace

TEST_CASE("sampler tie policies: hand-computed table" * doctest::test_suite("logprob")) {
  const float l2 = std::log(2.0f), l4 = std::log(4.0f), l5 = std::log(5.0f);
  const float ninf = -std::numeric_limits<float>::infinity();
  (void)ninf;
  struct row {
    const char* what;
    std::vector<float> x;
    float T;
    index_t k;
    float p, min_p;
    std::vector<int> ours, triton, torch;  // kept ids per policy
  };
  const std::vector<row> table = {
      // top-k = 2, tau = 1 tied by ids 1, 2, 3: triton keeps exactly 2 (id 0 and the lowest tie).
      {"topk tie", {2, 1, 1, 1, 0, -1}, 1, 2, 1, 0, {0, 1, 2, 3}, {0, 1}, {0, 1, 2, 3}},
      // top-k = 3: 3 above nothing, tau = 1 tied by ids 1, 3, 4, one above (id 2): triton keeps
      // ids 1 and 3 (lowest ids), the others every tie.
      {"topk tie mid", {0, 1, 3, 1, 1, -2}, 1, 3, 1, 0, {1, 2, 3, 4}, {1, 2, 3}, {1, 2, 3, 4}},
      // q = (.4, .2, .2, .1, .1), top-p .5: id 0 (mass before 0), then the tie .2: the first in
      // tie order has 0.4 before (kept), the second 0.6 (dropped). Lowest id first: {0, 1};
      // vllm_torch (highest id first): {0, 2}.
      {"topp tie", {l4, l2, l2, 0, 0}, 1, 0, 0.5f, 0, {0, 1}, {0, 1}, {0, 2}},
      // same q, top-p .85: 0, 1, 2 kept (0 / .4 / .6 before), tie .1: first has .8 (kept),
      // second .9 (dropped).
      {"topp tie low tier",
       {l4, l2, l2, 0, 0},
       1,
       0,
       0.85f,
       0,
       {0, 1, 2, 3},
       {0, 1, 2, 3},
       {0, 1, 2, 4}},
      // top-k 3 then top-p .7 on masses 4, 2, 2, 2, 1. ours: top-k keeps {0..3} (.4, .2 x 3):
      // 0 / .4 / .6 before -> {0, 1, 2}; torch: top-k {0..3}, ties highest id first -> {0, 3, 2};
      // triton: top-k exactly {0, 1, 2} (.5, .25, .25): .75 before id 2 >= .7 -> {0, 1}.
      {"topk + topp ties", {l4, l2, l2, l2, 0}, 1, 3, 0.7f, 0, {0, 1, 2}, {0, 1}, {0, 2, 3}},
      // min-p .3 at T = 1: ratios 1, e^-1 = .37, e^-2 = .14, e^-3: keeps {0, 1}.
      {"min-p", {0, -1, -2, -3}, 1, 0, 1, 0.3f, {0, 1}, {0, 1}, {0, 1}},
      // min-p after temperature: T = 0.5 doubles the gaps, e^-2 = .14 < .3: keeps {0}.
      {"min-p after T", {0, -1, -2, -3}, 0.5f, 0, 1, 0.3f, {0}, {0}, {0}},
      // min-p before top-p: q = (.5, .4, .1); min-p .25 removes id 2 (ratio .2), renormalised
      // (.556, .444): top-p .55 keeps {0} only (top-p first would keep {0, 1}).
      {"min-p then top-p", {l5, l4, 0}, 1, 0, 0.55f, 0.25f, {0}, {0}, {0}},
      // min-p then top-k on ties: x = (0, -.5, -.5, -3, -3): min-p .1 removes the -3s (e^-3 =
      // .05); top-k 2 on the rest: tau = -.5 tied by 1, 2; triton keeps id 1 only.
      {"min-p then top-k tie",
       {0, -0.5f, -0.5f, -3, -3},
       1,
       2,
       1,
       0.1f,
       {0, 1, 2},
       {0, 1},
       {0, 1, 2}},
  };
  for (const row& r : table) {
    for (const pol t : {pol::ours, pol::vllm_triton, pol::vllm_torch}) {
      const auto& want_ids = t == pol::ours ? r.ours : t == pol::vllm_triton ? r.triton : r.torch;
      INFO(r.what << " policy " << static_cast<int>(t));
      grpo::sampler_options o;
      o.temperature = r.T;
      o.top_k = r.k;
      o.top_p = r.p;
      o.min_p = r.min_p;
      o.ties = t;
      std::vector<float> lp;
      const auto keep = lib_support(r.x, o, &lp);
      std::vector<bool> want(r.x.size(), false);
      for (int j : want_ids) want[static_cast<std::size_t>(j)] = true;
      CHECK_MESSAGE(keep == want, "got " << show(keep) << " want " << show(want));
      // The double transcription of the rule agrees on every table row.
      std::vector<double> xd(r.x.begin(), r.x.end());
      CHECK(ref_support(xd, r.T, r.k, r.p, r.min_p, t) == want);
      // Renormalised log-probs over the expected set: z_j - log sum_S exp(z).
      double s = 0;
      for (std::size_t j = 0; j < xd.size(); ++j)
        if (want[j]) s += std::exp(xd[j] / r.T);
      for (std::size_t j = 0; j < xd.size(); ++j)
        if (want[j]) CHECK(lp[j] == doctest::Approx(xd[j] / r.T - std::log(s)).epsilon(1e-6));
    }
  }
}

TEST_CASE("sampler min-p: against a naive double reference" * doctest::test_suite("logprob")) {
  std::mt19937 rng(11);
  std::normal_distribution<double> n01(0.0, 1.0);
  int compared = 0;
  for (int it = 0; it < 60; ++it) {
    const index_t V = 40 + 7 * (it % 9);
    const double T = (it % 3 == 0) ? 1.0 : (it % 3 == 1 ? 0.7 : 1.6);
    const double min_p = std::vector<double>{0.01, 0.05, 0.2, 0.6, 1.0}[it % 5];
    const index_t k = it % 4 == 0 ? 5 : 0;
    std::vector<float> x(static_cast<std::size_t>(V));
    for (auto& v : x) v = static_cast<float>(2.0 * n01(rng));
    std::vector<double> xd(x.begin(), x.end());
    double margin = 0;
    const auto want = ref_support(xd, T, k, 1.0, min_p, pol::ours, &margin);
    if (margin < 1e-5) continue;  // a token at float rounding of the threshold: undecidable
    grpo::sampler_options o;
    o.temperature = static_cast<float>(T);
    o.min_p = static_cast<float>(min_p);
    o.top_k = k;
    std::vector<float> lp;
    const auto keep = lib_support(x, o, &lp);
    INFO("iteration " << it);
    CHECK(keep == want);
    double s = 0, m = -dinf;
    for (std::size_t j = 0; j < xd.size(); ++j)
      if (want[j]) m = std::max(m, xd[j] / T);
    for (std::size_t j = 0; j < xd.size(); ++j)
      if (want[j]) s += std::exp(xd[j] / T - m);
    for (std::size_t j = 0; j < xd.size(); ++j)
      if (want[j]) CHECK(std::abs(lp[j] - (xd[j] / T - m - std::log(s))) <= 2e-5);
    ++compared;
  }
  CHECK(compared >= 40);
  // min_p = 1 keeps exactly the maximal tokens (all of them when tied).
  grpo::sampler_options o;
  o.min_p = 1.0f;
  const auto keep = lib_support({1, 3, 3, 2}, o);
  CHECK(keep == std::vector<bool>{false, true, true, false});
  // Out-of-domain min_p is a named error.
  for (const float bad : {-0.1f, 1.5f, std::numeric_limits<float>::quiet_NaN()}) {
    o.min_p = bad;
    std::vector<float> x = {0, 1};
    std::vector<std::int64_t> id = {0};
    std::vector<float> lp(1);
    CHECK_THROWS_WITH_AS(grpo::sampler_log_softmax(grpo::make_view(x.data(), {1, 2}),
                                                   grpo::make_view(id.data(), {1}),
                                                   grpo::make_view(lp.data(), {1}), {}, {}, o),
                         doctest::Contains("min_p"), grpo::error);
  }
}

TEST_CASE("sampler tie policies: tie-heavy rows against the rule of each policy" *
          doctest::test_suite("logprob")) {
  // Logits on a 0.25 grid (as bf16 logits of similar magnitude tie): many exact ties at both
  // boundaries. Rows whose top-p or min-p decision is within 1e-6 of the threshold are skipped.
  std::mt19937 rng(17);
  std::uniform_int_distribution<int> grid(-12, 12);
  int compared = 0;
  for (int it = 0; it < 240; ++it) {
    const index_t V = 24 + (it % 5) * 9;
    std::vector<float> x(static_cast<std::size_t>(V));
    for (auto& v : x) v = 0.25f * static_cast<float>(grid(rng));
    const index_t k = std::vector<index_t>{0, 1, 3, 8}[it % 4];
    const float p = std::vector<float>{1.0f, 0.5f, 0.8f, 0.93f}[(it / 4) % 4];
    const float min_p = (it % 7 == 0) ? 0.1f : 0.0f;
    const pol t = static_cast<pol>(it % 3);
    std::vector<double> xd(x.begin(), x.end());
    double margin = 0;
    const auto want = ref_support(xd, 1.0, k, p, min_p, t, &margin);
    if (margin < 1e-6) continue;
    grpo::sampler_options o;
    o.top_k = k;
    o.top_p = p;
    o.min_p = min_p;
    o.ties = t;
    const auto keep = lib_support(x, o);
    INFO("iteration " << it << " k " << k << " p " << p << " policy " << static_cast<int>(t));
    CHECK_MESSAGE(keep == want, "got " << show(keep) << " want " << show(want));
    if (t == pol::vllm_triton && k > 0 && p == 1.0f && min_p == 0.0f)
      CHECK(std::count(keep.begin(), keep.end(), true) == k);  // exactly k at any tie
    ++compared;
  }
  CHECK(compared >= 150);
}

TEST_CASE("sampler tie policies: the backward pass uses the same support" *
          doctest::test_suite("logprob")) {
  // vllm_triton, top-k 2 on (2, 1, 1, 1, 0, -1): S = {0, 1}; with dL/dlogp = 1 and target 0 the
  // gradient is delta_j0 - p~_j on S and 0 elsewhere (the tied ids 2, 3 dropped), T = 1.
  std::vector<float> x = {2, 1, 1, 1, 0, -1};
  std::vector<std::int64_t> id = {0};
  std::vector<float> g1 = {1.0f}, gh = {0.0f}, grad(6);
  for (const pol t : {pol::vllm_triton, pol::ours}) {
    grpo::sampler_options o;
    o.top_k = 2;
    o.ties = t;
    grpo::sampler_log_softmax_backward(
        grpo::make_view(x.data(), {1, 6}), grpo::make_view(id.data(), {1}),
        grpo::make_view(g1.data(), {1}), grpo::make_view(gh.data(), {1}),
        grpo::make_view(grad.data(), {1, 6}), o);
    const double e2 = std::exp(2.0), e1 = std::exp(1.0);
    const double s = t == pol::vllm_triton ? e2 + e1 : e2 + 3 * e1;
    INFO("policy " << static_cast<int>(t));
    CHECK(grad[0] == doctest::Approx(1.0 - e2 / s).epsilon(1e-6));
    CHECK(grad[1] == doctest::Approx(-e1 / s).epsilon(1e-6));
    if (t == pol::vllm_triton) {
      CHECK(grad[2] == 0.0f);
      CHECK(grad[3] == 0.0f);
    } else {
      CHECK(grad[2] == doctest::Approx(-e1 / s).epsilon(1e-6));
    }
    CHECK(grad[4] == 0.0f);
    CHECK(grad[5] == 0.0f);
  }
}

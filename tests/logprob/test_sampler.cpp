// SPDX-License-Identifier: Apache-2.0
// Tests of grpo/sampler.hpp against a literal double-precision transcription of vLLM's
// apply_top_k_top_p (ascending sort, k-th value threshold with <, cumsum <= 1 - p removed, last
// kept), hand-computed cases, ties, finite differences of the gradient and errors.
#include <grpo/sampler.hpp>

#include "logprob/reference.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace {

using grpo::index_t;
constexpr double dinf = std::numeric_limits<double>::infinity();

/// vLLM semantics on one row in double: returns the kept mask.
std::vector<bool> vllm_support(const std::vector<double>& x, double T, index_t k, double p) {
  const auto V = static_cast<index_t>(x.size());
  std::vector<double> z(x.size());
  for (std::size_t j = 0; j < x.size(); ++j) z[j] = x[j] / T;
  std::vector<index_t> idx(x.size());
  std::iota(idx.begin(), idx.end(), 0);
  // Ascending sort; among equal values the higher id first (our documented tie rule).
  std::sort(idx.begin(), idx.end(),
            [&](index_t a, index_t b) { return z[a] < z[b] || (z[a] == z[b] && a > b); });
  std::vector<double> zs(x.size());
  for (index_t r = 0; r < V; ++r) zs[r] = z[idx[r]];
  if (k > 0 && k < V) {
    const double tau = zs[V - k];
    for (auto& v : zs)
      if (v < tau) v = -dinf;
  }
  if (p < 1.0) {
    double m = -dinf;
    for (double v : zs) m = std::max(m, v);
    double s = 0;
    for (double v : zs) s += std::exp(v - m);
    double c = 0;
    std::vector<bool> drop(x.size(), false);
    for (index_t r = 0; r < V; ++r) {
      c += std::exp(zs[r] - m) / s;
      drop[r] = c <= 1.0 - p;
    }
    drop[V - 1] = false;
    for (index_t r = 0; r < V; ++r)
      if (drop[r]) zs[r] = -dinf;
  }
  std::vector<bool> keep(x.size());
  for (index_t r = 0; r < V; ++r) keep[idx[r]] = zs[r] > -dinf;
  return keep;
}

/// log p~ over the support, entropy of p~ (double).
void ref_row(const std::vector<double>& x, double T, const std::vector<bool>& keep, index_t y,
             double& lp, double& h) {
  std::vector<double> xs(x.size());
  for (std::size_t j = 0; j < x.size(); ++j) xs[j] = keep[j] ? x[j] : -dinf;
  const auto r = lp_ref::row(xs, T, y);
  lp = keep[y] ? r.logp : -dinf;
  h = r.entropy;
}

}  // namespace

TEST_CASE("sampler_log_softmax: matches vLLM's top-k / top-p support and renormalisation" *
          doctest::test_suite("logprob")) {
  std::mt19937 rng(3);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  struct cfg {
    index_t k;
    float p, T;
  };
  for (const cfg c :
       {cfg{0, 1.0f, 1.0f}, cfg{50, 1.0f, 1.0f}, cfg{0, 0.9f, 1.0f}, cfg{20, 0.8f, 0.7f},
        cfg{0, 0.95f, 0.6f}, cfg{1, 1.0f, 1.0f}, cfg{0, 0.3f, 1.3f}, cfg{5000, 0.99f, 1.0f}}) {
    const index_t N = 6, V = 3000;
    std::vector<float> x(N * V);
    for (auto& v : x) v = 2.5f * n01(rng);
    std::vector<std::int64_t> ids(N);
    std::vector<std::vector<double>> rows(N);
    for (index_t i = 0; i < N; ++i) {
      rows[i].assign(x.begin() + i * V, x.begin() + (i + 1) * V);
      // Sample a token inside the reference support (as vLLM would), except row 5: argmin
      // (outside).
      const auto keep = vllm_support(rows[i], c.T, c.k, c.p);
      index_t y = 0;
      double best = -dinf;
      for (index_t j = 0; j < V; ++j)
        if (keep[j] && rows[i][j] + n01(rng) > best) best = rows[i][j] + n01(rng), y = j;
      if (i == 5) y = std::min_element(rows[i].begin(), rows[i].end()) - rows[i].begin();
      ids[i] = y;
    }
    std::vector<float> lp(N), h(N);
    std::vector<std::int64_t> sz(N);
    grpo::sampler_options o;
    o.top_k = c.k;
    o.top_p = c.p;
    o.temperature = c.T;
    grpo::sampler_log_softmax(grpo::make_view(x.data(), {N, V}), grpo::make_view(ids.data(), {N}),
                              grpo::make_view(lp.data(), {N}), grpo::make_view(h.data(), {N}),
                              grpo::make_view(sz.data(), {N}), o);
    for (index_t i = 0; i < N; ++i) {
      INFO("k " << c.k << " p " << c.p << " T " << c.T << " row " << i);
      const auto keep =
          vllm_support(rows[i], static_cast<double>(c.T), c.k, static_cast<double>(c.p));
      CHECK(sz[i] == std::count(keep.begin(), keep.end(), true));
      double rl, rh;
      ref_row(rows[i], static_cast<double>(c.T), keep, ids[i], rl, rh);
      if (rl == -dinf) {
        CHECK(lp[i] == -std::numeric_limits<float>::infinity());
      } else {
        CHECK(std::abs(lp[i] - rl) <= 1e-5 * std::max(1.0, std::abs(rl)));
      }
      CHECK(std::abs(h[i] - rh) <= 1e-5 * std::max(1.0, rh));
    }
  }
}

TEST_CASE("sampler_log_softmax: hand-computed top-p and top-k, ties at the top-k boundary" *
          doctest::test_suite("logprob")) {
  // q = softmax([0,1,2,3]) ~ [.032, .087, .237, .644]: top-p 0.5 keeps {3} only, 0.7 keeps {3, 2}.
  std::vector<float> x = {0, 1, 2, 3, 0, 1, 2, 3};
  std::vector<std::int32_t> ids = {3, 2};
  std::vector<float> lp(2);
  grpo::sampler_options o;
  o.top_p = 0.5f;
  grpo::sampler_log_softmax(grpo::make_view(x.data(), {2, 4}), grpo::make_view(ids.data(), {2}),
                            grpo::make_view(lp.data(), {2}), {}, {}, o);
  CHECK(lp[0] == 0.0f);
  CHECK(lp[1] == -std::numeric_limits<float>::infinity());
  o.top_p = 0.7f;
  grpo::sampler_log_softmax(grpo::make_view(x.data(), {2, 4}), grpo::make_view(ids.data(), {2}),
                            grpo::make_view(lp.data(), {2}), {}, {}, o);
  CHECK(lp[0] == doctest::Approx(3.0 - std::log(std::exp(2.0) + std::exp(3.0))).epsilon(1e-6));
  CHECK(lp[1] == doctest::Approx(2.0 - std::log(std::exp(2.0) + std::exp(3.0))).epsilon(1e-6));
  // top-k = 2 on [1, 1, 1, 0]: the 2nd largest is 1 and every token equal to it is kept (vLLM <).
  std::vector<float> t = {1, 1, 1, 0};
  std::vector<std::int32_t> id1 = {2};
  std::vector<std::int64_t> sz(1);
  grpo::sampler_options ok;
  ok.top_k = 2;
  grpo::sampler_log_softmax(grpo::make_view(t.data(), {1, 4}), grpo::make_view(id1.data(), {1}),
                            grpo::make_view(lp.data(), {1}), {}, grpo::make_view(sz.data(), {1}),
                            ok);
  CHECK(sz[0] == 3);
  CHECK(lp[0] == doctest::Approx(-std::log(3.0)).epsilon(1e-6));
  // No truncation: identical to selective_log_softmax.
  std::vector<float> a(2), b(2);
  grpo::sampler_log_softmax(grpo::make_view(x.data(), {2, 4}), grpo::make_view(ids.data(), {2}),
                            grpo::make_view(a.data(), {2}));
  grpo::selective_log_softmax(grpo::make_view(x.data(), {2, 4}), grpo::make_view(ids.data(), {2}),
                              grpo::make_view(b.data(), {2}));
  CHECK(a == b);
}

TEST_CASE("sampler_log_softmax_backward: matches the double gradient on the support and FD" *
          doctest::test_suite("logprob")) {
  std::mt19937 rng(5);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  const index_t N = 3, V = 40;
  std::vector<float> x(N * V);
  for (auto& v : x) v = 2.0f * n01(rng);
  std::vector<std::int64_t> ids(N);
  for (index_t i = 0; i < N; ++i)
    ids[i] = std::max_element(x.begin() + i * V, x.begin() + (i + 1) * V) - (x.begin() + i * V);
  std::vector<float> gl = {0.7f, -1.1f, 0.4f}, gh = {0.2f, 0.5f, -0.3f};
  grpo::sampler_options o;
  o.top_k = 12;
  o.top_p = 0.9f;
  o.temperature = 0.8f;
  std::vector<float> g(N * V);
  grpo::sampler_log_softmax_backward(
      grpo::make_view(x.data(), {N, V}), grpo::make_view(ids.data(), {N}),
      grpo::make_view(gl.data(), {N}), grpo::make_view(gh.data(), {N}),
      grpo::make_view(g.data(), {N, V}), o);
  for (index_t i = 0; i < N; ++i) {
    std::vector<double> row(x.begin() + i * V, x.begin() + (i + 1) * V);
    const auto keep = vllm_support(row, 0.8, 12, 0.9);
    std::vector<double> xs(V);
    for (index_t j = 0; j < V; ++j) xs[j] = keep[j] ? row[j] : -dinf;
    const auto r = lp_ref::row_grad(xs, 0.8, ids[i], gl[i], gh[i]);
    for (index_t j = 0; j < V; ++j) {
      INFO("row " << i << " j " << j);
      CHECK(std::abs(g[i * V + j] - r[j]) <= 1e-5 * std::abs(r[j]) + 1e-7);
      if (!keep[j]) CHECK(g[i * V + j] == 0.0f);
    }
  }
  // Central finite differences of L = sum g_i logp_i + h_i H_i (steps small enough not to move the
  // support boundary, checked by comparing support sizes).
  auto L = [&](const std::vector<float>& xx, std::vector<std::int64_t>& sz) {
    std::vector<float> lp(N), hh(N);
    sz.assign(N, 0);
    grpo::sampler_log_softmax(grpo::make_view(xx.data(), {N, V}), grpo::make_view(ids.data(), {N}),
                              grpo::make_view(lp.data(), {N}), grpo::make_view(hh.data(), {N}),
                              grpo::make_view(sz.data(), {N}), o);
    double s = 0;
    for (index_t i = 0; i < N; ++i) s += gl[i] * lp[i] + gh[i] * hh[i];
    return s;
  };
  std::vector<std::int64_t> s0, s1, s2;
  L(x, s0);
  int checked = 0;
  for (std::size_t k = 0; k < x.size(); ++k) {
    auto xp = x, xm = x;
    xp[k] += 1e-2f;
    xm[k] -= 1e-2f;
    const double fd = (L(xp, s1) - L(xm, s2)) / static_cast<double>(xp[k] - xm[k]);
    if (s1 != s0 || s2 != s0) continue;  // the step crossed a support boundary
    ++checked;
    CHECK(std::abs(fd - g[k]) <= 2e-4 + 1e-3 * std::abs(g[k]));
  }
  CHECK(checked > 100);
}

TEST_CASE("sampler_log_softmax: invalid options and inputs give grpo::error" *
          doctest::test_suite("logprob")) {
  std::vector<float> x = {0, 1, 2, 3};
  std::vector<std::int32_t> ids = {1};
  std::vector<float> lp(1);
  auto run = [&](grpo::sampler_options o) {
    grpo::sampler_log_softmax(grpo::make_view(x.data(), {1, 4}), grpo::make_view(ids.data(), {1}),
                              grpo::make_view(lp.data(), {1}), {}, {}, o);
  };
  grpo::sampler_options o;
  o.top_p = 0.0f;
  CHECK_THROWS_AS(run(o), grpo::error);
  o.top_p = 1.5f;
  CHECK_THROWS_AS(run(o), grpo::error);
  o = {};
  o.top_k = -1;
  CHECK_THROWS_AS(run(o), grpo::error);
  o = {};
  ids[0] = 4;
  CHECK_THROWS_AS(run(o), grpo::error);
  ids[0] = 1;
  x[2] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(run(o), grpo::error);
}

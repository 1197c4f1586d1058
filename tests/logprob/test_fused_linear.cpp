// SPDX-License-Identifier: Apache-2.0
// Tests of grpo/fused_linear.hpp: equals the materialised path (logits = h W^T, then
// fused_grpo_step, then dH = G W and dW = G^T h in double) for token-local and sequence-level
// presets, several chunkings and temperatures; forward-only linear_log_softmax equals
// selective_log_softmax on the logits; central finite differences in hidden and W; errors.
#include <grpo/fused_linear.hpp>
#include <grpo/presets.hpp>

#include <doctest/doctest.h>
#include <support/compare.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace {

using grpo::index_t;

struct lin_problem {
  index_t B, T, H, V;
  std::vector<float> h, w, old_lp, adv, mask;
  std::vector<std::int32_t> ids;
  lin_problem(index_t b, index_t t, index_t hd, index_t v, std::uint32_t seed)
      : B(b), T(t), H(hd), V(v) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> n01(0.0f, 1.0f);
    std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(V - 1));
    h.resize(B * T * H);
    w.resize(V * H);
    for (auto& x : h) x = n01(rng);
    for (auto& x : w) x = 0.4f * n01(rng);
    for (index_t k = 0; k < B * T; ++k) {
      ids.push_back(pick(rng));
      adv.push_back(n01(rng));
      mask.push_back(k % 4 == 3 ? 0.0f : 1.0f);
    }
    const auto lg = logits();
    std::vector<float> lp(B * T);
    grpo::selective_log_softmax(grpo::make_view(lg.data(), {B * T, V}),
                                grpo::make_view(ids.data(), {B * T}),
                                grpo::make_view(lp.data(), {B * T}));
    for (index_t k = 0; k < B * T; ++k) old_lp.push_back(lp[k] + 0.2f * n01(rng));
  }
  /// The logits h W^T computed in double and rounded once to float.
  std::vector<float> logits() const {
    std::vector<float> l(B * T * V);
    for (index_t k = 0; k < B * T; ++k)
      for (index_t v = 0; v < V; ++v) {
        double s = 0;
        for (index_t d = 0; d < H; ++d) s += static_cast<double>(h[k * H + d]) * w[v * H + d];
        l[k * V + v] = static_cast<float>(s);
      }
    return l;
  }
  grpo::loss_batch<double, float> batch() const {
    grpo::loss_batch<double, float> b;
    old_d.assign(old_lp.begin(), old_lp.end());
    adv_d.assign(adv.begin(), adv.end());
    b.old_logp = grpo::make_view(static_cast<const double*>(old_d.data()), {B, T});
    b.advantages = grpo::make_view(static_cast<const double*>(adv_d.data()), {B, T});
    b.mask = grpo::make_view(mask.data(), {B, T});
    return b;
  }
  mutable std::vector<double> old_d, adv_d;
};

grpo::fused_grpo_result run_linear(const lin_problem& p, const grpo::loss_options& o, float T,
                                   index_t chunk, index_t vchunk, std::vector<float>& gh,
                                   std::vector<float>& gw) {
  gh.assign(p.h.size(), -3.0f);
  gw.assign(p.w.size(), -3.0f);
  grpo::fused_linear_options fo;
  fo.logprob.temperature = T;
  fo.chunk_tokens = chunk;
  fo.vocab_chunk = vchunk;
  return grpo::fused_linear_grpo_step(
      o, grpo::make_view(static_cast<const float*>(p.h.data()), {p.B, p.T, p.H}),
      grpo::make_view(static_cast<const float*>(p.w.data()), {p.V, p.H}),
      grpo::make_view(p.ids.data(), {p.B, p.T}), p.batch(),
      grpo::make_view(gh.data(), {p.B, p.T, p.H}), grpo::make_view(gw.data(), {p.V, p.H}), fo);
}

}  // namespace

TEST_CASE("fused_linear_grpo_step: equals the materialised-logits path" *
          doctest::test_suite("logprob")) {
  lin_problem p(2, 7, 24, 300, 1);
  const auto lg = p.logits();
  for (const char* name : {"trl_dapo", "trl_grpo", "trl_gspo", "verl_geo_mean"}) {
    for (float T : {1.0f, 0.7f}) {
      auto o = grpo::preset(name);
      o.kl_coef = 0.0;
      o.entropy_coef = 0.02;
      // Materialised reference: fused_grpo_step on the float logits, then the two products in
      // double.
      std::vector<float> gl(lg.size());
      grpo::fused_grpo_options fo;
      fo.logprob.temperature = T;
      const auto ref = grpo::fused_grpo_step(o, grpo::make_view(lg.data(), {p.B, p.T, p.V}),
                                             grpo::make_view(p.ids.data(), {p.B, p.T}), p.batch(),
                                             grpo::make_view(gl.data(), {p.B, p.T, p.V}), fo);
      std::vector<double> dh(p.h.size(), 0.0), dw(p.w.size(), 0.0);
      for (index_t k = 0; k < p.B * p.T; ++k)
        for (index_t v = 0; v < p.V; ++v) {
          const double g = gl[k * p.V + v];
          if (g == 0.0) continue;
          for (index_t d = 0; d < p.H; ++d) {
            dh[k * p.H + d] += g * p.w[v * p.H + d];
            dw[v * p.H + d] += g * p.h[k * p.H + d];
          }
        }
      double mh = 0, mw = 0;
      for (double v : dh) mh = grpo_test::scale_max(mh, std::abs(v));
      for (double v : dw) mw = grpo_test::scale_max(mw, std::abs(v));
      for (index_t chunk : {1, 3, 64}) {
        for (index_t vchunk : {0, 64, 299}) {
          INFO(std::string(name) << " T " << T << " chunk " << chunk << " vchunk " << vchunk);
          std::vector<float> gh, gw;
          const auto r = run_linear(p, o, T, chunk, vchunk, gh, gw);
          CHECK(r.loss == doctest::Approx(ref.loss).epsilon(1e-5));
          for (std::size_t k = 0; k < r.logp.size(); ++k)
            CHECK(std::abs(r.logp[k] - ref.logp[k]) <= 2e-5);
          double eh = 0, ew = 0;
          for (std::size_t k = 0; k < gh.size(); ++k)
            eh = grpo_test::err_max(eh, std::abs(gh[k] - dh[k]));
          for (std::size_t k = 0; k < gw.size(); ++k)
            ew = grpo_test::err_max(ew, std::abs(gw[k] - dw[k]));
          CHECK(mh > 0);
          CHECK(eh <= 1e-4 * mh);
          CHECK(ew <= 1e-4 * mw);
          // Masked tokens get exactly zero hidden gradient.
          for (index_t k = 0; k < p.B * p.T; ++k)
            if (p.mask[k] == 0.0f)
              for (index_t d = 0; d < p.H; ++d) CHECK(gh[k * p.H + d] == 0.0f);
        }
      }
    }
  }
}

TEST_CASE("linear_log_softmax: equals selective_log_softmax on the materialised logits" *
          doctest::test_suite("logprob")) {
  lin_problem p(1, 9, 16, 257, 2);
  const auto lg = p.logits();
  const index_t N = p.T;
  std::vector<float> a(N), ha(N), la(N), b(N), hb(N), lb(N);
  std::vector<std::int64_t> ids(p.ids.begin(), p.ids.end());
  ids[4] = -100;
  grpo::fused_linear_options fo;
  fo.vocab_chunk = 100;
  fo.chunk_tokens = 4;
  fo.logprob.temperature = 0.9f;
  grpo::linear_log_softmax(grpo::make_view(static_cast<const float*>(p.h.data()), {N, p.H}),
                           grpo::make_view(static_cast<const float*>(p.w.data()), {p.V, p.H}),
                           grpo::make_view(ids.data(), {N}), grpo::make_view(a.data(), {N}),
                           grpo::make_view(ha.data(), {N}), grpo::make_view(la.data(), {N}), fo);
  grpo::selective_log_softmax(grpo::make_view(lg.data(), {N, p.V}),
                              grpo::make_view(ids.data(), {N}), grpo::make_view(b.data(), {N}),
                              grpo::make_view(lb.data(), {N}), grpo::make_view(hb.data(), {N}),
                              fo.logprob);
  for (index_t k = 0; k < N; ++k) {
    CHECK(std::abs(a[k] - b[k]) <= 2e-5);
    CHECK(std::abs(ha[k] - hb[k]) <= 2e-5);
    CHECK(std::abs(la[k] - lb[k]) <= 2e-5 * std::max(1.0f, std::abs(lb[k])));
  }
  CHECK(a[4] == 0.0f);
}

TEST_CASE("fused_linear_grpo_step: central finite differences in hidden and weight" *
          doctest::test_suite("logprob")) {
  lin_problem p(1, 3, 6, 9, 4);
  for (const char* name : {"trl_dapo", "trl_gspo"}) {
    auto o = grpo::preset(name);
    o.policy.eps_low = o.policy.eps_high = 10.0;
    o.entropy_coef = 0.1;
    std::vector<float> gh, gw, t1, t2;
    run_linear(p, o, 0.8f, 2, 4, gh, gw);
    double m = 0;
    for (float v : gh) m = grpo_test::scale_max(m, static_cast<double>(std::abs(v)));
    for (float v : gw) m = grpo_test::scale_max(m, static_cast<double>(std::abs(v)));
    auto fd = [&](std::vector<float> lin_problem::*member, std::size_t k) {
      lin_problem q = p;
      const float e = 1e-2f;
      (q.*member)[k] = (p.*member)[k] + e;
      const double lp = run_linear(q, o, 0.8f, 2, 4, t1, t2).loss;
      (q.*member)[k] = (p.*member)[k] - e;
      const double lm = run_linear(q, o, 0.8f, 2, 4, t1, t2).loss;
      return (lp - lm) / (2.0 * e);
    };
    for (std::size_t k = 0; k < p.h.size(); ++k) {
      INFO(std::string(name) << " dh " << k);
      CHECK(std::abs(fd(&lin_problem::h, k) - gh[k]) <= 2e-3 * m);
    }
    for (std::size_t k = 0; k < p.w.size(); ++k) {
      INFO(std::string(name) << " dw " << k);
      CHECK(std::abs(fd(&lin_problem::w, k) - gw[k]) <= 2e-3 * m);
    }
  }
}

TEST_CASE("fused_linear_grpo_step: invalid input gives grpo::error" *
          doctest::test_suite("logprob")) {
  lin_problem p(1, 2, 4, 5, 6);
  std::vector<float> gh, gw;
  auto o = grpo::preset("trl_dapo");
  p.ids[0] = 5;
  CHECK_THROWS_AS(run_linear(p, o, 1.0f, 2, 0, gh, gw), grpo::error);
  p.ids[0] = 1;
  p.h[1] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(run_linear(p, o, 1.0f, 2, 0, gh, gw), grpo::error);
  p.h[1] = 0.0f;
  // Column-major weight (hidden dimension strided) is refused.
  CHECK_THROWS_AS(grpo::fused_linear_grpo_step(
                      o, grpo::make_view(static_cast<const float*>(p.h.data()), {1, 2, 4}),
                      grpo::make_view(static_cast<const float*>(p.w.data()), {5, 4}, {1, 5}),
                      grpo::make_view(p.ids.data(), {1, 2}), p.batch(),
                      grpo::make_view(gh.data(), {1, 2, 4}), grpo::make_view(gw.data(), {5, 4})),
                  grpo::error);
}

// SPDX-License-Identifier: Apache-2.0
// Tests of grpo/fused_grpo.hpp: the fused step equals the unfused composition
// (selective_log_softmax -> compute_loss -> selective_log_softmax_backward) for every preset, the
// single-pass and two-phase schedules agree, the gradient matches central finite differences of
// the returned loss, in-place works, and a hand-computed on-policy case.
#include <grpo/fused_grpo.hpp>
#include <grpo/presets.hpp>

#include <doctest/doctest.h>
#include <support/compare.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

using grpo::index_t;

struct problem {
  index_t B = 3, T = 5, V = 11;
  std::vector<float> logits, old_lp, ref_lp, adv, mask, smp;
  std::vector<std::int32_t> ids;
  std::vector<unsigned char> trunc;
  explicit problem(index_t b, index_t t, index_t v, std::uint32_t seed) : B(b), T(t), V(v) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> n01(0.0f, 1.0f);
    std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(V - 1));
    logits.resize(static_cast<std::size_t>(B * T * V));
    for (auto& x : logits) x = 1.5f * n01(rng);
    for (index_t k = 0; k < B * T; ++k) {
      ids.push_back(pick(rng));
      adv.push_back(n01(rng));
      ref_lp.push_back(-2.0f + 0.5f * n01(rng));
      mask.push_back((k % 7 == 6) ? 0.0f : 1.0f);
      smp.push_back(0.0f);
    }
    // old_logp near the current logp so that ratios straddle the clip range.
    std::vector<float> lp(static_cast<std::size_t>(B * T));
    grpo::selective_log_softmax(grpo::make_view(logits.data(), {B * T, V}),
                                grpo::make_view(ids.data(), {B * T}),
                                grpo::make_view(lp.data(), {B * T}));
    for (index_t k = 0; k < B * T; ++k) {
      old_lp.push_back(lp[k] + 0.25f * n01(rng));
      smp[k] = old_lp[k] + 0.1f * n01(rng);
    }
    trunc.assign(static_cast<std::size_t>(B), 0);
  }
  grpo::loss_batch<float, float> batch() const {
    grpo::loss_batch<float, float> b;
    b.old_logp = grpo::make_view(old_lp.data(), {B, T});
    b.ref_logp = grpo::make_view(ref_lp.data(), {B, T});
    b.advantages = grpo::make_view(adv.data(), {B, T});
    b.mask = grpo::make_view(mask.data(), {B, T});
    b.sampler_logp = grpo::make_view(smp.data(), {B, T});
    b.truncated = std::span<const unsigned char>(trunc);
    return b;
  }
};

grpo::loss_options options_for(const std::string& name, double entropy_coef = 0.01) {
  auto o = grpo::preset(name);
  o.kl_coef = 0.05;               // exercise the KL term everywhere
  o.entropy_coef = entropy_coef;  // 0: the single pass reuses the statistics pass's exps
  return o;
}

/// Unfused reference: forward, compute_loss, backward, all separately (double-checked library
/// parts).
std::vector<float> unfused_grad(const problem& p, const grpo::loss_options& o, float temperature,
                                double* loss_out) {
  const index_t N = p.B * p.T;
  std::vector<float> lp(N), h(N);
  // Masked rows use ignore_index so that their ids are not read.
  std::vector<std::int64_t> ids(N);
  for (index_t k = 0; k < N; ++k) ids[k] = (p.mask[k] != 0 && !p.trunc[k / p.T]) ? p.ids[k] : -100;
  grpo::logprob_options lo;
  lo.temperature = temperature;
  grpo::selective_log_softmax(grpo::make_view(p.logits.data(), {N, p.V}),
                              grpo::make_view(ids.data(), {N}), grpo::make_view(lp.data(), {N}), {},
                              grpo::make_view(h.data(), {N}), lo);
  auto b = p.batch();
  b.logp = grpo::make_view(static_cast<const float*>(lp.data()), {p.B, p.T});
  // Entropies go to the loss only when an option uses them, as the fused step does (compute_loss
  // has a separate token-level fast path without them whose sums differ by ~1e-7 relative).
  if (o.entropy_coef != 0.0 || o.top_entropy_quantile < 1.0)
    b.entropy = grpo::make_view(static_cast<const float*>(h.data()), {p.B, p.T});
  auto r = grpo::compute_loss(o, b);
  if (loss_out) *loss_out = r.loss;
  std::vector<float> glp(r.grad_logp.begin(), r.grad_logp.end()),
      gh(r.grad_entropy.begin(), r.grad_entropy.end());
  std::vector<float> g(p.logits.size());
  grpo::selective_log_softmax_backward(
      grpo::make_view(p.logits.data(), {N, p.V}), grpo::make_view(ids.data(), {N}),
      grpo::make_view(glp.data(), {N}), grpo::make_view(gh.data(), {N}),
      grpo::make_view(g.data(), {N, p.V}), lo);
  return g;
}

grpo::fused_grpo_result fused(const problem& p, const grpo::loss_options& o, float temperature,
                              grpo::fused_schedule s, std::vector<float>& g,
                              bool entropy_needed = true) {
  (void)entropy_needed;
  grpo::fused_grpo_options fo;
  fo.logprob.temperature = temperature;
  fo.schedule = s;
  fo.chunk_tokens = 2;
  g.assign(p.logits.size(), -7.0f);
  return grpo::fused_grpo_step(o, grpo::make_view(p.logits.data(), {p.B, p.T, p.V}),
                               grpo::make_view(p.ids.data(), {p.B, p.T}), p.batch(),
                               grpo::make_view(g.data(), {p.B, p.T, p.V}), fo);
}

const char* presets[] = {"trl_grpo",  "trl_bnpo",  "trl_dr_grpo", "trl_dapo",      "trl_cispo",
                         "trl_sapo",  "trl_luspo", "trl_vespo",   "trl_gspo",      "verl_vanilla",
                         "verl_gspo", "verl_sapo", "verl_cispo",  "verl_geo_mean", "openrlhf"};

}  // namespace

TEST_CASE("fused_grpo_step: equals forward + compute_loss + backward for every preset" *
          doctest::test_suite("logprob")) {
  problem p(3, 6, 300, 1);
  p.trunc[1] = 1;  // a truncated sequence: zero gradient rows
  for (const char* name : presets) {
    for (float T : {1.0f, 0.7f}) {
      INFO(name << " T " << T);
      const auto o = options_for(name, T == 1.0f ? 0.01 : 0.0);
      double loss_ref = 0;
      const auto g_ref = unfused_grad(p, o, T, &loss_ref);
      std::vector<float> g;
      const auto r = fused(p, o, T, grpo::fused_schedule::automatic, g);
      CHECK(r.loss == doctest::Approx(loss_ref).epsilon(1e-12));
      double gmax = 0, err = 0;
      for (std::size_t k = 0; k < g.size(); ++k) {
        gmax = grpo_test::scale_max(gmax, static_cast<double>(std::abs(g_ref[k])));
        err = grpo_test::err_max(err, static_cast<double>(std::abs(g[k] - g_ref[k])));
      }
      CHECK(gmax > 0);
      CHECK(err <= 1e-6 * gmax);
      if (grpo::fused_single_pass_ok(o)) {
        CHECK(r.schedule_used == grpo::fused_schedule::single_pass);
        std::vector<float> g2;
        const auto r2 = fused(p, o, T, grpo::fused_schedule::two_phase, g2);
        CHECK(r2.loss == doctest::Approx(r.loss).epsilon(1e-12));
        CHECK(r2.metrics.clip_region.sum ==
              doctest::Approx(r.metrics.clip_region.sum).epsilon(1e-12));
        double e2 = 0;
        for (std::size_t k = 0; k < g.size(); ++k)
          e2 = grpo_test::err_max(e2, static_cast<double>(std::abs(g[k] - g2[k])));
        CHECK(e2 <= 1e-6 * gmax);
      } else {
        CHECK(r.schedule_used == grpo::fused_schedule::two_phase);
      }
    }
  }
}

TEST_CASE("fused_grpo_step: gradient matches central finite differences of the loss" *
          doctest::test_suite("logprob")) {
  // Small problem in float; the loss is re-evaluated by the fused step itself at x +- h.
  problem p(2, 3, 5, 3);
  // (CISPO / VESPO / REINFORCE weights are stop-gradient by definition: their analytic gradient is
  // not the derivative of the loss value, so they are covered by the composition test only.)
  for (const char* name : {"trl_dapo", "trl_gspo", "verl_geo_mean", "verl_vanilla", "trl_sapo"}) {
    for (float T : {1.0f, 0.8f}) {
      auto o = options_for(name);
      o.policy.eps_low = o.policy.eps_high = 10.0;  // away from clip kinks for FD
      std::vector<float> g, gtmp;
      fused(p, o, T, grpo::fused_schedule::automatic, g);
      double gmax = 0;
      for (float v : g) gmax = grpo_test::scale_max(gmax, static_cast<double>(std::abs(v)));
      for (std::size_t k = 0; k < p.logits.size(); ++k) {
        problem q = p;
        const float h = 3e-3f;
        q.logits[k] = p.logits[k] + h;
        const double lp = fused(q, o, T, grpo::fused_schedule::automatic, gtmp).loss;
        q.logits[k] = p.logits[k] - h;
        const double lm = fused(q, o, T, grpo::fused_schedule::automatic, gtmp).loss;
        const double fd = (lp - lm) / (2.0 * h);
        INFO(std::string(name) << " T " << T << " k " << k << " fd " << fd << " g " << g[k]);
        CHECK(std::abs(fd - g[k]) <= 2e-3 * gmax + 1e-3 * std::abs(fd));
      }
    }
  }
}

TEST_CASE("fused_grpo_step: hand-computed on-policy PPO with token mean" *
          doctest::test_suite("logprob")) {
  // On policy (old = current), r = 1 inside the clip range: loss = -(1/N) sum A_t, and
  // dL/dx_tj = -(A_t / N) (delta_{j y_t} - q_tj).
  const index_t V = 4;
  std::vector<float> x = {0.0f, 1.0f, 2.0f, 3.0f, /* row 2 */ -1.0f, -1.0f, 0.5f, 0.0f};
  std::vector<std::int32_t> ids = {2, 0};
  std::vector<float> A = {0.5f, -2.0f}, m = {1.0f, 1.0f}, old(2);
  std::vector<float> lp(2);
  grpo::selective_log_softmax(grpo::make_view(x.data(), {2, V}), grpo::make_view(ids.data(), {2}),
                              grpo::make_view(lp.data(), {2}));
  old = lp;
  grpo::loss_options o;  // ppo_clip, token_mean
  grpo::loss_batch<float, float> b;
  b.old_logp = grpo::make_view(old.data(), {1, 2});
  b.advantages = grpo::make_view(A.data(), {1, 2});
  b.mask = grpo::make_view(m.data(), {1, 2});
  std::vector<float> g(8);
  const auto r = grpo::fused_grpo_step(o, grpo::make_view(x.data(), {1, 2, V}),
                                       grpo::make_view(ids.data(), {1, 2}), b,
                                       grpo::make_view(g.data(), {1, 2, V}));
  CHECK(r.loss == doctest::Approx(-(0.5 - 2.0) / 2.0).epsilon(1e-6));
  for (int t = 0; t < 2; ++t) {
    double s = 0;
    for (int j = 0; j < V; ++j) s += std::exp(static_cast<double>(x[t * V + j]));
    for (int j = 0; j < V; ++j) {
      const double q = std::exp(static_cast<double>(x[t * V + j])) / s;
      const double want = -(A[t] / 2.0) * ((j == ids[t] ? 1.0 : 0.0) - q);
      CHECK(g[t * V + j] == doctest::Approx(want).epsilon(1e-5));
    }
  }
}

TEST_CASE("fused_grpo_step: in place, bf16 logits, masked rows and errors" *
          doctest::test_suite("logprob")) {
  problem p(2, 4, 257, 9);
  const auto o = options_for("trl_dapo");
  std::vector<float> g;
  const auto r = fused(p, o, 1.0f, grpo::fused_schedule::automatic, g);
  // In place over a copy of the logits.
  std::vector<float> buf = p.logits;
  grpo::fused_grpo_options fo;
  auto view = grpo::make_view(buf.data(), {p.B, p.T, p.V});
  const auto r2 = grpo::fused_grpo_step(o, view, grpo::make_view(p.ids.data(), {p.B, p.T}),
                                        p.batch(), view, fo);
  CHECK(r2.loss == r.loss);
  CHECK(buf == g);
  // Masked token rows are exactly zero; their ids are never read (set one out of range).
  for (index_t k = 0; k < p.B * p.T; ++k)
    if (p.mask[k] == 0.0f) {
      p.ids[k] = 1 << 30;
      for (index_t j = 0; j < p.V; ++j) CHECK(g[k * p.V + j] == 0.0f);
    }
  CHECK_NOTHROW(fused(p, o, 1.0f, grpo::fused_schedule::automatic, g));
  // bf16 logits: gradient close to the fp32 gradient of the same (rounded) logits.
  std::vector<grpo::bfloat16> xb(p.logits.size());
  std::vector<float> xr(p.logits.size());
  for (std::size_t k = 0; k < xb.size(); ++k) {
    xb[k] = grpo::bfloat16(p.logits[k]);
    xr[k] = static_cast<float>(xb[k]);
  }
  std::vector<grpo::bfloat16> gb(xb.size());
  grpo::fused_grpo_step(
      o, grpo::make_view(static_cast<const grpo::bfloat16*>(xb.data()), {p.B, p.T, p.V}),
      grpo::make_view(p.ids.data(), {p.B, p.T}), p.batch(),
      grpo::make_view(gb.data(), {p.B, p.T, p.V}));
  problem pr = p;
  pr.logits = xr;
  std::vector<float> gr;
  fused(pr, o, 1.0f, grpo::fused_schedule::automatic, gr);
  int bad = 0;
  for (std::size_t k = 0; k < gb.size(); ++k) {
    const float want = static_cast<float>(grpo::bfloat16(gr[k]));
    bad += std::abs(static_cast<float>(gb[k]) - want) > std::abs(want) * (1.0f / 128.0f) + 1e-12f;
  }
  CHECK(bad == 0);
  // Errors: an out-of-range id on a valid token, NaN logit on a valid row, single_pass refused.
  p.ids[0] = static_cast<std::int32_t>(p.V);
  CHECK_THROWS_WITH_AS(fused(p, o, 1.0f, grpo::fused_schedule::automatic, g),
                       doctest::Contains("[grpo.out_of_range]"), grpo::error);
  p.ids[0] = 0;
  p.logits[3] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH_AS(fused(p, o, 1.0f, grpo::fused_schedule::automatic, g),
                       doctest::Contains("NaN"), grpo::error);
  p.logits[3] = 0.0f;
  CHECK_THROWS_WITH_AS(
      fused(p, options_for("trl_gspo"), 1.0f, grpo::fused_schedule::single_pass, g),
      doctest::Contains("[grpo.bad_option]"), grpo::error);
}

TEST_CASE("fused_grpo_step: multi-block rows, fp32 and bf16, cached and entropy gradient paths" *
          doctest::test_suite("logprob")) {
  // V = 4099: two whole 2048-blocks and a partial one, rows starting at every alignment (the
  // non-temporal stores of the AVX-512 path peel a head to a 64-byte boundary), a partial last
  // vector. entropy_coef 0 takes the cached-exponential gradient, 0.01 the recomputing one.
  problem p(2, 3, 4099, 21);
  for (double ec : {0.0, 0.01}) {
    INFO("entropy_coef " << ec);
    const auto o = options_for("trl_dapo", ec);
    double loss_ref = 0;
    const auto g_ref = unfused_grad(p, o, 0.8f, &loss_ref);
    std::vector<float> g;
    const auto r = fused(p, o, 0.8f, grpo::fused_schedule::automatic, g);
    CHECK(r.loss == doctest::Approx(loss_ref).epsilon(1e-12));
    double gmax = 0, err = 0;
    for (std::size_t k = 0; k < g.size(); ++k) {
      gmax = grpo_test::scale_max(gmax, static_cast<double>(std::abs(g_ref[k])));
      err = grpo_test::err_max(err, static_cast<double>(std::abs(g[k] - g_ref[k])));
    }
    CHECK(gmax > 0);
    CHECK(err <= 1e-6 * gmax);
    // bf16 logits and bf16 gradient: within one bf16 rounding of the fp32 gradient of the same
    // (rounded) logits, masked rows exactly 0.
    std::vector<grpo::bfloat16> xb(p.logits.size()), gb(p.logits.size(), grpo::bfloat16(5.0f));
    problem pr = p;
    for (std::size_t k = 0; k < xb.size(); ++k) {
      xb[k] = grpo::bfloat16(p.logits[k]);
      pr.logits[k] = static_cast<float>(xb[k]);
    }
    grpo::fused_grpo_options fo;
    fo.logprob.temperature = 0.8f;
    const auto rb = grpo::fused_grpo_step(
        o, grpo::make_view(static_cast<const grpo::bfloat16*>(xb.data()), {p.B, p.T, p.V}),
        grpo::make_view(p.ids.data(), {p.B, p.T}), p.batch(),
        grpo::make_view(gb.data(), {p.B, p.T, p.V}), fo);
    std::vector<float> gr;
    const auto rr = fused(pr, o, 0.8f, grpo::fused_schedule::automatic, gr);
    CHECK(rb.loss == doctest::Approx(rr.loss).epsilon(1e-9));
    int bad = 0;
    for (std::size_t k = 0; k < gb.size(); ++k) {
      const float want = static_cast<float>(grpo::bfloat16(gr[k]));
      bad += std::abs(static_cast<float>(gb[k]) - want) > std::abs(want) * (1.0f / 128.0f) + 1e-12f;
    }
    CHECK(bad == 0);
  }
}

TEST_CASE("fused_grpo_step: pipelined bf16 gradients (chunks, masks, in place, errors)" *
          doctest::test_suite("logprob")) {
  // 16-bit gradients without an entropy term take the AVX-512 software pipeline (the gradient of
  // chunk c - 1 written during the statistics of chunk c): chunk boundaries, masked and truncated
  // rows between pipelined ones, fewer rows in the last chunk of a sequence, in place, and a NaN
  // row with a pending row must all give the per-chunk schedule's (portable) values.
  problem p(3, 7, 2100, 33);  // 7 = 3 chunks of 3, 3 and 1 tokens
  p.mask[4] = 0.0f;           // masked row with a pending row before and after it
  p.trunc[1] = 1;             // a whole truncated sequence between two pipelined ones
  const auto o = options_for("trl_dapo", 0.0);
  std::vector<grpo::bfloat16> xb(p.logits.size());
  problem pr = p;
  for (std::size_t k = 0; k < xb.size(); ++k) {
    xb[k] = grpo::bfloat16(p.logits[k]);
    pr.logits[k] = static_cast<float>(xb[k]);
  }
  std::vector<float> gr;
  const auto rr = fused(pr, o, 1.0f, grpo::fused_schedule::automatic, gr);  // fp32, chunk 2
  for (index_t chunk : {index_t(3), index_t(0)}) {
    INFO("chunk_tokens " << chunk);
    grpo::fused_grpo_options fo;
    fo.chunk_tokens = chunk;
    std::vector<grpo::bfloat16> gb(xb.size(), grpo::bfloat16(5.0f));
    const auto rb = grpo::fused_grpo_step(
        o, grpo::make_view(static_cast<const grpo::bfloat16*>(xb.data()), {p.B, p.T, p.V}),
        grpo::make_view(p.ids.data(), {p.B, p.T}), p.batch(),
        grpo::make_view(gb.data(), {p.B, p.T, p.V}), fo);
    CHECK(rb.loss == doctest::Approx(rr.loss).epsilon(1e-9));
    int bad = 0;
    for (std::size_t k = 0; k < gb.size(); ++k) {
      const float want = static_cast<float>(grpo::bfloat16(gr[k]));
      bad += std::abs(static_cast<float>(gb[k]) - want) > std::abs(want) * (1.0f / 128.0f) + 1e-12f;
    }
    CHECK(bad == 0);
    // In place over a copy of the bf16 logits: bit-identical to out of place.
    std::vector<grpo::bfloat16> buf = xb;
    auto view = grpo::make_view(buf.data(), {p.B, p.T, p.V});
    const auto ri = grpo::fused_grpo_step(o, view, grpo::make_view(p.ids.data(), {p.B, p.T}),
                                          p.batch(), view, fo);
    CHECK(ri.loss == rb.loss);
    CHECK(buf == gb);
  }
  // A NaN in a row of the second chunk (a pending row exists): grpo::error naming the row.
  xb[static_cast<std::size_t>((2 * p.T + 4) * p.V + 17)] =
      grpo::bfloat16(std::numeric_limits<float>::quiet_NaN());
  std::vector<grpo::bfloat16> gb(xb.size());
  grpo::fused_grpo_options fo;
  fo.chunk_tokens = 3;
  CHECK_THROWS_WITH_AS(
      grpo::fused_grpo_step(
          o, grpo::make_view(static_cast<const grpo::bfloat16*>(xb.data()), {p.B, p.T, p.V}),
          grpo::make_view(p.ids.data(), {p.B, p.T}), p.batch(),
          grpo::make_view(gb.data(), {p.B, p.T, p.V}), fo),
      doctest::Contains("row 18"), grpo::error);
}

TEST_CASE("fused_grpo_step: the software pipeline (forced on) gives the per-chunk schedule's bits" *
          doctest::test_suite("logprob")) {
  // fused_pipeline::automatic runs the pipeline on AVX-512 only; `on` runs its text on this CPU's
  // path (GRPO_ISA reruns: baseline and AVX2), which must equal the per-chunk schedule bit for
  // bit (the pipelined sweep writes row_grad_cached's values): bf16 and fp16 gradients, chunk
  // boundaries, masked / truncated rows between pipelined ones, in place.
  problem p(3, 7, 2100, 41);
  p.mask[4] = 0.0f;
  p.trunc[1] = 1;
  const auto o = options_for("trl_dapo", 0.0);
  auto run = [&](auto tag, grpo::fused_pipeline pl, index_t chunk, bool inplace) {
    using H = decltype(tag);
    std::vector<H> x(p.logits.size()), g(p.logits.size(), H(5.0f));
    for (std::size_t k = 0; k < x.size(); ++k) x[k] = H(p.logits[k]);
    grpo::fused_grpo_options fo;
    fo.chunk_tokens = chunk;
    fo.pipeline = pl;
    grpo::fused_grpo_result r;
    if (inplace) {
      auto v = grpo::make_view(x.data(), {p.B, p.T, p.V});
      r = grpo::fused_grpo_step(o, v, grpo::make_view(p.ids.data(), {p.B, p.T}), p.batch(), v, fo);
      g = x;
    } else {
      r = grpo::fused_grpo_step(o,
                                grpo::make_view(static_cast<const H*>(x.data()), {p.B, p.T, p.V}),
                                grpo::make_view(p.ids.data(), {p.B, p.T}), p.batch(),
                                grpo::make_view(g.data(), {p.B, p.T, p.V}), fo);
    }
    return std::make_pair(r, g);
  };
  for (index_t chunk : {index_t(3), index_t(1), index_t(0)})
    for (bool inplace : {false, true}) {
      INFO("chunk " << chunk << " in place " << inplace);
      const auto [ra, ga] = run(grpo::bfloat16{}, grpo::fused_pipeline::on, chunk, inplace);
      const auto [rb, gb] = run(grpo::bfloat16{}, grpo::fused_pipeline::off, chunk, inplace);
      CHECK(ra.pipelined);
      CHECK_FALSE(rb.pipelined);
      CHECK(ra.loss == rb.loss);
      CHECK(ra.logp == rb.logp);
      CHECK(std::memcmp(ga.data(), gb.data(), ga.size() * sizeof(grpo::bfloat16)) == 0);
      const auto [rc, gc] = run(grpo::float16{}, grpo::fused_pipeline::on, chunk, inplace);
      const auto [rd, gd] = run(grpo::float16{}, grpo::fused_pipeline::off, chunk, inplace);
      CHECK(rc.pipelined);
      CHECK(rc.loss == rd.loss);
      CHECK(std::memcmp(gc.data(), gd.data(), gc.size() * sizeof(grpo::float16)) == 0);
    }
  // automatic: pipelined exactly where the kernel path is AVX-512.
  const auto [re, ge] = run(grpo::bfloat16{}, grpo::fused_pipeline::automatic, 3, false);
  CHECK(re.pipelined == (grpo::vocab::kernel_isa() == grpo::isa::avx512));
  // fp32 gradients and an entropy term never pipeline.
  std::vector<float> g;
  grpo::fused_grpo_options fo;
  fo.pipeline = grpo::fused_pipeline::on;
  const auto rf =
      grpo::fused_grpo_step(o, grpo::make_view(p.logits.data(), {p.B, p.T, p.V}),
                            grpo::make_view(p.ids.data(), {p.B, p.T}), p.batch(),
                            grpo::make_view((g = p.logits).data(), {p.B, p.T, p.V}), fo);
  CHECK_FALSE(rf.pipelined);
}

TEST_CASE("fused_grpo_step: errors leave from the lowest failing chunk, whatever the threads" *
          doctest::test_suite("logprob")) {
  problem p(4, 8, 700, 43);
  const auto o = options_for("trl_dapo", 0.0);
  for (int threads : {1, 2}) {
    for (auto pl : {grpo::fused_pipeline::off, grpo::fused_pipeline::on}) {
      INFO("threads " << threads << " pipeline " << static_cast<int>(pl));
      problem q = p;
      q.logits[static_cast<std::size_t>((3 * q.T + 5) * q.V + 9)] = std::nanf("");  // row 29
      q.logits[static_cast<std::size_t>((1 * q.T + 2) * q.V + 1)] =
          std::numeric_limits<float>::infinity();  // row 10: the lowest
      std::vector<grpo::bfloat16> x(q.logits.size()), g(q.logits.size());
      for (std::size_t k = 0; k < x.size(); ++k) x[k] = grpo::bfloat16(q.logits[k]);
      grpo::fused_grpo_options fo;
      fo.chunk_tokens = 3;
      fo.pipeline = pl;
      fo.logprob.num_threads = threads;
      auto call = [&] {
        return grpo::fused_grpo_step(
            o, grpo::make_view(static_cast<const grpo::bfloat16*>(x.data()), {q.B, q.T, q.V}),
            grpo::make_view(q.ids.data(), {q.B, q.T}), q.batch(),
            grpo::make_view(g.data(), {q.B, q.T, q.V}), fo);
      };
      CHECK_THROWS_WITH_AS(call(), doctest::Contains("logits row 10 contains NaN"), grpo::error);
      // A loss error (non-finite old_logp on a valid token) in a lower chunk than a logits error
      // leaves first (the chunk order is the row order).
      q.old_lp[static_cast<std::size_t>(0 * q.T + 4)] = std::nanf("");
      CHECK_THROWS_WITH_AS(call(), doctest::Contains("old_logp: non-finite"), grpo::error);
    }
  }
}

TEST_CASE("fused_grpo_step: seq-mask TIS and OpenRLHF float32 KL run two phases, exactly" *
          doctest::test_suite("logprob")) {
  // Their coefficients are row-wide (seq-mask TIS keeps or drops a whole row on its mean log
  // weight) or batch-wide (torch's float32 KL sum): automatic takes two phases and matches the
  // unfused composition; single_pass is refused with a named error.
  problem p(3, 9, 200, 45);
  for (std::size_t k = 0; k < p.smp.size(); ++k)  // row 0 kept only as a whole
    p.smp[k] = p.old_lp[k] - ((k % p.T) < 4 ? 1.2f : -0.9f);
  auto seqmask = options_for("trl_dapo", 0.0);
  seqmask.tis.enabled = true;
  seqmask.tis.seq_mask = true;
  seqmask.tis.c_min = 0.5;
  seqmask.tis.c_max = 2.0;
  grpo::openrlhf_args a;
  a.algo.kl.use_loss = true;
  a.algo.kl.estimator = "k3";
  a.emulate_float32 = true;
  auto f32kl = grpo::from_openrlhf(a);
  f32kl.kl_coef = 0.01;
  for (const auto& o : {seqmask, f32kl}) {
    CHECK_FALSE(grpo::fused_single_pass_ok(o));
    double loss_ref = 0;
    const auto g_ref = unfused_grad(p, o, 1.0f, &loss_ref);
    std::vector<float> g;
    const auto r = fused(p, o, 1.0f, grpo::fused_schedule::automatic, g);
    CHECK(r.schedule_used == grpo::fused_schedule::two_phase);
    CHECK(r.loss == doctest::Approx(loss_ref).epsilon(1e-12));
    double gmax = 0, err = 0;
    for (std::size_t k = 0; k < g.size(); ++k) {
      gmax = grpo_test::scale_max(gmax, static_cast<double>(std::abs(g_ref[k])));
      err = grpo_test::err_max(err, static_cast<double>(std::abs(g[k] - g_ref[k])));
    }
    CHECK(gmax > 0);
    CHECK(err <= 1e-6 * gmax);
    CHECK_THROWS_WITH_AS(fused(p, o, 1.0f, grpo::fused_schedule::single_pass, g),
                         doctest::Contains("need two_phase"), grpo::error);
  }
}

TEST_CASE("fused_grpo_step: the gradient does not depend on the chunk length, every loss-row path" *
          doctest::test_suite("logprob")) {
  // The loss rows give a token the same bits wherever it sits in the row (packet rows: masked
  // tail steps; lane-generic rows: a padded tail step), so the fused step's chunked coefficients
  // (loss_chunk_plan, chunks of any length) and therefore its logits gradient are the same for
  // every chunk length, in place or not; with the entropy term too (its sweep on the token rows).
  // On this CPU's path and on baseline (the lane-generic rows for these float inputs).
  problem p(3, 37, 65, 77);
  p.mask[5] = 0.5f;
  std::vector<grpo::isa> paths = {grpo::active_isa()};
  if (paths[0] != grpo::isa::baseline) paths.push_back(grpo::isa::baseline);
  int compared = 0;
  for (const grpo::isa path : paths) {
    const grpo::scoped_isa_limit pin(path);
    for (const char* name : {"trl_grpo", "trl_dapo", "trl_cispo", "trl_sapo", "verl_vanilla"})
      for (double ec : {0.0, 0.01}) {
        const auto o = options_for(name, ec);
        auto run = [&](index_t chunk, bool inplace, std::vector<float>& g) {
          grpo::fused_grpo_options fo;
          fo.chunk_tokens = chunk;
          fo.schedule = grpo::fused_schedule::single_pass;
          std::vector<float> x = p.logits;
          g.assign(x.size(), -7.0f);
          auto gv = grpo::make_view((inplace ? x : g).data(), {p.B, p.T, p.V});
          const auto r = grpo::fused_grpo_step(
              o, grpo::make_view(static_cast<const float*>(x.data()), {p.B, p.T, p.V}),
              grpo::make_view(p.ids.data(), {p.B, p.T}), p.batch(), gv, fo);
          if (inplace) g = x;
          return r;
        };
        std::vector<float> g0;
        const auto r0 = run(0, false, g0);  // one chunk per row (the default length)
        for (index_t chunk :
             {index_t(1), index_t(2), index_t(3), index_t(5), index_t(7), index_t(16), index_t(37)})
          for (bool inplace : {false, true}) {
            INFO(name << " entropy_coef " << ec << " path " << std::string(grpo::isa_name(path))
                      << " chunk " << chunk << " in place " << inplace);
            std::vector<float> g;
            const auto r = run(chunk, inplace, g);
            CHECK(r.loss == r0.loss);
            CHECK(std::memcmp(g.data(), g0.data(), g.size() * sizeof(float)) == 0);
            ++compared;
          }
      }
  }
  CHECK(compared == static_cast<int>(paths.size()) * 5 * 2 * 7 * 2);
}

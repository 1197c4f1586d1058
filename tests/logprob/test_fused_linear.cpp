// SPDX-License-Identifier: Apache-2.0
// Tests of grpo/fused_linear.hpp: equals the materialised path (logits = h W^T, then
// fused_grpo_step, then dH = G W and dW = G^T h in double) for token-local and sequence-level
// presets, several chunkings and temperatures; forward-only linear_log_softmax equals
// selective_log_softmax on the logits; central finite differences in hidden and W; errors.
#include <grpo/fused_linear.hpp>
#include <grpo/presets.hpp>

#include <doctest/doctest.h>
#include <support/compare.hpp>
#include <support/expect_error.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <string>
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
  CHECK_THROWS_WITH_AS(run_linear(p, o, 1.0f, 2, 0, gh, gw), doctest::Contains("[grpo.out_of_range]"), grpo::error);
  p.ids[0] = 1;
  p.h[1] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH_AS(run_linear(p, o, 1.0f, 2, 0, gh, gw), doctest::Contains("[grpo.bad_value]"), grpo::error);
  p.h[1] = 0.0f;
  // Column-major weight (hidden dimension strided) is refused.
  CHECK_THROWS_WITH_AS(grpo::fused_linear_grpo_step(
                      o, grpo::make_view(static_cast<const float*>(p.h.data()), {1, 2, 4}),
                      grpo::make_view(static_cast<const float*>(p.w.data()), {5, 4}, {1, 5}),
                      grpo::make_view(p.ids.data(), {1, 2}), p.batch(),
                      grpo::make_view(gh.data(), {1, 2, 4}), grpo::make_view(gw.data(), {5, 4})),
                  doctest::Contains("[grpo.bad_option]"), grpo::error);
}

TEST_CASE("fused_linear: every input check, one bad field at a time, id and name" *
          doctest::test_suite("validation")) {
  using grpo::errc;
  using grpo_test::expect_error;
  const lin_problem p(2, 3, 4, 5, 7);
  const index_t B = p.B, T = p.T, H = p.H, V = p.V, N = B * T;
  std::vector<float> gh(p.h.size()), gw(p.w.size()), wt(p.w.size()), lp(N), ent(N), lse(N);
  std::vector<std::int32_t> bad_ids = p.ids;
  bad_ids[4] = static_cast<std::int32_t>(V);
  const std::vector<unsigned char> trunc1 = {0};
  struct step_case {
    std::string label, field;
    errc code;
    std::function<void(grpo::loss_options&, grpo::fused_linear_options&,
                       grpo::loss_batch<double, float>&, index_t& wv, index_t& wh,
                       index_t& ghv, const std::int32_t*& ids, bool& wcol)>
        mutate;
  };
  const std::vector<step_case> steps = {
      {"weight [V, H+1]", "weight", errc::shape_mismatch,
       [](auto&, auto&, auto&, index_t&, index_t& wh, auto&, auto&, auto&) { wh += 1; }},
      {"weight V = 0", "vocabulary extent", errc::shape_mismatch,
       [](auto&, auto&, auto&, index_t& wv, auto&, index_t& g, auto&, auto&) {
         wv = 0;
         g = 0;  // grad_weight [0, H] too: the vocabulary check is the one that fires
       }},
      {"weight column-major", "weight: the hidden dimension must have stride 1",
       errc::bad_option,
       [](auto&, auto&, auto&, auto&, auto&, auto&, auto&, bool& c) { c = true; }},
      {"grad_weight [V-1, H]", "grad_weight", errc::shape_mismatch,
       [](auto&, auto&, auto&, auto&, auto&, index_t& g, auto&, auto&) { g -= 1; }},
      {"mask missing", "mask: required", errc::shape_mismatch,
       [](auto&, auto&, auto& b, auto&, auto&, auto&, auto&, auto&) { b.mask = {}; }},
      {"mask [B, T-1]", "mask", errc::shape_mismatch,
       [&](auto&, auto&, auto& b, auto&, auto&, auto&, auto&, auto&) {
         b.mask = grpo::make_view(p.mask.data(), {B, T - 1});
       }},
      {"truncated size 1", "truncated: size must equal B", errc::shape_mismatch,
       [&](auto&, auto&, auto& b, auto&, auto&, auto&, auto&, auto&) {
         b.truncated = std::span<const unsigned char>(trunc1);
       }},
      {"chunk_tokens < 0", "chunk_tokens", errc::bad_option,
       [](auto&, auto& f, auto&, auto&, auto&, auto&, auto&, auto&) { f.chunk_tokens = -1; }},
      {"single_pass with GSPO", "single_pass needs token-local", errc::bad_option,
       [](grpo::loss_options& o, auto& f, auto&, auto&, auto&, auto&, auto&, auto&) {
         o.policy.level = grpo::is_level::sequence;
         f.schedule = grpo::fused_schedule::single_pass;
       }},
      {"temperature 0", "temperature", errc::bad_option,
       [](auto&, auto& f, auto&, auto&, auto&, auto&, auto&, auto&) {
         f.logprob.temperature = 0.0f;
       }},
      {"id = V", "outside [0, 5)", errc::out_of_range,
       [&](auto&, auto&, auto&, auto&, auto&, auto&, const std::int32_t*& ids, auto&) {
         ids = bad_ids.data();
       }},
      {"bad loss option (eps_low < 0)", "eps_low", errc::bad_value,
       [](grpo::loss_options& o, auto&, auto&, auto&, auto&, auto&, auto&, auto&) {
         o.policy.eps_low = -1;
       }},
  };
  for (const auto& c : steps) {
    grpo::loss_options o;
    grpo::fused_linear_options fo;
    auto b = p.batch();
    index_t wv = V, wh = H, ghv = V;
    const std::int32_t* ids = p.ids.data();
    bool wcol = false;
    c.mutate(o, fo, b, wv, wh, ghv, ids, wcol);
    // The column-major weight: element (v, d) at d * V + v (stride(1) = V != 1).
    const auto w = wcol ? grpo::make_view(static_cast<const float*>(wt.data()), {V, H}, {1, V})
                        : grpo::make_view(static_cast<const float*>(p.w.data()), {wv, wh});
    expect_error(
        c.label,
        [&] {
          (void)grpo::fused_linear_grpo_step(
              o, grpo::make_view(static_cast<const float*>(p.h.data()), {B, T, H}), w,
              grpo::make_view(ids, {B, T}), b, grpo::make_view(gh.data(), {B, T, H}),
              grpo::make_view(gw.data(), {ghv, H}), fo);
        },
        c.code, c.field);
  }
  // linear_log_softmax (forward only).
  const auto hv = grpo::make_view(static_cast<const float*>(p.h.data()), {N, H});
  const auto wv = grpo::make_view(static_cast<const float*>(p.w.data()), {V, H});
  const auto iv = grpo::make_view(static_cast<const std::int32_t*>(p.ids.data()), {N});
  const auto lv = grpo::make_view(lp.data(), {N});
  expect_error("lls weight [V, H-1]",
               [&] {
                 grpo::linear_log_softmax(
                     hv, grpo::make_view(static_cast<const float*>(p.w.data()), {V, H - 1}), iv,
                     lv);
               },
               errc::shape_mismatch, "weight");
  expect_error("lls ids [N-1]",
               [&] {
                 grpo::linear_log_softmax(
                     hv, wv, grpo::make_view(static_cast<const std::int32_t*>(p.ids.data()), {N - 1}),
                     lv);
               },
               errc::shape_mismatch, "ids");
  expect_error("lls logp [N-1]",
               [&] { grpo::linear_log_softmax(hv, wv, iv, grpo::make_view(lp.data(), {N - 1})); },
               errc::shape_mismatch, "logp");
  expect_error(
      "lls entropy [N+1]",
      [&] {
        std::vector<float> e2(N + 1);
        grpo::linear_log_softmax(hv, wv, iv, lv, grpo::make_view(e2.data(), {N + 1}));
      },
      errc::shape_mismatch, "entropy");
  expect_error("lls lse [1]",
               [&] {
                 grpo::linear_log_softmax(hv, wv, iv, lv, grpo::make_view(ent.data(), {N}),
                                          grpo::make_view(lse.data(), {1}));
               },
               errc::shape_mismatch, "lse");
  expect_error("lls V = 0",
               [&] {
                 grpo::linear_log_softmax(
                     hv, grpo::make_view(static_cast<const float*>(p.w.data()), {0, H}), iv, lv);
               },
               errc::shape_mismatch, "vocabulary extent");
  expect_error("lls column-major weight",
               [&] {
                 grpo::linear_log_softmax(
                     hv, grpo::make_view(static_cast<const float*>(wt.data()), {V, H}, {1, V}), iv,
                     lv);
               },
               errc::bad_option, "weight: the hidden dimension must have stride 1");
  expect_error("lls chunk_tokens < 0",
               [&] {
                 grpo::fused_linear_options fo;
                 fo.chunk_tokens = -2;
                 grpo::linear_log_softmax(hv, wv, iv, lv, {}, {}, fo);
               },
               errc::bad_option, "chunk_tokens");
  expect_error("lls id out of range",
               [&] {
                 grpo::linear_log_softmax(
                     hv, wv, grpo::make_view(static_cast<const std::int32_t*>(bad_ids.data()), {N}),
                     lv);
               },
               errc::out_of_range, "linear_log_softmax: ids");
  expect_error("lls temperature NaN",
               [&] {
                 grpo::fused_linear_options fo;
                 fo.logprob.temperature = std::nanf("");
                 grpo::linear_log_softmax(hv, wv, iv, lv, {}, {}, fo);
               },
               errc::bad_option, "temperature");
}

TEST_CASE("fused_linear_grpo_step: KL + ref_logp, truncated rows, sampler_logp (TIS), both "
          "schedules and a small workspace equal the materialised-logits path" *
          doctest::test_suite("logprob")) {
  lin_problem p(3, 5, 16, 200, 11);
  const auto lg = p.logits();
  std::mt19937 rng(5);
  std::normal_distribution<double> n01(0.0, 1.0);
  std::vector<double> ref_d, smp_d;
  for (index_t k = 0; k < p.B * p.T; ++k) {
    ref_d.push_back(p.old_lp[k] + 0.1 * n01(rng));
    smp_d.push_back(p.old_lp[k] + 0.05 * n01(rng));
  }
  const std::vector<unsigned char> trunc = {0, 1, 0};  // row 1 truncated: zero gradient rows
  auto batch = [&] {
    auto b = p.batch();
    b.ref_logp = grpo::make_view(static_cast<const double*>(ref_d.data()), {p.B, p.T});
    b.sampler_logp = grpo::make_view(static_cast<const double*>(smp_d.data()), {p.B, p.T});
    b.truncated = std::span<const unsigned char>(trunc);
    return b;
  };
  auto o = grpo::preset("trl_dapo");
  o.kl_coef = 0.05;
  o.kl = grpo::kl_params_from_string("low_var_kl");
  o.tis.enabled = true;  // token TIS from sampler_logp
  o.tis.c_max = 2.0;
  // Materialised reference: fused_grpo_step on the float logits, then the two products in double.
  std::vector<float> gl(lg.size());
  const auto ref = grpo::fused_grpo_step(o, grpo::make_view(lg.data(), {p.B, p.T, p.V}),
                                         grpo::make_view(p.ids.data(), {p.B, p.T}), batch(),
                                         grpo::make_view(gl.data(), {p.B, p.T, p.V}));
  REQUIRE(ref.kl_loss != 0.0);
  std::vector<double> dh(p.h.size(), 0.0), dw(p.w.size(), 0.0);
  for (index_t k = 0; k < p.B * p.T; ++k)
    for (index_t v = 0; v < p.V; ++v)
      for (index_t d = 0; d < p.H; ++d) {
        dh[k * p.H + d] += gl[k * p.V + v] * static_cast<double>(p.w[v * p.H + d]);
        dw[v * p.H + d] += gl[k * p.V + v] * static_cast<double>(p.h[k * p.H + d]);
      }
  double mh = 0, mw = 0;
  for (double v : dh) mh = grpo_test::scale_max(mh, v);
  for (double v : dw) mw = grpo_test::scale_max(mw, v);
  for (auto sched : {grpo::fused_schedule::single_pass, grpo::fused_schedule::two_phase}) {
    for (std::size_t ws : {std::size_t(32) << 20, std::size_t(4096)}) {  // 4 KiB: 16-token chunks
      INFO("schedule " << static_cast<int>(sched) << " workspace " << ws);
      std::vector<float> gh(p.h.size(), -3.0f), gw(p.w.size(), -3.0f);
      grpo::fused_linear_options fo;
      fo.schedule = sched;
      fo.workspace_bytes = ws;
      const auto r = grpo::fused_linear_grpo_step(
          o, grpo::make_view(static_cast<const float*>(p.h.data()), {p.B, p.T, p.H}),
          grpo::make_view(static_cast<const float*>(p.w.data()), {p.V, p.H}),
          grpo::make_view(p.ids.data(), {p.B, p.T}), batch(),
          grpo::make_view(gh.data(), {p.B, p.T, p.H}), grpo::make_view(gw.data(), {p.V, p.H}),
          fo);
      CHECK(r.schedule_used == sched);
      CHECK(r.loss == doctest::Approx(ref.loss).epsilon(1e-5));
      CHECK(r.kl_loss == doctest::Approx(ref.kl_loss).epsilon(1e-5));
      CHECK(r.metrics.truncated_seqs == 1.0);
      CHECK(r.metrics.is_weight.mean() == doctest::Approx(ref.metrics.is_weight.mean()).epsilon(1e-5));
      double eh = 0, ew = 0;
      for (std::size_t k = 0; k < gh.size(); ++k) eh = grpo_test::err_max(eh, std::fabs(gh[k] - dh[k]));
      for (std::size_t k = 0; k < gw.size(); ++k) ew = grpo_test::err_max(ew, std::fabs(gw[k] - dw[k]));
      CHECK(eh <= 1e-4 * mh);
      CHECK(ew <= 1e-4 * mw);
      for (index_t t = 0; t < p.T; ++t)  // the truncated row's hidden gradient is exactly zero
        for (index_t d = 0; d < p.H; ++d) CHECK(gh[(1 * p.T + t) * p.H + d] == 0.0f);
    }
  }
}

TEST_CASE("fused_linear_grpo_step: seq-mask TIS runs two phases and equals the materialised path" *
          doctest::test_suite("logprob")) {
  // Its keep decision is a mean over the whole row: the single pass (per-token coefficients) would
  // decide on one token; automatic takes two phases and single_pass is refused.
  lin_problem p(2, 9, 16, 120, 7);
  const auto lg = p.logits();
  auto o = grpo::preset("trl_dapo");
  o.tis.enabled = true;
  o.tis.seq_mask = true;
  o.tis.c_min = 0.5;
  o.tis.c_max = 2.0;
  CHECK_FALSE(grpo::fused_single_pass_ok(o));
  std::vector<double> smp(static_cast<std::size_t>(p.B * p.T));
  for (index_t k = 0; k < p.B * p.T; ++k)
    smp[static_cast<std::size_t>(k)] =
        p.old_lp[static_cast<std::size_t>(k)] - ((k % p.T) < 3 ? 1.5 : -0.4);
  auto b = p.batch();
  b.sampler_logp = grpo::make_view(static_cast<const double*>(smp.data()), {p.B, p.T});
  std::vector<float> gl(lg.size());
  const auto ref = grpo::fused_grpo_step(o, grpo::make_view(lg.data(), {p.B, p.T, p.V}),
                                         grpo::make_view(p.ids.data(), {p.B, p.T}), b,
                                         grpo::make_view(gl.data(), {p.B, p.T, p.V}));
  CHECK(ref.schedule_used == grpo::fused_schedule::two_phase);
  std::vector<float> gh(p.h.size()), gw(p.w.size());
  grpo::fused_linear_options fo;
  fo.chunk_tokens = 1;
  auto call = [&] {
    return grpo::fused_linear_grpo_step(
        o, grpo::make_view(static_cast<const float*>(p.h.data()), {p.B, p.T, p.H}),
        grpo::make_view(static_cast<const float*>(p.w.data()), {p.V, p.H}),
        grpo::make_view(p.ids.data(), {p.B, p.T}), b, grpo::make_view(gh.data(), {p.B, p.T, p.H}),
        grpo::make_view(gw.data(), {p.V, p.H}), fo);
  };
  const auto r = call();
  CHECK(r.schedule_used == grpo::fused_schedule::two_phase);
  CHECK(r.loss == doctest::Approx(ref.loss).epsilon(1e-5));
  CHECK(r.metrics.is_weight.sum == doctest::Approx(ref.metrics.is_weight.sum).epsilon(1e-5));
  fo.schedule = grpo::fused_schedule::single_pass;
  CHECK_THROWS_WITH_AS(call(), doctest::Contains("need two_phase"), grpo::error);
}

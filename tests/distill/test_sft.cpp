// SPDX-License-Identifier: Apache-2.0
// SFT negative log-likelihood with label smoothing. Oracles: hand-computed rows, a naive double
// reference, central finite differences (double run), the forward KL against a one-hot teacher
// (a different code path), ignore_index / mask semantics.
#include <distill/distill.hpp>

#include "convert.hpp"
#include "isa_paths.hpp"
#include "reference.hpp"

#include <doctest/doctest.h>
#include <support/compare.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace gd = grpo::distill;
using grpo::index_t;

namespace {

using distill_test::cast_to;
using distill_test::widen_all;

/// Token-mean smoothed NLL and gradient in double (all rows active).
void reference(const std::vector<double>& s, const std::vector<std::int64_t>& y, index_t N,
               index_t V, double T, double eps, double& loss, std::vector<double>& grad) {
  loss = 0;
  grad.assign(s.size(), 0.0);
  for (index_t i = 0; i < N; ++i) {
    std::vector<double> si(s.begin() + i * V, s.begin() + (i + 1) * V);
    const auto lq = distill_ref::log_softmax(si, T);
    double mean_lq = 0;
    for (double v : lq) mean_lq += v / V;
    loss += ((1 - eps) * -lq[y[i]] - eps * mean_lq) / N;
    for (index_t j = 0; j < V; ++j) {
      const double q = std::exp(lq[j]);
      // q_j - (1 - eps) delta_jy - eps / V; the target as (1 - eps)(q_y - 1) + eps (q_y - 1/V)
      // with q_y - 1 = expm1(log q_y) so a dominant target keeps its digits.
      const double gj =
          j == y[i] ? (1 - eps) * std::expm1(lq[j]) + eps * (q - 1.0 / V) : q - eps / V;
      grad[i * V + j] = gj / T / N;
    }
  }
}

}  // namespace

TEST_CASE("sft_loss: hand-computed row with and without label smoothing" *
          doctest::test_suite("distill")) {
  distill_paths::for_each([&] {
    // q = (1/6, 2/6, 3/6) from logits (0, ln 2, ln 3); label 2.
    std::vector<float> s = {0.0f, static_cast<float>(std::log(2.0)),
                            static_cast<float>(std::log(3.0))};
    std::vector<std::int64_t> y = {2};
    std::vector<float> g(3);
    gd::sft_options o;
    auto r =
        gd::sft_loss(grpo::make_view(s.data(), {1, 3}), y, grpo::make_view(g.data(), {1, 3}), o);
    CHECK(r.loss == doctest::Approx(std::log(2.0)).epsilon(1e-6));
    CHECK(g[0] == doctest::Approx(1.0 / 6).epsilon(1e-6));
    CHECK(g[1] == doctest::Approx(1.0 / 3).epsilon(1e-6));
    CHECK(g[2] == doctest::Approx(-0.5).epsilon(1e-6));
    // eps = 0.3: 0.7 ln 2 + 0.3 * (1/3)(ln 6 + ln 3 + ln 2) = 0.7 ln 2 + 0.1 ln 36.
    o.label_smoothing = 0.3;
    r = gd::sft_loss(grpo::make_view(s.data(), {1, 3}), y, grpo::make_view(g.data(), {1, 3}), o);
    CHECK(r.loss == doctest::Approx(0.7 * std::log(2.0) + 0.1 * std::log(36.0)).epsilon(1e-6));
    CHECK(g[0] == doctest::Approx(1.0 / 6 - 0.1).epsilon(1e-6));
    CHECK(g[2] == doctest::Approx(0.5 - 0.7 - 0.1).epsilon(1e-6));
  });
}

TEST_CASE("sft_loss: matches the double reference in fp32/bf16/fp16 with T and smoothing" *
          doctest::test_suite("distill")) {
  distill_paths::for_each([&] {
    const index_t N = 6, V = 1500;
    const auto s0 = distill_ref::randn(N * V, 3.0, 101);
    std::vector<std::int64_t> y = {0, 1499, 700, 512, 511, 3};
    for (double T : {0.7, 1.0})
      for (double eps : {0.0, 0.1}) {
        auto run = [&](auto tag) {
          using St = decltype(tag);
          const auto s = cast_to<St>(s0);
          double ref_loss;
          std::vector<double> ref_g;
          reference(widen_all(s), y, N, V, T, eps, ref_loss, ref_g);
          gd::sft_options o;
          o.temperature = T;
          o.label_smoothing = eps;
          std::vector<float> g(s.size());
          const auto r = gd::sft_loss(grpo::make_view(s.data(), {N, V}), y,
                                      grpo::make_view(g.data(), {N, V}), o);
          INFO("T=", T, " eps=", eps, " bytes=", sizeof(St));
          CHECK(r.loss == doctest::Approx(ref_loss).epsilon(1e-6));
          double err = 0, gm = 0;
          for (std::size_t i = 0; i < g.size(); ++i) {
            err = grpo_test::err_max(err, std::fabs(g[i] - ref_g[i]));
            gm = grpo_test::scale_max(gm, std::fabs(ref_g[i]));
          }
          CHECK(err <= 1e-5 * gm);
        };
        run(float{});
        run(grpo::bfloat16{});
        run(grpo::float16{});
      }
  });
}

TEST_CASE("sft_loss: gradient equals central finite differences (double run)" *
          doctest::test_suite("distill")) {
  const index_t B = 2, L = 3, V = 29;
  const auto s = distill_ref::randn(B * L * V, 2.0, 111);
  std::vector<std::int32_t> y = {3, -100, 28, 0, 7, -100};
  std::vector<float> w = {1.0f, 5.0f, 0.5f, 2.0f, 1.0f, 1.0f};
  std::vector<std::uint8_t> mask = {1, 1, 1, 1, 0, 1};
  for (auto mode : {grpo::agg_mode::token_mean, grpo::agg_mode::seq_mean_token_mean,
                    grpo::agg_mode::seq_mean_token_sum, grpo::agg_mode::token_sum})
    for (double eps : {0.0, 0.2}) {
      gd::sft_options o;
      o.temperature = 1.3;
      o.label_smoothing = eps;
      o.aggregate.mode = mode;
      o.grad_output = 0.6;
      gd::token_args a;
      a.weights = grpo::make_view(static_cast<const float*>(w.data()), {B, L});
      a.mask = grpo::make_view(static_cast<const std::uint8_t*>(mask.data()), {B, L});
      auto sv = s;
      std::vector<double> g(s.size(), 7.0);
      const auto yv = grpo::make_view(static_cast<const std::int32_t*>(y.data()), {B, L});
      const auto r = gd::sft_loss(grpo::make_view(sv.data(), {B, L, V}), yv,
                                  grpo::make_view(g.data(), {B, L, V}), o, a);
      CHECK(r.active_tokens == 3);  // two ignore_index labels, one masked token
      auto f = [&](std::size_t i, double d) {
        sv[i] = s[i] + d;
        const double v = gd::sft_loss(grpo::make_view(sv.data(), {B, L, V}), yv, o, a).loss;
        sv[i] = s[i];
        return v;
      };
      double err = 0, gm = 0;
      for (std::size_t i = 0; i < s.size(); ++i) {
        const double fd = o.grad_output * (f(i, 1e-5) - f(i, -1e-5)) / 2e-5;
        err = grpo_test::err_max(err, std::fabs(fd - g[i]));
        gm = grpo_test::scale_max(gm, std::fabs(g[i]));
      }
      INFO("mode=", static_cast<int>(mode), " eps=", eps);
      CHECK(gm > 0);
      CHECK(err <= 1e-8 + 1e-6 * gm);
      // Ignored and masked tokens: zero gradient rows.
      for (index_t tok : {1, 4, 5})
        for (index_t j = 0; j < V; ++j) CHECK(g[tok * V + j] == 0.0);
    }
}

TEST_CASE("sft_loss: equals the forward KL against a one-hot teacher; dominant target" *
          doctest::test_suite("distill")) {
  distill_paths::for_each([&] {
    const index_t N = 4, V = 3000;
    auto s0 = distill_ref::randn(N * V, 2.0, 121);
    std::vector<std::int64_t> y = {10, 2999, 1024, 5};
    s0[3 * V + 5] = 26.0;  // q_y > 1 - 1e-6: the target gradient needs expm1, not q - 1
    const auto s = cast_to<float>(s0);
    std::vector<float> teacher(s.size(), -std::numeric_limits<float>::infinity());
    for (index_t i = 0; i < N; ++i) teacher[i * V + y[i]] = 0.0f;
    std::vector<float> g1(s.size()), g2(s.size());
    const double l1 = gd::sft_loss(grpo::make_view(s.data(), {N, V}), y,
                                   grpo::make_view(g1.data(), {N, V}), gd::sft_options{})
                          .loss;
    const double l2 = gd::divergence_loss(grpo::make_view(s.data(), {N, V}),
                                          grpo::make_view(teacher.data(), {N, V}),
                                          grpo::make_view(g2.data(), {N, V}), gd::distill_options{})
                          .loss;
    CHECK(l1 == doctest::Approx(l2).epsilon(1e-6));
    for (std::size_t i = 0; i < g1.size(); ++i)
      CHECK(g1[i] == doctest::Approx(g2[i]).epsilon(1e-5).scale(1e-7));
    double ref_loss;
    std::vector<double> ref_g;
    reference(widen_all(s), y, N, V, 1.0, 0.0, ref_loss, ref_g);
    const double gy = ref_g[3 * V + 5];
    CHECK(gy < 0);
    CHECK(gy > -1e-6 / N);
    CHECK(g1[3 * V + 5] == doctest::Approx(gy).epsilon(1e-4));
  });
}

TEST_CASE("sft_loss: rank-1 labels, offsets of 1e4, ignore-only batch" *
          doctest::test_suite("distill")) {
  const index_t N = 3, V = 100;
  auto s0 = distill_ref::randn(N * V, 1.0, 131);
  std::vector<std::int64_t> y = {5, 50, 99};
  const auto s = cast_to<float>(s0);
  const double base = gd::sft_loss(grpo::make_view(s.data(), {N, V}), y, gd::sft_options{}).loss;
  auto sh = s0;
  for (auto& v : sh) v += 1e4;
  const auto s_sh = cast_to<double>(sh);
  const double shifted =
      gd::sft_loss(grpo::make_view(s_sh.data(), {N, V}), y, gd::sft_options{}).loss;
  CHECK(shifted == doctest::Approx(base).epsilon(1e-5));
  std::vector<std::int64_t> ign = {-100, -100, -100};
  std::vector<float> g(s.size(), 3.0f);
  const auto r = gd::sft_loss(grpo::make_view(s.data(), {N, V}), ign,
                              grpo::make_view(g.data(), {N, V}), gd::sft_options{});
  CHECK(r.loss == 0.0);
  CHECK(r.active_tokens == 0);
  for (float v : g) CHECK(v == 0.0f);
}

TEST_CASE("sft_loss: bad input raises grpo::error" * doctest::test_suite("distill")) {
  const index_t N = 2, V = 5;
  std::vector<float> s(N * V, 0.0f), g(N * V);
  auto code_of = [](auto&& f) {
    try {
      f();
    } catch (const grpo::error& e) {
      return std::string(grpo::to_string(e.code()));
    }
    return std::string("none");
  };
  auto sv = grpo::make_view(s.data(), {N, V});
  auto gv = grpo::make_view(g.data(), {N, V});
  std::vector<std::int64_t> y = {1, 5};
  CHECK(code_of([&] { gd::sft_loss(sv, y, gv, gd::sft_options{}); }) == "out_of_range");
  y = {1, -3};
  CHECK(code_of([&] { gd::sft_loss(sv, y, gv, gd::sft_options{}); }) == "out_of_range");
  y = {1, 2};
  std::vector<std::int64_t> y3 = {1, 2, 3};
  CHECK(code_of([&] { gd::sft_loss(sv, y3, gv, gd::sft_options{}); }) == "shape_mismatch");
  gd::sft_options o;
  o.label_smoothing = 1.0;
  CHECK(code_of([&] { gd::sft_loss(sv, y, gv, o); }) == "bad_option");
  o = {};
  o.temperature = -1;
  CHECK(code_of([&] { gd::sft_loss(sv, y, gv, o); }) == "bad_option");
  s[7] = std::numeric_limits<float>::quiet_NaN();
  CHECK(code_of([&] { gd::sft_loss(sv, y, gv, gd::sft_options{}); }) == "bad_value");
  CHECK(code_of([&] { gd::sft_loss(sv, y, gd::sft_options{}); }) == "bad_value");
}

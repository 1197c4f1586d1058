// SPDX-License-Identifier: Apache-2.0
// KL estimators: hand-computed values, central finite differences of every estimator and clamp
// (away from kinks), flat clamp regions, straight-through and bias-corrected gradients, the
// expected-gradient identity of k3, in-reward placement and name parsing.
#include <grpo/kl.hpp>
#include <grpo/loss.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

namespace {
double fd_value(const grpo::kl_params& p, double lp, double lr, double h = 1e-6) {
  return (grpo::ops::kl_value(p, lp + h, lr) - grpo::ops::kl_value(p, lp - h, lr)) / (2 * h);
}
grpo::kl_params est(grpo::kl_estimator e, double inner = 0, double outer = 0) {
  grpo::kl_params p;
  p.estimator = e;
  p.inner_clamp = inner;
  p.outer_clamp = outer;
  return p;
}
}  // namespace

TEST_CASE("kl: hand-computed values at lp = -1, lr = -2" * doctest::test_suite("kl")) {
  using grpo::kl_estimator;
  // d = lp - lr = 1
  CHECK(grpo::ops::kl_value(est(kl_estimator::k1), -1.0, -2.0) == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(grpo::ops::kl_value(est(kl_estimator::abs), -2.0, -1.0) == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(grpo::ops::kl_value(est(kl_estimator::k2), -1.0, -2.0) == doctest::Approx(0.5).epsilon(1e-12));
  // k3 = e^(lr-lp) - (lr-lp) - 1 = e^-1 + 1 - 1
  CHECK(grpo::ops::kl_value(est(kl_estimator::k3), -1.0, -2.0) == doctest::Approx(std::exp(-1.0)).epsilon(1e-12));
  // gradients: 1, sign, d, 1 - e^(lr-lp)
  CHECK(grpo::ops::kl_grad(est(kl_estimator::k1), -1.0, -2.0) == 1.0);
  CHECK(grpo::ops::kl_grad(est(kl_estimator::abs), -2.0, -1.0) == -1.0);
  CHECK(grpo::ops::kl_grad(est(kl_estimator::abs), -1.0, -1.0) == 0.0);
  CHECK(grpo::ops::kl_grad(est(kl_estimator::k2), -1.0, -2.0) == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(grpo::ops::kl_grad(est(kl_estimator::k3), -1.0, -2.0) ==
        doctest::Approx(1.0 - std::exp(-1.0)).epsilon(1e-12));
  // k3 >= 0 and 0 at lp == lr
  CHECK(grpo::ops::kl_value(est(kl_estimator::k3), -1.5, -1.5) == 0.0);
}

TEST_CASE("kl: every estimator and clamp matches central differences away from kinks" *
          doctest::test_suite("kl")) {
  std::mt19937_64 g(42);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  const grpo::kl_estimator es[] = {grpo::kl_estimator::k1, grpo::kl_estimator::abs,
                                   grpo::kl_estimator::k2, grpo::kl_estimator::k3};
  int flat = 0;
  for (auto e : es)
    for (double inner : {0.0, 1.5})
      for (double outer : {0.0, 0.8}) {
        const auto p = est(e, inner, outer);
        for (int k = 0; k < 200; ++k) {
          const double lp = -2.0 + 3.0 * u(g), lr = -2.0 + 3.0 * u(g);
          // stay 1e-4 away from kinks: lp == lr (abs), |lr-lp| == inner, |value| == outer
          const double d = lr - lp;
          const double raw = grpo::ops::kl_raw(e, lp, lr, inner);
          if (std::fabs(d) < 1e-4 || (inner > 0 && std::fabs(std::fabs(d) - inner) < 1e-4) ||
              (outer > 0 && std::fabs(std::fabs(raw) - outer) < 1e-4))
            continue;
          const double want = fd_value(p, lp, lr);
          CHECK(grpo::ops::kl_grad(p, lp, lr) == doctest::Approx(want).epsilon(1e-7).scale(1.0));
          if (want == 0.0) ++flat;
        }
      }
  CHECK(flat > 20);  // clamp flat regions were visited and give exactly zero gradient
}

TEST_CASE("kl: verl clamps bind (inner 20, outer 10) with zero gradient" *
          doctest::test_suite("kl")) {
  const auto p = grpo::kl_params_from_string("low_var_kl");
  CHECK(p.inner_clamp == 20.0);
  CHECK(p.outer_clamp == 10.0);
  // lr - lp = 5: k3 = e^5 - 6 > 10 -> 10, gradient 0
  CHECK(grpo::ops::kl_value(p, -6.0, -1.0) == 10.0);
  CHECK(grpo::ops::kl_grad(p, -6.0, -1.0) == 0.0);
  // lr - lp = -30: inner clamp to -20 -> e^-20 + 19, outer clamp to 10, gradient 0
  CHECK(grpo::ops::kl_value(p, -1.0, -31.0) == 10.0);
  CHECK(grpo::ops::kl_grad(p, -1.0, -31.0) == 0.0);
  // only the inner clamp (OpenRLHF-style outer off): value e^-20 + 19, gradient 0
  const auto q = est(grpo::kl_estimator::k3, 20.0, 0.0);
  CHECK(grpo::ops::kl_value(q, -1.0, -31.0) == doctest::Approx(std::exp(-20.0) + 19.0).epsilon(1e-12));
  CHECK(grpo::ops::kl_grad(q, -1.0, -31.0) == 0.0);
  // OpenRLHF: every estimator clamped at +-10
  const auto o = grpo::openrlhf_kl_params(grpo::kl_estimator::k1);
  CHECK(grpo::ops::kl_value(o, 0.0, -12.0) == 10.0);
  CHECK(grpo::ops::kl_grad(o, 0.0, -12.0) == 0.0);
}

TEST_CASE("kl: straight-through '+' keeps the value, takes the k2 gradient" *
          doctest::test_suite("kl")) {
  for (const char* n : {"kl+", "k1+", "abs+", "low_var_kl+", "k3+"}) {
    auto plus = grpo::kl_params_from_string(n);
    auto base = grpo::kl_params_from_string(std::string(n).substr(0, std::string(n).size() - 1));
    CHECK(plus.straight_through);
    for (double lp : {-3.0, -1.2, 0.5})
      for (double lr : {-2.0, -0.1, -9.0}) {
        CHECK(grpo::ops::kl_value(plus, lp, lr) == grpo::ops::kl_value(base, lp, lr));
        CHECK(grpo::ops::kl_grad(plus, lp, lr) == doctest::Approx(lp - lr).epsilon(1e-12));  // even where clamped
      }
  }
  CHECK_FALSE(grpo::kl_params_from_string("k2+").straight_through);
  CHECK_FALSE(grpo::kl_params_from_string("mse+").straight_through);
}

TEST_CASE("kl: E_pi[grad k3] = E_pi[grad k1] = 0 (unbiased reverse-KL gradient identity)" *
          doctest::test_suite("kl")) {
  // Exact expectation over a small categorical pi with reference q: the expected score-function
  // gradient of KL(pi||q) is sum_y pi(y) [d/dtheta log pi(y)] (log pi/q + 1). For the per-token
  // pathwise term used in the loss, d k3/d lp = 1 - q/pi, whose pi-expectation is 1 - 1 = 0, and
  // d k2/d lp = log pi/q whose expectation is KL(pi||q) >= 0 (the straight-through choice).
  const std::vector<double> pi = {0.5, 0.3, 0.2}, q = {0.2, 0.5, 0.3};
  const auto k3 = est(grpo::kl_estimator::k3), k2 = est(grpo::kl_estimator::k2);
  double e3 = 0, e2 = 0, kl = 0;
  for (std::size_t y = 0; y < pi.size(); ++y) {
    const double lp = std::log(pi[y]), lr = std::log(q[y]);
    e3 += pi[y] * grpo::ops::kl_grad(k3, lp, lr);
    e2 += pi[y] * grpo::ops::kl_grad(k2, lp, lr);
    kl += pi[y] * (lp - lr);
  }
  CHECK(e3 == doctest::Approx(0.0).scale(1.0).epsilon(1e-15));
  CHECK(e2 == doctest::Approx(kl).epsilon(1e-12));
}

TEST_CASE("kl: bias-corrected k3 * r gradient includes the ratio's (product rule)" *
          doctest::test_suite("kl")) {
  // One token, token-level ratio, token-sum aggregation, no policy term (A = 0):
  // loss = beta * k3(lp, lr) * exp(lp - lo); d/dlp = beta * (k3' r + k3 r).
  const double lp = -1.1, lo = -1.4, lr = -0.6, beta = 0.3, A = 0.0, m = 1.0;
  grpo::loss_options o;
  o.agg.mode = grpo::agg_mode::token_sum;
  o.kl_coef = beta;
  o.kl_bias_correction = true;
  grpo::loss_batch<double, double> in;
  in.logp = grpo::make_view(&lp, {1, 1});
  in.old_logp = grpo::make_view(&lo, {1, 1});
  in.ref_logp = grpo::make_view(&lr, {1, 1});
  in.advantages = grpo::make_view(&A, {1, 1});
  in.mask = grpo::make_view(&m, {1, 1});
  const auto res = grpo::compute_loss(o, in);
  const double r = std::exp(lp - lo), k3 = std::exp(lr - lp) - (lr - lp) - 1.0;
  CHECK(res.loss == doctest::Approx(beta * k3 * r).epsilon(1e-12));
  CHECK(res.grad_logp[0] == doctest::Approx(beta * ((1.0 - std::exp(lr - lp)) * r + k3 * r)).epsilon(1e-12));
  CHECK(res.metrics.kl.mean() == doctest::Approx(k3 * r).epsilon(1e-12));
}

TEST_CASE("kl_for_reward: token and sequence-summed placement" * doctest::test_suite("kl")) {
  const std::vector<double> lp = {-1.0, -2.0, -0.5, -1.5}, lr = {-1.5, -1.0, -0.5, -3.0};
  const std::vector<double> m = {1, 1, 1, 0};
  const auto p = grpo::kl_params_from_string("k1");
  std::vector<double> tok(4, -7.0), rows(2, -7.0);
  auto v = [](const std::vector<double>& x) { return grpo::make_view(x.data(), {2, 2}); };
  grpo::kl_for_reward(p, 0.1, v(lp), v(lr), v(m), grpo::kl_reward_placement::token,
                      grpo::make_view(tok.data(), {2, 2}));
  CHECK(tok[0] == doctest::Approx(0.05).epsilon(1e-12));
  CHECK(tok[1] == doctest::Approx(-0.1).epsilon(1e-12));
  CHECK(tok[2] == 0.0);
  CHECK(tok[3] == 0.0);  // masked
  grpo::kl_for_reward(p, 0.1, v(lp), v(lr), v(m), grpo::kl_reward_placement::sequence_sum,
                      grpo::strided_view<double, 2>{}, std::span<double>(rows));
  CHECK(rows[0] == doctest::Approx(-0.05).epsilon(1e-12));
  CHECK(rows[1] == 0.0);
  CHECK_THROWS_WITH_AS(
      grpo::kl_for_reward(p, 0.1, v(lp), v(lr), v(m), grpo::kl_reward_placement::sequence_sum,
                          grpo::strided_view<double, 2>{}, std::span<double>(rows).first(1)),
      doctest::Contains("[grpo.shape_mismatch]"), grpo::error);
}

TEST_CASE("kl: names and bad input" * doctest::test_suite("kl")) {
  CHECK(grpo::kl_params_from_string("mse").estimator == grpo::kl_estimator::k2);
  CHECK(grpo::kl_params_from_string("kl").estimator == grpo::kl_estimator::k1);
  CHECK(grpo::kl_params_from_string("k3", false).outer_clamp == 0.0);
  try {
    (void)grpo::kl_params_from_string("full");
    FAIL("expected an error");
  } catch (const grpo::error& e) {
    CHECK(e.code() == grpo::errc::bad_option);
    CHECK(std::string(e.what()).find("kl_penalty") != std::string::npos);
  }
  std::vector<double> a(6, -1.0), b(4, -1.0), out(6);
  try {
    grpo::kl_penalty(est(grpo::kl_estimator::k1), grpo::make_view<const double>(a.data(), {2, 3}),
                     grpo::make_view<const double>(b.data(), {2, 2}),
                     grpo::make_view(out.data(), {2, 3}));
    FAIL("expected an error");
  } catch (const grpo::error& e) {
    CHECK(e.code() == grpo::errc::shape_mismatch);
    CHECK(std::string(e.what()).find("ref_logp") != std::string::npos);
  }
}

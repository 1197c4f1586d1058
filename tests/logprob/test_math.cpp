// SPDX-License-Identifier: Apache-2.0
// Tests of grpo/core/math.hpp: the online log-sum-exp / entropy state against a two-pass
// double-precision reference, with -inf entries, all -inf inputs, offsets and merges.
#include <grpo/core/math.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace {
constexpr double ninf = -std::numeric_limits<double>::infinity();

struct ref_stats {
  double lse, entropy, mean;
};
// Naive two-pass reference in double: max, then sums; entropy = -sum q log q.
ref_stats reference(const std::vector<double>& x, const std::vector<double>& v, double beta) {
  double m = ninf;
  for (double xi : x) m = std::max(m, xi);
  double s = 0;
  for (double xi : x) s += std::exp(beta * (xi - m));
  const double lse = beta * m + std::log(s);
  double h = 0, mean = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (x[i] == ninf) continue;
    const double lq = beta * x[i] - lse;
    h -= std::exp(lq) * lq;
    mean += std::exp(lq) * v[i];
  }
  return {lse, h, mean};
}
}  // namespace

TEST_CASE("online_lse: matches a two-pass double reference, pushed or merged" *
          doctest::test_suite("logprob")) {
  std::mt19937 rng(7);
  std::normal_distribution<double> n01(0.0, 3.0);
  for (double offset : {0.0, -1e4, 1e4, -300.0}) {
    for (double beta : {1.0, 1.0 / 0.7, 0.5}) {
      std::vector<double> x(1000), v(1000);
      for (std::size_t i = 0; i < x.size(); ++i) {
        x[i] = offset + n01(rng);
        v[i] = n01(rng);
      }
      x[17] = ninf;  // masked entry
      const auto r = reference(x, v, beta);
      grpo::online_lse_f64 a(beta), b(beta), c(beta);
      for (std::size_t i = 0; i < x.size(); ++i) {
        a.push(x[i], v[i]);
        (i % 3 == 0 ? b : c).push(x[i], v[i]);
      }
      b.merge(c);
      for (const auto* st : {&a, &b}) {
        CHECK(st->lse() == doctest::Approx(r.lse).epsilon(1e-13));
        CHECK(std::abs(st->entropy() - r.entropy) <= 1e-10);
        CHECK(std::abs(st->mean() - r.mean) <= 1e-10);
      }
      // The float state keeps entropy accurate at |x| ~ 1e4 because it is relative to the max.
      grpo::online_lse f(static_cast<float>(beta));
      for (std::size_t i = 0; i < x.size(); ++i) f.push(static_cast<float>(x[i]));
      // Compare with the reference of the float-rounded inputs.
      std::vector<double> xf(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) xf[i] = static_cast<float>(x[i]);
      const auto rf = reference(xf, v, static_cast<float>(beta));
      CHECK(std::abs(f.entropy() - rf.entropy) <= 1e-5 * std::max(1.0, rf.entropy));
      CHECK(std::abs(f.lse() - rf.lse) <= 1e-6 * std::max(1.0, std::abs(rf.lse)));
    }
  }
}

TEST_CASE("online_lse: -inf entries, all -inf inputs and empty merges" *
          doctest::test_suite("logprob")) {
  grpo::online_lse s;
  CHECK(s.empty());
  s.push(-std::numeric_limits<float>::infinity());
  s.push(-std::numeric_limits<float>::infinity());
  CHECK(s.empty());
  CHECK(s.lse() == -std::numeric_limits<float>::infinity());
  CHECK(s.entropy() == 0.0f);
  CHECK(s.mean() == 0.0f);
  grpo::online_lse t;
  s.merge(t);  // empty + empty
  CHECK(s.empty());
  t.push(2.0f);
  t.push(-std::numeric_limits<float>::infinity());
  s.merge(t);  // empty + one-element
  CHECK(s.lse() == 2.0f);
  CHECK(s.entropy() == 0.0f);
  s.merge(grpo::online_lse{});  // merging an empty state changes nothing
  CHECK(s.lse() == 2.0f);
  // Hand-computed: two equal values -> lse = x + log 2, H = log 2.
  s.push(2.0f);
  CHECK(s.lse() == doctest::Approx(2.0 + std::log(2.0)).epsilon(1e-7));
  CHECK(s.entropy() == doctest::Approx(std::log(2.0)).epsilon(1e-7));
}

TEST_CASE("online_lse: all-negative rows (max must not start at 0)" *
          doctest::test_suite("logprob")) {
  // verl initialised the running max to 0: on logits all below -100 exp underflows and log p > 0.
  grpo::online_lse s;
  for (float x : {-150.0f, -151.0f, -149.5f}) s.push(x);
  const double ref = -149.5 + std::log(1.0 + std::exp(-0.5) + std::exp(-1.5));
  CHECK(s.lse() == doctest::Approx(ref).epsilon(1e-7));
  CHECK(s.log_prob(-149.5f) < 0.0f);
}

TEST_CASE("online_lse: one dominant value keeps 1 - q_max exact" * doctest::test_suite("logprob")) {
  // q_max = 1 / (1 + e); with e = 1e3 * exp(-30) ~ 9.4e-11 float sum 1 + e would round to 1.
  grpo::online_lse s;
  s.push(0.0f);
  for (int i = 0; i < 1000; ++i) s.push(-30.0f);
  const double e = 1000.0 * std::exp(-30.0);
  CHECK(static_cast<double>(s.e) == doctest::Approx(e).epsilon(1e-5));
  CHECK(-static_cast<double>(grpo::math::expm1(s.log_prob(0.0f))) ==
        doctest::Approx(e / (1 + e)).epsilon(1e-5));
  // Entropy of a near one-hot distribution: H = log(1+e) - t/(1+e), t = 1000 exp(-30) (-30).
  const double h = std::log1p(e) + 30.0 * e / (1 + e);
  CHECK(static_cast<double>(s.entropy()) == doctest::Approx(h).epsilon(1e-5));
}

TEST_CASE("math shims: exp/log/log1p/expm1 agree with std" * doctest::test_suite("logprob")) {
  CHECK(grpo::math::exp(1.0f) == std::exp(1.0f));
  CHECK(grpo::math::log(3.0) == std::log(3.0));
  CHECK(grpo::math::log1p(1e-10f) == doctest::Approx(1e-10).epsilon(1e-6));
  CHECK(grpo::math::expm1(-1e-9) == doctest::Approx(-1e-9).epsilon(1e-9));
  CHECK(grpo::math::is_finite(1.0f));
  CHECK_FALSE(grpo::math::is_finite(std::numeric_limits<float>::quiet_NaN()));
  CHECK_FALSE(grpo::math::is_finite(std::numeric_limits<float>::infinity()));
}

namespace {
/// |a - r| in units of the float spacing at r (r from double-precision libm).
double ulp_error(float a, double r) {
  const float rf = static_cast<float>(r);
  const float up = std::nextafter(rf, std::numeric_limits<float>::infinity());
  const double spacing = static_cast<double>(up - rf);
  return std::fabs(static_cast<double>(a) - r) / spacing;
}
}  // namespace

TEST_CASE("fast_exp: within 2 ulp of double exp on [-87, 0] and on the clamped range" *
          doctest::test_suite("math")) {
  // Every 61st float of [-87, 0] (about 17 million points would be exhaustive; 1.3 ulp measured).
  double worst = 0.0;
  int k = 0;
  for (float x = -87.0f; x <= 0.0f; x = std::nextafter(x, 1.0f), ++k) {
    if (k % 61 != 0) continue;
    worst = std::max(worst, ulp_error(grpo::math::fast_exp_bounded(x), std::exp(double(x))));
  }
  CHECK(worst < 2.0);
  // The clamped core and the full fast_exp agree with it inside the range and flush outside.
  for (float x : {-80.5f, -3.25f, -1e-6f, 0.0f, 1.5f, 40.0f, 88.0f}) {
    CHECK(ulp_error(grpo::math::fast_exp_core(x), std::exp(double(x))) < 2.0);
    CHECK(grpo::math::fast_exp(x) == grpo::math::fast_exp_core(x));
  }
  CHECK(grpo::math::fast_exp(-std::numeric_limits<float>::infinity()) == 0.0f);
  CHECK(grpo::math::fast_exp(-90.0f) == 0.0f);
  CHECK(grpo::math::fast_exp(89.0f) == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(grpo::math::fast_exp_bounded(std::numeric_limits<float>::quiet_NaN())));
  // Double precision goes to the accurate shim unchanged.
  CHECK(grpo::math::fast_exp(-1.5) == std::exp(-1.5));
}

// SPDX-License-Identifier: Apache-2.0
/// @file test_compare.cpp
/// @brief The test suite's own comparison helpers (tests/support/compare.hpp) must never let a NaN
///        or Inf output pass a tolerance check.
#include <doctest/doctest.h>
#include <support/compare.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {
constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();
constexpr double inf_v = std::numeric_limits<double>::infinity();
}  // namespace

TEST_CASE("compare: err_max turns a NaN error into +inf (std::max would drop it)" *
          doctest::test_suite("core")) {
  // The idiom the suite used before: worst = std::max(worst, |got - want|) keeps 0 for a NaN got.
  CHECK(std::max(0.0, std::fabs(nan_v - 1.0)) == 0.0);
  CHECK(grpo_test::err_max(0.0, std::fabs(nan_v - 1.0)) == inf_v);
  CHECK(grpo_test::err_max(nan_v, 0.5) == inf_v);
  CHECK(grpo_test::err_max(0.25, 0.5) == 0.5);
  CHECK(grpo_test::err_max(0.5, 0.25) == 0.5);
  CHECK(grpo_test::err_max(0.0, std::fabs(inf_v - 1.0)) == inf_v);
  // A NaN anywhere in a gradient makes the running maximum fail any finite tolerance.
  const std::vector<double> got = {0.1, nan_v, 0.3}, want = {0.1, 0.2, 0.3};
  double worst = 0.0;
  for (std::size_t k = 0; k < got.size(); ++k)
    worst = grpo_test::err_max(worst, std::fabs(got[k] - want[k]));
  CHECK_FALSE(worst <= 1e-3);
}

TEST_CASE("compare: scale_max ignores non-finite values so they cannot widen a tolerance" *
          doctest::test_suite("core")) {
  CHECK(grpo_test::scale_max(0.0, -2.0) == 2.0);
  CHECK(grpo_test::scale_max(1.0, inf_v) == 1.0);
  CHECK(grpo_test::scale_max(1.0, nan_v) == 1.0);
  // err <= tol * gmax with an Inf output: err = inf, gmax stays finite, the check fails.
  const double g = inf_v, ref = 1.0;
  const double err = grpo_test::err_max(0.0, std::fabs(g - ref));
  const double gmax = grpo_test::scale_max(grpo_test::scale_max(0.0, ref), g);
  CHECK_FALSE(err <= 1e-6 * gmax);
}

TEST_CASE("compare: compare() reports one-sided NaN as a failure, matching NaNs as equal" *
          doctest::test_suite("core")) {
  const auto r = grpo_test::compare(std::vector<double>{1.0, nan_v}, {1.0, 2.0}, 1e-12);
  CHECK_FALSE(r.ok());
  CHECK(r.max_abs == inf_v);
  CHECK(r.failures == 1);
  CHECK(grpo_test::compare(std::vector<double>{nan_v, inf_v}, {nan_v, inf_v}).ok());
}

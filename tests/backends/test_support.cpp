// SPDX-License-Identifier: Apache-2.0
// The shared comparison and finite-difference helpers (tests/support/compare.hpp) that other
// modules' tests rely on: a helper that cannot fail would silently weaken every test using it.
#include <grpo/core/strided_view.hpp>

#include <support/compare.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

TEST_CASE("compare: close_rel is a symmetric relative + absolute tolerance" *
          doctest::test_suite("support")) {
  CHECK(grpo_test::close_rel(1.0, 1.0 + 1e-10, 1e-9));
  CHECK_FALSE(grpo_test::close_rel(1.0, 1.0 + 1e-8, 1e-9));
  CHECK(grpo_test::close_rel(100.0, 100.1, 1e-3));
  CHECK_FALSE(grpo_test::close_rel(100.0, 100.2, 1e-3));
  CHECK(grpo_test::close_rel(0.0, 1e-13, 0.0, 1e-12));
  CHECK_FALSE(grpo_test::close_rel(0.0, 1e-11, 1e-3, 1e-12));  // relative part of 0 is tiny
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  CHECK(grpo_test::close_rel(nan, nan, 0.0));
  CHECK_FALSE(grpo_test::close_rel(nan, 1.0, 1.0, 1.0));
  CHECK_FALSE(grpo_test::close_rel(1.0, nan, 1.0, 1.0));
  CHECK(grpo_test::close_rel(inf, inf, 0.0));
  CHECK_FALSE(grpo_test::close_rel(inf, -inf, 1.0));
  CHECK_FALSE(grpo_test::close_rel(inf, 1e308, 1.0));
}

TEST_CASE("compare: max abs/rel error between views and vectors" * doctest::test_suite("support")) {
  std::vector<double> a{1, 2, 3, 4, 5, 6};
  std::vector<float> b{1, 2, 3.5f, 4, 5, 6};
  // va: [2, 3] row-major over a; vb: [2, 3] column-major over b, vb(i, j) = b[i + 2 j].
  auto va = grpo::make_view(a.data(), {2, 3});
  auto vb = grpo::make_view(b.data(), {2, 3}, {1, 2});
  // Row-major flattening: vb -> {1, 3.5, 5, 2, 4, 6}, va -> {1, 2, 3, 4, 5, 6};
  // |diff| = {0, 1.5, 2, 2, 1, 0}, |diff| / |va| = {0, 0.75, 0.667, 0.5, 0.2, 0}.
  const auto r = grpo_test::compare(vb, va, 0.0, 0.0);
  CHECK(r.count == 6u);
  CHECK(r.max_abs == 2.0);
  CHECK(r.worst_abs_at == 2u);  // the first of the two maxima
  CHECK(r.max_rel == 0.75);
  CHECK(r.worst_rel_at == 1u);
  CHECK(r.failures == 4u);
  CHECK(r.first_failure == 1u);
  CHECK(r.first_failure_got == 3.5);
  CHECK(r.first_failure_want == 2.0);
  CHECK_FALSE(r.ok());
  CHECK(r.describe().find("failures=4") != std::string::npos);
  // With a 0.8 relative tolerance every element passes.
  CHECK(grpo_test::compare(vb, va, 0.8).ok());

  // A view against a vector in row-major order.
  const std::vector<double> want{1, 2, 3, 4, 5, 6};
  CHECK(grpo_test::max_abs_error(va, want) == 0.0);
  CHECK(grpo_test::compare(va, want).ok());
  std::vector<double> off = want;
  off[4] = 5.5;
  CHECK(grpo_test::max_abs_error(va, off) == doctest::Approx(0.5).epsilon(1e-12));
  CHECK(grpo_test::max_rel_error(va, off) == doctest::Approx(0.5 / 5.5).epsilon(1e-12));
  CHECK(grpo_test::max_abs_error(off, va) == doctest::Approx(0.5).epsilon(1e-12));
  CHECK_FALSE(grpo_test::compare(va, off, 0.05).ok());
  CHECK(grpo_test::compare(va, off, 0.1).ok());

  // A NaN where a number is expected is the worst error, never a silent pass.
  std::vector<double> bad = want;
  bad[2] = std::nan("");
  const auto rn = grpo_test::compare(bad, want, 1.0, 1.0);
  CHECK_FALSE(rn.ok());
  CHECK(std::isinf(rn.max_abs));

  CHECK_THROWS_WITH_AS(grpo_test::compare(std::vector<double>{1}, want),
                       doctest::Contains("[grpo.shape_mismatch]"), grpo::error);
  auto vt = va.transposed();
  CHECK_THROWS_WITH_AS(grpo_test::compare(vt, va), doctest::Contains("[grpo.shape_mismatch]"),
                       grpo::error);
}

TEST_CASE("compare: to_vector flattens any strided view in row-major order" *
          doctest::test_suite("support")) {
  std::vector<int> a{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  // Reversed rows of a [3, 4] row-major array, every other column.
  auto v = grpo::make_view(a.data() + 8, {3, 2}, {-4, 2});
  CHECK(grpo_test::to_vector(v) == std::vector<double>{8, 10, 4, 6, 0, 2});
  auto v3 = grpo::make_view(a.data(), {2, 3, 2});
  std::vector<double> expect(a.begin(), a.end());
  CHECK(grpo_test::to_vector(v3) == expect);
}

TEST_CASE("compare: fd_gradient matches hand-derived gradients" * doctest::test_suite("support")) {
  // f(x) = x0^3 + sin(x0 x1) + exp(x2) / x1; grad by hand:
  //   df/dx0 = 3 x0^2 + x1 cos(x0 x1)
  //   df/dx1 = x0 cos(x0 x1) - exp(x2) / x1^2
  //   df/dx2 = exp(x2) / x1
  auto f = [](const std::vector<double>& x) {
    return x[0] * x[0] * x[0] + std::sin(x[0] * x[1]) + std::exp(x[2]) / x[1];
  };
  const std::vector<double> x{0.7, -1.3, 0.4};
  const std::vector<double> g{3 * 0.49 + -1.3 * std::cos(0.7 * -1.3),
                              0.7 * std::cos(0.7 * -1.3) - std::exp(0.4) / (1.69),
                              std::exp(0.4) / -1.3};
  const auto g2 = grpo_test::fd_gradient(f, x);
  const auto g5 = grpo_test::fd_gradient_5pt(f, x);
  CHECK(grpo_test::max_abs_error(g2, g) < 1e-8);
  CHECK(grpo_test::max_abs_error(g5, g) < 1e-10);

  // Five-point is more accurate than two-point at the same (large) step on a curved function.
  auto e = [](const std::vector<double>& y) { return std::exp(3.0 * y[0]); };
  const std::vector<double> y{0.5};
  const double exact = 3.0 * std::exp(1.5);
  const double err2 = std::fabs(grpo_test::fd_gradient(e, y, 1e-2)[0] - exact);
  const double err5 = std::fabs(grpo_test::fd_gradient_5pt(e, y, 1e-2)[0] - exact);
  CHECK(err5 < err2 / 100.0);
  // And fd_gradient does not return the gradient of some other function: a wrong analytic
  // gradient is detected.
  std::vector<double> wrong = g;
  wrong[1] += 1e-4;
  CHECK(grpo_test::max_abs_error(g2, wrong) > 1e-5);
}

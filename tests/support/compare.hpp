// SPDX-License-Identifier: Apache-2.0
/// @file compare.hpp
/// @brief Test helpers: relative closeness, max abs/rel error between views (or a view and a
///        std::vector<double>), row-major flattening, and central finite-difference gradients.
///
/// Header-only and doctest-free so tests, benchmarks and tools can share it. Everything works in
/// double precision: elements are widened with static_cast<double> (exact for float, bfloat16 and
/// float16, whose conversion operators widen exactly).
#pragma once

#include <grpo/core/error.hpp>
#include <grpo/core/strided_view.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace grpo_test {

using grpo::index_t;

/// |a - b| <= atol + rtol * max(|a|, |b|). Two NaNs are close (a NaN expected and produced), equal
/// infinities are close, anything else involving NaN/Inf is not.
inline bool close_rel(double a, double b, double rtol, double atol = 0.0) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::fabs(a - b) <= atol + rtol * std::max(std::fabs(a), std::fabs(b));
}

/// NaN-aware running maximum of an error: worst = err_max(worst, |got - want|). A NaN in either
/// argument gives +inf, so a NaN output can never pass `worst <= tol` (std::max(0.0, NaN) is 0 and
/// `if (e > worst)` skips NaN: both let a NaN output through).
inline double err_max(double worst, double e) {
  if (std::isnan(worst) || std::isnan(e)) return INFINITY;
  return e > worst ? e : worst;
}

/// Running maximum of a magnitude used to SCALE a tolerance (tol * max |g|): only finite values
/// count, so an Inf or NaN output cannot widen the tolerance it is checked against.
inline double scale_max(double s, double x) {
  const double a = std::fabs(x);
  return std::isfinite(a) && a > s ? a : s;
}

/// Calls f(idx) for every multi-index of `v` in row-major order (last index fastest); idx is a
/// std::array<index_t, Rank>. Rank 0 calls f once with an empty array.
template <class T, std::size_t Rank, class F>
void for_each_index(const grpo::strided_view<T, Rank>& v, F&& f) {
  std::array<index_t, Rank> idx{};
  for (std::size_t d = 0; d < Rank; ++d)
    if (v.extent(d) <= 0) return;
  while (true) {
    f(std::as_const(idx));
    std::size_t d = Rank;
    while (d > 0) {
      --d;
      if (++idx[d] < v.extent(d)) break;
      idx[d] = 0;
      if (d == 0) return;
    }
    if constexpr (Rank == 0) return;
  }
}

/// The element of `v` at multi-index `idx` (offset = sum_d idx[d] * stride(d)).
template <class T, std::size_t Rank>
T& element(const grpo::strided_view<T, Rank>& v, const std::array<index_t, Rank>& idx) {
  index_t off = 0;
  for (std::size_t d = 0; d < Rank; ++d) off += idx[d] * v.stride(d);
  return v.data_handle()[off];
}

/// The elements of `v`, widened to double, in row-major order.
template <class T, std::size_t Rank>
std::vector<double> to_vector(const grpo::strided_view<T, Rank>& v) {
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(std::max<index_t>(v.size(), 0)));
  for_each_index(v, [&](const auto& idx) { out.push_back(static_cast<double>(element(v, idx))); });
  return out;
}

/// Summary of an element-wise comparison: worst absolute error, worst relative error
/// |a - b| / max(|b|, rel_floor) (b is the reference), where they occur (flat row-major index),
/// and how many elements broke the tolerance passed to compare().
struct error_report {
  double max_abs = 0.0;
  double max_rel = 0.0;
  std::size_t worst_abs_at = 0;
  std::size_t worst_rel_at = 0;
  std::size_t count = 0;
  std::size_t failures = 0;
  std::size_t first_failure = 0;
  double first_failure_got = 0.0;
  double first_failure_want = 0.0;

  /// True when every compared element satisfied close_rel(got, want, rtol, atol).
  [[nodiscard]] bool ok() const noexcept { return failures == 0; }

  /// One line for a doctest INFO/CHECK_MESSAGE.
  [[nodiscard]] std::string describe() const {
    std::ostringstream os;
    os.precision(17);
    os << count << " elements, max_abs=" << max_abs << " (at " << worst_abs_at
       << "), max_rel=" << max_rel << " (at " << worst_rel_at << "), failures=" << failures;
    if (failures != 0)
      os << ", first at " << first_failure << ": got " << first_failure_got << " want "
         << first_failure_want;
    return os.str();
  }
};

/// Compares `got` against the reference `want` (same length) element by element.
/// @pre got.size() == want.size() (else [grpo.shape_mismatch]).
inline error_report compare(const std::vector<double>& got, const std::vector<double>& want,
                            double rtol = 0.0, double atol = 0.0, double rel_floor = 1e-300) {
  GRPO_EXPECTS(got.size() == want.size(), shape_mismatch,
               "compare: got has " + std::to_string(got.size()) + " elements, want has " +
                   std::to_string(want.size()));
  error_report r;
  r.count = got.size();
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double a = got[i], b = want[i];
    const bool same_special = (std::isnan(a) && std::isnan(b)) || (std::isinf(a) && a == b);
    const double abs_err = same_special ? 0.0 : std::fabs(a - b);
    const double rel_err = same_special ? 0.0 : abs_err / std::max(std::fabs(b), rel_floor);
    // NaN errors (one side NaN) must count as the worst possible, not vanish in comparisons.
    if (std::isnan(abs_err) || abs_err > r.max_abs) {
      r.max_abs = std::isnan(abs_err) ? INFINITY : abs_err;
      r.worst_abs_at = i;
    }
    if (std::isnan(rel_err) || rel_err > r.max_rel) {
      r.max_rel = std::isnan(rel_err) ? INFINITY : rel_err;
      r.worst_rel_at = i;
    }
    if (!close_rel(a, b, rtol, atol)) {
      if (r.failures == 0) {
        r.first_failure = i;
        r.first_failure_got = a;
        r.first_failure_want = b;
      }
      ++r.failures;
    }
  }
  return r;
}

/// View vs. reference vector (row-major order of the view).
template <class T, std::size_t Rank>
error_report compare(const grpo::strided_view<T, Rank>& got, const std::vector<double>& want,
                     double rtol = 0.0, double atol = 0.0) {
  return compare(to_vector(got), want, rtol, atol);
}

/// View vs. view; extents must agree (else [grpo.shape_mismatch]).
template <class T, class U, std::size_t Rank>
error_report compare(const grpo::strided_view<T, Rank>& got,
                     const grpo::strided_view<U, Rank>& want, double rtol = 0.0,
                     double atol = 0.0) {
  grpo::expect_extents(got, want.extents(), "compare(got, want)");
  return compare(to_vector(got), to_vector(want), rtol, atol);
}

/// Vector vs. reference view (row-major order of the view).
template <class T, std::size_t Rank>
error_report compare(const std::vector<double>& got, const grpo::strided_view<T, Rank>& want,
                     double rtol = 0.0, double atol = 0.0) {
  return compare(got, to_vector(want), rtol, atol);
}

/// max_d |got_d - want_d| over all elements (views or vectors; same rules as compare()).
template <class A, class B>
double max_abs_error(const A& got, const B& want) {
  return compare(got, want).max_abs;
}

/// max_d |got_d - want_d| / max(|want_d|, tiny): relative to the reference `want`.
template <class A, class B>
double max_rel_error(const A& got, const B& want) {
  return compare(got, want).max_rel;
}

/// Central finite-difference gradient of a scalar function f: R^n -> R at x,
///   g_i = (f(x + h_i e_i) - f(x - h_i e_i)) / (2 h_i),  h_i = h * max(1, |x_i|),
/// truncation error O(h^2 f'''), rounding error O(eps |f| / h): h = 1e-6 balances the two for
/// double-precision f with O(1) derivatives (about 1e-10 absolute accuracy).
/// f is called 2n times with a copy of x where one coordinate is moved.
template <class F>
std::vector<double> fd_gradient(F&& f, std::vector<double> x, double h = 1e-6) {
  std::vector<double> g(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double xi = x[i];
    const double hi = h * std::max(1.0, std::fabs(xi));
    x[i] = xi + hi;
    const double fp = static_cast<double>(f(std::as_const(x)));
    x[i] = xi - hi;
    const double fm = static_cast<double>(f(std::as_const(x)));
    x[i] = xi;
    // Divide by the step actually taken ((xi + hi) - (xi - hi) may differ from 2 hi by rounding).
    g[i] = (fp - fm) / ((xi + hi) - (xi - hi));
  }
  return g;
}

/// Fourth-order central difference (five-point stencil),
///   g_i = (-f(x + 2h e_i) + 8 f(x + h e_i) - 8 f(x - h e_i) + f(x - 2h e_i)) / (12 h),
/// truncation error O(h^4): use it for strongly curved functions (exp, softmax) where the two-point
/// formula's O(h^2) term dominates; h = 1e-3 is a good default in double precision.
template <class F>
std::vector<double> fd_gradient_5pt(F&& f, std::vector<double> x, double h = 1e-3) {
  std::vector<double> g(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double xi = x[i];
    const double hi = h * std::max(1.0, std::fabs(xi));
    double fs[4];
    const double offs[4] = {2.0, 1.0, -1.0, -2.0};
    for (int k = 0; k < 4; ++k) {
      x[i] = xi + offs[k] * hi;
      fs[k] = static_cast<double>(f(std::as_const(x)));
    }
    x[i] = xi;
    g[i] = (-fs[0] + 8.0 * fs[1] - 8.0 * fs[2] + fs[3]) / (12.0 * hi);
  }
  return g;
}

}  // namespace grpo_test

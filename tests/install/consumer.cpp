// SPDX-License-Identifier: Apache-2.0
// Tiny consumer of an installed (find_package) or embedded (add_subdirectory) grpo: computes a
// weighted sum through grpo::as_view over a std::vector and, when grpo::eigen is linked, over a
// column-major Eigen matrix, and checks the results against values computed by hand.
#include <grpo/core/error.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/core/tensor_traits.hpp>
#if __has_include(<grpo/grpo.hpp>)
#include <grpo/grpo.hpp>  // the umbrella header, once it exists, must be usable by consumers too
#endif
#if defined(GRPO_CONSUMER_HAS_EIGEN)
#include <grpo/backends/eigen.hpp>

#include <Eigen/Core>
#endif

#include <cstdio>
#include <vector>

namespace {

/// sum_{i, j} (i + 1) * v(i, j) over any rank-2 view.
template <class T>
double weighted_sum(const grpo::strided_view<T, 2>& v) {
  double s = 0.0;
  for (grpo::index_t i = 0; i < v.extent(0); ++i)
    for (grpo::index_t j = 0; j < v.extent(1); ++j)
      s += static_cast<double>(i + 1) * static_cast<double>(v(i, j));
  return s;
}

int fail(const char* what) {
  std::fprintf(stderr, "grpo consumer: %s\n", what);
  return 1;
}

}  // namespace

int main() {
  // x = [[1, 2, 3], [4, 5, 6]]: weighted sum = 1 * (1 + 2 + 3) + 2 * (4 + 5 + 6) = 36.
  std::vector<double> x{1, 2, 3, 4, 5, 6};
  const auto flat = grpo::as_view(x);
  if (flat.extent(0) != 6) return fail("as_view(std::vector) has the wrong extent");
  const auto m = grpo::make_view(x.data(), {2, 3});
  if (weighted_sum(m) != 36.0) return fail("weighted sum over a row-major view");
  // Transposed: [[1, 4], [2, 5], [3, 6]] -> 1 * 5 + 2 * 7 + 3 * 9 = 46.
  if (weighted_sum(m.transposed()) != 46.0) return fail("weighted sum over a transposed view");
  try {
    grpo::expect_extents(m, {3, 2}, "x");
    return fail("expect_extents accepted a wrong shape");
  } catch (const grpo::error& e) {
    if (e.code() != grpo::errc::shape_mismatch) return fail("wrong error id");
  }
#if defined(GRPO_CONSUMER_HAS_EIGEN)
  Eigen::MatrixXd e(2, 3);  // column-major
  e << 1, 2, 3, 4, 5, 6;
  const auto ev = grpo::as_view(e);
  if (ev.stride(0) != 1 || ev.stride(1) != 2) return fail("Eigen strides");
  if (weighted_sum(ev) != 36.0) return fail("weighted sum over an Eigen matrix");
  std::puts("grpo consumer: OK (core + eigen)");
#else
  std::puts("grpo consumer: OK (core)");
#endif
  return 0;
}

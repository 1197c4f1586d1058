// SPDX-License-Identifier: Apache-2.0
#include <grpo/core/strided_view.hpp>
#include <grpo/core/tensor_traits.hpp>

#include <doctest/doctest.h>

#include <array>
#include <span>
#include <vector>

TEST_CASE("strided_view: raw pointer + extents is row-major" * doctest::test_suite("core")) {
  std::vector<double> a(12);
  for (int i = 0; i < 12; ++i) a[i] = i;
  auto v = grpo::make_view(a.data(), {3, 4});
  CHECK(v.extent(0) == 3);
  CHECK(v.extent(1) == 4);
  CHECK(v.stride(0) == 4);
  CHECK(v.stride(1) == 1);
  CHECK(v.is_contiguous());
  CHECK(v(2, 1) == 9.0);
  CHECK(v.row(1)(3) == 7.0);
  auto t = v.transposed();
  CHECK(t(1, 2) == 9.0);
  CHECK_FALSE(t.is_contiguous());
  CHECK_THROWS_WITH_AS(v.at(3, 0), doctest::Contains("[grpo.out_of_range]"), grpo::error);
}

TEST_CASE("strided_view: explicit, negative and zero strides" * doctest::test_suite("core")) {
  std::vector<float> a(10);
  for (int i = 0; i < 10; ++i) a[i] = static_cast<float>(i);
  // Reversed vector: start at the last element with stride -1.
  auto r = grpo::make_view(a.data() + 9, {10}, {-1});
  CHECK(r(0) == 9.0f);
  CHECK(r(9) == 0.0f);
  // Broadcast row: stride 0 along rows.
  auto b = grpo::make_view(a.data(), {4, 10}, {0, 1});
  CHECK(b(3, 5) == 5.0f);
}

TEST_CASE("strided_view: 64-bit offsets beyond 2^31 elements" * doctest::test_suite("core")) {
  // The view is only indexed, never dereferenced: check the address arithmetic does not wrap.
  std::array<char, 1> dummy{};
  const grpo::index_t rows = 70000, cols = 151936;  // 1.06e10 elements
  grpo::strided_view<char, 2> v(dummy.data(), {rows, cols}, {cols, 1});
  CHECK(v.size() == rows * cols);
  CHECK(&v(rows - 1, cols - 1) - dummy.data() == rows * cols - 1);
}

TEST_CASE("as_view: std containers are rank-1 tensors" * doctest::test_suite("core")) {
  std::vector<double> vec{1, 2, 3};
  const std::vector<double>& cvec = vec;
  std::array<int, 2> arr{4, 5};
  std::span<const double> sp(vec);
  auto v1 = grpo::as_view(vec);
  static_assert(std::is_same_v<decltype(v1), grpo::strided_view<double, 1>>);
  auto v2 = grpo::as_view(cvec);
  static_assert(std::is_same_v<decltype(v2), grpo::strided_view<const double, 1>>);
  auto v3 = grpo::as_view(sp);
  static_assert(std::is_same_v<decltype(v3), grpo::strided_view<const double, 1>>);
  CHECK(v1(2) == 3.0);
  CHECK(v2.extent(0) == 3);
  CHECK(grpo::as_view(arr)(1) == 5);
  CHECK(v3(0) == 1.0);
  static_assert(grpo::tensor<std::vector<float>>);
  static_assert(!grpo::tensor<int>);
  // A strided_view passes through unchanged, and converts to a const view.
  grpo::strided_view<const double, 1> c = v1;
  CHECK(grpo::as_view(c)(1) == 2.0);
  // Typed form checks rank and dtype statically here.
  CHECK(grpo::as_view_as<const double, 1>(cvec)(0) == 1.0);
}

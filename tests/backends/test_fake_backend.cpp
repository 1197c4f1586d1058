// SPDX-License-Identifier: Apache-2.0
// The odd test backend (permuted, padded, flipped storage) through grpo::as_view, and the
// run-time-typed twin through grpo::as_view_as.
#include <grpo/core/tensor_traits.hpp>

#include <support/compare.hpp>
#include <support/fake_backend.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstddef>
#include <type_traits>
#include <vector>

namespace {

using grpo::index_t;
using grpo_test::fake_layout;
using grpo_test::fake_tensor;

/// Fills every logical element with a distinct value derived from its multi-index.
template <class T, std::size_t R>
void fill_distinct(fake_tensor<T, R>& x) {
  std::array<index_t, R> e{};
  for (std::size_t d = 0; d < R; ++d) e[d] = x.extent(d);
  std::vector<double> dummy(1);
  grpo::strided_view<double, R> shape(dummy.data(), e, std::array<index_t, R>{});
  grpo_test::for_each_index(shape, [&](const std::array<index_t, R>& idx) {
    double v = 1.0;
    for (std::size_t d = 0; d < R; ++d) v = v * 10.0 + static_cast<double>(idx[d]);
    x.at(idx) = static_cast<T>(v);
  });
}

/// Every element of the view is the same object as the backend's own x.at(idx).
template <class T, std::size_t R>
void check_view_matches(fake_tensor<T, R>& x) {
  auto v = grpo::as_view(x);
  static_assert(std::is_same_v<decltype(v), grpo::strided_view<T, R>>);
  for (std::size_t d = 0; d < R; ++d) REQUIRE(v.extent(d) == x.extent(d));
  std::size_t n = 0;
  grpo_test::for_each_index(v, [&](const std::array<index_t, R>& idx) {
    CHECK(&grpo_test::element(v, idx) == &x.at(idx));
    CHECK(grpo_test::element(v, idx) == x.at(idx));
    ++n;
  });
  CHECK(static_cast<index_t>(n) == v.size());
}

template <std::size_t R>
std::vector<fake_layout<R>> all_layouts() {
  std::vector<fake_layout<R>> ls{fake_layout<R>::row_major(), fake_layout<R>::odd()};
  auto col = fake_layout<R>::row_major();
  for (std::size_t d = 0; d < R; ++d) col.order[d] = R - 1 - d;
  ls.push_back(col);
  auto padded = fake_layout<R>::row_major();
  padded.pad.fill(3);
  ls.push_back(padded);
  auto flipped = fake_layout<R>::row_major();
  flipped.flip.fill(true);
  ls.push_back(flipped);
  return ls;
}

}  // namespace

TEST_CASE("fake_backend: view sees the backend's elements in every layout" *
          doctest::test_suite("backends")) {
  for (const auto& l : all_layouts<1>()) {
    fake_tensor<float, 1> x({7}, l, -999.0f);
    fill_distinct(x);
    check_view_matches(x);
  }
  for (const auto& l : all_layouts<2>()) {
    fake_tensor<double, 2> x({3, 5}, l, -999.0);
    fill_distinct(x);
    check_view_matches(x);
  }
  for (const auto& l : all_layouts<3>()) {
    fake_tensor<float, 3> x({2, 3, 4}, l, -999.0f);
    fill_distinct(x);
    check_view_matches(x);
  }
  auto p = fake_layout<3>::row_major();
  p.order = {1, 2, 0};  // a permutation that is neither row- nor column-major
  p.flip = {false, true, false};
  fake_tensor<double, 3> x({2, 3, 4}, p);
  fill_distinct(x);
  check_view_matches(x);
}

TEST_CASE("fake_backend: odd layout has negative strides and never exposes padding" *
          doctest::test_suite("backends")) {
  fake_tensor<double, 2> x({3, 4}, fake_layout<2>::odd(), -999.0);
  fill_distinct(x);
  auto v = grpo::as_view(x);
  // order {1, 0}: dimension 0 is innermost (|stride| 1), dimension 1 outer with padded extent 3+1.
  CHECK(v.stride(0) == 1);
  CHECK(v.stride(1) == -(3 + 1));
  CHECK_FALSE(v.is_contiguous());
  const auto flat = grpo_test::to_vector(v);
  REQUIRE(flat.size() == 12u);
  for (double f : flat) CHECK(f != -999.0);
  // Storage holds (3+1) * (4+2) elements; exactly 12 are the tensor's.
  CHECK(x.storage().size() == 24u);

  fake_tensor<double, 2> rm({3, 4}, fake_layout<2>::row_major());
  CHECK(grpo::as_view(rm).is_contiguous());
}

TEST_CASE("fake_backend: const tensor gives a read-only view" * doctest::test_suite("backends")) {
  fake_tensor<float, 2> x({2, 2}, fake_layout<2>::odd());
  fill_distinct(x);
  const auto& cx = x;
  auto v = grpo::as_view(cx);
  static_assert(std::is_same_v<decltype(v), grpo::strided_view<const float, 2>>);
  CHECK(v(1, 0) == cx.at({1, 0}));
}

TEST_CASE("fake_backend: device, validate hook and shape checks" *
          doctest::test_suite("backends")) {
  fake_tensor<float, 2> dev({2, 3}, fake_layout<2>::odd(), 0.0f, grpo::memory_space::cuda);
  auto v = grpo::as_view(dev);
  CHECK(v.space() == grpo::memory_space::cuda);
  CHECK_THROWS_WITH_AS(grpo::expect_host(v, "logp"), doctest::Contains("[grpo.bad_device]"),
                       grpo::error);
  CHECK_THROWS_WITH_AS(grpo::expect_host(v, "logp"), doctest::Contains("logp"), grpo::error);

  fake_tensor<float, 2> managed({2, 3}, fake_layout<2>::odd(), 0.0f,
                                grpo::memory_space::cuda_managed);
  CHECK_NOTHROW(grpo::expect_host(grpo::as_view(managed), "logp"));

  fake_tensor<float, 2> host({2, 3}, fake_layout<2>::odd());
  auto h = grpo::as_view(host);
  CHECK_NOTHROW(grpo::expect_host(h, "logp"));
  CHECK_NOTHROW(grpo::expect_extents(h, {2, 3}, "logp"));
  CHECK_THROWS_WITH_AS(grpo::expect_extents(h, {3, 2}, "logp"),
                       doctest::Contains("[grpo.shape_mismatch]"), grpo::error);

  host.poison();
  CHECK_THROWS_WITH_AS(grpo::as_view(host), doctest::Contains("[grpo.bad_value]"), grpo::error);
}

TEST_CASE("fake_backend: run-time typed handle checks dtype and rank" *
          doctest::test_suite("backends")) {
  fake_tensor<double, 2> x({3, 4}, fake_layout<2>::odd(), -1.0);
  fill_distinct(x);
  auto d = grpo_test::fake_dyn_tensor::of(x);
  static_assert(grpo::tensor<grpo_test::fake_dyn_tensor>);

  auto v = grpo::as_view_as<double, 2>(d);
  CHECK(v.data_handle() == x.origin());
  grpo_test::for_each_index(v, [&](const std::array<index_t, 2>& idx) {
    CHECK(&grpo_test::element(v, idx) == &x.at(idx));
  });
  auto cv = grpo::as_view_as<const double, 2>(d);
  CHECK(cv(2, 3) == x.at({2, 3}));

  CHECK_THROWS_WITH_AS((grpo::as_view_as<float, 2>(d)), doctest::Contains("[grpo.bad_dtype]"),
                       grpo::error);
  CHECK_THROWS_WITH_AS((grpo::as_view_as<float, 2>(d)), doctest::Contains("float64"), grpo::error);
  CHECK_THROWS_WITH_AS((grpo::as_view_as<double, 3>(d)), doctest::Contains("[grpo.shape_mismatch]"),
                       grpo::error);
  CHECK_THROWS_WITH_AS((grpo::as_view_as<double, 1>(d)), doctest::Contains("[grpo.shape_mismatch]"),
                       grpo::error);

  // A handle that claims bf16 storage for doubles is rejected for double and accepted for bf16.
  auto lie = grpo_test::fake_dyn_tensor::of(x, grpo::dtype::bf16);
  CHECK_THROWS_WITH_AS((grpo::as_view_as<double, 2>(lie)), doctest::Contains("[grpo.bad_dtype]"), grpo::error);
  CHECK_NOTHROW((grpo::as_view_as<grpo::bfloat16, 2>(lie)));

  d.space = grpo::memory_space::cuda;
  CHECK_THROWS_WITH_AS(grpo::expect_host(grpo::as_view_as<double, 2>(d), "x"),
                       doctest::Contains("[grpo.bad_device]"), grpo::error);
}

TEST_CASE("fake_backend: bad layouts are rejected" * doctest::test_suite("backends")) {
  fake_layout<2> l = fake_layout<2>::row_major();
  l.order = {0, 0};
  CHECK_THROWS_WITH_AS((fake_tensor<float, 2>({2, 2}, l)), doctest::Contains("[grpo.bad_value]"),
                       grpo::error);
  fake_tensor<float, 2> x({2, 2}, fake_layout<2>::odd());
  CHECK_THROWS_WITH_AS(x.at({2, 0}), doctest::Contains("[grpo.out_of_range]"), grpo::error);
}

TEST_CASE("fake_backend: empty tensors give empty views" * doctest::test_suite("backends")) {
  fake_tensor<float, 2> x({0, 3}, fake_layout<2>::odd());
  auto v = grpo::as_view(x);
  CHECK(v.size() == 0);
  CHECK(v.empty());
  CHECK(grpo_test::to_vector(v).empty());
}

TEST_CASE("fake_backend: make_fake stores row-major values in any layout" *
          doctest::test_suite("backends")) {
  // An "algorithm" written against strided_view (row sums weighted by column index) must give the
  // same numbers through the odd layout as through a plain row-major vector.
  const std::vector<double> vals{0.5, -1.0, 2.0, 3.25, 4.0, -0.75};
  auto weighted_row_sums = [](const auto& v) {
    std::vector<double> out;
    for (index_t i = 0; i < v.extent(0); ++i) {
      double s = 0.0;
      for (index_t j = 0; j < v.extent(1); ++j) s += static_cast<double>(j + 1) * v(i, j);
      out.push_back(s);
    }
    return out;
  };
  // By hand: row 0 = 0.5 - 2 + 6 = 4.5; row 1 = 3.25 + 8 - 2.25 = 9.
  const std::vector<double> expect{4.5, 9.0};
  std::vector<double> plain = vals;
  CHECK(weighted_row_sums(grpo::make_view(plain.data(), {2, 3})) == expect);
  auto odd = grpo_test::make_fake<double, 2>({2, 3}, vals);
  CHECK(weighted_row_sums(grpo::as_view(odd)) == expect);
  CHECK(grpo_test::to_vector(grpo::as_view(odd)) == vals);
  auto rm = grpo_test::make_fake<float, 2>({2, 3}, vals, fake_layout<2>::row_major());
  CHECK(grpo_test::to_vector(grpo::as_view(rm)) == vals);
  auto v3 = grpo_test::make_fake<double, 3>({1, 2, 3}, vals);
  CHECK(grpo_test::to_vector(grpo::as_view(v3)) == vals);
  CHECK(v3.at({0, 1, 2}) == -0.75);
  CHECK_THROWS_WITH_AS((grpo_test::make_fake<double, 2>({2, 2}, vals)),
                       doctest::Contains("[grpo.shape_mismatch]"), grpo::error);
}

// SPDX-License-Identifier: Apache-2.0
// xtensor backend: containers (both layouts), xarray (run-time rank), adaptors, xt::view and
// xt::strided_view (including negative steps and offsets) address exactly the elements xtensor's
// own operator() addresses.
#include <grpo/backends/xtensor.hpp>

#include <support/compare.hpp>

#include <doctest/doctest.h>
#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xfixed.hpp>
#include <xtensor/xstrided_view.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include <cstddef>
#include <type_traits>
#include <vector>

namespace {

using grpo::index_t;

/// Every element of a rank-2 view is xtensor's element (i, j): same address, same value.
template <class V, class E>
void check2(const V& v, E&& e) {
  REQUIRE(V::rank() == 2);
  REQUIRE(v.extent(0) == static_cast<index_t>(e.shape()[0]));
  REQUIRE(v.extent(1) == static_cast<index_t>(e.shape()[1]));
  for (std::size_t i = 0; i < e.shape()[0]; ++i)
    for (std::size_t j = 0; j < e.shape()[1]; ++j) {
      CHECK(&v(i, j) == &e(i, j));
      CHECK(v(i, j) == e(i, j));
    }
}

template <class V, class E>
void check1(const V& v, E&& e) {
  REQUIRE(V::rank() == 1);
  REQUIRE(v.extent(0) == static_cast<index_t>(e.shape()[0]));
  for (std::size_t i = 0; i < e.shape()[0]; ++i) {
    CHECK(&v(i) == &e(i));
    CHECK(v(i) == e(i));
  }
}

template <class V, class E>
void check3(const V& v, E&& e) {
  REQUIRE(V::rank() == 3);
  for (std::size_t d = 0; d < 3; ++d) REQUIRE(v.extent(d) == static_cast<index_t>(e.shape()[d]));
  for (std::size_t i = 0; i < e.shape()[0]; ++i)
    for (std::size_t j = 0; j < e.shape()[1]; ++j)
      for (std::size_t k = 0; k < e.shape()[2]; ++k) {
        CHECK(&v(i, j, k) == &e(i, j, k));
      }
}

template <class E>
void iota(E& e) {
  std::size_t n = 0;
  for (auto& x : e) x = static_cast<std::remove_reference_t<decltype(x)>>(n++);
}

}  // namespace

TEST_CASE_TEMPLATE("xtensor: containers in both layouts" * doctest::test_suite("backends"), T,
                   float, double) {
  xt::xtensor<T, 2> a({3, 5});
  iota(a);
  auto va = grpo::as_view(a);
  static_assert(std::is_same_v<decltype(va), grpo::strided_view<T, 2>>);
  CHECK(va.stride(0) == 5);
  CHECK(va.stride(1) == 1);
  CHECK(va.is_contiguous());
  check2(va, a);

  xt::xtensor<T, 2, xt::layout_type::column_major> c({3, 5});
  iota(c);
  auto vc = grpo::as_view(c);
  CHECK(vc.stride(0) == 1);
  CHECK(vc.stride(1) == 3);
  check2(vc, c);

  xt::xtensor<T, 3> t({2, 3, 4});
  iota(t);
  check3(grpo::as_view(t), t);

  xt::xtensor<T, 1> v({6});
  iota(v);
  check1(grpo::as_view(v), v);

  xt::xtensor_fixed<T, xt::xshape<2, 3>> f;
  iota(f);
  check2(grpo::as_view(f), f);

  const auto& ca = a;
  auto cva = grpo::as_view(ca);
  static_assert(std::is_same_v<decltype(cva), grpo::strided_view<const T, 2>>);
  check2(cva, ca);
}

TEST_CASE_TEMPLATE("xtensor: xarray has a run-time rank" * doctest::test_suite("backends"), T,
                   float, double) {
  xt::xarray<T> a = xt::zeros<T>({3, 4});
  iota(a);
  static_assert(grpo::traits_of<xt::xarray<T>>::rank == grpo::dynamic_rank);
  auto va = grpo::as_view_as<T, 2>(a);
  check2(va, a);
  CHECK_THROWS_WITH_AS((grpo::as_view_as<T, 3>(a)), doctest::Contains("[grpo.shape_mismatch]"),
                       grpo::error);
  CHECK_THROWS_WITH_AS((grpo::as_view_as<T, 1>(a)), doctest::Contains("rank 2"), grpo::error);

  xt::xarray<T, xt::layout_type::column_major> c = xt::zeros<T>({2, 3, 4});
  iota(c);
  check3(grpo::as_view_as<T, 3>(c), c);
  auto vc = grpo::as_view_as<const T, 3>(c);
  CHECK(vc.stride(0) == 1);
  CHECK(vc.stride(1) == 2);
  CHECK(vc.stride(2) == 6);
}

TEST_CASE_TEMPLATE("xtensor: adaptors over caller memory" * doctest::test_suite("backends"), T,
                   float, double) {
  std::vector<T> buf(12);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<T>(i);
  auto a = xt::adapt(buf, std::array<std::size_t, 2>{3, 4});
  auto va = grpo::as_view(a);
  CHECK(va.data_handle() == buf.data());
  check2(va, a);

  auto p = xt::adapt(buf.data(), buf.size(), xt::no_ownership(), std::array<std::size_t, 2>{4, 3});
  check2(grpo::as_view(p), p);

  // Column-major adaptor with explicit strides, as a foreign library would describe its buffer.
  // xtensor requires the adapted size to equal the product of the shape (6), strides aside.
  auto s = xt::adapt(buf.data(), std::size_t{6}, xt::no_ownership(),
                     std::array<std::size_t, 2>{2, 3}, std::array<std::ptrdiff_t, 2>{1, 4});
  auto vs = grpo::as_view(s);
  CHECK(vs.stride(0) == 1);
  CHECK(vs.stride(1) == 4);
  check2(vs, s);
}

TEST_CASE_TEMPLATE("xtensor: views with ranges, steps, negative steps and transposes" *
                       doctest::test_suite("backends"),
                   T, float, double) {
  using namespace xt::placeholders;
  xt::xtensor<T, 2> a({6, 7});
  iota(a);

  auto block = xt::view(a, xt::range(1, 4), xt::range(2, 6));
  auto vb = grpo::as_view(block);
  CHECK(vb.data_handle() == &a(1, 2));
  check2(vb, block);

  auto stepped = xt::view(a, xt::range(0, 6, 2), xt::range(1, 7, 3));
  auto vs = grpo::as_view(stepped);
  CHECK(vs.stride(0) == 14);
  CHECK(vs.stride(1) == 3);
  check2(vs, stepped);

  auto reversed = xt::view(a, xt::range(_, _, -1), xt::all());
  auto vr = grpo::as_view(reversed);
  CHECK(vr.stride(0) == -7);
  CHECK(vr.data_handle() == &a(5, 0));
  check2(vr, reversed);

  auto row = xt::view(a, 2, xt::all());
  check1(grpo::as_view(row), row);
  auto col = xt::view(a, xt::all(), 3);
  auto vcol = grpo::as_view(col);
  CHECK(vcol.stride(0) == 7);
  check1(vcol, col);

  auto tr = xt::transpose(a);
  auto vt = grpo::as_view(tr);
  CHECK(vt.stride(0) == 1);
  CHECK(vt.stride(1) == 7);
  check2(vt, tr);

  auto sv = xt::strided_view(a, {xt::range(5, 0, -2), xt::range(0, 7, 2)});
  auto vsv = grpo::as_view_as<T, 2>(sv);
  CHECK(vsv.stride(0) == -14);
  check2(vsv, sv);

  // Writing through the view writes the tensor.
  vb(1, 1) = T(-3);
  CHECK(a(2, 3) == T(-3));
}

TEST_CASE("xtensor: lazy expressions are not tensors" * doctest::test_suite("backends")) {
  xt::xtensor<double, 2> a({2, 2});
  static_assert(grpo::tensor<xt::xtensor<double, 2>>);
  static_assert(grpo::tensor<xt::xarray<float>>);
  static_assert(!grpo::tensor<decltype(a + a)>);
  static_assert(!grpo::tensor<decltype(xt::broadcast(a, {3, 2, 2}))>);
  CHECK(grpo::tensor<decltype(a)>);
}

TEST_CASE("xtensor: shape and device checks" * doctest::test_suite("backends")) {
  xt::xtensor<float, 2> a({3, 4});
  auto v = grpo::as_view(a);
  CHECK(v.space() == grpo::memory_space::host);
  CHECK_NOTHROW(grpo::expect_host(v, "a"));
  CHECK_NOTHROW(grpo::expect_extents(v, {3, 4}, "a"));
  CHECK_THROWS_WITH_AS(grpo::expect_extents(v, {3, 5}, "rewards"),
                       doctest::Contains("[grpo.shape_mismatch]"), grpo::error);
  // xtensor's dtype is static: as_view_as<double, 2>(a) does not compile; xarray's rank is dynamic
  // and checked above.
}

TEST_CASE("xtensor: same numbers as a raw view after a layout change" *
          doctest::test_suite("backends")) {
  xt::xtensor<double, 2, xt::layout_type::column_major> c({4, 3});
  std::vector<double> raw(12);
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t j = 0; j < 3; ++j) {
      c(i, j) = 0.5 * static_cast<double>(i) + 0.25 * static_cast<double>(j) - 1.0;
      raw[3 * i + j] = c(i, j);
    }
  CHECK(grpo_test::compare(grpo::as_view(c), raw).max_abs == 0.0);
}

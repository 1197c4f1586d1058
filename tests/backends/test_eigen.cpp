// SPDX-License-Identifier: Apache-2.0
// Eigen backend: every direct-access dense object, in every storage order and stride pattern, gives
// a strided_view that addresses exactly the coefficients Eigen's own operator() addresses.
#include <grpo/backends/eigen.hpp>

#include <support/compare.hpp>

#include <doctest/doctest.h>
#include <Eigen/Core>

#include <type_traits>
#include <vector>

namespace {

using grpo::index_t;

/// Compare every coefficient of a rank-2 Eigen object with the view: same address, same value.
template <class V, class M>
void check_matrix(const V& v, M&& m) {
  static_assert(std::remove_cvref_t<V>::rank() == 2);
  REQUIRE(v.extent(0) == m.rows());
  REQUIRE(v.extent(1) == m.cols());
  for (index_t i = 0; i < m.rows(); ++i)
    for (index_t j = 0; j < m.cols(); ++j) {
      CHECK(&v(i, j) == &m.coeffRef(i, j));
      CHECK(v(i, j) == m(i, j));
    }
}

/// Compare every coefficient of an Eigen vector with a rank-1 view.
template <class V, class M>
void check_vector(const V& v, M&& m) {
  static_assert(std::remove_cvref_t<V>::rank() == 1);
  REQUIRE(v.extent(0) == m.size());
  for (index_t i = 0; i < m.size(); ++i) {
    CHECK(&v(i) == &m.coeffRef(i));
    CHECK(v(i) == m(i));
  }
}

template <class M>
void fill(M& m) {
  for (index_t i = 0; i < m.rows(); ++i)
    for (index_t j = 0; j < m.cols(); ++j)
      m(i, j) = static_cast<typename M::Scalar>(100 * i + j + 1);
}

}  // namespace

TEST_CASE_TEMPLATE("eigen: plain matrices and arrays, both storage orders" *
                       doctest::test_suite("backends"),
                   T, float, double) {
  using ColM = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
  using RowM = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  ColM c(3, 5);
  fill(c);
  auto vc = grpo::as_view(c);
  static_assert(std::is_same_v<decltype(vc), grpo::strided_view<T, 2>>);
  CHECK(vc.stride(0) == 1);  // column-major: rows are adjacent
  CHECK(vc.stride(1) == 3);
  CHECK_FALSE(vc.is_contiguous());
  check_matrix(vc, c);

  RowM r(3, 5);
  fill(r);
  auto vr = grpo::as_view(r);
  CHECK(vr.stride(0) == 5);
  CHECK(vr.stride(1) == 1);
  CHECK(vr.is_contiguous());
  check_matrix(vr, r);

  Eigen::Matrix<T, 4, 3> fixed;
  fill(fixed);
  check_matrix(grpo::as_view(fixed), fixed);
  Eigen::Matrix<T, 2, 6, Eigen::RowMajor> fixed_r;
  fill(fixed_r);
  check_matrix(grpo::as_view(fixed_r), fixed_r);

  Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic> a(4, 2);
  fill(a);
  check_matrix(grpo::as_view(a), a);
  Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> ar(2, 7);
  fill(ar);
  check_matrix(grpo::as_view(ar), ar);

  // A dynamic matrix with one column is still rank 2 (rank is a compile-time property).
  ColM one(4, 1);
  fill(one);
  check_matrix(grpo::as_view(one), one);
}

TEST_CASE_TEMPLATE("eigen: vectors are rank 1" * doctest::test_suite("backends"), T, float,
                   double) {
  Eigen::Matrix<T, Eigen::Dynamic, 1> v(6);
  Eigen::Matrix<T, 1, Eigen::Dynamic> rv(5);
  Eigen::Array<T, 3, 1> av;
  for (index_t i = 0; i < 6; ++i) v(i) = static_cast<T>(i + 1);
  for (index_t i = 0; i < 5; ++i) rv(i) = static_cast<T>(10 * i);
  av << 7, 8, 9;
  auto vv = grpo::as_view(v);
  static_assert(std::is_same_v<decltype(vv), grpo::strided_view<T, 1>>);
  check_vector(vv, v);
  check_vector(grpo::as_view(rv), rv);
  check_vector(grpo::as_view(av), av);
}

TEST_CASE_TEMPLATE("eigen: Map with inner, outer and general strides" *
                       doctest::test_suite("backends"),
                   T, float, double) {
  std::vector<T> buf(64);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<T>(i);
  using ColM = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
  using RowM = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  // Column-major 3x4 with a leading dimension of 5 (padding rows).
  Eigen::Map<ColM, 0, Eigen::OuterStride<>> mo(buf.data(), 3, 4, Eigen::OuterStride<>(5));
  auto vo = grpo::as_view(mo);
  CHECK(vo.stride(0) == 1);
  CHECK(vo.stride(1) == 5);
  check_matrix(vo, mo);

  // Row-major 3x4 with a row pitch of 6.
  Eigen::Map<RowM, 0, Eigen::OuterStride<>> mro(buf.data(), 3, 4, Eigen::OuterStride<>(6));
  auto vro = grpo::as_view(mro);
  CHECK(vro.stride(0) == 6);
  CHECK(vro.stride(1) == 1);
  check_matrix(vro, mro);

  // Every other element of a vector.
  Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>, 0, Eigen::InnerStride<>> mi(
      buf.data() + 1, 10, Eigen::InnerStride<>(3));
  auto vi = grpo::as_view(mi);
  CHECK(vi.stride(0) == 3);
  check_vector(vi, mi);

  // General (outer 7, inner 2) column-major and row-major strides.
  Eigen::Map<ColM, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>> mg(
      buf.data(), 3, 4, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(7, 2));
  auto vg = grpo::as_view(mg);
  CHECK(vg.stride(0) == 2);
  CHECK(vg.stride(1) == 7);
  check_matrix(vg, mg);
  Eigen::Map<RowM, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>> mrg(
      buf.data(), 3, 4, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(9, 2));
  auto vrg = grpo::as_view(mrg);
  CHECK(vrg.stride(0) == 9);
  CHECK(vrg.stride(1) == 2);
  check_matrix(vrg, mrg);

  // Compile-time strides.
  Eigen::Map<Eigen::Matrix<T, 2, 3>, 0, Eigen::Stride<4, 1>> ms(buf.data());
  check_matrix(grpo::as_view(ms), ms);

  // A Map of const data is read-only.
  Eigen::Map<const ColM> mc(buf.data(), 4, 4);
  auto vmc = grpo::as_view(mc);
  static_assert(std::is_same_v<decltype(vmc), grpo::strided_view<const T, 2>>);
  check_matrix(vmc, mc);
}

TEST_CASE_TEMPLATE("eigen: blocks, rows, columns, transposes and Ref" *
                       doctest::test_suite("backends"),
                   T, float, double) {
  using ColM = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
  using RowM = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  ColM c(6, 5);
  fill(c);
  RowM r(6, 5);
  fill(r);

  auto b = c.block(1, 2, 3, 2);
  check_matrix(grpo::as_view(b), b);
  auto br = r.block(2, 1, 4, 3);
  check_matrix(grpo::as_view(br), br);
  auto tl = c.template topLeftCorner<2, 3>();
  check_matrix(grpo::as_view(tl), tl);

  // Rows of a column-major matrix are strided rank-1 views, columns are contiguous; the reverse
  // for row-major.
  auto row = c.row(3);
  auto vrow = grpo::as_view(row);
  CHECK(vrow.stride(0) == 6);
  check_vector(vrow, row);
  auto col = c.col(2);
  auto vcol = grpo::as_view(col);
  CHECK(vcol.stride(0) == 1);
  check_vector(vcol, col);
  auto rrow = r.row(1);
  CHECK(grpo::as_view(rrow).stride(0) == 1);
  check_vector(grpo::as_view(rrow), rrow);
  auto rcol = r.col(4);
  CHECK(grpo::as_view(rcol).stride(0) == 5);
  check_vector(grpo::as_view(rcol), rcol);
  auto seg = c.col(1).segment(2, 3);
  check_vector(grpo::as_view(seg), seg);

  // Transposes swap the strides (no copy).
  auto t = c.transpose();
  auto vt = grpo::as_view(t);
  CHECK(vt.extent(0) == 5);
  CHECK(vt.extent(1) == 6);
  CHECK(vt.stride(0) == 6);
  CHECK(vt.stride(1) == 1);
  CHECK(vt.is_contiguous());  // the transpose of column-major storage is row-major
  check_matrix(vt, t);
  auto rt = r.transpose();
  check_matrix(grpo::as_view(rt), rt);
  auto bt = c.block(1, 1, 4, 3).transpose();
  check_matrix(grpo::as_view(bt), bt);

  // Ref to a block (inner stride 1, outer stride of the parent) and a const Ref.
  Eigen::Ref<ColM> ref = c.block(2, 0, 3, 4);
  check_matrix(grpo::as_view(ref), ref);
  Eigen::Ref<const ColM, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>> cref(
      c.block(0, 1, 5, 2));
  auto vcref = grpo::as_view(cref);
  static_assert(std::is_same_v<decltype(vcref), grpo::strided_view<const T, 2>>);
  check_matrix(vcref, cref);
  Eigen::Ref<ColM, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>> rowref = c.row(4);
  check_matrix(grpo::as_view(rowref), rowref);

  // Writing through the view writes the Eigen object.
  auto vb = grpo::as_view(b);
  vb(2, 1) = T(-5);
  CHECK(c(3, 3) == T(-5));
}

TEST_CASE("eigen: const objects give read-only views" * doctest::test_suite("backends")) {
  Eigen::MatrixXd m(2, 3);
  fill(m);
  const Eigen::MatrixXd& cm = m;
  auto v = grpo::as_view(cm);
  static_assert(std::is_same_v<decltype(v), grpo::strided_view<const double, 2>>);
  check_matrix(v, m);
  auto cb = cm.block(0, 1, 2, 2);
  auto vcb = grpo::as_view(cb);
  static_assert(std::is_same_v<decltype(vcb), grpo::strided_view<const double, 2>>);
  check_matrix(vcb, cb);
}

TEST_CASE("eigen: expressions without storage are not tensors" * doctest::test_suite("backends")) {
  Eigen::MatrixXf m(2, 2);
  static_assert(grpo::tensor<Eigen::MatrixXf>);
  static_assert(grpo::tensor<Eigen::ArrayXd>);
  static_assert(grpo::tensor<Eigen::Map<Eigen::MatrixXf>>);
  static_assert(grpo::tensor<decltype(m.block(0, 0, 1, 1))>);
  static_assert(!grpo::tensor<decltype(m + m)>);
  static_assert(!grpo::tensor<decltype(m.reverse())>);
  static_assert(!grpo::tensor<decltype(m.cast<double>())>);
  static_assert(!grpo::tensor<decltype(m.array().exp())>);
  CHECK(grpo::tensor<Eigen::MatrixXf>);
}

TEST_CASE("eigen: wrong dtype, wrong shape, host device" * doctest::test_suite("backends")) {
  Eigen::MatrixXd m(3, 4);
  fill(m);
  // Eigen's dtype and rank are static: as_view_as<E, R> with the wrong E or R does not compile, so
  // only the extents (and the host memory space) are checked at run time here; the run-time dtype
  // and rank paths are covered by the DLPack, torch and fake_dyn_tensor tests.
  CHECK_NOTHROW((grpo::as_view_as<double, 2>(m)));
  CHECK_NOTHROW((grpo::as_view_as<const double, 2>(m)));
  auto v = grpo::as_view(m);
  CHECK(v.space() == grpo::memory_space::host);
  CHECK_NOTHROW(grpo::expect_host(v, "m"));
  CHECK_NOTHROW(grpo::expect_extents(v, {3, 4}, "m"));
  CHECK_THROWS_WITH_AS(grpo::expect_extents(v, {4, 3}, "m"),
                       doctest::Contains("[grpo.shape_mismatch]"), grpo::error);
  CHECK_THROWS_WITH_AS(grpo::expect_extents(v.transposed(), {3, 4}, "advantages"),
                       doctest::Contains("advantages"), grpo::error);
}

TEST_CASE("eigen: same numbers through a column-major matrix and a raw row-major view" *
          doctest::test_suite("backends")) {
  // Layout invariance: summing a weighted matrix through either view gives the same result.
  Eigen::MatrixXd m(4, 3);
  std::vector<double> raw(12);
  for (index_t i = 0; i < 4; ++i)
    for (index_t j = 0; j < 3; ++j) {
      m(i, j) = 0.25 * static_cast<double>(i) - 0.5 * static_cast<double>(j) + 1.0;
      raw[static_cast<std::size_t>(3 * i + j)] = m(i, j);
    }
  auto ve = grpo::as_view(m);
  auto vr = grpo::make_view(raw.data(), {4, 3});
  CHECK(grpo_test::compare(ve, vr).max_abs == 0.0);
  CHECK(grpo_test::to_vector(ve) == raw);
}

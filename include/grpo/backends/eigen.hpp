// SPDX-License-Identifier: Apache-2.0
/// @file eigen.hpp
/// @brief Opt-in tensor_traits for Eigen dense objects with direct memory access (Matrix, Array,
///        Map, Ref, Block, Transpose): vectors are rank 1, matrices rank 2, strides explicit.
///
/// Link `grpo::eigen`. Never included by grpo/grpo.hpp.
///
/// One constrained partial specialisation covers every Eigen type X that
///   - derives from `Eigen::DenseBase<D>` for some D (Matrix, Array and all their expressions), and
///   - carries `Eigen::DirectAccessBit` (its coefficients live in memory at data() with an inner
///   and
///     an outer stride: Matrix, Array, Map<.., Stride>, Ref, direct-access Block, Transpose of
///     those).
/// Lazy expressions (`a + b`, `a.reverse()`, `a.cast<float>()`) have no memory of their own and do
/// not satisfy grpo::tensor: evaluate them first (`.eval()`).
#pragma once

#include <grpo/core/tensor_traits.hpp>

#include <Eigen/Core>

#include <concepts>
#include <cstddef>
#include <type_traits>
#include <utility>

namespace grpo {

namespace detail {

/// Overload-resolution probe: true for any type derived from some Eigen::DenseBase<D>. (D is not
/// always X itself: VectorBlock<V> derives from Block<V, ...>, whose base is DenseBase<Block<..>>.)
template <class D>
std::true_type eigen_dense_probe(const Eigen::DenseBase<D>*);
std::false_type eigen_dense_probe(...);

/// An Eigen dense object whose coefficients are addressable through data() + strides.
template <class X>
concept eigen_direct_access = decltype(eigen_dense_probe(static_cast<const X*>(nullptr)))::value &&
                              (static_cast<unsigned>(X::Flags) &
                               static_cast<unsigned>(Eigen::DirectAccessBit)) != 0u &&
                              requires(X& x) {
  x.data();
  x.rowStride();
  x.colStride();
};

}  // namespace detail

/// tensor_traits for Eigen dense objects with direct access.
///
/// Layout: coefficient (i, j) lives at data()[i * rowStride() + j * colStride()]; Eigen defines
/// rowStride()/colStride() from innerStride()/outerStride() and the storage order, so column-major
/// (Eigen's default), row-major, Map with InnerStride/OuterStride/Stride, Ref and blocks are all
/// described exactly by the pair (rowStride, colStride). Those become the view's stride(0) and
/// stride(1).
///
/// Rank: 1 for types that are vectors at compile time (VectorXd, RowVector3f, m.col(j), m.row(i)),
/// whose single stride is the distance between consecutive coefficients (colStride for a row
/// vector, rowStride for a column vector); 2 otherwise, even when a dynamic matrix happens to have
/// one column.
///
/// value_type: the pointee of data() on a non-const object, so Map<const M>, Ref<const M> and
/// blocks of const matrices give `const Scalar` (read-only views); a const Matrix gives read-only
/// views through the const overload of data().
template <class X>
requires detail::eigen_direct_access<X>
struct tensor_traits<X> {
  using value_type = std::remove_pointer_t<decltype(std::declval<X&>().data())>;
  static constexpr bool is_vector = X::IsVectorAtCompileTime != 0;
  static constexpr std::size_t rank = is_vector ? 1 : 2;

  /// @post points at coefficient (0, 0) (or 0 for vectors); may be null for empty objects.
  static value_type* data(X& x) noexcept { return x.data(); }
  static const std::remove_const_t<value_type>* data(const X& x) noexcept { return x.data(); }

  /// @pre d < rank.
  static index_t extent(const X& x, std::size_t d) noexcept {
    if constexpr (is_vector)
      return static_cast<index_t>(x.size());
    else
      return static_cast<index_t>(d == 0 ? x.rows() : x.cols());
  }

  /// Strides in elements. @pre d < rank.
  static index_t stride(const X& x, std::size_t d) noexcept {
    if constexpr (is_vector) {
      // A row vector (one row at compile time) steps along columns, a column vector along rows.
      return static_cast<index_t>(X::RowsAtCompileTime == 1 ? x.colStride() : x.rowStride());
    } else {
      return static_cast<index_t>(d == 0 ? x.rowStride() : x.colStride());
    }
  }
};

}  // namespace grpo

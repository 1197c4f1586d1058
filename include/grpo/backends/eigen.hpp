// SPDX-License-Identifier: Apache-2.0
/// @file eigen.hpp
/// @brief Opt-in tensor_traits for Eigen dense objects with direct memory access (Matrix, Array,
///        Map, Ref, Block, Transpose): vectors are rank 1, matrices rank 2, strides explicit.
///
/// Link `grpo::eigen`; never included by grpo/grpo.hpp. Lazy expressions (`a + b`, `a.reverse()`)
/// have no memory and are not grpo::tensor types: `.eval()` them first.
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
/// Coefficient (i, j) lives at data()[i * rowStride() + j * colStride()]: Eigen derives both from
/// inner/outer stride and storage order, so every layout (column-major default, row-major, Map
/// strides, Ref, blocks, transposes) is described exactly. Vectors at compile time are rank 1 with
/// the stride between consecutive coefficients; everything else is rank 2. value_type is the
/// pointee of data(): `const Scalar` for Map<const M>, Ref<const M> and blocks of const matrices.
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

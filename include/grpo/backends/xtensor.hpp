// SPDX-License-Identifier: Apache-2.0
/// @file xtensor.hpp
/// @brief Opt-in tensor_traits for xtensor containers, adaptors and strided views
///        (xt::xtensor, xt::xarray, xt::xtensor_fixed, xt::adapt, xt::view, xt::strided_view).
///
/// Link `grpo::xtensor`. Never included by grpo/grpo.hpp.
///
/// One constrained partial specialisation covers every xtensor expression X with a data interface:
/// `data()`, `data_offset()`, `strides()` and `shape()`. Containers and adaptors always have it;
/// `xt::view` has it when every slice is a strided slice (integers, ranges with steps, `xt::all()`,
/// `xt::newaxis()`) of an expression with storage, and `xt::strided_view` always. Lazy expressions
/// (`a + b`, `xt::exp(a)`, broadcasts) have no storage and do not satisfy grpo::tensor: evaluate
/// them first (`xt::eval`).
///
/// Layout: element (i0, ..., iR-1) lives at data() + data_offset() + sum_d i_d * strides()[d],
/// strides in elements, signed (negative for reversed ranges such as xt::range(_, _, -1)). xtensor
/// sets the stride of an extent-1 dimension to 0: harmless, that index is always 0.
///
/// Rank: static (`rank = N`) when the shape type has a compile-time size (xtensor<T, N>,
/// xtensor_fixed, views of those), `grpo::dynamic_rank` for xarray and its views; then
/// as_view_as<E, R> checks the rank at run time ([grpo.shape_mismatch]).
#pragma once

#include <grpo/core/tensor_traits.hpp>

#include <xtensor/xexpression.hpp>
#include <xtensor/xshape.hpp>

#include <cstddef>
#include <type_traits>
#include <utility>

namespace grpo {

namespace detail {

/// An xtensor expression whose elements live in memory at data() + data_offset() with strides().
template <class X>
concept xtensor_strided = xt::is_xexpression<X>::value && requires(X& x, const X& cx) {
  x.data();
  cx.data_offset();
  cx.strides();
  cx.shape();
  cx.dimension();
};

}  // namespace detail

/// tensor_traits for xtensor expressions with a data interface (see the file comment).
template <class X>
requires detail::xtensor_strided<X>
struct tensor_traits<X> {
  /// The pointee of data() on a non-const object: const for views and adaptors of const storage.
  using value_type = std::remove_pointer_t<decltype(std::declval<X&>().data())>;
  static constexpr std::ptrdiff_t static_dim = xt::static_dimension<typename X::shape_type>::value;
  static constexpr std::size_t rank =
      static_dim < 0 ? dynamic_rank : static_cast<std::size_t>(static_dim);

  /// Run-time rank (xarray): the number of dimensions of the shape.
  static std::size_t rank_of(const X& x) noexcept {
    return static_cast<std::size_t>(x.dimension());
  }

  /// @post points at element (0, ..., 0): the storage start plus the view's offset.
  static value_type* data(X& x) noexcept { return x.data() + x.data_offset(); }
  static const std::remove_const_t<value_type>* data(const X& x) noexcept {
    return x.data() + x.data_offset();
  }

  /// @pre d < rank_of(x).
  static index_t extent(const X& x, std::size_t d) noexcept {
    return static_cast<index_t>(x.shape()[d]);
  }
  /// Strides in elements (xtensor's own unit), signed. @pre d < rank_of(x).
  static index_t stride(const X& x, std::size_t d) noexcept {
    return static_cast<index_t>(x.strides()[d]);
  }
};

}  // namespace grpo

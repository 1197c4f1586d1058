// SPDX-License-Identifier: Apache-2.0
/// @file xtensor.hpp
/// @brief Opt-in tensor_traits for xtensor containers, adaptors and strided views
///        (xt::xtensor, xt::xarray, xt::xtensor_fixed, xt::adapt, xt::view, xt::strided_view).
///
/// Link `grpo::xtensor`; never included by grpo/grpo.hpp. Covered: every expression with
/// data()/data_offset()/strides()/shape(), i.e. containers, adaptors, strided_view, and xt::view
/// when all its slices are strided. Lazy expressions (`a + b`, broadcasts) are not tensors.
///
/// Element (i0, ..., iR-1) is at data() + data_offset() + sum_d i_d * strides()[d], strides in
/// elements and signed (xt::range(_, _, -1) gives a negative one; extent-1 dimensions get 0).
/// Rank is static when the shape type has a compile-time size, else dynamic (xarray): then
/// as_view_as<E, R> checks it at run time ([grpo.shape_mismatch]).
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

// SPDX-License-Identifier: Apache-2.0
/// @file tensor_traits.hpp
/// @brief tensor_traits (the backend customisation point), the grpo::tensor concept and grpo::as_view.
#pragma once

#include <grpo/core/dtype.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/strided_view.hpp>

#include <array>
#include <concepts>
#include <cstddef>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace grpo {

/// Marker for a rank known only at run time (xt::xarray, DLTensor, torch::Tensor).
inline constexpr std::size_t dynamic_rank = std::numeric_limits<std::size_t>::max();

/// Specialise per backend; the primary template is undefined so unsupported types fail the concept.
///
/// Required members of a specialisation `tensor_traits<X>`:
///   - `using value_type = E;`  element type (const-qualified for read-only storage), or `void` when
///     the dtype is only known at run time; then `static grpo::dtype dtype(const X&)` is required.
///   - `static constexpr std::size_t rank = R;` or `grpo::dynamic_rank`; then
///     `static std::size_t rank_of(const X&)` is required.
///   - `static auto* data(X&)` (and/or `data(const X&)`): pointer to element (0, ..., 0).
///   - `static index_t extent(const X&, std::size_t d)`, `static index_t stride(const X&, std::size_t d)`
///     with strides in elements.
/// Optional: `static memory_space space(const X&)` (defaults to host); `static void validate(const X&)`
/// called before a view is made (e.g. DLPack checks its byte offset alignment).
/// See docs/plugging-a-backend.md.
template <class X>
struct tensor_traits;

/// traits of X with cv-ref removed.
template <class X>
using traits_of = tensor_traits<std::remove_cvref_t<X>>;

/// A type whose tensor_traits specialisation provides the members listed above.
template <class X>
concept tensor = requires(const X& cx, std::size_t d) {
  typename traits_of<X>::value_type;
  { traits_of<X>::rank } -> std::convertible_to<std::size_t>;
  { traits_of<X>::extent(cx, d) } -> std::convertible_to<index_t>;
  { traits_of<X>::stride(cx, d) } -> std::convertible_to<index_t>;
};

namespace detail {

template <class X>
constexpr bool has_static_dtype = !std::is_void_v<typename traits_of<X>::value_type>;
template <class X>
constexpr bool has_static_rank = traits_of<X>::rank != dynamic_rank;

template <class X>
std::size_t rank_of(const X& x) {
  if constexpr (has_static_rank<X>) return traits_of<X>::rank;
  else return traits_of<X>::rank_of(x);
}

template <class X>
memory_space space_of(const X& x) {
  if constexpr (requires { traits_of<X>::space(x); }) return traits_of<X>::space(x);
  else return memory_space::host;
}

template <class X>
dtype dtype_of(const X& x) {
  if constexpr (has_static_dtype<X>) return dtype_v<typename traits_of<X>::value_type>;
  else return traits_of<X>::dtype(x);
}

/// Element type of a view made from X&& : const when X is const or its storage is read-only.
template <class X>
using view_element_t =
    std::conditional_t<std::is_const_v<std::remove_reference_t<X>>,
                       const std::remove_const_t<typename traits_of<X>::value_type>,
                       typename traits_of<X>::value_type>;

struct as_view_fn {
  /// Statically typed tensor -> strided_view<E, R>. A strided_view is returned unchanged.
  template <class X>
  constexpr auto operator()(X&& x) const {
    using Xd = std::remove_cvref_t<X>;
    if constexpr (requires { Xd::rank_value; typename Xd::element_type; }) {
      return strided_view<typename Xd::element_type, Xd::rank_value>(x);
    } else {
      static_assert(tensor<X>, "grpo::as_view: no tensor_traits specialisation for this type; include "
                               "the backend header (grpo/backends/...) or see plugging-a-backend.md");
      static_assert(has_static_dtype<X> && has_static_rank<X>,
                    "grpo::as_view: this tensor's dtype or rank is dynamic; call as_view<T, Rank>(x)");
      return make<view_element_t<X>, traits_of<X>::rank>(x);
    }
  }

  /// Make a strided_view<E, R> from x after checking dtype, rank and device where they are dynamic.
  template <class E, std::size_t R, class X>
  static strided_view<E, R> make(X&& x) {
    using Tr = traits_of<X>;
    if constexpr (requires { Tr::validate(x); }) Tr::validate(x);
    const dtype have = dtype_of(x);
    GRPO_EXPECTS(have == dtype_v<E>, bad_dtype,
                 "as_view: tensor holds " + std::string(to_string(have)) + ", expected " +
                     std::string(to_string(dtype_v<E>)));
    const std::size_t r = rank_of(x);
    GRPO_EXPECTS(r == R, shape_mismatch,
                 "as_view: tensor has rank " + std::to_string(r) + ", expected " + std::to_string(R));
    std::array<index_t, R> e{}, s{};
    for (std::size_t d = 0; d < R; ++d) {
      e[d] = static_cast<index_t>(Tr::extent(x, d));
      s[d] = static_cast<index_t>(Tr::stride(x, d));
    }
    auto* p = Tr::data(x);
    return strided_view<E, R>(static_cast<E*>(const_cast<std::remove_const_t<E>*>(
                                  static_cast<const std::remove_const_t<E>*>(p))),
                              e, s, space_of(x));
  }
};

template <class E, std::size_t R>
struct as_view_typed_fn {
  /// Dynamically typed tensor (DLTensor, torch::Tensor, xarray) -> strided_view<E, R>, checked:
  /// wrong dtype -> [grpo.bad_dtype], wrong rank -> [grpo.shape_mismatch].
  template <class X>
  strided_view<E, R> operator()(X&& x) const {
    using Xd = std::remove_cvref_t<X>;
    if constexpr (requires { Xd::rank_value; typename Xd::element_type; }) {
      static_assert(Xd::rank_value == R, "as_view<E, R>: rank mismatch");
      return strided_view<E, R>(x);
    } else {
      static_assert(tensor<X>, "grpo::as_view: no tensor_traits specialisation for this type");
      if constexpr (has_static_rank<X>)
        static_assert(traits_of<X>::rank == R, "grpo::as_view<E, R>: the tensor's rank is not R");
      if constexpr (has_static_dtype<X>)
        static_assert(dtype_v<E> == dtype_v<typename traits_of<X>::value_type>,
                      "grpo::as_view_as<E, R>: the tensor's element type is not E");
      if constexpr (std::is_const_v<std::remove_reference_t<X>> && has_static_dtype<X>)
        static_assert(std::is_const_v<E>, "grpo::as_view<E, R>: a const tensor needs a const E");
      return as_view_fn::make<E, R>(x);
    }
  }
};

}  // namespace detail

/// Customisation-point object: any grpo::tensor (or a strided_view) -> strided_view<value_type, rank>.
/// Read-only views come from const tensors. For dynamic dtype/rank tensors use as_view<E, R>(x).
inline constexpr detail::as_view_fn as_view{};

/// Checked conversion for tensors whose dtype or rank is only known at run time; E may be const.
template <class E, std::size_t R>
inline constexpr detail::as_view_typed_fn<E, R> as_view_as{};

// -----------------------------------------------------------------------------------------------
// Built-in "raw" backend: std::vector, std::span, std::array and C arrays are rank-1 tensors.

template <class T, class A>
struct tensor_traits<std::vector<T, A>> {
  using value_type = T;
  static constexpr std::size_t rank = 1;
  static T* data(std::vector<T, A>& v) noexcept { return v.data(); }
  static const T* data(const std::vector<T, A>& v) noexcept { return v.data(); }
  static index_t extent(const std::vector<T, A>& v, std::size_t) noexcept {
    return static_cast<index_t>(v.size());
  }
  static index_t stride(const std::vector<T, A>&, std::size_t) noexcept { return 1; }
};

template <class T, std::size_t N>
struct tensor_traits<std::span<T, N>> {
  using value_type = T;  // std::span<const float> gives read-only views
  static constexpr std::size_t rank = 1;
  static T* data(const std::span<T, N>& v) noexcept { return v.data(); }
  static index_t extent(const std::span<T, N>& v, std::size_t) noexcept {
    return static_cast<index_t>(v.size());
  }
  static index_t stride(const std::span<T, N>&, std::size_t) noexcept { return 1; }
};

template <class T, std::size_t N>
struct tensor_traits<std::array<T, N>> {
  using value_type = T;
  static constexpr std::size_t rank = 1;
  static T* data(std::array<T, N>& v) noexcept { return v.data(); }
  static const T* data(const std::array<T, N>& v) noexcept { return v.data(); }
  static index_t extent(const std::array<T, N>&, std::size_t) noexcept { return N; }
  static index_t stride(const std::array<T, N>&, std::size_t) noexcept { return 1; }
};

}  // namespace grpo

// SPDX-License-Identifier: Apache-2.0
/// @file strided_view.hpp
/// @brief strided_view<T, Rank>: the non-owning pointer + extents + strides every algorithm sees.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/dtype.hpp>
#include <grpo/core/error.hpp>

#include <array>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <utility>  // std::swap
#include <type_traits>

namespace grpo {

/// A non-owning, rank-`Rank` strided view over elements of type `T` (const-qualified for read-only
/// views). Strides are in elements, always explicit, may be zero (broadcast) or negative. The
/// vocabulary follows std::mdspan (extent(), stride(), data_handle(), operator()) so a later move to
/// std::mdspan with layout_stride is mechanical.
///
/// Element (i0, ..., iR-1) lives at data_handle()[sum_k ik * stride(k)]; all index arithmetic is
/// 64-bit (grpo::index_t), so views over more than 2^31 elements are addressed correctly.
template <class T, std::size_t Rank>
class strided_view {
 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using index_type = index_t;
  static constexpr std::size_t rank_value = Rank;

  constexpr strided_view() noexcept = default;
  /// @pre extents >= 0; strides describe memory the caller owns for the view's lifetime.
  GRPO_HOST_DEVICE constexpr strided_view(T* data, const std::array<index_t, Rank>& extents,
                                          const std::array<index_t, Rank>& strides,
                                          memory_space space = memory_space::host) noexcept
      : data_(data), extents_(extents), strides_(strides), space_(space) {}

  /// Implicit conversion from a view of non-const elements to a view of const elements.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  GRPO_HOST_DEVICE constexpr strided_view(const strided_view<U, Rank>& o) noexcept
      : data_(o.data_handle()), extents_(o.extents()), strides_(o.strides()), space_(o.space()) {}

  GRPO_HOST_DEVICE static constexpr std::size_t rank() noexcept { return Rank; }
  GRPO_HOST_DEVICE constexpr T* data_handle() const noexcept { return data_; }
  GRPO_HOST_DEVICE constexpr index_t extent(std::size_t d) const noexcept { return extents_[d]; }
  GRPO_HOST_DEVICE constexpr index_t stride(std::size_t d) const noexcept { return strides_[d]; }
  GRPO_HOST_DEVICE constexpr const std::array<index_t, Rank>& extents() const noexcept {
    return extents_;
  }
  GRPO_HOST_DEVICE constexpr const std::array<index_t, Rank>& strides() const noexcept {
    return strides_;
  }
  GRPO_HOST_DEVICE constexpr memory_space space() const noexcept { return space_; }

  /// Number of elements (product of extents; 1 for rank 0).
  GRPO_HOST_DEVICE constexpr index_t size() const noexcept {
    index_t n = 1;
    for (std::size_t d = 0; d < Rank; ++d) n *= extents_[d];
    return n;
  }
  GRPO_HOST_DEVICE constexpr bool empty() const noexcept { return size() == 0; }

  /// True when the elements are densely packed in row-major (C) order.
  GRPO_HOST_DEVICE constexpr bool is_contiguous() const noexcept {
    index_t expect = 1;
    for (std::size_t k = Rank; k-- > 0;) {
      if (extents_[k] != 1 && strides_[k] != expect) return false;
      expect *= extents_[k];
    }
    return true;
  }

  /// Element access; no bounds check (use at() for a checked access on the host).
  template <class... I>
    requires(sizeof...(I) == Rank && (std::is_integral_v<I> && ...))
  GRPO_HOST_DEVICE constexpr T& operator()(I... idx) const noexcept {
    const index_t is[] = {static_cast<index_t>(idx)...};
    index_t off = 0;
    for (std::size_t d = 0; d < Rank; ++d) off += is[d] * strides_[d];
    return data_[off];
  }

  /// Checked element access (host only): throws [grpo.out_of_range].
  template <class... I>
    requires(sizeof...(I) == Rank && (std::is_integral_v<I> && ...))
  constexpr T& at(I... idx) const {
    const index_t is[] = {static_cast<index_t>(idx)...};
    for (std::size_t d = 0; d < Rank; ++d)
      GRPO_EXPECTS(is[d] >= 0 && is[d] < extents_[d], out_of_range,
                   "strided_view::at: index " + std::to_string(is[d]) + " outside extent " +
                       std::to_string(extents_[d]) + " of dimension " + std::to_string(d));
    return (*this)(idx...);
  }

  /// The rank-(Rank-1) view of row `i` along dimension 0 (e.g. one sequence of a [B, T] view).
  GRPO_HOST_DEVICE constexpr auto row(index_t i) const noexcept
    requires(Rank >= 1)
  {
    std::array<index_t, Rank - 1> e{}, s{};
    for (std::size_t d = 1; d < Rank; ++d) {
      e[d - 1] = extents_[d];
      s[d - 1] = strides_[d];
    }
    return strided_view<T, Rank - 1>(data_ + i * strides_[0], e, s, space_);
  }

  /// Swap dimensions a and b (no data movement).
  GRPO_HOST_DEVICE constexpr strided_view transposed(std::size_t a = 0, std::size_t b = 1) const noexcept {
    strided_view v = *this;
    std::swap(v.extents_[a], v.extents_[b]);
    std::swap(v.strides_[a], v.strides_[b]);
    return v;
  }

 private:
  T* data_ = nullptr;
  std::array<index_t, Rank> extents_{};
  std::array<index_t, Rank> strides_{};
  memory_space space_ = memory_space::host;
};

/// Row-major (C-order) strides for the given extents.
template <std::size_t Rank>
constexpr std::array<index_t, Rank> row_major_strides(const std::array<index_t, Rank>& ext) noexcept {
  std::array<index_t, Rank> s{};
  index_t acc = 1;
  for (std::size_t k = Rank; k-- > 0;) {
    s[k] = acc;
    acc *= ext[k];
  }
  return s;
}

/// Raw pointer + extents (row-major): the "raw backend". Example: make_view(p, {B, T}).
/// @pre p points to at least prod(extents) elements.
template <class T, std::size_t Rank>
constexpr strided_view<T, Rank> make_view(T* p, const index_t (&extents)[Rank]) noexcept {
  std::array<index_t, Rank> e{};
  for (std::size_t d = 0; d < Rank; ++d) e[d] = extents[d];
  return strided_view<T, Rank>(p, e, row_major_strides(e));
}

/// Raw pointer + extents + explicit strides (in elements).
template <class T, std::size_t Rank>
constexpr strided_view<T, Rank> make_view(T* p, const index_t (&extents)[Rank],
                                          const index_t (&strides)[Rank]) noexcept {
  std::array<index_t, Rank> e{}, s{};
  for (std::size_t d = 0; d < Rank; ++d) {
    e[d] = extents[d];
    s[d] = strides[d];
  }
  return strided_view<T, Rank>(p, e, s);
}

/// Throws [grpo.shape_mismatch] naming `what` unless view `v` has exactly the given extents.
template <class T, std::size_t Rank>
void expect_extents(const strided_view<T, Rank>& v, const std::array<index_t, Rank>& want,
                    const char* what) {
  for (std::size_t d = 0; d < Rank; ++d)
    GRPO_EXPECTS(v.extent(d) == want[d], shape_mismatch,
                 std::string(what) + ": extent " + std::to_string(v.extent(d)) + " in dimension " +
                     std::to_string(d) + ", expected " + std::to_string(want[d]));
}

/// Throws [grpo.bad_device] naming `what` unless the view's memory is host-readable.
template <class T, std::size_t Rank>
void expect_host(const strided_view<T, Rank>& v, const char* what) {
  GRPO_EXPECTS(v.space() == memory_space::host || v.space() == memory_space::cuda_host ||
                   v.space() == memory_space::cuda_managed,
               bad_device,
               std::string(what) + ": tensor lives in " + std::string(to_string(v.space())) +
                   " memory; this CPU path needs host memory");
}

}  // namespace grpo

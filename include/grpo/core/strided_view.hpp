// SPDX-License-Identifier: Apache-2.0
/// @file strided_view.hpp
/// @brief strided_view<T, Rank>: the non-owning pointer + extents + strides every algorithm sees.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/dtype.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/validate.hpp>  // the shared value rules, for every algorithm header

#include <array>
#include <cstddef>
#include <cstdint>  // std::uintptr_t
#include <initializer_list>
#include <limits>
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

namespace detail {

/// Byte range [lo, hi) spanned by the elements of a view (empty range for an empty view).
struct byte_span {
  std::uintptr_t lo = 0, hi = 0;
  bool empty() const noexcept { return hi <= lo; }
};

/// Structural validity of a view, O(rank): every extent >= 0, the element count and the byte
/// span (sum_d (extent_d - 1) |stride_d| + 1) * sizeof(T) fit in index_t (so no index arithmetic
/// of a kernel overflows), and data != null whenever the view has elements. A null view with a
/// zero extent (an empty std::vector's data()) is a valid empty view.
/// Throws [grpo.shape_mismatch] naming `what`.
template <class T, std::size_t Rank>
void check_view(const strided_view<T, Rank>& v, const char* what) {
  index_t n = 1, span = 0;
  for (std::size_t d = 0; d < Rank; ++d) {
    const index_t e = v.extent(d);
    GRPO_EXPECTS(e >= 0, shape_mismatch,
                 std::string(what) + ": negative extent " + std::to_string(e) + " in dimension " +
                     std::to_string(d));
    GRPO_EXPECTS(!__builtin_mul_overflow(n, e, &n), shape_mismatch,
                 std::string(what) + ": the product of the extents overflows a 64-bit index");
  }
  if (n == 0) return;
  for (std::size_t d = 0; d < Rank; ++d) {
    const index_t s = v.stride(d);
    index_t part = 0;
    const bool ok = s != std::numeric_limits<index_t>::min() &&
                    !__builtin_mul_overflow(v.extent(d) - 1, s < 0 ? -s : s, &part) &&
                    !__builtin_add_overflow(span, part, &span);
    GRPO_EXPECTS(ok, shape_mismatch,
                 std::string(what) + ": extents x strides overflow a 64-bit index");
  }
  index_t bytes = 0;
  GRPO_EXPECTS(span < std::numeric_limits<index_t>::max() &&
                   !__builtin_mul_overflow(span + 1, static_cast<index_t>(sizeof(T)), &bytes),
               shape_mismatch, std::string(what) + ": the view spans more bytes than fit an index");
  GRPO_EXPECTS(v.data_handle() != nullptr, shape_mismatch,
               std::string(what) + ": null data with " + std::to_string(n) + " elements");
}

/// The bytes a (checked) view touches: from its lowest to one past its highest element.
template <class T, std::size_t Rank>
byte_span span_of(const strided_view<T, Rank>& v) noexcept {
  index_t lo = 0, hi = 0;
  for (std::size_t d = 0; d < Rank; ++d) {
    if (v.extent(d) == 0) return {};
    const index_t off = (v.extent(d) - 1) * v.stride(d);
    (off < 0 ? lo : hi) += off;
  }
  const auto base = reinterpret_cast<std::uintptr_t>(v.data_handle());
  const auto sz = static_cast<std::uintptr_t>(sizeof(T));
  return {base + static_cast<std::uintptr_t>(lo) * sz,
          base + static_cast<std::uintptr_t>(hi) * sz + sz};
}

}  // namespace detail

/// How an output view shares memory with an input view.
enum class view_overlap : unsigned char { none, exact, partial };

/// none: disjoint byte ranges; exact: same start, extents, strides and element size (an in-place
/// alias); partial: anything else that shares a byte (judged on the bounding byte ranges, so two
/// interleaved views, e.g. even and odd elements of one buffer, count as overlapping).
template <class T, std::size_t R1, class U, std::size_t R2>
view_overlap overlap_of(const strided_view<T, R1>& out, const strided_view<U, R2>& in) noexcept {
  const detail::byte_span a = detail::span_of(out), b = detail::span_of(in);
  if (a.empty() || b.empty() || a.hi <= b.lo || b.hi <= a.lo) return view_overlap::none;
  if constexpr (R1 == R2) {
    const bool same = static_cast<const void*>(out.data_handle()) ==
                          static_cast<const void*>(in.data_handle()) &&
                      sizeof(T) == sizeof(U) && out.extents() == in.extents() &&
                      out.strides() == in.strides();
    if (same) return view_overlap::exact;
  }
  return view_overlap::partial;
}

/// Throws [grpo.bad_option] naming both views unless output `out` and input `in` share no byte.
template <class T, std::size_t R1, class U, std::size_t R2>
void expect_disjoint(const strided_view<T, R1>& out, const strided_view<U, R2>& in,
                     const char* out_name, const char* in_name) {
  GRPO_EXPECTS(overlap_of(out, in) == view_overlap::none, bad_option,
               std::string(out_name) + ": shares memory with " + in_name);
}

/// Throws [grpo.bad_option] naming both views when output `out` shares memory with input `in`
/// other than as an exact alias; returns true for an exact alias (the caller decides whether it
/// supports in-place operation).
template <class T, std::size_t Rank, class U>
bool expect_no_partial_overlap(const strided_view<T, Rank>& out, const strided_view<U, Rank>& in,
                               const char* out_name, const char* in_name) {
  const view_overlap k = overlap_of(out, in);
  GRPO_EXPECTS(k != view_overlap::partial, bad_option,
               std::string(out_name) + ": overlaps " + in_name +
                   " partly (only an exact in-place alias, or disjoint memory, is allowed)");
  return k == view_overlap::exact;
}

/// Throws [grpo.bad_option] naming `what` unless distinct indices of output view `v` address
/// distinct elements. Sufficient test, O(rank^2): sorted by |stride|, each dimension of extent > 1
/// must step over the whole span of the smaller ones (rules out stride 0 and self-overlap).
template <class T, std::size_t Rank>
void expect_distinct_elements(const strided_view<T, Rank>& v, const char* what) {
  if (v.empty()) return;
  std::array<std::size_t, Rank> ord{};
  for (std::size_t d = 0; d < Rank; ++d) ord[d] = d;
  auto mag = [&](std::size_t d) { return v.stride(d) < 0 ? -v.stride(d) : v.stride(d); };
  for (std::size_t a = 1; a < Rank; ++a)  // insertion sort by |stride| (Rank <= 3 in practice)
    for (std::size_t b = a; b > 0 && mag(ord[b]) < mag(ord[b - 1]); --b)
      std::swap(ord[b], ord[b - 1]);
  index_t reach = 0;  // span of the dimensions below, in elements: sum (e - 1) |s|
  for (std::size_t k = 0; k < Rank; ++k) {
    const std::size_t d = ord[k];
    if (v.extent(d) == 1) continue;
    GRPO_EXPECTS(mag(d) > reach, bad_option,
                 std::string(what) + ": output view addresses one element twice (stride " +
                     std::to_string(v.stride(d)) + " in dimension " + std::to_string(d) + ")");
    reach += (v.extent(d) - 1) * mag(d);
  }
}

/// Throws [grpo.shape_mismatch] naming `what` unless view `v` has exactly the given extents
/// (and is a valid view: detail::check_view).
template <class T, std::size_t Rank>
void expect_extents(const strided_view<T, Rank>& v, const std::array<index_t, Rank>& want,
                    const char* what) {
  detail::check_view(v, what);
  for (std::size_t d = 0; d < Rank; ++d)
    GRPO_EXPECTS(v.extent(d) == want[d], shape_mismatch,
                 std::string(what) + ": extent " + std::to_string(v.extent(d)) + " in dimension " +
                     std::to_string(d) + ", expected " + std::to_string(want[d]));
}

/// Throws [grpo.bad_device] naming `what` unless the view's memory is host-readable.
/// Also checks the view's structure (detail::check_view: extents, overflow, null data).
template <class T, std::size_t Rank>
void expect_host(const strided_view<T, Rank>& v, const char* what) {
  // The memory space first: a device (or meta) tensor may carry no host-readable data pointer, and
  // "lives in device memory" is the cause to name, not "null data".
  GRPO_EXPECTS(v.space() == memory_space::host || v.space() == memory_space::cuda_host ||
                   v.space() == memory_space::cuda_managed,
               bad_device,
               std::string(what) + ": tensor lives in " + std::string(to_string(v.space())) +
                   " memory; this CPU path needs host memory");
  detail::check_view(v, what);
}

}  // namespace grpo

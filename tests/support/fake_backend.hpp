// SPDX-License-Identifier: Apache-2.0
/// @file fake_backend.hpp
/// @brief A deliberately odd tensor backend for tests: owning storage laid out with a permutation
///        of the dimensions, padding after every dimension and optionally reversed
///        (negative-stride) dimensions, plus a run-time-typed twin (dtype and rank known only at
///        run time).
///
/// Algorithms that assume row-major, contiguous or positive strides produce wrong numbers on these
/// tensors, which is the point: every algorithm test can run the same data through
/// `grpo_test::fake_tensor` and must get the same result as through a plain std::vector.
///
/// fake_tensor has its OWN indexing (`at()`): a Horner-rule linearisation of the padded, permuted,
/// flipped coordinates, computed independently of the strides that tensor_traits reports, so a test
/// that compares as_view(x)(i...) with x.at(i...) checks the traits rather than restating them.
#pragma once

#include <grpo/core/dtype.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/core/tensor_traits.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>
#include <vector>

namespace grpo_test {

using grpo::index_t;

/// Layout of a fake_tensor. For a rank-R tensor:
///  - `order`: the logical dimensions listed from outermost to innermost in memory (a permutation
///    of 0..R-1); {0, 1, ..., R-1} is row-major, {R-1, ..., 0} column-major;
///  - `pad[d]`: unused elements left after the `extent[d]` used ones along logical dimension d;
///  - `flip[d]`: dimension d is stored back to front (its stride is negative).
template <std::size_t Rank>
struct fake_layout {
  std::array<std::size_t, Rank> order{};
  std::array<index_t, Rank> pad{};
  std::array<bool, Rank> flip{};

  /// Row-major, no padding, no flip (the "boring" layout, a baseline for comparisons).
  static fake_layout row_major() {
    fake_layout l;
    for (std::size_t d = 0; d < Rank; ++d) l.order[d] = d;
    return l;
  }
  /// Every oddity at once: dimensions reversed in memory, padding 1 + d, odd dimensions flipped.
  static fake_layout odd() {
    fake_layout l;
    for (std::size_t d = 0; d < Rank; ++d) {
      l.order[d] = Rank - 1 - d;
      l.pad[d] = static_cast<index_t>(1 + d);
      l.flip[d] = (d % 2) == 1;
    }
    if constexpr (Rank == 1) l.flip[0] = true;
    return l;
  }
};

/// Owning rank-`Rank` tensor of T with a fake_layout. Unused (padding) elements hold `sentinel`
/// so reading them by mistake shows up in results.
template <class T, std::size_t Rank>
class fake_tensor {
 public:
  /// @pre extents >= 0, layout.order is a permutation, pads >= 0 (else [grpo.bad_value]).
  fake_tensor(const std::array<index_t, Rank>& extents, const fake_layout<Rank>& layout,
              T sentinel = T{}, grpo::memory_space space = grpo::memory_space::host)
      : extents_(extents), layout_(layout), space_(space) {
    std::array<bool, Rank> seen{};
    for (std::size_t k = 0; k < Rank; ++k) {
      GRPO_EXPECTS(layout.order[k] < Rank && !seen[layout.order[k]], bad_value,
                   "fake_tensor: layout.order is not a permutation");
      seen[layout.order[k]] = true;
      GRPO_EXPECTS(extents[k] >= 0 && layout.pad[k] >= 0, bad_value,
                   "fake_tensor: negative extent or padding");
    }
    index_t total = 1;
    for (std::size_t d = 0; d < Rank; ++d) total *= extents_[d] + layout_.pad[d];
    storage_.assign(static_cast<std::size_t>(total), sentinel);
  }

  /// Own indexing, independent of stride(): physical coordinate p_d = flip ? n_d - 1 - i_d : i_d,
  /// linearised by Horner's rule over the memory order with padded extents n_d + pad_d.
  /// @pre 0 <= idx[d] < extent(d) (else [grpo.out_of_range]).
  T& at(const std::array<index_t, Rank>& idx) {
    return storage_[static_cast<std::size_t>(linear(idx))];
  }
  const T& at(const std::array<index_t, Rank>& idx) const {
    return storage_[static_cast<std::size_t>(linear(idx))];
  }

  /// Pointer to logical element (0, ..., 0): inside the buffer, not necessarily at its start.
  T* origin() noexcept { return storage_.data() + origin_offset(); }
  const T* origin() const noexcept { return storage_.data() + origin_offset(); }

  index_t extent(std::size_t d) const noexcept { return extents_[d]; }
  /// Stride of logical dimension d in elements: +-(product of the padded extents of the dimensions
  /// stored inside it), negative when d is flipped.
  index_t stride(std::size_t d) const noexcept {
    index_t s = 1;
    for (std::size_t k = Rank; k-- > 0;) {
      if (layout_.order[k] == d) break;
      s *= extents_[layout_.order[k]] + layout_.pad[layout_.order[k]];
    }
    return layout_.flip[d] ? -s : s;
  }

  grpo::memory_space space() const noexcept { return space_; }
  const std::vector<T>& storage() const noexcept { return storage_; }
  std::vector<T>& storage() noexcept { return storage_; }

  /// When poisoned, tensor_traits::validate rejects the tensor with [grpo.bad_value]: lets tests
  /// prove that as_view runs a backend's validate() hook before making a view.
  void poison(bool p = true) noexcept { poisoned_ = p; }
  bool poisoned() const noexcept { return poisoned_; }

 private:
  index_t linear(const std::array<index_t, Rank>& idx) const {
    index_t lin = 0;
    for (std::size_t k = 0; k < Rank; ++k) {
      const std::size_t d = layout_.order[k];
      GRPO_EXPECTS(idx[d] >= 0 && idx[d] < extents_[d], out_of_range,
                   "fake_tensor::at: index " + std::to_string(idx[d]) + " outside extent " +
                       std::to_string(extents_[d]));
      const index_t p = layout_.flip[d] ? extents_[d] - 1 - idx[d] : idx[d];
      lin = lin * (extents_[d] + layout_.pad[d]) + p;
    }
    return lin;
  }
  index_t origin_offset() const noexcept {
    // Same Horner rule as linear() at index (0, ..., 0); empty tensors have no element to point at.
    index_t lin = 0;
    for (std::size_t k = 0; k < Rank; ++k) {
      const std::size_t d = layout_.order[k];
      const index_t p = (layout_.flip[d] && extents_[d] > 0) ? extents_[d] - 1 : 0;
      lin = lin * (extents_[d] + layout_.pad[d]) + p;
    }
    return lin;
  }

  std::array<index_t, Rank> extents_{};
  fake_layout<Rank> layout_{};
  grpo::memory_space space_ = grpo::memory_space::host;
  bool poisoned_ = false;
  std::vector<T> storage_;
};

/// A fake_tensor with the given layout holding `values` (row-major order of the logical tensor,
/// converted with static_cast<T>): the one-liner algorithm tests use to run the same inputs through
/// an awkward layout. @pre values.size() == prod(extents) (else [grpo.shape_mismatch]).
template <class T, std::size_t Rank>
fake_tensor<T, Rank> make_fake(const std::array<index_t, Rank>& extents,
                               const std::vector<double>& values,
                               const fake_layout<Rank>& layout = fake_layout<Rank>::odd(),
                               T sentinel = T{}) {
  fake_tensor<T, Rank> x(extents, layout, sentinel);
  index_t n = 1;
  for (std::size_t d = 0; d < Rank; ++d) n *= extents[d];
  GRPO_EXPECTS(static_cast<index_t>(values.size()) == n, shape_mismatch,
               "make_fake: " + std::to_string(values.size()) + " values for " + std::to_string(n) +
                   " elements");
  std::array<index_t, Rank> idx{};
  for (std::size_t k = 0; k < values.size(); ++k) {
    x.at(idx) = static_cast<T>(values[k]);
    for (std::size_t d = Rank; d-- > 0;) {  // next row-major multi-index
      if (++idx[d] < extents[d]) break;
      idx[d] = 0;
    }
  }
  return x;
}

/// Non-owning, run-time-typed handle in the style of DLTensor: element type, rank, extents and
/// strides are data members, so its tensor_traits has value_type = void and dynamic rank. Built
/// from any fake_tensor; `claimed` lets a test lie about the dtype to exercise [grpo.bad_dtype].
struct fake_dyn_tensor {
  void* data = nullptr;
  grpo::dtype type = grpo::dtype::unknown;
  std::vector<index_t> extents;
  std::vector<index_t> strides;
  grpo::memory_space space = grpo::memory_space::host;

  template <class T, std::size_t Rank>
  static fake_dyn_tensor of(fake_tensor<T, Rank>& t, grpo::dtype claimed = grpo::dtype_v<T>) {
    fake_dyn_tensor r;
    r.data = t.origin();
    r.type = claimed;
    r.space = t.space();
    for (std::size_t d = 0; d < Rank; ++d) {
      r.extents.push_back(t.extent(d));
      r.strides.push_back(t.stride(d));
    }
    return r;
  }
};

}  // namespace grpo_test

template <class T, std::size_t Rank>
struct grpo::tensor_traits<grpo_test::fake_tensor<T, Rank>> {
  using X = grpo_test::fake_tensor<T, Rank>;
  using value_type = T;
  static constexpr std::size_t rank = Rank;
  static T* data(X& x) noexcept { return x.origin(); }
  static const T* data(const X& x) noexcept { return x.origin(); }
  static index_t extent(const X& x, std::size_t d) noexcept { return x.extent(d); }
  static index_t stride(const X& x, std::size_t d) noexcept { return x.stride(d); }
  static memory_space space(const X& x) noexcept { return x.space(); }
  static void validate(const X& x) {
    GRPO_EXPECTS(!x.poisoned(), bad_value, "fake_tensor: poisoned tensor rejected by validate()");
  }
};

template <>
struct grpo::tensor_traits<grpo_test::fake_dyn_tensor> {
  using X = grpo_test::fake_dyn_tensor;
  using value_type = void;
  static constexpr std::size_t rank = dynamic_rank;
  static grpo::dtype dtype(const X& x) noexcept { return x.type; }
  static std::size_t rank_of(const X& x) noexcept { return x.extents.size(); }
  static void* data(const X& x) noexcept { return x.data; }
  static index_t extent(const X& x, std::size_t d) noexcept { return x.extents[d]; }
  static index_t stride(const X& x, std::size_t d) noexcept { return x.strides[d]; }
  static memory_space space(const X& x) noexcept { return x.space; }
};

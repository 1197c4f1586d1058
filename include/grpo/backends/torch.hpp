// SPDX-License-Identifier: Apache-2.0
/// @file torch.hpp
/// @brief Opt-in tensor_traits for libtorch tensors (`torch::Tensor` = `at::Tensor`, and
///        `at::TensorBase`): run-time dtype, rank and device, strides and storage offset honoured.
///
/// Link `grpo::torch` (libtorch 1.13). Never included by grpo/grpo.hpp. Usage:
/// @code
///   torch::Tensor logp = model_out.log_softmax(-1).gather(-1, ids).squeeze(-1);   // [B, T] float
///   auto v = grpo::as_view_as<const float, 2>(logp);   // [grpo.bad_dtype] unless kFloat, rank 2
///   grpo::expect_host(v, "logp");                       // CUDA tensors are refused by CPU paths
/// @endcode
/// The view borrows the tensor's storage; keep a tensor that owns it alive while the view is used.
///
/// Mapping:
///   - dtype: kFloat -> f32, kDouble -> f64, kBFloat16 -> bf16, kHalf -> f16, kInt -> i32,
///     kLong -> i64, kByte -> u8, kChar -> i8, kBool -> boolean; others (complex, quantized,
///     kShort) are dtype::unknown and rejected with [grpo.bad_dtype]. c10::BFloat16 / c10::Half
///     storage has the bit layout of grpo::bfloat16 / grpo::float16 (a 16-bit pattern), so views of
///     those types read torch's bf16/fp16 tensors in place.
///   - device: kCPU -> host (pinned included), kCUDA -> cuda, anything else (meta, MPS, HIP) ->
///     other; CPU algorithms refuse non-host memory through grpo::expect_host.
///   - layout: data_ptr() already includes the storage offset and points at element (0, ..., 0);
///     sizes() and strides() are in elements. torch strides are never negative; expand() gives
///     stride 0, which strided_view supports.
#pragma once

#include <grpo/core/tensor_traits.hpp>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/Layout.h>
#include <c10/core/ScalarType.h>

#include <cstddef>
#include <string>

namespace grpo {

/// The grpo::dtype of a torch scalar type; dtype::unknown for types grpo does not read.
constexpr dtype dtype_from_torch(c10::ScalarType t) noexcept {
  switch (t) {
    case c10::ScalarType::Float:
      return dtype::f32;
    case c10::ScalarType::Double:
      return dtype::f64;
    case c10::ScalarType::BFloat16:
      return dtype::bf16;
    case c10::ScalarType::Half:
      return dtype::f16;
    case c10::ScalarType::Int:
      return dtype::i32;
    case c10::ScalarType::Long:
      return dtype::i64;
    case c10::ScalarType::Byte:
      return dtype::u8;
    case c10::ScalarType::Char:
      return dtype::i8;
    case c10::ScalarType::Bool:
      return dtype::boolean;
    default:
      return dtype::unknown;
  }
}

/// The memory_space of a torch device (the device index is not part of it).
inline memory_space memory_space_from_torch(const c10::Device& dev) noexcept {
  switch (dev.type()) {
    case c10::DeviceType::CPU:
      return memory_space::host;
    case c10::DeviceType::CUDA:
      return memory_space::cuda;
    default:
      return memory_space::other;
  }
}

namespace detail {

/// Shared implementation for at::Tensor and at::TensorBase (the same handle, with and without the
/// operator methods).
template <class TT>
struct torch_traits_impl {
  using value_type = void;
  static constexpr std::size_t rank = dynamic_rank;

  static grpo::dtype dtype(const TT& t) noexcept { return dtype_from_torch(t.scalar_type()); }
  static std::size_t rank_of(const TT& t) noexcept { return static_cast<std::size_t>(t.dim()); }
  static memory_space space(const TT& t) noexcept { return memory_space_from_torch(t.device()); }

  /// Checks run by as_view before the dtype/rank checks, so that nothing below can throw a
  /// c10::Error: the tensor is defined ([grpo.bad_value]), dense/strided ([grpo.bad_value] for
  /// sparse or mkldnn layouts) and has no lazy negation bit (a `_neg_view` would otherwise be read
  /// with the wrong sign; call resolve_neg() first).
  static void validate(const TT& t) {
    GRPO_EXPECTS(t.defined(), bad_value, "torch::Tensor: undefined tensor");
    GRPO_EXPECTS(t.layout() == c10::kStrided, bad_value,
                 "torch::Tensor: layout is not strided (sparse or opaque); call to_dense() first");
    GRPO_EXPECTS(
        !t.is_neg() && !t.is_conj(), bad_value,
        "torch::Tensor: lazy negation/conjugation bit set; call resolve_neg()/resolve_conj()");
  }

  /// @post points at element (0, ..., 0) (data_ptr() includes storage_offset()); null for meta
  /// tensors, which have no memory.
  static void* data(const TT& t) noexcept {
    if (t.is_meta() || !t.has_storage()) return nullptr;
    return t.data_ptr();
  }
  /// @pre d < dim().
  static index_t extent(const TT& t, std::size_t d) noexcept {
    return static_cast<index_t>(t.sizes()[d]);
  }
  /// Stride in elements. @pre d < dim().
  static index_t stride(const TT& t, std::size_t d) noexcept {
    return static_cast<index_t>(t.strides()[d]);
  }
};

}  // namespace detail

/// tensor_traits for torch::Tensor (= at::Tensor): value_type void (run-time dtype), dynamic rank;
/// use grpo::as_view_as<E, R>(t). A const tensor handle still refers to writable storage.
template <>
struct tensor_traits<at::Tensor> : detail::torch_traits_impl<at::Tensor> {};

/// tensor_traits for at::TensorBase (the operator-free base class used inside ATen kernels).
template <>
struct tensor_traits<at::TensorBase> : detail::torch_traits_impl<at::TensorBase> {};

}  // namespace grpo

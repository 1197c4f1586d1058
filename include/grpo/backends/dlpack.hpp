// SPDX-License-Identifier: Apache-2.0
/// @file dlpack.hpp
/// @brief Opt-in tensor_traits for DLPack (`DLTensor`, `DLManagedTensor`), the zero-copy exchange
///        format of PyTorch, JAX, CuPy, TVM, NumPy: run-time dtype, rank and device, all checked.
///
/// Link `grpo::dlpack` (Debian's libdlpack-dev is DLPack 0.6, DLPACK_VERSION 60). Never included by
/// grpo/grpo.hpp. Usage:
/// @code
///   DLManagedTensor* t = ...;                               // e.g. from torch.utils.dlpack
///   auto logp = grpo::as_view_as<const float, 2>(*t);       // checks dtype, rank, byte_offset
///   grpo::expect_host(logp, "logp");                        // a CPU path rejects kDLCUDA memory
/// @endcode
/// The view borrows the memory: the DLManagedTensor must outlive it (call its deleter afterwards).
///
/// Mapping:
///   - dtype: (code, bits, lanes) -> grpo::dtype: kDLFloat 32/64/16 -> f32/f64/f16, kDLBfloat 16 ->
///     bf16, kDLInt 32/64/8 -> i32/i64/i8, kDLUInt 8 -> u8, bool as kDLUInt 1 (the pre-0.8
///     convention, one byte per element) or kDLBool (code 6, DLPack >= 0.8) -> boolean; anything
///     else, including lanes != 1, is dtype::unknown and as_view_as rejects it with
///     [grpo.bad_dtype].
///   - device: kDLCPU -> host, kDLCUDA -> cuda, kDLCUDAHost -> cuda_host (pinned, host readable),
///     kDLCUDAManaged -> cuda_managed, everything else (ROCm, OpenCL, Metal, ...) -> other.
///   - layout: `strides == NULL` means compact row-major (DLPack's rule), strides are in elements;
///     element (0, ..., 0) is at `(char*)data + byte_offset`, and byte_offset must be a multiple of
///     the element size ([grpo.bad_value] otherwise: the elements would be misaligned).
#pragma once

#include <grpo/core/tensor_traits.hpp>

#include <dlpack/dlpack.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace grpo {

/// DLPack's dtype code for bool (kDLBool, added in DLPack 0.8; absent from the 0.6 enum).
inline constexpr std::uint8_t dlpack_bool_code = 6;

/// The grpo::dtype of a DLPack data type; dtype::unknown for vector lanes and unsupported types.
/// @post dtype_from_dlpack({kDLFloat, 32, 1}) == dtype::f32.
constexpr dtype dtype_from_dlpack(DLDataType t) noexcept {
  if (t.lanes != 1) return dtype::unknown;
  switch (t.code) {
    case kDLFloat:
      return t.bits == 32   ? dtype::f32
             : t.bits == 64 ? dtype::f64
             : t.bits == 16 ? dtype::f16
                            : dtype::unknown;
    case kDLBfloat:
      return t.bits == 16 ? dtype::bf16 : dtype::unknown;
    case kDLInt:
      return t.bits == 32   ? dtype::i32
             : t.bits == 64 ? dtype::i64
             : t.bits == 8  ? dtype::i8
                            : dtype::unknown;
    case kDLUInt:
      return t.bits == 8 ? dtype::u8 : t.bits == 1 ? dtype::boolean : dtype::unknown;
    case dlpack_bool_code:
      return t.bits == 8 ? dtype::boolean : dtype::unknown;
    default:
      return dtype::unknown;
  }
}

/// Bytes per element of a DLPack data type as stored in memory (bool is one byte even when
/// described as 1 bit); 0 when bits * lanes is not a whole number of bytes.
constexpr std::size_t dlpack_element_bytes(DLDataType t) noexcept {
  if (dtype_from_dlpack(t) == dtype::boolean) return 1;
  const std::size_t bits = static_cast<std::size_t>(t.bits) * static_cast<std::size_t>(t.lanes);
  return bits % 8 == 0 ? bits / 8 : 0;
}

/// The memory_space of a DLPack device (the device id is not part of it).
constexpr memory_space memory_space_from_dlpack(DLDevice dev) noexcept {
  switch (dev.device_type) {
    case kDLCPU:
      return memory_space::host;
    case kDLCUDA:
      return memory_space::cuda;
    case kDLCUDAHost:
      return memory_space::cuda_host;
    case kDLCUDAManaged:
      return memory_space::cuda_managed;
    default:
      return memory_space::other;
  }
}

/// tensor_traits for a borrowed DLTensor: value_type void (run-time dtype), dynamic rank.
/// Use grpo::as_view_as<E, R>(t); a const DLTensor still describes writable memory, so E may be
/// non-const.
template <>
struct tensor_traits<DLTensor> {
  using value_type = void;
  static constexpr std::size_t rank = dynamic_rank;

  static grpo::dtype dtype(const DLTensor& t) noexcept { return dtype_from_dlpack(t.dtype); }
  static std::size_t rank_of(const DLTensor& t) noexcept {
    return t.ndim < 0 ? 0 : static_cast<std::size_t>(t.ndim);
  }
  static memory_space space(const DLTensor& t) noexcept {
    return memory_space_from_dlpack(t.device);
  }

  /// Structural checks run by as_view before the dtype/rank checks:
  /// ndim >= 0 and shape present ([grpo.shape_mismatch] / [grpo.bad_value]), extents >= 0, scalar
  /// lanes ([grpo.bad_dtype]), byte_offset a multiple of the element size ([grpo.bad_value]) and a
  /// data pointer whenever there are elements ([grpo.bad_value]).
  static void validate(const DLTensor& t) {
    GRPO_EXPECTS(t.ndim >= 0, shape_mismatch, "DLTensor: negative ndim " + std::to_string(t.ndim));
    GRPO_EXPECTS(t.ndim == 0 || t.shape != nullptr, bad_value, "DLTensor: shape is NULL");
    GRPO_EXPECTS(
        t.dtype.lanes == 1, bad_dtype,
        "DLTensor: vector dtype with " + std::to_string(t.dtype.lanes) + " lanes is not supported");
    const std::size_t bytes = dlpack_element_bytes(t.dtype);
    GRPO_EXPECTS(
        bytes != 0, bad_dtype,
        "DLTensor: element of " + std::to_string(t.dtype.bits) + " bits is not byte sized");
    GRPO_EXPECTS(t.byte_offset % bytes == 0, bad_value,
                 "DLTensor: byte_offset " + std::to_string(t.byte_offset) +
                     " is not a multiple of the element size " + std::to_string(bytes));
    bool empty = false;
    for (int d = 0; d < t.ndim; ++d) {
      GRPO_EXPECTS(t.shape[d] >= 0, bad_value,
                   "DLTensor: negative extent " + std::to_string(t.shape[d]) + " in dimension " +
                       std::to_string(d));
      empty = empty || t.shape[d] == 0;
    }
    GRPO_EXPECTS(empty || t.data != nullptr, bad_value, "DLTensor: data is NULL");
  }

  /// @post points at element (0, ..., 0): data advanced by byte_offset bytes.
  static void* data(const DLTensor& t) noexcept {
    if (t.data == nullptr) return nullptr;
    return static_cast<void*>(static_cast<char*>(t.data) + t.byte_offset);
  }

  /// @pre d < ndim.
  static index_t extent(const DLTensor& t, std::size_t d) noexcept {
    return static_cast<index_t>(t.shape[d]);
  }

  /// Stride in elements; with strides == NULL the compact row-major stride prod_{k > d} shape[k].
  /// @pre d < ndim.
  static index_t stride(const DLTensor& t, std::size_t d) noexcept {
    if (t.strides != nullptr) return static_cast<index_t>(t.strides[d]);
    index_t s = 1;
    for (std::size_t k = d + 1; k < static_cast<std::size_t>(t.ndim); ++k)
      s *= static_cast<index_t>(t.shape[k]);
    return s;
  }
};

/// tensor_traits for DLManagedTensor: the view describes its dl_tensor (ownership stays with the
/// producer; call `deleter` once the view is no longer used).
template <>
struct tensor_traits<DLManagedTensor> {
  using base = tensor_traits<DLTensor>;
  using value_type = void;
  static constexpr std::size_t rank = dynamic_rank;

  static grpo::dtype dtype(const DLManagedTensor& t) noexcept { return base::dtype(t.dl_tensor); }
  static std::size_t rank_of(const DLManagedTensor& t) noexcept {
    return base::rank_of(t.dl_tensor);
  }
  static memory_space space(const DLManagedTensor& t) noexcept { return base::space(t.dl_tensor); }
  static void validate(const DLManagedTensor& t) { base::validate(t.dl_tensor); }
  static void* data(const DLManagedTensor& t) noexcept { return base::data(t.dl_tensor); }
  static index_t extent(const DLManagedTensor& t, std::size_t d) noexcept {
    return base::extent(t.dl_tensor, d);
  }
  static index_t stride(const DLManagedTensor& t, std::size_t d) noexcept {
    return base::stride(t.dl_tensor, d);
  }
};

}  // namespace grpo

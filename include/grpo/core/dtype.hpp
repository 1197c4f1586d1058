// SPDX-License-Identifier: Apache-2.0
/// @file dtype.hpp
/// @brief Runtime element-type tags (for DLPack / torch tensors whose dtype is only known at run time).
#pragma once

#include <grpo/core/half.hpp>

#include <cstdint>
#include <string_view>
#include <type_traits>

namespace grpo {

/// Element types the library reads or writes.
enum class dtype : std::uint8_t { f32, f64, bf16, f16, i32, i64, u8, i8, boolean, unknown };

/// The dtype tag of a C++ element type (cv-qualifiers ignored); dtype::unknown for anything else.
template <class T>
inline constexpr dtype dtype_v = [] {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, float>) return dtype::f32;
  else if constexpr (std::is_same_v<U, double>) return dtype::f64;
  else if constexpr (std::is_same_v<U, bfloat16>) return dtype::bf16;
  else if constexpr (std::is_same_v<U, float16>) return dtype::f16;
  else if constexpr (std::is_same_v<U, std::int32_t>) return dtype::i32;
  else if constexpr (std::is_same_v<U, std::int64_t>) return dtype::i64;
  else if constexpr (std::is_same_v<U, std::uint8_t>) return dtype::u8;
  else if constexpr (std::is_same_v<U, std::int8_t>) return dtype::i8;
  else if constexpr (std::is_same_v<U, bool>) return dtype::boolean;
  else return dtype::unknown;
}();

/// Human-readable name of a dtype ("float32", "bfloat16", ...), used in error messages.
constexpr std::string_view to_string(dtype d) noexcept {
  switch (d) {
    case dtype::f32: return "float32";
    case dtype::f64: return "float64";
    case dtype::bf16: return "bfloat16";
    case dtype::f16: return "float16";
    case dtype::i32: return "int32";
    case dtype::i64: return "int64";
    case dtype::u8: return "uint8";
    case dtype::i8: return "int8";
    case dtype::boolean: return "bool";
    case dtype::unknown: return "unknown";
  }
  return "unknown";
}

/// Where a tensor's memory lives. CPU algorithms require memory_space::host; CUDA launchers require
/// memory_space::cuda (or managed).
enum class memory_space : std::uint8_t { host, cuda, cuda_host, cuda_managed, other };

constexpr std::string_view to_string(memory_space m) noexcept {
  switch (m) {
    case memory_space::host: return "host";
    case memory_space::cuda: return "cuda";
    case memory_space::cuda_host: return "cuda_host";
    case memory_space::cuda_managed: return "cuda_managed";
    case memory_space::other: return "other";
  }
  return "other";
}

}  // namespace grpo

// SPDX-License-Identifier: Apache-2.0
/// @file config.hpp
/// @brief Compile-time configuration macros of grpo; every macro can be overridden before inclusion.
#pragma once

#include <cstddef>  // std::size_t, std::ptrdiff_t

/// Library version (semantic versioning); kept in sync with CMake's project(VERSION).
#define GRPO_VERSION_MAJOR 0
#define GRPO_VERSION_MINOR 1
#define GRPO_VERSION_PATCH 0

// GRPO_HOST_DEVICE marks the scalar element maths of include/grpo/ops/ so the same function compiles
// for the host and, under nvcc, for the device (one source of maths, see docs/architecture.md).
#ifndef GRPO_HOST_DEVICE
#if defined(__CUDACC__) || defined(__HIPCC__)
#define GRPO_HOST_DEVICE __host__ __device__
#else
#define GRPO_HOST_DEVICE
#endif
#endif

#ifndef GRPO_FORCEINLINE
#if defined(__CUDACC__)
#define GRPO_FORCEINLINE __forceinline__
#elif defined(__GNUC__) || defined(__clang__)
#define GRPO_FORCEINLINE inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define GRPO_FORCEINLINE __forceinline
#else
#define GRPO_FORCEINLINE inline
#endif
#endif

// GRPO_USE_EXCEPTIONS: 1 when the translation unit is compiled with exceptions (auto-detected, as fmt
// does). With 0, precondition failures call GRPO_ABORT instead of throwing grpo::error.
#ifndef GRPO_USE_EXCEPTIONS
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#define GRPO_USE_EXCEPTIONS 1
#else
#define GRPO_USE_EXCEPTIONS 0
#endif
#endif

// GRPO_RESTRICT: no-alias hint for hot loops.
#ifndef GRPO_RESTRICT
#if defined(__GNUC__) || defined(__clang__) || defined(_MSC_VER)
#define GRPO_RESTRICT __restrict
#else
#define GRPO_RESTRICT
#endif
#endif

namespace grpo {
/// Signed index type used for extents, strides and loops: 64-bit so tokens x vocab > 2^31 is safe.
using index_t = std::ptrdiff_t;
}  // namespace grpo

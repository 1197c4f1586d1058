// SPDX-License-Identifier: Apache-2.0
/// @file vmath512.hpp
/// @brief Compatibility header: the AVX-512 vocabulary-loop maths moved to
///        grpo/simd/arch/avx512/packet.hpp (grpo::simd::avx512, compiled in every x86 build inside
///        a target region and selected at run time). This header keeps the old spelling
///        grpo::math::v512::{exp, exp_fast, exp_full, log, hsum, hmax, load*, to_bf16, store_*}
///        for the code that has not moved to the packets yet, and GRPO_HAS_AVX512 = 1 exactly when
///        this translation unit is compiled for AVX-512F + DQ (e.g. -march=native on an AVX-512
///        CPU): loss.hpp's and the distillation engine's compile-time AVX-512 paths test it.
#pragma once

#include <grpo/core/config.hpp>

#if defined(__AVX512F__) && defined(__AVX512DQ__) && !defined(__CUDA_ARCH__)
#define GRPO_HAS_AVX512 1
#include <grpo/simd/arch/avx512/packet.hpp>

namespace grpo::math::v512 {

using packet = ::grpo::simd::avx512;
using vf = packet::vf;

GRPO_FORCEINLINE vf set1(float v) noexcept {
  return packet::set1(v);
}
GRPO_FORCEINLINE vf exp(vf x) noexcept {
  return packet::exp(x);
}
GRPO_FORCEINLINE vf exp_fast(vf x) noexcept {
  return packet::exp_fast(x);
}
GRPO_FORCEINLINE vf exp_full(vf x) noexcept {
  return packet::exp_full(x);
}
GRPO_FORCEINLINE vf log(vf x) noexcept {
  return packet::log(x);
}
GRPO_FORCEINLINE float hsum(vf v) noexcept {
  return packet::hsum(v);
}
GRPO_FORCEINLINE float hmax(vf v) noexcept {
  return packet::hmax(v);
}
GRPO_FORCEINLINE vf load(const float* p) noexcept {
  return packet::load(p);
}
GRPO_FORCEINLINE vf load_tail(const float* p, int n) noexcept {
  return packet::load_tail(p, n);
}
GRPO_FORCEINLINE vf load_bf16(const void* p) noexcept {
  return packet::load_bf16(p);
}
GRPO_FORCEINLINE vf load_fp16(const void* p) noexcept {
  return packet::load_fp16(p);
}
GRPO_FORCEINLINE auto to_bf16(vf v) noexcept -> decltype(packet::to_bf16(v)) {
  return packet::to_bf16(v);
}
GRPO_FORCEINLINE void store_bf16(void* p, vf v) noexcept {
  packet::store_bf16(p, v);
}
GRPO_FORCEINLINE void store_fp16(void* p, vf v) noexcept {
  packet::store_fp16(p, v);
}

}  // namespace grpo::math::v512

#else
#define GRPO_HAS_AVX512 0
#endif

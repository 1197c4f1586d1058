// SPDX-License-Identifier: Apache-2.0
/// @file dense.hpp
/// @brief The AVX2 (+ FMA, F16C) kernels of the distillation rows: pass 1 of a single row
///        (avx2::row_lse_store: SFT and top-k) and the whole dense divergence row
///        (avx2::dense_row), instantiated from the arch-generic text of kernels/vector_pass1.ipp
///        and kernels/vector_dense.ipp over grpo::simd::avx2 (8-float packets). Compiled in every
///        x86-64 build inside a target region; called only after grpo::active_isa() said avx2 or
///        better. Results differ from the portable path by the exp polynomial (< 3e-7 relative
///        near 0) and the summation order (tests/distill/test_kernels.cpp states the bounds).
#pragma once

#include <distill/detail/divergence.hpp>
#include <distill/detail/row_math.hpp>
#include <grpo/core/half.hpp>
#include <grpo/core/isa.hpp>
#include <grpo/simd/arch/avx2/packet.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

/// Software prefetch distance of pass 1, in chunks (also set by kernels/avx512/pass1.hpp).
#ifndef GRPO_DISTILL_PREFETCH_CHUNKS
#define GRPO_DISTILL_PREFETCH_CHUNKS 4
#endif

#if GRPO_SIMD_HAS_AVX2_PACKET
#include <immintrin.h>

GRPO_BEGIN_TARGET_AVX2
namespace grpo::distill::detail {
inline namespace GRPO_ISA_ABI {
namespace avx2 {

using P = ::grpo::simd::avx2;

/// c - a b (one rounding) and a / b: the two operations the generic text needs beyond the packet
/// API.
GRPO_FORCEINLINE __m256 fnmadd_(__m256 a, __m256 b, __m256 c) noexcept {
  return _mm256_fnmadd_ps(a, b, c);
}
GRPO_FORCEINLINE __m256 div_(__m256 a, __m256 b) noexcept {
  return _mm256_div_ps(a, b);
}
/// Lane counters of the exp sweeps: P::mask lanes are all-ones (-1) or 0, so c - m adds 1 where m
/// holds (one integer operation instead of and + add on floats).
using vcount = __m256i;
GRPO_FORCEINLINE vcount count_zero_() noexcept { return _mm256_setzero_si256(); }
GRPO_FORCEINLINE vcount count_add_(vcount c, __m256i m) noexcept { return _mm256_sub_epi32(c, m); }
GRPO_FORCEINLINE index_t count_total_(vcount c) noexcept {
  const __m128i h = _mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
  const __m128i q = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
  return _mm_cvtsi128_si32(_mm_add_epi32(q, _mm_shuffle_epi32(q, 0xb1)));
}

#include <distill/kernels/vector_pass1.ipp>
#include <distill/kernels/vector_dense.ipp>

}  // namespace avx2
}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::distill::detail
GRPO_END_TARGET

#endif  // GRPO_SIMD_HAS_AVX2_PACKET

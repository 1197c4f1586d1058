// SPDX-License-Identifier: Apache-2.0
/// @file vmath512.hpp
/// @brief AVX-512 versions of the vocabulary-loop maths (exp, log, horizontal reductions) on
///        16-float registers, for the hot loops that are compute-bound on exp: selective
///        log-softmax, the fused GRPO step, distillation, the loss fast path.
///
/// Only defined when the translation unit is compiled for AVX-512F + DQ (GRPO_HAS_AVX512 is then
/// 1; e.g. -march=native on an AVX-512 CPU, or -mavx512f -mavx512dq). Every caller keeps its
/// portable loop (core/math.hpp fast_exp_*) for other targets; the two give the same values to
/// within the polynomials' < 2 ulp.
///
/// Why a second spelling of the same exp: g++ vectorises core/math.hpp's fast_exp_bounded, but
/// the scalar formulation (shifter rounding, 2^n through integer bit arithmetic) costs ~25 vector
/// operations per 16 values. AVX-512 has the missing pieces as single instructions: vrndscaleps
/// rounds n = round(x log2 e), vscalefps multiplies by 2^n (with correct underflow to subnormals
/// and 0, and overflow to +inf), vgetexpps / vgetmantps split a float for log. The exp below is 12
/// operations; measured 0.12 ns per value in an L1-resident exp-and-sum loop on Zen 5 against
/// 0.20 ns for the auto-vectorised scalar formulation (tests/core/test_vmath512.cpp holds the
/// accuracy).
#pragma once

#include <grpo/core/config.hpp>

#if defined(__AVX512F__) && defined(__AVX512DQ__) && !defined(__CUDA_ARCH__)
#define GRPO_HAS_AVX512 1
#include <immintrin.h>

namespace grpo::math::v512 {

using vf = __m512;

/// Broadcast.
GRPO_FORCEINLINE vf set1(float v) noexcept {
  return _mm512_set1_ps(v);
}

/// e^x for x in [-87.3, 88.3] (NaN propagates): Cody-Waite reduction with n = round(x log2 e),
/// the Cephes expf polynomial (same coefficients as math::fast_exp_bounded, Horner form), and
/// the 2^n scaling by vscalefps. Below the range the result degrades to a subnormal / 0 (vscalef
/// underflows correctly), so inputs down to -103 still give e^x to within a subnormal's ulp; above
/// 88.7 it is +inf.
GRPO_FORCEINLINE vf exp(vf x) noexcept {
  const vf n = _mm512_roundscale_ps(_mm512_mul_ps(x, set1(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  vf r = _mm512_fnmadd_ps(n, set1(0.693359375f), x);  // exact: 0.693359375 has 9 bits
  r = _mm512_fnmadd_ps(n, set1(-2.12194440e-4f), r);
  vf y = _mm512_fmadd_ps(set1(1.9875691500e-4f), r, set1(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, r, set1(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, r, set1(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, r, set1(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, r, set1(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, r, set1(1.0f));
  y = _mm512_fmadd_ps(y, r, set1(1.0f));
  return _mm512_scalef_ps(y, n);
}

/// e^x in 8 operations, for the vocabulary and token loops whose sums are dominated by
/// arguments near 0 (x = logit - row max <= 0, log-ratios): t = x log2 e rounded to float,
/// n = round(t), f = t - n in [-1/2, 1/2], 2^f by a degree-5 minimax polynomial with the
/// constant term fixed at 1 (so e^0 = 1 exactly), then 2^n by vscalefps. Relative error
/// <= 3e-7 + 1e-7 |x| (the polynomial's 1.9e-7, then the rounding of t, which grows with |x|:
/// measured 1e-6 at |x| = 16, 3.4e-6 at |x| = 45); exp above keeps < 1 ulp with 12 operations.
/// Same range and edges as exp: x in [-87.3, 88.3], subnormals / 0 below, +inf above 88.7,
/// NaN propagates; callers clamp -inf as for exp. On Zen 5 the exp-and-sum loop takes 0.068 ns per value against 0.104
/// (7 of its 8 operations use the two FMA pipes, against 11 of 12).
GRPO_FORCEINLINE vf exp_fast(vf x) noexcept {
  const vf t = _mm512_mul_ps(x, set1(1.44269504088896341f));
  const vf n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const vf f = _mm512_sub_ps(t, n);  // exact
  vf y = _mm512_fmadd_ps(set1(1.3264724984765053e-3f), f, set1(9.671512991189957e-3f));
  y = _mm512_fmadd_ps(y, f, set1(5.550733581185341e-2f));
  y = _mm512_fmadd_ps(y, f, set1(2.4022242426872253e-1f));
  y = _mm512_fmadd_ps(y, f, set1(6.931470036506653e-1f));
  y = _mm512_fmadd_ps(y, f, set1(1.0f));
  return _mm512_scalef_ps(y, n);
}

/// e^x with the libm edge behaviour: e^-inf = 0, e^x = +inf above 88.7, NaN -> NaN, and x below
/// -103.3 gives exactly 0 (the bounded exp's reduction would lose r for |x| beyond that).
GRPO_FORCEINLINE vf exp_full(vf x) noexcept {
  const vf xc = _mm512_max_ps(x, set1(-104.0f));  // max(NaN, c) = c: keep NaN separately
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  const vf e = exp(_mm512_min_ps(xc, set1(89.0f)));
  return _mm512_mask_mov_ps(e, nan, x);
}

/// log x for positive, finite x (normal or subnormal), the Cephes logf polynomial (as
/// math::fast_log_normal), with the split x = 2^e m, m in [sqrt(1/2), sqrt(2)), from
/// vgetexpps / vgetmantps (exact, subnormals included). 0 -> -inf, +inf -> +inf, negative or NaN -> NaN.
GRPO_FORCEINLINE vf log(vf x) noexcept {
  // x = 2^e m with m in [1, 2) (vgetexpps = floor(log2 x), also for subnormals); fold
  // m in (sqrt 2, 2) down to (sqrt(1/2), 1) so that |m - 1| <= 0.415.
  vf m = _mm512_getmant_ps(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_nan);
  vf e = _mm512_getexp_ps(x);
  const __mmask16 hi = _mm512_cmp_ps_mask(m, set1(1.41421356f), _CMP_GT_OQ);
  m = _mm512_mask_mul_ps(m, hi, m, set1(0.5f));
  e = _mm512_mask_add_ps(e, hi, e, set1(1.0f));
  m = _mm512_sub_ps(m, set1(1.0f));
  const vf z = _mm512_mul_ps(m, m);
  vf y = _mm512_fmadd_ps(set1(7.0376836292e-2f), m, set1(-1.1514610310e-1f));
  y = _mm512_fmadd_ps(y, m, set1(1.1676998740e-1f));
  y = _mm512_fmadd_ps(y, m, set1(-1.2420140846e-1f));
  y = _mm512_fmadd_ps(y, m, set1(1.4249322787e-1f));
  y = _mm512_fmadd_ps(y, m, set1(-1.6668057665e-1f));
  y = _mm512_fmadd_ps(y, m, set1(2.0000714765e-1f));
  y = _mm512_fmadd_ps(y, m, set1(-2.4999993993e-1f));
  y = _mm512_fmadd_ps(y, m, set1(3.3333331174e-1f));
  y = _mm512_mul_ps(_mm512_mul_ps(y, m), z);
  y = _mm512_fmadd_ps(e, set1(-2.12194440e-4f), y);
  y = _mm512_fmadd_ps(set1(-0.5f), z, y);
  vf r = _mm512_add_ps(m, y);
  r = _mm512_fmadd_ps(e, set1(0.693359375f), r);
  // Edges: getexp(0) = -inf and getmant(0) = 0 give garbage; +inf gives getexp = +inf.
  const __mmask16 zero = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_EQ_OQ);
  const __mmask16 pinf = _mm512_cmp_ps_mask(x, set1(__builtin_inff()), _CMP_EQ_OQ);
  r = _mm512_mask_mov_ps(r, zero, set1(-__builtin_inff()));
  r = _mm512_mask_mov_ps(r, pinf, x);
  return r;  // negative / NaN: getmant with _MM_MANT_SIGN_nan already gave NaN
}

/// Horizontal sum / max of one register.
GRPO_FORCEINLINE float hsum(vf v) noexcept {
  return _mm512_reduce_add_ps(v);
}
GRPO_FORCEINLINE float hmax(vf v) noexcept {
  return _mm512_reduce_max_ps(v);
}

/// Load 16 values of a 16-bit float storage (bf16 / fp16 bit patterns) widened to float, and
/// the masked tail variants; plain float loads for symmetry.
GRPO_FORCEINLINE vf load(const float* p) noexcept {
  return _mm512_loadu_ps(p);
}
GRPO_FORCEINLINE vf load_tail(const float* p, int n) noexcept {
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p);
}
/// 16 bf16 bit patterns (uint16) -> float: a shift of each into the upper half (exact).
GRPO_FORCEINLINE vf load_bf16(const void* p) noexcept {
  const __m256i h = _mm256_loadu_si256(static_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
/// 16 fp16 bit patterns -> float (vcvtph2ps, exact for every pattern incl. subnormals, inf, NaN).
GRPO_FORCEINLINE vf load_fp16(const void* p) noexcept {
  return _mm512_cvtph_ps(_mm256_loadu_si256(static_cast<const __m256i*>(p)));
}
/// float -> 16 bf16 bit patterns in a register, round to nearest even, NaN kept NaN (quiet), as
/// grpo::bfloat16's scalar conversion (also for subnormals: vcvtneps2bf16 would flush them).
GRPO_FORCEINLINE __m256i to_bf16(vf v) noexcept {
  const __m512i b = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
  r = _mm512_srli_epi32(r, 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  r = _mm512_mask_mov_epi32(r, nan,
                            _mm512_or_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(0x40)));
  return _mm512_cvtepi32_epi16(r);
}
/// Stores to_bf16(v) to 16 unaligned bf16 slots.
GRPO_FORCEINLINE void store_bf16(void* p, vf v) noexcept {
  _mm256_storeu_si256(static_cast<__m256i*>(p), to_bf16(v));
}
/// float -> 16 fp16 bit patterns, round to nearest even (vcvtps2ph).
GRPO_FORCEINLINE void store_fp16(void* p, vf v) noexcept {
  _mm256_storeu_si256(static_cast<__m256i*>(p),
                      _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

}  // namespace grpo::math::v512

#else
#define GRPO_HAS_AVX512 0
#endif

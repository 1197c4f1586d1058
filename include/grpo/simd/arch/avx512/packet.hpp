// SPDX-License-Identifier: Apache-2.0
/// @file packet.hpp
/// @brief The AVX-512 packet (16 floats in a __m512, masks in __mmask16): exp / log, horizontal
///        reductions, widening loads and narrowing stores of fp32 / bf16 / fp16, masked tails,
///        non-temporal stores and prefetch, as static members of grpo::simd::avx512 so that a
///        kernel written once as a template over an arch tag `A` (A::vf, A::lanes, A::exp, ...)
///        compiles for this ISA and for simd::avx2 (arch/avx2/packet.hpp, the same names).
///
/// Compiled in every x86-64 build with GRPO_RUNTIME_DISPATCH (inside GRPO_BEGIN_TARGET_AVX512),
/// and in a translation unit compiled for AVX-512 anyway; callable only from code in an AVX-512
/// region (or such a TU) and only after grpo::active_isa() said avx512.
///
/// Why a second spelling of the exp in core/math.hpp: g++ vectorises fast_exp_bounded, but the
/// scalar formulation (shifter rounding, 2^n through integer bit arithmetic) costs ~25 vector
/// operations per 16 values. AVX-512 has the missing pieces as single instructions: vrndscaleps
/// rounds n = round(x log2 e), vscalefps multiplies by 2^n (with correct underflow to subnormals
/// and 0, and overflow to +inf), vgetexpps / vgetmantps split a float for log. The exp below is 12
/// operations; measured 0.12 ns per value in an L1-resident exp-and-sum loop on Zen 5 against
/// 0.20 ns for the auto-vectorised scalar formulation (tests/core/test_vmath512.cpp holds the
/// accuracy of both packets).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/half.hpp>
#include <grpo/core/isa.hpp>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#if (GRPO_RUNTIME_DISPATCH || (defined(__AVX512F__) && defined(__AVX512BW__) &&            \
                               defined(__AVX512DQ__) && defined(__AVX512VL__))) &&          \
    GRPO_ARCH_X86_64
#define GRPO_SIMD_HAS_AVX512_PACKET 1
#include <immintrin.h>

GRPO_BEGIN_TARGET_AVX512
namespace grpo::simd {
inline namespace GRPO_ISA_ABI {

/// The AVX-512 arch tag: every member is a static function on 16-float packets.
struct avx512 {
  using vf = __m512;
  using mask = __mmask16;
  static constexpr int lanes = 16;
  static constexpr isa level = isa::avx512;

  // ----- arithmetic --------------------------------------------------------------------------
  static GRPO_FORCEINLINE vf set1(float v) noexcept { return _mm512_set1_ps(v); }
  static GRPO_FORCEINLINE vf zero() noexcept { return _mm512_setzero_ps(); }
  static GRPO_FORCEINLINE vf add(vf a, vf b) noexcept { return _mm512_add_ps(a, b); }
  static GRPO_FORCEINLINE vf sub(vf a, vf b) noexcept { return _mm512_sub_ps(a, b); }
  static GRPO_FORCEINLINE vf mul(vf a, vf b) noexcept { return _mm512_mul_ps(a, b); }
  /// a b + c, a b - c (one rounding).
  static GRPO_FORCEINLINE vf fmadd(vf a, vf b, vf c) noexcept { return _mm512_fmadd_ps(a, b, c); }
  static GRPO_FORCEINLINE vf fmsub(vf a, vf b, vf c) noexcept { return _mm512_fmsub_ps(a, b, c); }
  /// vmaxps / vminps: a lane where either operand is NaN returns b (so max(c, x) with a constant
  /// c keeps a NaN x, max(x, c) drops it).
  static GRPO_FORCEINLINE vf max(vf a, vf b) noexcept { return _mm512_max_ps(a, b); }
  static GRPO_FORCEINLINE vf min(vf a, vf b) noexcept { return _mm512_min_ps(a, b); }

  // ----- masks -------------------------------------------------------------------------------
  /// !(a <= b): true for NaN lanes (the "keep" test of a floor that must let NaN through).
  static GRPO_FORCEINLINE mask cmp_nle(vf a, vf b) noexcept {
    return _mm512_cmp_ps_mask(a, b, _CMP_NLE_UQ);
  }
  static GRPO_FORCEINLINE mask cmp_eq(vf a, vf b) noexcept {
    return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ);
  }
  static GRPO_FORCEINLINE mask cmp_gt(vf a, vf b) noexcept {
    return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ);
  }
  static GRPO_FORCEINLINE mask is_nan(vf a) noexcept {
    return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
  }
  /// m ? a : b per lane.
  static GRPO_FORCEINLINE vf select(mask m, vf a, vf b) noexcept {
    return _mm512_mask_mov_ps(b, m, a);
  }
  /// m ? a : 0 per lane (folded by the compiler into the producing instruction's zero-masking).
  static GRPO_FORCEINLINE vf keep(mask m, vf a) noexcept { return _mm512_maskz_mov_ps(m, a); }
  /// Number of set lanes.
  static GRPO_FORCEINLINE int count(mask m) noexcept {
    return __builtin_popcount(static_cast<unsigned>(m));
  }
  /// The first n lanes (0 <= n <= 16).
  static GRPO_FORCEINLINE mask first(std::ptrdiff_t n) noexcept {
    return static_cast<mask>(n >= 16 ? 0xffffu : (1u << n) - 1u);
  }

  // ----- maths -------------------------------------------------------------------------------
  /// e^x for x in [-87.3, 88.3] (NaN propagates): Cody-Waite reduction with n = round(x log2 e),
  /// the Cephes expf polynomial (same coefficients as math::fast_exp_bounded, Horner form), and
  /// the 2^n scaling by vscalefps. Below the range the result degrades to a subnormal / 0
  /// (vscalef underflows correctly), so inputs down to -103 still give e^x to within a
  /// subnormal's ulp; above 88.7 it is +inf. < 2 ulp.
  static GRPO_FORCEINLINE vf exp(vf x) noexcept {
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
  /// <= 3e-7 + 1e-7 |x| (the polynomial's 1.9e-7, then the rounding of t, which grows with |x|).
  /// Same range and edges as exp. On Zen 5 the exp-and-sum loop takes 0.068 ns per value
  /// against 0.104 (7 of its 8 operations use the two FMA pipes, against 11 of 12).
  static GRPO_FORCEINLINE vf exp_fast(vf x) noexcept {
    const vf t = _mm512_mul_ps(x, set1(1.44269504088896341f));
    const vf n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const vf f = _mm512_sub_ps(t, n);  // exact
    return _mm512_scalef_ps(exp2_poly(f), n);
  }

  /// 2^u for u in [-126, 127] (callers clamp below at -126; NaN propagates), exactly 0 where u
  /// rounds to -126 (u <= -125.5): the vocabulary sweeps' exp (avx2::exp2_floor's contract).
  /// n = round(u), f = u - n exact, exp2_poly(f) scaled by vscalefps, zeroed where n = -126.
  static GRPO_FORCEINLINE vf exp2_floor(vf u) noexcept {
    const vf n = _mm512_roundscale_ps(u, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const mask live = _mm512_cmp_ps_mask(n, set1(-126.0f), _CMP_NEQ_UQ);  // NaN stays live
    return _mm512_maskz_scalef_ps(live, exp2_poly(_mm512_sub_ps(u, n)), n);
  }

  /// e^x with the libm edge behaviour: e^-inf = 0, e^x = +inf above 88.7, NaN -> NaN, and x
  /// below -103.3 gives exactly 0.
  static GRPO_FORCEINLINE vf exp_full(vf x) noexcept {
    const vf xc = _mm512_max_ps(x, set1(-104.0f));  // max(NaN, c) = c: keep NaN separately
    const vf e = exp(_mm512_min_ps(xc, set1(89.0f)));
    return _mm512_mask_mov_ps(e, is_nan(x), x);
  }

  /// log x for positive x (normal or subnormal), the Cephes logf polynomial (as
  /// math::fast_log_normal) on x = 2^e m, m in [sqrt(1/2), sqrt(2)), from vgetexpps /
  /// vgetmantps (exact, subnormals included). 0 -> -inf, +inf -> +inf, negative or NaN -> NaN.
  static GRPO_FORCEINLINE vf log(vf x) noexcept {
    vf m = _mm512_getmant_ps(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_nan);
    vf e = _mm512_getexp_ps(x);
    const mask hi = _mm512_cmp_ps_mask(m, set1(1.41421356f), _CMP_GT_OQ);
    m = _mm512_mask_mul_ps(m, hi, m, set1(0.5f));
    e = _mm512_mask_add_ps(e, hi, e, set1(1.0f));
    vf r = log_poly(_mm512_sub_ps(m, set1(1.0f)), e);
    // Edges: getexp(0) = -inf and getmant(0) = 0 give garbage; +inf gives getexp = +inf.
    const mask zero = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_EQ_OQ);
    const mask pinf = _mm512_cmp_ps_mask(x, set1(__builtin_inff()), _CMP_EQ_OQ);
    r = _mm512_mask_mov_ps(r, zero, set1(-__builtin_inff()));
    return _mm512_mask_mov_ps(r, pinf, x);  // negative / NaN: getmant gave NaN already
  }

  /// Horizontal sum / max of one register.
  static GRPO_FORCEINLINE float hsum(vf v) noexcept { return _mm512_reduce_add_ps(v); }
  static GRPO_FORCEINLINE float hmax(vf v) noexcept { return _mm512_reduce_max_ps(v); }

  // ----- loads and stores --------------------------------------------------------------------
  static GRPO_FORCEINLINE vf load(const float* p) noexcept { return _mm512_loadu_ps(p); }
  /// 16 bf16 bit patterns -> float: each shifted into the upper half (exact).
  static GRPO_FORCEINLINE vf load(const bfloat16* p) noexcept {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  /// 16 fp16 bit patterns -> float (vcvtph2ps: exact for every pattern incl. subnormals, NaN).
  static GRPO_FORCEINLINE vf load(const float16* p) noexcept {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  /// 32 elements at p widened into a and b in a fixed lane order that is NOT memory order (for
  /// sums and maxima); bf16: one vpunpck{l,h}wd with zero per 16 (avx2::load2_unordered).
  static GRPO_FORCEINLINE void load2_unordered(const float* p, vf& a, vf& b) noexcept {
    a = load(p);
    b = load(p + 16);
  }
  static GRPO_FORCEINLINE void load2_unordered(const bfloat16* p, vf& a, vf& b) noexcept {
    const __m512i v = _mm512_loadu_si512(static_cast<const void*>(p));
    a = _mm512_castsi512_ps(_mm512_unpacklo_epi16(_mm512_setzero_si512(), v));
    b = _mm512_castsi512_ps(_mm512_unpackhi_epi16(_mm512_setzero_si512(), v));
  }
  static GRPO_FORCEINLINE void load2_unordered(const float16* p, vf& a, vf& b) noexcept {
    a = load(p);
    b = load(p + 16);
  }
  /// 16-bit patterns as signed integers (the block maximum of bf16 / fp16 rows; avx2's API).
  using vi16 = __m512i;  ///< 32 x int16
  static constexpr int lanes16 = 32;
  static GRPO_FORCEINLINE vi16 load_bits16(const void* p) noexcept { return _mm512_loadu_si512(p); }
  static GRPO_FORCEINLINE vi16 set1_i16(std::int16_t v) noexcept { return _mm512_set1_epi16(v); }
  static GRPO_FORCEINLINE vi16 max_i16(vi16 a, vi16 b) noexcept { return _mm512_max_epi16(a, b); }
  static GRPO_FORCEINLINE vi16 min_i16(vi16 a, vi16 b) noexcept { return _mm512_min_epi16(a, b); }
  static GRPO_FORCEINLINE std::int16_t hmax_i16(vi16 v) noexcept {
    alignas(64) std::int16_t b[32];
    _mm512_store_si512(b, v);
    std::int16_t m = b[0];
    for (int k = 1; k < 32; ++k) m = b[k] > m ? b[k] : m;
    return m;
  }
  static GRPO_FORCEINLINE std::int16_t hmin_i16(vi16 v) noexcept {
    alignas(64) std::int16_t b[32];
    _mm512_store_si512(b, v);
    std::int16_t m = b[0];
    for (int k = 1; k < 32; ++k) m = b[k] < m ? b[k] : m;
    return m;
  }
  static GRPO_FORCEINLINE vf load_bf16(const void* p) noexcept {
    return load(static_cast<const bfloat16*>(p));
  }
  static GRPO_FORCEINLINE vf load_fp16(const void* p) noexcept {
    return load(static_cast<const float16*>(p));
  }
  /// The n < 16 elements at p widened, the other lanes `fill` (no read past p + n).
  static GRPO_FORCEINLINE vf load_tail(const float* p, std::ptrdiff_t n, float fill = 0.0f) noexcept {
    return _mm512_mask_loadu_ps(set1(fill), first(n), p);
  }
  static GRPO_FORCEINLINE vf load_tail(const bfloat16* p, std::ptrdiff_t n,
                                       float fill = 0.0f) noexcept {
    const __m256i h = _mm256_maskz_loadu_epi16(first(n), p);
    return select(first(n), _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)),
                  set1(fill));
  }
  static GRPO_FORCEINLINE vf load_tail(const float16* p, std::ptrdiff_t n,
                                       float fill = 0.0f) noexcept {
    const __m256i h = _mm256_maskz_loadu_epi16(first(n), p);
    return select(first(n), _mm512_cvtph_ps(h), set1(fill));
  }

  /// float -> 16 bf16 bit patterns, round to nearest even, NaN kept NaN (quiet), as
  /// grpo::bfloat16's scalar conversion (also for subnormals: vcvtneps2bf16 would flush them).
  static GRPO_FORCEINLINE __m256i to_bf16(vf v) noexcept {
    const __m512i b = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
    r = _mm512_srli_epi32(r, 16);
    r = _mm512_mask_mov_epi32(r, is_nan(v),
                              _mm512_or_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(0x40)));
    return _mm512_cvtepi32_epi16(r);
  }
  /// float -> 16 fp16 bit patterns, round to nearest even (vcvtps2ph).
  static GRPO_FORCEINLINE __m256i to_fp16(vf v) noexcept {
    return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static GRPO_FORCEINLINE void store_bf16(void* p, vf v) noexcept {
    _mm256_storeu_si256(static_cast<__m256i*>(p), to_bf16(v));
  }
  static GRPO_FORCEINLINE void store_fp16(void* p, vf v) noexcept {
    _mm256_storeu_si256(static_cast<__m256i*>(p), to_fp16(v));
  }
  /// 16 floats narrowed into float / bf16 / fp16 storage at p.
  static GRPO_FORCEINLINE void store(float* p, vf v) noexcept { _mm512_storeu_ps(p, v); }
  static GRPO_FORCEINLINE void store(bfloat16* p, vf v) noexcept { store_bf16(p, v); }
  static GRPO_FORCEINLINE void store(float16* p, vf v) noexcept { store_fp16(p, v); }
  /// The first n < 16 lanes narrowed into storage at p (nothing written past p + n).
  static GRPO_FORCEINLINE void store_tail(float* p, vf v, std::ptrdiff_t n) noexcept {
    _mm512_mask_storeu_ps(p, first(n), v);
  }
  static GRPO_FORCEINLINE void store_tail(bfloat16* p, vf v, std::ptrdiff_t n) noexcept {
    _mm256_mask_storeu_epi16(p, first(n), to_bf16(v));
  }
  static GRPO_FORCEINLINE void store_tail(float16* p, vf v, std::ptrdiff_t n) noexcept {
    _mm256_mask_storeu_epi16(p, first(n), to_fp16(v));
  }
  /// Non-temporal store of 16 values (p aligned to 16 elements): the line goes to memory
  /// without a read-for-ownership and without evicting the working set; sfence() orders these
  /// stores before later ordinary ones.
  static GRPO_FORCEINLINE void stream(float* p, vf v) noexcept { _mm512_stream_ps(p, v); }
  static GRPO_FORCEINLINE void stream(bfloat16* p, vf v) noexcept {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), to_bf16(v));
  }
  static GRPO_FORCEINLINE void stream(float16* p, vf v) noexcept {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), to_fp16(v));
  }
  /// Non-temporal stores of the 32 values of a then b (p aligned to 32 elements), for lanes that
  /// are not NaN (a NaN lane is outside the contract: it may be written as another pattern).
  /// Every other value is narrowed exactly as store() narrows it (bitwise); bf16 rounds both
  /// packets without stream()'s NaN repair and narrows them with one pack and one permute into
  /// one 64-byte store.
  static GRPO_FORCEINLINE void stream2_nonan(float* p, vf a, vf b) noexcept {
    _mm512_stream_ps(p, a);
    _mm512_stream_ps(p + 16, b);
  }
  static GRPO_FORCEINLINE void stream2_nonan(bfloat16* p, vf a, vf b) noexcept {
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
    const auto rnd = [&](vf v) noexcept {  // nearest even: (x + 0x7fff + lsb) >> 16
      const __m512i x = _mm512_castps_si512(v);
      const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), one);
      return _mm512_srli_epi32(_mm512_add_epi32(x, _mm512_add_epi32(bias, lsb)), 16);
    };
    // packus works per 128-bit lane: quadwords [a0-3, b0-3, a4-7, b4-7, ...] -> a's, then b's.
    const __m512i idx = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
    const __m512i r = _mm512_permutexvar_epi64(idx, _mm512_packus_epi32(rnd(a), rnd(b)));
    _mm512_stream_si512(reinterpret_cast<__m512i*>(p), r);
  }
  static GRPO_FORCEINLINE void stream2_nonan(float16* p, vf a, vf b) noexcept {
    stream(p, a);
    stream(p + 16, b);
  }
  static GRPO_FORCEINLINE void sfence() noexcept { _mm_sfence(); }
  /// Prefetch of the line holding p into L1 (never faults).
  static GRPO_FORCEINLINE void prefetch(const void* p) noexcept {
    _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
  }

  // ----- polynomial cores, shared by the exps / logs above -------------------------------------
  /// 2^f for f in [-1/2, 1/2]: degree-5 minimax, constant term 1 (relative error 1.9e-7).
  static GRPO_FORCEINLINE vf exp2_poly(vf f) noexcept {
    vf y = _mm512_fmadd_ps(set1(1.3264724984765053e-3f), f, set1(9.671512991189957e-3f));
    y = _mm512_fmadd_ps(y, f, set1(5.550733581185341e-2f));
    y = _mm512_fmadd_ps(y, f, set1(2.4022242426872253e-1f));
    y = _mm512_fmadd_ps(y, f, set1(6.931470036506653e-1f));
    return _mm512_fmadd_ps(y, f, set1(1.0f));
  }
  /// log(1 + m) + e ln 2 for m = mantissa - 1 in [sqrt(1/2) - 1, sqrt(2) - 1] (Cephes logf).
  static GRPO_FORCEINLINE vf log_poly(vf m, vf e) noexcept {
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
    const vf r = _mm512_add_ps(m, y);
    return _mm512_fmadd_ps(e, set1(0.693359375f), r);
  }
};

}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::simd
GRPO_END_TARGET

#else
#define GRPO_SIMD_HAS_AVX512_PACKET 0
#endif

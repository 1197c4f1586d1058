// SPDX-License-Identifier: Apache-2.0
/// @file packet.hpp
/// @brief The AVX2 packet (8 floats in a __m256; masks as integer vectors, all-ones lanes):
///        the API of simd::avx512 (arch/avx512/packet.hpp) with the same names and contracts, so
///        one kernel template over an arch tag `A` compiles for both. FMA for the polynomials,
///        F16C for fp16, bf16 by integer shifts.
///
/// What AVX2 lacks and how it is replaced: vscalefps (2^n scaling) by building 2^n in the
/// exponent field ((n + 127) << 23; exp_full splits n in two halves so that results down to the
/// subnormal range round once), vgetexpps / vgetmantps (log's split x = 2^e m) by integer masks
/// of the bit pattern after a 2^23 rescale of subnormal inputs, k-masks by compare results used
/// with vblendvps / vandps, masked tails by vmaskmovps (floats) or a small stack copy (16-bit
/// types).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/half.hpp>
#include <grpo/core/isa.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>

#if (GRPO_RUNTIME_DISPATCH || (defined(__AVX2__) && defined(__FMA__) && defined(__F16C__))) && \
    GRPO_ARCH_X86_64
#define GRPO_SIMD_HAS_AVX2_PACKET 1
#include <immintrin.h>

GRPO_BEGIN_TARGET_AVX2
namespace grpo::simd {
inline namespace GRPO_ISA_ABI {

/// The AVX2 arch tag: every member is a static function on 8-float packets.
struct avx2 {
  using vf = __m256;
  using mask = __m256i;  ///< all-ones / all-zeros 32-bit lanes
  static constexpr int lanes = 8;
  static constexpr isa level = isa::avx2;

  // ----- arithmetic --------------------------------------------------------------------------
  static GRPO_FORCEINLINE vf set1(float v) noexcept { return _mm256_set1_ps(v); }
  static GRPO_FORCEINLINE vf zero() noexcept { return _mm256_setzero_ps(); }
  static GRPO_FORCEINLINE vf add(vf a, vf b) noexcept { return _mm256_add_ps(a, b); }
  static GRPO_FORCEINLINE vf sub(vf a, vf b) noexcept { return _mm256_sub_ps(a, b); }
  static GRPO_FORCEINLINE vf mul(vf a, vf b) noexcept { return _mm256_mul_ps(a, b); }
  static GRPO_FORCEINLINE vf fmadd(vf a, vf b, vf c) noexcept { return _mm256_fmadd_ps(a, b, c); }
  static GRPO_FORCEINLINE vf fmsub(vf a, vf b, vf c) noexcept { return _mm256_fmsub_ps(a, b, c); }
  /// vmaxps / vminps: a NaN lane in either operand returns b (as avx512::max / min).
  static GRPO_FORCEINLINE vf max(vf a, vf b) noexcept { return _mm256_max_ps(a, b); }
  static GRPO_FORCEINLINE vf min(vf a, vf b) noexcept { return _mm256_min_ps(a, b); }

  // ----- masks -------------------------------------------------------------------------------
  static GRPO_FORCEINLINE mask cmp_nle(vf a, vf b) noexcept {
    return _mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_NLE_UQ));
  }
  static GRPO_FORCEINLINE mask cmp_eq(vf a, vf b) noexcept {
    return _mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_EQ_OQ));
  }
  static GRPO_FORCEINLINE mask cmp_gt(vf a, vf b) noexcept {
    return _mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_GT_OQ));
  }
  static GRPO_FORCEINLINE mask is_nan(vf a) noexcept {
    return _mm256_castps_si256(_mm256_cmp_ps(a, a, _CMP_UNORD_Q));
  }
  static GRPO_FORCEINLINE vf select(mask m, vf a, vf b) noexcept {
    return _mm256_blendv_ps(b, a, _mm256_castsi256_ps(m));
  }
  static GRPO_FORCEINLINE vf keep(mask m, vf a) noexcept {
    return _mm256_and_ps(_mm256_castsi256_ps(m), a);
  }
  static GRPO_FORCEINLINE int count(mask m) noexcept {
    return __builtin_popcount(static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(m))));
  }
  /// The first n lanes (0 <= n <= 8).
  static GRPO_FORCEINLINE mask first(std::ptrdiff_t n) noexcept {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }

  // ----- maths -------------------------------------------------------------------------------
  /// 2^n for integral float n in [-126, 127] by building the exponent field; n = 128 gives
  /// +inf (the field 255 with a zero mantissa). Other n are outside the contract.
  static GRPO_FORCEINLINE vf pow2i(vf n) noexcept {
    const __m256i k = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(k, 23));
  }
  static GRPO_FORCEINLINE vf round(vf x) noexcept {
    return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }

  /// e^x for x in [-87.3, 88.3] (NaN propagates): avx512::exp's reduction and polynomial, 2^n
  /// by pow2i. < 2 ulp. Unlike avx512::exp, x outside the range is outside the contract (2^n is
  /// not a normal float there; the kernels clamp their arguments at -87): use exp_full.
  static GRPO_FORCEINLINE vf exp(vf x) noexcept {
    const vf n = round(_mm256_mul_ps(x, set1(1.44269504088896341f)));
    vf r = _mm256_fnmadd_ps(n, set1(0.693359375f), x);  // exact: 0.693359375 has 9 bits
    r = _mm256_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    vf y = _mm256_fmadd_ps(set1(1.9875691500e-4f), r, set1(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, set1(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, set1(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, set1(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, set1(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, r, set1(1.0f));
    y = _mm256_fmadd_ps(y, r, set1(1.0f));
    return _mm256_mul_ps(y, pow2i(n));
  }

  /// e^x in 8 vector operations plus the 2^n build (avx512::exp_fast's polynomial; relative
  /// error <= 3e-7 + 1e-7 |x|, e^0 = 1 exactly), same range as exp.
  static GRPO_FORCEINLINE vf exp_fast(vf x) noexcept {
    const vf t = _mm256_mul_ps(x, set1(1.44269504088896341f));
    const vf n = round(t);
    const vf f = _mm256_sub_ps(t, n);  // exact
    return _mm256_mul_ps(exp2_poly(f), pow2i(n));
  }

  /// 2^u for u in [-126, 127] (callers clamp below at -126; NaN propagates), exactly 0 where u
  /// rounds to -126 (u <= -125.5): the vocabulary sweeps' exp, their floor folded in (no mask).
  /// n = round(u) by adding 1.5 * 2^23 + 126 (even, so ties go to even as in vroundps; the sum's
  /// low bits are n + 126), f = u - n exact, 2^f by exp2_poly with doubled coefficients (every
  /// Horner step exactly twice exp2_poly's), times 2^(n - 1) built by one shift of the sum's
  /// bits ((n + 126) << 23: the zero pattern for n = -126). 10 operations against exp_fast's 12
  /// (no vcvtps2dq / vpaddd); relative error that of exp2_poly (1.9e-7).
  static GRPO_FORCEINLINE vf exp2_floor(vf u) noexcept {
    const vf shift = set1(12583038.0f);  // 1.5 * 2^23 + 126
    const vf y = _mm256_add_ps(u, shift);
    const vf f = _mm256_sub_ps(u, _mm256_sub_ps(y, shift));
    vf p = _mm256_fmadd_ps(set1(2.6529449969530106e-3f), f, set1(1.9343025982379913e-2f));
    p = _mm256_fmadd_ps(p, f, set1(1.1101467162370682e-1f));
    p = _mm256_fmadd_ps(p, f, set1(4.8044484853744507e-1f));
    p = _mm256_fmadd_ps(p, f, set1(1.3862940073013306f));
    p = _mm256_fmadd_ps(p, f, set1(2.0f));
    return _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(y), 23)));
  }

  /// e^x with the libm edges (e^-inf = 0, +inf above 88.7, NaN -> NaN, exactly 0 below -103.3),
  /// subnormal results rounded once: 2^n applied as 2^(n - h) 2^h, h = trunc(n / 2), both
  /// factors normal for n in [-150, 128].
  static GRPO_FORCEINLINE vf exp_full(vf x) noexcept {
    const vf xc = _mm256_min_ps(_mm256_max_ps(x, set1(-104.0f)), set1(89.0f));  // NaN -> -104
    const vf n = round(_mm256_mul_ps(xc, set1(1.44269504088896341f)));
    vf r = _mm256_fnmadd_ps(n, set1(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    vf y = _mm256_fmadd_ps(set1(1.9875691500e-4f), r, set1(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, set1(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, set1(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, set1(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, set1(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, r, set1(1.0f));
    y = _mm256_fmadd_ps(y, r, set1(1.0f));
    const vf h = _mm256_round_ps(_mm256_mul_ps(n, set1(0.5f)), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const vf e = _mm256_mul_ps(_mm256_mul_ps(y, pow2i(_mm256_sub_ps(n, h))), pow2i(h));
    return select(is_nan(x), x, e);
  }

  /// log x (avx512::log's polynomial and edges): positive normal or subnormal x (subnormals are
  /// rescaled by 2^23 first), 0 -> -inf, +inf -> +inf, negative or NaN -> NaN. < 2 ulp.
  static GRPO_FORCEINLINE vf log(vf x) noexcept {
    const vf tiny = set1(1.17549435e-38f);  // FLT_MIN
    const vf sub = _mm256_cmp_ps(x, tiny, _CMP_LT_OQ);
    const vf xs = _mm256_blendv_ps(x, _mm256_mul_ps(x, set1(8388608.0f)), sub);  // 2^23
    const __m256i b = _mm256_castps_si256(xs);
    vf e = _mm256_cvtepi32_ps(
        _mm256_sub_epi32(_mm256_srli_epi32(b, 23), _mm256_set1_epi32(127)));
    e = _mm256_sub_ps(e, _mm256_and_ps(sub, set1(23.0f)));
    vf m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(b, _mm256_set1_epi32(0x007fffff)),
                                               _mm256_set1_epi32(0x3f800000)));  // [1, 2)
    const vf hi = _mm256_cmp_ps(m, set1(1.41421356f), _CMP_GT_OQ);
    m = _mm256_blendv_ps(m, _mm256_mul_ps(m, set1(0.5f)), hi);
    e = _mm256_add_ps(e, _mm256_and_ps(hi, set1(1.0f)));
    vf r = log_poly(_mm256_sub_ps(m, set1(1.0f)), e);
    const vf zero = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_EQ_OQ);
    const vf pinf = _mm256_cmp_ps(x, set1(__builtin_inff()), _CMP_EQ_OQ);
    const vf bad = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NGE_UQ);  // x < 0 or NaN
    r = _mm256_blendv_ps(r, set1(-__builtin_inff()), zero);
    r = _mm256_blendv_ps(r, x, pinf);
    return _mm256_blendv_ps(r, set1(__builtin_nanf("")), bad);
  }

  static GRPO_FORCEINLINE float hsum(vf v) noexcept {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static GRPO_FORCEINLINE float hmax(vf v) noexcept {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  // ----- loads and stores --------------------------------------------------------------------
  static GRPO_FORCEINLINE vf load(const float* p) noexcept { return _mm256_loadu_ps(p); }
  /// 8 bf16 bit patterns -> float: each shifted into the upper half (exact).
  static GRPO_FORCEINLINE vf load(const bfloat16* p) noexcept {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  /// 8 fp16 bit patterns -> float (F16C vcvtph2ps: exact for every pattern).
  static GRPO_FORCEINLINE vf load(const float16* p) noexcept {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static GRPO_FORCEINLINE vf load_bf16(const void* p) noexcept {
    return load(static_cast<const bfloat16*>(p));
  }
  static GRPO_FORCEINLINE vf load_fp16(const void* p) noexcept {
    return load(static_cast<const float16*>(p));
  }
  /// 16 elements at p widened into a and b in a fixed lane order that is NOT memory order (a
  /// permutation of the 16; for sums and maxima, which ignore order). bf16: one vpunpck{l,h}wd
  /// with zero per 8 (the pattern lands in the upper half directly), against a zero-extension and
  /// a shift for load(); a: elements 0-3, 8-11, b: 4-7, 12-15.
  static GRPO_FORCEINLINE void load2_unordered(const float* p, vf& a, vf& b) noexcept {
    a = load(p);
    b = load(p + 8);
  }
  static GRPO_FORCEINLINE void load2_unordered(const bfloat16* p, vf& a, vf& b) noexcept {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    a = _mm256_castsi256_ps(_mm256_unpacklo_epi16(_mm256_setzero_si256(), v));
    b = _mm256_castsi256_ps(_mm256_unpackhi_epi16(_mm256_setzero_si256(), v));
  }
  static GRPO_FORCEINLINE void load2_unordered(const float16* p, vf& a, vf& b) noexcept {
    a = load(p);
    b = load(p + 8);
  }

  // ----- 16-bit patterns (the block maximum of bf16 / fp16 rows) -----------------------------
  using vi16 = __m256i;  ///< 16 x int16
  static constexpr int lanes16 = 16;
  /// The 16 bit patterns at p (bf16 / fp16) as signed 16-bit integers.
  static GRPO_FORCEINLINE vi16 load_bits16(const void* p) noexcept {
    return _mm256_loadu_si256(static_cast<const __m256i*>(p));
  }
  static GRPO_FORCEINLINE vi16 set1_i16(std::int16_t v) noexcept { return _mm256_set1_epi16(v); }
  static GRPO_FORCEINLINE vi16 max_i16(vi16 a, vi16 b) noexcept { return _mm256_max_epi16(a, b); }
  static GRPO_FORCEINLINE vi16 min_i16(vi16 a, vi16 b) noexcept { return _mm256_min_epi16(a, b); }
  static GRPO_FORCEINLINE std::int16_t hmax_i16(vi16 v) noexcept {
    alignas(32) std::int16_t b[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(b), v);
    std::int16_t m = b[0];
    for (int k = 1; k < 16; ++k) m = b[k] > m ? b[k] : m;
    return m;
  }
  static GRPO_FORCEINLINE std::int16_t hmin_i16(vi16 v) noexcept {
    alignas(32) std::int16_t b[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(b), v);
    std::int16_t m = b[0];
    for (int k = 1; k < 16; ++k) m = b[k] < m ? b[k] : m;
    return m;
  }

  /// The n < 8 elements at p widened, the other lanes `fill` (no read past p + n).
  static GRPO_FORCEINLINE vf load_tail(const float* p, std::ptrdiff_t n, float fill = 0.0f) noexcept {
    const mask m = first(n);
    return select(m, _mm256_maskload_ps(p, m), set1(fill));
  }
  template <class H>
  static GRPO_FORCEINLINE vf load_tail(const H* p, std::ptrdiff_t n, float fill = 0.0f) noexcept {
    alignas(16) std::uint16_t b[8] = {};
    std::memcpy(b, p, static_cast<std::size_t>(n) * sizeof(H));
    return select(first(n), load(reinterpret_cast<const H*>(b)), set1(fill));
  }

  /// float -> 8 bf16 bit patterns in the low 128 bits, grpo::bfloat16's rounding (nearest even,
  /// NaN kept NaN and quiet, subnormals rounded, not flushed).
  static GRPO_FORCEINLINE __m128i to_bf16(vf v) noexcept {
    const __m256i b = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(b, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
    r = _mm256_srli_epi32(r, 16);
    const __m256i q = _mm256_or_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(0x40));
    r = _mm256_blendv_epi8(r, q, is_nan(v));
    // 8 x 32-bit lanes holding values <= 0xffff -> 8 x 16 bits (packus works per 128-bit half).
    const __m256i p = _mm256_packus_epi32(r, r);
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(p, 0x08));
  }
  static GRPO_FORCEINLINE __m128i to_fp16(vf v) noexcept {
    return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static GRPO_FORCEINLINE void store_bf16(void* p, vf v) noexcept {
    _mm_storeu_si128(static_cast<__m128i*>(p), to_bf16(v));
  }
  static GRPO_FORCEINLINE void store_fp16(void* p, vf v) noexcept {
    _mm_storeu_si128(static_cast<__m128i*>(p), to_fp16(v));
  }
  static GRPO_FORCEINLINE void store(float* p, vf v) noexcept { _mm256_storeu_ps(p, v); }
  static GRPO_FORCEINLINE void store(bfloat16* p, vf v) noexcept { store_bf16(p, v); }
  static GRPO_FORCEINLINE void store(float16* p, vf v) noexcept { store_fp16(p, v); }
  /// The first n < 8 lanes narrowed into storage at p (nothing written past p + n).
  static GRPO_FORCEINLINE void store_tail(float* p, vf v, std::ptrdiff_t n) noexcept {
    _mm256_maskstore_ps(p, first(n), v);
  }
  static GRPO_FORCEINLINE void store_tail(bfloat16* p, vf v, std::ptrdiff_t n) noexcept {
    alignas(16) std::uint16_t b[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(b), to_bf16(v));
    std::memcpy(static_cast<void*>(p), b, static_cast<std::size_t>(n) * 2);
  }
  static GRPO_FORCEINLINE void store_tail(float16* p, vf v, std::ptrdiff_t n) noexcept {
    alignas(16) std::uint16_t b[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(b), to_fp16(v));
    std::memcpy(static_cast<void*>(p), b, static_cast<std::size_t>(n) * 2);
  }
  /// Non-temporal stores of 8 values (p aligned to 8 elements); see avx512::stream.
  static GRPO_FORCEINLINE void stream(float* p, vf v) noexcept { _mm256_stream_ps(p, v); }
  static GRPO_FORCEINLINE void stream(bfloat16* p, vf v) noexcept {
    _mm_stream_si128(reinterpret_cast<__m128i*>(p), to_bf16(v));
  }
  static GRPO_FORCEINLINE void stream(float16* p, vf v) noexcept {
    _mm_stream_si128(reinterpret_cast<__m128i*>(p), to_fp16(v));
  }
  /// Non-temporal stores of the 16 values of a then b (p aligned to 16 elements), for lanes that
  /// are not NaN (a NaN lane is outside the contract: it may be written as another pattern).
  /// Every other value is narrowed exactly as store() narrows it (bitwise); bf16 rounds both
  /// packets without stream()'s NaN repair and narrows them with one pack and one permute into
  /// one 32-byte store: 12 operations for 16 values against 22.
  static GRPO_FORCEINLINE void stream2_nonan(float* p, vf a, vf b) noexcept {
    _mm256_stream_ps(p, a);
    _mm256_stream_ps(p + 8, b);
  }
  static GRPO_FORCEINLINE void stream2_nonan(bfloat16* p, vf a, vf b) noexcept {
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
    const auto rnd = [&](vf v) noexcept {  // nearest even: (x + 0x7fff + lsb) >> 16
      const __m256i x = _mm256_castps_si256(v);
      const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), one);
      return _mm256_srli_epi32(_mm256_add_epi32(x, _mm256_add_epi32(bias, lsb)), 16);
    };
    // packus works per 128-bit half: quadwords [a0-3, b0-3, a4-7, b4-7] -> order 0, 2, 1, 3.
    const __m256i r = _mm256_permute4x64_epi64(_mm256_packus_epi32(rnd(a), rnd(b)), 0xD8);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), r);
  }
  static GRPO_FORCEINLINE void stream2_nonan(float16* p, vf a, vf b) noexcept {
    stream(p, a);
    stream(p + 8, b);
  }
  static GRPO_FORCEINLINE void sfence() noexcept { _mm_sfence(); }
  static GRPO_FORCEINLINE void prefetch(const void* p) noexcept {
    _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
  }

  // ----- polynomial cores (avx512's coefficients) ---------------------------------------------
  static GRPO_FORCEINLINE vf exp2_poly(vf f) noexcept {
    vf y = _mm256_fmadd_ps(set1(1.3264724984765053e-3f), f, set1(9.671512991189957e-3f));
    y = _mm256_fmadd_ps(y, f, set1(5.550733581185341e-2f));
    y = _mm256_fmadd_ps(y, f, set1(2.4022242426872253e-1f));
    y = _mm256_fmadd_ps(y, f, set1(6.931470036506653e-1f));
    return _mm256_fmadd_ps(y, f, set1(1.0f));
  }
  static GRPO_FORCEINLINE vf log_poly(vf m, vf e) noexcept {
    const vf z = _mm256_mul_ps(m, m);
    vf y = _mm256_fmadd_ps(set1(7.0376836292e-2f), m, set1(-1.1514610310e-1f));
    y = _mm256_fmadd_ps(y, m, set1(1.1676998740e-1f));
    y = _mm256_fmadd_ps(y, m, set1(-1.2420140846e-1f));
    y = _mm256_fmadd_ps(y, m, set1(1.4249322787e-1f));
    y = _mm256_fmadd_ps(y, m, set1(-1.6668057665e-1f));
    y = _mm256_fmadd_ps(y, m, set1(2.0000714765e-1f));
    y = _mm256_fmadd_ps(y, m, set1(-2.4999993993e-1f));
    y = _mm256_fmadd_ps(y, m, set1(3.3333331174e-1f));
    y = _mm256_mul_ps(_mm256_mul_ps(y, m), z);
    y = _mm256_fmadd_ps(e, set1(-2.12194440e-4f), y);
    y = _mm256_fmadd_ps(set1(-0.5f), z, y);
    const vf r = _mm256_add_ps(m, y);
    return _mm256_fmadd_ps(e, set1(0.693359375f), r);
  }
};

}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::simd
GRPO_END_TARGET

#else
#define GRPO_SIMD_HAS_AVX2_PACKET 0
#endif

// SPDX-License-Identifier: Apache-2.0
/// @file packet.hpp
/// @brief The NEON packet (4 floats in a float32x4_t; masks as uint32x4_t, all-ones lanes): the
///        API of simd::avx2 / simd::avx512 (arch/avx2/packet.hpp) with the same names and
///        contracts, so one kernel template over an arch tag `A` compiles for aarch64 too. FMA
///        (fmla / fmls) for the polynomials, fcvtl / fcvtn for fp16, bf16 by integer shifts.
///
/// Advanced SIMD is part of every AArch64 CPU, so this packet is compiled in every aarch64
/// translation unit and selected without a run-time check (grpo::best_isa() == isa::neon); SVE is
/// not used. The maths is avx2's operation for operation (same reduction constants, same
/// polynomials, fused multiply-adds in the same places, round-to-nearest-even in the same
/// places), so exp / exp_fast / exp_full / log return the AVX2 packet's bits for the same input.
///
/// What NEON spells differently: x86 max / min return their second operand when either is NaN
/// (the kernels rely on max(floor, NaN) = NaN and max(NaN, x) = x in block maxima); fmax / fmin
/// propagate NaN, so max / min are a compare and a bit select here. 2^n is built in the exponent
/// field as on AVX2. Masked tails go through a small stack copy. There is no non-temporal vector
/// store intrinsic (stnp has no ACLE spelling and is only a hint on most cores): `stream` is a
/// plain store and `sfence` a no-op, which keeps every value and ordering the kernels need.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/half.hpp>
#include <grpo/core/isa.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>

#if GRPO_ARCH_AARCH64 && defined(__ARM_NEON)
#define GRPO_SIMD_HAS_NEON_PACKET 1
#include <arm_neon.h>

namespace grpo::simd {
inline namespace GRPO_ISA_ABI {

/// The NEON arch tag: every member is a static function on 4-float packets.
struct neon {
  using vf = float32x4_t;
  using mask = uint32x4_t;  ///< all-ones / all-zeros 32-bit lanes
  static constexpr int lanes = 4;
  static constexpr isa level = isa::neon;

  // ----- arithmetic --------------------------------------------------------------------------
  static GRPO_FORCEINLINE vf set1(float v) noexcept { return vdupq_n_f32(v); }
  static GRPO_FORCEINLINE vf zero() noexcept { return vdupq_n_f32(0.0f); }
  static GRPO_FORCEINLINE vf add(vf a, vf b) noexcept { return vaddq_f32(a, b); }
  static GRPO_FORCEINLINE vf sub(vf a, vf b) noexcept { return vsubq_f32(a, b); }
  static GRPO_FORCEINLINE vf mul(vf a, vf b) noexcept { return vmulq_f32(a, b); }
  /// a b + c and a b - c, one rounding each (fmla; fmla with -c).
  static GRPO_FORCEINLINE vf fmadd(vf a, vf b, vf c) noexcept { return vfmaq_f32(c, a, b); }
  static GRPO_FORCEINLINE vf fmsub(vf a, vf b, vf c) noexcept {
    return vfmaq_f32(vnegq_f32(c), a, b);
  }
  /// c - a b, one rounding (fmls): _mm256_fnmadd_ps.
  static GRPO_FORCEINLINE vf fnmadd(vf a, vf b, vf c) noexcept { return vfmsq_f32(c, a, b); }
  static GRPO_FORCEINLINE vf div(vf a, vf b) noexcept { return vdivq_f32(a, b); }
  /// x86 semantics: a NaN lane in either operand returns b (as avx2::max / min).
  static GRPO_FORCEINLINE vf max(vf a, vf b) noexcept { return vbslq_f32(vcgtq_f32(a, b), a, b); }
  static GRPO_FORCEINLINE vf min(vf a, vf b) noexcept { return vbslq_f32(vcltq_f32(a, b), a, b); }

  // ----- masks -------------------------------------------------------------------------------
  /// !(a <= b): true where a > b or either is NaN (_CMP_NLE_UQ).
  static GRPO_FORCEINLINE mask cmp_nle(vf a, vf b) noexcept { return vmvnq_u32(vcleq_f32(a, b)); }
  static GRPO_FORCEINLINE mask cmp_eq(vf a, vf b) noexcept { return vceqq_f32(a, b); }
  static GRPO_FORCEINLINE mask cmp_gt(vf a, vf b) noexcept { return vcgtq_f32(a, b); }
  static GRPO_FORCEINLINE mask is_nan(vf a) noexcept { return vmvnq_u32(vceqq_f32(a, a)); }
  static GRPO_FORCEINLINE vf select(mask m, vf a, vf b) noexcept { return vbslq_f32(m, a, b); }
  static GRPO_FORCEINLINE vf keep(mask m, vf a) noexcept {
    return vreinterpretq_f32_u32(vandq_u32(m, vreinterpretq_u32_f32(a)));
  }
  static GRPO_FORCEINLINE int count(mask m) noexcept {
    return static_cast<int>(vaddvq_u32(vshrq_n_u32(m, 31)));
  }
  /// The first n lanes (0 <= n <= 4).
  static GRPO_FORCEINLINE mask first(std::ptrdiff_t n) noexcept {
    static constexpr std::int32_t iota[4] = {0, 1, 2, 3};
    return vcltq_s32(vld1q_s32(iota), vdupq_n_s32(static_cast<std::int32_t>(n)));
  }

  // ----- maths -------------------------------------------------------------------------------
  /// 2^n for integral float n in [-126, 127] by building the exponent field; n = 128 gives
  /// +inf. Other n are outside the contract.
  static GRPO_FORCEINLINE vf pow2i(vf n) noexcept {
    const int32x4_t k = vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127));
    return vreinterpretq_f32_s32(vshlq_n_s32(k, 23));
  }
  /// Round to nearest, ties to even (frintn: _MM_FROUND_TO_NEAREST_INT).
  static GRPO_FORCEINLINE vf round(vf x) noexcept { return vrndnq_f32(x); }

  /// e^x for x in [-87.3, 88.3] (NaN propagates): avx2::exp's reduction and polynomial. < 2 ulp.
  /// x outside the range is outside the contract (use exp_full).
  static GRPO_FORCEINLINE vf exp(vf x) noexcept {
    const vf n = round(vmulq_f32(x, set1(1.44269504088896341f)));
    return vmulq_f32(exp_poly(exp_reduce(n, x)), pow2i(n));
  }

  /// e^x in 8 vector operations plus the 2^n build (avx512::exp_fast's polynomial; relative
  /// error <= 3e-7 + 1e-7 |x|, e^0 = 1 exactly), same range as exp.
  static GRPO_FORCEINLINE vf exp_fast(vf x) noexcept {
    const vf t = vmulq_f32(x, set1(1.44269504088896341f));
    const vf n = round(t);
    const vf f = vsubq_f32(t, n);  // exact
    return vmulq_f32(exp2_poly(f), pow2i(n));
  }

  /// 2^u for u in [-126, 127] (callers clamp below at -126; NaN propagates), exactly 0 where u
  /// rounds to -126: avx2::exp2_floor, operation for operation (n = round(u) through the sum
  /// u + 1.5 * 2^23 + 126, whose low bits are n + 126; 2^f by exp2_poly's doubled coefficients;
  /// times 2^(n - 1) from one shift of the sum's bits).
  static GRPO_FORCEINLINE vf exp2_floor(vf u) noexcept {
    const vf shift = set1(12583038.0f);  // 1.5 * 2^23 + 126
    const vf y = vaddq_f32(u, shift);
    const vf f = vsubq_f32(u, vsubq_f32(y, shift));
    vf p = vfmaq_f32(set1(1.9343025982379913e-2f), set1(2.6529449969530106e-3f), f);
    p = vfmaq_f32(set1(1.1101467162370682e-1f), p, f);
    p = vfmaq_f32(set1(4.8044484853744507e-1f), p, f);
    p = vfmaq_f32(set1(1.3862940073013306f), p, f);
    p = vfmaq_f32(set1(2.0f), p, f);
    return vmulq_f32(p, vreinterpretq_f32_u32(vshlq_n_u32(vreinterpretq_u32_f32(y), 23)));
  }

  /// e^x with the libm edges (e^-inf = 0, +inf above 88.7, NaN -> NaN, exactly 0 below -103.3),
  /// subnormal results rounded once: 2^n applied as 2^(n - h) 2^h, h = trunc(n / 2).
  static GRPO_FORCEINLINE vf exp_full(vf x) noexcept {
    const vf xc = min(max(x, set1(-104.0f)), set1(89.0f));  // NaN -> -104
    const vf n = round(vmulq_f32(xc, set1(1.44269504088896341f)));
    const vf y = exp_poly(exp_reduce(n, xc));
    const vf h = vrndq_f32(vmulq_f32(n, set1(0.5f)));  // toward zero
    const vf e = vmulq_f32(vmulq_f32(y, pow2i(vsubq_f32(n, h))), pow2i(h));
    return select(is_nan(x), x, e);
  }

  /// log x (avx2::log's polynomial and edges): positive normal or subnormal x (subnormals are
  /// rescaled by 2^23 first), 0 -> -inf, +inf -> +inf, negative or NaN -> NaN. < 2 ulp.
  static GRPO_FORCEINLINE vf log(vf x) noexcept {
    const mask sub = vcltq_f32(x, set1(1.17549435e-38f));  // FLT_MIN
    const vf xs = vbslq_f32(sub, vmulq_f32(x, set1(8388608.0f)), x);  // 2^23
    const uint32x4_t b = vreinterpretq_u32_f32(xs);
    vf e = vcvtq_f32_s32(
        vsubq_s32(vreinterpretq_s32_u32(vshrq_n_u32(b, 23)), vdupq_n_s32(127)));
    e = vsubq_f32(e, keep(sub, set1(23.0f)));
    vf m = vreinterpretq_f32_u32(
        vorrq_u32(vandq_u32(b, vdupq_n_u32(0x007fffffu)), vdupq_n_u32(0x3f800000u)));  // [1, 2)
    const mask hi = vcgtq_f32(m, set1(1.41421356f));
    m = vbslq_f32(hi, vmulq_f32(m, set1(0.5f)), m);
    e = vaddq_f32(e, keep(hi, set1(1.0f)));
    vf r = log_poly(vsubq_f32(m, set1(1.0f)), e);
    const mask bad = vmvnq_u32(vcgeq_f32(x, zero()));  // x < 0 or NaN
    r = vbslq_f32(vceqq_f32(x, zero()), set1(-__builtin_inff()), r);
    r = vbslq_f32(vceqq_f32(x, set1(__builtin_inff())), x, r);
    return vbslq_f32(bad, set1(__builtin_nanf("")), r);
  }

  /// Pairwise sums ((v0 + v1) + (v2 + v3)) and maximum (fmaxp: NaN propagates).
  static GRPO_FORCEINLINE float hsum(vf v) noexcept { return vaddvq_f32(v); }
  static GRPO_FORCEINLINE float hmax(vf v) noexcept { return vmaxvq_f32(v); }

  // ----- loads and stores --------------------------------------------------------------------
  static GRPO_FORCEINLINE vf load(const float* p) noexcept { return vld1q_f32(p); }
  /// 4 bf16 bit patterns -> float: each shifted into the upper half (exact).
  static GRPO_FORCEINLINE vf load(const bfloat16* p) noexcept {
    const uint16x4_t h = vld1_u16(reinterpret_cast<const std::uint16_t*>(p));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
  }
  /// 4 fp16 bit patterns -> float (fcvtl: exact for every pattern; signalling NaNs are quieted).
  static GRPO_FORCEINLINE vf load(const float16* p) noexcept {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const std::uint16_t*>(p))));
  }
  static GRPO_FORCEINLINE vf load_bf16(const void* p) noexcept {
    return load(static_cast<const bfloat16*>(p));
  }
  static GRPO_FORCEINLINE vf load_fp16(const void* p) noexcept {
    return load(static_cast<const float16*>(p));
  }
  /// 8 elements at p widened into a and b in a fixed lane order (avx2::load2_unordered's
  /// contract: a permutation, for sums and maxima). bf16: zip with zero puts each pattern in the
  /// upper half of a 32-bit lane; here a holds elements 0-3 and b 4-7.
  static GRPO_FORCEINLINE void load2_unordered(const float* p, vf& a, vf& b) noexcept {
    a = load(p);
    b = load(p + 4);
  }
  static GRPO_FORCEINLINE void load2_unordered(const bfloat16* p, vf& a, vf& b) noexcept {
    const uint16x8_t v = vld1q_u16(reinterpret_cast<const std::uint16_t*>(p));
    a = vreinterpretq_f32_u16(vzip1q_u16(vdupq_n_u16(0), v));
    b = vreinterpretq_f32_u16(vzip2q_u16(vdupq_n_u16(0), v));
  }
  static GRPO_FORCEINLINE void load2_unordered(const float16* p, vf& a, vf& b) noexcept {
    a = load(p);
    b = load(p + 4);
  }

  // ----- 16-bit patterns (the block maximum of bf16 / fp16 rows) -----------------------------
  using vi16 = int16x8_t;  ///< 8 x int16 (2 lanes per float lane, as on AVX2)
  static constexpr int lanes16 = 8;
  /// The 8 bit patterns at p (bf16 / fp16) as signed 16-bit integers.
  static GRPO_FORCEINLINE vi16 load_bits16(const void* p) noexcept {
    return vld1q_s16(static_cast<const std::int16_t*>(p));
  }
  static GRPO_FORCEINLINE vi16 set1_i16(std::int16_t v) noexcept { return vdupq_n_s16(v); }
  static GRPO_FORCEINLINE vi16 max_i16(vi16 a, vi16 b) noexcept { return vmaxq_s16(a, b); }
  static GRPO_FORCEINLINE vi16 min_i16(vi16 a, vi16 b) noexcept { return vminq_s16(a, b); }
  static GRPO_FORCEINLINE std::int16_t hmax_i16(vi16 v) noexcept { return vmaxvq_s16(v); }
  static GRPO_FORCEINLINE std::int16_t hmin_i16(vi16 v) noexcept { return vminvq_s16(v); }

  /// The n < 4 elements at p widened, the other lanes `fill` (no read past p + n).
  static GRPO_FORCEINLINE vf load_tail(const float* p, std::ptrdiff_t n, float fill = 0.0f) noexcept {
    float b[4] = {fill, fill, fill, fill};
    std::memcpy(b, p, static_cast<std::size_t>(n) * sizeof(float));
    return vld1q_f32(b);
  }
  template <class H>
  static GRPO_FORCEINLINE vf load_tail(const H* p, std::ptrdiff_t n, float fill = 0.0f) noexcept {
    alignas(8) std::uint16_t b[4] = {};
    std::memcpy(b, p, static_cast<std::size_t>(n) * sizeof(H));
    return select(first(n), load(reinterpret_cast<const H*>(b)), set1(fill));
  }

  /// float -> 4 bf16 bit patterns, grpo::bfloat16's rounding (nearest even, NaN kept NaN and
  /// quiet, subnormals rounded, not flushed).
  static GRPO_FORCEINLINE uint16x4_t to_bf16(vf v) noexcept {
    const uint32x4_t b = vreinterpretq_u32_f32(v);
    const uint32x4_t lsb = vandq_u32(vshrq_n_u32(b, 16), vdupq_n_u32(1));
    const uint32x4_t r = vshrq_n_u32(vaddq_u32(b, vaddq_u32(vdupq_n_u32(0x7fffu), lsb)), 16);
    const uint32x4_t q = vorrq_u32(vshrq_n_u32(b, 16), vdupq_n_u32(0x40));
    return vmovn_u32(vbslq_u32(is_nan(v), q, r));
  }
  /// float -> 4 fp16 bit patterns (fcvtn: round to nearest even under the default FPCR).
  static GRPO_FORCEINLINE uint16x4_t to_fp16(vf v) noexcept {
    return vreinterpret_u16_f16(vcvt_f16_f32(v));
  }
  static GRPO_FORCEINLINE void store_bf16(void* p, vf v) noexcept {
    vst1_u16(static_cast<std::uint16_t*>(p), to_bf16(v));
  }
  static GRPO_FORCEINLINE void store_fp16(void* p, vf v) noexcept {
    vst1_u16(static_cast<std::uint16_t*>(p), to_fp16(v));
  }
  static GRPO_FORCEINLINE void store(float* p, vf v) noexcept { vst1q_f32(p, v); }
  static GRPO_FORCEINLINE void store(bfloat16* p, vf v) noexcept { store_bf16(p, v); }
  static GRPO_FORCEINLINE void store(float16* p, vf v) noexcept { store_fp16(p, v); }
  /// The first n < 4 lanes narrowed into storage at p (nothing written past p + n).
  static GRPO_FORCEINLINE void store_tail(float* p, vf v, std::ptrdiff_t n) noexcept {
    float b[4];
    vst1q_f32(b, v);
    std::memcpy(p, b, static_cast<std::size_t>(n) * sizeof(float));
  }
  static GRPO_FORCEINLINE void store_tail(bfloat16* p, vf v, std::ptrdiff_t n) noexcept {
    std::uint16_t b[4];
    vst1_u16(b, to_bf16(v));
    std::memcpy(static_cast<void*>(p), b, static_cast<std::size_t>(n) * 2);
  }
  static GRPO_FORCEINLINE void store_tail(float16* p, vf v, std::ptrdiff_t n) noexcept {
    std::uint16_t b[4];
    vst1_u16(b, to_fp16(v));
    std::memcpy(static_cast<void*>(p), b, static_cast<std::size_t>(n) * 2);
  }
  /// The kernels' non-temporal stores: plain stores here (see the file comment).
  static GRPO_FORCEINLINE void stream(float* p, vf v) noexcept { store(p, v); }
  static GRPO_FORCEINLINE void stream(bfloat16* p, vf v) noexcept { store(p, v); }
  static GRPO_FORCEINLINE void stream(float16* p, vf v) noexcept { store(p, v); }
  /// The 8 values of a then b (p aligned to 8 elements; lanes not NaN): two stream()s here.
  template <class G>
  static GRPO_FORCEINLINE void stream2_nonan(G* p, vf a, vf b) noexcept {
    stream(p, a);
    stream(p + 4, b);
  }
  static GRPO_FORCEINLINE void sfence() noexcept {}
  static GRPO_FORCEINLINE void prefetch(const void* p) noexcept { __builtin_prefetch(p, 0, 3); }

  // ----- polynomial cores (avx2's / avx512's coefficients) ------------------------------------
  /// r = x - n ln 2 in two steps (0.693359375 has 9 bits: the first product is exact).
  static GRPO_FORCEINLINE vf exp_reduce(vf n, vf x) noexcept {
    const vf r = vfmsq_f32(x, n, set1(0.693359375f));
    return vfmsq_f32(r, n, set1(-2.12194440e-4f));
  }
  static GRPO_FORCEINLINE vf exp_poly(vf r) noexcept {
    vf y = vfmaq_f32(set1(1.3981999507e-3f), set1(1.9875691500e-4f), r);
    y = vfmaq_f32(set1(8.3334519073e-3f), y, r);
    y = vfmaq_f32(set1(4.1665795894e-2f), y, r);
    y = vfmaq_f32(set1(1.6666665459e-1f), y, r);
    y = vfmaq_f32(set1(5.0000001201e-1f), y, r);
    y = vfmaq_f32(set1(1.0f), y, r);
    return vfmaq_f32(set1(1.0f), y, r);
  }
  static GRPO_FORCEINLINE vf exp2_poly(vf f) noexcept {
    vf y = vfmaq_f32(set1(9.671512991189957e-3f), set1(1.3264724984765053e-3f), f);
    y = vfmaq_f32(set1(5.550733581185341e-2f), y, f);
    y = vfmaq_f32(set1(2.4022242426872253e-1f), y, f);
    y = vfmaq_f32(set1(6.931470036506653e-1f), y, f);
    return vfmaq_f32(set1(1.0f), y, f);
  }
  static GRPO_FORCEINLINE vf log_poly(vf m, vf e) noexcept {
    const vf z = vmulq_f32(m, m);
    vf y = vfmaq_f32(set1(-1.1514610310e-1f), set1(7.0376836292e-2f), m);
    y = vfmaq_f32(set1(1.1676998740e-1f), y, m);
    y = vfmaq_f32(set1(-1.2420140846e-1f), y, m);
    y = vfmaq_f32(set1(1.4249322787e-1f), y, m);
    y = vfmaq_f32(set1(-1.6668057665e-1f), y, m);
    y = vfmaq_f32(set1(2.0000714765e-1f), y, m);
    y = vfmaq_f32(set1(-2.4999993993e-1f), y, m);
    y = vfmaq_f32(set1(3.3333331174e-1f), y, m);
    y = vmulq_f32(vmulq_f32(y, m), z);
    y = vfmaq_f32(y, e, set1(-2.12194440e-4f));
    y = vfmaq_f32(y, set1(-0.5f), z);
    const vf r = vaddq_f32(m, y);
    return vfmaq_f32(r, e, set1(0.693359375f));
  }
};

}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::simd

#else
#define GRPO_SIMD_HAS_NEON_PACKET 0
#endif

// SPDX-License-Identifier: Apache-2.0
/// @file ops.hpp
/// @brief AVX-512 float mirrors of the token formulas of <grpo/detail/simd.hpp> for the
///        hand-written AVX-512 row kernels of the loss engine (token_row.hpp, sequence_row.hpp);
///        moved verbatim from detail/simd.hpp. Compiled where the TU targets AVX-512F + DQ
///        (GRPO_HAS_AVX512), in the TU's ABI namespace.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/isa.hpp>  // GRPO_ISA_ABI
#include <grpo/core/vmath512.hpp>
#include <grpo/detail/simd.hpp>
#include <grpo/ops/kl.hpp>
#include <grpo/ops/policy_loss.hpp>

#include <cstddef>
#include <type_traits>

namespace grpo::detail::simd {
inline namespace GRPO_ISA_ABI {

#if GRPO_HAS_AVX512
// ---------------------------------------------------------------------------------------------
// AVX-512 float mirrors for the hand-written fast-path row kernel (grpo/loss.hpp,
// detail::fast_v512_row_run). Same formulas, operand order and tie rules as the mirrors above
// (tests/grpo/test_loss_fastpath.cpp checks them lane by lane against the scalar ops, bitwise
// where no exp is involved), written with k-mask compares and masked moves so that a select is
// one instruction: vminps / vmaxps return their SECOND operand when a lane is NaN, which is
// exactly `a < b ? a : b` / `a > b ? a : b`, so clamps are two instructions that keep NaN.
namespace avx512 {

using vf = __m512;
using mk = __mmask16;

GRPO_FORCEINLINE vf set1(float v) noexcept {
  return _mm512_set1_ps(v);
}
/// e^x for x >= -104 up to overflow (x below -104 is raised to -104, whose e^x rounds to 0; a NaN
/// lane passes through: the constant is vmaxps' first operand): math::v512::exp_fast (8
/// operations, relative error <= 3e-7 + 1e-7 |x|; tests/grpo/test_loss_fastpath_avx512.cpp). The
/// loss kernel's two exps per step were its longest chains: the 12-operation Cody-Waite exp
/// (Estrin form) measured ~6-8 % slower on the whole kernel. +inf gives NaN (callers that need
/// e^+inf = +inf use exp).
GRPO_FORCEINLINE vf exp_lo(vf x) noexcept {
  return math::v512::exp_fast(_mm512_max_ps(set1(-104.0f), x));
}
/// e^x for any x: exp_lo with x also capped at 89 (e^x = +inf above 88.7, e^+inf = +inf, e^-inf
/// = 0, NaN -> NaN), for values that are stored for every lane (per-token loss outputs).
GRPO_FORCEINLINE vf exp(vf x) noexcept {
  return exp_lo(_mm512_min_ps(set1(89.0f), x));
}
/// clamp(x, lo, hi) = x < lo ? lo : (x > hi ? hi : x) for lo <= hi (ops::clamp_scalar):
/// vmaxps(lo, x) = lo > x ? lo : x, vminps(hi, y) = hi < y ? hi : y.
GRPO_FORCEINLINE vf clamp(vf x, vf lo, vf hi) noexcept {
  return _mm512_min_ps(hi, _mm512_max_ps(lo, x));
}
/// Lanes where ops::clamp_scalar_grad is 1 (lo <= x <= hi; false for NaN).
GRPO_FORCEINLINE mk clamp_in(vf x, vf lo, vf hi) noexcept {
  return _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ), x, hi, _CMP_LE_OQ);
}
/// Lane-wise -x (sign flip, exact).
GRPO_FORCEINLINE vf neg(vf x) noexcept {
  return _mm512_castsi512_ps(
      _mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32(static_cast<int>(0x80000000u))));
}

/// Uniform PPO clip parameters as registers (ops::ppo_clip_params<float>).
struct ppo_params {
  vf lo, hi, delta, dual;
  bool has_delta = false, has_dual = false;
  explicit ppo_params(const ops::ppo_clip_params<float>& p) noexcept
      : lo(set1(1.0f - p.eps_low)),
        hi(set1(1.0f + p.eps_high)),
        delta(set1(p.delta)),
        dual(set1(p.dual_c)),
        has_delta(p.delta > 0.0f),
        has_dual(p.dual_c > 0.0f) {}
};
struct value_grad {
  vf value, grad;
};
/// ops::ppo_clip_loss and ops::ppo_clip_loss_grad (as simd::ppo_clip): value and d/dr.
GRPO_FORCEINLINE value_grad ppo_clip(vf r, vf A, const ppo_params& p) noexcept {
  const vf nA = neg(A), zero = _mm512_setzero_ps();
  vf r1 = r, g1 = nA;
  if (p.has_delta) {
    const mk db = _mm512_cmp_ps_mask(r, p.delta, _CMP_GT_OQ);
    r1 = _mm512_mask_mov_ps(r, db, p.delta);
    g1 = _mm512_mask_mov_ps(nA, db, zero);
  }
  const vf l1 = _mm512_mul_ps(nA, r1);
  const vf l2 = _mm512_mul_ps(nA, clamp(r, p.lo, p.hi));
  // g2 = -A * clamp_grad(r) (a product, as the op: -A * 0 keeps the sign of -A)
  const vf g2 = _mm512_mul_ps(nA, _mm512_maskz_mov_ps(clamp_in(r, p.lo, p.hi), set1(1.0f)));
  vf l = _mm512_max_ps(l1, l2);  // l1 > l2 ? l1 : l2
  const mk g2w = _mm512_cmp_ps_mask(l2, l1, _CMP_GT_OQ);
  const mk tie = _mm512_cmp_ps_mask(l2, l1, _CMP_EQ_OQ);
  const vf half = set1(0.5f);  // 0.5 g1 + 0.5 g2, as the op (g1 + g2 may overflow)
  vf g = _mm512_mask_add_ps(g1, tie, _mm512_mul_ps(half, g1), _mm512_mul_ps(half, g2));
  g = _mm512_mask_mov_ps(g, g2w, g2);
  if (p.has_dual) {
    const mk ng = _mm512_cmp_ps_mask(A, zero, _CMP_LT_OQ);
    const vf lg = _mm512_mask_mov_ps(l1, g2w, l2);
    const vf l3 = _mm512_mul_ps(nA, p.dual);
    l = _mm512_mask_mov_ps(l, _mm512_mask_cmp_ps_mask(ng, l3, l, _CMP_LT_OQ), l3);
    const mk lt = _mm512_mask_cmp_ps_mask(ng, l3, lg, _CMP_LT_OQ);
    const mk eq = _mm512_mask_cmp_ps_mask(ng, l3, lg, _CMP_EQ_OQ);
    g = _mm512_mask_mul_ps(g, eq, set1(0.5f), g);
    g = _mm512_mask_mov_ps(g, lt, zero);
  }
  return {l, g};
}
/// Per-row constants of ppo_clip_row for a row-constant advantage A (no delta, no dual clip):
/// -A, -A * 0 (the op's gradient where the clip binds keeps the sign of -A) and the two tie values
/// 0.5 (g1 + g2) of the op with g2 = -A or -A * 0.
struct ppo_row {
  vf nA, zA, tie_in, tie_out;
  explicit ppo_row(float A) noexcept {
    const float na = -A, za = na * 0.0f;
    nA = set1(na);
    zA = set1(za);
    tie_in = set1(0.5f * na + 0.5f * na);
    tie_out = set1(0.5f * na + 0.5f * za);
  }
};
/// ppo_clip for a row-constant advantage without delta or dual clip, with the gradient's cases as
/// three masked moves of row constants (bitwise ppo_clip's result): g = -A unless the clipped term
/// wins (-A * 0 outside the clip range) or ties (tie_in / tie_out). In range <=> clamp(r) == r
/// (false for NaN, as clamp_scalar_grad).
GRPO_FORCEINLINE value_grad ppo_clip_row(vf r, const ppo_row& a, const ppo_params& p) noexcept {
  const vf c = clamp(r, p.lo, p.hi);
  const vf l1 = _mm512_mul_ps(a.nA, r), l2 = _mm512_mul_ps(a.nA, c);
  const mk in = _mm512_cmp_ps_mask(c, r, _CMP_EQ_OQ);
  const mk g2w = _mm512_cmp_ps_mask(l2, l1, _CMP_GT_OQ);
  const mk tie = _mm512_cmp_ps_mask(l2, l1, _CMP_EQ_OQ);
  vf g = _mm512_mask_mov_ps(a.nA, static_cast<mk>(tie & ~in), a.tie_out);
  g = _mm512_mask_mov_ps(g, static_cast<mk>(tie & in), a.tie_in);
  g = _mm512_mask_mov_ps(g, static_cast<mk>(g2w & ~in), a.zA);
  return {_mm512_max_ps(l1, l2), g};
}
/// ops::cispo_weight_cap: r > cap ? cap : r  (vminps(cap, r) = cap < r ? cap : r).
GRPO_FORCEINLINE vf cispo_weight_cap(vf r, vf cap) noexcept {
  return _mm512_min_ps(cap, r);
}
/// ops::sapo_loss / ops::sapo_loss_grad (as simd::sapo, one exp).
GRPO_FORCEINLINE value_grad sapo(vf r, vf A, vf tau_pos, vf tau_neg) noexcept {
  const vf one = set1(1.0f), zero = _mm512_setzero_ps();
  const vf tau = _mm512_mask_mov_ps(tau_neg, _mm512_cmp_ps_mask(A, zero, _CMP_GT_OQ), tau_pos);
  const vf z = _mm512_mul_ps(tau, _mm512_sub_ps(r, one));
  const mk nonneg = _mm512_cmp_ps_mask(z, zero, _CMP_GE_OQ);
  const vf e = avx512::exp(_mm512_mask_mov_ps(z, nonneg, neg(z)));
  const vf den = _mm512_add_ps(one, e);
  const vf s = _mm512_div_ps(_mm512_mask_mov_ps(e, nonneg, one), den);
  const vf v = _mm512_mul_ps(neg(_mm512_div_ps(_mm512_mul_ps(s, set1(4.0f)), tau)), A);
  const vf g =
      _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(set1(-4.0f), s), _mm512_sub_ps(one, s)), A);
  return {v, g};
}
/// ops::kl_params converted once for the loop (clamps in float, as simd::kl converts them).
struct kl_config {
  ops::kl_estimator estimator;
  float inner, outer;
  bool straight_through;
  explicit kl_config(const ops::kl_params& p) noexcept
      : estimator(p.estimator),
        inner(static_cast<float>(p.inner_clamp)),
        outer(static_cast<float>(p.outer_clamp)),
        straight_through(p.straight_through) {}
};
/// ops::kl_value_grad for a configured estimator (as simd::kl), lp current, lr reference.
GRPO_FORCEINLINE value_grad kl(const kl_config& p, vf lp, vf lr) noexcept {
  const vf zero = _mm512_setzero_ps(), one = set1(1.0f);
  value_grad r{zero, zero};
  switch (p.estimator) {
    case ops::kl_estimator::k1:
      r = {_mm512_sub_ps(lp, lr), one};
      break;
    case ops::kl_estimator::abs: {  // |d| = d < 0 ? -d : d; sgn(0) = 0
      const vf d = _mm512_sub_ps(lp, lr);
      const mk lt = _mm512_cmp_ps_mask(d, zero, _CMP_LT_OQ);
      const mk gt = _mm512_cmp_ps_mask(d, zero, _CMP_GT_OQ);
      r = {_mm512_mask_mov_ps(d, lt, neg(d)),
           _mm512_mask_mov_ps(_mm512_maskz_mov_ps(lt, set1(-1.0f)), gt, one)};
      break;
    }
    case ops::kl_estimator::k2: {
      const vf d = _mm512_sub_ps(lp, lr);
      r = {_mm512_mul_ps(_mm512_mul_ps(set1(0.5f), d), d), d};
      break;
    }
    case ops::kl_estimator::k3: {  // e^d - d - 1, d = lr - lp (inner clamp: flat outside)
      vf d = _mm512_sub_ps(lr, lp);
      const float inner = p.inner;
      mk flat = 0;
      if (inner > 0.0f) {
        const mk hi = _mm512_cmp_ps_mask(d, set1(inner), _CMP_GT_OQ);
        const mk lo = _mm512_cmp_ps_mask(d, set1(-inner), _CMP_LT_OQ);
        flat = static_cast<mk>(hi | lo);
        d = _mm512_mask_mov_ps(_mm512_mask_mov_ps(d, lo, set1(-inner)), hi, set1(inner));
      }
      const vf e = avx512::exp(d);
      r = {_mm512_sub_ps(_mm512_sub_ps(e, d), one),
           _mm512_maskz_sub_ps(static_cast<mk>(~flat), one, e)};
      break;
    }
  }
  const float c = p.outer;
  if (c > 0.0f) {  // outer clamp: flat (zero gradient) strictly outside [-c, c]
    const mk hi = _mm512_cmp_ps_mask(r.value, set1(c), _CMP_GT_OQ);
    const mk lo = _mm512_cmp_ps_mask(r.value, set1(-c), _CMP_LT_OQ);
    r.value = _mm512_mask_mov_ps(_mm512_mask_mov_ps(r.value, lo, set1(-c)), hi, set1(c));
    r.grad = _mm512_maskz_mov_ps(static_cast<mk>(~(hi | lo)), r.grad);
  }
  if (p.straight_through) r.grad = _mm512_sub_ps(lp, lr);
  return r;
}

}  // namespace avx512
#endif  // GRPO_HAS_AVX512

}  // namespace GRPO_ISA_ABI
}  // namespace grpo::detail::simd

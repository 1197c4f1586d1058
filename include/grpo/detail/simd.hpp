// SPDX-License-Identifier: Apache-2.0
/// @file simd.hpp
/// @brief Lane-generic building blocks of the vectorised token-level loss (grpo/loss.hpp fast
///        path): select / exp / load helpers for a scalar `float` / `double` or an xsimd batch, and
///        the few token formulas of include/grpo/ops/ that cannot be called on a batch as written.
///
/// Why this header exists. The ops are scalar `constexpr` functions whose branches are C++ `?:`
/// and `if` on `bool` and whose exponentials call grpo::math::exp (libm). Neither compiles for an
/// xsimd batch, and a libm call in a loop stops GCC's auto-vectoriser, so the token-level fast
/// path ran at one scalar double `exp` per token (~20 ns/token). Here every function is a template
/// over a LANE TYPE V: either a scalar (float / double: plain `?:` and math::exp, i.e. exactly the
/// ops) or `xsimd::batch<float|double>` (xsimd::select and xsimd::exp). One source text therefore
/// gives both the scalar tail / fallback and the vector body.
///
/// One source of maths: where an op is already lane-generic (kl_k1, kl_k2, their gradients,
/// kl_bias_corrected, weighted_pg_loss) it is CALLED with V. Where it is not (PPO clip value and
/// gradient, CISPO weights, SAPO sigmoid, abs / k3 KL, clamps, clip-metric predicates) the formula
/// below mirrors the op operation by operation, with the same operand order and the same tie rules,
/// so that the SCALAR instantiation is bitwise equal to the op (tests/grpo/test_loss_fastpath.cpp
/// checks every mirrored function against its op on grids that include the ties and the clamp
/// edges, in float and double). The batch instantiation differs only by xsimd::exp (<= 1-2 ulp
/// from libm), also checked there.
///
/// Without <xsimd/xsimd.hpp> (or with GRPO_NO_XSIMD defined, or under nvcc) only the scalar lane
/// type exists and the fast path runs the same code one token at a time (GRPO_HAS_XSIMD is 0).
/// The batch width is xsimd's default architecture of the translation unit (-march): TUs built for
/// different targets instantiate different kernels under one name, so a program should build every
/// TU that calls compute_loss_into with the same target flags.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/math.hpp>
#include <grpo/core/vmath512.hpp>
#include <grpo/ops/kl.hpp>
#include <grpo/ops/policy_loss.hpp>

#include <cstddef>
#include <type_traits>

// nvcc (host side of a .cu) takes the scalar form: the lane-generic ops are __host__ __device__,
// and nvcc rejects instantiating those with a vector type.
#if !defined(GRPO_NO_XSIMD) && !defined(__CUDACC__) && __has_include(<xsimd/xsimd.hpp>)
#include <xsimd/xsimd.hpp>
#define GRPO_HAS_XSIMD 1
#else
#define GRPO_HAS_XSIMD 0
#endif

namespace grpo::detail::simd {

// ---------------------------------------------------------------------------------------------
// Lane traits and helpers. Scalar overloads are exactly the C++ the ops use.

/// Lane type information: scalar type and number of lanes (1 for a plain float / double).
template <class V>
struct lane_traits {
  using scalar = V;
  using mask = bool;
  static constexpr std::size_t size = 1;
};

#if GRPO_HAS_XSIMD
template <class T, class A>
struct lane_traits<xsimd::batch<T, A>> {
  using scalar = T;
  using mask = xsimd::batch_bool<T, A>;
  static constexpr std::size_t size = xsimd::batch<T, A>::size;
};
/// The widest batch of C for the target this translation unit is compiled for.
template <class C>
using batch_of = xsimd::batch<C>;
#endif

template <class V>
using scalar_of = typename lane_traits<V>::scalar;
template <class V>
using mask_of = typename lane_traits<V>::mask;
template <class V>
inline constexpr bool is_scalar_lane = std::is_same_v<V, scalar_of<V>>;

/// c ? a : b per lane.
template <class V>
GRPO_FORCEINLINE V sel(const mask_of<V>& c, const V& a, const V& b) noexcept {
  if constexpr (is_scalar_lane<V>) {
    return c ? a : b;
  }
#if GRPO_HAS_XSIMD
  else {
    return xsimd::select(c, a, b);
  }
#endif
}
/// Lane-wise logical and / or / not (both operands already evaluated: no short circuit to lose).
template <class Mk>
GRPO_FORCEINLINE Mk band(const Mk& a, const Mk& b) noexcept {
  if constexpr (std::is_same_v<Mk, bool>) {
    return a && b;
  } else {
    return a & b;
  }
}
template <class Mk>
GRPO_FORCEINLINE Mk bor(const Mk& a, const Mk& b) noexcept {
  if constexpr (std::is_same_v<Mk, bool>) {
    return a || b;
  } else {
    return a | b;
  }
}
/// e^x: math::exp (libm, as the ops) for scalars, xsimd::exp for batches. (GCC 12 reports a false
/// -Wmaybe-uninitialized inside avx512fintrin.h's _mm512_undefined_* when xsimd's AVX-512 exp is
/// inlined; silenced here, at the only call site.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
template <class V>
GRPO_FORCEINLINE V vexp(const V& x) noexcept {
  if constexpr (is_scalar_lane<V>) {
    return math::exp(x);
  }
#if GRPO_HAS_XSIMD
  else {
    return xsimd::exp(x);
  }
#endif
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
/// Loads size lanes from p (unaligned).
template <class V>
GRPO_FORCEINLINE V load(const scalar_of<V>* p) noexcept {
  if constexpr (is_scalar_lane<V>) {
    return *p;
  } else {
    return V::load_unaligned(p);
  }
}
/// Stores size lanes to p (unaligned).
template <class V>
GRPO_FORCEINLINE void store(scalar_of<V>* p, const V& v) noexcept {
  if constexpr (is_scalar_lane<V>) {
    *p = v;
  } else {
    v.store_unaligned(p);
  }
}
/// Sum of the lanes (identity for a scalar): a pairwise tree over the stored lanes. (xsimd::hadd
/// is avoided: with GCC 12 its AVX-512 double kernel trips -Wuninitialized inside immintrin.h.)
template <class V>
GRPO_FORCEINLINE scalar_of<V> hsum(const V& v) noexcept {
  if constexpr (is_scalar_lane<V>) {
    return v;
  } else {
    constexpr std::size_t L = lane_traits<V>::size;
    scalar_of<V> a[L];
    v.store_unaligned(a);
    for (std::size_t w = L / 2; w > 0; w /= 2)
      for (std::size_t l = 0; l < w; ++l) a[l] += a[l + w];
    return a[0];
  }
}
/// True if any lane is set.
template <class Mk>
GRPO_FORCEINLINE bool any(const Mk& m) noexcept {
  if constexpr (std::is_same_v<Mk, bool>) {
    return m;
  }
#if GRPO_HAS_XSIMD
  else {
    return xsimd::any(m);
  }
#endif
}
/// NOTE: write `!(a == b)`, never `a != b`, on lane values: xsimd's AVX-512 `!=` is the ORDERED
/// compare (false when a lane is NaN) while SSE / AVX2 and C++ give true, so `!=` would make NaN
/// handling depend on the target.
/// A mask with every lane false.
template <class V>
GRPO_FORCEINLINE mask_of<V> none_set() noexcept {
  return V(scalar_of<V>(0)) != V(scalar_of<V>(0));
}
/// Finite test written as x - x == 0 (false for NaN and +-inf), as grpo::math::is_finite.
template <class V>
GRPO_FORCEINLINE mask_of<V> finite(const V& x) noexcept {
  return (x - x) == V(0);
}

// ---------------------------------------------------------------------------------------------
// Mirrors of the ops that do not compile for a batch. Each comment names the op it mirrors; the
// scalar instantiation is that op, operation for operation.

/// ops::clamp_scalar: x < lo ? lo : (x > hi ? hi : x).
template <class V>
GRPO_FORCEINLINE V clamp(const V& x, const V& lo, const V& hi) noexcept {
  return sel<V>(x < lo, lo, sel<V>(x > hi, hi, x));
}
/// ops::clamp_scalar_grad: 1 on [lo, hi], else 0.
template <class V>
GRPO_FORCEINLINE V clamp_grad(const V& x, const V& lo, const V& hi) noexcept {
  return sel<V>(band(x >= lo, x <= hi), V(1), V(0));
}

/// Ratio of a token and its direct derivative (ops::ratio_from_log and ratio_from_log_grad as
/// loss.hpp chains them): r = exp(clamp(x, lo, hi)), d r / d x = clamp_grad(x) r (one exp).
template <class V>
struct ratio_terms {
  V r, dr;
};
template <class V>
GRPO_FORCEINLINE ratio_terms<V> ratio(const V& x, const V& lo, const V& hi) noexcept {
  const V r = vexp(clamp(x, lo, hi));
  return {r, clamp_grad(x, lo, hi) * r};
}

/// Value and d/dr of ops::ppo_clip_loss / ops::ppo_clip_loss_grad (clip, clip-higher, TRL delta,
/// verl dual clip; torch tie rules). `p` holds the parameters already converted to the lane scalar.
template <class V>
struct value_grad {
  V value, grad;
};
template <class V>
GRPO_FORCEINLINE value_grad<V> ppo_clip(const V& r, const V& A,
                                        const ops::ppo_clip_params<scalar_of<V>>& p) noexcept {
  using C = scalar_of<V>;
  const V zero(C(0));
  // r1 = min(r, delta) when delta > 0; its slope g1 is 0 where delta binds, else -A.
  V r1 = r, g1 = -A;
  if (p.delta > C(0)) {
    const auto db = r > V(p.delta);
    r1 = sel<V>(db, V(p.delta), r);
    g1 = sel<V>(db, zero, -A);
  }
  const V lo(C(1) - p.eps_low), hi(C(1) + p.eps_high);
  const V l1 = -A * r1;
  const V l2 = -A * clamp(r, lo, hi);
  const V g2 = -A * clamp_grad(r, lo, hi);
  // ppo_clip_loss: l = l1 > l2 ? l1 : l2.
  V l = sel<V>(l1 > l2, l1, l2);
  // ppo_clip_loss_grad: l2 > l1 -> g2; l2 == l1 -> 0.5 (g1 + g2) (torch.maximum tie); else g1.
  const auto g2_wins = l2 > l1;
  V lg = sel<V>(g2_wins, l2, l1);
  // (halves first, as the op: g1 + g2 may overflow where 0.5 g1 + 0.5 g2 does not)
  V g = sel<V>(g2_wins, g2, sel<V>(l2 == l1, V(C(0.5)) * g1 + V(C(0.5)) * g2, g1));
  if (p.dual_c > C(0)) {
    const auto neg = A < zero;
    const V l3 = -A * V(p.dual_c);
    l = sel<V>(band(neg, l3 < l), l3, l);
    g = sel<V>(neg, sel<V>(l3 < lg, zero, sel<V>(l3 == lg, V(C(0.5)) * g, g)), g);
  }
  return {l, g};
}

/// ops::cispo_weight_cap: r > cap ? cap : r.
template <class V>
GRPO_FORCEINLINE V cispo_weight_cap(const V& r, const V& cap) noexcept {
  return sel<V>(r > cap, cap, r);
}
/// ops::cispo_weight_clip: clamp(r, 1 - eps_low, 1 + eps_high).
template <class V>
GRPO_FORCEINLINE V cispo_weight_clip(const V& r, scalar_of<V> eps_low,
                                     scalar_of<V> eps_high) noexcept {
  using C = scalar_of<V>;
  return clamp(r, V(C(1) - eps_low), V(C(1) + eps_high));
}

/// ops::sapo_loss and ops::sapo_loss_grad: tau = A > 0 ? tau_pos : tau_neg, z = tau (r - 1),
/// s = sigmoid(z) evaluated as the op does (1/(1+e^-z) for z >= 0, e^z/(1+e^z) otherwise: both
/// branches need e^-|z|, so one exp), value -(s 4 / tau) A, d/dr -4 s (1 - s) A.
template <class V>
GRPO_FORCEINLINE value_grad<V> sapo(const V& r, const V& A, scalar_of<V> tau_pos,
                                    scalar_of<V> tau_neg) noexcept {
  using C = scalar_of<V>;
  const V one(C(1));
  const V tau = sel<V>(A > V(C(0)), V(tau_pos), V(tau_neg));  // ops::sapo_tau
  const V z = tau * (r - one);
  const auto nonneg = z >= V(C(0));
  const V e = vexp(sel<V>(nonneg, -z, z));
  const V s = sel<V>(nonneg, one / (one + e), e / (one + e));
  return {-(s * V(C(4)) / tau) * A, -V(C(4)) * s * (one - s) * A};
}

/// ops::kl_value_grad for a configured estimator (k1, abs, k2, k3; inner clamp on k3, outer clamp,
/// straight-through), lp = current, lr = reference log-prob. k1 / k2 call the ops directly.
template <class V>
GRPO_FORCEINLINE value_grad<V> kl(const ops::kl_params& p, const V& lp, const V& lr) noexcept {
  using C = scalar_of<V>;
  const V zero(C(0)), one(C(1));
  value_grad<V> r{zero, zero};
  switch (p.estimator) {
    case ops::kl_estimator::k1:
      r = {ops::kl_k1(lp, lr), ops::kl_k1_grad(lp, lr)};
      break;
    case ops::kl_estimator::abs: {  // ops::kl_abs / kl_abs_grad (sgn(0) = 0)
      const V d = lp - lr;
      r = {sel<V>(d < zero, -d, d), sel<V>(d > zero, one, sel<V>(d < zero, -one, zero))};
      break;
    }
    case ops::kl_estimator::k2:
      r = {ops::kl_k2(lp, lr), ops::kl_k2_grad(lp, lr)};
      break;
    case ops::kl_estimator::k3: {  // ops::kl_k3_value_grad: e^d - d - 1, d = lr - lp
      V d = lr - lp;
      const C inner = C(p.inner_clamp);
      auto flat = none_set<V>();
      if (inner > C(0)) {
        flat = bor(d > V(inner), d < V(-inner));
        d = sel<V>(flat, sel<V>(d > V(inner), V(inner), V(-inner)), d);
      }
      const V e = vexp(d);
      r = {e - d - one, sel<V>(flat, zero, one - e)};
      break;
    }
  }
  const C c = C(p.outer_clamp);
  if (c > C(0)) {  // outer clamp: flat (zero gradient) strictly outside [-c, c]
    const auto bind = bor(r.value > V(c), r.value < V(-c));
    r.value = sel<V>(bind, sel<V>(r.value > V(c), V(c), V(-c)), r.value);
    r.grad = sel<V>(bind, zero, r.grad);
  }
  if (p.straight_through) r.grad = ops::kl_k2_grad(lp, lr);
  return r;
}

/// Clip-metric predicates: ops::ppo_clipped_low / ppo_clipped_high / ppo_dual_clipped.
template <class V>
GRPO_FORCEINLINE mask_of<V> clipped_low(const V& r, const V& A,
                                        const ops::ppo_clip_params<scalar_of<V>>& p) noexcept {
  using C = scalar_of<V>;
  return band(r < V(C(1) - p.eps_low), A < V(C(0)));
}
template <class V>
GRPO_FORCEINLINE mask_of<V> clipped_high(const V& r, const V& A,
                                         const ops::ppo_clip_params<scalar_of<V>>& p) noexcept {
  using C = scalar_of<V>;
  return band(r > V(C(1) + p.eps_high), A > V(C(0)));
}
template <class V>
GRPO_FORCEINLINE mask_of<V> dual_clipped(const V& r, const V& A,
                                         const ops::ppo_clip_params<scalar_of<V>>& p) noexcept {
  using C = scalar_of<V>;
  if (!(p.dual_c > C(0))) return none_set<V>();
  return band((A < V(C(0))), (r > V(p.dual_c)));
}

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

}  // namespace grpo::detail::simd

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
/// The batch width is xsimd's default architecture of the translation unit (-march): everything
/// here sits in `inline namespace GRPO_ISA_ABI`, so TUs built for different targets instantiate
/// different kernels under different names (tests/grpo/test_loss_abi.cpp links both).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/isa.hpp>  // GRPO_ISA_ABI
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
// Bodies depend on the TU's target (xsimd's default architecture, FMA contraction): the ABI
// namespace keeps a -march=native TU and a portable TU in one program apart (core/isa.hpp).
inline namespace GRPO_ISA_ABI {

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

// The AVX-512 float mirrors of these formulas (for the hand-written AVX-512 row kernels) are in
// <grpo/loss/kernels/avx512/ops.hpp>.


}  // namespace GRPO_ISA_ABI
}  // namespace grpo::detail::simd

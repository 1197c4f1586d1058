// SPDX-License-Identifier: Apache-2.0
/// @file lane_formulas.ipp
/// @brief The token formulas of the vectorised loss rows written ONCE over a lane type V: PPO clip
///        (clip-higher, delta, dual clip, torch tie rules; and its row-constant form), CISPO
///        weights, SAPO, every KL estimator with its clamps, the ratio / log-ratio clamp and the
///        clip-metric predicates. No include guard: <grpo/detail/simd.hpp> includes it in
///        grpo::detail::simd (lane types: scalar float / double, xsimd batches), and
///        loss/kernels/<isa>/ include it again inside that ISA's target region after
///        <grpo/loss/kernels/lanes.ipp> (lane type: the packet wrapper of simd::avx2 / avx512).
///
/// Each function mirrors its op (include/grpo/ops/) operation by operation with the same operand
/// order and tie rules, so the scalar instantiation is the op bit for bit
/// (tests/grpo/test_loss_fastpath.cpp, test_loss_lanes.cpp check every lane type against the ops,
/// bitwise where no exp is involved). Only names visible at the include site are used: sel, band,
/// bor, vexp, none_set, scalar_of, mask_of, the lane's arithmetic and compares, and the ops'
/// parameter types (never an ops function template: those cannot be instantiated with a packet
/// lane outside its target region).

// ---------------------------------------------------------------------------------------------
// Mirrors of the ops that do not compile for a batch. Each comment names the op it mirrors; the
// scalar instantiation is that op, operation for operation.

/// ops::clamp_scalar: x < lo ? lo : (x > hi ? hi : x).
template <class V>
GRPO_FORCEINLINE V clamp(const V& x, const V& lo, const V& hi) noexcept {
  return sel<V>(x < lo, lo, sel<V>(x > hi, hi, x));
}
/// clamp for bounds known to satisfy lo <= hi (neither NaN): the same value as clamp bit for bit
/// (x < lo implies x <= hi, so the two selects commute). A lane type may overload it (and
/// pick_gt / pick_lt / neg_abs below) with cheaper instructions of the same semantics: the packet
/// rows take vminps / vmaxps (kernels/lanes.ipp).
template <class V>
GRPO_FORCEINLINE V clamp_ordered(const V& x, const V& lo, const V& hi) noexcept {
  return clamp(x, lo, hi);
}
/// a > b ? a : b (a NaN a or b gives b: vmaxps' rule).
template <class V>
GRPO_FORCEINLINE V pick_gt(const V& a, const V& b) noexcept {
  return sel<V>(a > b, a, b);
}
/// -|z| as the sigmoid's branches use it: z >= 0 ? -z : z (NaN: z).
template <class V>
GRPO_FORCEINLINE V neg_abs(const V& z) noexcept {
  using C = scalar_of<V>;
  return sel<V>(z >= V(C(0)), -z, z);
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

/// The constants of sapo() for one call: tau per advantage sign and, where both are powers of
/// two (2^-100 .. 2^100; the default tau_pos = 1), q = 4 / tau exactly, so that the value's
/// (s 4) / tau is the product s q bit for bit (both round the exact s 4 / tau once; s 4 is
/// exact): one division per token instead of two.
template <class V>
struct sapo_consts {
  V tau_pos, tau_neg, q_pos, q_neg;
  bool q_exact;
};
template <class V>
inline sapo_consts<V> sapo_prep(scalar_of<V> tau_pos, scalar_of<V> tau_neg) noexcept {
  using C = scalar_of<V>;
  const auto pow2 = [](C t) {
    int e = 0;
    return t > C(0) && std::frexp(t, &e) == C(0.5) && e > -100 && e < 100;
  };
  const bool q = pow2(tau_pos) && pow2(tau_neg);
  return {V(tau_pos), V(tau_neg), V(q ? C(4) / tau_pos : C(0)), V(q ? C(4) / tau_neg : C(0)), q};
}
/// ops::sapo_loss and ops::sapo_loss_grad: tau = A > 0 ? tau_pos : tau_neg, z = tau (r - 1),
/// s = sigmoid(z) evaluated as the op does (1/(1+e^-z) for z >= 0, e^z/(1+e^z) otherwise: both
/// branches need e^-|z|, so one exp, and divide by 1 + e^-|z|, so one division of the selected
/// numerator: the same correctly rounded quotient as the op's branch), value -(s 4 / tau) A,
/// d/dr -4 s (1 - s) A. (z < 0 picks the numerator: the op's z >= 0 test but for a NaN z, where
/// both give NaN.)
/// `ex`: the exp of the lane type (vexp; the packet rows' lean steps pass their range-tracking
/// unguarded exp).
template <class V, class Exp>
GRPO_FORCEINLINE value_grad<V> sapo(const V& r, const V& A, const sapo_consts<V>& c,
                                    Exp&& ex) noexcept {
  using C = scalar_of<V>;
  const V one(C(1));
  const auto pos = A > V(C(0));
  const V tau = sel<V>(pos, c.tau_pos, c.tau_neg);  // ops::sapo_tau
  const V z = tau * (r - one);
  const V e = ex(neg_abs(z));
  const V s = sel<V>(z < V(C(0)), e, one) / (one + e);
  const V q = c.q_exact ? s * sel<V>(pos, c.q_pos, c.q_neg) : s * V(C(4)) / tau;
  return {-q * A, -V(C(4)) * s * (one - s) * A};
}
template <class V>
GRPO_FORCEINLINE value_grad<V> sapo(const V& r, const V& A, const sapo_consts<V>& c) noexcept {
  return sapo(r, A, c, [](const V& u) { return vexp(u); });
}
/// sapo without the per-call constants (the value's two divisions, as the op).
template <class V>
GRPO_FORCEINLINE value_grad<V> sapo(const V& r, const V& A, scalar_of<V> tau_pos,
                                    scalar_of<V> tau_neg) noexcept {
  using C = scalar_of<V>;
  return sapo(r, A, sapo_consts<V>{V(tau_pos), V(tau_neg), V(C(0)), V(C(0)), false});
}

/// ops::kl_value_grad for a configured estimator (k1, abs, k2, k3; inner clamp on k3, outer clamp,
/// straight-through), lp = current, lr = reference log-prob.
template <class V>
GRPO_FORCEINLINE value_grad<V> kl(const ops::kl_params& p, const V& lp, const V& lr) noexcept {
  using C = scalar_of<V>;
  const V zero(C(0)), one(C(1));
  value_grad<V> r{zero, zero};
  switch (p.estimator) {
    case ops::kl_estimator::k1:
      r = {lp - lr, one};  // ops::kl_k1 / kl_k1_grad
      break;
    case ops::kl_estimator::abs: {  // ops::kl_abs / kl_abs_grad (sgn(0) = 0)
      const V d = lp - lr;
      r = {sel<V>(d < zero, -d, d), sel<V>(d > zero, one, sel<V>(d < zero, -one, zero))};
      break;
    }
    case ops::kl_estimator::k2: {  // ops::kl_k2 / kl_k2_grad: 0.5 d d, d
      const V d = lp - lr;
      r = {V(C(0.5)) * d * d, d};
      break;
    }
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
  if (p.straight_through) r.grad = lp - lr;  // ops::kl_k2_grad
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


/// Row constants of ppo_clip_row for a row-constant advantage A (per-sequence advantages; no
/// delta, no dual clip): -A, -A * 0 (the op's gradient where the clip binds keeps the sign of -A)
/// and the op's two tie values 0.5 g1 + 0.5 g2 with g2 = -A (inside the clip range) or -A * 0.
template <class V>
struct ppo_row_consts {
  V nA, zA, tie_in, tie_out;
};
template <class V>
GRPO_FORCEINLINE ppo_row_consts<V> ppo_row(scalar_of<V> A) noexcept {
  using C = scalar_of<V>;
  const C na = -A, za = na * C(0);
  return {V(na), V(za), V(C(0.5) * na + C(0.5) * na), V(C(0.5) * na + C(0.5) * za)};
}
/// ppo_clip for a row-constant advantage without delta or dual clip (the common GRPO / DAPO row),
/// with the gradient's cases as selects of row constants: bitwise ppo_clip's result. lo <= hi
/// (1 - eps_low <= 1 + eps_high: eps >= 0 is validated). The op's cases: a tie l1 == l2 takes the
/// tie value (in range, c == r: always a tie, tie_in; else tie_out), else l2 > l1 takes -A * 0,
/// else -A (a NaN ratio: no tie, no win: -A, as the op).
template <class V>
GRPO_FORCEINLINE value_grad<V> ppo_clip_row(const V& r, const ppo_row_consts<V>& a, const V& lo,
                                            const V& hi) noexcept {
  const V c = clamp_ordered(r, lo, hi);
  const V l1 = a.nA * r, l2 = a.nA * c;
  const V g = sel<V>(l1 == l2, sel<V>(c == r, a.tie_in, a.tie_out), sel<V>(l2 > l1, a.zA, a.nA));
  return {pick_gt(l1, l2), g};
}

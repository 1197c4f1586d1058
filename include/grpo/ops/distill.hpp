// SPDX-License-Identifier: Apache-2.0
/// @file distill.hpp
/// @brief Element maths of the distillation losses (forward/reverse KL, generalised JSD, skew KL,
///        skew reverse KL, label-smoothed NLL, top-k tail bucket): value and derivative with
///        respect to the student log-probability, for host loops (grpo::distill) and CUDA kernels
///        alike.
///
/// Notation (one vocabulary row): lp = log p_i (teacher), lq = log q_i (student), both at the
/// shared temperature T, p = e^lp, q = e^lq. Every divergence is a sum over i of an element term
/// f(lp_i, lq_i); its "_grad" twin is g_i = d f / d lq_i with lq treated as a free variable. The
/// log-softmax Jacobian d lq_i / d z'_j = delta_ij - q_j then gives the gradient with respect to
/// the scaled student logits z' = s / T for every loss by one rule (softmax_chain below):
///     dL/dz'_j = g_j - q_j G,   G = sum_i g_i.
/// For the forward KL G = -sum p = -1, so its gradient q_j - p_j needs no extra pass.
///
/// These are the ONLY copies of the formulas: grpo::distill loops and any CUDA kernel call them.
/// Every term is written branch-free over the vocabulary (selects, no early return) so a compiler
/// vectorises the loops, and with the convention 0 * log 0 = 0: a -inf log-probability (masked or
/// underflowed vocabulary entry) contributes exactly 0 and never 0 * inf = NaN.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/math.hpp>  // grpo::math::exp / log shims, vectorisable fast_exp / fast_log

#include <bit>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace grpo::ops {

// ---------------------------------------------------------------------------------------------
// Vectorisable exp / log: the single implementation is grpo::math::fast_exp & co. in
// core/math.hpp (Cody-Waite + Cephes polynomials, < 2 ulp, bit-mask selects). These are the names
// the distillation code and the CUDA kernels call; they forward without adding any maths.

using math::select;

/// e^max(x, -87.3) for x <= 88.3, no output select: grpo::math::fast_exp_core.
GRPO_HOST_DEVICE GRPO_FORCEINLINE float distill_exp_core(float x) noexcept {
  return math::fast_exp_core(x);
}
/// e^x (float host: polynomial, 0 below -87.3, +inf above 88.3): grpo::math::fast_exp.
template <class A>
GRPO_HOST_DEVICE GRPO_FORCEINLINE A distill_exp(A x) noexcept {
  return math::fast_exp(x);
}
/// log x for a positive normal float, unguarded: grpo::math::fast_log_normal.
GRPO_HOST_DEVICE GRPO_FORCEINLINE float distill_log_normal(float x) noexcept {
  return math::fast_log_normal(x);
}
/// log x with the IEEE special cases: grpo::math::fast_log.
template <class A>
GRPO_HOST_DEVICE GRPO_FORCEINLINE A distill_log(A x) noexcept {
  return math::fast_log(x);
}
/// e^x for x <= 0 without the flush to 0: grpo::math::fast_exp_unit.
template <class A>
GRPO_HOST_DEVICE GRPO_FORCEINLINE A distill_exp_unit(A x) noexcept {
  return math::fast_exp_unit(x);
}
/// log(1 + y) for y in [0, 1]: grpo::math::fast_log1p_unit.
template <class A>
GRPO_HOST_DEVICE GRPO_FORCEINLINE A distill_log1p_unit(A y) noexcept {
  return math::fast_log1p_unit(y);
}

// ---------------------------------------------------------------------------------------------
// Building blocks.

/// x (a - b) with 0 (anything) = 0: the p log(p / m) pieces of every divergence, where x = 0 means
/// an entry with no probability (a = -inf would otherwise give 0 * inf = NaN).
template <class A>
GRPO_HOST_DEVICE constexpr A weighted_log_ratio(A x, A a, A b) noexcept {
  const A r = x * (a - b);  // computed unconditionally and then selected: a value select is what
  return select(x > A(0), r, A(0));  // lets g++ vectorise under the default -ftrapping-math
}

/// log(w_a e^a + w_b e^b) from la = log w_a + a and lb = log w_b + b, computed as
/// max + log(1 + e^(min - max)) so that it never underflows: the log of a mixture of two
/// probabilities both below 1e-38 stays finite (the Liger JSD kernel forms e^a and e^b first and
/// gets log 0 = -inf, then 0 * inf = NaN). Both -inf (no mass in either) gives -inf.
template <class A>
GRPO_HOST_DEVICE constexpr A log_add_exp(A la, A lb) noexcept {
  const A hi = select(la > lb, la, lb);
  const A lo = select(la > lb, lb, la);
  const A d = lo - hi;  // <= 0; NaN only when both are -inf (handled by the selects)
  const A dc = select(d > -math::infinity<A>(), d, -math::infinity<A>());
  // e^dc in (0, 1]; for float the unselected core (e^-87.3 instead of 0 below -87.3 changes
  // log(1 + y) by less than 1e-37).
  const A r = hi + distill_log1p_unit(distill_exp_unit(dc));
  return select(hi > -math::infinity<A>(), r, -math::infinity<A>());
}

/// log M for M = w p + (1 - w) q given log w and log(1 - w) (either may be -inf at w = 0 or 1).
template <class A>
GRPO_HOST_DEVICE constexpr A log_mixture(A log_w, A lp, A log_1mw, A lq) noexcept {
  return log_add_exp(log_w + lp, log_1mw + lq);
}

/// The log-softmax chain rule shared by every loss: dL/dz'_j = g_j - q_j G with G = sum_i g_i.
template <class A>
GRPO_HOST_DEVICE constexpr A softmax_chain(A g, A q, A big_g) noexcept {
  return g - q * big_g;
}

// The divergence terms take the probabilities p = e^lp and q = e^lq (and, for the mixtures, lM)
// precomputed by the caller, so a vectorised loop computes each exponential once per element and
// shares it between the value and the gradient.

// ---------------------------------------------------------------------------------------------
// Forward KL(p || q) = sum p (log p - log q)   (Hinton et al. 2015; TRL GKD beta = 0; DistillKit)

/// Element term p (lp - lq); 0 where p = 0; +inf where p > 0 and q = 0.
template <class A>
GRPO_HOST_DEVICE constexpr A forward_kl(A lp, A lq, A p) noexcept {
  return weighted_log_ratio(p, lp, lq);
}
/// d/dlq of p (lp - lq) = -p. (G = -1, so dL/dz'_j = q_j - p_j: forward_kl_dz.)
template <class A>
GRPO_HOST_DEVICE constexpr A forward_kl_grad(A p) noexcept {
  return -p;
}
/// dKL(p || q)/dz'_j = q_j - p_j, i.e. softmax_chain(forward_kl_grad, q, -1), written so that it
/// keeps its digits where q_j and p_j both approach 1 (a dominant token: q - p in float would
/// cancel to a multiple of 6e-8): for |lq - lp| < 1/64 it is p (e^(lq - lp) - 1) with a 5-term
/// expm1 series (relative error < 1e-14), otherwise the plain difference.
template <class A>
GRPO_HOST_DEVICE constexpr A forward_kl_dz(A lp, A lq, A p, A q) noexcept {
  const A d = lq - lp;  // NaN when both are -inf: then p = q = 0 and the plain branch gives 0
  const A em1 = d * (A(1) + d * (A(0.5) + d * (A(1) / A(6) + d * (A(1) / A(24) + d / A(120)))));
  const bool near = (d < A(0.015625)) & (d > A(-0.015625));  // & : no short-circuit branch
  const A close = p * em1, far = q - p;
  return select(near, close, far);
}

// ---------------------------------------------------------------------------------------------
// Reverse KL(q || p) = sum q (log q - log p)   (MiniLLM per-step term; TRL GKD beta = 1)

/// Element term q (lq - lp); 0 where q = 0; +inf where q > 0 and p = 0.
template <class A>
GRPO_HOST_DEVICE constexpr A reverse_kl(A lp, A lq, A q) noexcept {
  return weighted_log_ratio(q, lq, lp);
}
/// d/dlq of q (lq - lp) = q (lq - lp + 1). (Gives dL/dz'_j = q_j (lq_j - lp_j - KL).)
template <class A>
GRPO_HOST_DEVICE constexpr A reverse_kl_grad(A lp, A lq, A q) noexcept {
  const A r = q * (lq - lp + A(1));
  return select(q > A(0), r, A(0));
}

// ---------------------------------------------------------------------------------------------
// Generalised JSD(beta) (GKD, Agarwal et al. 2024; TRL / Liger convention):
//   M = beta p + (1 - beta) q,   JSD = beta KL(p || M) + (1 - beta) KL(q || M),
//   lM = log_mixture(log beta, lp, log(1 - beta), lq).
// The formula is 0 at beta = 0 and beta = 1 (M = q or p); TRL and Liger special-case those
// endpoints to the forward and reverse KL, which grpo::distill does by option (not here).

/// Element term beta p (lp - lM) + (1 - beta) q (lq - lM).
template <class A>
GRPO_HOST_DEVICE constexpr A jsd(A lp, A lq, A p, A q, A lm, A beta) noexcept {
  return beta * weighted_log_ratio(p, lp, lm) + (A(1) - beta) * weighted_log_ratio(q, lq, lm);
}
/// d/dlq = (1 - beta) q (lq - lM): the p-part and the d lM terms cancel exactly
/// (d lM / d lq = (1 - beta) q / M and beta p + (1 - beta) q = M).
template <class A>
GRPO_HOST_DEVICE constexpr A jsd_grad(A lq, A q, A lm, A beta) noexcept {
  return (A(1) - beta) * weighted_log_ratio(q, lq, lm);
}

// ---------------------------------------------------------------------------------------------
// Skew KL (DistiLLM, Ko et al. 2024): SKL_a = KL(p || a p + (1 - a) q), default a = 0.1;
//   lM = log_mixture(log a, lp, log(1 - a), lq).

/// Element term p (lp - lM).
template <class A>
GRPO_HOST_DEVICE constexpr A skew_forward_kl(A lp, A p, A lm) noexcept {
  return weighted_log_ratio(p, lp, lm);
}
/// d/dlq = -p (1 - a) q / M = -(1 - a) p e^(lq - lM)   (a = 0 gives -p, the forward KL).
template <class A>
GRPO_HOST_DEVICE constexpr A skew_forward_kl_grad(A lq, A p, A lm, A log_1ma) noexcept {
  const A r = -p * distill_exp(log_1ma + lq - lm);
  return select(p > A(0), r, A(0));
}

// Skew reverse KL (DistiLLM): SRKL_a = KL(q || (1 - a) p + a q);
//   lM = log_mixture(log(1 - a), lp, log a, lq).

/// Element term q (lq - lM).
template <class A>
GRPO_HOST_DEVICE constexpr A skew_reverse_kl(A lq, A q, A lm) noexcept {
  return weighted_log_ratio(q, lq, lm);
}
/// d/dlq = q (lq - lM + 1 - a q / M)   (a = 0 gives q (lq - lp + 1), the reverse KL).
template <class A>
GRPO_HOST_DEVICE constexpr A skew_reverse_kl_grad(A lq, A q, A lm, A log_a) noexcept {
  const A r = q * (lq - lm + A(1) - distill_exp(log_a + lq - lm));
  return select(q > A(0), r, A(0));
}

// ---------------------------------------------------------------------------------------------
// SFT negative log-likelihood with label smoothing eps (torch CrossEntropyLoss convention):
//   L = (1 - eps) (-lq_y) + eps (-(1/V) sum_j lq_j) = (1 - eps)(lse - z'_y) + eps (lse - mean z').
// The target part of the gradient is grpo::ops::log_softmax_grad (softmax.hpp) with
// g_logp = -(1 - eps); the smoothing part adds d/dz'_j [-(eps/V) sum_i lq_i] = eps (q_j - 1/V).

/// Row value from the log-sum-exp of z', the target's z'_y and the mean of z' over the vocabulary.
template <class A>
GRPO_HOST_DEVICE constexpr A smoothed_nll(A lse, A z_y, A z_mean, A eps) noexcept {
  const A smooth = eps > A(0) ? eps * (lse - z_mean) : A(0);  // eps = 0: never inf * 0
  return (A(1) - eps) * (lse - z_y) + smooth;
}
/// d/dz'_j of the smoothing part: eps (q_j - 1/V).
template <class A>
GRPO_HOST_DEVICE constexpr A label_smoothing_grad(A q, A eps, A inv_vocab) noexcept {
  return eps * (q - inv_vocab);
}

// ---------------------------------------------------------------------------------------------
// Top-k teacher, tail bucket (DistillKit SYMMETRIC_UNIFORM / TRL _add_tail_bucket). The tail
// category holds the mass outside the teacher's id set S: p_0 = 1 - sum_S p, q_0 = 1 - sum_S q.
// Treating it as one more category of the divergence, with g_0 = d f(lp_0, lq_0) / d lq_0, gives
// for the raw vocabulary entries j outside S (q_0 = sum_{j not in S} q_j):
//   dL/dz'_j = g_0 q_j / q_0 - q_j G,   G = sum_S g_i + g_0,
// and inside S the usual g_j - q_j G. For the forward KL this is q_j (1 - p_0 / q_0) outside S.

/// Gradient for a vocabulary entry outside S: q_j (g_0 / q_0 - G), with q_0 > 0. A student that
/// puts no mass outside S (q_0 = 0) has q_j = 0 there, hence 0.
template <class A>
GRPO_HOST_DEVICE constexpr A tail_spread_grad(A q, A g_tail, A inv_q_tail, A big_g) noexcept {
  const A r = q * (g_tail * inv_q_tail - big_g);
  return select(q > A(0), r, A(0));
}

/// log(1 - e^l) for l = log of a probability (l <= 0), the complement's log mass, without
/// cancellation: log(-expm1(l)). l is clamped to <= -1e-7 (TRL's tail clamp) so the result stays
/// finite when the listed mass rounds to 1.
template <class A>
GRPO_HOST_DEVICE inline A log1m_exp(A l) noexcept {
  const A c = l < A(-1e-7) ? l : A(-1e-7);
  return math::log(-math::expm1(c));
}

}  // namespace grpo::ops

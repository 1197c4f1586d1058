// SPDX-License-Identifier: Apache-2.0
/// @file softmax.hpp
/// @brief Element maths of the selective log-softmax at temperature T and of its gradient with
///        respect to the raw logits (log p, entropy term). The only copy of these formulas: the CPU
///        loops of logprob.hpp / fused_grpo.hpp / fused_linear.hpp / sampler.hpp and CUDA call
///        them.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/math.hpp>

namespace grpo::ops {

// Notation (one row of logits x_1..x_V, inverse temperature beta = 1/T):
//   z_j = beta x_j,  m = max_j x_j (raw),  s = sum_j exp(beta (x_j - m)),  lse = beta m + log s,
//   log q_j = z_j - lse = beta (x_j - m) - log s,  H = -sum_j q_j log q_j.
// Working with x_j - m (not z_j - lse) keeps the result exact for logits offset by +-1e4: the
// difference of two nearby floats is exact, while beta x_j would round at the scale of the offset.

/// log q_j = beta (x_j - m) - log s   (log-softmax at temperature 1/beta).
/// @pre m = max of the row (raw units), log_s = log sum exp(beta (x - m)) >= 0, beta > 0.
/// @post <= 0 up to rounding; -inf for x_j = -inf (masked vocabulary entry).
template <class A>
GRPO_HOST_DEVICE constexpr A log_softmax(A x, A m, A log_s, A beta) noexcept {
  return beta * (x - m) - log_s;
}

/// Probability q_j = exp(log q_j) as the gradient uses it: exactly 0 for a masked entry
/// (log q_j = -inf), whatever exp(-inf) the caller's vectorised exp produced (Eigen's returns
/// ~3e-39 rather than 0).
template <class A>
GRPO_HOST_DEVICE constexpr A masked_prob(A log_q, A q) noexcept {
  // A mask select, not ?: (math::select): g++ 12 keeps a ?: here as control flow and the vocabulary
  // loop of logprob.hpp's row_grad stays scalar.
  return math::select(log_q > -math::infinity<A>(), q, A(0));
}

/// The entropy part of the softmax gradient: q_j (log q_j + H) = -dH/dz_j; exactly 0 for a masked
/// entry instead of 0 * inf = NaN.
template <class A>
GRPO_HOST_DEVICE constexpr A entropy_grad_term(A log_q, A q, A entropy) noexcept {
  const A r = q * (log_q + entropy);  // NaN for log_q = -inf, discarded by the select
  return math::select(log_q > -math::infinity<A>(), r, A(0));
}

/// Gradient of  L = g_logp * log q_y + g_entropy * H  with respect to a raw logit x_j, j != y:
///   dL/dx_j = beta * [ -g_logp q_j - g_entropy q_j (log q_j + H) ]
/// (d log q_y / dz_j = delta_jy - q_j;  dH/dz_j = -q_j (log q_j + H); dz/dx = beta, the 1/T chain
/// factor). Branch-free in j so a compiler can vectorise the loop over the vocabulary.
/// @pre q = exp(log_q) (passed separately so vectorised callers can compute exp in bulk).
/// @post finite whenever the inputs are finite or log_q = -inf (then exactly 0).
template <class A>
GRPO_HOST_DEVICE constexpr A log_softmax_grad_nontarget(A log_q, A q, A g_logp, A g_entropy,
                                                        A entropy, A beta) noexcept {
  return beta *
         (-g_logp * masked_prob(log_q, q) - g_entropy * entropy_grad_term(log_q, q, entropy));
}

/// The same gradient for any j: dL/dx_j = beta [ g_logp (delta_jy - q_j) - g_entropy q_j (log q_j +
/// H) ]. For the target (is_target) 1 - q_y is formed as -expm1(log q_y), exact when q_y > 1 - 1e-6
/// where 1 - q_y in float would keep no correct digit.
/// @pre q = exp(log_q).
template <class A>
GRPO_HOST_DEVICE constexpr A log_softmax_grad(A log_q, A q, bool is_target, A g_logp, A g_entropy,
                                              A entropy, A beta) noexcept {
  if (!is_target) return log_softmax_grad_nontarget(log_q, q, g_logp, g_entropy, entropy, beta);
  return beta * (g_logp * -math::expm1(log_q) - g_entropy * entropy_grad_term(log_q, q, entropy));
}

}  // namespace grpo::ops

// SPDX-License-Identifier: Apache-2.0
/// @file policy_loss.hpp
/// @brief Scalar per-token policy-gradient surrogates (PPO clip + dual clip + delta, CISPO, SAPO,
///        GMPO log-ratio clip, VESPO gamma weight, TIS weights, OPSM) and their derivatives.
///
/// Conventions: the loss is MINIMISED; `r` is the importance ratio pi_theta/pi_old of the token (or
/// of its sequence, for GSPO), `A` its advantage. Surrogates that depend on theta only through r
/// return d loss / d r; the caller chains d r / d lp (= r for a token ratio, r m_t / n_i for a
/// sequence ratio, 0 where a log-ratio clamp binds). Surrogates of the form -sg[w] A lp
/// (CISPO, GPG/REINFORCE, VESPO) return d loss / d lp directly. These are the only copies of the
/// formulas: grpo/policy_loss.hpp, grpo/loss.hpp and the CUDA kernels call them.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/math.hpp>  // grpo::math::exp host+device shim

namespace grpo::ops {

/// clamp(x, lo, hi) without <algorithm> (usable on the device).
template <class T>
GRPO_HOST_DEVICE constexpr T clamp_scalar(T x, T lo, T hi) noexcept {
  return x < lo ? lo : (x > hi ? hi : x);
}
/// d clamp(x, lo, hi) / dx with torch's convention: 1 on the closed interval [lo, hi], else 0.
template <class T>
GRPO_HOST_DEVICE constexpr T clamp_scalar_grad(T x, T lo, T hi) noexcept {
  return (x >= lo && x <= hi) ? T(1) : T(0);
}

// ---------------------------------------------------------------------------------------------
// PPO clip family (PPO, DAPO clip-higher, verl dual clip, TRL delta).

/// Parameters of the clipped surrogate. Infinite bounds disable the corresponding feature.
template <class T>
struct ppo_clip_params {
  T eps_low = T(0.2);   ///< lower clip 1 - eps_low
  T eps_high = T(0.2);  ///< upper clip 1 + eps_high (DAPO clip-higher: 0.28)
  T delta = T(0);       ///< TRL two-sided clip: first surrogate uses min(r, delta); <= 0 = off
  T dual_c = T(0);      ///< verl dual clip for A < 0: min(-A c, .); <= 0 = off (verl default 3)
};

/// PPO clipped surrogate loss of one token (Schulman et al. 2017; DAPO 2025; Ye et al. 2020 dual
/// clip; INTELLECT-2 delta):
///   l = max(-A min(r, delta), -A clip(r, 1-eps_low, 1+eps_high)),
///   and for A < 0 with dual clip: l = min(l, -A c).
/// Identical to TRL's -min(r A, clip(r) A) and verl's compute_policy_loss_vanilla.
template <class T>
GRPO_HOST_DEVICE constexpr T ppo_clip_loss(T r, T A, const ppo_clip_params<T>& p) noexcept {
  const T r1 = (p.delta > T(0) && r > p.delta) ? p.delta : r;
  const T l1 = -A * r1;
  const T l2 = -A * clamp_scalar(r, T(1) - p.eps_low, T(1) + p.eps_high);
  T l = l1 > l2 ? l1 : l2;
  if (p.dual_c > T(0) && A < T(0)) {
    const T l3 = -A * p.dual_c;
    l = l3 < l ? l3 : l;
  }
  return l;
}

/// d ppo_clip_loss / d r. The branch that gives the value gives the gradient: -A in the trust
/// region (or where the unclipped term wins), 0 where the clip, delta or dual clip binds.
/// At exact ties both branches have the same slope (torch splits the gradient half/half, same sum).
template <class T>
GRPO_HOST_DEVICE constexpr T ppo_clip_loss_grad(T r, T A, const ppo_clip_params<T>& p) noexcept {
  const bool delta_binds = p.delta > T(0) && r > p.delta;
  const T r1 = delta_binds ? p.delta : r;
  const T g1 = delta_binds ? T(0) : -A;
  const T lo = T(1) - p.eps_low, hi = T(1) + p.eps_high;
  const T l1 = -A * r1;
  const T l2 = -A * clamp_scalar(r, lo, hi);
  const T g2 = -A * clamp_scalar_grad(r, lo, hi);
  T l = l1, g = g1;
  if (l2 > l1) {
    l = l2;
    g = g2;
  } else if (l2 == l1 && !(l1 > l2)) {
    g = T(0.5) * g1 + T(0.5) * g2;  // torch.maximum tie rule (halves first: g1 + g2 may overflow)
  }
  if (p.dual_c > T(0) && A < T(0)) {
    const T l3 = -A * p.dual_c;
    if (l3 < l)
      g = T(0);
    else if (l3 == l)
      g = T(0.5) * g;  // torch.minimum tie rule
  }
  return g;
}

/// Token classification for clip metrics (TRL b.10 / verl): low = r < 1-eps_low and A < 0,
/// high = r > 1+eps_high and A > 0 (the tokens whose gradient the clip removes);
/// dual = A < 0 and r > c (verl pg_clipfrac_lower).
template <class T>
GRPO_HOST_DEVICE constexpr bool ppo_clipped_low(T r, T A, const ppo_clip_params<T>& p) noexcept {
  return r < T(1) - p.eps_low && A < T(0);
}
template <class T>
GRPO_HOST_DEVICE constexpr bool ppo_clipped_high(T r, T A, const ppo_clip_params<T>& p) noexcept {
  return r > T(1) + p.eps_high && A > T(0);
}
template <class T>
GRPO_HOST_DEVICE constexpr bool ppo_dual_clipped(T r, T A, const ppo_clip_params<T>& p) noexcept {
  return p.dual_c > T(0) && A < T(0) && r > p.dual_c;
}

// ---------------------------------------------------------------------------------------------
// Detached-weight policy gradient: l = -sg[w] A lp  (CISPO, GPG/REINFORCE, VESPO, verl bypass).

/// l = -w A lp with w treated as a constant (stop-gradient).
template <class T>
GRPO_HOST_DEVICE constexpr T weighted_pg_loss(T w, T A, T lp) noexcept {
  return -w * A * lp;
}
/// d l / d lp = -w A.
template <class T>
GRPO_HOST_DEVICE constexpr T weighted_pg_loss_grad(T w, T A, T /*lp*/) noexcept {
  return -w * A;
}

/// CISPO weight, TRL convention (loss_type="cispo"): one-sided ABSOLUTE cap, w = min(r, cap)
/// (ScaleRL recommends cap = epsilon_high = 5).
template <class T>
GRPO_HOST_DEVICE constexpr T cispo_weight_cap(T r, T cap) noexcept {
  return r > cap ? cap : r;
}
/// CISPO weight, verl convention (loss_mode="cispo"): two-sided RELATIVE clip,
/// w = clip(r, 1 - eps_low, 1 + eps_high) (MiniMax-M1).
template <class T>
GRPO_HOST_DEVICE constexpr T cispo_weight_clip(T r, T eps_low, T eps_high) noexcept {
  return clamp_scalar(r, T(1) - eps_low, T(1) + eps_high);
}

// ---------------------------------------------------------------------------------------------
// SAPO soft gate (Qwen, 2025): l = -(4/tau) sigmoid(tau (r - 1)) A, tau = tau_pos if A > 0 else
// tau_neg. Its r-derivative at r = 1 is -A, i.e. vanilla PG on-policy.

/// Logistic function 1/(1+e^-x), evaluated without overflow for large |x|.
template <class T>
GRPO_HOST_DEVICE constexpr T sigmoid(T x) noexcept {
  if (x >= T(0)) return T(1) / (T(1) + math::exp(-x));
  const T e = math::exp(x);
  return e / (T(1) + e);
}

/// SAPO temperature for advantage A (TRL and verl: tau_pos iff A > 0).
template <class T>
GRPO_HOST_DEVICE constexpr T sapo_tau(T A, T tau_pos, T tau_neg) noexcept {
  return A > T(0) ? tau_pos : tau_neg;
}
/// SAPO loss of one token.
template <class T>
GRPO_HOST_DEVICE constexpr T sapo_loss(T r, T A, T tau_pos, T tau_neg) noexcept {
  const T tau = sapo_tau(A, tau_pos, tau_neg);
  return -(sigmoid(tau * (r - T(1))) * T(4) / tau) * A;
}
/// d sapo_loss / d r = -4 s (1 - s) A with s = sigmoid(tau (r - 1)).
template <class T>
GRPO_HOST_DEVICE constexpr T sapo_loss_grad(T r, T A, T tau_pos, T tau_neg) noexcept {
  const T tau = sapo_tau(A, tau_pos, tau_neg);
  const T s = sigmoid(tau * (r - T(1)));
  return -T(4) * s * (T(1) - s) * A;
}

// ---------------------------------------------------------------------------------------------
// GMPO (geometric-mean policy optimisation): sign-aware clip of the per-token LOG ratio x.

/// How A = 0 is treated by the GMPO log-ratio clip.
enum class gmpo_sign : unsigned char {
  verl,  ///< verl geo_mean: x~ = sgn(A) min(sgn(A) x, sgn(A) clamp(x)); A = 0 gives x~ = 0
  trl,   ///< TRL experimental gmpo: A > 0 ? min(x, clamp(x)) : max(x, clamp(x))
};

/// Clipped log ratio x~: for A > 0 only the upper bound acts (min(x, eps_high)), for A < 0 only
/// the lower bound (max(x, -eps_low)).
template <class T>
GRPO_HOST_DEVICE constexpr T gmpo_clip_log_ratio(T x, T A, T eps_low, T eps_high,
                                                 gmpo_sign conv) noexcept {
  const T c = clamp_scalar(x, -eps_low, eps_high);
  if (A > T(0)) return x < c ? x : c;
  if (A < T(0) || conv == gmpo_sign::trl) return x > c ? x : c;
  return T(0);
}
/// d x~ / d x: 1 where x passes through, 0 where the bound binds (or A = 0 under verl's rule).
/// At x == c (inside the band) both branches pass the gradient, so the torch tie split sums to 1.
template <class T>
GRPO_HOST_DEVICE constexpr T gmpo_clip_log_ratio_grad(T x, T A, T eps_low, T eps_high,
                                                      gmpo_sign conv) noexcept {
  if (A > T(0)) return x > eps_high ? T(0) : T(1);
  if (A < T(0) || conv == gmpo_sign::trl) return x < -eps_low ? T(0) : T(1);
  return T(0);
}

// ---------------------------------------------------------------------------------------------
// VESPO (TRL loss_type="vespo"): detached gamma weight phi(w) = e^lambda w^k e^(-lambda w),
// normalised so phi(1) = 1, computed in log space from the clamped sequence log-weight.

/// phi from the sequence log-weight log_w (already clamped to [log 1e-8, 20] by the caller):
/// log phi = lambda + k log_w - lambda e^(log_w); (k, lambda) = (k_pos, lambda_pos) for A >= 0,
/// (k_neg, lambda_neg) otherwise, lambda floored at 1e-4. NaN/Inf map to 0 (TRL nan_to_num).
template <class T>
GRPO_HOST_DEVICE constexpr T vespo_phi(T log_w, T A, T k_pos, T lambda_pos, T k_neg,
                                       T lambda_neg) noexcept {
  const bool pos = A >= T(0);
  const T k = pos ? k_pos : k_neg;
  T lam = pos ? lambda_pos : lambda_neg;
  lam = lam < T(1e-4) ? T(1e-4) : lam;
  const T phi = math::exp(lam + k * log_w - lam * math::exp(log_w));
  // nan_to_num(nan=0, posinf=0, neginf=0)
  if (!(phi - phi == T(0))) return T(0);  // NaN or +-Inf
  return phi;
}

// ---------------------------------------------------------------------------------------------
// Rollout/training mismatch correction (truncated / masked importance sampling).

/// How an IS weight rho = pi_old_trainer / pi_sampler is bounded.
enum class tis_mode : unsigned char {
  truncate,  ///< clamp(rho, c_min, c_max) (TIS; TRL *_truncate, verl "hi", OpenRLHF tis)
  mask,      ///< rho 1[c_min <= rho <= c_max] (IcePop; TRL *_mask, verl "lo_hi")
};
/// Bounded IS weight; c_min <= 0 and c_max <= 0 disable that side. The weight is a constant
/// (detached): it multiplies the policy term only.
template <class T>
GRPO_HOST_DEVICE constexpr T tis_weight(T rho, T c_min, T c_max, tis_mode mode) noexcept {
  const bool has_lo = c_min > T(0), has_hi = c_max > T(0);
  if (mode == tis_mode::truncate) {
    if (has_lo && rho < c_min) return c_min;
    if (has_hi && rho > c_max) return c_max;
    return rho;
  }
  if ((has_lo && rho < c_min) || (has_hi && rho > c_max)) return T(0);
  return rho;
}

// ---------------------------------------------------------------------------------------------
// OPSM (DeepSeek-V3.2 off-policy sequence masking, TRL off_policy_mask_threshold).

/// Keep decision of one sequence: keep iff A >= 0 or its mean sampler-vs-current log gap
/// kl_i = sum_t m (ls - lp) / max(n_i, 1) is <= delta.
template <class T>
GRPO_HOST_DEVICE constexpr bool opsm_keep(T A, T mean_gap, T delta) noexcept {
  return A >= T(0) || mean_gap <= delta;
}

// ---------------------------------------------------------------------------------------------
// Ratio helpers.

/// r = exp(clamp(x, lo, hi)) for the log ratio x = lp - lo_old (verl clamps at +-20, GSPO at max
/// 10). Pass lo = -inf / hi = +inf for no clamp (TRL).
template <class T>
GRPO_HOST_DEVICE constexpr T ratio_from_log(T x, T lo, T hi) noexcept {
  return math::exp(clamp_scalar(x, lo, hi));
}
/// d r / d x = r inside [lo, hi], 0 where the clamp binds.
template <class T>
GRPO_HOST_DEVICE constexpr T ratio_from_log_grad(T x, T lo, T hi) noexcept {
  return clamp_scalar_grad(x, lo, hi) * math::exp(clamp_scalar(x, lo, hi));
}

}  // namespace grpo::ops

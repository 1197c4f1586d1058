// SPDX-License-Identifier: Apache-2.0
/// @file kl.hpp
/// @brief Scalar per-token KL estimators (k1, abs, k2, k3) with clamps, straight-through and
///        bias-corrected variants, each with its derivative w.r.t. the current log-probability.
///
/// Notation: `lp` = log pi_theta(y_t) (differentiable), `lr` = log pi_ref(y_t) (constant).
/// Every estimator approximates the reverse KL(pi_theta || pi_ref) at one sampled token
/// (J. Schulman, "Approximating KL divergence", 2020):
///   k1 = lp - lr                      (unbiased, high variance, can be negative)
///   abs = |lp - lr|
///   k2 = 0.5 (lp - lr)^2              (verl "mse"/"k2")
///   k3 = e^(lr-lp) - (lr-lp) - 1      (verl "low_var_kl", TRL's only estimator; >= 0)
/// These are the ONLY copies of the formulas: CPU loops (grpo/kl.hpp, grpo/loss.hpp) and the CUDA
/// kernels call them.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/math.hpp>  // grpo::math::exp / log host+device shims

namespace grpo::ops {


/// Which estimator of KL(pi_theta || pi_ref) a token uses.
enum class kl_estimator : unsigned char {
  k1,   ///< lp - lr (verl "kl"/"k1", OpenRLHF k1)
  abs,  ///< |lp - lr| (verl "abs")
  k2,   ///< 0.5 (lp - lr)^2 (verl "mse"/"k2", OpenRLHF k2)
  k3,   ///< e^(lr-lp) - (lr-lp) - 1 (verl "low_var_kl"/"k3", TRL, OpenRLHF k3)
};

/// Clamp parameters of a KL estimator. A bound <= 0 means "no clamp".
/// verl low_var_kl: inner = 20 (on lr - lp before the exp), outer = 10 (on the k3 value);
/// OpenRLHF: outer = 10 on every estimator; TRL: none.
struct kl_params {
  kl_estimator estimator = kl_estimator::k3;
  double inner_clamp = 0.0;  ///< |lr - lp| clamp applied inside k3 only (flat => zero gradient)
  double outer_clamp = 0.0;  ///< clamp of the estimator value to [-c, c] (flat => zero gradient)
  /// verl "k1+", "abs+", "k3+": forward value of the estimator, gradient of k2 = (lp - lr).
  /// (0.5 d^2 - sg[0.5 d^2] + sg[f] in autograd terms.)
  bool straight_through = false;
};

// ---------------------------------------------------------------------------------------------
// Plain estimators (no clamp): value and d/dlp.

/// k1 = lp - lr.
template <class T>
GRPO_HOST_DEVICE constexpr T kl_k1(T lp, T lr) noexcept {
  return lp - lr;
}
/// d k1 / d lp = 1.
template <class T>
GRPO_HOST_DEVICE constexpr T kl_k1_grad(T /*lp*/, T /*lr*/) noexcept {
  return T(1);
}

/// abs = |lp - lr|.
template <class T>
GRPO_HOST_DEVICE constexpr T kl_abs(T lp, T lr) noexcept {
  const T d = lp - lr;
  return d < T(0) ? -d : d;
}
/// d abs / d lp = sign(lp - lr), 0 at lp == lr (torch's abs backward uses sgn, sgn(0) = 0).
template <class T>
GRPO_HOST_DEVICE constexpr T kl_abs_grad(T lp, T lr) noexcept {
  const T d = lp - lr;
  return d > T(0) ? T(1) : (d < T(0) ? T(-1) : T(0));
}

/// k2 = 0.5 (lp - lr)^2.
template <class T>
GRPO_HOST_DEVICE constexpr T kl_k2(T lp, T lr) noexcept {
  const T d = lp - lr;
  return T(0.5) * d * d;
}
/// d k2 / d lp = lp - lr. This is also the straight-through gradient of the "+" variants.
template <class T>
GRPO_HOST_DEVICE constexpr T kl_k2_grad(T lp, T lr) noexcept {
  return lp - lr;
}

/// k3 = e^d - d - 1 with d = lr - lp, optionally with d clamped to [-inner, inner] first
/// (verl clamps at 20 so e^d cannot overflow). `inner <= 0` disables the clamp.
template <class T>
GRPO_HOST_DEVICE constexpr T kl_k3(T lp, T lr, T inner = T(0)) noexcept {
  T d = lr - lp;
  if (inner > T(0)) d = d > inner ? inner : (d < -inner ? -inner : d);
  return math::exp(d) - d - T(1);
}
/// d k3 / d lp = 1 - e^(lr - lp); zero where the inner clamp binds (torch.clamp passes the gradient
/// only for -inner <= d <= inner).
template <class T>
GRPO_HOST_DEVICE constexpr T kl_k3_grad(T lp, T lr, T inner = T(0)) noexcept {
  const T d = lr - lp;
  if (inner > T(0) && (d > inner || d < -inner)) return T(0);
  return T(1) - math::exp(d);
}

// ---------------------------------------------------------------------------------------------
// Configured estimator: dispatch + outer clamp + straight-through.

/// Unclamped value of estimator `e` (inner clamp applies to k3 only).
template <class T>
GRPO_HOST_DEVICE constexpr T kl_raw(kl_estimator e, T lp, T lr, T inner) noexcept {
  switch (e) {
    case kl_estimator::k1: return kl_k1(lp, lr);
    case kl_estimator::abs: return kl_abs(lp, lr);
    case kl_estimator::k2: return kl_k2(lp, lr);
    case kl_estimator::k3: return kl_k3(lp, lr, inner);
  }
  return T(0);
}
/// d/dlp of kl_raw.
template <class T>
GRPO_HOST_DEVICE constexpr T kl_raw_grad(kl_estimator e, T lp, T lr, T inner) noexcept {
  switch (e) {
    case kl_estimator::k1: return kl_k1_grad(lp, lr);
    case kl_estimator::abs: return kl_abs_grad(lp, lr);
    case kl_estimator::k2: return kl_k2_grad(lp, lr);
    case kl_estimator::k3: return kl_k3_grad(lp, lr, inner);
  }
  return T(0);
}

/// Per-token KL value under `p`: clamp(kl_raw, -outer, outer) when outer > 0.
/// @pre p.inner_clamp, p.outer_clamp finite.
template <class T>
GRPO_HOST_DEVICE constexpr T kl_value(const kl_params& p, T lp, T lr) noexcept {
  T v = kl_raw(p.estimator, lp, lr, T(p.inner_clamp));
  const T c = T(p.outer_clamp);
  if (c > T(0)) v = v > c ? c : (v < -c ? -c : v);
  return v;
}

/// d kl_value / d lp. Straight-through ("+") variants return the k2 gradient (lp - lr) whatever
/// the clamps: in verl the value comes from a detached term, the gradient from 0.5 (lp-lr)^2.
/// Otherwise the outer clamp zeroes the gradient where it binds (strictly outside [-c, c]).
template <class T>
GRPO_HOST_DEVICE constexpr T kl_grad(const kl_params& p, T lp, T lr) noexcept {
  if (p.straight_through) return kl_k2_grad(lp, lr);
  const T c = T(p.outer_clamp);
  if (c > T(0)) {
    const T v = kl_raw(p.estimator, lp, lr, T(p.inner_clamp));
    if (v > c || v < -c) return T(0);
  }
  return kl_raw_grad(p.estimator, lp, lr, T(p.inner_clamp));
}

/// TRL `use_bias_correction_kl` (DeepSeek-V3.2): kl * r, where r = pi_theta/pi_old is NOT detached.
/// Value only; the product rule d(kl r) = kl' r + kl r' is applied by the caller, who knows r'.
template <class T>
GRPO_HOST_DEVICE constexpr T kl_bias_corrected(T kl, T ratio) noexcept {
  return kl * ratio;
}

}  // namespace grpo::ops

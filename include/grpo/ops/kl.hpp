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

/// A value and its derivative w.r.t. lp, computed together (one exp for k3).
template <class T>
struct kl_value_grad_t {
  T value;
  T grad;
};

/// k3 = e^d - d - 1 with d = lr - lp, optionally with d clamped to [-inner, inner] first (verl
/// clamps at 20 so e^d cannot overflow; `inner <= 0` disables it), and d k3 / d lp = 1 - e^d,
/// zero where the inner clamp binds (torch.clamp passes the gradient only for -inner <= d <=
/// inner).
template <class T>
GRPO_HOST_DEVICE constexpr kl_value_grad_t<T> kl_k3_value_grad(T lp, T lr,
                                                               T inner = T(0)) noexcept {
  T d = lr - lp;
  bool flat = false;
  if (inner > T(0) && (d > inner || d < -inner)) {
    flat = true;
    d = d > inner ? inner : -inner;
  }
  const T e = math::exp(d);
  return {e - d - T(1), flat ? T(0) : T(1) - e};
}
/// k3 value (see kl_k3_value_grad).
template <class T>
GRPO_HOST_DEVICE constexpr T kl_k3(T lp, T lr, T inner = T(0)) noexcept {
  return kl_k3_value_grad(lp, lr, inner).value;
}
/// d k3 / d lp (see kl_k3_value_grad).
template <class T>
GRPO_HOST_DEVICE constexpr T kl_k3_grad(T lp, T lr, T inner = T(0)) noexcept {
  return kl_k3_value_grad(lp, lr, inner).grad;
}

// ---------------------------------------------------------------------------------------------
// Configured estimator: dispatch + outer clamp + straight-through.

/// Unclamped value and d/dlp of estimator `e` (inner clamp applies to k3 only).
template <class T>
GRPO_HOST_DEVICE constexpr kl_value_grad_t<T> kl_raw_value_grad(kl_estimator e, T lp, T lr,
                                                                T inner) noexcept {
  switch (e) {
    case kl_estimator::k1:
      return {kl_k1(lp, lr), kl_k1_grad(lp, lr)};
    case kl_estimator::abs:
      return {kl_abs(lp, lr), kl_abs_grad(lp, lr)};
    case kl_estimator::k2:
      return {kl_k2(lp, lr), kl_k2_grad(lp, lr)};
    case kl_estimator::k3:
      return kl_k3_value_grad(lp, lr, inner);
  }
  return {T(0), T(0)};
}
/// Unclamped value of estimator `e`.
template <class T>
GRPO_HOST_DEVICE constexpr T kl_raw(kl_estimator e, T lp, T lr, T inner) noexcept {
  return kl_raw_value_grad(e, lp, lr, inner).value;
}

/// Per-token KL under `p` and its derivative w.r.t. lp:
///   value = clamp(kl_raw, -outer, outer) when outer > 0;
///   grad  = (lp - lr) for straight-through ("+") variants whatever the clamps (verl: the value is
///           a detached term, the gradient comes from 0.5 (lp-lr)^2); otherwise d kl_raw / d lp,
///           zeroed where the outer clamp binds (strictly outside [-c, c]).
/// @pre p.inner_clamp, p.outer_clamp finite and >= 0.
template <class T>
GRPO_HOST_DEVICE constexpr kl_value_grad_t<T> kl_value_grad(const kl_params& p, T lp,
                                                            T lr) noexcept {
  auto r = kl_raw_value_grad(p.estimator, lp, lr, T(p.inner_clamp));
  const T c = T(p.outer_clamp);
  if (c > T(0) && (r.value > c || r.value < -c)) {
    r.value = r.value > c ? c : -c;
    r.grad = T(0);
  }
  if (p.straight_through) r.grad = kl_k2_grad(lp, lr);
  return r;
}
/// Per-token KL value under `p` (see kl_value_grad).
template <class T>
GRPO_HOST_DEVICE constexpr T kl_value(const kl_params& p, T lp, T lr) noexcept {
  return kl_value_grad(p, lp, lr).value;
}
/// d kl_value / d lp (see kl_value_grad).
template <class T>
GRPO_HOST_DEVICE constexpr T kl_grad(const kl_params& p, T lp, T lr) noexcept {
  return kl_value_grad(p, lp, lr).grad;
}

/// TRL `use_bias_correction_kl` (DeepSeek-V3.2): kl * r, where r = pi_theta/pi_old is NOT detached.
/// Value only; the product rule d(kl r) = kl' r + kl r' is applied by the caller, who knows r'.
template <class T>
GRPO_HOST_DEVICE constexpr T kl_bias_corrected(T kl, T ratio) noexcept {
  return kl * ratio;
}

}  // namespace grpo::ops

// SPDX-License-Identifier: Apache-2.0
/// @file math.hpp
/// @brief Scalar math shims (exp/log/log1p/expm1 for host and device) and grpo::online_lse, the
///        associative streaming log-sum-exp / entropy state (Milakov & Gimelshein, arXiv
///        1805.02867).
#pragma once

#include <grpo/core/config.hpp>

#include <cmath>
#include <limits>
#include <type_traits>

namespace grpo::math {

// The shims pick std:: on the host and the CUDA libdevice functions in device code, so the element
// maths of include/grpo/ops/ compiles unchanged under nvcc (one source of maths, design.md section
// 3). They are accurate versions (expf, not __expf): the fast intrinsics lose ~2 ulp more and the
// selective log-softmax targets 1e-5 absolute error on log p.

/// e^x.
GRPO_HOST_DEVICE GRPO_FORCEINLINE float exp(float x) noexcept {
#if defined(__CUDA_ARCH__)
  return ::expf(x);
#else
  return std::exp(x);
#endif
}
/// e^x in double precision.
GRPO_HOST_DEVICE GRPO_FORCEINLINE double exp(double x) noexcept {
#if defined(__CUDA_ARCH__)
  return ::exp(x);
#else
  return std::exp(x);
#endif
}
/// Natural logarithm.
GRPO_HOST_DEVICE GRPO_FORCEINLINE float log(float x) noexcept {
#if defined(__CUDA_ARCH__)
  return ::logf(x);
#else
  return std::log(x);
#endif
}
GRPO_HOST_DEVICE GRPO_FORCEINLINE double log(double x) noexcept {
#if defined(__CUDA_ARCH__)
  return ::log(x);
#else
  return std::log(x);
#endif
}
/// log(1 + x), accurate for |x| << 1 (used for lse = m + log1p(e) when one logit dominates).
GRPO_HOST_DEVICE GRPO_FORCEINLINE float log1p(float x) noexcept {
#if defined(__CUDA_ARCH__)
  return ::log1pf(x);
#else
  return std::log1p(x);
#endif
}
GRPO_HOST_DEVICE GRPO_FORCEINLINE double log1p(double x) noexcept {
#if defined(__CUDA_ARCH__)
  return ::log1p(x);
#else
  return std::log1p(x);
#endif
}
/// e^x - 1, accurate for |x| << 1 (1 - p = -expm1(log p) without cancellation when p -> 1).
GRPO_HOST_DEVICE GRPO_FORCEINLINE float expm1(float x) noexcept {
#if defined(__CUDA_ARCH__)
  return ::expm1f(x);
#else
  return std::expm1(x);
#endif
}
GRPO_HOST_DEVICE GRPO_FORCEINLINE double expm1(double x) noexcept {
#if defined(__CUDA_ARCH__)
  return ::expm1(x);
#else
  return std::expm1(x);
#endif
}

/// +infinity of type T (host and device).
template <class T>
GRPO_HOST_DEVICE constexpr T infinity() noexcept {
  return std::numeric_limits<T>::infinity();
}

/// True when x is neither NaN nor +-inf (host and device; works under -ffast-math-free builds).
template <class T>
GRPO_HOST_DEVICE constexpr bool is_finite(T x) noexcept {
  return x == x && x - x == T(0);
}

}  // namespace grpo::math

namespace grpo {

/// Streaming state of a Gibbs distribution q_i = exp(beta * x_i) / Z over a sequence of values x_i
/// pushed one at a time or merged from partial states: log Z (the log-sum-exp), the entropy of q
/// and the expectation E_q[v] of a per-element value v. `beta` is the inverse temperature (1/T);
/// values are pushed in raw (unscaled) units so that the differences x - m that enter exp() are
/// exact for nearby logits and temperature never rounds a large offset (|x| ~ 1e4) into the result.
///
/// State (all relative to the running maximum m, so it is invariant to a common offset of the x):
///   - m : max x pushed (-inf while empty);
///   - e : sum_i exp(beta (x_i - m)) - 1, i.e. the mass beyond ONE maximal element. Storing s - 1
///         instead of s keeps q_max = 1 / (1 + e) and 1 - q_max = e / (1 + e) exact when one logit
///         dominates (e ~ 1e-7 would vanish next to 1 in float); e = -1 encodes the empty state;
///   - t : sum_i exp(beta (x_i - m)) * beta (x_i - m)  (<= 0), so that
///         entropy H = log s - t / s with s = 1 + e: no cancellation of two large numbers;
///   - w : sum_i exp(beta (x_i - m)) * v_i for push(x, v)  (E_q[v] = w / s).
///
/// Rescaling when the maximum grows from m to m' (c = exp(beta (m - m'))):
///   s' = c s + (new terms),  t' = c (t + beta (m - m') s),  w' = c w.
/// The state is associative and commutative (up to rounding): merge() combines vocab splits,
/// threads, tensor-parallel ranks and CUDA thread blocks. -inf entries contribute nothing; a state
/// that saw only -inf stays empty: lse() = -inf, entropy() = 0, mean() = 0.
///
/// `Acc` is the accumulation type (float in kernels, double in references).
template <class Acc>
struct basic_online_lse {
  static_assert(std::is_floating_point_v<Acc>, "online_lse accumulates in a floating-point type");
  Acc beta = Acc(1);               ///< inverse temperature, > 0
  Acc m = -math::infinity<Acc>();  ///< running maximum of the raw x (-inf when empty)
  Acc e = Acc(-1);                 ///< sum exp(beta (x - m)) - 1
  Acc t = Acc(0);                  ///< sum exp(beta (x - m)) * beta (x - m)
  Acc w = Acc(0);                  ///< sum exp(beta (x - m)) * v

  GRPO_HOST_DEVICE constexpr basic_online_lse() noexcept = default;
  /// @pre beta > 0 and finite.
  GRPO_HOST_DEVICE constexpr explicit basic_online_lse(Acc inverse_temperature) noexcept
      : beta(inverse_temperature) {}

  /// A partial state computed elsewhere (e.g. by a vectorised block loop), in the encoding above.
  /// @pre e >= 0 unless the partial is empty (m = -inf, e = -1, t = w = 0).
  GRPO_HOST_DEVICE static constexpr basic_online_lse from_partial(Acc beta, Acc m, Acc e, Acc t,
                                                                  Acc w = Acc(0)) noexcept {
    basic_online_lse r(beta);
    r.m = m;
    r.e = e;
    r.t = t;
    r.w = w;
    return r;
  }

  /// True while no finite value has been pushed.
  GRPO_HOST_DEVICE constexpr bool empty() const noexcept { return !(m > -math::infinity<Acc>()); }

  /// Push one value x (raw units) whose carried value v is 0.
  GRPO_HOST_DEVICE void push(Acc x) noexcept { push(x, Acc(0)); }

  /// Push one value x with a carried value v: afterwards mean() = sum q_i v_i. With v = beta x,
  /// mean() is the expected scaled logit sum q z and lse() - mean() the entropy; entropy() gives
  /// the same without cancellation.
  /// @pre x is not NaN and not +inf (a NaN propagates into every output; callers validate).
  GRPO_HOST_DEVICE void push(Acc x, Acc v) noexcept {
    if (!(x > -math::infinity<Acc>())) return;  // exp(-inf) = 0: no mass, nothing changes
    if (x > m) {
      // New maximum: the previous mass s = 1 + e is rescaled by c = exp(beta (m - x)); x itself now
      // carries the exact unit. For the empty state s = 0 and every old sum stays 0.
      const Acc s = Acc(1) + e;
      if (s > Acc(0)) {
        const Acc d = beta * (m - x);
        const Acc c = math::exp(d);
        e = c * s;
        t = c * (t + d * s);
        w = c * w + v;
      } else {
        e = Acc(0);
        t = Acc(0);
        w = v;
      }
      m = x;
    } else {
      const Acc d = beta * (x - m);
      const Acc p = math::exp(d);
      e += p;
      t += p * d;
      w += p * v;
    }
  }

  /// Combine with another state of the same beta (another block, thread or rank).
  /// @pre o.beta == beta.
  GRPO_HOST_DEVICE void merge(const basic_online_lse& o) noexcept {
    if (o.empty()) return;
    if (empty()) {
      m = o.m;
      e = o.e;
      t = o.t;
      w = o.w;
      return;
    }
    // Fold the state with the smaller maximum (lo) into the one with the larger (hi):
    // s = s_hi + c s_lo  ->  e = e_hi + c (1 + e_lo); ties give c = 1 and e = e_hi + 1 + e_lo.
    const bool self_hi = m >= o.m;
    const Acc m_hi = self_hi ? m : o.m;
    const Acc e_hi = self_hi ? e : o.e, e_lo = self_hi ? o.e : e;
    const Acc t_hi = self_hi ? t : o.t, t_lo = self_hi ? o.t : t;
    const Acc w_hi = self_hi ? w : o.w, w_lo = self_hi ? o.w : w;
    const Acc d = beta * ((self_hi ? o.m : m) - m_hi);  // <= 0
    const Acc c = math::exp(d);
    const Acc s_lo = Acc(1) + e_lo;
    m = m_hi;
    e = e_hi + c * s_lo;
    t = t_hi + c * (t_lo + d * s_lo);
    w = w_hi + c * w_lo;
  }

  /// s = sum exp(beta (x - m)) (0 when empty).
  GRPO_HOST_DEVICE constexpr Acc sum() const noexcept { return Acc(1) + e; }
  /// log s = log1p(e): the log-normaliser relative to beta m.
  GRPO_HOST_DEVICE Acc log_sum() const noexcept { return math::log1p(e); }
  /// log-sum-exp of the scaled values: log sum exp(beta x_i) = beta m + log1p(e); -inf when empty.
  GRPO_HOST_DEVICE Acc lse() const noexcept {
    return empty() ? -math::infinity<Acc>() : beta * m + math::log1p(e);
  }
  /// log q(x) = beta (x - m) - log1p(e) for a value x that was pushed (exact for x near m).
  GRPO_HOST_DEVICE Acc log_prob(Acc x) const noexcept { return beta * (x - m) - math::log1p(e); }
  /// Shannon entropy of q in nats: H = log s - t / s (>= 0). 0 for the empty state.
  GRPO_HOST_DEVICE Acc entropy() const noexcept {
    if (empty()) return Acc(0);
    const Acc s = Acc(1) + e;
    const Acc h = math::log1p(e) - t / s;
    return h < Acc(0) ? Acc(0) : h;  // rounding may leave -1 ulp for a one-hot row; NaN passes
  }
  /// E_q[v] = w / s for the values carried by push(x, v); 0 when empty.
  GRPO_HOST_DEVICE Acc mean() const noexcept { return empty() ? Acc(0) : w / (Acc(1) + e); }
};

/// The float accumulator used by the CPU and CUDA kernels.
using online_lse = basic_online_lse<float>;
/// The double accumulator used by references and tests.
using online_lse_f64 = basic_online_lse<double>;

}  // namespace grpo

// SPDX-License-Identifier: Apache-2.0
/// @file math.hpp
/// @brief Scalar math shims (exp/log/log1p/expm1 for host and device), the vectorisable float
///        fast_exp / fast_log of the CPU vocabulary loops, and grpo::online_lse, the
///        associative streaming log-sum-exp / entropy state (Milakov & Gimelshein, arXiv
///        1805.02867).
#pragma once

#include <grpo/core/config.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
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

// ---------------------------------------------------------------------------------------------
// Vectorisable exp / log for the hot vocabulary loops (shared by logprob.hpp, fused_grpo.hpp,
// sampler.hpp and the grpo::distill engine; ops/distill.hpp re-exports them under its old names).
//
// grpo::math::exp is std::exp on the host, which g++ never vectorises without -ffast-math (glibc
// declares its SIMD variants only under __FAST_MATH__). The loops over 32k-152k vocabulary entries
// do 2-6 exponentials per element, so a scalar libm call would make them compute-bound by an order
// of magnitude. fast_exp / fast_log are branch-free Cody-Waite + minimax polynomials (the
// classic Cephes expf / logf, < 2 ulp on their range) made only of arithmetic, selects and bit
// casts, which every compiler vectorises. Double precision (references, finite-difference runs)
// and device code use the accurate shims above unchanged.

/// c ? a : b as data (a bit mask), not as control flow. g++ 12 jump-threads a ?: whose condition
/// makes the rest of an inlined polynomial constant-foldable (e.g. a clamp) into branches that its
/// if-conversion then refuses to undo under the default -ftrapping-math, and the vocabulary loop
/// stays scalar; a mask select leaves nothing to thread. Double precision and device code use ?:.
template <class A>
GRPO_HOST_DEVICE GRPO_FORCEINLINE A select(bool c, A a, A b) noexcept {
#if defined(__CUDA_ARCH__)
  return c ? a : b;
#else
  if constexpr (std::is_same_v<A, float>) {
    const std::int32_t m = -static_cast<std::int32_t>(c);
    return std::bit_cast<float>((std::bit_cast<std::int32_t>(a) & m) |
                                (std::bit_cast<std::int32_t>(b) & ~m));
  } else {
    return c ? a : b;
  }
#endif
}

/// e^x for float x in [-87.3, 88.3] (or NaN, which propagates), with no range handling at all:
/// the single exp polynomial of the CPU loops. Cody-Waite reduction x = n ln 2 + r,
/// |r| <= ln 2 / 2, then the Cephes expf minimax polynomial e^r ~ 1 + r + r^2 P(r) (< 2 ulp,
/// 1.3 ulp measured over every float of [-87, 0]), evaluated in two
/// independent halves (P = (p0 r^2 + p1 r + p2) r^3 + (p3 r^2 + p4 r + p5)) so that consecutive
/// elements overlap in the pipeline instead of waiting on one 6-deep Horner chain, and 2^n built in
/// the exponent field. Callers that already bound their argument (a log-probability clamped at
/// -87, a shifted logit <= 0) call this directly: the two range clamps of fast_exp_core cost about
/// a third of the exp on AVX-512 (compare + blend each; g++ 12 will not emit min/max for them).
GRPO_HOST_DEVICE GRPO_FORCEINLINE float fast_exp_bounded(float x) noexcept {
  constexpr float log2e = 1.44269504088896341f;
  constexpr float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float t = x * log2e + shifter;
  const float n = t - shifter;  // n = round(x log2 e) in [-126, 127], exact
  // r = x - n ln 2 in two pieces (Cody-Waite): the first product is exact.
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const float r2 = r * r, r3 = r2 * r;
  float ya = 1.9875691500e-4f * r + 1.3981999507e-3f;
  float yb = 4.1665795894e-2f * r + 1.6666665459e-1f;
  ya = ya * r + 8.3334519073e-3f;
  yb = yb * r + 5.0000001201e-1f;
  const float y = (ya * r3 + yb) * r2 + (r + 1.0f);
  // 2^n through the exponent field (a normal float for n in [-126, 127]).
  const std::int32_t ni = std::bit_cast<std::int32_t>(t) - std::bit_cast<std::int32_t>(shifter);
  return y * std::bit_cast<float>((ni + 127) << 23);
}

/// e^max(x, -87.3) for float x <= 88.3 with no output select (pure arithmetic): fast_exp_bounded
/// after the two range clamps. Used directly where the flush of e^x to 0 below -87.3 does not
/// matter (the log-add-exp correction term); composed with other selects it still vectorises,
/// which a select on the result does not always (g++ 12).
GRPO_HOST_DEVICE GRPO_FORCEINLINE float fast_exp_core(float x) noexcept {
  // Flat (non-nested) selects only: g++ turns a nested ?: into branches it then cannot
  // if-convert back when the result feeds further arithmetic.
  const float xlo = select(x < -87.3f, -87.3f, x);
  const float xc = select(xlo > 88.3f, 88.3f, xlo);
  return fast_exp_bounded(xc);
}

/// e^x for the vocabulary loops. float on the host: polynomial, exact 0 for x < -87.3 (e^x is then
/// below 1.2e-38, negligible next to the unit mass of a probability row) and for x = -inf; +inf for
/// x > 88.3 (callers only exponentiate log-probabilities and log-ratios <= 0). Other types and
/// device code: grpo::math::exp.
template <class A>
GRPO_HOST_DEVICE GRPO_FORCEINLINE A fast_exp(A x) noexcept {
#if defined(__CUDA_ARCH__)
  return exp(x);
#else
  if constexpr (!std::is_same_v<A, float>) {
    return exp(x);
  } else {
    const float v = fast_exp_core(x);
    const float v_lo = select(x < -87.3f, 0.0f, v);
    return select(x > 88.3f, infinity<float>(), v_lo);
  }
#endif
}

/// log x for a positive, finite, normal float x, with no guard at all (pure arithmetic, so it
/// vectorises when composed with other selects): the Cephes logf polynomial, < 2 ulp.
GRPO_HOST_DEVICE GRPO_FORCEINLINE float fast_log_normal(float x) noexcept {
  // x = 2^e (1 + m) with 1 + m in [sqrt(1/2), sqrt(2)), found with integer arithmetic only (no
  // select, so it vectorises in any composition): subtracting the bits of sqrt(1/2) makes the
  // exponent field of the difference the wanted e (arithmetic shift), and adding them back to the
  // mantissa bits rebuilds 1 + m.
  constexpr std::int32_t sqrt_half = 0x3f3504f3;
  const std::int32_t adj = std::bit_cast<std::int32_t>(x) - sqrt_half;
  const float e = static_cast<float>(adj >> 23);
  const float m = std::bit_cast<float>((adj & 0x007fffff) + sqrt_half) - 1.0f;
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  y += e * -2.12194440e-4f;
  y += -0.5f * z;
  return m + y + e * 0.693359375f;
}

/// log x for the vocabulary loops (x a normal float, 0 -> -inf, < 0 or NaN -> NaN, +inf -> +inf).
/// float on the host: polynomial; other types and device code: grpo::math::log.
template <class A>
GRPO_HOST_DEVICE GRPO_FORCEINLINE A fast_log(A x) noexcept {
#if defined(__CUDA_ARCH__)
  return log(x);
#else
  if constexpr (!std::is_same_v<A, float>) {
    return log(x);
  } else {
    const float v = fast_log_normal(x);
    constexpr float nan = std::numeric_limits<float>::quiet_NaN();
    return x > 0.0f ? (x < infinity<float>() ? v : x)
                    : (x == 0.0f ? -infinity<float>() : nan);
  }
#endif
}

/// e^x for x <= 0 where a flush to 0 below -87.3 is not needed (float host: fast_exp_core).
template <class A>
GRPO_HOST_DEVICE GRPO_FORCEINLINE A fast_exp_unit(A x) noexcept {
#if defined(__CUDA_ARCH__)
  return exp(x);
#else
  if constexpr (!std::is_same_v<A, float>) {
    return exp(x);
  } else {
    return fast_exp_core(x);
  }
#endif
}

/// log(1 + y) for y in [0, 1] (the log-add-exp correction term), branch-free; double and device
/// code use grpo::math::log1p. Absolute error < 1.2e-7 (y below 6e-8 rounds 1 + y to 1; the
/// resulting error is below y itself).
template <class A>
GRPO_HOST_DEVICE GRPO_FORCEINLINE A fast_log1p_unit(A y) noexcept {
#if defined(__CUDA_ARCH__)
  return log1p(y);
#else
  if constexpr (!std::is_same_v<A, float>) {
    return log1p(y);
  } else {
    return fast_log_normal(1.0f + y);
  }
#endif
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

  // No GRPO_HOST_DEVICE on a defaulted constructor: nvcc infers it (and warns, #20012, if marked).
  constexpr basic_online_lse() noexcept = default;
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

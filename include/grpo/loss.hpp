// SPDX-License-Identifier: Apache-2.0
/// @file loss.hpp
/// @brief grpo::compute_loss: the full GRPO-family objective over [B, T] log-prob views (policy
///        term, rollout IS correction, OPSM, top-entropy and truncation masks, in-loss KL, entropy
///        bonus, aggregation) returning the loss, per-token loss, d loss / d logp, d loss / d H and
///        one metric schema.
///
/// Order of operations (TRL GRPOTrainer._compute_loss, b.1 step 7, generalised):
///   1. final mask m = mask * (1 - truncated_row) [* OPSM keep] [* top-entropy mask]
///      (OPSM / entropy masks join the mask, i.e. the denominators, unless *_in_denominator is
///      false, in which case they only multiply the policy term as in TRL);
///   2. ratio r per is_level, with the optional log-ratio clamp;
///   3. policy term l_pol(r, A, lp); multiplied by OPSM / entropy multipliers and by the detached
///      rollout IS weight rho (policy term only; VESPO folds rho into phi instead);
///   4. + kl_coef * KL (x r when bias-corrected), NOT multiplied by rho, OPSM or entropy masks;
///   5. aggregation with denominators from the final mask (agg_options; KL may use its own);
///   6. - entropy_coef * agg(H) over m * entropy mask.
/// The gradient is exact, including the stop-gradient structure of GSPO(-token), the sequence
/// ratio's spread over tokens, clamp flat regions, and the product rule of bias-corrected KL.
///
/// Three engines, one semantics: token-level ratios without row-wide terms run the vectorised
/// token path (detail::fast_simd_row_run, AVX-512 kernel for float); sequence-level ratios (GSPO,
/// GSPO-token) with PPO clip and no OPSM / TIS / IS weights / entropy run the sequence path (one
/// row sweep for the sequence ratio, then the tokens against the row constants:
/// detail::gspo_v512_row_impl for float on AVX-512, detail::gspo_simd_row on xsimd batches for
/// double and other builds, a scalar twin in the general engine's exact order for rows they flag);
/// everything else runs the general engine over <grpo/detail/loss_token.hpp>. Layouts: rows
/// contiguous along t (per-sequence advantages may be a broadcast), float or double data.
#pragma once

#include <grpo/aggregate.hpp>
#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/detail/loss_token.hpp>
#include <grpo/detail/openrlhf_f32.hpp>
#include <grpo/detail/simd.hpp>
#include <grpo/kl.hpp>
#include <grpo/loss/options.hpp>
#include <grpo/loss/params.hpp>
#include <grpo/loss/plan.hpp>
#include <grpo/metrics.hpp>
#include <grpo/ops/kl.hpp>
#include <grpo/ops/policy_loss.hpp>
#include <grpo/policy_loss.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>  // std::exception_ptr (OpenMP error transport)
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace grpo {


namespace detail {

/// Linear-interpolation quantile of a non-empty sample (torch.quantile, interpolation='linear').
inline double quantile_linear(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return v[lo] + frac * (v[hi] - v[lo]);
}

template <class V>
bool has(const V& v) noexcept {
  return v.data_handle() != nullptr;
}

/// Per-row partial results of the token-level fast path, merged serially in row order so that the
/// loss, gradient and metrics are bitwise identical whatever the number of threads.
struct fast_row_part {
  static constexpr double kInf = std::numeric_limits<double>::infinity();
  double pol = 0, kls = 0;
  // metric blocks: {sum w x, sum w x^2, min, max}
  double ak[4] = {0, 0, kInf, -kInf}, av[4] = {0, 0, kInf, -kInf}, ra[4] = {0, 0, kInf, -kInf};
  double kb[4] = {0, 0, kInf, -kInf};
  double c_lo = 0, c_hi = 0, c_re = 0, c_du = 0, c_w = 0, wsum = 0;
  /// GSPO (sequence level, per-sequence advantages): the row's one clip decision, TRL's (B, 1)
  /// metrics (bit 0 low, bit 1 high, bit 2 dual); recorded for every row, empty ones included.
  unsigned char seq_clip = 0;
};

/// Uniform parameters of the sequence-level (GSPO / GSPO-token) row kernels: the policy options
/// (the row constants go through grpo::policy_token and detail::token_ratio in double, exactly
/// the general engine's calls) and the KL term.
struct gspo_params {
  policy_options P{};
  ops::kl_params kl{};
  double kl_coef = 0;
  bool kl_bias = false;
  bool seq = true;  ///< is_level::sequence (false: sequence_token, no spread term)
};

// ---- vectorised token-level fast path ----------------------------------------------------------
// The row kernel below runs the fast path's per-token maths on a lane type V (an xsimd batch, or
// the scalar C for the row tail and for builds without xsimd) through grpo/detail/simd.hpp, whose
// functions are the ops (called, or mirrored operation for operation and tested bitwise). Inputs
// are processed in their own precision C (float stays float, double stays double); every sum is
// accumulated per lane in C over at most kFlushBatches batches and then added to the row's double
// partial, so float rounding never accumulates over more than a few dozen terms.

/// Uniform parameters of the vectorised fast path, converted once to the compute type C.
template <class C>
struct fast_simd_params {
  ops::ppo_clip_params<C> cp{};
  C lr_min = 0, lr_max = 0;  ///< log-ratio clamp (+-inf = none)
  bool lr_clamped = false;   ///< a log-ratio bound is finite
  C eps_low = 0, eps_high = 0, tau_pos = 0, tau_neg = 0;
  bool cispo_cap = false;
  ops::kl_params kl{};
  C kl_coef = 0;
  bool kl_bias = false;
};

/// Row inputs of the vectorised fast path (contiguous along t). lo == lp when on-policy; A is
/// either a contiguous row or, when null, the row constant a0 (per-sequence advantages).
template <class C, class M, class G>
struct fast_simd_row {
  const C *lp = nullptr, *lo = nullptr, *lr = nullptr, *A = nullptr;
  C a0 = 0;
  const M* m = nullptr;
  bool trunc = false;
  G *g = nullptr, *ptl = nullptr, *ge = nullptr;
  C sp = 0, sk = 0;  ///< aggregation row factors of the policy and KL terms
  /// One past the last nonzero mask entry (pass 1): without per-token loss output the kernels
  /// stop reading at the first step boundary >= end and zero-fill the gradient after it.
  index_t end = 0;
  double n = 0;  ///< sum of the row's mask (pass 1; 0 for a truncated row)
  /// The next row's inputs (the row this thread most likely runs next), prefetched while this row
  /// ends so that a row does not start with a full memory latency per stream; null: none.
  const C *nlp = nullptr, *nlo = nullptr, *nlr = nullptr, *nA = nullptr;
  const M* nm = nullptr;
  /// The next row's `end` (sequence-level kernel: its valid part is prefetched during sweep 2).
  index_t nend = 0;
  /// Write the gradient with non-temporal (streaming) stores: set for outputs much larger than
  /// the last-level cache, where a regular store first reads the line it overwrites.
  bool nt = false;
  bool bin = false;  ///< every mask entry of the row is 0 or 1 (pass 1)
  /// A binary row whose ones are exactly [0, end) (right padding): the AVX-512 lean kernel then
  /// takes the valid lanes from `end` and never reads the mask.
  bool prefix = false;
};

/// Per-lane accumulators of one row: the sums of fast_row_part plus the block minima / maxima.
/// Sums run per lane in C for at most kFlushBatches steps, then are added lane by lane into double
/// lanes (a widening add the compiler vectorises: no horizontal work in the loop); the double
/// lanes are summed once per row.
template <class V>
struct fast_simd_acc {
  using C = simd::scalar_of<V>;
  static constexpr std::size_t L = simd::lane_traits<V>::size;
  static constexpr C kInf = std::numeric_limits<C>::infinity();
  // Sum slots: policy, KL, weight, clip low / high / dual, CISPO weight clip, then
  // sum w x (4 blocks: approx KL, advantage, ratio, KL value) and sum w x^2 (same blocks).
  enum slot : int { pol, kls, wsum, clo, chi, cdu, cw, s0, s1 = s0 + 4, n_slots = s1 + 4 };
  // (parenthesised: a braced V{x} would pick xsimd's initializer-list constructor)
  V sum[n_slots];
  V mn[4] = {V(kInf), V(kInf), V(kInf), V(kInf)};
  V mx[4] = {V(-kInf), V(-kInf), V(-kInf), V(-kInf)};
  double lanes[n_slots][L] = {};

  fast_simd_acc() noexcept {
    for (V& v : sum) v = V(C(0));
  }
  /// sum[k] += x (lane-wise).
  GRPO_FORCEINLINE void add(int k, const V& x) noexcept { sum[k] = sum[k] + x; }
  /// Weighted moments and extrema of x over the valid lanes (fast_row_part's blk).
  GRPO_FORCEINLINE void blk(int k, const V& x, const V& w, const simd::mask_of<V>& valid) noexcept {
    const V zero(C(0)), wx = w * x;
    sum[s0 + k] = sum[s0 + k] + simd::sel<V>(valid, wx, zero);
    sum[s1 + k] = sum[s1 + k] + simd::sel<V>(valid, wx * x, zero);
    mn[k] = simd::sel<V>(simd::band(valid, x < mn[k]), x, mn[k]);
    mx[k] = simd::sel<V>(simd::band(valid, x > mx[k]), x, mx[k]);
  }
  /// Moves the C lane sums into the double lanes and restarts them.
  void flush() noexcept {
    for (int k = 0; k < n_slots; ++k) {
      C tmp[L];
      simd::store<V>(tmp, sum[k]);
      for (std::size_t l = 0; l < L; ++l) lanes[k][l] += static_cast<double>(tmp[l]);
      sum[k] = V(C(0));
    }
  }
  /// Adds everything to the row partial (end of row; call flush() first).
  void finish(fast_row_part& rp) const noexcept {
    auto total = [&](int k) {
      double t = 0.0;
      for (std::size_t l = 0; l < L; ++l) t += lanes[k][l];
      return t;
    };
    rp.pol += total(pol);
    rp.kls += total(kls);
    rp.wsum += total(wsum);
    rp.c_lo += total(clo);
    rp.c_hi += total(chi);
    rp.c_re += total(clo) + total(chi);  // low needs A < 0, high A > 0: disjoint indicators
    rp.c_du += total(cdu);
    rp.c_w += total(cw);
    double* blocks[4] = {rp.ak, rp.av, rp.ra, rp.kb};
    for (int k = 0; k < 4; ++k) {
      blocks[k][0] += total(s0 + k);
      blocks[k][1] += total(s1 + k);
      C a[L], b[L];
      simd::store<V>(a, mn[k]);
      simd::store<V>(b, mx[k]);
      for (std::size_t l = 0; l < L; ++l) {
        const double x = static_cast<double>(a[l]), y = static_cast<double>(b[l]);
        blocks[k][2] = x < blocks[k][2] ? x : blocks[k][2];
        blocks[k][3] = y > blocks[k][3] ? y : blocks[k][3];
      }
    }
  }
};

/// Loads L = lanes(V) mask entries as C (a converting copy when M is not C).
template <class V, class M>
GRPO_FORCEINLINE V fast_load_as(const M* p) noexcept {
  using C = simd::scalar_of<V>;
  if constexpr (std::is_same_v<M, C>) {
    return simd::load<V>(p);
  } else {
    C tmp[simd::lane_traits<V>::size];
    for (std::size_t l = 0; l < simd::lane_traits<V>::size; ++l) tmp[l] = static_cast<C>(p[l]);
    return simd::load<V>(tmp);
  }
}
/// Stores the lanes of v to p as G (a converting copy when G is not C).
template <class V, class G>
GRPO_FORCEINLINE void fast_store_as(G* p, const V& v) noexcept {
  using C = simd::scalar_of<V>;
  if constexpr (std::is_same_v<G, C>) {
    simd::store<V>(p, v);
  } else {
    C tmp[simd::lane_traits<V>::size];
    simd::store<V>(tmp, v);
    for (std::size_t l = 0; l < simd::lane_traits<V>::size; ++l) p[l] = static_cast<G>(tmp[l]);
  }
}

/// One step of the vectorised fast path: tokens [t, t + lanes(V)) of a row. Same maths, order and
/// masking rules as the scalar fast path of compute_loss_into (selects instead of branches: a
/// padded lane contributes exactly 0 whatever its inputs). Returns the lanes whose token is valid
/// but has a non-finite input (the caller reruns the row on the scalar path for the error).
template <policy_loss_kind K, bool KL, class V, class M, class G>
GRPO_FORCEINLINE simd::mask_of<V> fast_simd_step(const fast_simd_params<simd::scalar_of<V>>& p,
                                                 const fast_simd_row<simd::scalar_of<V>, M, G>& rw,
                                                 index_t t, fast_simd_acc<V>& a) noexcept {
  using C = simd::scalar_of<V>;
  using simd::band;
  using simd::bor;
  using simd::sel;
  const V zero(C(0)), one(C(1));
  const V m = rw.trunc ? zero : fast_load_as<V>(rw.m + t);
  const auto valid = !(m == zero);               // (see simd.hpp: never != on batches)
  if (rw.ptl == nullptr && !simd::any(valid)) {  // padding only: gradient exactly 0
    fast_store_as<V>(rw.g + t, zero);
    if (rw.ge != nullptr) fast_store_as<V>(rw.ge + t, zero);
    return simd::none_set<V>();
  }
  const V lp = simd::load<V>(rw.lp + t);
  const V lo = rw.lo == rw.lp ? lp : simd::load<V>(rw.lo + t);
  const V A = rw.A == nullptr ? V(rw.a0) : simd::load<V>(rw.A + t);
  const V x = lp - lo;
  // With both log-ratio bounds infinite (TRL) clamp(x) = x and clamp_grad(x) r = r for every x
  // (NaN included: r is then NaN too), so the clamp is skipped bit-exactly.
  simd::ratio_terms<V> rt{x, one};
  V xc = x;
  if (p.lr_clamped) {
    rt = simd::ratio(x, V(p.lr_min), V(p.lr_max));
    xc = simd::clamp(x, V(p.lr_min), V(p.lr_max));
  } else {
    rt.r = simd::vexp(x);
    rt.dr = rt.r;
  }
  // Policy surrogate (policy_token's dispatch, resolved at compile time).
  V value = zero, d_ratio = zero, d_logp = zero, w = one;
  if constexpr (K == policy_loss_kind::ppo_clip) {
    const auto vg = simd::ppo_clip(rt.r, A, p.cp);
    value = vg.value;
    d_ratio = vg.grad;
  } else if constexpr (K == policy_loss_kind::cispo) {
    w = p.cispo_cap ? simd::cispo_weight_cap(rt.r, V(p.eps_high))
                    : simd::cispo_weight_clip(rt.r, p.eps_low, p.eps_high);
    value = ops::weighted_pg_loss(w, A, lp);
    d_logp = ops::weighted_pg_loss_grad(w, A, lp);
  } else if constexpr (K == policy_loss_kind::sapo) {
    const auto vg = simd::sapo(rt.r, A, p.tau_pos, p.tau_neg);
    value = vg.value;
    d_ratio = vg.grad;
  } else {
    static_assert(K == policy_loss_kind::reinforce, "fast path kinds: ppo, cispo, sapo, pg");
    value = ops::weighted_pg_loss(one, A, lp);
    d_logp = ops::weighted_pg_loss_grad(one, A, lp);
  }
  V ptl = value;
  const V Wp = V(rw.sp) * m;
  a.add(a.pol, sel<V>(valid, Wp * value, zero));
  V g = sel<V>(valid, Wp * (d_ratio * rt.dr + d_logp), zero);
  // Finiteness of the inputs of valid tokens: x - x is 0 for finite x and NaN otherwise, so one
  // compare of the sum checks them all.
  V nf = (lp - lp) + (lo - lo) + (A - A);
  if constexpr (KL) {
    // In-loss KL; bias-corrected (DeepSeek-V3.2): value k r, gradient k' r + k r'.
    const V lr = simd::load<V>(rw.lr + t);
    const auto kv = simd::kl(p.kl, lp, lr);
    V k = kv.value, kg = kv.grad, kd = zero;
    if (p.kl_bias) {
      kd = k * rt.dr;
      kg = kg * rt.r;
      k = ops::kl_bias_corrected(k, rt.r);
    }
    ptl = ptl + V(p.kl_coef) * k;
    const V Wk = V(rw.sk) * m;
    a.add(a.kls, sel<V>(valid, Wk * k, zero));
    g = g + sel<V>(valid, Wk * V(p.kl_coef) * (kg + kd), zero);
    a.blk(3, k, m, valid);
    nf = nf + (lr - lr);
  }
  if (rw.ptl != nullptr) fast_store_as<V>(rw.ptl + t, ptl);
  if (rw.ge != nullptr) fast_store_as<V>(rw.ge + t, zero);
  fast_store_as<V>(rw.g + t, g);
  // Metrics over valid tokens (m = 0 elsewhere).
  a.add(a.wsum, m);
  a.blk(0, -xc, m, valid);
  if (rw.A != nullptr) a.blk(1, A, m, valid);  // per-sequence A: from the row total at the end
  a.blk(2, rt.r, m, valid);
  if constexpr (K == policy_loss_kind::cispo)
    a.add(a.cw, sel<V>(band(valid, !(w == rt.r)), m, zero));
  if constexpr (K == policy_loss_kind::ppo_clip || K == policy_loss_kind::cispo) {
    auto lo_c = simd::none_set<V>(), hi_c = simd::none_set<V>(), du_c = simd::none_set<V>();
    if (K == policy_loss_kind::cispo && p.cispo_cap) {
      hi_c = band(rt.r > V(p.eps_high), A > zero);
    } else {
      lo_c = simd::clipped_low(rt.r, A, p.cp);
      hi_c = simd::clipped_high(rt.r, A, p.cp);
      du_c = simd::dual_clipped(rt.r, A, p.cp);
    }
    a.add(a.clo, sel<V>(band(valid, lo_c), m, zero));
    a.add(a.chi, sel<V>(band(valid, hi_c), m, zero));
    if (p.cp.dual_c > C(0))  // dual clip off: the indicator is identically 0
      a.add(a.cdu, sel<V>(band(valid, du_c), m, zero));
  }
  return band(valid, !(nf == zero));
}

/// Lane sums are flushed to double every kFlushBatches steps (<= 16 float roundings per lane).
inline constexpr index_t kFlushBatches = 16;
/// Prefetch distance of the vectorised row loop, in elements.
/// Gradient size (bytes) from which the AVX-512 fast path writes it with streaming stores.
#ifndef GRPO_LOSS_STREAM_STORE_BYTES
#define GRPO_LOSS_STREAM_STORE_BYTES (16u << 20)
#endif
#ifndef GRPO_LOSS_PREFETCH_LOCALITY
#define GRPO_LOSS_PREFETCH_LOCALITY 3
#endif
#ifndef GRPO_LOSS_PREFETCH_DISTANCE
#define GRPO_LOSS_PREFETCH_DISTANCE 256
#endif
inline constexpr index_t kPrefetch = GRPO_LOSS_PREFETCH_DISTANCE;
/// Read prefetch hint for p + ahead (never dereferenced: an address past the row end is harmless;
/// formed as an integer so no out-of-range pointer is created). No-op without the builtin.
template <class X>
GRPO_FORCEINLINE void fast_prefetch(const X* p, index_t ahead) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  const auto a =
      reinterpret_cast<std::uintptr_t>(p) + static_cast<std::uintptr_t>(ahead) * sizeof(X);
  __builtin_prefetch(reinterpret_cast<const void*>(a), 0, GRPO_LOSS_PREFETCH_LOCALITY);
#else
  (void)p;
  (void)ahead;
#endif
}

#if GRPO_HAS_AVX512
// (GCC 12 reports a false -W(maybe-)uninitialized inside avx512fintrin.h's _mm512_undefined_*
// operands of the widening conversions and reductions inlined here; silenced for this block.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#if defined(__GNUC__) || defined(__clang__)
#define GRPO_DETAIL_INLINE_LAMBDA __attribute__((always_inline))
#else
#define GRPO_DETAIL_INLINE_LAMBDA
#endif
// ---- AVX-512 row kernel (float inputs) ---------------------------------------------------------
// The same maths as fast_simd_step on 16-float registers with k-mask selects and masked
// arithmetic, simd::avx512::exp_lo (math::v512::exp's reduction and coefficients, Estrin-form
// polynomial: ~14 instructions against ~30 for xsimd::exp) and a cheaper bookkeeping:
//   - no per-token finiteness test: a valid token with a non-finite logp / old_logp makes the
//     row's masked sum of m x non-finite (and that never becomes finite again), a non-finite
//     ref_logp the sum of m k, a per-token advantage the sum of m A; the inputs a clamp could hide
//     from those sums (log-ratio clamp, KL clamps) go into one extra masked sum only when a clamp
//     is on; per-sequence advantages are checked once per row. A flagged row is rerun on the
//     scalar path (which throws, or, after a float overflow of a sum, computes it exactly);
//   - the policy and KL sums are sum m l and sum m k, scaled by the row factor at the row's end
//     (sum m k is also the KL metric's first moment);
//   - the ratio's extrema are exp of the log ratio's (exp is monotonic), the approximate KL's
//     moments are those of the log ratio with the sign flipped at the end;
//   - steps past the row's last valid token are not read (gradient zero-filled), a tail is one
//     masked step instead of a scalar loop, and the next row's first lines are prefetched while
//     this row ends;
//   - the common configuration (binary mask, no clamps / delta / dual clip / extra outputs) runs
//     a "lean" instantiation: m = 1 on valid lanes, clip counts are popcounts.
// Measured (Zen 5, L2-resident rows of 4096, TRL dapo + k3, one thread, whole call): 0.65 ns/token
// against 1.25 for the xsimd kernel on the same AVX-512 build.
// Float lane sums are flushed into double lanes every kFlushBatches steps as in fast_simd_acc.

/// Loads 16 (or the n < 16 lanes of `in`) mask entries as float.
template <bool Tail, class M>
GRPO_FORCEINLINE __m512 v512_load_as(const M* p, __mmask16 in, index_t n) noexcept {
  if constexpr (std::is_same_v<M, float>) {
    if constexpr (Tail)
      return _mm512_maskz_loadu_ps(in, p);
    else
      return _mm512_loadu_ps(p);
  } else {
    float tmp[16] = {};
    const index_t k = Tail ? n : 16;
    for (index_t l = 0; l < k; ++l) tmp[l] = static_cast<float>(p[l]);
    return _mm512_loadu_ps(tmp);
  }
}
/// Stores 16 (or the n lanes of `in`) floats to p as G.
template <bool Tail, class G>
GRPO_FORCEINLINE void v512_store_as(G* p, __m512 v, __mmask16 in, index_t n) noexcept {
  if constexpr (std::is_same_v<G, float>) {
    if constexpr (Tail)
      _mm512_mask_storeu_ps(p, in, v);
    else
      _mm512_storeu_ps(p, v);
  } else {
    float tmp[16];
    _mm512_storeu_ps(tmp, v);
    const index_t k = Tail ? n : 16;
    for (index_t l = 0; l < k; ++l) p[l] = static_cast<G>(tmp[l]);
  }
}
/// 16 float lane sums widened into 16 double lanes.
struct v512_dsum {
  __m512d a = _mm512_setzero_pd(), b = _mm512_setzero_pd();
  GRPO_FORCEINLINE void add(__m512 s) noexcept {
    a = _mm512_add_pd(a, _mm512_cvtps_pd(_mm512_castps512_ps256(s)));
    b = _mm512_add_pd(b, _mm512_cvtps_pd(_mm512_extractf32x8_ps(s, 1)));
  }
  double total() const noexcept { return _mm512_reduce_add_pd(_mm512_add_pd(a, b)); }
};

/// One row of the fast path on AVX-512 (float inputs). RowA: per-sequence advantage rw.a0.
/// Returns false if the row must be rerun on the scalar path (see the comment above).
/// KLM: 0 no KL term, 1 k3 without clamps or straight-through (TRL), 2 any estimator. Lean: a
/// binary (0 / 1) mask row and none of delta, dual clip, log-ratio clamp, KL clamps or bias
/// correction, per-token loss or entropy gradient outputs (the common configuration: those
/// branches are compiled out, which also frees the registers their state would hold; the weights
/// m are 1 on valid lanes and the clip counts are popcounts of the compare masks).
template <policy_loss_kind K, int KLM, bool RowA, bool Lean, class M, class G>
bool fast_v512_row_impl(const fast_simd_params<float>& p_in,
                        const fast_simd_row<float, M, G>& rw_in, index_t Tn, fast_row_part& rp) {
  namespace a5 = simd::avx512;
  constexpr bool KL = KLM != 0;
  // Local copies: the output stores could otherwise alias the parameters (reloaded every step).
  const fast_simd_params<float> p = p_in;
  const fast_simd_row<float, M, G> rw = rw_in;
  const a5::kl_config klc(p.kl);
  using vf = __m512;
  using mk = __mmask16;
  constexpr bool kPpo = K == policy_loss_kind::ppo_clip, kCispo = K == policy_loss_kind::cispo;
  constexpr bool kSapo = K == policy_loss_kind::sapo, kClip = kPpo || kCispo;
  const vf zero = _mm512_setzero_ps(), pinf = a5::set1(std::numeric_limits<float>::infinity());
  // Uniform parameters as registers (hoisted out of the loop by construction).
  a5::ppo_params cp(p.cp);
  if constexpr (Lean) cp.has_delta = cp.has_dual = false;
  const vf lr_min = a5::set1(p.lr_min), lr_max = a5::set1(p.lr_max);
  const vf cw_lo = a5::set1(1.0f - p.eps_low), cw_hi = a5::set1(1.0f + p.eps_high);
  const vf cap = a5::set1(p.eps_high), tau_pos = a5::set1(p.tau_pos), tau_neg = a5::set1(p.tau_neg);
  const vf kcoef = a5::set1(p.kl_coef), sp = a5::set1(rw.sp), skc = a5::set1(rw.sk * p.kl_coef);
  const bool lr_clamped = !Lean && p.lr_clamped, on_policy = rw.lo == rw.lp, trunc = rw.trunc;
  const bool prefix = Lean && rw.prefix && !trunc;
  const bool want_ptl = !Lean && rw.ptl != nullptr, want_ge = !Lean && rw.ge != nullptr;
  const bool cap_only = kCispo && p.cispo_cap, dual = kClip && !cap_only && cp.has_dual;
  const bool kl_hidden = !Lean && KL && (p.kl.inner_clamp > 0.0 || p.kl.outer_clamp > 0.0);
  const bool kl_bias = !Lean && p.kl_bias;
  const bool need_chk = lr_clamped || kl_hidden;
  const vf a0 = a5::set1(rw.a0);
  const a5::ppo_row prow(rw.a0);
  const mk a0_neg = rw.a0 < 0.0f ? mk(0xFFFF) : mk(0), a0_pos = rw.a0 > 0.0f ? mk(0xFFFF) : mk(0);
  // Float lane accumulators (flushed to double every kFlushBatches steps).
  vf s_pol = zero, s_x = zero, s_x2 = zero, s_r = zero, s_r2 = zero, s_k = zero, s_k2 = zero;
  vf s_a = zero, s_a2 = zero, c_lo = zero, c_hi = zero, c_du = zero, c_w = zero, chk = zero;
  vf x_mn = pinf, x_mx = a5::neg(pinf), k_mn = pinf, k_mx = x_mx, a_mn = pinf, a_mx = x_mx;
  std::int64_t n_lo = 0, n_hi = 0, n_du = 0, n_w = 0;  // Lean: clip counts (popcounts)
  v512_dsum d_pol, d_x, d_x2, d_r, d_r2, d_k, d_k2, d_a, d_a2, d_lo, d_hi, d_du, d_w, d_chk;
  auto flush = [&]() GRPO_DETAIL_INLINE_LAMBDA {
    d_pol.add(s_pol);
    d_x.add(s_x);
    d_x2.add(s_x2);
    d_r.add(s_r);
    d_r2.add(s_r2);
    s_pol = s_x = s_x2 = s_r = s_r2 = zero;
    if constexpr (KL) {
      d_k.add(s_k);
      d_k2.add(s_k2);
      s_k = s_k2 = zero;
    }
    if constexpr (!RowA) {
      d_a.add(s_a);
      d_a2.add(s_a2);
      s_a = s_a2 = zero;
    }
    if constexpr (kClip && !Lean) {
      d_lo.add(c_lo);
      d_hi.add(c_hi);
      d_du.add(c_du);
      c_lo = c_hi = c_du = zero;
    }
    if constexpr (kCispo && !Lean) {
      d_w.add(c_w);
      c_w = zero;
    }
    if (need_chk) {
      d_chk.add(chk);
      chk = zero;
    }
  };

  // Gradient stores: full steps are 64-byte aligned when nt (the row is split at the alignment
  // boundary below), so they can be streaming stores.
  const bool nt = std::is_same_v<G, float> && rw.nt;
  auto store_g = [&](auto tail_tag, index_t t, vf v, mk in, index_t n) GRPO_DETAIL_INLINE_LAMBDA {
    constexpr bool Tail = decltype(tail_tag)::value;
    if constexpr (std::is_same_v<G, float> && !Tail) {
      if (nt) {
        _mm512_stream_ps(rw.g + t, v);
        return;
      }
    }
    v512_store_as<Tail>(rw.g + t, v, in, n);
  };
  // One step: tokens [t, t + 16) (Tail: only the n lanes of `in`).
  auto step = [&](auto tail_tag, index_t t, mk in, index_t n) GRPO_DETAIL_INLINE_LAMBDA {
    constexpr bool Tail = decltype(tail_tag)::value;
    vf m = zero;
    mk valid = 0;
    if (Lean && prefix) {  // lanes t + l < end (m = 1 there is never read: Lean)
      const index_t k = rw.end - t;
      valid = k >= 16 ? in : static_cast<mk>(in & ((1u << (k > 0 ? k : 0)) - 1u));
    } else {
      m = trunc ? zero : v512_load_as<Tail>(rw.m + t, in, n);
      valid = _mm512_cmp_ps_mask(m, zero, _CMP_NEQ_UQ);  // 0 on lanes beyond the tail
    }
    if (!want_ptl && valid == 0) {  // padding only: gradient exactly 0
      store_g(tail_tag, t, zero, in, n);
      if (want_ge) v512_store_as<Tail>(rw.ge + t, zero, in, n);
      return;
    }
    const vf lp = v512_load_as<Tail>(rw.lp + t, in, n);
    const vf lo = on_policy ? lp : v512_load_as<Tail>(rw.lo + t, in, n);
    vf A;
    if constexpr (RowA)
      A = a0;
    else
      A = v512_load_as<Tail>(rw.A + t, in, n);
    const vf x = _mm512_sub_ps(lp, lo);
    // Ratio and its direct derivative (clamped log ratio: flat outside the bounds).
    vf xc = x, r, dr;
    if (lr_clamped) {
      xc = a5::clamp(x, lr_min, lr_max);
      r = a5::exp(xc);
      dr = _mm512_maskz_mov_ps(a5::clamp_in(x, lr_min, lr_max), r);
    } else {
      r = Lean ? a5::exp_lo(x) : a5::exp(x);  // (lean: nothing stored on non-valid lanes)
      dr = r;
    }
    // Policy surrogate: value and gpol = d_ratio dr + d_logp.
    vf value, gpol, w = r;
    if constexpr (kPpo && Lean && RowA) {  // row-constant A, no delta / dual clip
      const auto vg = a5::ppo_clip_row(r, prow, cp);
      value = vg.value;
      gpol = _mm512_mul_ps(vg.grad, dr);
    } else if constexpr (kPpo) {
      const auto vg = a5::ppo_clip(r, A, cp);
      value = vg.value;
      gpol = _mm512_mul_ps(vg.grad, dr);
    } else if constexpr (kCispo) {  // -sg[w] A lp: value (-w A) lp, d/dlp -w A
      w = p.cispo_cap ? a5::cispo_weight_cap(r, cap) : a5::clamp(r, cw_lo, cw_hi);
      gpol = _mm512_mul_ps(a5::neg(w), A);
      value = _mm512_mul_ps(gpol, lp);
    } else if constexpr (kSapo) {
      const auto vg = a5::sapo(r, A, tau_pos, tau_neg);
      value = vg.value;
      gpol = _mm512_mul_ps(vg.grad, dr);
    } else {
      static_assert(K == policy_loss_kind::reinforce, "fast path kinds: ppo, cispo, sapo, pg");
      gpol = a5::neg(A);
      value = _mm512_mul_ps(gpol, lp);
    }
    vf ptl = value;
    // m x (Lean: the mask row is binary, m = 1 on every valid lane)
    auto wm = [&](vf v) GRPO_DETAIL_INLINE_LAMBDA {
      if constexpr (Lean)
        return v;
      else
        return _mm512_mul_ps(m, v);
    };
    // m-weighted count of the lanes of k (Lean: a popcount)
    auto count = [&](vf& acc, std::int64_t& cnt, mk k) GRPO_DETAIL_INLINE_LAMBDA {
      if constexpr (Lean)
        cnt += __builtin_popcount(static_cast<unsigned>(k));
      else
        acc = _mm512_mask_add_ps(acc, k, acc, m);
    };
    vf g = _mm512_mul_ps(wm(sp), gpol);
    s_pol = _mm512_mask_add_ps(s_pol, valid, s_pol, wm(value));
    vf chk_in = x;
    if constexpr (KL) {
      const vf lr = v512_load_as<Tail>(rw.lr + t, in, n);
      vf k, kg;
      if constexpr (KLM == 1) {  // k3 = e^d - d - 1, d = lr - lp; d k3 / d lp = 1 - e^d
        const vf d = _mm512_sub_ps(lr, lp);
        const vf e = a5::exp_lo(d);  // (KLM 1 is lean only)
        k = _mm512_sub_ps(_mm512_sub_ps(e, d), a5::set1(1.0f));
        kg = _mm512_sub_ps(a5::set1(1.0f), e);
      } else {
        const auto kv = a5::kl(klc, lp, lr);
        k = kv.value;
        kg = kv.grad;
      }
      if (kl_bias) {  // value k r, gradient k' r + k r'
        kg = _mm512_fmadd_ps(k, dr, _mm512_mul_ps(kg, r));
        k = _mm512_mul_ps(k, r);
      }
      ptl = _mm512_fmadd_ps(kcoef, k, ptl);
      g = _mm512_fmadd_ps(wm(skc), kg, g);
      const vf mk_ = wm(k);
      s_k = _mm512_mask_add_ps(s_k, valid, s_k, mk_);
      s_k2 = _mm512_mask3_fmadd_ps(mk_, k, s_k2, valid);
      k_mn = _mm512_mask_min_ps(k_mn, valid, k, k_mn);
      k_mx = _mm512_mask_max_ps(k_mx, valid, k, k_mx);
      if (kl_hidden) chk_in = _mm512_add_ps(x, _mm512_sub_ps(lr, lp));
    }
    if (want_ptl) v512_store_as<Tail>(rw.ptl + t, ptl, in, n);
    if (want_ge) v512_store_as<Tail>(rw.ge + t, zero, in, n);
    store_g(tail_tag, t, _mm512_maskz_mov_ps(valid, g), in, n);
    if (need_chk) chk = _mm512_mask_add_ps(chk, valid, chk, chk_in);
    // Metrics over valid tokens: log ratio (approx KL = -xc), ratio, advantage moments.
    const vf mx = wm(xc);
    s_x = _mm512_mask_add_ps(s_x, valid, s_x, mx);
    s_x2 = _mm512_mask3_fmadd_ps(mx, xc, s_x2, valid);
    x_mn = _mm512_mask_min_ps(x_mn, valid, xc, x_mn);
    x_mx = _mm512_mask_max_ps(x_mx, valid, xc, x_mx);
    const vf mr = wm(r);
    s_r = _mm512_mask_add_ps(s_r, valid, s_r, mr);
    s_r2 = _mm512_mask3_fmadd_ps(mr, r, s_r2, valid);
    mk aneg = a0_neg, apos = a0_pos;
    if constexpr (!RowA) {
      const vf ma = wm(A);
      s_a = _mm512_mask_add_ps(s_a, valid, s_a, ma);
      s_a2 = _mm512_mask3_fmadd_ps(ma, A, s_a2, valid);
      a_mn = _mm512_mask_min_ps(a_mn, valid, A, a_mn);
      a_mx = _mm512_mask_max_ps(a_mx, valid, A, a_mx);
      if constexpr (kClip) {
        aneg = _mm512_cmp_ps_mask(A, zero, _CMP_LT_OQ);
        apos = _mm512_cmp_ps_mask(A, zero, _CMP_GT_OQ);
      }
    }
    if constexpr (kCispo)  // weight differs from the ratio (NaN: unordered, counted)
      count(c_w, n_w, _mm512_mask_cmp_ps_mask(valid, w, r, _CMP_NEQ_UQ));
    if constexpr (kClip) {  // clip indicators (ops::ppo_clipped_low / high / dual), weight m
      if (cap_only) {
        const mk hi = _mm512_mask_cmp_ps_mask(valid & apos, r, cap, _CMP_GT_OQ);
        if constexpr (RowA)
          count(c_lo, n_lo, hi);
        else
          count(c_hi, n_hi, hi);
      } else if constexpr (Lean && RowA) {  // one sign per row: one compare (dual clip off)
        if (rw.a0 < 0.0f)
          n_lo += __builtin_popcount(_mm512_mask_cmp_ps_mask(valid, r, cp.lo, _CMP_LT_OQ));
        else if (rw.a0 > 0.0f)
          n_lo += __builtin_popcount(_mm512_mask_cmp_ps_mask(valid, r, cp.hi, _CMP_GT_OQ));
      } else {
        const mk lo = _mm512_mask_cmp_ps_mask(valid & aneg, r, cp.lo, _CMP_LT_OQ);
        const mk hi = _mm512_mask_cmp_ps_mask(valid & apos, r, cp.hi, _CMP_GT_OQ);
        count(c_lo, n_lo, lo);
        // (per-sequence A: one sign per row, so both counts share c_lo; split at the end)
        if constexpr (RowA)
          count(c_lo, n_lo, hi);
        else
          count(c_hi, n_hi, hi);
        if (dual) {
          const mk du = _mm512_mask_cmp_ps_mask(valid & aneg, r, cp.dual, _CMP_GT_OQ);
          count(c_du, n_du, du);
        }
      }
    }
  };

  // Steps to run: the whole row with per-token loss output, else up to the step boundary after
  // the last valid token (the rest of the gradient is zero-filled without reading anything).
  // With streaming stores the steps start at the gradient's first 64-byte boundary (`head`
  // tokens before it run as one masked step).
  const index_t head =
      nt ? static_cast<index_t>((16u - (reinterpret_cast<std::uintptr_t>(rw.g) / 4u) % 16u) % 16u)
         : 0;
  const index_t last = want_ptl ? Tn : std::max(rw.end, head);
  const index_t stop = std::min(Tn, head + (last - head + 15) / 16 * 16);
  index_t t = 0, since = 0;
  if (head > 0 && stop > 0) {
    const index_t n = std::min(head, stop);
    step(std::true_type{}, 0, static_cast<mk>((1u << n) - 1u), n);
    t = n;
  }
  for (; t + 16 <= stop; t += 16) {
    if (t + kPrefetch < stop) {
      fast_prefetch(rw.lp + t, kPrefetch);
      if (!on_policy) fast_prefetch(rw.lo + t, kPrefetch);
      if constexpr (KL) fast_prefetch(rw.lr + t, kPrefetch);
      if constexpr (!RowA) fast_prefetch(rw.A + t, kPrefetch);
      if (!prefix) fast_prefetch(rw.m + t, kPrefetch);
    } else if (rw.nlp != nullptr) {  // the row's last steps: the next row's first lines
      const index_t u = t + kPrefetch - stop;
      fast_prefetch(rw.nlp, u);
      if (!on_policy) fast_prefetch(rw.nlo, u);
      if constexpr (KL) fast_prefetch(rw.nlr, u);
      if constexpr (!RowA) fast_prefetch(rw.nA, u);
      fast_prefetch(rw.nm, u);
    }
    step(std::false_type{}, t, mk(0xFFFF), 16);
    if (++since == kFlushBatches) {
      flush();
      since = 0;
    }
  }
  if (t < stop) {
    const index_t n = stop - t;
    step(std::true_type{}, t, static_cast<mk>((1u << n) - 1u), n);
    t = stop;
  }
  flush();
  if (t < Tn) {  // past the last valid token: zeros
    if constexpr (std::is_same_v<G, float>) {
      for (; t + 16 <= Tn && nt && t >= head; t += 16) _mm512_stream_ps(rw.g + t, zero);
    }
    for (; t < Tn; ++t) rw.g[t] = G(0);
  }
  if (nt) _mm_sfence();  // order the streaming stores before anything later (other threads)
  if (want_ge)
    for (t = stop; t < Tn; ++t) rw.ge[t] = G(0);

  // Row totals into the partial (fast_row_part: the same quantities as fast_simd_acc::finish).
  const double n_row = rw.n;
  rp.pol += static_cast<double>(rw.sp) * d_pol.total();
  rp.wsum += n_row;
  if (!(n_row > 0)) return true;  // no valid token: nothing else to add, nothing to check
  const double sx = d_x.total(), sx2 = d_x2.total();
  if (!std::isfinite(sx) || (need_chk && !std::isfinite(d_chk.total()))) return false;
  if constexpr (RowA) {
    if (!std::isfinite(rw.a0)) return false;
  } else {
    if (!std::isfinite(d_a.total())) return false;
  }
  const float xmin = _mm512_reduce_min_ps(x_mn), xmax = _mm512_reduce_max_ps(x_mx);
  rp.ak[0] += -sx;
  rp.ak[1] += sx2;
  rp.ak[2] = std::min(rp.ak[2], -static_cast<double>(xmax));
  rp.ak[3] = std::max(rp.ak[3], -static_cast<double>(xmin));
  // exp is monotonic: the ratio's extrema are those of the (clamped) log ratio, through the same
  // exp as the tokens.
  alignas(64) float e[16];
  _mm512_store_ps(e, a5::exp(_mm512_setr_ps(xmin, xmax, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)));
  rp.ra[0] += d_r.total();
  rp.ra[1] += d_r2.total();
  rp.ra[2] = std::min(rp.ra[2], static_cast<double>(e[0]));
  rp.ra[3] = std::max(rp.ra[3], static_cast<double>(e[1]));
  if constexpr (KL) {
    const double sk = d_k.total();
    if (!std::isfinite(sk)) return false;  // a non-finite ref_logp (no KL clamp on)
    rp.kls += static_cast<double>(rw.sk) * sk;
    rp.kb[0] += sk;
    rp.kb[1] += d_k2.total();
    rp.kb[2] = std::min(rp.kb[2], static_cast<double>(_mm512_reduce_min_ps(k_mn)));
    rp.kb[3] = std::max(rp.kb[3], static_cast<double>(_mm512_reduce_max_ps(k_mx)));
  }
  if constexpr (RowA) {  // constant over the row
    const double A = static_cast<double>(rw.a0);
    rp.av[0] += n_row * A;
    rp.av[1] += n_row * A * A;
    rp.av[2] = std::min(rp.av[2], A);
    rp.av[3] = std::max(rp.av[3], A);
  } else {
    rp.av[0] += d_a.total();
    rp.av[1] += d_a2.total();
    rp.av[2] = std::min(rp.av[2], static_cast<double>(_mm512_reduce_min_ps(a_mn)));
    rp.av[3] = std::max(rp.av[3], static_cast<double>(_mm512_reduce_max_ps(a_mx)));
  }
  if constexpr (kClip) {
    double lo = d_lo.total() + static_cast<double>(n_lo),
           hi = d_hi.total() + static_cast<double>(n_hi);
    if constexpr (RowA) {  // both counted in c_lo: low clips need A < 0, high ones A > 0
      hi = rw.a0 > 0.0f ? lo : 0.0;
      lo = rw.a0 < 0.0f ? lo : 0.0;
    }
    rp.c_lo += lo;
    rp.c_hi += hi;
    rp.c_re += lo + hi;  // disjoint indicators (A < 0 vs A > 0)
    rp.c_du += d_du.total() + static_cast<double>(n_du);
  }
  if constexpr (kCispo) rp.c_w += d_w.total() + static_cast<double>(n_w);
  return true;
}
/// fast_v512_row_impl for the KL configuration of the call.
template <policy_loss_kind K, bool KL, bool RowA, class M, class G>
bool fast_v512_row_run(const fast_simd_params<float>& p, const fast_simd_row<float, M, G>& rw,
                       index_t Tn, fast_row_part& rp) {
  const bool lean = rw.bin && !(p.cp.delta > 0.0f) && !(p.cp.dual_c > 0.0f) && !p.lr_clamped &&
                    rw.ptl == nullptr && rw.ge == nullptr;
  if constexpr (!KL) {
    return lean ? fast_v512_row_impl<K, 0, RowA, true>(p, rw, Tn, rp)
                : fast_v512_row_impl<K, 0, RowA, false>(p, rw, Tn, rp);
  } else {
    const bool plain_k3 = p.kl.estimator == ops::kl_estimator::k3 && !(p.kl.inner_clamp > 0) &&
                          !(p.kl.outer_clamp > 0) && !p.kl.straight_through && !p.kl_bias;
    return lean && plain_k3 ? fast_v512_row_impl<K, 1, RowA, true>(p, rw, Tn, rp)
                            : fast_v512_row_impl<K, 2, RowA, false>(p, rw, Tn, rp);
  }
}

// ---- AVX-512 row kernel of the sequence-level ratio (GSPO, GSPO-token; float inputs) -----------
// At sequence level the ratio r_i = exp(clamp(xbar_i)), xbar_i = sum_t m (lp - lo) / max(n_i, 1),
// is one number per row, so the surrogate's clip decision, value and d l / d r depend on the token
// only through its advantage (per-sequence advantages: nothing per token at all). The row runs as
//   sweep 1  (tokens < end): sum m x, sum m x^2 and the extrema of x (x = lp - lo): xbar and the
//            approximate-KL metric; the row constants r, d r (token_ratio) and, per-sequence A,
//            the surrogate (policy_token) are then formed in double, as the general engine does;
//   sweep 2  (the row is L1/L2-resident): KL value / gradient per token (one exp), the surrogate
//            per token when A is per token, the gradient g_t = m_t (s_pol l'(r) dr_direct +
//            s_kl c k'_t) [+ m_t row_g / max(n_i, 1), GSPO's spread, when row_g is known here];
//   sweep 3  (only GSPO with per-token A or bias-corrected KL, whose row_g sums the row): adds
//            row_g m_t / max(n_i, 1) to the gradient, as the general engine's second sweep.
// Non-finite inputs on valid tokens make a masked sum non-finite (as in fast_v512_row_impl); the
// row is then rerun by the scalar twin in compute_loss_into, which throws the named error.
// KLM: 0 no KL, 1 plain k3 (exp_lo; no per-token loss output), 2 any estimator (simd::avx512::kl).
// Prefix: a binary mask whose ones are exactly [0, end) (the mask is never read).
template <int KLM, bool RowA, bool Prefix, class M, class G>
bool gspo_v512_row_impl(const gspo_params& q, const fast_simd_row<float, M, G>& rw_in, index_t Tn,
                        fast_row_part& rp) {
  namespace a5 = simd::avx512;
  using vf = __m512;
  using mk = __mmask16;
  constexpr bool KL = KLM != 0;
  const fast_simd_row<float, M, G> rw = rw_in;  // (see fast_v512_row_impl: stores may alias)
  const policy_options& P = q.P;
  const vf zero = _mm512_setzero_ps(), one = a5::set1(1.0f);
  const vf pinf = a5::set1(std::numeric_limits<float>::infinity()), ninf = a5::neg(pinf);
  const bool trunc = rw.trunc, on_policy = rw.lo == rw.lp;
  const index_t end = trunc ? 0 : rw.end;
  const bool want_ptl = rw.ptl != nullptr, want_ge = rw.ge != nullptr;
  const bool kl_hidden = KL && (q.kl.inner_clamp > 0.0 || q.kl.outer_clamp > 0.0);
  const a5::kl_config klc(q.kl);
  auto lanes = [](index_t k) GRPO_DETAIL_INLINE_LAMBDA {  // the low min(k, 16) lanes
    return k >= 16 ? mk(0xFFFF) : static_cast<mk>((1u << (k > 0 ? k : 0)) - 1u);
  };
  auto ld = [](const float* p, mk in)
                GRPO_DETAIL_INLINE_LAMBDA { return _mm512_maskz_loadu_ps(in, p); };
  auto ld_m = [&](index_t t, mk in, index_t k) GRPO_DETAIL_INLINE_LAMBDA {
    if constexpr (std::is_same_v<M, float>) {
      return _mm512_maskz_loadu_ps(in, rw.m + t);
    } else {
      float tmp[16] = {};
      for (index_t l = 0; l < std::min<index_t>(k, 16); ++l)
        tmp[l] = static_cast<float>(rw.m[t + l]);
      return _mm512_loadu_ps(tmp);
    }
  };
  auto st = [](auto* p, vf v, mk in, index_t k) GRPO_DETAIL_INLINE_LAMBDA {
    using D = std::remove_pointer_t<decltype(p)>;
    if constexpr (std::is_same_v<D, float>) {
      _mm512_mask_storeu_ps(p, in, v);
    } else {
      float tmp[16];
      _mm512_storeu_ps(tmp, v);
      for (index_t l = 0; l < std::min<index_t>(k, 16); ++l) p[l] = static_cast<D>(tmp[l]);
    }
  };
  // Valid lanes and mask weights of the step at t (lanes `in` inside the sweep).
  auto valid_of = [&](index_t t, mk in, index_t k, vf& m) GRPO_DETAIL_INLINE_LAMBDA {
    if constexpr (Prefix) {
      m = one;
      return static_cast<mk>(in & lanes(end - t));
    } else {
      if (trunc) {
        m = zero;
        return mk(0);
      }
      m = ld_m(t, in, k);
      return static_cast<mk>(_mm512_cmp_ps_mask(m, zero, _CMP_NEQ_UQ) & in);
    }
  };
  auto wm = [&](vf m, vf v) GRPO_DETAIL_INLINE_LAMBDA {
    if constexpr (Prefix)
      return v;
    else
      return _mm512_mul_ps(m, v);
  };

  // ---- sweep 1: sum m x, sum m x^2, extrema of x over the valid tokens ----
  vf s_x = zero, s_x2 = zero, x_mn = pinf, x_mx = ninf;
  v512_dsum d_x, d_x2;
  index_t since = 0;
  for (index_t t = 0; t < end; t += 16) {
    const index_t k = end - t;
    const mk in = lanes(k);
    // Software prefetch kPrefetch ahead (also of the streams sweep 2 reads first: ref_logp, a
    // per-token advantage), then the next row's first lines (see fast_v512_row_impl).
    if (t + kPrefetch < end) {
      fast_prefetch(rw.lp + t, kPrefetch);
      if (!on_policy) fast_prefetch(rw.lo + t, kPrefetch);
      if constexpr (KL) fast_prefetch(rw.lr + t, kPrefetch);
      if constexpr (!RowA) fast_prefetch(rw.A + t, kPrefetch);
      if constexpr (!Prefix) fast_prefetch(rw.m + t, kPrefetch);
    }
    if (t < kPrefetch) {  // the row's first lines of the sweep-2-only streams
      if constexpr (KL) fast_prefetch(rw.lr + t, 0);
      if constexpr (!RowA) fast_prefetch(rw.A + t, 0);
    }
    vf m;
    const mk valid = valid_of(t, in, k, m);
    const vf lp = ld(rw.lp + t, in);
    const vf x = on_policy ? zero : _mm512_sub_ps(lp, ld(rw.lo + t, in));
    const vf mx = wm(m, x);
    s_x = _mm512_mask_add_ps(s_x, valid, s_x, mx);
    s_x2 = _mm512_mask3_fmadd_ps(mx, x, s_x2, valid);
    x_mn = _mm512_mask_min_ps(x_mn, valid, x, x_mn);
    x_mx = _mm512_mask_max_ps(x_mx, valid, x, x_mx);
    if (on_policy) s_x = _mm512_mask_add_ps(s_x, valid, s_x, _mm512_sub_ps(lp, lp));  // finiteness
    if (++since == kFlushBatches) {
      d_x.add(s_x);
      d_x2.add(s_x2);
      s_x = s_x2 = zero;
      since = 0;
    }
  }
  d_x.add(s_x);
  d_x2.add(s_x2);

  // ---- row constants (double, the general engine's calls) ----
  const double n = trunc ? 0.0 : rw.n, nc = n < 1.0 ? 1.0 : n;
  const double sx = d_x.total(), sx2 = d_x2.total();
  if (n > 0 && !(std::isfinite(sx) && std::isfinite(sx2))) return false;
  const ratio_terms rt = token_ratio(P, 0.0, sx / nc);
  const double r = rt.r, drd = rt.d_direct, drs = rt.d_spread;
  const double sp = static_cast<double>(rw.sp), sk = static_cast<double>(rw.sk);
  const double a0 = static_cast<double>(rw.a0);
  policy_token_terms pt0{};
  if constexpr (RowA) pt0 = policy_token(P, r, a0, 0.0);  // (PPO clip: no dependence on lp)
  // Row-constant part of the gradient per unit mask: the direct term and, for GSPO with
  // per-sequence A and no bias correction, the whole spread row_g / nc = s_pol l'(r) dr n / nc.
  const bool spread_now = q.seq && RowA && !q.kl_bias;
  const bool spread_later = q.seq && !spread_now;
  double coef = 0.0;
  if constexpr (RowA) {
    coef = sp * (pt0.d_ratio * drd + pt0.d_logp);
    if (spread_now) coef += sp * pt0.d_ratio * drs * n / nc;
  }
  const vf v_coef = a5::set1(static_cast<float>(coef)),
           v_val0 = a5::set1(static_cast<float>(pt0.value));
  const vf v_r = a5::set1(static_cast<float>(r)), v_drd = a5::set1(static_cast<float>(drd));
  const vf v_sp = a5::set1(rw.sp), v_kc = a5::set1(static_cast<float>(q.kl_coef));
  const vf v_skc = a5::set1(static_cast<float>(sk * q.kl_coef));
  const ops::ppo_clip_params<float> cpf{static_cast<float>(P.eps_low),
                                        static_cast<float>(P.eps_high), static_cast<float>(P.delta),
                                        static_cast<float>(P.dual_clip_c)};
  const a5::ppo_params cp(cpf);

  // ---- sweep 2: KL, per-token surrogate, gradient, per-token loss ----
  vf s_pol = zero, s_dr = zero, s_a = zero, s_a2 = zero, a_mn = pinf, a_mx = ninf;
  vf s_neg = zero, s_pos = zero, s_k = zero, s_k2 = zero, k_mn = pinf, k_mx = ninf;
  vf s_kr = zero, chk = zero;
  v512_dsum d_pol, d_dr, d_a, d_a2, d_neg, d_pos, d_k, d_k2, d_kr, d_chk;
  auto flush = [&]() GRPO_DETAIL_INLINE_LAMBDA {
    if constexpr (!RowA) {
      d_pol.add(s_pol);
      d_dr.add(s_dr);
      d_a.add(s_a);
      d_a2.add(s_a2);
      d_neg.add(s_neg);
      d_pos.add(s_pos);
      s_pol = s_dr = s_a = s_a2 = s_neg = s_pos = zero;
    }
    if constexpr (KL) {
      d_k.add(s_k);
      d_k2.add(s_k2);
      s_k = s_k2 = zero;
      if (q.kl_bias) {
        d_kr.add(s_kr);
        s_kr = zero;
      }
      if (kl_hidden) {
        d_chk.add(chk);
        chk = zero;
      }
    }
  };
  const index_t stop = want_ptl ? Tn : end;
  // Streaming gradient stores (outputs far beyond the last-level cache, as the token-level path)
  // when the gradient is written once: full steps start at its first 64-byte boundary (`head`
  // tokens before it run as one masked step).
  const bool nt = std::is_same_v<G, float> && rw.nt && !spread_later;
  const index_t head =
      nt ? static_cast<index_t>((16u - (reinterpret_cast<std::uintptr_t>(rw.g) / 4u) % 16u) % 16u)
         : 0;
  auto store_g = [&](index_t t, vf v, mk in, index_t k) GRPO_DETAIL_INLINE_LAMBDA {
    if constexpr (std::is_same_v<G, float>) {
      if (nt && in == mk(0xFFFF) && t >= head) {
        _mm512_stream_ps(rw.g + t, v);
        return;
      }
    }
    st(rw.g + t, v, in, k);
  };
  // Sweep 2 reads only cached lines: the next row's valid part is fetched meanwhile, one line
  // per stream and step, so that its sweep 1 does not wait on memory with nothing to compute.
  const index_t nend = rw.nlp != nullptr ? rw.nend : 0;
  since = 0;
  for (index_t t = 0, w = head > 0 ? head : 16; t < stop; t += w, w = 16) {
    if (t < nend) {
      fast_prefetch(rw.nlp + t, 0);
      if (!on_policy) fast_prefetch(rw.nlo + t, 0);
      if constexpr (KL) fast_prefetch(rw.nlr + t, 0);
    }
    const index_t k = std::min(stop - t, w);
    const mk in = lanes(k);
    vf m;
    const mk valid = valid_of(t, in, k, m);
    if (!want_ptl && valid == 0) {  // a hole of padding: gradient exactly 0
      store_g(t, zero, in, k);
      if (want_ge) st(rw.ge + t, zero, in, k);
      continue;
    }
    const vf lp = ld(rw.lp + t, in);
    vf value, g;
    if constexpr (RowA) {
      value = v_val0;
      g = wm(m, v_coef);
    } else {
      const vf A = ld(rw.A + t, in);
      const auto vg = a5::ppo_clip(v_r, A, cp);
      value = vg.value;
      g = _mm512_mul_ps(wm(m, v_sp), _mm512_mul_ps(vg.grad, v_drd));
      s_pol = _mm512_mask_add_ps(s_pol, valid, s_pol, wm(m, value));
      s_dr = _mm512_mask_add_ps(s_dr, valid, s_dr, wm(m, vg.grad));
      const vf ma = wm(m, A);
      s_a = _mm512_mask_add_ps(s_a, valid, s_a, ma);
      s_a2 = _mm512_mask3_fmadd_ps(ma, A, s_a2, valid);
      a_mn = _mm512_mask_min_ps(a_mn, valid, A, a_mn);
      a_mx = _mm512_mask_max_ps(a_mx, valid, A, a_mx);
      const mk neg = _mm512_mask_cmp_ps_mask(valid, A, zero, _CMP_LT_OQ);
      const mk pos = _mm512_mask_cmp_ps_mask(valid, A, zero, _CMP_GT_OQ);
      s_neg = _mm512_mask_add_ps(s_neg, neg, s_neg, m);
      s_pos = _mm512_mask_add_ps(s_pos, pos, s_pos, m);
    }
    vf ptl = value;
    if constexpr (KL) {
      const vf lr = ld(rw.lr + t, in);
      vf kv, kg;
      if constexpr (KLM == 1) {  // k3 = e^d - d - 1, d = lr - lp; d k3 / d lp = 1 - e^d
        const vf d = _mm512_sub_ps(lr, lp);
        const vf e = a5::exp_lo(d);
        kv = _mm512_sub_ps(_mm512_sub_ps(e, d), one);
        kg = _mm512_sub_ps(one, e);
      } else {
        const auto r2 = a5::kl(klc, lp, lr);
        kv = r2.value;
        kg = r2.grad;
      }
      if (q.kl_bias) {  // value k r, gradient k' r + k dr_direct; the spread sums m k
        s_kr = _mm512_mask_add_ps(s_kr, valid, s_kr, wm(m, kv));
        kg = _mm512_fmadd_ps(kv, v_drd, _mm512_mul_ps(kg, v_r));
        kv = _mm512_mul_ps(kv, v_r);
      }
      ptl = _mm512_fmadd_ps(v_kc, kv, ptl);
      g = _mm512_fmadd_ps(wm(m, v_skc), kg, g);
      const vf mkv = wm(m, kv);
      s_k = _mm512_mask_add_ps(s_k, valid, s_k, mkv);
      s_k2 = _mm512_mask3_fmadd_ps(mkv, kv, s_k2, valid);
      k_mn = _mm512_mask_min_ps(k_mn, valid, kv, k_mn);
      k_mx = _mm512_mask_max_ps(k_mx, valid, kv, k_mx);
      if (kl_hidden) chk = _mm512_mask_add_ps(chk, valid, chk, _mm512_sub_ps(lr, lp));
    }
    if (want_ptl) st(rw.ptl + t, ptl, in, k);
    if (want_ge) st(rw.ge + t, zero, in, k);
    store_g(t, _mm512_maskz_mov_ps(valid, g), in, k);
    if (++since == kFlushBatches) {
      flush();
      since = 0;
    }
  }
  flush();
  {  // past the last valid token: zeros
    index_t t = stop;
    if constexpr (std::is_same_v<G, float>) {
      if (nt) {
        for (; t < Tn && (t < head || (t - head) % 16 != 0); ++t) rw.g[t] = 0.0f;
        for (; t + 16 <= Tn; t += 16) _mm512_stream_ps(rw.g + t, zero);
      }
    }
    for (; t < Tn; ++t) rw.g[t] = G(0);
  }
  if (nt) _mm_sfence();  // order the streaming stores before anything later (other threads)
  if (want_ge)
    for (index_t t = stop; t < Tn; ++t) rw.ge[t] = G(0);

  // ---- checks, sweep 3, row totals ----
  rp.wsum += n;
  const double sk_sum = KL ? d_k.total() : 0.0;
  if (n > 0) {
    if constexpr (RowA) {
      if (!std::isfinite(a0)) return false;
    } else {
      if (!std::isfinite(d_a.total())) return false;
    }
    if (KL && (!std::isfinite(sk_sum) || !std::isfinite(d_k2.total()) ||
               (kl_hidden && !std::isfinite(d_chk.total()))))
      return false;
  }
  if (spread_later) {  // GSPO: row_g = sum_t s_pol m l'_t dr_spread (+ s_kl c m k_t dr_spread)
    double row_g = (RowA ? sp * pt0.d_ratio * n : sp * d_dr.total()) * drs;
    if (q.kl_bias) row_g += sk * q.kl_coef * d_kr.total() * drs;
    if (row_g != 0.0) {
      for (index_t t = 0; t < end; ++t) {
        const double mb = Prefix ? 1.0 : static_cast<double>(rw.m[t]);
        if (mb == 0.0) continue;
        rw.g[t] = static_cast<G>(static_cast<double>(rw.g[t]) + row_g * mb / nc);
      }
    }
  }
  rp.pol += RowA ? sp * pt0.value * n : sp * d_pol.total();
  if constexpr (KL) rp.kls += sk * sk_sum;
  const ops::ppo_clip_params<double> cpd{P.eps_low, P.eps_high, P.delta, P.dual_clip_c};
  if (q.seq && RowA) {  // TRL: one decision per sequence, every row
    rp.seq_clip = static_cast<unsigned char>((ops::ppo_clipped_low(r, a0, cpd) ? 1 : 0) |
                                             (ops::ppo_clipped_high(r, a0, cpd) ? 2 : 0) |
                                             (ops::ppo_dual_clipped(r, a0, cpd) ? 4 : 0));
  }
  if (!(n > 0)) return true;
  const float xmin = _mm512_reduce_min_ps(x_mn), xmax = _mm512_reduce_max_ps(x_mx);
  rp.ak[0] += -sx;
  rp.ak[1] += sx2;
  rp.ak[2] = std::min(rp.ak[2], -static_cast<double>(xmax));
  rp.ak[3] = std::max(rp.ak[3], -static_cast<double>(xmin));
  rp.ra[0] += n * r;
  rp.ra[1] += n * r * r;
  rp.ra[2] = std::min(rp.ra[2], r);
  rp.ra[3] = std::max(rp.ra[3], r);
  if constexpr (KL) {
    rp.kb[0] += sk_sum;
    rp.kb[1] += d_k2.total();
    rp.kb[2] = std::min(rp.kb[2], static_cast<double>(_mm512_reduce_min_ps(k_mn)));
    rp.kb[3] = std::max(rp.kb[3], static_cast<double>(_mm512_reduce_max_ps(k_mx)));
  }
  double c_lo = 0, c_hi = 0, c_du = 0;
  if constexpr (RowA) {
    rp.av[0] += n * a0;
    rp.av[1] += n * a0 * a0;
    rp.av[2] = std::min(rp.av[2], a0);
    rp.av[3] = std::max(rp.av[3], a0);
    if (!q.seq) {  // GSPO-token: token-weighted, one decision for the whole row
      c_lo = ops::ppo_clipped_low(r, a0, cpd) ? n : 0.0;
      c_hi = ops::ppo_clipped_high(r, a0, cpd) ? n : 0.0;
      c_du = ops::ppo_dual_clipped(r, a0, cpd) ? n : 0.0;
    }
  } else {
    rp.av[0] += d_a.total();
    rp.av[1] += d_a2.total();
    rp.av[2] = std::min(rp.av[2], static_cast<double>(_mm512_reduce_min_ps(a_mn)));
    rp.av[3] = std::max(rp.av[3], static_cast<double>(_mm512_reduce_max_ps(a_mx)));
    // The row's ratio decides; the token's advantage only through its sign.
    const double neg = d_neg.total(), pos = d_pos.total();
    c_lo = ops::ppo_clipped_low(r, -1.0, cpd) ? neg : 0.0;
    c_hi = ops::ppo_clipped_high(r, 1.0, cpd) ? pos : 0.0;
    c_du = ops::ppo_dual_clipped(r, -1.0, cpd) ? neg : 0.0;
  }
  rp.c_lo += c_lo;
  rp.c_hi += c_hi;
  rp.c_re += c_lo + c_hi;  // disjoint (A < 0 vs A > 0)
  rp.c_du += c_du;
  return true;
}
/// gspo_v512_row_impl for the KL configuration and mask layout of the row.
template <bool RowA, class M, class G>
bool gspo_v512_row_run(const gspo_params& q, bool kl_on, const fast_simd_row<float, M, G>& rw,
                       index_t Tn, fast_row_part& rp) {
  const bool prefix = rw.prefix && !rw.trunc;
  const bool plain_k3 = q.kl.estimator == ops::kl_estimator::k3 && !(q.kl.inner_clamp > 0) &&
                        !(q.kl.outer_clamp > 0) && !q.kl.straight_through && rw.ptl == nullptr;
  if (!kl_on)
    return prefix ? gspo_v512_row_impl<0, RowA, true>(q, rw, Tn, rp)
                  : gspo_v512_row_impl<0, RowA, false>(q, rw, Tn, rp);
  if (plain_k3)
    return prefix ? gspo_v512_row_impl<1, RowA, true>(q, rw, Tn, rp)
                  : gspo_v512_row_impl<1, RowA, false>(q, rw, Tn, rp);
  return prefix ? gspo_v512_row_impl<2, RowA, true>(q, rw, Tn, rp)
                : gspo_v512_row_impl<2, RowA, false>(q, rw, Tn, rp);
}
#undef GRPO_DETAIL_INLINE_LAMBDA
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif  // GRPO_HAS_AVX512

/// One row of the vectorised fast path into rp. Returns false if a valid token has a non-finite
/// input (rp is then incomplete; the caller reports the error through the scalar path).
template <policy_loss_kind K, bool KL, class C, class M, class G>
bool fast_simd_row_run(const fast_simd_params<C>& p_in, const fast_simd_row<C, M, G>& rw_in,
                       index_t Tn, fast_row_part& rp) {
  // Local copies: the output stores (G*) could otherwise alias the parameters, forcing the compiler
  // to reload and re-broadcast every parameter after every store.
#if GRPO_HAS_AVX512
  if constexpr (std::is_same_v<C, float>) {  // the hand-written AVX-512 kernel above
    return rw_in.A == nullptr ? fast_v512_row_run<K, KL, true>(p_in, rw_in, Tn, rp)
                              : fast_v512_row_run<K, KL, false>(p_in, rw_in, Tn, rp);
  }
#endif
  const fast_simd_params<C> p = p_in;
  const fast_simd_row<C, M, G> rw = rw_in;
  bool bad = false;
  index_t t = 0;
  // Without per-token loss output nothing past the row's last valid token is read: the gradient
  // there is zero-filled. (Rounded up to a batch boundary, so that every token is computed by the
  // same lanes, vector or scalar tail, as with the output requested: the results are identical.)
#if GRPO_HAS_XSIMD
  constexpr index_t kLanes = static_cast<index_t>(simd::lane_traits<simd::batch_of<C>>::size);
#else
  constexpr index_t kLanes = 1;
#endif
  const index_t stop =
      rw.ptl != nullptr ? Tn : std::min(Tn, (rw.end + kLanes - 1) / kLanes * kLanes);
#if GRPO_HAS_XSIMD
  using V = simd::batch_of<C>;
  constexpr auto L = static_cast<index_t>(V::size);
  {
    fast_simd_acc<V> a;
    index_t since = 0;
    auto badv = simd::none_set<V>();
    for (; t + L <= stop; t += L) {
      // The body is long (two exps, clip logic, metrics): prefetching the input streams a few
      // steps ahead keeps enough misses in flight (measured: ~20 % faster out of cache).
      fast_prefetch(rw.lp + t, kPrefetch);
      if (rw.lo != rw.lp) fast_prefetch(rw.lo + t, kPrefetch);
      if (KL) fast_prefetch(rw.lr + t, kPrefetch);
      fast_prefetch(rw.m + t, kPrefetch);
      badv = simd::bor(badv, fast_simd_step<K, KL, V>(p, rw, t, a));
      if (++since == kFlushBatches) {
        a.flush();
        since = 0;
      }
    }
    a.flush();
    a.finish(rp);
    bad = simd::any(badv);
  }
#endif
  fast_simd_acc<C> s;  // row tail (or the whole row without xsimd), one token at a time
  index_t since = 0;
  for (; t < stop; ++t) {
    bad = fast_simd_step<K, KL, C>(p, rw, t, s) || bad;
    if (++since == kFlushBatches) {
      s.flush();
      since = 0;
    }
  }
  s.flush();
  s.finish(rp);
  for (index_t u = t; u < Tn; ++u) rw.g[u] = G(0);
  if (rw.ge != nullptr)
    for (index_t u = t; u < Tn; ++u) rw.ge[u] = G(0);
  if (rw.A == nullptr && rp.wsum > 0) {  // per-sequence advantage: constant over the row
    const double A = static_cast<double>(rw.a0);
    rp.av[0] += rp.wsum * A;
    rp.av[1] += rp.wsum * A * A;
    rp.av[2] = A < rp.av[2] ? A : rp.av[2];
    rp.av[3] = A > rp.av[3] ? A : rp.av[3];
  }
  return !bad;
}

/// Lane state of the portable sequence-level kernel (gspo_simd_row): sweep 1 (x moments and
/// extrema) and sweep 2 (policy / KL sums, advantage moments, sign counts, spread sums) over one
/// lane type V (an xsimd batch, or the scalar C for the row tail), with the lane sums flushed to
/// double every kFlushBatches steps as fast_simd_acc.
template <class V>
struct gspo_simd_acc {
  using C = simd::scalar_of<V>;
  static constexpr std::size_t L = simd::lane_traits<V>::size;
  static constexpr C kInf = std::numeric_limits<C>::infinity();
  // sums: m x, m x^2 | m l, m dl/dr, m A, m A^2, m [A < 0], m [A > 0], m k, m k^2, m k_raw
  enum slot : int { sx, sx2, pol, dr, sa, sa2, neg, pos, sk, sk2, skr, n_slots };
  V sum[n_slots];
  V mn[3] = {V(kInf), V(kInf), V(kInf)};  // x, A, k
  V mx[3] = {V(-kInf), V(-kInf), V(-kInf)};
  double lanes[n_slots] = {};
  simd::mask_of<V> bad = simd::none_set<V>();
  index_t since = 0;
  gspo_simd_acc() noexcept {
    for (V& v : sum) v = V(C(0));
  }
  GRPO_FORCEINLINE void add(int k, const simd::mask_of<V>& valid, const V& x) noexcept {
    sum[k] = sum[k] + simd::sel<V>(valid, x, V(C(0)));
  }
  GRPO_FORCEINLINE void ext(int k, const simd::mask_of<V>& valid, const V& x) noexcept {
    mn[k] = simd::sel<V>(simd::band(valid, x < mn[k]), x, mn[k]);
    mx[k] = simd::sel<V>(simd::band(valid, x > mx[k]), x, mx[k]);
  }
  void flush() noexcept {
    for (int k = 0; k < n_slots; ++k) {
      C tmp[L];
      simd::store<V>(tmp, sum[k]);
      for (std::size_t l = 0; l < L; ++l) lanes[k] += static_cast<double>(tmp[l]);
      sum[k] = V(C(0));
    }
    since = 0;
  }
  GRPO_FORCEINLINE void step_done() noexcept {
    if (++since == kFlushBatches) flush();
  }
  /// Minimum / maximum of extremum block k over the lanes (into lo / hi).
  void extrema(int k, double& lo, double& hi) const noexcept {
    C a[L], b[L];
    simd::store<V>(a, mn[k]);
    simd::store<V>(b, mx[k]);
    for (std::size_t l = 0; l < L; ++l) {
      lo = static_cast<double>(a[l]) < lo ? static_cast<double>(a[l]) : lo;
      hi = static_cast<double>(b[l]) > hi ? static_cast<double>(b[l]) : hi;
    }
  }
};

/// The sequence-level row algorithm of gspo_v512_row_impl (sweep 1: sum m x; row constants in
/// double through token_ratio / policy_token; sweep 2: KL, per-token surrogate, gradient; sweep 3
/// when the spread needs a row sum) on xsimd batches of the input type C with a scalar tail:
/// double inputs, and float inputs on builds without AVX-512. Every per-token formula is a
/// grpo/detail/simd.hpp mirror of the ops (tested bitwise at scalar lanes). Returns false if a
/// valid token has a non-finite input (the caller reruns the row on the scalar twin, which
/// throws the error naming the argument).
template <class C, class M, class G>
bool gspo_simd_row(const gspo_params& q, bool kl_on, const fast_simd_row<C, M, G>& rw_in,
                   index_t Tn, fast_row_part& rp) {
  const fast_simd_row<C, M, G> rw = rw_in;  // (local copy: the stores may alias the parameters)
  const policy_options& P = q.P;
  const bool trunc = rw.trunc, on_policy = rw.lo == rw.lp, row_a = rw.A == nullptr;
  const bool want_ptl = rw.ptl != nullptr, want_ge = rw.ge != nullptr;
  const index_t end = trunc ? 0 : rw.end;
#if GRPO_HAS_XSIMD
  using VB = simd::batch_of<C>;
  constexpr auto LB = static_cast<index_t>(simd::lane_traits<VB>::size);
  gspo_simd_acc<VB> ab;
#else
  constexpr index_t LB = 1;
#endif
  gspo_simd_acc<C> as;
  // Mask weights and valid lanes of the step at t (0 on a truncated row).
  auto mask_of_step = [&](auto tag, index_t t, auto& m) {
    using V = typename decltype(tag)::type;
    m = trunc ? V(C(0)) : fast_load_as<V>(rw.m + t);
    return !(m == V(C(0)));
  };
  // ---- sweep 1 ----
  auto step1 = [&](auto tag, index_t t, auto& a) {
    using V = typename decltype(tag)::type;
    V m;
    const auto valid = mask_of_step(tag, t, m);
    const V lp = simd::load<V>(rw.lp + t);
    const V lo = on_policy ? lp : simd::load<V>(rw.lo + t);
    const V x = lp - lo;
    const V w = m * x;
    a.add(a.sx, valid, w);
    a.add(a.sx2, valid, w * x);
    a.ext(0, valid, x);
    a.bad = simd::bor(a.bad, simd::band(valid, !((lp - lp) + (lo - lo) == V(C(0)))));
    a.step_done();
  };
  index_t t = 0;
  const index_t stop1 = std::min(Tn, (end + LB - 1) / LB * LB);
#if GRPO_HAS_XSIMD
  for (; t + LB <= stop1; t += LB) step1(std::type_identity<VB>{}, t, ab);
  ab.flush();
#endif
  for (; t < stop1; ++t) step1(std::type_identity<C>{}, t, as);
  as.flush();
  auto total = [&](int k) {
#if GRPO_HAS_XSIMD
    return ab.lanes[k] + as.lanes[k];
#else
    return as.lanes[k];
#endif
  };
  auto extrema = [&](int k, double& lo, double& hi) {
    lo = std::numeric_limits<double>::infinity();
    hi = -lo;
#if GRPO_HAS_XSIMD
    ab.extrema(k, lo, hi);
#endif
    as.extrema(k, lo, hi);
  };
  auto any_bad = [&] {
#if GRPO_HAS_XSIMD
    if (simd::any(ab.bad)) return true;
#endif
    return static_cast<bool>(simd::any(as.bad));
  };
  if (any_bad()) return false;

  // ---- row constants (double, the general engine's calls) ----
  const double n = trunc ? 0.0 : rw.n, nc = n < 1.0 ? 1.0 : n;
  const double sx = total(gspo_simd_acc<C>::sx), sx2 = total(gspo_simd_acc<C>::sx2);
  // Finite inputs whose lane sums overflow C (float): rerun in double by the scalar twin.
  if (n > 0 && !(std::isfinite(sx) && std::isfinite(sx2))) return false;
  const ratio_terms rt = token_ratio(P, 0.0, sx / nc);
  const double r = rt.r, drd = rt.d_direct, drs = rt.d_spread;
  const double sp = static_cast<double>(rw.sp), sk = static_cast<double>(rw.sk);
  const double a0 = static_cast<double>(rw.a0);
  policy_token_terms pt0{};
  if (row_a) pt0 = policy_token(P, r, a0, 0.0);
  const bool spread_now = q.seq && row_a && !q.kl_bias, spread_later = q.seq && !spread_now;
  double coef = 0.0;
  if (row_a) {
    coef = sp * (pt0.d_ratio * drd + pt0.d_logp);
    if (spread_now) coef += sp * pt0.d_ratio * drs * n / nc;
  }
  const ops::ppo_clip_params<C> cpc{C(P.eps_low), C(P.eps_high), C(P.delta), C(P.dual_clip_c)};
  const C c_coef = C(coef), c_val0 = C(pt0.value), c_r = C(r), c_drd = C(drd), c_sp = rw.sp;
  const C c_kc = C(q.kl_coef), c_sk = rw.sk;

  // ---- sweep 2 ----
  auto step2 = [&](auto tag, index_t t, auto& a) {
    using V = typename decltype(tag)::type;
    const V zero(C(0));
    V m;
    const auto valid = mask_of_step(tag, t, m);
    if (!want_ptl && !simd::any(valid)) {  // padding only: gradient exactly 0
      fast_store_as<V>(rw.g + t, zero);
      if (want_ge) fast_store_as<V>(rw.ge + t, zero);
      return;
    }
    const V lp = simd::load<V>(rw.lp + t);
    V value, g, nf = lp - lp;
    if (row_a) {
      value = V(c_val0);
      g = m * V(c_coef);
    } else {
      const V A = simd::load<V>(rw.A + t);
      const auto vg = simd::ppo_clip(V(c_r), A, cpc);
      value = vg.value;
      g = (V(c_sp) * m) * (vg.grad * V(c_drd));
      a.add(a.pol, valid, m * value);
      a.add(a.dr, valid, m * vg.grad);
      const V ma = m * A;
      a.add(a.sa, valid, ma);
      a.add(a.sa2, valid, ma * A);
      a.ext(1, valid, A);
      a.add(a.neg, simd::band(valid, A < zero), m);
      a.add(a.pos, simd::band(valid, A > zero), m);
      nf = nf + (A - A);
    }
    V ptl = value;
    if (kl_on) {
      const V lr = simd::load<V>(rw.lr + t);
      const auto kv = simd::kl(q.kl, lp, lr);
      V k = kv.value, kg = kv.grad;
      if (q.kl_bias) {  // value k r, gradient k' r + k dr_direct; the spread sums m k
        a.add(a.skr, valid, m * k);
        kg = kg * V(c_r) + k * V(c_drd);
        k = k * V(c_r);
      }
      ptl = ptl + V(c_kc) * k;
      g = g + (V(c_sk) * m) * V(c_kc) * kg;
      const V mkv = m * k;
      a.add(a.sk, valid, mkv);
      a.add(a.sk2, valid, mkv * k);
      a.ext(2, valid, k);
      nf = nf + (lr - lr);
    }
    if (want_ptl) fast_store_as<V>(rw.ptl + t, ptl);
    if (want_ge) fast_store_as<V>(rw.ge + t, zero);
    fast_store_as<V>(rw.g + t, simd::sel<V>(valid, g, zero));
    a.bad = simd::bor(a.bad, simd::band(valid, !(nf == zero)));
    a.step_done();
  };
  const index_t stop2 = want_ptl ? Tn : stop1;
  t = 0;
#if GRPO_HAS_XSIMD
  for (; t + LB <= stop2; t += LB) step2(std::type_identity<VB>{}, t, ab);
  ab.flush();
#endif
  for (; t < stop2; ++t) step2(std::type_identity<C>{}, t, as);
  as.flush();
  for (; t < Tn; ++t) rw.g[t] = G(0);  // past the last valid token
  if (want_ge)
    for (t = stop2; t < Tn; ++t) rw.ge[t] = G(0);
  if (any_bad()) return false;
  if (n > 0 && kl_on &&
      !(std::isfinite(total(gspo_simd_acc<C>::sk)) && std::isfinite(total(gspo_simd_acc<C>::sk2))))
    return false;

  // ---- sweep 3, row totals (as gspo_v512_row_impl) ----
  if (spread_later) {
    double row_g = (row_a ? sp * pt0.d_ratio * n : sp * total(gspo_simd_acc<C>::dr)) * drs;
    if (q.kl_bias) row_g += sk * q.kl_coef * total(gspo_simd_acc<C>::skr) * drs;
    if (row_g != 0.0) {
      for (index_t u = 0; u < end; ++u) {
        const double mb = static_cast<double>(rw.m[u]);
        if (mb == 0.0) continue;
        rw.g[u] = static_cast<G>(static_cast<double>(rw.g[u]) + row_g * mb / nc);
      }
    }
  }
  rp.wsum += n;
  rp.pol += row_a ? sp * pt0.value * n : sp * total(gspo_simd_acc<C>::pol);
  const double sk_sum = kl_on ? total(gspo_simd_acc<C>::sk) : 0.0;
  rp.kls += sk * sk_sum;
  const ops::ppo_clip_params<double> cpd{P.eps_low, P.eps_high, P.delta, P.dual_clip_c};
  if (q.seq && row_a) {
    rp.seq_clip = static_cast<unsigned char>((ops::ppo_clipped_low(r, a0, cpd) ? 1 : 0) |
                                             (ops::ppo_clipped_high(r, a0, cpd) ? 2 : 0) |
                                             (ops::ppo_dual_clipped(r, a0, cpd) ? 4 : 0));
  }
  if (!(n > 0)) return true;
  if (row_a && !std::isfinite(a0)) return false;
  double lo = 0, hi = 0;
  extrema(0, lo, hi);
  rp.ak[0] += -sx;
  rp.ak[1] += sx2;
  rp.ak[2] = std::min(rp.ak[2], -hi);
  rp.ak[3] = std::max(rp.ak[3], -lo);
  rp.ra[0] += n * r;
  rp.ra[1] += n * r * r;
  rp.ra[2] = std::min(rp.ra[2], r);
  rp.ra[3] = std::max(rp.ra[3], r);
  if (kl_on) {
    extrema(2, lo, hi);
    rp.kb[0] += sk_sum;
    rp.kb[1] += total(gspo_simd_acc<C>::sk2);
    rp.kb[2] = std::min(rp.kb[2], lo);
    rp.kb[3] = std::max(rp.kb[3], hi);
  }
  double c_lo = 0, c_hi = 0, c_du = 0;
  if (row_a) {
    rp.av[0] += n * a0;
    rp.av[1] += n * a0 * a0;
    rp.av[2] = std::min(rp.av[2], a0);
    rp.av[3] = std::max(rp.av[3], a0);
    if (!q.seq) {
      c_lo = ops::ppo_clipped_low(r, a0, cpd) ? n : 0.0;
      c_hi = ops::ppo_clipped_high(r, a0, cpd) ? n : 0.0;
      c_du = ops::ppo_dual_clipped(r, a0, cpd) ? n : 0.0;
    }
  } else {
    extrema(1, lo, hi);
    rp.av[0] += total(gspo_simd_acc<C>::sa);
    rp.av[1] += total(gspo_simd_acc<C>::sa2);
    rp.av[2] = std::min(rp.av[2], lo);
    rp.av[3] = std::max(rp.av[3], hi);
    const double ng = total(gspo_simd_acc<C>::neg), ps = total(gspo_simd_acc<C>::pos);
    c_lo = ops::ppo_clipped_low(r, -1.0, cpd) ? ng : 0.0;
    c_hi = ops::ppo_clipped_high(r, 1.0, cpd) ? ps : 0.0;
    c_du = ops::ppo_dual_clipped(r, -1.0, cpd) ? ng : 0.0;
  }
  rp.c_lo += c_lo;
  rp.c_hi += c_hi;
  rp.c_re += c_lo + c_hi;
  rp.c_du += c_du;
  return true;
}

/// Runs fast_simd_row_run for the policy kind and KL switch of the call (8 instantiations).
template <class C, class M, class G>
bool fast_simd_row_dispatch(policy_loss_kind k, bool kl, const fast_simd_params<C>& p,
                            const fast_simd_row<C, M, G>& rw, index_t Tn, fast_row_part& rp) {
  using K = policy_loss_kind;
  switch (k) {
    case K::ppo_clip:
      return kl ? fast_simd_row_run<K::ppo_clip, true>(p, rw, Tn, rp)
                : fast_simd_row_run<K::ppo_clip, false>(p, rw, Tn, rp);
    case K::cispo:
      return kl ? fast_simd_row_run<K::cispo, true>(p, rw, Tn, rp)
                : fast_simd_row_run<K::cispo, false>(p, rw, Tn, rp);
    case K::sapo:
      return kl ? fast_simd_row_run<K::sapo, true>(p, rw, Tn, rp)
                : fast_simd_row_run<K::sapo, false>(p, rw, Tn, rp);
    default:  // reinforce (the caller admits no other kind)
      return kl ? fast_simd_row_run<K::reinforce, true>(p, rw, Tn, rp)
                : fast_simd_row_run<K::reinforce, false>(p, rw, Tn, rp);
  }
}

// (GCC 12: the same false -Wuninitialized from avx512fintrin.h's reductions as above.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
/// Sum of one mask row in double and whether an entry is negative or non-finite (pass 1 of the
/// vectorised path: lane sums in C flushed to double like the row kernel).
/// end: one past the last nonzero entry (or past the batch holding it); bin: every entry is 0 or 1.
template <class C, class M>
double fast_mask_row_sum(const M* m, index_t Tn, bool& bad, index_t& end, bool& bin) noexcept {
  double n = 0.0;
  index_t t = 0;
  end = 0;
  bin = true;
#if GRPO_HAS_AVX512
  if constexpr (std::is_same_v<M, float> && std::is_same_v<C, float>) {
    // AVX-512: k-mask accumulators (every entry in [0, FLT_MAX] and 0 / 1), the last step with a
    // nonzero entry, lane sums flushed to double every kFlushBatches steps as below.
    const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f),
                 fmax = _mm512_set1_ps(std::numeric_limits<float>::max());
    __m512 acc = zero;
    __mmask16 ok = 0xFFFF, b01 = 0xFFFF;
    index_t since = 0;
    for (; t + 16 <= Tn; t += 16) {
      const __m512 x = _mm512_loadu_ps(m + t);
      ok &= _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(x, zero, _CMP_GE_OQ), x, fmax, _CMP_LE_OQ);
      const __mmask16 z = _mm512_cmp_ps_mask(x, zero, _CMP_EQ_OQ);
      b01 &= static_cast<__mmask16>(z | _mm512_cmp_ps_mask(x, one, _CMP_EQ_OQ));
      end = z != 0xFFFF ? t + 16 : end;
      acc = _mm512_add_ps(acc, x);
      if (++since == kFlushBatches) {
        n += static_cast<double>(_mm512_reduce_add_ps(acc));
        acc = zero;
        since = 0;
      }
    }
    n += static_cast<double>(_mm512_reduce_add_ps(acc));
    bad = bad || ok != 0xFFFF;
    bin = b01 == 0xFFFF;
    while (end > 0 && m[end - 1] == 0.0f) --end;  // exact (stops at the step's nonzero)
  } else
#endif
  {
#if GRPO_HAS_XSIMD
    if constexpr (std::is_same_v<M, C>) {
      using V = simd::batch_of<C>;
      constexpr auto L = static_cast<index_t>(V::size);
      V acc(C(0));
      auto badv = simd::none_set<V>(), nonbin = simd::none_set<V>();
      index_t since = 0;
      for (; t + L <= Tn; t += L) {
        const V x = simd::load<V>(m + t);
        badv = simd::bor(badv, !simd::band(x >= V(C(0)), simd::finite(x)));
        nonbin = simd::bor(nonbin, !simd::bor(x == V(C(0)), x == V(C(1))));
        if (simd::any(!(x == V(C(0))))) end = t + L;
        acc = acc + x;
        if (++since == kFlushBatches) {
          n += static_cast<double>(simd::hsum(acc));
          acc = V(C(0));
          since = 0;
        }
      }
      n += static_cast<double>(simd::hsum(acc));
      bad = bad || simd::any(badv);
      bin = !simd::any(nonbin);
      while (end > 0 && m[end - 1] == M(0)) --end;  // exact (stops at the batch's nonzero)
    }
#endif
  }
  for (; t < Tn; ++t) {
    const double x = static_cast<double>(m[t]);
    bad = bad || !mask_entry_ok(x);  // the shared mask rule (core/validate.hpp)
    if (x != 0) end = t + 1;
    bin = bin && (x == 0 || x == 1);
    n += x;
  }
  return n;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace detail


namespace detail {

/// Runs row(i) for every row i in [0, B), threaded with OpenMP when the batch pays for it
/// (B > 1 and B * Tn >= 2^15). Rows are independent and write only their own outputs and
/// partials, so results do not depend on the thread count. An error thrown by a row is captured
/// and rethrown after the parallel region (exceptions must not escape it); built without
/// exceptions, the rows run serially.
template <class F>
void for_each_row(index_t B, index_t Tn, F&& row) {
#if defined(_OPENMP) && GRPO_USE_EXCEPTIONS
  if (B > 1 && B * Tn >= (index_t{1} << 15)) {
    std::exception_ptr err;
#pragma omp parallel for schedule(static)
    for (index_t i = 0; i < B; ++i) {
      try {
        row(i);
      } catch (...) {
#pragma omp critical(grpo_compute_loss_error)
        if (!err) err = std::current_exception();
      }
    }
    if (err) std::rethrow_exception(err);
    return;
  }
#else
  (void)Tn;
#endif
  for (index_t i = 0; i < B; ++i) row(i);
}

}  // namespace detail

namespace detail {
/// compute_loss_into under loss_options::kl_openrlhf_float32 (defined after it).
template <class T, class M, class G>
loss_scalars loss_openrlhf_kl_f32(const loss_options& o, const loss_batch<T, M>& in,
                                  const loss_outputs<G>& out);
}  // namespace detail

/// Computes the objective of one batch into caller-owned outputs (see the file comment).
/// @pre all given views are host-resident with the extents of batch.logp; advantages [B, T]
///      (stride 0 along T allowed); truncated empty or size B. Valid tokens need finite logp,
///      old_logp, advantages (and ref_logp when KL is on): otherwise [grpo.bad_value].
/// @post out.grad_logp(i, t) = d loss / d logp(i, t); exactly 0 where the mask (after truncation)
///       is 0. (A token removed only by OPSM / the entropy mask still moves a sequence-level
///       ratio.) On an exception the contents of `out` are unspecified.
/// This is the computation without the overflow handling of compute_loss_into (below).
template <class T, class M, class G>
loss_scalars compute_loss_into_unchecked(const loss_options& o, const loss_batch<T, M>& in,
                                         const loss_outputs<G>& out) {
  using detail::has;
  // Validation first: every shape and option error is reported before any output is written, and
  // names the argument (TRL/verl fail deep inside torch with broadcasting errors instead).
  validate(o);
  if (o.ratio_base_sampler) {  // OpenRLHF GSPO + vLLM IS: the sampler log-probs are the base
    GRPO_EXPECTS(detail::has(in.sampler_logp), shape_mismatch,
                 "sampler_logp: required when ratio_base_sampler is set");
    loss_options o2 = o;
    o2.ratio_base_sampler = false;
    loss_batch<T, M> b2 = in;
    b2.old_logp = in.sampler_logp;
    b2.sampler_logp = {};
    loss_scalars r = compute_loss_into(o2, b2, out);
    // metrics.approx_kl stays lo - lp against old_logp when given (OpenRLHF's ppo_kl), not the
    // ratio base; over the mask after truncation (no OPSM / entropy mask: else the base's).
    if (detail::has(in.old_logp) && !o.opsm_threshold && !(o.top_entropy_quantile < 1.0)) {
      expect_extents(in.old_logp, in.logp.extents(), "old_logp");
      stat_accumulator ak;
      for (index_t i = 0; i < in.logp.extent(0); ++i)
        for (index_t t = 0; t < in.logp.extent(1); ++t) {
          const bool tr = !in.truncated.empty() && in.truncated[static_cast<std::size_t>(i)];
          const double m = tr ? 0.0 : static_cast<double>(in.mask(i, t));
          if (m != 0.0)
            ak.add(static_cast<double>(in.old_logp(i, t)) - static_cast<double>(in.logp(i, t)), m);
        }
      r.metrics.approx_kl = ak;
    }
    return r;
  }
  if (o.kl_openrlhf_float32 && o.kl_coef != 0.0) return detail::loss_openrlhf_kl_f32(o, in, out);
  const auto& lpv = in.logp;
  // An empty batch built from empty vectors (null data, zero extent) is valid.
  GRPO_EXPECTS(has(lpv) || lpv.extent(0) == 0 || lpv.extent(1) == 0, shape_mismatch,
               "logp: required");
  expect_host(lpv, "logp");
  const index_t B = lpv.extent(0), Tn = lpv.extent(1);
  const std::array<index_t, 2> ext{B, Tn};
  GRPO_EXPECTS(has(in.advantages) || B * Tn == 0, shape_mismatch, "advantages: required");
  GRPO_EXPECTS(has(in.mask) || B * Tn == 0, shape_mismatch, "mask: required");
  // An empty logp beside non-empty inputs is a missing logp, not an empty batch: name it.
  GRPO_EXPECTS(B * Tn != 0 || in.advantages.extent(0) * in.advantages.extent(1) == 0,
               shape_mismatch, "logp: required (empty logp beside non-empty advantages)");
  expect_extents(in.advantages, ext, "advantages");
  expect_extents(in.mask, ext, "mask");
  expect_host(in.advantages, "advantages");
  expect_host(in.mask, "mask");
  const bool has_old = has(in.old_logp), has_ref = has(in.ref_logp);
  const bool has_smp = has(in.sampler_logp), has_isw = has(in.is_weights),
             has_ent = has(in.entropy);
  if (has_old) expect_extents(in.old_logp, ext, "old_logp");
  if (has_ref) expect_extents(in.ref_logp, ext, "ref_logp");
  if (has_smp) expect_extents(in.sampler_logp, ext, "sampler_logp");
  if (has_isw) expect_extents(in.is_weights, ext, "is_weights");
  if (has_ent) expect_extents(in.entropy, ext, "entropy");
  GRPO_EXPECTS(
      in.truncated.empty() || static_cast<index_t>(in.truncated.size()) == B, shape_mismatch,
      "truncated: size " + std::to_string(in.truncated.size()) + ", expected " + std::to_string(B));
  GRPO_EXPECTS(o.kl_coef == 0.0 || has_ref, shape_mismatch, "ref_logp: required when kl_coef != 0");
  const bool use_emask = o.top_entropy_quantile < 1.0;
  GRPO_EXPECTS(!(use_emask || o.entropy_coef != 0.0) || has_ent, shape_mismatch,
               "entropy: required for the entropy bonus or the top-entropy mask");
  GRPO_EXPECTS(!o.tis.enabled || has_smp || has_isw, shape_mismatch,
               "sampler_logp or is_weights: required when tis is enabled");
  GRPO_EXPECTS(!(o.tis.enabled && has_isw), bad_option,
               "is_weights and tis.enabled are exclusive (weights would be applied twice)");
  expect_extents(out.grad_logp, ext, "grad_logp");
  if (has(out.per_token_loss)) expect_extents(out.per_token_loss, ext, "per_token_loss");
  if (has(out.grad_entropy)) expect_extents(out.grad_entropy, ext, "grad_entropy");
  const auto& P = o.policy;
  const bool gmpo = P.kind == policy_loss_kind::gmpo;
  GRPO_EXPECTS(out.per_seq_loss.empty() || static_cast<index_t>(out.per_seq_loss.size()) == B,
               shape_mismatch, "per_seq_loss: size must equal the row count");

  // Element accessors widen to double: all arithmetic and every accumulation runs in double
  // whatever the storage type (float / double views), so float inputs lose nothing in reductions.
  // With no old_logp the batch is on-policy: old = sg[logp], r = 1 with d r / d lp = 1 (TRL skips
  // computing old log-probs when num_iterations == 1).
  auto lp_at = [&](index_t i, index_t t) { return static_cast<double>(lpv(i, t)); };
  auto lo_at = [&](index_t i, index_t t) {
    return has_old ? static_cast<double>(in.old_logp(i, t)) : lp_at(i, t);
  };
  auto A_at = [&](index_t i, index_t t) { return static_cast<double>(in.advantages(i, t)); };
  // A zero stride along T marks per-sequence advantages: TRL then reports sequence-level clip
  // metrics per row (its (B, 1) tensors) instead of per token.
  const bool adv_per_row = in.advantages.stride(1) == 0;
  // The per-token composition (row statistics, final mask, steps 2-6) is the host+device code of
  // <grpo/detail/loss_token.hpp>, shared with the CUDA kernels; tok() gathers one token's inputs
  // for it (absent inputs replaced by their defaults: ref = lp, sampler = old, isw = 1).
  const detail::loss_params lpar = detail::make_loss_params(o);
  auto tok = [&](index_t i, index_t t, double m) {
    detail::token_in x;
    x.m = m;
    x.lp = lp_at(i, t);
    x.lo = lo_at(i, t);
    x.A = A_at(i, t);
    x.lr = o.kl_coef != 0.0 ? static_cast<double>(in.ref_logp(i, t)) : x.lp;
    x.ls = has_smp ? static_cast<double>(in.sampler_logp(i, t)) : x.lo;
    x.has_isw = has_isw;
    x.isw = has_isw ? static_cast<double>(in.is_weights(i, t)) : 1.0;
    x.h = has_ent ? static_cast<double>(in.entropy(i, t)) : 0.0;
    return x;
  };

  // ---- pass 1: base mask, row statistics, validation -----------------------------------------
  // Row quantities that every token of the row needs before its loss can be formed:
  //   n_i    = sum_t m_it (base mask: loss mask x truncation)
  //   xbar_i = sum_t m (lp - lo) / max(n_i, 1)          sequence log ratio (GSPO, TRL clamp(min=1))
  //   gap_i  = sum_t m (ls - lp) / max(n_i, 1)          OPSM off-policy gap (ls = sampler or old)
  //   rho_i  = exp(sum_t m (lo - ls))                   sequence TIS weight (a product, not a mean)
  //   lw_i   = clamp(sum_t m clamp(lp-lo, +-20) + sum_t clamp(log rho_t), log 1e-8, 20)  VESPO
  std::vector<double> n_base(static_cast<std::size_t>(B), 0.0);
  std::vector<double> xbar(static_cast<std::size_t>(B), 0.0);      // mean log ratio (seq levels)
  std::vector<double> gap(static_cast<std::size_t>(B), 0.0);       // OPSM mean gap
  std::vector<double> rho_seq(static_cast<std::size_t>(B), 1.0);   // sequence TIS weight
  std::vector<double> vespo_lw(static_cast<std::size_t>(B), 0.0);  // VESPO seq log weight
  std::vector<double> entropies;
  loss_metrics met;
  auto base_m = [&](index_t i, index_t t) {
    if (!in.truncated.empty() && in.truncated[static_cast<std::size_t>(i)]) return 0.0;
    return static_cast<double>(in.mask(i, t));
  };
  // The engine of the call (loss/plan.hpp: the one place of the dispatch rules).
  const loss_plan pl = plan(o, in, out);
  const bool row_stats = pl.row_stats;
  const bool fast = pl.route == loss_route::token_rows;
  constexpr bool simd_types = (std::is_same_v<T, float> || std::is_same_v<T, double>)&&(
      std::is_same_v<G, float> || std::is_same_v<G, double>)&&(std::is_same_v<M, T> ||
                                                               std::is_integral_v<M>);
  const bool simd_path = fast && pl.simd;
  const bool gspo_path = pl.route == loss_route::sequence_rows;
  const bool vec_pass1 = simd_path || gspo_path;  // pass 1 = mask rows only
  std::vector<index_t> row_end;  // vectorised path: one past each row's last nonzero mask entry
  std::vector<unsigned char> row_bin;  // vectorised path: 0 / 1 mask (2: and a prefix of ones)
  if constexpr (simd_types) {
    if (vec_pass1) {
      // Pass 1 of the vectorised path: row counts only (no row statistics are needed), mask rows
      // validated and summed with vector loads; rows threaded like the main pass.
      using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
      std::vector<unsigned char> bad_row(static_cast<std::size_t>(B), 0);
      row_end.assign(static_cast<std::size_t>(B), 0);
      row_bin.assign(static_cast<std::size_t>(B), 0);
      auto count_row = [&](index_t i) {
        bool bad = false;
        index_t end = 0;
        bool bin = false;
        const double n = detail::fast_mask_row_sum<C>(&in.mask(i, 0), Tn, bad, end, bin);
        // binary rows: 1 = 0 / 1 entries, 2 = also exactly [0, end) set (right padding)
        row_bin[static_cast<std::size_t>(i)] = bin ? (n == static_cast<double>(end) ? 2 : 1) : 0;
        const bool trunc = !in.truncated.empty() && in.truncated[static_cast<std::size_t>(i)];
        n_base[static_cast<std::size_t>(i)] = trunc ? 0.0 : n;
        row_end[static_cast<std::size_t>(i)] = trunc ? 0 : end;
        bad_row[static_cast<std::size_t>(i)] = bad ? 1 : 0;
      };
      if (Tn > 0) {
#if defined(_OPENMP)
        if (B > 1 && B * Tn >= (index_t{1} << 15)) {
#pragma omp parallel for schedule(static)
          for (index_t i = 0; i < B; ++i) count_row(i);
        } else {
          for (index_t i = 0; i < B; ++i) count_row(i);
        }
#else
        for (index_t i = 0; i < B; ++i) count_row(i);
#endif
      }
      for (index_t i = 0; i < B; ++i) {
        GRPO_EXPECTS(!bad_row[static_cast<std::size_t>(i)], bad_value,
                     "mask: entries must be finite and >= 0 (row " + std::to_string(i) + ")");
        if (!in.truncated.empty() && in.truncated[static_cast<std::size_t>(i)])
          met.truncated_seqs += 1;
      }
    }
  }
  // Row contexts of the general pass (the vectorised path needs none: its rows take their counts
  // and factors directly, and a [B] vector of 144-byte contexts is a fresh page-faulted
  // allocation per call at training batch sizes).
  std::vector<detail::row_ctx> rows(vec_pass1 ? 0 : static_cast<std::size_t>(B));
  for (index_t i = 0; i < B && !vec_pass1; ++i) {
    const bool trunc = !in.truncated.empty() && in.truncated[static_cast<std::size_t>(i)];
    if (trunc) met.truncated_seqs += 1;
    detail::row_sums rs;
    for (index_t t = 0; t < Tn; ++t) {
      const double mraw = static_cast<double>(in.mask(i, t));
      detail::expect_mask_entry(mraw, "mask", i, t);  // the shared mask rule (core/validate.hpp)
      const double m = trunc ? 0.0 : mraw;
      if (m == 0.0) continue;
      if (use_emask) {
        const double h = static_cast<double>(in.entropy(i, t));
        GRPO_EXPECTS(std::isfinite(h), bad_value, "entropy: non-finite value on a valid token");
        entropies.push_back(h);
      }
      if (!row_stats) {  // plain token-level losses need only the counts here
        rs.n += m;
        continue;
      }
      // (finiteness of lp / old / A / ref is checked in the main pass; NaN here cannot escape)
      rs += detail::token_row_sums(lpar, tok(i, t, m));
    }
    // n_i, xbar_i, gap_i, rho_i, lw_i (the list above) from the row sums.
    const auto k = static_cast<std::size_t>(i);
    rows[k] = detail::finish_row(lpar, rs);
    n_base[k] = rows[k].n_base;
    xbar[k] = rows[k].xbar;
    gap[k] = rows[k].gap;
    rho_seq[k] = rows[k].rho_seq;
    vespo_lw[k] = rows[k].vespo_lw;
  }

  // Top-entropy threshold (TRL get_high_entropy_mask: quantile at 1 - rho, linear interpolation).
  // TRL gathers the valid entropies of all ranks first; callers that shard pass the global value
  // in entropy_threshold so every shard masks the same tokens.
  double h_thr = -std::numeric_limits<double>::infinity();
  if (use_emask) {
    if (o.entropy_threshold)
      h_thr = *o.entropy_threshold;
    else if (!entropies.empty())
      h_thr = detail::quantile_linear(std::move(entropies), 1.0 - o.top_entropy_quantile);
  }

  // Token multipliers: OPSM keep and entropy keep (both either in the mask or on the policy term).
  // OPSM is evaluated per token so token-level advantages work: keep iff A_t >= 0 or gap_i <= delta
  // (for per-sequence A this is TRL's (B, 1) sequence mask). GMPO always folds both into the mask
  // because its per-sequence ratio has no per-token multiplier to carry them.
  for (auto& rc : rows) rc.h_thr = h_thr;
  auto opsm_keep = [&](index_t i, index_t t) {
    return detail::opsm_keep(lpar, rows[static_cast<std::size_t>(i)], tok(i, t, base_m(i, t)));
  };
  auto ent_keep = [&](index_t i, index_t t) {
    return detail::ent_keep(lpar, rows[static_cast<std::size_t>(i)], tok(i, t, base_m(i, t)));
  };
  // Final mask value (denominators): base mask x [OPSM keep] x [entropy keep] when they join it.
  auto final_m = [&](index_t i, index_t t) {
    return detail::final_mask(lpar, rows[static_cast<std::size_t>(i)], tok(i, t, base_m(i, t)));
  };

  std::vector<double> n_fin(static_cast<std::size_t>(B), 0.0),
      n_ent(static_cast<std::size_t>(B), 0.0);
  const bool extra_masks = o.opsm_threshold.has_value() || use_emask;
  for (index_t i = 0; i < B; ++i) {
    if (!extra_masks) {  // final mask == base mask
      n_fin[i] = n_ent[i] = n_base[i];
      met.tokens += n_base[i];
      met.sequences += n_base[i] > 0 ? 1 : 0;
      continue;
    }
    double nf = 0, ne = 0;
    bool dropped = false;
    for (index_t t = 0; t < Tn; ++t) {
      const double mb = base_m(i, t);
      if (mb == 0.0) continue;
      if (!opsm_keep(i, t)) dropped = true;
      const bool ek = ent_keep(i, t);
      if (!ek) met.entropy_masked_tokens += mb;
      const double mf = final_m(i, t);
      nf += mf;
      if (ek) ne += mf;
    }
    if (dropped) met.opsm_dropped_seqs += 1;
    n_fin[i] = nf;
    n_ent[i] = ne;
    met.tokens += nf;
    met.sequences += nf > 0 ? 1 : 0;
  }
  // Row factors of the three terms, all from the FINAL mask (the contract of aggregate.hpp): the
  // policy and KL terms share n_fin (TRL adds beta KL to the per-token loss), the entropy bonus
  // uses m x entropy mask (TRL's effective_mask).
  const auto s_pol = aggregation_row_scales(n_fin, Tn, o.agg);
  const auto s_kl = o.kl_agg ? aggregation_row_scales(n_fin, Tn, *o.kl_agg) : s_pol;
  const auto s_ent = aggregation_row_scales(n_ent, Tn, o.entropy_agg);

  // Ratio of a token: value and direct derivative d r / d lp_t (sequence level adds a spread term),
  // detail::token_ratio (step 2 of the shared composition).
  const bool seq_level = P.level != is_level::token;
  const bool has_clip = P.kind == policy_loss_kind::ppo_clip || P.kind == policy_loss_kind::cispo ||
                        P.kind == policy_loss_kind::gmpo;
  auto ratio_of = [&](index_t i, index_t t, double& r, double& dr_direct, double& dr_spread) {
    const double x = seq_level ? 0.0 : lp_at(i, t) - lo_at(i, t);  // (T may be 0 at seq level)
    const detail::ratio_terms rt = detail::token_ratio(P, x, xbar[i]);
    r = rt.r;
    dr_direct = rt.d_direct;
    dr_spread = rt.d_spread;
  };

  const double eps_lo = P.eps_low, eps_hi = P.eps_high;

  // ---- sequence-level ratio path (GSPO / GSPO-token, PPO clip) --------------------------------
  // The sequence ratio is one number per row: each row is swept for sum m (lp - lo), then its
  // tokens are evaluated against the row constants (detail::gspo_v512_row_impl for float on
  // AVX-512, detail::gspo_simd_row otherwise). The scalar twin below runs the same algorithm in
  // double with the general engine's exact operation order: it reruns a row flagged by a kernel
  // (a non-finite input on a valid token: it throws the error naming the argument; a float
  // overflow of a lane sum: it recomputes the row). Rows are threaded and merged in row order.
  // The row descriptor of the vectorised kernels (both paths below) for row i, in the kernels'
  // compute type CT (the type of `ct`): the row's inputs and outputs, its scales and counts, and
  // the next row's streams for the kernels' prefetch (each kernel reads the fields it uses).
  // Gradient stores stream once the gradient alone is far beyond the last-level cache (it is not
  // read back here, and the caller's next pass over it misses the cache anyway).
  const bool stream_grad = static_cast<std::size_t>(B) * static_cast<std::size_t>(Tn) *
                               sizeof(G) >=
                           std::size_t{GRPO_LOSS_STREAM_STORE_BYTES};
  auto simd_row_of = [&](auto ct, index_t i) {
    using CT = decltype(ct);
    const auto k = static_cast<std::size_t>(i);
    const bool kl_in = o.kl_coef != 0.0;
    detail::fast_simd_row<CT, M, G> rw;
    rw.lp = &lpv(i, 0);
    rw.lo = has_old ? &in.old_logp(i, 0) : rw.lp;
    rw.lr = kl_in ? &in.ref_logp(i, 0) : nullptr;
    if (in.advantages.stride(1) == 0)
      rw.a0 = static_cast<CT>(in.advantages(i, 0));
    else
      rw.A = &in.advantages(i, 0);
    rw.m = &in.mask(i, 0);
    rw.trunc = !in.truncated.empty() && in.truncated[k];
    rw.g = &out.grad_logp(i, 0);
    rw.ptl = has(out.per_token_loss) ? &out.per_token_loss(i, 0) : nullptr;
    rw.ge = has(out.grad_entropy) ? &out.grad_entropy(i, 0) : nullptr;
    rw.sp = static_cast<CT>(s_pol[k]);
    rw.sk = static_cast<CT>(s_kl[k]);
    rw.end = row_end[k];
    rw.n = n_base[k];
    rw.bin = row_bin[k] != 0;
    rw.prefix = row_bin[k] == 2;
    if (i + 1 < B) {
      rw.nlp = &lpv(i + 1, 0);
      rw.nlo = has_old ? &in.old_logp(i + 1, 0) : rw.nlp;
      rw.nlr = kl_in ? &in.ref_logp(i + 1, 0) : nullptr;
      rw.nA = rw.A != nullptr ? &in.advantages(i + 1, 0) : nullptr;
      rw.nm = &in.mask(i + 1, 0);
      rw.nend = row_end[k + 1];
    }
    rw.nt = stream_grad;
    return rw;
  };
  if (gspo_path) {
    const bool want_ptl = has(out.per_token_loss), want_ge = has(out.grad_entropy);
    const bool kl_on = o.kl_coef != 0.0;
    const bool seq = P.level == is_level::sequence;
    const ops::ppo_clip_params<double> cpd{P.eps_low, P.eps_high, P.delta, P.dual_clip_c};
    std::vector<detail::fast_row_part> parts(static_cast<std::size_t>(B));
    auto blk = [](double* b, double x, double w) {
      b[0] += w * x;
      b[1] += w * x * x;
      b[2] = x < b[2] ? x : b[2];
      b[3] = x > b[3] ? x : b[3];
    };
    auto scalar_row = [&](index_t i) {
      detail::fast_row_part& rp = parts[static_cast<std::size_t>(i)];
      rp = detail::fast_row_part{};
      const double sp = s_pol[i], sk = s_kl[i];
      // Sweep 1: validation (the general engine's order) and the row sums in token order.
      double n = 0.0, sx = 0.0;
      for (index_t t = 0; t < Tn; ++t) {
        const double mb = base_m(i, t);
        if (mb == 0.0) continue;
        const double lp = lp_at(i, t), lo = lo_at(i, t);
        GRPO_EXPECTS(std::isfinite(lp), bad_value, "logp: non-finite value on a valid token");
        GRPO_EXPECTS(std::isfinite(lo), bad_value, "old_logp: non-finite value on a valid token");
        GRPO_EXPECTS(std::isfinite(A_at(i, t)), bad_value,
                     "advantages: non-finite value on a valid token");
        if (kl_on)
          GRPO_EXPECTS(std::isfinite(static_cast<double>(in.ref_logp(i, t))), bad_value,
                       "ref_logp: non-finite value on a valid token");
        n += mb;
        sx += mb * (lp - lo);
      }
      const double nc = n < 1.0 ? 1.0 : n;
      const detail::ratio_terms rt = detail::token_ratio(P, 0.0, sx / nc);
      const double r = rt.r, drd = rt.d_direct, drs = rt.d_spread;
      // Sweep 2: every token (per-token loss at every position, as the general engine).
      double row_g = 0.0;
      for (index_t t = 0; t < Tn; ++t) {
        const double mb = base_m(i, t);
        if (mb == 0.0 && !want_ptl) {
          out.grad_logp(i, t) = G(0);
          if (want_ge) out.grad_entropy(i, t) = G(0);
          continue;
        }
        const double lp = lp_at(i, t), A = A_at(i, t);
        const policy_token_terms term = policy_token(P, r, A, lp);
        double ptl = term.value, g = 0.0;
        if (mb != 0.0) {
          const double W = sp * mb;
          rp.pol += W * term.value;
          g += W * (term.d_ratio * drd + term.d_logp);
          row_g += W * term.d_ratio * drs;
        }
        if (kl_on) {
          const double lr = static_cast<double>(in.ref_logp(i, t));
          const auto kv = ops::kl_value_grad(o.kl, lp, lr);
          double k = kv.value, kg = kv.grad, kd = 0.0, ks = 0.0;
          if (o.kl_bias_correction) {  // d(k r) = k' r + k r' (r' direct, or spread)
            kd = k * drd;
            ks = k * drs;
            kg *= r;
            k = ops::kl_bias_corrected(k, r);
          }
          ptl += o.kl_coef * k;
          if (mb != 0.0) {
            const double W = sk * mb;
            rp.kls += W * k;
            g += W * o.kl_coef * (kg + kd);
            row_g += W * o.kl_coef * ks;
            blk(rp.kb, k, mb);
          }
        }
        if (want_ptl) out.per_token_loss(i, t) = static_cast<G>(ptl);
        if (want_ge) out.grad_entropy(i, t) = G(0);
        out.grad_logp(i, t) = static_cast<G>(g);
        if (mb == 0.0) continue;
        rp.wsum += mb;
        blk(rp.ak, -(lp - lo_at(i, t)), mb);
        blk(rp.av, A, mb);
        blk(rp.ra, r, mb);
        if (!(seq && adv_per_row)) {
          const bool lo_c = ops::ppo_clipped_low(r, A, cpd),
                     hi_c = ops::ppo_clipped_high(r, A, cpd);
          rp.c_lo += lo_c ? mb : 0.0;
          rp.c_hi += hi_c ? mb : 0.0;
          rp.c_re += (lo_c || hi_c) ? mb : 0.0;
          rp.c_du += ops::ppo_dual_clipped(r, A, cpd) ? mb : 0.0;
        }
      }
      // Sweep 3 (GSPO): d r_i / d lp_t = r_i m_t / max(n_i, 1) times the row's summed d l / d r.
      if (seq && row_g != 0.0) {
        for (index_t t = 0; t < Tn; ++t) {
          const double mb = base_m(i, t);
          if (mb == 0.0) continue;
          out.grad_logp(i, t) =
              static_cast<G>(static_cast<double>(out.grad_logp(i, t)) + row_g * mb / nc);
        }
      }
      if (seq && adv_per_row) {
        const double A = A_at(i, 0);
        rp.seq_clip = static_cast<unsigned char>((ops::ppo_clipped_low(r, A, cpd) ? 1 : 0) |
                                                 (ops::ppo_clipped_high(r, A, cpd) ? 2 : 0) |
                                                 (ops::ppo_dual_clipped(r, A, cpd) ? 4 : 0));
      }
    };
    detail::gspo_params gq;
    gq.P = P;
    gq.kl = o.kl;
    gq.kl_coef = o.kl_coef;
    gq.kl_bias = o.kl_bias_correction;
    gq.seq = seq;
    auto run_row = [&](index_t i) {
#if GRPO_HAS_AVX512
      if constexpr (simd_types && std::is_same_v<T, float>) {
        if (Tn > 0) {
          const auto rw = simd_row_of(float{}, i);
          detail::fast_row_part& rp = parts[static_cast<std::size_t>(i)];
          const bool ok = adv_per_row ? detail::gspo_v512_row_run<true>(gq, kl_on, rw, Tn, rp)
                                      : detail::gspo_v512_row_run<false>(gq, kl_on, rw, Tn, rp);
          if (!ok) scalar_row(i);  // throws [grpo.bad_value] naming the input (or recomputes)
          return;
        }
      }
#endif
      if constexpr (simd_types) {  // xsimd twin (double; float without AVX-512)
        if (Tn > 0) {
          using CT = std::conditional_t<std::is_same_v<T, double>, double, float>;
          const auto rw = simd_row_of(CT{}, i);
          detail::fast_row_part& rp = parts[static_cast<std::size_t>(i)];
          if (!detail::gspo_simd_row(gq, kl_on, rw, Tn, rp)) scalar_row(i);
          return;
        }
      }
      scalar_row(i);
    };
    detail::for_each_row(B, Tn, run_row);  // threaded rows, errors rethrown after
    // Merge in row order (the general engine's metric schema and values).
    double pol = 0.0, kls = 0.0;
    for (const detail::fast_row_part& rp : parts) {
      pol += rp.pol;
      kls += rp.kls;
      if (seq && adv_per_row) {  // TRL: one 0/1 value per sequence, over ALL rows
        const double lo = (rp.seq_clip & 1) ? 1.0 : 0.0, hi = (rp.seq_clip & 2) ? 1.0 : 0.0;
        met.clip_low.add(lo);
        met.clip_high.add(hi);
        met.clip_region.add((rp.seq_clip & 3) ? 1.0 : 0.0);
        met.clip_dual.add((rp.seq_clip & 4) ? 1.0 : 0.0);
        met.clip_low_seq.add(lo);
        met.clip_high_seq.add(hi);
      }
      const double wsum = rp.wsum;
      if (!(wsum > 0)) continue;
      met.approx_kl.add_block(rp.ak[0], rp.ak[1], wsum, rp.ak[2], rp.ak[3]);
      met.advantage.add_block(rp.av[0], rp.av[1], wsum, rp.av[2], rp.av[3]);
      met.ratio.add_block(rp.ra[0], rp.ra[1], wsum, rp.ra[2], rp.ra[3]);
      met.is_weight.add_block(wsum, wsum, wsum, 1.0, 1.0);
      if (kl_on) met.kl.add_block(rp.kb[0], rp.kb[1], wsum, rp.kb[2], rp.kb[3]);
      if (!(seq && adv_per_row)) {
        met.clip_low.add_indicator(rp.c_lo, wsum);
        met.clip_high.add_indicator(rp.c_hi, wsum);
        met.clip_region.add_indicator(rp.c_re, wsum);
        met.clip_dual.add_indicator(rp.c_du, wsum);
        met.clip_low_seq.add(rp.c_lo / wsum);
        met.clip_high_seq.add(rp.c_hi / wsum);
      }
    }
    loss_scalars gres;
    gres.policy_loss = pol;
    gres.kl_loss = kls;
    gres.loss = pol + o.kl_coef * kls;
    gres.metrics = met;
    gres.engine_used = loss_engine::sequence_rows;
    return gres;
  }

  // ---- fast path: token-level ratio surrogates without extra masks or IS weights -------------
  // The common training configuration (GRPO / DAPO / Dr. GRPO / CISPO / SAPO / GPG at token level,
  // optional in-loss KL) needs no row-wide terms: one tight loop per row, metric statistics reduced
  // per row. Same ops calls and the same token order for the loss sums as the general pass.
  if (fast) {
    const bool want_ptl = has(out.per_token_loss), want_ge = has(out.grad_entropy);
    const bool kl_on = o.kl_coef != 0.0;
    const ops::ppo_clip_params<double> cpf{P.eps_low, P.eps_high, P.delta, P.dual_clip_c};
    const bool ppo = P.kind == policy_loss_kind::ppo_clip;
    const bool cispo_cap = P.kind == policy_loss_kind::cispo && P.cispo == cispo_clip::trl_cap;
    const bool cispo_any = P.kind == policy_loss_kind::cispo;
    const bool clip_rules = ppo || (cispo_any && !cispo_cap);
    // Per-row partial results (detail::fast_row_part), merged serially in row order below.
    std::vector<detail::fast_row_part> parts(static_cast<std::size_t>(B));
    auto blk = [](double* b, double x, double w) {
      b[0] += w * x;
      b[1] += w * x * x;
      b[2] = x < b[2] ? x : b[2];
      b[3] = x > b[3] ? x : b[3];
    };
    auto do_row = [&](index_t i) {
      detail::fast_row_part& rp = parts[static_cast<std::size_t>(i)];
      const bool trunc = !in.truncated.empty() && in.truncated[static_cast<std::size_t>(i)];
      const double sp = s_pol[i], sk = s_kl[i];
      for (index_t t = 0; t < Tn; ++t) {
        const double mf = trunc ? 0.0 : static_cast<double>(in.mask(i, t));
        if (mf == 0.0 && !want_ptl) {  // padding: nothing to evaluate, gradient exactly 0
          out.grad_logp(i, t) = G(0);
          if (want_ge) out.grad_entropy(i, t) = G(0);
          continue;
        }
        const double lp = lp_at(i, t), lo = lo_at(i, t), A = A_at(i, t);
        if (mf != 0.0) {
          GRPO_EXPECTS(std::isfinite(lp), bad_value, "logp: non-finite value on a valid token");
          GRPO_EXPECTS(std::isfinite(lo), bad_value, "old_logp: non-finite value on a valid token");
          GRPO_EXPECTS(std::isfinite(A), bad_value,
                       "advantages: non-finite value on a valid token");
        }
        const double x = lp - lo;
        const double r = ops::ratio_from_log(x, P.log_ratio_min, P.log_ratio_max);
        const double drd = ops::clamp_scalar_grad(x, P.log_ratio_min, P.log_ratio_max) * r;
        const auto term = policy_token(P, r, A, lp);
        double ptl = term.value, g = 0.0;
        if (mf != 0.0) {
          const double W = sp * mf;
          rp.pol += W * term.value;
          g = W * (term.d_ratio * drd + term.d_logp);
        }
        if (kl_on) {
          const double lr = static_cast<double>(in.ref_logp(i, t));
          if (mf != 0.0)
            GRPO_EXPECTS(std::isfinite(lr), bad_value,
                         "ref_logp: non-finite value on a valid token");
          const auto kv = ops::kl_value_grad(o.kl, lp, lr);
          double k = kv.value, kg = kv.grad, kd = 0.0;
          if (o.kl_bias_correction) {  // d(k r) = k' r + k r'
            kd = k * drd;
            kg *= r;
            k = ops::kl_bias_corrected(k, r);
          }
          ptl += o.kl_coef * k;
          if (mf != 0.0) {
            const double W = sk * mf;
            rp.kls += W * k;
            g += W * o.kl_coef * (kg + kd);
            blk(rp.kb, k, mf);
          }
        }
        if (want_ptl) out.per_token_loss(i, t) = static_cast<G>(ptl);
        if (want_ge) out.grad_entropy(i, t) = G(0);
        out.grad_logp(i, t) = static_cast<G>(g);
        if (mf == 0.0) continue;
        rp.wsum += mf;
        blk(rp.ak,
            -(o.approx_kl_unclamped ? x : ops::clamp_scalar(x, P.log_ratio_min, P.log_ratio_max)),
            mf);
        blk(rp.av, A, mf);
        blk(rp.ra, r, mf);
        if (cispo_any) rp.c_w += term.weight != r ? mf : 0.0;
        bool lo_c = false, hi_c = false, du_c = false;
        if (cispo_cap) {
          hi_c = r > eps_hi && A > 0;
        } else if (clip_rules) {
          lo_c = ops::ppo_clipped_low(r, A, cpf);
          hi_c = ops::ppo_clipped_high(r, A, cpf);
          du_c = ops::ppo_dual_clipped(r, A, cpf);
        }
        rp.c_lo += lo_c ? mf : 0.0;
        rp.c_hi += hi_c ? mf : 0.0;
        rp.c_re += (lo_c || hi_c) ? mf : 0.0;
        rp.c_du += du_c ? mf : 0.0;
      }
      if (!out.per_seq_loss.empty()) out.per_seq_loss[static_cast<std::size_t>(i)] = G(0);
    };
    // Vectorised rows (detail::fast_simd_row_run: the same maths on xsimd batches, inputs in their
    // own precision). A row with a non-finite input on a valid token is rerun by do_row above,
    // which throws the error that names the argument.
    using CT = std::conditional_t<std::is_same_v<T, double>, double, float>;
    detail::fast_simd_params<CT> sprm;
    sprm.cp = {CT(P.eps_low), CT(P.eps_high), CT(P.delta), CT(P.dual_clip_c)};
    sprm.lr_min = CT(P.log_ratio_min);
    sprm.lr_max = CT(P.log_ratio_max);
    sprm.lr_clamped = std::isfinite(P.log_ratio_min) || std::isfinite(P.log_ratio_max);
    sprm.eps_low = CT(P.eps_low);
    sprm.eps_high = CT(P.eps_high);
    sprm.tau_pos = CT(P.sapo_tau_pos);
    sprm.tau_neg = CT(P.sapo_tau_neg);
    sprm.cispo_cap = cispo_cap;
    sprm.kl = o.kl;
    sprm.kl_coef = CT(o.kl_coef);
    sprm.kl_bias = o.kl_bias_correction;
    auto run_row = [&](index_t i) {
      if constexpr (simd_types) {
        if (simd_path && Tn > 0) {
          const auto rw = simd_row_of(CT{}, i);
          detail::fast_row_part& rp = parts[static_cast<std::size_t>(i)];
          if (!detail::fast_simd_row_dispatch(P.kind, kl_on, sprm, rw, Tn, rp)) {
            rp = detail::fast_row_part{};
            do_row(i);  // throws [grpo.bad_value] naming the input
          }
          if (!out.per_seq_loss.empty()) out.per_seq_loss[static_cast<std::size_t>(i)] = G(0);
          return;
        }
      }
      do_row(i);
    };
    detail::for_each_row(B, Tn, run_row);  // threaded rows, errors rethrown after
    double pol = 0.0, kls = 0.0;
    for (const detail::fast_row_part& rp : parts) {
      pol += rp.pol;
      kls += rp.kls;
      const double wsum = rp.wsum;
      if (!(wsum > 0)) continue;
      met.approx_kl.add_block(rp.ak[0], rp.ak[1], wsum, rp.ak[2], rp.ak[3]);
      met.advantage.add_block(rp.av[0], rp.av[1], wsum, rp.av[2], rp.av[3]);
      met.ratio.add_block(rp.ra[0], rp.ra[1], wsum, rp.ra[2], rp.ra[3]);
      met.is_weight.add_block(wsum, wsum, wsum, 1.0, 1.0);
      if (kl_on) met.kl.add_block(rp.kb[0], rp.kb[1], wsum, rp.kb[2], rp.kb[3]);
      if (cispo_any) met.weight_clip.add_indicator(rp.c_w, wsum);
      met.clip_low.add_indicator(rp.c_lo, wsum);
      met.clip_high.add_indicator(rp.c_hi, wsum);
      met.clip_region.add_indicator(rp.c_re, wsum);
      met.clip_dual.add_indicator(rp.c_du, wsum);
      met.clip_low_seq.add(rp.c_lo / wsum);
      met.clip_high_seq.add(rp.c_hi / wsum);
    }
    loss_scalars fres;
    fres.policy_loss = pol;
    fres.kl_loss = kls;
    fres.loss = pol + o.kl_coef * kls;
    fres.metrics = met;
    fres.engine_used = simd_path && Tn > 0 ? loss_engine::token_rows_simd : loss_engine::token_rows;
    return fres;
  }

  // ---- pass 2: per-token loss, gradient, metrics --------------------------------------------
  // Each valid token contributes W_it * l_it with W_it = s_i m_it (aggregation weight) times its
  // policy multiplier c_it; the gradient is therefore W_it c_it (dl/dr dr/dlp + dl/dlp) plus, for
  // sequence-level ratios, a row-wide term accumulated in row_g and spread in a second sweep.
  // Rows are independent here (pass 1 produced every cross-row quantity): each row sums into its
  // own partial (policy / KL / entropy sums and metrics), merged in row order after the loop, so
  // the rows can be threaded and the result does not depend on the number of threads.
  loss_scalars res;
  const ops::ppo_clip_params<double> cp{P.eps_low, P.eps_high, P.delta, P.dual_clip_c};
  std::vector<double> row_g(static_cast<std::size_t>(B), 0.0);  // spread gradient per row
  struct row_part {
    double pol = 0.0, kl = 0.0, ent = 0.0;
    loss_metrics met;
  };
  std::vector<row_part> gparts(static_cast<std::size_t>(B));

  auto general_row = [&](index_t i) {
    row_part& part = gparts[static_cast<std::size_t>(i)];
    double &pol_sum = part.pol, &kl_sum = part.kl, &ent_sum = part.ent;
    loss_metrics& met = part.met;  // (this row's metrics; merged into the call's below)
    const double nc = n_base[i] < 1.0 ? 1.0 : n_base[i];
    double ls_low = 0, ls_high = 0, ls_reg = 0, ls_dual = 0;  // per-row clip counts (token weight)
    // Row context of the shared per-token composition: the pass-1 statistics, the final-mask
    // counts and the aggregation factors of the three terms.
    detail::row_ctx rc = rows[static_cast<std::size_t>(i)];
    rc.n_fin = n_fin[i];
    rc.n_ent = n_ent[i];
    rc.s_pol = s_pol[i];
    rc.s_kl = s_kl[i];
    rc.s_ent = s_ent[i];
    // GMPO: per-sequence ratio of sign-clipped log ratios.
    //   w_i = exp(sum_t m x~_t / den_i),  Abar_i = sum_t m A_t / den_i,  l_i = -Abar_i w_i
    //   den_i = n_i + 1e-8 (verl) or max(n_i, 1) (TRL); loss = scale * sum_i l_i / G (G = B in
    //   verl) d l_i / d lp_t = -Abar_i w_i x~'_t m_t / den_i
    if (gmpo) {
      detail::row_sums2 s2;
      for (index_t t = 0; t < Tn; ++t) {
        const double mb = base_m(i, t);
        if (mb == 0.0) continue;
        const auto c2 = detail::token_row_sums2(lpar, rc, tok(i, t, mb));
        if (c2.nf != 0.0) s2 += c2;
      }
      s2.nf = n_fin[i];  // the count of the final mask, as summed above
      detail::finish_row2(lpar, s2, has_isw, rc);
      rc.n_ent = n_ent[i];
      rc.s_gmpo = detail::gmpo_scale(lpar, static_cast<double>(B));
      const double g_loss = detail::gmpo_seq_loss(rc);
      if (!out.per_seq_loss.empty())
        out.per_seq_loss[static_cast<std::size_t>(i)] = static_cast<G>(g_loss);
      pol_sum += detail::gmpo_row_loss(lpar, rc);
    }

    // VESPO phi of the row (sign of the row's advantage taken per token, as TRL's (B,1) tensor).
    if (P.kind == policy_loss_kind::vespo)  // TRL logs the (B,1) phi over all rows
      met.vespo_phi.add(ops::vespo_phi(vespo_lw[i], A_at(i, 0), P.vespo_k_pos, P.vespo_lambda_pos,
                                       P.vespo_k_neg, P.vespo_lambda_neg));
    for (index_t t = 0; t < Tn; ++t) {
      const double mb = base_m(i, t);
      const double lp = lp_at(i, t), A = A_at(i, t);
      if (mb != 0.0) {
        GRPO_EXPECTS(std::isfinite(lp), bad_value, "logp: non-finite value on a valid token");
        GRPO_EXPECTS(std::isfinite(lo_at(i, t)), bad_value,
                     "old_logp: non-finite value on a valid token");
        GRPO_EXPECTS(std::isfinite(A), bad_value, "advantages: non-finite value on a valid token");
        if (o.kl_coef != 0.0)
          GRPO_EXPECTS(std::isfinite(static_cast<double>(in.ref_logp(i, t))), bad_value,
                       "ref_logp: non-finite value on a valid token");
      }
      // Steps 2-6 of the file comment for this token (shared with the CUDA kernels).
      const detail::token_in x = tok(i, t, mb);
      const detail::token_out tt = detail::token_terms(lpar, rc, x, has_ent);
      const double mf = tt.mf;
      const double r = tt.ratio, rho = tt.rho;
      double g = tt.g_logp;
      if (mf != 0.0) {
        if (!gmpo) {
          pol_sum += tt.pol;
          row_g[i] += tt.spread_pol;
          if (P.kind == policy_loss_kind::cispo)
            met.weight_clip.add(tt.weight != r ? 1.0 : 0.0, mf);
        }
        if (o.kl_coef != 0.0) {
          kl_sum += tt.kl;
          row_g[i] += tt.spread_kl;
          met.kl.add(tt.kl_value, mf);
        }
      }
      // Entropy bonus: loss -= coef * sum s^H_i m^H_it H_it, so d loss / d H_it = -coef s^H_i
      // m^H_it; the fused logits path chains this with d H / d logits (not computed here).
      if (o.entropy_coef != 0.0 || has_ent) {
        if (has_ent && tt.me != 0.0) {
          ent_sum += tt.ent;
          met.entropy.add(x.h, tt.me);
        }
        if (has(out.grad_entropy)) out.grad_entropy(i, t) = static_cast<G>(tt.g_h);
      } else if (has(out.grad_entropy)) {
        out.grad_entropy(i, t) = G(0);
      }
      if (has(out.per_token_loss)) out.per_token_loss(i, t) = static_cast<G>(tt.ptl);
      out.grad_logp(i, t) = static_cast<G>(g);  // spread term added in the second sweep

      // Metrics over valid tokens of the final mask.
      if (mf != 0.0) {
        const double x = lp - lo_at(i, t);
        const double xc = seq_level || o.approx_kl_unclamped
                              ? x
                              : ops::clamp_scalar(x, P.log_ratio_min, P.log_ratio_max);
        met.approx_kl.add(-xc, mf);
        met.advantage.add(A, mf);
        met.is_weight.add(rho, mf);
        met.ratio.add(gmpo ? std::exp(x) : r, mf);
        bool lo_c = false, hi_c = false, du_c = false;
        if (!has_clip) {
          // SAPO, REINFORCE, VESPO have no clipping: fractions are 0 (verl/TRL report none).
        } else if (gmpo) {  // verl geo_mean: log ratio outside the band, split by sign of A
          const bool out_band = x < -eps_lo || x > eps_hi;
          lo_c = out_band && A < 0;
          hi_c = out_band && A > 0;
        } else if (P.kind == policy_loss_kind::cispo && P.cispo == cispo_clip::trl_cap) {
          hi_c = r > eps_hi && A > 0;
        } else {
          lo_c = ops::ppo_clipped_low(r, A, cp);
          hi_c = ops::ppo_clipped_high(r, A, cp);
          du_c = ops::ppo_dual_clipped(r, A, cp);
        }
        if (!(P.level == is_level::sequence && adv_per_row)) {
          ls_low += lo_c ? mf : 0.0;
          ls_high += hi_c ? mf : 0.0;
          ls_reg += (lo_c || hi_c) ? mf : 0.0;
          ls_dual += du_c ? mf : 0.0;
        }
      }
    }
    // Per-sequence clip statistics (TRL clip_ratio/low_min and high_max are min / max over rows of
    // the per-row token fractions; at sequence level each row is one 0/1 value).
    if (P.level == is_level::sequence && adv_per_row) {
      // TRL: one value per sequence over ALL rows (empty rows included).
      double r, drd, drs;
      ratio_of(i, 0, r, drd, drs);
      const double A = A_at(i, 0);
      bool lo_c = false, hi_c = false, du_c = false;
      if (P.kind == policy_loss_kind::ppo_clip) {
        lo_c = ops::ppo_clipped_low(r, A, cp);
        hi_c = ops::ppo_clipped_high(r, A, cp);
        du_c = ops::ppo_dual_clipped(r, A, cp);
      } else if (P.kind == policy_loss_kind::cispo && P.cispo == cispo_clip::trl_cap) {
        hi_c = r > eps_hi && A > 0;
      }
      met.clip_low.add(lo_c ? 1.0 : 0.0);
      met.clip_high.add(hi_c ? 1.0 : 0.0);
      met.clip_region.add((lo_c || hi_c) ? 1.0 : 0.0);
      met.clip_dual.add(du_c ? 1.0 : 0.0);
      met.clip_low_seq.add(lo_c ? 1.0 : 0.0);
      met.clip_high_seq.add(hi_c ? 1.0 : 0.0);
    } else if (n_fin[i] > 0) {
      met.clip_low.add_indicator(ls_low, n_fin[i]);
      met.clip_high.add_indicator(ls_high, n_fin[i]);
      met.clip_region.add_indicator(ls_reg, n_fin[i]);
      met.clip_dual.add_indicator(ls_dual, n_fin[i]);
      met.clip_low_seq.add(ls_low / n_fin[i]);
      met.clip_high_seq.add(ls_high / n_fin[i]);
    }
    // Sequence-level (TRL GSPO) spread: d s_i / d lp_t = s_i m_t / max(n_i, 1).
    if (P.level == is_level::sequence && row_g[i] != 0.0) {
      for (index_t t = 0; t < Tn; ++t) {
        const double mb = base_m(i, t);
        if (mb == 0.0) continue;
        out.grad_logp(i, t) =
            static_cast<G>(static_cast<double>(out.grad_logp(i, t)) + row_g[i] * mb / nc);
      }
    }
  };
  detail::for_each_row(B, Tn, general_row);  // threaded rows, errors rethrown after
  double pol_sum = 0.0, kl_sum = 0.0, ent_sum = 0.0;
  for (const row_part& part : gparts) {  // row order
    pol_sum += part.pol;
    kl_sum += part.kl;
    ent_sum += part.ent;
    met.merge(part.met);
  }
  res.policy_loss = pol_sum;
  res.kl_loss = kl_sum;
  res.entropy_loss = ent_sum;
  res.loss = pol_sum + o.kl_coef * kl_sum - o.entropy_coef * ent_sum;
  res.metrics = met;
  return res;
}

namespace detail {

/// compute_loss_into with the in-loss KL as OpenRLHF's actor computes it in float32
/// (loss_options::kl_openrlhf_float32): the policy and entropy terms by compute_loss_into without
/// the KL (any engine: none of them sees the flag), then the KL term over the whole batch by
/// detail::openrlhf_kl_loss_core (torch's float32 sum is not row-separable): its value on every
/// position into the per-token loss (+ kl_coef kl_t), its float32 gradient into grad_logp on
/// valid tokens, kl_loss = OpenRLHF's float32 kl_loss, loss += fl(kl_loss kl_coef) (the actor's
/// `kl_loss * kl_ctl`). N: the KL aggregation's global_tokens (x its scale, OpenRLHF dp_size), or
/// the batch's valid tokens (max with token_count_floor); N = 0 gives a 0 term (the engine's
/// convention; OpenRLHF: NaN). The mask (after truncation) must be 0 / 1, as OpenRLHF's bool.
template <class T, class M, class G>
loss_scalars loss_openrlhf_kl_f32(const loss_options& o, const loss_batch<T, M>& in,
                                  const loss_outputs<G>& out) {
  GRPO_EXPECTS(has(in.ref_logp), shape_mismatch, "ref_logp: required when kl_coef != 0");
  loss_options o2 = o;
  o2.kl_coef = 0.0;
  o2.kl_openrlhf_float32 = false;
  loss_batch<T, M> b2 = in;
  b2.ref_logp = {};
  loss_scalars res = compute_loss_into(o2, b2, out);  // validates every other input
  const index_t B = in.logp.extent(0), Tn = in.logp.extent(1);
  expect_extents(in.ref_logp, {B, Tn}, "ref_logp");
  expect_host(in.ref_logp, "ref_logp");
  auto mk = [&](index_t i, index_t t) {
    const bool tr = !in.truncated.empty() && in.truncated[static_cast<std::size_t>(i)];
    return !tr && static_cast<double>(in.mask(i, t)) != 0.0;
  };
  auto lp = [&](index_t i, index_t t) { return static_cast<double>(in.logp(i, t)); };
  auto lr = [&](index_t i, index_t t) { return static_cast<double>(in.ref_logp(i, t)); };
  double count = 0.0;
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < Tn; ++t) {
      if (!mk(i, t)) continue;
      GRPO_EXPECTS(static_cast<double>(in.mask(i, t)) == 1.0, bad_value,
                   "mask: entries must be 0 or 1 with kl_openrlhf_float32 (OpenRLHF's "
                   "action_mask is bool; row " +
                       std::to_string(i) + ")");
      GRPO_EXPECTS(std::isfinite(lr(i, t)), bad_value,
                   "ref_logp: non-finite value on a valid token");
      count += 1.0;
    }
  const agg_options& ka = o.kl_agg ? *o.kl_agg : o.agg;
  double N = ka.global_tokens ? *ka.global_tokens : count;
  N = N < ka.token_count_floor ? ka.token_count_floor : N;
  const bool want_ptl = has(out.per_token_loss);
  loss_metrics kmet;
  double kl_loss = 0.0;
  if (N > 0) {
    kl_loss = openrlhf_kl_loss_core(
        o.kl.estimator, B, Tn, lp, lr, mk, N, ka.scale, o.kl_coef, true,
        [&](index_t i, index_t t, double k, double g) {
          if (want_ptl)
            out.per_token_loss(i, t) =
                static_cast<G>(static_cast<double>(out.per_token_loss(i, t)) + o.kl_coef * k);
          if (!mk(i, t)) return;
          out.grad_logp(i, t) = static_cast<G>(static_cast<double>(out.grad_logp(i, t)) + g);
          kmet.kl.add(k, 1.0);
        });
  } else if (want_ptl) {  // no valid token: values only (every position, as the engine)
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < Tn; ++t)
        out.per_token_loss(i, t) = static_cast<G>(
            static_cast<double>(out.per_token_loss(i, t)) +
            o.kl_coef * openrlhf_kl_token(o.kl.estimator, lp(i, t), lr(i, t), 0.0, true).value);
  }
  res.metrics.kl = kmet.kl;
  res.kl_loss = kl_loss;
  const double kl_term =
      static_cast<double>(mul32(static_cast<float>(kl_loss), static_cast<float>(o.kl_coef)));
  res.loss = res.policy_loss + kl_term - o.entropy_coef * res.entropy_loss;
  return res;
}

}  // namespace detail

namespace detail {
/// Log-ratio bound of the overflow rerun of compute_loss_into: exp(700) ~ 1.0e304 is a finite
/// double; float storage runs the vectorised kernels in float lanes: exp(88) ~ 1.7e38 < FLT_MAX.
template <class T>
inline constexpr double overflow_log_ratio_max = std::is_same_v<T, float> ? 88.0 : 700.0;
}  // namespace detail

/// compute_loss_into_unchecked, then the overflow rule (design.md section 4: a finite input never
/// gives a NaN gradient beside a finite loss). A valid token with logp - old_logp >= log(DBL_MAX)
/// ~ 709.78 (88.7 for float storage; where log_ratio_max does not clamp) makes r = exp(x) = +inf,
/// seen in O(1) as metrics.ratio.max = +inf. The call is then rerun with the log-ratio clamped
/// at 700 (float: 88), which is
/// exact where the surrogate is flat in r beyond that point (clipped PPO with dual clip or delta,
/// CISPO's capped / clipped weight, SAPO's saturated gate, REINFORCE, VESPO's clamped weight,
/// GMPO's clipped ratio): d l / d r = 0 there, so the limit of d l / d x = d l / d r * r is 0,
/// where 0 * inf gave NaN. Plain PPO-clip (no dual clip, no delta) grows as -A r for A < 0: a
/// named error. A loss that still is not finite (e.g. a KL estimator or |A| r past DBL_MAX) is a
/// named error as well. Inputs that do not overflow take one call and are unchanged bit for bit.
template <class T, class M, class G>
loss_scalars compute_loss_into(const loss_options& o, const loss_batch<T, M>& in,
                               const loss_outputs<G>& out) {
  loss_scalars s = compute_loss_into_unchecked(o, in, out);
  const auto& P = o.policy;
  constexpr double bound = detail::overflow_log_ratio_max<T>;
  if (s.metrics.ratio.max == std::numeric_limits<double>::infinity() && P.log_ratio_max > bound) {
    GRPO_EXPECTS(!(P.kind == policy_loss_kind::ppo_clip && P.dual_clip_c == 0 && P.delta == 0),
                 bad_value,
                 "logp - old_logp >= 709.78 on a valid token: the importance ratio overflows and "
                 "the PPO-clip loss -A r is not finite for A < 0; set "
                 "policy_options.log_ratio_max (verl: 20) or dual_clip_c");
    loss_options o2 = o;
    o2.policy.log_ratio_max = bound;
    s = compute_loss_into_unchecked(o2, in, out);
  }
  GRPO_EXPECTS(std::isfinite(s.loss), bad_value,
               "compute_loss_into: the loss is not finite for finite inputs (a log-ratio or KL "
               "term overflows double); clamp it with policy_options.log_ratio_max / "
               "loss_options.kl clamps");
  return s;
}

/// Owning result of compute_loss(): scalars plus row-major [B, T] vectors. The per-token loss is
/// evaluated at every position (padding included, like the peers' pg_losses) but only masked-in
/// positions enter the scalar loss; hand grad_logp to any autograd engine (logp.backward(grad)).
struct loss_result : loss_scalars {
  index_t rows = 0, cols = 0;
  std::vector<double> per_token_loss;  ///< [B*T] row-major
  std::vector<double> grad_logp;       ///< [B*T] d loss / d logp
  std::vector<double> grad_entropy;    ///< [B*T] d loss / d H
  std::vector<double> per_seq_loss;    ///< [B] (GMPO)
  /// Element (i, t) of a [B*T] vector.
  [[nodiscard]] double at(const std::vector<double>& v, index_t i, index_t t) const {
    return v[static_cast<std::size_t>(i * cols + t)];
  }
};

/// Allocating convenience front end of compute_loss_into (double outputs).
/// @pre see compute_loss_into.
template <class T, class M>
loss_result compute_loss(const loss_options& o, const loss_batch<T, M>& in) {
  detail::check_view(in.logp, "logp");  // extents valid before B * T is allocated
  loss_result r;
  r.rows = in.logp.extent(0);
  r.cols = in.logp.extent(1);
  const auto n = static_cast<std::size_t>(r.rows * r.cols);
  r.per_token_loss.assign(n, 0.0);
  r.grad_logp.assign(n, 0.0);
  r.grad_entropy.assign(n, 0.0);
  r.per_seq_loss.assign(static_cast<std::size_t>(r.rows), 0.0);
  loss_outputs<double> out;
  out.grad_logp = make_view(r.grad_logp.data(), {r.rows, r.cols});
  out.per_token_loss = make_view(r.per_token_loss.data(), {r.rows, r.cols});
  out.grad_entropy = make_view(r.grad_entropy.data(), {r.rows, r.cols});
  out.per_seq_loss = std::span<double>(r.per_seq_loss);
  static_cast<loss_scalars&>(r) = compute_loss_into(o, in, out);
  return r;
}

/// Positional convenience: compute_loss(options, logp, old_logp, ref_logp, advantages, mask).
/// Pass a default-constructed view for old_logp (on-policy) or ref_logp (no KL term).
/// @pre see compute_loss_into; @post see loss_result.
template <class T, class M>
loss_result compute_loss(const loss_options& o, strided_view<const T, 2> logp,
                         strided_view<const T, 2> old_logp, strided_view<const T, 2> ref_logp,
                         strided_view<const T, 2> advantages, strided_view<const M, 2> mask) {
  loss_batch<T, M> b;
  b.logp = logp;
  b.old_logp = old_logp;
  b.ref_logp = ref_logp;
  b.advantages = advantages;
  b.mask = mask;
  return compute_loss(o, b);
}

}  // namespace grpo

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
#pragma once

#include <grpo/aggregate.hpp>
#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/detail/loss_token.hpp>
#include <grpo/detail/simd.hpp>
#include <grpo/kl.hpp>
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

/// Rollout / training mismatch correction (detached IS weights on the policy term).
struct tis_options {
  bool enabled = false;
  bool sequence = false;  ///< sequence weight exp(sum_t m (lo - ls)) instead of per token
  ops::tis_mode mode = ops::tis_mode::truncate;
  double c_min = 0.0;  ///< lower threshold (<= 0: none)
  double c_max = 0.0;  ///< upper threshold (<= 0: none)
  /// Safety clamp of the log weight before exp (verl 20); 0 = none (TRL).
  double log_clamp = 0.0;
};

/// Every option of the objective. Presets (<grpo/presets.hpp>) fill it for TRL, verl, OpenRLHF.
struct loss_options {
  policy_options policy{};
  agg_options agg{};  ///< aggregation of the policy term (and of KL unless kl_agg is set)
  // In-loss KL.
  double kl_coef = 0.0;  ///< TRL beta, verl kl_loss_coef; 0 = no KL term (ref_logp not needed)
  kl_params kl{};
  bool kl_bias_correction = false;    ///< TRL use_bias_correction_kl: KL * r, r not detached
  std::optional<agg_options> kl_agg;  ///< verl aggregates KL with loss_agg_mode separately
  // Entropy bonus: loss -= entropy_coef * agg(H).
  double entropy_coef = 0.0;
  agg_options entropy_agg{};  ///< TRL: token mean over m * entropy mask (default)
  // Top-entropy token mask (TRL top_entropy_quantile rho; 1 = off).
  double top_entropy_quantile = 1.0;
  std::optional<double> entropy_threshold;  ///< global threshold (gathered by the caller)
  bool entropy_mask_in_denominator = true;  ///< our contract; TRL: false
  // Off-policy sequence mask (DeepSeek-V3.2), threshold delta on the mean sampler/current gap.
  std::optional<double> opsm_threshold;
  bool opsm_in_denominator = true;  ///< our contract; TRL: false
  tis_options tis{};
};

/// The inputs of one (micro-)batch. Optional views are left default-constructed (null data).
template <class T, class M = T>
struct loss_batch {
  strided_view<const T, 2> logp;      ///< [B, T] current log-probs (differentiable)
  strided_view<const T, 2> old_logp;  ///< [B, T] behaviour log-probs; null: on-policy (= sg[logp])
  strided_view<const T, 2> ref_logp;  ///< [B, T] reference log-probs; needed iff kl_coef != 0
  strided_view<const T, 2> advantages;    ///< [B, T]; per-sequence [B] via broadcast_rows()
  strided_view<const M, 2> mask;          ///< [B, T] loss mask (completion * tool mask)
  strided_view<const T, 2> sampler_logp;  ///< [B, T] rollout-engine log-probs (TIS, OPSM)
  strided_view<const T, 2> is_weights;    ///< [B, T] precomputed detached IS weights rho
  strided_view<const T, 2> entropy;       ///< [B, T] per-token entropy (bonus, top-entropy mask)
  std::span<const unsigned char> truncated{};  ///< [B] 1 = truncated completion (row dropped)
};

/// A per-sequence [B] vector seen as [B, T] with a zero stride along T (advantages per sequence).
template <class T>
constexpr strided_view<const T, 2> broadcast_rows(const T* data, index_t rows, index_t cols,
                                                  index_t row_stride = 1) noexcept {
  return strided_view<const T, 2>(data, {rows, cols}, {row_stride, 0});
}

/// Caller-owned outputs. grad_logp is required; the others are optional (null = not written).
template <class G>
struct loss_outputs {
  strided_view<G, 2> grad_logp;       ///< [B, T] d loss / d logp (0 on masked tokens)
  strided_view<G, 2> per_token_loss;  ///< [B, T] policy integrand (x multipliers) + kl_coef * KL
  strided_view<G, 2> grad_entropy;    ///< [B, T] d loss / d H (for the fused path to chain)
  std::span<G> per_seq_loss{};        ///< [B] GMPO sequence losses
};

/// Scalars of a compute_loss call.
struct loss_scalars {
  double loss = 0.0;          ///< policy_loss + kl_coef * kl_loss - entropy_coef * entropy_loss
  double policy_loss = 0.0;   ///< aggregated policy term
  double kl_loss = 0.0;       ///< aggregated KL (before the coefficient)
  double entropy_loss = 0.0;  ///< aggregated entropy (before the coefficient)
  loss_metrics metrics{};
};

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
  const auto valid = !(m == zero);  // (see simd.hpp: never != on batches)
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
inline constexpr index_t kPrefetch = 64;
/// Read prefetch hint for p + ahead (never dereferenced: an address past the row end is harmless;
/// formed as an integer so no out-of-range pointer is created). No-op without the builtin.
template <class X>
GRPO_FORCEINLINE void fast_prefetch(const X* p, index_t ahead) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  const auto a =
      reinterpret_cast<std::uintptr_t>(p) + static_cast<std::uintptr_t>(ahead) * sizeof(X);
  __builtin_prefetch(reinterpret_cast<const void*>(a), 0, 3);
#else
  (void)p;
  (void)ahead;
#endif
}

/// One row of the vectorised fast path into rp. Returns false if a valid token has a non-finite
/// input (rp is then incomplete; the caller reports the error through the scalar path).
template <policy_loss_kind K, bool KL, class C, class M, class G>
bool fast_simd_row_run(const fast_simd_params<C>& p_in, const fast_simd_row<C, M, G>& rw_in,
                       index_t Tn, fast_row_part& rp) {
  // Local copies: the output stores (G*) could otherwise alias the parameters, forcing the compiler
  // to reload and re-broadcast every parameter after every store.
  const fast_simd_params<C> p = p_in;
  const fast_simd_row<C, M, G> rw = rw_in;
  bool bad = false;
  index_t t = 0;
#if GRPO_HAS_XSIMD
  using V = simd::batch_of<C>;
  constexpr auto L = static_cast<index_t>(V::size);
  {
    fast_simd_acc<V> a;
    index_t since = 0;
    auto badv = simd::none_set<V>();
    for (; t + L <= Tn; t += L) {
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
  for (; t < Tn; ++t) {
    bad = fast_simd_step<K, KL, C>(p, rw, t, s) || bad;
    if (++since == kFlushBatches) {
      s.flush();
      since = 0;
    }
  }
  s.flush();
  s.finish(rp);
  if (rw.A == nullptr && rp.wsum > 0) {  // per-sequence advantage: constant over the row
    const double A = static_cast<double>(rw.a0);
    rp.av[0] += rp.wsum * A;
    rp.av[1] += rp.wsum * A * A;
    rp.av[2] = A < rp.av[2] ? A : rp.av[2];
    rp.av[3] = A > rp.av[3] ? A : rp.av[3];
  }
  return !bad;
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

/// Sum of one mask row in double and whether an entry is negative or non-finite (pass 1 of the
/// vectorised path: lane sums in C flushed to double like the row kernel).
template <class C, class M>
double fast_mask_row_sum(const M* m, index_t Tn, bool& bad) noexcept {
  double n = 0.0;
  index_t t = 0;
#if GRPO_HAS_XSIMD
  if constexpr (std::is_same_v<M, C>) {
    using V = simd::batch_of<C>;
    constexpr auto L = static_cast<index_t>(V::size);
    V acc(C(0));
    auto badv = simd::none_set<V>();
    index_t since = 0;
    for (; t + L <= Tn; t += L) {
      const V x = simd::load<V>(m + t);
      badv = simd::bor(badv, !simd::band(x >= V(C(0)), simd::finite(x)));
      acc = acc + x;
      if (++since == kFlushBatches) {
        n += static_cast<double>(simd::hsum(acc));
        acc = V(C(0));
        since = 0;
      }
    }
    n += static_cast<double>(simd::hsum(acc));
    bad = bad || simd::any(badv);
  }
#endif
  for (; t < Tn; ++t) {
    const double x = static_cast<double>(m[t]);
    bad = bad || !(std::isfinite(x) && x >= 0);
    n += x;
  }
  return n;
}

}  // namespace detail

/// Validates loss_options (batch-independent). Throws [grpo.bad_option] / [grpo.bad_value].
inline void validate(const loss_options& o) {
  validate(o.policy);
  validate(o.agg);
  if (o.kl_agg) validate(*o.kl_agg);
  validate(o.entropy_agg);
  GRPO_EXPECTS(std::isfinite(o.kl_coef), bad_value, "loss_options.kl_coef must be finite");
  GRPO_EXPECTS(std::isfinite(o.entropy_coef), bad_value,
               "loss_options.entropy_coef must be finite");
  GRPO_EXPECTS(o.kl.inner_clamp >= 0 && o.kl.outer_clamp >= 0 && std::isfinite(o.kl.inner_clamp) &&
                   std::isfinite(o.kl.outer_clamp),
               bad_value, "loss_options.kl clamps must be finite and >= 0");
  GRPO_EXPECTS(o.top_entropy_quantile >= 0 && o.top_entropy_quantile <= 1, bad_value,
               "loss_options.top_entropy_quantile must be in [0, 1]");
  GRPO_EXPECTS(!o.opsm_threshold || std::isfinite(*o.opsm_threshold), bad_value,
               "loss_options.opsm_threshold must be finite");
  GRPO_EXPECTS(!o.tis.enabled || o.tis.c_min > 0 || o.tis.c_max > 0, bad_option,
               "loss_options.tis: at least one of c_min / c_max is required");
  GRPO_EXPECTS(!o.tis.enabled || o.tis.c_min <= 0 || o.tis.c_max <= 0 || o.tis.c_min <= o.tis.c_max,
               bad_option, "loss_options.tis: c_min must be <= c_max");
}

namespace detail {

/// The flat, trivially copyable parameter block of the per-token composition
/// (<grpo/detail/loss_token.hpp>) built from loss_options; shared by compute_loss_into and the
/// CUDA launchers (grpo::cuda::make_loss_params).
/// @pre validate(o) passed. @post every option copied; unset optionals flagged off.
inline loss_params make_loss_params(const loss_options& o) noexcept {
  const auto& P = o.policy;
  loss_params out{};
  out.policy = P;
  out.kl_coef = o.kl_coef;
  out.kl = o.kl;
  out.kl_bias = o.kl_bias_correction;
  out.entropy_coef = o.entropy_coef;
  out.emask = o.top_entropy_quantile < 1.0;
  out.top_entropy_quantile = o.top_entropy_quantile;
  out.has_entropy_threshold = o.entropy_threshold.has_value();
  out.entropy_threshold = o.entropy_threshold ? *o.entropy_threshold : 0.0;
  out.entropy_mask_in_denominator = o.entropy_mask_in_denominator;
  out.opsm = o.opsm_threshold.has_value();
  out.opsm_threshold = o.opsm_threshold ? *o.opsm_threshold : 0.0;
  out.opsm_in_denominator = o.opsm_in_denominator;
  out.tis = o.tis.enabled;
  out.tis_sequence = o.tis.sequence;
  out.tis_mode = o.tis.mode;
  out.tis_c_min = o.tis.c_min;
  out.tis_c_max = o.tis.c_max;
  out.tis_log_clamp = o.tis.log_clamp;
  out.agg = make_agg_params(o.agg);
  out.kl_agg = o.kl_agg ? make_agg_params(*o.kl_agg) : out.agg;
  out.ent_agg = make_agg_params(o.entropy_agg);
  out.needs_row_logp = P.level != is_level::token || out.opsm || (out.tis && out.tis_sequence) ||
                       out.is_gmpo() || out.is_vespo() || out.emask;
  out.uses_entropy = o.entropy_coef != 0.0 || out.emask;
  return out;
}

}  // namespace detail

/// Computes the objective of one batch into caller-owned outputs (see the file comment).
/// @pre all given views are host-resident with the extents of batch.logp; advantages [B, T]
///      (stride 0 along T allowed); truncated empty or size B. Valid tokens need finite logp,
///      old_logp, advantages (and ref_logp when KL is on): otherwise [grpo.bad_value].
/// @post out.grad_logp(i, t) = d loss / d logp(i, t); exactly 0 where the mask (after truncation)
///       is 0. (A token removed only by OPSM / the entropy mask still moves a sequence-level
///       ratio.) On an exception the contents of `out` are unspecified.
template <class T, class M, class G>
loss_scalars compute_loss_into(const loss_options& o, const loss_batch<T, M>& in,
                               const loss_outputs<G>& out) {
  using detail::has;
  // Validation first: every shape and option error is reported before any output is written, and
  // names the argument (TRL/verl fail deep inside torch with broadcasting errors instead).
  validate(o);
  const auto& lpv = in.logp;
  GRPO_EXPECTS(has(lpv), shape_mismatch, "logp: required");
  expect_host(lpv, "logp");
  const index_t B = lpv.extent(0), Tn = lpv.extent(1);
  const std::array<index_t, 2> ext{B, Tn};
  GRPO_EXPECTS(has(in.advantages), shape_mismatch, "advantages: required");
  GRPO_EXPECTS(has(in.mask), shape_mismatch, "mask: required");
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
  const bool row_stats = P.level != is_level::token || o.opsm_threshold.has_value() ||
                         (o.tis.enabled && o.tis.sequence) || P.kind == policy_loss_kind::vespo;
  // Token-level fast path (see below): the common configuration with no row-wide terms.
  const bool fast = P.level == is_level::token && !gmpo && P.kind != policy_loss_kind::vespo &&
                    !o.opsm_threshold.has_value() && !use_emask && !o.tis.enabled && !has_isw &&
                    !has_ent && o.entropy_coef == 0.0;
  // Its vectorised form needs float or double inputs and outputs, a mask of the input type (or an
  // integer mask) and rows contiguous along t (advantages: contiguous or per sequence).
  constexpr bool simd_types = (std::is_same_v<T, float> || std::is_same_v<T, double>) &&
                              (std::is_same_v<G, float> || std::is_same_v<G, double>) &&
                              (std::is_same_v<M, T> || std::is_integral_v<M>);
  auto unit_t = [&](const auto& v) { return Tn <= 1 || v.stride(1) == 1; };
  const bool simd_path =
      simd_types && fast && unit_t(lpv) && (!has_old || unit_t(in.old_logp)) &&
      (o.kl_coef == 0.0 || unit_t(in.ref_logp)) && unit_t(in.mask) &&
      (in.advantages.stride(1) == 0 || unit_t(in.advantages)) && unit_t(out.grad_logp) &&
      (!has(out.per_token_loss) || unit_t(out.per_token_loss)) &&
      (!has(out.grad_entropy) || unit_t(out.grad_entropy)) &&
      (P.kind == policy_loss_kind::ppo_clip || P.kind == policy_loss_kind::cispo ||
       P.kind == policy_loss_kind::sapo || P.kind == policy_loss_kind::reinforce);
  if constexpr (simd_types) {
    if (simd_path) {
      // Pass 1 of the vectorised path: row counts only (no row statistics are needed), mask rows
      // validated and summed with vector loads; rows threaded like the main pass.
      using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
      std::vector<unsigned char> bad_row(static_cast<std::size_t>(B), 0);
      auto count_row = [&](index_t i) {
        bool bad = false;
        const double n = detail::fast_mask_row_sum<C>(&in.mask(i, 0), Tn, bad);
        const bool trunc = !in.truncated.empty() && in.truncated[static_cast<std::size_t>(i)];
        n_base[static_cast<std::size_t>(i)] = trunc ? 0.0 : n;
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
  std::vector<detail::row_ctx> rows(static_cast<std::size_t>(B));
  for (index_t i = 0; i < B && !simd_path; ++i) {
    const bool trunc = !in.truncated.empty() && in.truncated[static_cast<std::size_t>(i)];
    if (trunc) met.truncated_seqs += 1;
    detail::row_sums rs;
    for (index_t t = 0; t < Tn; ++t) {
      const double mraw = static_cast<double>(in.mask(i, t));
      GRPO_EXPECTS(std::isfinite(mraw) && mraw >= 0, bad_value,
                   "mask: entries must be finite and >= 0 (row " + std::to_string(i) + ")");
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
  if (simd_path)  // the vectorised pass 1 counted the rows only
    for (index_t i = 0; i < B; ++i) {
      detail::row_sums rs;
      rs.n = n_base[static_cast<std::size_t>(i)];
      rows[static_cast<std::size_t>(i)] = detail::finish_row(lpar, rs);
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
        blk(rp.ak, -ops::clamp_scalar(x, P.log_ratio_min, P.log_ratio_max), mf);
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
          detail::fast_simd_row<CT, M, G> rw;
          rw.lp = &lpv(i, 0);
          rw.lo = has_old ? &in.old_logp(i, 0) : rw.lp;
          rw.lr = kl_on ? &in.ref_logp(i, 0) : nullptr;
          if (in.advantages.stride(1) == 0)
            rw.a0 = in.advantages(i, 0);
          else
            rw.A = &in.advantages(i, 0);
          rw.m = &in.mask(i, 0);
          rw.trunc = !in.truncated.empty() && in.truncated[static_cast<std::size_t>(i)];
          rw.g = &out.grad_logp(i, 0);
          rw.ptl = want_ptl ? &out.per_token_loss(i, 0) : nullptr;
          rw.ge = want_ge ? &out.grad_entropy(i, 0) : nullptr;
          rw.sp = CT(s_pol[static_cast<std::size_t>(i)]);
          rw.sk = CT(s_kl[static_cast<std::size_t>(i)]);
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
#if defined(_OPENMP) && GRPO_USE_EXCEPTIONS
    // Rows are independent: thread them when the batch is large enough to pay for it. An error
    // thrown by a row is captured and rethrown after the region (exceptions must not escape it).
    if (B > 1 && B * Tn >= (index_t{1} << 15)) {
      std::exception_ptr err;
#pragma omp parallel for schedule(static)
      for (index_t i = 0; i < B; ++i) {
        try {
          run_row(i);
        } catch (...) {
#pragma omp critical(grpo_compute_loss_error)
          if (!err) err = std::current_exception();
        }
      }
      if (err) std::rethrow_exception(err);
    } else {
      for (index_t i = 0; i < B; ++i) run_row(i);
    }
#else
    for (index_t i = 0; i < B; ++i) run_row(i);
#endif
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
    return fres;
  }

  // ---- pass 2: per-token loss, gradient, metrics --------------------------------------------
  // Each valid token contributes W_it * l_it with W_it = s_i m_it (aggregation weight) times its
  // policy multiplier c_it; the gradient is therefore W_it c_it (dl/dr dr/dlp + dl/dlp) plus, for
  // sequence-level ratios, a row-wide term accumulated in row_g and spread in a second sweep.
  loss_scalars res;
  const ops::ppo_clip_params<double> cp{P.eps_low, P.eps_high, P.delta, P.dual_clip_c};
  double pol_sum = 0.0, kl_sum = 0.0, ent_sum = 0.0;
  std::vector<double> row_g(static_cast<std::size_t>(B), 0.0);  // spread gradient per row

  for (index_t i = 0; i < B; ++i) {
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
        const double xc = seq_level ? x : ops::clamp_scalar(x, P.log_ratio_min, P.log_ratio_max);
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
  }
  res.policy_loss = pol_sum;
  res.kl_loss = kl_sum;
  res.entropy_loss = ent_sum;
  res.loss = pol_sum + o.kl_coef * kl_sum - o.entropy_coef * ent_sum;
  res.metrics = met;
  return res;
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
  GRPO_EXPECTS(in.logp.data_handle() != nullptr, shape_mismatch, "logp: required");
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

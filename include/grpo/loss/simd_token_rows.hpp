// SPDX-License-Identifier: Apache-2.0
/// @file simd_token_rows.hpp
/// @brief The vectorised rows of the token-level engine: fast_simd_step on a lane type V (an
///        xsimd batch of the TU's architecture; the scalar C only in builds without xsimd)
///        through <grpo/detail/simd.hpp>, the row loop fast_simd_row_run (float rows go to the
///        packet rows of kernels/token_row.ipp on the avx2 / avx512 paths, chosen per call by
///        loss_kernel_isa()), the entropy sweep (entropy_row_lanes), the kind / KL dispatch, and
///        pass 1's mask row sum. In the TU's ABI namespace. Position-independent: a row tail is
///        one more V step on a padded copy, so a token's outputs do not depend on where it sits
///        in the row (the fused step's chunks rely on it).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/isa.hpp>       // GRPO_ISA_ABI
#include <grpo/core/validate.hpp>  // mask_entry_ok
#include <grpo/detail/simd.hpp>
#include <grpo/loss/kernels/avx2/rows.hpp>
#include <grpo/loss/kernels/avx512/rows.hpp>
#include <grpo/loss/row_types.hpp>
#include <grpo/policy_loss.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace grpo::detail {
inline namespace GRPO_ISA_ABI {

/// The packet rows a float call takes: active_isa() (the CPU's best, capped by GRPO_ISA /
/// set_isa_limit) with run-time dispatch; without it (GRPO_RUNTIME_DISPATCH = 0: not x86-64, or
/// nvcc) the best packet this translation unit is compiled for, under the same cap. baseline:
/// the lane-generic rows below at the TU's xsimd width (the oracle path of the golden tests).
inline isa loss_kernel_isa() noexcept {
#if GRPO_RUNTIME_DISPATCH
  return active_isa();
#else
  const int o = ::grpo::detail::isa_limit_override.load(std::memory_order_relaxed);
  const isa lim = o >= 0 ? static_cast<isa>(o) : env_isa_limit();
#if GRPO_LOSS_HAS_AVX512_ROWS
  const isa best = isa::avx512;
#elif GRPO_LOSS_HAS_AVX2_ROWS
  const isa best = isa::avx2;
#else
  const isa best = isa::baseline;
#endif
  return static_cast<int>(lim) < static_cast<int>(best) ? lim : best;
#endif
}

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
  if (rw.hk != nullptr) {  // top-entropy mask out of the denominators: the policy term only
    const auto pk = simd::load<V>(rw.hk + t) >= V(rw.h_thr);  // (NaN H: dropped, as ent_keep)
    value = sel<V>(pk, value, zero);
    d_ratio = sel<V>(pk, d_ratio, zero);
    d_logp = sel<V>(pk, d_logp, zero);
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

/// The row tail [t, t + n), 0 < n < lanes(V): the same V step on a padded copy, so that a token
/// gets the same operations wherever it sits in the row (its batch's exp, never the scalar lane's
/// libm exp): its gradient / per-token loss bits do not depend on the row length, its offset or
/// the chunking of the fused entry (loss_chunk_plan). Inputs are copied into L-element stack
/// buffers (only [t, t + n) is read), padded with mask 0 and neutral finite values (log-probs and
/// advantage 0: ratio 1, no flag), and only the n tail lanes of the outputs are stored. Padded
/// lanes contribute exactly 0 to every sum and no extremum (the step's valid-lane selects).
template <policy_loss_kind K, bool KL, class V, class M, class G>
GRPO_FORCEINLINE simd::mask_of<V> fast_simd_tail_step(
    const fast_simd_params<simd::scalar_of<V>>& p,
    const fast_simd_row<simd::scalar_of<V>, M, G>& rw, index_t t, index_t n,
    fast_simd_acc<V>& a) noexcept {
  using C = simd::scalar_of<V>;
  constexpr index_t L = static_cast<index_t>(simd::lane_traits<V>::size);
  alignas(64) C lp[L] = {}, lo[L] = {}, lr[L] = {}, A[L] = {}, hk[L] = {};
  alignas(64) M m[L] = {};
  alignas(64) G g[L] = {}, ptl[L] = {}, ge[L] = {};
  for (index_t l = 0; l < n; ++l) {
    lp[l] = rw.lp[t + l];
    if (rw.lo != rw.lp) lo[l] = rw.lo[t + l];
    if constexpr (KL) lr[l] = rw.lr[t + l];
    if (rw.A != nullptr) A[l] = rw.A[t + l];
    if (rw.hk != nullptr) hk[l] = rw.hk[t + l];
    if (!rw.trunc) m[l] = rw.m[t + l];
  }
  fast_simd_row<C, M, G> tr = rw;  // (row constants, factors and flags as the row's)
  tr.lp = lp;
  tr.lo = rw.lo == rw.lp ? lp : lo;
  tr.lr = KL ? lr : nullptr;
  tr.A = rw.A != nullptr ? A : nullptr;
  tr.hk = rw.hk != nullptr ? hk : nullptr;
  tr.m = m;
  tr.g = g;
  tr.ptl = rw.ptl != nullptr ? ptl : nullptr;
  tr.ge = rw.ge != nullptr ? ge : nullptr;
  const auto bad = fast_simd_step<K, KL, V>(p, tr, 0, a);
  for (index_t l = 0; l < n; ++l) {
    rw.g[t + l] = g[l];
    if (rw.ptl != nullptr) rw.ptl[t + l] = ptl[l];
    if (rw.ge != nullptr) rw.ge[t + l] = ge[l];
  }
  return bad;
}

/// One row of the vectorised fast path into rp. Returns false if a valid token has a non-finite
/// input (rp is then incomplete; the caller reports the error through the scalar path).
template <policy_loss_kind K, bool KL, class C, class M, class G>
bool fast_simd_row_run(const fast_simd_params<C>& p_in, const fast_simd_row<C, M, G>& rw_in,
                       index_t Tn, fast_row_part& rp) {
  // Local copies: the output stores (G*) could otherwise alias the parameters, forcing the compiler
  // to reload and re-broadcast every parameter after every store.
  if constexpr (std::is_same_v<C, float>) {  // the packet rows (kernels/token_row.ipp)
    [[maybe_unused]] const isa path = loss_kernel_isa();
#if GRPO_LOSS_HAS_AVX512_ROWS
    if (path >= isa::avx512) return loss_avx512::row_run<K, KL>(p_in, rw_in, Tn, rp);
#endif
#if GRPO_LOSS_HAS_AVX2_ROWS
    if (path >= isa::avx2) return loss_avx2::row_run<K, KL>(p_in, rw_in, Tn, rp);
#endif
  }
  const fast_simd_params<C> p = p_in;
  const fast_simd_row<C, M, G> rw = rw_in;
  bool bad = false;
  index_t t = 0;
  // Without per-token loss output nothing past the row's last valid token is read: the gradient
  // there is zero-filled (what the step computes for a token with mask 0: +0).
  const index_t stop = rw.ptl != nullptr ? Tn : std::min(Tn, rw.end);
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
    if (t < stop) {  // the row tail: one padded step (since < kFlushBatches here)
      badv = simd::bor(badv, fast_simd_tail_step<K, KL, V>(p, rw, t, stop - t, a));
      t = stop;
    }
    a.flush();
    a.finish(rp);
    bad = simd::any(badv);
  }
#else
  fast_simd_acc<C> s;  // no xsimd: the whole row one token at a time (the same scalar lanes)
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
#endif
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

/// The lane-generic entropy sweep of a row with an entropy input (rw.h): the sweep of
/// kernels/token_row.ipp (entropy_row) over V = the TU's xsimd batch of C (the scalar C without
/// xsimd), for double inputs on every path and float inputs on the baseline path. One pass over H
/// and the mask up to the row's last valid token (nothing past it is read; a tail is one step on a
/// padded copy, mask 0 and H 0 on the padded lanes, so a token's dL/dH is position-independent),
/// lane sums of m H and m H^2 in C flushed into double lanes every kFlushBatches steps, extrema of
/// H over the valid tokens, dL/dH = gh m at every position (gh * 0 past the last valid token: the
/// general engine's signed zero for a +0 mask). False: a valid token's H is not finite, or a
/// float sum overflowed (the caller reruns the row in double: the named error, or the exact row);
/// rp's entropy fields are then incomplete.
template <class C, class M, class G>
bool entropy_row_lanes(const fast_simd_row<C, M, G>& rw_in, index_t Tn, fast_row_part& rp) {
  const fast_simd_row<C, M, G> rw = rw_in;  // (a copy: the output stores may alias it)
#if GRPO_HAS_XSIMD
  using V = simd::batch_of<C>;
#else
  using V = C;
#endif
  constexpr index_t L = static_cast<index_t>(simd::lane_traits<V>::size);
  const index_t end = rw.trunc ? 0 : std::min(rw.end, Tn);
  const V zero(C(0)), gh(rw.gh), pinf(std::numeric_limits<C>::infinity());
  V s = zero, s2 = zero, mn = pinf, mx = -pinf;
  double d_s[L] = {}, d_s2[L] = {};
  auto flush = [&] {
    alignas(64) C a[L], b[L];
    simd::store<V>(a, s);
    simd::store<V>(b, s2);
    for (index_t l = 0; l < L; ++l) d_s[l] += static_cast<double>(a[l]);
    for (index_t l = 0; l < L; ++l) d_s2[l] += static_cast<double>(b[l]);
    s = s2 = zero;
  };
  // One step on L tokens at (m, h); returns dL/dH of the step.
  auto step = [&](const V& m, const V& h) {
    const auto valid = !(m == zero);
    const V mh = m * h;
    s = s + simd::sel<V>(valid, mh, zero);
    s2 = s2 + simd::sel<V>(valid, mh * h, zero);
    mn = simd::sel<V>(simd::band(valid, h < mn), h, mn);
    mx = simd::sel<V>(simd::band(valid, h > mx), h, mx);
    return gh * m;
  };
  index_t t = 0, since = 0;
  for (; t + L <= end; t += L) {
    fast_prefetch(rw.h + t, kPrefetch);
    fast_prefetch(rw.m + t, kPrefetch);
    const V ge = step(fast_load_as<V>(rw.m + t), simd::load<V>(rw.h + t));
    if (rw.ge != nullptr) fast_store_as<V>(rw.ge + t, ge);
    if (++since == kFlushBatches) {
      flush();
      since = 0;
    }
  }
  if (t < end) {  // the tail: one step on a padded copy (since < kFlushBatches here)
    alignas(64) C h[L] = {};
    alignas(64) M m[L] = {};
    alignas(64) G ge[L] = {};
    for (index_t l = 0; l < end - t; ++l) {
      h[l] = rw.h[t + l];
      m[l] = rw.m[t + l];
    }
    fast_store_as<V>(ge, step(fast_load_as<V>(m), simd::load<V>(h)));
    if (rw.ge != nullptr)
      for (index_t l = 0; l < end - t; ++l) rw.ge[t + l] = ge[l];
    t = end;
  }
  flush();
  if (rw.ge != nullptr) {  // past the last valid token: gh * 0
    const G z = static_cast<G>(rw.gh * C(0));
    for (; t < Tn; ++t) rw.ge[t] = z;
  }
  double sh = 0.0, sh2 = 0.0;
  for (index_t l = 0; l < L; ++l) sh += d_s[l];
  for (index_t l = 0; l < L; ++l) sh2 += d_s2[l];
  if (!std::isfinite(sh) || !std::isfinite(sh2)) return false;
  rp.ent += rw.se * sh;
  rp.eb[0] += sh;
  rp.eb[1] += sh2;
  if (end > 0) {
    alignas(64) C a[L], b[L];
    simd::store<V>(a, mn);
    simd::store<V>(b, mx);
    for (index_t l = 0; l < L; ++l) {
      rp.eb[2] = std::min(rp.eb[2], static_cast<double>(a[l]));
      rp.eb[3] = std::max(rp.eb[3], static_cast<double>(b[l]));
    }
  }
  return true;
}

/// Whether the token rows take the entropy term vectorised for inputs of type C (plan.hpp's
/// entropy_packet): float and double, on every path (the packet sweep for float on avx2 /
/// avx512, entropy_row_lanes elsewhere; both position-independent per token).
template <class C>
constexpr bool entropy_row_packet() noexcept {
  return std::is_same_v<C, float> || std::is_same_v<C, double>;
}
/// The entropy sweep of a row with an entropy input (rw.h): the packet sweep of
/// kernels/token_row.ipp (entropy_row) for float rows on the avx2 / avx512 paths, the
/// lane-generic sweep otherwise. False: the caller reruns the row on the scalar path
/// (token_row_scalar), which throws the named error or computes the row in double.
template <class C, class M, class G>
bool entropy_row_run(const fast_simd_row<C, M, G>& rw, index_t Tn, fast_row_part& rp) {
  if constexpr (std::is_same_v<C, float>) {
    [[maybe_unused]] const isa path = loss_kernel_isa();
#if GRPO_LOSS_HAS_AVX512_ROWS
    if (path >= isa::avx512) return loss_avx512::entropy_row(rw, Tn, rp);
#endif
#if GRPO_LOSS_HAS_AVX2_ROWS
    if (path >= isa::avx2) return loss_avx2::entropy_row(rw, Tn, rp);
#endif
  }
  return entropy_row_lanes(rw, Tn, rp);
}

/// The policy row of fast_simd_row_dispatch: fast_simd_row_run for the kind and KL switch.
template <class C, class M, class G>
bool fast_simd_policy_row(policy_loss_kind k, bool kl, const fast_simd_params<C>& p,
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

/// Runs fast_simd_row_run for the policy kind and KL switch of the call (8 instantiations), then,
/// for a row with an entropy input, the entropy sweep (entropy_row_run: one more pass over H and
/// the mask, a run-time branch; the policy row then writes no dL/dH, so that it may run lean).
template <class C, class M, class G>
bool fast_simd_row_dispatch(policy_loss_kind k, bool kl, const fast_simd_params<C>& p,
                            const fast_simd_row<C, M, G>& rw, index_t Tn, fast_row_part& rp) {
  if (rw.h == nullptr) return fast_simd_policy_row(k, kl, p, rw, Tn, rp);
  fast_simd_row<C, M, G> rw_pol = rw;
  rw_pol.ge = nullptr;
  return fast_simd_policy_row(k, kl, p, rw_pol, Tn, rp) && entropy_row_run(rw, Tn, rp);
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
  [[maybe_unused]] const isa path = loss_kernel_isa();
  if constexpr (std::is_same_v<M, float> && std::is_same_v<C, float>) {
#if GRPO_LOSS_HAS_AVX512_ROWS
    if (path >= isa::avx512) loss_avx512::mask_row_sum(m, Tn, t, n, bad, end, bin);
#endif
#if GRPO_LOSS_HAS_AVX2_ROWS
    if (path == isa::avx2) loss_avx2::mask_row_sum(m, Tn, t, n, bad, end, bin);
#endif
  }
  if (t == 0) {
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

}  // namespace GRPO_ISA_ABI
}  // namespace grpo::detail

// SPDX-License-Identifier: Apache-2.0
/// @file simd_sequence_rows.hpp
/// @brief The portable vectorised row of the sequence-level engine (gspo_simd_row: GSPO /
///        GSPO-token with PPO clip on xsimd batches of the input type, scalar tail): double
///        inputs, and float inputs on the baseline path (the avx2 / avx512 paths take the packet
///        rows of kernels/sequence_row.ipp), with or without a rollout IS weight. In the TU's ABI
///        namespace.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/isa.hpp>           // GRPO_ISA_ABI
#include <grpo/detail/loss_token.hpp>  // token_ratio
#include <grpo/detail/simd.hpp>
#include <grpo/loss/kernels/general_rows.hpp>  // tis_params (gspo_params::tis)
#include <grpo/loss/row_types.hpp>
#include <grpo/loss/simd_token_rows.hpp>  // fast_simd_acc helpers, loads / stores
#include <grpo/policy_loss.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

// ops::tis_weight's bounds over the xsimd batches and scalars (simd::tis_bound): the text the
// packet rows compile in their target regions (loss/kernels/lanes.ipp), here beside the other
// lane helpers of grpo::detail::simd.
namespace grpo::detail::simd {
inline namespace GRPO_ISA_ABI {
#include <grpo/loss/kernels/tis_bound.ipp>
}  // namespace GRPO_ISA_ABI
}  // namespace grpo::detail::simd

namespace grpo::detail {
inline namespace GRPO_ISA_ABI {

/// Lane state of the portable sequence-level kernel (gspo_simd_row): sweep 1 (x moments and
/// extrema) and sweep 2 (policy / KL sums, advantage moments, sign counts, spread sums) over one
/// lane type V (an xsimd batch, or the scalar C for the row tail), with the lane sums flushed to
/// double every kFlushBatches steps as fast_simd_acc.
template <class V>
struct gspo_simd_acc {
  using C = simd::scalar_of<V>;
  static constexpr std::size_t L = simd::lane_traits<V>::size;
  static constexpr C kInf = std::numeric_limits<C>::infinity();
  // sums: m x, m x^2 | m l, m dl/dr, m A, m A^2, m [A < 0], m [A > 0], m k, m k^2, m k_raw,
  // m rho, m rho^2 (the IS weight's metric block)
  enum slot : int { sx, sx2, pol, dr, sa, sa2, neg, pos, sk, sk2, skr, sw, sw2, n_slots };
  V sum[n_slots];
  V mn[4] = {V(kInf), V(kInf), V(kInf), V(kInf)};  // x, A, k, rho
  V mx[4] = {V(-kInf), V(-kInf), V(-kInf), V(-kInf)};
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

/// The two lane states of gspo_simd_row: xsimd batches (ab) and the scalar tail (as).
template <class C>
struct gspo_simd_pair {
#if GRPO_HAS_XSIMD
  gspo_simd_acc<simd::batch_of<C>> ab;
#endif
  gspo_simd_acc<C> as;
  /// Row total of sum slot k.
  double total(int k) const noexcept {
#if GRPO_HAS_XSIMD
    return ab.lanes[k] + as.lanes[k];
#else
    return as.lanes[k];
#endif
  }
  /// Row extrema of block k.
  void extrema(int k, double& lo, double& hi) const noexcept {
    lo = std::numeric_limits<double>::infinity();
    hi = -lo;
#if GRPO_HAS_XSIMD
    ab.extrema(k, lo, hi);
#endif
    as.extrema(k, lo, hi);
  }
  bool any_bad() const noexcept {
#if GRPO_HAS_XSIMD
    if (simd::any(ab.bad)) return true;
#endif
    return static_cast<bool>(simd::any(as.bad));
  }
};

/// Row totals of gspo_simd_row into rp (its last step, as gspo_row of kernels/sequence_row.ipp):
/// policy / KL sums, the metric blocks and the clip counts. n: the row's valid weight; r: the
/// sequence ratio; pt0: the row's surrogate when the advantage a0 is per sequence (row_a). Returns
/// false if the row must be rerun by the scalar twin (a non-finite per-sequence advantage). nw: the
/// row's sum m rho (n without an IS weight).
template <class C>
bool gspo_simd_finish(const gspo_params& q, bool kl_on, const gspo_simd_pair<C>& acc, double n,
                      double nw, double r, bool row_a, double a0, const policy_token_terms& pt0,
                      double sp, double sk, double sx, double sx2, fast_row_part& rp) {
  using A = gspo_simd_acc<C>;
  const policy_options& P = q.P;
  auto total = [&](int k) { return acc.total(k); };
  auto extrema = [&](int k, double& lo, double& hi) { acc.extrema(k, lo, hi); };
  rp.wsum += n;
  rp.pol += row_a ? sp * pt0.value * nw : sp * total(A::pol);
  const double sk_sum = kl_on ? total(A::sk) : 0.0;
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
    rp.kb[1] += total(A::sk2);
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
    rp.av[0] += total(A::sa);
    rp.av[1] += total(A::sa2);
    rp.av[2] = std::min(rp.av[2], lo);
    rp.av[3] = std::max(rp.av[3], hi);
    const double ng = total(A::neg), ps = total(A::pos);
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

/// GSPO's spread (sweep 3): g_u += row_g m_u / max(n, 1) on the valid tokens before end.
template <class M, class G>
void gspo_spread(const M* m, G* g, index_t end, double row_g, double nc) noexcept {
  for (index_t u = 0; u < end; ++u) {
    const double mb = static_cast<double>(m[u]);
    if (mb == 0.0) continue;
    g[u] = static_cast<G>(static_cast<double>(g[u]) + row_g * mb / nc);
  }
}

/// The state of one row of gspo_simd_row: the row descriptor and its flags, the lane states of
/// both sweeps and (after sweep 1) the row constants in the input type C. step1 / step2 evaluate
/// one step of a lane type V (an xsimd batch, or the scalar C for the row tail); every per-token
/// formula is a grpo/detail/simd.hpp mirror of the ops (tested bitwise at scalar lanes). With a
/// rollout IS weight (q.tis) each token's policy term carries its detached weight rho_t, as the
/// packet rows (kernels/sequence_row.ipp): value rho l, gradient and spread share times rho; the
/// KL term is not weighted.
template <class C, class M, class G>
struct gspo_simd_state {
#if GRPO_HAS_XSIMD
  static constexpr auto LB = static_cast<index_t>(simd::lane_traits<simd::batch_of<C>>::size);
#else
  static constexpr index_t LB = 1;
#endif
  const gspo_params& q;
  const fast_simd_row<C, M, G> rw;  // (local copy: the stores may alias the parameters)
  const C* const ls;                // the sampler row (IS weight kinds 0-2; null: lo)
  const bool kl_on, trunc = rw.trunc, on_policy = rw.lo == rw.lp, row_a = rw.A == nullptr;
  const bool want_ptl = rw.ptl != nullptr, want_ge = rw.ge != nullptr;
  const index_t end = trunc ? 0 : rw.end;
  const tis_params* const tp = q.tis;  // the IS weight (tis_params::wkind; null: none)
  const int wk = tp != nullptr ? tp->wkind : 4;
  const bool tis = wk != 4;
  gspo_simd_pair<C> acc;
  // row constants of sweep 2
  ops::ppo_clip_params<C> cpc{};
  C c_coef = C(0), c_val0 = C(0), c_r = C(0), c_drd = C(0), c_sp = C(0), c_kc = C(0), c_sk = C(0);
  C c_rho = C(1);  // the row weight (wkind 1 / 2)

  gspo_simd_state(const gspo_params& q_in, bool kl, const fast_simd_row<C, M, G>& rw_in,
                  const C* ls_in) noexcept
      : q(q_in), rw(rw_in), ls(ls_in), kl_on(kl) {}

  /// Mask weights and valid lanes of the step at t (0 on a truncated row).
  template <class V>
  GRPO_FORCEINLINE simd::mask_of<V> mask_at(index_t t, V& m) const noexcept {
    m = trunc ? V(C(0)) : fast_load_as<V>(rw.m + t);
    return !(m == V(C(0)));
  }

  /// Runs f(t, lane state) over [0, stop): batches, then the scalar tail; flushes both.
  template <class F>
  void sweep(index_t stop, F&& f) {
    index_t t = 0;
#if GRPO_HAS_XSIMD
    for (; t + LB <= stop; t += LB) f(t, acc.ab);
    acc.ab.flush();
#endif
    for (; t < stop; ++t) f(t, acc.as);
    acc.as.flush();
  }

  /// Sweep 1: sum m x, sum m x^2, extrema of x, finiteness of lp / lo on valid lanes.
  template <class V>
  GRPO_FORCEINLINE void step1(index_t t, gspo_simd_acc<V>& a) const noexcept {
    V m;
    const auto valid = mask_at(t, m);
    const V lp = simd::load<V>(rw.lp + t);
    const V lo = on_policy ? lp : simd::load<V>(rw.lo + t);
    const V x = lp - lo;
    const V w = m * x;
    a.add(a.sx, valid, w);
    a.add(a.sx2, valid, w * x);
    a.ext(0, valid, x);
    a.bad = simd::bor(a.bad, simd::band(valid, !((lp - lp) + (lo - lo) == V(C(0)))));
    a.step_done();
  }

  /// Row constants of sweep 2 in C from the double ones (r, dr_direct, the per-sequence
  /// surrogate pt0 and the row-constant gradient coef of RowA rows).
  void constants(const policy_options& P, double r, double drd, double coef,
                 const policy_token_terms& pt0) noexcept {
    cpc = {C(P.eps_low), C(P.eps_high), C(P.delta), C(P.dual_clip_c)};
    c_coef = C(coef), c_val0 = C(pt0.value), c_r = C(r), c_drd = C(drd), c_sp = rw.sp;
    c_kc = C(q.kl_coef), c_sk = rw.sk;
  }

  /// The rollout IS weight of the step at t (wkind 0-3), as gspo_row::weight: the row weight, the
  /// caller's is_weights, bounded exp(clamp(lo - ls)), or the row keep x exp(lo - ls).
  template <class V>
  GRPO_FORCEINLINE V weight(index_t t, const V& lp) const noexcept {
    if (wk == 1) return V(c_rho);
    if (wk == 3) return simd::load<V>(rw.w + t);
    const V lo = on_policy ? lp : simd::load<V>(rw.lo + t);
    V d = lo - (ls != nullptr ? simd::load<V>(ls + t) : lo);
    const C lc = C(tp->lpar.tis_log_clamp);
    if (wk == 0 && tp->lpar.tis_log_clamp > 0.0) d = simd::clamp(d, V(-lc), V(lc));
    const V e = simd::vexp(d);
    if (wk != 0) return V(c_rho) * e;
    const auto& b = tp->lpar;  // (as the packet rows' tis_weight_lanes, over these lanes)
    return simd::tis_bound(e, C(b.tis_c_min), C(b.tis_c_max), b.tis_c_min > 0.0,
                           b.tis_c_max > 0.0, tp->mask_mode);
  }

  /// The policy part of a step with per-token advantages: value, gradient (before KL), sums; rho:
  /// the IS weight (1 without one).
  template <class V>
  GRPO_FORCEINLINE void policy_step(index_t t, const simd::mask_of<V>& valid, const V& m,
                                    const V& rho, gspo_simd_acc<V>& a, V& value, V& g,
                                    V& nf) const noexcept {
    const V zero(C(0));
    const V A = simd::load<V>(rw.A + t);
    const auto vg = simd::ppo_clip(V(c_r), A, cpc);
    value = vg.value;
    g = (V(c_sp) * m) * (vg.grad * V(c_drd));
    V gr = vg.grad;
    if (tis) value = value * rho, g = g * rho, gr = gr * rho;
    a.add(a.pol, valid, m * value);
    a.add(a.dr, valid, m * gr);
    const V ma = m * A;
    a.add(a.sa, valid, ma);
    a.add(a.sa2, valid, ma * A);
    a.ext(1, valid, A);
    a.add(a.neg, simd::band(valid, A < zero), m);
    a.add(a.pos, simd::band(valid, A > zero), m);
    nf = nf + (A - A);
  }

  /// Sweep 2: KL, per-token surrogate, gradient, per-token loss of one step.
  template <class V>
  GRPO_FORCEINLINE void step2(index_t t, gspo_simd_acc<V>& a) const noexcept {
    const V zero(C(0));
    V m;
    const auto valid = mask_at(t, m);
    if (!want_ptl && !simd::any(valid)) {  // padding only: gradient exactly 0
      fast_store_as<V>(rw.g + t, zero);
      if (want_ge) fast_store_as<V>(rw.ge + t, zero);
      return;
    }
    const V lp = simd::load<V>(rw.lp + t);
    V value, g, nf = lp - lp, rho(C(1));
    if (tis) {  // the token's IS weight and its metric block (a non-finite one flags the row)
      rho = weight(t, lp);
      const V mw = m * rho;
      a.add(a.sw, valid, mw);
      a.add(a.sw2, valid, mw * rho);
      a.ext(3, valid, rho);
      nf = nf + (rho - rho);
      if ((wk == 0 || wk == 2) && ls != nullptr) {  // a non-finite sampler_logp (bounded, or 0
        const V sv = simd::load<V>(ls + t);         // through exp): the row reruns in double
        nf = nf + (sv - sv);
      }
    }
    if (row_a) {
      value = V(c_val0);
      g = m * V(c_coef);
      if (tis) value = value * rho, g = g * rho;
    } else {
      policy_step(t, valid, m, rho, a, value, g, nf);
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
  }
};

/// The sequence-level row algorithm of kernels/sequence_row.ipp (sweep 1: sum m x; row constants in
/// double through token_ratio / policy_token; sweep 2: KL, per-token surrogate, gradient; sweep 3
/// when the spread needs a row sum) on xsimd batches of the input type C with a scalar tail:
/// double inputs, and float inputs on the baseline path. Returns false if a valid token has a
/// non-finite input (the caller reruns the row on the scalar twin, which throws the error naming
/// the argument) or a float lane sum overflowed (the twin recomputes the row in double).
/// With a rollout IS weight (q.tis; ls: the row's sampler log-probs, iw: its is_weight metric
/// block; gspo_simd_row below: none) a false return asks for the general engine's row in double
/// (general_row_alone), as for the packet rows: the weight's inputs are only checked through the
/// weight.
template <class C, class M, class G>
bool gspo_simd_tis_row(const gspo_params& q, bool kl_on, const fast_simd_row<C, M, G>& rw_in,
                       index_t Tn, fast_row_part& rp, const C* ls, double* iw) {
  using S = gspo_simd_state<C, M, G>;
  using Acc = gspo_simd_acc<C>;
  S s(q, kl_on, rw_in, ls);
  const auto& rw = s.rw;
  const policy_options& P = q.P;
  // ---- sweep 1 ----
  const index_t stop1 = std::min(Tn, (s.end + S::LB - 1) / S::LB * S::LB);
  s.sweep(stop1, [&](index_t t, auto& a) { s.step1(t, a); });
  if (s.acc.any_bad()) return false;

  // ---- row constants (double, the general engine's calls) ----
  const double n = s.trunc ? 0.0 : rw.n, nc = n < 1.0 ? 1.0 : n;
  const double sx = s.acc.total(Acc::sx), sx2 = s.acc.total(Acc::sx2);
  // Finite inputs whose lane sums overflow C (float): rerun in double by the scalar twin.
  if (n > 0 && !(std::isfinite(sx) && std::isfinite(sx2))) return false;
  double rho_row = 1.0;
  if (s.wk == 1 || s.wk == 2) {  // the row weight: sum m (lo - ls) in double, token order
    row_sums rs;
    rs.n = n;
    for (index_t t = 0; t < s.end; ++t) {
      const double mb = static_cast<double>(rw.m[t]), lo = static_cast<double>(rw.lo[t]);
      if (mb != 0.0) rs.sq += mb * (lo - (ls != nullptr ? static_cast<double>(ls[t]) : lo));
    }
    if (n > 0 && !std::isfinite(rs.sq)) return false;
    rho_row = finish_row(s.tp->lpar, rs).rho_seq;  // (bounds, log clamp, seq-mask keep)
    s.c_rho = static_cast<C>(rho_row);
  }
  const ratio_terms rt = token_ratio(P, 0.0, sx / nc);
  const double r = rt.r, drd = rt.d_direct, drs = rt.d_spread;
  const double sp = static_cast<double>(rw.sp), sk = static_cast<double>(rw.sk);
  const double a0 = static_cast<double>(rw.a0);
  policy_token_terms pt0{};
  if (s.row_a) pt0 = policy_token(P, r, a0, 0.0);
  const bool spread_now = q.seq && s.row_a && !q.kl_bias && !s.tis;
  const bool spread_later = q.seq && !spread_now;
  double coef = 0.0;
  if (s.row_a) {
    coef = sp * (pt0.d_ratio * drd + pt0.d_logp);
    if (spread_now) coef += sp * pt0.d_ratio * drs * n / nc;
  }
  s.constants(P, r, drd, coef, pt0);

  // ---- sweep 2 ----
  const index_t stop2 = s.want_ptl ? Tn : stop1;
  s.sweep(stop2, [&](index_t t, auto& a) { s.step2(t, a); });
  for (index_t t = stop2; t < Tn; ++t) rw.g[t] = G(0);  // past the last valid token
  if (s.want_ge)
    for (index_t t = stop2; t < Tn; ++t) rw.ge[t] = G(0);
  if (s.acc.any_bad()) return false;
  if (n > 0 && kl_on &&
      !(std::isfinite(s.acc.total(Acc::sk)) && std::isfinite(s.acc.total(Acc::sk2))))
    return false;

  // IS weight: sum m rho over the valid tokens (n: weight 1); a float overflow of its sums
  const double nw = s.tis ? s.acc.total(Acc::sw) : n;
  if (s.tis && n > 0 &&
      (!std::isfinite(nw) || !std::isfinite(s.acc.total(Acc::sw2)) || !std::isfinite(rho_row) ||
       (!s.row_a &&
        (!std::isfinite(s.acc.total(Acc::pol)) || !std::isfinite(s.acc.total(Acc::dr))))))
    return false;

  // ---- sweep 3, row totals (as gspo_row of kernels/sequence_row.ipp) ----
  if (spread_later) {
    double row_g = (s.row_a ? sp * pt0.d_ratio * nw : sp * s.acc.total(Acc::dr)) * drs;
    if (q.kl_bias) row_g += sk * q.kl_coef * s.acc.total(Acc::skr) * drs;
    if (row_g != 0.0) gspo_spread(rw.m, rw.g, s.end, row_g, nc);
  }
  if (!gspo_simd_finish<C>(q, kl_on, s.acc, n, nw, r, s.row_a, a0, pt0, sp, sk, sx, sx2, rp))
    return false;
  if (s.tis && n > 0) {  // the is_weight metric block
    double lo = 0, hi = 0;
    s.acc.extrema(3, lo, hi);
    iw[0] += nw;
    iw[1] += s.acc.total(Acc::sw2);
    iw[2] = std::min(iw[2], lo);
    iw[3] = std::max(iw[3], hi);
  }
  return true;
}

/// gspo_simd_tis_row without an IS weight (q.tis null): the sequence rows' lane-generic row.
template <class C, class M, class G>
bool gspo_simd_row(const gspo_params& q, bool kl_on, const fast_simd_row<C, M, G>& rw, index_t Tn,
                   fast_row_part& rp) {
  return gspo_simd_tis_row<C, M, G>(q, kl_on, rw, Tn, rp, nullptr, nullptr);
}

}  // namespace GRPO_ISA_ABI
}  // namespace grpo::detail

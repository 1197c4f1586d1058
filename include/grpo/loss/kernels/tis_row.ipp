// SPDX-License-Identifier: Apache-2.0
/// @file tis_row.ipp
/// @brief The general engine's rollout-IS rows (token-level kinds ppo_clip, cispo, sapo,
///        reinforce with tis_options: token TIS, sequence TIS, OpenRLHF seq-mask-tis) written
///        ONCE over the packet `A` (lanes.ipp, lane_formulas.ipp, token_row.ipp's helpers). No
///        include guard: loss/kernels/general_rows.hpp includes it inside each ISA's target
///        region and namespace, after general_row.ipp.
///
/// The policy term of a token carries the detached weight rho (loss/detail/loss_token.hpp
/// tis_token_weight): c = rho, value c l, gradient s_pol m c (dl/dr dr/dlp + dl/dlp). A row is
///   sweep 1  (sequence weights only) sum m (lo - ls), each step's float lanes widened to double
///            lanes, then the row weight by the general engine's own call (finish_row, double);
///   sweep 2  one pass per token: ratio, surrogate (lane_formulas.ipp: ppo_clip, CISPO weight,
///            SAPO, REINFORCE), the token weight (bounded exp(clamp(lo - ls)) lane by lane:
///            ops::tis_weight mirrored below; the row's; or the caller's is_weights row), KL,
///            gradient, per-token loss, and the general engine's metrics (approx_kl, ratio,
///            advantage, is_weight, KL, clip fractions, CISPO's weight clip).
/// Every input of a valid token is checked by one lane sum of (v - v) (NaN on a non-finite v);
/// a flagged row (or a float overflow of a sum or of the ratio) returns false and is rerun by the
/// general engine's row in double (general_row_alone): the named error, or the exact row.

/// ops::tis_weight over lanes from tis_params (kernels/tis_bound.ipp).
GRPO_FORCEINLINE V tis_weight_lanes(const V& rho, const tis_params& q) noexcept {
  return tis_bound(rho, q.c_min, q.c_max, q.lpar.tis_c_min > 0.0, q.lpar.tis_c_max > 0.0,
                   q.mask_mode);
}

/// OPSM's sums of a row over its base mask (tokens [0, end); a truncated row has end 0): sg =
/// sum m (ls - lp) in double lanes (each input widened before the difference: the general
/// engine's per-token terms, summed in another order), npos = sum m [A >= 0] and neg (a valid
/// token with !(A >= 0)) for per-token advantages (Ap; null: none). Run once per row, by
/// final_counts (opsm_packet_counts: the row counts n_fin and the gap decision that the row
/// kernel reads as fast_simd_row::gap_ok). (Not inlined, as when the row called it too.)
template <class M>
__attribute__((noinline)) opsm_sums opsm_row_sums(const float* lp, const float* ls, const M* mp,
                                                  const float* Ap, index_t end) noexcept {
  using vdl = double __attribute__((vector_size(sizeof(double) * L)));
  vdl sg{}, np{};
  Mk neg = none_set<V>();
  const V zero(0.0f);
  for (index_t t = 0; t < end; t += L) {
    const index_t k = end - t;
    const Mk in{A::first(std::min<index_t>(k, L))};
    const V m = k >= L ? load_as<false>(mp + t, L) : load_as<true>(mp + t, k);
    const Mk valid = (m != zero) & in;
    auto ld = [&](const float* p) {
      return keep(valid, k >= L ? V(A::load(p + t)) : V(A::load_tail(p + t, k)));
    };
    const vdl md = __builtin_convertvector(keep(valid, m).v, vdl);
    sg += md * (__builtin_convertvector(ld(ls).v, vdl) - __builtin_convertvector(ld(lp).v, vdl));
    if (Ap != nullptr) {
      const V a = ld(Ap);
      const Mk pos = valid & (a >= zero);
      np += __builtin_convertvector(keep(pos, m).v, vdl);
      neg = neg | (valid & !(a >= zero));
    }
  }
  opsm_sums s;
  for (index_t l = 0; l < L; ++l) {
    s.sg += sg[l];
    s.npos += np[l];
  }
  s.neg = any(neg);
  return s;
}

/// One TIS row. Ppo: the kind is ppo_clip (else cispo / sapo / reinforce, chosen per step from a
/// row constant); KL: the in-loss KL term; RowA: per-sequence advantage rw.a0.
template <bool Ppo, bool KL, bool RowA, class M, class G>
struct tis_row {
  using vdl = double __attribute__((vector_size(sizeof(double) * L)));
  const tis_params q;  // (copies: the output stores may alias)
  const fast_simd_params<float> p = q.fp;
  const fast_simd_row<float, M, G> rw;
  const float *const ls, *const nls;  ///< sampler log-probs of the row and the next (null: lo)
  const V zero = V(0.0f), one = V(1.0f), pinf = V(std::numeric_limits<float>::infinity());
  const V lr_min = V(p.lr_min), lr_max = V(p.lr_max), ak_lo = V(q.ak_min), ak_hi = V(q.ak_max);
  const V cw_lo = V(1.0f - p.eps_low), cw_hi = V(1.0f + p.eps_high), cap = V(p.eps_high);
  const V v_sp = V(rw.sp), v_skc = V(rw.sk * p.kl_coef), kcoef = V(p.kl_coef), a0 = V(rw.a0);
  const V v_lc = V(q.log_clamp);
  const bool on_policy = rw.lo == rw.lp, trunc = rw.trunc, has_ls = ls != nullptr;
  const index_t end = rw.trunc ? 0 : rw.end;
  const bool want_ptl = rw.ptl != nullptr, want_ge = rw.ge != nullptr;
  const bool is_cispo = q.kind == policy_loss_kind::cispo;
  const bool is_sapo = q.kind == policy_loss_kind::sapo;
  const bool clip = Ppo || is_cispo, cap_only = is_cispo && p.cispo_cap;
  const bool dual = clip && !cap_only && p.cp.dual_c > 0.0f;
  const int wk = q.wkind;
  const bool opsm = q.opsm, opsm_nd = q.opsm && !q.opsm_den;
  /// The top-entropy mask (rw.hk; keep = H >= thr): in the denominators a dropped token leaves
  /// the valid lanes (as OPSM's), else only its policy multiplier c is 0 (keep_c).
  const bool emask = rw.hk != nullptr, emask_nd = emask && !q.lpar.entropy_mask_in_denominator;
  const V hthr = V(rw.h_thr);
  bool gap_ok = true;                 ///< OPSM: the row's gap <= delta (every token kept)
  double n = 0, nb = 0, rho_row = 1;  ///< final-mask and base-mask counts, the row's weight
  V s_pol = zero, s_x = zero, s_x2 = zero, s_r = zero, s_r2 = zero, s_w = zero, s_w2 = zero;
  V s_a = zero, s_a2 = zero, s_k = zero, s_k2 = zero, c_lo = zero, c_hi = zero, c_du = zero;
  V c_cw = zero, chk = zero;
  V x_mn = pinf, x_mx = -pinf, r_mn = pinf, r_mx = -pinf, w_mn = pinf, w_mx = -pinf;
  V a_mn = pinf, a_mx = -pinf, k_mn = pinf, k_mx = -pinf;
  dsum d_pol, d_x, d_x2, d_r, d_r2, d_w, d_w2, d_a, d_a2, d_k, d_k2, d_lo, d_hi, d_du, d_cw, d_chk;

  tis_row(const tis_params& q_in, const fast_simd_row<float, M, G>& rw_in, const float* ls_in,
          const float* nls_in) noexcept
      : q(q_in), rw(rw_in), ls(ls_in), nls(nls_in) {}

  /// Valid lanes (within the first k) and mask weights of the step at t.
  GRPO_FORCEINLINE Mk valid_of(index_t t, index_t k, V& m) const noexcept {
    const Mk in{A::first(std::min<index_t>(k, L))};
    if (trunc) {
      m = zero;
      return (!in) & in;
    }
    m = k >= L ? load_as<false>(rw.m + t, L) : load_as<true>(rw.m + t, k);
    return (m != zero) & in;
  }
  GRPO_FORCEINLINE static V ld(const float* p_, index_t k) noexcept {
    return k >= L ? V(A::load(p_)) : V(A::load_tail(p_, k));
  }
  template <class D>
  GRPO_FORCEINLINE static void st(D* p_, const V& v, index_t k) noexcept {
    if (k >= L)
      store_as<false>(p_, v, L);
    else
      store_as<true>(p_, v, k);
  }
  GRPO_FORCEINLINE void store_g(index_t t, const V& v, index_t k, bool full) const noexcept {
    if constexpr (std::is_same_v<G, float>) {
      if (full) return A::stream(rw.g + t, v.v);
    }
    st(rw.g + t, v, k);
  }
  /// s += m v, s2 += m v v, extrema of v over the valid lanes.
  GRPO_FORCEINLINE void moments(V& s, V& s2, V& mn, V& mx, const Mk& valid, const V& m,
                                const V& v) const noexcept {
    const V mv = m * v;
    s = s + keep(valid, mv);
    s2 = s2 + keep(valid, mv * v);
    mn = vmin(sel<V>(valid, v, pinf), mn);
    mx = vmax(sel<V>(valid, v, -pinf), mx);
  }
  void flush() noexcept {
    d_pol.add(s_pol), d_x.add(s_x), d_x2.add(s_x2), d_r.add(s_r), d_r2.add(s_r2);
    d_w.add(s_w), d_w2.add(s_w2), d_chk.add(chk);
    s_pol = s_x = s_x2 = s_r = s_r2 = s_w = s_w2 = chk = zero;
    if constexpr (!RowA) d_a.add(s_a), d_a2.add(s_a2), s_a = s_a2 = zero;
    if constexpr (KL) d_k.add(s_k), d_k2.add(s_k2), s_k = s_k2 = zero;
    if (clip) d_lo.add(c_lo), d_hi.add(c_hi), d_du.add(c_du), c_lo = c_hi = c_du = zero;
    if (is_cispo) d_cw.add(c_cw), c_cw = zero;
  }
  void sweep1() noexcept;
  GRPO_FORCEINLINE void step(index_t t, index_t k, bool full) noexcept;
  void sweep2(index_t Tn) noexcept;
  bool totals(fast_row_part& rp, tis_row_out& out) noexcept;
  bool run(index_t Tn, fast_row_part& rp, tis_row_out& out) noexcept {
    nb = trunc ? 0.0 : rw.n;
    n = nb;
    if (opsm) gap_ok = rw.gap_ok;  // the row's gap decision (final_counts: opsm_packet_counts)
    if (wk == 1 || wk == 2) sweep1();
    // The final-mask count n_fin (OPSM / the top-entropy mask in the denominators) only after
    // sweep 1: the row weight's mean (seq-mask-tis) is over the base mask, as the general
    // engine's pass 1 (finish_row over the base row sums).
    if ((opsm || emask) && !trunc) n = rw.nf;
    sweep2(Tn);
    return totals(rp, out);
  }
};

/// Sweep 1 (sequence weights): sum m (lo - ls) over the row in double lanes, then the row weight
/// by finish_row (the general engine's call: bounds, log clamp, seq-mask keep).
template <bool Ppo, bool KL, bool RowA, class M, class G>
void tis_row<Ppo, KL, RowA, M, G>::sweep1() noexcept {
  vdl acc{};
  for (index_t t = 0; t < end && has_ls; t += L) {
    const index_t k = end - t;
    if (t + kPrefetch < end) {
      fast_prefetch(rw.lo + t, kPrefetch);
      fast_prefetch(ls + t, kPrefetch);
      fast_prefetch(rw.m + t, kPrefetch);
    }
    V m;
    const Mk valid = valid_of(t, k, m);
    const V lo = ld(rw.lo + t, k);
    acc += __builtin_convertvector(keep(valid, m * (lo - ld(ls + t, k))).v, vdl);
  }
  row_sums rs;
  rs.n = nb;  // (the base mask: finish_row as in the general engine's pass 1)
  for (index_t l = 0; l < L; ++l) rs.sq += acc[l];
  rho_row = finish_row(q.lpar, rs).rho_seq;
}

/// One step of sweep 2: tokens [t, t + k) (k <= L).
template <bool Ppo, bool KL, bool RowA, class M, class G>
GRPO_FORCEINLINE void tis_row<Ppo, KL, RowA, M, G>::step(index_t t, index_t k, bool full) noexcept {
  V m;
  const Mk valid0 = valid_of(t, k, m);  // the base mask (every input checked there)
  if (!want_ptl && !any(valid0)) {      // a hole of padding: gradient exactly 0
    store_g(t, zero, k, full);
    if (want_ge) st(rw.ge + t, zero, k);
    return;
  }
  const V lp = ld(rw.lp + t, k);
  const V lo = on_policy ? lp : ld(rw.lo + t, k);
  const V lsv = has_ls ? ld(ls + t, k) : lo;
  V Av = a0;
  if constexpr (!RowA) Av = ld(rw.A + t, k);
  // OPSM (opsm_keep: A >= 0 or the row's gap <= delta): in the denominator, a dropped token
  // leaves the final mask (valid); else its policy multiplier c is 0 (keep_c).
  Mk valid = valid0, keep_c = valid0 | !valid0;
  if (opsm && !gap_ok) {
    if (opsm_nd)
      keep_c = Av >= zero;
    else
      valid = valid0 & (Av >= zero);
  }
  const V x = lp - lo;
  V r, dr;
  if (p.lr_clamped) {
    const ratio_terms<V> rt = ratio(x, lr_min, lr_max);
    r = rt.r;
    dr = rt.dr;
  } else {
    r = vexp(x);
    dr = r;
  }
  // Surrogate: value and gpol = d_ratio dr + d_logp (policy_token's kinds at token level).
  V value, gpol, w = r;
  if constexpr (Ppo) {
    const value_grad<V> vg = ppo_clip(r, Av, p.cp);
    value = vg.value;
    gpol = vg.grad * dr;
  } else if (is_cispo) {  // -sg[w] A lp
    w = p.cispo_cap ? cispo_weight_cap(r, cap) : clamp(r, cw_lo, cw_hi);
    gpol = -w * Av;
    value = gpol * lp;
  } else if (is_sapo) {
    const value_grad<V> vg = sapo(r, Av, p.tau_pos, p.tau_neg);
    value = vg.value;
    gpol = vg.grad * dr;
  } else {  // reinforce
    gpol = -Av;
    value = gpol * lp;
  }
  // Token weight (tis_token_weight): the row's, bounded exp(clamp(lo - ls)), or keep x exp;
  // or the caller's is_weights (token_terms: rho = isw as given, checked like every input).
  V rho = V(static_cast<float>(rho_row));
  if (wk == 3) {
    rho = ld(rw.w + t, k);
  } else if (wk == 0 || wk == 2) {
    V d = lo - lsv;
    if (wk == 0 && q.lpar.tis_log_clamp > 0.0) d = clamp(d, -v_lc, v_lc);
    const V e = vexp(d);
    rho = wk == 0 ? tis_weight_lanes(e, q) : rho * e;
  }
  if (emask) {  // (a NaN H fails the compare: dropped, as ent_keep)
    const Mk ek = ld(rw.hk + t, k) >= hthr;
    if (emask_nd)
      keep_c = keep_c & ek;
    else
      valid = valid & ek;
  }
  const V c = opsm_nd || emask_nd ? keep(keep_c, rho) : rho;  // (the is_weight metric stays rho)
  const V cv = c * value;
  V ptl = cv, g = ((m * v_sp) * c) * gpol;
  s_pol = s_pol + keep(valid, m * cv);
  V in_chk = (lp - lp) + (x - x) + (lsv - lsv);
  if (wk == 3) in_chk = in_chk + (rho - rho);
  if constexpr (!RowA) in_chk = in_chk + (Av - Av);
  if constexpr (KL) {
    const V lr = ld(rw.lr + t, k);
    const value_grad<V> kv = kl(p.kl, lp, lr);
    ptl = ptl + kcoef * kv.value;
    g = g + (m * v_skc) * kv.grad;
    moments(s_k, s_k2, k_mn, k_mx, valid, m, kv.value);
    in_chk = in_chk + (lr - lr);
  }
  if (want_ptl) st(rw.ptl + t, ptl, k);
  if (want_ge) st(rw.ge + t, zero, k);
  store_g(t, keep(valid, g), k, full);
  chk = chk + keep(valid0, in_chk);
  // Metrics over the valid tokens (the general engine's: approx_kl over the metric-clamped log
  // ratio, ratio, IS weight, advantage, clip fractions with weight m).
  moments(s_x, s_x2, x_mn, x_mx, valid, m, vmin(vmax(x, ak_lo), ak_hi));
  moments(s_r, s_r2, r_mn, r_mx, valid, m, r);
  moments(s_w, s_w2, w_mn, w_mx, valid, m, rho);
  if constexpr (!RowA) moments(s_a, s_a2, a_mn, a_mx, valid, m, Av);
  if (clip) {
    if (cap_only) {
      c_hi = c_hi + keep(valid & (Av > zero) & (r > cap), m);
    } else {
      c_lo = c_lo + keep(valid & clipped_low(r, Av, p.cp), m);
      c_hi = c_hi + keep(valid & clipped_high(r, Av, p.cp), m);
      if (dual) c_du = c_du + keep(valid & dual_clipped(r, Av, p.cp), m);
    }
  }
  if (is_cispo) c_cw = c_cw + keep(valid & (w != r), m);  // (NaN: unordered, counted)
}

/// Sweep 2: every token's terms; zero fill past the last valid token.
template <bool Ppo, bool KL, bool RowA, class M, class G>
void tis_row<Ppo, KL, RowA, M, G>::sweep2(index_t Tn) noexcept {
  const index_t stop = want_ptl ? Tn : end;
  // Streaming gradient stores for a large float gradient: the whole steps from t = 0 (row_desc
  // sets nt only where the row's gradient starts on a packet boundary).
  const bool nt = std::is_same_v<G, float> && rw.nt;
  index_t since = 0;
  for (index_t t = 0; t < stop; t += L) {
    if (t + kPrefetch < stop) {
      fast_prefetch(rw.lp + t, kPrefetch);
      if (!on_policy) fast_prefetch(rw.lo + t, kPrefetch);
      if (has_ls && wk != 1) fast_prefetch(ls + t, kPrefetch);
      if (wk == 3) fast_prefetch(rw.w + t, kPrefetch);
      if constexpr (KL) fast_prefetch(rw.lr + t, kPrefetch);
      if constexpr (!RowA) fast_prefetch(rw.A + t, kPrefetch);
      fast_prefetch(rw.m + t, kPrefetch);
    } else if (rw.nlp != nullptr) {  // the row's last steps: the next row's first lines
      const index_t u = t + kPrefetch - stop;
      fast_prefetch(rw.nlp, u);
      if (!on_policy) fast_prefetch(rw.nlo, u);
      if (nls != nullptr) fast_prefetch(nls, u);
      if (rw.nw != nullptr) fast_prefetch(rw.nw, u);
      if constexpr (KL) fast_prefetch(rw.nlr, u);
      if constexpr (!RowA) fast_prefetch(rw.nA, u);
      fast_prefetch(rw.nm, u);
    }
    const index_t k = std::min(stop - t, L);
    step(t, k, nt && k == L);
    if (++since == kFlushBatches) {
      flush();
      since = 0;
    }
  }
  flush();
  zero_row_tail(rw.g, stop, Tn, nt);  // past the last valid token (sfence when nt)
  if (want_ge) zero_row_tail(rw.ge, stop, Tn, false);
}

/// Checks and the row totals into rp and out (the general engine's metric schema).
template <bool Ppo, bool KL, bool RowA, class M, class G>
bool tis_row<Ppo, KL, RowA, M, G>::totals(fast_row_part& rp, tis_row_out& out) noexcept {
  const double sp = static_cast<double>(rw.sp), pol = d_pol.total();
  const double sr = d_r.total(), sw = d_w.total(), sx = d_x.total();
  const double sk = KL ? d_k.total() : 0.0;
  if (nb > 0) {
    if (!std::isfinite(d_chk.total()) || !std::isfinite(pol) || !std::isfinite(sr) ||
        !std::isfinite(d_r2.total()) || !std::isfinite(sw) || !std::isfinite(d_w2.total()) ||
        !std::isfinite(sx) || !std::isfinite(rho_row))
      return false;
    if (RowA && !std::isfinite(rw.a0)) return false;
    if (KL && (!std::isfinite(sk) || !std::isfinite(d_k2.total()))) return false;
  }
  rp.wsum += n;
  rp.pol += sp * pol;
  if constexpr (KL) rp.kls += static_cast<double>(rw.sk) * sk;
  if (!(n > 0)) return true;
  rp.ak[0] += -sx;
  rp.ak[1] += d_x2.total();
  rp.ak[2] = std::min(rp.ak[2], -static_cast<double>(hmax(x_mx)));
  rp.ak[3] = std::max(rp.ak[3], -static_cast<double>(hmin(x_mn)));
  rp.ra[0] += sr;
  rp.ra[1] += d_r2.total();
  rp.ra[2] = std::min(rp.ra[2], static_cast<double>(hmin(r_mn)));
  rp.ra[3] = std::max(rp.ra[3], static_cast<double>(hmax(r_mx)));
  out.iw[0] += sw;
  out.iw[1] += d_w2.total();
  out.iw[2] = std::min(out.iw[2], static_cast<double>(hmin(w_mn)));
  out.iw[3] = std::max(out.iw[3], static_cast<double>(hmax(w_mx)));
  if constexpr (RowA) {
    const double a = static_cast<double>(rw.a0);
    rp.av[0] += n * a;
    rp.av[1] += n * a * a;
    rp.av[2] = std::min(rp.av[2], a);
    rp.av[3] = std::max(rp.av[3], a);
  } else {
    rp.av[0] += d_a.total();
    rp.av[1] += d_a2.total();
    rp.av[2] = std::min(rp.av[2], static_cast<double>(hmin(a_mn)));
    rp.av[3] = std::max(rp.av[3], static_cast<double>(hmax(a_mx)));
  }
  if constexpr (KL) {
    rp.kb[0] += sk;
    rp.kb[1] += d_k2.total();
    rp.kb[2] = std::min(rp.kb[2], static_cast<double>(hmin(k_mn)));
    rp.kb[3] = std::max(rp.kb[3], static_cast<double>(hmax(k_mx)));
  }
  if (clip) {
    const double lo = d_lo.total(), hi = d_hi.total();
    rp.c_lo += lo;
    rp.c_hi += hi;
    rp.c_re += lo + hi;  // disjoint indicators (A < 0 vs A > 0)
    rp.c_du += d_du.total();
  }
  if (is_cispo) rp.c_w += d_cw.total();
  return true;
}

/// tis_row for the kind, KL and advantage layout of the call; then, for a row with an entropy
/// input (rw.h), the entropy sweep of the token rows (token_row.ipp entropy_row: the policy term's
/// weight rho does not multiply the entropy term, loss_token.hpp step 6), which writes dL/dH.
template <class M, class G>
bool tis_row_run(const tis_params& q, const fast_simd_row<float, M, G>& rw, const float* ls,
                 const float* nls, index_t Tn, fast_row_part& rp, tis_row_out& out) noexcept {
  const bool kl_on = q.lpar.kl_coef != 0.0, ppo = q.kind == policy_loss_kind::ppo_clip;
  const bool row_a = rw.A == nullptr;
  fast_simd_row<float, M, G> rw_pol = rw;
  if (rw.h != nullptr) rw_pol.ge = nullptr;  // (written by the entropy sweep)
  auto go = [&](auto ppo_c, auto kl_c, auto row_c) {
    return tis_row<decltype(ppo_c)::value, decltype(kl_c)::value, decltype(row_c)::value, M, G>(
               q, rw_pol, ls, nls)
        .run(Tn, rp, out);
  };
  using T_ = std::true_type;
  using F_ = std::false_type;
  bool ok;
  if (ppo) {
    if (kl_on)
      ok = row_a ? go(T_{}, T_{}, T_{}) : go(T_{}, T_{}, F_{});
    else
      ok = row_a ? go(T_{}, F_{}, T_{}) : go(T_{}, F_{}, F_{});
  } else if (kl_on) {
    ok = row_a ? go(F_{}, T_{}, T_{}) : go(F_{}, T_{}, F_{});
  } else {
    ok = row_a ? go(F_{}, F_{}, T_{}) : go(F_{}, F_{}, F_{});
  }
  return ok && (rw.h == nullptr || entropy_row(rw, Tn, rp));
}

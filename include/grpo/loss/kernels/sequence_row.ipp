// SPDX-License-Identifier: Apache-2.0
/// @file sequence_row.ipp
/// @brief The sequence-level loss row (GSPO, GSPO-token; float inputs) written ONCE over the
///        packet `A` (lanes.ipp, lane_formulas.ipp, token_row.ipp's helpers). No include guard:
///        loss/kernels/<isa>/rows.hpp includes it inside its ISA's target region and namespace.
///
/// At sequence level the ratio r_i = exp(clamp(xbar_i)),
/// xbar_i = sum_t m (lp - lo) / max(n_i, 1), is one number per row, so the surrogate's clip
/// decision, value and d l / d r depend on the token only through A_t (per-token advantages) or
/// not at all (per-sequence advantages):
///   sweep 1  sum m x, sum m x^2 and the extrema of x (the approximate-KL metric); the row
///            constants r, dr_direct, dr_spread and, for per-sequence A, the surrogate
///            (policy_token) are then formed in double, as the general engine does;
///   sweep 2  (the row is L1/L2-resident): KL value / gradient per token (one exp), the surrogate
///            per token when A is per token, the gradient g_t = m_t (s_pol l'(r) dr_direct +
///            s_kl c k'_t) [+ m_t row_g / max(n_i, 1), GSPO's spread, when row_g is known here];
///   sweep 3  (only GSPO with per-token A or bias-corrected KL, whose row_g sums the row): adds
///            row_g m_t / max(n_i, 1) to the gradient, as the general engine's second sweep.
/// Non-finite inputs on valid tokens make a masked sum non-finite (as in token_row.ipp); the row
/// is then rerun by the scalar twin, which throws the named error.
/// Rollout IS weight (gspo_params::tis set: GSPO + TIS / is_weights, loss_token.hpp
/// token_terms): each token's policy term carries its detached weight rho_t (bounded
/// exp(clamp(lo - ls)); the row's bounded exp(sum m (lo - ls)) from sweep 1 through finish_row;
/// seq-mask keep x exp(lo - ls); or the caller's is_weights): value rho l, gradient
/// s_pol m rho (l'(r) dr_direct), spread share s_pol m rho l'(r) dr_spread (so GSPO always takes
/// sweep 3); the KL term is not weighted. The is_weight metric block {sum m rho, sum m rho^2,
/// min, max} goes to iw. A non-finite weight on a valid token (or a float overflow of its sums)
/// flags the row; the caller reruns it on the general engine's row in double (named errors).
/// KLM: 0 no KL, 1 plain k3 (exp_fast; no per-token loss output), 2 any estimator (kl()).
/// Prefix: a binary mask whose ones are exactly [0, end) (the mask is never read).

/// gspo_params::tis's type under a dependent name: tis_params is complete, and the TIS rows'
/// tis_weight_lanes (kernels/tis_row.ipp) declared, only after this file
/// (kernels/general_rows.hpp), where gspo_row is instantiated (loss/sequence_rows.hpp): the
/// names used through it are looked up there.
template <class X>
struct gspo_tis_params {
  using type = tis_params;
};

template <int KLM, bool RowA, bool Prefix, class M, class G>
struct gspo_row {
  static constexpr bool KL = KLM != 0;
  using vdl = double __attribute__((vector_size(sizeof(double) * L)));
  using TP = typename gspo_tis_params<M>::type;
  const gspo_params& q;
  const TP* const tp = q.tis;           // the IS weight's parameters (null: none)
  const fast_simd_row<float, M, G> rw;  // (a copy: the stores may alias)
  const float* const ls;                // sampler row (wkind 0-2; null: lo)
  double* const iw;                     // the is_weight metric block (wkind != 4)
  const int wk = tp != nullptr ? tp->wkind : 4;
  const bool tis = wk != 4, row_w = wk == 1 || wk == 2;
  const V zero = V(0.0f), one = V(1.0f), pinf = V(std::numeric_limits<float>::infinity());
  const bool trunc = rw.trunc, on_policy = rw.lo == rw.lp;
  const index_t end = rw.trunc ? 0 : rw.end;
  const bool want_ptl = rw.ptl != nullptr, want_ge = rw.ge != nullptr;
  const bool kl_hidden = KL && (q.kl.inner_clamp > 0.0 || q.kl.outer_clamp > 0.0);
  // sweep 1
  double sx = 0, sx2 = 0, sq = 0, rho_row = 1;  // (sq, rho_row: the row weight, wkind 1 / 2)
  V x_mn = pinf, x_mx = -pinf;
  // row constants
  double n = 0, nc = 1, r = 1, drd = 0, drs = 0, sp = 0, sk = 0, a0 = 0;
  policy_token_terms pt0{};
  bool spread_later = false, nt = false;
  // sweep 2
  V s_pol = zero, s_dr = zero, s_a = zero, s_a2 = zero, a_mn = pinf, a_mx = -pinf;
  V s_neg = zero, s_pos = zero, s_k = zero, s_k2 = zero, k_mn = pinf, k_mx = -pinf;
  V s_kr = zero, chk = zero, s_w = zero, s_w2 = zero, w_mn = pinf, w_mx = -pinf;
  dsum d_pol, d_dr, d_a, d_a2, d_neg, d_pos, d_k, d_k2, d_kr, d_chk, d_w, d_w2;

  gspo_row(const gspo_params& q_in, const fast_simd_row<float, M, G>& rw_in, const float* ls_in,
           double* iw_in) noexcept
      : q(q_in), rw(rw_in), ls(ls_in), iw(iw_in) {}

  /// Valid lanes (within the first k) and mask weights of the step at t.
  GRPO_FORCEINLINE Mk valid_of(index_t t, index_t k, V& m) const noexcept {
    const Mk in{A::first(std::min<index_t>(k, L))};
    if constexpr (Prefix) {
      m = one;
      return Mk{A::first(std::max<index_t>(0, std::min<index_t>(k, end - t)))};
    } else {
      if (trunc) {
        m = zero;
        return (!in) & in;
      }
      m = k >= L ? load_as<false>(rw.m + t, L) : load_as<true>(rw.m + t, k);
      return (m != zero) & in;
    }
  }
  GRPO_FORCEINLINE V wm(const V& m, const V& v) const noexcept {
    if constexpr (Prefix)
      return v;
    else
      return m * v;
  }
  GRPO_FORCEINLINE static V ld(const float* p, index_t k) noexcept {
    return k >= L ? V(A::load(p)) : V(A::load_tail(p, k));
  }
  template <class D>
  GRPO_FORCEINLINE static void st(D* p, const V& v, index_t k) noexcept {
    if (k >= L)
      store_as<false>(p, v, L);
    else
      store_as<true>(p, v, k);
  }
  /// Gradient store: streaming on full aligned steps of a large output.
  GRPO_FORCEINLINE void store_g(index_t t, const V& v, index_t k, bool full) const noexcept {
    if constexpr (std::is_same_v<G, float>) {
      if (full) return A::stream(rw.g + t, v.v);
    }
    st(rw.g + t, v, k);
  }
  void sweep1() noexcept;
  void constants() noexcept;
  GRPO_FORCEINLINE V weight(index_t t, index_t k, const V& lp, const V& v_rho) const noexcept;
  void sweep2(index_t Tn) noexcept;
  bool totals(fast_row_part& rp) noexcept;
  bool run(index_t Tn, fast_row_part& rp) noexcept {
    sweep1();
    n = trunc ? 0.0 : rw.n;
    nc = n < 1.0 ? 1.0 : n;
    if (n > 0 && !(std::isfinite(sx) && std::isfinite(sx2) && std::isfinite(sq))) return false;
    constants();
    sweep2(Tn);
    return totals(rp);
  }
};

/// Sweep 1: sum m x, sum m x^2, extrema of x over the valid tokens.
template <int KLM, bool RowA, bool Prefix, class M, class G>
void gspo_row<KLM, RowA, Prefix, M, G>::sweep1() noexcept {
  V s_x = zero, s_x2 = zero;
  dsum d_x, d_x2;
  vdl acc_q{};  // (row weights: sum m (lo - ls), each step's float lanes widened, as tis_row.ipp)
  index_t since = 0;
  for (index_t t = 0; t < end; t += L) {
    const index_t k = end - t;
    // Software prefetch kPrefetch ahead (also of the streams sweep 2 reads first: ref_logp, a
    // per-token advantage).
    if (t + kPrefetch < end) {
      fast_prefetch(rw.lp + t, kPrefetch);
      if (!on_policy) fast_prefetch(rw.lo + t, kPrefetch);
      if constexpr (KL) fast_prefetch(rw.lr + t, kPrefetch);
      if constexpr (!RowA) fast_prefetch(rw.A + t, kPrefetch);
      if constexpr (!Prefix) fast_prefetch(rw.m + t, kPrefetch);
      if (row_w && ls != nullptr) fast_prefetch(ls + t, kPrefetch);
    }
    if (t < kPrefetch) {  // the row's first lines of the sweep-2-only streams
      if constexpr (KL) fast_prefetch(rw.lr + t, 0);
      if constexpr (!RowA) fast_prefetch(rw.A + t, 0);
    }
    V m;
    const Mk valid = valid_of(t, k, m);
    const V lp = ld(rw.lp + t, k);
    const V lo = on_policy ? lp : ld(rw.lo + t, k);
    const V x = on_policy ? zero : lp - lo;
    if (row_w) {
      const V d = lo - (ls != nullptr ? ld(ls + t, k) : lo);
      acc_q += __builtin_convertvector(keep(valid, wm(m, d)).v, vdl);
    }
    const V mx = wm(m, x);
    s_x = s_x + keep(valid, mx);
    s_x2 = s_x2 + keep(valid, mx * x);
    x_mn = vmin(sel<V>(valid, x, pinf), x_mn);
    x_mx = vmax(sel<V>(valid, x, -pinf), x_mx);
    if (on_policy) s_x = s_x + keep(valid, lp - lp);  // finiteness of lp
    if (++since == kFlushBatches) {
      d_x.add(s_x), d_x2.add(s_x2);
      s_x = s_x2 = zero;
      since = 0;
    }
  }
  d_x.add(s_x), d_x2.add(s_x2);
  sx = d_x.total();
  sx2 = d_x2.total();
  if (row_w)
    for (index_t l = 0; l < L; ++l) sq += acc_q[l];
}

/// Row constants in double (the general engine's calls).
template <int KLM, bool RowA, bool Prefix, class M, class G>
void gspo_row<KLM, RowA, Prefix, M, G>::constants() noexcept {
  const auto rt = token_ratio(q.P, 0.0, sx / nc);  // (grpo::detail::ratio_terms, double)
  r = rt.r, drd = rt.d_direct, drs = rt.d_spread;
  sp = static_cast<double>(rw.sp), sk = static_cast<double>(rw.sk);
  a0 = static_cast<double>(rw.a0);
  if constexpr (RowA) pt0 = policy_token(q.P, r, a0, 0.0);  // (PPO clip: no dependence on lp)
  if (row_w) {  // the row weight by the general engine's call (bounds, log clamp, seq-mask keep)
    row_sums rs;
    rs.n = n;
    rs.sq = sq;
    rho_row = finish_row(tp->lpar, rs).rho_seq;
  }
  // GSPO with per-sequence A, no bias correction and no IS weight: the whole spread is known now.
  const bool spread_now = q.seq && RowA && !q.kl_bias && !tis;
  spread_later = q.seq && !spread_now;
  // Streaming gradient stores when the gradient is written once. rw.nt is set only for a row
  // whose gradient starts on a packet boundary (loss/call.hpp row_desc, stream_row_aligned), so
  // every full step t = 0, L, 2L, ... is an aligned store.
  nt = std::is_same_v<G, float> && rw.nt && !spread_later;
}

/// The rollout IS weight of the step at t (wkind 0-3; v_rho: the row weight of wkind 1 / 2).
template <int KLM, bool RowA, bool Prefix, class M, class G>
GRPO_FORCEINLINE V gspo_row<KLM, RowA, Prefix, M, G>::weight(index_t t, index_t k, const V& lp,
                                                             const V& v_rho) const noexcept {
  if (wk == 1) return v_rho;
  if (wk == 3) return ld(rw.w + t, k);
  const V lo = on_policy ? lp : ld(rw.lo + t, k);
  V d = lo - (ls != nullptr ? ld(ls + t, k) : lo);
  if (wk == 0 && tp->lpar.tis_log_clamp > 0.0) d = clamp(d, -V(tp->log_clamp), V(tp->log_clamp));
  const V e = vexp(d);
  return wk == 0 ? tis_weight_lanes(e, *tp) : v_rho * e;
}

/// Sweep 2: KL, per-token surrogate, gradient, per-token loss; zero fill past the end.
template <int KLM, bool RowA, bool Prefix, class M, class G>
void gspo_row<KLM, RowA, Prefix, M, G>::sweep2(index_t Tn) noexcept {
  const policy_options& P = q.P;
  double coef = 0.0;  // row-constant gradient per unit mask (RowA)
  if constexpr (RowA) {
    coef = sp * (pt0.d_ratio * drd + pt0.d_logp);
    if (q.seq && !spread_later) coef += sp * pt0.d_ratio * drs * n / nc;
  }
  const V v_coef(static_cast<float>(coef)), v_val0(static_cast<float>(pt0.value));
  const V v_r(static_cast<float>(r)), v_drd(static_cast<float>(drd)), v_sp(rw.sp);
  const V v_kc(static_cast<float>(q.kl_coef)), v_skc(static_cast<float>(sk * q.kl_coef));
  const V v_rho(static_cast<float>(rho_row));
  const ops::ppo_clip_params<float> cpf{static_cast<float>(P.eps_low),
                                        static_cast<float>(P.eps_high), static_cast<float>(P.delta),
                                        static_cast<float>(P.dual_clip_c)};
  const index_t stop = want_ptl ? Tn : end;
  // Sweep 2 reads only cached lines: the next row's valid part is fetched meanwhile.
  const index_t nend = rw.nlp != nullptr ? rw.nend : 0;
  index_t since = 0;
  for (index_t t = 0; t < stop; t += L) {
    if (t < nend) {
      fast_prefetch(rw.nlp + t, 0);
      if (!on_policy) fast_prefetch(rw.nlo + t, 0);
      if constexpr (KL) fast_prefetch(rw.nlr + t, 0);
    }
    if (tis && t + kPrefetch < stop) {  // (the weight's streams: not read by sweep 1)
      if (wk == 3) fast_prefetch(rw.w + t, kPrefetch);
      if ((wk == 0 || wk == 2) && ls != nullptr) fast_prefetch(ls + t, kPrefetch);
    }
    const index_t k = std::min(stop - t, L);
    V m;
    const Mk valid = valid_of(t, k, m);
    const bool full = k == L && nt;
    if (!want_ptl && !any(valid)) {  // a hole of padding: gradient exactly 0
      store_g(t, zero, k, full);
      if (want_ge) st(rw.ge + t, zero, k);
      continue;
    }
    const V lp = ld(rw.lp + t, k);
    V rho = one;
    if (tis) {  // the token's IS weight and its metric block
      rho = weight(t, k, lp, v_rho);
      const V mw = wm(m, rho);
      s_w = s_w + keep(valid, mw);
      if ((wk == 0 || wk == 2) && ls != nullptr) {  // a non-finite sampler_logp (bounded or
        const V sv = ld(ls + t, k);                 // 0 through exp): NaN in s_w, so the row
        s_w = s_w + keep(valid, sv - sv);           // reruns in double (the named error)
      }
      s_w2 = s_w2 + keep(valid, mw * rho);
      w_mn = vmin(sel<V>(valid, rho, pinf), w_mn);
      w_mx = vmax(sel<V>(valid, rho, -pinf), w_mx);  // (a non-finite rho: s_w is not finite)
    }
    V value, g;
    if constexpr (RowA) {
      value = v_val0;
      g = wm(m, v_coef);
      if (tis) value = value * rho, g = g * rho;
    } else {
      const V Av = ld(rw.A + t, k);
      const value_grad<V> vg = ppo_clip(v_r, Av, cpf);
      value = vg.value;
      g = wm(m, v_sp) * (vg.grad * v_drd);
      V gr = vg.grad;
      if (tis) value = value * rho, g = g * rho, gr = gr * rho;
      s_pol = s_pol + keep(valid, wm(m, value));
      s_dr = s_dr + keep(valid, wm(m, gr));
      const V ma = wm(m, Av);
      s_a = s_a + keep(valid, ma);
      s_a2 = s_a2 + keep(valid, ma * Av);
      a_mn = vmin(sel<V>(valid, Av, pinf), a_mn);
      a_mx = vmax(sel<V>(valid, Av, -pinf), a_mx);
      s_neg = s_neg + keep(valid & (Av < zero), m);
      s_pos = s_pos + keep(valid & (Av > zero), m);
    }
    V ptl = value;
    if constexpr (KL) {
      const V lr = ld(rw.lr + t, k);
      V kv, kg;
      if constexpr (KLM == 1) {  // k3 = e^d - d - 1, d = lr - lp; d k3 / d lp = 1 - e^d
        const V d = lr - lp, e = vexp_lean(d);
        kv = e - d - one;
        kg = one - e;
      } else {
        const value_grad<V> r2 = kl(q.kl, lp, lr);
        kv = r2.value;
        kg = r2.grad;
      }
      if (q.kl_bias) {  // value k r, gradient k' r + k dr_direct; the spread sums m k
        s_kr = s_kr + keep(valid, wm(m, kv));
        kg = kv * v_drd + kg * v_r;
        kv = kv * v_r;
      }
      ptl = ptl + v_kc * kv;
      g = g + wm(m, v_skc) * kg;
      const V mkv = wm(m, kv);
      s_k = s_k + keep(valid, mkv);
      s_k2 = s_k2 + keep(valid, mkv * kv);
      k_mn = vmin(sel<V>(valid, kv, pinf), k_mn);
      k_mx = vmax(sel<V>(valid, kv, -pinf), k_mx);
      if (kl_hidden) chk = chk + keep(valid, lr - lp);
    }
    if (want_ptl) st(rw.ptl + t, ptl, k);
    if (want_ge) st(rw.ge + t, zero, k);
    store_g(t, keep(valid, g), k, full);
    if (++since == kFlushBatches) {
      if constexpr (!RowA) {
        d_pol.add(s_pol), d_dr.add(s_dr), d_a.add(s_a), d_a2.add(s_a2);
        d_neg.add(s_neg), d_pos.add(s_pos);
        s_pol = s_dr = s_a = s_a2 = s_neg = s_pos = zero;
      }
      if constexpr (KL) d_k.add(s_k), d_k2.add(s_k2), d_kr.add(s_kr);
      if constexpr (KL) s_k = s_k2 = s_kr = zero;
      if constexpr (KL) d_chk.add(chk), chk = zero;
      if (tis) d_w.add(s_w), d_w2.add(s_w2), s_w = s_w2 = zero;
      since = 0;
    }
  }
  d_pol.add(s_pol), d_dr.add(s_dr), d_a.add(s_a), d_a2.add(s_a2), d_neg.add(s_neg);
  d_pos.add(s_pos), d_k.add(s_k), d_k2.add(s_k2), d_kr.add(s_kr), d_chk.add(chk);
  d_w.add(s_w), d_w2.add(s_w2);
  zero_row_tail(rw.g, stop, Tn, nt);  // past the last valid token (sfence when nt)
  if (want_ge) zero_row_tail(rw.ge, stop, Tn, false);
}

/// Checks, sweep 3 (GSPO's spread when it sums the row), row totals into rp.
template <int KLM, bool RowA, bool Prefix, class M, class G>
bool gspo_row<KLM, RowA, Prefix, M, G>::totals(fast_row_part& rp) noexcept {
  rp.wsum += n;
  const double sk_sum = KL ? d_k.total() : 0.0;
  if (n > 0) {
    if (RowA ? !std::isfinite(a0) : !std::isfinite(d_a.total())) return false;
    if (KL && (!std::isfinite(sk_sum) || !std::isfinite(d_k2.total()) ||
               (kl_hidden && !std::isfinite(d_chk.total()))))
      return false;
    // IS weight: a non-finite weight on a valid token (m rho is then not finite in s_w), or a
    // float overflow of the weighted sums
    if (tis && (!std::isfinite(d_w.total()) ||
                !std::isfinite(d_w2.total()) || !std::isfinite(rho_row) ||
                (!RowA && (!std::isfinite(d_pol.total()) || !std::isfinite(d_dr.total())))))
      return false;
  }
  const double nw = tis ? d_w.total() : n;  // sum m rho over the valid tokens (n: weight 1)
  if (spread_later) {  // GSPO: row_g = sum_t s_pol m l'_t dr_spread (+ s_kl c m k_t dr_spread)
    double row_g = (RowA ? sp * pt0.d_ratio * nw : sp * d_dr.total()) * drs;
    if (q.kl_bias) row_g += sk * q.kl_coef * d_kr.total() * drs;
    if (row_g != 0.0) {
      for (index_t t = 0; t < end; ++t) {
        const double mb = Prefix ? 1.0 : static_cast<double>(rw.m[t]);
        if (mb == 0.0) continue;
        rw.g[t] = static_cast<G>(static_cast<double>(rw.g[t]) + row_g * mb / nc);
      }
    }
  }
  rp.pol += RowA ? sp * pt0.value * nw : sp * d_pol.total();
  if constexpr (KL) rp.kls += sk * sk_sum;
  const policy_options& P = q.P;
  const ops::ppo_clip_params<double> cpd{P.eps_low, P.eps_high, P.delta, P.dual_clip_c};
  if (q.seq && RowA) {  // TRL: one decision per sequence, every row
    rp.seq_clip = static_cast<unsigned char>((ops::ppo_clipped_low(r, a0, cpd) ? 1 : 0) |
                                             (ops::ppo_clipped_high(r, a0, cpd) ? 2 : 0) |
                                             (ops::ppo_dual_clipped(r, a0, cpd) ? 4 : 0));
  }
  if (!(n > 0)) return true;
  if (tis) {
    iw[0] += nw;
    iw[1] += d_w2.total();
    iw[2] = std::min(iw[2], static_cast<double>(hmin(w_mn)));
    iw[3] = std::max(iw[3], static_cast<double>(hmax(w_mx)));
  }
  rp.ak[0] += -sx;
  rp.ak[1] += sx2;
  rp.ak[2] = std::min(rp.ak[2], -static_cast<double>(hmax(x_mx)));
  rp.ak[3] = std::max(rp.ak[3], -static_cast<double>(hmin(x_mn)));
  rp.ra[0] += n * r;
  rp.ra[1] += n * r * r;
  rp.ra[2] = std::min(rp.ra[2], r);
  rp.ra[3] = std::max(rp.ra[3], r);
  if constexpr (KL) {
    rp.kb[0] += sk_sum;
    rp.kb[1] += d_k2.total();
    rp.kb[2] = std::min(rp.kb[2], static_cast<double>(hmin(k_mn)));
    rp.kb[3] = std::max(rp.kb[3], static_cast<double>(hmax(k_mx)));
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
    rp.av[2] = std::min(rp.av[2], static_cast<double>(hmin(a_mn)));
    rp.av[3] = std::max(rp.av[3], static_cast<double>(hmax(a_mx)));
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

/// gspo_row for the KL configuration and mask layout of the row.
/// ls: the sampler row (IS weights, wkind 0-2); iw: the row's is_weight block (wkind != 4).
template <bool RowA, class M, class G>
bool gspo_row_run(const gspo_params& q, bool kl_on, const fast_simd_row<float, M, G>& rw,
                  index_t Tn, fast_row_part& rp, const float* ls = nullptr,
                  double* iw = nullptr) noexcept {
  const bool prefix = rw.prefix && !rw.trunc;
  const bool plain_k3 = q.kl.estimator == ops::kl_estimator::k3 && !(q.kl.inner_clamp > 0) &&
                        !(q.kl.outer_clamp > 0) && !q.kl.straight_through && rw.ptl == nullptr;
  if (!kl_on)
    return prefix ? gspo_row<0, RowA, true, M, G>(q, rw, ls, iw).run(Tn, rp)
                  : gspo_row<0, RowA, false, M, G>(q, rw, ls, iw).run(Tn, rp);
  if (plain_k3)
    return prefix ? gspo_row<1, RowA, true, M, G>(q, rw, ls, iw).run(Tn, rp)
                  : gspo_row<1, RowA, false, M, G>(q, rw, ls, iw).run(Tn, rp);
  return prefix ? gspo_row<2, RowA, true, M, G>(q, rw, ls, iw).run(Tn, rp)
                : gspo_row<2, RowA, false, M, G>(q, rw, ls, iw).run(Tn, rp);
}

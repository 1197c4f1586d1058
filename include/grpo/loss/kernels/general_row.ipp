// SPDX-License-Identifier: Apache-2.0
/// @file general_row.ipp
/// @brief The general engine's sequence-weighted kinds (GMPO, VESPO) at token level with
///        per-sequence advantages, written ONCE over the packet `A` (lanes.ipp, lane_formulas.ipp,
///        token_row.ipp's helpers). No include guard: loss/kernels/general_rows.hpp includes it
///        inside each ISA's target region and namespace.
///
/// With a per-sequence advantage a0 the row weight is one number per row, so a row is two
/// sweeps (the row is L1/L2-resident for the second), as kernels/sequence_row.ipp:
///   sweep 1  sum m xc, sum m xc^2, extrema of xc (approx_kl metric; xc the clamped log ratio),
///            and the weight's row sum: VESPO sum m clamp(x, +-20), GMPO sum m x~ (x~ the
///            sign-clipped log ratio, one side per row since A is per row);
///   row      in double, the general engine's calls (loss/detail/loss_token.hpp): VESPO
///            phi(lw_i, a0) (the surrogate -phi a0 lp, gradient -s_pol phi a0 m), GMPO
///            w_i = exp(sum m x~ / den), l_i = -a0 n_i w_i / den, gradient s_g l_i x~' m / den;
///   sweep 2  KL value / gradient per token, the ratio metric (one exp per token: VESPO's token
///            ratio exp(clamp(x)), GMPO's exp(x)), the gradient, the per-token loss, GMPO's
///            out-of-band count (its clip metric).
/// A non-finite input on a valid token, a float overflow of a lane sum or an infinite ratio lane
/// makes the row return false: it is then rerun by the general engine's row in double
/// (general_row_alone), which throws the named error or computes the row exactly.

template <bool KL, bool Gmpo, class M, class G>
struct weighted_row {
  const weighted_params& q;
  const fast_simd_row<float, M, G> rw;  // (a copy: the stores may alias)
  const V zero = V(0.0f), one = V(1.0f), pinf = V(std::numeric_limits<float>::infinity());
  const bool trunc = rw.trunc, on_policy = rw.lo == rw.lp;
  const index_t end = rw.trunc ? 0 : rw.end;
  const bool want_ptl = rw.ptl != nullptr, want_ge = rw.ge != nullptr;
  const bool kl_hidden = KL && (q.kl.inner_clamp > 0.0 || q.kl.outer_clamp > 0.0);
  const V ak_lo = V(q.ak_min), ak_hi = V(q.ak_max), lr_lo = V(q.lr_min), lr_hi = V(q.lr_max);
  const V el = V(-q.P.eps_low), eh = V(q.P.eps_high);
  /// GMPO's clip side of the row: 0 upper (A > 0), 1 lower (A < 0, or A = 0 under TRL), 2 none.
  const int side = q.side;
  // sweep 1
  double sxc = 0, sxc2 = 0, sw = 0;
  V xc_mn = pinf, xc_mx = -pinf;
  // row constants
  double n = 0, sp = 0, sk = 0, a0 = 0;
  weighted_row_out res{};
  // sweep 2
  V s_pol = zero, s_r = zero, s_r2 = zero, r_mn = pinf, r_mx = -pinf, s_ob = zero;
  V s_k = zero, s_k2 = zero, k_mn = pinf, k_mx = -pinf, chk = zero;
  dsum d_pol, d_r, d_r2, d_ob, d_k, d_k2, d_chk;

  weighted_row(const weighted_params& q_in, const fast_simd_row<float, M, G>& rw_in) noexcept
      : q(q_in), rw(rw_in) {}

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
  /// Gradient store: streaming on full aligned steps of a large float gradient.
  GRPO_FORCEINLINE void store_g(index_t t, const V& v, index_t k, bool full) const noexcept {
    if constexpr (std::is_same_v<G, float>) {
      if (full) return A::stream(rw.g + t, v.v);
    }
    st(rw.g + t, v, k);
  }
  /// GMPO's x~ (ops::gmpo_clip_log_ratio with the row's advantage sign).
  GRPO_FORCEINLINE V gmpo_clip(const V& x) const noexcept {
    return side == 0 ? vmin(x, eh) : side == 1 ? vmax(x, el) : zero;
  }
  /// d x~ / d x (ops::gmpo_clip_log_ratio_grad): 0 where the row's bound binds.
  GRPO_FORCEINLINE V gmpo_clip_grad(const V& x) const noexcept {
    return side == 0 ? sel<V>(x > eh, zero, one) : side == 1 ? sel<V>(x < el, zero, one) : zero;
  }
  void sweep1() noexcept;
  void constants() noexcept;
  void sweep2(index_t Tn) noexcept;
  bool totals(fast_row_part& rp) noexcept;
  bool run(index_t Tn, fast_row_part& rp, weighted_row_out& out) noexcept {
    sweep1();
    n = trunc ? 0.0 : rw.n;
    if (n > 0 && !(std::isfinite(sxc) && std::isfinite(sxc2) && std::isfinite(sw))) return false;
    constants();
    sweep2(Tn);
    const bool ok = totals(rp);
    out = res;
    return ok;
  }
};

/// Sweep 1: the approx_kl sums of xc and the weight's row sum.
template <bool KL, bool Gmpo, class M, class G>
void weighted_row<KL, Gmpo, M, G>::sweep1() noexcept {
  V s_xc = zero, s_xc2 = zero, s_w = zero, s_chk = zero;
  dsum d_xc, d_xc2, d_w, dc;
  index_t since = 0;
  for (index_t t = 0; t < end; t += L) {
    const index_t k = end - t;
    if (t + kPrefetch < end) {
      fast_prefetch(rw.lp + t, kPrefetch);
      if (!on_policy) fast_prefetch(rw.lo + t, kPrefetch);
      if constexpr (KL) fast_prefetch(rw.lr + t, kPrefetch);
      fast_prefetch(rw.m + t, kPrefetch);
    }
    if constexpr (KL) {
      if (t < kPrefetch) fast_prefetch(rw.lr + t, 0);  // the row's first lines of ref_logp
    }
    V m;
    const Mk valid = valid_of(t, k, m);
    const V lp = ld(rw.lp + t, k);
    const V lo = on_policy ? lp : ld(rw.lo + t, k);
    const V x = lp - lo;
    const V xc = vmin(vmax(x, ak_lo), ak_hi);
    const V mxc = m * xc;
    s_xc = s_xc + keep(valid, mxc);
    s_xc2 = s_xc2 + keep(valid, mxc * xc);
    xc_mn = vmin(sel<V>(valid, xc, pinf), xc_mn);
    xc_mx = vmax(sel<V>(valid, xc, -pinf), xc_mx);
    if constexpr (Gmpo)
      s_w = s_w + keep(valid, m * gmpo_clip(x));
    else
      s_w = s_w + keep(valid, m * vmin(vmax(x, V(-20.0f)), V(20.0f)));
    s_chk = s_chk + keep(valid, (lp - lp) + (lo - lo));  // NaN on a non-finite input
    if (++since == kFlushBatches) {
      d_xc.add(s_xc), d_xc2.add(s_xc2), d_w.add(s_w), dc.add(s_chk);
      s_xc = s_xc2 = s_w = s_chk = zero;
      since = 0;
    }
  }
  d_xc.add(s_xc), d_xc2.add(s_xc2), d_w.add(s_w), dc.add(s_chk);
  sxc = d_xc.total();
  sxc2 = d_xc2.total();
  sw = d_w.total() + dc.total();  // (a NaN check folded into the weight sum)
}

/// Row constants in double (the general engine's calls of detail/loss_token.hpp).
template <bool KL, bool Gmpo, class M, class G>
void weighted_row<KL, Gmpo, M, G>::constants() noexcept {
  const policy_options& P = q.P;
  sp = static_cast<double>(rw.sp), sk = static_cast<double>(rw.sk);
  a0 = static_cast<double>(rw.a0);
  if constexpr (Gmpo) {
    // finish_row2: den = max(n_fin + eps, floor), w = exp(sum m x~ / den), Abar = sum m A / den
    double den = n + q.row_count_eps;
    den = den < q.row_count_floor ? q.row_count_floor : den;
    double w = 0.0, abar = 0.0;
    if (den > 0) {
      w = std::exp(sw / den);
      abar = n > 0 ? a0 * n / den : 0.0;  // (sum_t m A over the row; +0 on an empty row)
    }
    res.seq_loss = -abar * w * 1.0;  // gmpo_seq_loss (no IS weights here: isw = 1)
    res.den = den;
  } else {
    const double lw = ops::clamp_scalar(sw, vespo_log_floor(), 20.0);
    res.phi = ops::vespo_phi(lw, a0, P.vespo_k_pos, P.vespo_lambda_pos, P.vespo_k_neg,
                             P.vespo_lambda_neg);
  }
}

/// Sweep 2: KL, ratio metric, gradient, per-token loss; zero fill past the end.
template <bool KL, bool Gmpo, class M, class G>
void weighted_row<KL, Gmpo, M, G>::sweep2(index_t Tn) noexcept {
  // VESPO: value -phi a0 lp, gradient s_pol m (-phi a0); GMPO: value l_i, gradient
  // s_g l_i x~' m / den.
  const double vcoef = Gmpo ? 0.0 : -res.phi * a0;
  const double gcoef = Gmpo ? (res.den > 0 ? q.s_gmpo * res.seq_loss / res.den : 0.0) : sp * vcoef;
  const V v_val(static_cast<float>(Gmpo ? res.seq_loss : vcoef)), v_g(static_cast<float>(gcoef));
  const V v_kc(static_cast<float>(q.kl_coef)), v_skc(static_cast<float>(sk * q.kl_coef));
  const index_t stop = want_ptl ? Tn : end;
  const index_t nend = rw.nlp != nullptr ? rw.nend : 0;
  // Streaming gradient stores for a large float gradient (written once here): the whole steps
  // from t = 0 (row_desc sets nt only where the row's gradient starts on a packet boundary).
  const bool nt = std::is_same_v<G, float> && rw.nt;
  index_t since = 0;
  for (index_t t = 0; t < stop; t += L) {
    if (t < nend) {  // the next row's valid part, while this one reads cached lines
      fast_prefetch(rw.nlp + t, 0);
      if (!on_policy) fast_prefetch(rw.nlo + t, 0);
      fast_prefetch(rw.nm + t, 0);
    }
    const index_t k = std::min(stop - t, L);
    const bool full = nt && k == L;
    V m;
    const Mk valid = valid_of(t, k, m);
    if (!want_ptl && !any(valid)) {  // a hole of padding: gradient exactly 0
      store_g(t, zero, k, full);
      if (want_ge) st(rw.ge + t, zero, k);
      continue;
    }
    const V lp = ld(rw.lp + t, k);
    const V x = on_policy ? zero : lp - ld(rw.lo + t, k);
    V value, g, r;
    if constexpr (Gmpo) {
      value = v_val;
      g = (m * v_g) * gmpo_clip_grad(x);
      r = vexp(x);
      s_ob = s_ob + keep(valid & ((x < el) | (x > eh)), m);
    } else {
      value = v_val * lp;
      g = m * v_g;
      r = vexp(vmin(vmax(x, lr_lo), lr_hi));
      s_pol = s_pol + keep(valid, m * value);
    }
    const V mr = m * r;
    s_r = s_r + keep(valid, mr);
    s_r2 = s_r2 + keep(valid, mr * r);
    r_mn = vmin(sel<V>(valid, r, pinf), r_mn);
    r_mx = vmax(sel<V>(valid, r, -pinf), r_mx);
    V ptl = value;
    if constexpr (KL) {
      const V lr = ld(rw.lr + t, k);
      const value_grad<V> kv = kl(q.kl, lp, lr);
      ptl = ptl + v_kc * kv.value;
      g = g + (m * v_skc) * kv.grad;
      const V mkv = m * kv.value;
      s_k = s_k + keep(valid, mkv);
      s_k2 = s_k2 + keep(valid, mkv * kv.value);
      k_mn = vmin(sel<V>(valid, kv.value, pinf), k_mn);
      k_mx = vmax(sel<V>(valid, kv.value, -pinf), k_mx);
      if (kl_hidden) chk = chk + keep(valid, lr - lp);
    }
    if (want_ptl) st(rw.ptl + t, ptl, k);
    if (want_ge) st(rw.ge + t, zero, k);
    store_g(t, keep(valid, g), k, full);
    if (++since == kFlushBatches) {
      d_pol.add(s_pol), d_r.add(s_r), d_r2.add(s_r2), d_ob.add(s_ob);
      s_pol = s_r = s_r2 = s_ob = zero;
      if constexpr (KL) d_k.add(s_k), d_k2.add(s_k2), d_chk.add(chk);
      if constexpr (KL) s_k = s_k2 = chk = zero;
      since = 0;
    }
  }
  d_pol.add(s_pol), d_r.add(s_r), d_r2.add(s_r2), d_ob.add(s_ob);
  d_k.add(s_k), d_k2.add(s_k2), d_chk.add(chk);
  zero_row_tail(rw.g, stop, Tn, nt);  // past the last valid token (sfence when nt)
  if (want_ge) zero_row_tail(rw.ge, stop, Tn, false);
}

/// Checks and the row totals into rp (the general engine's metric schema, as merge_row_parts
/// reads it).
template <bool KL, bool Gmpo, class M, class G>
bool weighted_row<KL, Gmpo, M, G>::totals(fast_row_part& rp) noexcept {
  const double sr = d_r.total(), sr2 = d_r2.total(), sk_sum = KL ? d_k.total() : 0.0;
  if (n > 0) {
    if (!std::isfinite(a0) || !std::isfinite(sr) || !std::isfinite(sr2)) return false;
    if (KL && (!std::isfinite(sk_sum) || !std::isfinite(d_k2.total()) ||
               (kl_hidden && !std::isfinite(d_chk.total()))))
      return false;
  }
  rp.wsum += n;
  rp.pol += Gmpo ? q.s_gmpo * res.seq_loss : sp * d_pol.total();
  if constexpr (KL) rp.kls += sk * sk_sum;
  if (!(n > 0)) return true;
  rp.ak[0] += -sxc;
  rp.ak[1] += sxc2;
  rp.ak[2] = std::min(rp.ak[2], -static_cast<double>(hmax(xc_mx)));
  rp.ak[3] = std::max(rp.ak[3], -static_cast<double>(hmin(xc_mn)));
  rp.ra[0] += sr;
  rp.ra[1] += sr2;
  rp.ra[2] = std::min(rp.ra[2], static_cast<double>(hmin(r_mn)));
  rp.ra[3] = std::max(rp.ra[3], static_cast<double>(hmax(r_mx)));
  rp.av[0] += n * a0;
  rp.av[1] += n * a0 * a0;
  rp.av[2] = std::min(rp.av[2], a0);
  rp.av[3] = std::max(rp.av[3], a0);
  if constexpr (KL) {
    rp.kb[0] += sk_sum;
    rp.kb[1] += d_k2.total();
    rp.kb[2] = std::min(rp.kb[2], static_cast<double>(hmin(k_mn)));
    rp.kb[3] = std::max(rp.kb[3], static_cast<double>(hmax(k_mx)));
  }
  if constexpr (Gmpo) {  // verl geo_mean: log ratio outside the band, by the advantage's sign
    const double ob = d_ob.total();
    rp.c_lo += a0 < 0 ? ob : 0.0;
    rp.c_hi += a0 > 0 ? ob : 0.0;
    rp.c_re += a0 != 0 ? ob : 0.0;
  }
  return true;
}

/// weighted_row for the kind and KL configuration of the call.
template <class M, class G>
bool weighted_row_run(const weighted_params& q, const fast_simd_row<float, M, G>& rw, index_t Tn,
                      fast_row_part& rp, weighted_row_out& out) noexcept {
  const bool kl_on = q.kl_coef != 0.0;
  if (q.gmpo)
    return kl_on ? weighted_row<true, true, M, G>(q, rw).run(Tn, rp, out)
                 : weighted_row<false, true, M, G>(q, rw).run(Tn, rp, out);
  return kl_on ? weighted_row<true, false, M, G>(q, rw).run(Tn, rp, out)
               : weighted_row<false, false, M, G>(q, rw).run(Tn, rp, out);
}

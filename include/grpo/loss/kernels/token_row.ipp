// SPDX-License-Identifier: Apache-2.0
/// @file token_row.ipp
/// @brief The token-level loss row (kinds ppo_clip, cispo, sapo, reinforce; KL on / off;
///        per-token or per-sequence advantages; the lean instantiation) and pass 1's mask row
///        sum, written ONCE over the packet `A` with the lane type of lanes.ipp and the formulas
///        of lane_formulas.ipp. No include guard: loss/kernels/<isa>/rows.hpp includes it
///        inside its ISA's target region and namespace, after lanes.ipp and lane_formulas.ipp.
///
/// Same maths as fast_simd_step (simd_token_rows.hpp) with float inputs, and a cheaper
/// bookkeeping (the design of the former hand-written AVX-512 row):
///   - no per-token finiteness test: a valid token with a non-finite logp / old_logp makes the
///     row's sum of m x non-finite (and a non-finite float sum never becomes finite again), a
///     non-finite ref_logp the sum of m k, a per-token advantage the sum of m A; what a clamp
///     could hide from those sums (log-ratio clamp, KL clamps) goes into one extra sum only when a
///     clamp is on; a per-sequence advantage is checked once per row. A flagged row is rerun on
///     the scalar path (which throws the named error, or, after a float overflow of a sum,
///     computes the row exactly in double);
///   - the policy and KL sums are sum m l and sum m k, scaled by the row factor at the row's end;
///   - the ratio's extrema are exp of the log ratio's (exp is monotonic), the approximate KL's
///     moments those of the log ratio with the sign flipped at the end;
///   - steps past the row's last valid token are not read (gradient zero-filled), a tail is one
///     masked step, the next row's first lines are prefetched while this row ends, and the
///     gradient of a large output is written with streaming stores (aligned steps);
///   - the common configuration (binary mask, no clamps / delta / dual clip / extra outputs) runs
///     a "lean" instantiation: m = 1 on valid lanes (a prefix row never reads its mask), clip
///     counts are popcounts of the compare masks, PPO's gradient is
///     the row-constant selects of ppo_clip_row for per-sequence advantages.
/// Float lane sums are flushed into double lanes every kFlushBatches steps.

inline constexpr index_t L = A::lanes;

/// L float lane sums widened into L double lanes (vectorised by the compiler in this region).
struct dsum {
  double d[L] = {};
  GRPO_FORCEINLINE void add(const V& s) noexcept {
    alignas(64) float t[L];
    A::store(t, s.v);
    for (index_t l = 0; l < L; ++l) d[l] += static_cast<double>(t[l]);
  }
  double total() const noexcept {
    double t = 0.0;
    for (index_t l = 0; l < L; ++l) t += d[l];
    return t;
  }
};

/// L (Tail: the first n) elements at p as floats; missing lanes 0.
template <bool Tail, class X>
GRPO_FORCEINLINE V load_as(const X* p, index_t n) noexcept {
  if constexpr (std::is_same_v<X, float>) {
    return Tail ? V(A::load_tail(p, n)) : V(A::load(p));
  } else {
    alignas(64) float t[L] = {};
    const index_t k = Tail ? n : L;
    for (index_t l = 0; l < k; ++l) t[l] = static_cast<float>(p[l]);
    return V(A::load(t));
  }
}
/// Stores L (Tail: the first n) lanes to p as G.
template <bool Tail, class G>
GRPO_FORCEINLINE void store_as(G* p, const V& v, index_t n) noexcept {
  if constexpr (std::is_same_v<G, float>) {
    if constexpr (Tail)
      A::store_tail(p, v.v, n);
    else
      A::store(p, v.v);
  } else {
    alignas(64) float t[L];
    A::store(t, v.v);
    const index_t k = Tail ? n : L;
    for (index_t l = 0; l < k; ++l) p[l] = static_cast<G>(t[l]);
  }
}
GRPO_FORCEINLINE float hmin(const V& v) noexcept { return -A::hmax((-v).v); }
GRPO_FORCEINLINE float hmax(const V& v) noexcept { return A::hmax(v.v); }

/// One row of the token-level engine on packets. KLM: 0 no KL term, 1 plain k3 (lean only), 2
/// any estimator. RowA: per-sequence advantage rw.a0. Lean: see the file comment.
template <policy_loss_kind K, int KLM, bool RowA, bool Lean, class M, class G>
struct token_row {
  static constexpr bool KL = KLM != 0, kPpo = K == policy_loss_kind::ppo_clip;
  static constexpr bool kCispo = K == policy_loss_kind::cispo, kSapo = K == policy_loss_kind::sapo;
  static constexpr bool kClip = kPpo || kCispo;
  // Local copies: the output stores could otherwise alias the parameters (reloaded every step).
  const fast_simd_params<float> p;
  const fast_simd_row<float, M, G> rw;
  const V zero = V(0.0f), one = V(1.0f), pinf = V(std::numeric_limits<float>::infinity());
  const V lr_min = V(p.lr_min), lr_max = V(p.lr_max), cw_lo = V(1.0f - p.eps_low);
  const V cw_hi = V(1.0f + p.eps_high), cap = V(p.eps_high), cp_dual = V(p.cp.dual_c);
  const V sp = V(rw.sp), skc = V(rw.sk * p.kl_coef), kcoef = V(p.kl_coef), a0 = V(rw.a0);
  const ppo_row_consts<V> prow = ppo_row<V>(rw.a0);
  const sapo_consts<V> sapo_c = sapo_prep<V>(p.tau_pos, p.tau_neg);
  const bool lr_clamped = !Lean && p.lr_clamped, on_policy = rw.lo == rw.lp, trunc = rw.trunc;
  const bool prefix = Lean && rw.prefix && !rw.trunc;
  const bool want_ptl = !Lean && rw.ptl != nullptr, want_ge = !Lean && rw.ge != nullptr;
  const bool cap_only = kCispo && p.cispo_cap, dual = kClip && !cap_only && p.cp.dual_c > 0.0f;
  const bool kl_hidden = !Lean && KL && (p.kl.inner_clamp > 0.0 || p.kl.outer_clamp > 0.0);
  const bool kl_bias = !Lean && p.kl_bias, need_chk = lr_clamped || kl_hidden;
  const bool nt = std::is_same_v<G, float> && rw.nt;
  const Mk all = Mk{A::first(L)};
  const Mk a0_neg = rw.a0 < 0.0f ? all : !all, a0_pos = rw.a0 > 0.0f ? all : !all;
  /// Top-entropy mask out of the denominators (rw.hk): the policy term of a token with
  /// !(H >= thr) is 0 (value and gradient; KL and metrics keep it), a select per step.
  const bool pol_keep = rw.hk != nullptr;
  const V hthr = V(rw.h_thr);
  /// The float lane accumulators of the row loop: a local of run() (passed to step / flush by
  /// reference), so that after inlining they live in registers. (As members of *this they were
  /// reloaded and stored around every output store: a packet store may alias any object.)
  struct lanes_acc {
    V s_pol, s_x, s_x2, s_r, s_r2, s_k, s_k2, s_a, s_a2, c_lo, c_hi, c_du, c_w, chk;
    V x_mn, x_mx, k_mn, k_mx, a_mn, a_mx;
    V e_mn, e_mx;  // Lean: extrema of the unguarded exps' arguments (other than x) on valid lanes
    std::int64_t n_lo = 0, n_hi = 0, n_du = 0, n_w = 0;  // Lean: clip counts (popcounts)
    explicit lanes_acc(const V& zero, const V& inf) noexcept
        : s_pol(zero), s_x(zero), s_x2(zero), s_r(zero), s_r2(zero), s_k(zero), s_k2(zero),
          s_a(zero), s_a2(zero), c_lo(zero), c_hi(zero), c_du(zero), c_w(zero), chk(zero),
          x_mn(inf), x_mx(-inf), k_mn(inf), k_mx(-inf), a_mn(inf), a_mx(-inf), e_mn(inf),
          e_mx(-inf) {}
  };
  dsum d_pol, d_x, d_x2, d_r, d_r2, d_k, d_k2, d_a, d_a2, d_lo, d_hi, d_du, d_w, d_chk;
  /// Lean: a valid token's exp argument fell outside [-87, 88] (run() added nothing to the
  /// partial; the caller reruns the row on the general instantiation, whose vexp has the edges).
  bool out_of_range = false;

  token_row(const fast_simd_params<float>& p_in, const fast_simd_row<float, M, G>& rw_in) noexcept
      : p(p_in), rw(rw_in) {}

  GRPO_FORCEINLINE void flush(lanes_acc& a) noexcept {
    d_pol.add(a.s_pol), d_x.add(a.s_x), d_x2.add(a.s_x2), d_r.add(a.s_r), d_r2.add(a.s_r2);
    a.s_pol = a.s_x = a.s_x2 = a.s_r = a.s_r2 = zero;
    if constexpr (KL) d_k.add(a.s_k), d_k2.add(a.s_k2), a.s_k = a.s_k2 = zero;
    if constexpr (!RowA) d_a.add(a.s_a), d_a2.add(a.s_a2), a.s_a = a.s_a2 = zero;
    if constexpr (kClip && !Lean) d_lo.add(a.c_lo), d_hi.add(a.c_hi), d_du.add(a.c_du);
    if constexpr (kClip && !Lean) a.c_lo = a.c_hi = a.c_du = zero;
    if constexpr (kCispo && !Lean) d_w.add(a.c_w), a.c_w = zero;
    if (need_chk) d_chk.add(a.chk), a.chk = zero;
  }
  /// m x (Lean: the mask row is binary, m = 1 on every valid lane).
  GRPO_FORCEINLINE V wm(const V& m, const V& v) const noexcept {
    if constexpr (Lean)
      return v;
    else
      return m * v;
  }
  /// Adds the m-weighted count of the lanes of k (Lean: a popcount).
  GRPO_FORCEINLINE void count(V& acc, std::int64_t& cnt, const V& m, const Mk& k) noexcept {
    if constexpr (Lean)
      cnt += A::count(k.m);
    else
      acc = acc + keep(k, m);
  }
  /// keep(valid, v); Full (every lane valid): v itself (bitwise the same; opaque, so that a sum
  /// s + kv(a * b) is not contracted into an FMA where the masked step's is not).
  template <bool Full>
  GRPO_FORCEINLINE static V kv(const Mk& valid, const V& v) noexcept {
    if constexpr (Full)
      return opaque(v);
    else
      return keep(valid, v);
  }
  /// s += v, s2 += v x, extrema of x over the valid lanes (one metric block).
  template <bool Full>
  GRPO_FORCEINLINE static void moments(V& s, V& s2, V& mn, V& mx, const Mk& valid, const V& v,
                                       const V& x, const V& inf) noexcept {
    s = s + kv<Full>(valid, v);
    s2 = s2 + kv<Full>(valid, v * x);
    if constexpr (Full) {
      mn = vmin(x, mn);
      mx = vmax(x, mx);
    } else {
      mn = vmin(sel<V>(valid, x, inf), mn);
      mx = vmax(sel<V>(valid, x, -inf), mx);
    }
  }
  GRPO_FORCEINLINE void store_g(index_t t, const V& v, index_t n, bool tail) noexcept {
    if constexpr (std::is_same_v<G, float>) {
      if (!tail && nt) return A::stream(rw.g + t, v.v);
    }
    if (tail)
      store_as<true>(rw.g + t, v, n);
    else
      store_as<false>(rw.g + t, v, n);
  }
  /// e^u of a step. General rows: vexp. Lean rows: vexp_unguarded (no range test per step), u's
  /// extrema over the valid lanes tracked into e_mn / e_mx (the ratio's argument x needs none:
  /// x_mn / x_mx are its extrema already); run() checks the range once per row.
  template <bool Full>
  GRPO_FORCEINLINE V rexp(lanes_acc& a, const Mk& valid, const V& u) const noexcept {
    if constexpr (!Lean) {
      return vexp(u);
    } else {
      if constexpr (Full) {
        a.e_mn = vmin(u, a.e_mn);
        a.e_mx = vmax(u, a.e_mx);
      } else {
        a.e_mn = vmin(sel<V>(valid, u, pinf), a.e_mn);
        a.e_mx = vmax(sel<V>(valid, u, -pinf), a.e_mx);
      }
      return vexp_unguarded(u);
    }
  }
  template <bool Tail, bool Full = false>
  GRPO_FORCEINLINE void step(lanes_acc& a, index_t t, index_t n) noexcept;
  template <bool Full>
  GRPO_FORCEINLINE void full_step(lanes_acc& a, index_t t, index_t stop, index_t& since) noexcept;
  bool finish(fast_row_part& rp, const lanes_acc& a) noexcept;
  bool run(index_t Tn, fast_row_part& rp) noexcept;
};

/// One step: tokens [t, t + L) (Tail: the first n of them). Full: a step of a prefix row that
/// lies inside [0, end) (Lean only): every lane valid, so the lane masks of the valid tokens are
/// dropped (keep / select on an all-true mask are the identity: the same bits).
template <policy_loss_kind K, int KLM, bool RowA, bool Lean, class M, class G>
template <bool Tail, bool Full>
GRPO_FORCEINLINE void token_row<K, KLM, RowA, Lean, M, G>::step(lanes_acc& a, index_t t,
                                                               index_t n) noexcept {
  static_assert(!Full || (Lean && !Tail), "full steps: lean rows, whole steps");
  V m = zero;
  Mk valid = all;
  if constexpr (!Full) {
    if (prefix) {  // lanes t + l < min(end, t + n) (m is never read: Lean)
      valid = Mk{A::first(std::max<index_t>(0, std::min<index_t>(n, rw.end - t)))};
    } else {
      m = trunc ? zero : load_as<Tail>(rw.m + t, n);
      valid = m != zero;  // 0 on lanes beyond the tail
    }
    if (!want_ptl && !any(valid)) {  // padding only: gradient exactly 0
      store_g(t, zero, n, Tail);
      if (want_ge) store_as<Tail>(rw.ge + t, zero, n);
      return;
    }
  }
  const V lp = load_as<Tail>(rw.lp + t, n);
  const V lo = on_policy ? lp : load_as<Tail>(rw.lo + t, n);
  V Av = a0;
  if constexpr (!RowA) Av = load_as<Tail>(rw.A + t, n);
  const V x = lp - lo;
  // Ratio and its direct derivative (clamped log ratio: flat outside the bounds).
  V xc = x, r, dr;
  if (lr_clamped) {
    const ratio_terms<V> rt = ratio(x, lr_min, lr_max);
    xc = clamp(x, lr_min, lr_max);
    r = rt.r;
    dr = rt.dr;
  } else {
    // (lean: unguarded, nothing stored on non-valid lanes; x's range is x_mn / x_mx's)
    r = Lean ? vexp_unguarded(x) : vexp(x);
    dr = r;
  }
  // Policy surrogate: value and gpol = d_ratio dr + d_logp.
  V value, gpol, w = r;
  if constexpr (kPpo && Lean && RowA) {  // row-constant A, no delta / dual clip
    const value_grad<V> vg = ppo_clip_row(r, prow, cw_lo, cw_hi);
    value = vg.value;
    gpol = vg.grad * dr;
  } else if constexpr (kPpo) {
    const value_grad<V> vg = ppo_clip(r, Av, p.cp);
    value = vg.value;
    gpol = vg.grad * dr;
  } else if constexpr (kCispo) {  // -sg[w] A lp: value (-w A) lp, d/dlp -w A
    w = p.cispo_cap ? cispo_weight_cap(r, cap) : clamp_ordered(r, cw_lo, cw_hi);
    gpol = -w * Av;
    value = gpol * lp;
  } else if constexpr (kSapo) {
    const value_grad<V> vg =
        sapo(r, Av, sapo_c, [&](const V& u) { return rexp<Full>(a, valid, u); });
    value = vg.value;
    gpol = vg.grad * dr;
  } else {
    static_assert(K == policy_loss_kind::reinforce, "fast path kinds: ppo, cispo, sapo, pg");
    gpol = -Av;
    value = gpol * lp;
  }
  if (pol_keep) {  // (a NaN H fails the compare: dropped, as ent_keep)
    const Mk pk = load_as<Tail>(rw.hk + t, n) >= hthr;
    value = sel<V>(pk, value, zero);
    gpol = sel<V>(pk, gpol, zero);
  }
  V ptl = value, g = wm(m, sp) * gpol;
  a.s_pol = a.s_pol + kv<Full>(valid, wm(m, value));
  V chk_in = x;
  if constexpr (KL) {
    const V lr = load_as<Tail>(rw.lr + t, n);
    V k, kg;
    if constexpr (KLM == 1) {  // k3 = e^d - d - 1, d = lr - lp; d k3 / d lp = 1 - e^d
      const V d = lr - lp, e = rexp<Full>(a, valid, d);
      k = e - d - one;
      kg = one - e;
    } else {
      const value_grad<V> kvg = kl(p.kl, lp, lr);
      k = kvg.value;
      kg = kvg.grad;
    }
    if (kl_bias) {  // value k r, gradient k' r + k r'
      kg = k * dr + kg * r;
      k = k * r;
    }
    ptl = ptl + kcoef * k;
    g = g + wm(m, skc) * kg;
    V mk_ = wm(m, k);
    moments<Full>(a.s_k, a.s_k2, a.k_mn, a.k_mx, valid, mk_, k, pinf);
    if (kl_hidden) chk_in = x + (lr - lp);
  }
  if (want_ptl) store_as<Tail>(rw.ptl + t, ptl, n);
  if (want_ge) store_as<Tail>(rw.ge + t, zero, n);
  store_g(t, kv<Full>(valid, g), n, Tail);
  if (need_chk) a.chk = a.chk + kv<Full>(valid, chk_in);
  // Metrics over valid tokens: log ratio (approx KL = -xc), ratio, advantage moments.
  moments<Full>(a.s_x, a.s_x2, a.x_mn, a.x_mx, valid, wm(m, xc), xc, pinf);
  const V mr = wm(m, r);
  a.s_r = a.s_r + kv<Full>(valid, mr);
  a.s_r2 = a.s_r2 + kv<Full>(valid, mr * r);
  Mk aneg = a0_neg, apos = a0_pos;
  if constexpr (!RowA) {
    moments<Full>(a.s_a, a.s_a2, a.a_mn, a.a_mx, valid, wm(m, Av), Av, pinf);
    if constexpr (kClip) aneg = Av < zero, apos = Av > zero;
  }
  if constexpr (kCispo)  // weight differs from the ratio (NaN: unordered, counted)
    count(a.c_w, a.n_w, m, valid & (w != r));
  if constexpr (kClip) {  // clip indicators (ops::ppo_clipped_low / high / dual), weight m
    if (cap_only) {
      count(a.c_hi, a.n_hi, m, valid & apos & (r > cap));
    } else if (Lean && RowA) {  // one sign per row: one compare (dual clip off)
      if (rw.a0 < 0.0f)
        count(a.c_lo, a.n_lo, m, valid & (r < cw_lo));
      else if (rw.a0 > 0.0f)
        count(a.c_hi, a.n_hi, m, valid & (r > cw_hi));
    } else {
      count(a.c_lo, a.n_lo, m, valid & aneg & (r < cw_lo));
      count(a.c_hi, a.n_hi, m, valid & apos & (r > cw_hi));
      if (dual) count(a.c_du, a.n_du, m, valid & aneg & (r > cp_dual));
    }
  }
}

/// A whole step of the row loop at t: the prefetch of the input streams kPrefetch ahead (near the
/// row's end: the next row's first lines), the step, and the flush every kFlushBatches steps.
template <policy_loss_kind K, int KLM, bool RowA, bool Lean, class M, class G>
template <bool Full>
GRPO_FORCEINLINE void token_row<K, KLM, RowA, Lean, M, G>::full_step(lanes_acc& a, index_t t,
                                                                    index_t stop,
                                                                    index_t& since) noexcept {
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
  step<false, Full>(a, t, L);
  if (++since == kFlushBatches) {
    flush(a);
    since = 0;
  }
}

/// The row loop: whole steps with prefetch (a prefix row's steps inside [0, end) as Full steps),
/// masked tail, zero fill past the last valid token, then (Lean) the range check of the
/// unguarded exps and finish(). Lean with an exp argument out of range: nothing is added to rp,
/// out_of_range is set (token_row_run reruns the row). Streaming stores (nt): row_desc sets nt
/// only for a row whose gradient (and dL/dH) start on a packet boundary, so every whole step
/// from t = 0 is an aligned store.
template <policy_loss_kind K, int KLM, bool RowA, bool Lean, class M, class G>
bool token_row<K, KLM, RowA, Lean, M, G>::run(index_t Tn, fast_row_part& rp) noexcept {
  const index_t last = want_ptl ? Tn : rw.end;
  const index_t stop = std::min(Tn, (last + L - 1) / L * L);
  lanes_acc a(zero, pinf);
  index_t t = 0, since = 0;
  if constexpr (Lean) {
    if (prefix) {  // steps with every lane inside [0, end)
      const index_t full_stop = std::min(stop, rw.end);
      for (; t + L <= full_stop; t += L) full_step<true>(a, t, stop, since);
    }
  }
  for (; t + L <= stop; t += L) full_step<false>(a, t, stop, since);
  if (t < stop) step<true>(a, t, stop - t);
  flush(a);
  // Past the last valid token: zeros (stop: a whole step's boundary or Tn; sfence when nt).
  zero_row_tail(rw.g, stop, Tn, nt);
  if (want_ge) zero_row_tail(rw.ge, stop, Tn, false);
  if constexpr (Lean) {
    if (!vexp_in_range(a.x_mn, a.x_mx) || !vexp_in_range(a.e_mn, a.e_mx)) {
      out_of_range = true;
      return true;
    }
  }
  return finish(rp, a);
}

/// Row totals into the partial (fast_row_part: the same quantities as fast_simd_acc::finish).
/// False: the row must be rerun on the scalar path.
template <policy_loss_kind K, int KLM, bool RowA, bool Lean, class M, class G>
bool token_row<K, KLM, RowA, Lean, M, G>::finish(fast_row_part& rp, const lanes_acc& a) noexcept {
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
  const float xmin = hmin(a.x_mn), xmax = hmax(a.x_mx);
  rp.ak[0] += -sx;
  rp.ak[1] += sx2;
  rp.ak[2] = std::min(rp.ak[2], -static_cast<double>(xmax));
  rp.ak[3] = std::max(rp.ak[3], -static_cast<double>(xmin));
  // exp is monotonic: the ratio's extrema are those of the (clamped) log ratio, through the same
  // exp as the tokens.
  alignas(64) float e[L] = {};
  e[0] = xmin;
  e[1] = xmax;
  const V ev = vexp(V(A::load(e)));
  A::store(e, ev.v);
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
    rp.kb[2] = std::min(rp.kb[2], static_cast<double>(hmin(a.k_mn)));
    rp.kb[3] = std::max(rp.kb[3], static_cast<double>(hmax(a.k_mx)));
  }
  if constexpr (RowA) {  // constant over the row
    const double A0 = static_cast<double>(rw.a0);
    rp.av[0] += n_row * A0;
    rp.av[1] += n_row * A0 * A0;
    rp.av[2] = std::min(rp.av[2], A0);
    rp.av[3] = std::max(rp.av[3], A0);
  } else {
    rp.av[0] += d_a.total();
    rp.av[1] += d_a2.total();
    rp.av[2] = std::min(rp.av[2], static_cast<double>(hmin(a.a_mn)));
    rp.av[3] = std::max(rp.av[3], static_cast<double>(hmax(a.a_mx)));
  }
  if constexpr (kClip) {
    const double lo = d_lo.total() + static_cast<double>(a.n_lo);
    const double hi = d_hi.total() + static_cast<double>(a.n_hi);
    rp.c_lo += lo;
    rp.c_hi += hi;
    rp.c_re += lo + hi;  // disjoint indicators (A < 0 vs A > 0)
    rp.c_du += d_du.total() + static_cast<double>(a.n_du);
  }
  if constexpr (kCispo) rp.c_w += d_w.total() + static_cast<double>(a.n_w);
  return true;
}

/// token_row for the configuration of the call (lean / plain k3 chosen per row).
template <policy_loss_kind K, bool KL, bool RowA, class M, class G>
bool token_row_run(const fast_simd_params<float>& p, const fast_simd_row<float, M, G>& rw,
                   index_t Tn, fast_row_part& rp) noexcept {
  const bool lean = rw.bin && !(p.cp.delta > 0.0f) && !(p.cp.dual_c > 0.0f) && !p.lr_clamped &&
                    rw.ptl == nullptr && rw.ge == nullptr;
  // A lean row whose exp arguments left [-87, 88] is rerun on the general instantiation (same
  // bits on a lean configuration; vexp's exp_full lanes for the edges); it rewrites the gradient.
  if constexpr (!KL) {
    if (lean) {
      token_row<K, 0, RowA, true, M, G> row(p, rw);
      const bool ok = row.run(Tn, rp);
      if (!row.out_of_range) return ok;
    }
    return token_row<K, 0, RowA, false, M, G>(p, rw).run(Tn, rp);
  } else {
    const bool plain_k3 = p.kl.estimator == ops::kl_estimator::k3 && !(p.kl.inner_clamp > 0) &&
                          !(p.kl.outer_clamp > 0) && !p.kl.straight_through && !p.kl_bias;
    if (lean && plain_k3) {
      token_row<K, 1, RowA, true, M, G> row(p, rw);
      const bool ok = row.run(Tn, rp);
      if (!row.out_of_range) return ok;
    }
    return token_row<K, 2, RowA, false, M, G>(p, rw).run(Tn, rp);
  }
}

/// The row entry point of the dispatch (simd_token_rows.hpp): per-sequence or per-token A.
template <policy_loss_kind K, bool KL, class M, class G>
bool row_run(const fast_simd_params<float>& p, const fast_simd_row<float, M, G>& rw, index_t Tn,
             fast_row_part& rp) noexcept {
  return rw.A == nullptr ? token_row_run<K, KL, true>(p, rw, Tn, rp)
                         : token_row_run<K, KL, false>(p, rw, Tn, rp);
}

/// The entropy sweep of a row with an entropy input (rw.h; token rows and TIS rows run it after
/// the row, whose kernel then writes no dL/dH): the entropy term of the general engine
/// (detail/loss_token.hpp token_terms step 6 with no top-entropy mask, so m_e = m) over the row's
/// mask, into rp: ent += se sum m H, eb += {sum m H, sum m H^2, min, max} of H over the valid
/// tokens; and, when rw.ge is given, ge = gh m at every position (gh = -entropy_coef se: the
/// general engine's (-coef s_ent) m_e, so a padding position gets its signed zero). Reads stop
/// at the step holding the last valid token (a prefix row never reads its mask); float lane sums
/// are flushed into double lanes every kFlushBatches steps. False: a valid token's H is not
/// finite, or a float sum overflowed (the caller reruns the row in double: the named error, or
/// the exact row); rp's entropy fields are then incomplete.
template <class M, class G>
bool entropy_row(const fast_simd_row<float, M, G>& rw_in, index_t Tn, fast_row_part& rp) noexcept {
  const fast_simd_row<float, M, G> rw = rw_in;  // (a copy: the output stores may alias it)
  const V zero(0.0f), pinf(std::numeric_limits<float>::infinity()), gh(rw.gh);
  const bool prefix = rw.prefix && !rw.trunc, want_ge = rw.ge != nullptr;
  const index_t end = rw.trunc ? 0 : std::min(rw.end, Tn);
  const index_t stop = std::min(Tn, (end + L - 1) / L * L);  // reads: the steps up to end
  // Streaming dL/dH stores for a large float output (as the gradient's): whole steps from t = 0
  // (row_desc sets nt only where dL/dH starts on a packet boundary).
  const bool nt = std::is_same_v<G, float> && rw.nt && want_ge;
  V s = zero, s2 = zero, mn = pinf, mx = -pinf;
  dsum d_s, d_s2;
  index_t since = 0, t = 0;
  for (; t < stop; t += L) {
    const index_t k = std::min(stop - t, L);
    if (t + kPrefetch < stop) {
      fast_prefetch(rw.h + t, kPrefetch);
      if (!prefix) fast_prefetch(rw.m + t, kPrefetch);
    }
    V m, hv;
    Mk valid;
    if (prefix) {  // ones exactly on [0, end): m = 1 on the valid lanes
      valid = Mk{A::first(std::max<index_t>(0, std::min<index_t>(k, end - t)))};
      m = sel<V>(valid, V(1.0f), zero);
    } else {
      m = rw.trunc ? zero : (k == L ? load_as<false>(rw.m + t, L) : load_as<true>(rw.m + t, k));
      valid = m != zero;  // (0 on the lanes past a tail)
    }
    hv = k == L ? load_as<false>(rw.h + t, L) : load_as<true>(rw.h + t, k);
    const V mh = m * hv;
    s = s + keep(valid, mh);
    s2 = s2 + keep(valid, mh * hv);
    mn = vmin(sel<V>(valid, hv, pinf), mn);
    mx = vmax(sel<V>(valid, hv, -pinf), mx);
    if (want_ge) {
      const V ge = gh * m;
      if constexpr (std::is_same_v<G, float>) {
        if (nt && k == L) {
          A::stream(rw.ge + t, ge.v);
        } else if (k == L) {
          store_as<false>(rw.ge + t, ge, L);
        } else {
          store_as<true>(rw.ge + t, ge, k);
        }
      } else {
        if (k == L)
          store_as<false>(rw.ge + t, ge, L);
        else
          store_as<true>(rw.ge + t, ge, k);
      }
    }
    if (++since == kFlushBatches) {
      d_s.add(s), d_s2.add(s2);
      s = s2 = zero;
      since = 0;
    }
  }
  d_s.add(s), d_s2.add(s2);
  // Past the last valid token's step (stop: a whole step's boundary, or Tn): gh * 0 (the
  // general engine's signed zero); sfence when nt.
  if (want_ge) zero_row_tail(rw.ge, stop, Tn, nt, static_cast<G>(rw.gh * 0.0f));
  const double sh = d_s.total(), sh2 = d_s2.total();
  if (!std::isfinite(sh) || !std::isfinite(sh2)) return false;
  rp.ent += rw.se * sh;
  rp.eb[0] += sh;
  rp.eb[1] += sh2;
  if (end > 0) {
    rp.eb[2] = std::min(rp.eb[2], static_cast<double>(hmin(mn)));
    rp.eb[3] = std::max(rp.eb[3], static_cast<double>(hmax(mx)));
  }
  return true;
}

/// Whether an entry of m[t0, t1) lies outside [0, FLT_MAX] (NaN included): the exact range test
/// of pass 1 (mask_row_sum's fallback).
inline bool mask_row_bad(const float* m, index_t t0, index_t t1) noexcept {
  const V zero(0.0f), fmax(std::numeric_limits<float>::max());
  Mk ok = !none_set<V>();
  index_t t = t0;
  for (; t + L <= t1; t += L) {
    const V x(A::load(m + t));
    ok = ok & (x >= zero) & (x <= fmax);
  }
  bool bad = A::count(ok.m) != L;
  for (; t < t1; ++t) bad = bad || !(m[t] >= 0.0f && m[t] <= std::numeric_limits<float>::max());
  return bad;
}

/// Pass 1 for a float mask row (the vector part of fast_mask_row_sum, which finishes the tail
/// from t): sum (lane sums flushed to double every kFlushBatches steps), every entry in
/// [0, FLT_MAX] (bad), all 0 / 1 (bin), one past the last nonzero entry (end).
/// The range test is folded into the sum and a lane minimum: a NaN or infinite entry makes the
/// sum non-finite, a negative one the minimum negative (-0 passes, as x >= 0). A row so flagged
/// (or whose float sum overflowed: entries near FLT_MAX) is checked again entry by entry
/// (mask_row_bad), so `bad` is exactly "an entry outside [0, FLT_MAX]".
inline void mask_row_sum(const float* m, index_t Tn, index_t& t, double& n, bool& bad,
                         index_t& end, bool& bin) noexcept {
  const V zero(0.0f), one(1.0f);
  V acc = zero, mn = zero;
  Mk b01 = !none_set<V>();
  index_t since = 0;
  const index_t t0 = t;
  for (; t + L <= Tn; t += L) {
    const V x(A::load(m + t));
    mn = vmin(x, mn);  // (a NaN x keeps mn: the sum sees it)
    const Mk z = x == zero;
    b01 = b01 & (z | (x == one));
    end = A::count(z.m) != L ? t + L : end;
    acc = acc + x;
    if (++since == kFlushBatches) {
      n += static_cast<double>(A::hsum(acc.v));
      acc = zero;
      since = 0;
    }
  }
  n += static_cast<double>(A::hsum(acc.v));
  if (any(mn < zero) || !std::isfinite(n)) bad = bad || mask_row_bad(m, t0, t);
  bin = A::count(b01.m) == L;
  while (end > 0 && m[end - 1] == 0.0f) --end;  // exact (stops at the step's nonzero)
}

// SPDX-License-Identifier: Apache-2.0
/// @file vector_pass1.ipp
/// @brief Pass 1 of the distillation rows written ONCE over an arch tag P (grpo::simd::avx2,
///        grpo::simd::avx512: P::vf, P::lanes, P::exp_fast, P::load, ...): the single row
///        (row_lse_store) and the fused student + teacher pass of the dense rows (pair_pass1),
///        filling detail::row_exp_cache in the portable pass's format. The algorithm of
///        kernels/avx512/pass1.hpp with the k-mask operations spelled as P::select / P::keep.
///
/// Textually included by kernels/<isa>/dense.hpp INSIDE that ISA's target region and namespace
/// (GRPO_BEGIN_TARGET_<ISA> ... namespace <isa>), after it declared `using P = simd::<isa>;` and
/// the helpers fnmadd_(a, b, c) = c - a b, div_(a, b) and the lane counters (vcount,
/// count_zero_(), count_add_(c, m): +1 in the lanes of mask m, count_total_(c)): a template defined outside a target
/// region cannot use the region's instructions, so the text is compiled once per ISA (the
/// technique of Highway's foreach_target). No include guard, no intrinsics.

using vf = typename P::vf;
using vmask = typename P::mask;
/// Lanes per register (8 for AVX2, 16 for AVX-512).
inline constexpr index_t W = P::lanes;

/// v = exp(max(x, -87)): P::exp_fast's contract covers [-87.3, 88.3] (the AVX2 2^n build is not
/// valid below), and exp(-87) ~ 1.6e-38 is below every probability that can matter next to the
/// row maximum's 1. -inf (a masked entry) maps to that floor; callers keep such lanes out of the
/// sums (x < m_c lanes are summed, -inf lanes of a chunk with mass contribute e ~ 1e-38 per
/// entry: far below float resolution of the partial, whose unit is the maximum's 1), and the
/// probabilities of masked entries are zeroed through masked_zero below.
GRPO_FORCEINLINE vf exp_clamped(vf x) noexcept {
  return P::exp_fast(P::max(P::set1(-87.0f), x));
}
/// 0 where x is -inf (a masked entry), else v.
GRPO_FORCEINLINE vf masked_zero(vf x, vf v) noexcept {
  return P::keep(P::cmp_gt(x, P::set1(-std::numeric_limits<float>::infinity())), v);
}

/// 2^t with exact zeros below: t is clamped at -126 and P::exp2_floor gives exactly 0.0f where
/// the clamped t rounds to -126 (t <= -125.5), so -inf (a masked entry, or the -inf padding of a
/// tail) gives 0 without a separate mask. The exps of the sweeps are taken as
/// 2^((x - m) beta log2(e)): the factor beta log2(e) is one multiply (P::exp_fast's own x log2(e)
/// folded into the temperature), exp2_poly's relative error 1.9e-7, 11 operations (the former
/// clamp at -127 + round + 2^n build took 13 and kept subnormals for t in (-126.5, -125.5]:
/// values below 2^-125 next to the chunk maximum's 1, now 0).
GRPO_FORCEINLINE vf exp2_floor0(vf t) noexcept {
  return P::exp2_floor(P::max(P::set1(-126.0f), t));  // NaN stays NaN (max returns its 2nd operand)
}
/// beta log2(e) and ln 2 (the sweeps work in base 2: a = beta (x - m) = t ln 2).
inline constexpr float log2e = 1.44269504088896341f;
inline constexpr float ln2 = 0.693147180559945309f;

/// Combines a row's chunk partials (cache.m, cache.part) into its online state and writes the
/// per-chunk factors cache.scale (avx512::finish_row).
inline basic_online_lse<float> finish_row(row_exp_cache<float>& cache, index_t nc, float beta,
                                          float M, bool nan) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  const float* GRPO_RESTRICT part = cache.part.data();
  const float* GRPO_RESTRICT mcs = cache.m.data();
  const vf vb = P::set1(beta);
  basic_online_lse<float> s(beta);
  if (!(M > ninf) || nan) return s;
  // w_c = exp(beta (m_c - M)) (0 for an empty chunk); e = s - 1 = e_{c*} + sum_{c != c*} w_c
  // (1 + e_c) with c* the first chunk holding M (w = 1).
  float* GRPO_RESTRICT w = cache.scale.data();
  const vf vM = P::set1(M);
  auto factors = [&](vf off) {
    for (index_t c = 0; c < nc; c += W) {
      const index_t k = std::min<index_t>(W, nc - c);
      const vf mv = k == W ? P::load(mcs + c) : P::load_tail(mcs + c, k, ninf);
      const vf a = P::sub(P::mul(vb, P::sub(mv, vM)), off);
      const vf e = masked_zero(mv, exp_clamped(a));
      if (k == W)
        P::store(w + c, e);
      else
        P::store_tail(w + c, e, k);
    }
  };
  factors(P::zero());
  double Es = 0.0;
  bool seen = false;
  for (index_t c = 0; c < nc; ++c) {
    if (!seen && mcs[c] == M) {
      Es += static_cast<double>(part[c]);
      seen = true;
    } else if (mcs[c] > ninf) {
      Es += static_cast<double>(w[c]) * (1.0 + static_cast<double>(part[c]));
    }
  }
  s = basic_online_lse<float>::from_partial(beta, M, static_cast<float>(Es), 0.0f);
  // Per-chunk probability factors scale_c = exp(beta (m_c - M) - log s).
  factors(P::set1(s.log_sum()));
  return s;
}

/// Where sweep 1 of a row reads (the row; 16-bit rows widened on the way into `xbuf`) and the
/// float row the later sweeps re-read (`x`: the row itself for contiguous fp32, else `xbuf`;
/// strided rows are widened up front). avx512::row_src over P.
template <class T>
struct row_src {
  using E = std::remove_cv_t<T>;
  static constexpr bool is_f32 = std::is_same_v<E, float>;
  const T* p;
  bool direct;
  float* xbuf;
  const float* x;
  row_src(const T* p_, index_t st, index_t V, row_exp_cache<float>& cache) noexcept
      : p(p_), direct(st == 1), xbuf(cache.x.data()) {
    if (!direct)
      for (index_t j = 0; j < V; ++j) xbuf[j] = static_cast<float>(widen(p[j * st]));
    x = (is_f32 && direct) ? reinterpret_cast<const float*>(p) : xbuf;
    cache.row = x;
  }
  /// Sweep 1 of the full vector at element j: fold into the maximum m.
  GRPO_FORCEINLINE void max_vec(index_t j, vf& m) const noexcept {
    vf v;
    if constexpr (is_f32) {
      v = P::load(x + j);
    } else {
      if (direct) {
        v = P::load(reinterpret_cast<const E*>(p) + j);
        P::store(xbuf + j, v);
      } else {
        v = P::load(x + j);
      }
    }
    m = P::max(v, m);
  }
  /// Sweep 1 of the partial last vector [j0 + nf, j0 + n) of a chunk.
  GRPO_FORCEINLINE void max_tail(index_t j0, index_t n, index_t nf, vf& m) const noexcept {
    if (nf == n) return;
    if constexpr (!is_f32) {
      if (direct)
        for (index_t j = j0 + nf; j < j0 + n; ++j) xbuf[j] = static_cast<float>(widen(p[j]));
    }
    m = P::max(P::load_tail(x + j0 + nf, n - nf, -std::numeric_limits<float>::infinity()), m);
  }
  /// Prefetch of the line holding element j (a hint; only for rows read in place).
  GRPO_FORCEINLINE void prefetch(index_t j, index_t V) const noexcept {
    if (direct && j < V) P::prefetch(p + j);
  }
};

/// The exp sweep of one chunk of one row: stores e = exp(beta (x - m_c)) (0 on -inf and on the
/// padding up to a multiple of `lanes`), returns the chunk partial (#ties - 1) + sum_{x < m_c} e
/// through part and a NaN / +inf flag through nan.
inline void sweep_one(const float* GRPO_RESTRICT xc, float* GRPO_RESTRICT e, index_t n, float mc,
                      float beta, float& part, bool& nan) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  constexpr float pinf = std::numeric_limits<float>::infinity();
  const vf c2 = P::set1(beta * log2e), vm = P::set1(mc);
  vf acc0 = P::zero(), acc1 = P::zero();
  index_t below = 0;
  const index_t np = (n + lanes - 1) / lanes * lanes;
  for (index_t i = 0; i < np; i += W) {
    const index_t k = std::min<index_t>(W, n - i);
    const vf xv = k == W ? P::load(xc + i) : k > 0 ? P::load_tail(xc + i, k, ninf) : P::set1(ninf);
    const vf ev = exp2_floor0(P::mul(P::sub(xv, vm), c2));  // 0 on -inf
    P::store(e + i, ev);
    const vmask lt = P::cmp_gt(vm, xv);
    if ((i / W) % 2 == 0)
      acc0 = P::add(acc0, P::keep(lt, ev));
    else
      acc1 = P::add(acc1, P::keep(lt, ev));
    below += P::count(lt);
  }
  const float ties = static_cast<float>(np - below);
  part = (ties - 1.0f) + P::hsum(P::add(acc0, acc1));
  if (ties != 1.0f || !(mc < pinf))
    for (index_t j = 0; j < n; ++j) nan = nan || !(xc[j] < pinf);
  nan = nan || !(part == part);
}

/// A chunk without mass (every entry -inf, or NaN among -inf): NaN check, zero exps and partial.
inline void empty_chunk(const float* GRPO_RESTRICT xc, float* GRPO_RESTRICT e, index_t n,
                        float& part, bool& nan) noexcept {
  for (index_t j = 0; j < n; ++j) nan = nan || (xc[j] != xc[j]);
  const index_t np = (n + lanes - 1) / lanes * lanes;
  for (index_t j = 0; j < np; ++j) e[j] = 0.0f;
  part = 0.0f;
}

/// The maximum of chunk c of a row through its row_src (sweep 1).
template <class T>
float chunk_max_of(const row_src<T>& r, index_t j0, index_t n) noexcept {
  const vf vninf = P::set1(-std::numeric_limits<float>::infinity());
  const index_t nf = n / W * W;
  vf m0 = vninf, m1 = vninf;
  index_t i = 0;
  for (; i + 2 * W <= nf; i += 2 * W) {
    r.max_vec(j0 + i, m0);
    r.max_vec(j0 + i + W, m1);
  }
  for (; i < nf; i += W) r.max_vec(j0 + i, m0);
  r.max_tail(j0, n, nf, m1);
  return P::hmax(P::max(m0, m1));
}

/// Pass 1 of one row on this ISA (row_lse_store_portable's contract; cache.row points at the
/// contiguous float row read): per chunk sweep 1 (maximum, widening 16-bit rows into cache.x)
/// then the exp sweep from L1, the next chunks prefetched GRPO_DISTILL_PREFETCH_CHUNKS ahead.
template <class T>
basic_online_lse<float> row_lse_store(const T* p, index_t st, index_t V, float beta,
                                      row_exp_cache<float>& cache, bool& bad) noexcept {
  constexpr index_t D = GRPO_DISTILL_PREFETCH_CHUNKS * chunk;
  const index_t nc = (V + chunk - 1) / chunk;
  const row_src<T> r(p, st, V, cache);
  float M = -std::numeric_limits<float>::infinity();
  bool nan = false;
  for (index_t c = 0; c < nc; ++c) {
    const index_t j0 = c * chunk, n = std::min(chunk, V - j0);
    for (index_t i = 0; i < n; i += 64 / static_cast<index_t>(sizeof(T))) r.prefetch(j0 + D + i, V);
    const float mc = chunk_max_of(r, j0, n);
    cache.m[static_cast<std::size_t>(c)] = mc;
    float* e = cache.e.data() + j0;
    float& part = cache.part[static_cast<std::size_t>(c)];
    if (!(mc > -std::numeric_limits<float>::infinity())) {
      empty_chunk(r.x + j0, e, n, part, nan);
      continue;
    }
    sweep_one(r.x + j0, e, n, mc, beta, part, nan);
    M = mc > M ? mc : M;
  }
  if (nan) bad = true;
  return finish_row(cache, nc, beta, M, nan);
}

/// Sweep 1 of chunk 0 of both rows of pair_pass1.
template <class S, class U>
void pair_first_max(const row_src<S>& rs, const row_src<U>& ru, index_t V, float& mns,
                    float& mnu) noexcept {
  const index_t n = std::min(chunk, V);
  mns = chunk_max_of(rs, 0, n);
  mnu = chunk_max_of(ru, 0, n);
}

/// The row value of pair_pass1<Loss> from its per-chunk sums L_c (cu.aux); avx512::pair_kl_total.
template <int Loss>
double pair_kl_total(const row_exp_cache<float>& cs, const row_exp_cache<float>& cu,
                     const basic_online_lse<float>& ls, const basic_online_lse<float>& lu,
                     float Ms, float Mu, float beta, index_t nc) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  const float* GRPO_RESTRICT lc = cu.aux.data();
  const row_exp_cache<float>& cw = Loss == 1 ? cu : cs;
  const row_exp_cache<float>& co = Loss == 1 ? cs : cu;
  const double b = beta;
  const double Mw = Loss == 1 ? Mu : Ms, Mo = Loss == 1 ? Ms : Mu;
  const double lsw = Loss == 1 ? lu.log_sum() : ls.log_sum();
  const double lso = Loss == 1 ? ls.log_sum() : lu.log_sum();
  double total = 0.0;
  for (index_t c = 0; c < nc; ++c) {
    const std::size_t k = static_cast<std::size_t>(c);
    const double w = cw.scale[k];
    if (!(w > 0.0)) continue;  // no mass of the weighting row in float on the whole chunk
    const double offw = b * (static_cast<double>(cw.m[k]) - Mw) - lsw;
    const double offo = co.m[k] > ninf ? b * (static_cast<double>(co.m[k]) - Mo) - lso
                                       : -std::numeric_limits<double>::infinity();
    total += w * (static_cast<double>(lc[c]) +
                  (offw - offo) * (1.0 + static_cast<double>(cw.part[k])));
  }
  return total;
}

/// Per-chunk state of the fused exp sweep of pair_pass1: the sums below the chunk maxima, the
/// KL partial (base-2 units: times ln 2 at the end) and the counts of lanes below the maxima.
struct pair_acc {
  vf accs, accu, lacc;
  vcount cnts, cntu;
};

/// One vector of the fused exp sweep of pair_pass1 (x student, y teacher, at element i of the
/// chunk whose exps go to es / eu; c2 = beta log2(e)): the exps stored, the sums below the chunk
/// maxima and their counts accumulated, and for Loss = 1 / 2 the KL partial (avx512::pair_pass1's
/// `step`). Per vector and row: sub, mul, the 2^t of exp2_floor0 (11 operations), store, compare,
/// and + add (sum), one integer subtract (count); the KL partial 2 more (sub, fma).
template <int Loss>
GRPO_FORCEINLINE void pair_step(vf c2, vf vms, vf vmu, vf x, vf y, float* GRPO_RESTRICT es,
                                float* GRPO_RESTRICT eu, pair_acc& a) noexcept {
  const vf ts = P::mul(P::sub(x, vms), c2);  // a^s log2(e), a^s = beta (x - m^s_c)
  const vf tu = P::mul(P::sub(y, vmu), c2);
  const vf ex = exp2_floor0(ts), ey = exp2_floor0(tu);  // exactly 0 on -inf
  P::store(es, ex);
  // Reverse KL: its gradient needs the teacher only through a^s - a^u (never p), so the
  // teacher's cache keeps that difference and the gradient sweep reads no logit.
  P::store(eu, Loss == 2 ? P::mul(P::sub(ts, tu), P::set1(ln2)) : ey);
  const vmask lts = P::cmp_gt(vms, x);
  const vmask ltu = P::cmp_gt(vmu, y);
  a.accs = P::add(a.accs, P::keep(lts, ex));
  a.accu = P::add(a.accu, P::keep(ltu, ey));
  a.cnts = count_add_(a.cnts, lts);
  a.cntu = count_add_(a.cntu, ltu);
  // The KL partial e^u (t^u - t^s) (Loss 1) / e^s (t^s - t^u) (Loss 2) without the mask "0 where
  // e = 0": it differs from the masked sum only by NaN (0 x inf where a row holds -inf), and a
  // chunk whose sum is NaN is summed again with the mask (pair_kl_masked): bitwise the masked
  // sum, two operations less per vector.
  if constexpr (Loss == 1) a.lacc = P::fmadd(ey, P::sub(tu, ts), a.lacc);
  if constexpr (Loss == 2) a.lacc = P::fmadd(ex, P::sub(ts, tu), a.lacc);
}

/// The KL partial of pair_step with the mask (0 where the weighting exp is 0: a masked entry of
/// the weighting row, p log(p / q) = 0 for p = 0), over the np (multiple of `lanes`) lanes of a
/// chunk of n entries in pair_step's order, from the exps pair_step stored (es, eu) and the
/// logits; for chunks where the unmasked sum is NaN.
template <int Loss>
vf pair_kl_masked(const float* GRPO_RESTRICT xs, const float* GRPO_RESTRICT xu,
                  const float* GRPO_RESTRICT es, const float* GRPO_RESTRICT eu, index_t n,
                  index_t np, vf vms, vf vmu, vf c2) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  const vf zero = P::zero();
  vf lacc = zero;
  for (index_t i = 0; i < np; i += W) {
    const index_t t = std::max<index_t>(0, std::min<index_t>(W, n - i));
    const vf x = t == W ? P::load(xs + i) : t > 0 ? P::load_tail(xs + i, t, ninf) : P::set1(ninf);
    const vf y = t == W ? P::load(xu + i) : t > 0 ? P::load_tail(xu + i, t, ninf) : P::set1(ninf);
    const vf ts = P::mul(P::sub(x, vms), c2), tu = P::mul(P::sub(y, vmu), c2);
    const vf e = P::load(Loss == 1 ? eu + i : es + i);
    const vf d = Loss == 1 ? P::sub(tu, ts) : P::sub(ts, tu);
    lacc = P::select(P::cmp_gt(e, zero), P::fmadd(e, d, lacc), lacc);
  }
  return lacc;
}

/// A chunk where one row has no mass (a masked vocabulary block): each row on its own, and the
/// Loss-specific entries of the caches (avx512::pair_pass1's first branch).
template <int Loss>
void pair_chunk_split(const float* xs, const float* xu, float* es, float* eu, index_t n,
                      float mcs, float mcu, float beta, bool has_s, bool has_u, float& ps,
                      float& pu, float& lc, bool& nan_s, bool& nan_u) noexcept {
  constexpr float pinf = std::numeric_limits<float>::infinity();
  const index_t np = (n + lanes - 1) / lanes * lanes;
  if (has_s)
    sweep_one(xs, es, n, mcs, beta, ps, nan_s);
  else
    empty_chunk(xs, es, n, ps, nan_s);
  if (has_u)
    sweep_one(xu, eu, n, mcu, beta, pu, nan_u);
  else
    empty_chunk(xu, eu, n, pu, nan_u);
  if constexpr (Loss == 2)
    for (index_t j = 0; j < np; ++j) eu[j] = has_u ? 0.0f : pinf;
  if constexpr (Loss == 1) lc = has_u && !has_s ? pinf : 0.0f;
  if constexpr (Loss == 2) lc = has_s && !has_u ? pinf : 0.0f;
}

/// The exp sweep of chunk [j0, j0 + n) of both rows (maxima mcs, mcu: both rows have mass), with
/// the maxima of the next chunk [j1, j1 + n1) fused in (n1 = 0: none): the memory read of the next
/// chunk overlaps this chunk's exps, which re-read the current one from L1 (avx512::pair_pass1's
/// design). Fills the chunk's partials and, for Loss != 0, its KL sum; returns the next maxima.
template <int Loss, class S, class U>
void pair_chunk(const row_src<S>& rs, const row_src<U>& ru, index_t V, index_t j0, index_t n,
                index_t j1, index_t n1, float mcs, float mcu, vf c2, float* GRPO_RESTRICT es,
                float* GRPO_RESTRICT eu, float& ps, float& pu, float* lc, bool& nan_s,
                bool& nan_u, float& mns, float& mnu) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  constexpr float pinf = std::numeric_limits<float>::infinity();
  const float* GRPO_RESTRICT xs = rs.x + j0;
  const float* GRPO_RESTRICT xu = ru.x + j0;
  const index_t nf = n / W * W, nf1 = std::min(nf, n1 / W * W);
  const vf vms = P::set1(mcs), vmu = P::set1(mcu);
  pair_acc a{P::zero(), P::zero(), P::zero(), count_zero_(), count_zero_()};
  vf m0 = P::set1(ninf), m1 = m0;
  // One software prefetch per cache line and row, GRPO_DISTILL_PREFETCH_CHUNKS chunks ahead,
  // spread over the sweep (a burst of 64 prefetches at the chunk's start stalls on the line fill
  // buffers: ~1/3 of pass 1's samples on AVX2 were there).
  constexpr index_t D = GRPO_DISTILL_PREFETCH_CHUNKS * chunk;
  constexpr index_t ls = 64 / static_cast<index_t>(sizeof(S)), lu = 64 / static_cast<index_t>(sizeof(U));
  const bool pf_s = rs.direct && j0 + D + n <= V, pf_u = ru.direct && j0 + D + n <= V;
  index_t i = 0;
  for (; i < nf1; i += W) {  // fused: this chunk's exps, the next chunk's maxima
    if (pf_s && i % ls == 0) P::prefetch(rs.p + j0 + D + i);
    if (pf_u && i % lu == 0) P::prefetch(ru.p + j0 + D + i);
    rs.max_vec(j1 + i, m0);
    ru.max_vec(j1 + i, m1);
    pair_step<Loss>(c2, vms, vmu, P::load(xs + i), P::load(xu + i), es + i, eu + i, a);
  }
  for (; i < nf; i += W)
    pair_step<Loss>(c2, vms, vmu, P::load(xs + i), P::load(xu + i), es + i, eu + i, a);
  for (index_t k = nf1; k < n1 / W * W; k += W) {  // only if the next chunk were longer
    rs.max_vec(j1 + k, m0);
    ru.max_vec(j1 + k, m1);
  }
  if (n1 > 0) {
    rs.max_tail(j1, n1, n1 / W * W, m0);
    ru.max_tail(j1, n1, n1 / W * W, m1);
  }
  mns = P::hmax(m0);
  mnu = P::hmax(m1);
  index_t np = nf;
  for (; np < n || np % lanes != 0; np += W) {  // tail and -inf padding up to `lanes`
    const index_t t = std::max<index_t>(0, std::min<index_t>(W, n - np));
    const vf x = t > 0 ? P::load_tail(xs + np, t, ninf) : P::set1(ninf);
    const vf y = t > 0 ? P::load_tail(xu + np, t, ninf) : P::set1(ninf);
    pair_step<Loss>(c2, vms, vmu, x, y, es + np, eu + np, a);
  }
  const float ties_s = static_cast<float>(np - count_total_(a.cnts));  // exact (< 2^24)
  const float ties_u = static_cast<float>(np - count_total_(a.cntu));
  ps = (ties_s - 1.0f) + P::hsum(a.accs);
  pu = (ties_u - 1.0f) + P::hsum(a.accu);
  if (ties_s != 1.0f || !(mcs < pinf))
    for (index_t j = 0; j < n; ++j) nan_s = nan_s || !(xs[j] < pinf);
  if (ties_u != 1.0f || !(mcu < pinf))
    for (index_t j = 0; j < n; ++j) nan_u = nan_u || !(xu[j] < pinf);
  nan_s = nan_s || !(ps == ps);
  nan_u = nan_u || !(pu == pu);
  if constexpr (Loss != 0) {
    float l = P::hsum(a.lacc);
    if (l != l) l = P::hsum(pair_kl_masked<Loss>(xs, xu, es, eu, n, np, vms, vmu, c2));
    *lc = l * ln2;
  }
}

/// Pass 1 of a dense row pair on this ISA (avx512::pair_pass1's contract): both rows' caches,
/// states and NaN flags; for Loss = 1 (forward KL) / 2 (reverse KL) the row value in *kl. The
/// row is read from memory once, by the maxima sweep of chunk c + 1 fused into chunk c's exps.
template <int Loss, class S, class U>
void pair_pass1(const S* s, index_t ss, const U* u, index_t us, index_t V, float beta,
                row_exp_cache<float>& cs, row_exp_cache<float>& cu, const void* next,
                index_t next_bytes, basic_online_lse<float>& ls, basic_online_lse<float>& lu,
                bool& bad_s, bool& bad_u, double* kl) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  constexpr index_t D = GRPO_DISTILL_PREFETCH_CHUNKS * chunk;
  const index_t nc = (V + chunk - 1) / chunk;
  const row_src<S> rs(s, ss, V, cs);
  const row_src<U> ru(u, us, V, cu);
  const vf c2 = P::set1(beta * log2e);
  float Ms = ninf, Mu = ninf;
  bool nan_s = false, nan_u = false;
  float* GRPO_RESTRICT lc = cu.aux.data();
  float mns, mnu;  // the maxima of the chunk processed next
  pair_first_max(rs, ru, V, mns, mnu);
  for (index_t c = 0; c < nc; ++c) {
    const std::size_t k = static_cast<std::size_t>(c);
    const index_t j0 = c * chunk, n = std::min(chunk, V - j0);
    const index_t j1 = j0 + chunk, n1 = c + 1 < nc ? std::min(chunk, V - j1) : 0;
    // The rows are prefetched D elements ahead inside pair_chunk; near the row's end, the next
    // row pair's head.
    if (next != nullptr && j0 + D >= V && j0 + D - V < D)
      prefetch_range(next, (j0 + D - V) * next_bytes, n * next_bytes);
    const float mcs = mns, mcu = mnu;
    cs.m[k] = mcs;
    cu.m[k] = mcu;
    float* GRPO_RESTRICT es = cs.e.data() + j0;
    float* GRPO_RESTRICT eu = cu.e.data() + j0;
    const bool has_s = mcs > ninf, has_u = mcu > ninf;
    if (!(has_s && has_u)) {
      pair_chunk_split<Loss>(rs.x + j0, ru.x + j0, es, eu, n, mcs, mcu, beta, has_s, has_u,
                             cs.part[k], cu.part[k], lc[c], nan_s, nan_u);
      if (n1 > 0) {
        mns = chunk_max_of(rs, j1, n1);
        mnu = chunk_max_of(ru, j1, n1);
      }
    } else {
      pair_chunk<Loss>(rs, ru, V, j0, n, j1, n1, mcs, mcu, c2, es, eu, cs.part[k], cu.part[k],
                       lc + c, nan_s, nan_u, mns, mnu);
    }
    if (has_s) Ms = mcs > Ms ? mcs : Ms;
    if (has_u) Mu = mcu > Mu ? mcu : Mu;
  }
  bad_s = nan_s;
  bad_u = nan_u;
  ls = finish_row(cs, nc, beta, Ms, nan_s);
  lu = finish_row(cu, nc, beta, Mu, nan_u);
  if constexpr (Loss != 0) {
    if (ls.empty() || lu.empty()) return;
    *kl = pair_kl_total<Loss>(cs, cu, ls, lu, Ms, Mu, beta, nc);
  }
}

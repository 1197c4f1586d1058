// SPDX-License-Identifier: Apache-2.0
/// @file sequence_row.hpp
/// @brief The AVX-512 row kernel of the sequence-level engine (GSPO, GSPO-token; float inputs:
///        detail::gspo_v512_row_impl / gspo_v512_row_run); moved verbatim from loss.hpp. Compiled
///        where the TU targets AVX-512F + DQ (GRPO_HAS_AVX512), in its ABI namespace.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/isa.hpp>  // GRPO_ISA_ABI
#include <grpo/detail/loss_token.hpp>  // token_ratio (the sequence kernel's row constants)
#include <grpo/detail/simd.hpp>
#include <grpo/loss/kernels/avx512/ops.hpp>  // simd::avx512 (the float mirrors of the ops)
#include <grpo/loss/row_types.hpp>
#include <grpo/policy_loss.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#if GRPO_HAS_AVX512
namespace grpo::detail {
inline namespace GRPO_ISA_ABI {

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
// (v512_load_as / v512_store_as / v512_dsum: formerly in token_row.hpp, whose hand-written row
// is replaced by the packet rows of kernels/token_row.ipp.)
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

}  // namespace GRPO_ISA_ABI
}  // namespace grpo::detail
#endif  // GRPO_HAS_AVX512

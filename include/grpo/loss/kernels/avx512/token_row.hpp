// SPDX-License-Identifier: Apache-2.0
/// @file token_row.hpp
/// @brief The AVX-512 row kernel of the token-level engine (float inputs,
///        detail::fast_v512_row_impl / fast_v512_row_run) and the AVX-512 mask pass
///        (v512_mask_row_sum); moved verbatim from loss.hpp. Compiled where the translation unit
///        targets AVX-512F + DQ (GRPO_HAS_AVX512), in the TU's ABI namespace (GRPO_ISA_ABI).
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

/// Pass 1 of the vectorised engines for a float mask row on AVX-512 (the vector part of
/// fast_mask_row_sum, which finishes the tail from t): n, bad, end and bin as documented there.
inline void v512_mask_row_sum(const float* m, index_t Tn, index_t& t, double& n, bool& bad,
                              index_t& end, bool& bin) noexcept {
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
}

#undef GRPO_DETAIL_INLINE_LAMBDA
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace GRPO_ISA_ABI
}  // namespace grpo::detail
#endif  // GRPO_HAS_AVX512

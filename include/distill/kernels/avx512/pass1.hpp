// SPDX-License-Identifier: Apache-2.0
/// @file pass1.hpp
/// @brief AVX-512 pass 1 of the distillation rows (moved verbatim from the former
///        detail/engine.hpp, where it was compiled only in AVX-512 translation units): the single
///        row (avx512::row_lse_store) and the fused student + teacher pass of the dense rows
///        (avx512::pair_pass1), filling detail::row_exp_cache in the portable pass's format.
///        Compiled in every x86-64 build inside a target region; called only after
///        grpo::active_isa() said avx512.
#pragma once

#include <distill/detail/row_math.hpp>
#include <grpo/core/isa.hpp>
#include <grpo/simd/arch/avx512/packet.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#if GRPO_SIMD_HAS_AVX512_PACKET
#include <immintrin.h>

GRPO_BEGIN_TARGET_AVX512
namespace grpo::distill::detail {
inline namespace GRPO_ISA_ABI {
namespace avx512 {

/// The packet maths (exp_fast, log, hsum, hmax, bf16 / fp16 conversions) as `v5::`.
using v5 = ::grpo::simd::avx512;
using vf = __m512;

// AVX-512 pass 1 (vmath512.hpp): the same cache format as the portable pass below, written with
// 16-float registers. Per chunk: sweep 1 takes the chunk maximum (one vmaxps per 16 elements,
// the only sweep that reads the row from memory); sweep 2 re-reads the chunk from L1 and stores
// e_j = exp(beta (x_j - m_c)), accumulating sum_{x < m_c} e_j and the count of x < m_c (the ties
// give the exact unit of online_lse's encoding). Per 16 elements: sweep 1 one op, sweep 2 sub,
// mul, max (clamp), 12 for the exp, store, cmp, two masked adds: 19 vector ops. Chunks are
// combined once per row with vectorised exps over the chunk maxima (no scalar exp per chunk).

/// v512::exp gives exactly 0 below -103.3; clamping the argument there also maps -inf (a masked
/// entry, whose exp would be NaN through the Cody-Waite reduction) to 0.
inline constexpr float exp_floor = -104.0f;

/// The first n (< 16) lanes.
GRPO_FORCEINLINE __mmask16 head_mask(index_t n) noexcept {
  return static_cast<__mmask16>((1u << static_cast<unsigned>(n)) - 1u);
}

/// exp(max(x, -104)) (a NaN argument may come out as 0: callers detect NaN separately).
GRPO_FORCEINLINE vf exp_clamped(vf x) noexcept {
  return v5::exp_fast(_mm512_max_ps(v5::set1(exp_floor), x));
}

/// 16 values of a contiguous row as floats (exact widening of bf16 / fp16).
template <class T>
GRPO_FORCEINLINE vf load16(const T* p) noexcept {
  using E = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<E, bfloat16>) {
    return v5::load_bf16(p);
  } else if constexpr (std::is_same_v<E, float16>) {
    return v5::load_fp16(p);
  } else {
    return _mm512_loadu_ps(p);
  }
}

/// Software prefetch distance of pass 1, in chunks (the fused max of the next chunk alone has
/// only the out-of-order window, about 20 vectors, of memory-level parallelism).
#ifndef GRPO_DISTILL_PREFETCH_CHUNKS
#define GRPO_DISTILL_PREFETCH_CHUNKS 4
#endif
/// 1: bf16 gradients are rounded with AVX512-BF16's vcvtneps2bf16 where the target has it (one
/// instruction instead of eight; it rounds to nearest even like grpo::bfloat16 but flushes
/// inputs below 2^-126 to zero, a gradient entry no optimiser state can tell from 0).
#ifndef GRPO_DISTILL_CVTBF16
#define GRPO_DISTILL_CVTBF16 1
#endif

/// Combines a row's chunk partials (cache.m, cache.part) into its online state and writes the
/// per-chunk factors cache.scale. M: the row maximum; nan: the row is invalid (empty state).
inline basic_online_lse<float> finish_row(row_exp_cache<float>& cache, index_t nc, float beta,
                                          float M, bool nan) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  const float* GRPO_RESTRICT part = cache.part.data();
  const float* GRPO_RESTRICT mcs = cache.m.data();
  const vf vb = v5::set1(beta), vninf = v5::set1(ninf);
  basic_online_lse<float> s(beta);
  if (!(M > ninf) || nan) return s;
  // Combine the chunks: w_c = exp(beta (m_c - M)) (vectorised; 0 for an empty chunk), and
  // e = s - 1 = e_{c*} + sum_{c != c*} w_c (1 + e_c) with c* the first chunk holding M (w = 1).
  float* GRPO_RESTRICT w = cache.scale.data();
  const vf vM = v5::set1(M);
  for (index_t c = 0; c < nc; c += 16) {
    const __mmask16 k = nc - c >= 16 ? static_cast<__mmask16>(0xFFFF) : head_mask(nc - c);
    const vf mv = _mm512_mask_loadu_ps(vninf, k, mcs + c);
    _mm512_mask_storeu_ps(w + c, k, exp_clamped(_mm512_mul_ps(vb, _mm512_sub_ps(mv, vM))));
  }
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
  const vf vls = v5::set1(s.log_sum());
  for (index_t c = 0; c < nc; c += 16) {
    const __mmask16 k = nc - c >= 16 ? static_cast<__mmask16>(0xFFFF) : head_mask(nc - c);
    const vf mv = _mm512_mask_loadu_ps(vninf, k, mcs + c);
    _mm512_mask_storeu_ps(w + c, k, exp_clamped(_mm512_fmsub_ps(vb, _mm512_sub_ps(mv, vM), vls)));
  }
  return s;
}

/// One row of an AVX-512 pass 1: where sweep 1 reads (the row, 16-bit rows widened on the
/// way into `xbuf`) and the float row sweep 2 re-reads (`x`: the row itself for contiguous fp32,
/// else `xbuf`; strided rows are widened up front).
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
  /// Sweep 1 of the vector at element j (full): fold into the maximum m.
  GRPO_FORCEINLINE void max_vec(index_t j, vf& m) const noexcept {
    vf v;
    if constexpr (is_f32) {
      v = _mm512_loadu_ps(x + j);
    } else {
      if (direct) {
        v = load16(p + j);
        _mm512_storeu_ps(xbuf + j, v);
      } else {
        v = _mm512_loadu_ps(x + j);
      }
    }
    m = _mm512_max_ps(v, m);
  }
  /// Sweep 1 of the partial last vector [j0 + nf, j0 + n) of a chunk.
  GRPO_FORCEINLINE void max_tail(index_t j0, index_t n, index_t nf, vf& m) const noexcept {
    if (nf == n) return;
    if constexpr (!is_f32) {
      if (direct)
        for (index_t j = j0 + nf; j < j0 + n; ++j) xbuf[j] = static_cast<float>(widen(p[j]));
    }
    m = _mm512_max_ps(_mm512_mask_loadu_ps(v5::set1(-std::numeric_limits<float>::infinity()),
                                           head_mask(n - nf), x + j0 + nf),
                      m);
  }
  /// Prefetch of the line holding element j (a hint; only for rows read in place).
  GRPO_FORCEINLINE void prefetch(index_t j, index_t V) const noexcept {
#if defined(__GNUC__) || defined(__clang__)
    if (direct && j < V) __builtin_prefetch(p + j, 0, 3);
#else
    (void)j;
    (void)V;
#endif
  }
};

/// The AVX-512 pass 1 of one row (contiguous: float read in place, bf16 / fp16 widened into
/// cache.x during the max sweep; strided rows are widened first). Fills cache.e / m / scale /
/// part in the portable pass's format, points cache.row at the float row it read, and returns
/// the row's online state; bad: a NaN or +inf in the row. `ahead` (nullable): the row the
/// caller processes next (element size ahead_bytes), whose head is prefetched as this row ends.
template <class T>
basic_online_lse<float> row_lse_store(const T* p, index_t st, index_t V, float beta,
                                      row_exp_cache<float>& cache, bool& bad,
                                      const void* ahead = nullptr,
                                      index_t ahead_bytes = 0) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  constexpr float pinf = std::numeric_limits<float>::infinity();
  constexpr index_t D = GRPO_DISTILL_PREFETCH_CHUNKS * chunk;
  const index_t nc = (V + chunk - 1) / chunk;
  float* GRPO_RESTRICT part = cache.part.data();
  float* GRPO_RESTRICT mcs = cache.m.data();
  const row_src<T> r(p, st, V, cache);
  const float* x = r.x;
  const vf vb = v5::set1(beta), vninf = v5::set1(ninf), one = v5::set1(1.0f);
  const vf zero = _mm512_setzero_ps();
  float M = ninf;
  bool nan = false;
  // Sweep 1 of chunk 0 on its own; every later chunk's maximum is taken inside the exp sweep of
  // the chunk before it, so its (DRAM) loads overlap that sweep's arithmetic.
  float mnext;
  {
    const index_t n = std::min(chunk, V), nf = n / 16 * 16;
    vf m0 = vninf, m1 = vninf, m2 = vninf, m3 = vninf;
    index_t i = 0;
    for (; i + 64 <= nf; i += 64) {
      r.max_vec(i, m0);
      r.max_vec(i + 16, m1);
      r.max_vec(i + 32, m2);
      r.max_vec(i + 48, m3);
    }
    for (; i < nf; i += 16) r.max_vec(i, m0);
    r.max_tail(0, n, nf, m1);
    mnext = v5::hmax(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
  }
  for (index_t c = 0; c < nc; ++c) {
    const index_t j0 = c * chunk, n = std::min(chunk, V - j0), nf = n / 16 * 16;
    const index_t j1 = j0 + chunk, n1 = c + 1 < nc ? std::min(chunk, V - j1) : 0;
    const index_t nf1 = n1 / 16 * 16;  // <= nf: only the last chunk is shorter
    const float* GRPO_RESTRICT xc = x + j0;
    float* GRPO_RESTRICT e = cache.e.data() + j0;
    const float mc = mnext;
    mcs[c] = mc;
    vf mn0 = vninf, mn1 = vninf;
    if (!(mc > ninf)) {  // no mass (every entry -inf, or NaN among -inf)
      for (index_t j = 0; j < n; ++j) nan = nan || (xc[j] != xc[j]);
      const index_t np = (n + lanes - 1) / lanes * lanes;
      for (index_t j = 0; j < np; ++j) e[j] = 0.0f;
      part[c] = 0.0f;
      for (index_t i = 0; i < nf1; i += 16) r.max_vec(j1 + i, mn0);
    } else {
      // Sweep 2 (L1): e = exp(beta (x - m_c)), exactly 1 at the maximum and 0 for -inf; the
      // next chunk's maximum in the same loop.
      const vf vm = v5::set1(mc);
      vf a0 = zero, a1 = zero, c0 = zero, c1 = zero;
      auto step = [&](vf xv, vf& acc, vf& cnt, float* dst) {
        const vf ev = exp_clamped(_mm512_mul_ps(vb, _mm512_sub_ps(xv, vm)));
        _mm512_storeu_ps(dst, ev);
        const __mmask16 lt = _mm512_cmp_ps_mask(xv, vm, _CMP_LT_OQ);
        acc = _mm512_mask_add_ps(acc, lt, acc, ev);
        cnt = _mm512_mask_add_ps(cnt, lt, cnt, one);
      };
      index_t i = 0;
      for (; i + 32 <= nf; i += 32) {
        // Software prefetch D elements ahead, then into the head of the row processed next.
        const index_t ja = j0 + D + i;
        if (ja < V) {
          r.prefetch(ja, V);
          if constexpr (row_src<T>::is_f32) r.prefetch(ja + 16, V);
        } else if (ja - V < D) {
          prefetch_range(ahead, (ja - V) * ahead_bytes, 32 * ahead_bytes);
        }
        if (i < nf1) r.max_vec(j1 + i, mn0);
        if (i + 16 < nf1) r.max_vec(j1 + i + 16, mn1);
        step(_mm512_loadu_ps(xc + i), a0, c0, e + i);
        step(_mm512_loadu_ps(xc + i + 16), a1, c1, e + i + 16);
      }
      for (; i < nf; i += 16) {
        if (i < nf1) r.max_vec(j1 + i, mn0);
        step(_mm512_loadu_ps(xc + i), a0, c0, e + i);
      }
      index_t np = nf;
      if (nf < n) {  // padding lanes are -inf: e = 0, counted below the maximum
        step(_mm512_mask_loadu_ps(vninf, head_mask(n - nf), xc + nf), a1, c1, e + nf);
        np += 16;
      }
      const float ties = static_cast<float>(np) - v5::hsum(_mm512_add_ps(c0, c1));  // exact
      // e_c = (#ties - 1) + sum_{x < m_c} e: online_lse's encoding of the chunk partial.
      part[c] = (ties - 1.0f) + v5::hsum(_mm512_add_ps(a0, a1));
      // A NaN compares false with m_c, so it shows up as an extra tie: chunks with several
      // entries at their maximum (rare) are checked element by element. +inf is the maximum.
      if (ties != 1.0f || !(mc < pinf))
        for (index_t j = 0; j < n; ++j) nan = nan || !(xc[j] < pinf);
      nan = nan || !(part[c] == part[c]);
      M = mc > M ? mc : M;
    }
    if (n1 > 0) {
      r.max_tail(j1, n1, nf1, mn1);
      mnext = v5::hmax(_mm512_max_ps(mn0, mn1));
    }
  }
  if (nan) bad = true;
  return finish_row(cache, nc, beta, M, nan);
}

/// The exp sweep of one row's chunk alone (the fused pass's fallback when the other row's chunk
/// has no mass): stores e, returns the chunk partial through part / the NaN flag.
inline void sweep_one(const float* GRPO_RESTRICT xc, float* GRPO_RESTRICT e, index_t n, float mc,
                      float beta, float& part, bool& nan) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  constexpr float pinf = std::numeric_limits<float>::infinity();
  const vf vb = v5::set1(beta), vm = v5::set1(mc);
  vf acc = _mm512_setzero_ps();
  index_t below = 0;
  for (index_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : head_mask(n - i);
    const vf xv = _mm512_mask_loadu_ps(v5::set1(ninf), k, xc + i);
    const vf ev = exp_clamped(_mm512_mul_ps(vb, _mm512_sub_ps(xv, vm)));
    _mm512_storeu_ps(e + i, ev);
    const __mmask16 lt = _mm512_cmp_ps_mask(xv, vm, _CMP_LT_OQ);
    acc = _mm512_mask_add_ps(acc, lt, acc, ev);
    below += __builtin_popcount(static_cast<unsigned>(lt));
  }
  const index_t np = (n + 15) / 16 * 16;
  const float ties = static_cast<float>(np - below);
  part = (ties - 1.0f) + v5::hsum(acc);
  if (ties != 1.0f || !(mc < pinf))
    for (index_t j = 0; j < n; ++j) nan = nan || !(xc[j] < pinf);
  nan = nan || !(part == part);
}

/// The row value of pair_pass1<Loss> from its per-chunk sums L_c (cu.aux): the weighting row w
/// (teacher for the forward KL, student for the reverse), the other row o,
/// KL = sum_c scale^w_c [L_c + (off^w_c - off^o_c) S^w_c] in double.
template <int Loss>
double pair_kl_total(const row_exp_cache<float>& cs, const row_exp_cache<float>& cu,
                     const basic_online_lse<float>& ls, const basic_online_lse<float>& lu,
                     float Ms, float Mu, float beta, index_t nc) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  const float* GRPO_RESTRICT lc = cu.aux.data();
  // Weighting row w (teacher for the forward KL, student for the reverse), other row o.
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

/// Sweep 1 of chunk 0 of both rows of pair_pass1 (every later chunk's maxima are taken inside
/// the exp sweep of the chunk before it): the maxima mns (student), mnu (teacher).
template <class S, class U>
void pair_first_max(const row_src<S>& rs, const row_src<U>& ru, index_t V, float& mns,
                    float& mnu) noexcept {
  const vf vninf = v5::set1(-std::numeric_limits<float>::infinity());
  const index_t n = std::min(chunk, V), nf = n / 16 * 16;
  vf a0 = vninf, a1 = vninf, b0 = vninf, b1 = vninf;
  for (index_t i = 0; i < nf; i += 16) {
    rs.max_vec(i, a0);
    ru.max_vec(i, b0);
  }
  rs.max_tail(0, n, nf, a1);
  ru.max_tail(0, n, nf, b1);
  mns = v5::hmax(_mm512_max_ps(a0, a1));
  mnu = v5::hmax(_mm512_max_ps(b0, b1));
}

/// A chunk of pair_pass1 where one row has no mass (a masked vocabulary block): each row on its
/// own (sweep_one, or zeros and the NaN check), and the Loss-specific entries of the caches: the
/// reverse KL's a^s - a^u (0, or +inf where the teacher has no mass) and the chunk's KL sum (+inf
/// where the weighting row has mass and the other none, else 0).
template <int Loss>
void pair_chunk_split(const float* GRPO_RESTRICT xs, const float* GRPO_RESTRICT xu,
                      float* GRPO_RESTRICT es, float* GRPO_RESTRICT eu, index_t n, float mcs,
                      float mcu, float beta, bool has_s, bool has_u, float& ps, float& pu,
                      float& lc, bool& nan_s, bool& nan_u) noexcept {
  constexpr float pinf = std::numeric_limits<float>::infinity();
  const index_t np = (n + lanes - 1) / lanes * lanes;
  if (has_s) {
    sweep_one(xs, es, n, mcs, beta, ps, nan_s);
  } else {
    for (index_t j = 0; j < n; ++j) nan_s = nan_s || (xs[j] != xs[j]);
    for (index_t j = 0; j < np; ++j) es[j] = 0.0f;
    ps = 0.0f;
  }
  if (has_u) {
    sweep_one(xu, eu, n, mcu, beta, pu, nan_u);
  } else {
    for (index_t j = 0; j < n; ++j) nan_u = nan_u || (xu[j] != xu[j]);
    for (index_t j = 0; j < np; ++j) eu[j] = 0.0f;
    pu = 0.0f;
  }
  // Reverse KL (a^s - a^u in the teacher's cache, see pair_pass1's step): a^u = -inf on the
  // whole chunk without teacher mass; where the student has none its q = 0 masks the value.
  if constexpr (Loss == 2)
    for (index_t j = 0; j < np; ++j) eu[j] = has_u ? 0.0f : pinf;
  // Mass of the weighting row where the other has none: w log(w / 0) = +inf; none: 0.
  if constexpr (Loss == 1) lc = has_u && !has_s ? pinf : 0.0f;
  if constexpr (Loss == 2) lc = has_s && !has_u ? pinf : 0.0f;
}

/// Pass 1 of a dense row pair: the student row s and the teacher row u go through one sweep per
/// chunk (both maxima of the next chunk fused into this chunk's exp sweep, both rows' exps, one
/// software prefetch per row and 16 elements GRPO_DISTILL_PREFETCH_CHUNKS (4) chunks ahead,
/// then into the next row pair's head `next`), filling both caches as avx::row_lse_store does.
/// Loss = 1 (the forward KL): the per-chunk sums L_c = sum_j e^u_j (a^u_j - a^s_j),
/// a = beta (x - m_c), are accumulated on the way, and the row value
/// KL(p || q) = sum_c scale^u_c [L_c + (off^u_c - off^s_c) S^u_c] (off_c = beta (m_c - M) - log s,
/// S_c = sum of the chunk's e) is returned in *kl, so the gradient pass needs no logits.
/// Loss = 2 (the reverse KL): the same with the roles swapped (L_c = sum_j e^s_j (a^s_j - a^u_j),
/// weights scale^s_c). Per 16 elements and row: 1 load + max (next chunk), sub, mul, max (clamp),
/// 8 (exp_fast), store, cmp, 2 masked adds (sum, count); the loss adds sub, cmp, fma.
template <int Loss, class S, class U>
void pair_pass1(const S* s, index_t ss, const U* u, index_t us, index_t V, float beta,
                row_exp_cache<float>& cs, row_exp_cache<float>& cu, const void* next,
                index_t next_bytes, basic_online_lse<float>& ls, basic_online_lse<float>& lu,
                bool& bad_s, bool& bad_u, double* kl) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  constexpr float pinf = std::numeric_limits<float>::infinity();
  constexpr index_t D = GRPO_DISTILL_PREFETCH_CHUNKS * chunk;
  const index_t nc = (V + chunk - 1) / chunk;
  const row_src<S> rs(s, ss, V, cs);
  const row_src<U> ru(u, us, V, cu);
  const vf vb = v5::set1(beta), vninf = v5::set1(ninf), zero = _mm512_setzero_ps();
  float Ms = ninf, Mu = ninf;
  bool nan_s = false, nan_u = false;
  float* GRPO_RESTRICT lc = cu.aux.data();
  float mns, mnu;  // the next chunk's maxima
  pair_first_max(rs, ru, V, mns, mnu);
  for (index_t c = 0; c < nc; ++c) {
    const index_t j0 = c * chunk, n = std::min(chunk, V - j0), nf = n / 16 * 16;
    const index_t j1 = j0 + chunk, n1 = c + 1 < nc ? std::min(chunk, V - j1) : 0;
    const index_t nf1 = n1 / 16 * 16;  // <= nf: only the last chunk is shorter
    const float mcs = mns, mcu = mnu;
    cs.m[static_cast<std::size_t>(c)] = mcs;
    cu.m[static_cast<std::size_t>(c)] = mcu;
    const float* GRPO_RESTRICT xs = rs.x + j0;
    const float* GRPO_RESTRICT xu = ru.x + j0;
    float* GRPO_RESTRICT es = cs.e.data() + j0;
    float* GRPO_RESTRICT eu = cu.e.data() + j0;
    vf na0 = vninf, na1 = vninf, nb0 = vninf, nb1 = vninf;
    const bool has_s = mcs > ninf, has_u = mcu > ninf;
    if (!(has_s && has_u)) {
      pair_chunk_split<Loss>(xs, xu, es, eu, n, mcs, mcu, beta, has_s, has_u,
                             cs.part[static_cast<std::size_t>(c)],
                             cu.part[static_cast<std::size_t>(c)], lc[c], nan_s, nan_u);
      for (index_t i = 0; i < nf1; i += 16) {
        rs.max_vec(j1 + i, na0);
        ru.max_vec(j1 + i, nb0);
      }
    } else {
      const vf vms = v5::set1(mcs), vmu = v5::set1(mcu);
      vf accs = zero, accu = zero, lacc = zero;
      // entries below the chunk maxima, counted in vector lanes (a scalar kmov + popcnt + add
      // chain per vector and row measured ~20 % of this loop's samples)
      vf cnts = zero, cntu = zero;
      const vf one = v5::set1(1.0f);
      auto step = [&](index_t i, vf x, vf y) {
        const vf as = _mm512_mul_ps(vb, _mm512_sub_ps(x, vms));
        const vf au = _mm512_mul_ps(vb, _mm512_sub_ps(y, vmu));
        const vf ex = exp_clamped(as), ey = exp_clamped(au);
        _mm512_storeu_ps(es + i, ex);
        // Reverse KL: its gradient needs the teacher only through a^s - a^u (never p), so the
        // teacher's cache keeps that difference and the gradient sweep reads no logit.
        _mm512_storeu_ps(eu + i, Loss == 2 ? _mm512_sub_ps(as, au) : ey);
        const __mmask16 lts = _mm512_cmp_ps_mask(x, vms, _CMP_LT_OQ);
        const __mmask16 ltu = _mm512_cmp_ps_mask(y, vmu, _CMP_LT_OQ);
        accs = _mm512_mask_add_ps(accs, lts, accs, ex);
        accu = _mm512_mask_add_ps(accu, ltu, accu, ey);
        cnts = _mm512_mask_add_ps(cnts, lts, cnts, one);
        cntu = _mm512_mask_add_ps(cntu, ltu, cntu, one);
        if constexpr (Loss == 1) {
          // e^u (a^u - a^s), 0 where e^u = 0 (also for a^u = a^s = -inf).
          const __mmask16 kp = _mm512_cmp_ps_mask(ey, zero, _CMP_GT_OQ);
          lacc = _mm512_mask3_fmadd_ps(ey, _mm512_sub_ps(au, as), lacc, kp);
        } else if constexpr (Loss == 2) {
          // e^s (a^s - a^u), 0 where e^s = 0.
          const __mmask16 kq = _mm512_cmp_ps_mask(ex, zero, _CMP_GT_OQ);
          lacc = _mm512_mask3_fmadd_ps(ex, _mm512_sub_ps(as, au), lacc, kq);
        }
      };
      index_t i = 0;
      for (; i < nf; i += 16) {
        const index_t ja = j0 + D + i;
        if (ja < V) {
          rs.prefetch(ja, V);
          ru.prefetch(ja, V);
        } else if (next != nullptr && ja - V < D) {
          prefetch_range(next, (ja - V) * next_bytes, 16 * next_bytes);
        }
        if (i < nf1) {
          rs.max_vec(j1 + i, na0);
          ru.max_vec(j1 + i, nb0);
        }
        step(i, _mm512_loadu_ps(xs + i), _mm512_loadu_ps(xu + i));
      }
      index_t np = nf;
      if (nf < n) {  // padding lanes are -inf: e = 0, counted below the maximum
        const __mmask16 k = head_mask(n - nf);
        step(nf, _mm512_mask_loadu_ps(vninf, k, xs + nf), _mm512_mask_loadu_ps(vninf, k, xu + nf));
        np += 16;
      }
      // e_c = (#ties - 1) + sum_{x < m_c} e: online_lse's encoding of the chunk partial. A NaN
      // compares false with m_c and shows up as an extra tie: chunks with several entries at
      // their maximum (rare) are checked element by element; +inf is the maximum itself.
      const float ties_s = static_cast<float>(np) - v5::hsum(cnts);  // exact (< 2^24)
      const float ties_u = static_cast<float>(np) - v5::hsum(cntu);
      float& ps = cs.part[static_cast<std::size_t>(c)];
      float& pu = cu.part[static_cast<std::size_t>(c)];
      ps = (ties_s - 1.0f) + v5::hsum(accs);
      pu = (ties_u - 1.0f) + v5::hsum(accu);
      if (ties_s != 1.0f || !(mcs < pinf))
        for (index_t j = 0; j < n; ++j) nan_s = nan_s || !(xs[j] < pinf);
      if (ties_u != 1.0f || !(mcu < pinf))
        for (index_t j = 0; j < n; ++j) nan_u = nan_u || !(xu[j] < pinf);
      nan_s = nan_s || !(ps == ps);
      nan_u = nan_u || !(pu == pu);
      if constexpr (Loss != 0) lc[c] = v5::hsum(lacc);
    }
    if (has_s) Ms = mcs > Ms ? mcs : Ms;
    if (has_u) Mu = mcu > Mu ? mcu : Mu;
    if (n1 > 0) {
      rs.max_tail(j1, n1, nf1, na1);
      ru.max_tail(j1, n1, nf1, nb1);
      mns = v5::hmax(_mm512_max_ps(na0, na1));
      mnu = v5::hmax(_mm512_max_ps(nb0, nb1));
    }
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

}  // namespace avx512
}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::distill::detail
GRPO_END_TARGET

#endif  // GRPO_SIMD_HAS_AVX512_PACKET

// SPDX-License-Identifier: Apache-2.0
/// @file engine.hpp
/// @brief Internal machinery of grpo::distill: chunked vocabulary passes over strided rows, the
///        per-chunk online log-sum-exp partials merged into grpo::online_lse, the aggregation plan,
///        the row driver over grpo::par::for_each_row, and the fused dense-divergence row kernel.
///
/// Execution model (CPU variant B of the kernels note, one row per thread): a row of V logits is
/// processed in chunks of `chunk` elements that are first widened into a small stack buffer of the
/// accumulation type (this also turns any vocabulary stride and any storage type into one
/// contiguous float loop the compiler vectorises), then reduced lane-wise (`lanes` independent
/// accumulators, so the vectorised order is fixed and reproducible). Pass 1 computes both rows'
/// (max, sum) states; pass 2 the loss (and for losses whose G = sum_i dL/dlq_i is not known in
/// advance, G); the last pass writes the gradient. A row of 152k bf16 logits (297 KiB) stays in L2
/// between passes, so DRAM sees about one read of each input and one write of the gradient.
/// No tokens x vocabulary temporary is ever allocated.
#pragma once

#include <distill/options.hpp>
#include <grpo/aggregate.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/half.hpp>
#include <grpo/core/math.hpp>
#include <grpo/core/parallel.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/core/vmath512.hpp>
#include <grpo/ops/distill.hpp>
#include <grpo/ops/softmax.hpp>

#include <algorithm>
#include <array>
#include <cmath>  // std::isfinite (reduce_loss)
#include <cstdint>
#include <limits>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

namespace grpo::distill::detail {

/// Elements per vocabulary chunk (2 KiB of float per buffer: several buffers stay in L1).
inline constexpr index_t chunk = 512;
/// Independent accumulators per reduction (a multiple of every SIMD width up to AVX-512 floats).
inline constexpr index_t lanes = 16;

/// Software prefetch of bytes [off, off + len) of a row (a hint; compiles to nothing where the
/// builtin is unavailable).
template <int RW = 0>
GRPO_FORCEINLINE void prefetch_range(const void* base, index_t off, index_t len) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  if (base == nullptr) return;
  const char* p = static_cast<const char*>(base) + off;
  for (index_t b = 0; b < len; b += 64) __builtin_prefetch(p + b, RW, 3);
#else
  (void)base;
  (void)off;
  (void)len;
#endif
}

/// Accumulation type of a storage type: double for double inputs (references, finite differences),
/// float for float, bfloat16 and float16.
template <class T>
using acc_t = std::conditional_t<std::is_same_v<std::remove_cv_t<T>, double>, double, float>;

template <class A>
inline constexpr A neg_inf = -std::numeric_limits<A>::infinity();

/// Row status codes returned by the row kernels (0 = fine); the row driver throws the matching
/// grpo::error from the row (throw_row_error), grpo::par::for_each_row carries it out of the loop.
enum row_status : int {
  row_ok = 0,
  student_not_finite,      ///< NaN or +inf student logit
  student_empty,           ///< every student logit is -inf
  teacher_not_finite,      ///< NaN or +inf teacher logit / log-probability
  teacher_empty,           ///< every teacher entry is -inf
  id_out_of_range,         ///< top-k id >= V, or label outside [0, V)
  id_duplicate,            ///< the same id twice in one top-k row
  teacher_mass_above_one,  ///< top-k probabilities sum to more than 1 (tail bucket)
};

/// Widen n elements at p (stride st, elements) into buf and pad to a multiple of `lanes` with -inf
/// (an entry with no mass: neutral in every pass). Returns the padded length.
template <class A, class T>
GRPO_FORCEINLINE index_t load_chunk(const T* GRPO_RESTRICT p, index_t st, index_t n,
                                    A* GRPO_RESTRICT buf) noexcept {
  if (st == 1) {
    for (index_t i = 0; i < n; ++i) buf[i] = static_cast<A>(widen(p[i]));
  } else {
    for (index_t i = 0; i < n; ++i) buf[i] = static_cast<A>(widen(p[i * st]));
  }
  const index_t np = (n + lanes - 1) / lanes * lanes;
  for (index_t i = n; i < np; ++i) buf[i] = neg_inf<A>;
  return np;
}

/// Narrow n gradient values into the caller's buffer (stride st).
template <class G, class A>
GRPO_FORCEINLINE void store_chunk(G* GRPO_RESTRICT g, index_t st, index_t n,
                                  const A* GRPO_RESTRICT buf) noexcept {
  if (st == 1) {
    for (index_t i = 0; i < n; ++i) g[i] = narrow<G>(buf[i]);
  } else {
    for (index_t i = 0; i < n; ++i) g[i * st] = narrow<G>(buf[i]);
  }
}

/// True when a chunk holds a NaN or +inf (-inf is a legal masked entry).
template <class A>
GRPO_FORCEINLINE bool has_nan_or_posinf(const A* x, index_t np) noexcept {
  int bad = 0;
  for (index_t i = 0; i < np; ++i)
    bad |= static_cast<int>(!(x[i] <= std::numeric_limits<A>::max()) & !(x[i] == neg_inf<A>));
  return bad != 0;
}

template <class A>
GRPO_FORCEINLINE A lane_sum(const A (&acc)[lanes]) noexcept {
  A s = A(0);
  for (index_t k = 0; k < lanes; ++k) s += acc[k];
  return s;
}

/// Maximum of a padded chunk (NaN never wins: NaN rows are rejected separately). Four independent
/// lane blocks, so the max chain is not latency-bound (one vmaxps per 16 elements would be).
template <class A>
GRPO_FORCEINLINE A chunk_max(const A* GRPO_RESTRICT x, index_t np) noexcept {
  A mx[4 * lanes];
  for (index_t k = 0; k < 4 * lanes; ++k) mx[k] = neg_inf<A>;
  index_t i = 0;
  for (; i + 4 * lanes <= np; i += 4 * lanes)
    for (index_t k = 0; k < 4 * lanes; ++k) mx[k] = x[i + k] > mx[k] ? x[i + k] : mx[k];
  for (; i < np; i += lanes)
    for (index_t k = 0; k < lanes; ++k) mx[k] = x[i + k] > mx[k] ? x[i + k] : mx[k];
  A m = neg_inf<A>;
  for (index_t k = 0; k < 4 * lanes; ++k) m = mx[k] > m ? mx[k] : m;
  return m;
}

/// Exponentials kept from pass 1: e_j = exp(beta (x_j - m_c)) relative to the maximum m_c of
/// chunk c, and per chunk the factor scale_c = exp(beta (m_c - m) - log s) that turns them into
/// probabilities, q_j = e_j scale_c. Later passes then need no exponential for q (or p): the
/// vocabulary loops are compute-bound on this kind of CPU (a polynomial exp per element and pass
/// costs more than streaming the element from L2). Per thread: one float per vocabulary entry
/// (rounded up to whole chunks) and one per chunk, reused across rows: O(threads x vocab) memory,
/// never tokens x vocab.
template <class A>
struct row_exp_cache {
  std::vector<A> e;      ///< [ceil(V / chunk) * chunk]; 0 on padding
  std::vector<A> m;      ///< per-chunk maximum (raw units)
  std::vector<A> scale;  ///< per-chunk factor (0 for a chunk without mass)
  std::vector<A> part;   ///< per-chunk online_lse partial e_c (AVX-512 pass 1)
  std::vector<A> aux;    ///< per-chunk forward-KL partial sums (AVX-512 fused pass 1)
  std::vector<A> x;      ///< the row widened to contiguous A when it is not (AVX-512 pass 1)
  /// The contiguous A row pass 1 read (the caller's row or `x`), for the later passes; set by the
  /// AVX-512 pass 1 only.
  const A* row = nullptr;
  void reserve(index_t V) {
    const index_t nc = (V + chunk - 1) / chunk;
    if (static_cast<index_t>(e.size()) < nc * chunk) {
      e.resize(static_cast<std::size_t>(nc * chunk));
#if GRPO_HAS_AVX512
      x.resize(static_cast<std::size_t>(nc * chunk));
#endif
    }
    if (static_cast<index_t>(m.size()) < nc) {
      m.resize(static_cast<std::size_t>(nc));
      scale.resize(static_cast<std::size_t>(nc));
      part.resize(static_cast<std::size_t>(nc));
      aux.resize(static_cast<std::size_t>(nc));
    }
  }
};

#if GRPO_HAS_AVX512
// -----------------------------------------------------------------------------------------------
// AVX-512 pass 1 (vmath512.hpp): the same cache format as the portable pass below, written with
// 16-float registers. Per chunk: sweep 1 takes the chunk maximum (one vmaxps per 16 elements,
// the only sweep that reads the row from memory); sweep 2 re-reads the chunk from L1 and stores
// e_j = exp(beta (x_j - m_c)), accumulating sum_{x < m_c} e_j and the count of x < m_c (the ties
// give the exact unit of online_lse's encoding). Per 16 elements: sweep 1 one op, sweep 2 sub,
// mul, max (clamp), 12 for the exp, store, cmp, two masked adds: 19 vector ops. Chunks are
// combined once per row with vectorised exps over the chunk maxima (no scalar exp per chunk).
namespace avx {

namespace v5 = ::grpo::math::v512;
using vf = __m512;

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
  {
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
      // A chunk without mass in one row (a masked vocabulary block): each row on its own.
      const index_t np = (n + lanes - 1) / lanes * lanes;
      if (has_s) {
        sweep_one(xs, es, n, mcs, beta, cs.part[static_cast<std::size_t>(c)], nan_s);
      } else {
        for (index_t j = 0; j < n; ++j) nan_s = nan_s || (xs[j] != xs[j]);
        for (index_t j = 0; j < np; ++j) es[j] = 0.0f;
        cs.part[static_cast<std::size_t>(c)] = 0.0f;
      }
      if (has_u) {
        sweep_one(xu, eu, n, mcu, beta, cu.part[static_cast<std::size_t>(c)], nan_u);
      } else {
        for (index_t j = 0; j < n; ++j) nan_u = nan_u || (xu[j] != xu[j]);
        for (index_t j = 0; j < np; ++j) eu[j] = 0.0f;
        cu.part[static_cast<std::size_t>(c)] = 0.0f;
      }
      // Reverse KL (a^s - a^u in the teacher's cache, see step below): a^u = -inf on the whole
      // chunk without teacher mass; where the student has none its q = 0 masks the value.
      if constexpr (Loss == 2)
        for (index_t j = 0; j < np; ++j) eu[j] = has_u ? 0.0f : pinf;
      // Teacher mass where the student has none: p log(p / 0) = +inf; no teacher mass: 0.
      // Mass of the weighting row where the other has none: w log(w / 0) = +inf; none: 0.
      if constexpr (Loss == 1) lc[c] = has_u && !has_s ? pinf : 0.0f;
      if constexpr (Loss == 2) lc[c] = has_s && !has_u ? pinf : 0.0f;
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
    *kl = total;
  }
}

}  // namespace avx
#endif  // GRPO_HAS_AVX512

/// Pass 1 over one row: the online state of beta * x (the partial of each chunk computed from the
/// exponentials it stores in `cache`), the per-chunk probability factors, and a NaN/+inf flag.
/// With AVX-512 and float accumulation the row (widened to a contiguous float copy in cache.x
/// when it is 16-bit or strided) goes through avx::row_lse_store, and cache.row points at it.
template <class A, class T>
basic_online_lse<A> row_lse_store(const T* p, index_t st, index_t V, A beta, A* buf,
                                  row_exp_cache<A>& cache, bool& bad) noexcept {
#if GRPO_HAS_AVX512
  if constexpr (std::is_same_v<A, float>) {
    (void)buf;
    return avx::row_lse_store(p, st, V, beta, cache, bad);
  } else
#endif
  {
    basic_online_lse<A> s(beta);
    for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
      const index_t n = std::min(chunk, V - j0);
      const index_t np = load_chunk(p + j0 * st, st, n, buf);
      bad = bad || has_nan_or_posinf(buf, np);
      const A m = chunk_max(buf, np);
      cache.m[static_cast<std::size_t>(c)] = m;
      A* e = cache.e.data() + j0;
      if (!(m > neg_inf<A>)) {
        for (index_t i = 0; i < np; ++i) e[i] = A(0);
        continue;
      }
      // e = exp(beta (x - m_c)) stored (exactly 1 at the chunk maximum, 0 for -inf and padding);
      // the online_lse partial counts ties separately so its dominant-logit precision is kept.
      A acc[lanes] = {}, ties[lanes] = {};
      for (index_t i = 0; i < np; ++i) e[i] = ops::distill_exp(beta * (buf[i] - m));
      for (index_t i = 0; i < np; i += lanes)
        for (index_t k = 0; k < lanes; ++k) acc[k] += ops::select(buf[i + k] < m, e[i + k], A(0));
      for (index_t i = 0; i < np; i += lanes)
        for (index_t k = 0; k < lanes; ++k) ties[k] += ops::select(buf[i + k] == m, A(1), A(0));
      s.merge(
          basic_online_lse<A>::from_partial(beta, m, lane_sum(ties) - A(1) + lane_sum(acc), A(0)));
    }
    if (!s.empty()) {
      const A log_s = s.log_sum();
      for (index_t c = 0; c * chunk < V; ++c) {
        const A mc = cache.m[static_cast<std::size_t>(c)];
        cache.scale[static_cast<std::size_t>(c)] =
            mc > neg_inf<A> ? ops::distill_exp(beta * (mc - s.m) - log_s) : A(0);
      }
    }
    return s;
  }
}

/// The per-thread caches of the student and teacher rows.
template <class A>
struct thread_caches {
  row_exp_cache<A> student, teacher;
};
template <class A>
thread_caches<A>& local_caches() {
  static thread_local thread_caches<A> c;
  return c;
}

// -----------------------------------------------------------------------------------------------
// Views: every front end normalises its inputs to rank 3 [B, L, V] (rank 2 [N, V] -> [1, N, V]).

template <class T>
strided_view<T, 3> as_rank3(const strided_view<T, 3>& v) noexcept {
  return v;
}
template <class T>
strided_view<T, 3> as_rank3(const strided_view<T, 2>& v) noexcept {
  return strided_view<T, 3>(v.data_handle(), {1, v.extent(0), v.extent(1)},
                            {0, v.stride(0), v.stride(1)}, v.space());
}
template <class T>
strided_view<T, 2> as_rank2_tokens(const strided_view<T, 2>& v) noexcept {
  return v;
}
template <class T>
strided_view<T, 2> as_rank2_tokens(const strided_view<T, 1>& v) noexcept {
  return strided_view<T, 2>(v.data_handle(), {1, v.extent(0)}, {0, v.stride(0)}, v.space());
}

/// Accepted gradient storage types.
template <class G>
inline constexpr bool is_grad_type_v = std::is_same_v<G, float> || std::is_same_v<G, double> ||
                                       std::is_same_v<G, bfloat16> || std::is_same_v<G, float16>;

/// Accepted logit storage types.
template <class T>
inline constexpr bool is_logit_type_v = is_grad_type_v<std::remove_cv_t<T>>;

// -----------------------------------------------------------------------------------------------
// Aggregation plan.

/// Per-token coefficient c_bt of d(aggregated loss)/d l_bt (weights and the aggregation row factor
/// of grpo::aggregation_row_scales included, 0 for masked tokens) and the active flags, computed
/// once from mask and weights before the vocabulary passes, so that the gradient can be written
/// inside the same row kernel as the loss.
struct token_plan {
  index_t B = 0, L = 0;
  std::vector<double> coef;           ///< [B * L]
  std::vector<unsigned char> active;  ///< [B * L]
  index_t active_tokens = 0, active_sequences = 0;
};

/// @pre extents of args' views (when non-empty) are [B, L]; extra_active(b, t) is the loss's own
/// mask (ignore_index of SFT labels), AND-ed with args.mask and args.labels != args.ignore_index.
template <class Extra>
token_plan make_plan(index_t B, index_t L, const token_args& args, const agg_options& agg,
                     Extra&& extra_active) {
  if (args.mask.data_handle() != nullptr) {
    expect_extents(args.mask, {B, L}, "mask");
    expect_host(args.mask, "mask");
  }
  if (args.weights.data_handle() != nullptr) {
    expect_extents(args.weights, {B, L}, "weights");
    expect_host(args.weights, "weights");
  }
  if (args.per_token_loss.data_handle() != nullptr) {
    expect_extents(args.per_token_loss, {B, L}, "per_token_loss");
    expect_host(args.per_token_loss, "per_token_loss");
  }
  const bool has_labels = args.labels.data_handle() != nullptr;
  if (has_labels) {
    expect_extents(args.labels, {B, L}, "labels");
    expect_host(args.labels, "labels");
  }
  token_plan P;
  P.B = B;
  P.L = L;
  P.coef.assign(static_cast<std::size_t>(B * L), 0.0);
  P.active.assign(static_cast<std::size_t>(B * L), 0);
  std::vector<double> per_seq(static_cast<std::size_t>(B), 0.0);
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < L; ++t) {
      bool on = args.mask.data_handle() == nullptr || args.mask(b, t) != 0;
      on = on && (!has_labels || args.labels(b, t) != args.ignore_index);
      on = on && extra_active(b, t);
      if (!on) continue;
      P.active[static_cast<std::size_t>(b * L + t)] = 1;
      per_seq[static_cast<std::size_t>(b)] += 1.0;
      ++P.active_tokens;
    }
  for (index_t b = 0; b < B; ++b) P.active_sequences += per_seq[static_cast<std::size_t>(b)] > 0;
  // The same final mask gives numerator and denominators (design.md section 4).
  const std::vector<double> row_scale = aggregation_row_scales(per_seq, L, agg);
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < L; ++t) {
      const std::size_t k = static_cast<std::size_t>(b * L + t);
      if (!P.active[k]) continue;
      double w = 1.0;
      if (args.weights.data_handle() != nullptr) {
        w = static_cast<double>(args.weights(b, t));
        GRPO_EXPECTS(math::is_finite(w), bad_value,
                     "weights: non-finite weight at token (" + std::to_string(b) + ", " +
                         std::to_string(t) + ")");
      }
      P.coef[k] = w * row_scale[static_cast<std::size_t>(b)];
    }
  return P;
}

// -----------------------------------------------------------------------------------------------
// Row errors: the row kernels return a row_status (they are noexcept and vectorised); the row
// driver turns a non-zero status into the grpo::error below, thrown from the row, and
// grpo::par::for_each_row rethrows the one of the lowest failing row (one error channel).

/// Throws the grpo::error of a failed row (token (b, t) = row / L, row % L).
inline void throw_row_error(std::pair<index_t, int> bad, index_t L, const char* student,
                            const char* teacher) {
  if (bad.first < 0) return;
  const std::string where =
      " at token (" + std::to_string(bad.first / L) + ", " + std::to_string(bad.first % L) + ")";
  switch (bad.second) {
    case student_not_finite:
      GRPO_THROW(bad_value, std::string(student) + ": NaN or +inf logit" + where);
    case student_empty:
      GRPO_THROW(bad_value, std::string(student) + ": every logit is -inf" + where);
    case teacher_not_finite:
      GRPO_THROW(bad_value, std::string(teacher) + ": NaN or +inf value" + where);
    case teacher_empty:
      GRPO_THROW(bad_value,
                 std::string(teacher) + ": no finite entry (no probability mass)" + where);
    case id_out_of_range:
      GRPO_THROW(out_of_range, std::string(teacher) + ": id outside [0, vocab)" + where);
    case id_duplicate:
      GRPO_THROW(bad_value, std::string(teacher) + ": the same id appears twice" + where);
    case teacher_mass_above_one:
      GRPO_THROW(bad_value, std::string(teacher) + ": probabilities sum to more than 1" + where);
    default:
      GRPO_THROW(bad_value, "distill: row failed" + where);
  }
}

/// Sum of c_bt * l_bt in row order (deterministic whatever the thread count) and the per-token
/// output.
inline double reduce_loss(const token_plan& P, const std::vector<double>& row_loss,
                          const token_args& args) {
  double total = 0.0;
  for (index_t b = 0; b < P.B; ++b)
    for (index_t t = 0; t < P.L; ++t) {
      const std::size_t k = static_cast<std::size_t>(b * P.L + t);
      if (P.active[k] && P.coef[k] != 0.0) total += P.coef[k] * row_loss[k];
      if (args.per_token_loss.data_handle() != nullptr)
        args.per_token_loss(b, t) = P.active[k] ? static_cast<float>(row_loss[k]) : 0.0f;
    }
  // Finite logits can still give an unrepresentable divergence (a logit / T beyond DBL_MAX makes
  // a student log-probability -inf where the teacher has mass): a named error, not a silent inf.
  GRPO_EXPECTS(std::isfinite(total), bad_value,
               "distill: the loss is not finite for finite inputs (logits / temperature overflow "
               "double); rescale the logits or raise the temperature");
  return total;
}

// -----------------------------------------------------------------------------------------------
// Divergence element operators (thin adapters over grpo::ops, one per divergence kind).

/// Per-call constants: the mixture weight w and log w, log(1 - w) (w = beta for the JSD, alpha for
/// the skew KLs).
template <class A>
struct div_params {
  A w = A(0), log_w = A(0), log_1mw = A(0);
};

/// Value and d/dlq of one element term.
template <class A>
struct value_grad {
  A value, grad;
};

template <divergence K>
struct div_op;

template <>
struct div_op<divergence::forward_kl> {
  static constexpr bool unit_g = true;  // G = -sum p = -1: gradient q - p in the loss pass
  template <class A>
  GRPO_HOST_DEVICE static GRPO_FORCEINLINE value_grad<A> eval(A lp, A lq, A p, A,
                                                              const div_params<A>&) noexcept {
    return {ops::forward_kl(lp, lq, p), ops::forward_kl_grad(p)};
  }
  /// The loss term and the whole dl/dz'_j in one step (q - p without cancellation near 1).
  template <class A>
  GRPO_HOST_DEVICE static GRPO_FORCEINLINE value_grad<A> eval_dz(A lp, A lq, A p, A q,
                                                                 const div_params<A>&) noexcept {
    return {ops::forward_kl(lp, lq, p), ops::forward_kl_dz(lp, lq, p, q)};
  }
};
template <>
struct div_op<divergence::reverse_kl> {
  static constexpr bool unit_g = false;
  template <class A>
  GRPO_HOST_DEVICE static GRPO_FORCEINLINE value_grad<A> eval(A lp, A lq, A, A q,
                                                              const div_params<A>&) noexcept {
    return {ops::reverse_kl(lp, lq, q), ops::reverse_kl_grad(lp, lq, q)};
  }
};
template <>
struct div_op<divergence::jsd> {
  static constexpr bool unit_g = false;
  template <class A>
  GRPO_HOST_DEVICE static GRPO_FORCEINLINE value_grad<A> eval(A lp, A lq, A p, A q,
                                             const div_params<A>& P) noexcept {
    const A lm = ops::log_mixture(P.log_w, lp, P.log_1mw, lq);
    return {ops::jsd(lp, lq, p, q, lm, P.w), ops::jsd_grad(lq, q, lm, P.w)};
  }
};
template <>
struct div_op<divergence::skew_forward_kl> {
  static constexpr bool unit_g = false;
  template <class A>
  GRPO_HOST_DEVICE static GRPO_FORCEINLINE value_grad<A> eval(A lp, A lq, A p, A,
                                                              const div_params<A>& P) noexcept {
    const A lm = ops::log_mixture(P.log_w, lp, P.log_1mw, lq);
    return {ops::skew_forward_kl(lp, p, lm), ops::skew_forward_kl_grad(lq, p, lm, P.log_1mw)};
  }
};
template <>
struct div_op<divergence::skew_reverse_kl> {
  static constexpr bool unit_g = false;
  template <class A>
  GRPO_HOST_DEVICE static GRPO_FORCEINLINE value_grad<A> eval(A lp, A lq, A, A q,
                                                              const div_params<A>& P) noexcept {
    const A lm = ops::log_mixture(P.log_1mw, lp, P.log_w, lq);
    return {ops::skew_reverse_kl(lq, q, lm), ops::skew_reverse_kl_grad(lq, q, lm, P.log_w)};
  }
};

/// Calls f(std::integral_constant<divergence, K>{}) for the run-time kind k.
template <class F>
decltype(auto) dispatch(divergence k, F&& f) {
  switch (k) {
    case divergence::forward_kl:
      return f(std::integral_constant<divergence, divergence::forward_kl>{});
    case divergence::reverse_kl:
      return f(std::integral_constant<divergence, divergence::reverse_kl>{});
    case divergence::jsd:
      return f(std::integral_constant<divergence, divergence::jsd>{});
    case divergence::skew_forward_kl:
      return f(std::integral_constant<divergence, divergence::skew_forward_kl>{});
    case divergence::skew_reverse_kl:
      return f(std::integral_constant<divergence, divergence::skew_reverse_kl>{});
  }
  GRPO_THROW(bad_option, "distill_options.kind: unknown divergence");
}

/// The divergence actually computed and its constants after option validation: the JSD endpoints
/// of the kl_limits convention become the KLs.
struct resolved_divergence {
  divergence kind = divergence::forward_kl;
  double w = 0.0;
};

inline resolved_divergence resolve(const distill_options& o) {
  GRPO_EXPECTS(o.temperature > 0.0 && math::is_finite(o.temperature), bad_option,
               "distill_options.temperature must be finite and > 0");
  // 1/T a normal float: 1e-300 overflowed every logit / T, 1e300 flushed them to 0 (uniform).
  (void)grpo::detail::checked_inverse_temperature(o.temperature, "distill_options.temperature");
  GRPO_EXPECTS(math::is_finite(o.grad_output), bad_option,
               "distill_options.grad_output must be finite");
  resolved_divergence r{o.kind, 0.0};
  switch (o.kind) {
    case divergence::forward_kl:
    case divergence::reverse_kl:
      break;
    case divergence::jsd:
      GRPO_EXPECTS(o.beta >= 0.0 && o.beta <= 1.0, bad_option,
                   "distill_options.beta must lie in [0, 1]");
      GRPO_EXPECTS(o.endpoints == jsd_endpoints::kl_limits || o.endpoints == jsd_endpoints::formula,
                   bad_option, "distill_options.endpoints: unknown convention");
      r.w = o.beta;
      if (o.endpoints == jsd_endpoints::kl_limits && o.beta == 0.0) r.kind = divergence::forward_kl;
      if (o.endpoints == jsd_endpoints::kl_limits && o.beta == 1.0) r.kind = divergence::reverse_kl;
      break;
    case divergence::skew_forward_kl:
    case divergence::skew_reverse_kl:
      GRPO_EXPECTS(o.alpha >= 0.0 && o.alpha < 1.0, bad_option,
                   "distill_options.alpha must lie in [0, 1)");
      r.w = o.alpha;
      break;
    default:
      GRPO_THROW(bad_option, "distill_options.kind: unknown divergence");
  }
  return r;
}

template <class A>
div_params<A> make_div_params(double w) noexcept {
  div_params<A> P;
  P.w = static_cast<A>(w);
  P.log_w = w > 0.0 ? static_cast<A>(math::log(w)) : neg_inf<A>;
  P.log_1mw = w < 1.0 ? static_cast<A>(math::log1p(-w)) : neg_inf<A>;
  return P;
}

// -----------------------------------------------------------------------------------------------
// The fused dense row kernel.

/// Everything a dense row needs besides its pointers.
template <class A>
struct dense_row_args {
  index_t V = 0;
  A beta_s = A(1);  ///< student inverse temperature 1/T
  A beta_u = A(1);  ///< teacher inverse temperature (1/T for logits; 1 for stored log-probs)
  div_params<A> div{};
  A gscale = A(0);  ///< c_bt * grad_output * (T^2 or 1) * beta_s: d(total)/d l_bt times dz'/ds
  A vscale = A(1);  ///< T^2 or 1
  /// The next row's student / teacher data (contiguous vocabulary only, else null): prefetched
  /// during this row's last pass so that its pass 1 finds it in cache (DRAM overlaps compute).
  const void* next_s = nullptr;
  const void* next_u = nullptr;
  void* next_g = nullptr;  ///< the next gradient row (prefetched for writing)
  index_t next_s_bytes = 0, next_u_bytes = 0, next_g_bytes = 0;  ///< bytes per element
};

/// The row-level state of one distribution after pass 1: log q_j = beta (x_j - m) - log_s.
template <class A>
struct row_state {
  A m = A(0), log_s = A(0), beta = A(1);
};

/// A teacher chunk loader over a strided row of raw values (dense teacher).
template <class U>
struct strided_loader {
  const U* u;
  index_t us;
  template <class A>
  GRPO_FORCEINLINE index_t operator()(index_t j0, index_t n, A* buf) const noexcept {
    return load_chunk(u + j0 * us, us, n, buf);
  }
};

/// Where a pass gets the probabilities of a row: from a row_exp_cache filled by pass 1 (no
/// exponential), or, when null, as exp(log-probability).
template <class A>
struct prob_source {
  const row_exp_cache<A>* cache = nullptr;
};

/// q (or p) of one padded chunk c into out[0, np).
template <class A>
GRPO_FORCEINLINE void chunk_probs(const prob_source<A>& src, index_t j0, index_t c, index_t np,
                                  const A* GRPO_RESTRICT logp, A* GRPO_RESTRICT out) noexcept {
  if (src.cache != nullptr) {
    const A* e = src.cache->e.data() + j0;
    const A sc = src.cache->scale[static_cast<std::size_t>(c)];
    for (index_t i = 0; i < np; ++i) out[i] = e[i] * sc;
  } else {
    for (index_t i = 0; i < np; ++i) out[i] = ops::distill_exp(logp[i]);
  }
}

/// Probability of element i of chunk c from a source: e_i * scale_c from a cache (no exponential)
/// or exp(log-probability) when the source has no cache.
template <bool Cached, class A>
GRPO_FORCEINLINE A prob_of(const A* e, A scale, A logp) noexcept {
  if constexpr (Cached) {
    (void)logp;
    return *e * scale;
  } else {
    (void)e;
    (void)scale;
    return ops::distill_exp(logp);
  }
}

/// Core of every divergence row: pass 2 (loss and G, when G is not known in advance) and the
/// gradient pass, over a student row s (stride ss, length R.V) in state st and a teacher whose
/// chunks come from `tload(j0, n, buf)` (padded length returned) in state tt. QC / PC: whether the
/// student / teacher probabilities come from the row_exp_cache of pass 1 (qs.cache / ps.cache,
/// then non-null) instead of an exponential. Returns the row value (T^2 included) through
/// `value`; writes g_j = gscale (dl/dlq_j - q_j G) when g is non-null. g may alias s exactly (in
/// place): every chunk is read into a buffer before its gradient is written.
template <divergence K, bool QC, bool PC, class A, class S, class TL, class G>
void divergence_passes(const S* s, index_t ss, const row_state<A>& st, const TL& tload,
                       const row_state<A>& tt, const prob_source<A>& qs, const prob_source<A>& ps,
                       G* g, index_t gs, const dense_row_args<A>& R, double& value) noexcept {
  using op = div_op<K>;
  alignas(64) A xs[chunk];
  alignas(64) A xu[chunk];
  alignas(64) A gb[chunk];
  alignas(64) static constexpr A no_cache[lanes] = {};
  const index_t V = R.V;
  const A ms = st.m, logs = st.log_s, bs = st.beta;
  const A mu = tt.m, logu = tt.log_s, bu = tt.beta;
  const div_params<A> P = R.div;
  double total = 0.0;
  [[maybe_unused]] A big_g = A(-1);
  if constexpr (!op::unit_g) {
    // Pass 2: the loss and G = sum_i dl/dlq_i (both need the final lse of both rows).
    double gsum = 0.0;
    for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
      const index_t n = std::min(chunk, V - j0);
      const index_t np = load_chunk(s + j0 * ss, ss, n, xs);
      tload(j0, n, xu);
      const A* eq = QC ? qs.cache->e.data() + j0 : no_cache;
      const A* ep = PC ? ps.cache->e.data() + j0 : no_cache;
      const A cq = QC ? qs.cache->scale[static_cast<std::size_t>(c)] : A(0);
      const A cp = PC ? ps.cache->scale[static_cast<std::size_t>(c)] : A(0);
      A va[lanes] = {}, ga[lanes] = {};
      for (index_t i = 0; i < np; i += lanes)
        for (index_t k = 0; k < lanes; ++k) {
          const A lq = ops::log_softmax(xs[i + k], ms, logs, bs);
          const A lp = ops::log_softmax(xu[i + k], mu, logu, bu);
          const A q = prob_of<QC>(QC ? eq + i + k : eq, cq, lq);
          const A p = prob_of<PC>(PC ? ep + i + k : ep, cp, lp);
          const value_grad<A> vg = op::eval(lp, lq, p, q, P);
          va[k] += vg.value;
          ga[k] += vg.grad;
        }
      total += static_cast<double>(lane_sum(va));
      gsum += static_cast<double>(lane_sum(ga));
      // Three-pass losses prefetch the next row here (earlier), the fused ones in the last pass.
      prefetch_range(R.next_s, j0 * R.next_s_bytes, n * R.next_s_bytes);
      prefetch_range(R.next_u, j0 * R.next_u_bytes, n * R.next_u_bytes);
    }
    big_g = static_cast<A>(gsum);
    if (g == nullptr) {
      value = total * static_cast<double>(R.vscale);
      return;
    }
  }
  // Last pass: the gradient (and, for unit-G losses, the loss in the same pass).
  const A gscale = R.gscale;
  for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
    const index_t n = std::min(chunk, V - j0);
    const index_t np = load_chunk(s + j0 * ss, ss, n, xs);
    tload(j0, n, xu);
    const A* eq = QC ? qs.cache->e.data() + j0 : no_cache;
    const A* ep = PC ? ps.cache->e.data() + j0 : no_cache;
    const A cq = QC ? qs.cache->scale[static_cast<std::size_t>(c)] : A(0);
    const A cp = PC ? ps.cache->scale[static_cast<std::size_t>(c)] : A(0);
    if constexpr (op::unit_g) {
      A va[lanes] = {};
      for (index_t i = 0; i < np; i += lanes)
        for (index_t k = 0; k < lanes; ++k) {
          const A lq = ops::log_softmax(xs[i + k], ms, logs, bs);
          const A lp = ops::log_softmax(xu[i + k], mu, logu, bu);
          const A q = prob_of<QC>(QC ? eq + i + k : eq, cq, lq);
          const A p = prob_of<PC>(PC ? ep + i + k : ep, cp, lp);
          const value_grad<A> vg = op::eval_dz(lp, lq, p, q, P);
          va[k] += vg.value;
          gb[i + k] = gscale * vg.grad;
        }
      total += static_cast<double>(lane_sum(va));
    } else {
      for (index_t i = 0; i < np; ++i) {
        const A lq = ops::log_softmax(xs[i], ms, logs, bs);
        const A lp = ops::log_softmax(xu[i], mu, logu, bu);
        const A q = prob_of<QC>(QC ? eq + i : eq, cq, lq);
        const A p = prob_of<PC>(PC ? ep + i : ep, cp, lp);
        gb[i] = gscale * ops::softmax_chain(op::eval(lp, lq, p, q, P).grad, q, big_g);
      }
    }
    if (g != nullptr) store_chunk(g + j0 * gs, gs, n, gb);
    if constexpr (op::unit_g) {
      prefetch_range(R.next_s, j0 * R.next_s_bytes, n * R.next_s_bytes);
      prefetch_range(R.next_u, j0 * R.next_u_bytes, n * R.next_u_bytes);
    }
    prefetch_range<1>(R.next_g, j0 * R.next_g_bytes, n * R.next_g_bytes);
  }
  value = total * static_cast<double>(R.vscale);
}

#if GRPO_HAS_AVX512
namespace avx {

/// Per-row constants of the element operators as registers: both rows' log-softmax states
/// (log q = beta (x - m) - log s) and the mixture weights w, 1 - w.
struct vctx {
  vf ms, ls, mu, lu, beta, w, w1;
  vf dl;  ///< ls - lu: lp - lq = beta ((u - mu) - (x - ms)) + (ls - lu) (one temperature)
  GRPO_FORCEINLINE vf lq(vf x) const noexcept {  // ops::log_softmax
    return _mm512_fmsub_ps(beta, _mm512_sub_ps(x, ms), ls);
  }
  GRPO_FORCEINLINE vf lp(vf u) const noexcept {
    return _mm512_fmsub_ps(beta, _mm512_sub_ps(u, mu), lu);
  }
  /// lp - lq in 4 operations, each row's offset taken out before the two are subtracted (rows
  /// offset by +-1e4 keep their digits).
  GRPO_FORCEINLINE vf lp_minus_lq(vf x, vf u) const noexcept {
    return _mm512_fmadd_ps(beta, _mm512_sub_ps(_mm512_sub_ps(u, mu), _mm512_sub_ps(x, ms)), dl);
  }
};

/// Vector twins of div_op<K> (the same formulas as grpo::ops, with the same 0 log 0 = 0
/// selects written as zero-masking): from the raw logits x (student), u (teacher) and the
/// cached probabilities q, p of one vector, the loss term `val` and g = dl/dlq (for the forward
/// KL the whole dl/dz' = q - p, ops::forward_kl_dz). The mixture log lM = log(M) comes from
/// v512::log of M = w_p p + w_q q formed from the cached probabilities: log(0) = -inf only where
/// p = q = 0, and those lanes are masked out (no 0 * inf: the Liger JSD NaN). Careful: the chunk
/// holds a probability >= 1/64 (see forward KL).
template <divergence K>
struct vdiv;

template <>
struct vdiv<divergence::forward_kl> {
  static constexpr bool unit_g = true;
  template <bool Careful>
  static GRPO_FORCEINLINE void eval(const vctx& C, vf x, vf u, vf p, vf q, vf& val,
                                    vf& g) noexcept {
    const vf zero = _mm512_setzero_ps();
    const vf t = C.lp_minus_lq(x, u);
    const __mmask16 kp = _mm512_cmp_ps_mask(p, zero, _CMP_GT_OQ);
    val = _mm512_maskz_mul_ps(kp, p, t);  // ops::forward_kl
    g = _mm512_sub_ps(q, p);
    if constexpr (Careful) {
      // ops::forward_kl_dz: p expm1(lq - lp) (5-term series) where |lq - lp| < 1/64: there q - p
      // cancels when both approach 1. Where the chunk's probabilities are all below 1/64 (its
      // scale factors, the probabilities at its maxima, say so) q - p is as accurate as the
      // series, whose lq - lp then carries |log q| ulps of its own.
      const vf d = _mm512_sub_ps(zero, t);
      vf c = _mm512_fmadd_ps(d, v5::set1(1.0f / 120.0f), v5::set1(1.0f / 24.0f));
      c = _mm512_fmadd_ps(d, c, v5::set1(1.0f / 6.0f));
      c = _mm512_fmadd_ps(d, c, v5::set1(0.5f));
      c = _mm512_fmadd_ps(d, c, v5::set1(1.0f));
      const __mmask16 near = _mm512_cmp_ps_mask(_mm512_abs_ps(d), v5::set1(0.015625f), _CMP_LT_OQ);
      g = _mm512_mask_mul_ps(g, near, p, _mm512_mul_ps(d, c));
    }
  }
};
template <>
struct vdiv<divergence::reverse_kl> {
  static constexpr bool unit_g = false;
  template <bool>
  static GRPO_FORCEINLINE void eval(const vctx& C, vf x, vf u, vf, vf q, vf& val, vf& g) noexcept {
    const __mmask16 kq = _mm512_cmp_ps_mask(q, _mm512_setzero_ps(), _CMP_GT_OQ);
    const vf t = _mm512_sub_ps(_mm512_setzero_ps(), C.lp_minus_lq(x, u));  // lq - lp
    val = _mm512_maskz_mul_ps(kq, q, t);                                   // ops::reverse_kl
    g = _mm512_maskz_mul_ps(kq, q, _mm512_add_ps(t, v5::set1(1.0f)));      // ops::reverse_kl_grad
  }
};
template <>
struct vdiv<divergence::jsd> {
  static constexpr bool unit_g = false;
  template <bool>
  static GRPO_FORCEINLINE void eval(const vctx& C, vf x, vf u, vf p, vf q, vf& val,
                                    vf& g) noexcept {
    const vf zero = _mm512_setzero_ps();
    const vf bp = _mm512_mul_ps(C.w, p), bq = _mm512_mul_ps(C.w1, q);
    const vf lm = v5::log(_mm512_add_ps(bp, bq));
    const __mmask16 kp = _mm512_cmp_ps_mask(bp, zero, _CMP_GT_OQ);
    const __mmask16 kq = _mm512_cmp_ps_mask(bq, zero, _CMP_GT_OQ);
    g = _mm512_maskz_mul_ps(kq, bq, _mm512_sub_ps(C.lq(x), lm));  // ops::jsd_grad
    val = _mm512_add_ps(_mm512_maskz_mul_ps(kp, bp, _mm512_sub_ps(C.lp(u), lm)), g);  // ops::jsd
  }
};
template <>
struct vdiv<divergence::skew_forward_kl> {
  static constexpr bool unit_g = false;
  template <bool>
  static GRPO_FORCEINLINE void eval(const vctx& C, vf, vf u, vf p, vf q, vf& val, vf& g) noexcept {
    const vf zero = _mm512_setzero_ps();
    const vf bq = _mm512_mul_ps(C.w1, q);
    const vf m = _mm512_fmadd_ps(C.w, p, bq);
    const vf lm = v5::log(m);
    const __mmask16 kp = _mm512_cmp_ps_mask(p, zero, _CMP_GT_OQ);
    val = _mm512_maskz_mul_ps(kp, p, _mm512_sub_ps(C.lp(u), lm));  // ops::skew_forward_kl
    // ops::skew_forward_kl_grad: -p (1 - a) q / M
    g = _mm512_maskz_div_ps(kp, _mm512_sub_ps(zero, _mm512_mul_ps(p, bq)), m);
  }
};
template <>
struct vdiv<divergence::skew_reverse_kl> {
  static constexpr bool unit_g = false;
  template <bool>
  static GRPO_FORCEINLINE void eval(const vctx& C, vf x, vf, vf p, vf q, vf& val, vf& g) noexcept {
    const vf zero = _mm512_setzero_ps();
    const vf bq = _mm512_mul_ps(C.w, q);
    const vf m = _mm512_fmadd_ps(C.w1, p, bq);
    const vf t = _mm512_sub_ps(C.lq(x), v5::log(m));
    const __mmask16 kq = _mm512_cmp_ps_mask(q, zero, _CMP_GT_OQ);
    val = _mm512_maskz_mul_ps(kq, q, t);  // ops::skew_reverse_kl
    // ops::skew_reverse_kl_grad: q (lq - lM + 1 - a q / M)
    const vf r = _mm512_sub_ps(v5::set1(1.0f), _mm512_div_ps(bq, m));
    g = _mm512_maskz_mul_ps(kq, q, _mm512_add_ps(t, r));
  }
};

/// float -> 16 bf16 bit patterns in a register for the gradient stores: vcvtneps2bf16 where the
/// target has AVX512-BF16 and GRPO_DISTILL_CVTBF16 is on (it flushes values below 2^-126 to 0),
/// else v512::to_bf16 (the rounding of grpo::bfloat16).
GRPO_FORCEINLINE __m256i to_bf16(vf v) noexcept {
#if defined(__AVX512BF16__) && GRPO_DISTILL_CVTBF16
  return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v));
#else
  return v5::to_bf16(v);
#endif
}

/// How a gradient row is written: 0 any stride or type (scalar narrow, the portable rounding),
/// 1 contiguous float / bf16 / fp16 (vector stores), 2 the same with a 64-byte aligned row:
/// non-temporal stores, so the gradient lines are not first read from DRAM (read for ownership):
/// 1 write per element instead of 1 read + 1 write.
enum : int { write_any = 0, write_contiguous = 1, write_stream = 2 };

template <class G>
inline constexpr bool vector_grad_v =
    std::is_same_v<G, float> || std::is_same_v<G, bfloat16> || std::is_same_v<G, float16>;

/// The write mode of a gradient row (write_any when there is none).
template <class G>
int write_mode(const G* g, index_t gs) noexcept {
  if constexpr (vector_grad_v<G>) {
    if (g == nullptr || gs != 1) return write_any;
    return reinterpret_cast<std::uintptr_t>(g) % 64 == 0 ? write_stream : write_contiguous;
  } else {
    (void)g;
    (void)gs;
    return write_any;
  }
}

/// Writes the first cnt of 16 gradient values at element j of g (stride gs) in write mode Mode
/// (every vector of a row starts at a multiple of 16 elements, hence 64 / 32 bytes aligned in
/// write_stream mode).
template <int Mode, class G>
GRPO_FORCEINLINE void put_grad(G* g, index_t gs, index_t j, vf v, index_t cnt) noexcept {
  if constexpr (Mode != write_any && vector_grad_v<G>) {
    if (cnt == 16) {
      if constexpr (std::is_same_v<G, float>) {
        if constexpr (Mode == write_stream) {
          _mm512_stream_ps(g + j, v);
        } else {
          _mm512_storeu_ps(g + j, v);
        }
      } else if constexpr (std::is_same_v<G, bfloat16>) {
        if constexpr (Mode == write_stream) {
          _mm256_stream_si256(reinterpret_cast<__m256i*>(g + j), to_bf16(v));
        } else {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(g + j), to_bf16(v));
        }
      } else {
        if constexpr (Mode == write_stream) {
          _mm256_stream_si256(reinterpret_cast<__m256i*>(g + j),
                              _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        } else {
          v5::store_fp16(g + j, v);
        }
      }
      return;
    }
  }
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  for (index_t i = 0; i < cnt; ++i) g[(j + i) * gs] = narrow<G>(t[i]);
}

/// Passes 2 (and 3) of a dense divergence row after avx::row_lse_store filled both caches: xs,
/// xu the contiguous float rows pass 1 read. Forward KL: one sweep writes the loss and q - p.
/// The others: pass 2 computes the loss and G = sum g and parks g_j in the teacher's exp cache
/// (read at j just before), pass 3 writes gscale (g_j - q_j G). Per 16 elements the forward-KL
/// sweep is 2 sub + 2 fmsub (log-probs), 2 mul (p, q), 3 (loss), 9 (q - p), 1 (scale) and the
/// store. g may alias the student row: every vector is read before the gradient over it is
/// written.
template <divergence K, int Mode, class G>
void dense_passes(const float* GRPO_RESTRICT xs, const float* GRPO_RESTRICT xu,
                  const row_state<float>& st, const row_state<float>& tt,
                  const row_exp_cache<float>& cs, row_exp_cache<float>& cu, G* g, index_t gs,
                  const dense_row_args<float>& R, double& value) noexcept {
  using op = vdiv<K>;
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  const index_t V = R.V;
  const vctx C{v5::set1(st.m),           v5::set1(st.log_s),
               v5::set1(tt.m),           v5::set1(tt.log_s),
               v5::set1(st.beta),        v5::set1(R.div.w),
               v5::set1(1.0f - R.div.w), v5::set1(st.log_s - tt.log_s)};
  const vf vninf = v5::set1(ninf), vgs = v5::set1(R.gscale);
  const float* GRPO_RESTRICT es = cs.e.data();
  float* GRPO_RESTRICT eu = cu.e.data();
  const bool write = g != nullptr;
  double total = 0.0, gsum = 0.0;
  for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
    const index_t n = std::min(chunk, V - j0), nf = n / 16 * 16;
    const float sq = cs.scale[static_cast<std::size_t>(c)];
    const float sp = cu.scale[static_cast<std::size_t>(c)];
    const vf scs = v5::set1(sq), scu = v5::set1(sp);
    vf va = _mm512_setzero_ps(), vg = _mm512_setzero_ps();
    // One vector; x / u are the raw rows (-inf on padding lanes, whose cached e is 0: p = q = 0
    // there, masked out by the element operators).
    auto body = [&](auto careful, index_t j, vf x, vf u, index_t cnt) {
      const vf q = _mm512_mul_ps(_mm512_loadu_ps(es + j), scs);
      const vf p = _mm512_mul_ps(_mm512_loadu_ps(eu + j), scu);
      vf val, gr;
      op::template eval<decltype(careful)::value>(C, x, u, p, q, val, gr);
      va = _mm512_add_ps(va, val);
      if constexpr (op::unit_g) {
        if (write) put_grad<Mode>(g, gs, j, _mm512_mul_ps(vgs, gr), cnt);
      } else {
        vg = _mm512_add_ps(vg, gr);
        _mm512_storeu_ps(eu + j, gr);
      }
    };
    auto sweep = [&](auto careful) {
      for (index_t i = 0; i < nf; i += 16)
        body(careful, j0 + i, _mm512_loadu_ps(xs + j0 + i), _mm512_loadu_ps(xu + j0 + i), 16);
      if (nf < n) {
        const __mmask16 k = head_mask(n - nf);
        body(careful, j0 + nf, _mm512_mask_loadu_ps(vninf, k, xs + j0 + nf),
             _mm512_mask_loadu_ps(vninf, k, xu + j0 + nf), n - nf);
      }
    };
    // scale_c is the largest probability of chunk c (e = 1 at its maximum).
    if (op::unit_g && (sq >= 0.015625f || sp >= 0.015625f))
      sweep(std::true_type{});
    else
      sweep(std::false_type{});
    total += static_cast<double>(v5::hsum(va));
    if constexpr (!op::unit_g) gsum += static_cast<double>(v5::hsum(vg));
  }
  value = total * static_cast<double>(R.vscale);
  if constexpr (!op::unit_g) {
    if (!write) return;
    // Pass 3: gscale (g_j - q_j G), q_j G = e_j (scale_c G) (ops::softmax_chain).
    const float G_ = static_cast<float>(gsum);
    for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
      const index_t n = std::min(chunk, V - j0);
      const vf qg = v5::set1(cs.scale[static_cast<std::size_t>(c)] * G_);
      for (index_t i = 0; i < n; i += 16) {
        const index_t j = j0 + i;
        const vf gr = _mm512_fnmadd_ps(_mm512_loadu_ps(es + j), qg, _mm512_loadu_ps(eu + j));
        put_grad<Mode>(g, gs, j, _mm512_mul_ps(vgs, gr), std::min<index_t>(16, n - i));
      }
    }
  }
  if constexpr (Mode == write_stream) _mm_sfence();  // order the streamed lines before return
}

/// The forward-KL gradient sweep after pair_pass1<true>: gscale (q_j - p_j) from the two exp
/// caches (mul + fmsub per 16 elements and the store); chunks holding a probability >= 1/64
/// take ops::forward_kl_dz's series path from the logits (vdiv<forward_kl>).
template <int Mode, class G>
void forward_kl_grad(const row_state<float>& st, const row_state<float>& tt,
                     const row_exp_cache<float>& cs, const row_exp_cache<float>& cu, G* g,
                     index_t gs, const dense_row_args<float>& R) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  const index_t V = R.V;
  const vctx C{
      v5::set1(st.m),    v5::set1(st.log_s),  v5::set1(tt.m),      v5::set1(tt.log_s),
      v5::set1(st.beta), _mm512_setzero_ps(), _mm512_setzero_ps(), v5::set1(st.log_s - tt.log_s)};
  const vf vninf = v5::set1(ninf), vgs = v5::set1(R.gscale);
  const float* GRPO_RESTRICT es = cs.e.data();
  const float* GRPO_RESTRICT eu = cu.e.data();
  const float* GRPO_RESTRICT xs = cs.row;
  const float* GRPO_RESTRICT xu = cu.row;
  for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
    const index_t n = std::min(chunk, V - j0), nf = n / 16 * 16;
    const float sq = cs.scale[static_cast<std::size_t>(c)];
    const float sp = cu.scale[static_cast<std::size_t>(c)];
    if (sq >= 0.015625f || sp >= 0.015625f) {
      const vf scs = v5::set1(sq), scu = v5::set1(sp);
      for (index_t i = 0; i < n; i += 16) {
        const index_t j = j0 + i, cnt = std::min<index_t>(16, n - i);
        const __mmask16 k = cnt == 16 ? static_cast<__mmask16>(0xFFFF) : head_mask(cnt);
        vf val, gr;
        vdiv<divergence::forward_kl>::eval<true>(
            C, _mm512_mask_loadu_ps(vninf, k, xs + j), _mm512_mask_loadu_ps(vninf, k, xu + j),
            _mm512_mul_ps(_mm512_loadu_ps(eu + j), scu),
            _mm512_mul_ps(_mm512_loadu_ps(es + j), scs), val, gr);
        put_grad<Mode>(g, gs, j, _mm512_mul_ps(vgs, gr), cnt);
      }
    } else {
      const vf gq = v5::set1(sq * R.gscale), gp = v5::set1(sp * R.gscale);
      auto one = [&](index_t j, index_t cnt) {
        put_grad<Mode>(g, gs, j,
                       _mm512_fmsub_ps(_mm512_loadu_ps(es + j), gq,
                                       _mm512_mul_ps(_mm512_loadu_ps(eu + j), gp)),
                       cnt);
      };
      for (index_t i = 0; i < nf; i += 16) one(j0 + i, 16);
      if (nf < n) one(j0 + nf, n - nf);
    }
  }
  if constexpr (Mode == write_stream) _mm_sfence();  // order the streamed lines before return
}

/// The reverse-KL gradient after pair_pass1<2> summed the value KL: dKL(q || p)/dz'_j =
/// q_j (lq_j - lp_j - KL) (ops::reverse_kl_grad through ops::softmax_chain with G = KL + 1,
/// sum q = 1), 0 where q_j = 0: one sweep over the student's exp cache and the difference
/// D_j = a^s_j - a^u_j that pass 1 left in the teacher's cache (no logit is re-read: at
/// V = 151936 the two rows and two caches exceed L2). lq_j - lp_j = D_j + off_c with the chunk
/// constant off_c = beta (m^s_c - M_s) - log s_s - beta (m^u_c - M_u) + log s_u, in double.
template <int Mode, class G>
void reverse_kl_grad(const row_state<float>& st, const row_state<float>& tt, double kl,
                     const row_exp_cache<float>& cs, const row_exp_cache<float>& cu, G* g,
                     index_t gs, const dense_row_args<float>& R) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  const index_t V = R.V;
  const vf zero = _mm512_setzero_ps();
  const double b = st.beta;
  const double base = -b * static_cast<double>(st.m) - static_cast<double>(st.log_s) +
                      b * static_cast<double>(tt.m) + static_cast<double>(tt.log_s) - kl;
  const float* GRPO_RESTRICT es = cs.e.data();
  const float* GRPO_RESTRICT du = cu.e.data();
  for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
    const std::size_t k = static_cast<std::size_t>(c);
    const index_t n = std::min(chunk, V - j0), nf = n / 16 * 16;
    const vf gq = v5::set1(cs.scale[k] * R.gscale);
    // off_c - KL (+inf for a chunk without teacher mass, -inf / NaN without student mass: the
    // latter are masked by q = 0 below)
    const double mu_c = cu.m[k] > ninf ? static_cast<double>(cu.m[k])
                                        : -std::numeric_limits<double>::infinity();
    const vf kc = v5::set1(static_cast<float>(b * static_cast<double>(cs.m[k]) - b * mu_c + base));
    auto one = [&](index_t j, index_t cnt) {
      const vf e = _mm512_loadu_ps(es + j);
      const __mmask16 kq = _mm512_cmp_ps_mask(e, zero, _CMP_GT_OQ);
      put_grad<Mode>(g, gs, j,
                     _mm512_maskz_mul_ps(kq, _mm512_mul_ps(e, gq),
                                         _mm512_add_ps(_mm512_loadu_ps(du + j), kc)),
                     cnt);
    };
    for (index_t i = 0; i < nf; i += 16) one(j0 + i, 16);
    if (nf < n) one(j0 + nf, n - nf);
  }
  if constexpr (Mode == write_stream) _mm_sfence();  // order the streamed lines before return
}

/// The AVX-512 dense row: the fused pass 1 of both rows (pair_pass1, prefetching the next row
/// pair's head as it ends), then the gradient sweep (forward KL, whose value pass 1 already
/// summed) or dense_passes.
template <divergence K, class S, class U, class G>
int dense_row(const S* s, index_t ss, const U* u, index_t us, G* g, index_t gs,
              const dense_row_args<float>& R, double& value) {
  constexpr bool fkl = K == divergence::forward_kl;
  constexpr bool rkl = K == divergence::reverse_kl;
  thread_caches<float>& tc = local_caches<float>();
  tc.student.reserve(R.V);
  tc.teacher.reserve(R.V);
  bool bad_s = false, bad_u = false;
  basic_online_lse<float> ls(R.beta_s), lu(R.beta_u);
  double kl = 0.0;
  pair_pass1<fkl   ? 1
             : rkl ? 2
                   : 0>(s, ss, u, us, R.V, R.beta_s, tc.student, tc.teacher, R.next_s,
                        R.next_s_bytes, ls, lu, bad_s, bad_u, &kl);
  if (bad_s) return student_not_finite;
  if (bad_u) return teacher_not_finite;
  if (ls.empty()) return student_empty;
  if (lu.empty()) return teacher_empty;
  const row_state<float> st{ls.m, ls.log_sum(), R.beta_s}, tt{lu.m, lu.log_sum(), R.beta_u};
  const int mode = write_mode(g, gs);
  if constexpr (fkl) {
    value = kl * static_cast<double>(R.vscale);
    if (mode == write_stream)
      forward_kl_grad<write_stream>(st, tt, tc.student, tc.teacher, g, gs, R);
    else if (mode == write_contiguous)
      forward_kl_grad<write_contiguous>(st, tt, tc.student, tc.teacher, g, gs, R);
    else if (g != nullptr)
      forward_kl_grad<write_any>(st, tt, tc.student, tc.teacher, g, gs, R);
    return row_ok;
  }
  if constexpr (rkl) {
    value = kl * static_cast<double>(R.vscale);
    if (mode == write_stream)
      reverse_kl_grad<write_stream>(st, tt, kl, tc.student, tc.teacher, g, gs, R);
    else if (mode == write_contiguous)
      reverse_kl_grad<write_contiguous>(st, tt, kl, tc.student, tc.teacher, g, gs, R);
    else if (g != nullptr)
      reverse_kl_grad<write_any>(st, tt, kl, tc.student, tc.teacher, g, gs, R);
    return row_ok;
  }
  switch (mode) {
    case write_stream:
      dense_passes<K, write_stream>(tc.student.row, tc.teacher.row, st, tt, tc.student, tc.teacher,
                                    g, gs, R, value);
      break;
    case write_contiguous:
      dense_passes<K, write_contiguous>(tc.student.row, tc.teacher.row, st, tt, tc.student,
                                        tc.teacher, g, gs, R, value);
      break;
    default:
      dense_passes<K, write_any>(tc.student.row, tc.teacher.row, st, tt, tc.student, tc.teacher, g,
                                 gs, R, value);
  }
  return row_ok;
}

}  // namespace avx
#endif  // GRPO_HAS_AVX512

/// One row of a dense divergence (teacher logits at the student's temperature): pass 1 over both
/// rows, then divergence_passes (avx::dense_passes with AVX-512 and float accumulation).
template <divergence K, class A, class S, class U, class G>
int dense_row(const S* s, index_t ss, const U* u, index_t us, G* g, index_t gs,
              const dense_row_args<A>& R, double& value) {
#if GRPO_HAS_AVX512
  if constexpr (std::is_same_v<A, float>) return avx::dense_row<K>(s, ss, u, us, g, gs, R, value);
#endif
  alignas(64) A buf[chunk];
  thread_caches<A>& tc = local_caches<A>();
  tc.student.reserve(R.V);
  tc.teacher.reserve(R.V);
  bool bad_s = false, bad_u = false;
  const basic_online_lse<A> ls = row_lse_store(s, ss, R.V, R.beta_s, buf, tc.student, bad_s);
  const basic_online_lse<A> lu = row_lse_store(u, us, R.V, R.beta_u, buf, tc.teacher, bad_u);
  if (bad_s) return student_not_finite;
  if (bad_u) return teacher_not_finite;
  if (ls.empty()) return student_empty;
  if (lu.empty()) return teacher_empty;
  divergence_passes<K, true, true>(
      s, ss, row_state<A>{ls.m, ls.log_sum(), R.beta_s}, strided_loader<U>{u, us},
      row_state<A>{lu.m, lu.log_sum(), R.beta_u}, prob_source<A>{&tc.student},
      prob_source<A>{&tc.teacher}, g, gs, R, value);
  return row_ok;
}

/// Writes zeros over a gradient row (masked tokens).
template <class G>
void zero_row(G* g, index_t gs, index_t V) noexcept {
  for (index_t j = 0; j < V; ++j) g[j * gs] = narrow<G>(0.0f);
}

/// The per-row driver of every front end (dense, top-k, SFT): over the B x L rows of the rank-3
/// student view s (and gradient view g, nullable), in parallel (grpo::par::for_each_row, static
/// schedule: each thread takes a contiguous block of rows, so the next-row prefetch below
/// warms the row that same thread processes next): row pointers from the strides, inactive rows
/// (plan P) written as zero gradients, the per-row gradient factor R.gscale = gscale_of(P.coef[r]),
/// and the next row's prefetch hints (student and gradient rows when contiguous and `prefetch`
/// holds, plus whatever teacher_next(R, b1, t1) adds), then row(b, t, student row, its stride,
/// gradient row, its stride, R, row value) -> row_status. A failed row throws its grpo::error
/// (throw_row_error with the names `student` / `teacher`); the lowest failing row's leaves.
template <class A, class S, class G, class GScale, class TeacherNext, class Row>
void drive_rows(const strided_view<const S, 3>& s, const strided_view<G, 3>* g,
                const token_plan& P, const dense_row_args<A>& R0, GScale&& gscale_of,
                bool prefetch, TeacherNext&& teacher_next, std::vector<double>& row_loss,
                const char* student, const char* teacher, Row&& row) {
  const index_t L = s.extent(1), V = s.extent(2), n = s.extent(0) * L;
  par::loop_options lo;
  lo.work_per_row = V;
  par::for_each_row(
      n,
      [&](index_t r) {
        const index_t b = r / L, t = r % L;
        const S* sp = s.data_handle() + b * s.stride(0) + t * s.stride(1);
        G* gp = g ? g->data_handle() + b * g->stride(0) + t * g->stride(1) : nullptr;
        const std::size_t k = static_cast<std::size_t>(r);
        if (!P.active[k]) {
          if (gp) zero_row(gp, g->stride(2), V);
          return;
        }
        dense_row_args<A> R = R0;
        R.gscale = gscale_of(P.coef[k]);
        if (r + 1 < n && s.stride(2) == 1 && prefetch) {
          const index_t b1 = (r + 1) / L, t1 = (r + 1) % L;
          R.next_s = s.data_handle() + b1 * s.stride(0) + t1 * s.stride(1);
          R.next_s_bytes = static_cast<index_t>(sizeof(S));
          teacher_next(R, b1, t1);
          if (g != nullptr && g->stride(2) == 1) {
            R.next_g = g->data_handle() + b1 * g->stride(0) + t1 * g->stride(1);
            R.next_g_bytes = static_cast<index_t>(sizeof(G));
          }
        }
        const int st = row(b, t, sp, s.stride(2), gp, g ? g->stride(2) : index_t(0), R, row_loss[k]);
        if (st != row_ok) throw_row_error({r, st}, L, student, teacher);
      },
      lo);
}

}  // namespace grpo::distill::detail

// SPDX-License-Identifier: Apache-2.0
/// @file logprob.hpp
/// @brief Selective log-softmax on the CPU: per-token log p(y), logsumexp and entropy from [tokens,
///        vocab] logits (fp32 / bf16 / fp16 storage, fp32 accumulation, temperature inside), and
///        its backward into the logits, in one streaming read of each row, threaded over rows.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/half.hpp>
#include <grpo/core/math.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/core/vmath512.hpp>
#include <grpo/ops/softmax.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

// Vectorisation. The row loops below work on blocks of at most 2048 floats held in L1: a widening
// copy, a max, then ONE fused sweep (shift, clamp, exp, sum, dot) whose exp is
// grpo::math::fast_exp_core, a branch-free polynomial that g++ vectorises (SSE2/AVX2/AVX-512 as
// compiled) without -ffast-math. When Eigen is on the include path (link grpo::eigen) the block
// max is an Eigen reduction; otherwise a plain loop. grpo::grpo therefore never requires Eigen. The
// two builds live in different inline namespaces so that TUs compiled with and without Eigen link
// together without an ODR clash. Define GRPO_LOGPROB_USE_EIGEN=0/1 to force a choice.
#ifndef GRPO_LOGPROB_USE_EIGEN
#if __has_include(<Eigen/Core>)
#define GRPO_LOGPROB_USE_EIGEN 1
#else
#define GRPO_LOGPROB_USE_EIGEN 0
#endif
#endif
// With AVX-512 (core/vmath512.hpp: -march=native on an AVX-512 CPU) the contiguous row kernels take
// hand-written paths; their namespaces carry a 512 suffix so that TUs built for different targets
// never share an inline function of the same name.
#if GRPO_LOGPROB_USE_EIGEN
#include <Eigen/Core>
#if GRPO_HAS_AVX512
#define GRPO_LOGPROB_ABI lp_eigen512
#else
#define GRPO_LOGPROB_ABI lp_eigen
#endif
#else
#if GRPO_HAS_AVX512
#define GRPO_LOGPROB_ABI lp_scalar512
#else
#define GRPO_LOGPROB_ABI lp_scalar
#endif
#endif

namespace grpo {

/// Options of the selective log-softmax (forward and backward).
struct logprob_options {
  /// Sampling temperature T > 0: log p = log_softmax(logits / T). The gradient carries the 1/T
  /// factor (d(x/T)/dx). Use the sampler's T so the training ratio matches the rollout.
  float temperature = 1.0f;
  /// Rows whose id equals this value are skipped: log p, lse and entropy are written as 0 and their
  /// gradient row is 0 (torch / TRL convention -100). Any other id must lie in [0, vocab).
  std::int64_t ignore_index = -100;
  /// Threads for the row loop when compiled with OpenMP; 0 uses the OpenMP default.
  int num_threads = 0;
};

/// The row kernels a selective_log_softmax(_backward) call ran, returned so that callers and tests
/// can check the path instead of inferring it from today's dispatch.
enum class logprob_path : unsigned char {
  none,           ///< no row was computed (N = 0 or every id is ignore_index)
  avx512,         ///< hand-written AVX-512 kernels on contiguous rows (GRPO_HAS_AVX512 builds)
  block_direct,   ///< portable L1-block kernels reading fp32 contiguous rows where they lie
  block_widened,  ///< portable L1-block kernels on rows widened (bf16 / fp16) or gathered (strided)
};

/// Report of one call (see logprob_path). The portable block kernels are Eigen's when `eigen`,
/// otherwise the auto-vectorised loops around grpo::math::fast_exp_core.
struct logprob_report {
  logprob_path path = logprob_path::none;  ///< of the statistics pass (row_stats), every row
  bool eigen = false;                      ///< built with GRPO_LOGPROB_USE_EIGEN
  index_t rows = 0;                        ///< rows computed (id != ignore_index)
  /// Backward only: rows whose gradient reused the statistics pass's exponentials (g_entropy = 0,
  /// row_grad_cached) instead of recomputing them; the rest took row_grad.
  index_t cached_rows = 0;
};

// Kernels live in grpo::detail::lp_eigen or grpo::detail::lp_scalar (GRPO_LOGPROB_ABI); `lp` names
// the one this translation unit uses.
namespace detail::GRPO_LOGPROB_ABI {

/// Block length of the inner loops: 2048 floats (8 KiB) per buffer, two buffers per thread, so a
/// block lives in L1 while the row streams from memory once. Extra memory is O(threads x block).
inline constexpr index_t block = 2048;
/// Scaled logits below max - 87 are clamped before exp: exp(-87) = 1.6e-38 is the smallest normal
/// float, so the bulk exp never produces denormals (a 10-100x slow path on x86) and q d stays
/// finite for masked (-inf) entries; clamped entries are then given exactly 0 mass.
inline constexpr float d_floor = -87.0f;

// ----- bulk primitives on contiguous float blocks ------------------------------------------------
#if GRPO_LOGPROB_USE_EIGEN
using map_c = Eigen::Map<const Eigen::ArrayXf>;
using map_m = Eigen::Map<Eigen::ArrayXf>;
/// max of a block (NaN propagation unspecified: row_stats detects NaN through the sum of exp).
inline float vmax(const float* p, index_t n) {
  return map_c(p, n).maxCoeff();
}
#else
inline float vmax(const float* p, index_t n) {
  float m = -math::infinity<float>();
  bool nan = false;
  for (index_t j = 0; j < n; ++j) {
    m = p[j] > m ? p[j] : m;
    nan |= !(p[j] == p[j]);
  }
  return nan ? std::numeric_limits<float>::quiet_NaN() : m;
}
#endif

// The exponentials of both builds are grpo::math::fast_exp_core (core/math.hpp): a branch-free
// Cody-Waite + polynomial exp (< 2 ulp) that g++ vectorises inside the fused loops below without
// -ffast-math (std::exp never vectorises; Eigen's exp only as a separate pass over the block).

/// Lanes of the hand-split reductions: 16 independent float partial sums (two AVX2 or one AVX-512
/// register), so the sums vectorise without -fassociative-math and are not latency-bound.
inline constexpr index_t lanes = 16;

/// out = exp(max(in, lo)) (a floor that keeps exp out of the denormal range) for in <= 88.3 (log
/// probabilities), lo >= -87.3.
inline void vexp_floor(const float* GRPO_RESTRICT in, float* GRPO_RESTRICT out, index_t n,
                       float lo) noexcept {
  for (index_t j = 0; j < n; ++j)
    out[j] = math::fast_exp_bounded(math::select(in[j] < lo, lo, in[j]));
}

/// The fused block pass of row_stats over n raw logits x (L1-resident): d_j = beta (x_j - mb)
/// clamped at d_floor, e_j = exp(d_j) written to `e` (exactly 0 at or below the floor: masked
/// entries and true values < 1.6e-38 carry no mass), s = sum e_j and t = sum e_j d_j, all in one
/// sweep instead of four (shift, exp, sum, dot). A NaN d (NaN or +inf logit) passes every select
/// and reaches s.
inline void block_exp_sums(const float* GRPO_RESTRICT x, float* GRPO_RESTRICT e, index_t n,
                           float mb, float beta, float& s, float& t) noexcept {
  // One element: d clamped at the floor, e = exp(d) or exactly 0 at / below it, written to e[j].
  const auto term = [=](float xj, float& dc) noexcept {
    const float d = beta * (xj - mb);
    const bool floor = d <= d_floor;  // false for NaN, so a NaN keeps flowing
    dc = math::select(floor, d_floor, d);
    return math::select(floor, 0.0f, math::fast_exp_bounded(dc));  // dc in [-87, 0]
  };
  // Lane partial sums for whole lanes; the tail has its own scalars so that the vectorised body
  // keeps its accumulators in registers (a scalar access to acc[0] would force them to memory).
  float acc_s[lanes] = {}, acc_t[lanes] = {};
  const index_t nl = n / lanes * lanes;
  for (index_t j0 = 0; j0 < nl; j0 += lanes)
    for (index_t k = 0; k < lanes; ++k) {
      float dc;
      const float ej = term(x[j0 + k], dc);
      e[j0 + k] = ej;
      acc_s[k] += ej;
      acc_t[k] += ej * dc;
    }
  float s_tail = 0.0f, t_tail = 0.0f;
  for (index_t j = nl; j < n; ++j) {
    float dc;
    const float ej = term(x[j], dc);
    e[j] = ej;
    s_tail += ej;
    t_tail += ej * dc;
  }
  s = s_tail;
  t = t_tail;
  for (index_t k = 0; k < lanes; ++k) {
    s += acc_s[k];
    t += acc_t[k];
  }
}

/// Widen n strided elements of type T into a float buffer (a contiguous copy when stride == 1).
template <class T>
GRPO_FORCEINLINE void load(const T* GRPO_RESTRICT src, index_t stride, index_t n,
                           float* GRPO_RESTRICT dst) noexcept {
  if (stride == 1) {
    for (index_t j = 0; j < n; ++j) dst[j] = static_cast<float>(widen(src[j]));
  } else {
    for (index_t j = 0; j < n; ++j) dst[j] = static_cast<float>(widen(src[j * stride]));
  }
}

/// load() and the block maximum in one sweep (the max in `lanes` independent partials, so it
/// vectorises and is not latency-bound). NaN never wins a comparison: row_stats catches NaN through
/// the sum of exponentials (or the scan of a block whose maximum is -inf).
template <class T>
GRPO_FORCEINLINE float load_max(const T* GRPO_RESTRICT src, index_t stride, index_t n,
                                float* GRPO_RESTRICT dst) noexcept {
  if (stride != 1) {
    load(src, stride, n, dst);
    return vmax(dst, n);
  }
  float mx[lanes];
  for (index_t k = 0; k < lanes; ++k) mx[k] = -math::infinity<float>();
  index_t j0 = 0;
  for (; j0 + lanes <= n; j0 += lanes)
    for (index_t k = 0; k < lanes; ++k) {
      const float v = static_cast<float>(widen(src[j0 + k]));
      dst[j0 + k] = v;
      mx[k] = v > mx[k] ? v : mx[k];  // maxps pattern
    }
  float m = -math::infinity<float>();
  for (index_t k = 0; k < lanes; ++k) m = mx[k] > m ? mx[k] : m;
  for (; j0 < n; ++j0) {
    const float v = static_cast<float>(widen(src[j0]));
    dst[j0] = v;
    m = v > m ? v : m;
  }
  return m;
}

/// Narrow n floats into a strided destination of type G.
template <class G>
GRPO_FORCEINLINE void store(const float* GRPO_RESTRICT src, index_t n, G* dst,
                            index_t stride) noexcept {
  if (stride == 1) {
    for (index_t j = 0; j < n; ++j) dst[j] = narrow<G>(src[j]);
  } else {
    for (index_t j = 0; j < n; ++j) dst[j * stride] = narrow<G>(src[j]);
  }
}

/// Per-thread scratch: two L1 blocks.
struct scratch {
  alignas(64) float a[block];
  alignas(64) float b[block];
};

/// Row status after the statistics pass.
enum class row_status : unsigned char { ok, non_finite, all_masked };

/// Optional per-thread cache of one row's exponentials from row_stats: e_j = exp(beta (x_j - mb))
/// relative to the maximum mb of the j's block (0 for masked entries), and the block maxima. With
/// it, the gradient pass of a row whose entropy coefficient is 0 needs neither a second exp nor a
/// second read of the logits: q_j = e_j exp(beta (mb - m) - log s). O(V) floats per thread.
struct row_cache {
  std::vector<float> e;
  std::vector<float> bmax;
};

/// The statistics of a row that the gradient and log p need: m (raw max), log s, entropy H.
struct row_summary {
  float m = 0.0f;
  float log_s = 0.0f;
  float entropy = 0.0f;
};

inline row_summary summarise(const online_lse& st) noexcept {
  return {st.m, st.log_sum(), st.entropy()};
}

#if GRPO_HAS_AVX512
// ----- AVX-512 row kernels (contiguous rows) -----------------------------------------------------
// The same maths as the portable loops (ops/softmax.hpp formulas, d_floor, exact zero mass at or
// below the floor), written with core/vmath512.hpp so that one 16-logit vector costs: widening load
// (0 ops for fp32: a memory operand; 2 for bf16 / fp16), d = beta (x - mb) (1-2), keep mask (1),
// clamp (1), exp (12, the zeroing of dropped lanes folded into vscalefps' zero-masking), s += e
// (1), t += e d (1), plus 1 max in the block-max pass. fp32 rows are read once from memory by the
// max pass and once more from L1 by the sweep; 16-bit rows are widened inside both sweeps (no
// copy).
namespace x512 {
using vf = __m512;
namespace v = math::v512;

/// 16 elements at p widened to float.
template <class T>
GRPO_FORCEINLINE vf load(const T* p) noexcept {
  if constexpr (std::is_same_v<T, float>)
    return v::load(p);
  else if constexpr (std::is_same_v<T, bfloat16>)
    return v::load_bf16(p);
  else
    return v::load_fp16(p);
}
/// The n < 16 elements at p widened, missing lanes -inf (no mass, never a maximum).
template <class T>
GRPO_FORCEINLINE vf load_tail(const T* p, index_t n) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    return _mm512_mask_loadu_ps(v::set1(-math::infinity<float>()),
                                static_cast<__mmask16>((1u << n) - 1u), p);
  } else {
    alignas(64) float b[16];
    for (index_t k = 0; k < 16; ++k)
      b[k] = k < n ? static_cast<float>(widen(p[k])) : -math::infinity<float>();
    return _mm512_load_ps(b);
  }
}
/// 16 floats -> 16 bf16 bit patterns with grpo::bfloat16's rounding (nearest even, NaN quiet).
/// With AVX512_BF16 one vcvtneps2bf16 (same rounding and NaN rule) replaces the ~10 integer ops of
/// v512::store_bf16; that instruction flushes subnormal inputs to zero, so a vector holding one
/// (|x| < 2^-126: gradients below 1.2e-38, rare) takes the integer rounding instead.
GRPO_FORCEINLINE __m256i pack_bf16(vf x) noexcept {
#if defined(__AVX512BF16__)
  if (_mm512_fpclass_ps_mask(x, 0x20) == 0)  // 0x20: subnormal
    return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(x));
#endif
  alignas(32) std::uint16_t b[16];
  v::store_bf16(b, x);
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(b));
}

/// 16 floats narrowed into G storage at p.
template <class G>
GRPO_FORCEINLINE void store(G* p, vf x) noexcept {
  if constexpr (std::is_same_v<G, float>)
    _mm512_storeu_ps(p, x);
  else if constexpr (std::is_same_v<G, bfloat16>)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), pack_bf16(x));
  else
    v::store_fp16(p, x);
}
/// The first n < 16 lanes of x narrowed into G storage at p.
template <class G>
GRPO_FORCEINLINE void store_tail(G* p, vf x, index_t n) noexcept {
  if constexpr (std::is_same_v<G, float>) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), x);
  } else {
    alignas(64) float b[16];
    _mm512_store_ps(b, x);
    for (index_t k = 0; k < n; ++k) p[k] = narrow<G>(b[k]);
  }
}

/// Software prefetch of the compute-bound sweeps: 16 KiB ahead of the element being processed
/// (two fp32 blocks, four bf16 ones; L1 holds 48 KiB). The block-max pass is the one that meets
/// each line first; without the prefetch it waits on memory while the exp units idle, then the
/// sweep computes while memory idles (the max pass took 45% of the bf16 forward). Measured on one
/// Zen 5 core, fp32 rows streamed from memory: 0.34 ns per logit without prefetch, 0.15 with it
/// (into L2 only, _MM_HINT_T1, was not better); L1- and L2-resident rows are unaffected (0.14).
/// Past the end of a row this fetches the start of the next row of a contiguous tensor (a
/// prefetch never faults).
inline constexpr std::size_t prefetch_bytes = 16384;

/// Prefetches the lines of the 32 elements at p + prefetch_bytes into L1.
template <class T>
GRPO_FORCEINLINE void prefetch_ahead(const T* p) noexcept {
  const char* q = reinterpret_cast<const char*>(p) + prefetch_bytes;
  for (std::size_t b = 0; b < 32 * sizeof(T); b += 64) _mm_prefetch(q + b, _MM_HINT_T0);
}

/// 16 floats narrowed into G storage at p with a non-temporal store (p aligned to 16 elements):
/// the line goes to memory without being read first (no read-for-ownership) and without evicting
/// the caller's working set. For gradients of tokens x vocab size that are not read back soon.
template <class G>
GRPO_FORCEINLINE void stream(G* p, vf x) noexcept {
  if constexpr (std::is_same_v<G, float>) {
    _mm512_stream_ps(p, x);
  } else if constexpr (std::is_same_v<G, bfloat16>) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), pack_bf16(x));
  } else {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p),
                        _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
}

/// No side work in a statistics sweep.
struct no_side {
  GRPO_FORCEINLINE void step() noexcept {}
};

/// One block of another row's gradient, o_j = c e_j (the sweep of row_grad_cached), written 32
/// elements per step of a statistics sweep: software pipelining of the fused step, so that the
/// gradient's non-temporal stores drain to memory while the exps of the next row are computed,
/// instead of the two phases alternating (one memory-bound, one compute-bound). The constructor
/// peels a head up to the stores' alignment; finish() writes what the steps left.
template <class G>
struct side_block {
  const float* e;
  G* o;
  index_t n;
  vf c;
  index_t j = 0;
  side_block(const float* e_, G* o_, index_t n_, float c_) noexcept
      : e(e_), o(o_), n(n_), c(v::set1(c_)) {
    constexpr std::uintptr_t align = 16 * sizeof(G);
    const auto mis =
        static_cast<index_t>((reinterpret_cast<std::uintptr_t>(o) % align) / sizeof(G));
    if (mis != 0) {
      j = std::min<index_t>(n, 16 - mis);
      store_tail(o, _mm512_mul_ps(c, v::load_tail(e, static_cast<int>(j))), j);
    }
  }
  GRPO_FORCEINLINE void step() noexcept {
    if (j + 32 <= n) {
      stream(o + j, _mm512_mul_ps(c, v::load(e + j)));
      stream(o + j + 16, _mm512_mul_ps(c, v::load(e + j + 16)));
      j += 32;
    }
  }
  void finish() noexcept {
    for (; j + 16 <= n; j += 16) stream(o + j, _mm512_mul_ps(c, v::load(e + j)));
    if (j < n)
      store_tail(o + j, _mm512_mul_ps(c, v::load_tail(e + j, static_cast<int>(n - j))), n - j);
    j = n;
  }
};

/// Maximum of n widened elements (two independent accumulators). NaN handling as vmax: a NaN may
/// or may not survive; row_stats catches it through the sum of exponentials. (A variant that also
/// took the minimum, so that blocks whose range lies within d_floor could skip the clamp, saved
/// 2 of ~17 ops in the sweep but measured slower from memory: 0.163 vs 0.151 ns per fp32 logit.)
template <class T>
GRPO_FORCEINLINE float block_max(const T* x, index_t n) noexcept {
  vf m0 = v::set1(-math::infinity<float>()), m1 = m0;
  index_t j = 0;
  for (; j + 32 <= n; j += 32) {
    m0 = _mm512_max_ps(m0, load(x + j));
    m1 = _mm512_max_ps(m1, load(x + j + 16));
  }
  if (j + 16 <= n) {
    m0 = _mm512_max_ps(m0, load(x + j));
    j += 16;
  }
  if (j < n) m1 = _mm512_max_ps(m1, load_tail(x + j, n - j));
  return v::hmax(_mm512_max_ps(m0, m1));
}

/// One vector of the statistics sweep: d = beta (x - mb) (Unit: beta = 1, no multiply), clamped
/// at d_floor, e = exp(d) with exactly 0 for d <= d_floor (masked -inf entries included); NaN
/// (a NaN or +inf logit) passes the mask and the clamp (vmaxps returns its second operand) and
/// reaches the sums. Returns e; dc receives the clamped d.
template <bool Unit>
GRPO_FORCEINLINE vf exp_term(vf x, vf vmb, vf vbeta, vf& dc) noexcept {
  const vf fl = v::set1(d_floor);
  vf d = _mm512_sub_ps(x, vmb);
  if constexpr (!Unit) d = _mm512_mul_ps(d, vbeta);
  const __mmask16 keep = _mm512_cmp_ps_mask(d, fl, _CMP_NLE_UQ);
  dc = _mm512_max_ps(fl, d);
  return _mm512_maskz_mov_ps(keep, v::exp_fast(dc));  // folded into vscalefps' zero-masking
}

/// block_exp_sums on n widened elements of x: s = sum e_j, t = sum e_j d_j, e_j written to e
/// when Store; side.step() once per 32 elements (side work of the fused pipeline).
template <bool Unit, bool Store, class T, class Side>
GRPO_FORCEINLINE void block_sums(const T* GRPO_RESTRICT x, float* GRPO_RESTRICT e, index_t n,
                                 float mb, float beta, float& s, float& t, Side& side) noexcept {
  const vf vmb = v::set1(mb), vb = v::set1(beta);
  vf s0 = _mm512_setzero_ps(), s1 = s0, t0 = s0, t1 = s0;
  index_t j = 0;
  for (; j + 32 <= n; j += 32) {
    prefetch_ahead(x + j);
    side.step();
    vf d0, d1;
    const vf e0 = exp_term<Unit>(load(x + j), vmb, vb, d0);
    const vf e1 = exp_term<Unit>(load(x + j + 16), vmb, vb, d1);
    s0 = _mm512_add_ps(s0, e0);
    t0 = _mm512_fmadd_ps(e0, d0, t0);
    s1 = _mm512_add_ps(s1, e1);
    t1 = _mm512_fmadd_ps(e1, d1, t1);
    if constexpr (Store) {
      _mm512_storeu_ps(e + j, e0);
      _mm512_storeu_ps(e + j + 16, e1);
    }
  }
  if (j + 16 <= n) {
    vf d0;
    const vf e0 = exp_term<Unit>(load(x + j), vmb, vb, d0);
    s0 = _mm512_add_ps(s0, e0);
    t0 = _mm512_fmadd_ps(e0, d0, t0);
    if constexpr (Store) _mm512_storeu_ps(e + j, e0);
    j += 16;
  }
  if (j < n) {
    vf d0;
    const vf e0 = exp_term<Unit>(load_tail(x + j, n - j), vmb, vb, d0);
    s0 = _mm512_add_ps(s0, e0);
    t0 = _mm512_fmadd_ps(e0, d0, t0);
    if constexpr (Store)
      _mm512_mask_storeu_ps(e + j, static_cast<__mmask16>((1u << (n - j)) - 1u), e0);
  }
  s = v::hsum(_mm512_add_ps(s0, s1));
  t = v::hsum(_mm512_add_ps(t0, t1));
}

/// (count of entries equal to mb) - 1 + (sum of e_j over the others): the exact e_blk of a block
/// dominated by its maximum (rare: s - 1 < 2^-6).
template <bool Unit, class T>
float dominated_rest(const T* x, index_t n, float mb, float beta) noexcept {
  const vf vmb = v::set1(mb), vb = v::set1(beta);
  vf rest = _mm512_setzero_ps();
  int count = 0;
  for (index_t j = 0; j < n; j += 16) {
    const vf xv = j + 16 <= n ? load(x + j) : load_tail(x + j, n - j);
    const __mmask16 top = _mm512_cmp_ps_mask(xv, vmb, _CMP_EQ_OQ);
    count += __builtin_popcount(static_cast<unsigned>(top));
    vf dc;
    rest = _mm512_mask_add_ps(rest, static_cast<__mmask16>(~top), rest,
                              exp_term<Unit>(xv, vmb, vb, dc));
  }
  return static_cast<float>(count - 1) + v::hsum(rest);
}

/// No pending gradient row.
struct no_pending {};

/// A gradient row of row_grad_cached (g_entropy = 0) whose coefficients are known, written block by
/// block during the statistics pass of another row of the same length (row_stats_pipelined).
template <class G>
struct pending_row {
  const row_cache* cache = nullptr;
  G* out = nullptr;  // contiguous
  row_summary rs;
  float beta = 1.0f, g_logp = 0.0f, x_y = 0.0f;
  index_t y = -1;
  /// o_j = c e_j on block b: c = -beta g q_max(b), q_max(b) = exp(beta (mb - m) - log s).
  float coef(index_t b) const noexcept {
    const float mb = cache->bmax[static_cast<std::size_t>(b)];
    const float scale = mb > -math::infinity<float>()
                            ? math::exp(ops::log_softmax(mb, rs.m, rs.log_s, beta))
                            : 0.0f;
    return -beta * g_logp * scale;
  }
};

/// row_stats on a contiguous row (see there), the AVX-512 spelling. With a pending_row, block b of
/// that row's gradient is written during block b of this sweep; `pend_done` receives the first
/// element of the pending row not yet written (the caller completes it after an early return).
template <bool Unit, class T, class Pend = no_pending>
online_lse row_stats(const T* row, index_t V, float beta, row_status& status, row_cache* cache,
                     Pend* pend = nullptr, index_t* pend_done = nullptr) {
  constexpr bool has_pend = !std::is_same_v<Pend, no_pending>;
  online_lse st(beta);
  status = row_status::ok;
  for (index_t j0 = 0; j0 < V; j0 += block) {
    const index_t n = std::min(block, V - j0);
    const T* x = row + j0;
    const float mb = block_max(x, n);
    if (cache) cache->bmax[static_cast<std::size_t>(j0 / block)] = mb;
    if (!(mb > -math::infinity<float>())) {
      for (index_t j = 0; j < n; ++j)
        if (!(static_cast<float>(widen(x[j])) == -math::infinity<float>())) {
          status = row_status::non_finite;
          return st;
        }
      if (cache) std::fill_n(cache->e.data() + j0, n, 0.0f);
      if constexpr (has_pend) {
        side_block sb(pend->cache->e.data() + j0, pend->out + j0, n, pend->coef(j0 / block));
        sb.finish();
        *pend_done = j0 + n;
      }
      continue;
    }
    float s = 0.0f, t = 0.0f;
    const auto sweep = [&](auto& side) {
      if (cache)
        block_sums<Unit, true>(x, cache->e.data() + j0, n, mb, beta, s, t, side);
      else
        block_sums<Unit, false>(x, nullptr, n, mb, beta, s, t, side);
    };
    if constexpr (has_pend) {
      side_block sb(pend->cache->e.data() + j0, pend->out + j0, n, pend->coef(j0 / block));
      sweep(sb);
      sb.finish();
      *pend_done = j0 + n;
    } else {
      no_side none;
      sweep(none);
    }
    if (!(s <= std::numeric_limits<float>::max())) {
      status = row_status::non_finite;
      return st;
    }
    float e_blk = s - 1.0f;
    if (e_blk < 0.015625f) e_blk = dominated_rest<Unit>(x, n, mb, beta);
    st.merge(online_lse::from_partial(beta, mb, e_blk, t));
  }
  if (st.empty()) status = row_status::all_masked;
  return st;
}

}  // namespace x512
#endif

/// One streaming pass over a row of V logits: the online_lse state (max m in raw units, e = s - 1,
/// t = sum q d) at inverse temperature beta. Each block is reduced on its own maximum and merged
/// into the row state (online softmax, Milakov & Gimelshein 2018), so the row is read from memory
/// once.
template <class T>
online_lse row_stats(const T* row, index_t stride, index_t V, float beta, scratch& w,
                     row_status& status, row_cache* cache = nullptr) {
  if (cache) {
    cache->e.resize(static_cast<std::size_t>(V));
    cache->bmax.resize(static_cast<std::size_t>((V + block - 1) / block));
  }
#if GRPO_HAS_AVX512
  if (stride == 1)
    return beta == 1.0f ? x512::row_stats<true>(row, V, beta, status, cache)
                        : x512::row_stats<false>(row, V, beta, status, cache);
#endif
  online_lse st(beta);
  status = row_status::ok;
  for (index_t j0 = 0; j0 < V; j0 += block) {
    const index_t n = std::min(block, V - j0);
    // A contiguous fp32 row is reduced where it lies; other dtypes and strides are widened into
    // the L1 scratch block first.
    const float* x = w.a;
    if constexpr (std::is_same_v<T, float>) {
      if (stride == 1)
        x = row + j0;
      else
        load(row + j0 * stride, stride, n, w.a);
    } else {
      load(row + j0 * stride, stride, n, w.a);
    }
    const float mb = vmax(x, n);  // NaN: caught by the sum below
    if (cache) cache->bmax[static_cast<std::size_t>(j0 / block)] = mb;
    if (!(mb > -math::infinity<float>())) {
      // Masked block (all -inf): no mass. A NaN hidden by the max is caught by the scan.
      for (index_t j = 0; j < n; ++j)
        if (!(x[j] == -math::infinity<float>())) {
          status = row_status::non_finite;
          return st;
        }
      if (cache) std::fill_n(cache->e.data() + j0, n, 0.0f);
      continue;
    }
    // d_j = beta (x_j - mb) <= 0, exact for x_j near mb; clamped at d_floor so that exp stays a
    // normal float (no denormal slow path, q d finite for -inf); entries at or below the floor
    // (masked -inf ones included) contribute exactly 0. NaN stays NaN (comparisons false). The
    // exponentials go straight into the row cache when there is one.
    float* e = cache ? cache->e.data() + j0 : w.b;
    float s = 0.0f, t = 0.0f;
    block_exp_sums(x, e, n, mb, beta, s, t);
    if (!(s <= std::numeric_limits<float>::max())) {  // NaN or +inf logit (inf - inf = NaN)
      status = row_status::non_finite;
      return st;
    }
    // The block maximum contributes exactly exp(0) = 1, so e_blk = s - 1. When the other terms are
    // small (one dominant logit, s - 1 < 2^-6) s - 1 has lost their digits: recompute it as
    // (count of maxima - 1) + sum over the others, exact whatever their size (rare, L1-resident).
    float e_blk = s - 1.0f;
    if (e_blk < 0.015625f) {
      float rest = 0.0f, count = 0.0f;
      for (index_t j = 0; j < n; ++j) {
        const bool top = x[j] == mb;
        count += top ? 1.0f : 0.0f;
        rest += top ? 0.0f : e[j];
      }
      e_blk = (count - 1.0f) + rest;
    }
    st.merge(online_lse::from_partial(beta, mb, e_blk, t));
  }
  if (st.empty()) status = row_status::all_masked;
  return st;
}

#if GRPO_HAS_AVX512
namespace x512 {

/// Writes o[0, n) from f(j, cnt), the 16-float vector of elements j.. (cnt < 16: a partial vector
/// whose first cnt lanes are used). Stream: non-temporal stores after a head that aligns o + j to
/// 16 elements; the caller issues _mm_sfence() before any other store to these lines.
template <bool Stream, class G, class F>
GRPO_FORCEINLINE void write_block(G* o, index_t n, F&& f) noexcept {
  index_t j = 0;
  if constexpr (Stream) {
    constexpr std::uintptr_t align = 16 * sizeof(G);
    const auto mis =
        static_cast<index_t>((reinterpret_cast<std::uintptr_t>(o) % align) / sizeof(G));
    if (mis != 0) {
      const index_t h = std::min<index_t>(n, 16 - mis);
      store_tail(o, f(index_t(0), h), h);
      j = h;
    }
    for (; j + 16 <= n; j += 16) stream(o + j, f(j, index_t(16)));
  } else {
    for (; j + 16 <= n; j += 16) store(o + j, f(j, index_t(16)));
  }
  if (j < n) store_tail(o + j, f(j, n - j), n - j);
}

/// block_grad on a contiguous row segment (AVX-512): per 16 logits, log q = beta (x - m) - log s,
/// q = exp(log q) with exactly 0 at or below d_floor (masked entries included), and the
/// non-target gradient of ops::log_softmax_grad_nontarget rewritten as one product
///   beta [-g q - h q (log q + H)] = q (a log q + b),  a = -beta h,  b = -beta (g + h H),
/// (GradH = false: a = 0, o = b q). `o` may equal `x` (in place): each vector is loaded before its
/// store.
template <bool Unit, bool GradH, bool Stream, class T, class G>
GRPO_FORCEINLINE void block_grad(const T* x, G* o, index_t n, float beta, const row_summary& rs,
                                 float g_logp, float g_entropy) noexcept {
  const vf vm = v::set1(rs.m), vls = v::set1(rs.log_s), vb = v::set1(beta), fl = v::set1(d_floor);
  const vf a = v::set1(-beta * g_entropy), b = v::set1(-beta * (g_logp + g_entropy * rs.entropy));
  write_block<Stream>(o, n, [&](index_t j, index_t cnt) noexcept {
    vf xv;
    if (cnt == 16) {
      if (j % 32 == 0) prefetch_ahead(x + j);
      xv = load(x + j);
    } else {
      xv = load_tail(x + j, cnt);
    }
    vf lq = _mm512_sub_ps(xv, vm);
    lq = Unit ? _mm512_sub_ps(lq, vls) : _mm512_fmsub_ps(lq, vb, vls);
    const __mmask16 keep = _mm512_cmp_ps_mask(lq, fl, _CMP_NLE_UQ);
    const vf lqc = _mm512_max_ps(fl, lq);
    const vf q = v::exp_fast(lqc);
    return _mm512_maskz_mul_ps(keep, q, GradH ? _mm512_fmadd_ps(a, lqc, b) : b);
  });
}

/// The gradient sweep of row_grad_cached over one block: o_j = c e_j.
template <bool Stream, class G>
GRPO_FORCEINLINE void block_scale(const float* GRPO_RESTRICT e, G* GRPO_RESTRICT o, index_t n,
                                  float c) noexcept {
  const vf vc = v::set1(c);
  write_block<Stream>(o, n, [&](index_t j, index_t cnt) noexcept {
    return _mm512_mul_ps(vc, cnt == 16 ? v::load(e + j) : v::load_tail(e + j, int(cnt)));
  });
}

}  // namespace x512
#endif

/// Writes the gradient of  g_logp * log q_y + g_entropy * H  w.r.t. the raw logits of one row into
/// `out` (dtype G, stride ostride). `x_y` is the target's raw logit read before any in-place write;
/// y < 0 means the target lies outside this row segment (a vocabulary block of the fused linear
/// path): only the -g_logp q_j terms are written. May alias `row` exactly (in place): every block
/// is loaded before it is stored.
/// The gradient sweep of one block of n raw logits x into o (both L1-resident or a contiguous fp32
/// row segment): log q_j, q_j = exp(log q_j) (below d_floor q_j < 1.6e-38 is written as 1.6e-38,
/// absolute error < 2e-38, instead of a denormal; masked entries with log q = -inf get exactly 0
/// from ops::masked_prob), then the non-target gradient term, in one vectorised pass.
inline void block_grad(const float* GRPO_RESTRICT x, float* GRPO_RESTRICT o, index_t n, float beta,
                       const row_summary& rs, float g_logp, float g_entropy) noexcept {
  const float m = rs.m, log_s = rs.log_s, h = rs.entropy;
  for (index_t j = 0; j < n; ++j) {
    const float lq = ops::log_softmax(x[j], m, log_s, beta);
    // log q <= 0 up to rounding, floored at -87: inside fast_exp_bounded's range.
    const float q = math::fast_exp_bounded(math::select(lq < d_floor, d_floor, lq));
    o[j] = ops::log_softmax_grad_nontarget(lq, q, g_logp, g_entropy, h, beta);
  }
}

/// Writes the gradient of  g_logp * log q_y + g_entropy * H  w.r.t. the raw logits of one row into
/// `out` (dtype G, stride ostride). `x_y` is the target's raw logit read before any in-place write;
/// y < 0 means the target lies outside this row segment (a vocabulary block of the fused linear
/// path): only the -g_logp q_j terms are written. May alias `row` exactly (in place): every block
/// is loaded before it is stored.
template <class T, class G>
void row_grad(const T* row, index_t stride, index_t V, float beta, const row_summary& rs, index_t y,
              float x_y, float g_logp, float g_entropy, G* out, index_t ostride, scratch& w,
              bool stream = false) noexcept {
  (void)stream;  // non-temporal stores exist on the AVX-512 path only
  const float gl = g_logp;
#if GRPO_HAS_AVX512
  if (stride == 1 && ostride == 1) {
    // Contiguous rows: one streaming sweep per block straight from the row to the output (an
    // in-place output is fine: each vector is loaded before it is stored).
    const auto sweep = [&](auto unit, auto gradh, auto nt) {
      for (index_t j0 = 0; j0 < V; j0 += block)
        x512::block_grad<decltype(unit)::value, decltype(gradh)::value, decltype(nt)::value>(
            row + j0, out + j0, std::min(block, V - j0), beta, rs, gl, g_entropy);
    };
    const auto with = [&](auto nt) {
      using yes = std::true_type;
      using no = std::false_type;
      if (beta == 1.0f)
        g_entropy != 0.0f ? sweep(yes{}, yes{}, nt) : sweep(yes{}, no{}, nt);
      else
        g_entropy != 0.0f ? sweep(no{}, yes{}, nt) : sweep(no{}, no{}, nt);
    };
    if (stream) {
      with(std::true_type{});
      _mm_sfence();  // order the non-temporal stores before the target's store below
    } else {
      with(std::false_type{});
    }
    if (y >= 0) {
      const float lq = ops::log_softmax(x_y, rs.m, rs.log_s, beta);
      out[y] = narrow<G>(
          ops::log_softmax_grad(lq, math::exp(lq), true, gl, g_entropy, rs.entropy, beta));
    }
    return;
  }
#endif
  // fp32 contiguous rows are read (and fp32 contiguous gradients written) in place of the scratch
  // copies; an in-place gradient (out == row) goes through the scratch block so that the sweep's
  // input and output never alias.
  const bool direct_in = std::is_same_v<T, float> && stride == 1;
  const bool direct_out = std::is_same_v<G, float> && ostride == 1 &&
                          static_cast<const void*>(out) != static_cast<const void*>(row);
  for (index_t j0 = 0; j0 < V; j0 += block) {
    const index_t n = std::min(block, V - j0);
    const float* x = w.a;
    if constexpr (std::is_same_v<T, float>) {
      if (direct_in)
        x = row + j0;
      else
        load(row + j0 * stride, stride, n, w.a);
    } else {
      load(row + j0 * stride, stride, n, w.a);
    }
    if constexpr (std::is_same_v<G, float>) {
      if (direct_out) {
        block_grad(x, out + j0, n, beta, rs, gl, g_entropy);
        continue;
      }
    }
    block_grad(x, w.b, n, beta, rs, gl, g_entropy);
    store(w.b, n, out + j0 * ostride, ostride);
  }
  if (y >= 0) {  // the target element, with the exact 1 - q_y
    const float lq = ops::log_softmax(x_y, rs.m, rs.log_s, beta);
    out[y * ostride] =
        narrow<G>(ops::log_softmax_grad(lq, math::exp(lq), true, gl, g_entropy, rs.entropy, beta));
  }
}

/// row_grad for g_entropy = 0 from a row_cache filled by row_stats on the same row: the -g q_j
/// terms as ops::log_softmax_grad_nontarget with q_j = e_j exp(beta (mb - m) - log s) (its log q
/// argument is unused when g_entropy = 0), then the exact target term. Never reads the logits.
template <class G>
void row_grad_cached(const row_cache& c, index_t V, float beta, const row_summary& rs, index_t y,
                     float x_y, float g_logp, G* out, index_t ostride, scratch& w,
                     bool stream = false) noexcept {
  (void)stream;  // non-temporal stores exist on the AVX-512 path only
  for (index_t j0 = 0; j0 < V; j0 += block) {
    const index_t n = std::min(block, V - j0);
    const float mb = c.bmax[static_cast<std::size_t>(j0 / block)];
    // Scale of the block: exp(beta (mb - m) - log s) <= 1; 0 for a masked block (mb = -inf).
    const float scale = mb > -math::infinity<float>()
                            ? math::exp(ops::log_softmax(mb, rs.m, rs.log_s, beta))
                            : 0.0f;
    const float* GRPO_RESTRICT e = c.e.data() + j0;
#if GRPO_HAS_AVX512
    if (ostride == 1) {
      // o_j = -beta g q_j (ops::log_softmax_grad_nontarget with g_entropy = 0) = c e_j.
      if (stream)
        x512::block_scale<true>(e, out + j0, n, -beta * g_logp * scale);
      else
        x512::block_scale<false>(e, out + j0, n, -beta * g_logp * scale);
      continue;
    }
#endif
    // An fp32 contiguous gradient is written directly, other dtypes / strides via the scratch.
    float* GRPO_RESTRICT o = w.b;
    if constexpr (std::is_same_v<G, float>) o = ostride == 1 ? out + j0 : w.b;
    for (index_t j = 0; j < n; ++j)
      o[j] = ops::log_softmax_grad_nontarget(0.0f, scale * e[j], g_logp, 0.0f, 0.0f, beta);
    if (o == w.b) store(w.b, n, out + j0 * ostride, ostride);
  }
#if GRPO_HAS_AVX512
  if (stream) _mm_sfence();  // order the non-temporal stores before the target's store below
#endif
  if (y >= 0) {
    const float lq = ops::log_softmax(x_y, rs.m, rs.log_s, beta);
    out[y * ostride] =
        narrow<G>(ops::log_softmax_grad(lq, math::exp(lq), true, g_logp, 0.0f, 0.0f, beta));
  }
}

#if GRPO_HAS_AVX512
/// row_stats of a contiguous row, keeping its exps in `cache`, that also writes the pending
/// gradient row `p` (row_grad_cached's values through non-temporal stores, block b of p during
/// block b of this sweep): the software pipeline of the fused step, in which the gradient of the
/// previous chunk streams to memory while this chunk's exps are computed. p's row has the same
/// length V and its own cache. On return p is complete, also after an error in this row.
template <class T, class G>
online_lse row_stats_pipelined(const T* row, index_t V, float beta, row_status& status,
                               row_cache& cache, x512::pending_row<G>& p) {
  cache.e.resize(static_cast<std::size_t>(V));
  cache.bmax.resize(static_cast<std::size_t>((V + block - 1) / block));
  index_t done = 0;
  const online_lse st = beta == 1.0f
                            ? x512::row_stats<true>(row, V, beta, status, &cache, &p, &done)
                            : x512::row_stats<false>(row, V, beta, status, &cache, &p, &done);
  for (index_t j0 = done; j0 < V; j0 += block)  // what an early return left of p
    x512::block_scale<true>(p.cache->e.data() + j0, p.out + j0, std::min(block, V - j0),
                            p.coef(j0 / block));
  _mm_sfence();  // order the non-temporal stores before the target's store
  if (p.y >= 0) {
    const float lq = ops::log_softmax(p.x_y, p.rs.m, p.rs.log_s, p.beta);
    p.out[p.y] =
        narrow<G>(ops::log_softmax_grad(lq, math::exp(lq), true, p.g_logp, 0.0f, 0.0f, p.beta));
  }
  return st;
}
#endif

/// Validates the temperature and returns beta = 1/T.
/// T must make 1/T a normal float (grpo::detail::checked_inverse_temperature): a 1e-45 temperature
/// is reported as such, not as "logits contain NaN / +inf".
inline float inverse_temperature(float T) {
  (void)checked_inverse_temperature(static_cast<double>(T), "logprob_options::temperature");
  return 1.0f / T;  // the float quotient, as always (bit-for-bit)
}

/// Checks every id against [0, V) (or ignore_index) before any row is touched.
template <class I>
void check_ids(strided_view<I, 1> ids, index_t V, std::int64_t ignore_index, const char* what) {
  for (index_t i = 0; i < ids.extent(0); ++i) {
    const auto y = static_cast<std::int64_t>(ids(i));
    GRPO_EXPECTS(y == ignore_index || (y >= 0 && y < V), out_of_range,
                 std::string(what) + ": id " + std::to_string(y) + " at row " + std::to_string(i) +
                     " is outside [0, " + std::to_string(V) + ") and is not ignore_index");
  }
}

/// Records the first failing row of a parallel loop (exceptions must not cross an OpenMP region).
struct first_error {
  std::atomic<index_t> row{std::numeric_limits<index_t>::max()};
  std::atomic<int> kind{0};
  void set(index_t r, row_status s) noexcept {
    index_t cur = row.load(std::memory_order_relaxed);
    while (r < cur && !row.compare_exchange_weak(cur, r)) {
    }
    if (row.load() == r) kind.store(static_cast<int>(s));
  }
  void raise(const char* what) const {
    const index_t r = row.load();
    if (r == std::numeric_limits<index_t>::max()) return;
    if (kind.load() == static_cast<int>(row_status::all_masked))
      GRPO_THROW(bad_value, std::string(what) + ": logits row " + std::to_string(r) +
                                " is entirely -inf (no token has probability mass)");
    GRPO_THROW(bad_value,
               std::string(what) + ": logits row " + std::to_string(r) + " contains NaN or +inf");
  }
};

/// Runs body(i) for i in [0, n), threaded with OpenMP when available.
template <class F>
void parallel_rows(index_t n, int num_threads, F&& body) {
#if defined(_OPENMP)
  const int nt = num_threads > 0 ? num_threads : omp_get_max_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (n > 1 && nt > 1)
  for (index_t i = 0; i < n; ++i) body(i);
#else
  (void)num_threads;
  for (index_t i = 0; i < n; ++i) body(i);
#endif
}

/// Runs body(begin, end) on contiguous, ordered ranges of [0, n), one per thread (OpenMP), for
/// loops that carry state from one index to the next (the fused step's pipeline).
template <class F>
void parallel_ranges(index_t n, int num_threads, F&& body) {
#if defined(_OPENMP)
  const int nt = num_threads > 0 ? num_threads : omp_get_max_threads();
  if (n > 1 && nt > 1) {
#pragma omp parallel num_threads(nt)
    {
      const auto T = static_cast<index_t>(omp_get_num_threads());
      const auto t = static_cast<index_t>(omp_get_thread_num());
      const index_t b = n * t / T, e = n * (t + 1) / T;
      if (b < e) body(b, e);
    }
    return;
  }
#else
  (void)num_threads;
#endif
  if (n > 0) body(index_t(0), n);
}

template <class V>
bool requested(const V& v) noexcept {
  return v.data_handle() != nullptr;
}

/// The logprob_path of row_stats on rows of element type T with vocabulary stride `stride` (mirrors
/// its branches).
template <class T>
logprob_report make_report(index_t rows, index_t stride) {
  logprob_report r;
  r.eigen = GRPO_LOGPROB_USE_EIGEN != 0;
  r.rows = rows;
  if (rows == 0) return r;
#if GRPO_HAS_AVX512
  if (stride == 1) {
    r.path = logprob_path::avx512;
    return r;
  }
#endif
  r.path = std::is_same_v<T, float> && stride == 1 ? logprob_path::block_direct
                                                   : logprob_path::block_widened;
  return r;
}

}  // namespace detail::GRPO_LOGPROB_ABI
namespace detail {
namespace lp = GRPO_LOGPROB_ABI;
}

// The public entry points are declared in an ABI-tagged inline namespace, like the kernels.
inline namespace GRPO_LOGPROB_ABI {

/// Selective log-softmax forward: for each row i of `logits` [N, V] and its sampled id y_i,
///   logp[i] = log softmax(logits[i] / T)[y_i],   lse[i] = logsumexp(logits[i] / T),
///   entropy[i] = -sum_j q_ij log q_ij,
/// accumulated in fp32 from fp32 / bf16 / fp16 storage, in one streaming read of each row (online
/// softmax over L1 blocks), any row and vocabulary stride, 64-bit indexing. Masked vocabulary
/// entries
/// (-inf) have probability 0 exactly; all-negative rows are exact (the running max starts at -inf).
/// A target with logit -inf gets logp = -inf (probability zero, consistent).
///
/// @param logits  [N, V] logits, element type float, bfloat16 or float16 (const or not).
/// @param ids     [N] sampled token ids (any integer type); ids equal to opt.ignore_index mark rows
///                whose outputs are written as 0.
/// @param logp    [N] float output (required).
/// @param lse     [N] float output, or a default-constructed view to skip.
/// @param entropy [N] float output, or a default-constructed view to skip.
/// @pre host memory; ids in [0, V) or ignore_index; no NaN / +inf in non-ignored rows and at least
///      one finite logit per non-ignored row; T finite and > 0.
/// @post outputs of every non-ignored row written; throws grpo::error ([grpo.out_of_range] for ids,
///       [grpo.bad_value] for NaN/inf rows, [grpo.shape_mismatch], [grpo.bad_option]) before
///       writing anything on a bad id or option; on a bad row, after the other rows are written.
/// @return the row kernels that ran (logprob_report) and the number of rows computed.
template <class LT, class IT>
logprob_report selective_log_softmax(strided_view<LT, 2> logits, strided_view<IT, 1> ids,
                                     strided_view<float, 1> logp, strided_view<float, 1> lse = {},
                                     strided_view<float, 1> entropy = {},
                                     const logprob_options& opt = {}) {
  using T = std::remove_const_t<LT>;
  static_assert(
      std::is_same_v<T, float> || std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>,
      "selective_log_softmax: logits must be float, grpo::bfloat16 or grpo::float16");
  static_assert(std::is_integral_v<std::remove_const_t<IT>>, "ids must be integers");
  namespace lp = detail::lp;
  const index_t N = logits.extent(0), V = logits.extent(1);
  expect_host(logits, "logits");
  GRPO_EXPECTS(V > 0 || N == 0, shape_mismatch, "logits: vocabulary extent must be > 0");
  expect_extents(ids, {N}, "ids");
  GRPO_EXPECTS(lp::requested(logp) || N == 0, shape_mismatch, "logp: output view is required");
  expect_extents(logp, {N}, "logp");
  if (lp::requested(lse)) expect_extents(lse, {N}, "lse");
  if (lp::requested(entropy)) expect_extents(entropy, {N}, "entropy");
  // Outputs: distinct elements, no memory shared with the inputs or with each other.
  expect_distinct_elements(logp, "logp");
  expect_distinct_elements(lse, "lse");
  expect_distinct_elements(entropy, "entropy");
  expect_disjoint(logp, logits, "logp", "logits");
  expect_disjoint(lse, logits, "lse", "logits");
  expect_disjoint(entropy, logits, "entropy", "logits");
  expect_disjoint(logp, ids, "logp", "ids");
  expect_disjoint(lse, ids, "lse", "ids");
  expect_disjoint(entropy, ids, "entropy", "ids");
  expect_disjoint(lse, logp, "lse", "logp");
  expect_disjoint(entropy, logp, "entropy", "logp");
  expect_disjoint(entropy, lse, "entropy", "lse");
  const float beta = lp::inverse_temperature(opt.temperature);
  lp::check_ids(ids, V, opt.ignore_index, "selective_log_softmax: ids");
  const bool want_lse = lp::requested(lse), want_h = lp::requested(entropy);
  index_t rows = 0;
  for (index_t i = 0; i < N; ++i) rows += static_cast<std::int64_t>(ids(i)) != opt.ignore_index;

  lp::first_error err;
  lp::parallel_rows(N, opt.num_threads, [&](index_t i) {
    const auto y = static_cast<std::int64_t>(ids(i));
    if (y == opt.ignore_index) {
      logp(i) = 0.0f;
      if (want_lse) lse(i) = 0.0f;
      if (want_h) entropy(i) = 0.0f;
      return;
    }
    lp::scratch w;
    lp::row_status status;
    const T* row = &logits(i, 0);
    const online_lse st = lp::row_stats(row, logits.stride(1), V, beta, w, status);
    if (status != lp::row_status::ok) {
      err.set(i, status);
      return;
    }
    const float x_y = static_cast<float>(widen(row[y * logits.stride(1)]));
    logp(i) = ops::log_softmax(x_y, st.m, st.log_sum(), beta);
    if (want_lse) lse(i) = st.lse();
    if (want_h) entropy(i) = st.entropy();
  });
  err.raise("selective_log_softmax");
  return lp::make_report<T>(rows, logits.stride(1));
}

/// Backward of the selective log-softmax: writes into `grad_logits` [N, V]
///   dL/dx_ij = (1/T) [ g_logp_i (delta_{j y_i} - q_ij) - g_entropy_i q_ij (log q_ij + H_i) ]
/// for L = sum_i g_logp_i logp_i + g_entropy_i H_i. The row statistics are recomputed from the
/// logits (one streaming pass, then the gradient pass reads the row again, from cache for rows up
/// to ~1 MiB), so no saved state is needed and the result is exact at any logit offset.
///
/// @param grad_logp    [N] dL/dlogp (required).
/// @param grad_entropy [N] dL/dH, or a default-constructed view for none.
/// @param grad_logits  [N, V] output of type float, bfloat16 or float16. It may be the logits
/// buffer
///                     itself (same pointer and strides, same dtype): the gradient then overwrites
///                     the logits in place. Any other overlap is not allowed.
/// @pre as selective_log_softmax; ignored rows get a zero gradient row.
/// @post every row of grad_logits written (zero for ignored rows).
/// @return the path the statistics pass took, the rows computed and how many used the cache.
template <class LT, class IT, class GL, class GH, class G>
logprob_report selective_log_softmax_backward(strided_view<LT, 2> logits, strided_view<IT, 1> ids,
                                              strided_view<GL, 1> grad_logp,
                                              strided_view<GH, 1> grad_entropy,
                                              strided_view<G, 2> grad_logits,
                                              const logprob_options& opt = {}) {
  using T = std::remove_const_t<LT>;
  static_assert(
      std::is_same_v<T, float> || std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>,
      "selective_log_softmax_backward: logits must be float, bfloat16 or float16");
  static_assert(!std::is_const_v<G>, "grad_logits must be writable");
  static_assert(
      std::is_same_v<G, float> || std::is_same_v<G, bfloat16> || std::is_same_v<G, float16>,
      "grad_logits must be float, bfloat16 or float16");
  namespace lp = detail::lp;
  const index_t N = logits.extent(0), V = logits.extent(1);
  expect_host(logits, "logits");
  expect_host(grad_logits, "grad_logits");
  expect_extents(ids, {N}, "ids");
  expect_extents(grad_logp, {N}, "grad_logp");
  const bool has_gh = lp::requested(grad_entropy);
  if (has_gh) expect_extents(grad_entropy, {N}, "grad_entropy");
  expect_extents(grad_logits, {N, V}, "grad_logits");
  expect_distinct_elements(grad_logits, "grad_logits");
  expect_disjoint(grad_logits, ids, "grad_logits", "ids");
  expect_disjoint(grad_logits, grad_logp, "grad_logits", "grad_logp");
  expect_disjoint(grad_logits, grad_entropy, "grad_logits", "grad_entropy");
  // In place only as an exact alias (same start, extents, strides, dtype); any other overlap
  // would let a row's gradient overwrite logits another row (or the row itself) still reads.
  const void* gp = static_cast<const void*>(grad_logits.data_handle());
  const void* xp = static_cast<const void*>(logits.data_handle());
  if (gp == xp && N > 0 && V > 0)
    GRPO_EXPECTS((std::is_same_v<T, G> && grad_logits.strides() == logits.strides()), bad_option,
                 "grad_logits: in-place gradient needs the logits' dtype and strides");
  expect_no_partial_overlap(grad_logits, logits, "grad_logits", "logits");
  const float beta = lp::inverse_temperature(opt.temperature);
  lp::check_ids(ids, V, opt.ignore_index, "selective_log_softmax_backward: ids");
  // Upstream gradients of the rows that are differentiated must be finite (O(N), not O(N V)):
  // an infinite g_logp would turn the whole gradient row into inf / NaN. The same pass counts the
  // rows the report names (gh == 0 takes row_grad_cached, as the row loop below).
  index_t rows = 0, cached = 0;
  for (index_t i = 0; i < N; ++i) {
    if (static_cast<std::int64_t>(ids(i)) == opt.ignore_index) continue;
    detail::expect_finite_at(static_cast<double>(grad_logp(i)), "grad_logp", i, 0);
    if (has_gh)
      detail::expect_finite_at(static_cast<double>(grad_entropy(i)), "grad_entropy", i, 0);
    ++rows;
    cached += !has_gh || static_cast<float>(grad_entropy(i)) == 0.0f;
  }
  auto report = lp::make_report<T>(rows, logits.stride(1));
  report.cached_rows = cached;

  lp::first_error err;
  lp::parallel_rows(N, opt.num_threads, [&](index_t i) {
    const auto y = static_cast<std::int64_t>(ids(i));
    G* out = &grad_logits(i, 0);
    const index_t os = grad_logits.stride(1);
    if (y == opt.ignore_index) {
      for (index_t j = 0; j < V; ++j) out[j * os] = G{};
      return;
    }
    lp::scratch w;
    lp::row_status status;
    const T* row = &logits(i, 0);
    const index_t xs = logits.stride(1);
    const float gh = has_gh ? static_cast<float>(grad_entropy(i)) : 0.0f;
    // Without an entropy term the statistics pass keeps its exps and the gradient pass reuses them.
    thread_local lp::row_cache cache;
    lp::row_cache* cp = gh == 0.0f ? &cache : nullptr;
    const float x_y = static_cast<float>(widen(row[y * xs]));  // before an in-place overwrite
    const online_lse st = lp::row_stats(row, xs, V, beta, w, status, cp);
    if (status != lp::row_status::ok) {
      err.set(i, status);
      return;
    }
    if (cp)
      lp::row_grad_cached(cache, V, beta, lp::summarise(st), static_cast<index_t>(y), x_y,
                          static_cast<float>(grad_logp(i)), out, os, w, /*stream=*/true);
    else
      lp::row_grad(row, xs, V, beta, lp::summarise(st), static_cast<index_t>(y), x_y,
                   static_cast<float>(grad_logp(i)), gh, out, os, w, /*stream=*/true);
  });
  err.raise("selective_log_softmax_backward");
  return report;
}

}  // namespace GRPO_LOGPROB_ABI
}  // namespace grpo

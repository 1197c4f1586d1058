// SPDX-License-Identifier: Apache-2.0
/// @file row.hpp
/// @brief The vocabulary-row engine's shared pieces and its portable (baseline) path: block size and
///        exp floor, scratch and row cache, the row statistics (online log-sum-exp, entropy) and
///        the gradient sweeps as plain loops that the compiler vectorises for the translation
///        unit's own flags. The per-ISA kernels (vocab/kernels/<isa>/) compute the same maths with
///        the simd packets; vocab/engine.hpp picks one per call from grpo::active_isa().
///
/// The portable loops are the oracle of the vector kernels (next to tests/logprob/reference.hpp's
/// double reference); their results are bitwise those of logprob.hpp before the engine split
/// (tests/logprob/vocab_dump.cpp).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/half.hpp>
#include <grpo/core/isa.hpp>
#include <grpo/core/math.hpp>
#include <grpo/ops/softmax.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

// Everything here depends on the translation unit's flags (auto-vectorised loops): it lives in the
// ABI namespace, so a -march=native TU and a portable TU linked together never share a symbol.
namespace grpo::vocab {
inline namespace GRPO_ISA_ABI {

/// Block length of the inner loops: 2048 floats (8 KiB) per buffer, two buffers per thread, so a
/// block lives in L1 while the row streams from memory once. Extra memory is O(threads x block).
inline constexpr index_t block = 2048;
/// Scaled logits below max - 87 are clamped before exp: exp(-87) = 1.6e-38 is the smallest normal
/// float, so the bulk exp never produces denormals (a 10-100x slow path on x86) and q d stays
/// finite for masked (-inf) entries; clamped entries are then given exactly 0 mass.
inline constexpr float d_floor = -87.0f;

// ----- bulk primitives on contiguous float blocks ------------------------------------------------
/// max of a block; NaN makes it NaN (row_stats also detects NaN through the sum of exp).
inline float vmax(const float* p, index_t n) {
  float m = -math::infinity<float>();
  bool nan = false;
  for (index_t j = 0; j < n; ++j) {
    m = p[j] > m ? p[j] : m;
    nan |= !(p[j] == p[j]);
  }
  return nan ? std::numeric_limits<float>::quiet_NaN() : m;
}

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

/// One streaming pass over a row of V logits: the online_lse state (max m in raw units, e = s - 1,
/// t = sum q d) at inverse temperature beta. Each block is reduced on its own maximum and merged
/// into the row state (online softmax, Milakov & Gimelshein 2018), so the row is read from memory
/// once.
/// (Portable path; `cache`, when given, is already sized: vocab/engine.hpp's row_stats.)
template <class T>
online_lse row_stats_portable(const T* row, index_t stride, index_t V, float beta, scratch& w,
                              row_status& status, row_cache* cache) {
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
/// (Portable path of vocab/engine.hpp's row_grad.)
template <class T, class G>
void row_grad_portable(const T* row, index_t stride, index_t V, float beta, const row_summary& rs,
                       index_t y, float x_y, float g_logp, float g_entropy, G* out,
                       index_t ostride, scratch& w) noexcept {
  const float gl = g_logp;
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
/// (Portable path of vocab/engine.hpp's row_grad_cached.)
template <class G>
void row_grad_cached_portable(const row_cache& c, index_t V, float beta, const row_summary& rs,
                              index_t y, float x_y, float g_logp, G* out, index_t ostride,
                              scratch& w) noexcept {
  for (index_t j0 = 0; j0 < V; j0 += block) {
    const index_t n = std::min(block, V - j0);
    const float mb = c.bmax[static_cast<std::size_t>(j0 / block)];
    // Scale of the block: exp(beta (mb - m) - log s) <= 1; 0 for a masked block (mb = -inf).
    const float scale = mb > -math::infinity<float>()
                            ? math::exp(ops::log_softmax(mb, rs.m, rs.log_s, beta))
                            : 0.0f;
    const float* GRPO_RESTRICT e = c.e.data() + j0;
    // An fp32 contiguous gradient is written directly, other dtypes / strides via the scratch.
    float* GRPO_RESTRICT o = w.b;
    if constexpr (std::is_same_v<G, float>) o = ostride == 1 ? out + j0 : w.b;
    for (index_t j = 0; j < n; ++j)
      o[j] = ops::log_softmax_grad_nontarget(0.0f, scale * e[j], g_logp, 0.0f, 0.0f, beta);
    if (o == w.b) store(w.b, n, out + j0 * ostride, ostride);
  }
  if (y >= 0) {
    const float lq = ops::log_softmax(x_y, rs.m, rs.log_s, beta);
    out[y * ostride] =
        narrow<G>(ops::log_softmax_grad(lq, math::exp(lq), true, g_logp, 0.0f, 0.0f, beta));
  }
}


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
  /// The exact target element (after every block is written).
  void write_target() const noexcept {
    if (y < 0) return;
    const float lq = ops::log_softmax(x_y, rs.m, rs.log_s, beta);
    out[y] = narrow<G>(ops::log_softmax_grad(lq, math::exp(lq), true, g_logp, 0.0f, 0.0f, beta));
  }
};

}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::vocab

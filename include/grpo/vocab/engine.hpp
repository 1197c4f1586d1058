// SPDX-License-Identifier: Apache-2.0
/// @file engine.hpp
/// @brief The vocabulary-row engine: row statistics (log-sum-exp, entropy), the gradient sweeps and
///        the fused step's pipelined sweep, each dispatched per call to the AVX-512, AVX2 or
///        portable kernels from grpo::active_isa() (GRPO_ISA / scoped_isa_limit cap it), plus the
///        row loop and error channel that logprob.hpp, sampler.hpp, fused_linear.hpp and
///        fused_grpo.hpp share.
///
/// Paths: contiguous rows (vocabulary stride 1) of any dtype take the packet kernels
/// (vocab/kernels/<isa>/row.hpp: one kernel template over the packet, instantiated per ISA in a
/// target region); strided rows and the baseline take the portable loops of vocab/row.hpp, the
/// oracle. All paths compute the same formulas; they differ by the exp (packets: relative error
/// <= 3e-7 + 1e-7 |x| on x = d <= 0, portable: < 2 ulp) and the summation order.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/isa.hpp>
#include <grpo/core/parallel.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/core/validate.hpp>
// GRPO_HAS_AVX512 (this TU compiled for AVX-512): fused_grpo.hpp still selects its pipelined
// schedule with it.
#include <grpo/core/vmath512.hpp>
#include <grpo/vocab/kernels/avx2/row.hpp>
#include <grpo/vocab/kernels/avx512/row.hpp>
#include <grpo/vocab/kernels/neon/row.hpp>
#include <grpo/vocab/row.hpp>

#include <atomic>
#include <cstdint>
#include <limits>
#include <string>

namespace grpo::vocab {
inline namespace GRPO_ISA_ABI {

/// The kernels a call takes: active_isa() (the CPU's best, capped by GRPO_ISA / set_isa_limit)
/// with run-time dispatch; without it (GRPO_RUNTIME_DISPATCH = 0) the best packet this
/// translation unit is compiled for, under the same cap.
inline isa kernel_isa() noexcept {
#if GRPO_RUNTIME_DISPATCH
  return active_isa();
#else
  const int o = ::grpo::detail::isa_limit_override.load(std::memory_order_relaxed);
  const isa lim = o >= 0 ? static_cast<isa>(o) : env_isa_limit();
#if GRPO_SIMD_HAS_AVX512_PACKET
  const isa best = isa::avx512;
#elif GRPO_SIMD_HAS_AVX2_PACKET
  const isa best = isa::avx2;
#elif GRPO_SIMD_HAS_NEON_PACKET
  const isa best = isa::neon;
#else
  const isa best = isa::baseline;
#endif
  return cap_isa(best, lim);
#endif
}

// Every dispatching function takes the path `k` as its last argument, kernel_isa() by default: a
// caller that reads it once per call (logprob.hpp) keeps every row of the call on one path.

/// One streaming pass over a row of V logits (fp32 / bf16 / fp16, any stride): the online_lse
/// state (max m in raw units, e = s - 1, t = sum q d) at inverse temperature beta. Each L1 block
/// is reduced on its own maximum and merged into the row state (online softmax, Milakov &
/// Gimelshein 2018), so the row is read from memory once. With `cache`, the exps and block maxima
/// are kept for row_grad_cached. status: ok, non_finite (NaN / +inf logit) or all_masked.
template <class T>
online_lse row_stats(const T* row, index_t stride, index_t V, float beta, scratch& w,
                     row_status& status, row_cache* cache = nullptr, isa k = kernel_isa()) {
  if (cache) {
    cache->e.resize(static_cast<std::size_t>(V));
    cache->bmax.resize(static_cast<std::size_t>((V + block - 1) / block));
  }
  if (stride == 1) {
    switch (k) {
#if GRPO_SIMD_HAS_AVX512_PACKET
      case isa::avx512: return avx512::row_stats(row, V, beta, status, cache);
#endif
#if GRPO_SIMD_HAS_AVX2_PACKET
      case isa::avx2: return avx2::row_stats(row, V, beta, status, cache);
#endif
#if GRPO_SIMD_HAS_NEON_PACKET
      case isa::neon: return neon::row_stats(row, V, beta, status, cache);
#endif
      default: break;
    }
  }
  return row_stats_portable(row, stride, V, beta, w, status, cache);
}

/// Writes the gradient of  g_logp * log q_y + g_entropy * H  w.r.t. the raw logits of one row into
/// `out` (dtype G, stride ostride):
///   dL/dx_j = beta [ g_logp (delta_jy - q_j) - g_entropy q_j (log q_j + H) ].
/// `x_y` is the target's raw logit read before any in-place write; y < 0 means the target lies
/// outside this row segment (a vocabulary block of the fused linear path): only the -g_logp q_j
/// terms are written. May alias `row` exactly (in place). stream: non-temporal stores on the
/// packet paths (gradients that are not read back soon).
template <class T, class G>
void row_grad(const T* row, index_t stride, index_t V, float beta, const row_summary& rs, index_t y,
              float x_y, float g_logp, float g_entropy, G* out, index_t ostride, scratch& w,
              bool stream = false, isa k = kernel_isa()) noexcept {
  (void)stream;  // packet paths only (none where GRPO_RUNTIME_DISPATCH is 0, e.g. under nvcc)
  if (stride == 1 && ostride == 1) {
    switch (k) {
#if GRPO_SIMD_HAS_AVX512_PACKET
      case isa::avx512:
        return avx512::row_grad(row, V, beta, rs, y, x_y, g_logp, g_entropy, out, stream);
#endif
#if GRPO_SIMD_HAS_AVX2_PACKET
      case isa::avx2:
        return avx2::row_grad(row, V, beta, rs, y, x_y, g_logp, g_entropy, out, stream);
#endif
#if GRPO_SIMD_HAS_NEON_PACKET
      case isa::neon:
        return neon::row_grad(row, V, beta, rs, y, x_y, g_logp, g_entropy, out, stream);
#endif
      default: break;
    }
  }
  row_grad_portable(row, stride, V, beta, rs, y, x_y, g_logp, g_entropy, out, ostride, w);
}

/// row_grad for g_entropy = 0 from a row_cache filled by row_stats on the same row:
/// q_j = e_j exp(beta (mb - m) - log s), the -g q_j terms, then the exact target term. Never reads
/// the logits.
template <class G>
void row_grad_cached(const row_cache& c, index_t V, float beta, const row_summary& rs, index_t y,
                     float x_y, float g_logp, G* out, index_t ostride, scratch& w,
                     bool stream = false, isa k = kernel_isa()) noexcept {
  (void)stream;  // packet paths only
  if (ostride == 1) {
    switch (k) {
#if GRPO_SIMD_HAS_AVX512_PACKET
      case isa::avx512: return avx512::row_grad_cached(c, V, beta, rs, y, x_y, g_logp, out, stream);
#endif
#if GRPO_SIMD_HAS_AVX2_PACKET
      case isa::avx2: return avx2::row_grad_cached(c, V, beta, rs, y, x_y, g_logp, out, stream);
#endif
#if GRPO_SIMD_HAS_NEON_PACKET
      case isa::neon: return neon::row_grad_cached(c, V, beta, rs, y, x_y, g_logp, out, stream);
#endif
      default: break;
    }
  }
  row_grad_cached_portable(c, V, beta, rs, y, x_y, g_logp, out, ostride, w);
}

/// row_stats of a contiguous row keeping its exps in `cache`, which also writes the pending
/// gradient row `p` (row_grad_cached's values; on the packet paths through non-temporal stores,
/// block b of p during block b of this sweep: the software pipeline of the fused step, in which
/// the gradient of the previous chunk streams to memory while this chunk's exps are computed).
/// p's row has the same length V and its own cache. On return p is complete, also after an error
/// in this row. The baseline writes p after the sweep (same values as its row_grad_cached).
template <class T, class G>
online_lse row_stats_pipelined(const T* row, index_t V, float beta, row_status& status,
                               row_cache& cache, pending_row<G>& p) {
  cache.e.resize(static_cast<std::size_t>(V));
  cache.bmax.resize(static_cast<std::size_t>((V + block - 1) / block));
  switch (kernel_isa()) {
#if GRPO_SIMD_HAS_AVX512_PACKET
    case isa::avx512: return avx512::row_stats_pipelined(row, V, beta, status, cache, p);
#endif
#if GRPO_SIMD_HAS_AVX2_PACKET
    case isa::avx2: return avx2::row_stats_pipelined(row, V, beta, status, cache, p);
#endif
#if GRPO_SIMD_HAS_NEON_PACKET
    case isa::neon: return neon::row_stats_pipelined(row, V, beta, status, cache, p);
#endif
    default: break;
  }
  scratch w;
  const online_lse st = row_stats_portable(row, 1, V, beta, w, status, &cache);
  row_grad_cached_portable(*p.cache, V, beta, p.rs, p.y, p.x_y, p.g_logp, p.out, 1, w);
  return st;
}

/// The compute floor of the statistics sweep on the active path (benchmarks/logprob's exp probe):
/// sum over n L1-resident floats of exp(max(x, d_floor)) with the sweep's exp (packets:
/// exp_fast; baseline: math::fast_exp_bounded), one exp per element.
inline float exp_probe(const float* x, index_t n) noexcept {
  switch (kernel_isa()) {
#if GRPO_SIMD_HAS_AVX512_PACKET
    case isa::avx512: return avx512::exp_probe(x, n);
#endif
#if GRPO_SIMD_HAS_AVX2_PACKET
    case isa::avx2: return avx2::exp_probe(x, n);
#endif
#if GRPO_SIMD_HAS_NEON_PACKET
    case isa::neon: return neon::exp_probe(x, n);
#endif
    default: break;
  }
  float acc[lanes] = {};
  const index_t nl = n / lanes * lanes;
  for (index_t j0 = 0; j0 < nl; j0 += lanes)
    for (index_t k = 0; k < lanes; ++k)
      acc[k] += math::fast_exp_bounded(math::select(x[j0 + k] < d_floor, d_floor, x[j0 + k]));
  float s = 0.0f;
  for (index_t j = nl; j < n; ++j) s += math::fast_exp_bounded(x[j] < d_floor ? d_floor : x[j]);
  for (index_t k = 0; k < lanes; ++k) s += acc[k];
  return s;
}

/// The fused step's old spelling (fused_grpo.hpp: lp::x512::pending_row<G>).
namespace x512 {
template <class G>
using pending_row = ::grpo::vocab::pending_row<G>;
}

// ----- the row loop and its error channel --------------------------------------------------------

/// Validates the temperature and returns beta = 1/T.
/// T must make 1/T a normal float (grpo::detail::checked_inverse_temperature): a 1e-45 temperature
/// is reported as such, not as "logits contain NaN / +inf".
inline float inverse_temperature(float T) {
  (void)::grpo::detail::checked_inverse_temperature(static_cast<double>(T), "logprob_options::temperature");
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

/// Throws the error of row `r` that failed with status s (bad_value: "<what>: logits row r
/// contains NaN or +inf" / "... is entirely -inf ..."). Row bodies run by parallel_rows call it
/// directly: grpo::par::for_each_row's channel rethrows the exception of the lowest failing row
/// after the loop, whatever the thread count (serially the loop stops at that row).
inline void raise_row_status(const char* what, index_t r, row_status s) {
  if (s == row_status::all_masked)
    GRPO_THROW(bad_value, std::string(what) + ": logits row " + std::to_string(r) +
                              " is entirely -inf (no token has probability mass)");
  GRPO_THROW(bad_value,
             std::string(what) + ": logits row " + std::to_string(r) + " contains NaN or +inf");
}

/// Records the first failing row of a loop that must not throw from its rows (the fused steps'
/// pipelined ranges); the same messages as raise_row_status.
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
    raise_row_status(what, r, static_cast<row_status>(kind.load()));
  }
};

/// Runs body(i) for i in [0, n) on grpo::par::for_each_row (OpenMP when available; one thread
/// below the threshold of work_per_row x n elements). A row reports its failure by throwing
/// (raise_row_status); the exception of the lowest failing row leaves.
template <class F>
void parallel_rows(index_t n, int num_threads, F&& body,
                   index_t work_per_row = par::min_parallel_work) {
  par::loop_options o;
  o.num_threads = num_threads;
  o.work_per_row = work_per_row;
  par::for_each_row(n, body, o);
}

/// Runs body(begin, end) on contiguous, ordered ranges of [0, n), one per thread, for loops that
/// carry state from one index to the next (the fused step's pipeline).
template <class F>
void parallel_ranges(index_t n, int num_threads, F&& body) {
  par::loop_options o;
  o.num_threads = num_threads;
  par::for_each_range(n, body, o);
}

template <class V>
bool requested(const V& v) noexcept {
  return v.data_handle() != nullptr;
}

}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::vocab

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
#include <grpo/ops/softmax.hpp>
#include <grpo/vocab/engine.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

// Code whose body depends on the compile flags sits in the ABI namespace of core/isa.hpp (a
// -march=native TU and a portable TU linked together never share a symbol); GRPO_LOGPROB_ABI is
// its old name (sampler.hpp, fused_linear.hpp, fused_grpo.hpp).
#define GRPO_LOGPROB_ABI GRPO_ISA_ABI

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
  avx512,         ///< AVX-512 packet kernels on contiguous rows (active_isa() == avx512)
  block_direct,   ///< portable L1-block kernels reading fp32 contiguous rows where they lie
  block_widened,  ///< portable L1-block kernels on rows widened (bf16 / fp16) or gathered (strided)
  avx2,           ///< AVX2 packet kernels on contiguous rows (active_isa() == avx2)
  neon,           ///< NEON packet kernels on contiguous rows (aarch64, active_isa() == neon)
};

/// Report of one call (see logprob_path; the portable block kernels are the auto-vectorised loops
/// of vocab/row.hpp).
struct logprob_report {
  logprob_path path = logprob_path::none;  ///< of the statistics pass (row_stats), every row
  index_t rows = 0;                        ///< rows computed (id != ignore_index)
  /// Backward only: rows whose gradient reused the statistics pass's exponentials (g_entropy = 0,
  /// row_grad_cached) instead of recomputing them; the rest took row_grad.
  index_t cached_rows = 0;
};

// The kernels are the vocabulary-row engine's (vocab/engine.hpp, grpo::vocab); `lp` is its old
// name here (sampler.hpp, fused_linear.hpp, fused_grpo.hpp).
namespace detail {
namespace lp = ::grpo::vocab;
inline namespace GRPO_ISA_ABI {

/// The logprob_path of row_stats on rows of element type T with vocabulary stride `stride`
/// (mirrors vocab::row_stats's dispatch).
template <class T>
logprob_report make_report(index_t rows, index_t stride, isa k) {
  logprob_report r;
  r.rows = rows;
  if (rows == 0) return r;
  if (stride == 1) {
    if (k == isa::avx512 && GRPO_SIMD_HAS_AVX512_PACKET) {
      r.path = logprob_path::avx512;
      return r;
    }
    if (k == isa::avx2 && GRPO_SIMD_HAS_AVX2_PACKET) {
      r.path = logprob_path::avx2;
      return r;
    }
    if (k == isa::neon && GRPO_SIMD_HAS_NEON_PACKET) {
      r.path = logprob_path::neon;
      return r;
    }
  }
  r.path = std::is_same_v<T, float> && stride == 1 ? logprob_path::block_direct
                                                   : logprob_path::block_widened;
  return r;
}

}  // inline namespace GRPO_ISA_ABI
}  // namespace detail

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
  const isa k = lp::kernel_isa();  // one path for every row of the call
  const bool want_lse = lp::requested(lse), want_h = lp::requested(entropy);
  index_t rows = 0;
  for (index_t i = 0; i < N; ++i) rows += static_cast<std::int64_t>(ids(i)) != opt.ignore_index;

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
    const online_lse st = lp::row_stats(row, logits.stride(1), V, beta, w, status, nullptr, k);
    if (status != lp::row_status::ok) {
      lp::raise_row_status("selective_log_softmax", i, status);
    }
    const float x_y = static_cast<float>(widen(row[y * logits.stride(1)]));
    logp(i) = ops::log_softmax(x_y, st.m, st.log_sum(), beta);
    if (want_lse) lse(i) = st.lse();
    if (want_h) entropy(i) = st.entropy();
  });
  return detail::make_report<T>(rows, logits.stride(1), k);
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
  const isa k = lp::kernel_isa();  // one path for every row of the call
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
  auto report = detail::make_report<T>(rows, logits.stride(1), k);
  report.cached_rows = cached;

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
    const online_lse st = lp::row_stats(row, xs, V, beta, w, status, cp, k);
    if (status != lp::row_status::ok) {
      lp::raise_row_status("selective_log_softmax_backward", i, status);
    }
    if (cp)
      lp::row_grad_cached(cache, V, beta, lp::summarise(st), static_cast<index_t>(y), x_y,
                          static_cast<float>(grad_logp(i)), out, os, w, /*stream=*/true, k);
    else
      lp::row_grad(row, xs, V, beta, lp::summarise(st), static_cast<index_t>(y), x_y,
                   static_cast<float>(grad_logp(i)), gh, out, os, w, /*stream=*/true, k);
  });
  return report;
}

}  // namespace GRPO_LOGPROB_ABI
}  // namespace grpo

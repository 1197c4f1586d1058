// SPDX-License-Identifier: Apache-2.0
/// @file logprob.cuh
/// @brief CUDA selective log-softmax: forward (log p, logsumexp, entropy) and backward into the
///        logits, bf16 / fp16 / fp32 storage with fp32 accumulation, temperature inside, 64-bit
///        indexing, any number of rows (grid-stride), row-resident in shared memory when it fits.
///
/// The maths is grpo::online_lse (core/math.hpp) and grpo::ops::log_softmax / log_softmax_grad
/// (ops/softmax.hpp): the same functions the CPU path in grpo/logprob.hpp calls.
#pragma once

#include <grpo/core/math.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/cuda/common.cuh>
#include <grpo/ops/softmax.hpp>

#include <cuda_runtime.h>
#include <cub/block/block_reduce.cuh>  // cub::BlockReduce

#include <cstdint>
#include <cstring>

namespace grpo::cuda {

namespace detail {

/// Calls f(j, x_j) for every element j of a row assigned to this thread (j = tid, tid + B, ...).
/// Contiguous rows use 16-byte vector loads after a scalar head that reaches 16-byte alignment;
/// other strides fall back to one scalar load per element. All indices are 64-bit.
template <int BlockThreads, class T, class F>
__device__ GRPO_FORCEINLINE void for_each_in_row(const T* row, index_t stride, index_t V, F&& f) {
  const index_t tid = threadIdx.x;
  if (stride == 1) {
    constexpr int vec = 16 / static_cast<int>(sizeof(T));
    const auto addr = reinterpret_cast<std::uintptr_t>(row);
    index_t head = static_cast<index_t>(((16u - addr % 16u) % 16u) / sizeof(T));
    if (addr % sizeof(T) != 0) head = V;  // misaligned element pointer: scalar path only
    if (head > V) head = V;
    for (index_t j = tid; j < head; j += BlockThreads) f(j, load_float(row + j));
    const index_t nvec = (V - head) / vec;
    const uint4* base = reinterpret_cast<const uint4*>(row + head);
    for (index_t k = tid; k < nvec; k += BlockThreads) {
      const uint4 raw = base[k];
      T vals[vec];
      std::memcpy(vals, &raw, sizeof raw);
#pragma unroll
      for (int e = 0; e < vec; ++e) f(head + k * vec + e, static_cast<float>(widen(vals[e])));
    }
    for (index_t j = head + nvec * vec + tid; j < V; j += BlockThreads) f(j, load_float(row + j));
  } else {
    for (index_t j = tid; j < V; j += BlockThreads) f(j, load_float(row + j * stride));
  }
}

/// Row statistics shared by every thread of the block after block_row_stats().
struct row_stats_shared {
  float m;        ///< raw max
  float log_s;    ///< log sum exp(beta (x - m))
  float lse;      ///< beta m + log_s
  float entropy;  ///< H
  float x_y;      ///< raw logit of the target
  int bad;        ///< non-finite row
};

/// One streaming pass over a row: the block-reduced online_lse, published in `sh` for all threads.
/// When `cache` is non-null the first `cache_len` elements of the row are also stored there in
/// their storage dtype (exact: widen then narrow is the identity), for a second pass from shared
/// memory instead of HBM.
template <int BlockThreads, class T>
__device__ void block_row_stats(
    const T* row, index_t stride, index_t V, float beta, index_t y, row_stats_shared& sh, T* cache,
    index_t cache_len, typename cub::BlockReduce<online_lse, BlockThreads>::TempStorage& tmp) {
  online_lse st(beta);
  bool bad = false;
  for_each_in_row<BlockThreads>(row, stride, V, [&](index_t j, float x) {
    // NaN or +inf poison the row (x != x is NaN; +inf has no finite softmax).
    if (!(x == x) || x == math::infinity<float>())
      bad = true;
    else
      st.push(x);
    if (cache && j < cache_len) cache[j] = narrow<T>(x);
  });
  const int any_bad = __syncthreads_or(bad ? 1 : 0);
  const online_lse tot = cub::BlockReduce<online_lse, BlockThreads>(tmp).Reduce(st, merge_lse{});
  if (threadIdx.x == 0) {
    sh.bad = any_bad || tot.empty();
    sh.m = tot.m;
    sh.log_s = tot.log_sum();
    sh.lse = tot.lse();
    sh.entropy = tot.entropy();
    sh.x_y = (y >= 0) ? ((cache && y < cache_len) ? static_cast<float>(widen(cache[y]))
                                                  : load_float(row + y * stride))
                      : 0.0f;
  }
  __syncthreads();
}

/// Row filter of the forward kernel that keeps every row.
struct all_rows {
  __device__ GRPO_FORCEINLINE bool operator()(index_t) const noexcept { return true; }
};

/// Forward kernel: one block per row, grid-stride over rows. Rows rejected by `active` (e.g. mask 0
/// in the fused GRPO step) are treated like ignore_index rows: zeros, id not read.
template <int BlockThreads, class T, class I, class Active = all_rows>
__global__ void __launch_bounds__(BlockThreads)
    selective_log_softmax_kernel(strided_view<const T, 2> logits, strided_view<const I, 1> ids,
                                 float beta, long long ignore_index, strided_view<float, 1> logp,
                                 strided_view<float, 1> lse, strided_view<float, 1> entropy,
                                 unsigned int* status, Active active = {}) {
  using reduce_t = cub::BlockReduce<online_lse, BlockThreads>;
  __shared__ typename reduce_t::TempStorage tmp;
  __shared__ row_stats_shared sh;
  const index_t N = logits.extent(0), V = logits.extent(1);
  for (index_t i = blockIdx.x; i < N; i += gridDim.x) {
    const bool on = active(i);
    const long long y = on ? static_cast<long long>(ids(i)) : ignore_index;
    if (y == ignore_index) {  // block-uniform branch
      if (threadIdx.x == 0) {
        logp(i) = 0.0f;
        if (lse.data_handle()) lse(i) = 0.0f;
        if (entropy.data_handle()) entropy(i) = 0.0f;
      }
      continue;
    }
    const bool id_ok = y >= 0 && y < V;
    const T* row = logits.data_handle() + i * logits.stride(0);
    block_row_stats<BlockThreads>(row, logits.stride(1), V, beta, id_ok ? y : -1, sh,
                                  static_cast<T*>(nullptr), 0, tmp);
    if (threadIdx.x == 0) {
      const float nan = __int_as_float(0x7fc00000);
      if (!id_ok) atomicOr(status, status_id_out_of_range);
      if (sh.bad) atomicOr(status, status_non_finite_row);
      const bool ok = id_ok && !sh.bad;
      logp(i) = ok ? ops::log_softmax(sh.x_y, sh.m, sh.log_s, beta) : nan;
      if (lse.data_handle()) lse(i) = ok ? sh.lse : nan;
      if (entropy.data_handle()) entropy(i) = ok ? sh.entropy : nan;
    }
    __syncthreads();  // sh and tmp are reused by the next row
  }
}

/// Per-row coefficients of the backward: L = sum_i g_logp_i log p_i + g_entropy_i H_i.
struct plain_row_coeffs {
  strided_view<const float, 1> grad_logp;
  strided_view<const float, 1> grad_entropy;  // may be empty
  __device__ GRPO_FORCEINLINE void operator()(index_t i, float /*logp*/, float /*entropy*/,
                                              float& g_logp, float& g_entropy) const noexcept {
    g_logp = grad_logp(i);
    g_entropy = grad_entropy.data_handle() ? grad_entropy(i) : 0.0f;
  }
};

/// Backward kernel: pass 1 recomputes the row statistics (and, when Resident, caches the first
/// cache_len elements of the row in shared memory in their storage dtype), `coeffs` turns
/// (log p, H) into (dL/dlogp, dL/dH), pass 2 (cached prefix from shared memory, the rest from
/// global memory, mostly L2) writes
///   dL/dx_j = beta [ g_logp (delta_jy - q_j) - g_entropy q_j (log q_j + H) ]
/// into `grad` (dtype G; may alias the logits exactly: every element is read before it is written
/// by the same thread, and x_y is read in pass 1).
template <int BlockThreads, bool Resident, class T, class I, class G, class Coeffs>
__global__ void __launch_bounds__(BlockThreads)
    selective_log_softmax_backward_kernel(strided_view<const T, 2> logits,
                                          strided_view<const I, 1> ids, float beta,
                                          long long ignore_index, Coeffs coeffs,
                                          strided_view<G, 2> grad, unsigned int* status,
                                          index_t cache_len) {
  using reduce_t = cub::BlockReduce<online_lse, BlockThreads>;
  __shared__ typename reduce_t::TempStorage tmp;
  __shared__ row_stats_shared sh;
  __shared__ float coef[2];
  extern __shared__ __align__(16) unsigned char row_cache_raw[];
  T* row_cache = reinterpret_cast<T*>(row_cache_raw);
  const index_t N = logits.extent(0), V = logits.extent(1);
  for (index_t i = blockIdx.x; i < N; i += gridDim.x) {
    G* out = grad.data_handle() + i * grad.stride(0);
    const index_t os = grad.stride(1);
    // Rows the coefficient functor declares inactive (e.g. mask 0 in the fused GRPO step) are
    // neither read nor checked: their gradient row is zero.
    bool row_on = true;
    if constexpr (requires { coeffs.active(i); }) row_on = coeffs.active(i);
    if (!row_on) {
      for (index_t j = threadIdx.x; j < V; j += BlockThreads) out[j * os] = narrow<G>(0.0f);
      continue;
    }
    const long long y = static_cast<long long>(ids(i));
    const bool id_ok = y >= 0 && y < V;
    if (y == ignore_index || !id_ok) {
      if (threadIdx.x == 0 && y != ignore_index) atomicOr(status, status_id_out_of_range);
      for (index_t j = threadIdx.x; j < V; j += BlockThreads) out[j * os] = narrow<G>(0.0f);
      continue;
    }
    const T* row = logits.data_handle() + i * logits.stride(0);
    const index_t C = Resident ? (cache_len < V ? cache_len : V) : 0;
    block_row_stats<BlockThreads>(row, logits.stride(1), V, beta, y, sh,
                                  Resident ? row_cache : static_cast<T*>(nullptr), C, tmp);
    if (threadIdx.x == 0) {
      if (sh.bad) atomicOr(status, status_non_finite_row);
      const float lp = ops::log_softmax(sh.x_y, sh.m, sh.log_s, beta);
      coeffs(i, lp, sh.entropy, coef[0], coef[1]);
    }
    __syncthreads();
    const float g_logp = coef[0], g_ent = coef[1], m = sh.m, log_s = sh.log_s, H = sh.entropy;
    const bool bad = sh.bad;
    const auto write = [&](index_t j, float x) {
      const float log_q = ops::log_softmax(x, m, log_s, beta);
      const float q = math::exp(log_q);
      const float g = bad ? __int_as_float(0x7fc00000)
                          : ops::log_softmax_grad(log_q, q, j == y, g_logp, g_ent, H, beta);
      out[j * os] = narrow<G>(g);
    };
    if constexpr (Resident) {
      // Prefix from shared memory (no global read, so an in-place write cannot race), the rest
      // read and written element by element by the same thread.
      for (index_t j = threadIdx.x; j < C; j += BlockThreads)
        write(j, static_cast<float>(widen(row_cache[j])));
      if (C < V)
        for_each_in_row<BlockThreads>(row + C * logits.stride(1), logits.stride(1), V - C,
                                      [&](index_t jj, float x) { write(C + jj, x); });
    } else {
      for_each_in_row<BlockThreads>(row, logits.stride(1), V, write);
    }
    __syncthreads();
  }
}

/// Block size by vocabulary: small rows use 128 threads, large rows 512.
template <class F>
cudaError_t dispatch_block(index_t V, F&& f) {
  if (V >= 8192) return f.template operator()<512>();
  return f.template operator()<128>();
}

}  // namespace detail

/// Launches the forward kernel with a row filter (rows where active(i) is false get zeros and their
/// id is not read). Used by selective_log_softmax and by the two-phase fused GRPO step.
/// @pre status points to a zeroed device word; views device-resident; beta = 1/T > 0.
template <class T, class I, class Active>
[[nodiscard]] cudaError_t launch_row_forward(strided_view<const T, 2> logits,
                                             strided_view<const I, 1> ids, float beta,
                                             long long ignore_index, strided_view<float, 1> logp,
                                             strided_view<float, 1> lse,
                                             strided_view<float, 1> entropy, unsigned int* status,
                                             Active active, cudaStream_t stream) noexcept {
  if (logits.extent(0) == 0) return cudaSuccess;
  return detail::dispatch_block(logits.extent(1), [&]<int B>() -> cudaError_t {
    auto kernel = detail::selective_log_softmax_kernel<B, T, I, Active>;
    const int grid = rows_grid(logits.extent(0), device_blocks(kernel, B, 0));
    kernel<<<grid, B, 0, stream>>>(logits, ids, beta, ignore_index, logp, lse, entropy, status,
                                   active);
    return cudaGetLastError();
  });
}

/// Selective log-softmax forward on the device: for every row i of logits [N, V] with sampled id
/// y_i
///   logp[i] = log softmax(logits[i] / T)[y_i],  lse[i] = logsumexp(logits[i] / T),  entropy[i] =
///   H_i.
/// One read of each row (online softmax), fp32 accumulation, 64-bit indexing, no limit on N.
/// @param workspace  device memory of `workspace_bytes`; pass nullptr to query the size (then
/// nothing
///                   is launched). It holds the status word (read with read_status()).
/// @param lse, entropy  optional: default-constructed views skip them.
/// @pre device-resident views; T > 0. Ids equal to ignore_index give zeros; other out-of-range ids
///      and non-finite rows give NaN outputs and set the status word.
/// @return the first CUDA error of the launch (never throws).
template <class T, class I>
[[nodiscard]] cudaError_t selective_log_softmax(
    strided_view<const T, 2> logits, strided_view<const I, 1> ids, strided_view<float, 1> logp,
    strided_view<float, 1> lse, strided_view<float, 1> entropy, float temperature,
    long long ignore_index, void* workspace, std::size_t& workspace_bytes,
    cudaStream_t stream = nullptr) noexcept {
  if (workspace == nullptr) {
    workspace_bytes = align_up(sizeof(unsigned int));
    return cudaSuccess;
  }
  if (workspace_bytes < sizeof(unsigned int) || !(temperature > 0.0f)) return cudaErrorInvalidValue;
  if (ids.extent(0) != logits.extent(0) || logp.extent(0) != logits.extent(0))
    return cudaErrorInvalidValue;
  auto* status = static_cast<unsigned int*>(workspace);
  GRPO_CUDA_TRY(cudaMemsetAsync(status, 0, sizeof(unsigned int), stream));
  if (logits.extent(0) == 0) return cudaSuccess;
  return launch_row_forward(logits, ids, 1.0f / temperature, ignore_index, logp, lse, entropy,
                            status, detail::all_rows{}, stream);
}

/// Shared-memory caching of a row between the statistics pass and the gradient pass.
enum class row_cache : unsigned char {
  /// whole_rows (the default).
  automatic,
  /// Cache the row (storage dtype) when all of it fits in the opt-in shared memory (fp32 rows up
  /// to ~55k, bf16 / fp16 rows up to ~110k on sm_90): one HBM read. Longer rows are not cached.
  whole_rows,
  /// Cache as long a prefix as fits (about one block per SM) and re-read only the rest: for rows
  /// longer than shared memory, trades occupancy for ~70 % fewer second-pass bytes (V = 151936
  /// bf16). Which one wins is measured by benchmarks/cuda (BM_fused_grpo_cache).
  prefix,
  /// Never cache: statistics pass then gradient pass from global memory (full occupancy).
  none,
};

/// Launches the backward kernel with any per-row coefficient functor (also used by the fused GRPO
/// kernel), with the shared-memory row caching of `policy` (row_cache).
template <class T, class I, class G, class Coeffs>
[[nodiscard]] cudaError_t launch_row_backward(strided_view<const T, 2> logits,
                                              strided_view<const I, 1> ids, float beta,
                                              long long ignore_index, const Coeffs& coeffs,
                                              strided_view<G, 2> grad, unsigned int* status,
                                              row_cache policy, cudaStream_t stream) noexcept {
  int dev = 0, smem_optin = 0;
  GRPO_CUDA_TRY(cudaGetDevice(&dev));
  GRPO_CUDA_TRY(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  const index_t V = logits.extent(1);
  // Leave room for the static shared memory of the reduction (a few KiB).
  const std::size_t avail = smem_optin > 8192 ? static_cast<std::size_t>(smem_optin) - 8192 : 0;
  const std::size_t row_bytes = static_cast<std::size_t>(V) * sizeof(T);
  index_t cache_len = 0;
  if ((policy == row_cache::automatic || policy == row_cache::whole_rows) && row_bytes <= avail)
    cache_len = V;
  if (policy == row_cache::prefix) {
    // Whole 16-element groups, so the uncached tail starts aligned for the vector loads.
    const auto fit = static_cast<index_t>(avail / sizeof(T)) / 16 * 16;
    cache_len = fit < V ? fit : V;
  }
  const std::size_t cache_bytes = static_cast<std::size_t>(cache_len) * sizeof(T);
  return detail::dispatch_block(V, [&]<int B>() -> cudaError_t {
    if (cache_len > 0) {
      auto kernel = detail::selective_log_softmax_backward_kernel<B, true, T, I, G, Coeffs>;
      GRPO_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(cache_bytes)));
      const int grid = rows_grid(logits.extent(0), device_blocks(kernel, B, cache_bytes));
      kernel<<<grid, B, cache_bytes, stream>>>(logits, ids, beta, ignore_index, coeffs, grad,
                                               status, cache_len);
    } else {
      auto kernel = detail::selective_log_softmax_backward_kernel<B, false, T, I, G, Coeffs>;
      const int grid = rows_grid(logits.extent(0), device_blocks(kernel, B, 0));
      kernel<<<grid, B, 0, stream>>>(logits, ids, beta, ignore_index, coeffs, grad, status,
                                     index_t(0));
    }
    return cudaGetLastError();
  });
}

/// Backward of the selective log-softmax on the device: writes
///   grad[i, j] = (1/T) [ grad_logp[i] (delta_{j y_i} - q_ij) - grad_entropy[i] q_ij (log q_ij +
///   H_i) ]
/// in dtype G (float, bfloat16 or float16). `grad` may be the logits buffer itself (in place, same
/// strides and dtype). Rows whose bytes fit in shared memory are read from HBM once (row-resident);
/// longer rows are read twice (statistics, then gradient).
/// @param workspace  as selective_log_softmax (status word).
template <class T, class I, class G>
[[nodiscard]] cudaError_t selective_log_softmax_backward(
    strided_view<const T, 2> logits, strided_view<const I, 1> ids,
    strided_view<const float, 1> grad_logp, strided_view<const float, 1> grad_entropy,
    strided_view<G, 2> grad, float temperature, long long ignore_index, void* workspace,
    std::size_t& workspace_bytes, cudaStream_t stream = nullptr) noexcept {
  if (workspace == nullptr) {
    workspace_bytes = align_up(sizeof(unsigned int));
    return cudaSuccess;
  }
  if (workspace_bytes < sizeof(unsigned int) || !(temperature > 0.0f)) return cudaErrorInvalidValue;
  if (ids.extent(0) != logits.extent(0) || grad_logp.extent(0) != logits.extent(0) ||
      grad.extent(0) != logits.extent(0) || grad.extent(1) != logits.extent(1))
    return cudaErrorInvalidValue;
  auto* status = static_cast<unsigned int*>(workspace);
  GRPO_CUDA_TRY(cudaMemsetAsync(status, 0, sizeof(unsigned int), stream));
  if (logits.extent(0) == 0) return cudaSuccess;
  const float beta = 1.0f / temperature;
  const detail::plain_row_coeffs coeffs{grad_logp, grad_entropy};
  return launch_row_backward(logits, ids, beta, ignore_index, coeffs, grad, status,
                             row_cache::automatic, stream);
}

}  // namespace grpo::cuda

// SPDX-License-Identifier: Apache-2.0
/// @file common.cuh
/// @brief Shared CUDA plumbing: GRPO_CUDA_TRY, throw_on_error, device status words, storage loads,
///        the block-level merge of grpo::online_lse, and launch-shape helpers.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/half.hpp>
#include <grpo/core/math.hpp>
#include <grpo/core/strided_view.hpp>

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

/// Early-return the cudaError_t of `expr` from a noexcept launcher when it is not cudaSuccess.
#ifndef GRPO_CUDA_TRY
#define GRPO_CUDA_TRY(expr)                         \
  do {                                              \
    const cudaError_t grpo_err_ = (expr);           \
    if (grpo_err_ != cudaSuccess) return grpo_err_; \
  } while (0)
#endif

namespace grpo::cuda {

/// Opt-in conversion of a launcher's status into grpo::error ([grpo.cuda]); launchers themselves
/// are noexcept and only return the status (CUB / flashinfer convention).
inline void throw_on_error(cudaError_t err, const char* what = "CUDA call") {
  GRPO_EXPECTS(
      err == cudaSuccess, cuda,
      std::string(what) + " failed: " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

/// Bits of the device status word that kernels set when they meet bad input (device code cannot
/// throw). The caller reads the word back with read_status() once the stream is synchronised.
enum status_bits : unsigned int {
  status_ok = 0,
  status_id_out_of_range = 1u << 0,  ///< a token id outside [0, V) that is not the ignore index
  status_non_finite_row = 1u << 1,   ///< a row with NaN / +inf logits or no finite logit
  status_bad_input = 1u << 2,        ///< a non-finite / negative loss input on a valid token
};

/// Reads a status word written by a kernel (blocking copy on `stream`) and converts it to
/// grpo::error: [grpo.out_of_range] for ids, [grpo.bad_value] for non-finite rows and bad loss
/// inputs.
inline void read_status(const unsigned int* device_status, cudaStream_t stream = nullptr) {
  unsigned int h = 0;
  throw_on_error(cudaMemcpyAsync(&h, device_status, sizeof h, cudaMemcpyDeviceToHost, stream),
                 "read_status: cudaMemcpyAsync");
  throw_on_error(cudaStreamSynchronize(stream), "read_status: cudaStreamSynchronize");
  GRPO_EXPECTS(!(h & status_id_out_of_range), out_of_range,
               "CUDA kernel: a token id is outside [0, vocab) and is not the ignore index");
  GRPO_EXPECTS(!(h & status_non_finite_row), bad_value,
               "CUDA kernel: a row of logits holds NaN / +inf or no finite value");
  GRPO_EXPECTS(
      !(h & status_bad_input), bad_value,
      "CUDA kernel: a loss input (mask, logp, old_logp, ref_logp, advantages, sampler_logp, "
      "is_weights or rewards) is non-finite or negative on a valid token");
}

/// Rounds n up to a multiple of 256 bytes (the alignment of every workspace slice).
GRPO_HOST_DEVICE constexpr std::size_t align_up(std::size_t n) noexcept {
  return (n + 255u) & ~std::size_t(255u);
}

/// Load one element of any storage dtype as float (bf16/fp16 widening is exact).
template <class T>
__device__ GRPO_FORCEINLINE float load_float(const T* p) noexcept {
  return static_cast<float>(widen(*p));
}

/// Binary operator for cub::BlockReduce over online_lse states (associative merge).
struct merge_lse {
  __device__ GRPO_FORCEINLINE online_lse operator()(online_lse a,
                                                    const online_lse& b) const noexcept {
    a.merge(b);
    return a;
  }
};

/// Grid size for a row-per-block kernel: enough blocks to fill the device, never more than the
/// rows, and never above the grid limit (rows are then walked with a grid-stride loop, so any
/// number of tokens works: no 65,536 limit).
inline int rows_grid(index_t rows, int device_blocks_hint = 0) noexcept {
  index_t g = rows;
  const index_t cap = device_blocks_hint > 0 ? device_blocks_hint : 65535;
  if (g > cap) g = cap;
  if (g < 1) g = 1;
  return static_cast<int>(g);
}

/// Number of resident blocks the device can hold for a kernel (x 4 for latency hiding), used as the
/// grid-stride cap; falls back to 65535 when the query fails.
template <class Kernel>
inline int device_blocks(Kernel kernel, int block_threads, std::size_t smem) noexcept {
  int dev = 0, sms = 0, per_sm = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 65535;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
    return 65535;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, block_threads, smem) !=
      cudaSuccess)
    return 65535;
  const int n = sms * (per_sm > 0 ? per_sm : 1) * 4;
  return n > 0 ? n : 65535;
}

}  // namespace grpo::cuda

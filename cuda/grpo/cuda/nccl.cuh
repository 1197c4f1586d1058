// SPDX-License-Identifier: Apache-2.0
/// @file nccl.cuh
/// @brief grpo::cuda::nccl_collective: the data-parallel collective interface of
///        <grpo/collective.hpp> (all_reduce over std::span<double>, rank, size) implemented with
///        ncclAllReduce on a device staging buffer, plus a device-pointer variant for statistics
///        that already live on the GPU (global token counts of the fused loss).
///
/// Why a staging buffer: the concept reduces host doubles (the advantage and aggregation code is
/// host code); NCCL reduces device memory. Each call copies the span to the device, reduces in
/// place on the communicator's stream, copies back and synchronises that stream. Spans larger than
/// the staging buffer are reduced in chunks (same chunking on every rank, so the calls match).
///
/// Link: libnccl (tests/cuda/CMakeLists.txt defines the target grpo_nccl when NCCL is found).
#pragma once

#include <grpo/collective.hpp>
#include <grpo/core/error.hpp>
#include <grpo/cuda/common.cuh>

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <utility>

namespace grpo::cuda {

/// The NCCL reduction of a grpo::reduce_op.
constexpr ncclRedOp_t to_nccl(reduce_op op) noexcept {
  switch (op) {
    case reduce_op::sum:
      return ncclSum;
    case reduce_op::max:
      return ncclMax;
    case reduce_op::min:
      return ncclMin;
  }
  return ncclSum;
}

/// Throws [grpo.collective] when an NCCL call failed.
inline void throw_on_nccl_error(ncclResult_t r, const char* what) {
  GRPO_EXPECTS(r == ncclSuccess, collective,
               std::string(what) + " failed: " + ncclGetErrorString(r));
}

/// In-place all-reduce of `n` device doubles over `comm` on `stream` (asynchronous; no sync).
/// @pre every rank calls with the same n and op; dev points to n device doubles.
/// @return ncclSuccess or the NCCL error (never throws).
[[nodiscard]] inline ncclResult_t all_reduce_device(double* dev, std::size_t n, reduce_op op,
                                                    ncclComm_t comm,
                                                    cudaStream_t stream = nullptr) noexcept {
  if (n == 0) return ncclSuccess;
  return ncclAllReduce(dev, dev, n, ncclDouble, to_nccl(op), comm, stream);
}

/// A grpo::collective over an NCCL communicator (not owned: the caller creates and destroys it,
/// e.g. with ncclCommInitRank after exchanging the unique id through MPI or a file).
class nccl_collective {
 public:
  /// @param comm      an initialised communicator (one rank per process or per device)
  /// @param stream    stream the staging copies and the reduction run on (default stream: null)
  /// @param capacity  staging buffer size in doubles (>= 1); larger spans are chunked
  /// @post the staging buffer is allocated on the current device. Throws [grpo.cuda] otherwise.
  explicit nccl_collective(ncclComm_t comm, cudaStream_t stream = nullptr,
                           std::size_t capacity = std::size_t(1) << 16)
      : comm_(comm), stream_(stream), capacity_(capacity > 0 ? capacity : 1) {
    GRPO_EXPECTS(comm != nullptr, collective, "nccl_collective: null communicator");
    throw_on_error(cudaMalloc(&staging_, capacity_ * sizeof(double)),
                   "nccl_collective: cudaMalloc of the staging buffer");
    throw_on_nccl_error(ncclCommUserRank(comm_, &rank_), "ncclCommUserRank");
    throw_on_nccl_error(ncclCommCount(comm_, &size_), "ncclCommCount");
  }
  nccl_collective(const nccl_collective&) = delete;
  nccl_collective& operator=(const nccl_collective&) = delete;
  nccl_collective(nccl_collective&& o) noexcept
      : comm_(o.comm_),
        stream_(o.stream_),
        capacity_(o.capacity_),
        staging_(std::exchange(o.staging_, nullptr)),
        rank_(o.rank_),
        size_(o.size_) {}
  nccl_collective& operator=(nccl_collective&&) = delete;
  ~nccl_collective() {
    if (staging_) cudaFree(staging_);
  }

  /// Element-wise reduction of buf over all ranks, result in buf on every rank (in place).
  /// @pre collective call: same buf.size() and op on every rank.
  /// @post buf holds the reduction. Throws [grpo.collective] on an NCCL error, [grpo.cuda] on a
  ///       copy error.
  void all_reduce(std::span<double> buf, reduce_op op) const {
    for (std::size_t off = 0; off < buf.size(); off += capacity_) {
      const std::size_t n = std::min(capacity_, buf.size() - off);
      throw_on_error(cudaMemcpyAsync(staging_, buf.data() + off, n * sizeof(double),
                                     cudaMemcpyHostToDevice, stream_),
                     "nccl_collective: host-to-device copy");
      throw_on_nccl_error(all_reduce_device(staging_, n, op, comm_, stream_), "ncclAllReduce");
      throw_on_error(cudaMemcpyAsync(buf.data() + off, staging_, n * sizeof(double),
                                     cudaMemcpyDeviceToHost, stream_),
                     "nccl_collective: device-to-host copy");
      throw_on_error(cudaStreamSynchronize(stream_), "nccl_collective: cudaStreamSynchronize");
    }
  }
  /// This process' rank in [0, size()).
  [[nodiscard]] int rank() const noexcept { return rank_; }
  /// Number of ranks of the communicator.
  [[nodiscard]] int size() const noexcept { return size_; }
  /// The communicator and stream (for all_reduce_device on device-resident statistics).
  [[nodiscard]] ncclComm_t comm() const noexcept { return comm_; }
  [[nodiscard]] cudaStream_t stream() const noexcept { return stream_; }

 private:
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::size_t capacity_ = 1;
  double* staging_ = nullptr;
  int rank_ = 0, size_ = 1;
};

static_assert(collective<nccl_collective>);

}  // namespace grpo::cuda

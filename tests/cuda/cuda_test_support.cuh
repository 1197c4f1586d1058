// SPDX-License-Identifier: Apache-2.0
/// @file cuda_test_support.cuh
/// @brief RAII device buffers for the GPU tests (upload / download of std::vector).
#pragma once

#include <grpo/cuda/common.cuh>

#include <cstddef>
#include <vector>

namespace grpo_test {

/// Owning device allocation of `n` elements of T (freed in the destructor).
template <class T>
struct device_buffer {
  T* p = nullptr;
  std::size_t n = 0;
  explicit device_buffer(std::size_t count) : n(count) {
    grpo::cuda::throw_on_error(cudaMalloc(&p, sizeof(T) * (count ? count : 1)), "cudaMalloc");
  }
  explicit device_buffer(const std::vector<T>& h) : device_buffer(h.size()) { upload(h); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  ~device_buffer() { cudaFree(p); }
  void upload(const std::vector<T>& h) {
    grpo::cuda::throw_on_error(
        cudaMemcpy(p, h.data(), sizeof(T) * h.size(), cudaMemcpyHostToDevice), "upload");
  }
  [[nodiscard]] std::vector<T> download() const {
    std::vector<T> h(n);
    grpo::cuda::throw_on_error(cudaMemcpy(h.data(), p, sizeof(T) * n, cudaMemcpyDeviceToHost),
                               "download");
    return h;
  }
};

}  // namespace grpo_test

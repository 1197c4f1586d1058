// SPDX-License-Identifier: Apache-2.0
/// @file cuda_api.hpp
/// @brief The boundary between grpo._cuda's nanobind glue (cuda_module.cpp, host compiler) and
///        its kernel launchers (cuda_kernels.cu, nvcc): plain descriptors of device tensors and
///        one function per routed op. No nanobind, no CUDA header: each side compiles alone.
///
/// Every function launches on `stream` (torch's current stream, passed as an integer), then
/// reads the kernels' status word back (a blocking copy + cudaStreamSynchronize on that stream),
/// so bad ids / non-finite inputs raise grpo::error ([grpo.out_of_range], [grpo.bad_value]) and
/// launch failures raise [grpo.cuda]. Workspaces are device buffers the caller allocates (torch's
/// caching allocator) with the size the *_workspace_bytes functions return.
#pragma once

#include <grpo/loss.hpp>  // loss_options

#include <cstddef>
#include <cstdint>

namespace grpo::pycuda {

/// dtype codes shared with python/grpo/_tensors.py (grpo::py::dtype_code).
enum code : int { f32 = 0, f64 = 1, bf16 = 2, f16 = 3, i64 = 4 };

/// A device tensor: data pointer, rank <= 3, extents and strides in elements, dtype code.
/// rank 0 with data == 0 means "absent" (an optional input).
struct darr {
  std::uintptr_t data = 0;
  int rank = 0;
  std::int64_t shape[3] = {0, 0, 0};
  std::int64_t stride[3] = {0, 0, 0};
  int dtype = f32;
};

/// Bytes of the workspace of the log-prob forward / backward (the status word).
std::size_t logprob_workspace_bytes();
/// Bytes of the workspace of compute_loss / fused_grpo_step for B rows of T tokens.
std::size_t loss_workspace_bytes(std::int64_t B, std::int64_t T);

/// Selective log-softmax + entropy of logits [N, V] (float32 / bfloat16 / float16, any strides)
/// at ids [N] (int64) into logp, entropy [N] (float32); rows whose id is ignore_index give 0.
void logprob_forward(const darr& logits, const darr& ids, const darr& logp, const darr& entropy,
                     double temperature, long long ignore_index, std::uintptr_t workspace,
                     std::uintptr_t stream);

/// d/dlogits of sum(g_logp logp + g_entropy H) into grad [N, V] (the logits' dtype).
void logprob_backward(const darr& logits, const darr& ids, const darr& g_logp,
                      const darr& g_entropy, const darr& grad, double temperature,
                      long long ignore_index, std::uintptr_t workspace, std::uintptr_t stream);

/// The inputs of the loss besides logp / entropy: float64 [B, T] views (advantages may have a
/// zero T-stride), absent ones with data == 0.
struct loss_inputs {
  darr old_logp, ref_logp, advantages, mask, sampler_logp;
};

/// The GRPO-family loss on the device from logp [B, T] float32 (row-major) and optional entropy:
/// the four scalars (loss, policy_loss, kl_loss, entropy_loss) into `scalars` (4 device doubles),
/// dL/dlogp and dL/dH into grad_logp / grad_entropy ([B, T] row-major float32).
/// @throws [grpo.bad_option] for options the device kernels do not run (OpenRLHF's float32
///         in-loss KL, OpenRLHF GSPO's sampler-based ratio), [grpo.shape_mismatch].
void compute_loss(const loss_options& o, const darr& logp, const darr& entropy,
                  const loss_inputs& in, const darr& grad_logp, const darr& grad_entropy,
                  std::uintptr_t scalars, std::uintptr_t workspace, std::uintptr_t stream);

/// Fused GRPO step from logits [B, T, V] (float32 / bfloat16 / float16; rows of a sequence
/// adjacent) and ids [B, T] (int64): logp, entropy [B, T] float32 row-major, d loss / d logits into
/// grad_logits (the logits' dtype) and the four scalars.
void fused_grpo_step(const loss_options& o, const darr& logits, const darr& ids,
                     const loss_inputs& in, const darr& grad_logits, const darr& logp,
                     const darr& entropy, std::uintptr_t scalars, double temperature,
                     std::uintptr_t workspace, std::uintptr_t stream);

}  // namespace grpo::pycuda

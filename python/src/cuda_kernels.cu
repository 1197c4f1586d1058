// SPDX-License-Identifier: Apache-2.0
/// @file cuda_kernels.cu
/// @brief grpo._cuda's launchers: the descriptors of cuda_api.hpp turned into device views, the
///        launchers of cuda/grpo/cuda/ (selective_log_softmax[_backward], compute_loss,
///        fused_grpo_step) called on the caller's stream, the status word read back. Dispatch on
///        the logits dtype (float32, bfloat16, float16); side inputs float64, ids int64.
#include "cuda_api.hpp"

#include <grpo/core/error.hpp>
#include <grpo/core/half.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/cuda/common.cuh>
#include <grpo/cuda/fused_grpo.cuh>
#include <grpo/cuda/logprob.cuh>
#include <grpo/cuda/loss_terms.cuh>

#include <cuda_runtime.h>

#include <string>

namespace grpo::pycuda {

namespace {

constexpr auto dev = memory_space::cuda;

cudaStream_t as_stream(std::uintptr_t s) {
  return reinterpret_cast<cudaStream_t>(s);
}

bool present(const darr& a) {
  return a.data != 0;
}

/// A rank-R device view of `a` (the Python layer checked dtype and rank; checked again here).
template <class T, int R>
strided_view<T, R> view(const darr& a, const char* what) {
  GRPO_EXPECTS(a.rank == R, shape_mismatch,
               std::string(what) + ": expected rank " + std::to_string(R) + ", got " +
                   std::to_string(a.rank));
  std::array<index_t, R> e{}, s{};
  for (int k = 0; k < R; ++k) {
    e[static_cast<std::size_t>(k)] = static_cast<index_t>(a.shape[k]);
    s[static_cast<std::size_t>(k)] = static_cast<index_t>(a.stride[k]);
  }
  return strided_view<T, R>(reinterpret_cast<T*>(a.data), e, s, dev);
}

template <class T, int R>
strided_view<T, R> view_opt(const darr& a, const char* what) {
  return present(a) ? view<T, R>(a, what) : strided_view<T, R>{};
}

/// The launchers treat a null workspace as a size query (nothing launched): never pass one.
void expect_workspace(std::uintptr_t ws) {
  GRPO_EXPECTS(ws != 0, shape_mismatch, "workspace: a device buffer is required");
}

void expect(const darr& a, int dtype, const char* what, const char* want) {
  GRPO_EXPECTS(a.dtype == dtype, bad_dtype, std::string(what) + ": dtype must be " + want);
}

/// Calls f.template operator()<T>() with T the storage type of dtype code `c`.
template <class F>
void by_logit_dtype(int c, F&& f) {
  if (c == f32)
    f.template operator()<float>();
  else if (c == bf16)
    f.template operator()<bfloat16>();
  else if (c == f16)
    f.template operator()<float16>();
  else
    GRPO_THROW(bad_dtype, "logits: float32, bfloat16 or float16 on CUDA");
}

cuda::device_loss_batch<double, double> batch_of(const loss_inputs& in) {
  for (const darr* a : {&in.old_logp, &in.ref_logp, &in.advantages, &in.mask, &in.sampler_logp})
    if (present(*a)) expect(*a, f64, "loss inputs", "float64 (the Python layer converts)");
  cuda::device_loss_batch<double, double> b;
  b.old_logp = view_opt<const double, 2>(in.old_logp, "old_logp");
  b.ref_logp = view_opt<const double, 2>(in.ref_logp, "ref_logp");
  b.advantages = view<const double, 2>(in.advantages, "advantages");
  b.mask = view<const double, 2>(in.mask, "mask");
  b.sampler_logp = view_opt<const double, 2>(in.sampler_logp, "sampler_logp");
  return b;
}

cuda::loss_params params_of(const loss_options& o) {
  cuda::loss_params p;
  GRPO_EXPECTS(cuda::make_loss_params(o, p), bad_option,
               "these loss options do not run on CUDA (OpenRLHF's float32 in-loss KL or "
               "OpenRLHF GSPO's sampler-based ratio): use CPU tensors, or emulate_float32=False");
  return p;
}

/// A launcher's cudaError_t: cudaErrorInvalidValue is a shape / option mismatch the launcher
/// refused before launching; anything else is a CUDA failure.
void check(cudaError_t e, const char* what) {
  GRPO_EXPECTS(e != cudaErrorInvalidValue, shape_mismatch,
               std::string(what) +
                   ": the CUDA launcher refused the shapes, strides or inputs "
                   "(rows of a sequence must be adjacent, [B, T] outputs "
                   "row-major, ref_logp given when kl_coef != 0)");
  cuda::throw_on_error(e, what);
}

}  // namespace

std::size_t logprob_workspace_bytes() {
  return cuda::align_up(sizeof(unsigned int));
}

std::size_t loss_workspace_bytes(std::int64_t B, std::int64_t T) {
  return cuda::loss_workspace_bytes(static_cast<index_t>(B), static_cast<index_t>(T));
}

void logprob_forward(const darr& logits, const darr& ids, const darr& logp, const darr& entropy,
                     double temperature, long long ignore_index, std::uintptr_t workspace,
                     std::uintptr_t stream) {
  expect_workspace(workspace);
  expect(ids, i64, "ids", "int64");
  expect(logp, f32, "logp", "float32");
  expect(entropy, f32, "entropy", "float32");
  const auto y = view<const std::int64_t, 1>(ids, "ids");
  const auto lp = view<float, 1>(logp, "logp");
  const auto h = view<float, 1>(entropy, "entropy");
  std::size_t ws = logprob_workspace_bytes();
  by_logit_dtype(logits.dtype, [&]<class T>() {
    const auto x = view<const T, 2>(logits, "logits");
    check(cuda::selective_log_softmax(x, y, lp, strided_view<float, 1>{}, h,
                                      static_cast<float>(temperature), ignore_index,
                                      reinterpret_cast<void*>(workspace), ws, as_stream(stream)),
          "selective_log_softmax");
  });
  cuda::read_status(reinterpret_cast<const unsigned int*>(workspace), as_stream(stream));
}

void logprob_backward(const darr& logits, const darr& ids, const darr& g_logp,
                      const darr& g_entropy, const darr& grad, double temperature,
                      long long ignore_index, std::uintptr_t workspace, std::uintptr_t stream) {
  expect_workspace(workspace);
  expect(ids, i64, "ids", "int64");
  expect(g_logp, f32, "grad_logp", "float32");
  expect(g_entropy, f32, "grad_entropy", "float32");
  GRPO_EXPECTS(grad.dtype == logits.dtype, bad_dtype, "grad: the dtype of logits");
  const auto y = view<const std::int64_t, 1>(ids, "ids");
  const auto gl = view<const float, 1>(g_logp, "grad_logp");
  const auto gh = view<const float, 1>(g_entropy, "grad_entropy");
  std::size_t ws = logprob_workspace_bytes();
  by_logit_dtype(logits.dtype, [&]<class T>() {
    const auto x = view<const T, 2>(logits, "logits");
    const auto g = view<T, 2>(grad, "grad");
    check(cuda::selective_log_softmax_backward(x, y, gl, gh, g, static_cast<float>(temperature),
                                               ignore_index, reinterpret_cast<void*>(workspace), ws,
                                               as_stream(stream)),
          "selective_log_softmax_backward");
  });
  cuda::read_status(reinterpret_cast<const unsigned int*>(workspace), as_stream(stream));
}

void compute_loss(const loss_options& o, const darr& logp, const darr& entropy,
                  const loss_inputs& in, const darr& grad_logp, const darr& grad_entropy,
                  std::uintptr_t scalars, std::uintptr_t workspace, std::uintptr_t stream) {
  expect_workspace(workspace);
  const cuda::loss_params p = params_of(o);
  for (const darr* a : {&logp, &grad_logp, &grad_entropy})
    expect(*a, f32, "logp / grads", "float32 (the Python layer converts)");
  if (present(entropy)) expect(entropy, f32, "entropy", "float32");
  const auto lp = view<const float, 2>(logp, "logp");
  const auto h = view_opt<const float, 2>(entropy, "entropy");
  const auto b = batch_of(in);
  std::size_t ws = loss_workspace_bytes(logp.shape[0], logp.shape[1]);
  check(cuda::compute_loss(p, lp, h, b, view<float, 2>(grad_logp, "grad_logp"),
                           view<float, 2>(grad_entropy, "grad_entropy"),
                           reinterpret_cast<double*>(scalars), reinterpret_cast<void*>(workspace),
                           ws, as_stream(stream)),
        "compute_loss");
  cuda::read_status(reinterpret_cast<const unsigned int*>(workspace), as_stream(stream));
}

void fused_grpo_step(const loss_options& o, const darr& logits, const darr& ids,
                     const loss_inputs& in, const darr& grad_logits, const darr& logp,
                     const darr& entropy, std::uintptr_t scalars, double temperature,
                     std::uintptr_t workspace, std::uintptr_t stream) {
  expect_workspace(workspace);
  const cuda::loss_params p = params_of(o);
  expect(ids, i64, "ids", "int64");
  expect(logp, f32, "logp", "float32");
  expect(entropy, f32, "entropy", "float32");
  GRPO_EXPECTS(grad_logits.dtype == logits.dtype, bad_dtype, "grad_logits: the dtype of logits");
  const auto y = view<const std::int64_t, 2>(ids, "ids");
  const auto b = batch_of(in);
  cuda::fused_grpo_options fo;
  fo.temperature = static_cast<float>(temperature);
  std::size_t ws = loss_workspace_bytes(logits.shape[0], logits.shape[1]);
  by_logit_dtype(logits.dtype, [&]<class T>() {
    const auto x = view<const T, 3>(logits, "logits");
    const auto g = view<T, 3>(grad_logits, "grad_logits");
    check(cuda::fused_grpo_step(p, x, y, b, g, view<float, 2>(logp, "logp"),
                                view<float, 2>(entropy, "entropy"),
                                reinterpret_cast<double*>(scalars), fo,
                                reinterpret_cast<void*>(workspace), ws, as_stream(stream)),
          "fused_grpo_step");
  });
  cuda::read_status(reinterpret_cast<const unsigned int*>(workspace), as_stream(stream));
}

}  // namespace grpo::pycuda

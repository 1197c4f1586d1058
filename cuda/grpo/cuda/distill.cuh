// SPDX-License-Identifier: Apache-2.0
/// @file distill.cuh
/// @brief CUDA dense-teacher distillation over the vocabulary: forward KL, reverse KL, generalised
///        JSD and the DistiLLM skew KLs, loss and exact gradient into the student logits, the
///        device twin of grpo::distill::divergence_loss (distill/dense.hpp).
///
/// Per token row (one thread block), with z' = s / T, q = softmax(z'), p = softmax(u / T):
///   pass 1: online log-sum-exp of the student and of the teacher row (grpo::online_lse, CUB
///   merge); pass 2: l = sum_i f(lp_i, lq_i) and G = sum_i g_i, g_i = df/dlq_i (skipped for the
///   forward KL,
///           whose G = -1);
///   pass 3: grad_j = c (T^2 or 1) (1/T) grad_output (g_j - q_j G)  (ops::softmax_chain), or
///           q_j - p_j through ops::forward_kl_dz for the forward KL (loss summed in this pass).
/// The element maths are the ops:: functions of <grpo/ops/distill.hpp>; the divergence is resolved
/// exactly as the CPU (JSD endpoints per jsd_endpoints). Three reads of both rows (two for the
/// forward KL) and one write; rows up to a few hundred KiB mostly re-read from L2.
///
/// Aggregation: each row r carries a coefficient c_r (0 = inactive, gradient row zeroed): the loss
/// is sum_r c_r l_r. distill_coefficients() builds c_r = w_bt s_b from a [B, L] mask, optional
/// weights and grpo::agg_options (every aggregation mode, global denominators), as the CPU path.
#pragma once

#include <distill/options.hpp>
#include <distill/topk.hpp>  // topk_options, topk_convention, max_topk (distill_topk.cuh)
#include <grpo/core/config.hpp>
#include <grpo/core/math.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/cuda/common.cuh>
#include <grpo/cuda/loss_terms.cuh>  // agg_params, agg_row_scale
#include <grpo/ops/distill.hpp>
#include <grpo/ops/softmax.hpp>

#include <cuda_runtime.h>
#include <cub/block/block_reduce.cuh>  // cub::BlockReduce

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace grpo::cuda {

/// Device form of grpo::distill::distill_options (the divergence already resolved).
struct distill_params {
  distill::divergence kind = distill::divergence::forward_kl;
  float w = 0, log_w = 0, log_1mw = 0;  ///< mixture weight (beta or alpha), log w, log(1 - w)
  float beta = 1;                       ///< 1 / T
  double t2 = 1;                        ///< T^2 or 1
  double grad_output = 1;
};

/// Resolves and validates distill_options as the CPU does (JSD endpoints -> KLs).
/// @return false for invalid options (T <= 0, beta outside [0, 1], alpha outside [0, 1), ...).
inline bool make_distill_params(const distill::distill_options& o, distill_params& p) noexcept {
  using distill::divergence;
  if (!(o.temperature > 0.0) || !math::is_finite(o.temperature) || !math::is_finite(o.grad_output))
    return false;
  p = distill_params{};
  p.kind = o.kind;
  double w = 0.0;
  switch (o.kind) {
    case divergence::forward_kl:
    case divergence::reverse_kl:
      break;
    case divergence::jsd:
      if (!(o.beta >= 0.0 && o.beta <= 1.0)) return false;
      w = o.beta;
      if (o.endpoints == distill::jsd_endpoints::kl_limits && o.beta == 0.0)
        p.kind = divergence::forward_kl;
      if (o.endpoints == distill::jsd_endpoints::kl_limits && o.beta == 1.0)
        p.kind = divergence::reverse_kl;
      break;
    case divergence::skew_forward_kl:
    case divergence::skew_reverse_kl:
      if (!(o.alpha >= 0.0 && o.alpha < 1.0)) return false;
      w = o.alpha;
      break;
    default:
      return false;
  }
  p.w = static_cast<float>(w);
  p.log_w = w > 0.0 ? static_cast<float>(math::log(w)) : -math::infinity<float>();
  p.log_1mw = w < 1.0 ? static_cast<float>(math::log1p(-w)) : -math::infinity<float>();
  p.beta = static_cast<float>(1.0 / o.temperature);
  p.t2 = o.scale_by_t2 ? o.temperature * o.temperature : 1.0;
  p.grad_output = o.grad_output;
  return true;
}

namespace detail {

/// Element value f(lp, lq) and derivative df/dlq of divergence K (thin adapters over grpo::ops:
/// p = e^lp, q = e^lq and the mixture log lM are formed once and shared by value and gradient).
template <distill::divergence K>
__device__ GRPO_FORCEINLINE void div_terms(float lp, float lq, const distill_params& P, float& v,
                                           float& g) {
  using distill::divergence;
  const float p = ops::distill_exp(lp), q = ops::distill_exp(lq);
  if constexpr (K == divergence::forward_kl) {
    // f = p (lp - lq), df/dlq = -p.
    v = ops::forward_kl(lp, lq, p);
    g = ops::forward_kl_grad(p);
  } else if constexpr (K == divergence::reverse_kl) {
    // f = q (lq - lp), df/dlq = q (lq - lp + 1).
    v = ops::reverse_kl(lp, lq, q);
    g = ops::reverse_kl_grad(lp, lq, q);
  } else if constexpr (K == divergence::jsd) {
    // M = beta p + (1 - beta) q (log_add_exp: never log 0 for two tiny masses);
    // f = beta p (lp - lM) + (1 - beta) q (lq - lM), df/dlq = (1 - beta) q (lq - lM).
    const float lm = ops::log_mixture(P.log_w, lp, P.log_1mw, lq);
    v = ops::jsd(lp, lq, p, q, lm, P.w);
    g = ops::jsd_grad(lq, q, lm, P.w);
  } else if constexpr (K == divergence::skew_forward_kl) {
    // M = a p + (1 - a) q; f = p (lp - lM), df/dlq = -(1 - a) p q / M.
    const float lm = ops::log_mixture(P.log_w, lp, P.log_1mw, lq);
    v = ops::skew_forward_kl(lp, p, lm);
    g = ops::skew_forward_kl_grad(lq, p, lm, P.log_1mw);
  } else {
    // M = (1 - a) p + a q; f = q (lq - lM), df/dlq = q (lq - lM + 1 - a q / M).
    const float lm = ops::log_mixture(P.log_1mw, lp, P.log_w, lq);
    v = ops::skew_reverse_kl(lq, q, lm);
    g = ops::skew_reverse_kl_grad(lq, q, lm, P.log_w);
  }
}

/// Two sums reduced together (loss and G; or the tail mass).
struct pair_sum {
  double a, b;
};
struct pair_add {
  __device__ GRPO_FORCEINLINE pair_sum operator()(pair_sum x, const pair_sum& y) const noexcept {
    return {x.a + y.a, x.b + y.b};
  }
};

/// One block per row (grid-stride). `coef` null: every row active with c = 1.
/// Row r: l_r = (T^2 or 1) sum_j f(lp_j, lq_j) and
///   grad_rj = c_r grad_output (T^2 or 1) (1/T) (g_j - q_j G),  G = sum_i g_i,
/// with lq = log_softmax(s_r / T), lp = log_softmax(u_r / T). The per-thread partial sums of
/// pass 2 are float (as the CPU's lanes), merged in double across the block.
template <int BT, distill::divergence K, class S, class U, class G>
__global__ void __launch_bounds__(BT)
    dense_distill_kernel(strided_view<const S, 2> s, strided_view<const U, 2> u,
                         strided_view<G, 2> g, const float* coef, distill_params P, float* row_loss,
                         double* part, unsigned int* status) {
  using lse_red = cub::BlockReduce<online_lse, BT>;
  using sum_red = cub::BlockReduce<pair_sum, BT>;
  __shared__ union {
    typename lse_red::TempStorage l;
    typename sum_red::TempStorage s;
  } tmp;
  __shared__ float sh[6];
  __shared__ int sh_bad;
  const index_t N = s.extent(0), V = s.extent(1);
  const index_t ss = s.stride(1), us = u.stride(1);
  const bool want_g = g.data_handle() != nullptr;
  for (index_t r = blockIdx.x; r < N; r += gridDim.x) {
    const float c = coef ? coef[r] : 1.0f;
    G* gr = want_g ? g.data_handle() + r * g.stride(0) : nullptr;
    if (c == 0.0f) {  // inactive row: zero gradient, no loss, inputs not read
      if (gr)
        for (index_t j = threadIdx.x; j < V; j += BT) gr[j * g.stride(1)] = narrow<G>(0.0f);
      if (threadIdx.x == 0) {
        if (row_loss) row_loss[r] = 0.0f;
        part[r] = 0.0;
      }
      continue;
    }
    const S* sr = s.data_handle() + r * s.stride(0);
    const U* ur = u.data_handle() + r * u.stride(0);
    // Pass 1: both log-sum-exps.
    online_lse ls(P.beta), lu(P.beta);
    int bad = 0;
    for (index_t j = threadIdx.x; j < V; j += BT) {
      const float xs = load_float(sr + j * ss), xu = load_float(ur + j * us);
      if (!(xs == xs) || xs == math::infinity<float>())
        bad |= 1;
      else
        ls.push(xs);
      if (!(xu == xu) || xu == math::infinity<float>())
        bad |= 2;
      else
        lu.push(xu);
    }
    const int any_bad = __syncthreads_or(bad);
    const online_lse ts = lse_red(tmp.l).Reduce(ls, merge_lse{});
    __syncthreads();
    const online_lse tu = lse_red(tmp.l).Reduce(lu, merge_lse{});
    if (threadIdx.x == 0) {
      sh_bad = any_bad || ts.empty() || tu.empty();
      sh[0] = ts.m;
      sh[1] = ts.log_sum();
      sh[2] = tu.m;
      sh[3] = tu.log_sum();
      if (sh_bad) atomicOr(status, status_non_finite_row);
    }
    __syncthreads();
    const float ms = sh[0], lgs = sh[1], mu = sh[2], lgu = sh[3], b = P.beta;
    const float nan = __int_as_float(0x7fc00000);
    const bool row_bad = sh_bad != 0;
    const float gscale =
        static_cast<float>(static_cast<double>(c) * P.grad_output * P.t2 * static_cast<double>(b));
    double total = 0.0;
    if constexpr (K != distill::divergence::forward_kl) {
      // Pass 2: loss and G = sum_i df/dlq_i.
      float va = 0.0f, ga = 0.0f;
      for (index_t j = threadIdx.x; j < V; j += BT) {
        const float lq = ops::log_softmax(load_float(sr + j * ss), ms, lgs, b);
        const float lp = ops::log_softmax(load_float(ur + j * us), mu, lgu, b);
        float v, gi;
        div_terms<K>(lp, lq, P, v, gi);
        va += v;
        ga += gi;
      }
      const pair_sum t = sum_red(tmp.s).Reduce(pair_sum{va, ga}, pair_add{});
      if (threadIdx.x == 0) {
        sh[4] = static_cast<float>(t.b);
        total = t.a;
      }
      __syncthreads();
      if (gr) {
        const float big_g = sh[4];
        for (index_t j = threadIdx.x; j < V; j += BT) {
          const float lq = ops::log_softmax(load_float(sr + j * ss), ms, lgs, b);
          const float lp = ops::log_softmax(load_float(ur + j * us), mu, lgu, b);
          float v, gi;
          div_terms<K>(lp, lq, P, v, gi);
          const float d = ops::softmax_chain(gi, ops::distill_exp(lq), big_g);
          gr[j * g.stride(1)] = narrow<G>(row_bad ? nan : gscale * d);
        }
      }
    } else {
      // Forward KL: gradient q - p (no cancellation near 1) and the loss in one pass.
      float va = 0.0f;
      for (index_t j = threadIdx.x; j < V; j += BT) {
        const float lq = ops::log_softmax(load_float(sr + j * ss), ms, lgs, b);
        const float lp = ops::log_softmax(load_float(ur + j * us), mu, lgu, b);
        const float p = ops::distill_exp(lp), q = ops::distill_exp(lq);
        va += ops::forward_kl(lp, lq, p);
        if (gr)
          gr[j * g.stride(1)] =
              narrow<G>(row_bad ? nan : gscale * ops::forward_kl_dz(lp, lq, p, q));
      }
      const pair_sum t = sum_red(tmp.s).Reduce(pair_sum{va, 0.0}, pair_add{});
      if (threadIdx.x == 0) total = t.a;
    }
    if (threadIdx.x == 0) {
      const double l = row_bad ? static_cast<double>(nan) : total * P.t2;
      if (row_loss) row_loss[r] = static_cast<float>(l);
      part[r] = static_cast<double>(c) * l;
    }
    __syncthreads();
  }
}

/// One block: fixed-order sum of the weighted row losses (deterministic: the same bits on every
/// run, unlike an atomicAdd of the rows).
template <int BT>
__global__ void __launch_bounds__(BT)
    distill_sum_kernel(const double* part, index_t n, double* loss) {
  using red = cub::BlockReduce<double, BT>;
  __shared__ typename red::TempStorage tmp;
  double a = 0.0;
  for (index_t k = threadIdx.x; k < n; k += BT) a += part[k];
  const double t = red(tmp).Sum(a);
  if (threadIdx.x == 0) *loss = t;
}

/// Active-token counts per sequence (mask != 0): the n_b of the aggregation factors.
template <int BT>
__global__ void __launch_bounds__(BT)
    distill_count_kernel(strided_view<const std::uint8_t, 2> mask, double* n_row) {
  using red = cub::BlockReduce<double, BT>;
  __shared__ typename red::TempStorage tmp;
  const index_t B = mask.extent(0), L = mask.extent(1);
  for (index_t b = blockIdx.x; b < B; b += gridDim.x) {
    double n = 0.0;
    for (index_t t = threadIdx.x; t < L; t += BT) n += mask(b, t) != 0 ? 1.0 : 0.0;
    const double tot = red(tmp).Sum(n);
    if (threadIdx.x == 0) n_row[b] = tot;
    __syncthreads();
  }
}

/// One block: aggregation factors s_b, then c_bt = w_bt s_b [m_bt != 0] for every token.
/// s_b comes from agg_row_scale (loss_terms.cuh), the per-row form of aggregation_row_scales:
/// token_mean 1/N, token_sum 1, seq_mean_* 1/(G L) or 1/(G n_b), group_token_mean 1/(N_g groups).
template <int BT>
__global__ void __launch_bounds__(BT)
    distill_coef_kernel(strided_view<const std::uint8_t, 2> mask,
                        strided_view<const float, 2> weights, agg_params a, const double* n_row,
                        double* s_row, float* coef, unsigned int* status) {
  using red = cub::BlockReduce<double, BT>;
  __shared__ typename red::TempStorage tmp;
  __shared__ double tot[2];
  const index_t B = mask.extent(0), L = mask.extent(1);
  double n = 0.0, ne = 0.0;
  for (index_t b = threadIdx.x; b < B; b += BT) {
    n += n_row[b];
    ne += n_row[b] > 0 ? 1.0 : 0.0;
  }
  const double n_sum = red(tmp).Sum(n);
  __syncthreads();
  const double ne_sum = red(tmp).Sum(ne);
  if (threadIdx.x == 0) {
    tot[0] = n_sum;
    tot[1] = ne_sum;
  }
  __syncthreads();
  agg_totals t;
  t.n_total = tot[0];
  t.non_empty = tot[1];
  t.rows = static_cast<double>(B);
  t.width = static_cast<double>(L);
  for (index_t b = threadIdx.x; b < B; b += BT) {
    double ng = 0.0;
    if (a.mode == agg_mode::group_token_mean && a.group_size > 0) {
      const index_t g0 = (b / a.group_size) * a.group_size;
      for (index_t k = g0; k < g0 + a.group_size && k < B; ++k) ng += n_row[k];
    }
    s_row[b] = agg_row_scale(a, n_row[b], t, ng);
  }
  __syncthreads();
  for (index_t k = threadIdx.x; k < B * L; k += BT) {
    const index_t b = k / L, tt = k % L;
    const bool on = mask(b, tt) != 0;
    float w = 1.0f;
    if (on && weights.data_handle() != nullptr) {
      w = weights(b, tt);
      if (!(w - w == 0.0f)) atomicOr(status, status_bad_input);
    }
    coef[k] = on ? static_cast<float>(w * s_row[b]) : 0.0f;
  }
}

/// Calls f(std::integral_constant<divergence, K>{}) for the run-time kind (one kernel per kind, so
/// the element maths inline without a per-element switch): distill::visit_divergence, the CPU
/// engine's dispatch, with cudaErrorInvalidValue for a value outside the enumeration.
template <class F>
cudaError_t dispatch_divergence(distill::divergence k, F&& f) {
  return distill::visit_divergence(k, static_cast<F&&>(f),
                                   []() -> cudaError_t { return cudaErrorInvalidValue; });
}

}  // namespace detail

/// Per-token coefficients c_bt = w_bt s_b [m_bt != 0] of the distillation aggregation (CPU:
/// distill::detail::make_plan): `mask` [B, L] (nonzero = active; required), optional `weights`
/// [B, L], aggregation `agg` (make_agg_params(distill_options::aggregate)). Writes `coef` [B L]
/// (device floats, row-major), usable as the `coef` argument of dense_distill.
/// @param workspace  nullptr to query workspace_bytes (status word + 2 B doubles).
[[nodiscard]] inline cudaError_t distill_coefficients(strided_view<const std::uint8_t, 2> mask,
                                                      strided_view<const float, 2> weights,
                                                      const agg_params& agg, float* coef,
                                                      void* workspace, std::size_t& workspace_bytes,
                                                      cudaStream_t stream = nullptr) noexcept {
  const index_t B = mask.extent(0), L = mask.extent(1);
  const std::size_t need = align_up(sizeof(unsigned int)) + 2 * align_up(sizeof(double) * B);
  if (workspace == nullptr) {
    workspace_bytes = need;
    return cudaSuccess;
  }
  if (workspace_bytes < need || coef == nullptr) return cudaErrorInvalidValue;
  if (weights.data_handle() && (weights.extent(0) != B || weights.extent(1) != L))
    return cudaErrorInvalidValue;
  if (agg.mode == agg_mode::group_token_mean && (agg.group_size <= 0 || B % agg.group_size != 0))
    return cudaErrorInvalidValue;
  auto* base = static_cast<unsigned char*>(workspace);
  auto* status = reinterpret_cast<unsigned int*>(base);
  auto* n_row = reinterpret_cast<double*>(base + align_up(sizeof(unsigned int)));
  auto* s_row = reinterpret_cast<double*>(base + align_up(sizeof(unsigned int)) +
                                          align_up(sizeof(double) * B));
  GRPO_CUDA_TRY(cudaMemsetAsync(status, 0, sizeof(unsigned int), stream));
  if (B == 0 || L == 0) return cudaSuccess;
  detail::distill_count_kernel<256><<<rows_grid(B), 256, 0, stream>>>(mask, n_row);
  GRPO_CUDA_TRY(cudaGetLastError());
  detail::distill_coef_kernel<256>
      <<<1, 256, 0, stream>>>(mask, weights, agg, n_row, s_row, coef, status);
  return cudaGetLastError();
}

/// Dense distillation loss and gradient on the device for N rows of V logits.
/// @param student  [N, V] student logits (float, bfloat16, float16), any strides.
/// @param teacher  [N, V] teacher logits, any supported dtype and strides.
/// @param grad     [N, V] output (float, bfloat16, float16), or empty for the loss only; may alias
///                 the student exactly (in place: every element is read before it is written by
///                 the same thread, in the last pass).
/// @param coef     device [N] per-row coefficients (distill_coefficients), or nullptr for c = 1.
/// @param loss     device double: sum_r c_r l_r (T^2 included when requested).
/// @param row_loss optional device [N] floats: unweighted l_r (0 on inactive rows).
/// @param workspace nullptr to query workspace_bytes (status word + N doubles).
/// @post read_status(): [grpo.bad_value] for a NaN / +inf logit or a row without finite logits
///       (the row's gradient and loss are NaN).
template <class S, class U, class G>
[[nodiscard]] cudaError_t dense_distill(const distill_params& p, strided_view<const S, 2> student,
                                        strided_view<const U, 2> teacher, strided_view<G, 2> grad,
                                        const float* coef, double* loss, float* row_loss,
                                        void* workspace, std::size_t& workspace_bytes,
                                        cudaStream_t stream = nullptr) noexcept {
  const index_t N = student.extent(0), V = student.extent(1);
  const std::size_t need = align_up(sizeof(unsigned int)) + align_up(sizeof(double) * N);
  if (workspace == nullptr) {
    workspace_bytes = need;
    return cudaSuccess;
  }
  if (workspace_bytes < need || loss == nullptr || teacher.extent(0) != N ||
      teacher.extent(1) != V || V <= 0)
    return cudaErrorInvalidValue;
  if (grad.data_handle() != nullptr) {
    if (grad.extent(0) != N || grad.extent(1) != V) return cudaErrorInvalidValue;
    if (static_cast<const void*>(grad.data_handle()) ==
            static_cast<const void*>(student.data_handle()) &&
        (!std::is_same_v<S, G> || grad.strides() != student.strides()))
      return cudaErrorInvalidValue;
    if (static_cast<const void*>(grad.data_handle()) ==
        static_cast<const void*>(teacher.data_handle()))
      return cudaErrorInvalidValue;
  }
  auto* base = static_cast<unsigned char*>(workspace);
  auto* status = reinterpret_cast<unsigned int*>(base);
  auto* part = reinterpret_cast<double*>(base + align_up(sizeof(unsigned int)));
  GRPO_CUDA_TRY(cudaMemsetAsync(status, 0, sizeof(unsigned int), stream));
  GRPO_CUDA_TRY(cudaMemsetAsync(loss, 0, sizeof(double), stream));
  if (N == 0) return cudaSuccess;
  return detail::dispatch_divergence(p.kind, [&](auto kind) -> cudaError_t {
    constexpr int BT = 512;
    auto kernel = detail::dense_distill_kernel<BT, decltype(kind)::value, S, U, G>;
    const int grid = rows_grid(N, device_blocks(kernel, BT, 0));
    kernel<<<grid, BT, 0, stream>>>(student, teacher, grad, coef, p, row_loss, part, status);
    GRPO_CUDA_TRY(cudaGetLastError());
    detail::distill_sum_kernel<256><<<1, 256, 0, stream>>>(part, N, loss);
    return cudaGetLastError();
  });
}

}  // namespace grpo::cuda

// The top-k teacher kernel and launcher (topk_distill) live beside, on the same row maths.
#include <grpo/cuda/distill_topk.cuh>

// SPDX-License-Identifier: Apache-2.0
/// @file advantage.cuh
/// @brief CUDA group advantages (GRPO z-score, Dr. GRPO, RLOO) over fixed-size groups or CSR group
///        offsets, so that a training step keeps rewards -> advantages -> loss on the device.
///
/// Maths: the estimator formulas are the ones of <grpo/ops/advantage.hpp> (zscore, z_scale,
/// variance_from_centered, rloo) and the per-row case analysis (singleton, zero variance,
/// estimator) is grpo::detail::row_advantage_of (advantage.hpp), the function the CPU path calls:
/// nothing is restated here. tests/cuda/test_advantage_host.cu checks the device statistics and
/// that function against a naive double-precision reference and verl's outputs.
///
/// Statistics per group, as the CPU path: NaN rewards are unscorable (excluded, advantage 0),
/// +-inf rewards are an error (status word), the centred sum of squares is taken about the group
/// mean in a second pass (no one-pass cancellation), zero-variance groups (max - min <= tol) and
/// singletons follow the options. One thread block per group; sums are in double.
#pragma once

#include <grpo/advantage.hpp>
#include <grpo/core/config.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/cuda/common.cuh>
#include <grpo/ops/advantage.hpp>

#include <cuda_runtime.h>
#include <cub/block/block_reduce.cuh>  // cub::BlockReduce

#include <cstddef>
#include <type_traits>

namespace grpo::cuda {

/// The options of grpo::advantage_options the device path reads, as a flat block: the host
/// definition of <grpo/advantage.hpp>, shared with the CPU path.
using group_advantage_params = grpo::detail::row_advantage_params;

/// Builds the device block from advantage_options.
/// @return false for an estimator other than grpo / dr_grpo / rloo, the verl float32 emulation,
///         or invalid options (negative eps / tolerance, 0 < eps < 1e-150).
inline bool make_group_advantage_params(const advantage_options& o,
                                        group_advantage_params& out) noexcept {
  if (o.estimator != adv_estimator::grpo && o.estimator != adv_estimator::dr_grpo &&
      o.estimator != adv_estimator::rloo)
    return false;
  if (o.emulate_verl_float32 || !(o.eps >= 0) || !(o.zero_var_tol >= 0)) return false;
  if (o.eps != 0 && !(o.eps >= grpo::detail::min_nonzero_eps)) return false;  // (the host rule)
  out = grpo::detail::make_row_advantage_params(o);
  return true;
}

/// Moments of one group over its scorable (non-NaN) members: {n, sum, max, min, centred sum of
/// squares} (the batch / OPO / GPG / pass@k fields stay 0: those estimators are host-only).
using group_stats = grpo::detail::group_row_stats;

/// Advantage of one scorable row with reward r in a group with statistics g: the CPU's own case
/// analysis, grpo::detail::row_advantage_of (advantage.hpp), called on the device.
/// @pre g.n >= 1; singleton_policy::error groups are rejected by the caller.
GRPO_HOST_DEVICE inline double group_row_advantage(const group_advantage_params& o, double r,
                                                   const group_stats& g) noexcept {
  return grpo::detail::row_advantage_of(o, r, g);
}

namespace detail {

/// Pass-1 state: count, sum, max, min of scorable rewards.
struct adv_pass1 {
  double n, sum, mx, mn;
};
struct adv_pass1_merge {
  __device__ GRPO_FORCEINLINE adv_pass1 operator()(adv_pass1 a, const adv_pass1& b) const noexcept {
    a.n += b.n;
    a.sum += b.sum;
    a.mx = b.mx > a.mx ? b.mx : a.mx;
    a.mn = b.mn < a.mn ? b.mn : a.mn;
    return a;
  }
};

/// One block per group (grid-stride over groups). Group g holds rows [begin, end):
/// fixed groups: begin = g k; CSR: offsets[g] .. offsets[g + 1].
template <int BT, class R, class A>
__global__ void __launch_bounds__(BT)
    group_advantage_kernel(group_advantage_params o, strided_view<const R, 1> rewards,
                           index_t group_size, const index_t* offsets, index_t num_groups,
                           strided_view<A, 1> out, unsigned int* status) {
  using red1 = cub::BlockReduce<adv_pass1, BT>;
  using red2 = cub::BlockReduce<double, BT>;
  __shared__ union {
    typename red1::TempStorage a;
    typename red2::TempStorage b;
  } tmp;
  __shared__ double sh[5];
  const double inf = math::infinity<double>();
  for (index_t g = blockIdx.x; g < num_groups; g += gridDim.x) {
    const index_t begin = offsets ? offsets[g] : g * group_size;
    const index_t end = offsets ? offsets[g + 1] : begin + group_size;
    adv_pass1 p{0.0, 0.0, -inf, inf};
    bool bad = false;
    for (index_t i = begin + threadIdx.x; i < end; i += BT) {
      const double r = static_cast<double>(widen(rewards(i)));
      if (r != r) continue;  // NaN: unscorable
      if (r == inf || r == -inf) bad = true;
      p.n += 1.0;
      p.sum += r;
      p.mx = r > p.mx ? r : p.mx;
      p.mn = r < p.mn ? r : p.mn;
    }
    if (bad) atomicOr(status, status_bad_input);
    const adv_pass1 t = red1(tmp.a).Reduce(p, adv_pass1_merge{});
    if (threadIdx.x == 0) {
      sh[0] = t.n;
      sh[1] = t.sum;
      sh[2] = t.mx;
      sh[3] = t.mn;
    }
    __syncthreads();
    const double n = sh[0], mean = n > 0 ? sh[1] / n : 0.0;
    double ss = 0.0;
    for (index_t i = begin + threadIdx.x; i < end; i += BT) {
      const double r = static_cast<double>(widen(rewards(i)));
      if (r == r) ss += (r - mean) * (r - mean);
    }
    const double ss_tot = red2(tmp.b).Sum(ss);
    if (threadIdx.x == 0) {
      sh[4] = ss_tot;
      if (n == 1.0 && o.singleton == singleton_policy::error) atomicOr(status, status_bad_input);
    }
    __syncthreads();
    const group_stats gs{n, sh[1], sh[2], sh[3], sh[4]};
    for (index_t i = begin + threadIdx.x; i < end; i += BT) {
      const double r = static_cast<double>(widen(rewards(i)));
      const double a = (r == r && n >= 1.0) ? group_row_advantage(o, r, gs) : 0.0;
      if constexpr (std::is_same_v<A, double>)
        out(i) = a;
      else
        out(i) = narrow<A>(static_cast<float>(a));
    }
    __syncthreads();
  }
}

}  // namespace detail

/// Group advantages on the device: out[i] = advantage of row i within its group.
/// @param rewards     [B] device rewards (float, double, bfloat16, float16); NaN = unscorable.
/// @param group_size  k > 0 for contiguous fixed-size groups (B must be a multiple of k), or 0
///                    when `offsets` is given.
/// @param offsets     device CSR offsets [num_groups + 1] (offsets[0] = 0, non-decreasing,
///                    offsets[num_groups] = B), or nullptr for fixed groups.
/// @param out         [B] device output (float or double).
/// @param workspace   nullptr to query workspace_bytes (the status word).
/// @post read_status() reports [grpo.bad_value] for +-inf rewards or a singleton group under
///       singleton_policy::error.
/// @return cudaErrorInvalidValue on a shape mismatch; else the launch status. Never throws.
template <class R, class A>
[[nodiscard]] cudaError_t group_advantages(const group_advantage_params& o,
                                           strided_view<const R, 1> rewards, index_t group_size,
                                           const index_t* offsets, index_t num_groups,
                                           strided_view<A, 1> out, void* workspace,
                                           std::size_t& workspace_bytes,
                                           cudaStream_t stream = nullptr) noexcept {
  if (workspace == nullptr) {
    workspace_bytes = align_up(sizeof(unsigned int));
    return cudaSuccess;
  }
  const index_t B = rewards.extent(0);
  if (workspace_bytes < sizeof(unsigned int) || out.extent(0) != B) return cudaErrorInvalidValue;
  if (offsets == nullptr) {
    if (group_size <= 0 || B % group_size != 0) return cudaErrorInvalidValue;
    num_groups = B / group_size;
  } else if (num_groups < 0) {
    return cudaErrorInvalidValue;
  }
  auto* status = static_cast<unsigned int*>(workspace);
  GRPO_CUDA_TRY(cudaMemsetAsync(status, 0, sizeof(unsigned int), stream));
  if (num_groups == 0) return cudaSuccess;
  constexpr int BT = 128;
  detail::group_advantage_kernel<BT><<<rows_grid(num_groups), BT, 0, stream>>>(
      o, rewards, group_size, offsets, num_groups, out, status);
  return cudaGetLastError();
}

}  // namespace grpo::cuda

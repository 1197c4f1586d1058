// SPDX-License-Identifier: Apache-2.0
/// @file fused_grpo.cuh
/// @brief CUDA fused GRPO step: [B, T, V] logits -> log pi(y), H, the GRPO-family loss and the
///        gradient into the logits (optionally in place), the device twin of grpo::fused_grpo_step
///        (fused_grpo.hpp). Also the loss alone on [B, T] log-probs (compute_loss on the device).
///
/// Schedules (as the CPU path):
///  - single pass, when every coefficient is token-local (token-level ratio, no OPSM, no sequence
///    TIS): tiny [B, T] kernels first compute each row's valid-token count and the aggregation
///    factors s_i from the mask alone; then one block per token reads its logits row (statistics),
///    thread 0 evaluates the token's dL/dlogp and dL/dH with loss_terms.cuh, and the block writes
///    the gradient row (second read of the row, mostly from L2). One HBM read + one write.
///  - two phase, otherwise (GSPO sequence ratio, OPSM, sequence TIS, GMPO, VESPO, top-entropy
///    mask): forward log-softmax of every valid row, the loss kernels on [B, T] (with the
///    top-entropy quantile by a device radix sort when no threshold is given), then the gradient
///    pass (launch_row_backward).
/// The loss scalars (loss, policy_loss, kl_loss, entropy_loss) are summed in a fixed order by one
/// block (deterministic, bit-identical between runs).
///
/// Workspace / status convention (as logprob.cuh): pass workspace = nullptr to get its size in
/// workspace_bytes; its first 256 bytes hold the status word, read with read_status() after the
/// stream is synchronised ([grpo.out_of_range] for a bad id on a valid token, [grpo.bad_value] for
/// non-finite logits or loss inputs on a valid token, or a negative / non-finite mask).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/cuda/common.cuh>
#include <grpo/cuda/logprob.cuh>
#include <grpo/cuda/loss_terms.cuh>

#include <cuda_runtime.h>
#include <cub/block/block_reduce.cuh>        // cub::BlockReduce
#include <cub/device/device_radix_sort.cuh>  // cub::DeviceRadixSort (top-entropy quantile)

#include <cstddef>
#include <initializer_list>
#include <type_traits>

namespace grpo::cuda {

/// How the fused step walks the logits (mirrors grpo::fused_schedule).
enum class fused_schedule : unsigned char { automatic, single_pass, two_phase };

/// Options of the device fused step besides the loss parameters (mirrors grpo::fused_grpo_options).
struct fused_grpo_options {
  float temperature = 1.0f;  ///< T > 0: log p = log_softmax(logits / T); gradient carries 1/T
  fused_schedule schedule = fused_schedule::automatic;
  /// Shared-memory caching of a row between its statistics and gradient passes (logprob.cuh).
  row_cache cache = row_cache::automatic;
};

/// Device-resident inputs of the loss on [B, T] (mirror of grpo::loss_batch without logp/entropy,
/// which the fused step computes). Optional views are default-constructed (null data).
template <class P, class M = P>
struct device_loss_batch {
  strided_view<const P, 2> old_logp;      ///< behaviour log-probs; null: on-policy
  strided_view<const P, 2> ref_logp;      ///< needed iff kl_coef != 0
  strided_view<const P, 2> advantages;    ///< required; per-sequence via stride 0 along T
  strided_view<const M, 2> mask;          ///< required
  strided_view<const P, 2> sampler_logp;  ///< TIS / OPSM
  strided_view<const P, 2> is_weights;    ///< precomputed detached IS weights (exclusive with TIS)
  const unsigned char* truncated = nullptr;  ///< [B] 1 = truncated row (dropped); may be null
  const double* group_tokens = nullptr;  ///< [B] global N_g of the row's group (group_token_mean)
};

/// Device scalars written by the loss kernels (a caller-owned device array of 4 doubles).
enum scalar_slot : int { slot_loss = 0, slot_policy = 1, slot_kl = 2, slot_entropy = 3 };

namespace detail {

template <class V>
GRPO_HOST_DEVICE constexpr bool has(const V& v) noexcept {
  return v.data_handle() != nullptr;
}

/// The [B, T] loss state shared by the kernels (all pointers into the workspace).
struct loss_state {
  row_ctx* ctx = nullptr;    ///< [B] row statistics and aggregation factors
  double* h_thr = nullptr;   ///< top-entropy threshold (device scalar), when computed
  double* part = nullptr;    ///< [parts x 3] weighted (policy, KL, entropy) partial sums
  float* g_logp = nullptr;   ///< [B T] dL/dlogp (two-phase)
  float* g_h = nullptr;      ///< [B T] dL/dH (two-phase)
  float* keys = nullptr;     ///< [2 B T] entropy sort keys in / out (quantile)
  void* sort_tmp = nullptr;  ///< cub::DeviceRadixSort temporary storage
  std::size_t sort_bytes = 0;
  unsigned int* status = nullptr;
};

/// Reads the inputs of token (i, t); logp / entropy come from the given arrays (may be null).
template <class P, class M>
__device__ GRPO_FORCEINLINE token_in load_token(const device_loss_batch<P, M>& in, index_t i,
                                                index_t t, double lp, double h) {
  token_in x;
  const bool trunc = in.truncated != nullptr && in.truncated[i] != 0;
  x.m = trunc ? 0.0 : static_cast<double>(in.mask(i, t));
  x.lp = lp;
  x.h = h;
  x.lo = has(in.old_logp) ? static_cast<double>(in.old_logp(i, t)) : lp;
  x.A = static_cast<double>(in.advantages(i, t));
  x.lr = has(in.ref_logp) ? static_cast<double>(in.ref_logp(i, t)) : lp;
  x.ls = has(in.sampler_logp) ? static_cast<double>(in.sampler_logp(i, t)) : x.lo;
  x.has_isw = has(in.is_weights);
  x.isw = x.has_isw ? static_cast<double>(in.is_weights(i, t)) : 1.0;
  return x;
}

/// Kernel 1, one block per row: pass 1 of compute_loss_into (row sums -> row_ctx), then the
/// second row pass over the final mask (final-mask counts, GMPO's sums). `logp` / `entropy` may
/// be null when nothing needs them (single pass); `h_thr` null: the threshold of `p` (or none).
template <int BT, class P, class M>
__global__ void __launch_bounds__(BT)
    loss_rows_kernel(loss_params p, device_loss_batch<P, M> in, index_t B, index_t Tn,
                     const float* logp, const float* entropy, const double* h_thr, loss_state st) {
  using red_t = cub::BlockReduce<row_sums, BT>;
  using red2_t = cub::BlockReduce<row_sums2, BT>;
  __shared__ union {
    typename red_t::TempStorage r;
    typename red2_t::TempStorage r2;
  } tmp;
  __shared__ cub::Uninitialized<row_ctx> sh_ctx_raw;  // no constructor runs in shared memory
  row_ctx& sh_ctx = sh_ctx_raw.Alias();
  const bool has_isw = has(in.is_weights);
  double thr = -math::infinity<double>();
  if (p.emask) thr = h_thr ? *h_thr : (p.has_entropy_threshold ? p.entropy_threshold : thr);
  auto token = [&](index_t i, index_t t) {
    const index_t k = i * Tn + t;
    return load_token(in, i, t, logp ? static_cast<double>(logp[k]) : 0.0,
                      entropy ? static_cast<double>(entropy[k]) : 0.0);
  };
  for (index_t i = blockIdx.x; i < B; i += gridDim.x) {
    row_sums s;
    bool bad = false;
    for (index_t t = threadIdx.x; t < Tn; t += BT) {
      const token_in x = token(i, t);
      if (!(x.m >= 0.0) || x.m - x.m != 0.0) bad = true;  // negative, NaN or inf mask
      s += token_row_sums(p, x);
    }
    if (bad) atomicOr(st.status, status_bad_input);
    const row_sums tot = red_t(tmp.r).Reduce(s, row_sums_add{});
    if (threadIdx.x == 0) {
      sh_ctx = finish_row(p, tot);
      sh_ctx.h_thr = thr;
    }
    __syncthreads();
    const row_ctx c = sh_ctx;
    row_sums2 s2;
    for (index_t t = threadIdx.x; t < Tn; t += BT) s2 += token_row_sums2(p, c, token(i, t));
    const row_sums2 tot2 = red2_t(tmp.r2).Reduce(s2, row_sums2_add{});
    if (threadIdx.x == 0) {
      row_ctx out = c;
      finish_row2(p, tot2, has_isw, out);
      st.ctx[i] = out;
    }
    __syncthreads();
  }
}

/// Kernel 2, one block: batch totals (final mask for policy / KL, entropy-kept mask for the
/// entropy term), then every row's aggregation factors.
/// One block suffices: B is the number of sequences of a micro-batch (hundreds to a few
/// thousand), and the totals must be complete before any factor is formed (token_mean's N, the
/// seq modes' G). group_token_mean sums its group's rows directly (groups are contiguous).
template <int BT>
__global__ void __launch_bounds__(BT)
    loss_scales_kernel(loss_params p, index_t B, index_t Tn, const double* group_tokens,
                       loss_state st) {
  using dred_t = cub::BlockReduce<double, BT>;
  __shared__ typename dred_t::TempStorage tmp;
  __shared__ double tot_raw[4];
  double v[4] = {0.0, 0.0, 0.0, 0.0};  // n_fin, non-empty (fin), n_ent, non-empty (ent)
  for (index_t i = threadIdx.x; i < B; i += BT) {
    const row_ctx& c = st.ctx[i];
    v[0] += c.n_fin;
    v[1] += c.n_fin > 0 ? 1.0 : 0.0;
    v[2] += c.n_ent;
    v[3] += c.n_ent > 0 ? 1.0 : 0.0;
  }
  for (int k = 0; k < 4; ++k) {
    const double t = dred_t(tmp).Sum(v[k]);
    if (threadIdx.x == 0) tot_raw[k] = t;
    __syncthreads();
  }
  agg_totals fin, ent;
  fin.n_total = tot_raw[0];
  fin.non_empty = tot_raw[1];
  ent.n_total = tot_raw[2];
  ent.non_empty = tot_raw[3];
  fin.rows = ent.rows = static_cast<double>(B);
  fin.width = ent.width = static_cast<double>(Tn);
  for (index_t i = threadIdx.x; i < B; i += BT) {
    auto group_n = [&](const agg_params& a, bool entropy_counts) {
      if (a.mode != agg_mode::group_token_mean || a.group_size <= 0) return 0.0;
      if (group_tokens) return group_tokens[i];
      const index_t g0 = (i / a.group_size) * a.group_size;
      double s = 0.0;
      for (index_t k = g0; k < g0 + a.group_size && k < B; ++k)
        s += entropy_counts ? st.ctx[k].n_ent : st.ctx[k].n_fin;
      return s;
    };
    row_ctx c = st.ctx[i];
    c.s_pol = agg_row_scale(p.agg, c.n_fin, fin, group_n(p.agg, false));
    c.s_kl = agg_row_scale(p.kl_agg, c.n_fin, fin, group_n(p.kl_agg, false));
    c.s_ent = agg_row_scale(p.ent_agg, c.n_ent, ent, group_n(p.ent_agg, true));
    c.s_gmpo = gmpo_scale(p, static_cast<double>(B));
    st.ctx[i] = c;
  }
}

/// Top-entropy quantile, step 1: sort keys = entropies of base-valid tokens, +inf elsewhere (they
/// sort last), and the count of valid tokens.
template <class P, class M>
__global__ void entropy_keys_kernel(device_loss_batch<P, M> in, index_t B, index_t Tn,
                                    const float* entropy, float* keys, double* count) {
  for (index_t k = blockIdx.x * index_t(blockDim.x) + threadIdx.x; k < B * Tn;
       k += index_t(gridDim.x) * blockDim.x) {
    const index_t i = k / Tn, t = k % Tn;
    const bool valid = !(in.truncated != nullptr && in.truncated[i] != 0) &&
                       static_cast<double>(in.mask(i, t)) != 0.0;
    keys[k] = valid ? entropy[k] : math::infinity<float>();
    if (valid) atomicAdd(count, 1.0);
  }
}

/// Top-entropy quantile, step 2: linear-interpolation quantile at q of the n sorted valid values
/// (torch.quantile, as grpo::detail::quantile_linear); -inf when there is none.
__global__ void entropy_quantile_kernel(const float* sorted, const double* count, double q,
                                        double* h_thr) {
  const double n = *count;
  if (n < 1.0) {
    *h_thr = -math::infinity<double>();
    return;
  }
  const double pos = q * (n - 1.0);
  const auto lo = static_cast<index_t>(floor(pos));
  const index_t last = static_cast<index_t>(n) - 1;
  const index_t hi = lo + 1 < last ? lo + 1 : last;
  const double frac = pos - static_cast<double>(lo);
  const double a = sorted[lo], b = sorted[hi];
  *h_thr = a + frac * (b - a);
}

/// Sum functor over (policy, KL, entropy, spread) quadruples.
struct quad {
  double a = 0, b = 0, c = 0, d = 0;
};
struct quad_add {
  __device__ GRPO_FORCEINLINE quad operator()(quad x, const quad& y) const noexcept {
    x.a += y.a;
    x.b += y.b;
    x.c += y.c;
    x.d += y.d;
    return x;
  }
};

/// Kernel 3 (two phase), one block per row: every token's coefficients from its log-prob and
/// entropy, the row's partial sums, then the sequence-ratio spread.
/// For TRL's sequence level the ratio s_i = exp(mean_t m (lp - lo)) couples the row: every valid
/// token receives row_g m_t / max(n_i, 1), row_g = sum over the row's terms of W d value / d s_i
/// (loss.hpp's second sweep). GMPO's sequence loss is added to the row's policy partial once.
template <int BT, class P, class M>
__global__ void __launch_bounds__(BT)
    loss_tokens_kernel(loss_params p, device_loss_batch<P, M> in, index_t B, index_t Tn,
                       const float* logp, const float* entropy, bool has_ent, loss_state st) {
  using red_t = cub::BlockReduce<quad, BT>;
  __shared__ typename red_t::TempStorage tmp;
  __shared__ double row_g;
  for (index_t i = blockIdx.x; i < B; i += gridDim.x) {
    const row_ctx c = st.ctx[i];
    quad q;
    bool bad = false;
    for (index_t t = threadIdx.x; t < Tn; t += BT) {
      const index_t k = i * Tn + t;
      const token_in x = load_token(in, i, t, static_cast<double>(logp[k]),
                                    entropy ? static_cast<double>(entropy[k]) : 0.0);
      const token_out o = token_terms(p, c, x, has_ent);
      bad |= o.bad;
      st.g_logp[k] = static_cast<float>(o.g_logp);
      st.g_h[k] = static_cast<float>(o.g_h);
      q.a += o.pol;
      q.b += o.kl;
      q.c += o.ent;
      q.d += o.spread;
    }
    if (bad) atomicOr(st.status, status_bad_input);
    const quad tot = red_t(tmp).Reduce(q, quad_add{});
    if (threadIdx.x == 0) {
      row_g = tot.d;
      st.part[3 * i + 0] = tot.a + gmpo_row_loss(p, c);  // GMPO: once per sequence
      st.part[3 * i + 1] = tot.b;
      st.part[3 * i + 2] = tot.c;
    }
    __syncthreads();
    if (p.policy.level == is_level::sequence && row_g != 0.0) {
      // The spread is added in double to the double coefficient, as loss.hpp does, by recomputing
      // the token's coefficient (cheap) rather than re-reading the rounded float.
      for (index_t t = threadIdx.x; t < Tn; t += BT) {
        const index_t k = i * Tn + t;
        const token_in x = load_token(in, i, t, static_cast<double>(logp[k]),
                                      entropy ? static_cast<double>(entropy[k]) : 0.0);
        const token_out o = token_terms(p, c, x, has_ent);
        st.g_logp[k] = static_cast<float>(o.g_logp + spread_grad(p, c, row_g, x.m));
      }
    }
    __syncthreads();
  }
}

/// Kernel 4, one block: fixed-order sum of `count` (policy, KL, entropy) partials into the scalars.
template <int BT>
__global__ void __launch_bounds__(BT)
    loss_sum_kernel(const double* part, index_t count, double kl_coef, double entropy_coef,
                    double* scalars) {
  using red_t = cub::BlockReduce<quad, BT>;
  __shared__ typename red_t::TempStorage tmp;
  quad q;
  for (index_t k = threadIdx.x; k < count; k += BT) {
    q.a += part[3 * k + 0];
    q.b += part[3 * k + 1];
    q.c += part[3 * k + 2];
  }
  const quad tot = red_t(tmp).Reduce(q, quad_add{});
  if (threadIdx.x == 0) {
    scalars[slot_policy] = tot.a;
    scalars[slot_kl] = tot.b;
    scalars[slot_entropy] = tot.c;
    scalars[slot_loss] = tot.a + kl_coef * tot.b - entropy_coef * tot.c;
  }
}

/// Valid-token filter of the fused step: mask != 0 and the row not truncated.
template <class P, class M>
struct active_tokens {
  device_loss_batch<P, M> in;
  index_t Tn;
  __device__ GRPO_FORCEINLINE bool operator()(index_t k) const noexcept {
    const index_t i = k / Tn, t = k % Tn;
    if (in.truncated != nullptr && in.truncated[i] != 0) return false;
    return static_cast<double>(in.mask(i, t)) != 0.0;
  }
  __device__ GRPO_FORCEINLINE bool active(index_t k) const noexcept { return (*this)(k); }
};

/// Single-pass coefficient functor: thread 0 of a token's block turns (log p, H) into the token's
/// dL/dlogp, dL/dH with token_terms, and stores log p, H and the weighted loss partials.
template <class P, class M>
struct fused_token_coeffs {
  loss_params p;
  active_tokens<P, M> act;
  const row_ctx* ctx;
  bool has_ent;
  float* logp;
  float* entropy;
  double* part;
  unsigned int* status;
  __device__ GRPO_FORCEINLINE bool active(index_t k) const noexcept { return act(k); }
  __device__ void operator()(index_t k, float lp, float H, float& g_logp, float& g_h) const {
    const index_t i = k / act.Tn, t = k % act.Tn;
    const token_in x = load_token(act.in, i, t, static_cast<double>(lp), static_cast<double>(H));
    const token_out o = token_terms(p, ctx[i], x, has_ent);
    if (o.bad) atomicOr(status, status_bad_input);
    logp[k] = lp;
    entropy[k] = H;
    part[3 * k + 0] = o.pol;
    part[3 * k + 1] = o.kl;
    part[3 * k + 2] = o.ent;
    g_logp = static_cast<float>(o.g_logp);
    g_h = static_cast<float>(o.g_h);
  }
};

/// Two-phase coefficient functor: reads the precomputed coefficients.
template <class P, class M>
struct array_token_coeffs {
  active_tokens<P, M> act;
  const float* g_lp;
  const float* g_h;
  __device__ GRPO_FORCEINLINE bool active(index_t k) const noexcept { return act(k); }
  __device__ GRPO_FORCEINLINE void operator()(index_t k, float, float, float& a,
                                              float& b) const noexcept {
    a = g_lp[k];
    b = g_h[k];
  }
};

/// Workspace bytes cub::DeviceRadixSort needs to sort n float keys (0 when the query fails).
inline std::size_t sort_temp_bytes(index_t n) noexcept {
  std::size_t bytes = 0;
  if (cub::DeviceRadixSort::SortKeys(nullptr, bytes, static_cast<const float*>(nullptr),
                                     static_cast<float*>(nullptr),
                                     static_cast<int>(n)) != cudaSuccess)
    return 0;
  return bytes;
}

/// Workspace layout of the loss kernels for B rows, N = B T tokens: status word, row contexts,
/// the entropy threshold and valid count, the partial sums, the two-phase coefficients and the
/// quantile's sort buffers.
struct loss_layout {
  std::size_t status = 0, ctx = 0, thr = 0, part = 0, g_logp = 0, g_h = 0, keys = 0, sort = 0;
  std::size_t sort_bytes = 0, total = 0;
  loss_layout(index_t B, index_t N, bool two_phase, bool quantile) noexcept {
    const auto b = static_cast<std::size_t>(B), n = static_cast<std::size_t>(N);
    status = 0;
    ctx = align_up(sizeof(unsigned int));
    thr = ctx + align_up(b * sizeof(row_ctx));
    part = thr + align_up(2 * sizeof(double));
    const std::size_t parts = two_phase ? b : n;
    g_logp = part + align_up(parts * 3 * sizeof(double));
    g_h = g_logp + (two_phase ? align_up(n * sizeof(float)) : 0);
    keys = g_h + (two_phase ? align_up(n * sizeof(float)) : 0);
    sort_bytes = quantile ? sort_temp_bytes(N) : 0;
    sort = keys + (quantile ? align_up(2 * n * sizeof(float)) : 0);
    total = sort + align_up(sort_bytes);
  }
  loss_state bind(void* ws) const noexcept {
    auto* base = static_cast<unsigned char*>(ws);
    loss_state s;
    s.status = reinterpret_cast<unsigned int*>(base + status);
    s.ctx = reinterpret_cast<row_ctx*>(base + ctx);
    s.h_thr = reinterpret_cast<double*>(base + thr);
    s.part = reinterpret_cast<double*>(base + part);
    s.g_logp = reinterpret_cast<float*>(base + g_logp);
    s.g_h = reinterpret_cast<float*>(base + g_h);
    s.keys = reinterpret_cast<float*>(base + keys);
    s.sort_tmp = base + sort;
    s.sort_bytes = sort_bytes;
    return s;
  }
};

/// The top-entropy threshold of the batch on the device (into st.h_thr[0]) when the options ask
/// for a quantile; returns the device pointer the row kernel should read (null: none or given).
template <class P, class M>
cudaError_t entropy_threshold(const loss_params& p, const device_loss_batch<P, M>& in, index_t B,
                              index_t Tn, const float* entropy, const loss_state& st,
                              const double*& thr, cudaStream_t stream) noexcept {
  thr = nullptr;
  if (!p.emask || p.has_entropy_threshold) return cudaSuccess;
  const index_t N = B * Tn;
  double* count = st.h_thr + 1;
  GRPO_CUDA_TRY(cudaMemsetAsync(count, 0, sizeof(double), stream));
  entropy_keys_kernel<<<rows_grid((N + 255) / 256), 256, 0, stream>>>(in, B, Tn, entropy, st.keys,
                                                                      count);
  GRPO_CUDA_TRY(cudaGetLastError());
  std::size_t bytes = st.sort_bytes;
  GRPO_CUDA_TRY(cub::DeviceRadixSort::SortKeys(st.sort_tmp, bytes, st.keys, st.keys + N,
                                               static_cast<int>(N), 0, 32, stream));
  entropy_quantile_kernel<<<1, 1, 0, stream>>>(st.keys + N, count, 1.0 - p.top_entropy_quantile,
                                               st.h_thr);
  GRPO_CUDA_TRY(cudaGetLastError());
  thr = st.h_thr;
  return cudaSuccess;
}

/// Shape checks shared by the launchers (device views, [B, T] extents).
template <class P, class M>
bool batch_ok(const device_loss_batch<P, M>& in, index_t B, index_t Tn, const loss_params& p) {
  auto ok = [&](const auto& v, bool required) {
    if (!has(v)) return !required;
    return v.extent(0) == B && v.extent(1) == Tn;
  };
  if (!ok(in.advantages, true) || !ok(in.mask, true)) return false;
  if (!ok(in.old_logp, false) || !ok(in.sampler_logp, false) || !ok(in.is_weights, false))
    return false;
  if (!ok(in.ref_logp, p.kl_coef != 0.0)) return false;
  if (p.tis && !has(in.sampler_logp) && !has(in.is_weights)) return false;
  if (p.tis && has(in.is_weights)) return false;  // weights would be applied twice
  for (const agg_params* a : {&p.agg, &p.kl_agg, &p.ent_agg})
    if (a->mode == agg_mode::group_token_mean && (a->group_size <= 0 || B % a->group_size != 0))
      return false;
  return true;
}

/// A [B, T] float output that must be row-major contiguous (collapsible to [B T]).
inline bool row_major(const strided_view<float, 2>& v, index_t B, index_t Tn) noexcept {
  return v.data_handle() != nullptr && v.extent(0) == B && v.extent(1) == Tn &&
         (Tn <= 1 || v.stride(1) == 1) && (B <= 1 || v.stride(0) == Tn);
}

}  // namespace detail

/// Workspace bytes of fused_grpo_step / compute_loss for B rows of T tokens.
inline std::size_t loss_workspace_bytes(index_t B, index_t Tn) noexcept {
  return detail::loss_layout(B, B * Tn, true, true).total;
}

/// The GRPO-family loss on the device from [B, T] log-probabilities (and entropies): the scalars
/// into `scalars` (device, 4 doubles: loss, policy_loss, kl_loss, entropy_loss), dL/dlogp and
/// dL/dH into the workspace-free outputs `grad_logp` / `grad_entropy` ([B, T] row-major floats).
/// Same maths as grpo::compute_loss_into for the options loss_params supports.
/// @param entropy  required when p.uses_entropy (bonus or top-entropy mask), else may be empty.
/// @pre device-resident views; p from make_loss_params.
/// @return cudaErrorInvalidValue on a shape mismatch or missing input (nothing launched).
template <class P, class M>
[[nodiscard]] cudaError_t compute_loss(const loss_params& p, strided_view<const float, 2> logp,
                                       strided_view<const float, 2> entropy,
                                       const device_loss_batch<P, M>& in,
                                       strided_view<float, 2> grad_logp,
                                       strided_view<float, 2> grad_entropy, double* scalars,
                                       void* workspace, std::size_t& workspace_bytes,
                                       cudaStream_t stream = nullptr) noexcept {
  const index_t B = logp.extent(0), Tn = logp.extent(1);
  const detail::loss_layout L(B, B * Tn, true, p.emask && !p.has_entropy_threshold);
  if (workspace == nullptr) {
    workspace_bytes = L.total;
    return cudaSuccess;
  }
  const bool has_ent = p.uses_entropy;
  auto rm = [&](strided_view<const float, 2> v) {
    return v.extent(0) == B && v.extent(1) == Tn && (Tn <= 1 || v.stride(1) == 1) &&
           (B <= 1 || v.stride(0) == Tn);
  };
  if (workspace_bytes < L.total || !detail::batch_ok(in, B, Tn, p) || !rm(logp) ||
      (has_ent && (!detail::has(entropy) || !rm(entropy))) || scalars == nullptr ||
      !detail::row_major(grad_logp, B, Tn) || !detail::row_major(grad_entropy, B, Tn))
    return cudaErrorInvalidValue;
  detail::loss_state st = L.bind(workspace);
  GRPO_CUDA_TRY(cudaMemsetAsync(st.status, 0, sizeof(unsigned int), stream));
  GRPO_CUDA_TRY(cudaMemsetAsync(scalars, 0, 4 * sizeof(double), stream));
  if (B == 0 || Tn == 0) return cudaSuccess;
  st.g_logp = grad_logp.data_handle();
  st.g_h = grad_entropy.data_handle();
  constexpr int BT = 256;
  const int grid = rows_grid(B);
  const float* hp = has_ent ? entropy.data_handle() : nullptr;
  const double* thr = nullptr;
  GRPO_CUDA_TRY(detail::entropy_threshold(p, in, B, Tn, hp, st, thr, stream));
  detail::loss_rows_kernel<BT>
      <<<grid, BT, 0, stream>>>(p, in, B, Tn, logp.data_handle(), hp, thr, st);
  GRPO_CUDA_TRY(cudaGetLastError());
  detail::loss_scales_kernel<BT><<<1, BT, 0, stream>>>(p, B, Tn, in.group_tokens, st);
  GRPO_CUDA_TRY(cudaGetLastError());
  detail::loss_tokens_kernel<BT>
      <<<grid, BT, 0, stream>>>(p, in, B, Tn, logp.data_handle(), hp, has_ent, st);
  GRPO_CUDA_TRY(cudaGetLastError());
  detail::loss_sum_kernel<BT><<<1, BT, 0, stream>>>(st.part, B, p.kl_coef, p.entropy_coef, scalars);
  return cudaGetLastError();
}

/// Fused GRPO step on the device (see the file comment for the schedules):
///   dL/dx_{itj} = (1/T) [ g_it (delta_{j y_it} - q_itj) - h_it q_itj (log q_itj + H_it) ]
/// with g_it = dL/dlogp_it and h_it = dL/dH_it of the loss described by `p`.
///
/// @param p            loss parameters from make_loss_params(loss_options).
/// @param logits       [B, T, V] float / bfloat16 / float16, rows of one sequence adjacent
///                     (stride(0) == T stride(1)); any vocabulary stride.
/// @param ids          [B, T] sampled ids, collapsible to [B T] (stride(0) == T stride(1)); read
///                     and checked on valid tokens only.
/// @param grad_logits  [B, T, V] float / bfloat16 / float16 output, collapsible like logits; may
///                     be the logits buffer itself (same dtype and strides) for an in-place update.
/// @param logp, entropy  [B, T] row-major float outputs (0 on masked tokens).
/// @param scalars      device array of 4 doubles: loss, policy_loss, kl_loss, entropy_loss.
/// @pre device-resident memory; T > 0.
/// @post as grpo::fused_grpo_step (zero gradient rows on masked / truncated tokens).
/// @return cudaErrorInvalidValue on a shape or option mismatch (schedule single_pass requested
///         with options that need two phases, collapsibility, missing inputs); else the first
///         launch error. Never throws.
template <class T, class I, class P, class M, class G>
[[nodiscard]] cudaError_t fused_grpo_step(
    const loss_params& p, strided_view<const T, 3> logits, strided_view<const I, 2> ids,
    const device_loss_batch<P, M>& in, strided_view<G, 3> grad_logits, strided_view<float, 2> logp,
    strided_view<float, 2> entropy, double* scalars, const fused_grpo_options& opt, void* workspace,
    std::size_t& workspace_bytes, cudaStream_t stream = nullptr) noexcept {
  static_assert(
      std::is_same_v<T, float> || std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>,
      "fused_grpo_step: logits must be float, bfloat16 or float16");
  static_assert(
      std::is_same_v<G, float> || std::is_same_v<G, bfloat16> || std::is_same_v<G, float16>,
      "fused_grpo_step: grad_logits must be float, bfloat16 or float16");
  const index_t B = logits.extent(0), Tn = logits.extent(1), V = logits.extent(2);
  const index_t N = B * Tn;
  const bool single = opt.schedule == fused_schedule::single_pass ||
                      (opt.schedule == fused_schedule::automatic && !p.needs_row_logp);
  const bool quantile = p.emask && !p.has_entropy_threshold;
  const detail::loss_layout L(B, N, !single, quantile);
  if (workspace == nullptr) {
    workspace_bytes = detail::loss_layout(B, N, true, quantile).total;  // either schedule
    return cudaSuccess;
  }
  if (single && p.needs_row_logp) return cudaErrorInvalidValue;
  if (workspace_bytes < L.total || !(opt.temperature > 0.0f) || V <= 0 || scalars == nullptr)
    return cudaErrorInvalidValue;
  if (!detail::batch_ok(in, B, Tn, p) || !detail::row_major(logp, B, Tn) ||
      !detail::row_major(entropy, B, Tn))
    return cudaErrorInvalidValue;
  if (ids.extent(0) != B || ids.extent(1) != Tn || grad_logits.extent(0) != B ||
      grad_logits.extent(1) != Tn || grad_logits.extent(2) != V)
    return cudaErrorInvalidValue;
  const bool collapsible = (B <= 1 || logits.stride(0) == Tn * logits.stride(1)) &&
                           (B <= 1 || grad_logits.stride(0) == Tn * grad_logits.stride(1)) &&
                           (B <= 1 || ids.stride(0) == Tn * ids.stride(1));
  if (!collapsible) return cudaErrorInvalidValue;
  if (static_cast<const void*>(grad_logits.data_handle()) ==
          static_cast<const void*>(logits.data_handle()) &&
      (!std::is_same_v<T, G> || grad_logits.strides() != logits.strides()))
    return cudaErrorInvalidValue;

  detail::loss_state st = L.bind(workspace);
  GRPO_CUDA_TRY(cudaMemsetAsync(st.status, 0, sizeof(unsigned int), stream));
  GRPO_CUDA_TRY(cudaMemsetAsync(scalars, 0, 4 * sizeof(double), stream));
  if (N == 0) return cudaSuccess;
  // Masked tokens keep log p = H = 0 and contribute nothing: clear the outputs and partials.
  GRPO_CUDA_TRY(cudaMemsetAsync(logp.data_handle(), 0, sizeof(float) * N, stream));
  GRPO_CUDA_TRY(cudaMemsetAsync(entropy.data_handle(), 0, sizeof(float) * N, stream));
  GRPO_CUDA_TRY(cudaMemsetAsync(st.part, 0, sizeof(double) * 3 * (single ? N : B), stream));

  const strided_view<const T, 2> x2(logits.data_handle(), {N, V},
                                    {logits.stride(1), logits.stride(2)}, logits.space());
  const strided_view<G, 2> g2(grad_logits.data_handle(), {N, V},
                              {grad_logits.stride(1), grad_logits.stride(2)}, grad_logits.space());
  const strided_view<const I, 1> y1(ids.data_handle(), {N}, {ids.stride(1)}, ids.space());
  const float beta = 1.0f / opt.temperature;
  const bool has_ent = p.uses_entropy;
  const detail::active_tokens<P, M> act{in, Tn};
  // No id equals this sentinel, so only the active filter skips rows.
  constexpr long long no_ignore = (-9223372036854775807LL - 1);
  constexpr int BT = 256;
  const int grid = rows_grid(B);

  if (single) {
    detail::loss_rows_kernel<BT>
        <<<grid, BT, 0, stream>>>(p, in, B, Tn, nullptr, nullptr, nullptr, st);
    GRPO_CUDA_TRY(cudaGetLastError());
    detail::loss_scales_kernel<BT><<<1, BT, 0, stream>>>(p, B, Tn, in.group_tokens, st);
    GRPO_CUDA_TRY(cudaGetLastError());
    const detail::fused_token_coeffs<P, M> coeffs{
        p, act, st.ctx, has_ent, logp.data_handle(), entropy.data_handle(), st.part, st.status};
    GRPO_CUDA_TRY(
        launch_row_backward(x2, y1, beta, no_ignore, coeffs, g2, st.status, opt.cache, stream));
    detail::loss_sum_kernel<BT>
        <<<1, BT, 0, stream>>>(st.part, N, p.kl_coef, p.entropy_coef, scalars);
    return cudaGetLastError();
  }
  // Two phases: log p and H of every valid token, the loss on [B, T], then the gradient pass.
  const strided_view<float, 1> lp1(logp.data_handle(), {N}, {1});
  const strided_view<float, 1> h1(entropy.data_handle(), {N}, {1});
  GRPO_CUDA_TRY(launch_row_forward(x2, y1, beta, no_ignore, lp1, strided_view<float, 1>{}, h1,
                                   st.status, act, stream));
  const double* thr = nullptr;
  GRPO_CUDA_TRY(detail::entropy_threshold(p, in, B, Tn, entropy.data_handle(), st, thr, stream));
  detail::loss_rows_kernel<BT>
      <<<grid, BT, 0, stream>>>(p, in, B, Tn, logp.data_handle(), entropy.data_handle(), thr, st);
  GRPO_CUDA_TRY(cudaGetLastError());
  detail::loss_scales_kernel<BT><<<1, BT, 0, stream>>>(p, B, Tn, in.group_tokens, st);
  GRPO_CUDA_TRY(cudaGetLastError());
  detail::loss_tokens_kernel<BT><<<grid, BT, 0, stream>>>(p, in, B, Tn, logp.data_handle(),
                                                          entropy.data_handle(), has_ent, st);
  GRPO_CUDA_TRY(cudaGetLastError());
  detail::loss_sum_kernel<BT><<<1, BT, 0, stream>>>(st.part, B, p.kl_coef, p.entropy_coef, scalars);
  GRPO_CUDA_TRY(cudaGetLastError());
  const detail::array_token_coeffs<P, M> coeffs{act, st.g_logp, st.g_h};
  return launch_row_backward(x2, y1, beta, no_ignore, coeffs, g2, st.status, opt.cache, stream);
}

}  // namespace grpo::cuda

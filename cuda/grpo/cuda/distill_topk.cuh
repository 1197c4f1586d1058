// SPDX-License-Identifier: Apache-2.0
/// @file distill_topk.cuh
/// @brief CUDA top-k (sparse) teacher distillation: the device twin of grpo::distill::topk_loss
///        (distill/topk.hpp), conventions renormalized_teacher, tail_bucket and renormalized_both,
///        any divergence. Included by <grpo/cuda/distill.cuh> (which it builds on).
///
/// Notation (one row): S the teacher's id set (|S| = k <= K), l_i its raw log-probabilities,
/// a the re-tempering power, z' = s / T the scaled student logits, q = softmax(z') over V.
///   teacher:  p_i = exp(a l_i - norm), norm = logsumexp_S(a l) (plus the tail for (b));
///   (a):      L = sum_j f(lp_j, lq_j) with lp_j = -inf outside S (the dense row maths);
///   (b):      L = sum_S f(lp_i, lq_i) + f(lp_0, lq_0), p_0 = 1 - sum_S p (log1m_exp),
///             q_0 = sum_{j not in S} q_j; outside S dL/dz'_j = q_j (g_0 / q_0 - G);
///   (c):      q~ = softmax over S of z'; L = sum_S f(lp_i, lq~_i); zero gradient outside S.
/// Work per row: (c) reads only the K student logits (plus the zero fill of the gradient row);
/// (a) and (b) read the student row two or three times (statistics, loss / tail mass, gradient).
#pragma once

#include <grpo/cuda/distill.cuh>

namespace grpo::cuda {
namespace detail {

/// Per-row shared state of the top-k kernel (K <= max_topk entries, sorted by id). About 2 KiB:
/// with the bitmap it leaves room for several blocks per SM.
struct topk_shared {
  index_t id[distill::max_topk];
  float lp[distill::max_topk];  ///< normalised (re-tempered) teacher log-probabilities
  float x[distill::max_topk];   ///< gathered student logits / log-probabilities
  float gk[distill::max_topk];  ///< per-entry gradients ((b), (c))
  float lp_tail;                ///< (b): teacher tail log-mass
  int k;                        ///< valid entries
  int err;                      ///< 0, or a status bit
  float f[8];                   ///< broadcast scalars
};

/// Index of id j among the k sorted ids, or -1 (binary search, k <= 128).
__device__ GRPO_FORCEINLINE int topk_find(const topk_shared& t, index_t j) {
  int lo = 0, hi = t.k - 1;
  while (lo <= hi) {
    const int mid = (lo + hi) >> 1;
    if (t.id[mid] == j) return mid;
    if (t.id[mid] < j)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return -1;
}

/// The block reductions of the kernel and their (shared) temporary storage.
template <int BT>
struct topk_reduce {
  using lse_red = cub::BlockReduce<online_lse, BT>;
  using sum_red = cub::BlockReduce<pair_sum, BT>;
  union storage {
    typename lse_red::TempStorage l;
    typename sum_red::TempStorage s;
  };
};

/// Thread 0: gathers, validates, sorts and normalises row r's teacher entries into t (K <= 128,
/// so an insertion sort costs less than one pass over the vocabulary). The checks mirror the CPU
/// row: id in [0, V), finite log-probability, no duplicate, listed mass <= 1 (+1e-3) for the tail
/// bucket; a failing row sets t.err and the status word.
template <class TV, class TI>
__device__ void topk_prepare(topk_shared& t, strided_view<const TV, 2> tl,
                             strided_view<const TI, 2> ti, index_t r, index_t V,
                             distill::topk_convention conv, float power, unsigned int* status) {
  const index_t KK = tl.extent(1);
  const float ninf = -math::infinity<float>();
  int k = 0, err = 0;
  online_lse raw(1.0f), tempered(1.0f);
  for (index_t i = 0; i < KK && !err; ++i) {
    const auto id = static_cast<long long>(ti(r, i));
    if (id < 0) continue;  // padding slot
    if (id >= V) {
      err = status_id_out_of_range;
      break;
    }
    const float l = load_float(&tl(r, i));
    if (!(l <= 3.402823466e38f)) err = status_non_finite_row;  // NaN or +inf
    int pos = k++;
    while (pos > 0 && t.id[pos - 1] > id) {  // insertion sort by id
      t.id[pos] = t.id[pos - 1];
      t.lp[pos] = t.lp[pos - 1];
      --pos;
    }
    t.id[pos] = id;
    t.lp[pos] = l;
  }
  for (int i = 1; i < k && !err; ++i)
    if (t.id[i] == t.id[i - 1]) err = status_bad_input;  // duplicate id
  float lp_tail = ninf;
  if (!err) {
    for (int i = 0; i < k; ++i) {
      raw.push(t.lp[i]);
      tempered.push(power * t.lp[i]);
    }
    if (conv == distill::topk_convention::tail_bucket && raw.lse() > 1e-3f)
      err = status_bad_input;  // listed mass above one
    else if (conv == distill::topk_convention::tail_bucket && k < V) {
      lp_tail = power * ops::log1m_exp(raw.lse());
      tempered.push(lp_tail);
    } else if (tempered.empty()) {
      err = status_non_finite_row;
    }
  }
  if (!err) {
    const float norm = tempered.lse();
    for (int i = 0; i < k; ++i) t.lp[i] = power * t.lp[i] - norm;
    t.lp_tail = lp_tail - norm;
  }
  t.k = k;
  t.err = err;
  if (err) atomicOr(status, static_cast<unsigned int>(err));
}

/// Thread 0, over the k gathered entries of t (t.x: raw logits in, log-probabilities out;
/// t.gk: scaled gradients out), with the student statistics (m, lg) of the normaliser:
///   L = sum f(lp_i, lq_i) (+ the tail term `total0`, with its derivative g0 added to G),
///   dL/dz'_i = q_i - p_i for the forward KL (forward_kl_dz, no cancellation near 1),
///   g_i - q_i G otherwise (softmax_chain). Returns L; G is left in *big_g.
template <distill::divergence K>
__device__ double topk_members(topk_shared& t, float m, float lg, float b, float gscale,
                               const distill_params& P, double total0, double g0, float* big_g) {
  constexpr bool fwd = K == distill::divergence::forward_kl;
  double total = total0, gsum = g0;
  for (int i = 0; i < t.k; ++i) {
    const float lq = ops::log_softmax(t.x[i], m, lg, b);
    float v, gi;
    div_terms<K>(t.lp[i], lq, P, v, gi);
    total += v;
    gsum += gi;
    t.x[i] = lq;
    t.gk[i] = gi;
  }
  const float G = static_cast<float>(gsum);
  for (int i = 0; i < t.k; ++i) {
    const float lq = t.x[i], lp = t.lp[i];
    const float p = ops::distill_exp(lp), q = ops::distill_exp(lq);
    t.gk[i] = gscale * (fwd ? ops::forward_kl_dz(lp, lq, p, q) : ops::softmax_chain(t.gk[i], q, G));
  }
  *big_g = G;
  return total;
}

/// Convention (c), renormalized_both: a dense divergence over the K gathered entries; zero
/// gradient outside S; the student mass outside S is ignored (TRL's server path without the
/// tail). Thread 0 does the K-element maths (K <= 128: cheaper than a block reduction round trip).
/// Returns the row loss on thread 0.
template <int BT, distill::divergence K, class G>
__device__ double topk_row_both(topk_shared& t, G* gr, index_t gs, index_t V, float b,
                                float gscale, const distill_params& P, unsigned int* status) {
  const float nan = __int_as_float(0x7fc00000);
  double total = 0.0;
  if (threadIdx.x == 0) {
    online_lse st(b);
    bool bad = false;
    for (int i = 0; i < t.k; ++i) {
      if (!(t.x[i] == t.x[i]) || t.x[i] == math::infinity<float>())
        bad = true;
      else
        st.push(t.x[i]);
    }
    if (bad || st.empty()) {
      atomicOr(status, status_non_finite_row);
      total = nan;
    } else {
      float big_g;
      total = topk_members<K>(t, st.m, st.log_sum(), b, gscale, P, 0.0, 0.0, &big_g);
    }
    t.f[0] = static_cast<float>(total);
  }
  __syncthreads();
  if (gr) {
    const bool row_nan = t.f[0] != t.f[0];
    for (index_t j = threadIdx.x; j < V; j += BT) gr[j * gs] = narrow<G>(row_nan ? nan : 0.0f);
    __syncthreads();
    if (!row_nan)
      for (int i = threadIdx.x; i < t.k; i += BT) gr[t.id[i] * gs] = narrow<G>(t.gk[i]);
  }
  return total;
}

/// Student pass 1 over the full vocabulary ((a) and (b)): one online log-sum-exp, NaN / +inf
/// checks, block merge. Leaves m, log s and a bad-row flag in t.f[0..2]. Every later pass
/// recomputes lq_j = beta (x_j - m) - log s from the raw logits (rows of V = 152k do not fit in
/// shared memory; the re-reads hit L2 first).
template <int BT, class S>
__device__ void topk_student_stats(topk_shared& t, typename topk_reduce<BT>::storage& tmp,
                                   const S* sr, index_t ss, index_t V, float b,
                                   unsigned int* status) {
  using lse_red = typename topk_reduce<BT>::lse_red;
  online_lse ls(b);
  int bad = 0;
  for (index_t j = threadIdx.x; j < V; j += BT) {
    const float x = load_float(sr + j * ss);
    if (!(x == x) || x == math::infinity<float>())
      bad = 1;
    else
      ls.push(x);
  }
  const int any_bad = __syncthreads_or(bad);
  const online_lse tsum = lse_red(tmp.l).Reduce(ls, merge_lse{});
  if (threadIdx.x == 0) {
    t.f[0] = tsum.m;
    t.f[1] = tsum.log_sum();
    t.f[2] = (any_bad || tsum.empty()) ? 1.0f : 0.0f;
    if (t.f[2] != 0.0f) atomicOr(status, status_non_finite_row);
  }
  __syncthreads();
}

/// Convention (a), renormalized_teacher: the dense divergence against a teacher that is -inf
/// outside S. f(-inf, lq) is the divergence's own limit (0 for the forward KL, finite for the
/// mixtures; the reverse KL is +inf and rejected by make_topk_params). Returns the row loss on
/// thread 0.
template <int BT, distill::divergence K, class S, class G>
__device__ double topk_row_teacher(topk_shared& t, typename topk_reduce<BT>::storage& tmp,
                                   const unsigned int* bitmap, const S* sr, index_t ss, G* gr,
                                   index_t gs, index_t V, float b, float gscale,
                                   const distill_params& P) {
  using sum_red = typename topk_reduce<BT>::sum_red;
  constexpr bool fwd = K == distill::divergence::forward_kl;
  const float ninf = -math::infinity<float>(), nan = __int_as_float(0x7fc00000);
  const float ms = t.f[0], lgs = t.f[1];
  const bool row_bad = t.f[2] != 0.0f;
  auto lp_of = [&](index_t j) {
    return ((bitmap[j >> 5] >> (j & 31)) & 1u) ? t.lp[topk_find(t, j)] : ninf;
  };
  double total = 0.0;
  float big_g = -1.0f;
  if constexpr (!fwd) {
    float va = 0.0f, ga = 0.0f;
    for (index_t j = threadIdx.x; j < V; j += BT) {
      const float lq = ops::log_softmax(load_float(sr + j * ss), ms, lgs, b);
      float v, gi;
      div_terms<K>(lp_of(j), lq, P, v, gi);
      va += v;
      ga += gi;
    }
    const pair_sum ts = sum_red(tmp.s).Reduce(pair_sum{va, ga}, pair_add{});
    if (threadIdx.x == 0) {
      t.f[3] = static_cast<float>(ts.b);
      total = ts.a;
    }
    __syncthreads();
    big_g = t.f[3];
  }
  float va = 0.0f;
  for (index_t j = threadIdx.x; j < V; j += BT) {
    const float lq = ops::log_softmax(load_float(sr + j * ss), ms, lgs, b);
    const float lp = lp_of(j);
    float d;
    if constexpr (fwd) {
      const float p = ops::distill_exp(lp), q = ops::distill_exp(lq);
      va += ops::forward_kl(lp, lq, p);
      d = ops::forward_kl_dz(lp, lq, p, q);
    } else {
      float v, gi;
      div_terms<K>(lp, lq, P, v, gi);
      d = ops::softmax_chain(gi, ops::distill_exp(lq), big_g);
    }
    if (gr) gr[j * gs] = narrow<G>(row_bad ? nan : gscale * d);
  }
  if constexpr (fwd) {
    const pair_sum ts = sum_red(tmp.s).Reduce(pair_sum{va, 0.0}, pair_add{});
    if (threadIdx.x == 0) total = ts.a;
  }
  return total;
}

/// Convention (b), tail bucket. q_0 = sum of q over the complement (never 1 - Q_S, which cancels
/// when the student puts almost all its mass on S). Thread 0 then evaluates the K + 1 categories
/// (members and tail) and their gradients; the gradient pass writes the member values and spreads
/// the tail gradient over the complement in proportion to q_j / q_0 (ops::tail_spread_grad).
/// Returns the row loss on thread 0.
template <int BT, distill::divergence K, class S, class G>
__device__ double topk_row_tail(topk_shared& t, typename topk_reduce<BT>::storage& tmp,
                                const unsigned int* bitmap, const S* sr, index_t ss, G* gr,
                                index_t gs, index_t V, float b, float gscale,
                                const distill_params& P) {
  using sum_red = typename topk_reduce<BT>::sum_red;
  const float ninf = -math::infinity<float>(), nan = __int_as_float(0x7fc00000);
  const float ms = t.f[0], lgs = t.f[1];
  const bool row_bad = t.f[2] != 0.0f;
  auto member = [&](index_t j) { return (bitmap[j >> 5] >> (j & 31)) & 1u; };
  float qa = 0.0f;
  for (index_t j = threadIdx.x; j < V; j += BT)
    if (!member(j)) qa += ops::distill_exp(ops::log_softmax(load_float(sr + j * ss), ms, lgs, b));
  const pair_sum ts = sum_red(tmp.s).Reduce(pair_sum{qa, 0.0}, pair_add{});
  double total = 0.0;
  if (threadIdx.x == 0) {
    const double q_tail_d = ts.a;
    const float q_tail = static_cast<float>(q_tail_d);
    const float lq_tail = q_tail > 0.0f ? static_cast<float>(math::log(q_tail_d)) : ninf;
    float vt, g_tail, big_g;
    div_terms<K>(t.lp_tail, lq_tail, P, vt, g_tail);
    total = topk_members<K>(t, ms, lgs, b, gscale, P, vt, g_tail, &big_g);
    t.f[3] = big_g;
    t.f[4] = g_tail;
    t.f[5] = q_tail > 0.0f ? 1.0f / q_tail : 0.0f;
  }
  __syncthreads();
  if (gr) {
    const float big_g = t.f[3], g_tail = t.f[4], inv_q_tail = t.f[5];
    for (index_t j = threadIdx.x; j < V; j += BT) {
      float v;
      if (member(j)) {
        v = t.gk[topk_find(t, j)];
      } else {
        const float q = ops::distill_exp(ops::log_softmax(load_float(sr + j * ss), ms, lgs, b));
        v = gscale * ops::tail_spread_grad(q, g_tail, inv_q_tail, big_g);
      }
      gr[j * gs] = narrow<G>(row_bad ? nan : v);
    }
  }
  return total;
}

/// Fills a gradient row with one value (inactive rows: 0; failed rows: NaN).
template <int BT, class G>
__device__ GRPO_FORCEINLINE void topk_fill_row(G* gr, index_t gs, index_t V, float v) {
  if (gr)
    for (index_t j = threadIdx.x; j < V; j += BT) gr[j * gs] = narrow<G>(v);
}

/// Top-k teacher row kernel (one block per row, grid-stride): validate and normalise the teacher
/// (topk_prepare), mark S in a bitmap of V bits in dynamic shared memory and gather the K student
/// logits, then the row of the convention. A member's teacher log-probability is found by binary
/// search.
template <int BT, distill::divergence K, class S, class TV, class TI, class G>
__global__ void __launch_bounds__(BT)
    topk_distill_kernel(strided_view<const S, 2> s, strided_view<const TV, 2> tl,
                        strided_view<const TI, 2> ti, strided_view<G, 2> g, const float* coef,
                        distill_params P, distill::topk_convention conv, float power,
                        float* row_loss, double* part, unsigned int* status) {
  __shared__ typename topk_reduce<BT>::storage tmp;
  __shared__ cub::Uninitialized<topk_shared> t_raw;
  topk_shared& t = t_raw.Alias();
  extern __shared__ unsigned int bitmap[];
  const index_t N = s.extent(0), V = s.extent(1);
  const index_t ss = s.stride(1), words = (V + 31) / 32;
  const float nan = __int_as_float(0x7fc00000);
  const float b = P.beta;
  for (index_t r = blockIdx.x; r < N; r += gridDim.x) {
    const float c = coef ? coef[r] : 1.0f;
    G* gr = g.data_handle() ? g.data_handle() + r * g.stride(0) : nullptr;
    const index_t gs = g.stride(1);
    const S* sr = s.data_handle() + r * s.stride(0);
    if (c == 0.0f) {
      topk_fill_row<BT>(gr, gs, V, 0.0f);
      if (threadIdx.x == 0) {
        if (row_loss) row_loss[r] = 0.0f;
        part[r] = 0.0;
      }
      continue;
    }
    // Clear the membership bitmap of the previous row (V / 32 words, a few KiB).
    for (index_t w = threadIdx.x; w < words; w += BT) bitmap[w] = 0u;
    if (threadIdx.x == 0) topk_prepare(t, tl, ti, r, V, conv, power, status);
    __syncthreads();
    if (t.err) {
      topk_fill_row<BT>(gr, gs, V, nan);
      if (threadIdx.x == 0) {
        if (row_loss) row_loss[r] = nan;
        part[r] = static_cast<double>(nan);
      }
      __syncthreads();
      continue;
    }
    // Mark S in the bitmap and gather the K student logits (read before any gradient write, so an
    // in-place gradient is safe).
    for (int i = threadIdx.x; i < t.k; i += BT) {
      atomicOr(&bitmap[t.id[i] >> 5], 1u << (t.id[i] & 31));
      t.x[i] = load_float(sr + t.id[i] * ss);
    }
    __syncthreads();
    // d(total)/d s_j = c grad_output (T^2 or 1) (1/T) dL/dz'_j.
    const float gscale =
        static_cast<float>(static_cast<double>(c) * P.grad_output * P.t2 * static_cast<double>(b));
    double total;
    if (conv == distill::topk_convention::renormalized_both) {
      total = topk_row_both<BT, K>(t, gr, gs, V, b, gscale, P, status);
    } else {
      topk_student_stats<BT>(t, tmp, sr, ss, V, b, status);
      total = conv == distill::topk_convention::renormalized_teacher
                  ? topk_row_teacher<BT, K>(t, tmp, bitmap, sr, ss, gr, gs, V, b, gscale, P)
                  : topk_row_tail<BT, K>(t, tmp, bitmap, sr, ss, gr, gs, V, b, gscale, P);
      if (threadIdx.x == 0 && t.f[2] != 0.0f) total = nan;
    }
    if (threadIdx.x == 0) {
      const double l = total * P.t2;
      if (row_loss) row_loss[r] = static_cast<float>(l);
      part[r] = static_cast<double>(c) * l;
    }
    __syncthreads();
  }
}

}  // namespace detail

/// Top-k teacher options on the device (besides distill_params).
struct topk_params {
  distill::topk_convention convention = distill::topk_convention::renormalized_teacher;
  float teacher_power = 1.0f;
};

/// Resolves and validates distill::topk_options as the CPU does.
/// @return false for invalid options (including reverse_kl with renormalized_teacher, which is
///         +inf: the teacher has no mass outside its ids).
inline bool make_topk_params(const distill::topk_options& o, distill_params& p,
                             topk_params& t) noexcept {
  if (!make_distill_params(o, p)) return false;
  if (!(o.teacher_power > 0.0) || !math::is_finite(o.teacher_power)) return false;
  if (p.kind == distill::divergence::reverse_kl &&
      o.convention == distill::topk_convention::renormalized_teacher)
    return false;
  t.convention = o.convention;
  t.teacher_power = static_cast<float>(o.teacher_power);
  return true;
}

/// Top-k (sparse) teacher distillation on the device (device twin of distill::topk_loss): N rows
/// of V student logits, a teacher of K
/// <= 128 (id, log-probability) pairs per row (negative id = padding), the three conventions of
/// distill/topk.hpp, any divergence; loss sum_r c_r l_r into `loss`, gradient into `grad` (may be
/// empty, or the student buffer itself).
/// @param teacher_logp [N, K] teacher log-probabilities (float, bf16, fp16) of the listed ids.
/// @param teacher_ids  [N, K] int32 / int64 ids; negative = padding slot.
/// @param coef         device [N] per-row coefficients (distill_coefficients), or nullptr (c = 1).
/// @param workspace    nullptr to query workspace_bytes (status word + N doubles).
/// @pre K <= 128; V bits of bitmap fit in the device's shared memory (V <= 1.8M on sm_90).
/// @post read_status(): [grpo.out_of_range] for an id >= V, [grpo.bad_value] for a NaN / +inf
///       value, a duplicate id, listed mass above one (tail bucket) or a bad student row.
template <class S, class TV, class TI, class G>
[[nodiscard]] cudaError_t topk_distill(
    const distill_params& p, const topk_params& tp, strided_view<const S, 2> student,
    strided_view<const TV, 2> teacher_logp, strided_view<const TI, 2> teacher_ids,
    strided_view<G, 2> grad, const float* coef, double* loss, float* row_loss, void* workspace,
    std::size_t& workspace_bytes, cudaStream_t stream = nullptr) noexcept {
  const index_t N = student.extent(0), V = student.extent(1), K = teacher_logp.extent(1);
  const std::size_t need = align_up(sizeof(unsigned int)) + align_up(sizeof(double) * N);
  if (workspace == nullptr) {
    workspace_bytes = need;
    return cudaSuccess;
  }
  if (workspace_bytes < need || loss == nullptr || V <= 0 || K < 1 || K > distill::max_topk ||
      teacher_logp.extent(0) != N || teacher_ids.extent(0) != N || teacher_ids.extent(1) != K)
    return cudaErrorInvalidValue;
  if (grad.data_handle() != nullptr) {
    if (grad.extent(0) != N || grad.extent(1) != V) return cudaErrorInvalidValue;
    if (static_cast<const void*>(grad.data_handle()) ==
            static_cast<const void*>(student.data_handle()) &&
        (!std::is_same_v<S, G> || grad.strides() != student.strides()))
      return cudaErrorInvalidValue;
  }
  auto* base = static_cast<unsigned char*>(workspace);
  auto* status = reinterpret_cast<unsigned int*>(base);
  auto* part = reinterpret_cast<double*>(base + align_up(sizeof(unsigned int)));
  GRPO_CUDA_TRY(cudaMemsetAsync(status, 0, sizeof(unsigned int), stream));
  GRPO_CUDA_TRY(cudaMemsetAsync(loss, 0, sizeof(double), stream));
  if (N == 0) return cudaSuccess;
  const std::size_t smem = sizeof(unsigned int) * static_cast<std::size_t>((V + 31) / 32);
  return detail::dispatch_divergence(p.kind, [&](auto kind) -> cudaError_t {
    constexpr int BT = 512;
    auto kernel = detail::topk_distill_kernel<BT, decltype(kind)::value, S, TV, TI, G>;
    if (smem > 48 * 1024)
      GRPO_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem)));
    const int grid = rows_grid(N, device_blocks(kernel, BT, smem));
    kernel<<<grid, BT, smem, stream>>>(student, teacher_logp, teacher_ids, grad, coef, p,
                                       tp.convention, tp.teacher_power, row_loss, part, status);
    GRPO_CUDA_TRY(cudaGetLastError());
    detail::distill_sum_kernel<256><<<1, 256, 0, stream>>>(part, N, loss);
    return cudaGetLastError();
  });
}

}  // namespace grpo::cuda

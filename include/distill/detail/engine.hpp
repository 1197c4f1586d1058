// SPDX-License-Identifier: Apache-2.0
/// @file engine.hpp
/// @brief The distillation engine: the run-time choice of the vector path per call (portable
///        row maths in detail/row_math.hpp and detail/divergence.hpp, the ISA kernels of
///        distill/kernels/<isa>/), and the row driver of every front end over
///        grpo::par::for_each_row.
///
/// Execution model (CPU variant B of the kernels note, one row per thread): a row of V logits is
/// processed in chunks of `chunk` elements that are first widened into a small stack buffer of the
/// accumulation type (this also turns any vocabulary stride and any storage type into one
/// contiguous float loop the compiler vectorises), then reduced lane-wise (`lanes` independent
/// accumulators, so the vectorised order is fixed and reproducible). Pass 1 computes both rows'
/// (max, sum) states; pass 2 the loss (and for losses whose G = sum_i dL/dlq_i is not known in
/// advance, G); the last pass writes the gradient. A row of 152k bf16 logits (297 KiB) stays in L2
/// between passes, so DRAM sees about one read of each input and one write of the gradient.
/// No tokens x vocabulary temporary is ever allocated.
///
/// Files: detail/row_math.hpp (chunk helpers, pass 1, exp cache), detail/plan.hpp (views, plan,
/// row errors, reduction), detail/divergence.hpp (element operators, passes 2 / 3),
/// kernels/avx512/ (pass 1 and the dense passes on 16-float registers), kernels/avx2/ (the same
/// over the AVX2 packet).
#pragma once

#include <distill/detail/divergence.hpp>
#include <distill/detail/plan.hpp>
#include <distill/detail/row_math.hpp>
#include <distill/kernels/avx2/dense.hpp>
#include <distill/kernels/avx512/dense.hpp>
#include <distill/kernels/avx512/pass1.hpp>
#include <distill/kernels/neon/dense.hpp>
#include <distill/options.hpp>
#include <grpo/core/isa.hpp>
#include <grpo/core/parallel.hpp>

#include <type_traits>
#include <vector>

namespace grpo::distill::detail {
inline namespace GRPO_ISA_ABI {

/// The vector path of a call: grpo::active_isa() where run-time dispatch is compiled in; without it
/// (another compiler) the widest kernel this translation unit's flags allow.
inline isa kernel_path() noexcept {
#if GRPO_RUNTIME_DISPATCH
  return active_isa();
#elif GRPO_SIMD_HAS_AVX512_PACKET
  return isa::avx512;
#elif GRPO_SIMD_HAS_AVX2_PACKET
  return isa::avx2;
#elif GRPO_SIMD_HAS_NEON_PACKET
  return active_isa();  // neon, or baseline under GRPO_ISA / scoped_isa_limit
#else
  return isa::baseline;
#endif
}

/// Pass 1 over one row (row_lse_store_portable's contract) on the vector path `path`: with float
/// accumulation the AVX-512 or AVX2 kernel (the row widened to a contiguous float copy in cache.x when it
/// is 16-bit or strided; cache.row points at the row it read), else the portable pass.
template <class A, class T>
basic_online_lse<A> row_lse_store(const T* p, index_t st, index_t V, A beta, A* buf,
                                  row_exp_cache<A>& cache, bool& bad, isa path) noexcept {
  if constexpr (std::is_same_v<A, float>) {
#if GRPO_SIMD_HAS_AVX512_PACKET
    if (path == isa::avx512) return avx512::row_lse_store(p, st, V, beta, cache, bad);
#endif
#if GRPO_SIMD_HAS_AVX2_PACKET
    if (path == isa::avx2) return avx2::row_lse_store(p, st, V, beta, cache, bad);
#endif
#if GRPO_SIMD_HAS_NEON_PACKET
    if (path == isa::neon) return neon::row_lse_store(p, st, V, beta, cache, bad);
#endif
  }
  (void)path;
  return row_lse_store_portable(p, st, V, beta, buf, cache, bad);
}

/// One row of a dense divergence (teacher logits at the student's temperature): pass 1 over both
/// rows, then divergence_passes; with float accumulation on an ISA path, that path's kernel
/// (avx512::dense_row, avx2::dense_row).
template <divergence K, class A, class S, class U, class G>
int dense_row(const S* s, index_t ss, const U* u, index_t us, G* g, index_t gs,
              const dense_row_args<A>& R, double& value) {
  if constexpr (std::is_same_v<A, float>) {
#if GRPO_SIMD_HAS_AVX512_PACKET
    if (R.path == isa::avx512) return avx512::dense_row<K>(s, ss, u, us, g, gs, R, value);
#endif
#if GRPO_SIMD_HAS_AVX2_PACKET
    if (R.path == isa::avx2) return avx2::dense_row<K>(s, ss, u, us, g, gs, R, value);
#endif
#if GRPO_SIMD_HAS_NEON_PACKET
    if (R.path == isa::neon) return neon::dense_row<K>(s, ss, u, us, g, gs, R, value);
#endif
  }
  alignas(64) A buf[chunk];
  thread_caches<A>& tc = local_caches<A>();
  tc.student.reserve(R.V);
  tc.teacher.reserve(R.V);
  bool bad_s = false, bad_u = false;
  const basic_online_lse<A> ls =
      row_lse_store(s, ss, R.V, R.beta_s, buf, tc.student, bad_s, R.path);
  const basic_online_lse<A> lu =
      row_lse_store(u, us, R.V, R.beta_u, buf, tc.teacher, bad_u, R.path);
  if (bad_s) return student_not_finite;
  if (bad_u) return teacher_not_finite;
  if (ls.empty()) return student_empty;
  if (lu.empty()) return teacher_empty;
  divergence_passes<K, true, true>(
      s, ss, row_state<A>{ls.m, ls.log_sum(), R.beta_s}, strided_loader<U>{u, us},
      row_state<A>{lu.m, lu.log_sum(), R.beta_u}, prob_source<A>{&tc.student},
      prob_source<A>{&tc.teacher}, g, gs, R, value);
  return row_ok;
}


/// The per-row driver of every front end (dense, top-k, SFT): over the B x L rows of the rank-3
/// student view s (and gradient view g, nullable), in parallel (grpo::par::for_each_row, static
/// schedule: each thread takes a contiguous block of rows, so the next-row prefetch below
/// warms the row that same thread processes next): row pointers from the strides, inactive rows
/// (plan P) written as zero gradients, the per-row gradient factor R.gscale = gscale_of(P.coef[r]),
/// and the next row's prefetch hints (student and gradient rows when contiguous and `prefetch`
/// holds, plus whatever teacher_next(R, b1, t1) adds), then row(b, t, student row, its stride,
/// gradient row, its stride, R, row value) -> row_status. A failed row throws its grpo::error
/// (throw_row_error with the names `student` / `teacher`); the lowest failing row's leaves.
template <class A, class S, class G, class GScale, class TeacherNext, class Row>
void drive_rows(const strided_view<const S, 3>& s, const strided_view<G, 3>* g,
                const token_plan& P, const dense_row_args<A>& R0, GScale&& gscale_of,
                bool prefetch, TeacherNext&& teacher_next, std::vector<double>& row_loss,
                const char* student, const char* teacher, Row&& row) {
  const index_t L = s.extent(1), V = s.extent(2), n = s.extent(0) * L;
  par::loop_options lo;
  lo.work_per_row = V;
  par::for_each_row(
      n,
      [&](index_t r) {
        const index_t b = r / L, t = r % L;
        const S* sp = s.data_handle() + b * s.stride(0) + t * s.stride(1);
        G* gp = g ? g->data_handle() + b * g->stride(0) + t * g->stride(1) : nullptr;
        const std::size_t k = static_cast<std::size_t>(r);
        if (!P.active[k]) {
          if (gp) zero_row(gp, g->stride(2), V);
          return;
        }
        dense_row_args<A> R = R0;
        R.gscale = gscale_of(P.coef[k]);
        if (r + 1 < n && s.stride(2) == 1 && prefetch) {
          const index_t b1 = (r + 1) / L, t1 = (r + 1) % L;
          R.next_s = s.data_handle() + b1 * s.stride(0) + t1 * s.stride(1);
          R.next_s_bytes = static_cast<index_t>(sizeof(S));
          teacher_next(R, b1, t1);
          if (g != nullptr && g->stride(2) == 1) {
            R.next_g = g->data_handle() + b1 * g->stride(0) + t1 * g->stride(1);
            R.next_g_bytes = static_cast<index_t>(sizeof(G));
          }
        }
        const int st = row(b, t, sp, s.stride(2), gp, g ? g->stride(2) : index_t(0), R, row_loss[k]);
        if (st != row_ok) throw_row_error({r, st}, L, student, teacher);
      },
      lo);
}

}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::distill::detail

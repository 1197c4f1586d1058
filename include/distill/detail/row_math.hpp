// SPDX-License-Identifier: Apache-2.0
/// @file row_math.hpp
/// @brief Row maths of grpo::distill (portable): chunked vocabulary passes over strided rows, the
///        per-chunk online log-sum-exp partials merged into grpo::online_lse, and the per-thread
///        exponential cache that pass 1 fills for the later passes (and for the ISA kernels of
///        distill/kernels/<isa>/, which fill the same cache format).
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
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/half.hpp>
#include <grpo/core/isa.hpp>
#include <grpo/core/math.hpp>
#include <grpo/ops/distill.hpp>
#include <grpo/ops/softmax.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

namespace grpo::distill::detail {
inline namespace GRPO_ISA_ABI {

/// Elements per vocabulary chunk (2 KiB of float per buffer: several buffers stay in L1).
inline constexpr index_t chunk = 512;
/// Independent accumulators per reduction (a multiple of every SIMD width up to AVX-512 floats).
inline constexpr index_t lanes = 16;

/// Software prefetch of bytes [off, off + len) of a row (a hint; compiles to nothing where the
/// builtin is unavailable).
template <int RW = 0>
GRPO_FORCEINLINE void prefetch_range(const void* base, index_t off, index_t len) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  if (base == nullptr) return;
  const char* p = static_cast<const char*>(base) + off;
  for (index_t b = 0; b < len; b += 64) __builtin_prefetch(p + b, RW, 3);
#else
  (void)base;
  (void)off;
  (void)len;
#endif
}

/// Accumulation type of a storage type: double for double inputs (references, finite differences),
/// float for float, bfloat16 and float16.
template <class T>
using acc_t = std::conditional_t<std::is_same_v<std::remove_cv_t<T>, double>, double, float>;

template <class A>
inline constexpr A neg_inf = -std::numeric_limits<A>::infinity();

/// Row status codes returned by the row kernels (0 = fine); the row driver throws the matching
/// grpo::error from the row (throw_row_error), grpo::par::for_each_row carries it out of the loop.
enum row_status : int {
  row_ok = 0,
  student_not_finite,      ///< NaN or +inf student logit
  student_empty,           ///< every student logit is -inf
  teacher_not_finite,      ///< NaN or +inf teacher logit / log-probability
  teacher_empty,           ///< every teacher entry is -inf
  id_out_of_range,         ///< top-k id >= V, or label outside [0, V)
  id_duplicate,            ///< the same id twice in one top-k row
  teacher_mass_above_one,  ///< top-k probabilities sum to more than 1 (tail bucket)
};

/// Widen n elements at p (stride st, elements) into buf and pad to a multiple of `lanes` with -inf
/// (an entry with no mass: neutral in every pass). Returns the padded length.
template <class A, class T>
GRPO_FORCEINLINE index_t load_chunk(const T* GRPO_RESTRICT p, index_t st, index_t n,
                                    A* GRPO_RESTRICT buf) noexcept {
  if (st == 1) {
    for (index_t i = 0; i < n; ++i) buf[i] = static_cast<A>(widen(p[i]));
  } else {
    for (index_t i = 0; i < n; ++i) buf[i] = static_cast<A>(widen(p[i * st]));
  }
  const index_t np = (n + lanes - 1) / lanes * lanes;
  for (index_t i = n; i < np; ++i) buf[i] = neg_inf<A>;
  return np;
}

/// Narrow n gradient values into the caller's buffer (stride st).
template <class G, class A>
GRPO_FORCEINLINE void store_chunk(G* GRPO_RESTRICT g, index_t st, index_t n,
                                  const A* GRPO_RESTRICT buf) noexcept {
  if (st == 1) {
    for (index_t i = 0; i < n; ++i) g[i] = narrow<G>(buf[i]);
  } else {
    for (index_t i = 0; i < n; ++i) g[i * st] = narrow<G>(buf[i]);
  }
}

/// True when a chunk holds a NaN or +inf (-inf is a legal masked entry).
template <class A>
GRPO_FORCEINLINE bool has_nan_or_posinf(const A* x, index_t np) noexcept {
  int bad = 0;
  for (index_t i = 0; i < np; ++i)
    bad |= static_cast<int>(!(x[i] <= std::numeric_limits<A>::max()) & !(x[i] == neg_inf<A>));
  return bad != 0;
}

template <class A>
GRPO_FORCEINLINE A lane_sum(const A (&acc)[lanes]) noexcept {
  A s = A(0);
  for (index_t k = 0; k < lanes; ++k) s += acc[k];
  return s;
}

/// Maximum of a padded chunk (NaN never wins: NaN rows are rejected separately). Four independent
/// lane blocks, so the max chain is not latency-bound (one vmaxps per 16 elements would be).
template <class A>
GRPO_FORCEINLINE A chunk_max(const A* GRPO_RESTRICT x, index_t np) noexcept {
  A mx[4 * lanes];
  for (index_t k = 0; k < 4 * lanes; ++k) mx[k] = neg_inf<A>;
  index_t i = 0;
  for (; i + 4 * lanes <= np; i += 4 * lanes)
    for (index_t k = 0; k < 4 * lanes; ++k) mx[k] = x[i + k] > mx[k] ? x[i + k] : mx[k];
  for (; i < np; i += lanes)
    for (index_t k = 0; k < lanes; ++k) mx[k] = x[i + k] > mx[k] ? x[i + k] : mx[k];
  A m = neg_inf<A>;
  for (index_t k = 0; k < 4 * lanes; ++k) m = mx[k] > m ? mx[k] : m;
  return m;
}

/// Exponentials kept from pass 1: e_j = exp(beta (x_j - m_c)) relative to the maximum m_c of
/// chunk c, and per chunk the factor scale_c = exp(beta (m_c - m) - log s) that turns them into
/// probabilities, q_j = e_j scale_c. Later passes then need no exponential for q (or p): the
/// vocabulary loops are compute-bound on this kind of CPU (a polynomial exp per element and pass
/// costs more than streaming the element from L2). Per thread: one float per vocabulary entry
/// (rounded up to whole chunks) and one per chunk, reused across rows: O(threads x vocab) memory,
/// never tokens x vocab.
template <class A>
struct row_exp_cache {
  std::vector<A> e;      ///< [ceil(V / chunk) * chunk]; 0 on padding
  std::vector<A> m;      ///< per-chunk maximum (raw units)
  std::vector<A> scale;  ///< per-chunk factor (0 for a chunk without mass)
  std::vector<A> part;   ///< per-chunk online_lse partial e_c (AVX-512 pass 1)
  std::vector<A> aux;    ///< per-chunk forward-KL partial sums (AVX-512 fused pass 1)
  std::vector<A> x;      ///< the row widened to contiguous A when it is not (AVX-512 pass 1)
  /// The contiguous A row pass 1 read (the caller's row or `x`), for the later passes; set by the
  /// AVX-512 pass 1 only.
  const A* row = nullptr;
  void reserve(index_t V) {
    const index_t nc = (V + chunk - 1) / chunk;
    if (static_cast<index_t>(e.size()) < nc * chunk) {
      e.resize(static_cast<std::size_t>(nc * chunk));
#if GRPO_ARCH_X86_64 || GRPO_ARCH_AARCH64  // the packet kernels (x86 ISAs, NEON)
      x.resize(static_cast<std::size_t>(nc * chunk));
#endif
    }
    if (static_cast<index_t>(m.size()) < nc) {
      m.resize(static_cast<std::size_t>(nc));
      scale.resize(static_cast<std::size_t>(nc));
      part.resize(static_cast<std::size_t>(nc));
      aux.resize(static_cast<std::size_t>(nc));
    }
  }
};

/// Pass 1 over one row: the online state of beta * x (the partial of each chunk computed from the
/// exponentials it stores in `cache`), the per-chunk probability factors, and a NaN/+inf flag.
/// The portable pass (the baseline path; engine.hpp's row_lse_store picks an ISA kernel for
/// float accumulation where the CPU has one).
template <class A, class T>
basic_online_lse<A> row_lse_store_portable(const T* p, index_t st, index_t V, A beta, A* buf,
                                  row_exp_cache<A>& cache, bool& bad) noexcept {
  {
    basic_online_lse<A> s(beta);
    for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
      const index_t n = std::min(chunk, V - j0);
      const index_t np = load_chunk(p + j0 * st, st, n, buf);
      bad = bad || has_nan_or_posinf(buf, np);
      const A m = chunk_max(buf, np);
      cache.m[static_cast<std::size_t>(c)] = m;
      A* e = cache.e.data() + j0;
      if (!(m > neg_inf<A>)) {
        for (index_t i = 0; i < np; ++i) e[i] = A(0);
        continue;
      }
      // e = exp(beta (x - m_c)) stored (exactly 1 at the chunk maximum, 0 for -inf and padding);
      // the online_lse partial counts ties separately so its dominant-logit precision is kept.
      A acc[lanes] = {}, ties[lanes] = {};
      for (index_t i = 0; i < np; ++i) e[i] = ops::distill_exp(beta * (buf[i] - m));
      for (index_t i = 0; i < np; i += lanes)
        for (index_t k = 0; k < lanes; ++k) acc[k] += ops::select(buf[i + k] < m, e[i + k], A(0));
      for (index_t i = 0; i < np; i += lanes)
        for (index_t k = 0; k < lanes; ++k) ties[k] += ops::select(buf[i + k] == m, A(1), A(0));
      s.merge(
          basic_online_lse<A>::from_partial(beta, m, lane_sum(ties) - A(1) + lane_sum(acc), A(0)));
    }
    if (!s.empty()) {
      const A log_s = s.log_sum();
      for (index_t c = 0; c * chunk < V; ++c) {
        const A mc = cache.m[static_cast<std::size_t>(c)];
        cache.scale[static_cast<std::size_t>(c)] =
            mc > neg_inf<A> ? ops::distill_exp(beta * (mc - s.m) - log_s) : A(0);
      }
    }
    return s;
  }
}

/// The per-thread caches of the student and teacher rows.
template <class A>
struct thread_caches {
  row_exp_cache<A> student, teacher;
};
template <class A>
thread_caches<A>& local_caches() {
  static thread_local thread_caches<A> c;
  return c;
}

}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::distill::detail

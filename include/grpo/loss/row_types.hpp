// SPDX-License-Identifier: Apache-2.0
/// @file row_types.hpp
/// @brief The row interface of compute_loss_into's row kernels (portable, AVX-512): the per-row
///        partial results (fast_row_part), the uniform parameters (fast_simd_params,
///        gspo_params), the row descriptor (fast_simd_row), the flush / prefetch constants.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/isa.hpp>  // GRPO_ISA_ABI
#include <grpo/ops/kl.hpp>
#include <grpo/ops/policy_loss.hpp>
#include <grpo/policy_loss.hpp>

#include <cstdint>
#include <limits>

namespace grpo::detail {

/// Whether an optional view is given (non-null data).
template <class V>
bool has(const V& v) noexcept {
  return v.data_handle() != nullptr;
}

inline namespace GRPO_ISA_ABI {

struct tis_params;  // (loss/kernels/general_rows.hpp: gspo_params::tis)

/// Per-row partial results of the token-level fast path, merged serially in row order so that the
/// loss, gradient and metrics are bitwise identical whatever the number of threads.
struct fast_row_part {
  static constexpr double kInf = std::numeric_limits<double>::infinity();
  double pol = 0, kls = 0;
  // metric blocks: {sum w x, sum w x^2, min, max}
  double ak[4] = {0, 0, kInf, -kInf}, av[4] = {0, 0, kInf, -kInf}, ra[4] = {0, 0, kInf, -kInf};
  double kb[4] = {0, 0, kInf, -kInf};
  double c_lo = 0, c_hi = 0, c_re = 0, c_du = 0, c_w = 0, wsum = 0;
  /// Entropy term of the row (rows with an entropy input, fast_simd_row::h): ent = s_ent sum m H
  /// (the row's share of entropy_loss) and the entropy metric's block {sum m H, sum m H^2, min,
  /// max} over the valid tokens (weight: wsum, the same tokens).
  double ent = 0;
  double eb[4] = {0, 0, kInf, -kInf};
  /// GSPO (sequence level, per-sequence advantages): the row's one clip decision, TRL's (B, 1)
  /// metrics (bit 0 low, bit 1 high, bit 2 dual); recorded for every row, empty ones included.
  unsigned char seq_clip = 0;
  /// Weight of the entropy metric's block when it is not wsum (the top-entropy mask out of the
  /// denominators: the row's entropy-kept count n_ent); < 0: wsum.
  double ewsum = -1;
};

/// Uniform parameters of the sequence-level (GSPO / GSPO-token) row kernels: the policy options
/// (the row constants go through grpo::policy_token and detail::token_ratio in double, exactly
/// the general engine's calls) and the KL term.
struct gspo_params {
  policy_options P{};
  ops::kl_params kl{};
  double kl_coef = 0;
  bool kl_bias = false;
  bool seq = true;  ///< is_level::sequence (false: sequence_token, no spread term)
  /// Rollout IS weight of the policy term (tis_options, or the caller's is_weights as
  /// fast_simd_row::w): the call's TIS row parameters (kernels/general_rows.hpp tis_rows_params:
  /// wkind 0 token, 1 sequence, 2 OpenRLHF seq-mask-tis, 3 is_weights; its bounds, log clamp and
  /// loss_params for finish_row's row weight), held, not copied, so that the sequence rows bind
  /// the TIS rows' own weight helpers. Null: no IS weight (weight 1).
  const tis_params* tis = nullptr;
};

// ---- vectorised token-level fast path ----------------------------------------------------------
// The row kernel below runs the fast path's per-token maths on a lane type V (an xsimd batch,
// also for the row tail: one padded step; the scalar C only in builds without xsimd) through
// grpo/detail/simd.hpp, whose functions are the ops (called, or mirrored operation for operation
// and tested bitwise). Inputs are processed in their own precision C (float stays float, double
// stays double); every sum is accumulated per lane in C over at most kFlushBatches batches and
// then added to the row's double partial, so float rounding never accumulates over more than a
// few dozen terms.

/// Uniform parameters of the vectorised fast path, converted once to the compute type C.
template <class C>
struct fast_simd_params {
  ops::ppo_clip_params<C> cp{};
  C lr_min = 0, lr_max = 0;  ///< log-ratio clamp (+-inf = none)
  bool lr_clamped = false;   ///< a log-ratio bound is finite
  C eps_low = 0, eps_high = 0, tau_pos = 0, tau_neg = 0;
  bool cispo_cap = false;
  ops::kl_params kl{};
  C kl_coef = 0;
  bool kl_bias = false;
};

/// Row inputs of the vectorised fast path (contiguous along t). lo == lp when on-policy; A is
/// either a contiguous row or, when null, the row constant a0 (per-sequence advantages).
template <class C, class M, class G>
struct fast_simd_row {
  const C *lp = nullptr, *lo = nullptr, *lr = nullptr, *A = nullptr;
  C a0 = 0;
  const M* m = nullptr;
  bool trunc = false;
  G *g = nullptr, *ptl = nullptr, *ge = nullptr;
  C sp = 0, sk = 0;  ///< aggregation row factors of the policy and KL terms
  /// Entropy input of the row (null: none). Given, the row's entropy sweep (token rows, TIS rows)
  /// adds the entropy term: loss -= entropy_coef se sum m H, and writes ge = gh m at every
  /// position, with gh = -entropy_coef se (d loss / d H) and se the entropy term's row factor.
  const C* h = nullptr;
  C gh = 0;
  double se = 0;
  /// Per-token weight row (the TIS rows with an external is_weights input: each token's detached
  /// IS weight, read in place of exp(lo - ls)) and the next row's (prefetch); null: none.
  const C *w = nullptr, *nw = nullptr;
  /// OPSM rows: whether the row's off-policy gap is <= delta (every token kept; the decision of
  /// opsm_packet_counts, which summed the gap once per row) and the row's final-mask count n_fin
  /// (final_counts; the base count n without OPSM in the denominator).
  bool gap_ok = true;
  double nf = 0;
  /// Top-entropy mask out of the denominators (the policy multiplier only, TRL): hk = the row's
  /// entropies; a token with !(hk[t] >= h_thr) gets policy value and gradient 0 (its KL, metrics
  /// and counts stay). h_thr: the smallest C >= the double threshold, so the test in C is the
  /// general engine's test in double. null: no such mask.
  const C* hk = nullptr;
  C h_thr = 0;
  /// One past the last nonzero mask entry (pass 1): without per-token loss output the kernels
  /// stop reading at the first step boundary >= end and zero-fill the gradient after it.
  index_t end = 0;
  double n = 0;  ///< sum of the row's mask (pass 1; 0 for a truncated row)
  /// The next row's inputs (the row this thread most likely runs next), prefetched while this row
  /// ends so that a row does not start with a full memory latency per stream; null: none.
  const C *nlp = nullptr, *nlo = nullptr, *nlr = nullptr, *nA = nullptr;
  const M* nm = nullptr;
  /// The next row's `end` (sequence-level kernel: its valid part is prefetched during sweep 2).
  index_t nend = 0;
  /// Write the gradient with non-temporal (streaming) stores: set for outputs much larger than
  /// the last-level cache, where a regular store first reads the line it overwrites.
  bool nt = false;
  bool bin = false;  ///< every mask entry of the row is 0 or 1 (pass 1)
  /// A binary row whose ones are exactly [0, end) (right padding): the AVX-512 lean kernel then
  /// takes the valid lanes from `end` and never reads the mask.
  bool prefix = false;
};

/// Lane sums are flushed to double every kFlushBatches steps (<= 16 float roundings per lane).
inline constexpr index_t kFlushBatches = 16;
/// Prefetch distance of the vectorised row loop, in elements.
/// Gradient size (bytes) from which the AVX-512 fast path writes it with streaming stores.
#ifndef GRPO_LOSS_STREAM_STORE_BYTES
#define GRPO_LOSS_STREAM_STORE_BYTES (16u << 20)
#endif
#ifndef GRPO_LOSS_PREFETCH_LOCALITY
#define GRPO_LOSS_PREFETCH_LOCALITY 3
#endif
#ifndef GRPO_LOSS_PREFETCH_DISTANCE
#define GRPO_LOSS_PREFETCH_DISTANCE 256
#endif
inline constexpr index_t kPrefetch = GRPO_LOSS_PREFETCH_DISTANCE;
/// Read prefetch hint for p + ahead (never dereferenced: an address past the row end is harmless;
/// formed as an integer so no out-of-range pointer is created). No-op without the builtin.
template <class X>
GRPO_FORCEINLINE void fast_prefetch(const X* p, index_t ahead) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  const auto a =
      reinterpret_cast<std::uintptr_t>(p) + static_cast<std::uintptr_t>(ahead) * sizeof(X);
  __builtin_prefetch(reinterpret_cast<const void*>(a), 0, GRPO_LOSS_PREFETCH_LOCALITY);
#else
  (void)p;
  (void)ahead;
#endif
}

}  // namespace GRPO_ISA_ABI
}  // namespace grpo::detail

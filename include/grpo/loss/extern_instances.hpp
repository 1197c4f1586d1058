// SPDX-License-Identifier: Apache-2.0
/// @file extern_instances.hpp
/// @brief Opt-in compiled instances of the loss engine (build time only; no change in results).
///
/// A float compute_loss_into instantiates the row kernels of every ISA path (the avx2 and avx512
/// packet rows and the portable xsimd rows) for every policy kind and KL switch: ~40 s of g++ -O2
/// and ~3-7 min under AddressSanitizer + UBSan per translation unit. A program whose many
/// translation units call the engine can compile it once:
///   - every translation unit defines GRPO_LOSS_EXTERN_TEMPLATES (the instantiations below become
///     explicit instantiation declarations: the units reference them and compile none), and
///   - exactly one translation unit, compiled with the same flags (the same GRPO_ISA_ABI namespace,
///     the same OpenMP setting), defines GRPO_LOSS_INSTANTIATE before including <grpo/loss.hpp>
///     (they become explicit instantiation definitions), or seven units define
///     GRPO_LOSS_INSTANTIATE_PART = 1 .. 7 (one part each, compiled in parallel).
/// Other type combinations are instantiated where they are used, as without the macro. A unit
/// compiled with other -m flags has another ABI namespace: it must not define the macro (its
/// references would not link), and neither must a unit that sets the engine's tuning macros
/// (GRPO_LOSS_STREAM_STORE_BYTES, GRPO_LOSS_PREFETCH_*: a named #error). The test suite uses this (tests/support/loss_instances.cpp, built seven times).
///
/// The list: T (inputs), M (mask), G (outputs) = (double, double, double), (float, float, double)
/// (what compute_loss returns for float inputs), (float, float, float), (float, int, float) and
/// (float, int, double) (integer masks); the row kernels that
/// the fused paths call directly (fast_simd_row_dispatch, gspo_simd_row) for the float pairs.
#pragma once

#include <grpo/loss/compute.hpp>
#include <grpo/loss/simd_sequence_rows.hpp>
#include <grpo/loss/simd_token_rows.hpp>

// The engine's tuning macros change its body: a unit that sets them compiles its own instances.
#if defined(GRPO_LOSS_EXTERN_TEMPLATES) && !defined(GRPO_LOSS_INSTANTIATE) && \
    !defined(GRPO_LOSS_INSTANTIATE_PART)
#if GRPO_LOSS_STREAM_STORE_BYTES != (16u << 20) || GRPO_LOSS_PREFETCH_LOCALITY != 3 || \
    GRPO_LOSS_PREFETCH_DISTANCE != 256
#error "GRPO_LOSS_EXTERN_TEMPLATES: this unit sets GRPO_LOSS_STREAM_STORE_BYTES / GRPO_LOSS_PREFETCH_*, so the compiled instances (default values) are not its engine; #undef GRPO_LOSS_EXTERN_TEMPLATES here"
#endif
#endif

// Which instances this unit defines: GRPO_LOSS_INSTANTIATE (every one), or GRPO_LOSS_INSTANTIATE_PART
// = 1 .. 7 (one each: row kernels <float, float, double>, <float, float, float>, then the engine for
// <double, double, double>, <float, float, double>, <float, float, float>, <float, int, float>,
// <float, int, double>; the others are declared extern there, so that seven units build the set in
// parallel without compiling anything twice).
#if defined(GRPO_LOSS_INSTANTIATE) || defined(GRPO_LOSS_INSTANTIATE_PART) || \
    defined(GRPO_LOSS_EXTERN_TEMPLATES)
#if defined(GRPO_LOSS_INSTANTIATE)
#define GRPO_LOSS_DEFINES_(k) 1
#elif defined(GRPO_LOSS_INSTANTIATE_PART)
#define GRPO_LOSS_DEFINES_(k) (GRPO_LOSS_INSTANTIATE_PART == (k))
#else
#define GRPO_LOSS_DEFINES_(k) 0
#endif

#define GRPO_LOSS_ENGINE_INSTANCE_(KW, T, M, G)                                                    \
  KW loss_scalars compute_loss_into<T, M, G>(const loss_options&, const loss_batch<T, M>&,        \
                                             const loss_outputs<G>&);
#define GRPO_LOSS_FLAGGED_INSTANCE_(KW, T, M, G)                                                   \
  KW loss_scalars compute_loss_into_flagged<T, M, G>(                                              \
      const loss_options&, const loss_batch<T, M>&, const loss_outputs<G>&, loss_call_flags);
#define GRPO_LOSS_ROW_INSTANCE_(KW, C, M, G)                                                       \
  KW bool fast_simd_row_dispatch<C, M, G>(policy_loss_kind, bool, const fast_simd_params<C>&,     \
                                          const fast_simd_row<C, M, G>&, index_t, fast_row_part&); \
  KW bool gspo_simd_row<C, M, G>(const gspo_params&, bool, const fast_simd_row<C, M, G>&, index_t, \
                                 fast_row_part&);

namespace grpo {
namespace detail {
inline namespace GRPO_ISA_ABI {
#if GRPO_LOSS_DEFINES_(1)
GRPO_LOSS_ROW_INSTANCE_(template, float, float, double)
#else
GRPO_LOSS_ROW_INSTANCE_(extern template, float, float, double)
#endif
#if GRPO_LOSS_DEFINES_(2)
GRPO_LOSS_ROW_INSTANCE_(template, float, float, float)
#else
GRPO_LOSS_ROW_INSTANCE_(extern template, float, float, float)
#endif
// compute_loss_into's body (compute_loss_metrics calls it with its scratch flag), in the same
// parts as compute_loss_into below.
#if GRPO_LOSS_DEFINES_(3)
GRPO_LOSS_FLAGGED_INSTANCE_(template, double, double, double)
#else
GRPO_LOSS_FLAGGED_INSTANCE_(extern template, double, double, double)
#endif
#if GRPO_LOSS_DEFINES_(4)
GRPO_LOSS_FLAGGED_INSTANCE_(template, float, float, double)
#else
GRPO_LOSS_FLAGGED_INSTANCE_(extern template, float, float, double)
#endif
#if GRPO_LOSS_DEFINES_(5)
GRPO_LOSS_FLAGGED_INSTANCE_(template, float, float, float)
#else
GRPO_LOSS_FLAGGED_INSTANCE_(extern template, float, float, float)
#endif
#if GRPO_LOSS_DEFINES_(6)
GRPO_LOSS_FLAGGED_INSTANCE_(template, float, int, float)
#else
GRPO_LOSS_FLAGGED_INSTANCE_(extern template, float, int, float)
#endif
#if GRPO_LOSS_DEFINES_(7)
GRPO_LOSS_FLAGGED_INSTANCE_(template, float, int, double)
#else
GRPO_LOSS_FLAGGED_INSTANCE_(extern template, float, int, double)
#endif
}  // inline namespace GRPO_ISA_ABI
}  // namespace detail
inline namespace GRPO_ISA_ABI {
#if GRPO_LOSS_DEFINES_(3)
GRPO_LOSS_ENGINE_INSTANCE_(template, double, double, double)
#else
GRPO_LOSS_ENGINE_INSTANCE_(extern template, double, double, double)
#endif
#if GRPO_LOSS_DEFINES_(4)
GRPO_LOSS_ENGINE_INSTANCE_(template, float, float, double)
#else
GRPO_LOSS_ENGINE_INSTANCE_(extern template, float, float, double)
#endif
#if GRPO_LOSS_DEFINES_(5)
GRPO_LOSS_ENGINE_INSTANCE_(template, float, float, float)
#else
GRPO_LOSS_ENGINE_INSTANCE_(extern template, float, float, float)
#endif
#if GRPO_LOSS_DEFINES_(6)
GRPO_LOSS_ENGINE_INSTANCE_(template, float, int, float)
#else
GRPO_LOSS_ENGINE_INSTANCE_(extern template, float, int, float)
#endif
#if GRPO_LOSS_DEFINES_(7)
GRPO_LOSS_ENGINE_INSTANCE_(template, float, int, double)
#else
GRPO_LOSS_ENGINE_INSTANCE_(extern template, float, int, double)
#endif
}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo

#undef GRPO_LOSS_ENGINE_INSTANCE_
#undef GRPO_LOSS_ROW_INSTANCE_
#undef GRPO_LOSS_FLAGGED_INSTANCE_
#undef GRPO_LOSS_DEFINES_
#endif

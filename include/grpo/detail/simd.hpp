// SPDX-License-Identifier: Apache-2.0
/// @file simd.hpp
/// @brief Lane-generic building blocks of the vectorised token-level loss (grpo/loss.hpp fast
///        path): select / exp / load helpers for a scalar `float` / `double` or an xsimd batch, and
///        the few token formulas of include/grpo/ops/ that cannot be called on a batch as written.
///
/// Why this header exists. The ops are scalar `constexpr` functions whose branches are C++ `?:`
/// and `if` on `bool` and whose exponentials call grpo::math::exp (libm). Neither compiles for an
/// xsimd batch, and a libm call in a loop stops GCC's auto-vectoriser, so the token-level fast
/// path ran at one scalar double `exp` per token (~20 ns/token). Here every function is a template
/// over a LANE TYPE V: either a scalar (float / double: plain `?:` and math::exp, i.e. exactly the
/// ops) or `xsimd::batch<float|double>` (xsimd::select and xsimd::exp). One source text therefore
/// gives both the scalar tail / fallback and the vector body.
///
/// One source of maths: where an op is already lane-generic (kl_k1, kl_k2, their gradients,
/// kl_bias_corrected, weighted_pg_loss) it is CALLED with V. Where it is not (PPO clip value and
/// gradient, CISPO weights, SAPO sigmoid, abs / k3 KL, clamps, clip-metric predicates) the formula
/// below mirrors the op operation by operation, with the same operand order and the same tie rules,
/// so that the SCALAR instantiation is bitwise equal to the op (tests/grpo/test_loss_fastpath.cpp
/// checks every mirrored function against its op on grids that include the ties and the clamp
/// edges, in float and double). The batch instantiation differs only by xsimd::exp (<= 1-2 ulp
/// from libm), also checked there.
///
/// Without <xsimd/xsimd.hpp> (or with GRPO_NO_XSIMD defined, or under nvcc) only the scalar lane
/// type exists and the fast path runs the same code one token at a time (GRPO_HAS_XSIMD is 0).
/// The batch width is xsimd's default architecture of the translation unit (-march): everything
/// here sits in `inline namespace GRPO_ISA_ABI`, so TUs built for different targets instantiate
/// different kernels under different names (tests/grpo/test_loss_abi.cpp links both).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/isa.hpp>  // GRPO_ISA_ABI
#include <grpo/core/math.hpp>
#include <grpo/core/vmath512.hpp>
#include <grpo/ops/kl.hpp>
#include <grpo/ops/policy_loss.hpp>

#include <cstddef>
#include <type_traits>

// nvcc (host side of a .cu) takes the scalar form: the lane-generic ops are __host__ __device__,
// and nvcc rejects instantiating those with a vector type.
#if !defined(GRPO_NO_XSIMD) && !defined(__CUDACC__) && __has_include(<xsimd/xsimd.hpp>)
#include <xsimd/xsimd.hpp>
#define GRPO_HAS_XSIMD 1
#else
#define GRPO_HAS_XSIMD 0
#endif

namespace grpo::detail::simd {
// Bodies depend on the TU's target (xsimd's default architecture, FMA contraction): the ABI
// namespace keeps a -march=native TU and a portable TU in one program apart (core/isa.hpp).
inline namespace GRPO_ISA_ABI {

// ---------------------------------------------------------------------------------------------
// Lane traits and helpers. Scalar overloads are exactly the C++ the ops use.

/// Lane type information: scalar type and number of lanes (1 for a plain float / double).
template <class V>
struct lane_traits {
  using scalar = V;
  using mask = bool;
  static constexpr std::size_t size = 1;
};

#if GRPO_HAS_XSIMD
template <class T, class A>
struct lane_traits<xsimd::batch<T, A>> {
  using scalar = T;
  using mask = xsimd::batch_bool<T, A>;
  static constexpr std::size_t size = xsimd::batch<T, A>::size;
};
/// The widest batch of C for the target this translation unit is compiled for.
template <class C>
using batch_of = xsimd::batch<C>;
#endif

template <class V>
using scalar_of = typename lane_traits<V>::scalar;
template <class V>
using mask_of = typename lane_traits<V>::mask;
template <class V>
inline constexpr bool is_scalar_lane = std::is_same_v<V, scalar_of<V>>;

/// c ? a : b per lane.
template <class V>
GRPO_FORCEINLINE V sel(const mask_of<V>& c, const V& a, const V& b) noexcept {
  if constexpr (is_scalar_lane<V>) {
    return c ? a : b;
  }
#if GRPO_HAS_XSIMD
  else {
    return xsimd::select(c, a, b);
  }
#endif
}
/// Lane-wise logical and / or / not (both operands already evaluated: no short circuit to lose).
template <class Mk>
GRPO_FORCEINLINE Mk band(const Mk& a, const Mk& b) noexcept {
  if constexpr (std::is_same_v<Mk, bool>) {
    return a && b;
  } else {
    return a & b;
  }
}
template <class Mk>
GRPO_FORCEINLINE Mk bor(const Mk& a, const Mk& b) noexcept {
  if constexpr (std::is_same_v<Mk, bool>) {
    return a || b;
  } else {
    return a | b;
  }
}
/// e^x: math::exp (libm, as the ops) for scalars, xsimd::exp for batches. (GCC 12 reports a false
/// -Wmaybe-uninitialized inside avx512fintrin.h's _mm512_undefined_* when xsimd's AVX-512 exp is
/// inlined; silenced here, at the only call site.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
template <class V>
GRPO_FORCEINLINE V vexp(const V& x) noexcept {
  if constexpr (is_scalar_lane<V>) {
    return math::exp(x);
  }
#if GRPO_HAS_XSIMD
  else {
    return xsimd::exp(x);
  }
#endif
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
/// Loads size lanes from p (unaligned).
template <class V>
GRPO_FORCEINLINE V load(const scalar_of<V>* p) noexcept {
  if constexpr (is_scalar_lane<V>) {
    return *p;
  } else {
    return V::load_unaligned(p);
  }
}
/// Stores size lanes to p (unaligned).
template <class V>
GRPO_FORCEINLINE void store(scalar_of<V>* p, const V& v) noexcept {
  if constexpr (is_scalar_lane<V>) {
    *p = v;
  } else {
    v.store_unaligned(p);
  }
}
/// Sum of the lanes (identity for a scalar): a pairwise tree over the stored lanes. (xsimd::hadd
/// is avoided: with GCC 12 its AVX-512 double kernel trips -Wuninitialized inside immintrin.h.)
template <class V>
GRPO_FORCEINLINE scalar_of<V> hsum(const V& v) noexcept {
  if constexpr (is_scalar_lane<V>) {
    return v;
  } else {
    constexpr std::size_t L = lane_traits<V>::size;
    scalar_of<V> a[L];
    v.store_unaligned(a);
    for (std::size_t w = L / 2; w > 0; w /= 2)
      for (std::size_t l = 0; l < w; ++l) a[l] += a[l + w];
    return a[0];
  }
}
/// True if any lane is set.
template <class Mk>
GRPO_FORCEINLINE bool any(const Mk& m) noexcept {
  if constexpr (std::is_same_v<Mk, bool>) {
    return m;
  }
#if GRPO_HAS_XSIMD
  else {
    return xsimd::any(m);
  }
#endif
}
/// NOTE: write `!(a == b)`, never `a != b`, on lane values: xsimd's AVX-512 `!=` is the ORDERED
/// compare (false when a lane is NaN) while SSE / AVX2 and C++ give true, so `!=` would make NaN
/// handling depend on the target.
/// A mask with every lane false.
template <class V>
GRPO_FORCEINLINE mask_of<V> none_set() noexcept {
  return V(scalar_of<V>(0)) != V(scalar_of<V>(0));
}
/// Finite test written as x - x == 0 (false for NaN and +-inf), as grpo::math::is_finite.
template <class V>
GRPO_FORCEINLINE mask_of<V> finite(const V& x) noexcept {
  return (x - x) == V(0);
}

// The token formulas (mirrors of the ops that do not compile for a batch), written once over the
// lane type: the same text is included again inside each packet ISA's target region for
// loss/kernels/<isa>/ (grpo/loss/kernels/lanes.ipp gives it the packet lane type there).
#include <grpo/detail/lane_formulas.ipp>

}  // namespace GRPO_ISA_ABI
}  // namespace grpo::detail::simd

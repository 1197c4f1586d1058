// SPDX-License-Identifier: Apache-2.0
/// @file lanes.ipp
/// @brief The packet lane type of the loss rows: a thin value wrapper `V` over `A::vf` (A =
///        simd::avx2 / simd::avx512) with the arithmetic and compare operators and the lane
///        helpers (sel, band, bor, vexp, none_set, any, scalar_of, mask_of) that
///        <grpo/detail/lane_formulas.ipp> is written against. No include guard: included by
///        loss/kernels/<isa>/rows.hpp inside that ISA's target region and namespace, after
///        `using A = ...;`, followed by lane_formulas.ipp, so that the formulas are compiled
///        for the packet where the packet's instructions are enabled (a template defined outside
///        the region cannot inline them: GCC refuses always_inline across targets).
///
/// Arithmetic is the compilers' vector extension on A::vf (+ - * / and unary -, exact IEEE
/// single operations lane by lane, as the scalar ops); compares map onto the packet's ordered /
/// unordered compares so that each operator has C++'s NaN semantics (`<`, `>`, `<=`, `>=`, `==`
/// false on NaN, `!=` true); masks combine with the mask type's own bitwise operators (an
/// integer vector on AVX2, a k-mask on AVX-512).

using vf = typename A::vf;
using vmask = typename A::mask;

/// Lane mask: A::mask (all-ones lanes on AVX2, a k-mask on AVX-512).
struct Mk {
  vmask m;
};
GRPO_FORCEINLINE Mk operator&(Mk a, Mk b) noexcept { return {static_cast<vmask>(a.m & b.m)}; }
GRPO_FORCEINLINE Mk operator|(Mk a, Mk b) noexcept { return {static_cast<vmask>(a.m | b.m)}; }
GRPO_FORCEINLINE Mk operator!(Mk a) noexcept { return {static_cast<vmask>(~a.m)}; }

/// A::lanes floats.
struct V {
  vf v;
  V() = default;
  GRPO_FORCEINLINE V(vf x) noexcept : v(x) {}  // NOLINT(google-explicit-constructor)
  template <class S, std::enable_if_t<std::is_arithmetic_v<S>, int> = 0>
  GRPO_FORCEINLINE explicit V(S c) noexcept : v(A::set1(static_cast<float>(c))) {}
};
GRPO_FORCEINLINE V operator+(V a, V b) noexcept { return V(a.v + b.v); }
GRPO_FORCEINLINE V operator-(V a, V b) noexcept { return V(a.v - b.v); }
GRPO_FORCEINLINE V operator*(V a, V b) noexcept { return V(a.v * b.v); }
GRPO_FORCEINLINE V operator/(V a, V b) noexcept { return V(a.v / b.v); }
GRPO_FORCEINLINE V operator-(V a) noexcept { return V(-a.v); }
GRPO_FORCEINLINE Mk operator>(V a, V b) noexcept { return {A::cmp_gt(a.v, b.v)}; }
GRPO_FORCEINLINE Mk operator<(V a, V b) noexcept { return {A::cmp_gt(b.v, a.v)}; }
/// a >= b (ordered) = not (b > a or unordered) = !cmp_nle(b, a).
GRPO_FORCEINLINE Mk operator>=(V a, V b) noexcept { return !Mk{A::cmp_nle(b.v, a.v)}; }
GRPO_FORCEINLINE Mk operator<=(V a, V b) noexcept { return !Mk{A::cmp_nle(a.v, b.v)}; }
GRPO_FORCEINLINE Mk operator==(V a, V b) noexcept { return {A::cmp_eq(a.v, b.v)}; }
GRPO_FORCEINLINE Mk operator!=(V a, V b) noexcept { return !Mk{A::cmp_eq(a.v, b.v)}; }

// Lane helpers under the names lane_formulas.ipp uses (they hide grpo::detail::simd's).
template <class W>
using scalar_of = float;
template <class W>
using mask_of = Mk;
template <class W>
GRPO_FORCEINLINE W sel(const Mk& c, const W& a, const W& b) noexcept {
  return W(A::select(c.m, a.v, b.v));
}
GRPO_FORCEINLINE Mk band(const Mk& a, const Mk& b) noexcept { return a & b; }
GRPO_FORCEINLINE Mk bor(const Mk& a, const Mk& b) noexcept { return a | b; }
/// e^x of the rows: A::exp_fast (8 operations; relative error <= 3e-7 + 1e-7 |x|) for x in
/// [-87, 88], and A::exp_full (libm edges: e^-inf = 0, +inf above 88.7, NaN -> NaN, subnormal
/// results) for the lanes outside, only when a step has one (a rare, predictable branch). One exp
/// for every row variant, so that the lean and general rows of one call give the same values
/// whichever outputs are requested (the fused step asks for more than compute_loss does).
/// exp_fast runs on x unclamped: its lanes outside [-87, 88] (garbage there, no trap) are
/// replaced by exp_full's, so the result is bitwise that of exp_fast(clamp(x)) on the lanes
/// inside; the test is two unordered compares (NaN lanes go to exp_full).
GRPO_FORCEINLINE V vexp(const V& x) noexcept {
  const Mk out = Mk{A::cmp_nle(A::set1(-87.0f), x.v)} | Mk{A::cmp_nle(x.v, A::set1(88.0f))};
  const vf e = A::exp_fast(x.v);
  if (A::count(out.m) == 0) return V(e);
  return V(A::select(out.m, A::exp_full(x.v), e));
}
template <class W>
GRPO_FORCEINLINE Mk none_set() noexcept {
  return {A::cmp_gt(A::zero(), A::zero())};
}
GRPO_FORCEINLINE bool any(const Mk& m) noexcept { return A::count(m.m) != 0; }
/// m ? x : 0 per lane.
GRPO_FORCEINLINE V keep(const Mk& m, const V& x) noexcept { return V(A::keep(m.m, x.v)); }
/// vminps / vmaxps: a NaN lane in either operand returns b.
GRPO_FORCEINLINE V vmin(const V& a, const V& b) noexcept { return V(A::min(a.v, b.v)); }
GRPO_FORCEINLINE V vmax(const V& a, const V& b) noexcept { return V(A::max(a.v, b.v)); }
/// v unchanged, opaque to the compiler's floating-point contraction: s + opaque(a * b) is never
/// fused into an FMA (GNU mode contracts a * b + c), so that a step which drops keep(valid, a * b)
/// (token_row's Full steps) rounds exactly as the step that keeps it. No instruction.
GRPO_FORCEINLINE V opaque(V v) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  __asm__("" : "+v"(v.v));
#endif
  return v;
}
/// Cheaper instructions for three helpers of lane_formulas.ipp, with the same values (these
/// non-templates win overload resolution over its generic templates):
/// clamp_ordered(x, lo, hi) for lo <= hi: vmaxps(lo, vminps(hi, x)) (vminps(hi, x) = hi < x ? hi :
/// x = sel(x > hi, hi, x); vmaxps(lo, y) = lo > y ? lo : y, which is sel(x < lo, lo, y) when lo
/// <= hi; a NaN x stays x), 2 operations instead of 2 compares and 2 blends.
GRPO_FORCEINLINE V clamp_ordered(const V& x, const V& lo, const V& hi) noexcept {
  return V(A::max(lo.v, A::min(hi.v, x.v)));
}
/// pick_gt(a, b) = a > b ? a : b: vmaxps(a, b) exactly (NaN in either: b).
GRPO_FORCEINLINE V pick_gt(const V& a, const V& b) noexcept { return V(A::max(a.v, b.v)); }
/// neg_abs(z) = -|z|: the sign bit set (one vorps). Differs from the generic sel(z >= 0, -z, z)
/// only on -0 (gives -0; e^-0 = e^+0 = 1 exactly in both exps) and NaN (a NaN with the sign set:
/// still NaN; a row with a NaN ratio is rerun on the scalar path).
GRPO_FORCEINLINE V neg_abs(const V& z) noexcept {
  using vi = std::int32_t __attribute__((vector_size(sizeof(vf))));
  const vi b = __builtin_bit_cast(vi, z.v) | std::numeric_limits<std::int32_t>::min();
  return V(__builtin_bit_cast(vf, b));
}
/// The lean rows' exp is the same function (see vexp).
GRPO_FORCEINLINE V vexp_lean(const V& x) noexcept { return vexp(x); }
/// vexp without its range test: A::exp_fast alone, bitwise vexp on lanes in [-87, 88] (garbage,
/// no trap, outside). For a caller that proves the range afterwards (token_row's lean rows track
/// the arguments' extrema over the valid lanes and rerun a row whose range fails with vexp).
GRPO_FORCEINLINE V vexp_unguarded(const V& x) noexcept { return V(A::exp_fast(x.v)); }
/// Whether every lane of [mn, mx] lies in vexp_unguarded's exact range [-87, 88].
GRPO_FORCEINLINE bool vexp_in_range(const V& mn, const V& mx) noexcept {
  return !any(V(-87.0f) > mn) && !any(mx > V(88.0f));
}
// ops::tis_weight's bounds (tis_bound), the text the lane-generic rows compile too.
#include <grpo/loss/kernels/tis_bound.ipp>
/// The fill of a row's output past its last step: p[t, Tn) = v (the rows' gradient past the last
/// valid token: 0; token_row's entropy gradient: gh * 0, the general engine's signed zero). nt:
/// the row streams its float output (fast_simd_row::nt: p starts on a packet boundary; a double
/// output never streams): plain stores to the next packet boundary, whole steps streamed, the
/// rest plain, then `sfence`, which orders the streaming stores (of the whole row, its earlier
/// steps' too) before anything later, such as another thread's read of the output. One sfence
/// per row: the caller with nt streams nothing after this call.
template <class G>
GRPO_FORCEINLINE void zero_row_tail(G* p, index_t t, index_t Tn, bool nt, G v = G(0)) noexcept {
  if constexpr (std::is_same_v<G, float>) {
    if (nt) {
      constexpr auto L = static_cast<index_t>(A::lanes);
      for (; t < Tn && t % L != 0; ++t) p[t] = v;
      for (; t + L <= Tn; t += L) A::stream(p + t, A::set1(v));
    }
  }
  for (; t < Tn; ++t) p[t] = v;
  if (nt) A::sfence();
}

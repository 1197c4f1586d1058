// SPDX-License-Identifier: Apache-2.0
/// @file tis_bound.ipp
/// @brief ops::tis_weight's bounds over a lane type V, written once for the packet rows and the
///        lane-generic rows. No include guard: included by loss/kernels/lanes.ipp inside each
///        ISA's target region and namespace (V: the packet wrapper; the TIS rows'
///        tis_weight_lanes, the packet sequence rows through it), and by
///        loss/simd_sequence_rows.hpp in grpo::detail::simd (V: xsimd batches and the scalar
///        tail of the lane-generic GSPO rows). Only names visible at both include sites are used:
///        sel, none_set, bor, scalar_of and the lane's compares (as lane_formulas.ipp).
///
/// Truncate: the bound that binds (c_min <= c_max, validated, so the two selects never both
/// take; the op tests c_min first, the same value); mask (IcePop): 0 outside [c_min, c_max]. lo /
/// hi: that bound is set (the op's test c > 0: a bound <= 0 is open). A NaN rho fails every
/// compare and stays NaN, as in the op.
template <class V>
GRPO_FORCEINLINE V tis_bound(const V& rho, scalar_of<V> c_min, scalar_of<V> c_max, bool lo,
                             bool hi, bool mask_mode) noexcept {
  const V cmin(c_min), cmax(c_max);
  if (!mask_mode) {
    V r = rho;
    if (hi) r = sel<V>(rho > cmax, cmax, r);
    if (lo) r = sel<V>(rho < cmin, cmin, r);
    return r;
  }
  auto out = none_set<V>();
  if (lo) out = bor(out, rho < cmin);
  if (hi) out = bor(out, rho > cmax);
  return sel<V>(out, V(scalar_of<V>(0)), rho);
}

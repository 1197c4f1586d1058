// SPDX-License-Identifier: Apache-2.0
/// @file quantile.hpp
/// @brief The top-entropy threshold's quantile (torch.quantile, interpolation='linear', as TRL's
///        get_high_entropy_mask) of a sample, in O(n) and with the bits of the sort:
///         - quantile_select: on a gathered sample (the general engine's pass 1);
///         - quantile_radix: over the sample where it lies (the token rows' entropy and mask
///           rows), without gathering it: a 16-bit radix histogram of the order keys (pass 1,
///           threaded over row ranges), then only the values of the bins that hold the two
///           order statistics are gathered and selected (pass 2).
///        Both take the same two order statistics v_(lo), v_(hi) and the same double formula.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/isa.hpp>  // GRPO_ISA_ABI
#include <grpo/core/parallel.hpp>
#include <grpo/loss/options.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

namespace grpo::detail {

/// (Bodies change with the compile flags (vectorised loops): the ABI namespace, isa.hpp.)
inline namespace GRPO_ISA_ABI {

/// Linear-interpolation quantile of a non-empty sample (torch.quantile, interpolation='linear'),
/// by selection in O(n) instead of a sort: with pos = q (n - 1), lo = floor(pos),
/// hi = min(lo + 1, n - 1) and v_(k) the k-th order statistic,
///   Q = v_(lo) + (pos - lo) (v_(hi) - v_(lo)),
/// v_(lo) by std::nth_element (everything after it is >= it) and v_(hi) the minimum of that upper
/// part: the same two order statistics and the same double formula as sorting, so the same bits
/// (the order statistics are values of the sample, unique but for the sign of a zero, which Q
/// never carries: a zero Q is +0 whichever of -0 / +0 is selected). V: float or double (a float
/// sample converts exactly); the sample is reordered. No NaN allowed (the callers check).
/// @pre !v.empty(), 0 <= q <= 1, no NaN in v.
template <class V>
double quantile_select(std::vector<V>& v, double q) {
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const auto hi = std::min(lo + 1, v.size() - 1);
  const auto nth = v.begin() + static_cast<std::ptrdiff_t>(lo);
  std::nth_element(v.begin(), nth, v.end());
  const double a = static_cast<double>(*nth);
  const double b = hi == lo ? a : static_cast<double>(*std::min_element(nth + 1, v.end()));
  return a + (pos - static_cast<double>(lo)) * (b - a);
}

/// quantile_select on a copy (the historical entry point).
inline double quantile_linear(std::vector<double> v, double q) {
  return quantile_select(v, q);
}

/// The top-entropy threshold of a call from its valid entropies gathered per row range (parts, by
/// range start): o.entropy_threshold when given, else quantile_select at 1 - rho of the ranges
/// joined in row order (the parts are consumed); -inf when no token is valid (every token kept).
template <class V>
double entropy_threshold_of(std::vector<std::vector<V>>& parts, const loss_options& o) {
  if (o.entropy_threshold) return *o.entropy_threshold;
  std::size_t n = 0;
  for (const auto& p : parts) n += p.size();
  if (n == 0) return -std::numeric_limits<double>::infinity();
  std::vector<V>& all = parts[0];
  all.reserve(n);
  for (std::size_t k = 1; k < parts.size(); ++k) {
    all.insert(all.end(), parts[k].begin(), parts[k].end());
    std::vector<V>().swap(parts[k]);
  }
  const double thr = quantile_select(all, 1.0 - o.top_entropy_quantile);
  std::vector<V>().swap(all);
  return thr;
}

/// The order key of a float / double: an unsigned integer whose order is the IEEE order of the
/// non-NaN values (-inf < ... < -0 < +0 < ... < +inf; the sign bit set for the positive values,
/// every bit flipped for the negative ones). Its top 16 bits are the radix bin.
template <class V>
struct order_key {
  static_assert(std::is_same_v<V, float> || std::is_same_v<V, double>);
  using U = std::conditional_t<sizeof(V) == 4, std::uint32_t, std::uint64_t>;
  static constexpr int kBits = 8 * static_cast<int>(sizeof(V));
  static constexpr int kBinBits = 16;
  static constexpr std::size_t kBins = std::size_t{1} << kBinBits;
  static constexpr U of(V v) noexcept {
    const U u = std::bit_cast<U>(v);
    return u ^ (static_cast<U>(U(0) - (u >> (kBits - 1))) | (U(1) << (kBits - 1)));
  }
  static constexpr std::size_t bin(V v) noexcept {
    return static_cast<std::size_t>(of(v) >> (kBits - kBinBits));
  }
  /// The bins that hold only infinities and NaNs: [0, neg_end) and [pos_begin, kBins).
  static constexpr std::size_t neg_end = bin(-std::numeric_limits<V>::infinity()) + 1;
  static constexpr std::size_t pos_begin = bin(std::numeric_limits<V>::infinity());
};

/// The result of quantile_radix: the quantile (when n > 0 and finite), the sample size, and
/// whether a valid value was not finite (then value is NaN: the caller names the error).
struct radix_quantile {
  double value = std::numeric_limits<double>::quiet_NaN();
  std::size_t n = 0;
  bool nonfinite = false;
};

/// Pass 1 of quantile_radix over one span: h[bin] += 1 for the valid values (valid: m[t] != 0);
/// the bins of a block computed first (vectorised), an invalid value into the extra bin kBins.
/// X: the sample's storage type (converted to V exactly: float to float, anything else to double).
template <class V, class X, class Mk>
void radix_count_span(std::uint32_t* h, const X* x, const Mk* m, index_t n) noexcept {
  using K = order_key<V>;
  constexpr index_t kBlock = 64;
  std::uint32_t bins[kBlock];
  for (index_t t0 = 0; t0 < n; t0 += kBlock) {
    const index_t len = std::min(kBlock, n - t0);
    if (len == kBlock) {
      for (index_t j = 0; j < kBlock; ++j)
        bins[j] = m[t0 + j] != Mk(0) ? static_cast<std::uint32_t>(K::bin(static_cast<V>(x[t0 + j])))
                                     : static_cast<std::uint32_t>(K::kBins);
    } else {
      for (index_t j = 0; j < len; ++j)
        bins[j] = m[t0 + j] != Mk(0) ? static_cast<std::uint32_t>(K::bin(static_cast<V>(x[t0 + j])))
                                     : static_cast<std::uint32_t>(K::kBins);
    }
    for (index_t j = 0; j < len; ++j) ++h[bins[j]];
  }
}

/// Pass 2 of quantile_radix over one span: appends the valid values whose order key lies in
/// [klo, khi] (a block of 16 tested at once, vectorised; a block with one is then walked).
template <class V, class X, class Mk>
void radix_collect_span(std::vector<V>& out, const X* x, const Mk* m, index_t n,
                        typename order_key<V>::U klo, typename order_key<V>::U khi) {
  using K = order_key<V>;
  constexpr index_t kBlock = 16;
  auto in = [&](index_t t) {
    const auto k = K::of(static_cast<V>(x[t]));
    return static_cast<unsigned>(m[t] != Mk(0)) & static_cast<unsigned>(k >= klo) &
           static_cast<unsigned>(k <= khi);
  };
  index_t t0 = 0;
  for (; t0 + kBlock <= n; t0 += kBlock) {
    unsigned any = 0;
    for (index_t j = 0; j < kBlock; ++j) any |= in(t0 + j);
    if (any == 0) continue;
    for (index_t j = 0; j < kBlock; ++j)
      if (in(t0 + j)) out.push_back(static_cast<V>(x[t0 + j]));
  }
  for (; t0 < n; ++t0)
    if (in(t0)) out.push_back(static_cast<V>(x[t0]));
}

/// quantile_select's value (the same bits) of the sample that each(b, e, f) visits, without
/// gathering it: each calls f(x, m, n) for the spans of the rows [b, e) (any order): the values
/// V(x[t]), t in [0, n), with their mask m (a value is in the sample iff m[t] != 0). row_len bounds
/// one span (the 32-bit counters are flushed to 64 bits before 2^30 values). Threaded over row
/// ranges by par::for_each_range(rows, ..., lo); thread-count independent (a value's rank does not
/// depend on the split). Pass 1: the 2^16-bin histogram of the order keys' top bits per range,
/// summed; a value in an infinity / NaN bin sets nonfinite (nothing else is done). Pass 2: the
/// values of the bins [b_lo, b_hi] that hold v_(lo) and v_(hi), joined; quantile_select's
/// nth_element + min over them at the ranks shifted by the count below b_lo.
/// @pre 0 <= q <= 1.
template <class V, class Each>
radix_quantile quantile_radix(index_t rows, const Each& each, double q, index_t row_len,
                              const par::loop_options& lo) {
  using K = order_key<V>;
  using U = typename K::U;
  radix_quantile res;
  std::vector<std::vector<std::uint64_t>> hs(static_cast<std::size_t>(rows));  // by range start
  const index_t step = std::max<index_t>(1, (index_t{1} << 30) / std::max<index_t>(row_len, 1));
  par::for_each_range(
      rows,
      [&](index_t b, index_t e) {
        std::vector<std::uint64_t>& tot = hs[static_cast<std::size_t>(b)];
        tot.assign(K::kBins, 0);
        std::vector<std::uint32_t> h(K::kBins + 1, 0);  // (+1: the invalid values' bin)
        for (index_t s = b; s < e; s += step) {
          each(s, std::min(e, s + step), [&h](const auto* x, const auto* m, index_t n) {
            radix_count_span<V>(h.data(), x, m, n);
          });
          for (std::size_t k = 0; k < K::kBins; ++k) {
            tot[k] += h[k];
            h[k] = 0;
          }
        }
      },
      lo);
  std::vector<std::uint64_t> H(K::kBins, 0);
  for (auto& t : hs) {
    if (t.empty()) continue;
    for (std::size_t k = 0; k < K::kBins; ++k) H[k] += t[k];
    std::vector<std::uint64_t>().swap(t);
  }
  for (std::size_t k = 0; k < K::kBins; ++k) {
    res.n += static_cast<std::size_t>(H[k]);
    if (H[k] != 0 && (k < K::neg_end || k >= K::pos_begin)) res.nonfinite = true;
  }
  if (res.n == 0 || res.nonfinite) return res;
  const double pos = q * static_cast<double>(res.n - 1);
  const auto rlo = static_cast<std::size_t>(std::floor(pos));
  const auto rhi = std::min(rlo + 1, res.n - 1);
  std::size_t blo = 0, below = 0, cum = 0, bhi = 0;
  for (std::size_t k = 0; k < K::kBins; ++k) {  // the bins of ranks rlo and rhi
    if (cum + H[k] > rlo && cum <= rlo) {
      blo = k;
      below = cum;
    }
    if (cum + H[k] > rhi) {
      bhi = k;
      break;
    }
    cum += H[k];
  }
  constexpr int kShift = K::kBits - K::kBinBits;
  const U klo = static_cast<U>(blo) << kShift;
  const U khi = static_cast<U>((static_cast<U>(bhi) << kShift) | ((U(1) << kShift) - 1));
  std::vector<std::vector<V>> parts(static_cast<std::size_t>(rows));  // by range start
  par::for_each_range(
      rows,
      [&](index_t b, index_t e) {
        std::vector<V>& c = parts[static_cast<std::size_t>(b)];
        each(b, e, [&c, klo, khi](const auto* x, const auto* m, index_t n) {
          radix_collect_span<V>(c, x, m, n, klo, khi);
        });
      },
      lo);
  std::vector<V> cand;
  cand.reserve(static_cast<std::size_t>(cum + H[bhi] - below));
  for (auto& p : parts) {
    cand.insert(cand.end(), p.begin(), p.end());
    std::vector<V>().swap(p);
  }
  const auto nth = cand.begin() + static_cast<std::ptrdiff_t>(rlo - below);
  std::nth_element(cand.begin(), nth, cand.end());
  const double a = static_cast<double>(*nth);
  const double bv = rhi == rlo ? a : static_cast<double>(*std::min_element(nth + 1, cand.end()));
  res.value = a + (pos - static_cast<double>(rlo)) * (bv - a);
  return res;
}

/// quantile_radix over a gathered sample, every value valid (one range; for the tests).
template <class V>
double quantile_radix_of(const std::vector<V>& v, double q) {
  const std::vector<unsigned char> valid(v.size(), 1);
  auto each = [&](index_t, index_t, auto&& f) {
    f(v.data(), valid.data(), static_cast<index_t>(v.size()));
  };
  return quantile_radix<V>(1, each, q, static_cast<index_t>(v.size()), par::loop_options{1}).value;
}

}  // namespace GRPO_ISA_ABI
}  // namespace grpo::detail

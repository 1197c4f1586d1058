// SPDX-License-Identifier: Apache-2.0
/// @file moments.hpp
/// @brief Input side of the advantage estimators: host views of the arguments, reward bounds, row
///        lengths, and the two-pass NaN-aware group / batch moments (one all-reduce per pass) with
///        the advantage_stats they fill.
#pragma once

#include <grpo/advantage/options.hpp>
#include <grpo/collective.hpp>
#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/half.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/core/tensor_traits.hpp>
#include <grpo/ops/advantage.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

namespace grpo::detail {

/// True for anything grpo::as_view accepts without a dtype/rank argument.
template <class X>
concept viewable = tensor<X> || requires {
  std::remove_cvref_t<X>::rank_value;
  typename std::remove_cvref_t<X>::element_type;
};

template <class T>
double load(T x) noexcept {
  return static_cast<double>(widen(x));
}

/// The rank-`R` view of x, checked to live in host memory.
template <std::size_t R, class X>
auto host_view(X&& x, const char* what) {
  auto v = as_view(std::forward<X>(x));
  static_assert(decltype(v)::rank() == R, "grpo advantages: argument has the wrong rank");
  expect_host(v, what);
  return v;
}

/// Number of unmasked tokens of row i (nonzero mask entries).
template <class M>
double row_length(const M& m, index_t i) {
  double n = 0.0;
  for (index_t t = 0; t < m.extent(1); ++t) {
    const double x = static_cast<double>(m(i, t));
    expect_mask_entry(x, "mask", i, t);  // the loss's mask rule (NaN / -1 are not tokens)
    n += x != 0 ? 1.0 : 0.0;
  }
  return n;
}

/// Group moments of one column of per-row values (NaN = unscorable), global over ranks.
/// Pass 1: count, nan count, sum, length sums (one sum all-reduce) and min/max (one max
/// all-reduce). Pass 2: centred sums of squares about the now-known means (one sum all-reduce).
/// Why two passes: the one-pass form var = (sum x^2 - (sum x)^2 / n) / (n - 1) cancels
/// catastrophically when |mean| >> std (rewards near a constant), and a tied group would show a
/// spurious variance. Centring about the global mean costs one more all-reduce and is exact for
/// exact ties whose sum is exact.
struct group_moments {
  index_t G = 0;
  /// Per group: scorable count, NaN count, sum R, sum |o| R and sum |o| (OPO), max, min, and
  /// the centred sum of squares sum (R - mean_g)^2.
  std::vector<double> count, nan_count, sum, len_r, len, mx, mn, ss;
  /// Whole batch: scorable rows, NaN rows, sum R, centred sum of squares about the batch mean,
  /// number of nonzero rewards (GPG alpha) and all rows (scorable or not).
  double batch_count = 0, batch_nan = 0, batch_sum = 0, batch_ss = 0, nonzero = 0, rows = 0;
  double mean(index_t g) const {
    const auto k = static_cast<std::size_t>(g);
    return count[k] > 0 ? sum[k] / count[k] : std::numeric_limits<double>::quiet_NaN();
  }
  double batch_mean() const {
    return batch_count > 0 ? batch_sum / batch_count : std::numeric_limits<double>::quiet_NaN();
  }
};

template <class C>
group_moments compute_moments(const std::vector<double>& r, const std::vector<index_t>& gid,
                              index_t G, const std::vector<double>* len, const C& comm) {
  group_moments m;
  m.G = G;
  const auto g_n = static_cast<std::size_t>(G);
  // Pass 1 (sum): 5 per group + 4 batch scalars in one buffer, laid out as
  // [count | nan_count | sum | sum len*R | sum len] (G each) then [batch sum, batch NaN, nonzero,
  // rows]. Extremes travel in a second buffer reduced with max: [max | -min] (G each), so one
  // max-reduce gives both; empty groups stay at -inf / +inf.
  std::vector<double> s1(5 * g_n + 4, 0.0);
  std::vector<double> ext(2 * g_n, -std::numeric_limits<double>::infinity());  // max, -min
  for (std::size_t i = 0; i < r.size(); ++i) {
    const auto g = static_cast<std::size_t>(gid[i]);
    s1[5 * g_n + 3] += 1.0;  // rows
    if (std::isnan(r[i])) {
      s1[g_n + g] += 1.0;
      s1[5 * g_n + 1] += 1.0;
      continue;
    }
    const double li = len ? (*len)[i] : 0.0;
    s1[g] += 1.0;
    s1[2 * g_n + g] += r[i];
    s1[3 * g_n + g] += li * r[i];
    s1[4 * g_n + g] += li;
    s1[5 * g_n + 0] += r[i];
    s1[5 * g_n + 2] += r[i] != 0.0 ? 1.0 : 0.0;
    ext[g] = std::max(ext[g], r[i]);
    ext[g_n + g] = std::max(ext[g_n + g], -r[i]);
  }
  all_reduce_sum(comm, std::span<double>(s1));
  all_reduce_max(comm, std::span<double>(ext));
  auto slice = [&](std::size_t k) {
    return std::vector<double>(s1.begin() + static_cast<std::ptrdiff_t>(k * g_n),
                               s1.begin() + static_cast<std::ptrdiff_t>((k + 1) * g_n));
  };
  m.count = slice(0), m.nan_count = slice(1), m.sum = slice(2), m.len_r = slice(3),
  m.len = slice(4);
  m.batch_sum = s1[5 * g_n];
  m.batch_nan = s1[5 * g_n + 1];
  m.nonzero = s1[5 * g_n + 2];
  m.rows = s1[5 * g_n + 3];
  m.mx.assign(ext.begin(), ext.begin() + static_cast<std::ptrdiff_t>(g_n));
  m.mn.resize(g_n);
  for (std::size_t g = 0; g < g_n; ++g) m.mn[g] = -ext[g_n + g];
  for (std::size_t g = 0; g < g_n; ++g) m.batch_count += m.count[g];
  // Pass 2 (sum): centred sums of squares about the group means and the batch mean.
  std::vector<double> s2(g_n + 1, 0.0);
  const double bm = m.batch_mean();
  for (std::size_t i = 0; i < r.size(); ++i) {
    if (std::isnan(r[i])) continue;
    const auto g = static_cast<std::size_t>(gid[i]);
    const double d = r[i] - m.sum[g] / m.count[g];
    s2[g] += d * d;
    s2[g_n] += (r[i] - bm) * (r[i] - bm);
  }
  all_reduce_sum(comm, std::span<double>(s2));
  m.ss.assign(s2.begin(), s2.begin() + static_cast<std::ptrdiff_t>(g_n));
  m.batch_ss = s2[g_n];
  return m;
}

/// Standard deviation from a centred sum of squares; NaN when undefined (n <= 1 Bessel, n = 0),
/// which is what TRL's nanstd reports and what stats.std shows for singleton / empty groups.
inline double std_of(double ss, double n, bool bessel) {
  if (n < (bessel ? 2.0 : 1.0)) return std::numeric_limits<double>::quiet_NaN();
  return std::sqrt(ops::variance_from_centered(ss, n, bessel));
}

/// Fill the reporting part of advantage_stats from group moments.
inline void fill_stats(advantage_stats& st, const group_moments& m, const advantage_options& o) {
  const auto g_n = static_cast<std::size_t>(m.G);
  st.num_groups = m.G;
  st.count = m.count;
  st.nan_count = m.nan_count;
  st.min = m.mn;
  st.max = m.mx;
  st.mean.resize(g_n);
  st.std.resize(g_n);
  st.zero_var.assign(g_n, 0);
  st.keep_verl.assign(g_n, 1);
  st.keep_openrlhf.assign(g_n, 0);
  st.keep_tol.assign(g_n, 1);
  st.num_zero_var = st.num_singleton = st.num_empty = 0;
  index_t nonempty = 0;
  for (std::size_t g = 0; g < g_n; ++g) {
    const double n = m.count[g];
    st.mean[g] = m.mean(static_cast<index_t>(g));
    st.std[g] = std_of(m.ss[g], n, o.bessel);
    if (n == 0) ++st.num_empty;
    if (n == 1) ++st.num_singleton;
    if (n >= 1) ++nonempty;
    if (n >= 2 && m.mx[g] - m.mn[g] <= o.zero_var_tol) {
      st.zero_var[g] = 1;
      ++st.num_zero_var;
      if (o.zero_variance == zero_variance_policy::report) st.keep_tol[g] = 0;
    }
    if (n == 0) st.keep_tol[g] = 0;
    // verl DAPO filter_groups: drop iff more than one member and np.std (population) == 0.
    if (n > 1 && m.ss[g] == 0.0) st.keep_verl[g] = 0;
    // OpenRLHF dynamic_filtering_range: keep iff lo < mean(score) < hi (exclusive).
    st.keep_openrlhf[g] = (st.mean[g] > o.keep_lo && st.mean[g] < o.keep_hi) ? 1 : 0;
  }
  st.frac_zero_std = nonempty > 0 ? static_cast<double>(st.num_zero_var) / nonempty : 0.0;
  st.batch_count = m.batch_count;
  st.batch_nan = m.batch_nan;
  st.batch_mean = m.batch_mean();
  st.batch_std = std_of(m.batch_ss, m.batch_count, o.bessel);
}

/// Largest |reward| accepted: the centred squares (2 R)^2 of up to ~4e7 rows then sum to a finite
/// double (1e308 gave NaN advantages, 1e200 all zeros). The float32 emulation of verl squares in
/// float: there 1e15.
inline constexpr double max_abs_reward = 1e150;
inline constexpr double max_abs_reward_f32 = 1e15;
/// Smallest nonzero z-score eps accepted (advantage_options::eps). A singleton scored against the
/// batch (batch_std, unit baseline) or any group whose spread is 0 divides |R - baseline| <=
/// 2 max_abs_reward by a scale that may be eps alone: eps >= 1e-150 keeps that quotient <= 2e300
/// (finite), where a subnormal eps (1e-318) made finite rewards give +-inf. eps = 0 stays allowed
/// (a zero scale gives advantage 0, ops::zscore).
inline constexpr double min_nonzero_eps = 1e-150;

}  // namespace grpo::detail

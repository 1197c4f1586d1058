// SPDX-License-Identifier: Apache-2.0
/// @file advantage.hpp
/// @brief Group advantage estimators of the GRPO family (GRPO, Dr. GRPO, batch-std, RLOO,
///        REINFORCE++(-baseline), OPO, GPG, pass@k, multi-reward GDPO/TRL) with NaN-aware group
///        statistics, zero-variance / singleton policies, dynamic-sampling keep masks and
///        data-parallel sharding through a grpo::collective.
///
/// Entry points (all CPU loops over strided_view; formulas live in <grpo/ops/advantage.hpp>):
///
///   compute_advantages(rewards[B], groups, out[B], opts = {}, comm = {})          ->
///   advantage_stats compute_advantages(rewards[B], groups, mask[B,T], out[B], opts = {}, comm =
///   {}) (needs the mask:
///                                                     reinforce_pp_baseline, opo)
///   compute_multi_reward_advantages(rewards[B,K], weights[K], groups, out[B], opts, comm)
///   combine_rewards(rewards[B,K], weights[K], out[B])          TRL nansum, all-NaN row -> NaN
///   compute_reinforce_pp_advantages(token_rewards[B,T], mask[B,T], gamma, adv[B,T], ret[B,T], ...)
///   masked_whiten(values[B,T], mask[B,T], out[B,T], whiten_options, comm)      -> whiten_stats
///   broadcast_to_tokens(seq_adv[B], mask[B,T], out[B,T])       verl: A_it = A_i * m_it
///
/// Groups (group_spec): a fixed group size (contiguous rows, TRL/OpenRLHF layout) or explicit
/// integer ids (verl `uid`: any values, any order, variable sizes). Statistics are accumulated in
/// double with a two-pass scheme (sums and counts first, then centred sums of squares), each pass
/// one all-reduce, so a batch sharded over ranks gives the single-process result to ~1e-15.
///
/// Sharding contract: every rank passes its LOCAL rows with GLOBAL group ids. Then the ids must be
/// dense in [0, G) and G (the global number of groups) must be given: group_spec::ids(ids, G) or
/// group_spec::fixed(k, first_global_row, G). Arbitrary (sparse, negative) ids are densified only
/// in a single process, where G may be omitted. All ranks call with the same options.
///
/// NaN rewards mean "unscorable" (TRL: a reward function returned None): they are excluded from
/// every statistic, counted in nan_count, and get advantage 0. +-Inf rewards are rejected.
#pragma once

#include <grpo/collective.hpp>
#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/half.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/core/tensor_traits.hpp>
#include <grpo/ops/advantage.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace grpo {

using ops::eps_placement;

/// Which baseline / scaling turns per-sequence rewards into advantages.
enum class adv_estimator : unsigned char {
  grpo,                   ///< (R - mean_g) / scale_g (scale_by_std = false: Dr. GRPO)
  dr_grpo,                ///< R - mean_g
  batch_std,              ///< (R - mean_g) / scale_batch (TRL scale_rewards="batch", Lite-PPO)
  rloo,                   ///< n/(n-1) (R - mean_g): leave-one-out baseline
  reinforce_pp_baseline,  ///< R - mean_g, then token-weighted whitening over the batch (mask)
  opo,                    ///< R - sum |o| R / sum |o| (length-weighted baseline; mask)
  gpg,                    ///< alpha (R - mean_g) / f_norm
  passk,                  ///< arg-max of group: (R_max - R_2nd) / scale_g, others 0
};

/// What a group with exactly one scorable member gets.
enum class singleton_policy : unsigned char {
  zero,           ///< A = 0 (TRL: nanstd is NaN, nan_to_num -> 0; verl rloo_vectorized)
  unit_baseline,  ///< baseline 0, std 1 (verl grpo: A = R / (1 + eps); verl rloo/opo/gpg: R)
  error,          ///< throw [grpo.bad_value] (OpenRLHF asserts n > 1; verl grpo_passk raises)
};

/// What a zero-variance group (max - min <= zero_var_tol over scorable members, n >= 2) gets.
enum class zero_variance_policy : unsigned char {
  zero,    ///< A = 0 exactly (no amplified fp residue: NeMo-RL #4161)
  keep,    ///< the estimator's own value (what the peers compute; residue / eps may survive)
  report,  ///< like keep, and the group is also cleared in stats.keep_tol (dynamic sampling)
};

/// How several reward functions are combined (TRL multi_objective_aggregation).
enum class multi_reward_mode : unsigned char {
  sum_then_normalize,  ///< R = nansum_k w_k R_k, then the configured estimator
  normalize_then_sum,  ///< GDPO: per-reward group z-score, weighted nansum, then a batch z-score
};

/// TRL's scale_rewards.
enum class trl_scale : unsigned char { group, batch, none };

/// Token whitening (verl masked_whiten, OpenRLHF global token whitening):
/// x' = (x - mu) / scale, mu = sum m x / (N + mean_eps), var = sum m (x - mu)^2 / (N + mean_eps)
/// (times N / (N - 1) with bessel), scale = z_scale(var, eps, place).
struct whiten_options {
  double eps = 1e-8;                                 ///< verl rsqrt(var + 1e-8)
  eps_placement place = eps_placement::inside_sqrt;  ///< OpenRLHF: floor_var (max(var, 1e-8))
  bool bessel = true;                                ///< verl true, OpenRLHF false
  double mean_eps = 1e-8;  ///< verl masked_mean divides by mask.sum() + 1e-8; OpenRLHF 0
  /// x' = x - mu only (OpenRLHF --algo.advantage.no_std_norm: centring kept, no division).
  bool center_only = false;
};

/// Every option of the estimators. Start from a named constructor to reproduce a peer exactly.
struct advantage_options {
  adv_estimator estimator = adv_estimator::grpo;
  double eps = 1e-6;  ///< z-score epsilon
  eps_placement eps_place = eps_placement::add_to_std;
  bool bessel = true;        ///< std with n - 1 (all peers) or n
  bool scale_by_std = true;  ///< grpo / passk: divide by the group scale
  singleton_policy singleton = singleton_policy::zero;
  zero_variance_policy zero_variance = zero_variance_policy::zero;
  double zero_var_tol = 0.0;  ///< group is zero-variance iff max - min <= tol (n >= 2)
  /// verl grpo_vectorized: group mean/std computed in float32 exactly as verl's group_mean_std
  /// (sequential float sums, float divide), then (R - mean) / (float(std + eps)). Single process.
  bool emulate_verl_float32 = false;
  double var_floor = 0.0;  ///< float32 emulation: std = sqrt(max(var, var_floor)) (verl: 0.0)
  double gpg_alpha = 0.0;  ///< <= 0: automatic alpha = B / max(#nonzero R, 1) over the batch
  double gpg_f_norm = 1.0;
  whiten_options whiten{};  ///< reinforce_pp_baseline
  multi_reward_mode multi = multi_reward_mode::sum_then_normalize;
  double keep_lo = 0.0, keep_hi = 1.0;  ///< OpenRLHF dynamic filtering: keep iff lo < mean < hi

  /// TRL GRPOTrainer (scale_rewards group: eps 1e-4 on std, NaN-aware Bessel std; batch: group
  /// mean, batch std; none: R - mean). Singletons -> 0. `multi` selects
  /// multi_objective_aggregation for compute_multi_reward_advantages.
  static advantage_options trl(trl_scale s = trl_scale::group,
                               multi_reward_mode multi = multi_reward_mode::sum_then_normalize) {
    advantage_options o;
    o.estimator = s == trl_scale::group   ? adv_estimator::grpo
                  : s == trl_scale::batch ? adv_estimator::batch_std
                                          : adv_estimator::dr_grpo;
    o.eps = 1e-4;
    o.singleton = singleton_policy::zero;
    o.zero_variance = zero_variance_policy::keep;
    o.multi = multi;
    return o;
  }
  /// verl compute_grpo_outcome_advantage (eps 1e-6 on std, singleton R / (1 + eps)).
  static advantage_options verl_grpo(bool norm_adv_by_std_in_grpo = true) {
    advantage_options o;
    o.estimator = adv_estimator::grpo;
    o.scale_by_std = norm_adv_by_std_in_grpo;
    o.eps = 1e-6;
    o.singleton = singleton_policy::unit_baseline;
    o.zero_variance = zero_variance_policy::keep;
    return o;
  }
  /// verl compute_grpo_vectorized_outcome_advantage (float32 group_mean_std, var floor 0.0).
  static advantage_options verl_grpo_vectorized(bool norm_adv_by_std_in_grpo = true) {
    advantage_options o = verl_grpo(norm_adv_by_std_in_grpo);
    o.emulate_verl_float32 = true;
    o.var_floor = 0.0;
    return o;
  }
  /// verl compute_rloo_outcome_advantage (singleton keeps its raw R).
  static advantage_options verl_rloo() {
    advantage_options o;
    o.estimator = adv_estimator::rloo;
    o.singleton = singleton_policy::unit_baseline;
    o.zero_variance = zero_variance_policy::keep;
    return o;
  }
  /// verl compute_rloo_vectorized_outcome_advantage (singleton -> 0).
  static advantage_options verl_rloo_vectorized() {
    advantage_options o = verl_rloo();
    o.singleton = singleton_policy::zero;
    return o;
  }
  /// verl compute_reinforce_plus_plus_baseline_outcome_advantage (needs the mask).
  static advantage_options verl_reinforce_pp_baseline() {
    advantage_options o;
    o.estimator = adv_estimator::reinforce_pp_baseline;
    o.singleton = singleton_policy::unit_baseline;
    o.zero_variance = zero_variance_policy::keep;
    return o;
  }
  /// verl compute_opo_outcome_advantage (needs the mask for the lengths).
  static advantage_options verl_opo() {
    advantage_options o;
    o.estimator = adv_estimator::opo;
    o.singleton = singleton_policy::unit_baseline;
    o.zero_variance = zero_variance_policy::keep;
    return o;
  }
  /// verl compute_gpg_outcome_advantage (alpha = B / max(#nonzero, 1), f_norm 1).
  static advantage_options verl_gpg() {
    advantage_options o;
    o.estimator = adv_estimator::gpg;
    o.singleton = singleton_policy::unit_baseline;
    o.zero_variance = zero_variance_policy::keep;
    return o;
  }
  /// verl compute_grpo_passk_outcome_advantage (groups need >= 2 members).
  static advantage_options verl_grpo_passk(bool norm_adv_by_std_in_grpo = true) {
    advantage_options o;
    o.estimator = adv_estimator::passk;
    o.scale_by_std = norm_adv_by_std_in_grpo;
    o.eps = 1e-6;
    o.singleton = singleton_policy::error;
    o.zero_variance = zero_variance_policy::keep;
    return o;
  }
  /// OpenRLHF group_norm: (R - mean) / (std + 1e-9), groups need n > 1.
  static advantage_options openrlhf_group_norm() {
    advantage_options o;
    o.estimator = adv_estimator::grpo;
    o.eps = 1e-9;
    o.singleton = singleton_policy::error;
    o.zero_variance = zero_variance_policy::keep;
    return o;
  }
  /// OpenRLHF dr_grpo: R - mean.
  static advantage_options openrlhf_dr_grpo() {
    advantage_options o = openrlhf_group_norm();
    o.estimator = adv_estimator::dr_grpo;
    return o;
  }
  /// OpenRLHF rloo: R - (sum - R) / (n - 1).
  static advantage_options openrlhf_rloo() {
    advantage_options o = openrlhf_group_norm();
    o.estimator = adv_estimator::rloo;
    return o;
  }
  /// OpenRLHF reinforce_baseline (outcome reward, gamma 1, no reward clip): R - mean, then global
  /// token whitening with the biased variance and rsqrt(max(var, 1e-8)).
  static advantage_options openrlhf_reinforce_baseline() {
    advantage_options o = openrlhf_group_norm();
    o.estimator = adv_estimator::reinforce_pp_baseline;
    o.whiten = whiten_options{1e-8, eps_placement::floor_var, false, 0.0};
    return o;
  }
};

/// Statistics of masked_whiten (all global over ranks).
struct whiten_stats {
  double mean = 0.0;   ///< token-weighted mean
  double var = 0.0;    ///< variance as used (Bessel per options)
  double count = 0.0;  ///< number of unmasked tokens N
};

/// Everything the estimators learnt about the batch; all per-group vectors are global (reduced
/// over ranks) and indexed by the dense group id.
struct advantage_stats {
  index_t num_groups = 0;
  std::vector<std::int64_t> group_label;    ///< caller's id of dense group g (fixed: g)
  std::vector<index_t> seq_group;           ///< dense group of each local row
  std::vector<double> count;                ///< scorable (non-NaN) members
  std::vector<double> nan_count;            ///< unscorable (NaN) members
  std::vector<double> mean;                 ///< mean of scorable rewards (NaN when count = 0)
  std::vector<double> std;                  ///< std (Bessel per options; NaN when undefined)
  std::vector<double> min, max;             ///< extremes of scorable rewards (+-inf when count = 0)
  std::vector<std::uint8_t> zero_var;       ///< n >= 2 and max - min <= zero_var_tol
  std::vector<std::uint8_t> keep_verl;      ///< verl filter_groups: !(members > 1 && pop std == 0)
  std::vector<std::uint8_t> keep_openrlhf;  ///< OpenRLHF: keep_lo < mean < keep_hi
  std::vector<std::uint8_t> keep_tol;       ///< policy report: !zero_var; otherwise all 1 (n >= 1)
  index_t num_zero_var = 0;                 ///< groups flagged zero_var
  index_t num_singleton = 0;                ///< groups with exactly one scorable member
  index_t num_empty = 0;                    ///< groups with no scorable member
  double frac_zero_std = 0.0;               ///< num_zero_var / groups with >= 1 scorable member
  double batch_count = 0.0;                 ///< scorable rows of the whole batch
  double batch_nan = 0.0;                   ///< unscorable rows of the whole batch
  double batch_mean = 0.0;                  ///< mean of scorable rewards over the batch
  double batch_std = 0.0;  ///< std over the batch (Bessel per options; NaN when undefined)
  whiten_stats whiten{};   ///< reinforce_pp_baseline's token whitening
};

/// How rows are grouped: fixed-size contiguous groups or explicit integer ids.
class group_spec {
 public:
  /// Contiguous groups of `group_size` rows: row i (local) belongs to group
  /// (first_row + i) / group_size. `first_row` is the global index of local row 0 (sharding);
  /// num_groups < 0 means "B / group_size of this process" (single process only; B must divide).
  static group_spec fixed(index_t group_size, index_t first_row = 0, index_t num_groups = -1) {
    group_spec s;
    s.kind_ = kind::fixed;
    s.size_ = group_size;
    s.first_ = first_row;
    s.num_ = num_groups;
    return s;
  }
  /// Explicit ids, one per local row. With num_groups >= 0 the ids must lie in [0, num_groups)
  /// (required when sharded); otherwise any values (densified in ascending id order).
  /// The span must outlive the group_spec.
  static group_spec ids(std::span<const std::int64_t> ids, index_t num_groups = -1) {
    group_spec s;
    s.kind_ = kind::ids;
    s.ids_ = ids;
    s.num_ = num_groups;
    return s;
  }
  /// 32-bit ids (copied).
  static group_spec ids(std::span<const std::int32_t> ids, index_t num_groups = -1) {
    group_spec s;
    s.kind_ = kind::ids;
    s.owned_.assign(ids.begin(), ids.end());
    s.ids_ = std::span<const std::int64_t>(s.owned_);
    s.num_ = num_groups;
    return s;
  }
  group_spec(const group_spec& o)
      : kind_(o.kind_),
        size_(o.size_),
        first_(o.first_),
        num_(o.num_),
        ids_(o.ids_),
        owned_(o.owned_) {
    if (!owned_.empty()) ids_ = std::span<const std::int64_t>(owned_);
  }
  group_spec& operator=(const group_spec& o) {
    if (this != &o) {
      kind_ = o.kind_, size_ = o.size_, first_ = o.first_, num_ = o.num_;
      owned_ = o.owned_;
      ids_ = owned_.empty() ? o.ids_ : std::span<const std::int64_t>(owned_);
    }
    return *this;
  }

  /// Resolve to dense ids in [0, G) for `rows` local rows.
  /// @pre comm_size > 1 requires num_groups >= 0.
  /// @post gid.size() == rows; labels.size() == G.
  void resolve(index_t rows, int comm_size, std::vector<index_t>& gid, index_t& num_groups,
               std::vector<std::int64_t>& labels) const {
    gid.assign(static_cast<std::size_t>(rows), 0);
    if (kind_ == kind::fixed) {
      GRPO_EXPECTS(size_ > 0, bad_option,
                   "group_spec::fixed: group_size must be positive, got " + std::to_string(size_));
      GRPO_EXPECTS(first_ >= 0, bad_option, "group_spec::fixed: first_row must be >= 0");
      if (num_ < 0) {
        GRPO_EXPECTS(comm_size == 1 && first_ == 0, bad_option,
                     "group_spec::fixed: a sharded batch needs first_row and num_groups");
        GRPO_EXPECTS(rows % size_ == 0, shape_mismatch,
                     "group_spec::fixed: batch of " + std::to_string(rows) +
                         " rows is not a multiple of group_size " + std::to_string(size_));
        num_groups = rows / size_;
      } else {
        num_groups = num_;
      }
      for (index_t i = 0; i < rows; ++i) {
        const index_t g = (first_ + i) / size_;
        GRPO_EXPECTS(g < num_groups, out_of_range,
                     "group_spec::fixed: row " + std::to_string(first_ + i) + " falls in group " +
                         std::to_string(g) + " >= num_groups " + std::to_string(num_groups));
        gid[static_cast<std::size_t>(i)] = g;
      }
    } else {
      GRPO_EXPECTS(static_cast<index_t>(ids_.size()) == rows, shape_mismatch,
                   "group ids: " + std::to_string(ids_.size()) + " ids for " +
                       std::to_string(rows) + " rows");
      if (num_ >= 0) {
        num_groups = num_;
        for (index_t i = 0; i < rows; ++i) {
          const std::int64_t v = ids_[static_cast<std::size_t>(i)];
          GRPO_EXPECTS(v >= 0 && v < num_, out_of_range,
                       "group ids: id " + std::to_string(v) + " of row " + std::to_string(i) +
                           " outside [0, num_groups=" + std::to_string(num_) + ")");
          gid[static_cast<std::size_t>(i)] = static_cast<index_t>(v);
        }
      } else {
        GRPO_EXPECTS(comm_size == 1, bad_option,
                     "group ids: a sharded batch needs dense global ids and num_groups");
        std::vector<std::int64_t> sorted(ids_.begin(), ids_.end());
        std::sort(sorted.begin(), sorted.end());
        sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
        num_groups = static_cast<index_t>(sorted.size());
        for (index_t i = 0; i < rows; ++i)
          gid[static_cast<std::size_t>(i)] = static_cast<index_t>(
              std::lower_bound(sorted.begin(), sorted.end(), ids_[static_cast<std::size_t>(i)]) -
              sorted.begin());
        labels = std::move(sorted);
        return;
      }
    }
    labels.resize(static_cast<std::size_t>(num_groups));
    for (index_t g = 0; g < num_groups; ++g) labels[static_cast<std::size_t>(g)] = g;
  }

 private:
  group_spec() = default;
  enum class kind : unsigned char { fixed, ids };
  kind kind_ = kind::fixed;
  index_t size_ = 1, first_ = 0, num_ = -1;
  std::span<const std::int64_t> ids_{};
  std::vector<std::int64_t> owned_{};
};

namespace detail {

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

/// Token-weighted whitening of per-row scalars a_i with weights (token counts) w_i:
/// rows with NaN a_i are skipped. Two passes, each one all-reduce.
template <class C>
whiten_stats whiten_rows(std::vector<double>& a, const std::vector<double>& w,
                         const whiten_options& wo, const C& comm) {
  double s[2] = {0.0, 0.0};  // N, sum w a
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i])) continue;
    s[0] += w[i];
    s[1] += w[i] * a[i];
  }
  all_reduce_sum(comm, std::span<double>(s, 2));
  const double n = s[0];
  GRPO_EXPECTS(n > (wo.bessel ? 1.0 : 0.0), bad_value,
               "masked_whiten: mask has " + std::to_string(static_cast<long long>(n)) +
                   " valid tokens over the batch; whitening needs at least " +
                   (wo.bessel ? "2" : "1"));
  const double mu = s[1] / (n + wo.mean_eps);
  double ss = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!std::isnan(a[i])) ss += w[i] * (a[i] - mu) * (a[i] - mu);
  ss = all_reduce_sum(comm, ss);
  double var = ss / (n + wo.mean_eps);
  if (wo.bessel) var *= n / (n - 1.0);
  const double scale = wo.center_only ? 1.0 : ops::z_scale(var, wo.eps, wo.place);
  for (auto& x : a)
    if (!std::isnan(x)) x = ops::whiten(x, mu, scale);
  return whiten_stats{mu, var, n};
}

/// The options row_advantage_of reads, as a flat block (trivially copyable: the CUDA advantage
/// kernels take it by value, <grpo/cuda/advantage.cuh>).
struct row_advantage_params {
  adv_estimator estimator = adv_estimator::grpo;
  double eps = 1e-6;
  ops::eps_placement place = ops::eps_placement::add_to_std;
  bool bessel = true;
  bool scale_by_std = true;
  singleton_policy singleton = singleton_policy::zero;
  zero_variance_policy zero_variance = zero_variance_policy::zero;
  double zero_var_tol = 0.0;
  double gpg_f_norm = 1.0;
};

/// Copies the fields of advantage_options that the per-row case analysis reads.
/// @pre none. @post every field copied as is.
inline row_advantage_params make_row_advantage_params(const advantage_options& o) noexcept {
  row_advantage_params p;
  p.estimator = o.estimator;
  p.eps = o.eps;
  p.place = o.eps_place;
  p.bessel = o.bessel;
  p.scale_by_std = o.scale_by_std;
  p.singleton = o.singleton;
  p.zero_variance = o.zero_variance;
  p.zero_var_tol = o.zero_var_tol;
  p.gpg_f_norm = o.gpg_f_norm;
  return p;
}

/// Statistics of one row's group (scorable members only) and of the batch. The first five are
/// all that the grpo / dr_grpo / rloo estimators read; the rest default to 0.
struct group_row_stats {
  double n = 0;             ///< scorable members n_g
  double sum = 0;           ///< sum R
  double mx = 0;            ///< max R
  double mn = 0;            ///< min R
  double ss = 0;            ///< sum (R - mean_g)^2 (two-pass, about the group mean)
  double batch_count = 0;   ///< batch_std: scorable rows of the batch
  double batch_ss = 0;      ///< batch_std: centred sum of squares of the batch
  double len = 0;           ///< opo: sum |o|
  double len_r = 0;         ///< opo: sum |o| R
  double alpha = 0;         ///< gpg: alpha
  double passk_second = 0;  ///< passk: largest value below the max (the max on a tie)
  double passk_nmax = 0;    ///< passk: members equal to the max
};

/// The advantage of one scorable row with reward r, given its group / batch statistics: the
/// singleton policy, the zero-variance policy (max - min <= tol), then the estimator. The ONE
/// copy of this case analysis: the CPU path (row_advantage below) and the CUDA group kernel call
/// it.
/// @pre s.n >= 1; singleton_policy::error groups were rejected by the caller.
/// @post finite for finite inputs; 0 where a policy zeroes the group.
GRPO_HOST_DEVICE inline double row_advantage_of(const row_advantage_params& o, double r,
                                                const group_row_stats& s) noexcept {
  const double n = s.n;
  const double mean = s.sum / n;
  if (n == 1.0) {
    // Singleton: error was raised earlier; zero or the unit baseline (mean 0, std 1).
    if (o.singleton == singleton_policy::zero) return 0.0;
    switch (o.estimator) {
      case adv_estimator::grpo:
        return o.scale_by_std ? ops::zscore(r, 0.0, ops::z_scale(1.0, o.eps, o.place)) : r;
      case adv_estimator::batch_std: {
        if (s.batch_count < (o.bessel ? 2.0 : 1.0)) return 0.0;  // TRL: NaN std -> 0
        const double var = ops::variance_from_centered(s.batch_ss, s.batch_count, o.bessel);
        return ops::zscore(r, 0.0, ops::z_scale(var, o.eps, o.place));
      }
      case adv_estimator::gpg:
        return ops::gpg(r, 0.0, s.alpha, o.gpg_f_norm);
      case adv_estimator::passk:
        return 0.0;
      default:
        return r;  // dr_grpo, rloo (verl keeps raw R), opo, reinforce_pp_baseline
    }
  }
  if (s.mx - s.mn <= o.zero_var_tol && o.zero_variance == zero_variance_policy::zero) return 0.0;
  switch (o.estimator) {
    case adv_estimator::grpo: {
      if (!o.scale_by_std) return r - mean;
      const double var = ops::variance_from_centered(s.ss, n, o.bessel);
      return ops::zscore(r, mean, ops::z_scale(var, o.eps, o.place));
    }
    case adv_estimator::dr_grpo:
      return r - mean;
    case adv_estimator::batch_std: {
      // n_g >= 2 here, so the batch has >= 2 scorable rows and its variance is defined.
      const double var = ops::variance_from_centered(s.batch_ss, s.batch_count, o.bessel);
      return ops::zscore(r, mean, ops::z_scale(var, o.eps, o.place));
    }
    case adv_estimator::rloo:
      return ops::rloo(r, mean, n);
    case adv_estimator::reinforce_pp_baseline:
      return r - mean;
    case adv_estimator::opo:
      // All members empty (sum |o| = 0): verl would divide 0/0; we fall back to the plain mean.
      return s.len > 0 ? r - ops::opo_baseline(s.len_r, s.len) : r - mean;
    case adv_estimator::gpg:
      return ops::gpg(r, mean, s.alpha, o.gpg_f_norm);
    case adv_estimator::passk: {
      // Only a unique arg-max gets a non-zero value; with a tie R_max - R_2nd = 0 anyway, so the
      // result does not depend on how a tie would be broken.
      if (r != s.mx || s.passk_nmax != 1.0) return 0.0;
      const double scale =
          o.scale_by_std
              ? ops::z_scale(ops::variance_from_centered(s.ss, n, o.bessel), o.eps, o.place)
              : 1.0;
      return ops::passk(s.mx, s.passk_second, scale);
    }
  }
  return 0.0;
}

/// The advantage of one scorable row with the group / batch statistics known (host front end of
/// row_advantage_of over the group_moments vectors).
inline double row_advantage(double r, std::size_t g, const group_moments& m,
                            const advantage_options& o, double alpha, double passk_second,
                            double passk_nmax) {
  group_row_stats s;
  s.n = m.count[g];
  s.sum = m.sum[g];
  s.mx = m.mx[g];
  s.mn = m.mn[g];
  s.ss = m.ss[g];
  s.batch_count = m.batch_count;
  s.batch_ss = m.batch_ss;
  s.len = m.len[g];
  s.len_r = m.len_r[g];
  s.alpha = alpha;
  s.passk_second = passk_second;
  s.passk_nmax = passk_nmax;
  return row_advantage_of(make_row_advantage_params(o), r, s);
}

/// Largest |reward| accepted: the centred squares (2 R)^2 of up to ~4e7 rows then sum to a finite
/// double (1e308 gave NaN advantages, 1e200 all zeros). The float32 emulation of verl squares in
/// float: there 1e15.
inline constexpr double max_abs_reward = 1e150;
inline constexpr double max_abs_reward_f32 = 1e15;

/// Batch-independent checks of advantage_options, naming the field. [grpo.bad_option]
inline void validate_advantage_options(const advantage_options& o) {
  expect_enum(o.estimator, 8, "advantage_options.estimator");
  expect_enum(o.eps_place, 3, "advantage_options.eps_place");
  expect_enum(o.singleton, 3, "advantage_options.singleton");
  expect_enum(o.zero_variance, 3, "advantage_options.zero_variance");
  expect_enum(o.multi, 2, "advantage_options.multi");
  expect_enum(o.whiten.place, 3, "advantage_options.whiten.place");
  GRPO_EXPECTS(o.eps >= 0 && std::isfinite(o.eps), bad_option,
               "advantage_options.eps must be finite and >= 0, got " + std::to_string(o.eps));
  GRPO_EXPECTS(o.zero_var_tol >= 0 && !std::isnan(o.zero_var_tol), bad_option,
               "advantage_options.zero_var_tol must be >= 0");
  GRPO_EXPECTS(o.gpg_f_norm != 0 && std::isfinite(o.gpg_f_norm), bad_option,
               "advantage_options.gpg_f_norm must be finite and nonzero");
  GRPO_EXPECTS(!std::isnan(o.gpg_alpha) && o.gpg_alpha < std::numeric_limits<double>::infinity(),
               bad_option, "advantage_options.gpg_alpha must be finite (<= 0: automatic)");
  GRPO_EXPECTS(o.var_floor >= 0 && std::isfinite(o.var_floor), bad_option,
               "advantage_options.var_floor must be finite and >= 0");
  GRPO_EXPECTS(!std::isnan(o.keep_lo) && !std::isnan(o.keep_hi), bad_option,
               "advantage_options.keep_lo / keep_hi must not be NaN");
  GRPO_EXPECTS(o.whiten.eps >= 0 && std::isfinite(o.whiten.eps), bad_option,
               "advantage_options.whiten.eps must be finite and >= 0");
  GRPO_EXPECTS(o.whiten.mean_eps >= 0 && std::isfinite(o.whiten.mean_eps), bad_option,
               "advantage_options.whiten.mean_eps must be finite and >= 0");
}

/// Per-row advantages (double, NaN rows -> 0) for the single-reward estimators.
template <class C>
std::vector<double> advantages_core(const std::vector<double>& r, const std::vector<index_t>& gid,
                                    index_t G, const std::vector<double>* len,
                                    const advantage_options& o, const C& comm,
                                    advantage_stats& st) {
  validate_advantage_options(o);
  GRPO_EXPECTS(
      !(o.estimator == adv_estimator::passk && o.singleton == singleton_policy::unit_baseline),
      bad_option, "passk: singleton_policy::unit_baseline is undefined; use zero or error");
  const group_moments m = compute_moments(r, gid, G, len, comm);
  fill_stats(st, m, o);
  const auto g_n = static_cast<std::size_t>(G);
  if (o.singleton == singleton_policy::error)
    for (std::size_t g = 0; g < g_n; ++g)
      GRPO_EXPECTS(m.count[g] != 1.0, bad_value,
                   "advantages: group " + std::to_string(st.group_label[g]) +
                       " has a single scorable member and singleton_policy is error");
  // pass@k needs, per group, how many members equal the max and the largest value below it.
  std::vector<double> nmax, second;
  if (o.estimator == adv_estimator::passk) {
    nmax.assign(g_n, 0.0);
    second.assign(g_n, -std::numeric_limits<double>::infinity());
    for (std::size_t i = 0; i < r.size(); ++i) {
      if (std::isnan(r[i])) continue;
      const auto g = static_cast<std::size_t>(gid[i]);
      if (r[i] == m.mx[g])
        nmax[g] += 1.0;
      else
        second[g] = std::max(second[g], r[i]);
    }
    all_reduce_sum(comm, std::span<double>(nmax));
    all_reduce_max(comm, std::span<double>(second));
    for (std::size_t g = 0; g < g_n; ++g)
      if (nmax[g] > 1.0) second[g] = m.mx[g];
  }
  const double alpha = o.gpg_alpha > 0 ? o.gpg_alpha : ops::gpg_alpha(m.rows, m.nonzero);
  std::vector<double> a(r.size(), 0.0);
  for (std::size_t i = 0; i < r.size(); ++i) {
    if (std::isnan(r[i])) continue;
    const auto g = static_cast<std::size_t>(gid[i]);
    a[i] = row_advantage(r[i], g, m, o, alpha, nmax.empty() ? 0.0 : second[g],
                         nmax.empty() ? 0.0 : nmax[g]);
  }
  if (o.estimator == adv_estimator::reinforce_pp_baseline) {
    // Whitening treats unscorable rows as absent: mark them NaN for whiten_rows, then restore 0.
    for (std::size_t i = 0; i < r.size(); ++i)
      if (std::isnan(r[i])) a[i] = std::numeric_limits<double>::quiet_NaN();
    st.whiten = whiten_rows(a, *len, o.whiten, comm);
    for (auto& x : a)
      if (std::isnan(x)) x = 0.0;
  }
  return a;
}

/// verl group_mean_std in float32 (verl/utils/groupwise.py): float index_add_ in row order,
/// mean = s1 / max(c, 1), var = sum (x - mean)^2 / max(c - 1, 1), std = sqrt(max(var, floor)),
/// singletons mean 0 std 1; then A = (R - mean) / float(std + eps) evaluated in double.
inline void verl_float32_override(const std::vector<double>& r, const std::vector<index_t>& gid,
                                  index_t G, const advantage_options& o,
                                  const std::vector<std::uint8_t>& zero_var,
                                  std::vector<double>& a) {
  const auto g_n = static_cast<std::size_t>(G);
  std::vector<float> cnt(g_n, 0.0f), s1(g_n, 0.0f), vn(g_n, 0.0f);
  for (std::size_t i = 0; i < r.size(); ++i) {
    if (std::isnan(r[i])) continue;
    const auto g = static_cast<std::size_t>(gid[i]);
    cnt[g] += 1.0f;
    s1[g] += static_cast<float>(r[i]);
  }
  std::vector<float> mean(g_n), sd(g_n);
  for (std::size_t g = 0; g < g_n; ++g) mean[g] = s1[g] / std::max(cnt[g], 1.0f);
  for (std::size_t i = 0; i < r.size(); ++i) {
    if (std::isnan(r[i])) continue;
    const auto g = static_cast<std::size_t>(gid[i]);
    const float c = static_cast<float>(r[i]) - mean[g];
    vn[g] += c * c;
  }
  for (std::size_t g = 0; g < g_n; ++g) {
    const float var = vn[g] / std::max(cnt[g] - 1.0f, 1.0f);
    sd[g] = std::sqrt(std::max(var, static_cast<float>(o.var_floor)));
    if (cnt[g] <= 1.0f) mean[g] = 0.0f, sd[g] = 1.0f;
  }
  for (std::size_t i = 0; i < r.size(); ++i) {
    if (std::isnan(r[i])) continue;
    const auto g = static_cast<std::size_t>(gid[i]);
    if (cnt[g] == 1.0f && o.singleton == singleton_policy::zero) continue;  // already 0
    // The zero policy was applied by the double path with the same tolerance flags: keep 0.
    if (zero_var[g] != 0 && o.zero_variance == zero_variance_policy::zero) continue;
    const double scale = static_cast<double>(sd[g] + static_cast<float>(o.eps));
    a[i] = o.scale_by_std ? ops::zscore(r[i], static_cast<double>(mean[g]), scale)
                          : r[i] - static_cast<double>(mean[g]);
  }
}

/// Read a rank-1 reward view into doubles, rejecting +-Inf (NaN = unscorable is allowed).
template <class V>
std::vector<double> load_rewards(const V& v, double bound = max_abs_reward) {
  std::vector<double> r(static_cast<std::size_t>(v.extent(0)));
  for (index_t i = 0; i < v.extent(0); ++i) {
    const double x = load(v(i));
    GRPO_EXPECTS(!std::isinf(x), bad_value,
                 "rewards: infinite value at row " + std::to_string(i) +
                     " (use NaN for an unscorable completion)");
    GRPO_EXPECTS(!(std::abs(x) > bound), bad_value,
                 "rewards: |value| " + std::to_string(x) + " at row " + std::to_string(i) +
                     " exceeds " + std::to_string(bound) +
                     " (its centred square would overflow the variance); rescale the rewards");
    r[static_cast<std::size_t>(i)] = x;
  }
  return r;
}

template <class V>
void store(const V& out, const std::vector<double>& a) {
  using E = typename V::value_type;
  static_assert(!std::is_const_v<typename V::element_type>, "advantages: output must be writable");
  for (index_t i = 0; i < out.extent(0); ++i) out(i) = narrow<E>(a[static_cast<std::size_t>(i)]);
}

template <class Rewards, class Out, class C>
advantage_stats compute_impl(Rewards&& rewards, const group_spec& groups,
                             const std::vector<double>* len, Out&& out, const advantage_options& o,
                             const C& comm) {
  auto rv = host_view<1>(rewards, "rewards");
  auto ov = host_view<1>(out, "advantages (out)");
  const index_t B = rv.extent(0);
  expect_extents(ov, {B}, "advantages (out)");
  expect_distinct_elements(ov, "advantages (out)");
  advantage_stats st;
  index_t G = 0;
  groups.resolve(B, comm.size(), st.seq_group, G, st.group_label);
  validate_advantage_options(o);
  std::vector<double> r =
      load_rewards(rv, o.emulate_verl_float32 ? max_abs_reward_f32 : max_abs_reward);
  std::vector<double> a = advantages_core(r, st.seq_group, G, len, o, comm, st);
  if (o.emulate_verl_float32) {
    GRPO_EXPECTS(o.estimator == adv_estimator::grpo || o.estimator == adv_estimator::dr_grpo,
                 bad_option, "emulate_verl_float32 applies to the grpo / dr_grpo estimators only");
    GRPO_EXPECTS(comm.size() == 1, bad_option,
                 "emulate_verl_float32 reproduces verl's single-process float32 sums; it cannot "
                 "be sharded");
    advantage_options o2 = o;
    if (o.estimator == adv_estimator::dr_grpo) o2.scale_by_std = false;
    verl_float32_override(r, st.seq_group, G, o2, st.zero_var, a);
  }
  store(ov, a);
  return st;
}

}  // namespace detail

/// Per-sequence advantages from per-sequence rewards.
/// @param rewards  [B] rewards (float, double, bf16, f16; NaN = unscorable)
/// @param groups   fixed group size or ids (see group_spec)
/// @param out      [B] advantages (float or double), written for every row (NaN rows -> 0)
/// @param opts     estimator and its options; reinforce_pp_baseline and opo need the mask overload
/// @param comm     data-parallel collective (default: single process)
/// @pre rewards and out are host tensors of the same length; no +-Inf reward.
/// @post out holds the advantages; the returned statistics are global over ranks.
/// Errors: [grpo.shape_mismatch], [grpo.bad_option], [grpo.out_of_range], [grpo.bad_value].
template <class Rewards, class Out, collective C = single_process>
requires detail::viewable<Rewards> && detail::viewable<Out> advantage_stats
compute_advantages(const Rewards& rewards, const group_spec& groups, Out&& out,
                   const advantage_options& opts = {}, const C& comm = {}) {
  GRPO_EXPECTS(opts.estimator != adv_estimator::reinforce_pp_baseline &&
                   opts.estimator != adv_estimator::opo,
               bad_option,
               "compute_advantages: reinforce_pp_baseline and opo need the response mask; call "
               "the overload taking mask[B, T]");
  return detail::compute_impl(rewards, groups, nullptr, std::forward<Out>(out), opts, comm);
}

/// Per-sequence advantages for estimators that need token counts (reinforce_pp_baseline's
/// token-weighted whitening, OPO's length-weighted baseline); the mask is otherwise unused.
/// Nonzero mask entries count as tokens.
/// @param mask [B, T] response mask (any arithmetic type)
/// @pre mask.extent(0) == B.
/// @post as the overload without mask; stats.whiten holds the whitening statistics.
template <class Rewards, class Mask, class Out, collective C = single_process>
requires detail::viewable<Rewards> && detail::viewable<Mask> && detail::viewable<Out>
    advantage_stats compute_advantages(const Rewards& rewards, const group_spec& groups,
                                       const Mask& mask, Out&& out,
                                       const advantage_options& opts = {}, const C& comm = {}) {
  auto mv = detail::host_view<2>(mask, "mask");
  auto rv = detail::host_view<1>(rewards, "rewards");
  GRPO_EXPECTS(mv.extent(0) == rv.extent(0), shape_mismatch,
               "mask: " + std::to_string(mv.extent(0)) + " rows for " +
                   std::to_string(rv.extent(0)) + " rewards");
  std::vector<double> len(static_cast<std::size_t>(mv.extent(0)));
  for (index_t i = 0; i < mv.extent(0); ++i)
    len[static_cast<std::size_t>(i)] = detail::row_length(mv, i);
  return detail::compute_impl(rewards, groups, &len, std::forward<Out>(out), opts, comm);
}

/// TRL reward combination: R_i = sum_k w_k R_ik over non-NaN entries; NaN if every entry is NaN.
/// @param rewards [B, K]; @param weights [K]; @param out [B].
/// @pre weights.size() == K; out has B rows.
template <class Rewards, class Out>
requires detail::viewable<Rewards> && detail::viewable<Out>
void combine_rewards(const Rewards& rewards, std::span<const double> weights, Out&& out) {
  auto rv = detail::host_view<2>(rewards, "rewards_per_func");
  auto ov = detail::host_view<1>(out, "combined rewards (out)");
  const index_t B = rv.extent(0), K = rv.extent(1);
  GRPO_EXPECTS(static_cast<index_t>(weights.size()) == K, shape_mismatch,
               "reward weights: " + std::to_string(weights.size()) + " weights for " +
                   std::to_string(K) + " reward functions");
  expect_extents(ov, {B}, "combined rewards (out)");
  expect_distinct_elements(ov, "combined rewards (out)");
  for (std::size_t k = 0; k < weights.size(); ++k)
    GRPO_EXPECTS(std::isfinite(weights[k]), bad_option,
                 "reward weights: weight " + std::to_string(k) + " is not finite");
  using E = typename decltype(ov)::value_type;
  for (index_t i = 0; i < B; ++i) {
    double s = 0.0;
    bool any = false;
    for (index_t k = 0; k < K; ++k) {
      const double x = detail::load(rv(i, k));
      if (std::isnan(x)) continue;
      s += weights[static_cast<std::size_t>(k)] * x;
      any = true;
    }
    ov(i) = narrow<E>(any ? s : std::numeric_limits<double>::quiet_NaN());
  }
}

/// Advantages from several reward functions (TRL multi_objective_aggregation, GDPO).
/// sum_then_normalize: combine_rewards, then compute_advantages with opts.
/// normalize_then_sum: for each k, z_ik = (R_ik - mean_gk) / z_scale(var_gk) over scorable members
/// (NaN when R_ik is NaN or the group has < 2 scorable members: skipped by the sum, as TRL's
/// nanstd gives NaN), S_i = sum_k w_k z_ik (NaN if all NaN), then the batch z-score
/// A_i = (S_i - mean(S)) / z_scale(var(S)) with the same eps settings; NaN -> 0.
/// normalize_then_sum ignores opts.estimator (TRL applies the group z-score per reward whatever
/// scale_rewards says) but honours eps, eps_place, bessel, zero_variance and zero_var_tol.
/// @pre rewards [B, K], weights [K], out [B].
/// @post stats describe the combined reward (sum_then_normalize) or S (normalize_then_sum; TRL's
///       std_rewards is stats.batch_std).
template <class Rewards, class Out, collective C = single_process>
requires detail::viewable<Rewards> && detail::viewable<Out> advantage_stats
compute_multi_reward_advantages(const Rewards& rewards, std::span<const double> weights,
                                const group_spec& groups, Out&& out,
                                const advantage_options& opts = {}, const C& comm = {}) {
  auto rv = detail::host_view<2>(rewards, "rewards_per_func");
  const index_t B = rv.extent(0), K = rv.extent(1);
  if (opts.multi == multi_reward_mode::sum_then_normalize) {
    std::vector<double> combined(static_cast<std::size_t>(B));
    combine_rewards(rv, weights, combined);
    return compute_advantages(combined, groups, std::forward<Out>(out), opts, comm);
  }
  GRPO_EXPECTS(static_cast<index_t>(weights.size()) == K, shape_mismatch,
               "reward weights: " + std::to_string(weights.size()) + " weights for " +
                   std::to_string(K) + " reward functions");
  auto ov = detail::host_view<1>(out, "advantages (out)");
  expect_extents(ov, {B}, "advantages (out)");
  expect_distinct_elements(ov, "advantages (out)");
  detail::validate_advantage_options(opts);
  for (std::size_t k = 0; k < weights.size(); ++k)
    GRPO_EXPECTS(std::isfinite(weights[k]), bad_option,
                 "reward weights: weight " + std::to_string(k) + " is not finite");
  advantage_stats st;
  index_t G = 0;
  groups.resolve(B, comm.size(), st.seq_group, G, st.group_label);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> S(static_cast<std::size_t>(B), nan), col(static_cast<std::size_t>(B));
  for (index_t k = 0; k < K; ++k) {
    for (index_t i = 0; i < B; ++i) {
      const double x = detail::load(rv(i, k));
      GRPO_EXPECTS(!std::isinf(x), bad_value,
                   "rewards_per_func: infinite value at row " + std::to_string(i));
      GRPO_EXPECTS(!(std::abs(x) > detail::max_abs_reward), bad_value,
                   "rewards_per_func: |value| at row " + std::to_string(i) +
                       " exceeds 1e150 (its centred square would overflow); rescale the rewards");
      col[static_cast<std::size_t>(i)] = x;
    }
    const auto m = detail::compute_moments(col, st.seq_group, G, nullptr, comm);
    for (std::size_t i = 0; i < col.size(); ++i) {
      const auto g = static_cast<std::size_t>(st.seq_group[i]);
      if (std::isnan(col[i]) || m.count[g] < 2.0) continue;
      double z = 0.0;
      if (!(m.mx[g] - m.mn[g] <= opts.zero_var_tol &&
            opts.zero_variance == zero_variance_policy::zero)) {
        const double var = ops::variance_from_centered(m.ss[g], m.count[g], opts.bessel);
        z = ops::zscore(col[i], m.sum[g] / m.count[g], ops::z_scale(var, opts.eps, opts.eps_place));
      }
      const double wz = weights[static_cast<std::size_t>(k)] * z;
      S[i] = std::isnan(S[i]) ? wz : S[i] + wz;
    }
  }
  const auto m = detail::compute_moments(S, st.seq_group, G, nullptr, comm);
  detail::fill_stats(st, m, opts);
  std::vector<double> a(S.size(), 0.0);
  const bool defined = m.batch_count >= (opts.bessel ? 2.0 : 1.0);
  for (std::size_t i = 0; i < S.size(); ++i) {
    if (std::isnan(S[i]) || !defined) continue;  // TRL: NaN std -> NaN -> nan_to_num 0
    const double var = ops::variance_from_centered(m.batch_ss, m.batch_count, opts.bessel);
    a[i] = ops::zscore(S[i], m.batch_mean(), ops::z_scale(var, opts.eps, opts.eps_place));
  }
  detail::store(ov, a);
  return st;
}

/// Token-level broadcast (verl returns advantages = scalar * mask): out(i, t) = a(i) * m(i, t).
/// @pre seq_adv [B], mask [B, T], out [B, T].
template <class Adv, class Mask, class Out>
requires detail::viewable<Adv> && detail::viewable<Mask> && detail::viewable<Out>
void broadcast_to_tokens(const Adv& seq_adv, const Mask& mask, Out&& out) {
  auto av = detail::host_view<1>(seq_adv, "sequence advantages");
  auto mv = detail::host_view<2>(mask, "mask");
  auto ov = detail::host_view<2>(out, "token advantages (out)");
  const index_t B = av.extent(0);
  expect_extents(mv, {B, mv.extent(1)}, "mask");
  expect_extents(ov, {B, mv.extent(1)}, "token advantages (out)");
  expect_distinct_elements(ov, "token advantages (out)");
  using E = typename decltype(ov)::value_type;
  for (index_t i = 0; i < B; ++i) {
    const double a = detail::load(av(i));
    for (index_t t = 0; t < mv.extent(1); ++t)
      ov(i, t) = narrow<E>(a * static_cast<double>(mv(i, t)));
  }
}

/// verl masked_whiten over a [B, T] batch: out = (x - mu) / scale at unmasked tokens, 0 elsewhere
/// (verl multiplies by the mask afterwards). Global over ranks (two all-reduce passes).
/// @pre values, mask, out are [B, T]; at least 2 unmasked tokens over all ranks (1 without
///      Bessel), else [grpo.bad_value] (verl raises ValueError).
template <class Values, class Mask, class Out, collective C = single_process>
requires detail::viewable<Values> && detail::viewable<Mask> && detail::viewable<Out> whiten_stats
masked_whiten(const Values& values, const Mask& mask, Out&& out, const whiten_options& wo = {},
              const C& comm = {}) {
  auto vv = detail::host_view<2>(values, "values");
  auto mv = detail::host_view<2>(mask, "mask");
  auto ov = detail::host_view<2>(out, "whitened (out)");
  const index_t B = vv.extent(0), T = vv.extent(1);
  expect_extents(mv, {B, T}, "mask");
  expect_extents(ov, {B, T}, "whitened (out)");
  expect_distinct_elements(ov, "whitened (out)");
  detail::expect_enum(wo.place, 3, "whiten_options.place");
  GRPO_EXPECTS(wo.eps >= 0 && std::isfinite(wo.eps) && wo.mean_eps >= 0 &&
                   std::isfinite(wo.mean_eps),
               bad_option, "whiten_options.eps / mean_eps must be finite and >= 0");
  // Flatten the unmasked tokens: each is a "row" of weight 1 for whiten_rows.
  std::vector<double> a, w;
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) {
      detail::expect_mask_entry(static_cast<double>(mv(i, t)), "mask", i, t);
      if (mv(i, t) != 0) {
        const double x = detail::load(vv(i, t));
        GRPO_EXPECTS(std::isfinite(x) && !(std::abs(x) > detail::max_abs_reward), bad_value,
                     "masked_whiten: non-finite value or |value| > 1e150 at (" +
                         std::to_string(i) + ", " + std::to_string(t) + ")");
        a.push_back(x);
        w.push_back(1.0);
      }
    }
  const whiten_stats ws = detail::whiten_rows(a, w, wo, comm);
  using E = typename decltype(ov)::value_type;
  std::size_t k = 0;
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) ov(i, t) = mv(i, t) != 0 ? narrow<E>(a[k++]) : narrow<E>(0.0);
  return ws;
}

/// REINFORCE++ (verl compute_reinforce_plus_plus_outcome_advantage, snapshot 1dda039):
/// G_it = r_it + gamma G_i,next-valid over unmasked tokens (masked tokens pass the running return
/// through and get 0), then advantages = masked_whiten(G) * mask.
/// @param token_rewards [B, T]; @param mask [B, T]; @param adv_out [B, T]; @param returns_out
///        [B, T] (the un-whitened G, 0 at masked tokens).
/// @pre 0 <= gamma <= 1 (not enforced beyond finiteness); finite rewards.
template <class Rewards, class Mask, class Adv, class Ret, collective C = single_process>
requires detail::viewable<Rewards> && detail::viewable<Mask> && detail::viewable<Adv> &&
    detail::viewable<Ret>
        whiten_stats compute_reinforce_pp_advantages(const Rewards& token_rewards, const Mask& mask,
                                                     double gamma, Adv&& adv_out, Ret&& returns_out,
                                                     const whiten_options& wo = {},
                                                     const C& comm = {}) {
  GRPO_EXPECTS(std::isfinite(gamma), bad_option, "reinforce_pp: gamma must be finite");
  auto rv = detail::host_view<2>(token_rewards, "token_rewards");
  auto mv = detail::host_view<2>(mask, "mask");
  auto gv = detail::host_view<2>(returns_out, "returns (out)");
  const index_t B = rv.extent(0), T = rv.extent(1);
  expect_extents(mv, {B, T}, "mask");
  expect_extents(gv, {B, T}, "returns (out)");
  expect_distinct_elements(gv, "returns (out)");
  std::vector<double> g(static_cast<std::size_t>(B * T));
  for (index_t i = 0; i < B; ++i) {
    double running = 0.0;
    for (index_t t = T; t-- > 0;) {
      const double r = detail::load(rv(i, t));
      GRPO_EXPECTS(std::isfinite(r), bad_value,
                   "token_rewards: non-finite value at (" + std::to_string(i) + ", " +
                       std::to_string(t) + ")");
      detail::expect_mask_entry(static_cast<double>(mv(i, t)), "mask", i, t);
      running = ops::discounted_return_step(running, r, gamma, mv(i, t) != 0,
                                            &g[static_cast<std::size_t>(i * T + t)]);
    }
  }
  using E = typename decltype(gv)::value_type;
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) gv(i, t) = narrow<E>(g[static_cast<std::size_t>(i * T + t)]);
  return masked_whiten(make_view(static_cast<const double*>(g.data()), {B, T}), mv,
                       std::forward<Adv>(adv_out), wo, comm);
}

}  // namespace grpo

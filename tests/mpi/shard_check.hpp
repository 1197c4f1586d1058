// SPDX-License-Identifier: Apache-2.0
// Shared by tests/mpi/test_mpi_advantage.cpp (Open MPI ranks) and tests/grpo/test_collective.cpp
// (threads): shard a deterministic global batch over comm.size() ranks, with groups split across
// ranks and, in one layout, an empty rank, and check that every estimator's sharded result equals
// the single-process result on the whole batch to 1e-12.
#pragma once

#include <grpo/advantage.hpp>
#include <grpo/collective.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace grpo_test {

using grpo::index_t;

/// A global batch: rewards (with NaNs, ties, a singleton), dense interleaved ids, a [B, T] mask,
/// [B, K] per-function rewards and [B, T] token rewards.
struct global_batch {
  index_t B = 0, T = 6, K = 2, G = 0;
  std::vector<double> r, mask, rpf, token_rewards;
  std::vector<std::int64_t> ids;
};

inline global_batch make_batch(unsigned seed) {
  global_batch b;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> ud(-1.0, 2.0);
  const int sizes[] = {4, 1, 5, 3, 7, 2, 4, 6};
  b.G = 8;
  std::vector<std::int64_t> ids;
  for (int g = 0; g < 8; ++g)
    for (int k = 0; k < sizes[g]; ++k) ids.push_back(g);
  std::shuffle(ids.begin(), ids.end(), rng);  // groups end up spread over every rank
  b.ids = ids;
  b.B = static_cast<index_t>(ids.size());
  for (index_t i = 0; i < b.B; ++i) {
    const auto g = ids[static_cast<std::size_t>(i)];
    double x = ud(rng);
    if (g == 3) x = 0.7;                      // tied group (zero variance)
    if (g == 6) x = (rng() % 2) ? 1.0 : 0.0;  // binary
    if (g == 4 && rng() % 3 == 0) x = std::numeric_limits<double>::quiet_NaN();
    b.r.push_back(x);
    for (index_t t = 0; t < b.T; ++t) b.mask.push_back(rng() % 5 != 0 ? 1.0 : 0.0);
    for (index_t k = 0; k < b.K; ++k)
      b.rpf.push_back(rng() % 7 == 0 ? std::numeric_limits<double>::quiet_NaN() : ud(rng));
    for (index_t t = 0; t < b.T; ++t) b.token_rewards.push_back(rng() % 3 == 0 ? ud(rng) : 0.0);
  }
  // Group 4 must keep >= 2 scorable members for passk: force two of them finite.
  int fixed = 0;
  for (index_t i = 0; i < b.B && fixed < 2; ++i)
    if (b.ids[static_cast<std::size_t>(i)] == 4) {
      b.r[static_cast<std::size_t>(i)] = 0.25 * (fixed + 1);
      ++fixed;
    }
  return b;
}

/// Row range [lo, hi) of `rank` among `size` ranks. layout 0: near-even split; layout 1: uneven
/// with the last rank empty (when size > 1).
inline std::pair<index_t, index_t> rows_of(index_t B, int rank, int size, int layout) {
  if (layout == 0) return {B * rank / size, B * (rank + 1) / size};
  if (size == 1) return {0, B};
  const int busy = size - 1;  // last rank gets nothing
  if (rank == size - 1) return {B, B};
  // uneven: rank r gets a share proportional to r + 1
  const index_t tot = busy * (busy + 1) / 2;
  index_t lo = 0;
  for (int k = 0; k < rank; ++k) lo += B * (k + 1) / tot;
  const index_t hi = rank == busy - 1 ? B : lo + B * (rank + 1) / tot;
  return {lo, hi};
}

template <class T>
std::vector<T> slice(const std::vector<T>& v, index_t lo, index_t hi, index_t width = 1) {
  return std::vector<T>(v.begin() + lo * width, v.begin() + hi * width);
}

inline void expect_near(const std::vector<double>& got, const std::vector<double>& want, index_t lo,
                        const char* what) {
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double w = want[static_cast<std::size_t>(lo) + i];
    const bool ok = std::abs(got[i] - w) <= 1e-12 * std::max(1.0, std::abs(w));
    CHECK_MESSAGE(ok, what << ": row " << (static_cast<std::size_t>(lo) + i) << " sharded "
                           << got[i] << " vs single-process " << w);
  }
}

inline void expect_stats(const grpo::advantage_stats& a, const grpo::advantage_stats& b) {
  CHECK(a.num_groups == b.num_groups);
  CHECK(a.count == b.count);
  CHECK(a.nan_count == b.nan_count);
  CHECK(a.zero_var == b.zero_var);
  CHECK(a.keep_openrlhf == b.keep_openrlhf);
  CHECK(a.keep_verl == b.keep_verl);
  CHECK(a.min == b.min);
  CHECK(a.max == b.max);
  for (std::size_t g = 0; g < a.mean.size(); ++g) {
    if (std::isnan(b.mean[g]))
      CHECK(std::isnan(a.mean[g]));
    else
      CHECK(std::abs(a.mean[g] - b.mean[g]) <= 1e-12 * std::max(1.0, std::abs(b.mean[g])));
    if (std::isnan(b.std[g]))
      CHECK(std::isnan(a.std[g]));
    else
      CHECK(std::abs(a.std[g] - b.std[g]) <= 1e-12 * std::max(1.0, b.std[g]));
  }
  CHECK(std::abs(a.batch_std - b.batch_std) <= 1e-12);
  CHECK(std::abs(a.whiten.mean - b.whiten.mean) <= 1e-12);
  CHECK(std::abs(a.whiten.var - b.whiten.var) <= 1e-12);
}

/// Run every sharded configuration on this rank; returns the number of configurations checked.
template <grpo::collective C>
int check_sharded(const C& comm, unsigned seed = 2026) {
  const global_batch b = make_batch(seed);
  const int rank = comm.rank(), size = comm.size();
  int configs = 0;
  using grpo::adv_estimator;
  std::vector<grpo::advantage_options> opts = {
      grpo::advantage_options::trl(grpo::trl_scale::group),
      grpo::advantage_options::trl(grpo::trl_scale::batch),
      grpo::advantage_options::trl(grpo::trl_scale::none),
      grpo::advantage_options::verl_grpo(),
      grpo::advantage_options::verl_rloo(),
      grpo::advantage_options::verl_rloo_vectorized(),
      grpo::advantage_options::verl_reinforce_pp_baseline(),
      grpo::advantage_options::verl_opo(),
      grpo::advantage_options::verl_gpg(),
  };
  auto orl = grpo::advantage_options::openrlhf_reinforce_baseline();
  orl.singleton = grpo::singleton_policy::unit_baseline;  // the batch has a singleton group
  opts.push_back(orl);
  auto pk = grpo::advantage_options::verl_grpo_passk();
  pk.singleton = grpo::singleton_policy::zero;
  opts.push_back(pk);
  auto tol = grpo::advantage_options::verl_grpo();
  tol.zero_variance = grpo::zero_variance_policy::zero;
  tol.zero_var_tol = 1e-9;
  tol.bessel = false;
  tol.eps_place = grpo::eps_placement::inside_sqrt;
  opts.push_back(tol);

  for (int layout = 0; layout < 2; ++layout) {
    const auto [lo, hi] = rows_of(b.B, rank, size, layout);
    const auto r = slice(b.r, lo, hi);
    const auto ids = slice(b.ids, lo, hi);
    const auto mask = slice(b.mask, lo, hi, b.T);
    const auto mview = grpo::make_view(mask.data(), {hi - lo, b.T});
    const auto full_mask = grpo::make_view(b.mask.data(), {b.B, b.T});
    for (const auto& o : opts) {
      CAPTURE(static_cast<int>(o.estimator));
      CAPTURE(layout);
      std::vector<double> ref(b.r.size()), got(r.size());
      const auto st_ref =
          grpo::compute_advantages(b.r, grpo::group_spec::ids(b.ids), full_mask, ref, o);
      const auto st =
          grpo::compute_advantages(r, grpo::group_spec::ids(ids, b.G), mview, got, o, comm);
      expect_near(got, ref, lo, "ids layout");
      expect_stats(st, st_ref);
      ++configs;
    }
    // Fixed-size contiguous groups of 4 whose boundaries do not align with the rank split.
    {
      const index_t k = 4, B4 = b.B / k * k, G4 = B4 / k;
      const auto [l4, h4] = rows_of(B4, rank, size, layout);
      const std::vector<double> r4(b.r.begin(), b.r.begin() + B4);
      std::vector<double> ref(static_cast<std::size_t>(B4)), got(static_cast<std::size_t>(h4 - l4));
      const auto o = grpo::advantage_options::trl();
      grpo::compute_advantages(r4, grpo::group_spec::fixed(k), ref, o);
      grpo::compute_advantages(slice(r4, l4, h4), grpo::group_spec::fixed(k, l4, G4), got, o, comm);
      expect_near(got, ref, l4, "fixed layout");
      ++configs;
    }
    // Multi-reward normalize_then_sum (GDPO / TRL).
    {
      const auto rpf = slice(b.rpf, lo, hi, b.K);
      const std::vector<double> w{1.0, 0.5};
      auto o = grpo::advantage_options::trl(grpo::trl_scale::group,
                                            grpo::multi_reward_mode::normalize_then_sum);
      std::vector<double> ref(b.r.size()), got(r.size());
      grpo::compute_multi_reward_advantages(grpo::make_view(b.rpf.data(), {b.B, b.K}), w,
                                            grpo::group_spec::ids(b.ids), ref, o);
      grpo::compute_multi_reward_advantages(grpo::make_view(rpf.data(), {hi - lo, b.K}), w,
                                            grpo::group_spec::ids(ids, b.G), got, o, comm);
      expect_near(got, ref, lo, "normalize_then_sum");
      ++configs;
    }
    // REINFORCE++ token-level returns + whitening.
    {
      const auto tr = slice(b.token_rewards, lo, hi, b.T);
      std::vector<double> aref(b.mask.size()), gref(b.mask.size());
      std::vector<double> a(mask.size()), g(mask.size());
      grpo::compute_reinforce_pp_advantages(
          grpo::make_view(b.token_rewards.data(), {b.B, b.T}), full_mask, 0.9,
          grpo::make_view(aref.data(), {b.B, b.T}), grpo::make_view(gref.data(), {b.B, b.T}));
      grpo::compute_reinforce_pp_advantages(grpo::make_view(tr.data(), {hi - lo, b.T}), mview, 0.9,
                                            grpo::make_view(a.data(), {hi - lo, b.T}),
                                            grpo::make_view(g.data(), {hi - lo, b.T}),
                                            grpo::whiten_options{}, comm);
      expect_near(a, aref, lo * b.T, "reinforce_pp advantages");
      expect_near(g, gref, lo * b.T, "reinforce_pp returns");
      ++configs;
    }
  }
  return configs;
}

}  // namespace grpo_test

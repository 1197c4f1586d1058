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
///
/// Layout (one role per header under grpo/advantage/; this header includes them all and stays the
/// public include): options.hpp (enums, options, presets, stats), group_spec.hpp (grouping),
/// row.hpp (the per-row case analysis, host and device), moments.hpp (input views, bounds, group
/// moments), whiten.hpp (token whitening, broadcast, REINFORCE++), estimators.hpp
/// (compute_advantages), multi_reward.hpp (combine_rewards, compute_multi_reward_advantages).
#pragma once

#include <grpo/advantage/estimators.hpp>
#include <grpo/advantage/group_spec.hpp>
#include <grpo/advantage/moments.hpp>
#include <grpo/advantage/multi_reward.hpp>
#include <grpo/advantage/options.hpp>
#include <grpo/advantage/row.hpp>
#include <grpo/advantage/whiten.hpp>

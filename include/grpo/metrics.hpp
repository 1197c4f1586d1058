// SPDX-License-Identifier: Apache-2.0
/// @file metrics.hpp
/// @brief One metric schema for every loss preset: clip fractions, approximate KL, ratio,
/// IS-weight,
///        advantage, KL and entropy statistics, kept as mergeable sums so shards combine exactly.
///
/// Definitions (all token-weighted over the valid tokens of the final mask unless stated; for
/// sequence-level importance sampling the clip fractions count SEQUENCES over all B rows, as TRL):
///   clip_frac_low    = mean 1[r < 1 - eps_low  and A < 0]      (TRL clip_ratio/low_mean)
///   clip_frac_high   = mean 1[r > 1 + eps_high and A > 0]      (TRL clip_ratio/high_mean)
///   clip_frac_region = mean 1[low or high]                     (TRL region_mean, verl pg_clipfrac)
///   clip_frac_dual   = mean 1[A < 0 and r > c]                 (verl pg_clipfrac_lower, dual clip)
///   weight_clip_frac = mean 1[w != r]                          (CISPO: verl pg_clipfrac)
///   approx_kl        = mean (lo - lp) = k1(old || new)         (verl ppo_kl; clamped log ratio)
/// GMPO (verl geo_mean): low = 1[x outside [-eps_low, eps_high] and A < 0], high = same with A > 0
/// (verl pg_clipfrac_lower / pg_clipfrac; counts band exits even on the side that does not bind).
/// CISPO: high = 1[r > cap and A > 0] under the TRL cap (TRL cispo_clip_ratio).
#pragma once

#include <grpo/core/config.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

namespace grpo {

/// Running min / mean / max of a weighted quantity; merge() combines shards exactly.
struct stat_accumulator {
  double sum = 0.0;     ///< sum w x
  double weight = 0.0;  ///< sum w
  double sum_sq = 0.0;  ///< sum w x^2 (for std)
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();

  /// Adds x with weight w (> 0).
  void add(double x, double w = 1.0) noexcept {
    sum += w * x;
    sum_sq += w * x * x;
    weight += w;
    min = x < min ? x : min;
    max = x > max ? x : max;
  }
  /// Adds `count` ones and `weight - count` zeros of a 0/1 indicator in one step (exact).
  void add_indicator(double count, double w) noexcept {
    if (!(w > 0)) return;
    sum += count;
    sum_sq += count;
    weight += w;
    min = count < w ? std::min(min, 0.0) : std::min(min, 1.0);
    max = count > 0 ? std::max(max, 1.0) : std::max(max, 0.0);
  }
  /// Adds a pre-reduced block: sum_w_x = sum w x, sum_w_x2 = sum w x^2, w = sum w, and the block's
  /// min / max of x (ignored when w == 0).
  void add_block(double sum_w_x, double sum_w_x2, double w, double block_min,
                 double block_max) noexcept {
    if (!(w > 0)) return;
    sum += sum_w_x;
    sum_sq += sum_w_x2;
    weight += w;
    min = block_min < min ? block_min : min;
    max = block_max > max ? block_max : max;
  }
  /// Combines another shard's statistics.
  void merge(const stat_accumulator& o) noexcept {
    sum += o.sum;
    sum_sq += o.sum_sq;
    weight += o.weight;
    min = std::min(min, o.min);
    max = std::max(max, o.max);
  }
  /// Weighted mean; NaN when empty.
  [[nodiscard]] double mean() const noexcept {
    return weight > 0 ? sum / weight : std::numeric_limits<double>::quiet_NaN();
  }
  /// Population standard deviation (weighted); NaN when empty.
  [[nodiscard]] double stddev() const noexcept {
    if (!(weight > 0)) return std::numeric_limits<double>::quiet_NaN();
    const double m = sum / weight;
    const double v = sum_sq / weight - m * m;
    return std::sqrt(v > 0 ? v : 0.0);
  }
};

/// The metric schema shared by every preset. Fractions are exposed as accumulators so that
/// micro-batches and ranks can be merged token-weighted (TRL PR #6380 semantics) before reading.
struct loss_metrics {
  stat_accumulator clip_low;       ///< indicator of low clipping (see file comment)
  stat_accumulator clip_high;      ///< indicator of high clipping
  stat_accumulator clip_region;    ///< indicator of low or high
  stat_accumulator clip_dual;      ///< indicator of the dual clip binding (verl pg_clipfrac_lower)
  stat_accumulator weight_clip;    ///< indicator of a CISPO weight differing from the ratio
  stat_accumulator clip_low_seq;   ///< per-sequence low fraction (min = TRL clip_ratio/low_min)
  stat_accumulator clip_high_seq;  ///< per-sequence high fraction (max = TRL clip_ratio/high_max)
  stat_accumulator approx_kl;      ///< lo - lp per valid token (k1 of old || new)
  stat_accumulator ratio;          ///< importance ratio r per valid token (seq ratio for GSPO)
  stat_accumulator is_weight;      ///< rollout-correction weight per valid token
  stat_accumulator advantage;      ///< advantage per valid token
  stat_accumulator kl;             ///< per-token KL estimator value (before the coefficient)
  stat_accumulator entropy;        ///< per-token entropy (when supplied)
  stat_accumulator vespo_phi;      ///< VESPO per-sequence phi (one entry per row, TRL global mean)
  double opsm_dropped_seqs = 0;    ///< sequences masked by OPSM
  double entropy_masked_tokens = 0;  ///< valid tokens removed by the top-entropy mask
  double truncated_seqs = 0;         ///< rows removed by truncation masking
  double tokens = 0;                 ///< valid tokens of the final mask
  double sequences = 0;              ///< rows with at least one valid token

  /// Combines another shard's metrics.
  void merge(const loss_metrics& o) noexcept {
    clip_low.merge(o.clip_low);
    clip_high.merge(o.clip_high);
    clip_region.merge(o.clip_region);
    clip_dual.merge(o.clip_dual);
    weight_clip.merge(o.weight_clip);
    clip_low_seq.merge(o.clip_low_seq);
    clip_high_seq.merge(o.clip_high_seq);
    approx_kl.merge(o.approx_kl);
    ratio.merge(o.ratio);
    is_weight.merge(o.is_weight);
    advantage.merge(o.advantage);
    kl.merge(o.kl);
    entropy.merge(o.entropy);
    vespo_phi.merge(o.vespo_phi);
    opsm_dropped_seqs += o.opsm_dropped_seqs;
    entropy_masked_tokens += o.entropy_masked_tokens;
    truncated_seqs += o.truncated_seqs;
    tokens += o.tokens;
    sequences += o.sequences;
  }
};

}  // namespace grpo

// SPDX-License-Identifier: Apache-2.0
/// @file length.hpp
/// @brief Length-shaping rewards: open-r1 cosine-scaled reward (Yeo et al. 2025), DAPO soft
///        overlong punishment with verl's and OpenRLHF's variants, Kimi k1.5 group length reward.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <rewards/utf8.hpp>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace grpo::rewards {

/// How a text's length is measured when a rule is given text rather than a number.
enum class length_unit {
  code_points,  ///< Python `len(str)`: open-r1's "characters" (default)
  bytes,        ///< UTF-8 bytes
};

/// Length of `text` in `unit`.
inline index_t text_length(std::string_view text, length_unit unit = length_unit::code_points) {
  return static_cast<index_t>(unit == length_unit::bytes ? text.size() : utf8::length(text));
}

/// Parameters of open-r1's `get_cosine_scaled_reward` (defaults are open-r1's).
struct cosine_options {
  double min_value_wrong = -1.0;   ///< reward of an empty wrong answer (the harshest)
  double max_value_wrong = -0.5;   ///< reward of a wrong answer at max_len
  double min_value_correct = 0.5;  ///< reward of a correct answer at max_len
  double max_value_correct = 1.0;  ///< reward of an empty correct answer
  index_t max_len = 1000;          ///< length at which the cosine reaches its end point
  /// Clamp progress = len / max_len to 1 (TRL's port). open-r1 does not clamp, so past max_len its
  /// cosine climbs back; set false to reproduce open-r1 bit for bit.
  bool clamp_progress = true;
};

/// Cosine-scaled length reward (Yeo et al. 2025, "Demystifying Long CoT", App. C.1):
/// progress = len / max_len, c = cos(pi * progress),
/// correct: r = min_c + (max_c - min_c) (1 + c) / 2 (short correct answers earn most);
/// wrong:   r = max_w + (min_w - max_w) (1 + c) / 2 (short wrong answers are punished most).
/// @pre opt.max_len > 0, length >= 0
/// @throws grpo::error [grpo.bad_option] / [grpo.bad_value]
inline double cosine_scaled_reward(bool correct, index_t length, const cosine_options& opt = {}) {
  GRPO_EXPECTS(opt.max_len > 0, bad_option, "cosine_options.max_len must be > 0");
  GRPO_EXPECTS(std::isfinite(opt.min_value_wrong), bad_option,
               "cosine_options.min_value_wrong must be finite");
  GRPO_EXPECTS(std::isfinite(opt.max_value_wrong), bad_option,
               "cosine_options.max_value_wrong must be finite");
  GRPO_EXPECTS(std::isfinite(opt.min_value_correct), bad_option,
               "cosine_options.min_value_correct must be finite");
  GRPO_EXPECTS(std::isfinite(opt.max_value_correct), bad_option,
               "cosine_options.max_value_correct must be finite");
  GRPO_EXPECTS(length >= 0, bad_value, "cosine_scaled_reward: length must be >= 0");
  double progress = static_cast<double>(length) / static_cast<double>(opt.max_len);
  if (opt.clamp_progress) progress = std::min(progress, 1.0);
  const double c = std::cos(progress * std::numbers::pi);
  // open-r1 swaps the bounds for wrong answers: "min_value" is max_value_wrong there.
  const double lo = correct ? opt.min_value_correct : opt.max_value_wrong;
  const double hi = correct ? opt.max_value_correct : opt.min_value_wrong;
  return lo + 0.5 * (hi - lo) * (1.0 + c);
}

/// Which framework's soft overlong punishment to reproduce.
enum class overlong_variant {
  dapo,      ///< DAPO Eq. 13 (TRL, open-r1): 0 / linear ramp / -1 beyond max_len
  verl,      ///< verl DAPO reward manager: min(-(len - expected) / cache * factor, 0), no floor
  openrlhf,  ///< OpenRLHF: -min(len - expected, cache) / cache * factor when positive
};

/// Parameters of the soft overlong punishment (DAPO paper setting: 20480 = 16384 + 4096 tokens).
struct overlong_options {
  index_t max_len = 20480;      ///< L_max, maximum generation length (tokens)
  index_t cache_len = 4096;     ///< L_cache, soft punishment interval before L_max
  double penalty_factor = 1.0;  ///< verl's / OpenRLHF's scale; multiplies the DAPO value too
  overlong_variant variant = overlong_variant::dapo;
};

/// DAPO soft overlong punishment (DAPO Eq. 13) with expected = L_max - L_cache:
/// R = 0 if len <= expected; (expected - len) / L_cache if expected < len <= L_max; -1 otherwise;
/// times penalty_factor. verl drops the -1 step (linear beyond L_max; the rollout truncates at
/// L_max anyway), OpenRLHF clamps the excess at L_cache (floor -factor).
/// @pre 0 < opt.cache_len <= opt.max_len, length >= 0
/// @throws grpo::error [grpo.bad_option] / [grpo.bad_value]
inline double soft_overlong_reward(index_t length, const overlong_options& opt = {}) {
  GRPO_EXPECTS(opt.cache_len > 0 && opt.cache_len <= opt.max_len, bad_option,
               "overlong_options: need 0 < cache_len <= max_len");
  GRPO_EXPECTS(std::isfinite(opt.penalty_factor) && opt.penalty_factor >= 0, bad_option,
               "overlong_options.penalty_factor must be finite and >= 0");
  GRPO_EXPECTS(static_cast<unsigned>(opt.variant) < 3u, bad_option,
               "overlong_options.variant: enum value out of range");
  GRPO_EXPECTS(length >= 0, bad_value, "soft_overlong_reward: length must be >= 0");
  const index_t expected = opt.max_len - opt.cache_len;
  const double cache = static_cast<double>(opt.cache_len);
  const double excess = static_cast<double>(length - expected);
  switch (opt.variant) {
    case overlong_variant::dapo:
      if (length <= expected) return 0.0;
      if (length <= opt.max_len) return -excess / cache * opt.penalty_factor;
      return -1.0 * opt.penalty_factor;
    case overlong_variant::verl:
      return std::min(-excess / cache * opt.penalty_factor, 0.0);
    case overlong_variant::openrlhf:
      return excess > 0 ? -std::min(excess, cache) / cache * opt.penalty_factor : 0.0;
  }
  return 0.0;
}

/// Kimi k1.5 length reward as open-r1's `len_reward` computes it over one group of completions:
/// lambda_i = 0.5 - (len_i - min_len) / (max_len - min_len); correct -> lambda_i, wrong ->
/// min(0, lambda_i); all lengths equal -> all 0.
/// @pre lengths.size() == correct.size(), every length >= 0
/// @throws grpo::error [grpo.shape_mismatch] / [grpo.bad_value]
inline std::vector<double> kimi_length_rewards(std::span<const index_t> lengths,
                                               std::span<const bool> correct) {
  GRPO_EXPECTS(lengths.size() == correct.size(), shape_mismatch,
               "kimi_length_rewards: lengths and correct differ in size");
  std::vector<double> out(lengths.size(), 0.0);
  if (lengths.empty()) return out;
  const auto [mn, mx] = std::minmax_element(lengths.begin(), lengths.end());
  GRPO_EXPECTS(*mn >= 0, bad_value, "kimi_length_rewards: lengths must be >= 0");
  if (*mn == *mx) return out;
  const double range = static_cast<double>(*mx - *mn);
  for (std::size_t i = 0; i < lengths.size(); ++i) {
    const double lambda = 0.5 - static_cast<double>(lengths[i] - *mn) / range;
    out[i] = correct[i] ? lambda : std::min(0.0, lambda);
  }
  return out;
}

}  // namespace grpo::rewards

// SPDX-License-Identifier: Apache-2.0
/// @file validate.hpp
/// @brief The value rules every entry point shares: mask entries, log-probabilities on valid
///        tokens, temperatures, enum options (one helper each, so no two entry points disagree).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>

#include <cmath>
#include <limits>
#include <string>

namespace grpo {
namespace detail {

/// The mask rule of every [B, T] mask (loss, aggregation, KL in reward, OPO / REINFORCE++
/// advantages): an entry is a finite weight >= 0; 0 marks a token that is never read.
constexpr bool mask_entry_ok(double m) noexcept {
  return m >= 0.0 && m <= std::numeric_limits<double>::max();  // false for NaN, +-inf, < 0
}

/// Throws [grpo.bad_value] naming `what` and the position unless mask entry m obeys the mask rule.
inline void expect_mask_entry(double m, const char* what, index_t i, index_t t) {
  GRPO_EXPECTS(mask_entry_ok(m), bad_value,
               std::string(what) + ": entries must be finite and >= 0 (row " + std::to_string(i) +
                   ", column " + std::to_string(t) + ", value " + std::to_string(m) + ")");
}

/// Throws [grpo.bad_value] unless x (a log-probability, advantage or reward read on a valid
/// token) is finite: the rule compute_loss_into applies to every value it reads.
inline void expect_finite_at(double x, const char* what, index_t i, index_t t) {
  GRPO_EXPECTS(std::isfinite(x), bad_value,
               std::string(what) + ": non-finite value on a valid token (row " + std::to_string(i) +
                   ", column " + std::to_string(t) + ")");
}

/// Inverse temperature beta = 1 / T of a softmax accumulated in float, checked: T finite and
/// > 0, and beta a normal float (T in [1 / FLT_MAX, 1 / FLT_MIN], about [2.9e-39, 8.5e37]). A
/// smaller T makes every logit / T overflow (reported before as "logits contain NaN / +inf");
/// a larger one flushes logits / T to zero (a silently uniform distribution).
/// Throws [grpo.bad_option] naming `field`.
inline double checked_inverse_temperature(double T, const char* field) {
  GRPO_EXPECTS(std::isfinite(T) && T > 0.0, bad_option,
               std::string(field) + " must be finite and > 0, got " + std::to_string(T));
  const double beta = 1.0 / T;
  constexpr double lo = static_cast<double>(std::numeric_limits<float>::min());
  constexpr double hi = static_cast<double>(std::numeric_limits<float>::max());
  GRPO_EXPECTS(beta >= lo && beta <= hi, bad_option,
               std::string(field) + " = " + std::to_string(T) +
                   " is outside [1/FLT_MAX, 1/FLT_MIN] ~ [2.9e-39, 8.5e37]: 1/T " +
                   (beta > hi ? "overflows" : "underflows") + " the float accumulation");
  return beta;
}

/// Throws [grpo.bad_option] naming `field` unless enum value e is one of its first n enumerators
/// (0 .. n-1): a value cast from an out-of-range integer never reaches a switch.
template <class E>
void expect_enum(E e, unsigned n, const char* field) {
  const auto v = static_cast<unsigned>(e);
  GRPO_EXPECTS(v < n, bad_option,
               std::string(field) + ": enum value " + std::to_string(v) + " is out of range (" +
                   std::to_string(n) + " values)");
}

/// Throws [grpo.bad_option] naming `field` unless x is finite.
inline void expect_finite_option(double x, const char* field) {
  GRPO_EXPECTS(std::isfinite(x), bad_option,
               std::string(field) + " must be finite, got " + std::to_string(x));
}

}  // namespace detail
}  // namespace grpo

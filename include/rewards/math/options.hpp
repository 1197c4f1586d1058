// SPDX-License-Identifier: Apache-2.0
/// @file options.hpp
/// @brief Verdicts, extraction and verification options and the step budget of the math verifier.
#pragma once

#include <cstddef>
#include <cstdint>

namespace grpo::rewards::math {

/// Outcome of one gold/prediction comparison. `unparseable_gold` means the reference itself could
/// not be read: a trainer must skip the sample (open-r1 returns None), never reward it 1.0 (the
/// open-r1 bug of issues #86/#215/#293).
enum class verdict : std::uint8_t { correct, incorrect, unparseable_gold };

/// Which places of a completion are searched for the final answer, in priority order. The first
/// mode that finds something wins; within a mode the rightmost match wins (the answer is stated
/// last).
struct extract_options {
  /// Grade only the text after the last `</think>` when one is present (TRL's reasoning reward).
  bool strip_think = true;
  /// R1-Zero template: when an `<answer>..</answer>` block is present, only the last one is
  /// searched (with all the modes below), so its content may itself be boxed or plain.
  bool answer_tags = true;
  /// Priority 1: last `\boxed{..}` / `\fbox{..}` with balanced braces; adjacent final boxes joined.
  bool boxed = true;
  /// Priority 2: "final answer is X", "the answer is X", "answer: X" (case-insensitive).
  bool answer_phrase = true;
  /// Priority 3: last markdown bold `**X**` whose content looks like maths (digit or backslash).
  bool markdown_bold = true;
  /// Priority 4: last LaTeX math environment: `$$..$$`, `\[..\]`, `\(..\)`, `$..$`.
  bool latex_delimiters = true;
  /// Priority 5: the whole (trimmed) text when nothing above matched and it is at most
  /// `max_answer_chars` long (bare gold strings such as "3" or "\frac{1}{2}").
  bool whole_string = true;
  /// Extracted answers longer than this are rejected (nullopt): bounds all later work.
  std::size_t max_answer_chars = 2048;
};

/// Options of verify(). Defaults are the reward setting documented in docs/rewards-math.md.
struct verify_options {
  extract_options gold_extraction{};  ///< how the reference answer is read
  extract_options pred_extraction{};  ///< how the model completion is read
  /// Float policy (see docs): a decimal literal with at least `float_min_significant` significant
  /// digits is read as a rounding: it matches any value within half a unit of its last digit.
  int float_min_significant = 3;
  /// Relative tolerance applied only when one side is a decimal literal (or irrational numeric).
  double float_rel_tol = 1e-9;
  /// Math-Verify's `float_rounding`: when >= 0 and a side is a decimal literal, values that
  /// agree after rounding both to this many decimal places (half away from zero) are equal, on top
  /// of the float policy. -1 (default): off, the float policy alone decides.
  int float_rounding = -1;
  /// Math-Verify's `strict`: variable names of expressions must match (`x^2+1` vs `y^2+1`,
  /// `f(x) = x^2` vs `f(y) = y^2` differ). When false, the prediction's free variables are renamed
  /// to the gold's in name order when both have the same number of them. Either way two
  /// assignments of a closed value compare their values (`x = 3` vs `k = 3`, as Math-Verify's
  /// solve-based comparison does).
  bool strict_variables = true;
  /// `10\%` vs `10`: accept (MATH golds drop the percent sign). `10\%` always equals `0.1`.
  bool percent_lenient = true;
  /// A predicted inequality (`1<x<2`) may match a gold interval `(1,2)`. Off by default, as in
  /// Math-Verify (allow_set_relation_comp=False): it stops a model echoing the question's
  /// condition.
  bool allow_pred_relation_vs_gold_set = false;
  /// Gold of the form `A`..`J` / `(C)` / `\text{(C)}`: compare the predicted option letter.
  bool multiple_choice = true;
  /// Hard work budget per verify() call, in abstract steps (characters scanned by the parser,
  /// nodes visited, weighted CAS calls). Exhaustion yields `incorrect` (or `unparseable_gold`).
  std::size_t budget_steps = 400000;
  /// Maximal nesting depth of the LaTeX parser (recursion bound).
  int max_depth = 96;
};

/// Thrown internally when a step budget runs out; never escapes verify().
struct budget_exhausted {};

/// Counts work; every parser character, tree node and CAS call spends from it.
class budget {
 public:
  explicit budget(std::size_t steps) noexcept : left_(steps) {}
  /// Spends `n` steps. @post throws budget_exhausted when fewer than `n` were left.
  void spend(std::size_t n = 1) {
    if (left_ < n) throw budget_exhausted{};
    left_ -= n;
  }
  /// @return steps still available.
  [[nodiscard]] std::size_t left() const noexcept { return left_; }

 private:
  std::size_t left_;
};

}  // namespace grpo::rewards::math

// SPDX-License-Identifier: Apache-2.0
/// @file compose.hpp
/// @brief Composition of rule rewards: a named, weighted set of rules scored per sample with a
///        per-rule breakdown for logging, the built-in rule factory and the `name:weight,...` spec.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <rewards/code_exec.hpp>
#include <rewards/format.hpp>
#include <rewards/language.hpp>
#include <rewards/length.hpp>
#include <rewards/repetition.hpp>

#if __has_include(<rewards/math.hpp>)
#include <rewards/math.hpp>
/// 1 when the math verifier (accuracy and cosine rules) is available.
#define GRPO_REWARDS_HAS_MATH 1
#else
#define GRPO_REWARDS_HAS_MATH 0
#endif

#include <charconv>
#include <cmath>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace grpo::rewards {

/// One completion to score, with everything a rule may need. All members are views: the caller
/// keeps the data alive while scoring.
struct sample {
  std::string_view prompt;           ///< the prompt (unused by the built-in rules)
  std::string_view completion;       ///< the model's output
  std::string_view answer;           ///< the reference answer (accuracy, cosine)
  std::span<const test_case> tests;  ///< test cases (code rules); empty -> rule skipped
  std::string_view code_language;    ///< "python" / "cpp"; empty -> rule_options default
  index_t num_tokens = -1;           ///< completion length in tokens when known (overlong)
};

/// A rule maps a sample to a reward, or to nullopt when the sample cannot be scored by it
/// (unparseable gold, no tests): the rule is then skipped for that sample, as open-r1 returns None.
using rule_fn = std::function<std::optional<double>(const sample&)>;

/// A named, weighted rule.
struct rule {
  std::string name;
  double weight = 1.0;
  rule_fn fn;
};

/// The score of one rule on one sample.
struct rule_score {
  std::string name;
  double weight = 1.0;
  std::optional<double> value;  ///< nullopt when the rule skipped the sample
};

/// Total and per-rule breakdown of one sample.
struct reward_breakdown {
  double total = 0.0;             ///< sum of weight * value over rules that did not skip
  std::vector<rule_score> rules;  ///< in the order the rules were added
  /// @return the value of rule `name` (nullopt when skipped or absent).
  [[nodiscard]] std::optional<double> value(std::string_view name) const {
    for (const auto& r : rules)
      if (r.name == name) return r.value;
    return std::nullopt;
  }
};

/// A weighted sum of rules: total = sum_k w_k r_k over the rules that scored the sample (skipped
/// rules contribute nothing: TRL's `nansum` over reward functions that returned None).
class reward_set {
 public:
  /// Adds a rule. @pre name is not empty and not already present, weight is finite, fn is set
  /// @throws grpo::error [grpo.bad_option]
  reward_set& add(std::string name, double weight, rule_fn fn) {
    GRPO_EXPECTS(!name.empty(), bad_option, "reward_set::add: empty rule name");
    GRPO_EXPECTS(std::isfinite(weight), bad_option,
                 "reward_set::add: weight of '" + name + "' is not finite");
    GRPO_EXPECTS(static_cast<bool>(fn), bad_option,
                 "reward_set::add: rule '" + name + "' has no function");
    for (const auto& r : rules_)
      GRPO_EXPECTS(r.name != name, bad_option, "reward_set::add: duplicate rule '" + name + "'");
    rules_.push_back({std::move(name), weight, std::move(fn)});
    return *this;
  }
  /// @return the rules in order.
  [[nodiscard]] const std::vector<rule>& rules() const noexcept { return rules_; }
  /// @return the number of rules.
  [[nodiscard]] std::size_t size() const noexcept { return rules_.size(); }

  /// Scores one sample with every rule. Thread-safe when the rules are (the built-ins are).
  /// @post result.rules.size() == size()
  [[nodiscard]] reward_breakdown score(const sample& s) const {
    reward_breakdown b;
    b.rules.reserve(rules_.size());
    for (const auto& r : rules_) {
      std::optional<double> v = r.fn(s);
      GRPO_EXPECTS(!v || std::isfinite(*v), bad_value,
                   "reward_set::score: rule '" + r.name + "' returned a non-finite value");
      if (v) b.total += r.weight * *v;
      b.rules.push_back({r.name, r.weight, v});
    }
    return b;
  }

 private:
  std::vector<rule> rules_;
};

/// Options of every built-in rule (one struct so that a CLI or a config file can fill it).
struct rule_options {
  strict_format_options strict_format{};
  reasoning_steps_options reasoning_steps{};
  language_options language{};
  std::string target_language = "en";
  cosine_options cosine{};
  overlong_options overlong{};
  repetition_options repetition{};
  code_exec_options code{};
  std::string code_language = "python";         ///< when the sample does not say
  length_unit unit = length_unit::code_points;  ///< length of text for cosine / overlong
  /// accuracy / cosine: when the completion has an `<answer>...</answer>` block (R1-Zero
  /// template), grade only its content (the last block); otherwise the whole completion.
  bool grade_answer_block = true;
#if GRPO_REWARDS_HAS_MATH
  math::verify_options math{};
#endif
};

/// The text the accuracy rule grades: the content of the last `<answer>..</answer>` block when
/// `use_block` and one exists (an unclosed last `<answer>` gives everything after it), else all.
inline std::string_view graded_text(std::string_view completion, bool use_block) noexcept {
  if (!use_block) return completion;
  const std::size_t open = completion.rfind(answer_open);
  if (open == std::string_view::npos) return completion;
  const std::size_t begin = open + answer_open.size();
  const std::size_t close = completion.find(answer_close, begin);
  return close == std::string_view::npos ? completion.substr(begin)
                                         : completion.substr(begin, close - begin);
}

/// Names accepted by make_rule, in documentation order.
inline constexpr std::string_view builtin_rule_names[] = {
    "accuracy", "format",     "format_lenient", "tag_count", "reasoning_steps", "language",
    "cosine",   "repetition", "soft_overlong",  "code",      "binary_code"};

/// A built-in rule by name:
/// - `accuracy`: math::verify(answer, graded_text(completion)): 1 correct, 0 incorrect, skipped
///   when the gold is unparseable (needs <rewards/math.hpp>);
/// - `format` (strict R1 layout), `format_lenient` (open-r1 regex), `tag_count`, `reasoning_steps`;
/// - `language`: language consistency towards `target_language`;
/// - `cosine`: cosine-scaled length reward with correctness from math::verify (skipped on
///   unparseable gold); length in `unit`;
/// - `repetition`: n-gram repetition penalty;
/// - `soft_overlong`: DAPO soft overlong punishment on num_tokens (or the text length in `unit`
///   when num_tokens < 0);
/// - `code` / `binary_code`: pass fraction of the last fenced block on the sample's tests (skipped
///   without tests; 0 without a code block).
/// @throws grpo::error [grpo.bad_option] for an unknown name, invalid options, or a math rule
///         when the math verifier is not available
inline rule_fn make_rule(std::string_view name, const rule_options& o) {
  const auto length_of = [unit = o.unit](const sample& s) {
    return text_length(s.completion, unit);
  };
  if (name == "format")
    return [opt = o.strict_format](const sample& s) -> std::optional<double> {
      return strict_format_reward(s.completion, opt);
    };
  if (name == "format_lenient")
    return [](const sample& s) -> std::optional<double> {
      return lenient_format_reward(s.completion);
    };
  if (name == "tag_count")
    return [](const sample& s) -> std::optional<double> { return tag_count_reward(s.completion); };
  if (name == "reasoning_steps") {
    GRPO_EXPECTS(o.reasoning_steps.target_steps > 0, bad_option,
                 "reasoning_steps: target_steps must be > 0");
    return [opt = o.reasoning_steps](const sample& s) -> std::optional<double> {
      return reasoning_steps_reward(s.completion, opt);
    };
  }
  if (name == "language")
    return [target = target_scripts(o.target_language),
            opt = o.language](const sample& s) -> std::optional<double> {
      return language_consistency_reward(s.completion, target, opt);
    };
  if (name == "repetition") {
    detail::check(o.repetition);
    return [opt = o.repetition](const sample& s) -> std::optional<double> {
      return repetition_penalty_reward(s.completion, opt);
    };
  }
  if (name == "soft_overlong") {
    soft_overlong_reward(0, o.overlong);  // validates the options now, not per sample
    return [opt = o.overlong, length_of](const sample& s) -> std::optional<double> {
      return soft_overlong_reward(s.num_tokens >= 0 ? s.num_tokens : length_of(s), opt);
    };
  }
  if (name == "code" || name == "binary_code") {
    const auto def = parse_code_language(o.code_language);
    GRPO_EXPECTS(def.has_value(), bad_option,
                 "code: unknown code_language '" + o.code_language + "'");
    return [opt = o.code, def = *def,
            binary = name == "binary_code"](const sample& s) -> std::optional<double> {
      if (s.tests.empty()) return std::nullopt;
      code_language lang = def;
      if (!s.code_language.empty()) {
        const auto l = parse_code_language(s.code_language);
        if (!l) return std::nullopt;  // a language this rule cannot run: skip, do not punish
        lang = *l;
      }
      const double r = code_reward(s.completion, lang, s.tests, opt);
      return binary ? (r > 0.99 ? 1.0 : 0.0) : r;
    };
  }
#if GRPO_REWARDS_HAS_MATH
  if (name == "accuracy")
    return [opt = o.math, block = o.grade_answer_block](const sample& s) -> std::optional<double> {
      switch (math::verify(s.answer, graded_text(s.completion, block), opt)) {
        case math::verdict::correct:
          return 1.0;
        case math::verdict::incorrect:
          return 0.0;
        case math::verdict::unparseable_gold:
          return std::nullopt;
      }
      return std::nullopt;
    };
  if (name == "cosine") {
    cosine_scaled_reward(true, 0, o.cosine);  // validates the options
    return [opt = o.math, cos = o.cosine, length_of,
            block = o.grade_answer_block](const sample& s) -> std::optional<double> {
      const math::verdict v = math::verify(s.answer, graded_text(s.completion, block), opt);
      if (v == math::verdict::unparseable_gold) return std::nullopt;
      return cosine_scaled_reward(v == math::verdict::correct, length_of(s), cos);
    };
  }
#else
  GRPO_EXPECTS(name != "accuracy" && name != "cosine", bad_option,
               "rule '" + std::string(name) + "' needs the math verifier <rewards/math.hpp>");
#endif
  GRPO_THROW(bad_option, "unknown reward rule '" + std::string(name) + "'");
}

/// Parses a rule spec "accuracy:1,format:0.5,tag_count" (weight 1 when omitted; spaces around
/// names and weights are ignored).
/// @throws grpo::error [grpo.bad_option] naming the offending item (empty name, bad or non-finite
///         weight, empty spec)
inline std::vector<std::pair<std::string, double>> parse_rule_spec(std::string_view spec) {
  const auto trim = [](std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
  };
  std::vector<std::pair<std::string, double>> out;
  std::size_t b = 0;
  while (b <= spec.size()) {
    std::size_t e = spec.find(',', b);
    if (e == std::string_view::npos) e = spec.size();
    const std::string_view item = trim(spec.substr(b, e - b));
    const std::size_t colon = item.find(':');
    const std::string_view name = trim(item.substr(0, colon));
    GRPO_EXPECTS(!name.empty(), bad_option,
                 "rules: empty rule name in '" + std::string(spec) + "'");
    double w = 1.0;
    if (colon != std::string_view::npos) {
      const std::string_view ws = trim(item.substr(colon + 1));
      const auto [ptr, ec] = std::from_chars(ws.data(), ws.data() + ws.size(), w);
      GRPO_EXPECTS(
          !ws.empty() && ec == std::errc() && ptr == ws.data() + ws.size() && std::isfinite(w),
          bad_option,
          "rules: bad weight '" + std::string(ws) + "' for rule '" + std::string(name) + "'");
    }
    out.emplace_back(std::string(name), w);
    b = e + 1;
  }
  return out;
}

/// Builds a reward_set from a spec ("accuracy:1,format:0.5") with make_rule.
/// @throws grpo::error [grpo.bad_option]
inline reward_set make_reward_set(std::string_view spec, const rule_options& o = {}) {
  reward_set set;
  for (auto& [name, w] : parse_rule_spec(spec)) {
    rule_fn fn = make_rule(name, o);
    set.add(std::move(name), w, std::move(fn));
  }
  return set;
}

}  // namespace grpo::rewards

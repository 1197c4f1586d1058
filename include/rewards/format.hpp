// SPDX-License-Identifier: Apache-2.0
/// @file format.hpp
/// @brief Format rewards of the R1 recipe: strict and open-r1 (lenient) think/answer layout,
///        open-r1 tag count and reasoning-steps rewards. Linear-time scanners, no std::regex.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <rewards/utf8.hpp>

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string_view>

namespace grpo::rewards {

namespace detail {
/// Number of non-overlapping occurrences of `needle` in `s`, scanning left to right: Python's
/// `str.count`, which open-r1's tag_count_reward uses ("\n</think>\n</think>\n" counts 1, not 2).
inline std::size_t count_nonoverlapping(std::string_view s, std::string_view needle) noexcept {
  std::size_t n = 0;
  std::size_t pos = s.find(needle);
  while (pos != std::string_view::npos) {
    ++n;
    pos = s.find(needle, pos + needle.size());
  }
  return n;
}

/// True when s[from..] is empty or only whitespace (Python isspace).
inline bool only_space_from(std::string_view s, std::size_t from) noexcept {
  bool ok = true;
  utf8::for_each(s.substr(std::min(from, s.size())),
                 [&](char32_t c, std::size_t, std::size_t) { ok = ok && utf8::is_space(c); });
  return ok;
}

/// True when s contains at least one non-whitespace code point.
inline bool has_non_space(std::string_view s) noexcept {
  return !only_space_from(s, 0);
}
}  // namespace detail

/// The four R1 tags.
inline constexpr std::string_view think_open = "<think>";
inline constexpr std::string_view think_close = "</think>";
inline constexpr std::string_view answer_open = "<answer>";
inline constexpr std::string_view answer_close = "</answer>";

/// Options of the strict R1 format rule.
struct strict_format_options {
  bool allow_trailing_whitespace = false;  ///< accept whitespace after the final `</answer>`
  /// accept exactly one "\n" after the final `</answer>` (chat templates end the turn with it);
  /// stricter than allow_trailing_whitespace, which accepts any run of blanks
  bool allow_trailing_newline = false;
  bool allow_empty_think = false;   ///< accept a think block that is empty or only whitespace
  bool allow_empty_answer = false;  ///< accept an answer block that is empty or only whitespace
};

/// The two bodies of a completion in strict R1 layout.
struct r1_parts {
  std::string_view think;   ///< text between "<think>\n" and "\n</think>"
  std::string_view answer;  ///< text between "<answer>\n" and "\n</answer>"
};

/// Parses the strict R1 layout
/// `<think>\n THINK \n</think>\n<answer>\n ANSWER \n</answer>` with nothing before or after, each
/// of the four tags occurring exactly once (so neither body contains a tag: this is the guard
/// against open-r1 issue #359, where its lazy regex accepted several think/answer blocks).
/// @return the two bodies, or nullopt when the layout is violated.
/// @post linear time in text.size()
inline std::optional<r1_parts> parse_strict_r1(std::string_view text,
                                               const strict_format_options& opt = {}) {
  using detail::count_nonoverlapping;
  // Every tag exactly once; the tags cannot overlap each other, so plain counts suffice.
  if (count_nonoverlapping(text, think_open) != 1 || count_nonoverlapping(text, think_close) != 1 ||
      count_nonoverlapping(text, answer_open) != 1 || count_nonoverlapping(text, answer_close) != 1)
    return std::nullopt;
  constexpr std::string_view head = "<think>\n";
  constexpr std::string_view middle = "\n</think>\n<answer>\n";
  if (!text.starts_with(head)) return std::nullopt;
  const std::size_t close = text.find(think_close);  // unique, see the counts above
  // The newline before </think> must not be the one that ends "<think>\n".
  if (close < head.size() + 1 || text.compare(close - 1, middle.size(), middle) != 0)
    return std::nullopt;
  const std::size_t answer_begin = close - 1 + middle.size();
  const std::size_t aclose = text.find(answer_close);
  if (aclose < answer_begin + 1 || text[aclose - 1] != '\n') return std::nullopt;
  const std::size_t end = aclose + answer_close.size();
  if (end != text.size()) {
    const bool one_newline =
        opt.allow_trailing_newline && text.size() == end + 1 && text[end] == '\n';
    if (!one_newline && (!opt.allow_trailing_whitespace || !detail::only_space_from(text, end)))
      return std::nullopt;
  }
  r1_parts parts{text.substr(head.size(), close - 1 - head.size()),
                 text.substr(answer_begin, aclose - 1 - answer_begin)};
  if (!opt.allow_empty_think && !detail::has_non_space(parts.think)) return std::nullopt;
  if (!opt.allow_empty_answer && !detail::has_non_space(parts.answer)) return std::nullopt;
  return parts;
}

/// Strict R1 format reward: 1 if `parse_strict_r1` accepts the completion, else 0.
/// @post result is 0.0 or 1.0
inline double strict_format_reward(std::string_view text, const strict_format_options& opt = {}) {
  return parse_strict_r1(text, opt) ? 1.0 : 0.0;
}

/// open-r1 `format_reward`, reproduced exactly without a regex:
/// `re.match(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", c, re.DOTALL | re.MULTILINE)`.
/// The lazy `.*?` may span other tags and MULTILINE lets `$` match before any newline, so the
/// pattern matches iff the text starts with "<think>\n", some later "\n</think>\n<answer>\n" starts
/// at byte >= 8, and after it some "\n</answer>" is followed by the end or by "\n". Taking the
/// earliest middle marker leaves the most room for the tail, so one forward scan decides.
/// @post result is 0.0 or 1.0; linear time
inline double lenient_format_reward(std::string_view text) noexcept {
  constexpr std::string_view head = "<think>\n";
  constexpr std::string_view middle = "\n</think>\n<answer>\n";
  constexpr std::string_view tail = "\n</answer>";
  if (!text.starts_with(head)) return 0.0;
  const std::size_t k = text.find(middle, head.size());
  if (k == std::string_view::npos) return 0.0;
  std::size_t j = text.find(tail, k + middle.size());
  while (j != std::string_view::npos) {
    const std::size_t after = j + tail.size();
    if (after == text.size() || text[after] == '\n') return 1.0;
    j = text.find(tail, j + 1);
  }
  return 0.0;
}

/// open-r1 `tag_count_reward` (after willccbb's GRPO demo): +0.25 for each of "<think>\n",
/// "\n</think>\n", "\n<answer>\n", "\n</answer>" that occurs exactly once (Python `str.count`,
/// non-overlapping). Partial credit in {0, 0.25, 0.5, 0.75, 1}.
/// @post 0 <= result <= 1
inline double tag_count_reward(std::string_view text) noexcept {
  using detail::count_nonoverlapping;
  double r = 0.0;
  for (std::string_view tag : {std::string_view("<think>\n"), std::string_view("\n</think>\n"),
                               std::string_view("\n<answer>\n"), std::string_view("\n</answer>")})
    if (count_nonoverlapping(text, tag) == 1) r += 0.25;
  return r;
}

/// Options of the reasoning-steps rule.
struct reasoning_steps_options {
  /// Number of steps that earns the full reward (open-r1: 3).
  double target_steps = 3.0;
  /// open-r1 compiles `^\d+\.` without MULTILINE, so a numbered item counts only at the very start
  /// of the text. true also counts "12." at the start of every line (what the comment there means).
  bool numbered_items_at_line_start = false;
};

/// Counts the matches of open-r1's step pattern
/// `(Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,)` as `re.findall` does: leftmost,
/// non-overlapping, alternatives tried in order; `\d` is any Unicode decimal digit (Nd) as in a
/// Python str pattern.
/// @post linear time in text.size()
inline std::size_t count_reasoning_steps(std::string_view text,
                                         const reasoning_steps_options& opt = {}) {
  // Length of a run of decimal digits starting at byte i (0 if none).
  const auto digits_at = [&](std::size_t i) {
    std::size_t j = i;
    while (j < text.size()) {
      const utf8::decoded d = utf8::decode(text, j);
      if (!utf8::is_decimal_digit(d.cp)) break;
      j += static_cast<std::size_t>(d.len);
    }
    return j - i;
  };
  constexpr std::string_view words[] = {"First,", "Second,", "Next,", "Finally,"};
  std::size_t count = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t len = 0;  // length of the match at i, 0 when none
    const std::string_view rest = text.substr(i);
    if (rest.starts_with("Step ")) {
      const std::size_t nd = digits_at(i + 5);
      if (nd > 0 && i + 5 + nd < text.size() && text[i + 5 + nd] == ':') len = 5 + nd + 1;
    }
    if (len == 0 && (i == 0 || (opt.numbered_items_at_line_start && text[i - 1] == '\n'))) {
      const std::size_t nd = digits_at(i);
      if (nd > 0 && i + nd < text.size() && text[i + nd] == '.') len = nd + 1;
    }
    if (len == 0 && (rest.starts_with("\n-") || rest.starts_with("\n*"))) len = 2;
    for (std::size_t w = 0; len == 0 && w < 4; ++w)
      if (rest.starts_with(words[w])) len = words[w].size();
    if (len > 0) {
      ++count;
      i += len;
    } else {
      ++i;  // continuation bytes never start a match (all anchors are ASCII)
    }
  }
  return count;
}

/// open-r1 `reasoning_steps_reward`: min(1, steps / target_steps).
/// @pre opt.target_steps > 0
/// @post 0 <= result <= 1
inline double reasoning_steps_reward(std::string_view text,
                                     const reasoning_steps_options& opt = {}) {
  GRPO_EXPECTS(opt.target_steps > 0, bad_option,
               "reasoning_steps_options.target_steps must be > 0");
  return std::min(1.0, static_cast<double>(count_reasoning_steps(text, opt)) / opt.target_steps);
}

/// The reasoning of a completion: the text between the first "<think>" and the first "</think>"
/// after it. Without a think block, `whole_if_missing` returns the whole text, otherwise an empty
/// view; an unclosed "<think>" yields everything after it.
inline std::string_view reasoning_text(std::string_view text,
                                       bool whole_if_missing = true) noexcept {
  const std::size_t open = text.find(think_open);
  if (open == std::string_view::npos) {
    // R1's chat template often puts "<think>" in the prompt: the completion starts inside it.
    const std::size_t close = text.find(think_close);
    if (close != std::string_view::npos) return text.substr(0, close);
    return whole_if_missing ? text : std::string_view{};
  }
  const std::size_t begin = open + think_open.size();
  const std::size_t close = text.find(think_close, begin);
  return close == std::string_view::npos ? text.substr(begin) : text.substr(begin, close - begin);
}

/// The final answer region used by TRL's `reasoning_accuracy_reward`: the text after the last
/// "</think>" (nullopt when there is none, which TRL scores 0).
inline std::optional<std::string_view> after_reasoning(std::string_view text) noexcept {
  const std::size_t close = text.rfind(think_close);
  if (close == std::string_view::npos) return std::nullopt;
  return text.substr(close + think_close.size());
}

}  // namespace grpo::rewards

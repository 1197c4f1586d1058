// SPDX-License-Identifier: Apache-2.0
/// @file parse_cursor.hpp
/// @brief The maths parser's cursor over a normalised answer: position, blank skipping, single
///        characters and commands, raw `{...}` groups, the budget and the nesting-depth guard. The
///        grammar (parse.hpp) derives from it.
#pragma once

#include <rewards/math/options.hpp>
#include <rewards/math/parse_lexicon.hpp>
#include <rewards/math/text.hpp>

#include <cstddef>
#include <string_view>

namespace grpo::rewards::math {
namespace detail {

/// Input, cursor and limits of one parse. The cursor only moves forward.
class parse_cursor {
 protected:
  parse_cursor(std::string_view s, budget& b, int max_depth, int depth) noexcept
      : s_(s), b_(b), depth_(depth), max_depth_(max_depth) {}

  std::string_view s_;
  std::size_t p_ = 0;
  budget& b_;
  int depth_;
  int max_depth_;

  /// RAII depth counter: construction fails (syntax_error) beyond max_depth_.
  struct depth_guard {
    parse_cursor& P;
    explicit depth_guard(parse_cursor& p) : P(p) {
      if (++P.depth_ > P.max_depth_) {
        --P.depth_;
        throw syntax_error{};
      }
    }
    ~depth_guard() { --P.depth_; }
    depth_guard(const depth_guard&) = delete;
    depth_guard& operator=(const depth_guard&) = delete;
  };

  // Cursor helpers. All of them are O(1) apart from blank skipping; the cursor only moves forward,
  // so a parse is linear in the input apart from raw_group's bounded look-ahead.
  void skip_ws() noexcept {
    while (p_ < s_.size() && is_space(s_[p_])) ++p_;
  }
  bool at_end() noexcept {
    skip_ws();
    return p_ >= s_.size();
  }
  char peek() noexcept {
    skip_ws();
    return p_ < s_.size() ? s_[p_] : '\0';
  }
  char peek_raw(std::size_t off = 0) const noexcept {
    return p_ + off < s_.size() ? s_[p_ + off] : '\0';
  }
  bool at_cmd(std::string_view name) noexcept {
    skip_ws();
    return command_at(s_, p_, name);
  }
  bool eat_cmd(std::string_view name) noexcept {
    if (!at_cmd(name)) return false;
    p_ += 1 + name.size();
    return true;
  }
  bool eat(char c) noexcept {
    if (peek() != c) return false;
    ++p_;
    return true;
  }
  void expect(char c) {
    if (!eat(c)) throw syntax_error{};
  }
  void expect_cmd(std::string_view name) {
    if (!eat_cmd(name)) throw syntax_error{};
  }
  /// Name of the command at the cursor (letters after '\'), empty if none.
  std::string_view command_name() noexcept {
    skip_ws();
    if (p_ >= s_.size() || s_[p_] != '\\') return {};
    std::size_t e = p_ + 1;
    while (e < s_.size() && is_alpha(s_[e])) ++e;
    return s_.substr(p_ + 1, e - p_ - 1);
  }
  /// `\\` (row separator of matrix environments) at the cursor.
  bool at_double_backslash() noexcept {
    skip_ws();
    return peek_raw() == '\\' && peek_raw(1) == '\\';
  }
  /// Raw text of a `{...}` group at the cursor (at most 4 KiB), cursor moved past it. Used where
  /// the content is a name, not maths (`\text`, `\begin`, `\mathbb`, subscripts).
  std::string_view raw_group() {
    if (peek() != '{') throw syntax_error{};
    const std::size_t close = find_closing_brace(s_, p_, 4096);
    if (close == npos) throw syntax_error{};
    const std::string_view g = s_.substr(p_ + 1, close - p_ - 1);
    b_.spend(g.size());
    p_ = close + 1;
    return g;
  }
  /// The run of letters at the cursor (without consuming it).
  std::string_view word_at() noexcept {
    skip_ws();
    std::size_t e = p_;
    while (e < s_.size() && is_alpha(s_[e])) ++e;
    return s_.substr(p_, e - p_);
  }
};

}  // namespace detail
}  // namespace grpo::rewards::math

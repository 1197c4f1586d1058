// SPDX-License-Identifier: Apache-2.0
/// @file language.hpp
/// @brief DeepSeek-R1 language-consistency reward: fraction of the reasoning's words written in the
///        target language's script(s), with math, LaTeX and code spans removed.
#pragma once

#include <grpo/core/error.hpp>
#include <rewards/format.hpp>
#include <rewards/utf8.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace grpo::rewards {

/// A set of scripts (bit i = utf8::script value i).
struct script_set {
  std::uint32_t bits = 0;
  /// @return true when `s` is in the set.
  [[nodiscard]] constexpr bool contains(utf8::script s) const noexcept {
    return (bits >> static_cast<unsigned>(s)) & 1U;
  }
  /// @return this set plus `s`.
  [[nodiscard]] constexpr script_set with(utf8::script s) const noexcept {
    return {bits | (1U << static_cast<unsigned>(s))};
  }
};

/// Scripts that count as "the target language" for an ISO 639-1 code. A script, not a language,
/// is what the rule can see: "en" and "fr" both map to Latin, which is what R1 needs (it penalises
/// Chinese drifting into English reasoning and vice versa).
/// @pre `code` is one of the supported codes (case-sensitive, lower case)
/// @throws grpo::error [grpo.bad_option] for an unknown code
inline script_set target_scripts(std::string_view code) {
  using utf8::script;
  const auto is = [&](std::initializer_list<std::string_view> l) {
    for (auto c : l)
      if (c == code) return true;
    return false;
  };
  script_set s;
  if (is({"en", "fr", "de", "es", "it", "pt", "nl", "vi", "id", "ms", "tr", "pl", "cs", "sv",
          "da", "no", "fi", "ro", "hu", "sw", "tl", "ca", "hr", "sk", "sl", "et", "lv", "lt"}))
    return s.with(script::latin);
  if (is({"zh", "zh-cn", "zh-tw", "zh-hans", "zh-hant"})) return s.with(script::han);
  if (is({"ja"})) return s.with(script::han).with(script::hiragana).with(script::katakana);
  if (is({"ko"})) return s.with(script::hangul);
  if (is({"ru", "uk", "bg", "sr", "be", "kk", "mk", "mn"})) return s.with(script::cyrillic);
  if (is({"el"})) return s.with(script::greek);
  if (is({"he", "yi"})) return s.with(script::hebrew);
  if (is({"ar", "fa", "ur", "ps"})) return s.with(script::arabic);
  if (is({"hi", "mr", "ne", "sa"})) return s.with(script::devanagari);
  if (is({"bn", "as"})) return s.with(script::bengali);
  if (is({"ta"})) return s.with(script::tamil);
  if (is({"th"})) return s.with(script::thai);
  if (is({"ka"})) return s.with(script::georgian);
  if (is({"hy"})) return s.with(script::armenian);
  GRPO_THROW(bad_option, "language: unsupported target language code '" + std::string(code) + "'");
}

/// Options of the language-consistency rule.
struct language_options {
  bool reasoning_only = true;  ///< score the <think> block (R1: "the CoT"); false scores everything
  bool strip_math = true;      ///< drop $..$, $$..$$, \(..\), \[..\] spans and \commands
  bool strip_code = true;      ///< drop ``` fenced blocks and `inline code`
  double empty_value = 0.0;  ///< reward when no word is left (all math, empty): 0 so it is not free
};

/// Word counts behind the reward.
struct word_counts {
  std::size_t total = 0;   ///< words of any script
  std::size_t target = 0;  ///< words in a target script
};

namespace detail {
/// Calls `f(cp)` for every code point of `text` outside math, LaTeX and code spans and R1 tags
/// (<think>, </think>, <answer>, </answer>); a removed span
/// is reported as one space so that it separates words. Each delimiter's closing search runs at
/// most once per opening kind after a miss (the miss is cached), so the scan is linear.
template <class F>
inline void for_each_prose(std::string_view text, const language_options& opt, F&& f) {
  constexpr auto npos = std::string_view::npos;
  // Cached "no closing delimiter after this point" markers (position past which a search failed).
  std::size_t no_fence = npos, no_ddollar = npos, no_bracket = npos, no_paren = npos;
  std::size_t i = 0;
  const auto try_skip = [&](std::string_view open, std::string_view close, std::size_t& miss) {
    if (text.compare(i, open.size(), open) != 0) return false;
    if (miss != npos && i >= miss) return false;
    const std::size_t e = text.find(close, i + open.size());
    if (e == npos) {
      miss = 0;  // never closes from here on, nor from any later position
      return false;
    }
    i = e + close.size();
    f(U' ');
    return true;
  };
  while (i < text.size()) {
    const char c = text[i];
    if (opt.strip_code && c == '`') {
      if (try_skip("```", "```", no_fence)) continue;
      // Inline code: closes on the same line, otherwise the backtick is literal.
      const std::size_t e = text.find_first_of("`\n", i + 1);
      if (e != npos && text[e] == '`' && text.compare(i, 3, "```") != 0) {
        i = e + 1;
        f(U' ');
        continue;
      }
    }
    if (c == '<') {
      // The R1 tags are markup, not words of any language.
      bool tag = false;
      for (std::string_view t : {think_open, think_close, answer_open, answer_close}) {
        if (text.compare(i, t.size(), t) == 0) {
          i += t.size();
          tag = true;
          break;
        }
      }
      if (tag) {
        f(U' ');
        continue;
      }
    }
    if (opt.strip_math && c == '$') {
      if (try_skip("$$", "$$", no_ddollar)) continue;
      // Inline $..$ closes on the same line; an unmatched $ (a price) is literal.
      const std::size_t e = text.find_first_of("$\n", i + 1);
      if (e != npos && text[e] == '$' && e > i + 1) {
        i = e + 1;
        f(U' ');
        continue;
      }
    }
    if (opt.strip_math && c == '\\') {
      if (try_skip("\\[", "\\]", no_bracket) || try_skip("\\(", "\\)", no_paren)) continue;
      // A LaTeX command name (\frac, \alpha, \text): its letters are not prose.
      std::size_t j = i + 1;
      while (j < text.size() && ((text[j] | 0x20) >= 'a' && (text[j] | 0x20) <= 'z')) ++j;
      if (j > i + 1) {
        i = j;
        f(U' ');
        continue;
      }
    }
    const utf8::decoded d = utf8::decode(text, i);
    f(d.cp);
    i += static_cast<std::size_t>(d.len);
  }
}
}  // namespace detail

/// Counts words: a maximal run of letters (combining marks attach to the preceding letter) of one
/// script is one word, except in Han, Hiragana and Katakana, where every character is a word
/// (CJK text has no spaces; counting characters is the usual proxy). Digits, punctuation and
/// symbols separate words and are not counted.
/// @post result.target <= result.total; linear time
inline word_counts count_words(std::string_view text, script_set target,
                               const language_options& opt = {}) {
  word_counts wc;
  utf8::script run = utf8::script::common;  // script of the word being read, common = none
  detail::for_each_prose(text, opt, [&](char32_t cp) {
    if (run != utf8::script::common && utf8::is_mark(cp)) return;  // accent on the current word
    const utf8::script s = utf8::script_of(cp);
    if (s == utf8::script::common) {
      run = utf8::script::common;
      return;
    }
    if (utf8::is_unspaced(s) || s != run) {
      ++wc.total;
      if (target.contains(s)) ++wc.target;
    }
    run = utf8::is_unspaced(s) ? utf8::script::common : s;
  });
  return wc;
}

/// R1 language-consistency reward: target words / all words of the reasoning (the <think> block
/// when `reasoning_only`), after removing math and code; `opt.empty_value` when no word remains.
/// @post 0 <= result <= 1 when 0 <= opt.empty_value <= 1
inline double language_consistency_reward(std::string_view completion, script_set target,
                                          const language_options& opt = {}) {
  const std::string_view scope = opt.reasoning_only ? reasoning_text(completion) : completion;
  const word_counts wc = count_words(scope, target, opt);
  if (wc.total == 0) return opt.empty_value;
  return static_cast<double>(wc.target) / static_cast<double>(wc.total);
}

/// Same, with the target given as a language code ("en", "zh", "ja", ...).
/// @throws grpo::error [grpo.bad_option] for an unknown code
inline double language_consistency_reward(std::string_view completion, std::string_view language,
                                          const language_options& opt = {}) {
  return language_consistency_reward(completion, target_scripts(language), opt);
}

}  // namespace grpo::rewards

// SPDX-License-Identifier: Apache-2.0
/// @file verify.hpp
/// @brief verify(gold, prediction): extraction -> normalisation -> parsing -> equivalence, with a
///        hard step budget, never throwing on model text.
#pragma once

#include <rewards/math/equivalence.hpp>
#include <rewards/math/extract.hpp>
#include <rewards/math/normalize.hpp>
#include <rewards/math/options.hpp>
#include <rewards/math/parse.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace grpo::rewards::math {
namespace detail {

/// Option letter A..J of a multiple-choice answer.
/// Gold (`strict`): the whole answer is the letter, possibly in `()`, `{}` or `\text{}`.
/// Prediction: also "(C) 42", "C) 42", "C.", "Option C"; never a list such as "A, B".
inline std::optional<char> option_letter(std::string_view s, bool strict) {
  std::string t;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (command_at(s, i, "text")) {
      i += 4;
      continue;
    }
    if (s[i] == '{' || s[i] == '}') continue;
    t += s[i];
  }
  std::string_view v = trim(t);
  if (!strict) {
    for (std::string_view w : {"option", "choice", "answer"}) {
      if (iequal_at(v, 0, w)) {
        v = trim(v.substr(w.size()));
        if (!v.empty() && v[0] == ':') v = trim(v.substr(1));
      }
    }
  }
  bool paren = false;
  if (!v.empty() && v[0] == '(') {
    paren = true;
    v = trim(v.substr(1));
  }
  if (v.empty()) return std::nullopt;
  const char letter = strict ? v[0] : to_upper(v[0]);
  if (letter < 'A' || letter > 'J') return std::nullopt;
  if (v.size() > 1 && is_alpha(v[1])) return std::nullopt;
  std::string_view rest = trim(v.substr(1));
  if (paren) {
    if (rest.empty() || rest[0] != ')') return std::nullopt;
    rest = trim(rest.substr(1));
    // Gold "(D) 7 apples": the option with its text.
    if (strict) return std::optional<char>(letter);
    return rest.find_first_of(",;") == npos ? std::optional<char>(letter) : std::nullopt;
  }
  if (rest.empty()) return letter;
  // Gold "D) 7 apples", "D. 7 apples", "C Cecile" (the option letter, then its text).
  if (strict) {
    if ((rest[0] == ')' || rest[0] == '.' || rest[0] == ':') &&
        (rest.size() == 1 || is_space(rest[1])))
      return letter;
    if (v.size() > 2 && v[1] == ' ' && v[2] >= 'A' && v[2] <= 'Z' && letter != 'I') return letter;
    return std::nullopt;
  }
  if (rest[0] == ')' || rest[0] == '.' || rest[0] == ':')
    return rest.find_first_of(",;") == npos ? std::optional<char>(letter) : std::nullopt;
  return std::nullopt;
}

/// A juxtaposition of two or more words and nothing else (`forty two`, `all real numbers`).
inline bool only_words(const expr& e) noexcept {
  if (e.k != kind::mul || e.args.size() < 2) return false;
  for (const expr& a : e.args)
    if (a.k != kind::text) return false;
  return true;
}

/// True when `s` is not valid UTF-8 (sanitize_utf8 would replace some byte).
inline bool has_invalid_utf8(std::string_view s) {
  return sanitize_utf8(s) != s;
}

/// Normalised strings that are trivially the same answer: equal after removing blanks, or equal
/// ignoring case when both are plain words ("Monday" / "monday", "No" / "no").
inline bool same_text(std::string_view a, std::string_view b) {
  std::string x, y;
  bool words = true;
  for (char ch : a)
    if (!is_space(ch)) x += ch, words = words && is_alpha(ch);
  for (char ch : b)
    if (!is_space(ch)) y += ch, words = words && is_alpha(ch);
  if (x.empty()) return false;
  if (x == y) return true;
  // Single letters keep their case (variables `a` and `A` differ); words do not.
  return words && x.size() >= 2 && ascii_lower(x) == ascii_lower(y);
}

}  // namespace detail

/// Grades `prediction` (a model completion) against `gold` (a reference answer or solution).
///
/// Pipeline: extract_answer on both (gold: usually the whole string or its last box) ->
/// normalize_answer -> multiple-choice shortcut when the gold is an option letter -> identical
/// text shortcut -> parse both -> equivalent(gold, pred).
/// @pre none: any bytes are accepted for both arguments.
/// @post `unparseable_gold` when the gold yields no answer or cannot be parsed (and the texts
///       differ); `correct` / `incorrect` otherwise. Never throws: exhaustion of
///       `opt.budget_steps`, allocation failure and CAS errors are caught and graded `incorrect`
///       (`unparseable_gold` while the gold is still being read).
inline verdict verify(std::string_view gold, std::string_view prediction,
                      const verify_options& opt = {}) noexcept {
  bool gold_done = false;
  try {
    budget b(opt.budget_steps);
    const auto gt = extract_answer(gold, opt.gold_extraction);
    // Invalid UTF-8 in an answer is not an answer: two different bad bytes must not become the
    // same replacement character and match as identical text.
    if (!gt || detail::has_invalid_utf8(*gt)) return verdict::unparseable_gold;
    const std::string gn = normalize_answer(*gt, b);
    if (detail::trim(gn).empty()) return verdict::unparseable_gold;
    const std::optional<char> letter =
        opt.multiple_choice ? detail::option_letter(gn, true) : std::nullopt;
    std::optional<expr> ge;
    if (!letter) ge = parse(gn, b, opt.max_depth);
    // `0/0`, `\infty - \infty`: undefined, so the gold is unusable (never matched as text).
    if (ge && detail::is_undefined(*ge, b)) return verdict::unparseable_gold;
    // A gold that is only words ("Answer is forty two." -> `forty two`): prose, not an answer
    // that can be checked; the sample is skipped (TRL / open-r1 return None), never matched as
    // identical text. One word (`Monday`, `\text{odd}`) stays a text answer.
    if (ge && detail::only_words(*ge)) return verdict::unparseable_gold;
    gold_done = true;

    const auto pt = extract_answer(prediction, opt.pred_extraction);
    if (!pt) return ge || letter ? verdict::incorrect : verdict::unparseable_gold;
    if (detail::has_invalid_utf8(*pt)) return verdict::incorrect;
    const std::string pn = normalize_answer(*pt, b);
    if (letter) {
      // The letter as the whole answer, else stated in prose ("so I pick C.").
      auto pl = detail::option_letter(pn, false);
      if (!pl) pl = detail::letter_in_prose(pn);
      if (!pl) {  // the anchor's sentence did not name it: the completion's last 1 KiB
        const std::string_view raw = detail::after_think(prediction);
        pl = detail::letter_in_prose(raw.substr(raw.size() > 1024 ? raw.size() - 1024 : 0));
      }
      return pl && *pl == *letter ? verdict::correct : verdict::incorrect;
    }
    if (detail::same_text(gn, pn)) return verdict::correct;
    if (!ge) return verdict::unparseable_gold;
    const auto pe = parse(pn, b, opt.max_depth);
    if (!pe || detail::is_undefined(*pe, b)) return verdict::incorrect;
    return equivalent(*ge, *pe, opt, b) ? verdict::correct : verdict::incorrect;
  } catch (...) {
    return gold_done ? verdict::incorrect : verdict::unparseable_gold;
  }
}

}  // namespace grpo::rewards::math

// SPDX-License-Identifier: Apache-2.0
/// @file anchors.hpp
/// @brief Language-independent pieces of answer extraction: full-width forms folded to ASCII,
///        "the answer is" anchors in many languages, concluding sentences ("therefore ... = 13"),
///        the number right after an anchor, and option letters stated in prose.
#pragma once

#include <rewards/math/text.hpp>

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace grpo::rewards::math::detail {

/// Folds full-width ASCII variants (U+FF01..U+FF5E: `１２`, `（Ｂ）`, `：`, `，`), the ideographic
/// space U+3000 and the ideographic full stop U+3002 to ASCII, so that one set of anchors and one
/// number reader serve CJK text. Other bytes are copied. Linear.
inline std::string fold_fullwidth(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == 0xEF && i + 2 < s.size()) {
      const auto b1 = static_cast<unsigned char>(s[i + 1]);
      const auto b2 = static_cast<unsigned char>(s[i + 2]);
      // U+FF01..U+FF3F = EF BC 81..BF, U+FF40..U+FF5E = EF BD 80..9E.
      if (b1 == 0xBC && b2 >= 0x81 && b2 <= 0xBF) {
        out += static_cast<char>(b2 - 0x81 + 0x21);
        i += 2;
        continue;
      }
      if (b1 == 0xBD && b2 >= 0x80 && b2 <= 0x9E) {
        out += static_cast<char>(b2 - 0x80 + 0x60);
        i += 2;
        continue;
      }
    }
    if (c == 0xE3 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80) {
      const auto b2 = static_cast<unsigned char>(s[i + 2]);
      if (b2 == 0x80 || b2 == 0x82) {  // U+3000 ideographic space, U+3002 full stop
        out += b2 == 0x80 ? ' ' : '.';
        i += 2;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

/// True when `s` holds a byte sequence that fold_fullwidth changes (cheap pre-check).
inline bool has_fullwidth(std::string_view s) noexcept {
  for (std::size_t i = 0; i + 1 < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    const auto d = static_cast<unsigned char>(s[i + 1]);
    if ((c == 0xEF && (d == 0xBC || d == 0xBD)) || (c == 0xE3 && d == 0x80)) return true;
  }
  return false;
}

// Anchors: phrases that introduce the final answer. "Strong" ones name the *final* answer and
// override a box stated before them. Matching is ASCII-case-insensitive; non-Latin scripts are
// listed in the spellings models write. Breadth over the languages of the usual multilingual
// suites (MGSM and the like): en, fr, es, de, it, pt, nl, ru, uk, pl, tr, zh, ja, ko, ar, hi, bn,
// th, vi, id, sw, te.
inline constexpr std::array<std::string_view, 20> strong_anchors{
    "final answer is",       "final answer:",   "final answer =",
    "final answer",          "réponse finale",  "respuesta final",
    "endgültige antwort",    "risposta finale", "resposta final",
    "окончательный ответ",   "最终答案",        "最終答案",
    "最終的な答え",          "최종 답",         "최종 정답",
    "الإجابة النهائية",      "अंतिम उत्तर",       "jawaban akhir",
    "câu trả lời cuối cùng", "คำตอบสุดท้าย"};

inline constexpr std::array<std::string_view, 48> weak_anchors{"answer is",    "answer:",
                                                               "answer =",     "réponse est",
                                                               "réponse :",    "réponse:",
                                                               "respuesta es", "respuesta:",
                                                               "antwort ist",  "antwort lautet",
                                                               "antwort:",     "risposta è",
                                                               "risposta:",    "resposta é",
                                                               "resposta:",    "antwoord is",
                                                               "antwoord:",    "ответ:",
                                                               "Ответ:",       "ответ —",
                                                               "Ответ —",      "ответ равен",
                                                               "Ответ равен",  "відповідь:",
                                                               "Відповідь:",   "odpowiedź:",
                                                               "Odpowiedź:",   "cevap:",
                                                               "Cevap:",       "答案是",
                                                               "答案为",       "答案:",
                                                               "答:",          "答えは",
                                                               "答え:",        "정답은",
                                                               "답은",         "답:",
                                                               "الإجابة هي",   "الإجابة:",
                                                               "الجواب هو",    "الجواب:",
                                                               "उत्तर है",       "उत्तर:",
                                                               "উত্তর:",        "jawabannya adalah",
                                                               "đáp án là",    "उत्तर"};

// Concluding markers: the sentence after the last of them states the result ("因此 ... 300分钟",
// "donc ... = 70"). Used only when nothing else (box, anchor, bold, maths environment) matched.
inline constexpr std::array<std::string_view, 30> conclusion_markers{
    "therefore",    "thus",      "hence", "so the",     "in total", "donc",
    "por lo tanto", "por tanto", "also ", "daher",      "quindi",   "portanto",
    "поэтому",      "Поэтому",   "итого", "Итого",      "因此",     "所以",
    "故",           "总共",      "一共",  "したがって", "よって",   "따라서",
    "그러므로",     "لذلك",      "इसलिए", "अतः",        "jadi",     "vì vậy"};

/// Rightmost occurrence of any phrase of `list` in `s` (ASCII-case-insensitive): position and
/// length, or npos.
template <std::size_t N>
std::pair<std::size_t, std::size_t> rfind_any(std::string_view s,
                                              const std::array<std::string_view, N>& list) {
  std::size_t best = npos, len = 0;
  for (std::string_view p : list) {
    const std::size_t at = rfind_ci(s, p);
    if (at != npos && (best == npos || at > best)) best = at, len = p.size();
  }
  return {best, len};
}

/// Length of a plain number at `s[i..]`: `-?\d+([.,]\d+)*(/\d+)?` (thousands groups, decimal
/// point or comma, a simple fraction). 0 when there is none.
inline std::size_t number_at(std::string_view s, std::size_t i) noexcept {
  std::size_t j = i;
  if (j < s.size() && s[j] == '-') ++j;
  const std::size_t d = j;
  while (j < s.size() && is_digit(s[j])) ++j;
  if (j == d) return 0;
  while (j + 1 < s.size() && (s[j] == '.' || s[j] == ',') && is_digit(s[j + 1])) {
    ++j;
    while (j < s.size() && is_digit(s[j])) ++j;
  }
  if (j + 1 < s.size() && s[j] == '/' && is_digit(s[j + 1])) {
    ++j;
    while (j < s.size() && is_digit(s[j])) ++j;
  }
  return j - i;
}

/// A number token starts at `i` (not in the middle of a word or of another number).
inline bool number_starts(std::string_view s, std::size_t i) noexcept {
  if (i > 0) {
    const char p = s[i - 1];
    if (is_digit(p) || is_alpha(p) || p == '.' || p == ',' || p == '_' || p == '^') return false;
  }
  return number_at(s, i) > 0;
}

/// The result stated by a concluding sentence: in the text after the last concluding marker (or,
/// without one, the last line), the number after the last `=`; else the only number there.
/// nullopt when that is ambiguous (several numbers and no `=`) - never "the last number".
inline std::optional<std::string> concluding_number(std::string_view s) {
  std::string_view t = trim(s);
  const auto [at, len] = rfind_any(t, conclusion_markers);
  std::string_view tail;
  const bool marked = at != npos;
  if (marked) {
    tail = t.substr(at + len);
  } else {
    const std::size_t nl = t.rfind('\n');
    tail = nl == npos ? t : t.substr(nl + 1);
  }
  if (tail.size() > 600) return std::nullopt;
  const std::size_t eq = tail.rfind('=');
  if (eq != npos) {
    std::size_t i = eq + 1;
    while (i < tail.size() && (is_space(tail[i]) || tail[i] == '$' || tail[i] == '*')) ++i;
    if (const std::size_t n = number_at(tail, i)) return std::string(tail.substr(i, n));
    return std::nullopt;
  }
  // Without a concluding marker only an explicit "= value" states a result: a dangling "The
  // value is 3 apples after we add" is not an answer.
  if (!marked) return std::nullopt;
  std::optional<std::string> only;
  for (std::size_t i = 0; i < tail.size(); ++i) {
    if (!number_starts(tail, i)) continue;
    const std::size_t n = number_at(tail, i);
    const std::string v(tail.substr(i, n));
    if (only && *only != v) return std::nullopt;  // two different numbers: ambiguous
    only = v;
    i += n;
  }
  return only;
}

/// Lead byte of a UTF-8 letter of a non-Latin script: Cyrillic (D0-D1), Hebrew/Arabic (D7-DB),
/// Indic and Thai (E0), CJK, kana, hangul (E3-ED). Not E2 (U+2000-U+2FFF: maths operators, arrows,
/// punctuation) nor CE-CF (Greek, the letters of maths).
inline bool script_letter_lead(unsigned char c) noexcept {
  return (c >= 0xD0 && c <= 0xD1) || (c >= 0xD7 && c <= 0xDB) || c == 0xE0 ||
         (c >= 0xE3 && c <= 0xED);
}

// Copulas that state a value: "... which is 1,000.99€", "it's 12 m²", "Soucis : 2,74 $",
// "比例为13/28", "la somme est 12". Matched right before the number (ASCII-case-insensitive, a
// Latin word must start at a word boundary).
// `=` is not one: "W(n) = 1 and W(n) = -1" is an equation list, which concluding_number and the
// parser handle.
inline constexpr std::array<std::string_view, 25> value_copulas{
    "is",   "it's",  "are",   "was", "equals", "equal to", "about", "approximately", "be",
    ":",    "est",   "ist",   "es",  "é",      "è",        "sont",  "sind",          "son",
    "vaut", "равно", "равен", "为",  "是",     "等于",     "約"};

/// The result stated at the end of a short prose line: the last number of the last line (at
/// most 200 bytes), when a copula or a colon stands right before it ("the number is not 10
/// which is 1,000.99€", "Soucis : 2,74 $ a.."). A `d,dd` amount followed by a currency sign is a
/// decimal comma (thousands groups have three digits). nullopt otherwise: "3 apples and 4
/// pears" states nothing, and there is never a bare last-number fallback.
inline std::optional<std::string> stated_last_number(std::string_view s) {
  std::string_view t = trim(s);
  const std::size_t nl = t.rfind('\n');
  if (nl != npos) t = t.substr(nl + 1);
  if (t.size() > 200) return std::nullopt;
  std::size_t at = npos, len = 0;
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (!number_starts(t, i)) continue;
    at = i, len = number_at(t, i);
    i += len - 1;
  }
  if (at == npos) return std::nullopt;
  // The number ends the statement: at most one word (a unit, "m²", "$ a..") after it; "The
  // value is 3 apples after we add" dangles.
  int words_after = 0;
  for (std::size_t i = at + len; i < t.size();) {
    const bool latin = is_alpha(t[i]);
    if (latin || script_letter_lead(static_cast<unsigned char>(t[i]))) {
      ++words_after;
      while (i < t.size() &&
             (latin ? is_alpha(t[i]) : static_cast<unsigned char>(t[i]) >= 0x80 && !is_space(t[i])))
        ++i;
      continue;
    }
    ++i;
  }
  if (words_after > 1) return std::nullopt;
  // Several values joined ("x is 1 and y is 2", "1, 2 or 3"): a list, not one stated result.
  std::size_t prev_end = 0;
  for (std::size_t i = 0; i < at; ++i)
    if (number_starts(t, i)) prev_end = i + number_at(t, i), i = prev_end - 1;
  const std::string_view between = t.substr(prev_end, at - prev_end);
  if (between.find(',') != npos || between.find(';') != npos || between.find('&') != npos)
    return std::nullopt;
  for (std::string_view w : {"and", "or", "et", "und", "y", "e", "o", "ou", "и", "или"}) {
    for (std::size_t p = 0; (p = between.find(w, p)) != npos; ++p) {
      const bool left = p == 0 || !is_alpha(between[p - 1]);
      const bool right = p + w.size() == between.size() || !is_alpha(between[p + w.size()]);
      if (left && right) return std::nullopt;
    }
  }
  for (std::string_view w : {"和", "或", "与"})
    if (between.find(w) != npos) return std::nullopt;
  std::size_t b = at;
  while (b > 0 && (is_space(t[b - 1]) || t[b - 1] == '$' || t[b - 1] == '*')) --b;
  const std::string_view before = t.substr(0, b);
  bool stated = false;
  for (std::string_view c : value_copulas) {
    if (before.size() < c.size() || rfind_ci(before, c) != before.size() - c.size()) continue;
    const std::size_t w = before.size() - c.size();
    if (is_alpha(c[0]) && w > 0 && is_alpha(before[w - 1])) continue;  // "this" is not "is"
    stated = true;
    break;
  }
  if (!stated) return std::nullopt;
  std::string num(t.substr(at, len));
  const std::size_t comma = num.find(',');
  if (comma != npos && num.find(',', comma + 1) == npos && num.find('.') == npos &&
      num.size() - comma - 1 <= 2) {
    std::size_t k = at + len;
    while (k < t.size() && t[k] == ' ') ++k;
    static constexpr std::string_view currency[] = {"$", "\\$", "€",  "£", "¥",
                                                    "₹", "₽", "zł", "kr"};
    for (std::string_view c : currency)
      if (t.compare(k, c.size(), c) == 0) num[comma] = '.';
  }
  return num;
}

/// True when `s` has a natural-language word: three ASCII letters in a row that are not a LaTeX
/// command name, or a letter of a non-Latin script.
inline bool has_word(std::string_view s) noexcept {
  std::size_t run = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (script_letter_lead(static_cast<unsigned char>(s[i]))) return true;
    if (s[i] == '\\') {
      while (i + 1 < s.size() && is_alpha(s[i + 1])) ++i;
      run = 0;
      continue;
    }
    run = is_alpha(s[i]) ? run + 1 : 0;
    if (run >= 3) return true;
  }
  return false;
}

/// Text that is prose rather than a bare answer: it contains a concluding marker, a letter of a
/// non-Latin script, or at least four words of two or more ASCII letters.
inline bool looks_like_prose(std::string_view s) {
  if (rfind_any(s, conclusion_markers).first != npos) return true;
  int words = 0;
  std::size_t run = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (script_letter_lead(c)) return true;
    if (s[i] == '\\') {  // a LaTeX command name is not a word
      if (run >= 2) ++words;
      run = 0;
      while (i + 1 < s.size() && is_alpha(s[i + 1])) ++i;
      continue;
    }
    if (is_alpha(s[i])) {
      ++run;
    } else {
      if (run >= 2) ++words;
      run = 0;
    }
  }
  if (run >= 2) ++words;
  return words >= 4;
}

/// Words of European languages that write a decimal comma (fr, es, de, it, pt, ru, nl, pl, ...):
/// their presence in the prose makes "2,5" a decimal rather than a list of two numbers.
inline constexpr std::array<std::string_view, 26> decimal_comma_cues{
    "réponse",  "respuesta", "antwort",      "risposta", "resposta", "antwoord", "ответ",
    "odpowied", "donc",      "por lo tanto", "daher",    "quindi",   "portanto", "поэтому",
    "il y a",   "hay ",      " est ",        " es ",     " ist ",    " è ",      " é ",
    " sind ",   " sont ",    " son ",        "€",        "итого"};

/// `2,5 €`, `2,74`: a bare number with one comma and one or two digits after it, in prose of a
/// decimal-comma language, is rewritten with a decimal point. Three digits after the comma stay
/// (thousands, `2,500`).
inline void european_decimal(std::string& answer, std::string_view prose) {
  std::string_view t = trim(answer);
  std::size_t i = 0;
  if (i < t.size() && t[i] == '-') ++i;
  const std::size_t int_begin = i;
  while (i < t.size() && is_digit(t[i])) ++i;
  if (i == int_begin || i >= t.size() || t[i] != ',') return;
  const std::size_t comma = i++;
  const std::size_t frac_begin = i;
  while (i < t.size() && is_digit(t[i])) ++i;
  const std::size_t frac = i - frac_begin;
  if (frac == 0 || frac > 2) return;
  for (std::size_t k = i; k < t.size(); ++k)  // only units / currency / punctuation may follow
    if (is_digit(t[k]) || t[k] == ',') return;
  if (rfind_any(prose, decimal_comma_cues).first == npos) return;
  std::string out(t);
  out[comma] = '.';
  answer = std::move(out);
}

/// The first number within `window` bytes after an anchor, for anchored prose ("Réponse: Janeth
/// aura encore 220 $ à payer"): Math-Verify's "answer: .{0,50}? number" rule.
inline std::optional<std::string> first_number_near(std::string_view rest, std::size_t window) {
  for (std::size_t i = 0; i < rest.size() && i < window; ++i) {
    if (rest[i] == '\n') break;
    // A LaTeX fragment in the prose ("每份应该是 (\frac{2}{5}) 吨"): the command with its
    // brace groups, read as maths.
    if (rest[i] == '\\' && i + 1 < rest.size() && is_alpha(rest[i + 1])) {
      std::size_t j = i + 1;
      while (j < rest.size() && is_alpha(rest[j])) ++j;
      while (j < rest.size() && rest[j] == '{') {
        int depth = 0;
        std::size_t k = j;
        for (; k < rest.size(); ++k) {
          depth += rest[k] == '{' ? 1 : rest[k] == '}' ? -1 : 0;
          if (depth == 0) break;
        }
        if (k == rest.size()) return std::nullopt;
        j = k + 1;
      }
      return std::string(rest.substr(i, j - i));
    }
    if (number_starts(rest, i)) return std::string(rest.substr(i, number_at(rest, i)));
  }
  return std::nullopt;
}

/// Option letter A..J stated in prose: "so I pick C.", "the correct option is (B)", "D. it can't
/// be A or B", "réponse est C non A", "B。不是 A", "I think it's B". Rules, first that applies:
/// 1. the text starts with the letter (`C`, `(C)`, `C.`, `C)`, `C:`) followed by a non-letter;
/// 2. after the last choice anchor (answer is / answer: / option / choice / pick / choose /
///    select / go with / it's / réponse / respuesta / 答案 / 选 ...), the first standalone capital
///    letter, skipping at most 4 lower-case words ("for sure").
/// A letter followed by "or"/"and"/","/"/" plus another letter is a hedge: no answer.
inline std::optional<char> letter_in_prose(std::string_view s) {
  s = trim(s);
  auto standalone = [&](std::size_t i) {
    if (i >= s.size() || s[i] < 'A' || s[i] > 'J') return false;
    if (i > 0 && (is_alpha(s[i - 1]) || is_digit(s[i - 1]) || s[i - 1] == '\\')) return false;
    if (i + 1 < s.size() && (is_alpha(s[i + 1]) || is_digit(s[i + 1]) || s[i + 1] == '\''))
      return false;
    // "I think", "I pick": the pronoun, not option I.
    if (s[i] == 'I' && i + 2 < s.size() && s[i + 1] == ' ' && s[i + 2] >= 'a' && s[i + 2] <= 'z')
      return false;
    return true;
  };
  auto hedged = [&](std::size_t i) {
    std::size_t j = i + 1;
    if (j < s.size() && s[j] == ')') ++j;
    while (j < s.size() && s[j] == ' ') ++j;
    std::size_t k = j;
    if (iequal_at(s, j, "or ") || iequal_at(s, j, "and "))
      k = j + (s[j] == 'o' || s[j] == 'O' ? 3 : 4);
    else if (j < s.size() && (s[j] == ',' || s[j] == '/' || s[j] == '&'))
      k = j + 1;
    else
      return false;
    while (k < s.size() && (s[k] == ' ' || s[k] == '(')) ++k;
    return standalone(k);
  };
  // 1. Leading letter.
  std::size_t i = 0;
  if (i < s.size() && s[i] == '(') ++i;
  if (standalone(i) && !(s[i] == 'I' && i + 1 < s.size() && s[i + 1] == ' ') && !hedged(i))
    return s[i];
  // 2. After the last choice anchor.
  static constexpr std::array<std::string_view, 24> anchors{"answer is",
                                                            "answer:",
                                                            "option",
                                                            "choice",
                                                            "pick",
                                                            "choose",
                                                            "select",
                                                            "go with",
                                                            "it's",
                                                            "it is",
                                                            "answer would be",
                                                            "réponse",
                                                            "respuesta",
                                                            "antwort",
                                                            "risposta",
                                                            "resposta",
                                                            "ответ",
                                                            "答案",
                                                            "选",
                                                            "選",
                                                            "答え",
                                                            "정답",
                                                            "الإجابة",
                                                            "उत्तर"};
  const auto [at, len] = rfind_any(s, anchors);
  if (at == npos) return std::nullopt;
  std::size_t j = at + len;
  int words = 0;
  while (j < s.size() && words <= 4) {
    while (j < s.size() && (is_space(s[j]) || s[j] == ':' || s[j] == '(' || s[j] == '*' ||
                            s[j] == '$' || static_cast<unsigned char>(s[j]) >= 0x80))
      ++j;
    if (standalone(j)) return hedged(j) ? std::nullopt : std::optional<char>(s[j]);
    if (j >= s.size() || !(s[j] >= 'a' && s[j] <= 'z')) return std::nullopt;
    while (j < s.size() && is_alpha(s[j])) ++j;
    ++words;
  }
  return std::nullopt;
}

}  // namespace grpo::rewards::math::detail

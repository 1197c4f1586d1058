// SPDX-License-Identifier: Apache-2.0
/// @file normalize.hpp
/// @brief String-level normalisation of an extracted answer before parsing: Unicode maths symbols,
///        spacing and sizing commands, font commands, units, currency, degrees, percent words,
///        thousands separators and decimal commas. Every pass is linear.
#pragma once

#include <rewards/math/options.hpp>
#include <rewards/math/text.hpp>

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace grpo::rewards::math {
namespace detail {

/// Unicode symbols models emit instead of LaTeX, with their LaTeX spelling.
struct unicode_map_entry {
  std::string_view utf8, latex;
};
inline constexpr std::array<unicode_map_entry, 30> unicode_map{{
    {"\u2212", "-"},
    {"\u2013", "-"},
    {"\u2014", "-"},
    {"\u00d7", "\\times "},
    {"\u00f7", "\\div "},
    {"\u00b7", "\\cdot "},
    {"\u22c5", "\\cdot "},
    {"\u03c0", "\\pi "},
    {"\u221a", "\\sqrt"},
    {"\u221e", "\\infty "},
    {"\u2264", "\\le "},
    {"\u2265", "\\ge "},
    {"\u2260", "\\ne "},
    {"\u00b0", ""},
    {"\u00b1", "\\pm "},
    {"\u222a", "\\cup "},
    {"\u2229", "\\cap "},
    {"\u2208", "\\in "},
    {"\u2205", "\\emptyset "},
    {"\u00a0", " "},
    {"\u2009", " "},
    {"\u202f", " "},
    {"\u00b2", "^2"},
    {"\u00b3", "^3"},
    {"\u00bd", "\\frac{1}{2}"},
    {"\u2248", "\\approx "},
    {"\u20ac", ""},
    {"\u00a3", ""},
    {"\u00a5", ""},
    {"\u20b9", ""},
}};

/// Commands dropped outright: sizing, style, `\left`/`\right` (their delimiter stays).
inline constexpr std::array<std::string_view, 22> dropped_commands{
    "left",         "right",     "mleft",  "mright",   "bigl",   "bigr",       "Bigl", "Bigr",
    "biggl",        "biggr",     "Biggl",  "Biggr",    "big",    "Big",        "bigg", "Bigg",
    "displaystyle", "textstyle", "limits", "nolimits", "middle", "scriptstyle"};

/// Font and box commands whose argument is read as text (`\mathrm{cm}`, `\textbf{5}`).
inline constexpr std::array<std::string_view, 16> text_commands{
    "mathrm", "mathbf", "mathit",     "mathsf", "mathtt", "textbf", "textit", "textrm",
    "textsf", "texttt", "textnormal", "mbox",   "hbox",   "textup", "emph",   "textmd"};

/// Curated unit words removed after a number ("5 cm", "12 inches", "3\text{ hours}"). No single
/// letters (an answer `m` or `d` must survive, the lesson of Qwen's and Math-Verify's unit lists).
inline constexpr std::array<std::string_view, 96> unit_words{
    "mm",     "cm",         "km",          "dm",         "meter",       "meters",    "metre",
    "metres", "centimeter", "centimeters", "millimeter", "millimeters", "kilometer", "kilometers",
    "inch",   "inches",     "ft",          "feet",       "foot",        "yard",      "yards",
    "yd",     "mile",       "miles",       "mi",         "kg",          "mg",        "gram",
    "grams",  "kilogram",   "kilograms",   "pound",      "pounds",      "lb",        "lbs",
    "ounce",  "ounces",     "oz",          "ton",        "tons",        "tonne",     "tonnes",
    "second", "seconds",    "sec",         "secs",       "minute",      "minutes",   "min",
    "mins",   "hour",       "hours",       "hr",         "hrs",         "day",       "days",
    "week",   "weeks",      "month",       "months",     "year",        "years",     "yr",
    "yrs",    "dollar",     "dollars",     "cent",       "cents",       "euro",      "euros",
    "yuan",   "rupee",      "rupees",      "rs",         "usd",         "unit",      "units",
    "degree", "degrees",    "deg",         "radian",     "radians",     "liter",     "liters",
    "litre",  "litres",     "ml",          "gallon",     "gallons",     "mph",       "kmh",
    "sq",     "square"};

/// Case-insensitive membership in unit_words (linear over ~100 short words; called at most a few
/// times per answer, on its trailing word only).
inline bool is_unit_word(std::string_view w) noexcept {
  for (std::string_view u : unit_words)
    if (w.size() == u.size() && iequal_at(w, 0, u)) return true;
  return false;
}

/// Synonyms mapped to one spelling so that the parser knows a single name for each (`\dfrac` ->
/// `\frac`, `\leq` -> `\le`, `\quad` -> a blank, a stray `\circ` -> nothing); nullopt: the command
/// is kept as written.
inline std::optional<std::string_view> command_synonym(std::string_view name) noexcept {
  if (name == "dfrac" || name == "tfrac" || name == "cfrac") return "\\frac";
  if (name == "dbinom" || name == "tbinom") return "\\binom";
  if (name == "quad" || name == "qquad" || name == "enspace" || name == "thinspace") return " ";
  if (name == "circ" || name == "degree") return "";  // stray degree sign
  if (name == "leqslant" || name == "leq") return "\\le";
  if (name == "geqslant" || name == "geq") return "\\ge";
  if (name == "neq") return "\\ne";
  if (name == "lt") return "<";
  if (name == "gt") return ">";
  if (name == "varnothing") return "\\emptyset";
  if (name == "ldots" || name == "cdots" || name == "dots") return "\\ldots";
  return std::nullopt;
}

// The steps of normalize_commands. Each looks at the byte at `i`; when its rule applies it appends
// the rewrite to `out`, moves `i` past what it consumed (at least one byte) and returns true.

/// Non-ASCII: a known maths symbol becomes its LaTeX spelling, any other byte is kept (text in
/// other scripts then fails to parse, which is the right outcome). Applies to every byte >= 0x80.
inline bool map_unicode_symbol(std::string_view s, std::size_t& i, std::string& out) {
  if (static_cast<unsigned char>(s[i]) < 0x80) return false;
  for (const auto& e : unicode_map) {
    if (s.compare(i, e.utf8.size(), e.utf8) == 0) {
      out += e.latex;
      i += e.utf8.size();
      return true;
    }
  }
  out += s[i++];
  return true;
}

/// Braces: `{,}` (how LaTeX writes a comma without math spacing) is a thousands separator when 3
/// digits follow (`14{,}916`), else a decimal comma (`3{,}5`, German LaTeX); spaces around it
/// (`14 {, }916`, spaced out by a tokenizer) change nothing. An empty group `{}` (`{}^\circ`) is
/// dropped, and so is a group left empty by these rules or a dropped command: `{{}}` goes whole,
/// so that a second pass has nothing left to drop (found by fuzz_math_parse).
inline bool rewrite_braces(std::string_view s, std::size_t& i, std::string& out) {
  const char c = s[i];
  if (c == '{') {
    std::size_t j = i + 1;
    while (j < s.size() && s[j] == ' ') ++j;
    std::size_t k = j + 1;
    while (k < s.size() && s[k] == ' ') ++k;
    if (j < s.size() && s[j] == ',' && k < s.size() && s[k] == '}') {
      std::size_t d = k + 1, nd = 0;
      while (d < s.size() && is_digit(s[d])) ++d, ++nd;
      while (!out.empty() && out.back() == ' ') out.pop_back();
      out += (nd == 3) ? "" : ".";
      i = k + 1;
      return true;
    }
    if (i + 1 < s.size() && s[i + 1] == '}') {
      i += 2;
      return true;
    }
  }
  if (c == '}' && !out.empty() && out.back() == '{' &&
      (out.size() < 2 || out[out.size() - 2] != '\\')) {
    out.pop_back();
    ++i;
    return true;
  }
  return false;
}

/// Degrees are dropped, not converted (Math-Verify convert_degrees=False): `90^\circ`,
/// `90^\degree` and `90^{\circ}` are 90.
inline bool drop_degrees(std::string_view s, std::size_t& i) noexcept {
  if (s[i] != '^') return false;
  if (command_at(s, i + 1, "circ") || command_at(s, i + 1, "degree")) {
    i += command_at(s, i + 1, "circ") ? 6 : 8;
    return true;
  }
  if (s.compare(i, 8, "^{\\circ}") == 0) {
    i += 8;
    return true;
  }
  return false;
}

/// A command `\name` at `i` (a letter follows the backslash): dropped (sizing, style, `\left` /
/// `\right` with an invisible `.` delimiter), a font command -> `\text`, a synonym -> its
/// spelling, anything else kept. `\quadx_{2}` (a spacing command glued to the next letters, which
/// LaTeX would reject): the spacing, then the letters are read again. Names are compared whole, so
/// `\left` never matches inside `\leftarrow`.
inline void rewrite_command(std::string_view s, std::size_t& i, std::string& out) {
  std::size_t e = i + 1;
  while (e < s.size() && is_alpha(s[e])) ++e;
  std::string_view name = s.substr(i + 1, e - i - 1);
  for (std::string_view sp : {std::string_view("qquad"), std::string_view("quad")}) {
    if (name.size() > sp.size() && name.substr(0, sp.size()) == sp) {
      e = i + 1 + sp.size();
      name = sp;
      break;
    }
  }
  for (std::string_view dc : dropped_commands) {
    if (name == dc) {
      i = e;
      if (i < s.size() && s[i] == '.') ++i;
      return;
    }
  }
  for (std::string_view tc : text_commands) {
    if (name == tc) {
      out += "\\text";
      i = e;
      return;
    }
  }
  if (const auto syn = command_synonym(name))
    out += *syn;
  else
    out.append(s.substr(i, e - i));
  i = e;
}

/// A backslash at `i`. `\\frac` (an over-escaped command, common in JSON-sourced golds) is `\frac`
/// unless the answer has an environment (`has_env`: a matrix, where `\\` ends a row): one backslash
/// is dropped and the command is read next round. Spacing: `\!` joins and eats following blanks
/// ("11,\! 111" is one number), `\,` `\;` `\:` `\ ` `\>` separate. `\$` goes, `\%` is `%`;
/// commands go to rewrite_command; any other escape is kept.
inline bool rewrite_backslash(std::string_view s, std::size_t& i, std::string& out, bool has_env) {
  if (s[i] != '\\' || i + 1 >= s.size()) return false;
  const char d = s[i + 1];
  if (d == '\\' && i + 2 < s.size() && is_alpha(s[i + 2]) && !has_env) {
    ++i;
    return true;
  }
  if (d == '!') {
    i += 2;
    while (i < s.size() && s[i] == ' ') ++i;
  } else if (d == ',' || d == ';' || d == ':' || d == ' ' || d == '>') {
    out += ' ';
    i += 2;
  } else if (d == '$') {
    i += 2;
  } else if (d == '%') {
    out += '%';
    i += 2;
  } else if (is_alpha(d)) {
    rewrite_command(s, i, out);
  } else {
    out += s[i];
    out += d;
    i += 2;
  }
  return true;
}

/// A word (letters not preceded by a letter): the percent words (`28 percent`, `percentage`,
/// `pct`, any case; not `\percent`) become the `%` postfix operator; other words are copied whole.
inline bool rewrite_word(std::string_view s, std::size_t& i, std::string& out) {
  if (!is_alpha(s[i]) || (i != 0 && is_alpha(s[i - 1]))) return false;
  std::size_t e = i;
  while (e < s.size() && is_alpha(s[e])) ++e;
  const std::string_view w = s.substr(i, e - i);
  const std::string lw = ascii_lower(w);
  if ((i == 0 || s[i - 1] != '\\') && (lw == "percent" || lw == "percentage" || lw == "pct"))
    out += '%';
  else
    out.append(w);
  i = e;
  return true;
}

// Single left-to-right pass over the bytes: each position is consumed exactly once (commands are
// read as a whole name), so the cost is linear and the budget is charged one step per rule
// applied (at most one per byte).
/// Pass 1: Unicode symbols -> LaTeX, drop style commands, map font commands to `\text`,
/// `\dfrac`->`\frac`, spacing to a blank, `\!` away, `\$` away, `\%`->`%`, degrees away,
/// `{,}` -> thousands (3 digits follow) or decimal comma, "percent" -> `%`.
inline std::string normalize_commands(std::string_view s, budget& b) {
  std::string out;
  out.reserve(s.size() + 8);
  const bool has_env = s.find("\\begin") != npos;
  std::size_t i = 0;
  while (i < s.size()) {
    b.spend();
    if (map_unicode_symbol(s, i, out) || rewrite_braces(s, i, out)) continue;
    if (s[i] == '~') {
      out += ' ';
      ++i;
      continue;
    }
    if (drop_degrees(s, i) || rewrite_backslash(s, i, out, has_env) || rewrite_word(s, i, out))
      continue;
    out += s[i++];
  }
  return out;
}

/// Removes one trailing unit: `\text{ cm}` (+ `^2`), or a curated unit word after a number.
/// @return true when something was removed.
inline bool strip_trailing_unit(std::string& s) {
  std::string_view t = trim(s);
  // `15\text{ cm}^2`: the exponent belongs to the unit and goes with it.
  // optional exponent after the unit: ^2, ^3, ^{2}
  std::size_t end = t.size();
  if (end >= 2 && t[end - 2] == '^' && is_digit(t[end - 1]))
    end -= 2;
  else if (end >= 4 && t.compare(end - 4, 2, "^{") == 0 && is_digit(t[end - 2]) &&
           t[end - 1] == '}')
    end -= 4;
  const std::string_view body = trim(t.substr(0, end));
  // A final `\text{...}` of words after something else is a unit or a label (Math-Verify's
  // units step); `\text{(A)}` or a lone `\text{Evelyn}` is the answer itself and stays.
  if (!body.empty() && body.back() == '}') {
    // find the matching '{' of the final group and check it is \text{...}
    int depth = 0;
    std::size_t k = body.size();
    while (k-- > 0) {
      if (body[k] == '}') ++depth;
      if (body[k] == '{' && --depth == 0) break;
    }
    if (k == npos || k < 5 || body.compare(k - 5, 5, "\\text") != 0) return false;
    const std::string_view content = trim(body.substr(k + 1, body.size() - k - 2));
    bool wordy = !content.empty();
    for (char ch : content)
      wordy = wordy && (is_alpha(ch) || ch == ' ' || ch == '.' || ch == '/' || ch == '-');
    const std::string_view before = trim(body.substr(0, k - 5));
    if (!wordy || before.empty()) return false;
    s = std::string(before);
    return true;
  }
  // trailing bare unit word after a digit, '}' or a blank
  std::size_t k = body.size();
  while (k > 0 && is_alpha(body[k - 1])) --k;
  if (k == body.size() || k == 0) return false;
  if (!is_unit_word(body.substr(k))) return false;
  if (body[k - 1] == '\\') return false;
  const std::string_view before = trim(body.substr(0, k));
  if (before.empty()) return false;
  const char last = before.back();
  if (!(is_digit(last) || last == '}' || last == ')' || body[k - 1] == ' ')) return false;
  s = std::string(before);
  return true;
}

/// "17 students", "12 ways": a plain number followed by up to three lower-case words (3+ letters,
/// not function names) is the number. Only when nothing but the number precedes the words.
inline void strip_counted_noun(std::string& s) {
  const std::string_view t = trim(s);
  std::size_t i = 0;
  if (i < t.size() && t[i] == '-') ++i;
  const std::size_t digits_begin = i;
  while (i < t.size() && (is_digit(t[i]) || t[i] == '.' || t[i] == ',')) ++i;
  if (i == digits_begin || i >= t.size() || t[i] != ' ') return;
  const std::size_t number_end = i;
  int words = 0;
  while (i < t.size()) {
    while (i < t.size() && t[i] == ' ') ++i;
    const std::size_t b = i;
    while (i < t.size() && t[i] >= 'a' && t[i] <= 'z') ++i;
    const std::string_view w = t.substr(b, i - b);
    if (w.size() < 3 || (i < t.size() && t[i] != ' ')) return;
    static constexpr std::string_view reserved[] = {
        "and", "sin",   "cos",      "tan",  "cot", "sec", "csc",     "log", "exp",
        "inf", "infty", "infinity", "sqrt", "pi",  "mod", "percent", "pct", "percentage"};
    for (std::string_view r : reserved)
      if (w == r) return;
    if (++words > 3) return;
  }
  s = std::string(t.substr(0, number_end));
}

/// "192公斤", "3页", "12 है", "300 минут": a number followed only by words of a non-Latin script
/// (units, counted nouns) and punctuation reads as the number. Unicode maths symbols were mapped
/// to LaTeX before, so what is left above 0x80 is text.
inline void strip_trailing_script_words(std::string& s) {
  const std::string_view t = trim(s);
  std::size_t i = 0;
  while (i < t.size() && static_cast<unsigned char>(t[i]) < 0x80) ++i;
  if (i == 0 || i == t.size()) return;
  std::size_t e = i;
  while (e > 0 && t[e - 1] == ' ') --e;
  if (e == 0 || !(is_digit(t[e - 1]) || t[e - 1] == '%')) return;
  for (std::size_t k = i; k < t.size(); ++k) {
    const char ch = t[k];
    if (static_cast<unsigned char>(ch) >= 0x80 || ch == ' ' || ch == '.' || ch == ',' ||
        ch == '!' || ch == '?' || ch == ':' || ch == ';' || ch == '(' || ch == ')')
      continue;
    return;  // ASCII after the words: not a trailing unit
  }
  s = std::string(t.substr(0, e));
}

/// True when `t` is `-?\d{1,3}(sep\d{3})+(\.\d+)?` for the separator `sep` (thousands groups).
inline bool is_grouped_number(std::string_view t, char sep) noexcept {
  std::size_t i = 0;
  if (i < t.size() && t[i] == '-') ++i;
  std::size_t lead = 0;
  if (i < t.size() && t[i] == '0') return false;  // "0,111" is a decimal comma
  while (i < t.size() && is_digit(t[i])) ++i, ++lead;
  if (lead < 1 || lead > 3) return false;
  std::size_t groups = 0;
  while (i < t.size() && t[i] == sep) {
    ++i;
    std::size_t n = 0;
    while (i < t.size() && is_digit(t[i])) ++i, ++n;
    if (n != 3) return false;
    ++groups;
  }
  if (groups == 0) return false;
  if (i < t.size() && t[i] == '.') {
    ++i;
    std::size_t n = 0;
    while (i < t.size() && is_digit(t[i])) ++i, ++n;
    if (n == 0) return false;
  }
  return i == t.size();
}

/// Thousands separators and decimal commas on the whole answer or on the right side of its last
/// `=`: `7,425,000` / `7 425 000` -> 7425000 (Math-Verify's rule: only a whole number, so that
/// `1, 2` stays a list), `0,5` and `1000,99` -> decimal point (a lead that cannot be a thousands
/// group). Ambiguous `3,5` stays a list.
inline std::string fix_number_separators(std::string s) {
  std::size_t start = 0;
  const std::size_t eq = s.rfind('=');
  if (eq != npos) start = eq + 1;
  const std::string_view whole = s;
  const std::string_view part = trim(whole.substr(start));
  const std::size_t off = static_cast<std::size_t>(part.data() - s.data());
  std::string fixed;
  // Whole number with separators: drop them. Otherwise try a decimal comma.
  if (is_grouped_number(part, ',') || is_grouped_number(part, ' ')) {
    for (char c : part)
      if (c != ',' && c != ' ') fixed += c;
  } else {
    // decimal comma: d+,d+ with lead "0" or >= 4 digits
    std::size_t i = 0;
    if (i < part.size() && part[i] == '-') ++i;
    std::size_t lead = 0;
    while (i < part.size() && is_digit(part[i])) ++i, ++lead;
    if (lead > 0 && i < part.size() && part[i] == ',') {
      std::size_t j = i + 1, n = 0;
      while (j < part.size() && is_digit(part[j])) ++j, ++n;
      const bool zero_lead = lead == 1 && part[i - 1] == '0';
      if (n > 0 && j == part.size() && (zero_lead || lead >= 4)) {
        fixed = std::string(part);
        fixed[i] = '.';
      }
    }
  }
  if (fixed.empty()) return s;
  return s.substr(0, off) + fixed;
}

// Decorations come in any nesting order ("$\$5$.", "\(5\)."), so the strip loops until nothing
// changes (at most 8 rounds: each round removes at least one character or stops).
/// Strips outer decorations repeatedly: `$..$`, `\(..\)`, `\[..\]`, trailing `.`/`,`, a leading
/// currency word.
inline std::string_view strip_decorations(std::string_view t) noexcept {
  for (int round = 0; round < 8; ++round) {
    const std::string_view before = t;
    t = trim(t);
    while (!t.empty() && (t.back() == '.' || t.back() == ';' || t.back() == ',')) {
      // keep a decimal point? "5." -> "5"
      t.remove_suffix(1);
      t = trim(t);
    }
    if (t.size() >= 2 && t.front() == '$' && t.back() == '$') t = t.substr(1, t.size() - 2);
    if (t.size() >= 4 && (t.substr(0, 2) == "\\(" || t.substr(0, 2) == "\\[") &&
        (t.substr(t.size() - 2) == "\\)" || t.substr(t.size() - 2) == "\\]"))
      t = t.substr(2, t.size() - 4);
    if (!t.empty() && t.front() == '$') t.remove_prefix(1);  // currency "$5"
    if (!t.empty() && t.back() == '$') t.remove_suffix(1);
    if (iequal_at(t, 0, "usd ")) t.remove_prefix(4);
    if (iequal_at(t, 0, "rs.")) t.remove_prefix(3);
    if (t == before) break;
  }
  return trim(t);
}

// Math-Verify's basic_latex step: "and"/"or" separate answers. Only whole words outside commands
// are replaced (so "Sandra" and "\operatorname{ord}" survive).
/// Replaces the words "and" / "or" (bare or `\text{ and }`) by a comma: "x=3 or x=4" is a list.
inline std::string words_to_commas(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    if (command_at(s, i, "text")) {
      std::size_t j = i + 5;
      while (j < s.size() && s[j] == ' ') ++j;
      if (j < s.size() && s[j] == '{') {
        const std::size_t close = find_closing_brace(s, j, 64);
        if (close != npos) {
          const std::string_view w = trim(s.substr(j + 1, close - j - 1));
          if (w == "and" || w == "or" || w == "," || w == "and/or") {
            out += ',';
            i = close + 1;
            continue;
          }
        }
      }
    }
    if (is_alpha(s[i]) && (i == 0 || !is_alnum(s[i - 1])) && (i == 0 || s[i - 1] != '\\')) {
      std::size_t e = i;
      while (e < s.size() && is_alpha(s[e])) ++e;
      const std::string_view w = s.substr(i, e - i);
      if (w == "and" || w == "or") {
        // only between two non-empty parts
        out += ',';
      } else {
        out.append(w);
      }
      i = e;
      continue;
    }
    out += s[i++];
  }
  return out;
}

}  // namespace detail

/// Normalises an extracted answer for the parser.
///
/// Order: UTF-8 repair -> Unicode symbols to LaTeX -> command rewrites (`\left`, fonts, `\dfrac`,
/// spacing, `\$`, `\%`, degrees, `{,}`) -> outer `$`/`\(`/trailing `.` -> "and"/"or" to commas ->
/// trailing units (twice) -> thousands separators / decimal comma.
/// @pre none. @post linear in |s|; spends one budget step per byte. Throws budget_exhausted.
inline std::string normalize_answer(std::string_view s, budget& b) {
  const std::string clean = detail::sanitize_utf8(s);
  std::string t = detail::normalize_commands(clean, b);
  t = std::string(detail::strip_decorations(t));
  t = detail::words_to_commas(t);
  // A stray backslash at the very end ("185\\") is a typo, not a command. What it hid is stripped
  // too, until neither applies ("i,\\" -> "i" as "i," is; "\\S\\.;\\." -> "\\S"), before and after
  // the units ("1cm\\" -> "1"): found by fuzz_math_parse. On a view: a pass costs what it removes.
  const auto strip_tail = [](std::string& u) {
    for (std::string_view v = u;;) {
      const std::size_t before = v.size();
      while (!v.empty() && v.back() == '\\' && (v.size() < 2 || v[v.size() - 2] != '\\'))
        v.remove_suffix(1);
      v = detail::strip_decorations(v);
      if (v.size() == before) {
        u = std::string(v);
        return;
      }
    }
  };
  strip_tail(t);
  for (int k = 0; k < 3 && detail::strip_trailing_unit(t); ++k) {
  }
  strip_tail(t);
  detail::strip_counted_noun(t);
  detail::strip_trailing_script_words(t);
  t = detail::fix_number_separators(std::move(t));
  return t;
}

}  // namespace grpo::rewards::math

// SPDX-License-Identifier: Apache-2.0
/// @file extract.hpp
/// @brief Final-answer extraction from a model completion: boxes, answer phrases, bold, LaTeX
///        environments, whole string; linear time on arbitrary (huge, malformed) text.
#pragma once

#include <rewards/math/anchors.hpp>
#include <rewards/math/options.hpp>
#include <rewards/math/text.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace grpo::rewards::math {
namespace detail {

// R1 template: reasoning inside <think>..</think>, answer after it. Boxes written while thinking
// are drafts; grading them would reward unfinished reasoning (TRL's reasoning_accuracy_reward).
/// Text after the last `</think>` (R1 template), or all of it when there is none.
inline std::string_view after_think(std::string_view s) noexcept {
  const std::size_t p = s.rfind("</think>");
  return p == npos ? s : s.substr(p + 8);
}

/// Content of the last `<answer>..</answer>` block (R1-Zero template), or `s` when there is none.
/// An unterminated last `<answer>` runs to the end of the text.
inline std::string_view inside_answer_tags(std::string_view s) noexcept {
  const std::size_t open = s.rfind("<answer>");
  if (open == npos) return s;
  const std::size_t begin = open + 8;
  const std::size_t close = s.find("</answer>", begin);
  return close == npos ? s.substr(begin) : s.substr(begin, close - begin);
}

/// True when `gap` (text between two boxes) holds only separators: spaces, `, ; . $ &`, `\quad`,
/// math delimiters, `\\`, and the words "and"/"or" (bare or in `\text{}`). Such boxes state one
/// answer together ("\boxed{1} and \boxed{2}"). Bounded by the caller to short gaps.
inline bool gap_is_separator(std::string_view gap) noexcept;

/// The gap names a separation: `,`, `;`, or the word "and" / "or" (adjacent `$1$$5$` or blanks
/// alone do not join environments).
inline bool has_separator_word(std::string_view gap) noexcept {
  if (gap.find(',') != npos || gap.find(';') != npos) return true;
  for (std::size_t i = 0; i < gap.size(); ++i) {
    if (i > 0 && is_alpha(gap[i - 1])) continue;
    const bool a = iequal_at(gap, i, "and") && (i + 3 == gap.size() || !is_alpha(gap[i + 3]));
    const bool o = iequal_at(gap, i, "or") && (i + 2 == gap.size() || !is_alpha(gap[i + 2]));
    if (a || o) return true;
  }
  return false;
}

/// "\boxed{2} red and \boxed{5} blue", "\boxed{(3,3)} \text{ for part (a) and } \boxed{(1,1)}":
/// a short gap (at most 48 bytes, 5 words, one line) of words around a separator word ("and",
/// "or", ",", ";") joins the boxes too. Words that retract the earlier box ("not", "wrong",
/// "instead", "actually", "sorry", "mean", "correct", "answer") never do: "\boxed{2} is wrong,
/// the answer is \boxed{3}" keeps the last box only.
inline bool gap_is_labelled_separator(std::string_view gap) noexcept {
  if (gap.size() > 48 || gap.find('\n') != npos || gap.find('=') != npos) return false;
  static constexpr std::string_view veto[] = {"not",  "wrong",   "instead", "actually", "sorry",
                                              "mean", "correct", "answer",  "but",      "no ",
                                              "wait", "should",  "final",   "hmm",      "oops"};
  for (std::string_view v : veto)
    if (rfind_ci(gap, v) != npos) return false;
  bool sep = gap.find(',') != npos || gap.find(';') != npos;
  int words = 0;
  for (std::size_t i = 0; i < gap.size();) {
    if (is_digit(gap[i]) && !(i > 0 && gap[i - 1] == '(')) return false;
    if (is_alpha(gap[i]) && (i == 0 || gap[i - 1] != '\\')) {
      const std::size_t b = i;
      while (i < gap.size() && is_alpha(gap[i])) ++i;
      const std::string_view w = gap.substr(b, i - b);
      if (iequal_at(w, 0, "and") && w.size() == 3) sep = true;
      if (iequal_at(w, 0, "or") && w.size() == 2) sep = true;
      if (w != "text" && ++words > 5) return false;
      continue;
    }
    ++i;
  }
  return sep;
}

inline bool gap_is_separator(std::string_view gap) noexcept {
  std::size_t i = 0;
  while (i < gap.size()) {
    const char c = gap[i];
    if (is_space(c) || c == ',' || c == ';' || c == '.' || c == '$' || c == '&' || c == '{' ||
        c == '}') {
      ++i;
    } else if (c == '\\') {
      if (i + 1 < gap.size() &&
          (gap[i + 1] == '(' || gap[i + 1] == ')' || gap[i + 1] == '[' || gap[i + 1] == ']' ||
           gap[i + 1] == '\\' || gap[i + 1] == ',' || gap[i + 1] == ';' || gap[i + 1] == ' ')) {
        i += 2;
      } else if (command_at(gap, i, "qquad")) {
        i += 6;
      } else if (command_at(gap, i, "quad")) {
        i += 5;
      } else if (command_at(gap, i, "text")) {
        i += 5;
      } else {
        return false;
      }
    } else if (iequal_at(gap, i, "and") && (i + 3 == gap.size() || !is_alpha(gap[i + 3]))) {
      i += 3;
    } else if (iequal_at(gap, i, "or") && (i + 2 == gap.size() || !is_alpha(gap[i + 2]))) {
      i += 2;
    } else {
      return false;
    }
  }
  return true;
}

/// One `\boxed{..}` occurrence: [begin, end) of the whole command and its content.
struct box_span {
  std::size_t begin, end;
  std::string_view content;
};

/// Start of a label `name =` (a letter, then letters, digits, `_`, `{`, `}`, `'`; at most 24
/// bytes) that ends right before `at` (blanks allowed around `=`), not before `floor`; npos when
/// there is none.
inline std::size_t label_before(std::string_view s, std::size_t at, std::size_t floor) noexcept {
  std::size_t i = at;
  while (i > floor && s[i - 1] == ' ') --i;
  if (i == floor || s[i - 1] != '=') return npos;
  --i;
  while (i > floor && s[i - 1] == ' ') --i;
  const std::size_t name_end = i;
  while (i > floor && name_end - i < 24 &&
         (is_alpha(s[i - 1]) || is_digit(s[i - 1]) || s[i - 1] == '_' || s[i - 1] == '{' ||
          s[i - 1] == '}' || s[i - 1] == '\''))
    --i;
  while (i < name_end && !is_alpha(s[i])) ++i;  // a name starts with a letter
  if (i == name_end || (i > floor && (is_alpha(s[i - 1]) || s[i - 1] == '\\'))) return npos;
  return i;
}

// Why join boxes: "the roots are \boxed{1} and \boxed{2}" states one answer {1, 2}. Why only
// across separators: "first \boxed{1} ... finally \boxed{2}" is a correction, the last box wins.
/// Last boxed answer, joined with the boxes immediately before it when only separators lie
/// between them ("\boxed{1}, \boxed{2}" -> "1, 2"); consecutive duplicates are dropped. Nested
/// boxes count once (the outer one). Linear: braces are matched in one pass beforehand.
/// `only_empty` (optional) is set when boxes exist but all of them are empty: the completion
/// stated an empty answer, which must not fall back to the surrounding text.
inline std::optional<std::string> extract_boxed(std::string_view s, std::size_t* end_pos = nullptr,
                                                bool* only_empty = nullptr) {
  if (s.find("\\boxed") == npos && s.find("\\fbox") == npos) return std::nullopt;
  const std::vector<std::size_t> match = match_braces(s);
  std::vector<box_span> boxes;
  // Left-to-right over `\boxed`/`\fbox` commands; O(1) per box thanks to `match`.
  std::size_t covered = 0;  // end of the last accepted (outer) box
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') continue;
    std::size_t name_len = 0;
    if (command_at(s, i, "boxed"))
      name_len = 6;
    else if (command_at(s, i, "fbox"))
      name_len = 5;
    if (name_len == 0) {
      ++i;  // skip the escaped character
      continue;
    }
    if (i < covered) continue;  // nested inside the previous box
    std::size_t j = i + name_len;
    while (j < s.size() && is_space(s[j])) ++j;
    if (j < s.size() && s[j] == '{') {
      if (match[j] == npos) continue;  // unclosed: not an answer
      boxes.push_back({i, match[j] + 1, s.substr(j + 1, match[j] - j - 1)});
      covered = match[j] + 1;
    } else if (j > i + name_len && j < s.size()) {
      // `\boxed 5$` form (Hendrycks/verl): up to the next `$` or whitespace.
      std::size_t k = j;
      while (k < s.size() && s[k] != '$' && !is_space(s[k])) ++k;
      boxes.push_back({i, k, s.substr(j, k - j)});
      covered = k;
    }
  }
  // Walk back from the last non-empty box while the gaps are pure separators (at most 80 bytes).
  // Last non-empty box.
  std::size_t last = boxes.size();
  while (last > 0 && trim(boxes[last - 1].content).empty()) --last;
  if (last == 0) {
    if (only_empty) *only_empty = !boxes.empty();
    return std::nullopt;
  }
  if (end_pos) *end_pos = boxes[last - 1].end;
  std::vector<std::string> parts{std::string(trim(boxes[last - 1].content))};
  bool labelled = false;  // parts carry their "name = " labels
  for (std::size_t k = last - 1; k > 0; --k) {
    const box_span& prev = boxes[k - 1];
    const box_span& next = boxes[k];
    std::string_view gap = s.substr(prev.end, next.begin - prev.end);
    // "$y_1 = \boxed{A}$ and $y_2 = \boxed{B}$": boxes that each follow a label `name =` form
    // one answer "y_1 = A, y_2 = B" when the rest of the gap is a separator.
    const std::size_t next_label = label_before(s, next.begin, prev.end);
    const std::size_t prev_label = label_before(s, prev.begin, k > 1 ? boxes[k - 2].end : 0);
    const bool by_label = next_label != npos && prev_label != npos && (labelled || k == last - 1);
    if (by_label) gap = s.substr(prev.end, next_label - prev.end);
    if (gap.size() > 80 || !(gap_is_separator(gap) || gap_is_labelled_separator(gap))) break;
    if (labelled && !by_label) break;
    if (by_label && !labelled) {
      parts.back() = std::string(s.substr(next_label, next.begin - next_label)) + parts.back();
      labelled = true;
    }
    const std::string_view c = trim(prev.content);
    if (c.empty()) continue;
    if (labelled)
      parts.push_back(std::string(s.substr(prev_label, prev.begin - prev_label)) + std::string(c));
    else if (c != parts.back())
      parts.push_back(std::string(c));
  }
  std::string out;
  for (std::size_t k = parts.size(); k-- > 0;) {
    out += parts[k];
    if (k) out += ", ";
  }
  return out;
}

/// Percent suffix right after a math environment (`$28$\%`, `$28$ percent`) is part of the answer.
inline std::string_view percent_suffix(std::string_view rest) noexcept {
  std::size_t i = 0;
  while (i < rest.size() && rest[i] == ' ') ++i;
  if (iequal_at(rest, i, "\\%") || iequal_at(rest, i, "%")) return "\\%";
  if (iequal_at(rest, i, "percent") || iequal_at(rest, i, "pct")) return "\\%";
  return {};
}

/// Two or more words of three or more letters and no backslash: prose, not maths.
inline bool prose_between_dollars(std::string_view c) noexcept {
  if (c.find('\\') != npos) return false;
  int words = 0;
  std::size_t run = 0;
  for (std::size_t k = 0; k <= c.size(); ++k) {
    if (k < c.size() && is_alpha(c[k])) {
      ++run;
      continue;
    }
    words += run >= 3;
    run = 0;
  }
  return words >= 2;
}

/// Last LaTeX math environment of `s` (`$$..$$`, `\[..\]`, `\(..\)`, `$..$`), rightmost by end.
/// Every search resumes after the previous one and an unclosed opener disables its kind for the
/// rest of the text, so the scan is linear even for 100k unclosed openers.
inline std::optional<std::string> extract_last_env(std::string_view s,
                                                   std::size_t* end_pos = nullptr,
                                                   std::size_t* begin_pos = nullptr) {
  std::optional<std::string> last;
  // Environments joined by separators only ("$1$ and $2$ and $3$", "$21,16$ or $11$") form one
  // answer, up to 5 of them (Math-Verify's rule); `group_end` is where the current group ends.
  std::vector<std::string> group;
  std::size_t group_end = npos;
  auto found = [&](std::size_t begin, std::size_t stop, std::string content) {
    const bool joins =
        group_end != npos && begin >= group_end && group.size() < 5 && begin - group_end <= 80 &&
        has_separator_word(s.substr(group_end, begin - group_end)) &&
        gap_is_separator(s.substr(group_end, begin - group_end)) && !trim(content).empty();
    if (!joins) {
      group.clear();
      if (begin_pos) *begin_pos = begin;
    }
    group.push_back(std::move(content));
    group_end = stop;
    if (end_pos) *end_pos = stop;
  };
  bool no_dollar = false, no_paren = false, no_bracket = false;
  std::size_t i = 0;
  // `\$` is an escaped dollar (currency), never a delimiter.
  auto find_unescaped = [&](std::string_view what, std::size_t from) {
    for (std::size_t k = from; k + what.size() <= s.size(); ++k) {
      if (s[k] == '\\' && what[0] != '\\') {
        ++k;
        continue;
      }
      if (s.compare(k, what.size(), what) == 0) return k;
    }
    return npos;
  };
  while (i < s.size()) {
    const char c = s[i];
    if (c == '\\' && i + 1 < s.size()) {
      const char d = s[i + 1];
      if ((d == '(' && !no_paren) || (d == '[' && !no_bracket)) {
        const std::size_t close = s.find(d == '(' ? "\\)" : "\\]", i + 2);
        if (close == npos) {
          (d == '(' ? no_paren : no_bracket) = true;
          i += 2;
          continue;
        }
        found(i, close + 2,
              std::string(s.substr(i + 2, close - i - 2)) +
                  std::string(percent_suffix(s.substr(close + 2))));
        i = close + 2;
        continue;
      }
      i += 2;  // escaped character such as \$ or a command
      continue;
    }
    if (c == '$' && !no_dollar) {
      const bool display = i + 1 < s.size() && s[i + 1] == '$';
      const std::size_t open_len = display ? 2 : 1;
      const std::size_t close = find_unescaped(display ? "$$" : "$", i + open_len);
      if (close == npos) {
        no_dollar = true;
        i += open_len;
        continue;
      }
      // "how many $? just about 1$": words between two dollars (two or more, no LaTeX command)
      // are prose around currency signs, not a maths environment; the `$` is a plain character.
      if (!display && prose_between_dollars(s.substr(i + 1, close - i - 1))) {
        ++i;
        continue;
      }
      found(i, close + open_len,
            std::string(s.substr(i + open_len, close - i - open_len)) +
                std::string(percent_suffix(s.substr(close + open_len))));
      i = close + open_len;
      continue;
    }
    ++i;
  }
  if (group.empty()) return std::nullopt;
  last = group[0];
  for (std::size_t k = 1; k < group.size(); ++k) last = *last + ", " + group[k];
  if (trim(*last).empty()) return std::nullopt;
  return last;
}

/// The text before the first end-of-turn token of a chat template (`<|im_end|>`, `<|im_start|>`,
/// `<|eot_id|>`, `<|endoftext|>`, `</s>`, `<|end|>`, DeepSeek's `<｜end▁of▁sentence｜>`): what
/// follows belongs to another turn.
inline std::string_view before_turn_end(std::string_view s) noexcept {
  static constexpr std::string_view tokens[] = {
      "<|im_end|>", "<|im_start|>", "<|eot_id|>",      "<|endoftext|>",
      "</s>",       "<|end|>",      "<|end_of_text|>", "<\uff5cend\u2581of\u2581sentence\uff5c>"};
  std::size_t cut = s.size();
  for (std::string_view t : tokens) cut = std::min(cut, s.find(t));
  return s.substr(0, cut);
}

/// True when the text has LaTeX commands and every one is preceded by two backslashes
/// (`\\frac`, `\\boxed`) - a doubly escaped string. A `\\` line break before a letter in a
/// matrix has single-backslash commands around it (`\end`), so it does not qualify.
inline bool backslashes_doubled(std::string_view s) noexcept {
  std::size_t doubled = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') continue;
    std::size_t run = 0;
    while (i < s.size() && s[i] == '\\') ++run, ++i;
    if (i < s.size() && is_alpha(s[i])) {
      // A literal "\n" / "\t" left by the same escaping is not a command.
      if (run == 1 && (s[i] == 'n' || s[i] == 't') && !command_at(s, i - 1, "nu") &&
          !command_at(s, i - 1, "neq") && !command_at(s, i - 1, "ne") &&
          !command_at(s, i - 1, "text") && !command_at(s, i - 1, "times") &&
          !command_at(s, i - 1, "tau") && !command_at(s, i - 1, "theta") &&
          !command_at(s, i - 1, "tan") && !command_at(s, i - 1, "to"))
        continue;
      if (run == 1) return false;
      doubled += run == 2;
    }
  }
  return doubled > 0;
}

/// Every `\\` becomes `\`.
inline std::string halve_backslashes(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    out += s[i];
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == '\\') ++i;
  }
  return out;
}

// Anchors in two strength groups: "final answer ..." beats "answer is" / "answer:" wherever they
// are (Math-Verify priorities 0/50 vs 100/200); within a group the rightmost occurrence wins.
struct phrase_hit {
  std::size_t pos;  ///< where the anchor starts
  std::size_t len;  ///< anchor length
  bool strong;      ///< a "final answer" anchor
};

inline std::optional<phrase_hit> find_answer_phrase(std::string_view s) noexcept {
  if (const auto [at, len] = rfind_any(s, strong_anchors); at != npos)
    return phrase_hit{at, len, true};
  if (const auto [at, len] = rfind_any(s, weak_anchors); at != npos)
    return phrase_hit{at, len, false};
  return std::nullopt;
}

/// The answer stated after an anchor: the first math environment right after it; otherwise the
/// sentence (to the end of the line, cut at ". "), and inside a prose sentence what follows its
/// last " is " ("The largest $n$ is 34" -> 34), else its last math environment. Bold markers are
/// dropped.
inline std::optional<std::string> answer_after(std::string_view rest) {
  // Skip ": ", "is:", "**" decorations.
  std::size_t i = 0;
  while (i < rest.size() && (is_space(rest[i]) || rest[i] == ':' || rest[i] == '*')) ++i;
  if (iequal_at(rest, i, "is") && (i + 2 == rest.size() || !is_alpha(rest[i + 2]))) {
    i += 2;
    while (i < rest.size() && (is_space(rest[i]) || rest[i] == ':' || rest[i] == '*')) ++i;
  }
  // A quoted answer (`"$12$ and $13$"`, `\"..\"` from an escaped string): the quotes go.
  if (iequal_at(rest, i, "\\\"")) ++i;
  if (i < rest.size() && rest[i] == '"') ++i;
  rest = rest.substr(i);
  if (rest.empty()) return std::nullopt;
  if (rest[0] == '$' || iequal_at(rest, 0, "\\(") || iequal_at(rest, 0, "\\[")) {
    // Environments joined by separators that end the sentence ("$12$ and $13$." ) are one
    // answer, as extract_last_env reads them; otherwise the first environment only.
    std::size_t stop = 0;
    while (stop < rest.size() && stop < 1024 && rest[stop] != '\n') ++stop;
    std::size_t env_end = 0, env_begin = npos;
    if (auto group = extract_last_env(rest.substr(0, stop), &env_end, &env_begin);
        group && env_begin == 0) {
      std::string_view after = rest.substr(env_end, stop - env_end);
      std::size_t k = 0;
      while (k < after.size() && (is_space(after[k]) || after[k] == '"' || after[k] == '\\')) ++k;
      const bool ends = k == after.size() || after[k] == '.' || after[k] == '!';
      if (ends) return group;
    }
    // First environment after the anchor only (bounded to the next 4 KiB).
    const std::string_view head = rest.substr(0, 4096);
    const bool display = head.size() > 1 && head[0] == '$' && head[1] == '$';
    std::string_view close =
        head[0] == '$' ? (display ? "$$" : "$") : (head[1] == '(' ? "\\)" : "\\]");
    const std::size_t open_len = (head[0] == '$' && !display) ? 1 : 2;
    const std::size_t end = head.find(close, open_len);
    if (end != npos) {
      std::string out(head.substr(open_len, end - open_len));
      out += percent_suffix(head.substr(end + close.size()));
      return out;
    }
  }
  // Up to the end of the line (at most 1 KiB), then to the end of the sentence (". " not inside a
  // number such as 3.5).
  std::size_t end = 0;
  while (end < rest.size() && end < 1024 && rest[end] != '\n') ++end;
  std::string_view line = rest.substr(0, end);
  for (std::size_t k = 0; k < line.size(); ++k) {
    if (line[k] == '.' && (k + 1 == line.size() || is_space(line[k + 1]))) {
      line = line.substr(0, k);
      break;
    }
  }
  // Prose ("The largest $n$ is 34"): the part after the last " is "; prose in any language
  // ("Janeth aura encore 220 $ à payer"): its last maths environment, else a number within the
  // first 50 bytes (Math-Verify's "answer: .{0,50}? number").
  if (!line.empty() && (is_alpha(line[0]) || static_cast<unsigned char>(line[0]) >= 0x80)) {
    const std::size_t is_at = rfind_ci(line, " is ");
    if (is_at != npos) {
      line = line.substr(is_at + 4);
    } else if (auto env = extract_last_env(line)) {
      return env;
    } else if (auto num = has_word(line) ? first_number_near(line, 50) : std::nullopt) {
      return num;
    }
  }
  std::string out;
  for (std::size_t k = 0; k < line.size(); ++k) {
    if (line[k] == '*' && k + 1 < line.size() && line[k + 1] == '*') {
      ++k;
      continue;
    }
    out += line[k];
  }
  if (trim(out).empty()) return std::nullopt;
  return std::string(trim(out));
}

/// Content of the last `**..**` pair that looks like maths (contains a digit or a backslash).
inline std::optional<std::string> extract_bold(std::string_view s) {
  std::optional<std::string> last;
  std::size_t i = s.find("**");
  while (i != npos) {
    const std::size_t close = s.find("**", i + 2);
    if (close == npos) break;
    const std::string_view c = trim(s.substr(i + 2, close - i - 2));
    bool mathy = false;
    for (char ch : c) mathy = mathy || is_digit(ch) || ch == '\\';
    if (mathy && c.size() <= 512 && c.find('\n') == npos) {
      std::string_view v = c;
      while (!v.empty() && (v.back() == '.' || v.back() == ':')) v.remove_suffix(1);
      last = std::string(v);
    }
    i = s.find("**", close + 2);
  }
  return last;
}

}  // namespace detail

/// Extracts the final answer of `completion`.
///
/// Priority (first mode that finds something wins, rightmost match within a mode):
/// last `\boxed{}`/`\fbox{}` (joined with directly preceding boxes) > "final answer is" / "the
/// answer is" / "answer:" > markdown bold > last `$..$`/`\(..\)`/`\[..\]`/`$$..$$` > the whole
/// text. With `strip_think`, text before the last `</think>` is ignored.
/// @pre none: any bytes are accepted (invalid UTF-8 is passed through here and replaced later).
/// @post returns nullopt when nothing is found or the answer is longer than max_answer_chars.
///       Never throws; O(n) time in the completion length.
inline std::optional<std::string> extract_answer(std::string_view completion,
                                                 const extract_options& opt = {}) noexcept {
  try {
    // Full-width digits and punctuation (`１２`, `：`, `（Ｂ）`) read as ASCII.
    std::string folded;
    if (detail::has_fullwidth(completion)) {
      folded = detail::fold_fullwidth(completion);
      completion = folded;
    }
    // Golds whose backslashes arrive doubled (`\\boxed{7}` from a JSON or Python string that
    // was escaped twice): halved when every command in the text is written that way.
    std::string halved;
    if (detail::backslashes_doubled(completion)) {
      halved = detail::halve_backslashes(completion);
      completion = halved;
    }
    std::string_view s = opt.strip_think ? detail::after_think(completion) : completion;
    s = detail::before_turn_end(s);
    if (opt.answer_tags) s = detail::inside_answer_tags(s);
    std::optional<std::string> r;
    std::size_t box_end = 0;
    bool empty_box = false;  // `\boxed{}`: an empty answer, never the text around it
    if (opt.boxed) r = detail::extract_boxed(s, &box_end, &empty_box);
    if (opt.answer_phrase) {
      // A "final answer ..." statement after the last box overrides it (intermediate results
      // boxed along the way, Math-Verify gives both priority 0 and takes the rightmost);
      // weaker phrases only apply when there is no box.
      // With a box, only the text after it can override it: search there only (keeps long
      // reasoning traces cheap).
      const std::size_t from = r ? box_end : 0;
      const std::string_view tail = s.substr(from);
      const auto hit = detail::find_answer_phrase(tail);
      if (hit && (!r || hit->strong)) {
        auto a = detail::answer_after(tail.substr(hit->pos + hit->len));
        if (a) r = std::move(a);
      }
    }
    if (!r && empty_box) return std::nullopt;
    if (!r && opt.markdown_bold) r = detail::extract_bold(s);
    if (!r && opt.latex_delimiters) {
      std::size_t env_end = 0;
      r = detail::extract_last_env(s, &env_end);
      // A concluding sentence after the last environment states the result ("... $$ x \geq 2
      // $$ Therefore, the error increases by 100%."): it wins, as the later statement.
      if (r && opt.answer_phrase && env_end < s.size()) {
        const std::string_view after = s.substr(env_end);
        if (detail::rfind_any(after, detail::conclusion_markers).first != detail::npos)
          if (auto c = detail::concluding_number(after)) r = std::move(c);
      }
    }
    // Prose without any of the above ("因此，水池中水将在300分钟内被放完。", "... donc de
    // 100 - 30 = 70"): the result of its concluding sentence, never just "the last number".
    if (!r && opt.answer_phrase && detail::looks_like_prose(s)) r = detail::concluding_number(s);
    // A short prose line ending in "<copula> number" ("... which is 1,000.99€").
    if (!r && opt.answer_phrase && detail::has_word(s)) r = detail::stated_last_number(s);
    if (!r && opt.whole_string) {
      const std::string_view t = detail::trim(s);
      if (!t.empty() && t.size() <= opt.max_answer_chars) r = std::string(t);
    }
    if (!r) return std::nullopt;
    const std::string_view t = detail::trim(*r);
    if (t.empty() || t.size() > opt.max_answer_chars) return std::nullopt;
    // "the answer is \boxed{}" (a phrase whose answer is an empty box) is empty as well.
    bool inner_empty = false;
    if (!detail::extract_boxed(t, nullptr, &inner_empty) && inner_empty) return std::nullopt;
    std::string answer(t);
    if (answer.size() < s.size()) detail::european_decimal(answer, s);  // "2,5 €" in prose
    return answer;
  } catch (...) {
    return std::nullopt;  // only std::bad_alloc can reach here
  }
}

}  // namespace grpo::rewards::math

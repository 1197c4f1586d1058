// SPDX-License-Identifier: Apache-2.0
/// @file parse_commands.hpp
/// @brief The maths parser's LaTeX commands (parser::parse_command): `\frac`, `\sqrt`, `\binom`,
///        `\{..\}`, floor / ceiling / absolute value / angle brackets, functions, Greek letters,
///        named sets, decorations; `\text` and `\operatorname` (parser::parse_text) and matrix
///        environments (parser::parse_environment). Part of parse.hpp (include that).
#pragma once

#include <rewards/math/parse.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace grpo::rewards::math::detail {

inline expr parser::parse_command() {
  depth_guard g(*this);  // \frac\frac\frac... recurses through read_arg, not parse_primary
  skip_ws();
  if (peek_raw(1) == '{') {  // \{ ... \}
    p_ += 2;
    skip_ws();
    if (peek_raw() == '\\' && peek_raw(1) == '}') {
      p_ += 2;
      return make_named(kind::empty_set, "");
    }
    expr e = parse_list();
    skip_ws();
    if (!(peek_raw() == '\\' && peek_raw(1) == '}')) throw syntax_error{};
    p_ += 2;
    if (e.k == kind::set && !e.braced) {
      e.braced = true;
      return e;
    }
    expr s = make_node(kind::set, {std::move(e)});
    s.braced = true;
    return s;
  }
  const std::string_view name = command_name();
  if (name.empty()) throw syntax_error{};
  p_ += 1 + name.size();
  // \frac{a}{b} = a · b^-1; arguments may be single tokens (`\frac12`, `\frac\pi2`).
  if (name == "frac") {
    expr a = read_arg();
    expr b = read_arg();
    return make_node(kind::mul,
                     {std::move(a), make_node(kind::pow, {std::move(b), make_number(-1)})});
  }
  if (name == "binom") {
    expr n = read_arg();
    expr k = read_arg();
    return make_node(kind::func, {std::move(n), std::move(k)}, "binom");
  }
  // \sqrt[n]{x} -> root(x, n); \sqrt{x} -> sqrt(x) (kept apart for exact rational roots).
  if (name == "sqrt") {
    std::optional<expr> idx;
    if (peek() == '[') {
      ++p_;
      idx = parse_list();
      expect(']');
    }
    expr x = read_arg();
    if (idx) return make_node(kind::func, {std::move(x), std::move(*idx)}, "root");
    return make_node(kind::func, {std::move(x)}, "sqrt");
  }
  if (name == "text" || name == "operatorname") return parse_text(name == "operatorname");
  // Number sets: only the five standard ones are recognised.
  if (name == "mathbb") {
    std::string_view a = (peek() == '{') ? trim(raw_group()) : s_.substr(p_++, 1);
    if (a == "R" || a == "N" || a == "Z" || a == "Q" || a == "C")
      return make_named(kind::named_set, std::string(a));
    throw syntax_error{};
  }
  if (name == "pi") return make_named(kind::constant, "pi");
  if (name == "infty" || name == "infin") return make_named(kind::constant, "inf");
  if (name == "emptyset") return make_named(kind::empty_set, "");
  if (name == "ldots") return make_named(kind::text, "...");
  if (is_function_name(name)) return parse_application(std::string(name));
  // Delimited functions: floor, ceiling, absolute value, angle-bracket vectors.
  if (name == "lfloor" || name == "lceil") {
    expr e = parse_list();
    expect_cmd(name == "lfloor" ? "rfloor" : "rceil");
    return make_node(kind::func, {std::move(e)}, name == "lfloor" ? "floor" : "ceil");
  }
  if (name == "lvert" || name == "vert") {
    ++abs_depth_;
    expr e = parse_additive();
    --abs_depth_;
    if (!eat_cmd("rvert") && !eat_cmd("vert")) throw syntax_error{};
    return make_node(kind::func, {std::move(e)}, "abs");
  }
  if (name == "langle") {
    std::vector<expr> items;
    items.push_back(parse_relation());
    while (eat(',')) items.push_back(parse_relation());
    expect_cmd("rangle");
    if (items.size() == 1) return std::move(items[0]);
    return make_node(kind::tuple, std::move(items));
  }
  // Environments: matrices only (cases/align are not answers).
  if (name == "begin") return parse_environment();
  if (name == "angle" || name == "triangle") {
    // \angle ABC is one quantity, named after its vertices.
    skip_ws();
    std::string sym(name);
    sym += '_';
    while (p_ < s_.size() && is_alpha(s_[p_])) sym += s_[p_++];
    if (sym.size() == name.size() + 1) throw syntax_error{};
    return make_named(kind::symbol, std::move(sym));
  }
  // Decorations that do not change the value: the argument itself.
  if (name == "boxed" || name == "overline" || name == "hat" || name == "vec" || name == "bar" ||
      name == "tilde" || name == "underline" || name == "widehat")
    return read_arg();
  // Greek letters are variables, subscripts allowed (`\alpha_1`).
  if (is_greek(name)) {
    std::string sym(name);
    if (peek_raw() == '_') {
      ++p_;
      sym += '_';
      sym += subscript_text();
    }
    return make_named(kind::symbol, std::move(sym));
  }
  // Any other command without arguments is an opaque constant named after it (`\zzz`, `\hbar`):
  // both sides spell it the same way or it does not match. With a braced argument it is an
  // unknown construct and the answer is rejected.
  static constexpr std::string_view operators[] = {
      "le",   "ge",     "ne",       "in",       "approx", "cdot",   "times",    "div",    "pm",
      "mp",   "cup",    "cap",      "setminus", "end",    "rfloor", "rceil",    "rvert",  "rangle",
      "to",   "mapsto", "implies",  "iff",      "land",   "lor",    "neg",      "forall", "exists",
      "sum",  "prod",   "int",      "lim",      "notin",  "subset", "subseteq", "equiv",  "sim",
      "cong", "perp",   "parallel", "mid",      "colon"};
  for (std::string_view op : operators)
    if (name == op) throw syntax_error{};
  if (peek_raw() != '{' && !(peek_raw() == ' ' && peek() == '{'))
    return make_named(kind::symbol, "\\" + std::string(name));
  throw syntax_error{};
}

/// `\text{..}`: a number, a single letter, a function name, or words (lower-cased text).
inline expr parser::parse_text(bool operator_name) {
  const std::string_view raw = trim(raw_group());
  if (raw.empty()) throw syntax_error{};
  if (operator_name && is_function_name(raw)) return parse_application(std::string(raw));
  bool numeric = true;
  for (char ch : raw) numeric = numeric && (is_digit(ch) || ch == '.' || ch == '-' || ch == ' ');
  // `\text{13}` is the number 13 (Math-Verify issue #37) and `\text{x}` the variable x: both are
  // re-parsed as maths with the same budget and depth.
  if (numeric || (raw.size() == 1 && is_alpha(raw[0]))) {
    parser sub(raw, b_, max_depth_, depth_);
    return sub.parse_all();
  }
  std::string words;
  for (char ch : raw) {
    if (is_space(ch)) {
      if (!words.empty() && words.back() != ' ') words += ' ';
    } else {
      words += to_lower(ch);
    }
  }
  while (!words.empty() && words.back() == ' ') words.pop_back();
  return make_named(kind::text, std::move(words));
}

/// `\begin{pmatrix|bmatrix|matrix|array|smallmatrix|Bmatrix} rows \end{..}`.
inline expr parser::parse_environment() {
  // Rows separated by `\\`, cells by `&`; every row must have the same number of cells. The
  // `array` column specification ({cc}, {c|c}) is skipped.
  const std::string env(trim(raw_group()));
  if (env != "pmatrix" && env != "bmatrix" && env != "matrix" && env != "array" &&
      env != "smallmatrix" && env != "Bmatrix")
    throw syntax_error{};
  if (env == "array" && peek() == '{') (void)raw_group();  // column specification
  std::vector<std::vector<expr>> rows(1);
  for (;;) {
    b_.spend();
    if (at_cmd("end")) break;
    if (at_double_backslash()) {
      p_ += 2;
      rows.emplace_back();
      continue;
    }
    rows.back().push_back(parse_relation());
    if (eat('&')) continue;
    if (at_double_backslash() || at_cmd("end")) continue;
    throw syntax_error{};
  }
  expect_cmd("end");
  if (trim(raw_group()) != env) throw syntax_error{};
  while (!rows.empty() && rows.back().empty()) rows.pop_back();
  if (rows.empty()) throw syntax_error{};
  const std::size_t cols = rows[0].size();
  std::vector<expr> cells;
  for (auto& r : rows) {
    if (r.size() != cols) throw syntax_error{};
    for (auto& c : r) cells.push_back(std::move(c));
  }
  expr m = make_node(kind::matrix, std::move(cells));
  m.rows = static_cast<int>(rows.size());
  m.cols = static_cast<int>(cols);
  return m;
}

}  // namespace grpo::rewards::math::detail

// SPDX-License-Identifier: Apache-2.0
/// @file parse.hpp
/// @brief Recursive-descent LaTeX/plain-text maths parser (bounded depth, budgeted) producing an
///        `expr` tree: numbers, fractions, roots, powers, functions, sets, tuples, intervals,
///        unions, relations and chains, matrices, percent, factorials, binomials.
///
/// Files: parse_lexicon.hpp (function names, Greek letters, operand commands), parse_cursor.hpp
/// (position, blanks, characters, commands, raw groups, budget, depth guard), this file (the
/// grammar from list down to primary, words, letters, function application, brackets),
/// parse_number.hpp (number literals) and parse_commands.hpp (LaTeX commands, `\text`,
/// environments).
#pragma once

#include <rewards/math/expr.hpp>
#include <rewards/math/options.hpp>
#include <rewards/math/parse_cursor.hpp>
#include <rewards/math/parse_lexicon.hpp>
#include <rewards/math/text.hpp>

#include <array>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace grpo::rewards::math {
namespace detail {

/// Grammar (lowest to highest precedence; every production skips blanks first):
///
///   list      := relation ((',' | ';') relation)*            -> set (bare list) when > 1 item
///   relation  := setexpr (relop setexpr)*                     -> relation chain when any relop
///   setexpr   := additive ((\cup | \cap | \setminus) additive)*
///   additive  := [\pm] term (('+' | '-' | \pm | \mp) term)*
///   term      := unary (('*' | \cdot | \times | '/' | \div) unary | <implicit> power)*
///   unary     := ('-' | '+') unary | power
///   power     := postfix ('^' exponent postfix-ops)*
///   postfix   := primary ('!' | '%')*
///   primary   := number | word | letter | '(' .. ')' | '[' .. ']' | '{' list '}' | '|' additive
///   '|'
///              | command
///
/// Juxtaposition multiplies (`2x`, `3(4+5)`, `\frac12 x`) when the next token can start an operand.
/// Recursion depth is counted per nesting level (primary, signs, exponents, commands), so
/// `max_depth` bounds the C++ stack whatever the input.
/// The parser. Each call of parse_primary spends one budget step; depth is capped.
class parser : parse_cursor {
 public:
  parser(std::string_view s, budget& b, int max_depth, int depth = 0) noexcept
      : parse_cursor(s, b, max_depth, depth) {}

  /// Parses all of the input. @post throws syntax_error or budget_exhausted on failure.
  expr parse_all() {
    if (at_end()) throw syntax_error{};
    expr e = parse_list();
    if (!at_end()) throw syntax_error{};
    return e;
  }

 private:
  int abs_depth_ = 0;  ///< open `|..|` pairs (a `|` then closes instead of opening)

  // list := relation ((',' | ';') relation)*
  /// list := relation ((',' | ';') relation)*. A top-level comma list is a set (Math-Verify reads
  /// `1, 2` as FiniteSet); `braced` stays false so that thousands groups were handled earlier.
  /// `p=5,q=2; p=7,q=2`: when `;` separates groups of `,`-items that all have the same size (at
  /// least 2), the list is a list of those groups (each one a bare list), so that it compares
  /// with `(5,2),(7,2)`; otherwise `;` is a comma.
  expr parse_list() {
    std::vector<expr> items;
    std::vector<std::size_t> group_ends;  // items.size() at each ';'
    items.push_back(parse_relation());
    while (peek() == ',' || peek() == ';') {
      if (peek() == ';') group_ends.push_back(items.size());
      ++p_;
      items.push_back(parse_relation());
    }
    if (items.size() == 1) return std::move(items[0]);
    const std::size_t width = group_ends.empty() ? 0 : group_ends[0];
    bool grouped =
        width >= 2 && items.size() % width == 0 && group_ends.size() + 1 == items.size() / width;
    for (std::size_t k = 0; grouped && k < group_ends.size(); ++k)
      grouped = group_ends[k] == (k + 1) * width;
    if (grouped) {
      std::vector<expr> groups;
      for (std::size_t k = 0; k < items.size(); k += width) {
        std::vector<expr> g(std::make_move_iterator(items.begin() + static_cast<long>(k)),
                            std::make_move_iterator(items.begin() + static_cast<long>(k + width)));
        expr ge = make_node(kind::set, std::move(g));
        ge.braced = false;
        groups.push_back(std::move(ge));
      }
      items = std::move(groups);
    }
    expr e = make_node(kind::set, std::move(items));
    e.braced = false;
    return e;
  }

  /// Relation operator at the cursor: ASCII (`<=`, `>=`, `!=`, `:=`, `==`) or LaTeX (`\le`, `\ge`,
  /// `\ne`, `\in`, `\approx`; `\leq`/`\geq`/`\neq` were mapped by normalisation).
  std::optional<rel> eat_relop() {
    const char c = peek();
    const char d = peek_raw(1);
    // Two-character operators first so that `<=` is not read as `<` followed by `=`.
    if (c == '<') {
      p_ += (d == '=') ? 2 : 1;
      return d == '=' ? rel::le : rel::lt;
    }
    if (c == '>') {
      p_ += (d == '=') ? 2 : 1;
      return d == '=' ? rel::ge : rel::gt;
    }
    if (c == '!' && d == '=') {
      p_ += 2;
      return rel::ne;
    }
    if (c == ':' && d == '=') {
      p_ += 2;
      return rel::eq;
    }
    if (c == '=') {
      p_ += (d == '=') ? 2 : 1;
      return rel::eq;
    }
    if (c != '\\') return std::nullopt;
    if (eat_cmd("le")) return rel::le;
    if (eat_cmd("ge")) return rel::ge;
    if (eat_cmd("ne")) return rel::ne;
    if (eat_cmd("in")) return rel::in;
    if (eat_cmd("approx")) return rel::approx;
    return std::nullopt;
  }

  // relation := setexpr (relop setexpr)*
  /// relation := setexpr (relop setexpr)*: `1 < x \le 2` is one chain node with two operators.
  expr parse_relation() {
    std::vector<expr> args;
    std::vector<rel> ops;
    args.push_back(parse_setexpr());
    while (auto r = eat_relop()) {
      ops.push_back(*r);
      args.push_back(parse_setexpr());
    }
    if (ops.empty()) return std::move(args[0]);
    expr e = make_node(kind::relation, std::move(args));
    e.ops = std::move(ops);
    return e;
  }

  // setexpr := additive ((\cup | \cap | \setminus) additive)*
  /// setexpr := additive ((\cup | \cap | \setminus) additive)*; same operators are flattened.
  expr parse_setexpr() {
    expr a = parse_ratio();
    for (;;) {
      std::string op;
      if (eat_cmd("cup"))
        op = "cup";
      else if (eat_cmd("cap"))
        op = "cap";
      else if (eat_cmd("setminus") || eat_cmd("backslash"))
        op = "setminus";
      else
        break;
      expr b = parse_ratio();
      if (a.k == kind::set_op && a.name == op) {
        a.args.push_back(std::move(b));
      } else {
        a = make_node(kind::set_op, {std::move(a), std::move(b)}, op);
      }
    }
    return a;
  }

  /// ratio := additive (':' additive)*: `3:4`, `AB:CD`, `1:2:3` -> func "ratio". A clock time
  /// (`12:00`, `9:05`: one or two digits, a colon, two digits starting with 0) is not a ratio:
  /// unparseable (`11:21` reads as a ratio).
  expr parse_ratio() {
    const std::size_t begin = p_;
    expr a = parse_additive();
    if (peek() != ':' || peek_raw(1) == '=') return a;
    std::vector<expr> parts{std::move(a)};
    while (peek() == ':' && peek_raw(1) != '=') {
      ++p_;
      parts.push_back(parse_additive());
    }
    if (parts.size() > 16) throw syntax_error{};
    const std::string_view text = s_.substr(begin, p_ - begin);
    std::size_t d1 = 0, d2 = 0, k = 0;
    while (k < text.size() && is_digit(text[k])) ++k, ++d1;
    const bool colon = k < text.size() && text[k] == ':';
    const std::size_t minutes = k + 1;
    for (++k; colon && k < text.size() && is_digit(text[k]); ++k) ++d2;
    if (parts.size() == 2 && colon && d1 >= 1 && d1 <= 2 && d2 == 2 && k == text.size() &&
        text[minutes] == '0')
      throw syntax_error{};
    return make_node(kind::func, std::move(parts), "ratio");
  }

  // additive := term (('+' | '-' | \pm | \mp) term)*, with a leading \pm allowed
  /// additive := [\pm] term (('+' | '-' | \pm | \mp) term)*. `a \pm b` becomes pm(a, b) with a =
  /// the sum so far, so `\frac{1 \pm \sqrt5}{2}` keeps both roots; a leading `\pm 2` is pm(0, 2).
  expr parse_additive() {
    std::vector<expr> terms;
    auto sum = [](std::vector<expr>& t) {
      if (t.empty()) return make_number(0);
      if (t.size() == 1) return std::move(t[0]);
      return make_node(kind::add, std::move(t));
    };
    // A leading \pm has no left operand: the sum so far is 0.
    if (!(at_cmd("pm") || at_cmd("mp"))) terms.push_back(parse_term());
    for (;;) {
      if (eat('+')) {
        terms.push_back(parse_term());
        // `->` is an arrow, not a minus sign.
      } else if (peek() == '-' && peek_raw(1) != '>') {
        ++p_;
        terms.push_back(make_node(kind::neg, {parse_term()}));
      } else if (eat_cmd("pm") || eat_cmd("mp")) {
        expr left = sum(terms);
        expr right = parse_term();
        terms.clear();
        terms.push_back(make_node(kind::pm, {std::move(left), std::move(right)}));
      } else {
        break;
      }
    }
    return sum(terms);
  }

  /// True when the next token can start an operand of an implicit product: a digit, a letter, `(`,
  /// `{`, an opening `|` (not while inside |..|), or an operand command (`\frac`, `\pi`,
  /// `\sin`...). Relation, set and separator tokens end the term.
  bool starts_implicit_operand() noexcept {
    const char c = peek();
    if (c == '\0') return false;
    if (is_digit(c) || is_alpha(c) || c == '(' || c == '{') return true;
    if (c == '.' && is_digit(peek_raw(1))) return true;
    if (c == '|') return abs_depth_ == 0;
    if (c == '\\') {
      if (peek_raw(1) == '{') return false;  // "2\{1\}" is not a product
      return command_starts_operand(command_name());
    }
    return false;
  }

  // term := unary (('*' | \cdot | \times | '/' | \div) unary | implicit power)*
  /// term := unary (('*' | \cdot | \times) unary | ('/' | \div) unary | implicit power)*.
  /// Division is multiplication by pow(d, -1), so the comparator sees one n-ary product.
  expr parse_term() {
    std::vector<expr> f;
    f.push_back(parse_unary());
    for (;;) {
      if (eat('*') || eat_cmd("cdot") || eat_cmd("times") || eat_cmd("ast")) {
        f.push_back(parse_unary());
      } else if (eat('/') || eat_cmd("div")) {
        f.push_back(make_node(kind::pow, {parse_unary(), make_number(-1)}));
      } else if (starts_implicit_operand()) {
        f.push_back(parse_power());
      } else {
        break;
      }
      b_.spend();
    }
    if (f.size() == 1) return std::move(f[0]);
    return make_node(kind::mul, std::move(f));
  }

  /// unary := ('-' | '+') unary | power. `-3^2` is -(3^2) = -9 as in mathematics.
  expr parse_unary() {
    if (peek() == '-' && peek_raw(1) != '>') {
      depth_guard g(*this);  // "----5" recurses once per sign
      ++p_;
      return make_node(kind::neg, {parse_unary()});
    }
    if (eat('+')) {
      depth_guard g(*this);
      return parse_unary();
    }
    return parse_power();
  }

  /// power := postfix ('^' exponent)*, read left to right (`2^3^2` = 64: a double superscript is an
  /// error in LaTeX, so either reading is a guess; this one is documented and tested).
  expr parse_power() {
    expr base = parse_postfix();
    while (peek() == '^') {
      ++p_;
      expr ex = parse_exponent();
      base = make_node(kind::pow, {std::move(base), std::move(ex)});
      base = parse_postfix_ops(std::move(base));
    }
    return base;
  }

  /// Exponent or subscript operand: a braced group, a signed single token, a number, a letter or
  /// a command operand.
  expr parse_exponent() {
    depth_guard g(*this);
    const char c = peek();
    if (c == '{') {
      ++p_;
      expr e = parse_list();
      expect('}');
      return e;
    }
    if (c == '-') {
      ++p_;
      return make_node(kind::neg, {parse_exponent()});
    }
    if (c == '+') {
      ++p_;
      return parse_exponent();
    }
    if (is_digit(c)) return parse_number(false);
    if (is_alpha(c)) return parse_letter();
    if (c == '\\' || c == '(') return parse_primary();
    throw syntax_error{};
  }

  /// Postfix `!` (factorial; not `!=`) and `%` (percent) after an operand, repeatedly.
  expr parse_postfix_ops(expr e) {
    for (;;) {
      if (peek() == '!' && peek_raw(1) != '=') {
        ++p_;
        e = make_node(kind::factorial, {std::move(e)});
      } else if (peek() == '%') {
        ++p_;
        e = make_node(kind::percent, {std::move(e)});
      } else {
        return e;
      }
    }
  }

  expr parse_postfix() { return parse_postfix_ops(parse_primary()); }

  /// primary: the only production every nesting passes through, hence the depth and budget charge.
  expr parse_primary() {
    depth_guard g(*this);
    b_.spend();
    const char c = peek();
    if (c == '\0') throw syntax_error{};
    if (is_digit(c) || (c == '.' && is_digit(peek_raw(1)))) return parse_number(true);
    if (is_alpha(c)) return parse_word();
    if (c == '(' || c == '[') return parse_bracket();
    if (c == '{') {
      ++p_;
      expr e = parse_list();
      expect('}');
      if (e.k == kind::set && !e.braced) e.braced = true;  // {1,2} is a set
      return e;
    }
    // |x|: absolute value; abs_depth_ stops `|a|b|c|` from reading the closing bar as a new one.
    if (c == '|') {
      ++p_;
      ++abs_depth_;
      expr e = parse_additive();
      --abs_depth_;
      expect('|');
      return make_node(kind::func, {std::move(e)}, "abs");
    }
    if (c == '\\') return parse_command();
    throw syntax_error{};
  }

  /// Number literal; `allow_mixed` enables `2\frac{1}{2}` and `7 3/4` (mixed numbers).
  /// (parse_number.hpp)
  expr parse_number(bool allow_mixed);

  /// One letter as a variable, with an optional subscript folded into its name; `e` is Euler's
  /// number and `i` the imaginary unit.
  expr parse_letter() {
    skip_ws();
    std::string name(1, s_[p_++]);
    if (peek_raw() == '_') {
      ++p_;
      name += '_';
      name += subscript_text();
      return make_named(kind::symbol, std::move(name));
    }
    // `e` and `i` are constants everywhere (both sides are read the same way, so a variable named
    // e still compares consistently with itself).
    if (name == "e") return make_named(kind::constant, "e");
    if (name == "i") return make_named(kind::constant, "i");
    return make_named(kind::symbol, std::move(name));
  }

  /// Subscript text folded into a variable name: `a_{1 0}` -> "10", `x_n` -> "n", `x_\alpha`.
  std::string subscript_text() {
    skip_ws();
    std::string out;
    if (peek_raw() == '{') {
      for (char ch : raw_group())
        if (!is_space(ch)) out += ch;
    } else if (p_ < s_.size() && is_alnum(s_[p_])) {
      out += s_[p_++];
    } else if (peek_raw() == '\\') {
      const std::string_view n = command_name();
      if (n.empty()) throw syntax_error{};
      out.append(n);
      p_ += 1 + n.size();
    } else {
      throw syntax_error{};
    }
    if (out.empty()) throw syntax_error{};
    return out;
  }

  /// A run of letters: a known function word, `pi`, `inf`, a word of 3+ letters (text), or a
  /// single-letter variable (products such as `xy` are two variables).
  expr parse_word() {
    skip_ws();
    std::size_t e = p_;
    while (e < s_.size() && is_alpha(s_[e])) ++e;
    const std::string_view w = s_.substr(p_, e - p_);
    if (is_function_name(w)) {
      p_ = e;
      return parse_application(std::string(w));
    }
    // Plain-text spellings of constants.
    if (w == "pi") {
      p_ = e;
      return make_named(kind::constant, "pi");
    }
    if (w == "inf" || w == "infty" || w == "infinity") {
      p_ = e;
      return make_named(kind::constant, "inf");
    }
    // Three or more letters that are not a function: a word (`odd`, `Monday`, `students`), one
    // case-insensitive text symbol. Shorter runs are products of single-letter variables (`xy`).
    if (w.size() >= 3) {
      p_ = e;
      return make_named(kind::text, ascii_lower(w));
    }
    return parse_letter();
  }

  /// Function application after its name: optional `_base` (log), optional `^power`
  /// (`\sin^2 x`, `\sin^{-1}`), then `(args)`, `{arg}` or an implicit product operand.
  expr parse_application(std::string name) {
    std::optional<expr> base, power;
    // lg is log base 10; \log without a base is the natural logarithm (SymPy's reading).
    if (name == "lg") {
      name = "log";
      base = make_number(10);
    }
    // \log_b x: the base is stored as a second argument (log(x)/log(b) in the CAS).
    if ((name == "log") && peek() == '_') {
      ++p_;
      base = parse_exponent();
    }
    if (peek() == '^') {
      ++p_;
      power = parse_exponent();
      if (power->k == kind::neg && power->args[0].k == kind::number && power->args[0].value == 1 &&
          (name == "sin" || name == "cos" || name == "tan")) {
        name = "arc" + name;
        power.reset();
      }
    }
    std::vector<expr> args;
    const char c = peek();
    // Argument: a parenthesised or braced list (several arguments for gcd/max), or an implicit
    // operand (`\sin 2x` = sin(2x), but `\sin x \cos x` = sin(x)·cos(x): commands end it).
    if (c == '(' || c == '{') {
      ++p_;
      expr a = parse_list();
      expect(c == '(' ? ')' : '}');
      if (a.k == kind::set && !a.braced)
        args = std::move(a.args);
      else
        args.push_back(std::move(a));
    } else {
      expr a = parse_power();
      // \sin 2x: absorb directly following numbers and letters (not functions, not groups).
      while (p_ < s_.size() && (is_alnum(peek()) && !is_function_name(word_at()))) {
        a = make_node(kind::mul, {std::move(a), parse_power()});
      }
      args.push_back(std::move(a));
    }
    if (base) args.push_back(std::move(*base));
    expr f = make_node(kind::func, std::move(args), name);
    if (power) f = make_node(kind::pow, {std::move(f), std::move(*power)});
    return f;
  }

  /// Argument of \frac, \sqrt, \binom: a braced group, one digit, one letter or one command.
  expr read_arg() {
    const char c = peek();
    if (c == '{') {
      ++p_;
      if (peek() == '}') throw syntax_error{};
      expr e = parse_list();
      expect('}');
      return e;
    }
    if (is_digit(c)) return make_number(s_[p_++] - '0');
    if (is_alpha(c)) return parse_letter();
    if (c == '\\') return parse_command();
    throw syntax_error{};
  }

  /// `(..)` / `[..]`: grouping, tuple, or interval with its ends' openness.
  expr parse_bracket() {
    const char open = s_[p_++];
    std::vector<expr> items;
    items.push_back(parse_relation());
    while (peek() == ',' || peek() == ';') {
      ++p_;
      items.push_back(parse_relation());
    }
    const char close = peek();
    if (close != ')' && close != ']') throw syntax_error{};
    ++p_;
    // One item: grouping. Two items with a square bracket on either side: an interval with that
    // openness. `(a, b)`: a pair that may also denote an open interval (paren_pair), decided by
    // the comparator against the other side. More items: a tuple.
    const bool round = open == '(' && close == ')';
    if (items.size() == 1) {
      if (open == '(' && close == ')') return std::move(items[0]);
      if (open == '[' && close == ']') return std::move(items[0]);
      throw syntax_error{};
    }
    if (items.size() == 2 && !round) {
      expr e = make_node(kind::interval, std::move(items));
      e.lo_closed = open == '[';
      e.hi_closed = close == ']';
      return e;
    }
    if (!round && !(open == '[' && close == ']')) throw syntax_error{};
    expr e = make_node(kind::tuple, std::move(items));
    e.paren_pair = round && e.args.size() == 2;
    return e;
  }

  /// A command at the cursor (`\frac`, `\sqrt`, `\{..\}`, functions, Greek letters, ...).
  /// (parse_commands.hpp)
  expr parse_command();
  /// `\text{..}` / `\operatorname{..}` after the command name. (parse_commands.hpp)
  expr parse_text(bool operator_name);
  /// `\begin{..}` matrix environment after the command name. (parse_commands.hpp)
  expr parse_environment();
};

}  // namespace detail
}  // namespace grpo::rewards::math

// The productions defined out of the class body (they include this file first).
#include <rewards/math/parse_commands.hpp>
#include <rewards/math/parse_number.hpp>

namespace grpo::rewards::math {

/// Parses a normalised answer string into an expression tree.
/// @pre `s` is the output of normalize_answer (any text is accepted, though).
/// @post nullopt on a syntax error or when nesting exceeds `max_depth`; spends budget steps and
///       throws budget_exhausted when the budget runs out.
inline std::optional<expr> parse(std::string_view s, budget& b, int max_depth = 96) {
  try {
    detail::parser p(s, b, max_depth);
    return p.parse_all();
  } catch (const detail::syntax_error&) {
    return std::nullopt;
  }
}

}  // namespace grpo::rewards::math

// SPDX-License-Identifier: Apache-2.0
/// @file parse.hpp
/// @brief Recursive-descent LaTeX/plain-text maths parser (bounded depth, budgeted) producing an
///        `expr` tree: numbers, fractions, roots, powers, functions, sets, tuples, intervals,
///        unions, relations and chains, matrices, percent, factorials, binomials.
#pragma once

#include <rewards/math/expr.hpp>
#include <rewards/math/options.hpp>
#include <rewards/math/text.hpp>

#include <array>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace grpo::rewards::math {
namespace detail {

// Failure is signalled by throwing this empty type rather than by optional<> at every level: the
// grammar has ~20 mutually recursive productions and the happy path must stay cheap. parse()
// converts it to nullopt; it never crosses the public API.
/// Internal: the input is not a well-formed answer. Never escapes parse().
struct syntax_error {};

/// Function names recognised with or without a backslash (`\sin x`, `sin(x)`). "deg" and "det" are
/// listed only so that they are not mistaken for products of letters; they are not applied.
inline constexpr std::array<std::string_view, 27> function_names{
    "sin",  "cos",  "tan",  "cot", "sec",   "csc",  "arcsin", "arccos", "arctan",
    "sinh", "cosh", "tanh", "log", "ln",    "lg",   "exp",    "gcd",    "lcm",
    "max",  "min",  "sqrt", "abs", "floor", "ceil", "arccot", "deg",    "det"};

inline bool is_function_name(std::string_view w) noexcept {
  for (std::string_view f : function_names)
    if (w == f) return w != "deg" && w != "det";
  return false;
}

/// Greek letters and a few letter-like symbols: each is one variable named after the command.
inline constexpr std::array<std::string_view, 40> greek_letters{
    "alpha",   "beta",     "gamma", "delta", "epsilon", "varepsilon", "zeta",   "eta",
    "theta",   "vartheta", "iota",  "kappa", "lambda",  "mu",         "nu",     "xi",
    "rho",     "varrho",   "sigma", "tau",   "upsilon", "phi",        "varphi", "chi",
    "psi",     "omega",    "Gamma", "Delta", "Theta",   "Lambda",     "Xi",     "Sigma",
    "Upsilon", "Phi",      "Psi",   "Omega", "ell",     "aleph",      "nabla",  "hbar"};

inline bool is_greek(std::string_view w) noexcept {
  for (std::string_view g : greek_letters)
    if (w == g) return true;
  return false;
}

/// Commands that can start an operand (so that juxtaposition means multiplication).
inline bool command_starts_operand(std::string_view name) noexcept {
  static constexpr std::array<std::string_view, 25> starters{
      "frac",     "sqrt",      "binom",   "text",  "operatorname", "mathbb",   "pi",
      "infty",    "lfloor",    "lceil",   "lvert", "vert",         "begin",    "boxed",
      "overline", "hat",       "vec",     "bar",   "tilde",        "emptyset", "ldots",
      "langle",   "underline", "widehat", "choose"};
  for (std::string_view s : starters)
    if (name == s) return name != "choose";
  return is_function_name(name) || is_greek(name);
}

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
class parser {
 public:
  parser(std::string_view s, budget& b, int max_depth, int depth = 0) noexcept
      : s_(s), b_(b), depth_(depth), max_depth_(max_depth) {}

  /// Parses all of the input. @post throws syntax_error or budget_exhausted on failure.
  expr parse_all() {
    if (at_end()) throw syntax_error{};
    expr e = parse_list();
    if (!at_end()) throw syntax_error{};
    return e;
  }

 private:
  std::string_view s_;
  std::size_t p_ = 0;
  budget& b_;
  int depth_;
  int max_depth_;
  int abs_depth_ = 0;

  /// RAII depth counter: construction fails (syntax_error) beyond max_depth_.
  struct depth_guard {
    parser& P;
    explicit depth_guard(parser& p) : P(p) {
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
  /// Raw text of a `{...}` group at the cursor (at most 4 KiB), cursor moved past it.
  std::string_view raw_group() {
    if (peek() != '{') throw syntax_error{};
    const std::size_t close = find_closing_brace(s_, p_, 4096);
    if (close == npos) throw syntax_error{};
    const std::string_view g = s_.substr(p_ + 1, close - p_ - 1);
    b_.spend(g.size());
    p_ = close + 1;
    return g;
  }

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
  expr parse_number(bool allow_mixed) {
    skip_ws();
    std::string digits;
    std::size_t frac_len = 0;
    bool decimal = false;
    while (p_ < s_.size() && is_digit(s_[p_])) digits += s_[p_++];
    // Digits and an optional fractional part are collected into one digit string: the value is
    // digits / 10^frac_len, exact, whatever the length (capped at 4000 digits).
    if (p_ + 1 < s_.size() && s_[p_] == '.' && is_digit(s_[p_ + 1])) {
      decimal = true;
      ++p_;
      while (p_ < s_.size() && is_digit(s_[p_])) {
        digits += s_[p_++];
        ++frac_len;
      }
    }
    if (digits.size() > 4000) throw syntax_error{};
    b_.spend(digits.size());
    long exp10 = 0;
    // (Only directly attached: `2e` alone is 2 times Euler's number.)
    // Scientific notation written without spaces: 1.5e3, 2E-4.
    if (p_ + 1 < s_.size() && (s_[p_] == 'e' || s_[p_] == 'E')) {
      std::size_t q = p_ + 1;
      bool negative = false;
      if (q < s_.size() && (s_[q] == '-' || s_[q] == '+')) negative = s_[q++] == '-';
      if (q < s_.size() && is_digit(s_[q])) {
        long k = 0;
        while (q < s_.size() && is_digit(s_[q]) && k < 100000) k = k * 10 + (s_[q++] - '0');
        if (k > 400) throw syntax_error{};
        exp10 = negative ? -k : k;
        decimal = true;
        p_ = q;
      }
    }
    // value = digits * 10^(exp10 - frac_len), canonicalised.
    mpz_class num(digits, 10);
    mpz_class ten_f, ten_e;
    mpz_ui_pow_ui(ten_f.get_mpz_t(), 10, static_cast<unsigned long>(frac_len));
    mpq_class v(num, ten_f);
    if (exp10 != 0) {
      mpz_ui_pow_ui(ten_e.get_mpz_t(), 10, static_cast<unsigned long>(exp10 < 0 ? -exp10 : exp10));
      v = exp10 > 0 ? mpq_class(v * ten_e) : mpq_class(v / ten_e);
    }
    v.canonicalize();
    expr e = make_number(v);
    // Written precision of a decimal: significant digits exclude leading zeros (0.0015 has 2); the
    // last written digit sits at 10^(exp10 - frac_len). Integers carry no precision: exact.
    if (decimal) {
      std::size_t lead = 0;
      while (lead < digits.size() && digits[lead] == '0') ++lead;
      e.sig_digits = static_cast<int>(digits.size() - lead);
      if (e.sig_digits == 0) e.sig_digits = 1;
      e.ulp_exp = static_cast<int>(exp10) - static_cast<int>(frac_len);
      return e;
    }
    // Numerals in another base (`1011_2`, `123_{4}`) are names, not values: the question asks for
    // that representation, so only the same digits in the same base match.
    if (!decimal && p_ < s_.size() && s_[p_] == '_') {
      ++p_;
      return make_named(kind::symbol, digits + "_" + subscript_text());
    }
    if (!allow_mixed) return e;
    // Mixed numbers: 2\frac{1}{2} and "7 3/4" with a proper fraction of integer literals.
    const std::size_t save = p_;
    const bool spaced = p_ < s_.size() && is_space(s_[p_]);
    skip_ws();
    auto read_int = [&](std::size_t& q, mpz_class& out) {
      std::string d;
      while (q < s_.size() && is_digit(s_[q]) && d.size() < 64) d += s_[q++];
      if (d.empty()) return false;
      out = mpz_class(d, 10);
      return true;
    };
    // Only proper fractions of integer literals make a mixed number (2\frac{1}{2} = 5/2);
    // 2\frac{x}{2} and 2\frac{3}{2} stay products, as do "7 3/4x" and "7 3/4^2".
    if (command_at(s_, p_, "frac")) {
      std::size_t q = p_ + 5;
      mpz_class a, bden;
      auto braced_int = [&](mpz_class& out) {
        while (q < s_.size() && is_space(s_[q])) ++q;
        if (q < s_.size() && s_[q] == '{') {
          ++q;
          if (!read_int(q, out) || q >= s_.size() || s_[q] != '}') return false;
          ++q;
          return true;
        }
        if (q < s_.size() && is_digit(s_[q])) {
          out = s_[q++] - '0';
          return true;
        }
        return false;
      };
      if (braced_int(a) && braced_int(bden) && bden != 0 && a < bden) {
        p_ = q;
        expr m = make_number(v + mpq_class(a, bden));
        m.value.canonicalize();
        return m;
      }
    } else if (spaced && p_ < s_.size() && is_digit(s_[p_])) {
      std::size_t q = p_;
      mpz_class a, bden;
      if (read_int(q, a) && q < s_.size() && s_[q] == '/' && (++q, read_int(q, bden)) &&
          (q >= s_.size() || !(is_alnum(s_[q]) || s_[q] == '^' || s_[q] == '.')) && bden != 0 &&
          a < bden) {
        p_ = q;
        expr m = make_number(v + mpq_class(a, bden));
        m.value.canonicalize();
        return m;
      }
    }
    p_ = save;
    return e;
  }

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

  /// The run of letters at the cursor (without consuming it).
  std::string_view word_at() noexcept {
    skip_ws();
    std::size_t e = p_;
    while (e < s_.size() && is_alpha(s_[e])) ++e;
    return s_.substr(p_, e - p_);
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

  expr parse_command() {
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
        "le",     "ge",    "ne",    "in",       "approx", "cdot",     "times",
        "div",    "pm",    "mp",    "cup",      "cap",    "setminus", "end",
        "rfloor", "rceil", "rvert", "rangle",   "to",     "mapsto",   "implies",
        "iff",    "land",  "lor",   "neg",      "forall", "exists",   "sum",
        "prod",   "int",   "lim",   "notin",    "subset", "subseteq", "equiv",
        "sim",    "cong",  "perp",  "parallel", "mid",    "colon"};
    for (std::string_view op : operators)
      if (name == op) throw syntax_error{};
    if (peek_raw() != '{' && !(peek_raw() == ' ' && peek() == '{'))
      return make_named(kind::symbol, "\\" + std::string(name));
    throw syntax_error{};
  }

  /// `\text{..}`: a number, a single letter, a function name, or words (lower-cased text).
  expr parse_text(bool operator_name) {
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
  expr parse_environment() {
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
};

}  // namespace detail

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

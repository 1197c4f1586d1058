// SPDX-License-Identifier: Apache-2.0
/// @file expr.hpp
/// @brief Expression tree of a parsed answer: exact rational numbers (GMP), symbols, operators,
///        functions, sets, tuples, intervals, matrices and relation chains.
#pragma once

#include <gmpxx.h>

#include <cstdint>
#include <string>
#include <vector>

namespace grpo::rewards::math {

/// Node kinds. Subtraction is `add` of a `neg`, division is `mul` by `pow(x, -1)`.
enum class kind : std::uint8_t {
  number,     ///< exact rational `value`; decimal literals also carry their written precision
  symbol,     ///< variable `name` (subscripts folded in: `a_{10}`)
  text,       ///< words (`\text{Evelyn}`, `odd`), lower-cased in `name`
  constant,   ///< `name` in {"pi", "e", "i", "inf"}
  add,        ///< sum of `args`
  mul,        ///< product of `args`
  pow,        ///< `args[0] ^ args[1]`
  neg,        ///< `-args[0]`
  func,       ///< function `name` applied to `args` (sqrt, root{x,n}, sin, log{x[,base]}, ...)
  factorial,  ///< `args[0]!`
  percent,    ///< `args[0] %`, i.e. args[0] / 100 (kept so the grader sees the percent sign)
  pm,         ///< `args[0] \pm args[1]`: the set {a+b, a-b} when used as an answer
  set,        ///< finite set (`\{..\}`, or a bare comma list when `braced` is false)
  tuple,      ///< ordered tuple; `paren_pair` when written `(a, b)` (also an open interval)
  interval,   ///< `args[0], args[1]` with `lo_closed` / `hi_closed`
  matrix,     ///< `rows` x `cols` entries, row-major in `args`
  set_op,     ///< `name` in {"cup", "cap", "setminus"} over `args`
  relation,   ///< chain `args[0] ops[0] args[1] ops[1] ...`
  empty_set,  ///< `\emptyset`, `\{\}`
  named_set,  ///< `\mathbb{R}` etc.: `name` in {"R", "N", "Z", "Q", "C"}
};

/// Relation operators of a chain.
enum class rel : std::uint8_t { eq, ne, lt, le, gt, ge, in, approx };

// Design: one tagged struct instead of a class hierarchy keeps trees copyable values (pm
// expansion and relation flipping copy sub-trees) and makes the comparator a switch on `k`.
// Numbers are exact rationals even when written as decimals; `sig_digits`/`ulp_exp` carry the
// written precision for the float policy (0.333 is 333/1000 that "means" 1/3 to 3 digits).
/// One tree node. Plain value type: trees are small (the parser bounds their size and depth).
struct expr {
  kind k = kind::number;
  std::string name;         ///< symbol, text, constant, function or set operation name
  mpq_class value;          ///< number value (exact)
  int ulp_exp = 0;          ///< decimal literal: its last written digit is at 10^ulp_exp
  int sig_digits = -1;      ///< decimal literal: significant digits written; -1 when exact
  bool lo_closed = false;   ///< interval: left end included
  bool hi_closed = false;   ///< interval: right end included
  bool paren_pair = false;  ///< tuple written with parentheses and two entries
  bool braced = false;      ///< set written with braces (vs a bare list `1, 2`)
  int rows = 0, cols = 0;   ///< matrix shape
  std::vector<rel> ops;     ///< relation operators (size = args.size() - 1)
  std::vector<expr> args;   ///< children
};

/// Factory helpers (keep the parser and the comparator short).
inline expr make_number(const mpq_class& v) {
  expr e;
  e.k = kind::number;
  e.value = v;
  return e;
}
inline expr make_named(kind k, std::string name) {
  expr e;
  e.k = k;
  e.name = std::move(name);
  return e;
}
inline expr make_node(kind k, std::vector<expr> args, std::string name = {}) {
  expr e;
  e.k = k;
  e.args = std::move(args);
  e.name = std::move(name);
  return e;
}

/// Number of nodes of a tree (used to bound CAS work).
inline std::size_t tree_size(const expr& e) {
  std::size_t n = 1;
  for (const expr& a : e.args) n += tree_size(a);
  return n;
}

/// True when the tree contains a node of kind `k` (optionally with name `name`).
inline bool contains(const expr& e, kind k, const char* name = nullptr) {
  if (e.k == k && (name == nullptr || e.name == name)) return true;
  for (const expr& a : e.args)
    if (contains(a, k, name)) return true;
  return false;
}

/// Debug/diagnostic rendering in a Lisp-like prefix form, e.g. `(add 1 (neg x))`.
inline std::string to_string(const expr& e) {
  auto list = [&](const char* head) {
    std::string s = "(";
    s += head;
    for (const expr& a : e.args) s += " " + to_string(a);
    return s + ")";
  };
  switch (e.k) {
    case kind::number:
      return e.value.get_str();
    case kind::symbol:
      return e.name;
    case kind::text:
      return "\"" + e.name + "\"";
    case kind::constant:
      return e.name;
    case kind::add:
      return list("add");
    case kind::mul:
      return list("mul");
    case kind::pow:
      return list("pow");
    case kind::neg:
      return list("neg");
    case kind::func:
      return list(e.name.c_str());
    case kind::factorial:
      return list("fact");
    case kind::percent:
      return list("percent");
    case kind::pm:
      return list("pm");
    case kind::set:
      return list(e.braced ? "set" : "list");
    case kind::tuple:
      return list("tuple");
    case kind::interval: {
      std::string s = e.lo_closed ? "[" : "(";
      s += to_string(e.args[0]) + ", " + to_string(e.args[1]);
      return s + (e.hi_closed ? "]" : ")");
    }
    case kind::matrix:
      return list(("matrix" + std::to_string(e.rows) + "x" + std::to_string(e.cols)).c_str());
    case kind::set_op:
      return list(e.name.c_str());
    case kind::relation: {
      static constexpr const char* names[] = {"=", "!=", "<", "<=", ">", ">=", "in", "~"};
      std::string s = "(rel " + to_string(e.args[0]);
      for (std::size_t i = 0; i < e.ops.size(); ++i)
        s += std::string(" ") + names[static_cast<int>(e.ops[i])] + " " + to_string(e.args[i + 1]);
      return s + ")";
    }
    case kind::empty_set:
      return "emptyset";
    case kind::named_set:
      return "set:" + e.name;
  }
  return "?";
}

}  // namespace grpo::rewards::math

// SPDX-License-Identifier: Apache-2.0
/// @file equiv_structures.hpp
/// @brief The structured layer of answer equivalence: undefined forms, \pm variants, elements and
///        multisets, finite set values, relations as sets (inequalities, |z| chains), unions,
///        intervals with openness, words and matrices written as arithmetic. Part of
///        rewards/math/equivalence.hpp (the rules that combine these live there).
#pragma once

#include <rewards/math/equiv_scalar.hpp>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace grpo::rewards::math {
namespace detail {

/// The recursive rule set (defined in rewards/math/equivalence.hpp, included at the end of this
/// file so that it compiles alone).
inline bool equiv(const expr& g, const expr& p, compare_ctx& c);

/// True when `e` holds an undefined form: a division by an exact zero (`0/0`, `5/0`), `0^0`,
/// `\infty - \infty`, `0 \cdot \infty`, `\infty / \infty`. Such answers are not answers.
inline bool is_undefined(const expr& e, budget& b) {
  b.spend();
  auto is_zero = [&](const expr& x) {
    const auto v = eval_rational(x, b);
    return v && *v == 0;
  };
  auto reciprocal_of_inf = [&](const expr& x) {
    if (x.k != kind::pow || infinity_sign(x.args[0]) == 0) return false;
    const auto k = eval_rational(x.args[1], b);
    return k && *k < 0;
  };
  if (e.k == kind::pow && is_zero(e.args[0])) {
    const auto k = eval_rational(e.args[1], b);
    if (k && *k <= 0) return true;
  }
  if (e.k == kind::add) {
    bool pos = false, neg = false;
    for (const expr& a : e.args) {
      pos = pos || infinity_sign(a) > 0;
      neg = neg || infinity_sign(a) < 0;
    }
    if (pos && neg) return true;
  }
  if (e.k == kind::mul) {
    bool inf = false, zero = false, inv_inf = false;
    for (const expr& a : e.args) {
      inf = inf || infinity_sign(a) != 0;
      inv_inf = inv_inf || reciprocal_of_inf(a);
      zero = zero || (!reciprocal_of_inf(a) && is_zero(a));
    }
    if ((inf && zero) || (inf && inv_inf)) return true;
  }
  for (const expr& a : e.args)
    if (is_undefined(a, b)) return true;
  return false;
}

/// Expands `\pm` into its variants (`\frac{1 \pm \sqrt5}{2}` -> two values); at most 16.
inline std::vector<expr> pm_variants(const expr& e) {
  // a \pm b -> {a + b, a - b}, recursively and through enclosing operators (every occurrence
  // doubles the variants; more than 16 is refused rather than enumerated).
  if (e.k == kind::pm) {
    std::vector<expr> out;
    for (const expr& a : pm_variants(e.args[0]))
      for (const expr& b : pm_variants(e.args[1])) {
        out.push_back(make_node(kind::add, {a, b}));
        out.push_back(make_node(kind::add, {a, make_node(kind::neg, {b})}));
      }
    if (out.size() > 16) throw cas_unsupported{};
    return out;
  }
  if (!contains(e, kind::pm)) return {e};
  std::vector<expr> acc{e};
  for (std::size_t i = 0; i < e.args.size(); ++i) {
    std::vector<expr> next;
    for (const expr& partial : acc)
      for (const expr& v : pm_variants(e.args[i])) {
        expr n = partial;
        n.args[i] = v;
        next.push_back(std::move(n));
      }
    if (next.size() > 16) throw cas_unsupported{};
    acc = std::move(next);
  }
  return acc;
}

/// Elements of a set-like answer (bare list, braced set, `\pm`); anything else is a singleton.
inline std::vector<expr> elements(const expr& e) {
  std::vector<expr> out;
  if (e.k == kind::set) {
    for (const expr& a : e.args) {
      if (a.k != kind::relation && contains(a, kind::pm)) {
        for (expr& v : pm_variants(a)) out.push_back(std::move(v));
      } else {
        out.push_back(a);
      }
    }
    return out;
  }
  if (e.k != kind::relation && contains(e, kind::pm)) return pm_variants(e);
  return {e};
}

// Greedy matching: each gold element takes the first unused equivalent prediction element. For an
// equivalence relation this finds a perfect matching whenever one exists; with roundings (not
// transitive) it may miss one, which can only cost a false "incorrect", never a false "correct".
/// Unordered match of two element lists (greedy; equal sizes required, at most 64 elements).
inline bool multiset_equal(const std::vector<expr>& g, const std::vector<expr>& p, compare_ctx& c) {
  // Sizes must agree first: this is the guard that rejects "3, 4" against the single answer 3.
  if (g.size() != p.size() || g.size() > 64) return false;
  std::vector<bool> used(p.size(), false);
  for (const expr& a : g) {
    bool found = false;
    for (std::size_t j = 0; j < p.size() && !found; ++j) {
      if (used[j]) continue;
      if (equiv(a, p[j], c)) used[j] = found = true;
    }
    if (!found) return false;
  }
  return true;
}

/// Value of `\cup` / `\cap` / `\setminus` over finite sets (`\{1,3\} \cup \{2,4\}`) as
/// a list of distinct elements; nullopt when an operand is not a finite set.
inline std::optional<std::vector<expr>> finite_set_value(const expr& e, compare_ctx& c) {
  if (e.k == kind::set && e.braced) return elements(e);
  if (e.k == kind::empty_set) return std::vector<expr>{};
  if (e.k != kind::set_op || e.args.size() > 16) return std::nullopt;
  auto acc = finite_set_value(e.args[0], c);
  if (!acc || acc->size() > 64) return std::nullopt;
  auto member = [&](const expr& x, const std::vector<expr>& in) {
    for (const expr& y : in)
      if (equiv(y, x, c)) return true;
    return false;
  };
  for (std::size_t i = 1; i < e.args.size(); ++i) {
    auto next = finite_set_value(e.args[i], c);
    if (!next || next->size() > 64) return std::nullopt;
    std::vector<expr> out;
    // Set algebra with the answer equivalence as membership test (so {0.5} u {1/2} has one
    // element).
    if (e.name == "cup") {
      out = *acc;
      for (const expr& x : *next)
        if (!member(x, out)) out.push_back(x);
    } else {
      const bool keep_common = e.name == "cap";
      for (const expr& x : *acc)
        if (member(x, *next) == keep_common) out.push_back(x);
    }
    acc = std::move(out);
  }
  return acc;
}

/// Flips `a > b > c` into `c < b < a` so that both chains read left to right ascending.
inline expr ascending(const expr& r) {
  bool all_greater = true;
  for (rel o : r.ops) all_greater = all_greater && (o == rel::gt || o == rel::ge);
  if (!all_greater) return r;
  expr out = r;
  std::reverse(out.args.begin(), out.args.end());
  std::reverse(out.ops.begin(), out.ops.end());
  for (rel& o : out.ops) o = (o == rel::gt) ? rel::lt : rel::le;
  return out;
}

inline expr infinity(int sign) {
  expr inf = make_named(kind::constant, "inf");
  return sign > 0 ? inf : make_node(kind::neg, {inf});
}

/// Interval form of a one-variable inequality (`x < 3`, `1 \le x < 2`, `x \in S`), or of a list of
/// them (a union); nullopt otherwise.
inline std::optional<expr> relation_to_set(const expr& r) {
  if (r.k == kind::set) {
    std::vector<expr> parts;
    for (const expr& a : r.args) {
      auto s = relation_to_set(a);
      if (!s) return std::nullopt;
      parts.push_back(std::move(*s));
    }
    return make_node(kind::set_op, std::move(parts), "cup");
  }
  if (r.k != kind::relation) return std::nullopt;
  if (r.ops.size() == 1 && r.ops[0] == rel::in && r.args[0].k == kind::symbol) return r.args[1];
  const expr a = ascending(r);
  auto strict = [](rel o) { return o == rel::lt; };
  for (rel o : a.ops)
    if (o != rel::lt && o != rel::le) return std::nullopt;
  expr iv;
  iv.k = kind::interval;
  if (a.ops.size() == 1) {
    if (a.args[0].k == kind::symbol && is_closed(a.args[1])) {
      iv.args = {infinity(-1), a.args[1]};
      iv.hi_closed = !strict(a.ops[0]);
      return iv;
    }
    if (a.args[1].k == kind::symbol && is_closed(a.args[0])) {
      iv.args = {a.args[0], infinity(1)};
      iv.lo_closed = !strict(a.ops[0]);
      return iv;
    }
    return std::nullopt;
  }
  if (a.ops.size() == 2 && (a.args[1].k == kind::symbol || symbol_like(a.args[1])) &&
      is_closed(a.args[0]) && is_closed(a.args[2])) {
    iv.args = {a.args[0], a.args[2]};
    iv.lo_closed = !strict(a.ops[0]);
    iv.hi_closed = !strict(a.ops[1]);
    return iv;
  }
  return std::nullopt;
}

/// A side of relation `r` is `|v|`.
inline bool mentions_abs_of(const expr& r, const std::string& v) {
  for (const expr& a : r.args)
    if (a.k == kind::func && a.name == "abs" && a.args.size() == 1 && a.args[0].k == kind::symbol &&
        a.args[0].name == v)
      return true;
  return false;
}

/// `a \le |v| \le b` (or `<`) with constant bounds, 0 < a < b exact rationals: the set of v,
/// `[-b, -a] \cup [a, b]` (openness kept). nullopt for any other shape.
inline std::optional<expr> abs_chain_to_set(const expr& r, const std::string& v, budget& b) {
  if (r.k != kind::relation) return std::nullopt;
  const expr a = ascending(r);
  if (a.ops.size() != 2 || a.args.size() != 3) return std::nullopt;
  for (rel o : a.ops)
    if (o != rel::lt && o != rel::le) return std::nullopt;
  const expr& mid = a.args[1];
  if (mid.k != kind::func || mid.name != "abs" || mid.args.size() != 1 ||
      mid.args[0].k != kind::symbol || mid.args[0].name != v)
    return std::nullopt;
  const auto lo = eval_rational(a.args[0], b), hi = eval_rational(a.args[2], b);
  if (!lo || !hi || !(*lo > 0) || !(*lo < *hi)) return std::nullopt;
  expr left, right;
  left.k = right.k = kind::interval;
  left.args = {make_node(kind::neg, {a.args[2]}), make_node(kind::neg, {a.args[0]})};
  right.args = {a.args[0], a.args[2]};
  left.lo_closed = right.hi_closed = a.ops[1] == rel::le;
  left.hi_closed = right.lo_closed = a.ops[0] == rel::le;
  return make_node(kind::set_op, {std::move(left), std::move(right)}, "cup");
}

/// Answers that denote a set of reals (used by the inequality/interval rules).
inline bool is_set_like(const expr& e) {
  return e.k == kind::set || e.k == kind::interval || e.k == kind::set_op ||
         e.k == kind::empty_set || e.k == kind::named_set;
}

/// l - r as a tree (for relation comparison).
inline expr difference(const expr& l, const expr& r) {
  return make_node(kind::add, {l, make_node(kind::neg, {r})});
}

/// Two relations (chains): same operators after orienting them ascending; one-operator relations
/// compare `lhs - rhs` up to a constant factor (positive for inequalities), `x = v` vs `x = w`
/// compares the values; longer chains compare operand-wise.
inline bool relation_equal(const expr& g0, const expr& p0, compare_ctx& c) {
  const auto gc = collapsed_assignment(g0), pc = collapsed_assignment(p0);
  if (gc || pc) return relation_equal(gc ? *gc : g0, pc ? *pc : p0, c);
  const expr g = ascending(g0), p = ascending(p0);
  if (g.ops.size() != p.ops.size()) return false;
  auto canon = [](rel o) { return o == rel::approx ? rel::eq : o; };
  for (std::size_t i = 0; i < g.ops.size(); ++i)
    if (canon(g.ops[i]) != canon(p.ops[i])) return false;
  if (g.ops.size() > 1) {
    for (std::size_t i = 0; i < g.args.size(); ++i)
      if (!equiv(g.args[i], p.args[i], c)) return false;
    return true;
  }
  const rel op = canon(g.ops[0]);
  const expr &gl = g.args[0], &gr = g.args[1], &pl = p.args[0], &pr = p.args[1];
  if (same_name(gl, pl) && (op == rel::eq || op == rel::in)) return equiv(gr, pr, c);
  if (op == rel::in) return equiv(gl, pl, c) && equiv(gr, pr, c);
  if (is_set_like(gr) || is_set_like(pr) || is_set_like(gl) || is_set_like(pl) ||
      gl.k == kind::tuple || gr.k == kind::tuple || pl.k == kind::tuple || gr.k == kind::matrix ||
      pr.k == kind::matrix)
    return equiv(gl, pl, c) && equiv(gr, pr, c);
  if (proportional(difference(gl, gr), difference(pl, pr), op != rel::eq && op != rel::ne, c))
    return true;
  // `k = 3` vs `x = 3`: two plain assignments of a closed value (lenient on the variable name).
  if (op == rel::eq && gl.k == kind::symbol && pl.k == kind::symbol && is_closed(gr) &&
      is_closed(pr))
    return equiv(gr, pr, c);
  return false;
}

/// Parts of a (nested) union, flattened: (A u B) u C -> [A, B, C].
inline std::vector<expr> union_parts(const expr& e) {
  if (e.k == kind::set_op && e.name == "cup") {
    std::vector<expr> out;
    for (const expr& a : e.args)
      for (expr& x : union_parts(a)) out.push_back(std::move(x));
    return out;
  }
  return {e};
}

/// Words compare case- and blank-insensitively; a one-letter variable may match a word.
inline bool text_equal(const expr& g, const expr& p) {
  auto norm = [](const expr& e) {
    std::string s;
    for (char ch : e.name)
      if (!is_space(ch)) s += to_lower(ch);
    return s;
  };
  return norm(g) == norm(p);
}

/// Intervals: same openness at both ends and equivalent ends (`[0.5, 3)` = `[\frac12, 3)`).
inline bool interval_equal(const expr& g, const expr& p, compare_ctx& c) {
  return g.lo_closed == p.lo_closed && g.hi_closed == p.hi_closed &&
         equiv(g.args[0], p.args[0], c) && equiv(g.args[1], p.args[1], c);
}

/// Value of a matrix expression written as sums, products and scalar multiples of matrix
/// literals (`A + B`, `A B`, `2A`, `-A`), as one matrix whose entries are unevaluated trees;
/// nullopt when shapes do not conform or there is no matrix. At most 400 entries.
inline std::optional<expr> matrix_value(const expr& e) {
  if (e.k == kind::matrix) return e;
  if (!contains(e, kind::matrix)) return std::nullopt;
  if (e.k == kind::neg) {
    auto m = matrix_value(e.args[0]);
    if (!m) return std::nullopt;
    for (expr& x : m->args) x = make_node(kind::neg, {x});
    return m;
  }
  if (e.k == kind::add) {
    std::optional<expr> acc;
    for (const expr& a : e.args) {
      auto m = matrix_value(a);
      if (!m) return std::nullopt;
      if (!acc) {
        acc = std::move(m);
        continue;
      }
      if (m->rows != acc->rows || m->cols != acc->cols) return std::nullopt;
      for (std::size_t i = 0; i < acc->args.size(); ++i)
        acc->args[i] = make_node(kind::add, {acc->args[i], m->args[i]});
    }
    return acc;
  }
  if (e.k == kind::mul) {
    // (scalar factors) x (matrix product in order): C_ij = sum_k A_ik B_kj.
    std::vector<expr> scalars;
    std::optional<expr> acc;
    for (const expr& a : e.args) {
      if (!contains(a, kind::matrix)) {
        scalars.push_back(a);
        continue;
      }
      auto m = matrix_value(a);
      if (!m) return std::nullopt;
      if (!acc) {
        acc = std::move(m);
        continue;
      }
      if (acc->cols != m->rows) return std::nullopt;
      const int n = acc->rows, k = acc->cols, q = m->cols;
      if (static_cast<long>(n) * q > 400 || static_cast<long>(n) * q * k > 8000)
        return std::nullopt;
      expr prod = make_node(kind::matrix, {});
      prod.rows = n;
      prod.cols = q;
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < q; ++j) {
          std::vector<expr> terms;
          for (int t = 0; t < k; ++t)
            terms.push_back(make_node(kind::mul, {acc->args[static_cast<std::size_t>(i * k + t)],
                                                  m->args[static_cast<std::size_t>(t * q + j)]}));
          prod.args.push_back(make_node(kind::add, std::move(terms)));
        }
      acc = std::move(prod);
    }
    if (!acc) return std::nullopt;
    if (!scalars.empty()) {
      for (expr& x : acc->args) {
        std::vector<expr> f = scalars;
        f.push_back(x);
        x = make_node(kind::mul, std::move(f));
      }
    }
    return acc;
  }
  return std::nullopt;
}

}  // namespace detail
}  // namespace grpo::rewards::math

#include <rewards/math/equivalence.hpp>  // detail::equiv

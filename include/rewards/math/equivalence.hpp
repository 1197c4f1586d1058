// SPDX-License-Identifier: Apache-2.0
/// @file equivalence.hpp
/// @brief Equivalence of two answer trees: exact rationals first (GMP), also at fixed rational
///        points for free variables, then rigorous ball arithmetic (Arb) at growing precision;
///        relations
///        up to a non-zero factor, unordered sets, ordered tuples, intervals with openness,
///        matrices, and the asymmetric gold/prediction rules that stop reward hacking.
#pragma once

#include <rewards/math/equiv_scalar.hpp>
#include <rewards/math/equiv_structures.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace grpo::rewards::math {
namespace detail {

/// Relations (gold and/or prediction `x = 3`, inequalities, memberships) and lists of relations
/// against unions. Decides, or returns nullopt to let the later rules look.
inline std::optional<bool> relation_rules(const expr& g, const expr& p, compare_ctx& c) {
  const bool gr = g.k == kind::relation, pr = p.k == kind::relation;
  if (gr && pr) {
    if (relation_equal(g, p, c)) return true;
    // Gold inequality vs predicted membership `x \in [-2, 7]` (the prediction states a set);
    // the reverse only with allow_pred_relation_vs_gold_set, as in Math-Verify.
    auto membership = [](const expr& r) {
      return r.ops.size() == 1 && r.ops[0] == rel::in && r.args[0].k == kind::symbol;
    };
    if (membership(p) && !membership(g)) {
      // `1 \le |z| \le \frac{3}{2}` against `z \in [-\frac{3}{2},-1] \cup [1,\frac{3}{2}]`.
      // A bound on |z| never describes z itself: no fallback to reading |z| as a named quantity.
      if (mentions_abs_of(g, p.args[0].name)) {
        auto u = abs_chain_to_set(g, p.args[0].name, c.b);
        return u && equiv(*u, p.args[1], c);
      }
      auto s = relation_to_set(g);
      return s && equiv(*s, p.args[1], c);
    }
    if (c.opt.allow_pred_relation_vs_gold_set && membership(g) && !membership(p)) {
      auto s = relation_to_set(p);
      return s && equiv(g.args[1], *s, c);
    }
    return false;
  }
  if (gr) {
    // gold `x = 3` vs pred `3`; gold inequality vs pred interval (Math-Verify converts the gold).
    if (const expr* v = assignment_value(g); v && equiv(*v, p, c)) return true;
    if (is_set_like(p) || p.k == kind::tuple) {
      auto s = relation_to_set(g);
      if (s && equiv(*s, p, c)) return true;
    }
    return false;
  }
  if (pr) {
    // pred `x = 3` vs gold `3`; a predicted equation such as `2x+z = 1` does not answer `1`.
    if (const expr* v = assignment_value(p)) return equiv(g, *v, c);
    if (c.opt.allow_pred_relation_vs_gold_set &&
        (is_set_like(g) || (g.k == kind::tuple && g.paren_pair))) {
      auto s = relation_to_set(p);
      if (s) return equiv(g, *s, c);
    }
    return false;
  }
  // Lists of relations from "x < 1 or x > 2" against a union (gold side only, see above).
  if (g.k == kind::set && !g.args.empty() && g.args[0].k == kind::relation &&
      (p.k == kind::set_op || p.k == kind::interval)) {
    auto s = relation_to_set(g);
    if (s && equiv(*s, p, c)) return true;
  }
  if (c.opt.allow_pred_relation_vs_gold_set && p.k == kind::set && !p.args.empty() &&
      p.args[0].k == kind::relation && (g.k == kind::set_op || g.k == kind::interval)) {
    auto s = relation_to_set(p);
    if (s && equiv(g, *s, c)) return true;
  }
  return std::nullopt;
}

/// Unordered collections: finite sets under \cup / \cap / \setminus, a tuple against named
/// assignments, sets, bare lists and \pm answers as multisets, unions of intervals.
inline std::optional<bool> collection_rules(const expr& g, const expr& p, compare_ctx& c) {
  // Finite sets combined by \cup, \cap, \setminus: compare the resulting sets.
  if (g.k == kind::set_op || p.k == kind::set_op) {
    if (auto gv = finite_set_value(g, c)) {
      if (auto pv = finite_set_value(p, c)) return multiset_equal(*gv, *pv, c);
    }
  }
  // Gold `(2, 3)` vs pred `x = 2, y = 3` (or `y = 3, x = 2`): single-variable assignments read in
  // alphabetical order of their variables.
  // The other way round too: gold `p=5,q=2` vs pred `(5,2)` (semicolon groups, see parse_list).
  if (p.k == kind::tuple && g.k == kind::set && !g.braced && !g.args.empty() &&
      g.args[0].k == kind::relation)
    return equiv(p, g, c);
  if (g.k == kind::tuple && p.k == kind::set && !p.braced && p.args.size() == g.args.size()) {
    std::vector<std::pair<std::string, const expr*>> named;
    for (const expr& a : p.args) {
      const expr* v = assignment_value(a);
      if (!v || a.ops.size() != 1 || a.args[0].k != kind::symbol) return false;
      named.emplace_back(a.args[0].name, v);
    }
    std::sort(named.begin(), named.end(),
              [](const auto& x, const auto& y) { return x.first < y.first; });
    for (std::size_t i = 0; i < g.args.size(); ++i) {
      if (i > 0 && named[i].first == named[i - 1].first) return false;  // "x = 2, x = 3"
      if (!equiv(g.args[i], *named[i].second, c)) return false;
    }
    return true;
  }
  // Sets, bare lists and \pm answers: compare as multisets. A non-set side is a singleton, so
  // `3` vs `3, 4` fails on size, and `\{3\}` vs `3` compares the single elements.
  const bool gset = g.k == kind::set || (g.k != kind::relation && contains(g, kind::pm));
  const bool pset = p.k == kind::set || (p.k != kind::relation && contains(p, kind::pm));
  if (gset || pset) {
    auto ge = elements(g), pe = elements(p);
    // `p=5,q=2; p=7,q=2` (groups) against `p = 5, q = 2 and p = 7, q = 2` (one flat list of
    // the same assignments): compare the assignments.
    auto groups_of_relations = [](const std::vector<expr>& v) {
      return !v.empty() && std::all_of(v.begin(), v.end(), [](const expr& x) {
        return x.k == kind::set && !x.braced && !x.args.empty() && x.args[0].k == kind::relation;
      });
    };
    auto flat_relations = [](const std::vector<expr>& v) {
      return v.size() > 1 &&
             std::all_of(v.begin(), v.end(), [](const expr& x) { return x.k == kind::relation; });
    };
    auto flatten = [](std::vector<expr>& v) {
      std::vector<expr> out;
      for (expr& x : v)
        for (expr& y : x.args) out.push_back(std::move(y));
      v = std::move(out);
    };
    if (groups_of_relations(ge) && flat_relations(pe)) flatten(ge);
    if (groups_of_relations(pe) && flat_relations(ge)) flatten(pe);
    // A gold of distinct elements is a set: a prediction that repeats one of its elements
    // states the same set (Math-Verify compares sets). A gold that repeats an element (a double
    // root `2, 2, 3`) keeps its multiplicities. Small lists only (quadratic in the size).
    if (pe.size() > ge.size() && pe.size() <= 16) {
      auto has_repeat = [&](const std::vector<expr>& v) {
        for (std::size_t i = 0; i < v.size(); ++i)
          for (std::size_t j = i + 1; j < v.size(); ++j)
            if (equiv(v[i], v[j], c)) return true;
        return false;
      };
      if (!has_repeat(ge)) {
        std::vector<expr> once;
        for (expr& x : pe) {
          bool seen = false;
          for (const expr& y : once) seen = seen || equiv(y, x, c);
          if (!seen) once.push_back(std::move(x));
        }
        pe = std::move(once);
      }
    }
    if (ge.size() == 1 && pe.size() == 1 && !(g.k == kind::set && p.k == kind::set) &&
        !contains(g, kind::pm) && !contains(p, kind::pm))
      return equiv(ge[0], pe[0], c);
    return multiset_equal(ge, pe, c);
  }
  if (g.k == kind::set_op || p.k == kind::set_op) {
    if (g.k == kind::set_op && p.k == kind::set_op && g.name != p.name) return false;
    // Intersections and differences of intervals are compared as written (no interval algebra).
    if ((g.k == kind::set_op && g.name != "cup") || (p.k == kind::set_op && p.name != "cup")) {
      if (g.k != p.k || g.args.size() != p.args.size()) return false;
      for (std::size_t i = 0; i < g.args.size(); ++i)
        if (!equiv(g.args[i], p.args[i], c)) return false;
      return true;
    }
    const auto gp = union_parts(g), pp = union_parts(p);
    if (gp.size() == 1 && pp.size() == 1) return equiv(gp[0], pp[0], c);
    return multiset_equal(gp, pp, c);
  }
  return std::nullopt;
}

/// Ordered and continuous collections: the real line, intervals with openness, matrices (also
/// written as arithmetic), tuples and row / column vectors.
inline std::optional<bool> ordered_rules(const expr& g, const expr& p, compare_ctx& c) {
  if (g.k == kind::named_set || p.k == kind::named_set) {
    // (-\infty, \infty) is the real line.
    const expr& other = g.k == kind::named_set ? p : g;
    const expr& named = g.k == kind::named_set ? g : p;
    if (named.name == "R" &&
        (other.k == kind::interval || (other.k == kind::tuple && other.paren_pair)))
      return infinity_sign(other.args[0]) == -1 && infinity_sign(other.args[1]) == 1;
  }
  if (g.k == kind::interval || p.k == kind::interval) {
    if (g.k == kind::interval && p.k == kind::interval) return interval_equal(g, p, c);
    // `(a, b)` written as a pair is also an open interval.
    const expr& iv = g.k == kind::interval ? g : p;
    const expr& other = g.k == kind::interval ? p : g;
    if (other.k == kind::tuple && other.paren_pair && !iv.lo_closed && !iv.hi_closed)
      return equiv(g.args[0], p.args[0], c) && equiv(g.args[1], p.args[1], c);
    if (other.k == kind::named_set && other.name == "R")
      return infinity_sign(iv.args[0]) == -1 && infinity_sign(iv.args[1]) == 1;
    return false;
  }
  auto vector_entries = [](const expr& m) -> const std::vector<expr>* {
    if (m.k == kind::tuple) return &m.args;
    if (m.k == kind::matrix && (m.rows == 1 || m.cols == 1)) return &m.args;
    return nullptr;
  };
  // Ordered collections: tuples element-wise in order; matrices need the same shape; a row or
  // column vector also matches a tuple of the same entries (`pmatrix 1 \\ 2` = `(1, 2)`).
  // Matrix arithmetic written out (`A + B` against its sum): reduce to one matrix first.
  if ((g.k == kind::matrix) != (p.k == kind::matrix) &&
      (contains(g, kind::matrix) && contains(p, kind::matrix))) {
    auto gm = matrix_value(g), pm = matrix_value(p);
    if (gm && pm && (gm->k != g.k || pm->k != p.k)) return equiv(*gm, *pm, c);
  }
  if (g.k == kind::tuple || p.k == kind::tuple || g.k == kind::matrix || p.k == kind::matrix) {
    if (g.k == kind::matrix && p.k == kind::matrix && (g.rows != p.rows || g.cols != p.cols))
      return false;
    const auto* ga = vector_entries(g);
    const auto* pa = vector_entries(p);
    if (g.k == kind::matrix && p.k == kind::matrix) ga = &g.args, pa = &p.args;
    if (!ga || !pa || ga->size() != pa->size()) return false;
    for (std::size_t i = 0; i < ga->size(); ++i)
      if (!equiv((*ga)[i], (*pa)[i], c)) return false;
    return true;
  }
  return std::nullopt;
}

/// Single values: the empty set and named sets, words, ratios, percent, then scalars.
inline bool value_rules(const expr& g, const expr& p, compare_ctx& c) {
  // Named sets and the empty set only equal themselves (intervals of the reals handled above).
  if (g.k == kind::empty_set || p.k == kind::empty_set) return g.k == p.k;
  if (g.k == kind::named_set || p.k == kind::named_set) {
    if (g.k == p.k) return g.name == p.name;
    return false;
  }
  // Words never equal numbers or expressions: `\text{five}` vs 5 is not attempted.
  if (g.k == kind::text || p.k == kind::text) {
    if ((g.k == kind::text || g.k == kind::symbol) && (p.k == kind::text || p.k == kind::symbol))
      return text_equal(g, p);
    return false;
  }
  // Ratios `a:b` compare by proportion (`3:4` = `6:8`): a_i b_j = a_j b_i for consecutive parts;
  // a ratio never equals a plain value.
  const bool gratio = g.k == kind::func && g.name == "ratio";
  const bool pratio = p.k == kind::func && p.name == "ratio";
  if (gratio || pratio) {
    if (!gratio || !pratio || g.args.size() != p.args.size()) return false;
    for (std::size_t i = 0; i + 1 < g.args.size(); ++i) {
      const expr l = make_node(kind::mul, {g.args[i], p.args[i + 1]});
      const expr r = make_node(kind::mul, {g.args[i + 1], p.args[i]});
      if (!scalar_equal(l, r, c)) return false;
    }
    return true;
  }
  // Percent: `10\%` is 1/10; with percent_lenient a percent on one side may also match the bare
  // number on the other (MATH golds drop the sign), never a factor of 100 in between.
  if (g.k == kind::percent || p.k == kind::percent) {
    if (g.k == kind::percent && p.k == kind::percent) return equiv(g.args[0], p.args[0], c);
    if (scalar_equal(g, p, c)) return true;
    if (!c.opt.percent_lenient) return false;
    const expr& gi = g.k == kind::percent ? g.args[0] : g;
    const expr& pi = p.k == kind::percent ? p.args[0] : p;
    return scalar_equal(gi, pi, c);
  }
  return scalar_equal(g, p, c);
}

/// Structural equivalence of gold `g` and prediction `p` (asymmetric where documented).
inline bool equiv(const expr& g, const expr& p, compare_ctx& c) {
  c.b.spend();
  // Comparison recursion is bounded too (trees are already depth-bounded by the parser, but pm
  // expansion and relation conversion build new nodes).
  if (++c.depth > 64) {
    --c.depth;
    return false;
  }
  struct restore {
    int& d;
    ~restore() { --d; }
  } r{c.depth};

  // Order of the rules matters: relations and their asymmetric unwrapping first, then collections
  // (sets before set operations before intervals before tuples/matrices), then words, percent,
  // and finally scalars. Each rule either decides or falls through to a more general one.
  if (auto d = relation_rules(g, p, c)) return *d;
  if (auto d = collection_rules(g, p, c)) return *d;
  if (auto d = ordered_rules(g, p, c)) return *d;
  return value_rules(g, p, c);
}

}  // namespace detail

/// Equivalence of two parsed answers, gold first (the relation is not symmetric on purpose: see
/// docs/rewards-math.md, "Guards").
/// @pre trees from parse(). @post spends from `b`; throws budget_exhausted when it runs out.
inline bool equivalent(const expr& gold, const expr& pred, const verify_options& opt, budget& b) {
  detail::compare_ctx c{opt, b, 0};
  if (detail::equiv(gold, pred, c)) return true;
  if (opt.strict_variables) return false;
  // Math-Verify's strict=False: the prediction's free variables renamed to the gold's (in name
  // order) when both have as many: `f(y) = y^2` answers `f(x) = x^2`.
  std::set<std::string> gv, pv;
  detail::collect_symbols(gold, gv);
  detail::collect_symbols(pred, pv);
  if (gv == pv || gv.size() != pv.size() || gv.empty()) return false;
  std::map<std::string, std::string> to;
  for (auto i = pv.begin(), j = gv.begin(); i != pv.end(); ++i, ++j) to.emplace(*i, *j);
  expr renamed = pred;
  detail::rename_symbols(renamed, to);
  return detail::equiv(gold, renamed, c);
}

}  // namespace grpo::rewards::math
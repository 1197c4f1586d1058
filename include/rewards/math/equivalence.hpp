// SPDX-License-Identifier: Apache-2.0
/// @file equivalence.hpp
/// @brief Equivalence of two answer trees: exact rationals first (GMP), also at fixed rational
///        points for free variables, then rigorous ball arithmetic (Arb) at growing precision;
///        relations
///        up to a non-zero factor, unordered sets, ordered tuples, intervals with openness,
///        matrices, and the asymmetric gold/prediction rules that stop reward hacking.
#pragma once

#include <rewards/math/exact.hpp>
#include <rewards/math/expr.hpp>
#include <rewards/math/numeric.hpp>
#include <rewards/math/options.hpp>
#include <rewards/math/power_form.hpp>
#include <rewards/math/text.hpp>

#include <gmpxx.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace grpo::rewards::math {
namespace detail {

/// Internal: a construct the comparison does not handle (too many `\pm` variants).
struct cas_unsupported {};

/// Precision of a decimal literal answer: its last digit sits at 10^ulp_exp.
struct literal_precision {
  int ulp_exp;
  int sig;
};

/// Precision carried by `e` when it is a written decimal (`0.333`, `-2.5`, `1.5e3`,
/// `1.5 \times 10^{3}`, `12.5\%`); nullopt for exact forms.
inline std::optional<literal_precision> precision_of(const expr& e) {
  switch (e.k) {
    case kind::number:
      if (e.sig_digits >= 0) return literal_precision{e.ulp_exp, e.sig_digits};
      return std::nullopt;
    case kind::neg:
      return precision_of(e.args[0]);
    case kind::percent: {
      auto p = precision_of(e.args[0]);
      if (p) p->ulp_exp -= 2;
      return p;
    }
    case kind::mul:
      if (e.args.size() == 2 && e.args[1].k == kind::pow && e.args[1].args[0].k == kind::number &&
          e.args[1].args[0].value == 10 && e.args[1].args[1].k == kind::number &&
          e.args[1].args[1].value.get_den() == 1 && abs(e.args[1].args[1].value) < 1000) {
        auto p = precision_of(e.args[0]);
        if (p) p->ulp_exp += static_cast<int>(e.args[1].args[1].value.get_num().get_si());
        return p;
      }
      return std::nullopt;
    default:
      return std::nullopt;
  }
}

// Infinity is compared structurally (sign only): balls have no useful infinity, and
// `\infty` vs `10^{100}` must not be "numerically close".
/// +1 for `\infty`, -1 for `-\infty`, 0 otherwise.
inline int infinity_sign(const expr& e) {
  if (e.k == kind::constant && e.name == "inf") return 1;
  if (e.k == kind::add && e.args.size() == 1) return infinity_sign(e.args[0]);
  if (e.k == kind::neg) return -infinity_sign(e.args[0]);
  return 0;
}

/// State of one comparison: options, budget and recursion depth. No lock: numerics run on
/// per-call Arb balls and GMP values, so comparisons on different threads never serialise.
struct compare_ctx {
  const verify_options& opt;
  budget& b;
  int depth = 0;
};

/// Symbol names of a tree (variables only, not words).
inline void collect_symbols(const expr& e, std::set<std::string>& out) {
  if (e.k == kind::symbol) out.insert(e.name);
  for (const expr& a : e.args) collect_symbols(a, out);
}

/// Renames symbols in place by `to` (names absent from it stay).
inline void rename_symbols(expr& e, const std::map<std::string, std::string>& to) {
  if (e.k == kind::symbol) {
    if (const auto it = to.find(e.name); it != to.end()) e.name = it->second;
  }
  for (expr& a : e.args) rename_symbols(a, to);
}

/// Free variables of a tree: symbol names, and words as "text:<w>".
inline void collect_free(const expr& e, std::set<std::string>& out) {
  if (e.k == kind::symbol) out.insert(e.name);
  if (e.k == kind::text) out.insert("text:" + e.name);
  for (const expr& a : e.args) collect_free(a, out);
}

// Schwartz-Zippel: two different expressions agree at a random point with probability ~0; fixed
// points keep rewards reproducible. Positive points make principal branches of sqrt/log agree with
// real identities (`\sqrt{1/n}` = `1/\sqrt n`).
/// Evaluation point `k`: variable j (in name order) gets a rational in about [0.8, 2.4].
inline point_map sample_point(const std::set<std::string>& names, int k) {
  point_map m;
  long j = 0;
  for (const std::string& name : names) {
    const long num = 1000 + (j * 7919 + k * 104729 + 31337 + j * k * 613) % 1999;
    mpq_class v(num, 1237 + 2 * k);
    v.canonicalize();
    m.emplace(name, v);
    ++j;
  }
  return m;
}

/// Same policy on exact rationals: used whenever both sides evaluate to rationals.
/// Float policy (docs/rewards-math.md): a decimal literal with >= float_min_significant digits
/// stands for every value it is a correct rounding of, |a - b| <= 10^ulp / 2, on the side that
/// carries the precision (gold or prediction); float_rel_tol is a last, tiny tolerance for
/// decimals only: integers and fractions are never compared approximately.
inline bool rational_equal(const mpq_class& a, const mpq_class& b,
                           const std::optional<literal_precision>& pg,
                           const std::optional<literal_precision>& pp, const verify_options& opt) {
  if (a == b) return true;
  if (!pg && !pp) return false;
  const mpq_class diff = abs(a - b);
  for (const auto& p : {pg, pp}) {
    if (!p || p->sig < opt.float_min_significant) continue;
    mpz_class ten;
    mpz_ui_pow_ui(ten.get_mpz_t(), 10,
                  static_cast<unsigned long>(p->ulp_exp < 0 ? -p->ulp_exp : p->ulp_exp));
    const mpq_class half = p->ulp_exp < 0 ? mpq_class(1, ten * 2) : mpq_class(ten, 2);
    if (diff <= half) return true;
  }
  if (opt.float_rel_tol > 0) {
    const mpq_class scale = abs(a) > abs(b) ? mpq_class(abs(a)) : mpq_class(abs(b));
    if (diff <= mpq_class(opt.float_rel_tol) * scale) return true;
  }
  if (opt.float_rounding >= 0 && opt.float_rounding <= 100) {
    // round(v * 10^n) half away from zero: floor(|v| 10^n + 1/2) with the sign of v.
    mpz_class ten;
    mpz_ui_pow_ui(ten.get_mpz_t(), 10, static_cast<unsigned long>(opt.float_rounding));
    auto rounded = [&](const mpq_class& v) {
      const mpq_class t = abs(v) * ten + mpq_class(1, 2);
      mpz_class r;
      mpz_fdiv_q(r.get_mpz_t(), t.get_num_mpz_t(), t.get_den_mpz_t());
      return v < 0 ? mpz_class(-r) : r;
    };
    if (rounded(a) == rounded(b)) return true;
  }
  return false;
}

/// Float policy for a closed irrational side against a decimal (`\pi` vs `3.14`): rigorous ball
/// bounds, `|a - b| <= 10^ulp / 2` or `|a - b| <= float_rel_tol * max(|a|, |b|, 1)` must hold for
/// the whole ball (so a straddling ball answers "no", never a false "yes").
inline bool ball_float_policy(const expr& g, const expr& p,
                              const std::optional<literal_precision>& pg,
                              const std::optional<literal_precision>& pp, compare_ctx& c) {
  slong prec = 256;
  for (int pass = 0; pass < 2; ++pass) {
    ball_eval ev{prec, nullptr, c.b};
    ball a, v;
    if (!ev.eval(g, a) || !ev.eval(p, v)) return false;
    if (pass == 0 && ev.log2mag > 64) {  // large values: re-evaluate with room for them
      prec = std::min<slong>(max_precision, 2 * static_cast<slong>(ev.log2mag) + 256);
      continue;
    }
    arb_t diff, bound, scale, t;
    arb_init(diff), arb_init(bound), arb_init(scale), arb_init(t);
    ball d;
    acb_sub(d.v, a.v, v.v, prec);
    acb_abs(diff, d.v, prec);
    bool ok = false;
    for (const auto& q : {pg, pp}) {
      if (ok || !q || q->sig < c.opt.float_min_significant) continue;
      arb_set_si(bound, 10);  // 10^ulp / 2 as a ball
      arb_pow_ui(bound, bound, static_cast<ulong>(q->ulp_exp < 0 ? -q->ulp_exp : q->ulp_exp), prec);
      if (q->ulp_exp < 0) arb_inv(bound, bound, prec);
      arb_mul_2exp_si(bound, bound, -1);
      ok = arb_le(diff, bound) != 0;
    }
    if (!ok && (pg || pp) && c.opt.float_rel_tol > 0) {
      acb_abs(scale, v.v, prec);
      acb_abs(t, a.v, prec);
      arb_max(scale, scale, t, prec);
      arb_one(t);
      arb_max(scale, scale, t, prec);
      arb_set_d(bound, c.opt.float_rel_tol);
      arb_mul(bound, bound, scale, prec);
      ok = arb_le(diff, bound) != 0;
    }
    if (!ok && (pg || pp) && c.opt.float_rounding >= 0 && c.opt.float_rounding <= 100) {
      // Both values rounded to float_rounding decimals (half away from zero) must be the same
      // integer multiple of 10^-n for the whole balls: floor(|v| 10^n + 1/2) decided by Arb.
      auto rounded = [&](const acb_t z, fmpz_t out) {
        if (!arb_is_zero(acb_imagref(z))) return false;
        arb_set_si(t, 10);
        arb_pow_ui(t, t, static_cast<ulong>(c.opt.float_rounding), prec);
        arb_abs(scale, acb_realref(z));
        arb_mul(scale, scale, t, prec);
        arb_set_d(t, 0.5);
        arb_add(scale, scale, t, prec);
        arb_floor(scale, scale, prec);
        if (!arb_get_unique_fmpz(out, scale)) return false;
        if (arb_is_negative(acb_realref(z))) fmpz_neg(out, out);
        return true;
      };
      fmpz_t ra, rv;
      fmpz_init(ra), fmpz_init(rv);
      ok = rounded(a.v, ra) && rounded(v.v, rv) && fmpz_equal(ra, rv);
      fmpz_clear(ra), fmpz_clear(rv);
    }
    arb_clear(diff), arb_clear(bound), arb_clear(scale), arb_clear(t);
    return ok;
  }
  return false;
}

/// Numeric zero test of `g - p` at point `at` (nullptr: closed forms).
inline zero_result difference_is_zero(const expr& g, const expr& p, const point_map* at,
                                      compare_ctx& c) {
  return decide_zero(
      [&](ball_eval& ev, ball& d) {
        ball x;
        if (!ev.eval(g, d) || !ev.eval(p, x)) return false;
        acb_sub(d.v, d.v, x.v, ev.prec);
        return true;
      },
      c.b, at);
}

/// True when the tree has a free variable (symbol or text word).
inline bool has_free(const expr& e) {
  return contains(e, kind::symbol) || contains(e, kind::text);
}

/// Scalar equality: exact rationals (also at 3 rational points when there are free variables),
/// else rigorous ball arithmetic at growing precision (numeric.hpp), with the float policy on
/// closed forms.
inline bool scalar_equal(const expr& g, const expr& p, compare_ctx& c) {
  const auto pg = precision_of(g);
  const auto pp = precision_of(p);
  {
    auto rg = eval_rational(g, c.b);
    auto rp = rg ? eval_rational(p, c.b) : std::nullopt;
    if (rg && rp) return rational_equal(*rg, *rp, pg, pp, c.opt);
  }
  const int ig = infinity_sign(g), ip = infinity_sign(p);
  if (ig != 0 || ip != 0) return ig == ip;
  if (contains(g, kind::constant, "inf") || contains(p, kind::constant, "inf")) return false;
  if (tree_size(g) > 400 || tree_size(p) > 400) return false;
  c.b.spend(10 * (tree_size(g) + tree_size(p)));
  std::set<std::string> names;
  collect_free(g, names);
  collect_free(p, names);
  if (names.empty()) {
    // Products of huge powers and factorials (2^{10^8}, 1000000!): exact exponent arithmetic.
    if (const auto h = huge_products_equal(g, p, c.b)) {
      if (*h) return true;
      if (!pg && !pp) return false;
    }
    // Closed forms: equal only when the difference is numerically zero far below the scale of
    // every intermediate; a provably non-zero difference may still be a correct rounding.
    if (difference_is_zero(g, p, nullptr, c) == zero_result::zero) return true;
    return (pg || pp) && ball_float_policy(g, p, pg, pp, c);
  }
  // Free variables: all usable points must agree (points where a side is undefined are
  // skipped; at least 2 must remain). Exact rationals at a point decide that point exactly.
  int usable = 0;
  for (int k = 0; k < 3; ++k) {
    const point_map at = sample_point(names, k);
    auto rg = eval_rational(g, c.b, &at);
    auto rp = rg ? eval_rational(p, c.b, &at) : std::nullopt;
    if (rg && rp) {
      if (*rg != *rp) return false;
      ++usable;
      continue;
    }
    const zero_result z = difference_is_zero(g, p, &at, c);
    if (z == zero_result::nonzero) return false;
    if (z == zero_result::zero) ++usable;
  }
  return usable >= 2;
}

// Relations: `lhs - rhs` of the gold and of the prediction must be proportional, f = k g with k a
// non-zero constant. Checked as a constant ratio f/g at 4 evaluation points (points where both
// vanish are skipped; one vanishing alone refutes). For inequalities k > 0 keeps the direction.
/// f ≡ k·g for a constant k != 0 (k > 0 when `positive`): `2x+4y-3=0` vs `y=-x/2+3/4`.
inline bool proportional(const expr& f, const expr& g, bool positive, compare_ctx& c) {
  if (tree_size(f) > 400 || tree_size(g) > 400) return false;
  c.b.spend(10 * (tree_size(f) + tree_size(g)));
  std::set<std::string> names;
  collect_free(f, names);
  collect_free(g, names);
  auto zero_at = [&](const expr& x, const point_map& at) {
    return decide_zero([&](ball_eval& ev, ball& d) { return ev.eval(x, d); }, c.b, &at);
  };
  int usable = 0;
  std::optional<point_map> first;  // point of the reference ratio
  std::optional<mpq_class> r0;     // the reference ratio when it was exact
  for (int k = 0; k < 4; ++k) {
    const point_map at = sample_point(names, k);
    auto fq = eval_rational(f, c.b, &at);
    auto gq = fq ? eval_rational(g, c.b, &at) : std::nullopt;
    if (fq && gq && (!first || r0)) {
      if (*fq == 0 && *gq == 0) continue;
      if ((*fq == 0) != (*gq == 0)) return false;
      const mpq_class r = *fq / *gq;
      if (!first) {
        if (positive && r < 0) return false;
        first = at;
        r0 = r;
      } else if (r != *r0) {
        return false;
      }
      ++usable;
      continue;
    }
    const zero_result zf = zero_at(f, at), zg = zero_at(g, at);
    if (zf == zero_result::undefined || zf == zero_result::unknown ||
        zg == zero_result::undefined || zg == zero_result::unknown)
      continue;
    if (zf == zero_result::zero && zg == zero_result::zero) continue;
    if ((zf == zero_result::zero) != (zg == zero_result::zero)) return false;
    // ratio(at) - reference ratio must be zero; for the first point, the ratio must be real
    // (and positive for inequalities).
    const point_map ref = first ? *first : at;
    const bool is_first = !first;
    const zero_result z = decide_zero(
        [&](ball_eval& ev, ball& d) {
          ball a, v;
          if (!ev.eval(f, a) || !ev.eval(g, v)) return false;
          acb_div(d.v, a.v, v.v, ev.prec);
          if (is_first) {
            if (positive && !arb_is_positive(acb_realref(d.v)))
              return ev.fail(eval_status::undefined);
            arb_set(acb_realref(d.v), acb_imagref(d.v));  // test Im(ratio) = 0
            arb_zero(acb_imagref(d.v));
            return ev.track(d);
          }
          if (r0) {
            ball q;
            ball_eval::set_rational(q, *r0, ev.prec);
            acb_sub(d.v, d.v, q.v, ev.prec);
            return true;
          }
          ev.at = &ref;
          const bool ok = ev.eval(f, a) && ev.eval(g, v);
          ev.at = &at;
          if (!ok) return false;
          acb_div(a.v, a.v, v.v, ev.prec);
          acb_sub(d.v, d.v, a.v, ev.prec);
          return true;
        },
        c.b, &at);
    if (z != zero_result::zero) return false;
    if (is_first) first = at;
    ++usable;
  }
  return usable >= 2;
}
/// Left sides that name the answer rather than constrain it: `x`, `a_3`, `AB`, `f(x)`, `(x, y)`,
/// `\text{speed}`.
inline bool symbol_like(const expr& e) {
  if (e.k == kind::symbol || e.k == kind::text) return true;
  // Named quantities: `AB:CD`, `|AB|`, `\frac{PQ}{QR}` (a product with reciprocals), `g(t)`.
  if (e.k == kind::func && (e.name == "ratio" || e.name == "abs")) {
    for (const expr& a : e.args)
      if (!symbol_like(a)) return false;
    return true;
  }
  if (e.k == kind::pow && e.args[0].k != kind::number && symbol_like(e.args[0]) &&
      e.args[1].k == kind::number && e.args[1].value == -1)
    return true;
  if (e.k == kind::mul || e.k == kind::tuple) {  // `AB = 5`, `f(x) = ..`, `(x, y) = (2, 3)`
    for (const expr& a : e.args)
      if (!symbol_like(a)) return false;
    return true;
  }
  return false;
}

/// True when the tree is a closed scalar (no variables, no sets, no relations): `2+3` in `2+3=5`.
inline bool is_closed(const expr& e) {
  if (e.k == kind::symbol || e.k == kind::text || e.k == kind::set || e.k == kind::interval ||
      e.k == kind::tuple || e.k == kind::matrix || e.k == kind::set_op || e.k == kind::relation)
    return false;
  for (const expr& a : e.args)
    if (!is_closed(a)) return false;
  return true;
}

/// `x = v`, `x = a = v`, `x \approx v`, `x \in S`, `2+3 = 5`: the stated value (last right side).
/// nullopt for real equations such as `2x+z = 1` (their right side is not "the answer").
inline const expr* assignment_value(const expr& r) {
  if (r.k != kind::relation) return nullptr;
  bool eqs = true;
  for (rel o : r.ops) eqs = eqs && (o == rel::eq || o == rel::approx);
  const bool member = r.ops.size() == 1 && r.ops[0] == rel::in;
  if (!eqs && !member) return nullptr;
  const expr& lhs = r.args[0];
  if (member) return symbol_like(lhs) ? &r.args.back() : nullptr;
  // Chains collapse to the last right side (`x = 2 + 3 = 5` states 5), as in Math-Verify, except
  // that an approximation does not replace an exact value: `x = 1/3 \approx 0.33` states 1/3.
  const expr* value = &r.args.back();
  // `\frac13 \approx 0.333` (closed left side) states 1/3 as well: the decimal is a rounding.
  for (std::size_t i = 0; i < r.ops.size(); ++i) {
    if (r.ops[i] == rel::approx && is_closed(r.args[i])) {
      value = &r.args[i];
      break;
    }
  }
  if (symbol_like(lhs)) return value;
  // A closed left side states a closed value (`2 + 3 = 5`), but `7 = 11a + c` is an equation.
  if (is_closed(lhs) && is_closed(*value)) return value;
  return nullptr;
}

/// `x = a = b = v` as the single relation `x = v` (first left side, stated value), so that
/// intermediate steps do not have to match: `x = 5+5+1 = 11` vs `x = 11`.
inline std::optional<expr> collapsed_assignment(const expr& r) {
  if (r.k != kind::relation || r.ops.size() < 2 || !symbol_like(r.args[0])) return std::nullopt;
  const expr* v = assignment_value(r);
  if (!v) return std::nullopt;
  expr out = make_node(kind::relation, {r.args[0], *v});
  out.ops = {rel::eq};
  return out;
}

/// Structural identity of two symbol-like left sides (`x` vs `x`, `AB` vs `AB`).
inline bool same_name(const expr& a, const expr& b) {
  if (a.k != b.k) return false;
  if (a.k == kind::symbol || a.k == kind::text) return a.name == b.name;
  if (a.k == kind::mul && a.args.size() == b.args.size()) {
    for (std::size_t i = 0; i < a.args.size(); ++i)
      if (!same_name(a.args[i], b.args[i])) return false;
    return true;
  }
  return false;
}

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

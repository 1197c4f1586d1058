// SPDX-License-Identifier: Apache-2.0
/// @file equiv_scalar.hpp
/// @brief The scalar layer of answer equivalence: the comparison context, literal precision,
///        exact rationals (GMP) also at fixed rational points for free variables, rigorous ball
///        arithmetic (Arb) at growing precision, proportional relations, assignments and names.
///        Part of rewards/math/equivalence.hpp (the rules that combine these live there).
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


}  // namespace detail
}  // namespace grpo::rewards::math

// SPDX-License-Identifier: Apache-2.0
/// @file power_form.hpp
/// @brief Exact comparison of huge products of powers and factorials that no number type can hold
///        (`2^{10^8}` vs `4^{5\cdot10^7}`, `1000000!` vs `1000000\cdot 999999!`): each side becomes
///        sign x prod b_i^{e_i} x prod n_j!^{f_j} with integer bases and (big) integer exponents;
///        factorials are rewritten over the smallest one, the bases are refined into a coprime
///        basis, and the sides are equal iff every basis exponent of the quotient is zero.
#pragma once

#include <rewards/math/exact.hpp>
#include <rewards/math/expr.hpp>
#include <rewards/math/numeric.hpp>
#include <rewards/math/options.hpp>

#include <gmpxx.h>

#include <map>
#include <optional>
#include <vector>

namespace grpo::rewards::math::detail {

/// sign x prod base^exp x prod n!^exp, exponents exact.
struct power_form {
  int sign = 1;
  std::vector<std::pair<mpz_class, mpz_class>> pows;  ///< (base >= 2, exponent)
  std::map<mpz_class, mpz_class> facts;               ///< n -> exponent of n!
};

/// Limits: exponents up to 2^64 bits-of-magnitude are exact anyway (mpz); factorial arguments up
/// to 10^9, and rewriting n! over m! multiplies at most 20 000 integers.
inline constexpr unsigned long power_form_max_fact = 1000000000UL;
inline constexpr unsigned long power_form_max_span = 20000UL;

/// Adds a rational `v` raised to `m` to `f`. @return false for 0 (decided elsewhere).
inline bool add_rational(power_form& f, const mpq_class& v, const mpz_class& m) {
  if (v == 0) return false;
  if (v < 0 && mpz_odd_p(m.get_mpz_t())) f.sign = -f.sign;
  const mpz_class num = abs(v.get_num());
  if (num != 1) f.pows.emplace_back(num, m);
  if (v.get_den() != 1) f.pows.emplace_back(v.get_den(), mpz_class(-m));
  return true;
}

/// Reads `e`^`m` into `f`. @return false when `e` is not a product of powers / factorials of
/// exact integers or rationals with integer exponents.
inline bool build_power_form(const expr& e, const mpz_class& m, power_form& f, budget& b,
                             int depth = 0) {
  b.spend();
  if (depth > 64) return false;
  switch (e.k) {
    case kind::neg:
      if (mpz_odd_p(m.get_mpz_t())) f.sign = -f.sign;
      return build_power_form(e.args[0], m, f, b, depth + 1);
    case kind::mul:
      for (const expr& a : e.args)
        if (!build_power_form(a, m, f, b, depth + 1)) return false;
      return true;
    case kind::pow: {
      const auto k = eval_rational(e.args[1], b, nullptr);
      if (!k || k->get_den() != 1) break;
      if (mpz_sizeinbase(k->get_num_mpz_t(), 2) > 4096) return false;
      return build_power_form(e.args[0], mpz_class(m * k->get_num()), f, b, depth + 1);
    }
    case kind::factorial: {
      const auto n = eval_rational(e.args[0], b, nullptr);
      if (!n || n->get_den() != 1 || *n < 0 || *n > power_form_max_fact) return false;
      f.facts[n->get_num()] += m;
      return true;
    }
    default:
      break;
  }
  const auto v = eval_rational(e, b, nullptr);
  if (!v) return false;
  return add_rational(f, *v, m);
}

/// Rewrites every factorial over the smallest one: n! = m! (m+1)(m+2)...n. @return false when a
/// span exceeds power_form_max_span or a factorial with a non-zero exponent remains beyond 3000.
inline bool merge_factorials(power_form& f, budget& b) {
  std::map<mpz_class, mpz_class> live;
  for (const auto& [n, e] : f.facts)
    if (e != 0) live.emplace(n, e);
  if (live.empty()) return true;
  const mpz_class n0 = live.begin()->first;
  mpz_class e0 = 0;
  for (const auto& [n, e] : live) {
    e0 += e;
    if (n == n0) continue;
    const mpz_class span = n - n0;
    if (span > power_form_max_span) return false;
    b.spend(span.get_ui());
    mpz_class prod = 1;
    for (mpz_class k = n0 + 1; k <= n; ++k) prod *= k;
    f.pows.emplace_back(prod, e);
  }
  if (e0 != 0) {
    if (n0 > 3000) return false;  // m! itself would have to be expanded: refuse
    mpz_class v;
    mpz_fac_ui(v.get_mpz_t(), n0.get_ui());
    if (v != 1) f.pows.emplace_back(v, e0);
  }
  f.facts.clear();
  return true;
}

/// Decides a == b for two power forms exactly. nullopt when the coprime basis refinement runs out
/// of its iteration bound (never a guess).
inline std::optional<bool> power_forms_equal(power_form a, const power_form& bq, budget& b) {
  for (const auto& [n, e] : bq.facts) a.facts[n] -= e;
  for (const auto& [base, e] : bq.pows) a.pows.emplace_back(base, mpz_class(-e));
  if (a.sign != bq.sign) return false;
  if (!merge_factorials(a, b)) return std::nullopt;
  // Factor refinement: a pairwise coprime basis such that every base is a product of its
  // elements (replace z, y sharing g = gcd > 1 by z/g, g, y/g until no pair shares a factor).
  std::vector<mpz_class> basis, work;
  for (const auto& [base, e] : a.pows)
    if (e != 0) work.push_back(base);
  int steps = 0;
  while (!work.empty()) {
    if (++steps > 20000) return std::nullopt;
    b.spend(4);
    mpz_class y = work.back();
    work.pop_back();
    if (y == 1) continue;
    bool split = false;
    for (std::size_t i = 0; i < basis.size() && !split; ++i) {
      if (basis[i] == y) {
        split = true;
        break;
      }
      mpz_class g;
      mpz_gcd(g.get_mpz_t(), y.get_mpz_t(), basis[i].get_mpz_t());
      if (g == 1) continue;
      const mpz_class z = basis[i];
      basis.erase(basis.begin() + static_cast<std::ptrdiff_t>(i));
      work.push_back(z / g);
      work.push_back(g);
      work.push_back(y / g);
      split = true;
    }
    if (!split) basis.push_back(y);
  }
  // Exponent of each basis element in the quotient a / b: sum of e * v_p(base).
  for (const mpz_class& p : basis) {
    mpz_class total = 0;
    for (const auto& [base, e] : a.pows) {
      if (e == 0) continue;
      mpz_class rest;
      const unsigned long v = mpz_remove(rest.get_mpz_t(), base.get_mpz_t(), p.get_mpz_t());
      total += e * v;
    }
    if (total != 0) return false;
  }
  return true;
}

/// Exact equality of two closed trees that are products of (huge) powers and factorials; nullopt
/// when either side is not of that shape.
inline std::optional<bool> huge_products_equal(const expr& g, const expr& p, budget& b) {
  power_form fg, fp;
  if (!build_power_form(g, mpz_class(1), fg, b) || !build_power_form(p, mpz_class(1), fp, b))
    return std::nullopt;
  return power_forms_equal(std::move(fg), fp, b);
}

}  // namespace grpo::rewards::math::detail

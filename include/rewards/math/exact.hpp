// SPDX-License-Identifier: Apache-2.0
/// @file exact.hpp
/// @brief Exact evaluation of numeric answer trees as GMP rationals (optionally at a rational
///        point for the free variables), with size caps that keep every operation bounded.
#pragma once

#include <rewards/math/expr.hpp>
#include <rewards/math/numeric.hpp>
#include <rewards/math/options.hpp>

#include <gmpxx.h>

#include <optional>
#include <string>
#include <vector>

namespace grpo::rewards::math::detail {

/// r = x^(1/q) exactly, via mpz_root (which reports whether the root is exact). Used so that
/// `\sqrt{16}`, `\sqrt[3]{-8}` and `8^{2/3}` stay on the exact-rational fast path.
/// Exact integer q-th root of a non-negative integer, if it exists.
inline std::optional<mpz_class> exact_root(const mpz_class& x, unsigned long q) {
  if (x < 0) return std::nullopt;
  mpz_class r;
  if (mpz_root(r.get_mpz_t(), x.get_mpz_t(), q) == 0) return std::nullopt;
  return r;
}

/// Exact rational q-th root (sign-aware for odd q), if it exists.
inline std::optional<mpq_class> rational_root(const mpq_class& x, long q) {
  if (q <= 0 || q > 64) return std::nullopt;
  const bool negative = x < 0;
  if (negative && q % 2 == 0) return std::nullopt;
  const mpz_class num = negative ? mpz_class(-x.get_num()) : mpz_class(x.get_num());
  auto rn = exact_root(num, static_cast<unsigned long>(q));
  auto rd = exact_root(x.get_den(), static_cast<unsigned long>(q));
  if (!rn || !rd) return std::nullopt;
  mpq_class r(negative ? mpz_class(-*rn) : *rn, *rd);
  r.canonicalize();
  return r;
}

/// Size of a rational in bits (numerator + denominator): the unit of the big-number caps below.
inline std::size_t bits_of(const mpq_class& v) {
  return mpz_sizeinbase(v.get_num_mpz_t(), 2) + mpz_sizeinbase(v.get_den_mpz_t(), 2);
}

/// True when the rational is an integer.
inline bool is_integer(const mpq_class& v) {
  return v.get_den() == 1;
}

/// Exact `base^ex`, or nullopt when it is irrational (x^(p/q): exact only when x is a perfect q-th
/// power) or too large (|p| <= 1e5 and bits(x) * |p| <= 2^20; the budget is charged that size).
inline std::optional<mpq_class> rational_power(const mpq_class& base, const mpq_class& ex,
                                               budget& b) {
  mpq_class x = base;
  const mpz_class q = ex.get_den();
  // x^(p/q): exact only when x is a perfect q-th power (8^(2/3) = 4); otherwise irrational, and
  // the CAS path takes over. Then x^p with |p| <= 1e5 and a size estimate bits(x)*|p|.
  if (q != 1) {
    if (q > 64) return std::nullopt;
    auto r = rational_root(x, q.get_si());
    if (!r) return std::nullopt;
    x = *r;
  }
  const mpz_class p = ex.get_num();
  if (abs(p) > 100000) return std::nullopt;
  const long n = p.get_si();
  if (x == 0 && n < 0) return std::nullopt;
  const std::size_t cost = bits_of(x) * static_cast<std::size_t>(n < 0 ? -n : n);
  if (cost > (1u << 20)) return std::nullopt;
  b.spend(cost / 4096);
  const unsigned long un = static_cast<unsigned long>(n < 0 ? -n : n);
  mpz_class num, den;
  mpz_pow_ui(num.get_mpz_t(), x.get_num_mpz_t(), un);
  mpz_pow_ui(den.get_mpz_t(), x.get_den_mpz_t(), un);
  mpq_class r = n < 0 ? mpq_class(den, num) : mpq_class(num, den);
  r.canonicalize();
  return r;
}

/// Exact value of the function `f` at rational arguments `v`: sqrt / root of perfect powers, abs,
/// floor, ceil, binom, gcd, lcm, max, min, and the elementary functions at the points where their
/// value is rational; nullopt otherwise.
inline std::optional<mpq_class> rational_function(const std::string& f,
                                                  const std::vector<mpq_class>& v, budget& b) {
  // Elementary functions are exact only at the rational points where their value is rational;
  // everything else (sqrt 2, sin 1, log 3) goes to the CAS.
  if (f == "sqrt" && v.size() == 1) return rational_root(v[0], 2);
  if (f == "root" && v.size() == 2 && is_integer(v[1]) && v[1] > 0 && v[1] <= 64)
    return rational_root(v[0], v[1].get_num().get_si());
  if (f == "abs" && v.size() == 1) return mpq_class(abs(v[0]));
  if ((f == "floor" || f == "ceil") && v.size() == 1) {
    mpz_class r;
    if (f == "floor")
      mpz_fdiv_q(r.get_mpz_t(), v[0].get_num_mpz_t(), v[0].get_den_mpz_t());
    else
      mpz_cdiv_q(r.get_mpz_t(), v[0].get_num_mpz_t(), v[0].get_den_mpz_t());
    return mpq_class(r);
  }
  // C(n, k) = 0 outside 0 <= k <= n (the combinatorial convention).
  if (f == "binom" && v.size() == 2 && is_integer(v[0]) && is_integer(v[1]) && v[0] >= 0 &&
      v[0] <= 100000) {
    if (v[1] < 0 || v[1] > v[0]) return mpq_class(0);
    b.spend(v[1].get_num().get_ui() / 8 + 1);
    mpz_class r;
    mpz_bin_uiui(r.get_mpz_t(), v[0].get_num().get_ui(), v[1].get_num().get_ui());
    return mpq_class(r);
  }
  if ((f == "gcd" || f == "lcm") && v.size() >= 2) {
    mpz_class r = v[0].get_num();
    for (const auto& x : v) {
      if (!is_integer(x)) return std::nullopt;
      if (f == "gcd")
        mpz_gcd(r.get_mpz_t(), r.get_mpz_t(), x.get_num_mpz_t());
      else
        mpz_lcm(r.get_mpz_t(), r.get_mpz_t(), x.get_num_mpz_t());
    }
    return mpq_class(r);
  }
  if ((f == "max" || f == "min") && !v.empty()) {
    mpq_class r = v[0];
    for (const auto& x : v) r = (f == "max") ? (x > r ? x : r) : (x < r ? x : r);
    return r;
  }
  if (f == "exp" && v.size() == 1 && v[0] == 0) return mpq_class(1);
  if ((f == "ln" || f == "log") && v.size() == 1 && v[0] == 1) return mpq_class(0);
  if ((f == "sin" || f == "tan" || f == "arcsin" || f == "arctan") && v.size() == 1 && v[0] == 0)
    return mpq_class(0);
  if (f == "cos" && v.size() == 1 && v[0] == 0) return mpq_class(1);
  return std::nullopt;
}

/// Why a separate exact evaluator before the ball arithmetic: most answers are numbers,
/// fractions or small expressions of them; GMP rationals decide those exactly in microseconds,
/// without the 15-digit evalf collisions of Math-Verify (`1/2004!` vs `1/2006!`).
/// Exact value of a numeric tree as a rational, or nullopt when it is irrational, symbolic, or
/// too large (results are capped at 2^20 bits; factorial at 3000!, powers at |n| <= 100000).
/// With `at`, free variables take their values from the point (exact Schwartz-Zippel sampling of
/// rational functions: `(x+1)^{100}` vs `(x+1)^{100}+1` differ by exactly 1 at every point).
inline std::optional<mpq_class> eval_rational(const expr& e, budget& b,
                                              const point_map* at = nullptr) {
  b.spend();
  switch (e.k) {
    case kind::number:
      return e.value;
    case kind::symbol:
    case kind::text: {
      if (at == nullptr) return std::nullopt;
      const auto it = at->find(e.k == kind::text ? "text:" + e.name : e.name);
      if (it == at->end()) return std::nullopt;
      return it->second;
    }
    case kind::neg: {
      auto a = eval_rational(e.args[0], b, at);
      if (!a) return std::nullopt;
      return mpq_class(-*a);
    }
    case kind::percent: {
      auto a = eval_rational(e.args[0], b, at);
      if (!a) return std::nullopt;
      return mpq_class(*a / 100);
    }
    case kind::add:
    case kind::mul: {
      mpq_class acc = e.k == kind::add ? 0 : 1;
      for (const expr& a : e.args) {
        auto v = eval_rational(a, b, at);
        if (!v) return std::nullopt;
        if (e.k == kind::add)
          acc += *v;
        else
          acc *= *v;
        // Cap every intermediate at 2^20 bits (~315k decimal digits): beyond it the CAS path
        // decides (or refuses); the budget is charged proportionally to the operand size.
        if (bits_of(acc) > (1u << 20)) return std::nullopt;
        b.spend(bits_of(acc) / 4096);
      }
      return acc;
    }
    case kind::pow: {
      auto base = eval_rational(e.args[0], b, at);
      if (!base) return std::nullopt;
      auto ex = eval_rational(e.args[1], b, at);
      if (!ex) return std::nullopt;
      return rational_power(*base, *ex, b);
    }
    case kind::factorial: {
      auto a = eval_rational(e.args[0], b, at);
      // 3000! has ~9100 digits: enough for contest answers (2006!), bounded for hostile ones.
      if (!a || !is_integer(*a) || *a < 0 || *a > 3000) return std::nullopt;
      b.spend(a->get_num().get_ui());
      mpz_class r;
      mpz_fac_ui(r.get_mpz_t(), a->get_num().get_ui());
      return mpq_class(r);
    }
    case kind::func: {
      std::vector<mpq_class> v;
      for (const expr& a : e.args) {
        auto x = eval_rational(a, b, at);
        if (!x) return std::nullopt;
        v.push_back(*x);
      }
      return rational_function(e.name, v, b);
    }
    default:
      return std::nullopt;
  }
}

}  // namespace grpo::rewards::math::detail

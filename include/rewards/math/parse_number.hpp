// SPDX-License-Identifier: Apache-2.0
/// @file parse_number.hpp
/// @brief The maths parser's number literals (parser::parse_number): integers and decimals as exact
///        rationals with their written precision, scientific notation, numerals in another base,
///        mixed numbers. Part of parse.hpp (include that).
#pragma once

#include <rewards/math/parse.hpp>

#include <cstddef>
#include <string>

namespace grpo::rewards::math::detail {

/// Number literal; `allow_mixed` enables `2\frac{1}{2}` and `7 3/4` (mixed numbers).
inline expr parser::parse_number(bool allow_mixed) {
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

}  // namespace grpo::rewards::math::detail

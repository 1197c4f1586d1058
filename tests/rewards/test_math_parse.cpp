// SPDX-License-Identifier: Apache-2.0
// Tests of the LaTeX parser (grpo::rewards::math::parse): exact values of numeric answers computed
// by hand, tree shapes of structured answers, and inputs that must be rejected.
#include <doctest/doctest.h>
#include <rewards/math.hpp>

#include <optional>
#include <string>

namespace rm = grpo::rewards::math;
using rm::kind;

namespace {

std::optional<rm::expr> parse_norm(const std::string& s, int max_depth = 96) {
  rm::budget b(1000000);
  return rm::parse(rm::normalize_answer(s, b), b, max_depth);
}

/// Exact value of a parsed numeric answer.
std::optional<mpq_class> value_of(const std::string& s) {
  auto e = parse_norm(s);
  if (!e) return std::nullopt;
  rm::budget b(1000000);
  return rm::detail::eval_rational(*e, b);
}

struct value_case {
  const char* text;
  long num, den;
};

}  // namespace

TEST_CASE("parse: numeric answers evaluate to their exact value" *
          doctest::test_suite("rewards.math")) {
  const value_case cases[] = {
      {"42", 42, 1},
      {"-7", -7, 1},
      {"\\frac{1}{2}", 1, 2},
      {"\\frac12", 1, 2},
      {"\\frac1{72}", 1, 72},
      {"\\frac{a}2", 0, 0},  // symbolic: no value
      {"2\\frac{1}{2}", 5, 2},
      {"7 3/4", 31, 4},
      {"-2\\frac{1}{2}", -5, 2},
      {"1.5e3", 1500, 1},
      {"2.5E-1", 1, 4},
      {"1.5 \\times 10^{3}", 1500, 1},
      {"2^{10}", 1024, 1},
      {"2^10", 1024, 1},
      {"2^{-2}", 1, 4},
      {"\\sqrt{16}", 4, 1},
      {"\\sqrt[3]{-8}", -2, 1},
      {"\\sqrt{\\frac{4}{9}}", 2, 3},
      {"8^{2/3}", 4, 1},
      {"5!", 120, 1},
      {"\\binom{5}{2}", 10, 1},
      {"{5 \\choose 2}", 0, 0},  // \choose is not supported: rejected
      {"7,425,000", 7425000, 1},
      {"0,5", 1, 2},
      {"14{,}916", 14916, 1},
      {".5", 1, 2},
      {"-3^2", -9, 1},
      {"(-3)^2", 9, 1},
      {"\\frac{1}{2}\\cdot 4", 2, 1},
      {"3(4+5)", 27, 1},
      {"(1+2)(3+4)", 21, 1},
      {"2 \\times 3 + 4", 10, 1},
      {"10 \\div 4", 5, 2},
      {"10/4/5", 1, 2},
      {"2^3^2", 64, 1},  // left to right, as written without braces
      {"\\lfloor 3.7 \\rfloor", 3, 1},
      {"\\lceil -3.7 \\rceil", -3, 1},
      {"|-5|", 5, 1},
      {"\\gcd(12, 18)", 6, 1},
      {"\\operatorname{lcm}(4,6)", 12, 1},
      {"\\max(3, 9, 4)", 9, 1},
      {"\\left(\\frac{2}{3}\\right)^{2}", 4, 9},
      {"10\\%", 1, 10},
      {"\\text{13}", 13, 1},
      {"\\$1,000", 1000, 1},
      {"\\frac{\\frac{1}{2}}{3}", 1, 6},
      {"1 - - 1", 2, 1},
  };
  for (const auto& c : cases) {
    INFO("text = " << std::string(c.text));
    const auto v = value_of(c.text);
    if (c.den == 0) {
      CHECK_FALSE(v.has_value());
    } else {
      REQUIRE(v.has_value());
      CHECK(*v == mpq_class(c.num, c.den));
    }
  }
}

TEST_CASE("parse: decimal literals keep their written precision" *
          doctest::test_suite("rewards.math")) {
  auto e = parse_norm("0.333");
  REQUIRE(e);
  CHECK(e->k == kind::number);
  CHECK(e->sig_digits == 3);
  CHECK(e->ulp_exp == -3);
  e = parse_norm("2.50");
  REQUIRE(e);
  CHECK(e->sig_digits == 3);
  CHECK(e->ulp_exp == -2);
  CHECK(e->value == mpq_class(5, 2));
  e = parse_norm("1.5e3");
  REQUIRE(e);
  CHECK(e->sig_digits == 2);
  CHECK(e->ulp_exp == 2);
  e = parse_norm("12");
  REQUIRE(e);
  CHECK(e->sig_digits == -1);  // integers are exact
}

TEST_CASE("parse: structured answers" * doctest::test_suite("rewards.math")) {
  auto e = parse_norm("1, 2, 3");
  REQUIRE(e);
  CHECK(e->k == kind::set);
  CHECK_FALSE(e->braced);
  CHECK(e->args.size() == 3);

  e = parse_norm("\\{1, 2\\}");
  REQUIRE(e);
  CHECK(e->k == kind::set);
  CHECK(e->braced);

  e = parse_norm("\\{5\\}");
  REQUIRE(e);
  CHECK(e->k == kind::set);
  CHECK(e->args.size() == 1);

  e = parse_norm("\\{\\}");
  REQUIRE(e);
  CHECK(e->k == kind::empty_set);

  e = parse_norm("(1, 2)");
  REQUIRE(e);
  CHECK(e->k == kind::tuple);
  CHECK(e->paren_pair);

  e = parse_norm("(1, 2, 3)");
  REQUIRE(e);
  CHECK(e->k == kind::tuple);
  CHECK_FALSE(e->paren_pair);

  e = parse_norm("[1, 2)");
  REQUIRE(e);
  CHECK(e->k == kind::interval);
  CHECK(e->lo_closed);
  CHECK_FALSE(e->hi_closed);

  e = parse_norm("\\left(-\\infty, 3\\right]");
  REQUIRE(e);
  CHECK(e->k == kind::interval);
  CHECK_FALSE(e->lo_closed);
  CHECK(e->hi_closed);

  e = parse_norm("(0,1) \\cup [2,3]");
  REQUIRE(e);
  CHECK(e->k == kind::set_op);
  CHECK(e->name == "cup");
  CHECK(e->args.size() == 2);

  e = parse_norm("1 < x \\le 2");
  REQUIRE(e);
  CHECK(e->k == kind::relation);
  REQUIRE(e->ops.size() == 2);
  CHECK(e->ops[0] == rm::rel::lt);
  CHECK(e->ops[1] == rm::rel::le);

  e = parse_norm("x \\in [0, 1]");
  REQUIRE(e);
  CHECK(e->k == kind::relation);
  CHECK(e->ops[0] == rm::rel::in);
  CHECK(e->args[1].k == kind::interval);

  e = parse_norm("\\begin{pmatrix} 1 & 2 & 3 \\\\ 4 & 5 & 6 \\end{pmatrix}");
  REQUIRE(e);
  CHECK(e->k == kind::matrix);
  CHECK(e->rows == 2);
  CHECK(e->cols == 3);

  e = parse_norm("\\begin{array}{cc} 1 & 2 \\end{array}");
  REQUIRE(e);
  CHECK(e->k == kind::matrix);
  CHECK(e->rows == 1);

  e = parse_norm("3 \\pm \\sqrt{2}");
  REQUIRE(e);
  CHECK(e->k == kind::pm);

  e = parse_norm("\\text{Evelyn}");
  REQUIRE(e);
  CHECK(e->k == kind::text);
  CHECK(e->name == "evelyn");

  e = parse_norm("a_{10}");
  REQUIRE(e);
  CHECK(e->k == kind::symbol);
  CHECK(e->name == "a_10");

  e = parse_norm("\\mathbb{R}");
  REQUIRE(e);
  CHECK(e->k == kind::named_set);

  e = parse_norm("\\sin^2 x");
  REQUIRE(e);
  CHECK(e->k == kind::pow);
  CHECK(e->args[0].k == kind::func);
  CHECK(e->args[0].name == "sin");

  e = parse_norm("\\sin^{-1}(x)");
  REQUIRE(e);
  CHECK(e->k == kind::func);
  CHECK(e->name == "arcsin");

  e = parse_norm("\\log_2 8");
  REQUIRE(e);
  CHECK(e->k == kind::func);
  CHECK(e->args.size() == 2);

  e = parse_norm("e^{i\\pi}");
  REQUIRE(e);
  CHECK(e->k == kind::pow);
  CHECK(e->args[0].k == kind::constant);

  e = parse_norm("25\\%");
  REQUIRE(e);
  CHECK(e->k == kind::percent);
}

TEST_CASE("parse: malformed input is rejected" * doctest::test_suite("rewards.math")) {
  const char* bad[] = {
      "\\frac{1}{",
      "(1, 2",
      "1 +",
      "\\sqrt{}",
      "x^",
      "\\unknowncmd{2}",
      "((1)",
      "[1, 2, 3)",
      "\\begin{pmatrix} 1 & 2 \\\\ 3 \\end{pmatrix}",  // ragged rows
      "\\begin{pmatrix} 1 \\end{bmatrix}",             // mismatched environment
      "\\begin{cases} 1 \\end{cases}",
      "1 2 )",
      "\\{1, 2",
      "|x",
      "\\lfloor 3",
      "=",
      ",",
      "\\frac",
      "a_",
      "12:00",
  };
  for (const char* s : bad) {
    INFO("text = " << std::string(s));
    CHECK_FALSE(parse_norm(s).has_value());
  }
}

TEST_CASE("parse: nesting deeper than max_depth is rejected, shallower accepted" *
          doctest::test_suite("rewards.math")) {
  std::string deep, shallow;
  for (int i = 0; i < 200; ++i) deep += "(";
  deep += "1";
  for (int i = 0; i < 200; ++i) deep += ")";
  for (int i = 0; i < 50; ++i) shallow += "{";
  shallow += "1";
  for (int i = 0; i < 50; ++i) shallow += "}";
  CHECK_FALSE(parse_norm(deep).has_value());
  CHECK(parse_norm(shallow).has_value());
  CHECK_FALSE(parse_norm(shallow, 10).has_value());
}

TEST_CASE("parse: budget exhaustion is reported by exception, not by a partial tree" *
          doctest::test_suite("rewards.math")) {
  rm::budget b(3);
  CHECK_THROWS_AS((void)rm::parse("1+2+3+4+5+6", b), rm::budget_exhausted);
}

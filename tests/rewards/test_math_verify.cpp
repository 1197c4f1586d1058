// SPDX-License-Identifier: Apache-2.0
// Table-driven tests of grpo::rewards::math::verify: {gold, prediction, expected verdict}, one
// table per category. Expected verdicts come from the mathematics (hand-checked values), from the
// behaviour documented by the anchors (Math-Verify README/tests, Hendrycks MATH tests, lm-eval,
// Qwen2.5-Math) and from their reported failure modes (docs/rewards-math.md lists divergences).
#include <doctest/doctest.h>
#include <rewards/math.hpp>

#include <initializer_list>
#include <string>

namespace {

using grpo::rewards::math::verdict;
using grpo::rewards::math::verify;
using grpo::rewards::math::verify_options;
constexpr verdict C = verdict::correct;
constexpr verdict I = verdict::incorrect;
constexpr verdict U = verdict::unparseable_gold;

struct vcase {
  const char* gold;
  const char* pred;
  verdict want;
};

const char* verdict_name(verdict v) {
  switch (v) {
    case verdict::correct:
      return "correct";
    case verdict::incorrect:
      return "incorrect";
    case verdict::unparseable_gold:
      return "unparseable_gold";
  }
  return "?";
}

void run_table(std::initializer_list<vcase> cases, const verify_options& opt = {}) {
  for (const vcase& c : cases) {
    const verdict got = verify(c.gold, c.pred, opt);
    INFO("gold = " << std::string(c.gold) << "    pred = " << std::string(c.pred));
    const std::string msg =
        std::string("got ") + verdict_name(got) + ", expected " + verdict_name(c.want);
    CHECK_MESSAGE(got == c.want, msg);
  }
}

}  // namespace

TEST_CASE("verify: integers and exact decimals" * doctest::test_suite("rewards.math")) {
  run_table({
      {"42", "42", C},
      {"42", "42.0", C},
      {"42", "43", I},
      {"-5", "-5", C},
      {"-5", "5", I},
      {"0", "0", C},
      {"0", "-0", C},
      {"100", "1e2", C},
      {"1500", "1.5 \\times 10^{3}", C},
      {"1500", "1.5e3", C},
      {"1500", "1.5 \\cdot 10^3", C},
      {"0.5", "\\frac{1}{2}", C},
      {".5", "0.5", C},
      {"0.25", "\\frac14", C},
      {"3.14", "3.140", C},
      {"2.5", "2.50", C},
      {"1000000", "1000001", I},
      {"123456789012345678901234567890", "123456789012345678901234567890", C},
      {"123456789012345678901234567890", "123456789012345678901234567891", I},
      {"2^{64}", "18446744073709551616", C},
      {"2^{64}", "18446744073709551615", I},
      {"-3^2", "-9", C},
      {"(-3)^2", "9", C},
      {"10 \\div 4", "\\frac{5}{2}", C},
      {"3(4+5)", "27", C},
  });
}

TEST_CASE("verify: fractions and mixed numbers" * doctest::test_suite("rewards.math")) {
  run_table({
      {"\\frac{1}{2}", "\\frac12", C},
      {"\\frac{1}{2}", "1/2", C},
      {"10/9", "\\frac{10}{9}", C},
      {"\\frac13", "1/3", C},
      {"\\frac{2}{4}", "\\frac{1}{2}", C},
      {"\\dfrac{3}{4}", "\\tfrac{3}{4}", C},
      {"\\cfrac{1}{3}", "\\frac{1}{3}", C},
      {"\\frac{3}{4}", "0.75", C},
      {"\\frac{3}{4}", "\\frac{4}{3}", I},
      {"-\\frac{1}{2}", "\\frac{-1}{2}", C},
      {"-\\frac{1}{2}", "\\frac{1}{-2}", C},
      {"\\frac{1}{2}", "-\\frac{1}{2}", I},
      {"\\frac{a}{b}", "a/b", C},
      {"\\frac{x+1}{2}", "\\frac{x}{2}+\\frac12", C},
      {"\\frac{10}{4}", "\\frac52", C},
      {"\\frac1{72}", "\\frac{1}{72}", C},
      {"\\frac{7}{2}", "3\\frac{1}{2}", C},
      {"3\\frac{1}{2}", "3.5", C},
      {"7\\frac{3}{4}", "7 3/4", C},
      {"2\\frac{1}{3}", "\\frac{7}{3}", C},
      {"\\frac{5}{2}", "2\\frac{1}{3}", I},
      {"-2\\frac{1}{2}", "-2.5", C},
      {"\\frac{\\frac{1}{2}}{\\frac{3}{4}}", "\\frac{2}{3}", C},
      {"\\frac{1}{0}", "1", U},  // an undefined gold is skipped, never graded (issue 14)
  });
}

TEST_CASE("verify: thousands separators and decimal commas" * doctest::test_suite("rewards.math")) {
  run_table({
      {"7425000", "7,425,000", C},
      {"7425000", "7 425 000", C},
      {"7,425,000", "7425000", C},
      {"14916", "14{,}916", C},
      {"11111111100", "11,\\! 111,\\! 111,\\! 100", C},
      {"1000.99", "1000,99", C},
      {"0.111", "0,111", C},
      {"3.5", "3{,}5", C},
      {"1234", "1,234", C},
      {"1234.5", "1,234.5", C},
      {"32349", "32, 349", I},  // a space after the comma makes a list (Math-Verify)
      {"1, 2", "1,2", C},
      {"333333", "333,333", C},
      {"1000", "x = 1,000", C},
      {"1000", "\\$1,000", C},
  });
}

TEST_CASE("verify: float policy (rounding of the written precision)" *
          doctest::test_suite("rewards.math")) {
  run_table({
      {"1/3", "0.333", C},
      {"1/3", "0.3333333", C},
      {"1/3", "0.33", I},   // only 2 significant digits
      {"1/3", "0.334", I},  // wrong rounding
      {"2/3", "0.667", C},
      {"2/3", "0.666", I},  // truncation is not rounding
      {"8/3", "2.667", C},
      {"3.14", "\\pi", C},  // gold 3.14 is a rounding of pi
      {"3.1", "\\pi", I},   // 2 significant digits: exact comparison only
      {"\\pi", "3.14", C},
      {"\\pi", "3.1", I},
      {"\\sqrt{2}", "1.414", C},
      {"\\sqrt{2}", "1.41", C},
      {"\\sqrt{2}", "1.4", I},
      {"\\frac{\\sqrt{2}}{2}", "0.7071", C},
      {"0.5", "0.54", I},
      {"2.5", "2.54", I},
      {"1.234", "1.2341", C},
      {"1.0001", "1.0002", I},
      {"e", "2.718", C},
      {"e", "2.72", C},
      {"100", "99.9", I},
      {"100", "100.04", I},
      {"\\frac{1}{12}", "0.0833333333333333", C},
      {"\\frac{1}{7}", "0.142857", C},
      {"\\frac{1}{7}", "0.142858", I},
      {"1.5 \\times 10^{-3}", "0.0015", C},
      {"0.0015", "0.00150", C},
  });
}

TEST_CASE("verify: float policy options" * doctest::test_suite("rewards.math")) {
  verify_options strict;
  strict.float_min_significant = 100;  // never read decimals as roundings
  run_table({{"1/3", "0.333", I}, {"\\pi", "3.14", I}, {"0.5", "\\frac12", C}}, strict);
  verify_options loose;
  loose.float_min_significant = 2;
  run_table({{"1/3", "0.33", C}, {"1/3", "0.3", I}}, loose);
}

TEST_CASE("verify: percent" * doctest::test_suite("rewards.math")) {
  run_table({
      {"10\\%", "0.1", C},
      {"0.1", "10\\%", C},
      {"10", "10\\%", C},  // MATH golds drop the % sign (percent_lenient)
      {"10\\%", "10", C},
      {"28\\%", "28 percent", C},
      {"28\\%", "28 pct", C},
      {"28\\%", "\\boxed{28 percentage}", C},
      {"28\\%", "$28$\\%", C},
      {"10\\%", "20\\%", I},
      {"10\\%", "1000", I},
      {"12.5\\%", "\\frac{1}{8}", C},
      {"50\\%", "0.5", C},
      {"50\\%", "5", I},
  });
  verify_options exact;
  exact.percent_lenient = false;
  run_table({{"10", "10\\%", I}, {"10\\%", "0.1", C}}, exact);
}

TEST_CASE("verify: units, currency, degrees" * doctest::test_suite("rewards.math")) {
  run_table({
      {"5", "5 \\text{ cm}", C},
      {"15", "15\\mbox{ cm}^2", C},
      {"10", "\\$10", C},
      {"10", "$10", C},
      {"10", "10 dollars", C},
      {"\\frac{1}{3}", "\\frac{1}{3} \\text{meters}", C},
      {"90", "90^\\circ", C},
      {"90", "90^{\\circ}", C},
      {"90^\\circ", "90", C},
      {"90", "90\u00b0", C},
      {"45", "45 degrees", C},
      {"12", "12 inches", C},
      {"3", "3 \\text{ hours}", C},
      {"5", "5 units", C},
      {"6", "6 sq units", C},
      {"20", "20\\text{ km}", C},
      {"20", "20 \\mathrm{km}", C},
      {"20", "21 km", I},
      {"\\frac{\\pi}{2}", "90^\\circ", I},  // degrees are not converted
      {"5", "5m", I},                       // single letters are not units
      {"d", "d", C},
      {"m", "m", C},
  });
}

TEST_CASE("verify: text answers" * doctest::test_suite("rewards.math")) {
  run_table({
      {"13", "\\text{13}", C},
      {"\\text{Evelyn}", "Evelyn", C},
      {"\\text{Evelyn}", "\\text{evelyn}", C},
      {"\\text{odd}", "odd", C},
      {"odd", "even", I},
      {"Monday", "monday", C},
      {"No", "no", C},
      {"yes", "no", I},
      {"\\text{Sandra}", "\\text{Sandra}", C},
      {"\\textbf{17}", "17", C},
  });
}

TEST_CASE("verify: radicals and symbolic expressions" * doctest::test_suite("rewards.math")) {
  run_table({
      {"2\\sqrt{2}", "\\sqrt{8}", C},
      {"\\sqrt{8}", "2\\sqrt{2}", C},
      {"\\sqrt{12}", "2\\sqrt{3}", C},
      {"\\sqrt{2}/2", "\\frac{1}{\\sqrt{2}}", C},
      {"\\frac{1}{\\sqrt{3}}", "\\frac{\\sqrt{3}}{3}", C},
      {"\\sqrt[3]{8}", "2", C},
      {"\\sqrt[3]{-8}", "-2", C},
      {"\\sqrt2", "\\sqrt{2}", C},
      {"\\sqrt{2}", "\\sqrt{3}", I},
      {"\\sqrt{2}+\\sqrt{3}", "\\sqrt{5+2\\sqrt{6}}", C},
      {"2^{10}", "1024", C},
      {"2^{-1}", "0.5", C},
      {"8^{2/3}", "4", C},
      {"(x+1)^2", "x^2+2x+1", C},
      {"(x+1)^2", "x^2+x+1", I},
      {"x^2-1", "(x-1)(x+1)", C},
      {"\\frac{x+2}{7}", "\\frac{x}{7}+\\frac{2}{7}", C},
      {"\\tan^2(y)+1", "\\sec^2(y)", C},
      {"\\sin^2 x+\\cos^2 x", "1", C},
      {"\\sin(2x)", "2\\sin x\\cos x", C},
      {"\\log_2 8", "3", C},
      {"\\log_{2}(32)", "5", C},
      {"\\ln(e^2)", "2", C},
      {"e^{i\\pi}", "-1", C},
      {"i^2", "-1", C},
      {"\\frac{1+\\sqrt{5}}{2}", "\\frac{1}{2}+\\frac{\\sqrt{5}}{2}", C},
      {"\\pi r^2", "r^2\\pi", C},
      {"2\\pi", "\\pi", I},
      {"xy", "yx", C},
      {"\\sqrt{1/n}", "\\frac{1}{\\sqrt n}", C},  // Math-Verify issue #64 (false negative)
      {"\\frac{a+b}{2}", "\\frac{a-b}{2}", I},
      {"1-\\frac{1}{e}", "1+\\frac1{\\mathrm e}", I},  // Math-Verify false positive
      {"5!", "120", C},
      {"\\binom{5}{2}", "10", C},
      {"\\dbinom{6}{3}", "20", C},
      {"\\binom{n}{2}", "\\frac{n(n-1)}{2}", C},
      {"\\frac{1}{2004!}", "\\frac{1}{2006!}", I},  // Math-Verify precision false positive
      {"\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}", I},
      {"\\frac{2^{2005}+1}{3\\cdot 2^{2006}}", "\\frac{1}{3\\cdot 2^{2006}}", I},
      {"4", "4\\sqrt{2}", I},  // Math-Verify issue #41
      {"\\cos(\\pi/3)", "1/2", C},
      {"\\sin(\\pi/6)", "0.5", C},
      {"\\sin 30", "\\frac{1}{2}", I},  // radians
      {"\\arctan(1)", "\\frac{\\pi}{4}", C},
      {"e^{x}e^{y}", "e^{x+y}", C},
      {"\\exp(2)", "e^2", C},
      {"\\lfloor 3.7 \\rfloor", "3", C},
      {"\\lceil 3.2 \\rceil", "4", C},
      {"|-5|", "5", C},
      {"\\gcd(12, 18)", "6", C},
      {"\\operatorname{lcm}(4,6)", "12", C},
      {"\\left(\\frac{2}{3}\\right)^{2}", "\\frac{4}{9}", C},
      {"a^2 b", "b a^2", C},
      {"\\alpha + \\beta", "\\beta+\\alpha", C},
      {"\\alpha", "\\beta", I},
      {"x_1 + x_2", "x_2 + x_1", C},
      {"a_{10}", "a_{11}", I},
      {"3\\sqrt{3}/2", "\\frac{3\\sqrt3}{2}", C},
      {"\\frac{x^2-4}{x-2}", "x+2", C},
      {"n^2", "n", I},
  });
}

TEST_CASE("verify: sets and lists are unordered" * doctest::test_suite("rewards.math")) {
  run_table({
      {"1, 2, 3", "3, 2, 1", C},
      {"\\{1,2,3\\}", "1,2,3", C},
      {"\\{1,2,3\\}", "\\{3,1,2\\}", C},
      {"\\{1,2\\}", "\\{1,2,3\\}", I},
      {"1, 2", "1", I},
      {"\\{1,3\\} \\cup \\{2,4\\}", "\\{1,2,3,4\\}", C},
      {"\\{1,2,3\\} \\setminus \\{2\\}", "\\{1,3\\}", C},
      {"\\{1,2\\} \\cap \\{2,3\\}", "\\{2\\}", C},
      {"\\pm 2021", "\\{-2021, 2021\\}", C},
      {"\\pm 2", "2, -2", C},
      {"\\frac{1\\pm\\sqrt{5}}{2}", "\\frac{1+\\sqrt5}{2}, \\frac{1-\\sqrt5}{2}", C},
      {"1 \\pm \\sqrt{2}", "1+\\sqrt{2}, 1-\\sqrt{2}", C},
      {"\\emptyset", "\\varnothing", C},
      {"\\emptyset", "\\{\\}", C},
      {"\\emptyset", "0", I},
      {"-2, 3", "x=3, x=-2", C},
      {"-2, 3", "x = 3 \\text{ or } x = -2", C},
      {"-2, 3", "x = 3 or x = -2", C},
      {"-2 and 3", "3, -2", C},
      // A gold of distinct elements is a set: repeating one of them states the same set (issue 14
      // v2, Math-Verify numina case); a gold with a repeated element keeps multiplicities.
      {"1,2,3", "1,2,2,3", C},
      {"1,2,2,3", "1,2,3", I},
      {"1,2,2,3", "1,2,3,3", I},
      {"1,2,3", "1,2,2,4", I},
      {"\\frac{1}{2}, \\frac{1}{3}", "0.5, \\frac{1}{3}", C},
      {"\\{1, 2\\}", "\\{1, 3\\}", I},
  });
}

TEST_CASE("verify: tuples are ordered" * doctest::test_suite("rewards.math")) {
  run_table({
      {"(1,2)", "(1,2)", C},
      {"(1,2)", "(2,1)", I},
      {"(3,1)", "\\{1,3\\}", I},
      {"(1,2)", "1, 2", I},
      {"(1,2,3)", "(1,2,3)", C},
      {"(1,2,3)", "(1,3,2)", I},
      {"\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)", C},  // Math-Verify issue #56
      {"(0.5, 1)", "(\\frac12, 1)", C},
      {"\\langle 1, 2\\rangle", "(1,2)", C},
      {"(1, 2, 3)", "(1, 2)", I},
      {"(a, b)", "(a, b)", C},
      {"(-1, \\sqrt{2})", "(-1, 2^{1/2})", C},
  });
}

TEST_CASE("verify: intervals keep their ends' openness" * doctest::test_suite("rewards.math")) {
  run_table({
      {"[0,1)", "[0,1)", C},
      {"[0,1)", "(0,1)", I},
      {"(0,1]", "(0,1)", I},
      {"[1,2]", "[1, 2]", C},
      {"[1,2]", "(1,2)", I},
      {"(-\\infty, 3]", "(-\\infty,3]", C},
      {"(-\\infty, 3]", "(-\\infty,3)", I},
      {"(2, \\infty)", "(2,\\infty)", C},
      {"(2, \\infty)", "(2,-\\infty)", I},
      {"(-6,10)", "x \\in (-6, 10)", C},
      {"x \\in (-6,10)", "(-6,10)", C},
      {"(-\\infty,1)\\cup(2,\\infty)", "(2,\\infty)\\cup(-\\infty,1)", C},
      {"(-\\infty,1)\\cup(2,\\infty)", "(-\\infty,1)\\cup[2,\\infty)", I},
      {"(-\\infty,1)\\cup(2,\\infty)", "(-\\infty,1)", I},
      {"(-\\infty,\\infty)", "\\mathbb{R}", C},
      {"(0, 8/3)", "(0, 2.6667)", C},
      {"\\left[ \\frac{1}{2}, 3 \\right)", "[0.5, 3)", C},
  });
}

TEST_CASE("verify: relations, chains and assignments" * doctest::test_suite("rewards.math")) {
  run_table({
      {"1<x<2", "(1,2)", C},
      {"x \\leq 5", "5 \\geq x", C},
      {"x<1", "-x>-1", C},
      {"x<1", "x>1", I},
      {"x \\le 1", "x<1", I},
      {"x \\geq 2", "[2,\\infty)", C},
      {"x > 2", "(2, \\infty)", C},
      {"x<1 \\text{ or } x>2", "(-\\infty,1)\\cup(2,\\infty)", C},
      {"1 < x < 2", "2 > x > 1", C},
      {"1 < x < 2", "1 < x \\le 2", I},
      {"2x+4y-3=0", "y=-\\frac12x+\\frac34", C},
      {"x^2/4+y^2/3=1", "x^2/16+y^2/12=1/4", C},
      {"5x-7y+11z+4=0", "x+y-z+2=0", I},      // Hendrycks test
      {"x-2y+z-1=0", "x-3y+z-1=0", I},        // lm-eval "last =" failure
      {"3*x-1*y+13=0", "3x + 4y + 14=0", I},  // Math-Verify issue #60
      {"y=2x+1", "y=2x+1", C},
      {"y=2x+1", "2x+1", C},
      {"2x+1", "y=2x+1", C},
      {"y = 2x+1", "y=2x-1", I},
      {"x=3", "x=3", C},
      {"x=3", "y=3", C},
      {"x = 3", "x=4", I},
      {"11", "x=11", C},
      {"x=11", "11", C},
      {"1", "2x+z=1", I},           // an equation is not its right side
      {"a+2z=2z+a=101", "101", I},  // Math-Verify README asymmetry
      {"x = 2", "x \\approx 2", C},
      {"3.14", "x \\approx 3.14", C},
      {"5", "2+3=5", C},
      {"5", "x = 2 + 3 = 5", C},
      {"a_3 = 2", "2", C},
      {"x \\ne 3", "x \\neq 3", C},
      {"x \\ne 3", "x = 3", I},
      {"x^2+y^2=1", "y^2 = 1 - x^2", C},
      {"x^2+y^2=1", "x^2+y^2=2", I},
      {"f(x) = 2x", "2x", C},
  });
}

TEST_CASE("verify: matrices and vectors" * doctest::test_suite("rewards.math")) {
  run_table({
      {"\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}", C},
      {"\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
       "\\left[\\begin{array}{cc}1&2\\\\3&4\\end{array}\\right]", C},
      {"\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}", I},
      {"\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}", I},
      {"\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2&3&4\\end{pmatrix}", I},
      {"\\begin{pmatrix}1\\\\2\\end{pmatrix}", "(1,2)", C},
      {"\\begin{pmatrix}\\frac12 & 0\\end{pmatrix}", "\\begin{pmatrix}0.5 & 0\\end{pmatrix}", C},
      {"\\begin{pmatrix}x & 1\\\\0 & x\\end{pmatrix}",
       "\\begin{pmatrix}x & 1\\\\0 & x\\end{pmatrix}", C},
      {"\\begin{pmatrix} 2x \\\\ 3 \\end{pmatrix}", "\\begin{pmatrix} x+x \\\\ 3 \\end{pmatrix}",
       C},
  });
}

TEST_CASE("verify: full responses go through extraction" * doctest::test_suite("rewards.math")) {
  run_table({
      {"42", "Let me think... so the answer is \\boxed{42}.", C},
      {"42", "<think>maybe \\boxed{41}</think> The answer is \\boxed{42}", C},
      {"41", "<think>maybe \\boxed{41}</think> The answer is \\boxed{42}", I},
      {"42", "Final Answer: The final answer is $42$. I hope it is correct.", C},
      {"42", "Answer: 42", C},
      {"42", "The answer is **42**.", C},
      {"73", "Thus **73**", C},  // Math-Verify issue #76
      {"42", "We get $x = 42$.", C},
      {"42", "\\boxed{\\boxed{42}}", C},
      {"1, 2", "\\boxed{1} and \\boxed{2}", C},
      {"2", "\\boxed{1} and \\boxed{2}", I},
      {"2", "First \\boxed{1}. Then, after much more work, we conclude \\boxed{2}", C},
      {"\\frac{1}{2}", "So $x=\\boxed{\\frac{1}{2}}$", C},
      {"\\{1,2\\}", "\\boxed{\\{1,2\\}}", C},
      {"5", "\\fbox{5}", C},
      {"5", "so it is $\\boxed 5$", C},
      {"3", "The value is 3 apples after we add", I},  // no last-number fallback
      {"\\boxed{7}", "7", C},
      {"The answer is $\\frac{3}{4}$.", "\\boxed{0.75}", C},
      {"5", "", I},
      {"5", "<think>\\boxed{5}</think>", I},  // nothing after </think>
      {"(3, \\frac{\\pi}{2})", "The point is \\(\\left( 3, \\frac{\\pi}{2} \\right)\\).", C},
      {"18", "Answer: $18$", C},
      {"18", "**Final Answer**\n\n\\[\n\\boxed{18}\n\\]", C},
  });
}

TEST_CASE("verify: multiple-choice letters" * doctest::test_suite("rewards.math")) {
  run_table({
      {"C", "C", C},
      {"C", "(C)", C},
      {"C", "\\boxed{C}", C},
      {"C", "\\boxed{\\text{(C)}}", C},
      {"C", "The answer is (C).", C},
      {"C", "Answer: C", C},
      {"(C)", "C", C},
      {"\\text{(C)}", "\\boxed{C}", C},
      {"C", "\\boxed{D}", I},
      {"C", "A, C", I},
      {"C", "\\boxed{A, B, C, D}", I},
      {"B", "\\boxed{(B) 42}", C},
      {"B", "\\boxed{B. 42}", C},
      {"B", "\\boxed{Option B}", C},
      {"E", "\\boxed{e}", C},
  });
  verify_options off;
  off.multiple_choice = false;
  run_table({{"C", "C", C}, {"C", "(C)", C}, {"C", "D", I}}, off);
}

TEST_CASE("verify: unparseable gold is reported, never rewarded" *
          doctest::test_suite("rewards.math")) {
  run_table({
      {"", "5", U},
      {"   ", "5", U},
      {"\\frac{", "5", U},
      {"\\frac{", "\\frac{", C},  // identical text still counts
      {"12:00", "1:00", U},       // Math-Verify false positive; we skip it
      {"\\boxed{}", "5", U},
  });
}

TEST_CASE("verify: reward-hacking guards (asymmetric gold/prediction)" *
          doctest::test_suite("rewards.math")) {
  run_table({
      {"3", "\\boxed{3, 4}", I},  // several candidates
      {"3", "\\boxed{3} or \\boxed{4}", I},
      {"3", "x = 3 or x = 4", I},
      {"3", "3 \\pm 1", I},
      {"2", "\\pm 2", I},
      {"\\frac{1}{2}", "\\frac{1}{2} or \\frac{1}{3}", I},
      {"3", "x \\in \\{3,4\\}", I},
      {"(1,2)", "1<x<2", I},  // pred inequality vs gold interval
      {"[1,2]", "1 \\le x \\le 2", I},
      {"5", "x \\le 5", I},
      {"3", "\\boxed{}", I},
      {"1", "2x+z=1", I},
      {"0", "f(x) = 0 for all x > 0, or x = 1", I},
      {"C", "A B C D", I},
      {"7", "\\boxed{7} \\boxed{8} \\boxed{9}", I},
      {"7", "\\boxed{1, 2, 3, 4, 5, 6, 7, 8, 9}", I},
  });
  verify_options lenient;
  lenient.allow_pred_relation_vs_gold_set = true;
  run_table({{"(1,2)", "1<x<2", C}, {"[1,2]", "1 \\le x \\le 2", C}, {"(1,2)", "1<x\\le 2", I}},
            lenient);
}

TEST_CASE("verify: Unicode maths symbols" * doctest::test_suite("rewards.math")) {
  run_table({
      {"-3", "\u22123", C},
      {"6", "2\u00d73", C},
      {"2\\pi", "2\u03c0", C},
      {"\\sqrt{2}", "\u221a2", C},
      {"x \\le 3", "x \u2264 3", C},
      {"\\pm 1", "\u00b11", C},
      {"x^2", "x\u00b2", C},
  });
}

TEST_CASE("verify: gold extraction reads solutions" * doctest::test_suite("rewards.math")) {
  run_table({
      {"We compute ... so the total is $\\boxed{12}$.", "12", C},
      {"We compute ... so the total is $\\boxed{12}$.", "\\boxed{13}", I},
      {"$\\frac{3}{5}$", "0.6", C},
      {"\\(\\sqrt{3}\\)", "\\sqrt3", C},
  });
}

TEST_CASE("verify: common answer spellings" * doctest::test_suite("rewards.math")) {
  run_table({
      {"\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", C},
      {"3\\sqrt{2}", "\\sqrt{18}", C},
      {"\\frac{3}{2}", "1.5", C},
      {"1.5", "\\frac{3}{2}", C},
      {"-\\infty", "-\\infty", C},
      {"\\infty", "\\infty", C},
      {"\\infty", "-\\infty", I},
      {"\\infty", "10^{100}", I},
      {"2", "2.0000001", I},
      {"x^{2}", "x^2", C},
      {"\\frac{x}{y}", "x/y", C},
      {"\\{-1, 1\\}", "\\pm 1", C},
      {"(-1, 1)", "\\pm 1", I},
      {"\\dfrac{9}{4}", "2.25", C},
      {"\\text{Sunday}", "Sunday.", C},
      {"5", "\\boxed{5.}", C},
      {"0.3", "\\frac{3}{10}", C},
      {"1/2", "0.5000", C},
      {"17", "17 \\text{ people}", C},
      {"17", "17 students", C},
      {"17", "17 sin", I},
      {"1,000", "1000 people", C},
      {"4\\pi", "4 \\pi", C},
      {"2 + \\sqrt{3}", "\\sqrt{3}+2", C},
      {"\\frac{1}{4}", "25\\%", C},
      {"6\\sqrt{3}", "6 \\sqrt 3", C},
      {"x^2 + 3x", "x(x+3)", C},
      {"\\frac{-b \\pm \\sqrt{b^2-4ac}}{2a}",
       "\\frac{-b + \\sqrt{b^2-4ac}}{2a}, \\frac{-b - \\sqrt{b^2-4ac}}{2a}", C},
      {"(2, 3)", "x = 2, y = 3", C},
      {"(2, 3)", "y = 3, x = 2", C},
      {"(2, 3)", "y = 2, x = 3", I},
      {"(2, 3)", "x = 2, x = 3", I},
      {"(2,3)", "(x, y) = (2, 3)", C},
      {"x=1, y=2", "y=2, x=1", C},
      {"4", "4.", C},
      {"-1", "\u22121", C},
      {"\\$18.90", "18.9", C},
      {"\\$18.90", "18.90 dollars", C},
      {"60^\\circ", "60", C},
      {"\\sqrt{x}", "x^{1/2}", C},
      {"\\sqrt[4]{16}", "2", C},
      {"\\log_{10} 100", "2", C},
      {"\\ln 1", "0", C},
      {"2^{100}", "1267650600228229401496703205376", C},
      {"3 \\cdot 10^{5}", "300000", C},
      {"3 \\times 10^5", "300,000", C},
      {"10^{-3}", "0.001", C},
      {"\\angle ABC = 90^\\circ", "90", C},
      {"AB = 5", "5", C},
      {"BC", "BC", C},
      {"1\\frac{1}{2}\\text{ hours}", "1.5", C},
      {"\\text{yes}", "Yes", C},
      {"\\textbf{(A)}", "A", C},
      {"i", "\\sqrt{-1}", C},
      {"3+4i", "4i+3", C},
      {"3+4i", "3-4i", I},
      {"\\overline{AB}", "AB", C},
      {"\\frac{1}{2}x", "\\frac{x}{2}", C},
      {"x \\in \\mathbb{R}", "\\mathbb{R}", C},
      {"\\mathbb{R}", "\\mathbb{Z}", I},
  });
}

TEST_CASE("verify: equation chains and approximations" * doctest::test_suite("rewards.math")) {
  run_table({
      {"x = 11", "x = 5+5+1 = 11", C},      // intermediate steps need not match
      {"x = 11", "x = 5+5+1 = 7 = 11", C},  // the stated value is the last one
      {"x = 11", "x = 5+5 = 10", I},
      {"x = 1/3", "x = 1/3 \\approx 0.33", C},  // an approximation keeps the exact value
      {"1/3", "x = 1/3 \\approx 0.33", C},
      {"1/3", "x = 0.5 \\approx 0.33", I},
      {"7 = 11a+c", "11a+c", I},  // an equation is not its right side
      {"2+3=5", "5", C},
      {"1 = \\zzz = x = 0", "0", C},  // unknown commands are opaque symbols
      {"\\zzz", "\\zzz", C},
      {"\\zzz", "\\yyy", I},
      {"z = 1 + 1 = 2", "z = 3 + 3 = 2", C},
  });
}

TEST_CASE("verify: matrix arithmetic written out" * doctest::test_suite("rewards.math")) {
  run_table({
      {"\\begin{pmatrix}6 & 8 \\\\ 10 & 12\\end{pmatrix}",
       "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} + \\begin{pmatrix}5 & 6 \\\\ 7 & "
       "8\\end{pmatrix}",
       C},
      {"\\begin{pmatrix}19 & 22 \\\\ 43 & 50\\end{pmatrix}",
       "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} \\begin{pmatrix}5 & 6 \\\\ 7 & "
       "8\\end{pmatrix}",
       C},
      {"\\begin{pmatrix}23 & 34 \\\\ 31 & 46\\end{pmatrix}",  // B A, not A B
       "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} \\begin{pmatrix}5 & 6 \\\\ 7 & "
       "8\\end{pmatrix}",
       I},
      {"\\begin{pmatrix}2 & 4 \\\\ 6 & 8\\end{pmatrix}",
       "2\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}", C},
      {"\\begin{pmatrix}-1 & -2\\end{pmatrix}", "-\\begin{pmatrix}1 & 2\\end{pmatrix}", C},
      {"\\begin{pmatrix}1 & 2\\end{pmatrix}",
       "\\begin{pmatrix}1 & 2\\end{pmatrix} + \\begin{pmatrix}1 \\\\ 2\\end{pmatrix}", I},
  });
}

TEST_CASE("verify: over-escaped LaTeX from JSON sources" * doctest::test_suite("rewards.math")) {
  run_table({
      {"\\\\frac{1}{2}", "0.5", C},
      {"\\\\sqrt{2}", "\\sqrt2", C},
      {"\\begin{pmatrix}1\\\\x\\end{pmatrix}", "\\begin{pmatrix}1\\\\x\\end{pmatrix}", C},
  });
}

TEST_CASE("verify: R1-Zero template completions" * doctest::test_suite("rewards.math")) {
  run_table({
      {"5", "<think>\nLet me compute 2+3.\n</think>\n<answer>\n5\n</answer>", C},
      {"5", "<think>\n\\boxed{5}\n</think>\n<answer>\n6\n</answer>", I},
      {"\\frac{1}{2}", "<think>..</think><answer>$\\frac{1}{2}$</answer>", C},
      {"5", "<think>..</think><answer></answer>", I},
  });
}

TEST_CASE("verify: numerals in another base" * doctest::test_suite("rewards.math")) {
  run_table({
      {"1011_2", "1011_{2}", C},
      {"1011_2", "\\boxed{1011_2}", C},
      {"1011_2", "11", I},  // the representation is the answer, not its value
      {"1011_2", "1011_3", I},
      {"123_{4}", "123_4", C},
  });
}

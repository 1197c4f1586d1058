// SPDX-License-Identifier: Apache-2.0
// Reward hacks of math::verify named in issue 14 (each one failed before the fix, as noted), and
// the opposite error: huge but equal values. Oracles: the mathematics of each pair (a difference
// of exactly 1, a rational difference, equal prime-power exponents), computed by hand.
#include <doctest/doctest.h>
#include <rewards/math.hpp>

#include <string>

namespace {

using grpo::rewards::math::verdict;
using grpo::rewards::math::verify;
using grpo::rewards::math::verify_options;
constexpr verdict C = verdict::correct;
constexpr verdict I = verdict::incorrect;
constexpr verdict U = verdict::unparseable_gold;

const char* name(verdict v) {
  return v == C ? "correct" : v == I ? "incorrect" : "unparseable_gold";
}

void check(const std::string& gold, const std::string& pred, verdict want,
           const verify_options& opt = {}) {
  const verdict got = verify(gold, pred, opt);
  INFO("gold=" << gold << " pred=" << pred << " got=" << std::string(name(got))
               << " want=" << std::string(name(want)));
  CHECK(got == want);
}

}  // namespace

TEST_CASE("empty boxes never match, not even each other") {
  // Before: both sides fell back to the surrounding text and the identical-text shortcut fired.
  check("\\boxed{}", "\\boxed{}", U);
  check("The answer is \\boxed{}", "The answer is \\boxed{}", U);
  check("\\boxed{ }", "\\boxed{ }", U);
  check("\\boxed{5}", "\\boxed{}", I);
  check("\\boxed{5}", "so \\boxed{} and done", I);
}

TEST_CASE("a gold 'exact \\approx decimal' states the exact value") {
  // Before: the decimal was taken, so a wrong exact value within its rounding matched.
  check("\\frac{1}{3} \\approx 0.333", "\\frac{333}{1000}", I);
  check("\\frac{1}{3} \\approx 0.333", "\\frac{1}{3}", C);
  check("\\sqrt{2} \\approx 1.414", "\\frac{707}{500}", I);
  check("\\sqrt{2} \\approx 1.414", "\\sqrt{2}", C);
  check("x = \\frac{1}{3} \\approx 0.333", "\\frac{333}{1000}", I);
  // The decimal alone stays a rounding of the exact value (float policy unchanged).
  check("\\frac{1}{3}", "0.333", C);
}

TEST_CASE("large magnitudes: a difference of 1 is never lost to a tolerance") {
  // Before: all four said correct (40-digit evaluation, relative agreement 1e-25).
  check("(x+1)^{100}", "(x+1)^{100}+1", I);
  check("100^{30}x", "100^{30}x+1", I);
  check("e^{10000}", "e^{10000}+1", I);
  check("\\sin(10^{9999})", "\\sin(10^{9999}+1)", I);
  check("\\sqrt{2}\\cdot 10^{60}", "\\sqrt{2}\\cdot 10^{60} + 1", I);
  check("e^{-10000} + 1", "1", I);
  check("\\pi + 10^{-200}", "\\pi", I);
  // ... while true identities at the same magnitudes still hold.
  check("(x+1)^{100}", "(1+x)^{100}", C);
  check("(x+1)^{2}", "x^2+2x+1", C);
  check("100^{30}x", "10^{60}x", C);
  check("e^{10000}", "(e^{5000})^2", C);
  check("e^{10000}+1", "1+e^{10000}", C);
  check("\\sin(10^{9999})", "\\sin(10^{9999})", C);
  check("2\\sqrt{2}", "\\sqrt{8}", C);
  check("e^{i\\pi}", "-1", C);
  check("\\sqrt[3]{-2}", "-\\sqrt[3]{2}", C);
}

TEST_CASE("invalid UTF-8 never equals by replacement") {
  // Before: both bytes became '?' and the identical-text shortcut fired.
  check("\xff", "\xfe", U);
  check("12\xff", "12\xfe", U);
  check("12", "12\xfe", I);
  check("\\boxed{12}", "\\boxed{12\xc3}", I);
  // Valid UTF-8 around a correct answer is fine.
  check("12", "\xc3\xa9t\xc3\xa9: \\boxed{12}", C);
}

TEST_CASE("undefined expressions are not answers") {
  // Before: `0/0` and `\infty - \infty` equalled themselves.
  check("0/0", "0/0", U);
  check("\\frac{0}{0}", "\\frac{0}{0}", U);
  check("\\infty-\\infty", "\\infty-\\infty", U);
  check("\\frac{\\infty}{\\infty}", "\\frac{\\infty}{\\infty}", U);
  check("0 \\cdot \\infty", "0 \\cdot \\infty", U);
  check("5", "0/0", I);
  check("\\infty", "\\infty-\\infty", I);
  check("\\infty", "\\infty", C);
  check("-\\infty", "-\\infty", C);
}

TEST_CASE("huge equal values: exact exponent and factorial arithmetic, never false") {
  // Before: size guards made these unequal.
  check("2^{10^8}", "4^{5\\cdot10^7}", C);
  check("2^{10^8}", "4^{5\\cdot10^7}+1", I);
  check("2^{10^8}", "2^{10^8+1}", I);
  check("1000000!", "1000000\\cdot 999999!", C);
  check("1000000!", "999999!", I);
  check("1000000!", "1000001 \\cdot 999999!", I);
  check("\\frac{1000000!}{999998!}", "1000000 \\cdot 999999", C);
  check("6^{10^9}", "2^{10^9} \\cdot 3^{10^9}", C);
  check("6^{10^9}", "2^{10^9} \\cdot 3^{10^9+1}", I);
  check("\\frac{2^{10^8}}{2^{10^8-1}}", "2", C);
  check("-8^{10^7}", "-2^{3\\cdot 10^7}", C);
  check("-8^{10^7}", "2^{3\\cdot 10^7}", I);
}

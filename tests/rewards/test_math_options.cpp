// SPDX-License-Identifier: Apache-2.0
// Grader options of math::verify_options that mirror Math-Verify's verify() arguments:
// float_rounding, strict (strict_variables), allow_set_relation_comp. Oracles: hand-rounded
// decimals and the documented semantics of each option.
#include <doctest/doctest.h>
#include <rewards/math.hpp>

using grpo::rewards::math::verdict;
using grpo::rewards::math::verify;
using grpo::rewards::math::verify_options;

TEST_CASE("float_rounding: decimals equal after rounding both sides to n places") {
  verify_options o;
  CHECK(verify("0.333", "0.3349", o) == verdict::incorrect);  // default: float policy only
  o.float_rounding = 2;
  CHECK(verify("0.333", "0.3349", o) == verdict::correct);   // 0.33 == 0.33
  CHECK(verify("0.333", "0.335", o) == verdict::incorrect);  // 0.33 vs 0.34 (half away)
  CHECK(verify("-0.333", "-0.3349", o) == verdict::correct);
  CHECK(verify("-0.333", "0.3349", o) == verdict::incorrect);
  CHECK(verify("\\pi", "3.1411", o) == verdict::correct);   // 3.14 == 3.14, irrational side
  CHECK(verify("\\pi", "3.146", o) == verdict::incorrect);  // 3.15 vs 3.14
  o.float_rounding = 0;
  CHECK(verify("3", "2.6", o) == verdict::correct);  // only with a decimal side
  CHECK(verify("3", "\\frac{13}{5}", o) == verdict::incorrect);
}

TEST_CASE("strict_variables: renaming the prediction's variables") {
  verify_options o;
  CHECK(verify("x^2+1", "y^2+1", o) == verdict::incorrect);
  CHECK(verify("f(x) = x^2", "f(y) = y^2", o) == verdict::incorrect);
  CHECK(verify("x = 3", "k = 3", o) == verdict::correct);  // assignments compare values
  o.strict_variables = false;
  CHECK(verify("x^2+1", "y^2+1", o) == verdict::correct);
  CHECK(verify("x^2+y", "a^2+b", o) == verdict::correct);
  CHECK(verify("x^2+y", "b^2+a", o) == verdict::incorrect);  // order of names is kept
  CHECK(verify("x^2+1", "y^2+2", o) == verdict::incorrect);
  CHECK(verify("x+y", "z", o) == verdict::incorrect);  // counts differ: no renaming
}

TEST_CASE("allow_pred_relation_vs_gold_set (Math-Verify allow_set_relation_comp)") {
  verify_options o;
  CHECK(verify("(1,2)", "1<x<2", o) == verdict::incorrect);
  CHECK(verify("1<x<2", "(1,2)", o) == verdict::correct);
  o.allow_pred_relation_vs_gold_set = true;
  CHECK(verify("(1,2)", "1<x<2", o) == verdict::correct);
  CHECK(verify("(1,2)", "1<x\\le 2", o) == verdict::incorrect);
}

// SPDX-License-Identifier: Apache-2.0
// Length rules: cosine-scaled reward (open-r1 formula, run in Python as the oracle, plus hand
// values), DAPO / verl / OpenRLHF soft overlong punishment, Kimi group length reward.
#include <rewards/length.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "python_oracle.hpp"

#include <cmath>
#include <numbers>
#include <random>
#include <vector>

using namespace grpo::rewards;
using grpo::rewards::test::python_oracle;
using grpo::index_t;


TEST_CASE("length: cosine reward hand values (max_len 100)" * doctest::test_suite("rewards")) {
  cosine_options o;
  o.max_len = 100;
  // correct, len 0: cos 0 = 1 -> 0.5 + 0.25 * 2 = 1.0; len 100: cos pi = -1 -> 0.5
  CHECK(cosine_scaled_reward(true, 0, o) == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(cosine_scaled_reward(true, 100, o) == doctest::Approx(0.5).epsilon(1e-12));
  // len 50: cos(pi/2) = 0 -> midpoint
  CHECK(cosine_scaled_reward(true, 50, o) == doctest::Approx(0.75).epsilon(1e-12));
  CHECK(cosine_scaled_reward(false, 50, o) == doctest::Approx(-0.75).epsilon(1e-12));
  // wrong: short -> -1, long -> -0.5
  CHECK(cosine_scaled_reward(false, 0, o) == doctest::Approx(-1.0).epsilon(1e-12));
  CHECK(cosine_scaled_reward(false, 100, o) == doctest::Approx(-0.5).epsilon(1e-12));
  // len 20: cos(0.2 pi) = 0.809017 -> 0.5 + 0.25 * 1.809017 = 0.952254
  CHECK(cosine_scaled_reward(true, 20, o) ==
        doctest::Approx(0.5 + 0.25 * (1 + std::cos(0.2 * std::numbers::pi))).epsilon(1e-12));
  // open-r1's test values: 22 characters -> 0.943 / -0.943, 80 characters -> 0.547 / -0.547
  CHECK(cosine_scaled_reward(true, 22, o) == doctest::Approx(0.943).epsilon(1e-3));
  CHECK(cosine_scaled_reward(true, 80, o) == doctest::Approx(0.547).epsilon(2e-3));
  CHECK(cosine_scaled_reward(false, 80, o) == doctest::Approx(-0.547).epsilon(2e-3));
}

TEST_CASE("length: cosine clamping past max_len (TRL) versus open-r1" *
          doctest::test_suite("rewards")) {
  cosine_options o;
  o.max_len = 100;
  CHECK(cosine_scaled_reward(true, 150, o) ==
        doctest::Approx(0.5).epsilon(1e-12));  // clamped: stays at the end point
  CHECK(cosine_scaled_reward(false, 1000, o) == doctest::Approx(-0.5).epsilon(1e-12));
  o.clamp_progress = false;
  // open-r1: progress 1.5 -> cos(1.5 pi) = 0 -> back to the midpoint
  CHECK(cosine_scaled_reward(true, 150, o) == doctest::Approx(0.75).epsilon(1e-12));
  CHECK(cosine_scaled_reward(true, 200, o) == doctest::Approx(1.0).epsilon(1e-12));
  cosine_options bad;
  bad.max_len = 0;
  CHECK_THROWS_WITH_AS(cosine_scaled_reward(true, 1, bad), doctest::Contains("[grpo.bad_option]"),
                       grpo::error);
  CHECK_THROWS_WITH_AS(cosine_scaled_reward(true, -1, o), doctest::Contains("[grpo.bad_value]"),
                       grpo::error);
}

TEST_CASE("length: cosine matches open-r1's Python code on random inputs" *
          doctest::test_suite("rewards")) {
  std::mt19937 g(7);
  std::uniform_int_distribution<int> len(0, 3000), ml(1, 2000), c(0, 1);
  std::uniform_real_distribution<double> v(-2, 2);
  nlohmann::json cases = nlohmann::json::array();
  for (int i = 0; i < 500; ++i) cases.push_back({c(g), len(g), ml(g), v(g), v(g), v(g), v(g)});
  const std::string script = R"PY(
import json, math, sys
out = []
for is_correct, gen_len, max_len, min_w, max_w, min_c, max_c in json.load(sys.stdin):
    # open-r1 get_cosine_scaled_reward, body verbatim
    progress = gen_len / max_len
    cosine = math.cos(progress * math.pi)
    if is_correct:
        min_value = min_c
        max_value = max_c
    else:
        min_value = max_w
        max_value = min_w
    out.append(min_value + 0.5 * (max_value - min_value) * (1.0 + cosine))
print(json.dumps(out))
)PY";
  const nlohmann::json want = python_oracle(script, cases);
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& k = cases[i];
    cosine_options o;
    o.max_len = k[2].get<index_t>();
    o.min_value_wrong = k[3].get<double>();
    o.max_value_wrong = k[4].get<double>();
    o.min_value_correct = k[5].get<double>();
    o.max_value_correct = k[6].get<double>();
    o.clamp_progress = false;
    CHECK(cosine_scaled_reward(k[0].get<int>() == 1, k[1].get<index_t>(), o) ==
          doctest::Approx(want[i].get<double>()).epsilon(1e-12));
  }
}

TEST_CASE("length: DAPO soft overlong punishment (open-r1 tests and Eq. 13)" *
          doctest::test_suite("rewards")) {
  overlong_options o;
  o.max_len = 100;
  o.cache_len = 20;
  CHECK(soft_overlong_reward(50, o) == 0.0);
  CHECK(soft_overlong_reward(80, o) == 0.0);
  CHECK(soft_overlong_reward(90, o) == doctest::Approx(-0.5).epsilon(1e-12));
  CHECK(soft_overlong_reward(100, o) == doctest::Approx(-1.0).epsilon(1e-12));
  CHECK(soft_overlong_reward(110, o) == -1.0);
  // paper setting: 16384 + 4096
  const overlong_options paper;
  CHECK(soft_overlong_reward(16384, paper) == 0.0);
  CHECK(soft_overlong_reward(16384 + 1024, paper) == doctest::Approx(-0.25).epsilon(1e-12));
  CHECK(soft_overlong_reward(30000, paper) == -1.0);
}

TEST_CASE("length: verl and OpenRLHF overlong variants" * doctest::test_suite("rewards")) {
  overlong_options o;
  o.max_len = 100;
  o.cache_len = 20;
  o.penalty_factor = 2.0;
  o.variant = overlong_variant::verl;
  CHECK(soft_overlong_reward(70, o) == 0.0);
  CHECK(soft_overlong_reward(90, o) == doctest::Approx(-1.0).epsilon(1e-12));   // -(10/20) * 2
  CHECK(soft_overlong_reward(120, o) == doctest::Approx(-4.0).epsilon(1e-12));  // no floor: -(40/20) * 2
  o.variant = overlong_variant::openrlhf;
  CHECK(soft_overlong_reward(70, o) == 0.0);
  CHECK(soft_overlong_reward(90, o) == doctest::Approx(-1.0).epsilon(1e-12));
  CHECK(soft_overlong_reward(120, o) == doctest::Approx(-2.0).epsilon(1e-12));  // excess clamped at the cache
  o.variant = overlong_variant::dapo;
  CHECK(soft_overlong_reward(90, o) == doctest::Approx(-1.0).epsilon(1e-12));  // factor scales DAPO too
  CHECK(soft_overlong_reward(120, o) == doctest::Approx(-2.0).epsilon(1e-12));
  // the variants agree with DAPO inside [0, max_len] at factor 1
  o.penalty_factor = 1.0;
  for (index_t L = 0; L <= 100; ++L) {
    o.variant = overlong_variant::dapo;
    const double d = soft_overlong_reward(L, o);
    o.variant = overlong_variant::verl;
    CHECK(soft_overlong_reward(L, o) == doctest::Approx(d).epsilon(1e-12));
    o.variant = overlong_variant::openrlhf;
    CHECK(soft_overlong_reward(L, o) == doctest::Approx(d).epsilon(1e-12));
  }
  overlong_options bad;
  bad.cache_len = 0;
  CHECK_THROWS_WITH_AS(soft_overlong_reward(1, bad), doctest::Contains("[grpo.bad_option]"),
                       grpo::error);
  bad.cache_len = 200;
  bad.max_len = 100;
  CHECK_THROWS_WITH_AS(soft_overlong_reward(1, bad), doctest::Contains("[grpo.bad_option]"), grpo::error);
  CHECK_THROWS_WITH_AS(soft_overlong_reward(-3, o), doctest::Contains("[grpo.bad_value]"),
                       grpo::error);
}

TEST_CASE("length: text length in code points or bytes" * doctest::test_suite("rewards")) {
  CHECK(text_length("abc") == 3);
  CHECK(text_length("\xe4\xb8\xad\xe6\x96\x87") == 2);  // 中文: Python len 2
  CHECK(text_length("\xe4\xb8\xad\xe6\x96\x87", length_unit::bytes) == 6);
  CHECK(text_length("a\xff"
                    "b") == 3);  // invalid byte counts once
  CHECK(text_length("") == 0);
}

TEST_CASE("length: Kimi k1.5 group length reward (open-r1 len_reward)" *
          doctest::test_suite("rewards")) {
  const std::vector<index_t> lens = {10, 20, 30};
  const bool correct[] = {true, false, true};
  const auto r = kimi_length_rewards(lens, correct);
  // lambda = 0.5 - (len - 10) / 20: 0.5, 0, -0.5; wrong -> min(0, lambda)
  REQUIRE(r.size() == 3);
  CHECK(r[0] == doctest::Approx(0.5).epsilon(1e-12));
  CHECK(r[1] == doctest::Approx(0.0).epsilon(1e-12));
  CHECK(r[2] == doctest::Approx(-0.5).epsilon(1e-12));
  const bool wrong[] = {false, false, false};
  const auto w = kimi_length_rewards(lens, wrong);
  CHECK(w[0] == 0.0);
  CHECK(w[2] == doctest::Approx(-0.5).epsilon(1e-12));
  const std::vector<index_t> same = {5, 5};
  const bool two[] = {true, false};
  const auto z = kimi_length_rewards(same, two);
  CHECK(z[0] == 0.0);
  CHECK(z[1] == 0.0);
  const bool one[] = {true};
  CHECK_THROWS_WITH_AS(kimi_length_rewards(lens, one), doctest::Contains("[grpo.shape_mismatch]"),
                       grpo::error);
}

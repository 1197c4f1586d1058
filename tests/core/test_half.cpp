// SPDX-License-Identifier: Apache-2.0
#include <grpo/core/half.hpp>

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

// Oracle: every 16-bit pattern widened to float and narrowed back must give the same bits (exact
// round trip proves the widening is exact and injective); values are checked against the IEEE
// definition computed with ldexp in double.
TEST_CASE("half: bfloat16 widening is exact for all 65536 patterns" * doctest::test_suite("core")) {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const auto h = grpo::bfloat16::from_bits(static_cast<std::uint16_t>(b));
    const float f = h;
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    CHECK((u >> 16) == b);
    CHECK((u & 0xffffu) == 0u);
    if (!std::isnan(f)) CHECK(grpo::bfloat16(f).bits == b);
  }
}

static double fp16_reference(std::uint16_t b) {
  const int s = b >> 15, e = (b >> 10) & 31, m = b & 1023;
  double v;
  if (e == 31) v = m ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else if (e == 0) v = std::ldexp(static_cast<double>(m), -24);
  else v = std::ldexp(1.0 + m / 1024.0, e - 15);
  return s ? -v : v;
}

TEST_CASE("half: float16 widening is exact for all 65536 patterns" * doctest::test_suite("core")) {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const float f = grpo::float16::from_bits(static_cast<std::uint16_t>(b));
    const double ref = fp16_reference(static_cast<std::uint16_t>(b));
    if (std::isnan(ref)) {
      CHECK(std::isnan(f));
    } else {
      CHECK(static_cast<double>(f) == ref);
      CHECK(grpo::float16(f).bits == b);
    }
  }
}

TEST_CASE("half: narrowing rounds to nearest even" * doctest::test_suite("core")) {
  // bf16 has 8 significant bits: 1 + 2^-8 is a tie between 1 and 1 + 2^-7 -> even (1.0).
  CHECK(static_cast<float>(grpo::bfloat16(1.0f + 0x1p-8f)) == 1.0f);
  CHECK(static_cast<float>(grpo::bfloat16(1.0f + 0x1p-8f + 0x1p-20f)) == 1.0f + 0x1p-7f);
  CHECK(static_cast<float>(grpo::bfloat16(1.0f + 3 * 0x1p-8f)) == 1.0f + 0x1p-6f);  // tie -> even
  // fp16: 1 + 2^-11 ties to 1; 65520 overflows to inf; 2^-25 ties to 0, just above rounds to 2^-24.
  CHECK(static_cast<float>(grpo::float16(1.0f + 0x1p-11f)) == 1.0f);
  CHECK(static_cast<float>(grpo::float16(1.0f + 3 * 0x1p-11f)) == 1.0f + 0x1p-9f);
  CHECK(std::isinf(static_cast<float>(grpo::float16(65520.0f))));
  CHECK(static_cast<float>(grpo::float16(65519.0f)) == 65504.0f);
  CHECK(static_cast<float>(grpo::float16(0x1p-25f)) == 0.0f);
  CHECK(static_cast<float>(grpo::float16(0x1p-25f * 1.0001f)) == 0x1p-24f);
  CHECK(std::isnan(static_cast<float>(grpo::bfloat16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isnan(static_cast<float>(grpo::float16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(static_cast<float>(grpo::bfloat16(-std::numeric_limits<float>::infinity())) ==
        -std::numeric_limits<float>::infinity());
}

TEST_CASE("half: narrowing of random floats matches a double-precision rounding oracle" * doctest::test_suite("core")) {
  // Oracle: the nearest fp16 value found by scanning neighbours in double (ties to even bits).
  std::uint32_t state = 12345;
  for (int i = 0; i < 20000; ++i) {
    state = state * 1664525u + 1013904223u;
    const float f = std::ldexp(static_cast<float>(state >> 8) / 16777216.0f, static_cast<int>(state % 40) - 26);
    const std::uint16_t got = grpo::float16(f).bits;
    const double d = f, here = fp16_reference(got);
    const double up = fp16_reference(static_cast<std::uint16_t>(got + 1));
    const double down = got > 0 ? fp16_reference(static_cast<std::uint16_t>(got - 1)) : -1.0;
    CHECK(std::abs(here - d) <= std::abs(up - d));
    if (got > 0) CHECK(std::abs(here - d) <= std::abs(down - d));
  }
}

// SPDX-License-Identifier: Apache-2.0
#include <grpo/core/error.hpp>

#include <doctest/doctest.h>

#include <string>

namespace {
void check_positive(double x) { GRPO_EXPECTS(x > 0, bad_value, "x must be positive, got " + std::to_string(x)); }
}  // namespace

TEST_CASE("error: GRPO_EXPECTS throws grpo::error with id, message and location" * doctest::test_suite("core")) {
  CHECK_NOTHROW(check_positive(1.0));
  try {
    check_positive(-2.0);
    FAIL("no throw");
  } catch (const grpo::error& e) {
    const std::string w = e.what();
    CHECK(e.code() == grpo::errc::bad_value);
    CHECK(w.rfind("[grpo.bad_value] x must be positive, got -2.000000 (", 0) == 0);
    CHECK(w.find("test_error.cpp:") != std::string::npos);
  }
  // grpo::error is a std::invalid_argument, so generic handlers catch it.
  CHECK_THROWS_AS(check_positive(0.0), std::invalid_argument);
}

TEST_CASE("error: every id has its documented text" * doctest::test_suite("core")) {
  using grpo::errc;
  CHECK(grpo::to_string(errc::shape_mismatch) == "shape_mismatch");
  CHECK(grpo::to_string(errc::bad_option) == "bad_option");
  CHECK(grpo::to_string(errc::bad_value) == "bad_value");
  CHECK(grpo::to_string(errc::out_of_range) == "out_of_range");
  CHECK(grpo::to_string(errc::bad_dtype) == "bad_dtype");
  CHECK(grpo::to_string(errc::bad_device) == "bad_device");
  CHECK(grpo::to_string(errc::cuda) == "cuda");
  CHECK(grpo::to_string(errc::collective) == "collective");
  CHECK(grpo::to_string(errc::sandbox_unavailable) == "sandbox_unavailable");
  const auto f = [] { GRPO_THROW(cuda, "launch failed"); };
  CHECK_THROWS_WITH_AS(f(), doctest::Contains("[grpo.cuda] launch failed"), grpo::error);
}

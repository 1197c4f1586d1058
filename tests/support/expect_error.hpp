// SPDX-License-Identifier: Apache-2.0
/// @file expect_error.hpp
/// @brief expect_error(label, f, code, field): f must throw grpo::error with that id AND a message
///        naming the field (an error test that accepts any grpo::error cannot tell which check
///        fired). For the table-driven validator tests.
#pragma once

#include <grpo/core/error.hpp>

#include <doctest/doctest.h>

#include <functional>
#include <string>

namespace grpo_test {

inline void expect_error(const std::string& label, const std::function<void()>& f,
                         grpo::errc code, const std::string& field) {
  INFO("case: ", label);
  bool threw = false;
  try {
    f();
  } catch (const grpo::error& e) {
    threw = true;
    const std::string what = e.what();
    INFO("what(): ", what);
    CHECK(e.code() == code);
    CHECK(what.find("[grpo." + std::string(grpo::to_string(code)) + "]") != std::string::npos);
    CHECK(what.find(field) != std::string::npos);
  }
  CHECK_MESSAGE(threw, "no grpo::error thrown");
}

}  // namespace grpo_test

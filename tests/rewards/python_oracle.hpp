// SPDX-License-Identifier: Apache-2.0
/// @file python_oracle.hpp
/// @brief Test helper of the rule-reward suites (test_format, test_length, test_repetition): runs
///        a Python script in the sandbox with `input` (JSON) on stdin and returns its JSON stdout,
///        so that the peers' own Python functions serve as differential oracles.
#pragma once

#include <rewards/code_exec.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>

namespace grpo::rewards::test {

/// `python3 -I -c script` with `input.dump()` on stdin (120 s wall, 60 s CPU, 1 GiB, 64 MiB of
/// output); REQUIREs that python3 is found and exits 0, then parses stdout as JSON.
inline nlohmann::json python_oracle(const std::string& script, const nlohmann::json& input) {
  code_exec_options o;
  o.run.wall_seconds = 120;
  o.run.cpu_seconds = 60;
  o.run.memory_bytes = std::size_t{1} << 30;
  o.run.output_bytes = std::size_t{64} << 20;
  const std::string py = detail::resolve_program("python3", o.search_path);
  REQUIRE_MESSAGE(!py.empty(), "python3 is needed for the peer oracle (scripts/install-deps.sh)");
  const run_result r = run_sandboxed({py, "-I", "-c", script}, input.dump(), "/tmp", o.run, o);
  REQUIRE_MESSAGE(r.status == run_status::exited_ok, r.err);
  return nlohmann::json::parse(r.out);
}

}  // namespace grpo::rewards::test

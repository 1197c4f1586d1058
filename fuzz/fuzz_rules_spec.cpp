// SPDX-License-Identifier: Apache-2.0
/// @file fuzz_rules_spec.cpp
/// @brief Rule-spec parsing (grpo-reward --rules, make_reward_set): arbitrary text either parses
///        into (name, weight) pairs with finite weights or throws grpo::error; never a crash.
#include <rewards/compose.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" const char* __lsan_default_suppressions() {
  return "leak:libcln.so\nleak:GiNaC::dynallocate\n";
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view spec(reinterpret_cast<const char*>(data), size);
  using namespace grpo::rewards;
  try {
    const auto pairs = parse_rule_spec(spec);
    for (const auto& [name, w] : pairs) {
      if (name.empty() || name.size() > spec.size()) __builtin_trap();
      if (!std::isfinite(w)) __builtin_trap();
    }
  } catch (const grpo::error&) {
  }
  try {
    const auto set = make_reward_set(spec);
    (void)set.size();
  } catch (const grpo::error&) {
  }
  return 0;
}

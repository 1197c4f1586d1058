// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: R1 format rules, tag count, reasoning steps and reasoning-span helpers on
// arbitrary bytes. Properties: results in range, strict layout implies the open-r1 regex.
#include <rewards/format.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view s(reinterpret_cast<const char*>(data), size);
  using namespace grpo::rewards;
  const double strict = strict_format_reward(s);
  const double lenient = lenient_format_reward(s);
  const double tags = tag_count_reward(s);
  if (strict != 0.0 && strict != 1.0) __builtin_trap();
  if (lenient != 0.0 && lenient != 1.0) __builtin_trap();
  if (strict == 1.0 && lenient != 1.0) __builtin_trap();  // strict layout is a case of the regex
  if (tags < 0.0 || tags > 1.0) __builtin_trap();
  strict_format_options loose;
  loose.allow_empty_answer = loose.allow_empty_think = loose.allow_trailing_whitespace = true;
  if (strict == 1.0 && strict_format_reward(s, loose) != 1.0) __builtin_trap();
  if (const auto p = parse_strict_r1(s, loose)) {
    if (p->think.data() < s.data() || p->answer.data() + p->answer.size() > s.data() + s.size())
      __builtin_trap();
  }
  reasoning_steps_options ml;
  ml.numbered_items_at_line_start = true;
  if (count_reasoning_steps(s, ml) > s.size()) __builtin_trap();  // every match consumes a byte
  const double steps = reasoning_steps_reward(s);
  if (steps < 0.0 || steps > 1.0) __builtin_trap();
  const std::string_view r = reasoning_text(s);
  if (r.size() > s.size()) __builtin_trap();
  (void)after_reasoning(s);
  return 0;
}

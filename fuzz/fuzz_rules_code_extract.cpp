// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: fenced code-block extraction and the output comparison policies on arbitrary
// bytes (nothing is executed). Properties: the block is a sub-view of the input; exact, trim_lines
// and tokens are reflexive; exact equality implies token equality.
#include <rewards/code_exec.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace grpo::rewards;
  const std::string_view s(reinterpret_cast<const char*>(data), size);
  for (code_language lang : {code_language::python, code_language::cpp}) {
    const std::string_view b = extract_code_block(s, lang);
    if (!b.empty() && (b.data() < s.data() || b.data() + b.size() > s.data() + s.size()))
      __builtin_trap();
  }
  const std::size_t half = size / 2;
  const std::string_view a = s.substr(0, half), c = s.substr(half);
  for (output_match m : {output_match::exact, output_match::trim_lines, output_match::tokens}) {
    if (!outputs_match(a, a, m)) __builtin_trap();
    (void)outputs_match(a, c, m);
  }
  // open-r1 strips the actual output but not the expected one, so it is not even reflexive
  // ("\n1" does not match itself); only check that it runs.
  (void)outputs_match(a, c, output_match::open_r1);
  // exact equality implies every other policy
  if (outputs_match(a, c, output_match::exact) && !outputs_match(a, c, output_match::tokens))
    __builtin_trap();
  return 0;
}

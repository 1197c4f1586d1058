// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: lenient UTF-8 decoding, code-point length and lower-casing on arbitrary bytes.
// Properties: decoding makes progress and stays in bounds; to_lower always yields valid UTF-8 with
// the same number of code points.
#include <rewards/utf8.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace u = grpo::rewards::utf8;
  const std::string_view s(reinterpret_cast<const char*>(data), size);
  std::size_t n = 0;
  for (std::size_t i = 0; i < s.size();) {
    const u::decoded d = u::decode(s, i);
    if (d.len < 1 || d.len > 4 || i + static_cast<std::size_t>(d.len) > s.size()) __builtin_trap();
    (void)u::script_of(d.cp);
    i += static_cast<std::size_t>(d.len);
    ++n;
  }
  if (n != u::length(s)) __builtin_trap();
  const std::string low = u::to_lower(s);
  utf8proc_int32_t cp = 0;
  std::size_t m = 0;
  for (std::size_t i = 0; i < low.size();) {
    const auto r = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(low.data() + i),
                                    static_cast<utf8proc_ssize_t>(low.size() - i), &cp);
    if (r <= 0) __builtin_trap();  // invalid UTF-8 in the output
    i += static_cast<std::size_t>(r);
    ++m;
  }
  if (m != n) __builtin_trap();
  return 0;
}

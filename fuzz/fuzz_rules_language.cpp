// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: language-consistency word counting (UTF-8 decoding, script table, math/code
// span removal) on arbitrary bytes. Properties: target <= total, reward in [0, 1].
#include <rewards/language.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  using namespace grpo::rewards;
  static const char* const langs[] = {"en", "zh", "ja", "ko", "ru", "ar", "hi", "th"};
  const script_set target = target_scripts(langs[data[0] % 8]);
  language_options opt;
  opt.strip_math = (data[0] & 0x10) == 0;
  opt.strip_code = (data[0] & 0x20) == 0;
  opt.reasoning_only = (data[0] & 0x40) == 0;
  const std::string_view s(reinterpret_cast<const char*>(data + 1), size - 1);
  const word_counts wc = count_words(s, target, opt);
  if (wc.target > wc.total || wc.total > s.size()) __builtin_trap();
  const double r = language_consistency_reward(s, target, opt);
  if (!(r >= 0.0 && r <= 1.0)) __builtin_trap();
  return 0;
}

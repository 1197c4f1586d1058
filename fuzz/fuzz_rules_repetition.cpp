// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: n-gram repetition penalty (lower-casing, Python whitespace split, CJK
// characters, rolling hash) on arbitrary bytes. Property: max_penalty <= result <= 0.
#include <rewards/repetition.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  using namespace grpo::rewards;
  repetition_options opt;
  opt.ngram_size = 1 + data[0] % 6;
  opt.max_penalty = -1.0;
  opt.words = (data[0] & 0x80) ? repetition_words::cjk_characters : repetition_words::whitespace;
  const std::string_view s(reinterpret_cast<const char*>(data + 1), size - 1);
  const double r = repetition_penalty_reward(s, opt);
  if (!(r >= -1.0 && r <= 0.0)) __builtin_trap();
  const auto ids = word_ids(s, opt.words);
  if (ids.size() > s.size()) __builtin_trap();
  return 0;
}

// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: extract_answer on arbitrary bytes, with every mode combination; checks the
// documented post-conditions (bounded, trimmed answer) on each result.
#include <rewards/math.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  namespace rm = grpo::rewards::math;
  const unsigned flags = data[0];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  rm::extract_options opt;
  opt.strip_think = flags & 1u;
  opt.boxed = flags & 2u;
  opt.answer_phrase = flags & 4u;
  opt.markdown_bold = flags & 8u;
  opt.latex_delimiters = flags & 16u;
  opt.whole_string = flags & 32u;
  opt.max_answer_chars = (flags & 64u) ? 16 : 2048;
  const auto r = rm::extract_answer(text, opt);
  if (r) {
    if (r->empty() || r->size() > opt.max_answer_chars) std::abort();
    if (rm::detail::is_space(r->front()) || rm::detail::is_space(r->back())) std::abort();
  }
  return 0;
}

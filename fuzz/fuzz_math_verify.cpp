// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: verify(gold, pred) on arbitrary bytes split at the first NUL (or halfway).
// verify is noexcept: any escaping exception terminates and is reported by the fuzzer. Also checks
// that an answer compared with itself is never graded incorrect.
#include <rewards/math.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace rm = grpo::rewards::math;
  const char* p = reinterpret_cast<const char*>(data);
  const void* nul = std::memchr(p, 0, size);
  const std::size_t cut =
      nul ? static_cast<std::size_t>(static_cast<const char*>(nul) - p) : size / 2;
  const std::string_view gold(p, cut);
  const std::string_view pred(p + (nul ? cut + 1 : cut), size - cut - (nul ? 1 : 0));
  rm::verify_options opt;
  opt.budget_steps = 100000;
  (void)rm::verify(gold, pred, opt);
  if (rm::verify(gold, gold, opt) == rm::verdict::incorrect) std::abort();
  return 0;
}

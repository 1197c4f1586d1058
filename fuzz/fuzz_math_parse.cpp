// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: normalize_answer + parse on arbitrary bytes under a step budget; a parsed
// tree must render and be re-parse-stable in size bounds (no crash, no leak, no unbounded work).
#include <rewards/math.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace rm = grpo::rewards::math;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  rm::budget b(200000);
  try {
    const std::string norm = rm::normalize_answer(text, b);
    const auto e = rm::parse(norm, b, 64);
    if (e) {
      const std::string shown = rm::to_string(*e);
      if (shown.empty()) std::abort();
      // Every node costs at least one budget step, so the tree is bounded by the budget.
      if (rm::tree_size(*e) > 200000) std::abort();
      rm::budget eb(100000);
      (void)rm::detail::eval_rational(*e, eb);
    }
  } catch (const rm::budget_exhausted&) {
    // the documented way out when the budget runs out
  }
  return 0;
}

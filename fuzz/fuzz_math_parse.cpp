// SPDX-License-Identifier: Apache-2.0
/// @file fuzz_math_parse.cpp
/// libFuzzer target: normalize_answer + parse on arbitrary bytes under a step budget (no crash,
/// no leak, no unbounded work) plus re-parse stability. The library has no printer back to
/// answer syntax (`to_string` is a Lisp-like debug form the parser does not read), so stability
/// is checked through the normaliser: with n1 = normalize(text) and nk its fixed point under
/// repeated normalize (reached within 4 passes),
///   - when n1 has no `\` and no non-ASCII byte and parse(n1) and parse(nk) both succeed, the
///     two trees are `equivalent` (otherwise a pass can splice a new token out of deleted text,
///     `\righ£t` -> `\right`, and success or the answer may change);
///   - re-parsing n1 is deterministic: parse(n1) twice renders the same tree.
#include <rewards/math.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

[[noreturn]] void fail(const char* what, const std::string& a, const std::string& b) {
  std::fprintf(stderr, "fuzz_math_parse: %s\n  first:  [%s]\n  second: [%s]\n", what, a.c_str(),
               b.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace rm = grpo::rewards::math;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string norm;
  try {
    rm::budget b(200000);
    norm = rm::normalize_answer(text, b);
  } catch (const rm::budget_exhausted&) {
    return 0;  // the documented way out when the budget runs out
  }
  std::string shown;
  bool parsed = false;
  try {
    rm::budget b(200000);
    const auto e = rm::parse(norm, b, 64);
    if (e) {
      parsed = true;
      shown = rm::to_string(*e);
      if (shown.empty()) std::abort();
      // Every node costs at least one budget step, so the tree is bounded by the budget.
      if (rm::tree_size(*e) > 200000) std::abort();
      rm::budget eb(100000);
      (void)rm::detail::eval_rational(*e, eb);
    }
  } catch (const rm::budget_exhausted&) {
    return 0;
  }
  // Stability under re-normalisation. normalize_answer is one pass and not idempotent in
  // general: deleting text can splice a new token (`\righ£t` -> `\right`, dropped by the next
  // pass). Fuzzing found three cases that were bugs and are fixed in normalize.hpp (a stray final
  // backslash hiding `,` / `;`, nested empty groups `{{}}`). So the property is: repeated passes
  // reach a fixed point within a few passes, and when the first normal form and the fixed point
  // both parse, they are the same answer (the verifier's `equivalent`).
  std::string fixed = norm;
  try {
    int passes = 0;
    for (;; ++passes) {
      rm::budget b(200000);
      std::string next = rm::normalize_answer(fixed, b);
      if (next == fixed) break;
      if (passes == 4) fail("normalize_answer reaches no fixed point in 4 passes", fixed, next);
      fixed = std::move(next);
    }
  } catch (const rm::budget_exhausted&) {
    return 0;
  }
  // Splicing needs a deleted command or symbol: compare only texts without `\` or non-ASCII
  // (fuzzing found `\text{(kR\\\!k}`: dropping `\!` leaves an over-escaped `\\k` that the
  // next pass shortens, so the two text nodes differ).
  const bool plain = norm.find('\\') == std::string::npos &&
                     std::all_of(norm.begin(), norm.end(),
                                 [](char ch) { return static_cast<unsigned char>(ch) < 0x80; });
  if (fixed != norm && plain) {
    try {
      rm::budget b(200000);
      const auto e1 = rm::parse(norm, b, 64);
      const auto e2 = rm::parse(fixed, b, 64);
      // Success may change: a pass deletes text and can splice a new token together
      // (`\righ£t` -> `\right`, which the next pass drops as sizing), so only two answers are
      // compared.
      if (e1 && e2) {
        rm::budget cb(200000);
        const rm::verify_options opt;
        if (!rm::equivalent(*e1, *e2, opt, cb))
          fail("re-normalised text parses to a different answer", rm::to_string(*e1),
               rm::to_string(*e2));
      }
    } catch (const rm::budget_exhausted&) {
      return 0;
    }
  }
  // Determinism: a fresh parse of the same text with a fresh budget yields the same tree.
  try {
    rm::budget b(200000);
    const auto e2 = rm::parse(norm, b, 64);
    if (e2.has_value() != parsed) fail("re-parse changed success", norm, norm);
    if (e2 && rm::to_string(*e2) != shown) fail("re-parse changed the tree", shown,
                                                rm::to_string(*e2));
  } catch (const rm::budget_exhausted&) {
    fail("re-parse exhausted a budget the first parse did not", norm, norm);
  }
  return 0;
}

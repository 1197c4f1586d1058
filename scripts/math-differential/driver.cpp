// SPDX-License-Identifier: Apache-2.0
/// @file driver.cpp
/// @brief Differential driver of the math verifier for refactors: reads lines `HEX(gold) HEX(pred)`
///        and prints, for each, the verdict of verify(gold, pred) and, for both strings, what each
///        stage made of it: extract_answer, normalize_answer (bytes and budget steps spent) and
///        parse (every field of every node, budget steps spent, or how it failed), plus
///        eval_rational of the tree. Two builds of this driver (before / after a change) must
///        print the same bytes (scripts/math-differential/run.sh compares them).
#include <rewards/math.hpp>

#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>

namespace {
namespace rm = grpo::rewards::math;

std::string hex(std::string_view s) {
  static const char* d = "0123456789abcdef";
  std::string o;
  o.reserve(2 * s.size());
  for (unsigned char c : s) {
    o += d[c >> 4];
    o += d[c & 15];
  }
  return o;
}

std::string unhex(std::string_view h) {
  std::string o;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) {
    auto v = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
    o += static_cast<char>(v(h[i]) * 16 + v(h[i + 1]));
  }
  return o;
}

/// Every field of every node (to_string omits precision, flags and shape).
void dump(const rm::expr& e, std::string& o) {
  o += "{k" + std::to_string(static_cast<int>(e.k)) + " n" + hex(e.name) + " v" +
       e.value.get_str() + " u" + std::to_string(e.ulp_exp) + " s" + std::to_string(e.sig_digits) +
       " f" + std::to_string(e.lo_closed) + std::to_string(e.hi_closed) +
       std::to_string(e.paren_pair) + std::to_string(e.braced) + " r" + std::to_string(e.rows) +
       "x" + std::to_string(e.cols) + " o";
  for (rm::rel r : e.ops) o += std::to_string(static_cast<int>(r));
  for (const rm::expr& a : e.args) dump(a, o);
  o += "}";
}

void stages(std::string_view s, std::string& o) {
  static const rm::verify_options vo;
  for (const rm::extract_options* opt : {&vo.gold_extraction, &vo.pred_extraction}) {
    const auto x = rm::extract_answer(s, *opt);
    o += x ? " x" + hex(*x) : std::string(" x-");
  }
  std::string n;
  try {
    rm::budget b(400000);
    n = rm::normalize_answer(s, b);
    o += " N" + hex(n) + " b" + std::to_string(400000 - b.left());
  } catch (const rm::budget_exhausted&) {
    o += " N!budget";
    return;
  }
  rm::budget b(400000);
  try {
    const auto e = rm::parse(n, b, 96);
    o += " b" + std::to_string(400000 - b.left());
    if (!e) {
      o += " P-";
      return;
    }
    o += " P";
    dump(*e, o);
    rm::budget eb(100000);
    const auto q = rm::detail::eval_rational(*e, eb);
    o += q ? " Q" + q->get_str() : std::string(" Q-");
  } catch (const rm::budget_exhausted&) {
    o += " P!budget b" + std::to_string(400000 - b.left());
  }
}

}  // namespace

int main() {
  std::ios::sync_with_stdio(false);
  std::string line;
  std::size_t n = 0;
  while (std::getline(std::cin, line)) {
    const auto sp = line.find(' ');
    const std::string gold = unhex(std::string_view(line).substr(0, sp));
    const std::string pred =
        sp == std::string::npos ? std::string() : unhex(std::string_view(line).substr(sp + 1));
    std::string o =
        std::to_string(n++) + " V" + std::to_string(static_cast<int>(rm::verify(gold, pred)));
    o += " |G";
    stages(gold, o);
    o += " |P";
    stages(pred, o);
    std::cout << o << '\n';
  }
}

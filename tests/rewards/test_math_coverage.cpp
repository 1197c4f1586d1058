// SPDX-License-Identifier: Apache-2.0
// Coverage of math::verify built for breadth (issue 14): answers at the end of prose in many
// languages, full-width digits, option letters in prose, numbers in context, several boxes,
// doubled backslashes, named left-hand sides. Every positive has a near miss (another digit,
// another letter, a hedge) that must stay incorrect. Oracles: hand-read answers of each text.
#include <doctest/doctest.h>
#include <rewards/math.hpp>

#include <string>

namespace {

using grpo::rewards::math::verdict;
using grpo::rewards::math::verify;

struct vcase {
  const char* gold;
  const char* pred;
  verdict want;
};
constexpr verdict C = verdict::correct;
constexpr verdict I = verdict::incorrect;

void run(std::initializer_list<vcase> cases) {
  for (const vcase& c : cases) {
    const verdict got = verify(c.gold, c.pred);
    INFO("gold = " << std::string(c.gold) << "  pred = " << std::string(c.pred));
    CHECK(static_cast<int>(got) == static_cast<int>(c.want));
  }
}

}  // namespace

TEST_CASE("multilingual answer anchors and full-width forms") {
  run({
      {"12", "所以答案是 12", C},
      {"12", "所以答案是 13", I},
      {"12", "答案：１２。", C},
      {"12", "答案：１３。", I},
      {"12", "答えは１２です。", C},
      {"12", "정답은 12입니다.", C},
      {"12", "la réponse est 12.", C},
      {"12", "la réponse est 21.", I},
      {"12", "La respuesta es 12.", C},
      {"12", "Die Antwort ist 12.", C},
      {"12", "La risposta è 12.", C},
      {"12", "A resposta é 12.", C},
      {"12", "Ответ: 12", C},
      {"12", "ответ: 15", I},
      {"12", "الإجابة هي 12", C},
      {"12", "उत्तर 12 है", C},
      {"12", "उत्तर 11 है", I},
      // concluding sentences (no anchor): the value after "=" or the only number
      {"300", "12000升/40升/分钟=300分钟。因此，水池中水将在300分钟内被放完。", C},
      {"70", "La réduction est de 30 $. Le coût final est donc de 100 - 30 = 70", C},
      {"70", "La réduction est de 30 $. Le coût final est donc de 100 - 30 = 71", I},
      {"13", "所以一共有3 + 10 = 13只鸟。", C},
      // a dangling sentence with a number is not an answer
      {"3", "The value is 3 apples after we add", I},
  });
}

TEST_CASE("option letters in prose and golds with the option text") {
  run({
      {"C", "so I pick C.", C},
      {"C", "so I pick D.", I},
      {"B", "the correct option is (B)", C},
      {"B", "the correct option is (C)", I},
      {"(D) 7 apples", "D", C},
      {"(D) 7 apples", "C", I},
      {"D", "(D) 7 apples", C},
      {"D", "The answer is for sure D, it can't be A or B", C},
      {"D", "D. it can't be A or B", C},
      {"B", "B。不是 A", C},
      {"C", "réponse est C non A", C},
      {"B", "It's not A because it doesn't make sense, therefore I think it's B", C},
      {"A", "The answer is A or B", I},  // a hedge names no option
      {"A", "I think", I},               // the pronoun is not option I (nor A)
  });
}

TEST_CASE("numbers in context") {
  run({
      {"3000.5", "The answer is 3,000.5km²", C},
      {"3000.5", "The answer is 3,000.6km²", I},
      {"2.5", "La réponse est 2,5 €", C},
      {"2.5", "La réponse est 2,6 €", I},
      {"2500", "La réponse est 2,500 €", C},  // three digits: thousands
      {"7", "So the answer is 7\\", C},
      {"25\\%", "The answer is 25%.", C},
      {"25\\%", "The answer is 26%.", I},
  });
}

TEST_CASE("answers in prose without a box") {
  run({
      {"3/4", "the answer is 3/4.<|im_end|>", C},
      {"3/4", "the answer is 3/4.<|im_end|><|im_start|>user\nthe answer is 5", C},
      {"x", "Final Answer: The final answer is $x$. I hope it is correct.", C},
      {"x", "Final Answer: The final answer is $y$. I hope it is correct.", I},
      {"12", "The result is **12**", C},
  });
}

TEST_CASE("several boxes and doubled backslashes") {
  run({
      {"2,5", "\\boxed{2} red and \\boxed{5} blue", C},
      {"2,6", "\\boxed{2} red and \\boxed{5} blue", I},
      {"3", "\\boxed{2} is wrong, the answer is \\boxed{3}", C},
      {"2,3", "\\boxed{2} is wrong, the answer is \\boxed{3}", I},
      {"\\\\boxed{7}", "7", C},
      {"\\\\frac{1}{2}", "0.5", C},
      {"\\\\boxed{7}", "8", I},
  });
}

TEST_CASE("named left-hand sides and ratios") {
  run({
      {"3:4", "$AB:CD = 3:4$", C},
      {"3:4", "$AB:CD = 4:3$", I},
      {"3:4", "6:8", C},
      {"\\frac{2}{\\sqrt5}", "$\\frac{PQ}{QR} = \\frac{2}{\\sqrt5}$", C},
      {"\\frac{2}{\\sqrt5}", "$\\frac{PQ}{QR} = \\frac{2}{\\sqrt3}$", I},
      {"1", "$|AB| = 1$", C},
      {"1 < g(t) < 3", "(1,3)", C},
      {"1 < g(t) < 3", "(1,4)", I},
      {"12:00", "1:00", verdict::unparseable_gold},  // a clock time is not a ratio
  });
}

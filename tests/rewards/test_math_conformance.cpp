// SPDX-License-Identifier: Apache-2.0
// Conformance with the peer: (gold, prediction, expected) triples transcribed from Math-Verify's
// own regression suite (huggingface/Math-Verify tests/test_all.py, MIT), where the expected value
// is what Math-Verify 0.8 returns with LatexExtractionConfig(boxed_match_priority=0) +
// ExprExtractionConfig. Cases where we diverge on purpose are listed separately with our verdict
// and the reason (docs/rewards-math.md, "Differences from Math-Verify").
#include <doctest/doctest.h>
#include <rewards/math.hpp>

#include <initializer_list>
#include <string>

namespace {

using grpo::rewards::math::verdict;
constexpr verdict C = verdict::correct;
constexpr verdict I = verdict::incorrect;

struct vcase {
  const char* gold;
  const char* pred;
  verdict want;
};

void run_table(std::initializer_list<vcase> cases) {
  for (const vcase& c : cases) {
    const verdict got = grpo::rewards::math::verify(c.gold, c.pred);
    INFO("gold = " << std::string(c.gold) << "    pred = " << std::string(c.pred));
    CHECK(static_cast<int>(got) == static_cast<int>(c.want));
  }
}

}  // namespace

TEST_CASE("conformance: Math-Verify regression cases" * doctest::test_suite("rewards.math")) {
  run_table({
      {"-5", "-5", C},
      {"7425000", "7,425,000", C},
      {"1000", "1 000", C},
      {"1000", "1000.0", C},
      {"1000.0", "1,000.0", C},
      {"1000.99", "1000,99", C},
      {"0.4", ".4", C},
      {"1000.99", "1,000.99", C},
      {"1000.99", "$1,000.99", C},
      {"1000.99", "1,000.99$", C},
      {"0,111", "0.111", C},
      {"2", "AZYUK2A", I},
      {"10/9", "\\frac{10}{9}", C},
      {"-10/9", "-\\frac{10}{9}", C},
      {"$[0,1)$", "$[0,1)$", C},
      {"$[0,9)$", "$[0,1)$", I},
      {"$(0,9)$", "$[0,9)$", I},
      {"$1$", "$-[0,1)$", I},
      {"$9$", "Answer \\[ 9 \\]", C},
      {"$9$", "Answer $ 9 $", C},
      {"$9$", "Answer $$ 9 $$", C},
      {"$9$", "Answer \\( 9 \\)", C},
      {"$10$", "Answer \\( (9+1) \\)", C},
      {"$10/9$", "Answer $ \\frac{1}{2} \\$ = \\frac{10}{9} $", C},
      {"$1/3$", "$\\frac13 $", C},
      {"$1$", "$\\frac3{3} $", C},
      {"$\\sqrt{3}$", "$\\sqrt3 $", C},
      {"$1/3$", "$\\cfrac{1}{3} $", C},
      {"$1/3$", "$ 1/3 $", C},
      {"$1/3$", "$\\left( \\frac{1}{3} \\right)$", C},
      {"$1/3$", "$\\boxed{\\frac{1}{3}}$", C},
      {"$1/3$", "$\\frac{1}{3} \\text{meters}$", C},
      {"$1/3$", "$\\frac{1}{3} \\textbf{meters}$", C},
      {"$1/3$", "$k = \\frac{1}{3}$", C},
      {"$28\\%$", "28 percent", C},
      {"$28\\%$", "28 pct", C},
      {"$28\\%$", "28 %", C},
      {"$28\\%$", "$28$ %", C},
      {"$28\\%$", "$28$ percent", C},
      {"$28\\%$", "$\\boxed{28}$ pct", C},
      {"$28\\%$", "$\\boxed{28 pct}", C},
      {"$28\\%$", "$\\boxed{28 percent}", C},
      {"$28\\%$", "28", C},
      {"$0.28$", "28", I},
      {"$28/100$", "28", I},
      {"$28$", "28/100", I},
      {"$\\frac{28}{100}$", "28", I},
      {"$28*\\frac{1}{100}$", "28", I},
      {"$2-2p$",
       "Since $x<2$, it follows that $|x-2|=2-x$. If $2-x=p$, then $x=2-p$. Thus "
       "$x-p=\\boxed{2-2p}$.",
       C},
      {"$\\frac{14}{3}$",
       "$f(-2)+f(-1)+f(0)=\\frac{3(-2)-2}{-2-2}+\\frac{3(-1)-2}{-1-2}+\\frac{3(0)-2}{0-2}=\\frac{-"
       "8}{-4}+\\frac{-5}{-3}+\\frac{-2}{-2}=2+\\frac{5}{3}+1=\\boxed{\\frac{14}{3}}$",
       C},
      {"$125$ miles", "The distance is $\\boxed{125\\textnormal{ miles}}.$", C},
      {"$[-1, -\\frac{1}{2}) \\cup (-\\frac{1}{2}, 0) \\cup (0, 1) \\cup (1, \\infty)$",
       "The solution set is $\\boxed{[-1, -\\tfrac12) \\cup (-\\tfrac12, 0) \\cup (0, 1) \\cup (1, "
       "\\infty)}.$",
       C},
      {"$\\sqrt{2}+\\sqrt{5}$", "The answer is $\\boxed{\\sqrt 2+\\sqrt 5}$", C},
      {"$\\frac{9}{4}\\pi$", "Therefore $\\boxed{\\frac94\\pi}$.", C},
      {"x \\in \\boxed{\\{-1\\} \\cup [0,7)}.$", "x \\in \\boxed{\\{-1\\} \\cup [0,7)}.$", C},
      {"$x >= 5$", "Therefore $x \\geq 5$ is the solution.", C},
      {"$x < 3$", "We find that $x \\lt 3$.", C},
      {"$x \\leq 2$", "Thus $x <= 2$ is our answer.", C},
      {"$x > 5$", "Therefore $x \\gt 5$ is the solution.", C},
      {"$x != 3$", "We find that $x \\neq 3$.", C},
      {"$x > 5$", "Therefore $x < 5$ is the solution.", I},
      {"$x \\geq 5$", "The solution is $x \\leq 5$", I},
      {"$x \\neq 5$", "The solution is $x != 5$", C},
      {"$x \\geq 5$", "$5 \\leq x$", C},
      {"$x = 11$", "$x = 5+5+1 = 7 =11$", C},
      {"$7 = 11a+c$", "$11a+c$", I},
      {"$x = 1/3$", "$x = 5+5+1 = 1/3 \\approx 11$", C},
      {"$11$", "$x\\approx11$", C},
      {"$1/3$", "$x=1/3\\approx1.3$", C},
      {"$x < 1$", "$x > -1$", I},
      {"$x <= 1$", "$-x >= -1$", C},
      {"$a +3z = 0$", "$0$", I},
      {"$1 = \\zzz = x = 0$", "$0$", C},
      {"$a^2 + b = 0$", "$0$", I},
      {"$k=1$", "$1$", C},
      {"$1$", "$k=1$", C},
      {"$z = 1 + 1 = 2$", "$z = 3+3 = 2$", C},
      {"$\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}$",
       "The identity matrix is $ \\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix} $.", C},
      {"$\\begin{bmatrix}0 & 0 \\\\0 & 0\\end{bmatrix}$",
       "Here is a zero matrix: $ \\begin{pmatrix}0 & 0 \\\\0 & 0\\end{pmatrix} $", C},
      {"$\\begin{pmatrix}\\frac{1}{2} & \\frac{3}{4} \\\\ \\frac{5}{6} & "
       "\\frac{7}{8}\\end{pmatrix}$",
       "Matrix with fractions: $ \\begin{pmatrix}\\frac{1}{2} & \\frac{3}{4} \\\\ \\frac{5}{6} & "
       "\\frac{7}{8}\\end{pmatrix} $",
       C},
      {"$\\begin{pmatrix}6 & 8 \\\\ 10 & 12\\end{pmatrix}$",
       "The sum is $\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} + \\begin{pmatrix}5 & 6 \\\\ 7 "
       "& 8\\end{pmatrix}$",
       C},
      {"$\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}$",
       "When multiplying by identity: $\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix} "
       "\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}$",
       C},
      {"$\\frac{1}{12}$", "$0.0833333333333333$", C},
      {"$(1,\\frac{9}{2})$", "$(1,4.5)$", C},
      {"$\\frac{x+2}{7}$", "$\\frac{x}{7}+\\frac{2}{7}$", C},
      {"$34x+45y-20z+100=0$", "$-34x-45y+20z-100=0$", C},
      {"$\\frac{\\sqrt{\\sqrt{11}+\\sqrt{194}}}{15+2\\sqrt{33}}$",
       "$\\frac{\\sqrt{\\sqrt{11}+\\sqrt{194}}}{2\\sqrt{33}+15}$", C},
      {"$(a+5)(b+2)$", "$(+5)(b+2)$", I},
      {"$2$", "$\\frac{1+\\sqrt{5}}{2}$", I},
      {"$4$", "$\\frac{34}{16}+\\frac{\\sqrt{1358}}{16}$", I},
      {"$1\\sqrt{19}$", "$1$", I},
      {"$x+2n+1$", "$x+1$", I},
      {"$[0,1)$",
       "Combining these conditions, we find that the domain of $q(x)$ is the interval $(0, 1)$. "
       "Final Answer: The final answer is $(0, 1)$. I hope it is correct.",
       I},
      {"$(7,6)$", "So, the ordered pair $(x, y)$ that solves the system is $(7, 6)$.", C},
      {"$34$", "Final Answer: The largest $n$ is 34.", C},
      {"$10455$",
       "$0.04 \\cdot 10,000 \\cdot \\frac{1}{2} = \\boxed{200}$ So ... $0.05 \\cdot 10,200 \\cdot "
       "\\frac{1}{2} = \\boxed{255}$ So ... Final Answer: The final answer is $10,455$. I hope it "
       "is correct.",
       C},
      {"$(3,1)$", "${1,3}$", I},
      {"$\\left( \\frac{4}{3}, -\\frac{1}{3} \\right)$",
       "Thus, $(t,u) = \\boxed{\\left( \\frac{4}{3}, -\\frac{1}{3} \\right)}.$", C},
      {"$(\\tfrac{27}{8},\\tfrac{15}{8})$",
       "Therefore, the point is $\\boxed{(0, 0)}$. Final Answer: The final answer is $(0, 0)$.", I},
      {"$20\\%$",
       "$$\\frac{1}{5} \\times 100\\% = \\boxed{20\\%}$$ Final Answer: The final answer is "
       "$20\\%$. "
       "I hope it is correct.",
       C},
      {"$7.78$",
       "$\\frac{70}{9} \\approx 7.78$ So, Anna pays approximately $7.78 for her fudge. Final "
       "Answer: The final answer is 7.78.",
       C},
      {"$x-2y+z-1=0$",
       "$$-1(x-1)+2(y-1)+1(z-1)=0\\Rightarrow\\boxed{x-2y+z-1=0}.$$ Final Answer: The final answer "
       "is $x-2y+z-1=0$. I hope it is correct.",
       C},
  });
}

TEST_CASE("conformance: Math-Verify extraction and set/relation cases" *
          doctest::test_suite("rewards.math")) {
  run_table({
      {"\\(\\boxed{\\text{C}}\\).", "$\\boxed{\\text{(C)}}.$", C},
      {" So the answer is: \\[ \\boxed{11111111100} \\]",
       "is $\\boxed{11,\\! 111,\\! 111,\\! 100}$", C},
      {" So the answer is: \\[ \\boxed{32349} \\]", "is $\\boxed{32,\\! 349}$", C},
      {" So the answer is: \\[ \\boxed{32349} \\]", "is $\\boxed{32, 349}$", I},
      {"Thus, the domain of the function \\( f(x) \\) is: \\[ \\boxed{(2, 12) \\cup (12, 102)} \\]",
       "Thus, the answer is $x \\in \\boxed{(2,12) \\cup (12,102)}$", C},
      {"$\\text{E}$", "$E$", C},
      {"$\\boxed{1}\\boxed{2}$", "$\\boxed{1,2}$", C},
      {"so the solutions are $n = \\boxed{1,-2}.$",
       "<think> lots of work </think> Thus, the integers \\( n \\) such that \\( f(n) = n \\) are: "
       "\\[ \\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}. \\]",
       C},
      {"4.123105625617661", "$\\sqrt{17}$", C},
      {"$\\frac{1}{3}$", "$\\frac{1}{3}.$", C},
      {"$\\frac{1}{3}$", "The answer is $\\frac{1}{3}.$", C},
      {"$\\frac{1}{3}$", "$$\\frac{1}{3}.$$", C},
      {"$\\frac{1}{3}$", "\\[\\frac{1}{3}.\\]", C},
      {"$\\frac{1}{3}$", "$\\frac{1}{3},$", C},
      {"$-2 \\le x \\le 7$", "$x \\in [-2,7]$", C},
      {"$x \\in [-2,7]$", "$-2 \\le x \\le 7$", I},
  });
}

TEST_CASE("conformance: Hendrycks MATH is_equiv tests" * doctest::test_suite("rewards.math")) {
  // hendrycks/math modeling/math_equivalence_test.py (MIT). Agreeing cases:
  run_table({
      {"\\tfrac{1}{2} + \\frac1{72}", "\\\\frac{1}{2} + 2/3", I},
      {"10, 4, 2", "4, 12, 2", I},
      {"\\tfrac{1}{2} +\\! \\frac1{72}", "\\\\dfrac{1}{2} +\\frac{1}{72}", C},
      {"10\\text{ units}", "10 ", C},
      {"10\\text{ units}", "100 ", I},
      {"10", "\\$10", C},
      {"\\left(x-2\\right)\\left(x+2\\right)", "(x-2)(x+2)", C},
      {"0.1", ".1", C},
      {"10\\%", "10", C},
      {"10\\sqrt{3} + \\sqrt4", "10\\sqrt3 + \\sqrt{4}", C},
      {"\\frac34i", "\\frac{3}{4}i", C},
      {"\\tfrac83", "\\frac{8}{3}", C},
      {"5x - 7y + 11z + 4 = 0", "x + y - z + 2 = 0", I},
      {"1/2", "\\frac{1}{2}", C},
  });
  // Divergence: Hendrycks compares lists as ordered strings; lists are sets here (Math-Verify).
  run_table({
      {"10, 4, -2", "4, 10, -2", C},
      {"0.1, 4, 2", "4, .1, 2", C},
  });
}

TEST_CASE("conformance: Math-Verify model-output regressions" *
          doctest::test_suite("rewards.math")) {
  // tests/test_all.py "test_math_extraction_edge_cases" (issues #4-#14), long outputs shortened.
  run_table({
      {"$[-3,2]$",
       "Therefore, the domain of the function $\\sqrt{6-x-x^2}$ is the interval between "
       "the roots, which is $\\boxed{[-3, 2]}$. Final Answer: The final answer is $[-3, "
       "2]$. I hope it is correct. I apologize for the mistake in the previous solution."
       " Let me correct it. Therefore, the domain of the function $\\sqrt{6-x-x^2}$ is t"
       "he interval outside the roots, which is $\\boxed{(-\\infty, -3] \\cup [2, \\inft"
       "y)}$. Final Answer: The final answer is $(-\\infty, -3] \\cup [2, \\infty)$. I h"
       "ope it is correct. <|im_start|>user",
       I},
      {"$16386.20$",
       "Rounded to the nearest cent, Paula's investment is worth $\\boxed{\\$16,\\!386.2"
       "0}$ at the end of the 5-year period. The answer is $16,\\!386.20$. I apologize f"
       "or the repetition in my previous responses. Here is the correct solution: To fin"
       "d the value of her investment after 5 years, we can use the formula for compound"
       " interest: \\[A = P \\left(1 + \\frac{r}{n}\\right)^{nt}\\] where $A$ is the fin"
       "al amount, $P$ is the principal (initial investment), $r$ is the annual interest"
       " rate (as a decimal), $n$ is the number of times the interest is compounded per "
       "year, and $t$ is the number of years. In this",
       C},
      {"$120$",
       "Therefore, the volume of rectangular prism $ABCDEFGH$ is $5 \\times 6 \\times 4 "
       "= 120$. Final Answer: The volume of $ABCDEFGH$ is 120. I hope it is correct.",
       C},
      {"12000023",
       "Therefore, we remove this integer from the list and sum the remaining integers: "
       "$85 + (-67) + 12,\\!000,\\!003 + (-3) = 12,\\!000,\\!023$. Final Answer: The fin"
       "al answer is 12,000,023. I hope it is correct. <|im_start|>user",
       C},
      {"$14916$",
       "Therefore, the smallest possible value for $N$ is $14{,}922$. Final Answer: The "
       "smallest possible value of $N$ is $\\boxed{14{,}916}$. I hope it is correct. <|i"
       "m_start|>user",
       C},
      {"$\\\\left(\\\\frac{1}{5},\\\\frac{1}{6}\\\\right)$",
       "Thus, $(p,q) = \\boxed{\\left( \\frac{1}{5}, \\frac{1}{6} \\right)}.$ Final Answ"
       "er: The final answer is $\\left( \\frac{1}{5}, \\frac{1}{6} \\right)$. I hope it"
       " is correct. <|im_start|>user",
       C},
      {"$\\frac{5\\sqrt{42}}{27}$",
       "Substituting this back into the expression, we get: \\begin{align*} \\frac{28\\s"
       "qrt{1050}}{756} &= \\frac{28 \\cdot 10\\sqrt{10.5}}{756} \\\\ &= \\frac{280\\sqr"
       "t{10.5}}{756} \\\\ &= \\frac{10\\sqrt{10.5}}{27}. \\end{align*} Final Answer: Th"
       "e final answer is $\\frac{10\\sqrt{10.5}}{27}$. I hope it is correct.",
       C},
      {"$16386.17$",
       "\\[A \\approx 10000(1.025)^{20} \\approx 16386.169.\\] Rounded to the nearest ce"
       "nt, Paula's investment is worth $\\boxed{\\$16386.17}$ after 5 years. I hope it "
       "is correct. <|im_start|>user",
       C},
      {"So we have the equation $x=\\frac{1}{4}(1-x)$. Solving for $x$ yields $x=1/5$, o"
       "r $\\boxed{20}$ percent.",
       "Therefore, the percentage of people in Mathopolis who are children is $$\\frac{"
       "\\frac{A }{4 }}{A+\\frac{A }{4 }}=\\frac{1 }{5 }=\\boxed{20 \\%}. $$ Final Answe"
       "r: The final answer is $20 \\%$. I hope it is correct. Note: The solution provid"
       "ed assumes that the total number of people",
       C},
  });
}

TEST_CASE("conformance: deliberate divergences from Math-Verify" *
          doctest::test_suite("rewards.math")) {
  run_table({
      // "1,22" is a list {1, 22} for us (MATH writes lists without spaces); Math-Verify's expr
      // extractor reads a decimal comma.
      {"1,22", "1.22", I},
      // A tuple is not a set: Math-Verify accepts (1,3) = {1,3} through its interval fallback.
      {"$(1,3)$", "${1,3}$", I},
      // Answers stated only in prose are not graded by their last number (reward hacking).
      {"$3$", "So, Jane started growing Sphere 3 hours ago. I hope it is correct.", I},
  });
}

// SPDX-License-Identifier: Apache-2.0
// Language consistency: hand-counted words per script, math/LaTeX/code removal, CJK characters as
// words, reasoning scope, adversarial inputs.
#include <rewards/language.hpp>

#include <doctest/doctest.h>

#include <string>

using namespace grpo::rewards;
using grpo::rewards::utf8::script;

TEST_CASE("language: script classification of representative code points" *
          doctest::test_suite("rewards")) {
  using utf8::script_of;
  CHECK(script_of(U'a') == script::latin);
  CHECK(script_of(U'Z') == script::latin);
  CHECK(script_of(U'\u00e9') == script::latin);     // é
  CHECK(script_of(U'\u03b1') == script::greek);     // α
  CHECK(script_of(U'\u0436') == script::cyrillic);  // ж
  CHECK(script_of(U'\u05d0') == script::hebrew);
  CHECK(script_of(U'\u0628') == script::arabic);
  CHECK(script_of(U'\u0915') == script::devanagari);
  CHECK(script_of(U'\u0e01') == script::thai);
  CHECK(script_of(U'\uac00') == script::hangul);    // 가
  CHECK(script_of(U'\u3042') == script::hiragana);  // あ
  CHECK(script_of(U'\u30a2') == script::katakana);  // ア
  CHECK(script_of(U'\u4e2d') == script::han);       // 中
  CHECK(script_of(U'\U00020000') == script::han);   // CJK extension B
  CHECK(script_of(U'7') == script::common);
  CHECK(script_of(U'\u0663') == script::common);  // Arabic-Indic digit: not a letter
  CHECK(script_of(U'\u3002') == script::common);  // 。
  CHECK(script_of(U'\uff0c') == script::common);  // ，
  CHECK(script_of(U'\u2200') == script::common);  // ∀
  CHECK(script_of(U'\u0301') == script::common);  // combining acute: attached by the word counter
  CHECK(script_of(U'\u1200') == script::other);   // Ethiopic: a letter of an unlisted script
}

TEST_CASE("language: word counting by script, CJK characters are words" *
          doctest::test_suite("rewards")) {
  const script_set en = target_scripts("en");
  const script_set zh = target_scripts("zh");
  // 3 Latin words
  auto wc = count_words("Hello, big world!", en);
  CHECK(wc.total == 3);
  CHECK(wc.target == 3);
  // 我们 = 2 Han words, think = 1 Latin word, 这个 = 2 Han words
  wc = count_words("我们 think 这个", zh);
  CHECK(wc.total == 5);
  CHECK(wc.target == 4);
  // a script change inside a run starts a new word: "abcдеф" = 2 words
  wc = count_words("abc\xd0\xb4\xd0\xb5\xd1\x84", en);
  CHECK(wc.total == 2);
  CHECK(wc.target == 1);
  // combining marks stay in the word: "e\u0301te\u0301" is one word
  wc = count_words("e\xcc\x81te\xcc\x81", en);
  CHECK(wc.total == 1);
  CHECK(wc.target == 1);
  // Japanese: kana and kanji all count for "ja"
  wc = count_words(
      "\xe3\x81\x93\xe3\x82\x8c\xe3\x81\xaf\xe6\xbc\xa2\xe5\xad\x97\xe3\x82\xab\xe3\x83\x8a",
      target_scripts("ja"));
  CHECK(wc.total == 7);
  CHECK(wc.target == 7);
  // Korean is spaced: two Hangul words
  wc = count_words("\xec\x95\x88\xeb\x85\x95 \xed\x95\x98\xec\x84\xb8\xec\x9a\x94",
                   target_scripts("ko"));
  CHECK(wc.total == 2);
  CHECK(wc.target == 2);
  // digits and punctuation are not words
  wc = count_words("123 + 456 = 579.", en);
  CHECK(wc.total == 0);
}

TEST_CASE("language: math, LaTeX and code spans are removed" * doctest::test_suite("rewards")) {
  const script_set zh = target_scripts("zh");
  // 计算 (2) + math removed entirely
  auto wc = count_words("计算 $\\frac{a}{b} + x$ 和 $$\\sum_i y_i$$ 以及 \\(z\\) 与 \\[w\\]", zh);
  CHECK(wc.total == 6);  // 计 算 和 以 及 与
  CHECK(wc.target == wc.total);
  // LaTeX command names outside delimiters are not prose
  wc = count_words("所以 \\alpha 等于", zh);
  CHECK(wc.total == 4);
  CHECK(wc.target == 4);
  // fenced and inline code removed
  wc = count_words("看 ```python\nprint('hello world')\n``` 和 `foo bar`", zh);
  CHECK(wc.total == 2);
  CHECK(wc.target == 2);
  // an unmatched $ (a price) is literal: the words after it stay
  wc = count_words("costs $5 and more", target_scripts("en"));
  CHECK(wc.total == 3);
  // options off: LaTeX letters count
  language_options keep;
  keep.strip_math = false;
  wc = count_words("a $b$", target_scripts("en"), keep);
  CHECK(wc.total == 2);
}

TEST_CASE("language: reward is the target fraction of the reasoning" *
          doctest::test_suite("rewards")) {
  // reasoning = "我们 think about 这个" -> words 我 们 think about 这 个 = 6, 4 Han
  const std::string c =
      "<think>我们 think about $x^2$ 这个</think><answer>English answer here</answer>";
  CHECK(language_consistency_reward(c, "zh") == doctest::Approx(4.0 / 6.0).epsilon(1e-12));
  CHECK(language_consistency_reward(c, "en") == doctest::Approx(2.0 / 6.0).epsilon(1e-12));
  language_options all;
  all.reasoning_only = false;
  // whole text (tags are markup, not words): think, about, English, answer, here -> 5 Latin + 4 Han
  CHECK(language_consistency_reward(c, "zh", all) == doctest::Approx(4.0 / 9.0).epsilon(1e-12));
  CHECK(language_consistency_reward("<think>pure English reasoning</think>", "en") == 1.0);
  CHECK(language_consistency_reward("<think>pure English reasoning</think>", "zh") == 0.0);
  // nothing but math: empty_value (0 by default, configurable)
  CHECK(language_consistency_reward("<think>$x=1$ 2+2=4</think>", "en") == 0.0);
  language_options ev;
  ev.empty_value = 1.0;
  CHECK(language_consistency_reward("<think>$x=1$</think>", "en", ev) == 1.0);
  CHECK_THROWS_WITH_AS(language_consistency_reward("x", "xx"),
                       doctest::Contains("[grpo.bad_option]"), grpo::error);
}

TEST_CASE("language: adversarial inputs return a bounded result" * doctest::test_suite("rewards")) {
  const script_set en = target_scripts("en");
  // invalid UTF-8 bytes are U+FFFD (a symbol), never a crash
  auto wc = count_words(
      "ab\xff\xfe"
      "cd\xc3",
      en);
  CHECK(wc.total == 2);
  // 1 MB of unclosed delimiters of every kind: linear scan, everything literal
  std::string s = "$$ \\[ \\( ``` ";
  std::size_t words = 0;
  while (s.size() < (1u << 20)) {
    s += "word ";
    ++words;
  }
  wc = count_words(s, en);
  CHECK(wc.total == words);
  CHECK(wc.target == words);
  // 100k unclosed openers of each kind (the miss cache keeps this linear)
  std::string openers;
  for (int i = 0; i < 100000; ++i) openers += "\\( \\[ x ";
  wc = count_words(openers, en);
  CHECK(wc.total == 100000);
  // 10k nested think tags: markup, not words
  std::string nested;
  for (int i = 0; i < 10000; ++i) nested += "<think>";
  nested += "中";
  const double r = language_consistency_reward(nested, "zh");
  CHECK(r == 1.0);
  std::string cjk;
  for (int i = 0; i < 300000; ++i) cjk += "\xe4\xb8\xad";
  CHECK(count_words(cjk, target_scripts("zh")).total == 300000);
}

// SPDX-License-Identifier: Apache-2.0
/// @file task.hpp
/// @brief The verifiable task of the demo: a generator of arithmetic problems with exact answers,
///        a 23-token vocabulary with the R1 template tags, and the reference completions used by
///        the cold-start SFT.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

namespace r1demo {

/// Token ids. The tags are single tokens, so a completion decodes to exactly the text the
/// R1 format rule reads: "<think>\n...\n</think>\n<answer>\n...\n</answer>".
enum token : int {
  tok_pad = 0,
  tok_bos,
  tok_eos,
  tok_think_open,
  tok_think_close,
  tok_answer_open,
  tok_answer_close,
  tok_newline,
  tok_plus,
  tok_minus,
  tok_times,
  tok_equals,
  tok_space,
  tok_digit0,  // tok_digit0 + d is the digit d
  vocab_size = tok_digit0 + 10
};

/// Text of one token (the special tokens print as their tag, pad and bos print nothing).
inline const char* token_text(int t) {
  static const char* const names[] = {
      "", "", "", "<think>", "</think>", "<answer>", "</answer>", "\n", "+", "-", "*", "=", " "};
  static const char* const digits[] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
  if (t >= tok_digit0 && t < vocab_size) return digits[t - tok_digit0];
  if (t >= 0 && t < tok_digit0) return names[t];
  throw std::out_of_range("r1demo::token_text: token id out of range");
}

/// Decodes ids up to (excluding) the first eos.
inline std::string decode(const int64_t* ids, int64_t n) {
  std::string s;
  for (int64_t i = 0; i < n && ids[i] != tok_eos; ++i) s += token_text(static_cast<int>(ids[i]));
  return s;
}

/// Encodes the characters of a prompt or an answer (digits, operators, '=', '\n', ' ').
inline void encode_chars(const std::string& s, std::vector<int64_t>& out) {
  for (char c : s) {
    if (c >= '0' && c <= '9')
      out.push_back(tok_digit0 + (c - '0'));
    else if (c == '+')
      out.push_back(tok_plus);
    else if (c == '-')
      out.push_back(tok_minus);
    else if (c == '*')
      out.push_back(tok_times);
    else if (c == '=')
      out.push_back(tok_equals);
    else if (c == '\n')
      out.push_back(tok_newline);
    else if (c == ' ')
      out.push_back(tok_space);
    else
      throw std::invalid_argument("r1demo::encode_chars: character outside the vocabulary");
  }
}

/// One problem: "a1 op a2 op ... an =" with its exact integer answer (left to right; only + and -).
struct problem {
  std::vector<int64_t> terms;
  std::string ops;  ///< ops[i] sits between terms[i] and terms[i+1]
  int64_t answer = 0;
  std::string text;             ///< e.g. "3+5+2+7="
  std::vector<int64_t> prompt;  ///< bos + encoded text + newline
  std::string gold;             ///< e.g. "17"
};

/// Task options (the difficulty knobs): operand width, number of terms, operator set.
struct task_options {
  int digits = 1;  ///< operands have exactly `digits` digits (0-9 when 1): fixed prompt length
  int terms = 4;   ///< operands per problem
  std::string ops = "+";  ///< subset of "+-"; one is drawn uniformly per gap
};

/// Generates problems from a seeded RNG. The held-out set is drawn first and every training
/// problem is re-drawn until it is not in that set, so evaluation is on problems never trained on.
class generator {
 public:
  generator(task_options opt, uint64_t seed) : opt_(std::move(opt)), rng_(seed) {
    if (opt_.digits < 1 || opt_.digits > 6)
      throw std::invalid_argument("--digits must be in [1, 6]");
    if (opt_.terms < 2 || opt_.terms > 8) throw std::invalid_argument("--terms must be in [2, 8]");
    if (opt_.ops.empty() || opt_.ops.find_first_not_of("+-") != std::string::npos)
      throw std::invalid_argument("--ops must be a non-empty subset of \"+-\"");
    lo_ = 1;
    for (int i = 1; i < opt_.digits; ++i) lo_ *= 10;
    hi_ = lo_ * 10 - 1;
    if (opt_.digits == 1) lo_ = 0;
  }

  /// Number of distinct problems of this difficulty.
  [[nodiscard]] double space() const {
    return std::pow(static_cast<double>(hi_ - lo_ + 1), opt_.terms) *
           std::pow(static_cast<double>(opt_.ops.size()), opt_.terms - 1);
  }

  /// Draws `n` distinct problems and remembers them as held out.
  std::vector<problem> held_out(int n) {
    if (n > space() / 4)
      throw std::invalid_argument("--heldout larger than a quarter of the problems");
    std::vector<problem> out;
    while (static_cast<int>(out.size()) < n) {
      problem p = draw();
      if (held_.insert(p.text).second) out.push_back(std::move(p));
    }
    return out;
  }

  /// Draws one training problem (never one of the held-out set).
  problem train() {
    for (;;) {
      problem p = draw();
      if (!held_.count(p.text)) return p;
    }
  }

  /// Length of every prompt (bos + a + op + b + '=' + newline).
  [[nodiscard]] int prompt_length() const { return opt_.terms * (opt_.digits + 1) + 2; }

  /// Most characters an answer can have (sign included).
  [[nodiscard]] int answer_length() const {
    const double most = static_cast<double>(hi_) * opt_.terms;
    return static_cast<int>(std::to_string(static_cast<int64_t>(most)).size()) +
           (opt_.ops.find('-') != std::string::npos ? 1 : 0);
  }

  /// The reference completion used by the cold-start SFT: the scratchpad writes the answer's
  /// digits least-significant first (the order a carry propagates), then the answer itself.
  static std::vector<int64_t> reference_completion(const problem& p) {
    std::vector<int64_t> c{tok_think_open, tok_newline};
    std::string rev(p.gold.rbegin(), p.gold.rend());
    encode_chars(rev, c);
    c.insert(c.end(), {tok_newline, tok_think_close, tok_newline, tok_answer_open, tok_newline});
    encode_chars(p.gold, c);
    c.insert(c.end(), {tok_newline, tok_answer_close, tok_eos});
    return c;
  }

 private:
  problem draw() {
    std::uniform_int_distribution<int64_t> operand(lo_, hi_);
    std::uniform_int_distribution<size_t> which(0, opt_.ops.size() - 1);
    problem p;
    for (int i = 0; i < opt_.terms; ++i) {
      p.terms.push_back(operand(rng_));
      if (i > 0) p.ops += opt_.ops[which(rng_)];
    }
    p.answer = p.terms[0];
    p.text = std::to_string(p.terms[0]);
    for (int i = 1; i < opt_.terms; ++i) {
      const char op = p.ops[static_cast<size_t>(i - 1)];
      p.answer += op == '+' ? p.terms[i] : -p.terms[i];
      p.text += op + std::to_string(p.terms[i]);
    }
    p.text += '=';
    p.gold = std::to_string(p.answer);
    p.prompt = {tok_bos};
    encode_chars(p.text + "\n", p.prompt);
    return p;
  }

  task_options opt_;
  std::mt19937_64 rng_;
  int64_t lo_ = 0, hi_ = 0;
  std::unordered_set<std::string> held_;
};

}  // namespace r1demo

// SPDX-License-Identifier: Apache-2.0
/// @file repetition.hpp
/// @brief n-gram repetition penalty (open-r1 `get_repetition_penalty_reward`, Yeo et al. 2025
///        App. C.2) on words or on token ids (TRL's variant), in expected linear time.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <rewards/utf8.hpp>

#include <cstddef>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace grpo::rewards {

/// How text is cut into words for the n-grams.
enum class repetition_words {
  whitespace,  ///< open-r1 "en": `text.lower().split()` (Unicode whitespace, Python semantics)
  /// open-r1 "zh" uses jieba; without a dictionary this splits on whitespace and makes every
  /// Han/Kana character its own word, the usual character-level fallback.
  cjk_characters,
};

/// Parameters of the repetition penalty (open-r1 defaults in its config: n = 3, max_penalty = -1).
struct repetition_options {
  index_t ngram_size = 3;     ///< n of the n-grams, >= 1
  double max_penalty = -1.0;  ///< reward of a text that is one n-gram repeated; must be <= 0
  repetition_words words = repetition_words::whitespace;
};

namespace detail {
/// (1 - unique / total) * max_penalty over the n-grams of `ids`; 0 with fewer than n ids.
/// Windows are hashed with a rolling polynomial hash computed once (O(N)); equal hashes are
/// confirmed by comparing the windows, so the count of distinct n-grams is exact.
template <class Id>
inline double ngram_penalty(std::span<const Id> ids, const repetition_options& opt) {
  const auto n = static_cast<std::size_t>(opt.ngram_size);
  if (ids.size() < n || ids.empty()) return 0.0;
  const std::size_t total = ids.size() - n + 1;
  // Rolling hash H(i) = sum_k mix(ids[i+k]) * B^(n-1-k) mod 2^64.
  constexpr std::uint64_t base = 0x100000001B3ULL;
  const auto mix = [](std::uint64_t x) {  // splitmix64 finaliser: spreads small ids
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
  };
  std::uint64_t top = 1;  // B^(n-1)
  for (std::size_t k = 1; k < n; ++k) top *= base;
  std::vector<std::uint64_t> h(total);
  std::uint64_t cur = 0;
  for (std::size_t k = 0; k < n; ++k) cur = cur * base + mix(static_cast<std::uint64_t>(ids[k]));
  h[0] = cur;
  for (std::size_t i = 1; i < total; ++i) {
    cur = (cur - mix(static_cast<std::uint64_t>(ids[i - 1])) * top) * base +
          mix(static_cast<std::uint64_t>(ids[i + n - 1]));
    h[i] = cur;
  }
  const auto hash = [&](std::size_t i) { return static_cast<std::size_t>(h[i]); };
  const auto eq = [&](std::size_t a, std::size_t b) {
    if (h[a] != h[b]) return false;
    for (std::size_t k = 0; k < n; ++k)
      if (ids[a + k] != ids[b + k]) return false;
    return true;
  };
  std::unordered_set<std::size_t, decltype(hash), decltype(eq)> seen(total, hash, eq);
  for (std::size_t i = 0; i < total; ++i) seen.insert(i);
  const double scaling = 1.0 - static_cast<double>(seen.size()) / static_cast<double>(total);
  return scaling * opt.max_penalty + 0.0;  // + 0.0 turns -0.0 (no repetition) into 0.0
}

inline void check(const repetition_options& opt) {
  GRPO_EXPECTS(opt.ngram_size >= 1, bad_option, "repetition_options.ngram_size must be >= 1");
  GRPO_EXPECTS(opt.max_penalty <= 0.0 && std::isfinite(opt.max_penalty), bad_option,
               "repetition_options.max_penalty must be finite and <= 0 (it is a penalty)");
  GRPO_EXPECTS(static_cast<unsigned>(opt.words) < 2u, bad_option,
               "repetition_options.words: enum value out of range");
}
}  // namespace detail

/// Lower-cased words of `text` as open-r1 cuts them (see repetition_words), each mapped to a dense
/// id (equal words, equal ids).
inline std::vector<std::uint32_t> word_ids(std::string_view text, repetition_words mode) {
  const std::string lower = utf8::to_lower(text);
  std::unordered_map<std::string_view, std::uint32_t> dict;
  std::vector<std::uint32_t> ids;
  const auto emit = [&](std::size_t b, std::size_t e) {
    const auto [it, fresh] = dict.try_emplace(std::string_view(lower).substr(b, e - b),
                                              static_cast<std::uint32_t>(dict.size()));
    ids.push_back(it->second);
  };
  std::size_t start = std::string::npos;  // start of the current word, npos = between words
  utf8::for_each(lower, [&](char32_t c, std::size_t at, std::size_t len) {
    if (utf8::is_space(c)) {
      if (start != std::string::npos) emit(start, at);
      start = std::string::npos;
      return;
    }
    if (mode == repetition_words::cjk_characters && utf8::is_unspaced(utf8::script_of(c))) {
      if (start != std::string::npos) emit(start, at);
      emit(at, at + len);
      start = std::string::npos;
      return;
    }
    if (start == std::string::npos) start = at;
  });
  if (start != std::string::npos) emit(start, lower.size());
  return ids;
}

/// open-r1 repetition penalty on text: words = text.lower().split(); fewer than n words (or empty
/// text) -> 0; else (1 - |distinct n-grams| / |n-grams|) * max_penalty.
/// Example (open-r1 tests): "this this this this this", n = 2 -> 1 - 1/4 -> -0.75.
/// @pre opt.ngram_size >= 1, opt.max_penalty <= 0
/// @post opt.max_penalty <= result <= 0
inline double repetition_penalty_reward(std::string_view text, const repetition_options& opt = {}) {
  detail::check(opt);
  const std::vector<std::uint32_t> ids = word_ids(text, opt.words);
  return detail::ngram_penalty(std::span<const std::uint32_t>(ids), opt);
}

/// TRL's variant: the same penalty over token ids instead of words.
/// @pre opt.ngram_size >= 1, opt.max_penalty <= 0
inline double repetition_penalty_reward(std::span<const std::int64_t> token_ids,
                                        const repetition_options& opt = {}) {
  detail::check(opt);
  return detail::ngram_penalty(token_ids, opt);
}

}  // namespace grpo::rewards

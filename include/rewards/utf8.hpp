// SPDX-License-Identifier: Apache-2.0
/// @file utf8.hpp
/// @brief Lenient UTF-8 decoding, Python-compatible whitespace, lower-casing and Unicode script
///        classification for the rule rewards (utf8proc for categories and case mapping).
#pragma once

#include <utf8proc.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace grpo::rewards::utf8 {

/// One decoded code point and the number of bytes it occupied.
struct decoded {
  char32_t cp;  ///< the code point, U+FFFD for an invalid byte
  int len;      ///< bytes consumed, 1..4 (an invalid sequence consumes exactly one byte)
};

/// Replacement character used for every byte that does not start a valid UTF-8 sequence.
inline constexpr char32_t replacement = 0xFFFD;

/// Decodes the code point starting at byte `pos` of `s`.
/// Invalid or truncated sequences decode as U+FFFD and consume one byte, like Python's
/// `bytes.decode("utf-8", errors="replace")` per offending byte, so every scan stays linear and
/// never reads past the end of `s`.
/// @pre pos < s.size()
/// @post 1 <= result.len <= 4 and pos + result.len <= s.size()
inline decoded decode(std::string_view s, std::size_t pos) noexcept {
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data() + pos);
  const auto n = static_cast<utf8proc_ssize_t>(s.size() - pos);
  // ASCII fast path: the overwhelming majority of model text.
  if (p[0] < 0x80) return {static_cast<char32_t>(p[0]), 1};
  utf8proc_int32_t cp = -1;
  const utf8proc_ssize_t len = utf8proc_iterate(p, n < 4 ? n : 4, &cp);
  if (len <= 0 || cp < 0) return {replacement, 1};
  return {static_cast<char32_t>(cp), static_cast<int>(len)};
}

/// Calls `f(cp, byte_offset, byte_length)` for every code point of `s` (lenient decoding).
template <class F>
inline void for_each(std::string_view s, F&& f) {
  std::size_t i = 0;
  while (i < s.size()) {
    const decoded d = decode(s, i);
    f(d.cp, i, static_cast<std::size_t>(d.len));
    i += static_cast<std::size_t>(d.len);
  }
}

/// Number of code points in `s` (invalid bytes count one each): Python's `len(str)` for text
/// that came from valid UTF-8. This is the "characters" unit of open-r1's length rewards.
/// @post result <= s.size()
inline std::size_t length(std::string_view s) noexcept {
  std::size_t n = 0;
  std::size_t i = 0;
  while (i < s.size()) {
    i += static_cast<std::size_t>(decode(s, i).len);
    ++n;
  }
  return n;
}

/// Python's `str.isspace()` for one code point (the separators of `str.split()` with no argument):
/// ASCII \t \n \v \f \r, the information separators 0x1C..0x1F, space, NEL, NBSP and the Unicode
/// Zs / line / paragraph separators.
constexpr bool is_space(char32_t c) noexcept {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  if (c < 0x85) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/// Unicode general category "Nd" (what Python's `\d` matches in a str pattern).
inline bool is_decimal_digit(char32_t c) noexcept {
  if (c < 0x80) return c >= U'0' && c <= U'9';
  return utf8proc_category(static_cast<utf8proc_int32_t>(c)) == UTF8PROC_CATEGORY_ND;
}

/// Letters (L*) and combining marks (M*): the characters that make up words.
inline bool is_letter_or_mark(char32_t c) noexcept {
  if (c < 0x80) return (c | 0x20) >= U'a' && (c | 0x20) <= U'z';
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
      return true;
    default:
      return false;
  }
}

/// Combining marks only (M*): they extend the script of the preceding letter.
inline bool is_mark(char32_t c) noexcept {
  if (c < 0x300) return false;
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_MC || cat == UTF8PROC_CATEGORY_ME;
}

/// Appends the UTF-8 encoding of `c` to `out` (U+FFFD for values that are not scalar values).
inline void append(std::string& out, char32_t c) {
  utf8proc_uint8_t buf[4];
  auto cp = static_cast<utf8proc_int32_t>(c);
  if (!utf8proc_codepoint_valid(cp)) cp = static_cast<utf8proc_int32_t>(replacement);
  const auto n = utf8proc_encode_char(cp, buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(n));
}

/// Simple (one-to-one) Unicode lower-casing of `s`, re-encoded as valid UTF-8 (invalid bytes become
/// U+FFFD). Python's `str.lower()` uses the full mapping, which differs only for a handful of code
/// points (e.g. U+0130 lower-cases to two code points there and to one here).
/// @post the result is valid UTF-8
inline std::string to_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for_each(s, [&](char32_t c, std::size_t, std::size_t) {
    if (c < 0x80) {
      out.push_back(static_cast<char>((c >= U'A' && c <= U'Z') ? c + 32 : c));
    } else {
      append(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
    }
  });
  return out;
}

/// Writing systems the language rule distinguishes. The classification uses the code-point ranges
/// of Unicode's Scripts.txt for the main blocks of each script (utf8proc exposes categories but
/// not the Script property); everything else is `other`.
enum class script : std::uint8_t {
  common,  ///< not a letter: digits, punctuation, symbols, spaces (never counted as a word)
  latin,
  greek,
  cyrillic,
  armenian,
  hebrew,
  arabic,
  devanagari,
  bengali,
  tamil,
  thai,
  georgian,
  hangul,
  hiragana,
  katakana,
  han,
  other,  ///< a letter of a script not listed above
};

/// Number of enumerators of `script` (for bit masks).
inline constexpr int script_count = static_cast<int>(script::other) + 1;

/// The script of one code point. Non-letters are `common`; combining marks are `common` too (the
/// caller attaches them to the preceding letter).
inline script script_of(char32_t c) noexcept {
  if (c < 0x80) return ((c | 0x20) >= U'a' && (c | 0x20) <= U'z') ? script::latin : script::common;
  if (!is_letter_or_mark(c) || is_mark(c)) {
    // Han ideographs and kana are all letters (Lo/Lm); the iteration mark 々 (Lm) and the
    // prolonged sound mark ー (Lm) are letters as well, so nothing is lost here.
    return script::common;
  }
  struct range {
    char32_t lo, hi;
    script s;
  };
  // Sorted by `lo`; main blocks and their extensions from Scripts.txt (Unicode 15).
  static constexpr range table[] = {
      {0x00C0, 0x024F, script::latin},      {0x0250, 0x02AF, script::latin},
      {0x0370, 0x03FF, script::greek},      {0x0400, 0x052F, script::cyrillic},
      {0x0531, 0x058F, script::armenian},   {0x0591, 0x05FF, script::hebrew},
      {0x0600, 0x06FF, script::arabic},     {0x0750, 0x077F, script::arabic},
      {0x08A0, 0x08FF, script::arabic},     {0x0900, 0x097F, script::devanagari},
      {0x0980, 0x09FF, script::bengali},    {0x0B80, 0x0BFF, script::tamil},
      {0x0E00, 0x0E7F, script::thai},       {0x10A0, 0x10FF, script::georgian},
      {0x1100, 0x11FF, script::hangul},     {0x1C80, 0x1C8F, script::cyrillic},
      {0x1C90, 0x1CBF, script::georgian},   {0x1D00, 0x1D7F, script::latin},
      {0x1E00, 0x1EFF, script::latin},      {0x1F00, 0x1FFF, script::greek},
      {0x2C60, 0x2C7F, script::latin},      {0x2DE0, 0x2DFF, script::cyrillic},
      {0x2E80, 0x2FDF, script::han},        {0x3005, 0x3007, script::han},
      {0x3021, 0x3029, script::han},        {0x3038, 0x303B, script::han},
      {0x3041, 0x309F, script::hiragana},   {0x30A0, 0x30FF, script::katakana},
      {0x3130, 0x318F, script::hangul},     {0x31F0, 0x31FF, script::katakana},
      {0x3400, 0x4DBF, script::han},        {0x4E00, 0x9FFF, script::han},
      {0xA640, 0xA69F, script::cyrillic},   {0xA720, 0xA7FF, script::latin},
      {0xA960, 0xA97F, script::hangul},     {0xAB30, 0xAB6F, script::latin},
      {0xAC00, 0xD7FF, script::hangul},     {0xF900, 0xFAFF, script::han},
      {0xFB00, 0xFB06, script::latin},      {0xFB1D, 0xFB4F, script::hebrew},
      {0xFB50, 0xFDFF, script::arabic},     {0xFE70, 0xFEFF, script::arabic},
      {0xFF21, 0xFF5A, script::latin},      {0xFF66, 0xFF9F, script::katakana},
      {0xFFA0, 0xFFDC, script::hangul},     {0x1B000, 0x1B001, script::katakana},
      {0x1B002, 0x1B11F, script::hiragana}, {0x20000, 0x323AF, script::han},
  };
  // Binary search for the last range with lo <= c.
  std::size_t lo = 0;
  std::size_t hi = sizeof(table) / sizeof(table[0]);
  while (lo < hi) {
    const std::size_t mid = (lo + hi) / 2;
    if (table[mid].lo <= c) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo > 0 && c <= table[lo - 1].hi) return table[lo - 1].s;
  return script::other;
}

/// True for the CJK scripts written without spaces between words, where each character counts as
/// one word (Han, Hiragana, Katakana). Hangul is spaced, so a Hangul run is one word; a Thai run is
/// also one word (its characters are parts of syllables, not words).
constexpr bool is_unspaced(script s) noexcept {
  return s == script::han || s == script::hiragana || s == script::katakana;
}

}  // namespace grpo::rewards::utf8

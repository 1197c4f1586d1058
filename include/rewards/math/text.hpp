// SPDX-License-Identifier: Apache-2.0
/// @file text.hpp
/// @brief Linear-time ASCII/UTF-8 helpers of the math verifier (no std::regex, no locale).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace grpo::rewards::math::detail {

inline constexpr std::size_t npos = std::string_view::npos;

inline bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
inline bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}
inline bool is_alpha(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
inline bool is_alnum(char c) noexcept {
  return is_alpha(c) || is_digit(c);
}
inline char to_lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
}
inline char to_upper(char c) noexcept {
  return (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c;
}

/// @return `s` without leading and trailing ASCII whitespace.
inline std::string_view trim(std::string_view s) noexcept {
  std::size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

/// @return true when `s` starts with `p` at `pos`, ASCII case-insensitively.
inline bool iequal_at(std::string_view s, std::size_t pos, std::string_view p) noexcept {
  if (pos > s.size() || s.size() - pos < p.size()) return false;
  for (std::size_t i = 0; i < p.size(); ++i)
    if (to_lower(s[pos + i]) != to_lower(p[i])) return false;
  return true;
}

/// @return true when the LaTeX command `\name` starts at `pos` and is not a prefix of a longer
/// command name (`\in` must not match `\infty`).
inline bool command_at(std::string_view s, std::size_t pos, std::string_view name) noexcept {
  if (pos >= s.size() || s[pos] != '\\') return false;
  if (s.size() - pos - 1 < name.size() || s.compare(pos + 1, name.size(), name) != 0) return false;
  const std::size_t end = pos + 1 + name.size();
  return end >= s.size() || !is_alpha(s[end]) || !is_alpha(name.back());
}

/// Lower-cased ASCII copy (bytes >= 0x80 unchanged); one pass.
inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = to_lower(c);
  return out;
}

// UTF-8 decoding per RFC 3629: lead byte C2..DF (2 bytes), E0..EF (3), F0..F4 (4); continuation
// bytes 10xxxxxx. Rejecting overlong forms and surrogates keeps later byte-wise matching (the
// Unicode symbol table) unambiguous.
/// Replaces every invalid UTF-8 sequence (overlong, surrogate, truncated, > U+10FFFF) by '?', so
/// later stages only ever see well-formed text. One pass, O(n).
inline std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07u;
    }
    // Accumulate the code point from the continuation bytes; any non-continuation byte fails.
    bool ok = len != 0 && i + len <= s.size();
    for (std::size_t k = 1; ok && k < len; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0u) != 0x80u) ok = false;
      cp = (cp << 6) | (d & 0x3Fu);
    }
    // Overlong 3/4-byte forms, UTF-16 surrogates and code points above U+10FFFF are invalid.
    if (ok && len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ok = false;
    if (ok && len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ok = false;
    if (!ok) {
      out += '?';
      ++i;
      continue;
    }
    out.append(s.substr(i, len));
    i += len;
  }
  return out;
}

// Used by box extraction: matching every brace once up front is what keeps "100k unclosed
// \boxed{" linear; a per-box forward scan would be quadratic.
/// For every unescaped '{' of `s`, the index of its matching '}' (or npos when unclosed); other
/// entries are npos. One stack pass, O(n) time and memory, so 100k unclosed `\boxed{` stay linear.
/// `\{` and `\}` are LaTeX literal braces and are not counted.
inline std::vector<std::size_t> match_braces(std::string_view s) {
  std::vector<std::size_t> match(s.size(), npos);
  std::vector<std::size_t> stack;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '\\') {
      ++i;  // skip the escaped character (\{, \}, \\)
      continue;
    }
    if (c == '{') {
      stack.push_back(i);
    } else if (c == '}' && !stack.empty()) {
      match[stack.back()] = i;
      stack.pop_back();
    }
  }
  return match;
}

/// Position of the '}' closing the '{' at `open` in `s`, scanning forward at most `limit` bytes;
/// npos when unbalanced or too long. Escaped braces are skipped.
inline std::size_t find_closing_brace(std::string_view s, std::size_t open,
                                      std::size_t limit = npos) noexcept {
  int depth = 0;
  const std::size_t end = (limit == npos || s.size() - open < limit) ? s.size() : open + limit;
  for (std::size_t i = open; i < end; ++i) {
    const char c = s[i];
    if (c == '\\') {
      ++i;
      continue;
    }
    if (c == '{') ++depth;
    if (c == '}' && --depth == 0) return i;
  }
  return npos;
}

/// Last occurrence of `needle` in `hay` (ASCII case-insensitive); npos if none. O(n * |needle|)
/// with a fixed, short needle.
inline std::size_t rfind_ci(std::string_view hay, std::string_view needle) noexcept {
  if (needle.empty() || hay.size() < needle.size()) return npos;
  for (std::size_t i = hay.size() - needle.size() + 1; i-- > 0;)
    if (iequal_at(hay, i, needle)) return i;
  return npos;
}

}  // namespace grpo::rewards::math::detail

// SPDX-License-Identifier: Apache-2.0
/// @file half.hpp
/// @brief bfloat16 and float16 storage types: exact widening to float, round-to-nearest-even narrowing.
#pragma once

#include <grpo/core/config.hpp>

#include <bit>      // std::bit_cast
#include <cstdint>  // std::uint16_t, std::uint32_t
#include <type_traits>

namespace grpo {

/// bfloat16 storage (1 sign, 8 exponent, 7 mantissa bits): the upper half of an IEEE float. Arithmetic
/// is done in float; this type only stores. Widening is exact (a shift); narrowing rounds to nearest
/// even and keeps NaN a (quiet) NaN.
struct bfloat16 {
  std::uint16_t bits = 0;

  constexpr bfloat16() noexcept = default;
  /// Narrowing conversion from float, round-to-nearest-even (the rounding of torch's .to(bfloat16)).
  GRPO_HOST_DEVICE constexpr explicit bfloat16(float f) noexcept : bits(from_float(f)) {}
  GRPO_HOST_DEVICE static constexpr bfloat16 from_bits(std::uint16_t b) noexcept {
    bfloat16 r;
    r.bits = b;
    return r;
  }
  /// Exact widening: bf16 values are a subset of float values.
  GRPO_HOST_DEVICE constexpr operator float() const noexcept {
    return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
  }
  GRPO_HOST_DEVICE static constexpr std::uint16_t from_float(float f) noexcept {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0)  // NaN: keep sign, force quiet bit
      return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
    // Round to nearest, ties to even: add 0x7fff plus the lowest kept bit, then truncate.
    const std::uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return static_cast<std::uint16_t>((u + rounding) >> 16);
  }
  friend constexpr bool operator==(bfloat16 a, bfloat16 b) noexcept { return a.bits == b.bits; }
};

/// IEEE 754 binary16 storage (1 sign, 5 exponent, 10 mantissa bits), including subnormals, +-inf and
/// NaN. Widening to float is exact; narrowing rounds to nearest even (overflow goes to +-inf).
struct float16 {
  std::uint16_t bits = 0;

  constexpr float16() noexcept = default;
  GRPO_HOST_DEVICE constexpr explicit float16(float f) noexcept : bits(from_float(f)) {}
  GRPO_HOST_DEVICE static constexpr float16 from_bits(std::uint16_t b) noexcept {
    float16 r;
    r.bits = b;
    return r;
  }
  /// Exact widening (every binary16 value is a float).
  GRPO_HOST_DEVICE constexpr operator float() const noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
    const std::uint32_t exp = (bits >> 10) & 0x1fu;
    std::uint32_t man = bits & 0x3ffu;
    if (exp == 0x1fu)  // inf / NaN
      return std::bit_cast<float>(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
      if (man == 0) return std::bit_cast<float>(sign);
      // Subnormal: value = man * 2^-24; normalise into a float (always representable exactly).
      int e = -1;
      do {
        man <<= 1;
        ++e;
      } while ((man & 0x400u) == 0);
      man &= 0x3ffu;
      const std::uint32_t fexp = static_cast<std::uint32_t>(127 - 15 - e);
      return std::bit_cast<float>(sign | (fexp << 23) | (man << 13));
    }
    return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (man << 13));
  }
  GRPO_HOST_DEVICE static constexpr std::uint16_t from_float(float f) noexcept {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    const std::uint32_t sign = (u >> 16) & 0x8000u;
    const std::uint32_t abs = u & 0x7fffffffu;
    if (abs >= 0x7f800000u)  // inf or NaN
      return static_cast<std::uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
    if (abs >= 0x477ff000u)  // >= 65520 rounds to inf
      return static_cast<std::uint16_t>(sign | 0x7c00u);
    if (abs < 0x38800000u) {  // below the smallest normal half (2^-14): subnormal or zero
      if (abs < 0x33000000u) return static_cast<std::uint16_t>(sign);  // < 2^-25 rounds to 0
      const std::uint32_t e = abs >> 23;                                // 102..112
      const std::uint32_t m = (abs & 0x7fffffu) | 0x800000u;            // 24-bit significand
      const std::uint32_t shift = 126u - e;                             // 14..24
      std::uint32_t h = m >> shift;
      const std::uint32_t rem = m & ((1u << shift) - 1u);
      const std::uint32_t half = 1u << (shift - 1u);
      if (rem > half || (rem == half && (h & 1u))) ++h;
      return static_cast<std::uint16_t>(sign | h);
    }
    // Normal: rebias exponent, round mantissa from 23 to 10 bits, ties to even (carry may bump exp).
    std::uint32_t h = ((abs - 0x38000000u) >> 13);
    const std::uint32_t rem = abs & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return static_cast<std::uint16_t>(sign | h);
  }
  friend constexpr bool operator==(float16 a, float16 b) noexcept { return a.bits == b.bits; }
};

/// Widen any supported storage type to its accumulation type (float for 16-bit storage).
template <class T>
GRPO_HOST_DEVICE constexpr auto widen(T x) noexcept {
  if constexpr (std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>)
    return static_cast<float>(x);
  else
    return x;
}

/// Narrow an accumulation value back to storage type T (rounding to nearest even for 16-bit types).
template <class T, class A>
GRPO_HOST_DEVICE constexpr T narrow(A x) noexcept {
  if constexpr (std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>)
    return T(static_cast<float>(x));
  else
    return static_cast<T>(x);
}

}  // namespace grpo

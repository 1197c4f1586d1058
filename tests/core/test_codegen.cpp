// SPDX-License-Identifier: Apache-2.0
/// @file test_codegen.cpp
/// @brief Guards against the g++ 12 AVX-512F constant-materialisation bug (docs/compiler-bugs.md):
///        constants stored by codegen_avx512_const.cpp (compiled with -mavx512f and grpo::grpo's
///        interface options, which carry the workaround) must read back as written.
///
/// Before the workaround (grpo::grpo without -mtune-ctrl=^inter_unit_moves_to_vec), g++ 12.2 built
/// every 32-byte case below as vpbroadcastq of the first word and this test failed on an AVX2
/// machine; clang and g++ without -mavx512f were right.
#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <vector>

namespace grpo_codegen {
void store_7770(std::int64_t* out);
void store_7700(std::int64_t* out);
void store_m5(std::int64_t* out);
std::vector<double> mask_1110();
void store_7x7_0(std::int64_t* out);
}  // namespace grpo_codegen

TEST_CASE("codegen: 256-bit constants with implicit high words are stored as written" *
          doctest::test_suite("core")) {
  if (!__builtin_cpu_supports("avx2")) {
    MESSAGE("SKIPPED: the -mavx512f translation unit needs AVX2 to run (this CPU has none)");
    return;
  }
  std::array<std::int64_t, 4> a{};
  grpo_codegen::store_7770(a.data());
  CHECK(a == std::array<std::int64_t, 4>{7, 7, 7, 0});
  grpo_codegen::store_7700(a.data());
  CHECK(a == std::array<std::int64_t, 4>{7, 7, 0, 0});
  grpo_codegen::store_m5(a.data());
  CHECK(a == std::array<std::int64_t, 4>{-5, -5, -5, -1});
  const std::vector<double> m = grpo_codegen::mask_1110();
  CHECK(m == std::vector<double>{1, 1, 1, 0});
}

TEST_CASE("codegen: 512-bit constant with an implicit high word is stored as written" *
          doctest::test_suite("core")) {
  if (!__builtin_cpu_supports("avx512f")) {
    MESSAGE("SKIPPED: the 512-bit store needs AVX-512F (this CPU has none)");
    return;
  }
  std::array<std::int64_t, 8> a{};
  grpo_codegen::store_7x7_0(a.data());
  CHECK(a == std::array<std::int64_t, 8>{7, 7, 7, 7, 7, 7, 7, 0});
}

// SPDX-License-Identifier: Apache-2.0
/// @file codegen_avx512_const.cpp
/// @brief Constant stores that g++ 12 with -mavx512f compiled to a broadcast of the first word
///        (the wrong mask {1, 1, 1, 1} that test_kl_native once saw); built with -mavx512f by
///        tests/core/CMakeLists.txt and checked by test_codegen.cpp.
///
/// The 32-byte stores use only AVX2 instructions (vpbroadcastq / vmovdqu on ymm), so they run on
/// any AVX2 machine even though the translation unit is compiled for AVX-512F: the wrong code is
/// reproduced where the suite runs. The 64-byte store needs AVX-512F to execute.
#include <cstdint>
#include <cstring>
#include <vector>

namespace grpo_codegen {

typedef std::int64_t v4di __attribute__((vector_size(32)));
typedef std::int64_t v8di __attribute__((vector_size(64)));

// {7, 7, 7, 0}: a 256-bit constant whose top word is the sign extension of the one below.
void store_7770(std::int64_t* out) {
  const v4di v = {7, 7, 7, 0};
  std::memcpy(out, &v, sizeof v);
}
// {7, 7, 0, 0}: two implicit words.
void store_7700(std::int64_t* out) {
  const v4di v = {7, 7, 0, 0};
  std::memcpy(out, &v, sizeof v);
}
// {-5, -5, -5, -1}: the implicit top word is all ones (negative sign extension).
void store_m5(std::int64_t* out) {
  const v4di v = {-5, -5, -5, -1};
  std::memcpy(out, &v, sizeof v);
}
// The shape of test_kl's mask: std::vector<double>{1, 1, 1, 0} with its constructor inlined.
__attribute__((flatten)) std::vector<double> mask_1110() { return {1, 1, 1, 0}; }
// 512-bit: {7 x 7, 0} (executes AVX-512F instructions).
void store_7x7_0(std::int64_t* out) {
  const v8di v = {7, 7, 7, 7, 7, 7, 7, 0};
  std::memcpy(out, &v, sizeof v);
}

}  // namespace grpo_codegen

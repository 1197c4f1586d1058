// SPDX-License-Identifier: Apache-2.0
/// @file convert.hpp
/// @brief The input builders shared by the distillation tests: double test data narrowed to a
///        storage type (through float, as a caller's fp32 / bf16 / fp16 tensors would hold it) and
///        storage widened back to double (exact for every storage type).
#pragma once

#include <grpo/core/half.hpp>

#include <cstddef>
#include <type_traits>
#include <vector>

namespace distill_test {

/// x in storage type T: double kept as is, every other type rounded to float then narrowed.
template <class T>
std::vector<T> cast_to(const std::vector<double>& x) {
  std::vector<T> r(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    if constexpr (std::is_same_v<T, double>)
      r[i] = x[i];
    else
      r[i] = grpo::narrow<T>(static_cast<float>(x[i]));
  }
  return r;
}

/// x widened to double (double kept as is; float, bf16, fp16 exactly through float).
template <class T>
std::vector<double> widen_all(const std::vector<T>& x) {
  std::vector<double> r(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    if constexpr (std::is_same_v<T, double>)
      r[i] = x[i];
    else
      r[i] = static_cast<double>(static_cast<float>(x[i]));
  }
  return r;
}

}  // namespace distill_test

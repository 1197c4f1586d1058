// SPDX-License-Identifier: Apache-2.0
/// @file common.hpp
/// @brief Shared pieces of the nanobind module grpo._C: the array descriptor the Python side passes
///        (data pointer, shape, strides in elements, dtype code), views over it, option parsing.
///
/// Why raw descriptors and not nb::ndarray: the Python layer already holds torch tensors / numpy
/// arrays and reads (data_ptr, shape, stride) in a few hundred nanoseconds, whereas a DLPack capsule
/// per argument costs microseconds; the data is never copied either way (zero-copy, any strides).
#pragma once

#include <grpo/core/error.hpp>
#include <grpo/core/half.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/loss.hpp>  // loss_scalars, loss_metrics

#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace grpo::py {

namespace nb = nanobind;

/// dtype codes shared with python/grpo/_tensors.py.
enum dtype_code : int { f32 = 0, f64 = 1, bf16 = 2, f16 = 3, i64 = 4, i32 = 5, u8 = 6 };

/// (data pointer, shape, strides in elements, dtype code): what the Python side passes per array.
using arr_t = std::tuple<std::uintptr_t, std::vector<std::int64_t>, std::vector<std::int64_t>, int>;
using opt_arr = std::optional<arr_t>;

inline int dtype_of(const arr_t& a) { return std::get<3>(a); }
inline std::int64_t rank_of(const arr_t& a) {
  return static_cast<std::int64_t>(std::get<1>(a).size());
}

/// A typed view of rank R over the descriptor; [grpo.shape_mismatch] names the argument when the
/// rank is wrong (the Python layer checks dtypes before calling).
template <class T, std::size_t R>
strided_view<T, R> view_of(const arr_t& a, const char* what) {
  const auto& shape = std::get<1>(a);
  const auto& strides = std::get<2>(a);
  GRPO_EXPECTS(shape.size() == R && strides.size() == R, shape_mismatch,
               std::string(what) + ": expected rank " + std::to_string(R) + ", got " +
                   std::to_string(shape.size()));
  std::array<index_t, R> e{}, s{};
  for (std::size_t k = 0; k < R; ++k) {
    e[k] = static_cast<index_t>(shape[k]);
    s[k] = static_cast<index_t>(strides[k]);
  }
  return strided_view<T, R>(reinterpret_cast<T*>(std::get<0>(a)), e, s);
}

template <class T, std::size_t R>
strided_view<T, R> view_or_empty(const opt_arr& a, const char* what) {
  return a ? view_of<T, R>(*a, what) : strided_view<T, R>{};
}

/// Throws [grpo.bad_option] unless `a` has dtype `code`.
inline void expect_dtype(const arr_t& a, int code, const char* what, const char* want) {
  GRPO_EXPECTS(dtype_of(a) == code, bad_dtype,
               std::string(what) + ": dtype must be " + want + " here (the Python layer converts)");
}

/// Reads a number / bool / string field of a Python dict, with a named error for a wrong type.
inline double num(nb::handle v, const std::string& key) {
  try {
    return nb::cast<double>(v);
  } catch (const std::exception&) {
    GRPO_THROW(bad_option, "option '" + key + "': expected a number");
  }
}
inline std::optional<double> opt_num(nb::handle v, const std::string& key) {
  if (v.is_none()) return std::nullopt;
  return num(v, key);
}
inline bool flag(nb::handle v, const std::string& key) {
  GRPO_EXPECTS(nb::isinstance<nb::bool_>(v) || nb::isinstance<nb::int_>(v), bad_option,
               "option '" + key + "': expected a bool");
  return nb::cast<bool>(v);
}
inline std::string str(nb::handle v, const std::string& key) {
  GRPO_EXPECTS(nb::isinstance<nb::str>(v), bad_option, "option '" + key + "': expected a string");
  return nb::cast<std::string>(v);
}
[[noreturn]] inline void unknown_key(const std::string& what, const std::string& key) {
  GRPO_THROW(bad_option, what + ": unknown option '" + key + "'");
}

/// Writes the scalars and metrics of a loss call into `stats` (float64, contiguous, n_stats):
/// loss, policy_loss, kl_loss, entropy_loss, then per accumulator (grpo._C.metric_names order)
/// mean, min, max (NaN when nothing was accumulated). One caller-owned buffer instead of a Python
/// list: the torch side allocates it with the other outputs.
inline constexpr std::int64_t n_stats = 4 + 3 * 14;
inline void write_stats(const loss_scalars& r, const arr_t& stats) {
  GRPO_EXPECTS(std::get<3>(stats) == f64 && std::get<1>(stats).size() == 1 &&
                   std::get<1>(stats)[0] == n_stats && std::get<2>(stats)[0] == 1,
               shape_mismatch, "stats: expected a contiguous float64 [46] buffer");
  auto* out = reinterpret_cast<double*>(std::get<0>(stats));
  *out++ = r.loss;
  *out++ = r.policy_loss;
  *out++ = r.kl_loss;
  *out++ = r.entropy_loss;
  const loss_metrics& m = r.metrics;
  for (const stat_accumulator* s :
       {&m.clip_low, &m.clip_high, &m.clip_region, &m.clip_dual, &m.weight_clip, &m.clip_low_seq,
        &m.clip_high_seq, &m.approx_kl, &m.ratio, &m.is_weight, &m.advantage, &m.kl, &m.entropy,
        &m.vespo_phi}) {
    const bool any = s->weight > 0;
    *out++ = s->mean();
    *out++ = any ? s->min : std::numeric_limits<double>::quiet_NaN();
    *out++ = any ? s->max : std::numeric_limits<double>::quiet_NaN();
  }
}

void bind_loss(nb::module_& m);
void bind_logprob(nb::module_& m);
void bind_distill(nb::module_& m);
void bind_rewards(nb::module_& m);

}  // namespace grpo::py

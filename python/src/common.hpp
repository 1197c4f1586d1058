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
#include <grpo/loss.hpp>     // loss_scalars, loss_metrics
#include <grpo/presets.hpp>  // openrlhf_args

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

/// The accumulators of loss_metrics in grpo._C.metric_names order.
inline constexpr std::size_t n_accumulators = 14;
inline std::array<stat_accumulator*, n_accumulators> accumulators(loss_metrics& m) {
  return {&m.clip_low,     &m.clip_high,     &m.clip_region, &m.clip_dual, &m.weight_clip,
          &m.clip_low_seq, &m.clip_high_seq, &m.approx_kl,   &m.ratio,     &m.is_weight,
          &m.advantage,    &m.kl,            &m.entropy,     &m.vespo_phi};
}

/// Layout of the float64 stats buffer of a loss call (what LossOutput.stats holds):
///   [0, 4)          loss, policy_loss, kl_loss, entropy_loss
///   [4, 46)         per accumulator (metric_names order): mean, min, max (NaN when empty)
///   [46, 88)        per accumulator: sum w x, sum w, sum w x^2 (the mergeable sums)
///   [88, 93)        opsm_dropped_seqs, entropy_masked_tokens, truncated_seqs, tokens, sequences
/// The first 46 entries are the readable summary; the rest lets shards be merged exactly
/// (loss_metrics::merge) and verl's masked means (sum / (weight + 1e-8)) be reproduced.
inline constexpr std::int64_t n_stats = 4 + 3 * n_accumulators + 3 * n_accumulators + 5;

inline double* stats_ptr(const arr_t& stats) {
  GRPO_EXPECTS(std::get<3>(stats) == f64 && std::get<1>(stats).size() == 1 &&
                   std::get<1>(stats)[0] == n_stats && std::get<2>(stats)[0] == 1,
               shape_mismatch,
               "stats: expected a contiguous float64 [" + std::to_string(n_stats) + "] buffer");
  return reinterpret_cast<double*>(std::get<0>(stats));
}

/// Writes the scalars and metrics of a loss call into `stats` (layout above). One caller-owned
/// buffer instead of a Python list: the torch side allocates it with the other outputs.
inline void write_stats(const loss_scalars& r, const arr_t& stats) {
  double* out = stats_ptr(stats);
  out[0] = r.loss;
  out[1] = r.policy_loss;
  out[2] = r.kl_loss;
  out[3] = r.entropy_loss;
  loss_metrics m = r.metrics;
  const auto acc = accumulators(m);
  for (std::size_t k = 0; k < n_accumulators; ++k) {
    const stat_accumulator* s = acc[k];
    const bool any = s->weight > 0;
    out[4 + 3 * k] = s->mean();
    out[5 + 3 * k] = any ? s->min : std::numeric_limits<double>::quiet_NaN();
    out[6 + 3 * k] = any ? s->max : std::numeric_limits<double>::quiet_NaN();
    out[4 + 3 * n_accumulators + 3 * k] = s->sum;
    out[5 + 3 * n_accumulators + 3 * k] = s->weight;
    out[6 + 3 * n_accumulators + 3 * k] = s->sum_sq;
  }
  double* c = out + 4 + 6 * n_accumulators;
  c[0] = m.opsm_dropped_seqs;
  c[1] = m.entropy_masked_tokens;
  c[2] = m.truncated_seqs;
  c[3] = m.tokens;
  c[4] = m.sequences;
}

/// The loss_metrics of a stats buffer written by write_stats (inverse of it; min / max of an empty
/// accumulator come back as +-inf, as a fresh stat_accumulator).
inline loss_metrics read_metrics(const arr_t& stats) {
  const double* in = stats_ptr(stats);
  loss_metrics m;
  const auto acc = accumulators(m);
  for (std::size_t k = 0; k < n_accumulators; ++k) {
    stat_accumulator* s = acc[k];
    s->sum = in[4 + 3 * n_accumulators + 3 * k];
    s->weight = in[5 + 3 * n_accumulators + 3 * k];
    s->sum_sq = in[6 + 3 * n_accumulators + 3 * k];
    if (s->weight > 0) {
      s->min = in[5 + 3 * k];
      s->max = in[6 + 3 * k];
    }
  }
  const double* c = in + 4 + 6 * n_accumulators;
  m.opsm_dropped_seqs = c[0];
  m.entropy_masked_tokens = c[1];
  m.truncated_seqs = c[2];
  m.tokens = c[3];
  m.sequences = c[4];
  return m;
}

void bind_loss(nb::module_& m);
void bind_openrlhf(nb::module_& m);
void bind_logprob(nb::module_& m);
void bind_distill(nb::module_& m);
void bind_rewards(nb::module_& m);

}  // namespace grpo::py

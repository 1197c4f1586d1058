// SPDX-License-Identifier: Apache-2.0
/// @file aggregate.hpp
/// @brief Loss aggregation (token-mean, token-sum, seq-mean-*, per-group token mean) with explicit,
///        optionally global denominators, so micro-batches and shards sum to the full-batch loss.
///
/// Every mode is LINEAR in the per-token loss l_it: loss = scale * sum_i s_i sum_t m_it l_it, with
/// a per-row factor s_i that depends on the mask only. Hence d loss / d l_it = scale * s_i * m_it,
/// and the denominators inside s_i are constants of the step (never differentiated).
///
/// | mode                     | s_i                                    | anchor |
/// |--------------------------|----------------------------------------|---------------------------|
/// | token_mean               | 1 / N                                  | verl token-mean, TRL
/// bnpo/dapo | | token_sum                | 1                                      | verl token-sum
/// | | seq_mean_token_sum       | 1[n_i>0] / G                           | verl, TRL luspo (G = B)
/// | | seq_mean_token_mean      | 1[n_i>0] / ((n_i + eps) G)             | verl (eps 1e-8), TRL
/// grpo (max(n_i,1), G = B) | | seq_mean_token_sum_norm  | 1[n_i>0] / (L G)                       |
/// verl (L = loss_scale_factor or T), TRL dr_grpo (L = max_completion_length, G = B) | |
/// group_token_mean         | 1 / (N_g(i) * G_groups)                | DAPO paper / ScaleRL
/// prompt-level mean |
///
/// N = token count, n_i = sum_t m_it, G = sequence count, N_g = tokens of the row's group. Each is
/// taken from the caller (global over micro-batches, GA window and data-parallel ranks) when given,
/// otherwise from the local final mask. `scale` carries verl's dp_size or TRL's 1/GA.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/strided_view.hpp>

#include <cmath>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace grpo {

/// Aggregation mode (see the table in the file comment).
enum class agg_mode : unsigned char {
  token_mean,
  token_sum,
  seq_mean_token_sum,
  seq_mean_token_mean,
  seq_mean_token_sum_norm,
  group_token_mean,
};

/// verl's spelling of the mode ("token-mean", "seq-mean-token-sum-norm", ...) plus
/// "group-token-mean". Throws [grpo.bad_option] on an unknown name.
/// @pre none. @post the returned mode round-trips the verl name.
inline agg_mode agg_mode_from_string(std::string_view s) {
  if (s == "token-mean") return agg_mode::token_mean;
  if (s == "token-sum") return agg_mode::token_sum;
  if (s == "seq-mean-token-sum") return agg_mode::seq_mean_token_sum;
  if (s == "seq-mean-token-mean") return agg_mode::seq_mean_token_mean;
  if (s == "seq-mean-token-sum-norm") return agg_mode::seq_mean_token_sum_norm;
  if (s == "group-token-mean") return agg_mode::group_token_mean;
  GRPO_THROW(bad_option, "loss_agg_mode: unknown mode '" + std::string(s) + "'");
}

/// How a loss is reduced to a scalar. Unset optionals mean "from the local final mask".
struct agg_options {
  agg_mode mode = agg_mode::token_mean;
  /// N: valid tokens of the whole optimizer step (verl batch_num_tokens; TRL num_items_in_batch
  /// divided by the process count). Required for exact micro-batch / shard invariance of
  /// token_mean.
  std::optional<double> global_tokens;
  /// G: sequences of the whole step (verl global_batch_size). Local fallback: non-empty rows, or
  /// all rows when count_empty_rows is set.
  std::optional<double> global_seqs;
  /// Number of groups of the whole step (group_token_mean). Local fallback: groups in this batch.
  std::optional<double> global_groups;
  /// L of seq_mean_token_sum_norm (verl loss_scale_factor, TRL max_completion_length). Unset: the
  /// padded width T of this batch (verl's default; not constant under dynamic batching).
  std::optional<double> norm_length;
  /// Local sequence count includes fully masked rows (TRL grpo/sapo/luspo/dr_grpo divide by B).
  bool count_empty_rows = false;
  /// seq_mean_token_mean row denominator n_i + row_count_eps (verl 1e-8).
  double row_count_eps = 0.0;
  /// seq_mean_token_mean row denominator max(n_i, row_count_floor) (TRL clamp(min=1)).
  double row_count_floor = 0.0;
  /// token_mean denominator max(N, token_count_floor) (TRL clamp(min=1)).
  double token_count_floor = 0.0;
  /// Multiplies the loss: verl dp_size, TRL 1/gradient_accumulation_steps.
  double scale = 1.0;
  /// group_token_mean: rows form contiguous groups of this many rows.
  index_t group_size = 0;
  /// group_token_mean: optional per-row token count of the row's WHOLE group (global), for groups
  /// split across micro-batches. Empty: counted locally.
  std::span<const double> group_tokens{};
};

/// Validates options that do not depend on the batch. Throws [grpo.bad_option] / [grpo.bad_value].
inline void validate(const agg_options& o) {
  detail::expect_enum(o.mode, 6, "agg_options.mode");
  auto positive = [](const std::optional<double>& v) {
    return !v || (std::isfinite(*v) && *v > 0);
  };
  GRPO_EXPECTS(positive(o.global_tokens), bad_value,
               "agg_options.global_tokens must be finite > 0");
  GRPO_EXPECTS(positive(o.global_seqs), bad_value, "agg_options.global_seqs must be finite > 0");
  GRPO_EXPECTS(positive(o.global_groups), bad_value,
               "agg_options.global_groups must be finite > 0");
  GRPO_EXPECTS(positive(o.norm_length), bad_value, "agg_options.norm_length must be finite > 0");
  GRPO_EXPECTS(std::isfinite(o.scale), bad_value, "agg_options.scale must be finite");
  GRPO_EXPECTS(std::isfinite(o.row_count_eps) && o.row_count_eps >= 0, bad_value,
               "agg_options.row_count_eps must be finite >= 0");
  GRPO_EXPECTS(std::isfinite(o.row_count_floor) && o.row_count_floor >= 0, bad_value,
               "agg_options.row_count_floor must be finite >= 0");
  GRPO_EXPECTS(std::isfinite(o.token_count_floor) && o.token_count_floor >= 0, bad_value,
               "agg_options.token_count_floor must be finite >= 0");
  if (o.mode == agg_mode::group_token_mean)
    GRPO_EXPECTS(o.group_size > 0, bad_option,
                 "agg_options.group_size must be > 0 for group_token_mean");
}

namespace detail {

/// agg_options flattened for host and device code (unset optionals are negative; the
/// group_tokens span is not carried: callers pass the row's N_g).
struct agg_params {
  agg_mode mode = agg_mode::token_mean;
  double global_tokens = -1, global_seqs = -1, global_groups = -1, norm_length = -1;
  bool count_empty_rows = false;
  double row_count_eps = 0, row_count_floor = 0, token_count_floor = 0, scale = 1;
  index_t group_size = 0;
};

/// Copies an agg_options into the flat block.
/// @pre none (validate() is the caller's). @post every optional that is set is copied as is.
inline agg_params make_agg_params(const agg_options& o) noexcept {
  agg_params a;
  a.mode = o.mode;
  a.global_tokens = o.global_tokens ? *o.global_tokens : -1.0;
  a.global_seqs = o.global_seqs ? *o.global_seqs : -1.0;
  a.global_groups = o.global_groups ? *o.global_groups : -1.0;
  a.norm_length = o.norm_length ? *o.norm_length : -1.0;
  a.count_empty_rows = o.count_empty_rows;
  a.row_count_eps = o.row_count_eps;
  a.row_count_floor = o.row_count_floor;
  a.token_count_floor = o.token_count_floor;
  a.scale = o.scale;
  a.group_size = o.group_size;
  return a;
}

/// Batch totals the row factors need (all from the final mask).
struct agg_totals {
  double n_total = 0;    ///< sum_i n_i
  double non_empty = 0;  ///< rows with n_i > 0
  double rows = 0;       ///< B
  double width = 0;      ///< padded T
};

/// Aggregation factor s_i of one row, the ONE copy of the table in the file comment, called by
/// aggregation_row_scales below and by the CUDA kernels (<grpo/cuda/loss_terms.cuh>):
/// loss = sum_i s_i sum_t m_it l_it. `group_tokens` is N_g of the row's group (group_token_mean).
/// @pre n_i, the totals and group_tokens finite and >= 0; a set global_* / norm_length > 0.
/// @post 0 for a row that takes no part (empty row in the seq modes, empty batch or group).
GRPO_HOST_DEVICE constexpr double agg_row_scale(const agg_params& o, double n_i,
                                                const agg_totals& t, double group_tokens) noexcept {
  // G: sequences of the step (given), else the local rows (all, or the non-empty ones).
  const double G = o.global_seqs > 0 ? o.global_seqs : (o.count_empty_rows ? t.rows : t.non_empty);
  switch (o.mode) {
    case agg_mode::token_mean: {
      double N = o.global_tokens > 0 ? o.global_tokens : t.n_total;
      N = N < o.token_count_floor ? o.token_count_floor : N;
      // N == 0 only when every token is masked: the loss is 0 (documented), never NaN.
      return N > 0 ? o.scale / N : 0.0;
    }
    case agg_mode::token_sum:
      return o.scale;
    case agg_mode::seq_mean_token_sum:
    case agg_mode::seq_mean_token_sum_norm: {
      double L = 1.0;
      if (o.mode == agg_mode::seq_mean_token_sum_norm)
        L = o.norm_length > 0 ? o.norm_length : t.width;
      return (n_i > 0 && G > 0 && L > 0) ? o.scale / (L * G) : 0.0;
    }
    case agg_mode::seq_mean_token_mean: {
      double d = n_i + o.row_count_eps;
      d = d < o.row_count_floor ? o.row_count_floor : d;
      return (n_i > 0 && d > 0 && G > 0) ? o.scale / (d * G) : 0.0;
    }
    case agg_mode::group_token_mean: {
      // Local group count B / k is exact in double (B is a multiple of k, checked by callers).
      const double groups =
          o.global_groups > 0
              ? o.global_groups
              : (o.group_size > 0 ? t.rows / static_cast<double>(o.group_size) : 0.0);
      return (group_tokens > 0 && groups > 0) ? o.scale / (group_tokens * groups) : 0.0;
    }
  }
  return 0.0;
}

}  // namespace detail

/// Per-row factors s_i (already multiplied by `scale`) from the per-row valid-token counts n_i
/// (sum of the FINAL mask of row i) and the padded width T.
/// @pre row_tokens.size() == B; every n_i finite and >= 0.
/// @post loss = sum_i s_i sum_t m_it l_it; a fully masked row gets s_i = 0 in the seq modes.
inline std::vector<double> aggregation_row_scales(std::span<const double> row_tokens, index_t width,
                                                  const agg_options& o) {
  validate(o);
  const index_t B = static_cast<index_t>(row_tokens.size());
  std::vector<double> s(static_cast<std::size_t>(B), 0.0);
  double n_total = 0.0;
  index_t non_empty = 0;
  for (double n : row_tokens) {
    GRPO_EXPECTS(std::isfinite(n) && n >= 0, bad_value, "mask: row sums must be finite and >= 0");
    n_total += n;
    non_empty += n > 0 ? 1 : 0;
  }
  const detail::agg_params p = detail::make_agg_params(o);
  const detail::agg_totals tot{n_total, static_cast<double>(non_empty), static_cast<double>(B),
                               static_cast<double>(width)};
  if (o.mode != agg_mode::group_token_mean) {
    for (index_t i = 0; i < B; ++i) s[i] = detail::agg_row_scale(p, row_tokens[i], tot, 0.0);
  } else {
    const index_t g = o.group_size;
    GRPO_EXPECTS(B % g == 0, shape_mismatch,
                 "mask: " + std::to_string(B) + " rows is not a multiple of group_size " +
                     std::to_string(g));
    GRPO_EXPECTS(o.group_tokens.empty() || static_cast<index_t>(o.group_tokens.size()) == B,
                 shape_mismatch, "agg_options.group_tokens: size must equal the row count");
    for (index_t i0 = 0; i0 < B; i0 += g) {
      double local = 0.0;  // N_g counted locally when the caller gives no global one
      for (index_t i = i0; i < i0 + g; ++i) local += row_tokens[i];
      for (index_t i = i0; i < i0 + g; ++i) {
        const double Ng = o.group_tokens.empty() ? local : o.group_tokens[i];
        GRPO_EXPECTS(std::isfinite(Ng) && Ng >= 0, bad_value,
                     "agg_options.group_tokens must be finite >= 0");
        s[i] = detail::agg_row_scale(p, row_tokens[i], tot, Ng);
      }
    }
  }
  return s;
}

/// Row sums n_i of a [B, T] mask view. Throws [grpo.bad_value] on a negative or non-finite entry.
/// @pre mask is host-resident. @post result.size() == B, every entry finite and >= 0.
template <class M>
std::vector<double> mask_row_sums(strided_view<const M, 2> mask) {
  expect_host(mask, "mask");
  std::vector<double> n(static_cast<std::size_t>(mask.extent(0)), 0.0);
  for (index_t i = 0; i < mask.extent(0); ++i) {
    double acc = 0.0;
    for (index_t t = 0; t < mask.extent(1); ++t) {
      const double m = static_cast<double>(mask(i, t));
      detail::expect_mask_entry(m, "mask", i, t);  // the shared mask rule (core/validate.hpp)
      acc += m;
    }
    n[static_cast<std::size_t>(i)] = acc;
  }
  return n;
}

/// Aggregates a [B, T] per-token loss under a [B, T] mask; optionally writes d loss / d l_it.
/// Masked-out entries of `loss` are never read (NaN padding is harmless).
/// @pre loss and mask have the same extents; grad (if non-null) too.
/// @post return value = sum_it grad_it * l_it over valid entries; grad_it = 0 where m_it = 0.
template <class T, class M, class G = double>
double aggregate(strided_view<const T, 2> loss, strided_view<const M, 2> mask, const agg_options& o,
                 strided_view<G, 2> grad = {}) {
  expect_host(loss, "loss");
  expect_extents(mask, loss.extents(), "mask");
  const bool want_grad = grad.data_handle() != nullptr;
  if (want_grad) expect_extents(grad, loss.extents(), "grad");
  const auto n = mask_row_sums(mask);
  const auto s = aggregation_row_scales(n, loss.extent(1), o);
  double total = 0.0;
  for (index_t i = 0; i < loss.extent(0); ++i) {
    const double si = s[static_cast<std::size_t>(i)];
    double row = 0.0;
    for (index_t t = 0; t < loss.extent(1); ++t) {
      const double m = static_cast<double>(mask(i, t));
      if (m != 0.0) row += m * static_cast<double>(loss(i, t));
      if (want_grad) grad(i, t) = static_cast<G>(si * m);
    }
    if (si != 0.0) total += si * row;
  }
  return total;
}

}  // namespace grpo

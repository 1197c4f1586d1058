// SPDX-License-Identifier: Apache-2.0
/// @file plan.hpp
/// @brief Front-end plumbing of grpo::distill: rank normalisation of the views, accepted storage
///        types, the aggregation plan (per-token gradient coefficients from mask, weights and the
///        aggregation mode), the row errors and the deterministic loss reduction.
#pragma once

#include <distill/detail/row_math.hpp>
#include <distill/options.hpp>
#include <grpo/aggregate.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/strided_view.hpp>

#include <cmath>  // std::isfinite (reduce_loss)
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace grpo::distill::detail {
inline namespace GRPO_ISA_ABI {

// -----------------------------------------------------------------------------------------------
// Views: every front end normalises its inputs to rank 3 [B, L, V] (rank 2 [N, V] -> [1, N, V]).

template <class T>
strided_view<T, 3> as_rank3(const strided_view<T, 3>& v) noexcept {
  return v;
}
template <class T>
strided_view<T, 3> as_rank3(const strided_view<T, 2>& v) noexcept {
  return strided_view<T, 3>(v.data_handle(), {1, v.extent(0), v.extent(1)},
                            {0, v.stride(0), v.stride(1)}, v.space());
}
template <class T>
strided_view<T, 2> as_rank2_tokens(const strided_view<T, 2>& v) noexcept {
  return v;
}
template <class T>
strided_view<T, 2> as_rank2_tokens(const strided_view<T, 1>& v) noexcept {
  return strided_view<T, 2>(v.data_handle(), {1, v.extent(0)}, {0, v.stride(0)}, v.space());
}

/// Accepted gradient storage types.
template <class G>
inline constexpr bool is_grad_type_v = std::is_same_v<G, float> || std::is_same_v<G, double> ||
                                       std::is_same_v<G, bfloat16> || std::is_same_v<G, float16>;

/// Accepted logit storage types.
template <class T>
inline constexpr bool is_logit_type_v = is_grad_type_v<std::remove_cv_t<T>>;

// -----------------------------------------------------------------------------------------------
// Aggregation plan.

/// Per-token coefficient c_bt of d(aggregated loss)/d l_bt (weights and the aggregation row factor
/// of grpo::aggregation_row_scales included, 0 for masked tokens) and the active flags, computed
/// once from mask and weights before the vocabulary passes, so that the gradient can be written
/// inside the same row kernel as the loss.
struct token_plan {
  index_t B = 0, L = 0;
  std::vector<double> coef;           ///< [B * L]
  std::vector<unsigned char> active;  ///< [B * L]
  index_t active_tokens = 0, active_sequences = 0;
};

/// @pre extents of args' views (when non-empty) are [B, L]; extra_active(b, t) is the loss's own
/// mask (ignore_index of SFT labels), AND-ed with args.mask and args.labels != args.ignore_index.
template <class Extra>
token_plan make_plan(index_t B, index_t L, const token_args& args, const agg_options& agg,
                     Extra&& extra_active) {
  if (args.mask.data_handle() != nullptr) {
    expect_extents(args.mask, {B, L}, "mask");
    expect_host(args.mask, "mask");
  }
  if (args.weights.data_handle() != nullptr) {
    expect_extents(args.weights, {B, L}, "weights");
    expect_host(args.weights, "weights");
  }
  if (args.per_token_loss.data_handle() != nullptr) {
    expect_extents(args.per_token_loss, {B, L}, "per_token_loss");
    expect_host(args.per_token_loss, "per_token_loss");
  }
  const bool has_labels = args.labels.data_handle() != nullptr;
  if (has_labels) {
    expect_extents(args.labels, {B, L}, "labels");
    expect_host(args.labels, "labels");
  }
  token_plan P;
  P.B = B;
  P.L = L;
  P.coef.assign(static_cast<std::size_t>(B * L), 0.0);
  P.active.assign(static_cast<std::size_t>(B * L), 0);
  std::vector<double> per_seq(static_cast<std::size_t>(B), 0.0);
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < L; ++t) {
      bool on = args.mask.data_handle() == nullptr || args.mask(b, t) != 0;
      on = on && (!has_labels || args.labels(b, t) != args.ignore_index);
      on = on && extra_active(b, t);
      if (!on) continue;
      P.active[static_cast<std::size_t>(b * L + t)] = 1;
      per_seq[static_cast<std::size_t>(b)] += 1.0;
      ++P.active_tokens;
    }
  for (index_t b = 0; b < B; ++b) P.active_sequences += per_seq[static_cast<std::size_t>(b)] > 0;
  // The same final mask gives numerator and denominators (design.md section 4).
  const std::vector<double> row_scale = aggregation_row_scales(per_seq, L, agg);
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < L; ++t) {
      const std::size_t k = static_cast<std::size_t>(b * L + t);
      if (!P.active[k]) continue;
      double w = 1.0;
      if (args.weights.data_handle() != nullptr) {
        w = static_cast<double>(args.weights(b, t));
        GRPO_EXPECTS(math::is_finite(w), bad_value,
                     "weights: non-finite weight at token (" + std::to_string(b) + ", " +
                         std::to_string(t) + ")");
      }
      P.coef[k] = w * row_scale[static_cast<std::size_t>(b)];
    }
  return P;
}

// -----------------------------------------------------------------------------------------------
// Row errors: the row kernels return a row_status (they are noexcept and vectorised); the row
// driver turns a non-zero status into the grpo::error below, thrown from the row, and
// grpo::par::for_each_row rethrows the one of the lowest failing row (one error channel).

/// Throws the grpo::error of a failed row (token (b, t) = row / L, row % L).
inline void throw_row_error(std::pair<index_t, int> bad, index_t L, const char* student,
                            const char* teacher) {
  if (bad.first < 0) return;
  const std::string where =
      " at token (" + std::to_string(bad.first / L) + ", " + std::to_string(bad.first % L) + ")";
  switch (bad.second) {
    case student_not_finite:
      GRPO_THROW(bad_value, std::string(student) + ": NaN or +inf logit" + where);
    case student_empty:
      GRPO_THROW(bad_value, std::string(student) + ": every logit is -inf" + where);
    case teacher_not_finite:
      GRPO_THROW(bad_value, std::string(teacher) + ": NaN or +inf value" + where);
    case teacher_empty:
      GRPO_THROW(bad_value,
                 std::string(teacher) + ": no finite entry (no probability mass)" + where);
    case id_out_of_range:
      GRPO_THROW(out_of_range, std::string(teacher) + ": id outside [0, vocab)" + where);
    case id_duplicate:
      GRPO_THROW(bad_value, std::string(teacher) + ": the same id appears twice" + where);
    case teacher_mass_above_one:
      GRPO_THROW(bad_value, std::string(teacher) + ": probabilities sum to more than 1" + where);
    default:
      GRPO_THROW(bad_value, "distill: row failed" + where);
  }
}

/// Sum of c_bt * l_bt in row order (deterministic whatever the thread count) and the per-token
/// output.
inline double reduce_loss(const token_plan& P, const std::vector<double>& row_loss,
                          const token_args& args) {
  double total = 0.0;
  for (index_t b = 0; b < P.B; ++b)
    for (index_t t = 0; t < P.L; ++t) {
      const std::size_t k = static_cast<std::size_t>(b * P.L + t);
      if (P.active[k] && P.coef[k] != 0.0) total += P.coef[k] * row_loss[k];
      if (args.per_token_loss.data_handle() != nullptr)
        args.per_token_loss(b, t) = P.active[k] ? static_cast<float>(row_loss[k]) : 0.0f;
    }
  // Finite logits can still give an unrepresentable divergence (a logit / T beyond DBL_MAX makes
  // a student log-probability -inf where the teacher has mass): a named error, not a silent inf.
  GRPO_EXPECTS(std::isfinite(total), bad_value,
               "distill: the loss is not finite for finite inputs (logits / temperature overflow "
               "double); rescale the logits or raise the temperature");
  return total;
}

}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::distill::detail

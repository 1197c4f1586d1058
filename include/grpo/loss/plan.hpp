// SPDX-License-Identifier: Apache-2.0
/// @file plan.hpp
/// @brief Which engine of compute_loss_into runs a call: per-kind traits (kind_traits<K>, one
///        specialisation per policy_loss_kind, checked exhaustively at compile time) and
///        plan(options, batch, outputs), the one place where the dispatch rules live (the
///        token-level row path and its vectorised form, the sequence-level row path, the general
///        engine, the host-side substitutions), plus the fused step's single-pass predicate.
///
/// Engines (see loss.hpp), as plan() decides them today, first match wins:
/// - the host-side substitutions: ratio_base_sampler (rerun with sampler_logp as old_logp) and
///   kl_openrlhf_float32 with a KL term;
/// - a sequence-level ratio (GSPO / GSPO-token: PPO clip) runs the sequence rows
///   (loss/sequence_rows.hpp) for float or double inputs with rows contiguous along t, on every
///   path (float on avx2 / avx512: the packet rows of kernels/sequence_row.ipp; double inputs and
///   the baseline path: the lane-generic rows of loss/simd_sequence_rows.hpp), either with the
///   entropy term (the bonus of any coefficient or the entropy metric alone; no other row-wide
///   term), or with a rollout IS weight (token / sequence / seq-mask TIS, or the caller's
///   is_weights, their rows unit stride too) and no OPSM, top-entropy mask or entropy term;
/// - the general engine's packet rows (loss/general_rows.hpp; float inputs, unit strides, the
///   avx2 / avx512 paths, token level, no bias-corrected KL): GMPO / VESPO with per-sequence
///   advantages and no other row-wide or entropy term (weighted_rows), and the token-level kinds
///   (PPO clip, CISPO, SAPO, REINFORCE) with a rollout IS weight (tis_options or is_weights) and /
///   or OPSM (tis_rows), with the entropy term (not beside OPSM in the denominator) and the
///   top-entropy mask (not beside OPSM);
/// - the token rows (loss/token_rows.hpp) for the token-level kinds with no row-wide term but the
///   entropy term or the top-entropy mask: vectorised (token_rows_simd) for float and double
///   inputs with unit strides on every path (the packet rows on avx2 / avx512, the lane-generic
///   rows elsewhere) unless approx_kl is unclamped beside a finite log-ratio clamp; else the
///   scalar rows, whose top-entropy mask is left to the general engine;
/// - everything else: the general engine (loss/general_rows.hpp).
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/parallel.hpp>
#include <grpo/loss/kernels/general_rows.hpp>  // weighted_rows_isa
#include <grpo/loss/options.hpp>
#include <grpo/policy_loss.hpp>

#include <cmath>
#include <type_traits>
#include <utility>

namespace grpo {

/// What the engines need to know about a policy kind. Every policy_loss_kind has exactly one
/// specialisation; the primary template is left undefined so that a kind without traits fails to
/// compile (see kind_traits_complete below). Adding a kind: docs/adding-a-loss.md.
template <policy_loss_kind K>
struct kind_traits;

template <>
struct kind_traits<policy_loss_kind::ppo_clip> {
  static constexpr bool token_rows = true;        ///< the token-level row engine supports it
  static constexpr bool sequence_rows = true;     ///< the sequence-level (GSPO) row engine does
  static constexpr bool sequence_weight = false;  ///< builds its own per-sequence weight
  static constexpr bool row_stats = false;        ///< needs pass-1 row statistics at token level
  static constexpr bool clip_metrics = true;      ///< reports clip fractions
};
template <>
struct kind_traits<policy_loss_kind::cispo> {
  static constexpr bool token_rows = true;
  static constexpr bool sequence_rows = false;
  static constexpr bool sequence_weight = false;
  static constexpr bool row_stats = false;
  static constexpr bool clip_metrics = true;
};
template <>
struct kind_traits<policy_loss_kind::sapo> {
  static constexpr bool token_rows = true;
  static constexpr bool sequence_rows = false;
  static constexpr bool sequence_weight = false;
  static constexpr bool row_stats = false;
  static constexpr bool clip_metrics = false;
};
template <>
struct kind_traits<policy_loss_kind::gmpo> {
  static constexpr bool token_rows = false;
  static constexpr bool sequence_rows = false;
  static constexpr bool sequence_weight = true;  ///< geometric mean of the row's token ratios
  static constexpr bool row_stats = false;       ///< (its row sums run in the general pass)
  static constexpr bool clip_metrics = true;
};
template <>
struct kind_traits<policy_loss_kind::reinforce> {
  static constexpr bool token_rows = true;
  static constexpr bool sequence_rows = false;
  static constexpr bool sequence_weight = false;
  static constexpr bool row_stats = false;
  static constexpr bool clip_metrics = false;
};
template <>
struct kind_traits<policy_loss_kind::vespo> {
  static constexpr bool token_rows = false;
  static constexpr bool sequence_weight = true;  ///< phi of the row's log weight
  static constexpr bool sequence_rows = false;
  static constexpr bool row_stats = true;  ///< the log weight lw_i in pass 1
  static constexpr bool clip_metrics = false;
};

namespace detail {
template <std::size_t... I>
constexpr bool all_kinds_have_traits(std::index_sequence<I...>) {
  // sizeof on an incomplete kind_traits<K> is ill-formed: a kind without traits stops here.
  return ((sizeof(kind_traits<static_cast<policy_loss_kind>(I)>) > 0) && ...);
}
/// One trait of kind k, read through the specialisations (runtime kind -> constexpr table).
template <class F, std::size_t... I>
constexpr bool kind_trait(policy_loss_kind k, F f, std::index_sequence<I...>) {
  bool r = false;
  ((static_cast<std::size_t>(k) == I ? (r = f(kind_traits<static_cast<policy_loss_kind>(I)>{}))
                                     : false),
   ...);
  return r;
}
using kind_seq = std::make_index_sequence<policy_loss_kind_count>;
}  // namespace detail

static_assert(detail::all_kinds_have_traits(detail::kind_seq{}),
              "every policy_loss_kind needs a kind_traits specialisation (loss/plan.hpp)");

/// The traits of a run-time kind.
struct kind_info {
  bool token_rows, sequence_rows, sequence_weight, row_stats, clip_metrics;
};
constexpr kind_info kind_traits_of(policy_loss_kind k) noexcept {
  const auto s = detail::kind_seq{};
  return {detail::kind_trait(
              k, [](auto t) { return decltype(t)::token_rows; }, s),
          detail::kind_trait(
              k, [](auto t) { return decltype(t)::sequence_rows; }, s),
          detail::kind_trait(
              k, [](auto t) { return decltype(t)::sequence_weight; }, s),
          detail::kind_trait(
              k, [](auto t) { return decltype(t)::row_stats; }, s),
          detail::kind_trait(
              k, [](auto t) { return decltype(t)::clip_metrics; }, s)};
}

/// The row loop of every pass of the loss engines (core/parallel.hpp): threaded from rows x tokens
/// >= par::min_parallel_work (2^15), the one threshold.
inline par::loop_options loss_loop(index_t Tn) noexcept {
  par::loop_options lo;
  lo.work_per_row = Tn;
  return lo;
}

/// Which engine runs a call (the first applicable, in this order).
enum class loss_route : unsigned char {
  sampler_base,     ///< ratio_base_sampler: rerun with sampler_logp as old_logp, then metrics
  openrlhf_kl_f32,  ///< kl_openrlhf_float32 with a KL term: engine without KL + float32 KL
  sequence_rows,    ///< loss/sequence_rows.hpp
  general_rows,     ///< the general engine's packet rows (general_rows.hpp general_packet_rows)
  token_rows,       ///< loss/token_rows.hpp (vectorised when plan.simd)
  general,          ///< loss/general_rows.hpp
};

/// The decisions of one call, taken once before any pass runs.
struct loss_plan {
  loss_route route = loss_route::general;
  bool simd = false;       ///< token rows: the vectorised row kernels (token_rows_simd)
  bool row_stats = false;  ///< general engine: pass 1 forms row statistics (not only counts)
  bool use_emask = false;  ///< top-entropy mask on
};

/// The row statistics a configuration needs (n, xbar, gap, rho, lw of pass 1): sequence levels,
/// OPSM, sequence TIS / seq-mask TIS, or a kind with row statistics (VESPO). GMPO and the
/// top-entropy mask need the row log-probs as well (detail::loss_params::needs_row_logp).
inline bool needs_row_stats(const loss_options& o) noexcept {
  return o.policy.level != is_level::token || o.opsm_threshold.has_value() ||
         (o.tis.enabled && (o.tis.sequence || o.tis.seq_mask)) ||
         kind_traits_of(o.policy.kind).row_stats;
}

/// True when every token's dL/dlogp and dL/dH can be computed from that token alone plus
/// mask-only row factors (the fused step's single-pass schedule is exact).
inline bool single_pass_ok(const loss_options& o) noexcept {
  const auto& P = o.policy;
  return P.level == is_level::token && !kind_traits_of(P.kind).sequence_weight &&
         !o.opsm_threshold && o.top_entropy_quantile >= 1.0 && !(o.tis.enabled && o.tis.sequence);
}

/// Storage types the vectorised engines take: float or double inputs and outputs, a mask of the
/// input type (or an integer mask).
template <class T, class M, class G>
inline constexpr bool plan_simd_types = (std::is_same_v<T, float> || std::is_same_v<T, double>)&&(
    std::is_same_v<G, float> || std::is_same_v<G, double>)&&(std::is_same_v<M, T> ||
                                                             std::is_integral_v<M>);

/// The engine of a call (after validate(o); before the batch checks, which it does not need). The
/// vectorised paths need plan_simd_types and rows contiguous along t (advantages: contiguous or
/// per sequence).
template <class T, class M, class G>
loss_plan plan(const loss_options& o, const loss_batch<T, M>& in, const loss_outputs<G>& out) {
  const auto& P = o.policy;
  const kind_info K = kind_traits_of(P.kind);
  loss_plan pl;
  pl.use_emask = o.top_entropy_quantile < 1.0;
  pl.row_stats = needs_row_stats(o);
  if (o.ratio_base_sampler) {
    pl.route = loss_route::sampler_base;
    return pl;
  }
  if (o.kl_openrlhf_float32 && o.kl_coef != 0.0) {
    pl.route = loss_route::openrlhf_kl_f32;
    return pl;
  }
  auto has = [](const auto& v) { return v.data_handle() != nullptr; };
  const index_t Tn = in.logp.extent(1);
  const bool has_old = has(in.old_logp);
  // No row-wide term besides (at most) the sequence ratio. The entropy term (bonus or metric)
  // without the top-entropy mask is token-local: the token rows add it in one more sweep per
  // row (entropy_row); the other row engines take none.
  const bool no_extra = !o.opsm_threshold.has_value() && !pl.use_emask && !o.tis.enabled &&
                        !has(in.is_weights);
  const bool entropy_term = has(in.entropy) || o.entropy_coef != 0.0;
  const bool local = no_extra && !entropy_term;
  constexpr bool simd_types = plan_simd_types<T, M, G>;
  auto unit_t = [&](const auto& v) { return Tn <= 1 || v.stride(1) == 1; };
  const bool unit_rows = unit_t(in.logp) && (!has_old || unit_t(in.old_logp)) &&
                         (o.kl_coef == 0.0 || unit_t(in.ref_logp)) && unit_t(in.mask) &&
                         (in.advantages.stride(1) == 0 || unit_t(in.advantages)) &&
                         unit_t(out.grad_logp) &&
                         (!has(out.per_token_loss) || unit_t(out.per_token_loss)) &&
                         (!has(out.grad_entropy) || unit_t(out.grad_entropy)) &&
                         (!has(in.entropy) || unit_t(in.entropy));
  // The general engine's packet rows exist: float inputs, rows contiguous along t, and the
  // avx2 / avx512 path (the conditions the general_rows branches below share).
  const bool packet_rows = std::is_same_v<T, float> && simd_types && unit_rows &&
                           detail::weighted_rows_isa() != isa::baseline;
  // The sequence rows (GSPO / GSPO-token) take the entropy term too (one more sweep per row, the
  // token rows' entropy_row_run; float and double inputs, every path).
  if (simd_types && P.level != is_level::token && K.sequence_rows && no_extra && unit_rows) {
    pl.route = loss_route::sequence_rows;
    return pl;
  }
  // GSPO / GSPO-token with a rollout IS weight (token / sequence / seq-mask TIS, or the caller's
  // is_weights) and no other row-wide or entropy term: the sequence rows carry the weight (the
  // packet rows of kernels/sequence_row.ipp for float inputs on avx2 / avx512, the lane-generic
  // rows for double inputs and on the baseline path), unit stride along t for the sampler /
  // weight rows too.
  if (simd_types && P.level != is_level::token && K.sequence_rows && unit_rows &&
      (o.tis.enabled || has(in.is_weights)) && !o.opsm_threshold.has_value() && !pl.use_emask &&
      !entropy_term && (!has(in.sampler_logp) || unit_t(in.sampler_logp)) &&
      (!has(in.is_weights) || unit_t(in.is_weights))) {
    pl.route = loss_route::sequence_rows;
    return pl;
  }
  // The general engine's packet rows, where they exist (float inputs, avx2 / avx512 paths; on the
  // baseline path the general engine runs): GMPO / VESPO at token level with per-sequence
  // advantages and no other row-wide term (one weight per row: two sweeps like GSPO's,
  // kernels/general_row.ipp); the token-level kinds with a rollout IS weight (sampler_logp or
  // is_weights) and / or OPSM, and no other row-wide term (kernels/tis_row.ipp).
  const bool packet_ok = packet_rows && P.level == is_level::token && !o.kl_bias_correction;
  if (packet_ok && K.sequence_weight && local && in.advantages.stride(1) == 0) {
    pl.route = loss_route::general_rows;
    return pl;
  }
  // (the entropy term as on the token rows: one more sweep per row). The caller's is_weights
  // (exclusive with tis, check_batch) take the TIS rows' place of exp(lo - ls). OPSM, with or
  // without an IS weight: its row gap in a first sweep (final_counts counts the kept tokens with
  // the same code); an entropy term only where OPSM stays out of the denominators (its mask is
  // then the base mask). The top-entropy mask without OPSM (tis_row_emask).
  const bool isw = has(in.is_weights), opsm = o.opsm_threshold.has_value();
  const bool tis_rows_opts = (o.tis.enabled || isw || opsm) && !(opsm && pl.use_emask) &&
                             !(opsm && o.opsm_in_denominator && entropy_term);
  const bool smp_unit = !has(in.sampler_logp) || unit_t(in.sampler_logp);
  if (packet_ok && K.token_rows && tis_rows_opts && smp_unit && (!isw || unit_t(in.is_weights))) {
    pl.route = loss_route::general_rows;
    return pl;
  }
  // The top-entropy mask (in or out of the denominators) with no other row-wide term: once the
  // threshold is known (pass 1, emask_packet_counts) the keep is token-local, so the vectorised
  // token rows carry it (token_rows.hpp token_row_emask); the scalar rows do not: other layouts
  // and types run the general engine.
  const bool emask_only = pl.use_emask && !o.opsm_threshold.has_value() && !o.tis.enabled &&
                          !has(in.is_weights);
  if (P.level == is_level::token && K.token_rows && (no_extra || emask_only)) {
    pl.route = loss_route::token_rows;
    // the row kernels report the clamped log ratio: an unclamped approx_kl runs the scalar rows.
    // The entropy term runs vectorised for float and double inputs on every path (the packet
    // sweep, or the lane-generic one: entropy_row_packet); both rows give a token the same bits
    // wherever it sits in the row (masked / padded tail steps), which the fused step's chunks
    // rely on. Other types and strided views take the scalar rows (double per token).
    const bool entropy_packet = !entropy_term || detail::entropy_row_packet<T>();
    pl.simd = simd_types && unit_rows && entropy_packet &&
              !(o.approx_kl_unclamped &&
                (std::isfinite(P.log_ratio_min) || std::isfinite(P.log_ratio_max)));
    if (pl.simd || !pl.use_emask) return pl;
    pl.simd = false;  // (the top-entropy mask on the scalar rows: the general engine below)
  }
  pl.route = loss_route::general;
  return pl;
}

}  // namespace grpo

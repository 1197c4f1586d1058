// SPDX-License-Identifier: Apache-2.0
/// @file compute.hpp
/// @brief compute_loss_into / compute_loss: validate -> plan -> dispatch to one engine -> merge
///        (see <grpo/loss.hpp> for the semantics), the host-side substitutions (OpenRLHF's
///        sampler-based ratio and float32 in-loss KL) and the overflow rule.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/isa.hpp>  // GRPO_ISA_ABI
#include <grpo/core/strided_view.hpp>
#include <grpo/detail/openrlhf_f32.hpp>
#include <grpo/loss/call.hpp>
#include <grpo/loss/general_rows.hpp>
#include <grpo/loss/options.hpp>
#include <grpo/loss/plan.hpp>
#include <grpo/loss/sequence_rows.hpp>
#include <grpo/loss/token_rows.hpp>

#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace grpo {

/// Owning result of compute_loss(): scalars plus row-major [B, T] vectors. The per-token loss is
/// evaluated at every position (padding included, like the peers' pg_losses) but only masked-in
/// positions enter the scalar loss; hand grad_logp to any autograd engine (logp.backward(grad)).
struct loss_result : loss_scalars {
  index_t rows = 0, cols = 0;
  std::vector<double> per_token_loss;  ///< [B*T] row-major
  std::vector<double> grad_logp;       ///< [B*T] d loss / d logp
  std::vector<double> grad_entropy;    ///< [B*T] d loss / d H
  std::vector<double> per_seq_loss;    ///< [B] (GMPO)
  /// Element (i, t) of a [B*T] vector.
  [[nodiscard]] double at(const std::vector<double>& v, index_t i, index_t t) const {
    return v[static_cast<std::size_t>(i * cols + t)];
  }
};

namespace detail {
inline namespace GRPO_ISA_ABI {
template <class T, class M, class G>
loss_scalars compute_loss_into_flagged(const loss_options& o, const loss_batch<T, M>& in,
                                       const loss_outputs<G>& out, loss_call_flags f);

/// OpenRLHF GSPO + vLLM IS (loss_options::ratio_base_sampler): the sampler log-probs are the
/// ratio base. metrics.approx_kl stays lo - lp against old_logp when given (OpenRLHF's ppo_kl),
/// not the ratio base; over the mask after truncation (no OPSM / entropy mask: else the base's).
template <class T, class M, class G>
loss_scalars loss_sampler_base(const loss_options& o, const loss_batch<T, M>& in,
                               const loss_outputs<G>& out, loss_call_flags f) {
  GRPO_EXPECTS(has(in.sampler_logp), shape_mismatch,
               "sampler_logp: required when ratio_base_sampler is set");
  loss_options o2 = o;
  o2.ratio_base_sampler = false;
  loss_batch<T, M> b2 = in;
  b2.old_logp = in.sampler_logp;
  b2.sampler_logp = {};
  loss_scalars r = compute_loss_into_flagged(o2, b2, out, f);
  if (has(in.old_logp) && !o.opsm_threshold && !(o.top_entropy_quantile < 1.0)) {
    expect_extents(in.old_logp, in.logp.extents(), "old_logp");
    stat_accumulator ak;
    for (index_t i = 0; i < in.logp.extent(0); ++i)
      for (index_t t = 0; t < in.logp.extent(1); ++t) {
        const bool tr = !in.truncated.empty() && in.truncated[static_cast<std::size_t>(i)];
        const double m = tr ? 0.0 : static_cast<double>(in.mask(i, t));
        if (m != 0.0)
          ak.add(static_cast<double>(in.old_logp(i, t)) - static_cast<double>(in.logp(i, t)), m);
      }
    r.metrics.approx_kl = ak;
  }
  return r;
}

/// compute_loss_into with the in-loss KL as OpenRLHF's actor computes it in float32
/// (loss_options::kl_openrlhf_float32): the policy and entropy terms by compute_loss_into without
/// the KL (any engine: none of them sees the flag), then the KL term over the whole batch by
/// detail::openrlhf_kl_loss_core (torch's float32 sum is not row-separable): its value on every
/// position into the per-token loss (+ kl_coef kl_t), its float32 gradient into grad_logp on
/// valid tokens, kl_loss = OpenRLHF's float32 kl_loss, loss += fl(kl_loss kl_coef) (the actor's
/// `kl_loss * kl_ctl`). N: the KL aggregation's global_tokens (x its scale, OpenRLHF dp_size), or
/// the batch's valid tokens (max with token_count_floor); N = 0 gives a 0 term (the engine's
/// convention; OpenRLHF: NaN). The mask (after truncation) must be 0 / 1, as OpenRLHF's bool.
template <class T, class M, class G>
loss_scalars loss_openrlhf_kl_f32(const loss_options& o, const loss_batch<T, M>& in,
                                  const loss_outputs<G>& out, loss_call_flags f) {
  GRPO_EXPECTS(has(in.ref_logp), shape_mismatch, "ref_logp: required when kl_coef != 0");
  loss_options o2 = o;
  o2.kl_coef = 0.0;
  o2.kl_openrlhf_float32 = false;
  loss_batch<T, M> b2 = in;
  b2.ref_logp = {};
  loss_scalars res = compute_loss_into_flagged(o2, b2, out, f);  // validates the other inputs
  const index_t B = in.logp.extent(0), Tn = in.logp.extent(1);
  expect_extents(in.ref_logp, {B, Tn}, "ref_logp");
  expect_host(in.ref_logp, "ref_logp");
  auto mk = [&](index_t i, index_t t) {
    const bool tr = !in.truncated.empty() && in.truncated[static_cast<std::size_t>(i)];
    return !tr && static_cast<double>(in.mask(i, t)) != 0.0;
  };
  auto lp = [&](index_t i, index_t t) { return static_cast<double>(in.logp(i, t)); };
  auto lr = [&](index_t i, index_t t) { return static_cast<double>(in.ref_logp(i, t)); };
  double count = 0.0;
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < Tn; ++t) {
      if (!mk(i, t)) continue;
      GRPO_EXPECTS(static_cast<double>(in.mask(i, t)) == 1.0, bad_value,
                   "mask: entries must be 0 or 1 with kl_openrlhf_float32 (OpenRLHF's "
                   "action_mask is bool; row " +
                       std::to_string(i) + ")");
      GRPO_EXPECTS(std::isfinite(lr(i, t)), bad_value,
                   "ref_logp: non-finite value on a valid token");
      count += 1.0;
    }
  const agg_options& ka = o.kl_agg ? *o.kl_agg : o.agg;
  double N = ka.global_tokens ? *ka.global_tokens : count;
  N = N < ka.token_count_floor ? ka.token_count_floor : N;
  const bool want_ptl = has(out.per_token_loss);
  loss_metrics kmet;
  double kl_loss = 0.0;
  if (N > 0) {
    kl_loss = openrlhf_kl_loss_core(
        o.kl.estimator, B, Tn, lp, lr, mk, N, ka.scale, o.kl_coef, true,
        [&](index_t i, index_t t, double k, double g) {
          if (want_ptl)
            out.per_token_loss(i, t) =
                static_cast<G>(static_cast<double>(out.per_token_loss(i, t)) + o.kl_coef * k);
          if (!mk(i, t)) return;
          out.grad_logp(i, t) = static_cast<G>(static_cast<double>(out.grad_logp(i, t)) + g);
          kmet.kl.add(k, 1.0);
        });
  } else if (want_ptl) {  // no valid token: values only (every position, as the engine)
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < Tn; ++t)
        out.per_token_loss(i, t) = static_cast<G>(
            static_cast<double>(out.per_token_loss(i, t)) +
            o.kl_coef * openrlhf_kl_token(o.kl.estimator, lp(i, t), lr(i, t), 0.0, true).value);
  }
  res.metrics.kl = kmet.kl;
  res.kl_loss = kl_loss;
  const double kl_term =
      static_cast<double>(mul32(static_cast<float>(kl_loss), static_cast<float>(o.kl_coef)));
  res.loss = res.policy_loss + kl_term - o.entropy_coef * res.entropy_loss;
  return res;
}

/// The engines after the batch checks: pass 1 (vectorised mask pass, or the general pass 1),
/// the final-mask counts, the row factors, then the engine of the plan.
template <class T, class M, class G>
loss_scalars run_engines_on(const loss_options& o, const loss_plan& pl, const loss_batch<T, M>& in,
                            const loss_outputs<G>& out, loss_call_flags f) {
  const loss_call<T, M, G> c(o, in, out, f);
  loss_rows r(c.B);
  general_stats gs;
  const bool vec_pass1 =
      pl.route == loss_route::sequence_rows || pl.route == loss_route::general_rows ||
      (pl.route == loss_route::token_rows && pl.simd);
  if constexpr (plan_simd_types<T, M, G>) {
    if (vec_pass1) vector_mask_pass(c, r);
  }
  // (The vectorised engines need no row contexts: a [B] vector of 144-byte contexts is a fresh
  // page-faulted allocation per call at training batch sizes.)
  if (!vec_pass1) gs = general_pass1(c, pl, r);
  final_counts(c, gs, r);
  row_factors(o, c.Tn, r);
  switch (pl.route) {
    case loss_route::sequence_rows:
      return sequence_rows(c, r);
    case loss_route::token_rows:
      return token_rows(c, pl, r);
    case loss_route::general_rows:
      return general_packet_rows(c, r);
    default:
      return general_rows(c, gs, r);
  }
}

/// run_engines_on, on one thread where the gradient is compute_loss_metrics' scratch row
/// (f.scratch_grad: rows sharing one buffer would be stored from several threads): every engine
/// but the token-level rows (which give each thread a private row for it).
template <class T, class M, class G>
loss_scalars run_engines(const loss_options& o, const loss_plan& pl, const loss_batch<T, M>& in,
                         const loss_outputs<G>& out, loss_call_flags f) {
  if (f.scratch_grad && in.logp.extent(0) > 1 && pl.route != loss_route::token_rows) {
    [[maybe_unused]] const one_thread_scope serial;
    return run_engines_on(o, pl, in, out, f);
  }
  return run_engines_on(o, pl, in, out, f);
}

}  // namespace GRPO_ISA_ABI
}  // namespace detail

inline namespace GRPO_ISA_ABI {

/// Computes the objective of one batch into caller-owned outputs (see <grpo/loss.hpp>).
/// @pre all given views are host-resident with the extents of batch.logp; advantages [B, T]
///      (stride 0 along T allowed); truncated empty or size B. Valid tokens need finite logp,
///      old_logp, advantages (and ref_logp when KL is on): otherwise [grpo.bad_value].
/// @post out.grad_logp(i, t) = d loss / d logp(i, t); exactly 0 where the mask (after truncation)
///       is 0. (A token removed only by OPSM / the entropy mask still moves a sequence-level
///       ratio.) On an exception the contents of `out` are unspecified.
/// This is the computation without the overflow handling of compute_loss_into (below). The output
/// views must address distinct elements ([grpo.bad_option] naming the view: e.g. a gradient
/// with row stride 0); f: the library's own entry points (compute_loss_metrics' scratch row).
template <class T, class M, class G>
loss_scalars compute_loss_into_unchecked(const loss_options& o, const loss_batch<T, M>& in,
                                         const loss_outputs<G>& out,
                                         detail::loss_call_flags f = {}) {
  // Validation first: every shape and option error is reported before any output is written,
  // and names the argument.
  validate(o);
  const loss_plan pl = plan(o, in, out);
  switch (pl.route) {
    case loss_route::sampler_base:
      return detail::loss_sampler_base(o, in, out, f);
    case loss_route::openrlhf_kl_f32:
      return detail::loss_openrlhf_kl_f32(o, in, out, f);
    default:
      break;
  }
  detail::check_batch(o, in, out);
  detail::expect_loss_outputs(out, f);
  return detail::run_engines(o, pl, in, out, f);
}

/// Log-ratio bound of the overflow rerun of compute_loss_into: exp(700) ~ 1.0e304 is a finite
/// double; float storage runs the vectorised kernels in float lanes: exp(88) ~ 1.7e38 < FLT_MAX.
template <class T>
inline constexpr double overflow_log_ratio_max = std::is_same_v<T, float> ? 88.0 : 700.0;

}  // namespace GRPO_ISA_ABI
namespace detail {
inline namespace GRPO_ISA_ABI {
/// The overflow rule's decision, shared by compute_loss_into and loss/entry.hpp's chunks: true
/// when a ratio overflowed (ratio_inf) and the log-ratio bound is above overflow_log_ratio_max<T>,
/// i.e. the call is rerun with the log-ratio clamped there; plain PPO-clip (no dual clip, no delta)
/// cannot be rescued that way: [grpo.bad_value].
template <class T>
bool overflow_rerun(const loss_options& o, bool ratio_inf) {
  const auto& P = o.policy;
  if (!ratio_inf || !(P.log_ratio_max > overflow_log_ratio_max<T>)) return false;
  GRPO_EXPECTS(!(P.kind == policy_loss_kind::ppo_clip && P.dual_clip_c == 0 && P.delta == 0),
               bad_value,
               "logp - old_logp >= 709.78 on a valid token: the importance ratio overflows and "
               "the PPO-clip loss -A r is not finite for A < 0; set "
               "policy_options.log_ratio_max (verl: 20) or dual_clip_c");
  return true;
}
/// The last step of the overflow rule: a loss that is still not finite is a named error.
inline void expect_finite_loss(double loss) {
  GRPO_EXPECTS(std::isfinite(loss), bad_value,
               "compute_loss_into: the loss is not finite for finite inputs (a log-ratio or KL "
               "term overflows double); clamp it with policy_options.log_ratio_max / "
               "loss_options.kl clamps");
}

/// compute_loss_into with the entry flags f (see compute_loss_into below for the overflow rule).
template <class T, class M, class G>
loss_scalars compute_loss_into_flagged(const loss_options& o, const loss_batch<T, M>& in,
                                       const loss_outputs<G>& out, loss_call_flags f) {
  loss_scalars s = compute_loss_into_unchecked(o, in, out, f);
  if (overflow_rerun<T>(o, s.metrics.ratio.max == std::numeric_limits<double>::infinity())) {
    loss_options o2 = o;
    o2.policy.log_ratio_max = overflow_log_ratio_max<T>;
    s = compute_loss_into_unchecked(o2, in, out, f);
  }
  expect_finite_loss(s.loss);
  return s;
}
}  // namespace GRPO_ISA_ABI
}  // namespace detail
inline namespace GRPO_ISA_ABI {

/// compute_loss_into_unchecked, then the overflow rule (design.md section 4: a finite input never
/// gives a NaN gradient beside a finite loss). A valid token with logp - old_logp >= log(DBL_MAX)
/// ~ 709.78 (88.7 for float storage; where log_ratio_max does not clamp) makes r = exp(x) = +inf,
/// seen in O(1) as metrics.ratio.max = +inf. The call is then rerun with the log-ratio clamped
/// at 700 (float: 88), which is
/// exact where the surrogate is flat in r beyond that point (clipped PPO with dual clip or delta,
/// CISPO's capped / clipped weight, SAPO's saturated gate, REINFORCE, VESPO's clamped weight,
/// GMPO's clipped ratio): d l / d r = 0 there, so the limit of d l / d x = d l / d r * r is 0,
/// where 0 * inf gave NaN. Plain PPO-clip (no dual clip, no delta) grows as -A r for A < 0: a
/// named error. A loss that still is not finite (e.g. a KL estimator or |A| r past DBL_MAX) is a
/// named error as well. Inputs that do not overflow take one call and are unchanged bit for bit.
template <class T, class M, class G>
loss_scalars compute_loss_into(const loss_options& o, const loss_batch<T, M>& in,
                               const loss_outputs<G>& out) {
  return detail::compute_loss_into_flagged(o, in, out, {});
}

/// Allocating convenience front end of compute_loss_into (double outputs).
/// @pre see compute_loss_into.
template <class T, class M>
loss_result compute_loss(const loss_options& o, const loss_batch<T, M>& in) {
  detail::check_view(in.logp, "logp");  // extents valid before B * T is allocated
  loss_result r;
  r.rows = in.logp.extent(0);
  r.cols = in.logp.extent(1);
  const auto n = static_cast<std::size_t>(r.rows * r.cols);
  r.per_token_loss.assign(n, 0.0);
  r.grad_logp.assign(n, 0.0);
  r.grad_entropy.assign(n, 0.0);
  r.per_seq_loss.assign(static_cast<std::size_t>(r.rows), 0.0);
  loss_outputs<double> out;
  out.grad_logp = make_view(r.grad_logp.data(), {r.rows, r.cols});
  out.per_token_loss = make_view(r.per_token_loss.data(), {r.rows, r.cols});
  out.grad_entropy = make_view(r.grad_entropy.data(), {r.rows, r.cols});
  out.per_seq_loss = std::span<double>(r.per_seq_loss);
  static_cast<loss_scalars&>(r) = compute_loss_into(o, in, out);
  return r;
}

/// Positional convenience: compute_loss(options, logp, old_logp, ref_logp, advantages, mask).
/// Pass a default-constructed view for old_logp (on-policy) or ref_logp (no KL term).
/// @pre see compute_loss_into; @post see loss_result.
template <class T, class M>
loss_result compute_loss(const loss_options& o, strided_view<const T, 2> logp,
                         strided_view<const T, 2> old_logp, strided_view<const T, 2> ref_logp,
                         strided_view<const T, 2> advantages, strided_view<const M, 2> mask) {
  loss_batch<T, M> b;
  b.logp = logp;
  b.old_logp = old_logp;
  b.ref_logp = ref_logp;
  b.advantages = advantages;
  b.mask = mask;
  return compute_loss(o, b);
}

}  // namespace GRPO_ISA_ABI

}  // namespace grpo

// Opt-in compiled instances (GRPO_LOSS_EXTERN_TEMPLATES / GRPO_LOSS_INSTANTIATE; nothing otherwise).
#include <grpo/loss/extern_instances.hpp>

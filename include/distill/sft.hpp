// SPDX-License-Identifier: Apache-2.0
/// @file sft.hpp
/// @brief SFT negative log-likelihood on teacher tokens (DeepSeek-R1 "distillation" is exactly
/// this:
///        cross-entropy on ~800k curated samples, arXiv 2501.12948), with ignore_index, masks,
///        per-token weights, label smoothing, temperature and the GRPO aggregation modes; value and
///        gradient with respect to the logits in one fused pass family over the vocabulary.
///
/// Per token with logits s, label y, z' = s / T, q = softmax(z'):
///     l = (1 - eps) (-log q_y) + eps (-(1/V) sum_j log q_j)       (torch CrossEntropyLoss
///     smoothing) dl/ds_j = (1/T) [ q_j - (1 - eps) delta_jy - eps / V ]
/// The target element is written from -(1 - eps) expm1(log q_y) in fp32 before rounding, so a
/// confident token (q_y > 1 - 1e-6) keeps its gradient digits (Liger CE's cancellation note).
#pragma once

#include <distill/dense.hpp>
#include <distill/detail/engine.hpp>
#include <distill/options.hpp>
#include <grpo/core/tensor_traits.hpp>
#include <grpo/ops/distill.hpp>
#include <grpo/ops/softmax.hpp>

#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace grpo::distill {

/// Options of sft_loss.
struct sft_options {
  std::int64_t ignore_index = -100;  ///< labels equal to this are masked (HF / torch convention)
  double label_smoothing = 0.0;      ///< eps in [0, 1)
  double temperature = 1.0;          ///< T > 0 (logits divided by T; gradient carries 1/T)
  agg_options aggregate{};           ///< token_mean by default (grpo/aggregate.hpp)
  double grad_output = 1.0;          ///< upstream scalar: grad = grad_output * dL/ds
};

namespace detail {
inline namespace GRPO_ISA_ABI {

/// One SFT row: value (returned through `value`) and, when g is non-null, the gradient
/// g_j = R.gscale * dl/ds_j with R.gscale = c_bt * grad_output. Pass 1 is the shared
/// row_lse_store (the AVX-512 exp sweep where available), which keeps the exponentials, so the
/// gradient pass needs no exponential: q_j = e_j scale_c.
template <class A, class S, class G>
int sft_row(const S* s, index_t ss, index_t y, A beta, A eps, G* g, index_t gs,
            const dense_row_args<A>& R, double& value) noexcept {
  const index_t V = R.V;
  alignas(64) A xs[chunk];
  alignas(64) A gb[chunk];
  row_exp_cache<A>& cache = local_caches<A>().student;
  // Pass 1: the online state (and the exponentials, kept in the cache).
  bool bad = false;
  const basic_online_lse<A> st = row_lse_store(s, ss, V, beta, xs, cache, bad, R.path);
  if (bad) return student_not_finite;
  if (st.empty()) return student_empty;
  // Label smoothing only: the sum of the finite logits (for the smoothing mean) and whether a
  // -inf is present (then the smoothing term is +inf: log q_j = -inf for that entry).
  double xsum = 0.0;
  index_t n_ninf = 0;
  if (eps > A(0)) {
    for (index_t j0 = 0; j0 < V; j0 += chunk) {
      const index_t n = std::min(chunk, V - j0);
      const index_t np = load_chunk(s + j0 * ss, ss, n, xs);
      A acc[lanes] = {};
      A cnt[lanes] = {};
      for (index_t i = 0; i < np; i += lanes)
        for (index_t k = 0; k < lanes; ++k) {
          const A v = xs[i + k];
          const bool fin = v > neg_inf<A>;
          acc[k] += fin ? v : A(0);
          cnt[k] += fin ? A(0) : A(1);
        }
      xsum += static_cast<double>(lane_sum(acc));
      n_ninf += static_cast<index_t>(lane_sum(cnt)) - (np - n);  // padding is -inf too
    }
  }
  const A m = st.m, logs = st.log_sum();
  const A xy = static_cast<A>(widen(s[y * ss]));
  const A lq_y = ops::log_softmax(xy, m, logs, beta);
  // Everything relative to beta m (the formula is shift-invariant): lse -> log s, z'_y -> beta
  // (x_y - m), mean z' -> beta (mean x - m); exact for rows offset by 1e4.
  const double mean_rel = n_ninf > 0 ? -static_cast<double>(math::infinity<A>())
                                     : static_cast<double>(beta) *
                                           (xsum / static_cast<double>(V) - static_cast<double>(m));
  value = static_cast<double>(ops::smoothed_nll<double>(
      static_cast<double>(logs), static_cast<double>(beta) * (static_cast<double>(xy) - m),
      mean_rel, static_cast<double>(eps)));
  if (g == nullptr) return row_ok;
  // Pass 2: the gradient, every entry as a non-target (q from the cached exponentials; a -inf
  // logit has e = 0, so q = 0 and log q is not needed), then the target overwritten in fp32.
  const A g_logp = -(A(1) - eps);  // dl / dlog q_y
  const A inv_v = A(1) / static_cast<A>(V);
  const A gscale = R.gscale;
  const prob_source<A> qsrc{&cache};
  for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
    const index_t n = std::min(chunk, V - j0);
    const index_t np = (n + lanes - 1) / lanes * lanes;
    chunk_probs(qsrc, j0, c, np, static_cast<const A*>(nullptr), xs);  // q of the chunk
    for (index_t i = 0; i < np; ++i) {
      const A q = xs[i];
      gb[i] = gscale * (ops::log_softmax_grad_nontarget(A(0), q, g_logp, A(0), A(0), beta) +
                        beta * ops::label_smoothing_grad(q, eps, inv_v));
    }
    if (y >= j0 && y < j0 + n) {
      const A q_y = ops::distill_exp(lq_y);
      gb[y - j0] = gscale * (ops::log_softmax_grad(lq_y, q_y, true, g_logp, A(0), A(0), beta) +
                             beta * ops::label_smoothing_grad(q_y, eps, inv_v));
    }
    store_chunk(g + j0 * gs, gs, n, gb);
    // The next row's chunk, so that its pass 1 overlaps DRAM with this row's arithmetic.
    prefetch_range(R.next_s, j0 * R.next_s_bytes, n * R.next_s_bytes);
    prefetch_range<1>(R.next_g, j0 * R.next_g_bytes, n * R.next_g_bytes);
  }
  return row_ok;
}

template <class X>
auto label_view(const X& x) {
  auto v = as_view(x);
  using E = typename decltype(v)::value_type;
  static_assert(std::is_same_v<E, std::int32_t> || std::is_same_v<E, std::int64_t>,
                "grpo::distill::sft_loss: labels must be int32 or int64");
  static_assert(decltype(v)::rank() == 1 || decltype(v)::rank() == 2,
                "grpo::distill::sft_loss: labels must be [N] or [B, L]");
  return as_rank2_tokens(strided_view<const E, decltype(v)::rank()>(v));
}

template <class S, class Y, class G>
loss_result sft_impl(const strided_view<const S, 3>& s, const strided_view<const Y, 2>& y,
                     const strided_view<G, 3>* g, const sft_options& o, const token_args& args) {
  check_student_and_grad(s, g, "logits");
  expect_host(y, "labels");
  const index_t B = s.extent(0), L = s.extent(1), V = s.extent(2);
  expect_extents(y, {B, L}, "labels");
  GRPO_EXPECTS(o.temperature > 0.0 && math::is_finite(o.temperature), bad_option,
               "sft_options.temperature must be finite and > 0");
  (void)grpo::detail::checked_inverse_temperature(o.temperature, "sft_options.temperature");
  GRPO_EXPECTS(o.label_smoothing >= 0.0 && o.label_smoothing < 1.0, bad_option,
               "sft_options.label_smoothing must lie in [0, 1)");
  GRPO_EXPECTS(math::is_finite(o.grad_output), bad_option,
               "sft_options.grad_output must be finite");
  // Labels: ignore_index masks the token; anything else must be a vocabulary id.
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < L; ++t) {
      const std::int64_t lab = static_cast<std::int64_t>(y(b, t));
      GRPO_EXPECTS(lab == o.ignore_index || (lab >= 0 && lab < V), out_of_range,
                   "labels: id " + std::to_string(lab) + " at token (" + std::to_string(b) + ", " +
                       std::to_string(t) + ") is outside [0, " + std::to_string(V) +
                       ") and is not ignore_index");
    }
  const token_plan P = make_plan(B, L, args, o.aggregate, [&](index_t b, index_t t) {
    return static_cast<std::int64_t>(y(b, t)) != o.ignore_index;
  });
  using A = acc_t<S>;
  const A beta = static_cast<A>(1.0 / o.temperature);
  const A eps = static_cast<A>(o.label_smoothing);
  std::vector<double> row_loss(static_cast<std::size_t>(B * L), 0.0);
  dense_row_args<A> R0;
  R0.V = V;
  R0.path = kernel_path();  // read once per call
  R0.beta_s = beta;
  drive_rows(
      s, g, P, R0, [&](double c) { return static_cast<A>(c * o.grad_output); }, true,
      [](dense_row_args<A>&, index_t, index_t) {}, row_loss, "logits", "labels",
      [&](index_t b, index_t t, const S* sp, index_t ss, G* gp, index_t gs,
          const dense_row_args<A>& R, double& value) {
        local_caches<A>().student.reserve(V);
        return sft_row<A>(sp, ss, static_cast<index_t>(y(b, t)), beta, eps, gp, gs, R, value);
      });
  loss_result res;
  res.loss = reduce_loss(P, row_loss, args);
  res.active_tokens = P.active_tokens;
  res.active_sequences = P.active_sequences;
  return res;
}

template <class X>
inline constexpr bool is_sft_options_v = std::is_same_v<std::remove_cvref_t<X>, sft_options>;

}  // inline namespace GRPO_ISA_ABI
}  // namespace detail

// The entry points' bodies depend on the translation unit's flags (the portable row maths):
// one inline namespace per flag set, so that two builds linked together never share a symbol.
inline namespace GRPO_ISA_ABI {

/// SFT loss value (no gradient).
/// @param logits [B, L, V] or [N, V] (float, double, bfloat16, float16; any strides).
/// @param labels [B, L] or [N] (int32 or int64): the teacher's token ids; ignore_index masks.
/// @pre every active row has a finite logit and no NaN / +inf; labels in [0, V) or ignore_index.
/// @post the aggregated NLL; ignored and masked tokens contribute 0. A -inf logit at the label (or
///       anywhere with label smoothing) gives +inf for that token, as the mathematics says.
template <class S, class Y>
loss_result sft_loss(const S& logits, const Y& labels, const sft_options& options,
                     const token_args& args = {}) {
  const auto s = detail::input_view(logits);
  const auto y = detail::label_view(labels);
  return detail::sft_impl(s, y, static_cast<const strided_view<float, 3>*>(nullptr), options, args);
}

/// SFT loss and its gradient with respect to the logits, written into `grad` (may be the logits
/// buffer itself, in place).
/// @pre as the value-only overload; grad has the logits' extents.
/// @post grad = grad_output * dL/dlogits; ignored and masked rows are written as 0.
template <class S, class Y, class Gt>
requires(!detail::is_sft_options_v<Gt>) loss_result
    sft_loss(const S& logits, const Y& labels, Gt&& grad, const sft_options& options,
             const token_args& args = {}) {
  const auto s = detail::input_view(logits);
  const auto y = detail::label_view(labels);
  const auto g = detail::output_view(std::forward<Gt>(grad));
  return detail::sft_impl(s, y, &g, options, args);
}

}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::distill

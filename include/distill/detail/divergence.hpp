// SPDX-License-Identifier: Apache-2.0
/// @file divergence.hpp
/// @brief The divergence element operators (adapters over grpo::ops, one per kind), their option
///        resolution, and the portable passes 2 / 3 of a divergence row (loss, G = sum dl/dlq and
///        the gradient), shared by the dense and top-k front ends and the oracle of the ISA
///        kernels.
#pragma once

#include <distill/detail/plan.hpp>
#include <distill/detail/row_math.hpp>
#include <distill/options.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/isa.hpp>
#include <grpo/core/math.hpp>
#include <grpo/ops/distill.hpp>
#include <grpo/ops/softmax.hpp>

#include <type_traits>

namespace grpo::distill::detail {
inline namespace GRPO_ISA_ABI {

// -----------------------------------------------------------------------------------------------
// Divergence element operators (thin adapters over grpo::ops, one per divergence kind).

/// Per-call constants: the mixture weight w and log w, log(1 - w) (w = beta for the JSD, alpha for
/// the skew KLs).
template <class A>
struct div_params {
  A w = A(0), log_w = A(0), log_1mw = A(0);
};

/// Value and d/dlq of one element term.
template <class A>
struct value_grad {
  A value, grad;
};

template <divergence K>
struct div_op;

template <>
struct div_op<divergence::forward_kl> {
  static constexpr bool unit_g = true;  // G = -sum p = -1: gradient q - p in the loss pass
  template <class A>
  GRPO_HOST_DEVICE static GRPO_FORCEINLINE value_grad<A> eval(A lp, A lq, A p, A,
                                                              const div_params<A>&) noexcept {
    return {ops::forward_kl(lp, lq, p), ops::forward_kl_grad(p)};
  }
  /// The loss term and the whole dl/dz'_j in one step (q - p without cancellation near 1).
  template <class A>
  GRPO_HOST_DEVICE static GRPO_FORCEINLINE value_grad<A> eval_dz(A lp, A lq, A p, A q,
                                                                 const div_params<A>&) noexcept {
    return {ops::forward_kl(lp, lq, p), ops::forward_kl_dz(lp, lq, p, q)};
  }
};
template <>
struct div_op<divergence::reverse_kl> {
  static constexpr bool unit_g = false;
  template <class A>
  GRPO_HOST_DEVICE static GRPO_FORCEINLINE value_grad<A> eval(A lp, A lq, A, A q,
                                                              const div_params<A>&) noexcept {
    return {ops::reverse_kl(lp, lq, q), ops::reverse_kl_grad(lp, lq, q)};
  }
};
template <>
struct div_op<divergence::jsd> {
  static constexpr bool unit_g = false;
  template <class A>
  GRPO_HOST_DEVICE static GRPO_FORCEINLINE value_grad<A> eval(A lp, A lq, A p, A q,
                                             const div_params<A>& P) noexcept {
    const A lm = ops::log_mixture(P.log_w, lp, P.log_1mw, lq);
    return {ops::jsd(lp, lq, p, q, lm, P.w), ops::jsd_grad(lq, q, lm, P.w)};
  }
};
template <>
struct div_op<divergence::skew_forward_kl> {
  static constexpr bool unit_g = false;
  template <class A>
  GRPO_HOST_DEVICE static GRPO_FORCEINLINE value_grad<A> eval(A lp, A lq, A p, A,
                                                              const div_params<A>& P) noexcept {
    const A lm = ops::log_mixture(P.log_w, lp, P.log_1mw, lq);
    return {ops::skew_forward_kl(lp, p, lm), ops::skew_forward_kl_grad(lq, p, lm, P.log_1mw)};
  }
};
template <>
struct div_op<divergence::skew_reverse_kl> {
  static constexpr bool unit_g = false;
  template <class A>
  GRPO_HOST_DEVICE static GRPO_FORCEINLINE value_grad<A> eval(A lp, A lq, A, A q,
                                                              const div_params<A>& P) noexcept {
    const A lm = ops::log_mixture(P.log_1mw, lp, P.log_w, lq);
    return {ops::skew_reverse_kl(lq, q, lm), ops::skew_reverse_kl_grad(lq, q, lm, P.log_w)};
  }
};

/// Calls f(std::integral_constant<divergence, K>{}) for the run-time kind k (visit_divergence,
/// shared with the CUDA launchers); a value outside the enumeration is a bad_option.
template <class F>
decltype(auto) dispatch(divergence k, F&& f) {
  return visit_divergence(k, static_cast<F&&>(f), [] {
    GRPO_THROW(bad_option, "distill_options.kind: unknown divergence");
  });
}

/// The divergence actually computed and its constants after option validation: the JSD endpoints
/// of the kl_limits convention become the KLs.
struct resolved_divergence {
  divergence kind = divergence::forward_kl;
  double w = 0.0;
};

inline resolved_divergence resolve(const distill_options& o) {
  GRPO_EXPECTS(o.temperature > 0.0 && math::is_finite(o.temperature), bad_option,
               "distill_options.temperature must be finite and > 0");
  // 1/T a normal float: 1e-300 overflowed every logit / T, 1e300 flushed them to 0 (uniform).
  (void)grpo::detail::checked_inverse_temperature(o.temperature, "distill_options.temperature");
  GRPO_EXPECTS(math::is_finite(o.grad_output), bad_option,
               "distill_options.grad_output must be finite");
  resolved_divergence r{o.kind, 0.0};
  switch (o.kind) {
    case divergence::forward_kl:
    case divergence::reverse_kl:
      break;
    case divergence::jsd:
      GRPO_EXPECTS(o.beta >= 0.0 && o.beta <= 1.0, bad_option,
                   "distill_options.beta must lie in [0, 1]");
      GRPO_EXPECTS(o.endpoints == jsd_endpoints::kl_limits || o.endpoints == jsd_endpoints::formula,
                   bad_option, "distill_options.endpoints: unknown convention");
      r.w = o.beta;
      if (o.endpoints == jsd_endpoints::kl_limits && o.beta == 0.0) r.kind = divergence::forward_kl;
      if (o.endpoints == jsd_endpoints::kl_limits && o.beta == 1.0) r.kind = divergence::reverse_kl;
      break;
    case divergence::skew_forward_kl:
    case divergence::skew_reverse_kl:
      GRPO_EXPECTS(o.alpha >= 0.0 && o.alpha < 1.0, bad_option,
                   "distill_options.alpha must lie in [0, 1)");
      r.w = o.alpha;
      break;
    default:
      GRPO_THROW(bad_option, "distill_options.kind: unknown divergence");
  }
  return r;
}

template <class A>
div_params<A> make_div_params(double w) noexcept {
  div_params<A> P;
  P.w = static_cast<A>(w);
  P.log_w = w > 0.0 ? static_cast<A>(math::log(w)) : neg_inf<A>;
  P.log_1mw = w < 1.0 ? static_cast<A>(math::log1p(-w)) : neg_inf<A>;
  return P;
}

// -----------------------------------------------------------------------------------------------
// The fused dense row kernel.

/// Everything a dense row needs besides its pointers.
template <class A>
struct dense_row_args {
  index_t V = 0;
  A beta_s = A(1);  ///< student inverse temperature 1/T
  A beta_u = A(1);  ///< teacher inverse temperature (1/T for logits; 1 for stored log-probs)
  div_params<A> div{};
  A gscale = A(0);  ///< c_bt * grad_output * (T^2 or 1) * beta_s: d(total)/d l_bt times dz'/ds
  A vscale = A(1);  ///< T^2 or 1
  /// The next row's student / teacher data (contiguous vocabulary only, else null): prefetched
  /// during this row's last pass so that its pass 1 finds it in cache (DRAM overlaps compute).
  const void* next_s = nullptr;
  const void* next_u = nullptr;
  void* next_g = nullptr;  ///< the next gradient row (prefetched for writing)
  index_t next_s_bytes = 0, next_u_bytes = 0, next_g_bytes = 0;  ///< bytes per element
  /// The vector path of this call (grpo::active_isa() read once per call by the front end).
  isa path = isa::baseline;
};

/// The row-level state of one distribution after pass 1: log q_j = beta (x_j - m) - log_s.
template <class A>
struct row_state {
  A m = A(0), log_s = A(0), beta = A(1);
};

/// A teacher chunk loader over a strided row of raw values (dense teacher).
template <class U>
struct strided_loader {
  const U* u;
  index_t us;
  template <class A>
  GRPO_FORCEINLINE index_t operator()(index_t j0, index_t n, A* buf) const noexcept {
    return load_chunk(u + j0 * us, us, n, buf);
  }
};

/// Where a pass gets the probabilities of a row: from a row_exp_cache filled by pass 1 (no
/// exponential), or, when null, as exp(log-probability).
template <class A>
struct prob_source {
  const row_exp_cache<A>* cache = nullptr;
};

/// q (or p) of one padded chunk c into out[0, np).
template <class A>
GRPO_FORCEINLINE void chunk_probs(const prob_source<A>& src, index_t j0, index_t c, index_t np,
                                  const A* GRPO_RESTRICT logp, A* GRPO_RESTRICT out) noexcept {
  if (src.cache != nullptr) {
    const A* e = src.cache->e.data() + j0;
    const A sc = src.cache->scale[static_cast<std::size_t>(c)];
    for (index_t i = 0; i < np; ++i) out[i] = e[i] * sc;
  } else {
    for (index_t i = 0; i < np; ++i) out[i] = ops::distill_exp(logp[i]);
  }
}

/// Probability of element i of chunk c from a source: e_i * scale_c from a cache (no exponential)
/// or exp(log-probability) when the source has no cache.
template <bool Cached, class A>
GRPO_FORCEINLINE A prob_of(const A* e, A scale, A logp) noexcept {
  if constexpr (Cached) {
    (void)logp;
    return *e * scale;
  } else {
    (void)e;
    (void)scale;
    return ops::distill_exp(logp);
  }
}

/// lq, lp, q, p of one element of a divergence row.
template <class A>
struct elem_terms {
  A lq, lp, q, p;
};

/// One chunk of a divergence row as passes 2 / 3 read it: both rows' logits (chunk buffers xs, xu,
/// padded length np), the probability sources' exps at the chunk (eq, ep; `no_cache` when the
/// probability is exp(log-probability)) and chunk factors (cq, cp).
template <bool QC, bool PC, class A>
struct chunk_terms {
  const A* xs;
  const A* xu;
  const A* eq;
  const A* ep;
  A cq, cp;
  index_t np;
  /// The terms of element i under the rows' states (m, log s, beta) of student st and teacher tt.
  GRPO_FORCEINLINE elem_terms<A> at(index_t i, const row_state<A>& st,
                                    const row_state<A>& tt) const noexcept {
    const A lq = ops::log_softmax(xs[i], st.m, st.log_s, st.beta);
    const A lp = ops::log_softmax(xu[i], tt.m, tt.log_s, tt.beta);
    return {lq, lp, prob_of<QC>(QC ? eq + i : eq, cq, lq), prob_of<PC>(PC ? ep + i : ep, cp, lp)};
  }
};

/// Core of every divergence row: pass 2 (loss and G, when G is not known in advance) and the
/// gradient pass, over a student row s (stride ss, length R.V) in state st and a teacher whose
/// chunks come from `tload(j0, n, buf)` (padded length returned) in state tt. QC / PC: whether the
/// student / teacher probabilities come from the row_exp_cache of pass 1 (qs.cache / ps.cache,
/// then non-null) instead of an exponential. Returns the row value (T^2 included) through
/// `value`; writes g_j = gscale (dl/dlq_j - q_j G) when g is non-null. g may alias s exactly (in
/// place): every chunk is read into a buffer before its gradient is written.
template <divergence K, bool QC, bool PC, class A, class S, class TL, class G>
void divergence_passes(const S* s, index_t ss, const row_state<A>& st, const TL& tload,
                       const row_state<A>& tt, const prob_source<A>& qs, const prob_source<A>& ps,
                       G* g, index_t gs, const dense_row_args<A>& R, double& value) noexcept {
  using op = div_op<K>;
  alignas(64) A xs[chunk];
  alignas(64) A xu[chunk];
  alignas(64) A gb[chunk];
  alignas(64) static constexpr A no_cache[lanes] = {};
  const index_t V = R.V;
  const div_params<A> P = R.div;
  // Chunk c at j0 of both rows: the logits read into xs / xu, the probability sources located.
  auto load_terms = [&](index_t j0, index_t c, index_t n) noexcept {
    const index_t np = load_chunk(s + j0 * ss, ss, n, xs);
    tload(j0, n, xu);
    const std::size_t k = static_cast<std::size_t>(c);
    return chunk_terms<QC, PC, A>{xs,
                                  xu,
                                  QC ? qs.cache->e.data() + j0 : no_cache,
                                  PC ? ps.cache->e.data() + j0 : no_cache,
                                  QC ? qs.cache->scale[k] : A(0),
                                  PC ? ps.cache->scale[k] : A(0),
                                  np};
  };
  double total = 0.0;
  [[maybe_unused]] A big_g = A(-1);
  if constexpr (!op::unit_g) {
    // Pass 2: the loss and G = sum_i dl/dlq_i (both need the final lse of both rows).
    double gsum = 0.0;
    for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
      const index_t n = std::min(chunk, V - j0);
      const chunk_terms<QC, PC, A> ct = load_terms(j0, c, n);
      A va[lanes] = {}, ga[lanes] = {};
      for (index_t i = 0; i < ct.np; i += lanes)
        for (index_t k = 0; k < lanes; ++k) {
          const elem_terms<A> e = ct.at(i + k, st, tt);
          const value_grad<A> vg = op::eval(e.lp, e.lq, e.p, e.q, P);
          va[k] += vg.value;
          ga[k] += vg.grad;
        }
      total += static_cast<double>(lane_sum(va));
      gsum += static_cast<double>(lane_sum(ga));
      // Three-pass losses prefetch the next row here (earlier), the fused ones in the last pass.
      prefetch_range(R.next_s, j0 * R.next_s_bytes, n * R.next_s_bytes);
      prefetch_range(R.next_u, j0 * R.next_u_bytes, n * R.next_u_bytes);
    }
    big_g = static_cast<A>(gsum);
    if (g == nullptr) {
      value = total * static_cast<double>(R.vscale);
      return;
    }
  }
  // Last pass: the gradient (and, for unit-G losses, the loss in the same pass).
  const A gscale = R.gscale;
  for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
    const index_t n = std::min(chunk, V - j0);
    const chunk_terms<QC, PC, A> ct = load_terms(j0, c, n);
    if constexpr (op::unit_g) {
      A va[lanes] = {};
      for (index_t i = 0; i < ct.np; i += lanes)
        for (index_t k = 0; k < lanes; ++k) {
          const elem_terms<A> e = ct.at(i + k, st, tt);
          const value_grad<A> vg = op::eval_dz(e.lp, e.lq, e.p, e.q, P);
          va[k] += vg.value;
          gb[i + k] = gscale * vg.grad;
        }
      total += static_cast<double>(lane_sum(va));
    } else {
      for (index_t i = 0; i < ct.np; ++i) {
        const elem_terms<A> e = ct.at(i, st, tt);
        gb[i] = gscale * ops::softmax_chain(op::eval(e.lp, e.lq, e.p, e.q, P).grad, e.q, big_g);
      }
    }
    if (g != nullptr) store_chunk(g + j0 * gs, gs, n, gb);
    if constexpr (op::unit_g) {
      prefetch_range(R.next_s, j0 * R.next_s_bytes, n * R.next_s_bytes);
      prefetch_range(R.next_u, j0 * R.next_u_bytes, n * R.next_u_bytes);
    }
    prefetch_range<1>(R.next_g, j0 * R.next_g_bytes, n * R.next_g_bytes);
  }
  value = total * static_cast<double>(R.vscale);
}

/// Writes zeros over a gradient row (masked tokens).
template <class G>
void zero_row(G* g, index_t gs, index_t V) noexcept {
  for (index_t j = 0; j < V; ++j) g[j * gs] = narrow<G>(0.0f);
}

}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::distill::detail

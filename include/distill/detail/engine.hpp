// SPDX-License-Identifier: Apache-2.0
/// @file engine.hpp
/// @brief Internal machinery of grpo::distill: chunked vocabulary passes over strided rows, the
///        per-chunk online log-sum-exp partials merged into grpo::online_lse, the aggregation plan,
///        the OpenMP row loop with deferred errors, and the fused dense-divergence row kernel.
///
/// Execution model (CPU variant B of the kernels note, one row per thread): a row of V logits is
/// processed in chunks of `chunk` elements that are first widened into a small stack buffer of the
/// accumulation type (this also turns any vocabulary stride and any storage type into one
/// contiguous float loop the compiler vectorises), then reduced lane-wise (`lanes` independent
/// accumulators, so the vectorised order is fixed and reproducible). Pass 1 computes both rows'
/// (max, sum) states; pass 2 the loss (and for losses whose G = sum_i dL/dlq_i is not known in
/// advance, G); the last pass writes the gradient. A row of 152k bf16 logits (297 KiB) stays in L2
/// between passes, so DRAM sees about one read of each input and one write of the gradient.
/// No tokens x vocabulary temporary is ever allocated.
#pragma once

#include <distill/options.hpp>
#include <grpo/aggregate.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/half.hpp>
#include <grpo/core/math.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/ops/distill.hpp>
#include <grpo/ops/softmax.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace grpo::distill::detail {

/// Elements per vocabulary chunk (2 KiB of float per buffer: several buffers stay in L1).
inline constexpr index_t chunk = 512;
/// Independent accumulators per reduction (a multiple of every SIMD width up to AVX-512 floats).
inline constexpr index_t lanes = 16;

/// Accumulation type of a storage type: double for double inputs (references, finite differences),
/// float for float, bfloat16 and float16.
template <class T>
using acc_t = std::conditional_t<std::is_same_v<std::remove_cv_t<T>, double>, double, float>;

template <class A>
inline constexpr A neg_inf = -std::numeric_limits<A>::infinity();

/// Row status codes returned by the row kernels (0 = fine); turned into grpo::error after the
/// parallel loop so no exception ever crosses an OpenMP region.
enum row_status : int {
  row_ok = 0,
  student_not_finite,      ///< NaN or +inf student logit
  student_empty,           ///< every student logit is -inf
  teacher_not_finite,      ///< NaN or +inf teacher logit / log-probability
  teacher_empty,           ///< every teacher entry is -inf
  id_out_of_range,         ///< top-k id >= V, or label outside [0, V)
  id_duplicate,            ///< the same id twice in one top-k row
  teacher_mass_above_one,  ///< top-k probabilities sum to more than 1 (tail bucket)
  row_alloc_failed,        ///< the per-thread row cache could not be allocated
};

/// Widen n elements at p (stride st, elements) into buf and pad to a multiple of `lanes` with -inf
/// (an entry with no mass: neutral in every pass). Returns the padded length.
template <class A, class T>
GRPO_FORCEINLINE index_t load_chunk(const T* GRPO_RESTRICT p, index_t st, index_t n,
                                    A* GRPO_RESTRICT buf) noexcept {
  if (st == 1) {
    for (index_t i = 0; i < n; ++i) buf[i] = static_cast<A>(widen(p[i]));
  } else {
    for (index_t i = 0; i < n; ++i) buf[i] = static_cast<A>(widen(p[i * st]));
  }
  const index_t np = (n + lanes - 1) / lanes * lanes;
  for (index_t i = n; i < np; ++i) buf[i] = neg_inf<A>;
  return np;
}

/// Narrow n gradient values into the caller's buffer (stride st).
template <class G, class A>
GRPO_FORCEINLINE void store_chunk(G* GRPO_RESTRICT g, index_t st, index_t n,
                                  const A* GRPO_RESTRICT buf) noexcept {
  if (st == 1) {
    for (index_t i = 0; i < n; ++i) g[i] = narrow<G>(buf[i]);
  } else {
    for (index_t i = 0; i < n; ++i) g[i * st] = narrow<G>(buf[i]);
  }
}

/// True when a chunk holds a NaN or +inf (-inf is a legal masked entry).
template <class A>
GRPO_FORCEINLINE bool has_nan_or_posinf(const A* x, index_t np) noexcept {
  int bad = 0;
  for (index_t i = 0; i < np; ++i)
    bad |= static_cast<int>(!(x[i] <= std::numeric_limits<A>::max()) & !(x[i] == neg_inf<A>));
  return bad != 0;
}

template <class A>
GRPO_FORCEINLINE A lane_sum(const A (&acc)[lanes]) noexcept {
  A s = A(0);
  for (index_t k = 0; k < lanes; ++k) s += acc[k];
  return s;
}

/// Maximum of a padded chunk (NaN never wins: NaN rows are rejected separately). Four independent
/// lane blocks, so the max chain is not latency-bound (one vmaxps per 16 elements would be).
template <class A>
GRPO_FORCEINLINE A chunk_max(const A* GRPO_RESTRICT x, index_t np) noexcept {
  A mx[4 * lanes];
  for (index_t k = 0; k < 4 * lanes; ++k) mx[k] = neg_inf<A>;
  index_t i = 0;
  for (; i + 4 * lanes <= np; i += 4 * lanes)
    for (index_t k = 0; k < 4 * lanes; ++k) mx[k] = x[i + k] > mx[k] ? x[i + k] : mx[k];
  for (; i < np; i += lanes)
    for (index_t k = 0; k < lanes; ++k) mx[k] = x[i + k] > mx[k] ? x[i + k] : mx[k];
  A m = neg_inf<A>;
  for (index_t k = 0; k < 4 * lanes; ++k) m = mx[k] > m ? mx[k] : m;
  return m;
}

/// The online log-sum-exp partial of one padded chunk, in grpo::online_lse's encoding: m = chunk
/// max, e = sum exp(beta (x - m)) - 1 formed as (#ties - 1) + sum over x < m, so the dominant-logit
/// precision of online_lse is kept. Only lse() / log_sum() are used by grpo::distill, so the
/// entropy accumulator t is left 0.
template <class A>
GRPO_FORCEINLINE basic_online_lse<A> chunk_lse(const A* GRPO_RESTRICT x, index_t np,
                                               A beta) noexcept {
  const A m = chunk_max(x, np);
  if (!(m > neg_inf<A>)) return basic_online_lse<A>(beta);
  // Two separate loops: g++ 12 does not if-convert two conditional reductions in one loop body.
  A acc[lanes] = {}, ties[lanes] = {};
  for (index_t i = 0; i < np; i += lanes)
    for (index_t k = 0; k < lanes; ++k) {
      const A v = x[i + k];
      const A ev = ops::distill_exp(beta * (v - m));  // unconditional, then selected (vectorises)
      acc[k] += ops::select(v < m, ev, A(0));
    }
  for (index_t i = 0; i < np; i += lanes)
    for (index_t k = 0; k < lanes; ++k) ties[k] += ops::select(x[i + k] == m, A(1), A(0));
  return basic_online_lse<A>::from_partial(beta, m, lane_sum(ties) - A(1) + lane_sum(acc), A(0));
}

/// Exponentials kept from pass 1: e_j = exp(beta (x_j - m_c)) relative to the maximum m_c of
/// chunk c, and per chunk the factor scale_c = exp(beta (m_c - m) - log s) that turns them into
/// probabilities, q_j = e_j scale_c. Later passes then need no exponential for q (or p): the
/// vocabulary loops are compute-bound on this kind of CPU (a polynomial exp per element and pass
/// costs more than streaming the element from L2). Per thread: one float per vocabulary entry
/// (rounded up to whole chunks) and one per chunk, reused across rows: O(threads x vocab) memory,
/// never tokens x vocab.
template <class A>
struct row_exp_cache {
  std::vector<A> e;      ///< [ceil(V / chunk) * chunk]; 0 on padding
  std::vector<A> m;      ///< per-chunk maximum (raw units)
  std::vector<A> scale;  ///< per-chunk factor (0 for a chunk without mass)
  void reserve(index_t V) {
    const index_t nc = (V + chunk - 1) / chunk;
    if (static_cast<index_t>(e.size()) < nc * chunk) e.resize(static_cast<std::size_t>(nc * chunk));
    if (static_cast<index_t>(m.size()) < nc) {
      m.resize(static_cast<std::size_t>(nc));
      scale.resize(static_cast<std::size_t>(nc));
    }
  }
};

/// Pass 1 over one row: the online state of beta * x (the partial of each chunk computed from the
/// exponentials it stores in `cache`), the per-chunk probability factors, and a NaN/+inf flag.
template <class A, class T>
basic_online_lse<A> row_lse_store(const T* p, index_t st, index_t V, A beta, A* buf,
                                  row_exp_cache<A>& cache, bool& bad) noexcept {
  basic_online_lse<A> s(beta);
  for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
    const index_t n = std::min(chunk, V - j0);
    const index_t np = load_chunk(p + j0 * st, st, n, buf);
    bad = bad || has_nan_or_posinf(buf, np);
    const A m = chunk_max(buf, np);
    cache.m[static_cast<std::size_t>(c)] = m;
    A* e = cache.e.data() + j0;
    if (!(m > neg_inf<A>)) {
      for (index_t i = 0; i < np; ++i) e[i] = A(0);
      continue;
    }
    // e = exp(beta (x - m_c)) stored (exactly 1 at the chunk maximum, 0 for -inf and padding);
    // the online_lse partial counts ties separately so its dominant-logit precision is kept.
    A acc[lanes] = {}, ties[lanes] = {};
    for (index_t i = 0; i < np; ++i) e[i] = ops::distill_exp(beta * (buf[i] - m));
    for (index_t i = 0; i < np; i += lanes)
      for (index_t k = 0; k < lanes; ++k) acc[k] += ops::select(buf[i + k] < m, e[i + k], A(0));
    for (index_t i = 0; i < np; i += lanes)
      for (index_t k = 0; k < lanes; ++k) ties[k] += ops::select(buf[i + k] == m, A(1), A(0));
    s.merge(
        basic_online_lse<A>::from_partial(beta, m, lane_sum(ties) - A(1) + lane_sum(acc), A(0)));
  }
  if (!s.empty()) {
    const A log_s = s.log_sum();
    for (index_t c = 0; c * chunk < V; ++c) {
      const A mc = cache.m[static_cast<std::size_t>(c)];
      cache.scale[static_cast<std::size_t>(c)] =
          mc > neg_inf<A> ? ops::distill_exp(beta * (mc - s.m) - log_s) : A(0);
    }
  }
  return s;
}

/// The per-thread caches of the student and teacher rows.
template <class A>
struct thread_caches {
  row_exp_cache<A> student, teacher;
};
template <class A>
thread_caches<A>& local_caches() {
  static thread_local thread_caches<A> c;
  return c;
}

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
// Row loop with deferred errors.

/// Runs f(row) -> row_status for every row in [0, n), threaded with OpenMP when compiled with it.
/// Returns the first failing row (lowest index) and its status, or {-1, row_ok}.
template <class F>
std::pair<index_t, int> for_each_row(index_t n, F&& f) {
  index_t bad_row = -1;
  int bad_status = row_ok;
#if defined(_OPENMP)
#pragma omp parallel for schedule(dynamic, 2)
#endif
  for (index_t r = 0; r < n; ++r) {
    int s = row_ok;
#if GRPO_USE_EXCEPTIONS
    // No exception may leave an OpenMP region: a failed per-thread cache allocation is reported
    // as a status and rethrown as std::bad_alloc after the loop.
    try {
      s = f(r);
    } catch (...) {
      s = row_alloc_failed;
    }
#else
    s = f(r);
#endif
    if (s != row_ok) {
#if defined(_OPENMP)
#pragma omp critical(grpo_distill_row_error)
#endif
      {
        if (bad_row < 0 || r < bad_row) {
          bad_row = r;
          bad_status = s;
        }
      }
    }
  }
  return {bad_row, bad_status};
}

/// Throws the grpo::error of a failed row (token (b, t) = row / L, row % L).
inline void throw_row_error(std::pair<index_t, int> bad, index_t L, const char* student,
                            const char* teacher) {
  if (bad.first < 0) return;
#if GRPO_USE_EXCEPTIONS
  if (bad.second == row_alloc_failed) throw std::bad_alloc();
#endif
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
  return total;
}

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

/// Calls f(std::integral_constant<divergence, K>{}) for the run-time kind k.
template <class F>
decltype(auto) dispatch(divergence k, F&& f) {
  switch (k) {
    case divergence::forward_kl:
      return f(std::integral_constant<divergence, divergence::forward_kl>{});
    case divergence::reverse_kl:
      return f(std::integral_constant<divergence, divergence::reverse_kl>{});
    case divergence::jsd:
      return f(std::integral_constant<divergence, divergence::jsd>{});
    case divergence::skew_forward_kl:
      return f(std::integral_constant<divergence, divergence::skew_forward_kl>{});
    case divergence::skew_reverse_kl:
      return f(std::integral_constant<divergence, divergence::skew_reverse_kl>{});
  }
  GRPO_THROW(bad_option, "distill_options.kind: unknown divergence");
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
};

/// Software prefetch of bytes [off, off + len) of a row (a hint; compiles to nothing where the
/// builtin is unavailable).
template <int RW = 0>
GRPO_FORCEINLINE void prefetch_range(const void* base, index_t off, index_t len) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  if (base == nullptr) return;
  const char* p = static_cast<const char*>(base) + off;
  for (index_t b = 0; b < len; b += 64) __builtin_prefetch(p + b, RW, 3);
#else
  (void)base;
  (void)off;
  (void)len;
#endif
}

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
  const A ms = st.m, logs = st.log_s, bs = st.beta;
  const A mu = tt.m, logu = tt.log_s, bu = tt.beta;
  const div_params<A> P = R.div;
  double total = 0.0;
  [[maybe_unused]] A big_g = A(-1);
  if constexpr (!op::unit_g) {
    // Pass 2: the loss and G = sum_i dl/dlq_i (both need the final lse of both rows).
    double gsum = 0.0;
    for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
      const index_t n = std::min(chunk, V - j0);
      const index_t np = load_chunk(s + j0 * ss, ss, n, xs);
      tload(j0, n, xu);
      const A* eq = QC ? qs.cache->e.data() + j0 : no_cache;
      const A* ep = PC ? ps.cache->e.data() + j0 : no_cache;
      const A cq = QC ? qs.cache->scale[static_cast<std::size_t>(c)] : A(0);
      const A cp = PC ? ps.cache->scale[static_cast<std::size_t>(c)] : A(0);
      A va[lanes] = {}, ga[lanes] = {};
      for (index_t i = 0; i < np; i += lanes)
        for (index_t k = 0; k < lanes; ++k) {
          const A lq = ops::log_softmax(xs[i + k], ms, logs, bs);
          const A lp = ops::log_softmax(xu[i + k], mu, logu, bu);
          const A q = prob_of<QC>(QC ? eq + i + k : eq, cq, lq);
          const A p = prob_of<PC>(PC ? ep + i + k : ep, cp, lp);
          const value_grad<A> vg = op::eval(lp, lq, p, q, P);
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
    const index_t np = load_chunk(s + j0 * ss, ss, n, xs);
    tload(j0, n, xu);
    const A* eq = QC ? qs.cache->e.data() + j0 : no_cache;
    const A* ep = PC ? ps.cache->e.data() + j0 : no_cache;
    const A cq = QC ? qs.cache->scale[static_cast<std::size_t>(c)] : A(0);
    const A cp = PC ? ps.cache->scale[static_cast<std::size_t>(c)] : A(0);
    if constexpr (op::unit_g) {
      A va[lanes] = {};
      for (index_t i = 0; i < np; i += lanes)
        for (index_t k = 0; k < lanes; ++k) {
          const A lq = ops::log_softmax(xs[i + k], ms, logs, bs);
          const A lp = ops::log_softmax(xu[i + k], mu, logu, bu);
          const A q = prob_of<QC>(QC ? eq + i + k : eq, cq, lq);
          const A p = prob_of<PC>(PC ? ep + i + k : ep, cp, lp);
          const value_grad<A> vg = op::eval_dz(lp, lq, p, q, P);
          va[k] += vg.value;
          gb[i + k] = gscale * vg.grad;
        }
      total += static_cast<double>(lane_sum(va));
    } else {
      for (index_t i = 0; i < np; ++i) {
        const A lq = ops::log_softmax(xs[i], ms, logs, bs);
        const A lp = ops::log_softmax(xu[i], mu, logu, bu);
        const A q = prob_of<QC>(QC ? eq + i : eq, cq, lq);
        const A p = prob_of<PC>(PC ? ep + i : ep, cp, lp);
        gb[i] = gscale * ops::softmax_chain(op::eval(lp, lq, p, q, P).grad, q, big_g);
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

/// One row of a dense divergence (teacher logits at the student's temperature): pass 1 over both
/// rows, then divergence_passes.
template <divergence K, class A, class S, class U, class G>
int dense_row(const S* s, index_t ss, const U* u, index_t us, G* g, index_t gs,
              const dense_row_args<A>& R, double& value) {
  alignas(64) A buf[chunk];
  thread_caches<A>& tc = local_caches<A>();
  tc.student.reserve(R.V);
  tc.teacher.reserve(R.V);
  bool bad_s = false, bad_u = false;
  const basic_online_lse<A> ls = row_lse_store(s, ss, R.V, R.beta_s, buf, tc.student, bad_s);
  const basic_online_lse<A> lu = row_lse_store(u, us, R.V, R.beta_u, buf, tc.teacher, bad_u);
  if (bad_s) return student_not_finite;
  if (bad_u) return teacher_not_finite;
  if (ls.empty()) return student_empty;
  if (lu.empty()) return teacher_empty;
  divergence_passes<K, true, true>(
      s, ss, row_state<A>{ls.m, ls.log_sum(), R.beta_s}, strided_loader<U>{u, us},
      row_state<A>{lu.m, lu.log_sum(), R.beta_u}, prob_source<A>{&tc.student},
      prob_source<A>{&tc.teacher}, g, gs, R, value);
  return row_ok;
}

/// Writes zeros over a gradient row (masked tokens).
template <class G>
void zero_row(G* g, index_t gs, index_t V) noexcept {
  for (index_t j = 0; j < V; ++j) g[j * gs] = narrow<G>(0.0f);
}

}  // namespace grpo::distill::detail

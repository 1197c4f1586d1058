// SPDX-License-Identifier: Apache-2.0
/// @file topk.hpp
/// @brief Sparse (top-k) teacher distillation: the teacher supplies, per token, K <= 128 token ids
/// S
///        and their log-probabilities l_S (possibly at a generation temperature); the student
///        supplies full logits. Three conventions that are NOT the same loss (kernels note 4.6):
///
///   renormalized_teacher (a, DistillKit missing=ZERO): p~ = softmax(a l_S) on S, 0 elsewhere;
///       q = softmax(s / T) over the full vocabulary. Gradient dense (q_j - p~_j for the forward
///       KL).
///   tail_bucket (b, DistillKit SYMMETRIC_UNIFORM / TRL _add_tail_bucket): the mass outside S is
///   one
///       more category on both sides, p_0 = 1 - sum_S p, q_0 = 1 - sum_S q (computed as the sum
///       over the complement, never as a difference); the category gradient g_0 is spread over the
///       complement in proportion q_j / q_0.
///   renormalized_both (c, TRL server path without tail): both renormalised over S; the gradient is
///       0 outside S (a sparse write of K values) and mass the student puts outside S is ignored.
///
/// Re-tempering a stored teacher (DistillKit): p_i ∝ p_i^a with a = teacher_power = T_gen /
/// T_distill (the tail bucket re-tempers p_0 too, then renormalises). The student is divided by T.
///
/// Memory per token of the sparse teacher: K * (sizeof(id) + sizeof(log-prob)), i.e. 1 KiB at
/// K = 128 with int32 ids and fp32 values, 768 B with bf16 values, against 2 V bytes (297 KiB at
/// V = 151936, bf16) for a dense teacher row. Slots with a negative id are padding (ignored).
#pragma once

#include <distill/dense.hpp>
#include <distill/detail/engine.hpp>
#include <distill/options.hpp>
#include <grpo/core/tensor_traits.hpp>
#include <grpo/ops/distill.hpp>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace grpo::distill {

/// Which loss a top-k teacher defines (see the file comment).
enum class topk_convention : unsigned char {
  renormalized_teacher,  ///< (a) teacher renormalised over S, student over the full vocabulary
  tail_bucket,           ///< (b) S plus one tail category on both sides
  renormalized_both,     ///< (c) both renormalised over S; zero gradient outside S
};

/// Options of topk_loss: the dense options (divergence, beta / alpha, T, T^2, aggregation,
/// grad_output) plus the convention and the teacher re-tempering power.
struct topk_options : distill_options {
  topk_convention convention = topk_convention::renormalized_teacher;
  double teacher_power = 1.0;  ///< a > 0: p_i ∝ p_i^a (DistillKit T_gen / T_distill)
};

/// The largest K accepted (per-row scratch lives on the stack).
inline constexpr index_t max_topk = 128;

namespace detail {
inline namespace GRPO_ISA_ABI {

/// One teacher entry of a row after validation.
template <class A>
struct topk_entry {
  index_t id;
  A logp;  ///< raw teacher log-probability l_i
};

/// Loader of a teacher chunk that is -inf everywhere except at the sorted ids, where it holds lp.
template <class A>
struct scatter_loader {
  const topk_entry<A>* e;  ///< sorted by id
  const A* lp;             ///< normalised teacher log-probabilities, same order
  index_t k;
  GRPO_FORCEINLINE index_t operator()(index_t j0, index_t n, A* buf) const noexcept {
    const index_t np = (n + lanes - 1) / lanes * lanes;
    for (index_t i = 0; i < np; ++i) buf[i] = neg_inf<A>;
    const topk_entry<A>* lo =
        std::lower_bound(e, e + k, j0, [](const topk_entry<A>& a, index_t v) { return a.id < v; });
    for (; lo != e + k && lo->id < j0 + n; ++lo) buf[lo->id - j0] = lp[lo - e];
    return np;
  }
};

/// Gathers the kk teacher slots of a row (ids ti, log-probabilities tl; negative ids are padding)
/// into e[0, k), sorted by id; a row_status for an id outside [0, V), a NaN / +inf value or a
/// repeated id.
template <class A, class TV, class TI>
int gather_topk(const TV* tl, index_t tls, const TI* ti, index_t tis, index_t kk, index_t V,
                topk_entry<A>* e, index_t& k) {
  k = 0;
  for (index_t i = 0; i < kk; ++i) {
    const std::int64_t id = static_cast<std::int64_t>(ti[i * tis]);
    if (id < 0) continue;  // padding slot
    if (id >= V) return id_out_of_range;
    const A l = static_cast<A>(widen(tl[i * tls]));
    if (!(l <= std::numeric_limits<A>::max())) return teacher_not_finite;  // NaN or +inf
    e[k++] = topk_entry<A>{static_cast<index_t>(id), l};
  }
  std::sort(e, e + k, [](const topk_entry<A>& a, const topk_entry<A>& b) { return a.id < b.id; });
  for (index_t i = 1; i < k; ++i)
    if (e[i].id == e[i - 1].id) return id_duplicate;
  return row_ok;
}

/// Step 2 of a top-k row: the teacher log-probabilities lp[0..k) on the sorted categories e
/// (normalised, tempered by `power`) and, for the tail bucket with k < V, the tail category's
/// lp_tail (-inf otherwise) -> row_status.
template <class A>
int topk_teacher_logp(const topk_entry<A>* e, index_t k, index_t V, topk_convention conv,
                      A power, A* lp, A& lp_tail) noexcept {
  lp_tail = neg_inf<A>;
  basic_online_lse<A> raw(A(1)), tempered(A(1));
  for (index_t i = 0; i < k; ++i) {
    raw.push(e[i].logp);
    tempered.push(power * e[i].logp);
  }
  if (conv == topk_convention::tail_bucket && raw.lse() > A(1e-3)) return teacher_mass_above_one;
  if (conv == topk_convention::tail_bucket && k < V) {
    // (When S is the whole vocabulary there is no tail category on either side: p_0 = q_0 = 0.)
    const A lse_raw = raw.lse();
    // Tail log-mass log(1 - sum_S p) without cancellation, re-tempered like the listed entries.
    lp_tail = power * ops::log1m_exp(lse_raw);
    tempered.push(lp_tail);
  } else if (tempered.empty()) {
    return teacher_empty;
  }
  const A norm = tempered.lse();
  for (index_t i = 0; i < k; ++i) lp[i] = power * e[i].logp - norm;
  lp_tail -= norm;
  return row_ok;
}

/// Convention (c), both renormalised over S: a dense divergence over the k gathered entries only
/// (no pass over the vocabulary: the rest of the student row is never read).
template <divergence K, class A, class S, class G>
int topk_renormalized_both(const S* s, index_t ss, const topk_entry<A>* e, index_t k,
                           const A* lp, G* g, index_t gs, const dense_row_args<A>& R,
                           double& value) {
  const index_t V = R.V;
  alignas(64) A zs[max_topk + lanes];
  alignas(64) A gk[max_topk + lanes];
  for (index_t i = 0; i < k; ++i) {
    zs[i] = static_cast<A>(widen(s[e[i].id * ss]));
    if (!(zs[i] <= std::numeric_limits<A>::max()) && !(zs[i] == neg_inf<A>))
      return student_not_finite;
  }
  basic_online_lse<A> st(R.beta_s);
  for (index_t i = 0; i < k; ++i) st.push(zs[i]);
  if (st.empty()) return student_empty;
  dense_row_args<A> Rk = R;
  Rk.V = k;
  divergence_passes<K, false, false>(zs, 1, row_state<A>{st.m, st.log_sum(), R.beta_s},
                                     strided_loader<A>{lp, 1}, row_state<A>{A(0), A(0), A(1)},
                                     prob_source<A>{}, prob_source<A>{},
                                     g ? gk : static_cast<A*>(nullptr), 1, Rk, value);
  if (g != nullptr) {
    for (index_t j = 0; j < V; ++j) g[j * gs] = narrow<G>(A(0));
    for (index_t i = 0; i < k; ++i) g[e[i].id * gs] = narrow<G>(gk[i]);
  }
  return row_ok;
}

/// The student's complement mass q_0 = sum of q over the entries outside S (members zeroed in a
/// chunk copy of q: no 1 - Q_S cancellation), from the exponentials cached by pass 1; xs is a
/// chunk-sized scratch buffer.
template <class A>
double topk_student_tail_mass(const prob_source<A>& qsrc, const topk_entry<A>* e, index_t k,
                              index_t V, A* xs) noexcept {
  double q_tail_d = 0.0;
  for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
    const index_t n = std::min(chunk, V - j0);
    const index_t np = (n + lanes - 1) / lanes * lanes;
    chunk_probs(qsrc, j0, c, np, static_cast<const A*>(nullptr), xs);  // the chunk's q (cached)
    const topk_entry<A>* lo =
        std::lower_bound(e, e + k, j0, [](const topk_entry<A>& a, index_t v) { return a.id < v; });
    for (; lo != e + k && lo->id < j0 + n; ++lo) xs[lo->id - j0] = A(0);
    A acc[lanes] = {};
    for (index_t i = 0; i < np; i += lanes)
      for (index_t l = 0; l < lanes; ++l) acc[l] += xs[i + l];
    q_tail_d += static_cast<double>(lane_sum(acc));
  }
  return q_tail_d;
}

/// Convention (b), tail bucket, after the student's pass 1 (state st, exponentials in cache): the
/// divergence over the k categories plus the tail category, and the gradient (members from their
/// categories, the rest of the row spread from the tail's); xs is a chunk-sized scratch buffer.
template <divergence K, class A, class S, class G>
int topk_tail_bucket(const S* s, index_t ss, const topk_entry<A>* e, index_t k, const A* lp,
                     A lp_tail, const row_state<A>& st, const row_exp_cache<A>& cache, G* g,
                     index_t gs, const dense_row_args<A>& R, double& value, A* xs) {
  using op = div_op<K>;
  const index_t V = R.V;
  alignas(64) A lq[max_topk + lanes];
  for (index_t i = 0; i < k; ++i)
    lq[i] = ops::log_softmax(static_cast<A>(widen(s[e[i].id * ss])), st.m, st.log_s, st.beta);
  const prob_source<A> qsrc{&cache};
  const double q_tail_d = topk_student_tail_mass(qsrc, e, k, V, xs);
  const A q_tail = static_cast<A>(q_tail_d);
  const A lq_tail = q_tail > A(0) ? static_cast<A>(math::log(q_tail_d)) : neg_inf<A>;
  const div_params<A> P = R.div;
  const value_grad<A> vt =
      op::eval(lp_tail, lq_tail, ops::distill_exp(lp_tail), ops::distill_exp(lq_tail), P);
  double total = static_cast<double>(vt.value);
  const A g_tail = vt.grad;
  double gsum = static_cast<double>(g_tail);
  alignas(64) A gcat[max_topk + lanes];
  for (index_t i = 0; i < k; ++i) {
    const value_grad<A> vg =
        op::eval(lp[i], lq[i], ops::distill_exp(lp[i]), ops::distill_exp(lq[i]), P);
    total += static_cast<double>(vg.value);
    gcat[i] = vg.grad;
    gsum += static_cast<double>(vg.grad);
  }
  value = total * static_cast<double>(R.vscale);
  if (g == nullptr) return row_ok;
  const A big_g = static_cast<A>(gsum);
  const A inv_q_tail = q_tail > A(0) ? A(1) / q_tail : A(0);
  // Member gradients first (from the gathered values: safe when g aliases s).
  alignas(64) A gm[max_topk + lanes];
  for (index_t i = 0; i < k; ++i) {
    if constexpr (K == divergence::forward_kl) {
      // q - p without cancellation near 1
      gm[i] = R.gscale *
              op::eval_dz(lp[i], lq[i], ops::distill_exp(lp[i]), ops::distill_exp(lq[i]), P).grad;
    } else {
      gm[i] = R.gscale * ops::softmax_chain(gcat[i], ops::distill_exp(lq[i]), big_g);
    }
  }
  alignas(64) A gb[chunk];
  for (index_t j0 = 0, c = 0; j0 < V; j0 += chunk, ++c) {
    const index_t n = std::min(chunk, V - j0);
    const index_t np = (n + lanes - 1) / lanes * lanes;
    chunk_probs(qsrc, j0, c, np, static_cast<const A*>(nullptr), xs);
    for (index_t i = 0; i < np; ++i)
      gb[i] = R.gscale * ops::tail_spread_grad(xs[i], g_tail, inv_q_tail, big_g);
    const topk_entry<A>* lo =
        std::lower_bound(e, e + k, j0, [](const topk_entry<A>& a, index_t v) { return a.id < v; });
    for (; lo != e + k && lo->id < j0 + n; ++lo) gb[lo->id - j0] = gm[lo - e];
    store_chunk(g + j0 * gs, gs, n, gb);
    prefetch_range(R.next_s, j0 * R.next_s_bytes, n * R.next_s_bytes);
    prefetch_range<1>(R.next_g, j0 * R.next_g_bytes, n * R.next_g_bytes);
  }
  return row_ok;
}

/// One top-k row (any divergence, any convention): gather and validate the teacher entries, their
/// log-probabilities, then the convention's divergence and gradient.
template <divergence K, class A, class S, class TV, class TI, class G>
int topk_row(const S* s, index_t ss, const TV* tl, index_t tls, const TI* ti, index_t tis,
             index_t kk, topk_convention conv, A power, G* g, index_t gs,
             const dense_row_args<A>& R, double& value) {
  const index_t V = R.V;
  // 1. Gather, validate and sort the teacher entries.
  topk_entry<A> e[max_topk];
  index_t k = 0;
  if (const int bad = gather_topk(tl, tls, ti, tis, kk, V, e, k); bad != row_ok) return bad;
  // 2. Teacher log-probabilities on the categories (normalised; the tail last for (b)).
  alignas(64) A lp[max_topk + lanes];
  A lp_tail;
  if (const int bad = topk_teacher_logp(e, k, V, conv, power, lp, lp_tail); bad != row_ok)
    return bad;
  // 3. (c) both renormalised over S.
  if (conv == topk_convention::renormalized_both)
    return topk_renormalized_both<K>(s, ss, e, k, lp, g, gs, R, value);
  // Student pass 1 over the full vocabulary ((a) and (b)).
  alignas(64) A xs[chunk];
  bool bad = false;
  row_exp_cache<A>& cache = local_caches<A>().student;
  cache.reserve(V);
  const basic_online_lse<A> ls = row_lse_store(s, ss, V, R.beta_s, xs, cache, bad, R.path);
  if (bad) return student_not_finite;
  if (ls.empty()) return student_empty;
  const row_state<A> st{ls.m, ls.log_sum(), R.beta_s};
  // 4. (a) teacher renormalised over S, student over V: a dense divergence against a teacher row
  // that is -inf outside S (scattered chunk by chunk, never materialised).
  if (conv == topk_convention::renormalized_teacher) {
    divergence_passes<K, true, false>(s, ss, st, scatter_loader<A>{e, lp, k},
                                      row_state<A>{A(0), A(0), A(1)}, prob_source<A>{&cache},
                                      prob_source<A>{}, g, gs, R, value);
    return row_ok;
  }
  // 5. (b) tail bucket.
  return topk_tail_bucket<K>(s, ss, e, k, lp, lp_tail, st, cache, g, gs, R, value, xs);
}

template <class X>
auto topk_value_view(const X& x) {
  auto v = as_view(x);
  using E = typename decltype(v)::value_type;
  static_assert(is_logit_type_v<E>,
                "grpo::distill::topk_loss: teacher log-probs must be float, double, bf16 or fp16");
  static_assert(decltype(v)::rank() == 2 || decltype(v)::rank() == 3,
                "grpo::distill::topk_loss: teacher log-probs must be [N, K] or [B, L, K]");
  return const_view3<E>(as_rank3(strided_view<const E, decltype(v)::rank()>(v)));
}

template <class X>
auto topk_id_view(const X& x) {
  auto v = as_view(x);
  using E = typename decltype(v)::value_type;
  static_assert(std::is_same_v<E, std::int32_t> || std::is_same_v<E, std::int64_t>,
                "grpo::distill::topk_loss: teacher ids must be int32 or int64");
  static_assert(decltype(v)::rank() == 2 || decltype(v)::rank() == 3,
                "grpo::distill::topk_loss: teacher ids must be [N, K] or [B, L, K]");
  return const_view3<E>(as_rank3(strided_view<const E, decltype(v)::rank()>(v)));
}

template <class S, class TV, class TI, class G>
loss_result topk_impl(const strided_view<const S, 3>& s, const strided_view<const TV, 3>& tl,
                      const strided_view<const TI, 3>& ti, const strided_view<G, 3>* g,
                      const topk_options& o, const token_args& args) {
  check_student_and_grad(s, g, "student_logits");
  expect_host(tl, "teacher_logprobs");
  expect_host(ti, "teacher_ids");
  const index_t B = s.extent(0), L = s.extent(1), V = s.extent(2), K = tl.extent(2);
  expect_extents(tl, {B, L, K}, "teacher_logprobs");
  expect_extents(ti, {B, L, K}, "teacher_ids");
  GRPO_EXPECTS(K >= 1 && K <= max_topk, shape_mismatch,
               "teacher_logprobs: K = " + std::to_string(K) + " must lie in [1, " +
                   std::to_string(max_topk) + "]");
  GRPO_EXPECTS(o.teacher_power > 0.0 && math::is_finite(o.teacher_power), bad_option,
               "topk_options.teacher_power must be finite and > 0");
  GRPO_EXPECTS(o.convention == topk_convention::renormalized_teacher ||
                   o.convention == topk_convention::tail_bucket ||
                   o.convention == topk_convention::renormalized_both,
               bad_option, "topk_options.convention: unknown convention");
  const resolved_divergence rd = resolve(o);
  GRPO_EXPECTS(
      !(rd.kind == divergence::reverse_kl && o.convention == topk_convention::renormalized_teacher),
      bad_option,
      "topk_options: reverse_kl with renormalized_teacher is +inf (the teacher has no mass "
      "outside its top-k ids); use tail_bucket or renormalized_both");
  const token_plan P = make_plan(B, L, args, o.aggregate, [](index_t, index_t) { return true; });
  using A = acc_t<S>;
  const double t2 = o.scale_by_t2 ? o.temperature * o.temperature : 1.0;
  dense_row_args<A> R0;
  R0.V = V;
  R0.path = kernel_path();  // read once per call
  R0.beta_s = static_cast<A>(1.0 / o.temperature);
  R0.beta_u = A(1);
  R0.div = make_div_params<A>(rd.w);
  R0.vscale = static_cast<A>(t2);
  const A power = static_cast<A>(o.teacher_power);
  std::vector<double> row_loss(static_cast<std::size_t>(B * L), 0.0);
  dispatch(rd.kind, [&](auto kind) {
    drive_rows(
        s, g, P, R0,
        [&](double c) { return static_cast<A>(c * o.grad_output * t2 / o.temperature); }, true,
        [](dense_row_args<A>&, index_t, index_t) {}, row_loss, "student_logits", "teacher top-k",
        [&](index_t b, index_t t, const S* sp, index_t ss, G* gp, index_t gs,
            const dense_row_args<A>& R, double& value) {
          const TV* lp = tl.data_handle() + b * tl.stride(0) + t * tl.stride(1);
          const TI* ip = ti.data_handle() + b * ti.stride(0) + t * ti.stride(1);
          return topk_row<decltype(kind)::value>(sp, ss, lp, tl.stride(2), ip, ti.stride(2), K,
                                                 o.convention, power, gp, gs, R, value);
        });
  });
  loss_result res;
  res.loss = reduce_loss(P, row_loss, args);
  res.active_tokens = P.active_tokens;
  res.active_sequences = P.active_sequences;
  return res;
}

template <class X>
inline constexpr bool is_topk_options_v = std::is_same_v<std::remove_cvref_t<X>, topk_options>;

}  // inline namespace GRPO_ISA_ABI
}  // namespace detail

// The entry points' bodies depend on the translation unit's flags (the portable row maths):
// one inline namespace per flag set, so that two builds linked together never share a symbol.
inline namespace GRPO_ISA_ABI {

/// Top-k teacher distillation loss value (no gradient).
/// @param student_logits [B, L, V] or [N, V] (float, double, bfloat16, float16; any strides).
/// @param teacher_logprobs [B, L, K] or [N, K] teacher log-probabilities of the listed ids.
/// @param teacher_ids same extents, int32 or int64; negative = padding slot.
/// @pre K <= 128; ids < V and unique per token; log-probs not NaN / +inf; for tail_bucket their
///      probabilities sum to <= 1 (+1e-3 rounding slack); reverse_kl needs tail_bucket or
///      renormalized_both.
/// @post the aggregated loss of the chosen convention; masked tokens contribute 0.
template <class S, class TV, class TI>
loss_result topk_loss(const S& student_logits, const TV& teacher_logprobs, const TI& teacher_ids,
                      const topk_options& options, const token_args& args = {}) {
  const auto s = detail::input_view(student_logits);
  return detail::topk_impl(s, detail::topk_value_view(teacher_logprobs),
                           detail::topk_id_view(teacher_ids),
                           static_cast<const strided_view<float, 3>*>(nullptr), options, args);
}

/// Top-k teacher distillation loss and its gradient with respect to the student logits, written
/// into `grad` (student extents; may be the student buffer itself, in place).
/// @pre as the value-only overload.
/// @post grad = grad_output * dL/d(student_logits); masked rows written as 0; for
///       renormalized_both the entries outside S are exactly 0.
template <class S, class TV, class TI, class Gt>
requires(!detail::is_topk_options_v<Gt>) loss_result
    topk_loss(const S& student_logits, const TV& teacher_logprobs, const TI& teacher_ids, Gt&& grad,
              const topk_options& options, const token_args& args = {}) {
  const auto s = detail::input_view(student_logits);
  const auto g = detail::output_view(std::forward<Gt>(grad));
  return detail::topk_impl(s, detail::topk_value_view(teacher_logprobs),
                           detail::topk_id_view(teacher_ids), &g, options, args);
}

}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::distill

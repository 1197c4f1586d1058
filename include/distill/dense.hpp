// SPDX-License-Identifier: Apache-2.0
/// @file dense.hpp
/// @brief Dense-teacher distillation loss: one fused pass family over the vocabulary computes the
///        aggregated divergence (forward/reverse KL, generalised JSD, skew KLs) and its exact
///        gradient with respect to the student logits, with no tokens x vocab temporary.
///
/// For one token with student logits s, teacher logits u and temperature T: z' = s / T,
/// q = softmax(z'), p = softmax(u / T), l = (T^2 or 1) * D(p, q), and the gradient written is
///     grad_j = grad_output * c_bt * (T^2 or 1) * (1/T) * (g_j - q_j G),   g_i = dD/dlog q_i,
/// with c_bt the aggregation coefficient (grpo/aggregate.hpp modes). The teacher is a
/// constant: no gradient flows to it.
#pragma once

#include <distill/detail/engine.hpp>
#include <distill/options.hpp>
#include <grpo/core/tensor_traits.hpp>

#include <type_traits>
#include <utility>
#include <vector>

namespace grpo::distill {

namespace detail {
inline namespace GRPO_ISA_ABI {

template <class T>
using const_view3 = strided_view<const std::remove_cv_t<T>, 3>;

/// Any tensor (or strided_view) of rank 2 or 3 -> read-only rank-3 view.
template <class X>
auto input_view(const X& x) {
  auto v = as_view(x);
  using E = typename decltype(v)::value_type;
  static_assert(is_logit_type_v<E>,
                "grpo::distill: logits must be float, double, grpo::bfloat16 or grpo::float16");
  static_assert(decltype(v)::rank() == 2 || decltype(v)::rank() == 3,
                "grpo::distill: logits must be [N, V] or [B, L, V]");
  return const_view3<E>(as_rank3(strided_view<const E, decltype(v)::rank()>(v)));
}

/// A writable gradient tensor of rank 2 or 3 -> rank-3 view.
template <class X>
auto output_view(X&& x) {
  auto v = as_view(std::forward<X>(x));
  using E = typename decltype(v)::element_type;
  static_assert(!std::is_const_v<E>, "grpo::distill: the gradient buffer must be writable");
  static_assert(is_grad_type_v<E>,
                "grpo::distill: gradient must be float, double, grpo::bfloat16 or grpo::float16");
  static_assert(decltype(v)::rank() == 2 || decltype(v)::rank() == 3,
                "grpo::distill: gradient must be [N, V] or [B, L, V]");
  return as_rank3(v);
}

/// Shape and placement checks shared by the dense front ends.
template <class S, class G>
void check_student_and_grad(const strided_view<const S, 3>& s, const strided_view<G, 3>* g,
                            const char* sname) {
  expect_host(s, sname);
  GRPO_EXPECTS(s.extent(2) >= 1, shape_mismatch, std::string(sname) + ": vocabulary is empty");
  if (g != nullptr) {
    expect_extents(*g, s.extents(), "grad");
    expect_host(*g, "grad");
    // In place is allowed only as an exact alias (same start and strides, same type).
    const bool same_start =
        static_cast<const void*>(g->data_handle()) == static_cast<const void*>(s.data_handle());
    if (same_start)
      GRPO_EXPECTS((std::is_same_v<std::remove_cv_t<G>, S> && g->strides() == s.strides()),
                   bad_option,
                   "grad: aliases the student logits with a different type or layout; in-place "
                   "gradients must reuse the student buffer exactly");
    expect_distinct_elements(*g, "grad");
    expect_no_partial_overlap(*g, s, "grad", sname);
  }
}

template <class S, class U, class G>
loss_result dense_impl(const strided_view<const S, 3>& s, const strided_view<const U, 3>& u,
                       const strided_view<G, 3>* g, const distill_options& o,
                       const token_args& args) {
  check_student_and_grad(s, g, "student_logits");
  expect_host(u, "teacher_logits");
  expect_extents(u, s.extents(), "teacher_logits");
  if (g != nullptr) {
    GRPO_EXPECTS(
        static_cast<const void*>(g->data_handle()) != static_cast<const void*>(u.data_handle()),
        bad_option, "grad: must not alias the teacher logits");
    expect_disjoint(*g, u, "grad", "teacher_logits");
  }
  const resolved_divergence rd = resolve(o);
  const index_t B = s.extent(0), L = s.extent(1), V = s.extent(2);
  const token_plan P = make_plan(B, L, args, o.aggregate, [](index_t, index_t) { return true; });
  using A =
      std::conditional_t<std::is_same_v<S, double> || std::is_same_v<U, double>, double, float>;
  const double t2 = o.scale_by_t2 ? o.temperature * o.temperature : 1.0;
  dense_row_args<A> R0;
  R0.V = V;
  R0.path = kernel_path();  // read once per call
  R0.beta_s = static_cast<A>(1.0 / o.temperature);
  R0.beta_u = R0.beta_s;
  R0.div = make_div_params<A>(rd.w);
  R0.vscale = static_cast<A>(t2);
  std::vector<double> row_loss(static_cast<std::size_t>(B * L), 0.0);
  dispatch(rd.kind, [&](auto kind) {
    drive_rows(
        s, g, P, R0,
        [&](double c) { return static_cast<A>(c * o.grad_output * t2 / o.temperature); },
        u.stride(2) == 1,
        [&](dense_row_args<A>& R, index_t b1, index_t t1) {
          R.next_u = u.data_handle() + b1 * u.stride(0) + t1 * u.stride(1);
          R.next_u_bytes = static_cast<index_t>(sizeof(U));
        },
        row_loss, "student_logits", "teacher_logits",
        [&](index_t b, index_t t, const S* sp, index_t ss, G* gp, index_t gs,
            const dense_row_args<A>& R, double& value) {
          const U* up = u.data_handle() + b * u.stride(0) + t * u.stride(1);
          return dense_row<decltype(kind)::value>(sp, ss, up, u.stride(2), gp, gs, R, value);
        });
  });
  loss_result res;
  res.loss = reduce_loss(P, row_loss, args);
  res.active_tokens = P.active_tokens;
  res.active_sequences = P.active_sequences;
  return res;
}

template <class X>
inline constexpr bool is_options_v = std::is_same_v<std::remove_cvref_t<X>, distill_options>;

}  // inline namespace GRPO_ISA_ABI
}  // namespace detail

// The entry points' bodies depend on the translation unit's flags (the portable row maths):
// one inline namespace per flag set, so that two builds linked together never share a symbol.
inline namespace GRPO_ISA_ABI {

/// Dense distillation loss value (no gradient).
/// @param student_logits [B, L, V] or [N, V] (float, double, bfloat16, float16; any strides).
/// @param teacher_logits same extents; any supported storage type.
/// @pre every active row has at least one finite logit and no NaN / +inf in either tensor; options
///      valid (T > 0, beta in [0, 1], alpha in [0, 1)); mask / weights / per_token_loss [B, L].
/// @post the aggregated loss (options.hpp); masked tokens contribute 0. Bad input -> grpo::error.
template <class S, class U>
loss_result divergence_loss(const S& student_logits, const U& teacher_logits,
                            const distill_options& options, const token_args& args = {}) {
  const auto s = detail::input_view(student_logits);
  const auto u = detail::input_view(teacher_logits);
  return detail::dense_impl(s, u, static_cast<const strided_view<float, 3>*>(nullptr), options,
                            args);
}

/// Dense distillation loss and its gradient with respect to the student logits, written into
/// `grad` (same extents as the student; float, double, bfloat16 or float16; any strides). `grad`
/// may be the student buffer itself (in place), which then holds the gradient on return.
/// @pre as the value-only overload; grad does not alias the teacher.
/// @post grad = grad_output * d(loss)/d(student_logits); masked rows are written as 0.
template <class S, class U, class Gt>
requires(!detail::is_options_v<Gt>) loss_result
    divergence_loss(const S& student_logits, const U& teacher_logits, Gt&& grad,
                    const distill_options& options, const token_args& args = {}) {
  const auto s = detail::input_view(student_logits);
  const auto u = detail::input_view(teacher_logits);
  const auto g = detail::output_view(std::forward<Gt>(grad));
  return detail::dense_impl(s, u, &g, options, args);
}

}  // inline namespace GRPO_ISA_ABI
}  // namespace grpo::distill

// SPDX-License-Identifier: Apache-2.0
/// @file bind_logprob.cpp
/// @brief grpo._C: selective log-softmax + entropy (forward / backward), the fused GRPO step from
///        logits and from hidden states + lm_head weight.
#include "common.hpp"

#include <grpo/fused_grpo.hpp>
#include <grpo/fused_linear.hpp>
#include <grpo/logprob.hpp>

namespace grpo::py {

namespace {

/// Calls f(tag) with the C++ storage type of a logits dtype (float32, bfloat16, float16).
template <class F>
decltype(auto) with_logit_type(int dt, const char* what, F&& f) {
  switch (dt) {
    case f32:
      return f(float{});
    case bf16:
      return f(bfloat16{});
    case f16:
      return f(float16{});
    default:
      GRPO_THROW(bad_option, std::string(what) +
                                 ": float32, bfloat16 or float16 here (the Python layer converts)");
  }
}

/// A rank-2 view as rank 1 row b of a rank-2 descriptor (row of [B, T] -> [T]).
template <class T>
strided_view<T, 1> row_of(const strided_view<T, 2>& v, index_t b) {
  return strided_view<T, 1>(v.data_handle() + b * v.stride(0), {v.extent(1)}, {v.stride(1)});
}
/// Slice b of a rank-3 view ([B, T, V] -> [T, V]).
template <class T>
strided_view<T, 2> slice_of(const strided_view<T, 3>& v, index_t b) {
  return strided_view<T, 2>(v.data_handle() + b * v.stride(0), {v.extent(1), v.extent(2)},
                            {v.stride(1), v.stride(2)});
}

/// Forward: logits [B, T, V], ids [B, T] int64 -> logp, lse, entropy [B, T] float32.
void logprob_forward(const arr_t& logits, const arr_t& ids, const arr_t& logp, const opt_arr& lse,
                     const opt_arr& entropy, double temperature, std::int64_t ignore_index) {
  expect_dtype(ids, i64, "ids", "int64");
  for (auto [a, w] : {std::pair{&lse, "lse"}, {&entropy, "entropy"}})
    if (*a) expect_dtype(**a, f32, w, "float32");
  expect_dtype(logp, f32, "logp", "float32");
  logprob_options opt;
  opt.temperature = static_cast<float>(temperature);
  opt.ignore_index = ignore_index;
  with_logit_type(dtype_of(logits), "logits", [&](auto tag) {
    using T = decltype(tag);
    const auto x = view_of<const T, 3>(logits, "logits");
    const auto y = view_of<const std::int64_t, 2>(ids, "ids");
    const auto lp = view_of<float, 2>(logp, "logp");
    const auto ls = view_or_empty<float, 2>(lse, "lse");
    const auto h = view_or_empty<float, 2>(entropy, "entropy");
    expect_extents(y, {x.extent(0), x.extent(1)}, "ids");
    expect_extents(lp, {x.extent(0), x.extent(1)}, "logp");
    nb::gil_scoped_release nogil;
    for (index_t b = 0; b < x.extent(0); ++b)
      selective_log_softmax(slice_of(x, b), row_of(y, b), row_of(lp, b),
                            ls.data_handle() ? row_of(ls, b) : strided_view<float, 1>{},
                            h.data_handle() ? row_of(h, b) : strided_view<float, 1>{}, opt);
  });
}

/// Backward: dL/dlogits from dL/dlogp and dL/dH (float32 [B, T]) into grad [B, T, V] (the logits'
/// dtype).
void logprob_backward(const arr_t& logits, const arr_t& ids, const arr_t& grad_logp,
                      const opt_arr& grad_entropy, const arr_t& grad, double temperature,
                      std::int64_t ignore_index) {
  expect_dtype(ids, i64, "ids", "int64");
  expect_dtype(grad_logp, f32, "grad_logp", "float32");
  if (grad_entropy) expect_dtype(*grad_entropy, f32, "grad_entropy", "float32");
  expect_dtype(grad, dtype_of(logits), "grad_logits", "the dtype of logits");
  logprob_options opt;
  opt.temperature = static_cast<float>(temperature);
  opt.ignore_index = ignore_index;
  with_logit_type(dtype_of(logits), "logits", [&](auto tag) {
    using T = decltype(tag);
    const auto x = view_of<const T, 3>(logits, "logits");
    const auto y = view_of<const std::int64_t, 2>(ids, "ids");
    const auto gl = view_of<const float, 2>(grad_logp, "grad_logp");
    const auto gh = view_or_empty<const float, 2>(grad_entropy, "grad_entropy");
    const auto g = view_of<T, 3>(grad, "grad_logits");
    expect_extents(y, {x.extent(0), x.extent(1)}, "ids");
    expect_extents(gl, {x.extent(0), x.extent(1)}, "grad_logp");
    if (gh.data_handle()) expect_extents(gh, {x.extent(0), x.extent(1)}, "grad_entropy");
    nb::gil_scoped_release nogil;
    for (index_t b = 0; b < x.extent(0); ++b)
      selective_log_softmax_backward(
          slice_of(x, b), row_of(y, b), row_of(gl, b),
          gh.data_handle() ? row_of(gh, b) : strided_view<const float, 1>{}, slice_of(g, b), opt);
  });
}

/// The float64 loss batch shared by both fused steps (the Python layer converts the [B, T]
/// side inputs; the large logits / hidden tensors are never copied).
loss_batch<double, double> side_batch(const opt_arr& old_logp, const opt_arr& ref_logp,
                                      const arr_t& adv, const arr_t& mask,
                                      const opt_arr& sampler_logp, index_t B, index_t Tn) {
  for (auto [a, w] : {std::pair{&old_logp, "old_logp"}, {&ref_logp, "ref_logp"},
                      {&sampler_logp, "sampler_logp"}})
    if (*a) expect_dtype(**a, f64, w, "float64");
  expect_dtype(adv, f64, "advantages", "float64");
  expect_dtype(mask, f64, "mask", "float64");
  loss_batch<double, double> b;
  b.old_logp = view_or_empty<const double, 2>(old_logp, "old_logp");
  b.ref_logp = view_or_empty<const double, 2>(ref_logp, "ref_logp");
  b.sampler_logp = view_or_empty<const double, 2>(sampler_logp, "sampler_logp");
  if (rank_of(adv) == 1) {
    const auto a1 = view_of<const double, 1>(adv, "advantages");
    GRPO_EXPECTS(a1.extent(0) == B, shape_mismatch,
                 "advantages: " + std::to_string(a1.extent(0)) + " rows for " + std::to_string(B) +
                     " sequences");
    b.advantages = broadcast_rows(a1.data_handle(), B, Tn, a1.stride(0));
  } else {
    b.advantages = view_of<const double, 2>(adv, "advantages");
  }
  b.mask = view_of<const double, 2>(mask, "mask");
  return b;
}


/// Copies the result's per-token log-probs / entropies into caller tensors ([B, T] float32).
void copy_tokens(const fused_grpo_result& r, const arr_t& logp_out, const arr_t& h_out) {
  expect_dtype(logp_out, f32, "logp_out", "float32");
  expect_dtype(h_out, f32, "entropy_out", "float32");
  const auto lp = view_of<float, 2>(logp_out, "logp_out");
  const auto h = view_of<float, 2>(h_out, "entropy_out");
  expect_extents(lp, {r.rows, r.cols}, "logp_out");
  expect_extents(h, {r.rows, r.cols}, "entropy_out");
  for (index_t i = 0; i < r.rows; ++i)
    for (index_t t = 0; t < r.cols; ++t) {
      lp(i, t) = r.logp[static_cast<std::size_t>(i * r.cols + t)];
      h(i, t) = r.entropy[static_cast<std::size_t>(i * r.cols + t)];
    }
}

double fused_step(const loss_options& o, const arr_t& logits, const arr_t& ids,
                  const opt_arr& old_logp, const opt_arr& ref_logp, const arr_t& adv,
                  const arr_t& mask, const opt_arr& sampler_logp, const arr_t& grad,
                  const arr_t& logp_out, const arr_t& h_out, const arr_t& stats,
                  double temperature) {
  expect_dtype(ids, i64, "ids", "int64");
  expect_dtype(grad, dtype_of(logits), "grad_logits", "the dtype of logits");
  fused_grpo_options fo;
  fo.logprob.temperature = static_cast<float>(temperature);
  return with_logit_type(dtype_of(logits), "logits", [&](auto tag) -> double {
    using T = decltype(tag);
    const auto x = view_of<const T, 3>(logits, "logits");
    const auto y = view_of<const std::int64_t, 2>(ids, "ids");
    const auto g = view_of<T, 3>(grad, "grad_logits");
    auto b = side_batch(old_logp, ref_logp, adv, mask, sampler_logp, x.extent(0), x.extent(1));
    fused_grpo_result r;
    {
      nb::gil_scoped_release nogil;
      r = fused_grpo_step(o, x, y, b, g, fo);
    }
    copy_tokens(r, logp_out, h_out);
    write_stats(r, stats);
    return r.loss;
  });
}

double fused_linear_step(const loss_options& o, const arr_t& hidden, const arr_t& weight,
                         const arr_t& ids, const opt_arr& old_logp, const opt_arr& ref_logp,
                         const arr_t& adv, const arr_t& mask, const opt_arr& sampler_logp,
                         const arr_t& grad_hidden, const arr_t& grad_weight,
                         const arr_t& logp_out, const arr_t& h_out, const arr_t& stats,
                         double temperature) {
  expect_dtype(ids, i64, "ids", "int64");
  for (auto [a, w] : {std::pair{&hidden, "hidden"}, {&weight, "weight"},
                      {&grad_hidden, "grad_hidden"}, {&grad_weight, "grad_weight"}})
    expect_dtype(*a, f32, w, "float32");
  fused_linear_options fo;
  fo.logprob.temperature = static_cast<float>(temperature);
  const auto h = view_of<const float, 3>(hidden, "hidden");
  const auto w = view_of<const float, 2>(weight, "weight");
  const auto y = view_of<const std::int64_t, 2>(ids, "ids");
  const auto gh = view_of<float, 3>(grad_hidden, "grad_hidden");
  const auto gw = view_of<float, 2>(grad_weight, "grad_weight");
  auto b = side_batch(old_logp, ref_logp, adv, mask, sampler_logp, h.extent(0), h.extent(1));
  fused_grpo_result r;
  {
    nb::gil_scoped_release nogil;
    r = fused_linear_grpo_step(o, h, w, y, b, gh, gw, fo);
  }
  copy_tokens(r, logp_out, h_out);
  write_stats(r, stats);
  return r.loss;
}

}  // namespace

void bind_logprob(nb::module_& m) {
  m.def("logprob_forward", &logprob_forward);
  m.def("logprob_backward", &logprob_backward);
  m.def("fused_grpo_step", &fused_step);
  m.def("fused_linear_grpo_step", &fused_linear_step);
}

}  // namespace grpo::py

// SPDX-License-Identifier: Apache-2.0
/// @file bind_distill.cpp
/// @brief grpo._C: distillation losses (SFT NLL, dense forward / reverse KL, JSD, skew KLs, top-k
///        teacher), value and gradient with respect to the student logits in one call.
#include "common.hpp"

#include <grpo/aggregate.hpp>
#include <distill/distill.hpp>

namespace grpo::py {

namespace {

namespace ds = grpo::distill;

template <class F>
decltype(auto) with_student_type(int dt, F&& f) {
  switch (dt) {
    case f32:
      return f(float{});
    case f64:
      return f(double{});
    case bf16:
      return f(bfloat16{});
    case f16:
      return f(float16{});
    default:
      GRPO_THROW(bad_option, "student logits: float32, float64, bfloat16 or float16");
  }
}

/// Fills distill_options from a dict (divergence, beta, alpha, temperature, scale_by_t2,
/// loss_agg_mode, jsd_endpoints, convention, teacher_power).
void fill(ds::distill_options& o, const std::string& key, nb::handle v) {
  if (key == "divergence") {
    const std::string d = str(v, key);
    if (d == "forward_kl") o.kind = ds::divergence::forward_kl;
    else if (d == "reverse_kl") o.kind = ds::divergence::reverse_kl;
    else if (d == "jsd") o.kind = ds::divergence::jsd;
    else if (d == "skew_forward_kl") o.kind = ds::divergence::skew_forward_kl;
    else if (d == "skew_reverse_kl") o.kind = ds::divergence::skew_reverse_kl;
    else GRPO_THROW(bad_option, "divergence: unknown '" + d + "'");
  } else if (key == "beta") o.beta = num(v, key);
  else if (key == "alpha") o.alpha = num(v, key);
  else if (key == "temperature") o.temperature = num(v, key);
  else if (key == "scale_by_t2") o.scale_by_t2 = flag(v, key);
  else if (key == "loss_agg_mode") o.aggregate.mode = agg_mode_from_string(str(v, key));
  else if (key == "jsd_endpoints") {
    const std::string e = str(v, key);
    GRPO_EXPECTS(e == "kl_limits" || e == "formula", bad_option, "jsd_endpoints: unknown '" + e + "'");
    o.endpoints = e == "formula" ? ds::jsd_endpoints::formula : ds::jsd_endpoints::kl_limits;
  } else unknown_key("distill", key);
}

/// Per-token arguments: mask [B, L] uint8, per-token loss output [B, L] float32.
ds::token_args token_args_of(const opt_arr& mask, const opt_arr& per_token) {
  ds::token_args a;
  if (mask) {
    expect_dtype(*mask, u8, "mask", "uint8 / bool");
    a.mask = view_of<const std::uint8_t, 2>(*mask, "mask");
  }
  if (per_token) {
    expect_dtype(*per_token, f32, "per_token_loss", "float32");
    a.per_token_loss = view_of<float, 2>(*per_token, "per_token_loss");
  }
  return a;
}

/// Dense divergence: student / teacher / grad [B, L, V] of one dtype.
std::tuple<double, std::int64_t> dense_py(const nb::dict& opts, const arr_t& student,
                                          const arr_t& teacher, const arr_t& grad,
                                          const opt_arr& mask, const opt_arr& per_token) {
  ds::distill_options o;
  for (auto [k, v] : opts) fill(o, nb::cast<std::string>(k), v);
  const int dt = dtype_of(student);
  expect_dtype(teacher, dt, "teacher_logits", "the student's dtype");
  expect_dtype(grad, dt, "grad", "the student's dtype");
  const auto args = token_args_of(mask, per_token);
  return with_student_type(dt, [&](auto tag) -> std::tuple<double, std::int64_t> {
    using T = decltype(tag);
    const auto s = view_of<const T, 3>(student, "student_logits");
    const auto u = view_of<const T, 3>(teacher, "teacher_logits");
    auto g = view_of<T, 3>(grad, "grad");
    nb::gil_scoped_release nogil;
    const auto r = ds::divergence_loss(s, u, g, o, args);
    return {r.loss, static_cast<std::int64_t>(r.active_tokens)};
  });
}

/// SFT NLL: logits / grad [B, L, V], labels [B, L] int64.
std::tuple<double, std::int64_t> sft_py(const nb::dict& opts, const arr_t& logits,
                                        const arr_t& labels, const arr_t& grad,
                                        const opt_arr& mask, const opt_arr& per_token) {
  ds::sft_options o;
  for (auto [k, v] : opts) {
    const std::string key = nb::cast<std::string>(k);
    if (key == "ignore_index") o.ignore_index = static_cast<std::int64_t>(num(v, key));
    else if (key == "label_smoothing") o.label_smoothing = num(v, key);
    else if (key == "temperature") o.temperature = num(v, key);
    else if (key == "loss_agg_mode") o.aggregate.mode = agg_mode_from_string(str(v, key));
    else unknown_key("sft", key);
  }
  const int dt = dtype_of(logits);
  expect_dtype(labels, i64, "labels", "int64");
  expect_dtype(grad, dt, "grad", "the logits' dtype");
  const auto args = token_args_of(mask, per_token);
  return with_student_type(dt, [&](auto tag) -> std::tuple<double, std::int64_t> {
    using T = decltype(tag);
    const auto s = view_of<const T, 3>(logits, "logits");
    const auto y = view_of<const std::int64_t, 2>(labels, "labels");
    auto g = view_of<T, 3>(grad, "grad");
    nb::gil_scoped_release nogil;
    const auto r = ds::sft_loss(s, y, g, o, args);
    return {r.loss, static_cast<std::int64_t>(r.active_tokens)};
  });
}

/// Top-k teacher: student / grad [B, L, V], teacher log-probs [B, L, K] float32, ids int64.
std::tuple<double, std::int64_t> topk_py(const nb::dict& opts, const arr_t& student,
                                         const arr_t& t_logp, const arr_t& t_ids, const arr_t& grad,
                                         const opt_arr& mask, const opt_arr& per_token) {
  ds::topk_options o;
  for (auto [k, v] : opts) {
    const std::string key = nb::cast<std::string>(k);
    if (key == "convention") {
      const std::string c = str(v, key);
      if (c == "renormalized_teacher") o.convention = ds::topk_convention::renormalized_teacher;
      else if (c == "tail_bucket") o.convention = ds::topk_convention::tail_bucket;
      else if (c == "renormalized_both") o.convention = ds::topk_convention::renormalized_both;
      else GRPO_THROW(bad_option, "convention: unknown '" + c + "'");
    } else if (key == "teacher_power") o.teacher_power = num(v, key);
    else fill(o, key, v);
  }
  const int dt = dtype_of(student);
  expect_dtype(t_logp, f32, "teacher_logprobs", "float32");
  expect_dtype(t_ids, i64, "teacher_ids", "int64");
  expect_dtype(grad, dt, "grad", "the student's dtype");
  const auto args = token_args_of(mask, per_token);
  return with_student_type(dt, [&](auto tag) -> std::tuple<double, std::int64_t> {
    using T = decltype(tag);
    const auto s = view_of<const T, 3>(student, "student_logits");
    const auto tv = view_of<const float, 3>(t_logp, "teacher_logprobs");
    const auto ti = view_of<const std::int64_t, 3>(t_ids, "teacher_ids");
    auto g = view_of<T, 3>(grad, "grad");
    nb::gil_scoped_release nogil;
    const auto r = ds::topk_loss(s, tv, ti, g, o, args);
    return {r.loss, static_cast<std::int64_t>(r.active_tokens)};
  });
}

}  // namespace

void bind_distill(nb::module_& m) {
  m.def("distill_dense", &dense_py);
  m.def("distill_sft", &sft_py);
  m.def("distill_topk", &topk_py);
}

}  // namespace grpo::py

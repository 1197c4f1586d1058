// SPDX-License-Identifier: Apache-2.0
/// @file test_validation.cpp
/// @brief Every option and shape check of the distillation front ends (divergence_loss, sft_loss,
///        topk_loss, token_args), one bad field at a time, checked for its error id AND the field
///        named in the message (test_dense's error test checks ids only).
#include <distill/dense.hpp>
#include <distill/sft.hpp>
#include <distill/topk.hpp>

#include <doctest/doctest.h>
#include <support/expect_error.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace gd = grpo::distill;
using grpo::errc;
using grpo::index_t;
using grpo_test::expect_error;

namespace {
constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();
constexpr double inf_v = std::numeric_limits<double>::infinity();
}  // namespace

TEST_CASE("distill: divergence options and shapes" * doctest::test_suite("validation")) {
  const index_t N = 2, V = 5;
  std::vector<float> s(N * V, 0.1f), u(N * V, 0.2f), g(N * V), small(N * (V - 1));
  const auto sv = grpo::make_view(static_cast<const float*>(s.data()), {N, V});
  const auto uv = grpo::make_view(static_cast<const float*>(u.data()), {N, V});
  struct opt_case {
    std::string label, field;
    std::function<void(gd::distill_options&)> mutate;
  };
  const std::vector<opt_case> cases = {
      {"temperature 0", "distill_options.temperature", [](auto& o) { o.temperature = 0; }},
      {"temperature inf", "distill_options.temperature", [](auto& o) { o.temperature = inf_v; }},
      {"grad_output NaN", "distill_options.grad_output", [](auto& o) { o.grad_output = nan_v; }},
      {"jsd beta 1.5", "distill_options.beta",
       [](auto& o) {
         o.kind = gd::divergence::jsd;
         o.beta = 1.5;
       }},
      {"jsd beta NaN", "distill_options.beta",
       [](auto& o) {
         o.kind = gd::divergence::jsd;
         o.beta = nan_v;
       }},
      {"jsd endpoints 7", "distill_options.endpoints",
       [](auto& o) {
         o.kind = gd::divergence::jsd;
         o.endpoints = static_cast<gd::jsd_endpoints>(7);
       }},
      {"skew alpha 1", "distill_options.alpha",
       [](auto& o) {
         o.kind = gd::divergence::skew_reverse_kl;
         o.alpha = 1.0;
       }},
      {"skew alpha -0.1", "distill_options.alpha",
       [](auto& o) {
         o.kind = gd::divergence::skew_forward_kl;
         o.alpha = -0.1;
       }},
      {"kind 99", "distill_options.kind",
       [](auto& o) { o.kind = static_cast<gd::divergence>(99); }},
  };
  for (const auto& c : cases) {
    gd::distill_options o;
    c.mutate(o);
    expect_error(
        c.label, [&] { (void)gd::divergence_loss(sv, uv, o); }, errc::bad_option, c.field);
  }
  gd::distill_options o;
  expect_error(
      "teacher [N, V-1]",
      [&] {
        (void)gd::divergence_loss(
            sv, grpo::make_view(static_cast<const float*>(small.data()), {N, V - 1}), o);
      },
      errc::shape_mismatch, "teacher_logits");
  expect_error(
      "grad [N, V-1]",
      [&] {
        (void)gd::divergence_loss(sv, uv, grpo::make_view(small.data(), {N, V - 1}), o);
      },
      errc::shape_mismatch, "grad");
  expect_error(
      "empty vocabulary",
      [&] {
        (void)gd::divergence_loss(grpo::make_view(static_cast<const float*>(s.data()), {N, 0}),
                                  grpo::make_view(static_cast<const float*>(u.data()), {N, 0}), o);
      },
      errc::shape_mismatch, "vocabulary is empty");
  expect_error(
      "grad aliases the teacher",
      [&] {
        (void)gd::divergence_loss(sv, uv, grpo::make_view(u.data(), {N, V}), o);
      },
      errc::bad_option, "must not alias the teacher");
  // token_args: mask / weights / per_token_loss / labels must be [B, L] (here [1, N]).
  std::vector<std::uint8_t> m(N, 1);
  std::vector<float> w(N, 1.0f), ptl(N);
  std::vector<std::int64_t> lab(N, 0);
  struct arg_case {
    std::string label, field;
    std::function<void(gd::token_args&)> mutate;
  };
  const std::vector<arg_case> args = {
      {"mask [N, 1]", "mask",
       [&](auto& a) {
         a.mask = grpo::make_view(static_cast<const std::uint8_t*>(m.data()), {N, 1});
       }},
      {"weights [N, 1]", "weights",
       [&](auto& a) {
         a.weights = grpo::make_view(static_cast<const float*>(w.data()), {N, 1});
       }},
      {"per_token_loss [N, 1]", "per_token_loss",
       [&](auto& a) {
         a.per_token_loss = grpo::make_view(ptl.data(), {N, 1});
       }},
      {"labels [N, 1]", "labels",
       [&](auto& a) {
         a.labels = grpo::make_view(static_cast<const std::int64_t*>(lab.data()), {N, 1});
       }},
  };
  for (const auto& c : args) {
    gd::token_args a;
    c.mutate(a);
    expect_error(
        c.label, [&] { (void)gd::divergence_loss(sv, uv, o, a); }, errc::shape_mismatch, c.field);
  }
}

TEST_CASE("distill: SFT options and labels" * doctest::test_suite("validation")) {
  const index_t N = 2, V = 4;
  std::vector<float> s(N * V, 0.1f);
  std::vector<std::int64_t> y = {1, 3}, y_bad = {1, 4}, y_short = {1};
  const auto sv = grpo::make_view(static_cast<const float*>(s.data()), {N, V});
  const auto yv = grpo::make_view(static_cast<const std::int64_t*>(y.data()), {N});
  struct sft_case {
    std::string label, field;
    std::function<void(gd::sft_options&)> mutate;
  };
  const std::vector<sft_case> cases = {
      {"temperature -1", "sft_options.temperature", [](auto& o) { o.temperature = -1; }},
      {"temperature NaN", "sft_options.temperature", [](auto& o) { o.temperature = nan_v; }},
      {"label_smoothing 1", "sft_options.label_smoothing", [](auto& o) { o.label_smoothing = 1; }},
      {"label_smoothing -0.1", "sft_options.label_smoothing",
       [](auto& o) { o.label_smoothing = -0.1; }},
      {"grad_output inf", "sft_options.grad_output", [](auto& o) { o.grad_output = inf_v; }},
  };
  for (const auto& c : cases) {
    gd::sft_options o;
    c.mutate(o);
    expect_error(
        c.label, [&] { (void)gd::sft_loss(sv, yv, o); }, errc::bad_option, c.field);
  }
  gd::sft_options o;
  expect_error(
      "label = V",
      [&] {
        (void)gd::sft_loss(sv, grpo::make_view(static_cast<const std::int64_t*>(y_bad.data()), {N}),
                           o);
      },
      errc::out_of_range, "labels: id 4 at token (0, 1)");
  expect_error(
      "labels [N-1]",
      [&] {
        (void)gd::sft_loss(
            sv, grpo::make_view(static_cast<const std::int64_t*>(y_short.data()), {N - 1}), o);
      },
      errc::shape_mismatch, "labels");
}

TEST_CASE("distill: top-k options and shapes" * doctest::test_suite("validation")) {
  const index_t N = 2, V = 6, K = 2;
  std::vector<float> s(N * V, 0.1f), tl = {-1.0f, -2.0f, -0.5f, -1.5f};
  std::vector<std::int32_t> ti = {0, 1, 2, 3};
  std::vector<float> tl_big(N * 129, -5.0f);
  std::vector<std::int32_t> ti_big(N * 129);
  for (std::size_t k = 0; k < ti_big.size(); ++k) ti_big[k] = static_cast<std::int32_t>(k % 129);
  const auto sv = grpo::make_view(static_cast<const float*>(s.data()), {N, V});
  const auto lv = grpo::make_view(static_cast<const float*>(tl.data()), {N, K});
  const auto iv = grpo::make_view(static_cast<const std::int32_t*>(ti.data()), {N, K});
  struct topk_case {
    std::string label, field;
    errc code;
    std::function<void(gd::topk_options&)> mutate;
  };
  const std::vector<topk_case> cases = {
      {"teacher_power 0", "topk_options.teacher_power", errc::bad_option,
       [](auto& o) { o.teacher_power = 0; }},
      {"teacher_power NaN", "topk_options.teacher_power", errc::bad_option,
       [](auto& o) { o.teacher_power = nan_v; }},
      {"convention 9", "topk_options.convention", errc::bad_option,
       [](auto& o) { o.convention = static_cast<gd::topk_convention>(9); }},
      {"reverse_kl with renormalized_teacher", "reverse_kl with renormalized_teacher",
       errc::bad_option, [](auto& o) { o.kind = gd::divergence::reverse_kl; }},
      {"temperature 0 (shared options)", "distill_options.temperature", errc::bad_option,
       [](auto& o) { o.temperature = 0; }},
  };
  for (const auto& c : cases) {
    gd::topk_options o;
    c.mutate(o);
    expect_error(
        c.label, [&] { (void)gd::topk_loss(sv, lv, iv, o); }, c.code, c.field);
  }
  gd::topk_options o;
  expect_error(
      "teacher_ids [N, K-1]",
      [&] {
        (void)gd::topk_loss(
            sv, lv, grpo::make_view(static_cast<const std::int32_t*>(ti.data()), {N, K - 1}), o);
      },
      errc::shape_mismatch, "teacher_ids");
  expect_error(
      "K = 129 > max_topk",
      [&] {
        (void)gd::topk_loss(
            grpo::make_view(static_cast<const float*>(s.data()), {N, V}),
            grpo::make_view(static_cast<const float*>(tl_big.data()), {N, 129}),
            grpo::make_view(static_cast<const std::int32_t*>(ti_big.data()), {N, 129}), o);
      },
      errc::shape_mismatch, "K = 129 must lie in [1, 128]");
}

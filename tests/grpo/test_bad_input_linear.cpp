// SPDX-License-Identifier: Apache-2.0
// Bad-input probes of the fused linear GRPO step and linear_log_softmax (built with grpo::eigen):
// null data, negative extents, outputs over inputs, stride-0 outputs, each with its error id and
// argument name (docs/architecture.md, "Validation contract").
#include <grpo/fused_linear.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace {

using grpo::errc;
using grpo::index_t;
using grpo::make_view;

void expect_named(const char* name, errc code, const char* field, const std::function<void()>& f) {
  const std::string probe_name = name;
  CAPTURE(probe_name);
  bool thrown = false;
  try {
    f();
  } catch (const grpo::error& e) {
    thrown = true;
    CHECK(e.code() == code);
    CHECK_MESSAGE(std::string(e.what()).find(field) != std::string::npos, std::string(e.what()));
  }
  CHECK_MESSAGE(thrown, "no error thrown");
}

}  // namespace

TEST_CASE("bad input: fused_linear_grpo_step and linear_log_softmax" *
          doctest::test_suite("bad_input")) {
  const index_t B = 1, T = 2, H = 4, V = 5;
  std::vector<float> h(B * T * H, 0.25f), w(V * H, 0.5f), gh(B * T * H), gw(V * H);
  std::vector<std::int64_t> ids{1, 3};
  std::vector<double> adv{1.0, -1.0}, mask{1, 1};
  grpo::loss_batch<double, double> in;
  in.advantages = make_view(static_cast<const double*>(adv.data()), {B, T});
  in.mask = make_view(static_cast<const double*>(mask.data()), {B, T});
  const grpo::loss_options lo;
  const auto hv = make_view(static_cast<const float*>(h.data()), {B, T, H});
  const auto wv = make_view(static_cast<const float*>(w.data()), {V, H});
  const auto iv = make_view(ids.data(), {B, T});
  auto step = [&](auto hh, auto ww, auto ghv, auto gwv) {
    grpo::fused_linear_grpo_step(lo, hh, ww, iv, in, ghv, gwv);
  };
  const auto ghv = make_view(gh.data(), {B, T, H});
  const auto gwv = make_view(gw.data(), {V, H});
  expect_named("null hidden", errc::shape_mismatch, "hidden", [&] {
    step(make_view<const float>(nullptr, {B, T, H}), wv, ghv, gwv);
  });
  expect_named("null grad_weight", errc::shape_mismatch, "grad_weight", [&] {
    step(hv, wv, ghv, make_view<float>(nullptr, {V, H}));
  });
  expect_named("negative extent", errc::shape_mismatch, "hidden", [&] {
    step(grpo::strided_view<const float, 3>(h.data(), {B, -T, H}, {8, 4, 1}), wv, ghv, gwv);
  });
  expect_named("grad_weight over the weight", errc::bad_option, "grad_weight", [&] {
    std::vector<float> w2(w);
    step(hv, make_view(static_cast<const float*>(w2.data()), {V, H}), ghv,
         make_view(w2.data(), {V, H}));
  });
  expect_named("stride-0 grad_hidden", errc::bad_option, "grad_hidden", [&] {
    step(hv, wv, grpo::strided_view<float, 3>(gh.data(), {B, T, H}, {8, 0, 1}), gwv);
  });
  std::vector<float> lp(2);
  expect_named("linear_log_softmax: logp over hidden", errc::bad_option, "logp", [&] {
    std::vector<float> h2(h);
    grpo::linear_log_softmax(make_view(static_cast<const float*>(h2.data()), {T, H}), wv,
                             make_view(ids.data(), {T}), make_view(h2.data() + 1, {T}));
  });
  expect_named("linear_log_softmax: temperature 1e-45", errc::bad_option, "temperature", [&] {
    grpo::fused_linear_options o;
    o.logprob.temperature = 1e-45f;
    grpo::linear_log_softmax(make_view(static_cast<const float*>(h.data()), {T, H}), wv,
                             make_view(ids.data(), {T}), make_view(lp.data(), {T}), {}, {}, o);
  });
  // Valid call: finite outputs.
  CHECK_NOTHROW(step(hv, wv, ghv, gwv));
  for (float x : gh) CHECK(std::isfinite(x));
}

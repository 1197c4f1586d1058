// SPDX-License-Identifier: Apache-2.0
// Bad-input suite of the kernels and option structs around the GRPO core: selective log-softmax
// (forward / backward), the fused GRPO step, dense / SFT distillation and the rule-reward options.
// Each probe asserts the exact error id and the field named in the message, or the defined value
// (docs/architecture.md, "Validation contract").
#include <distill/dense.hpp>
#include <distill/sft.hpp>
#include <grpo/fused_grpo.hpp>
#include <grpo/logprob.hpp>
#if defined(GRPO_TEST_HAS_REWARDS)
#include <rewards/compose.hpp>
#include <rewards/length.hpp>
#include <rewards/repetition.hpp>
#endif

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace {

using grpo::errc;
using grpo::index_t;
using grpo::make_view;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

struct probe {
  const char* name;
  errc code;
  const char* field;
  std::function<void()> call;
};

void run_table(const std::vector<probe>& table) {
  for (const auto& p : table) {
    const std::string probe_name = p.name;
    CAPTURE(probe_name);
    bool thrown = false;
    try {
      p.call();
    } catch (const grpo::error& e) {
      thrown = true;
      CHECK(e.code() == p.code);
      CHECK_MESSAGE(std::string(e.what()).find(p.field) != std::string::npos,
                    std::string(e.what()));
    } catch (const std::exception& e) {
      FAIL_CHECK("not a grpo::error: " << e.what());
      thrown = true;
    }
    CHECK_MESSAGE(thrown, "no error thrown");
  }
}

template <class T, std::size_t R>
grpo::strided_view<T, R> raw(T* p, std::array<index_t, R> e, std::array<index_t, R> s) {
  return grpo::strided_view<T, R>(p, e, s);
}

}  // namespace

TEST_CASE("bad input: selective_log_softmax and its backward" * doctest::test_suite("bad_input")) {
  const index_t N = 3, V = 4;
  std::vector<float> x{0.1f, 0.2f, -0.3f, 1.0f, 2.0f, 0.0f, 0.5f, -1.0f, 0.3f, 0.3f, 0.3f, 0.3f};
  std::vector<std::int64_t> ids{0, 3, 2};
  std::vector<float> lp(N), glp{1.0f, -0.5f, 0.25f}, g(N * V), buf(N * V + 8);
  auto fwd = [&](auto logits, auto out, grpo::logprob_options o = {}) {
    grpo::selective_log_softmax(logits, make_view(ids.data(), {N}), out, {}, {}, o);
  };
  const auto xv = make_view(static_cast<const float*>(x.data()), {N, V});
  auto bwd = [&](auto logits, auto grad) {
    grpo::selective_log_softmax_backward(logits, make_view(ids.data(), {N}),
                                         make_view(static_cast<const float*>(glp.data()), {N}),
                                         grpo::strided_view<const float, 1>{}, grad);
  };
  grpo::logprob_options tiny;
  tiny.temperature = 1e-45f;
  run_table({
      {"null logits with rows", errc::shape_mismatch, "logits",
       [&] {
         fwd(make_view<const float>(nullptr, {N, V}), make_view(lp.data(), {N}));
       }},
      {"negative vocabulary extent", errc::shape_mismatch, "logits",
       [&] {
         fwd(raw<const float, 2>(x.data(), {N, -V}, {V, 1}), make_view(lp.data(), {N}));
       }},
      {"stride-0 logp", errc::bad_option, "logp",
       [&] { fwd(xv, raw<float, 1>(lp.data(), {N}, {0})); }},
      {"logp inside the logits", errc::bad_option, "logp",
       [&] {
         std::vector<float> xb(x);
         fwd(make_view(static_cast<const float*>(xb.data()), {N, V}),
             make_view(xb.data() + 2, {N}));
       }},
      {"temperature 1e-45", errc::bad_option, "temperature",
       [&] { fwd(xv, make_view(lp.data(), {N}), tiny); }},
      {"backward: null grad_logits", errc::shape_mismatch, "grad_logits",
       [&] {
         bwd(xv, make_view<float>(nullptr, {N, V}));
       }},
      {"backward: null logits", errc::shape_mismatch, "logits",
       [&] {
         bwd(make_view<const float>(nullptr, {N, V}), make_view(g.data(), {N, V}));
       }},
      {"backward: stride-0 grad_logits", errc::bad_option, "grad_logits",
       [&] {
         bwd(xv, raw<float, 2>(g.data(), {N, V}, {0, 1}));
       }},
      {"backward: grad_logits shifted by one element over the logits", errc::bad_option,
       "overlaps logits",
       [&] {
         std::copy(x.begin(), x.end(), buf.begin());
         bwd(make_view(static_cast<const float*>(buf.data()), {N, V}),
             make_view(buf.data() + 1, {N, V}));
       }},
      {"backward: grad_logp inf", errc::bad_value, "grad_logp",
       [&] {
         std::vector<float> gi{1.0f, std::numeric_limits<float>::infinity(), 0.0f};
         grpo::selective_log_softmax_backward(
             xv, make_view(ids.data(), {N}), make_view(static_cast<const float*>(gi.data()), {N}),
             grpo::strided_view<const float, 1>{}, make_view(g.data(), {N, V}));
       }},
      {"backward: grad_logits over grad_logp", errc::bad_option, "grad_logp",
       [&] {
         std::vector<float> mem(N * V, 0.5f);
         grpo::selective_log_softmax_backward(
             xv, make_view(ids.data(), {N}), make_view(static_cast<const float*>(mem.data()), {N}),
             grpo::strided_view<const float, 1>{}, make_view(mem.data(), {N, V}));
       }},
  });
  // Defined: an exact in-place alias still works and equals the out-of-place gradient.
  std::vector<float> ref(N * V), inplace(x);
  bwd(xv, make_view(ref.data(), {N, V}));
  bwd(make_view(static_cast<const float*>(inplace.data()), {N, V}),
      make_view(inplace.data(), {N, V}));
  CHECK(inplace == ref);
  // A zero-size batch from empty vectors is accepted.
  std::vector<float> e0;
  std::vector<std::int64_t> i0;
  CHECK_NOTHROW(grpo::selective_log_softmax(make_view(static_cast<const float*>(e0.data()), {0, V}),
                                            make_view(i0.data(), {0}), make_view(e0.data(), {0})));
}

TEST_CASE("bad input: fused_grpo_step" * doctest::test_suite("bad_input")) {
  const index_t B = 1, T = 2, V = 3;
  std::vector<float> x{0.1f, 0.2f, 0.3f, -1.0f, 0.5f, 2.0f}, g(6), buf(16);
  std::vector<std::int64_t> ids{0, 2};
  std::vector<double> adv{1.0, 1.0}, mask{1, 1}, old{-1.0, -1.2};
  grpo::loss_batch<double, double> in;
  in.advantages = make_view(static_cast<const double*>(adv.data()), {B, T});
  in.mask = make_view(static_cast<const double*>(mask.data()), {B, T});
  in.old_logp = make_view(static_cast<const double*>(old.data()), {B, T});
  const grpo::loss_options lo;
  auto step = [&](auto logits, auto grad) {
    grpo::fused_grpo_step(lo, logits, make_view(ids.data(), {B, T}), in, grad);
  };
  const auto xv = make_view(static_cast<const float*>(x.data()), {B, T, V});
  run_table({
      {"null logits", errc::shape_mismatch, "logits",
       [&] {
         step(make_view<const float>(nullptr, {B, T, V}), make_view(g.data(), {B, T, V}));
       }},
      {"null grad_logits", errc::shape_mismatch, "grad_logits",
       [&] {
         step(xv, make_view<float>(nullptr, {B, T, V}));
       }},
      {"stride-0 grad_logits", errc::bad_option, "grad_logits",
       [&] {
         step(xv, raw<float, 3>(g.data(), {B, T, V}, {6, 0, 1}));
       }},
      {"grad_logits shifted over the logits", errc::bad_option, "overlaps logits",
       [&] {
         std::copy(x.begin(), x.end(), buf.begin());
         step(make_view(static_cast<const float*>(buf.data()), {B, T, V}),
              make_view(buf.data() + 2, {B, T, V}));
       }},
      {"negative extent", errc::shape_mismatch, "logits",
       [&] {
         step(raw<const float, 3>(x.data(), {B, -T, V}, {6, 3, 1}), make_view(g.data(), {B, T, V}));
       }},
  });
}

TEST_CASE("bad input: distillation" * doctest::test_suite("bad_input")) {
  namespace gd = grpo::distill;
  const index_t N = 2, V = 3;
  std::vector<float> s{0.1f, 0.2f, 0.3f, -1.0f, 0.5f, 2.0f}, u{0.3f, 0.2f, 0.1f, 1.0f, 0.5f, -2.0f};
  std::vector<float> g(6), buf(10);
  const auto sv = make_view(static_cast<const float*>(s.data()), {N, V});
  const auto uv = make_view(static_cast<const float*>(u.data()), {N, V});
  auto with_t = [](double t) {
    gd::distill_options o;
    o.temperature = t;
    return o;
  };
  std::vector<std::int64_t> y{0, 2};
  run_table({
      {"null student logits", errc::shape_mismatch, "student_logits",
       [&] {
         gd::divergence_loss(make_view<const float>(nullptr, {N, V}), uv, gd::distill_options{});
       }},
      {"null grad", errc::shape_mismatch, "grad",
       [&] {
         gd::divergence_loss(sv, uv, make_view<float>(nullptr, {N, V}), gd::distill_options{});
       }},
      {"temperature 1e-300", errc::bad_option, "distill_options.temperature",
       [&] { gd::divergence_loss(sv, uv, with_t(1e-300)); }},
      {"temperature 1e300", errc::bad_option, "distill_options.temperature",
       [&] { gd::divergence_loss(sv, uv, with_t(1e300)); }},
      {"temperature NaN", errc::bad_option, "distill_options.temperature",
       [&] { gd::divergence_loss(sv, uv, with_t(kNaN)); }},
      {"beta NaN", errc::bad_option, "distill_options.beta",
       [&] {
         gd::distill_options o;
         o.kind = gd::divergence::jsd;
         o.beta = kNaN;
         gd::divergence_loss(sv, uv, o);
       }},
      {"kind out of range", errc::bad_option, "distill_options.kind",
       [&] {
         gd::distill_options o;
         o.kind = static_cast<gd::divergence>(11);
         gd::divergence_loss(sv, uv, o);
       }},
      {"grad shifted over the student", errc::bad_option, "overlaps student_logits",
       [&] {
         std::copy(s.begin(), s.end(), buf.begin());
         gd::divergence_loss(make_view(static_cast<const float*>(buf.data()), {N, V}), uv,
                             make_view(buf.data() + 1, {N, V}), gd::distill_options{});
       }},
      {"stride-0 grad", errc::bad_option, "grad",
       [&] {
         gd::divergence_loss(sv, uv, raw<float, 2>(g.data(), {N, V}, {0, 1}),
                             gd::distill_options{});
       }},
      {"student logit / T beyond DBL_MAX", errc::bad_value, "loss is not finite",
       [&] {
         std::vector<double> sd{1e-300, -1.4e308, 0.0}, ud{5.2, -5.9, 0.0};
         gd::divergence_loss(make_view(static_cast<const double*>(sd.data()), {1, 3}),
                             make_view(static_cast<const double*>(ud.data()), {1, 3}), with_t(0.1));
       }},
      {"sft temperature 1e-300", errc::bad_option, "sft_options.temperature",
       [&] {
         gd::sft_options o;
         o.temperature = 1e-300;
         gd::sft_loss(sv, make_view(static_cast<const std::int64_t*>(y.data()), {1, N}), o);
       }},
  });
}

#if defined(GRPO_TEST_HAS_REWARDS)
TEST_CASE("bad input: rule-reward options" * doctest::test_suite("bad_input")) {
  namespace gr = grpo::rewards;
  run_table({
      {"repetition max_penalty -inf", errc::bad_option, "max_penalty",
       [] {
         gr::repetition_options o;
         o.max_penalty = -kInf;
         gr::repetition_penalty_reward("a b c a b c a b c", o);
       }},
      {"repetition max_penalty NaN", errc::bad_option, "max_penalty",
       [] {
         gr::repetition_options o;
         o.max_penalty = kNaN;
         gr::repetition_penalty_reward("a b c a b c a b c", o);
       }},
      {"cosine min_value_correct NaN", errc::bad_option, "min_value_correct",
       [] {
         gr::cosine_options o;
         o.min_value_correct = kNaN;
         gr::cosine_scaled_reward(true, 10, o);
       }},
      {"cosine max_value_wrong inf", errc::bad_option, "max_value_wrong",
       [] {
         gr::cosine_options o;
         o.max_value_wrong = kInf;
         gr::cosine_scaled_reward(false, 10, o);
       }},
      {"overlong penalty_factor NaN", errc::bad_option, "penalty_factor",
       [] {
         gr::overlong_options o;
         o.penalty_factor = kNaN;
         gr::soft_overlong_reward(20000, o);
       }},
      {"a rule returning NaN", errc::bad_value, "nan_rule",
       [] {
         gr::reward_set set;
         set.add("nan_rule", 1.0, [](const gr::sample&) -> std::optional<double> { return kNaN; });
         (void)set.score(gr::sample{});
       }},
      {"overlong variant out of range", errc::bad_option, "variant",
       [] {
         gr::overlong_options o;
         o.variant = static_cast<gr::overlong_variant>(5);
         gr::soft_overlong_reward(20000, o);
       }},
  });
}
#endif  // GRPO_TEST_HAS_REWARDS

// SPDX-License-Identifier: Apache-2.0
// GPU tests of grpo::cuda::dense_distill (+ distill_coefficients) against the CPU path
// grpo::distill::divergence_loss on the same logits, for every divergence. Label "gpu".
#include <distill/dense.hpp>
#include <grpo/cuda/distill.cuh>

#include "cuda_test_support.cuh"

#include <doctest/doctest.h>
#include <support/compare.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace {

using grpo::index_t;
using grpo::distill::divergence;
using grpo_test::device_buffer;

template <class S, class G>
void run_case(divergence kind, double beta_or_alpha, index_t B, index_t L, index_t V, double T,
              bool t2, grpo::agg_mode mode, bool in_place, unsigned seed, const std::string& what) {
  INFO(what);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  const auto N = B * L;
  const auto NV = static_cast<std::size_t>(N * V);
  std::vector<S> s(NV);
  std::vector<float> u(NV);
  for (auto& x : s) x = grpo::narrow<S>(nd(rng));
  for (auto& x : u) x = nd(rng);
  // Adversarial rows: a dominant logit (q ~ 1), a teacher block of -inf (masked vocabulary).
  s[0] = grpo::narrow<S>(40.0f);
  u[0] = 40.0f;
  for (index_t j = 0; j < V / 4; ++j) u[static_cast<std::size_t>(V + j)] = -INFINITY;
  std::vector<std::uint8_t> m(static_cast<std::size_t>(N), 1);
  m[static_cast<std::size_t>(N - 1)] = 0;
  grpo::distill::distill_options o;
  o.kind = kind;
  o.beta = beta_or_alpha;
  o.alpha = beta_or_alpha;
  o.temperature = T;
  o.scale_by_t2 = t2;
  o.aggregate.mode = mode;
  o.grad_output = 0.5;
  grpo::distill::token_args args;
  args.mask = grpo::make_view(static_cast<const std::uint8_t*>(m.data()), {B, L});
  std::vector<G> g_cpu(NV);
  const auto ref = grpo::distill::divergence_loss(
      grpo::make_view(static_cast<const S*>(s.data()), {B, L, V}),
      grpo::make_view(static_cast<const float*>(u.data()), {B, L, V}),
      grpo::make_view(g_cpu.data(), {B, L, V}), o, args);

  grpo::cuda::distill_params p;
  REQUIRE(grpo::cuda::make_distill_params(o, p));
  device_buffer<S> d_s(s);
  device_buffer<float> d_u(u), d_coef(static_cast<std::size_t>(N));
  device_buffer<std::uint8_t> d_m(m);
  device_buffer<G> d_g(in_place ? 1 : NV);
  device_buffer<double> d_loss(1);
  std::size_t cws = 0;
  const auto mv = grpo::make_view(static_cast<const std::uint8_t*>(d_m.p), {B, L});
  const auto ap = grpo::cuda::make_agg_params(o.aggregate);
  REQUIRE(grpo::cuda::distill_coefficients(mv, {}, ap, d_coef.p, nullptr, cws) == cudaSuccess);
  device_buffer<unsigned char> cw(cws);
  REQUIRE(grpo::cuda::distill_coefficients(mv, {}, ap, d_coef.p, cw.p, cws) == cudaSuccess);
  G* gp = nullptr;
  if constexpr (std::is_same_v<S, G>)
    gp = in_place ? d_s.p : d_g.p;
  else
    gp = d_g.p;
  const auto sv = grpo::make_view(static_cast<const S*>(d_s.p), {N, V});
  const auto uv = grpo::make_view(static_cast<const float*>(d_u.p), {N, V});
  const auto gv = grpo::make_view(gp, {N, V});
  std::size_t ws_bytes = 0;
  REQUIRE(grpo::cuda::dense_distill(p, sv, uv, gv, d_coef.p, d_loss.p, nullptr, nullptr,
                                    ws_bytes) == cudaSuccess);
  device_buffer<unsigned char> ws(ws_bytes);
  REQUIRE(grpo::cuda::dense_distill(p, sv, uv, gv, d_coef.p, d_loss.p, nullptr, ws.p, ws_bytes) ==
          cudaSuccess);
  grpo::cuda::read_status(reinterpret_cast<unsigned int*>(ws.p));
  grpo::cuda::read_status(reinterpret_cast<unsigned int*>(cw.p));
  const double loss = d_loss.download()[0];
  std::vector<G> g(NV);
  grpo::cuda::throw_on_error(cudaMemcpy(g.data(), gp, sizeof(G) * NV, cudaMemcpyDeviceToHost));
  CHECK(std::abs(loss - ref.loss) <= 1e-5 * std::abs(ref.loss) + 1e-7);
  const double ulp = std::is_same_v<G, float> ? 0.0 : 1.0 / 128;
  int bad = 0;
  for (index_t r = 0; r < N; ++r) {
    double scale = 0;
    for (index_t j = 0; j < V; ++j)
      scale =
          grpo_test::scale_max(scale, std::abs(static_cast<double>(grpo::widen(g_cpu[r * V + j]))));
    for (index_t j = 0; j < V; ++j) {
      const double a = grpo::widen(g[r * V + j]), e = grpo::widen(g_cpu[r * V + j]);
      if (!(std::abs(a - e) <= ulp * std::abs(e) + 2e-5 * scale + 1e-30)) ++bad;  // NaN: bad
    }
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("cuda dense_distill: every divergence matches the CPU path" *
          doctest::test_suite("cuda")) {
  using grpo::agg_mode;
  run_case<float, float>(divergence::forward_kl, 0.0, 3, 4, 5000, 1.0, false, agg_mode::token_mean,
                         false, 1, "forward kl");
  run_case<float, float>(divergence::reverse_kl, 0.0, 3, 4, 5000, 0.9, true,
                         agg_mode::seq_mean_token_mean, false, 2, "reverse kl");
  run_case<float, float>(divergence::jsd, 0.5, 3, 4, 5000, 0.9, false, agg_mode::token_sum, false,
                         3, "jsd 0.5");
  run_case<float, float>(divergence::jsd, 1.0, 2, 3, 3000, 1.0, false, agg_mode::token_mean, false,
                         4, "jsd 1 -> reverse kl");
  run_case<float, float>(divergence::skew_forward_kl, 0.1, 2, 3, 3000, 1.0, false,
                         agg_mode::token_mean, false, 5, "skew fkl");
  run_case<float, float>(divergence::skew_reverse_kl, 0.1, 2, 3, 3000, 1.0, false,
                         agg_mode::token_mean, false, 6, "skew rkl");
}

TEST_CASE("cuda dense_distill: bf16 logits, in-place bf16 gradient, long rows" *
          doctest::test_suite("cuda")) {
  run_case<grpo::bfloat16, grpo::bfloat16>(divergence::forward_kl, 0.0, 2, 2, 151936, 1.0, false,
                                           grpo::agg_mode::token_mean, true, 7,
                                           "bf16 fkl in place");
  run_case<grpo::bfloat16, float>(divergence::jsd, 0.5, 2, 2, 151936, 0.7, false,
                                  grpo::agg_mode::token_mean, false, 8, "bf16 jsd");
}

namespace {

template <class S>
void run_topk(grpo::distill::divergence kind, grpo::distill::topk_convention conv, double power,
              index_t N, index_t V, index_t K, unsigned seed, const std::string& what) {
  INFO(what);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  const auto NV = static_cast<std::size_t>(N * V);
  std::vector<S> s(NV);
  for (auto& x : s) x = grpo::narrow<S>(nd(rng));
  // Teacher: K distinct ids per row (unsorted, one padding slot), log-probs of a peaked
  // distribution whose listed mass is below 1.
  std::vector<std::int64_t> ids(static_cast<std::size_t>(N * K));
  std::vector<float> lp(static_cast<std::size_t>(N * K));
  for (index_t r = 0; r < N; ++r) {
    for (index_t i = 0; i < K; ++i) {
      ids[static_cast<std::size_t>(r * K + i)] = (r * 131 + i * 977 + 5) % V;
      lp[static_cast<std::size_t>(r * K + i)] =
          -2.0f - 0.25f * static_cast<float>(i) - 0.1f * std::abs(nd(rng));
    }
    ids[static_cast<std::size_t>(r * K + K - 1)] = -1;  // padding
  }
  grpo::distill::topk_options o;
  o.kind = kind;
  o.convention = conv;
  o.teacher_power = power;
  o.temperature = 0.8;
  o.beta = 0.5;
  o.alpha = 0.1;
  std::vector<float> g_cpu(NV);
  const auto ref = grpo::distill::topk_loss(
      grpo::make_view(static_cast<const S*>(s.data()), {N, V}),
      grpo::make_view(static_cast<const float*>(lp.data()), {N, K}),
      grpo::make_view(static_cast<const std::int64_t*>(ids.data()), {N, K}),
      grpo::make_view(g_cpu.data(), {N, V}), o);
  grpo::cuda::distill_params p;
  grpo::cuda::topk_params tp;
  REQUIRE(grpo::cuda::make_topk_params(o, p, tp));
  device_buffer<S> d_s(s);
  device_buffer<float> d_lp(lp), d_g(NV);
  device_buffer<std::int64_t> d_ids(ids);
  device_buffer<double> d_loss(1);
  const auto sv = grpo::make_view(static_cast<const S*>(d_s.p), {N, V});
  const auto lv = grpo::make_view(static_cast<const float*>(d_lp.p), {N, K});
  const auto iv = grpo::make_view(static_cast<const std::int64_t*>(d_ids.p), {N, K});
  const auto gv = grpo::make_view(d_g.p, {N, V});
  std::size_t wsb = 0;
  REQUIRE(grpo::cuda::topk_distill(p, tp, sv, lv, iv, gv, nullptr, d_loss.p, nullptr, nullptr,
                                   wsb) == cudaSuccess);
  device_buffer<unsigned char> ws(wsb);
  REQUIRE(grpo::cuda::topk_distill(p, tp, sv, lv, iv, gv, nullptr, d_loss.p, nullptr, ws.p, wsb) ==
          cudaSuccess);
  grpo::cuda::read_status(reinterpret_cast<unsigned int*>(ws.p));
  const double loss = d_loss.download()[0];
  const auto g = d_g.download();
  // The CPU default aggregation is token_mean over N rows; the device sums with c = 1.
  CHECK(std::abs(loss / static_cast<double>(N) - ref.loss) <= 1e-5 * std::abs(ref.loss) + 1e-7);
  int bad = 0;
  for (index_t r = 0; r < N; ++r) {
    double scale = 0;
    for (index_t j = 0; j < V; ++j)
      scale = grpo_test::scale_max(scale, std::abs(double(g_cpu[r * V + j])));
    for (index_t j = 0; j < V; ++j) {
      const double a = g[r * V + j] / static_cast<double>(N), e = g_cpu[r * V + j];
      if (!(std::abs(a - e) <= 2e-5 * scale + 1e-30)) ++bad;  // NaN: bad
    }
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("cuda topk_distill: three conventions x divergences match the CPU path" *
          doctest::test_suite("cuda")) {
  using grpo::distill::divergence;
  using grpo::distill::topk_convention;
  for (auto conv : {topk_convention::renormalized_teacher, topk_convention::tail_bucket,
                    topk_convention::renormalized_both})
    for (auto kind : {divergence::forward_kl, divergence::reverse_kl, divergence::jsd,
                      divergence::skew_forward_kl, divergence::skew_reverse_kl}) {
      if (kind == divergence::reverse_kl && conv == topk_convention::renormalized_teacher)
        continue;  // +inf, rejected by both paths
      run_topk<float>(kind, conv, 1.0, 6, 3001, 16, 11u + unsigned(conv) * 7u + unsigned(kind),
                      "conv " + std::to_string(int(conv)) + " kind " + std::to_string(int(kind)));
    }
  run_topk<grpo::bfloat16>(divergence::forward_kl, topk_convention::tail_bucket, 0.8, 3, 151936,
                           128, 99u, "bf16, V = 151936, K = 128, re-tempered");
}

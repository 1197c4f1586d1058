// SPDX-License-Identifier: Apache-2.0
// GPU tests of grpo::cuda::fused_grpo_step and grpo::cuda::compute_loss against the CPU path
// (grpo::fused_grpo_step / grpo::compute_loss) on the same inputs. Label "gpu".
#define GRPO_LOGPROB_USE_EIGEN 0  // the CPU reference's scalar loops (Eigen is not needed here)
#include <grpo/cuda/fused_grpo.cuh>
#include <grpo/fused_grpo.hpp>
#include <grpo/presets.hpp>

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
using grpo_test::device_buffer;

struct host_batch {
  index_t B, T, V;
  std::vector<float> logits;  // [B, T, V] float values (rounded to the logits dtype)
  std::vector<std::int64_t> ids;
  std::vector<float> old_lp, ref_lp, adv, mask, smp;
  std::vector<unsigned char> trunc;
};

host_batch make(index_t B, index_t T, index_t V, unsigned seed, bool bf16_values) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::uniform_real_distribution<float> ud(0.0f, 1.0f);
  host_batch h{B, T, V, {}, {}, {}, {}, {}, {}, {}, {}};
  const auto n = static_cast<std::size_t>(B * T);
  h.logits.resize(n * static_cast<std::size_t>(V));
  for (auto& x : h.logits) {
    x = nd(rng);
    if (bf16_values) x = static_cast<float>(grpo::widen(grpo::narrow<grpo::bfloat16>(x)));
  }
  h.ids.resize(n);
  h.old_lp.resize(n);
  h.ref_lp.resize(n);
  h.adv.resize(n);
  h.mask.resize(n);
  h.smp.resize(n);
  h.trunc.assign(static_cast<std::size_t>(B), 0);
  for (index_t i = 0; i < B; ++i) {
    const float A = nd(rng) * 0.5f;
    for (index_t t = 0; t < T; ++t) {
      const auto k = static_cast<std::size_t>(i * T + t);
      h.ids[k] = static_cast<std::int64_t>(rng() % static_cast<unsigned>(V));
      h.mask[k] = ud(rng) < 0.85f ? 1.0f : 0.0f;
      h.adv[k] = A;
      h.old_lp[k] = -3.0f * ud(rng) - 8.0f;  // near log(1/V) at V ~ 1e3-1e5: clip bands bind
      h.ref_lp[k] = h.old_lp[k] + 0.3f * nd(rng);
      h.smp[k] = h.old_lp[k] + 0.1f * nd(rng);
    }
  }
  if (B > 2) h.trunc[static_cast<std::size_t>(B - 1)] = 1;
  if (T > 1) h.ids[1] = V + 7;  // an out-of-range id on a masked token is never read
  if (T > 1) h.mask[1] = 0.0f;
  return h;
}

template <class LT, class G>
void run_case(const grpo::loss_options& lo, const host_batch& h, float temperature,
              grpo::cuda::fused_schedule sched, bool in_place, const std::string& what,
              grpo::cuda::row_cache cache = grpo::cuda::row_cache::automatic) {
  INFO(what);
  const index_t B = h.B, T = h.T, V = h.V;
  const auto NV = static_cast<std::size_t>(B * T * V);
  // CPU reference on the same (rounded) logits.
  std::vector<LT> x(NV);
  for (std::size_t k = 0; k < NV; ++k) x[k] = grpo::narrow<LT>(h.logits[k]);
  std::vector<G> g_cpu(NV);
  grpo::loss_batch<float, float> cb;
  cb.old_logp = grpo::make_view(h.old_lp.data(), {B, T});
  if (lo.kl_coef != 0.0) cb.ref_logp = grpo::make_view(h.ref_lp.data(), {B, T});
  cb.advantages = grpo::make_view(h.adv.data(), {B, T});
  cb.mask = grpo::make_view(h.mask.data(), {B, T});
  if (lo.opsm_threshold || lo.tis.enabled) cb.sampler_logp = grpo::make_view(h.smp.data(), {B, T});
  cb.truncated = std::span<const unsigned char>(h.trunc);
  grpo::fused_grpo_options fo;
  fo.logprob.temperature = temperature;
  const auto ref =
      grpo::fused_grpo_step(lo, grpo::make_view(static_cast<const LT*>(x.data()), {B, T, V}),
                            grpo::make_view(static_cast<const std::int64_t*>(h.ids.data()), {B, T}),
                            cb, grpo::make_view(g_cpu.data(), {B, T, V}), fo);

  // Device run.
  grpo::cuda::loss_params p;
  REQUIRE(grpo::cuda::make_loss_params(lo, p));
  device_buffer<LT> d_x(x);
  device_buffer<std::int64_t> d_ids(h.ids);
  device_buffer<float> d_old(h.old_lp), d_ref(h.ref_lp), d_adv(h.adv), d_mask(h.mask), d_smp(h.smp);
  device_buffer<unsigned char> d_tr(h.trunc);
  device_buffer<G> d_g(in_place ? 1 : NV);
  device_buffer<float> d_lp(static_cast<std::size_t>(B * T)), d_h(static_cast<std::size_t>(B * T));
  device_buffer<double> d_sc(4);
  grpo::cuda::device_loss_batch<float, float> db;
  auto v2 = [&](const device_buffer<float>& b) {
    return grpo::make_view(static_cast<const float*>(b.p), {B, T});
  };
  db.old_logp = v2(d_old);
  if (lo.kl_coef != 0.0) db.ref_logp = v2(d_ref);
  db.advantages = v2(d_adv);
  db.mask = v2(d_mask);
  if (lo.opsm_threshold || lo.tis.enabled) db.sampler_logp = v2(d_smp);
  db.truncated = d_tr.p;
  G* gptr = nullptr;
  if constexpr (std::is_same_v<LT, G>)
    gptr = in_place ? d_x.p : d_g.p;
  else
    gptr = d_g.p;
  const auto X = grpo::make_view(static_cast<const LT*>(d_x.p), {B, T, V});
  const auto Y = grpo::make_view(static_cast<const std::int64_t*>(d_ids.p), {B, T});
  const auto GV = grpo::make_view(gptr, {B, T, V});
  grpo::cuda::fused_grpo_options opt;
  opt.temperature = temperature;
  opt.schedule = sched;
  opt.cache = cache;
  std::size_t ws_bytes = 0;
  REQUIRE(grpo::cuda::fused_grpo_step(p, X, Y, db, GV, grpo::make_view(d_lp.p, {B, T}),
                                      grpo::make_view(d_h.p, {B, T}), d_sc.p, opt, nullptr,
                                      ws_bytes) == cudaSuccess);
  device_buffer<unsigned char> ws(ws_bytes);
  REQUIRE(grpo::cuda::fused_grpo_step(p, X, Y, db, GV, grpo::make_view(d_lp.p, {B, T}),
                                      grpo::make_view(d_h.p, {B, T}), d_sc.p, opt, ws.p,
                                      ws_bytes) == cudaSuccess);
  grpo::cuda::read_status(reinterpret_cast<unsigned int*>(ws.p));
  const auto lp = d_lp.download(), H = d_h.download();
  const auto sc = d_sc.download();
  std::vector<G> g(NV);
  grpo::cuda::throw_on_error(cudaMemcpy(g.data(), gptr, sizeof(G) * NV, cudaMemcpyDeviceToHost));

  for (std::size_t k = 0; k < lp.size(); ++k) {
    CHECK(std::abs(lp[k] - ref.logp[k]) <= 1e-5f);
    CHECK(std::abs(H[k] - ref.entropy[k]) <= 1e-5f * std::max(1.0f, ref.entropy[k]));
  }
  // rel 1e-5, plus 2e-6 absolute: log p differs from the CPU by ~1e-6 per token (fp32), which
  // moves a loss that cancels to near 0 by that much.
  auto rel = [](double a, double e) { return std::abs(a - e) <= 1e-5 * std::abs(e) + 2e-6; };
  CHECK(rel(sc[grpo::cuda::slot_loss], ref.loss));
  CHECK(rel(sc[grpo::cuda::slot_policy], ref.policy_loss));
  CHECK(rel(sc[grpo::cuda::slot_kl], ref.kl_loss));
  CHECK(rel(sc[grpo::cuda::slot_entropy], ref.entropy_loss));
  CHECK(std::abs(ref.loss) > 0.0);
  // Gradients: fp32 rtol 1e-5 of the row's scale; 16-bit outputs within one ulp of the reference
  // (both round the same fp32 maths; a one-ulp tie flip is allowed).
  const double ulp = std::is_same_v<G, float>
                         ? 1e-5
                         : (std::is_same_v<G, grpo::bfloat16> ? 1.0 / 128 : 1.0 / 1024);
  int bad = 0;
  for (index_t r = 0; r < B * T; ++r) {
    double scale = 0;
    for (index_t j = 0; j < V; ++j)
      scale =
          grpo_test::scale_max(scale, std::abs(static_cast<double>(grpo::widen(g_cpu[r * V + j]))));
    for (index_t j = 0; j < V; ++j) {
      const double a = grpo::widen(g[r * V + j]), e = grpo::widen(g_cpu[r * V + j]);
      if (!(std::abs(a - e) <= ulp * std::abs(e) + 1e-5 * scale + 1e-30)) ++bad;  // NaN: bad
    }
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("cuda fused_grpo_step: matches the CPU fused step for the presets (single pass)" *
          doctest::test_suite("cuda")) {
  const auto h = make(4, 6, 1000, 1u, false);
  for (const char* name : {"trl_grpo", "trl_dapo", "trl_dr_grpo", "trl_cispo", "trl_sapo",
                           "verl_vanilla", "verl_cispo", "openrlhf"}) {
    auto lo = grpo::preset(name);
    lo.kl_coef = 0.04;
    lo.entropy_coef = 0.01;
    run_case<float, float>(lo, h, 1.0f, grpo::cuda::fused_schedule::automatic, false, name);
  }
}

TEST_CASE("cuda fused_grpo_step: two-phase options (GSPO, OPSM, sequence TIS)" *
          doctest::test_suite("cuda")) {
  const auto h = make(4, 6, 3000, 2u, false);
  for (const char* name : {"trl_gspo", "verl_gspo", "trl_luspo"})
    run_case<float, float>(grpo::preset(name), h, 0.7f, grpo::cuda::fused_schedule::automatic,
                           false, name);
  grpo::loss_options o;
  o.opsm_threshold = 0.01;
  o.tis.enabled = true;
  o.tis.sequence = true;
  o.tis.c_max = 2.0;
  run_case<float, float>(o, h, 1.0f, grpo::cuda::fused_schedule::automatic, false, "opsm+tis");
  // GMPO, VESPO and the top-entropy mask (device quantile; given threshold on the policy term).
  run_case<float, float>(grpo::preset("verl_geo_mean"), h, 1.0f,
                         grpo::cuda::fused_schedule::automatic, false, "verl_geo_mean");
  run_case<float, float>(grpo::preset("trl_vespo"), h, 1.0f, grpo::cuda::fused_schedule::automatic,
                         false, "trl_vespo");
  grpo::loss_options te = grpo::preset("trl_dapo");
  te.top_entropy_quantile = 0.3;
  te.entropy_mask_in_denominator = true;
  run_case<float, float>(te, h, 1.0f, grpo::cuda::fused_schedule::automatic, false,
                         "top-entropy quantile");
  te.entropy_threshold = 5.0;
  te.entropy_mask_in_denominator = false;
  te.entropy_coef = 0.01;
  run_case<float, float>(te, h, 1.0f, grpo::cuda::fused_schedule::automatic, false,
                         "top-entropy threshold");
  // A token-local loss run through the two-phase schedule gives the same numbers.
  run_case<float, float>(grpo::preset("trl_dapo"), h, 1.0f, grpo::cuda::fused_schedule::two_phase,
                         false, "forced two-phase");
}

TEST_CASE("cuda fused_grpo_step: bf16 / fp16 logits, 16-bit and in-place gradients, long rows" *
          doctest::test_suite("cuda")) {
  auto lo = grpo::preset("trl_dapo");
  lo.kl_coef = 0.04;
  const auto h = make(2, 3, 70001, 3u, true);  // row longer than shared memory: looped path
  run_case<grpo::bfloat16, float>(lo, h, 1.0f, grpo::cuda::fused_schedule::automatic, false,
                                  "bf16->f32");
  run_case<grpo::bfloat16, grpo::bfloat16>(lo, h, 1.0f, grpo::cuda::fused_schedule::automatic, true,
                                           "bf16 in place");
  run_case<grpo::float16, grpo::float16>(lo, h, 0.7f, grpo::cuda::fused_schedule::automatic, false,
                                         "fp16");
}

TEST_CASE("cuda fused_grpo_step: every row-cache policy gives the same numbers" *
          doctest::test_suite("cuda")) {
  auto lo = grpo::preset("trl_dapo");
  lo.kl_coef = 0.04;
  lo.entropy_coef = 0.01;
  // fp32 rows of 70001 (280 KB) exceed shared memory: prefix caches ~55k and re-reads the rest.
  const auto h = make(2, 3, 70001, 5u, false);
  using grpo::cuda::row_cache;
  for (auto c : {row_cache::whole_rows, row_cache::prefix, row_cache::none}) {
    run_case<float, float>(lo, h, 1.0f, grpo::cuda::fused_schedule::automatic, false,
                           "fp32 cache " + std::to_string(int(c)), c);
    run_case<float, float>(lo, h, 1.0f, grpo::cuda::fused_schedule::automatic, true,
                           "fp32 in place, cache " + std::to_string(int(c)), c);
    run_case<grpo::float16, grpo::bfloat16>(lo, h, 0.7f, grpo::cuda::fused_schedule::two_phase,
                                            false, "fp16 -> bf16, cache " + std::to_string(int(c)),
                                            c);
  }
  // Small rows: the whole row is cached in every policy except none.
  const auto hs = make(3, 4, 2000, 6u, false);
  for (auto c : {row_cache::prefix, row_cache::none})
    run_case<float, float>(lo, hs, 1.0f, grpo::cuda::fused_schedule::automatic, false,
                           "small rows, cache " + std::to_string(int(c)), c);
}

TEST_CASE("cuda fused_grpo_step: more than 65,536 tokens" * doctest::test_suite("cuda")) {
  const auto h = make(2, 36000, 64, 4u, false);
  run_case<float, float>(grpo::preset("trl_grpo"), h, 1.0f, grpo::cuda::fused_schedule::automatic,
                         false, "72k tokens");
}

TEST_CASE("cuda fused_grpo_step: bad input and bad options" * doctest::test_suite("cuda")) {
  const index_t B = 1, T = 2, V = 8;
  std::vector<float> x(static_cast<std::size_t>(B * T * V), 0.0f), m{1.0f, 1.0f}, a{1.0f, 1.0f};
  std::vector<std::int64_t> ids{3, V};  // token 1: out of range on a valid token
  device_buffer<float> d_x(x), d_m(m), d_a(a), d_g(x.size()), d_lp(2), d_h(2);
  device_buffer<std::int64_t> d_ids(ids);
  device_buffer<double> d_sc(4);
  grpo::cuda::device_loss_batch<float, float> db;
  db.advantages = grpo::make_view(static_cast<const float*>(d_a.p), {B, T});
  db.mask = grpo::make_view(static_cast<const float*>(d_m.p), {B, T});
  grpo::cuda::loss_params p;
  REQUIRE(grpo::cuda::make_loss_params(grpo::loss_options{}, p));
  const auto X = grpo::make_view(static_cast<const float*>(d_x.p), {B, T, V});
  const auto Y = grpo::make_view(static_cast<const std::int64_t*>(d_ids.p), {B, T});
  std::size_t ws_bytes = 0;
  REQUIRE(grpo::cuda::fused_grpo_step(
              p, X, Y, db, grpo::make_view(d_g.p, {B, T, V}), grpo::make_view(d_lp.p, {B, T}),
              grpo::make_view(d_h.p, {B, T}), d_sc.p, {}, nullptr, ws_bytes) == cudaSuccess);
  device_buffer<unsigned char> ws(ws_bytes);
  REQUIRE(grpo::cuda::fused_grpo_step(
              p, X, Y, db, grpo::make_view(d_g.p, {B, T, V}), grpo::make_view(d_lp.p, {B, T}),
              grpo::make_view(d_h.p, {B, T}), d_sc.p, {}, ws.p, ws_bytes) == cudaSuccess);
  CHECK_THROWS_AS(grpo::cuda::read_status(reinterpret_cast<unsigned int*>(ws.p)), grpo::error);
  // single_pass with a sequence-level ratio is refused before any launch.
  grpo::loss_options seq;
  seq.policy.level = grpo::is_level::sequence;
  REQUIRE(grpo::cuda::make_loss_params(seq, p));
  grpo::cuda::fused_grpo_options opt;
  opt.schedule = grpo::cuda::fused_schedule::single_pass;
  CHECK(grpo::cuda::fused_grpo_step(p, X, Y, db, grpo::make_view(d_g.p, {B, T, V}),
                                    grpo::make_view(d_lp.p, {B, T}), grpo::make_view(d_h.p, {B, T}),
                                    d_sc.p, opt, ws.p, ws_bytes) == cudaErrorInvalidValue);
}

TEST_CASE("cuda compute_loss: the loss on [B, T] log-probs matches grpo::compute_loss" *
          doctest::test_suite("cuda")) {
  const index_t B = 16, T = 33;
  std::mt19937 rng(21);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> ud(0.0f, 1.0f);
  const auto n = static_cast<std::size_t>(B * T);
  std::vector<float> lp(n), old(n), ref(n), adv(n), mask(n), smp(n), ent(n);
  for (std::size_t k = 0; k < n; ++k) {
    lp[k] = -std::abs(nd(rng)) * 2.0f - 0.01f;
    old[k] = lp[k] + 0.3f * nd(rng);
    ref[k] = lp[k] + 0.3f * nd(rng);
    smp[k] = old[k] + 0.1f * nd(rng);
    adv[k] = nd(rng);
    mask[k] = ud(rng) < 0.9f ? 1.0f : 0.0f;
    ent[k] = 3.0f * ud(rng);
  }
  device_buffer<float> d_lp(lp), d_old(old), d_ref(ref), d_adv(adv), d_mask(mask), d_smp(smp),
      d_ent(ent), d_g(n), d_gh(n);
  device_buffer<double> d_sc(4);
  auto v = [&](const std::vector<float>& x) { return grpo::make_view(x.data(), {B, T}); };
  auto dv = [&](const device_buffer<float>& x) {
    return grpo::make_view(static_cast<const float*>(x.p), {B, T});
  };
  for (const char* name : {"trl_grpo", "trl_dapo", "trl_gspo", "trl_vespo", "verl_vanilla",
                           "verl_gspo", "verl_geo_mean", "openrlhf"}) {
    INFO(name);
    auto lo = grpo::preset(name);
    lo.kl_coef = 0.02;
    lo.entropy_coef = 0.01;
    lo.top_entropy_quantile = 0.6;
    grpo::loss_batch<float, float> cb;
    cb.logp = v(lp);
    cb.old_logp = v(old);
    cb.ref_logp = v(ref);
    cb.advantages = v(adv);
    cb.mask = v(mask);
    cb.entropy = v(ent);
    const auto r = grpo::compute_loss(lo, cb);
    grpo::cuda::loss_params p;
    REQUIRE(grpo::cuda::make_loss_params(lo, p));
    grpo::cuda::device_loss_batch<float, float> db;
    db.old_logp = dv(d_old);
    db.ref_logp = dv(d_ref);
    db.advantages = dv(d_adv);
    db.mask = dv(d_mask);
    std::size_t wsb = 0;
    REQUIRE(grpo::cuda::compute_loss(p, dv(d_lp), dv(d_ent), db, grpo::make_view(d_g.p, {B, T}),
                                     grpo::make_view(d_gh.p, {B, T}), d_sc.p, nullptr,
                                     wsb) == cudaSuccess);
    device_buffer<unsigned char> ws(wsb);
    REQUIRE(grpo::cuda::compute_loss(p, dv(d_lp), dv(d_ent), db, grpo::make_view(d_g.p, {B, T}),
                                     grpo::make_view(d_gh.p, {B, T}), d_sc.p, ws.p,
                                     wsb) == cudaSuccess);
    grpo::cuda::read_status(reinterpret_cast<unsigned int*>(ws.p));
    const auto sc = d_sc.download();
    const auto g = d_g.download(), gh = d_gh.download();
    CHECK(sc[grpo::cuda::slot_loss] == doctest::Approx(r.loss).epsilon(1e-12));
    CHECK(sc[grpo::cuda::slot_entropy] == doctest::Approx(r.entropy_loss).epsilon(1e-12));
    int bad = 0;
    for (std::size_t k = 0; k < n; ++k) {
      bad += std::abs(g[k] - r.grad_logp[k]) <= 1e-6 * (1e-3 + std::abs(r.grad_logp[k])) ? 0 : 1;
      bad += std::abs(gh[k] - r.grad_entropy[k]) <= 1e-6 * (1e-3 + std::abs(r.grad_entropy[k])) ? 0
                                                                                                : 1;
    }
    CHECK(bad == 0);
  }
}

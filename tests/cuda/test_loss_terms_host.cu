// SPDX-License-Identifier: Apache-2.0
// Host-side tests of the device loss glue (grpo/cuda/loss_terms.cuh): the steps the CUDA kernels
// run per row and per token (grpo::detail, <grpo/detail/loss_token.hpp>, the same functions
// compute_loss_into's general engine calls), replayed in the kernels' order on the CPU, must
// reproduce the independent naive double-precision reference of tests/support/reference.hpp
// (written without grpo::ops): the loss value, and central finite differences of that reference
// for dL/dlogp and dL/dH. No GPU needed: these run in CPU-only CI (label "cuda", not "gpu").
#include <grpo/cuda/loss_terms.cuh>
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>

#include "support/reference.hpp"

#include <doctest/doctest.h>
#include <support/compare.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace {

using grpo::index_t;
using namespace grpo::cuda;

struct batch_data {
  index_t B = 0, T = 0;
  std::vector<double> lp, lo, lr, ls, A, m, h, isw;
  std::vector<unsigned char> trunc;
  bool use_isw = false;
};

batch_data make_batch(index_t B, index_t T, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::uniform_real_distribution<double> ud(0.0, 1.0);
  batch_data d;
  d.B = B;
  d.T = T;
  const auto n = static_cast<std::size_t>(B * T);
  d.lp.resize(n);
  d.lo.resize(n);
  d.lr.resize(n);
  d.ls.resize(n);
  d.A.resize(n);
  d.m.resize(n);
  d.h.resize(n);
  d.isw.resize(n);
  d.trunc.assign(static_cast<std::size_t>(B), 0);
  for (index_t i = 0; i < B; ++i) {
    const double Ai = nd(rng);  // per-sequence advantage, like GRPO
    for (index_t t = 0; t < T; ++t) {
      const auto k = static_cast<std::size_t>(i * T + t);
      d.lp[k] = -std::abs(nd(rng)) * 2.0 - 0.01;
      d.lo[k] = d.lp[k] + 0.4 * nd(rng);  // ratios well outside the 0.2 clip band too
      d.lr[k] = d.lp[k] + 0.5 * nd(rng);
      d.ls[k] = d.lo[k] + 0.3 * nd(rng);
      d.A[k] = Ai;
      d.m[k] = ud(rng) < 0.8 ? 1.0 : 0.0;
      d.h[k] = std::abs(nd(rng)) * 3.0;
      d.isw[k] = 0.5 + ud(rng);
    }
  }
  // Row 1 fully masked; row B-1 truncated; ragged tails.
  for (index_t t = 0; t < T; ++t) d.m[static_cast<std::size_t>(1 * T + t)] = 0.0;
  d.trunc[static_cast<std::size_t>(B - 1)] = 1;
  for (index_t t = T - 2; t < T; ++t) d.m[static_cast<std::size_t>(0 * T + t)] = 0.0;
  return d;
}

struct emu_result {
  double loss = 0, pol = 0, kl = 0, ent = 0;
  std::vector<double> g_lp, g_h;
};

// Linear-interpolation quantile (torch.quantile), the test's own copy for the threshold.
double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

// Replays the kernels' order of operations (entropy threshold -> loss_rows -> loss_scales ->
// loss_tokens -> loss_sum) with the host+device steps of loss_terms.cuh.
emu_result emulate(const loss_params& p, const batch_data& d, bool has_old, bool has_smp,
                   bool has_ent) {
  const index_t B = d.B, T = d.T;
  auto tok = [&](index_t i, index_t t) {
    const auto k = static_cast<std::size_t>(i * T + t);
    token_in x;
    x.m = d.trunc[static_cast<std::size_t>(i)] ? 0.0 : d.m[k];
    x.lp = d.lp[k];
    x.lo = has_old ? d.lo[k] : d.lp[k];
    x.A = d.A[k];
    x.lr = d.lr[k];
    x.ls = has_smp ? d.ls[k] : x.lo;
    x.has_isw = d.use_isw;
    x.isw = d.use_isw ? d.isw[k] : 1.0;
    x.h = d.h[k];
    return x;
  };
  double thr = -INFINITY;
  if (p.emask) {
    if (p.has_entropy_threshold) {
      thr = p.entropy_threshold;
    } else {
      std::vector<double> hs;
      for (index_t i = 0; i < B; ++i)
        for (index_t t = 0; t < T; ++t)
          if (tok(i, t).m != 0.0) hs.push_back(tok(i, t).h);
      if (!hs.empty()) thr = quantile(hs, 1.0 - p.top_entropy_quantile);
    }
  }
  std::vector<row_ctx> ctx(static_cast<std::size_t>(B));
  for (index_t i = 0; i < B; ++i) {
    row_sums s;
    for (index_t t = 0; t < T; ++t) s += token_row_sums(p, tok(i, t));
    ctx[i] = finish_row(p, s);
    ctx[i].h_thr = thr;
    row_sums2 s2;
    for (index_t t = 0; t < T; ++t) s2 += token_row_sums2(p, ctx[i], tok(i, t));
    finish_row2(p, s2, d.use_isw, ctx[i]);
  }
  agg_totals fin, ent;
  fin.rows = ent.rows = static_cast<double>(B);
  fin.width = ent.width = static_cast<double>(T);
  for (const auto& c : ctx) {
    fin.n_total += c.n_fin;
    fin.non_empty += c.n_fin > 0 ? 1 : 0;
    ent.n_total += c.n_ent;
    ent.non_empty += c.n_ent > 0 ? 1 : 0;
  }
  auto group_n = [&](const agg_params& a, index_t i, bool e) {
    if (a.mode != grpo::agg_mode::group_token_mean) return 0.0;
    const index_t g0 = (i / a.group_size) * a.group_size;
    double s = 0;
    for (index_t k = g0; k < g0 + a.group_size; ++k) s += e ? ctx[k].n_ent : ctx[k].n_fin;
    return s;
  };
  for (index_t i = 0; i < B; ++i) {
    auto& c = ctx[i];
    c.s_pol = agg_row_scale(p.agg, c.n_fin, fin, group_n(p.agg, i, false));
    c.s_kl = agg_row_scale(p.kl_agg, c.n_fin, fin, group_n(p.kl_agg, i, false));
    c.s_ent = agg_row_scale(p.ent_agg, c.n_ent, ent, group_n(p.ent_agg, i, true));
    c.s_gmpo = gmpo_scale(p, static_cast<double>(B));
  }
  emu_result r;
  r.g_lp.assign(static_cast<std::size_t>(B * T), 0.0);
  r.g_h.assign(static_cast<std::size_t>(B * T), 0.0);
  for (index_t i = 0; i < B; ++i) {
    double row_g = 0;
    r.pol += gmpo_row_loss(p, ctx[i]);
    for (index_t t = 0; t < T; ++t) {
      const auto o = token_terms(p, ctx[i], tok(i, t), has_ent);
      CHECK_FALSE(o.bad);
      r.g_lp[static_cast<std::size_t>(i * T + t)] = o.g_logp;
      r.g_h[static_cast<std::size_t>(i * T + t)] = o.g_h;
      r.pol += o.pol;
      r.kl += o.kl;
      r.ent += o.ent;
      row_g += o.spread;
    }
    for (index_t t = 0; t < T; ++t)
      r.g_lp[static_cast<std::size_t>(i * T + t)] += spread_grad(p, ctx[i], row_g, tok(i, t).m);
  }
  r.loss = r.pol + p.kl_coef * r.kl - p.entropy_coef * r.ent;
  return r;
}

// The reference cannot express precomputed IS weights, nor VESPO's rollout-weight term in its
// sequence log weight; those configurations are compared with compute_loss instead (the CPU
// engine's own tests hold it to the peers there).
bool reference_supports(const grpo::loss_options& o, const batch_data& d) {
  return !d.use_isw && !(o.policy.kind == grpo::policy_loss_kind::vespo && o.tis.enabled);
}

void compare(const grpo::loss_options& o, const batch_data& d, bool has_old, bool has_smp,
             const std::string& what) {
  INFO(what);
  loss_params p;
  REQUIRE(make_loss_params(o, p));
  const bool has_ent = p.uses_entropy;
  const index_t B = d.B, T = d.T;
  const auto emu = emulate(p, d, has_old, has_smp, has_ent);
  // The loss must depend on the inputs (guards against a vacuous all-zero comparison).
  CHECK(std::abs(emu.loss) > 0.0);
  CHECK(std::abs(emu.loss - (emu.pol + o.kl_coef * emu.kl - o.entropy_coef * emu.ent)) <=
        1e-15 * (1.0 + std::abs(emu.loss)));
  if (!reference_supports(o, d)) {
    grpo::loss_batch<double, double> b;
    b.logp = grpo::make_view(d.lp.data(), {B, T});
    if (has_old) b.old_logp = grpo::make_view(d.lo.data(), {B, T});
    b.ref_logp = grpo::make_view(d.lr.data(), {B, T});
    b.advantages = grpo::make_view(d.A.data(), {B, T});
    b.mask = grpo::make_view(d.m.data(), {B, T});
    if (has_smp) b.sampler_logp = grpo::make_view(d.ls.data(), {B, T});
    if (d.use_isw) b.is_weights = grpo::make_view(d.isw.data(), {B, T});
    if (has_ent) b.entropy = grpo::make_view(d.h.data(), {B, T});
    b.truncated = std::span<const unsigned char>(d.trunc);
    const auto ref = grpo::compute_loss(o, b);
    CHECK(std::abs(emu.loss - ref.loss) <= 1e-12 * (1.0 + std::abs(ref.loss)));
    return;
  }
  grpo_ref::batch rb;
  rb.B = B;
  rb.T = T;
  rb.lp = d.lp;
  if (has_old) rb.old = d.lo;
  rb.ref = d.lr;
  rb.adv = d.A;
  rb.mask = d.m;
  if (has_smp) rb.sampler = d.ls;
  rb.entropy = d.h;
  rb.truncated = d.trunc;
  const double ref_loss = grpo_ref::objective(o, rb, rb.lp, rb.lp);
  CHECK(std::abs(emu.loss - ref_loss) <= 1e-10 * (1.0 + std::abs(ref_loss)));
  // Gradients: central differences of the reference (detached quantities held at lp).
  auto close_fd = [](double a, double e) { return std::abs(a - e) <= 1e-6 + 1e-5 * std::abs(e); };
  int bad_g = 0, bad_h = 0;
  double worst_g = 0;
  for (std::size_t k = 0; k < emu.g_lp.size(); ++k) {
    const double g = grpo_ref::fd(o, rb, static_cast<long>(k));
    if (!close_fd(emu.g_lp[k], g)) {
      ++bad_g;
      worst_g = grpo_test::err_max(worst_g, std::abs(emu.g_lp[k] - g));
    }
    if (has_ent) {
      const double h = 1e-6;
      grpo_ref::batch hp = rb, hm = rb;
      hp.entropy[k] += h;
      hm.entropy[k] -= h;
      const double gh =
          (grpo_ref::objective(o, hp, hp.lp, hp.lp) - grpo_ref::objective(o, hm, hm.lp, hm.lp)) /
          (2 * h);
      bad_h += close_fd(emu.g_h[k], gh) ? 0 : 1;
    } else {
      bad_h += emu.g_h[k] == 0.0 ? 0 : 1;
    }
  }
  INFO("worst |dL/dlogp - fd| = " << worst_g);
  CHECK(bad_g == 0);
  CHECK(bad_h == 0);
}

}  // namespace

TEST_CASE("loss_terms: device glue matches the naive reference for every supported preset" *
          doctest::test_suite("cuda")) {
  const auto d = make_batch(8, 9, 11u);
  for (const char* name : {"trl_grpo", "trl_bnpo", "trl_dr_grpo", "trl_dapo", "trl_cispo",
                           "trl_sapo", "trl_luspo", "trl_gspo", "trl_vespo", "verl_vanilla",
                           "verl_gspo", "verl_sapo", "verl_cispo", "verl_geo_mean", "openrlhf"}) {
    const auto o = grpo::preset(name);
    compare(o, d, true, false, name);
  }
}

TEST_CASE("loss_terms: KL estimators, bias correction, entropy bonus and aggregations" *
          doctest::test_suite("cuda")) {
  const auto d = make_batch(8, 7, 23u);
  using grpo::agg_mode;
  using grpo::ops::kl_estimator;
  for (auto mode : {agg_mode::token_mean, agg_mode::token_sum, agg_mode::seq_mean_token_sum,
                    agg_mode::seq_mean_token_mean, agg_mode::seq_mean_token_sum_norm,
                    agg_mode::group_token_mean}) {
    for (auto est : {kl_estimator::k1, kl_estimator::abs, kl_estimator::k2, kl_estimator::k3}) {
      for (int variant = 0; variant < 4; ++variant) {
        grpo::loss_options o;
        o.agg.mode = mode;
        o.agg.group_size = 4;
        o.agg.row_count_eps = 1e-8;
        o.agg.scale = 0.5;
        o.kl_coef = 0.05;
        o.kl.estimator = est;
        o.kl.inner_clamp = variant == 1 ? 0.3 : 0.0;  // binds for some tokens
        o.kl.outer_clamp = variant == 1 ? 0.2 : 0.0;
        o.kl.straight_through = variant == 2;
        o.kl_bias_correction = variant == 3 || variant == 0;  // 0: token ratio (product rule)
        o.entropy_coef = variant % 2 == 0 ? 0.01 : 0.0;
        o.entropy_agg.mode = agg_mode::token_mean;
        if (variant == 2) {
          grpo::agg_options ka;
          ka.mode = agg_mode::token_sum;
          ka.scale = 0.1;
          o.kl_agg = ka;
          o.agg.global_tokens = 100.0;
          o.agg.global_seqs = 12.0;
          o.agg.norm_length = 16.0;
          o.agg.global_groups = 5.0;
        }
        if (variant == 3) {
          o.policy.level = grpo::is_level::sequence;  // bias correction through a sequence ratio
          o.policy.log_ratio_max = 0.05;
        }
        compare(o, d, true, false,
                "mode " + std::to_string(int(mode)) + " est " + std::to_string(int(est)) +
                    " variant " + std::to_string(variant));
      }
    }
  }
}

TEST_CASE("loss_terms: clip variants, levels, OPSM and TIS" * doctest::test_suite("cuda")) {
  auto d = make_batch(6, 11, 5u);
  using grpo::is_level;
  using grpo::policy_loss_kind;
  for (auto kind : {policy_loss_kind::ppo_clip, policy_loss_kind::cispo, policy_loss_kind::sapo,
                    policy_loss_kind::reinforce}) {
    for (auto level : {is_level::token, is_level::sequence, is_level::sequence_token}) {
      if (kind == policy_loss_kind::reinforce && level != is_level::token) continue;
      for (int variant = 0; variant < 5; ++variant) {
        grpo::loss_options o;
        o.policy.kind = kind;
        o.policy.level = level;
        o.policy.eps_high = kind == policy_loss_kind::cispo ? 1.3 : 0.28;
        o.policy.dual_clip_c = variant == 1 ? 3.0 : 0.0;
        o.policy.delta = variant == 1 ? 1.5 : 0.0;
        o.policy.log_ratio_min = variant == 2 ? -0.3 : -20.0;
        o.policy.log_ratio_max = variant == 2 ? 0.3 : 20.0;
        o.policy.cispo = variant == 2 ? grpo::cispo_clip::verl_clip : grpo::cispo_clip::trl_cap;
        if (variant == 3) {
          o.opsm_threshold = 0.05;
          o.opsm_in_denominator = (level == is_level::token);
        }
        if (variant == 4) {
          o.tis.enabled = true;
          o.tis.sequence = level != is_level::token;
          o.tis.mode = level == is_level::sequence ? grpo::ops::tis_mode::mask
                                                   : grpo::ops::tis_mode::truncate;
          o.tis.c_max = 1.2;
          o.tis.c_min = 0.8;
          o.tis.log_clamp = 20.0;
        }
        compare(o, d, true, variant >= 3,
                "kind " + std::to_string(int(kind)) + " level " + std::to_string(int(level)) +
                    " variant " + std::to_string(variant));
      }
    }
  }
  // Precomputed IS weights and on-policy (no old_logp) batches.
  d.use_isw = true;
  grpo::loss_options o;
  o.kl_coef = 0.02;
  compare(o, d, true, false, "is_weights");
  d.use_isw = false;
  o.policy.level = is_level::sequence;
  compare(o, d, false, false, "on-policy sequence level");
}

TEST_CASE("loss_terms: GMPO, VESPO and the top-entropy mask" * doctest::test_suite("cuda")) {
  auto d = make_batch(8, 10, 41u);
  using grpo::policy_loss_kind;
  for (auto kind : {policy_loss_kind::gmpo, policy_loss_kind::vespo, policy_loss_kind::ppo_clip}) {
    for (int variant = 0; variant < 6; ++variant) {
      grpo::loss_options o;
      o.policy.kind = kind;
      o.policy.gmpo = variant % 2 ? grpo::ops::gmpo_sign::trl : grpo::ops::gmpo_sign::verl;
      o.policy.eps_low = 0.3;
      o.policy.eps_high = 0.25;
      o.kl_coef = 0.01;
      o.entropy_coef = variant == 0 ? 0.02 : 0.0;
      o.agg.row_count_eps = 1e-8;
      bool smp = false;
      if (variant == 1) {  // top-entropy quantile, in the denominator
        o.top_entropy_quantile = 0.4;
        o.entropy_coef = 0.01;
      }
      if (variant == 2) {  // given threshold, only on the policy term (TRL)
        o.top_entropy_quantile = 0.5;
        o.entropy_threshold = 1.5;
        o.entropy_mask_in_denominator = false;
        o.entropy_coef = 0.01;
        o.agg.global_seqs = 11.0;
      }
      if (variant == 3) {  // token TIS
        o.tis.enabled = true;
        o.tis.c_max = 1.3;
        o.tis.c_min = 0.7;
        smp = true;
      }
      if (variant == 4) {  // sequence TIS + OPSM out of the denominator
        o.tis.enabled = true;
        o.tis.sequence = true;
        o.tis.c_max = 3.0;
        o.opsm_threshold = 0.02;
        o.opsm_in_denominator = false;
        smp = true;
      }
      if (variant == 5) {
        d.use_isw = true;  // precomputed IS weights
        o.agg.mode = grpo::agg_mode::seq_mean_token_mean;
        o.agg.row_count_floor = 1.0;
      }
      compare(o, d, true, smp,
              "kind " + std::to_string(int(kind)) + " variant " + std::to_string(variant));
      d.use_isw = false;
    }
  }
}

TEST_CASE("loss_terms: invalid options are reported, schedules are classified" *
          doctest::test_suite("cuda")) {
  loss_params p;
  grpo::loss_options o;
  o.policy.eps_low = -1.0;  // invalid: validate() throws inside, reported as false
  o.kl_coef = std::nan("");
  CHECK_FALSE(make_loss_params(o, p));
  o = grpo::loss_options{};
  o.top_entropy_quantile = 1.5;
  CHECK_FALSE(make_loss_params(o, p));
  o = grpo::loss_options{};
  REQUIRE(make_loss_params(o, p));
  CHECK_FALSE(p.needs_row_logp);
  CHECK_FALSE(p.uses_entropy);
  o.entropy_coef = 0.1;
  REQUIRE(make_loss_params(o, p));
  CHECK_FALSE(p.needs_row_logp);
  CHECK(p.uses_entropy);
  for (auto k : {grpo::policy_loss_kind::gmpo, grpo::policy_loss_kind::vespo}) {
    o = grpo::loss_options{};
    o.policy.kind = k;
    REQUIRE(make_loss_params(o, p));
    CHECK(p.needs_row_logp);
  }
  o = grpo::loss_options{};
  o.policy.level = grpo::is_level::sequence;
  REQUIRE(make_loss_params(o, p));
  CHECK(p.needs_row_logp);
  o = grpo::loss_options{};
  o.top_entropy_quantile = 0.2;
  REQUIRE(make_loss_params(o, p));
  CHECK(p.needs_row_logp);
  CHECK(p.uses_entropy);
}

TEST_CASE("make_loss_params refuses the host-only options, accepts metric-only ones" *
          doctest::test_suite("cuda")) {
  // Host-side substitutions the device kernels would silently ignore: refused.
  loss_params p;
  grpo::loss_options o;
  o.ratio_base_sampler = true;
  CHECK_FALSE(make_loss_params(o, p));
  grpo::openrlhf_args a;
  a.algo.kl.use_loss = true;  // OpenRLHF's float32 in-loss KL (emulate_float32 by default)
  CHECK_FALSE(make_loss_params(grpo::from_openrlhf(a), p));
  a.emulate_float32 = false;  // the exact double KL: the kernels compute it
  CHECK(make_loss_params(grpo::from_openrlhf(a), p));
  // approx_kl_unclamped changes loss_metrics only (not computed on the device): accepted.
  grpo::loss_options m;
  m.approx_kl_unclamped = true;
  CHECK(make_loss_params(m, p));
}

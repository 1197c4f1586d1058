// SPDX-License-Identifier: Apache-2.0
// Policy losses through grpo::compute_loss: hand-computed tokens for every surrogate, then for
// every loss / level / option combination the value against the independent naive reference
// (tests/support/reference.hpp) and the analytic gradient (d/dlogp and d/dH) against central finite
// differences of that reference with stop-gradients held fixed.
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>

#include <support/reference.hpp>

#include <doctest/doctest.h>
#include <support/compare.hpp>

#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace {

/// Random batch: B rows in groups, T tokens, one fully masked row, scattered zeros, perturbed
/// old / ref / sampler log-probs so that clips bind on both sides.
grpo_ref::batch make_batch(unsigned seed, long B, long T, double perturb, bool token_adv) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  grpo_ref::batch b;
  b.B = B;
  b.T = T;
  const auto n = static_cast<std::size_t>(B * T);
  b.lp.resize(n);
  b.old.resize(n);
  b.ref.resize(n);
  b.adv.resize(n);
  b.mask.resize(n);
  b.sampler.resize(n);
  b.entropy.resize(n);
  for (long i = 0; i < B; ++i) {
    const double a_row = 1.5 * u(g);
    const long len = 1 + static_cast<long>((u(g) + 1.0) * 0.5 * double(T - 1) + 0.5);
    for (long t = 0; t < T; ++t) {
      const auto k = static_cast<std::size_t>(i * T + t);
      b.lp[k] = -2.0 + u(g);
      b.old[k] = b.lp[k] - perturb * u(g);
      b.ref[k] = b.lp[k] - 0.7 * u(g);
      b.sampler[k] = b.old[k] - 0.3 * u(g);
      b.entropy[k] = 1.0 + u(g);
      b.adv[k] = token_adv ? 1.5 * u(g) : a_row;
      b.mask[k] = (t < len && !(i == 2) && !(i == 3 && t == 1)) ? 1.0 : 0.0;  // row 2 empty
    }
  }
  return b;
}

grpo::loss_result run(const grpo::loss_options& o, const grpo_ref::batch& b) {
  grpo::loss_batch<double, double> in;
  in.logp = grpo::make_view(b.lp.data(), {b.B, b.T});
  if (!b.old.empty()) in.old_logp = grpo::make_view(b.old.data(), {b.B, b.T});
  if (!b.ref.empty()) in.ref_logp = grpo::make_view(b.ref.data(), {b.B, b.T});
  in.advantages = grpo::make_view(b.adv.data(), {b.B, b.T});
  in.mask = grpo::make_view(b.mask.data(), {b.B, b.T});
  if (!b.sampler.empty()) in.sampler_logp = grpo::make_view(b.sampler.data(), {b.B, b.T});
  // Entropy only when used, so that token-level cases also run (and FD-check) the fast path.
  if (!b.entropy.empty() && (o.entropy_coef != 0.0 || o.top_entropy_quantile < 1.0))
    in.entropy = grpo::make_view(b.entropy.data(), {b.B, b.T});
  if (!b.truncated.empty()) in.truncated = std::span<const unsigned char>(b.truncated);
  return grpo::compute_loss(o, in);
}

/// Value vs reference, gradient vs central differences, masked gradient exactly 0.
void check_against_reference(const grpo::loss_options& o, const grpo_ref::batch& b) {
  const auto r = run(o, b);
  const double want = grpo_ref::objective(o, b, b.lp, b.lp);
  CHECK(r.loss == doctest::Approx(want).epsilon(1e-12).scale(1.0));
  double worst = 0.0;
  long worst_k = -1;
  for (long k = 0; k < b.B * b.T; ++k) {
    const double fd = grpo_ref::fd(o, b, k);
    const double e =
        std::fabs(r.grad_logp[static_cast<std::size_t>(k)] - fd) / std::max(1.0, std::fabs(fd));
    if (!(e <= worst)) {  // NaN-aware: a NaN gradient (or FD) becomes the worst error
      worst = grpo_test::err_max(worst, e);
      worst_k = k;
    }
    const bool row_trunc = !b.truncated.empty() && b.truncated[static_cast<std::size_t>(k / b.T)];
    if (b.mask[static_cast<std::size_t>(k)] == 0.0 || row_trunc)
      CHECK(r.grad_logp[static_cast<std::size_t>(k)] == 0.0);
  }
  CHECK_MESSAGE(worst < 2e-7, "max relative FD error " << worst << " at token " << worst_k);
  // d loss / d H by central differences of the reference in the entropy input.
  if (o.entropy_coef != 0.0) {
    for (long k = 0; k < b.B * b.T; ++k) {
      grpo_ref::batch p = b, m = b;
      p.entropy[static_cast<std::size_t>(k)] += 1e-6;
      m.entropy[static_cast<std::size_t>(k)] -= 1e-6;
      const double fd =
          (grpo_ref::objective(o, p, p.lp, p.lp) - grpo_ref::objective(o, m, m.lp, m.lp)) / 2e-6;
      CHECK(r.grad_entropy[static_cast<std::size_t>(k)] ==
            doctest::Approx(fd).epsilon(1e-6).scale(1.0));
    }
  }
}

grpo::loss_options trl(const std::string& type, const std::string& level, double beta, bool bias) {
  grpo::trl_args a;
  a.loss_type = type;
  a.importance_sampling_level = level;
  a.beta = beta;
  a.use_bias_correction_kl = bias;
  a.epsilon_high = type == "cispo" ? 1.3 : 0.28;
  a.max_completion_length = 9;
  a.num_items_in_batch = 40;
  return grpo::from_trl(a);
}

}  // namespace

TEST_CASE("ppo_clip: hand-computed tokens (clip, clip-higher, dual clip, delta)" *
          doctest::test_suite("policy_loss")) {
  grpo::ops::ppo_clip_params<double> p{0.2, 0.28, 0.0, 0.0};
  // r = 1.5, A = 2: clipped at 1.28 -> -2 * 1.28, gradient 0
  CHECK(grpo::ops::ppo_clip_loss(1.5, 2.0, p) == doctest::Approx(-2.56).epsilon(1e-12));
  CHECK(grpo::ops::ppo_clip_loss_grad(1.5, 2.0, p) == 0.0);
  // r = 1.1, A = 2: inside -> -2.2, gradient -A
  CHECK(grpo::ops::ppo_clip_loss(1.1, 2.0, p) == doctest::Approx(-2.2).epsilon(1e-12));
  CHECK(grpo::ops::ppo_clip_loss_grad(1.1, 2.0, p) == -2.0);
  // r = 0.5, A = -1: max(0.5, 0.8) = 0.8, gradient 0
  CHECK(grpo::ops::ppo_clip_loss(0.5, -1.0, p) == doctest::Approx(0.8).epsilon(1e-12));
  CHECK(grpo::ops::ppo_clip_loss_grad(0.5, -1.0, p) == 0.0);
  // r = 4, A = -1 without dual clip: unbounded 4, gradient 1
  CHECK(grpo::ops::ppo_clip_loss(4.0, -1.0, p) == doctest::Approx(4.0).epsilon(1e-12));
  CHECK(grpo::ops::ppo_clip_loss_grad(4.0, -1.0, p) == 1.0);
  // dual clip c = 3 caps it at 3 with zero gradient; delta = 3 gives the same value
  p.dual_c = 3.0;
  CHECK(grpo::ops::ppo_clip_loss(4.0, -1.0, p) == doctest::Approx(3.0).epsilon(1e-12));
  CHECK(grpo::ops::ppo_clip_loss_grad(4.0, -1.0, p) == 0.0);
  p.dual_c = 0.0;
  p.delta = 3.0;
  CHECK(grpo::ops::ppo_clip_loss(4.0, -1.0, p) == doctest::Approx(3.0).epsilon(1e-12));
  CHECK(grpo::ops::ppo_clip_loss_grad(4.0, -1.0, p) == 0.0);
  // A = 0: every branch is 0
  CHECK(grpo::ops::ppo_clip_loss(4.0, 0.0, p) == 0.0);
  CHECK(grpo::ops::ppo_clip_loss_grad(4.0, 0.0, p) == 0.0);
}

TEST_CASE("cispo/sapo/gmpo/vespo/tis/opsm: hand-computed scalars" *
          doctest::test_suite("policy_loss")) {
  using namespace grpo::ops;
  CHECK(cispo_weight_cap(7.0, 5.0) == 5.0);
  CHECK(cispo_weight_cap(0.1, 5.0) == 0.1);  // one-sided: no lower bound (TRL)
  CHECK(cispo_weight_clip(0.1, 0.2, 0.28) == doctest::Approx(0.8).epsilon(1e-12));
  CHECK(cispo_weight_clip(1.5, 0.2, 0.28) == doctest::Approx(1.28).epsilon(1e-12));
  CHECK(weighted_pg_loss(0.8, 2.0, -1.5) == doctest::Approx(2.4).epsilon(1e-12));
  CHECK(weighted_pg_loss_grad(0.8, 2.0, -1.5) == doctest::Approx(-1.6).epsilon(1e-12));
  // SAPO at r = 1: value -(4/tau) * 0.5 * A, slope -A (vanilla PG on-policy)
  CHECK(sapo_loss(1.0, 2.0, 1.0, 1.05) == doctest::Approx(-4.0).epsilon(1e-12));
  CHECK(sapo_loss(1.0, -2.0, 1.0, 1.05) == doctest::Approx(2.0 * 2.0 / 1.05).epsilon(1e-12));
  CHECK(sapo_loss_grad(1.0, 2.0, 1.0, 1.05) == doctest::Approx(-2.0).epsilon(1e-12));
  CHECK(sapo_loss_grad(1.0, -2.0, 1.0, 1.05) == doctest::Approx(2.0).epsilon(1e-12));
  // GMPO log-ratio clip: A > 0 caps above only, A < 0 below only; verl A = 0 gives 0
  CHECK(gmpo_clip_log_ratio(0.5, 1.0, 0.2, 0.3, gmpo_sign::verl) == doctest::Approx(0.3).epsilon(1e-12));
  CHECK(gmpo_clip_log_ratio(-0.5, 1.0, 0.2, 0.3, gmpo_sign::verl) == doctest::Approx(-0.5).epsilon(1e-12));
  CHECK(gmpo_clip_log_ratio(-0.5, -1.0, 0.2, 0.3, gmpo_sign::verl) == doctest::Approx(-0.2).epsilon(1e-12));
  CHECK(gmpo_clip_log_ratio(0.5, -1.0, 0.2, 0.3, gmpo_sign::verl) == doctest::Approx(0.5).epsilon(1e-12));
  CHECK(gmpo_clip_log_ratio(0.5, 0.0, 0.2, 0.3, gmpo_sign::verl) == 0.0);
  CHECK(gmpo_clip_log_ratio(0.5, 0.0, 0.2, 0.3, gmpo_sign::trl) == doctest::Approx(0.5).epsilon(1e-12));
  CHECK(gmpo_clip_log_ratio_grad(0.5, 1.0, 0.2, 0.3, gmpo_sign::verl) == 0.0);
  CHECK(gmpo_clip_log_ratio_grad(-0.5, 1.0, 0.2, 0.3, gmpo_sign::verl) == 1.0);
  // VESPO: phi(w = 1) = e^lambda 1^k e^-lambda = 1 for either sign
  CHECK(vespo_phi(0.0, 1.0, 2.0, 3.0, 3.0, 2.0) == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(vespo_phi(0.0, -1.0, 2.0, 3.0, 3.0, 2.0) == doctest::Approx(1.0).epsilon(1e-12));
  // log w = log 2, A >= 0: e^3 * 2^2 * e^-6 = 4 e^-3
  CHECK(vespo_phi(std::log(2.0), 0.5, 2.0, 3.0, 3.0, 2.0) == doctest::Approx(4.0 * std::exp(-3.0)).epsilon(1e-12));
  // TIS: truncate and mask
  CHECK(tis_weight(5.0, 0.0, 3.0, tis_mode::truncate) == 3.0);
  CHECK(tis_weight(0.1, 0.5, 3.0, tis_mode::truncate) == 0.5);
  CHECK(tis_weight(5.0, 0.0, 3.0, tis_mode::mask) == 0.0);
  CHECK(tis_weight(2.0, 0.5, 3.0, tis_mode::mask) == 2.0);
  // OPSM: positive advantages always kept; negative only when the gap is small
  CHECK(opsm_keep(1.0, 9.0, 0.05));
  CHECK(opsm_keep(-1.0, 0.01, 0.05));
  CHECK_FALSE(opsm_keep(-1.0, 0.06, 0.05));
}

TEST_CASE("compute_loss: TRL loss types x IS levels x KL vs reference and finite differences" *
          doctest::test_suite("policy_loss")) {
  const char* types[] = {"grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo"};
  const char* levels[] = {"token", "sequence", "sequence_token"};
  unsigned seed = 11;
  for (const char* ty : types)
    for (const char* lv : levels) {
      const std::string t(ty), l(lv);
      if (t == "vespo" && l != "token") continue;  // VESPO builds its own sequence weight
      for (int variant = 0; variant < 3; ++variant) {
        const double beta = variant == 0 ? 0.0 : 0.07;
        const bool bias = variant == 2;
        const std::string name =
            t + "/" + l + "/beta=" + std::to_string(beta) + (bias ? "/bias" : "");
        SUBCASE(name.c_str()) {
          const auto b = make_batch(seed, 6, 5, 0.6, false);
          check_against_reference(trl(t, l, beta, bias), b);
        }
        ++seed;
      }
    }
}

TEST_CASE(
    "compute_loss: verl losses x KL estimators (incl. straight-through) vs finite differences" *
    doctest::test_suite("policy_loss")) {
  const char* modes[] = {"vanilla", "gspo", "sapo", "cispo", "geo_mean", "gpg"};
  const char* kls[] = {"k1", "abs", "mse", "low_var_kl", "k1+", "abs+", "low_var_kl+"};
  const char* aggs[] = {"token-mean", "seq-mean-token-sum", "seq-mean-token-mean",
                        "seq-mean-token-sum-norm", "token-sum"};
  unsigned seed = 101;
  for (const char* md : modes)
    for (int k = 0; k < 7; ++k) {
      const std::string name = std::string(md) + "/" + kls[k] + "/" + aggs[k % 5];
      SUBCASE(name.c_str()) {
        grpo::verl_args a;
        a.loss_mode = md;
        a.loss_agg_mode = aggs[k % 5];
        a.clip_ratio_c = 1.6;  // dual clip binds with perturbation 1
        a.use_kl_loss = true;
        a.kl_loss_coef = 0.05;
        a.kl_loss_type = kls[k];
        a.entropy_coeff = 0.01;
        const auto b = make_batch(seed, 6, 5, 1.0, k % 2 == 1);
        check_against_reference(grpo::from_verl(a), b);
      }
      ++seed;
    }
}

TEST_CASE("compute_loss: TRL experimental GMPO (max branch for A = 0) vs finite differences" *
          doctest::test_suite("policy_loss")) {
  for (bool token_adv : {false, true}) {
    auto b = make_batch(token_adv ? 77 : 78, 6, 5, 0.8, token_adv);
    if (token_adv) b.adv[1] = 0.0;  // exercise the A = 0 branch
    auto o = grpo::preset("trl_gmpo");
    o.kl_coef = 0.05;
    check_against_reference(o, b);
  }
}

TEST_CASE("compute_loss: flat regions of log-ratio and KL clamps give zero gradient" *
          doctest::test_suite("policy_loss")) {
  auto b = make_batch(7, 4, 6, 1.5, true);
  grpo::loss_options o;
  o.policy.kind = grpo::policy_loss_kind::sapo;  // smooth surrogate: only the clamp can flatten
  o.policy.log_ratio_min = -0.4;
  o.policy.log_ratio_max = 0.4;
  o.kl_coef = 0.1;
  o.kl.estimator = grpo::kl_estimator::k3;
  o.kl.inner_clamp = 0.3;
  o.kl.outer_clamp = 0.05;
  check_against_reference(o, b);
  const auto r = run(o, b);
  // A token with |x| > 0.4, |lr - lp| > 0.3 has a zero gradient; find at least one.
  int flat = 0;
  for (long k = 0; k < b.B * b.T; ++k) {
    const auto kk = static_cast<std::size_t>(k);
    if (b.mask[kk] == 0) continue;
    const double x = b.lp[kk] - b.old[kk], d = b.ref[kk] - b.lp[kk];
    if (std::fabs(x) > 0.4 && std::fabs(d) > 0.3) {
      CHECK(r.grad_logp[kk] == 0.0);
      ++flat;
    }
  }
  CHECK(flat > 0);
}

TEST_CASE("compute_loss: rollout correction, OPSM, entropy mask, truncation, group mean" *
          doctest::test_suite("policy_loss")) {
  for (int v = 0; v < 12; ++v) {
    SUBCASE(("variant " + std::to_string(v)).c_str()) {
      auto b = make_batch(300 + static_cast<unsigned>(v), 6, 5, 0.5, v % 3 == 0);
      grpo::loss_options o =
          trl(v % 2 ? "grpo" : "dapo", v % 4 == 1 ? "sequence" : "token", 0.03, false);
      o.tis.enabled = true;
      o.tis.sequence = v % 3 == 2;
      o.tis.mode = v % 2 ? grpo::ops::tis_mode::mask : grpo::ops::tis_mode::truncate;
      o.tis.c_min = v % 4 == 0 ? 0.0 : 0.8;
      o.tis.c_max = 1.3;
      o.tis.log_clamp = v % 5 == 0 ? 20.0 : 0.0;
      o.opsm_threshold = 0.02;
      o.opsm_in_denominator = v % 2 == 0;
      o.top_entropy_quantile = 0.6;
      o.entropy_mask_in_denominator = v % 3 == 1;
      o.entropy_coef = 0.02;
      b.truncated = {0, 1, 0, 0, 0, 0};
      if (v >= 8) {
        o.agg = grpo::agg_options{};
        o.agg.mode = grpo::agg_mode::group_token_mean;
        o.agg.group_size = 3;
      }
      if (v == 11) o.policy.kind = grpo::policy_loss_kind::reinforce;
      if (v == 10) {
        o.policy.kind = grpo::policy_loss_kind::gmpo;
        o.policy.level = grpo::is_level::token;
        o.agg.row_count_eps = 1e-8;
      }
      check_against_reference(o, b);
    }
  }
}

TEST_CASE("compute_loss: on-policy (no old_logp) equals old_logp = logp" *
          doctest::test_suite("policy_loss")) {
  auto b = make_batch(5, 5, 4, 0.5, false);
  b.old = b.lp;
  const auto o = trl("grpo", "token", 0.0, false);
  const auto with_old = run(o, b);
  auto b2 = b;
  b2.old.clear();
  const auto without = run(o, b2);
  CHECK(with_old.loss == without.loss);
  CHECK(with_old.grad_logp == without.grad_logp);
  // On-policy GRPO: r = 1, gradient = -A * agg weight, loss = -mean_i(A_i) over non-empty rows
  for (long i = 0; i < b.B; ++i) {
    double n = 0;
    for (long t = 0; t < b.T; ++t) n += b.mask[static_cast<std::size_t>(i * b.T + t)];
    for (long t = 0; t < b.T; ++t) {
      const auto k = static_cast<std::size_t>(i * b.T + t);
      const double want = b.mask[k] != 0 ? -b.adv[k] / (std::max(n, 1.0) * double(b.B)) : 0.0;
      CHECK(with_old.grad_logp[k] == doctest::Approx(want).epsilon(1e-14));
    }
  }
  // GSPO-token with per-sequence advantages equals GSPO-sequence under seq-mean-token-mean
  auto bs = make_batch(6, 5, 4, 0.5, false);
  const auto seq = run(trl("grpo", "sequence", 0.0, false), bs);
  const auto tok = run(trl("grpo", "sequence_token", 0.0, false), bs);
  CHECK(seq.loss == doctest::Approx(tok.loss).epsilon(1e-14));
  for (std::size_t k = 0; k < seq.grad_logp.size(); ++k)
    CHECK(seq.grad_logp[k] == doctest::Approx(tok.grad_logp[k]).epsilon(1e-12).scale(1e-12));
}

TEST_CASE(
    "compute_loss_into: gradient-only outputs and the token-level fast path agree with the "
    "general pass" *
    doctest::test_suite("policy_loss")) {
  const char* names[] = {"trl_grpo",     "trl_dapo",   "trl_cispo", "trl_sapo",
                         "verl_vanilla", "verl_cispo", "openrlhf"};
  unsigned seed = 900;
  for (const char* name : names) {
    for (bool bias : {false, true}) {
      SUBCASE((std::string(name) + (bias ? "/bias-kl" : "/kl")).c_str()) {
        auto b = make_batch(seed, 6, 5, 0.7, bias);
        auto o = grpo::preset(name);
        o.kl_coef = 0.05;
        o.kl_bias_correction = bias;
        // (1) all outputs (fast path, per-token loss requested)
        const auto full = run(o, b);
        // (2) gradient only: padding is skipped entirely
        grpo::loss_batch<double, double> in;
        in.logp = grpo::make_view(b.lp.data(), {b.B, b.T});
        in.old_logp = grpo::make_view(b.old.data(), {b.B, b.T});
        in.ref_logp = grpo::make_view(b.ref.data(), {b.B, b.T});
        in.advantages = grpo::make_view(b.adv.data(), {b.B, b.T});
        in.mask = grpo::make_view(b.mask.data(), {b.B, b.T});
        std::vector<double> g(b.lp.size(), -1.0);
        grpo::loss_outputs<double> out;
        out.grad_logp = grpo::make_view(g.data(), {b.B, b.T});
        const auto s1 = grpo::compute_loss_into(o, in, out);
        CHECK(s1.loss == full.loss);
        CHECK(g == full.grad_logp);
        // (3) the general pass (IS weights of 1 disable the fast path: double inputs run the
        // general engine; an entropy input no longer does, the token rows take it)
        const std::vector<double> ones(b.lp.size(), 1.0);
        in.is_weights = grpo::make_view(ones.data(), {b.B, b.T});
        std::vector<double> g3(b.lp.size(), -1.0);
        out.grad_logp = grpo::make_view(g3.data(), {b.B, b.T});
        const auto s3 = grpo::compute_loss_into(o, in, out);
        CHECK(s3.loss == doctest::Approx(full.loss).epsilon(1e-14));
        for (std::size_t k = 0; k < g3.size(); ++k)
          CHECK(g3[k] == doctest::Approx(full.grad_logp[k]).epsilon(1e-14));
        const auto &m1 = full.metrics, &m3 = s3.metrics;
        CHECK(m1.clip_region.mean() == doctest::Approx(m3.clip_region.mean()).epsilon(1e-14));
        CHECK(m1.clip_dual.mean() == doctest::Approx(m3.clip_dual.mean()).epsilon(1e-14));
        if (o.policy.kind == grpo::policy_loss_kind::cispo)
          CHECK(m1.weight_clip.mean() == doctest::Approx(m3.weight_clip.mean()).epsilon(1e-14));
        else
          CHECK(m1.weight_clip.weight == 0.0);  // not a CISPO loss: metric absent
        CHECK(m1.approx_kl.mean() == doctest::Approx(m3.approx_kl.mean()).epsilon(1e-14));
        CHECK(m1.kl.mean() == doctest::Approx(m3.kl.mean()).epsilon(1e-14));
        // (the extrema to 1e-14, as the means: the token rows take xsimd's exp on every token,
        // the general engine libm's; both are faithful, so a ratio may differ in its last bit)
        CHECK(m1.ratio.min == doctest::Approx(m3.ratio.min).epsilon(1e-14));
        CHECK(m1.ratio.max == doctest::Approx(m3.ratio.max).epsilon(1e-14));
        CHECK(m1.advantage.stddev() == doctest::Approx(m3.advantage.stddev()).epsilon(1e-12));
        CHECK(m1.clip_high_seq.max == m3.clip_high_seq.max);
        CHECK(m1.is_weight.mean() == 1.0);
      }
      ++seed;
    }
  }
}

TEST_CASE(
    "compute_loss_into: large batch (row-threaded under OpenMP) matches the general pass; "
    "errors from a row propagate" *
    doctest::test_suite("policy_loss")) {
  auto b = make_batch(4242, 96, 512, 0.6, false);  // 49k tokens: above the threading threshold
  auto o = grpo::preset("verl_vanilla");
  o.kl_coef = 0.02;
  o.kl = grpo::kl_params_from_string("low_var_kl");
  grpo::loss_batch<double, double> in;
  in.logp = grpo::make_view(b.lp.data(), {b.B, b.T});
  in.old_logp = grpo::make_view(b.old.data(), {b.B, b.T});
  in.ref_logp = grpo::make_view(b.ref.data(), {b.B, b.T});
  in.advantages = grpo::make_view(b.adv.data(), {b.B, b.T});
  in.mask = grpo::make_view(b.mask.data(), {b.B, b.T});
  std::vector<double> g1(b.lp.size()), g2(b.lp.size());
  grpo::loss_outputs<double> out;
  out.grad_logp = grpo::make_view(g1.data(), {b.B, b.T});
  const auto fast = grpo::compute_loss_into(o, in, out);
  const std::vector<double> ones(b.lp.size(), 1.0);  // IS weights of 1: the general pass
  in.is_weights = grpo::make_view(ones.data(), {b.B, b.T});
  out.grad_logp = grpo::make_view(g2.data(), {b.B, b.T});
  const auto gen = grpo::compute_loss_into(o, in, out);
  CHECK(fast.engine_used == grpo::loss_engine::token_rows_simd);
  CHECK(gen.engine_used == grpo::loss_engine::general);
  CHECK(fast.loss == doctest::Approx(gen.loss).epsilon(1e-13));
  double worst = 0;
  for (std::size_t k = 0; k < g1.size(); ++k)
    worst = grpo_test::err_max(worst, std::fabs(g1[k] - g2[k]));
  CHECK(worst < 1e-18);
  CHECK(fast.metrics.tokens == gen.metrics.tokens);
  CHECK(fast.metrics.clip_region.mean() == doctest::Approx(gen.metrics.clip_region.mean()).epsilon(1e-12));
  // A NaN on a valid token deep in the batch is reported, not swallowed by a worker thread.
  in.entropy = {};
  auto lp = b.lp;
  lp[static_cast<std::size_t>(70 * b.T)] = std::nan("");  // row 70, token 0 (valid)
  in.logp = grpo::make_view(lp.data(), {b.B, b.T});
  out.grad_logp = grpo::make_view(g1.data(), {b.B, b.T});
  CHECK_THROWS_WITH_AS(grpo::compute_loss_into(o, in, out),
                       doctest::Contains("[grpo.bad_value] logp"), grpo::error);
}

TEST_CASE("compute_loss: per-sequence [B] advantages equal broadcast [B, T]; strided layout" *
          doctest::test_suite("policy_loss")) {
  const auto b = make_batch(9, 4, 6, 0.5, false);
  const auto o = trl("dapo", "token", 0.05, true);
  const auto full = run(o, b);
  std::vector<double> rowA(static_cast<std::size_t>(b.B));
  for (long i = 0; i < b.B; ++i)
    rowA[static_cast<std::size_t>(i)] = b.adv[static_cast<std::size_t>(i * b.T)];
  // Column-major copies of every input: same numbers through a transposed layout.
  auto colmajor = [&](const std::vector<double>& v) {
    std::vector<double> c(v.size());
    for (long i = 0; i < b.B; ++i)
      for (long t = 0; t < b.T; ++t)
        c[static_cast<std::size_t>(t * b.B + i)] = v[static_cast<std::size_t>(i * b.T + t)];
    return c;
  };
  const auto lp = colmajor(b.lp), old = colmajor(b.old), ref = colmajor(b.ref),
             m = colmajor(b.mask);
  grpo::loss_batch<double, double> in;
  in.logp = grpo::make_view(lp.data(), {b.B, b.T}, {1, b.B});
  in.old_logp = grpo::make_view(old.data(), {b.B, b.T}, {1, b.B});
  in.ref_logp = grpo::make_view(ref.data(), {b.B, b.T}, {1, b.B});
  in.mask = grpo::make_view(m.data(), {b.B, b.T}, {1, b.B});
  in.advantages = grpo::broadcast_rows(rowA.data(), b.B, b.T);
  const auto r = grpo::compute_loss(o, in);
  CHECK(r.loss == doctest::Approx(full.loss).epsilon(1e-15));
  for (std::size_t k = 0; k < r.grad_logp.size(); ++k) CHECK(r.grad_logp[k] == full.grad_logp[k]);
}

TEST_CASE("compute_loss: fully masked batch and rows give 0, never NaN" *
          doctest::test_suite("policy_loss")) {
  auto b = make_batch(3, 4, 3, 0.5, false);
  for (long k = 0; k < b.B * b.T; ++k) {
    b.mask[static_cast<std::size_t>(k)] = 0.0;
    b.lp[static_cast<std::size_t>(k)] = std::nan("");  // padding garbage is never read
  }
  for (const char* t : {"grpo", "bnpo", "dr_grpo", "dapo", "luspo"}) {
    const auto r = run(trl(t, "token", 0.1, false), b);
    CHECK(r.loss == 0.0);
    for (double g : r.grad_logp) CHECK(g == 0.0);
  }
  grpo::verl_args a;
  for (const char* md : {"vanilla", "gspo", "geo_mean"}) {
    a.loss_mode = md;
    a.loss_agg_mode = "seq-mean-token-mean";
    const auto r = run(grpo::from_verl(a), b);
    CHECK(r.loss == 0.0);
  }
}

TEST_CASE("compute_loss: bad shapes and options throw documented errors" *
          doctest::test_suite("policy_loss")) {
  const auto b = make_batch(3, 4, 3, 0.5, false);
  grpo::loss_options o;
  grpo::loss_batch<double, double> in;
  in.logp = grpo::make_view(b.lp.data(), {b.B, b.T});
  in.advantages = grpo::make_view(b.adv.data(), {b.B, b.T});
  in.mask = grpo::make_view(b.mask.data(), {b.B - 1, b.T});
  auto code_of = [&](auto&& f) {
    try {
      f();
    } catch (const grpo::error& e) {
      return e.code();
    }
    FAIL("no grpo::error thrown");
    return grpo::errc::collective;
  };
  CHECK(code_of([&] { (void)grpo::compute_loss(o, in); }) == grpo::errc::shape_mismatch);
  in.mask = grpo::make_view(b.mask.data(), {b.B, b.T});
  o.kl_coef = 0.1;  // no ref_logp
  CHECK(code_of([&] { (void)grpo::compute_loss(o, in); }) == grpo::errc::shape_mismatch);
  o.kl_coef = 0.0;
  o.policy.dual_clip_c = 0.5;
  CHECK(code_of([&] { (void)grpo::compute_loss(o, in); }) == grpo::errc::bad_option);
  o.policy.dual_clip_c = 0.0;
  o.policy.eps_low = std::nan("");
  CHECK(code_of([&] { (void)grpo::compute_loss(o, in); }) == grpo::errc::bad_value);
  o.policy.eps_low = 0.2;
  o.top_entropy_quantile = 0.5;  // no entropy given
  CHECK(code_of([&] { (void)grpo::compute_loss(o, in); }) == grpo::errc::shape_mismatch);
  o.top_entropy_quantile = 1.0;
  o.policy.kind = grpo::policy_loss_kind::gmpo;
  o.policy.level = grpo::is_level::sequence;
  CHECK(code_of([&] { (void)grpo::compute_loss(o, in); }) == grpo::errc::bad_option);
  o.policy = {};
  auto lp = b.lp;
  lp[0] = std::numeric_limits<double>::infinity();  // valid token (row 0, t 0)
  in.logp = grpo::make_view(lp.data(), {b.B, b.T});
  CHECK(code_of([&] { (void)grpo::compute_loss(o, in); }) == grpo::errc::bad_value);
  try {
    (void)grpo::compute_loss(o, in);
  } catch (const grpo::error& e) {
    CHECK(std::string(e.what()).find("[grpo.bad_value] logp") != std::string::npos);
  }
}

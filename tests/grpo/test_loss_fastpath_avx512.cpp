// SPDX-License-Identifier: Apache-2.0
// The packet row kernels of grpo::compute_loss_into's float fast path (loss/kernels/token_row.ipp
// instantiated per ISA, chosen at run time; the baseline path: the xsimd / scalar rows). Built
// twice (tests/grpo/CMakeLists.txt, NATIVE) and rerun per path through GRPO_ISA:
//   3. float inputs and float outputs, streaming gradient stores forced on (this file sets the size
//      threshold to 1 byte, so rows are split at the 64-byte boundary and the zero tail is
//      streamed), binary and weighted masks (lean and general kernels), per-sequence and per-token
//      advantages, per-token loss on and off: loss, gradient and metrics within 1e-6 of the double
//      computation, masked gradients exactly 0;
//   4. a non-finite input on a valid token is reported (with its argument name) also where a clamp
//      would hide it from the kernel's sums (log-ratio clamp, KL inner / outer clamps);
//   5. an integer (uint8) mask gives the float mask's loss, gradient and metrics.
#define GRPO_LOSS_STREAM_STORE_BYTES 1u
// (so this TU compiles its own engine, not the suite's instances: tests/CMakeLists.txt)
#undef GRPO_LOSS_EXTERN_TEMPLATES
#include <grpo/detail/simd.hpp>
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>

#include <doctest/doctest.h>
#include <support/compare.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

using grpo::index_t;
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

[[maybe_unused]] bool same(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return std::memcmp(&a, &b, sizeof(float)) == 0;
}

}  // namespace

// (The lane-by-lane checks of the former hand-written AVX-512 mirrors moved to
// test_loss_lanes.cpp: the formulas are now one text, checked on every packet lane type. The
// end-to-end cases below run whichever row path the CPU / GRPO_ISA selects: ctest reruns them
// with GRPO_ISA=baseline, and with GRPO_ISA=avx512 on an AVX-512 CPU.)

namespace {

/// One random problem; masks either binary (right padding, holes in odd rows) or weighted (0, 0.5,
/// 1, 2.5).
struct problem {
  long B = 0, T = 0;
  std::vector<float> lp, old, ref, mask, adv_tok, adv_row;
  std::vector<unsigned char> truncated;
};

problem make_problem(long B, long T, bool weighted, unsigned seed) {
  problem p;
  p.B = B;
  p.T = T;
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const auto n = static_cast<std::size_t>(B * T);
  p.lp.resize(n);
  p.old.resize(n);
  p.ref.resize(n);
  p.mask.resize(n);
  p.adv_tok.resize(n);
  p.adv_row.resize(static_cast<std::size_t>(B));
  p.truncated.assign(static_cast<std::size_t>(B), 0);
  if (B > 2) p.truncated[2] = 1;
  for (long i = 0; i < B; ++i) {
    p.adv_row[static_cast<std::size_t>(i)] = 1.5f * u(g);
    const long len = i == 1 ? 0 : 1 + static_cast<long>((u(g) + 1.f) * 0.5f * float(T - 1));
    for (long t = 0; t < T; ++t) {
      const auto k = static_cast<std::size_t>(i * T + t);
      p.lp[k] = -2.f + u(g);
      p.old[k] = p.lp[k] - 0.4f * u(g);
      p.ref[k] = p.lp[k] - 0.5f * u(g);
      // even rows: right padding only (the lean kernel's mask-free prefix rows); odd: holes
      float m = (t < len && (i % 2 == 0 || (t % 7) != 3)) ? 1.f : 0.f;
      if (weighted && m != 0.f) m = (t % 3 == 0) ? 0.5f : (t % 5 == 0 ? 2.5f : 1.f);
      p.mask[k] = m;
      p.adv_tok[k] = 1.5f * u(g);
    }
  }
  return p;
}

struct outs {
  grpo::loss_scalars s;
  std::vector<double> g, ptl;
};

/// compute_loss_into on inputs of type E with outputs of type G (E = float: the AVX-512 kernel
/// on an AVX-512 build; outputs float: streaming stores).
template <class E, class G>
outs run(const grpo::loss_options& o, const problem& p, bool per_tok, bool want_ptl) {
  const long B = p.B, T = p.T;
  const std::vector<E> lp(p.lp.begin(), p.lp.end()), old(p.old.begin(), p.old.end()),
      ref(p.ref.begin(), p.ref.end()), mask(p.mask.begin(), p.mask.end()),
      adv(p.adv_tok.begin(), p.adv_tok.end()), adv_row(p.adv_row.begin(), p.adv_row.end());
  // outputs offset by one element so that the rows start off a 64-byte boundary
  std::vector<G> g(static_cast<std::size_t>(B * T) + 1, G(7)), ptl(g.size(), G(7));
  grpo::loss_batch<E, E> b;
  b.logp = grpo::make_view(lp.data(), {B, T});
  b.old_logp = grpo::make_view(old.data(), {B, T});
  b.ref_logp = grpo::make_view(ref.data(), {B, T});
  b.mask = grpo::make_view(mask.data(), {B, T});
  b.advantages =
      per_tok ? grpo::make_view(adv.data(), {B, T}) : grpo::broadcast_rows(adv_row.data(), B, T);
  b.truncated = std::span<const unsigned char>(p.truncated);
  grpo::loss_outputs<G> out;
  out.grad_logp = grpo::make_view(g.data() + 1, {B, T});
  if (want_ptl) out.per_token_loss = grpo::make_view(ptl.data() + 1, {B, T});
  outs r;
  r.s = grpo::compute_loss_into(o, b, out);
  r.g.assign(g.begin() + 1, g.end());
  if (want_ptl) r.ptl.assign(ptl.begin() + 1, ptl.end());
  return r;
}

void check_metric(const grpo::stat_accumulator& a, const grpo::stat_accumulator& b,
                  const char* what) {
  INFO(std::string(what));
  CHECK(a.weight == doctest::Approx(b.weight).epsilon(1e-6));
  CHECK(a.sum == doctest::Approx(b.sum).epsilon(1e-6).scale(b.weight + 1.0));
  CHECK(a.sum_sq == doctest::Approx(b.sum_sq).epsilon(1e-6).scale(b.weight + 1.0));
  if (b.weight > 0) {
    CHECK(a.min == doctest::Approx(b.min).epsilon(1e-6));
    CHECK(a.max == doctest::Approx(b.max).epsilon(1e-6));
  }
}

std::vector<std::pair<const char*, grpo::loss_options>> configs() {
  std::vector<std::pair<const char*, grpo::loss_options>> cs;
  auto trl = [](const char* loss, double beta) {
    grpo::trl_args a;
    a.loss_type = loss;
    a.beta = beta;
    a.epsilon_high = 0.28;
    return grpo::from_trl(a);
  };
  cs.emplace_back("dapo + k3 (TRL, lean kernel)", trl("dapo", 0.04));
  cs.emplace_back("grpo no KL", trl("grpo", 0.0));
  cs.emplace_back("cispo (TRL cap)", trl("cispo", 0.04));
  cs.emplace_back("sapo + k3", trl("sapo", 0.02));
  {
    grpo::loss_options o;  // verl: dual clip, log-ratio clamp, low_var_kl clamps, seq-mean
    o.policy.dual_clip_c = 3.0;
    o.policy.log_ratio_min = -20;
    o.policy.log_ratio_max = 20;
    o.kl_coef = 0.05;
    o.kl.inner_clamp = 20;
    o.kl.outer_clamp = 10;
    o.agg.mode = grpo::agg_mode::seq_mean_token_mean;
    cs.emplace_back("verl dual clip + low_var_kl", o);
    o.policy.kind = grpo::policy_loss_kind::cispo;
    o.policy.cispo = grpo::cispo_clip::verl_clip;
    o.kl.estimator = grpo::kl_estimator::k2;
    cs.emplace_back("cispo (verl clip) + k2", o);
  }
  {
    auto o = trl("dapo", 0.04);
    o.kl_bias_correction = true;
    o.policy.delta = 1.5;
    cs.emplace_back("dapo delta + bias-corrected KL", o);
  }
  {
    grpo::loss_options o;
    o.policy.kind = grpo::policy_loss_kind::reinforce;
    o.kl_coef = 0.01;
    cs.emplace_back("plain PG + k3", o);
  }
  return cs;
}

}  // namespace

TEST_CASE("avx512 loss kernel: float in / float out (streaming stores) within 1e-6 of double" *
          doctest::test_suite("loss")) {
  for (auto [B, T] : {std::pair<long, long>{5, 13}, {9, 203}, {3, 1111}}) {
    for (bool weighted : {false, true}) {
      const problem p = make_problem(B, T, weighted, static_cast<unsigned>(B * 31 + T));
      for (const auto& [name, o] : configs()) {
        for (int variant = 0; variant < 4; ++variant) {
          const bool per_tok = variant & 1, want_ptl = variant & 2;
          INFO(std::string(name) << " B=" << B << " T=" << T << " weighted=" << weighted
                                 << " per_tok=" << per_tok << " ptl=" << want_ptl);
          const auto f = run<float, float>(o, p, per_tok, want_ptl);
          const auto d = run<double, double>(o, p, per_tok, true);
          // scale of the sums: the magnitude of what is summed (losses of mixed sign cancel)
          double sc = std::fabs(d.s.policy_loss) + std::fabs(d.s.kl_loss);
          for (double x : d.ptl) sc += std::fabs(x) / static_cast<double>(B * T);
          CHECK(std::fabs(f.s.loss - d.s.loss) <= 1e-6 * sc);
          CHECK(std::fabs(f.s.policy_loss - d.s.policy_loss) <= 1e-6 * sc);
          CHECK(std::fabs(f.s.kl_loss - d.s.kl_loss) <= 1e-6 * sc);
          double gs = 0, ps = 0;
          for (double x : d.g) gs = grpo_test::scale_max(gs, std::fabs(x));
          for (double x : d.ptl) ps = grpo_test::scale_max(ps, std::fabs(x));
          for (std::size_t k = 0; k < d.g.size(); ++k) {
            REQUIRE(std::fabs(f.g[k] - d.g[k]) <= 1e-6 * gs);
            REQUIRE((d.g[k] != 0.0 || f.g[k] == 0.0));  // masked (and padding): exactly 0
            if (want_ptl) REQUIRE(std::fabs(f.ptl[k] - d.ptl[k]) <= 1e-6 * ps);
          }
          const auto &a = f.s.metrics, &b = d.s.metrics;
          check_metric(a.clip_low, b.clip_low, "clip_low");
          check_metric(a.clip_high, b.clip_high, "clip_high");
          check_metric(a.clip_region, b.clip_region, "clip_region");
          check_metric(a.clip_dual, b.clip_dual, "clip_dual");
          check_metric(a.weight_clip, b.weight_clip, "weight_clip");
          check_metric(a.approx_kl, b.approx_kl, "approx_kl");
          check_metric(a.ratio, b.ratio, "ratio");
          check_metric(a.advantage, b.advantage, "advantage");
          check_metric(a.kl, b.kl, "kl");
          CHECK(a.tokens == b.tokens);
        }
      }
    }
  }
}

TEST_CASE("avx512 loss kernel: non-finite inputs on valid tokens are reported behind clamps" *
          doctest::test_suite("loss")) {
  const long B = 4, T = 53;
  problem p = make_problem(B, T, false, 3);
  for (float& m : p.mask) m = 1.f;
  p.truncated.assign(static_cast<std::size_t>(B), 0);
  grpo::loss_options o;  // every clamp that could hide an infinity from the kernel's sums
  o.policy.log_ratio_min = -20;
  o.policy.log_ratio_max = 20;
  o.kl_coef = 0.05;
  o.kl.inner_clamp = 20;
  o.kl.outer_clamp = 10;
  grpo::loss_options trl = grpo::from_trl(grpo::trl_args{});
  trl.kl_coef = 0.04;
  auto expect = [&](const grpo::loss_options& opt, const char* arg, bool per_tok) {
    try {
      run<float, float>(opt, p, per_tok, false);
      FAIL("no error for " << std::string(arg));
    } catch (const grpo::error& e) {
      CHECK(e.code() == grpo::errc::bad_value);
      CHECK(std::string(e.what()).find(arg) != std::string::npos);
    }
  };
  for (const auto* opt : {&o, &trl}) {
    for (float bad : {kInf, -kInf, kNaN}) {
      INFO("value " << bad);
      p.lp[1 * T + 17] = bad;  // inside a full step
      expect(*opt, "logp", false);
      p.lp[1 * T + 17] = -1.f;
      p.old[3 * T + 50] = bad;  // in the row's masked tail step
      expect(*opt, "old_logp", false);
      p.old[3 * T + 50] = -1.1f;
      p.ref[2 * T + 5] = bad;  // in the alignment head or the first step
      expect(*opt, "ref_logp", false);
      p.ref[2 * T + 5] = -0.9f;
      p.adv_tok[0 * T + 33] = bad;
      expect(*opt, "advantages", true);
      p.adv_tok[0 * T + 33] = 0.5f;
      p.adv_row[3] = bad;
      expect(*opt, "advantages", false);
      p.adv_row[3] = 0.5f;
    }
  }
  CHECK(std::isfinite(run<float, float>(o, p, false, false).s.loss));
}

TEST_CASE("avx512 loss kernel: an integer (uint8) mask gives the float mask's results" *
          doctest::test_suite("loss")) {
  const long B = 6, T = 301;
  const problem p = make_problem(B, T, false, 17);
  const std::vector<unsigned char> m8(p.mask.begin(), p.mask.end());
  for (const auto& [name, o] : configs()) {
    INFO(std::string(name));
    auto call = [&](auto mask_type) {
      using M = decltype(mask_type);
      const std::vector<M> mask(p.mask.begin(), p.mask.end());
      std::vector<float> g(static_cast<std::size_t>(B * T), 7.f);
      grpo::loss_batch<float, M> b;
      b.logp = grpo::make_view(p.lp.data(), {B, T});
      b.old_logp = grpo::make_view(p.old.data(), {B, T});
      b.ref_logp = grpo::make_view(p.ref.data(), {B, T});
      b.mask = grpo::make_view(mask.data(), {B, T});
      b.advantages = grpo::broadcast_rows(p.adv_row.data(), B, T);
      b.truncated = std::span<const unsigned char>(p.truncated);
      grpo::loss_outputs<float> out;
      out.grad_logp = grpo::make_view(g.data(), {B, T});
      const auto s = grpo::compute_loss_into(o, b, out);
      return std::pair{s, g};
    };
    const auto [sf, gf] = call(float{});
    const auto [s8, g8] = call(static_cast<unsigned char>(0));
    CHECK(s8.loss == doctest::Approx(sf.loss).epsilon(1e-12));
    CHECK(s8.metrics.tokens == sf.metrics.tokens);
    CHECK(s8.metrics.ratio.sum == doctest::Approx(sf.metrics.ratio.sum).epsilon(1e-12));
    CHECK(s8.metrics.clip_region.sum == sf.metrics.clip_region.sum);
    for (std::size_t k = 0; k < gf.size(); ++k) REQUIRE(g8[k] == gf[k]);
  }
}

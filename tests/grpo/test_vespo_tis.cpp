// SPDX-License-Identifier: Apache-2.0
/// @file test_vespo_tis.cpp
/// @brief VESPO with rollout correction (token and sequence TIS, truncate and mask modes) and the
///        TRL `entropy` metric, against a naive double reference written here from
///        docs/algorithms.md (not from the library): loss, d loss / d logp, and central finite
///        differences of the library's own loss. Built in the normal CPU suite.
#include <grpo/loss.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <vector>

namespace {

constexpr long B = 4, T = 5;

struct batch_data {
  std::vector<double> lp, lo, ls, adv, mask, ent;
  std::vector<unsigned char> trunc;
};

/// Four rows: A > 0, A < 0, A = 0 (the A >= 0 branch), and a row with padding; log ratios and
/// sampler gaps of a few tenths so that no +-20 clamp binds and the TIS bounds bind on some tokens.
batch_data make_data() {
  batch_data d;
  d.lp = {-1.0, -0.5, -2.0, -0.7, -1.3, -0.9, -1.1, -0.4, -2.2, -0.6,
          -1.5, -0.8, -0.3, -1.9, -1.0, -0.2, -0.7, -1.4, -3.0, -2.0};
  d.lo = {-1.1, -0.4, -2.3, -0.5, -1.2, -0.7, -1.0, -0.6, -2.0, -0.8,
          -1.4, -0.9, -0.5, -1.6, -1.2, -0.3, -0.9, -1.2, -2.5, -1.0};
  d.ls = {-1.6, -0.4, -2.1, -0.5, -1.9, -0.2, -1.3, -0.6, -2.4, -0.8,
          -1.0, -0.9, -0.8, -1.6, -1.1, -0.9, -0.5, -1.2, -2.5, -1.0};
  d.adv = {0.8, 0.8, 0.8, 0.8, 0.8, -1.2, -1.2, -1.2, -1.2, -1.2,
           0.0, 0.0, 0.0, 0.0, 0.0, 0.5,  0.5,  0.5,  0.5,  0.5};
  d.mask = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
  d.ent = {0.7, 1.3, 0.2, 2.1, 0.9, 0.4, 1.8, 0.6, 1.1, 5.0,
           0.3, 0.5, 2.4, 0.8, 1.6, 1.0, 0.1, 0.9, 7.0, 9.0};
  d.trunc = {0, 0, 0, 0};
  return d;
}

struct ref_case {
  bool sequence = false;
  grpo::ops::tis_mode mode = grpo::ops::tis_mode::truncate;
  double c_min = 0.0, c_max = 0.0;
};

double tis_bound(double rho, const ref_case& c) {
  const bool lo = c.c_min > 0, hi = c.c_max > 0;
  if (c.mode == grpo::ops::tis_mode::truncate) {  // clamp(rho, c_min, c_max), open sides
    if (lo && rho < c.c_min) return c.c_min;
    return hi && rho > c.c_max ? c.c_max : rho;
  }
  return ((lo && rho < c.c_min) || (hi && rho > c.c_max)) ? 0.0 : rho;
}

struct ref_out {
  double loss = 0;
  std::vector<double> grad, phi, lw, dphi_dlw;  // dphi_dlw: 0 where the lw clamp binds
};

/// docs/algorithms.md, VESPO row: loss_t = -sg[phi_i] A lp, token_mean over the mask;
///   log w_i = clamp(sum_t m clamp(lp - lo, +-20) + sum_t clamp(log rho_t, log 1e-8, 20), log 1e-8,
///   20) (sequence TIS: the second sum is clamp(log rho_i) once, rho_i = bound(exp(sum_t m (lo -
///   ls)))) log phi = lambda + k log w - lambda w, (k, lambda) = (2, 3) if A >= 0 else (3, 2).
ref_out reference(const batch_data& d, const ref_case& c) {
  ref_out r;
  r.grad.assign(B * T, 0.0);
  const double floor = std::log(1e-8);
  auto clampd = [](double x, double a, double b) { return x < a ? a : (x > b ? b : x); };
  double n = 0;
  for (long i = 0; i < B * T; ++i) n += d.mask[i];
  for (long i = 0; i < B; ++i) {
    double sx = 0, sr = 0, sq = 0;
    for (long t = 0; t < T; ++t) {
      const long k = i * T + t;
      if (d.mask[k] == 0) continue;
      sx += clampd(d.lp[k] - d.lo[k], -20, 20);
      sq += d.lo[k] - d.ls[k];
      if (!c.sequence) sr += clampd(std::log(tis_bound(std::exp(d.lo[k] - d.ls[k]), c)), floor, 20);
    }
    if (c.sequence) sr = clampd(std::log(tis_bound(std::exp(sq), c)), floor, 20);
    const double lw = clampd(sx + sr, floor, 20);
    const double A = d.adv[i * T];
    const double kk = A >= 0 ? 2.0 : 3.0, lam = A >= 0 ? 3.0 : 2.0;
    const double phi = std::exp(lam + kk * lw - lam * std::exp(lw));
    r.lw.push_back(lw);
    r.phi.push_back(phi);
    const bool free = sx + sr > floor && sx + sr < 20;
    r.dphi_dlw.push_back(free ? phi * (kk - lam * std::exp(lw)) : 0.0);
    for (long t = 0; t < T; ++t) {
      const long k = i * T + t;
      if (d.mask[k] == 0) continue;
      r.loss += -phi * A * d.lp[k] / n;
      r.grad[k] = -phi * A / n;
    }
  }
  return r;
}

grpo::loss_options options_for(const ref_case& c) {
  grpo::loss_options o;
  o.policy.kind = grpo::policy_loss_kind::vespo;
  o.tis.enabled = true;
  o.tis.sequence = c.sequence;
  o.tis.mode = c.mode;
  o.tis.c_min = c.c_min;
  o.tis.c_max = c.c_max;
  return o;
}

grpo::loss_result run(const batch_data& d, const grpo::loss_options& o, bool with_entropy = false) {
  grpo::loss_batch<double, double> b;
  auto v = [](const std::vector<double>& x) { return grpo::make_view(x.data(), {B, T}); };
  b.logp = v(d.lp);
  b.old_logp = v(d.lo);
  b.sampler_logp = v(d.ls);
  b.advantages = v(d.adv);
  b.mask = v(d.mask);
  if (with_entropy) b.entropy = v(d.ent);
  b.truncated = std::span<const unsigned char>(d.trunc);
  return grpo::compute_loss(o, b);
}

const ref_case cases[] = {
    {false, grpo::ops::tis_mode::truncate, 0.0, 1.5},
    {false, grpo::ops::tis_mode::truncate, 0.8, 1.2},
    {false, grpo::ops::tis_mode::mask, 0.7, 1.4},
    {true, grpo::ops::tis_mode::truncate, 0.0, 1.5},
    {true, grpo::ops::tis_mode::mask, 0.5, 2.0},
};

std::string name_of(const ref_case& c) {
  return std::string(c.sequence ? "sequence" : "token") +
         (c.mode == grpo::ops::tis_mode::truncate ? " truncate" : " mask") + " [" +
         std::to_string(c.c_min) + ", " + std::to_string(c.c_max) + "]";
}

}  // namespace

TEST_CASE("VESPO + TIS: loss and d loss / d logp against the naive double reference" *
          doctest::test_suite("policy_loss")) {
  const batch_data d = make_data();
  for (const auto& c : cases) {
    SUBCASE(name_of(c).c_str()) {
      const ref_out want = reference(d, c);
      const auto got = run(d, options_for(c));
      CHECK(got.loss == doctest::Approx(want.loss).epsilon(1e-13));
      for (long k = 0; k < B * T; ++k)
        CHECK_MESSAGE(std::fabs(got.grad_logp[k] - want.grad[k]) <= 1e-14, "token " << k);
      // TRL logs phi over every row: its mean against the reference's phi_i.
      double pm = 0;
      for (double p : want.phi) pm += p / B;
      CHECK(got.metrics.vespo_phi.mean() == doctest::Approx(pm).epsilon(1e-13));
      // The rollout weights change phi: the same batch without TIS gives another loss (so the
      // TIS term is exercised, not dropped).
      grpo::loss_options no_tis = options_for(c);
      no_tis.tis.enabled = false;
      CHECK(std::fabs(run(d, no_tis).loss - want.loss) > 1e-6);
    }
  }
}

TEST_CASE("VESPO + TIS: central finite differences of the library's loss" *
          doctest::test_suite("policy_loss")) {
  // phi is detached, so dL/dlp_j (finite differences of the loss VALUE) = grad_logp_j (the
  // surrogate gradient, -phi A m / N) + (d phi_i / d lw_i) (d lw_i / d lp_j) sum_t (-A lp m / N),
  // with d lw_i / d lp_j = m_j where the log-weight clamp does not bind, 0 where it does (mask
  // mode: a token outside [c_min, c_max] has log rho = log 1e-8, which pins lw_i at the floor).
  const batch_data d = make_data();
  const double h = 1e-6;
  double n = 0;
  for (double m : d.mask) n += m;
  for (const auto& c : cases) {
    SUBCASE(name_of(c).c_str()) {
      const ref_out want = reference(d, c);
      const auto base = run(d, options_for(c));
      for (long k = 0; k < B * T; ++k) {
        batch_data p = d, q = d;
        p.lp[k] += h;
        q.lp[k] -= h;
        const double fd = (run(p, options_for(c)).loss - run(q, options_for(c)).loss) / (2 * h);
        const long i = k / T;
        double row = 0;
        for (long t = 0; t < T; ++t) row += -d.adv[i * T] * d.lp[i * T + t] * d.mask[i * T + t] / n;
        const double predicted = base.grad_logp[k] + want.dphi_dlw[i] * d.mask[k] * row;
        CHECK_MESSAGE(std::fabs(fd - predicted) <= 1e-8,
                      "token " << k << " fd " << fd << " predicted " << predicted);
      }
    }
  }
}

TEST_CASE("metrics: TRL entropy metric with non-zero entropies, by hand" *
          doctest::test_suite("metrics")) {
  // TRL logs global_masked_mean(entropies) over the completion mask (truncated rows zeroed by
  // mask_truncated_completions). Row 3 is truncated; padded positions carry large entropies that
  // must not count.
  batch_data d = make_data();
  d.trunc = {0, 0, 0, 1};
  grpo::loss_options o;  // plain GRPO clip loss; the metric does not depend on the policy term
  o.entropy_coef = 0.01;
  const auto got = run(d, o, true);
  // Rows 0-2 under the mask: 5 + 4 + 5 tokens.
  const double sum =
      (0.7 + 1.3 + 0.2 + 2.1 + 0.9) + (0.4 + 1.8 + 0.6 + 1.1) + (0.3 + 0.5 + 2.4 + 0.8 + 1.6);
  CHECK(got.metrics.entropy.weight == 14.0);
  CHECK(got.metrics.entropy.mean() == doctest::Approx(sum / 14.0).epsilon(1e-14));
  CHECK(got.metrics.entropy.min == 0.2);
  CHECK(got.metrics.entropy.max == 2.4);
  // The entropy bonus uses the same mean (token_mean): loss contribution -0.01 * sum / 14.
  CHECK(got.entropy_loss == doctest::Approx(sum / 14.0).epsilon(1e-14));
}

namespace {

/// One sampler-log-prob configuration of the NaN / inf probe below.
struct sampler_route {
  const char* name;
  void (*set)(grpo::loss_options&);
};

/// compute_loss with the make_data() batch in storage type E (float: the packet rows where this
/// CPU has them; double: the general engine), sampler_logp = ls.
template <class E>
double sampler_loss(const batch_data& d, const std::vector<double>& ls,
                    const grpo::loss_options& o) {
  auto cv = [](const std::vector<double>& x) { return std::vector<E>(x.begin(), x.end()); };
  const std::vector<E> lp = cv(d.lp), lo = cv(d.lo), s = cv(ls), a = cv(d.adv), m = cv(d.mask);
  grpo::loss_batch<E, E> b;
  auto v = [](const std::vector<E>& x) { return grpo::make_view(x.data(), {B, T}); };
  b.logp = v(lp);
  b.old_logp = v(lo);
  b.sampler_logp = v(s);
  b.advantages = v(a);
  b.mask = v(m);
  return grpo::compute_loss(o, b).loss;
}

}  // namespace

TEST_CASE("sampler_logp: a non-finite value on a valid token is [grpo.bad_value] on every route" *
          doctest::test_suite("bad_input")) {
  // The weight exp(lo - ls), the sequence weight, OpenRLHF's seq-mask filter and OPSM's gap read
  // the sampler's log-prob of every valid token: NaN / +-inf there (a sampler reports a finite
  // log-prob for a token it sampled) is hostile input, named like old_logp's; a masked token is
  // never read. The routes: the general engine (double inputs), the float packet rows (TIS rows,
  // OPSM rows, GSPO's sequence rows; the general engine again on the baseline path).
  const sampler_route routes[] = {
      {"ppo token TIS", [](grpo::loss_options& o) { o.tis.enabled = true; }},
      {"ppo token TIS, mask mode",
       [](grpo::loss_options& o) {
         o.tis.enabled = true;
         o.tis.mode = grpo::ops::tis_mode::mask;
         o.tis.c_min = 0.5;
         o.tis.c_max = 2.0;
       }},
      {"ppo sequence TIS",
       [](grpo::loss_options& o) {
         o.tis.enabled = true;
         o.tis.sequence = true;
       }},
      {"ppo seq-mask TIS",
       [](grpo::loss_options& o) {
         o.tis.enabled = true;
         o.tis.seq_mask = true;
         o.tis.c_min = 0.5;
         o.tis.c_max = 2.0;
       }},
      {"ppo OPSM (gap from the sampler)", [](grpo::loss_options& o) { o.opsm_threshold = 0.1; }},
      {"ppo OPSM out of the denominator + token TIS",
       [](grpo::loss_options& o) {
         o.opsm_threshold = 0.1;
         o.opsm_in_denominator = false;
         o.tis.enabled = true;
       }},
      {"GSPO + token TIS",
       [](grpo::loss_options& o) {
         o.policy.level = grpo::is_level::sequence;
         o.tis.enabled = true;
       }},
      {"GSPO-token + sequence TIS",
       [](grpo::loss_options& o) {
         o.policy.level = grpo::is_level::sequence_token;
         o.tis.enabled = true;
         o.tis.sequence = true;
       }},
      {"VESPO + token TIS",
       [](grpo::loss_options& o) {
         o.policy.kind = grpo::policy_loss_kind::vespo;
         o.tis.enabled = true;
       }},
  };
  const batch_data d = make_data();
  const double bad_values[] = {std::numeric_limits<double>::quiet_NaN(),
                               std::numeric_limits<double>::infinity(),
                               -std::numeric_limits<double>::infinity()};
  int thrown = 0, probes = 0;
  for (const auto& rt : routes) {
    grpo::loss_options o;
    rt.set(o);
    if (o.tis.enabled && o.tis.c_min == 0.0 && o.tis.c_max == 0.0) o.tis.c_max = 2.0;
    for (int dbl = 0; dbl < 2; ++dbl) {
      auto loss = [&](const std::vector<double>& ls) {
        return dbl ? sampler_loss<double>(d, ls, o) : sampler_loss<float>(d, ls, o);
      };
      const double ref = loss(d.ls);
      REQUIRE(std::isfinite(ref));
      for (double bv : bad_values) {
        const std::string route = rt.name;
        CAPTURE(route);
        CAPTURE(dbl);
        CAPTURE(bv);
        // Valid token (row 1, t 2): the named error.
        std::vector<double> ls = d.ls;
        ls[1 * T + 2] = bv;
        ++probes;
        try {
          (void)loss(ls);
          FAIL_CHECK("no error thrown");
        } catch (const grpo::error& e) {
          ++thrown;
          CHECK(e.code() == grpo::errc::bad_value);
          CHECK_MESSAGE(std::string(e.what()).find("sampler_logp") != std::string::npos, e.what());
        }
        // Masked tokens (row 1, t 4; row 3, t 3): never read, the loss of the finite batch.
        ls = d.ls;
        ls[1 * T + 4] = bv;
        ls[3 * T + 3] = bv;
        CHECK(loss(ls) == ref);
      }
    }
  }
  CHECK(probes == 9 * 2 * 3);
  CHECK(thrown == probes);
}

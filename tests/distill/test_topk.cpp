// SPDX-License-Identifier: Apache-2.0
// Top-k sparse teacher in its three conventions. Oracles: the double reference applied to the
// distributions each convention defines (explicit full-vocabulary or category vectors), central
// finite differences of the library in double, the dense loss when S is the whole vocabulary,
// padding / layout / in-place invariances, and the error contract.
#include <distill/distill.hpp>

#include "isa_paths.hpp"
#include "reference.hpp"

#include <doctest/doctest.h>
#include <support/compare.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

namespace gd = grpo::distill;
using distill_ref::kind;
using grpo::index_t;

namespace {

constexpr double ninf = -std::numeric_limits<double>::infinity();

gd::divergence to_lib(kind k) {
  switch (k) {
    case kind::fkl:
      return gd::divergence::forward_kl;
    case kind::rkl:
      return gd::divergence::reverse_kl;
    case kind::jsd:
      return gd::divergence::jsd;
    case kind::sfkl:
      return gd::divergence::skew_forward_kl;
    case kind::srkl:
      return gd::divergence::skew_reverse_kl;
  }
  return gd::divergence::forward_kl;
}
const kind all_kinds[] = {kind::fkl, kind::rkl, kind::jsd, kind::sfkl, kind::srkl};
const gd::topk_convention all_conv[] = {gd::topk_convention::renormalized_teacher,
                                        gd::topk_convention::tail_bucket,
                                        gd::topk_convention::renormalized_both};

/// A teacher's top-K (ids sorted by probability, then shuffled) of a random full distribution,
/// with `pad` trailing padding slots (id -1).
struct topk_data {
  std::vector<double> logp;
  std::vector<std::int64_t> ids;
};
topk_data make_topk(index_t N, index_t V, index_t K, index_t pad, std::uint32_t seed) {
  topk_data d;
  for (index_t i = 0; i < N; ++i) {
    const auto u = distill_ref::randn(V, 2.5, seed + static_cast<std::uint32_t>(i));
    const auto lp = distill_ref::log_softmax(u, 1.0);
    std::vector<index_t> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + K, order.end(),
                      [&](index_t a, index_t b) { return lp[a] > lp[b]; });
    std::rotate(order.begin(), order.begin() + K / 3, order.begin() + K);  // not sorted by id
    for (index_t j = 0; j < K; ++j) {
      d.ids.push_back(order[j]);
      d.logp.push_back(lp[order[j]]);
    }
    for (index_t j = 0; j < pad; ++j) {
      d.ids.push_back(-1);
      d.logp.push_back(0.123);  // never read
    }
  }
  return d;
}

/// Reference loss and (where a closed form exists) gradient of one row, before aggregation.
struct row_ref {
  double loss = 0;
  std::vector<double> grad;  // d/ds (1/T included); empty when not available in closed form
};
row_ref reference_row(kind k, gd::topk_convention conv, const std::vector<double>& s, double T,
                      const std::vector<double>& lt, const std::vector<std::int64_t>& id,
                      double power, double w) {
  const index_t V = static_cast<index_t>(s.size());
  std::vector<index_t> S;
  std::vector<double> l;
  for (std::size_t i = 0; i < id.size(); ++i)
    if (id[i] >= 0) S.push_back(id[i]), l.push_back(lt[i]);
  const index_t K = static_cast<index_t>(S.size());
  row_ref r;
  if (conv == gd::topk_convention::renormalized_both) {
    std::vector<double> zs(K), ts(K);
    for (index_t i = 0; i < K; ++i) zs[i] = s[S[i]], ts[i] = power * l[i];
    const auto lq = distill_ref::log_softmax(zs, T), lp = distill_ref::log_softmax(ts, 1.0);
    r.loss = distill_ref::row_loss(k, lp, lq, w);
    const auto g = distill_ref::row_grad(k, lp, lq, w);
    r.grad.assign(V, 0.0);
    for (index_t i = 0; i < K; ++i) r.grad[S[i]] = g[i] / T;
    return r;
  }
  const auto lq = distill_ref::log_softmax(s, T);
  if (conv == gd::topk_convention::renormalized_teacher) {
    std::vector<double> ts(K);
    for (index_t i = 0; i < K; ++i) ts[i] = power * l[i];
    const auto lps = distill_ref::log_softmax(ts, 1.0);
    std::vector<double> lp(V, ninf);
    for (index_t i = 0; i < K; ++i) lp[S[i]] = lps[i];
    r.loss = distill_ref::row_loss(k, lp, lq, w);
    const auto g = distill_ref::row_grad(k, lp, lq, w);
    for (double v : g) r.grad.push_back(v / T);
    return r;
  }
  // Tail bucket: K + 1 categories.
  double psum = 0, qin = 0;
  for (index_t i = 0; i < K; ++i) psum += std::exp(l[i]), qin += std::exp(lq[S[i]]);
  std::vector<double> tc(K + 1), lqc(K + 1);
  for (index_t i = 0; i < K; ++i) tc[i] = power * l[i], lqc[i] = lq[S[i]];
  tc[K] = power * std::log(1 - psum);
  double qout = 0;
  for (index_t j = 0; j < V; ++j)
    if (std::find(S.begin(), S.end(), j) == S.end()) qout += std::exp(lq[j]);
  lqc[K] = std::log(qout);
  const auto lpc = distill_ref::log_softmax(tc, 1.0);
  r.loss = distill_ref::row_loss(k, lpc, lqc, w);
  if (k == kind::fkl) {  // q_j - p_j on S, q_j (1 - p_0 / q_0) outside (kernels note 4.6b)
    r.grad.assign(V, 0.0);
    const double p0 = std::exp(lpc[K]);
    for (index_t j = 0; j < V; ++j) r.grad[j] = std::exp(lq[j]) * (1 - p0 / qout) / T;
    for (index_t i = 0; i < K; ++i) r.grad[S[i]] = (std::exp(lq[S[i]]) - std::exp(lpc[i])) / T;
  }
  (void)qin;
  return r;
}

gd::topk_options make_opts(kind k, gd::topk_convention c, double T, double power) {
  gd::topk_options o;
  o.kind = to_lib(k);
  o.convention = c;
  o.temperature = T;
  o.teacher_power = power;
  o.beta = 0.3;
  o.alpha = 0.15;
  return o;
}
double w_of(kind k) {
  return k == kind::jsd ? 0.3 : 0.15;
}

}  // namespace

TEST_CASE("topk_loss: each convention matches its double reference (fp32 student)" *
          doctest::test_suite("distill")) {
  distill_paths::for_each([&] {
    const index_t N = 3, V = 1100, K = 24, pad = 3, Kt = K + pad;
    const auto s0 = distill_ref::randn(N * V, 2.0, 201);
    std::vector<float> s(s0.begin(), s0.end());
    const auto td = make_topk(N, V, K, pad, 300);
    std::vector<float> tl(td.logp.begin(), td.logp.end());
    std::vector<double> sd(s.begin(), s.end()), tld(tl.begin(), tl.end());
    for (kind k : all_kinds)
      for (auto conv : all_conv) {
        if (k == kind::rkl && conv == gd::topk_convention::renormalized_teacher) continue;
        for (double T : {0.8, 1.0}) {
          const double power = conv == gd::topk_convention::renormalized_teacher ? 1.0 : 0.7;
          const auto o = make_opts(k, conv, T, power);
          std::vector<float> g(s.size());
          const auto res = gd::topk_loss(
              grpo::make_view(s.data(), {N, V}), grpo::make_view(tl.data(), {N, Kt}),
              grpo::make_view(td.ids.data(), {N, Kt}), grpo::make_view(g.data(), {N, V}), o);
          double ref_loss = 0;
          bool have_grad = true;
          double err = 0, gmax = 0;
          for (index_t i = 0; i < N; ++i) {
            const std::vector<double> si(sd.begin() + i * V, sd.begin() + (i + 1) * V);
            const std::vector<double> li(tld.begin() + i * Kt, tld.begin() + (i + 1) * Kt);
            const std::vector<std::int64_t> ii(td.ids.begin() + i * Kt,
                                               td.ids.begin() + (i + 1) * Kt);
            const auto r = reference_row(k, conv, si, T, li, ii, power, w_of(k));
            ref_loss += r.loss / N;
            if (r.grad.empty()) {
              have_grad = false;
              continue;
            }
            for (index_t j = 0; j < V; ++j) {
              err = grpo_test::err_max(err, std::fabs(g[i * V + j] - r.grad[j] / N));
              gmax = grpo_test::scale_max(gmax, std::fabs(r.grad[j] / N));
            }
          }
          INFO("kind=", static_cast<int>(k), " conv=", static_cast<int>(conv), " T=", T);
          CHECK(res.loss == doctest::Approx(ref_loss).epsilon(1e-5));
          if (have_grad) CHECK(err <= 1e-5 * gmax);
          if (conv == gd::topk_convention::renormalized_both) {
            // Exactly zero outside S.
            for (index_t i = 0; i < N; ++i)
              for (index_t j = 0; j < V; ++j) {
                const bool in = std::find(td.ids.begin() + i * Kt, td.ids.begin() + (i + 1) * Kt,
                                          j) != td.ids.begin() + (i + 1) * Kt;
                if (!in) CHECK(g[i * V + j] == 0.0f);
              }
          }
        }
      }
  });
}

TEST_CASE("topk_loss: gradient equals central finite differences in every convention" *
          doctest::test_suite("distill")) {
  const index_t B = 2, L = 2, V = 40, K = 6, pad = 1, Kt = K + pad;
  const auto s = distill_ref::randn(B * L * V, 1.5, 211);
  const auto td = make_topk(B * L, V, K, pad, 400);
  std::vector<std::int32_t> ids(td.ids.begin(), td.ids.end());
  std::vector<float> w = {1.0f, 0.5f, 2.0f, 1.5f};
  for (kind k : all_kinds)
    for (auto conv : all_conv) {
      if (k == kind::rkl && conv == gd::topk_convention::renormalized_teacher) continue;
      auto o = make_opts(k, conv, 0.9, 0.8);
      o.scale_by_t2 = true;
      o.aggregate.mode = grpo::agg_mode::seq_mean_token_mean;
      gd::token_args a;
      a.weights = grpo::make_view(static_cast<const float*>(w.data()), {B, L});
      auto sv = s;
      std::vector<double> g(s.size());
      const auto lv = grpo::make_view(td.logp.data(), {B, L, Kt});
      const auto iv = grpo::make_view(ids.data(), {B, L, Kt});
      gd::topk_loss(grpo::make_view(sv.data(), {B, L, V}), lv, iv,
                    grpo::make_view(g.data(), {B, L, V}), o, a);
      auto f = [&](std::size_t i, double d) {
        sv[i] = s[i] + d;
        const double v = gd::topk_loss(grpo::make_view(sv.data(), {B, L, V}), lv, iv, o, a).loss;
        sv[i] = s[i];
        return v;
      };
      double err = 0, gm = 0;
      for (std::size_t i = 0; i < s.size(); ++i) {
        const double fd = (f(i, 1e-5) - f(i, -1e-5)) / 2e-5;
        err = grpo_test::err_max(err, std::fabs(fd - g[i]));
        gm = grpo_test::scale_max(gm, std::fabs(g[i]));
      }
      INFO("kind=", static_cast<int>(k), " conv=", static_cast<int>(conv));
      CHECK(gm > 0);
      CHECK(err <= 1e-8 + 1e-6 * gm);
    }
}

TEST_CASE("topk_loss: with S = the whole vocabulary every convention is the dense loss" *
          doctest::test_suite("distill")) {
  const index_t N = 2, V = 100;
  const auto s = distill_ref::randn(N * V, 2.0, 221);
  const auto u = distill_ref::randn(N * V, 2.0, 222);
  std::vector<double> lt(N * V);
  std::vector<std::int64_t> ids(N * V);
  for (index_t i = 0; i < N; ++i) {
    const auto lp = distill_ref::log_softmax(
        std::vector<double>(u.begin() + i * V, u.begin() + (i + 1) * V), 1.0);
    for (index_t j = 0; j < V; ++j) {
      ids[i * V + j] = V - 1 - j;  // reversed order
      lt[i * V + j] = lp[V - 1 - j];
    }
  }
  for (kind k : all_kinds) {
    gd::distill_options od;
    od.kind = to_lib(k);
    od.beta = 0.3;
    od.alpha = 0.15;
    std::vector<double> gd_(s.size());
    const double dense =
        gd::divergence_loss(grpo::make_view(s.data(), {N, V}), grpo::make_view(u.data(), {N, V}),
                            grpo::make_view(gd_.data(), {N, V}), od)
            .loss;
    for (auto conv : all_conv) {
      if (k == kind::rkl && conv == gd::topk_convention::renormalized_teacher) continue;
      auto o = make_opts(k, conv, 1.0, 1.0);
      std::vector<double> g(s.size());
      const double v =
          gd::topk_loss(grpo::make_view(s.data(), {N, V}), grpo::make_view(lt.data(), {N, V}),
                        grpo::make_view(ids.data(), {N, V}), grpo::make_view(g.data(), {N, V}), o)
              .loss;
      INFO("kind=", static_cast<int>(k), " conv=", static_cast<int>(conv));
      CHECK(v == doctest::Approx(dense).epsilon(1e-9));
      double err = 0;
      for (std::size_t i = 0; i < g.size(); ++i)
        err = grpo_test::err_max(err, std::fabs(g[i] - gd_[i]));
      CHECK(err <= 1e-9);
    }
  }
}

TEST_CASE("topk_loss: padding slots, bf16 values, strides and in-place do not change results" *
          doctest::test_suite("distill")) {
  distill_paths::for_each([&] {
    const index_t N = 3, V = 700, K = 16;
    const auto s0 = distill_ref::randn(N * V, 2.0, 231);
    std::vector<grpo::bfloat16> s(s0.size());
    for (std::size_t i = 0; i < s.size(); ++i) s[i] = grpo::bfloat16(static_cast<float>(s0[i]));
    const auto td = make_topk(N, V, K, 0, 500);
    const auto tp = make_topk(N, V, K, 5, 500);  // same entries + 5 padding slots per row
    std::vector<grpo::bfloat16> tl(td.logp.size()), tlp(tp.logp.size());
    for (std::size_t i = 0; i < tl.size(); ++i)
      tl[i] = grpo::bfloat16(static_cast<float>(td.logp[i]));
    for (std::size_t i = 0; i < tlp.size(); ++i)
      tlp[i] = grpo::bfloat16(static_cast<float>(tp.logp[i]));
    for (auto conv : all_conv) {
      auto o = make_opts(kind::jsd, conv, 1.0, 1.0);
      std::vector<float> g1(s.size()), g2(s.size());
      const double l1 =
          gd::topk_loss(grpo::make_view(s.data(), {N, V}), grpo::make_view(tl.data(), {N, K}),
                        grpo::make_view(td.ids.data(), {N, K}), grpo::make_view(g1.data(), {N, V}),
                        o)
              .loss;
      const double l2 =
          gd::topk_loss(grpo::make_view(s.data(), {N, V}), grpo::make_view(tlp.data(), {N, K + 5}),
                        grpo::make_view(tp.ids.data(), {N, K + 5}),
                        grpo::make_view(g2.data(), {N, V}), o)
              .loss;
      INFO("conv=", static_cast<int>(conv));
      CHECK(l1 == l2);
      CHECK(g1 == g2);
      // Token-major teacher stored as [K, N] (strides {1, N}); in-place bf16 gradient.
      std::vector<grpo::bfloat16> tt(tl.size());
      std::vector<std::int64_t> it(td.ids.size());
      for (index_t i = 0; i < N; ++i)
        for (index_t j = 0; j < K; ++j)
          tt[j * N + i] = tl[i * K + j], it[j * N + i] = td.ids[i * K + j];
      auto sp = s;
      const double l3 = gd::topk_loss(grpo::make_view(sp.data(), {N, V}),
                                      grpo::make_view(tt.data(), {N, K}, {1, N}),
                                      grpo::make_view(it.data(), {N, K}, {1, N}),
                                      grpo::make_view(sp.data(), {N, V}), o)
                            .loss;
      CHECK(l3 == l1);
      int bad = 0;
      for (std::size_t i = 0; i < s.size(); ++i)
        bad += !(static_cast<float>(sp[i]) == static_cast<float>(grpo::bfloat16(g1[i])));
      CHECK(bad == 0);
    }
  });
}

TEST_CASE("topk_loss: bad input raises grpo::error" * doctest::test_suite("distill")) {
  const index_t N = 2, V = 10, K = 3;
  std::vector<float> s(N * V, 0.1f), g(N * V);
  std::vector<float> tl = {-1.0f, -2.0f, -3.0f, -1.0f, -2.0f, -3.0f};
  std::vector<std::int32_t> ids = {1, 2, 3, 4, 5, 6};
  auto code_of = [](auto&& f) {
    try {
      f();
    } catch (const grpo::error& e) {
      return std::string(grpo::to_string(e.code()));
    }
    return std::string("none");
  };
  auto run = [&](const gd::topk_options& o) {
    gd::topk_loss(grpo::make_view(s.data(), {N, V}), grpo::make_view(tl.data(), {N, K}),
                  grpo::make_view(ids.data(), {N, K}), grpo::make_view(g.data(), {N, V}), o);
  };
  gd::topk_options o;
  CHECK(code_of([&] { run(o); }) == "none");
  ids[4] = 10;
  CHECK(code_of([&] { run(o); }) == "out_of_range");
  ids[4] = 4;  // duplicate of ids[3]
  CHECK(code_of([&] { run(o); }) == "bad_value");
  ids[4] = 5;
  tl[2] = std::numeric_limits<float>::quiet_NaN();
  CHECK(code_of([&] { run(o); }) == "bad_value");
  tl[2] = -3.0f;
  o.convention = gd::topk_convention::tail_bucket;
  tl[0] = -0.01f;  // probabilities sum above 1
  CHECK(code_of([&] { run(o); }) == "bad_value");
  tl[0] = -1.0f;
  o.convention = gd::topk_convention::renormalized_teacher;
  o.kind = gd::divergence::reverse_kl;
  CHECK(code_of([&] { run(o); }) == "bad_option");
  o.kind = gd::divergence::forward_kl;
  o.teacher_power = 0.0;
  CHECK(code_of([&] { run(o); }) == "bad_option");
  o.teacher_power = 1.0;
  ids = {-1, -1, -1, 4, 5, 6};  // a row of padding only: no teacher mass
  CHECK(code_of([&] { run(o); }) == "bad_value");
  std::vector<float> big(N * 129, -1.0f);
  std::vector<std::int32_t> bigi(N * 129, -1);
  CHECK(code_of([&] {
          gd::topk_loss(grpo::make_view(s.data(), {N, V}), grpo::make_view(big.data(), {N, 129}),
                        grpo::make_view(bigi.data(), {N, 129}), o);
        }) == "shape_mismatch");
}

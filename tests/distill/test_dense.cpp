// SPDX-License-Identifier: Apache-2.0
// Dense-teacher distillation losses: forward/reverse KL, generalised JSD, skew KLs.
// Oracles: the naive double reference (reference.hpp: definitions and independent closed-form
// gradients), central finite differences of the library itself run in double, invariances
// (teacher = student, shift by 1e4, temperature chain rule, micro-batch split, layout, in place).
#include <distill/distill.hpp>

#include "convert.hpp"
#include "isa_paths.hpp"
#include "reference.hpp"

#include <doctest/doctest.h>
#include <support/compare.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace gd = grpo::distill;
using distill_ref::kind;
using grpo::index_t;

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

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

const char* name(kind k) {
  switch (k) {
    case kind::fkl:
      return "forward_kl";
    case kind::rkl:
      return "reverse_kl";
    case kind::jsd:
      return "jsd";
    case kind::sfkl:
      return "skew_forward_kl";
    case kind::srkl:
      return "skew_reverse_kl";
  }
  return "?";
}

double param_of(kind k) {
  return k == kind::jsd ? 0.3 : (k == kind::sfkl || k == kind::srkl) ? 0.1 : 0.0;
}

gd::distill_options opts_for(kind k, double T, double w) {
  gd::distill_options o;
  o.kind = to_lib(k);
  o.temperature = T;
  if (k == kind::jsd) o.beta = w;
  if (k == kind::sfkl || k == kind::srkl) o.alpha = w;
  return o;
}

using distill_test::cast_to;
using distill_test::widen_all;

/// Reference token-mean loss and gradient over N rows of V (all active), T^2 optional.
struct ref_out {
  double loss = 0;
  std::vector<double> grad;
};
ref_out reference(kind k, const std::vector<double>& s, const std::vector<double>& u, index_t N,
                  index_t V, double T, double w, bool t2 = false) {
  ref_out r;
  r.grad.assign(s.size(), 0.0);
  const double sc = t2 ? T * T : 1.0;
  for (index_t i = 0; i < N; ++i) {
    std::vector<double> si(s.begin() + i * V, s.begin() + (i + 1) * V);
    std::vector<double> ui(u.begin() + i * V, u.begin() + (i + 1) * V);
    const auto lq = distill_ref::log_softmax(si, T), lp = distill_ref::log_softmax(ui, T);
    r.loss += sc * distill_ref::row_loss(k, lp, lq, w) / static_cast<double>(N);
    const auto g = distill_ref::row_grad(k, lp, lq, w);
    for (index_t j = 0; j < V; ++j)
      r.grad[static_cast<std::size_t>(i * V + j)] = sc * g[static_cast<std::size_t>(j)] / T / N;
  }
  return r;
}

double max_abs(const std::vector<double>& a) {
  double m = 0;
  for (double v : a) m = grpo_test::scale_max(m, std::fabs(v));
  return m;
}

}  // namespace

TEST_CASE("divergence_loss: every divergence matches the double reference in fp32/bf16/fp16" *
          doctest::test_suite("distill")) {
  distill_paths::for_each([&] {
    const index_t N = 5,
                  V = 1037;  // V: two full chunks plus a partial chunk and a partial lane block
    const auto s0 = distill_ref::randn(N * V, 2.0, 11);
    const auto u0 = distill_ref::randn(N * V, 2.5, 12);
    for (kind k : all_kinds)
      for (double T : {0.7, 1.0, 2.0}) {
        const double w = param_of(k);
        auto run = [&](auto tag) {
          using St = decltype(tag);
          const auto s = cast_to<St>(s0);
          const auto u = cast_to<St>(u0);
          // Reference on the same upcast inputs (target 12 of the kernels note).
          const auto ref = reference(k, widen_all(s), widen_all(u), N, V, T, w);
          std::vector<float> g(s.size());
          const auto res = gd::divergence_loss(
              grpo::make_view(s.data(), {N, V}), grpo::make_view(u.data(), {N, V}),
              grpo::make_view(g.data(), {N, V}), opts_for(k, T, w));
          INFO(name(k), " T=", T, " dtype bytes=", sizeof(St));
          CHECK(res.loss == doctest::Approx(ref.loss).epsilon(1e-5));
          CHECK(res.active_tokens == N);
          const double gmax = max_abs(ref.grad);
          double err = 0;
          for (std::size_t i = 0; i < g.size(); ++i)
            err = grpo_test::err_max(err, std::fabs(g[i] - ref.grad[i]));
          CHECK(err <= 1e-5 * gmax);
          // bf16 gradient output: within one bf16 ulp of the rounded fp32-path value.
          std::vector<grpo::bfloat16> gb(s.size());
          gd::divergence_loss(grpo::make_view(s.data(), {N, V}), grpo::make_view(u.data(), {N, V}),
                              grpo::make_view(gb.data(), {N, V}), opts_for(k, T, w));
          int bad = 0;
          for (std::size_t i = 0; i < g.size(); ++i) {
            const double r = ref.grad[i];
            const double ulp = std::ldexp(1.0, std::ilogb(std::fabs(r) > 0 ? r : 1e-30) - 7);
            if (!(std::fabs(static_cast<float>(gb[i]) - r) <= ulp + 1e-6 * gmax))
              ++bad;  // NaN: bad
          }
          CHECK(bad == 0);
        };
        run(float{});
        run(grpo::bfloat16{});
        run(grpo::float16{});
      }
  });
}

TEST_CASE("divergence_loss: gradient equals central finite differences (double run)" *
          doctest::test_suite("distill")) {
  distill_paths::for_each([&] {
    const index_t B = 2, L = 2, V = 37;
    const auto s = distill_ref::randn(B * L * V, 1.5, 21);
    const auto u = distill_ref::randn(B * L * V, 1.5, 22);
    std::vector<float> wts = {0.5f, 2.0f, 1.0f, 0.25f};
    std::vector<std::uint8_t> mask = {1, 1, 0, 1};
    for (kind k : all_kinds)
      for (auto mode : {grpo::agg_mode::token_mean, grpo::agg_mode::seq_mean_token_mean,
                        grpo::agg_mode::seq_mean_token_sum, grpo::agg_mode::token_sum})
        for (bool t2 : {false, true}) {
          auto o = opts_for(k, 0.8, k == kind::jsd ? 0.4 : 0.2);
          o.scale_by_t2 = t2;
          o.aggregate.mode = mode;
          o.grad_output = 1.7;
          gd::token_args a;
          a.mask = grpo::make_view(static_cast<const std::uint8_t*>(mask.data()), {B, L});
          a.weights = grpo::make_view(static_cast<const float*>(wts.data()), {B, L});
          std::vector<double> g(s.size());
          auto sv = s;
          gd::divergence_loss(grpo::make_view(sv.data(), {B, L, V}),
                              grpo::make_view(u.data(), {B, L, V}),
                              grpo::make_view(g.data(), {B, L, V}), o, a);
          auto f = [&](std::size_t i, double d) {
            sv[i] = s[i] + d;
            const double r = gd::divergence_loss(grpo::make_view(sv.data(), {B, L, V}),
                                                 grpo::make_view(u.data(), {B, L, V}), o, a)
                                 .loss;
            sv[i] = s[i];
            return r;
          };
          double err = 0, gm = 0;
          const double h = 1e-5;
          for (std::size_t i = 0; i < s.size(); ++i) {
            const double fd = o.grad_output * (f(i, h) - f(i, -h)) / (2 * h);
            err = grpo_test::err_max(err, std::fabs(fd - g[i]));
            gm = grpo_test::scale_max(gm, std::fabs(g[i]));
          }
          INFO(name(k), " mode=", static_cast<int>(mode), " t2=", t2);
          CHECK(gm > 0);
          CHECK(err <= 1e-8 + 1e-6 * gm);
          // The masked token (1, 0) has an all-zero gradient row.
          for (index_t j = 0; j < V; ++j)
            CHECK(g[static_cast<std::size_t>((1 * L + 0) * V + j)] == 0.0);
        }
  });
}

TEST_CASE("divergence_loss: teacher == student gives zero loss and zero gradient" *
          doctest::test_suite("distill")) {
  const index_t N = 3, V = 700;
  const auto x = cast_to<float>(distill_ref::randn(N * V, 3.0, 5));
  for (kind k : all_kinds) {
    std::vector<float> g(x.size(), 1.0f);
    const auto res =
        gd::divergence_loss(grpo::make_view(x.data(), {N, V}), grpo::make_view(x.data(), {N, V}),
                            grpo::make_view(g.data(), {N, V}), opts_for(k, 0.9, 0.3));
    INFO(name(k));
    CHECK(std::fabs(res.loss) <= 1e-6);
    CHECK(max_abs(widen_all(g)) <= 1e-7);
  }
}

TEST_CASE("divergence_loss: JSD beta sweep, endpoint conventions and symmetry" *
          doctest::test_suite("distill")) {
  const index_t N = 4, V = 300;
  const auto s = cast_to<double>(distill_ref::randn(N * V, 2.0, 31));
  const auto u = cast_to<double>(distill_ref::randn(N * V, 2.0, 32));
  auto sv = grpo::make_view(s.data(), {N, V});
  auto uv = grpo::make_view(u.data(), {N, V});
  for (int i = 0; i <= 10; ++i) {
    const double beta = i / 10.0;
    gd::distill_options o;
    o.kind = gd::divergence::jsd;
    o.beta = beta;
    o.endpoints = gd::jsd_endpoints::formula;
    std::vector<double> g(s.size());
    const double v = gd::divergence_loss(sv, uv, grpo::make_view(g.data(), {N, V}), o).loss;
    const auto ref = reference(kind::jsd, s, u, N, V, 1.0, beta);
    INFO("beta=", beta);
    CHECK(v == doctest::Approx(ref.loss).epsilon(1e-12));
    double err = 0;
    for (std::size_t j = 0; j < g.size(); ++j)
      err = grpo_test::err_max(err, std::fabs(g[j] - ref.grad[j]));
    CHECK(err <= 1e-12);
    if (i == 0 || i == 10) CHECK(v == 0.0);  // the formula vanishes at both endpoints
    if (i > 0 && i < 10) CHECK(v > 0.0);
  }
  // kl_limits (TRL / Liger): beta = 0 is KL(p||q), beta = 1 is KL(q||p).
  gd::distill_options o;
  o.kind = gd::divergence::jsd;
  o.beta = 0.0;
  const double b0 = gd::divergence_loss(sv, uv, o).loss;
  o.beta = 1.0;
  const double b1 = gd::divergence_loss(sv, uv, o).loss;
  CHECK(b0 == doctest::Approx(reference(kind::fkl, s, u, N, V, 1.0, 0).loss).epsilon(1e-12));
  CHECK(b1 == doctest::Approx(reference(kind::rkl, s, u, N, V, 1.0, 0).loss).epsilon(1e-12));
  // JSD/beta -> KL(p||q) as beta -> 0 (the limit the kl_limits convention jumps to).
  o.endpoints = gd::jsd_endpoints::formula;
  o.beta = 1e-6;
  CHECK(gd::divergence_loss(sv, uv, o).loss / 1e-6 == doctest::Approx(b0).epsilon(1e-4));
  // beta = 0.5 is symmetric in (p, q).
  o.beta = 0.5;
  CHECK(gd::divergence_loss(sv, uv, o).loss ==
        doctest::Approx(gd::divergence_loss(uv, sv, o).loss).epsilon(1e-12));
  // Skew KLs at alpha = 0 are the plain KLs.
  o.kind = gd::divergence::skew_forward_kl;
  o.alpha = 0.0;
  CHECK(gd::divergence_loss(sv, uv, o).loss == doctest::Approx(b0).epsilon(1e-12));
  o.kind = gd::divergence::skew_reverse_kl;
  CHECK(gd::divergence_loss(sv, uv, o).loss == doctest::Approx(b1).epsilon(1e-12));
}

TEST_CASE("divergence_loss: temperature chain rule and T^2 scaling" *
          doctest::test_suite("distill")) {
  const index_t N = 3, V = 257;
  const auto s = distill_ref::randn(N * V, 2.0, 41);
  const auto u = distill_ref::randn(N * V, 2.0, 42);
  const double T = 1.7;
  std::vector<double> s1(s.size()), u1(u.size());
  for (std::size_t i = 0; i < s.size(); ++i) s1[i] = s[i] / T, u1[i] = u[i] / T;
  for (kind k : all_kinds) {
    auto o = opts_for(k, T, 0.35);
    std::vector<double> gT(s.size()), g1(s.size());
    const double lT =
        gd::divergence_loss(grpo::make_view(s.data(), {N, V}), grpo::make_view(u.data(), {N, V}),
                            grpo::make_view(gT.data(), {N, V}), o)
            .loss;
    auto o1 = o;
    o1.temperature = 1.0;
    const double l1 =
        gd::divergence_loss(grpo::make_view(s1.data(), {N, V}), grpo::make_view(u1.data(), {N, V}),
                            grpo::make_view(g1.data(), {N, V}), o1)
            .loss;
    INFO(name(k));
    CHECK(lT == doctest::Approx(l1).epsilon(1e-12));
    // dL/ds = (1/T) dL/dz' at z' = s / T.
    for (std::size_t i = 0; i < s.size(); ++i)
      CHECK(gT[i] == doctest::Approx(g1[i] / T).epsilon(1e-10));
    o.scale_by_t2 = true;
    std::vector<double> g2(s.size());
    const double l2 =
        gd::divergence_loss(grpo::make_view(s.data(), {N, V}), grpo::make_view(u.data(), {N, V}),
                            grpo::make_view(g2.data(), {N, V}), o)
            .loss;
    CHECK(l2 == doctest::Approx(T * T * lT).epsilon(1e-12));
    for (std::size_t i = 0; i < s.size(); ++i)
      CHECK(g2[i] == doctest::Approx(T * T * gT[i]).epsilon(1e-12));
  }
}

TEST_CASE("divergence_loss: adversarial rows (offsets, -inf blocks, dominant logit, below -100)" *
          doctest::test_suite("distill")) {
  distill_paths::for_each([&] {
    const index_t V = 2000;
    auto base_s = distill_ref::randn(V, 2.0, 51);
    auto base_u = distill_ref::randn(V, 2.0, 52);
    std::vector<std::vector<double>> S, U;
    // 0: +1e4 offset on the student, -1e4 on the teacher (softmax is shift-invariant).
    {
      auto s = base_s, u = base_u;
      for (auto& v : s) v += 1e4;
      for (auto& v : u) v -= 1e4;
      S.push_back(s);
      U.push_back(u);
    }
    // 1: a whole -inf block (masked vocabulary) in both rows, crossing a chunk boundary.
    {
      auto s = base_s, u = base_u;
      for (index_t j = 400; j < 1100; ++j) s[j] = u[j] = -inf;
      S.push_back(s);
      U.push_back(u);
    }
    // 2: one dominant logit in both (q_y > 1 - 1e-6).
    {
      auto s = base_s, u = base_u;
      s[777] = 40.0;
      u[777] = 35.0;
      S.push_back(s);
      U.push_back(u);
    }
    // 3: every logit below -100 (the verl max-initialised-to-0 bug).
    {
      auto s = base_s, u = base_u;
      for (auto& v : s) v -= 150.0;
      for (auto& v : u) v -= 300.0;
      S.push_back(s);
      U.push_back(u);
    }
    // 4: both distributions almost entirely in disjoint places: p and q underflow together on most
    // entries (the Liger JSD log(0) -> NaN bug) but the loss is finite.
    {
      std::vector<double> s(V, -200.0), u(V, -200.0);
      s[3] = 0.0;
      u[1500] = 0.0;
      for (index_t j = 10; j < 20; ++j) s[j] = -90.0, u[j] = -95.0;
      S.push_back(s);
      U.push_back(u);
    }
    const index_t N = static_cast<index_t>(S.size());
    std::vector<double> s_all, u_all;
    for (index_t i = 0; i < N; ++i) {
      s_all.insert(s_all.end(), S[i].begin(), S[i].end());
      u_all.insert(u_all.end(), U[i].begin(), U[i].end());
    }
    const auto sf = cast_to<float>(s_all), uf = cast_to<float>(u_all);
    for (kind k : all_kinds)
      for (index_t i = 0; i < N; ++i) {
        const double w = param_of(k);
        const std::vector<double> si =
            widen_all(std::vector<float>(sf.begin() + i * V, sf.begin() + (i + 1) * V));
        const std::vector<double> ui =
            widen_all(std::vector<float>(uf.begin() + i * V, uf.begin() + (i + 1) * V));
        const auto ref = reference(k, si, ui, 1, V, 1.0, w);
        std::vector<float> g(static_cast<std::size_t>(V));
        const auto res = gd::divergence_loss(
            grpo::make_view(sf.data() + i * V, {1, V}), grpo::make_view(uf.data() + i * V, {1, V}),
            grpo::make_view(g.data(), {1, V}), opts_for(k, 1.0, w));
        INFO(name(k), " row ", i);
        REQUIRE(std::isfinite(ref.loss));
        CHECK(std::isfinite(res.loss));
        CHECK(res.loss == doctest::Approx(ref.loss).epsilon(2e-5).scale(1.0));
        double err = 0;
        for (index_t j = 0; j < V; ++j) {
          CHECK_FALSE(std::isnan(g[j]));
          err = grpo_test::err_max(err, std::fabs(g[j] - ref.grad[j]));
        }
        CHECK(err <= 2e-6 * std::max(1.0, max_abs(ref.grad)));
      }
  });
}

TEST_CASE("divergence_loss: -inf entries in the weighting row only (forward KL teacher, reverse "
          "KL student) match the double reference" *
          doctest::test_suite("distill")) {
  // The KL partial of the fused pass 1 (forward KL: p (lp - lq), reverse KL: q (lq - lp)) is
  // summed without its "0 where the weight is 0" mask and a chunk whose sum is NaN (0 x -inf)
  // is summed again with it: -inf entries scattered through chunks that hold mass in both rows
  // (and a whole -inf chunk) must give the reference's finite loss and gradient on every path.
  distill_paths::for_each([&] {
    const index_t V = 1600;
    const auto a = distill_ref::randn(V, 2.0, 61);
    const auto b = distill_ref::randn(V, 2.0, 62);
    for (kind k : {kind::fkl, kind::rkl}) {
      auto w = k == kind::fkl ? b : a;  // the weighting row (teacher for the forward KL)
      for (index_t j = 3; j < V; j += 7) w[j] = -inf;        // scattered through every chunk
      for (index_t j = 1024; j < 1536; ++j) w[j] = -inf;     // one whole chunk
      const auto sd = k == kind::fkl ? a : w, ud = k == kind::fkl ? w : b;
      const auto sf = cast_to<float>(sd), uf = cast_to<float>(ud);
      const auto ref = reference(k, widen_all(sf), widen_all(uf), 1, V, 0.9, param_of(k));
      std::vector<float> g(static_cast<std::size_t>(V));
      const auto res = gd::divergence_loss(grpo::make_view(sf.data(), {1, V}),
                                           grpo::make_view(uf.data(), {1, V}),
                                           grpo::make_view(g.data(), {1, V}),
                                           opts_for(k, 0.9, param_of(k)));
      INFO(name(k));
      REQUIRE(std::isfinite(ref.loss));
      CHECK(res.loss == doctest::Approx(ref.loss).epsilon(2e-5));
      double err = 0;
      for (index_t j = 0; j < V; ++j) {
        CHECK_FALSE(std::isnan(g[j]));
        err = grpo_test::err_max(err, std::fabs(g[j] - ref.grad[j]));
      }
      CHECK(err <= 2e-6 * std::max(1.0, max_abs(ref.grad)));
    }
  });
}

TEST_CASE("divergence_loss: any strides and in-place gradients give identical results" *
          doctest::test_suite("distill")) {
  distill_paths::for_each([&] {
    const index_t B = 2, L = 3, V = 530;
    const auto s = cast_to<float>(distill_ref::randn(B * L * V, 2.0, 61));
    const auto u = cast_to<float>(distill_ref::randn(B * L * V, 2.0, 62));
    for (kind k : all_kinds) {
      const auto o = opts_for(k, 1.3, 0.25);
      std::vector<float> g(s.size());
      const double l0 = gd::divergence_loss(grpo::make_view(s.data(), {B, L, V}),
                                            grpo::make_view(u.data(), {B, L, V}),
                                            grpo::make_view(g.data(), {B, L, V}), o)
                            .loss;
      // Vocabulary-major storage of the student ([V, B, L] memory, viewed as [B, L, V] with strides
      // {L, 1, B L}) and a teacher with padded rows (row stride V + 7); gradient with stride 2.
      std::vector<float> st(s.size());
      for (index_t b = 0; b < B; ++b)
        for (index_t t = 0; t < L; ++t)
          for (index_t j = 0; j < V; ++j) st[j * B * L + b * L + t] = s[(b * L + t) * V + j];
      std::vector<float> up(static_cast<std::size_t>(B * L * (V + 7)), 123.0f);
      for (index_t r = 0; r < B * L; ++r)
        for (index_t j = 0; j < V; ++j) up[r * (V + 7) + j] = u[r * V + j];
      std::vector<float> g2(2 * s.size(), -5.0f);
      const double l1 =
          gd::divergence_loss(grpo::make_view(st.data(), {B, L, V}, {L, 1, B * L}),
                              grpo::make_view(up.data(), {B, L, V}, {L * (V + 7), V + 7, 1}),
                              grpo::make_view(g2.data(), {B, L, V}, {2 * L * V, 2 * V, 2}), o)
              .loss;
      INFO(name(k));
      CHECK(l1 == l0);
      for (std::size_t i = 0; i < g.size(); ++i) CHECK(g2[2 * i] == g[i]);
      CHECK(g2[1] == -5.0f);  // the gaps are untouched
      // In place: the gradient overwrites the student buffer.
      auto sp = s;
      const double l2 = gd::divergence_loss(grpo::make_view(sp.data(), {B, L, V}),
                                            grpo::make_view(u.data(), {B, L, V}),
                                            grpo::make_view(sp.data(), {B, L, V}), o)
                            .loss;
      CHECK(l2 == l0);
      CHECK(sp == g);
    }
  });
}

TEST_CASE("divergence_loss: micro-batch split with global denominators reproduces the batch" *
          doctest::test_suite("distill")) {
  const index_t B = 4, L = 3, V = 64;
  const auto s = distill_ref::randn(B * L * V, 1.0, 71);
  const auto u = distill_ref::randn(B * L * V, 1.0, 72);
  std::vector<std::uint8_t> mask = {1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 1};  // sequence 1 fully masked
  for (auto mode : {grpo::agg_mode::token_mean, grpo::agg_mode::seq_mean_token_mean,
                    grpo::agg_mode::seq_mean_token_sum}) {
    gd::distill_options o;
    o.kind = gd::divergence::jsd;
    o.aggregate.mode = mode;
    gd::token_args a;
    a.mask = grpo::make_view(static_cast<const std::uint8_t*>(mask.data()), {B, L});
    std::vector<double> g(s.size());
    const auto full = gd::divergence_loss(grpo::make_view(s.data(), {B, L, V}),
                                          grpo::make_view(u.data(), {B, L, V}),
                                          grpo::make_view(g.data(), {B, L, V}), o, a);
    CHECK(full.active_tokens == 6);
    CHECK(full.active_sequences == 3);
    // Two micro-batches of two sequences, each told the global counts.
    o.aggregate.global_tokens = static_cast<double>(full.active_tokens);
    o.aggregate.global_seqs = static_cast<double>(full.active_sequences);
    std::vector<double> gs(s.size());
    double total = 0;
    for (index_t part = 0; part < 2; ++part) {
      const index_t off = part * 2 * L * V;
      gd::token_args ap;
      ap.mask =
          grpo::make_view(static_cast<const std::uint8_t*>(mask.data() + part * 2 * L), {2, L});
      total += gd::divergence_loss(grpo::make_view(s.data() + off, {2, L, V}),
                                   grpo::make_view(u.data() + off, {2, L, V}),
                                   grpo::make_view(gs.data() + off, {2, L, V}), o, ap)
                   .loss;
    }
    INFO("mode=", static_cast<int>(mode));
    CHECK(total == doctest::Approx(full.loss).epsilon(1e-13));
    for (std::size_t i = 0; i < g.size(); ++i) CHECK(gs[i] == doctest::Approx(g[i]).epsilon(1e-13));
    // Hand computation of the aggregation from the per-token losses.
    std::vector<float> pt(static_cast<std::size_t>(B * L), -1.0f);
    gd::token_args ao = a;
    ao.per_token_loss = grpo::make_view(pt.data(), {B, L});
    o.aggregate = {};
    o.aggregate.mode = mode;
    gd::divergence_loss(grpo::make_view(s.data(), {B, L, V}), grpo::make_view(u.data(), {B, L, V}),
                        o, ao);
    double hand = 0;
    if (mode == grpo::agg_mode::token_mean) {
      for (index_t i = 0; i < B * L; ++i) hand += mask[i] ? pt[i] : 0.0;
      hand /= 6.0;
    } else {
      for (index_t b = 0; b < B; ++b) {
        double sb = 0;
        int nb = 0;
        for (index_t t = 0; t < L; ++t)
          if (mask[b * L + t]) sb += pt[b * L + t], ++nb;
        if (nb > 0) hand += mode == grpo::agg_mode::seq_mean_token_mean ? sb / nb : sb;
      }
      hand /= 3.0;
    }
    for (index_t i = 0; i < B * L; ++i)
      if (!mask[i]) CHECK(pt[i] == 0.0f);
    CHECK(full.loss == doctest::Approx(hand).epsilon(1e-6));
  }
}

TEST_CASE("divergence_loss: fully masked batch gives loss 0 and a zero gradient" *
          doctest::test_suite("distill")) {
  const index_t B = 2, L = 2, V = 40;
  const auto s = cast_to<float>(distill_ref::randn(B * L * V, 1.0, 81));
  const auto u = cast_to<float>(distill_ref::randn(B * L * V, 1.0, 82));
  std::vector<std::uint8_t> mask(4, 0);
  gd::token_args a;
  a.mask = grpo::make_view(static_cast<const std::uint8_t*>(mask.data()), {B, L});
  std::vector<float> g(s.size(), 9.0f);
  gd::distill_options o;
  o.kind = gd::divergence::reverse_kl;
  const auto r = gd::divergence_loss(grpo::make_view(s.data(), {B, L, V}),
                                     grpo::make_view(u.data(), {B, L, V}),
                                     grpo::make_view(g.data(), {B, L, V}), o, a);
  CHECK(r.loss == 0.0);
  CHECK(r.active_tokens == 0);
  CHECK(r.active_sequences == 0);
  for (float v : g) CHECK(v == 0.0f);
}

TEST_CASE("divergence_loss: labels with ignore_index mask exactly like the mask" *
          doctest::test_suite("distill")) {
  const index_t B = 2, L = 3, V = 50;
  const auto s = cast_to<float>(distill_ref::randn(B * L * V, 1.0, 85));
  const auto u = cast_to<float>(distill_ref::randn(B * L * V, 1.0, 86));
  std::vector<std::int64_t> labels = {4, -100, 7, -100, -100, 1};
  std::vector<std::uint8_t> mask = {1, 0, 1, 0, 0, 1};
  gd::distill_options o;
  o.kind = gd::divergence::jsd;
  o.aggregate.mode = grpo::agg_mode::seq_mean_token_mean;
  gd::token_args al, am;
  al.labels = grpo::make_view(static_cast<const std::int64_t*>(labels.data()), {B, L});
  am.mask = grpo::make_view(static_cast<const std::uint8_t*>(mask.data()), {B, L});
  std::vector<float> g1(s.size(), 3.0f), g2(s.size(), 4.0f);
  const auto r1 = gd::divergence_loss(grpo::make_view(s.data(), {B, L, V}),
                                      grpo::make_view(u.data(), {B, L, V}),
                                      grpo::make_view(g1.data(), {B, L, V}), o, al);
  const auto r2 = gd::divergence_loss(grpo::make_view(s.data(), {B, L, V}),
                                      grpo::make_view(u.data(), {B, L, V}),
                                      grpo::make_view(g2.data(), {B, L, V}), o, am);
  CHECK(r1.active_tokens == 3);
  CHECK(r1.loss == r2.loss);
  CHECK(g1 == g2);
  al.ignore_index = 7;  // another ignore value: now token (0, 2) is the ignored one
  const auto r3 = gd::divergence_loss(grpo::make_view(s.data(), {B, L, V}),
                                      grpo::make_view(u.data(), {B, L, V}), o, al);
  CHECK(r3.active_tokens == 5);
}

TEST_CASE("divergence_loss: bad input raises grpo::error with the right id" *
          doctest::test_suite("distill")) {
  const index_t N = 2, V = 8;
  std::vector<float> s(N * V, 0.5f), u(N * V, 0.25f), g(N * V), small(N * (V - 1));
  auto sv = grpo::make_view(s.data(), {N, V});
  auto uv = grpo::make_view(u.data(), {N, V});
  auto gv = grpo::make_view(g.data(), {N, V});
  gd::distill_options o;
  auto code_of = [](auto&& f) {
    try {
      f();
    } catch (const grpo::error& e) {
      return std::string(grpo::to_string(e.code()));
    }
    return std::string("none");
  };
  CHECK(code_of([&] {
          gd::divergence_loss(sv, grpo::make_view(small.data(), {N, V - 1}), o);
        }) == "shape_mismatch");
  CHECK(code_of([&] {
          gd::divergence_loss(sv, uv, grpo::make_view(small.data(), {N, V - 1}), o);
        }) == "shape_mismatch");
  auto bad_t = o;
  bad_t.temperature = 0.0;
  CHECK(code_of([&] { gd::divergence_loss(sv, uv, gv, bad_t); }) == "bad_option");
  auto bad_b = o;
  bad_b.kind = gd::divergence::jsd;
  bad_b.beta = 1.5;
  CHECK(code_of([&] { gd::divergence_loss(sv, uv, gv, bad_b); }) == "bad_option");
  auto bad_a = o;
  bad_a.kind = gd::divergence::skew_reverse_kl;
  bad_a.alpha = 1.0;
  CHECK(code_of([&] { gd::divergence_loss(sv, uv, gv, bad_a); }) == "bad_option");
  CHECK(code_of([&] { gd::divergence_loss(sv, uv, uv, o); }) ==
        "bad_option");  // grad aliases teacher
  s[5] = std::numeric_limits<float>::quiet_NaN();
  CHECK(code_of([&] { gd::divergence_loss(sv, uv, gv, o); }) == "bad_value");
  s[5] = 0.5f;
  u[V + 2] = std::numeric_limits<float>::infinity();
  CHECK(code_of([&] { gd::divergence_loss(sv, uv, gv, o); }) == "bad_value");
  u[V + 2] = 0.25f;
  for (index_t j = 0; j < V; ++j) s[V + j] = -std::numeric_limits<float>::infinity();
  CHECK(code_of([&] { gd::divergence_loss(sv, uv, gv, o); }) == "bad_value");
  try {
    gd::divergence_loss(sv, uv, gv, o);
  } catch (const grpo::error& e) {
    CHECK(std::string(e.what()).find("student_logits") != std::string::npos);
    CHECK(std::string(e.what()).find("(0, 1)") != std::string::npos);
  }
  for (index_t j = 0; j < V; ++j) s[V + j] = 0.0f;
  std::vector<float> w = {1.0f, std::numeric_limits<float>::quiet_NaN()};
  gd::token_args a;
  a.weights = grpo::make_view(static_cast<const float*>(w.data()), {1, N});
  CHECK(code_of([&] { gd::divergence_loss(sv, uv, gv, o, a); }) == "bad_value");
  a.weights = grpo::make_view(static_cast<const float*>(w.data()), {N, 1});
  CHECK(code_of([&] { gd::divergence_loss(sv, uv, gv, o, a); }) == "shape_mismatch");
}

#if defined(_OPENMP)
TEST_CASE("divergence_loss: results do not depend on the thread count" *
          doctest::test_suite("distill")) {
  const index_t N = 17, V = 900;
  const auto s = cast_to<grpo::bfloat16>(distill_ref::randn(N * V, 2.0, 91));
  const auto u = cast_to<grpo::bfloat16>(distill_ref::randn(N * V, 2.0, 92));
  gd::distill_options o;
  o.kind = gd::divergence::skew_reverse_kl;
  std::vector<float> g1(s.size()), g2(s.size());
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const double l1 =
      gd::divergence_loss(grpo::make_view(s.data(), {N, V}), grpo::make_view(u.data(), {N, V}),
                          grpo::make_view(g1.data(), {N, V}), o)
          .loss;
  omp_set_num_threads(3);
  const double l2 =
      gd::divergence_loss(grpo::make_view(s.data(), {N, V}), grpo::make_view(u.data(), {N, V}),
                          grpo::make_view(g2.data(), {N, V}), o)
          .loss;
  omp_set_num_threads(saved);
  CHECK(l1 == l2);
  CHECK(g1 == g2);
}
#else
TEST_CASE("divergence_loss: results do not depend on the thread count" *
          doctest::test_suite("distill")) {
  MESSAGE("SKIPPED: built without OpenMP (no grpo::openmp), nothing runs threaded");
}
#endif

// SPDX-License-Identifier: Apache-2.0
// The vocabulary-row engine (grpo/vocab/engine.hpp) on every path this CPU has, in one process
// (grpo::scoped_isa_limit): the packet kernels against the portable loops and the double reference
// (tests/logprob/reference.hpp) on fp32 / bf16 / fp16 rows with tails (V not a multiple of 8 or 16),
// masked entries, temperatures, entropy gradients, in-place and streamed outputs, and the fused
// step's pipelined sweep against row_stats + row_grad_cached. Paths the CPU lacks are reported as
// SKIPPED.
#include <grpo/logprob.hpp>
#include <grpo/sampler.hpp>

#include "logprob/reference.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

using grpo::index_t;
namespace lp = grpo::detail::lp;
constexpr float finf = std::numeric_limits<float>::infinity();

/// The vector paths to run here; the others get a SKIPPED message (once per test case).
std::vector<grpo::isa> vector_paths(bool report = false) {
  std::vector<grpo::isa> r;
  for (grpo::isa k : {grpo::isa::avx2, grpo::isa::avx512, grpo::isa::neon}) {
    if (grpo::isa_available(k))
      r.push_back(k);
    else if (report)
      MESSAGE("SKIPPED: the " << std::string(grpo::isa_name(k))
                              << " vocabulary kernels (this CPU lacks it)");
  }
  return r;
}
/// baseline + vector_paths().
std::vector<grpo::isa> all_paths() {
  auto r = vector_paths(true);
  r.insert(r.begin(), grpo::isa::baseline);
  return r;
}

/// A [N, V] row-major logits matrix of type T: N(0, 3^2) values with +-20 offsets per 1024-block,
/// every 7th entry masked (-inf), a dominant row, a row far below zero.
template <class T>
std::vector<T> make_logits(index_t N, index_t V, std::uint32_t seed, float offset = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<T> x(static_cast<std::size_t>(N * V));
  for (index_t i = 0; i < N; ++i)
    for (index_t j = 0; j < V; ++j) {
      float v = nd(rng) + ((j / 1024) % 2 == 0 ? 20.0f : -20.0f);
      if (i == 1) v = -18.0f + nd(rng) / 3.0f;  // dominated by the target below
      if (i == 2) v -= 140.0f;
      v += offset;
      if (j % 7 == 3 && V > 1) v = -finf;
      x[static_cast<std::size_t>(i * V + j)] = grpo::narrow<T>(v);
    }
  if (N > 1) x[static_cast<std::size_t>(V + 1 % V)] = grpo::narrow<T>(40.0f + offset);
  return x;
}

std::vector<double> widened_row(const auto* p, index_t V) {
  std::vector<double> r(static_cast<std::size_t>(V));
  for (index_t j = 0; j < V; ++j) r[static_cast<std::size_t>(j)] = static_cast<float>(grpo::widen(p[j]));
  return r;
}

struct fwd_out {
  std::vector<float> logp, lse, ent;
  grpo::logprob_report rep;
};

template <class T>
fwd_out forward(const std::vector<T>& x, const std::vector<std::int64_t>& ids, index_t V, float temp) {
  const auto N = static_cast<index_t>(ids.size());
  fwd_out o;
  o.logp.resize(ids.size());
  o.lse.resize(ids.size());
  o.ent.resize(ids.size());
  grpo::logprob_options opt;
  opt.temperature = temp;
  o.rep = grpo::selective_log_softmax(grpo::make_view(x.data(), {N, V}),
                                      grpo::make_view(ids.data(), {N}),
                                      grpo::make_view(o.logp.data(), {N}),
                                      grpo::make_view(o.lse.data(), {N}),
                                      grpo::make_view(o.ent.data(), {N}), opt);
  return o;
}

template <class T, class G>
std::vector<G> backward(const std::vector<T>& x, const std::vector<std::int64_t>& ids, index_t V,
                        float temp, bool entropy_grad) {
  const auto N = static_cast<index_t>(ids.size());
  std::vector<float> gl(ids.size()), ge(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    gl[i] = 0.75f - 0.5f * static_cast<float>(i);
    ge[i] = entropy_grad ? 0.3f * static_cast<float>(i % 3) - 0.2f : 0.0f;
  }
  std::vector<G> g(x.size());
  grpo::logprob_options opt;
  opt.temperature = temp;
  grpo::selective_log_softmax_backward(grpo::make_view(x.data(), {N, V}),
                                       grpo::make_view(ids.data(), {N}),
                                       grpo::make_view(gl.data(), {N}),
                                       grpo::make_view(ge.data(), {N}),
                                       grpo::make_view(g.data(), {N, V}), opt);
  return g;
}

/// Checks one path against the baseline run and the double reference.
template <class T, class G>
void compare_paths(index_t V, float temp, bool entropy_grad, float offset = 0.0f) {
  constexpr index_t N = 5;
  const auto x = make_logits<T>(N, V, static_cast<std::uint32_t>(V * 3 + (temp < 1.0f)), offset);
  std::vector<std::int64_t> ids = {0, 1 % V, V / 2, -100, V - 1};
  if (V > 3 && ids[4] % 7 == 3) ids[4] = V - 2;  // a finite target
  if (ids[0] % 7 == 3) ids[0] = 1;
  if (V > 2 && ids[2] % 7 == 3) ids[2] += 1;
  fwd_out base;
  std::vector<G> gbase;
  {
    grpo::scoped_isa_limit pin(grpo::isa::baseline);
    base = forward(x, ids, V, temp);
    gbase = backward<T, G>(x, ids, V, temp, entropy_grad);
    CHECK(base.rep.path == (std::is_same_v<T, float> ? grpo::logprob_path::block_direct
                                                     : grpo::logprob_path::block_widened));
  }
  for (grpo::isa k : vector_paths()) {
    grpo::scoped_isa_limit pin(k);
    INFO("path " << grpo::isa_name(k) << " V " << V << " T " << temp << " gh " << entropy_grad
                  << " offset " << offset);
    const auto f = forward(x, ids, V, temp);
    CHECK(f.rep.path == (k == grpo::isa::avx512 ? grpo::logprob_path::avx512
                         : k == grpo::isa::neon ? grpo::logprob_path::neon
                                                : grpo::logprob_path::avx2));
    for (index_t i = 0; i < N; ++i) {
      const auto si = static_cast<std::size_t>(i);
      if (ids[si] == -100) {
        CHECK(f.logp[si] == 0.0f);
        continue;
      }
      const auto r = lp_ref::row(widened_row(x.data() + i * V, V), temp, ids[si]);
      // Bounds: the packets' exp2_floor has relative error <= 1.9e-7 plus the rounding of its
      // argument u (<= 6e-8 |u|, |u| <= 126) against the portable exp's 2 ulp, and the sums run
      // in another order; both move lse and log p by < 1e-5 relative (the same bound as
      // test_logprob's against the double reference).
      CHECK(std::abs(f.logp[si] - r.logp) <= 1e-5 * std::max(1.0, std::abs(r.logp)));
      CHECK(std::abs(f.lse[si] - r.lse) <= 1e-5 * std::max(1.0, std::abs(r.lse)));
      CHECK(std::abs(f.ent[si] - r.entropy) <= 1e-5 * std::max(1.0, r.entropy));
      CHECK(std::abs(f.logp[si] - base.logp[si]) <= 1e-5 * std::max(1.0f, std::abs(base.logp[si])));
      CHECK(std::abs(f.ent[si] - base.ent[si]) <= 1e-5 * std::max(1.0f, base.ent[si]));
    }
    const auto g = backward<T, G>(x, ids, V, temp, entropy_grad);
    // Gradients: per row, |g - g_base| <= 1e-5 |g_base| + 1e-6 max_row |g_base| (+ one output ulp
    // for 16-bit outputs, where a 1e-6 change may cross a rounding boundary).
    int bad = 0;
    for (index_t i = 0; i < N; ++i) {
      double gmax = 0;
      for (index_t j = 0; j < V; ++j)
        gmax = std::max(gmax, std::abs(double(static_cast<float>(grpo::widen(gbase[i * V + j])))));
      for (index_t j = 0; j < V; ++j) {
        const double a = static_cast<float>(grpo::widen(g[i * V + j]));
        const double b = static_cast<float>(grpo::widen(gbase[i * V + j]));
        double tol = 1e-5 * std::abs(b) + 1e-6 * gmax + 1e-36;
        if constexpr (!std::is_same_v<G, float>) tol += lp_ref::bf16_ulp(b);
        if (!(std::abs(a - b) <= tol) && bad++ < 3) {
          INFO("row " << i << " j " << j << " got " << a << " baseline " << b);
          CHECK(std::abs(a - b) <= tol);
        }
      }
    }
    CHECK(bad == 0);
  }
}

}  // namespace

TEST_CASE("vocab engine: every path against the portable one and the double reference") {
  (void)vector_paths(true);
  for (index_t V : {1, 7, 15, 17, 33, 2048, 2049, 2063, 5003}) {
    for (float temp : {1.0f, 0.7f}) {
      compare_paths<float, float>(V, temp, false);
      compare_paths<float, float>(V, temp, true);
      compare_paths<grpo::bfloat16, float>(V, temp, true);
      compare_paths<grpo::bfloat16, grpo::bfloat16>(V, temp, false);
      compare_paths<grpo::float16, grpo::float16>(V, temp, true);
      compare_paths<grpo::float16, float>(V, temp, false);
    }
  }
}

TEST_CASE("vocab engine: rows far from zero (the sweeps' rounding of c1 mb), all-negative rows") {
  // Offsets put c1 mb at 4e3 .. 3e4, where its float rounding r (removed from the block sums and
  // from the gradient's constants) reaches 2^-10 and beyond (the exp2 branch); -2000 makes every
  // 16-bit pattern negative (the block maximum from the signed 16-bit minimum).
  for (float offset : {3000.0f, -2000.0f, 20000.0f}) {
    for (index_t V : {33, 2049, 5003}) {
      compare_paths<float, float>(V, 1.0f, true, offset);
      compare_paths<float, float>(V, 0.7f, false, offset);
      compare_paths<grpo::bfloat16, float>(V, 1.0f, true, offset);
      compare_paths<grpo::bfloat16, grpo::bfloat16>(V, 0.7f, false, offset);
      compare_paths<grpo::float16, float>(V, 1.0f, true, offset / 8.0f);  // fp16 max 65504
    }
  }
  // Logits of 3e38 at T = 1: c1 mb and the gradient's c0 overflow a float (the unshifted sweep,
  // the per-element gradient) while lse does not (at T < 1 it would: beta x > FLT_MAX).
  for (index_t V : {33, 2049}) {
    compare_paths<float, float>(V, 1.0f, true, 3e38f);
    compare_paths<float, float>(V, 1.0f, false, 3e38f);
    compare_paths<grpo::bfloat16, grpo::bfloat16>(V, 1.0f, true, 3e38f);
  }
}

TEST_CASE("vocab engine: 16-bit NaN patterns of either sign and +inf are reported on every path") {
  for (grpo::isa k : all_paths()) {
    grpo::scoped_isa_limit pin(k);
    for (std::uint16_t bad :
         {std::uint16_t(0x7fc1), std::uint16_t(0xffc1), std::uint16_t(0x7f80)}) {
      for (index_t at : {0, 17, 2047, 2100}) {
        INFO("path " << std::string(grpo::isa_name(k)) << " pattern " << bad << " at " << at);
        constexpr index_t V = 2200;
        auto x = make_logits<grpo::bfloat16>(1, V, 5, -50.0f);  // every finite pattern negative
        x[static_cast<std::size_t>(at)] = grpo::bfloat16::from_bits(bad);
        std::vector<std::int64_t> ids = {1};
        std::vector<float> lp(1);
        CHECK_THROWS_WITH_AS(
            grpo::selective_log_softmax(grpo::make_view(x.data(), {1, V}),
                                        grpo::make_view(ids.data(), {1}),
                                        grpo::make_view(lp.data(), {1})),
            doctest::Contains("contains NaN or +inf"), grpo::error);
      }
    }
  }
}

TEST_CASE("vocab row loop: the lowest failing row is reported, with 1 and 2 threads") {
  // 64 rows of 1024: above grpo::par's threshold, so num_threads = 2 runs threaded where OpenMP is
  // built in. Row 40 is entirely -inf, row 50 holds +inf, row 9 a NaN (until it is repaired).
  constexpr index_t N = 64, V = 1024;
  auto x = make_logits<float>(N, V, 3);
  for (index_t j = 0; j < V; ++j) x[static_cast<std::size_t>(40 * V + j)] = -finf;
  x[static_cast<std::size_t>(50 * V + 7)] = finf;
  x[static_cast<std::size_t>(9 * V + 100)] = std::numeric_limits<float>::quiet_NaN();
  std::vector<std::int64_t> ids(N, 2);
  std::vector<float> lp(N), gl(N, 0.5f), ge(N, 0.0f), g(x.size());
  const auto xv = grpo::make_view(static_cast<const float*>(x.data()), {N, V});
  const auto iv = grpo::make_view(ids.data(), {N});
  for (grpo::isa k : all_paths()) {
    for (int threads : {1, 2}) {
      grpo::scoped_isa_limit pin(k);
      INFO("path " << std::string(grpo::isa_name(k)) << " threads " << threads);
      grpo::logprob_options o;
      o.num_threads = threads;
      grpo::sampler_options so;
      so.num_threads = threads;
      so.top_k = 50;
      const auto fwd = [&] {
        grpo::selective_log_softmax(xv, iv, grpo::make_view(lp.data(), {N}), {}, {}, o);
      };
      const auto bwd = [&] {
        grpo::selective_log_softmax_backward(xv, iv, grpo::make_view(gl.data(), {N}),
                                             grpo::make_view(ge.data(), {N}),
                                             grpo::make_view(g.data(), {N, V}), o);
      };
      const auto smp = [&] {
        grpo::sampler_log_softmax(xv, iv, grpo::make_view(lp.data(), {N}), {}, {}, so);
      };
      const auto sbw = [&] {
        grpo::sampler_log_softmax_backward(xv, iv, grpo::make_view(gl.data(), {N}),
                                           grpo::make_view(ge.data(), {N}),
                                           grpo::make_view(g.data(), {N, V}), so);
      };
      CHECK_THROWS_WITH_AS(
          fwd(), doctest::Contains("] selective_log_softmax: logits row 9 contains NaN or +inf"),
          grpo::error);
      CHECK_THROWS_WITH_AS(
          bwd(), doctest::Contains("selective_log_softmax_backward: logits row 9 contains NaN"),
          grpo::error);
      CHECK_THROWS_WITH_AS(smp(), doctest::Contains("sampler_log_softmax: logits row 9 contains"),
                           grpo::error);
      CHECK_THROWS_WITH_AS(sbw(), doctest::Contains("backward: logits row 9 contains"),
                           grpo::error);
      x[static_cast<std::size_t>(9 * V + 100)] = 0.5f;
      CHECK_THROWS_WITH_AS(fwd(),
                           doctest::Contains("] selective_log_softmax: logits row 40 is entirely "
                                             "-inf (no token has probability mass)"),
                           grpo::error);
      CHECK_THROWS_WITH_AS(bwd(), doctest::Contains("logits row 40 is entirely -inf"),
                           grpo::error);
      CHECK_THROWS_WITH_AS(smp(), doctest::Contains("logits row 40 is entirely -inf"),
                           grpo::error);
      x[static_cast<std::size_t>(9 * V + 100)] = std::numeric_limits<float>::quiet_NaN();
    }
  }
}

TEST_CASE("vocab engine: masked entries get exactly 0 gradient on every path") {
  // (of either sign: the portable cached sweep writes c * 0 with c < 0)
  for (grpo::isa k : all_paths()) {
    grpo::scoped_isa_limit pin(k);
    INFO("path " << std::string(grpo::isa_name(k)));
    constexpr index_t V = 2063;
    const auto x = make_logits<float>(3, V, 9);
    for (bool gh : {false, true}) {
      const auto g = backward<float, float>(x, {0, 5, V - 1}, V, 0.8f, gh);
      int nonzero = 0;
      for (std::size_t j = 0; j < x.size(); ++j)
        if (x[j] == -finf) nonzero += !(g[j] == 0.0f);
      CHECK(nonzero == 0);
    }
  }
}

TEST_CASE("vocab engine: in place and streamed gradients equal the out-of-place ones") {
  for (grpo::isa k : all_paths()) {
    grpo::scoped_isa_limit pin(k);
    INFO("path " << grpo::isa_name(k));
    for (index_t V : {9, 2050, 4111}) {
      const auto x = make_logits<grpo::bfloat16>(3, V, 7);
      std::vector<std::int64_t> ids = {0, 1, V - 1};
      const auto ref = backward<grpo::bfloat16, grpo::bfloat16>(x, ids, V, 0.9f, true);
      std::vector<grpo::bfloat16> y(x);
      std::vector<float> gl = {0.75f, 0.25f, -0.25f}, ge = {-0.2f, 0.1f, 0.4f};
      grpo::logprob_options opt;
      opt.temperature = 0.9f;
      const auto yv = grpo::make_view(y.data(), {3, V});
      grpo::selective_log_softmax_backward(grpo::strided_view<const grpo::bfloat16, 2>(yv),
                                           grpo::make_view(ids.data(), {3}),
                                           grpo::make_view(gl.data(), {3}),
                                           grpo::make_view(ge.data(), {3}), yv, opt);
      int diff = 0;
      for (std::size_t j = 0; j < y.size(); ++j) diff += !(y[j] == ref[j]);
      CHECK(diff == 0);
    }
  }
}

/// Row 0's gradient from its cache written three ways into storage G at an output offset `off`
/// (elements): row_grad_cached with plain stores (the oracle), row_grad_cached streamed, and
/// during row 1's pipelined statistics sweep. Returns the elements where either differs from the
/// oracle (0: bitwise equal), and checks row 1's statistics against row_stats.
template <class G>
int pipelined_mismatches(const std::vector<grpo::bfloat16>& x, index_t V, float beta,
                         std::size_t off) {
  lp::scratch w;
  lp::row_cache c0, c1, c2;
  lp::row_status s0, s1, s2;
  const auto st0 = lp::row_stats(x.data(), 1, V, beta, w, s0, &c0);
  REQUIRE(s0 == lp::row_status::ok);
  const std::size_t n = static_cast<std::size_t>(V) + 80;
  std::vector<G> want(n), streamed(n), got(n);
  // 64-byte aligned starts plus `off`: the heads of every alignment case of the pair stores.
  const auto at = [&](std::vector<G>& v) {
    const auto q = reinterpret_cast<std::uintptr_t>(v.data());
    return v.data() + (64 - q % 64) % 64 / sizeof(G) + off;
  };
  const float xy = static_cast<float>(x[1]);
  G* const pw = at(want);
  G* const ps = at(streamed);
  G* const pg = at(got);
  lp::row_grad_cached(c0, V, beta, lp::summarise(st0), 1, xy, 0.5f, pw, 1, w);
  lp::row_grad_cached(c0, V, beta, lp::summarise(st0), 1, xy, 0.5f, ps, 1, w, true);
  lp::pending_row<G> p;
  p.cache = &c0;
  p.out = pg;
  p.rs = lp::summarise(st0);
  p.beta = beta;
  p.g_logp = 0.5f;
  p.y = 1;
  p.x_y = xy;
  const auto st1 = lp::row_stats_pipelined(x.data() + V, V, beta, s1, c1, p);
  const auto st2 = lp::row_stats(x.data() + V, 1, V, beta, w, s2, &c2);
  CHECK(s1 == s2);
  CHECK(st1.lse() == st2.lse());
  CHECK(st1.entropy() == st2.entropy());
  CHECK(c1.e == c2.e);
  // The V elements and the 8 after them (still zero: nothing written past the row).
  int diff = 0;
  for (index_t j = 0; j < V + 8; ++j) {
    diff += std::memcmp(pw + j, pg + j, sizeof(G)) != 0;
    diff += std::memcmp(pw + j, ps + j, sizeof(G)) != 0;
    diff += j >= V && std::memcmp(pw + j, &want.back(), sizeof(G)) != 0;
  }
  return diff;
}

TEST_CASE("vocab engine: the pipelined sweep equals row_stats + row_grad_cached on every path") {
  // The pipelined and the streamed gradient (pairs of packets per non-temporal store after a head
  // up to their alignment) against plain stores, bit for bit: bf16, fp16 and fp32 gradients,
  // output starts at every alignment class of the AVX2 / AVX-512 pair stores.
  for (grpo::isa k : all_paths()) {
    grpo::scoped_isa_limit pin(k);
    for (index_t V : {5, 100, 2048, 4099}) {
      const auto x = make_logits<grpo::bfloat16>(2, V, 11);
      for (float beta : {1.0f, 1.25f})
        for (std::size_t off : {0, 3, 8, 16, 24}) {
          INFO("path " << grpo::isa_name(k) << " V " << V << " beta " << beta << " offset " << off);
          CHECK(pipelined_mismatches<grpo::bfloat16>(x, V, beta, off) == 0);
          CHECK(pipelined_mismatches<grpo::float16>(x, V, beta, off) == 0);
          CHECK(pipelined_mismatches<float>(x, V, beta, off) == 0);
        }
    }
  }
}

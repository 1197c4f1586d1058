// SPDX-License-Identifier: Apache-2.0
// Tests of grpo/logprob.hpp: selective log-softmax forward/backward against a naive double
// reference (tests/logprob/reference.hpp), adversarial rows, layouts, errors, finite differences.
#include <grpo/logprob.hpp>

#include "logprob/reference.hpp"

#include <doctest/doctest.h>
#include <support/compare.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

namespace {

using grpo::index_t;
constexpr float finf = std::numeric_limits<float>::infinity();

/// A [N, V] logits matrix of storage type T with a row-major or padded layout, plus its values as
/// the library reads them (widened to double).
template <class T>
struct logits_case {
  index_t N = 0, V = 0, row_stride = 0, col_stride = 1;
  std::vector<T> data;
  std::vector<std::vector<double>> rows;  // widened values
  std::vector<std::int64_t> ids;

  grpo::strided_view<T, 2> view() {
    return grpo::make_view(data.data(), {N, V}, {row_stride, col_stride});
  }
  void set(index_t i, index_t j, double v) {
    data[static_cast<std::size_t>(i * row_stride + j * col_stride)] =
        grpo::narrow<T>(static_cast<float>(v));
    rows[i][j] = static_cast<double>(static_cast<float>(
        grpo::widen(data[static_cast<std::size_t>(i * row_stride + j * col_stride)])));
  }
};

/// Kinds of rows exercised by the adversarial tests.
enum class row_kind { normal, plus_1e4, minus_1e4, masked_blocks, dominant, below_100, ignored };

template <class T>
logits_case<T> make_case(index_t V, const std::vector<row_kind>& kinds, std::uint32_t seed,
                         index_t col_stride = 1, index_t pad = 0) {
  logits_case<T> c;
  c.N = static_cast<index_t>(kinds.size());
  c.V = V;
  c.col_stride = col_stride;
  c.row_stride = V * col_stride + pad;
  c.data.assign(static_cast<std::size_t>(c.N * c.row_stride), grpo::narrow<T>(12345.0f));
  c.rows.assign(static_cast<std::size_t>(c.N), std::vector<double>(static_cast<std::size_t>(V)));
  std::mt19937 rng(seed);
  std::normal_distribution<double> n01(0.0, 1.0);
  std::uniform_int_distribution<index_t> pick(0, V - 1);
  for (index_t i = 0; i < c.N; ++i) {
    const row_kind k = kinds[static_cast<std::size_t>(i)];
    index_t y = pick(rng);
    for (index_t j = 0; j < V; ++j) {
      double v = 3.0 * n01(rng);
      // +-20 offsets per 1024 block, as in kernels-community's adversarial test.
      v += ((j / 1024) % 2 == 0 ? 20.0 : -20.0);
      if (k == row_kind::plus_1e4) v += 1e4;
      if (k == row_kind::minus_1e4) v -= 1e4;
      if (k == row_kind::below_100) v = -100.0 - 50.0 * std::abs(n01(rng)) - 0.5;
      if (k == row_kind::dominant) v = -18.0 + n01(rng);
      if (k == row_kind::masked_blocks && ((j / 2048) % 2 == 1 || j % 7 == 3)) v = -finf;
      c.set(i, j, v);
    }
    if (k == row_kind::dominant) c.set(i, y, 40.0);  // q_y > 1 - 1e-6 for V up to ~1e8
    if (k == row_kind::masked_blocks && !(c.rows[i][y] > -finf)) c.set(i, y, 1.5);
    c.ids.push_back(k == row_kind::ignored ? -100 : y);
  }
  return c;
}

const std::vector<row_kind> all_kinds = {
    row_kind::normal,   row_kind::plus_1e4,  row_kind::minus_1e4, row_kind::masked_blocks,
    row_kind::dominant, row_kind::below_100, row_kind::ignored,   row_kind::normal};

/// The statistics-pass path a layout must take now (logprob_report::path): the packet kernels of
/// grpo::active_isa() on contiguous rows (GRPO_ISA pins it: tests/logprob/CMakeLists.txt runs
/// this binary once per path), else the portable block kernels, reading fp32 contiguous rows in
/// place and widening / gathering everything else.
template <class T>
grpo::logprob_path expected_path(index_t col_stride) {
  if (col_stride == 1 && grpo::active_isa() == grpo::isa::avx512)
    return grpo::logprob_path::avx512;
  if (col_stride == 1 && grpo::active_isa() == grpo::isa::avx2) return grpo::logprob_path::avx2;
  if (col_stride == 1 && grpo::active_isa() == grpo::isa::neon) return grpo::logprob_path::neon;
  return std::is_same_v<T, float> && col_stride == 1 ? grpo::logprob_path::block_direct
                                                     : grpo::logprob_path::block_widened;
}

template <class T>
void check_report(const grpo::logprob_report& rep, const logits_case<T>& c) {
  index_t rows = 0;
  for (auto y : c.ids) rows += y != -100;
  CHECK(rep.rows == rows);
  CHECK(rep.path == (rows == 0 ? grpo::logprob_path::none : expected_path<T>(c.col_stride)));
}

template <class T>
void check_forward(logits_case<T>& c, float temperature) {
  std::vector<float> logp(c.N), lse(c.N), ent(c.N);
  grpo::logprob_options opt;
  opt.temperature = temperature;
  auto lv = grpo::make_view(logp.data(), {c.N});
  const auto rep = grpo::selective_log_softmax(
      grpo::strided_view<const T, 2>(c.view()), grpo::make_view(c.ids.data(), {c.N}), lv,
      grpo::make_view(lse.data(), {c.N}), grpo::make_view(ent.data(), {c.N}), opt);
  check_report(rep, c);
  CHECK(rep.cached_rows == 0);  // forward: no gradient pass
  for (index_t i = 0; i < c.N; ++i) {
    if (c.ids[i] == -100) {
      CHECK(logp[i] == 0.0f);
      CHECK(lse[i] == 0.0f);
      CHECK(ent[i] == 0.0f);
      continue;
    }
    // Reference on the same (stored, widened) inputs; the float temperature as the library sees it.
    const double temp = static_cast<double>(temperature);
    const auto r = lp_ref::row(c.rows[i], temp, c.ids[i]);
    INFO("row " << i << " V " << c.V << " T " << temperature);
    // log p: 1e-5 absolute (relative beyond |log p| = 1, where fp32 cannot hold 1e-5 absolute).
    CHECK(std::abs(logp[i] - r.logp) <= 1e-5 * std::max(1.0, std::abs(r.logp)));
    // lse is stored in fp32: at |lse| = 1e4 its own ulp is 1e-3, so the bound is relative there.
    CHECK(std::abs(lse[i] - r.lse) <= 1e-5 * std::max(1.0, std::abs(r.lse)));
    CHECK(std::abs(ent[i] - r.entropy) <= 1e-5 * std::max(1.0, r.entropy));
    CHECK(logp[i] <= 0.0f);
  }
}

}  // namespace

TEST_CASE_TEMPLATE("selective_log_softmax: matches a double reference on adversarial rows" *
                       doctest::test_suite("logprob"),
                   T, float, grpo::bfloat16, grpo::float16) {
  for (index_t V : {1, 7, 2048, 2049, 5000, 9000}) {
    std::vector<row_kind> kinds = all_kinds;
    if (std::is_same_v<T, grpo::float16>) {  // fp16 cannot store 1e4 +- 3 finely, nor -150
      for (auto& k : kinds)
        if (k == row_kind::plus_1e4 || k == row_kind::minus_1e4) k = row_kind::normal;
    }
    if (V == 1)
      for (auto& k : kinds)
        if (k == row_kind::masked_blocks) k = row_kind::normal;
    auto c = make_case<T>(V, kinds, static_cast<std::uint32_t>(V));
    check_forward(c, 1.0f);
    check_forward(c, 0.7f);
  }
}

TEST_CASE("selective_log_softmax: non-contiguous rows and strided vocabulary" *
          doctest::test_suite("logprob")) {
  auto c = make_case<float>(3001, all_kinds, 11, /*col_stride=*/3, /*pad=*/17);
  check_forward(c, 1.0f);
  check_forward(c, 0.6f);
  auto b = make_case<grpo::bfloat16>(2500, all_kinds, 12, 2, 5);
  check_forward(b, 1.3f);
}

TEST_CASE("selective_log_softmax: hand-computed values and the verl all-negative bug" *
          doctest::test_suite("logprob")) {
  // Row [0, log 3] -> q = [1/4, 3/4]; logp(1) = log 0.75; lse = log 4; H = -(.25 log .25 + .75 log
  // .75).
  std::vector<float> x = {0.0f,   static_cast<float>(std::log(3.0)), -finf, -200.0f, -150.0f,
                          -149.0f};
  std::vector<std::int32_t> ids = {1, 0};
  std::vector<float> logp(2), lse(2), ent(2);
  grpo::selective_log_softmax(grpo::make_view(x.data(), {2, 3}), grpo::make_view(ids.data(), {2}),
                              grpo::make_view(logp.data(), {2}), grpo::make_view(lse.data(), {2}),
                              grpo::make_view(ent.data(), {2}));
  CHECK(logp[0] == doctest::Approx(std::log(0.75)).epsilon(1e-6));
  CHECK(lse[0] == doctest::Approx(std::log(4.0)).epsilon(1e-6));
  CHECK(ent[0] == doctest::Approx(-(0.25 * std::log(0.25) + 0.75 * std::log(0.75))).epsilon(1e-6));
  // All logits below -100: a max initialised to 0 would make exp underflow and log p positive.
  const double l2 = -149.0 + std::log(1.0 + std::exp(-1.0) + std::exp(-51.0));
  CHECK(lse[1] == doctest::Approx(l2).epsilon(1e-7));
  CHECK(logp[1] == doctest::Approx(-200.0 - l2).epsilon(1e-6));
  CHECK(logp[1] < 0.0f);
}

TEST_CASE("selective_log_softmax: temperature is the chain rule of scaled logits" *
          doctest::test_suite("logprob")) {
  auto c = make_case<float>(4000, {row_kind::normal, row_kind::dominant}, 3);
  std::vector<float> scaled(c.data.size());
  for (std::size_t k = 0; k < c.data.size(); ++k) scaled[k] = c.data[k] / 0.5f;  // exact (x2)
  std::vector<float> a(2), b(2);
  grpo::logprob_options o;
  o.temperature = 0.5f;
  grpo::selective_log_softmax(c.view(), grpo::make_view(c.ids.data(), {2}),
                              grpo::make_view(a.data(), {2}), {}, {}, o);
  grpo::selective_log_softmax(grpo::make_view(scaled.data(), {2, 4000}),
                              grpo::make_view(c.ids.data(), {2}), grpo::make_view(b.data(), {2}));
  CHECK(a[0] == doctest::Approx(b[0]).epsilon(1e-6));
  CHECK(a[1] == doctest::Approx(b[1]).epsilon(1e-6));
}

TEST_CASE("selective_log_softmax: invalid input gives grpo::error" *
          doctest::test_suite("logprob")) {
  std::vector<float> x(2 * 5, 0.5f);
  std::vector<std::int64_t> ids = {1, 2};
  std::vector<float> out(2);
  auto run = [&] {
    grpo::selective_log_softmax(grpo::make_view(x.data(), {2, 5}), grpo::make_view(ids.data(), {2}),
                                grpo::make_view(out.data(), {2}));
  };
  auto code_of = [&](auto f) {
    try {
      f();
    } catch (const grpo::error& e) {
      return static_cast<int>(e.code());
    }
    return -1;
  };
  CHECK_NOTHROW(run());
  ids[1] = 5;
  CHECK(code_of(run) == static_cast<int>(grpo::errc::out_of_range));
  ids[1] = -1;
  CHECK(code_of(run) == static_cast<int>(grpo::errc::out_of_range));
  ids[1] = 2;
  x[7] = std::numeric_limits<float>::quiet_NaN();
  CHECK(code_of(run) == static_cast<int>(grpo::errc::bad_value));
  CHECK_THROWS_WITH_AS(run(), doctest::Contains("row 1"), grpo::error);
  x[7] = finf;
  CHECK(code_of(run) == static_cast<int>(grpo::errc::bad_value));
  for (int j = 5; j < 10; ++j) x[j] = -finf;
  CHECK_THROWS_WITH_AS(run(), doctest::Contains("entirely -inf"), grpo::error);
  ids[1] = -100;  // the same row ignored: fine
  CHECK_NOTHROW(run());
  grpo::logprob_options bad;
  bad.temperature = 0.0f;
  CHECK(code_of([&] {
          grpo::selective_log_softmax(grpo::make_view(x.data(), {2, 5}),
                                      grpo::make_view(ids.data(), {2}),
                                      grpo::make_view(out.data(), {2}), {}, {}, bad);
        }) == static_cast<int>(grpo::errc::bad_option));
  CHECK(code_of([&] {
          grpo::selective_log_softmax(grpo::make_view(x.data(), {2, 5}),
                                      grpo::make_view(ids.data(), {1}),
                                      grpo::make_view(out.data(), {2}));
        }) == static_cast<int>(grpo::errc::shape_mismatch));
}

TEST_CASE("selective_log_softmax: tokens x vocab > 2^31 through a stride-0 row view" *
          doctest::test_suite("logprob")) {
  // 70000 x 32769 = 2.29e9 elements > 2^31 addressed through 64-bit index arithmetic, without
  // allocating them: every row aliases the same buffer (row stride 0). The last rows must equal the
  // first; any 32-bit overflow in row * stride or j * stride would read elsewhere and crash/differ.
  const index_t N = 70000, V = 32769;
  std::vector<float> row(static_cast<std::size_t>(V));
  std::mt19937 rng(5);
  std::normal_distribution<float> n01(0.0f, 2.0f);
  for (auto& v : row) v = n01(rng);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(N));
  for (index_t i = 0; i < N; ++i) ids[i] = (i * 7919) % V;
  std::vector<float> logp(static_cast<std::size_t>(N));
  CHECK(static_cast<double>(N) * static_cast<double>(V) > 2147483648.0);
  grpo::selective_log_softmax(grpo::make_view(row.data(), {N, V}, {0, 1}),
                              grpo::make_view(ids.data(), {N}), grpo::make_view(logp.data(), {N}));
  std::vector<double> xd(row.begin(), row.end());
  const auto r = lp_ref::row(xd, 1.0, 0);
  for (index_t i : {index_t(0), index_t(1), N / 2, N - 2, N - 1}) {
    const double want = r.logq[static_cast<std::size_t>(ids[i])];
    CHECK(std::abs(logp[i] - want) <= 1e-5 * std::max(1.0, std::abs(want)));
  }
}

// ------------------------------------------------------------------------------------------------
// Backward

namespace {

template <class T, class G>
void check_backward(logits_case<T>& c, float temperature, bool with_entropy) {
  std::vector<float> glp(c.N), gh(c.N);
  std::mt19937 rng(17);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  for (index_t i = 0; i < c.N; ++i) {
    glp[i] = n01(rng);
    gh[i] = with_entropy ? n01(rng) : 0.0f;
  }
  std::vector<G> grad(static_cast<std::size_t>(c.N * c.V));
  grpo::logprob_options opt;
  opt.temperature = temperature;
  const auto rep = grpo::selective_log_softmax_backward(
      c.view(), grpo::make_view(c.ids.data(), {c.N}), grpo::make_view(glp.data(), {c.N}),
      with_entropy ? grpo::make_view(gh.data(), {c.N}) : grpo::strided_view<float, 1>{},
      grpo::make_view(grad.data(), {c.N, c.V}), opt);
  check_report(rep, c);
  // Without an entropy gradient every computed row reuses the statistics pass's exponentials
  // (row_grad_cached); with a non-zero one (n01 draws are never exactly 0) none does.
  CHECK(rep.cached_rows == (with_entropy ? 0 : rep.rows));
  for (index_t i = 0; i < c.N; ++i) {
    INFO("row " << i << " V " << c.V << " T " << temperature);
    if (c.ids[i] == -100) {
      bool all_zero = true;
      for (index_t j = 0; j < c.V; ++j)
        all_zero &= (static_cast<float>(grpo::widen(grad[i * c.V + j])) == 0.0f);
      CHECK(all_zero);
      continue;
    }
    const auto r = lp_ref::row_grad(c.rows[i], temperature, c.ids[i], glp[i], gh[i]);
    double gmax = 0;
    for (double v : r) gmax = grpo_test::scale_max(gmax, std::abs(v));
    int bad = 0;
    for (index_t j = 0; j < c.V; ++j) {
      const double got = static_cast<float>(grpo::widen(grad[i * c.V + j]));
      const double want = r[static_cast<std::size_t>(j)];
      bool ok;
      if constexpr (std::is_same_v<G, float>) {
        // rtol 1e-5; atol for entries ~1e-7 of the row's largest (q * (log q + H) cancels there),
        // and for probabilities below float's normal range (2^-126).
        ok = std::abs(got - want) <= 1e-5 * std::abs(want) + 1e-7 * gmax + 1e-36;
      } else {
        // Within one ulp of the reference rounded to the output type.
        const double rounded =
            static_cast<float>(grpo::widen(grpo::narrow<G>(static_cast<float>(want))));
        ok = std::abs(got - rounded) <=
             lp_ref::bf16_ulp(want) * (std::is_same_v<G, grpo::bfloat16> ? 1.0 : 1.0 / 8.0) +
                 1e-7 * gmax + 1e-36;
      }
      if (!ok && bad++ < 3) {
        INFO("j " << j << " got " << got << " want " << want << " x " << c.rows[i][j] << " y "
                  << c.ids[i] << " xy " << c.rows[i][c.ids[i]] << " glp " << glp[i]);
        CHECK(ok);
      }
    }
    CHECK(bad == 0);
  }
}

}  // namespace

TEST_CASE_TEMPLATE("selective_log_softmax_backward: fp32 gradient within rtol 1e-5 of double" *
                       doctest::test_suite("logprob"),
                   T, float, grpo::bfloat16, grpo::float16) {
  for (index_t V : {7, 2049, 6000}) {
    std::vector<row_kind> kinds = all_kinds;
    if (std::is_same_v<T, grpo::float16>)
      for (auto& k : kinds)
        if (k == row_kind::plus_1e4 || k == row_kind::minus_1e4) k = row_kind::normal;
    auto c = make_case<T>(V, kinds, static_cast<std::uint32_t>(V + 1));
    check_backward<T, float>(c, 1.0f, false);
    check_backward<T, float>(c, 0.7f, true);
  }
}

TEST_CASE("selective_log_softmax_backward: bf16 and fp16 gradients within one ulp" *
          doctest::test_suite("logprob")) {
  auto c = make_case<grpo::bfloat16>(3000, all_kinds, 99);
  check_backward<grpo::bfloat16, grpo::bfloat16>(c, 1.0f, true);
  check_backward<grpo::bfloat16, grpo::bfloat16>(c, 0.8f, false);
  auto h =
      make_case<grpo::float16>(3000, {row_kind::normal, row_kind::dominant, row_kind::ignored}, 98);
  check_backward<grpo::float16, grpo::float16>(h, 1.0f, true);
}

TEST_CASE("selective_log_softmax_backward: in place over the logits equals out of place" *
          doctest::test_suite("logprob")) {
  auto c = make_case<float>(4100, all_kinds, 21, 1, /*pad=*/3);
  std::vector<float> glp(c.N, 0.5f), gh(c.N, -0.25f);
  std::vector<float> out(c.data.size(), 0.0f);
  auto ids = grpo::make_view(c.ids.data(), {c.N});
  auto gl = grpo::make_view(glp.data(), {c.N});
  auto ge = grpo::make_view(gh.data(), {c.N});
  auto out_v = grpo::make_view(out.data(), {c.N, c.V}, {c.row_stride, 1});
  grpo::selective_log_softmax_backward(c.view(), ids, gl, ge, out_v);
  grpo::selective_log_softmax_backward(c.view(), ids, gl, ge, c.view());  // in place
  bool same = true;
  for (index_t i = 0; i < c.N; ++i)
    for (index_t j = 0; j < c.V; ++j) same &= out_v(i, j) == c.view()(i, j);
  CHECK(same);
  CHECK(c.data[static_cast<std::size_t>(c.V)] == 12345.0f);  // padding untouched
  // Without an entropy term the statistics pass's cached exps are used; in place as well.
  auto d = make_case<grpo::bfloat16>(4100, all_kinds, 22);
  std::vector<grpo::bfloat16> out2(d.data.size());
  const grpo::strided_view<float, 1> none{};
  grpo::selective_log_softmax_backward(d.view(), grpo::make_view(d.ids.data(), {d.N}), gl, none,
                                       grpo::make_view(out2.data(), {d.N, d.V}));
  grpo::selective_log_softmax_backward(d.view(), grpo::make_view(d.ids.data(), {d.N}), gl, none,
                                       d.view());
  CHECK(out2 == d.data);
  // The same buffer with other strides is refused.
  CHECK_THROWS_WITH_AS(grpo::selective_log_softmax_backward(
                      c.view(), ids, gl, ge, grpo::make_view(c.data.data(), {c.N, c.V}, {c.V, 1})),
                  doctest::Contains("[grpo.bad_option]"), grpo::error);
}

TEST_CASE("selective_log_softmax_backward: central finite differences of logp and entropy" *
          doctest::test_suite("logprob")) {
  // L(x) = sum_i a_i logp_i + b_i H_i evaluated by the library's forward in float, differentiated
  // numerically with h = 1e-2 (fp32 forward noise ~1e-7 / h) and compared with the analytic
  // gradient.
  auto c = make_case<float>(37, {row_kind::normal, row_kind::dominant, row_kind::normal}, 4);
  for (auto& v : c.data) v *= 0.1f;  // moderate logits so that FD curvature error is small
  const std::vector<float> a = {0.7f, -1.3f, 0.4f}, b = {0.3f, 0.9f, -0.6f};
  for (float T : {1.0f, 0.7f}) {
    grpo::logprob_options o;
    o.temperature = T;
    auto L = [&](const std::vector<float>& x) {
      std::vector<float> lp(3), h(3);
      grpo::selective_log_softmax(
          grpo::make_view(x.data(), {3, 37}), grpo::make_view(c.ids.data(), {3}),
          grpo::make_view(lp.data(), {3}), {}, grpo::make_view(h.data(), {3}), o);
      double s = 0;
      for (int i = 0; i < 3; ++i) s += a[i] * lp[i] + b[i] * h[i];
      return s;
    };
    std::vector<float> g(c.data.size());
    grpo::selective_log_softmax_backward(
        grpo::make_view(c.data.data(), {3, 37}), grpo::make_view(c.ids.data(), {3}),
        grpo::make_view(a.data(), {3}), grpo::make_view(b.data(), {3}),
        grpo::make_view(g.data(), {3, 37}), o);
    for (std::size_t k = 0; k < c.data.size(); ++k) {
      auto xp = c.data, xm = c.data;
      const float h = 1e-2f;
      xp[k] += h;
      xm[k] -= h;
      const double fd = (L(xp) - L(xm)) / static_cast<double>(xp[k] - xm[k]);
      INFO("k " << k << " T " << T);
      CHECK(std::abs(fd - g[k]) <= 2e-4 + 1e-3 * std::abs(g[k]));
    }
  }
}

TEST_CASE("selective_log_softmax: thread count does not change results" *
          doctest::test_suite("logprob")) {
  auto c = make_case<grpo::bfloat16>(3000, all_kinds, 8);
  std::vector<float> l1(c.N), l2(c.N);
  grpo::logprob_options o1, o2;
  o1.num_threads = 1;
  o2.num_threads = 2;
  auto ids = grpo::make_view(c.ids.data(), {c.N});
  grpo::selective_log_softmax(c.view(), ids, grpo::make_view(l1.data(), {c.N}), {}, {}, o1);
  grpo::selective_log_softmax(c.view(), ids, grpo::make_view(l2.data(), {c.N}), {}, {}, o2);
  CHECK(l1 == l2);
}

TEST_CASE("logprob_report: no rows, and cached rows counted row by row" *
          doctest::test_suite("logprob")) {
  // Every id ignored: nothing computed, path none.
  auto c = make_case<float>(50, {row_kind::ignored, row_kind::ignored}, 5);
  std::vector<float> logp(2);
  const auto f = grpo::selective_log_softmax(c.view(), grpo::make_view(c.ids.data(), {2}),
                                             grpo::make_view(logp.data(), {2}));
  CHECK(f.rows == 0);
  CHECK(f.path == grpo::logprob_path::none);
  // Four computed rows, one ignored; entropy gradients 0, 0.5, 0, -1: rows 0 and 2 take the
  // cached gradient (g_entropy = 0), rows 1 and 3 recompute; the ignored row counts in neither.
  auto d = make_case<grpo::bfloat16>(3000,
                                     {row_kind::normal, row_kind::dominant, row_kind::normal,
                                      row_kind::plus_1e4, row_kind::ignored},
                                     6, /*col_stride=*/2);
  std::vector<float> gl = {1.0f, -0.5f, 0.25f, 2.0f, 1.0f}, ge = {0.0f, 0.5f, 0.0f, -1.0f, 3.0f};
  std::vector<float> grad(static_cast<std::size_t>(5 * 3000));
  const auto b = grpo::selective_log_softmax_backward(
      d.view(), grpo::make_view(d.ids.data(), {5}), grpo::make_view(gl.data(), {5}),
      grpo::make_view(ge.data(), {5}), grpo::make_view(grad.data(), {5, 3000}));
  CHECK(b.rows == 4);
  CHECK(b.cached_rows == 2);
  CHECK(b.path == grpo::logprob_path::block_widened);  // bf16 with vocabulary stride 2
}

// SPDX-License-Identifier: Apache-2.0
// GPU tests of grpo::cuda::selective_log_softmax (+ backward) against a naive double-precision
// reference on the same inputs. Label "gpu": CPU-only CI compiles and links this file only.
#include <grpo/cuda/logprob.cuh>

#include <doctest/doctest.h>
#include <support/compare.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

namespace {

template <class T>
struct device_buffer {
  T* p = nullptr;
  std::size_t n = 0;
  explicit device_buffer(std::size_t count) : n(count) {
    grpo::cuda::throw_on_error(cudaMalloc(&p, sizeof(T) * (count ? count : 1)), "cudaMalloc");
  }
  device_buffer(const device_buffer&) = delete;
  ~device_buffer() { cudaFree(p); }
  void upload(const std::vector<T>& h) {
    grpo::cuda::throw_on_error(
        cudaMemcpy(p, h.data(), sizeof(T) * h.size(), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> h(n);
    grpo::cuda::throw_on_error(cudaMemcpy(h.data(), p, sizeof(T) * n, cudaMemcpyDeviceToHost));
    return h;
  }
};

struct ref_row {
  double logp, lse, entropy;
  std::vector<double> grad;  // of g_logp * logp + g_ent * H
};

// Naive double-precision reference: two passes, explicit softmax.
ref_row reference(const std::vector<float>& x, std::int64_t y, double T, double g_logp,
                  double g_ent) {
  const std::size_t V = x.size();
  double m = -std::numeric_limits<double>::infinity();
  for (float v : x) m = std::max(m, static_cast<double>(v) / T);
  double s = 0;
  for (float v : x) s += std::exp(v / T - m);
  const double lse = m + std::log(s);
  double H = 0;
  std::vector<double> q(V), lq(V);
  for (std::size_t j = 0; j < V; ++j) {
    lq[j] = x[j] / T - lse;
    q[j] = std::exp(lq[j]);
    if (q[j] > 0) H -= q[j] * lq[j];
  }
  ref_row r{lq[y], lse, H, std::vector<double>(V)};
  for (std::size_t j = 0; j < V; ++j) {
    const double dlogp = (j == static_cast<std::size_t>(y) ? 1.0 : 0.0) - q[j];
    const double dH = q[j] > 0 ? -q[j] * (lq[j] + H) : 0.0;
    r.grad[j] = (g_logp * dlogp + g_ent * dH) / T;
  }
  return r;
}

template <class T>
void run_case(std::int64_t N, std::int64_t V, float temperature, std::uint32_t seed, float offset) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<T> h(static_cast<std::size_t>(N * V));
  std::vector<std::int64_t> ids(N);
  std::vector<float> glogp(N), gent(N);
  for (auto& v : h) v = grpo::narrow<T>(nd(rng) + offset);
  for (std::int64_t i = 0; i < N; ++i) {
    ids[i] = static_cast<std::int64_t>(rng() % V);
    glogp[i] = nd(rng);
    gent[i] = nd(rng);
  }
  if (N > 1) ids[1] = -100;  // ignored row
  device_buffer<T> d_logits(h.size());
  device_buffer<std::int64_t> d_ids(N);
  device_buffer<float> d_logp(N), d_lse(N), d_ent(N), d_gl(N), d_ge(N), d_grad(h.size());
  d_logits.upload(h);
  d_ids.upload(ids);
  d_gl.upload(glogp);
  d_ge.upload(gent);
  auto L = grpo::make_view(static_cast<const T*>(d_logits.p), {N, V});
  auto I = grpo::make_view(static_cast<const std::int64_t*>(d_ids.p), {N});
  std::size_t ws_bytes = 0;
  REQUIRE(grpo::cuda::selective_log_softmax<T, std::int64_t>(L, I, {}, {}, {}, temperature, -100,
                                                             nullptr, ws_bytes) == cudaSuccess);
  device_buffer<unsigned char> ws(ws_bytes);
  REQUIRE(grpo::cuda::selective_log_softmax<T, std::int64_t>(
              L, I, grpo::make_view(d_logp.p, {N}), grpo::make_view(d_lse.p, {N}),
              grpo::make_view(d_ent.p, {N}), temperature, -100, ws.p, ws_bytes) == cudaSuccess);
  grpo::cuda::read_status(reinterpret_cast<unsigned int*>(ws.p));
  REQUIRE(grpo::cuda::selective_log_softmax_backward<T, std::int64_t, float>(
              L, I, grpo::make_view(static_cast<const float*>(d_gl.p), {N}),
              grpo::make_view(static_cast<const float*>(d_ge.p), {N}),
              grpo::make_view(d_grad.p, {N, V}), temperature, -100, ws.p, ws_bytes) == cudaSuccess);
  grpo::cuda::read_status(reinterpret_cast<unsigned int*>(ws.p));
  const auto logp = d_logp.download(), lse = d_lse.download(), ent = d_ent.download();
  const auto grad = d_grad.download();
  for (std::int64_t i = 0; i < N; ++i) {
    if (ids[i] == -100) {
      CHECK(logp[i] == 0.0f);
      for (std::int64_t j = 0; j < V; ++j) CHECK(grad[i * V + j] == 0.0f);
      continue;
    }
    std::vector<float> row(V);
    for (std::int64_t j = 0; j < V; ++j) row[j] = static_cast<float>(grpo::widen(h[i * V + j]));
    const auto r = reference(row, ids[i], temperature, glogp[i], gent[i]);
    CHECK(std::abs(logp[i] - r.logp) <= 1e-5 * std::max(1.0, std::abs(r.logp)) + 1e-5);
    CHECK(std::abs(lse[i] - r.lse) <= 1e-5 * std::max(1.0, std::abs(r.lse)));
    CHECK(std::abs(ent[i] - r.entropy) <= 1e-5 * std::max(1.0, r.entropy));
    double max_err = 0, max_ref = 0;
    for (std::int64_t j = 0; j < V; ++j) {
      max_err = grpo_test::err_max(max_err, std::abs(grad[i * V + j] - r.grad[j]));
      max_ref = grpo_test::scale_max(max_ref, std::abs(r.grad[j]));
    }
    CHECK(max_err <= 1e-5 * std::max(1.0, max_ref));
  }
}

}  // namespace

TEST_CASE("cuda selective_log_softmax: matches the double reference (fp32, bf16, fp16)" *
          doctest::test_suite("cuda")) {
  run_case<float>(33, 1000, 1.0f, 1, 0.0f);
  run_case<float>(17, 32771, 0.7f, 2, 0.0f);    // odd vocab: vector head and tail paths
  run_case<float>(5, 70001, 1.0f, 3, -1.0e4f);  // large negative offset, looped backward
  run_case<grpo::bfloat16>(9, 4099, 1.3f, 4, 0.0f);
  run_case<grpo::float16>(9, 4099, 1.0f, 5, 0.0f);
}

TEST_CASE("cuda selective_log_softmax: more than 65,536 rows (no grid limit)" *
          doctest::test_suite("cuda")) {
  run_case<float>(70000, 8, 1.0f, 6, 0.0f);
}

TEST_CASE("cuda selective_log_softmax: out-of-range ids and NaN rows set the status word" *
          doctest::test_suite("cuda")) {
  const std::int64_t N = 2, V = 16;
  std::vector<float> h(N * V, 0.5f);
  h[V + 3] = std::numeric_limits<float>::quiet_NaN();
  std::vector<std::int64_t> ids{V, 0};  // row 0: id == V (out of range); row 1: NaN logit
  device_buffer<float> d_logits(h.size()), d_logp(N);
  device_buffer<std::int64_t> d_ids(N);
  d_logits.upload(h);
  d_ids.upload(ids);
  std::size_t ws_bytes = 0;
  auto L = grpo::make_view(static_cast<const float*>(d_logits.p), {N, V});
  auto I = grpo::make_view(static_cast<const std::int64_t*>(d_ids.p), {N});
  REQUIRE(grpo::cuda::selective_log_softmax<float, std::int64_t>(L, I, {}, {}, {}, 1.0f, -100,
                                                                 nullptr, ws_bytes) == cudaSuccess);
  device_buffer<unsigned char> ws(ws_bytes);
  REQUIRE(grpo::cuda::selective_log_softmax<float, std::int64_t>(
              L, I, grpo::make_view(d_logp.p, {N}), {}, {}, 1.0f, -100, ws.p, ws_bytes) ==
          cudaSuccess);
  CHECK_THROWS_AS(grpo::cuda::read_status(reinterpret_cast<unsigned int*>(ws.p)), grpo::error);
}

namespace {

// |a - e| within one ulp (of dtype G) of the reference rounded to G, plus 1e-5 of the row scale
// (fp32: rtol 1e-5 of the scale only).
template <class G>
bool within_one_ulp(double a, double e, double scale) {
  if constexpr (std::is_same_v<G, float>) {
    return std::abs(a - e) <= 1e-5 * std::max(1e-30, scale);
  } else {
    const G r = grpo::narrow<G>(static_cast<float>(e));
    G up = r;
    up.bits = static_cast<decltype(up.bits)>(up.bits + 1);  // sign-magnitude: next magnitude
    const double ulp = std::abs(static_cast<double>(grpo::widen(up)) - grpo::widen(r));
    return std::abs(a - grpo::widen(r)) <= ulp + 1e-5 * scale;
  }
}

// Device run of forward + backward on given host rows; checks every non-ignored row against the
// double reference. G is the gradient dtype: fp32 rtol 1e-5 of the row scale; 16-bit outputs
// within one ulp of the reference (2^-8 relative for bf16, 2^-11 for fp16) plus 1e-5 of the scale.
template <class T, class G>
void check_rows(const std::vector<T>& h, const std::vector<std::int64_t>& ids, std::int64_t N,
                std::int64_t V, float temperature, const std::vector<float>& glogp,
                const std::vector<float>& gent) {
  device_buffer<T> d_logits(h.size());
  device_buffer<std::int64_t> d_ids(N);
  device_buffer<float> d_logp(N), d_lse(N), d_ent(N), d_gl(N), d_ge(N);
  device_buffer<G> d_grad(h.size());
  d_logits.upload(h);
  d_ids.upload(ids);
  d_gl.upload(glogp);
  d_ge.upload(gent);
  auto L = grpo::make_view(static_cast<const T*>(d_logits.p), {N, V});
  auto I = grpo::make_view(static_cast<const std::int64_t*>(d_ids.p), {N});
  std::size_t ws_bytes = 0;
  REQUIRE(grpo::cuda::selective_log_softmax<T, std::int64_t>(L, I, {}, {}, {}, temperature, -100,
                                                             nullptr, ws_bytes) == cudaSuccess);
  device_buffer<unsigned char> ws(ws_bytes);
  REQUIRE(grpo::cuda::selective_log_softmax<T, std::int64_t>(
              L, I, grpo::make_view(d_logp.p, {N}), grpo::make_view(d_lse.p, {N}),
              grpo::make_view(d_ent.p, {N}), temperature, -100, ws.p, ws_bytes) == cudaSuccess);
  grpo::cuda::read_status(reinterpret_cast<unsigned int*>(ws.p));
  REQUIRE(grpo::cuda::selective_log_softmax_backward<T, std::int64_t, G>(
              L, I, grpo::make_view(static_cast<const float*>(d_gl.p), {N}),
              grpo::make_view(static_cast<const float*>(d_ge.p), {N}),
              grpo::make_view(d_grad.p, {N, V}), temperature, -100, ws.p, ws_bytes) == cudaSuccess);
  grpo::cuda::read_status(reinterpret_cast<unsigned int*>(ws.p));
  const auto logp = d_logp.download(), lse = d_lse.download(), ent = d_ent.download();
  const auto grad = d_grad.download();
  for (std::int64_t i = 0; i < N; ++i) {
    if (ids[i] == -100) continue;
    std::vector<float> row(V);
    for (std::int64_t j = 0; j < V; ++j) row[j] = static_cast<float>(grpo::widen(h[i * V + j]));
    const auto r = reference(row, ids[i], temperature, glogp[i], gent[i]);
    INFO("row " << i);
    CHECK(std::abs(logp[i] - r.logp) <= 1e-5 * std::max(1.0, std::abs(r.logp)) + 1e-5);
    CHECK(std::abs(lse[i] - r.lse) <= 1e-5 * std::max(1.0, std::abs(r.lse)));
    CHECK(std::abs(ent[i] - r.entropy) <= 1e-5 * std::max(1.0, r.entropy));
    double scale = 0;
    for (std::int64_t j = 0; j < V; ++j) scale = grpo_test::scale_max(scale, std::abs(r.grad[j]));
    int bad = 0;
    for (std::int64_t j = 0; j < V; ++j) {
      const double a = static_cast<double>(grpo::widen(grad[i * V + j]));
      if (!within_one_ulp<G>(a, r.grad[j], scale)) ++bad;
    }
    CHECK(bad == 0);
  }
}

// Deterministic device fill (hash -> roughly N(0, 2)) for tensors too large to build on the host.
template <class T>
__global__ void fill_hash(T* x, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    unsigned h = static_cast<unsigned>(i) * 2654435761u ^ static_cast<unsigned>(i >> 29);
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    x[i] = grpo::narrow<T>((static_cast<float>(h & 0xffff) / 65536.0f - 0.5f) * 8.0f);
  }
}

}  // namespace

TEST_CASE("cuda selective_log_softmax: adversarial rows (offsets, -inf blocks, < -100, q_y ~ 1)" *
          doctest::test_suite("cuda")) {
  const std::int64_t N = 5, V = 4099;
  std::mt19937 rng(17);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> h(static_cast<std::size_t>(N * V));
  for (auto& v : h) v = nd(rng);
  std::vector<std::int64_t> ids{5, 3000, 7, 11, 4098};
  for (std::int64_t j = 0; j < V; ++j) h[j] += ((j / 1024) % 2 ? 20.0f : -20.0f);  // +-20 blocks
  for (std::int64_t j = 0; j < 2048; ++j) h[V + j] = -INFINITY;  // masked vocabulary block
  for (std::int64_t j = 0; j < V; ++j) h[2 * V + j] -= 150.0f;   // all below -100 (verl bug)
  h[3 * V + 11] = 30.0f;                                         // q_y > 1 - 1e-6
  h[4 * V + 4098] = 3.0f;                                        // target in the partial tail
  const std::vector<float> gl{1.0f, -0.5f, 2.0f, -1.0f, 0.25f}, ge{0.1f, 0.2f, -0.3f, 0.5f, 0.0f};
  check_rows<float, float>(h, ids, N, V, 1.0f, gl, ge);
  check_rows<float, float>(h, ids, N, V, 0.7f, gl, ge);
  std::vector<grpo::bfloat16> hb(h.size());
  for (std::size_t k = 0; k < h.size(); ++k) hb[k] = grpo::narrow<grpo::bfloat16>(h[k]);
  check_rows<grpo::bfloat16, grpo::bfloat16>(hb, ids, N, V, 1.0f, gl, ge);
  check_rows<grpo::bfloat16, float>(hb, ids, N, V, 1.0f, gl, ge);
}

TEST_CASE("cuda selective_log_softmax: tokens x vocab > 2^31 (64-bit indexing), in-place bf16" *
          doctest::test_suite("cuda")) {
  const std::int64_t N = 16385, V = 131072;  // N V = 2,147,614,720 > 2^31
  const auto NV = static_cast<std::size_t>(N * V);
  device_buffer<grpo::bfloat16> d_x(NV);
  fill_hash<<<4096, 256>>>(d_x.p, NV);
  grpo::cuda::throw_on_error(cudaDeviceSynchronize(), "fill");
  std::vector<std::int64_t> ids(static_cast<std::size_t>(N));
  for (std::int64_t i = 0; i < N; ++i) ids[i] = (i * 7919) % V;
  std::vector<float> gl(static_cast<std::size_t>(N), 1.0f), ge(static_cast<std::size_t>(N), 0.5f);
  device_buffer<std::int64_t> d_ids(ids.size());
  device_buffer<float> d_lp(ids.size()), d_gl(gl.size()), d_ge(ge.size());
  d_ids.upload(ids);
  d_gl.upload(gl);
  d_ge.upload(ge);
  // Rows checked against the reference: the first and the last two (offsets beyond 2^31).
  const std::int64_t rows[3] = {0, N - 2, N - 1};
  std::vector<std::vector<grpo::bfloat16>> keep;
  for (std::int64_t r : rows) {
    std::vector<grpo::bfloat16> row(static_cast<std::size_t>(V));
    grpo::cuda::throw_on_error(
        cudaMemcpy(row.data(), d_x.p + r * V, V * sizeof(grpo::bfloat16), cudaMemcpyDeviceToHost));
    keep.push_back(std::move(row));
  }
  const auto L = grpo::make_view(static_cast<const grpo::bfloat16*>(d_x.p), {N, V});
  const auto I = grpo::make_view(static_cast<const std::int64_t*>(d_ids.p), {N});
  std::size_t wsb = 0;
  REQUIRE(grpo::cuda::selective_log_softmax(L, I, {}, {}, {}, 1.0f, -100, nullptr, wsb) ==
          cudaSuccess);
  device_buffer<unsigned char> ws(wsb);
  REQUIRE(grpo::cuda::selective_log_softmax(L, I, grpo::make_view(d_lp.p, {N}), {}, {}, 1.0f, -100,
                                            ws.p, wsb) == cudaSuccess);
  grpo::cuda::read_status(reinterpret_cast<unsigned int*>(ws.p));
  REQUIRE(grpo::cuda::selective_log_softmax_backward(
              L, I, grpo::make_view(static_cast<const float*>(d_gl.p), {N}),
              grpo::make_view(static_cast<const float*>(d_ge.p), {N}),
              grpo::make_view(d_x.p, {N, V}), 1.0f, -100, ws.p, wsb) == cudaSuccess);
  grpo::cuda::read_status(reinterpret_cast<unsigned int*>(ws.p));
  const auto lp = d_lp.download();
  for (int k = 0; k < 3; ++k) {
    const std::int64_t r = rows[k];
    std::vector<float> row(static_cast<std::size_t>(V));
    for (std::int64_t j = 0; j < V; ++j) row[j] = static_cast<float>(grpo::widen(keep[k][j]));
    const auto ref = reference(row, ids[r], 1.0, 1.0, 0.5);
    CHECK(std::abs(lp[r] - ref.logp) <= 1e-5 * std::max(1.0, std::abs(ref.logp)));
    std::vector<grpo::bfloat16> g(static_cast<std::size_t>(V));
    grpo::cuda::throw_on_error(
        cudaMemcpy(g.data(), d_x.p + r * V, V * sizeof(grpo::bfloat16), cudaMemcpyDeviceToHost));
    double scale = 0;
    for (std::int64_t j = 0; j < V; ++j) scale = grpo_test::scale_max(scale, std::abs(ref.grad[j]));
    int bad = 0;
    for (std::int64_t j = 0; j < V; ++j) {
      if (!within_one_ulp<grpo::bfloat16>(grpo::widen(g[j]), ref.grad[j], scale)) ++bad;
    }
    CHECK(bad == 0);
  }
}

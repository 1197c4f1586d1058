// SPDX-License-Identifier: Apache-2.0
// GPU tests of grpo::cuda::group_advantages against grpo::compute_advantages on the same rewards
// (fixed groups and CSR offsets of variable sizes). Label "gpu".
#include <grpo/advantage.hpp>
#include <grpo/cuda/advantage.cuh>

#include "cuda_test_support.cuh"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <vector>

namespace {

using grpo::index_t;
using grpo_test::device_buffer;

std::vector<double> run_device(const grpo::advantage_options& ao, const std::vector<double>& r,
                               index_t k, const std::vector<index_t>* offsets) {
  grpo::cuda::group_advantage_params p;
  REQUIRE(grpo::cuda::make_group_advantage_params(ao, p));
  const auto B = static_cast<index_t>(r.size());
  device_buffer<double> d_r(r), d_out(r.size());
  device_buffer<index_t> d_off(offsets ? offsets->size() : 1);
  if (offsets) d_off.upload(*offsets);
  std::size_t ws_bytes = 0;
  const auto rv = grpo::make_view(static_cast<const double*>(d_r.p), {B});
  const auto ov = grpo::make_view(d_out.p, {B});
  const index_t G = offsets ? static_cast<index_t>(offsets->size()) - 1 : 0;
  REQUIRE(grpo::cuda::group_advantages(p, rv, k, offsets ? d_off.p : nullptr, G, ov, nullptr,
                                       ws_bytes) == cudaSuccess);
  device_buffer<unsigned char> ws(ws_bytes);
  REQUIRE(grpo::cuda::group_advantages(p, rv, k, offsets ? d_off.p : nullptr, G, ov, ws.p,
                                       ws_bytes) == cudaSuccess);
  grpo::cuda::read_status(reinterpret_cast<unsigned int*>(ws.p));
  return d_out.download();
}

}  // namespace

TEST_CASE("cuda group_advantages: fixed groups match compute_advantages" *
          doctest::test_suite("cuda")) {
  std::mt19937 rng(7);
  std::normal_distribution<double> nd(0.0, 1.0);
  const index_t k = 16, B = 16 * 1000;
  std::vector<double> r(static_cast<std::size_t>(B));
  for (auto& x : r) x = (rng() % 4 == 0) ? 1.0 : nd(rng);
  for (index_t i = 0; i < k; ++i) r[static_cast<std::size_t>(i)] = 0.25;  // zero variance
  r[static_cast<std::size_t>(k + 3)] = std::numeric_limits<double>::quiet_NaN();
  for (const auto& ao : {grpo::advantage_options::trl(), grpo::advantage_options::verl_grpo(),
                         grpo::advantage_options::verl_rloo(),
                         grpo::advantage_options::trl(grpo::trl_scale::none)}) {
    std::vector<double> ref(r.size());
    grpo::compute_advantages(std::span<const double>(r), grpo::group_spec::fixed(k),
                             std::span<double>(ref), ao);
    const auto got = run_device(ao, r, k, nullptr);
    int bad = 0;
    for (std::size_t i = 0; i < r.size(); ++i)
      bad += std::abs(got[i] - ref[i]) <= 1e-12 * (1.0 + std::abs(ref[i])) ? 0 : 1;
    CHECK(bad == 0);
  }
}

TEST_CASE("cuda group_advantages: CSR groups of variable size (incl. singletons)" *
          doctest::test_suite("cuda")) {
  std::mt19937 rng(9);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<index_t> off{0};
  std::vector<std::int64_t> ids;
  std::vector<double> r;
  for (index_t g = 0; g < 500; ++g) {
    const index_t n = 1 + static_cast<index_t>(rng() % 9);
    for (index_t i = 0; i < n; ++i) {
      r.push_back(nd(rng));
      ids.push_back(g);
    }
    off.push_back(static_cast<index_t>(r.size()));
  }
  const auto ao = grpo::advantage_options::verl_grpo();
  std::vector<double> ref(r.size());
  grpo::compute_advantages(std::span<const double>(r),
                           grpo::group_spec::ids(std::span<const std::int64_t>(ids)),
                           std::span<double>(ref), ao);
  const auto got = run_device(ao, r, 0, &off);
  int bad = 0;
  for (std::size_t i = 0; i < r.size(); ++i)
    bad += std::abs(got[i] - ref[i]) <= 1e-12 * (1.0 + std::abs(ref[i])) ? 0 : 1;
  CHECK(bad == 0);
}

TEST_CASE("cuda group_advantages: infinite rewards set the status word" *
          doctest::test_suite("cuda")) {
  std::vector<double> r{1.0, std::numeric_limits<double>::infinity(), 0.0, 2.0};
  grpo::cuda::group_advantage_params p;
  REQUIRE(grpo::cuda::make_group_advantage_params(grpo::advantage_options::trl(), p));
  device_buffer<double> d_r(r), d_out(r.size());
  std::size_t ws_bytes = 0;
  const auto rv = grpo::make_view(static_cast<const double*>(d_r.p), {4});
  const auto ov = grpo::make_view(d_out.p, {4});
  REQUIRE(grpo::cuda::group_advantages(p, rv, 2, nullptr, 0, ov, nullptr, ws_bytes) == cudaSuccess);
  device_buffer<unsigned char> ws(ws_bytes);
  REQUIRE(grpo::cuda::group_advantages(p, rv, 2, nullptr, 0, ov, ws.p, ws_bytes) == cudaSuccess);
  CHECK_THROWS_AS(grpo::cuda::read_status(reinterpret_cast<unsigned int*>(ws.p)), grpo::error);
  CHECK(grpo::cuda::group_advantages(p, rv, 3, nullptr, 0, ov, ws.p, ws_bytes) ==
        cudaErrorInvalidValue);  // 4 rows are not a multiple of 3
}

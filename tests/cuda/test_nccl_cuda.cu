// SPDX-License-Identifier: Apache-2.0
// GPU tests of grpo::cuda::nccl_collective: one communicator per visible device in this process
// (ncclCommInitAll). With one device the reductions are the identity, which still checks the
// staging copies and chunking; with several devices every rank's sum / max / min is checked.
// Label "gpu"; built only when NCCL is found.
#include <grpo/advantage.hpp>
#include <grpo/cuda/nccl.cuh>

#include <doctest/doctest.h>

#include <cmath>
#include <span>
#include <thread>
#include <vector>

TEST_CASE("nccl_collective: concept, rank/size, sum/max/min with chunked staging" *
          doctest::test_suite("cuda")) {
  static_assert(grpo::collective<grpo::cuda::nccl_collective>);
  int ndev = 0;
  grpo::cuda::throw_on_error(cudaGetDeviceCount(&ndev), "cudaGetDeviceCount");
  REQUIRE(ndev >= 1);
  std::vector<ncclComm_t> comms(static_cast<std::size_t>(ndev));
  grpo::cuda::throw_on_nccl_error(ncclCommInitAll(comms.data(), ndev, nullptr), "ncclCommInitAll");
  std::vector<std::vector<double>> sums(static_cast<std::size_t>(ndev)),
      maxs(static_cast<std::size_t>(ndev)), mins(static_cast<std::size_t>(ndev));
  std::vector<int> ranks(static_cast<std::size_t>(ndev)), sizes(static_cast<std::size_t>(ndev));
  std::vector<std::thread> workers;
  for (int d = 0; d < ndev; ++d)
    workers.emplace_back([&, d] {
      cudaSetDevice(d);
      const grpo::cuda::nccl_collective c(comms[static_cast<std::size_t>(d)], nullptr, 3);
      auto& s = sums[static_cast<std::size_t>(d)];
      auto& mx = maxs[static_cast<std::size_t>(d)];
      auto& mn = mins[static_cast<std::size_t>(d)];
      for (int k = 0; k < 10; ++k) s.push_back(0.5 * k + c.rank());  // 10 > capacity 3: chunks
      mx = s;
      mn = s;
      c.all_reduce(std::span<double>(s), grpo::reduce_op::sum);
      c.all_reduce(std::span<double>(mx), grpo::reduce_op::max);
      c.all_reduce(std::span<double>(mn), grpo::reduce_op::min);
      ranks[static_cast<std::size_t>(d)] = c.rank();
      sizes[static_cast<std::size_t>(d)] = c.size();
    });
  for (auto& w : workers) w.join();
  for (auto c : comms) ncclCommDestroy(c);
  const double P = ndev;
  for (int d = 0; d < ndev; ++d) {
    CHECK(sizes[static_cast<std::size_t>(d)] == ndev);
    CHECK(ranks[static_cast<std::size_t>(d)] == d);
    for (int k = 0; k < 10; ++k) {
      CHECK(sums[static_cast<std::size_t>(d)][static_cast<std::size_t>(k)] ==
            doctest::Approx(P * 0.5 * k + P * (P - 1) / 2));
      CHECK(maxs[static_cast<std::size_t>(d)][static_cast<std::size_t>(k)] == 0.5 * k + (P - 1));
      CHECK(mins[static_cast<std::size_t>(d)][static_cast<std::size_t>(k)] == 0.5 * k);
    }
  }
}

TEST_CASE("nccl_collective: drives the sharded advantage code (single rank = single process)" *
          doctest::test_suite("cuda")) {
  ncclComm_t comm = nullptr;
  int dev = 0;
  grpo::cuda::throw_on_nccl_error(ncclCommInitAll(&comm, 1, &dev), "ncclCommInitAll");
  {
    const grpo::cuda::nccl_collective c(comm);
    std::vector<double> r{1.0, 0.0, 0.5, 2.0, 3.0, 1.0, 1.0, 0.25};
    std::vector<double> a(r.size()), ref(r.size());
    grpo::compute_advantages(std::span<const double>(r), grpo::group_spec::fixed(4),
                             std::span<double>(a), grpo::advantage_options::trl(), c);
    grpo::compute_advantages(std::span<const double>(r), grpo::group_spec::fixed(4),
                             std::span<double>(ref), grpo::advantage_options::trl());
    for (std::size_t i = 0; i < r.size(); ++i)
      CHECK(a[i] == doctest::Approx(ref[i]).epsilon(1e-14));
  }
  ncclCommDestroy(comm);
}

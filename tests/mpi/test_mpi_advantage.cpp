// SPDX-License-Identifier: Apache-2.0
// grpo::mpi_collective under mpiexec (-n 2, -n 4): element-wise reductions, and sharded advantages
// (every estimator, groups split across ranks, an empty rank) equal to the single-process result
// to 1e-12, on MPI_COMM_WORLD and on split sub-communicators.
#define DOCTEST_CONFIG_IMPLEMENT
#include <grpo/advantage.hpp>
#include <grpo/backends/mpi.hpp>

#include <doctest/doctest.h>

#include "mpi/shard_check.hpp"

#include <span>
#include <vector>

TEST_CASE("mpi_collective: rank, size and sum / max / min over MPI_COMM_WORLD" *
          doctest::test_suite("mpi")) {
  const grpo::mpi_collective comm(MPI_COMM_WORLD);
  int rank = -1, size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  CHECK(comm.rank() == rank);
  CHECK(comm.size() == size);
  REQUIRE(size >= 2);
  std::vector<double> v{static_cast<double>(rank), 1.0, 0.5 * rank};
  grpo::all_reduce_sum(comm, std::span<double>(v));
  CHECK(v[0] == size * (size - 1) / 2.0);
  CHECK(v[1] == size);
  std::vector<double> m{static_cast<double>(rank), -static_cast<double>(rank)};
  grpo::all_reduce_max(comm, std::span<double>(m));
  CHECK(m[0] == size - 1);
  CHECK(m[1] == 0.0);
  std::vector<double> n{static_cast<double>(rank)};
  grpo::all_reduce_min(comm, std::span<double>(n));
  CHECK(n[0] == 0.0);
  CHECK(grpo::all_reduce_sum(comm, 2.0) == 2.0 * size);
  std::vector<double> none;
  grpo::all_reduce_sum(comm, std::span<double>(none));  // zero-length calls are legal
}

TEST_CASE("mpi_collective: sharded advantages equal the single-process result (WORLD)" *
          doctest::test_suite("mpi")) {
  const grpo::mpi_collective comm(MPI_COMM_WORLD);
  CHECK(grpo_test::check_sharded(comm) == 2 * (12 + 3));
}

TEST_CASE("mpi_collective: sharded advantages on split sub-communicators" *
          doctest::test_suite("mpi")) {
  int rank = 0, world = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm sub;
  MPI_Comm_split(MPI_COMM_WORLD, rank % 2, rank, &sub);
  {
    const grpo::mpi_collective comm(sub);
    // Colour c holds world ranks c, c + 2, ...: reductions must stay inside the colour (a
    // collective that used MPI_COMM_WORLD would sum every rank).
    const int colour = rank % 2, want_size = (world - colour + 1) / 2;
    CHECK(comm.size() == want_size);
    CHECK(comm.rank() == rank / 2);
    double colour_sum = 0;
    for (int r = colour; r < world; r += 2) colour_sum += r;
    CHECK(grpo::all_reduce_sum(comm, static_cast<double>(rank)) == colour_sum);
    std::vector<double> mx{static_cast<double>(rank)};
    grpo::all_reduce_max(comm, std::span<double>(mx));
    CHECK(mx[0] == colour + 2 * (want_size - 1));
    if (comm.size() < 2)
      MESSAGE("np=" << world << ": one rank per sub-communicator, the sharded check below is "
                    "trivial here (np 4 and 6 shard across 2 and 3 ranks)");
    // Different seeds per colour: the two sub-communicators work on different batches.
    CHECK(grpo_test::check_sharded(comm, 77u + static_cast<unsigned>(rank % 2)) == 2 * (12 + 3));
  }
  MPI_Comm_free(&sub);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int failed = 0;
  {
    doctest::Context ctx(argc, argv);
    if (rank != 0) {
      ctx.setOption("no-version", true);
      ctx.setOption("no-intro", true);
    }
    failed = ctx.run() != 0 ? 1 : 0;
    if (ctx.shouldExit()) {
      MPI_Finalize();
      return failed;
    }
  }
  // Every rank's verdict counts: a failure on rank 3 fails the test.
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any;
}

// SPDX-License-Identifier: Apache-2.0
/// @file test_mpi_errors.cpp
/// @brief Every error site of grpo::mpi_collective (include/grpo/backends/mpi.hpp), one failing MPI
///        call at a time, checking the id ([grpo.collective]) and the call the message names:
///        MPI_Init not called (the real state, before main calls MPI_Init), a real MPI_ERR_COMM
///        from MPI_COMM_NULL under MPI_ERRORS_RETURN, and failures of MPI_Comm_rank, MPI_Comm_size
///        and MPI_Allreduce injected through MPI's profiling interface (the test defines those
///        MPI_* symbols and forwards to PMPI_* unless a failure is armed).
#define DOCTEST_CONFIG_IMPLEMENT
#include <grpo/backends/mpi.hpp>

#include <doctest/doctest.h>
#include <support/expect_error.hpp>

#include <optional>
#include <span>
#include <string>
#include <vector>

namespace {

/// Error code each interposed call returns while armed (MPI_SUCCESS = forward to PMPI).
int fail_comm_rank = MPI_SUCCESS;
int fail_comm_size = MPI_SUCCESS;
int fail_allreduce = MPI_SUCCESS;
int allreduce_calls = 0;

/// The error raised by mpi_collective's constructor before MPI_Init (set by main).
std::optional<std::string> before_init_what;
bool before_init_threw_other = false;

std::string mpi_message(int rc) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  return std::string(msg, static_cast<std::size_t>(len));
}

}  // namespace

// MPI profiling interface: these definitions replace the library's MPI_* entry points for this
// executable; PMPI_* are the real implementations.
extern "C" int MPI_Comm_rank(MPI_Comm comm, int* rank) {
  if (fail_comm_rank != MPI_SUCCESS) return fail_comm_rank;
  return PMPI_Comm_rank(comm, rank);
}
extern "C" int MPI_Comm_size(MPI_Comm comm, int* size) {
  if (fail_comm_size != MPI_SUCCESS) return fail_comm_size;
  return PMPI_Comm_size(comm, size);
}
extern "C" int MPI_Allreduce(const void* sendbuf, void* recvbuf, int count, MPI_Datatype datatype,
                             MPI_Op op, MPI_Comm comm) {
  ++allreduce_calls;
  if (fail_allreduce != MPI_SUCCESS) return fail_allreduce;
  return PMPI_Allreduce(sendbuf, recvbuf, count, datatype, op, comm);
}

TEST_CASE("mpi_collective: constructing before MPI_Init is [grpo.collective]") {
  CHECK_FALSE(before_init_threw_other);
  REQUIRE(before_init_what.has_value());
  CHECK(before_init_what->find("[grpo.collective]") != std::string::npos);
  CHECK(before_init_what->find("MPI_Init has not been called") != std::string::npos);
}

TEST_CASE("mpi_collective: a real MPI error (MPI_COMM_NULL) becomes [grpo.collective]") {
  // MPI_ERRORS_RETURN (set in main) makes MPI return the code instead of aborting.
  grpo_test::expect_error(
      "MPI_COMM_NULL", [] { grpo::mpi_collective c{MPI_COMM_NULL}; }, grpo::errc::collective,
      "MPI_Comm_rank failed: " + mpi_message(MPI_ERR_COMM));
}

TEST_CASE("mpi_collective: each failing MPI call, one at a time (id and call name)") {
  struct row {
    const char* label;
    int* armed;
    int rc;
    const char* call;  // the call the message must name
    bool in_constructor;
  };
  const row table[] = {
      {"MPI_Comm_rank fails", &fail_comm_rank, MPI_ERR_COMM, "MPI_Comm_rank", true},
      {"MPI_Comm_size fails", &fail_comm_size, MPI_ERR_ARG, "MPI_Comm_size", true},
      {"MPI_Allreduce fails", &fail_allreduce, MPI_ERR_TRUNCATE, "MPI_Allreduce", false},
      {"MPI_Allreduce fails (other class)", &fail_allreduce, MPI_ERR_OTHER, "MPI_Allreduce", false},
  };
  for (const auto& r : table) {
    *r.armed = r.rc;
    const std::string field = std::string(r.call) + " failed: " + mpi_message(r.rc);
    if (r.in_constructor) {
      grpo_test::expect_error(
          r.label, [] { grpo::mpi_collective c{MPI_COMM_WORLD}; }, grpo::errc::collective, field);
    } else {
      const grpo::mpi_collective c{MPI_COMM_WORLD};  // constructor calls are not armed
      std::vector<double> v = {1.0, 2.0};
      const int before = allreduce_calls;
      grpo_test::expect_error(
          r.label, [&] { c.all_reduce(std::span<double>(v), grpo::reduce_op::sum); },
          grpo::errc::collective, field);
      CHECK(allreduce_calls == before + 1);  // the failure surfaced at the first call
      // The front ends report it too (all_reduce_sum of a scalar goes through all_reduce).
      grpo_test::expect_error(
          std::string(r.label) + " via all_reduce_sum", [&] { (void)grpo::all_reduce_sum(c, 1.5); },
          grpo::errc::collective, field);
    }
    *r.armed = MPI_SUCCESS;
  }
  // Disarmed: the same calls succeed (the injection, not the setup, caused the errors above).
  const grpo::mpi_collective c{MPI_COMM_WORLD};
  int size = 0;
  PMPI_Comm_size(MPI_COMM_WORLD, &size);
  CHECK(c.size() == size);
  std::vector<double> v = {1.0, -2.0};
  c.all_reduce(std::span<double>(v), grpo::reduce_op::sum);
  CHECK(v[0] == 1.0 * size);
  CHECK(v[1] == -2.0 * size);
}

int main(int argc, char** argv) {
  try {
    grpo::mpi_collective c{MPI_COMM_WORLD};  // MPI is not initialised yet
  } catch (const grpo::error& e) {
    before_init_what = e.what();
  } catch (...) {
    before_init_threw_other = true;
  }
  MPI_Init(&argc, &argv);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
  int failed = 0;
  {
    doctest::Context ctx(argc, argv);
    failed = ctx.run() != 0 ? 1 : 0;
  }
  int any = 0;
  PMPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any;
}

// SPDX-License-Identifier: Apache-2.0
/// @file mpi.hpp
/// @brief grpo::mpi_collective: the grpo::collective implementation over an MPI communicator
///        (MPI_Allreduce on MPI_DOUBLE, in place). Link grpo::mpi.
///
/// Usage (MPI_Init done by the application, as with any MPI library):
///
///   grpo::mpi_collective comm{MPI_COMM_WORLD};
///   auto st = grpo::compute_advantages(rewards, group_ids, num_groups, adv, opts, comm);
///
/// The object does not own the communicator (no MPI_Comm_dup, no MPI_Comm_free): the caller keeps
/// it alive and uses it collectively (see the contract in <grpo/collective.hpp>).
#pragma once

#include <grpo/collective.hpp>
#include <grpo/core/error.hpp>

// Only MPI's C API is used; skipping the deprecated C++ bindings keeps -Wextra builds warning-free.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <climits>
#include <span>
#include <string>

namespace grpo {

/// Data-parallel collective over an MPI communicator.
class mpi_collective {
 public:
  /// @pre MPI is initialised and `comm` is a valid intra-communicator for the object's lifetime.
  /// @post rank() and size() are those of `comm`; throws [grpo.collective] if MPI reports an error.
  explicit mpi_collective(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
    int flag = 0;
    MPI_Initialized(&flag);
    GRPO_EXPECTS(flag != 0, collective, "mpi_collective: MPI_Init has not been called");
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }

  /// In place element-wise reduction over all ranks of the communicator.
  /// @pre every rank calls with the same buf.size() and op, in the same order.
  /// @post buf holds the reduction on every rank.
  void all_reduce(std::span<double> buf, reduce_op op) const {
    // MPI counts are int: reduce in chunks so spans over 2^31 elements are still correct.
    constexpr std::size_t chunk = static_cast<std::size_t>(INT_MAX);
    const MPI_Op mop = op == reduce_op::sum ? MPI_SUM : op == reduce_op::max ? MPI_MAX : MPI_MIN;
    std::size_t done = 0;
    do {
      const std::size_t n = buf.size() - done < chunk ? buf.size() - done : chunk;
      check(MPI_Allreduce(MPI_IN_PLACE, buf.data() + done, static_cast<int>(n), MPI_DOUBLE, mop,
                          comm_),
            "MPI_Allreduce");
      done += n;
    } while (done < buf.size());
  }

  /// @return this process' rank in the communicator.
  [[nodiscard]] int rank() const noexcept { return rank_; }
  /// @return the number of ranks of the communicator.
  [[nodiscard]] int size() const noexcept { return size_; }
  /// @return the (non-owned) communicator.
  [[nodiscard]] MPI_Comm comm() const noexcept { return comm_; }

 private:
  // MPI's default error handler aborts; with MPI_ERRORS_RETURN set by the application, a failing
  // call returns a code which we turn into [grpo.collective] with MPI's own message.
  static void check(int rc, const char* what) {
    if (rc == MPI_SUCCESS) [[likely]]
      return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    GRPO_THROW(collective, std::string("mpi_collective: ") + what +
                               " failed: " + std::string(msg, static_cast<std::size_t>(len)));
  }

  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
};
static_assert(collective<mpi_collective>);

}  // namespace grpo

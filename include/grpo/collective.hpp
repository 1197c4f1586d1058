// SPDX-License-Identifier: Apache-2.0
/// @file collective.hpp
/// @brief The data-parallel statistics interface: a concept for element-wise all-reduce over ranks,
///        and the single-process implementation (identity).
///
/// Why: group statistics of GRPO (per-prompt mean/std), batch whitening (REINFORCE++) and global
/// token counts for loss aggregation must be identical whether the batch lives on one process or is
/// sharded over data-parallel ranks. Algorithms therefore compute local partial sums and hand them
/// to a `collective`, which adds (or max/min-reduces) them over all ranks in place.
///
/// API (stable; other modules depend on it):
///
///   enum class reduce_op { sum, max, min };
///
///   concept grpo::collective<C>: for `const C& c`, `std::span<double> buf`, `reduce_op op`:
///     c.all_reduce(buf, op)  -> void   element-wise reduction of buf over all ranks, result in buf
///     on
///                                      every rank (MPI_Allreduce semantics, in place)
///     c.rank()               -> int    this process' rank in [0, size())
///     c.size()               -> int    number of ranks (>= 1)
///
///   grpo::single_process        the identity collective (rank 0 of 1); the default everywhere.
///   grpo::all_reduce_sum(c, buf), all_reduce_max(c, buf), all_reduce_min(c, buf)
///   grpo::all_reduce_sum(c, x) -> double   scalar convenience (e.g. a global token count)
///
/// Contract for implementers and callers:
///   - A call is collective: every rank calls all_reduce the same number of times, in the same
///     order, with the same buf.size() and op (sizes may be 0; the call must still be made).
///   - Reductions are over doubles. Counts are carried as doubles: exact up to 2^53.
///   - The sum's association order across ranks is the implementation's (MPI's); callers that need
///     bit-reproducibility across rank counts must not rely on more than ~1e-15 relative agreement.
///   - Failures throw grpo::error with id [grpo.collective].
///   - `all_reduce` may be const: an implementation holds a handle (an MPI communicator), not data.
///
/// Implementations: single_process (here), grpo::mpi_collective in <grpo/backends/mpi.hpp>
/// (MPI_Allreduce on MPI_DOUBLE over a communicator). To plug NCCL, torch.distributed or Gloo,
/// write a class with the three members above.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>

#include <concepts>
#include <cstddef>
#include <span>
#include <string_view>

namespace grpo {

/// Element-wise reduction applied across ranks.
enum class reduce_op {
  sum,  ///< x_0 + x_1 + ... + x_{P-1}
  max,  ///< max over ranks (NaN propagation is the implementation's; do not reduce NaNs)
  min,  ///< min over ranks
};

/// The textual name of a reduction ("sum", "max", "min").
constexpr std::string_view to_string(reduce_op op) noexcept {
  switch (op) {
    case reduce_op::sum:
      return "sum";
    case reduce_op::max:
      return "max";
    case reduce_op::min:
      return "min";
  }
  return "unknown";
}

/// A data-parallel communicator able to reduce a span of doubles over all ranks, in place.
template <class C>
concept collective = requires(const C& c, std::span<double> buf, reduce_op op) {
  { c.all_reduce(buf, op) } -> std::same_as<void>;
  { c.rank() } -> std::convertible_to<int>;
  { c.size() } -> std::convertible_to<int>;
};

/// The identity collective: one process holds the whole batch, so every reduction is a no-op.
struct single_process {
  /// @post buf unchanged (the reduction of one rank's values is those values).
  void all_reduce(std::span<double> /*buf*/, reduce_op /*op*/) const noexcept {}
  /// @return 0.
  [[nodiscard]] constexpr int rank() const noexcept { return 0; }
  /// @return 1.
  [[nodiscard]] constexpr int size() const noexcept { return 1; }
};
static_assert(collective<single_process>);

/// In-place sum over ranks: buf[i] <- sum_r buf_r[i].
/// @pre called collectively on every rank with the same buf.size().
template <collective C>
void all_reduce_sum(const C& c, std::span<double> buf) {
  c.all_reduce(buf, reduce_op::sum);
}

/// In-place max over ranks: buf[i] <- max_r buf_r[i].
/// @pre called collectively on every rank with the same buf.size().
template <collective C>
void all_reduce_max(const C& c, std::span<double> buf) {
  c.all_reduce(buf, reduce_op::max);
}

/// In-place min over ranks: buf[i] <- min_r buf_r[i].
/// @pre called collectively on every rank with the same buf.size().
template <collective C>
void all_reduce_min(const C& c, std::span<double> buf) {
  c.all_reduce(buf, reduce_op::min);
}

/// Scalar sum over ranks, e.g. the global number of unmasked tokens of an optimizer step.
/// @pre called collectively on every rank.
/// @return sum_r x_r (identical on every rank).
template <collective C>
[[nodiscard]] double all_reduce_sum(const C& c, double x) {
  double v[1] = {x};
  c.all_reduce(std::span<double>(v, 1), reduce_op::sum);
  return v[0];
}

}  // namespace grpo

// SPDX-License-Identifier: Apache-2.0
/// @file group_spec.hpp
/// @brief grpo::group_spec: how the rows of a batch form groups (fixed-size contiguous groups or
///        explicit integer ids, local rows with global ids when sharded) and its resolution to dense
///        group ids.
#pragma once

#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/strided_view.hpp>

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace grpo {

/// How rows are grouped: fixed-size contiguous groups or explicit integer ids.
class group_spec {
 public:
  /// Contiguous groups of `group_size` rows: row i (local) belongs to group
  /// (first_row + i) / group_size. `first_row` is the global index of local row 0 (sharding);
  /// num_groups < 0 means "B / group_size of this process" (single process only; B must divide).
  static group_spec fixed(index_t group_size, index_t first_row = 0, index_t num_groups = -1) {
    group_spec s;
    s.kind_ = kind::fixed;
    s.size_ = group_size;
    s.first_ = first_row;
    s.num_ = num_groups;
    return s;
  }
  /// Explicit ids, one per local row. With num_groups >= 0 the ids must lie in [0, num_groups)
  /// (required when sharded); otherwise any values (densified in ascending id order).
  /// The span must outlive the group_spec.
  static group_spec ids(std::span<const std::int64_t> ids, index_t num_groups = -1) {
    group_spec s;
    s.kind_ = kind::ids;
    s.ids_ = ids;
    s.num_ = num_groups;
    return s;
  }
  /// 32-bit ids (copied).
  static group_spec ids(std::span<const std::int32_t> ids, index_t num_groups = -1) {
    group_spec s;
    s.kind_ = kind::ids;
    s.owned_.assign(ids.begin(), ids.end());
    s.ids_ = std::span<const std::int64_t>(s.owned_);
    s.num_ = num_groups;
    return s;
  }
  group_spec(const group_spec& o)
      : kind_(o.kind_),
        size_(o.size_),
        first_(o.first_),
        num_(o.num_),
        ids_(o.ids_),
        owned_(o.owned_) {
    if (!owned_.empty()) ids_ = std::span<const std::int64_t>(owned_);
  }
  group_spec& operator=(const group_spec& o) {
    if (this != &o) {
      kind_ = o.kind_, size_ = o.size_, first_ = o.first_, num_ = o.num_;
      owned_ = o.owned_;
      ids_ = owned_.empty() ? o.ids_ : std::span<const std::int64_t>(owned_);
    }
    return *this;
  }

  /// Resolve to dense ids in [0, G) for `rows` local rows.
  /// @pre comm_size > 1 requires num_groups >= 0.
  /// @post gid.size() == rows; labels.size() == G.
  void resolve(index_t rows, int comm_size, std::vector<index_t>& gid, index_t& num_groups,
               std::vector<std::int64_t>& labels) const {
    gid.assign(static_cast<std::size_t>(rows), 0);
    if (kind_ == kind::fixed) {
      GRPO_EXPECTS(size_ > 0, bad_option,
                   "group_spec::fixed: group_size must be positive, got " + std::to_string(size_));
      GRPO_EXPECTS(first_ >= 0, bad_option, "group_spec::fixed: first_row must be >= 0");
      if (num_ < 0) {
        GRPO_EXPECTS(comm_size == 1 && first_ == 0, bad_option,
                     "group_spec::fixed: a sharded batch needs first_row and num_groups");
        GRPO_EXPECTS(rows % size_ == 0, shape_mismatch,
                     "group_spec::fixed: batch of " + std::to_string(rows) +
                         " rows is not a multiple of group_size " + std::to_string(size_));
        num_groups = rows / size_;
      } else {
        num_groups = num_;
      }
      for (index_t i = 0; i < rows; ++i) {
        const index_t g = (first_ + i) / size_;
        GRPO_EXPECTS(g < num_groups, out_of_range,
                     "group_spec::fixed: row " + std::to_string(first_ + i) + " falls in group " +
                         std::to_string(g) + " >= num_groups " + std::to_string(num_groups));
        gid[static_cast<std::size_t>(i)] = g;
      }
    } else {
      GRPO_EXPECTS(static_cast<index_t>(ids_.size()) == rows, shape_mismatch,
                   "group ids: " + std::to_string(ids_.size()) + " ids for " +
                       std::to_string(rows) + " rows");
      if (num_ >= 0) {
        num_groups = num_;
        for (index_t i = 0; i < rows; ++i) {
          const std::int64_t v = ids_[static_cast<std::size_t>(i)];
          GRPO_EXPECTS(v >= 0 && v < num_, out_of_range,
                       "group ids: id " + std::to_string(v) + " of row " + std::to_string(i) +
                           " outside [0, num_groups=" + std::to_string(num_) + ")");
          gid[static_cast<std::size_t>(i)] = static_cast<index_t>(v);
        }
      } else {
        GRPO_EXPECTS(comm_size == 1, bad_option,
                     "group ids: a sharded batch needs dense global ids and num_groups");
        std::vector<std::int64_t> sorted(ids_.begin(), ids_.end());
        std::sort(sorted.begin(), sorted.end());
        sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
        num_groups = static_cast<index_t>(sorted.size());
        for (index_t i = 0; i < rows; ++i)
          gid[static_cast<std::size_t>(i)] = static_cast<index_t>(
              std::lower_bound(sorted.begin(), sorted.end(), ids_[static_cast<std::size_t>(i)]) -
              sorted.begin());
        labels = std::move(sorted);
        return;
      }
    }
    labels.resize(static_cast<std::size_t>(num_groups));
    for (index_t g = 0; g < num_groups; ++g) labels[static_cast<std::size_t>(g)] = g;
  }

 private:
  group_spec() = default;
  enum class kind : unsigned char { fixed, ids };
  kind kind_ = kind::fixed;
  index_t size_ = 1, first_ = 0, num_ = -1;
  std::span<const std::int64_t> ids_{};
  std::vector<std::int64_t> owned_{};
};

}  // namespace grpo

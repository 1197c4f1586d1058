// SPDX-License-Identifier: Apache-2.0
// Eigen: the same GRPO loss from column-major Eigen matrices (strides are explicit in the view).
#include <Eigen/Dense>
#include <grpo/backends/eigen.hpp>

#include "common.hpp"

using namespace example;

int main() {
  // Column-major (Eigen's default): element (i, t) is at data()[i + 2 t].
  auto load = [](const double* v) {
    return Eigen::Map<const Eigen::Matrix<double, 2, 3, Eigen::RowMajor>>(v).eval();
  };
  const Eigen::MatrixXd lp = load(logp), old_lp = load(old_logp), ref_lp = load(ref_logp);
  const Eigen::MatrixXd m = load(mask);
  const Eigen::MatrixXd a = Eigen::Vector2d(adv[0], adv[1]).replicate(1, 3);  // per-token advantage
  auto view = [](const Eigen::MatrixXd& x) { return grpo::as_view_as<const double, 2>(x); };
  auto r = grpo::compute_loss(options(), view(lp), view(old_lp), view(ref_lp), view(a), view(m));
  // Gradient back into an Eigen matrix of the caller's layout.
  Eigen::MatrixXd g(2, 3);
  for (grpo::index_t i = 0; i < 2; ++i)
    for (grpo::index_t t = 0; t < 3; ++t) g(i, t) = r.at(r.grad_logp, i, t);
  return check("Eigen", r.loss, [&](grpo::index_t i, grpo::index_t t) { return g(i, t); });
}

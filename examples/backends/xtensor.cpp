// SPDX-License-Identifier: Apache-2.0
// xtensor: the same GRPO loss from xt::xtensor containers and a broadcast-free advantage column.
#include <grpo/backends/xtensor.hpp>
#include <xtensor/xadapt.hpp>
#include <xtensor/xtensor.hpp>

#include "common.hpp"

using namespace example;

int main() {
  auto load = [](const double* v) {
    return xt::xtensor<double, 2>(
        xt::adapt(v, 6, xt::no_ownership(), std::array<std::size_t, 2>{2, 3}));
  };
  const auto lp = load(logp), old_lp = load(old_logp), ref_lp = load(ref_logp), m = load(mask);
  const xt::xtensor<double, 1> a = {adv[0], adv[1]};
  auto view = [](const xt::xtensor<double, 2>& x) { return grpo::as_view_as<const double, 2>(x); };
  auto r = grpo::compute_loss(options(), view(lp), view(old_lp), view(ref_lp),
                              grpo::broadcast_rows(a.data(), 2, 3), view(m));
  xt::xtensor<double, 2> g = xt::adapt(r.grad_logp, std::array<std::size_t, 2>{2, 3});
  return check("xtensor", r.loss, [&](grpo::index_t i, grpo::index_t t) {
    return g(static_cast<std::size_t>(i), static_cast<std::size_t>(t));
  });
}

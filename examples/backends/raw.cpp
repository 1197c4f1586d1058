// SPDX-License-Identifier: Apache-2.0
// Raw pointers: GRPO loss (presets API) and d loss / d logp from row-major arrays, gradient checked
// against central finite differences of the loss itself.
#include "common.hpp"

using namespace example;

double loss_at(const double* lp) {
  return grpo::compute_loss(options(), grpo::make_view(lp, {2, 3}),
                            grpo::make_view(old_logp, {2, 3}), grpo::make_view(ref_logp, {2, 3}),
                            grpo::broadcast_rows(adv, 2, 3), grpo::make_view(mask, {2, 3}))
      .loss;
}

int main() {
  auto r = grpo::compute_loss(options(), grpo::make_view(logp, {2, 3}),
                              grpo::make_view(old_logp, {2, 3}), grpo::make_view(ref_logp, {2, 3}),
                              grpo::broadcast_rows(adv, 2, 3), grpo::make_view(mask, {2, 3}));
  double worst = 0;
  for (int k = 0; k < 6; ++k) {  // (L(x + h e_k) - L(x - h e_k)) / 2h
    double p[6], m[6];
    for (int j = 0; j < 6; ++j) p[j] = m[j] = logp[j];
    p[k] += 1e-6;
    m[k] -= 1e-6;
    worst = std::max(worst, std::abs((loss_at(p) - loss_at(m)) / 2e-6 - r.grad_logp[k]));
  }
  std::printf("finite-difference max error %.2e\n", worst);
  return check("raw pointers", r.loss,
               [&](grpo::index_t i, grpo::index_t t) { return r.at(r.grad_logp, i, t); }) |
         (worst < 1e-7 ? 0 : 1);
}

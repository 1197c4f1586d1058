// SPDX-License-Identifier: Apache-2.0
// libtorch: the same GRPO loss on torch tensors, then the gradient handed to autograd with
// logp.backward(grad), the way a training loop uses it.
#include <torch/torch.h>

#include <grpo/backends/torch.hpp>

#include "common.hpp"

using namespace example;

int main() {
  auto load = [](const double* v) {
    return torch::from_blob(const_cast<double*>(v), {2, 3}, torch::kDouble).clone();
  };
  // A leaf standing for the model's log-probs; its .grad() receives dL/dlogp from autograd.
  auto lp = load(logp).requires_grad_(true);
  const auto old_lp = load(old_logp), ref_lp = load(ref_logp), m = load(mask);
  const auto a = torch::tensor({adv[0], adv[1]}, torch::kDouble);
  auto view = [](const torch::Tensor& t) { return grpo::as_view_as<const double, 2>(t); };
  const auto lp_d = lp.detach();
  auto r = grpo::compute_loss(options(), view(lp_d), view(old_lp), view(ref_lp),
                              grpo::broadcast_rows(a.data_ptr<double>(), 2, 3), view(m));
  auto g = torch::from_blob(r.grad_logp.data(), {2, 3}, torch::kDouble).clone();
  lp.backward(g);  // in a model: logits.backward(...) through log_softmax / gather
  auto ga = lp.grad().accessor<double, 2>();
  return check("libtorch", r.loss, [&](grpo::index_t i, grpo::index_t t) { return ga[i][t]; });
}

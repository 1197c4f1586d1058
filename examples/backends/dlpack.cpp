// SPDX-License-Identifier: Apache-2.0
// DLPack: the same GRPO loss from DLTensor descriptors (what torch/JAX/CuPy hand over zero-copy).
#include <dlpack/dlpack.h>

#include <grpo/backends/dlpack.hpp>

#include "common.hpp"

using namespace example;

int main() {
  std::int64_t shape[2] = {2, 3};
  // Compact row-major float64 on the CPU (strides == NULL is DLPack's row-major rule).
  auto wrap = [&](const double* p) {
    DLTensor t{};
    t.data = const_cast<double*>(p);
    t.device = {kDLCPU, 0};
    t.ndim = 2;
    t.dtype = {kDLFloat, 64, 1};
    t.shape = shape;
    return t;
  };
  const DLTensor lp = wrap(logp), old_lp = wrap(old_logp), ref_lp = wrap(ref_logp), m = wrap(mask);
  auto view = [](const DLTensor& t) { return grpo::as_view_as<const double, 2>(t); };
  auto r = grpo::compute_loss(options(), view(lp), view(old_lp), view(ref_lp),
                              grpo::broadcast_rows(adv, 2, 3), view(m));
  return check("DLPack", r.loss,
               [&](grpo::index_t i, grpo::index_t t) { return r.at(r.grad_logp, i, t); });
}

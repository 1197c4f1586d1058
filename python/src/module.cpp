// SPDX-License-Identifier: Apache-2.0
/// @file module.cpp
/// @brief The grpo._C extension module: errors map to grpo.GrpoError (a ValueError whose message
///        starts with the stable "[grpo.<id>]"), then each part binds its functions.
#include "common.hpp"

NB_MODULE(_C, m) {
  using namespace grpo::py;
  m.doc() = "grpo C++ core (internal: use grpo.ops and grpo.rewards)";
  // Loss-option objects cached by grpo.ops live until interpreter exit, after nanobind's leak
  // check runs: not a leak.
  nb::set_leak_warnings(false);
  // grpo::error derives from std::invalid_argument: it becomes GrpoError(ValueError). Other
  // std::invalid_argument / runtime_error keep nanobind's default mapping.
  nb::exception<grpo::error>(m, "GrpoError", PyExc_ValueError);
  bind_loss(m);
  bind_openrlhf(m);
  bind_logprob(m);
  bind_distill(m);
  bind_rewards(m);
#ifdef GRPO_PY_WITH_CUDA
  m.attr("built_with_cuda") = true;
#else
  m.attr("built_with_cuda") = false;
#endif
}

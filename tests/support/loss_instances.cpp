// SPDX-License-Identifier: Apache-2.0
// One part (GRPO_LOSS_INSTANTIATE_PART = 1 .. 5, set by tests/CMakeLists.txt) of the loss engine's
// compiled instances for the test suite (include/grpo/loss/extern_instances.hpp): the tests that
// call the engine define GRPO_LOSS_EXTERN_TEMPLATES and link these instead of compiling the row
// kernels of every ISA in each translation unit (a CI-time measure; the code is the header's).
#include <grpo/loss.hpp>

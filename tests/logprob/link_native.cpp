// SPDX-License-Identifier: Apache-2.0
// The -march=native translation unit of test_vocab_link (tests/logprob/CMakeLists.txt sets the
// flag on this file only).
#include <grpo/logprob.hpp>

#include "logprob/link_tu.hpp"

#include <cmath>
#include <cstdint>
#include <typeinfo>
#include <vector>

#define GRPO_LINK_FN run_native
#include "logprob/link_body.ipp"

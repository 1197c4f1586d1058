// SPDX-License-Identifier: Apache-2.0
/// @file link_tu.hpp
/// @brief The interface between the link test's two translation units (see link_body.ipp).
#pragma once

#include <grpo/core/isa.hpp>

#include <string>
#include <vector>

#define GRPO_LINK_STR2(x) #x
#define GRPO_LINK_STR(x) GRPO_LINK_STR2(x)

/// What one translation unit computed and which ABI namespace its engine lives in.
struct link_result {
  std::string abi;        ///< GRPO_ISA_ABI of the TU
  std::string type_name;  ///< typeid name of grpo::vocab::scratch (mangles the ABI namespace)
  int path = -1;          ///< logprob_report::path of the forward call
  std::vector<float> logp, lse, ent, grad;
};

link_result run_native(grpo::isa k);    // link_native.cpp (-march=native)
link_result run_portable(grpo::isa k);  // test_vocab_link.cpp (the build's flags)

// SPDX-License-Identifier: Apache-2.0
/// @file distill.hpp
/// @brief Umbrella header of grpo::distill: SFT NLL, dense-teacher divergences (forward/reverse KL,
///        generalised JSD, skew KLs) and top-k sparse teachers, fused over the vocabulary.
#pragma once

#include <distill/dense.hpp>
#include <distill/options.hpp>
#include <distill/sft.hpp>
#include <distill/topk.hpp>

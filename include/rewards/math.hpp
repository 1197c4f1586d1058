// SPDX-License-Identifier: Apache-2.0
/// @file math.hpp
/// @brief Umbrella header of the math answer verifier (grpo::rewards::math): extract_answer,
///        normalize_answer, parse, equivalent, verify. Link grpo::rewards (GMP, MPFR, FLINT + Arb: LGPL).
#pragma once

#include <rewards/math/equivalence.hpp>
#include <rewards/math/expr.hpp>
#include <rewards/math/extract.hpp>
#include <rewards/math/normalize.hpp>
#include <rewards/math/options.hpp>
#include <rewards/math/parse.hpp>
#include <rewards/math/text.hpp>
#include <rewards/math/verify.hpp>

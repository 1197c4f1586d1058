// SPDX-License-Identifier: Apache-2.0
/// @file rewards.hpp
/// @brief Umbrella header of grpo::rewards: every rule reward, code execution, composition and
///        batch scoring, plus the math verifier when <rewards/math.hpp> is present.
///        Link grpo::rewards.
#pragma once

#include <rewards/batch.hpp>       // std::jthread pool, deterministic batch scoring
#include <rewards/code_exec.hpp>   // sandboxed Python / C++ test execution
#include <rewards/compose.hpp>     // weighted rule sets, rule factory, rule specs
#include <rewards/format.hpp>      // strict / lenient R1 format, tag count, reasoning steps
#include <rewards/language.hpp>    // R1 language consistency
#include <rewards/length.hpp>      // cosine-scaled length, DAPO soft overlong, Kimi length
#include <rewards/repetition.hpp>  // n-gram repetition penalty
#include <rewards/utf8.hpp>        // lenient UTF-8, Python whitespace, Unicode scripts

#if __has_include(<rewards/math.hpp>)
#include <rewards/math.hpp>  // answer extraction and equivalence (math::verify)
#endif

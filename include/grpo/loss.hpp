// SPDX-License-Identifier: Apache-2.0
/// @file loss.hpp
/// @brief grpo::compute_loss: the full GRPO-family objective over [B, T] log-prob views (policy
///        term, rollout IS correction, OPSM, top-entropy and truncation masks, in-loss KL, entropy
///        bonus, aggregation) returning the loss, per-token loss, d loss / d logp, d loss / d H and
///        one metric schema.
///
/// Order of operations (TRL GRPOTrainer._compute_loss, b.1 step 7, generalised):
///   1. final mask m = mask * (1 - truncated_row) [* OPSM keep] [* top-entropy mask]
///      (OPSM / entropy masks join the mask, i.e. the denominators, unless *_in_denominator is
///      false, in which case they only multiply the policy term as in TRL);
///   2. ratio r per is_level, with the optional log-ratio clamp;
///   3. policy term l_pol(r, A, lp); multiplied by OPSM / entropy multipliers and by the detached
///      rollout IS weight rho (policy term only; VESPO folds rho into phi instead);
///   4. + kl_coef * KL (x r when bias-corrected), NOT multiplied by rho, OPSM or entropy masks;
///   5. aggregation with denominators from the final mask (agg_options; KL may use its own);
///   6. - entropy_coef * agg(H) over m * entropy mask.
/// The gradient is exact, including the stop-gradient structure of GSPO(-token), the sequence
/// ratio's spread over tokens, clamp flat regions, and the product rule of bias-corrected KL.
///
/// Three engines, one semantics (the dispatch rules: loss/plan.hpp): token-level ratios without
/// row-wide terms run the token rows (loss/token_rows.hpp; vectorised in
/// loss/simd_token_rows.hpp, AVX-512 kernel for float in loss/kernels/avx512/); sequence-level
/// ratios (GSPO, GSPO-token) with PPO clip and no OPSM / TIS / IS weights / entropy run the
/// sequence rows (loss/sequence_rows.hpp: one row sweep for the sequence ratio, then the tokens
/// against the row constants; AVX-512 / xsimd kernels, a scalar twin in the general engine's exact
/// order for rows they flag); everything else runs the general engine over
/// <grpo/detail/loss_token.hpp> (loss/general_rows.hpp). Layouts: rows contiguous along t
/// (per-sequence advantages may be a broadcast), float or double data.
/// Files: loss/options.hpp (options, inputs, outputs, validate), loss/plan.hpp (kind traits,
/// engine choice), loss/compute.hpp (validate -> plan -> dispatch -> merge).
#pragma once

#include <grpo/loss/compute.hpp>
#include <grpo/loss/entry.hpp>
#include <grpo/loss/options.hpp>
#include <grpo/loss/plan.hpp>

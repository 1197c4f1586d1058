// SPDX-License-Identifier: Apache-2.0
/// @file options.hpp
/// @brief The demo's options and their command line (CLI11): every option's range is checked on
///        the text before conversion, so a bad value is refused with a message naming the option
///        ("--seed: must be >= 0 (got -1)"), which main() reports with exit code 2.
#pragma once

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace r1demo {

struct options {
  std::string pipeline = "default";  ///< "default" (stages 1, 2, distill) or "r1" (1-4, distill)
  // task
  int digits = 1, terms = 4;
  std::string ops = "+";
  int heldout = 200;
  // models
  int64_t embed = 32, hidden = 128, layers = 1;
  int64_t student_hidden = 64;
  // stage 1
  int sft_examples = 1000, sft_steps = 200, sft_batch = 64;
  double sft_lr = 3e-3;
  // stage 2
  int steps = 1000, prompts = 32, group = 8, minibatches = 2;
  double temperature = 1.0, lr = 1e-3, clip_eps = 0.2, kl_beta = 0.04, format_weight = 0.5;
  // GRPO and distillation learning rates decay linearly to lr * lr_final at their last step
  double lr_final = 0.1;
  // stage 3 (--pipeline r1): rejection-sampled SFT
  int rs_pool = 2048, rs_steps = 200;
  double rs_lr = 1e-3;
  // stage 4 (--pipeline r1): second GRPO with length and repetition terms
  int rl2_steps = 300;
  double rl2_lr = 5e-4, length_weight = 0.5, repetition_weight = 0.5;
  // distillation
  int distill_steps = 2500, distill_batch = 64, distill_pool = 4096;
  double distill_lr = 3e-3, distill_temperature = 1.0;
  // evaluation
  int eval_samples = 8, eval_every = 100;
  double eval_temperature = 0.6;
  // run
  int threads = 1;
  uint64_t seed = 1;
  std::string out = "r1_demo_out";
  bool no_progress = false;

  [[nodiscard]] bool r1() const { return pipeline == "r1"; }
};

/// A bad command-line value: reported as "r1_demo: error: <message>" with exit code 2.
struct usage_error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

/// Validator: the value must be a number >= lo (or > lo when `strict`). It runs on the text
/// before conversion, so "-1" for an unsigned option is refused here, not wrapped around.
inline CLI::Validator at_least(double lo, bool strict = false) {
  char desc[32];
  std::snprintf(desc, sizeof desc, "%s%g", strict ? ">" : ">=", lo);
  return CLI::Validator(
      [lo, strict](std::string& in) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(in.c_str(), &end);
        if (end == in.c_str() || *end != '\0' || !std::isfinite(v))
          return "'" + in + "' is not a number";
        if (strict ? v > lo : v >= lo) return {};
        char buf[64];
        std::snprintf(buf, sizeof buf, "must be %s %g (got %s)", strict ? ">" : ">=", lo,
                      in.c_str());
        return buf;
      },
      desc);
}

inline CLI::Validator in_range(double lo, double hi) {
  char desc[48];
  std::snprintf(desc, sizeof desc, "in [%g, %g]", lo, hi);
  return CLI::Validator(
      [lo, hi](std::string& in) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(in.c_str(), &end);
        if (end == in.c_str() || *end != '\0' || !std::isfinite(v))
          return "'" + in + "' is not a number";
        if (v >= lo && v <= hi) return {};
        char buf[80];
        std::snprintf(buf, sizeof buf, "must be in [%g, %g] (got %s)", lo, hi, in.c_str());
        return buf;
      },
      desc);
}

inline void add_options(CLI::App& app, options& o) {
  const auto pos = at_least(0, true);
  const auto nonneg = at_least(0);
  const auto one = at_least(1);
  app.add_option("--pipeline", o.pipeline,
                 "default: cold-start SFT, GRPO, distillation; r1: adds stage 3 (rejection-"
                 "sampled SFT mixed with the cold-start data) and stage 4 (GRPO with length and "
                 "repetition rewards) before distillation")
      ->check(CLI::IsMember({"default", "r1"}))
      ->capture_default_str();
  app.add_option("--digits", o.digits, "digits of each operand (task difficulty)")
      ->check(in_range(1, 6))
      ->capture_default_str();
  app.add_option("--terms", o.terms, "operands per problem (task difficulty)")
      ->check(in_range(2, 8))
      ->capture_default_str();
  app.add_option("--ops", o.ops, "operators to draw from, subset of \"+-\"")->capture_default_str();
  app.add_option("--heldout", o.heldout, "held-out problems for evaluation")
      ->check(one)
      ->capture_default_str();
  app.add_option("--hidden", o.hidden, "policy GRU width (model size)")
      ->check(one)
      ->capture_default_str();
  app.add_option("--layers", o.layers, "policy GRU layers")->check(one)->capture_default_str();
  app.add_option("--embed", o.embed, "token embedding width")->check(one)->capture_default_str();
  app.add_option("--student-hidden", o.student_hidden, "student GRU width")
      ->check(one)
      ->capture_default_str();
  app.add_option("--sft-examples", o.sft_examples, "cold-start examples (0: R1-Zero, no SFT)")
      ->check(nonneg)
      ->capture_default_str();
  app.add_option("--sft-steps", o.sft_steps, "cold-start SFT steps")
      ->check(nonneg)
      ->capture_default_str();
  app.add_option("--sft-lr", o.sft_lr, "cold-start learning rate")
      ->check(pos)
      ->capture_default_str();
  app.add_option("--steps", o.steps, "GRPO steps (stage 2)")->check(nonneg)->capture_default_str();
  app.add_option("--prompts", o.prompts, "prompts per GRPO step")
      ->check(one)
      ->capture_default_str();
  app.add_option("--group", o.group, "samples per prompt (group size; GRPO compares within it)")
      ->check(at_least(2))
      ->capture_default_str();
  app.add_option("--minibatches", o.minibatches, "optimizer steps per rollout")
      ->check(one)
      ->capture_default_str();
  app.add_option("--temperature", o.temperature, "sampling temperature")
      ->check(pos)
      ->capture_default_str();
  app.add_option("--lr", o.lr, "GRPO learning rate (stage 2)")->check(pos)->capture_default_str();
  app.add_option("--lr-final", o.lr_final,
                 "learning rate at the last GRPO / distillation step, as a fraction of the "
                 "stage's rate (linear decay; 1 = constant)")
      ->check(in_range(0, 1))
      ->capture_default_str();
  app.add_option("--clip-eps", o.clip_eps, "ratio clip epsilon")->check(pos)->capture_default_str();
  app.add_option("--kl-beta", o.kl_beta, "KL penalty to the stage's starting policy")
      ->check(nonneg)
      ->capture_default_str();
  app.add_option("--format-weight", o.format_weight, "weight of the format reward")
      ->check(nonneg)
      ->capture_default_str();
  app.add_option("--rs-pool", o.rs_pool, "r1 stage 3: own correct completions to collect")
      ->check(one)
      ->capture_default_str();
  app.add_option("--rs-steps", o.rs_steps, "r1 stage 3: SFT steps")
      ->check(nonneg)
      ->capture_default_str();
  app.add_option("--rs-lr", o.rs_lr, "r1 stage 3: learning rate")
      ->check(pos)
      ->capture_default_str();
  app.add_option("--rl2-steps", o.rl2_steps, "r1 stage 4: GRPO steps")
      ->check(nonneg)
      ->capture_default_str();
  app.add_option("--rl2-lr", o.rl2_lr, "r1 stage 4: learning rate")
      ->check(pos)
      ->capture_default_str();
  app.add_option("--length-weight", o.length_weight,
                 "r1 stage 4: weight of the soft overlong (length) reward")
      ->check(nonneg)
      ->capture_default_str();
  app.add_option("--repetition-weight", o.repetition_weight,
                 "r1 stage 4: weight of the n-gram repetition penalty")
      ->check(nonneg)
      ->capture_default_str();
  app.add_option("--distill-steps", o.distill_steps, "distillation steps")
      ->check(nonneg)
      ->capture_default_str();
  app.add_option("--distill-batch", o.distill_batch, "teacher samples per distillation step")
      ->check(one)
      ->capture_default_str();
  app.add_option("--distill-pool", o.distill_pool,
                 "correct teacher completions to collect for distillation")
      ->check(one)
      ->capture_default_str();
  app.add_option("--distill-temperature", o.distill_temperature,
                 "teacher sampling temperature for the distillation set")
      ->check(pos)
      ->capture_default_str();
  app.add_option("--distill-lr", o.distill_lr, "student learning rate")
      ->check(pos)
      ->capture_default_str();
  app.add_option("--eval-samples", o.eval_samples, "samples per held-out problem (k of pass@k)")
      ->check(one)
      ->capture_default_str();
  app.add_option("--eval-every", o.eval_every, "held-out evaluation every N GRPO steps")
      ->check(one)
      ->capture_default_str();
  app.add_option("--threads", o.threads, "libtorch intra-op threads")
      ->check(one)
      ->capture_default_str();
  app.add_option("--seed", o.seed, "seed (torch, problems, sampling)")
      ->check(nonneg)
      ->capture_default_str();
  app.add_option("--out", o.out, "output directory (steps.csv, curves.png)")->capture_default_str();
  app.add_flag("--no-progress", o.no_progress,
               "quiet: only the header, one summary line per stage and the final table (no "
               "progress bar or periodic lines)");
}

}  // namespace r1demo

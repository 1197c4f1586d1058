// SPDX-License-Identifier: Apache-2.0
/// @file main.cpp
/// @brief r1_demo: the DeepSeek-R1 recipe end to end at toy scale, in one command.
///
/// Stage 1  cold-start SFT of a tiny GRU policy on a few reference completions (format + some
/// skill) Stage 2  GRPO: groups of samples at a temperature, rule rewards (math verifier on the
/// extracted
///          answer + the R1 format rule), group-normalised advantages, clipped ratio loss with a
///          KL penalty to the frozen starting policy, through the fused logits -> loss + gradient
///          path
/// Stage 3  distillation of the GRPO policy into a smaller student on teacher samples and logits
/// Held-out pass@1 / pass@k on problems never trained on, before and after each stage.

#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bridge.hpp"
#include "model.hpp"
#include "report.hpp"
#include "task.hpp"

namespace r1demo {
namespace {

struct options {
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
  // stage 3
  int distill_steps = 2500, distill_batch = 64, distill_pool = 4096;
  double distill_lr = 3e-3, distill_temperature = 1.0;
  // evaluation
  int eval_samples = 8, eval_every = 100;
  double eval_temperature = 0.6;
  // run
  int threads = 1;
  uint64_t seed = 1;
  std::string out = "r1_demo_out";
  bool progress = true;
};

struct eval_result {
  double pass1 = 0, passk = 0, format = 0;
};

/// Per-completion rule rewards: accuracy (math verifier on the extracted answer) and format.
struct scored {
  std::vector<float> reward, accuracy, format;
};

scored score(const std::vector<std::string>& texts, const std::vector<const problem*>& probs,
             double format_weight) {
  scored s;
  s.reward.resize(texts.size());
  s.accuracy.resize(texts.size());
  s.format.resize(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    s.accuracy[i] = static_cast<float>(accuracy_reward(texts[i], probs[i]->gold));
    s.format[i] = static_cast<float>(format_reward(texts[i]));
    s.reward[i] = s.accuracy[i] + static_cast<float>(format_weight) * s.format[i];
  }
  return s;
}

torch::Tensor stack_prompts(const std::vector<const problem*>& probs) {
  const auto n = static_cast<int64_t>(probs.size());
  const auto tp = static_cast<int64_t>(probs.front()->prompt.size());
  auto t = torch::empty({n, tp}, torch::kLong);
  auto a = t.accessor<int64_t, 2>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < tp; ++j) a[i][j] = probs[static_cast<size_t>(i)]->prompt[j];
  return t;
}

/// Longest completion the task needs, with slack for the policy to ramble (and be truncated):
/// two copies of the answer (scratchpad, answer) + 8 tags/newlines + eos + 2.
int64_t max_new_tokens(const generator& g) {
  return 2 * g.answer_length() + 11;
}

/// pass@1 = mean accuracy over k samples per problem; pass@k = 1 - C(n-c, k)/C(n, k) with n = k,
/// i.e. the fraction of problems with at least one correct sample.
eval_result evaluate(policy& pol, const std::vector<problem>& set, const options& o,
                     int64_t max_new, uint64_t salt) {
  pol->eval();
  std::mt19937_64 rng(o.seed * 7919 + salt);  // evaluation never perturbs the training RNG
  std::vector<const problem*> probs;
  for (const auto& p : set)
    for (int k = 0; k < o.eval_samples; ++k) probs.push_back(&p);
  auto r = sample(pol, stack_prompts(probs), max_new, o.eval_temperature, rng);
  auto s = score(r.texts, probs, o.format_weight);
  eval_result e;
  for (size_t i = 0; i < set.size(); ++i) {
    int c = 0;
    for (int k = 0; k < o.eval_samples; ++k) c += s.accuracy[i * o.eval_samples + k] > 0.5f;
    e.pass1 += static_cast<double>(c) / o.eval_samples;
    e.passk += c > 0;
  }
  e.pass1 /= static_cast<double>(set.size());
  e.passk /= static_cast<double>(set.size());
  e.format =
      std::accumulate(s.format.begin(), s.format.end(), 0.0) / static_cast<double>(s.format.size());
  pol->train();
  return e;
}

/// Next-token logits for the completion slots: position Tp-1+t predicts completion token t.
torch::Tensor completion_logits(policy& pol, const torch::Tensor& ids, int64_t tp,
                                int64_t max_new) {
  auto logits = pol->forward(ids.narrow(1, 0, tp + max_new - 1));
  return logits.narrow(1, tp - 1, max_new);
}

/// Linear learning-rate decay: `base` at step 1, `base * final_frac` at step `steps` (a calmer end
/// of training, so the final policy is not caught mid-oscillation).
void set_linear_lr(torch::optim::Adam& opt, double base, int step, int steps, double final_frac) {
  const double frac = steps > 1 ? static_cast<double>(step - 1) / (steps - 1) : 0.0;
  static_cast<torch::optim::AdamOptions&>(opt.param_groups()[0].options())
      .lr(base * (1.0 - frac * (1.0 - final_frac)));
}

void print_eval(const char* who, const eval_result& e, int k) {
  std::printf("  %-28s pass@1 %5.1f%%  pass@%d %5.1f%%  format %5.1f%%\n", who, 100 * e.pass1, k,
              100 * e.passk, 100 * e.format);
}

void validate(const options& o) {
  auto need = [](bool ok, const char* what) {
    if (!ok) throw std::invalid_argument(what);
  };
  need(o.group >= 2, "--group must be >= 2 (GRPO compares samples within a group)");
  need(o.prompts >= 1 && o.steps >= 0 && o.sft_steps >= 0 && o.distill_steps >= 0,
       "--prompts must be >= 1 and step counts >= 0");
  need(o.minibatches >= 1 && (o.prompts * o.group) % o.minibatches == 0,
       "--minibatches must divide prompts * group");
  need(o.temperature > 0 && o.eval_temperature >= 0, "--temperature must be > 0");
  need(o.lr > 0 && o.lr_final >= 0 && o.lr_final <= 1, "--lr must be > 0 and --lr-final in [0, 1]");
  need(o.eval_samples >= 1 && o.eval_every >= 1 && o.heldout >= 1,
       "--eval-samples, --eval-every and --heldout must be >= 1");
  need(o.hidden >= 1 && o.student_hidden >= 1 && o.embed >= 1 && o.layers >= 1 && o.threads >= 1,
       "model sizes and --threads must be >= 1");
  need(o.sft_batch >= 1 && o.distill_batch >= 1 && o.sft_examples >= 0 && o.distill_pool >= 1,
       "batch sizes and --distill-pool must be >= 1");
  need(o.distill_temperature > 0, "--distill-temperature must be > 0");
}

int run(const options& o) {
  validate(o);
  torch::manual_seed(o.seed);
  torch::set_num_threads(o.threads);
  std::filesystem::create_directories(o.out);
  logger log(o.out, o.progress);
  stopwatch total;

  generator gen(task_options{o.digits, o.terms, o.ops}, o.seed);
  const auto heldout = gen.held_out(o.heldout);
  std::mt19937_64 rng(o.seed);
  const int64_t tp = gen.prompt_length();
  const int64_t max_new = max_new_tokens(gen);

  policy pol(model_options{o.embed, o.hidden, o.layers});
  std::printf(
      "r1_demo: %d terms of %d digit(s) with '%s', held-out %d, policy GRU %lld params, "
      "student %lld hidden, %d threads, seed %llu\n",
      o.terms, o.digits, o.ops.c_str(), o.heldout, static_cast<long long>(pol->parameter_count()),
      static_cast<long long>(o.student_hidden), o.threads, static_cast<unsigned long long>(o.seed));
  const auto e_init = evaluate(pol, heldout, o, max_new, 0);

  // ---------------------------------------------------------------- stage 1: cold-start SFT
  stopwatch t_sft;
  int64_t sft_tokens = 0;
  std::vector<problem> sft_set;
  for (int i = 0; i < o.sft_examples; ++i) sft_set.push_back(gen.train());
  {
    torch::optim::Adam opt(pol->parameters(), torch::optim::AdamOptions(o.sft_lr));
    const int64_t tc = max_new;
    const int sft_steps = o.sft_examples > 0 ? o.sft_steps : 0;  // no examples: R1-Zero
    for (int step = 1; step <= sft_steps; ++step) {
      std::vector<const problem*> batch;
      std::uniform_int_distribution<size_t> pick(0, sft_set.size() - 1);
      for (int i = 0; i < o.sft_batch; ++i) batch.push_back(&sft_set[pick(rng)]);
      auto ids = torch::full({o.sft_batch, tp + tc}, static_cast<int64_t>(tok_pad), torch::kLong);
      auto mask = torch::zeros({o.sft_batch, tc});
      ids.narrow(1, 0, tp).copy_(stack_prompts(batch));
      auto ia = ids.accessor<int64_t, 2>();
      auto ma = mask.accessor<float, 2>();
      for (int b = 0; b < o.sft_batch; ++b) {
        auto c = generator::reference_completion(*batch[static_cast<size_t>(b)]);
        for (size_t t = 0; t < c.size() && static_cast<int64_t>(t) < tc; ++t) {
          ia[b][tp + static_cast<int64_t>(t)] = c[t];
          ma[b][static_cast<int64_t>(t)] = 1.f;
        }
      }
      // Labels: the reference tokens, -100 (ignored) after eos.
      auto labels = ids.narrow(1, tp, tc).masked_fill(mask.eq(0), -100);
      auto logits = completion_logits(pol, ids, tp, tc);
      auto l = sft_step(logits, labels);
      opt.zero_grad();
      logits.backward(l.grad);
      opt.step();
      step_row r{"sft", step, l.loss};
      r.elapsed_s = t_sft.wall();
      sft_tokens += static_cast<int64_t>(mask.sum().item<double>());
      r.tokens_per_s = static_cast<double>(sft_tokens) / std::max(1e-9, r.elapsed_s);
      log.row(r);
      log.bar(r, sft_steps);
    }
    log.end_bar();
  }
  const double sft_time = t_sft.wall(), sft_cpu = t_sft.cpu();
  const auto e_base = evaluate(pol, heldout, o, max_new, 1);

  // ---------------------------------------------------------------- stage 2: GRPO
  stopwatch t_grpo;
  policy ref = frozen_copy(pol);
  int64_t grpo_tokens = 0;
  double phase[4] = {0, 0, 0, 0};  // CPU s: sampling, rewards, old/ref log-probs, updates
  {
    torch::optim::Adam opt(pol->parameters(), torch::optim::AdamOptions(o.lr));
    // TRL GRPOTrainer, loss_type "grpo": token mean per sequence then mean over sequences, PPO
    // ratio clip eps, k3 KL estimator to the reference with coefficient beta.
    grpo::trl_args ta;
    ta.loss_type = "grpo";
    ta.beta = o.kl_beta;
    ta.epsilon = o.clip_eps;
    const grpo::loss_options lo = grpo::from_trl(ta);
    const auto tau = static_cast<float>(o.temperature);
    const int n = o.prompts * o.group;
    step_row start{"grpo", 0};  // the starting point of the curves: the cold-start policy
    start.heldout_pass1 = e_base.pass1;
    log.row(start);
    for (int step = 1; step <= o.steps; ++step) {
      set_linear_lr(opt, o.lr, step, o.steps, o.lr_final);
      // Rollout: each prompt o.group times, sampled at the training temperature.
      std::vector<problem> ps;
      for (int i = 0; i < o.prompts; ++i) ps.push_back(gen.train());
      std::vector<const problem*> probs;
      for (const auto& p : ps)
        for (int g = 0; g < o.group; ++g) probs.push_back(&p);
      double c0 = stopwatch::cpu_now();
      auto r = sample(pol, stack_prompts(probs), max_new, o.temperature, rng);
      grpo_tokens += r.generated_tokens;
      double c1 = stopwatch::cpu_now();
      auto s = score(r.texts, probs, o.format_weight);
      double c2 = stopwatch::cpu_now();
      phase[0] += c1 - c0;
      phase[1] += c2 - c1;
      auto adv_v = group_advantages(s.reward, o.group);
      auto adv = torch::from_blob(adv_v.data(), {n}, torch::kFloat).clone();
      auto targets = r.ids.narrow(1, tp, max_new);
      // Old (behaviour) and reference log-probs, at the sampling temperature.
      torch::Tensor old_logp, ref_logp;
      {
        torch::NoGradGuard ng;
        old_logp =
            selective_logp(completion_logits(pol, r.ids, tp, max_new), targets, tau, o.threads);
        ref_logp =
            selective_logp(completion_logits(ref, r.ids, tp, max_new), targets, tau, o.threads);
      }
      double c3 = stopwatch::cpu_now();
      phase[2] += c3 - c2;
      // Update: o.minibatches optimizer steps on shuffled slices of the rollout (the later ones
      // are off-policy, which is what the ratio clip is for).
      std::vector<int64_t> perm(static_cast<size_t>(n));
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      auto perm_t = torch::from_blob(perm.data(), {n}, torch::kLong).clone();
      double loss = 0, kl = 0, clip = 0, ent = 0;
      const int64_t mb = n / o.minibatches;
      for (int m = 0; m < o.minibatches; ++m) {
        auto idx = perm_t.narrow(0, m * mb, mb);
        auto ids_m = r.ids.index_select(0, idx);
        auto logits = completion_logits(pol, ids_m, tp, max_new);
        auto l = grpo_step(lo, logits, targets.index_select(0, idx), old_logp.index_select(0, idx),
                           ref_logp.index_select(0, idx), adv.index_select(0, idx),
                           r.mask.index_select(0, idx), tau, o.threads);
        opt.zero_grad();
        logits.backward(l.grad);
        torch::nn::utils::clip_grad_norm_(pol->parameters(), 1.0);
        opt.step();
        loss += l.loss / o.minibatches;
        kl += l.kl / o.minibatches;
        clip += l.clip_frac / o.minibatches;
        ent += l.entropy / o.minibatches;
      }
      phase[3] += stopwatch::cpu_now() - c3;
      step_row row{"grpo", step, loss};
      row.reward = std::accumulate(s.reward.begin(), s.reward.end(), 0.0) / n;
      row.accuracy = std::accumulate(s.accuracy.begin(), s.accuracy.end(), 0.0) / n;
      row.format = std::accumulate(s.format.begin(), s.format.end(), 0.0) / n;
      row.kl = kl;
      row.clip_frac = clip;
      row.entropy = ent;
      row.elapsed_s = t_grpo.wall();
      row.tokens_per_s = static_cast<double>(grpo_tokens) / std::max(1e-9, row.elapsed_s);
      if (step % o.eval_every == 0 || step == o.steps)
        row.heldout_pass1 =
            evaluate(pol, heldout, o, max_new, 1000 + static_cast<uint64_t>(step)).pass1;
      log.row(row);
      log.bar(row, o.steps);
    }
    log.end_bar();
  }
  const double grpo_time = t_grpo.wall(), grpo_cpu = t_grpo.cpu();
  std::printf(
      "GRPO CPU time: sampling %.1f s, rewards %.1f s, old/ref log-probs %.1f s, "
      "updates %.1f s\n",
      phase[0], phase[1], phase[2], phase[3]);
  const auto e_grpo = evaluate(pol, heldout, o, max_new, 2);

  // ---------------------------------------------------------------- stage 3: distillation
  // As in the R1 paper: the teacher answers fresh training prompts, rejection sampling keeps the
  // completions the rule rewards grade correct (and well formatted), and the smaller student
  // learns from that fixed set, here through the teacher's full next-token distributions
  // (token-level forward KL) on those completions.
  stopwatch t_dist;
  policy student(model_options{o.embed, o.student_hidden, 1});
  int64_t dist_tokens = 0;
  int64_t pool_drawn = 0;
  std::vector<torch::Tensor> pool_ids, pool_logits, pool_mask;
  int64_t pool_size = 0;
  pol->eval();
  if (o.distill_steps > 0) {
    torch::NoGradGuard ng;
    const int chunk = 256;
    while (pool_size < o.distill_pool && pool_drawn < 16LL * o.distill_pool) {
      std::vector<problem> ps;
      for (int i = 0; i < chunk; ++i) ps.push_back(gen.train());
      std::vector<const problem*> probs;
      for (const auto& p : ps) probs.push_back(&p);
      auto r = sample(pol, stack_prompts(probs), max_new, o.distill_temperature, rng);
      pool_drawn += chunk;
      auto s = score(r.texts, probs, o.format_weight);
      std::vector<int64_t> keep;
      for (int i = 0; i < chunk; ++i)
        if (s.accuracy[static_cast<size_t>(i)] > 0.5f && s.format[static_cast<size_t>(i)] > 0.5f)
          keep.push_back(i);
      if (keep.empty()) continue;
      auto idx = torch::tensor(keep, torch::kLong);
      auto ids = r.ids.index_select(0, idx);
      pool_ids.push_back(ids);
      pool_logits.push_back(completion_logits(pol, ids, tp, max_new).contiguous());
      pool_mask.push_back(r.mask.index_select(0, idx));
      pool_size += static_cast<int64_t>(keep.size());
    }
  }
  if (o.distill_steps > 0 && pool_size == 0)
    std::fprintf(stderr, "r1_demo: the teacher solved none of %lld prompts; no distillation\n",
                 static_cast<long long>(pool_drawn));
  if (pool_size > 0) {
    const auto all_ids = torch::cat(pool_ids), all_logits = torch::cat(pool_logits),
               all_mask = torch::cat(pool_mask);
    std::printf(
        "distillation set: %lld correct teacher completions kept of %lld sampled (%.1f%%)\n",
        static_cast<long long>(pool_size), static_cast<long long>(pool_drawn),
        100.0 * static_cast<double>(pool_size) / static_cast<double>(pool_drawn));
    torch::optim::Adam opt(student->parameters(), torch::optim::AdamOptions(o.distill_lr));
    std::uniform_int_distribution<int64_t> pick(0, pool_size - 1);
    for (int step = 1; step <= o.distill_steps; ++step) {
      set_linear_lr(opt, o.distill_lr, step, o.distill_steps, o.lr_final);
      std::vector<int64_t> rows(static_cast<size_t>(o.distill_batch));
      for (auto& v : rows) v = pick(rng);
      auto idx = torch::tensor(rows, torch::kLong);
      auto ids = all_ids.index_select(0, idx);
      auto mask = all_mask.index_select(0, idx);
      dist_tokens += static_cast<int64_t>(mask.sum().item<double>());
      auto s_logits = completion_logits(student, ids, tp, max_new);
      auto l = distill_step(s_logits, all_logits.index_select(0, idx), mask);
      opt.zero_grad();
      s_logits.backward(l.grad);
      opt.step();
      step_row row{"distill", step, l.loss};
      row.elapsed_s = t_dist.wall();
      row.tokens_per_s = static_cast<double>(dist_tokens) / std::max(1e-9, row.elapsed_s);
      if (step % (o.eval_every * 2) == 0 || step == o.distill_steps)
        row.heldout_pass1 =
            evaluate(student, heldout, o, max_new, 2000 + static_cast<uint64_t>(step)).pass1;
      log.row(row);
      log.bar(row, o.distill_steps);
    }
    log.end_bar();
  }
  pol->train();
  const double dist_time = t_dist.wall(), dist_cpu = t_dist.cpu();
  const auto e_student = evaluate(student, heldout, o, max_new, 3);

  // ---------------------------------------------------------------- report
  const std::string no_png =
      plot_curves(o.out, o.sft_examples > 0 && o.sft_steps > 0, pool_size > 0);
  std::printf("\nHeld-out evaluation (%d problems never trained on, %d samples each at T=%.1f)\n",
              o.heldout, o.eval_samples, o.eval_temperature);
  print_eval("random init", e_init, o.eval_samples);
  std::printf("\n%-24s %7s %7s %7s %7s %8s %8s %9s\n", "model (stage)", "params", "pass@1",
              "pass@k", "format", "wall s", "CPU s", "tok/s");
  auto line = [&](const char* name, int64_t params, const eval_result& e, double t, double c,
                  int64_t tokens) {
    std::printf("%-24s %7lld %6.1f%% %6.1f%% %6.1f%% %8.1f %8.1f %9.0f\n", name,
                static_cast<long long>(params), 100 * e.pass1, 100 * e.passk, 100 * e.format, t, c,
                static_cast<double>(tokens) / std::max(1e-9, t));
  };
  line("base (cold-start SFT)", pol->parameter_count(), e_base, sft_time, sft_cpu, sft_tokens);
  line("GRPO policy", pol->parameter_count(), e_grpo, grpo_time, grpo_cpu, grpo_tokens);
  line("distilled student", student->parameter_count(), e_student, dist_time, dist_cpu,
       dist_tokens);
  const double gain = e_grpo.pass1 - e_base.pass1;
  if (gain >= 0.01 && pool_size > 0)
    std::printf("\nGRPO gain: %+.1f points pass@1; student keeps %.0f%% of it\n", 100 * gain,
                100 * (e_student.pass1 - e_base.pass1) / gain);
  else
    std::printf("\nGRPO gain: %+.1f points pass@1%s\n", 100 * gain,
                pool_size > 0 || o.distill_steps == 0
                    ? ""
                    : "; no distillation (the teacher solved no prompt)");
  std::printf("total %.1f s wall, %.1f s CPU; CSV %s/steps.csv%s\n", total.wall(), total.cpu(),
              o.out.c_str(),
              no_png.empty() ? (", plot " + o.out + "/curves.png").c_str()
                             : (" (no PNG: " + no_png + ")").c_str());
  return 0;
}

}  // namespace
}  // namespace r1demo

int main(int argc, char** argv) {
  r1demo::options o;
  CLI::App app{"r1_demo: cold-start SFT -> GRPO with rule rewards -> distillation, at toy scale"};
  app.add_option("--digits", o.digits, "digits of each operand (task difficulty)")
      ->capture_default_str();
  app.add_option("--terms", o.terms, "operands per problem (task difficulty)")
      ->capture_default_str();
  app.add_option("--ops", o.ops, "operators to draw from, subset of \"+-\"")->capture_default_str();
  app.add_option("--heldout", o.heldout, "held-out problems for evaluation")->capture_default_str();
  app.add_option("--hidden", o.hidden, "policy GRU width (model size)")->capture_default_str();
  app.add_option("--layers", o.layers, "policy GRU layers")->capture_default_str();
  app.add_option("--embed", o.embed, "token embedding width")->capture_default_str();
  app.add_option("--student-hidden", o.student_hidden, "student GRU width")->capture_default_str();
  app.add_option("--sft-examples", o.sft_examples, "cold-start examples (0: R1-Zero, no SFT)")
      ->capture_default_str();
  app.add_option("--sft-steps", o.sft_steps, "cold-start SFT steps")->capture_default_str();
  app.add_option("--sft-lr", o.sft_lr, "cold-start learning rate")->capture_default_str();
  app.add_option("--steps", o.steps, "GRPO steps")->capture_default_str();
  app.add_option("--prompts", o.prompts, "prompts per GRPO step")->capture_default_str();
  app.add_option("--group", o.group, "samples per prompt (group size)")->capture_default_str();
  app.add_option("--minibatches", o.minibatches, "optimizer steps per rollout")
      ->capture_default_str();
  app.add_option("--temperature", o.temperature, "sampling temperature")->capture_default_str();
  app.add_option("--lr", o.lr, "GRPO learning rate")->capture_default_str();
  app.add_option("--lr-final", o.lr_final,
                 "learning rate at the last GRPO / distillation step, as a fraction of --lr / "
                 "--distill-lr (linear decay; 1 = constant)")
      ->capture_default_str();
  app.add_option("--clip-eps", o.clip_eps, "ratio clip epsilon")->capture_default_str();
  app.add_option("--kl-beta", o.kl_beta, "KL penalty to the starting policy")
      ->capture_default_str();
  app.add_option("--format-weight", o.format_weight, "weight of the format reward")
      ->capture_default_str();
  app.add_option("--distill-steps", o.distill_steps, "distillation steps")->capture_default_str();
  app.add_option("--distill-batch", o.distill_batch, "teacher samples per distillation step")
      ->capture_default_str();
  app.add_option("--distill-pool", o.distill_pool,
                 "correct teacher completions to collect for distillation")
      ->capture_default_str();
  app.add_option("--distill-temperature", o.distill_temperature,
                 "teacher sampling temperature for the distillation set")
      ->capture_default_str();
  app.add_option("--distill-lr", o.distill_lr, "student learning rate")->capture_default_str();
  app.add_option("--eval-samples", o.eval_samples, "samples per held-out problem (k of pass@k)")
      ->capture_default_str();
  app.add_option("--eval-every", o.eval_every, "held-out evaluation every N GRPO steps")
      ->capture_default_str();
  app.add_option("--threads", o.threads, "libtorch intra-op threads")->capture_default_str();
  app.add_option("--seed", o.seed, "seed (torch, problems, sampling)")->capture_default_str();
  app.add_option("--out", o.out, "output directory (steps.csv, curves.png)")->capture_default_str();
  app.add_flag("!--no-progress", o.progress, "no progress bar");
  CLI11_PARSE(app, argc, argv);
  try {
    return r1demo::run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nr1_demo: error: %s\n", e.what());
    return 1;
  }
}

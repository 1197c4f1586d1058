// SPDX-License-Identifier: Apache-2.0
/// @file main.cpp
/// @brief r1_demo: the DeepSeek-R1 recipe end to end at toy scale, in one command.
///
/// Default pipeline (the R1 reasoning stages and the distillation the paper adds):
///   stage 1  cold-start SFT of a tiny GRU policy on reference completions (format + some skill)
///   stage 2  GRPO: groups of samples at a temperature, rule rewards (math verifier on the
///            extracted answer + the R1 format rule), group-normalised advantages, clipped ratio
///            loss with a KL penalty to the frozen stage start, through the fused logits -> loss +
///            gradient path
///   distill  the final policy's correct samples (rejection sampling) teach a smaller student
///            through the teacher's logits
/// `--pipeline r1` adds the paper's two further stages between GRPO and distillation:
///   stage 3  rejection-sampling SFT: the policy answers fresh prompts, the rule rewards keep the
///            correct, well-formatted completions, and the policy is fine-tuned on them mixed with
///            the cold-start data
///   stage 4  a second GRPO stage whose reward adds a length (DAPO soft overlong) and a repetition
///            (n-gram) term to accuracy and format
/// Held-out pass@1 / pass@k on problems never trained on, before and after each stage.

#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <grpo/presets.hpp>
#include <iostream>
#include <numeric>
#include <optional>
#include <random>
#include <rewards/length.hpp>
#include <rewards/repetition.hpp>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bridge.hpp"
#include "model.hpp"
#include "options.hpp"
#include "report.hpp"
#include "task.hpp"

namespace r1demo {
namespace {

struct eval_result {
  double pass1 = 0, passk = 0, format = 0;
};

/// What the final table prints for one stage.
struct stage_report {
  stage_report(std::string name_, std::string row_, int64_t params_)
      : name(std::move(name_)), row(std::move(row_)), params(params_) {}
  std::string name;  ///< summary line label, e.g. "stage 2: GRPO"
  std::string row;   ///< table row label, e.g. "GRPO policy"
  int64_t params = 0;
  eval_result eval;
  double wall = 0, cpu = 0;
  int64_t tokens = 0;
  std::string skipped;  ///< non-empty: the stage did not run, and why
};

/// Reward = accuracy + format x format rule [+ length x soft overlong + repetition x n-gram term].
struct reward_weights {
  double format = 0.5, length = 0, repetition = 0;
};

/// Per-completion rule rewards: accuracy (math verifier on the extracted answer), format, and the
/// total reward GRPO optimises.
struct scored {
  std::vector<float> reward, accuracy, format;
};

/// Length and repetition terms of stage 4, on the generated tokens (eos included) of one row.
/// Length: DAPO soft overlong punishment with L_max = the completion budget and L_cache = the
/// budget minus the longest reference completion: 0 up to that length, then linear down to -1 at
/// truncation. Repetition: open-r1 / TRL n-gram penalty on token ids, n = 5, max -1: the
/// reference completions of the default task score 0 (the demo prints the mean at stage 4 start).
double shaping_reward(const int64_t* ids, int64_t len, int64_t max_new, int64_t ref_len,
                      const reward_weights& w) {
  namespace rw = grpo::rewards;
  double r = 0;
  if (w.length > 0) {
    rw::overlong_options lo;
    lo.max_len = max_new;
    lo.cache_len = std::max<int64_t>(1, max_new - ref_len);
    r += w.length * rw::soft_overlong_reward(len, lo);
  }
  if (w.repetition > 0) {
    rw::repetition_options ro;
    ro.ngram_size = 5;
    r += w.repetition *
         rw::repetition_penalty_reward(std::span<const int64_t>(ids, static_cast<size_t>(len)), ro);
  }
  return r;
}

scored score(const rollout& r, const std::vector<const problem*>& probs, const reward_weights& w,
             int64_t ref_len) {
  const auto& texts = r.texts;
  scored s;
  s.reward.resize(texts.size());
  s.accuracy.resize(texts.size());
  s.format.resize(texts.size());
  const bool shaped = w.length > 0 || w.repetition > 0;
  auto mask = r.mask.contiguous();
  for (size_t i = 0; i < texts.size(); ++i) {
    s.accuracy[i] = static_cast<float>(accuracy_reward(texts[i], probs[i]->gold));
    s.format[i] = static_cast<float>(format_reward(texts[i]));
    double total = s.accuracy[i] + w.format * s.format[i];
    if (shaped) {
      const auto b = static_cast<int64_t>(i);
      const auto len = static_cast<int64_t>(mask[b].sum().item<float>());
      total +=
          shaping_reward(r.ids[b].data_ptr<int64_t>() + r.prompt_len, len, r.max_new, ref_len, w);
    }
    s.reward[i] = static_cast<float>(total);
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
/// the longest reference completion + 1.
int64_t max_new_tokens(const generator& g) {
  return 2 * g.answer_length() + 11;
}
/// Longest reference completion: two copies of the answer (scratchpad, answer), 4 tags, 5
/// newlines and eos.
int64_t reference_length(const generator& g) {
  return 2 * g.answer_length() + 10;
}

double mean(const std::vector<float>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

/// Everything the stages share.
struct run_state {
  const options& o;
  generator gen;
  std::vector<problem> heldout;
  std::mt19937_64 rng;
  int64_t tp = 0, max_new = 0, ref_len = 0;
  logger log;
  std::vector<problem> cold_start;  ///< stage 1's problems (stage 3 mixes them back in)

  run_state(const options& opt)
      : o(opt),
        gen(task_options{opt.digits, opt.terms, opt.ops}, opt.seed),
        heldout(gen.held_out(opt.heldout)),
        rng(opt.seed),
        tp(gen.prompt_length()),
        max_new(max_new_tokens(gen)),
        ref_len(reference_length(gen)),
        log(opt.out, !opt.no_progress) {}
};

/// pass@1 = mean accuracy over k samples per problem; pass@k = 1 - C(n-c, k)/C(n, k) with n = k,
/// i.e. the fraction of problems with at least one correct sample. The salt picks the sampling
/// seed: the same salt gives the same evaluation.
eval_result evaluate(run_state& s, policy& pol, uint64_t salt) {
  const options& o = s.o;
  pol->eval();
  std::mt19937_64 rng(o.seed * 7919 + salt);  // evaluation never perturbs the training RNG
  std::vector<const problem*> probs;
  for (const auto& p : s.heldout)
    for (int k = 0; k < o.eval_samples; ++k) probs.push_back(&p);
  auto r = sample(pol, stack_prompts(probs), s.max_new, o.eval_temperature, rng);
  auto sc = score(r, probs, reward_weights{o.format_weight}, s.ref_len);
  eval_result e;
  for (size_t i = 0; i < s.heldout.size(); ++i) {
    int c = 0;
    for (int k = 0; k < o.eval_samples; ++k) c += sc.accuracy[i * o.eval_samples + k] > 0.5f;
    e.pass1 += static_cast<double>(c) / o.eval_samples;
    e.passk += c > 0;
  }
  e.pass1 /= static_cast<double>(s.heldout.size());
  e.passk /= static_cast<double>(s.heldout.size());
  e.format = mean(sc.format);
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

void print_stage(const stage_report& r, const char* what) {
  if (!r.skipped.empty())
    std::printf("%s: skipped (%s)\n", r.name.c_str(), r.skipped.c_str());
  else
    std::printf("%s: %s; held-out pass@1 %.1f%%, format %.1f%% (%.1f s wall)\n", r.name.c_str(),
                what, 100 * r.eval.pass1, 100 * r.eval.format, r.wall);
  std::fflush(stdout);
}

// ------------------------------------------------------------------------------------ SFT

/// One SFT example: prompt tokens and the completion to imitate (eos included).
struct sft_example {
  std::vector<int64_t> prompt;
  std::vector<int64_t> completion;
};

/// SFT of `pol` on `data` (uniform batches of o.sft_batch), loss and gradient into the logits from
/// grpo::distill::sft_loss. The last step's row carries the held-out evaluation `salt` (the one
/// the table prints).
stage_report sft_stage(run_state& s, policy& pol, const std::vector<sft_example>& data, int steps,
                       double lr, const char* stage, const char* name, const char* label,
                       uint64_t salt) {
  const options& o = s.o;
  stage_report rep{name, label, pol->parameter_count()};
  stopwatch t;
  torch::optim::Adam opt(pol->parameters(), torch::optim::AdamOptions(lr));
  const int64_t tc = s.max_new, tp = s.tp;
  if (data.empty()) steps = 0;
  std::optional<eval_result> last;
  double loss = 0;
  for (int step = 1; step <= steps; ++step) {
    std::vector<const sft_example*> batch;
    std::uniform_int_distribution<size_t> pick(0, data.size() - 1);
    for (int i = 0; i < o.sft_batch; ++i) batch.push_back(&data[pick(s.rng)]);
    auto ids = torch::full({o.sft_batch, tp + tc}, static_cast<int64_t>(tok_pad), torch::kLong);
    auto mask = torch::zeros({o.sft_batch, tc});
    auto ia = ids.accessor<int64_t, 2>();
    auto ma = mask.accessor<float, 2>();
    for (int b = 0; b < o.sft_batch; ++b) {
      const auto& ex = *batch[static_cast<size_t>(b)];
      for (int64_t j = 0; j < tp; ++j) ia[b][j] = ex.prompt[static_cast<size_t>(j)];
      const auto& c = ex.completion;
      for (size_t k = 0; k < c.size() && static_cast<int64_t>(k) < tc; ++k) {
        ia[b][tp + static_cast<int64_t>(k)] = c[k];
        ma[b][static_cast<int64_t>(k)] = 1.f;
      }
    }
    // Labels: the completion tokens, -100 (ignored) after eos.
    auto labels = ids.narrow(1, tp, tc).masked_fill(mask.eq(0), -100);
    auto logits = completion_logits(pol, ids, tp, tc);
    auto l = sft_step(logits, labels);
    opt.zero_grad();
    logits.backward(l.grad);
    opt.step();
    loss = l.loss;
    step_row r{stage, step, l.loss};
    r.elapsed_s = t.wall();
    rep.tokens += static_cast<int64_t>(mask.sum().item<double>());
    r.tokens_per_s = static_cast<double>(rep.tokens) / std::max(1e-9, r.elapsed_s);
    if (step == steps) r.heldout_pass1 = (last = evaluate(s, pol, salt))->pass1;
    s.log.row(r);
    s.log.bar(r, steps);
  }
  s.log.end_bar();
  rep.wall = t.wall();
  rep.cpu = t.cpu();
  rep.eval = last ? *last : evaluate(s, pol, salt);
  if (steps == 0) rep.skipped = data.empty() ? "no examples" : "0 steps";
  char what[96];
  std::snprintf(what, sizeof what, "%d steps on %zu examples, final NLL %.4f", steps, data.size(),
                loss);
  print_stage(rep, what);
  return rep;
}

// ------------------------------------------------------------------------------------ GRPO

/// One GRPO stage on `pol`: o.prompts x o.group samples per step, rule rewards with weights `w`,
/// TRL group advantages, the fused GRPO step (TRL loss_type "grpo", clip eps, k3 KL to the frozen
/// policy of the stage start with coefficient beta). Held-out evaluation every o.eval_every steps
/// (salt `salt_base + step`) and at the last step with `final_salt`, the table's evaluation.
/// `start` is the held-out result of the stage's starting policy (the curve's step 0).
stage_report grpo_stage(run_state& s, policy& pol, int steps, double base_lr, const char* stage,
                        const char* name, const char* label, const reward_weights& w,
                        uint64_t salt_base, uint64_t final_salt, const eval_result& start) {
  const options& o = s.o;
  stage_report rep{name, label, pol->parameter_count()};
  stopwatch t;
  policy ref = frozen_copy(pol);
  double phase[4] = {0, 0, 0, 0};  // CPU s: sampling, rewards, old/ref log-probs, updates
  torch::optim::Adam opt(pol->parameters(), torch::optim::AdamOptions(base_lr));
  grpo::trl_args ta;
  ta.loss_type = "grpo";
  ta.beta = o.kl_beta;
  ta.epsilon = o.clip_eps;
  const grpo::loss_options lo = grpo::from_trl(ta);
  const auto tau = static_cast<float>(o.temperature);
  const int n = o.prompts * o.group;
  const int64_t tp = s.tp, max_new = s.max_new;
  step_row first{stage, 0};  // the starting point of the curves
  first.heldout_pass1 = start.pass1;
  s.log.row(first);
  std::optional<eval_result> last;
  double reward = 0, acc = 0;
  for (int step = 1; step <= steps; ++step) {
    set_linear_lr(opt, base_lr, step, steps, o.lr_final);
    // Rollout: each prompt o.group times, sampled at the training temperature.
    std::vector<problem> ps;
    for (int i = 0; i < o.prompts; ++i) ps.push_back(s.gen.train());
    std::vector<const problem*> probs;
    for (const auto& p : ps)
      for (int g = 0; g < o.group; ++g) probs.push_back(&p);
    double c0 = stopwatch::cpu_now();
    auto r = sample(pol, stack_prompts(probs), max_new, o.temperature, s.rng);
    rep.tokens += r.generated_tokens;
    double c1 = stopwatch::cpu_now();
    auto sc = score(r, probs, w, s.ref_len);
    double c2 = stopwatch::cpu_now();
    phase[0] += c1 - c0;
    phase[1] += c2 - c1;
    auto adv_v = group_advantages(sc.reward, o.group);
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
    std::shuffle(perm.begin(), perm.end(), s.rng);
    auto perm_t = torch::from_blob(perm.data(), {n}, torch::kLong).clone();
    double loss = 0, kl = 0, clip = 0, ent = 0;
    const int64_t mb = n / o.minibatches;
    for (int m = 0; m < o.minibatches; ++m) {
      auto idx = perm_t.narrow(0, m * mb, mb);
      auto logits = completion_logits(pol, r.ids.index_select(0, idx), tp, max_new);
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
    step_row row{stage, step, loss};
    row.reward = reward = mean(sc.reward);
    row.accuracy = acc = mean(sc.accuracy);
    row.format = mean(sc.format);
    row.kl = kl;
    row.clip_frac = clip;
    row.entropy = ent;
    row.elapsed_s = t.wall();
    row.tokens_per_s = static_cast<double>(rep.tokens) / std::max(1e-9, row.elapsed_s);
    if (step == steps)
      row.heldout_pass1 = (last = evaluate(s, pol, final_salt))->pass1;
    else if (step % o.eval_every == 0)
      row.heldout_pass1 = evaluate(s, pol, salt_base + static_cast<uint64_t>(step)).pass1;
    s.log.row(row);
    s.log.bar(row, steps);
  }
  s.log.end_bar();
  rep.wall = t.wall();
  rep.cpu = t.cpu();
  rep.eval = last ? *last : evaluate(s, pol, final_salt);
  if (steps == 0) rep.skipped = "0 steps";
  char what[256];
  std::snprintf(what, sizeof what,
                "%d steps, last reward %.3f, train accuracy %.1f%%; CPU s: sampling %.1f, "
                "rewards %.1f, old/ref log-probs %.1f, updates %.1f",
                steps, reward, 100 * acc, phase[0], phase[1], phase[2], phase[3]);
  print_stage(rep, what);
  return rep;
}

// ------------------------------------------------------------------------------------ rejection
// sampling

/// Completions kept by rejection sampling: ids [N, Tp + max_new], mask [N, max_new] and, when
/// asked, the sampling policy's logits on them [N, max_new, V].
struct sample_pool {
  torch::Tensor ids, mask, logits;
  int64_t size = 0, drawn = 0;
};

/// As in the R1 paper: the policy answers fresh training prompts (chunks of 256 at
/// `temperature`), and the rule rewards keep the completions graded correct and well formatted,
/// until `target` are kept or 16 x target prompts were drawn.
sample_pool rejection_sample(run_state& s, policy& pol, int64_t target, double temperature,
                             bool with_logits) {
  sample_pool out;
  std::vector<torch::Tensor> ids, mask, logits;
  torch::NoGradGuard ng;
  pol->eval();
  const int chunk = 256;
  while (out.size < target && out.drawn < 16 * target) {
    std::vector<problem> ps;
    for (int i = 0; i < chunk; ++i) ps.push_back(s.gen.train());
    std::vector<const problem*> probs;
    for (const auto& p : ps) probs.push_back(&p);
    auto r = sample(pol, stack_prompts(probs), s.max_new, temperature, s.rng);
    out.drawn += chunk;
    auto sc = score(r, probs, reward_weights{s.o.format_weight}, s.ref_len);
    std::vector<int64_t> keep;
    for (int i = 0; i < chunk; ++i)
      if (sc.accuracy[static_cast<size_t>(i)] > 0.5f && sc.format[static_cast<size_t>(i)] > 0.5f)
        keep.push_back(i);
    if (keep.empty()) continue;
    auto idx = torch::tensor(keep, torch::kLong);
    ids.push_back(r.ids.index_select(0, idx));
    mask.push_back(r.mask.index_select(0, idx));
    if (with_logits)
      logits.push_back(completion_logits(pol, ids.back(), s.tp, s.max_new).contiguous());
    out.size += static_cast<int64_t>(keep.size());
  }
  pol->train();
  if (out.size > 0) {
    out.ids = torch::cat(ids);
    out.mask = torch::cat(mask);
    if (with_logits) out.logits = torch::cat(logits);
  }
  return out;
}

void print_pool(const char* what, const sample_pool& p) {
  if (p.size > 0)
    std::printf("%s: %lld correct, well-formatted completions kept of %lld sampled (%.1f%%)\n",
                what, static_cast<long long>(p.size), static_cast<long long>(p.drawn),
                100.0 * static_cast<double>(p.size) / static_cast<double>(p.drawn));
}

/// Stage 3 of R1: rejection-sampling SFT. The policy's own correct completions (rule-filtered)
/// mixed with the cold-start examples, then SFT of the same policy on the mixture.
stage_report rs_sft_stage(run_state& s, policy& pol) {
  const options& o = s.o;
  const auto pool = rejection_sample(s, pol, o.rs_pool, o.temperature, false);
  print_pool("stage 3 set", pool);
  std::vector<sft_example> data;
  // A kept row is its prompt (first Tp tokens) and its generated tokens up to eos.
  for (int64_t i = 0; i < pool.size; ++i) {
    auto row = pool.ids[i].contiguous();
    const int64_t* p = row.data_ptr<int64_t>();
    const auto len = static_cast<int64_t>(pool.mask[i].sum().item<float>());
    data.push_back(
        {std::vector<int64_t>(p, p + s.tp), std::vector<int64_t>(p + s.tp, p + s.tp + len)});
  }
  for (const auto& p : s.cold_start) data.push_back({p.prompt, generator::reference_completion(p)});
  std::printf("stage 3 data: %lld own samples + %zu cold-start examples\n",
              static_cast<long long>(pool.size), s.cold_start.size());
  auto rep =
      sft_stage(s, pol, pool.size > 0 ? data : std::vector<sft_example>{}, o.rs_steps, o.rs_lr,
                "rs_sft", "stage 3: rejection-sampled SFT", "rejection-sampled SFT", 5);
  if (pool.size == 0) {
    rep.skipped = "the policy solved none of " + std::to_string(pool.drawn) + " prompts";
    std::fprintf(stderr, "r1_demo: stage 3 skipped: %s\n", rep.skipped.c_str());
  }
  return rep;
}

// ------------------------------------------------------------------------------------ distillation

/// The final policy's correct samples teach a smaller student through the teacher's full
/// next-token distributions on them (token-level forward KL from grpo::distill::divergence_loss).
stage_report distill_stage(run_state& s, policy& teacher, policy& student) {
  const options& o = s.o;
  stage_report rep{"distillation", "distilled student", student->parameter_count()};
  stopwatch t;
  sample_pool pool;
  if (o.distill_steps > 0)
    pool = rejection_sample(s, teacher, o.distill_pool, o.distill_temperature, true);
  print_pool("distillation set", pool);
  if (o.distill_steps > 0 && pool.size == 0) {
    rep.skipped = "the teacher solved none of " + std::to_string(pool.drawn) + " prompts";
    std::fprintf(stderr, "r1_demo: distillation skipped: %s\n", rep.skipped.c_str());
  } else if (o.distill_steps == 0) {
    rep.skipped = "0 steps";
  }
  std::optional<eval_result> last;
  double loss = 0;
  if (pool.size > 0) {
    torch::optim::Adam opt(student->parameters(), torch::optim::AdamOptions(o.distill_lr));
    std::uniform_int_distribution<int64_t> pick(0, pool.size - 1);
    for (int step = 1; step <= o.distill_steps; ++step) {
      set_linear_lr(opt, o.distill_lr, step, o.distill_steps, o.lr_final);
      std::vector<int64_t> rows(static_cast<size_t>(o.distill_batch));
      for (auto& v : rows) v = pick(s.rng);
      auto idx = torch::tensor(rows, torch::kLong);
      auto ids = pool.ids.index_select(0, idx);
      auto mask = pool.mask.index_select(0, idx);
      rep.tokens += static_cast<int64_t>(mask.sum().item<double>());
      auto s_logits = completion_logits(student, ids, s.tp, s.max_new);
      auto l = distill_step(s_logits, pool.logits.index_select(0, idx), mask);
      opt.zero_grad();
      s_logits.backward(l.grad);
      opt.step();
      loss = l.loss;
      step_row row{"distill", step, l.loss};
      row.elapsed_s = t.wall();
      row.tokens_per_s = static_cast<double>(rep.tokens) / std::max(1e-9, row.elapsed_s);
      if (step == o.distill_steps)
        row.heldout_pass1 = (last = evaluate(s, student, 3))->pass1;
      else if (step % (o.eval_every * 2) == 0)
        row.heldout_pass1 = evaluate(s, student, 2000 + static_cast<uint64_t>(step)).pass1;
      s.log.row(row);
      s.log.bar(row, o.distill_steps);
    }
    s.log.end_bar();
  }
  rep.wall = t.wall();
  rep.cpu = t.cpu();
  rep.eval = last ? *last : evaluate(s, student, 3);
  char what[96];
  std::snprintf(what, sizeof what, "%d steps, final forward KL %.4f", o.distill_steps, loss);
  print_stage(rep, what);
  return rep;
}

// ------------------------------------------------------------------------------------ the run

/// Cross-option checks (each option's own range is checked by the parser).
void validate(const options& o) {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw usage_error(what);
  };
  need((o.prompts * o.group) % o.minibatches == 0,
       "--minibatches: must divide --prompts x --group (" + std::to_string(o.prompts * o.group) +
           ")");
  need(o.ops.find_first_not_of("+-") == std::string::npos,
       "--ops: must be a non-empty subset of \"+-\" (got \"" + o.ops + "\")");
  generator g(task_options{o.digits, o.terms, o.ops}, 0);
  need(o.heldout <= g.space() / 4, "--heldout: larger than a quarter of the " +
                                       std::to_string(static_cast<long long>(g.space())) +
                                       " distinct problems of this task");
}

/// Mean shaping term of stage 4 on the reference completions of the held-out problems: 0 means
/// the length and repetition terms never penalise a correct, well-formed, reference-length answer.
double reference_shaping(const run_state& s, const reward_weights& w) {
  double sum = 0;
  for (const auto& p : s.heldout) {
    auto c = generator::reference_completion(p);
    sum += shaping_reward(c.data(), static_cast<int64_t>(c.size()), s.max_new, s.ref_len, w);
  }
  return sum / static_cast<double>(s.heldout.size());
}

void print_table(const options& o, const eval_result& e_init, const std::vector<stage_report>& rs) {
  std::printf("\nHeld-out evaluation (%d problems never trained on, %d samples each at T=%.1f)\n",
              o.heldout, o.eval_samples, o.eval_temperature);
  print_eval("random init", e_init, o.eval_samples);
  std::printf("\n%-24s %7s %7s %7s %7s %8s %8s %9s\n", "model (stage)", "params", "pass@1",
              "pass@k", "format", "wall s", "CPU s", "tok/s");
  for (const auto& r : rs) {
    std::printf("%-24s %7lld %6.1f%% %6.1f%% %6.1f%% %8.1f %8.1f %9.0f%s\n", r.row.c_str(),
                static_cast<long long>(r.params), 100 * r.eval.pass1, 100 * r.eval.passk,
                100 * r.eval.format, r.wall, r.cpu,
                static_cast<double>(r.tokens) / std::max(1e-9, r.wall),
                r.skipped.empty() ? "" : ("  (skipped: " + r.skipped + ")").c_str());
  }
}

int run(const options& o) {
  torch::manual_seed(o.seed);
  torch::set_num_threads(o.threads);
  std::filesystem::create_directories(o.out);
  stopwatch total;
  run_state s(o);

  policy pol(model_options{o.embed, o.hidden, o.layers});
  std::printf(
      "r1_demo: pipeline %s, %d terms of %d digit(s) with '%s', held-out %d, policy GRU %lld "
      "params, student %lld hidden, %d threads, seed %llu\n",
      o.r1() ? "r1 (4 stages + distillation)" : "default (SFT, GRPO, distillation)", o.terms,
      o.digits, o.ops.c_str(), o.heldout, static_cast<long long>(pol->parameter_count()),
      static_cast<long long>(o.student_hidden), o.threads, static_cast<unsigned long long>(o.seed));
  std::fflush(stdout);
  const auto e_init = evaluate(s, pol, 0);
  std::vector<stage_report> reps;

  // Stage 1: cold-start SFT on reference completions (none: R1-Zero).
  std::vector<sft_example> cold;
  for (int i = 0; i < o.sft_examples; ++i) s.cold_start.push_back(s.gen.train());
  for (const auto& p : s.cold_start) cold.push_back({p.prompt, generator::reference_completion(p)});
  reps.push_back(sft_stage(s, pol, cold, o.sft_steps, o.sft_lr, "sft", "stage 1: cold-start SFT",
                           "base (cold-start SFT)", 1));
  const bool has_sft = reps.back().skipped.empty();

  // Stage 2: reasoning-oriented RL, accuracy + format.
  reps.push_back(grpo_stage(s, pol, o.steps, o.lr, "grpo", "stage 2: GRPO", "GRPO policy",
                            reward_weights{o.format_weight}, 1000, 2, reps.back().eval));
  bool has_rs = false;
  if (o.r1()) {
    // Stage 3: rejection-sampled SFT; stage 4: RL with length and repetition terms.
    reps.push_back(rs_sft_stage(s, pol));
    has_rs = reps.back().skipped.empty();
    const reward_weights w4{o.format_weight, o.length_weight, o.repetition_weight};
    std::printf(
        "stage 4 reward: accuracy + %.2f x format + %.2f x length + %.2f x repetition; "
        "shaping of the held-out reference completions: %.4f (0 = not penalised)\n",
        w4.format, w4.length, w4.repetition, reference_shaping(s, w4));
    reps.push_back(grpo_stage(s, pol, o.rl2_steps, o.rl2_lr, "grpo2",
                              "stage 4: GRPO + length/repetition", "GRPO 2 (+len, rep.)", w4, 3000,
                              4, reps.back().eval));
  }

  // Distillation of the final policy into a smaller student.
  policy student(model_options{o.embed, o.student_hidden, 1});
  reps.push_back(distill_stage(s, pol, student));
  const bool has_distill = reps.back().skipped.empty();

  plot_info pi;
  pi.has_sft = has_sft;
  pi.has_distill = has_distill;
  pi.has_rs_sft = has_rs;
  pi.has_grpo2 = o.r1() && o.rl2_steps > 0;
  pi.grpo_steps = o.steps;
  const std::string no_png = plot_curves(o.out, s.log.rows(), pi);
  print_table(o, e_init, reps);

  const auto& base = reps.front().eval;
  const auto& teacher = reps[reps.size() - 2].eval;
  const double gain = teacher.pass1 - base.pass1;
  if (gain >= 0.01 && has_distill)
    std::printf("\nRL gain: %+.1f points pass@1 (base -> %s); student keeps %.0f%% of it\n",
                100 * gain, reps[reps.size() - 2].row.c_str(),
                100 * (reps.back().eval.pass1 - base.pass1) / gain);
  else
    std::printf("\nRL gain: %+.1f points pass@1 (base -> %s)%s\n", 100 * gain,
                reps[reps.size() - 2].row.c_str(),
                has_distill || o.distill_steps == 0 ? "" : "; no distillation (see above)");
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
  // scripts/demo.sh names its output directory, so --help shows the real default.
  if (const char* out = std::getenv("R1_DEMO_OUT"); out != nullptr && *out != '\0') o.out = out;
  const char* prog = std::getenv("R1_DEMO_PROG");
  CLI::App app{
      "r1_demo: the DeepSeek-R1 recipe at toy scale: cold-start SFT -> GRPO with rule rewards -> "
      "distillation (--pipeline r1: four stages, then distillation)",
      prog != nullptr && *prog != '\0' ? prog : "scripts/demo.sh"};
  app.footer(
      "scripts/demo.sh builds and runs build/demo/examples/r1_demo/r1_demo with these options.\n"
      "A bad value stops the demo with a message naming the option and exit code 2.");
  r1demo::add_options(app, o);
  try {
    app.parse(argc, argv);
    r1demo::validate(o);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "r1_demo: error: %s\nRun with --help for the options.\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "r1_demo: error: %s\nRun with --help for the options.\n", e.what());
    return 2;
  }
  try {
    return r1demo::run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nr1_demo: error: %s\n", e.what());
    return 1;
  }
}

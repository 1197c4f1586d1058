// SPDX-License-Identifier: Apache-2.0
// Full GRPO loss over realistic shapes, forward + d loss / d logp: group advantages from
// per-sequence rewards (grpo::compute_advantages, TRL scale_rewards="group": (r - mean) / (std +
// 1e-4), groups of 16) followed by the TRL "dapo" objective (beta = 0.04, k3 KL in the loss, clip
// 0.2 / 0.28, token-mean over the batch, metrics on) through grpo::compute_loss_into. Measured in
// the same binary against
//   - the same computation written with libtorch ops (eager forward, autograd backward), and
//   - a streaming probe that reads the same four float inputs and writes one float per token,
// each at the same number of threads (third argument; OpenMP threads for our path and the probe in
// bench_loss_omp, at::set_num_threads for libtorch), so that the ratios and the fraction of the
// machine's streaming rate can be read off even on a loaded machine.
//
// Shapes {sequences, tokens}: 8192 x 4096 = 512 prompts x 16 completions x 4096 tokens (33.5M
// tokens, the shape) and 4096 x 2048 (8.4M tokens). Inputs float32: logp, old, ref, mask =
// 16 B/token read, gradient 4 B/token written (bytes_per_second counts these 20 B; rewards and
// advantages are 4 B per sequence). Process CPU time (all threads) is reported next to real time.
#include "loss_bench_inputs.hpp"

#include <grpo/advantage.hpp>
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#if defined(GRPO_BENCH_HAS_TORCH)
#include <torch/torch.h>
#endif

namespace {

using namespace grpo_bench;

/// The shape's inputs without the general engine's extra streams (loss_bench_inputs.hpp: the
/// same generator and draw order as before it was shared with bench_loss_general).
loss_inputs& shared(long B, long T) { return shared_loss_inputs(B, T, false); }

grpo::loss_options options() {
  grpo::trl_args a;
  a.loss_type = "dapo";
  a.beta = 0.04;
  a.epsilon_high = 0.28;
  return grpo::from_trl(a);
}

/// Bytes that must move: 4 float inputs read + 1 float gradient written per token.
void report(benchmark::State& st, const loss_inputs& in) { grpo_bench::report(st, in, 5); }

// advantages (grpo::compute_advantages) + loss and gradient (grpo::compute_loss_into)
void run_loss(benchmark::State& st, const grpo::loss_options& o) {
  auto& in = shared(st.range(0), st.range(1));
  set_threads(st);
  const auto ao = grpo::advantage_options::trl(grpo::trl_scale::group);
  const auto groups = grpo::group_spec::fixed(kGroup);
  grpo::loss_batch<float, float> b = base_batch(in);
  grpo::loss_outputs<float> out = base_outputs(in);
  for (auto _ : st) {
    grpo::compute_advantages(std::span<const float>(in.rewards), groups, std::span<float>(in.adv),
                             ao);
    auto r = grpo::compute_loss_into(o, b, out);
    benchmark::DoNotOptimize(r.loss);
    benchmark::ClobberMemory();
  }
  report(st, in);
}
void BM_grpo_loss(benchmark::State& st) {
  run_loss(st, options());
}
// The same with TRL importance_sampling_level="sequence" (GSPO): sequence ratios need row sums
// first, so this runs the sequence-level row path of compute_loss_into (one sweep for the row's
// sum m (lp - lo), then KL and gradient against the row constants; rows threaded too).
void BM_grpo_loss_gspo(benchmark::State& st) {
  grpo::trl_args a;
  a.loss_type = "dapo";
  a.beta = 0.04;
  a.epsilon_high = 0.28;
  a.importance_sampling_level = "sequence";
  run_loss(st, grpo::from_trl(a));
}

// The other policy-loss kinds of the token-level rows on the same workload (dapo aggregation,
// k3 KL, per-sequence advantages): CISPO, SAPO, REINFORCE.
grpo::loss_options kind_options(grpo::policy_loss_kind k) {
  grpo::loss_options o = options();
  o.policy.kind = k;
  return o;
}
void BM_grpo_loss_cispo(benchmark::State& st) {
  run_loss(st, kind_options(grpo::policy_loss_kind::cispo));
}
void BM_grpo_loss_sapo(benchmark::State& st) {
  run_loss(st, kind_options(grpo::policy_loss_kind::sapo));
}
void BM_grpo_loss_reinforce(benchmark::State& st) {
  run_loss(st, kind_options(grpo::policy_loss_kind::reinforce));
}

// The entropy term on the token rows (coefficient 1e-3, dL/dH written: one more sweep per row
// over H and the mask), float inputs: the packet rows' sweep on avx2 / avx512, the lane-generic
// sweep on GRPO_ISA=baseline.
void BM_grpo_loss_entropy(benchmark::State& st) {
  auto& in = shared_loss_inputs(st.range(0), st.range(1), true);
  set_threads(st);
  grpo::loss_options o = options();
  o.entropy_coef = 1e-3;
  grpo::loss_batch<float, float> b = base_batch(in);
  b.entropy = grpo::make_view(in.ent.data(), {in.B, in.T});
  grpo::loss_outputs<float> out = base_outputs(in);
  out.grad_entropy = grpo::make_view(in.grad_ent.data(), {in.B, in.T});
  for (auto _ : st) {
    auto r = grpo::compute_loss_into(o, b, out);
    benchmark::DoNotOptimize(r.loss);
    benchmark::ClobberMemory();
  }
  grpo_bench::report(st, in, 7);
}

/// Double copies of a shape's float inputs (the double rows: the lane-generic xsimd rows on every
/// ISA path), with entropies and both outputs.
struct f64_inputs {
  std::vector<double> lp, old, ref, mask, adv, ent, grad, grad_ent;
};
f64_inputs& shared_f64(loss_inputs& in) {
  static std::map<std::pair<long, long>, std::unique_ptr<f64_inputs>> cache;
  auto& slot = cache[{in.B, in.T}];
  if (!slot) {
    slot = std::make_unique<f64_inputs>();
    auto cp = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
    slot->lp = cp(in.lp);
    slot->old = cp(in.old);
    slot->ref = cp(in.ref);
    slot->mask = cp(in.mask);
    slot->ent = cp(in.ent);
    slot->adv.resize(in.adv.size());
    slot->grad.resize(in.lp.size());
    slot->grad_ent.resize(in.lp.size());
  }
  return *slot;
}
// The TRL dapo loss on double inputs and outputs (advantages from the float rewards, converted),
// without (BM_grpo_loss_f64) and with the entropy term (coefficient 1e-3, dL/dH written).
void run_loss_f64(benchmark::State& st, bool entropy) {
  auto& fin = shared_loss_inputs(st.range(0), st.range(1), true);
  auto& in = shared_f64(fin);
  set_threads(st);
  grpo::loss_options o = options();
  if (entropy) o.entropy_coef = 1e-3;
  const auto ao = grpo::advantage_options::trl(grpo::trl_scale::group);
  const auto groups = grpo::group_spec::fixed(kGroup);
  grpo::compute_advantages(std::span<const float>(fin.rewards), groups, std::span<float>(fin.adv),
                           ao);
  for (std::size_t k = 0; k < fin.adv.size(); ++k) in.adv[k] = fin.adv[k];
  const long B = fin.B, T = fin.T;
  grpo::loss_batch<double, double> b;
  b.logp = grpo::make_view(in.lp.data(), {B, T});
  b.old_logp = grpo::make_view(in.old.data(), {B, T});
  b.ref_logp = grpo::make_view(in.ref.data(), {B, T});
  b.mask = grpo::make_view(in.mask.data(), {B, T});
  b.advantages = grpo::broadcast_rows(in.adv.data(), B, T);
  if (entropy) b.entropy = grpo::make_view(in.ent.data(), {B, T});
  grpo::loss_outputs<double> out;
  out.grad_logp = grpo::make_view(in.grad.data(), {B, T});
  if (entropy) out.grad_entropy = grpo::make_view(in.grad_ent.data(), {B, T});
  for (auto _ : st) {
    auto r = grpo::compute_loss_into(o, b, out);
    benchmark::DoNotOptimize(r.loss);
    benchmark::ClobberMemory();
  }
  grpo_bench::report(st, fin, entropy ? 14 : 10);  // 8-byte streams: twice the float count
}
void BM_grpo_loss_f64(benchmark::State& st) { run_loss_f64(st, false); }
void BM_grpo_loss_entropy_f64(benchmark::State& st) { run_loss_f64(st, true); }

// One streaming pass over the same bytes: g = lp + old + ref + mask (vectorisable, no reduction).
void BM_stream_read(benchmark::State& st) { stream_pass(st, 4, false); }

#if defined(GRPO_BENCH_HAS_TORCH)
// The same full loss in libtorch eager (TRL's code path): group z-score advantages, then
// -min(r A, clip(r) A) + beta k3, masked token mean, backward().
void BM_torch_loss(benchmark::State& st) {
  auto& in = shared(st.range(0), st.range(1));
  at::set_num_threads(static_cast<int>(st.range(2)));
  const auto opt = torch::TensorOptions().dtype(torch::kFloat32);
  auto lp = torch::from_blob(in.lp.data(), {in.B, in.T}, opt).clone().requires_grad_(true);
  auto old = torch::from_blob(in.old.data(), {in.B, in.T}, opt);
  auto ref = torch::from_blob(in.ref.data(), {in.B, in.T}, opt);
  auto mask = torch::from_blob(in.mask.data(), {in.B, in.T}, opt);
  auto rewards = torch::from_blob(in.rewards.data(), {in.B / kGroup, kGroup}, opt);
  const double beta = 0.04, lo = 0.8, hi = 1.28;
  for (auto _ : st) {
    lp.mutable_grad() = torch::Tensor();
    auto mean = rewards.mean(1, true);
    auto sd = rewards.std(1, true, true);  // unbiased, keepdim
    auto adv = ((rewards - mean) / (sd + 1e-4)).reshape({in.B, 1});
    auto coef1 = torch::exp(lp - old);
    auto coef2 = torch::clamp(coef1, lo, hi);
    auto ptl = -torch::min(coef1 * adv, coef2 * adv);
    auto d = ref - lp;
    auto kl = torch::exp(d) - d - 1;
    ptl = ptl + beta * kl;
    auto loss = (ptl * mask).sum() / mask.sum().clamp_min(1.0);
    loss.backward();
    benchmark::DoNotOptimize(lp.grad().data_ptr());
  }
  report(st, in);
  at::set_num_threads(1);
}
#endif

}  // namespace

BENCHMARK(BM_grpo_loss)->Apply(shapes);
BENCHMARK(BM_grpo_loss_gspo)->Apply(shapes);
BENCHMARK(BM_grpo_loss_cispo)->Apply(shapes);
BENCHMARK(BM_grpo_loss_sapo)->Apply(shapes);
BENCHMARK(BM_grpo_loss_reinforce)->Apply(shapes);
BENCHMARK(BM_grpo_loss_entropy)->Apply(shapes);
BENCHMARK(BM_grpo_loss_f64)->Apply(shapes);
BENCHMARK(BM_grpo_loss_entropy_f64)->Apply(shapes);
BENCHMARK(BM_stream_read)->Apply(shapes);
#if defined(GRPO_BENCH_HAS_TORCH)
BENCHMARK(BM_torch_loss)->Apply(shapes);
#endif
BENCHMARK_MAIN();

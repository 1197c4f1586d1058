// SPDX-License-Identifier: Apache-2.0
// The GRPO loss with the options that leave the token / sequence row paths (plan(): the general
// engine of loss/general_rows.hpp) on bench_loss.cpp's workload: group advantages from pass /
// fail rewards (TRL scale_rewards="group", groups of 16), k3 KL beta 0.04, right-padded masks
// 25-100 % valid, float32 inputs, one compute_advantages + compute_loss_into per iteration,
// at 33.5M and 8.4M tokens, 1 and 2 OpenMP threads (bench_loss_general_omp; the third argument),
// next to the streaming probes over the same streams:
//   BM_stream_read    lp, old, ref, mask -> grad                  (4 reads + 1 write)
//   BM_stream_read5   + sampler log-probs or entropies            (5 reads + 1 write)
//   BM_stream_read5w2 + entropies, and dL/dH written              (5 reads + 2 writes)
// Each row's label names the engine that ran (loss_scalars::engine_used).
//   gmpo          TRL GMPO trainer (trl_gmpo preset) + k3 KL         probe: stream_read
//   vespo         TRL loss_type vespo + k3 KL                          stream_read
//   tis           dapo + token TIS (truncate, C = 2), sampler_logp     stream_read5
//   tis_seq       dapo + sequence TIS (verl seq, C = 2, clamp 20)      stream_read5
//   opsm          dapo + OPSM delta 0.5 (ratio base: old)              stream_read
//   opsm_tis      dapo + OPSM delta 0.05 (gap from the sampler) + token  stream_read5
//                 TIS (C = 2): rows with A < 0 and a gap above 0.05 dropped
//   is_weights    dapo + the caller's IS weights (the entropy stream,   stream_read5
//                 values in [0, 4), as is_weights)
//   entropy       dapo + entropy bonus 1e-3, grad_entropy written      stream_read5w2
//   entropy_metric  dapo + the entropy input alone (coef 0: the metric,  stream_read5
//                 what verl and the fused step ask for on every step)
//   top_entropy   dapo + top-entropy mask rho = 0.2                    stream_read5
//   gspo_tis      GSPO + token TIS (verl gspo + rollout IS)            stream_read5
//   seq_mean_token_sum_norm   dapo objective, Dr. GRPO aggregation     stream_read
#include "loss_bench_inputs.hpp"

#include <grpo/advantage.hpp>
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>

#include <benchmark/benchmark.h>

#include <span>

namespace {

using namespace grpo_bench;

grpo::loss_options dapo() {
  grpo::trl_args a;
  a.loss_type = "dapo";
  a.beta = 0.04;
  a.epsilon_high = 0.28;
  return grpo::from_trl(a);
}

const char* engine_name(grpo::loss_engine e) {
  switch (e) {
    case grpo::loss_engine::general:
      return "general";
    case grpo::loss_engine::token_rows:
      return "token_rows";
    case grpo::loss_engine::token_rows_simd:
      return "token_rows_simd";
    case grpo::loss_engine::general_rows:
      return "general_rows";
    default:
      return "sequence_rows";
  }
}

/// Which optional streams a row reads / writes.
struct streams {
  bool smp = false, ent = false, grad_ent = false, isw = false;
  int count() const { return 5 + (smp || ent || isw ? 1 : 0) + (grad_ent ? 1 : 0); }
};

void run_loss(benchmark::State& st, const grpo::loss_options& o, streams s) {
  auto& in = shared_loss_inputs(st.range(0), st.range(1));
  set_threads(st);
  const auto ao = grpo::advantage_options::trl(grpo::trl_scale::group);
  const auto groups = grpo::group_spec::fixed(kGroup);
  grpo::loss_batch<float, float> b = base_batch(in);
  if (s.smp) b.sampler_logp = grpo::make_view(in.smp.data(), {in.B, in.T});
  if (s.ent) b.entropy = grpo::make_view(in.ent.data(), {in.B, in.T});
  if (s.isw) b.is_weights = grpo::make_view(in.ent.data(), {in.B, in.T});
  grpo::loss_outputs<float> out = base_outputs(in);
  if (s.grad_ent) out.grad_entropy = grpo::make_view(in.grad_ent.data(), {in.B, in.T});
  grpo::loss_engine used = grpo::loss_engine::general;
  for (auto _ : st) {
    grpo::compute_advantages(std::span<const float>(in.rewards), groups, std::span<float>(in.adv),
                             ao);
    auto r = grpo::compute_loss_into(o, b, out);
    used = r.engine_used;
    benchmark::DoNotOptimize(r.loss);
    benchmark::ClobberMemory();
  }
  st.SetLabel(engine_name(used));
  report(st, in, s.count());
}

void BM_grpo_loss_gmpo(benchmark::State& st) {
  grpo::loss_options o = grpo::preset("trl_gmpo");
  const grpo::loss_options d = dapo();
  o.kl_coef = d.kl_coef;
  o.kl = d.kl;
  run_loss(st, o, {});
}
void BM_grpo_loss_vespo(benchmark::State& st) {
  grpo::trl_args a;
  a.loss_type = "vespo";
  a.beta = 0.04;
  run_loss(st, grpo::from_trl(a), {});
}
void BM_grpo_loss_tis(benchmark::State& st) {
  grpo::loss_options o = dapo();
  o.tis.enabled = true;
  o.tis.c_max = 2.0;
  run_loss(st, o, {.smp = true});
}
void BM_grpo_loss_tis_seq(benchmark::State& st) {
  grpo::loss_options o = dapo();
  o.tis.enabled = true;
  o.tis.sequence = true;
  o.tis.c_max = 2.0;
  o.tis.log_clamp = 20.0;
  run_loss(st, o, {.smp = true});
}
void BM_grpo_loss_opsm(benchmark::State& st) {
  grpo::loss_options o = dapo();
  o.opsm_threshold = 0.5;
  run_loss(st, o, {});
}
void BM_grpo_loss_opsm_tis(benchmark::State& st) {
  grpo::loss_options o = dapo();
  o.opsm_threshold = 0.05;
  o.tis.enabled = true;
  o.tis.c_max = 2.0;
  run_loss(st, o, {.smp = true});
}
void BM_grpo_loss_is_weights(benchmark::State& st) {
  run_loss(st, dapo(), {.isw = true});
}
void BM_grpo_loss_entropy(benchmark::State& st) {
  grpo::loss_options o = dapo();
  o.entropy_coef = 1e-3;
  run_loss(st, o, {.ent = true, .grad_ent = true});
}
void BM_grpo_loss_entropy_metric(benchmark::State& st) {
  run_loss(st, dapo(), {.ent = true});
}
void BM_grpo_loss_top_entropy(benchmark::State& st) {
  grpo::loss_options o = dapo();
  o.top_entropy_quantile = 0.2;
  run_loss(st, o, {.ent = true});
}
void BM_grpo_loss_gspo_tis(benchmark::State& st) {
  grpo::trl_args a;
  a.loss_type = "dapo";
  a.beta = 0.04;
  a.epsilon_high = 0.28;
  a.importance_sampling_level = "sequence";
  grpo::loss_options o = grpo::from_trl(a);
  o.tis.enabled = true;
  o.tis.c_max = 2.0;
  run_loss(st, o, {.smp = true});
}
void BM_grpo_loss_seq_mean_token_sum_norm(benchmark::State& st) {
  grpo::loss_options o = dapo();
  o.agg = grpo::agg_options{};
  o.agg.mode = grpo::agg_mode::seq_mean_token_sum_norm;
  run_loss(st, o, {});
}

void BM_stream_read(benchmark::State& st) {
  stream_pass(st, 4, false);
}
void BM_stream_read5(benchmark::State& st) {
  stream_pass(st, 5, false);
}
void BM_stream_read5w2(benchmark::State& st) {
  stream_pass(st, 5, true);
}

}  // namespace

BENCHMARK(BM_grpo_loss_gmpo)->Apply(shapes);
BENCHMARK(BM_grpo_loss_vespo)->Apply(shapes);
BENCHMARK(BM_grpo_loss_tis)->Apply(shapes);
BENCHMARK(BM_grpo_loss_tis_seq)->Apply(shapes);
BENCHMARK(BM_grpo_loss_opsm)->Apply(shapes);
BENCHMARK(BM_grpo_loss_opsm_tis)->Apply(shapes);
BENCHMARK(BM_grpo_loss_is_weights)->Apply(shapes);
BENCHMARK(BM_grpo_loss_entropy)->Apply(shapes);
BENCHMARK(BM_grpo_loss_entropy_metric)->Apply(shapes);
BENCHMARK(BM_grpo_loss_top_entropy)->Apply(shapes);
BENCHMARK(BM_grpo_loss_gspo_tis)->Apply(shapes);
BENCHMARK(BM_grpo_loss_seq_mean_token_sum_norm)->Apply(shapes);
BENCHMARK(BM_stream_read)->Apply(shapes);
BENCHMARK(BM_stream_read5)->Apply(shapes);
BENCHMARK(BM_stream_read5w2)->Apply(shapes);
BENCHMARK_MAIN();

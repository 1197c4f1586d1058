// SPDX-License-Identifier: Apache-2.0
// Behaviour dump of the vocabulary engine's public entry points (selective_log_softmax forward /
// backward, sampler_log_softmax forward / backward) on a fixed set of inputs: fp32 / bf16 / fp16
// logits, odd vocabulary sizes, a vocabulary stride, temperatures, ignore_index, masked (-inf)
// entries, an entropy gradient or none, fp32 / bf16 gradients, in place. Writes the raw output
// bytes of every case to argv[1] (run under GRPO_ISA=baseline / avx2 / avx512) so that two builds
// or two paths can be compared bitwise or to a bound (test_logprob's vocab_dump case).
#include <grpo/logprob.hpp>
#include <grpo/sampler.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

using grpo::index_t;

namespace {
std::FILE* out = nullptr;
template <class T>
void put(const std::vector<T>& v) {
  std::fwrite(v.data(), sizeof(T), v.size(), out);
}

template <class T, class G>
void run_case(index_t N, index_t V, index_t cs, float temp, bool gh_on, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<T> x(static_cast<std::size_t>(N * V * cs));
  for (auto& v : x) v = T(nd(rng));
  for (index_t i = 0; i < N; ++i)
    for (index_t j = 3; j < V; j += 5) x[static_cast<std::size_t>((i * V + j) * cs)] =
        T(-std::numeric_limits<float>::infinity());  // masked entries
  std::vector<std::int64_t> ids(static_cast<std::size_t>(N));
  for (index_t i = 0; i < N; ++i) ids[static_cast<std::size_t>(i)] = (i * 7 + 1) % V;
  if (N > 2) ids[2] = -100;
  if (V > 1) ids[0] = 1;  // masked entries sit at 3 + 5k: row 0 keeps a finite target
  const auto lv = grpo::make_view(static_cast<const T*>(x.data()), {N, V}, {V * cs, cs});
  const auto iv = grpo::make_view(static_cast<const std::int64_t*>(ids.data()), {N});
  grpo::logprob_options o;
  o.temperature = temp;
  std::vector<float> lp(static_cast<std::size_t>(N)), lse(lp), h(lp);
  grpo::selective_log_softmax(lv, iv, grpo::make_view(lp.data(), {N}),
                              grpo::make_view(lse.data(), {N}), grpo::make_view(h.data(), {N}), o);
  put(lp);
  put(lse);
  put(h);
  std::vector<float> gl(static_cast<std::size_t>(N)), ge(gl);
  for (index_t i = 0; i < N; ++i) {
    gl[static_cast<std::size_t>(i)] = 0.5f - 0.25f * static_cast<float>(i);
    ge[static_cast<std::size_t>(i)] = gh_on ? 0.1f * static_cast<float>(i % 3) : 0.0f;
  }
  std::vector<G> g(static_cast<std::size_t>(N * V));
  grpo::selective_log_softmax_backward(lv, iv, grpo::make_view(gl.data(), {N}),
                                       grpo::make_view(ge.data(), {N}),
                                       grpo::make_view(g.data(), {N, V}), o);
  put(g);
  if constexpr (std::is_same_v<T, G>) {  // in place over a contiguous copy
    if (cs == 1) {
      std::vector<T> y(x);
      const auto yv = grpo::make_view(y.data(), {N, V});
      grpo::selective_log_softmax_backward(grpo::strided_view<const T, 2>(yv), iv,
                                           grpo::make_view(gl.data(), {N}),
                                           grpo::make_view(ge.data(), {N}), yv, o);
      put(y);
    }
  }
  grpo::sampler_options so;
  so.temperature = temp;
  so.top_k = V > 10 ? 9 : 0;
  so.top_p = 0.9f;
  std::vector<float> sl(static_cast<std::size_t>(N)), sh(sl);
  grpo::sampler_log_softmax(lv, iv, grpo::make_view(sl.data(), {N}),
                            grpo::make_view(sh.data(), {N}), {}, so);
  put(sl);
  put(sh);
  std::vector<G> sg(static_cast<std::size_t>(N * V));
  grpo::sampler_log_softmax_backward(lv, iv, grpo::make_view(gl.data(), {N}),
                                     grpo::make_view(ge.data(), {N}),
                                     grpo::make_view(sg.data(), {N, V}), so);
  put(sg);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  out = std::fopen(argv[1], "wb");
  if (!out) return 1;
  std::uint32_t seed = 1;
  for (index_t V : {1, 7, 33, 2048, 2100, 5003})
    for (index_t cs : {1, 2})
      for (float temp : {1.0f, 0.7f})
        for (bool gh : {false, true}) {
          run_case<float, float>(5, V, cs, temp, gh, seed++);
          run_case<grpo::bfloat16, grpo::bfloat16>(5, V, cs, temp, gh, seed++);
          run_case<grpo::float16, float>(5, V, cs, temp, gh, seed++);
          run_case<grpo::bfloat16, float>(3, V, cs, temp, gh, seed++);
        }
  std::fclose(out);
  return 0;
}

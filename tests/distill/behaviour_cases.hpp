// SPDX-License-Identifier: Apache-2.0
/// @file behaviour_cases.hpp
/// @brief A fixed set of calls of every grpo::distill entry point (SFT NLL, dense forward /
///        reverse KL, JSD, skew KLs, top-k in its three conventions; fp32 / bf16 / fp16 / fp64
///        storage; masks, weights, per-token outputs, temperatures, odd vocabulary sizes, strided
///        and in-place gradients, aligned and unaligned gradient rows) whose outputs are recorded
///        case by case. test_behaviour.cpp uses it to pin the engine's outputs across refactors
///        (bitwise against a golden file written by the code before the refactor) and to compare
///        every ISA path with the baseline path to a stated bound.
#pragma once

#include <distill/distill.hpp>

#include "convert.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace distill_behaviour {

namespace gd = grpo::distill;
using grpo::index_t;

/// The outputs of one call: the loss, and every float written (gradient widened to double, per
/// token losses), in order.
struct record {
  std::string name;
  double loss = 0.0;
  std::vector<double> values;
  /// FNV-1a over the raw bytes of every output buffer (bitwise identity).
  std::uint64_t hash = 1469598103934665603ull;
  void add_bytes(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) {
      hash ^= b[i];
      hash *= 1099511628211ull;
    }
  }
  template <class T>
  void add(const std::vector<T>& v) {
    add_bytes(v.data(), v.size() * sizeof(T));
    for (const T& x : v) {
      if constexpr (std::is_same_v<T, double>)
        values.push_back(x);
      else
        values.push_back(static_cast<double>(static_cast<float>(x)));
    }
  }
};

/// Deterministic inputs (a 64-bit LCG, the same on every platform): uniform in [-a, a].
inline std::vector<double> uniform(std::size_t n, double a, std::uint64_t seed) {
  std::vector<double> r(n);
  std::uint64_t x = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (auto& v : r) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    v = a * (2.0 * static_cast<double>(x >> 11) / 9007199254740992.0 - 1.0);
  }
  return r;
}

/// Test data in a storage type (convert.hpp).
using distill_test::cast_to;

/// A buffer whose first element sits `offset` elements past a 64-byte boundary (gradient rows of
/// V = 1024 then start 64-byte aligned or not: the streaming and the plain store paths).
template <class T>
struct placed {
  std::vector<unsigned char> raw;
  T* p = nullptr;
  placed(std::size_t n, std::size_t offset) : raw((n + offset) * sizeof(T) + 64) {
    auto a = reinterpret_cast<std::uintptr_t>(raw.data());
    a = (a + 63) / 64 * 64 + offset * sizeof(T);
    p = reinterpret_cast<T*>(a);
    for (std::size_t i = 0; i < n; ++i) p[i] = grpo::narrow<T>(0.0f);
  }
  std::vector<T> copy(std::size_t n) const { return std::vector<T>(p, p + n); }
};

/// Student / teacher logits of B x L rows of V: logits of scale ~3 with, per row, an option of
/// masked (-inf) entries, a dominant logit (a confident row: probabilities near 1, the forward-KL
/// series path) and a teacher close to the student.
inline void make_logits(index_t B, index_t L, index_t V, std::uint64_t seed, std::vector<double>& s,
                        std::vector<double>& u) {
  const std::size_t n = static_cast<std::size_t>(B * L * V);
  s = uniform(n, 3.0, seed);
  u = uniform(n, 3.5, seed + 1);
  const double ninf = -std::numeric_limits<double>::infinity();
  const index_t rows = B * L;
  for (index_t r = 0; r < rows; ++r) {
    double* sr = s.data() + r * V;
    double* ur = u.data() + r * V;
    if (r % 3 == 1) {  // masked vocabulary entries, and a whole masked chunk when V > 1024
      for (index_t j = 3; j < V; j += 7) sr[j] = ur[j] = ninf;
      for (index_t j = 512; j < V && V > 1024 && j < 1024; ++j) sr[j] = ur[j] = ninf;
    }
    if (r % 3 == 2) {  // a confident row: teacher near the student, one dominant entry
      for (index_t j = 0; j < V; ++j) ur[j] = sr[j] + 0.01 * ur[j];
      sr[V / 3] = 25.0;
      ur[V / 3] = 24.5;
    }
  }
}

using sink_t = std::function<void(record&&)>;

/// Dense divergence cases of storage S (student), U (teacher), G (gradient).
template <class S, class U, class G>
void dense_case(const std::string& tag, gd::distill_options o, index_t B, index_t L, index_t V,
                bool with_grad, bool token_inputs, std::size_t offset, std::uint64_t seed,
                const sink_t& sink) {
  std::vector<double> s0, u0;
  make_logits(B, L, V, seed, s0, u0);
  const auto s = cast_to<S>(s0);
  const auto u = cast_to<U>(u0);
  const std::size_t n = s.size();
  record rec;
  rec.name = tag;
  gd::token_args a;
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(B * L), 1);
  std::vector<float> w(static_cast<std::size_t>(B * L), 1.0f);
  std::vector<float> ptl(static_cast<std::size_t>(B * L), 0.0f);
  if (token_inputs) {
    mask[1] = 0;
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.5f + 0.25f * static_cast<float>(i % 4);
    a.mask = grpo::make_view(static_cast<const std::uint8_t*>(mask.data()), {B, L});
    a.weights = grpo::make_view(static_cast<const float*>(w.data()), {B, L});
    a.per_token_loss = grpo::make_view(ptl.data(), {B, L});
  }
  const auto sv = grpo::make_view(s.data(), {B, L, V});
  const auto uv = grpo::make_view(u.data(), {B, L, V});
  if (with_grad) {
    placed<G> g(n, offset);
    rec.loss = gd::divergence_loss(sv, uv, grpo::make_view(g.p, {B, L, V}), o, a).loss;
    rec.add(g.copy(n));
  } else {
    rec.loss = gd::divergence_loss(sv, uv, o, a).loss;
  }
  if (token_inputs) rec.add(ptl);
  sink(std::move(rec));
}

/// Strided student (vocabulary stride 2) and strided gradient (stride 3); in-place gradient.
inline void dense_layout_cases(const gd::distill_options& o, const std::string& tag, index_t V,
                               const sink_t& sink) {
  const index_t N = 4;
  std::vector<double> s0, u0;
  make_logits(1, N, V, 77, s0, u0);
  {
    std::vector<float> s(static_cast<std::size_t>(2 * N * V), 0.0f);
    for (std::size_t i = 0; i < s0.size(); ++i) s[2 * i] = static_cast<float>(s0[i]);
    const auto u = cast_to<float>(u0);
    std::vector<float> g(static_cast<std::size_t>(3 * N * V), 0.0f);
    record rec;
    rec.name = tag + "/strided";
    rec.loss = gd::divergence_loss(grpo::make_view(s.data(), {N, V}, {2 * V, 2}),
                                   grpo::make_view(u.data(), {N, V}),
                                   grpo::make_view(g.data(), {N, V}, {3 * V, 3}), o)
                   .loss;
    rec.add(g);
    sink(std::move(rec));
  }
  {
    auto s = cast_to<grpo::bfloat16>(s0);
    const auto u = cast_to<grpo::bfloat16>(u0);
    record rec;
    rec.name = tag + "/inplace_bf16";
    auto sv = grpo::make_view(s.data(), {N, V});
    rec.loss = gd::divergence_loss(sv, grpo::make_view(u.data(), {N, V}), sv, o).loss;
    rec.add(s);
    sink(std::move(rec));
  }
}

inline void sft_cases(const sink_t& sink) {
  for (index_t V : {37, 1000, 1537})
    for (double T : {1.0, 2.5})
      for (double eps : {0.0, 0.1}) {
        const index_t B = 2, L = 3;
        std::vector<double> s0, u0;
        make_logits(B, L, V, 5 + static_cast<std::uint64_t>(V), s0, u0);
        // label smoothing averages log q over the whole row: a -inf logit makes it +inf
        if (eps > 0.0)
          for (double& v : s0) v = v > -1e300 ? v : -30.0;
        std::vector<std::int64_t> y(static_cast<std::size_t>(B * L));
        for (std::size_t i = 0; i < y.size(); ++i)
          y[i] = static_cast<std::int64_t>((i * 131 + 7) % static_cast<std::size_t>(V));
        y[4] = -100;  // ignored
        y[2] = V / 3;  // the confident row's dominant entry
        gd::sft_options o;
        o.temperature = T;
        o.label_smoothing = eps;
        const std::string tag = "sft/V" + std::to_string(V) + "/T" + std::to_string(T) + "/eps" +
                                std::to_string(eps);
        auto run = [&](auto proto, auto gproto, const std::string& dt) {
          using S = decltype(proto);
          using G = decltype(gproto);
          const auto s = cast_to<S>(s0);
          placed<G> g(s.size(), 0);
          std::vector<float> ptl(static_cast<std::size_t>(B * L), 0.0f);
          gd::token_args a;
          a.per_token_loss = grpo::make_view(ptl.data(), {B, L});
          record rec;
          rec.name = tag + "/" + dt;
          rec.loss = gd::sft_loss(grpo::make_view(s.data(), {B, L, V}),
                                  grpo::make_view(static_cast<const std::int64_t*>(y.data()), {B, L}),
                                  grpo::make_view(g.p, {B, L, V}), o, a)
                         .loss;
          rec.add(g.copy(s.size()));
          rec.add(ptl);
          sink(std::move(rec));
          record r2;
          r2.name = tag + "/" + dt + "/value";
          r2.loss = gd::sft_loss(grpo::make_view(s.data(), {B, L, V}),
                                 grpo::make_view(static_cast<const std::int64_t*>(y.data()), {B, L}),
                                 o)
                        .loss;
          sink(std::move(r2));
        };
        run(float{}, float{}, "f32");
        run(grpo::bfloat16{}, grpo::bfloat16{}, "bf16");
        run(double{}, double{}, "f64");
      }
}

inline void topk_cases(const sink_t& sink) {
  const gd::topk_convention convs[] = {gd::topk_convention::renormalized_teacher,
                                       gd::topk_convention::tail_bucket,
                                       gd::topk_convention::renormalized_both};
  const gd::divergence kinds[] = {gd::divergence::forward_kl, gd::divergence::reverse_kl,
                                  gd::divergence::jsd, gd::divergence::skew_forward_kl,
                                  gd::divergence::skew_reverse_kl};
  const index_t N = 5, K = 8;
  for (index_t V : {37, 1000})
    for (int ci = 0; ci < 3; ++ci)
      for (int ki = 0; ki < 5; ++ki) {
        if (kinds[ki] == gd::divergence::reverse_kl && ci == 0) continue;  // +inf by definition
        std::vector<double> s0, u0;
        make_logits(1, N, V, 300 + static_cast<std::uint64_t>(V), s0, u0);
        const auto lp0 = uniform(static_cast<std::size_t>(N * K), 1.0, 9);
        std::vector<float> lp(static_cast<std::size_t>(N * K));
        std::vector<std::int64_t> ids(static_cast<std::size_t>(N * K));
        for (index_t r = 0; r < N; ++r)
          for (index_t i = 0; i < K; ++i) {
            const std::size_t k = static_cast<std::size_t>(r * K + i);
            // log-probabilities of K entries summing below 1 (tail mass left)
            lp[k] = static_cast<float>(-3.0 + lp0[k]);
            ids[k] = (r * 17 + i * 5 + 1) % V;
            if (r * V + ids[k] < static_cast<index_t>(s0.size()) &&
                !(s0[static_cast<std::size_t>(r * V + ids[k])] > -1e300))
              s0[static_cast<std::size_t>(r * V + ids[k])] = 0.5;  // listed ids stay finite
          }
        ids[3] = -1;  // a padding slot
        gd::topk_options o;
        o.kind = kinds[ki];
        o.convention = convs[ci];
        o.temperature = ki % 2 ? 1.0 : 1.7;
        o.teacher_power = ki == 2 ? 0.8 : 1.0;
        const auto s = cast_to<float>(s0);
        std::vector<float> g(s.size(), 0.0f);
        record rec;
        rec.name = "topk/V" + std::to_string(V) + "/conv" + std::to_string(ci) + "/kind" +
                   std::to_string(ki);
        rec.loss = gd::topk_loss(grpo::make_view(s.data(), {N, V}),
                                 grpo::make_view(static_cast<const float*>(lp.data()), {N, K}),
                                 grpo::make_view(static_cast<const std::int64_t*>(ids.data()), {N, K}),
                                 grpo::make_view(g.data(), {N, V}), o)
                       .loss;
        rec.add(g);
        const std::string name = rec.name;
        sink(std::move(rec));
        const auto sb = cast_to<grpo::bfloat16>(s0);
        std::vector<grpo::bfloat16> gb(s.size());
        record rb;
        rb.name = name + "/bf16";
        rb.loss = gd::topk_loss(grpo::make_view(sb.data(), {N, V}),
                                grpo::make_view(static_cast<const float*>(lp.data()), {N, K}),
                                grpo::make_view(static_cast<const std::int64_t*>(ids.data()), {N, K}),
                                grpo::make_view(gb.data(), {N, V}), o)
                      .loss;
        rb.add(gb);
        sink(std::move(rb));
      }
}

inline void dense_cases(const sink_t& sink) {
  struct kd {
    gd::divergence k;
    double beta, alpha;
    gd::jsd_endpoints ep;
    const char* name;
  };
  const kd kinds[] = {
      {gd::divergence::forward_kl, 0.5, 0.1, gd::jsd_endpoints::kl_limits, "fkl"},
      {gd::divergence::reverse_kl, 0.5, 0.1, gd::jsd_endpoints::kl_limits, "rkl"},
      {gd::divergence::jsd, 0.3, 0.1, gd::jsd_endpoints::kl_limits, "jsd"},
      {gd::divergence::jsd, 1.0, 0.1, gd::jsd_endpoints::kl_limits, "jsd_b1"},
      {gd::divergence::jsd, 0.0, 0.1, gd::jsd_endpoints::formula, "jsd_formula0"},
      {gd::divergence::skew_forward_kl, 0.5, 0.1, gd::jsd_endpoints::kl_limits, "sfkl"},
      {gd::divergence::skew_reverse_kl, 0.5, 0.25, gd::jsd_endpoints::kl_limits, "srkl"},
  };
  for (const kd& k : kinds)
    for (index_t V : {37, 1000, 1537})
      for (double T : {1.0, 2.5}) {
        gd::distill_options o;
        o.kind = k.k;
        o.beta = k.beta;
        o.alpha = k.alpha;
        o.endpoints = k.ep;
        o.temperature = T;
        o.scale_by_t2 = T != 1.0;
        const std::string tag = std::string("dense/") + k.name + "/V" + std::to_string(V) + "/T" +
                                std::to_string(T);
        const std::uint64_t seed = 1000 + static_cast<std::uint64_t>(V);
        dense_case<float, float, float>(tag + "/f32", o, 2, 3, V, true, false, 0, seed, sink);
        dense_case<float, float, float>(tag + "/f32/value", o, 2, 3, V, false, false, 0, seed,
                                        sink);
        dense_case<float, float, float>(tag + "/f32/off5/args", o, 2, 3, V, true, true, 5, seed,
                                        sink);
        dense_case<grpo::bfloat16, grpo::bfloat16, grpo::bfloat16>(tag + "/bf16", o, 2, 3, V,
                                                                   true, false, 0, seed, sink);
        dense_case<grpo::bfloat16, grpo::bfloat16, grpo::bfloat16>(tag + "/bf16/off3", o, 2, 3, V,
                                                                   true, false, 3, seed, sink);
        dense_case<grpo::float16, float, grpo::float16>(tag + "/f16", o, 2, 3, V, true, false, 0,
                                                        seed, sink);
        dense_case<grpo::bfloat16, float, double>(tag + "/bf16_f32_f64", o, 2, 3, V, true, false,
                                                  0, seed, sink);
        dense_case<double, double, double>(tag + "/f64", o, 2, 3, V, true, true, 0, seed, sink);
        if (T == 1.0 && V == 1000) dense_layout_cases(o, tag, V, sink);
      }
  // Gradient rows of V = 1024 (64-byte aligned rows: the streaming stores), fp32 and bf16.
  for (const kd& k : kinds) {
    gd::distill_options o;
    o.kind = k.k;
    o.beta = k.beta;
    o.alpha = k.alpha;
    o.endpoints = k.ep;
    const std::string tag = std::string("dense/") + k.name + "/V1024";
    dense_case<float, float, float>(tag + "/f32", o, 1, 4, 1024, true, false, 0, 9, sink);
    dense_case<float, float, float>(tag + "/f32/off1", o, 1, 4, 1024, true, false, 1, 9, sink);
    dense_case<grpo::bfloat16, grpo::bfloat16, grpo::bfloat16>(tag + "/bf16", o, 1, 4, 1024, true,
                                                               false, 0, 9, sink);
  }
}

/// Every case, in a fixed order.
inline void all_cases(const sink_t& sink) {
  dense_cases(sink);
  sft_cases(sink);
  topk_cases(sink);
}

}  // namespace distill_behaviour

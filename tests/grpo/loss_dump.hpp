// SPDX-License-Identifier: Apache-2.0
/// @file loss_dump.hpp
/// @brief The behaviour-keeping dump of issue 15's loss split: compute_loss (loss, every scalar,
///        grad_logp, per-token loss, grad_entropy, per-sequence loss, every metric) over a fixed
///        grid of options (policy kind x IS level x aggregation mode x KL x TIS, plus OPSM,
///        top-entropy, entropy bonus, clamps, per-row advantages, truncation) and storage types
///        (float, double, bfloat16), and fused_grpo_step over every preset; one line per case
///        with a 64-bit FNV-1a digest of the bit patterns of every output (or the error text).
///        Used by test_loss_dump.cpp against tests/grpo/data/loss_dump.golden, written by the
///        code before the split (bitwise comparison of every engine's output).
#pragma once

#include <grpo/core/half.hpp>
#include <grpo/fused_grpo.hpp>
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>

#include <cstdint>
#include <cstring>
#include <exception>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace loss_dump {

using grpo::index_t;

/// FNV-1a over bytes.
struct digest {
  std::uint64_t h = 1469598103934665603ull;
  void bytes(const void* p, std::size_t n) {
    const auto* c = static_cast<const unsigned char*>(p);
    for (std::size_t k = 0; k < n; ++k) {
      h ^= c[k];
      h *= 1099511628211ull;
    }
  }
  void d(double x) { bytes(&x, sizeof x); }
  template <class V>
  void vec(const V& v) {
    for (const auto& x : v) bytes(&x, sizeof x);
  }
  void stat(const grpo::stat_accumulator& s) {
    d(s.sum);
    d(s.weight);
    d(s.sum_sq);
    d(s.min);
    d(s.max);
  }
  void metrics(const grpo::loss_metrics& m) {
    for (const auto* s : {&m.clip_low, &m.clip_high, &m.clip_region, &m.clip_dual, &m.weight_clip,
                          &m.clip_low_seq, &m.clip_high_seq, &m.approx_kl, &m.ratio, &m.is_weight,
                          &m.advantage, &m.kl, &m.entropy, &m.vespo_phi})
      stat(*s);
    d(m.opsm_dropped_seqs);
    d(m.entropy_masked_tokens);
    d(m.truncated_seqs);
    d(m.tokens);
    d(m.sequences);
  }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
  }
};

/// Random inputs of one shape (double master copies; converted per storage type).
struct inputs {
  index_t B, T;
  std::vector<double> lp, lo, lr, A, Arow, m, ls, isw, h;
  std::vector<unsigned char> trunc;
  inputs(index_t b, index_t t, std::uint32_t seed, bool frac_mask) : B(b), T(t) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> n01(0.0, 1.0);
    std::uniform_real_distribution<double> u01(0.0, 1.0);
    const auto N = static_cast<std::size_t>(B * T);
    for (std::size_t k = 0; k < N; ++k) {
      const double l = -1.5 + 0.6 * n01(rng);
      lp.push_back(l);
      lo.push_back(l + 0.3 * n01(rng));
      lr.push_back(l + 0.4 * n01(rng));
      A.push_back(n01(rng));
      ls.push_back(lo.back() + 0.2 * n01(rng));
      isw.push_back(0.5 + u01(rng));
      h.push_back(2.0 * u01(rng));
    }
    for (index_t i = 0; i < B; ++i) {
      Arow.push_back(i % 3 == 2 ? 0.0 : n01(rng));
      // right padding of varying length, one fully masked row, holes in the middle
      const index_t len = i == 1 ? 0 : T - (i * 7) % (T > 1 ? T : 1);
      for (index_t t = 0; t < T; ++t) {
        double mv = t < len ? 1.0 : 0.0;
        if (t % 11 == 5) mv = 0.0;
        if (frac_mask && mv != 0.0 && t % 5 == 3) mv = 0.5;
        m.push_back(mv);
      }
      trunc.push_back(i == 3 ? 1 : 0);
    }
  }
};

/// An error text without its trailing " (file:line)" (the code moves between files).
inline std::string strip_where(std::string w) {
  const auto k = w.rfind(" (");
  if (k != std::string::npos && w.back() == ')') w.erase(k);
  return w;
}

/// One case of the grid.
struct spec {
  grpo::loss_options o;
  bool old = true, ref = false, smp = false, isw = false, ent = false, adv_row = false;
  bool trunc = false;
  bool int_mask = false;  ///< mask stored as std::int32_t
};

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  std::vector<T> r;
  r.reserve(v.size());
  for (double x : v) r.push_back(static_cast<T>(x));
  return r;
}

template <class T, class M>
std::string run_typed(const spec& s, const inputs& x) {
  const auto lp = cast<T>(x.lp), lo = cast<T>(x.lo), lr = cast<T>(x.lr), A = cast<T>(x.A),
             Ar = cast<T>(x.Arow), ls = cast<T>(x.ls), iw = cast<T>(x.isw), h = cast<T>(x.h);
  const auto m = cast<M>(x.m);
  grpo::loss_batch<T, M> b;
  const index_t B = x.B, Tn = x.T;
  b.logp = grpo::make_view(lp.data(), {B, Tn});
  if (s.old) b.old_logp = grpo::make_view(lo.data(), {B, Tn});
  if (s.ref) b.ref_logp = grpo::make_view(lr.data(), {B, Tn});
  b.advantages =
      s.adv_row ? grpo::broadcast_rows(Ar.data(), B, Tn) : grpo::make_view(A.data(), {B, Tn});
  b.mask = grpo::make_view(m.data(), {B, Tn});
  if (s.smp) b.sampler_logp = grpo::make_view(ls.data(), {B, Tn});
  if (s.isw) b.is_weights = grpo::make_view(iw.data(), {B, Tn});
  if (s.ent) b.entropy = grpo::make_view(h.data(), {B, Tn});
  if (s.trunc) b.truncated = std::span<const unsigned char>(x.trunc);
  digest d;
  try {
    const auto r = grpo::compute_loss(s.o, b);
    d.d(static_cast<double>(r.engine_used));
    d.d(r.loss);
    d.d(r.policy_loss);
    d.d(r.kl_loss);
    d.d(r.entropy_loss);
    d.metrics(r.metrics);
    d.vec(r.grad_logp);
    d.vec(r.per_token_loss);
    d.vec(r.grad_entropy);
    d.vec(r.per_seq_loss);
    // The float-output path (the kernels' G = float stores) as well.
    std::vector<float> g(static_cast<std::size_t>(B * Tn)), pt(g.size());
    grpo::loss_outputs<float> out;
    out.grad_logp = grpo::make_view(g.data(), {B, Tn});
    out.per_token_loss = grpo::make_view(pt.data(), {B, Tn});
    const auto r2 = grpo::compute_loss_into(s.o, b, out);
    d.d(r2.loss);
    d.metrics(r2.metrics);
    d.vec(g);
    d.vec(pt);
    std::ostringstream os;
    os << d.hex() << " loss=" << std::hexfloat << r.loss;
    return os.str();
  } catch (const std::exception& e) {
    return "error " + strip_where(e.what());
  }
}

inline std::string run(const spec& s, const inputs& x, int type) {
  switch (type) {
    case 0:
      return s.int_mask ? run_typed<float, std::int32_t>(s, x) : run_typed<float, float>(s, x);
    case 1:
      return s.int_mask ? run_typed<double, std::int32_t>(s, x) : run_typed<double, double>(s, x);
    default:
      return run_typed<grpo::bfloat16, float>(s, x);
  }
}

/// Every compute_loss case: one line "name: digest loss=..." per case.
inline std::vector<std::string> loss_cases() {
  using grpo::is_level;
  using grpo::policy_loss_kind;
  std::vector<std::string> lines;
  const inputs small(5, 37, 1, false), frac(5, 37, 2, true), big(9, 4001, 3, false);
  const policy_loss_kind kinds[] = {policy_loss_kind::ppo_clip,  policy_loss_kind::cispo,
                                    policy_loss_kind::sapo,      policy_loss_kind::gmpo,
                                    policy_loss_kind::reinforce, policy_loss_kind::vespo};
  const char* tname[] = {"f32", "f64", "bf16"};
  for (int ki = 0; ki < 6; ++ki)
    for (int lv = 0; lv < 3; ++lv) {
      const auto K = kinds[ki];
      if (lv != 0 && !(K == policy_loss_kind::ppo_clip || K == policy_loss_kind::cispo ||
                       K == policy_loss_kind::sapo))
        continue;
      for (int ag = 0; ag < 6; ++ag)
        for (int kl = 0; kl < 3; ++kl)
          for (int tis = 0; tis < 3; ++tis)
            for (int ty = 0; ty < 3; ++ty) {
              spec s;
              s.o.policy.kind = K;
              s.o.policy.level = static_cast<is_level>(lv);
              s.o.agg.mode = static_cast<grpo::agg_mode>(ag);
              if (ag == 5) s.o.agg.group_size = ki % 2 == 1 ? 5 : 1;  // group_token_mean
              if (ag == 3) s.o.agg.row_count_eps = 1e-8;
              if (kl != 0) {
                s.ref = true;
                s.o.kl_coef = 0.04;
                s.o.kl.estimator = kl == 1 ? grpo::kl_estimator::k3 : grpo::kl_estimator::k1;
                if (kl == 2) {
                  s.o.kl.outer_clamp = 10.0;
                  s.o.kl_bias_correction = true;
                }
              }
              if (tis != 0) {
                s.smp = true;
                s.o.tis.enabled = true;
                s.o.tis.c_max = 2.0;
                if (tis == 2) {
                  if (K == policy_loss_kind::vespo) {
                    s.o.tis.sequence = true;
                  } else {
                    s.o.tis.seq_mask = true;
                    s.o.tis.c_min = 0.5;
                  }
                }
              }
              if (K == policy_loss_kind::cispo && ag % 2 == 1)
                s.o.policy.cispo = grpo::cispo_clip::verl_clip;
              if (K == policy_loss_kind::gmpo && ag % 2 == 1)
                s.o.policy.gmpo = grpo::ops::gmpo_sign::trl;
              s.adv_row = (ag + kl) % 2 == 1;
              s.trunc = tis != 1;
              s.old = !(ag == 2 && kl == 0);
              const inputs& x = (ag == 4 && tis == 0) ? frac : small;
              std::ostringstream name;
              name << "k" << ki << " lv" << lv << " ag" << ag << " kl" << kl << " tis" << tis << " "
                   << tname[ty];
              lines.push_back(name.str() + ": " + run(s, x, ty));
            }
    }
  // Option families on fewer combinations: clamps, dual clip, delta, OPSM, top-entropy,
  // entropy bonus, IS weights, integer masks, unclamped approx_kl, a threaded batch.
  for (int v = 0; v < 14; ++v)
    for (int lv = 0; lv < 3; ++lv)
      for (int ty = 0; ty < 3; ++ty) {
        spec s;
        s.o.policy.level = static_cast<is_level>(lv);
        s.o.policy.eps_high = 0.28;
        s.trunc = true;
        s.ref = v % 3 == 0;
        if (s.ref) s.o.kl_coef = 0.1;
        const inputs* x = &small;
        switch (v) {
          case 0:
            s.o.policy.log_ratio_min = -0.2;
            s.o.policy.log_ratio_max = 0.25;
            break;
          case 1:
            s.o.policy.dual_clip_c = 3.0;
            break;
          case 2:
            s.o.policy.delta = 1.3;
            break;
          case 3:
            s.o.opsm_threshold = 0.05;
            s.smp = true;
            break;
          case 4:
            s.o.top_entropy_quantile = 0.6;
            s.ent = true;
            break;
          case 5:
            s.o.entropy_coef = 0.01;
            s.ent = true;
            s.o.entropy_mask_in_denominator = false;
            break;
          case 6:
            s.isw = true;
            break;
          case 7:
            s.int_mask = true;
            break;
          case 8:
            s.o.approx_kl_unclamped = true;
            s.o.policy.log_ratio_max = 0.3;
            break;
          case 9:
            x = &big;
            break;
          case 10:
            x = &big;
            s.ref = true;
            s.o.kl_coef = 0.05;
            s.adv_row = true;
            break;
          case 11:
            s.o.ratio_base_sampler = true;
            s.smp = true;
            break;
          case 12:
            s.o.policy.kind = grpo::policy_loss_kind::sapo;
            s.o.policy.level = is_level::token;
            s.o.opsm_threshold = 0.0;
            s.smp = true;
            s.o.opsm_in_denominator = false;
            break;
          default:  // overflow rule inputs below: an error (plain PPO) or the clamped rerun (dual
                    // clip)
            s.o.policy.log_ratio_max = 1000.0;
            if (lv != 0) s.o.policy.dual_clip_c = 3.0;
            break;
        }
        inputs xo = *x;
        if (v == 13) xo.lp[7] = xo.lo[7] + 800.0;  // overflow (valid token of row 0)
        std::ostringstream name;
        name << "family" << v << " lv" << lv << " " << tname[ty];
        lines.push_back(name.str() + ": " + run(s, v == 13 ? xo : *x, ty));
      }
  return lines;
}

/// fused_grpo_step over every preset, both schedules, fp32 and bf16 logits.
inline std::vector<std::string> fused_cases() {
  std::vector<std::string> lines;
  const char* presets[] = {"trl_grpo",  "trl_bnpo",  "trl_dr_grpo", "trl_dapo",      "trl_cispo",
                           "trl_sapo",  "trl_luspo", "trl_vespo",   "trl_gspo",      "verl_vanilla",
                           "verl_gspo", "verl_sapo", "verl_cispo",  "verl_geo_mean", "openrlhf"};
  const index_t B = 4, T = 9, V = 37;
  std::mt19937 rng(7);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  std::vector<float> logits(static_cast<std::size_t>(B * T * V));
  for (auto& v : logits) v = 1.5f * n01(rng);
  std::vector<grpo::bfloat16> logits16;
  for (float v : logits) logits16.push_back(grpo::bfloat16(v));
  std::vector<std::int32_t> ids;
  std::vector<float> old_lp, ref_lp, adv, mask, smp;
  for (index_t k = 0; k < B * T; ++k) {
    ids.push_back(static_cast<std::int32_t>((k * 13) % V));
    old_lp.push_back(-3.6f + 0.3f * n01(rng));
    ref_lp.push_back(-3.6f + 0.4f * n01(rng));
    smp.push_back(old_lp.back() + 0.1f * n01(rng));
    adv.push_back(n01(rng));
    mask.push_back(k % 7 == 6 ? 0.0f : 1.0f);
  }
  std::vector<unsigned char> trunc(static_cast<std::size_t>(B), 0);
  trunc[2] = 1;
  for (const char* name : presets)
    for (int sch = 0; sch < 3; ++sch)
      for (int lt = 0; lt < 2; ++lt)
        for (double ec : {0.0, 0.01}) {
          auto o = grpo::preset(name);
          o.kl_coef = 0.05;
          o.entropy_coef = ec;
          grpo::loss_batch<float, float> b;
          b.old_logp = grpo::make_view(old_lp.data(), {B, T});
          b.ref_logp = grpo::make_view(ref_lp.data(), {B, T});
          b.advantages = grpo::make_view(adv.data(), {B, T});
          b.mask = grpo::make_view(mask.data(), {B, T});
          b.sampler_logp = grpo::make_view(smp.data(), {B, T});
          b.truncated = std::span<const unsigned char>(trunc);
          grpo::fused_grpo_options fo;
          fo.logprob.temperature = 0.9f;
          fo.schedule = static_cast<grpo::fused_schedule>(sch);
          fo.chunk_tokens = 2;
          digest d;
          std::string res;
          try {
            grpo::fused_grpo_result r;
            if (lt == 0) {
              std::vector<float> g(logits.size(), -7.0f);
              r = grpo::fused_grpo_step(o, grpo::make_view(logits.data(), {B, T, V}),
                                        grpo::make_view(ids.data(), {B, T}), b,
                                        grpo::make_view(g.data(), {B, T, V}), fo);
              d.vec(g);
            } else {
              std::vector<grpo::bfloat16> g(logits.size());
              r = grpo::fused_grpo_step(o, grpo::make_view(logits16.data(), {B, T, V}),
                                        grpo::make_view(ids.data(), {B, T}), b,
                                        grpo::make_view(g.data(), {B, T, V}), fo);
              d.vec(g);
            }
            d.d(r.loss);
            d.d(r.policy_loss);
            d.d(r.kl_loss);
            d.d(r.entropy_loss);
            d.metrics(r.metrics);
            d.vec(r.logp);
            d.vec(r.entropy);
            d.d(static_cast<double>(r.schedule_used));
            std::ostringstream os;
            os << d.hex() << " loss=" << std::hexfloat << r.loss;
            res = os.str();
          } catch (const std::exception& e) {
            res = "error " + strip_where(e.what());
          }
          std::ostringstream nm;
          nm << "fused " << name << " sch" << sch << " lt" << lt << " ec" << ec;
          lines.push_back(nm.str() + ": " + res);
        }
  return lines;
}

/// The build's code-generation signature: the golden file is only comparable bitwise under the
/// same one (AVX-512 / FMA builds round differently).
inline std::string signature() {
  std::string s = "sig";
#if defined(__AVX512F__)
  s += " avx512f";
#endif
#if defined(__AVX2__)
  s += " avx2";
#endif
#if defined(__FMA__)
  s += " fma";
#endif
#if GRPO_HAS_XSIMD
  s += " xsimd";
#endif
#if defined(__aarch64__)
  s += " aarch64";  // xsimd's NEON rows (fused fmla) round differently from x86-64's SSE2 rows
#endif
#if defined(__clang__)
  s += " clang";
#elif defined(__GNUC__)
  s += " gcc" + std::to_string(__GNUC__);
#endif
  return s;
}

}  // namespace loss_dump

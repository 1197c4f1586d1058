// SPDX-License-Identifier: Apache-2.0
// The token formulas of grpo/detail/lane_formulas.ipp instantiated on the packet lane types of the
// loss rows (loss/kernels/<isa>/rows.hpp: simd::avx2, simd::avx512) equal the scalar ops lane
// by lane: bitwise where no exp is involved (PPO clip with delta / dual clip and its ties, the
// row-constant PPO form, CISPO weights, clamps, the k1 / abs / k2 KL estimators with clamps and
// straight-through, clip predicates, NaN lanes), within the packet exp's error carried through the
// formula otherwise (ratio, SAPO, k3). Each ISA's evaluators are compiled inside its target
// region (below) and run only where grpo::active_isa() has it; the AVX-512 cases report SKIPPED
// on a CPU without AVX-512.
#include <grpo/core/isa.hpp>
#include <grpo/loss.hpp>
#include <grpo/ops/kl.hpp>
#include <grpo/ops/policy_loss.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace {

using grpo::index_t;
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

/// What a formula is evaluated on: inputs x, y (ratio / lp, advantage / lr) and two outputs.
struct lanes_io {
  std::vector<float> x, y, o1, o2;
};

enum class formula : int {
  ppo, ppo_row, cispo_cap, cispo_clip, sapo, kl, clip_pred, ratio,
  sapo_q,     // sapo with sapo_prep's constants (one division where both taus are powers of 2)
  helpers,    // clamp_ordered(x, 1 - eps_low, 1 + eps_high), pick_gt(x, y)
  neg_abs,    // neg_abs(x), and vexp_unguarded(x) next to vexp(x) (o2: their bit difference)
};

struct formula_cfg {
  grpo::ops::ppo_clip_params<float> cp{};
  grpo::ops::kl_params kl{};
  float tau_pos = 1.0f, tau_neg = 1.05f, cap = 5.0f, row_A = 0.5f, lr_lo = -20.f, lr_hi = 20.f;
};

}  // namespace

// The evaluators: one text, instantiated per ISA namespace of the rows.
#define GRPO_TEST_LANE_EVAL(NS)                                                                \
  namespace grpo::detail {                                                                     \
  inline namespace GRPO_ISA_ABI {                                                              \
  namespace NS {                                                                               \
  inline void eval(formula f, const formula_cfg& c, lanes_io& io) {                           \
    const auto n = static_cast<index_t>(io.x.size());                                          \
    for (index_t t = 0; t + L <= n; t += L) {                                                  \
      const V x(A::load(io.x.data() + t)), y(A::load(io.y.data() + t));                       \
      V o1 = x, o2 = y;                                                                        \
      switch (f) {                                                                             \
        case formula::ppo: {                                                                   \
          const auto vg = ppo_clip(x, y, c.cp);                                                \
          o1 = vg.value, o2 = vg.grad;                                                         \
          break;                                                                               \
        }                                                                                      \
        case formula::ppo_row: {                                                               \
          const auto vg = ppo_clip_row(x, ppo_row<V>(c.row_A), V(1.0f - c.cp.eps_low),         \
                                       V(1.0f + c.cp.eps_high));                               \
          o1 = vg.value, o2 = vg.grad;                                                         \
          break;                                                                               \
        }                                                                                      \
        case formula::cispo_cap: o1 = cispo_weight_cap(x, V(c.cap)); break;                    \
        case formula::cispo_clip:                                                              \
          o1 = cispo_weight_clip(x, c.cp.eps_low, c.cp.eps_high);                              \
          break;                                                                               \
        case formula::sapo: {                                                                  \
          const auto vg = sapo(x, y, c.tau_pos, c.tau_neg);                                    \
          o1 = vg.value, o2 = vg.grad;                                                         \
          break;                                                                               \
        }                                                                                      \
        case formula::kl: {                                                                    \
          const auto vg = kl(c.kl, x, y);                                                      \
          o1 = vg.value, o2 = vg.grad;                                                         \
          break;                                                                               \
        }                                                                                      \
        case formula::clip_pred: {                                                             \
          const V one(1.0f), zero(0.0f);                                                       \
          o1 = sel<V>(clipped_low(x, y, c.cp), one, zero) +                                    \
               V(2.0f) * sel<V>(clipped_high(x, y, c.cp), one, zero);                          \
          o2 = sel<V>(dual_clipped(x, y, c.cp), one, zero);                                    \
          break;                                                                               \
        }                                                                                      \
        case formula::ratio: {                                                                 \
          const auto rt = ratio(x, V(c.lr_lo), V(c.lr_hi));                                    \
          o1 = rt.r, o2 = rt.dr;                                                               \
          break;                                                                               \
        }                                                                                      \
        case formula::sapo_q: {                                                                \
          const auto vg = sapo(x, y, sapo_prep<V>(c.tau_pos, c.tau_neg));                      \
          o1 = vg.value, o2 = vg.grad;                                                         \
          break;                                                                               \
        }                                                                                      \
        case formula::helpers:                                                                 \
          o1 = clamp_ordered(x, V(1.0f - c.cp.eps_low), V(1.0f + c.cp.eps_high));              \
          o2 = pick_gt(x, y);                                                                  \
          break;                                                                               \
        case formula::neg_abs:                                                                 \
          o1 = neg_abs(x);                                                                     \
          o2 = vexp_unguarded(x) - vexp(x);                                                    \
          break;                                                                               \
      }                                                                                        \
      A::store(io.o1.data() + t, o1.v);                                                        \
      A::store(io.o2.data() + t, o2.v);                                                        \
    }                                                                                          \
  }                                                                                            \
  }                                                                                            \
  }                                                                                            \
  }

#if GRPO_LOSS_HAS_AVX2_ROWS
GRPO_BEGIN_TARGET_AVX2
GRPO_TEST_LANE_EVAL(loss_avx2)
GRPO_END_TARGET
#endif
#if GRPO_LOSS_HAS_AVX512_ROWS
GRPO_BEGIN_TARGET_AVX512
GRPO_TEST_LANE_EVAL(loss_avx512)
GRPO_END_TARGET
#endif

namespace {

/// The scalar op of each formula (the oracle), and whether it involves an exp.
void eval_ops(formula f, const formula_cfg& c, lanes_io& io) {
  namespace ops = grpo::ops;
  for (std::size_t i = 0; i < io.x.size(); ++i) {
    const float x = io.x[i], y = io.y[i];
    float a = x, b = y;
    switch (f) {
      case formula::ppo:
        a = ops::ppo_clip_loss(x, y, c.cp), b = ops::ppo_clip_loss_grad(x, y, c.cp);
        break;
      case formula::ppo_row: {
        const ops::ppo_clip_params<float> q{c.cp.eps_low, c.cp.eps_high, 0.0f, 0.0f};
        a = ops::ppo_clip_loss(x, c.row_A, q), b = ops::ppo_clip_loss_grad(x, c.row_A, q);
        break;
      }
      case formula::cispo_cap: a = ops::cispo_weight_cap(x, c.cap); break;
      case formula::cispo_clip: a = ops::cispo_weight_clip(x, c.cp.eps_low, c.cp.eps_high); break;
      case formula::sapo:
        a = ops::sapo_loss(x, y, c.tau_pos, c.tau_neg);
        b = ops::sapo_loss_grad(x, y, c.tau_pos, c.tau_neg);
        break;
      case formula::kl: {
        const auto kv = ops::kl_value_grad(c.kl, x, y);
        a = kv.value, b = kv.grad;
        break;
      }
      case formula::clip_pred:
        a = (ops::ppo_clipped_low(x, y, c.cp) ? 1.0f : 0.0f) +
            2.0f * (ops::ppo_clipped_high(x, y, c.cp) ? 1.0f : 0.0f);
        b = ops::ppo_dual_clipped(x, y, c.cp) ? 1.0f : 0.0f;
        break;
      case formula::ratio:
        a = ops::ratio_from_log(x, c.lr_lo, c.lr_hi);
        b = ops::clamp_scalar_grad(x, c.lr_lo, c.lr_hi) * a;
        break;
      case formula::sapo_q:  // checked against the packet's sapo (division form) instead
        break;
      case formula::helpers:
        a = ops::clamp_scalar(x, 1.0f - c.cp.eps_low, 1.0f + c.cp.eps_high);
        b = x > y ? x : y;
        break;
      case formula::neg_abs:
        a = -std::fabs(x);
        b = x >= -87.0f && x <= 88.0f ? 0.0f : b;  // in range: the two exps are the same bits
        break;
    }
    io.o1[i] = a, io.o2[i] = b;
  }
}

bool same_bits(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return std::memcmp(&a, &b, sizeof a) == 0;
}

/// Ratios around the clip edges (ties of PPO / dual clip), signed advantages incl. 0, NaN / inf.
lanes_io grid(formula f) {
  lanes_io io;
  const float xs[] = {0.0f,  0.5f, 0.8f, 0.79999995f, 0.8000001f, 1.0f,  1.2f, 1.28f, 1.2800001f,
                      1.5f,  3.0f, 3.0000002f,        10.0f,      -0.3f, 1e-30f, kInf, kNaN,
                      0.99f, 2.5f, 1e30f};
  const float ys[] = {1.0f, -1.0f, 0.0f, -0.0f, 0.5f, -2.5f, 3.0f, kNaN, -kInf, 1e-20f, -1e-20f};
  const bool logs = f == formula::kl || f == formula::ratio;
  for (float x : xs)
    for (float y : ys) {
      io.x.push_back(logs ? std::log(std::fabs(x) + 0.5f) * (x < 1.0f ? -3.0f : 2.0f) : x);
      io.y.push_back(logs ? std::log(std::fabs(y) + 0.25f) * 1.5f : y);
    }
  while (io.x.size() % 16 != 0) io.x.push_back(1.0f), io.y.push_back(1.0f);
  io.o1.assign(io.x.size(), 0.0f);
  io.o2.assign(io.x.size(), 0.0f);
  return io;
}

using eval_fn = void (*)(formula, const formula_cfg&, lanes_io&);

float c_tau(const formula_cfg& c, int neg) { return neg ? c.tau_neg : c.tau_pos; }

/// neg_abs = -|x| (both zeros -> -0, NaN stays NaN) and vexp_unguarded == vexp bit for bit on
/// [-87, 88]: a sweep of that range (and the ulps around its ends) plus the grid's edge values.
void check_neg_abs(eval_fn ev) {
  lanes_io io = grid(formula::neg_abs);
  for (float x = -87.0f; x <= 88.0f; x += 0.0137f) io.x.push_back(x), io.y.push_back(0.0f);
  for (float e : {-87.0f, 88.0f})
    for (float x : {std::nextafter(e, -kInf), e, std::nextafter(e, kInf)})
      io.x.push_back(x), io.y.push_back(0.0f);
  for (float x : {-0.0f, 0.0f, -kInf, kInf, -1e-40f, 1e-40f, -100.0f, 100.0f})
    io.x.push_back(x), io.y.push_back(0.0f);
  while (io.x.size() % 16 != 0) io.x.push_back(1.0f), io.y.push_back(1.0f);
  io.o1.assign(io.x.size(), 0.0f);
  io.o2.assign(io.x.size(), 0.0f);
  lanes_io ref = io;
  ev(formula::neg_abs, formula_cfg{}, io);
  eval_ops(formula::neg_abs, formula_cfg{}, ref);
  int in_range = 0;
  for (std::size_t i = 0; i < io.x.size(); ++i) {
    INFO("x=" << io.x[i]);
    CHECK(same_bits(io.o1[i], ref.o1[i]));
    if (io.x[i] >= -87.0f && io.x[i] <= 88.0f) {
      ++in_range;
      CHECK(same_bits(io.o2[i], 0.0f));  // (a NaN difference would fail too)
    }
  }
  CHECK(in_range > 12000);
}

/// Checks one ISA's evaluator against the ops on every formula and configuration.
void check_isa(eval_fn ev) {
  std::vector<formula_cfg> cfgs(6);
  cfgs[1].cp = {0.2f, 0.28f, 3.0f, 0.0f};  // clip-higher + TRL delta
  cfgs[2].cp = {0.2f, 0.2f, 0.0f, 3.0f};   // verl dual clip
  cfgs[2].row_A = -1.0f;
  cfgs[3].kl = {grpo::ops::kl_estimator::k1, 0.0, 0.5, false};
  cfgs[3].row_A = 0.0f;
  cfgs[4].kl = {grpo::ops::kl_estimator::abs, 0.0, 0.0, true};
  cfgs[5].kl = {grpo::ops::kl_estimator::k2, 0.0, 0.3, false};
  cfgs[5].lr_lo = -1.0f, cfgs[5].lr_hi = 0.5f;
  const formula exact[] = {formula::ppo,        formula::ppo_row,   formula::cispo_cap,
                           formula::cispo_clip, formula::clip_pred, formula::helpers};
  for (std::size_t k = 0; k < cfgs.size(); ++k) {
    for (formula f : exact) {
      lanes_io a = grid(f), b = grid(f);
      ev(f, cfgs[k], a);
      eval_ops(f, cfgs[k], b);
      for (std::size_t i = 0; i < a.x.size(); ++i) {
        INFO("formula " << static_cast<int>(f) << " cfg " << k << " x=" << a.x[i]
                        << " y=" << a.y[i]);
        CHECK(same_bits(a.o1[i], b.o1[i]));
        CHECK(same_bits(a.o2[i], b.o2[i]));
      }
    }
    // KL: k1 / abs / k2 without exp are bitwise; k3 and the ratio / SAPO carry the rows' exp
    // error (A::exp_fast on [-87, 88]: relative 3e-7 + 1e-7 |x|, |x| <= 88 here; A::exp_full
    // outside): relative 2e-5 of the value, plus 1e-6 absolute for the cancellations of
    // e^d - d - 1 and 1 - e^d near d = 0.
    // SAPO with the per-call constants: bitwise the division form (taus 1 / 1.05 here, and
    // powers of two below: one division less).
    for (const auto& taus : {std::pair<float, float>{c_tau(cfgs[k], 0), c_tau(cfgs[k], 1)},
                             std::pair<float, float>{0.5f, 2.0f}, std::pair<float, float>{1.0f, 0.25f}}) {
      formula_cfg c = cfgs[k];
      c.tau_pos = taus.first, c.tau_neg = taus.second;
      lanes_io a = grid(formula::sapo_q), b = grid(formula::sapo);
      ev(formula::sapo_q, c, a);
      ev(formula::sapo, c, b);
      for (std::size_t i = 0; i < a.x.size(); ++i) {
        INFO("sapo_q cfg " << k << " tau " << c.tau_pos << " / " << c.tau_neg << " x=" << a.x[i]
                           << " y=" << a.y[i]);
        CHECK(same_bits(a.o1[i], b.o1[i]));
        CHECK(same_bits(a.o2[i], b.o2[i]));
      }
    }
    const formula approx[] = {formula::kl, formula::sapo, formula::ratio};
    for (formula f : approx) {
      formula_cfg c = cfgs[k];
      if (f == formula::kl && k < 3) c.kl = {grpo::ops::kl_estimator::k3, k == 1 ? 0.7 : 0.0,
                                             k == 2 ? 2.0 : 0.0, false};
      const bool bitwise = f == formula::kl && c.kl.estimator != grpo::ops::kl_estimator::k3;
      lanes_io a = grid(f), b = grid(f);
      ev(f, c, a);
      eval_ops(f, c, b);
      for (std::size_t i = 0; i < a.x.size(); ++i) {
        INFO("formula " << static_cast<int>(f) << " cfg " << k << " x=" << a.x[i]
                        << " y=" << a.y[i]);
        for (int o = 0; o < 2; ++o) {
          const float u = o == 0 ? a.o1[i] : a.o2[i], v = o == 0 ? b.o1[i] : b.o2[i];
          if (bitwise || !std::isfinite(v)) {
            CHECK(same_bits(u, v));
          } else {
            CHECK(std::fabs(u - v) <= 2e-5f * std::fabs(v) + 1e-6f);
          }
        }
      }
    }
  }
}

}  // namespace

TEST_CASE("loss lanes: avx2 packet formulas equal the scalar ops lane by lane") {
#if GRPO_LOSS_HAS_AVX2_ROWS
  if (grpo::active_isa() < grpo::isa::avx2) {
    MESSAGE("SKIPPED: this CPU (or GRPO_ISA) does not allow avx2");
    return;
  }
  check_isa(&grpo::detail::loss_avx2::eval);
  check_neg_abs(&grpo::detail::loss_avx2::eval);
#else
  MESSAGE("SKIPPED: no avx2 packet in this build (not x86-64)");
#endif
}

TEST_CASE("loss lanes: avx512 packet formulas equal the scalar ops lane by lane") {
#if GRPO_LOSS_HAS_AVX512_ROWS
  if (grpo::active_isa() < grpo::isa::avx512) {
    MESSAGE("SKIPPED: this CPU (or GRPO_ISA) does not allow avx512: its lane formulas are the "
            "same text as avx2's, checked above");
    return;
  }
  check_isa(&grpo::detail::loss_avx512::eval);
  check_neg_abs(&grpo::detail::loss_avx512::eval);
#else
  MESSAGE("SKIPPED: no avx512 packet in this build (not x86-64)");
#endif
}

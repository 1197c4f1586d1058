// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: numeric entry points (compute_loss_into, compute_advantages,
// selective_log_softmax + backward, dense distillation) on arbitrary values and options.
// Property (design.md section 4): every call either throws a named grpo::error or returns finite
// outputs; where the objective is smooth (REINFORCE / SAPO loss, log-softmax, forward KL), the
// analytic gradient matches central finite differences. Sizes stay tiny so each input is cheap.
#include <distill/dense.hpp>
#include <grpo/advantage.hpp>
#include <grpo/logprob.hpp>
#include <grpo/loss.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace {

/// Reads bytes as a stream of small integers and doubles (raw bit patterns: NaN, Inf, huge,
/// subnormal values all occur); past the end it yields zeros.
struct reader {
  const std::uint8_t* p;
  std::size_t n;
  unsigned byte() { return n ? (--n, *p++) : 0u; }
  double raw() {
    std::uint64_t b = 0;
    for (int k = 0; k < 8; ++k) b = (b << 8) | byte();
    double x;
    std::memcpy(&x, &b, sizeof x);
    return x;
  }
  /// Mostly moderate values (so the finite-difference checks run), sometimes a raw pattern.
  double value(double scale) {
    const unsigned sel = byte();
    if (sel < 16) return raw();
    return scale * (static_cast<double>(byte()) - 128.0) / 64.0;
  }
};

bool finite(double x) {
  return std::isfinite(x);
}

/// x as float without the undefined out-of-range conversion: beyond FLT_MAX it is +-inf.
float to_float(double x) {
  constexpr double m = std::numeric_limits<float>::max();
  if (x > m) return std::numeric_limits<float>::infinity();
  if (x < -m) return -std::numeric_limits<float>::infinity();
  return static_cast<float>(x);
}

template <class F>
bool named(F&& f) {
  try {
    f();
    return false;
  } catch (const grpo::error&) {
    return true;  // a named error is an allowed outcome
  }
}

void fuzz_loss(reader& in) {
  const grpo::index_t B = 1 + in.byte() % 3, T = 1 + in.byte() % 4;
  const auto n = static_cast<std::size_t>(B * T);
  std::vector<double> lp(n), old(n), adv(n), mask(n), grad(n);
  for (std::size_t k = 0; k < n; ++k) {
    lp[k] = -std::fabs(in.value(2.0));
    old[k] = -std::fabs(in.value(2.0));
    adv[k] = in.value(1.0);
    mask[k] = (in.byte() & 3) ? 1.0 : in.value(1.0);
  }
  grpo::loss_options o;
  const unsigned kind = in.byte() % 7;  // 6: out of range on purpose
  o.policy.kind = static_cast<grpo::policy_loss_kind>(kind);
  o.agg.mode = static_cast<grpo::agg_mode>(in.byte() % 7);
  if (in.byte() & 1) o.policy.vespo_k_pos = in.value(3.0);
  if (in.byte() & 1) o.policy.log_ratio_max = in.value(20.0);
  grpo::loss_batch<double, double> b;
  b.logp = grpo::make_view(static_cast<const double*>(lp.data()), {B, T});
  b.old_logp = grpo::make_view(static_cast<const double*>(old.data()), {B, T});
  b.advantages = grpo::make_view(static_cast<const double*>(adv.data()), {B, T});
  b.mask = grpo::make_view(static_cast<const double*>(mask.data()), {B, T});
  grpo::loss_outputs<double> out;
  out.grad_logp = grpo::make_view(grad.data(), {B, T});
  grpo::loss_scalars s;
  if (named([&] { s = grpo::compute_loss_into(o, b, out); })) return;
  if (!finite(s.loss)) __builtin_trap();
  // The gradient is finite while |A| m stays within the documented envelope (docs/architecture.md:
  // advantages and mask weights up to 1e150 are the caller's side of the contract; beyond it the
  // product A m itself may exceed DBL_MAX).
  bool in_envelope = true;
  for (std::size_t k = 0; k < n; ++k)
    in_envelope = in_envelope && std::fabs(adv[k]) <= 1e150 && std::fabs(mask[k]) <= 1e150;
  if (in_envelope)
    for (double g : grad)
      if (!finite(g)) __builtin_trap();
  // Central differences where the loss is smooth in logp: REINFORCE and SAPO at token level with
  // token_mean (denominators from the mask only), moderate values.
  const bool smooth = (o.policy.kind == grpo::policy_loss_kind::reinforce ||
                       o.policy.kind == grpo::policy_loss_kind::sapo) &&
                      o.agg.mode == grpo::agg_mode::token_mean && !(o.policy.log_ratio_max < 50.0);
  if (!smooth) return;
  for (std::size_t k = 0; k < n; ++k)
    if (std::fabs(lp[k]) > 8 || std::fabs(old[k]) > 8 || std::fabs(adv[k]) > 4) return;
  std::vector<double> g2(n);
  out.grad_logp = grpo::make_view(g2.data(), {B, T});
  const std::size_t k = in.byte() % n;
  const double h = 1e-6, x0 = lp[k];
  lp[k] = x0 + h;
  const double up = grpo::compute_loss_into(o, b, out).loss;
  lp[k] = x0 - h;
  const double dn = grpo::compute_loss_into(o, b, out).loss;
  lp[k] = x0;
  const double fd = (up - dn) / (2 * h);
  if (std::fabs(fd - grad[k]) > 1e-5 * (1.0 + std::fabs(fd))) __builtin_trap();
}

void fuzz_advantages(reader& in) {
  const grpo::index_t B = 2 * (1 + in.byte() % 4);
  std::vector<double> r(static_cast<std::size_t>(B)), a(r.size());
  for (auto& x : r) x = in.value(4.0);
  grpo::advantage_options o;
  o.estimator = static_cast<grpo::adv_estimator>(in.byte() % 9);  // 8: out of range
  o.zero_variance = static_cast<grpo::zero_variance_policy>(in.byte() % 3);
  o.singleton = static_cast<grpo::singleton_policy>(in.byte() % 2);
  if (in.byte() & 1) o.eps = in.byte() & 1 ? 0.0 : std::fabs(in.value(1e-3));
  if (named([&] { grpo::compute_advantages(r, grpo::group_spec::fixed(2), a, o); })) return;
  for (double x : a)
    if (!finite(x)) __builtin_trap();
}

void fuzz_logprob(reader& in) {
  const grpo::index_t N = 1 + in.byte() % 3, V = 1 + in.byte() % 5;
  std::vector<float> x(static_cast<std::size_t>(N * V)), lp(static_cast<std::size_t>(N));
  std::vector<float> glp(lp.size()), g(x.size());
  std::vector<std::int64_t> ids(lp.size());
  for (auto& v : x) v = to_float(in.value(3.0));
  for (auto& y : ids) y = static_cast<std::int64_t>(in.byte() % (V + 1));  // V: out of range
  for (auto& v : glp) v = to_float(in.value(1.0));
  grpo::logprob_options opt;
  opt.temperature = (in.byte() & 7) ? 1.0f : to_float(in.value(1.0));
  const auto xv = grpo::make_view(static_cast<const float*>(x.data()), {N, V});
  const auto iv = grpo::make_view(static_cast<const std::int64_t*>(ids.data()), {N});
  if (named([&] {
        grpo::selective_log_softmax(xv, iv, grpo::make_view(lp.data(), {N}), {}, {}, opt);
      }))
    return;
  for (float v : lp)
    if (!(v <= 1e-6f)) __builtin_trap();  // log-probabilities: <= 0 (float rounding) or -inf
  if (named([&] {
        grpo::selective_log_softmax_backward(
            xv, iv, grpo::make_view(static_cast<const float*>(glp.data()), {N}),
            grpo::strided_view<const float, 1>{}, grpo::make_view(g.data(), {N, V}), opt);
      }))
    return;
  for (float v : g)
    if (!std::isfinite(v)) __builtin_trap();
  // d/dx_j of sum_i glp_i logp_i at one element, central differences in double on the formula.
  if (opt.temperature != 1.0f) return;
  for (float v : x)
    if (!(std::fabs(v) <= 16.0f)) return;
  const std::size_t i = in.byte() % static_cast<std::size_t>(N);
  const std::size_t j = in.byte() % static_cast<std::size_t>(V);
  auto logp = [&](double dx) {
    double m = -1e300;
    for (grpo::index_t c = 0; c < V; ++c)
      m = std::max(m, double(x[i * V + c]) + (c == grpo::index_t(j) ? dx : 0));
    double s = 0;
    for (grpo::index_t c = 0; c < V; ++c)
      s += std::exp(double(x[i * V + c]) + (c == grpo::index_t(j) ? dx : 0) - m);
    const auto y = static_cast<std::size_t>(ids[i]);
    return double(x[i * V + y]) + (y == j ? dx : 0) - m - std::log(s);
  };
  const double fd = glp[i] * (logp(1e-6) - logp(-1e-6)) / 2e-6;
  if (std::fabs(fd - g[i * V + j]) > 1e-4 * (1.0 + std::fabs(fd))) __builtin_trap();
}

void fuzz_distill(reader& in) {
  const grpo::index_t N = 1 + in.byte() % 2, V = 2 + in.byte() % 4;
  std::vector<double> s(static_cast<std::size_t>(N * V)), u(s.size()), g(s.size());
  for (auto& v : s) v = in.value(3.0);
  for (auto& v : u) v = in.value(3.0);
  grpo::distill::distill_options o;
  o.kind = static_cast<grpo::distill::divergence>(in.byte() % 6);  // 5: out of range
  o.beta = (in.byte() & 3) ? 0.5 : in.value(1.0);
  o.alpha = 0.1;
  o.temperature = (in.byte() & 3) ? 1.0 : std::fabs(in.value(1.0));
  const auto sv = grpo::make_view(static_cast<const double*>(s.data()), {N, V});
  const auto uv = grpo::make_view(static_cast<const double*>(u.data()), {N, V});
  grpo::distill::loss_result r;
  if (named([&] {
        r = grpo::distill::divergence_loss(sv, uv, grpo::make_view(g.data(), {N, V}), o);
      }))
    return;
  if (!finite(r.loss)) __builtin_trap();
  for (double v : g)
    if (!finite(v)) __builtin_trap();
  if (o.kind != grpo::distill::divergence::forward_kl || o.temperature != 1.0) return;
  for (double v : s)
    if (std::fabs(v) > 16) return;
  for (double v : u)
    if (std::fabs(v) > 16) return;
  const std::size_t k = in.byte() % s.size();
  const double x0 = s[k];
  s[k] = x0 + 1e-6;
  const double up = grpo::distill::divergence_loss(sv, uv, o).loss;
  s[k] = x0 - 1e-6;
  const double dn = grpo::distill::divergence_loss(sv, uv, o).loss;
  s[k] = x0;
  const double fd = (up - dn) / 2e-6;
  if (std::fabs(fd - g[k]) > 1e-4 * (1.0 + std::fabs(fd))) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  reader in{data + 1, size - 1};
  switch (data[0] % 4) {
    case 0:
      fuzz_loss(in);
      break;
    case 1:
      fuzz_advantages(in);
      break;
    case 2:
      fuzz_logprob(in);
      break;
    default:
      fuzz_distill(in);
      break;
  }
  return 0;
}

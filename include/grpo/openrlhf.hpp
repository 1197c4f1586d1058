// SPDX-License-Identifier: Apache-2.0
/// @file openrlhf.hpp
/// @brief OpenRLHF's experience side reproduced exactly: compute_approx_kl and the actor's KL loss,
///        and compute_advantages_and_returns (group baselines, reward clip_range, KL in the reward,
///        REINFORCE returns or GAE with critic values, global token whitening, no_std_norm), with
///        OpenRLHF's float32 casts emulated (openrlhf_args::emulate_float32) or in exact float64.
///
/// Anchor: OpenRLHF/OpenRLHF @ 3c3be62 (openrlhf/models/utils.py compute_approx_kl /
/// compute_reward / masked_mean, openrlhf/trainer/ppo_utils/experience_maker.py). The loss side
/// (PolicyLoss.forward) is from_openrlhf / openrlhf_metrics in <grpo/presets.hpp>.
///
/// Where OpenRLHF computes in float32 whatever the input dtype (what emulate_float32 reproduces):
///   * compute_approx_kl: `.float()` on both log-probs, so kl_t = fl(k(fl(lp) - fl(lb))) with every
///     operation rounded to float32, clamped to [-10, 10]; its gradient flows through the same
///     float32 graph (the actor's KL loss then divides a float32 sum);
///   * KL in the reward: compute_reward builds the token rewards in kl's dtype (float32):
///     r_t = fl(fl(-coef) kl_t) + [t = last valid] fl(R); the returns accumulate them in double
///     (torch.zeros of the default dtype) and are stored as float32;
///   * global whitening (gae, reinforce, reinforce_baseline): `.float()` on the advantages, so the
///     mean and the biased variance are float32 sums and rstd = fl(1 / fl(sqrt(max(var, 1e-8))));
///     the advantages themselves stay in their own dtype ((a - mean) rstd in double unless the KL
///     path made them float32).
/// torch's float32 sums are reproduced in the order of its CPU reduction kernel (ATen SumKernel
/// cascade_sum: 8-lane float vectors, 4 accumulators, lanes added left to right; the sum kernel is
/// registered without an AVX-512 variant, so x86 CPUs with and without AVX-512 use this order),
/// which is what the conformance file was produced with; single-chunk sums only (fewer than 32768
/// elements, torch's parallel grain). On GPU torch reduces in another order, so a CUDA run of
/// OpenRLHF agrees with the emulation to float32 rounding of its sums (~1e-7 relative), not bit
/// for bit.
#pragma once

#include <grpo/advantage.hpp>
#include <grpo/core/config.hpp>
#include <grpo/core/error.hpp>
#include <grpo/core/strided_view.hpp>
#include <grpo/detail/openrlhf_f32.hpp>
#include <grpo/kl.hpp>
#include <grpo/presets.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace grpo {

namespace detail {

/// Step 4 of compute_openrlhf_advantages, OpenRLHF's global whitening over the valid tokens:
/// mu = sum m a / N, var = sum m (a - mu)^2 / N (biased), a <- (a - mu) rsqrt(max(var, 1e-8))
/// (no_std_norm: a - mu), applied at every position, padding included. f32: OpenRLHF's `.float()`
/// copy, so mu, var and rstd are float32 (torch's sum order, float divide, 1 / sqrt); the update
/// itself runs in the advantages' own dtype (adv32: float32, else double with float mu, rstd).
inline void openrlhf_whiten(std::vector<double>& adv, const std::vector<unsigned char>& valid,
                            bool f32, bool adv32, bool no_std_norm, double& mean_out,
                            double& rstd_out) {
  double cnt = 0.0;
  for (const unsigned char v : valid) cnt += v ? 1.0 : 0.0;
  if (f32) {
    std::vector<float> buf(adv.size());
    for (std::size_t k = 0; k < adv.size(); ++k)
      buf[k] = valid[k] ? static_cast<float>(adv[k]) : 0.0f;
    const float mean = torch_cpu_sum_f32(buf.data(), buf.size()) / static_cast<float>(cnt);
    float rstd = 1.0f;
    if (!no_std_norm) {
      for (std::size_t k = 0; k < adv.size(); ++k) {
        const float c = static_cast<float>(adv[k]) - mean;
        buf[k] = valid[k] ? mul32(c, c) : 0.0f;
      }
      const float var = torch_cpu_sum_f32(buf.data(), buf.size()) / static_cast<float>(cnt);
      rstd = 1.0f / std::sqrt(std::max(var, static_cast<float>(1e-8)));
    }
    for (double& x : adv)
      x = adv32 ? static_cast<double>((static_cast<float>(x) - mean) * rstd)
                : (x - static_cast<double>(mean)) * static_cast<double>(rstd);
    mean_out = mean;
    rstd_out = rstd;
    return;
  }
  double s = 0.0;
  for (std::size_t k = 0; k < adv.size(); ++k) s += valid[k] ? adv[k] : 0.0;
  const double mean = s / cnt;
  double rstd = 1.0;
  if (!no_std_norm) {
    double v = 0.0;
    for (std::size_t k = 0; k < adv.size(); ++k)
      if (valid[k]) v += (adv[k] - mean) * (adv[k] - mean);
    rstd = 1.0 / std::sqrt(std::max(v / cnt, 1e-8));
  }
  for (double& x : adv) x = (x - mean) * rstd;
  mean_out = mean;
  rstd_out = rstd;
}

}  // namespace detail

/// OpenRLHF compute_approx_kl(log_probs, log_probs_base, kl_estimator): kl_it (unmasked, clamped
/// to [-10, 10]) and d kl_it / d lp_it, in float32 (emulate_float32, OpenRLHF's `.float()`) or
/// float64. k1 = x, k2 = x^2 / 2, k3 = exp(-x) - 1 + x with x = lp - lb.
/// @pre e in {k1, k2, k3}; logp, base, kl_out (and grad_out when given) are [B, T] host views.
template <class T, class U, class O, class G = O>
void openrlhf_approx_kl(kl_estimator e, strided_view<const T, 2> logp,
                        strided_view<const U, 2> base, strided_view<O, 2> kl_out,
                        strided_view<G, 2> grad_out = {}, bool emulate_float32 = true) {
  expect_host(logp, "log_probs");
  expect_extents(base, logp.extents(), "log_probs_base");
  expect_extents(kl_out, logp.extents(), "kl (out)");
  GRPO_EXPECTS(e == kl_estimator::k1 || e == kl_estimator::k2 || e == kl_estimator::k3, bad_option,
               "openrlhf_approx_kl: estimator must be k1, k2 or k3");
  const bool want_grad = grad_out.data_handle() != nullptr;
  if (want_grad) expect_extents(grad_out, logp.extents(), "grad (out)");
  for (index_t i = 0; i < logp.extent(0); ++i)
    for (index_t t = 0; t < logp.extent(1); ++t) {
      const auto v =
          detail::openrlhf_kl_token(e, static_cast<double>(logp(i, t)),
                                    static_cast<double>(base(i, t)), 1.0, emulate_float32);
      kl_out(i, t) = static_cast<O>(v.value);
      if (want_grad) grad_out(i, t) = static_cast<G>(v.grad);
    }
}

/// The actor's KL loss with algo.kl.use_loss: aggregate_loss(compute_approx_kl(lp, lb), mask,
/// token-level, dp_size, batch_num_tokens) and its gradient d / d lp (before the init_coef
/// factor). float32 emulation: the masked KL is summed in torch's float32 order and divided in
/// float32 (batch_num_tokens is a float32 0-dim tensor in the trainer); the gradient is
/// fl(dp / N) pushed through the float32 estimator graph (detail::openrlhf_kl_loss_core, the
/// copy compute_loss uses under loss_options::kl_openrlhf_float32, there with the coefficient
/// in the chain). Mask entries count as 0 / 1 (bool). Without batch_num_tokens: masked_mean
/// (dp_size unused; N = 0 gives NaN, as OpenRLHF).
/// @pre logp, base, mask, grad_out are [B, T] host views.
template <class T, class U, class M, class G>
double openrlhf_kl_loss(const openrlhf_args& a, strided_view<const T, 2> logp,
                        strided_view<const U, 2> base, strided_view<const M, 2> mask,
                        strided_view<G, 2> grad_out) {
  expect_host(logp, "log_probs");
  expect_extents(base, logp.extents(), "log_probs_base");
  expect_extents(mask, logp.extents(), "action_mask");
  expect_extents(grad_out, logp.extents(), "grad (out)");
  const kl_estimator e = kl_params_from_string(a.algo.kl.estimator, false).estimator;
  GRPO_EXPECTS(e != kl_estimator::abs, bad_option, "algo.kl.estimator must be k1, k2 or k3");
  const index_t B = logp.extent(0), Tn = logp.extent(1);
  auto mk = [&](index_t i, index_t t) { return static_cast<double>(mask(i, t)) != 0.0; };
  double count = 0.0;
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < Tn; ++t) count += mk(i, t) ? 1.0 : 0.0;
  const bool global = a.batch_num_tokens.has_value();
  return detail::openrlhf_kl_loss_core(
      e, B, Tn, [&](index_t i, index_t t) { return static_cast<double>(logp(i, t)); },
      [&](index_t i, index_t t) { return static_cast<double>(base(i, t)); }, mk,
      global ? *a.batch_num_tokens : count, global ? a.dp_size : 1.0, 1.0, a.emulate_float32,
      [&](index_t i, index_t t, double, double g) { grad_out(i, t) = static_cast<G>(g); });
}

/// What compute_openrlhf_advantages learnt besides the advantages and returns.
struct openrlhf_advantage_stats {
  std::vector<double> group_reward_std;  ///< per row: its group's reward std (n > 1; else empty)
  double whiten_mean = 0.0;              ///< mean used by the whitening (float32 when emulated)
  double whiten_rstd = 1.0;              ///< 1 / std used (1 with no_std_norm or no whitening)
  bool whitened = false;                 ///< gae / reinforce / reinforce_baseline
  advantage_stats groups{};              ///< the group statistics (baseline estimators)
};

/// OpenRLHF RemoteExperienceMaker.compute_advantages_and_returns (one process, no length
/// penalties) over a batch of B rows in experience order:
///   1. rows are grouped by index[k] / n_samples_per_prompt (index = original sample ids; empty:
///      0..B-1); baseline per algo.advantage.estimator: rloo R - (sum_g - R) / (n - 1);
///      reinforce_baseline, dr_grpo R - mean_g; group_norm (R - mean_g) / (std_g + 1e-9) (Bessel);
///      gae, reinforce: R unchanged;
///   2. compute_reward: R clamped to reward.clip_range, placed on the row's last valid token (the
///      last column for an empty row), plus -coef kl_t on every token (coef = init_coef, 0 when
///      <= 0, and 0 with algo.kl.use_loss, where the KL is a loss instead), times the mask;
///   3. gae: delta_t = r_t + gamma V_{t+1} - V_t (V masked), A_t = delta_t + gamma lambd A_{t+1},
///      returns = A + V; others: returns G_t = r_t + gamma G_{t+1} (gamma forced to 1 for the group
///      estimators, as OpenRLHF), advantages = returns;
///   4. gae, reinforce, reinforce_baseline: A <- (A - mu) rsqrt(max(var, 1e-8)) with the
///      token mean and BIASED variance over the valid tokens of the whole batch (no_std_norm:
///      A - mu). The whitened advantages are nonzero at padding, as OpenRLHF's.
/// Float32 emulation (a.emulate_float32) as the file comment says; the float32 reward path is
/// taken when `kl` is given (OpenRLHF's kl is float32 exactly when a reference model computed it),
/// else the rewards stay double. Mask entries count as 0 / 1 (OpenRLHF's masks are bool).
/// @param rewards [B] scalar rewards (experience order); index [B] original sample ids or empty
/// @param mask [B, T]; kl [B, T] per-token KL (openrlhf_approx_kl) or a null view
/// @param values [B, T] critic values (gae only, else null); adv_out, ret_out [B, T]
/// @pre B divisible by n_samples_per_prompt for group estimators (n > 1); index a permutation
///      of 0..B-1; finite inputs. Errors: [grpo.shape_mismatch], [grpo.bad_option],
///      [grpo.bad_value], [grpo.out_of_range].
template <class R, class M, class K, class V, class A, class Ret>
openrlhf_advantage_stats compute_openrlhf_advantages(
    const openrlhf_args& a, strided_view<const R, 1> rewards, std::span<const std::int64_t> index,
    strided_view<const M, 2> mask, strided_view<const K, 2> kl, strided_view<const V, 2> values,
    strided_view<A, 2> adv_out, strided_view<Ret, 2> ret_out) {
  const index_t B = mask.extent(0), Tn = mask.extent(1);
  const std::array<index_t, 2> ext{B, Tn};
  expect_host(mask, "action_mask");
  expect_extents(rewards, {B}, "rewards");
  expect_extents(adv_out, ext, "advantages (out)");
  expect_extents(ret_out, ext, "returns (out)");
  const auto& ad = a.algo.advantage;
  const std::string& est = ad.estimator;
  const bool gae = est == "gae";
  GRPO_EXPECTS(gae || est == "reinforce" || est == "rloo" || est == "reinforce_baseline" ||
                   est == "group_norm" || est == "dr_grpo",
               bad_option, "algo.advantage.estimator: unknown '" + est + "'");
  const bool has_kl = kl.data_handle() != nullptr;
  if (has_kl) expect_extents(kl, ext, "kl");
  GRPO_EXPECTS(!gae || values.data_handle() != nullptr, shape_mismatch,
               "values: required by the gae estimator");
  if (gae) expect_extents(values, ext, "values");
  GRPO_EXPECTS(std::isfinite(ad.gamma) && std::isfinite(ad.lambd), bad_value,
               "algo.advantage.gamma / lambd must be finite");
  GRPO_EXPECTS(!a.reward.clip_range || (*a.reward.clip_range)[0] < (*a.reward.clip_range)[1],
               bad_option, "reward.clip_range: low must be < high (OpenRLHF asserts it)");
  const index_t n = a.rollout.n_samples_per_prompt;
  GRPO_EXPECTS(n >= 1, bad_value, "rollout.n_samples_per_prompt must be >= 1");
  const bool group_est =
      est == "rloo" || est == "reinforce_baseline" || est == "group_norm" || est == "dr_grpo";
  GRPO_EXPECTS(!group_est || n > 1, bad_option,
               est + " requires rollout.n_samples_per_prompt > 1 (OpenRLHF asserts it)");
  GRPO_EXPECTS(
      index.empty() || static_cast<index_t>(index.size()) == B, shape_mismatch,
      "index: " + std::to_string(index.size()) + " ids for " + std::to_string(B) + " rows");
  const bool f32 = a.emulate_float32;
  openrlhf_advantage_stats st;

  // 1. Group baselines (double, as OpenRLHF's reward tensors), rows grouped by id / n.
  std::vector<double> r(static_cast<std::size_t>(B));
  for (index_t k = 0; k < B; ++k) r[static_cast<std::size_t>(k)] = static_cast<double>(rewards(k));
  if (n > 1) {
    GRPO_EXPECTS(B % n == 0, shape_mismatch,
                 "rewards: " + std::to_string(B) +
                     " rows is not a multiple of "
                     "n_samples_per_prompt " +
                     std::to_string(n));
    std::vector<std::int64_t> gid(static_cast<std::size_t>(B));
    std::vector<unsigned char> seen(static_cast<std::size_t>(B), 0);
    for (index_t k = 0; k < B; ++k) {
      const std::int64_t id = index.empty() ? k : index[static_cast<std::size_t>(k)];
      GRPO_EXPECTS(id >= 0 && id < B && !seen[static_cast<std::size_t>(id)], out_of_range,
                   "index: must be a permutation of 0..B-1 (row " + std::to_string(k) + ")");
      seen[static_cast<std::size_t>(id)] = 1;
      gid[static_cast<std::size_t>(k)] = id / n;
    }
    advantage_options ao = est == "rloo"         ? advantage_options::openrlhf_rloo()
                           : est == "group_norm" ? advantage_options::openrlhf_group_norm()
                                                 : advantage_options::openrlhf_dr_grpo();
    std::vector<double> base(static_cast<std::size_t>(B));
    st.groups = compute_advantages(std::span<const double>(r), group_spec::ids(gid, B / n),
                                   std::span<double>(base), ao);
    st.group_reward_std.resize(static_cast<std::size_t>(B));
    for (std::size_t k = 0; k < r.size(); ++k)
      st.group_reward_std[k] = st.groups.std[static_cast<std::size_t>(st.groups.seq_group[k])];
    if (group_est) r = base;
  }
  // 2-3. Token rewards, returns / GAE per row (the float32 reward path when kl is given).
  const bool r32 = f32 && has_kl;
  const double coef =
      (a.algo.kl.use_loss || !(a.algo.kl.init_coef > 0)) ? 0.0 : a.algo.kl.init_coef;
  const double gamma = group_est ? 1.0 : ad.gamma;
  std::vector<double> adv(static_cast<std::size_t>(B * Tn)), ret(adv.size()),
      rt(static_cast<std::size_t>(Tn));
  auto mk = [&](index_t i, index_t t) { return static_cast<double>(mask(i, t)) != 0.0; };
  for (index_t i = 0; i < B; ++i) {
    double Ri = r[static_cast<std::size_t>(i)];
    if (a.reward.clip_range)
      Ri = std::min(std::max(Ri, (*a.reward.clip_range)[0]), (*a.reward.clip_range)[1]);
    index_t last = Tn - 1;  // OpenRLHF: fliplr().argmax() of an all-zero row is column T-1
    for (index_t t = Tn; t-- > 0;)
      if (mk(i, t)) {
        last = t;
        break;
      }
    for (index_t t = 0; t < Tn; ++t) {
      double v = 0.0;
      if (r32) {
        const float kr = detail::mul32(static_cast<float>(-coef), static_cast<float>(kl(i, t)));
        v = static_cast<double>(t == last ? static_cast<float>(Ri) + kr : kr);
      } else {
        const double k = has_kl ? static_cast<double>(kl(i, t)) : 0.0;
        v = (t == last ? Ri : 0.0) + -coef * k;
      }
      rt[static_cast<std::size_t>(t)] = mk(i, t) ? v : 0.0;
    }
    double* ai = &adv[static_cast<std::size_t>(i * Tn)];
    double* gi = &ret[static_cast<std::size_t>(i * Tn)];
    if (gae) {
      double lastgaelam = 0.0;
      for (index_t t = Tn; t-- > 0;) {
        const double vt = mk(i, t) ? static_cast<double>(values(i, t)) : 0.0;
        const double vn =
            (t + 1 < Tn && mk(i, t + 1)) ? static_cast<double>(values(i, t + 1)) : 0.0;
        const double delta = rt[static_cast<std::size_t>(t)] + ad.gamma * vn - vt;
        lastgaelam = delta + ad.gamma * ad.lambd * lastgaelam;
        ai[t] = lastgaelam;
        gi[t] = lastgaelam + vt;
      }
    } else {
      double cum = 0.0;  // torch.zeros(B): the default dtype (double) even on the float32 path
      for (index_t t = Tn; t-- > 0;) {
        cum = rt[static_cast<std::size_t>(t)] + gamma * cum;
        gi[t] = r32 ? static_cast<double>(static_cast<float>(cum)) : cum;
        ai[t] = gi[t];
      }
    }
  }
  // 4. Global token whitening.
  st.whitened = gae || est == "reinforce" || est == "reinforce_baseline";
  if (st.whitened) {
    std::vector<unsigned char> valid(adv.size());
    for (std::size_t k = 0; k < adv.size(); ++k)
      valid[k] = mk(static_cast<index_t>(k) / Tn, static_cast<index_t>(k) % Tn) ? 1 : 0;
    // The advantages tensor is itself float32 on the KL path without GAE (returns.clone()).
    detail::openrlhf_whiten(adv, valid, f32, r32 && !gae, ad.no_std_norm, st.whiten_mean,
                            st.whiten_rstd);
  }
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < Tn; ++t) {
      adv_out(i, t) = static_cast<A>(adv[static_cast<std::size_t>(i * Tn + t)]);
      ret_out(i, t) = static_cast<Ret>(ret[static_cast<std::size_t>(i * Tn + t)]);
    }
  return st;
}

}  // namespace grpo

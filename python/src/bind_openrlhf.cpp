// SPDX-License-Identifier: Apache-2.0
/// @file bind_openrlhf.cpp
/// @brief grpo._C: OpenRLHF's side of the core (<grpo/openrlhf.hpp>, from_openrlhf /
///        openrlhf_metrics of <grpo/presets.hpp>): openrlhf_args from OpenRLHF's flag names,
///        compute_approx_kl, compute_advantages_and_returns and PolicyLoss's metrics.
#include "common.hpp"
#include "options.hpp"

#include <grpo/openrlhf.hpp>

#include <span>

namespace grpo::py {

namespace {

/// compute_approx_kl: kl [B, T] and d kl / d logp into the float64 outputs.
void approx_kl_py(const std::string& estimator, bool emulate_float32, const arr_t& lp,
                  const arr_t& lb, const arr_t& out, const arr_t& grad) {
  for (auto [a, w] : {std::pair{&lp, "log_probs"}, {&lb, "log_probs_base"}, {&out, "kl"},
                      {&grad, "grad"}})
    expect_dtype(*a, f64, w, "float64");
  const kl_estimator e = kl_params_from_string(estimator, false).estimator;
  const auto a = view_of<const double, 2>(lp, "log_probs");
  const auto b = view_of<const double, 2>(lb, "log_probs_base");
  const auto o = view_of<double, 2>(out, "kl");
  const auto g = view_of<double, 2>(grad, "grad");
  nb::gil_scoped_release nogil;
  openrlhf_approx_kl(e, a, b, o, g, emulate_float32);
}

/// compute_advantages_and_returns: advantages and returns [B, T] (float64 outputs); returns
/// (group_reward_std per row, whiten_mean, whiten_rstd, whitened).
std::tuple<std::vector<double>, double, double, bool> advantages_py(
    const nb::dict& args, const arr_t& rewards,
    const std::optional<std::vector<std::int64_t>>& index,
    const arr_t& mask, const opt_arr& kl, const opt_arr& values, const arr_t& adv,
    const arr_t& ret) {
  const openrlhf_args a = openrlhf_from_dict(args);
  for (auto [x, w] : {std::pair{&rewards, "rewards"}, {&mask, "action_mask"},
                      {&adv, "advantages"}, {&ret, "returns"}})
    expect_dtype(*x, f64, w, "float64");
  if (kl) expect_dtype(*kl, f64, "kl", "float64");
  if (values) expect_dtype(*values, f64, "values", "float64");
  const std::vector<std::int64_t> idx = index.value_or(std::vector<std::int64_t>{});
  const auto r = view_of<const double, 1>(rewards, "rewards");
  const auto m = view_of<const double, 2>(mask, "action_mask");
  const auto k = view_or_empty<const double, 2>(kl, "kl");
  const auto v = view_or_empty<const double, 2>(values, "values");
  const auto ao = view_of<double, 2>(adv, "advantages");
  const auto ro = view_of<double, 2>(ret, "returns");
  openrlhf_advantage_stats st;
  {
    nb::gil_scoped_release nogil;
    st = compute_openrlhf_advantages(a, r, std::span<const std::int64_t>(idx), m, k, v, ao, ro);
  }
  return {st.group_reward_std, st.whiten_mean, st.whiten_rstd, st.whitened};
}

/// PolicyLoss.forward's metrics: (clip_ratio, ppo_kl, vllm_kl or None).
std::tuple<double, double, std::optional<double>> metrics_py(const nb::dict& args, const arr_t& lp,
                                                             const arr_t& lo, const arr_t& adv,
                                                             const arr_t& mask,
                                                             const opt_arr& sampler) {
  const openrlhf_args a = openrlhf_from_dict(args);
  for (auto [x, w] : {std::pair{&lp, "log_probs"}, {&lo, "old_log_probs"}, {&adv, "advantages"},
                      {&mask, "action_mask"}})
    expect_dtype(*x, f64, w, "float64");
  if (sampler) expect_dtype(*sampler, f64, "rollout_log_probs", "float64");
  loss_batch<double, double> b;
  b.logp = view_of<const double, 2>(lp, "log_probs");
  b.old_logp = view_of<const double, 2>(lo, "old_log_probs");
  b.advantages = view_of<const double, 2>(adv, "advantages");
  b.mask = view_of<const double, 2>(mask, "action_mask");
  b.sampler_logp = view_or_empty<const double, 2>(sampler, "rollout_log_probs");
  openrlhf_policy_metrics r;
  {
    nb::gil_scoped_release nogil;
    r = openrlhf_metrics(a, b);
  }
  return {r.clip_ratio, r.ppo_kl, r.vllm_kl};
}

}  // namespace

void bind_openrlhf(nb::module_& m) {
  m.def("openrlhf_approx_kl", &approx_kl_py);
  m.def("openrlhf_advantages", &advantages_py);
  m.def("openrlhf_metrics", &metrics_py);
}

}  // namespace grpo::py

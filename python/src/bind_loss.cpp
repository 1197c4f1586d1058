// SPDX-License-Identifier: Apache-2.0
/// @file bind_loss.cpp
/// @brief grpo._C: loss options (presets, from_trl, from_verl), compute_loss, aggregate, KL
///        estimators and group advantages. Thin: each function checks dtypes, builds views and calls
///        the header with the GIL released.
#include "common.hpp"
#include "options.hpp"

#include <grpo/advantage.hpp>
#include <grpo/aggregate.hpp>
#include <grpo/kl.hpp>
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>

#include <cmath>
#include <span>

namespace grpo::py {

namespace {

template <class T>
double loss_typed(const loss_options& o, const arr_t& logp, const opt_arr& old_logp,
                  const opt_arr& ref_logp, const arr_t& adv, const arr_t& mask,
                  const opt_arr& entropy, const opt_arr& sampler_logp, const arr_t& grad,
                  const opt_arr& ptl, const opt_arr& grad_h, const opt_arr& per_seq,
                  const arr_t& stats) {
  loss_batch<T, T> b;
  b.logp = view_of<const T, 2>(logp, "logp");
  b.old_logp = view_or_empty<const T, 2>(old_logp, "old_logp");
  b.ref_logp = view_or_empty<const T, 2>(ref_logp, "ref_logp");
  if (rank_of(adv) == 1) {  // per-sequence advantages: [B] seen as [B, T] with a zero T-stride
    const auto a1 = view_of<const T, 1>(adv, "advantages");
    GRPO_EXPECTS(a1.extent(0) == b.logp.extent(0), shape_mismatch,
                 "advantages: " + std::to_string(a1.extent(0)) + " rows for " +
                     std::to_string(b.logp.extent(0)) + " sequences");
    b.advantages = broadcast_rows(a1.data_handle(), b.logp.extent(0), b.logp.extent(1),
                                  a1.stride(0));
  } else {
    b.advantages = view_of<const T, 2>(adv, "advantages");
  }
  b.mask = view_of<const T, 2>(mask, "mask");
  b.entropy = view_or_empty<const T, 2>(entropy, "entropy");
  b.sampler_logp = view_or_empty<const T, 2>(sampler_logp, "sampler_logp");
  loss_outputs<T> out;
  out.grad_logp = view_of<T, 2>(grad, "grad_logp");
  out.per_token_loss = view_or_empty<T, 2>(ptl, "per_token_loss");
  out.grad_entropy = view_or_empty<T, 2>(grad_h, "grad_entropy");
  if (per_seq) {
    const auto ps = view_of<T, 1>(*per_seq, "per_seq_loss");
    GRPO_EXPECTS(ps.stride(0) == 1, shape_mismatch, "per_seq_loss: must be contiguous");
    out.per_seq_loss = std::span<T>(ps.data_handle(), static_cast<std::size_t>(ps.extent(0)));
  }
  loss_scalars r;
  {
    nb::gil_scoped_release nogil;
    r = compute_loss_into(o, b, out);
  }
  write_stats(r, stats);
  return r.loss;
}

double compute_loss_py(const loss_options& o, const arr_t& logp, const opt_arr& old_logp,
                       const opt_arr& ref_logp, const arr_t& adv, const arr_t& mask,
                       const opt_arr& entropy, const opt_arr& sampler_logp, const arr_t& grad,
                       const opt_arr& ptl, const opt_arr& grad_h, const opt_arr& per_seq,
                       const arr_t& stats) {
  const int dt = dtype_of(logp);
  GRPO_EXPECTS(dt == f32 || dt == f64, bad_option,
               "logp: compute_loss runs on float32 or float64 (the Python layer converts)");
  auto same = [&](const opt_arr& a, const char* what) {
    if (a) expect_dtype(*a, dt, what, "the dtype of logp");
  };
  for (auto [a, w] : {std::pair{&old_logp, "old_logp"}, {&ref_logp, "ref_logp"},
                      {&entropy, "entropy"}, {&sampler_logp, "sampler_logp"}, {&ptl, "per_token_loss"},
                      {&grad_h, "grad_entropy"}, {&per_seq, "per_seq_loss"}})
    same(*a, w);
  expect_dtype(adv, dt, "advantages", "the dtype of logp");
  expect_dtype(mask, dt, "mask", "the dtype of logp");
  expect_dtype(grad, dt, "grad_logp", "the dtype of logp");
  if (dt == f64)
    return loss_typed<double>(o, logp, old_logp, ref_logp, adv, mask, entropy, sampler_logp, grad,
                              ptl, grad_h, per_seq, stats);
  return loss_typed<float>(o, logp, old_logp, ref_logp, adv, mask, entropy, sampler_logp, grad,
                           ptl, grad_h, per_seq, stats);
}

template <class T>
double aggregate_typed(const agg_options& ao, const arr_t& loss, const arr_t& mask,
                       const opt_arr& grad) {
  const auto l = view_of<const T, 2>(loss, "loss");
  const auto m = view_of<const T, 2>(mask, "mask");
  const auto g = view_or_empty<T, 2>(grad, "grad");
  nb::gil_scoped_release nogil;
  return aggregate(l, m, ao, g);
}

/// OpenRLHF aggregate_loss: mode "openrlhf-token" / "openrlhf-sample" (token_level_loss true /
/// false) with loss_batch_info's dp_size, batch_num_tokens, global_batch_size (openrlhf_agg).
agg_options openrlhf_agg_of(const std::string& mode, const nb::dict& info) {
  openrlhf_args a;
  for (auto [k, v] : info) {
    const std::string key = nb::cast<std::string>(k);
    if (key == "dp_size") a.dp_size = num(v, key);
    else if (key == "batch_num_tokens") a.batch_num_tokens = opt_num(v, key);
    else if (key == "global_batch_size") a.global_batch_size = opt_num(v, key);
    else if (key == "loss_scale_factor") {
      GRPO_EXPECTS(v.is_none(), bad_option, "loss_scale_factor: verl only (not with " + mode + ")");
    } else unknown_key("aggregate", key);
  }
  return openrlhf_agg(mode == "openrlhf-token", a);
}

/// agg_loss: verl's mode name plus optional global batch information (or OpenRLHF's
/// aggregate_loss with mode "openrlhf-token" / "openrlhf-sample").
double aggregate_py(const std::string& mode, const nb::dict& info, const arr_t& loss,
                    const arr_t& mask, const opt_arr& grad) {
  const bool orl = mode == "openrlhf-token" || mode == "openrlhf-sample";
  verl_args a;
  for (auto [k, v] : orl ? nb::dict() : info) {
    const std::string key = nb::cast<std::string>(k);
    if (key == "dp_size") a.dp_size = num(v, key);
    else if (key == "batch_num_tokens") a.batch_num_tokens = opt_num(v, key);
    else if (key == "global_batch_size") a.global_batch_size = opt_num(v, key);
    else if (key == "loss_scale_factor") a.loss_scale_factor = opt_num(v, key);
    else unknown_key("aggregate", key);
  }
  const agg_options ao = orl ? openrlhf_agg_of(mode, info) : verl_agg(mode, a);
  const int dt = dtype_of(loss);
  GRPO_EXPECTS(dt == f32 || dt == f64, bad_option, "loss: float32 or float64");
  expect_dtype(mask, dt, "mask", "the dtype of loss");
  if (grad) expect_dtype(*grad, dt, "grad", "the dtype of loss");
  return dt == f64 ? aggregate_typed<double>(ao, loss, mask, grad)
                   : aggregate_typed<float>(ao, loss, mask, grad);
}

template <class T>
void kl_typed(const kl_params& p, const arr_t& lp, const arr_t& lr, const arr_t& out,
              const opt_arr& grad) {
  const auto a = view_of<const T, 2>(lp, "logp");
  const auto b = view_of<const T, 2>(lr, "ref_logp");
  const auto o = view_of<T, 2>(out, "kl");
  const auto g = view_or_empty<T, 2>(grad, "grad");
  nb::gil_scoped_release nogil;
  kl_penalty(p, a, b, o, g);
}

/// KL estimator parameters from verl's name and a clamp convention ("verl": low_var_kl inner 20 /
/// outer 10; "openrlhf": every value clamped to [-10, 10]; "none").
kl_params kl_params_of(const std::string& name, const std::string& clamps) {
  if (clamps == "verl") return kl_params_from_string(name, true);
  if (clamps == "none") return kl_params_from_string(name, false);
  if (clamps == "openrlhf") {
    const kl_params base = kl_params_from_string(name, false);
    kl_params p = openrlhf_kl_params(base.estimator);
    p.straight_through = base.straight_through;
    return p;
  }
  GRPO_THROW(bad_option, "kl clamps: expected 'verl', 'openrlhf' or 'none', got '" + clamps + "'");
}

/// Elementwise KL estimator (verl kl_penalty names; clamps: "verl" or "openrlhf" or "none").
void kl_py(const std::string& name, const std::string& clamps, const arr_t& lp, const arr_t& lr,
           const arr_t& out, const opt_arr& grad) {
  const kl_params p = kl_params_of(name, clamps);
  const int dt = dtype_of(lp);
  GRPO_EXPECTS(dt == f32 || dt == f64, bad_option, "logp: float32 or float64");
  expect_dtype(lr, dt, "ref_logp", "the dtype of logp");
  expect_dtype(out, dt, "kl", "the dtype of logp");
  if (grad) expect_dtype(*grad, dt, "grad", "the dtype of logp");
  if (dt == f64) kl_typed<double>(p, lp, lr, out, grad);
  else kl_typed<float>(p, lp, lr, out, grad);
}

/// Named advantage_options (the static constructors of advantage_options).
advantage_options adv_options(const std::string& name, const nb::dict& d) {
  bool norm = true;
  std::string scale = "group", multi = "sum_then_normalize";
  std::optional<double> eps;
  for (auto [k, v] : d) {
    const std::string key = nb::cast<std::string>(k);
    if (key == "norm_adv_by_std_in_grpo") norm = flag(v, key);
    else if (key == "scale_rewards") scale = str(v, key);
    else if (key == "multi_objective_aggregation") multi = str(v, key);
    else if (key == "epsilon") eps = opt_num(v, key);
    else unknown_key("advantages", key);
  }
  advantage_options o;
  if (name == "trl") {
    GRPO_EXPECTS(scale == "group" || scale == "batch" || scale == "none", bad_option,
                 "scale_rewards: expected 'group', 'batch' or 'none', got '" + scale + "'");
    GRPO_EXPECTS(multi == "sum_then_normalize" || multi == "normalize_then_sum", bad_option,
                 "multi_objective_aggregation: unknown '" + multi + "'");
    o = advantage_options::trl(scale == "group"   ? trl_scale::group
                               : scale == "batch" ? trl_scale::batch
                                                  : trl_scale::none,
                               multi == "normalize_then_sum" ? multi_reward_mode::normalize_then_sum
                                                             : multi_reward_mode::sum_then_normalize);
  } else if (name == "verl_grpo") o = advantage_options::verl_grpo(norm);
  else if (name == "verl_grpo_vectorized") o = advantage_options::verl_grpo_vectorized(norm);
  else if (name == "verl_rloo") o = advantage_options::verl_rloo();
  else if (name == "verl_rloo_vectorized") o = advantage_options::verl_rloo_vectorized();
  else if (name == "verl_reinforce_pp_baseline") o = advantage_options::verl_reinforce_pp_baseline();
  else if (name == "verl_opo") o = advantage_options::verl_opo();
  else if (name == "verl_gpg") o = advantage_options::verl_gpg();
  else if (name == "verl_grpo_passk") o = advantage_options::verl_grpo_passk(norm);
  else if (name == "openrlhf_group_norm") o = advantage_options::openrlhf_group_norm();
  else if (name == "openrlhf_dr_grpo") o = advantage_options::openrlhf_dr_grpo();
  else if (name == "openrlhf_rloo") o = advantage_options::openrlhf_rloo();
  else if (name == "openrlhf_reinforce_baseline")
    o = advantage_options::openrlhf_reinforce_baseline();
  else GRPO_THROW(bad_option, "advantages: unknown estimator preset '" + name + "'");
  if (eps) o.eps = *eps;
  return o;
}

/// Group advantages into `out` [B] (float64). rewards [B] or [B, K] (K reward functions with
/// `weights`); groups by size or by ids; `mask` [B, T] for the token-count estimators. Returns the
/// per-row group std and the batch std (TRL's std_rewards).
std::tuple<std::vector<double>, double> advantages_py(
    const std::string& name, const nb::dict& args, const arr_t& rewards, std::int64_t group_size,
    const opt_arr& group_ids, const opt_arr& mask, const std::optional<std::vector<double>>& weights,
    const arr_t& out) {
  const advantage_options o = adv_options(name, args);
  expect_dtype(rewards, f64, "rewards", "float64");
  expect_dtype(out, f64, "out", "float64");
  std::vector<std::int64_t> ids;
  if (group_ids) {
    expect_dtype(*group_ids, i64, "group_ids", "int64");
    const auto g = view_of<const std::int64_t, 1>(*group_ids, "group_ids");
    for (index_t i = 0; i < g.extent(0); ++i) ids.push_back(g(i));
  }
  const group_spec gs = group_ids ? group_spec::ids(ids) : group_spec::fixed(group_size);
  const auto ov = view_of<double, 1>(out, "out");
  advantage_stats st;
  {
    nb::gil_scoped_release nogil;
    if (rank_of(rewards) == 2) {
      GRPO_EXPECTS(weights.has_value(), shape_mismatch, "rewards [B, K] need weights [K]");
      const auto r = view_of<const double, 2>(rewards, "rewards");
      st = compute_multi_reward_advantages(r, std::span<const double>(*weights), gs, ov, o);
    } else if (mask) {
      expect_dtype(*mask, f64, "mask", "float64");
      st = compute_advantages(view_of<const double, 1>(rewards, "rewards"), gs,
                              view_of<const double, 2>(*mask, "mask"), ov, o);
    } else {
      st = compute_advantages(view_of<const double, 1>(rewards, "rewards"), gs, ov, o);
    }
  }
  std::vector<double> row_std;
  for (std::size_t i = 0; i < st.seq_group.size(); ++i)
    row_std.push_back(st.std.empty() ? std::nan("")
                                     : st.std[static_cast<std::size_t>(st.seq_group[i])]);
  return {row_std, st.batch_std};
}

/// REINFORCE++ token returns and whitened advantages (verl), float64 [B, T].
void reinforce_pp_py(const arr_t& rewards, const arr_t& mask, double gamma, const arr_t& adv,
                     const arr_t& ret) {
  for (auto [a, w] : {std::pair{&rewards, "token_rewards"}, {&mask, "mask"}, {&adv, "adv"},
                      {&ret, "returns"}})
    expect_dtype(*a, f64, w, "float64");
  const auto r = view_of<const double, 2>(rewards, "token_rewards");
  const auto m = view_of<const double, 2>(mask, "mask");
  const auto a = view_of<double, 2>(adv, "advantages");
  const auto g = view_of<double, 2>(ret, "returns");
  nb::gil_scoped_release nogil;
  compute_reinforce_pp_advantages(r, m, gamma, a, g);
}

/// KL as a reward penalty (grpo::kl_for_reward), float64: placement "token" writes coef m kl
/// into `out` [B, T]; "sequence_sum" writes coef sum_t m kl per row into `out` [B].
void kl_for_reward_py(const std::string& name, const std::string& clamps, double coef,
                      const std::string& placement, const arr_t& lp, const arr_t& lr,
                      const arr_t& mask, const arr_t& out) {
  const kl_params p = kl_params_of(name, clamps);
  for (auto [a, w] : {std::pair{&lp, "logp"}, {&lr, "ref_logp"}, {&mask, "mask"}, {&out, "out"}})
    expect_dtype(*a, f64, w, "float64");
  const auto a = view_of<const double, 2>(lp, "logp");
  const auto b = view_of<const double, 2>(lr, "ref_logp");
  const auto m = view_of<const double, 2>(mask, "mask");
  if (placement == "token") {
    const auto o = view_of<double, 2>(out, "out");
    nb::gil_scoped_release nogil;
    kl_for_reward(p, coef, a, b, m, kl_reward_placement::token, o);
  } else if (placement == "sequence_sum") {
    const auto o = view_of<double, 1>(out, "out");
    GRPO_EXPECTS(o.stride(0) == 1, shape_mismatch, "out: must be contiguous");
    nb::gil_scoped_release nogil;
    kl_for_reward(p, coef, a, b, m, kl_reward_placement::sequence_sum, strided_view<double, 2>{},
                  std::span<double>(o.data_handle(), static_cast<std::size_t>(o.extent(0))));
  } else {
    GRPO_THROW(bad_option,
               "placement: expected 'token' or 'sequence_sum', got '" + placement + "'");
  }
}

/// verl masked_whiten / OpenRLHF token whitening (grpo::masked_whiten), float64 [B, T]; returns
/// (mean, var, count).
std::tuple<double, double, double> masked_whiten_py(const arr_t& values, const arr_t& mask,
                                                    const arr_t& out, double eps,
                                                    const std::string& place, bool bessel,
                                                    double mean_eps, bool center_only) {
  whiten_options wo;
  wo.eps = eps;
  if (place == "inside_sqrt") wo.place = eps_placement::inside_sqrt;
  else if (place == "add_to_std") wo.place = eps_placement::add_to_std;
  else if (place == "floor_var") wo.place = eps_placement::floor_var;
  else
    GRPO_THROW(bad_option, "eps_placement: 'inside_sqrt', 'add_to_std' or 'floor_var', got '" +
                               place + "'");
  wo.bessel = bessel;
  wo.mean_eps = mean_eps;
  wo.center_only = center_only;
  for (auto [a, w] : {std::pair{&values, "values"}, {&mask, "mask"}, {&out, "out"}})
    expect_dtype(*a, f64, w, "float64");
  const auto v = view_of<const double, 2>(values, "values");
  const auto m = view_of<const double, 2>(mask, "mask");
  const auto o = view_of<double, 2>(out, "out");
  whiten_stats st;
  {
    nb::gil_scoped_release nogil;
    st = masked_whiten(v, m, o, wo);
  }
  return {st.mean, st.var, st.count};
}

/// verl's logged policy metrics (pg_clipfrac, pg_clipfrac_lower, ppo_kl) from a stats buffer.
std::tuple<double, double, double> verl_metrics_py(const arr_t& stats, const nb::dict& args) {
  const verl_policy_metrics r = verl_metrics(verl_from_dict(args), read_metrics(stats));
  return {r.pg_clipfrac, r.pg_clipfrac_lower, r.ppo_kl};
}

/// Merges stats buffers of several micro-batches / ranks into `out` (loss_metrics::merge; the four
/// scalars are summed).
void merge_stats_py(const std::vector<arr_t>& parts, const arr_t& out) {
  GRPO_EXPECTS(!parts.empty(), shape_mismatch, "merge_stats: no stats to merge");
  loss_scalars r;
  for (const arr_t& p : parts) {
    const double* v = stats_ptr(p);
    r.loss += v[0];
    r.policy_loss += v[1];
    r.kl_loss += v[2];
    r.entropy_loss += v[3];
    r.metrics.merge(read_metrics(p));
  }
  write_stats(r, out);
}

}  // namespace

void bind_loss(nb::module_& m) {
  nb::class_<loss_options>(m, "LossOptions")
      .def_prop_ro("kl_coef", [](const loss_options& o) { return o.kl_coef; })
      .def_prop_ro("entropy_coef", [](const loss_options& o) { return o.entropy_coef; })
      .def_prop_ro("sequence_level", [](const loss_options& o) {
        return o.policy.level != is_level::token;
      });
  m.def("make_loss_options", &make_options, nb::arg("kind"), nb::arg("name"), nb::arg("args"),
        nb::arg("overrides"));
  m.def("compute_loss", &compute_loss_py);
  m.def("aggregate", &aggregate_py);
  m.def("kl_penalty", &kl_py);
  m.def("advantages", &advantages_py);
  m.def("reinforce_pp", &reinforce_pp_py);
  m.def("kl_for_reward", &kl_for_reward_py);
  m.def("masked_whiten", &masked_whiten_py);
  m.def("verl_metrics", &verl_metrics_py);
  m.def("merge_stats", &merge_stats_py);
  m.attr("n_stats") = n_stats;
  m.attr("metric_names") =
      nb::make_tuple("clip_low", "clip_high", "clip_region", "clip_dual", "weight_clip",
                     "clip_low_seq", "clip_high_seq", "approx_kl", "ratio", "is_weight",
                     "advantage", "kl", "entropy", "vespo_phi");
}

}  // namespace grpo::py

// SPDX-License-Identifier: Apache-2.0
// Conformance of grpo/advantage.hpp against the peers' own outputs
// (/work/shared/conformance/grpo_peer_cases.json, produced by running verl's and TRL's code).
// Every case whose fn is an advantage estimator must be reproduced to 1e-10 in double.
#include <grpo/advantage.hpp>

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <support/compare.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "support/shared_dir.hpp"

namespace {

using json = nlohmann::json;
constexpr double tol = 1e-10;

const json& cases() {
  static const json j = [] {
    const std::string path = grpo_test::shared_path("conformance/grpo_peer_cases.json");
    std::ifstream f(path);
    REQUIRE_MESSAGE(f.good(), grpo_test::shared_missing(path));
    return json::parse(f);
  }();
  return j;
}

std::vector<std::vector<double>> matrix(const json& j) {
  std::vector<std::vector<double>> m;
  for (const auto& row : j) {
    std::vector<double> r;
    for (const auto& x : row)
      r.push_back(x.is_null() ? std::numeric_limits<double>::quiet_NaN() : x.get<double>());
    m.push_back(r);
  }
  return m;
}

std::vector<double> flat(const std::vector<std::vector<double>>& m) {
  std::vector<double> f;
  for (const auto& r : m) f.insert(f.end(), r.begin(), r.end());
  return f;
}

// verl "uid" strings -> integer ids (order of first appearance; the library densifies anyway).
std::vector<std::int64_t> uid_ids(const json& index) {
  std::map<std::string, std::int64_t> ids;
  std::vector<std::int64_t> out;
  for (const auto& u : index) {
    const auto s = u.get<std::string>();
    auto it = ids.emplace(s, static_cast<std::int64_t>(ids.size())).first;
    out.push_back(it->second);
  }
  return out;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d = grpo_test::err_max(d, std::abs(a[i] - b[i]));
  return d;
}

bool is_verl_estimator(const std::string& fn) {
  return fn.rfind("compute_", 0) == 0 && fn.find("outcome_advantage") != std::string::npos;
}
bool is_trl_advantages(const std::string& fn) {
  return fn == "GRPOTrainer._generate_and_score_completions[advantages]";
}

// verl per-sequence estimators: options by function name.
grpo::advantage_options verl_options(const std::string& fn, const json& opt) {
  const bool norm = opt.value("norm_adv_by_std_in_grpo", true);
  grpo::advantage_options o;
  if (fn == "compute_grpo_outcome_advantage")
    o = grpo::advantage_options::verl_grpo(norm);
  else if (fn == "compute_grpo_vectorized_outcome_advantage")
    o = grpo::advantage_options::verl_grpo_vectorized(norm);
  else if (fn == "compute_rloo_outcome_advantage")
    o = grpo::advantage_options::verl_rloo();
  else if (fn == "compute_rloo_vectorized_outcome_advantage")
    o = grpo::advantage_options::verl_rloo_vectorized();
  else if (fn == "compute_reinforce_plus_plus_baseline_outcome_advantage")
    o = grpo::advantage_options::verl_reinforce_pp_baseline();
  else if (fn == "compute_opo_outcome_advantage")
    o = grpo::advantage_options::verl_opo();
  else if (fn == "compute_gpg_outcome_advantage")
    o = grpo::advantage_options::verl_gpg();
  else
    FAIL("no mapping for verl estimator " << fn);
  if (opt.contains("epsilon")) o.eps = opt["epsilon"].get<double>();
  return o;
}

}  // namespace

TEST_CASE("advantage conformance: every verl outcome-advantage case to 1e-10" *
          doctest::test_suite("advantage")) {
  int n = 0;
  for (const auto& c : cases()) {
    const std::string fn = c["fn"].get<std::string>();
    if (!is_verl_estimator(fn)) continue;
    ++n;
    CAPTURE(c["id"].get<std::string>());
    const auto tr = matrix(c["inputs"]["token_level_rewards"]);
    const auto mask = matrix(c["inputs"]["response_mask"]);
    const auto B = static_cast<grpo::index_t>(tr.size());
    const auto T = static_cast<grpo::index_t>(tr[0].size());
    const auto mflat = flat(mask);
    const auto mview = grpo::make_view(mflat.data(), {B, T});
    const auto want = flat(matrix(c["outputs"]["advantages"]));
    std::vector<double> adv(static_cast<std::size_t>(B * T));
    auto aview = grpo::make_view(adv.data(), {B, T});

    if (fn == "compute_reinforce_plus_plus_outcome_advantage") {
      const auto trf = flat(tr);
      std::vector<double> ret(adv.size());
      grpo::compute_reinforce_pp_advantages(grpo::make_view(trf.data(), {B, T}), mview,
                                            c["options"]["config.gamma"].get<double>(), aview,
                                            grpo::make_view(ret.data(), {B, T}));
      CHECK(max_abs_diff(ret, flat(matrix(c["outputs"]["returns"]))) <= tol);
      CHECK(max_abs_diff(adv, want) <= tol);
      continue;
    }
    // Scores = token_level_rewards.sum(-1), as every verl outcome estimator starts.
    std::vector<double> scores(static_cast<std::size_t>(B));
    for (grpo::index_t i = 0; i < B; ++i)
      for (double x : tr[static_cast<std::size_t>(i)]) scores[static_cast<std::size_t>(i)] += x;
    const auto ids = uid_ids(c["inputs"]["index"]);
    const auto opts = verl_options(fn, c["options"]);
    std::vector<double> seq(static_cast<std::size_t>(B));
    grpo::compute_advantages(scores, grpo::group_spec::ids(ids), mview, seq, opts);
    grpo::broadcast_to_tokens(seq, mview, aview);
    CHECK(max_abs_diff(adv, want) <= tol);
    // The returns of these estimators are the advantages themselves.
    CHECK(max_abs_diff(adv, flat(matrix(c["outputs"]["returns"]))) <= tol);
  }
  // 8 grpo + 2 grpo_vectorized + 3 rloo + 2 rloo_vectorized + 4 rf++-baseline + 2 rf++ + opo + gpg
  CHECK(n == 23);
}

TEST_CASE("advantage conformance: grpo_vectorized float32 emulation is needed for 1e-10" *
          doctest::test_suite("advantage")) {
  // The vectorized cases differ from the float64 loop by ~1e-6 relative (float32 std + eps): the
  // double path must NOT match them, the emulation must. This keeps the emulation honest.
  int n = 0;
  for (const auto& c : cases()) {
    if (c["fn"].get<std::string>() != "compute_grpo_vectorized_outcome_advantage") continue;
    if (!c["options"]["norm_adv_by_std_in_grpo"].get<bool>()) continue;
    ++n;
    const auto tr = matrix(c["inputs"]["token_level_rewards"]);
    std::vector<double> scores;
    for (const auto& r : tr) {
      double s = 0;
      for (double x : r) s += x;
      scores.push_back(s);
    }
    const auto ids = uid_ids(c["inputs"]["index"]);
    std::vector<double> loop(scores.size()), vec(scores.size());
    grpo::compute_advantages(scores, grpo::group_spec::ids(ids), loop,
                             grpo::advantage_options::verl_grpo());
    grpo::compute_advantages(scores, grpo::group_spec::ids(ids), vec,
                             grpo::advantage_options::verl_grpo_vectorized());
    const auto want = matrix(c["outputs"]["advantages"]);
    double d_loop = 0, d_vec = 0;
    const auto mask = matrix(c["inputs"]["response_mask"]);
    for (std::size_t i = 0; i < scores.size(); ++i)
      for (std::size_t t = 0; t < mask[i].size(); ++t) {
        d_loop = grpo_test::err_max(d_loop, std::abs(loop[i] * mask[i][t] - want[i][t]));
        d_vec = grpo_test::err_max(d_vec, std::abs(vec[i] * mask[i][t] - want[i][t]));
      }
    CHECK(d_vec <= tol);
    CHECK(d_loop > 1e-9);
  }
  CHECK(n == 1);
}

TEST_CASE("advantage conformance: every TRL advantages case to 1e-10" *
          doctest::test_suite("advantage")) {
  int n = 0;
  for (const auto& c : cases()) {
    if (!is_trl_advantages(c["fn"].get<std::string>())) continue;
    ++n;
    CAPTURE(c["id"].get<std::string>());
    const auto& o = c["options"];
    const auto rpf = matrix(c["inputs"]["rewards_per_func"]);
    const auto B = static_cast<grpo::index_t>(rpf.size());
    const auto K = static_cast<grpo::index_t>(rpf[0].size());
    const auto rflat = flat(rpf);
    const std::vector<double> w = o["reward_weights"].get<std::vector<double>>();
    const std::string scale = o["scale_rewards"].get<std::string>();
    const grpo::trl_scale s = scale == "group"   ? grpo::trl_scale::group
                              : scale == "batch" ? grpo::trl_scale::batch
                                                 : grpo::trl_scale::none;
    const bool nts = o["multi_objective_aggregation"].get<std::string>() == "normalize_then_sum";
    const auto opts =
        grpo::advantage_options::trl(s, nts ? grpo::multi_reward_mode::normalize_then_sum
                                            : grpo::multi_reward_mode::sum_then_normalize);
    std::vector<double> adv(static_cast<std::size_t>(B));
    const auto st = grpo::compute_multi_reward_advantages(
        grpo::make_view(rflat.data(), {B, K}), w,
        grpo::group_spec::fixed(o["num_generations"].get<grpo::index_t>()), adv, opts);
    CHECK(max_abs_diff(adv, c["outputs"]["advantages"].get<std::vector<double>>()) <= tol);
    // TRL's std_rewards: the group std (group/none) or the batch std (batch, normalize_then_sum).
    const auto want_std = c["outputs"]["std_rewards"].get<std::vector<double>>();
    const auto want_zero = c["outputs"]["is_std_zero"].get<std::vector<bool>>();
    for (grpo::index_t i = 0; i < B; ++i) {
      const double sd =
          (nts || s == grpo::trl_scale::batch)
              ? st.batch_std
              : st.std[static_cast<std::size_t>(st.seq_group[static_cast<std::size_t>(i)])];
      CHECK(std::abs(sd - want_std[static_cast<std::size_t>(i)]) <= tol);
      // torch.isclose(std, 0): |std| <= 1e-8.
      CHECK((std::abs(sd) <= 1e-8) == want_zero[static_cast<std::size_t>(i)]);
    }
  }
  CHECK(n == 6);
}

TEST_CASE("advantage conformance: no advantage case is left unmapped" *
          doctest::test_suite("advantage")) {
  int adv_cases = 0;
  for (const auto& c : cases()) {
    const std::string fn = c["fn"].get<std::string>();
    if (fn.find("advantage") != std::string::npos) {
      ++adv_cases;
      CHECK_MESSAGE((is_verl_estimator(fn) || is_trl_advantages(fn)), fn);
    }
  }
  CHECK(adv_cases == 29);
}

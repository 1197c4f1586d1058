// SPDX-License-Identifier: Apache-2.0
// grpo/advantage.hpp behaviour lock: the outputs and statistics of every public entry point over
// the option families (every estimator, eps placement, Bessel, singleton and zero-variance policy,
// float32 emulation, GPG alpha, keep bounds, fixed and id groups with NaN / singleton / empty
// groups, float / double / bf16 / f16 rewards and float / double outputs, multi-reward modes,
// combine_rewards, broadcast_to_tokens, masked_whiten variants, REINFORCE++) and over the inputs of
// the 29 peer conformance cases, against tests/grpo/data/advantage_golden.txt. The file was
// written by the code before the split of advantage.hpp into grpo/advantage/*.hpp (394cad4); the
// split must reproduce it bit for bit.
//
// Bound: bitwise where the compiler contracts no a * b + c into a fused multiply-add (x86-64
// without -mfma: the build that wrote the file). Where it may (FMA targets: -march=native with
// FMA, aarch64), one fused operation changes a result by <= 1 ulp of a product, amplified at most
// by the 1 / (std + eps) of a z-score; 1e-12 relative (or absolute below 1) bounds that for these
// O(1) .. O(1e2) inputs.
// Regenerate (only for a deliberate behaviour change): GRPO_ADVANTAGE_GOLDEN_WRITE=<file>.
#include <grpo/advantage.hpp>

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "support/shared_dir.hpp"

namespace {

using json = nlohmann::json;
using grpo::index_t;
const double nan_v = std::numeric_limits<double>::quiet_NaN();

// name -> values, in insertion order.
struct recorder {
  std::vector<std::pair<std::string, std::vector<double>>> rec;
  void put(const std::string& name, std::vector<double> v) { rec.emplace_back(name, std::move(v)); }
  template <class T>
  void put_vec(const std::string& name, const std::vector<T>& v) {
    std::vector<double> d;
    for (const auto& x : v) d.push_back(static_cast<double>(x));
    put(name, std::move(d));
  }
  void stats(const std::string& n, const grpo::advantage_stats& s) {
    put(n + ".scalars",
        {static_cast<double>(s.num_groups), static_cast<double>(s.num_zero_var),
         static_cast<double>(s.num_singleton), static_cast<double>(s.num_empty), s.frac_zero_std,
         s.batch_count, s.batch_nan, s.batch_mean, s.batch_std, s.whiten.mean, s.whiten.var,
         s.whiten.count});
    put_vec(n + ".group_label", s.group_label);
    put_vec(n + ".seq_group", s.seq_group);
    put_vec(n + ".count", s.count);
    put_vec(n + ".nan_count", s.nan_count);
    put_vec(n + ".mean", s.mean);
    put_vec(n + ".std", s.std);
    put_vec(n + ".min", s.min);
    put_vec(n + ".max", s.max);
    put_vec(n + ".zero_var", s.zero_var);
    put_vec(n + ".keep_verl", s.keep_verl);
    put_vec(n + ".keep_openrlhf", s.keep_openrlhf);
    put_vec(n + ".keep_tol", s.keep_tol);
  }
  void whiten(const std::string& n, const grpo::whiten_stats& w) {
    put(n + ".whiten", {w.mean, w.var, w.count});
  }
  // Runs f; an error is recorded as its message (a thrown error is behaviour too).
  template <class F>
  void guarded(const std::string& n, F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      // Id and message; the trailing " (file:line)" names a header line, which a split moves.
      std::string w = e.what();
      if (const auto p = w.rfind(" ("); p != std::string::npos) w.resize(p);
      errors.emplace_back(n, w);
    }
  }
  std::vector<std::pair<std::string, std::string>> errors;
};

std::string hex(double x) {
  if (std::isnan(x)) return "nan";
  char b[64];
  std::snprintf(b, sizeof b, "%a", x);
  return b;
}

std::string serialise(const recorder& r) {
  std::ostringstream o;
  for (const auto& [n, v] : r.rec) {
    o << n << ' ' << v.size();
    for (double x : v) o << ' ' << hex(x);
    o << '\n';
  }
  for (const auto& [n, e] : r.errors) o << "error " << n << ' ' << e << '\n';
  return o.str();
}

// ---------------------------------------------------------------------------------------------
// Inputs. 12 rows in 3 groups of 4 (one zero-variance, one with a NaN) and 11 rows with explicit
// ids (sparse, unordered; a singleton, a group with only NaN, a zero-variance pair).
const std::vector<double> r_fixed = {0.5, 1.0, 0.0, 1.0, 2.0,  2.0,   2.0,  2.0,
                                     3.0, nan_v, -1.5, 0.25};
const std::vector<double> r_ids = {1.0, 0.0, 7.0, nan_v, 0.5, 0.5, 2.0, nan_v, 1.0, -3.0, 0.125};
const std::vector<std::int64_t> ids = {10, 10, 5, 42, 3, 3, 10, 42, 5, -1, 10};
// passk / error-policy inputs: every group has >= 2 scorable members.
const std::vector<double> r_full = {0.5, 1.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0, 3.0, 0.0, -1.5, 0.25};
// Lengths for reinforce_pp_baseline / opo: a [12, 5] mask with rows of 1..5 tokens.
std::vector<double> mask_12x5() {
  std::vector<double> m(60, 0.0);
  for (int i = 0; i < 12; ++i)
    for (int t = 0; t < 1 + (i * 7) % 5; ++t) m[static_cast<std::size_t>(i * 5 + t)] = 1.0;
  return m;
}

struct named_options {
  std::string name;
  grpo::advantage_options o;
};

std::vector<named_options> option_families() {
  using grpo::advantage_options;
  std::vector<named_options> v = {
      {"trl.group", advantage_options::trl(grpo::trl_scale::group)},
      {"trl.batch", advantage_options::trl(grpo::trl_scale::batch)},
      {"trl.none", advantage_options::trl(grpo::trl_scale::none)},
      {"verl_grpo", advantage_options::verl_grpo()},
      {"verl_grpo.nostd", advantage_options::verl_grpo(false)},
      {"verl_grpo_vectorized", advantage_options::verl_grpo_vectorized()},
      {"verl_grpo_vectorized.nostd", advantage_options::verl_grpo_vectorized(false)},
      {"verl_rloo", advantage_options::verl_rloo()},
      {"verl_rloo_vectorized", advantage_options::verl_rloo_vectorized()},
      {"verl_reinforce_pp_baseline", advantage_options::verl_reinforce_pp_baseline()},
      {"verl_opo", advantage_options::verl_opo()},
      {"verl_gpg", advantage_options::verl_gpg()},
      {"openrlhf_dr_grpo", advantage_options::openrlhf_dr_grpo()},
      {"openrlhf_reinforce_baseline", advantage_options::openrlhf_reinforce_baseline()},
  };
  const grpo::adv_estimator ests[] = {
      grpo::adv_estimator::grpo, grpo::adv_estimator::dr_grpo,
      grpo::adv_estimator::batch_std, grpo::adv_estimator::rloo,
      grpo::adv_estimator::reinforce_pp_baseline, grpo::adv_estimator::opo,
      grpo::adv_estimator::gpg};
  for (auto e : ests) {
    const std::string en = "est" + std::to_string(static_cast<int>(e));
    advantage_options base;
    base.estimator = e;
    v.push_back({en + ".default", base});
    for (int p = 0; p < 3; ++p) {
      auto o = base;
      o.eps_place = static_cast<grpo::eps_placement>(p);
      o.eps = 1e-3;
      v.push_back({en + ".place" + std::to_string(p), o});
    }
    auto o = base;
    o.bessel = false;
    v.push_back({en + ".nobessel", o});
    o = base;
    o.scale_by_std = false;
    v.push_back({en + ".noscale", o});
    o = base;
    o.singleton = grpo::singleton_policy::unit_baseline;
    v.push_back({en + ".single_unit", o});
    for (auto zp : {grpo::zero_variance_policy::keep, grpo::zero_variance_policy::report}) {
      o = base;
      o.zero_variance = zp;
      o.zero_var_tol = 0.3;
      v.push_back({en + ".zv" + std::to_string(static_cast<int>(zp)), o});
    }
    o = base;
    o.keep_lo = 0.2;
    o.keep_hi = 1.9;
    v.push_back({en + ".keep", o});
  }
  advantage_options g = advantage_options::verl_gpg();
  g.gpg_alpha = 0.7;
  g.gpg_f_norm = 2.5;
  v.push_back({"gpg.alpha", g});
  advantage_options f = advantage_options::verl_grpo_vectorized();
  f.var_floor = 0.05;
  v.push_back({"f32.var_floor", f});
  advantage_options w = advantage_options::verl_reinforce_pp_baseline();
  w.whiten.center_only = true;
  v.push_back({"rpp.center_only", w});
  return v;
}

bool needs_mask(const grpo::advantage_options& o) {
  return o.estimator == grpo::adv_estimator::reinforce_pp_baseline ||
         o.estimator == grpo::adv_estimator::opo;
}

// compute_advantages for one option set on one input, rewards of type R, output of type O.
template <class R, class O>
void run_one(recorder& rec, const std::string& n, const std::vector<double>& r,
             const grpo::group_spec& gs, const grpo::advantage_options& o) {
  std::vector<R> rr;
  for (double x : r) rr.push_back(static_cast<R>(static_cast<float>(x)));
  if constexpr (std::is_same_v<R, double>) rr.assign(r.begin(), r.end());
  std::vector<O> out(r.size(), O(-99));
  const auto m = mask_12x5();
  const auto B = static_cast<index_t>(r.size());
  rec.guarded(n, [&] {
    grpo::advantage_stats st =
        needs_mask(o) ? grpo::compute_advantages(rr, gs, grpo::make_view(m.data(), {B, 5}), out, o)
                      : grpo::compute_advantages(rr, gs, out, o);
    rec.put_vec(n + ".adv", out);
    // The statistics are double whatever the tensor types: recorded once per input, from the
    // double run (a bf16 input differs, but only through its rounded rewards).
    if constexpr (std::is_same_v<R, double> && std::is_same_v<O, double>) rec.stats(n, st);
  });
}

void synthetic(recorder& rec) {
  const auto fams = option_families();
  for (const auto& [name, o] : fams) {
    run_one<double, double>(rec, name + ".fixed.f64", r_fixed, grpo::group_spec::fixed(4), o);
    if (o.emulate_verl_float32 || needs_mask(o)) {
      // float32 emulation is single-process only; masked estimators need B = 12 (mask rows).
      if (!needs_mask(o)) {
        run_one<double, double>(rec, name + ".ids.f64", r_ids, grpo::group_spec::ids(ids), o);
      }
    } else {
      run_one<double, double>(rec, name + ".ids.f64", r_ids, grpo::group_spec::ids(ids), o);
    }
    run_one<float, float>(rec, name + ".fixed.f32", r_fixed, grpo::group_spec::fixed(4), o);
    run_one<grpo::bfloat16, double>(rec, name + ".fixed.bf16", r_fixed,
                                    grpo::group_spec::fixed(4), o);
    run_one<double, float>(rec, name + ".full.f64f32", r_full, grpo::group_spec::fixed(3), o);
  }
  // The error singleton policy and passk, on inputs every group of which has >= 2 members.
  for (const auto& [name, o] :
       {named_options{"verl_grpo_passk", grpo::advantage_options::verl_grpo_passk()},
        named_options{"verl_grpo_passk.nostd", grpo::advantage_options::verl_grpo_passk(false)},
        named_options{"openrlhf_group_norm", grpo::advantage_options::openrlhf_group_norm()},
        named_options{"openrlhf_rloo", grpo::advantage_options::openrlhf_rloo()}}) {
    run_one<double, double>(rec, name + ".full", r_full, grpo::group_spec::fixed(4), o);
    run_one<grpo::float16, float>(rec, name + ".full.f16", r_full, grpo::group_spec::fixed(3), o);
    run_one<double, double>(rec, name + ".fixed(error)", r_fixed, grpo::group_spec::fixed(4), o);
  }
  // Sharded-style spec on one process: explicit first_row / num_groups and dense ids with G.
  run_one<double, double>(rec, "fixed.first_row", r_full, grpo::group_spec::fixed(4, 4, 4),
                          grpo::advantage_options{});
  const std::vector<std::int32_t> ids32 = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 3};
  run_one<double, double>(rec, "ids32.G", r_full, grpo::group_spec::ids(ids32, 5),
                          grpo::advantage_options{});
}

void multi(recorder& rec) {
  // [8, 3] rewards (NaN entries, an all-NaN row), groups of 4.
  const std::vector<double> rpf = {1.0,  0.0,   nan_v, 0.5,  1.0,  0.0, nan_v, nan_v,
                                   nan_v, 2.0,  0.5,   1.0, -1.0, 0.0, 0.25,  0.0,
                                   0.0,   0.0,  3.0,   nan_v, 1.0, 0.5, 0.5,   0.5};
  const std::vector<double> w = {1.0, 0.5, -2.0};
  const auto view = grpo::make_view(rpf.data(), {8, 3});
  std::vector<double> comb(8);
  grpo::combine_rewards(view, w, comb);
  rec.put_vec("combine", comb);
  for (auto s : {grpo::trl_scale::group, grpo::trl_scale::batch, grpo::trl_scale::none})
    for (auto m : {grpo::multi_reward_mode::sum_then_normalize,
                   grpo::multi_reward_mode::normalize_then_sum})
      for (int variant = 0; variant < 3; ++variant) {
        auto o = grpo::advantage_options::trl(s, m);
        if (variant == 1) o.eps_place = grpo::eps_placement::inside_sqrt, o.bessel = false;
        if (variant == 2) o.zero_variance = grpo::zero_variance_policy::zero, o.zero_var_tol = 0.6;
        const std::string n = "multi." + std::to_string(static_cast<int>(s)) + "." +
                              std::to_string(static_cast<int>(m)) + "." + std::to_string(variant);
        std::vector<float> out(8);
        rec.guarded(n, [&] {
          const auto st =
              grpo::compute_multi_reward_advantages(view, w, grpo::group_spec::fixed(4), out, o);
          rec.put_vec(n + ".adv", out);
          rec.stats(n, st);
        });
      }
}

void token_level(recorder& rec) {
  const auto m = mask_12x5();
  std::vector<double> vals(60);
  for (int k = 0; k < 60; ++k) vals[static_cast<std::size_t>(k)] = std::sin(0.37 * k) * 3.0 + 0.1;
  const auto mv = grpo::make_view(m.data(), {12, 5});
  std::vector<double> tok(60);
  grpo::broadcast_to_tokens(r_full, mv, grpo::make_view(tok.data(), {12, 5}));
  rec.put_vec("broadcast", tok);
  const grpo::whiten_options wos[] = {
      {},
      {1e-8, grpo::eps_placement::floor_var, false, 0.0},
      {1e-3, grpo::eps_placement::add_to_std, true, 1e-8, true},
      {0.0, grpo::eps_placement::inside_sqrt, false, 0.0}};
  for (std::size_t k = 0; k < 4; ++k) {
    std::vector<float> out(60);
    const std::string n = "whiten." + std::to_string(k);
    rec.guarded(n, [&] {
      const auto ws = grpo::masked_whiten(grpo::make_view(vals.data(), {12, 5}), mv,
                                          grpo::make_view(out.data(), {12, 5}), wos[k]);
      rec.put_vec(n + ".out", out);
      rec.whiten(n, ws);
    });
    for (double gamma : {1.0, 0.9}) {
      std::vector<double> adv(60), ret(60);
      const std::string rn = "rpp." + std::to_string(k) + "." + std::to_string(gamma);
      rec.guarded(rn, [&] {
        const auto ws = grpo::compute_reinforce_pp_advantages(
            grpo::make_view(vals.data(), {12, 5}), mv, gamma, grpo::make_view(adv.data(), {12, 5}),
            grpo::make_view(ret.data(), {12, 5}), wos[k]);
        rec.put_vec(rn + ".adv", adv);
        rec.put_vec(rn + ".ret", ret);
        rec.whiten(rn, ws);
      });
    }
  }
}

// The conformance cases' inputs (verl estimators and TRL advantages), mapped as in
// test_advantage_conformance.cpp.
std::vector<std::vector<double>> matrix(const json& j) {
  std::vector<std::vector<double>> m;
  for (const auto& row : j) {
    std::vector<double> r;
    for (const auto& x : row) r.push_back(x.is_null() ? nan_v : x.get<double>());
    m.push_back(r);
  }
  return m;
}
std::vector<double> flat(const std::vector<std::vector<double>>& m) {
  std::vector<double> f;
  for (const auto& r : m) f.insert(f.end(), r.begin(), r.end());
  return f;
}

void conformance(recorder& rec) {
  const std::string path = grpo_test::shared_path("conformance/grpo_peer_cases.json");
  std::ifstream f(path);
  REQUIRE_MESSAGE(f.good(), grpo_test::shared_missing(path));
  const json cases = json::parse(f);
  const std::map<std::string, grpo::advantage_options (*)(bool)> verl = {
      {"compute_grpo_outcome_advantage", &grpo::advantage_options::verl_grpo},
      {"compute_grpo_vectorized_outcome_advantage", &grpo::advantage_options::verl_grpo_vectorized},
      {"compute_rloo_outcome_advantage", [](bool) { return grpo::advantage_options::verl_rloo(); }},
      {"compute_rloo_vectorized_outcome_advantage",
       [](bool) { return grpo::advantage_options::verl_rloo_vectorized(); }},
      {"compute_reinforce_plus_plus_baseline_outcome_advantage",
       [](bool) { return grpo::advantage_options::verl_reinforce_pp_baseline(); }},
      {"compute_opo_outcome_advantage", [](bool) { return grpo::advantage_options::verl_opo(); }},
      {"compute_gpg_outcome_advantage", [](bool) { return grpo::advantage_options::verl_gpg(); }}};
  int n = 0;
  for (const auto& c : cases) {
    const std::string fn = c["fn"].get<std::string>();
    const std::string id = "conf." + c["id"].get<std::string>();
    if (fn == "compute_reinforce_plus_plus_outcome_advantage") {
      const auto tr = matrix(c["inputs"]["token_level_rewards"]);
      const auto B = static_cast<index_t>(tr.size()), T = static_cast<index_t>(tr[0].size());
      const auto trf = flat(tr), mf = flat(matrix(c["inputs"]["response_mask"]));
      std::vector<double> adv(trf.size()), ret(trf.size());
      const auto ws = grpo::compute_reinforce_pp_advantages(
          grpo::make_view(trf.data(), {B, T}), grpo::make_view(mf.data(), {B, T}),
          c["options"]["config.gamma"].get<double>(), grpo::make_view(adv.data(), {B, T}),
          grpo::make_view(ret.data(), {B, T}));
      rec.put_vec(id + ".adv", adv);
      rec.put_vec(id + ".ret", ret);
      rec.whiten(id, ws);
      ++n;
    } else if (verl.count(fn)) {
      const auto tr = matrix(c["inputs"]["token_level_rewards"]);
      const auto B = static_cast<index_t>(tr.size()), T = static_cast<index_t>(tr[0].size());
      const auto mf = flat(matrix(c["inputs"]["response_mask"]));
      std::vector<double> scores(static_cast<std::size_t>(B));
      for (std::size_t i = 0; i < tr.size(); ++i)
        for (double x : tr[i]) scores[i] += x;
      std::map<std::string, std::int64_t> uid;
      std::vector<std::int64_t> gid;
      for (const auto& u : c["inputs"]["index"])
        gid.push_back(uid.emplace(u.get<std::string>(), static_cast<std::int64_t>(uid.size()))
                          .first->second);
      auto o = verl.at(fn)(c["options"].value("norm_adv_by_std_in_grpo", true));
      if (c["options"].contains("epsilon")) o.eps = c["options"]["epsilon"].get<double>();
      std::vector<double> seq(scores.size()), tok(mf.size());
      const auto mv = grpo::make_view(mf.data(), {B, T});
      const auto st = grpo::compute_advantages(scores, grpo::group_spec::ids(gid), mv, seq, o);
      grpo::broadcast_to_tokens(seq, mv, grpo::make_view(tok.data(), {B, T}));
      rec.put_vec(id + ".adv", tok);
      rec.stats(id, st);
      ++n;
    } else if (fn == "GRPOTrainer._generate_and_score_completions[advantages]") {
      const auto& o = c["options"];
      const auto rpf = matrix(c["inputs"]["rewards_per_func"]);
      const auto B = static_cast<index_t>(rpf.size()), K = static_cast<index_t>(rpf[0].size());
      const auto rf = flat(rpf);
      const auto w = o["reward_weights"].get<std::vector<double>>();
      const std::string s = o["scale_rewards"].get<std::string>();
      const auto sc = s == "group"   ? grpo::trl_scale::group
                      : s == "batch" ? grpo::trl_scale::batch
                                     : grpo::trl_scale::none;
      const bool nts = o["multi_objective_aggregation"].get<std::string>() == "normalize_then_sum";
      std::vector<double> adv(static_cast<std::size_t>(B));
      const auto st = grpo::compute_multi_reward_advantages(
          grpo::make_view(rf.data(), {B, K}), w,
          grpo::group_spec::fixed(o["num_generations"].get<index_t>()), adv,
          grpo::advantage_options::trl(sc, nts ? grpo::multi_reward_mode::normalize_then_sum
                                               : grpo::multi_reward_mode::sum_then_normalize));
      rec.put_vec(id + ".adv", adv);
      rec.stats(id, st);
      ++n;
    }
  }
  CHECK(n == 29);
}

std::string golden_path() { return std::string(GRPO_SOURCE_DIR) + "/tests/grpo/data/advantage_golden.txt"; }

// Parses "name n v1 .. vn" lines into a map (errors: "error name message").
std::map<std::string, std::string> lines_by_name(const std::string& text) {
  std::map<std::string, std::string> m;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const auto sp = line.find(' ', line.rfind("error ", 0) == 0 ? 6 : 0);
    m[line.substr(0, sp)] = line;
  }
  return m;
}

bool close_enough(const std::string& want, const std::string& got, bool bitwise) {
  if (want == got) return true;
  if (bitwise) return false;
  std::istringstream a(want), b(got);
  std::string ta, tb;
  a >> ta >> ta, b >> tb >> tb;  // name, count
  if (ta != tb) return false;
  while (a >> ta) {
    if (!(b >> tb)) return false;
    if (ta == tb) continue;
    if (ta == "nan" || tb == "nan") return false;
    const double x = std::strtod(ta.c_str(), nullptr), y = std::strtod(tb.c_str(), nullptr);
    if (!(std::abs(x - y) <= 1e-12 * std::max(1.0, std::abs(x)))) return false;
  }
  return !(b >> tb);
}

}  // namespace

TEST_CASE("advantage golden: every entry point and option family reproduces the locked outputs" *
          doctest::test_suite("advantage")) {
  recorder rec;
  synthetic(rec);
  multi(rec);
  token_level(rec);
  conformance(rec);
  const std::string got = serialise(rec);
  if (const char* w = std::getenv("GRPO_ADVANTAGE_GOLDEN_WRITE")) {
    std::ofstream(w) << got;
    MESSAGE("wrote " << std::string(w) << " (" << rec.rec.size() << " records)");
    return;
  }
  std::ifstream f(golden_path());
  REQUIRE_MESSAGE(f.good(), "cannot open " << golden_path());
  std::stringstream want_text;
  want_text << f.rdbuf();
  const auto want = lines_by_name(want_text.str()), have = lines_by_name(got);
#if defined(__FMA__) || defined(__aarch64__) || defined(__ARM_FEATURE_FMA)
  const bool bitwise = false;
#else
  const bool bitwise = true;
#endif
  CHECK(want.size() == have.size());
  CHECK(want.size() > 2000);  // the file is the real one, not an empty stand-in
  int differ = 0;
  for (const auto& [name, line] : want) {
    const auto it = have.find(name);
    if (it == have.end()) {
      ++differ;
      FAIL_CHECK("missing record " << name);
      continue;
    }
    if (!close_enough(line, it->second, bitwise)) {
      if (++differ <= 20) FAIL_CHECK("record differs:\n  want " << line << "\n  got  " << it->second);
    }
  }
  CHECK(differ == 0);
}

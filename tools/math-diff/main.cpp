// SPDX-License-Identifier: Apache-2.0
/// @file main.cpp
/// @brief grpo-math-diff: grades JSON Lines pairs {"gold", "pred", ["expected"], ["options"]}
///        with grpo::rewards::math::verify and writes {"index", "verdict", "us"} per line (input
///        order). With --check, every line that has "expected" (true / false / "unparseable") must
///        get that verdict (exit 1 otherwise): the resolved corpora run as tests this way. With
///        --threads N the pairs are split over N threads (scaling measurement); --repeat R grades
///        the whole input R times (throughput). Summary on stderr: pairs/s, slowest pair.

#include <rewards/math.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace {

using json = nlohmann::json;
namespace rm = grpo::rewards::math;

struct pair_case {
  std::string gold, pred;
  json expected;  ///< null when absent
  rm::verify_options opt;
  std::string where;  ///< provenance for messages
};

const char* name(rm::verdict v) {
  switch (v) {
    case rm::verdict::correct:
      return "true";
    case rm::verdict::incorrect:
      return "false";
    case rm::verdict::unparseable_gold:
      return "unparseable";
  }
  return "?";
}

rm::verify_options options_of(const json& o) {
  rm::verify_options opt;
  if (!o.is_object()) return opt;
  for (const auto& [k, v] : o.items()) {
    if (k == "float_rounding" || k == "precision")
      opt.float_rounding = v.get<int>();
    else if (k == "strict" || k == "strict_variables")
      opt.strict_variables = v.get<bool>();
    else if (k == "allow_set_relation_comp" || k == "relation_vs_set")
      opt.allow_pred_relation_vs_gold_set = v.get<bool>();
    else if (k == "percent_lenient")
      opt.percent_lenient = v.get<bool>();
    else
      throw std::runtime_error("unknown option '" + k + "'");
  }
  return opt;
}

int usage() {
  std::cerr << "usage: grpo-math-diff [-i FILE] [-o FILE] [--threads N] [--repeat R] [--check]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string in_path = "-", out_path = "-";
  int threads = 1, repeat = 1;
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) std::exit(usage());
      return argv[++i];
    };
    if (a == "-i")
      in_path = next();
    else if (a == "-o")
      out_path = next();
    else if (a == "--threads")
      threads = std::max(1, std::atoi(next().c_str()));
    else if (a == "--repeat")
      repeat = std::max(1, std::atoi(next().c_str()));
    else if (a == "--check")
      check = true;
    else
      return usage();
  }
  std::ifstream fin;
  std::istream* in = &std::cin;
  if (in_path != "-") {
    fin.open(in_path, std::ios::binary);
    if (!fin) {
      std::cerr << "grpo-math-diff: cannot open " << in_path << "\n";
      return 2;
    }
    in = &fin;
  }
  std::vector<pair_case> cases;
  std::string line;
  std::size_t lineno = 0;
  while (std::getline(*in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos || line[0] == '#') continue;
    try {
      const json j = json::parse(line);
      pair_case c{j.at("gold").get<std::string>(), j.at("pred").get<std::string>(),
                  j.value("expected", json()), options_of(j.value("options", json())),
                  in_path + ":" + std::to_string(lineno)};
      cases.push_back(std::move(c));
    } catch (const std::exception& e) {
      std::cerr << "grpo-math-diff: " << in_path << ":" << lineno << ": " << e.what() << "\n";
      return 2;
    }
  }
  std::vector<rm::verdict> verdict(cases.size());
  // Per pair: the fastest of its repeats (a preempted run on a shared machine says nothing about
  // the pair's own cost; with --repeat 1 it is the single run).
  std::vector<std::atomic<double>> us(cases.size());
  for (auto& u : us) u.store(1e300);
  std::atomic<std::size_t> next{0};
  const auto t0 = std::chrono::steady_clock::now();
  // Dynamic work distribution (an atomic counter): symbolic pairs cost more than numbers, so
  // static halves would measure load imbalance rather than scaling.
  auto worker = [&] {
    for (;;) {
      const std::size_t k = next.fetch_add(1);
      if (k >= cases.size() * static_cast<std::size_t>(repeat)) return;
      const std::size_t i = k % cases.size();
      const auto a = std::chrono::steady_clock::now();
      const rm::verdict v = rm::verify(cases[i].gold, cases[i].pred, cases[i].opt);
      const double t =
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - a).count();
      if (k < cases.size()) verdict[i] = v;
      double cur = us[i].load();
      while (t < cur && !us[i].compare_exchange_weak(cur, t)) {
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::ofstream fout;
  std::ostream* out = &std::cout;
  if (out_path != "-") {
    fout.open(out_path, std::ios::binary);
    out = &fout;
  }
  std::size_t failures = 0, slow = 0;
  double max_us = 0;
  std::size_t max_i = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const double ui = us[i].load();
    if (ui > max_us) max_us = ui, max_i = i;
    slow += ui > 10000.0;
    const std::string got = name(verdict[i]);
    if (!check) {
      json o{{"index", i}, {"verdict", got}, {"us", ui}};
      *out << o.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    }
    const json& e = cases[i].expected;
    if (e.is_null()) continue;
    const std::string want =
        e.is_boolean() ? (e.get<bool>() ? "true" : "false") : e.get<std::string>();
    if (got != want) {
      ++failures;
      if (check)
        std::cerr << cases[i].where << ": gold="
                  << json(cases[i].gold).dump(-1, ' ', false, json::error_handler_t::replace)
                  << " pred="
                  << json(cases[i].pred).dump(-1, ' ', false, json::error_handler_t::replace)
                  << " got " << got << ", expected " << want << "\n";
    }
  }
  const double n = static_cast<double>(cases.size()) * repeat;
  std::fprintf(stderr,
               "grpo-math-diff: %zu pairs x %d, %d thread(s): %.3f s, %.0f pairs/s; slowest pair "
               "%.0f us (fastest of its repeats, line %zu); %zu over 10 ms; %zu expectation "
               "failure(s)\n",
               cases.size(), repeat, threads, secs, secs > 0 ? n / secs : 0.0, max_us,
               cases.empty() ? 0 : max_i + 1, slow, failures);
  return failures ? 1 : 0;
}

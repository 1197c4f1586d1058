// SPDX-License-Identifier: Apache-2.0
/// @file report.hpp
/// @brief Progress bar (one line, redrawn with '\r'), CSV log of every step, gnuplot PNG, timers.
#pragma once

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace r1demo {

/// Wall clock and process CPU time (user + system) since construction.
class stopwatch {
 public:
  stopwatch() : wall0_(std::chrono::steady_clock::now()), cpu0_(cpu_now()) {}
  [[nodiscard]] double wall() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0_).count();
  }
  [[nodiscard]] double cpu() const { return cpu_now() - cpu0_; }
  static double cpu_now() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
  }

 private:
  std::chrono::steady_clock::time_point wall0_;
  double cpu0_;
};

/// One row of the CSV. Every stage writes the same columns; a column that does not apply to the
/// row's stage (reward on an SFT row) or a step without held-out evaluation is an empty cell.
struct step_row {
  step_row(std::string stage_name, int step_no, double loss_value = 0)
      : stage(std::move(stage_name)), step(step_no), loss(loss_value) {}
  std::string stage;  ///< sft, grpo, rs_sft, grpo2, distill
  int step = 0;
  double loss = 0;
  std::optional<double> reward, accuracy, format, kl, clip_frac, entropy;
  double tokens_per_s = 0, elapsed_s = 0;
  std::optional<double> heldout_pass1;
};

/// How much the logger prints on stderr.
enum class progress_mode {
  quiet,     ///< nothing (--no-progress): the caller prints header, stage summaries and the table
  periodic,  ///< stderr is not a terminal: one line every 25 steps and at the end of a stage
  bar,       ///< stderr is a terminal: one line redrawn with '\r'
};

/// Writes every step to <out>/steps.csv, keeps the rows for the plot and reports progress.
class logger {
 public:
  static constexpr const char* header =
      "stage,step,loss,reward,accuracy,format,kl,clip_frac,entropy,tokens_per_s,elapsed_s,"
      "heldout_pass1";

  logger(const std::filesystem::path& dir, bool progress)
      : csv_(dir / "steps.csv"),
        mode_(!progress                    ? progress_mode::quiet
              : isatty(STDERR_FILENO) != 0 ? progress_mode::bar
                                           : progress_mode::periodic) {
    if (!csv_) throw std::runtime_error("cannot write " + (dir / "steps.csv").string());
    csv_ << header << '\n';
  }

  void row(const step_row& r) {
    const auto cell = [this](const std::optional<double>& v) {
      csv_ << ',';
      if (v) csv_ << *v;  // a NaN is written as "nan", never as an empty cell
    };
    csv_ << r.stage << ',' << r.step << ',' << r.loss;
    for (const auto* v : {&r.reward, &r.accuracy, &r.format, &r.kl, &r.clip_frac, &r.entropy})
      cell(*v);
    csv_ << ',' << r.tokens_per_s << ',' << r.elapsed_s;
    cell(r.heldout_pass1);
    csv_ << '\n';
    csv_.flush();
    rows_.push_back(r);
    // A NaN or infinite loss / metric means training broke: stop with the row that shows it.
    const auto bad = [](const std::optional<double>& v) { return v && !std::isfinite(*v); };
    if (!std::isfinite(r.loss) || bad(r.reward) || bad(r.accuracy) || bad(r.format) || bad(r.kl) ||
        bad(r.clip_frac) || bad(r.entropy) || bad(r.heldout_pass1))
      throw std::runtime_error("non-finite value at " + r.stage + " step " +
                               std::to_string(r.step) + " (row written to steps.csv)");
  }

  /// "\r[#####.....] grpo  40/150 reward 0.81 acc 41.2% kl 0.012 clip 1.3% 52k tok/s 12.0s"
  void bar(const step_row& r, int total) {
    if (mode_ == progress_mode::quiet) return;
    const int width = 20;
    const int fill = total > 0 ? (r.step * width) / total : width;
    std::string b(static_cast<size_t>(fill), '#');
    b.resize(width, '.');
    char line[256];
    if (r.reward)
      std::snprintf(line, sizeof line,
                    "\r[%s] %-7s %4d/%-4d reward %5.3f acc %5.1f%% kl %6.4f clip %4.1f%% "
                    "%6.1fk tok/s %6.1fs",
                    b.c_str(), r.stage.c_str(), r.step, total, *r.reward,
                    100 * r.accuracy.value_or(0), r.kl.value_or(0), 100 * r.clip_frac.value_or(0),
                    r.tokens_per_s / 1000, r.elapsed_s);
    else  // SFT and distillation: the loss is the signal
      std::snprintf(line, sizeof line, "\r[%s] %-7s %4d/%-4d loss %7.4f %6.1fk tok/s %6.1fs",
                    b.c_str(), r.stage.c_str(), r.step, total, r.loss, r.tokens_per_s / 1000,
                    r.elapsed_s);
    if (mode_ == progress_mode::bar) {
      std::fputs(line, stderr);
      std::fflush(stderr);
      drawn_ = true;
    } else if (r.step == total || r.step % 25 == 0) {  // not a terminal: a line now and then
      std::fputs(line + 1, stderr);
      std::fputc('\n', stderr);
    }
  }
  void end_bar() {
    if (drawn_) std::fputc('\n', stderr);
    drawn_ = false;
  }

  [[nodiscard]] const std::vector<step_row>& rows() const { return rows_; }

 private:
  std::ofstream csv_;
  progress_mode mode_;
  bool drawn_ = false;
  std::vector<step_row> rows_;
};

/// What the plot shows: which stages ran and where stage 4 (second GRPO) starts on the GRPO axis.
struct plot_info {
  bool has_sft = false, has_distill = false, has_rs_sft = false, has_grpo2 = false;
  int grpo_steps = 0;  ///< stage 4 rows are drawn at x = grpo_steps + step
};

namespace detail {

/// gnuplot yrange "[lo:hi]" for a log axis spanning the positive values of `get` over the rows
/// of the given stages, or "" when there is none (a log axis cannot show zeros).
template <class Get>
std::string log_range(const std::vector<step_row>& rows, std::initializer_list<const char*> stages,
                      Get get) {
  double lo = INFINITY, hi = 0;
  for (const auto& r : rows) {
    if (std::none_of(stages.begin(), stages.end(), [&](const char* s) { return r.stage == s; }))
      continue;
    const std::optional<double> v = get(r);
    if (v && std::isfinite(*v) && *v > 0) {
      lo = std::min(lo, *v);
      hi = std::max(hi, *v);
    }
  }
  if (!(hi > 0)) return {};
  // Whole decades around the data, so the tick labels are 1e-3, 1e-2, ...
  const double l = std::pow(10.0, std::floor(std::log10(lo)));
  const double h = std::pow(10.0, std::ceil(std::log10(hi * 1.0001)));
  char buf[96];
  std::snprintf(buf, sizeof buf, "[%.3g:%.3g]", l, h > l ? h : l * 10);
  return buf;
}

inline std::string empty_panel(const std::string& title, const char* why) {
  return "set title '" + title +
         "'\nunset key\nunset logscale y\nset xrange [0:1]\nset yrange [0:1]\n"
         "set label 1 '" +
         why +
         "' at graph 0.5, 0.5 center\nplot NaN notitle\nunset label 1\n"
         "set autoscale\nset key below\n";
}

}  // namespace detail

/// Writes <out>/curves.gp and runs gnuplot on it when gnuplot is on the PATH: six panels (GRPO
/// reward; training accuracy and held-out pass@1 in percent; KL on a log axis; clip fraction in
/// percent on its own axis; SFT NLL on a log axis; distillation KL on a log axis with the
/// student's held-out pass@1 on the right). A stage without rows gets a panel saying so.
/// Returns "" when <out>/curves.png was produced, else why not.
inline std::string plot_curves(const std::filesystem::path& dir, const std::vector<step_row>& rows,
                               const plot_info& info) {
  using detail::empty_panel;
  using detail::log_range;
  const auto gp = dir / "curves.gp";
  const std::string off = std::to_string(info.grpo_steps);
  // x of a GRPO-stage row: stage 2 at its step, stage 4 after the last stage-2 step.
  const std::string xg = "(strcol(1) eq 'grpo' && $2 > 0 ? $2 : 1/0)";
  const std::string xg0 = "(strcol(1) eq 'grpo' ? $2 : 1/0)";  // with step 0 (start point)
  const std::string xg2 = "(strcol(1) eq 'grpo2' ? $2 + " + off + " : 1/0)";
  const std::string xg20 = "(strcol(1) eq 'grpo2' ? $2 + " + off + " : 1/0)";
  const std::string stage4 = info.has_grpo2 ? ", stage 4 after step " + off : "";
  {
    std::ofstream f(gp);
    f << "set datafile separator ','\n"
         "set terminal pngcairo size 1400,1250 noenhanced font ',10'\n"
         "set output '"
      << (dir / "curves.png").string() << "'\n"
      << "set multiplot layout 3,2 title 'grpo r1_demo: "
      << (info.has_grpo2 ? "cold-start SFT -> GRPO -> rejection-sampled SFT -> GRPO 2 -> "
                           "distillation"
                         : "cold-start SFT -> GRPO -> distillation")
      << "'\nset key below horizontal\nset grid\nset format y '%g'\n"
         "csv = '"
      << (dir / "steps.csv").string() << "'\n";

    // Panel 1: mean reward (its own axis: reward = accuracy + weights x shaping terms).
    f << "set title 'GRPO: mean reward per completion" << stage4
      << "'\nset xlabel 'GRPO step'\nset ylabel 'reward'\n"
      << "plot csv using " << xg << ":4 with lines title 'stage 2 (accuracy + format)'";
    if (info.has_grpo2)
      f << ", \\\n     csv using " << xg2 << ":4 with lines title 'stage 4 (+ length, repetition)'";
    f << "\n";

    // Panel 2: accuracies in percent, as the console prints them.
    f << "set title 'Accuracy: training samples and held-out pass@1" << stage4
      << "'\nset ylabel 'percent'\nset yrange [0:100]\n"
      << "plot csv using " << xg << ":($5*100) with lines lc rgb '#7fb07f' title 'train accuracy', "
      << "\\\n     csv using " << xg0
      << ":($12*100) with linespoints lw 2 pt 7 lc rgb '#1060c0' title 'held-out pass@1'";
    if (info.has_grpo2)
      f << ", \\\n     csv using " << xg2
        << ":($5*100) with lines lc rgb '#c0a060' title 'train accuracy (stage 4)', "
        << "\\\n     csv using " << xg20
        << ":($12*100) with linespoints lw 2 pt 5 lc rgb '#c03030' title 'held-out pass@1 "
           "(stage 4)'";
    f << "\nset autoscale y\n";

    // Panel 3: KL to the reference, log axis (it grows over orders of magnitude from ~0).
    const auto kl = [](const step_row& r) { return r.kl; };
    const std::string kl_range = log_range(rows, {"grpo", "grpo2"}, kl);
    if (kl_range.empty()) {
      f << empty_panel("GRPO: KL to the reference", "no positive KL value to draw");
    } else {
      f << "set title 'GRPO: KL (k3) to the stage reference, log scale" << stage4
        << "'\nset ylabel 'nats per token'\nset logscale y\nset yrange " << kl_range << "\n"
        << "plot csv using " << xg << ":($7 > 0 ? $7 : 1/0) with lines title 'KL (stage 2)'";
      if (info.has_grpo2)
        f << ", \\\n     csv using " << xg2
          << ":($7 > 0 ? $7 : 1/0) with lines title 'KL (stage 4)'";
      f << "\nunset logscale y\nset autoscale y\n";
    }

    // Panel 4: clip fraction on its own axis (well under 1% of tokens: invisible next to KL).
    f << "set title 'GRPO: tokens where the ratio clip binds" << stage4
      << "'\nset ylabel 'percent of tokens'\nset yrange [0:*]\n"
      << "plot csv using " << xg << ":($8*100) with lines title 'clip fraction (stage 2)'";
    if (info.has_grpo2)
      f << ", \\\n     csv using " << xg2 << ":($8*100) with lines title 'clip fraction (stage 4)'";
    f << "\nset autoscale y\n";

    // Panel 5: SFT losses, log axis.
    const auto loss = [](const step_row& r) { return std::optional<double>(r.loss); };
    const std::string sft_range = log_range(rows, {"sft", "rs_sft"}, loss);
    f << "set xlabel 'SFT step'\n";
    if (!(info.has_sft || info.has_rs_sft) || sft_range.empty()) {
      f << empty_panel("Cold-start SFT (R1-Zero: none)", "no rows: stage skipped");
    } else {
      f << "set title 'SFT: token NLL, log scale'\nset ylabel 'nats per token'\n"
        << "set logscale y\nset yrange " << sft_range << "\nplot ";
      if (info.has_sft)
        f << "csv using (strcol(1) eq 'sft' ? $2 : 1/0):3 with lines title 'stage 1: cold start'";
      if (info.has_sft && info.has_rs_sft) f << ", \\\n     ";
      if (info.has_rs_sft)
        f << "csv using (strcol(1) eq 'rs_sft' ? $2 : 1/0):3 with lines "
             "title 'stage 3: rejection-sampled + cold-start data'";
      f << "\nunset logscale y\nset autoscale y\n";
    }

    // Panel 6: distillation KL on a log axis (it falls by orders of magnitude), student pass@1.
    const std::string dist_range = log_range(rows, {"distill"}, loss);
    f << "set xlabel 'distillation step'\n";
    if (!info.has_distill || dist_range.empty()) {
      f << empty_panel("Distillation into the student", "no rows: stage skipped");
    } else {
      f << "set title 'Distillation: forward KL (left, log scale), student held-out pass@1 "
           "(right)'\nset ylabel 'nats per token'\nset logscale y\nset yrange "
        << dist_range
        << "\nset y2label 'percent'\nset y2tics\nset y2range [0:100]\n"
           "plot csv using (strcol(1) eq 'distill' ? $2 : 1/0):3 with lines title 'forward KL', "
           "\\\n     csv using (strcol(1) eq 'distill' ? $2 : 1/0):($12*100) axes x1y2 "
           "with linespoints lw 2 pt 7 title 'student held-out pass@1'\n"
           "unset y2tics\nunset y2label\nunset logscale y\n";
    }
    f << "unset multiplot\n";
  }
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) return "gnuplot not found";
  std::error_code ec;
  std::filesystem::remove(dir / "curves.png", ec);  // a stale PNG must not pass for a new one
  const std::string cmd = "gnuplot '" + gp.string() + "' 2>'" + (dir / "curves.log").string() + "'";
  if (std::system(cmd.c_str()) != 0 || !std::filesystem::exists(dir / "curves.png"))
    return "gnuplot failed on " + gp.string() + " (messages in " + (dir / "curves.log").string() +
           ")";
  return {};
}

}  // namespace r1demo

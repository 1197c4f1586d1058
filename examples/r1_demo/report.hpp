// SPDX-License-Identifier: Apache-2.0
/// @file report.hpp
/// @brief Progress bar (one line, redrawn with '\r'), CSV log of every step, gnuplot PNG, timers.
#pragma once

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

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

/// One row of the CSV (every stage writes the same columns; unused ones are left empty).
struct step_row {
  std::string stage;
  int step = 0;
  double loss = 0, reward = 0, accuracy = 0, format = 0, kl = 0, clip_frac = 0, entropy = 0;
  double tokens_per_s = 0, elapsed_s = 0;
  double heldout_pass1 = -1;  ///< < 0: not evaluated at this step
};

/// Writes every step to <out>/steps.csv and draws the one-line progress bar on stderr.
class logger {
 public:
  explicit logger(const std::filesystem::path& dir, bool bar)
      : csv_(dir / "steps.csv"), bar_(bar && isatty(STDERR_FILENO)) {
    if (!csv_) throw std::runtime_error("cannot write " + (dir / "steps.csv").string());
    csv_ << "stage,step,loss,reward,accuracy,format,kl,clip_frac,entropy,tokens_per_s,elapsed_s,"
            "heldout_pass1\n";
  }

  void row(const step_row& r) {
    csv_ << r.stage << ',' << r.step << ',' << r.loss << ',' << r.reward << ',' << r.accuracy << ','
         << r.format << ',' << r.kl << ',' << r.clip_frac << ',' << r.entropy << ','
         << r.tokens_per_s << ',' << r.elapsed_s << ',';
    if (r.heldout_pass1 >= 0) csv_ << r.heldout_pass1;
    csv_ << '\n';
    csv_.flush();
  }

  /// "\r[#####.....] grpo  40/150 reward 0.81 acc 41.2% kl 0.012 clip 1.3% 52k tok/s 12.0s"
  void bar(const step_row& r, int total) {
    const int width = 20;
    const int fill = total > 0 ? (r.step * width) / total : width;
    std::string b(static_cast<size_t>(fill), '#');
    b.resize(width, '.');
    char line[256];
    if (r.stage == "grpo")
      std::snprintf(line, sizeof line,
                    "\r[%s] %-7s %4d/%-4d reward %5.3f acc %5.1f%% kl %6.4f clip %4.1f%% "
                    "%6.1fk tok/s %6.1fs",
                    b.c_str(), r.stage.c_str(), r.step, total, r.reward, 100 * r.accuracy, r.kl,
                    100 * r.clip_frac, r.tokens_per_s / 1000, r.elapsed_s);
    else  // SFT and distillation: the loss is the signal
      std::snprintf(line, sizeof line, "\r[%s] %-7s %4d/%-4d loss %7.4f %6.1fk tok/s %6.1fs",
                    b.c_str(), r.stage.c_str(), r.step, total, r.loss, r.tokens_per_s / 1000,
                    r.elapsed_s);
    if (bar_) {
      std::fputs(line, stderr);
      std::fflush(stderr);
    } else if (r.step == total || r.step % 25 == 0) {  // not a terminal: a line now and then
      std::fputs(line + 1, stderr);
      std::fputc('\n', stderr);
    }
  }
  void end_bar() {
    if (bar_) std::fputc('\n', stderr);
  }

 private:
  std::ofstream csv_;
  bool bar_;
};

/// Writes <out>/curves.gp and runs gnuplot on it when gnuplot is on the PATH. Returns an empty
/// string when <out>/curves.png was produced, else why not.
/// Writes curves.gp and runs gnuplot on it; a stage that produced no rows (no cold start, no
/// distillation set) gets an empty panel saying so. Returns "" or why there is no PNG.
inline std::string plot_curves(const std::filesystem::path& dir, bool has_sft, bool has_distill) {
  const auto empty_panel = [](const char* title) {
    return std::string("set title '") + title +
           "'\nunset key\nset xrange [0:1]\nset yrange [0:1]\n"
           "set label 1 'no rows: stage skipped' at graph 0.5, 0.5 center\n"
           "plot NaN notitle\nunset label 1\nset autoscale\nset key bottom right\n";
  };
  const auto gp = dir / "curves.gp";
  {
    std::ofstream f(gp);
    f << "set datafile separator ','\n"
         "set terminal pngcairo size 1200,800 noenhanced\n"
         "set output '"
      << (dir / "curves.png").string()
      << "'\n"
         "set multiplot layout 2,2 title 'grpo r1\\_demo: cold-start SFT -> GRPO -> distillation'\n"
         "set key bottom right\nset grid\n"
         "csv = '"
      << (dir / "steps.csv").string()
      << "'\n"
         "set title 'GRPO: reward, training accuracy, held-out pass@1'\nset xlabel 'GRPO step'\n"
         "plot csv using (strcol(1) eq 'grpo' && $2 > 0 ? $2 : 1/0):4 with lines title 'mean "
         "reward', \\\n"
         "     csv using (strcol(1) eq 'grpo' && $2 > 0 ? $2 : 1/0):5 with lines title 'train "
         "accuracy', \\\n"
         "     csv using (strcol(1) eq 'grpo' ? $2 : 1/0):12 with linespoints lw 2 "
         "title 'held-out pass@1'\n"
         "set title 'GRPO: KL to the reference and clip fraction'\n"
         "plot csv using (strcol(1) eq 'grpo' && $2 > 0 ? $2 : 1/0):7 with lines title 'KL (k3)', "
         "\\\n"
         "     csv using (strcol(1) eq 'grpo' && $2 > 0 ? $2 : 1/0):8 with lines title 'clip "
         "fraction'\n"
         "set xlabel 'distillation step'\n";
    if (has_distill)
      f << "set title 'Distillation into the student'\n"
           "set y2tics\nset y2range [0:1]\n"
           "plot csv using (strcol(1) eq 'distill' ? $2 : 1/0):3 with lines title 'forward KL', "
           "\\\n"
           "     csv using (strcol(1) eq 'distill' ? $2 : 1/0):12 axes x1y2 with linespoints lw 2 "
           "title 'student held-out pass@1 (right)'\n"
           "unset y2tics\n";
    else
      f << empty_panel("Distillation into the student");
    f << "set xlabel 'SFT step'\n";
    if (has_sft)
      f << "set title 'Cold-start SFT'\n"
           "plot csv using (strcol(1) eq 'sft' ? $2 : 1/0):3 with lines title 'SFT NLL'\n";
    else
      f << empty_panel("Cold-start SFT (R1-Zero: none)");
    f << "unset multiplot\n";
  }
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) return "gnuplot not found";
  const std::string cmd = "gnuplot '" + gp.string() + "' 2>/dev/null";
  if (std::system(cmd.c_str()) != 0 || !std::filesystem::exists(dir / "curves.png"))
    return "gnuplot failed on " + gp.string() + " (a stage without rows?)";
  return {};
}

}  // namespace r1demo

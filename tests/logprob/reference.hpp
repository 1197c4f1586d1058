// SPDX-License-Identifier: Apache-2.0
/// @file reference.hpp
/// @brief Naive double-precision references of the selective log-softmax family (two passes per
/// row,
///        textbook formulas, no shared code with the library) for tests/logprob.
#pragma once

#include <grpo/core/half.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace lp_ref {

constexpr double ninf = -std::numeric_limits<double>::infinity();

struct row_ref {
  double lse = 0, logp = 0, entropy = 0;
  std::vector<double> logq;  // log softmax of the row
};

/// log_softmax(x / T) of one row in double, with its lse and entropy.
inline row_ref row(const std::vector<double>& x, double T, std::int64_t y) {
  row_ref r;
  double m = ninf;
  std::size_t jmax = 0;
  for (std::size_t j = 0; j < x.size(); ++j)
    if (x[j] / T > m) m = x[j] / T, jmax = j;
  // s = 1 + rest with the maximal element's exp(0) = 1 kept out of the sum, and lse = m +
  // log1p(rest): even double loses 1 - q_y when q_y > 1 - 1e-16 otherwise (the adversarial
  // "dominant" rows).
  double rest = 0;
  for (std::size_t j = 0; j < x.size(); ++j)
    if (j != jmax) rest += std::exp(x[j] / T - m);
  r.lse = m + std::log1p(rest);
  r.logq.resize(x.size());
  for (std::size_t j = 0; j < x.size(); ++j) r.logq[j] = (x[j] / T - m) - std::log1p(rest);
  for (std::size_t j = 0; j < x.size(); ++j)
    if (r.logq[j] > ninf) r.entropy -= std::exp(r.logq[j]) * r.logq[j];
  r.logp = y >= 0 ? r.logq[static_cast<std::size_t>(y)] : 0.0;
  return r;
}

/// d/dx_j [g_lp log q_y + g_h H] = (1/T) [g_lp (delta - q_j) - g_h q_j (log q_j + H)], in double.
inline std::vector<double> row_grad(const std::vector<double>& x, double T, std::int64_t y,
                                    double g_lp, double g_h) {
  const row_ref r = row(x, T, y);
  std::vector<double> g(x.size());
  for (std::size_t j = 0; j < x.size(); ++j) {
    const double q = std::exp(r.logq[j]);
    // delta - q; for the target 1 - q = -expm1(log q): in double 1 - exp(-1e-23) would be 0.
    const double dmq = static_cast<std::int64_t>(j) == y ? -std::expm1(r.logq[j]) : -q;
    const double ent = q > 0 ? q * (r.logq[j] + r.entropy) : 0.0;
    g[j] = (g_lp * dmq - g_h * ent) / T;
  }
  return g;
}

/// Round a double to storage type T and back (the value the library actually reads).
template <class T>
double as_stored(double v) {
  return static_cast<double>(
      static_cast<float>(grpo::widen(grpo::narrow<T>(static_cast<float>(v)))));
}

/// Spacing of bf16 values around |v| (one ulp).
inline double bf16_ulp(double v) {
  const float f = std::abs(static_cast<float>(v));
  if (f == 0.0f) return std::ldexp(1.0, -133);
  int e = 0;
  std::frexp(f, &e);  // f = mant * 2^e, mant in [0.5, 1)
  return std::ldexp(1.0, e - 8);
}

}  // namespace lp_ref

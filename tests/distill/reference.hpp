// SPDX-License-Identifier: Apache-2.0
/// @file reference.hpp
/// @brief Naive double-precision references of the distillation losses for the tests: explicit
///        log-softmax of each row in plain double, each loss written from its
///        textbook definition, and each gradient from its own closed form (kernels note, section
///        4), independent of the library's unified g - q G rule and of grpo::ops.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace distill_ref {

constexpr double ninf = -std::numeric_limits<double>::infinity();

/// log-softmax of x / T in double (max-shifted, -inf entries stay -inf).
inline std::vector<double> log_softmax(const std::vector<double>& x, double T) {
  double m = ninf;
  for (double v : x) m = std::max(m, v / T);
  double s = 0.0;
  for (double v : x) s += std::exp(v / T - m);
  const double lse = m + std::log(s);
  std::vector<double> r(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) r[i] = x[i] / T - lse;
  return r;
}

/// p log(p / m) with 0 log 0 = 0.
inline double plogr(double p, double lp, double lm) {
  return p > 0 ? p * (lp - lm) : 0.0;
}

inline double logmix(double w, double lp, double lq) {
  // log(w p + (1 - w) q) via logaddexp, as TRL computes it.
  const double a = w > 0 ? std::log(w) + lp : ninf;
  const double b = w < 1 ? std::log1p(-w) + lq : ninf;
  const double hi = std::max(a, b), lo = std::min(a, b);
  if (hi == ninf) return ninf;
  return hi + std::log1p(std::exp(lo - hi));
}

enum class kind { fkl, rkl, jsd, sfkl, srkl };

/// Loss of one row from the definitions (w = beta for JSD, alpha for the skew KLs).
inline double row_loss(kind k, const std::vector<double>& lp, const std::vector<double>& lq,
                       double w) {
  double L = 0.0;
  for (std::size_t i = 0; i < lp.size(); ++i) {
    const double p = std::exp(lp[i]), q = std::exp(lq[i]);
    switch (k) {
      case kind::fkl:
        L += plogr(p, lp[i], lq[i]);
        break;
      case kind::rkl:
        L += plogr(q, lq[i], lp[i]);
        break;
      case kind::jsd: {
        const double lm = logmix(w, lp[i], lq[i]);
        L += w * plogr(p, lp[i], lm) + (1 - w) * plogr(q, lq[i], lm);
        break;
      }
      case kind::sfkl:
        L += plogr(p, lp[i], logmix(w, lp[i], lq[i]));
        break;
      case kind::srkl:
        L += plogr(q, lq[i], logmix(1 - w, lp[i], lq[i]));
        break;
    }
  }
  return L;
}

/// d(row loss)/dz'_j from the closed forms of the kernels note (section 4), before the 1/T factor.
inline std::vector<double> row_grad(kind k, const std::vector<double>& lp,
                                    const std::vector<double>& lq, double w) {
  const std::size_t V = lp.size();
  std::vector<double> g(V, 0.0);
  std::vector<double> p(V), q(V);
  for (std::size_t i = 0; i < V; ++i) p[i] = std::exp(lp[i]), q[i] = std::exp(lq[i]);
  switch (k) {
    case kind::fkl:
      for (std::size_t j = 0; j < V; ++j) g[j] = q[j] - p[j];
      break;
    case kind::rkl: {
      const double L = row_loss(kind::rkl, lp, lq, w);
      for (std::size_t j = 0; j < V; ++j) g[j] = q[j] > 0 ? q[j] * (lq[j] - lp[j] - L) : 0.0;
      break;
    }
    case kind::jsd: {
      // (1 - b) q_j [log(q_j / M_j) - KL(q || M)]
      double klqm = 0.0;
      std::vector<double> r(V, 0.0);
      for (std::size_t i = 0; i < V; ++i) {
        const double lm = logmix(w, lp[i], lq[i]);
        r[i] = q[i] > 0 ? lq[i] - lm : 0.0;
        klqm += q[i] * r[i];
      }
      for (std::size_t j = 0; j < V; ++j) g[j] = (1 - w) * q[j] * (r[j] - klqm);
      break;
    }
    case kind::sfkl: {
      // (1 - a) q_j (sum_i q_i p_i / M_i - p_j / M_j)
      std::vector<double> pm(V, 0.0);
      double s = 0.0;
      for (std::size_t i = 0; i < V; ++i) {
        const double M = w * p[i] + (1 - w) * q[i];
        pm[i] = M > 0 ? p[i] / M : 0.0;
        s += q[i] * pm[i];
      }
      for (std::size_t j = 0; j < V; ++j) g[j] = (1 - w) * q[j] * (s - pm[j]);
      break;
    }
    case kind::srkl: {
      // v_i = log(q_i / M_i) - a q_i / M_i;  q_j (v_j - sum q v)
      std::vector<double> v(V, 0.0);
      double s = 0.0;
      for (std::size_t i = 0; i < V; ++i) {
        if (q[i] > 0) {
          const double lm = logmix(1 - w, lp[i], lq[i]);
          v[i] = lq[i] - lm - w * std::exp(lq[i] - lm);
        }
        s += q[i] * v[i];
      }
      for (std::size_t j = 0; j < V; ++j) g[j] = q[j] * (v[j] - s);
      break;
    }
  }
  return g;
}

/// Random logits in double with a given scale.
inline std::vector<double> randn(std::size_t n, double scale, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> d(0.0, scale);
  std::vector<double> r(n);
  for (auto& v : r) v = d(gen);
  return r;
}

}  // namespace distill_ref

// SPDX-License-Identifier: Apache-2.0
/// @file loss_abi_case.hpp
/// @brief The compute_loss case of test_loss_abi, compiled into both of its translation units
///        (portable flags and -march=native): each TU instantiates the engines in its own
///        GRPO_ISA_ABI namespace. Functions with internal linkage (static): one copy per TU.
#pragma once

#include <grpo/core/isa.hpp>
#include <grpo/loss.hpp>
#include <grpo/presets.hpp>

#include <random>
#include <vector>

#define LOSS_ABI_STR2(x) #x
#define LOSS_ABI_STR(x) LOSS_ABI_STR2(x)

namespace loss_abi {

struct result {
  double loss = 0.0;
  int engine = -1;
  std::vector<double> grad;
};

result run_native(bool dbl);
const char* abi_native();
const void* entry_native(bool dbl);

/// TRL DAPO + k3 KL (the token-row engine, vectorised where the layout allows) on a fixed batch.
template <class T>
static result run_typed() {
  const grpo::index_t B = 6, Tn = 301;
  std::mt19937 rng(11);
  std::normal_distribution<double> n01(0.0, 1.0);
  std::vector<T> lp, lo, lr, A, m;
  for (grpo::index_t k = 0; k < B * Tn; ++k) {
    const double l = -1.2 + 0.5 * n01(rng);
    lp.push_back(static_cast<T>(l));
    lo.push_back(static_cast<T>(l + 0.3 * n01(rng)));
    lr.push_back(static_cast<T>(l + 0.3 * n01(rng)));
    A.push_back(static_cast<T>(n01(rng)));
    m.push_back(static_cast<T>((k % Tn) < Tn - 7 * (k / Tn) ? 1 : 0));
  }
  auto o = grpo::preset("trl_dapo");
  o.kl_coef = 0.04;
  grpo::loss_batch<T, T> b;
  b.logp = grpo::make_view(lp.data(), {B, Tn});
  b.old_logp = grpo::make_view(lo.data(), {B, Tn});
  b.ref_logp = grpo::make_view(lr.data(), {B, Tn});
  b.advantages = grpo::make_view(A.data(), {B, Tn});
  b.mask = grpo::make_view(m.data(), {B, Tn});
  const auto r = grpo::compute_loss(o, b);
  return {r.loss, static_cast<int>(r.engine_used), r.grad_logp};
}

static inline result run_here(bool dbl) {
  return dbl ? run_typed<double>() : run_typed<float>();
}
static inline const char* abi_here() {
  return LOSS_ABI_STR(GRPO_ISA_ABI);
}
/// The address of this TU's compute_loss_into instantiation (distinct symbols per ABI).
static inline const void* entry_here(bool dbl) {
  if (dbl) return reinterpret_cast<const void*>(&grpo::compute_loss_into<double, double, double>);
  return reinterpret_cast<const void*>(&grpo::compute_loss_into<float, float, double>);
}

}  // namespace loss_abi

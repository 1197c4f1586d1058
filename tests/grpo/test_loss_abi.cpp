// SPDX-License-Identifier: Apache-2.0
// One program, two translation units calling compute_loss: this one with the project's portable
// flags and loss_abi_native.cpp with -march=native. The engines' bodies depend on the TU's target
// (xsimd batch width, AVX-512 kernels, FMA contraction), so they sit in inline namespace
// GRPO_ISA_ABI (core/isa.hpp): the two TUs must get distinct compute_loss_into symbols (else the
// linker keeps one body for both, an ODR violation) and agree on the result to rounding (float:
// 1e-5 relative, double: 1e-12). Where -march=native gives the portable ABI tag (no wider ISA, or
// a build without the native TU) the check is reported as skipped.
#include "loss_abi_case.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>

TEST_CASE("loss ABI: a -march=native TU and a portable TU both calling compute_loss agree") {
  const std::string here = loss_abi::abi_here(), native = loss_abi::abi_native();
  MESSAGE("portable TU: " << here << ", native TU: " << native);
  if (here == native) {
    MESSAGE("SKIPPED: -march=native gives this build's ABI tag (" << here
                                                                  << "): nothing to tell apart");
    return;
  }
  for (bool dbl : {false, true}) {
    CAPTURE(dbl);
    // Distinct symbols: each TU calls its own instantiation.
    CHECK(loss_abi::entry_here(dbl) != loss_abi::entry_native(dbl));
    const auto a = loss_abi::run_here(dbl), b = loss_abi::run_native(dbl);
    const double tol = dbl ? 1e-12 : 1e-5;
    CHECK(a.engine == b.engine);
    CHECK(std::isfinite(a.loss));
    CHECK(std::abs(a.loss - b.loss) <= tol * (1.0 + std::abs(a.loss)));
    REQUIRE(a.grad.size() == b.grad.size());
    double gmax = 0.0, dmax = 0.0;
    for (std::size_t k = 0; k < a.grad.size(); ++k) {
      gmax = std::max(gmax, std::abs(a.grad[k]));
      dmax = std::max(dmax, std::abs(a.grad[k] - b.grad[k]));
    }
    CHECK(gmax > 0.0);
    CHECK(dmax <= tol * gmax);
  }
}

// SPDX-License-Identifier: Apache-2.0
// The -march=native half of test_loss_abi (see there): the same compute_loss calls as the
// portable TU, compiled for this machine's ISA (its engines in inline namespace GRPO_ISA_ABI).
// Another ABI namespace than the suite's compiled loss instances (tests/CMakeLists.txt): this TU
// instantiates its own engines.
#undef GRPO_LOSS_EXTERN_TEMPLATES
#include "loss_abi_case.hpp"

namespace loss_abi {

result run_native(bool dbl) {
  return run_here(dbl);
}
const char* abi_native() {
  return abi_here();
}
const void* entry_native(bool dbl) {
  return entry_here(dbl);
}

}  // namespace loss_abi

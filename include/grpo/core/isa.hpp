// SPDX-License-Identifier: Apache-2.0
/// @file isa.hpp
/// @brief Instruction sets: run-time CPU detection, the active path (limitable by `GRPO_ISA` or
///        `set_isa_limit`), target-region macros for per-ISA code in a header-only library, and
///        the ABI namespace that keeps code whose body depends on the compile flags apart.
///
/// Why run time: a library built for baseline x86-64 (every Python wheel, every distro package)
/// must still run the AVX2 or AVX-512 path of the CPU it lands on. Header-only code cannot rely on
/// per-ISA translation units, so per-ISA kernels are compiled inside target regions
/// (GRPO_BEGIN_TARGET_AVX2 ... GRPO_END_TARGET: `#pragma GCC target` on g++, `#pragma clang
/// attribute push(target)` on clang; the technique of simdjson and Highway) and selected once per
/// call from active_isa(). Intrinsics still live only under `simd/arch/<isa>/` and
/// `<module>/kernels/<isa>/` (docs/architecture.md).
///
/// Two namespaces keep the one-definition rule:
///  - per-target kernels live in `...::avx2`, `...::avx512` namespaces: their bodies depend only
///    on the target region, never on the translation unit's flags, EXCEPT that g++ adds a target
///    region's ISA to the command line's (a `-march=native` TU compiles the "avx2" kernel with
///    AVX-512 allowed). So
///  - everything whose body may change with the compile flags sits in `inline namespace
///    GRPO_ISA_ABI` (e.g. `abi_x86_64`, `abi_avx2`, `abi_avx512`), named from the flags: a
///    `-march=native` TU and a portable TU linked into one program never share a symbol.
#pragma once

#include <grpo/core/config.hpp>

#include <atomic>
#include <cstdlib>

// ---------------------------------------------------------------------------------------------
// The compile-time baseline of this translation unit, and its ABI namespace.

#if (defined(__x86_64__) || defined(_M_X64)) && !defined(__CUDA_ARCH__)
#define GRPO_ARCH_X86_64 1
#else
#define GRPO_ARCH_X86_64 0
#endif
#if defined(__aarch64__) && !defined(__CUDA_ARCH__)
#define GRPO_ARCH_AARCH64 1
#else
#define GRPO_ARCH_AARCH64 0
#endif

/// 1 where per-target regions and run-time dispatch are available: x86-64 with g++ >= 11 or
/// clang >= 14 (both accept target pragmas around templates and lambdas). Define it to 0 to
/// compile only the translation unit's own baseline path.
#ifndef GRPO_RUNTIME_DISPATCH
#if GRPO_ARCH_X86_64 && !defined(__CUDACC__) && !defined(__NVCOMPILER) && \
    ((defined(__clang__) && __clang_major__ >= 14) ||                   \
     (defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11))
#define GRPO_RUNTIME_DISPATCH 1
#else
#define GRPO_RUNTIME_DISPATCH 0
#endif
#endif

/// The ABI tag of this translation unit's flags: the widest vector ISA the compiler may use
/// everywhere in it.
#ifndef GRPO_ISA_ABI
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#if defined(__AVX512BF16__)
#define GRPO_ISA_ABI abi_avx512bf16
#else
#define GRPO_ISA_ABI abi_avx512
#endif
#elif defined(__AVX512F__)
#define GRPO_ISA_ABI abi_avx512f
#elif defined(__AVX2__) && defined(__FMA__)
#define GRPO_ISA_ABI abi_avx2
#elif defined(__AVX__)
#define GRPO_ISA_ABI abi_avx
#elif GRPO_ARCH_X86_64
#define GRPO_ISA_ABI abi_x86_64
#elif defined(__ARM_FEATURE_SVE)
#define GRPO_ISA_ABI abi_sve
#elif GRPO_ARCH_AARCH64
#define GRPO_ISA_ABI abi_neon
#else
#define GRPO_ISA_ABI abi_generic
#endif
#endif

#if GRPO_RUNTIME_DISPATCH
#include <cpuid.h>
#endif

// ---------------------------------------------------------------------------------------------
// Target regions. Everything between BEGIN and END (functions, templates, lambdas) is compiled
// for that ISA whatever the command line says. Include <immintrin.h> BEFORE a region.

#define GRPO_ISA_PRAGMA_(x) _Pragma(#x)
/// The target strings: AVX2 with FMA and F16C (every AVX2 CPU since Haswell / Zen 1 has them);
/// AVX-512 as on Skylake-SP / Zen 4 and later (F, BW, DQ, VL), with AVX2/FMA/F16C implied.
#define GRPO_TARGET_STRING_AVX2 "avx2,fma,f16c,bmi,bmi2,popcnt"
#define GRPO_TARGET_STRING_AVX512 \
  "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,bmi,bmi2,popcnt"
#define GRPO_TARGET_STRING_AVX512BF16 \
  "avx512bf16,avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,bmi,bmi2,popcnt"

#if GRPO_RUNTIME_DISPATCH && defined(__clang__)
#define GRPO_BEGIN_TARGET_(s) \
  GRPO_ISA_PRAGMA_(clang attribute push(__attribute__((target(s))), apply_to = function))
#define GRPO_END_TARGET GRPO_ISA_PRAGMA_(clang attribute pop)
#elif GRPO_RUNTIME_DISPATCH
// g++ 12's AVX-512 intrinsic headers trip -Wuninitialized on their own `__Y = __Y` idiom
// (docs/compiler-bugs.md): silenced inside regions only.
#define GRPO_BEGIN_TARGET_(s)                                                           \
  GRPO_ISA_PRAGMA_(GCC push_options) GRPO_ISA_PRAGMA_(GCC target(s))                    \
  GRPO_ISA_PRAGMA_(GCC diagnostic push)                                                 \
  GRPO_ISA_PRAGMA_(GCC diagnostic ignored "-Wuninitialized")                            \
  GRPO_ISA_PRAGMA_(GCC diagnostic ignored "-Wmaybe-uninitialized")
#define GRPO_END_TARGET GRPO_ISA_PRAGMA_(GCC diagnostic pop) GRPO_ISA_PRAGMA_(GCC pop_options)
#else
#define GRPO_BEGIN_TARGET_(s)
#define GRPO_END_TARGET
#endif
#define GRPO_BEGIN_TARGET_AVX2 GRPO_BEGIN_TARGET_(GRPO_TARGET_STRING_AVX2)
#define GRPO_BEGIN_TARGET_AVX512 GRPO_BEGIN_TARGET_(GRPO_TARGET_STRING_AVX512)
#define GRPO_BEGIN_TARGET_AVX512BF16 GRPO_BEGIN_TARGET_(GRPO_TARGET_STRING_AVX512BF16)

/// Attribute form for a single function outside a region.
#if GRPO_RUNTIME_DISPATCH
#define GRPO_TARGET_AVX2 __attribute__((target(GRPO_TARGET_STRING_AVX2)))
#define GRPO_TARGET_AVX512 __attribute__((target(GRPO_TARGET_STRING_AVX512)))
#else
#define GRPO_TARGET_AVX2
#define GRPO_TARGET_AVX512
#endif

namespace grpo {

/// The vector paths a CPU kernel may take. `baseline` is the translation unit's own flags (SSE2 on
/// x86-64 without -m flags; the auto-vectorised loops on aarch64). Paths are ranked by isa_rank:
/// on one architecture a higher rank includes the lower ones (x86-64: baseline < avx2 < avx512;
/// aarch64: baseline < neon). The values are not ranks (neon = 3 keeps the x86 values stable).
enum class isa : unsigned char {
  baseline = 0,  ///< portable code as compiled (auto-vectorised for the TU's flags)
  avx2 = 1,      ///< x86-64 AVX2 + FMA + F16C
  avx512 = 2,    ///< x86-64 AVX-512 F/BW/DQ/VL
  neon = 3,      ///< aarch64 Advanced SIMD (the packet kernels; part of every aarch64 CPU)
};

/// Rank of a path for limits: baseline 0, avx2 and neon 1 (128/256-bit packet kernels), avx512 2.
constexpr int isa_rank(isa i) noexcept {
  return i == isa::avx512 ? 2 : i == isa::baseline ? 0 : 1;
}

/// The path that a CPU whose best path is `best` runs under the limit `limit`: best when its rank
/// is within the limit, else the best path of that CPU's architecture at the limit's rank (only
/// x86-64 has paths above rank 1).
constexpr isa cap_isa(isa best, isa limit) noexcept {
  if (isa_rank(best) <= isa_rank(limit)) return best;
  return isa_rank(limit) == 0 ? isa::baseline : isa::avx2;
}

/// Lower-case name of a path ("baseline", "avx2", "avx512", "neon").
constexpr const char* isa_name(isa i) noexcept {
  switch (i) {
    case isa::avx2: return "avx2";
    case isa::avx512: return "avx512";
    case isa::neon: return "neon";
    default: return "baseline";
  }
}

/// Parses a name as isa_name writes it (also "sse2", "scalar", "portable", "none" for baseline,
/// and "native" / "best" for "no limit"). Returns false on an unknown name.
constexpr bool parse_isa(const char* s, isa& out, bool& unlimited) noexcept {
  auto eq = [](const char* a, const char* b) {
    for (; *a && *b; ++a, ++b) {
      char ca = *a >= 'A' && *a <= 'Z' ? static_cast<char>(*a - 'A' + 'a') : *a;
      if (ca != *b) return false;
    }
    return *a == *b;
  };
  unlimited = false;
  if (!s) return false;
  if (eq(s, "avx512")) out = isa::avx512;
  else if (eq(s, "avx2")) out = isa::avx2;
  else if (eq(s, "neon")) out = isa::neon;
  else if (eq(s, "baseline") || eq(s, "sse2") || eq(s, "scalar") || eq(s, "portable") ||
           eq(s, "none"))
    out = isa::baseline;
  else if (eq(s, "native") || eq(s, "best") || eq(s, "auto")) {
    out = isa::avx512;
    unlimited = true;
  } else
    return false;
  return true;
}

/// Features of the running CPU that the kernels care about.
struct cpu_features {
  bool avx2 = false;        ///< AVX2 + FMA + F16C, with the OS saving YMM state
  bool avx512 = false;      ///< AVX-512 F + BW + DQ + VL, with the OS saving ZMM state
  bool avx512_bf16 = false; ///< AVX512_BF16 (vcvtne2ps2bf16, vdpbf16ps)
};

namespace detail {
inline cpu_features detect_cpu() noexcept {
  cpu_features f;
#if GRPO_RUNTIME_DISPATCH
  // libgcc / compiler-rt read CPUID and check XGETBV (OS support of the YMM / ZMM state).
  __builtin_cpu_init();
  // F16C (leaf 1 ECX bit 29) and BMI2 (leaf 7 EBX bit 8) from CPUID directly: clang 14's
  // __builtin_cpu_supports does not know their names.
  unsigned a = 0, b = 0, c = 0, d = 0;
  const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && ((c >> 29) & 1u);
  const bool bmi2 = __get_cpuid_count(7, 0, &a, &b, &c, &d) && ((b >> 8) & 1u);
  f.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c && bmi2;
  f.avx512 = f.avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#if (defined(__GNUC__) && !defined(__clang__)) || (defined(__clang__) && __clang_major__ >= 16)
  f.avx512_bf16 = f.avx512 && __builtin_cpu_supports("avx512bf16");
#endif
#endif
  return f;
}
/// -1: no limit set by set_isa_limit (the environment decides); else the limit as an int.
inline std::atomic<int> isa_limit_override{-1};
}  // namespace detail

/// Features of this CPU (detected once).
inline const cpu_features& cpu() noexcept {
  static const cpu_features f = detail::detect_cpu();
  return f;
}

/// The best path this CPU and this build can run (ignores any limit).
inline isa best_isa() noexcept {
#if GRPO_RUNTIME_DISPATCH
  if (cpu().avx512) return isa::avx512;
  if (cpu().avx2) return isa::avx2;
#elif GRPO_ARCH_AARCH64 && defined(__ARM_NEON)
  return isa::neon;  // Advanced SIMD is mandatory on AArch64: no run-time check
#endif
  return isa::baseline;
}

/// Whether path k can run here (scoped_isa_limit(k) then selects exactly k): the baseline, the
/// best path, or (x86-64) a lower-ranked path of the same architecture.
inline bool isa_available(isa k) noexcept {
  const isa b = best_isa();
  if (k == isa::baseline || k == b) return true;
  return b != isa::neon && k != isa::neon && isa_rank(k) <= isa_rank(b);
}

/// The limit from the environment variable GRPO_ISA (read once; "avx2", "avx512", "baseline",
/// "native"), or avx512 (no limit) when it is unset or unknown.
inline isa env_isa_limit() noexcept {
  static const isa lim = [] {
    isa v = isa::avx512;
    bool unlimited = false;
    const char* s = std::getenv("GRPO_ISA");
    if (s && *s && parse_isa(s, v, unlimited)) return v;
    return isa::avx512;
  }();
  return lim;
}

/// Pins the path of every later call (tests, benchmarks, debugging): cap_isa(best_isa(), limit).
/// Thread-safe; takes precedence over GRPO_ISA.
inline void set_isa_limit(isa limit) noexcept {
  detail::isa_limit_override.store(static_cast<int>(limit), std::memory_order_relaxed);
}
/// Removes a set_isa_limit (GRPO_ISA applies again).
inline void clear_isa_limit() noexcept {
  detail::isa_limit_override.store(-1, std::memory_order_relaxed);
}

/// The path the kernels take now: the best one the CPU has, capped by set_isa_limit / GRPO_ISA.
inline isa active_isa() noexcept {
  const int o = detail::isa_limit_override.load(std::memory_order_relaxed);
  const isa lim = o >= 0 ? static_cast<isa>(o) : env_isa_limit();
  return cap_isa(best_isa(), lim);
}

/// Scoped limit for tests and benchmarks: pins the path for its lifetime, then restores.
class scoped_isa_limit {
 public:
  explicit scoped_isa_limit(isa limit) noexcept
      : prev_(detail::isa_limit_override.load(std::memory_order_relaxed)) {
    set_isa_limit(limit);
  }
  ~scoped_isa_limit() { detail::isa_limit_override.store(prev_, std::memory_order_relaxed); }
  scoped_isa_limit(const scoped_isa_limit&) = delete;
  scoped_isa_limit& operator=(const scoped_isa_limit&) = delete;

 private:
  int prev_;
};

}  // namespace grpo

// SPDX-License-Identifier: Apache-2.0
// doctest's main, compiled once and shared by every test executable.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

// LeakSanitizer (ASan builds): CLN, GiNaC's number library, allocates a few bytes at start-up that it
// never frees by design. Suppressed harness-wide so every test linking grpo::rewards stays clean;
// any other leak still fails the sanitizer run.
extern "C" const char* __lsan_default_suppressions() { return "leak:libcln.so\n"; }

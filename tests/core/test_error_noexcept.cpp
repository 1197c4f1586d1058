// SPDX-License-Identifier: Apache-2.0
// Built with -fno-exceptions: GRPO_EXPECTS must call the (overridden) GRPO_ABORT with the full message.
#include <csetjmp>
#include <cstdio>
#include <cstring>

static std::jmp_buf g_jump;
static char g_message[512];
// The override must not return: it records the message and jumps back into the test.
#define GRPO_ABORT(msg)                                           \
  do {                                                            \
    std::snprintf(g_message, sizeof g_message, "%s", (msg));      \
    std::longjmp(g_jump, 1);                                      \
  } while (0)
#include <grpo/core/error.hpp>

static_assert(GRPO_USE_EXCEPTIONS == 0, "this test must be compiled with -fno-exceptions");

static int checked(int x) {
  GRPO_EXPECTS(x >= 0, out_of_range, "x is negative");
  return x;
}

int main() {
  if (checked(3) != 3) return 1;
  if (setjmp(g_jump) == 0) {
    checked(-1);
    std::puts("GRPO_ABORT was not called");
    return 1;
  }
  if (std::strncmp(g_message, "[grpo.out_of_range] x is negative (", 35) != 0) {
    std::printf("unexpected message: %s\n", g_message);
    return 1;
  }
  std::puts("ok");
  return 0;
}

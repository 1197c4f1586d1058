#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Runs a command and checks its exit status AND its output (CTest's PASS_REGULAR_EXPRESSION
ignores the exit status and WILL_FAIL accepts any failure, whatever the message).

usage: expect_run.py --rc N [--stdout REGEX] [--stderr REGEX] -- command args...
REGEX is a Python regular expression searched in the whole stream (re.search); several
--stdout / --stderr options must all match. Exit 0 when everything matches, 1 otherwise (with the
reason, the status and both streams printed).
"""
import re
import subprocess
import sys


def main(argv):
    if "--" not in argv:
        print("expect_run.py: missing -- before the command", file=sys.stderr)
        return 2
    cut = argv.index("--")
    opts, cmd = argv[:cut], argv[cut + 1:]
    want_rc, outs, errs = None, [], []
    i = 0
    while i < len(opts):
        if opts[i] == "--rc":
            want_rc = int(opts[i + 1])
        elif opts[i] == "--stdout":
            outs.append(opts[i + 1])
        elif opts[i] == "--stderr":
            errs.append(opts[i + 1])
        else:
            print(f"expect_run.py: unknown option {opts[i]}", file=sys.stderr)
            return 2
        i += 2
    if want_rc is None or not cmd:
        print("expect_run.py: --rc and a command are required", file=sys.stderr)
        return 2
    p = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=600)
    problems = []
    if p.returncode != want_rc:
        problems.append(f"exit status {p.returncode}, expected {want_rc}")
    problems += [f"stdout does not match {r!r}" for r in outs if not re.search(r, p.stdout)]
    problems += [f"stderr does not match {r!r}" for r in errs if not re.search(r, p.stderr)]
    if problems:
        print("FAILED: " + "; ".join(problems))
        print(f"--- command: {cmd}\n--- stdout:\n{p.stdout}--- stderr:\n{p.stderr}")
        return 1
    print(f"ok: exit {p.returncode}; stdout/stderr match")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

# SPDX-License-Identifier: Apache-2.0
# Command-line contract of r1_demo: cmake -DDEMO=<r1_demo> -DOUT=<scratch dir> -P check_cli.cmake
#   - every bad argument exits with code 2 and one "r1_demo: error: <option>: ..." message naming
#     the option (no CLI11 raw exit code such as 104 or 109), prints nothing on stdout and writes
#     no output directory;
#   - --help exits 0, shows scripts/demo.sh as the program, the default output directory it is
#     given (R1_DEMO_OUT, as scripts/demo.sh sets it) and no "{false}".
cmake_minimum_required(VERSION 3.24)  # policies of this CMake (IN_LIST, empty list items)
foreach(var DEMO OUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_cli.cmake: -D${var}=... is required")
  endif()
endforeach()
set(_fails "")
file(REMOVE_RECURSE "${OUT}")

# "arguments (comma-separated)|regex the stderr must match"
set(_cases
  "--seed,-1|--seed: must be >= 0 \\(got -1\\)"
  "--steps,-5|--steps: must be >= 0 \\(got -5\\)"
  "--steps,abc|--steps: 'abc' is not a number"
  "--steps,2.5|--steps"
  "--prompts,0|--prompts: must be >= 1"
  "--group,1|--group: must be >= 2"
  "--digits,7|--digits: must be in \\[1, 6\\]"
  "--terms,1|--terms: must be in \\[2, 8\\]"
  "--lr,0|--lr: must be > 0"
  "--lr-final,1.5|--lr-final: must be in \\[0, 1\\]"
  "--temperature,-1|--temperature: must be > 0"
  "--kl-beta,-0.1|--kl-beta: must be >= 0"
  "--minibatches,3|--minibatches: must divide --prompts x --group"
  "--pipeline,r2|--pipeline: r2 not in"
  "--ops,*|--ops: must be a non-empty subset"
  "--heldout,10000|--heldout: larger than a quarter"
  "--rl2-steps,-1|--rl2-steps: must be >= 0"
  "--threads,0|--threads: must be >= 1"
  "--no-such-option|--no-such-option"
  "--steps|--steps"
  "stray|stray")
foreach(case IN LISTS _cases)
  string(REPLACE "|" ";" parts "${case}")
  list(POP_BACK parts want)
  string(REPLACE "," ";" args "${parts}")
  execute_process(COMMAND "${DEMO}" ${args} --out "${OUT}" RESULT_VARIABLE rc OUTPUT_VARIABLE o
                  ERROR_VARIABLE e)
  if(NOT rc EQUAL 2)
    string(APPEND _fails "  '${args}': exit code ${rc}, expected 2 (stderr: ${e})\n")
  endif()
  if(NOT e MATCHES "^r1_demo: error: [^\n]*${want}")
    string(APPEND _fails "  '${args}': stderr '${e}' does not match 'r1_demo: error: ...${want}'\n")
  endif()
  if(NOT o STREQUAL "")
    string(APPEND _fails "  '${args}': printed on stdout: ${o}\n")
  endif()
  if(EXISTS "${OUT}")
    string(APPEND _fails "  '${args}': created ${OUT} although the arguments were refused\n")
    file(REMOVE_RECURSE "${OUT}")
  endif()
endforeach()

set(ENV{R1_DEMO_OUT} "/some/where/build/demo/out")
execute_process(COMMAND "${DEMO}" --help RESULT_VARIABLE rc OUTPUT_VARIABLE o ERROR_VARIABLE e)
if(NOT rc EQUAL 0)
  string(APPEND _fails "  --help: exit code ${rc}\n")
endif()
if(NOT o MATCHES "^r1_demo: " OR NOT o MATCHES "\nUsage: scripts/demo.sh \\[OPTIONS\\]")
  string(APPEND _fails "  --help does not start with the description and 'Usage: scripts/demo.sh'\n")
endif()
if(NOT o MATCHES "--out TEXT=/some/where/build/demo/out")
  string(APPEND _fails "  --help does not show the default output directory it was given\n")
endif()
if(o MATCHES "{false}" OR NOT o MATCHES "--no-progress +quiet")
  string(APPEND _fails "  --help shows --no-progress wrongly\n")
endif()
if(NOT o MATCHES "--pipeline TEXT:{default,r1}=default")
  string(APPEND _fails "  --help does not list --pipeline {default,r1}\n")
endif()

if(NOT _fails STREQUAL "")
  message(FATAL_ERROR "r1_demo command-line check failed:\n${_fails}--help output:\n${o}")
endif()
list(LENGTH _cases n)
message(STATUS "r1_demo command-line check passed (${n} bad arguments, --help)")

#!/usr/bin/env bash
# fuzz.sh - builds the libFuzzer targets of fuzz/ with clang (build dir
# build-fuzz, LUMEN_FUZZ=ON) and runs each one for SECONDS_PER_TARGET
# (default 10). Fails on the first crash, leak or timeout, leaving the input
# that caused it in build-fuzz/fuzz-out/<target>/; prints executions per
# target. docs/fuzzing.md says more (longer runs, reproducing a crash).
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
# Environment: LUMEN_FUZZ_BUILD_DIR (build-fuzz), LUMEN_FUZZ_TARGETS (all).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-10}
build=${LUMEN_FUZZ_BUILD_DIR:-$root/build-fuzz}
targets=${LUMEN_FUZZ_TARGETS:-fuzz_messages fuzz_frame fuzz_config fuzz_chunk}

"$root/scripts/deps.sh" install # clang and its libFuzzer runtime

# Only what the targets link is built: the services need no fuzzer
# instrumentation, and the tests and benchmarks are not wanted here.
echo "== build $build (clang, LUMEN_FUZZ=ON)"
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLUMEN_FUZZ=ON \
  -DLUMEN_TESTS=OFF -DLUMEN_BENCH=OFF >/dev/null
# shellcheck disable=SC2086
cmake --build "$build" -j"$(nproc)" --target $targets

export LSAN_OPTIONS="suppressions=$root/fuzz/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
summary=""
for t in $targets; do
  # New inputs go to a scratch corpus; the committed seeds are only read.
  out=$build/fuzz-out/$t
  rm -rf "$out"
  mkdir -p "$out/corpus"
  echo "== $t: ${seconds}s"
  # -timeout: one input taking this long is a hang; -rss_limit_mb: a leak
  # or a runaway allocation is a crash too.
  if ! (cd "$out" && "$build/bin/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 corpus "$root/fuzz/corpus/$t" >log 2>&1); then
    tail -n 60 "$out/log" >&2
    echo "fuzz.sh: $t failed; the input is in $out (reproduce: $build/bin/$t $out/<crash-file>)" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log")
  summary+=$(printf '%-14s %12s executions in %ss, no crash' "$t" "$runs" "$seconds")$'\n'
done
echo "== fuzz summary"
printf '%s' "$summary"

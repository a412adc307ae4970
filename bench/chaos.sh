#!/usr/bin/env bash
# chaos.sh - the chaos test's long mode: it_chaos (tests/integration/test_chaos.c)
# runs jobs until N processes have been killed at random moments (every role:
# scheduler, object store, worker, executor, Redis, a whole node; some rounds
# kill two), then prints its report: kills survived per role, wrong answers,
# failed jobs, recovery time p50/p99 per role ("chaos report:" lines).
#
#   bench/chaos.sh [KILLS] [BUILD_DIR]        # default 1000 kills, build/
#
# Knobs (environment, see test_chaos.c): LUMEN_CHAOS_SEED (default 1),
# LUMEN_CHAOS_SECONDS (stop earlier), LUMEN_CHAOS_VICTIMS, LUMEN_CHAOS_METHODS,
# LUMEN_CHAOS_DOUBLE, LUMEN_TEST_KEEP=1 (keep the services' logs). The whole
# output goes to BUILD_DIR/artifacts/chaos-<seed>.log; the report to stdout.
# Exits non-zero when a round failed (a wrong answer, a failed job, or a
# cluster that did not serve again).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kills=${1:-1000}
build=${2:-$root/build}
bin=$build/bin/it_chaos
[ -x "$bin" ] || { echo "chaos.sh: no $bin (scripts/build.sh $build first)" >&2; exit 2; }
mkdir -p "$build/artifacts"
log=$build/artifacts/chaos-${LUMEN_CHAOS_SEED:-1}.log
echo "chaos.sh: $kills kills, seed ${LUMEN_CHAOS_SEED:-1}; output in $log" >&2
rc=0
LUMEN_CHAOS_KILLS=$kills "$bin" >"$log" 2>&1 || rc=$?
grep '^chaos report:' "$log" || { echo "chaos.sh: no report (see $log)" >&2; tail -20 "$log" >&2; }
exit "$rc"

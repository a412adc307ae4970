#!/usr/bin/env bash
# test_head_restarts.sh - it_head_restarts: the local cluster a user starts
# (`lumen start --head`: one object store, its supervisor) while its head
# processes are killed mid-job, as a user would do it. In each round the
# scheduler, the object store or Redis gets SIGKILL 0.05-0.3 s into a
# most_frequent_word job (exact and actors-exact); the supervisor starts it
# again on its address with its own command line. Every job must print the
# single-process answer, and a job started after all of it too: a restarted
# store must not wedge the cluster. A job that hangs fails (--timeout: 60 s
# for a job of about a second).
#
#   test_head_restarts.sh BIN_DIR FREE_PORT [ROUNDS]
# Environment: LUMEN_HEAD_RESTARTS_SEED (the kill moments; default 1),
# LUMEN_TEST_KEEP=1 keeps the run dir and its logs.
set -euo pipefail
bin=$1 free_port=$2 rounds=${3:-3}
seed=${LUMEN_HEAD_RESTARTS_SEED:-1}
RANDOM=$seed

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/lumen-head-restarts-XXXXXX")
cleanup() {
  "$bin/lumen" stop --run-dir "$run_dir" --timeout 5 >/dev/null 2>&1 || true
  if [ "${LUMEN_TEST_KEEP:-0}" = 1 ]; then echo "kept $run_dir"; else rm -rf "$run_dir"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() {
  echo "FAIL: $*" >&2
  for log in "$run_dir"/logs/*.log; do echo "---- $log" >&2; tail -n 25 "$log" >&2; done
  exit 1
}

port=$("$free_port") redis_port=$("$free_port") dashboard_port=$("$free_port")
"$bin/lumen" start --head --port "$port" --redis-port "$redis_port" --dashboard-port "$dashboard_port" \
  --workers 3 --run-dir "$run_dir" >/dev/null || fail "lumen start"
export LUMEN_RUN_DIR=$run_dir LUMEN_ADDRESS=127.0.0.1:$port
corpus=$run_dir/corpus.txt
"$bin/gen_corpus" --bytes 64MiB --seed 7 --output "$corpus" >/dev/null
want=$("$bin/most_frequent_word" --method local --input "$corpus" 2>/dev/null | tail -n 1)

# The pid of the cluster's service ROLE (scheduler, objstore, redis) now.
pid_of() {
  local p
  if [ "$1" = redis ]; then pgrep -f "^redis-server 127.0.0.1:$redis_port\b" | head -n 1; return; fi
  for p in $(pgrep -f "lumen-$1 "); do
    if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "$run_dir"; then echo "$p"; return; fi
  done
}

# Runs the job, kills ROLE at a random moment, checks the answer.
round() {
  local method=$1 role=$2 delay pid job got
  delay=$(printf '0.%02d' $((5 + RANDOM % 26)))
  pid=$(pid_of "$role")
  [ -n "$pid" ] || fail "no $role is running (its supervisor did not restart it?)"
  "$bin/most_frequent_word" --method "$method" --chunks 64 --timeout 60 --input "$corpus" \
    >"$run_dir/out" 2>"$run_dir/err" &
  job=$!
  sleep "$delay"
  kill -KILL "$pid"
  if ! wait "$job"; then cat "$run_dir/err" >&2; fail "$method, $role killed at ${delay}s: the job failed"; fi
  got=$(tail -n 1 "$run_dir/out")
  [ "$got" = "$want" ] || fail "$method, $role killed at ${delay}s: printed '$got', wanted '$want'"
  echo "ok: $method, $role killed at ${delay}s"
}

for ((i = 1; i <= rounds; i++)); do
  for method in exact actors-exact; do
    for role in scheduler objstore redis; do round "$method" "$role"; done
  done
done
# After all that the cluster serves new jobs as if nothing happened.
got=$("$bin/most_frequent_word" --method exact --chunks 8 --timeout 60 --input "$corpus" 2>"$run_dir/err" | tail -n 1) \
  || { cat "$run_dir/err" >&2; fail "a job after the restarts failed"; }
[ "$got" = "$want" ] || fail "a job after the restarts printed '$got', wanted '$want'"
echo "ok: a new job after the restarts"

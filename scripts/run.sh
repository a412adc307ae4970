#!/usr/bin/env bash
# run.sh - the README's first command. On a fresh Debian 12 machine: install
# what is missing, build, start a local cluster (Redis, scheduler, object
# store, 4 workers), find the most frequent word of a deterministic 64 MiB
# corpus with the exact and the seed methods and with a local single-thread
# count, show `lumen status`, and stop the cluster - also when a step fails.
#
#   scripts/run.sh
# Environment: LUMEN_PORT (scheduler, default 7400), LUMEN_WORKERS (4),
# LUMEN_CORPUS_BYTES (64MiB), LUMEN_CHUNKS (16), LUMEN_BUILD_DIR (build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${LUMEN_BUILD_DIR:-$root/build}
port=${LUMEN_PORT:-7400}
workers=${LUMEN_WORKERS:-4}
bytes=${LUMEN_CORPUS_BYTES:-64MiB}
chunks=${LUMEN_CHUNKS:-16}

"$root/scripts/deps.sh" install
"$root/scripts/build.sh" "$build"
bin=$build/bin

# A private run dir: this run's logs, pid files and token, removed at the
# end. Exported: the programs below find the cluster's token there.
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/lumen-run.XXXXXX")
export LUMEN_RUN_DIR=$run_dir
cleanup() {
    "$bin/lumen" stop --run-dir "$run_dir" >/dev/null 2>&1 || true
    rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The first port from $1 up that nothing listens on (a distribution's own
# redis-server often holds 6379).
free_port() {
    local p=$1
    while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
    echo "$p"
}
redis_port=$(free_port 6379)
dashboard_port=$(free_port 8265)

echo "== starting a local cluster (run dir $run_dir)"
"$bin/lumen" start --head --port "$port" --redis-port "$redis_port" --dashboard-port "$dashboard_port" \
    --workers "$workers" --run-dir "$run_dir"
address=127.0.0.1:$port

echo
echo "== generating a $bytes corpus"
corpus=$run_dir/corpus.txt
"$bin/gen_corpus" --bytes "$bytes" --seed 42 --output "$corpus"

# Runs one method; prints its stderr (timings) as it goes and keeps the
# answer (the last line of stdout) and the wall time.
declare -A answer seconds
run_method() {
    local method=$1 start end out
    echo
    echo "== most_frequent_word --method $method"
    start=$(date +%s.%N)
    out=$("$bin/most_frequent_word" --address "$address" --input "$corpus" --chunks "$chunks" --method "$method")
    end=$(date +%s.%N)
    answer[$method]=$(printf '%s\n' "$out" | tail -n 1)
    seconds[$method]=$(echo "$start $end" | awk '{printf "%.2f", $2 - $1}')
}
run_method local
run_method exact
run_method seed

echo
echo "== cluster state"
"$bin/lumen" status --run-dir "$run_dir"

echo
echo "== results ($bytes, $workers workers, $chunks chunks)"
printf '%-7s %-30s %s\n' method answer seconds
for m in local exact seed; do printf '%-7s %-30s %s\n' "$m" "${answer[$m]}" "${seconds[$m]}"; done
if [ "${answer[seed]}" != "${answer[local]}" ]; then
    echo "(the seed method can miss the answer: see examples/README.md)"
fi

echo
echo "== stopping the cluster"
"$bin/lumen" stop --run-dir "$run_dir"
if [ "${answer[exact]}" != "${answer[local]}" ]; then
    echo "run.sh: the exact method disagrees with the local count" >&2
    exit 1
fi

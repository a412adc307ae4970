#!/usr/bin/env bash
# test.sh - the README's test command. On a fresh Debian 12 machine: installs
# what is missing, builds, runs every test (they start their own redis-server
# and Lumen services on free loopback ports and stop them), then builds and
# runs the whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer,
# then gives every fuzz target a short run (scripts/fuzz.sh, docs/fuzzing.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

scripts/deps.sh install

suite() {
  local build_dir=$1
  shift
  echo "== build $build_dir $*"
  scripts/build.sh "$build_dir" "$@"
  echo "== test $build_dir"
  (cd "$build_dir" && ctest --output-on-failure -j2)
}

suite "$root/build"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  suite "$root/build-asan" -DLUMEN_SANITIZE=ON -DLUMEN_BENCH=OFF
# About a minute in all: a smoke test of the fuzz targets, not a campaign.
scripts/fuzz.sh 10
# Deployment (docs/deploy.md): the Kubernetes manifests checked offline
# against the binaries, then docker-compose.yml for real (about 3 minutes).
echo "== deployment"
scripts/k8s-check.sh "$root/build/bin"
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  scripts/compose-test.sh
else
  echo "== compose test SKIPPED: no Docker daemon answers (docker info); run scripts/compose-test.sh where one does"
fi

#!/usr/bin/env bash
# deps.sh - the one list of Debian packages Lumen needs, used by scripts/ and
# docker/Dockerfile alike.
#   scripts/deps.sh install   apt-get install what is missing (build + test)
#   scripts/deps.sh build     print the build packages
#   scripts/deps.sh runtime   print the runtime packages (container image)
set -euo pipefail

BUILD_PACKAGES="cmake make gcc g++ pkg-config libgrpc-dev protobuf-c-compiler libprotobuf-c-dev
  libhiredis-dev libconfig-dev libcunit1-dev libmicrohttpd-dev"
TEST_PACKAGES="redis-server redis-tools clang libclang-rt-14-dev procps openssl chromium python3-h2"
RUNTIME_PACKAGES="libgrpc29 libprotobuf-c1 libhiredis0.14 libconfig9 redis-tools ca-certificates libmicrohttpd12"
# scripts/compose-test.sh builds its base image with debootstrap; scripts/k8s-check.sh
# reads manifests with python3-yaml and needs kubectl, from kubernetes-client
# unless one is installed already (they conflict).
DEPLOY_TEST_PACKAGES="debootstrap python3-yaml"

missing() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

case "${1:-install}" in
  build) echo $BUILD_PACKAGES ;;
  runtime) echo $RUNTIME_PACKAGES ;;
  install)
    # shellcheck disable=SC2086
    need=$(missing $BUILD_PACKAGES $TEST_PACKAGES $DEPLOY_TEST_PACKAGES)
    command -v kubectl >/dev/null 2>&1 || need="$need kubernetes-client"
    if [ -n "$need" ]; then
      echo "deps.sh: installing:" $need
      sudo_cmd=""
      [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
      $sudo_cmd apt-get update -qq
      # shellcheck disable=SC2086
      DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends $need
    fi ;;
  *) echo "usage: $0 [install|build|runtime]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# lumen-entrypoint - the container image's entrypoint: the command picks the role.
#
#   scheduler|objstore|worker [--setting VALUE]...
#       run that service with $LUMEN_CONFIG (default /etc/lumen/lumen.cfg);
#       settings also come from LUMEN_* variables (config/lumen.cfg lists them).
#       An object store or worker advertises this container's address unless
#       LUMEN_ADVERTISE_ADDR (or LUMEN_OBJSTORE_ADVERTISE, LUMEN_WORKER_ADVERTISE)
#       says otherwise.
#   example [most_frequent_word options]...
#       the word-count example against the cluster ($LUMEN_ADDRESS): counts
#       $LUMEN_CORPUS (a mounted file), or else a corpus it generates of
#       $LUMEN_CORPUS_BYTES (default 64MiB) with seed $LUMEN_CORPUS_SEED
#       (default 42). `example --method local` counts in this process alone.
#   health
#       the image's HEALTHCHECK: asks this container's service (PID 1) whether
#       it is serving (`lumen health`); exit 0 when it is, or when PID 1 is
#       not a Lumen service.
#   help      this text
#   anything else runs as given: lumen status, word_count ..., bash
set -euo pipefail

config=${LUMEN_CONFIG:-/etc/lumen/lumen.cfg}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# This container's IPv4 address on its (first) network.
own_address() {
  local addr
  addr=$(hostname -i 2>/dev/null | tr ' ' '\n' | grep -m1 -E '^[0-9]+(\.[0-9]+){3}$' || true)
  if [ -z "$addr" ]; then
    echo "lumen-entrypoint: cannot tell this container's address (hostname -i);" \
      "set LUMEN_ADVERTISE_ADDR to the address other containers reach it at" >&2
    exit 2
  fi
  echo "$addr"
}

# The listen address of the service PID 1 runs, as its own --print-config
# reports it (same argv, same environment), made dialable from here.
service_addr() {
  local -a argv
  local role listen host port
  mapfile -d '' argv </proc/1/cmdline
  case "${argv[0]##*/}" in
    lumen-scheduler) role=scheduler ;;
    lumen-objstore) role=objstore ;;
    lumen-worker) role=worker ;;
    *) return 1 ;;
  esac
  listen=$("${argv[@]}" --print-config |
    awk -v sect="$role" '$1 == sect && $2 == "=" { on = 1 }
                         on && $1 == "listen" { gsub(/[";]/, "", $3); print $3; exit }')
  [ -n "$listen" ] || { echo "lumen-entrypoint: no $role.listen in its config" >&2; exit 1; }
  host=${listen%:*}
  port=${listen##*:}
  case "$host" in
    0.0.0.0 | "") host=127.0.0.1 ;;
    "[::]") host="[::1]" ;;
  esac
  echo "$host:$port"
}

role=${1:-help}
case "$role" in
  scheduler | objstore | worker)
    shift
    if [ "$role" != scheduler ] && [ -z "${LUMEN_ADVERTISE_ADDR:-}" ]; then
      LUMEN_ADVERTISE_ADDR=$(own_address)
      export LUMEN_ADVERTISE_ADDR
    fi
    exec "lumen-$role" --config "$config" "$@"
    ;;
  example)
    shift
    corpus=${LUMEN_CORPUS:-}
    if [ -z "$corpus" ]; then
      corpus=${TMPDIR:-/tmp}/corpus.txt
      gen_corpus --bytes "${LUMEN_CORPUS_BYTES:-64MiB}" --seed "${LUMEN_CORPUS_SEED:-42}" --output "$corpus" >&2
    fi
    exec most_frequent_word --input "$corpus" "$@"
    ;;
  health)
    if ! addr=$(service_addr); then
      echo "not a Lumen service container: nothing to check"
      exit 0
    fi
    exec lumen health "$addr" --timeout 5
    ;;
  help | --help | -h)
    usage
    ;;
  -*)
    echo "lumen-entrypoint: a role or a command comes first, not \"$1\"" \
      "(scheduler, objstore, worker, example, health, help; e.g. example --method local)" >&2
    exit 2
    ;;
  *)
    exec "$@"
    ;;
esac

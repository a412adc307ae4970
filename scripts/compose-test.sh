#!/usr/bin/env bash
# compose-test.sh - docker-compose.yml tested for real, offline: no registry
# is reached and no image is pulled.
#
#  1. Makes the base images the Dockerfile and the compose file name when
#     they are missing: debootstrap a minimal Debian 12 from this machine's
#     own apt mirror, `docker import` it as debian:bookworm-slim, and build
#     the redis image (docker/redis/Dockerfile, Debian's redis-server).
#  2. Builds the Lumen image (compose build), starts the cluster with
#     `up -d --scale worker=8`, waits until 8 workers are ALIVE in Redis.
#  3. Runs the client job (most_frequent_word on a generated corpus) and
#     checks its answer against a single-process count (--method local).
#  4. Runs it again, kills one worker container (docker kill) and cuts
#     another off its network (docker network disconnect) while both run
#     tasks of the job, and checks the answer is still right.
#  5. Always (also on failure or ^C): `down -v`, and removes every image it
#     built. Prints how long it took.
#
# Needs root (debootstrap) unless both base images exist, a Docker daemon,
# and `docker compose` (v2) or docker-compose (1.29).
#   scripts/compose-test.sh
# Environment: LUMEN_COMPOSE_WORKERS (default 8), LUMEN_COMPOSE_CORPUS
# (corpus size, default 512MiB), LUMEN_COMPOSE_KEEP=1 (leave the cluster and
# images up for a look; clean up with the commands it prints).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

t0=$(date +%s)
workers=${LUMEN_COMPOSE_WORKERS:-8}
corpus_bytes=${LUMEN_COMPOSE_CORPUS:-512MiB}
keep=${LUMEN_COMPOSE_KEEP:-0}
base_image=debian:bookworm-slim
redis_image=redis:7.0 # what docker-compose.yml names (LUMEN_REDIS_IMAGE)
project=lumentest$$
lumen_image=lumen-compose-test:$project
# The compose file's variables come from the test's env file only: a shell
# variable would win over it (LUMEN_IMAGE, LUMEN_TOKEN, ...).
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(LUMEN_|COMPOSE_PROFILES$)')

log() { echo "compose-test: [$(($(date +%s) - t0))s] $*"; }
die() {
  echo "compose-test: FAILED: $*" >&2
  exit 1
}

# ---- what to talk to ----
if ! docker info >/dev/null 2>&1; then
  die "no Docker daemon answers (docker info)"
fi
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  die "neither \`docker compose\` nor docker-compose is installed"
fi
# The classic builder, with Compose v2 too: the Dockerfile needs no BuildKit,
# and the intermediate images it leaves are images this script can remove.
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lumen-compose-test.XXXXXX")
built_base=0
built_redis=0
cluster_up=0

dc() { "${compose[@]}" --env-file "$tmp/env" -p "$project" -f "$root/docker-compose.yml" "$@"; }

# Every image built since the test began that sits on the base image: the
# Lumen image, the redis image, the classic builder's intermediate images.
built_images() {
  local base_id since img created history
  base_id=$(docker image inspect -f '{{.Id}}' "$base_image" 2>/dev/null) || return 0
  since=$t0
  docker image ls -a -q --no-trunc | sort -u | while read -r img; do
    created=$(docker image inspect -f '{{.Created}}' "$img" 2>/dev/null) || continue
    [ "$(date -d "$created" +%s)" -ge "$since" ] || continue
    history=$(docker history -q --no-trunc "$img" 2>/dev/null) || continue
    grep -qx "$base_id" <<<"$history" || continue
    echo "$created $img"
  done | sort -r | cut -d' ' -f2
}

cleanup() {
  local rc=$? img
  trap - EXIT INT TERM
  if [ "$keep" = 1 ]; then
    log "LUMEN_COMPOSE_KEEP=1: left running; clean up with:"
    echo "  ${compose[*]} --env-file $tmp/env -p $project down -v; docker rmi $lumen_image"
    [ "$built_redis" = 0 ] || echo "  docker rmi $redis_image"
    [ "$built_base" = 0 ] || echo "  docker image prune -f; docker rmi $base_image"
    exit "$rc"
  fi
  if [ "$cluster_up" = 1 ]; then
    if [ "$rc" != 0 ]; then
      echo "---- logs (last 30 lines of each service) ----" >&2
      dc logs --no-color --tail 30 >&2 || true
    fi
    dc --profile client down -v --remove-orphans >/dev/null 2>&1 || dc down -v --remove-orphans || true
  fi
  if [ "$built_base" = 1 ]; then
    for img in $(built_images); do docker rmi -f "$img" >/dev/null 2>&1 || true; done
    docker rmi -f "$base_image" >/dev/null 2>&1 || true
  else
    docker rmi -f "$lumen_image" >/dev/null 2>&1 || true
    [ "$built_redis" = 0 ] || docker rmi -f "$redis_image" >/dev/null 2>&1 || true
    for img in $(built_images); do docker rmi "$img" >/dev/null 2>&1 || true; done
  fi
  if [ -d "$tmp/rootfs" ]; then # debootstrap may have died with /proc mounted there
    findmnt -R -n -o TARGET "$tmp/rootfs" 2>/dev/null | sort -r | xargs -r -n1 umount -l || true
  fi
  rm -rf --one-file-system "$tmp"
  if [ "$rc" = 0 ]; then
    log "PASSED in $(($(date +%s) - t0)) s"
  else
    echo "compose-test: failed after $(($(date +%s) - t0)) s" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. base images ----

# This machine's Debian mirror (URI of the debian or debian-security archive).
apt_uri() {
  local want=$1
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -E '^[[:space:]]*(deb|URIs:)[[:space:]]' | tr -s ' \t' '\n' | grep -E '^https?://' |
    grep -m1 -E "/$want/?\$" || true
}

make_base_image() {
  local mirror security rootfs=$tmp/rootfs
  mirror=$(apt_uri debian)
  mirror=${mirror:-http://deb.debian.org/debian}
  security=$(apt_uri debian-security)
  [ "$(id -u)" = 0 ] || die "$base_image is missing and making it (debootstrap) needs root"
  command -v debootstrap >/dev/null || die "debootstrap is missing (scripts/deps.sh install)"
  log "debootstrap bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "${mirror%/}" >"$tmp/debootstrap.log" 2>&1 ||
    die "debootstrap failed; its log: $(tail -5 "$tmp/debootstrap.log")"
  {
    echo "deb ${mirror%/} bookworm main"
    echo "deb ${mirror%/} bookworm-updates main"
    [ -z "$security" ] || echo "deb ${security%/} bookworm-security main"
  } >"$rootfs/etc/apt/sources.list"
  # What the official slim image sets for package installs in image builds:
  # no fsync per file, no docs, man pages or translations.
  echo force-unsafe-io >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
    >"$rootfs/etc/dpkg/dpkg.cfg.d/docker"
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*
  tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$base_image" >/dev/null
  rm -rf --one-file-system "$rootfs"
  built_base=1
}

if docker image inspect "$base_image" >/dev/null 2>&1; then
  log "using the existing $base_image"
else
  make_base_image
fi
if docker image inspect "$redis_image" >/dev/null 2>&1; then
  log "using the existing $redis_image"
else
  log "building $redis_image from Debian's redis-server"
  built_redis=1
  docker build -q -t "$redis_image" docker/redis >/dev/null
fi

# ---- 2. the cluster ----

token=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
cat >"$tmp/env" <<EOF
LUMEN_TOKEN=$token
LUMEN_IMAGE=$lumen_image
LUMEN_PORT=0
LUMEN_DASHBOARD_PORT=0
LUMEN_CORPUS_BYTES=$corpus_bytes
EOF

log "building the Lumen image (${compose[*]} build)"
# One build: every Lumen service names the same image.
dc build scheduler >"$tmp/build.log" 2>&1 || die "image build failed: $(tail -20 "$tmp/build.log")"
log "starting redis, scheduler, objstore and $workers workers"
cluster_up=1
dc up -d --scale worker="$workers"

redis_cli() { dc exec -T redis redis-cli "$@"; }
# Workers that registered and are ALIVE (lumen:nodes also holds the stores,
# and dead nodes stay in it).
count_workers='local n = 0
for _, id in ipairs(redis.call("SMEMBERS", KEYS[1])) do
  local h = redis.call("HMGET", "lumen:node:" .. id, "kind", "state")
  if h[1] == "worker" and h[2] == "ALIVE" then n = n + 1 end
end
return n'
deadline=$(($(date +%s) + 120))
while :; do
  alive=$(redis_cli EVAL "$count_workers" 1 lumen:nodes 2>/dev/null | tr -d '\r' || true)
  [ "${alive:-0}" -ge "$workers" ] 2>/dev/null && break
  [ "$(date +%s)" -lt "$deadline" ] || die "only ${alive:-0} of $workers workers registered within 120 s"
  sleep 1
done
log "$alive workers registered ($(redis_cli SCARD lumen:nodes | tr -d '\r') nodes in lumen:nodes)"

# The dashboard, through the host port the scheduler publishes (when this
# scheduler serves one).
http_status() { # HOST PORT PATH -> the status code, with the token
  # shellcheck disable=SC2016 # expanded by the inner bash
  TOKEN=$token timeout 10 bash -c 'exec 3<>"/dev/tcp/$1/$2"
    printf "GET %s HTTP/1.0\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n" "$3" "$1" "$TOKEN" >&3
    head -n1 <&3' _ "$@" | awk '{print $2}'
}
dc logs --no-color scheduler >"$tmp/scheduler.log" 2>&1 || true
if grep -q "dashboard on http" "$tmp/scheduler.log"; then
  published=$(dc port scheduler 8265 | tr -d '\r')
  code=$(http_status "${published%:*}" "${published##*:}" /metrics || true)
  [ "$code" = 200 ] || die "the dashboard on $published answered GET /metrics with \"${code:-nothing}\", not 200"
  log "the dashboard answers on $published (GET /metrics: 200)"
else
  log "this scheduler serves no dashboard: its check skipped"
fi

# ---- 3. the job, and the single-process count ----

# The answer line ("WORD COUNT") of a client run's output.
answer() { grep -E '^[^[:space:]]+ [0-9]+$' "$1" | tail -n1 || true; }

run_client() { dc run --rm -T --no-deps client example --chunks 32 "$@"; }

log "reference: most_frequent_word --method local on a $corpus_bytes corpus"
run_client --method local >"$tmp/local.out" 2>&1 || die "local count failed: $(tail -5 "$tmp/local.out")"
expected=$(answer "$tmp/local.out")
[ -n "$expected" ] || die "no answer from the local count: $(tail -5 "$tmp/local.out")"
log "expected: $expected"

log "job on the cluster"
run_client >"$tmp/job.out" 2>&1 || die "the job failed: $(tail -5 "$tmp/job.out")"
got=$(answer "$tmp/job.out")
[ "$got" = "$expected" ] || die "the cluster answered \"$got\", the local count \"$expected\""
log "cluster: $got (right)"

# ---- 4. the job again, losing two workers mid-job ----

# Addresses of the workers running a task right now, one per line.
busy_workers='local seen, out = {}, {}
for _, k in ipairs(redis.call("KEYS", "lumen:task:*")) do
  local h = redis.call("HMGET", k, "state", "worker")
  if h[1] == "RUNNING" and h[2] and not seen[h[2]] then
    seen[h[2]] = true
    local addr = redis.call("HGET", "lumen:node:" .. h[2], "addr")
    if addr then out[#out + 1] = addr end
  end
end
return out'

# Polled every 0.1 s, so straight through docker, not compose.
redis_c=$(dc ps -q redis)
declare -A worker_at # IP -> container
for c in $(dc ps -q worker); do
  for ip in $(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$c"); do
    worker_at[$ip]=$c
  done
done

# The job, killing one busy worker and cutting another off as soon as they
# run tasks of it (cut stays empty when the job ended before both were hit).
job_with_faults() {
  local job addr c net
  run_client >"$tmp/faults.out" 2>&1 &
  job=$!
  while [ -z "$cut" ] && kill -0 "$job" 2>/dev/null; do
    for addr in $(docker exec "$redis_c" redis-cli EVAL "$busy_workers" 0 2>/dev/null | tr -d '\r'); do
      c=${worker_at[${addr%:*}]:-}
      if [ -z "$c" ] || [ "$c" = "$killed" ] || [[ " $gone " == *" $c "* ]]; then
        continue
      elif [ -z "$killed" ]; then
        docker kill "$c" >/dev/null
        killed=$c
        log "killed worker ${c:0:12} ($addr) while it ran a task"
      else
        net=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$c" | awk '{print $1}')
        docker network disconnect "$net" "$c"
        cut=$c
        log "disconnected worker ${c:0:12} ($addr) from $net while it ran a task"
        break
      fi
    done
    sleep 0.1
  done
  wait "$job" || die "the job failed with workers lost: $(tail -5 "$tmp/faults.out")"
}

gone="" # workers hit by an earlier attempt
for attempt in 1 2 3; do
  killed="" cut=""
  log "job again ($attempt); killing one busy worker and disconnecting another mid-job"
  job_with_faults
  [ -z "$cut" ] || break
  gone="$gone $killed"
  log "the job ended before two busy workers were hit; once more"
done
[ -n "$cut" ] || die "3 jobs ended before two busy workers could be hit (a bigger LUMEN_COMPOSE_CORPUS makes them last longer)"
got=$(answer "$tmp/faults.out")
[ "$got" = "$expected" ] || die "with workers lost the cluster answered \"$got\", the local count \"$expected\""
rerun=$(docker exec "$redis_c" redis-cli EVAL 'local n = 0
for _, k in ipairs(redis.call("KEYS", "lumen:task:*")) do
  if tonumber(redis.call("HGET", k, "attempts") or "0") > 1 then n = n + 1 end
end
return n' 0 | tr -d '\r')
log "cluster: $got (right) with a worker killed and one cut off; $rerun tasks ran more than once"

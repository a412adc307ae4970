#!/usr/bin/env bash
# test_install.sh - it_install: Lumen as a user installs it. `cmake --install`
# to a prefix that is then moved (nothing may remember where it was), then:
#   - liblumen exports exactly the functions lumen.h declares;
#   - every installed program has an $ORIGIN RUNPATH and runs without
#     LD_LIBRARY_PATH;
#   - the README's samples, built with the README's pkg-config lines, and a
#     CMake project using find_package(lumen CONFIG) with only
#     CMAKE_PREFIX_PATH, whose function library calls the client API;
#   - a cluster started from the installed `lumen` runs their tasks: the
#     README's job on the installed example library, and ext.shout (uploaded)
#     calling mine.upper (from the installed lib/lumen) from inside its task.
#
#   test_install.sh BUILD_DIR SOURCE_DIR CMAKE CC SANITIZED(0|1) FREE_PORT
#
# Sanitized builds: liblumen wants the ASan runtime loaded first, so what
# links it is built with the same -fsanitize flags (`cc` below adds them).
set -euo pipefail
build=$1 src=$2 cmake=$3 cc_bin=$4 sanitized=$5 free_port=$6

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lumen-install-XXXXXX")
prefix=$tmp/moved/prefix
run_dir=$tmp/run
cleanup() {
  if [ -x "$prefix/bin/lumen" ]; then
    "$prefix/bin/lumen" stop --run-dir "$run_dir" --timeout 5 >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM # the EXIT trap cleans up then too
step() { echo "== $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

san=()
if [ "$sanitized" = 1 ]; then san=(-fsanitize=address,undefined); fi
# The README's lines say `cc`: this one is the build's compiler and flags.
cc() { "$cc_bin" "${san[@]}" "$@"; }

step "install to $tmp/installed, move it to $prefix"
"$cmake" --install "$build" --prefix "$tmp/installed" >/dev/null
mkdir -p "$tmp/moved"
mv "$tmp/installed" "$prefix"
pc=$(find "$prefix" -name lumen.pc)
[ -n "$pc" ] || fail "no lumen.pc installed"
export PKG_CONFIG_PATH=${pc%/lumen.pc}
libdir=$(pkg-config --variable=libdir lumen)
[ "$(cd "$libdir" && pwd -P)" = "$(cd "$prefix/lib" && pwd -P)" ] || fail "lumen.pc's libdir is $libdir"

step "liblumen exports the functions lumen.h and remote.h declare (local mode runs remote.h's), and nothing else"
exported=$(nm -D --defined-only "$libdir/liblumen.so" | awk '{print $3}' | sort)
declared=$(cat "$prefix/include/lumen/lumen.h" "$prefix/include/lumen/remote.h" | grep '^LUMEN_EXPORT' \
           | grep -o 'lumen_[a-z0-9_]*(' | tr -d '(' | sort)
echo "nm -D --defined-only: $(wc -l <<<"$exported") symbols"
[ "$exported" = "$declared" ] || fail "exported vs declared:
$(diff <(echo "$declared") <(echo "$exported"))"

step "installed programs find liblumen through their RUNPATH"
for prog in "$prefix"/bin/*; do
  grep -q 'RUNPATH.*\$ORIGIN' <<<"$(readelf -d "$prog")" || fail "$prog: no \$ORIGIN RUNPATH"
done
env -u LD_LIBRARY_PATH "$prefix/bin/most_frequent_word" --help >/dev/null \
  || fail "most_frequent_word does not run without LD_LIBRARY_PATH"

# The n-th C block of the README's "A job in a few lines of C", and the
# README's command line (in backticks) that starts with $1.
readme_c() {
  awk -v n="$1" '/^## / { sec = ($0 == "## A job in a few lines of C") }
                 sec && /^```c$/ { on = (++k == n); next }
                 /^```/ { on = 0 }
                 on' "$src/README.md"
}
readme_line() { grep -o "\`$1[^\`]*\`" "$src/README.md" | head -1 | tr -d '`'; }

step "pkg-config: the README's samples, built with its lines"
lib_line=$(readme_line 'cc -shared -fPIC')
job_line=$(readme_line 'cc $(pkg-config --cflags lumen) -o job')
[ -n "$lib_line" ] && [ -n "$job_line" ] || fail "README: a build line is missing"
mkdir "$tmp/pkg"
readme_c 1 >"$tmp/pkg/job.c"
readme_c 2 >"$tmp/pkg/mine.c"
echo "$lib_line"
echo "$job_line -Wl,-rpath,\$(pkg-config --variable=libdir lumen)"
(cd "$tmp/pkg" && eval "$lib_line" && eval "$job_line -Wl,-rpath,\$(pkg-config --variable=libdir lumen)")
# Where an installed `lumen start` has its workers look.
cp "$tmp/pkg/libmine.so" "$prefix/lib/lumen/"

step "CMake: find_package(lumen CONFIG) with -DCMAKE_PREFIX_PATH only"
"$cmake" -S "$src/tests/support/ext_project" -B "$tmp/ext" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$cc_bin" -DCMAKE_C_FLAGS="${san[*]}" >/dev/null
"$cmake" --build "$tmp/ext" >/dev/null
for prog in "$tmp/pkg/job" "$tmp/ext/ext_client"; do
  libs=$(ldd "$prog") # not piped into grep -q: pipefail would see ldd's SIGPIPE
  grep -q "liblumen.so.0 => $prefix/" <<<"$libs" || fail "$prog: liblumen not from $prefix: $libs"
done

step "a cluster of the installed binaries runs the tasks"
port=$("$free_port")
redis_port=$("$free_port")
while [ "$redis_port" = "$port" ]; do redis_port=$("$free_port"); done
unset LUMEN_TOKEN LUMEN_SCHEDULER_ADDR LUMEN_TLS_CA LUMEN_TLS_CERT LUMEN_TLS_KEY
export LUMEN_ADDRESS=127.0.0.1:$port LUMEN_RUN_DIR=$run_dir
# Two slots: ext.shout waits in one for mine.upper in the other.
"$prefix/bin/lumen" start --head --port "$port" --redis-port "$redis_port" --dashboard-port 0 \
  --workers 1 --slots 2 --run-dir "$run_dir"
# Its services are the ones next to it ("PID START_TICKS" per pid file).
for pidfile in "$run_dir"/pids/{scheduler,objstore,worker}-*.pid; do
  read -r pid _ <"$pidfile"
  exe=$(readlink "/proc/$pid/exe")
  [ "${exe#"$prefix"/bin/lumen-}" != "$exe" ] || fail "${pidfile##*/}: runs $exe, not from $prefix/bin"
done

got=$(env -u LD_LIBRARY_PATH "$tmp/pkg/job")
[ "$got" = "the 3" ] || fail "README job: '$got', wanted 'the 3'"
echo "README job: $got"
got=$(env -u LD_LIBRARY_PATH "$tmp/ext/ext_client" "$tmp/ext/libextfn.so" "from inside a task")
[ "$got" = "FROM INSIDE A TASK" ] || fail "ext.shout: '$got'"
echo "ext.shout: $got"

"$prefix/bin/lumen" stop --run-dir "$run_dir"
echo "PASS"

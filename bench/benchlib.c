/*
 * benchlib.c - the benchmarks' function library (build/lib/lumen/liblumenbench.so),
 * loaded by every worker of the benchmark cluster from its library path.
 *
 * bench.Counter is the actor of Ray's microbenchmark: its method "small"
 * returns a few bytes (Ray's `small_value`), so a call's cost is the
 * runtime's, not the method's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lumen/remote.h>

static int counter_new(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, void **state) {
    (void)args;
    (void)nargs;
    uint64_t *calls = calloc(1, sizeof *calls);
    if (calls == NULL) return lumen_task_fail(ctx, "bench.Counter: out of memory");
    *state = calls;
    return 0;
}

/* Returns "ok": a few bytes, whatever the arguments. */
static int counter_small(lumen_task_ctx *ctx, void *state, const lumen_bytes *args, size_t nargs,
                         lumen_bytes *out) {
    (void)args;
    (void)nargs;
    ++*(uint64_t *)state;
    out->data = malloc(2);
    if (out->data == NULL) return lumen_task_fail(ctx, "bench.Counter.small: out of memory");
    memcpy(out->data, "ok", 2);
    out->len = 2;
    return 0;
}

static void counter_free(void *state) { free(state); }

LUMEN_ACTOR("bench.Counter", counter_new, counter_free, LUMEN_METHOD("small", counter_small))

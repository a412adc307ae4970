/*
 * benchlib.c - the benchmarks' function library (build/lib/lumen/liblumenbench.so),
 * loaded by every worker of the benchmark cluster from its library path.
 *
 * bench.Counter is the actor of Ray's microbenchmark: its method "small"
 * returns a few bytes (Ray's `small_value`), so a call's cost is the
 * runtime's, not the method's.
 *
 * bench.started_at measures recovery: on its first attempt it sleeps the
 * milliseconds it is given (its worker is killed meanwhile); every attempt
 * returns when it started ("<wall-clock µs> <attempt>").
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

LUMEN_ACTOR("bench.Counter", counter_new, counter_free, LUMEN_METHOD("small", counter_small));

static int started_at(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    unsigned long long us = (unsigned long long)now.tv_sec * 1000000ull + (unsigned long long)now.tv_nsec / 1000;
    if (nargs != 1) return lumen_task_fail(ctx, "bench.started_at wants a number of milliseconds");
    char ms_text[32] = "";
    memcpy(ms_text, args[0].data, args[0].len < sizeof ms_text - 1 ? args[0].len : sizeof ms_text - 1);
    long ms = strtol(ms_text, NULL, 10);
    if (lumen_task_attempt(ctx) == 0 && ms > 0) {
        struct timespec nap = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&nap, &nap) != 0) {
        }
    }
    out->data = malloc(48);
    if (out->data == NULL) return lumen_task_fail(ctx, "bench.started_at: out of memory");
    out->len = (size_t)snprintf(out->data, 48, "%llu %u", us, lumen_task_attempt(ctx));
    return 0;
}
LUMEN_REMOTE("bench.started_at", started_at);

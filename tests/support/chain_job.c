/*
 * chain_job - a job whose exact answer is known, for the chaos test: a
 * chain of --length dependent tasks and an actor that accumulates state.
 *
 *     v0 = put("0");  v_i = test.add(v_{i-1}, i)   (i = 1..N): v_N = N(N+1)/2
 *     a Counter actor gets add(v_i) for every i, in order:
 *         its total = sum of i(i+1)/2 = N(N+1)(N+2)/6
 *
 * Every task takes the previous one's result (a ref), so they run one after
 * the other, each placed when the one before it is done; every actor call
 * takes a task's result too (resolved on the actor's worker). The last line
 * printed is "chain N: V_N TOTAL" (e.g. "chain 200: 20100 1353400").
 *
 * The Counter has no restarts: its adds accumulate, and a restarted Counter
 * would start again from 0. When it dies (ACTOR_DIED) or the put is lost
 * with its store (OBJECT_LOST), the job runs again in a new job (at most 3
 * attempts), saying "running the job again" on stderr, as most_frequent_word
 * does. Any other error fails the job (exit 1).
 *
 *     chain_job --address HOST:PORT [--length N] [--timeout SECONDS]
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lumen/lumen.h>

#define ATTEMPTS 3

typedef struct result {
    long long value, total;
    lumen_code failure; /* of the first call that failed; LUMEN_OK when none */
    char why[512];
} result;

static void failed(result *res, const char *what, lumen_status st) {
    if (res->failure != LUMEN_OK) return;
    res->failure = st.code;
    snprintf(res->why, sizeof res->why, "%s: %s: %s", what, lumen_code_name(st.code), st.msg);
}

static long long get_number(lumen_client *c, lumen_ref ref, int64_t timeout_ms, const char *what, result *res) {
    lumen_bytes b = {0};
    lumen_status st = lumen_get(c, ref, timeout_ms, &b);
    long long v = -1;
    if (st.code == LUMEN_OK) v = strtoll(b.data, NULL, 10);
    else failed(res, what, st);
    lumen_bytes_free(&b);
    return v;
}

/* One attempt in a job of its own. */
static void attempt(const char *address, long long n, int64_t timeout_ms, result *res) {
    *res = (result){.failure = LUMEN_OK};
    lumen_client *c = NULL;
    lumen_status st = lumen_connect(address, &(lumen_connect_opts){.connect_timeout_ms = timeout_ms}, &c);
    if (st.code != LUMEN_OK) {
        failed(res, "connect", st);
        return;
    }
    lumen_actor counter;
    lumen_ref prev, last_add = {{0}};
    st = lumen_actor_new(c, "test.Counter", NULL, 0, &(lumen_actor_opts){0}, &counter);
    if (st.code == LUMEN_OK) st = lumen_put(c, "0", 1, &prev);
    for (long long i = 1; i <= n && st.code == LUMEN_OK; i++) {
        char num[24];
        int len = snprintf(num, sizeof num, "%lld", i);
        lumen_arg args[2] = {lumen_arg_ref(prev), lumen_arg_bytes(num, (size_t)len)};
        st = lumen_call(c, "test.add", args, 2, NULL, &prev);
        lumen_arg value = lumen_arg_ref(prev);
        if (st.code == LUMEN_OK) st = lumen_actor_call(c, counter, "add", &value, 1, &last_add);
    }
    if (st.code != LUMEN_OK) failed(res, "submit", st);
    if (res->failure == LUMEN_OK) res->value = get_number(c, prev, timeout_ms, "the chain's last task", res);
    if (res->failure == LUMEN_OK) res->total = get_number(c, last_add, timeout_ms, "the counter's last add", res);
    lumen_close(c);
}

int main(int argc, char **argv) {
    const char *address = NULL;
    long long n = 200, timeout_s = 60;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--address") == 0) address = argv[i + 1];
        else if (strcmp(argv[i], "--length") == 0) n = strtoll(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--timeout") == 0) timeout_s = strtoll(argv[i + 1], NULL, 10);
        else break;
    }
    if (argc % 2 == 0 || n < 1 || timeout_s < 1) {
        fprintf(stderr, "usage: chain_job [--address HOST:PORT] [--length N >= 1] [--timeout SECONDS]\n");
        return 2;
    }
    result res;
    for (int a = 1;; a++) {
        attempt(address, n, timeout_s * 1000, &res);
        bool lost = res.failure == LUMEN_ACTOR_DIED || res.failure == LUMEN_OBJECT_LOST;
        if (res.failure == LUMEN_OK || !lost || a == ATTEMPTS) break;
        fprintf(stderr, "chain_job: %s; running the job again (attempt %d of %d)\n", res.why, a + 1, ATTEMPTS);
    }
    if (res.failure != LUMEN_OK) {
        fprintf(stderr, "chain_job: %s\n", res.why);
        return 1;
    }
    printf("chain %lld: %lld %lld\n", n, res.value, res.total);
    return fflush(stdout) == 0 ? 0 : 1;
}

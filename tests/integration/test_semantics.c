/*
 * The conformance suite: what the C API promises (docs/semantics.md, each
 * guarantee next to Ray's), checked end to end against a real cluster (a
 * real redis-server, lumen-scheduler, lumen-objstore and lumen-workers from
 * build/bin on free loopback ports, the suite's function library
 * liblumentest.so on the workers' library path).
 *
 * A client that dies without lumen_close is a second process: this very
 * program run as `it_semantics --dying-client ADDRESS SLEEP_MS detached|attached`,
 * which connects, puts, submits, prints its job and put ids, and waits to
 * be SIGKILLed. The scheduler's job grace is short here (GRACE_MS) so those
 * tests take seconds.
 */
#include <hiredis.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lumen/lumen.h>

#include "client_suite.h"
#include "id.h"
#include "objclient.h"
#include "redis_server.h"
#include "rpc.h"
#include "test_util.h"

static lm_test_cluster *cluster;
static lumen_client *client;
static redisContext *redis_ctx;
static lm_rpc_client *rpc; /* straight to the object store: is an object still there? */

#define GRACE_MS 1500
#define GRACE_MS_STR "1500"
/* Long enough for anything a healthy cluster does, short enough that a hang
 * fails the test instead of ctest's timeout. */
#define TIMEOUT LM_TEST_TIMEOUT(20000)

static int suite_init(void) {
    static const char *const sched_flags[] = {"--job-grace-ms", GRACE_MS_STR, NULL}; /* kept: restarts reuse it */
    lm_test_cluster_opts opts = {.workers = 2, .slots = 2, .scheduler_flags = sched_flags};
    if (lm_test_client_suite_start(&opts, &cluster, &client) != 0) return 1;
    redis_ctx = lm_test_redis_connect(lm_test_cluster_redis(cluster));
    if (redis_ctx == NULL || redis_ctx->err) return 1;
    return LM_IS_OK(lm_rpc_client_new(&(lm_rpc_client_opts){0}, &rpc)) ? 0 : 1;
}

static int suite_cleanup(void) {
    if (redis_ctx != NULL) redisFree(redis_ctx);
    lm_rpc_client_free(rpc);
    return lm_test_client_suite_stop(cluster, client);
}

/* ------------------------------------------------------------ helpers */

static lumen_status call1(lumen_client *c, const char *fn, const char *arg, const lumen_call_opts *opts,
                          lumen_ref *out) {
    lumen_arg a = lumen_arg_bytes(arg, strlen(arg));
    return lumen_call(c, fn, &a, 1, opts, out);
}

/* Calls method with one inline string argument (NULL: none). */
static lumen_status acall(lumen_actor a, const char *method, const char *arg, lumen_ref *out) {
    lumen_arg x = lumen_arg_bytes(arg, arg ? strlen(arg) : 0);
    return lumen_actor_call(client, a, method, arg ? &x : NULL, arg ? 1 : 0, out);
}

/* lumen_get promises a NUL byte after the data, not counted in len. */
static bool nul_terminated(const lumen_bytes *b) { return b->data != NULL && ((const char *)b->data)[b->len] == '\0'; }

/* The value of ref as a C string (or the error's message); *st gets the status. */
static char *get_str(lumen_client *c, lumen_ref ref, int64_t timeout_ms, lumen_status *st) {
    lumen_bytes b = {0};
    *st = lumen_get(c, ref, timeout_ms, &b);
    if (!LM_IS_OK(*st)) return strdup(st->msg);
    CU_ASSERT_TRUE(nul_terminated(&b));
    char *s = strndup(b.data, b.len);
    lumen_bytes_free(&b);
    return s;
}

/* Asserts ref's value is want. */
#define EXPECT_VALUE(c, ref, want)                                                                \
    do {                                                                                          \
        lumen_status st_;                                                                         \
        char *s_ = get_str((c), (ref), TIMEOUT, &st_);                                            \
        LM_ASSERT_OK(st_);                                                                        \
        if (strcmp(s_, (want)) != 0)                                                              \
            fprintf(stderr, "\n%s:%d: got \"%s\", wanted \"%s\"\n", __FILE__, __LINE__, s_, (want));    \
        CU_ASSERT_STRING_EQUAL(s_, (want));                                                       \
        free(s_);                                                                                 \
    } while (0)

/* Asserts ref fails with code and a message containing part. */
#define EXPECT_ERROR(c, ref, want_code, part)                                                          \
    do {                                                                                          \
        lumen_status st_;                                                                         \
        char *s_ = get_str((c), (ref), TIMEOUT, &st_);                                            \
        if (st_.code != (want_code) || strstr(s_, (part)) == NULL)                                     \
            fprintf(stderr, "\n%s:%d: got %s \"%s\", wanted %s with \"%s\"\n", __FILE__, __LINE__, \
                    lumen_code_name(st_.code), s_, lumen_code_name(want_code), (part));                \
        CU_ASSERT_EQUAL(st_.code, (want_code));                                                        \
        CU_ASSERT_PTR_NOT_NULL(strstr(s_, (part)));                                               \
        free(s_);                                                                                 \
    } while (0)

/* Whether the object store still holds the object. */
static bool store_holds(lm_id id) {
    void *data = NULL;
    size_t len = 0;
    lumen_status st = lm_objstore_get(rpc, lm_test_cluster_objstore(cluster), id, false, 5000, &data, &len);
    free(data);
    if (!LM_IS_OK(st) && st.code != LUMEN_NOT_FOUND) fprintf(stderr, "\nstore get: %s\n", st.msg);
    return LM_IS_OK(st);
}

/* HGET lumen:job:<job> state into out ("" when none). */
static void job_state(const char *job, char *out, size_t cap) {
    redisReply *rep = redisCommand(redis_ctx, "HGET lumen:job:%s state", job);
    snprintf(out, cap, "%s", rep && rep->type == REDIS_REPLY_STRING ? rep->str : "");
    freeReplyObject(rep);
}

static long long redis_exists(const char *key_fmt, const char *arg) {
    redisReply *rep = redisCommand(redis_ctx, key_fmt, arg);
    long long v = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    freeReplyObject(rep);
    return v;
}

/* Waits up to timeout_ms for the job's state to be `want`; the ms it took, or -1. */
static int64_t wait_job_state(const char *job, const char *want, int64_t timeout_ms) {
    uint64_t t0 = lm_test_now_us();
    char state[32];
    for (;;) {
        job_state(job, state, sizeof state);
        int64_t ms = (int64_t)((lm_test_now_us() - t0) / 1000);
        if (strcmp(state, want) == 0) return ms;
        if (ms > timeout_ms) {
            fprintf(stderr, "\njob %s is %s after %lld ms, wanted %s\n", job, state, (long long)ms, want);
            return -1;
        }
        lm_test_sleep_ms(20);
    }
}

/* Waits up to timeout_ms for the store to drop the object. */
static bool wait_store_drops(lm_id id, int64_t timeout_ms) {
    for (int64_t waited = 0; waited <= timeout_ms; waited += 50) {
        if (!store_holds(id)) return true;
        lm_test_sleep_ms(50);
    }
    return false;
}

/* Tasks that wait inside (for a get, a nested task) are freed once read: a
 * scheduler restart (the last test) would run every kept one again, each
 * holding a slot while it waits. */
static void free_ref(lumen_ref r) { LM_ASSERT_OK(lumen_free(client, &r, 1)); }

/* ------------------------------------------------ 1. puts across clients */

/* A put passed by its id inside a value (not as a ref argument): the task
 * reads it through its own client in the job. */
static void test_put_got_by_id_in_a_task(void) {
    lumen_ref put, r;
    const char *text = "a put the driver made";
    LM_ASSERT_OK(lumen_put(client, text, strlen(text), &put));
    char hex[33];
    lumen_ref_hex(put, hex);
    uint64_t t0 = lm_test_now_us();
    LM_ASSERT_OK(call1(client, "test.get_hex", hex, NULL, &r));
    EXPECT_VALUE(client, r, text);
    /* Read at once, not after the task's own get timed out (20 s). */
    CU_ASSERT_TRUE(lm_test_now_us() - t0 < (uint64_t)LM_TEST_TIMEOUT(5000) * 1000);
    free_ref(r);

    /* A big put (held by the store, not inline) too. */
    size_t big = 3u << 20;
    char *data = malloc(big);
    for (size_t i = 0; i < big; i++) data[i] = (char)('a' + i % 26);
    LM_ASSERT_OK(lumen_put(client, data, big, &put));
    lumen_ref_hex(put, hex);
    LM_ASSERT_OK(call1(client, "test.get_hex", hex, NULL, &r));
    lumen_bytes b = {0};
    LM_ASSERT_OK(lumen_get(client, r, TIMEOUT, &b));
    CU_ASSERT_EQUAL(b.len, big);
    CU_ASSERT_TRUE(b.len == big && memcmp(b.data, data, big) == 0);
    lumen_bytes_free(&b);
    free_ref(r);
    free(data);
}

/* A put made inside a task and returned by its id: the driver reads it. */
static void test_put_in_a_task_got_by_driver(void) {
    lumen_ref r;
    LM_ASSERT_OK(call1(client, "test.put_hex", "made inside a task", NULL, &r));
    lumen_status st;
    char *hex = get_str(client, r, TIMEOUT, &st);
    LM_ASSERT_OK(st);
    free_ref(r);
    lm_id id;
    CU_ASSERT_FATAL(lm_id_from_hex(hex, &id));
    lumen_ref inner;
    memcpy(inner.id, id.bytes, sizeof inner.id);
    uint64_t t0 = lm_test_now_us();
    EXPECT_VALUE(client, inner, "made inside a task");
    CU_ASSERT_TRUE(lm_test_now_us() - t0 < (uint64_t)LM_TEST_TIMEOUT(5000) * 1000);
    /* And as a ref argument of another task. */
    lumen_arg a = lumen_arg_ref(inner);
    LM_ASSERT_OK(lumen_call(client, "test.echo", &a, 1, NULL, &r));
    EXPECT_VALUE(client, r, "made inside a task");
    free(hex);
}

/* ------------------------------------------- 2. wait, then get at once */

/* Every ref lumen_wait marks ready reads with lumen_get(timeout 0): small
 * and big task results, puts and actor call results, as they finish. The
 * first calls to actor b go in one batch that ends with a slow call: the
 * scheduler hears of the quick ones before the client's batch comes back. */
static void test_wait_then_get_at_once(void) {
    enum { N = 64, SLOW_BATCH = 5 };
    lumen_actor a, b;
    LM_ASSERT_OK(lumen_actor_new(client, "test.Counter", NULL, 0, NULL, &a));
    LM_ASSERT_OK(lumen_actor_new(client, "test.Counter", NULL, 0, NULL, &b));
    lumen_ref refs[N];
    lumen_ref first;
    LM_ASSERT_OK(acall(b, "sleep", "100", &first)); /* in flight alone: the next ones queue behind it */
    for (int i = 0; i < SLOW_BATCH - 1; i++) LM_ASSERT_OK(acall(b, "add", "1", &refs[i]));
    LM_ASSERT_OK(acall(b, "sleep", "600", &refs[SLOW_BATCH - 1]));
    for (int i = SLOW_BATCH; i < N; i++) {
        char arg[16];
        snprintf(arg, sizeof arg, "%d", (i % 8) * 15);
        switch (i % 4) {
        case 0: LM_ASSERT_OK(call1(client, "test.sleep", arg, NULL, &refs[i])); break;
        case 1: {
            lumen_arg args[2] = {lumen_arg_bytes("xy", 2), lumen_arg_bytes("70000", 5)}; /* 140 KB: in the store */
            LM_ASSERT_OK(lumen_call(client, "test.repeat", args, 2, NULL, &refs[i]));
            break;
        }
        case 2: LM_ASSERT_OK(acall(a, "add", "1", &refs[i])); break;
        default: LM_ASSERT_OK(lumen_put(client, arg, strlen(arg), &refs[i])); break;
        }
    }
    bool done[N] = {false};
    size_t left = N, not_readable = 0;
    uint64_t t0 = lm_test_now_us();
    while (left > 0 && lm_test_now_us() - t0 < (uint64_t)TIMEOUT * 1000) {
        lumen_ref pending[N];
        int index[N], ready[N];
        size_t n = 0, num_done = 0;
        for (int i = 0; i < N; i++)
            if (!done[i]) pending[n] = refs[i], index[n++] = i;
        LM_ASSERT_OK(lumen_wait(client, pending, n, 1, TIMEOUT, ready, &num_done));
        CU_ASSERT_TRUE(num_done <= 1);
        for (size_t k = 0; k < n; k++) {
            if (!ready[k]) continue;
            lumen_bytes b = {0};
            lumen_status st = lumen_get(client, pending[k], 0, &b);
            if (!LM_IS_OK(st)) {
                not_readable++;
                fprintf(stderr, "\nref %d marked ready: get(timeout 0) -> %s: %s\n", index[k], lumen_code_name(st.code),
                        st.msg);
            }
            lumen_bytes_free(&b);
            done[index[k]] = true;
            left--;
        }
    }
    CU_ASSERT_EQUAL(left, 0);
    CU_ASSERT_EQUAL(not_readable, 0);
    lumen_actor_kill(client, a);
    lumen_actor_kill(client, b);
}

/* ------------------------------------------- 3. a client's death, detached */

/* The child: connects, puts 3 x 4 MiB, submits test.sleep(sleep_ms),
 * prints "<job> <first put's id>" and waits for its SIGKILL. */
static int dying_client(const char *addr, bool detached, const char *sleep_ms) {
    lumen_client *c = NULL;
    lumen_connect_opts o = {.detached = detached};
    lumen_status st = lumen_connect(addr, &o, &c);
    if (!LM_IS_OK(st)) {
        fprintf(stderr, "dying client: connect: %s\n", st.msg);
        return 1;
    }
    size_t size = 4u << 20;
    char *data = malloc(size);
    memset(data, 'd', size);
    lumen_ref puts[3], r;
    for (int i = 0; i < 3 && LM_IS_OK(st); i++) st = lumen_put(c, data, size, &puts[i]);
    free(data);
    if (LM_IS_OK(st)) st = call1(c, "test.sleep", sleep_ms, NULL, &r);
    if (!LM_IS_OK(st)) {
        fprintf(stderr, "dying client: %s\n", st.msg);
        return 1;
    }
    char hex[33];
    printf("%s %s\n", lumen_job_id(c), lumen_ref_hex(puts[0], hex));
    fflush(stdout);
    for (;;) pause();
}

/* Starts a dying client; its job and first put's id. */
static pid_t start_dying_client(bool detached, const char *sleep_ms, const char *dir, char job[33], lm_id *put) {
    char log_path[600];
    snprintf(log_path, sizeof log_path, "%s/dying-client.log", dir);
    char *argv[] = {(char *)"/proc/self/exe", (char *)"--dying-client", (char *)lm_test_cluster_scheduler(cluster),
                    (char *)sleep_ms, detached ? (char *)"detached" : (char *)"attached", NULL};
    pid_t pid = lm_test_spawn(argv, log_path);
    CU_ASSERT_FATAL(pid > 0);
    char put_hex[64] = "";
    job[0] = '\0';
    for (int waited = 0; waited < TIMEOUT && job[0] == '\0'; waited += 50) {
        lm_test_sleep_ms(50);
        FILE *f = fopen(log_path, "r");
        if (f == NULL) continue;
        char line[256];
        while (fgets(line, sizeof line, f) != NULL)
            if (sscanf(line, "%32[0-9a-f] %32[0-9a-f]", job, put_hex) == 2 && strlen(job) == 32) break;
            else job[0] = '\0';
        fclose(f);
    }
    CU_ASSERT_FATAL(strlen(job) == 32 && lm_id_from_hex(put_hex, put));
    return pid;
}

/* A client SIGKILLed without lumen_close: its job ends once the grace has
 * passed, its objects leave the store and Redis, its running task stops. */
static void test_client_death_ends_its_job(void) {
    char *dir = lm_test_tmpdir("dying");
    char job[33];
    lm_id put;
    pid_t pid = start_dying_client(false, "20000", dir, job, &put);
    char state[32];
    job_state(job, state, sizeof state);
    CU_ASSERT_STRING_EQUAL(state, "RUNNING");
    CU_ASSERT_TRUE(store_holds(put));
    lm_test_stop(pid, SIGKILL, 1000);
    int64_t ms = wait_job_state(job, "FINISHED", GRACE_MS + LM_TEST_TIMEOUT(8000));
    fprintf(stderr, "\n  (job ended %lld ms after its client was killed; grace %d ms)\n", (long long)ms, GRACE_MS);
    CU_ASSERT_TRUE(ms >= GRACE_MS - 500); /* not before the grace: a restarting scheduler's client comes back */
    CU_ASSERT_TRUE(wait_store_drops(put, LM_TEST_TIMEOUT(5000)));
    char hex[33];
    lm_id_to_hex(put, hex);
    for (int waited = 0; waited < 5000 && redis_exists("EXISTS lumen:obj:%s", hex) != 0; waited += 20)
        lm_test_sleep_ms(20);
    CU_ASSERT_EQUAL(redis_exists("EXISTS lumen:obj:%s", hex), 0);
    CU_ASSERT_EQUAL(redis_exists("SISMEMBER lumen:jobs:running %s", job), 0);
    lm_test_rmtree(dir);
    free(dir);
}

/* A detached job outlives its client (past the grace); another client
 * works in it; `lumen job stop` ends it. */
static void test_detached_job_outlives_its_client(void) {
    char *dir = lm_test_tmpdir("detached");
    char job[33];
    lm_id put;
    pid_t pid = start_dying_client(true, "20000", dir, job, &put);
    lm_test_stop(pid, SIGKILL, 1000);
    lm_test_sleep_ms(GRACE_MS + 1000);
    char state[32];
    job_state(job, state, sizeof state);
    CU_ASSERT_STRING_EQUAL(state, "RUNNING");
    CU_ASSERT_TRUE(store_holds(put));

    /* Another client in the job reads the dead client's put. */
    lumen_client *c = NULL;
    lumen_connect_opts o = {.job = job};
    LM_ASSERT_OK(lumen_connect(lm_test_cluster_scheduler(cluster), &o, &c));
    CU_ASSERT_STRING_EQUAL(lumen_job_id(c), job);
    lumen_ref ref;
    memcpy(ref.id, put.bytes, sizeof ref.id);
    lumen_bytes b = {0};
    LM_ASSERT_OK(lumen_get(c, ref, TIMEOUT, &b));
    CU_ASSERT_EQUAL(b.len, 4u << 20);
    lumen_bytes_free(&b);
    lumen_close(c); /* a client that joined a job leaves it running */
    job_state(job, state, sizeof state);
    CU_ASSERT_STRING_EQUAL(state, "RUNNING");

    char out_path[700], output[4096];
    snprintf(out_path, sizeof out_path, "%s/job-stop.out", dir);
    CU_ASSERT_EQUAL(lm_test_lumen(out_path, output, sizeof output, "job", "stop", job, "--address",
                                  lm_test_cluster_scheduler(cluster), NULL),
                    0);
    CU_ASSERT_TRUE(wait_job_state(job, "FINISHED", LM_TEST_TIMEOUT(5000)) >= 0);
    CU_ASSERT_TRUE(wait_store_drops(put, LM_TEST_TIMEOUT(5000)));
    lm_test_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------- 4. get after free */

/* lumen_get of a freed ref fails at once (NOT_FOUND, "freed"): a put, a
 * finished result, a result still being made, and within lumen_get_many. */
static void test_get_after_free_fails_at_once(void) {
    lumen_ref refs[3];
    LM_ASSERT_OK(lumen_put(client, "p", 1, &refs[0]));
    LM_ASSERT_OK(call1(client, "test.echo", "done", NULL, &refs[1]));
    EXPECT_VALUE(client, refs[1], "done");
    LM_ASSERT_OK(call1(client, "test.sleep", "1000", NULL, &refs[2]));
    LM_ASSERT_OK(lumen_free(client, refs, 3));
    for (int i = 0; i < 3; i++) {
        uint64_t t0 = lm_test_now_us();
        lumen_bytes b = {0};
        lumen_status st = lumen_get(client, refs[i], 10000, &b);
        uint64_t ms = (lm_test_now_us() - t0) / 1000;
        LM_ASSERT_CODE(st, LUMEN_NOT_FOUND);
        CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "freed"));
        CU_ASSERT_TRUE(ms < 1000);
        CU_ASSERT_PTR_NULL(b.data);
    }
    lumen_ref live;
    LM_ASSERT_OK(lumen_put(client, "q", 1, &live));
    lumen_ref both[2] = {live, refs[0]};
    lumen_bytes out[2];
    uint64_t t0 = lm_test_now_us();
    lumen_status st = lumen_get_many(client, both, 2, 10000, out);
    LM_ASSERT_CODE(st, LUMEN_NOT_FOUND);
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "ref 1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "freed"));
    CU_ASSERT_TRUE(lm_test_now_us() - t0 < 1000000);
    CU_ASSERT_PTR_NULL(out[0].data); /* nothing left in out[] on failure */
}

/* ------------------------------------------------- 5. lumen_wait's contract */

static void test_wait_contract(void) {
    enum { N = 10 };
    lumen_ref refs[N];
    for (int i = 0; i < N; i++) LM_ASSERT_OK(lumen_put(client, "w", 1, &refs[i]));
    size_t num_done = 99;
    LM_ASSERT_OK(lumen_wait(client, refs, N, N, TIMEOUT, NULL, &num_done)); /* ready may be NULL */
    CU_ASSERT_EQUAL(num_done, N);
    LM_ASSERT_OK(lumen_wait(client, refs, N, 1, TIMEOUT, NULL, NULL));
    int ready[N];
    LM_ASSERT_CODE(lumen_wait(client, refs, N, N + 1, TIMEOUT, ready, &num_done), LUMEN_INVALID_ARGUMENT);
    /* All ready, 3 asked: exactly the first 3 are marked. */
    LM_ASSERT_OK(lumen_wait(client, refs, N, 3, TIMEOUT, ready, &num_done));
    CU_ASSERT_EQUAL(num_done, 3);
    for (int i = 0; i < N; i++) CU_ASSERT_EQUAL(ready[i], i < 3);
    /* Task results too (answered by the scheduler, not known here). */
    for (int i = 0; i < N; i++) LM_ASSERT_OK(call1(client, "test.echo", "t", NULL, &refs[i]));
    LM_ASSERT_OK(lumen_wait(client, refs, N, N, TIMEOUT, NULL, &num_done));
    CU_ASSERT_EQUAL(num_done, N);
    LM_ASSERT_OK(lumen_wait(client, refs, N, 4, TIMEOUT, ready, &num_done));
    size_t marked = 0;
    for (int i = 0; i < N; i++) marked += (size_t)ready[i];
    CU_ASSERT_EQUAL(marked, 4);
    CU_ASSERT_EQUAL(num_done, 4);
    LM_ASSERT_OK(lumen_wait(client, refs, 0, 0, TIMEOUT, NULL, &num_done)); /* nothing to wait for */
    CU_ASSERT_EQUAL(num_done, 0);
}

/* A wait whose refs are not all ready by its timeout returns then, OK, with fewer. */
static void test_wait_timeout(void) {
    lumen_ref refs[4];
    LM_ASSERT_OK(call1(client, "test.sleep", "2000", NULL, &refs[0]));
    LM_ASSERT_OK(call1(client, "test.sleep", "2000", NULL, &refs[1]));
    LM_ASSERT_OK(lumen_put(client, "a", 1, &refs[2]));
    LM_ASSERT_OK(lumen_put(client, "b", 1, &refs[3]));
    int ready[4];
    size_t num_done = 0;
    uint64_t t0 = lm_test_now_us();
    LM_ASSERT_OK(lumen_wait(client, refs, 4, 4, 300, ready, &num_done));
    uint64_t ms = (lm_test_now_us() - t0) / 1000;
    CU_ASSERT_TRUE(ms >= 290 && ms < 1900);
    CU_ASSERT_EQUAL(num_done, 2);
    CU_ASSERT_TRUE(!ready[0] && !ready[1] && ready[2] && ready[3]);
    /* A get of a ref not ready by its timeout: DEADLINE_EXCEEDED, after it. */
    lumen_bytes b = {0};
    t0 = lm_test_now_us();
    LM_ASSERT_CODE(lumen_get(client, refs[0], 200, &b), LUMEN_DEADLINE_EXCEEDED);
    ms = (lm_test_now_us() - t0) / 1000;
    CU_ASSERT_TRUE(ms >= 190 && ms < 1500);
    LM_ASSERT_OK(lumen_free(client, refs, 2));
}

/* ------------------------------------------ 6. actor calls across a death */

static bool actor_pid(lumen_actor a, long *pid) {
    lumen_ref r;
    lumen_status st = acall(a, "pid", NULL, &r);
    char *s = LM_IS_OK(st) ? get_str(client, r, TIMEOUT, &st) : strdup(st.msg);
    bool ok = LM_IS_OK(st) && sscanf(s, "%ld", pid) == 1;
    if (!ok) fprintf(stderr, "\npid() -> %s\n", s);
    free(s);
    return ok;
}

/* The actor's process SIGKILLed while a call runs: with max_task_retries
 * the call runs again on the restarted actor; without, it is ACTOR_DIED. */
static void test_actor_killed_mid_call(void) {
    for (int retries = 1; retries >= 0; retries--) {
        lumen_actor a;
        lumen_actor_opts o = {.max_restarts = 1, .max_task_retries = (uint32_t)retries};
        LM_ASSERT_OK(lumen_actor_new(client, "test.Counter", NULL, 0, &o, &a));
        long pid = 0, pid2 = 0;
        CU_ASSERT_FATAL(actor_pid(a, &pid));
        lumen_ref running, queued;
        LM_ASSERT_OK(acall(a, "sleep", "1500", &running));
        LM_ASSERT_OK(acall(a, "add", "1", &queued));
        lm_test_sleep_ms(300);
        CU_ASSERT_EQUAL_FATAL(kill((pid_t)pid, SIGKILL), 0);
        if (retries) EXPECT_VALUE(client, running, "slept");
        else EXPECT_ERROR(client, running, LUMEN_ACTOR_DIED, "");
        EXPECT_VALUE(client, queued, "1"); /* not run before the death: runs on the new incarnation */
        CU_ASSERT_TRUE(actor_pid(a, &pid2) && pid2 != pid);
        lumen_actor_kill(client, a);
    }
}

/* The actor's process crashes in a call: the same. */
static void test_actor_crashes_mid_call(void) {
    char *dir = lm_test_tmpdir("crash-once");
    for (int retries = 1; retries >= 0; retries--) {
        char marker[600];
        snprintf(marker, sizeof marker, "%s/crashed-%d", dir, retries);
        lumen_actor a;
        lumen_actor_opts o = {.max_restarts = 1, .max_task_retries = (uint32_t)retries};
        LM_ASSERT_OK(lumen_actor_new(client, "test.Counter", NULL, 0, &o, &a));
        lumen_ref r, after;
        LM_ASSERT_OK(acall(a, "crash_once", marker, &r));
        LM_ASSERT_OK(acall(a, "add", "2", &after));
        if (retries) EXPECT_VALUE(client, r, "survived");
        else EXPECT_ERROR(client, r, LUMEN_ACTOR_DIED, "signal");
        EXPECT_VALUE(client, after, "2");
        struct stat sb;
        CU_ASSERT_EQUAL(stat(marker, &sb), 0); /* it did crash once */
        lumen_actor_kill(client, a);
    }
    lm_test_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------ 7. task retries */

static void test_task_retries(void) {
    /* A crash is a system failure: retried within max_retries. */
    lumen_call_opts once = {.max_retries = 1};
    lumen_ref r;
    LM_ASSERT_OK(call1(client, "test.crash_first", "x", &once, &r));
    EXPECT_VALUE(client, r, "attempt 1: x");
    /* Crashing every time: it fails once the retries are used up. */
    LM_ASSERT_OK(call1(client, "test.crash", "x", &once, &r));
    lumen_status st;
    char *s = get_str(client, r, TIMEOUT, &st);
    CU_ASSERT_NOT_EQUAL(st.code, LUMEN_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "signal"));
    free(s);
    /* An error the function returns is final... */
    LM_ASSERT_OK(call1(client, "test.fail_first", "x", &once, &r));
    EXPECT_ERROR(client, r, LUMEN_TASK_FAILED, "failed on the first attempt");
    /* ...unless the caller asks for retries on errors. */
    lumen_call_opts on_error = {.max_retries = 1, .retry_on_error = 1};
    LM_ASSERT_OK(call1(client, "test.fail_first", "x", &on_error, &r));
    EXPECT_VALUE(client, r, "attempt 1: x");
}

/* ---------------------------------------------------- Ray's core tests */

/* lumen_get_many returns each ref's value at its index, whatever the order
 * they finish in. */
static void test_get_many_in_order(void) {
    enum { N = 40 };
    lumen_ref refs[N];
    for (int i = 0; i < N; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        if (i % 5 == 0) { /* later ones finish first */
            snprintf(num, sizeof num, "%d", (N - i) * 5);
            LM_ASSERT_OK(call1(client, "test.sleep", num, NULL, &refs[i]));
            continue;
        }
        if (i % 2) LM_ASSERT_OK(call1(client, "test.echo", num, NULL, &refs[i]));
        else LM_ASSERT_OK(lumen_put(client, num, strlen(num), &refs[i]));
    }
    lumen_bytes out[N];
    LM_ASSERT_OK(lumen_get_many(client, refs, N, TIMEOUT, out));
    for (int i = 0; i < N; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        const char *want = i % 5 == 0 ? "slept" : num;
        CU_ASSERT_TRUE(nul_terminated(&out[i]));
        CU_ASSERT_TRUE(out[i].len == strlen(want) && memcmp(out[i].data, want, out[i].len) == 0);
        lumen_bytes_free(&out[i]);
    }
}

/* Refs as arguments (puts, results, several in one call) and chains. */
static void test_refs_as_arguments_and_chains(void) {
    lumen_ref put, echoed, joined;
    LM_ASSERT_OK(lumen_put(client, "a", 1, &put));
    LM_ASSERT_OK(call1(client, "test.echo", "b", NULL, &echoed));
    lumen_arg args[4] = {lumen_arg_ref(put), lumen_arg_ref(echoed), lumen_arg_bytes("c", 1), lumen_arg_ref(put)};
    LM_ASSERT_OK(lumen_call(client, "test.concat", args, 4, NULL, &joined));
    EXPECT_VALUE(client, joined, "abca");
    /* A chain: each task takes the previous one's result, submitted before any ran. */
    lumen_ref prev;
    LM_ASSERT_OK(call1(client, "test.add", "0", NULL, &prev));
    for (int i = 1; i <= 30; i++) {
        char num[8];
        snprintf(num, sizeof num, "%d", i);
        lumen_arg a[2] = {lumen_arg_ref(prev), lumen_arg_bytes(num, strlen(num))};
        LM_ASSERT_OK(lumen_call(client, "test.add", a, 2, NULL, &prev));
    }
    EXPECT_VALUE(client, prev, "465");
    /* A ref whose value is a ref's id (a nested ref), resolved in a task. */
    char hex[33];
    lumen_ref_hex(joined, hex);
    lumen_ref holder, r;
    LM_ASSERT_OK(lumen_put(client, hex, 32, &holder));
    lumen_arg h = lumen_arg_ref(holder);
    LM_ASSERT_OK(lumen_call(client, "test.get_hex", &h, 1, NULL, &r));
    EXPECT_VALUE(client, r, "abca");
    free_ref(r);
}

/* 64 MiB: put, through a task, and back. */
static void test_large_values(void) {
    size_t size = 64u << 20;
    unsigned char *data = malloc(size);
    CU_ASSERT_FATAL(data != NULL);
    for (size_t i = 0; i < size; i++) data[i] = (unsigned char)(i * 7 + (i >> 20));
    lumen_ref put, echoed, counted;
    LM_ASSERT_OK(lumen_put(client, data, size, &put));
    lumen_arg a = lumen_arg_ref(put);
    LM_ASSERT_OK(lumen_call(client, "test.echo", &a, 1, NULL, &echoed));
    LM_ASSERT_OK(lumen_call(client, "test.size", &a, 1, NULL, &counted));
    EXPECT_VALUE(client, counted, "67108864");
    lumen_bytes b = {0};
    LM_ASSERT_OK(lumen_get(client, echoed, LM_TEST_TIMEOUT(30000), &b));
    CU_ASSERT_EQUAL(b.len, size);
    CU_ASSERT_TRUE(b.len == size && memcmp(b.data, data, size) == 0);
    CU_ASSERT_TRUE(nul_terminated(&b));
    lumen_bytes_free(&b);
    lumen_ref refs[2] = {put, echoed};
    LM_ASSERT_OK(lumen_free(client, refs, 2));
    free(data);
}

/* A failure reaches every task downstream, with the first error's words. */
static void test_failure_propagates(void) {
    lumen_ref failed, consumer, second;
    LM_ASSERT_OK(call1(client, "test.fail", "boom", NULL, &failed));
    lumen_arg a = lumen_arg_ref(failed);
    LM_ASSERT_OK(lumen_call(client, "test.echo", &a, 1, NULL, &consumer));
    lumen_arg b[2] = {lumen_arg_bytes("x", 1), lumen_arg_ref(consumer)};
    LM_ASSERT_OK(lumen_call(client, "test.concat", b, 2, NULL, &second));
    EXPECT_ERROR(client, failed, LUMEN_TASK_FAILED, "failed on purpose: boom");
    EXPECT_ERROR(client, consumer, LUMEN_TASK_FAILED, "failed on purpose: boom");
    EXPECT_ERROR(client, second, LUMEN_TASK_FAILED, "failed on purpose: boom");
    /* The cluster serves on. */
    LM_ASSERT_OK(call1(client, "test.echo", "after", NULL, &consumer));
    EXPECT_VALUE(client, consumer, "after");
}

static void test_unknown_function(void) {
    lumen_ref r, consumer;
    LM_ASSERT_OK(call1(client, "test.no_such_function", "x", NULL, &r)); /* an error of the ref, not of the call */
    lumen_arg a = lumen_arg_ref(r);
    LM_ASSERT_OK(lumen_call(client, "test.echo", &a, 1, NULL, &consumer));
    EXPECT_ERROR(client, r, LUMEN_NOT_FOUND, "test.no_such_function");
    EXPECT_ERROR(client, consumer, LUMEN_NOT_FOUND, "test.no_such_function");
}

/* One client's calls to one actor run in the order made. */
static void test_actor_call_order(void) {
    enum { N = 300 };
    lumen_actor a;
    LM_ASSERT_OK(lumen_actor_new(client, "test.Counter", NULL, 0, NULL, &a));
    lumen_ref refs[N];
    for (int i = 0; i < N; i++) LM_ASSERT_OK(acall(a, "add", "1", &refs[i]));
    lumen_bytes out[N];
    LM_ASSERT_OK(lumen_get_many(client, refs, N, TIMEOUT, out));
    int wrong = 0;
    for (int i = 0; i < N; i++) {
        wrong += strtol(out[i].data, NULL, 10) != i + 1; /* a C string: NUL-terminated */
        lumen_bytes_free(&out[i]);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    lumen_actor_kill(client, a);
}

static void test_named_actors(void) {
    char name[64];
    snprintf(name, sizeof name, "semantics-%ld", (long)getpid());
    lumen_actor a, dup, found;
    lumen_actor_opts o = {.name = name};
    lumen_arg start = lumen_arg_bytes("10", 2);
    LM_ASSERT_OK(lumen_actor_new(client, "test.Counter", &start, 1, &o, &a));
    LM_ASSERT_CODE(lumen_actor_new(client, "test.Counter", NULL, 0, &o, &dup), LUMEN_ALREADY_EXISTS);
    lumen_client *other = NULL;
    LM_ASSERT_OK(lumen_connect(lm_test_cluster_scheduler(cluster), NULL, &other));
    LM_ASSERT_OK(lumen_actor_get_named(other, name, TIMEOUT, &found));
    CU_ASSERT_EQUAL(memcmp(found.id, a.id, sizeof a.id), 0);
    lumen_ref r;
    lumen_arg five = lumen_arg_bytes("5", 1);
    LM_ASSERT_OK(lumen_actor_call(other, found, "add", &five, 1, &r));
    EXPECT_VALUE(other, r, "15");
    LM_ASSERT_CODE(lumen_actor_get_named(other, "semantics-nobody", 0, &found), LUMEN_NOT_FOUND);
    lumen_close(other);
    LM_ASSERT_OK(acall(a, "get", NULL, &r));
    EXPECT_VALUE(client, r, "15");
    LM_ASSERT_OK(lumen_actor_kill(client, a));
    /* Free again once it is dead. */
    lumen_actor again;
    int64_t waited = 0;
    lumen_status st;
    while ((st = lumen_actor_new(client, "test.Counter", NULL, 0, &o, &again)).code == LUMEN_ALREADY_EXISTS &&
           waited < 5000) {
        lm_test_sleep_ms(50);
        waited += 50;
    }
    LM_ASSERT_OK(st);
    lumen_actor_kill(client, again);
}

/* A task submits a task and waits for it. */
static void test_nested_tasks(void) {
    enum { N = 2 }; /* fewer than the slots: a task waiting in lumen_get holds its slot */
    lumen_ref refs[N];
    for (int i = 0; i < N; i++) {
        char num[8];
        snprintf(num, sizeof num, "%d", 40 + i);
        LM_ASSERT_OK(call1(client, "test.nested", num, NULL, &refs[i]));
    }
    EXPECT_VALUE(client, refs[0], "41");
    EXPECT_VALUE(client, refs[1], "42");
    LM_ASSERT_OK(lumen_free(client, refs, N));
}

static void test_job_id(void) {
    const char *id = lumen_job_id(client);
    CU_ASSERT_FATAL(id != NULL);
    CU_ASSERT_EQUAL(strlen(id), 32);
    CU_ASSERT_EQUAL(strspn(id, "0123456789abcdef"), 32);
    lumen_ref r;
    LM_ASSERT_OK(lumen_call(client, "test.job", NULL, 0, NULL, &r));
    EXPECT_VALUE(client, r, id); /* lumen_task_job in its tasks */
    lumen_client *other = NULL;
    LM_ASSERT_OK(lumen_connect(lm_test_cluster_scheduler(cluster), NULL, &other));
    CU_ASSERT_STRING_NOT_EQUAL(lumen_job_id(other), id);
    CU_ASSERT_TRUE(wait_job_state(lumen_job_id(other), "RUNNING", LM_TEST_TIMEOUT(5000)) >= 0); /* written behind */
    lumen_close(other);
}

/* Every buffer lumen_get hands out has a NUL byte after its len: inline and
 * stored task results, puts, actor call results small and big. */
static void test_nul_after_every_result(void) {
    size_t big = 200 * 1024; /* past the 100 KiB inline limit */
    char *data = malloc(big);
    memset(data, 'n', big);
    lumen_actor a;
    LM_ASSERT_OK(lumen_actor_new(client, "test.Counter", NULL, 0, NULL, &a));
    enum { N = 8 };
    lumen_ref refs[N];
    lumen_arg bigarg = lumen_arg_bytes(data, big);
    LM_ASSERT_OK(call1(client, "test.echo", "small", NULL, &refs[0]));
    LM_ASSERT_OK(lumen_call(client, "test.echo", &bigarg, 1, NULL, &refs[1]));
    LM_ASSERT_OK(lumen_put(client, "put", 3, &refs[2]));
    LM_ASSERT_OK(lumen_put(client, data, big, &refs[3]));
    LM_ASSERT_OK(acall(a, "add", "7", &refs[4]));
    LM_ASSERT_OK(lumen_actor_call(client, a, "say", &bigarg, 1, &refs[5]));
    LM_ASSERT_OK(acall(a, "say", "", &refs[6])); /* an empty result */
    LM_ASSERT_OK(lumen_call(client, "test.echo", (lumen_arg[]){lumen_arg_bytes("", 0)}, 1, NULL, &refs[7]));
    const size_t lens[N] = {5, big, 3, big, 1, big, 0, 0};
    for (int i = 0; i < N; i++) {
        lumen_bytes b = {0};
        LM_ASSERT_OK(lumen_get(client, refs[i], TIMEOUT, &b));
        CU_ASSERT_EQUAL(b.len, lens[i]);
        if (!nul_terminated(&b)) fprintf(stderr, "\nresult %d (%zu bytes) has no NUL after it\n", i, b.len);
        CU_ASSERT_TRUE(nul_terminated(&b));
        lumen_bytes_free(&b);
    }
    lumen_bytes out[N];
    LM_ASSERT_OK(lumen_get_many(client, refs, N, TIMEOUT, out));
    for (int i = 0; i < N; i++) {
        CU_ASSERT_TRUE(out[i].len == lens[i] && nul_terminated(&out[i]));
        lumen_bytes_free(&out[i]);
    }
    lumen_actor_kill(client, a);
    free(data);
}

/* The scheduler killed and restarted: the job of a client that died while
 * it was down ends (the new scheduler found it running in Redis and no
 * client came back for it); a living client's job goes on; an actor it
 * killed before stays dead. A client of its own: the suite's client keeps
 * the lineage of every test before, which a restart would run again.
 * Runs last. */
static void test_scheduler_restart_ends_orphaned_jobs(void) {
    char *dir = lm_test_tmpdir("orphan");
    char job[33];
    lm_id put;
    /* Its task outlasts the test: the new scheduler knows it only as held
     * by a worker, and stops it when its job ends (else it would hold its
     * slot, and this client's tasks would wait behind it). */
    pid_t pid = start_dying_client(false, "20000", dir, job, &put);
    CU_ASSERT_TRUE(wait_job_state(job, "RUNNING", LM_TEST_TIMEOUT(5000)) >= 0);
    lumen_client *live = NULL;
    LM_ASSERT_OK(lumen_connect(lm_test_cluster_scheduler(cluster), NULL, &live));
    lumen_ref before, r;
    LM_ASSERT_OK(call1(live, "test.echo", "before", NULL, &before));
    EXPECT_VALUE(live, before, "before");
    lumen_actor killed;
    LM_ASSERT_OK(lumen_actor_new(live, "test.Counter", NULL, 0, NULL, &killed));
    LM_ASSERT_OK(lumen_actor_call(live, killed, "get", NULL, 0, &r));
    EXPECT_VALUE(live, r, "0");
    LM_ASSERT_OK(lumen_actor_kill(live, killed));
    /* Frozen, the scheduler cannot notice the client's death: the new one
     * finds its job running in Redis. */
    CU_ASSERT_EQUAL(kill(lm_test_cluster_scheduler_pid(cluster), SIGSTOP), 0);
    lm_test_stop(pid, SIGKILL, 1000);
    LM_ASSERT_OK(lm_test_cluster_restart_scheduler(cluster, SIGKILL));
    int64_t ms = wait_job_state(job, "FINISHED", GRACE_MS + LM_TEST_TIMEOUT(15000));
    fprintf(stderr, "\n  (the orphaned job ended %lld ms after the scheduler's restart)\n", (long long)ms);
    CU_ASSERT_TRUE(ms >= 0);
    CU_ASSERT_TRUE(wait_store_drops(put, LM_TEST_TIMEOUT(5000)));
    /* The living client's job goes on: its result is made again, new calls run. */
    uint64_t t0 = lm_test_now_us();
    EXPECT_VALUE(live, before, "before");
    lumen_ref after;
    LM_ASSERT_OK(call1(live, "test.echo", "after", NULL, &after));
    EXPECT_VALUE(live, after, "after");
    fprintf(stderr, "  (the living client's job went on in %.1f s)\n", (lm_test_now_us() - t0) / 1e6);
    /* The suite's client's lineage runs again meanwhile: a bound, not a race. */
    CU_ASSERT_TRUE(lm_test_now_us() - t0 < (uint64_t)LM_TEST_TIMEOUT(10000) * 1000);
    char state[32];
    lumen_status st;
    job_state(lumen_job_id(live), state, sizeof state);
    CU_ASSERT_STRING_EQUAL(state, "RUNNING");
    /* The killed actor was not made again from the client's kept creation. */
    LM_ASSERT_OK(lumen_actor_call(live, killed, "get", NULL, 0, &r));
    char *s = get_str(live, r, TIMEOUT, &st);
    if (st.code != LUMEN_ACTOR_DIED && st.code != LUMEN_NOT_FOUND) /* the new scheduler may not know it at all */
        fprintf(stderr, "\na killed actor after the restart: %s %s\n", lumen_code_name(st.code), s);
    CU_ASSERT_TRUE(st.code == LUMEN_ACTOR_DIED || st.code == LUMEN_NOT_FOUND);
    free(s);
    char hex[33];
    redisReply *rep = redisCommand(redis_ctx, "HGET lumen:actor:%s state", lumen_actor_hex(killed, hex));
    CU_ASSERT_TRUE(rep != NULL && (rep->type != REDIS_REPLY_STRING || strcmp(rep->str, "ALIVE") != 0));
    if (rep != NULL && rep->type == REDIS_REPLY_STRING) fprintf(stderr, "  (its record says %s)\n", rep->str);
    freeReplyObject(rep);
    lumen_close(live);
    lm_test_rmtree(dir);
    free(dir);
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "--dying-client") == 0)
        return dying_client(argv[2], strcmp(argv[4], "detached") == 0, argv[3]);
    CU_TestInfo tests[] = {
        {"a driver's put, its id inside a value, got in a task", test_put_got_by_id_in_a_task},
        {"a task's put, its id returned, got by the driver", test_put_in_a_task_got_by_driver},
        {"what lumen_wait marks ready, lumen_get reads at once (64 refs)", test_wait_then_get_at_once},
        {"a client killed without lumen_close: its job ends after the grace", test_client_death_ends_its_job},
        {"a detached job outlives its client; lumen job stop ends it", test_detached_job_outlives_its_client},
        {"lumen_get after lumen_free fails at once: freed", test_get_after_free_fails_at_once},
        {"lumen_wait: ready NULL, num_ready > n, at most num_ready marked", test_wait_contract},
        {"lumen_wait and lumen_get return at their timeouts", test_wait_timeout},
        {"an actor's process killed mid-call: retried, else ACTOR_DIED", test_actor_killed_mid_call},
        {"an actor's process crashing mid-call: retried, else ACTOR_DIED", test_actor_crashes_mid_call},
        {"a crashed task is retried; lumen_task_fail only with retry_on_error", test_task_retries},
        {"lumen_get_many returns values in order", test_get_many_in_order},
        {"refs as arguments, chains, nested refs", test_refs_as_arguments_and_chains},
        {"64 MiB values", test_large_values},
        {"a failure propagates to its consumers", test_failure_propagates},
        {"an unknown function fails its ref and consumers", test_unknown_function},
        {"one client's actor calls run in order", test_actor_call_order},
        {"named actors", test_named_actors},
        {"a task submits a task", test_nested_tasks},
        {"lumen_job_id", test_job_id},
        {"a NUL byte after every result buffer", test_nul_after_every_result},
        {"a scheduler restart ends the jobs of clients that died meanwhile", test_scheduler_restart_ends_orphaned_jobs},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("semantics", tests, suite_init, suite_cleanup);
}

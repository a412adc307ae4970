/*
 * lumen-worker end to end: a real cluster (redis, scheduler, object store,
 * two workers with two slots each, liblumentest.so on their library path)
 * driven through the public client API. What it checks is the worker's
 * part: isolation of crashing functions, per-task time and memory limits,
 * results inline or through the object store, ref arguments fetched from
 * the object store, parallel slots, a clean stop on SIGTERM, and slots
 * freed when the job of what they run ends.
 */
#include <hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <lumen/lumen.h>

#include "client_suite.h"
#include "log.h"
#include "objclient.h"
#include "redis_server.h"
#include "test_util.h"

static lm_test_cluster *cluster;
static lumen_client *client;

static int suite_init(void) {
    lm_test_cluster_opts opts = {.workers = 2, .slots = 2};
    return lm_test_client_suite_start(&opts, &cluster, &client);
}

static int suite_cleanup(void) { return lm_test_client_suite_stop(cluster, client); }

/* Calls fn with string args and waits for its result: a C string, or the
 * error's message (then *st is not OK). */
static char *call_get(const char *fn, const char *const *argv, size_t n, const lumen_call_opts *opts,
                      lumen_status *st) {
    lumen_arg args[8] = {{0}};
    for (size_t i = 0; i < n; i++) args[i] = lumen_arg_bytes(argv[i], strlen(argv[i]));
    lumen_ref ref;
    *st = lumen_call(client, fn, args, n, opts, &ref);
    if (!LM_IS_OK(*st)) return strdup(st->msg);
    lumen_bytes b = {0};
    *st = lumen_get(client, ref, 60000, &b);
    if (!LM_IS_OK(*st)) return strdup(st->msg);
    char *s = strndup(b.data, b.len);
    lumen_bytes_free(&b);
    return s;
}

static bool has(const char *s, const char *want) {
    bool ok = strstr(s, want) != NULL;
    if (!ok) fprintf(stderr, "\n  \"%s\" lacks \"%s\"\n", s, want);
    return ok;
}

static void test_echo_and_add(void) {
    lumen_status st;
    char *s = call_get("test.echo", (const char *[]){"through the worker"}, 1, NULL, &st);
    LM_ASSERT_OK(st);
    CU_ASSERT_STRING_EQUAL(s, "through the worker");
    free(s);
    s = call_get("test.add", (const char *[]){"1", "2", "39"}, 3, NULL, &st);
    LM_ASSERT_OK(st);
    CU_ASSERT_STRING_EQUAL(s, "42");
    free(s);
}

static void test_function_errors(void) {
    lumen_status st;
    char *s = call_get("test.fail", (const char *[]){"worker test"}, 1, NULL, &st);
    CU_ASSERT_NOT_EQUAL(st.code, LUMEN_OK);
    CU_ASSERT_TRUE(has(s, "failed on purpose: worker test"));
    free(s);
    s = call_get("nope.missing", NULL, 0, NULL, &st);
    CU_ASSERT_NOT_EQUAL(st.code, LUMEN_OK);
    CU_ASSERT_TRUE(has(s, "unknown function \"nope.missing\""));
    CU_ASSERT_TRUE(has(s, "test.echo"));
    free(s);
}

/* Crashing functions fail their task only; the workers keep serving. */
static void test_crash_isolation(void) {
    lumen_call_opts once = {.max_retries = 1};
    lumen_status st;
    char *s = call_get("test.crash", NULL, 0, &once, &st);
    CU_ASSERT_NOT_EQUAL(st.code, LUMEN_OK);
    CU_ASSERT_TRUE(has(s, "test.crash crashed: signal 11 (Segmentation fault)"));
    free(s);
    s = call_get("test.abort", NULL, 0, &once, &st);
    CU_ASSERT_NOT_EQUAL(st.code, LUMEN_OK);
    CU_ASSERT_TRUE(has(s, "test.abort crashed: signal 6 (Aborted)"));
    free(s);
    for (int i = 0; i < lm_test_cluster_workers(cluster); i++)
        CU_ASSERT_EQUAL(kill(lm_test_cluster_worker_pid(cluster, i), 0), 0);
    for (int i = 0; i < 8; i++) {
        s = call_get("test.echo", (const char *[]){"still here"}, 1, NULL, &st);
        LM_ASSERT_OK(st);
        CU_ASSERT_STRING_EQUAL(s, "still here");
        free(s);
    }
}

static void test_time_limit(void) {
    lumen_call_opts opts = {.timeout_ms = 500, .max_retries = 1};
    uint64_t t0 = lm_test_now_us();
    lumen_status st;
    char *s = call_get("test.sleep", (const char *[]){"10000"}, 1, &opts, &st);
    CU_ASSERT_NOT_EQUAL(st.code, LUMEN_OK);
    CU_ASSERT_TRUE(has(s, "test.sleep timed out after 500 ms"));
    CU_ASSERT_TRUE(lm_test_now_us() - t0 < 8000000);
    free(s);
}

static void test_memory_limit(void) {
    lumen_call_opts opts = {.memory_limit = 64u << 20, .max_retries = 1};
    lumen_status st;
    char *s = call_get("test.alloc", (const char *[]){"1024"}, 1, &opts, &st);
    CU_ASSERT_NOT_EQUAL(st.code, LUMEN_OK);
    CU_ASSERT_TRUE(has(s, "test.alloc exceeded its memory limit of 67108864 bytes"));
    free(s);
    s = call_get("test.alloc", (const char *[]){"8"}, 1, &opts, &st);
    LM_ASSERT_OK(st);
    CU_ASSERT_STRING_EQUAL(s, "8");
    free(s);
}

/* A result above the inline limit goes through the worker's object store;
 * a ref argument is fetched from it. */
static void test_big_result_and_ref_argument(void) {
    size_t n = 3u << 20;
    char *data = malloc(n);
    for (size_t i = 0; i < n; i++) data[i] = (char)(i * 31 + 7);
    lumen_ref put, out;
    LM_ASSERT_OK(lumen_put(client, data, n, &put));
    lumen_arg a = lumen_arg_ref(put);
    LM_ASSERT_OK(lumen_call(client, "test.echo", &a, 1, NULL, &out));
    lumen_bytes b = {0};
    LM_ASSERT_OK(lumen_get(client, out, 60000, &b));
    CU_ASSERT_EQUAL_FATAL(b.len, n);
    CU_ASSERT_TRUE(memcmp(b.data, data, n) == 0);
    lumen_bytes_free(&b);

    lumen_arg both[2] = {lumen_arg_ref(out), lumen_arg_bytes("xy", 2)}; /* a task's result as a ref */
    LM_ASSERT_OK(lumen_call(client, "test.size", both, 2, NULL, &out));
    LM_ASSERT_OK(lumen_get(client, out, 60000, &b));
    char want[32];
    snprintf(want, sizeof want, "%zu", n + 2);
    CU_ASSERT_TRUE(b.len == strlen(want) && memcmp(b.data, want, b.len) == 0);
    lumen_bytes_free(&b);
    free(data);
}

/* 8 sleeps of 400 ms on 4 slots: about 800 ms, not 3.2 s. */
static void test_slots_run_in_parallel(void) {
    lumen_ref refs[8];
    lumen_arg a = lumen_arg_bytes("400", 3);
    uint64_t t0 = lm_test_now_us();
    for (int i = 0; i < 8; i++) LM_ASSERT_OK(lumen_call(client, "test.sleep", &a, 1, NULL, &refs[i]));
    for (int i = 0; i < 8; i++) {
        lumen_bytes b = {0};
        LM_ASSERT_OK(lumen_get(client, refs[i], 30000, &b));
        CU_ASSERT_TRUE(b.len == 5 && memcmp(b.data, "slept", 5) == 0);
        lumen_bytes_free(&b);
    }
    uint64_t ms = (lm_test_now_us() - t0) / 1000;
    if (ms >= 2500) fprintf(stderr, "\n  8 x 400 ms on 4 slots took %llu ms\n", (unsigned long long)ms);
    CU_ASSERT_TRUE(ms < 2500);
}

static void test_print(void) {
    lumen_status st;
    char *s = call_get("test.print", (const char *[]){"into the worker log"}, 1, NULL, &st);
    LM_ASSERT_OK(st);
    CU_ASSERT_STRING_EQUAL(s, "printed");
    free(s);
}

/* SIGTERM: the worker stops cleanly (exit status 0), the others go on. */
static void test_sigterm_stops_cleanly(void) {
    int index = -1;
    LM_ASSERT_OK(lm_test_cluster_add_worker(cluster, &index));
    pid_t pid = lm_test_cluster_worker_pid(cluster, index);
    int status = lm_test_stop(pid, SIGTERM, 10000);
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) fprintf(stderr, "\n  wait status %#x\n", status);
    lumen_status st;
    char *s = call_get("test.echo", (const char *[]){"after a worker left"}, 1, NULL, &st);
    LM_ASSERT_OK(st);
    free(s);
}

/* ---- a job's end frees its slots */

/* Waits until `running` tasks are RUNNING (the scheduler's index in Redis,
 * written behind). */
static bool wait_running(lm_test_cluster *cl, long long running) {
    redisContext *rc = lm_test_redis_connect(lm_test_cluster_redis(cl));
    long long n = -1;
    for (int waited = 0; rc != NULL && rc->err == 0 && waited < LM_TEST_TIMEOUT(20000); waited += 20) {
        redisReply *rep = redisCommand(rc, "ZCARD lumen:tasks:RUNNING");
        n = rep != NULL && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
        freeReplyObject(rep);
        if (n == running) break;
        lm_test_sleep_ms(20);
    }
    if (rc != NULL) redisFree(rc);
    return n == running;
}

/* A new client's echo: the one slot serves it within a few seconds. */
static void assert_slot_free(const char *addr) {
    lumen_client *c = NULL;
    LM_ASSERT_OK(lumen_connect(addr, NULL, &c));
    if (c == NULL) return;
    lumen_ref r;
    LM_ASSERT_OK(lumen_call(c, "test.echo", (lumen_arg[]){lumen_arg_bytes("next", 4)}, 1, NULL, &r));
    lumen_bytes b = {0};
    LM_ASSERT_OK(lumen_get(c, r, LM_TEST_TIMEOUT(20000), &b));
    CU_ASSERT(b.len == 4 && memcmp(b.data, "next", 4) == 0);
    lumen_bytes_free(&b);
    lumen_close(c);
}

/* A job that ends (its client closes) stops what it still runs, so the next
 * job gets the slots at once: a task running (a 2-minute sleep) and a task
 * whose argument fetch waits for an object that will never come (deleted
 * from the store behind the scheduler's back; the workers' fetches may wait
 * the RPC timeout, 2 minutes here, for a put). */
static void job_end_frees_slots(lm_test_cluster *cl) {
    const char *addr = lm_test_cluster_scheduler(cl);
    lumen_client *c = NULL;
    LM_ASSERT_OK(lumen_connect(addr, NULL, &c));
    lumen_ref r;
    LM_ASSERT_OK(lumen_call(c, "test.sleep", (lumen_arg[]){lumen_arg_bytes("120000", 6)}, 1, NULL, &r));
    CU_ASSERT_TRUE(wait_running(cl, 1));
    lumen_close(c);
    CU_ASSERT_TRUE(wait_running(cl, 0)); /* its record says it failed, cancelled */
    assert_slot_free(addr);

    LM_ASSERT_OK(lumen_connect(addr, NULL, &c));
    size_t n = 200 * 1024; /* above the inline limit: it lives in the store */
    char *big = calloc(1, n);
    lumen_ref put;
    LM_ASSERT_OK(lumen_put(c, big, n, &put));
    free(big);
    lm_rpc_client *rpc = NULL;
    LM_ASSERT_OK(lm_rpc_client_new(&(lm_rpc_client_opts){0}, &rpc));
    lm_id id;
    memcpy(id.bytes, put.id, sizeof id.bytes);
    uint32_t deleted = 0;
    lumen_status st = lm_objstore_delete(rpc, lm_test_cluster_objstore(cl), &id, 1, 10000, &deleted);
    lm_rpc_client_free(rpc);
    LM_ASSERT_OK(st);
    CU_ASSERT_EQUAL(deleted, 1);
    LM_ASSERT_OK(lumen_call(c, "test.echo", (lumen_arg[]){lumen_arg_ref(put)}, 1, NULL, &r));
    CU_ASSERT_TRUE(wait_running(cl, 1));
    lm_test_sleep_ms(300); /* its fetch reaches the store and waits there */
    lumen_close(c);
    CU_ASSERT_TRUE(wait_running(cl, 0));
    assert_slot_free(addr);
}

static void test_job_end_frees_slots(void) {
    setenv("LUMEN_RPC_TIMEOUT_MS", "120000", 1);
    lm_test_cluster *cl = NULL;
    lm_test_cluster_opts opts = {.workers = 1, .slots = 1};
    lumen_status st = lm_test_cluster_start(&opts, &cl);
    unsetenv("LUMEN_RPC_TIMEOUT_MS");
    LM_ASSERT_OK(st);
    if (cl == NULL) return;
    job_end_frees_slots(cl); /* its fatal asserts return here: the cluster stops */
    lm_test_cluster_stop(cl);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"echo and add", test_echo_and_add},
        {"function errors reach the caller", test_function_errors},
        {"crashes fail only their task", test_crash_isolation},
        {"time limit", test_time_limit},
        {"memory limit", test_memory_limit},
        {"big result via the object store; ref arguments", test_big_result_and_ref_argument},
        {"slots run in parallel", test_slots_run_in_parallel},
        {"a function that prints", test_print},
        {"SIGTERM stops a worker cleanly", test_sigterm_stops_cleanly},
        {"a job's end stops its tasks: the next job gets their slots", test_job_end_frees_slots},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("worker", tests, suite_init, suite_cleanup);
}

/*
 * The cluster end to end through the public client API: a real redis-server,
 * lumen-scheduler, lumen-objstore and lumen-workers (build/bin) on free
 * loopback ports, the suite's function library (liblumentest.so) on the
 * workers' library path.
 */
#include <hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <lumen/lumen.h>

#include "client_suite.h"
#include "log.h"
#include "redis_server.h"
#include "test_util.h"

static lm_test_cluster *cluster;
static lumen_client *client;

static int suite_init(void) {
    lm_test_cluster_opts opts = {.workers = 2, .slots = 2};
    return lm_test_client_suite_start(&opts, &cluster, &client);
}

static int suite_cleanup(void) { return lm_test_client_suite_stop(cluster, client); }

static lumen_status call_str(const char *fn, const char *arg, lumen_ref *out) {
    lumen_arg a = lumen_arg_bytes(arg, strlen(arg));
    return lumen_call(client, fn, &a, 1, NULL, out);
}

/* The result of ref as a C string (or the error's message). */
static char *get_str(lumen_ref ref, int64_t timeout_ms, lumen_status *st_out) {
    lumen_bytes b = {0};
    lumen_status st = lumen_get(client, ref, timeout_ms, &b);
    if (st_out != NULL) *st_out = st;
    if (!LM_IS_OK(st)) return strdup(st.msg);
    char *s = strndup(b.data, b.len);
    lumen_bytes_free(&b);
    return s;
}

static void test_echo(void) {
    lumen_ref r;
    LM_ASSERT_OK(call_str("test.echo", "hello cluster", &r));
    lumen_status st;
    char *s = get_str(r, 10000, &st);
    LM_ASSERT_OK(st);
    CU_ASSERT_STRING_EQUAL(s, "hello cluster");
    free(s);
}

/* A chain: each task takes the previous task's ref. */
static void test_chain_of_refs(void) {
    enum { N = 100 };
    lumen_ref prev;
    LM_ASSERT_OK(call_str("test.add", "0", &prev));
    for (int i = 1; i <= N; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        lumen_arg args[2] = {lumen_arg_ref(prev), lumen_arg_bytes(num, strlen(num))};
        LM_ASSERT_OK(lumen_call(client, "test.add", args, 2, NULL, &prev));
    }
    lumen_status st;
    char *s = get_str(prev, 30000, &st);
    LM_ASSERT_OK(st);
    CU_ASSERT_STRING_EQUAL(s, "5050");
    free(s);
}

static void test_ten_thousand_tasks(void) {
    enum { N = 10000 };
    lumen_ref *refs = malloc(N * sizeof *refs);
    for (int i = 0; i < N; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        LM_ASSERT_OK(call_str("test.echo", num, &refs[i]));
    }
    int *ready = calloc(N, sizeof *ready);
    size_t done = 0;
    LM_ASSERT_OK(lumen_wait(client, refs, N, N, LM_TEST_TIMEOUT(120000), ready, &done));
    CU_ASSERT_EQUAL(done, N);
    int wrong = 0;
    for (int i = 0; i < N; i += 97) { /* spot-check values */
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        char *s = get_str(refs[i], 5000, NULL);
        wrong += strcmp(s, num) != 0;
        free(s);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    LM_ASSERT_OK(lumen_free(client, refs, N));
    free(ready);
    free(refs);
}

static void test_map_reduce(void) {
    enum { N = 33 };
    char nums[N][8];
    lumen_arg inputs[N];
    for (int i = 0; i < N; i++) {
        snprintf(nums[i], sizeof nums[i], "%d", i + 1);
        inputs[i] = lumen_arg_bytes(nums[i], strlen(nums[i]));
    }
    lumen_ref mapped[N], total;
    LM_ASSERT_OK(lumen_map(client, "test.echo", inputs, N, NULL, mapped));
    LM_ASSERT_OK(lumen_reduce(client, "test.add", mapped, N, NULL, &total));
    lumen_status st;
    char *s = get_str(total, 30000, &st);
    LM_ASSERT_OK(st);
    CU_ASSERT_STRING_EQUAL(s, "561"); /* 33 * 34 / 2 */
    free(s);
}

static void test_put_and_pass_as_argument(void) {
    const char *text = "an object put by the client";
    lumen_ref obj, r;
    LM_ASSERT_OK(lumen_put(client, text, strlen(text), &obj));
    lumen_arg a = lumen_arg_ref(obj);
    LM_ASSERT_OK(lumen_call(client, "test.echo", &a, 1, NULL, &r));
    char *s = get_str(r, 10000, NULL);
    CU_ASSERT_STRING_EQUAL(s, text);
    free(s);
    s = get_str(obj, 10000, NULL);
    CU_ASSERT_STRING_EQUAL(s, text);
    free(s);
}

/* Another client's put, known only by its ref: the scheduler finds it
 * through Redis. */
static void test_ref_put_by_another_client(void) {
    lumen_client *other = NULL;
    LM_ASSERT_OK(lumen_connect(lm_test_cluster_scheduler(cluster), NULL, &other));
    const char *text = "shared between clients";
    lumen_ref obj, r;
    LM_ASSERT_OK(lumen_put(other, text, strlen(text), &obj));
    lumen_arg a = lumen_arg_ref(obj);
    LM_ASSERT_OK(lumen_call(client, "test.echo", &a, 1, NULL, &r));
    lumen_status st;
    char *s = get_str(r, 10000, &st);
    LM_ASSERT_OK(st);
    CU_ASSERT_STRING_EQUAL(s, text);
    free(s);
    lumen_close(other);
    /* A ref nobody made fails its task with a clear error. */
    lumen_ref bogus;
    memset(&bogus, 0x5a, sizeof bogus);
    a = lumen_arg_ref(bogus);
    LM_ASSERT_OK(lumen_call(client, "test.echo", &a, 1, NULL, &r));
    s = get_str(r, 10000, &st);
    LM_ASSERT_CODE(st, LUMEN_NOT_FOUND);
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "unknown object"));
    free(s);
}

/* Results bigger than the inline limit go through the object store, and
 * big inline arguments are put there by the client. */
static void test_big_arguments_and_results(void) {
    size_t len = 3u << 20;
    char *big = malloc(len);
    for (size_t i = 0; i < len; i++) big[i] = (char)('a' + i % 26);
    lumen_arg args[2] = {lumen_arg_bytes(big, len), lumen_arg_bytes(big, len)};
    lumen_ref r;
    LM_ASSERT_OK(lumen_call(client, "test.concat", args, 2, NULL, &r));
    lumen_bytes out = {0};
    LM_ASSERT_OK(lumen_get(client, r, 30000, &out));
    CU_ASSERT_EQUAL(out.len, 2 * len);
    CU_ASSERT_TRUE(out.len == 2 * len && memcmp(out.data, big, len) == 0 &&
                   memcmp((char *)out.data + len, big, len) == 0);
    lumen_bytes_free(&out);
    free(big);
}

static void test_gigabyte_object(void) {
    size_t len = 1ull << 30;
    uint8_t *data = malloc(len);
    for (size_t i = 0; i < len; i += 4096) data[i] = (uint8_t)(i >> 12);
    data[len - 1] = 0x5a;
    lumen_ref r;
    LM_ASSERT_OK(lumen_put(client, data, len, &r));
    lumen_bytes out = {0};
    LM_ASSERT_OK(lumen_get(client, r, LM_TEST_TIMEOUT(60000), &out));
    CU_ASSERT_EQUAL(out.len, len);
    CU_ASSERT_TRUE(out.len == len && memcmp(out.data, data, len) == 0);
    lumen_bytes_free(&out);
    LM_ASSERT_OK(lumen_free(client, &r, 1));
    free(data);
}

static void test_errors_are_clear_and_cluster_keeps_serving(void) {
    lumen_ref unknown, failing, crashing, aborting, dependent;
    LM_ASSERT_OK(call_str("no.such_function", "x", &unknown));
    LM_ASSERT_OK(call_str("test.fail", "boom", &failing));
    LM_ASSERT_OK(call_str("test.crash", "", &crashing));
    LM_ASSERT_OK(call_str("test.abort", "", &aborting));
    lumen_arg dep = lumen_arg_ref(failing);
    LM_ASSERT_OK(lumen_call(client, "test.echo", &dep, 1, NULL, &dependent));

    lumen_status st;
    char *msg = get_str(unknown, 10000, &st);
    CU_ASSERT_NOT_EQUAL(st.code, LUMEN_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "no.such_function"));
    free(msg);
    msg = get_str(failing, 10000, &st);
    CU_ASSERT_NOT_EQUAL(st.code, LUMEN_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "failed on purpose: boom"));
    free(msg);
    msg = get_str(crashing, 10000, &st);
    CU_ASSERT_NOT_EQUAL(st.code, LUMEN_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "signal 11"));
    free(msg);
    msg = get_str(aborting, 10000, &st);
    CU_ASSERT_NOT_EQUAL(st.code, LUMEN_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "signal 6"));
    free(msg);
    msg = get_str(dependent, 10000, &st); /* a failed argument fails its consumer */
    CU_ASSERT_NOT_EQUAL(st.code, LUMEN_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "failed on purpose: boom"));
    free(msg);

    test_echo(); /* still serving */
}

static void test_get_timeout(void) {
    lumen_ref r;
    LM_ASSERT_OK(call_str("test.sleep", "3000", &r));
    uint64_t t0 = lm_test_now_us();
    lumen_bytes b = {0};
    LM_ASSERT_CODE(lumen_get(client, r, 200, &b), LUMEN_DEADLINE_EXCEEDED);
    uint64_t took = (lm_test_now_us() - t0) / 1000;
    CU_ASSERT_TRUE(took >= 150 && took < 2500);
    LM_ASSERT_OK(lumen_get(client, r, 20000, &b)); /* it does finish */
    CU_ASSERT_TRUE(b.len == 5 && memcmp(b.data, "slept", 5) == 0);
    lumen_bytes_free(&b);
}

static void test_wait_first_k(void) {
    lumen_ref refs[4];
    LM_ASSERT_OK(call_str("test.sleep", "10", &refs[0]));
    LM_ASSERT_OK(call_str("test.sleep", "20", &refs[1]));
    LM_ASSERT_OK(call_str("test.sleep", "4000", &refs[2]));
    LM_ASSERT_OK(call_str("test.sleep", "4000", &refs[3]));
    int ready[4] = {0};
    size_t done = 0;
    LM_ASSERT_OK(lumen_wait(client, refs, 4, 2, 3000, ready, &done));
    CU_ASSERT_TRUE(done >= 2);
    CU_ASSERT_TRUE(ready[0] && ready[1]);
    CU_ASSERT_FALSE(ready[2] || ready[3]);
    /* Timing out is not an error: it reports what is ready. */
    LM_ASSERT_OK(lumen_wait(client, refs + 2, 2, 2, 100, ready, &done));
    CU_ASSERT_EQUAL(done, 0);
}

static void test_library_upload(void) {
    lumen_client *c = NULL;
    LM_ASSERT_OK(lumen_connect(lm_test_cluster_scheduler(cluster), NULL, &c));
    lumen_ref lib, r;
    LM_ASSERT_OK(lumen_library_upload(c, LUMEN_TEST_UPLOAD_LIB, &lib));
    lumen_arg a = lumen_arg_bytes("world", 5);
    LM_ASSERT_OK(lumen_call(c, "upload.hello", &a, 1, NULL, &r));
    lumen_bytes b = {0};
    LM_ASSERT_OK(lumen_get(c, r, 20000, &b));
    const char *want = "hello from an uploaded library, world";
    CU_ASSERT_TRUE(b.len == strlen(want) && memcmp(b.data, want, b.len) == 0);
    lumen_bytes_free(&b);
    LM_ASSERT_CODE(lumen_library_upload(c, "/nonexistent/lib.so", NULL), LUMEN_IO);
    lumen_close(c);
}

/* What a user sees with redis-cli: the task and object records. */
static void test_redis_records(void) {
    lumen_ref r;
    LM_ASSERT_OK(call_str("test.echo", "recorded", &r));
    char *s = get_str(r, 10000, NULL);
    free(s);
    /* The result ref's task id is the ref with the return index cleared. */
    char hex[33];
    lumen_ref task = r;
    memset(task.id + 12, 0, 4);
    lumen_ref_hex(task, hex);
    redisContext *rc = lm_test_redis_connect(lm_test_cluster_redis(cluster));
    CU_ASSERT_FATAL(rc != NULL && rc->err == 0);
    redisReply *rep = NULL;
    for (int i = 0; i < 100; i++) { /* records are written behind: allow a moment */
        rep = redisCommand(rc, "HGET lumen:task:%s state", hex);
        if (rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "FINISHED") == 0) break;
        freeReplyObject(rep);
        rep = NULL;
        lm_test_sleep_ms(20);
    }
    CU_ASSERT_PTR_NOT_NULL(rep);
    freeReplyObject(rep);
    rep = redisCommand(rc, "HGET lumen:task:%s fn", hex);
    CU_ASSERT_TRUE(rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "test.echo") == 0);
    freeReplyObject(rep);
    rep = redisCommand(rc, "SCARD lumen:nodes");
    CU_ASSERT_TRUE(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 3);
    freeReplyObject(rep);
    redisFree(rc);
}

/* One client shared by several threads: calls, puts and gets interleave. */
typedef struct thread_run {
    int id, wrong, errors;
} thread_run;

static void *hammer(void *arg) {
    thread_run *t = arg;
    for (int i = 0; i < 200; i++) {
        char text[32];
        snprintf(text, sizeof text, "t%d-%d", t->id, i);
        lumen_ref put, r;
        lumen_status st = lumen_put(client, text, strlen(text), &put);
        lumen_arg a = lumen_arg_ref(put);
        if (LM_IS_OK(st)) st = lumen_call(client, "test.echo", &a, 1, NULL, &r);
        lumen_bytes b = {0};
        if (LM_IS_OK(st)) st = lumen_get(client, r, 20000, &b);
        if (!LM_IS_OK(st)) t->errors++;
        else if (b.len != strlen(text) || memcmp(b.data, text, b.len) != 0) t->wrong++;
        lumen_bytes_free(&b);
    }
    return NULL;
}

static void test_one_client_many_threads(void) {
    enum { THREADS = 4 };
    pthread_t threads[THREADS];
    thread_run runs[THREADS] = {{0}};
    for (int i = 0; i < THREADS; i++) {
        runs[i].id = i;
        pthread_create(&threads[i], NULL, hammer, &runs[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        CU_ASSERT_EQUAL(runs[i].errors, 0);
        CU_ASSERT_EQUAL(runs[i].wrong, 0);
    }
}

static redisContext *redis_connect_raw(void) { return lm_test_redis_connect(lm_test_cluster_redis(cluster)); }

static long long redis_int(redisContext *rc, const char *fmt, const char *arg) {
    redisReply *rep = redisCommand(rc, fmt, arg);
    long long v = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    freeReplyObject(rep);
    return v;
}

/* Closing a client ends its job: its objects leave the stores and Redis. */
static void test_job_end_releases_objects(void) {
    lumen_client *c = NULL;
    LM_ASSERT_OK(lumen_connect(lm_test_cluster_scheduler(cluster), NULL, &c));
    size_t big = 300 * 1024; /* above the inline limit: the result lives in the store */
    char *data = malloc(big);
    memset(data, 'z', big);
    lumen_ref put, result;
    LM_ASSERT_OK(lumen_put(c, data, big, &put));
    lumen_arg a = lumen_arg_ref(put);
    LM_ASSERT_OK(lumen_call(c, "test.echo", &a, 1, NULL, &result));
    lumen_bytes b = {0};
    LM_ASSERT_OK(lumen_get(c, result, 20000, &b));
    CU_ASSERT_EQUAL(b.len, big);
    lumen_bytes_free(&b);
    char put_hex[33], result_hex[33];
    lumen_ref_hex(put, put_hex);
    lumen_ref_hex(result, result_hex);
    redisContext *rc = redis_connect_raw();
    CU_ASSERT_FATAL(rc != NULL && rc->err == 0);
    CU_ASSERT_EQUAL(redis_int(rc, "EXISTS lumen:obj:%s", put_hex), 1);
    CU_ASSERT_EQUAL(redis_int(rc, "EXISTS lumen:obj:%s", result_hex), 1);
    lumen_close(c);
    /* The scheduler erases them behind (after the records queued before). */
    for (int waited = 0; waited < 5000 && redis_int(rc, "EXISTS lumen:obj:%s", result_hex) != 0; waited += 20)
        lm_test_sleep_ms(20);
    CU_ASSERT_EQUAL(redis_int(rc, "EXISTS lumen:obj:%s", put_hex), 0);
    CU_ASSERT_EQUAL(redis_int(rc, "EXISTS lumen:obj:%s", result_hex), 0);
    CU_ASSERT_EQUAL(redis_int(rc, "EXISTS lumen:obj:%s:locs", result_hex), 0);
    redisFree(rc);
    free(data);
}

/* A worker killed with SIGKILL mid-task: the scheduler notices the missed
 * heartbeats and the task runs again on the other worker. Runs last: it
 * leaves the cluster with one worker. */
static void test_worker_killed_mid_task(void) {
    enum { N = 4 };
    lumen_ref refs[N];
    for (int i = 0; i < N; i++) LM_ASSERT_OK(call_str("test.sleep", "1500", &refs[i]));
    lm_test_sleep_ms(500); /* both workers are running some of them */
    lm_test_cluster_kill_worker(cluster, 0, SIGKILL);
    for (int i = 0; i < N; i++) {
        lumen_status st;
        char *s = get_str(refs[i], LM_TEST_TIMEOUT(30000), &st);
        LM_ASSERT_OK(st);
        CU_ASSERT_STRING_EQUAL(s, "slept");
        free(s);
    }
    test_echo(); /* the cluster goes on with the worker it has left */
}

/* A cluster with a token: clients find it in the call options, in
 * $LUMEN_TOKEN, or in the run dir `lumen start` wrote it to. */
static void test_token(void) {
    lm_test_cluster *guarded = NULL;
    lm_test_cluster_opts opts = {.workers = 1, .slots = 1, .token = "t0k3n-for-tests"};
    LM_ASSERT_OK(lm_test_cluster_start(&opts, &guarded));
    const char *addr = lm_test_cluster_scheduler(guarded);
    char *dir = lm_test_tmpdir("token");
    setenv("LUMEN_RUN_DIR", dir, 1); /* an empty run dir: no token there */
    lumen_client *c = NULL;
    LM_ASSERT_CODE(lumen_connect(addr, NULL, &c), LUMEN_UNAUTHENTICATED);
    lumen_connect_opts wrong = {.token = "guess"};
    LM_ASSERT_CODE(lumen_connect(addr, &wrong, &c), LUMEN_UNAUTHENTICATED);
    lumen_connect_opts right = {.token = "t0k3n-for-tests"};
    LM_ASSERT_OK(lumen_connect(addr, &right, &c));
    lumen_close(c);

    char path[600];
    snprintf(path, sizeof path, "%s/token", dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("t0k3n-for-tests\n", f);
    fclose(f);
    LM_ASSERT_OK(lumen_connect(addr, NULL, &c)); /* from the run dir */
    lumen_ref r;
    lumen_arg a = lumen_arg_bytes("guarded", 7);
    LM_ASSERT_OK(lumen_call(c, "test.echo", &a, 1, NULL, &r));
    lumen_bytes b = {0};
    LM_ASSERT_OK(lumen_get(c, r, 20000, &b));
    CU_ASSERT_TRUE(b.len == 7 && memcmp(b.data, "guarded", 7) == 0);
    lumen_bytes_free(&b);
    lumen_close(c);

    unsetenv("LUMEN_RUN_DIR");
    lm_test_rmtree(dir);
    free(dir);
    lm_test_cluster_stop(guarded);
}

static void test_connect_errors(void) {
    lumen_client *c = NULL;
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", lm_test_free_port());
    /* Tried again for connect_timeout_ms, then refused clearly. */
    lumen_connect_opts opts = {.rpc_timeout_ms = 1000, .connect_timeout_ms = 300};
    lumen_status st = lumen_connect(addr, &opts, &c);
    LM_ASSERT_CODE(st, LUMEN_UNAVAILABLE);
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, addr));
    CU_ASSERT_PTR_NULL(c);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"echo", test_echo},
        {"chain of 100 tasks through refs", test_chain_of_refs},
        {"10,000 small tasks", test_ten_thousand_tasks},
        {"map and reduce", test_map_reduce},
        {"put, then pass as an argument", test_put_and_pass_as_argument},
        {"a ref put by another client", test_ref_put_by_another_client},
        {"big arguments and results", test_big_arguments_and_results},
        {"1 GiB object put and read back", test_gigabyte_object},
        {"errors are clear; the cluster keeps serving", test_errors_are_clear_and_cluster_keeps_serving},
        {"get honours its timeout", test_get_timeout},
        {"wait for the first k of n", test_wait_first_k},
        {"library upload", test_library_upload},
        {"one client, many threads", test_one_client_many_threads},
        {"records in redis", test_redis_records},
        {"job end releases its objects", test_job_end_releases_objects},
        {"connect errors", test_connect_errors},
        {"a cluster with a token", test_token},
        {"a worker killed mid-task: its tasks run elsewhere", test_worker_killed_mid_task},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("cluster", tests, suite_init, suite_cleanup);
}

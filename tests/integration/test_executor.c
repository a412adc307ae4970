/*
 * The executor pool on its own: real lumen-executor processes loading the
 * real test library (build/lib/liblumentest.so), real signals, real limits.
 */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "executor_pool.h"
#include "log.h"
#include "test_util.h"

static lm_exec_pool *pool;

static int suite_init(void) {
    lm_log_set_level(LM_LOG_WARN);
    lm_exec_pool_opts opts = {
        .executor_path = LUMEN_TEST_BIN_DIR "/lumen-executor",
        .library_path = LUMEN_TEST_LIB_DIR,
        .slots = 2,
    };
    lumen_status st = lm_exec_pool_new(&opts, &pool);
    if (!LM_IS_OK(st)) fprintf(stderr, "pool: %s\n", st.msg);
    return LM_IS_OK(st) ? 0 : 1;
}

static int suite_cleanup(void) {
    lm_exec_pool_free(pool);
    return 0;
}

/* Runs fn with string arguments; the result is out's to free. */
static void run_opts(const char *fn, const char *const *argv, size_t n, int64_t timeout_ms, uint64_t mem,
                     lm_exec_result *out) {
    lumen_bytes args[8];
    for (size_t i = 0; i < n; i++) args[i] = (lumen_bytes){(void *)argv[i], strlen(argv[i])};
    lm_exec_task t = {.task_id = lm_id_random(), .function = fn, .args = args, .nargs = n,
                      .timeout_ms = timeout_ms, .memory_limit = mem};
    lm_exec_pool_run(pool, &t, out);
}

static void run(const char *fn, const char *const *argv, size_t n, lm_exec_result *out) {
    run_opts(fn, argv, n, 0, 0, out);
}

static bool result_is(const lm_exec_result *r, const char *want) {
    if (!LM_IS_OK(r->status)) fprintf(stderr, "\n  task failed: %s\n", r->status.msg);
    return LM_IS_OK(r->status) && r->len == strlen(want) && memcmp(r->data, want, r->len) == 0;
}

static bool contains(const lm_exec_result *r, const char *want) {
    bool ok = strstr(r->status.msg, want) != NULL;
    if (!ok) fprintf(stderr, "\n  \"%s\" lacks \"%s\"\n", r->status.msg, want);
    return ok;
}

static void test_echo_add(void) {
    lm_exec_result r;
    run("test.echo", (const char *[]){"hello executor"}, 1, &r);
    CU_ASSERT_TRUE(result_is(&r, "hello executor"));
    lm_exec_result_free(&r);
    run("test.add", (const char *[]){"40", "2", "-5"}, 3, &r);
    CU_ASSERT_TRUE(result_is(&r, "37"));
    lm_exec_result_free(&r);
    run("test.concat", (const char *[]){"ab", "", "cd"}, 3, &r);
    CU_ASSERT_TRUE(result_is(&r, "abcd"));
    lm_exec_result_free(&r);
    run("test.concat", NULL, 0, &r); /* an empty result */
    CU_ASSERT_TRUE(result_is(&r, ""));
    lm_exec_result_free(&r);
}

static void test_unknown_function(void) {
    lm_exec_result r;
    run("nope.missing", NULL, 0, &r);
    CU_ASSERT_EQUAL(r.status.code, LUMEN_NOT_FOUND);
    CU_ASSERT_TRUE(contains(&r, "unknown function \"nope.missing\" (registered: "));
    CU_ASSERT_TRUE(contains(&r, "test.echo"));
    CU_ASSERT_TRUE(contains(&r, "test.add"));
    lm_exec_result_free(&r);
}

static void test_fail_message(void) {
    lm_exec_result r;
    run("test.fail", (const char *[]){"because"}, 1, &r);
    CU_ASSERT_EQUAL(r.status.code, LUMEN_TASK_FAILED);
    CU_ASSERT_STRING_EQUAL(r.status.msg, "failed on purpose: because");
    CU_ASSERT_EQUAL(r.len, 0);
    lm_exec_result_free(&r);
    run("test.add", (const char *[]){"x"}, 1, &r);
    CU_ASSERT_TRUE(contains(&r, "not a decimal number"));
    lm_exec_result_free(&r);
}

static void test_crash_and_respawn(void) {
    unsigned spawned = lm_exec_pool_spawns(pool);
    lm_exec_result r;
    run("test.crash", NULL, 0, &r);
    CU_ASSERT_EQUAL(r.status.code, LUMEN_TASK_FAILED);
    CU_ASSERT_TRUE(contains(&r, "test.crash crashed: signal 11 (Segmentation fault)"));
    lm_exec_result_free(&r);
    run("test.abort", NULL, 0, &r);
    CU_ASSERT_EQUAL(r.status.code, LUMEN_TASK_FAILED);
    CU_ASSERT_TRUE(contains(&r, "test.abort crashed: signal 6 (Aborted)"));
    lm_exec_result_free(&r);
    CU_ASSERT_EQUAL(lm_exec_pool_spawns(pool), spawned + 2);
    for (int i = 0; i < 4; i++) { /* both executors serve again */
        run("test.echo", (const char *[]){"after"}, 1, &r);
        CU_ASSERT_TRUE(result_is(&r, "after"));
        lm_exec_result_free(&r);
    }
}

static void test_time_limit(void) {
    lm_exec_result r;
    uint64_t t0 = lm_test_now_us();
    run_opts("test.sleep", (const char *[]){"10000"}, 1, 300, 0, &r);
    uint64_t ms = (lm_test_now_us() - t0) / 1000;
    CU_ASSERT_EQUAL(r.status.code, LUMEN_DEADLINE_EXCEEDED);
    CU_ASSERT_TRUE(contains(&r, "test.sleep timed out after 300 ms"));
    CU_ASSERT_TRUE(ms >= 300 && ms < 2000);
    lm_exec_result_free(&r);
    run_opts("test.sleep", (const char *[]){"10"}, 1, 5000, 0, &r); /* within its limit */
    CU_ASSERT_TRUE(result_is(&r, "slept"));
    lm_exec_result_free(&r);
}

static void test_memory_limit(void) {
    lm_exec_result r;
    run_opts("test.alloc", (const char *[]){"1024"}, 1, 0, 64u << 20, &r);
    CU_ASSERT_EQUAL(r.status.code, LUMEN_RESOURCE_EXHAUSTED);
    CU_ASSERT_TRUE(contains(&r, "test.alloc exceeded its memory limit of 67108864 bytes"));
    lm_exec_result_free(&r);
    run_opts("test.alloc", (const char *[]){"16"}, 1, 0, 64u << 20, &r); /* fits */
    CU_ASSERT_TRUE(result_is(&r, "16"));
    lm_exec_result_free(&r);
    run("test.alloc", (const char *[]){"128"}, 1, &r); /* the limit is gone afterwards */
    CU_ASSERT_TRUE(result_is(&r, "128"));
    lm_exec_result_free(&r);
}

/* Big arguments and results travel in memfds. */
static void test_big_payloads(void) {
    size_t n = 3u << 20;
    char *a = malloc(n), *b = malloc(n);
    for (size_t i = 0; i < n; i++) a[i] = (char)(i * 7), b[i] = (char)(i * 13);
    lumen_bytes args[2] = {{a, n}, {b, n}};
    lm_exec_task t = {.task_id = lm_id_random(), .function = "test.concat", .args = args, .nargs = 2};
    lm_exec_result r;
    lm_exec_pool_run(pool, &t, &r);
    LM_ASSERT_OK(r.status);
    CU_ASSERT_EQUAL_FATAL(r.len, 2 * n);
    CU_ASSERT_TRUE(memcmp(r.data, a, n) == 0 && memcmp(r.data + n, b, n) == 0);
    lm_exec_result_free(&r);
    t.function = "test.size";
    lm_exec_pool_run(pool, &t, &r);
    CU_ASSERT_TRUE(result_is(&r, "6291456"));
    lm_exec_result_free(&r);
    free(a);
    free(b);
}

/* What a task prints is its log; a task that prints nothing has none. */
static void test_print(void) {
    lm_exec_result r;
    run("test.print", (const char *[]){"from the executor test"}, 1, &r);
    CU_ASSERT_TRUE(result_is(&r, "printed"));
    const char *want = "test.print stdout: from the executor test\ntest.print stderr: from the executor test\n";
    CU_ASSERT_TRUE(r.log != NULL && r.log_len == strlen(want) && memcmp(r.log, want, r.log_len) == 0);
    lm_exec_result_free(&r);
    run("test.echo", (const char *[]){"quiet"}, 1, &r);
    CU_ASSERT_TRUE(result_is(&r, "quiet"));
    CU_ASSERT_PTR_NULL(r.log);
    CU_ASSERT_EQUAL(r.log_len, 0);
    lm_exec_result_free(&r);
}

/* ---- many tasks from 6 threads through the 2 executors */

#define THREADS 6
#define PER_THREAD 100

static void *adder(void *arg) {
    long k = (long)arg, bad = 0;
    for (int i = 0; i < PER_THREAD; i++) {
        char x[16], y[16], want[16];
        snprintf(x, sizeof x, "%ld", k * 1000 + i);
        snprintf(y, sizeof y, "%d", i);
        snprintf(want, sizeof want, "%ld", k * 1000 + 2 * i);
        lm_exec_result r;
        run("test.add", (const char *[]){x, y}, 2, &r);
        if (!LM_IS_OK(r.status) || r.len != strlen(want) || memcmp(r.data, want, r.len) != 0) bad++;
        if (lm_exec_pool_busy(pool) > 2) bad++;
        lm_exec_result_free(&r);
    }
    return (void *)bad;
}

static void test_many_tasks(void) {
    pthread_t th[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, adder, (void *)i);
    long bad = 0;
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(th[i], &r);
        bad += (long)r;
    }
    CU_ASSERT_EQUAL(bad, 0);
}

/* ---- cancel a running task */

typedef struct sleeper {
    lm_id id;
    lm_exec_result r;
} sleeper;

static void *sleep_task(void *arg) {
    sleeper *s = arg;
    lumen_bytes a = {"10000", 5};
    lm_exec_task t = {.task_id = s->id, .function = "test.sleep", .args = &a, .nargs = 1};
    lm_exec_pool_run(pool, &t, &s->r);
    return NULL;
}

static void test_cancel(void) {
    sleeper s = {.id = lm_id_random()};
    pthread_t th;
    pthread_create(&th, NULL, sleep_task, &s);
    bool found = false;
    for (int i = 0; i < 200 && !found; i++) { /* until it runs */
        lm_test_sleep_ms(10);
        found = lm_exec_pool_cancel(pool, s.id);
    }
    CU_ASSERT_TRUE(found);
    uint64_t t0 = lm_test_now_us();
    pthread_join(th, NULL);
    CU_ASSERT_TRUE(lm_test_now_us() - t0 < 3000000);
    CU_ASSERT_EQUAL(s.r.status.code, LUMEN_CANCELLED);
    lm_exec_result_free(&s.r);
    CU_ASSERT_FALSE(lm_exec_pool_cancel(pool, lm_id_random()));
}

/* Kills this process's lumen-executor children (the pool's); returns how many. */
static int kill_executors(void) {
    int killed = 0;
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        char path[300], comm[64];
        int pid, ppid;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL) continue;
        if (fscanf(f, "%d (%63[^)]) %*c %d", &pid, comm, &ppid) == 3 && ppid == getpid() &&
            strcmp(comm, "lumen-executor") == 0)
            killed += kill(pid, SIGKILL) == 0;
        fclose(f);
    }
    if (d) closedir(d);
    return killed;
}

/* Executors killed while idle are replaced before the next task. */
static void test_idle_death(void) {
    CU_ASSERT_EQUAL(kill_executors(), 2);
    lm_test_sleep_ms(100);
    for (int i = 0; i < 4; i++) {
        lm_exec_result r;
        run("test.echo", (const char *[]){"alive"}, 1, &r);
        CU_ASSERT_TRUE(result_is(&r, "alive"));
        lm_exec_result_free(&r);
    }
}

/* A bad executor path is a clear error at once. */
static void test_bad_executor(void) {
    lm_exec_pool_opts opts = {.executor_path = "/nonexistent/lumen-executor", .library_path = "", .slots = 1};
    lm_exec_pool *p = NULL;
    lumen_status st = lm_exec_pool_new(&opts, &p);
    CU_ASSERT_EQUAL(st.code, LUMEN_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "/nonexistent/lumen-executor"));
    CU_ASSERT_PTR_NULL(p);
    lm_exec_pool_free(NULL);
}

/* Shutdown ends a running task with WORKER_DIED and refuses new ones. */
static void test_shutdown(void) {
    sleeper s = {.id = lm_id_random()};
    pthread_t th;
    pthread_create(&th, NULL, sleep_task, &s);
    while (lm_exec_pool_busy(pool) == 0) lm_test_sleep_ms(5);
    lm_test_sleep_ms(50);
    lm_exec_pool_shutdown(pool);
    pthread_join(th, NULL);
    CU_ASSERT_EQUAL(s.r.status.code, LUMEN_WORKER_DIED);
    lm_exec_result_free(&s.r);
    lm_exec_result r;
    run("test.echo", (const char *[]){"late"}, 1, &r);
    CU_ASSERT_EQUAL(r.status.code, LUMEN_WORKER_DIED);
    lm_exec_result_free(&r);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"echo, add, concat", test_echo_add},
        {"unknown function lists the registered ones", test_unknown_function},
        {"lumen_task_fail's message arrives", test_fail_message},
        {"crash and abort fail the task; executors respawn", test_crash_and_respawn},
        {"time limit kills the executor", test_time_limit},
        {"memory limit stops an allocation", test_memory_limit},
        {"big arguments and results via memfd", test_big_payloads},
        {"a function that prints: its log", test_print},
        {"600 tasks from 6 threads through 2 executors", test_many_tasks},
        {"cancel a running task", test_cancel},
        {"dead executors are replaced", test_idle_death},
        {"bad executor path", test_bad_executor},
        {"shutdown fails running and later tasks", test_shutdown},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("executor", tests, suite_init, suite_cleanup);
}

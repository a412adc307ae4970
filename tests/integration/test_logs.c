/*
 * test_logs.c - task logs: what a task, an actor's constructor or an actor
 * call writes to stdout and stderr reaches Redis (lumen:task:<id>:log) and
 * `lumen logs`, bounded to its 64 KiB head, attributed to the task that
 * wrote it (one worker with one slot, so every task shares one executor),
 * kept when the task crashes or hits its time limit, and absent when the
 * task wrote nothing.
 */
#include <hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lumen/lumen.h>

#include "client_suite.h"
#include "id.h"
#include "redis_state.h"
#include "tasklog.h"
#include "redis_server.h"
#include "test_util.h"

static lm_test_cluster *cluster;
static lumen_client *client;
static lm_redis *redis;
static redisContext *raw;
static char *dir;
static char out_path[700];
static char output[128 * 1024]; /* the last `lumen logs` output, stdout and stderr */

static int suite_init(void) {
    lm_test_cluster_opts opts = {.workers = 1, .slots = 1};
    if (lm_test_client_suite_start(&opts, &cluster, &client) != 0) return 1;
    lm_redis_opts ro = {.addr = lm_test_cluster_redis(cluster)};
    if (!LM_IS_OK(lm_redis_connect(&ro, &redis))) return 1;
    raw = lm_test_redis_connect(lm_test_cluster_redis(cluster));
    dir = lm_test_tmpdir("logs");
    if (raw == NULL || raw->err || dir == NULL) return 1;
    snprintf(out_path, sizeof out_path, "%s/out.txt", dir);
    return 0;
}

static int suite_cleanup(void) {
    redisFree(raw);
    lm_redis_free(redis);
    if (dir != NULL) lm_test_rmtree(dir);
    free(dir);
    return lm_test_client_suite_stop(cluster, client);
}

/* ---- helpers ---- */

/* Calls fn with string arguments (and a time limit when timeout_ms > 0). */
static lumen_ref call(const char *fn, const char *const *argv, size_t n, int64_t timeout_ms) {
    lumen_arg args[4];
    for (size_t i = 0; i < n; i++) args[i] = lumen_arg_bytes(argv[i], strlen(argv[i]));
    lumen_call_opts opts = {.timeout_ms = timeout_ms};
    lumen_ref r;
    LM_ASSERT_OK(lumen_call(client, fn, args, n, &opts, &r));
    return r;
}

/* Waits for the task's outcome; its status. */
static lumen_status finish(lumen_ref r) {
    lumen_bytes b = {0};
    lumen_status st = lumen_get(client, r, LM_TEST_TIMEOUT(30000), &b);
    lumen_bytes_free(&b);
    return st;
}

/* The task that makes ref r. */
static lm_id task_of(lumen_ref r) {
    lm_id id;
    memcpy(id.bytes, r.id, LM_ID_BYTES);
    memset(id.bytes + 12, 0, 4);
    return id;
}

/* The task's log once Redis has it (logs are written behind the scheduler,
 * a few ms after the result); NULL when none came within 10 s. */
static char *wait_log(lm_id task, size_t *len) {
    for (int i = 0; i < 500; i++) {
        char *log = NULL;
        lumen_status st = lm_redis_task_log_get(redis, task, &log, len);
        if (LM_IS_OK(st)) return log;
        lm_test_sleep_ms(20);
    }
    fprintf(stderr, "\n  no log for task %s\n", lm_id_str(task).s);
    return NULL;
}

static bool has(const char *log, const char *want) {
    bool ok = log != NULL && strstr(log, want) != NULL;
    if (!ok) fprintf(stderr, "\n  log lacks \"%s\":\n%s\n", want, log ? log : "(none)");
    return ok;
}

static bool key_exists(lm_id task) {
    redisReply *rep = redisCommand(raw, "EXISTS lumen:task:%s:log", lm_id_str(task).s);
    bool yes = rep != NULL && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    freeReplyObject(rep);
    return yes;
}

/* Runs `lumen logs ID --redis ADDR` (more args after id); its exit code,
 * what it printed in `output`. */
static int lumen_logs(const char *id, const char *extra) {
    char *argv[] = {(char *)lm_test_bin("lumen"), "logs", (char *)id, "--redis",
                    (char *)lm_test_cluster_redis(cluster), (char *)extra, NULL};
    return lm_test_run(argv, out_path, true, output, sizeof output);
}

/* ---- tests ---- */

static void test_print_reaches_redis_and_cli(void) {
    lumen_ref r = call("test.print", (const char *[]){"hello logs"}, 1, 0);
    LM_ASSERT_OK(finish(r));
    size_t len;
    char *log = wait_log(task_of(r), &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    /* stdout is line-buffered in the executor: the lines come in order. */
    CU_ASSERT_STRING_EQUAL(log, "test.print stdout: hello logs\ntest.print stderr: hello logs\n");
    CU_ASSERT_EQUAL(len, strlen(log));

    CU_ASSERT_EQUAL(lumen_logs(lm_id_str(task_of(r)).s, NULL), 0);
    CU_ASSERT_STRING_EQUAL(output, log);
    char hex[33]; /* the result's id names its task */
    lumen_ref_hex(r, hex);
    CU_ASSERT_EQUAL(lumen_logs(hex, NULL), 0);
    CU_ASSERT_STRING_EQUAL(output, log);
    free(log);
}

static void test_thread_output(void) {
    lumen_ref r = call("test.print_thread", (const char *[]){"T1"}, 1, 0);
    LM_ASSERT_OK(finish(r));
    size_t len;
    char *log = wait_log(task_of(r), &len);
    CU_ASSERT_TRUE(has(log, "from a thread of the task: T1\n"));
    CU_ASSERT_TRUE(has(log, "from a thread of the task (stderr): T1\n"));
    free(log);
}

/* Tasks one after another on one executor: each log holds its own lines,
 * and a task that wrote nothing has no key at all. */
static void test_interleaved_tasks_and_silence(void) {
    lumen_ref a = call("test.print", (const char *[]){"task A"}, 1, 0);
    lumen_ref quiet = call("test.echo", (const char *[]){"says nothing"}, 1, 0);
    lumen_ref b = call("test.print_thread", (const char *[]){"task B"}, 1, 0);
    lumen_ref c = call("test.print_lines", (const char *[]){"task C", "2"}, 2, 0);
    lumen_ref d = call("test.print", (const char *[]){"task D"}, 1, 0);
    lumen_ref all[] = {a, quiet, b, c, d};
    for (size_t i = 0; i < 5; i++) LM_ASSERT_OK(finish(all[i]));
    size_t len;
    char *la = wait_log(task_of(a), &len), *lb = wait_log(task_of(b), &len), *lc = wait_log(task_of(c), &len),
         *ld = wait_log(task_of(d), &len);
    CU_ASSERT_STRING_EQUAL(la ? la : "", "test.print stdout: task A\ntest.print stderr: task A\n");
    CU_ASSERT_STRING_EQUAL(lb ? lb : "",
                           "from a thread of the task: task B\nfrom a thread of the task (stderr): task B\n");
    CU_ASSERT_STRING_EQUAL(lc ? lc : "",
                           "task C line 000000 of a long output\ntask C line 000001 of a long output\n");
    CU_ASSERT_STRING_EQUAL(ld ? ld : "", "test.print stdout: task D\ntest.print stderr: task D\n");
    /* The quiet task's record was written before d's log: no key came. */
    CU_ASSERT_FALSE(key_exists(task_of(quiet)));
    char *none = NULL;
    LM_ASSERT_CODE(lm_redis_task_log_get(redis, task_of(quiet), &none, &len), LUMEN_NOT_FOUND);
    CU_ASSERT_PTR_NULL(none);
    CU_ASSERT_EQUAL(lumen_logs(lm_id_str(task_of(quiet)).s, NULL), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(output, "wrote nothing"));
    free(la);
    free(lb);
    free(lc);
    free(ld);
}

/* 3000 lines of 33 bytes: the log is their head, cut at a line, and says
 * how much more there was. */
static void test_truncation(void) {
    lumen_ref r = call("test.print_lines", (const char *[]){"big", "3000"}, 2, 0);
    LM_ASSERT_OK(finish(r));
    size_t len;
    char *log = wait_log(task_of(r), &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    CU_ASSERT_TRUE(len <= LM_TASK_LOG_MAX);
    CU_ASSERT_TRUE(len > LM_TASK_LOG_MAX - 1024);
    CU_ASSERT_EQUAL(strncmp(log, "big line 000000 of a long output\n", 33), 0);
    const char *marker = strstr(log, "...[truncated ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(marker);
    CU_ASSERT_TRUE(marker > log && marker[-1] == '\n'); /* the head ends a line */
    size_t line = strlen("big line 000000 of a long output\n"), kept = (size_t)(marker - log);
    CU_ASSERT_EQUAL(kept % line, 0);
    unsigned long long cut = 0;
    CU_ASSERT_EQUAL(sscanf(marker, "...[truncated %llu bytes]", &cut), 1);
    CU_ASSERT_EQUAL(kept + cut, 3000 * line);
    CU_ASSERT_EQUAL(log[len - 1], '\n');
    free(log);
}

/* What a task wrote before it crashed, the unfinished last line included. */
static void test_crash_keeps_output(void) {
    lumen_ref r = call("test.print_crash", (const char *[]){"kaboom"}, 1, 0);
    lumen_status st = finish(r);
    CU_ASSERT_EQUAL(st.code, LUMEN_TASK_FAILED);
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "crashed"));
    size_t len;
    char *log = wait_log(task_of(r), &len);
    CU_ASSERT_TRUE(has(log, "before the crash (stdout): kaboom\n"));
    CU_ASSERT_TRUE(has(log, "before the crash (stderr): kaboom\n"));
    CU_ASSERT_TRUE(has(log, "an unfinished line: kaboom"));
    free(log);
    /* The executor was replaced; the next task's log is its own. */
    lumen_ref next = call("test.print", (const char *[]){"after the crash"}, 1, 0);
    LM_ASSERT_OK(finish(next));
    log = wait_log(task_of(next), &len);
    CU_ASSERT_STRING_EQUAL(log ? log : "", "test.print stdout: after the crash\ntest.print stderr: after the crash\n");
    free(log);
}

static void test_time_limit_keeps_output(void) {
    lumen_ref r = call("test.print_sleep", (const char *[]){"zzz", "20000"}, 2, 300);
    lumen_status st = finish(r);
    CU_ASSERT_EQUAL(st.code, LUMEN_DEADLINE_EXCEEDED);
    size_t len;
    char *log = wait_log(task_of(r), &len);
    CU_ASSERT_STRING_EQUAL(log ? log : "", "about to sleep: zzz\n");
    free(log);
}

static void test_memory_limit_keeps_output(void) {
    lumen_arg args[2] = {lumen_arg_bytes("big", 3), lumen_arg_bytes("1024", 4)};
    lumen_call_opts opts = {.memory_limit = 64u << 20, .max_retries = 1};
    lumen_ref r;
    LM_ASSERT_OK(lumen_call(client, "test.print_alloc", args, 2, &opts, &r));
    lumen_status st = finish(r);
    CU_ASSERT_EQUAL(st.code, LUMEN_RESOURCE_EXHAUSTED);
    size_t len;
    char *log = wait_log(task_of(r), &len);
    CU_ASSERT_TRUE(has(log, "about to allocate: big\n"));
    free(log);
}

/* An actor's constructor and its method calls have logs of their own. */
static void test_actor_logs(void) {
    lumen_actor actor;
    lumen_arg start = lumen_arg_bytes("41", 2);
    LM_ASSERT_OK(lumen_actor_new(client, "test.Counter", &start, 1, NULL, &actor));
    lumen_arg say = lumen_arg_bytes("hello from a method", 19);
    lumen_ref r;
    LM_ASSERT_OK(lumen_actor_call(client, actor, "say", &say, 1, &r));
    LM_ASSERT_OK(finish(r));
    size_t len;
    char *log = wait_log(task_of(r), &len);
    CU_ASSERT_STRING_EQUAL(log ? log : "", "test.Counter says: hello from a method\n");
    CU_ASSERT_EQUAL(lumen_logs(lm_id_str(task_of(r)).s, NULL), 0);
    CU_ASSERT_STRING_EQUAL(output, "test.Counter says: hello from a method\n");
    free(log);
    /* The constructor ran as a task of its own (fn: the class). */
    bool found = false;
    for (int tries = 0; tries < 250 && !found; tries++) {
        redisReply *keys = redisCommand(raw, "KEYS lumen:task:*:log");
        for (size_t i = 0; keys && keys->type == REDIS_REPLY_ARRAY && i < keys->elements && !found; i++) {
            redisReply *v = redisCommand(raw, "GET %s", keys->element[i]->str);
            if (v && v->type == REDIS_REPLY_STRING && strcmp(v->str, "test.Counter starts at 41\n") == 0) {
                char task[LM_ID_HEX_LEN + 1];
                snprintf(task, sizeof task, "%.32s", keys->element[i]->str + strlen("lumen:task:"));
                redisReply *fn = redisCommand(raw, "HGET lumen:task:%s fn", task);
                found = fn && fn->type == REDIS_REPLY_STRING && strcmp(fn->str, "test.Counter") == 0;
                freeReplyObject(fn);
            }
            freeReplyObject(v);
        }
        freeReplyObject(keys);
        if (!found) lm_test_sleep_ms(20);
    }
    CU_ASSERT_TRUE(found);
    LM_ASSERT_OK(lumen_actor_kill(client, actor));
}

static void test_cli_errors(void) {
    CU_ASSERT_EQUAL(lumen_logs("0123456789abcdef0123456700000000", NULL), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(output, "no task 0123456789abcdef0123456700000000"));
    CU_ASSERT_EQUAL(lumen_logs("not-an-id", NULL), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(output, "32 hex digits"));
    CU_ASSERT_EQUAL(lumen_logs("0123456789abcdef0123456700000000", "--redis=nohost"), 2);
    char *argv[] = {(char *)lm_test_bin("lumen"), "logs", NULL};
    CU_ASSERT_EQUAL(lm_test_run(argv, out_path, true, output, sizeof output), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(output, "TASK_ID"));
}

int main(void) {
    CU_TestInfo tests[] = {
        {"a task's stdout and stderr reach Redis and `lumen logs`", test_print_reaches_redis_and_cli},
        {"a thread of the task writes into its log", test_thread_output},
        {"tasks on one executor get only their own output; silent ones no key", test_interleaved_tasks_and_silence},
        {"a flood of output keeps its 64 KiB head and says what was cut", test_truncation},
        {"a crashed task keeps what it wrote, its last line included", test_crash_keeps_output},
        {"a task over its time limit keeps what it wrote", test_time_limit_keeps_output},
        {"a task over its memory limit keeps what it wrote", test_memory_limit_keeps_output},
        {"actor constructors and method calls have logs", test_actor_logs},
        {"lumen logs: unknown task, bad id, missing id", test_cli_errors},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("logs", tests, suite_init, suite_cleanup);
}

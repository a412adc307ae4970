/*
 * test_redis_state.c - the Redis state module against a real redis-server:
 * the key layout as redis-cli shows it, pipelining, pub/sub, AUTH, and a
 * Redis that is killed and restarted under a running client.
 */
#include <hiredis/hiredis.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "redis_server.h"
#include "redis_state.h"
#include "test_util.h"

/* ---- helpers ---- */

static lm_test_redis *start_redis(const lm_test_redis_opts *opts) {
    lm_test_redis *s = NULL;
    lumen_status st = lm_test_redis_start(opts, &s);
    if (!LM_IS_OK(st)) fprintf(stderr, "\nredis: %s\n", st.msg);
    CU_ASSERT_FATAL(s != NULL);
    return s;
}

static lm_redis *connect_redis(const lm_test_redis *s, const char *prefix, const char *password) {
    /* A guard against a hang, not a figure: the census pipelines 2,500
     * records, which took over 1 s under ASan on a busy 2-core machine. */
    lm_redis_opts opts = {.addr = lm_test_redis_addr(s), .prefix = prefix, .password = password,
                          .timeout_ms = (unsigned)LM_TEST_TIMEOUT(5000)};
    lm_redis *r = NULL;
    LM_ASSERT_OK(lm_redis_connect(&opts, &r));
    return r;
}

/* A plain hiredis connection: what a user with redis-cli sees. */
static redisContext *raw_connect(const lm_test_redis *s, const char *password) {
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", lm_test_redis_port(s), tv);
    CU_ASSERT_FATAL(c != NULL && c->err == 0);
    if (password) freeReplyObject(redisCommand(c, "AUTH %s", password));
    return c;
}

static redisReply *raw(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    CU_ASSERT_FATAL(rep != NULL);
    return rep;
}

static long long raw_int(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    CU_ASSERT_FATAL(rep != NULL);
    CU_ASSERT_EQUAL(rep->type, REDIS_REPLY_INTEGER);
    long long v = rep->integer;
    freeReplyObject(rep);
    return v;
}

/* HGET key field, as a malloc'd string; NULL when absent. */
static char *hget(redisContext *c, const char *key, const char *field) {
    redisReply *rep = raw(c, "HGET %s %s", key, field);
    char *v = rep->type == REDIS_REPLY_STRING ? strdup(rep->str) : NULL;
    freeReplyObject(rep);
    return v;
}

#define EXPECT_FIELD(c, key, field, want) expect_field(c, key, field, want, __LINE__)
static void expect_field(redisContext *c, const char *key, const char *field, const char *want,
                         int line) {
    char *got = hget(c, key, field);
    bool ok = got != NULL && strcmp(got, want) == 0;
    if (!ok)
        fprintf(stderr, "\nline %d: HGET %s %s = %s%s%s, want \"%s\"\n", line, key, field,
                got ? "\"" : "", got ? got : "(nil)", got ? "\"" : "", want);
    CU_assertImplementation(ok, (unsigned)line, "EXPECT_FIELD", __FILE__, "", CU_FALSE);
    free(got);
}

/* A time field written between lo and hi. */
#define EXPECT_TIME(c, key, field, lo, hi) expect_time(c, key, field, lo, hi, __LINE__)
static void expect_time(redisContext *c, const char *key, const char *field, uint64_t lo,
                        uint64_t hi, int line) {
    char *got = hget(c, key, field);
    uint64_t v = got ? strtoull(got, NULL, 10) : 0;
    bool ok = v >= lo && v <= hi;
    if (!ok)
        fprintf(stderr, "\nline %d: HGET %s %s = %s, want %" PRIu64 "..%" PRIu64 "\n", line, key,
                field, got ? got : "(nil)", lo, hi);
    CU_assertImplementation(ok, (unsigned)line, "EXPECT_TIME", __FILE__, "", CU_FALSE);
    free(got);
}

static bool ids_contain(const lm_id *ids, size_t n, lm_id want) {
    for (size_t i = 0; i < n; i++)
        if (lm_id_equal(ids[i], want)) return true;
    return false;
}

/* Collects a subscriber's messages; tests wait on the condvar. */
typedef struct collector {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char **msgs;
    size_t n, cap;
    size_t gaps; /* reconnects seen */
} collector;

static void collector_init(collector *c) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &attr);
    pthread_condattr_destroy(&attr);
}

static void collector_fini(collector *c) {
    for (size_t i = 0; i < c->n; i++) free(c->msgs[i]);
    free(c->msgs);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
}

static void collect(void *arg, const char *msg, size_t len) {
    collector *c = arg;
    pthread_mutex_lock(&c->mu);
    if (msg == NULL) {
        c->gaps++;
    } else {
        if (c->n == c->cap) {
            c->cap = c->cap ? 2 * c->cap : 64;
            c->msgs = realloc(c->msgs, c->cap * sizeof *c->msgs);
        }
        c->msgs[c->n++] = strndup(msg, len);
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Waits until at least n messages and gaps reconnects arrived. */
static bool collector_wait(collector *c, size_t n, size_t gaps, unsigned timeout_ms) {
    struct timespec dl = lm_timespec_in(CLOCK_MONOTONIC, timeout_ms);
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    while ((c->n < n || c->gaps < gaps) && rc == 0) rc = pthread_cond_timedwait(&c->cv, &c->mu, &dl);
    bool ok = c->n >= n && c->gaps >= gaps;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static lm_redis_subscriber *subscribe(const lm_test_redis *s, const char *prefix,
                                      const char *password, collector *c) {
    lm_redis_opts opts = {.addr = lm_test_redis_addr(s), .prefix = prefix, .password = password,
                          .timeout_ms = 1000};
    lm_redis_subscriber *sub = NULL;
    LM_ASSERT_OK(lm_redis_subscriber_new(&opts, NULL, collect, c, &sub));
    return sub;
}

/* Publishes n node_joined events and checks they all arrive, in order,
 * after the first `already` messages. */
static void publish_and_expect(lm_redis *r, collector *c, size_t already, size_t n) {
    lm_id *ids = calloc(n, sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        char addr[32];
        snprintf(addr, sizeof addr, "10.0.%zu.%zu:7402", i / 256, i % 256);
        ids[i] = lm_id_random();
        LM_ASSERT_OK(lm_redis_publish(r, LM_EVENT_NODE_JOINED, ids[i], addr));
    }
    CU_ASSERT_FATAL(collector_wait(c, already + n, 0, 5000));
    pthread_mutex_lock(&c->mu);
    CU_ASSERT_EQUAL(c->n, already + n);
    for (size_t i = 0; i < n && already + i < c->n; i++) {
        const char *msg = c->msgs[already + i];
        lm_redis_event ev;
        char addr[32];
        snprintf(addr, sizeof addr, "10.0.%zu.%zu:7402", i / 256, i % 256);
        CU_ASSERT_FATAL(lm_redis_event_parse(msg, strlen(msg), &ev));
        CU_ASSERT_STRING_EQUAL(ev.type, LM_EVENT_NODE_JOINED);
        CU_ASSERT(lm_id_equal(ev.id, ids[i]));
        CU_ASSERT(ev.detail_len == strlen(addr) && memcmp(ev.detail, addr, ev.detail_len) == 0);
    }
    pthread_mutex_unlock(&c->mu);
    free(ids);
}

/* ---- tests ---- */

static void test_connect_errors(void) {
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", lm_test_free_port());
    lm_redis_opts opts = {.addr = addr};
    lm_redis *r = NULL;
    uint64_t t0 = lm_test_now_us();
    lumen_status st = lm_redis_connect(&opts, &r);
    CU_ASSERT(lm_test_now_us() - t0 < 1000000);
    LM_ASSERT_CODE(st, LUMEN_UNAVAILABLE);
    CU_ASSERT(r == NULL);
    char want[64];
    snprintf(want, sizeof want, "redis %s: connection refused", addr);
    if (strcmp(st.msg, want) != 0) fprintf(stderr, "\ngot \"%s\", want \"%s\"\n", st.msg, want);
    CU_ASSERT_STRING_EQUAL(st.msg, want);

    const char *bad[] = {"localhost", "localhost:", ":6379", "host:99999", "host:12x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        opts.addr = bad[i];
        LM_ASSERT_CODE(lm_redis_connect(&opts, &r), LUMEN_INVALID_ARGUMENT);
    }
    lm_redis_free(NULL);
    lm_redis_subscriber_free(NULL);
    lm_node_list_free(NULL);
}

static void test_node_layout(void) {
    lm_test_redis *s = start_redis(NULL);
    lm_redis *r = connect_redis(s, NULL, NULL);
    redisContext *c = raw_connect(s, NULL);
    lm_id id = lm_id_random();
    char key[128];
    snprintf(key, sizeof key, "lumen:node:%s", lm_id_str(id).s);

    lm_node_record rec = {.id = id, .kind = LM_NODE_WORKER, .addr = "10.1.2.3:7402", .slots = 8,
                          .slots_free = 8, .memory_limit = 1u << 30};
    uint64_t t0 = lm_wall_ms();
    LM_ASSERT_OK(lm_redis_node_register(r, &rec));
    uint64_t t1 = lm_wall_ms();
    CU_ASSERT_EQUAL(raw_int(c, "SISMEMBER lumen:nodes %s", lm_id_str(id).s), 1);
    CU_ASSERT_EQUAL(raw_int(c, "SCARD lumen:nodes"), 1);
    CU_ASSERT_EQUAL(raw_int(c, "HLEN %s", key), 9);
    EXPECT_FIELD(c, key, "kind", "worker");
    EXPECT_FIELD(c, key, "addr", "10.1.2.3:7402");
    EXPECT_FIELD(c, key, "slots", "8");
    EXPECT_FIELD(c, key, "slots_free", "8");
    EXPECT_FIELD(c, key, "state", "ALIVE");
    EXPECT_FIELD(c, key, "bytes_used", "0");
    EXPECT_FIELD(c, key, "memory_limit", "1073741824");
    EXPECT_TIME(c, key, "started_ms", t0, t1);
    EXPECT_TIME(c, key, "heartbeat_ms", t0, t1);

    t0 = lm_wall_ms();
    LM_ASSERT_OK(lm_redis_node_heartbeat(r, id, 3, 4096));
    t1 = lm_wall_ms();
    EXPECT_FIELD(c, key, "slots_free", "3");
    EXPECT_FIELD(c, key, "bytes_used", "4096");
    EXPECT_TIME(c, key, "heartbeat_ms", t0, t1);
    EXPECT_FIELD(c, key, "slots", "8");

    /* A node Redis does not know must register again; nothing is half-written. */
    lm_id stranger = lm_id_random();
    LM_ASSERT_CODE(lm_redis_node_heartbeat(r, stranger, 1, 0), LUMEN_NOT_FOUND);
    LM_ASSERT_CODE(lm_redis_node_mark_dead(r, stranger), LUMEN_NOT_FOUND);
    CU_ASSERT_EQUAL(raw_int(c, "EXISTS lumen:node:%s", lm_id_str(stranger).s), 0);

    LM_ASSERT_OK(lm_redis_node_mark_dead(r, id));
    EXPECT_FIELD(c, key, "state", "DEAD");
    CU_ASSERT_EQUAL(raw_int(c, "SISMEMBER lumen:nodes %s", lm_id_str(id).s), 1);

    redisFree(c);
    lm_redis_free(r);
    lm_test_redis_stop(s);
}

static void test_nodes_list(void) {
    lm_test_redis *s = start_redis(NULL);
    lm_redis *r = connect_redis(s, NULL, NULL);
    redisContext *c = raw_connect(s, NULL);

    lm_node_list *list = NULL;
    LM_ASSERT_OK(lm_redis_nodes_list(r, &list));
    CU_ASSERT_FATAL(list != NULL);
    CU_ASSERT_EQUAL(list->count, 0);
    lm_node_list_free(list);

    lm_node_record w = {.id = lm_id_random(), .kind = LM_NODE_WORKER, .addr = "w:7402",
                        .slots = 4, .slots_free = 4};
    lm_node_record o = {.id = lm_id_random(), .kind = LM_NODE_OBJSTORE, .addr = "o:7401",
                        .bytes_used = 10, .memory_limit = 1000};
    LM_ASSERT_OK(lm_redis_node_register(r, &w));
    LM_ASSERT_OK(lm_redis_node_register(r, &o));
    LM_ASSERT_OK(lm_redis_node_heartbeat(r, w.id, 1, 0));
    LM_ASSERT_OK(lm_redis_node_mark_dead(r, o.id));
    /* Members without a record, or that are not ids, are not nodes. */
    freeReplyObject(raw(c, "SADD lumen:nodes %s not-an-id", lm_id_str(lm_id_random()).s));

    LM_ASSERT_OK(lm_redis_nodes_list(r, &list));
    CU_ASSERT_FATAL(list != NULL);
    CU_ASSERT_EQUAL_FATAL(list->count, 2);
    for (size_t i = 0; i < list->count; i++) {
        const lm_node_record *n = &list->nodes[i];
        bool is_w = lm_id_equal(n->id, w.id);
        CU_ASSERT(is_w || lm_id_equal(n->id, o.id));
        CU_ASSERT_EQUAL(n->kind, is_w ? LM_NODE_WORKER : LM_NODE_OBJSTORE);
        CU_ASSERT_STRING_EQUAL(n->addr, is_w ? "w:7402" : "o:7401");
        CU_ASSERT_EQUAL(n->slots, is_w ? 4u : 0u);
        CU_ASSERT_EQUAL(n->slots_free, is_w ? 1u : 0u);
        CU_ASSERT_EQUAL(n->state, is_w ? LM_NODE_ALIVE : LM_NODE_DEAD);
        CU_ASSERT_EQUAL(n->bytes_used, is_w ? 0u : 10u);
        CU_ASSERT_EQUAL(n->memory_limit, is_w ? 0u : 1000u);
        CU_ASSERT(n->heartbeat_ms > 0 && n->started_ms > 0 && n->heartbeat_ms >= n->started_ms);
    }
    lm_node_list_free(list);
    redisFree(c);
    lm_redis_free(r);
    lm_test_redis_stop(s);
}

static void test_task_layout(void) {
    lm_test_redis *s = start_redis(NULL);
    lm_redis *r = connect_redis(s, NULL, NULL);
    redisContext *c = raw_connect(s, NULL);
    static const char spec[] = {'a', '\0', 'b', '\xff', '\r', '\n'};
    lm_task_record t = {.id = lm_id_random(), .fn = "wordcount.most_frequent",
                        .job = lm_id_random(), .state = LM_TASK_PENDING, .submitted_ms = 1234,
                        .spec = spec, .spec_len = sizeof spec};
    char key[128];
    snprintf(key, sizeof key, "lumen:task:%s", lm_id_str(t.id).s);

    LM_ASSERT_OK(lm_redis_tasks_put(r, &t, 1));
    CU_ASSERT_EQUAL(raw_int(c, "HLEN %s", key), 10);
    EXPECT_FIELD(c, key, "seq", "1");
    EXPECT_FIELD(c, key, "fn", "wordcount.most_frequent");
    EXPECT_FIELD(c, key, "job", lm_id_str(t.job).s);
    EXPECT_FIELD(c, key, "state", "PENDING");
    EXPECT_FIELD(c, key, "worker", "");
    EXPECT_FIELD(c, key, "attempts", "0");
    EXPECT_FIELD(c, key, "error", "");
    EXPECT_FIELD(c, key, "submitted_ms", "1234");
    EXPECT_FIELD(c, key, "finished_ms", "0");
    redisReply *rep = raw(c, "HGET %s spec", key);
    CU_ASSERT(rep->type == REDIS_REPLY_STRING && rep->len == sizeof spec &&
              memcmp(rep->str, spec, sizeof spec) == 0);
    freeReplyObject(rep);

    lm_id worker = lm_id_random();
    LM_ASSERT_OK(lm_redis_task_set_state(r, t.id, LM_TASK_RUNNING, worker, 1, NULL));
    EXPECT_FIELD(c, key, "state", "RUNNING");
    EXPECT_FIELD(c, key, "worker", lm_id_str(worker).s);
    EXPECT_FIELD(c, key, "attempts", "1");
    EXPECT_FIELD(c, key, "finished_ms", "0");

    uint64_t t0 = lm_wall_ms();
    LM_ASSERT_OK(lm_redis_task_set_state(r, t.id, LM_TASK_FAILED, worker, 2, "worker died"));
    uint64_t t1 = lm_wall_ms();
    EXPECT_FIELD(c, key, "state", "FAILED");
    EXPECT_FIELD(c, key, "attempts", "2");
    EXPECT_FIELD(c, key, "error", "worker died");
    EXPECT_TIME(c, key, "finished_ms", t0, t1);

    /* The indexes and counters followed every state the task went through. */
    char fn_counts[128], job_counts[128];
    snprintf(fn_counts, sizeof fn_counts, "lumen:fn:%s:counts", t.fn);
    snprintf(job_counts, sizeof job_counts, "lumen:job:%s:counts", lm_id_str(t.job).s);
    const char *const counts[] = {fn_counts, job_counts};
    for (int i = 0; i < 2; i++) {
        EXPECT_FIELD(c, counts[i], "submitted", "1");
        EXPECT_FIELD(c, counts[i], "PENDING", "0");
        EXPECT_FIELD(c, counts[i], "RUNNING", "0");
        EXPECT_FIELD(c, counts[i], "FAILED", "1");
        EXPECT_FIELD(c, counts[i], "failed", "1");
        EXPECT_FIELD(c, counts[i], "retried", "1");
    }
    CU_ASSERT_EQUAL(raw_int(c, "ZCARD lumen:tasks"), 1);
    CU_ASSERT_EQUAL(raw_int(c, "ZCARD lumen:tasks:FAILED"), 1);
    CU_ASSERT_EQUAL(raw_int(c, "EXISTS lumen:tasks:PENDING lumen:tasks:RUNNING"), 0);
    CU_ASSERT_EQUAL(raw_int(c, "ZRANK lumen:job:%s:tasks %s", lm_id_str(t.job).s, lm_id_str(t.id).s), 0);

    /* A put without a spec leaves the stored spec alone; submitted_ms 0 is now. */
    t.spec = NULL;
    t.submitted_ms = 0;
    t0 = lm_wall_ms();
    LM_ASSERT_OK(lm_redis_tasks_put(r, &t, 1));
    EXPECT_TIME(c, key, "submitted_ms", t0, lm_wall_ms());
    CU_ASSERT_EQUAL(raw_int(c, "HSTRLEN %s spec", key), (long long)sizeof spec);
    EXPECT_FIELD(c, key, "seq", "1"); /* written again, still the same task */
    EXPECT_FIELD(c, fn_counts, "submitted", "1");
    EXPECT_FIELD(c, fn_counts, "PENDING", "1");
    EXPECT_FIELD(c, fn_counts, "FAILED", "0");
    LM_ASSERT_OK(lm_redis_tasks_put(r, NULL, 0));

    redisFree(c);
    lm_redis_free(r);
    lm_test_redis_stop(s);
}

/* Redis's own counters of socket reads and writes. */
static void io_events(redisContext *c, long long *reads, long long *writes) {
    redisReply *rep = raw(c, "INFO stats");
    const char *p = strstr(rep->str, "total_reads_processed:");
    const char *q = strstr(rep->str, "total_writes_processed:");
    CU_ASSERT_FATAL(p != NULL && q != NULL);
    *reads = atoll(strchr(p, ':') + 1);
    *writes = atoll(strchr(q, ':') + 1);
    freeReplyObject(rep);
}

static void test_tasks_batch_1000(void) {
    enum { N = 1000 };
    lm_test_redis *s = start_redis(NULL);
    lm_redis *r = connect_redis(s, NULL, NULL);
    redisContext *c = raw_connect(s, NULL);
    lm_task_record *recs = calloc(N, sizeof *recs);
    lm_id job = lm_id_random();
    for (int i = 0; i < N; i++)
        recs[i] = (lm_task_record){.id = lm_id_random(), .fn = "wordcount.count", .job = job,
                                   .state = LM_TASK_READY, .attempts = (uint32_t)i};

    long long reads0, writes0, reads1, writes1;
    io_events(c, &reads0, &writes0);
    uint64_t t0 = lm_test_now_us();
    LM_ASSERT_OK(lm_redis_tasks_put(r, recs, N));
    uint64_t us = lm_test_now_us() - t0;
    io_events(c, &reads1, &writes1);
    /* One round trip per record would take >= N reads and N writes on the
     * server; a pipeline takes one per socket buffer's worth. */
    printf("\n  %d task records in %" PRIu64 " us; server reads %lld, writes %lld\n", N, us,
           reads1 - reads0 - 1, writes1 - writes0 - 1);
    CU_ASSERT(reads1 - reads0 < N / 4);
    CU_ASSERT(writes1 - writes0 < N / 4);

    /* the records, and 8 index and counter keys (docs: redis_state.h) */
    CU_ASSERT_EQUAL(raw_int(c, "DBSIZE"), N + 8);
    CU_ASSERT_EQUAL(raw_int(c, "ZCARD lumen:tasks:READY"), N);
    EXPECT_FIELD(c, "lumen:fn:wordcount.count:counts", "READY", "1000");
    for (int i = 0; i < N; i++)
        redisAppendCommand(c, "HMGET lumen:task:%s state attempts job", lm_id_str(recs[i].id).s);
    for (int i = 0; i < N; i++) {
        redisReply *rep = NULL;
        CU_ASSERT_FATAL(redisGetReply(c, (void **)&rep) == REDIS_OK);
        char attempts[16];
        snprintf(attempts, sizeof attempts, "%d", i);
        CU_ASSERT(rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
                  rep->element[0]->type == REDIS_REPLY_STRING &&
                  strcmp(rep->element[0]->str, "READY") == 0 &&
                  rep->element[1]->type == REDIS_REPLY_STRING &&
                  strcmp(rep->element[1]->str, attempts) == 0 &&
                  rep->element[2]->type == REDIS_REPLY_STRING &&
                  strcmp(rep->element[2]->str, lm_id_str(job).s) == 0);
        freeReplyObject(rep);
    }
    free(recs);
    redisFree(c);
    lm_redis_free(r);
    lm_test_redis_stop(s);
}

static void test_objects_and_locations(void) {
    lm_test_redis *s = start_redis(NULL);
    lm_redis *r = connect_redis(s, NULL, NULL);
    redisContext *c = raw_connect(s, NULL);
    lm_id job = lm_id_random(), task = lm_id_random();
    lm_obj_record objs[2] = {
        {.id = lm_id_for_return(task, 0), .state = LM_OBJ_PENDING, .task = task, .job = job},
        {.id = lm_id_random(), .size = 5, .state = LM_OBJ_READY}, /* a put, no job */
    };
    char key[128], locs[128];
    snprintf(key, sizeof key, "lumen:obj:%s", lm_id_str(objs[0].id).s);
    snprintf(locs, sizeof locs, "lumen:obj:%s:locs", lm_id_str(objs[0].id).s);

    LM_ASSERT_OK(lm_redis_objs_put(r, objs, 2));
    CU_ASSERT_EQUAL(raw_int(c, "HLEN %s", key), 5);
    EXPECT_FIELD(c, key, "size", "0");
    EXPECT_FIELD(c, key, "state", "PENDING");
    EXPECT_FIELD(c, key, "task", lm_id_str(task).s);
    EXPECT_FIELD(c, key, "job", lm_id_str(job).s);
    EXPECT_FIELD(c, key, "error", "");
    redisReply *rep = raw(c, "SMEMBERS lumen:job:%s:objs", lm_id_str(job).s);
    CU_ASSERT(rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
              strcmp(rep->element[0]->str, lm_id_str(objs[0].id).s) == 0);
    freeReplyObject(rep);
    snprintf(locs, sizeof locs, "lumen:obj:%s", lm_id_str(objs[1].id).s);
    EXPECT_FIELD(c, locs, "job", "");
    EXPECT_FIELD(c, locs, "task", "");
    snprintf(locs, sizeof locs, "lumen:obj:%s:locs", lm_id_str(objs[0].id).s);

    lm_id a = lm_id_random(), b = lm_id_random();
    LM_ASSERT_OK(lm_redis_obj_ready(r, objs[0].id, 100, a, (lm_id){{0}}));
    EXPECT_FIELD(c, key, "state", "READY");
    EXPECT_FIELD(c, key, "size", "100");
    CU_ASSERT_EQUAL(raw_int(c, "SISMEMBER %s %s", locs, lm_id_str(a).s), 1);
    LM_ASSERT_OK(lm_redis_obj_loc_add(r, objs[0].id, b));
    LM_ASSERT_OK(lm_redis_obj_loc_add(r, objs[0].id, b)); /* idempotent */
    CU_ASSERT_EQUAL(raw_int(c, "SCARD %s", locs), 2);

    lm_id *stores = NULL;
    size_t n = 0;
    LM_ASSERT_OK(lm_redis_obj_locs(r, objs[0].id, &stores, &n));
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT(ids_contain(stores, n, a) && ids_contain(stores, n, b));
    free(stores);

    LM_ASSERT_OK(lm_redis_obj_loc_remove(r, objs[0].id, a));
    LM_ASSERT_OK(lm_redis_obj_locs(r, objs[0].id, &stores, &n));
    CU_ASSERT(n == 1 && lm_id_equal(stores[0], b));
    free(stores);
    LM_ASSERT_OK(lm_redis_obj_loc_remove(r, objs[0].id, b));
    CU_ASSERT_EQUAL(raw_int(c, "EXISTS %s", locs), 0);
    LM_ASSERT_OK(lm_redis_obj_locs(r, objs[0].id, &stores, &n));
    CU_ASSERT_EQUAL(n, 0);
    free(stores);

    LM_ASSERT_OK(lm_redis_obj_set_state(r, objs[0].id, LM_OBJ_LOST, "store died"));
    EXPECT_FIELD(c, key, "state", "LOST");
    EXPECT_FIELD(c, key, "error", "store died");

    lm_id *owned = NULL;
    LM_ASSERT_OK(lm_redis_job_objs(r, job, &owned, &n));
    CU_ASSERT(n == 1 && lm_id_equal(owned[0], objs[0].id));
    free(owned);

    redisFree(c);
    lm_redis_free(r);
    lm_test_redis_stop(s);
}

/* A put recorded with its job, and what a job's release leaves. */
static void test_job_release(void) {
    lm_test_redis *s = start_redis(NULL);
    lm_redis *r = connect_redis(s, NULL, NULL);
    redisContext *c = raw_connect(s, NULL);
    lm_id job = lm_id_random(), other = lm_id_random(), store = lm_id_random();
    lm_id put = lm_id_random(), task = lm_id_random(), kept = lm_id_random();
    lm_obj_record made = {.id = lm_id_for_return(task, 0), .state = LM_OBJ_PENDING, .task = task, .job = job};
    LM_ASSERT_OK(lm_redis_objs_put(r, &made, 1));
    LM_ASSERT_OK(lm_redis_obj_ready(r, put, 9, store, job));
    LM_ASSERT_OK(lm_redis_obj_ready(r, kept, 3, store, other));
    LM_ASSERT_OK(lm_redis_job_start(r, job));
    char key[128];
    snprintf(key, sizeof key, "lumen:obj:%s", lm_id_str(put).s);
    EXPECT_FIELD(c, key, "job", lm_id_str(job).s);
    CU_ASSERT_EQUAL(raw_int(c, "SCARD lumen:job:%s:objs", lm_id_str(job).s), 2);

    LM_ASSERT_OK(lm_redis_job_release(r, job));
    CU_ASSERT_EQUAL(raw_int(c, "EXISTS lumen:obj:%s", lm_id_str(put).s), 0);
    CU_ASSERT_EQUAL(raw_int(c, "EXISTS lumen:obj:%s:locs", lm_id_str(put).s), 0);
    CU_ASSERT_EQUAL(raw_int(c, "EXISTS lumen:obj:%s", lm_id_str(made.id).s), 0);
    CU_ASSERT_EQUAL(raw_int(c, "EXISTS lumen:job:%s:objs", lm_id_str(job).s), 0);
    CU_ASSERT_EQUAL(raw_int(c, "EXISTS lumen:job:%s", lm_id_str(job).s), 1); /* history stays */
    CU_ASSERT_EQUAL(raw_int(c, "EXISTS lumen:obj:%s", lm_id_str(kept).s), 1); /* other jobs untouched */
    LM_ASSERT_OK(lm_redis_job_release(r, job)); /* twice is fine */

    redisFree(c);
    lm_redis_free(r);
    lm_test_redis_stop(s);
}

static void test_actor_and_job_layout(void) {
    lm_test_redis *s = start_redis(NULL);
    lm_redis *r = connect_redis(s, NULL, NULL);
    redisContext *c = raw_connect(s, NULL);
    lm_actor_record a = {.id = lm_id_random(), .class_name = "wordcount.Counter",
                         .worker = lm_id_random(), .state = LM_ACTOR_ALIVE, .name = "counter-1",
                         .job = lm_id_random()};
    char key[128];
    snprintf(key, sizeof key, "lumen:actor:%s", lm_id_str(a.id).s);
    LM_ASSERT_OK(lm_redis_actors_put(r, &a, 1));
    CU_ASSERT_EQUAL(raw_int(c, "HLEN %s", key), 9);
    EXPECT_FIELD(c, key, "class", "wordcount.Counter");
    EXPECT_FIELD(c, key, "worker", lm_id_str(a.worker).s);
    EXPECT_FIELD(c, key, "state", "ALIVE");
    EXPECT_FIELD(c, key, "restarts", "0");
    EXPECT_FIELD(c, key, "name", "counter-1");
    EXPECT_FIELD(c, key, "job", lm_id_str(a.job).s);
    EXPECT_FIELD(c, key, "error", "");
    /* A later record of the same actor (a batch of two) overwrites it. */
    lm_actor_record later[2] = {a, a};
    later[1].worker = lm_id_random();
    later[1].state = LM_ACTOR_DEAD;
    later[1].restarts = 1;
    later[1].incarnation = 2;
    later[1].calls = 12345;
    later[1].error = "its worker died";
    LM_ASSERT_OK(lm_redis_actors_put(r, later, 2));
    EXPECT_FIELD(c, key, "state", "DEAD");
    EXPECT_FIELD(c, key, "worker", lm_id_str(later[1].worker).s);
    EXPECT_FIELD(c, key, "restarts", "1");
    EXPECT_FIELD(c, key, "incarnation", "2");
    EXPECT_FIELD(c, key, "calls", "12345");
    EXPECT_FIELD(c, key, "error", "its worker died");

    lm_id job = lm_id_random();
    snprintf(key, sizeof key, "lumen:job:%s", lm_id_str(job).s);
    uint64_t t0 = lm_wall_ms();
    LM_ASSERT_OK(lm_redis_job_start(r, job));
    uint64_t t1 = lm_wall_ms();
    EXPECT_FIELD(c, key, "state", "RUNNING");
    EXPECT_TIME(c, key, "started_ms", t0, t1);
    EXPECT_FIELD(c, key, "finished_ms", "0");
    EXPECT_FIELD(c, key, "tasks", "0");
    t0 = lm_wall_ms();
    LM_ASSERT_OK(lm_redis_job_finish(r, job, 42));
    EXPECT_FIELD(c, key, "state", "FINISHED");
    EXPECT_TIME(c, key, "finished_ms", t0, lm_wall_ms());
    EXPECT_FIELD(c, key, "tasks", "42");

    CU_ASSERT_STRING_EQUAL(lm_task_state_name(LM_TASK_FINISHED), "FINISHED");
    CU_ASSERT_STRING_EQUAL(lm_task_state_name((lm_task_state)99), "?");
    redisFree(c);
    lm_redis_free(r);
    lm_test_redis_stop(s);
}

/* Every writer with prefix "test:": every key it makes carries it. */
static void test_prefix(void) {
    lm_test_redis *s = start_redis(NULL);
    lm_redis *r = connect_redis(s, "test:", NULL);
    redisContext *c = raw_connect(s, NULL);
    collector col;
    collector_init(&col);
    lm_redis_subscriber *sub = subscribe(s, "test:", NULL, &col);

    lm_id node = lm_id_random(), task = lm_id_random(), obj = lm_id_random(),
          actor = lm_id_random(), job = lm_id_random();
    lm_node_record nr = {.id = node, .kind = LM_NODE_OBJSTORE, .addr = "x:1"};
    lm_task_record tr = {.id = task, .fn = "f", .job = job};
    lm_obj_record orec = {.id = obj, .task = task, .job = job};
    lm_actor_record ar = {.id = actor, .class_name = "C", .job = job};
    LM_ASSERT_OK(lm_redis_node_register(r, &nr));
    LM_ASSERT_OK(lm_redis_node_heartbeat(r, node, 0, 1));
    LM_ASSERT_OK(lm_redis_node_mark_dead(r, node));
    LM_ASSERT_OK(lm_redis_tasks_put(r, &tr, 1));
    LM_ASSERT_OK(lm_redis_task_set_state(r, task, LM_TASK_FINISHED, node, 1, NULL));
    LM_ASSERT_OK(lm_redis_objs_put(r, &orec, 1));
    LM_ASSERT_OK(lm_redis_obj_ready(r, obj, 7, node, (lm_id){{0}}));
    LM_ASSERT_OK(lm_redis_obj_set_state(r, obj, LM_OBJ_READY, NULL));
    LM_ASSERT_OK(lm_redis_obj_loc_add(r, obj, node));
    LM_ASSERT_OK(lm_redis_actors_put(r, &ar, 1));
    LM_ASSERT_OK(lm_redis_job_start(r, job));
    LM_ASSERT_OK(lm_redis_job_finish(r, job, 1));
    lm_node_list *list = NULL;
    LM_ASSERT_OK(lm_redis_nodes_list(r, &list));
    CU_ASSERT(list != NULL && list->count == 1);
    lm_node_list_free(list);

    char want[8][128];
    snprintf(want[0], 128, "test:nodes");
    snprintf(want[1], 128, "test:node:%s", lm_id_str(node).s);
    snprintf(want[2], 128, "test:task:%s", lm_id_str(task).s);
    snprintf(want[3], 128, "test:obj:%s", lm_id_str(obj).s);
    snprintf(want[4], 128, "test:obj:%s:locs", lm_id_str(obj).s);
    snprintf(want[5], 128, "test:actor:%s", lm_id_str(actor).s);
    snprintf(want[6], 128, "test:job:%s", lm_id_str(job).s);
    snprintf(want[7], 128, "test:job:%s:objs", lm_id_str(job).s);
    /* The records, and index and counter keys: every one under the prefix. */
    redisReply *keys = raw(c, "KEYS *");
    int found = 0;
    for (size_t i = 0; i < keys->elements; i++) {
        for (int k = 0; k < 8; k++) found += strcmp(keys->element[i]->str, want[k]) == 0;
        if (strncmp(keys->element[i]->str, "test:", 5) != 0)
            fprintf(stderr, "\nunexpected key %s\n", keys->element[i]->str);
        CU_ASSERT(strncmp(keys->element[i]->str, "test:", 5) == 0);
    }
    CU_ASSERT_EQUAL(found, 8);
    freeReplyObject(keys);

    /* The event went out on test:events, and a user's PUBLISH there arrives too. */
    freeReplyObject(raw(c, "PUBLISH lumen:events not-for-us"));
    freeReplyObject(raw(c, "PUBLISH test:events from-redis-cli"));
    CU_ASSERT_FATAL(collector_wait(&col, 2, 0, 5000));
    char ready[128];
    snprintf(ready, sizeof ready, "obj_ready %s %s", lm_id_str(obj).s, lm_id_str(node).s);
    CU_ASSERT_STRING_EQUAL(col.msgs[0], ready);
    CU_ASSERT_STRING_EQUAL(col.msgs[1], "from-redis-cli");

    lm_redis_subscriber_free(sub);
    collector_fini(&col);
    redisFree(c);
    lm_redis_free(r);
    lm_test_redis_stop(s);
}

/* A census group is exactly: total records, bytes, and the given
 * "STATE", count pairs (NULL-terminated) as its only rows. */
#define EXPECT_GROUP(g, total, bytes, ...) expect_group(g, total, bytes, __LINE__, __VA_ARGS__)
static void expect_group(const lm_census_group *g, uint64_t total, uint64_t bytes, int line, ...) {
    bool ok = g->total == total && g->bytes == bytes;
    size_t rows = 0;
    va_list ap;
    va_start(ap, line);
    for (const char *state; (state = va_arg(ap, const char *)) != NULL; rows++) {
        uint64_t want = va_arg(ap, uint64_t), got = 0;
        for (size_t i = 0; i < g->nby; i++)
            if (strcmp(g->by[i].state, state) == 0) got = g->by[i].n;
        ok &= got == want;
    }
    va_end(ap);
    ok &= g->nby == rows;
    if (!ok) {
        fprintf(stderr, "\nline %d: %s: total %" PRIu64 ", bytes %" PRIu64 ", by state:", line,
                g->kind, g->total, g->bytes);
        for (size_t i = 0; i < g->nby; i++) fprintf(stderr, " %s=%" PRIu64, g->by[i].state, g->by[i].n);
        fprintf(stderr, "; want total %" PRIu64 ", bytes %" PRIu64 "\n", total, bytes);
    }
    CU_assertImplementation(ok, (unsigned)line, "EXPECT_GROUP", __FILE__, "", CU_FALSE);
}

/* Counting records by state: exact over several SCAN batches, blind to
 * sub-keys, other kinds, other prefixes and keys that only look like records,
 * with a prefix full of glob characters. */
static void test_census(void) {
    enum { TASKS = 2500 }; /* more than one SCAN ... COUNT 1000 */
    lm_test_redis *s = start_redis(NULL);
    lm_redis *r = connect_redis(s, NULL, NULL);
    lm_redis *rp = connect_redis(s, "t*[x]:", NULL); /* unescaped, MATCH would find none */
    redisContext *c = raw_connect(s, NULL);
    lm_census_group g[] = {{.kind = "task"}, {.kind = "obj"}, {.kind = "actor"}, {.kind = "job"}};
    enum { NG = sizeof g / sizeof g[0] };

    LM_ASSERT_OK(lm_redis_census(r, g, NG));
    for (size_t i = 0; i < NG; i++) EXPECT_GROUP(&g[i], 0, 0, NULL);

    lm_id job = lm_id_random(), job2 = lm_id_random(), store = lm_id_random();
    lm_node_record node = {.id = store, .kind = LM_NODE_OBJSTORE, .addr = "x:1"};
    LM_ASSERT_OK(lm_redis_node_register(r, &node));
    lm_task_record *tasks = calloc(TASKS, sizeof *tasks);
    for (int i = 0; i < TASKS; i++)
        tasks[i] = (lm_task_record){.id = lm_id_random(), .fn = "f", .job = job,
                                    .state = i % 5 ? LM_TASK_FINISHED : LM_TASK_RUNNING};
    LM_ASSERT_OK(lm_redis_tasks_put(r, tasks, TASKS));
    LM_ASSERT_OK(lm_redis_task_set_state(r, tasks[1].id, LM_TASK_FAILED, store, 2, "boom"));
    lm_obj_record objs[] = {
        {.id = lm_id_random(), .size = 100, .state = LM_OBJ_READY, .job = job},
        {.id = lm_id_random(), .size = 20, .state = LM_OBJ_PENDING, .job = job},
        {.id = lm_id_random(), .size = 3, .state = LM_OBJ_LOST},
    };
    LM_ASSERT_OK(lm_redis_objs_put(r, objs, 3));
    LM_ASSERT_OK(lm_redis_obj_ready(r, objs[1].id, 4000, store, job)); /* + obj:<id>:locs */
    LM_ASSERT_OK(lm_redis_obj_loc_add(r, objs[0].id, store));
    lm_actor_record a1 = {.id = lm_id_random(), .class_name = "A", .state = LM_ACTOR_ALIVE};
    lm_actor_record a2 = {.id = lm_id_random(), .class_name = "B", .state = LM_ACTOR_PENDING};
    LM_ASSERT_OK(lm_redis_actors_put(r, &a1, 1));
    LM_ASSERT_OK(lm_redis_actors_put(r, &a2, 1));
    a2.state = LM_ACTOR_DEAD;
    LM_ASSERT_OK(lm_redis_actors_put(r, &a2, 1));
    LM_ASSERT_OK(lm_redis_job_start(r, job));
    LM_ASSERT_OK(lm_redis_job_start(r, job2));
    LM_ASSERT_OK(lm_redis_job_finish(r, job2, 3));

    /* The same records under the other prefix. */
    lm_task_record pt[3] = {{.id = lm_id_random(), .fn = "g", .job = job},
                            {.id = lm_id_random(), .fn = "g", .job = job},
                            {.id = lm_id_random(), .fn = "g", .job = job}};
    lm_obj_record po = {.id = lm_id_random(), .size = 7, .state = LM_OBJ_READY, .job = job};
    LM_ASSERT_OK(lm_redis_tasks_put(rp, pt, 3));
    LM_ASSERT_OK(lm_redis_objs_put(rp, &po, 1));
    LM_ASSERT_OK(lm_redis_obj_loc_add(rp, po.id, store));
    LM_ASSERT_OK(lm_redis_actors_put(rp, &a1, 1));
    LM_ASSERT_OK(lm_redis_job_start(rp, job));

    /* Keys that are not records. */
    char id[LM_ID_HEX_LEN + 1];
    snprintf(id, sizeof id, "%s", lm_id_str(lm_id_random()).s);
    const char *fake[] = {"lumen:task:short", "lumen:tasks:%s", "other:task:%s", "lumen:task:%s:x",
                          "lumen:task:%.31sg", "lumen:obj:%s:extra", "tzx:task:%s", "lumen:%s"};
    for (size_t i = 0; i < sizeof fake / sizeof fake[0]; i++) {
        char key[128];
        snprintf(key, sizeof key, fake[i], id);
        freeReplyObject(raw(c, "HSET %s state RUNNING size 1000000", key));
    }
    freeReplyObject(raw(c, "SET lumen:task:%s not-a-hash", id));

    LM_ASSERT_OK(lm_redis_census(r, g, NG));
    EXPECT_GROUP(&g[0], TASKS, 0, "RUNNING", (uint64_t)TASKS / 5, "FINISHED",
                 (uint64_t)TASKS / 5 * 4 - 1, "FAILED", (uint64_t)1, NULL);
    EXPECT_GROUP(&g[1], 3, 4103, "READY", (uint64_t)2, "LOST", (uint64_t)1, NULL);
    EXPECT_GROUP(&g[2], 2, 0, "ALIVE", (uint64_t)1, "DEAD", (uint64_t)1, NULL);
    EXPECT_GROUP(&g[3], 2, 0, "RUNNING", (uint64_t)1, "FINISHED", (uint64_t)1, NULL);

    LM_ASSERT_OK(lm_redis_census(rp, g, NG)); /* earlier counts are reset */
    EXPECT_GROUP(&g[0], 3, 0, "PENDING", (uint64_t)3, NULL);
    EXPECT_GROUP(&g[1], 1, 7, "READY", (uint64_t)1, NULL);
    EXPECT_GROUP(&g[2], 1, 0, "ALIVE", (uint64_t)1, NULL);
    EXPECT_GROUP(&g[3], 1, 0, "RUNNING", (uint64_t)1, NULL);

    /* More distinct states than rows: the rest share the last one, named
     * "other"; an empty state counts as "?". */
    for (int i = 0; i < 10; i++)
        freeReplyObject(raw(c, "HSET lumen:actor:%s state S%d", lm_id_str(lm_id_random()).s, i));
    freeReplyObject(raw(c, "HSET lumen:actor:%s state %b", lm_id_str(lm_id_random()).s, "", (size_t)0));
    LM_ASSERT_OK(lm_redis_census(r, &g[2], 1));
    CU_ASSERT_EQUAL(g[2].total, 13);
    CU_ASSERT_EQUAL_FATAL(g[2].nby, LM_CENSUS_ROWS);
    uint64_t sum = 0;
    for (size_t i = 0; i < g[2].nby; i++) sum += g[2].by[i].n;
    CU_ASSERT_EQUAL(sum, 13);
    CU_ASSERT_STRING_EQUAL(g[2].by[LM_CENSUS_ROWS - 1].state, "other");
    CU_ASSERT_EQUAL(g[2].by[LM_CENSUS_ROWS - 1].n, 13 - (LM_CENSUS_ROWS - 1));

    lm_test_redis_stop(s);
    LM_ASSERT_CODE(lm_redis_census(r, g, NG), LUMEN_UNAVAILABLE);

    free(tasks);
    redisFree(c);
    lm_redis_free(rp);
    lm_redis_free(r);
}

static void test_events(void) {
    lm_test_redis *s = start_redis(NULL);
    lm_redis *r = connect_redis(s, NULL, NULL);
    collector col;
    collector_init(&col);
    lm_redis_subscriber *sub = subscribe(s, NULL, NULL, &col);

    publish_and_expect(r, &col, 0, 100);

    lm_id id = lm_id_random();
    LM_ASSERT_OK(lm_redis_publish(r, LM_EVENT_NODE_DIED, id, NULL));
    CU_ASSERT_FATAL(collector_wait(&col, 101, 0, 5000));
    lm_redis_event ev;
    CU_ASSERT(lm_redis_event_parse(col.msgs[100], strlen(col.msgs[100]), &ev));
    CU_ASSERT_STRING_EQUAL(ev.type, "node_died");
    CU_ASSERT(lm_id_equal(ev.id, id) && ev.detail_len == 0);

    LM_ASSERT_CODE(lm_redis_publish(r, "two words", id, NULL), LUMEN_INVALID_ARGUMENT);
    LM_ASSERT_CODE(lm_redis_publish(r, "", id, NULL), LUMEN_INVALID_ARGUMENT);
    const char *bad[] = {"", "obj_ready", "obj_ready 123", "obj_ready  0123456789abcdef0123456789abcdef",
                         "obj_ready 0123456789abcdef0123456789abcdefX",
                         "obj_ready 0123456789abcdef0123456789abcdeg"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT(!lm_redis_event_parse(bad[i], strlen(bad[i]), &ev));

    /* free() wakes the thread out of poll() at once. */
    uint64_t t0 = lm_test_now_us();
    lm_redis_subscriber_free(sub);
    CU_ASSERT(lm_test_now_us() - t0 < 500000);
    CU_ASSERT_EQUAL(col.gaps, 0);
    collector_fini(&col);
    lm_redis_free(r);
    lm_test_redis_stop(s);
}

static void test_auth(void) {
    lm_test_redis_opts o = {.password = "s3cret pass"};
    lm_test_redis *s = start_redis(&o);
    lm_redis *r = connect_redis(s, NULL, "s3cret pass");
    lm_node_record n = {.id = lm_id_random(), .kind = LM_NODE_WORKER, .addr = "a:1", .slots = 1};
    LM_ASSERT_OK(lm_redis_node_register(r, &n));
    redisContext *c = raw_connect(s, "s3cret pass");
    CU_ASSERT_EQUAL(raw_int(c, "SCARD lumen:nodes"), 1);
    redisFree(c);

    lm_redis_opts opts = {.addr = lm_test_redis_addr(s), .password = "wrong"};
    lm_redis *bad = NULL;
    lumen_status st = lm_redis_connect(&opts, &bad);
    LM_ASSERT_CODE(st, LUMEN_UNAUTHENTICATED);
    CU_ASSERT(bad == NULL);
    CU_ASSERT(strstr(st.msg, lm_test_redis_addr(s)) != NULL && strstr(st.msg, "AUTH") != NULL);
    printf("\n  wrong password: %s", st.msg);

    opts.password = NULL;
    st = lm_redis_connect(&opts, &bad);
    LM_ASSERT_CODE(st, LUMEN_UNAUTHENTICATED);
    printf("\n  no password: %s\n", st.msg);

    lm_redis_subscriber *sub = NULL;
    opts.password = "wrong";
    LM_ASSERT_CODE(lm_redis_subscriber_new(&opts, NULL, collect, NULL, &sub),
                   LUMEN_UNAUTHENTICATED);
    LM_ASSERT_CODE(lm_redis_subscriber_new(&opts, NULL, NULL, NULL, &sub),
                   LUMEN_INVALID_ARGUMENT);
    CU_ASSERT(sub == NULL);
    collector col;
    collector_init(&col);
    sub = subscribe(s, NULL, "s3cret pass", &col);
    publish_and_expect(r, &col, 0, 3);
    lm_redis_subscriber_free(sub);
    collector_fini(&col);

    lm_redis_free(r);
    lm_test_redis_stop(s);
}

typedef struct hammer_arg {
    lm_redis *r;
    lm_id node;
    int fails;
} hammer_arg;

static void *hammer(void *p) {
    hammer_arg *h = p;
    for (int i = 0; i < 250; i++) {
        lm_task_record t = {.id = lm_id_random(), .fn = "f", .state = LM_TASK_RUNNING};
        h->fails += !LM_IS_OK(lm_redis_node_heartbeat(h->r, h->node, (uint32_t)i, 0));
        h->fails += !LM_IS_OK(lm_redis_tasks_put(h->r, &t, 1));
    }
    return NULL;
}

/* One handle shared by several threads. */
static void test_threads_share_a_handle(void) {
    lm_test_redis *s = start_redis(NULL);
    lm_redis *r = connect_redis(s, NULL, NULL);
    pthread_t th[4];
    hammer_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (hammer_arg){.r = r, .node = lm_id_random()};
        lm_node_record n = {.id = args[i].node, .kind = LM_NODE_WORKER, .addr = "a:1"};
        LM_ASSERT_OK(lm_redis_node_register(r, &n));
        pthread_create(&th[i], NULL, hammer, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CU_ASSERT_EQUAL(args[i].fails, 0);
    }
    redisContext *c = raw_connect(s, NULL);
    /* nodes, 4 nodes, 1000 tasks and 6 index and counter keys of tasks without a job */
    CU_ASSERT_EQUAL(raw_int(c, "DBSIZE"), 1 + 4 + 1000 + 6);
    redisFree(c);
    lm_redis_free(r);
    lm_test_redis_stop(s);
}

/* Redis killed (SIGKILL) and restarted with its AOF on the same port. */
static void test_redis_restart(void) {
    lm_test_redis_opts o = {.appendonly = true};
    lm_test_redis *s = start_redis(&o);
    lm_redis *r = connect_redis(s, NULL, NULL);
    collector col;
    collector_init(&col);
    lm_redis_subscriber *sub = subscribe(s, NULL, NULL, &col);

    lm_node_record n = {.id = lm_id_random(), .kind = LM_NODE_WORKER, .addr = "w:7402",
                        .slots = 2, .slots_free = 2};
    lm_task_record t = {.id = lm_id_random(), .fn = "f", .state = LM_TASK_RUNNING, .attempts = 3};
    LM_ASSERT_OK(lm_redis_node_register(r, &n));
    LM_ASSERT_OK(lm_redis_tasks_put(r, &t, 1));
    publish_and_expect(r, &col, 0, 10);

    lm_test_redis_kill(s);
    /* Down: every call fails fast with UNAVAILABLE, naming the address. */
    char want[64];
    snprintf(want, sizeof want, "redis %s: connection refused", lm_test_redis_addr(s));
    uint64_t down0 = lm_test_now_us(), worst = 0;
    for (int i = 0; i < 20; i++) {
        uint64_t t0 = lm_test_now_us();
        lumen_status st = i % 2 ? lm_redis_node_heartbeat(r, n.id, 1, 0) : lm_redis_ping(r);
        uint64_t took = lm_test_now_us() - t0;
        worst = took > worst ? took : worst;
        LM_ASSERT_CODE(st, LUMEN_UNAVAILABLE);
        if (strncmp(st.msg, want, strlen(want)) != 0) fprintf(stderr, "\ngot \"%s\"\n", st.msg);
        CU_ASSERT(strncmp(st.msg, want, strlen(want)) == 0);
        if (i == 0 || i == 19) printf("\n  while down: %s", st.msg);
        lm_test_sleep_ms(25); /* spread the calls over several backoff steps */
    }
    printf("\n  slowest call while down: %" PRIu64 " us\n", worst);
    CU_ASSERT(worst < 3000000);
    CU_ASSERT(lm_test_now_us() - down0 < 5000000);

    LM_ASSERT_OK(lm_test_redis_restart(s));
    /* Back: the handle reconnects by itself within one backoff step (<= 2 s). */
    uint64_t up0 = lm_test_now_us();
    lumen_status st;
    while (!LM_IS_OK(st = lm_redis_ping(r)) && lm_test_now_us() - up0 < 5000000)
        lm_test_sleep_ms(20); /* polling the handle is the behaviour under test */
    LM_ASSERT_OK(st);
    printf("  reconnected %" PRIu64 " ms after restart\n", (lm_test_now_us() - up0) / 1000);

    /* What was written before the kill is still there. */
    lm_node_list *list = NULL;
    LM_ASSERT_OK(lm_redis_nodes_list(r, &list));
    CU_ASSERT_FATAL(list != NULL && list->count == 1);
    CU_ASSERT(lm_id_equal(list->nodes[0].id, n.id) && strcmp(list->nodes[0].addr, "w:7402") == 0);
    lm_node_list_free(list);
    redisContext *c = raw_connect(s, NULL);
    char key[128];
    snprintf(key, sizeof key, "lumen:task:%s", lm_id_str(t.id).s);
    EXPECT_FIELD(c, key, "state", "RUNNING");
    EXPECT_FIELD(c, key, "attempts", "3");
    redisFree(c);
    LM_ASSERT_OK(lm_redis_node_heartbeat(r, n.id, 0, 0));

    /* The subscriber says it was away, then hears events again. */
    CU_ASSERT_FATAL(collector_wait(&col, 10, 1, 10000));
    publish_and_expect(r, &col, 10, 100);

    /* Restarted while the handle sat idle: the first call just works. */
    lm_test_redis_kill(s);
    LM_ASSERT_OK(lm_test_redis_restart(s));
    LM_ASSERT_OK(lm_redis_node_heartbeat(r, n.id, 1, 0));

    lm_redis_subscriber_free(sub);
    collector_fini(&col);
    lm_redis_free(r);
    lm_test_redis_stop(s);
}

/* A subscriber waiting out its backoff still stops at once. */
static void test_subscriber_free_while_down(void) {
    lm_test_redis *s = start_redis(NULL);
    collector col;
    collector_init(&col);
    lm_redis_subscriber *sub = subscribe(s, NULL, NULL, &col);
    lm_test_redis_kill(s);
    lm_test_sleep_ms(300); /* let it fail a few reconnects and back off */
    uint64_t t0 = lm_test_now_us();
    lm_redis_subscriber_free(sub);
    CU_ASSERT(lm_test_now_us() - t0 < 500000);
    CU_ASSERT_EQUAL(col.gaps, 0);
    collector_fini(&col);
    lm_test_redis_stop(s);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"connect errors", test_connect_errors},
        {"node layout", test_node_layout},
        {"nodes list", test_nodes_list},
        {"task layout", test_task_layout},
        {"1000 task records in one pipeline", test_tasks_batch_1000},
        {"objects and locations", test_objects_and_locations},
        {"actor and job layout", test_actor_and_job_layout},
        {"job release", test_job_release},
        {"configurable prefix", test_prefix},
        {"census of records by state", test_census},
        {"events through a subscriber", test_events},
        {"AUTH", test_auth},
        {"threads share a handle", test_threads_share_a_handle},
        {"redis killed and restarted", test_redis_restart},
        {"subscriber free while redis is down", test_subscriber_free_while_down},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("redis_state", tests, NULL, NULL);
}

/*
 * Actors end to end through the public client API: a real redis-server,
 * lumen-scheduler, lumen-objstore and lumen-workers (build/bin) on free
 * loopback ports, with the suite's function library (liblumentest.so, whose
 * test.Counter class and test.call_actor task are used here) on the
 * workers' library path.
 *
 * The tests that kill workers run last: each leaves the cluster one worker
 * short (and adds one first when it needs a spare).
 */
#include <hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lumen/lumen.h>

#include "client_suite.h"
#include "redis_server.h"
#include "test_util.h"

static lm_test_cluster *cluster;
static lumen_client *client;

/* Long enough for anything a healthy cluster does, short enough that a hang
 * fails the test instead of ctest's timeout. Worker death is noticed after
 * missed heartbeats (5 s by default), so waits across it get more. */
#define CALL_TIMEOUT LM_TEST_TIMEOUT(30000)
#define DEATH_TIMEOUT LM_TEST_TIMEOUT(45000)

static int suite_init(void) {
    lm_test_cluster_opts opts = {.workers = 2, .slots = 2};
    return lm_test_client_suite_start(&opts, &cluster, &client);
}

static redisContext *redis_ctx; /* opened on first use */

static int suite_cleanup(void) {
    if (redis_ctx != NULL) redisFree(redis_ctx);
    return lm_test_client_suite_stop(cluster, client);
}

/* ------------------------------------------------------------ helpers */

/* A test.Counter starting at `start` (NULL: no constructor argument). */
static lumen_status new_counter(lumen_client *c, const char *start, const lumen_actor_opts *opts, lumen_actor *out) {
    lumen_arg a = lumen_arg_bytes(start, start ? strlen(start) : 0);
    return lumen_actor_new(c, "test.Counter", start ? &a : NULL, start ? 1 : 0, opts, out);
}

/* Calls method with one inline string argument (NULL: none). */
static lumen_status acall(lumen_client *c, lumen_actor a, const char *method, const char *arg, lumen_ref *out) {
    lumen_arg x = lumen_arg_bytes(arg, arg ? strlen(arg) : 0);
    return lumen_actor_call(c, a, method, arg ? &x : NULL, arg ? 1 : 0, out);
}

/* The result of ref as a C string, or the error's message; *st gets the status. */
static char *get_str(lumen_client *c, lumen_ref ref, int64_t timeout_ms, lumen_status *st) {
    lumen_bytes b = {0};
    *st = lumen_get(c, ref, timeout_ms, &b);
    if (st->code != LUMEN_OK) return strdup(st->msg);
    char *s = strndup(b.data ? b.data : "", b.len);
    lumen_bytes_free(&b);
    return s;
}

/* Calls and waits for the result (as get_str). */
static char *call_get(lumen_client *c, lumen_actor a, const char *method, const char *arg, int64_t timeout_ms,
                      lumen_status *st) {
    lumen_ref r;
    *st = acall(c, a, method, arg, &r);
    if (st->code != LUMEN_OK) return strdup(st->msg);
    return get_str(c, r, timeout_ms, st);
}

/* Asserts that method(arg) answers `want`. */
#define EXPECT_CALL(c, a, method, arg, want)                                                               \
    do {                                                                                                   \
        lumen_status st_;                                                                                  \
        char *got_ = call_get((c), (a), (method), (arg), CALL_TIMEOUT, &st_);                              \
        if (st_.code != LUMEN_OK || strcmp(got_, (want)) != 0)                                             \
            fprintf(stderr, "\n%s:%d: %s(%s) -> %s: \"%s\", wanted OK: \"%s\"\n", __FILE__, __LINE__,      \
                    (method), (arg) ? (const char *)(arg) : "", lumen_code_name(st_.code), got_, (want));  \
        CU_ASSERT_EQUAL(st_.code, LUMEN_OK);                                                               \
        CU_ASSERT_STRING_EQUAL(got_, (want));                                                              \
        free(got_);                                                                                        \
    } while (0)

/* Asserts st is an error with code c1 or c2 (LUMEN_OK for c2: only c1) whose
 * message holds n1 or n2 (both NULL: any message). */
static void expect_failure_at(int line, const char *what, lumen_status st, lumen_code c1, lumen_code c2,
                              const char *n1, const char *n2) {
    bool code_ok = st.code != LUMEN_OK && (st.code == c1 || st.code == c2);
    bool text_ok = (n1 == NULL && n2 == NULL) || (n1 != NULL && strstr(st.msg, n1) != NULL) ||
                   (n2 != NULL && strstr(st.msg, n2) != NULL);
    if (!code_ok || !text_ok)
        fprintf(stderr, "\ntest_actors.c:%d: %s -> %s (\"%s\"); wanted %s%s%s with \"%s\"%s%s%s in the message\n",
                line, what, lumen_code_name(st.code), st.msg, lumen_code_name(c1), c2 != LUMEN_OK ? " or " : "",
                c2 != LUMEN_OK ? lumen_code_name(c2) : "", n1 ? n1 : "", n2 ? " or \"" : "", n2 ? n2 : "",
                n2 ? "\"" : "");
    CU_ASSERT_TRUE(code_ok);
    CU_ASSERT_TRUE(text_ok);
}
#define EXPECT_FAILURE(what, st, c1, c2, n1, n2) expect_failure_at(__LINE__, (what), (st), (c1), (c2), (n1), (n2))

/* Asserts st is an error, any code but DEADLINE_EXCEEDED (which would mean
 * a hang), whose message holds needle. */
static void expect_clear_error_at(int line, const char *what, lumen_status st, const char *needle) {
    bool ok = st.code != LUMEN_OK && st.code != LUMEN_DEADLINE_EXCEEDED && strstr(st.msg, needle) != NULL;
    if (!ok)
        fprintf(stderr, "\ntest_actors.c:%d: %s -> %s (\"%s\"); wanted an error (not a timeout) naming \"%s\"\n", line,
                what, lumen_code_name(st.code), st.msg, needle);
    CU_ASSERT_TRUE(ok);
}
#define EXPECT_CLEAR_ERROR(what, st, needle) expect_clear_error_at(__LINE__, (what), (st), (needle))

static void kill_quietly(lumen_actor a) { (void)lumen_actor_kill(client, a); }

/* ---- Redis, as a user reads it with redis-cli ---- */

/* The suite's connection: opened on first use, closed by suite_cleanup. */
static redisContext *redis_open(void) {
    if (redis_ctx != NULL) return redis_ctx;
    redisContext *rc = lm_test_redis_connect(lm_test_cluster_redis(cluster));
    if (rc != NULL && rc->err != 0) {
        fprintf(stderr, "redis %s: %s\n", lm_test_cluster_redis(cluster), rc->errstr);
        redisFree(rc);
        rc = NULL;
    }
    return redis_ctx = rc;
}

/* HGET <key> <field> as a malloc'd string; NULL when missing. */
static char *redis_hget(redisContext *rc, const char *key, const char *field) {
    redisReply *rep = redisCommand(rc, "HGET %s %s", key, field);
    char *v = rep && rep->type == REDIS_REPLY_STRING ? strdup(rep->str) : NULL;
    freeReplyObject(rep);
    return v;
}

/* Waits (records are written behind) until lumen:actor:<id> has state
 * `state` and, when want_worker, a worker other than not_worker (may be
 * NULL). Returns the worker field (malloc'd, "" allowed when !want_worker),
 * or NULL on timeout after printing what it last saw. *restarts (may be
 * NULL) gets the restarts field (-1 when missing). */
static char *wait_actor_record(redisContext *rc, lumen_actor a, const char *state, bool want_worker,
                               const char *not_worker, long *restarts) {
    char hex[33], key[64];
    lumen_actor_hex(a, hex);
    snprintf(key, sizeof key, "lumen:actor:%s", hex);
    uint64_t until = lm_test_now_us() + (uint64_t)LM_TEST_TIMEOUT(15000) * 1000;
    char *st = NULL, *worker = NULL, *rs = NULL;
    for (;;) {
        free(st), free(worker), free(rs);
        st = redis_hget(rc, key, "state");
        worker = redis_hget(rc, key, "worker");
        rs = redis_hget(rc, key, "restarts");
        bool good = st != NULL && strcmp(st, state) == 0;
        if (want_worker) good = good && worker != NULL && worker[0] != '\0' &&
                                (not_worker == NULL || strcmp(worker, not_worker) != 0);
        if (good) break;
        if (lm_test_now_us() > until) {
            fprintf(stderr, "\n%s: state %s, worker %s, restarts %s; wanted state %s%s%s\n", key, st ? st : "(none)",
                    worker ? worker : "(none)", rs ? rs : "(none)", state, not_worker ? " on a worker other than " : "",
                    not_worker ? not_worker : "");
            free(st), free(worker), free(rs);
            return NULL;
        }
        lm_test_sleep_ms(20);
    }
    if (restarts != NULL) *restarts = rs ? strtol(rs, NULL, 10) : -1;
    free(st), free(rs);
    return worker;
}

/* The value after --listen on worker i's command line ("host:port"). */
static bool worker_listen_addr(int i, char *out, size_t cap) {
    pid_t pid = lm_test_cluster_worker_pid(cluster, i);
    if (pid <= 0) return false;
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (size_t off = 0; off < n;) {
        const char *arg = buf + off;
        off += strlen(arg) + 1;
        if (strcmp(arg, "--listen") == 0 && off < n) {
            snprintf(out, cap, "%s", buf + off);
            return true;
        }
    }
    return false;
}

/* The test cluster's index of the worker that registered as node `node_hex`. */
static int worker_index_of_node(redisContext *rc, const char *node_hex) {
    char key[64];
    snprintf(key, sizeof key, "lumen:node:%s", node_hex);
    char *addr = redis_hget(rc, key, "addr");
    int found = -1;
    for (int i = 0; addr != NULL && i < lm_test_cluster_workers(cluster); i++) {
        char listen[128];
        if (worker_listen_addr(i, listen, sizeof listen) && strcmp(listen, addr) == 0) found = i;
    }
    if (found < 0) fprintf(stderr, "\nnode %s (addr %s) is none of the test's live workers\n", node_hex, addr ? addr : "?");
    free(addr);
    return found;
}

/* The executor hosting the actor and its parent (the worker) as the actor
 * itself sees them; false when the call fails. */
static bool actor_pids(lumen_actor a, long *pid, long *ppid) {
    lumen_status st;
    char *s = call_get(client, a, "pid", NULL, CALL_TIMEOUT, &st);
    bool ok = st.code == LUMEN_OK && sscanf(s, "%ld %ld", pid, ppid) == 2;
    if (!ok) fprintf(stderr, "\npid() -> %s: %s\n", lumen_code_name(st.code), s);
    free(s);
    return ok;
}

static int worker_index_of_pid(long pid) {
    for (int i = 0; i < lm_test_cluster_workers(cluster); i++)
        if (lm_test_cluster_worker_pid(cluster, i) == (pid_t)pid) return i;
    return -1;
}

/* Which of the test's workers hosts the live actor: from its Redis record
 * (actor:<id> worker -> node:<id> addr -> the worker listening there),
 * checked against the actor's own view (its executor's parent). Sets
 * *node (malloc'd hex id). -1 when they cannot be found or disagree. */
static int host_of(redisContext *rc, lumen_actor a, char **node) {
    *node = wait_actor_record(rc, a, "ALIVE", true, NULL, NULL);
    if (*node == NULL) return -1;
    int by_redis = worker_index_of_node(rc, *node);
    long pid = 0, ppid = 0;
    int by_pid = actor_pids(a, &pid, &ppid) ? worker_index_of_pid(ppid) : -1;
    if (by_redis != by_pid)
        fprintf(stderr, "\nthe actor's record says worker %d (node %s), its executor's parent (%ld) is worker %d\n",
                by_redis, *node, ppid, by_pid);
    return by_redis == by_pid ? by_redis : -1;
}

static int alive_workers(void) {
    int n = 0;
    for (int i = 0; i < lm_test_cluster_workers(cluster); i++) n += lm_test_cluster_worker_pid(cluster, i) > 0;
    return n;
}

/* ------------------------------------------------------------ the tests */

/* The constructor's argument makes the state; no argument is 0. */
static void test_constructor_and_state(void) {
    lumen_actor a, b;
    LM_ASSERT_OK(new_counter(client, "100", NULL, &a));
    LM_ASSERT_OK(new_counter(client, NULL, NULL, &b));
    CU_ASSERT_NOT_EQUAL(memcmp(a.id, b.id, sizeof a.id), 0);
    EXPECT_CALL(client, a, "get", NULL, "100");
    EXPECT_CALL(client, a, "add", "5", "105");
    EXPECT_CALL(client, b, "get", NULL, "0");
    EXPECT_CALL(client, b, "add", "-3", "-3");
    EXPECT_CALL(client, a, "get", NULL, "105"); /* each actor has its own state */
    kill_quietly(a);
    kill_quietly(b);
}

/* 10,000 calls submitted at once by one client run in submission order:
 * result i is the running total i + 1. */
static void test_ten_thousand_calls_in_order(void) {
    enum { N = 10000 };
    lumen_actor a;
    LM_ASSERT_OK(new_counter(client, "0", NULL, &a));
    lumen_ref *refs = malloc(N * sizeof *refs);
    int *ready = calloc(N, sizeof *ready);
    CU_ASSERT_FATAL(refs != NULL && ready != NULL);
    lumen_arg one = lumen_arg_bytes("1", 1);
    lumen_status st = lm_ok();
    for (int i = 0; i < N && st.code == LUMEN_OK; i++) st = lumen_actor_call(client, a, "add", &one, 1, &refs[i]);
    LM_ASSERT_OK(st);
    size_t done = 0;
    st = lumen_wait(client, refs, N, N, LM_TEST_TIMEOUT(60000), ready, &done);
    LM_ASSERT_OK(st);
    if (done != N) fprintf(stderr, "\nonly %zu of %d calls done\n", done, N);
    CU_ASSERT_EQUAL(done, N);
    int wrong = 0, failed = 0;
    for (int i = 0; done == N && i < N; i++) {
        lumen_status st;
        char *s = get_str(client, refs[i], CALL_TIMEOUT, &st);
        char want[16];
        snprintf(want, sizeof want, "%d", i + 1);
        if (st.code != LUMEN_OK) {
            if (failed++ == 0) fprintf(stderr, "\ncall %d -> %s: %s\n", i, lumen_code_name(st.code), s);
        } else if (strcmp(s, want) != 0) {
            if (wrong++ < 3) fprintf(stderr, "\ncall %d (add 1) -> \"%s\", wanted \"%s\": out of order\n", i, s, want);
        }
        free(s);
    }
    CU_ASSERT_EQUAL(failed, 0);
    CU_ASSERT_EQUAL(wrong, 0);
    EXPECT_CALL(client, a, "get", NULL, "10000");
    LM_ASSERT_OK(lumen_free(client, refs, N));
    free(ready);
    free(refs);
    kill_quietly(a);
}

/* A client adding 1 `n` times, checking that its own results only grow. */
typedef struct adder {
    lumen_client *c;
    lumen_actor a;
    int n, errors, unordered;
} adder;

static void *add_many(void *arg) {
    adder *t = arg;
    lumen_ref *refs = calloc((size_t)t->n, sizeof *refs);
    lumen_arg one = lumen_arg_bytes("1", 1);
    for (int i = 0; i < t->n; i++)
        if (lumen_actor_call(t->c, t->a, "add", &one, 1, &refs[i]).code != LUMEN_OK) t->errors++;
    long long prev = -1;
    for (int i = 0; i < t->n; i++) {
        lumen_status st;
        char *s = get_str(t->c, refs[i], CALL_TIMEOUT, &st);
        if (st.code != LUMEN_OK) {
            if (t->errors++ == 0) fprintf(stderr, "\nadd -> %s: %s\n", lumen_code_name(st.code), s);
        } else {
            long long v = strtoll(s, NULL, 10);
            t->unordered += v <= prev;
            prev = v;
        }
        free(s);
    }
    free(refs);
    return NULL;
}

typedef struct lookup {
    lumen_client *c;
    const char *name;
    int64_t timeout_ms;
    lumen_actor found;
    lumen_status st;
} lookup;

static void *get_named(void *arg) {
    lookup *l = arg;
    l->st = lumen_actor_get_named(l->c, l->name, l->timeout_ms, &l->found);
    return NULL;
}

/* Client A creates a named actor; client B finds it by name and shares its
 * state; names are unique; B's job ending leaves A's actor alone. */
static void test_named_actor_two_clients(void) {
    char name[64], later[64];
    snprintf(name, sizeof name, "shared-counter-%ld", (long)getpid());
    snprintf(later, sizeof later, "created-later-%ld", (long)getpid());
    lumen_actor_opts opts = {.name = name};
    lumen_actor a, b, dup;
    LM_ASSERT_OK(new_counter(client, "0", &opts, &a));
    EXPECT_CALL(client, a, "add", "5", "5");

    lumen_client *other = NULL;
    LM_ASSERT_OK(lumen_connect(lm_test_cluster_scheduler(cluster), NULL, &other));
    LM_ASSERT_OK(lumen_actor_get_named(other, name, LM_TEST_TIMEOUT(5000), &b));
    CU_ASSERT_EQUAL(memcmp(a.id, b.id, sizeof a.id), 0);
    EXPECT_CALL(other, b, "add", "7", "12");
    EXPECT_CALL(client, a, "get", NULL, "12");

    /* Both clients at once: each sees its own calls in order, and the total
     * counts every call. */
    adder ta = {client, a, 300, 0, 0}, tb = {other, b, 300, 0, 0};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, add_many, &ta);
    pthread_create(&t2, NULL, add_many, &tb);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CU_ASSERT_EQUAL(ta.errors + tb.errors, 0);
    if (ta.unordered || tb.unordered)
        fprintf(stderr, "\nresults out of order: client A %d, client B %d\n", ta.unordered, tb.unordered);
    CU_ASSERT_EQUAL(ta.unordered + tb.unordered, 0);
    EXPECT_CALL(other, b, "get", NULL, "612");

    /* The name is taken, for either client. */
    lumen_status st = new_counter(other, "0", &opts, &dup);
    LM_ASSERT_CODE(st, LUMEN_ALREADY_EXISTS);
    if (st.code == LUMEN_ALREADY_EXISTS && strstr(st.msg, name) == NULL)
        fprintf(stderr, "\nALREADY_EXISTS does not name \"%s\": %s\n", name, st.msg);
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, name));
    LM_ASSERT_CODE(new_counter(client, "0", &opts, &dup), LUMEN_ALREADY_EXISTS);

    /* Unknown names: at once, and after waiting in vain. */
    LM_ASSERT_CODE(lumen_actor_get_named(other, "no-such-actor", 0, &dup), LUMEN_NOT_FOUND);
    uint64_t t0 = lm_test_now_us();
    LM_ASSERT_CODE(lumen_actor_get_named(other, "no-such-actor", 300, &dup), LUMEN_NOT_FOUND);
    uint64_t took_ms = (lm_test_now_us() - t0) / 1000;
    if (took_ms >= (uint64_t)LM_TEST_TIMEOUT(5000)) fprintf(stderr, "\nget_named(300 ms) took %llu ms\n",
                                                           (unsigned long long)took_ms);
    CU_ASSERT_TRUE(took_ms < (uint64_t)LM_TEST_TIMEOUT(5000));

    /* A lookup that waits sees an actor created while it waits. */
    lookup l = {other, later, LM_TEST_TIMEOUT(15000), {{0}}, {0}};
    pthread_t waiter;
    pthread_create(&waiter, NULL, get_named, &l);
    lm_test_sleep_ms(300);
    lumen_actor c2;
    lumen_actor_opts later_opts = {.name = later};
    LM_ASSERT_OK(new_counter(client, "40", &later_opts, &c2));
    pthread_join(waiter, NULL);
    LM_ASSERT_OK(l.st);
    CU_ASSERT_EQUAL(memcmp(l.found.id, c2.id, sizeof c2.id), 0);
    EXPECT_CALL(other, l.found, "add", "2", "42");

    /* B's job ends; the actors belong to A's job and live on. */
    lumen_close(other);
    EXPECT_CALL(client, a, "get", NULL, "612");
    EXPECT_CALL(client, c2, "get", NULL, "42");
    kill_quietly(a);
    kill_quietly(c2);
}

/* Errors of methods, of unknown methods and classes, and of constructors
 * are clear, and an actor outlives its methods' errors. */
static void test_errors(void) {
    lumen_actor a;
    LM_ASSERT_OK(new_counter(client, "0", NULL, &a));
    EXPECT_CALL(client, a, "add", "1", "1");

    lumen_status st;
    char *s = call_get(client, a, "fail", "boom", CALL_TIMEOUT, &st);
    EXPECT_FAILURE("fail(boom)", st, LUMEN_TASK_FAILED, LUMEN_OK, "failed on purpose: boom", NULL);
    free(s);
    EXPECT_CALL(client, a, "add", "1", "2"); /* still alive, state kept */

    s = call_get(client, a, "no_such_method", NULL, CALL_TIMEOUT, &st);
    EXPECT_FAILURE("no_such_method()", st, LUMEN_NOT_FOUND, LUMEN_OK, "no_such_method", NULL);
    /* ... and the message lists what the class has. */
    EXPECT_FAILURE("no_such_method() lists the methods", st, LUMEN_NOT_FOUND, LUMEN_OK, "add", NULL);
    EXPECT_FAILURE("no_such_method() lists the methods", st, LUMEN_NOT_FOUND, LUMEN_OK, "crash", NULL);
    free(s);
    EXPECT_CALL(client, a, "add", "1", "3");

    /* A wrong argument is the method's own error. */
    s = call_get(client, a, "add", "x", CALL_TIMEOUT, &st);
    EXPECT_FAILURE("add(x)", st, LUMEN_TASK_FAILED, LUMEN_OK, "decimal number", NULL);
    free(s);
    EXPECT_CALL(client, a, "get", NULL, "3");
    kill_quietly(a);

    /* An unknown class: creation may refuse it, else its calls fail naming it. */
    lumen_actor ghost;
    st = lumen_actor_new(client, "test.NoSuchClass", NULL, 0, NULL, &ghost);
    if (st.code == LUMEN_OK) {
        lumen_ref r1, r2;
        LM_ASSERT_OK(acall(client, ghost, "get", NULL, &r1)); /* made before the creation failed */
        s = get_str(client, r1, CALL_TIMEOUT, &st);
        EXPECT_CLEAR_ERROR("NoSuchClass.get (early)", st, "test.NoSuchClass");
        free(s);
        LM_ASSERT_OK(acall(client, ghost, "get", NULL, &r2)); /* made after */
        s = get_str(client, r2, CALL_TIMEOUT, &st);
        EXPECT_CLEAR_ERROR("NoSuchClass.get (later)", st, "test.NoSuchClass");
        free(s);
    } else {
        EXPECT_CLEAR_ERROR("lumen_actor_new(test.NoSuchClass)", st, "test.NoSuchClass");
    }

    /* A constructor that fails: every call fails with its message. */
    lumen_actor bad;
    LM_ASSERT_OK(new_counter(client, "not-a-number", NULL, &bad));
    lumen_ref early;
    LM_ASSERT_OK(acall(client, bad, "get", NULL, &early));
    s = get_str(client, early, CALL_TIMEOUT, &st);
    EXPECT_CLEAR_ERROR("get() on a failed constructor (early)", st, "start value 'not-a-number' is not a decimal");
    free(s);
    s = call_get(client, bad, "add", "1", CALL_TIMEOUT, &st);
    EXPECT_CLEAR_ERROR("add() on a failed constructor (later)", st, "start value 'not-a-number' is not a decimal");
    free(s);

    /* The cluster goes on. */
    lumen_actor ok;
    LM_ASSERT_OK(new_counter(client, "7", NULL, &ok));
    EXPECT_CALL(client, ok, "get", NULL, "7");
    kill_quietly(ok);
}

/* An actor call's result is a ref like any other: an argument of tasks and
 * of other actors' calls, even before it exists. */
static void test_results_as_arguments(void) {
    lumen_actor a, b;
    LM_ASSERT_OK(new_counter(client, "0", NULL, &a));
    LM_ASSERT_OK(new_counter(client, "100", NULL, &b));
    lumen_ref slow, r1, echoed, on_b, task_sum, b_from_task;
    LM_ASSERT_OK(acall(client, a, "sleep", "300", &slow)); /* r1 is not there yet when passed on */
    LM_ASSERT_OK(acall(client, a, "add", "5", &r1));
    lumen_arg ref1 = lumen_arg_ref(r1);
    LM_ASSERT_OK(lumen_call(client, "test.echo", &ref1, 1, NULL, &echoed));
    LM_ASSERT_OK(lumen_actor_call(client, b, "add", &ref1, 1, &on_b));
    lumen_arg two[2] = {lumen_arg_bytes("20", 2), lumen_arg_bytes("3", 1)};
    LM_ASSERT_OK(lumen_call(client, "test.add", two, 2, NULL, &task_sum)); /* a task's result into an actor */
    lumen_arg sum = lumen_arg_ref(task_sum);
    LM_ASSERT_OK(lumen_actor_call(client, b, "add", &sum, 1, &b_from_task));

    struct {
        const char *what;
        lumen_ref ref;
        const char *want;
    } checks[] = {
        {"a.sleep(300)", slow, "slept"},      {"a.add(5)", r1, "5"},
        {"test.echo(a.add(5))", echoed, "5"}, {"b.add(a.add(5))", on_b, "105"},
        {"b.add(test.add(20, 3))", b_from_task, "128"},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        lumen_status st;
        char *s = get_str(client, checks[i].ref, CALL_TIMEOUT, &st);
        if (st.code != LUMEN_OK || strcmp(s, checks[i].want) != 0)
            fprintf(stderr, "\n%s -> %s: \"%s\", wanted \"%s\"\n", checks[i].what, lumen_code_name(st.code), s,
                    checks[i].want);
        CU_ASSERT_EQUAL(st.code, LUMEN_OK);
        CU_ASSERT_STRING_EQUAL(s, checks[i].want);
        free(s);
    }
    /* A failed call's result fails its consumers with the cause. */
    lumen_ref failed, consumer;
    LM_ASSERT_OK(acall(client, a, "fail", "upstream", &failed));
    lumen_arg f = lumen_arg_ref(failed);
    LM_ASSERT_OK(lumen_call(client, "test.echo", &f, 1, NULL, &consumer));
    lumen_status st;
    char *s = get_str(client, consumer, CALL_TIMEOUT, &st);
    EXPECT_CLEAR_ERROR("test.echo(a.fail(upstream))", st, "failed on purpose: upstream");
    free(s);
    kill_quietly(a);
    kill_quietly(b);
}

/* A call's result passed to a later call on the same actor, made before the
 * first has run (both likely travel in one batch). */
static void test_result_as_argument_of_same_actor(void) {
    lumen_actor a;
    LM_ASSERT_OK(new_counter(client, "0", NULL, &a));
    lumen_ref slow, r1, r2;
    LM_ASSERT_OK(acall(client, a, "sleep", "300", &slow)); /* the next two queue behind it */
    LM_ASSERT_OK(acall(client, a, "add", "5", &r1));
    lumen_arg ref1 = lumen_arg_ref(r1);
    LM_ASSERT_OK(lumen_actor_call(client, a, "add", &ref1, 1, &r2));
    lumen_status st;
    char *s = get_str(client, r2, CALL_TIMEOUT, &st);
    if (st.code != LUMEN_OK || strcmp(s, "10") != 0)
        fprintf(stderr, "\na.add(a.add(5)) -> %s: \"%s\", wanted \"10\"\n", lumen_code_name(st.code), s);
    CU_ASSERT_EQUAL(st.code, LUMEN_OK);
    CU_ASSERT_STRING_EQUAL(s, "10");
    free(s);
    kill_quietly(a);
}

/* A task gets the handle as an argument, joins the job from inside the
 * worker and calls the actor; the actor's state shows it. */
static void test_task_calls_actor(void) {
    lumen_actor a, back;
    LM_ASSERT_OK(new_counter(client, "0", NULL, &a));
    EXPECT_CALL(client, a, "add", "1", "1");

    /* Handles are plain values. */
    LM_ASSERT_OK(lumen_actor_from_bytes(a.id, sizeof a.id, &back));
    CU_ASSERT_EQUAL(memcmp(a.id, back.id, sizeof a.id), 0);
    LM_ASSERT_CODE(lumen_actor_from_bytes(a.id, 15, &back), LUMEN_INVALID_ARGUMENT);

    lumen_arg args[2] = {lumen_arg_actor(&a), lumen_arg_bytes("41", 2)};
    lumen_ref r;
    LM_ASSERT_OK(lumen_call(client, "test.call_actor", args, 2, NULL, &r));
    lumen_status st;
    char *s = get_str(client, r, CALL_TIMEOUT, &st);
    if (st.code != LUMEN_OK || strcmp(s, "42") != 0)
        fprintf(stderr, "\ntest.call_actor(a, 41) -> %s: \"%s\", wanted \"42\"\n", lumen_code_name(st.code), s);
    CU_ASSERT_EQUAL(st.code, LUMEN_OK);
    CU_ASSERT_STRING_EQUAL(s, "42");
    free(s);
    EXPECT_CALL(client, a, "get", NULL, "42");

    /* Several tasks at once, then the driver again: every add counted. */
    enum { TASKS = 8 };
    lumen_ref refs[TASKS];
    lumen_arg one[2] = {lumen_arg_actor(&a), lumen_arg_bytes("1", 1)};
    for (int i = 0; i < TASKS; i++) LM_ASSERT_OK(lumen_call(client, "test.call_actor", one, 2, NULL, &refs[i]));
    int errors = 0;
    for (int i = 0; i < TASKS; i++) {
        s = get_str(client, refs[i], CALL_TIMEOUT, &st);
        if (st.code != LUMEN_OK && errors++ == 0)
            fprintf(stderr, "\ntest.call_actor(a, 1) -> %s: %s\n", lumen_code_name(st.code), s);
        free(s);
    }
    CU_ASSERT_EQUAL(errors, 0);
    EXPECT_CALL(client, a, "get", NULL, "50");
    kill_quietly(a);
}

/* lumen_actor_kill: queued and later calls fail with ACTOR_DIED, the name
 * is free again, and unknown actors are NOT_FOUND. */
static void test_kill(void) {
    char name[64];
    snprintf(name, sizeof name, "doomed-%ld", (long)getpid());
    lumen_actor_opts opts = {.name = name, .max_restarts = 3}; /* a kill is for good, restarts or not */
    lumen_actor a, again;
    LM_ASSERT_OK(new_counter(client, "0", &opts, &a));
    EXPECT_CALL(client, a, "add", "1", "1");

    enum { QUEUED = 3 };
    lumen_ref slow, queued[QUEUED];
    LM_ASSERT_OK(acall(client, a, "sleep", "3000", &slow));
    for (int i = 0; i < QUEUED; i++) LM_ASSERT_OK(acall(client, a, "add", "1", &queued[i]));
    lm_test_sleep_ms(300);
    LM_ASSERT_OK(lumen_actor_kill(client, a));

    lumen_status st;
    char *s = get_str(client, slow, CALL_TIMEOUT, &st); /* the running call may finish or fail */
    if (st.code != LUMEN_OK) EXPECT_FAILURE("sleep(3000) while killed", st, LUMEN_ACTOR_DIED, LUMEN_OK, NULL, NULL);
    free(s);
    for (int i = 0; i < QUEUED; i++) {
        s = get_str(client, queued[i], CALL_TIMEOUT, &st);
        EXPECT_FAILURE("add(1) queued behind a kill", st, LUMEN_ACTOR_DIED, LUMEN_OK, NULL, NULL);
        free(s);
    }
    uint64_t t0 = lm_test_now_us();
    s = call_get(client, a, "add", "1", CALL_TIMEOUT, &st);
    EXPECT_FAILURE("add(1) after the kill", st, LUMEN_ACTOR_DIED, LUMEN_OK, NULL, NULL);
    free(s);
    uint64_t took_ms = (lm_test_now_us() - t0) / 1000;
    if (took_ms > (uint64_t)LM_TEST_TIMEOUT(5000))
        fprintf(stderr, "\na call to a killed actor took %llu ms to fail\n", (unsigned long long)took_ms);
    CU_ASSERT_TRUE(took_ms <= (uint64_t)LM_TEST_TIMEOUT(5000));

    /* Not restarted, despite max_restarts; the record says DEAD. */
    redisContext *rc = redis_open();
    CU_ASSERT_PTR_NOT_NULL_FATAL(rc);
    char *w = wait_actor_record(rc, a, "DEAD", false, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL(w);
    free(w);

    /* The name belongs to live actors only. */
    LM_ASSERT_CODE(lumen_actor_get_named(client, name, 0, &again), LUMEN_NOT_FOUND);
    LM_ASSERT_OK(new_counter(client, "9", &opts, &again));
    CU_ASSERT_NOT_EQUAL(memcmp(a.id, again.id, sizeof a.id), 0);
    EXPECT_CALL(client, again, "get", NULL, "9");
    LM_ASSERT_OK(lumen_actor_kill(client, again));

    lumen_actor bogus;
    memset(&bogus, 0x5a, sizeof bogus);
    LM_ASSERT_CODE(lumen_actor_kill(client, bogus), LUMEN_NOT_FOUND);
    s = call_get(client, bogus, "get", NULL, CALL_TIMEOUT, &st);
    EXPECT_CLEAR_ERROR("get() on an actor nobody made", st, " ");
    free(s);
}

/* A method that segfaults ends the actor's process: the call fails; with a
 * restart left the actor comes back (constructor re-run, state reset),
 * without one later calls fail with ACTOR_DIED. */
static void test_crash(void) {
    lumen_actor_opts opts = {.max_restarts = 1};
    lumen_actor a;
    LM_ASSERT_OK(new_counter(client, "10", &opts, &a));
    EXPECT_CALL(client, a, "add", "7", "17");
    long pid0 = 0, ppid0 = 0, pid1 = 0, ppid1 = 0;
    CU_ASSERT_TRUE(actor_pids(a, &pid0, &ppid0));

    lumen_status st;
    char *s = call_get(client, a, "crash", NULL, CALL_TIMEOUT, &st);
    EXPECT_FAILURE("crash()", st, LUMEN_TASK_FAILED, LUMEN_ACTOR_DIED, "crash", "signal");
    free(s);
    /* Restarted: the constructor ran again with its arguments. */
    s = call_get(client, a, "get", NULL, DEATH_TIMEOUT, &st);
    if (st.code != LUMEN_OK || strcmp(s, "10") != 0)
        fprintf(stderr, "\nget() after a crash with a restart left -> %s: \"%s\", wanted \"10\" (state reset)\n",
                lumen_code_name(st.code), s);
    CU_ASSERT_EQUAL(st.code, LUMEN_OK);
    CU_ASSERT_STRING_EQUAL(s, "10");
    free(s);
    EXPECT_CALL(client, a, "add", "2", "12");
    CU_ASSERT_TRUE(actor_pids(a, &pid1, &ppid1));
    CU_ASSERT_NOT_EQUAL(pid0, pid1); /* a new process */

    redisContext *rc = redis_open();
    CU_ASSERT_PTR_NOT_NULL_FATAL(rc);
    long restarts = -1;
    char *w = wait_actor_record(rc, a, "ALIVE", true, NULL, &restarts);
    CU_ASSERT_PTR_NOT_NULL(w);
    if (restarts != 1) fprintf(stderr, "\nthe record says %ld restarts after one crash\n", restarts);
    CU_ASSERT_EQUAL(restarts, 1);
    free(w);

    /* No restart left: the next crash is the end. */
    s = call_get(client, a, "crash", NULL, CALL_TIMEOUT, &st);
    EXPECT_FAILURE("crash() again", st, LUMEN_TASK_FAILED, LUMEN_ACTOR_DIED, "crash", "signal");
    free(s);
    s = call_get(client, a, "get", NULL, DEATH_TIMEOUT, &st);
    EXPECT_FAILURE("get() after the last restart was used", st, LUMEN_ACTOR_DIED, LUMEN_OK, NULL, NULL);
    free(s);
    w = wait_actor_record(rc, a, "DEAD", false, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL(w);
    free(w);

    /* max_restarts 0: dead after the first crash. */
    lumen_actor b;
    LM_ASSERT_OK(new_counter(client, "0", NULL, &b));
    EXPECT_CALL(client, b, "add", "1", "1");
    s = call_get(client, b, "crash", NULL, CALL_TIMEOUT, &st);
    EXPECT_FAILURE("crash() without restarts", st, LUMEN_TASK_FAILED, LUMEN_ACTOR_DIED, "crash", "signal");
    free(s);
    uint64_t t0 = lm_test_now_us();
    s = call_get(client, b, "add", "1", DEATH_TIMEOUT, &st);
    EXPECT_FAILURE("add(1) after a crash without restarts", st, LUMEN_ACTOR_DIED, LUMEN_OK, NULL, NULL);
    free(s);
    uint64_t took_ms = (lm_test_now_us() - t0) / 1000;
    if (took_ms > (uint64_t)CALL_TIMEOUT) fprintf(stderr, "\nthe call took %llu ms to fail\n", (unsigned long long)took_ms);

    /* The workers took no harm. */
    lumen_ref r;
    lumen_arg x = lumen_arg_bytes("still here", 10);
    LM_ASSERT_OK(lumen_call(client, "test.echo", &x, 1, NULL, &r));
    s = get_str(client, r, CALL_TIMEOUT, &st);
    LM_ASSERT_OK(st);
    CU_ASSERT_STRING_EQUAL(s, "still here");
    free(s);
}

/* A counter made with init and opts whose worker may be killed: another
 * worker stays. Its first call `add` of `step` must answer `want`; *host is
 * the index of its worker (-1 when the record and the process disagree),
 * *node that worker's node id (the caller frees it). */
static void counter_to_kill(const char *init, const lumen_actor_opts *opts, const char *step, const char *want,
                            lumen_actor *a, int *host, char **node) {
    if (alive_workers() < 2) LM_ASSERT_OK(lm_test_cluster_add_worker(cluster, NULL));
    LM_ASSERT_OK(lm_test_cluster_wait_nodes(cluster, alive_workers() + 1, LM_TEST_TIMEOUT(20000)));
    LM_ASSERT_OK(new_counter(client, init, opts, a));
    EXPECT_CALL(client, *a, "add", step, want);
    *host = host_of(redis_open(), *a, node);
}

/* The actor's worker is SIGKILLed while a call runs. With a restart left
 * it comes back on another worker (constructor re-run: state reset) and
 * later calls work; the call in flight fails (max_task_retries 0). */
static void test_worker_killed_actor_restarts(void) {
    redisContext *rc = redis_open();
    CU_ASSERT_PTR_NOT_NULL_FATAL(rc);
    lumen_actor_opts opts = {.max_restarts = 1};
    lumen_actor a;
    char *node = NULL;
    int host;
    counter_to_kill("100", &opts, "5", "105", &a, &host, &node);
    CU_ASSERT_FATAL(host >= 0);

    lumen_ref inflight;
    LM_ASSERT_OK(acall(client, a, "sleep", "5000", &inflight));
    lm_test_sleep_ms(500);
    lm_test_cluster_kill_worker(cluster, host, SIGKILL);
    uint64_t t0 = lm_test_now_us();

    lumen_status st;
    char *s = get_str(client, inflight, DEATH_TIMEOUT, &st);
    EXPECT_FAILURE("sleep(5000) whose worker was killed", st, LUMEN_WORKER_DIED, LUMEN_ACTOR_DIED, NULL, NULL);
    free(s);
    s = call_get(client, a, "get", NULL, DEATH_TIMEOUT, &st);
    if (st.code != LUMEN_OK || strcmp(s, "100") != 0)
        fprintf(stderr, "\nget() after the worker's death -> %s: \"%s\", wanted \"100\" (restarted, state reset)\n",
                lumen_code_name(st.code), s);
    CU_ASSERT_EQUAL(st.code, LUMEN_OK);
    CU_ASSERT_STRING_EQUAL(s, "100");
    free(s);
    fprintf(stderr, "\n  (actor back %.1f s after its worker was killed)\n", (lm_test_now_us() - t0) / 1e6);
    EXPECT_CALL(client, a, "add", "3", "103");

    /* On another worker, as its record and its process both say. */
    long restarts = -1;
    char *node2 = wait_actor_record(rc, a, "ALIVE", true, node, &restarts);
    CU_ASSERT_PTR_NOT_NULL(node2);
    CU_ASSERT_EQUAL(restarts, 1);
    free(node2);
    char *n3 = NULL;
    int host2 = host_of(rc, a, &n3);
    CU_ASSERT_TRUE(host2 >= 0 && host2 != host);
    free(n3);
    free(node);
    kill_quietly(a);
}

/* The same without restarts: calls fail with ACTOR_DIED or WORKER_DIED in
 * bounded time, never by the caller's timeout. */
static void test_worker_killed_actor_dies(void) {
    redisContext *rc = redis_open();
    CU_ASSERT_PTR_NOT_NULL_FATAL(rc);
    lumen_actor a;
    char *node = NULL;
    int host;
    counter_to_kill("0", NULL, "1", "1", &a, &host, &node);
    CU_ASSERT_FATAL(host >= 0);
    free(node);

    lumen_ref inflight, queued;
    LM_ASSERT_OK(acall(client, a, "sleep", "5000", &inflight));
    LM_ASSERT_OK(acall(client, a, "add", "1", &queued));
    lm_test_sleep_ms(500);
    lm_test_cluster_kill_worker(cluster, host, SIGKILL);
    uint64_t t0 = lm_test_now_us();

    lumen_status st;
    char *s = get_str(client, inflight, DEATH_TIMEOUT, &st);
    EXPECT_FAILURE("sleep(5000) whose worker was killed", st, LUMEN_WORKER_DIED, LUMEN_ACTOR_DIED, NULL, NULL);
    free(s);
    s = get_str(client, queued, DEATH_TIMEOUT, &st);
    EXPECT_FAILURE("add(1) queued on the killed worker", st, LUMEN_WORKER_DIED, LUMEN_ACTOR_DIED, NULL, NULL);
    free(s);
    s = call_get(client, a, "add", "1", DEATH_TIMEOUT, &st);
    EXPECT_FAILURE("add(1) after the worker's death", st, LUMEN_ACTOR_DIED, LUMEN_WORKER_DIED, NULL, NULL);
    free(s);
    fprintf(stderr, "\n  (calls failed %.1f s after the worker was killed)\n", (lm_test_now_us() - t0) / 1e6);
    char *w = wait_actor_record(rc, a, "DEAD", false, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL(w);
    free(w);

    /* The cluster serves on with the worker left. */
    lumen_actor b;
    LM_ASSERT_OK(new_counter(client, "1", NULL, &b));
    EXPECT_CALL(client, b, "add", "1", "2");
    kill_quietly(b);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"constructor arguments make the state", test_constructor_and_state},
        {"10,000 calls run in submission order", test_ten_thousand_calls_in_order},
        {"a named actor shared by two clients", test_named_actor_two_clients},
        {"errors are clear; the actor outlives them", test_errors},
        {"call results as arguments of tasks and other actors", test_results_as_arguments},
        {"a call result as an argument of the same actor", test_result_as_argument_of_same_actor},
        {"a task calls an actor", test_task_calls_actor},
        {"lumen_actor_kill", test_kill},
        {"a crashing method: restart, then death", test_crash},
        {"worker SIGKILLed: the actor restarts elsewhere", test_worker_killed_actor_restarts},
        {"worker SIGKILLed: without restarts calls fail", test_worker_killed_actor_dies},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("actors", tests, suite_init, suite_cleanup);
}

/*
 * Faults of the cluster's shared parts, for real:
 * - Redis paused (SIGSTOP) for longer than the heartbeat timeout: a job
 *   started meanwhile (connect, puts, tasks, gets, close) finishes without
 *   it and no node is declared dead.
 * - Redis killed with SIGKILL mid-job and restarted from its append-only
 *   file. Services keep serving while it is down (nothing on the task path
 *   waits for Redis), reconnect by themselves, and what they wrote behind
 *   meanwhile reaches Redis after all.
 * - The scheduler killed with SIGKILL mid-job and restarted: workers and
 *   stores register again, clients send their job and tasks again, actors
 *   live on, and the job finishes right.
 * - A node (an object store and its worker) killed with SIGKILL: objects
 *   tasks made there are rebuilt by running their producers again, through
 *   two levels of lineage; objects put there report OBJECT_LOST at once.
 */
#include <arpa/inet.h>
#include <hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lumen/lumen.h>

#include "client_suite.h"
#include "health.h"
#include "redis_server.h"
#include "rpc.h"
#include "test_util.h"

static lm_test_cluster *cluster;
static lumen_client *client;

static int suite_init(void) {
    lm_test_cluster_opts opts = {.workers = 2, .slots = 2, .redis_appendonly = true};
    return lm_test_client_suite_start(&opts, &cluster, &client);
}

static int suite_cleanup(void) { return lm_test_client_suite_stop(cluster, client); }

/* Submits n tasks test.add(i, 1) and checks every result is i + 1. */
static void run_tasks_and_check(int first, int n) {
    lumen_ref *refs = malloc((size_t)n * sizeof *refs);
    for (int i = 0; i < n; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", first + i);
        lumen_arg args[2] = {lumen_arg_bytes(num, strlen(num)), lumen_arg_bytes("1", 1)};
        LM_ASSERT_OK(lumen_call(client, "test.add", args, 2, NULL, &refs[i]));
    }
    int wrong = 0;
    for (int i = 0; i < n; i++) {
        lumen_bytes b = {0};
        lumen_status st = lumen_get(client, refs[i], LM_TEST_TIMEOUT(30000), &b);
        char want[16];
        snprintf(want, sizeof want, "%d", first + i + 1);
        if (!LM_IS_OK(st) || b.len != strlen(want) || memcmp(b.data, want, b.len) != 0) {
            if (wrong++ == 0)
                fprintf(stderr, "\ntask %d: %s (%s), wanted %s\n", first + i, lumen_code_name(st.code), st.msg, want);
        }
        lumen_bytes_free(&b);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    free(refs);
}

/* Every service still answers Health SERVING. */
static void expect_services_serving(void) {
    lm_rpc_client *rpc = NULL;
    LM_ASSERT_OK(lm_rpc_client_new(&(lm_rpc_client_opts){0}, &rpc));
    const char *addrs[] = {lm_test_cluster_scheduler(cluster), lm_test_cluster_objstore(cluster)};
    for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++)
        LM_ASSERT_OK(lm_health_check(rpc, addrs[i], LM_TEST_TIMEOUT(5000), NULL, NULL));
    lm_rpc_client_free(rpc);
}

static long long hash_len(const char *redis_addr, const char *key) {
    redisContext *c = lm_test_redis_connect(redis_addr);
    if (c == NULL || c->err) {
        if (c) redisFree(c);
        return -1;
    }
    redisReply *r = redisCommand(c, "HLEN %s", key);
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

/* Nothing a job waits on waits for Redis: with Redis stopped (a hung
 * Redis holds connections open and answers nothing, worse than a dead
 * one), a whole job runs, and heartbeats keep every node alive. */
static void test_redis_paused(void) {
    lm_test_redis *redis = lm_test_cluster_redis_server(cluster);
    pid_t pid = lm_test_redis_pid(redis);
    CU_ASSERT_FATAL(pid > 0);
    run_tasks_and_check(0, 100); /* warm */
    CU_ASSERT_EQUAL_FATAL(kill(pid, SIGSTOP), 0);

    lumen_client *c = NULL;
    lumen_status st = lumen_connect(lm_test_cluster_scheduler(cluster), NULL, &c);
    if (LM_IS_OK(st)) {
        size_t big = 1u << 20; /* through the object store */
        char *data = malloc(big);
        memset(data, 'x', big);
        lumen_ref put = {0}, r = {0};
        st = lumen_put(c, data, big, &put);
        lumen_arg args[2] = {lumen_arg_ref(put), lumen_arg_bytes("tail", 4)};
        if (LM_IS_OK(st)) st = lumen_call(c, "test.concat", args, 2, NULL, &r);
        lumen_bytes b = {0};
        if (LM_IS_OK(st)) st = lumen_get(c, r, LM_TEST_TIMEOUT(20000), &b);
        CU_ASSERT(LM_IS_OK(st) && b.len == big + 4 && memcmp((char *)b.data + big, "tail", 4) == 0);
        lumen_bytes_free(&b);
        free(data);
        lumen_close(c);
    }
    LM_ASSERT_OK(st);
    /* Past the heartbeat timeout (5 s): nodes beat without Redis. */
    lm_test_sleep_ms(6000);
    run_tasks_and_check(100, 200);
    expect_services_serving();
    CU_ASSERT_EQUAL(kill(pid, SIGCONT), 0);
    run_tasks_and_check(300, 100);
}

static void test_redis_killed_and_restarted_mid_job(void) {
    lm_test_redis *redis = lm_test_cluster_redis_server(cluster);
    run_tasks_and_check(0, 500); /* warm */

    lm_test_redis_kill(redis); /* SIGKILL */
    /* While it is down the task path does not need it. */
    lumen_ref during;
    lumen_arg args[2] = {lumen_arg_bytes("41", 2), lumen_arg_bytes("1", 1)};
    LM_ASSERT_OK(lumen_call(client, "test.add", args, 2, NULL, &during));
    run_tasks_and_check(1000, 500);
    expect_services_serving();

    LM_ASSERT_OK(lm_test_redis_restart(redis));
    run_tasks_and_check(2000, 500);
    expect_services_serving();

    /* What the scheduler wrote behind while Redis was down arrives: the
     * record of the task made then exists (its write is retried). */
    char key[80], hex[33];
    lm_id task;
    memcpy(task.bytes, during.id, LM_ID_BYTES);
    memset(task.bytes + 12, 0, 4); /* a result id is its task's id with the return number in the last 4 bytes */
    snprintf(key, sizeof key, "lumen:task:%s", lm_id_to_hex(task, hex));
    long long fields = -1;
    for (int waited = 0; waited < LM_TEST_TIMEOUT(10000) && fields <= 0; waited += 100) {
        fields = hash_len(lm_test_cluster_redis(cluster), key);
        if (fields <= 0) lm_test_sleep_ms(100);
    }
    CU_ASSERT(fields > 0);

    lumen_bytes b = {0};
    LM_ASSERT_OK(lumen_get(client, during, LM_TEST_TIMEOUT(10000), &b));
    CU_ASSERT(b.len == 2 && memcmp(b.data, "42", 2) == 0);
    lumen_bytes_free(&b);

    /* The nodes are all registered again (their heartbeats re-register
     * them if Redis lost anything), and a new client starts a job. */
    LM_ASSERT_OK(lm_test_cluster_wait_nodes(cluster, 3, LM_TEST_TIMEOUT(20000)));
    lumen_client *fresh = NULL;
    LM_ASSERT_OK(lumen_connect(lm_test_cluster_scheduler(cluster), NULL, &fresh));
    lumen_close(fresh);
}

/* The result of ref, or the error's message, as a string. */
static char *get_text(lumen_client *c, lumen_ref ref, lumen_status *st) {
    lumen_bytes b = {0};
    *st = lumen_get(c, ref, LM_TEST_TIMEOUT(30000), &b);
    char *s = LM_IS_OK(*st) ? strndup(b.data, b.len) : strdup(st->msg);
    lumen_bytes_free(&b);
    return s;
}

/* With put_replicas copies of every put (1: none extra). */
static void node_lost(const char *put_replicas) {
    enum { N = 8 };
    lm_test_cluster *two = NULL;
    const char *const sched_flags[] = {"--put-replicas", put_replicas, NULL};
    bool copies = strcmp(put_replicas, "1") != 0;
    lm_test_cluster_opts opts = {.workers = 2, .slots = 2, .objstores = 2, .scheduler_flags = sched_flags};
    LM_ASSERT_OK(lm_test_cluster_start(&opts, &two));
    lumen_client *c = NULL;
    LM_ASSERT_OK(lumen_connect(lm_test_cluster_scheduler(two), NULL, &c));

    /* Two levels of lineage, results big enough to live in the stores:
     * made[i] = repeat(word i), echoed[i] = echo(made[i]). */
    lumen_ref made[N], echoed[N], puts[2];
    char words[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(words[i], sizeof words[i], "w%02d.", i);
        lumen_arg args[2] = {lumen_arg_bytes(words[i], strlen(words[i])), lumen_arg_bytes("40000", 5)};
        LM_ASSERT_OK(lumen_call(c, "test.repeat", args, 2, NULL, &made[i]));
        lumen_arg again = lumen_arg_ref(made[i]);
        LM_ASSERT_OK(lumen_call(c, "test.echo", &again, 1, NULL, &echoed[i]));
    }
    size_t big = 200 * 1024;
    char *data = malloc(big);
    memset(data, 'p', big);
    for (int i = 0; i < 2; i++) LM_ASSERT_OK(lumen_put(c, data, big, &puts[i])); /* one in each store */
    lumen_status st;
    for (int i = 0; i < N; i++) {
        char *s = get_text(c, echoed[i], &st);
        LM_ASSERT_OK(st);
        CU_ASSERT_EQUAL(strlen(s), 40000 * strlen(words[i]));
        free(s);
    }

    /* The node of store 1 goes: its store and its worker. */
    lm_test_cluster_kill_objstore(two, 1, SIGKILL);
    lm_test_cluster_kill_worker(two, 1, SIGKILL);

    int rebuilt_ok = 0;
    for (int i = 0; i < N; i++) {
        char *s = get_text(c, echoed[i], &st);
        size_t want = 40000 * strlen(words[i]);
        bool ok = LM_IS_OK(st) && strlen(s) == want && strncmp(s, words[i], strlen(words[i])) == 0;
        if (!ok) fprintf(stderr, "\necho(repeat(%s)) after the node died: %s: %.200s\n", words[i], lumen_code_name(st.code), s);
        rebuilt_ok += ok;
        free(s);
    }
    CU_ASSERT_EQUAL(rebuilt_ok, N);

    /* The puts: the one in the dead store is lost, clearly; a task that takes
     * it fails with that; the other reads fine. */
    int lost = 0, fine = 0;
    for (int i = 0; i < 2; i++) {
        lumen_bytes b = {0};
        st = lumen_get(c, puts[i], LM_TEST_TIMEOUT(10000), &b);
        if (LM_IS_OK(st) && b.len == big) fine++;
        if (st.code == LUMEN_OBJECT_LOST && strstr(st.msg, "gone") != NULL) {
            lost++;
            lumen_arg a = lumen_arg_ref(puts[i]);
            lumen_ref r;
            LM_ASSERT_OK(lumen_call(c, "test.size", &a, 1, NULL, &r));
            char *s = get_text(c, r, &st);
            CU_ASSERT_EQUAL(st.code, LUMEN_OBJECT_LOST);
            CU_ASSERT_PTR_NOT_NULL(strstr(s, "lost with object store"));
            free(s);
        }
        lumen_bytes_free(&b);
    }
    if (copies) { /* every put is read from its other copy, also by a task */
        CU_ASSERT_EQUAL(lost, 0);
        CU_ASSERT_EQUAL(fine, 2);
        for (int i = 0; i < 2; i++) {
            lumen_arg a = lumen_arg_ref(puts[i]);
            lumen_ref r;
            LM_ASSERT_OK(lumen_call(c, "test.size", &a, 1, NULL, &r));
            char *s = get_text(c, r, &st);
            LM_ASSERT_OK(st);
            char want[32];
            snprintf(want, sizeof want, "%zu", big);
            CU_ASSERT_STRING_EQUAL(s, want);
            free(s);
        }
    } else {
        CU_ASSERT_EQUAL(lost, 1);
        CU_ASSERT_EQUAL(fine, 1);
    }
    free(data);
    lumen_close(c);
    lm_test_cluster_stop(two);
}

static void test_node_lost_objects_rebuilt(void) { node_lost("1"); }
static void test_node_lost_puts_replicated(void) { node_lost("2"); }

enum { BIG_PUT = 200 * 1024 };

/* Puts BIG_PUT bytes (too big to travel inline: it lives in a store). */
static void put_big(lumen_client *c, lumen_ref *ref) {
    static char data[BIG_PUT];
    memset(data, 'q', sizeof data);
    LM_ASSERT_OK(lumen_put(c, data, sizeof data, ref));
}

/* The result of a task that took a lost put: OBJECT_LOST (within a deadline
 * far shorter than a store's wait for a put that never comes). */
static void expect_lost(lumen_client *c, lumen_ref result) {
    lumen_bytes b = {0};
    lumen_status st = lumen_get(c, result, LM_TEST_TIMEOUT(20000), &b);
    if (st.code != LUMEN_OBJECT_LOST) fprintf(stderr, "\n  a lost put's task: %s: %s\n", lumen_code_name(st.code), st.msg);
    CU_ASSERT_EQUAL(st.code, LUMEN_OBJECT_LOST);
    lumen_bytes_free(&b);
}

/* The size of a put, read by a task: 0 when the task worked ("204800"),
 * else the error code of its result. */
static lumen_code size_by_task(lumen_client *c, lumen_ref put) {
    lumen_ref size;
    lumen_status st = lumen_call(c, "test.size", (lumen_arg[]){lumen_arg_ref(put)}, 1, NULL, &size);
    lumen_bytes b = {0};
    if (LM_IS_OK(st)) st = lumen_get(c, size, LM_TEST_TIMEOUT(20000), &b);
    if (!LM_IS_OK(st) && st.code != LUMEN_OBJECT_LOST) fprintf(stderr, "\n  a put's size: %s: %s\n", lumen_code_name(st.code), st.msg);
    lumen_code code = LM_IS_OK(st) && !(b.len == 6 && memcmp(b.data, "204800", 6) == 0) ? LUMEN_INTERNAL : st.code;
    lumen_bytes_free(&b);
    return code;
}

/*
 * Puts whose stores were restarted on their addresses before any task took
 * them: the restarted stores never had them, though they answer at the
 * same addresses. A task taking one fails OBJECT_LOST at once (the put
 * names the store incarnation that took it), instead of being sent to read
 * it from a store that waits for it until the RPC deadline; a new put works.
 */
static void test_put_lost_to_store_restarted_on_its_address(void) {
    lm_test_cluster *two = NULL;
    lm_test_cluster_opts opts = {.workers = 2, .slots = 2, .objstores = 2};
    LM_ASSERT_OK(lm_test_cluster_start(&opts, &two));
    lumen_client *c = NULL;
    LM_ASSERT_OK(lumen_connect(lm_test_cluster_scheduler(two), NULL, &c));
    lumen_ref lost, fresh;
    put_big(c, &lost);
    for (int i = 0; i < 2; i++) LM_ASSERT_OK(lm_test_cluster_restart_objstore(two, i, SIGKILL));
    LM_ASSERT_OK(lm_test_cluster_wait_registered(two, LM_TEST_TIMEOUT(20000)));
    CU_ASSERT_EQUAL(size_by_task(c, lost), LUMEN_OBJECT_LOST);

    put_big(c, &fresh);
    CU_ASSERT_EQUAL(size_by_task(c, fresh), LUMEN_OK);
    lumen_close(c);
    lm_test_cluster_stop(two);
}

/*
 * The same while the scheduler is down: the store holding a put is killed,
 * a new scheduler learns of the put from a task that takes it before the
 * store (restarted on its address, a new incarnation) registers again. The
 * put names the incarnation that took it, so the task fails OBJECT_LOST
 * when the new one registers (or the recovery window ends) instead of
 * waiting in the new store for an object it never had.
 */
static void test_put_lost_while_scheduler_down(void) {
    lm_test_cluster *one = NULL;
    lm_test_cluster_opts opts = {.workers = 1, .slots = 2};
    LM_ASSERT_OK(lm_test_cluster_start(&opts, &one));
    lumen_client *c = NULL;
    LM_ASSERT_OK(lumen_connect(lm_test_cluster_scheduler(one), NULL, &c));
    lumen_ref lost, size_of_lost;
    put_big(c, &lost);
    lm_test_cluster_kill_scheduler(one, SIGKILL);
    lm_test_cluster_kill_objstore(one, 0, SIGKILL);
    LM_ASSERT_OK(lm_test_cluster_restart_scheduler(one, SIGKILL));
    LM_ASSERT_OK(lumen_call(c, "test.size", (lumen_arg[]){lumen_arg_ref(lost)}, 1, NULL, &size_of_lost));
    LM_ASSERT_OK(lm_test_cluster_restart_objstore(one, 0, SIGKILL));
    expect_lost(c, size_of_lost);
    lumen_close(c);
    lm_test_cluster_stop(one);
}

/*
 * A put with a copy in each of two stores (put_replicas 2), the second
 * store restarted on its address since (its copy is gone with it), then
 * the first killed: the put is lost, not read from the restarted store,
 * which never had it and would hold the reader until its deadline. Two
 * puts, so that one of them has its first copy in each store.
 */
static void test_copy_lost_to_store_restarted_on_its_address(void) {
    lm_test_cluster *two = NULL;
    const char *const sched_flags[] = {"--put-replicas", "2", NULL};
    lm_test_cluster_opts opts = {.workers = 2, .slots = 2, .objstores = 2, .scheduler_flags = sched_flags};
    LM_ASSERT_OK(lm_test_cluster_start(&opts, &two));
    lumen_client *c = NULL;
    LM_ASSERT_OK(lumen_connect(lm_test_cluster_scheduler(two), NULL, &c));
    lumen_ref puts[2];
    for (int i = 0; i < 2; i++) {
        put_big(c, &puts[i]);
        CU_ASSERT_EQUAL(size_by_task(c, puts[i]), LUMEN_OK); /* the scheduler knows both copies now */
    }
    LM_ASSERT_OK(lm_test_cluster_restart_objstore(two, 1, SIGKILL));
    LM_ASSERT_OK(lm_test_cluster_wait_registered(two, LM_TEST_TIMEOUT(20000)));
    lm_test_cluster_kill_objstore(two, 0, SIGKILL);
    for (int i = 0; i < 2; i++) CU_ASSERT_EQUAL(size_by_task(c, puts[i]), LUMEN_OBJECT_LOST);
    lumen_close(c);
    lm_test_cluster_stop(two);
}

static void test_scheduler_killed_and_restarted_mid_job(void) {
    enum { CHAIN = 30, SLEEPS = 24, CALLS = 10 };
    lumen_actor counter;
    lumen_actor_opts ao = {.max_restarts = 1};
    LM_ASSERT_OK(lumen_actor_new(client, "test.Counter", NULL, 0, &ao, &counter));
    lumen_ref calls[2 * CALLS];
    lumen_arg one = lumen_arg_bytes("1", 1);
    for (int i = 0; i < CALLS; i++) LM_ASSERT_OK(lumen_actor_call(client, counter, "add", &one, 1, &calls[i]));

    /* Work in flight when the scheduler dies: sleepers, and a chain whose
     * links are results the new scheduler must learn again. */
    lumen_ref sleeps[SLEEPS], link;
    lumen_arg nap = lumen_arg_bytes("150", 3);
    for (int i = 0; i < SLEEPS; i++) LM_ASSERT_OK(lumen_call(client, "test.sleep", &nap, 1, NULL, &sleeps[i]));
    LM_ASSERT_OK(lumen_call(client, "test.add", (lumen_arg[]){lumen_arg_bytes("0", 1)}, 1, NULL, &link));
    for (int i = 1; i <= CHAIN; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        lumen_arg args[2] = {lumen_arg_ref(link), lumen_arg_bytes(num, strlen(num))};
        LM_ASSERT_OK(lumen_call(client, "test.add", args, 2, NULL, &link));
    }
    lm_test_sleep_ms(200);
    LM_ASSERT_OK(lm_test_cluster_restart_scheduler(cluster, SIGKILL));

    lumen_status st;
    for (int i = 0; i < SLEEPS; i++) {
        lumen_bytes b = {0};
        st = lumen_get(client, sleeps[i], LM_TEST_TIMEOUT(30000), &b);
        if (!LM_IS_OK(st)) fprintf(stderr, "\nsleeper %d: %s: %s\n", i, lumen_code_name(st.code), st.msg);
        CU_ASSERT_EQUAL(st.code, LUMEN_OK);
        lumen_bytes_free(&b);
    }
    lumen_bytes b = {0};
    st = lumen_get(client, link, LM_TEST_TIMEOUT(30000), &b);
    if (!LM_IS_OK(st)) fprintf(stderr, "\nchain: %s: %s\n", lumen_code_name(st.code), st.msg);
    LM_ASSERT_OK(st);
    CU_ASSERT(b.len == 3 && memcmp(b.data, "465", 3) == 0); /* 1 + ... + 30 */
    lumen_bytes_free(&b);

    /* The actor lived through it, state and all; new work runs. */
    for (int i = CALLS; i < 2 * CALLS; i++) LM_ASSERT_OK(lumen_actor_call(client, counter, "add", &one, 1, &calls[i]));
    st = lumen_get(client, calls[2 * CALLS - 1], LM_TEST_TIMEOUT(30000), &b);
    LM_ASSERT_OK(st);
    CU_ASSERT(b.len == 2 && memcmp(b.data, "20", 2) == 0);
    lumen_bytes_free(&b);
    run_tasks_and_check(3000, 200);
    LM_ASSERT_OK(lm_test_cluster_wait_nodes(cluster, 3, LM_TEST_TIMEOUT(20000)));
    (void)lumen_actor_kill(client, counter);
}

/*
 * Tasks that take actor call results, sent before the calls finished (so
 * the scheduler learns the results from the worker, not from the task's
 * spec), wait on a slow gate while the scheduler dies. The dead scheduler
 * held the small result in memory and knew where the big one was stored;
 * the new one must learn both again (the caller reports small results, the
 * stores' directory has the big one) instead of waiting for ever.
 */
static void test_actor_results_outlive_scheduler_restart(void) {
    enum { BIG = 1 << 20 };
    lumen_actor counter;
    LM_ASSERT_OK(lumen_actor_new(client, "test.Counter", NULL, 0, NULL, &counter));
    char *text = malloc(BIG);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    memset(text, 'x', BIG);
    lumen_ref small, big, gate, took_small, took_big;
    lumen_arg nap = lumen_arg_bytes("200", 3);
    LM_ASSERT_OK(lumen_actor_call(client, counter, "sleep", &nap, 1, &small));
    lumen_arg say = lumen_arg_bytes(text, BIG);
    LM_ASSERT_OK(lumen_actor_call(client, counter, "say", &say, 1, &big));
    free(text);
    lumen_arg long_nap = lumen_arg_bytes("2500", 4);
    LM_ASSERT_OK(lumen_call(client, "test.sleep", &long_nap, 1, NULL, &gate));
    LM_ASSERT_OK(lumen_call(client, "test.concat", (lumen_arg[]){lumen_arg_ref(small), lumen_arg_ref(gate)}, 2, NULL,
                            &took_small));
    LM_ASSERT_OK(lumen_call(client, "test.size", (lumen_arg[]){lumen_arg_ref(big), lumen_arg_ref(gate)}, 2, NULL,
                            &took_big));
    lumen_bytes b = {0};
    LM_ASSERT_OK(lumen_get(client, big, LM_TEST_TIMEOUT(20000), &b)); /* both calls ran and were reported */
    CU_ASSERT_EQUAL(b.len, BIG);
    lumen_bytes_free(&b);
    LM_ASSERT_OK(lm_test_cluster_restart_scheduler(cluster, SIGKILL));

    lumen_ref all[4] = {small, big, took_small, took_big};
    int ready[4] = {0};
    size_t done = 0;
    LM_ASSERT_OK(lumen_wait(client, all, 4, 4, LM_TEST_TIMEOUT(30000), ready, &done));
    CU_ASSERT_EQUAL(done, 4);
    lumen_status st = lumen_get(client, took_small, 0, &b);
    if (!LM_IS_OK(st)) fprintf(stderr, "\ntask on a small call result: %s: %s\n", lumen_code_name(st.code), st.msg);
    CU_ASSERT(LM_IS_OK(st) && b.len == 10 && memcmp(b.data, "sleptslept", 10) == 0);
    lumen_bytes_free(&b);
    st = lumen_get(client, took_big, 0, &b);
    if (!LM_IS_OK(st)) fprintf(stderr, "\ntask on a big call result: %s: %s\n", lumen_code_name(st.code), st.msg);
    CU_ASSERT(LM_IS_OK(st) && b.len == 7 && memcmp(b.data, "1048581", 7) == 0); /* 1 MiB + "slept" */
    lumen_bytes_free(&b);
    LM_ASSERT_OK(lm_test_cluster_wait_nodes(cluster, 3, LM_TEST_TIMEOUT(20000)));
    (void)lumen_actor_kill(client, counter);
}

typedef struct late_client {
    pthread_t thread;
    lumen_status st;
    lumen_client *c;
} late_client;

static void *connect_main(void *arg) {
    late_client *lc = arg;
    lumen_connect_opts opts = {.connect_timeout_ms = LM_TEST_TIMEOUT(20000)};
    lc->st = lumen_connect(lm_test_cluster_scheduler(cluster), &opts, &lc->c);
    return NULL;
}

/* Listens on host:port ("127.0.0.1:port") as a dying scheduler would:
 * accepts one connection and closes it before a byte is answered, then
 * listens no more. False if nobody came within timeout_ms. */
static bool die_under_one_connection(const char *addr, int timeout_ms) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(strchr(addr, ':') + 1))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
              bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 8) == 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ok = ok && poll(&p, 1, timeout_ms) == 1;
    int conn = ok ? accept(fd, NULL, NULL) : -1;
    if (conn >= 0) close(conn);
    if (fd >= 0) close(fd);
    return conn >= 0;
}

/* A program started while the scheduler restarts waits for it, also when
 * the dying scheduler took its first connection and closed it. */
static void test_connect_while_scheduler_restarts(void) {
    lm_test_cluster_kill_scheduler(cluster, SIGKILL);
    late_client lc = {0};
    CU_ASSERT_EQUAL_FATAL(pthread_create(&lc.thread, NULL, connect_main, &lc), 0);
    CU_ASSERT(die_under_one_connection(lm_test_cluster_scheduler(cluster), LM_TEST_TIMEOUT(10000)));
    lm_test_sleep_ms(500); /* then it finds no one there */
    LM_ASSERT_OK(lm_test_cluster_restart_scheduler(cluster, SIGKILL));
    pthread_join(lc.thread, NULL);
    LM_ASSERT_OK(lc.st);
    if (lc.c != NULL) {
        lumen_ref ref;
        lumen_bytes b = {0};
        LM_ASSERT_OK(lumen_call(lc.c, "test.add", (lumen_arg[]){lumen_arg_bytes("2", 1), lumen_arg_bytes("3", 1)}, 2,
                                NULL, &ref));
        LM_ASSERT_OK(lumen_get(lc.c, ref, LM_TEST_TIMEOUT(30000), &b));
        CU_ASSERT(b.len == 1 && ((const char *)b.data)[0] == '5');
        lumen_bytes_free(&b);
        lumen_close(lc.c);
    }
    LM_ASSERT_OK(lm_test_cluster_wait_nodes(cluster, 3, LM_TEST_TIMEOUT(20000)));
}

/* The size of a file (0: none), and whether text is in it past offset. */
static long file_size(const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static bool file_has_after(const char *path, long offset, const char *text) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return false;
    fseek(f, offset, SEEK_SET);
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof line, f) != NULL) found = strstr(line, text) != NULL;
    fclose(f);
    return found;
}

/*
 * A scheduler stopped for longer than the heartbeat timeout (SIGSTOP here;
 * a paused machine, a debugger) hears no heartbeat meanwhile, through no
 * fault of the nodes: woken, it gives them a timeout anew instead of
 * declaring them all dead at once.
 */
static void test_scheduler_stopped_declares_no_node_dead(void) {
    char log[600];
    snprintf(log, sizeof log, "%s/scheduler.log", lm_test_cluster_dir(cluster));
    long before = file_size(log);
    pid_t pid = lm_test_cluster_scheduler_pid(cluster);
    CU_ASSERT_EQUAL_FATAL(kill(pid, SIGSTOP), 0);
    lm_test_sleep_ms(6500); /* the heartbeat timeout is 5 s */
    CU_ASSERT_EQUAL(kill(pid, SIGCONT), 0);
    run_tasks_and_check(5000, 20);
    CU_ASSERT_TRUE(file_has_after(log, before, "ms late"));
    bool died = file_has_after(log, before, "is dead");
    if (died) fprintf(stderr, "\n  a node was declared dead while the scheduler was stopped\n");
    CU_ASSERT_FALSE(died);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"redis paused: a job runs without it, no node dies", test_redis_paused},
        {"redis killed and restarted mid-job", test_redis_killed_and_restarted_mid_job},
        {"scheduler killed and restarted mid-job", test_scheduler_killed_and_restarted_mid_job},
        {"tasks on actor call results outlive a scheduler restart", test_actor_results_outlive_scheduler_restart},
        {"a put whose store restarted on its address is lost, not waited for", test_put_lost_to_store_restarted_on_its_address},
        {"a put whose store restarted while the scheduler was down is lost, not waited for", test_put_lost_while_scheduler_down},
        {"a put's copy in a store restarted on its address is not read from there", test_copy_lost_to_store_restarted_on_its_address},
        {"a client connecting while the scheduler restarts waits for it", test_connect_while_scheduler_restarts},
        {"a scheduler stopped past the heartbeat timeout declares no node dead", test_scheduler_stopped_declares_no_node_dead},
        {"a node killed: its objects are rebuilt from lineage, its puts are lost", test_node_lost_objects_rebuilt},
        {"a node killed with put_replicas 2: puts are read from their copies", test_node_lost_puts_replicated},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("faults", tests, suite_init, suite_cleanup);
}

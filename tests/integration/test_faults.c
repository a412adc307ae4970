/*
 * Faults of the cluster's shared parts, for real: Redis killed with SIGKILL
 * mid-job and restarted from its append-only file. Services keep serving
 * while it is down (nothing on the task path waits for Redis), reconnect by
 * themselves, and what they wrote behind meanwhile reaches Redis after all.
 */
#include <hiredis.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

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
    char host[64];
    int port = 0;
    sscanf(redis_addr, "%63[^:]:%d", host, &port);
    redisContext *c = redisConnect(host, port);
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

int main(void) {
    CU_TestInfo tests[] = {
        {"redis killed and restarted mid-job", test_redis_killed_and_restarted_mid_job},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("faults", tests, suite_init, suite_cleanup);
}

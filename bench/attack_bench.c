/*
 * attack_bench - what a member of a cluster sees while a stranger (no
 * token) attacks it: a real local cluster with a token (build/bin), each
 * attack of tests/support/attack.py in turn (the ones of it_attacks, which
 * asserts their bounds), and meanwhile a member timing its calls: health
 * checks of the scheduler, and tasks (test.echo, submit to result). Prints
 * `metric: value unit` lines: the idle figures, then per attack the
 * member's p50 and p99 with their ratio to idle, the target's peak memory,
 * and the nodes declared dead. Never passes or fails on time.
 *
 *   attack_bench [--quick] [--only NAME]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lumen/lumen.h>

#include "attack.h"
#include "cluster.h"
#include "log.h"
#include "redis_state.h"
#include "test_util.h"

#define TOKEN "attack-bench-token-0123456789abcdef"
#define IDLE_MS 3000
#define ATTACK_TIMEOUT_MS 120000

static lm_test_cluster *cluster;
static lumen_client *client;
static lm_rpc_client *rpc;
static bool quick;

static void die(const char *what, lumen_status st) {
    fprintf(stderr, "attack_bench: %s: %s\n", what, st.msg);
    exit(1);
}

/* A member's task, submit to result. */
static lumen_status task_probe(void *arg) {
    (void)arg;
    static const char text[] = "still here";
    lumen_arg a = lumen_arg_bytes(text, sizeof text - 1);
    lumen_ref ref;
    lumen_status st = lumen_call(client, "test.echo", &a, 1, NULL, &ref);
    lumen_bytes out = {0};
    if (LM_IS_OK(st)) st = lumen_get(client, ref, 10000, &out);
    if (LM_IS_OK(st) && (out.len != sizeof text - 1 || memcmp(out.data, text, out.len) != 0))
        st = lm_status(LUMEN_INTERNAL, "a wrong answer");
    lumen_bytes_free(&out);
    lumen_free(client, &ref, 1);
    return st;
}

static int nodes_dead(void) {
    lm_redis_opts ro = {.addr = lm_test_cluster_redis(cluster)};
    lm_redis *r = NULL;
    lm_node_list *list = NULL;
    int dead = -1;
    if (LM_IS_OK(lm_redis_connect(&ro, &r)) && LM_IS_OK(lm_redis_nodes_list(r, &list))) {
        dead = 0;
        for (size_t i = 0; i < list->count; i++) dead += list->nodes[i].state == LM_NODE_DEAD;
        lm_node_list_free(list);
    }
    lm_redis_free(r);
    return dead;
}

typedef struct attack {
    const char *name;
    char target[32]; /* "host:port" */
    pid_t pid;
    const char *args[8]; /* after the mode's host and port */
} attack;

static void report(const char *name, const char *probe, const lm_latency *l, const lm_latency *idle) {
    printf("%s_%s_p50: %.0f us\n%s_%s_p99: %.0f us\n", name, probe, l->p50_us, name, probe, l->p99_us);
    printf("%s_%s_p50_ratio: %.1f x idle\n%s_%s_p99_ratio: %.1f x idle\n", name, probe,
           idle->p50_us > 0 ? l->p50_us / idle->p50_us : 0, name, probe, idle->p99_us > 0 ? l->p99_us / idle->p99_us : 0);
    printf("%s_%s_failed: %d of %d\n", name, probe, l->failures, l->calls);
}

static void run(const attack *a, const lm_latency idle[2]) {
    const char *args[16] = {a->args[0], "127.0.0.1", strrchr(a->target, ':') + 1};
    int n = 3;
    for (int i = 1; a->args[i] != NULL; i++) args[n++] = a->args[i];
    args[n] = NULL;
    static const char *const probes[] = {"health", "task"};
    uint64_t peak = 0, before = lm_test_rss_kb(a->pid);
    for (int p = 0; p < 2; p++) {
        lm_attack_watch w = {.pids = {a->pid}, .npids = 1, .rpc = rpc, .addr = lm_test_cluster_scheduler(cluster)};
        if (p == 1) w.probe = task_probe;
        lumen_status st = lm_attack_run(args, &w, ATTACK_TIMEOUT_MS);
        if (!LM_IS_OK(st)) die(a->name, st);
        fprintf(stderr, "attack_bench: %s: %s\n", a->name, w.output);
        report(a->name, probes[p], &w.latency, &idle[p]);
        if (w.rss_peak_kb[0] > peak) peak = w.rss_peak_kb[0];
    }
    printf("%s_target_rss_before: %.1f MiB\n%s_target_rss_peak: %.1f MiB\n", a->name, (double)before / 1024, a->name,
           (double)peak / 1024);
    printf("%s_nodes_dead: %d\n", a->name, nodes_dead());
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = true;
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: attack_bench [--quick] [--only NAME]\n");
            return 2;
        }
    }
    lm_log_set_level(LM_LOG_WARN);
    lm_test_cluster_opts opts = {.workers = 1, .slots = 2, .token = TOKEN, .dashboard = true};
    lumen_status st = lm_test_cluster_start(&opts, &cluster);
    lumen_connect_opts co = {.token = TOKEN};
    if (LM_IS_OK(st)) st = lumen_connect(lm_test_cluster_scheduler(cluster), &co, &client);
    lm_rpc_client_opts ro = {.token = TOKEN};
    if (LM_IS_OK(st)) st = lm_rpc_client_new(&ro, &rpc);
    if (!LM_IS_OK(st)) die("cluster", st);

    lm_latency idle[2];
    lm_attack_watch w = {.rpc = rpc, .addr = lm_test_cluster_scheduler(cluster)};
    lm_attack_latency(&w, quick ? 1000 : IDLE_MS, &idle[0]);
    w.probe = task_probe;
    lm_attack_latency(&w, quick ? 1000 : IDLE_MS, &idle[1]);
    printf("idle_health_p50: %.0f us\nidle_health_p99: %.0f us\nidle_task_p50: %.0f us\nidle_task_p99: %.0f us\n",
           idle[0].p50_us, idle[0].p99_us, idle[1].p50_us, idle[1].p99_us);

    const char *streams = quick ? "25000" : "100000", *seconds = quick ? "2" : "5";
    char dash[32];
    snprintf(dash, sizeof dash, "127.0.0.1:%u", lm_test_cluster_dashboard(cluster));
    attack attacks[] = {
        {"rapid_reset_scheduler", "", 0, {"rapid-reset", "4", streams, "/lumen.Scheduler/SubmitTasks", NULL}},
        {"rapid_reset_objstore", "", 0, {"rapid-reset", "4", streams, "/lumen.ObjectStore/Get", NULL}},
        {"churn_scheduler", "", 0, {"churn", seconds, "4", NULL}},
        {"churn_objstore", "", 0, {"churn", seconds, "4", NULL}},
        {"big_payload_worker", "", 0, {"big-payload", "64", "66060288", "/lumen.Worker/RunTasks", NULL}},
        {"idle_scheduler", "", 0, {"idle", "1100", seconds, NULL}},
        {"slowloris_dashboard", "", 0, {"slowloris", "70", seconds, NULL}},
    };
    const char *targets[] = {lm_test_cluster_scheduler(cluster), lm_test_cluster_objstore(cluster),
                             lm_test_cluster_scheduler(cluster), lm_test_cluster_objstore(cluster),
                             lm_test_cluster_worker(cluster, 0), lm_test_cluster_scheduler(cluster), dash};
    pid_t pids[] = {lm_test_cluster_scheduler_pid(cluster), lm_test_cluster_objstore_pid(cluster, 0),
                    lm_test_cluster_scheduler_pid(cluster), lm_test_cluster_objstore_pid(cluster, 0),
                    lm_test_cluster_worker_pid(cluster, 0), lm_test_cluster_scheduler_pid(cluster),
                    lm_test_cluster_scheduler_pid(cluster)};
    for (size_t i = 0; i < sizeof attacks / sizeof attacks[0]; i++) {
        if (only != NULL && strstr(attacks[i].name, only) == NULL) continue;
        snprintf(attacks[i].target, sizeof attacks[i].target, "%s", targets[i]);
        attacks[i].pid = pids[i];
        run(&attacks[i], idle);
    }
    lumen_close(client);
    lm_rpc_client_free(rpc);
    lm_test_cluster_stop(cluster);
    return 0;
}

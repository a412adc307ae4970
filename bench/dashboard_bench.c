/*
 * dashboard_bench - how the dashboard's API copes with many task records:
 * writes N task records (default 100,000) into a fresh redis-server the way
 * the scheduler's write-behind does (pipelined batches of 1024 through the
 * task script that keeps the indexes and counters), then starts a real
 * lumen-scheduler (build/bin) with its dashboard on that Redis and times the
 * API's requests over loopback HTTP.
 *
 *   dashboard_bench [--tasks N] [--rounds R]
 *
 * Prints `metric: value unit` lines (median and 95th percentile of R
 * requests each). Never passes or fails on time.
 */
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cluster.h"
#include "http_client.h"
#include "json_parse.h"
#include "log.h"
#include "redis_server.h"
#include "redis_state.h"
#include "test_util.h"

#define BATCH 1024
#define JOBS 10

static const char *const fns[] = {"wordcount.count", "wordcount.merge", "etl.parse", "etl.load"};

static void die(const char *what, lumen_status st) {
    fprintf(stderr, "dashboard_bench: %s: %s\n", what, st.msg);
    exit(1);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Times `rounds` GETs of path; prints median and p95 in ms. */
static void time_get(uint16_t port, const char *name, const char *path, int rounds) {
    double *ms = calloc((size_t)rounds, sizeof *ms);
    size_t bytes = 0;
    for (int i = 0; i < rounds; i++) {
        lm_http_reply r;
        uint64_t t0 = lm_test_now_us();
        if (lm_http_get(port, path, NULL, &r) != 0 || r.status != 200) {
            fprintf(stderr, "dashboard_bench: GET %s: %d %s\n", path, r.status, r.body ? r.body : "");
            exit(1);
        }
        ms[i] = (double)(lm_test_now_us() - t0) / 1000.0;
        bytes = r.body_len;
        lm_http_reply_free(&r);
    }
    qsort(ms, (size_t)rounds, sizeof *ms, cmp_double);
    printf("%s: %.2f ms median, %.2f ms p95 (%zu bytes; GET %s)\n", name, ms[rounds / 2], ms[rounds * 95 / 100], bytes, path);
    free(ms);
}

/* Redis's own time per task write (the script: record, indexes, counters)
 * and the memory all of it takes, from INFO. */
static void redis_cost(lm_test_redis *server, int writes) {
    redisContext *c = redisConnect("127.0.0.1", lm_test_redis_port(server));
    redisReply *stats = c && !c->err ? redisCommand(c, "INFO commandstats") : NULL;
    redisReply *mem = c && !c->err ? redisCommand(c, "INFO memory") : NULL;
    const char *e = stats && stats->type == REDIS_REPLY_STRING ? strstr(stats->str, "cmdstat_evalsha:") : NULL;
    const char *u = e ? strstr(e, "usec=") : NULL;
    const char *m = mem && mem->type == REDIS_REPLY_STRING ? strstr(mem->str, "used_memory:") : NULL;
    if (u) printf("redis_time_per_task_write: %.1f us (EVALSHA of the task script, as Redis counts it)\n",
                  strtod(u + 5, NULL) / writes);
    if (m) printf("redis_memory: %.0f bytes per task (records, indexes, counters)\n", strtod(m + 12, NULL) / (writes / 2));
    freeReplyObject(stats);
    freeReplyObject(mem);
    redisFree(c);
}

int main(int argc, char **argv) {
    int ntasks = 100000, rounds = 50;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tasks") == 0 && i + 1 < argc) ntasks = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: dashboard_bench [--tasks N] [--rounds R]\n");
            return 2;
        }
    }
    if (ntasks < 1 || rounds < 1) {
        fprintf(stderr, "dashboard_bench: --tasks and --rounds want a positive number\n");
        return 2;
    }
    lm_log_set_level(LM_LOG_WARN);
    lm_test_redis *server = NULL;
    lumen_status st = lm_test_redis_start(NULL, &server);
    if (!LM_IS_OK(st)) die("redis", st);
    lm_redis_opts ro = {.addr = lm_test_redis_addr(server)};
    lm_redis *r = NULL;
    if (!LM_IS_OK(st = lm_redis_connect(&ro, &r))) die("connect", st);

    /* The records: submitted (PENDING), then done (FINISHED, or FAILED for 1 in 50). */
    lm_id jobs[JOBS];
    for (int j = 0; j < JOBS; j++) {
        jobs[j] = lm_id_random();
        if (!LM_IS_OK(st = lm_redis_job_start(r, jobs[j]))) die("job start", st);
    }
    lm_task_record *recs = calloc(BATCH, sizeof *recs);
    lm_id *ids = calloc((size_t)ntasks, sizeof *ids);
    double phase_s[2] = {0};
    for (int phase = 0; phase < 2; phase++) {
        uint64_t t0 = lm_test_now_us();
        for (int i = 0; i < ntasks; i += BATCH) {
            int n = ntasks - i < BATCH ? ntasks - i : BATCH;
            for (int k = 0; k < n; k++) {
                int t = i + k;
                if (phase == 0) ids[t] = lm_id_random();
                bool failed = t % 50 == 7;
                recs[k] = (lm_task_record){.id = ids[t], .fn = fns[t % 4], .job = jobs[t % JOBS],
                                           .state = phase == 0 ? LM_TASK_PENDING : failed ? LM_TASK_FAILED : LM_TASK_FINISHED,
                                           .attempts = (uint32_t)phase, .error = failed && phase ? "failed on purpose" : NULL,
                                           .finished_ms = phase ? lm_wall_ms() : 0};
            }
            if (!LM_IS_OK(st = lm_redis_tasks_put(r, recs, (size_t)n))) die("tasks put", st);
        }
        phase_s[phase] = (double)(lm_test_now_us() - t0) / 1e6;
    }
    printf("task_records_first_write: %.0f records/s (%d records, pipelined batches of %d, indexes and counters kept)\n",
           ntasks / phase_s[0], ntasks, BATCH);
    printf("task_records_state_change: %.0f records/s\n", ntasks / phase_s[1]);
    redis_cost(server, 2 * ntasks);
    free(recs);

    /* The scheduler, its dashboard on that Redis. */
    char *dir = lm_test_tmpdir("dashboard-bench");
    char listen[32], port_s[8], log[600];
    uint16_t port = lm_test_free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%u", lm_test_free_port());
    snprintf(port_s, sizeof port_s, "%u", port);
    snprintf(log, sizeof log, "%s/scheduler.log", dir);
    const char *flags[] = {"--listen", listen, "--redis-addr", lm_test_redis_addr(server), "--dashboard-port", port_s, NULL};
    pid_t pid;
    if (!LM_IS_OK(st = lm_test_service_start("scheduler", flags, log, listen, NULL, 20000, &pid))) die("scheduler", st);

    char path[256], cursor_path[256];
    /* a cursor halfway down: the page of the 50,000th newest task */
    lm_http_reply mid;
    snprintf(path, sizeof path, "/api/tasks?limit=1000");
    uint64_t cursor = 0;
    for (int i = 0; i < ntasks / 2000 && i < 50; i++) {
        snprintf(path, sizeof path, "/api/tasks?limit=1000%s%" PRIu64, cursor ? "&cursor=" : "", cursor);
        if (!cursor) snprintf(path, sizeof path, "/api/tasks?limit=1000");
        if (lm_http_get(port, path, NULL, &mid) != 0) die("cursor", lm_status(LUMEN_UNAVAILABLE, "no reply"));
        char err[100];
        lm_tj *v = lm_tj_parse(mid.body, err, sizeof err);
        cursor = (uint64_t)lm_tj_num(v, "next");
        lm_tj_free(v);
        lm_http_reply_free(&mid);
    }
    snprintf(cursor_path, sizeof cursor_path, "/api/tasks?limit=50&cursor=%" PRIu64, cursor);

    printf("records: %d tasks in %d jobs and %zu functions\n", ntasks, JOBS, sizeof fns / sizeof fns[0]);
    time_get(port, "api_summary", "/api/summary", rounds);
    time_get(port, "api_tasks_newest_page", "/api/tasks?limit=50", rounds);
    time_get(port, "api_tasks_page_halfway", cursor_path, rounds);
    time_get(port, "api_tasks_failed_page", "/api/tasks?state=FAILED&limit=50", rounds);
    snprintf(path, sizeof path, "/api/tasks?job=%s&state=FAILED&limit=50", lm_id_str(jobs[7]).s);
    time_get(port, "api_tasks_job_and_state_page", path, rounds);
    snprintf(path, sizeof path, "/api/tasks/%s", lm_id_str(ids[ntasks / 2]).s);
    time_get(port, "api_task", path, rounds);
    time_get(port, "api_jobs", "/api/jobs", rounds);
    time_get(port, "api_nodes", "/api/nodes", rounds);
    time_get(port, "metrics", "/metrics", rounds);

    lm_test_stop(pid, SIGTERM, 5000);
    lm_redis_free(r);
    lm_test_redis_stop(server);
    lm_test_rmtree(dir);
    free(dir);
    free(ids);
    return 0;
}

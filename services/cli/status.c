/*
 * status.c - `lumen status`: the cluster as Redis records it (nodes, tasks,
 * objects, actors, jobs), never from a process's memory.
 *
 * The summary is cluster_view.h's, the same the dashboard's /api/summary
 * serves: read from the counters and indexes the writers keep, a few round
 * trips whatever the number of tasks. --json prints it as the API does.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "cli.h"
#include "config.h"
#include "cluster_view.h"
#include "redis_state.h"

static cli_redis_flags f;
static const char *f_json;

static const cli_flag status_flags[] = {
    CLI_REDIS_FLAG_ROWS(f),
    {"json", NULL, "print the summary as JSON, as the dashboard's /api/summary does", &f_json},
    {NULL, NULL, NULL, NULL},
};

static const cli_command status_cmd = {
    "status", "[--json] [--redis HOST:PORT] [--config FILE]",
    "Shows the cluster's nodes, tasks, objects, actors and jobs as recorded in Redis.",
    "The key prefix and Redis password come from the config file and the environment\n"
    "(LUMEN_KEY_PREFIX, LUMEN_REDIS_PASSWORD).\n",
    status_flags, 0,
};

/* ---- printing ---- */

static void human_bytes(uint64_t b, char *out, size_t cap) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) v /= 1024, u++;
    snprintf(out, cap, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

static int node_order(const void *a, const void *b) {
    const lm_node_record *x = a, *y = b;
    if (x->kind != y->kind) return x->kind == LM_NODE_OBJSTORE ? -1 : 1;
    return strcmp(x->addr, y->addr);
}

static void print_nodes(lm_node_list *list) {
    size_t alive = 0, workers = 0, slots = 0, free_slots = 0;
    for (size_t i = 0; i < list->count; i++) {
        const lm_node_record *n = &list->nodes[i];
        if (n->state != LM_NODE_ALIVE) continue;
        alive++;
        if (n->kind == LM_NODE_WORKER) workers++, slots += n->slots, free_slots += n->slots_free;
    }
    printf("Nodes: %zu alive (%zu workers, %zu slots, %zu free), %zu dead\n", alive, workers, slots, free_slots,
           list->count - alive);
    if (list->count == 0) return;
    qsort(list->nodes, list->count, sizeof list->nodes[0], node_order);
    printf("  %-8s  %-8s  %-22s  %-9s  %-5s  %-10s  %s\n", "NODE", "KIND", "ADDRESS", "FREE/SLOTS", "STATE",
           "HEARTBEAT", "MEMORY");
    uint64_t now = lm_wall_ms();
    for (size_t i = 0; i < list->count; i++) {
        const lm_node_record *n = &list->nodes[i];
        char id[LM_ID_HEX_LEN + 1], slots_s[24] = "-", beat[24] = "-", mem[64] = "-", used[16], limit[16];
        lm_id_to_hex(n->id, id);
        if (n->kind == LM_NODE_WORKER) snprintf(slots_s, sizeof slots_s, "%u/%u", n->slots_free, n->slots);
        if (n->heartbeat_ms != 0)
            snprintf(beat, sizeof beat, "%.1fs ago", now > n->heartbeat_ms ? (double)(now - n->heartbeat_ms) / 1000 : 0.0);
        if (n->kind == LM_NODE_OBJSTORE) {
            human_bytes(n->bytes_used, used, sizeof used);
            human_bytes(n->memory_limit, limit, sizeof limit);
            snprintf(mem, sizeof mem, "%s / %s", used, limit);
        }
        printf("  %-8.8s  %-8s  %-22s  %-10s  %-5s  %-10s  %s\n", id, lm_node_kind_name(n->kind), n->addr, slots_s,
               lm_node_state_name(n->state), beat, mem);
    }
}

static void print_summary(const lm_view_summary *s) {
    char stored[24];
    human_bytes(s->nodes.bytes_used, stored, sizeof stored);
    const lm_task_counts *t = &s->tasks;
    printf("Tasks: %" PRIu64, s->tasks_total);
    for (int i = 0; i < LM_TASK_STATES; i++)
        printf("%s%s %" PRIu64, i == 0 ? " (" : ", ", lm_task_state_name((lm_task_state)i), t->by_state[i]);
    printf("; %" PRIu64 " retried)\n", t->retried);
    printf("Objects: %" PRIu64 " records of running jobs, %s held by object stores\n", s->objects, stored);
    printf("Actors: %" PRIu64, s->actors_total);
    for (int i = 0; i < 4; i++)
        if (s->actors_by_state[i]) printf(", %s %" PRIu64, lm_actor_state_name((lm_actor_state)i), s->actors_by_state[i]);
    printf("\nJobs: %" PRIu64 " (%" PRIu64 " running)\n", s->jobs_total, s->jobs_running);
}

/* The processes `lumen start` runs on this machine (the run dir's pid
 * files), whether they run, and how often the supervisor restarted them. */
static void services(const char *run_dir, lm_json *j) {
    cli_proc *procs = NULL;
    size_t n = 0;
    if (!LM_IS_OK(cli_pidfiles_read(run_dir, &procs, &n))) return;
    if (j != NULL) lm_json_arr(j);
    else if (n > 0) printf("Services on this machine (%s):\n  %-22s  %-8s  %-7s  %s\n", run_dir, "NAME", "PID",
                           "STATE", "RESTARTS");
    for (size_t i = 0; i < n; i++) {
        unsigned restarts = 0;
        bool supervised = cli_supervisor_restarts(run_dir, procs[i].name, &restarts);
        bool alive = cli_proc_alive(&procs[i]);
        if (j != NULL) {
            lm_json_obj(j);
            lm_json_key(j, "name");
            lm_json_str(j, procs[i].name);
            lm_json_key(j, "pid");
            lm_json_u64(j, (uint64_t)procs[i].pid);
            lm_json_key(j, "running");
            lm_json_bool(j, alive);
            lm_json_key(j, "restarts");
            lm_json_u64(j, restarts);
            lm_json_obj_end(j);
        } else {
            char r[16];
            snprintf(r, sizeof r, "%u", restarts);
            printf("  %-22s  %-8d  %-7s  %s\n", procs[i].name, (int)procs[i].pid, alive ? "running" : "gone",
                   supervised ? r : "-");
        }
    }
    if (j != NULL) lm_json_arr_end(j);
    free(procs);
}

int cli_cmd_status(int argc, char **argv) {
    size_t nargs;
    int rc = cli_parse(&status_cmd, argc, argv, NULL, &nargs);
    if (rc >= 0) return rc;
    cli_redis conn;
    if ((rc = cli_redis_open(&status_cmd, &f, &conn)) >= 0) return rc;
    lm_redis *r = conn.redis;
    lm_node_list *nodes = NULL;
    lm_view_summary sum;
    lumen_status st = lm_redis_nodes_list(r, &nodes);
    if (LM_IS_OK(st)) st = lm_view_summary_get(r, &sum);
    if (LM_IS_OK(st) && f_json) {
        lm_json j = {0};
        lm_json_obj(&j);
        lm_view_summary_json(&sum, &j);
        lm_json_key(&j, "node_list");
        lm_view_nodes_json(nodes, NULL, &j);
        lm_json_key(&j, "services");
        services(cli_run_dir(f.run_dir), &j);
        lm_json_obj_end(&j);
        if (j.out.oom) st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
        else printf("%s\n", j.out.data);
        lm_buf_fini(&j.out);
    } else if (LM_IS_OK(st)) {
        printf("Lumen cluster in Redis %s (key prefix \"%s\")\n", conn.addr, conn.cfg.cluster.key_prefix);
        print_nodes(nodes);
        print_summary(&sum);
        services(cli_run_dir(f.run_dir), NULL);
    }
    if (!LM_IS_OK(st)) fprintf(stderr, "lumen status: %s\n", st.msg);
    lm_node_list_free(nodes);
    cli_redis_close(&conn);
    return LM_IS_OK(st) ? 0 : 1;
}

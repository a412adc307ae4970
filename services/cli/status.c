/*
 * status.c - `lumen status`: the cluster as Redis records it (nodes, tasks,
 * objects, actors, jobs), never from a process's memory.
 *
 * Everything comes through redis_state.h. Counting tasks and objects is a
 * census of the key space (SCAN, never blocking Redis, but O(keys)): when the
 * scheduler keeps per-state counters, read those here instead.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "cli.h"
#include "config.h"
#include "redis_state.h"

static struct {
    const char *redis, *run_dir, *config;
} f;

static const cli_flag status_flags[] = {
    {"redis", "HOST:PORT", "the cluster's Redis (default: $LUMEN_REDIS_ADDR, else the one `lumen start` "
                           "used in the run dir, else 127.0.0.1:6379)", &f.redis},
    {"run-dir", "DIR", "the run dir of `lumen start` (default $LUMEN_RUN_DIR, else /tmp/lumen-<uid>)",
     &f.run_dir},
    {"config", "FILE", "read redis_addr, redis_password and key_prefix from this lumen.cfg", &f.config},
    {NULL, NULL, NULL, NULL},
};

static const cli_command status_cmd = {
    "status", "[--redis HOST:PORT] [--config FILE]",
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

static void print_group(const char *title, const lm_census_group *g, bool bytes) {
    char size[32] = "";
    if (bytes) {
        char b[24];
        human_bytes(g->bytes, b, sizeof b);
        snprintf(size, sizeof size, ", %s", b);
    }
    printf("%s: %" PRIu64 "%s", title, g->total, size);
    for (size_t i = 0; i < g->nby; i++)
        printf("%s%s %" PRIu64, i == 0 ? " (" : ", ", g->by[i].state, g->by[i].n);
    printf("%s\n", g->nby ? ")" : "");
}

int cli_cmd_status(int argc, char **argv) {
    size_t nargs;
    int rc = cli_parse(&status_cmd, argc, argv, NULL, &nargs);
    if (rc >= 0) return rc;
    if (f.redis != NULL && !LM_IS_OK(lm_parse_addr(f.redis, 0, NULL, 0, NULL)))
        return cli_bad_arg(&status_cmd, "--redis wants HOST:PORT, not \"%s\"", f.redis);
    lm_config cfg;
    lumen_status st = lm_config_load(f.config, &cfg);
    if (!LM_IS_OK(st)) {
        fprintf(stderr, "lumen status: %s\n", st.msg);
        return 2;
    }
    /* The flag, else an explicit setting (env or file), else the Redis this
     * machine's `lumen start` used, else the default. */
    const char *env = getenv("LUMEN_REDIS_ADDR");
    char from_run_dir[300];
    const char *addr = cfg.cluster.redis_addr;
    if (f.redis != NULL) addr = f.redis;
    else if ((env == NULL || env[0] == '\0') && f.config == NULL &&
             cli_read_file(cli_run_dir(f.run_dir), "redis", from_run_dir, sizeof from_run_dir))
        addr = from_run_dir;

    lm_redis_opts ropts = {.addr = addr, .password = cfg.cluster.redis_password, .prefix = cfg.cluster.key_prefix};
    lm_redis *r = NULL;
    lm_node_list *nodes = NULL;
    lm_census_group groups[] = {{.kind = "task"}, {.kind = "obj"}, {.kind = "actor"}, {.kind = "job"}};
    st = lm_redis_connect(&ropts, &r);
    if (LM_IS_OK(st)) st = lm_redis_nodes_list(r, &nodes);
    if (LM_IS_OK(st)) st = lm_redis_census(r, groups, sizeof groups / sizeof groups[0]);
    if (LM_IS_OK(st)) {
        printf("Lumen cluster in Redis %s (key prefix \"%s\")\n", addr, cfg.cluster.key_prefix);
        print_nodes(nodes);
        print_group("Tasks", &groups[0], false);
        print_group("Objects", &groups[1], true);
        print_group("Actors", &groups[2], false);
        print_group("Jobs", &groups[3], false);
    } else {
        fprintf(stderr, "lumen status: %s\n", st.msg);
    }
    lm_node_list_free(nodes);
    lm_redis_free(r);
    lm_config_free(&cfg);
    return LM_IS_OK(st) ? 0 : 1;
}

/*
 * status.c - `lumen status`: the cluster as Redis records it (nodes, tasks,
 * objects, actors, jobs), never from a process's memory.
 *
 * Nodes come through redis_state.h. Counting tasks and objects walks the
 * key space with SCAN (COUNT 1000) and one pipelined HMGET per batch, the
 * only raw hiredis in the CLI: O(keys) but never blocking Redis. When the
 * scheduler keeps per-state counters, read those here instead.
 */
#include <hiredis/hiredis.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* ---- counting records by state ---- */

#define MAX_STATES 8

typedef struct group {
    const char *kind; /* "task", "obj", ... as in the keys */
    uint64_t total, bytes;
    struct {
        char state[16];
        uint64_t n;
    } by[MAX_STATES];
    size_t nby;
} group;

static void tally(group *g, const char *state, size_t len, uint64_t bytes) {
    g->total++;
    g->bytes += bytes;
    if (len == 0) state = "?", len = 1;
    for (size_t i = 0; i < g->nby; i++)
        if (strlen(g->by[i].state) == len && memcmp(g->by[i].state, state, len) == 0) {
            g->by[i].n++;
            return;
        }
    size_t i = g->nby < MAX_STATES ? g->nby++ : MAX_STATES - 1; /* odd states share the last row */
    snprintf(g->by[i].state, sizeof g->by[i].state, "%.*s", (int)len, state);
    g->by[i].n++;
}

/* The group of a key "<prefix><kind>:<32 hex>", or NULL (other keys, and
 * sub-keys like obj:<id>:locs). */
static group *group_of(group *groups, size_t n, const char *prefix, const char *key, size_t len) {
    size_t plen = strlen(prefix);
    if (len <= plen || strncmp(key, prefix, plen) != 0) return NULL;
    key += plen;
    len -= plen;
    for (size_t i = 0; i < n; i++) {
        size_t klen = strlen(groups[i].kind);
        if (len == klen + 1 + LM_ID_HEX_LEN && strncmp(key, groups[i].kind, klen) == 0 && key[klen] == ':')
            return &groups[i];
    }
    return NULL;
}

/* MATCH pattern for the prefix: glob characters escaped. */
static void match_pattern(const char *prefix, char *out, size_t cap) {
    size_t o = 0;
    for (const char *p = prefix; *p && o + 3 < cap; p++) {
        if (strchr("*?[]\\", *p)) out[o++] = '\\';
        out[o++] = *p;
    }
    snprintf(out + o, cap - o, "*");
}

static lumen_status scan_counts(const char *addr, const char *password, const char *prefix, group *groups,
                                size_t ngroups) {
    char host[256];
    uint16_t port;
    lumen_status st = lm_parse_addr(addr, 0, host, sizeof host, &port);
    if (!LM_IS_OK(st)) return st;
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (c == NULL || c->err) {
        st = lm_status(LUMEN_UNAVAILABLE, "redis %s: %s", addr, c ? c->errstr : "out of memory");
        redisFree(c);
        return st;
    }
    redisSetTimeout(c, tv);
    if (password[0] != '\0') {
        redisReply *rep = redisCommand(c, "AUTH %s", password);
        if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
            st = lm_status(LUMEN_UNAUTHENTICATED, "redis %s: AUTH refused", addr);
        freeReplyObject(rep);
    }
    char pattern[300];
    match_pattern(prefix, pattern, sizeof pattern);
    char cursor[32] = "0";
    do {
        redisReply *rep = LM_IS_OK(st) ? redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cursor, pattern) : NULL;
        if (LM_IS_OK(st) && (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2))
            st = lm_status(LUMEN_UNAVAILABLE, "redis %s: SCAN: %s", addr,
                           rep && rep->type == REDIS_REPLY_ERROR ? rep->str : c->errstr);
        if (!LM_IS_OK(st)) {
            freeReplyObject(rep);
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        redisReply *keys = rep->element[1];
        /* One pipelined HMGET per record of the batch. */
        group **owner = calloc(keys->elements ? keys->elements : 1, sizeof *owner);
        for (size_t i = 0; owner != NULL && i < keys->elements; i++) {
            const redisReply *k = keys->element[i];
            owner[i] = group_of(groups, ngroups, prefix, k->str, k->len);
            if (owner[i] != NULL) {
                redisAppendCommand(c, "HMGET %b state size", k->str, k->len);
            }
        }
        for (size_t i = 0; owner != NULL && i < keys->elements && LM_IS_OK(st); i++) {
            if (owner[i] == NULL) continue;
            redisReply *h = NULL;
            if (redisGetReply(c, (void **)&h) != REDIS_OK || h == NULL) {
                st = lm_status(LUMEN_UNAVAILABLE, "redis %s: %s", addr, c->errstr);
                break;
            }
            /* A record deleted between SCAN and HMGET has no fields: skip it. */
            if (h->type == REDIS_REPLY_ARRAY && h->elements == 2 && h->element[0]->type == REDIS_REPLY_STRING) {
                uint64_t size = h->element[1]->type == REDIS_REPLY_STRING ? strtoull(h->element[1]->str, NULL, 10) : 0;
                tally(owner[i], h->element[0]->str, h->element[0]->len, size);
            }
            freeReplyObject(h);
        }
        if (owner == NULL) st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
        free(owner);
        freeReplyObject(rep);
    } while (LM_IS_OK(st) && strcmp(cursor, "0") != 0);
    redisFree(c);
    return st;
}

/* ---- printing ---- */

static void human_bytes(uint64_t b, char *out, size_t cap) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) v /= 1024, u++;
    snprintf(out, cap, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
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
    uint64_t now = now_ms();
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

static void print_group(const char *title, const group *g, bool bytes) {
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
    group groups[] = {{.kind = "task"}, {.kind = "obj"}, {.kind = "actor"}, {.kind = "job"}};
    st = lm_redis_connect(&ropts, &r);
    if (LM_IS_OK(st)) st = lm_redis_nodes_list(r, &nodes);
    if (LM_IS_OK(st))
        st = scan_counts(addr, cfg.cluster.redis_password, cfg.cluster.key_prefix, groups, sizeof groups / sizeof groups[0]);
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

/*
 * nodes.c - workers and object stores as the scheduler sees them: found by
 * address, declared dead (missed heartbeats, a broken watch, a newer
 * incarnation at their address), and what their death means for the tasks
 * they ran and the objects they held.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "sched_internal.h"


snode *sched_node_by_addr(scheduler *s, const char *addr) {
    snode *dead = NULL;
    for (size_t i = 0; i < s->node_list.n; i++) { /* few nodes: a scan is enough */
        snode *n = s->node_list.items[i];
        if (strcmp(n->addr, addr) != 0) continue;
        if (n->alive) return n;
        dead = n;
    }
    return dead;
}

typedef struct lost_sweep {
    lm_id worker;
    ptr_vec tasks;
} lost_sweep;

static void collect_lost(void *arg, lm_id key, void *value) {
    (void)key;
    lost_sweep *sw = arg;
    stask *t = value;
    if (t->phase == TASK_RUNNING && lm_id_equal(t->worker, sw->worker)) sched_ptr_push(&sw->tasks, t);
}

/* A node is gone: what it was running runs again elsewhere, what it held
 * is rebuilt. Its record follows behind. */
void node_lost(scheduler *s, snode *w, const char *why, outbox *out) {
    if (!w->alive) return;
    w->alive = false;
    w->in_flight = 0;
    lm_warn("%s %s is dead: %s", w->is_worker ? "worker" : "object store", w->addr, why);
    sched_writer_node_dead(s->writer, w->id);
    sched_writer_event(s->writer, LM_EVENT_NODE_DIED, w->id, NULL);
    recovery_node_lost(s, w);
    if (!w->is_worker) {
        objects_lost_with(s, w, out);
        return;
    }
    lost_sweep sw = {w->id, {0}};
    lm_idmap_each(s->tasks, collect_lost, &sw);
    char reason[160];
    snprintf(reason, sizeof reason, "worker %s died", w->addr);
    for (size_t i = 0; i < sw.tasks.n; i++) sched_task_retry(s, sw.tasks.items[i], LUMEN_WORKER_DIED, reason, out);
    free(sw.tasks.items);
    actors_node_lost(s, w, out);
}

void node_record(const snode *n, lm_node_record *rec) {
    *rec = (lm_node_record){.id = n->id, .kind = n->is_worker ? LM_NODE_WORKER : LM_NODE_OBJSTORE, .addr = n->addr,
                            .slots = n->slots, .slots_free = n->slots_free, .bytes_used = n->bytes_used,
                            .memory_limit = n->memory_limit};
}

void nodes_check_beats(scheduler *s, outbox *out) {
    uint64_t now = sched_now_ms(s);
    uint64_t timeout = (uint64_t)s->cfg->scheduler.heartbeat_timeout_ms;
    for (size_t i = 0; i < s->node_list.n; i++) {
        snode *n = s->node_list.items[i];
        if (n->alive && now - n->last_beat_ms > timeout) {
            char why[64];
            snprintf(why, sizeof why, "no heartbeat for %llu ms", (unsigned long long)(now - n->last_beat_ms));
            node_lost(s, n, why, out);
        }
    }
}

snode *node_register(scheduler *s, lm_id id, const Lumen__RegisterNodeRequest *req, id_vec *drop, outbox *out) {
    const Lumen__NodeInfo *info = req->node;
    snode *n = lm_idmap_get(s->nodes, id);
    if (n == NULL) {
        /* A new incarnation at an address means the one before it there is
         * gone, even if its death has not been noticed yet. */
        for (size_t i = 0; i < s->node_list.n; i++) {
            snode *old = s->node_list.items[i];
            if (old->alive && strcmp(old->addr, info->addr) == 0)
                node_lost(s, old, "a new incarnation registered at its address", out);
        }
        n = calloc(1, sizeof *n);
        n->id = id;
        n->is_worker = strcmp(info->kind, "worker") == 0;
        lm_idmap_put(s->nodes, id, n);
        sched_ptr_push(&s->node_list, n);
    }
    free(n->addr);
    n->addr = strdup(info->addr);
    free(n->objstore_addr);
    n->objstore_addr = n->is_worker && info->objstore_addr && info->objstore_addr[0] ? strdup(info->objstore_addr) : NULL;
    n->slots = n->is_worker ? info->slots : 0;
    n->slots_free = n->slots;
    n->memory_limit = info->memory_limit;
    if (!n->alive) n->in_flight = 0; /* new, or back after being declared dead: nothing of ours runs there */
    n->alive = true;
    n->last_beat_ms = sched_now_ms(s);
    lm_node_record rec;
    node_record(n, &rec);
    sched_writer_node_up(s->writer, &rec);
    sched_writer_event(s->writer, LM_EVENT_NODE_JOINED, id, info->addr);
    if (!n->is_worker) objects_of_gone_incarnations(s, n->addr, out);
    recovery_node_registered(s, n, req, drop, out);
    sched_dispatch(s, out);
    actors_node_up(s, out);
    return n;
}

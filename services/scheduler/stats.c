/* stats.c - scheduler_stats: a copy of what the dashboard and /metrics show
 * from the scheduler's memory, taken under its lock in one short hold. */
#include <stdlib.h>
#include <string.h>

#include "sched_internal.h"

void scheduler_stats(scheduler *s, sched_stats *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->mu);
    out->queued = s->nready;
    out->tasks = lm_idmap_count(s->tasks);
    out->jobs = lm_idmap_count(s->jobs);
    out->dispatch = s->dispatch_lat;
    out->nodes = calloc(s->node_list.n ? s->node_list.n : 1, sizeof *out->nodes);
    for (size_t i = 0; out->nodes && i < s->node_list.n; i++) {
        const snode *n = s->node_list.items[i];
        out->nodes[out->nnodes++] = (sched_node_stats){
            .id = n->id, .is_worker = n->is_worker, .alive = n->alive, .slots = n->slots,
            .running = n->in_flight > 0 ? (uint32_t)n->in_flight : 0,
            .bytes_used = n->bytes_used, .memory_limit = n->memory_limit};
    }
    pthread_mutex_unlock(&s->mu);
    sched_writer_stats(s->writer, &out->writer_queued, &out->writer_written, out->timeline);
}

void sched_stats_fini(sched_stats *st) {
    free(st->nodes);
    st->nodes = NULL;
    st->nnodes = 0;
}

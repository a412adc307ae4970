/*
 * engine.c - the scheduler's state as a whole (sched_internal.h): made
 * empty, and freed with everything in it; and the small vectors its
 * modules share. With objects.c, waiters.c, tasks.c, placement.c,
 * dispatch.c, nodes.c, jobs.c, actors.c and recovery.c it is the engine:
 * it changes state and fills an outbox, and does no I/O (no rpc.h, no
 * redis_state.h), so it runs in unit tests without processes.
 */
#include <stdlib.h>

#include "clock.h"
#include "sched_internal.h"
#include "vec.h"

void sched_id_push(id_vec *v, lm_id id) {
    v->ids = lm_vec_grow_or_die(v->ids, &v->cap, v->n + 1, sizeof *v->ids, 4, "the scheduler's state");
    v->ids[v->n++] = id;
}

void sched_ptr_push(ptr_vec *v, void *p) {
    v->items = lm_vec_grow_or_die(v->items, &v->cap, v->n + 1, sizeof *v->items, 4, "the scheduler's state");
    v->items[v->n++] = p;
}

void sched_state_init(scheduler *s, const lm_config *cfg) {
    s->cfg = cfg;
    s->clock_ms = lm_mono_ms;
    s->job_grace_ms = (uint64_t)cfg->scheduler.job_grace_ms;
    s->unknown_ref_timeout_ms = (uint64_t)cfg->scheduler.unknown_ref_timeout_ms;
    pthread_mutex_init(&s->mu, NULL);
    lm_cond_init_monotonic(&s->monitor_cond);
    s->nodes = lm_idmap_new();
    s->tasks = lm_idmap_new();
    s->objs = lm_idmap_new();
    s->jobs = lm_idmap_new();
    s->actors = lm_idmap_new();
    s->actors_reported = lm_idmap_new();
    s->unknown_waiters = lm_idmap_new();
    s->expected = lm_idmap_new();
    s->claims = lm_idmap_new();
    s->ended_jobs = lm_idmap_new();
}

static void free_task_entry(void *arg, lm_id key, void *value) {
    (void)arg, (void)key;
    sched_task_free(value);
}

static void free_obj_entry(void *arg, lm_id key, void *value) {
    (void)arg, (void)key;
    obj_free(value);
}

static void free_unknown_entry(void *arg, lm_id key, void *value) {
    (void)arg, (void)key;
    ptr_vec *list = value;
    for (size_t i = 0; i < list->n; i++) waiter_unref(list->items[i]);
    free(list->items);
    free(list);
}

static void free_job_entry(void *arg, lm_id key, void *value) {
    (void)arg, (void)key;
    sched_job_free(value);
}

static void free_plain_entry(void *arg, lm_id key, void *value) {
    (void)arg, (void)key;
    free(value);
}

void sched_state_fini(scheduler *s, outbox *out) {
    for (size_t i = 0; i < s->wait_heap.n; i++) waiter_unref(s->wait_heap.items[i]);
    free(s->wait_heap.items);
    lm_idmap_each(s->tasks, free_task_entry, NULL);
    lm_idmap_each(s->objs, free_obj_entry, NULL);
    lm_idmap_each(s->jobs, free_job_entry, NULL);
    actors_free_all(s, out);
    lm_idmap_each(s->unknown_waiters, free_unknown_entry, NULL);
    lm_idmap_free(s->unknown_waiters);
    lm_idmap_each(s->claims, free_plain_entry, NULL);
    lm_idmap_free(s->claims);
    lm_idmap_free(s->expected);
    lm_idmap_free(s->ended_jobs);
    for (size_t i = 0; i < s->node_list.n; i++) {
        snode *n = s->node_list.items[i];
        free(n->addr);
        free(n->objstore_addr);
        free(n);
    }
    free(s->node_list.items);
    free(s->held.ids);
    free(s->unresolved.ids);
    lm_idmap_free(s->tasks);
    lm_idmap_free(s->objs);
    lm_idmap_free(s->jobs);
    lm_idmap_free(s->actors);
    lm_idmap_free(s->actors_reported);
    lm_idmap_free(s->nodes);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->monitor_cond);
}

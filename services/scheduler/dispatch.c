/*
 * dispatch.c - ready tasks to workers: placed by the policy (placement.c),
 * batched into one RunTasks per worker, packed into the outbox under the
 * lock (sent by service.c after it), and what a batch's outcome means.
 */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "sched_internal.h"
#include "vec.h"
#include "worker.pb-c.h"

/* The dispatch latency histogram's buckets (stats.c shows them). */
const uint64_t sched_latency_bounds_us[SCHED_LATENCY_BUCKETS] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000, 5000000};

static void latency_observe(sched_latency *h, uint64_t us) {
    size_t b = 0;
    while (b < SCHED_LATENCY_BUCKETS && us > sched_latency_bounds_us[b]) b++;
    h->buckets[b]++;
    h->count++;
    h->sum_us += us;
}

void dispatch_batch_free(dispatch_batch *batch) {
    free(batch->tasks.ids);
    free(batch->addr);
    free(batch);
}

/* Fills a dispatched copy of a spec: refs get their location and size, and
 * small values held here travel inline so the worker fetches nothing. */
static void dispatch_spec(scheduler *s, const stask *t, Lumen__TaskSpec *out, Lumen__Arg *args,
                          Lumen__Arg **arg_ptrs) {
    *out = *t->spec;
    out->attempt = t->attempts - 1; /* counted when placed: the first run is attempt 0 */
    out->args = arg_ptrs;
    for (size_t i = 0; i < t->spec->n_args; i++) {
        args[i] = *t->spec->args[i];
        arg_ptrs[i] = &args[i];
        sobj *o = sched_arg_obj(s, &args[i]);
        if (o == NULL || o->state != OBJ_READY) continue;
        if (o->is_inline) {
            args[i].value_case = LUMEN__ARG__VALUE_INLINE;
            args[i].inline_.data = o->data;
            args[i].inline_.len = o->size;
        } else {
            args[i].location = o->location ? o->location : (char *)"";
            args[i].size = o->size;
            args[i].store_id = id_bytes(&o->store);
        }
    }
    lm_id lib;
    if (id_field(t->spec->library_id, &lib)) {
        sobj *o = lm_idmap_get(s->objs, lib);
        if (o != NULL && o->location != NULL) out->library_location = o->location;
    }
}

void sched_task_running_on(scheduler *s, stask *t, snode *w) {
    t->phase = TASK_RUNNING;
    t->worker = w->id;
    t->attempts++;
    w->in_flight++;
    sched_record_task(s, t, LM_TASK_RUNNING, NULL);
}

void sched_dispatch(scheduler *s, outbox *out) {
    if (s->recovering) return; /* a node still to register may run some of them */
    dispatch_batch *batches = NULL;
    size_t nbatches = 0, batches_cap = 0;
    uint64_t now_us = lm_mono_us();
    while (s->ready_head != NULL) {
        stask *t = s->ready_head;
        lumen_status bad;
        if (arg_failed(s, t, &bad)) { /* lost since it became ready (its store died): it would wait in vain */
            task_fail(s, t, bad, out);
            continue;
        }
        snode *w = placement_pick(s, t);
        if (w == NULL) break;
        s->ready_head = t->next;
        s->nready--;
        t->next = NULL;
        latency_observe(&s->dispatch_lat, now_us > t->ready_us ? now_us - t->ready_us : 0);
        sched_task_running_on(s, t, w);
        size_t b = 0;
        while (b < nbatches && !lm_id_equal(batches[b].worker, w->id)) b++;
        if (b == nbatches) {
            batches = lm_vec_grow_or_die(batches, &batches_cap, nbatches + 1, sizeof *batches, 4, "a dispatch");
            batches[nbatches++] = (dispatch_batch){s, w->id, w->addr, {0}};
        }
        sched_id_push(&batches[b].tasks, t->id);
    }
    if (s->ready_head == NULL) s->ready_tail = NULL;

    for (size_t b = 0; b < nbatches; b++) {
        dispatch_batch *batch = malloc(sizeof *batch);
        *batch = batches[b];
        batch->addr = strdup(batch->addr);
        size_t n = batch->tasks.n;
        Lumen__TaskSpec *specs = calloc(n, sizeof *specs);
        Lumen__TaskSpec **spec_ptrs = calloc(n, sizeof *spec_ptrs);
        size_t nargs = 0;
        for (size_t i = 0; i < n; i++) nargs += ((stask *)lm_idmap_get(s->tasks, batch->tasks.ids[i]))->spec->n_args;
        Lumen__Arg *args = calloc(nargs ? nargs : 1, sizeof *args);
        Lumen__Arg **arg_ptrs = calloc(nargs ? nargs : 1, sizeof *arg_ptrs);
        size_t used = 0;
        for (size_t i = 0; i < n; i++) {
            stask *t = lm_idmap_get(s->tasks, batch->tasks.ids[i]);
            dispatch_spec(s, t, &specs[i], args + used, arg_ptrs + used);
            used += t->spec->n_args;
            spec_ptrs[i] = &specs[i];
        }
        Lumen__RunTasksRequest req = LUMEN__RUN_TASKS_REQUEST__INIT;
        req.n_tasks = n;
        req.tasks = spec_ptrs;
        req.epoch = s->epoch;
        sched_outbox_request(out, SCHED_RUN_TASKS, batch->addr, &req.base, batch); /* packed: the temporaries go */
        free(specs);
        free(spec_ptrs);
        free(args);
        free(arg_ptrs);
    }
    free(batches);
}

/* A RunTasks batch could not be delivered: the worker is gone or broken.
 * node_lost re-queues what ran there; tasks of the batch it did not see
 * (the worker was already dead) go back in line here. */
static void run_tasks_failed(scheduler *s, dispatch_batch *batch, lumen_status st, outbox *out) {
    snode *w = lm_idmap_get(s->nodes, batch->worker);
    if (w != NULL) node_lost(s, w, st.msg, out);
    for (size_t i = 0; i < batch->tasks.n; i++) {
        stask *t = lm_idmap_get(s->tasks, batch->tasks.ids[i]);
        if (t != NULL && t->phase == TASK_RUNNING && lm_id_equal(t->worker, batch->worker))
            sched_task_retry(s, t, LUMEN_WORKER_DIED, st.msg, out);
    }
}

/* A failed call that says nothing about the request: the peer is down,
 * slow or cut off. */
static bool worker_unreachable(lumen_status st) {
    return st.code == LUMEN_UNAVAILABLE || st.code == LUMEN_DEADLINE_EXCEEDED || st.code == LUMEN_CANCELLED ||
           st.code == LUMEN_UNKNOWN || st.code == LUMEN_INTERNAL;
}

void dispatch_outcome(scheduler *s, dispatch_batch *batch, lumen_status st, outbox *out) {
    if (st.code == LUMEN_FAILED_PRECONDITION) {
        /* The worker serves a newer incarnation: this scheduler was replaced. */
        lm_warn("worker %s refused tasks: %s", batch->addr, st.msg);
        for (size_t i = 0; i < batch->tasks.n; i++) {
            stask *t = lm_idmap_get(s->tasks, batch->tasks.ids[i]);
            snode *w = lm_idmap_get(s->nodes, batch->worker);
            if (t == NULL || t->phase != TASK_RUNNING || !lm_id_equal(t->worker, batch->worker)) continue;
            if (w != NULL && w->in_flight > 0) w->in_flight--;
            sched_task_retry(s, t, LUMEN_UNAVAILABLE, st.msg, out);
        }
    } else if (!LM_IS_OK(st) && !worker_unreachable(st)) { /* the worker refused the batch: the tasks fail, not it */
        for (size_t i = 0; i < batch->tasks.n; i++) {
            stask *t = lm_idmap_get(s->tasks, batch->tasks.ids[i]);
            snode *w = lm_idmap_get(s->nodes, batch->worker);
            if (t == NULL || t->phase != TASK_RUNNING || !lm_id_equal(t->worker, batch->worker)) continue;
            if (w != NULL && w->in_flight > 0) w->in_flight--;
            task_fail(s, t, lm_status_wrap(st, "worker %s refused it", batch->addr), out);
        }
    } else if (!LM_IS_OK(st)) {
        run_tasks_failed(s, batch, st, out);
    }
    if (!LM_IS_OK(st)) sched_dispatch(s, out);
}


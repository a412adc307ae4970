/*
 * scheduler.c - see scheduler.h.
 *
 * Model: a task's single result object is PENDING until the task finishes,
 * then READY (its bytes inline here, or in an object store) or FAILED (with
 * the task's error). A task runs once every object it takes is READY; if one
 * FAILED, the task fails with that error, and so on down the graph. Objects
 * and tasks refer to each other by id, never by pointer, so either side may
 * be released first (a job ending, a client freeing refs).
 *
 * An object nobody here made or reported (another client's put, a result
 * of a task whose client has not sent it again since a restart) is
 * "unresolved": a placeholder that tasks and waits can depend on, looked up
 * in the stores' directory off the lock (resolver.h), settled when found,
 * when a task that makes it arrives, or failed after unknown_ref_timeout_ms.
 *
 * Locking: `mu` guards everything. Calls are answered only after it is
 * released (an answer may wait for the call's on_cancel, which takes `mu`).
 * Nothing under `mu` waits for Redis: records go through the write-behind,
 * lookups through the resolver.
 */
#include "clock.h"
#include "scheduler.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "input_limits.h"
#include "log.h"
#include "objstore.pb-c.h"
#include "sched_internal.h"
#include "worker.pb-c.h"
#include "process.h"


/* ------------------------------------------------------------- helpers */

void sched_id_push(id_vec *v, lm_id id) {
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 4;
        v->ids = realloc(v->ids, v->cap * sizeof *v->ids);
    }
    v->ids[v->n++] = id;
}

void sched_ptr_push(ptr_vec *v, void *p) {
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 4;
        v->items = realloc(v->items, v->cap * sizeof *v->items);
    }
    v->items[v->n++] = p;
}

void sched_outbox_add(outbox *o, answer a) {
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 8;
        o->items = realloc(o->items, o->cap * sizeof *o->items);
    }
    o->items[o->n++] = a;
}

void sched_outbox_reply(outbox *o, lm_rpc_call *call, ProtobufCMessage *reply, void (*reply_free)(ProtobufCMessage *)) {
    sched_outbox_add(o, (answer){call, reply, reply_free, lm_ok(), NULL, NULL});
}

void sched_outbox_fail(outbox *o, lm_rpc_call *call, lumen_status st) {
    sched_outbox_add(o, (answer){call, NULL, NULL, st, NULL, NULL});
}

/* Answers everything collected; call without `mu`. */
void sched_outbox_send(outbox *o) {
    for (size_t i = 0; i < o->n; i++) {
        answer *a = &o->items[i];
        if (a->reply != NULL) {
            lm_rpc_reply(a->call, a->reply);
            a->reply_free(a->reply);
        } else {
            lm_rpc_fail_status(a->call, a->st);
        }
        if (a->after != NULL) a->after(a->after_arg);
    }
    free(o->items);
    o->items = NULL;
    o->n = o->cap = 0;
}


/* ------------------------------------------------------------- records */

static void record_task(scheduler *s, const stask *t, lm_task_state state, const char *error) {
    lm_task_record rec = {.id = t->id, .fn = t->spec ? t->spec->function : "", .job = t->job,
                          .state = state, .worker = t->worker, .attempts = t->attempts, .error = error,
                          .submitted_ms = t->submitted_ms};
    if (state == LM_TASK_FINISHED || state == LM_TASK_FAILED) rec.finished_ms = lm_wall_ms();
    sched_writer_task(s->writer, &rec);
}

static void record_obj(scheduler *s, const sobj *o) {
    lm_obj_record rec = {.id = o->id, .size = o->size, .task = o->producer, .job = o->job,
                         .error = o->error ? o->error->msg : NULL};
    rec.state = o->state == OBJ_READY ? LM_OBJ_READY : o->state == OBJ_FAILED ? LM_OBJ_FAILED : LM_OBJ_PENDING;
    sched_writer_obj(s->writer, &rec);
}

/* ------------------------------------------------------------- objects */

static sobj *obj_new(scheduler *s, lm_id id, lm_id job) {
    sobj *o = calloc(1, sizeof *o);
    o->id = id;
    o->job = job;
    lm_idmap_put(s->objs, id, o);
    sjob *j = lm_idmap_get(s->jobs, job);
    if (j != NULL && j->freed_early != NULL && lm_idmap_remove(j->freed_early, id) != NULL)
        o->freed = true; /* dropped as soon as it settles and nothing needs it */
    /* Waits that arrived before the task that makes it. */
    ptr_vec *early = lm_idmap_remove(s->unknown_waiters, id);
    if (early != NULL) {
        o->waiters = *early;
        free(early);
        sched_resolver_unwatch(s->resolver, id);
    }
    return o;
}

/* A placeholder for an object nobody has made or reported here yet, looked
 * for in the stores' directory. An actor call's result (direct) comes from
 * its worker and never times out; it is looked up too, since its worker
 * may have reported it to a scheduler that died since (a small one is
 * reported again by its caller). */
static sobj *obj_unresolved(scheduler *s, lm_id id, lm_id job, bool direct) {
    sobj *o = obj_new(s, id, job);
    o->unresolved = true;
    o->direct = direct;
    o->unresolved_since_ms = lm_mono_ms();
    if (!direct) sched_id_push(&s->unresolved, id);
    sched_resolver_watch(s->resolver, id);
    return o;
}

/* The object is known for what it is now (made, found, or failed). */
static void obj_resolved(scheduler *s, sobj *o) {
    if (!o->unresolved) return;
    o->unresolved = false;
    sched_resolver_unwatch(s->resolver, o->id);
}

static void waiter_unref(waiter *w) {
    if (atomic_fetch_sub(&w->refs, 1) > 1) return;
    free(w->ids);
    free(w);
}

static void waiter_release(void *arg) { waiter_unref(arg); }

/* Takes a finished waiter off the lists of ids it waited for unseen. */
static void unknown_detach(scheduler *s, waiter *w) {
    for (size_t i = 0; i < w->n && lm_idmap_count(s->unknown_waiters) > 0; i++) {
        ptr_vec *list = lm_idmap_get(s->unknown_waiters, w->ids[i]);
        for (size_t k = 0; list != NULL && k < list->n; k++) {
            if (list->items[k] != w) continue;
            list->items[k] = list->items[--list->n];
            atomic_fetch_sub(&w->refs, 1); /* never the last: the caller holds one */
            break;
        }
        if (list != NULL && list->n == 0) {
            lm_idmap_remove(s->unknown_waiters, w->ids[i]);
            sched_resolver_unwatch(s->resolver, w->ids[i]);
            free(list->items);
            free(list);
        }
    }
}

static void obj_free(sobj *o) {
    for (size_t i = 0; i < o->waiters.n; i++) waiter_unref(o->waiters.items[i]);
    free(o->waiters.items);
    free(o->dependents.ids);
    free(o->data);
    free(o->location);
    for (size_t i = 0; i < o->nreplicas; i++) free(o->replicas[i]);
    free(o->replicas);
    free(o->replica_stores);
    free(o->error);
    free(o);
}

static void waiters_recount(scheduler *s, sobj *o, outbox *out);
static void send_deletes(scheduler *s, ptr_vec *deletes);
static void task_resolved_arg(scheduler *s, lm_id task_id);
static void task_fail(scheduler *s, stask *t, lumen_status st, outbox *out);
static bool arg_failed(scheduler *s, const stask *t, lumen_status *why);

static bool task_waits(const stask *t) { return t->phase == TASK_WAITING || t->phase == TASK_RESOLVING; }

/* An object leaves PENDING: wake its dependents and waiters. */
static void obj_settled(scheduler *s, sobj *o, outbox *out) {
    obj_resolved(s, o);
    record_obj(s, o);
    id_vec deps = o->dependents;
    memset(&o->dependents, 0, sizeof o->dependents);
    for (size_t i = 0; i < deps.n; i++) {
        stask *t = lm_idmap_get(s->tasks, deps.ids[i]);
        if (t == NULL || !task_waits(t)) continue;
        if (o->state == OBJ_FAILED) {
            char h[LM_ID_HEX_LEN + 1];
            task_fail(s, t, lm_status_wrap(*o->error, "argument %s", hex(o->id, h)), out);
        } else {
            task_resolved_arg(s, t->id);
        }
    }
    free(deps.ids);
    waiters_recount(s, o, out);
}

static void obj_set_failed(scheduler *s, sobj *o, lumen_status st, outbox *out) {
    if (o->state != OBJ_PENDING) return;
    o->state = OBJ_FAILED;
    o->error = malloc(sizeof *o->error);
    *o->error = st;
    obj_settled(s, o, out);
}

/* A pending object is READY in the store `store` (a live node; NULL: a
 * store that is gone, so the object is lost). */
static void obj_set_stored(scheduler *s, sobj *o, const snode *store, uint64_t size, outbox *out) {
    if (o->state != OBJ_PENDING) return;
    if (store == NULL) {
        char h[LM_ID_HEX_LEN + 1];
        obj_set_failed(s, o, lm_status(LUMEN_OBJECT_LOST, "object %s was stored in an object store that is gone",
                                       hex(o->id, h)), out);
        return;
    }
    free(o->location);
    o->location = strdup(store->addr);
    o->store = store->id;
    o->size = size;
    o->state = OBJ_READY;
    obj_settled(s, o, out);
}

/* Drops an object the client freed once no task needs it any more. */
static void obj_maybe_release(scheduler *s, sobj *o, ptr_vec *deletes) {
    if (!o->freed || o->pins > 0 || o->state == OBJ_PENDING || o->waiters.n > 0) return;
    lm_idmap_remove(s->objs, o->id);
    if (!o->is_inline && o->location != NULL && deletes != NULL) sched_ptr_push(deletes, o);
    else obj_free(o);
}

/* ------------------------------------------------------------- waiters */

static void fill_object_state(scheduler *s, Lumen__ObjectState *st, Lumen__Status *status, lm_id id) {
    lumen__object_state__init(st);
    lumen__status__init(status);
    st->status = status;
    sobj *o = lm_idmap_get(s->objs, id);
    st->object_id.len = LM_ID_BYTES;
    st->object_id.data = malloc(LM_ID_BYTES);
    memcpy(st->object_id.data, id.bytes, LM_ID_BYTES);
    if (o == NULL) { /* not ready: it may still come (a wait that parks unknown ids says so) */
        return;
    }
    st->size = o->size;
    if (o->state == OBJ_FAILED) {
        status->code = o->error->code;
        status->message = strdup(o->error->msg);
        st->ready = true;
    } else if (o->state == OBJ_READY) {
        st->ready = true;
        if (o->is_inline) {
            st->inline_value.len = o->size;
            st->inline_value.data = malloc(o->size ? o->size : 1);
            memcpy(st->inline_value.data, o->data, o->size);
        } else if (o->location != NULL) {
            st->n_locations = 1;
            st->locations = malloc(sizeof *st->locations);
            st->locations[0] = strdup(o->location);
            st->store_id.len = LM_ID_BYTES;
            st->store_id.data = malloc(LM_ID_BYTES);
            memcpy(st->store_id.data, o->store.bytes, LM_ID_BYTES);
        }
    }
}

/* An unknown id in a wait that does not park them: answered at once. */
static void fill_unknown(Lumen__ObjectState *st, Lumen__Status *status, lm_id id) {
    char h[LM_ID_HEX_LEN + 1];
    char msg[96];
    snprintf(msg, sizeof msg, "object %s is unknown to the scheduler", hex(id, h));
    status->code = LUMEN_NOT_FOUND;
    free(status->message);
    status->message = strdup(msg);
    st->ready = true;
}

/* A heap-built WaitObjects reply with copies, safe to send without `mu`. */
static Lumen__WaitObjectsReply *wait_reply_build(scheduler *s, const lm_id *ids, size_t n, bool park_unknown) {
    Lumen__WaitObjectsReply *r = malloc(sizeof *r);
    lumen__wait_objects_reply__init(r);
    r->n_objects = n;
    r->objects = malloc((n ? n : 1) * sizeof *r->objects);
    for (size_t i = 0; i < n; i++) {
        Lumen__ObjectState *st = malloc(sizeof *st);
        Lumen__Status *status = malloc(sizeof *status);
        fill_object_state(s, st, status, ids[i]);
        if (!park_unknown && lm_idmap_get(s->objs, ids[i]) == NULL) fill_unknown(st, status, ids[i]);
        if (status->message == NULL) status->message = strdup("");
        r->objects[i] = st;
    }
    return r;
}

/* Everything above was malloc'd piece by piece, the way protobuf-c's own
 * unpacker allocates, so its free function releases it. */
static void wait_reply_free(ProtobufCMessage *m) { protobuf_c_message_free_unpacked(m, NULL); }

static void wait_heap_remove(scheduler *s, waiter *w);

static void waiter_answer(scheduler *s, waiter *w, outbox *out) {
    w->done = true;
    unknown_detach(s, w);
    wait_heap_remove(s, w);
    Lumen__WaitObjectsReply *r = wait_reply_build(s, w->ids, w->n, w->park_unknown);
    /* The call's reference goes once the answer is out: until then its
     * on_cancel may still run and look at w. */
    sched_outbox_add(out, (answer){w->call, &r->base, wait_reply_free, lm_ok(), waiter_release, w});
}

static void waiters_recount(scheduler *s, sobj *o, outbox *out) {
    ptr_vec ws = o->waiters;
    memset(&o->waiters, 0, sizeof o->waiters);
    for (size_t i = 0; i < ws.n; i++) {
        waiter *w = ws.items[i];
        if (!w->done && ++w->have >= w->need) waiter_answer(s, w, out);
        waiter_unref(w); /* this object's reference */
    }
    free(ws.items);
}

/* Waits with a time limit, by when it ends: a binary min-heap, each waiter
 * knowing its index so an answered one leaves at once. */
static bool heap_less(const waiter *a, const waiter *b) { return a->until_ms < b->until_ms; }

static void heap_swap(ptr_vec *h, size_t i, size_t j) {
    void *t = h->items[i];
    h->items[i] = h->items[j];
    h->items[j] = t;
    ((waiter *)h->items[i])->heap_idx = i;
    ((waiter *)h->items[j])->heap_idx = j;
}

static void heap_sift(ptr_vec *h, size_t i) {
    while (i > 0 && heap_less(h->items[i], h->items[(i - 1) / 2])) {
        heap_swap(h, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && heap_less(h->items[l], h->items[m])) m = l;
        if (r < h->n && heap_less(h->items[r], h->items[m])) m = r;
        if (m == i) return;
        heap_swap(h, i, m);
        i = m;
    }
}

static void wait_heap_add(scheduler *s, waiter *w) {
    w->heap_idx = s->wait_heap.n;
    sched_ptr_push(&s->wait_heap, w);
    atomic_fetch_add(&w->refs, 1);
    heap_sift(&s->wait_heap, w->heap_idx);
    if (w->heap_idx == 0) pthread_cond_signal(&s->monitor_cond); /* the monitor wakes earlier now */
}

static void wait_heap_remove(scheduler *s, waiter *w) {
    if (w->heap_idx == SIZE_MAX) return;
    ptr_vec *h = &s->wait_heap;
    size_t i = w->heap_idx;
    heap_swap(h, i, h->n - 1);
    h->n--;
    w->heap_idx = SIZE_MAX;
    if (i < h->n) heap_sift(h, i);
    atomic_fetch_sub(&w->refs, 1); /* never the last: the call holds one */
}

/* Answers the waits whose time ran out, with the states as they are; the
 * monotonic ms of the next one to run out (0: none). */
static uint64_t waits_expire(scheduler *s, outbox *out) {
    uint64_t now = lm_mono_ms();
    while (s->wait_heap.n > 0) {
        waiter *w = s->wait_heap.items[0];
        if (w->until_ms > now) return w->until_ms;
        waiter_answer(s, w, out);
    }
    return 0;
}

static void on_wait_cancel(lm_rpc_call *call, void *arg);

static ptr_vec *unknown_list(scheduler *s, lm_id id) {
    ptr_vec *list = lm_idmap_get(s->unknown_waiters, id);
    if (list == NULL) {
        list = calloc(1, sizeof *list);
        lm_idmap_put(s->unknown_waiters, id, list);
        sched_resolver_watch(s->resolver, id); /* maybe a put of another client */
    }
    return list;
}

/* ------------------------------------------------------------- placement */

const uint64_t sched_latency_bounds_us[SCHED_LATENCY_BUCKETS] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000, 5000000};

static void latency_observe(sched_latency *h, uint64_t us) {
    size_t b = 0;
    while (b < SCHED_LATENCY_BUCKETS && us > sched_latency_bounds_us[b]) b++;
    h->buckets[b]++;
    h->count++;
    h->sum_us += us;
}

static void ready_push(scheduler *s, stask *t) {
    t->phase = TASK_READY;
    t->next = NULL;
    t->ready_us = lm_mono_us();
    s->nready++;
    if (s->ready_tail) s->ready_tail->next = t;
    else s->ready_head = t;
    s->ready_tail = t;
}

void sched_ready_remove(scheduler *s, stask *t) {
    stask **pp = &s->ready_head;
    stask *prev = NULL;
    while (*pp != NULL && *pp != t) prev = *pp, pp = &(*pp)->next;
    if (*pp != t) return;
    *pp = t->next;
    if (s->ready_tail == t) s->ready_tail = prev;
    s->nready--;
    t->next = NULL;
}

static sobj *arg_obj(scheduler *s, const Lumen__Arg *a) {
    lm_id id;
    if (a->value_case != LUMEN__ARG__VALUE_REF || !id_field(a->ref, &id)) return NULL;
    return lm_idmap_get(s->objs, id);
}

/* The object store holding the task's biggest argument, if any. */
static lm_id preferred_store(scheduler *s, const stask *t) {
    lm_id best = {{0}};
    uint64_t best_size = 0;
    for (size_t i = 0; i < t->spec->n_args; i++) {
        sobj *o = arg_obj(s, t->spec->args[i]);
        if (o != NULL && !o->is_inline && o->size >= best_size) {
            best = o->store;
            best_size = o->size;
        }
    }
    return best;
}

/* A worker next to the biggest argument if it has a free slot; else the
 * least loaded worker with room in its queue. A worker whose object store
 * is down (it could not keep a big result) waits for it to come back. */
static snode *pick_worker(scheduler *s, const stask *t) {
    lm_id near = preferred_store(s, t);
    snode *best = NULL, *best_near = NULL;
    double best_load = 1e18, best_near_load = 1e18;
    /* An actor holds no slot once made (like Ray's default), but actors
     * are spread: each one counts as a task in flight where it lives. */
    bool creation = is_actor_creation(t->spec);
    for (size_t i = 0; i < s->node_list.n; i++) {
        snode *w = s->node_list.items[i];
        if (!w->is_worker || !w->alive || w->slots == 0 || w->in_flight >= (int)DISPATCH_DEPTH(w->slots)) continue;
        snode *store = w->objstore_addr ? sched_node_by_addr(s, w->objstore_addr) : NULL;
        if (store != NULL && !store->alive) continue;
        double load = (double)(w->in_flight + (creation ? (int)w->actors : 0)) / w->slots;
        if (load < best_load) best = w, best_load = load;
        if (store != NULL && !lm_id_is_zero(near) && lm_id_equal(store->id, near) && w->in_flight < (int)w->slots &&
            load < best_near_load)
            best_near = w, best_near_load = load;
    }
    return best_near ? best_near : best;
}

typedef struct dispatch_batch {
    scheduler *s;
    lm_id worker;
    char *addr;
    id_vec tasks;
} dispatch_batch;

static void on_run_tasks_done(void *arg, lumen_status st, ProtobufCMessage *reply);
static void run_tasks_failed(scheduler *s, dispatch_batch *batch, lumen_status st, outbox *out);

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
        sobj *o = arg_obj(s, &args[i]);
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
    record_task(s, t, LM_TASK_RUNNING, NULL);
}

/* Places every ready task it can and sends one RunTasks per worker. */
void sched_dispatch(scheduler *s, outbox *out) {
    if (s->recovering) return; /* a node still to register may run some of them */
    dispatch_batch *batches = NULL;
    size_t nbatches = 0;
    uint64_t now_us = lm_mono_us();
    while (s->ready_head != NULL) {
        stask *t = s->ready_head;
        lumen_status bad;
        if (arg_failed(s, t, &bad)) { /* lost since it became ready (its store died): it would wait in vain */
            task_fail(s, t, bad, out);
            continue;
        }
        snode *w = pick_worker(s, t);
        if (w == NULL) break;
        s->ready_head = t->next;
        s->nready--;
        t->next = NULL;
        latency_observe(&s->dispatch_lat, now_us > t->ready_us ? now_us - t->ready_us : 0);
        sched_task_running_on(s, t, w);
        size_t b = 0;
        while (b < nbatches && !lm_id_equal(batches[b].worker, w->id)) b++;
        if (b == nbatches) {
            batches = realloc(batches, (nbatches + 1) * sizeof *batches);
            batches[b] = (dispatch_batch){s, w->id, w->addr, {0}};
            nbatches++;
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
        /* Packed inside the call: the temporaries can go right after. */
        lumen_status st = lm_rpc_unary_async(s->rpc, batch->addr, s->run_tasks, &req.base,
                                             s->cfg->cluster.rpc_timeout_ms, on_run_tasks_done, batch);
        free(specs);
        free(spec_ptrs);
        free(args);
        free(arg_ptrs);
        if (!LM_IS_OK(st)) { /* not sent at all: the tasks go back in line */
            lm_error("cannot send tasks to %s: %s", batch->addr, st.msg);
            run_tasks_failed(s, batch, st, out);
            free(batch->tasks.ids);
            free(batch->addr);
            free(batch);
        }
    }
    free(batches);
}

/* ------------------------------------------------------------- tasks */

static void task_unpin_args(scheduler *s, stask *t, ptr_vec *deletes) {
    for (size_t i = 0; i < t->spec->n_args; i++) {
        sobj *o = arg_obj(s, t->spec->args[i]);
        if (o != NULL && o->pins > 0) {
            o->pins--;
            obj_maybe_release(s, o, deletes);
        }
    }
}

void sched_task_free(stask *t) {
    lm_rpc_message_free(&t->spec->base);
    free(t);
}

static void task_resolved_arg(scheduler *s, lm_id task_id) {
    stask *t = lm_idmap_get(s->tasks, task_id);
    if (t == NULL || !task_waits(t) || t->unresolved == 0) return;
    if (--t->unresolved == 0 && t->phase == TASK_WAITING) ready_push(s, t);
}

static void task_fail(scheduler *s, stask *t, lumen_status st, outbox *out) {
    if (t->phase == TASK_DONE) return;
    if (t->phase == TASK_READY) sched_ready_remove(s, t);
    t->phase = TASK_DONE;
    record_task(s, t, LM_TASK_FAILED, st.msg);
    task_unpin_args(s, t, NULL);
    sobj *o = lm_idmap_get(s->objs, lm_id_for_return(t->id, 0));
    if (o != NULL) obj_set_failed(s, o, st, out);
    if (is_actor_creation(t->spec)) actors_created(s, t, st, t->worker, out);
}

/* A task is finished without running (again): its result is known. */
static void task_finished(scheduler *s, stask *t, ptr_vec *deletes) {
    if (t->phase == TASK_READY) sched_ready_remove(s, t);
    t->phase = TASK_DONE;
    record_task(s, t, LM_TASK_FINISHED, NULL);
    task_unpin_args(s, t, deletes);
}

/* Pins every ref argument of t again (it was finished); counts those
 * still pending. */
static void task_pin_args(scheduler *s, stask *t) {
    t->unresolved = 0;
    for (size_t i = 0; i < t->spec->n_args; i++) {
        sobj *o = arg_obj(s, t->spec->args[i]);
        if (o == NULL) continue;
        o->pins++;
        if (o->state == OBJ_PENDING) {
            sched_id_push(&o->dependents, t->id);
            t->unresolved++;
        }
    }
}

/* Whether t cannot run again because an argument failed (a put lost with
 * its store, say) or was freed; *why says which. */
static bool arg_failed(scheduler *s, const stask *t, lumen_status *why) {
    char h[LM_ID_HEX_LEN + 1];
    for (size_t i = 0; i < t->spec->n_args; i++) {
        const Lumen__Arg *a = t->spec->args[i];
        if (a->value_case != LUMEN__ARG__VALUE_REF) continue;
        sobj *o = arg_obj(s, a);
        if (o == NULL) {
            *why = lm_status(LUMEN_OBJECT_LOST, "%s cannot run again: its argument %zu was freed", t->spec->function, i);
            return true;
        }
        if (o->state == OBJ_FAILED) {
            *why = lm_status_wrap(*o->error, "argument %s", hex(o->id, h));
            return true;
        }
    }
    return false;
}

/*
 * Makes a finished task run again (lineage reconstruction): its result was
 * lost, or it failed because an argument was lost that is being rebuilt.
 * It takes its arguments again and waits for those being rebuilt.
 */
static void task_rearm(scheduler *s, stask *t, const char *why, outbox *out) {
    lumen_status bad;
    if (arg_failed(s, t, &bad)) {
        record_task(s, t, LM_TASK_FAILED, bad.msg); /* it stays finished; its result fails */
        sobj *result = lm_idmap_get(s->objs, lm_id_for_return(t->id, 0));
        if (result != NULL) obj_set_failed(s, result, bad, out);
        return;
    }
    t->phase = TASK_WAITING;
    task_pin_args(s, t);
    record_task(s, t, LM_TASK_READY, why);
    if (t->unresolved == 0) ready_push(s, t);
}

/* Whether one of t's arguments is being rebuilt (lost, its producer re-run). */
static bool arg_rebuilding(scheduler *s, const stask *t) {
    for (size_t i = 0; i < t->spec->n_args; i++) {
        sobj *o = arg_obj(s, t->spec->args[i]);
        if (o != NULL && o->state == OBJ_PENDING) return true;
    }
    return false;
}

/*
 * A task that could not read an argument (or store its result) waits a
 * heartbeat before it runs again: the store may have died, and once that
 * is noticed the argument is rebuilt and the task waits for it, instead of
 * spending its retries on a store that is gone. It keeps its pins.
 */
static void task_hold(scheduler *s, stask *t, const char *why) {
    t->phase = TASK_HELD;
    t->held_until_ms = lm_mono_ms() + (uint64_t)s->cfg->scheduler.heartbeat_interval_ms;
    record_task(s, t, LM_TASK_READY, why);
    sched_id_push(&s->held, t->id);
}

/* Held tasks go on: those whose moment passed, or all (a store died:
 * their arguments may be being rebuilt, then they wait for them). */
static void tasks_release_held(scheduler *s, bool all, outbox *out) {
    uint64_t now = lm_mono_ms();
    size_t keep = 0;
    lumen_status bad;
    for (size_t i = 0; i < s->held.n; i++) {
        stask *t = lm_idmap_get(s->tasks, s->held.ids[i]);
        if (t == NULL || t->phase != TASK_HELD) continue; /* its job ended */
        if (!all && now < t->held_until_ms) {
            s->held.ids[keep++] = t->id;
        } else if (arg_failed(s, t, &bad)) { /* e.g. a put lost with its store: no use running it */
            task_fail(s, t, bad, out);
        } else if (arg_rebuilding(s, t)) {
            task_unpin_args(s, t, NULL);
            task_rearm(s, t, "an argument was lost and is being rebuilt", out);
        } else {
            ready_push(s, t);
        }
    }
    s->held.n = keep;
}

sjob *sched_job_get(scheduler *s, lm_id id) {
    sjob *j = lm_idmap_get(s->jobs, id);
    if (j == NULL) {
        j = calloc(1, sizeof *j);
        j->id = id;
        j->unheld_since_ms = lm_mono_ms(); /* until its client says StartJob and holds it */
        lm_idmap_put(s->jobs, id, j);
    }
    return j;
}

/* Why a put's refs fail once its store is gone. */
static lumen_status lost_put(lm_id id, const char *store) {
    char h[LM_ID_HEX_LEN + 1];
    return lm_status(LUMEN_OBJECT_LOST,
                     "object %s was lost with object store %s (it was put, not made by a task, so it cannot be rebuilt)",
                     hex(id, h), store);
}

/* Moves a put whose store is gone to a copy in a live store (the
 * incarnation that took it, when known: one restarted on the copy's
 * address never had it); false when none is left. */
static bool obj_move_to_copy(scheduler *s, sobj *o) {
    while (o->nreplicas > 0) {
        o->nreplicas--;
        char *addr = o->replicas[o->nreplicas];
        lm_id took = o->replica_stores[o->nreplicas];
        snode *store = sched_node_by_addr(s, addr);
        if (store != NULL && store->alive && (lm_id_is_zero(took) || lm_id_equal(store->id, took))) {
            free(o->location);
            o->location = addr;
            o->store = store->id;
            return true;
        }
        free(addr);
    }
    return false;
}

/* A READY object the scheduler did not make, held by the store at location
 * (and copies at replicas[0..n)). Replaces a placeholder of the same id. */
static sobj *obj_at(scheduler *s, sobj *o, lm_id id, lm_id job, const char *location, const lm_id *incarnation,
                    uint64_t size, const Lumen__Arg *copies, outbox *out) {
    if (o == NULL) o = obj_new(s, id, job);
    if (o->state != OBJ_PENDING) return o;
    o->size = size;
    o->location = strdup(location);
    size_t n = copies != NULL ? copies->n_replicas : 0;
    o->replicas = calloc(n ? n : 1, sizeof *o->replicas);
    o->replica_stores = calloc(n ? n : 1, sizeof *o->replica_stores);
    for (size_t i = 0; o->replicas != NULL && o->replica_stores != NULL && i < n; i++) {
        if (i < copies->n_replica_store_ids) id_field(copies->replica_store_ids[i], &o->replica_stores[o->nreplicas]);
        o->replicas[o->nreplicas++] = strdup(copies->replicas[i]);
    }
    snode *store = sched_node_by_addr(s, location);
    if (store != NULL) o->store = store->id;
    else if (incarnation != NULL) o->store = *incarnation; /* not registered (again) yet: see objects_of_gone_incarnations */
    /* The put names the store's incarnation that took it: another one live
     * at that address (restarted there since) never had it. */
    bool restarted = store != NULL && store->alive && incarnation != NULL && !lm_id_equal(store->id, *incarnation);
    if (restarted) o->store = *incarnation;
    if (store != NULL && (!store->alive || restarted) && !obj_move_to_copy(s, o)) { /* a put whose stores died since: no lineage */
        obj_set_failed(s, o, lost_put(id, location), out);
        return o;
    }
    o->state = OBJ_READY;
    obj_settled(s, o, out);
    return o;
}

/* Keeps args [0, n) of a task refused during admission: failing it releases
 * the arguments in its spec, which must be those it pinned. */
static void spec_keep_args(Lumen__TaskSpec *spec, size_t n) {
    for (size_t i = n; i < spec->n_args; i++) lumen__arg__free_unpacked(spec->args[i], NULL);
    if (n < spec->n_args) spec->n_args = n;
}

/* The object a ref argument (or the library, i == n_args) names, made
 * known if it is not: a put the client says it stored (location), an actor
 * call's result its worker will report (direct), else a placeholder. */
static sobj *admit_ref(scheduler *s, sjob *j, lm_id ref, const Lumen__Arg *a, const char *library_location,
                       outbox *out) {
    sobj *o = lm_idmap_get(s->objs, ref);
    const char *location = a != NULL ? a->location : library_location;
    bool fresh = o == NULL;
    lm_id incarnation;
    bool named = a != NULL && id_field(a->store_id, &incarnation);
    if (location != NULL && location[0] != '\0' && (o == NULL || (o->unresolved && o->state == OBJ_PENDING)))
        o = obj_at(s, o, ref, j->id, location, named ? &incarnation : NULL, a ? a->size : 0, a, out);
    else if (o == NULL)
        o = obj_unresolved(s, ref, j->id, a != NULL && a->direct);
    if (fresh) sched_id_push(&j->objs, ref);
    return o;
}

/*
 * Adds one submitted task; takes ownership of spec. Ids that are not 16
 * bytes are refused in the answer (no task could carry the failure); a spec
 * over a limit of input_limits.h becomes a task that fails at once, so its result
 * says why (an actor's creation, whose caller ignores the answer, too).
 */
lumen_status sched_admit(scheduler *s, Lumen__TaskSpec *spec, bool resubmit, outbox *out) {
    lm_id id, job;
    lumen_status st = lm_limits_id(spec->task_id, "task_id", &id);
    if (LM_IS_OK(st)) st = lm_limits_id(spec->job_id, "job_id", &job);
    if (!LM_IS_OK(st)) {
        lm_rpc_message_free(&spec->base);
        return st;
    }
    if (lm_idmap_get(s->tasks, id) != NULL) { /* a resubmission: tasks are idempotent */
        lm_rpc_message_free(&spec->base);
        return lm_ok();
    }
    sjob *known = lm_idmap_get(s->jobs, job);
    if (!resubmit && (known == NULL || !known->started)) { /* we restarted since it began */
        char h[LM_ID_HEX_LEN + 1];
        lm_rpc_message_free(&spec->base);
        return lm_status(LUMEN_FAILED_PRECONDITION, "job %s is unknown to this scheduler (it restarted): send it again",
                         hex(job, h));
    }
    lumen_status failed = lm_limits_spec(spec);
    if (!LM_IS_OK(failed)) { /* nothing is pinned; the record keeps a name of bounded size */
        spec_keep_args(spec, 0);
        if (spec->function != NULL && strlen(spec->function) > LM_LIMIT_NAME_BYTES)
            spec->function[LM_LIMIT_NAME_BYTES] = '\0';
    }
    stask *t = calloc(1, sizeof *t);
    t->id = id;
    t->job = job;
    t->spec = spec;
    t->max_retries = spec->max_retries ? spec->max_retries : (uint32_t)s->cfg->scheduler.max_retries;
    t->retry_on_error = spec->retry_on_error;
    t->submitted_ms = lm_wall_ms();
    lm_idmap_put(s->tasks, id, t);
    sjob *j = sched_job_get(s, job);
    sched_id_push(&j->tasks, id);

    lm_id result_id = lm_id_for_return(id, 0);
    sobj *result = lm_idmap_get(s->objs, result_id);
    if (result == NULL) {
        result = obj_new(s, result_id, job);
        sched_id_push(&j->objs, result_id);
    }
    result->producer = id;
    obj_resolved(s, result); /* a placeholder: now this task makes it */
    /* Already made (reported early): nothing to run; but an actor is made
     * by running its creation, whose worker says where. */
    if (result->state == OBJ_READY && !is_actor_creation(spec)) {
        t->phase = TASK_DONE;
        record_task(s, t, LM_TASK_FINISHED, NULL);
        return lm_ok();
    }
    record_task(s, t, LM_TASK_PENDING, NULL);
    record_obj(s, result);

    /* Pins every ref argument (then the library, if any); stops at the first
     * that failed, at index i. */
    size_t i = 0;
    for (; LM_IS_OK(failed) && i <= spec->n_args; i++) {
        lm_id ref;
        Lumen__Arg *a = i < spec->n_args ? spec->args[i] : NULL;
        if (a != NULL) {
            if (a->value_case != LUMEN__ARG__VALUE_REF) continue;
            if (!id_field(a->ref, &ref)) {
                failed = lm_status(LUMEN_INVALID_ARGUMENT, "argument %zu: a ref must be %d bytes, got %zu", i,
                                   LM_ID_BYTES, a->ref.len);
                break;
            }
        } else if (!id_field(spec->library_id, &ref)) {
            continue;
        }
        sobj *o = admit_ref(s, j, ref, a, a == NULL ? spec->library_location : NULL, out);
        if (o->state == OBJ_FAILED) {
            char h[LM_ID_HEX_LEN + 1];
            failed = lm_status_wrap(*o->error, "argument %s", hex(ref, h));
            break;
        }
        o->pins++;
        if (o->state == OBJ_PENDING) {
            sched_id_push(&o->dependents, id);
            t->unresolved++;
        }
    }
    if (!LM_IS_OK(failed)) {
        /* Reported through the result ref, like any task failure; only the
         * arguments before i were pinned. */
        spec_keep_args(spec, i < spec->n_args ? i : spec->n_args);
        task_fail(s, t, failed, out);
        return lm_ok();
    }
    if (resubmit && recovery_claimed(s, t)) return lm_ok(); /* running on the node that holds it */
    if (resubmit && !is_actor_creation(spec)) {
        /* Made before the restart, maybe: a store may hold its result. */
        t->phase = TASK_RESOLVING;
        sched_resolver_lookup(s->resolver, result_id);
        return lm_ok();
    }
    if (t->unresolved == 0) ready_push(s, t);
    return lm_ok();
}

/* The first live store among ids, or NULL. */
static snode *live_store(scheduler *s, const lm_id *ids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        snode *store = lm_idmap_get(s->nodes, ids[i]);
        if (store != NULL && store->alive && !store->is_worker) return store;
    }
    return NULL;
}

/* The resolver's answer: where the stores' directory says obj is. */
void sched_on_resolved(void *arg, lm_id id, const lm_id *stores, size_t n) {
    scheduler *s = arg;
    outbox out = {0};
    ptr_vec deletes = {0};
    pthread_mutex_lock(&s->mu);
    snode *store = live_store(s, stores, n);
    sobj *o = lm_idmap_get(s->objs, id);
    stask *t = o != NULL && !lm_id_is_zero(o->producer) ? lm_idmap_get(s->tasks, o->producer) : NULL;
    if (t != NULL && t->phase == TASK_RESOLVING) { /* a task sent again after a restart */
        if (store != NULL) {
            task_finished(s, t, &deletes);
            obj_set_stored(s, o, store, 0, &out);
            obj_maybe_release(s, o, &deletes);
        } else if (!s->recovering) { /* not made, or lost: it runs (again) */
            t->phase = TASK_WAITING;
            if (t->unresolved == 0) ready_push(s, t);
        } /* else: its store may not have registered yet; asked again when the window ends */
    } else if (o != NULL && o->unresolved && store != NULL) {
        obj_set_stored(s, o, store, 0, &out); /* someone's put, or a result made before a restart */
    } else if (o == NULL && store != NULL) {
        ptr_vec *early = lm_idmap_get(s->unknown_waiters, id);
        waiter *w = early != NULL && early->n > 0 ? early->items[0] : NULL;
        if (w != NULL) { /* a wait for another client's put: known from now on, with the waiter's job */
            sjob *j = lm_id_is_zero(w->job) ? NULL : lm_idmap_get(s->jobs, w->job);
            sobj *found = obj_new(s, id, j ? j->id : (lm_id){{0}});
            obj_set_stored(s, found, store, 0, &out);
            if (j != NULL) sched_id_push(&j->objs, id);
            else lm_idmap_remove(s->objs, id), obj_free(found); /* nobody's to keep */
        }
    }
    sched_dispatch(s, &out);
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(&out);
    send_deletes(s, &deletes);
}

/* ------------------------------------------------------------- nodes */

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

void sched_task_retry(scheduler *s, stask *t, lumen_code code, const char *why, outbox *out) {
    if (t->orphan) {
        lm_idmap_remove(s->tasks, t->id);
        sched_task_free(t);
        return;
    }
    if (t->attempts > t->max_retries) {
        task_fail(s, t, lm_status(code, "%s: %s (tried %u times)", t->spec->function, why, t->attempts), out);
        return;
    }
    record_task(s, t, LM_TASK_READY, why);
    ready_push(s, t);
}

/* Which READY objects in stores a sweep takes: those of the store `store`
 * (it died), or, when that is zero, those whose store incarnation is not
 * alive here (at `addr`, or anywhere when addr is NULL). */
typedef struct store_sweep {
    scheduler *s;
    lm_id store;
    const char *addr;
    ptr_vec objs;
} store_sweep;

static bool store_gone(scheduler *s, lm_id store) {
    const snode *n = lm_idmap_get(s->nodes, store);
    return n == NULL || !n->alive;
}

static void collect_stored(void *arg, lm_id key, void *value) {
    (void)key;
    store_sweep *sw = arg;
    sobj *o = value;
    if (o->state != OBJ_READY || o->is_inline || lm_id_is_zero(o->store)) return;
    bool take = !lm_id_is_zero(sw->store)
                    ? lm_id_equal(o->store, sw->store)
                    : (sw->addr == NULL || (o->location != NULL && strcmp(o->location, sw->addr) == 0)) &&
                          store_gone(sw->s, o->store);
    if (take) sched_ptr_push(&sw->objs, o);
}

/*
 * The objects of a sweep are gone with their store. An object a task made
 * is rebuilt: it is pending again and its producer runs again (and, through
 * task_rearm, the producers of its arguments lost with it). An object that
 * was put has no lineage: its refs report OBJECT_LOST.
 */
static void objects_lost(scheduler *s, store_sweep *sw, outbox *out) {
    lm_idmap_each(s->objs, collect_stored, sw);
    ptr_vec rearm = {0};
    size_t moved = 0;
    const char *where = sw->addr;
    /* First every lost object is pending, so a producer re-run below waits
     * for its arguments that are rebuilt too. */
    for (size_t i = 0; i < sw->objs.n; i++) {
        sobj *o = sw->objs.items[i];
        stask *p = lm_id_is_zero(o->producer) ? NULL : lm_idmap_get(s->tasks, o->producer);
        char *location = o->location;
        o->state = OBJ_PENDING;
        o->location = NULL;
        memset(&o->store, 0, sizeof o->store);
        if (p == NULL && obj_move_to_copy(s, o)) { /* a put read from another copy from now on */
            o->state = OBJ_READY;
            moved++;
        } else if (p != NULL && p->phase == TASK_DONE) {
            sched_ptr_push(&rearm, p);
            record_obj(s, o);
        } else if (p == NULL) {
            obj_set_failed(s, o, lost_put(o->id, location ? location : "?"), out);
        }
        free(location);
    }
    for (size_t i = 0; i < rearm.n; i++) task_rearm(s, rearm.items[i], "its result was lost with its object store", out);
    tasks_release_held(s, true, out);
    if (sw->objs.n > 0)
        lm_warn("object store %s: %zu objects gone with it: %zu read from a copy, %zu being rebuilt",
                where ? where : "(an earlier incarnation)", sw->objs.n, moved, rearm.n);
    free(sw->objs.items);
    free(rearm.items);
}

/* Puts admitted while their store had not registered here (we restarted)
 * name its incarnation; once a store registers at their address, or the
 * recovery window ends, those whose incarnation is not alive are gone. */
static void objects_of_gone_incarnations(scheduler *s, const char *addr, outbox *out) {
    store_sweep sw = {.s = s, .addr = addr};
    objects_lost(s, &sw, out);
}

/* A node is gone: what it was running runs again elsewhere, what it held
 * is rebuilt. Its record follows behind. */
static void node_lost(scheduler *s, snode *w, const char *why, outbox *out) {
    if (!w->alive) return;
    w->alive = false;
    w->in_flight = 0;
    lm_warn("%s %s is dead: %s", w->is_worker ? "worker" : "object store", w->addr, why);
    sched_writer_node_dead(s->writer, w->id);
    sched_writer_event(s->writer, LM_EVENT_NODE_DIED, w->id, NULL);
    recovery_node_lost(s, w);
    if (!w->is_worker) {
        store_sweep sw = {.s = s, .store = w->id, .addr = w->addr};
        objects_lost(s, &sw, out);
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

/* ------------------------------------------------------------- handlers */

static void node_record(const snode *n, lm_node_record *rec) {
    *rec = (lm_node_record){.id = n->id, .kind = n->is_worker ? LM_NODE_WORKER : LM_NODE_OBJSTORE, .addr = n->addr,
                            .slots = n->slots, .slots_free = n->slots_free, .bytes_used = n->bytes_used,
                            .memory_limit = n->memory_limit};
}

static void handle_register(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    const Lumen__RegisterNodeRequest *req = (const Lumen__RegisterNodeRequest *)msg;
    const Lumen__NodeInfo *info = req->node;
    lm_id id;
    if (info == NULL || !id_field(info->node_id, &id) || info->addr == NULL || info->addr[0] == '\0' ||
        info->kind == NULL || (strcmp(info->kind, "worker") != 0 && strcmp(info->kind, "objstore") != 0)) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "RegisterNode needs node_id, addr and kind worker|objstore");
        return;
    }
    lumen_status limit = lm_limits_batch(req->n_held_tasks, "RegisterNode held_tasks");
    if (LM_IS_OK(limit)) limit = lm_limits_batch(req->n_actors, "RegisterNode actors");
    if (!LM_IS_OK(limit)) {
        lm_rpc_fail_status(call, limit);
        return;
    }
    outbox out = {0};
    id_vec drop = {0};
    pthread_mutex_lock(&s->mu);
    snode *n = lm_idmap_get(s->nodes, id);
    if (n == NULL) {
        /* A new incarnation at an address means the one before it there is
         * gone, even if its death has not been noticed yet. */
        for (size_t i = 0; i < s->node_list.n; i++) {
            snode *old = s->node_list.items[i];
            if (old->alive && strcmp(old->addr, info->addr) == 0)
                node_lost(s, old, "a new incarnation registered at its address", &out);
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
    n->last_beat_ms = lm_mono_ms();
    lm_node_record rec;
    node_record(n, &rec);
    sched_writer_node_up(s->writer, &rec);
    sched_writer_event(s->writer, LM_EVENT_NODE_JOINED, id, info->addr);
    if (!n->is_worker) objects_of_gone_incarnations(s, n->addr, &out);
    recovery_node_registered(s, n, req, &drop, &out);
    sched_dispatch(s, &out);
    actors_node_up(s, &out);
    bool store_joined = !n->is_worker;
    pthread_mutex_unlock(&s->mu);
    /* A placeholder looked up while this store was not known here yet (a
     * restart) found it in the directory, but no live store: again now. */
    if (store_joined) sched_resolver_lookup_watched(s->resolver);
    sched_outbox_send(&out);

    char h[LM_ID_HEX_LEN + 1];
    lm_info("%s %s joined (%s, %u slots%s)", info->kind, info->addr, hex(id, h), info->slots,
            req->n_held_tasks ? ", holding tasks" : "");
    Lumen__RegisterNodeReply reply = LUMEN__REGISTER_NODE_REPLY__INIT;
    reply.heartbeat_interval_ms = (uint32_t)s->cfg->scheduler.heartbeat_interval_ms;
    reply.inline_result_max = s->cfg->scheduler.inline_result_max;
    reply.epoch = s->epoch;
    ProtobufCBinaryData *drops = calloc(drop.n ? drop.n : 1, sizeof *drops);
    for (size_t i = 0; drops != NULL && i < drop.n; i++) drops[i] = id_bytes(&drop.ids[i]);
    reply.n_drop_tasks = drops != NULL ? drop.n : 0;
    reply.drop_tasks = drops;
    lm_rpc_reply(call, &reply.base);
    free(drops);
    free(drop.ids);
}

/* A node's open WatchNode call: answered when its lease ends, or taken as
 * the node's death when it is cancelled first (the node's connection broke). */
#define WATCH_LEASE_MS 30000

typedef struct node_watch {
    scheduler *s;
    lm_rpc_call *call;
    lm_id node;
    uint64_t ends_ms; /* monotonic */
    bool done;        /* answered, or being answered */
} node_watch;

static void watch_free(void *arg) { free(arg); }

static void watch_reply_free(ProtobufCMessage *m) { free(m); }

/* Ends a watch with OK (its lease is over, or a newer one replaces it). mu held. */
static void watch_end(node_watch *w, outbox *out) {
    w->done = true;
    Lumen__WatchNodeReply *reply = malloc(sizeof *reply);
    lumen__watch_node_reply__init(reply);
    reply->lease_ms = WATCH_LEASE_MS;
    sched_outbox_add(out, (answer){w->call, &reply->base, watch_reply_free, lm_ok(), watch_free, w});
}

static void on_watch_cancel(lm_rpc_call *call, void *arg) {
    node_watch *w = arg;
    scheduler *s = w->s;
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    bool mine = !w->done;
    snode *n = mine ? lm_idmap_get(s->nodes, w->node) : NULL;
    if (mine) w->done = true;
    if (n != NULL && n->watch == w) n->watch = NULL;
    else n = NULL;
    if (n != NULL && s->stopping) n = NULL; /* our own shutdown cancelled it */
    if (n != NULL) {
        node_lost(s, n, "its connection to the scheduler broke", &out);
        sched_dispatch(s, &out);
    }
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(&out);
    if (!mine) return; /* the answer under way frees it */
    lm_rpc_fail(call, LUMEN_CANCELLED, "the watch was cancelled");
    free(w);
}

static void handle_watch(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    const Lumen__WatchNodeRequest *req = (const Lumen__WatchNodeRequest *)msg;
    lm_id id;
    if (!id_field(req->node_id, &id)) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "WatchNode needs a 16-byte node_id");
        return;
    }
    node_watch *w = calloc(1, sizeof *w);
    if (w == NULL) {
        lm_rpc_fail(call, LUMEN_RESOURCE_EXHAUSTED, "the scheduler is out of memory");
        return;
    }
    *w = (node_watch){s, call, id, lm_mono_ms() + WATCH_LEASE_MS, false};
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    snode *n = lm_idmap_get(s->nodes, id);
    if (n == NULL || !n->alive) {
        sched_outbox_fail(&out, call, lm_status(LUMEN_NOT_FOUND, "register the node before watching it"));
        free(w);
    } else if (!lm_rpc_call_on_cancel(call, on_watch_cancel, w)) {
        sched_outbox_fail(&out, call, lm_status(LUMEN_CANCELLED, "the watch was cancelled"));
        free(w);
    } else {
        if (n->watch != NULL) watch_end(n->watch, &out);
        n->watch = w;
    }
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(&out);
}

/* Answers the watches whose lease ended (the monitor calls it). mu held. */
static void watches_renew(scheduler *s, outbox *out) {
    uint64_t now = lm_mono_ms();
    for (size_t i = 0; i < s->node_list.n; i++) {
        snode *n = s->node_list.items[i];
        if (n->watch != NULL && (now >= n->watch->ends_ms || !n->alive || s->stopping)) {
            watch_end(n->watch, out);
            n->watch = NULL;
        }
    }
}

static void handle_heartbeat(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    const Lumen__HeartbeatRequest *req = (const Lumen__HeartbeatRequest *)msg;
    lm_id id;
    Lumen__HeartbeatReply reply = LUMEN__HEARTBEAT_REPLY__INIT;
    if (!id_field(req->node_id, &id)) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "Heartbeat needs a 16-byte node_id");
        return;
    }
    pthread_mutex_lock(&s->mu);
    snode *n = lm_idmap_get(s->nodes, id);
    /* Unknown (the scheduler restarted), registered with another
     * incarnation, or declared dead: register again. */
    reply.declared_dead = n != NULL && !n->alive;
    reply.reregister = n == NULL || !n->alive || (req->epoch != 0 && req->epoch != s->epoch);
    if (!reply.reregister) {
        n->last_beat_ms = lm_mono_ms();
        n->bytes_used = req->bytes_used;
        n->slots_free = req->slots_free;
        lm_node_record rec;
        node_record(n, &rec);
        sched_writer_node_beat(s->writer, &rec);
    }
    pthread_mutex_unlock(&s->mu);
    lm_rpc_reply(call, &reply.base);
}

static void handle_submit(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    /* The specs are taken from the request instead of copied: each is a
     * separate allocation, and NULL entries are skipped when it is freed. */
    Lumen__SubmitTasksRequest *req = (Lumen__SubmitTasksRequest *)msg;
    size_t n = req->n_tasks;
    lumen_status limit = lm_limits_batch(n, "SubmitTasks");
    if (!LM_IS_OK(limit)) {
        lm_rpc_fail_status(call, limit);
        return;
    }
    if (req->epoch != 0 && req->epoch != s->epoch) { /* meant for another incarnation: all or nothing */
        lm_rpc_fail(call, LUMEN_FAILED_PRECONDITION,
                    "the scheduler restarted (incarnation %llu, the batch was for %llu): send the job again",
                    (unsigned long long)s->epoch, (unsigned long long)req->epoch);
        return;
    }
    Lumen__Status *statuses = calloc(n ? n : 1, sizeof *statuses);
    Lumen__Status **status_ptrs = calloc(n ? n : 1, sizeof *status_ptrs);
    char (*messages)[sizeof(((lumen_status *)0)->msg)] = calloc(n ? n : 1, sizeof *messages);
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < n; i++) {
        Lumen__TaskSpec *spec = req->tasks[i];
        req->tasks[i] = NULL;
        lumen_status st = sched_admit(s, spec, req->resubmit, &out);
        lumen__status__init(&statuses[i]);
        statuses[i].code = st.code;
        memcpy(messages[i], st.msg, sizeof messages[i]);
        statuses[i].message = st.code ? messages[i] : (char *)"";
        status_ptrs[i] = &statuses[i];
    }
    sched_dispatch(s, &out);
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(&out);
    Lumen__SubmitTasksReply reply = LUMEN__SUBMIT_TASKS_REPLY__INIT;
    reply.n_results = n;
    reply.results = status_ptrs;
    lm_rpc_reply(call, &reply.base);
    free(statuses);
    free(status_ptrs);
    free(messages);
}

/* The live store a reported result was written to; NULL when it is gone
 * already (or never registered). */
static snode *result_store(scheduler *s, const Lumen__TaskResult *r) {
    lm_id store;
    snode *sn = id_field(r->objstore_node_id, &store) ? lm_idmap_get(s->nodes, store) : NULL;
    return sn != NULL && sn->alive ? sn : NULL;
}

/* A pending object gets a reported result: its value inline, or where it
 * was stored (a live store: see result_store). */
static void obj_set_result(scheduler *s, sobj *o, const Lumen__TaskResult *r, outbox *out) {
    if (o->state != OBJ_PENDING) return; /* a duplicate report (a re-run) */
    if (r->n_inline_results == 0) {
        obj_set_stored(s, o, result_store(s, r), r->n_result_sizes > 0 ? r->result_sizes[0] : 0, out);
        return;
    }
    o->is_inline = true;
    o->size = r->inline_results[0].len;
    o->data = malloc(o->size ? o->size : 1);
    if (o->size) memcpy(o->data, r->inline_results[0].data, o->size);
    o->state = OBJ_READY;
    obj_settled(s, o, out);
}

/* An outcome the scheduler has no task for: an actor method call (not
 * placed here), or a task a restarted scheduler has not seen again yet. Its
 * result object appears (or a placeholder a task waits on settles); a
 * task's failure is left to its re-run. */
static void unplaced_result(scheduler *s, lm_id node, const Lumen__TaskResult *r, lm_id task, outbox *out,
                            ptr_vec *deletes) {
    lm_id job, actor;
    bool is_call = id_field(r->actor_id, &actor);
    lumen_code code = r->status ? (lumen_code)r->status->code : LUMEN_OK;
    if (code == LUMEN_OK && id_field(r->created_actor_id, &actor)) actors_reported_up(s, actor, r->incarnation, node, out);
    /* A task's failure is left to its re-run; an actor call that crashed
     * is left to its caller, which runs it again or reports it failed. */
    if (!id_field(r->job_id, &job) || (code != LUMEN_OK && (!is_call || r->crashed))) return;
    if (is_call && !lm_id_is_zero(node)) actors_call_done(s, actor); /* a run, not its caller's report */
    /* A job this scheduler has not heard of yet (it restarted, its client
     * has not come back yet) keeps the result for when it does. */
    if (sched_job_ended(s, job)) return; /* no one will read it */
    sjob *j = sched_job_get(s, job);
    lm_id id = lm_id_for_return(task, 0);
    sobj *o = lm_idmap_get(s->objs, id);
    if (o == NULL) {
        o = obj_new(s, id, job);
        sched_id_push(&j->objs, id);
    }
    if (code != LUMEN_OK) obj_set_failed(s, o, lm_status(code, "%s", r->status->message), out);
    else if (r->n_inline_results > 0 || result_store(s, r) != NULL) obj_set_result(s, o, r, out);
    /* else: stored where it is gone already; a task re-run makes it again */
    obj_maybe_release(s, o, deletes);
}

/* Marks a finished task's result and wakes what waits for it. */
static void task_done(scheduler *s, lm_id node, const Lumen__TaskResult *r, outbox *out, ptr_vec *deletes) {
    lm_id id;
    if (!id_field(r->task_id, &id)) return;
    stask *t = r->actor_id.len > 0 ? NULL : lm_idmap_get(s->tasks, id);
    if (r->actor_id.len == 0) recovery_result_reported(s, id);
    if (t == NULL) {
        unplaced_result(s, node, r, id, out, deletes);
        return;
    }
    lumen_code code = r->status ? (lumen_code)r->status->code : LUMEN_OK;
    const char *msg = r->status ? r->status->message : "";
    if (t->phase != TASK_RUNNING) { /* stale or duplicate report */
        /* A creation that ran twice across a restart: one copy stays. */
        if (code == LUMEN_OK && is_actor_creation(t->spec)) actors_created_again(s, t, node, out);
        return;
    }
    /* A node declared dead whose task runs again elsewhere: its result is
     * as good as the re-run's (tasks are idempotent), its failure is not. */
    if (!lm_id_equal(node, t->worker) && code != LUMEN_OK) return;
    snode *w = lm_idmap_get(s->nodes, t->worker);
    if (w != NULL && w->in_flight > 0) w->in_flight--;
    if (t->orphan) { /* its job ended while it ran */
        if (code == LUMEN_OK && is_actor_creation(t->spec)) actors_orphan_created(s, t);
        lm_idmap_remove(s->tasks, id);
        sched_task_free(t);
        return;
    }
    if (code == LUMEN_OBJECT_LOST && arg_rebuilding(s, t) && t->attempts <= t->max_retries) {
        task_unpin_args(s, t, deletes); /* it read an argument that was lost: again once rebuilt */
        task_rearm(s, t, "an argument was lost and is being rebuilt", out);
        return;
    }
    /* It could not read an argument, or the worker could not reach its
     * store: a store may have died (noticed a moment later, then its
     * objects are rebuilt), so it runs again after a moment while retries
     * last. */
    if ((code == LUMEN_OBJECT_LOST || code == LUMEN_UNAVAILABLE) && t->attempts <= t->max_retries) {
        task_hold(s, t, msg);
        return;
    }
    /* The process running it died (a system failure, as in Ray), or its
     * own failure that the caller wants retried: again while retries last. */
    if (code == LUMEN_UNAVAILABLE || (code != LUMEN_OK && (r->crashed || (t->retry_on_error && code == LUMEN_TASK_FAILED)))) {
        sched_task_retry(s, t, code, msg, out);
        return;
    }
    if (code != LUMEN_OK) {
        task_fail(s, t, lm_status(code, "%s", msg), out);
        return;
    }
    if (r->n_inline_results == 0 && !is_actor_creation(t->spec) && result_store(s, r) == NULL) {
        sched_task_retry(s, t, LUMEN_OBJECT_LOST, "its result was stored in an object store that died", out);
        return;
    }
    task_finished(s, t, deletes);
    if (is_actor_creation(t->spec)) actors_created(s, t, lm_ok(), node, out);
    sobj *o = lm_idmap_get(s->objs, lm_id_for_return(id, 0));
    if (o == NULL) return;
    obj_set_result(s, o, r, out);
    obj_maybe_release(s, o, deletes); /* freed while it ran */
}

/* What a task wrote goes to Redis behind, like its record (the writer holds
 * it to LM_LIMIT_TASK_LOG_BYTES); a task that wrote nothing costs nothing. */
static void record_log(scheduler *s, const Lumen__TaskResult *r) {
    lm_id id;
    if (r->log.len > 0 && id_field(r->task_id, &id)) sched_writer_task_log(s->writer, id, r->log.data, r->log.len);
}

static void handle_task_done(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    const Lumen__TaskDoneRequest *req = (const Lumen__TaskDoneRequest *)msg;
    outbox out = {0};
    ptr_vec deletes = {0};
    pthread_mutex_lock(&s->mu);
    /* A result in a store that has not (re)registered yet (we just
     * restarted): the worker sends the batch again a little later, when
     * the store's address is known, instead of the result being lost. */
    for (size_t i = 0; i < req->n_results; i++) {
        lm_id store;
        if (!id_field(req->results[i]->objstore_node_id, &store) || lm_idmap_get(s->nodes, store) != NULL) continue;
        pthread_mutex_unlock(&s->mu);
        char h[LM_ID_HEX_LEN + 1];
        lm_rpc_fail(call, LUMEN_UNAVAILABLE, "object store %s has not registered yet", hex(store, h));
        return;
    }
    lm_id node = {{0}};
    id_field(req->node_id, &node); /* clients report failed actor calls without one */
    for (size_t i = 0; i < req->n_results; i++) task_done(s, node, req->results[i], &out, &deletes);
    sched_dispatch(s, &out);
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(&out);
    send_deletes(s, &deletes);
    for (size_t i = 0; i < req->n_results; i++) record_log(s, req->results[i]);
    Lumen__TaskDoneReply reply = LUMEN__TASK_DONE_REPLY__INIT;
    lm_rpc_reply(call, &reply.base);
}

static void handle_wait(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    const Lumen__WaitObjectsRequest *req = (const Lumen__WaitObjectsRequest *)msg;
    size_t n = req->n_object_ids;
    lumen_status limit = lm_limits_batch(n, "WaitObjects");
    if (!LM_IS_OK(limit)) {
        lm_rpc_fail_status(call, limit);
        return;
    }
    waiter *w = calloc(1, sizeof *w);
    w->s = s;
    w->call = call;
    w->n = n;
    w->park_unknown = req->park_unknown;
    w->heap_idx = SIZE_MAX;
    w->ids = calloc(n ? n : 1, sizeof *w->ids);
    for (size_t i = 0; i < n; i++) {
        if (!id_field(req->object_ids[i], &w->ids[i])) {
            free(w->ids);
            free(w);
            lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "object id %zu is not 16 bytes", i);
            return;
        }
    }
    /* num_ready 0 or wait_ms 0 asks for the states as they are, without waiting. */
    w->need = req->num_ready > n ? n : req->num_ready;
    if (req->wait_ms == 0) w->need = 0;
    w->until_ms = lm_mono_ms() + req->wait_ms;
    atomic_init(&w->refs, 1);
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    sjob *j = id_field(req->job_id, &w->job) ? lm_idmap_get(s->jobs, w->job) : NULL;
    if (req->job_id.len > 0 && (j == NULL || !j->started || (req->epoch != 0 && req->epoch != s->epoch))) {
        pthread_mutex_unlock(&s->mu);
        char h[LM_ID_HEX_LEN + 1];
        hex(w->job, h);
        free(w->ids);
        free(w);
        lm_rpc_fail(call, LUMEN_FAILED_PRECONDITION, "job %s is unknown to this scheduler (it restarted): send it again",
                    h);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        sobj *o = lm_idmap_get(s->objs, w->ids[i]);
        if (o != NULL ? o->state != OBJ_PENDING : !req->park_unknown) w->have++;
    }
    if (w->have >= w->need) {
        waiter_answer(s, w, &out);
    } else if (!lm_rpc_call_on_cancel(call, on_wait_cancel, w)) {
        w->done = true;
        sched_outbox_fail(&out, call, lm_status(LUMEN_CANCELLED, "wait cancelled"));
        waiter_unref(w);
    } else {
        for (size_t i = 0; i < n; i++) {
            sobj *o = lm_idmap_get(s->objs, w->ids[i]);
            ptr_vec *list = o != NULL ? (o->state == OBJ_PENDING ? &o->waiters : NULL) : unknown_list(s, w->ids[i]);
            if (list != NULL) {
                sched_ptr_push(list, w);
                atomic_fetch_add(&w->refs, 1);
            }
        }
        wait_heap_add(s, w);
    }
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(&out);
}

static void on_wait_cancel(lm_rpc_call *call, void *arg) {
    waiter *w = arg;
    scheduler *s = w->s;
    pthread_mutex_lock(&s->mu);
    bool mine = !w->done;
    if (mine) {
        w->done = true;
        unknown_detach(s, w);
        wait_heap_remove(s, w);
        waiter_unref(w); /* the call's reference; objects drop theirs later */
    }
    pthread_mutex_unlock(&s->mu);
    if (mine) lm_rpc_fail(call, LUMEN_CANCELLED, "the wait was cancelled by its caller");
}

static void handle_cluster_info(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    (void)msg;
    scheduler *s = ctx;
    pthread_mutex_lock(&s->mu);
    size_t n = s->node_list.n;
    Lumen__NodeInfo *infos = calloc(n ? n : 1, sizeof *infos);
    Lumen__NodeInfo **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    char **addrs = calloc(n ? n : 1, sizeof *addrs);
    lm_id *ids = calloc(n ? n : 1, sizeof *ids);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        snode *node = s->node_list.items[i];
        if (!node->alive) continue;
        lumen__node_info__init(&infos[k]);
        ids[k] = node->id;
        addrs[k] = strdup(node->addr);
        infos[k].node_id = id_bytes(&ids[k]);
        infos[k].kind = node->is_worker ? (char *)"worker" : (char *)"objstore";
        infos[k].addr = addrs[k];
        infos[k].slots = node->slots;
        infos[k].memory_limit = node->memory_limit;
        ptrs[k] = &infos[k];
        k++;
    }
    pthread_mutex_unlock(&s->mu);
    Lumen__ClusterInfoReply reply = LUMEN__CLUSTER_INFO_REPLY__INIT;
    reply.n_nodes = k;
    reply.nodes = ptrs;
    reply.inline_result_max = s->cfg->scheduler.inline_result_max;
    reply.put_replicas = (uint32_t)s->cfg->scheduler.put_replicas;
    reply.epoch = s->epoch;
    lm_rpc_reply(call, &reply.base);
    for (size_t i = 0; i < k; i++) free(addrs[i]);
    free(addrs);
    free(ids);
    free(infos);
    free(ptrs);
}

static void on_forgotten_done(void *arg, lumen_status st, ProtobufCMessage *reply) {
    if (!LM_IS_OK(st)) lm_warn("%s failed: %s", (const char *)arg, st.msg);
    lm_rpc_message_free(reply);
}

void sched_send_and_forget(scheduler *s, const char *addr, lm_rpc_method m, const ProtobufCMessage *req,
                           const char *what) {
    lumen_status st = lm_rpc_unary_async(s->rpc, addr, m, req, s->cfg->cluster.rpc_timeout_ms, on_forgotten_done,
                                         (void *)what);
    if (!LM_IS_OK(st)) lm_warn("%s failed: %s", what, st.msg);
}

/* Objects released here are deleted from their store without waiting. */
static void send_deletes(scheduler *s, ptr_vec *deletes) {
    for (size_t i = 0; i < deletes->n; i++) {
        sobj *o = deletes->items[i];
        ProtobufCBinaryData id = id_bytes(&o->id);
        Lumen__DeleteRequest req = LUMEN__DELETE_REQUEST__INIT;
        req.n_object_ids = 1;
        req.object_ids = &id;
        sched_send_and_forget(s, o->location, s->delete_objects, &req.base, "object store cleanup");
        obj_free(o);
    }
    free(deletes->items);
    deletes->items = NULL;
    deletes->n = deletes->cap = 0;
}

#define FREED_EARLY_MAX (1u << 20)

static void handle_free(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    const Lumen__FreeObjectsRequest *req = (const Lumen__FreeObjectsRequest *)msg;
    ptr_vec deletes = {0};
    lm_id job;
    bool has_job = id_field(req->job_id, &job);
    static char mark;
    pthread_mutex_lock(&s->mu);
    sjob *j = has_job ? lm_idmap_get(s->jobs, job) : NULL;
    for (size_t i = 0; i < req->n_object_ids; i++) {
        lm_id id;
        if (!id_field(req->object_ids[i], &id)) continue;
        sobj *o = lm_idmap_get(s->objs, id);
        /* Not here yet: dropped when it comes. Bounded: ids that never come
         * (a client's mistake) must not grow it for the job's life. */
        if (o == NULL && j != NULL && (j->freed_early == NULL || lm_idmap_count(j->freed_early) < FREED_EARLY_MAX)) {
            if (j->freed_early == NULL) j->freed_early = lm_idmap_new();
            lm_idmap_put(j->freed_early, id, &mark);
        }
        if (o == NULL) continue;
        o->freed = true;
        obj_maybe_release(s, o, &deletes);
    }
    pthread_mutex_unlock(&s->mu);
    send_deletes(s, &deletes);
    Lumen__FreeObjectsReply reply = LUMEN__FREE_OBJECTS_REPLY__INIT;
    lm_rpc_reply(call, &reply.base);
}

/* ------------------------------------------------------------- job end */

/* Asks t's worker to stop it, queued or running: no one will read its
 * result now. Its report (CANCELLED) frees it here. Constructors are left
 * to finish: actors_orphan_created stops what they made. */
void sched_cancel_on(scheduler *s, const snode *w, lm_id task) {
    Lumen__CancelTaskRequest req = LUMEN__CANCEL_TASK_REQUEST__INIT;
    req.task_id = id_bytes(&task);
    req.epoch = s->epoch;
    sched_send_and_forget(s, w->addr, s->cancel_task, &req.base, "cancelling a task of an ended job");
}

static void cancel_orphan(scheduler *s, const stask *t) {
    snode *w = lm_idmap_get(s->nodes, t->worker);
    if (w == NULL || !w->alive || is_actor_creation(t->spec)) return;
    sched_cancel_on(s, w, t->id);
}

void sched_job_free(sjob *j) {
    free(j->objs.ids);
    free(j->tasks.ids);
    free(j->actors.ids);
    lm_idmap_free(j->freed_early);
    free(j);
}

void sched_job_forget(scheduler *s, sjob *j, outbox *out) {
    actors_job_end(s, j, out);
    for (size_t i = 0; i < j->objs.n; i++) {
        sobj *o = lm_idmap_remove(s->objs, j->objs.ids[i]);
        if (o == NULL) continue;
        if (o->unresolved) sched_resolver_unwatch(s->resolver, o->id);
        obj_free(o);
    }
    for (size_t i = 0; i < j->tasks.n; i++) {
        stask *t = lm_idmap_get(s->tasks, j->tasks.ids[i]);
        if (t == NULL) continue;
        /* Its record must not say PENDING or RUNNING forever. */
        if (t->phase != TASK_DONE) record_task(s, t, LM_TASK_FAILED, "cancelled: its job ended before it finished");
        if (t->phase == TASK_RUNNING) {
            t->orphan = true; /* freed when its worker reports */
            cancel_orphan(s, t);
            continue;
        }
        if (t->phase == TASK_READY) sched_ready_remove(s, t);
        lm_idmap_remove(s->tasks, t->id);
        sched_task_free(t);
    }
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

static void on_run_tasks_done(void *arg, lumen_status st, ProtobufCMessage *reply) {
    dispatch_batch *batch = arg;
    scheduler *s = batch->s;
    lm_rpc_message_free(reply);
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    if (st.code == LUMEN_FAILED_PRECONDITION) {
        /* The worker serves a newer incarnation: this scheduler was replaced. */
        lm_warn("worker %s refused tasks: %s", batch->addr, st.msg);
        for (size_t i = 0; i < batch->tasks.n; i++) {
            stask *t = lm_idmap_get(s->tasks, batch->tasks.ids[i]);
            snode *w = lm_idmap_get(s->nodes, batch->worker);
            if (t == NULL || t->phase != TASK_RUNNING || !lm_id_equal(t->worker, batch->worker)) continue;
            if (w != NULL && w->in_flight > 0) w->in_flight--;
            sched_task_retry(s, t, LUMEN_UNAVAILABLE, st.msg, &out);
        }
    } else if (!LM_IS_OK(st) && !worker_unreachable(st)) { /* the worker refused the batch: the tasks fail, not it */
        for (size_t i = 0; i < batch->tasks.n; i++) {
            stask *t = lm_idmap_get(s->tasks, batch->tasks.ids[i]);
            snode *w = lm_idmap_get(s->nodes, batch->worker);
            if (t == NULL || t->phase != TASK_RUNNING || !lm_id_equal(t->worker, batch->worker)) continue;
            if (w != NULL && w->in_flight > 0) w->in_flight--;
            task_fail(s, t, lm_status_wrap(st, "worker %s refused it", batch->addr), &out);
        }
    } else if (!LM_IS_OK(st)) {
        run_tasks_failed(s, batch, st, &out);
    }
    if (!LM_IS_OK(st)) sched_dispatch(s, &out);
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(&out);
    free(batch->tasks.ids);
    free(batch->addr);
    free(batch);
}

/* ------------------------------------------------------------- monitor */

/* Placeholders nobody made or stored in time fail their dependents. */
static void unresolved_expire(scheduler *s, outbox *out) {
    uint64_t now = lm_mono_ms();
    size_t keep = 0;
    for (size_t i = 0; i < s->unresolved.n; i++) {
        sobj *o = lm_idmap_get(s->objs, s->unresolved.ids[i]);
        if (o == NULL || !o->unresolved || o->state != OBJ_PENDING) continue;
        if (s->recovering || now - o->unresolved_since_ms < s->unknown_ref_timeout_ms) {
            s->unresolved.ids[keep++] = o->id;
            continue;
        }
        char h[LM_ID_HEX_LEN + 1];
        obj_set_failed(s, o, lm_status(LUMEN_NOT_FOUND, "object %s is an unknown object: no task makes it and no object store "
                                       "holds it (waited %llu ms)", hex(o->id, h),
                                       (unsigned long long)(now - o->unresolved_since_ms)), out);
    }
    s->unresolved.n = keep;
}

/* The recovery window ended: what waited for it goes on. */
static void resolving_again(void *arg, lm_id key, void *value) {
    (void)key;
    scheduler *s = arg;
    stask *t = value;
    if (t->phase == TASK_RESOLVING) sched_resolver_lookup(s->resolver, lm_id_for_return(t->id, 0));
}

void sched_recovered(scheduler *s, outbox *out) {
    objects_of_gone_incarnations(s, NULL, out); /* their stores did not come back */
    lm_idmap_each(s->tasks, resolving_again, s);
    uint64_t now = lm_mono_ms();
    for (size_t i = 0; i < s->unresolved.n; i++) { /* the time away does not count */
        sobj *o = lm_idmap_get(s->objs, s->unresolved.ids[i]);
        if (o != NULL && o->unresolved) {
            o->unresolved_since_ms = now;
            sched_resolver_lookup(s->resolver, o->id);
        }
    }
}

static void *monitor_main(void *arg) {
    lm_thread_name("monitor");
    scheduler *s = arg;
    int64_t interval = s->cfg->scheduler.heartbeat_interval_ms;
    int64_t timeout = s->cfg->scheduler.heartbeat_timeout_ms;
    uint64_t next_tick = lm_mono_ms();
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        outbox out = {0};
        uint64_t wake = waits_expire(s, &out);
        uint64_t now = lm_mono_ms();
        if (now >= next_tick) {
            /* Ticking late by more than a node may stay silent means this
             * process (or the machine) was stopped: the nodes' silence
             * meanwhile says nothing of them, so they get a timeout anew,
             * as Sentinel's TILT mode does. */
            uint64_t late = now - next_tick;
            if (late > (uint64_t)timeout) {
                lm_warn("the monitor ran %llu ms late (this process was stopped?): every node gets %lld ms to "
                        "send a heartbeat before it is declared dead",
                        (unsigned long long)late, (long long)timeout);
                for (size_t i = 0; i < s->node_list.n; i++) ((snode *)s->node_list.items[i])->last_beat_ms = now;
            }
            next_tick = now + (uint64_t)(interval / 2 > 0 ? interval / 2 : 1);
            for (size_t i = 0; i < s->node_list.n; i++) {
                snode *n = s->node_list.items[i];
                if (n->alive && now - n->last_beat_ms > (uint64_t)timeout) {
                    char why[64];
                    snprintf(why, sizeof why, "no heartbeat for %llu ms", (unsigned long long)(now - n->last_beat_ms));
                    node_lost(s, n, why, &out);
                }
            }
            recovery_check(s, &out);
            tasks_release_held(s, false, &out);
            unresolved_expire(s, &out);
            jobs_expire(s, &out);
            sched_dispatch(s, &out);
            actors_expire_waits(s, &out);
            watches_renew(s, &out);
            jobs_renew_leases(s, &out);
        }
        if (out.n > 0) {
            pthread_mutex_unlock(&s->mu);
            sched_outbox_send(&out);
            pthread_mutex_lock(&s->mu);
            continue; /* time passed: look again before sleeping */
        }
        free(out.items);
        if (wake == 0 || wake > next_tick) wake = next_tick;
        now = lm_mono_ms();
        if (wake > now && !s->stopping) {
            struct timespec until = lm_timespec_in(CLOCK_MONOTONIC, (int64_t)(wake - now));
            pthread_cond_timedwait(&s->monitor_cond, &s->mu, &until);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ------------------------------------------------------------- lifecycle */

static const lm_rpc_method_impl scheduler_methods[] = {
    {"RegisterNode", LM_RPC_UNARY, handle_register},
    {"Heartbeat", LM_RPC_UNARY, handle_heartbeat},
    {"WatchNode", LM_RPC_UNARY, handle_watch},
    {"WatchJob", LM_RPC_UNARY, jobs_handle_watch},
    {"SubmitTasks", LM_RPC_UNARY, handle_submit},
    {"TaskDone", LM_RPC_UNARY, handle_task_done},
    {"WaitObjects", LM_RPC_UNARY, handle_wait},
    {"GetClusterInfo", LM_RPC_UNARY, handle_cluster_info},
    {"FreeObjects", LM_RPC_UNARY, handle_free},
    {"StartJob", LM_RPC_UNARY, jobs_handle_start},
    {"EndJob", LM_RPC_UNARY, jobs_handle_end},
    {"CreateActor", LM_RPC_UNARY, actors_handle_create},
    {"GetActor", LM_RPC_UNARY, actors_handle_get},
    {"KillActor", LM_RPC_UNARY, actors_handle_kill},
    {"ActorDied", LM_RPC_UNARY, actors_handle_died},
    {NULL, 0, NULL},
};

lumen_status scheduler_add_service(scheduler *s, lm_rpc_server *srv) {
    return lm_rpc_server_add_service(srv, &lumen__scheduler__descriptor, scheduler_methods, s);
}

/* How long a starting scheduler waits for Redis before it gives up: Redis
 * may be restarting too, loading its append-only file, or slow under load. */
#define START_REDIS_WAIT_MS 30000

/* Runs a start-up step that needs Redis again, with a backoff, while it
 * fails UNAVAILABLE and START_REDIS_WAIT_MS has not passed. */
static lumen_status patiently(lumen_status (*step)(void *arg), void *arg) {
    uint64_t until = lm_mono_ms() + START_REDIS_WAIT_MS;
    unsigned backoff_ms = 100;
    for (;;) {
        lumen_status st = step(arg);
        if (LM_IS_OK(st) || st.code != LUMEN_UNAVAILABLE || lm_mono_ms() + backoff_ms > until) return st;
        lm_warn("%s (retrying in %u ms)", st.msg, backoff_ms);
        lm_sleep_ms(backoff_ms);
        backoff_ms = backoff_ms * 2 > 2000 ? 2000 : backoff_ms * 2;
    }
}

typedef struct redis_dial {
    const lm_redis_opts *opts;
    lm_redis **out;
} redis_dial;

static lumen_status dial_redis(void *arg) {
    redis_dial *d = arg;
    return lm_redis_connect(d->opts, d->out);
}

static lumen_status recover(void *arg) { return recovery_start(arg); } /* idempotent: it may run again */

lumen_status scheduler_new(const lm_config *cfg, scheduler **out) {
    *out = NULL;
    lm_redis_opts ropts = {.addr = cfg->cluster.redis_addr, .password = cfg->cluster.redis_password,
                           .prefix = cfg->cluster.key_prefix};
    lm_redis *redis = NULL;
    lumen_status st = patiently(dial_redis, &(redis_dial){&ropts, &redis});
    if (!LM_IS_OK(st)) return st;
    scheduler *s = calloc(1, sizeof *s);
    s->cfg = cfg;
    s->redis = redis;
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
    lm_rpc_method_find(&lumen__worker__descriptor, "RunTasks", &s->run_tasks);
    lm_rpc_method_find(&lumen__object_store__descriptor, "ReleaseJob", &s->release_job);
    lm_rpc_method_find(&lumen__object_store__descriptor, "Delete", &s->delete_objects);
    lm_rpc_method_find(&lumen__worker__descriptor, "StopActor", &s->stop_actor);
    lm_rpc_method_find(&lumen__worker__descriptor, "CancelTask", &s->cancel_task);
    lm_rpc_client_opts copts = {.token = cfg->cluster.token,
                                .tls = {cfg->cluster.tls_cert, cfg->cluster.tls_key, cfg->cluster.tls_ca}};
    st = lm_rpc_client_new(&copts, &s->rpc);
    if (LM_IS_OK(st)) st = sched_resolver_new(&ropts, sched_on_resolved, s, &s->resolver);
    if (LM_IS_OK(st)) st = patiently(recover, s); /* before the writer: nothing of ours in Redis yet */
    if (!LM_IS_OK(st)) {
        scheduler_free(s);
        return st;
    }
    s->writer = sched_writer_new(redis);
    s->monitor_started = pthread_create(&s->monitor, NULL, monitor_main, s) == 0;
    if (!s->monitor_started) {
        scheduler_free(s);
        return lm_status(LUMEN_INTERNAL, "cannot start the scheduler's monitor thread");
    }
    *out = s;
    return lm_ok();
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

void scheduler_stop(scheduler *s) {
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->monitor_cond);
    pthread_mutex_unlock(&s->mu);
}

void scheduler_free(scheduler *s) {
    if (s == NULL) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->monitor_cond);
    pthread_mutex_unlock(&s->mu);
    if (s->monitor_started) pthread_join(s->monitor, NULL);
    /* Open watches and leases end with the server's shutdown; waits too. */
    sched_resolver_free(s->resolver); /* no more answers from it */
    lm_rpc_client_free(s->rpc);       /* async callbacks finish here */
    sched_writer_free(s->writer);
    for (size_t i = 0; i < s->wait_heap.n; i++) waiter_unref(s->wait_heap.items[i]);
    free(s->wait_heap.items);
    lm_idmap_each(s->tasks, free_task_entry, NULL);
    lm_idmap_each(s->objs, free_obj_entry, NULL);
    lm_idmap_each(s->jobs, free_job_entry, NULL);
    actors_free_all(s);
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
    lm_redis_free(s->redis);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->monitor_cond);
    free(s);
}

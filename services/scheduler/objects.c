/*
 * objects.c - the objects the scheduler knows: a task's result, a put, a
 * placeholder for an id nobody made or reported yet; their states, where
 * they are stored, their copies, and what happens to them when a store is
 * lost (rebuilt through lineage, read from a copy, or lost).
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
 */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "objstore.pb-c.h"
#include "sched_internal.h"

sobj *obj_new(scheduler *s, lm_id id, lm_id job) {
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
sobj *obj_unresolved(scheduler *s, lm_id id, lm_id job, bool direct) {
    sobj *o = obj_new(s, id, job);
    o->unresolved = true;
    o->direct = direct;
    o->unresolved_since_ms = sched_now_ms(s);
    if (!direct) sched_id_push(&s->unresolved, id);
    sched_resolver_watch(s->resolver, id);
    return o;
}

/* The object is known for what it is now (made, found, or failed). */
void obj_resolved(scheduler *s, sobj *o) {
    if (!o->unresolved) return;
    o->unresolved = false;
    sched_resolver_unwatch(s->resolver, o->id);
}



void obj_free(sobj *o) {
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


/* An object leaves PENDING: wake its dependents and waiters. */
static void obj_settled(scheduler *s, sobj *o, outbox *out) {
    obj_resolved(s, o);
    sched_record_obj(s, o);
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

void obj_set_failed(scheduler *s, sobj *o, lumen_status st, outbox *out) {
    if (o->state != OBJ_PENDING) return;
    o->state = OBJ_FAILED;
    o->error = malloc(sizeof *o->error);
    *o->error = st;
    obj_settled(s, o, out);
}

/* A pending object is READY in the store `store` (a live node; NULL: a
 * store that is gone, so the object is lost). */
void obj_set_stored(scheduler *s, sobj *o, const snode *store, uint64_t size, outbox *out) {
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
void obj_maybe_release(scheduler *s, sobj *o, outbox *cleanup) {
    if (!o->freed || o->pins > 0 || o->state == OBJ_PENDING || o->waiters.n > 0) return;
    lm_idmap_remove(s->objs, o->id);
    if (!o->is_inline && o->location != NULL && cleanup != NULL) {
        ProtobufCBinaryData id = id_bytes(&o->id);
        Lumen__DeleteRequest req = LUMEN__DELETE_REQUEST__INIT;
        req.n_object_ids = 1;
        req.object_ids = &id;
        sched_outbox_request(cleanup, SCHED_DELETE_OBJECTS, o->location, &req.base, NULL);
    }
    obj_free(o);
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
sobj *obj_at(scheduler *s, sobj *o, lm_id id, lm_id job, const char *location, const lm_id *incarnation,
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
            sched_record_obj(s, o);
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

void objects_lost_with(scheduler *s, const snode *store, outbox *out) {
    store_sweep sw = {.s = s, .store = store->id, .addr = store->addr};
    objects_lost(s, &sw, out);
}

/* Puts admitted while their store had not registered here (we restarted)
 * name its incarnation; once a store registers at their address, or the
 * recovery window ends, those whose incarnation is not alive are gone. */
void objects_of_gone_incarnations(scheduler *s, const char *addr, outbox *out) {
    store_sweep sw = {.s = s, .addr = addr};
    objects_lost(s, &sw, out);
}

/* The live store a reported result was written to; NULL when it is gone
 * already (or never registered). */
snode *result_store(scheduler *s, const Lumen__TaskResult *r) {
    lm_id store;
    snode *sn = id_field(r->objstore_node_id, &store) ? lm_idmap_get(s->nodes, store) : NULL;
    return sn != NULL && sn->alive ? sn : NULL;
}

/* A pending object gets a reported result: its value inline, or where it
 * was stored (a live store: see result_store). */
void obj_set_result(scheduler *s, sobj *o, const Lumen__TaskResult *r, outbox *out) {
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

/* Placeholders nobody made or stored in time fail their dependents. */
void unresolved_expire(scheduler *s, outbox *out) {
    uint64_t now = sched_now_ms(s);
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
    uint64_t now = sched_now_ms(s);
    for (size_t i = 0; i < s->unresolved.n; i++) { /* the time away does not count */
        sobj *o = lm_idmap_get(s->objs, s->unresolved.ids[i]);
        if (o != NULL && o->unresolved) {
            o->unresolved_since_ms = now;
            sched_resolver_lookup(s->resolver, o->id);
        }
    }
}

void sched_record_obj(scheduler *s, const sobj *o) {
    lm_obj_record rec = {.id = o->id, .size = o->size, .task = o->producer, .job = o->job,
                         .error = o->error ? o->error->msg : NULL};
    rec.state = o->state == OBJ_READY ? LM_OBJ_READY : o->state == OBJ_FAILED ? LM_OBJ_FAILED : LM_OBJ_PENDING;
    sched_writer_obj(s->writer, &rec);
}

/* The first live store among ids, or NULL. */
static snode *live_store(scheduler *s, const lm_id *ids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        snode *store = lm_idmap_get(s->nodes, ids[i]);
        if (store != NULL && store->alive && !store->is_worker) return store;
    }
    return NULL;
}

/* Where the stores' directory says object `id` is (the resolver's answer). */
void objects_found(scheduler *s, lm_id id, const lm_id *stores, size_t n, outbox *out) {
    snode *store = live_store(s, stores, n);
    sobj *o = lm_idmap_get(s->objs, id);
    stask *t = o != NULL && !lm_id_is_zero(o->producer) ? lm_idmap_get(s->tasks, o->producer) : NULL;
    if (t != NULL && t->phase == TASK_RESOLVING) { /* a task sent again after a restart */
        if (store != NULL) {
            task_finished(s, t, out);
            obj_set_stored(s, o, store, 0, out);
            obj_maybe_release(s, o, out);
        } else if (!s->recovering) { /* not made, or lost: it runs (again) */
            t->phase = TASK_WAITING;
            if (t->unresolved == 0) ready_push(s, t);
        } /* else: its store may not have registered yet; asked again when the window ends */
    } else if (o != NULL && o->unresolved && store != NULL) {
        obj_set_stored(s, o, store, 0, out); /* someone's put, or a result made before a restart */
    } else if (o == NULL && store != NULL) {
        ptr_vec *early = lm_idmap_get(s->unknown_waiters, id);
        waiter *w = early != NULL && early->n > 0 ? early->items[0] : NULL;
        if (w != NULL) { /* a wait for another client's put: known from now on, with the waiter's job */
            sjob *j = lm_id_is_zero(w->job) ? NULL : lm_idmap_get(s->jobs, w->job);
            sobj *found = obj_new(s, id, j ? j->id : (lm_id){{0}});
            obj_set_stored(s, found, store, 0, out);
            if (j != NULL) sched_id_push(&j->objs, id);
            else lm_idmap_remove(s->objs, id), obj_free(found); /* nobody's to keep */
        }
    }
}

/* Ids a job freed before they existed here, at most (a client's mistake
 * must not grow it for the job's life). */
#define FREED_EARLY_MAX (1u << 20)

void objects_free(scheduler *s, const lm_id *job, const ProtobufCBinaryData *ids, size_t n, outbox *out) {
    static char mark;
    sjob *j = job != NULL ? lm_idmap_get(s->jobs, *job) : NULL;
    for (size_t i = 0; i < n; i++) {
        lm_id id;
        if (!id_field(ids[i], &id)) continue;
        sobj *o = lm_idmap_get(s->objs, id);
        if (o == NULL && j != NULL && (j->freed_early == NULL || lm_idmap_count(j->freed_early) < FREED_EARLY_MAX)) {
            if (j->freed_early == NULL) j->freed_early = lm_idmap_new();
            lm_idmap_put(j->freed_early, id, &mark); /* not here yet: dropped when it comes */
        }
        if (o == NULL) continue;
        o->freed = true;
        obj_maybe_release(s, o, out);
    }
}

/*
 * placement.c - the placement policy: which worker a ready task goes to.
 * Next to its biggest argument if that worker has a free slot, else the
 * least loaded worker with room in its queue; actors are spread. It only
 * reads the state.
 */
#include "sched_internal.h"

sobj *sched_arg_obj(scheduler *s, const Lumen__Arg *a) {
    lm_id id;
    if (a->value_case != LUMEN__ARG__VALUE_REF || !id_field(a->ref, &id)) return NULL;
    return lm_idmap_get(s->objs, id);
}

/* The object store holding the task's biggest argument, if any. */
static lm_id preferred_store(scheduler *s, const stask *t) {
    lm_id best = {{0}};
    uint64_t best_size = 0;
    for (size_t i = 0; i < t->spec->n_args; i++) {
        sobj *o = sched_arg_obj(s, t->spec->args[i]);
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
snode *placement_pick(scheduler *s, const stask *t) {
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

/*
 * tasks.c - a task's life in the scheduler: admission (its arguments
 * pinned, placeholders made for refs not seen), the ready queue, failure
 * down the graph, retries, holding a task whose argument could not be read,
 * lineage (a finished task run again when its result was lost), and the
 * outcomes workers report.
 */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "input_limits.h"
#include "log.h"
#include "sched_internal.h"

void ready_push(scheduler *s, stask *t) {
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
static void task_unpin_args(scheduler *s, stask *t, outbox *cleanup) {
    for (size_t i = 0; i < t->spec->n_args; i++) {
        sobj *o = sched_arg_obj(s, t->spec->args[i]);
        if (o != NULL && o->pins > 0) {
            o->pins--;
            obj_maybe_release(s, o, cleanup);
        }
    }
}

void sched_task_free(stask *t) {
    spec_free(t->spec);
    free(t);
}

void task_resolved_arg(scheduler *s, lm_id task_id) {
    stask *t = lm_idmap_get(s->tasks, task_id);
    if (t == NULL || !task_waits(t) || t->unresolved == 0) return;
    if (--t->unresolved == 0 && t->phase == TASK_WAITING) ready_push(s, t);
}

void task_fail(scheduler *s, stask *t, lumen_status st, outbox *out) {
    if (t->phase == TASK_DONE) return;
    if (t->phase == TASK_READY) sched_ready_remove(s, t);
    t->phase = TASK_DONE;
    sched_record_task(s, t, LM_TASK_FAILED, st.msg);
    task_unpin_args(s, t, NULL);
    sobj *o = lm_idmap_get(s->objs, lm_id_for_return(t->id, 0));
    if (o != NULL) obj_set_failed(s, o, st, out);
    if (is_actor_creation(t->spec)) actors_created(s, t, st, t->worker, out);
}

/* A task is finished without running (again): its result is known. */
void task_finished(scheduler *s, stask *t, outbox *cleanup) {
    if (t->phase == TASK_READY) sched_ready_remove(s, t);
    t->phase = TASK_DONE;
    sched_record_task(s, t, LM_TASK_FINISHED, NULL);
    task_unpin_args(s, t, cleanup);
}

/* Pins every ref argument of t again (it was finished); counts those
 * still pending. */
static void task_pin_args(scheduler *s, stask *t) {
    t->unresolved = 0;
    for (size_t i = 0; i < t->spec->n_args; i++) {
        sobj *o = sched_arg_obj(s, t->spec->args[i]);
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
bool arg_failed(scheduler *s, const stask *t, lumen_status *why) {
    char h[LM_ID_HEX_LEN + 1];
    for (size_t i = 0; i < t->spec->n_args; i++) {
        const Lumen__Arg *a = t->spec->args[i];
        if (a->value_case != LUMEN__ARG__VALUE_REF) continue;
        sobj *o = sched_arg_obj(s, a);
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
void task_rearm(scheduler *s, stask *t, const char *why, outbox *out) {
    lumen_status bad;
    if (arg_failed(s, t, &bad)) {
        sched_record_task(s, t, LM_TASK_FAILED, bad.msg); /* it stays finished; its result fails */
        sobj *result = lm_idmap_get(s->objs, lm_id_for_return(t->id, 0));
        if (result != NULL) obj_set_failed(s, result, bad, out);
        return;
    }
    t->phase = TASK_WAITING;
    task_pin_args(s, t);
    sched_record_task(s, t, LM_TASK_READY, why);
    if (t->unresolved == 0) ready_push(s, t);
}

/* Whether one of t's arguments is being rebuilt (lost, its producer re-run). */
static bool arg_rebuilding(scheduler *s, const stask *t) {
    for (size_t i = 0; i < t->spec->n_args; i++) {
        sobj *o = sched_arg_obj(s, t->spec->args[i]);
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
    t->held_until_ms = sched_now_ms(s) + (uint64_t)s->cfg->scheduler.heartbeat_interval_ms;
    sched_record_task(s, t, LM_TASK_READY, why);
    sched_id_push(&s->held, t->id);
}

/* Held tasks go on: those whose moment passed, or all (a store died:
 * their arguments may be being rebuilt, then they wait for them). */
void tasks_release_held(scheduler *s, bool all, outbox *out) {
    uint64_t now = sched_now_ms(s);
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
        spec_free(spec);
        return st;
    }
    if (lm_idmap_get(s->tasks, id) != NULL) { /* a resubmission: tasks are idempotent */
        spec_free(spec);
        return lm_ok();
    }
    if (!resubmit && !jobs_current(s, job, 0)) { /* we restarted since it began */
        spec_free(spec);
        return jobs_unknown(job);
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
        sched_record_task(s, t, LM_TASK_FINISHED, NULL);
        return lm_ok();
    }
    sched_record_task(s, t, LM_TASK_PENDING, NULL);
    sched_record_obj(s, result);

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
    sched_record_task(s, t, LM_TASK_READY, why);
    ready_push(s, t);
}

/* An outcome the scheduler has no task for: an actor method call (not
 * placed here), or a task a restarted scheduler has not seen again yet. Its
 * result object appears (or a placeholder a task waits on settles); a
 * task's failure is left to its re-run. */
static void unplaced_result(scheduler *s, lm_id node, const Lumen__TaskResult *r, lm_id task, outbox *out) {
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
    obj_maybe_release(s, o, out);
}

/* Marks a finished task's result and wakes what waits for it. */
void task_done(scheduler *s, lm_id node, const Lumen__TaskResult *r, outbox *out) {
    lm_id id;
    if (!id_field(r->task_id, &id)) return;
    stask *t = r->actor_id.len > 0 ? NULL : lm_idmap_get(s->tasks, id);
    if (r->actor_id.len == 0) recovery_result_reported(s, id);
    if (t == NULL) {
        unplaced_result(s, node, r, id, out);
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
        if (code == LUMEN_OK && is_actor_creation(t->spec)) actors_orphan_created(s, t, out);
        lm_idmap_remove(s->tasks, id);
        sched_task_free(t);
        return;
    }
    if (code == LUMEN_OBJECT_LOST && arg_rebuilding(s, t) && t->attempts <= t->max_retries) {
        task_unpin_args(s, t, out); /* it read an argument that was lost: again once rebuilt */
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
    task_finished(s, t, out);
    if (is_actor_creation(t->spec)) actors_created(s, t, lm_ok(), node, out);
    sobj *o = lm_idmap_get(s->objs, lm_id_for_return(id, 0));
    if (o == NULL) return;
    obj_set_result(s, o, r, out);
    obj_maybe_release(s, o, out); /* freed while it ran */
}

void sched_record_task(scheduler *s, const stask *t, lm_task_state state, const char *error) {
    lm_task_record rec = {.id = t->id, .fn = t->spec ? t->spec->function : "", .job = t->job,
                          .state = state, .worker = t->worker, .attempts = t->attempts, .error = error,
                          .submitted_ms = t->submitted_ms};
    if (state == LM_TASK_FINISHED || state == LM_TASK_FAILED) rec.finished_ms = lm_wall_ms();
    sched_writer_task(s->writer, &rec);
}

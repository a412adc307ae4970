/*
 * recovery.c - a scheduler incarnation taking over from the previous one
 * (docs/reliability.md, "The restart protocol").
 *
 * A scheduler keeps its state in memory and writes records behind to
 * Redis; when it dies, the state that matters lives on with the others:
 * nodes hold the tasks they run and the actors they host, object stores
 * hold objects (and list them in Redis), clients hold the specs of their
 * tasks. A new incarnation:
 *
 *  1. takes an epoch (INCR in Redis), carried by every call it makes, so
 *     nodes tell its calls from a replaced incarnation's;
 *  2. reads what Redis says the previous one had: the nodes alive, the
 *     jobs running, the actors alive;
 *  3. opens a recovery window: nothing is placed until every node alive
 *     before has registered again (or heartbeat_timeout_ms passed: it
 *     died too). A node registers with the tasks it holds and the actors
 *     it hosts; a task a client sends again that a node holds is taken as
 *     running there ("claimed"), so no task runs twice at once;
 *  4. when the window ends, jobs found in Redis that no client has claimed
 *     start their grace (jobs.c), actors whose worker did not come back
 *     restart, and tasks sent again that no store holds a result of run.
 *
 * Steps 1 and 2 read Redis (scheduler.c, before serving); the rest is
 * here, in the engine.
 */
#include "clock.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sched_internal.h"

static char mark;

void recovery_begin(scheduler *s, uint64_t epoch, const lm_id *alive, size_t n, size_t njobs, size_t nactors) {
    s->epoch = epoch;
    for (size_t i = 0; i < n; i++) lm_idmap_put(s->expected, alive[i], &mark);
    size_t waiting = lm_idmap_count(s->expected);
    s->recovering = waiting > 0;
    s->recovery_ends_ms = sched_now_ms(s) + (uint64_t)s->cfg->scheduler.heartbeat_timeout_ms;
    if (waiting > 0 || njobs > 0 || nactors > 0)
        lm_info("incarnation %llu: waiting up to %lld ms for %zu node(s) of the previous one to register; "
                "%zu job(s) and %zu actor(s) were running",
                (unsigned long long)s->epoch, (long long)s->cfg->scheduler.heartbeat_timeout_ms, waiting, njobs,
                nactors);
    else
        lm_info("incarnation %llu", (unsigned long long)s->epoch);
}

/* A task a node holds, known here already: it runs there, unless it was
 * placed elsewhere or finished meanwhile (then the node drops it). */
static void claim_known(scheduler *s, stask *t, snode *n, id_vec *drop) {
    switch (t->phase) {
    case TASK_RUNNING:
        if (!lm_id_equal(t->worker, n->id)) sched_id_push(drop, t->id);
        return;
    case TASK_DONE:
        sched_id_push(drop, t->id);
        return;
    case TASK_READY:
        sched_ready_remove(s, t);
        sched_task_running_on(s, t, n);
        return;
    case TASK_WAITING:
    case TASK_HELD:
    case TASK_RESOLVING:
        sched_task_running_on(s, t, n);
        return;
    }
}

void recovery_node_registered(scheduler *s, snode *n, const Lumen__RegisterNodeRequest *req, id_vec *drop,
                              outbox *out) {
    lm_idmap_remove(s->expected, n->id);
    for (size_t i = 0; n->is_worker && i < req->n_held_tasks; i++) {
        lm_id id, job = {{0}};
        if (!id_field(req->held_tasks[i], &id)) continue;
        stask *t = lm_idmap_get(s->tasks, id);
        if (t != NULL) {
            claim_known(s, t, n, drop);
            continue;
        }
        if (i < req->n_held_task_jobs) id_field(req->held_task_jobs[i], &job);
        if (!lm_id_is_zero(job) && sched_job_ended(s, job)) { /* nobody will read its result */
            sched_id_push(drop, id);
            continue;
        }
        sclaim *c = lm_idmap_get(s->claims, id);
        if (c == NULL && (c = malloc(sizeof *c)) == NULL) continue; /* then it may run twice: no worse */
        *c = (sclaim){n->id, job};
        lm_idmap_put(s->claims, id, c);
    }
    if (n->is_worker) actors_node_registered(s, n, req, out);
    recovery_check(s, out);
}

bool recovery_claimed(scheduler *s, stask *t) {
    sclaim *c = lm_idmap_remove(s->claims, t->id);
    if (c == NULL) return false;
    snode *n = lm_idmap_get(s->nodes, c->node);
    free(c);
    if (n == NULL || !n->alive) return false;
    sched_task_running_on(s, t, n);
    return true;
}

typedef struct claim_sweep {
    lm_id node, job; /* the claims of a node, or of a job */
    bool by_job;
    id_vec gone;
} claim_sweep;

static void collect_claims(void *arg, lm_id key, void *value) {
    claim_sweep *sw = arg;
    const sclaim *c = value;
    if (sw->by_job ? lm_id_equal(c->job, sw->job) : lm_id_equal(c->node, sw->node)) sched_id_push(&sw->gone, key);
}

void recovery_node_lost(scheduler *s, snode *n) {
    if (lm_idmap_count(s->claims) == 0) return;
    claim_sweep sw = {.node = n->id};
    lm_idmap_each(s->claims, collect_claims, &sw);
    for (size_t i = 0; i < sw.gone.n; i++) free(lm_idmap_remove(s->claims, sw.gone.ids[i]));
    free(sw.gone.ids);
}

void recovery_job_ended(scheduler *s, lm_id job, outbox *out) {
    if (lm_idmap_count(s->claims) == 0) return;
    claim_sweep sw = {.job = job, .by_job = true};
    lm_idmap_each(s->claims, collect_claims, &sw);
    for (size_t i = 0; i < sw.gone.n; i++) {
        sclaim *c = lm_idmap_remove(s->claims, sw.gone.ids[i]);
        snode *n = lm_idmap_get(s->nodes, c->node);
        if (n != NULL && n->alive) sched_cancel_on(s, n, sw.gone.ids[i], out);
        free(c);
    }
    free(sw.gone.ids);
}

void recovery_result_reported(scheduler *s, lm_id task) {
    if (lm_idmap_count(s->claims) > 0) free(lm_idmap_remove(s->claims, task));
}

static void start_grace(void *arg, lm_id key, void *value) {
    (void)key;
    sjob *j = value;
    if (!j->detached && j->lease == NULL) j->unheld_since_ms = *(uint64_t *)arg;
}

void recovery_check(scheduler *s, outbox *out) {
    if (!s->recovering) return;
    size_t missing = lm_idmap_count(s->expected);
    uint64_t now = sched_now_ms(s);
    if (missing > 0 && now < s->recovery_ends_ms) return;
    s->recovering = false;
    if (missing > 0)
        lm_warn("incarnation %llu: %zu node(s) of the previous one did not register again; going on without them",
                (unsigned long long)s->epoch, missing);
    else
        lm_info("incarnation %llu: every node is back", (unsigned long long)s->epoch);
    lm_idmap_each(s->jobs, start_grace, &now);
    sched_recovered(s, out);
    actors_recovered(s, out);
    sched_dispatch(s, out);
}

/*
 * jobs.c - a job's life in the scheduler: StartJob, EndJob, and the lease
 * that ties a job to its client.
 *
 * A job lives as long as its client: the client keeps one WatchJob call
 * open (answered after a lease, then opened again, like a node's
 * WatchNode). When that call is cancelled - the client's process died, its
 * connection broke - the job is "unheld"; if no client holds it again
 * within scheduler.job_grace_ms it ends as if closed: its tasks are
 * cancelled, its objects released in every store, its record finished.
 * The grace rides out a scheduler restart (the client resends its job and
 * opens its lease again); the time a scheduler is away does not count,
 * because a new incarnation starts the grace of the jobs it found running
 * in Redis only when its recovery window ends. A detached job has no lease
 * and ends by EndJob only (`lumen job stop`).
 *
 * Ended jobs are remembered (the last ENDED_JOBS_MAX), so a client that
 * comes back after its job ended hears so instead of starting it again.
 */
#include "clock.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "objstore.pb-c.h"
#include "sched_internal.h"
#include "worker.pb-c.h"

static void lease_free(void *arg) { free(arg); }

static void lease_reply_free(ProtobufCMessage *m) { free(m); }

/* Ends a lease with OK (renewal, or its job ended). mu held. */
static void lease_end(job_lease *l, outbox *out) {
    l->done = true;
    Lumen__WatchJobReply *reply = malloc(sizeof *reply);
    lumen__watch_job_reply__init(reply);
    reply->lease_ms = JOB_LEASE_MS;
    sched_outbox_add(out, (answer){l->call, &reply->base, lease_reply_free, lm_ok(), lease_free, l});
}

sjob *sched_job_get(scheduler *s, lm_id id) {
    sjob *j = lm_idmap_get(s->jobs, id);
    if (j == NULL) {
        j = calloc(1, sizeof *j);
        j->id = id;
        j->unheld_since_ms = sched_now_ms(s); /* until its client says StartJob and holds it */
        lm_idmap_put(s->jobs, id, j);
    }
    return j;
}

bool sched_job_ended(const scheduler *s, lm_id id) { return lm_idmap_get(s->ended_jobs, id) != NULL; }

static void remember_ended(scheduler *s, lm_id id) {
    static char mark;
    lm_id *slot = &s->ended_ring[s->ended_next++ % ENDED_JOBS_MAX];
    if (!lm_id_is_zero(*slot)) lm_idmap_remove(s->ended_jobs, *slot);
    *slot = id;
    lm_idmap_put(s->ended_jobs, id, &mark);
}

/* Asks t's worker to stop it, queued or running: no one will read its
 * result now. Its report (CANCELLED) frees it here. Constructors are left
 * to finish: actors_orphan_created stops what they made. */
void sched_cancel_on(scheduler *s, const snode *w, lm_id task, outbox *out) {
    Lumen__CancelTaskRequest req = LUMEN__CANCEL_TASK_REQUEST__INIT;
    req.task_id = id_bytes(&task);
    req.epoch = s->epoch;
    sched_outbox_request(out, SCHED_CANCEL_TASK, w->addr, &req.base, NULL);
}

static void cancel_orphan(scheduler *s, const stask *t, outbox *out) {
    snode *w = lm_idmap_get(s->nodes, t->worker);
    if (w == NULL || !w->alive || is_actor_creation(t->spec)) return;
    sched_cancel_on(s, w, t->id, out);
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
        if (t->phase != TASK_DONE) sched_record_task(s, t, LM_TASK_FAILED, "cancelled: its job ended before it finished");
        if (t->phase == TASK_RUNNING) {
            t->orphan = true; /* freed when its worker reports */
            cancel_orphan(s, t, out);
            continue;
        }
        if (t->phase == TASK_READY) sched_ready_remove(s, t);
        lm_idmap_remove(s->tasks, t->id);
        sched_task_free(t);
    }
}

/* Every live store lets go of the job's objects. */
static void release_in_stores(scheduler *s, lm_id job, outbox *out) {
    Lumen__ReleaseJobRequest rel = LUMEN__RELEASE_JOB_REQUEST__INIT;
    rel.job_id = id_bytes(&job);
    for (size_t i = 0; i < s->node_list.n; i++) {
        snode *n = s->node_list.items[i];
        if (!n->is_worker && n->alive) sched_outbox_request(out, SCHED_RELEASE_JOB, n->addr, &rel.base, NULL);
    }
}

/* Ends a job here and in every store (sends are asynchronous). mu held. */
static void job_end(scheduler *s, sjob *j, outbox *out) {
    lm_idmap_remove(s->jobs, j->id);
    if (j->lease != NULL) {
        lease_end(j->lease, out);
        j->lease = NULL;
    }
    uint64_t ntasks = j->tasks.n;
    sched_job_forget(s, j, out);
    recovery_job_ended(s, j->id, out);
    remember_ended(s, j->id);
    release_in_stores(s, j->id, out);
    sched_writer_job_end(s->writer, j->id, ntasks);
    sched_job_free(j);
}

static lumen_status ended_status(lm_id id) {
    char h[LM_ID_HEX_LEN + 1];
    return lm_status(LUMEN_ABORTED, "job %s has ended (closed, stopped, or its client was away too long)",
                     hex(id, h));
}

lumen_status jobs_start(scheduler *s, lm_id id, bool detached) {
    if (sched_job_ended(s, id)) return ended_status(id);
    sjob *j = sched_job_get(s, id);
    bool first = !j->started;
    j->started = true;
    j->detached = j->detached || detached;
    if (j->detached) j->unheld_since_ms = 0;
    if (first) sched_writer_job_start(s->writer, id, j->detached);
    return lm_ok();
}

void jobs_end(scheduler *s, lm_id id, outbox *out) {
    sjob *j = lm_idmap_get(s->jobs, id);
    if (j != NULL) {
        job_end(s, j, out);
    } else if (!sched_job_ended(s, id)) { /* unknown here (a restart): its stores and record still end */
        remember_ended(s, id);
        release_in_stores(s, id, out);
        sched_writer_job_end(s->writer, id, 0);
    }
}

job_lease *jobs_lease_new(scheduler *s, lm_rpc_call *call, lm_id job) {
    job_lease *l = calloc(1, sizeof *l);
    if (l != NULL) *l = (job_lease){s, call, job, sched_now_ms(s) + JOB_LEASE_MS, false};
    return l;
}

lumen_status jobs_lease_check(const scheduler *s, lm_id id) {
    const sjob *j = lm_idmap_get(s->jobs, id);
    if (j != NULL && j->started) return lm_ok();
    if (sched_job_ended(s, id)) return ended_status(id);
    return jobs_unknown(id);
}

lumen_status jobs_unknown(lm_id id) {
    char h[LM_ID_HEX_LEN + 1];
    return lm_status(LUMEN_FAILED_PRECONDITION, "job %s is unknown to this scheduler (it restarted): send it again",
                     hex(id, h));
}

bool jobs_current(const scheduler *s, lm_id id, uint64_t epoch) {
    const sjob *j = lm_idmap_get(s->jobs, id);
    return j != NULL && j->started && (epoch == 0 || epoch == s->epoch);
}

void jobs_lease_hold(scheduler *s, job_lease *l, outbox *out) {
    sjob *j = lm_idmap_get(s->jobs, l->job);
    if (j->lease != NULL) lease_end(j->lease, out);
    j->lease = l;
    j->unheld_since_ms = 0;
}

bool jobs_lease_cancelled(scheduler *s, job_lease *l) {
    if (l->done) return false; /* the answer under way frees it */
    l->done = true;
    sjob *j = lm_idmap_get(s->jobs, l->job);
    if (j != NULL && j->lease == l) {
        j->lease = NULL;
        if (!j->detached && !s->stopping) {
            j->unheld_since_ms = sched_now_ms(s);
            char h[LM_ID_HEX_LEN + 1];
            lm_info("job %s: its client went away; it ends in %llu ms unless the client comes back", hex(l->job, h),
                    (unsigned long long)s->job_grace_ms);
        }
    }
    return true;
}

typedef struct expiry {
    scheduler *s;
    uint64_t now;
    ptr_vec ended;
} expiry;

static void collect_expired(void *arg, lm_id key, void *value) {
    (void)key;
    expiry *e = arg;
    sjob *j = value;
    if (!j->detached && j->lease == NULL && j->unheld_since_ms != 0 &&
        e->now - j->unheld_since_ms >= e->s->job_grace_ms)
        sched_ptr_push(&e->ended, j);
}

void jobs_expire(scheduler *s, outbox *out) {
    if (s->recovering) return; /* clients may be on their way back */
    expiry e = {s, sched_now_ms(s), {0}};
    lm_idmap_each(s->jobs, collect_expired, &e);
    for (size_t i = 0; i < e.ended.n; i++) {
        sjob *j = e.ended.items[i];
        char h[LM_ID_HEX_LEN + 1];
        lm_warn("job %s ends: no client has held it for %llu ms (its client died without lumen_close?)",
                hex(j->id, h), (unsigned long long)(e.now - j->unheld_since_ms));
        job_end(s, j, out);
    }
    free(e.ended.items);
}

typedef struct renewal {
    scheduler *s;
    uint64_t now;
    outbox *out;
} renewal;

static void renew_one(void *arg, lm_id key, void *value) {
    (void)key;
    renewal *r = arg;
    sjob *j = value;
    if (j->lease != NULL && (r->now >= j->lease->ends_ms || r->s->stopping)) {
        lease_end(j->lease, r->out);
        j->lease = NULL;
        /* The client opens the next one at once; a client that died just
         * now does not, and the grace runs from here. */
        if (!j->detached) j->unheld_since_ms = r->now;
    }
}

void jobs_renew_leases(scheduler *s, outbox *out) {
    renewal r = {s, sched_now_ms(s), out};
    lm_idmap_each(s->jobs, renew_one, &r);
}

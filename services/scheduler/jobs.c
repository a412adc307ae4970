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

/* The client's lease is renewed this often (its call answered, then made again). */
#define LEASE_MS 30000

typedef struct job_lease {
    scheduler *s;
    lm_rpc_call *call;
    lm_id job;
    uint64_t ends_ms; /* monotonic */
    bool done;        /* answered, or being answered */
} job_lease;

static void lease_free(void *arg) { free(arg); }

static void lease_reply_free(ProtobufCMessage *m) { free(m); }

/* Ends a lease with OK (renewal, or its job ended). mu held. */
static void lease_end(job_lease *l, outbox *out) {
    l->done = true;
    Lumen__WatchJobReply *reply = malloc(sizeof *reply);
    lumen__watch_job_reply__init(reply);
    reply->lease_ms = LEASE_MS;
    sched_outbox_add(out, (answer){l->call, &reply->base, lease_reply_free, lm_ok(), lease_free, l});
}

bool sched_job_ended(const scheduler *s, lm_id id) { return lm_idmap_get(s->ended_jobs, id) != NULL; }

static void remember_ended(scheduler *s, lm_id id) {
    static char mark;
    lm_id *slot = &s->ended_ring[s->ended_next++ % ENDED_JOBS_MAX];
    if (!lm_id_is_zero(*slot)) lm_idmap_remove(s->ended_jobs, *slot);
    *slot = id;
    lm_idmap_put(s->ended_jobs, id, &mark);
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
    recovery_job_ended(s, j->id);
    remember_ended(s, j->id);
    Lumen__ReleaseJobRequest rel = LUMEN__RELEASE_JOB_REQUEST__INIT;
    rel.job_id = id_bytes(&j->id);
    for (size_t i = 0; i < s->node_list.n; i++) {
        snode *n = s->node_list.items[i];
        if (!n->is_worker && n->alive) sched_send_and_forget(s, n->addr, s->release_job, &rel.base, "object store cleanup");
    }
    sched_writer_job_end(s->writer, j->id, ntasks);
    sched_job_free(j);
}

static lumen_status ended_status(lm_id id) {
    char h[LM_ID_HEX_LEN + 1];
    return lm_status(LUMEN_ABORTED, "job %s has ended (closed, stopped, or its client was away too long)",
                     hex(id, h));
}

void jobs_handle_start(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    const Lumen__JobRequest *req = (const Lumen__JobRequest *)msg;
    lm_id id;
    if (!id_field(req->job_id, &id)) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "StartJob needs a 16-byte job_id");
        return;
    }
    pthread_mutex_lock(&s->mu);
    if (sched_job_ended(s, id)) {
        pthread_mutex_unlock(&s->mu);
        lm_rpc_fail_status(call, ended_status(id));
        return;
    }
    sjob *j = sched_job_get(s, id);
    bool first = !j->started;
    j->started = true;
    j->detached = j->detached || req->detached;
    if (j->detached) j->unheld_since_ms = 0;
    if (first) sched_writer_job_start(s->writer, id, j->detached);
    pthread_mutex_unlock(&s->mu);
    Lumen__JobReply reply = LUMEN__JOB_REPLY__INIT;
    reply.epoch = s->epoch;
    lm_rpc_reply(call, &reply.base);
}

void jobs_handle_end(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    const Lumen__JobRequest *req = (const Lumen__JobRequest *)msg;
    lm_id id;
    if (!id_field(req->job_id, &id)) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "EndJob needs a 16-byte job_id");
        return;
    }
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    sjob *j = lm_idmap_get(s->jobs, id);
    if (j != NULL) {
        job_end(s, j, &out);
    } else if (!sched_job_ended(s, id)) { /* unknown here (a restart): its stores and record still end */
        remember_ended(s, id);
        Lumen__ReleaseJobRequest rel = LUMEN__RELEASE_JOB_REQUEST__INIT;
        rel.job_id = id_bytes(&id);
        for (size_t i = 0; i < s->node_list.n; i++) {
            snode *n = s->node_list.items[i];
            if (!n->is_worker && n->alive) sched_send_and_forget(s, n->addr, s->release_job, &rel.base, "object store cleanup");
        }
        sched_writer_job_end(s->writer, id, 0);
    }
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(&out);
    Lumen__JobReply reply = LUMEN__JOB_REPLY__INIT;
    reply.epoch = s->epoch;
    lm_rpc_reply(call, &reply.base);
}

static void on_lease_cancel(lm_rpc_call *call, void *arg) {
    job_lease *l = arg;
    scheduler *s = l->s;
    pthread_mutex_lock(&s->mu);
    bool mine = !l->done;
    if (mine) {
        l->done = true;
        sjob *j = lm_idmap_get(s->jobs, l->job);
        if (j != NULL && j->lease == l) {
            j->lease = NULL;
            if (!j->detached && !s->stopping) {
                j->unheld_since_ms = lm_mono_ms();
                char h[LM_ID_HEX_LEN + 1];
                lm_info("job %s: its client went away; it ends in %llu ms unless the client comes back", hex(l->job, h),
                        (unsigned long long)s->job_grace_ms);
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (!mine) return; /* the answer under way frees it */
    lm_rpc_fail(call, LUMEN_CANCELLED, "the job's lease was cancelled");
    free(l);
}

void jobs_handle_watch(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    const Lumen__WatchJobRequest *req = (const Lumen__WatchJobRequest *)msg;
    lm_id id;
    if (!id_field(req->job_id, &id)) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "WatchJob needs a 16-byte job_id");
        return;
    }
    job_lease *l = calloc(1, sizeof *l);
    if (l == NULL) {
        lm_rpc_fail(call, LUMEN_RESOURCE_EXHAUSTED, "the scheduler is out of memory");
        return;
    }
    *l = (job_lease){s, call, id, lm_mono_ms() + LEASE_MS, false};
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    sjob *j = lm_idmap_get(s->jobs, id);
    if (j == NULL || !j->started) {
        char h[LM_ID_HEX_LEN + 1];
        lumen_status st = sched_job_ended(s, id) ? ended_status(id)
                                                  : lm_status(LUMEN_FAILED_PRECONDITION,
                                                              "job %s is unknown to this scheduler (it restarted): "
                                                              "send it again", hex(id, h));
        sched_outbox_fail(&out, call, st);
        free(l);
    } else if (!lm_rpc_call_on_cancel(call, on_lease_cancel, l)) {
        sched_outbox_fail(&out, call, lm_status(LUMEN_CANCELLED, "the job's lease was cancelled"));
        free(l);
    } else {
        if (j->lease != NULL) lease_end(j->lease, &out);
        j->lease = l;
        j->unheld_since_ms = 0;
    }
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(&out);
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
    expiry e = {s, lm_mono_ms(), {0}};
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
    renewal r = {s, lm_mono_ms(), out};
    lm_idmap_each(s->jobs, renew_one, &r);
}

/*
 * service_jobs.c - the jobs' methods of lumen.Scheduler (StartJob, EndJob,
 * WatchJob): decoded here, decided in jobs.c. A WatchJob call is a lease:
 * held until it is renewed, its job ends, or it is cancelled (its client
 * went away).
 */
#include <stdlib.h>

#include "rpc.h"
#include "sched_internal.h"

static void reply_epoch(scheduler *s, lm_rpc_call *call) {
    Lumen__JobReply reply = LUMEN__JOB_REPLY__INIT;
    reply.epoch = s->epoch;
    lm_rpc_reply(call, &reply.base);
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
    lumen_status st = jobs_start(s, id, req->detached);
    pthread_mutex_unlock(&s->mu);
    if (LM_IS_OK(st)) reply_epoch(s, call);
    else lm_rpc_fail_status(call, st);
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
    jobs_end(s, id, &out);
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(s, &out);
    reply_epoch(s, call);
}

static void on_lease_cancel(lm_rpc_call *call, void *arg) {
    job_lease *l = arg;
    scheduler *s = l->s;
    pthread_mutex_lock(&s->mu);
    bool mine = jobs_lease_cancelled(s, l);
    pthread_mutex_unlock(&s->mu);
    if (!mine) return;
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
    job_lease *l = jobs_lease_new(s, call, id);
    if (l == NULL) {
        lm_rpc_fail(call, LUMEN_RESOURCE_EXHAUSTED, "the scheduler is out of memory");
        return;
    }
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    /* on_cancel is set under mu, so it cannot run before the lease holds. */
    lumen_status st = jobs_lease_check(s, id);
    if (LM_IS_OK(st) && !lm_rpc_call_on_cancel(call, on_lease_cancel, l))
        st = lm_status(LUMEN_CANCELLED, "the job's lease was cancelled");
    if (LM_IS_OK(st)) {
        jobs_lease_hold(s, l, &out);
    } else {
        sched_outbox_fail(&out, call, st);
        free(l);
    }
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(s, &out);
}

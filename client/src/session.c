/*
 * session.c - a client's session with the scheduler: its job, its
 * submissions, and what it sends a scheduler that restarted.
 *
 * Everything the session sends goes through one pipeline with one call in
 * flight at a time (session_pump_locked), so the scheduler sees it in the
 * order it was made:
 *
 *   1. establish: StartJob (GetClusterInfo for a client working in another's
 *      job), which answers the scheduler's incarnation (epoch);
 *   2. when the incarnation is new, every kept task that was sent before is
 *      sent again (resubmit), in submission order, so a task's producers
 *      arrive before it; then the actors' constructor calls, the frees the
 *      new incarnation missed, and the job's lease;
 *   3. then the tasks queued since, in order, each batch carrying the epoch:
 *      a batch meant for another incarnation is refused whole, and the
 *      session goes back to 1.
 *
 * The session is established again whenever a call finds the scheduler
 * away or without our job (session_lost_locked), and by a keeper thread
 * while no caller asks, so a client that waits on nothing keeps its job's
 * lease through a restart. The lease is one WatchJob call kept open: when
 * this process dies, its connection breaks and the scheduler ends the job
 * after a grace (unless the job is detached).
 */
#include "clock.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client_internal.h"
#include "scheduler.pb-c.h"
#include "process.h"

#define SUBMIT_BATCH_MAX 4096
#define KEEPER_MIN_MS 50
#define KEEPER_MAX_MS 1000

static void kept_free(kept_task *k) {
    if (k == NULL) return;
    lm_rpc_message_free(&k->spec->base);
    free(k);
}

bool session_scheduler_forgot(lumen_status st) {
    return st.code == LUMEN_UNAVAILABLE || st.code == LUMEN_FAILED_PRECONDITION;
}

/* The job is gone for good (ended while we were away, or stopped). */
static void job_ended_locked(lumen_client *c, lumen_status st) {
    if (LM_IS_OK(c->job_error)) c->job_error = st;
    c->acked += c->npending; /* none of them will be taken */
    c->npending = 0;
    pthread_cond_broadcast(&c->acked_cond);
}

void session_lost_locked(lumen_client *c, lumen_status st, uint64_t epoch) {
    if (st.code == LUMEN_ABORTED && strstr(st.msg, "has ended") != NULL) {
        job_ended_locked(c, st);
        return;
    }
    if (!session_scheduler_forgot(st) || epoch != c->epoch || c->epoch == 0) return;
    c->epoch = 0; /* established again, by the next pump or the keeper */
    pthread_cond_signal(&c->keeper_cond);
}

/* ------------------------------------------------------------- lineage */

static kept_task *producer_of(lumen_client *c, lm_id result) {
    lm_id task = result;
    memset(task.bytes + 12, 0, 4); /* a result id is its task's id and a return number */
    return lm_idmap_get(c->kept, task);
}

/* For each ref argument of spec made by a kept task: delta to its consumers. */
static void count_consumers(lumen_client *c, const Lumen__TaskSpec *spec, int delta, kept_task **dropped,
                            size_t *ndropped);

/* Drops a kept task nothing needs any more, and with it what only it needed. */
static void maybe_drop(lumen_client *c, lm_id task) {
    kept_task *stack[64];
    size_t n = 0;
    kept_task *k = lm_idmap_get(c->kept, task);
    if (k == NULL || !k->freed || k->consumers > 0 || !k->sent) return;
    stack[n++] = k;
    while (n > 0) {
        k = stack[--n];
        lm_id id;
        lm_id_from_bytes(k->spec->task_id.data, k->spec->task_id.len, &id);
        lm_idmap_remove(c->kept, id);
        size_t room = sizeof stack / sizeof stack[0] - n;
        kept_task *more[64];
        size_t nmore = 0;
        count_consumers(c, k->spec, -1, more, &nmore);
        for (size_t i = 0; i < nmore && i < room; i++) stack[n++] = more[i];
        kept_free(k);
    }
}

static void count_consumers(lumen_client *c, const Lumen__TaskSpec *spec, int delta, kept_task **dropped,
                            size_t *ndropped) {
    for (size_t i = 0; i < spec->n_args; i++) {
        const Lumen__Arg *a = spec->args[i];
        lm_id ref;
        if (a->value_case != LUMEN__ARG__VALUE_REF || !lm_id_from_bytes(a->ref.data, a->ref.len, &ref)) continue;
        kept_task *p = producer_of(c, ref);
        if (p == NULL) continue;
        if (delta > 0) {
            p->consumers++;
        } else if (p->consumers > 0 && --p->consumers == 0 && p->freed && p->sent && dropped != NULL &&
                   *ndropped < 64) {
            dropped[(*ndropped)++] = p;
        }
    }
}

void session_forget_locked(lumen_client *c, lm_id result) {
    kept_task *k = producer_of(c, result);
    if (k == NULL) return;
    k->freed = true;
    lm_id task;
    lm_id_from_bytes(k->spec->task_id.data, k->spec->task_id.len, &task);
    maybe_drop(c, task);
}

/* ------------------------------------------------------------- sending */

void session_submit_locked(lumen_client *c, Lumen__TaskSpec *spec, lm_id task) {
    kept_task *k = calloc(1, sizeof *k);
    if (c->npending == c->cap_pending) {
        size_t cap = c->cap_pending ? 2 * c->cap_pending : 64;
        kept_task **p = realloc(c->pending, cap * sizeof *p);
        if (p != NULL) c->pending = p, c->cap_pending = cap;
    }
    if (k == NULL || c->npending == c->cap_pending) { /* its ref will say so */
        free(k);
        lm_rpc_message_free(&spec->base);
        if (LM_IS_OK(c->submit_error)) c->submit_error = lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    *k = (kept_task){.spec = spec, .seq = c->queued++};
    count_consumers(c, spec, +1, NULL, NULL);
    lm_idmap_put(c->kept, task, k);
    c->pending[c->npending++] = k;
    session_pump_locked(c);
}

typedef struct batch {
    lumen_client *c;
    uint64_t epoch;
    size_t n;       /* tasks */
    size_t resent;  /* kept tasks sent again: how far the resend moves when it is answered; 0: new tasks */
} batch;

static void on_submitted(void *arg, lumen_status st, ProtobufCMessage *reply) {
    batch *b = arg;
    lumen_client *c = b->c;
    Lumen__SubmitTasksReply *r = (Lumen__SubmitTasksReply *)reply;
    pthread_mutex_lock(&c->mu);
    c->submitting = false;
    /* A scheduler that is away or restarted gets these tasks again (they
     * are kept); any other failure is for good. */
    if (session_scheduler_forgot(st)) session_lost_locked(c, st, b->epoch);
    else if (!LM_IS_OK(st) && LM_IS_OK(c->submit_error)) c->submit_error = st;
    for (size_t i = 0; r != NULL && i < r->n_results; i++) {
        lumen_status ts = lm_status((lumen_code)r->results[i]->code, "task rejected: %s", r->results[i]->message);
        if (session_scheduler_forgot(ts)) session_lost_locked(c, ts, b->epoch);
        else if (ts.code != LUMEN_OK && LM_IS_OK(c->submit_error)) c->submit_error = ts;
    }
    if (b->resent > 0) {
        if (LM_IS_OK(st) && b->epoch == c->epoch) c->resend_pos += b->resent;
    } else {
        c->acked += b->n;
        c->in_flight = 0;
        pthread_cond_broadcast(&c->acked_cond);
    }
    if (c->epoch != 0) session_pump_locked(c); /* else the keeper, after a pause */
    pthread_mutex_unlock(&c->mu);
    lm_rpc_message_free(reply);
    free(b);
}

/* Sends specs[0..n) as one SubmitTasks (mu held); false when it could not
 * even be sent (then no callback comes). */
static bool send_batch(lumen_client *c, Lumen__TaskSpec **specs, size_t n, size_t resent) {
    batch *b = malloc(sizeof *b);
    if (b == NULL) return false;
    *b = (batch){c, c->epoch, n, resent};
    Lumen__SubmitTasksRequest req = LUMEN__SUBMIT_TASKS_REQUEST__INIT;
    req.n_tasks = n;
    req.tasks = specs;
    req.resubmit = resent > 0;
    req.job_id = (ProtobufCBinaryData){LM_ID_BYTES, c->job.bytes};
    req.epoch = c->epoch;
    c->submitting = true;
    /* Packed inside the call; the specs stay kept. */
    lumen_status st = lm_rpc_unary_async(c->rpc, c->address, c->submit, &req.base, c->timeout_ms, on_submitted, b);
    if (LM_IS_OK(st)) return true;
    c->submitting = false;
    free(b);
    if (LM_IS_OK(c->submit_error)) c->submit_error = st;
    return false;
}

/* The next batch of kept tasks to send again (skipping those freed since). */
static void send_resend(lumen_client *c) {
    size_t end = c->nresend - c->resend_pos > SUBMIT_BATCH_MAX ? c->resend_pos + SUBMIT_BATCH_MAX : c->nresend;
    Lumen__TaskSpec **specs = malloc((end - c->resend_pos) * sizeof *specs);
    if (specs == NULL) return; /* out of memory: the keeper tries again */
    size_t n = 0;
    for (size_t i = c->resend_pos; i < end; i++) {
        kept_task *k = lm_idmap_get(c->kept, c->resend[i]);
        if (k != NULL) specs[n++] = k->spec;
    }
    if (n == 0) c->resend_pos = end; /* all freed meanwhile */
    else if (!send_batch(c, specs, n, end - c->resend_pos)) c->epoch = 0;
    free(specs);
}

static void send_pending(lumen_client *c) {
    size_t n = c->npending < SUBMIT_BATCH_MAX ? c->npending : SUBMIT_BATCH_MAX;
    Lumen__TaskSpec **specs = malloc(n * sizeof *specs);
    if (specs == NULL) return;
    for (size_t i = 0; i < n; i++) {
        specs[i] = c->pending[i]->spec;
        c->pending[i]->sent = true;
    }
    c->in_flight = n;
    if (!send_batch(c, specs, n, 0)) { /* counted as answered: their refs report the error */
        c->acked += n;
        c->in_flight = 0;
        pthread_cond_broadcast(&c->acked_cond);
    }
    memmove(c->pending, c->pending + n, (c->npending - n) * sizeof *c->pending);
    c->npending -= n;
    free(specs);
}

/* ------------------------------------------------------------- establishing */

typedef struct kept_list {
    kept_task **items;
    size_t n;
} kept_list;

static void collect_sent(void *arg, lm_id key, void *value) {
    (void)key;
    kept_list *l = arg;
    kept_task *k = value;
    if (k->sent) l->items[l->n++] = k;
}

static int by_submission(const void *a, const void *b) {
    uint64_t x = (*(kept_task *const *)a)->seq, y = (*(kept_task *const *)b)->seq;
    return x < y ? -1 : x > y;
}

/* A new incarnation: every kept task sent before goes again, in order. */
static void plan_resend(lumen_client *c) {
    free(c->resend);
    c->resend = NULL;
    c->nresend = c->resend_pos = 0;
    kept_list all = {calloc(lm_idmap_count(c->kept) + 1, sizeof *all.items), 0};
    if (all.items == NULL) return;
    lm_idmap_each(c->kept, collect_sent, &all);
    qsort(all.items, all.n, sizeof *all.items, by_submission);
    c->resend = calloc(all.n + 1, sizeof *c->resend);
    for (size_t i = 0; c->resend != NULL && i < all.n; i++)
        lm_id_from_bytes(all.items[i]->spec->task_id.data, LM_ID_BYTES, &c->resend[c->nresend++]);
    free(all.items);
}

static void on_freed_again(void *arg, lumen_status st, ProtobufCMessage *reply) {
    (void)arg, (void)st; /* advice, like every free */
    lm_rpc_message_free(reply);
}

typedef struct id_list {
    ProtobufCBinaryData *items;
    size_t n;
    lm_id *ids;
} id_list;

static void collect_freed_results(void *arg, lm_id key, void *value) {
    id_list *l = arg;
    kept_task *k = value;
    if (!k->freed) return;
    l->ids[l->n] = lm_id_for_return(key, 0);
    l->items[l->n] = (ProtobufCBinaryData){LM_ID_BYTES, l->ids[l->n].bytes};
    l->n++;
}

/* The results freed here whose specs are kept for their consumers: the
 * new incarnation drops them once their consumers are done. */
static void free_again(lumen_client *c) {
    size_t n = lm_idmap_count(c->kept);
    id_list l = {calloc(n + 1, sizeof *l.items), 0, calloc(n + 1, sizeof *l.ids)};
    if (l.items != NULL && l.ids != NULL) lm_idmap_each(c->kept, collect_freed_results, &l);
    if (l.n > 0) {
        Lumen__FreeObjectsRequest req = LUMEN__FREE_OBJECTS_REQUEST__INIT;
        req.n_object_ids = l.n;
        req.object_ids = l.items;
        req.job_id = (ProtobufCBinaryData){LM_ID_BYTES, c->job.bytes};
        lm_rpc_unary_async(c->rpc, c->address, c->free_objects, &req.base, c->timeout_ms, on_freed_again, NULL);
    }
    free(l.items);
    free(l.ids);
}

static void on_established(void *arg, lumen_status st, ProtobufCMessage *reply) {
    lumen_client *c = arg;
    uint64_t epoch = 0;
    if (LM_IS_OK(st))
        epoch = c->joined ? ((Lumen__ClusterInfoReply *)reply)->epoch : ((Lumen__JobReply *)reply)->epoch;
    pthread_mutex_lock(&c->mu);
    c->submitting = false;
    if (LM_IS_OK(st) && epoch != 0) {
        /* Whether it restarted or a batch was lost on the way, every kept
         * task goes again (the scheduler takes those it knows as known). */
        c->epoch = epoch;
        plan_resend(c);
        actor_resync_locked(c);
    } else if (st.code == LUMEN_ABORTED) {
        job_ended_locked(c, st);
    } else if (!session_scheduler_forgot(st) && LM_IS_OK(c->submit_error)) {
        c->submit_error = lm_status_wrap(st, "starting the job");
    }
    /* After a failure the keeper tries again, after a pause: no spinning
     * on a scheduler that is away. */
    if (c->epoch != 0) session_pump_locked(c);
    else pthread_cond_signal(&c->keeper_cond);
    pthread_mutex_unlock(&c->mu);
    lm_rpc_message_free(reply);
}

static void establish(lumen_client *c) {
    Lumen__JobRequest job = LUMEN__JOB_REQUEST__INIT;
    Lumen__ClusterInfoRequest info = LUMEN__CLUSTER_INFO_REQUEST__INIT;
    job.job_id = (ProtobufCBinaryData){LM_ID_BYTES, c->job.bytes};
    job.detached = c->detached;
    c->submitting = true;
    lumen_status st = c->joined ? lm_rpc_unary_async(c->rpc, c->address, c->cluster_info, &info.base, c->timeout_ms,
                                                     on_established, c)
                                : lm_rpc_unary_async(c->rpc, c->address, c->start_job, &job.base, c->timeout_ms,
                                                     on_established, c);
    if (!LM_IS_OK(st)) c->submitting = false;
}

/* ------------------------------------------------------------- the lease */

static void on_lease_done(void *arg, lumen_status st, ProtobufCMessage *reply) {
    lumen_client *c = arg;
    lm_rpc_message_free(reply);
    pthread_mutex_lock(&c->mu);
    c->lease_held = false;
    if (!c->closing) {
        if (!LM_IS_OK(st))
            session_lost_locked(c, st.code == LUMEN_CANCELLED ? lm_status(LUMEN_UNAVAILABLE, "%s", st.msg) : st,
                                c->epoch);
        if (LM_IS_OK(st)) session_pump_locked(c); /* renewed at once after a lease that ran its course */
        else pthread_cond_signal(&c->keeper_cond);
    }
    pthread_mutex_unlock(&c->mu);
}

static void hold_lease(lumen_client *c) {
    Lumen__WatchJobRequest req = LUMEN__WATCH_JOB_REQUEST__INIT;
    req.job_id = (ProtobufCBinaryData){LM_ID_BYTES, c->job.bytes};
    c->lease_held = true;
    /* Answered within the lease (30 s): the deadline only bounds a scheduler that hangs. */
    lumen_status st = lm_rpc_unary_async(c->rpc, c->address, c->watch_job, &req.base, 120000, on_lease_done, c);
    if (!LM_IS_OK(st)) { /* not even sent: the keeper holds it again, after a pause */
        c->lease_held = false;
        pthread_cond_signal(&c->keeper_cond);
    }
}

/* ------------------------------------------------------------- the pump */

void session_pump_locked(lumen_client *c) {
    if (c->closing || !LM_IS_OK(c->job_error)) return;
    if (c->epoch != 0 && c->resend != NULL && c->resend_pos >= c->nresend && !c->submitting) {
        /* Every kept task is back: the frees it missed follow them. */
        free(c->resend);
        c->resend = NULL;
        c->nresend = c->resend_pos = 0;
        free_again(c);
    }
    bool wants_lease = !c->joined && !c->detached;
    if (c->epoch != 0 && wants_lease && !c->lease_held) hold_lease(c);
    if (c->submitting) return;
    if (c->epoch == 0) establish(c);
    else if (c->resend != NULL) send_resend(c);
    else if (c->npending > 0) send_pending(c);
}

/* ------------------------------------------------------------- keeper */

/* Establishes the session again while nothing else does (a client that
 * only waits, or does nothing, keeps its lease through a restart). */
static void *keeper_main(void *arg) {
    lm_thread_name("session");
    lumen_client *c = arg;
    uint32_t pause = KEEPER_MIN_MS;
    pthread_mutex_lock(&c->mu);
    while (!c->closing) {
        bool wants_lease = !c->joined && !c->detached && LM_IS_OK(c->job_error);
        bool needed = LM_IS_OK(c->job_error) && (c->epoch == 0 || (wants_lease && !c->lease_held));
        if (!needed) {
            pause = KEEPER_MIN_MS;
            pthread_cond_wait(&c->keeper_cond, &c->mu);
            continue;
        }
        session_pump_locked(c);
        /* The whole pause: a failed attempt that signals us must not make
         * the next one come at once. */
        struct timespec until = lm_timespec_in(CLOCK_REALTIME, pause);
        while (!c->closing && pthread_cond_timedwait(&c->keeper_cond, &c->mu, &until) == 0) {
        }
        pause = pause * 2 > KEEPER_MAX_MS ? KEEPER_MAX_MS : pause * 2;
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

void session_init(lumen_client *c) {
    c->kept = lm_idmap_new();
    pthread_cond_init(&c->keeper_cond, NULL);
}

lumen_status session_start(lumen_client *c) {
    if (pthread_create(&c->keeper, NULL, keeper_main, c) != 0)
        return lm_status(LUMEN_INTERNAL, "cannot start the client's keeper thread");
    c->keeper_started = true;
    return lm_ok();
}

void session_stop(lumen_client *c) {
    pthread_mutex_lock(&c->mu);
    c->closing = true;
    pthread_cond_broadcast(&c->keeper_cond);
    pthread_mutex_unlock(&c->mu);
    if (c->keeper_started) pthread_join(c->keeper, NULL);
    c->keeper_started = false;
}

static void free_kept_entry(void *arg, lm_id key, void *value) {
    (void)arg, (void)key;
    kept_free(value);
}

void session_fini(lumen_client *c) {
    free(c->pending); /* its tasks are in `kept` */
    lm_idmap_each(c->kept, free_kept_entry, NULL);
    lm_idmap_free(c->kept);
    free(c->resend);
    pthread_cond_destroy(&c->keeper_cond);
}

/* ------------------------------------------------------------- waiting */

lumen_status session_wait_submitted(lumen_client *c, int64_t timeout_ms) {
    struct timespec until = lm_timespec_in(CLOCK_REALTIME, timeout_ms);
    pthread_mutex_lock(&c->mu);
    uint64_t target = c->queued;
    session_pump_locked(c);
    int rc = 0;
    while (c->acked < target && rc == 0 && LM_IS_OK(c->job_error))
        rc = pthread_cond_timedwait(&c->acked_cond, &c->mu, &until);
    lumen_status st = LM_IS_OK(c->job_error) ? c->submit_error : c->job_error;
    bool late = c->acked < target && LM_IS_OK(st);
    pthread_mutex_unlock(&c->mu);
    if (late) return lm_status(LUMEN_DEADLINE_EXCEEDED, "tasks not accepted by the scheduler at %s in time", c->address);
    return st;
}

lumen_status session_status(lumen_client *c) {
    pthread_mutex_lock(&c->mu);
    lumen_status st = LM_IS_OK(c->job_error) ? c->submit_error : c->job_error;
    pthread_mutex_unlock(&c->mu);
    return st;
}

/*
 * reporter.c - a worker's reports to the scheduler: finished tasks and
 * actor calls queue here (worker_report_push) and one thread sends them in
 * TaskDone batches, again after a pause while the scheduler is away or
 * restarting (worker_internal.h). The slots and the actor host both report
 * through it.
 */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "process.h"
#include "rpc.h"
#include "scheduler.pb-c.h"
#include "worker_internal.h"

/* TaskDone batches stay well below gRPC's 4 MiB receive limit. */
#define REPORT_MAX_BYTES (2u << 20)
#define REPORT_MAX_RESULTS 1000
/* How long an actor call's report may wait for others to share a TaskDone. */
#define ACTOR_REPORT_DELAY_MS 5
/* How long a stopping worker keeps trying to deliver its last reports. */
#define STOP_FLUSH_MS 3000

void worker_report_free(report *r) {
    while (r != NULL) {
        report *next = r->next;
        free(r->inline_data);
        free(r->log);
        free(r);
        r = next;
    }
}

void worker_report_push(lm_worker *w, report *r) {
    r->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->reports_tail) w->reports_tail->next = r;
    else w->reports = r;
    w->reports_tail = r;
    /* Actor calls' callers have their results already: their reports wait
     * a little for company instead of costing the scheduler a call each.
     * A task's report goes at once (someone waits on the scheduler). */
    int64_t due = lm_id_is_zero(r->actor) ? 0 : (int64_t)lm_mono_ms() + ACTOR_REPORT_DELAY_MS;
    if (w->reports == r || due < w->report_due_ms) w->report_due_ms = due;
    /* While a TaskDone is in flight its completion wakes the reporter;
     * waking it for every result meanwhile would only cost a switch. An
     * idle reporter learns of the first report (and sets its timer), or
     * of one that cannot wait. */
    if (!w->report_in_flight && (due == 0 || w->reports == r)) pthread_cond_signal(&w->report_cond);
    pthread_mutex_unlock(&w->mu);
}

void worker_report_status(lm_worker *w, lm_id task, lumen_status st) {
    report *r = calloc(1, sizeof *r);
    if (r == NULL) {
        lm_error("out of memory: the result of a task is lost");
        return;
    }
    r->task = task;
    r->status = st;
    worker_report_push(w, r);
}

typedef struct batch {
    lm_worker *w;
    report *items;
} batch;

/* Puts a failed batch back in front of what queued up meanwhile. */
static void requeue(lm_worker *w, report *items) {
    report *last = items;
    while (last->next) last = last->next;
    last->next = w->reports;
    w->reports = items;
    if (w->reports_tail == NULL) w->reports_tail = last;
}

static void task_done_finished(void *arg, lumen_status st, ProtobufCMessage *reply) {
    batch *b = arg;
    lm_worker *w = b->w;
    lm_rpc_message_free(reply);
    pthread_mutex_lock(&w->mu);
    w->report_in_flight = false;
    if (LM_IS_OK(st)) {
        w->backoff_ms = 0;
        worker_report_free(b->items);
    } else {
        w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (w->backoff_ms > BACKOFF_MAX_MS) w->backoff_ms = BACKOFF_MAX_MS;
        w->retry_at_ms = (int64_t)lm_mono_ms() + w->backoff_ms;
        lm_warn("TaskDone to %s failed: %s (retrying in %u ms)", w->cfg->cluster.scheduler_addr, st.msg,
                w->backoff_ms);
        requeue(w, b->items);
    }
    pthread_cond_broadcast(&w->report_cond);
    pthread_mutex_unlock(&w->mu);
    free(b);
}

/* Takes the longest prefix of the queue that fits one call. mu held. */
static report *take_batch(lm_worker *w, size_t *n) {
    report *first = w->reports, *last = NULL;
    size_t bytes = 0;
    *n = 0;
    for (report *r = first; r != NULL && *n < REPORT_MAX_RESULTS; r = r->next) {
        size_t sz = r->inline_len + r->log_len + strlen(r->status.msg) + 64;
        if (*n > 0 && bytes + sz > REPORT_MAX_BYTES) break;
        bytes += sz;
        last = r;
        (*n)++;
    }
    w->reports = last->next;
    if (w->reports == NULL) w->reports_tail = NULL;
    last->next = NULL;
    return first;
}

void worker_results_free(result_msgs *m) {
    free(m->results);
    free(m->ptrs);
    free(m->statuses);
    free(m->inl);
    free(m->sizes);
    memset(m, 0, sizeof *m);
}

bool worker_results_build(lm_worker *w, report *const *reports, size_t n, result_msgs *m) {
    size_t cap = n ? n : 1;
    *m = (result_msgs){calloc(cap, sizeof *m->results), calloc(cap, sizeof *m->ptrs), calloc(cap, sizeof *m->statuses),
                       calloc(cap, sizeof *m->inl), calloc(cap, sizeof *m->sizes)};
    if (!m->results || !m->ptrs || !m->statuses || !m->inl || !m->sizes) {
        worker_results_free(m);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const report *r = reports[i];
        Lumen__TaskResult *tr = &m->results[i];
        lumen__task_result__init(tr);
        lumen__status__init(&m->statuses[i]);
        tr->task_id = (ProtobufCBinaryData){LM_ID_BYTES, (uint8_t *)r->task.bytes};
        m->statuses[i].code = r->status.code;
        m->statuses[i].message = (char *)r->status.msg;
        tr->status = &m->statuses[i];
        if (r->inline_data != NULL) {
            m->inl[i] = (ProtobufCBinaryData){r->inline_len, r->inline_data};
            tr->n_inline_results = 1;
            tr->inline_results = &m->inl[i];
        } else if (r->stored) { /* the scheduler knows the store by id, a caller by address */
            m->sizes[i] = r->size;
            tr->n_result_sizes = 1;
            tr->result_sizes = &m->sizes[i];
            tr->objstore_node_id = (ProtobufCBinaryData){LM_ID_BYTES, (uint8_t *)r->store.bytes};
            tr->location = (char *)w->wc->objstore_addr;
        }
        /* The job lets a scheduler that restarted keep a result it has
         * no task for (the task is submitted again by its client). */
        if (!lm_id_is_zero(r->job)) tr->job_id = (ProtobufCBinaryData){LM_ID_BYTES, (uint8_t *)r->job.bytes};
        if (!lm_id_is_zero(r->actor)) tr->actor_id = (ProtobufCBinaryData){LM_ID_BYTES, (uint8_t *)r->actor.bytes};
        if (r->log != NULL) tr->log = (ProtobufCBinaryData){r->log_len, (uint8_t *)r->log};
        if (!lm_id_is_zero(r->created)) {
            tr->created_actor_id = (ProtobufCBinaryData){LM_ID_BYTES, (uint8_t *)r->created.bytes};
            tr->incarnation = r->incarnation;
        }
        tr->crashed = r->crashed;
        m->ptrs[i] = tr;
    }
    return true;
}

/* Sends a batch asynchronously; the callback requeues it on failure. */
static void send_batch(lm_worker *w, report *items, size_t n) {
    batch *b = malloc(sizeof *b);
    if (b == NULL) {
        pthread_mutex_lock(&w->mu);
        w->report_in_flight = false;
        w->retry_at_ms = (int64_t)lm_mono_ms() + BACKOFF_MAX_MS;
        requeue(w, items);
        pthread_mutex_unlock(&w->mu);
        return;
    }
    *b = (batch){w, items};
    report **list = calloc(n ? n : 1, sizeof *list);
    size_t k = 0;
    for (report *r = items; list != NULL && r != NULL; r = r->next) list[k++] = r;
    result_msgs m;
    lumen_status st = lm_ok();
    if (list == NULL || !worker_results_build(w, list, n, &m)) {
        st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        Lumen__TaskDoneRequest req = LUMEN__TASK_DONE_REQUEST__INIT;
        req.node_id = (ProtobufCBinaryData){LM_ID_BYTES, w->node_id.bytes};
        req.n_results = n;
        req.results = m.ptrs;
        st = lm_rpc_unary_async(w->cli, w->cfg->cluster.scheduler_addr, w->task_done, &req.base,
                                w->cfg->cluster.rpc_timeout_ms, task_done_finished, b);
        worker_results_free(&m);
    }
    free(list);
    if (!LM_IS_OK(st)) task_done_finished(b, st, NULL); /* it will not run by itself */
}

void *worker_reporter_main(void *arg) {
    lm_thread_name("reporter");
    lm_worker *w = arg;
    int64_t give_up = 0;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        if (w->reporter_stop && give_up == 0) give_up = (int64_t)lm_mono_ms() + STOP_FLUSH_MS;
        bool idle = w->reports == NULL || w->report_in_flight;
        int64_t now = (int64_t)lm_mono_ms();
        if (give_up && (now >= give_up || (w->reports == NULL && !w->report_in_flight))) break;
        int64_t not_before = w->retry_at_ms > w->report_due_ms ? w->retry_at_ms : w->report_due_ms;
        if (give_up) not_before = w->retry_at_ms; /* stopping: no more waiting for company */
        if (idle || now < not_before) {
            int64_t until = give_up;
            if (!idle && (until == 0 || not_before < until)) until = not_before;
            worker_wait_until(&w->report_cond, &w->mu, until);
            continue;
        }
        size_t n;
        report *items = take_batch(w, &n);
        w->report_in_flight = true;
        w->report_due_ms = 0; /* what is left (over the batch limit) goes next */
        pthread_mutex_unlock(&w->mu);
        send_batch(w, items, n);
        pthread_mutex_lock(&w->mu);
    }
    if (w->reports != NULL) lm_warn("stopping with unreported task results (the scheduler will retry them)");
    pthread_mutex_unlock(&w->mu);
    return NULL;
}


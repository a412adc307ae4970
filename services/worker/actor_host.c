/*
 * actor_host.c - the actors a worker hosts.
 *
 * Each actor lives in an executor process of its own (a one-slot
 * lm_exec_pool, so spawning, limits and crash detection are the task
 * path's) and has a thread of its own that runs its calls one at a time, in
 * the order their batches arrived. CallActor queues a batch and is answered
 * when the thread has run all of it; every call's outcome also goes to the
 * scheduler in a later TaskDone, so other clients and tasks can read the
 * result by its ref.
 *
 * An actor whose process dies (a crash, its time or memory limit) is dead
 * here: it leaves the list at once (new calls get NOT_FOUND), its queued
 * calls fail with ACTOR_DIED, and the scheduler hears of it (ActorDied) and
 * decides about a restart. A stopped actor (StopActor: killed, or its job
 * ended) finishes the call it runs, fails the rest, and its destructor runs
 * as its executor exits.
 */
#include "clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "input_limits.h"
#include "log.h"
#include "scheduler.pb-c.h"
#include "worker.pb-c.h"
#include "worker_internal.h"
#include "process.h"

/* A dependency of a call is awaited in slices this long, so a stopping
 * actor is not held up for longer. */
#define RESOLVE_SLICE_MS 1000
/* How long a call waits for a ref argument to be made when it has no time
 * limit of its own. */
#define RESOLVE_DEFAULT_MS (10 * 60 * 1000)
#define DIED_TRIES 5

typedef struct call_batch {
    lm_rpc_call *call;
    Lumen__ActorCallRequest *req; /* taken from the call */
    struct call_batch *next;
} call_batch;

typedef struct hosted_actor {
    lm_worker *w;
    lm_id id, job;
    uint32_t incarnation;
    char *class_name;
    lm_exec_pool *pool;
    unsigned spawns; /* the pool's spawn count once constructed: a higher one means the process died */
    char cause[sizeof(((lumen_status *)0)->msg)]; /* why it died, for the scheduler */
    lm_shmbuf args;
    int64_t timeout_ms;
    uint64_t memory_limit;
    pthread_t thread;
    pthread_cond_t cond;     /* a batch arrived, or stopping */
    call_batch *head, *tail; /* under w->mu, like everything below */
    bool stopping;
    struct hosted_actor *next;
} hosted_actor;

static const char *hex(lm_id id, char buf[LM_ID_HEX_LEN + 1]) { return lm_id_to_hex(id, buf); }

static void batch_free(call_batch *b) {
    lm_rpc_message_free(&b->req->base);
    free(b);
}

/* ------------------------------------------------------------- the list */

static hosted_actor *find_locked(lm_worker *w, lm_id id) {
    for (hosted_actor *a = w->actors; a != NULL; a = a->next)
        if (lm_id_equal(a->id, id)) return a;
    return NULL;
}

static void unlink_locked(lm_worker *w, hosted_actor *a) {
    for (hosted_actor **pp = &w->actors; *pp != NULL; pp = &(*pp)->next)
        if (*pp == a) {
            *pp = a->next;
            return;
        }
}

unsigned actor_host_count(const lm_worker *w) {
    unsigned n = 0;
    for (const hosted_actor *a = w->actors; a != NULL; a = a->next) n++;
    return n;
}

void actor_host_list(const lm_worker *w, lm_id **ids, uint32_t **incarnations, size_t *n) {
    unsigned cap = actor_host_count(w);
    *n = 0;
    *ids = calloc(cap ? cap : 1, sizeof **ids);
    *incarnations = calloc(cap ? cap : 1, sizeof **incarnations);
    if (*ids == NULL || *incarnations == NULL) return; /* then none is listed: they restart elsewhere */
    for (const hosted_actor *a = w->actors; a != NULL; a = a->next) {
        if (a->stopping) continue;
        (*ids)[*n] = a->id;
        (*incarnations)[(*n)++] = a->incarnation;
    }
}

static void actor_free(hosted_actor *a) {
    lm_exec_pool_free(a->pool); /* closes its socket: the destructor runs as it exits */
    lm_shmbuf_fini(&a->args);
    pthread_cond_destroy(&a->cond);
    free(a->class_name);
    free(a);
}

/* ------------------------------------------------------ dependencies */

static void set_string(char **field, const char *value) {
    if (*field != NULL && *field != protobuf_c_empty_string) free(*field);
    *field = strdup(value);
}

/* Refs without a location (results of tasks or of other actors' calls,
 * which the caller could not place) are looked up at the scheduler, waiting
 * until they exist: ready ones become inline values or get their store. */
static lumen_status resolve_refs(hosted_actor *a, Lumen__TaskSpec *spec) {
    lm_worker *w = a->w;
    size_t n = 0;
    ProtobufCBinaryData *ids = calloc(spec->n_args ? spec->n_args : 1, sizeof *ids);
    size_t *index = calloc(spec->n_args ? spec->n_args : 1, sizeof *index);
    if (ids == NULL || index == NULL) {
        free(ids);
        free(index);
        return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < spec->n_args; i++) {
        Lumen__Arg *arg = spec->args[i];
        if (arg->value_case != LUMEN__ARG__VALUE_REF || (arg->location != NULL && arg->location[0] != '\0')) continue;
        ids[n] = arg->ref;
        index[n++] = i;
    }
    lumen_status st = lm_ok();
    Lumen__WaitObjectsReply *reply = NULL;
    int64_t budget = a->timeout_ms > 0 ? a->timeout_ms : RESOLVE_DEFAULT_MS;
    int64_t deadline = (int64_t)lm_mono_ms() + budget;
    while (n > 0) {
        Lumen__WaitObjectsRequest req = LUMEN__WAIT_OBJECTS_REQUEST__INIT;
        req.n_object_ids = n;
        req.object_ids = ids;
        req.num_ready = (uint32_t)n;
        req.park_unknown = true;
        req.wait_ms = RESOLVE_SLICE_MS;
        ProtobufCMessage *out = NULL;
        st = lm_rpc_unary(w->cli, w->cfg->cluster.scheduler_addr, w->wait_objects, &req.base, &out,
                          RESOLVE_SLICE_MS + w->cfg->cluster.rpc_timeout_ms);
        reply = (Lumen__WaitObjectsReply *)out;
        if (LM_IS_OK(st) && reply->n_objects != n)
            st = lm_status(LUMEN_INTERNAL, "the scheduler answered %zu states for %zu objects", reply->n_objects, n);
        bool all_ready = LM_IS_OK(st);
        for (size_t k = 0; all_ready && k < n; k++) all_ready = reply->objects[k]->ready;
        if (all_ready || (!LM_IS_OK(st) && st.code != LUMEN_DEADLINE_EXCEEDED && st.code != LUMEN_UNAVAILABLE)) break;
        lm_rpc_message_free(out);
        reply = NULL;
        pthread_mutex_lock(&w->mu);
        bool stop = a->stopping;
        pthread_mutex_unlock(&w->mu);
        if (stop || (int64_t)lm_mono_ms() >= deadline) {
            st = stop ? lm_status(LUMEN_ACTOR_DIED, "the actor was stopped while its call waited for arguments")
                      : lm_status(LUMEN_DEADLINE_EXCEEDED, "arguments not ready after %lld ms", (long long)budget);
            break;
        }
    }
    for (size_t k = 0; LM_IS_OK(st) && k < n; k++) {
        const Lumen__ObjectState *o = reply->objects[k];
        Lumen__Arg *arg = spec->args[index[k]];
        if (o->status != NULL && o->status->code != LUMEN_OK) {
            st = lm_status((lumen_code)o->status->code, "argument %zu: %s", index[k], o->status->message);
        } else if (o->n_locations > 0) {
            set_string(&arg->location, o->locations[0]);
            arg->size = o->size;
        } else { /* a small value the scheduler holds */
            uint8_t *copy = malloc(o->inline_value.len ? o->inline_value.len : 1);
            if (copy == NULL) {
                st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
                break;
            }
            if (o->inline_value.len) memcpy(copy, o->inline_value.data, o->inline_value.len);
            free(arg->ref.data);
            arg->ref = (ProtobufCBinaryData){0};
            arg->value_case = LUMEN__ARG__VALUE_INLINE;
            arg->inline_ = (ProtobufCBinaryData){o->inline_value.len, copy};
        }
    }
    lm_rpc_message_free(reply ? &reply->base : NULL);
    free(ids);
    free(index);
    return st;
}

/* ------------------------------------------------------------- running */

/* Runs one request (constructor or method) in the actor's executor. A
 * process that died on the way shows as a higher spawn count: then *gone
 * says why the actor is dead. */
static void exec(hosted_actor *a, lm_exec_kind kind, const Lumen__TaskSpec *spec, lm_id task, const char *lib,
                 lumen_status *gone, lm_exec_result *res) {
    lm_worker *w = a->w;
    lumen_bytes *args = calloc(spec->n_args ? spec->n_args : 1, sizeof *args);
    lumen_status st = args ? lm_ok() : lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    if (LM_IS_OK(st)) st = worker_fetch_args(w, &a->args, spec, args);
    if (!LM_IS_OK(st)) {
        memset(res, 0, sizeof *res);
        res->status = st;
        free(args);
        return;
    }
    const char *libs[1] = {lib};
    lm_exec_task t = {
        .task_id = task,
        .job_id = a->job,
        .kind = kind,
        .function = kind == LM_EXEC_ACTOR_NEW ? spec->function : spec->method,
        .args = args,
        .nargs = spec->n_args,
        .args_buf = &a->args,
        .attempt = spec->attempt,
        .libraries = libs,
        .nlibraries = lib ? 1 : 0,
        .timeout_ms = a->timeout_ms,
        .memory_limit = a->memory_limit,
    };
    lm_exec_pool_run(a->pool, &t, res);
    free(args);
    unsigned spawns = lm_exec_pool_spawns(a->pool);
    if (kind == LM_EXEC_ACTOR_NEW) {
        a->spawns = spawns;
    } else if (spawns != a->spawns && LM_IS_OK(*gone)) {
        char h[LM_ID_HEX_LEN + 1];
        snprintf(a->cause, sizeof a->cause, "%s", LM_IS_OK(res->status) ? "its process ended" : res->status.msg);
        *gone = lm_status(LUMEN_ACTOR_DIED, "actor %s (%s) died: %s", hex(a->id, h), a->class_name, a->cause);
        size_t log_len;
        char *log = lm_exec_result_take_log(res, &log_len); /* what it wrote before it died */
        bool crashed = res->crashed; /* a crash, not a limit: the caller may run it again */
        lm_exec_result_free(res);
        res->status = *gone;
        res->log = log;
        res->log_len = log_len;
        res->crashed = crashed;
    }
}

/* Runs one call; fills r with its outcome and may set *gone. Returns
 * false when the call did not run because the actor is gone: the caller
 * sends it to the next incarnation (ABORTED says so), and the scheduler
 * hears nothing of it. */
static bool run_call(hosted_actor *a, Lumen__TaskSpec *spec, lumen_status *gone, report *r) {
    lm_worker *w = a->w;
    lm_id task = {{0}};
    lm_id_from_bytes(spec->task_id.data, spec->task_id.len, &task);
    r->task = task;
    r->job = a->job;
    r->actor = a->id;
    if (!LM_IS_OK(*gone)) {
        r->status = lm_status(LUMEN_ABORTED, "not run: %s", gone->msg);
        return false;
    }
    if (spec->task_id.len != LM_ID_BYTES || spec->method == NULL || spec->method[0] == '\0') {
        r->status = lm_status(LUMEN_INVALID_ARGUMENT, "an actor call needs a 16-byte task_id and a method name");
        return true;
    }
    lumen_status st = resolve_refs(a, spec);
    if (!LM_IS_OK(st)) {
        r->status = st;
        return true;
    }
    lm_exec_result res;
    exec(a, LM_EXEC_ACTOR_CALL, spec, task, NULL, gone, &res);
    r->status = st = worker_finish_run(w, spec, task, &res, r);
    if (!LM_IS_OK(st)) {
        free(r->inline_data);
        r->inline_data = NULL;
        r->stored = false;
    }
    return true;
}

/* The reply to a batch: one result per call, built from the reports. */
static void answer(lm_worker *w, call_batch *b, report **reports, size_t n) {
    result_msgs m;
    if (!worker_results_build(w, reports, n, &m)) {
        lm_rpc_fail(b->call, LUMEN_RESOURCE_EXHAUSTED, "the worker is out of memory");
        return;
    }
    Lumen__ActorCallReply reply = LUMEN__ACTOR_CALL_REPLY__INIT;
    reply.n_results = n;
    reply.results = m.ptrs;
    lm_rpc_reply(b->call, &reply.base);
    worker_results_free(&m);
}

/* The caller's copy of an outcome; NULL when out of memory. */
static report *report_dup(const report *r) {
    report *copy = malloc(sizeof *copy);
    if (copy == NULL) return NULL;
    *copy = *r;
    copy->next = NULL;
    copy->log = NULL; /* the scheduler's, not the caller's */
    copy->log_len = 0;
    if (r->inline_data != NULL && (copy->inline_data = malloc(r->inline_len ? r->inline_len : 1)) == NULL) {
        free(copy);
        return NULL;
    }
    if (r->inline_data != NULL && r->inline_len) memcpy(copy->inline_data, r->inline_data, r->inline_len);
    return copy;
}

/* Runs every call of a batch, answers it with their outcomes. Each
 * outcome goes to the reporter as soon as the call is done: a later call
 * may take this one's result as an argument, and finds it through the
 * scheduler. */
static void run_batch(hosted_actor *a, call_batch *b, lumen_status *gone) {
    size_t n = b->req->n_calls, made = 0;
    report **replies = calloc(n ? n : 1, sizeof *replies);
    for (; replies != NULL && made < n; made++) {
        report *r = calloc(1, sizeof *r);
        if (r == NULL) break;
        bool ran = run_call(a, b->req->calls[made], gone, r);
        replies[made] = report_dup(r);
        if (ran) worker_report_push(a->w, r);
        else free(r);
        if (replies[made] == NULL) break;
    }
    if (replies == NULL || made < n) lm_rpc_fail(b->call, LUMEN_RESOURCE_EXHAUSTED, "the worker is out of memory");
    else answer(a->w, b, replies, n);
    for (size_t i = 0; replies != NULL && i < made; i++) {
        if (replies[i] == NULL) continue;
        free(replies[i]->inline_data);
        free(replies[i]);
    }
    free(replies);
    batch_free(b);
}

/* Tells the scheduler the actor died by itself (it may restart it). */
static void announce_death(hosted_actor *a) {
    lm_worker *w = a->w;
    Lumen__Status reason = LUMEN__STATUS__INIT;
    reason.code = LUMEN_ACTOR_DIED;
    reason.message = a->cause;
    Lumen__ActorDiedRequest req = LUMEN__ACTOR_DIED_REQUEST__INIT;
    req.node_id = (ProtobufCBinaryData){LM_ID_BYTES, w->node_id.bytes};
    req.actor_id = (ProtobufCBinaryData){LM_ID_BYTES, a->id.bytes};
    req.incarnation = a->incarnation;
    req.reason = &reason;
    lumen_status st = lm_ok();
    for (int i = 0, backoff = 100; i < DIED_TRIES; i++, backoff *= 2) {
        ProtobufCMessage *out = NULL;
        st = lm_rpc_unary(w->cli, w->cfg->cluster.scheduler_addr, w->actor_died, &req.base, &out,
                          w->cfg->cluster.rpc_timeout_ms);
        lm_rpc_message_free(out);
        if (LM_IS_OK(st) || st.code == LUMEN_INVALID_ARGUMENT) break;
        lm_sleep_ms(backoff);
    }
    if (!LM_IS_OK(st)) lm_warn("cannot tell the scheduler that an actor died: %s", st.msg);
}

static void *actor_main(void *arg) {
    lm_thread_name("actor");
    hosted_actor *a = arg;
    lm_worker *w = a->w;
    lumen_status gone = lm_ok();
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (a->head == NULL && !a->stopping && LM_IS_OK(gone)) pthread_cond_wait(&a->cond, &w->mu);
        if (a->stopping && LM_IS_OK(gone)) {
            char h[LM_ID_HEX_LEN + 1];
            gone = lm_status(LUMEN_ACTOR_DIED, "actor %s (%s) was stopped", hex(a->id, h), a->class_name);
        }
        if (!LM_IS_OK(gone)) unlink_locked(w, a); /* no batch joins the queue from now on */
        call_batch *b = a->head;
        if (b == NULL) break; /* gone, and every queued call answered */
        a->head = b->next;
        if (a->head == NULL) a->tail = NULL;
        pthread_mutex_unlock(&w->mu);
        bool was_alive = LM_IS_OK(gone);
        run_batch(a, b, &gone);
        if (was_alive && !LM_IS_OK(gone)) {
            lm_warn("%s", gone.msg);
            /* Out of the list before the scheduler hears of it: it may place
             * the next incarnation here at once. */
            pthread_mutex_lock(&w->mu);
            unlink_locked(w, a);
            pthread_mutex_unlock(&w->mu);
            announce_death(a);
        }
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    char h[LM_ID_HEX_LEN + 1];
    lm_info("actor %s (%s) ended", hex(a->id, h), a->class_name);
    actor_free(a);
    pthread_mutex_lock(&w->mu);
    if (--w->actor_threads == 0) pthread_cond_broadcast(&w->actors_gone);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ------------------------------------------------------------- creation */

static lumen_status start_actor(hosted_actor *a) {
    lm_worker *w = a->w;
    pthread_mutex_lock(&w->mu);
    lumen_status st = lm_ok();
    if (w->stopping) st = lm_status(LUMEN_WORKER_DIED, "the worker is stopping");
    else if (find_locked(w, a->id) != NULL) st = lm_status(LUMEN_ALREADY_EXISTS, "the actor already lives here");
    else if (pthread_create(&a->thread, NULL, actor_main, a) != 0)
        st = lm_status(LUMEN_INTERNAL, "cannot start an actor thread");
    if (LM_IS_OK(st)) {
        pthread_detach(a->thread);
        a->next = w->actors;
        w->actors = a;
        w->actor_threads++;
    }
    pthread_mutex_unlock(&w->mu);
    return st;
}

/* Whether this incarnation of the actor already lives here: a scheduler
 * that restarted before it heard of its creation asks for it again. */
static bool already_hosted(lm_worker *w, const Lumen__TaskSpec *spec) {
    lm_id id;
    if (!lm_id_from_bytes(spec->actor_id.data, spec->actor_id.len, &id)) return false;
    pthread_mutex_lock(&w->mu);
    hosted_actor *a = find_locked(w, id);
    bool same = a != NULL && !a->stopping && a->incarnation == spec->incarnation;
    pthread_mutex_unlock(&w->mu);
    return same;
}

/* A creation's report names the actor and incarnation now hosted here: a
 * scheduler that restarted may not know which task that was. */
static void report_created(report *r, const Lumen__TaskSpec *spec) {
    if (LM_IS_OK(r->status) && lm_id_from_bytes(spec->actor_id.data, spec->actor_id.len, &r->created))
        r->incarnation = spec->incarnation;
}

void actor_host_create(lm_worker *w, const Lumen__TaskSpec *spec, lm_id task, report *r) {
    if (already_hosted(w, spec)) { /* done already: the same (empty) result again */
        r->inline_data = malloc(1);
        r->inline_len = 0;
        r->status = r->inline_data ? lm_ok() : lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
        report_created(r, spec);
        return;
    }
    hosted_actor *a = calloc(1, sizeof *a);
    if (a == NULL) {
        r->status = lm_status(LUMEN_RESOURCE_EXHAUSTED, "the worker is out of memory");
        return;
    }
    a->w = w;
    a->job = worker_spec_job(spec);
    a->incarnation = spec->incarnation;
    a->class_name = strdup(spec->function);
    a->timeout_ms = worker_timeout_ms(w, spec);
    a->memory_limit = worker_memory_limit(w, spec);
    lm_shmbuf_init(&a->args, "lumen-actor-args");
    pthread_cond_init(&a->cond, NULL);
    lumen_status st = a->class_name ? lm_ok() : lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    if (LM_IS_OK(st) && !lm_id_from_bytes(spec->actor_id.data, spec->actor_id.len, &a->id))
        st = lm_status(LUMEN_INVALID_ARGUMENT, "actor_id must be 16 bytes, got %zu", spec->actor_id.len);
    char *lib = NULL;
    if (LM_IS_OK(st) && spec->library_id.len > 0) st = worker_ensure_library(w, spec, &lib);
    if (LM_IS_OK(st)) {
        lm_exec_pool_opts po = {.executor_path = w->executor_path, .library_path = w->wc->library_path,
                                .slots = 1, .env = (const char *const *)w->exec_env};
        st = lm_exec_pool_new(&po, &a->pool);
    }
    if (LM_IS_OK(st)) {
        lumen_status ignored = lm_ok();
        lm_exec_result res;
        exec(a, LM_EXEC_ACTOR_NEW, spec, task, lib, &ignored, &res);
        st = worker_finish_run(w, spec, task, &res, r); /* an empty result: the actor is up */
    }
    free(lib);
    if (LM_IS_OK(st)) st = start_actor(a);
    r->status = st;
    char h[LM_ID_HEX_LEN + 1];
    if (LM_IS_OK(st)) {
        report_created(r, spec);
        lm_info("actor %s (%s) started, incarnation %u", hex(a->id, h), a->class_name, a->incarnation);
    } else {
        actor_free(a);
    }
}

/* ------------------------------------------------------------- handlers */

void actor_host_call(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    lm_worker *w = ctx;
    Lumen__ActorCallRequest *req = (Lumen__ActorCallRequest *)msg;
    lm_id id;
    if (!lm_id_from_bytes(req->actor_id.data, req->actor_id.len, &id)) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "actor_id must be 16 bytes, got %zu", req->actor_id.len);
        return;
    }
    lumen_status limit = lm_limits_batch(req->n_calls, "CallActor");
    for (size_t i = 0; LM_IS_OK(limit) && i < req->n_calls; i++) limit = lm_limits_spec(req->calls[i]);
    if (!LM_IS_OK(limit)) {
        lm_rpc_fail_status(call, limit);
        return;
    }
    call_batch *b = calloc(1, sizeof *b);
    /* The request is taken whole: its calls are its own allocations, and the
     * RPC layer frees what a handler leaves, so the batch gets a shallow
     * copy of the top level and the request keeps none of its calls. */
    Lumen__ActorCallRequest *own = b ? malloc(sizeof *own) : NULL;
    if (own == NULL) {
        free(b);
        lm_rpc_fail(call, LUMEN_RESOURCE_EXHAUSTED, "the worker is out of memory");
        return;
    }
    *own = *req;
    own->actor_id = (ProtobufCBinaryData){0};
    own->base.n_unknown_fields = 0;
    own->base.unknown_fields = NULL;
    req->n_calls = 0;
    req->calls = NULL;
    b->call = call;
    b->req = own;
    char h[LM_ID_HEX_LEN + 1];
    lumen_status st = lm_ok();
    pthread_mutex_lock(&w->mu);
    hosted_actor *a = find_locked(w, id);
    if (a == NULL || a->stopping)
        st = lm_status(LUMEN_NOT_FOUND, "actor %s does not live on worker %s", hex(id, h), w->addr);
    else if (req->incarnation != 0 && req->incarnation != a->incarnation)
        st = lm_status(LUMEN_FAILED_PRECONDITION, "actor %s is incarnation %u here, not %u", hex(id, h),
                       a->incarnation, req->incarnation);
    if (LM_IS_OK(st)) {
        if (a->tail) a->tail->next = b;
        else a->head = b;
        a->tail = b;
        pthread_cond_signal(&a->cond);
    }
    pthread_mutex_unlock(&w->mu);
    if (!LM_IS_OK(st)) {
        batch_free(b);
        lm_rpc_fail_status(call, st);
    }
}

void actor_host_stop(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    lm_worker *w = ctx;
    const Lumen__StopActorRequest *req = (const Lumen__StopActorRequest *)msg;
    lm_id id;
    if (!lm_id_from_bytes(req->actor_id.data, req->actor_id.len, &id)) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "actor_id must be 16 bytes, got %zu", req->actor_id.len);
        return;
    }
    if (!worker_epoch_ok(w, req->epoch)) {
        lm_rpc_fail(call, LUMEN_FAILED_PRECONDITION, "StopActor from a replaced scheduler incarnation");
        return;
    }
    pthread_mutex_lock(&w->mu);
    hosted_actor *a = find_locked(w, id);
    if (a != NULL) {
        a->stopping = true;
        pthread_cond_signal(&a->cond);
    }
    pthread_mutex_unlock(&w->mu);
    Lumen__StopActorReply reply = LUMEN__STOP_ACTOR_REPLY__INIT;
    reply.found = a != NULL;
    lm_rpc_reply(call, &reply.base);
}

void actor_host_stop_all(lm_worker *w) {
    pthread_mutex_lock(&w->mu);
    for (hosted_actor *a = w->actors; a != NULL; a = a->next) {
        a->stopping = true;
        lm_exec_pool_shutdown(a->pool); /* a call running now ends at once */
        pthread_cond_signal(&a->cond);
    }
    while (w->actor_threads > 0) pthread_cond_wait(&w->actors_gone, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

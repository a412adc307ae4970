/*
 * actor.c - liblumen's actors (see lumen.h).
 *
 * Creating, finding and killing an actor go through the scheduler; method
 * calls go to the actor's worker directly (CallActor). Per actor, calls
 * queue in the order they were made and one CallActor is in flight at a
 * time, carrying everything queued since the previous one: batches grow with
 * the load, and the worker runs them in that order. Its reply carries the
 * results, kept here by object id so lumen_get / lumen_wait answer without a
 * scheduler round trip (the worker reports them to the scheduler as well,
 * for tasks and other clients).
 *
 * The actor's address comes from GetActor. When a CallActor fails because
 * the actor is not there any more (its worker or process died), its calls
 * are sent again to the next incarnation while max_task_retries allows
 * (calls the worker refused never ran and are always sent again); the rest
 * fail with ACTOR_DIED, and the scheduler hears of those failures from
 * here (no worker will report them), so nothing waiting on them hangs.
 */
#include "clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client_internal.h"
#include "objclient.h"
#include "scheduler.pb-c.h"
#include "worker.pb-c.h"

/* A CallActor carries at most this many calls, and about this many bytes. */
#define BATCH_MAX_CALLS 2048
#define BATCH_MAX_BYTES (4u << 20)
/* How long a batch of calls may run on the worker before the call gives up
 * (methods have no limit unless the actor was made with one). */
#define CALL_DEADLINE_MS (60 * 60 * 1000)
/* How long one GetActor waits for the actor to come up (the next one is
 * sent when it expires, while calls are queued). */
#define RESOLVE_WAIT_MS 30000

typedef struct actor_handle actor_handle;

typedef struct call_result {
    actor_handle *h; /* whose call it is */
    bool done;
    lumen_status status;
    uint8_t *data; /* inline value (done, OK, no location) */
    size_t len;
    char *location; /* or the store holding it */
    uint64_t size;
} call_result;

typedef struct queued_call {
    Lumen__TaskSpec *spec;
    uint32_t attempts; /* sends that may have run it */
} queued_call;

typedef struct call_queue {
    queued_call *items;
    size_t n, cap;
} call_queue;

struct actor_handle {
    lumen_client *c;
    lm_id id;
    /* Actors this client created: how, to tell a scheduler that restarted. */
    Lumen__CreateActorRequest *creation;
    bool stalled; /* the scheduler could not be asked where it lives: ask again later */
    char *addr; /* its worker, while known */
    uint32_t incarnation, max_task_retries;
    bool dead;
    lumen_status error;  /* why it is dead */
    call_queue queue;    /* not sent yet, in order */
    call_queue sent;     /* in the CallActor in flight */
    bool busy;           /* a CallActor or GetActor is in flight */
};

static lm_id actor_id(lumen_actor a) {
    lm_id id;
    memcpy(id.bytes, a.id, LM_ID_BYTES);
    return id;
}

static lumen_actor id_actor(lm_id id) {
    lumen_actor a;
    memcpy(a.id, id.bytes, LM_ID_BYTES);
    return a;
}

char *lumen_actor_hex(lumen_actor actor, char out[33]) { return lm_id_to_hex(actor_id(actor), out); }

lumen_status lumen_actor_from_bytes(const void *data, size_t len, lumen_actor *out) {
    if (data == NULL || len != sizeof out->id)
        return lm_status(LUMEN_INVALID_ARGUMENT, "an actor handle is %zu bytes, got %zu", sizeof out->id, len);
    memcpy(out->id, data, sizeof out->id);
    return lm_ok();
}

/* ------------------------------------------------------------- results */

static void result_free(call_result *r) {
    free(r->data);
    free(r->location);
    free(r);
}

bool actor_result_known(lumen_client *c, lm_id id) { return lm_idmap_get(c->results, id) != NULL; }

bool actor_result_here(lumen_client *c, lm_id id) {
    const call_result *r = lm_idmap_get(c->results, id);
    return r != NULL && r->done;
}

bool actor_result_forget(lumen_client *c, lm_id id) {
    call_result *r = lm_idmap_remove(c->results, id);
    if (r != NULL) result_free(r);
    return r != NULL;
}

void actor_result_to_arg(lumen_client *c, lm_id id, Lumen__Arg *arg) {
    call_result *r = lm_idmap_get(c->results, id);
    if (r == NULL) return;
    if (r->done && LM_IS_OK(r->status) && r->location == NULL) { /* small and here: send the value */
        free(arg->ref.data);
        arg->ref = (ProtobufCBinaryData){0};
        arg->value_case = LUMEN__ARG__VALUE_INLINE;
        arg->inline_ = client_bytes_copy(r->data, r->len);
    } else if (r->done && LM_IS_OK(r->status)) {
        arg->location = strdup(r->location);
        arg->size = r->size;
    } else { /* the scheduler learns of it from the worker (or from us) */
        arg->direct = true;
    }
}

static void kick(actor_handle *h);

/* Waits on result_cond (mu held) until `until` (realtime), in slices: a
 * call whose actor could not be looked up (the scheduler was away) is
 * moved along again after each. False when `until` passed. */
static bool wait_a_while(lumen_client *c, actor_handle *h, const struct timespec *until) {
    struct timespec slice = lm_timespec_in(CLOCK_REALTIME, 250);
    bool last = slice.tv_sec > until->tv_sec || (slice.tv_sec == until->tv_sec && slice.tv_nsec >= until->tv_nsec);
    int rc = pthread_cond_timedwait(&c->result_cond, &c->mu, last ? until : &slice);
    if (rc == 0) return true;
    if (last) return false;
    if (h != NULL && h->stalled) kick(h);
    return true;
}

/* Waits (mu held) until the result is done or `until` (realtime) passes. */
static call_result *await_result(lumen_client *c, lm_id id, const struct timespec *until) {
    call_result *r;
    while ((r = lm_idmap_get(c->results, id)) != NULL && !r->done)
        if (!wait_a_while(c, r->h, until)) break;
    return r;
}

lumen_status actor_result_get(lumen_client *c, lm_id id, int64_t timeout_ms, lumen_bytes *out) {
    struct timespec until = lm_timespec_in(CLOCK_REALTIME, timeout_ms > 0 ? timeout_ms : 0);
    char hex[LM_ID_HEX_LEN + 1];
    pthread_mutex_lock(&c->mu);
    call_result *r = await_result(c, id, &until);
    lumen_status st = lm_ok();
    char *location = NULL;
    uint64_t size = 0;
    if (r == NULL) {
        st = lm_status(LUMEN_NOT_FOUND, "object %s was freed", lm_id_to_hex(id, hex));
    } else if (!r->done) {
        st = lm_status(LUMEN_DEADLINE_EXCEEDED, "object %s not ready after %lld ms", lm_id_to_hex(id, hex),
                       (long long)timeout_ms);
    } else if (!LM_IS_OK(r->status)) {
        st = r->status;
    } else if (r->location != NULL) {
        location = strdup(r->location);
        size = r->size;
    } else {
        out->data = malloc(r->len + 1);
        out->len = r->len;
        if (out->data == NULL) {
            st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
        } else {
            if (r->len) memcpy(out->data, r->data, r->len);
            ((char *)out->data)[r->len] = '\0'; /* lumen_get's promise */
        }
    }
    pthread_mutex_unlock(&c->mu);
    if (location != NULL) {
        size_t len = 0;
        st = lm_objstore_get(c->rpc, location, id, false, c->timeout_ms + (int64_t)(size >> 20) * 100, &out->data,
                             &len);
        out->len = len;
        free(location);
    }
    return st;
}

lumen_status actor_results_wait(lumen_client *c, const lm_id *ids, size_t n, size_t num_ready, int64_t timeout_ms,
                                int *ready, size_t *num_done) {
    struct timespec until = lm_timespec_in(CLOCK_REALTIME, timeout_ms > 0 ? timeout_ms : 0);
    size_t want = num_ready > n ? n : num_ready, done = 0;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        done = 0;
        for (size_t i = 0; i < n; i++) {
            call_result *r = lm_idmap_get(c->results, ids[i]);
            ready[i] = r == NULL || r->done; /* a freed one counts as settled */
            done += (size_t)ready[i];
        }
        actor_handle *stalled = NULL;
        for (size_t i = 0; i < n && stalled == NULL; i++) {
            call_result *r = lm_idmap_get(c->results, ids[i]);
            if (r != NULL && !r->done && r->h->stalled) stalled = r->h;
        }
        if (done >= want || !wait_a_while(c, stalled, &until)) break;
    }
    if (done < want) { /* timed out: report what is ready now */
        done = 0;
        for (size_t i = 0; i < n; i++) {
            call_result *r = lm_idmap_get(c->results, ids[i]);
            ready[i] = r == NULL || r->done;
            done += (size_t)ready[i];
        }
    }
    pthread_mutex_unlock(&c->mu);
    if (num_done != NULL) *num_done = done;
    return lm_ok();
}

/* Settles a call's result (mu held). Takes `data`. */
static void settle(lumen_client *c, lm_id task, lumen_status st, uint8_t *data, size_t len, const char *location,
                   uint64_t size) {
    call_result *r = lm_idmap_get(c->results, lm_id_for_return(task, 0));
    if (r == NULL || r->done) { /* freed meanwhile, or a duplicate */
        free(data);
        return;
    }
    r->done = true;
    r->status = st;
    r->data = data;
    r->len = len;
    r->location = location ? strdup(location) : NULL;
    r->size = size;
}

/* ------------------------------------------------------------- queues */

static void queue_push(call_queue *q, queued_call call) {
    if (q->n == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 64;
        q->items = realloc(q->items, q->cap * sizeof *q->items);
    }
    q->items[q->n++] = call;
}

/* Moves src's calls in front of dst's (they were made first). */
static void queue_prepend(call_queue *dst, call_queue *src) {
    for (size_t i = 0; i < dst->n; i++) queue_push(src, dst->items[i]);
    free(dst->items);
    *dst = *src;
    *src = (call_queue){0};
}

static void queue_free(call_queue *q) {
    for (size_t i = 0; i < q->n; i++)
        if (q->items[i].spec != NULL) lm_rpc_message_free(&q->items[i].spec->base);
    free(q->items);
    *q = (call_queue){0};
}

/* Tells the scheduler these calls failed for good: no worker will report
 * them, and a task may wait on their results. Best effort, async. */
static void on_reported(void *arg, lumen_status st, ProtobufCMessage *reply) {
    (void)arg, (void)st;
    lm_rpc_message_free(reply);
}

static void report_failures(actor_handle *h, const queued_call *calls, size_t n, lumen_status st) {
    lumen_client *c = h->c;
    if (n == 0) return;
    Lumen__TaskResult *results = calloc(n, sizeof *results);
    Lumen__TaskResult **ptrs = calloc(n, sizeof *ptrs);
    Lumen__Status status = LUMEN__STATUS__INIT;
    status.code = st.code;
    status.message = st.msg;
    if (results != NULL && ptrs != NULL) {
        for (size_t i = 0; i < n; i++) {
            lumen__task_result__init(&results[i]);
            results[i].task_id = calls[i].spec->task_id;
            results[i].status = &status;
            results[i].job_id = (ProtobufCBinaryData){LM_ID_BYTES, c->job.bytes};
            results[i].actor_id = (ProtobufCBinaryData){LM_ID_BYTES, h->id.bytes};
            ptrs[i] = &results[i];
        }
        Lumen__TaskDoneRequest req = LUMEN__TASK_DONE_REQUEST__INIT;
        req.n_results = n;
        req.results = ptrs;
        lm_rpc_unary_async(c->rpc, c->address, c->task_done, &req.base, c->timeout_ms, on_reported, NULL);
    }
    free(results);
    free(ptrs);
}

/* Fails every call of q with st and empties it (mu held). */
static void fail_calls(actor_handle *h, call_queue *q, lumen_status st) {
    for (size_t i = 0; i < q->n; i++) {
        lm_id task;
        lm_id_from_bytes(q->items[i].spec->task_id.data, q->items[i].spec->task_id.len, &task);
        settle(h->c, task, st, NULL, 0, NULL, 0);
    }
    report_failures(h, q->items, q->n, st);
    queue_free(q);
    pthread_cond_broadcast(&h->c->result_cond);
}

/* ------------------------------------------------------------- sending */

/* A call of h's came back: h may send again. Takes mu, unless the client
 * is closing (then the reply is freed and false returned). */
static bool call_back(actor_handle *h, ProtobufCMessage *reply) {
    pthread_mutex_lock(&h->c->mu);
    h->busy = false;
    if (!h->c->closing) return true;
    pthread_mutex_unlock(&h->c->mu);
    lm_rpc_message_free(reply);
    return false;
}

static void on_recreated(void *arg, lumen_status st, ProtobufCMessage *reply) {
    (void)arg, (void)st; /* the next look-up says how it went */
    lm_rpc_message_free(reply);
}

static void on_resolved(void *arg, lumen_status st, ProtobufCMessage *reply) {
    actor_handle *h = arg;
    lumen_client *c = h->c;
    Lumen__ActorInfo *info = (Lumen__ActorInfo *)reply;
    if (!call_back(h, reply)) return;
    if (LM_IS_OK(st) && strcmp(info->state, "ALIVE") == 0 && info->addr[0] != '\0') {
        free(h->addr);
        h->addr = strdup(info->addr);
        h->incarnation = info->incarnation;
        h->max_task_retries = info->max_task_retries;
    } else if (LM_IS_OK(st) && strcmp(info->state, "DEAD") == 0) {
        h->dead = true;
        h->error = info->error ? lm_status((lumen_code)info->error->code, "%s", info->error->message)
                               : lm_status(LUMEN_ACTOR_DIED, "the actor is dead");
    } else if (st.code == LUMEN_UNAVAILABLE || (st.code == LUMEN_NOT_FOUND && h->creation != NULL)) {
        /* The scheduler is away, or restarted before it heard the actor was
         * up: ask again while someone waits, after telling it again. */
        h->stalled = true;
        session_lost_locked(c, lm_status(LUMEN_UNAVAILABLE, "%s", st.msg), c->epoch);
        if (st.code == LUMEN_NOT_FOUND) /* make it known again now: the next look-up finds it */
            lm_rpc_unary_async(c->rpc, c->address, c->create_actor, &h->creation->base, c->timeout_ms, on_recreated,
                               NULL);
        pthread_mutex_unlock(&c->mu);
        lm_rpc_message_free(reply);
        return;
    } else if (st.code != LUMEN_DEADLINE_EXCEEDED) { /* not just slow to come up */
        fail_calls(h, &h->queue, LM_IS_OK(st) ? lm_status(LUMEN_INTERNAL, "actor in state %s", info->state)
                                              : lm_status_wrap(st, "looking up the actor"));
    }
    kick(h);
    pthread_mutex_unlock(&c->mu);
    lm_rpc_message_free(reply);
}

/* Asks the scheduler where the actor lives now (mu held, h not busy). */
static void resolve(actor_handle *h) {
    lumen_client *c = h->c;
    h->stalled = false;
    Lumen__GetActorRequest req = LUMEN__GET_ACTOR_REQUEST__INIT;
    req.actor_id = (ProtobufCBinaryData){LM_ID_BYTES, h->id.bytes};
    req.wait_ms = RESOLVE_WAIT_MS;
    req.after_incarnation = h->incarnation;
    h->busy = true;
    lumen_status st = lm_rpc_unary_async(c->rpc, c->address, c->get_actor, &req.base,
                                         RESOLVE_WAIT_MS + c->timeout_ms, on_resolved, h);
    if (!LM_IS_OK(st)) {
        h->busy = false;
        fail_calls(h, &h->queue, lm_status_wrap(st, "looking up the actor"));
    }
}

/* Whether the calls of a failed CallActor may have run: a worker that
 * refused them (not its actor, or not this incarnation) ran none. */
static bool may_have_run(lumen_code code) { return code != LUMEN_NOT_FOUND && code != LUMEN_FAILED_PRECONDITION; }

static void on_called(void *arg, lumen_status st, ProtobufCMessage *reply) {
    actor_handle *h = arg;
    lumen_client *c = h->c;
    Lumen__ActorCallReply *r = (Lumen__ActorCallReply *)reply;
    if (!call_back(h, reply)) return;
    if (LM_IS_OK(st) && r->n_results == h->sent.n) {
        call_queue again = {0}; /* not run (the actor died before them), or to run again */
        call_queue lost = {0};  /* its process died under it, and its retries are used up */
        lumen_status lost_why = lm_status(LUMEN_ACTOR_DIED, "the actor died while the call ran");
        for (size_t i = 0; i < r->n_results; i++) {
            const Lumen__TaskResult *tr = r->results[i];
            lm_id task;
            lm_id_from_bytes(h->sent.items[i].spec->task_id.data, LM_ID_BYTES, &task);
            lumen_code code = tr->status ? (lumen_code)tr->status->code : LUMEN_OK;
            if (code != LUMEN_OK && tr->crashed) {
                /* A system failure, as in Ray: the call runs again on the
                 * next incarnation while max_task_retries allows. */
                queued_call call = h->sent.items[i];
                h->sent.items[i].spec = NULL;
                if (++call.attempts <= h->max_task_retries) {
                    queue_push(&again, call);
                } else {
                    lost_why = lm_status(code, "%s (max_task_retries is %u)", tr->status->message, h->max_task_retries);
                    settle(c, task, lost_why, NULL, 0, NULL, 0);
                    queue_push(&lost, call);
                }
            } else if (code == LUMEN_ABORTED) {
                queue_push(&again, h->sent.items[i]);
                h->sent.items[i].spec = NULL;
            } else if (code != LUMEN_OK) {
                settle(c, task, lm_status(code, "%s", tr->status->message), NULL, 0, NULL, 0);
            } else if (tr->n_inline_results > 0) {
                ProtobufCBinaryData v = tr->inline_results[0];
                uint8_t *copy = malloc(v.len ? v.len : 1);
                if (copy != NULL && v.len) memcpy(copy, v.data, v.len);
                settle(c, task, copy ? lm_ok() : lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory"), copy,
                       v.len, NULL, 0);
            } else {
                settle(c, task, lm_ok(), NULL, 0, tr->location, tr->n_result_sizes ? tr->result_sizes[0] : 0);
            }
        }
        queue_free(&h->sent);
        /* The worker left these to us (it does not know our retries): the
         * scheduler hears of their failure, with its cause, from here (one
         * death: the cause is the same for all). */
        report_failures(h, lost.items, lost.n, lost_why);
        queue_free(&lost);
        if (again.n > 0) {
            queue_prepend(&h->queue, &again);
            free(h->addr);
            h->addr = NULL; /* the next incarnation, or the news of its death */
        }
        pthread_cond_broadcast(&c->result_cond);
    } else {
        if (LM_IS_OK(st))
            st = lm_status(LUMEN_INTERNAL, "the worker answered %zu results for %zu calls", r->n_results, h->sent.n);
        /* The actor is not where we thought: calls that may have run go
         * again only while retries allow; the others wait for the next
         * incarnation. */
        bool ran = may_have_run(st.code);
        call_queue again = {0}, failed = {0};
        for (size_t i = 0; i < h->sent.n; i++) {
            queued_call call = h->sent.items[i];
            if (ran) call.attempts++;
            if (!ran || call.attempts <= h->max_task_retries) queue_push(&again, call);
            else queue_push(&failed, call);
        }
        free(h->sent.items);
        h->sent = (call_queue){0};
        char hex[LM_ID_HEX_LEN + 1];
        if (failed.n > 0)
            fail_calls(h, &failed,
                       lm_status(LUMEN_ACTOR_DIED, "actor %s was lost while the call ran (%s); max_task_retries is %u",
                                 lm_id_to_hex(h->id, hex), st.msg, h->max_task_retries));
        queue_prepend(&h->queue, &again);
        free(h->addr);
        h->addr = NULL; /* resolve again: a restart has a new incarnation */
    }
    kick(h);
    pthread_mutex_unlock(&c->mu);
    lm_rpc_message_free(reply);
}

/* Sends what is queued, in order (mu held, h not busy, address known). */
static void send_calls(actor_handle *h) {
    lumen_client *c = h->c;
    size_t n = 0, bytes = 0;
    while (n < h->queue.n && n < BATCH_MAX_CALLS) {
        size_t sz = lumen__task_spec__get_packed_size(h->queue.items[n].spec);
        if (n > 0 && bytes + sz > BATCH_MAX_BYTES) break;
        bytes += sz;
        n++;
    }
    Lumen__TaskSpec **specs = malloc(n * sizeof *specs);
    if (specs == NULL) return; /* retried on the next call or completion */
    for (size_t i = 0; i < n; i++) {
        specs[i] = h->queue.items[i].spec;
        queue_push(&h->sent, h->queue.items[i]);
    }
    memmove(h->queue.items, h->queue.items + n, (h->queue.n - n) * sizeof *h->queue.items);
    h->queue.n -= n;
    Lumen__ActorCallRequest req = LUMEN__ACTOR_CALL_REQUEST__INIT;
    req.actor_id = (ProtobufCBinaryData){LM_ID_BYTES, h->id.bytes};
    req.incarnation = h->incarnation;
    req.n_calls = n;
    req.calls = specs;
    h->busy = true;
    lumen_status st = lm_rpc_unary_async(c->rpc, h->addr, c->call_actor, &req.base, CALL_DEADLINE_MS, on_called, h);
    free(specs);
    if (!LM_IS_OK(st)) { /* no callback comes: handle it as one */
        pthread_mutex_unlock(&c->mu);
        on_called(h, st, NULL);
        pthread_mutex_lock(&c->mu);
    }
}

/* Moves the actor's calls along (mu held): whatever is next, if nothing is
 * in flight. */
static void kick(actor_handle *h) {
    if (h->busy || h->c->closing || h->queue.n == 0) return;
    h->stalled = false;
    if (h->dead) fail_calls(h, &h->queue, h->error);
    else if (h->addr == NULL) resolve(h);
    else send_calls(h);
}

/* ------------------------------------------------------------- handles */

/* The client's handle of an actor, made on first use (mu held). */
static actor_handle *handle_of(lumen_client *c, lm_id id) {
    actor_handle *h = lm_idmap_get(c->actors, id);
    if (h == NULL && (h = calloc(1, sizeof *h)) != NULL) {
        h->c = c;
        h->id = id;
        lm_idmap_put(c->actors, id, h);
    }
    return h;
}

static void handle_free(void *arg, lm_id key, void *value) {
    (void)arg, (void)key;
    actor_handle *h = value;
    if (h->creation != NULL) lm_rpc_message_free(&h->creation->base);
    queue_free(&h->queue);
    queue_free(&h->sent);
    free(h->addr);
    free(h);
}

static void result_entry_free(void *arg, lm_id key, void *value) {
    (void)arg, (void)key;
    result_free(value);
}

void actor_client_init(lumen_client *c) {
    c->actors = lm_idmap_new();
    c->results = lm_idmap_new();
    pthread_cond_init(&c->result_cond, NULL);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "CreateActor", &c->create_actor);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "GetActor", &c->get_actor);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "KillActor", &c->kill_actor);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "TaskDone", &c->task_done);
    lm_rpc_method_find(&lumen__worker__descriptor, "CallActor", &c->call_actor);
}

void actor_client_fini(lumen_client *c) {
    lm_idmap_each(c->actors, handle_free, NULL);
    lm_idmap_free(c->actors);
    lm_idmap_each(c->results, result_entry_free, NULL);
    lm_idmap_free(c->results);
    pthread_cond_destroy(&c->result_cond);
}

/* ------------------------------------------------------------- the API */

lumen_status lumen_actor_new(lumen_client *c, const char *class_name, const lumen_arg *args, size_t nargs,
                             const lumen_actor_opts *opts, lumen_actor *out) {
    if (class_name == NULL || *class_name == '\0') return lm_status(LUMEN_INVALID_ARGUMENT, "no actor class name");
    if (c->local != NULL) return local_actor_new(c, class_name, args, nargs, opts, out);
    Lumen__TaskSpec *spec = NULL;
    lumen_call_opts call = {.timeout_ms = opts ? opts->timeout_ms : 0,
                            .memory_limit = opts ? opts->memory_limit : 0,
                            .library = opts ? opts->library : NULL};
    lumen_status st = client_spec_new(c, class_name, args, nargs, &call, &spec);
    if (!LM_IS_OK(st)) return st;
    lm_id id = lm_id_random();
    spec->actor_id = client_bytes_copy(id.bytes, LM_ID_BYTES);
    Lumen__CreateActorRequest *req = malloc(sizeof *req);
    if (req == NULL) {
        lm_rpc_message_free(&spec->base);
        return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    }
    lumen__create_actor_request__init(req);
    req->spec = spec;
    req->name = strdup(opts && opts->name ? opts->name : "");
    req->max_restarts = opts ? opts->max_restarts : 0;
    req->max_task_retries = opts ? opts->max_task_retries : 0;
    /* Idempotent (the actor's id is ours): sent again while the scheduler
     * is away, within the client's timeout. */
    int64_t deadline = (int64_t)lm_mono_ms() + c->timeout_ms;
    do {
        ProtobufCMessage *reply = NULL;
        st = req->name ? lm_rpc_unary(c->rpc, c->address, c->create_actor, &req->base, &reply, c->timeout_ms)
                       : lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
        lm_rpc_message_free(reply);
        if (st.code != LUMEN_UNAVAILABLE || (int64_t)lm_mono_ms() >= deadline) break;
        lm_sleep_ms(200);
    } while (true);
    actor_handle *h = NULL;
    if (LM_IS_OK(st)) {
        pthread_mutex_lock(&c->mu);
        h = handle_of(c, id);
        if (h != NULL) {
            h->max_task_retries = req->max_task_retries;
            h->creation = req; /* kept: a restarted scheduler hears it again */
        }
        pthread_mutex_unlock(&c->mu);
    }
    if (h == NULL) lm_rpc_message_free(&req->base);
    if (!LM_IS_OK(st)) return st;
    *out = id_actor(id);
    return lm_ok();
}

lumen_status lumen_actor_call(lumen_client *c, lumen_actor actor, const char *method, const lumen_arg *args,
                              size_t nargs, lumen_ref *out) {
    if (method == NULL || *method == '\0') return lm_status(LUMEN_INVALID_ARGUMENT, "no method name");
    if (c->local != NULL) return local_actor_call(c, actor, method, args, nargs, out);
    Lumen__TaskSpec *spec = NULL;
    /* The library (if any) came with the constructor: the executor has it. */
    lumen_status st = client_spec_new(c, method, args, nargs, NULL, &spec);
    if (!LM_IS_OK(st)) return st;
    free(spec->library_id.data);
    spec->library_id = (ProtobufCBinaryData){0};
    spec->method = strdup(method);
    lm_id task;
    lm_id_from_bytes(spec->task_id.data, spec->task_id.len, &task);
    call_result *r = calloc(1, sizeof *r);
    pthread_mutex_lock(&c->mu);
    actor_handle *h = handle_of(c, actor_id(actor));
    if (r != NULL) r->h = h;
    if (h == NULL || r == NULL || spec->method == NULL) {
        pthread_mutex_unlock(&c->mu);
        free(r);
        lm_rpc_message_free(&spec->base);
        return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    }
    lm_id result = lm_id_for_return(task, 0);
    lm_idmap_put(c->results, result, r);
    queue_push(&h->queue, (queued_call){spec, 0});
    kick(h);
    pthread_mutex_unlock(&c->mu);
    *out = id_ref(result);
    return lm_ok();
}

lumen_status lumen_actor_kill(lumen_client *c, lumen_actor actor) {
    if (c->local != NULL) return local_actor_kill(c, actor);
    Lumen__KillActorRequest req = LUMEN__KILL_ACTOR_REQUEST__INIT;
    lm_id id = actor_id(actor);
    req.actor_id = (ProtobufCBinaryData){LM_ID_BYTES, id.bytes};
    ProtobufCMessage *reply = NULL;
    lumen_status st = lm_rpc_unary(c->rpc, c->address, c->kill_actor, &req.base, &reply, c->timeout_ms);
    bool found = LM_IS_OK(st) && ((Lumen__KillActorReply *)reply)->found;
    lm_rpc_message_free(reply);
    char hex[LM_ID_HEX_LEN + 1];
    if (LM_IS_OK(st) && !found) st = lm_status(LUMEN_NOT_FOUND, "actor %s is unknown", lm_id_to_hex(id, hex));
    if (LM_IS_OK(st)) { /* ended for good: a restarted scheduler must not hear its creation again */
        pthread_mutex_lock(&c->mu);
        actor_handle *h = lm_idmap_get(c->actors, id);
        if (h != NULL && h->creation != NULL) {
            lm_rpc_message_free(&h->creation->base);
            h->creation = NULL;
        }
        pthread_mutex_unlock(&c->mu);
    }
    return st;
}

lumen_status lumen_actor_get_named(lumen_client *c, const char *name, int64_t timeout_ms, lumen_actor *out) {
    if (name == NULL || *name == '\0') return lm_status(LUMEN_INVALID_ARGUMENT, "no actor name");
    if (c->local != NULL) return local_actor_get_named(c, name, out);
    Lumen__GetActorRequest req = LUMEN__GET_ACTOR_REQUEST__INIT;
    req.name = (char *)name;
    req.wait_ms = timeout_ms > 0 ? (uint64_t)timeout_ms : 0;
    ProtobufCMessage *reply = NULL;
    lumen_status st =
        lm_rpc_unary(c->rpc, c->address, c->get_actor, &req.base, &reply, (int64_t)req.wait_ms + c->timeout_ms);
    if (!LM_IS_OK(st)) return st;
    Lumen__ActorInfo *info = (Lumen__ActorInfo *)reply;
    lm_id id;
    if (!lm_id_from_bytes(info->actor_id.data, info->actor_id.len, &id)) {
        lm_rpc_message_free(reply);
        return lm_status(LUMEN_INTERNAL, "the scheduler answered a %zu-byte actor id", info->actor_id.len);
    }
    pthread_mutex_lock(&c->mu);
    actor_handle *h = handle_of(c, id);
    if (h != NULL) h->max_task_retries = info->max_task_retries;
    pthread_mutex_unlock(&c->mu);
    lm_rpc_message_free(reply);
    *out = id_actor(id);
    return lm_ok();
}

typedef struct handle_list {
    Lumen__CreateActorRequest **items;
    size_t n;
} handle_list;

static void collect_creation(void *arg, lm_id key, void *value) {
    (void)key;
    handle_list *l = arg;
    actor_handle *h = value;
    if (h->creation != NULL && !h->dead) l->items[l->n++] = h->creation; /* a dead actor stays dead */
}

/* The outcomes of our calls that only a scheduler's memory held: small
 * values and failures (a stored value is in the stores' directory). */
typedef struct outcome_list {
    lumen_client *c;
    Lumen__TaskResult *results;
    Lumen__Status *statuses;
    ProtobufCBinaryData *values;
    lm_id *tasks;
    size_t n;
} outcome_list;

static void collect_outcome(void *arg, lm_id key, void *value) {
    outcome_list *l = arg;
    call_result *r = value;
    if (!r->done || r->location != NULL) return;
    size_t i = l->n++;
    l->tasks[i] = lm_id_task_of(key);
    Lumen__TaskResult *tr = &l->results[i];
    lumen__task_result__init(tr);
    tr->task_id = (ProtobufCBinaryData){LM_ID_BYTES, l->tasks[i].bytes};
    tr->job_id = (ProtobufCBinaryData){LM_ID_BYTES, l->c->job.bytes};
    tr->actor_id = (ProtobufCBinaryData){LM_ID_BYTES, r->h->id.bytes};
    if (LM_IS_OK(r->status)) {
        l->values[i] = (ProtobufCBinaryData){r->len, r->data};
        tr->n_inline_results = 1;
        tr->inline_results = &l->values[i];
    } else {
        lumen__status__init(&l->statuses[i]);
        l->statuses[i].code = r->status.code;
        l->statuses[i].message = r->status.msg;
        tr->status = &l->statuses[i];
    }
}

/* Reports them again, in batches of at most BATCH_MAX_CALLS calls and
 * about BATCH_MAX_BYTES. Idempotent: a result the scheduler knows stays. */
static void report_outcomes(lumen_client *c) {
    size_t n = lm_idmap_count(c->results);
    outcome_list l = {c, calloc(n + 1, sizeof *l.results), calloc(n + 1, sizeof *l.statuses),
                      calloc(n + 1, sizeof *l.values), calloc(n + 1, sizeof *l.tasks), 0};
    Lumen__TaskResult **ptrs = calloc(n + 1, sizeof *ptrs);
    if (l.results != NULL && l.statuses != NULL && l.values != NULL && l.tasks != NULL && ptrs != NULL)
        lm_idmap_each(c->results, collect_outcome, &l);
    for (size_t first = 0; first < l.n;) {
        size_t k = 0, bytes = 0;
        while (first + k < l.n && k < BATCH_MAX_CALLS && (k == 0 || bytes < BATCH_MAX_BYTES)) {
            Lumen__TaskResult *tr = &l.results[first + k];
            bytes += tr->n_inline_results ? tr->inline_results[0].len : 0;
            ptrs[k++] = tr;
        }
        Lumen__TaskDoneRequest req = LUMEN__TASK_DONE_REQUEST__INIT;
        req.n_results = k;
        req.results = ptrs;
        lm_rpc_unary_async(c->rpc, c->address, c->task_done, &req.base, c->timeout_ms, on_reported, NULL);
        first += k;
    }
    free(l.results);
    free(l.statuses);
    free(l.values);
    free(l.tasks);
    free(ptrs);
}

/* Calls held back while the scheduler could not be asked where their actor
 * lives go on now that it answers again. */
static void kick_stalled(void *arg, lm_id key, void *value) {
    (void)arg, (void)key;
    actor_handle *h = value;
    if (h->stalled) kick(h);
}

void actor_resync_locked(lumen_client *c) {
    handle_list l = {calloc(lm_idmap_count(c->actors) + 1, sizeof *l.items), 0};
    if (l.items == NULL) return; /* each look-up that fails sends its creation again */
    lm_idmap_each(c->actors, collect_creation, &l);
    /* Idempotent (the actor's id is ours); an answer changes nothing here:
     * the next look-up says how the actor stands. */
    for (size_t i = 0; i < l.n; i++)
        lm_rpc_unary_async(c->rpc, c->address, c->create_actor, &l.items[i]->base, c->timeout_ms, on_recreated, NULL);
    free(l.items);
    report_outcomes(c);
    lm_idmap_each(c->actors, kick_stalled, NULL);
}

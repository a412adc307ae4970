/*
 * client.c - liblumen: a job's connection to the cluster (see lumen.h).
 *
 * Submissions are pipelined: lumen_call queues the task and returns its ref
 * at once; one SubmitTasks is in flight at a time and carries everything
 * queued since the previous one (so batches grow with the load, and tasks
 * reach the scheduler in the order they were made). Anything that reads a
 * result first waits until the scheduler has acknowledged every task made
 * before it.
 *
 * Objects this client put are remembered with their store, so reading them
 * or passing them to tasks needs no scheduler round trip.
 */
#include <lumen/lumen.h>

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "client_internal.h"
#include "clock.h"
#include "objclient.h"
#include "process.h"
#include "rpc.h"
#include "rundir.h"
#include "scheduler.pb-c.h"

#define DEFAULT_ADDRESS "127.0.0.1:7400"
#define SUBMIT_BATCH_MAX 4096

/* ------------------------------------------------------------- helpers */

void lumen_bytes_free(lumen_bytes *b) {
    if (b == NULL) return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

char *lumen_ref_hex(lumen_ref ref, char out[33]) {
    lm_id id;
    memcpy(id.bytes, ref.id, LM_ID_BYTES);
    return lm_id_to_hex(id, out);
}

ProtobufCBinaryData client_bytes_copy(const void *data, size_t n) {
    ProtobufCBinaryData b = {n, malloc(n ? n : 1)};
    if (n) memcpy(b.data, data, n);
    return b;
}

static const char *env_or(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? v : fallback;
}

/* ------------------------------------------------------------- stores */

static lumen_status refresh_stores(lumen_client *c) {
    Lumen__ClusterInfoRequest req = LUMEN__CLUSTER_INFO_REQUEST__INIT;
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_unary(c->rpc, c->address, c->cluster_info, &req.base, &out, c->timeout_ms);
    if (!LM_IS_OK(st)) return st;
    Lumen__ClusterInfoReply *info = (Lumen__ClusterInfoReply *)out;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nstores; i++) free(c->stores[i]);
    c->nstores = 0;
    c->stores = realloc(c->stores, (info->n_nodes + 1) * sizeof *c->stores);
    for (size_t i = 0; i < info->n_nodes; i++)
        if (strcmp(info->nodes[i]->kind, "objstore") == 0) c->stores[c->nstores++] = strdup(info->nodes[i]->addr);
    c->inline_max = info->inline_result_max;
    c->put_replicas = info->put_replicas ? info->put_replicas : 1;
    pthread_mutex_unlock(&c->mu);
    lm_rpc_message_free(out);
    return lm_ok();
}

static void put_info_free(put_info *p) {
    if (p == NULL) return;
    for (size_t i = 0; i < p->n; i++) free(p->locations[i]);
    free(p->locations);
    free(p);
}

/* The stores a put goes to: put_replicas distinct ones (as many as there
 * are), taken round robin; NULL when there is none yet. mu held. */
static put_info *pick_stores_locked(lumen_client *c, uint64_t size) {
    if (c->nstores == 0) return NULL;
    size_t n = c->put_replicas < c->nstores ? c->put_replicas : c->nstores;
    put_info *p = calloc(1, sizeof *p);
    if (p == NULL || (p->locations = calloc(n ? n : 1, sizeof *p->locations)) == NULL) {
        free(p);
        return NULL;
    }
    size_t first = c->next_store++;
    for (size_t i = 0; i < n; i++) p->locations[p->n++] = strdup(c->stores[(first + i) % c->nstores]);
    p->size = size;
    return p;
}

/* Writes the object to the stores of p; the first failure. */
static lumen_status put_copies(lumen_client *c, const put_info *p, lm_id id, const void *data, size_t len) {
    lumen_status st = lm_ok();
    for (size_t i = 0; i < p->n && LM_IS_OK(st); i++) {
        bool already = false;
        st = lm_objstore_put(c->rpc, p->locations[i], id, c->job, data, len,
                             c->timeout_ms + (int64_t)(len >> 20) * 100, &already);
    }
    return st;
}

#define PUT_TRIES 4

static lumen_status put_with_id(lumen_client *c, lm_id id, const void *data, size_t len) {
    /* A store that is gone (or not up yet) is left for others: the list is
     * asked for again, a little later each time. */
    lumen_status st = lm_ok();
    for (int attempt = 0; attempt < PUT_TRIES; attempt++) {
        if (attempt > 0) {
            struct timespec pause = {0, 100L * 1000000L * attempt};
            nanosleep(&pause, NULL);
            st = refresh_stores(c);
            if (!LM_IS_OK(st) && st.code != LUMEN_UNAVAILABLE) return st;
        }
        pthread_mutex_lock(&c->mu);
        put_info *p = pick_stores_locked(c, len);
        pthread_mutex_unlock(&c->mu);
        if (p == NULL) {
            st = lm_status(LUMEN_UNAVAILABLE, "the cluster at %s has no object store yet", c->address);
            continue;
        }
        st = put_copies(c, p, id, data, len);
        if (LM_IS_OK(st)) {
            pthread_mutex_lock(&c->mu);
            put_info *old = lm_idmap_get(c->puts, id);
            lm_idmap_put(c->puts, id, p);
            pthread_mutex_unlock(&c->mu);
            put_info_free(old);
            return lm_ok();
        }
        put_info_free(p);
        if (st.code != LUMEN_UNAVAILABLE && st.code != LUMEN_CANCELLED) return st;
    }
    return st;
}

lumen_status lumen_put(lumen_client *c, const void *data, size_t len, lumen_ref *out) {
    lm_id id = lm_id_random();
    lumen_status st = put_with_id(c, id, data, len);
    if (LM_IS_OK(st)) *out = id_ref(id);
    return st;
}

/* The stores of an object this client put, copied (NULL otherwise); the
 * caller frees it with put_info_free. */
static put_info *put_copy(lumen_client *c, lm_id id) {
    pthread_mutex_lock(&c->mu);
    put_info *p = lm_idmap_get(c->puts, id), *copy = NULL;
    if (p != NULL && (copy = calloc(1, sizeof *copy)) != NULL &&
        (copy->locations = calloc(p->n ? p->n : 1, sizeof *copy->locations)) != NULL) {
        for (size_t i = 0; i < p->n; i++) copy->locations[copy->n++] = strdup(p->locations[i]);
        copy->size = p->size;
    } else if (copy != NULL) {
        free(copy);
        copy = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    return copy;
}

/* The first store of an object this client put, copied; NULL otherwise. */
static char *put_location(lumen_client *c, lm_id id, uint64_t *size) {
    put_info *p = put_copy(c, id);
    char *loc = p && p->n ? strdup(p->locations[0]) : NULL;
    if (p && size) *size = p->size;
    put_info_free(p);
    return loc;
}

/* ------------------------------------------------------------- submission */

static void send_pending_locked(lumen_client *c);

/* The scheduler is away, or back without our job (it restarted). */
static bool scheduler_forgot(lumen_status st) {
    return st.code == LUMEN_UNAVAILABLE || st.code == LUMEN_FAILED_PRECONDITION;
}

/* A submitted task's spec, kept until its result is freed. */
typedef struct kept_task {
    Lumen__TaskSpec *spec;
    uint64_t seq; /* submission order */
} kept_task;

static void kept_free(kept_task *k) {
    if (k == NULL) return;
    lm_rpc_message_free(&k->spec->base);
    free(k);
}

void client_need_resync(lumen_client *c, lumen_status st) {
    if (scheduler_forgot(st)) c->resync = true;
}

static void on_submitted(void *arg, lumen_status st, ProtobufCMessage *reply) {
    lumen_client *c = arg;
    Lumen__SubmitTasksReply *r = (Lumen__SubmitTasksReply *)reply;
    pthread_mutex_lock(&c->mu);
    /* A scheduler that is away gets these tasks again (they are kept) when
     * it is back; any other failure is for good. */
    if (scheduler_forgot(st)) client_need_resync(c, st);
    else if (!LM_IS_OK(st) && LM_IS_OK(c->submit_error)) c->submit_error = st;
    for (size_t i = 0; r != NULL && i < r->n_results; i++) {
        lumen_status ts = lm_status((lumen_code)r->results[i]->code, "task rejected: %s", r->results[i]->message);
        if (scheduler_forgot(ts)) client_need_resync(c, ts);
        else if (ts.code != LUMEN_OK && LM_IS_OK(c->submit_error)) c->submit_error = ts;
    }
    c->submitting = false;
    c->acked += c->in_flight;
    c->in_flight = 0;
    send_pending_locked(c);
    pthread_cond_broadcast(&c->acked_cond);
    pthread_mutex_unlock(&c->mu);
    lm_rpc_message_free(reply);
}

/* Sends everything queued as one SubmitTasks, unless one is in flight (its
 * completion sends the next). Called with `mu` held; the send is async. */
static void send_pending_locked(lumen_client *c) {
    if (c->submitting || c->npending == 0) return;
    size_t n = c->npending < SUBMIT_BATCH_MAX ? c->npending : SUBMIT_BATCH_MAX;
    Lumen__SubmitTasksRequest req = LUMEN__SUBMIT_TASKS_REQUEST__INIT;
    req.n_tasks = n;
    req.tasks = c->pending;
    c->submitting = true;
    /* Packed inside the call; the specs stay in `kept`. */
    lumen_status st = lm_rpc_unary_async(c->rpc, c->address, c->submit, &req.base, c->timeout_ms, on_submitted, c);
    memmove(c->pending, c->pending + n, (c->npending - n) * sizeof *c->pending);
    c->npending -= n;
    c->in_flight = n;
    if (!LM_IS_OK(st)) { /* no callback will come: count them as answered */
        c->submitting = false;
        c->acked += n;
        c->in_flight = 0;
        if (LM_IS_OK(c->submit_error)) c->submit_error = st;
    }
}

/* Tells a scheduler that (re)started what it may not know: our job, every
 * task we submitted and have not freed (it keeps results still held by
 * object stores and runs the rest again), our actors. Called without mu;
 * holds it while the tasks are sent, so none is freed meanwhile. */
static lumen_status job_call(lumen_client *c, lm_rpc_method m);

typedef struct kept_list {
    kept_task **items;
    size_t n;
} kept_list;

static void collect_kept(void *arg, lm_id key, void *value) {
    (void)key;
    kept_list *l = arg;
    l->items[l->n++] = value;
}

static int by_submission(const void *a, const void *b) {
    uint64_t x = (*(kept_task *const *)a)->seq, y = (*(kept_task *const *)b)->seq;
    return x < y ? -1 : x > y;
}

static lumen_status resync(lumen_client *c) {
    pthread_mutex_lock(&c->mu);
    bool needed = c->resync;
    c->resync = false;
    pthread_mutex_unlock(&c->mu);
    if (!needed) return lm_ok();
    lumen_status st = c->joined ? lm_ok() : job_call(c, c->start_job);
    pthread_mutex_lock(&c->mu);
    kept_list all = {calloc(lm_idmap_count(c->kept) + 1, sizeof *all.items), 0};
    Lumen__TaskSpec **specs = calloc(lm_idmap_count(c->kept) + 1, sizeof *specs);
    if (all.items == NULL || specs == NULL) st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    else lm_idmap_each(c->kept, collect_kept, &all);
    /* In submission order, so a task's producers are known before it. */
    if (all.n > 0) qsort(all.items, all.n, sizeof *all.items, by_submission);
    for (size_t i = 0; i < all.n; i++) specs[i] = all.items[i]->spec;
    for (size_t i = 0; LM_IS_OK(st) && i < all.n; i += SUBMIT_BATCH_MAX) {
        Lumen__SubmitTasksRequest req = LUMEN__SUBMIT_TASKS_REQUEST__INIT;
        req.n_tasks = all.n - i < SUBMIT_BATCH_MAX ? all.n - i : SUBMIT_BATCH_MAX;
        req.tasks = specs + i;
        req.resubmit = true;
        ProtobufCMessage *out = NULL;
        st = lm_rpc_unary(c->rpc, c->address, c->submit, &req.base, &out, c->timeout_ms);
        lm_rpc_message_free(out);
    }
    free(all.items);
    free(specs);
    if (!LM_IS_OK(st)) client_need_resync(c, st);
    pthread_mutex_unlock(&c->mu);
    if (LM_IS_OK(st)) st = actor_resync(c);
    if (!LM_IS_OK(st)) {
        pthread_mutex_lock(&c->mu);
        client_need_resync(c, st);
        pthread_mutex_unlock(&c->mu);
    }
    return st;
}

/* Waits until every task queued so far reached the scheduler. */
static lumen_status wait_submitted(lumen_client *c, int64_t timeout_ms) {
    struct timespec until = lm_timespec_in(CLOCK_REALTIME, timeout_ms);
    pthread_mutex_lock(&c->mu);
    uint64_t target = c->queued;
    send_pending_locked(c);
    int rc = 0;
    while (c->acked < target && rc == 0) rc = pthread_cond_timedwait(&c->acked_cond, &c->mu, &until);
    lumen_status st = c->submit_error;
    bool late = c->acked < target;
    pthread_mutex_unlock(&c->mu);
    if (late) return lm_status(LUMEN_DEADLINE_EXCEEDED, "tasks not accepted by the scheduler at %s in time", c->address);
    return st;
}

/* The first submission error, if any (then some refs will never exist). */
static lumen_status submit_status(lumen_client *c) {
    pthread_mutex_lock(&c->mu);
    lumen_status st = c->submit_error;
    pthread_mutex_unlock(&c->mu);
    return st;
}

lumen_status client_make_arg(lumen_client *c, const lumen_arg *in, Lumen__Arg *out) {
    lumen__arg__init(out);
    if (in->is_ref) {
        lm_id id = ref_id(in->ref);
        out->value_case = LUMEN__ARG__VALUE_REF;
        out->ref = client_bytes_copy(id.bytes, LM_ID_BYTES);
        put_info *p = put_copy(c, id);
        if (p != NULL && p->n > 0) { /* our put: its stores, the first one and the copies */
            out->location = p->locations[0];
            out->size = p->size;
            out->n_replicas = p->n - 1;
            out->replicas = p->n > 1 ? p->locations : NULL;
            if (p->n > 1) memmove(p->locations, p->locations + 1, (p->n - 1) * sizeof *p->locations);
            else free(p->locations);
            free(p); /* the strings now belong to the arg */
            return lm_ok();
        }
        put_info_free(p);
        pthread_mutex_lock(&c->mu);
        actor_result_to_arg(c, id, out); /* one of our actor calls' results */
        pthread_mutex_unlock(&c->mu);
        return lm_ok();
    }
    pthread_mutex_lock(&c->mu);
    uint64_t inline_max = c->inline_max;
    pthread_mutex_unlock(&c->mu);
    if (in->len > inline_max) { /* big values travel through the object store */
        lm_id id = lm_id_random();
        lumen_status st = put_with_id(c, id, in->data, in->len);
        if (!LM_IS_OK(st)) return st;
        lumen_arg ref = lumen_arg_ref(id_ref(id));
        return client_make_arg(c, &ref, out);
    }
    out->value_case = LUMEN__ARG__VALUE_INLINE;
    out->inline_ = client_bytes_copy(in->data, in->len);
    return lm_ok();
}

lumen_status client_spec_new(lumen_client *c, const char *function, const lumen_arg *args, size_t nargs,
                             uint32_t max_retries, int64_t timeout_ms, uint64_t memory_limit,
                             const lumen_ref *library, Lumen__TaskSpec **out) {
    *out = NULL;
    lm_id task = lm_id_random();
    Lumen__TaskSpec *spec = malloc(sizeof *spec);
    if (spec == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    lumen__task_spec__init(spec);
    spec->task_id = client_bytes_copy(task.bytes, LM_ID_BYTES);
    spec->job_id = client_bytes_copy(c->job.bytes, LM_ID_BYTES);
    spec->function = strdup(function);
    spec->num_returns = 1;
    spec->max_retries = max_retries;
    spec->timeout_ms = timeout_ms > 0 ? (uint64_t)timeout_ms : 0;
    spec->memory_limit = memory_limit;
    spec->args = calloc(nargs ? nargs : 1, sizeof *spec->args);
    lumen_status st = lm_ok();
    for (size_t i = 0; i < nargs && LM_IS_OK(st); i++) {
        spec->args[i] = malloc(sizeof *spec->args[i]);
        spec->n_args++;
        st = client_make_arg(c, &args[i], spec->args[i]);
    }
    pthread_mutex_lock(&c->mu);
    bool has_lib = library != NULL || c->has_library;
    lm_id lib = library != NULL ? ref_id(*library) : c->library;
    pthread_mutex_unlock(&c->mu);
    if (LM_IS_OK(st) && has_lib) {
        spec->library_id = client_bytes_copy(lib.bytes, LM_ID_BYTES);
        spec->library_location = put_location(c, lib, NULL);
        if (spec->library_location == NULL)
            st = lm_status(LUMEN_NOT_FOUND, "the library was not uploaded by this client");
    }
    if (!LM_IS_OK(st)) {
        lm_rpc_message_free(&spec->base);
        return st;
    }
    *out = spec;
    return lm_ok();
}

lumen_status lumen_call(lumen_client *c, const char *function, const lumen_arg *args, size_t nargs,
                        const lumen_call_opts *opts, lumen_ref *out) {
    if (function == NULL || *function == '\0') return lm_status(LUMEN_INVALID_ARGUMENT, "no function name");
    Lumen__TaskSpec *spec = NULL;
    lumen_status st = client_spec_new(c, function, args, nargs, opts ? opts->max_retries : 0,
                                      opts ? opts->timeout_ms : 0, opts ? opts->memory_limit : 0,
                                      opts ? opts->library : NULL, &spec);
    if (!LM_IS_OK(st)) return st;
    lm_id task;
    lm_id_from_bytes(spec->task_id.data, spec->task_id.len, &task);
    kept_task *k = malloc(sizeof *k);
    if (k == NULL) {
        lm_rpc_message_free(&spec->base);
        return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    }
    pthread_mutex_lock(&c->mu);
    if (c->npending == c->cap_pending) {
        c->cap_pending = c->cap_pending ? 2 * c->cap_pending : 64;
        c->pending = realloc(c->pending, c->cap_pending * sizeof *c->pending);
    }
    c->pending[c->npending++] = spec; /* borrowed from `kept` */
    *k = (kept_task){spec, c->queued++};
    lm_idmap_put(c->kept, task, k);
    send_pending_locked(c);
    pthread_mutex_unlock(&c->mu);
    *out = id_ref(lm_id_for_return(task, 0));
    return lm_ok();
}

lumen_status lumen_map(lumen_client *c, const char *function, const lumen_arg *inputs, size_t n,
                       const lumen_call_opts *opts, lumen_ref *out) {
    for (size_t i = 0; i < n; i++) {
        lumen_status st = lumen_call(c, function, &inputs[i], 1, opts, &out[i]);
        if (!LM_IS_OK(st)) return lm_status_wrap(st, "map input %zu", i);
    }
    return lm_ok();
}

lumen_status lumen_reduce(lumen_client *c, const char *function, const lumen_ref *refs, size_t n,
                          const lumen_call_opts *opts, lumen_ref *out) {
    if (n == 0) return lm_status(LUMEN_INVALID_ARGUMENT, "nothing to reduce");
    lumen_ref *level = malloc(n * sizeof *level);
    memcpy(level, refs, n * sizeof *level);
    lumen_status st = lm_ok();
    /* Pairwise, level by level: a tree of depth log2(n) inside the cluster. */
    while (n > 1 && LM_IS_OK(st)) {
        size_t next = 0;
        for (size_t i = 0; i + 1 < n && LM_IS_OK(st); i += 2) {
            lumen_arg pair[2] = {lumen_arg_ref(level[i]), lumen_arg_ref(level[i + 1])};
            st = lumen_call(c, function, pair, 2, opts, &level[next++]);
        }
        if (n % 2 == 1) level[next++] = level[n - 1];
        n = next;
    }
    if (LM_IS_OK(st)) *out = level[0];
    free(level);
    return st;
}

/* ------------------------------------------------------------- results */

/* Asks the scheduler for the states of ids, waiting up to timeout_ms for
 * num_ready of them (0: no wait). */
static lumen_status wait_objects(lumen_client *c, const lm_id *ids, size_t n, size_t num_ready, int64_t timeout_ms,
                                 Lumen__WaitObjectsReply **reply) {
    /* The submissions carrying these refs may still be on their way: the
     * scheduler waits for them instead of answering NOT_FOUND. */
    pthread_mutex_lock(&c->mu);
    send_pending_locked(c);
    pthread_mutex_unlock(&c->mu);
    ProtobufCBinaryData *raw = malloc((n ? n : 1) * sizeof *raw);
    for (size_t i = 0; i < n; i++) raw[i] = (ProtobufCBinaryData){LM_ID_BYTES, (uint8_t *)ids[i].bytes};
    Lumen__WaitObjectsRequest req = LUMEN__WAIT_OBJECTS_REQUEST__INIT;
    req.n_object_ids = n;
    req.object_ids = raw;
    req.num_ready = (uint32_t)num_ready;
    req.park_unknown = true;
    req.job_id = (ProtobufCBinaryData){LM_ID_BYTES, c->job.bytes};
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_unary(c->rpc, c->address, c->wait, &req.base, &out, timeout_ms > 0 ? timeout_ms : 1);
    free(raw);
    *reply = (Lumen__WaitObjectsReply *)out;
    if (LM_IS_OK(st) && (*reply)->n_objects != n) {
        st = lm_status(LUMEN_INTERNAL, "scheduler answered %zu states for %zu objects", (*reply)->n_objects, n);
        lm_rpc_message_free(out);
        *reply = NULL;
    }
    return st;
}

/* A scheduler call failed UNAVAILABLE: if time is left, pauses (the
 * scheduler may be restarting) and marks the client for a resync; true to
 * try again. */
static bool retry_later(lumen_client *c, lumen_status st, int64_t deadline) {
    pthread_mutex_lock(&c->mu);
    client_need_resync(c, st);
    pthread_mutex_unlock(&c->mu);
    int64_t left = deadline - (int64_t)lm_mono_ms();
    if (left <= 0) return false;
    int64_t pause = left < 200 ? left : 200;
    struct timespec ts = {0, (long)pause * 1000000L};
    nanosleep(&ts, NULL);
    return true;
}

/* Reads an object from the store the scheduler named. *retry is set when
 * the store failed us: the object may be being rebuilt elsewhere. */
static lumen_status read_located(lumen_client *c, lm_id id, const Lumen__ObjectState *o, lumen_bytes *out,
                                 bool *retry) {
    size_t len = 0;
    lumen_status st = lm_objstore_get(c->rpc, o->locations[0], id, false,
                                      c->timeout_ms + (int64_t)(o->size >> 20) * 100, &out->data, &len);
    out->len = len;
    *retry = st.code == LUMEN_UNAVAILABLE;
    return st;
}

lumen_status lumen_get(lumen_client *c, lumen_ref ref, int64_t timeout_ms, lumen_bytes *out) {
    out->data = NULL;
    out->len = 0;
    lm_id id = ref_id(ref);
    char hex[LM_ID_HEX_LEN + 1];
    lm_id_to_hex(id, hex);
    put_info *p = put_copy(c, id);
    if (p != NULL) { /* our put: read a copy whose store is there */
        lumen_status st = lm_status(LUMEN_OBJECT_LOST, "object %s has no copy", hex);
        for (size_t i = 0; i < p->n; i++) {
            st = lm_objstore_get(c->rpc, p->locations[i], id, false, timeout_ms > 0 ? timeout_ms : c->timeout_ms,
                                 &out->data, &out->len);
            if (st.code != LUMEN_UNAVAILABLE) break;
        }
        if (st.code == LUMEN_UNAVAILABLE) /* a put has no lineage: gone with its stores */
            st = lm_status(LUMEN_OBJECT_LOST, "object %s was put to %zu object store(s), which are gone (%s)", hex,
                           p->n, st.msg);
        put_info_free(p);
        return st;
    }
    pthread_mutex_lock(&c->mu);
    bool ours = actor_result_known(c, id);
    pthread_mutex_unlock(&c->mu);
    if (ours) return actor_result_get(c, id, timeout_ms, out);
    int64_t deadline = (int64_t)lm_mono_ms() + timeout_ms;
    for (;;) {
        Lumen__WaitObjectsReply *reply = NULL;
        int64_t left = deadline - (int64_t)lm_mono_ms();
        lumen_status st = resync(c);
        if (LM_IS_OK(st)) st = wait_objects(c, &id, 1, 1, left > 0 ? left : 1, &reply);
        if (scheduler_forgot(st) && retry_later(c, st, deadline)) continue; /* away, or back without us */
        if (st.code == LUMEN_DEADLINE_EXCEEDED) {
            lumen_status submit = submit_status(c);
            if (!LM_IS_OK(submit)) return submit; /* its task never reached the scheduler */
            return lm_status(LUMEN_DEADLINE_EXCEEDED, "object %s not ready after %lld ms", hex, (long long)timeout_ms);
        }
        if (!LM_IS_OK(st)) return st;
        Lumen__ObjectState *o = reply->objects[0];
        bool retry = false;
        if (o->status != NULL && o->status->code != LUMEN_OK) {
            st = lm_status((lumen_code)o->status->code, "%s", o->status->message);
        } else if (o->n_locations == 0) {
            out->len = o->inline_value.len;
            out->data = malloc(out->len ? out->len : 1);
            if (out->len) memcpy(out->data, o->inline_value.data, out->len);
        } else {
            st = read_located(c, id, o, out, &retry);
        }
        lm_rpc_message_free(&reply->base);
        /* Its store went away under us: the scheduler rebuilds the object
         * (or says it is lost); ask again, a little later. */
        if (!retry || (int64_t)lm_mono_ms() >= deadline) return st;
        struct timespec pause = {0, 50 * 1000000L};
        nanosleep(&pause, NULL);
    }
}

lumen_status lumen_wait(lumen_client *c, const lumen_ref *refs, size_t n, size_t num_ready, int64_t timeout_ms,
                        int *ready, size_t *num_done) {
    /* Only results of our own actor calls: answered here, as they arrive. */
    bool all_ours = n > 0;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < n && all_ours; i++) all_ours = actor_result_known(c, ref_id(refs[i]));
    pthread_mutex_unlock(&c->mu);
    if (all_ours) {
        lm_id *ids = malloc(n * sizeof *ids);
        if (ids == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
        for (size_t i = 0; i < n; i++) ids[i] = ref_id(refs[i]);
        lumen_status st = actor_results_wait(c, ids, n, num_ready, timeout_ms, ready, num_done);
        free(ids);
        return st;
    }
    lm_id *ids = malloc((n ? n : 1) * sizeof *ids);
    size_t *index = malloc((n ? n : 1) * sizeof *index);
    size_t asked = 0, local = 0;
    for (size_t i = 0; i < n; i++) {
        lm_id id = ref_id(refs[i]);
        char *loc = put_location(c, id, NULL);
        ready[i] = loc != NULL; /* our own puts are ready */
        if (loc != NULL) local++;
        else ids[asked] = id, index[asked++] = i;
        free(loc);
    }
    size_t want = num_ready > n ? n : num_ready;
    want = want > local ? want - local : 0;
    lumen_status st = lm_ok();
    Lumen__WaitObjectsReply *reply = NULL;
    if (asked) {
        st = wait_objects(c, ids, asked, want, timeout_ms, &reply);
        if (st.code == LUMEN_DEADLINE_EXCEEDED) /* not enough in time: report what is */
            st = wait_objects(c, ids, asked, 0, c->timeout_ms, &reply);
        if (LM_IS_OK(st)) {
            lumen_status submit = submit_status(c);
            if (!LM_IS_OK(submit)) st = submit;
        }
    }
    size_t done = local;
    for (size_t k = 0; reply != NULL && k < asked; k++)
        if (reply->objects[k]->ready) ready[index[k]] = 1, done++;
    if (num_done != NULL) *num_done = done;
    lm_rpc_message_free(reply ? &reply->base : NULL);
    free(ids);
    free(index);
    return st;
}

/* Drops the kept spec of the task that makes result `id` (mu held); a
 * spec not sent yet stays until it is. */
static void forget_task(lumen_client *c, lm_id id) {
    lm_id task = id;
    memset(task.bytes + 12, 0, 4); /* a result id is its task's id and a return number */
    kept_task *k = lm_idmap_get(c->kept, task);
    if (k == NULL) return;
    for (size_t i = 0; i < c->npending; i++)
        if (c->pending[i] == k->spec) return;
    lm_idmap_remove(c->kept, task);
    kept_free(k);
}

static void on_freed(void *arg, lumen_status st, ProtobufCMessage *reply) {
    (void)arg, (void)st; /* frees are advice: a lost one is undone by the job's end */
    lm_rpc_message_free(reply);
}

lumen_status lumen_free(lumen_client *c, const lumen_ref *refs, size_t n) {
    ProtobufCBinaryData *raw = malloc((n ? n : 1) * sizeof *raw);
    size_t nraw = 0;
    for (size_t i = 0; i < n; i++) {
        lm_id id = ref_id(refs[i]);
        pthread_mutex_lock(&c->mu);
        put_info *p = lm_idmap_remove(c->puts, id);
        actor_result_forget(c, id); /* the scheduler holds a copy too: freed below */
        forget_task(c, id);
        pthread_mutex_unlock(&c->mu);
        if (p != NULL) {
            for (size_t k = 0; k < p->n; k++) lm_objstore_delete(c->rpc, p->locations[k], &id, 1, c->timeout_ms, NULL);
            put_info_free(p);
        } else {
            raw[nraw++] = (ProtobufCBinaryData){LM_ID_BYTES, (uint8_t *)refs[i].id};
        }
    }
    lumen_status st = lm_ok();
    if (nraw > 0) {
        /* Nothing to wait for: the scheduler also takes frees of ids it has
         * not seen yet (a submission on its way, an actor call not reported). */
        Lumen__FreeObjectsRequest req = LUMEN__FREE_OBJECTS_REQUEST__INIT;
        req.n_object_ids = nraw;
        req.object_ids = raw;
        req.job_id = (ProtobufCBinaryData){LM_ID_BYTES, c->job.bytes};
        st = lm_rpc_unary_async(c->rpc, c->address, c->free_objects, &req.base, c->timeout_ms, on_freed, NULL);
    }
    free(raw);
    return st;
}

/* ------------------------------------------------------------- libraries */

/* Content address: the first 16 bytes of the file's SHA-256. */
static lm_id content_id(const void *data, size_t len) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    EVP_Digest(data, len, digest, &dlen, EVP_sha256(), NULL);
    lm_id id;
    memcpy(id.bytes, digest, LM_ID_BYTES);
    return id;
}

lumen_status lumen_library_upload(lumen_client *c, const char *path, lumen_ref *out) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lm_status(LUMEN_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size == 0) {
        close(fd);
        return lm_status(LUMEN_INVALID_ARGUMENT, "%s is empty or unreadable", path);
    }
    void *data = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (data == MAP_FAILED) return lm_status(LUMEN_IO, "cannot read %s: %s", path, strerror(errno));
    lm_id id = content_id(data, (size_t)sb.st_size);
    lumen_status st = put_with_id(c, id, data, (size_t)sb.st_size);
    munmap(data, (size_t)sb.st_size);
    if (!LM_IS_OK(st)) return lm_status_wrap(st, "uploading %s", path);
    pthread_mutex_lock(&c->mu);
    c->library = id;
    c->has_library = true;
    pthread_mutex_unlock(&c->mu);
    if (out != NULL) *out = id_ref(id);
    return lm_ok();
}

/* ------------------------------------------------------------- lifecycle */

static lumen_status job_call(lumen_client *c, lm_rpc_method m) {
    Lumen__JobRequest req = LUMEN__JOB_REQUEST__INIT;
    req.job_id = (ProtobufCBinaryData){LM_ID_BYTES, c->job.bytes};
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_unary(c->rpc, c->address, m, &req.base, &out, c->timeout_ms);
    lm_rpc_message_free(out);
    return st;
}

static void free_put(void *arg, lm_id key, void *value) {
    (void)arg, (void)key;
    put_info_free(value);
}

static void free_kept_entry(void *arg, lm_id key, void *value) {
    (void)arg, (void)key;
    kept_free(value);
}

static void client_free(lumen_client *c) {
    pthread_mutex_lock(&c->mu);
    c->closing = true;
    pthread_mutex_unlock(&c->mu);
    lm_rpc_client_free(c->rpc); /* runs the last submission and actor callbacks */
    actor_client_fini(c);
    free(c->pending); /* its specs are in `kept` */
    lm_idmap_each(c->kept, free_kept_entry, NULL);
    lm_idmap_free(c->kept);
    lm_idmap_each(c->puts, free_put, NULL);
    lm_idmap_free(c->puts);
    for (size_t i = 0; i < c->nstores; i++) free(c->stores[i]);
    free(c->stores);
    free(c->address);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->acked_cond);
    free(c);
}

/* The usual causes of a refused connection, for its message. */
static const char *connect_hint(lumen_code code, const lm_rpc_tls *tls) {
    if (code == LUMEN_UNAUTHENTICATED) return " (its token: opts.token, LUMEN_TOKEN or `lumen start`'s run dir)";
    if (code != LUMEN_UNAVAILABLE) return "";
    return tls->ca_file[0] ? " (is it up? Over TLS: are tls_ca, tls_cert and tls_key right?)"
                           : " (is it up? Does it want TLS: tls_ca or LUMEN_TLS_CA?)";
}

/* Worth waiting for: nothing listens at the address (yet), or a process
 * that did died under the call (it had accepted the connection, so gRPC
 * does not say "failed to connect"): the scheduler may be restarting.
 * Anything else that stops the connection (a TLS mismatch) or the call (a
 * wrong token) is said at once. */
static bool scheduler_restarting(lumen_status st) {
    return st.code == LUMEN_UNAVAILABLE &&
           (strstr(st.msg, "Connection refused") != NULL || strstr(st.msg, "Connection reset") != NULL ||
            strstr(st.msg, "failed to connect") == NULL);
}

/* Learns the object stores and starts the job, trying again while nothing
 * listens at the scheduler's address (a restart takes a moment) for up to
 * wait_ms (0: CONNECT_WAIT_MS, negative: once), backing off from 50 ms. */
static lumen_status first_contact(lumen_client *c, int64_t wait_ms) {
    uint64_t until = lm_mono_ms() + (uint64_t)(wait_ms == 0 ? CONNECT_WAIT_MS : wait_ms > 0 ? wait_ms : 0);
    int64_t pause_ms = 50;
    for (;;) {
        lumen_status st = refresh_stores(c);
        if (LM_IS_OK(st) && !c->joined) st = job_call(c, c->start_job);
        uint64_t now = lm_mono_ms();
        if (!scheduler_restarting(st) || now >= until) return st;
        if ((uint64_t)pause_ms > until - now) pause_ms = (int64_t)(until - now);
        struct timespec pause = {pause_ms / 1000, (pause_ms % 1000) * 1000000};
        nanosleep(&pause, NULL);
        pause_ms = pause_ms * 2 > 500 ? 500 : pause_ms * 2;
    }
}

/* A connect option if given, else its environment variable. */
static const char *opt_or_env(const char *opt, const char *env) { return opt != NULL ? opt : env_or(env, ""); }

lumen_status lumen_connect(const char *address, const lumen_connect_opts *opts, lumen_client **out) {
    *out = NULL;
    lm_process_tune_malloc();
    lumen_client *c = calloc(1, sizeof *c);
    c->address = strdup(address ? address : env_or("LUMEN_ADDRESS", env_or("LUMEN_SCHEDULER_ADDR", DEFAULT_ADDRESS)));
    c->timeout_ms = opts && opts->rpc_timeout_ms > 0 ? opts->rpc_timeout_ms : DEFAULT_TIMEOUT_MS;
    c->job = lm_id_random();
    c->puts = lm_idmap_new();
    c->kept = lm_idmap_new();
    c->inline_max = 100 * 1024;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->acked_cond, NULL);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "SubmitTasks", &c->submit);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "WaitObjects", &c->wait);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "GetClusterInfo", &c->cluster_info);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "FreeObjects", &c->free_objects);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "StartJob", &c->start_job);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "EndJob", &c->end_job);
    actor_client_init(c);
    char *token = lm_cluster_token(opts ? opts->token : NULL, NULL);
    lm_rpc_client_opts ropts = {
        .token = token,
        .tls = {opt_or_env(opts ? opts->tls_cert : NULL, "LUMEN_TLS_CERT"),
                opt_or_env(opts ? opts->tls_key : NULL, "LUMEN_TLS_KEY"),
                opt_or_env(opts ? opts->tls_ca : NULL, "LUMEN_TLS_CA")}};
    lumen_status st = lm_rpc_client_new(&ropts, &c->rpc);
    free(token);
    if (LM_IS_OK(st) && opts != NULL && opts->job != NULL) {
        c->joined = true;
        if (!lm_id_from_hex(opts->job, &c->job))
            st = lm_status(LUMEN_INVALID_ARGUMENT, "job \"%s\" is not 32 hex digits", opts->job);
    }
    if (LM_IS_OK(st)) st = first_contact(c, opts ? opts->connect_timeout_ms : 0);
    if (!LM_IS_OK(st)) {
        st = lm_status_wrap(st, "cannot connect to the Lumen scheduler at %s%s", c->address,
                            connect_hint(st.code, &ropts.tls));
        client_free(c);
        return st;
    }
    *out = c;
    return lm_ok();
}

void lumen_close(lumen_client *c) {
    if (c == NULL) return;
    wait_submitted(c, c->timeout_ms);
    if (!c->joined) job_call(c, c->end_job); /* the scheduler releases the job's objects and actors */
    client_free(c);
}

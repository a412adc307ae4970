/*
 * client.c - liblumen: a job's connection to the cluster (see lumen.h):
 * connecting, objects (put, get, wait, free), libraries. Submissions and
 * the job's session with the scheduler are session.c's.
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
/* A put waits for an object store (one restarting) up to the client's
 * timeout, asking again this often at first, then up to a second. */
#define PUT_RETRY_MIN_MS 50
#define PUT_RETRY_MAX_MS 1000

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

lumen_status client_refresh_stores(lumen_client *c, uint64_t *epoch) {
    Lumen__ClusterInfoRequest req = LUMEN__CLUSTER_INFO_REQUEST__INIT;
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_unary(c->rpc, c->address, c->cluster_info, &req.base, &out, c->timeout_ms);
    if (!LM_IS_OK(st)) return st;
    Lumen__ClusterInfoReply *info = (Lumen__ClusterInfoReply *)out;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nstores; i++) free(c->stores[i]);
    c->nstores = 0;
    char **stores = realloc(c->stores, (info->n_nodes + 1) * sizeof *c->stores);
    if (stores == NULL) {
        pthread_mutex_unlock(&c->mu);
        lm_rpc_message_free(out);
        return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory reading the cluster's stores");
    }
    c->stores = stores;
    for (size_t i = 0; i < info->n_nodes; i++)
        if (strcmp(info->nodes[i]->kind, "objstore") == 0) c->stores[c->nstores++] = strdup(info->nodes[i]->addr);
    c->inline_max = info->inline_result_max;
    c->put_replicas = info->put_replicas ? info->put_replicas : 1;
    if (epoch != NULL) *epoch = info->epoch;
    pthread_mutex_unlock(&c->mu);
    lm_rpc_message_free(out);
    return lm_ok();
}

static void put_info_free(put_info *p) {
    if (p == NULL) return;
    for (size_t i = 0; i < p->n; i++) free(p->locations[i]);
    free(p->locations);
    free(p->stores);
    free(p);
}

/* Room for n copies (none filled yet); NULL when out of memory. */
static put_info *put_info_new(size_t n, uint64_t size) {
    put_info *p = calloc(1, sizeof *p);
    if (p == NULL) return NULL;
    p->locations = calloc(n ? n : 1, sizeof *p->locations);
    p->stores = calloc(n ? n : 1, sizeof *p->stores);
    p->size = size;
    if (p->locations == NULL || p->stores == NULL) {
        put_info_free(p);
        return NULL;
    }
    return p;
}

/* The stores a put goes to: put_replicas distinct ones (as many as there
 * are), taken round robin; NULL when there is none yet. mu held. */
static put_info *pick_stores_locked(lumen_client *c, uint64_t size) {
    if (c->nstores == 0) return NULL;
    size_t n = c->put_replicas < c->nstores ? c->put_replicas : c->nstores;
    put_info *p = put_info_new(n, size);
    if (p == NULL) return NULL;
    size_t first = c->next_store++;
    for (size_t i = 0; i < n; i++) p->locations[p->n++] = strdup(c->stores[(first + i) % c->nstores]);
    return p;
}

/* Writes the object to the stores of p, noting which incarnation of each
 * took its copy; the first failure. */
static lumen_status put_copies(lumen_client *c, put_info *p, lm_id id, const void *data, size_t len) {
    lumen_status st = lm_ok();
    for (size_t i = 0; i < p->n && LM_IS_OK(st); i++) {
        lm_objstore_put_info info = {0};
        st = lm_objstore_put(c->rpc, p->locations[i], id, c->job, data, len,
                             c->timeout_ms + (int64_t)(len >> 20) * 100, &info);
        p->stores[i] = info.store;
    }
    return st;
}

/* Puts the object to put_replicas stores. A store that is gone (or not up
 * yet: a restart takes a moment) is left for others and the list asked for
 * again, until the client's timeout: a put waits for a store, it does not
 * fail because one is restarting. */
static lumen_status put_with_id(lumen_client *c, lm_id id, const void *data, size_t len) {
    int64_t deadline = (int64_t)lm_mono_ms() + c->timeout_ms;
    int64_t pause = PUT_RETRY_MIN_MS;
    lumen_status st = lm_ok();
    for (bool first = true;; first = false) {
        if (!first) {
            int64_t left = deadline - (int64_t)lm_mono_ms();
            if (left <= 0) return st;
            lm_sleep_ms(pause < left ? pause : left);
            pause = pause * 2 > PUT_RETRY_MAX_MS ? PUT_RETRY_MAX_MS : pause * 2;
            lumen_status info = client_refresh_stores(c, NULL);
            if (!LM_IS_OK(info) && info.code != LUMEN_UNAVAILABLE) return info;
        }
        pthread_mutex_lock(&c->mu);
        put_info *p = pick_stores_locked(c, len);
        pthread_mutex_unlock(&c->mu);
        if (p == NULL) {
            st = lm_status(LUMEN_UNAVAILABLE, "the cluster at %s has no object store (waited %lld ms)", c->address,
                           (long long)c->timeout_ms);
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
}

lumen_status lumen_put(lumen_client *c, const void *data, size_t len, lumen_ref *out) {
    if (c == NULL || out == NULL) return lm_status(LUMEN_INVALID_ARGUMENT, "lumen_put: NULL client or out");
    if (c->local != NULL) return local_put(c, data, len, out);
    lm_id id = lm_id_random();
    lumen_status st = put_with_id(c, id, data, len);
    if (LM_IS_OK(st)) *out = id_ref(id);
    return st;
}

/* The stores of an object this client put, copied (NULL otherwise); the
 * caller frees it with put_info_free. */
static put_info *put_copy(lumen_client *c, lm_id id) {
    pthread_mutex_lock(&c->mu);
    put_info *p = lm_idmap_get(c->puts, id), *copy = p != NULL ? put_info_new(p->n, p->size) : NULL;
    for (size_t i = 0; copy != NULL && i < p->n; i++) {
        copy->locations[copy->n++] = strdup(p->locations[i]);
        copy->stores[i] = p->stores[i];
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

/* ------------------------------------------------------------- tasks */

/* A store incarnation for an Arg: 16 bytes, or empty when not known. */
static ProtobufCBinaryData store_id_bytes(lm_id store) {
    return lm_id_is_zero(store) ? (ProtobufCBinaryData){0, NULL} : client_bytes_copy(store.bytes, LM_ID_BYTES);
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
            out->store_id = store_id_bytes(p->stores[0]);
            out->n_replicas = p->n - 1;
            out->replicas = p->n > 1 ? p->locations : NULL;
            if (p->n > 1) {
                memmove(p->locations, p->locations + 1, (p->n - 1) * sizeof *p->locations);
                out->replica_store_ids = calloc(p->n - 1, sizeof *out->replica_store_ids);
                for (size_t i = 1; out->replica_store_ids != NULL && i < p->n; i++)
                    out->replica_store_ids[out->n_replica_store_ids++] = store_id_bytes(p->stores[i]);
            } else {
                free(p->locations);
            }
            free(p->stores);
            free(p); /* the strings now belong to the arg */
            return lm_ok();
        }
        put_info_free(p);
        pthread_mutex_lock(&c->mu);
        actor_result_to_arg(c, id, out); /* one of our actor calls' results */
        pthread_mutex_unlock(&c->mu);
        return lm_ok();
    }
    if (in->len > 0 && in->data == NULL) return lm_status(LUMEN_INVALID_ARGUMENT, "an argument of %zu bytes at NULL", in->len);
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
                             const lumen_call_opts *opts, Lumen__TaskSpec **out) {
    *out = NULL;
    if (nargs > 0 && args == NULL) return lm_status(LUMEN_INVALID_ARGUMENT, "%zu arguments at NULL", nargs);
    lm_id task = lm_id_random();
    Lumen__TaskSpec *spec = malloc(sizeof *spec);
    if (spec == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    lumen__task_spec__init(spec);
    spec->task_id = client_bytes_copy(task.bytes, LM_ID_BYTES);
    spec->job_id = client_bytes_copy(c->job.bytes, LM_ID_BYTES);
    spec->function = strdup(function);
    spec->num_returns = 1;
    if (opts != NULL) {
        spec->max_retries = opts->max_retries;
        spec->timeout_ms = opts->timeout_ms > 0 ? (uint64_t)opts->timeout_ms : 0;
        spec->memory_limit = opts->memory_limit;
        spec->retry_on_error = opts->retry_on_error != 0;
    }
    spec->args = calloc(nargs ? nargs : 1, sizeof *spec->args);
    lumen_status st = lm_ok();
    for (size_t i = 0; i < nargs && LM_IS_OK(st); i++) {
        spec->args[i] = malloc(sizeof *spec->args[i]);
        spec->n_args++;
        st = client_make_arg(c, &args[i], spec->args[i]);
    }
    const lumen_ref *library = opts ? opts->library : NULL;
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
    if (c == NULL || out == NULL) return lm_status(LUMEN_INVALID_ARGUMENT, "lumen_call: NULL client or out");
    if (function == NULL || *function == '\0') return lm_status(LUMEN_INVALID_ARGUMENT, "no function name");
    if (nargs > 0 && args == NULL) return lm_status(LUMEN_INVALID_ARGUMENT, "%zu arguments at NULL", nargs);
    if (c->local != NULL) return local_call(c, function, args, nargs, opts, out);
    Lumen__TaskSpec *spec = NULL;
    lumen_status st = client_spec_new(c, function, args, nargs, opts, &spec);
    if (!LM_IS_OK(st)) return st;
    lm_id task;
    lm_id_from_bytes(spec->task_id.data, spec->task_id.len, &task);
    pthread_mutex_lock(&c->mu);
    st = c->job_error;
    if (LM_IS_OK(st)) session_submit_locked(c, spec, task);
    pthread_mutex_unlock(&c->mu);
    if (!LM_IS_OK(st)) {
        lm_rpc_message_free(&spec->base);
        return st;
    }
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
    if (level == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
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

static bool was_freed(lumen_client *c, lm_id id) {
    pthread_mutex_lock(&c->mu);
    bool freed = lm_idmap_get(c->freed, id) != NULL;
    pthread_mutex_unlock(&c->mu);
    return freed;
}

static lumen_status freed_status(lm_id id) {
    char hex[LM_ID_HEX_LEN + 1];
    return lm_status(LUMEN_NOT_FOUND, "object %s was freed by this client (lumen_free)", lm_id_to_hex(id, hex));
}

/* Asks the scheduler for the states of ids, waiting up to wait_ms for
 * num_ready of them (0: no wait); *epoch gets the session it asked under. */
static lumen_status wait_objects(lumen_client *c, const lm_id *ids, size_t n, size_t num_ready, int64_t wait_ms,
                                 uint64_t *epoch, Lumen__WaitObjectsReply **reply) {
    *reply = NULL;
    ProtobufCBinaryData *raw = malloc((n ? n : 1) * sizeof *raw);
    if (raw == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < n; i++) raw[i] = (ProtobufCBinaryData){LM_ID_BYTES, (uint8_t *)ids[i].bytes};
    Lumen__WaitObjectsRequest req = LUMEN__WAIT_OBJECTS_REQUEST__INIT;
    req.n_object_ids = n;
    req.object_ids = raw;
    req.num_ready = (uint32_t)num_ready;
    req.wait_ms = wait_ms > 0 ? (uint64_t)wait_ms : 0;
    /* The submissions carrying these refs may still be on their way: the
     * scheduler waits for them instead of answering NOT_FOUND. */
    req.park_unknown = true;
    req.job_id = (ProtobufCBinaryData){LM_ID_BYTES, c->job.bytes};
    pthread_mutex_lock(&c->mu);
    session_pump_locked(c);
    *epoch = req.epoch = c->epoch;
    pthread_mutex_unlock(&c->mu);
    ProtobufCMessage *out = NULL;
    lumen_status st = *epoch == 0 ? lm_status(LUMEN_UNAVAILABLE, "the job's session with %s is being established", c->address)
                                  : lm_rpc_unary(c->rpc, c->address, c->wait, &req.base, &out,
                                                 (int64_t)req.wait_ms + c->timeout_ms);
    free(raw);
    *reply = (Lumen__WaitObjectsReply *)out;
    if (LM_IS_OK(st) && (*reply)->n_objects != n) {
        st = lm_status(LUMEN_INTERNAL, "scheduler answered %zu states for %zu objects", (*reply)->n_objects, n);
        lm_rpc_message_free(out);
        *reply = NULL;
    }
    return st;
}

/* A scheduler call failed: if it went away or restarted and time is left,
 * the session is established again and the caller tries again after a
 * pause; false otherwise. */
static bool retry_later(lumen_client *c, lumen_status st, uint64_t epoch, int64_t deadline) {
    if (!session_scheduler_forgot(st)) return false;
    pthread_mutex_lock(&c->mu);
    session_lost_locked(c, st, epoch);
    session_pump_locked(c);
    bool ended = !LM_IS_OK(c->job_error);
    pthread_mutex_unlock(&c->mu);
    int64_t left = deadline - (int64_t)lm_mono_ms();
    if (ended || left <= 0) return false;
    lm_sleep_ms(left < 100 ? left : 100);
    return true;
}

/* Reads a copy of one of our puts whose store is there. */
static lumen_status read_put(lumen_client *c, lm_id id, const put_info *p, int64_t timeout_ms, lumen_bytes *out) {
    char hex[LM_ID_HEX_LEN + 1];
    lumen_status st = lm_status(LUMEN_OBJECT_LOST, "object %s has no copy", lm_id_to_hex(id, hex));
    for (size_t i = 0; i < p->n; i++) {
        st = lm_objstore_get(c->rpc, p->locations[i], id, false, timeout_ms > 0 ? timeout_ms : c->timeout_ms,
                             &out->data, &out->len);
        if (st.code != LUMEN_UNAVAILABLE) break;
    }
    if (st.code == LUMEN_UNAVAILABLE) /* a put has no lineage: gone with its stores */
        st = lm_status(LUMEN_OBJECT_LOST, "object %s was put to %zu object store(s), which are gone (%s)", hex, p->n,
                       st.msg);
    return st;
}

/* The value of a ready object, inline or from its store. *retry: the store
 * failed us, the object may be being rebuilt elsewhere: ask again. */
static lumen_status read_ready(lumen_client *c, lm_id id, const Lumen__ObjectState *o, lumen_bytes *out, bool *retry) {
    *retry = false;
    if (o->status != NULL && o->status->code != LUMEN_OK)
        return lm_status((lumen_code)o->status->code, "%s", o->status->message);
    if (o->n_locations == 0) {
        out->len = o->inline_value.len;
        out->data = malloc(out->len + 1);
        if (out->data == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory for %zu bytes", out->len);
        if (out->len) memcpy(out->data, o->inline_value.data, out->len);
        ((char *)out->data)[out->len] = '\0';
        return lm_ok();
    }
    size_t len = 0;
    lumen_status st = lm_objstore_get(c->rpc, o->locations[0], id, false,
                                      c->timeout_ms + (int64_t)(o->size >> 20) * 100, &out->data, &len);
    out->len = len;
    *retry = st.code == LUMEN_UNAVAILABLE || st.code == LUMEN_NOT_FOUND;
    return st;
}

/*
 * lumen_get of n refs: our puts are read from their stores, our actor calls'
 * results are here, the rest is waited for at the scheduler (all of them in
 * one wait, again while the deadline allows) and read inline or from their
 * store. On failure every out[] is freed and the error names the ref.
 */
static lumen_status get_refs(lumen_client *c, const lumen_ref *refs, size_t n, int64_t timeout_ms, lumen_bytes *out) {
    if (n > 0 && (refs == NULL || out == NULL)) return lm_status(LUMEN_INVALID_ARGUMENT, "NULL refs or out");
    memset(out, 0, n * sizeof *out);
    if (timeout_ms < 0) timeout_ms = 0;
    int64_t deadline = (int64_t)lm_mono_ms() + timeout_ms;
    lm_id *ids = malloc((n ? n : 1) * sizeof *ids);
    size_t *index = malloc((n ? n : 1) * sizeof *index);
    lumen_status st = ids && index ? session_status(c) : lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    size_t asked = 0, failed_at = 0;
    for (size_t i = 0; LM_IS_OK(st) && i < n; i++) {
        lm_id id = ref_id(refs[i]);
        failed_at = i;
        if (was_freed(c, id)) {
            st = freed_status(id);
            break;
        }
        put_info *p = put_copy(c, id);
        if (p != NULL) {
            st = read_put(c, id, p, timeout_ms, &out[i]);
            put_info_free(p);
            continue;
        }
        /* Our actor call's result, once its batch came back. Until then the
         * scheduler may have it already (the worker reports each call as it
         * ends, the batch's answer waits for its last call), so it is asked
         * like any ref: a ref lumen_wait called ready reads at once. */
        pthread_mutex_lock(&c->mu);
        bool ours = actor_result_here(c, id);
        pthread_mutex_unlock(&c->mu);
        if (ours) {
            int64_t left = deadline - (int64_t)lm_mono_ms();
            st = actor_result_get(c, id, left > 0 ? left : 0, &out[i]);
            continue;
        }
        ids[asked] = id;
        index[asked++] = i;
    }
    while (LM_IS_OK(st) && asked > 0) {
        int64_t left = deadline - (int64_t)lm_mono_ms();
        uint64_t epoch = 0;
        Lumen__WaitObjectsReply *reply = NULL;
        st = wait_objects(c, ids, asked, asked, left > 0 ? left : 0, &epoch, &reply);
        if (!LM_IS_OK(st)) {
            failed_at = index[0];
            if (retry_later(c, st, epoch, deadline)) {
                st = lm_ok();
                continue;
            }
            if (st.code == LUMEN_DEADLINE_EXCEEDED || session_scheduler_forgot(st)) {
                lumen_status why = session_status(c);
                if (!LM_IS_OK(why)) st = why; /* its task never reached the scheduler, or the job ended */
            }
            break;
        }
        size_t keep = 0;
        bool store_failed = false;
        for (size_t k = 0; k < asked && LM_IS_OK(st); k++) {
            const Lumen__ObjectState *o = reply->objects[k];
            bool retry = false;
            if (o->ready) st = read_ready(c, ids[k], o, &out[index[k]], &retry);
            if (o->ready && !retry) {
                if (!LM_IS_OK(st)) failed_at = index[k];
                continue;
            }
            store_failed = store_failed || retry;
            st = lm_ok(); /* not ready yet, or its store failed us: ask again */
            ids[keep] = ids[k];
            index[keep++] = index[k];
        }
        lm_rpc_message_free(&reply->base);
        asked = keep;
        if (!LM_IS_OK(st) || asked == 0) break;
        if ((int64_t)lm_mono_ms() >= deadline) {
            failed_at = index[0];
            lumen_status why = session_status(c);
            char hex[LM_ID_HEX_LEN + 1];
            st = LM_IS_OK(why) ? lm_status(LUMEN_DEADLINE_EXCEEDED, "object %s not ready after %lld ms",
                                           lm_id_to_hex(ids[0], hex), (long long)timeout_ms)
                               : why;
            break;
        }
        if (store_failed) lm_sleep_ms(50); /* the scheduler notices the store is gone and rebuilds */
    }
    free(ids);
    free(index);
    if (LM_IS_OK(st)) return st;
    for (size_t i = 0; i < n; i++) lumen_bytes_free(&out[i]);
    return n > 1 ? lm_status_wrap(st, "ref %zu", failed_at) : st;
}

lumen_status lumen_get(lumen_client *c, lumen_ref ref, int64_t timeout_ms, lumen_bytes *out) {
    if (c == NULL || out == NULL) return lm_status(LUMEN_INVALID_ARGUMENT, "lumen_get: NULL client or out");
    if (c->local != NULL) return local_get(c, &ref, 1, out);
    return get_refs(c, &ref, 1, timeout_ms, out);
}

lumen_status lumen_get_many(lumen_client *c, const lumen_ref *refs, size_t n, int64_t timeout_ms, lumen_bytes *out) {
    if (c == NULL) return lm_status(LUMEN_INVALID_ARGUMENT, "lumen_get_many: NULL client");
    if (c->local != NULL) return local_get(c, refs, n, out);
    return get_refs(c, refs, n, timeout_ms, out);
}

/* Which refs are ready (or failed) now, or once num_ready are, waiting up to
 * timeout_ms: flags[i] for refs[i]. */
static lumen_status ready_flags(lumen_client *c, const lumen_ref *refs, size_t n, size_t num_ready, int64_t timeout_ms,
                                int *flags) {
    lm_id *ids = malloc((n ? n : 1) * sizeof *ids);
    size_t *index = malloc((n ? n : 1) * sizeof *index);
    if (ids == NULL || index == NULL) {
        free(ids);
        free(index);
        return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    }
    bool all_ours = n > 0;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < n && all_ours; i++) all_ours = actor_result_known(c, ref_id(refs[i]));
    pthread_mutex_unlock(&c->mu);
    lumen_status st = lm_ok();
    if (all_ours) { /* results of our own actor calls only: answered here, as they arrive */
        for (size_t i = 0; i < n; i++) ids[i] = ref_id(refs[i]);
        st = actor_results_wait(c, ids, n, num_ready, timeout_ms, flags, NULL);
        free(ids);
        free(index);
        return st;
    }
    size_t asked = 0, settled = 0;
    for (size_t i = 0; i < n; i++) {
        lm_id id = ref_id(refs[i]);
        char *loc = put_location(c, id, NULL);
        /* Our puts and our actor calls' results are ready here; a freed ref fails at once. */
        pthread_mutex_lock(&c->mu);
        bool ours = actor_result_here(c, id);
        pthread_mutex_unlock(&c->mu);
        flags[i] = loc != NULL || ours || was_freed(c, id);
        settled += (size_t)flags[i];
        if (!flags[i]) ids[asked] = id, index[asked++] = i;
        free(loc);
    }
    size_t want = num_ready > settled ? num_ready - settled : 0;
    int64_t deadline = (int64_t)lm_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    while (asked > 0) {
        int64_t left = deadline - (int64_t)lm_mono_ms();
        uint64_t epoch = 0;
        Lumen__WaitObjectsReply *reply = NULL;
        st = wait_objects(c, ids, asked, want, want > 0 && left > 0 ? left : 0, &epoch, &reply);
        if (!LM_IS_OK(st) && retry_later(c, st, epoch, deadline)) continue;
        for (size_t k = 0; reply != NULL && k < asked; k++)
            if (reply->objects[k]->ready) flags[index[k]] = 1;
        lm_rpc_message_free(reply ? &reply->base : NULL);
        break;
    }
    if (LM_IS_OK(st) && asked > 0) { /* an error of a submission outranks "not ready" */
        lumen_status submit = session_status(c);
        if (!LM_IS_OK(submit)) st = submit;
    }
    free(ids);
    free(index);
    return st;
}

lumen_status lumen_wait(lumen_client *c, const lumen_ref *refs, size_t n, size_t num_ready, int64_t timeout_ms,
                        int *ready, size_t *num_done) {
    if (num_done != NULL) *num_done = 0;
    if (c == NULL || (n > 0 && refs == NULL)) return lm_status(LUMEN_INVALID_ARGUMENT, "lumen_wait: NULL client or refs");
    if (num_ready > n)
        return lm_status(LUMEN_INVALID_ARGUMENT, "lumen_wait: num_ready (%zu) is more than the %zu refs", num_ready, n);
    int *flags = calloc(n ? n : 1, sizeof *flags);
    if (flags == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    lumen_status st = lm_ok();
    if (c->local != NULL) local_ready(c, refs, n, flags);
    else st = ready_flags(c, refs, n, num_ready, timeout_ms, flags);
    /* Like ray.wait: at most num_ready refs are reported ready, the first
     * ready ones in the order given. */
    size_t marked = 0;
    for (size_t i = 0; i < n; i++) {
        int mark = flags[i] && marked < num_ready;
        marked += (size_t)mark;
        if (ready != NULL) ready[i] = mark;
    }
    if (num_done != NULL) *num_done = marked;
    free(flags);
    return st;
}

static void on_freed(void *arg, lumen_status st, ProtobufCMessage *reply) {
    (void)arg, (void)st; /* frees are advice: a lost one is undone by the job's end */
    lm_rpc_message_free(reply);
}

lumen_status lumen_free(lumen_client *c, const lumen_ref *refs, size_t n) {
    if (c == NULL || (n > 0 && refs == NULL)) return lm_status(LUMEN_INVALID_ARGUMENT, "lumen_free: NULL client or refs");
    if (c->local != NULL) {
        local_free(c, refs, n);
        return lm_ok();
    }
    ProtobufCBinaryData *raw = malloc((n ? n : 1) * sizeof *raw);
    if (raw == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    static char mark;
    size_t nraw = 0;
    for (size_t i = 0; i < n; i++) {
        lm_id id = ref_id(refs[i]);
        pthread_mutex_lock(&c->mu);
        put_info *p = lm_idmap_remove(c->puts, id);
        actor_result_forget(c, id); /* the scheduler holds a copy too: freed below */
        session_forget_locked(c, id);
        if (lm_idmap_get(c->freed, id) == NULL) { /* remembered, the newest FREED_REMEMBERED */
            lm_id *slot = &c->freed_ring[c->freed_next++ % FREED_REMEMBERED];
            if (!lm_id_is_zero(*slot)) lm_idmap_remove(c->freed, *slot);
            *slot = id;
            lm_idmap_put(c->freed, id, &mark);
        }
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
    if (c == NULL || path == NULL) return lm_status(LUMEN_INVALID_ARGUMENT, "lumen_library_upload: NULL client or path");
    if (c->local != NULL) return local_library_upload(c, path);
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

const char *lumen_job_id(const lumen_client *c) { return c != NULL ? c->job_hex : ""; }

static lumen_status job_call(lumen_client *c, lm_rpc_method m, uint64_t *epoch) {
    Lumen__JobRequest req = LUMEN__JOB_REQUEST__INIT;
    req.job_id = (ProtobufCBinaryData){LM_ID_BYTES, c->job.bytes};
    req.detached = c->detached;
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_unary(c->rpc, c->address, m, &req.base, &out, c->timeout_ms);
    if (LM_IS_OK(st) && epoch != NULL) *epoch = ((Lumen__JobReply *)out)->epoch;
    lm_rpc_message_free(out);
    return st;
}

static void free_put(void *arg, lm_id key, void *value) {
    (void)arg, (void)key;
    put_info_free(value);
}

static void client_free(lumen_client *c) {
    session_stop(c);              /* closing: async completions only clean up */
    lm_rpc_client_free(c->rpc);   /* runs the last submission and actor callbacks */
    actor_client_fini(c);
    session_fini(c);
    lm_idmap_each(c->puts, free_put, NULL);
    lm_idmap_free(c->puts);
    lm_idmap_free(c->freed);
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

/* How long calls whose connection was closed on them are tried again:
 * longer than gRPC's reconnect backoff (rpc_codec.c), so that a few real
 * tries fall in it, and no longer, since a refusal (a TLS mismatch)
 * closes each of them too. */
#define CLOSED_WAIT_MS 1500

/* Worth waiting for: nothing listens at the address (yet; the scheduler
 * may be restarting), or the connection was closed on us. That is either a
 * scheduler dying as it accepted it or under the call (a later try finds
 * nothing listening, or its successor) or one refusing us (a TLS mismatch:
 * closed or reset each time), so closes are tried again for CLOSED_WAIT_MS
 * from the first since nothing listened (*closed_since, monotonic ms; 0:
 * none). Anything else (a wrong token) is said at once. */
static bool scheduler_restarting(lumen_status st, uint64_t now, uint64_t *closed_since) {
    if (st.code != LUMEN_UNAVAILABLE) return false;
    if (strstr(st.msg, "Connection refused") != NULL) {
        *closed_since = 0;
        return true;
    }
    if (*closed_since == 0) *closed_since = now;
    return now - *closed_since < CLOSED_WAIT_MS;
}

/* Learns the object stores and starts the job (or learns the incarnation,
 * for a client working in another's job), trying again while nothing
 * listens at the scheduler's address (a restart takes a moment) for up to
 * wait_ms (0: CONNECT_WAIT_MS, negative: once), backing off from 50 ms. */
static lumen_status first_contact(lumen_client *c, int64_t wait_ms) {
    uint64_t until = lm_mono_ms() + (uint64_t)(wait_ms == 0 ? CONNECT_WAIT_MS : wait_ms > 0 ? wait_ms : 0);
    int64_t pause = 50;
    uint64_t closed_since = 0;
    for (;;) {
        uint64_t epoch = 0;
        lumen_status st = client_refresh_stores(c, &epoch);
        if (LM_IS_OK(st) && !c->joined) st = job_call(c, c->start_job, &epoch);
        if (LM_IS_OK(st)) {
            pthread_mutex_lock(&c->mu);
            c->epoch = epoch;
            session_pump_locked(c); /* the job's lease */
            pthread_mutex_unlock(&c->mu);
            return st;
        }
        uint64_t now = lm_mono_ms();
        if (!scheduler_restarting(st, now, &closed_since) || now >= until) return st;
        lm_sleep_ms(pause < (int64_t)(until - now) ? pause : (int64_t)(until - now));
        pause = pause * 2 > 500 ? 500 : pause * 2;
    }
}

/* A connect option if given, else its environment variable. */
static const char *opt_or_env(const char *opt, const char *env) { return opt != NULL ? opt : env_or(env, ""); }

/* The scheduler's address: given, else $LUMEN_ADDRESS, else
 * $LUMEN_SCHEDULER_ADDR, else the run dir of `lumen start`, else the default. */
static char *scheduler_address(const char *given) {
    if (given != NULL) return strdup(given);
    const char *env = env_or("LUMEN_ADDRESS", env_or("LUMEN_SCHEDULER_ADDR", NULL));
    if (env != NULL) return strdup(env);
    char dir[512], addr[300];
    lm_run_dir(NULL, dir, sizeof dir);
    return strdup(lm_run_dir_read(dir, "address", addr, sizeof addr) ? addr : DEFAULT_ADDRESS);
}

lumen_status lumen_connect(const char *address, const lumen_connect_opts *opts, lumen_client **out) {
    if (out == NULL) return lm_status(LUMEN_INVALID_ARGUMENT, "lumen_connect: NULL out");
    *out = NULL;
    lm_process_tune_malloc();
    lumen_client *c = calloc(1, sizeof *c);
    if (c == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    c->address = scheduler_address(address);
    c->timeout_ms = opts && opts->rpc_timeout_ms > 0 ? opts->rpc_timeout_ms : DEFAULT_TIMEOUT_MS;
    c->job = lm_id_random();
    c->puts = lm_idmap_new();
    c->freed = lm_idmap_new();
    c->inline_max = 100 * 1024;
    c->detached = opts != NULL && opts->detached;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->acked_cond, NULL);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "SubmitTasks", &c->submit);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "WaitObjects", &c->wait);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "GetClusterInfo", &c->cluster_info);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "FreeObjects", &c->free_objects);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "StartJob", &c->start_job);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "EndJob", &c->end_job);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "WatchJob", &c->watch_job);
    actor_client_init(c);
    session_init(c);
    char *token = lm_cluster_token(opts ? opts->token : NULL, NULL);
    lm_rpc_client_opts ropts = {
        .token = token,
        .tls = {opt_or_env(opts ? opts->tls_cert : NULL, "LUMEN_TLS_CERT"),
                opt_or_env(opts ? opts->tls_key : NULL, "LUMEN_TLS_KEY"),
                opt_or_env(opts ? opts->tls_ca : NULL, "LUMEN_TLS_CA")}};
    lumen_status st = c->address ? lm_rpc_client_new(&ropts, &c->rpc) : lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    free(token);
    if (LM_IS_OK(st) && opts != NULL && opts->job != NULL) {
        c->joined = true;
        if (!lm_id_from_hex(opts->job, &c->job))
            st = lm_status(LUMEN_INVALID_ARGUMENT, "job \"%s\" is not 32 hex digits", opts->job);
    }
    lm_id_to_hex(c->job, c->job_hex);
    bool local = c->address != NULL && (strcmp(c->address, "local") == 0 || (c->joined && local_job_known(c->job)));
    if (LM_IS_OK(st) && local) {
        st = local_connect(c, opts);
    } else if (LM_IS_OK(st)) {
        st = first_contact(c, opts ? opts->connect_timeout_ms : 0);
        if (LM_IS_OK(st)) st = session_start(c);
    }
    if (!LM_IS_OK(st)) {
        st = lm_status_wrap(st, "cannot connect to the Lumen scheduler at %s%s", c->address ? c->address : "?",
                            connect_hint(st.code, &ropts.tls));
        client_free(c);
        return st;
    }
    *out = c;
    return lm_ok();
}

void lumen_close(lumen_client *c) {
    if (c == NULL) return;
    if (c->local != NULL) {
        local_close(c);
        client_free(c);
        return;
    }
    session_wait_submitted(c, c->timeout_ms);
    pthread_mutex_lock(&c->mu);
    c->closing = true; /* no lease again once the job ends */
    pthread_mutex_unlock(&c->mu);
    if (!c->joined) job_call(c, c->end_job, NULL); /* the scheduler releases the job's objects and actors */
    client_free(c);
}

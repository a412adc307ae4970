/*
 * server.c - see server.h.
 *
 * Handlers never wait: a Put is assembled chunk by chunk as messages arrive
 * and answered by the directory writer once Redis has heard of the object;
 * a Get of an object not stored yet is parked in the store and streamed by
 * the Put that brings it, or answered by its on_cancel hook, or by the
 * release of the job it reads for.
 */
#include "server.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunk.h"
#include "dir_writer.h"
#include "health.h"
#include "input_limits.h"
#include "log.h"
#include "node_agent.h"
#include "objstore.pb-c.h"
#include "rpc.h"
#include "store.h"

#define SERVER_THREADS 4
/* A chunk plus its framing must stay under every peer's receive limit. */
#define MAX_CHUNK_BYTES (LM_LIMIT_MESSAGE_BYTES / 2)

struct lm_objstore_server {
    lm_id node_id;
    char addr[300];      /* advertised */
    char listen[300];    /* bound */
    uint64_t max_object_bytes;
    size_t chunk_bytes;
    lm_store *store;
    lm_dir_writer *dir;
    lm_rpc_server *rpc;
    lm_rpc_client *client; /* the node agent's */
    lm_node_agent *agent;
    lm_health health;
    atomic_bool stopping;
};

static bool id_field(ProtobufCBinaryData b, lm_id *out) { return lm_id_from_bytes(b.data, b.len, out); }

/* ------------------------------------------------------------------- Get */

typedef struct get_call {
    lm_store_waiter waiter; /* first: the store hands it back */
    lm_objstore_server *srv;
    lm_rpc_call *call;
    lm_id id;
    uint64_t offset, length;
    lm_store_reader *reader;
    lm_chunker chunker;
} get_call;

static void get_call_free(void *arg) {
    get_call *g = arg;
    lm_store_reader_free(g->reader);
    free(g);
}

static void get_pull(lm_rpc_call *call, void *state) {
    get_call *g = state;
    Lumen__ObjectChunk *c = lm_chunker_next(&g->chunker);
    if (c == NULL) { /* not reached: the last chunk finishes the stream */
        lm_rpc_finish(call);
        return;
    }
    const void *bytes = NULL;
    lumen_status st = lm_store_reader_read(g->reader, g->offset + c->offset, c->data.len, &bytes);
    if (!LM_IS_OK(st)) {
        lm_error("get: %s", st.msg);
        lm_rpc_fail_status(call, st);
        return;
    }
    c->data.data = (uint8_t *)bytes;
    lm_rpc_write(call, &c->base);
    if (g->chunker.done) lm_rpc_finish(call); /* the last chunk and the status go together */
}

/* Streams the reader's object (or the requested range of it). */
static void get_stream(get_call *g) {
    uint64_t size = lm_store_reader_size(g->reader);
    if (g->offset > size || g->length > size - g->offset) {
        lm_rpc_fail(g->call, LUMEN_OUT_OF_RANGE, "object %s: range %llu+%llu is past its %llu bytes",
                    lm_id_str(g->id).s, (unsigned long long)g->offset, (unsigned long long)g->length,
                    (unsigned long long)size);
        return;
    }
    uint64_t n = g->length ? g->length : size - g->offset;
    /* A range travels as an object of its own: offsets count from its start. */
    lm_chunker_init(&g->chunker, g->id, (lm_id){{0}}, NULL, n, g->srv->chunk_bytes);
    lm_rpc_stream(g->call, get_pull, g, NULL);
}

/* A parked Get that gave up (deadline, cancel) or outlived the store. */
static void get_refuse(get_call *g) {
    if (atomic_load(&g->srv->stopping))
        lm_rpc_fail(g->call, LUMEN_UNAVAILABLE, "object %s: store %s is shutting down", lm_id_str(g->id).s,
                    g->srv->addr);
    else if (lm_rpc_call_remaining_ms(g->call) == 0)
        lm_rpc_fail(g->call, LUMEN_DEADLINE_EXCEEDED, "object %s: not put in store %s before the deadline",
                    lm_id_str(g->id).s, g->srv->addr);
    else
        lm_rpc_fail(g->call, LUMEN_CANCELLED, "object %s: wait cancelled by the client", lm_id_str(g->id).s);
}

static void get_cancelled(lm_rpc_call *call, void *arg) {
    lm_objstore_server *srv = arg;
    get_call *g = lm_rpc_call_data(call);
    if (lm_store_unpark(srv->store, &g->waiter)) get_refuse(g); /* else a Put woke it: it streams */
}

/* A Get for an object of a job that ended: nothing will put it now. */
static void get_job_ended(get_call *g) {
    lm_rpc_fail(g->call, LUMEN_FAILED_PRECONDITION, "object %s: its job %s has ended", lm_id_str(g->id).s,
                lm_id_str(g->waiter.job).s);
}

/* Waiters a Put (or their job's release) woke: each gets its answer. */
static void get_resume(lm_store_waiter *woken) {
    while (woken != NULL) {
        get_call *g = (get_call *)woken; /* waiter is get_call's first member */
        woken = woken->next;
        g->reader = g->waiter.reader;
        if (g->waiter.job_ended) get_job_ended(g);
        else if (g->reader == NULL) lm_rpc_fail(g->call, LUMEN_RESOURCE_EXHAUSTED, "object %s: out of memory",
                                                lm_id_str(g->id).s);
        else get_stream(g);
    }
}

static void handle_get(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    lm_objstore_server *srv = ctx;
    const Lumen__GetRequest *req = (const Lumen__GetRequest *)msg;
    lm_id id;
    lumen_status st = lm_limits_id(req->object_id, "get: object_id", &id);
    if (!LM_IS_OK(st)) {
        lm_rpc_fail_status(call, st);
        return;
    }
    get_call *g = calloc(1, sizeof *g);
    if (g == NULL) {
        lm_rpc_fail(call, LUMEN_RESOURCE_EXHAUSTED, "get: out of memory");
        return;
    }
    g->srv = srv;
    g->call = call;
    g->id = id;
    g->offset = req->offset;
    g->length = req->length;
    lm_rpc_call_set_data(call, g, get_call_free);
    if (req->job_id.len != 0 && !id_field(req->job_id, &g->waiter.job)) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "get: job_id must be 16 bytes, got %zu", req->job_id.len);
        return;
    }
    lm_id expected;
    if (req->store_id.len != 0 && (!id_field(req->store_id, &expected) || !lm_id_equal(expected, srv->node_id))) {
        /* The reader was told an earlier incarnation of this store holds
         * it: that one is gone, and with it the object (waiting would hold
         * the reader for nothing). */
        lm_rpc_fail(call, LUMEN_OBJECT_LOST, "object %s was in an earlier incarnation of store %s, which is gone",
                    lm_id_str(id).s, srv->addr);
        return;
    }
    if (!req->wait) {
        st = lm_store_open(srv->store, id, &g->reader);
        if (st.code == LUMEN_NOT_FOUND)
            lm_rpc_fail(call, LUMEN_NOT_FOUND, "object %s not in store %s", lm_id_str(id).s, srv->addr);
        else if (!LM_IS_OK(st)) lm_rpc_fail_status(call, st);
        else get_stream(g);
        return;
    }
    /* The hook goes first: once parked, g belongs to whoever unparks it. */
    if (!lm_rpc_call_on_cancel(call, get_cancelled, srv)) {
        get_refuse(g);
        return;
    }
    switch (lm_store_open_or_park(srv->store, id, &g->waiter, &g->reader)) {
    case LM_STORE_FOUND: get_stream(g); break;
    case LM_STORE_PARKED: lm_debug("get %s: waiting for its put", lm_id_str(id).s); break;
    case LM_STORE_REFUSED: get_refuse(g); break;
    case LM_STORE_JOB_ENDED: get_job_ended(g); break;
    }
}

/* ------------------------------------------------------------------- Put */

typedef struct put_call {
    lm_objstore_server *srv;
    lm_chunk_asm asm_;
    lm_store_put *put; /* from the first chunk until committed */
    bool already_present;
} put_call;

static void put_call_free(void *arg) {
    put_call *p = arg;
    lm_store_put_abort(p->srv->store, p->put);
    lm_chunk_asm_fini(&p->asm_);
    free(p);
}

/* The assembler's buffer: memory reserved in the store (spilling if need be). */
static void *put_alloc(void *arg, uint64_t size, lumen_status *st) {
    put_call *p = arg;
    *st = lm_store_put_begin(p->srv->store, p->asm_.id, p->asm_.job, size, &p->put);
    return LM_IS_OK(*st) ? lm_store_put_buffer(p->put) : NULL;
}

static void put_reply(void *arg) {
    lm_rpc_call *call = arg;
    put_call *p = lm_rpc_call_data(call);
    Lumen__PutReply reply = LUMEN__PUT_REPLY__INIT;
    reply.size = p->asm_.total;
    reply.already_present = p->already_present;
    reply.node_id = (ProtobufCBinaryData){LM_ID_BYTES, p->srv->node_id.bytes};
    lm_rpc_reply(call, &reply.base);
}

static void put_end(lm_rpc_call *call, put_call *p) {
    lm_objstore_server *srv = p->srv;
    lumen_status st = lm_chunk_asm_finish(&p->asm_);
    lm_store_waiter *woken = NULL;
    if (LM_IS_OK(st)) {
        lm_store_put *put = p->put;
        p->put = NULL; /* commit consumes it, whatever the outcome */
        st = lm_store_put_commit(srv->store, put, &p->already_present, &woken);
    }
    if (!LM_IS_OK(st)) {
        lm_rpc_fail_status(call, st);
        return;
    }
    get_resume(woken);
    if (p->already_present) {
        lm_debug("put %s: already present", lm_id_str(p->asm_.id).s);
        put_reply(call);
        return;
    }
    lm_debug("put %s: %llu bytes", lm_id_str(p->asm_.id).s, (unsigned long long)p->asm_.total);
    /* The directory follows behind: a put never waits for Redis (a reader
     * that looks it up there before it lands waits for its announcement). */
    lm_dir_writer_ready(srv->dir, p->asm_.id, p->asm_.job, p->asm_.total);
    put_reply(call);
}

static void handle_put(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    lm_objstore_server *srv = ctx;
    put_call *p = lm_rpc_call_data(call);
    if (p == NULL) {
        p = calloc(1, sizeof *p);
        if (p == NULL) {
            lm_rpc_fail(call, LUMEN_RESOURCE_EXHAUSTED, "put: out of memory");
            return;
        }
        p->srv = srv;
        lm_chunk_asm_opts opts = {.max_bytes = srv->max_object_bytes, .alloc = put_alloc, .alloc_arg = p};
        lm_chunk_asm_init(&p->asm_, &opts);
        lm_rpc_call_set_data(call, p, put_call_free);
    }
    if (msg == NULL) {
        put_end(call, p);
        return;
    }
    lumen_status st = lm_chunk_asm_feed(&p->asm_, (const Lumen__ObjectChunk *)msg);
    if (!LM_IS_OK(st)) {
        lm_info("put from %s refused: %s", lm_rpc_call_peer(call), st.msg);
        lm_rpc_fail_status(call, st); /* no more messages are read; the put is dropped */
    }
}

/* ------------------------------------------------------ Delete, ReleaseJob */

typedef struct removal {
    lm_rpc_call *call;
    bool job;
    uint32_t deleted;
} removal;

static void removal_reply(void *arg) {
    removal *r = arg;
    if (r->job) {
        Lumen__ReleaseJobReply reply = LUMEN__RELEASE_JOB_REPLY__INIT;
        reply.deleted = r->deleted;
        lm_rpc_reply(r->call, &reply.base);
    } else {
        Lumen__DeleteReply reply = LUMEN__DELETE_REPLY__INIT;
        reply.deleted = r->deleted;
        lm_rpc_reply(r->call, &reply.base);
    }
    free(r);
}

/* Tells the directory ids[0..n) left (behind: nothing waits for Redis)
 * and answers. */
static void removed(lm_objstore_server *srv, lm_rpc_call *call, bool job, const lm_id *ids, size_t n) {
    removal *r = calloc(1, sizeof *r);
    if (r == NULL) {
        lm_rpc_fail(call, LUMEN_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    *r = (removal){call, job, (uint32_t)n};
    for (size_t i = 0; i < n; i++) lm_dir_writer_removed(srv->dir, ids[i]);
    removal_reply(r);
}

static void handle_delete(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    lm_objstore_server *srv = ctx;
    const Lumen__DeleteRequest *req = (const Lumen__DeleteRequest *)msg;
    lm_id *ids = calloc(req->n_object_ids ? req->n_object_ids : 1, sizeof *ids);
    if (ids == NULL) {
        lm_rpc_fail(call, LUMEN_RESOURCE_EXHAUSTED, "delete: out of memory");
        return;
    }
    for (size_t i = 0; i < req->n_object_ids; i++) {
        if (!id_field(req->object_ids[i], &ids[i])) {
            lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "delete: object id #%zu must be 16 bytes (got %zu)", i,
                        req->object_ids[i].len);
            free(ids);
            return;
        }
    }
    size_t n = 0;
    for (size_t i = 0; i < req->n_object_ids; i++)
        if (lm_store_delete(srv->store, ids[i])) ids[n++] = ids[i];
    removed(srv, call, false, ids, n);
    free(ids);
}

static void handle_release_job(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    lm_objstore_server *srv = ctx;
    const Lumen__ReleaseJobRequest *req = (const Lumen__ReleaseJobRequest *)msg;
    lm_id job;
    if (!id_field(req->job_id, &job) || lm_id_is_zero(job)) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "release job: job_id must be 16 bytes, not all zero");
        return;
    }
    lm_id *ids = NULL;
    lm_store_waiter *woken;
    size_t n = lm_store_release_job(srv->store, job, &ids, &woken);
    lm_info("job %s released: %zu object(s) deleted", lm_id_str(job).s, n);
    get_resume(woken);
    removed(srv, call, true, ids, n);
    free(ids);
}

static const lm_rpc_method_impl objstore_methods[] = {
    {"Put", LM_RPC_CLIENT_STREAM, handle_put},
    {"Get", LM_RPC_SERVER_STREAM, handle_get},
    {"Delete", LM_RPC_UNARY, handle_delete},
    {"ReleaseJob", LM_RPC_UNARY, handle_release_job},
    {NULL, 0, NULL},
};

/* ------------------------------------------------------------- lifecycle */

static void sample(void *arg, lm_node_load *load) {
    lm_objstore_server *srv = arg;
    lm_store_stats stats;
    lm_store_stats_get(srv->store, &stats);
    load->bytes_used = stats.bytes_in_memory;
}

/* "host:port" with brackets around an IPv6 host. */
static void join_addr(char *out, size_t cap, const char *host, unsigned port) {
    snprintf(out, cap, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}

/* objstore.advertise if set (a bare host takes the bound port), else the
 * listen address with the bound port. */
static lumen_status advertised(const lm_objstore_config *cfg, int port, char *out, size_t cap) {
    char host[256];
    uint16_t p = 0;
    const char *from = *cfg->advertise ? cfg->advertise : cfg->listen;
    lumen_status st = lm_parse_addr(from, LM_CONFIG_HOST_OK | LM_CONFIG_PORT0, host, sizeof host, &p);
    if (!LM_IS_OK(st)) return lm_status_wrap(st, "objstore address %s", from);
    join_addr(out, cap, host, p && *cfg->advertise ? p : (unsigned)port);
    return lm_ok();
}

static lumen_status start(lm_objstore_server *srv, const lm_config *cfg) {
    const lm_cluster_config *cl = &cfg->cluster;
    const lm_objstore_config *oc = &cfg->objstore;
    lm_rpc_tls tls = {cl->tls_cert, cl->tls_key, cl->tls_ca};
    lm_store_opts sopts = {.memory_limit = oc->memory_limit, .spill_dir = oc->spill_dir};
    lumen_status st = lm_store_new(&sopts, &srv->store);
    if (!LM_IS_OK(st)) return st;

    lm_rpc_server_opts ropts = {.addr = oc->listen, .threads = SERVER_THREADS, .token = cl->token, .tls = tls};
    st = lm_rpc_server_new(&ropts, &srv->rpc);
    if (LM_IS_OK(st)) st = lm_rpc_server_add_service(srv->rpc, &lumen__object_store__descriptor, objstore_methods, srv);
    if (LM_IS_OK(st)) st = lm_health_add_service(srv->rpc, &srv->health);
    lm_redis_opts redis = {.addr = cl->redis_addr, .password = cl->redis_password, .prefix = cl->key_prefix};
    if (LM_IS_OK(st)) st = lm_dir_writer_start(&redis, srv->node_id, &srv->dir);
    if (LM_IS_OK(st)) st = lm_rpc_server_start(srv->rpc);
    if (!LM_IS_OK(st)) return st;
    snprintf(srv->listen, sizeof srv->listen, "%s", oc->listen);
    st = advertised(oc, lm_rpc_server_port(srv->rpc), srv->addr, sizeof srv->addr);
    if (!LM_IS_OK(st)) return st;

    lm_rpc_client_opts copts = {.token = cl->token, .tls = tls};
    st = lm_rpc_client_new(&copts, &srv->client);
    if (!LM_IS_OK(st)) return st;
    lm_node_agent_opts agent = {
        .rpc = srv->client,
        .scheduler_addr = cl->scheduler_addr,
        .rpc_timeout_ms = cl->rpc_timeout_ms,
        .node_id = srv->node_id,
        .kind = "objstore",
        .addr = srv->addr,
        .memory_limit = oc->memory_limit,
        .sample = sample,
        .sample_arg = srv,
    };
    return lm_node_agent_start(&agent, &srv->agent);
}

lumen_status lm_objstore_server_start(const lm_config *cfg, lm_objstore_server **out) {
    *out = NULL;
    lm_objstore_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "objstore: out of memory");
    srv->node_id = lm_id_random();
    srv->max_object_bytes = cfg->objstore.max_object_bytes;
    srv->chunk_bytes = cfg->objstore.chunk_bytes;
    if (srv->chunk_bytes > MAX_CHUNK_BYTES) {
        lm_warn("chunk_bytes %zu is above what every peer accepts: using %u", srv->chunk_bytes, MAX_CHUNK_BYTES);
        srv->chunk_bytes = MAX_CHUNK_BYTES;
    }
    srv->health.role = "objstore";
    srv->health.node_id = srv->node_id;
    atomic_init(&srv->health.serving, true);
    atomic_init(&srv->stopping, false);
    lumen_status st = start(srv, cfg);
    if (!LM_IS_OK(st)) {
        lm_objstore_server_stop(srv, 0);
        return st;
    }
    char mem[32];
    snprintf(mem, sizeof mem, "%.1f MiB", (double)cfg->objstore.memory_limit / (1 << 20));
    lm_info("object store %s serving on %s (advertised as %s), memory limit %s, spill dir %s",
            lm_id_str(srv->node_id).s, srv->listen, srv->addr, mem, lm_store_spill_dir(srv->store));
    *out = srv;
    return lm_ok();
}

const char *lm_objstore_server_addr(const lm_objstore_server *srv) { return srv->addr; }

void lm_objstore_server_stop(lm_objstore_server *srv, int64_t grace_ms) {
    if (srv == NULL) return;
    atomic_store(&srv->stopping, true);
    atomic_store(&srv->health.serving, false);
    lm_node_agent_free(srv->agent); /* the scheduler stops sending readers here */
    if (srv->store != NULL) {
        for (lm_store_waiter *w = lm_store_unpark_all(srv->store), *next; w != NULL; w = next) {
            next = w->next;
            get_refuse((get_call *)w);
        }
    }
    /* Deferred Put answers come from the directory writer: it outlives the server. */
    lm_rpc_server_shutdown(srv->rpc, grace_ms);
    lm_rpc_server_free(srv->rpc);
    lm_dir_writer_free(srv->dir);
    lm_rpc_client_free(srv->client);
    lm_store_free(srv->store);
    free(srv);
}

/* echo_server.c - see echo_server.h. */
#include "clock.h"
#include "echo_server.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "health.h"

struct echo_server {
    lm_rpc_server *srv;
    lm_health health;
    char addr[32];
    pthread_mutex_t mu;
    pthread_cond_t cond;
    unsigned cancels;
    unsigned delayed_live; /* delayed-answer threads still running */
};

uint8_t echo_byte_at(uint64_t i) { return (uint8_t)((i * 2654435761u) >> 13); }

uint64_t echo_fnv1a(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

lm_rpc_method echo_method(const char *name) {
    lm_rpc_method m = {0};
    lm_rpc_method_find(&lumentest__echo__descriptor, name, &m);
    return m;
}

static void reply_payload(lm_rpc_call *call, const Lumentest__EchoRequest *req) {
    Lumentest__EchoReply reply = LUMENTEST__ECHO_REPLY__INIT;
    reply.payload = req->payload;
    lm_rpc_reply(call, &reply.base);
}

/* A deferred answer: waits delay_ms (or until cancelled), then replies. */
typedef struct delayed {
    echo_server *e;
    lm_rpc_call *call;
    const Lumentest__EchoRequest *req;
    bool cancelled;
} delayed;

static void on_delayed_cancel(lm_rpc_call *call, void *arg) {
    (void)call;
    delayed *d = arg;
    pthread_mutex_lock(&d->e->mu);
    d->cancelled = true;
    d->e->cancels++;
    pthread_cond_broadcast(&d->e->cond);
    pthread_mutex_unlock(&d->e->mu);
}

static void *delayed_main(void *arg) {
    delayed *d = arg;
    echo_server *e = d->e;
    uint32_t ms = d->req->delay_ms == ECHO_NEVER ? 3600 * 1000u : d->req->delay_ms;
    struct timespec until = lm_timespec_in(CLOCK_REALTIME, ms);
    pthread_mutex_lock(&e->mu);
    while (!d->cancelled)
        if (pthread_cond_timedwait(&e->cond, &e->mu, &until) != 0) break;
    bool cancelled = d->cancelled;
    pthread_mutex_unlock(&e->mu);
    if (cancelled) lm_rpc_fail(d->call, LUMEN_CANCELLED, "cancelled by the client");
    else reply_payload(d->call, d->req);
    free(d);
    pthread_mutex_lock(&e->mu);
    e->delayed_live--;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

static void say(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    const Lumentest__EchoRequest *req = (const Lumentest__EchoRequest *)msg;
    echo_server *e = ctx;
    if (req->delay_ms == 0) {
        reply_payload(call, req);
        return;
    }
    delayed *d = calloc(1, sizeof *d);
    d->e = e;
    d->call = call;
    d->req = req;
    pthread_mutex_lock(&e->mu);
    e->delayed_live++;
    pthread_mutex_unlock(&e->mu);
    if (!lm_rpc_call_on_cancel(call, on_delayed_cancel, d)) on_delayed_cancel(call, d);
    pthread_t t;
    pthread_create(&t, NULL, delayed_main, d);
    pthread_detach(t);
}

/* Download: total_bytes in chunk_bytes pieces, made on the fly. */
typedef struct download {
    uint64_t sent, total;
    uint32_t chunk;
    bool fast_fill;
    uint8_t *buf;
} download;

static void download_free(void *arg) {
    download *d = arg;
    free(d->buf);
    free(d);
}

static void download_pull(lm_rpc_call *call, void *arg) {
    download *d = arg;
    if (d->sent == d->total) {
        lm_rpc_finish(call);
        return;
    }
    size_t n = d->total - d->sent < d->chunk ? (size_t)(d->total - d->sent) : d->chunk;
    if (!d->fast_fill)
        for (size_t i = 0; i < n; i++) d->buf[i] = echo_byte_at(d->sent + i);
    Lumentest__EchoReply reply = LUMENTEST__ECHO_REPLY__INIT;
    reply.payload.data = d->buf;
    reply.payload.len = n;
    lm_rpc_write(call, &reply.base);
    d->sent += n;
    if (d->sent == d->total) lm_rpc_finish(call); /* last chunk and status together */
}

static void download_start(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    (void)ctx;
    const Lumentest__EchoRequest *req = (const Lumentest__EchoRequest *)msg;
    if (req->chunk_bytes == 0 || req->chunk_bytes > LM_RPC_CHUNK_BYTES * 2) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "chunk_bytes must be 1..%u", LM_RPC_CHUNK_BYTES * 2);
        return;
    }
    download *d = calloc(1, sizeof *d);
    d->total = req->total_bytes;
    d->chunk = req->chunk_bytes;
    d->fast_fill = req->fast_fill;
    d->buf = calloc(1, d->chunk);
    lm_rpc_stream(call, download_pull, d, download_free);
}

/* Upload: counts and checksums what arrives, answers at the end. */
typedef struct upload_state {
    uint64_t total;
    uint64_t sum;
} upload_state;

static void upload(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    (void)ctx;
    upload_state *u = lm_rpc_call_data(call);
    if (u == NULL) {
        u = calloc(1, sizeof *u);
        u->sum = ECHO_FNV_INIT;
        lm_rpc_call_set_data(call, u, free);
    }
    if (msg != NULL) {
        const Lumentest__EchoRequest *req = (const Lumentest__EchoRequest *)msg;
        u->sum = echo_fnv1a(u->sum, req->payload.data, req->payload.len);
        u->total += req->payload.len;
        return;
    }
    Lumentest__EchoReply reply = LUMENTEST__ECHO_REPLY__INIT;
    reply.total_bytes = u->total;
    reply.checksum = u->sum;
    lm_rpc_reply(call, &reply.base);
}

static const lm_rpc_method_impl echo_methods[] = {
    {"Say", LM_RPC_UNARY, say},
    {"Download", LM_RPC_SERVER_STREAM, download_start},
    {"Upload", LM_RPC_CLIENT_STREAM, upload},
    {NULL, 0, NULL},
};

lumen_status echo_server_start(const char *token, int threads, echo_server **out) {
    *out = NULL;
    echo_server *e = calloc(1, sizeof *e);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cond, NULL);
    e->health.role = "echo";
    e->health.node_id = lm_id_random();
    atomic_init(&e->health.serving, true);
    lm_rpc_server_opts opts = {.addr = "127.0.0.1:0", .threads = threads, .token = token};
    lumen_status st = lm_rpc_server_new(&opts, &e->srv);
    if (LM_IS_OK(st)) st = lm_rpc_server_add_service(e->srv, &lumentest__echo__descriptor, echo_methods, e);
    if (LM_IS_OK(st)) st = lm_health_add_service(e->srv, &e->health);
    if (LM_IS_OK(st)) st = lm_rpc_server_start(e->srv);
    if (!LM_IS_OK(st)) {
        echo_server_free(e);
        return st;
    }
    snprintf(e->addr, sizeof e->addr, "127.0.0.1:%d", lm_rpc_server_port(e->srv));
    *out = e;
    return lm_ok();
}

const char *echo_server_addr(const echo_server *e) { return e->addr; }

lm_rpc_server *echo_server_rpc(echo_server *e) { return e->srv; }

unsigned echo_server_cancels(echo_server *e) {
    pthread_mutex_lock(&e->mu);
    unsigned n = e->cancels;
    pthread_mutex_unlock(&e->mu);
    return n;
}

void echo_server_free(echo_server *e) {
    if (e == NULL) return;
    lm_rpc_server_free(e->srv); /* cancels deferred calls; their threads answer */
    pthread_mutex_lock(&e->mu);
    while (e->delayed_live > 0) pthread_cond_wait(&e->cond, &e->mu);
    pthread_mutex_unlock(&e->mu);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cond);
    free(e);
}

/*
 * rpc_client.c - the client half of the RPC layer.
 *
 * One grpc_channel per peer address, created on first use and kept; each
 * method used on a channel is registered once (grpc_channel_register_call)
 * so calls skip the per-call path parsing. Synchronous calls and streams
 * run on a private pluck queue; asynchronous calls complete on the client's
 * queue, run by one thread that invokes the callbacks.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rpc_internal.h"
#include "vec.h"
#include "process.h"

typedef struct method_handle {
    const ProtobufCServiceDescriptor *service;
    unsigned index;
    char *path;
    void *handle;
} method_handle;

typedef struct channel_entry {
    char *addr;
    grpc_channel *channel;
    method_handle *methods;
    size_t nmethods, methods_cap;
} channel_entry;

typedef struct async_call async_call;

struct lm_rpc_client {
    grpc_metadata auth; /* "authorization: Bearer <token>" */
    bool has_auth;
    uint32_t call_flags;
    int max_message_bytes;
    bool own_connections;
    grpc_channel_credentials *creds;
    char *token;         /* what the client was made with, for lm_rpc_client_new_private */
    char *tls_strings[3];

    pthread_mutex_t mu;
    channel_entry *channels;
    size_t nchannels, channels_cap;
    async_call *active; /* async calls in flight, to cancel on free */
    bool closing;
    grpc_completion_queue **idle_cqs; /* pluck queues kept for synchronous calls */
    size_t nidle, idle_cap;

    grpc_completion_queue *cq;
    pthread_t thread;
};

/* ------------------------------------------------------------- channels */

bool lm_rpc_method_find(const ProtobufCServiceDescriptor *svc, const char *name, lm_rpc_method *out) {
    const ProtobufCMethodDescriptor *md = protobuf_c_service_descriptor_get_method_by_name(svc, name);
    if (md == NULL) return false;
    out->service = svc;
    out->index = (unsigned)(md - svc->methods);
    return true;
}

static channel_entry *channel_for(lm_rpc_client *cli, const char *addr) {
    for (size_t i = 0; i < cli->nchannels; i++)
        if (strcmp(cli->channels[i].addr, addr) == 0) return &cli->channels[i];
    grpc_arg storage[LM_RPC_NUM_ARGS + 1];
    grpc_channel_args channel_args = lm_rpc_channel_args((size_t)cli->max_message_bytes, storage);
    if (cli->own_connections)
        storage[channel_args.num_args++] =
            (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, {.integer = 1}};
    channel_entry *grown = lm_vec_grow(cli->channels, &cli->channels_cap, cli->nchannels + 1, sizeof *grown, 4);
    if (grown == NULL) return NULL; /* out of memory: the call fails UNAVAILABLE */
    cli->channels = grown;
    grpc_channel *ch = grpc_channel_create(addr, cli->creds, &channel_args);
    if (ch == NULL) return NULL;
    channel_entry *e = &cli->channels[cli->nchannels++];
    e->addr = strdup(addr);
    e->channel = ch;
    e->methods = NULL;
    e->nmethods = e->methods_cap = 0;
    return e;
}

static method_handle *handle_for(channel_entry *e, lm_rpc_method m) {
    for (size_t i = 0; i < e->nmethods; i++)
        if (e->methods[i].service == m.service && e->methods[i].index == m.index) return &e->methods[i];
    method_handle *grown = lm_vec_grow(e->methods, &e->methods_cap, e->nmethods + 1, sizeof *grown, 4);
    if (grown == NULL) return NULL;
    e->methods = grown;
    method_handle *h = &e->methods[e->nmethods++];
    h->service = m.service;
    h->index = m.index;
    h->path = lm_rpc_method_path(m.service, m.index); /* must outlive the channel */
    h->handle = grpc_channel_register_call(e->channel, h->path, NULL, NULL);
    return h;
}

/* A new call of m on addr's channel, bound to cq. */
static grpc_call *create_call(lm_rpc_client *cli, const char *addr, lm_rpc_method m,
                              grpc_completion_queue *cq, int64_t timeout_ms, const char **path) {
    pthread_mutex_lock(&cli->mu);
    grpc_call *call = NULL;
    channel_entry *e = cli->closing ? NULL : channel_for(cli, addr);
    if (e != NULL) {
        method_handle *h = handle_for(e, m);
        *path = h != NULL ? h->path : "";
        if (h != NULL)
            call = grpc_channel_create_registered_call(e->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                                   h->handle, lm_rpc_deadline(timeout_ms), NULL);
    }
    pthread_mutex_unlock(&cli->mu);
    return call;
}

static lumen_status check_call_args(lm_rpc_method m, int64_t timeout_ms) {
    if (timeout_ms <= 0) return lm_status(LUMEN_INVALID_ARGUMENT, "every call needs a deadline (timeout_ms > 0)");
    if (m.service == NULL || m.index >= m.service->n_methods)
        return lm_status(LUMEN_INVALID_ARGUMENT, "no such method");
    return lm_ok();
}

static void init_send_metadata(lm_rpc_client *cli, grpc_op *op) {
    memset(op, 0, sizeof *op);
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    op->flags = cli->call_flags;
    op->data.send_initial_metadata.count = cli->has_auth ? 1 : 0;
    op->data.send_initial_metadata.metadata = cli->has_auth ? &cli->auth : NULL;
}

/* Synchronous calls each need a pluck queue; creating one per call costs
 * more than the call on loopback, so finished calls leave theirs here. */
static grpc_completion_queue *cq_get(lm_rpc_client *cli) {
    pthread_mutex_lock(&cli->mu);
    grpc_completion_queue *cq = cli->nidle > 0 ? cli->idle_cqs[--cli->nidle] : NULL;
    pthread_mutex_unlock(&cli->mu);
    return cq != NULL ? cq : grpc_completion_queue_create_for_pluck(NULL);
}

static void cq_put(lm_rpc_client *cli, grpc_completion_queue *cq) {
    pthread_mutex_lock(&cli->mu);
    grpc_completion_queue **grown = lm_vec_grow(cli->idle_cqs, &cli->idle_cap, cli->nidle + 1, sizeof *grown, 8);
    if (grown != NULL) {
        cli->idle_cqs = grown;
        cli->idle_cqs[cli->nidle++] = cq;
    }
    pthread_mutex_unlock(&cli->mu);
    if (grown == NULL) lm_rpc_pluck_cq_destroy(cq); /* out of memory: not kept for the next call */
}

/* ---------------------------------------------------------- unary calls */

/* What one unary call needs while in flight; shared by sync and async. */
typedef struct unary {
    grpc_call *call;
    const char *path;
    char where[160];
    grpc_byte_buffer *request;
    grpc_byte_buffer *response;
    grpc_metadata_array initial_md;
    grpc_metadata_array trailing_md;
    grpc_status_code status;
    grpc_slice details;
} unary;

/* Starts a unary call that takes `request` (freed with u, or here when no
 * call could be made). */
static lumen_status unary_start(lm_rpc_client *cli, unary *u, const char *addr, lm_rpc_method m,
                                grpc_byte_buffer *request, int64_t timeout_ms,
                                grpc_completion_queue *cq, void *tag) {
    memset(u, 0, sizeof *u);
    u->call = create_call(cli, addr, m, cq, timeout_ms, &u->path);
    if (u->call == NULL) {
        grpc_byte_buffer_destroy(request);
        return lm_status(LUMEN_UNAVAILABLE, "%s: cannot create a call", addr);
    }
    snprintf(u->where, sizeof u->where, "%s %s", addr, u->path);
    u->request = request;
    grpc_metadata_array_init(&u->initial_md);
    grpc_metadata_array_init(&u->trailing_md);
    u->details = grpc_empty_slice();

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    init_send_metadata(cli, &ops[0]);
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = u->request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &u->response;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &u->trailing_md;
    ops[5].data.recv_status_on_client.status = &u->status;
    ops[5].data.recv_status_on_client.status_details = &u->details;
    grpc_call_error err = grpc_call_start_batch(u->call, ops, 6, tag, NULL);
    if (err != GRPC_CALL_OK) return lm_status(LUMEN_INTERNAL, "%s: start_batch: %d", u->where, (int)err);
    return lm_ok();
}

/* Turns a completed call into its status and decoded reply; frees u. */
static lumen_status unary_finish(unary *u, const ProtobufCMessageDescriptor *out_desc,
                                 ProtobufCMessage **reply) {
    *reply = NULL;
    lumen_status st = lm_rpc_status_from_grpc(u->status, u->details, u->where);
    if (LM_IS_OK(st)) {
        if (u->response == NULL) st = lm_status(LUMEN_INTERNAL, "%s: no reply message", u->where);
        else st = lm_status_wrap(lm_rpc_unpack(u->response, out_desc, reply), "%s", u->where);
    }
    if (u->call != NULL) grpc_call_unref(u->call);
    if (u->request != NULL) grpc_byte_buffer_destroy(u->request);
    if (u->response != NULL) grpc_byte_buffer_destroy(u->response);
    grpc_metadata_array_destroy(&u->initial_md);
    grpc_metadata_array_destroy(&u->trailing_md);
    grpc_slice_unref(u->details);
    return st;
}

static const ProtobufCMessageDescriptor *output_of(lm_rpc_method m) {
    return m.service->methods[m.index].output;
}

lumen_status lm_rpc_unary(lm_rpc_client *cli, const char *addr, lm_rpc_method m,
                         const ProtobufCMessage *req, ProtobufCMessage **reply, int64_t timeout_ms) {
    *reply = NULL;
    lumen_status st = check_call_args(m, timeout_ms);
    if (!LM_IS_OK(st)) return st;
    grpc_completion_queue *cq = cq_get(cli);
    unary u;
    st = unary_start(cli, &u, addr, m, lm_rpc_pack(req), timeout_ms, cq, &u);
    if (LM_IS_OK(st)) {
        grpc_completion_queue_pluck(cq, &u, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        st = unary_finish(&u, output_of(m), reply);
    } else if (u.call != NULL) {
        ProtobufCMessage *ignored;
        unary_finish(&u, output_of(m), &ignored);
    }
    cq_put(cli, cq); /* every tag on it was plucked: it is empty */
    return st;
}

struct async_call {
    lm_rpc_tag tag;
    unary u;
    lm_rpc_method method;
    lm_rpc_done_fn done;
    void *arg;
    lm_rpc_client *cli;
    async_call *prev, *next;
};

static void async_unlink(lm_rpc_client *cli, async_call *a) {
    pthread_mutex_lock(&cli->mu);
    if (a->prev) a->prev->next = a->next;
    else cli->active = a->next;
    if (a->next) a->next->prev = a->prev;
    pthread_mutex_unlock(&cli->mu);
}

static void on_async_done(lm_rpc_tag *tag, bool ok) {
    (void)ok; /* RECV_STATUS_ON_CLIENT always completes; the status tells */
    async_call *a = LM_CONTAINER_OF(tag, async_call, tag);
    async_unlink(a->cli, a);
    ProtobufCMessage *reply;
    lumen_status st = unary_finish(&a->u, output_of(a->method), &reply);
    a->done(a->arg, st, reply);
    free(a);
}

/* The asynchronous call of a request packed already (taken). */
static lumen_status unary_async_start(lm_rpc_client *cli, const char *addr, lm_rpc_method m,
                                      grpc_byte_buffer *request, int64_t timeout_ms, lm_rpc_done_fn done,
                                      void *arg) {
    lumen_status st = check_call_args(m, timeout_ms);
    if (!LM_IS_OK(st)) {
        grpc_byte_buffer_destroy(request);
        return st;
    }
    async_call *a = calloc(1, sizeof *a);
    a->tag.fn = on_async_done;
    a->method = m;
    a->done = done;
    a->arg = arg;
    a->cli = cli;
    /* Linked before the batch starts: its completion may run at once. */
    pthread_mutex_lock(&cli->mu);
    a->next = cli->active;
    if (cli->active) cli->active->prev = a;
    cli->active = a;
    pthread_mutex_unlock(&cli->mu);
    st = unary_start(cli, &a->u, addr, m, request, timeout_ms, cli->cq, &a->tag);
    if (!LM_IS_OK(st)) {
        async_unlink(cli, a);
        ProtobufCMessage *ignored;
        unary_finish(&a->u, output_of(m), &ignored);
        free(a);
    }
    return st;
}

lumen_status lm_rpc_unary_async(lm_rpc_client *cli, const char *addr, lm_rpc_method m,
                               const ProtobufCMessage *req, int64_t timeout_ms,
                               lm_rpc_done_fn done, void *arg) {
    return unary_async_start(cli, addr, m, lm_rpc_pack(req), timeout_ms, done, arg);
}

lumen_status lm_rpc_unary_async_packed(lm_rpc_client *cli, const char *addr, lm_rpc_method m, void *bytes,
                                      size_t len, int64_t timeout_ms, lm_rpc_done_fn done, void *arg) {
    /* The slice takes the bytes as they are: nothing is copied. */
    grpc_slice slice = grpc_slice_new(bytes, len, free);
    grpc_byte_buffer *request = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return unary_async_start(cli, addr, m, request, timeout_ms, done, arg);
}

/* --------------------------------------------------------------- streams */

/* A streaming call: its own pluck queue and the status batch's buffers. */
typedef struct stream_call {
    lm_rpc_client *cli;
    grpc_completion_queue *cq;
    grpc_call *call;
    const char *path;
    char where[160];
    grpc_metadata_array initial_md;
    grpc_metadata_array trailing_md;
    grpc_status_code status;
    grpc_slice details;
    grpc_byte_buffer *reply; /* client streams: the single reply */
    bool status_pending;     /* the status batch was started */
    int tag_status;          /* addresses used as tags */
    int tag_send;
    int tag_recv;
} stream_call;

static lumen_status stream_open(lm_rpc_client *cli, stream_call *s, const char *addr,
                                lm_rpc_method m, int64_t timeout_ms, bool want_reply) {
    memset(s, 0, sizeof *s);
    s->cli = cli;
    s->details = grpc_empty_slice();
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
    s->cq = cq_get(cli);
    s->call = create_call(cli, addr, m, s->cq, timeout_ms, &s->path);
    if (s->call == NULL) return lm_status(LUMEN_UNAVAILABLE, "%s: cannot create a call", addr);
    snprintf(s->where, sizeof s->where, "%s %s", addr, s->path);

    /* Status (and for client streams the reply) are collected at the end. */
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[n].data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    ops[n].data.recv_status_on_client.status = &s->status;
    ops[n].data.recv_status_on_client.status_details = &s->details;
    n++;
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
    n++;
    if (want_reply) {
        ops[n].op = GRPC_OP_RECV_MESSAGE;
        ops[n].data.recv_message.recv_message = &s->reply;
        n++;
    }
    if (grpc_call_start_batch(s->call, ops, n, &s->tag_status, NULL) != GRPC_CALL_OK)
        return lm_status(LUMEN_INTERNAL, "%s: cannot start the call", s->where);
    s->status_pending = true;
    return lm_ok();
}

static bool stream_batch(stream_call *s, const grpc_op *ops, size_t n, void *tag) {
    if (grpc_call_start_batch(s->call, ops, n, tag, NULL) != GRPC_CALL_OK) return false;
    return grpc_completion_queue_pluck(s->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).success != 0;
}

/* Waits for the status and frees the call. `local` (an error found on this
 * side) wins over the server's status when set. */
static lumen_status stream_close(stream_call *s, lumen_status local) {
    lumen_status st = local;
    if (s->call != NULL) {
        if (!LM_IS_OK(local)) grpc_call_cancel(s->call, NULL);
        if (s->status_pending)
            grpc_completion_queue_pluck(s->cq, &s->tag_status, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (LM_IS_OK(local)) st = lm_rpc_status_from_grpc(s->status, s->details, s->where);
        grpc_call_unref(s->call);
    }
    cq_put(s->cli, s->cq);
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    grpc_slice_unref(s->details);
    return st;
}

lumen_status lm_rpc_read_stream(lm_rpc_client *cli, const char *addr, lm_rpc_method m,
                                     const ProtobufCMessage *req, int64_t timeout_ms,
                                     lm_rpc_message_fn on_message, void *arg) {
    lumen_status st = check_call_args(m, timeout_ms);
    if (!LM_IS_OK(st)) return st;
    stream_call s;
    st = stream_open(cli, &s, addr, m, timeout_ms, false);
    if (!LM_IS_OK(st)) return stream_close(&s, st);

    grpc_byte_buffer *request = lm_rpc_pack(req);
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    init_send_metadata(cli, &ops[0]);
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    bool sent = stream_batch(&s, ops, 3, &s.tag_send);
    grpc_byte_buffer_destroy(request);

    const ProtobufCMessageDescriptor *desc = output_of(m);
    while (sent && LM_IS_OK(st)) {
        grpc_byte_buffer *bb = NULL;
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &bb;
        if (!stream_batch(&s, &op, 1, &s.tag_recv) || bb == NULL) break; /* end or error: see status */
        ProtobufCMessage *msg = NULL;
        st = lm_status_wrap(lm_rpc_unpack(bb, desc, &msg), "%s", s.where);
        grpc_byte_buffer_destroy(bb);
        if (LM_IS_OK(st)) st = on_message(arg, msg);
        lm_rpc_message_free(msg);
    }
    return stream_close(&s, st);
}

lumen_status lm_rpc_write_stream(lm_rpc_client *cli, const char *addr, lm_rpc_method m,
                                      lm_rpc_next_fn next, void *arg, ProtobufCMessage **reply,
                                      int64_t timeout_ms) {
    *reply = NULL;
    lumen_status st = check_call_args(m, timeout_ms);
    if (!LM_IS_OK(st)) return st;
    stream_call s;
    st = stream_open(cli, &s, addr, m, timeout_ms, true);
    if (!LM_IS_OK(st)) return stream_close(&s, st);

    grpc_op op;
    init_send_metadata(cli, &op);
    bool alive = stream_batch(&s, &op, 1, &s.tag_send);

    /* The next message is packed while the previous one is on its way. */
    grpc_byte_buffer *in_flight = NULL;
    while (alive) {
        const ProtobufCMessage *msg = NULL;
        st = next(arg, &msg);
        grpc_byte_buffer *bb = (LM_IS_OK(st) && msg != NULL) ? lm_rpc_pack(msg) : NULL;
        if (in_flight != NULL) {
            alive = grpc_completion_queue_pluck(s.cq, &s.tag_send, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                        .success != 0;
            grpc_byte_buffer_destroy(in_flight);
            in_flight = NULL;
        }
        if (bb == NULL || !alive) {
            if (bb != NULL) grpc_byte_buffer_destroy(bb);
            break;
        }
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_SEND_MESSAGE;
        op.data.send_message.send_message = bb;
        if (grpc_call_start_batch(s.call, &op, 1, &s.tag_send, NULL) != GRPC_CALL_OK) {
            grpc_byte_buffer_destroy(bb);
            alive = false;
            break;
        }
        in_flight = bb;
    }
    if (alive && LM_IS_OK(st)) {
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        stream_batch(&s, &op, 1, &s.tag_send);
    }
    grpc_byte_buffer *bb = NULL;
    st = stream_close(&s, st);
    bb = s.reply;
    if (LM_IS_OK(st)) {
        if (bb == NULL) st = lm_status(LUMEN_INTERNAL, "%s: no reply message", s.where);
        else st = lm_status_wrap(lm_rpc_unpack(bb, output_of(m), reply), "%s", s.where);
    }
    if (bb != NULL) grpc_byte_buffer_destroy(bb);
    return st;
}

/* ------------------------------------------------------------- lifecycle */

static void *client_thread(void *arg) {
    lm_thread_name("rpc-client");
    lm_rpc_cq_run(arg);
    return NULL;
}

lumen_status lm_rpc_client_new(const lm_rpc_client_opts *opts, lm_rpc_client **out) {
    *out = NULL;
    lm_rpc_client_opts defaults = {0};
    if (opts == NULL) opts = &defaults;
    lm_rpc_init();
    grpc_channel_credentials *creds = NULL;
    lumen_status st = lm_rpc_channel_credentials(&opts->tls, &creds);
    if (!LM_IS_OK(st)) {
        lm_rpc_shutdown();
        return st;
    }
    lm_rpc_client *cli = calloc(1, sizeof *cli);
    cli->creds = creds ? creds : grpc_insecure_credentials_create();
    cli->own_connections = opts->own_connections;
    cli->token = lm_rpc_strdup_nonempty(opts->token);
    cli->tls_strings[0] = lm_rpc_strdup_nonempty(opts->tls.cert_file);
    cli->tls_strings[1] = lm_rpc_strdup_nonempty(opts->tls.key_file);
    cli->tls_strings[2] = lm_rpc_strdup_nonempty(opts->tls.ca_file);
    cli->max_message_bytes = (int)(opts->max_message_bytes ? opts->max_message_bytes : LM_RPC_DEFAULT_MAX_MESSAGE);
    cli->call_flags = opts->wait_for_ready ? GRPC_INITIAL_METADATA_WAIT_FOR_READY : 0;
    if (opts->token != NULL && *opts->token != '\0') {
        char *value = NULL;
        if (asprintf(&value, "Bearer %s", opts->token) >= 0) {
            cli->auth.key = grpc_slice_from_static_string("authorization");
            cli->auth.value = grpc_slice_from_copied_string(value);
            cli->has_auth = true;
            free(value);
        }
    }
    pthread_mutex_init(&cli->mu, NULL);
    cli->cq = grpc_completion_queue_create_for_next(NULL);
    pthread_create(&cli->thread, NULL, client_thread, cli->cq);
    *out = cli;
    return lm_ok();
}

lumen_status lm_rpc_client_new_private(const lm_rpc_client *base, lm_rpc_client **out) {
    lm_rpc_client_opts opts = {
        .token = base->token,
        .max_message_bytes = (size_t)base->max_message_bytes,
        .wait_for_ready = base->call_flags & GRPC_INITIAL_METADATA_WAIT_FOR_READY,
        .tls = {base->tls_strings[0], base->tls_strings[1], base->tls_strings[2]},
        .own_connections = true,
    };
    return lm_rpc_client_new(&opts, out);
}

void lm_rpc_client_free(lm_rpc_client *cli) {
    if (cli == NULL) return;
    pthread_mutex_lock(&cli->mu);
    cli->closing = true;
    for (async_call *a = cli->active; a != NULL; a = a->next) grpc_call_cancel(a->u.call, NULL);
    pthread_mutex_unlock(&cli->mu);
    /* Cancelled calls still complete (with CANCELLED) before the queue ends. */
    grpc_completion_queue_shutdown(cli->cq);
    pthread_join(cli->thread, NULL);
    grpc_completion_queue_destroy(cli->cq);
    for (size_t i = 0; i < cli->nchannels; i++) {
        channel_entry *e = &cli->channels[i];
        grpc_channel_destroy(e->channel);
        for (size_t k = 0; k < e->nmethods; k++) free(e->methods[k].path);
        free(e->methods);
        free(e->addr);
    }
    free(cli->channels);
    for (size_t i = 0; i < cli->nidle; i++) lm_rpc_pluck_cq_destroy(cli->idle_cqs[i]);
    free(cli->idle_cqs);
    grpc_channel_credentials_release(cli->creds);
    if (cli->has_auth) grpc_slice_unref(cli->auth.value);
    free(cli->token);
    for (int i = 0; i < 3; i++) free(cli->tls_strings[i]);
    pthread_mutex_destroy(&cli->mu);
    free(cli);
    lm_rpc_shutdown();
}

/*
 * rpc_server.c - the server half of the RPC layer.
 *
 * Connections: Lumen's listener (listener.h) accepts them, under its caps
 * and timeouts, and hands them to gRPC through a port named "external:"
 * (rpc_handoff.cc); the server tells the listener which connections carried
 * the token and which misbehave (calls refused for their token, calls
 * cancelled faster than a client would), and the listener drops those.
 *
 * Threads: one completion queue per thread; every registered method keeps
 * REQUESTS_PER_QUEUE calls requested on every queue of its lane, so an
 * incoming call is picked up by whichever thread owns the queue it lands on.
 * Urgent methods (opts.urgent_methods) have a lane of their own: a queue and
 * thread where nothing else is requested, so they never wait behind others.
 *
 * A call's life: a request tag completes with the call's metadata only ->
 * the token is checked (a call without it is refused before a byte of its
 * request is read) -> the request is read and decoded -> the handler owns
 * the call until it answers. Every pending gRPC batch holds a reference on
 * the call, and so does the handler until it answers; the last reference
 * frees it. RECV_CLOSE_ON_SERVER stays pending for the whole call so a
 * client's cancel or deadline is seen.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "input_limits.h"
#include "listener.h"
#include "log.h"
#include "rpc_internal.h"
#include "vec.h"
#include "process.h"

_Static_assert(LM_RPC_DEFAULT_MAX_MESSAGE == LM_LIMIT_MESSAGE_BYTES, "input_limits.h states the message limit");

#define REQUESTS_PER_QUEUE 8
#define DEFAULT_THREADS 2
/* The name of the port connections are handed to (rpc_handoff.cc). */
#define HANDOFF_PORT "external:lumen"

/* Implemented in rpc_handoff.cc. */
void lm_rpc_handoff(void *handler, int listener_fd, int fd);

typedef struct method_entry {
    const ProtobufCServiceDescriptor *service;
    const ProtobufCMethodDescriptor *desc;
    lm_rpc_kind kind;
    lm_rpc_handler_fn handler; /* NULL: answers UNIMPLEMENTED */
    bool urgent;               /* requested on the urgent lane only */
    void *ctx;
    char *path;
    void *registered; /* gRPC's handle */
} method_entry;

typedef struct server_thread {
    lm_rpc_server *srv;
    grpc_completion_queue *cq;
    pthread_t thread;
} server_thread;

struct lm_rpc_server {
    char *addr;
    char *auth_value; /* "Bearer <token>", or NULL when there is no token */
    size_t max_message_bytes;
    lm_rpc_tls tls;
    char *tls_strings[3];
    char **urgent;    /* "package.Service/Method" of the urgent lane's methods */
    grpc_server *server;
    grpc_resource_quota *quota;
    lm_listener *listener;
    void *fd_handler; /* written by gRPC when the handoff port is added */
    server_thread *threads; /* nthreads regular ones, then the urgent lane's (if any) */
    int nthreads;
    bool has_urgent;
    method_entry *methods;
    size_t nmethods;
    int port;
    bool started;
    bool stopped;

    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stopping; /* no new requests are posted */
    bool shutdown_done;
    long live_handlers; /* calls handed to handlers and not yet answered */
    lm_rpc_tag shutdown_tag;
    atomic_ulong errors[LM_RPC_CODE_SLOTS]; /* calls answered with an error, by code (/metrics) */
};

struct lm_rpc_call {
    lm_rpc_tag request_tag;
    lm_rpc_tag close_tag;
    lm_rpc_tag send_tag;
    lm_rpc_tag recv_tag;
    lm_rpc_server *srv;
    method_entry *method; /* NULL for calls to unknown methods */
    server_thread *thread;

    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array metadata;
    grpc_byte_buffer *payload;  /* request payload, then each client-stream message */
    grpc_call_details details;  /* unknown methods only */
    grpc_byte_buffer *send_buf; /* in flight in the send batch */
    grpc_slice status_details;
    int cancelled;
    char *peer;

    pthread_mutex_t mu;
    pthread_cond_t cancel_done;
    pthread_t cancel_thread; /* runs on_cancel while cancel_running */
    bool cancel_running;
    int refs;
    bool answered;      /* the handler has given the call back */
    bool sent_metadata; /* initial metadata went out */
    bool closed;        /* RECV_CLOSE_ON_SERVER completed */

    ProtobufCMessage *request;
    void *data;
    void (*data_free)(void *);
    void (*on_cancel)(lm_rpc_call *, void *);
    void *on_cancel_arg;

    lm_rpc_pull_fn pull;
    void *stream_state;
    void (*stream_state_free)(void *);
    grpc_byte_buffer *stream_msg; /* written by the current pull */
    lumen_status stream_status;   /* how the stream ends */
    bool stream_ended;
};

static void post_request(lm_rpc_server *srv, server_thread *t, method_entry *m);

/* ---------------------------------------------------------- call lifetime */

static void call_ref(lm_rpc_call *c) {
    pthread_mutex_lock(&c->mu);
    c->refs++;
    pthread_mutex_unlock(&c->mu);
}

static void call_free(lm_rpc_call *c) {
    if (c->call != NULL) grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->metadata);
    if (c->payload != NULL) grpc_byte_buffer_destroy(c->payload);
    if (c->send_buf != NULL) grpc_byte_buffer_destroy(c->send_buf);
    if (c->method == NULL) grpc_call_details_destroy(&c->details);
    grpc_slice_unref(c->status_details);
    lm_rpc_message_free(c->request);
    if (c->data_free != NULL) c->data_free(c->data);
    if (c->peer != NULL) gpr_free(c->peer);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cancel_done);
    free(c);
}

static void call_unref(lm_rpc_call *c) {
    pthread_mutex_lock(&c->mu);
    int left = --c->refs;
    pthread_mutex_unlock(&c->mu);
    if (left == 0) call_free(c);
}

/* Starts a batch that holds a reference until its tag completes. */
static bool start_batch(lm_rpc_call *c, const grpc_op *ops, size_t n, lm_rpc_tag *tag) {
    call_ref(c);
    grpc_call_error err = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    if (err != GRPC_CALL_OK) {
        lm_error("rpc: start_batch on %s failed: %d", c->method ? c->method->path : "?", (int)err);
        call_unref(c);
        return false;
    }
    return true;
}

/*
 * The handler's part ends: true the first time only. An answer from another
 * thread waits for a running on_cancel to return, so on_cancel never sees
 * the handler's state freed under it.
 */
static bool take_answer(lm_rpc_call *c, bool quiet) {
    pthread_mutex_lock(&c->mu);
    while (c->cancel_running && !pthread_equal(c->cancel_thread, pthread_self()))
        pthread_cond_wait(&c->cancel_done, &c->mu);
    bool first = !c->answered;
    c->answered = true;
    pthread_mutex_unlock(&c->mu);
    if (!first && !quiet) lm_error("rpc: call %s answered twice", c->method ? c->method->path : "?");
    return first;
}

/*
 * The handler gave the call back and its last batch is started. Shutdown
 * waits for every handler to get here before it closes the queues, so a
 * deferred answer never lands on a queue that is gone.
 */
static void handler_done(lm_rpc_call *c) {
    lm_rpc_server *srv = c->srv;
    call_unref(c);
    pthread_mutex_lock(&srv->mu);
    if (--srv->live_handlers == 0) pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->mu);
}

/* ------------------------------------------------------------- answering */

static size_t add_initial_metadata(lm_rpc_call *c, grpc_op *op) {
    if (c->sent_metadata) return 0;
    c->sent_metadata = true;
    memset(op, 0, sizeof *op);
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    return 1;
}

static void on_sent(lm_rpc_tag *tag, bool ok);

/* One send batch: [initial metadata] [message] [status]; takes msg. */
static void send_answer(lm_rpc_call *c, grpc_byte_buffer *msg, lumen_code code, const char *details,
                        bool with_status) {
    grpc_op ops[3];
    size_t n = add_initial_metadata(c, &ops[0]);
    if (msg != NULL) {
        c->send_buf = msg;
        memset(&ops[n], 0, sizeof ops[n]);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->send_buf;
        n++;
    }
    if (with_status) {
        if (code != LUMEN_OK)
            atomic_fetch_add_explicit(&c->srv->errors[(unsigned)code < LM_RPC_CODE_SLOTS ? (unsigned)code : LM_RPC_CODE_SLOTS - 1],
                                      1, memory_order_relaxed);
        grpc_slice_unref(c->status_details);
        c->status_details = grpc_slice_from_copied_string(details ? details : "");
        memset(&ops[n], 0, sizeof ops[n]);
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = (grpc_status_code)code;
        ops[n].data.send_status_from_server.status_details = details ? &c->status_details : NULL;
        n++;
    }
    if (!start_batch(c, ops, n, &c->send_tag)) {
        call_ref(c); /* on_sent releases the reference a started batch would hold */
        on_sent(&c->send_tag, false);
    }
}

/* The stream's state goes back to its owner and the handler's part ends. */
static void stream_cleanup(lm_rpc_call *c) {
    if (c->stream_state_free != NULL) c->stream_state_free(c->stream_state);
    c->stream_state = NULL;
    if (take_answer(c, false)) handler_done(c);
}

/*
 * Asks the handler for the next message of a stream. What pull produced is
 * sent only after pull returned, so pulls never overlap and pull may keep
 * using its state after lm_rpc_write.
 */
static void stream_pump(lm_rpc_call *c) {
    c->stream_msg = NULL;
    c->pull(c, c->stream_state);
    grpc_byte_buffer *msg = c->stream_msg;
    c->stream_msg = NULL;
    if (c->stream_ended) {
        /* The last message (if any) and the status go in one batch. */
        lumen_status st = c->stream_status;
        send_answer(c, msg, st.code, st.code ? st.msg : NULL, true);
        stream_cleanup(c);
    } else if (msg != NULL) {
        send_answer(c, msg, LUMEN_OK, NULL, false);
    } else {
        c->stream_ended = true;
        lm_error("rpc: %s: stream pull produced nothing", c->method->path);
        send_answer(c, NULL, LUMEN_INTERNAL, "stream producer stalled", true);
        stream_cleanup(c);
    }
}

static void on_sent(lm_rpc_tag *tag, bool ok) {
    lm_rpc_call *c = LM_CONTAINER_OF(tag, lm_rpc_call, send_tag);
    if (c->send_buf != NULL) {
        grpc_byte_buffer_destroy(c->send_buf);
        c->send_buf = NULL;
    }
    if (c->pull != NULL && !c->stream_ended) {
        /* A stream write completed: ask for the next, or give up on a dead call. */
        if (ok) {
            stream_pump(c);
        } else {
            c->stream_ended = true;
            stream_cleanup(c);
        }
    }
    call_unref(c);
}

void lm_rpc_reply(lm_rpc_call *c, const ProtobufCMessage *reply) {
    if (!take_answer(c, false)) return;
    send_answer(c, lm_rpc_pack(reply), LUMEN_OK, NULL, true);
    handler_done(c);
}

void lm_rpc_fail_status(lm_rpc_call *c, lumen_status st) {
    if (st.code == LUMEN_OK) st = lm_status(LUMEN_INTERNAL, "handler failed without a code");
    if (c->pull != NULL) { /* inside a stream's pull: the stream ends with st */
        c->stream_ended = true;
        c->stream_status = st;
        return;
    }
    if (!take_answer(c, false)) return;
    send_answer(c, NULL, st.code, st.msg, true);
    handler_done(c);
}

/* Fails the call unless its handler already answered (internal errors). */
static void fail_unanswered(lm_rpc_call *c, lumen_code code, const char *msg) {
    if (!take_answer(c, true)) return;
    send_answer(c, NULL, code, msg, true);
    handler_done(c);
}

void lm_rpc_fail(lm_rpc_call *c, lumen_code code, const char *fmt, ...) {
    lumen_status st;
    st.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st.msg, sizeof st.msg, fmt, ap);
    va_end(ap);
    lm_rpc_fail_status(c, st);
}

void lm_rpc_stream(lm_rpc_call *c, lm_rpc_pull_fn pull, void *state, void (*state_free)(void *)) {
    c->stream_state = state;
    c->stream_state_free = state_free;
    c->stream_status = lm_ok();
    c->pull = pull;
    stream_pump(c);
}

void lm_rpc_write(lm_rpc_call *c, const ProtobufCMessage *msg) {
    if (c->stream_msg != NULL) {
        lm_error("rpc: %s: more than one write in one pull", c->method->path);
        return;
    }
    c->stream_msg = lm_rpc_pack(msg);
}

void lm_rpc_finish(lm_rpc_call *c) {
    c->stream_ended = true;
}

bool lm_rpc_call_on_cancel(lm_rpc_call *c, void (*fn)(lm_rpc_call *, void *), void *arg) {
    pthread_mutex_lock(&c->mu);
    bool already = c->closed && c->cancelled;
    if (!already) {
        c->on_cancel = fn;
        c->on_cancel_arg = arg;
    }
    pthread_mutex_unlock(&c->mu);
    return !already;
}

void lm_rpc_call_set_data(lm_rpc_call *c, void *data, void (*data_free)(void *)) {
    c->data = data;
    c->data_free = data_free;
}

void *lm_rpc_call_data(const lm_rpc_call *c) { return c->data; }

int64_t lm_rpc_call_remaining_ms(const lm_rpc_call *c) {
    gpr_timespec now = gpr_now(c->deadline.clock_type);
    if (gpr_time_cmp(c->deadline, now) <= 0) return 0;
    gpr_timespec left = gpr_time_sub(c->deadline, now);
    if (left.tv_sec > (int64_t)1 << 40) return INT64_MAX / 2; /* no deadline */
    return left.tv_sec * 1000 + left.tv_nsec / 1000000;
}

const char *lm_rpc_call_peer(lm_rpc_call *c) {
    pthread_mutex_lock(&c->mu);
    if (c->peer == NULL) c->peer = grpc_call_get_peer(c->call);
    pthread_mutex_unlock(&c->mu);
    return c->peer;
}

/* --------------------------------------------------------------- arrival */

/* Tells the listener what the call's connection did (it may drop it). */
static void note(lm_rpc_call *c, lm_conn_event ev) {
    lm_listener_note_uri(c->srv->listener, lm_rpc_call_peer(c), ev);
}

static void on_close(lm_rpc_tag *tag, bool ok) {
    (void)ok; /* always succeeds; `cancelled` says how the call ended */
    lm_rpc_call *c = LM_CONTAINER_OF(tag, lm_rpc_call, close_tag);
    pthread_mutex_lock(&c->mu);
    c->closed = true;
    bool reset = c->cancelled && !c->answered;
    void (*fn)(lm_rpc_call *, void *) = reset ? c->on_cancel : NULL;
    void *arg = c->on_cancel_arg;
    if (fn != NULL) {
        c->cancel_running = true;
        c->cancel_thread = pthread_self();
    }
    pthread_mutex_unlock(&c->mu);
    /* Clients cancel a call now and then; one that cancels call after call
     * (HTTP/2 rapid reset) exhausts its connection's budget and loses it. */
    if (reset) note(c, LM_CONN_RESET);
    if (fn != NULL) {
        fn(c, arg);
        pthread_mutex_lock(&c->mu);
        c->cancel_running = false;
        pthread_cond_broadcast(&c->cancel_done);
        pthread_mutex_unlock(&c->mu);
    }
    call_unref(c);
}

static void recv_next(lm_rpc_call *c) {
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->payload;
    if (!start_batch(c, &op, 1, &c->recv_tag)) fail_unanswered(c, LUMEN_INTERNAL, "cannot read the request");
}

/* A client stream's message, or its end (bb NULL). */
static void stream_message(lm_rpc_call *c, grpc_byte_buffer *bb) {
    method_entry *m = c->method;
    if (bb == NULL) {
        m->handler(c, NULL, m->ctx);
        return;
    }
    ProtobufCMessage *msg = NULL;
    lumen_status st = lm_rpc_unpack(bb, m->desc->input, &msg);
    if (!LM_IS_OK(st)) {
        lm_rpc_fail_status(c, st);
        return;
    }
    m->handler(c, msg, m->ctx);
    lm_rpc_message_free(msg);
    pthread_mutex_lock(&c->mu);
    bool more = !c->answered;
    pthread_mutex_unlock(&c->mu);
    if (more) recv_next(c);
}

/* The request of a unary or server-streaming call. */
static void request_message(lm_rpc_call *c, grpc_byte_buffer *bb) {
    method_entry *m = c->method;
    if (bb == NULL) {
        lm_rpc_fail(c, LUMEN_INVALID_ARGUMENT, "%s: no request message", m->path);
        return;
    }
    lumen_status st = lm_rpc_unpack(bb, m->desc->input, &c->request);
    if (!LM_IS_OK(st)) {
        lm_rpc_fail_status(c, lm_status_wrap(st, "%s", m->path));
        return;
    }
    m->handler(c, c->request, m->ctx);
}

static void on_message(lm_rpc_tag *tag, bool ok) {
    lm_rpc_call *c = LM_CONTAINER_OF(tag, lm_rpc_call, recv_tag);
    grpc_byte_buffer *bb = c->payload;
    c->payload = NULL;
    if (!ok) fail_unanswered(c, LUMEN_CANCELLED, "call broken"); /* cancel, deadline, lost connection */
    else if (c->method->kind == LM_RPC_CLIENT_STREAM) stream_message(c, bb);
    else request_message(c, bb);
    if (bb != NULL) grpc_byte_buffer_destroy(bb);
    call_unref(c);
}

/* Constant-time comparison of the authorization header with the token. */
static bool authorized(const lm_rpc_server *srv, const grpc_metadata_array *md) {
    if (srv->auth_value == NULL) return true;
    size_t want_len = strlen(srv->auth_value);
    for (size_t i = 0; i < md->count; i++) {
        if (grpc_slice_str_cmp(md->metadata[i].key, "authorization") != 0) continue;
        grpc_slice v = md->metadata[i].value;
        if (GRPC_SLICE_LENGTH(v) != want_len) return false;
        const unsigned char *got = GRPC_SLICE_START_PTR(v);
        unsigned char diff = 0;
        for (size_t k = 0; k < want_len; k++) diff |= got[k] ^ (unsigned char)srv->auth_value[k];
        return diff == 0;
    }
    return false;
}

/* The call's metadata is in, its request not read yet. */
static void dispatch(lm_rpc_call *c) {
    method_entry *m = c->method;
    if (!authorized(c->srv, &c->metadata)) {
        note(c, LM_CONN_REFUSED);
        if (m == NULL) lm_rpc_fail(c, LUMEN_UNAUTHENTICATED, "missing or wrong cluster token");
        else lm_rpc_fail(c, LUMEN_UNAUTHENTICATED, "%s: missing or wrong cluster token", m->path);
        return;
    }
    note(c, LM_CONN_PROVEN);
    if (m == NULL) {
        lm_rpc_fail(c, LUMEN_UNIMPLEMENTED, "unknown method %.*s", (int)GRPC_SLICE_LENGTH(c->details.method),
                    (const char *)GRPC_SLICE_START_PTR(c->details.method));
    } else if (m->handler == NULL) {
        lm_rpc_fail(c, LUMEN_UNIMPLEMENTED, "%s is not implemented by this server", m->path);
    } else {
        recv_next(c);
    }
}

static void on_request(lm_rpc_tag *tag, bool ok) {
    lm_rpc_call *c = LM_CONTAINER_OF(tag, lm_rpc_call, request_tag);
    lm_rpc_server *srv = c->srv;
    if (!ok) { /* the server is shutting down */
        c->refs = 0;
        call_free(c);
        return;
    }
    post_request(srv, c->thread, c->method); /* keep the queue stocked */
    pthread_mutex_lock(&srv->mu);
    srv->live_handlers++;
    pthread_mutex_unlock(&srv->mu);

    /* The close op comes first so a cancel is always observed. */
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    if (!start_batch(c, &op, 1, &c->close_tag)) {
        fail_unanswered(c, LUMEN_INTERNAL, "cannot start the call");
        return;
    }
    dispatch(c);
}

static void post_request(lm_rpc_server *srv, server_thread *t, method_entry *m) {
    pthread_mutex_lock(&srv->mu);
    bool stopping = srv->stopping;
    pthread_mutex_unlock(&srv->mu);
    if (stopping) return;

    lm_rpc_call *c = calloc(1, sizeof *c);
    c->request_tag.fn = on_request;
    c->close_tag.fn = on_close;
    c->send_tag.fn = on_sent;
    c->recv_tag.fn = on_message;
    c->srv = srv;
    c->method = m;
    c->thread = t;
    c->refs = 1; /* the handler's, from arrival until the answer */
    c->status_details = grpc_empty_slice();
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cancel_done, NULL);
    grpc_metadata_array_init(&c->metadata);
    grpc_call_error err;
    if (m != NULL) {
        err = grpc_server_request_registered_call(srv->server, m->registered, &c->call, &c->deadline,
                                                  &c->metadata, NULL, t->cq, t->cq, &c->request_tag);
    } else {
        grpc_call_details_init(&c->details);
        err = grpc_server_request_call(srv->server, &c->call, &c->details, &c->metadata, t->cq,
                                       t->cq, &c->request_tag);
    }
    if (err != GRPC_CALL_OK) {
        lm_error("rpc: cannot request calls (%d)", (int)err);
        c->refs = 0;
        call_free(c);
    }
}

/* ------------------------------------------------------------- lifecycle */

static void *thread_main(void *arg) {
    lm_thread_name("rpc-handler");
    server_thread *t = arg;
    lm_rpc_cq_run(t->cq);
    return NULL;
}

static void on_shutdown(lm_rpc_tag *tag, bool ok) {
    (void)ok;
    lm_rpc_server *srv = LM_CONTAINER_OF(tag, lm_rpc_server, shutdown_tag);
    pthread_mutex_lock(&srv->mu);
    srv->shutdown_done = true;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->mu);
}

/* The handoff port's argument: a pointer to where gRPC writes its handler.
 * It is the server's own field, so copies share it. */
static void *handler_copy(void *p) { return p; }
static void handler_destroy(void *p) { (void)p; }
static int handler_cmp(void *a, void *b) { return a == b ? 0 : a < b ? -1 : 1; }
static const grpc_arg_pointer_vtable handler_vtable = {handler_copy, handler_destroy, handler_cmp};

#define SERVER_ARGS 9

/*
 * What a server allows a connection, on top of lm_rpc_channel_args:
 * handshakes (TLS, then the client's HTTP/2 settings) end within the time
 * an unproven connection lives; streams per connection, metadata and
 * memory are bounded; connections that stay idle are closed politely
 * (GOAWAY: the client reconnects on its next call), and peers that vanished
 * without a FIN are found by keepalive pings.
 */
static grpc_channel_args server_channel_args(lm_rpc_server *srv, const lm_listener_limits *lim,
                                             grpc_arg storage[LM_RPC_NUM_ARGS + SERVER_ARGS]) {
    grpc_channel_args common = lm_rpc_channel_args(srv->max_message_bytes, storage);
    grpc_arg *a = storage + common.num_args;
    a[0] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, {.integer = (int)lim->prove_timeout_ms}};
    a[1] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONCURRENT_STREAMS, {.integer = LM_RPC_MAX_STREAMS}};
    a[2] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_MAX_METADATA_SIZE, {.integer = LM_RPC_MAX_METADATA_BYTES}};
    a[3] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONNECTION_IDLE_MS, {.integer = LM_RPC_IDLE_MS}};
    a[4] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIME_MS, {.integer = LM_RPC_KEEPALIVE_MS}};
    a[5] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIMEOUT_MS, {.integer = LM_RPC_KEEPALIVE_TIMEOUT_MS}};
    a[6] = (grpc_arg){GRPC_ARG_POINTER, GRPC_ARG_RESOURCE_QUOTA,
                      {.pointer = {srv->quota, grpc_resource_quota_arg_vtable()}}};
    a[7] = (grpc_arg){GRPC_ARG_POINTER, HANDOFF_PORT, {.pointer = {&srv->fd_handler, &handler_vtable}}};
    /* Reads come in bounded bites, so one read of a flood cannot create
     * thousands of calls before the listener drops its connection. */
    a[8] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_TCP_MAX_READ_CHUNK_SIZE, {.integer = LM_RPC_READ_CHUNK_BYTES}};
    grpc_channel_args args = {common.num_args + SERVER_ARGS, storage};
    return args;
}

lumen_status lm_rpc_server_new(const lm_rpc_server_opts *opts, lm_rpc_server **out) {
    *out = NULL;
    if (opts == NULL || opts->addr == NULL || *opts->addr == '\0')
        return lm_status(LUMEN_INVALID_ARGUMENT, "rpc server: no listen address");
    lm_listener *listener = NULL;
    lumen_status st = lm_listener_open(opts->addr, &opts->limits, &listener);
    if (!LM_IS_OK(st)) return st;
    lm_rpc_server *srv = calloc(1, sizeof *srv);
    srv->listener = listener;
    srv->port = lm_listener_port(listener);
    srv->addr = strdup(opts->addr);
    if (opts->token != NULL && *opts->token != '\0' &&
        asprintf(&srv->auth_value, "Bearer %s", opts->token) < 0)
        srv->auth_value = NULL;
    srv->max_message_bytes = opts->max_message_bytes ? opts->max_message_bytes : LM_RPC_DEFAULT_MAX_MESSAGE;
    srv->tls_strings[0] = lm_rpc_strdup_nonempty(opts->tls.cert_file);
    srv->tls_strings[1] = lm_rpc_strdup_nonempty(opts->tls.key_file);
    srv->tls_strings[2] = lm_rpc_strdup_nonempty(opts->tls.ca_file);
    srv->tls = (lm_rpc_tls){srv->tls_strings[0], srv->tls_strings[1], srv->tls_strings[2]};
    size_t nurgent = 0;
    while (opts->urgent_methods != NULL && opts->urgent_methods[nurgent] != NULL) nurgent++;
    srv->urgent = calloc(nurgent + 1, sizeof *srv->urgent);
    for (size_t i = 0; i < nurgent; i++) srv->urgent[i] = strdup(opts->urgent_methods[i]);
    srv->has_urgent = nurgent > 0;
    srv->nthreads = opts->threads > 0 ? opts->threads : DEFAULT_THREADS;
    srv->shutdown_tag.fn = on_shutdown;
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cond, NULL);
    lm_rpc_init();

    srv->quota = grpc_resource_quota_create("lumen-server");
    grpc_resource_quota_resize(srv->quota, opts->memory_quota_bytes ? opts->memory_quota_bytes
                                                                     : LM_RPC_DEFAULT_MEMORY_QUOTA);
    lm_listener_limits lim = lm_listener_limits_of(listener);
    grpc_arg storage[LM_RPC_NUM_ARGS + SERVER_ARGS];
    grpc_channel_args channel_args = server_channel_args(srv, &lim, storage);
    srv->server = grpc_server_create(&channel_args, NULL);
    int queues = srv->nthreads + (srv->has_urgent ? 1 : 0);
    srv->threads = calloc((size_t)queues, sizeof *srv->threads);
    for (int i = 0; i < queues; i++) {
        srv->threads[i].srv = srv;
        srv->threads[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(srv->server, srv->threads[i].cq, NULL);
    }
    *out = srv;
    return lm_ok();
}

static bool is_urgent(const lm_rpc_server *srv, const char *path) {
    for (char **u = srv->urgent; *u != NULL; u++)
        if (strcmp(*u, path + 1) == 0) return true; /* path is "/package.Service/Method" */
    return false;
}

lumen_status lm_rpc_server_add_service(lm_rpc_server *srv, const ProtobufCServiceDescriptor *svc,
                                       const lm_rpc_method_impl *impls, void *ctx) {
    if (srv->started) return lm_status(LUMEN_FAILED_PRECONDITION, "rpc server already started");
    for (const lm_rpc_method_impl *impl = impls; impl != NULL && impl->name != NULL; impl++)
        if (protobuf_c_service_descriptor_get_method_by_name(svc, impl->name) == NULL)
            return lm_status(LUMEN_INVALID_ARGUMENT, "service %s has no method %s", svc->name, impl->name);

    size_t cap = srv->nmethods; /* grown once per service, to the size it needs */
    method_entry *grown = lm_vec_grow(srv->methods, &cap, srv->nmethods + svc->n_methods, sizeof *grown, 1);
    if (grown == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory adding service %s", svc->name);
    srv->methods = grown;
    for (unsigned i = 0; i < svc->n_methods; i++) {
        method_entry *m = &srv->methods[srv->nmethods++];
        memset(m, 0, sizeof *m);
        m->service = svc;
        m->desc = &svc->methods[i];
        m->ctx = ctx;
        m->path = lm_rpc_method_path(svc, i);
        m->urgent = is_urgent(srv, m->path);
        for (const lm_rpc_method_impl *impl = impls; impl != NULL && impl->name != NULL; impl++) {
            if (strcmp(impl->name, m->desc->name) == 0) {
                m->kind = impl->kind;
                m->handler = impl->handler;
            }
        }
        /* No payload with the call: the token is checked before the request
         * is read, so a stranger's big request costs nothing. */
        m->registered = grpc_server_register_method(srv->server, m->path, NULL, GRPC_SRM_PAYLOAD_NONE, 0);
        if (m->registered == NULL)
            return lm_status(LUMEN_INTERNAL, "cannot register %s", m->path);
    }
    return lm_ok();
}

static void handoff(void *arg, int listen_fd, int fd) {
    lm_rpc_server *srv = arg;
    lm_rpc_handoff(srv->fd_handler, listen_fd, fd);
}

lumen_status lm_rpc_server_start(lm_rpc_server *srv) {
    if (srv->started) return lm_status(LUMEN_FAILED_PRECONDITION, "rpc server already started");
    for (char **u = srv->urgent; *u != NULL; u++) {
        bool found = false;
        for (size_t k = 0; k < srv->nmethods && !found; k++) found = strcmp(srv->methods[k].path + 1, *u) == 0;
        if (!found) return lm_status(LUMEN_INVALID_ARGUMENT, "urgent method %s is not served", *u);
    }
    grpc_server_credentials *creds = NULL;
    lumen_status st = lm_rpc_server_credentials(&srv->tls, &creds);
    if (!LM_IS_OK(st)) return st;
    if (creds == NULL) creds = grpc_insecure_server_credentials_create();
    grpc_server_add_http2_port(srv->server, HANDOFF_PORT, creds); /* its port number means nothing */
    grpc_server_credentials_release(creds);
    if (srv->fd_handler == NULL) return lm_status(LUMEN_INTERNAL, "gRPC took no connection handler for %s", srv->addr);

    grpc_server_start(srv->server);
    srv->started = true;
    int queues = srv->nthreads + (srv->has_urgent ? 1 : 0);
    for (int i = 0; i < queues; i++) {
        server_thread *t = &srv->threads[i];
        bool urgent_lane = i == srv->nthreads;
        for (size_t k = 0; k < srv->nmethods; k++)
            if (srv->methods[k].urgent == urgent_lane)
                for (int r = 0; r < REQUESTS_PER_QUEUE; r++) post_request(srv, t, &srv->methods[k]);
        if (!urgent_lane) post_request(srv, t, NULL); /* unknown methods */
        pthread_create(&t->thread, NULL, thread_main, t);
    }
    return lm_listener_start(srv->listener, handoff, srv);
}

void lm_rpc_server_error_counts(lm_rpc_server *srv, uint64_t counts[LM_RPC_CODE_SLOTS]) {
    for (int i = 0; i < LM_RPC_CODE_SLOTS; i++)
        counts[i] = srv ? atomic_load_explicit(&srv->errors[i], memory_order_relaxed) : 0;
}

void lm_rpc_server_connection_stats(lm_rpc_server *srv, lm_listener_stats *out) {
    *out = (lm_listener_stats){0};
    if (srv != NULL) lm_listener_stats_get(srv->listener, out);
}

int lm_rpc_server_port(const lm_rpc_server *srv) { return srv->port; }

static bool wait_shutdown(lm_rpc_server *srv, int64_t timeout_ms) {
    struct timespec until = lm_timespec_in(CLOCK_REALTIME, timeout_ms);
    pthread_mutex_lock(&srv->mu);
    while (!srv->shutdown_done)
        if (pthread_cond_timedwait(&srv->cond, &srv->mu, &until) != 0) break;
    bool done = srv->shutdown_done;
    pthread_mutex_unlock(&srv->mu);
    return done;
}

void lm_rpc_server_shutdown(lm_rpc_server *srv, int64_t grace_ms) {
    if (srv == NULL || srv->stopped) return;
    srv->stopped = true;
    lm_listener_stop(srv->listener); /* no connection is handed to a server going away */
    pthread_mutex_lock(&srv->mu);
    srv->stopping = true;
    pthread_mutex_unlock(&srv->mu);
    if (srv->started) {
        grpc_server_shutdown_and_notify(srv->server, srv->threads[0].cq, &srv->shutdown_tag);
        if (!wait_shutdown(srv, grace_ms)) {
            grpc_server_cancel_all_calls(srv->server);
            wait_shutdown(srv, INT32_MAX);
        }
    }
    /* Cancelled calls reached their handlers' on_cancel; wait for the answers. */
    pthread_mutex_lock(&srv->mu);
    while (srv->live_handlers > 0) {
        struct timespec until = lm_timespec_in(CLOCK_REALTIME, 5000);
        if (pthread_cond_timedwait(&srv->cond, &srv->mu, &until) != 0)
            lm_warn("rpc: shutdown waits for %ld unanswered call(s)", srv->live_handlers);
    }
    pthread_mutex_unlock(&srv->mu);
    int queues = srv->nthreads + (srv->has_urgent ? 1 : 0);
    for (int i = 0; i < queues; i++) grpc_completion_queue_shutdown(srv->threads[i].cq);
    for (int i = 0; i < queues; i++) {
        if (srv->started) pthread_join(srv->threads[i].thread, NULL);
        else lm_rpc_cq_run(srv->threads[i].cq); /* drain */
    }
}

void lm_rpc_server_free(lm_rpc_server *srv) {
    if (srv == NULL) return;
    lm_rpc_server_shutdown(srv, 0);
    grpc_server_destroy(srv->server);
    lm_listener_free(srv->listener);
    grpc_resource_quota_unref(srv->quota);
    int queues = srv->nthreads + (srv->has_urgent ? 1 : 0);
    for (int i = 0; i < queues; i++) grpc_completion_queue_destroy(srv->threads[i].cq);
    for (size_t k = 0; k < srv->nmethods; k++) free(srv->methods[k].path);
    free(srv->methods);
    free(srv->threads);
    for (char **u = srv->urgent; *u != NULL; u++) free(*u);
    free(srv->urgent);
    for (int i = 0; i < 3; i++) free(srv->tls_strings[i]);
    free(srv->auth_value);
    free(srv->addr);
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->cond);
    free(srv);
    lm_rpc_shutdown();
}

/*
 * rpc.h - Lumen's RPC layer: protobuf-c messages over the gRPC C core.
 *
 * The rpc*.c files are the only code in Lumen that includes grpc/grpc.h.
 *
 * Server: a service is added with its protoc-c ProtobufCServiceDescriptor and
 * a table of handlers by method name; the layer registers every method with
 * gRPC, decodes requests, checks the token and answers what has no handler
 * with UNIMPLEMENTED. Handlers run on the server's completion-queue threads
 * and must not block: a handler that has to wait (for an object, a task)
 * keeps the lm_rpc_call and answers it later from any thread.
 *
 * Client: channels are cached per address; every call has a deadline;
 * calls are synchronous, asynchronous with a completion callback (many in
 * flight), or streams of chunks for large payloads.
 *
 * Ownership: a handler owns its call until it answers it exactly once
 * (lm_rpc_reply, lm_rpc_fail, or the end of an lm_rpc_stream). Messages
 * given to the layer stay the caller's; messages received from it are the
 * receiver's to free with lm_rpc_message_free unless said otherwise.
 */
#ifndef LM_RPC_H
#define LM_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "listener.h"
#include "status.h"

/* gRPC's own default receive limit; chunks of streams stay far below it. */
#define LM_RPC_DEFAULT_MAX_MESSAGE (4u << 20)
/* Chunk size for streamed payloads: big enough to amortize per-message cost,
 * small enough to never approach the receive limit. */
#define LM_RPC_CHUNK_BYTES (1u << 20)

/* Process-wide gRPC start/stop, reference counted (safe to nest). */
void lm_rpc_init(void);
void lm_rpc_shutdown(void);

/* Frees a message received from the layer; NULL is fine. */
void lm_rpc_message_free(ProtobufCMessage *msg);

/* TLS material (PEM files). All empty: plaintext. */
typedef struct lm_rpc_tls {
    const char *cert_file; /* this side's certificate chain */
    const char *key_file;  /* this side's private key */
    const char *ca_file;   /* CA that signed the peer's certificate */
} lm_rpc_tls;

/* ---------------------------------------------------------------- server */

/*
 * What a server allows each connection (see also lm_listener_limits, which
 * bound connections, and rpc_server.c for why each is what it is).
 */
#define LM_RPC_MAX_STREAMS 1024            /* calls open at once on one connection; more wait client-side */
#define LM_RPC_MAX_METADATA_BYTES (16 << 10) /* a call's headers */
#define LM_RPC_IDLE_MS (10 * 60 * 1000)    /* a connection without calls this long gets GOAWAY */
#define LM_RPC_KEEPALIVE_MS (60 * 1000)    /* ping a connection quiet this long... */
#define LM_RPC_KEEPALIVE_TIMEOUT_MS (20 * 1000) /* ...and close it if the ping goes unanswered */
#define LM_RPC_READ_CHUNK_BYTES (256 << 10) /* the most gRPC reads from a connection at once */
#define LM_RPC_DEFAULT_MEMORY_QUOTA ((uint64_t)128 << 20) /* gRPC's buffers and calls, per server */

typedef struct lm_rpc_server lm_rpc_server;
typedef struct lm_rpc_call lm_rpc_call;

typedef struct lm_rpc_server_opts {
    const char *addr;          /* "host:port"; port 0 picks a free one */
    int threads;               /* completion-queue threads; 0: 2 */
    const char *token;         /* non-empty: calls must carry it as a Bearer token */
    size_t max_message_bytes;  /* 0: LM_RPC_DEFAULT_MAX_MESSAGE */
    lm_rpc_tls tls;
    /* Methods ("lumen.Scheduler/Heartbeat") served on a lane of their own:
     * a queue and thread where no other call waits, so a flood of other
     * calls cannot delay them. NULL-terminated; NULL: none. */
    const char *const *urgent_methods;
    lm_listener_limits limits; /* connections; zeros: the defaults (listener.h) */
    uint64_t memory_quota_bytes; /* gRPC's memory for this server; 0: LM_RPC_DEFAULT_MEMORY_QUOTA */
} lm_rpc_server_opts;

typedef enum lm_rpc_kind {
    LM_RPC_UNARY,         /* one request, one reply */
    LM_RPC_SERVER_STREAM, /* one request, a stream of replies (lm_rpc_stream) */
    LM_RPC_CLIENT_STREAM, /* a stream of requests, one reply */
} lm_rpc_kind;

/*
 * A method's handler. `msg` is the decoded request; it stays valid until the
 * call is answered (client streams: only during this invocation, and the
 * handler is invoked once per message, then once with msg == NULL at the end
 * of the stream). `ctx` is the service's context given to add_service.
 */
typedef void (*lm_rpc_handler_fn)(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx);

typedef struct lm_rpc_method_impl {
    const char *name; /* as in the .proto, e.g. "Check" */
    lm_rpc_kind kind;
    lm_rpc_handler_fn handler;
} lm_rpc_method_impl;

/* Binds opts->addr at once (its errors say what is wrong with the address:
 * listener.h); serves from lm_rpc_server_start. */
lumen_status lm_rpc_server_new(const lm_rpc_server_opts *opts, lm_rpc_server **out);

/* Adds a service before lm_rpc_server_start. `methods` ends with a {NULL}
 * entry; a name the descriptor does not have is an error. */
lumen_status lm_rpc_server_add_service(lm_rpc_server *srv, const ProtobufCServiceDescriptor *svc,
                                       const lm_rpc_method_impl *methods, void *ctx);

/* Binds and starts serving. */
lumen_status lm_rpc_server_start(lm_rpc_server *srv);

/* Calls the server answered with an error status, by code: counts[code]
 * (codes past the table share its last slot). For metrics. */
#define LM_RPC_CODE_SLOTS 128
void lm_rpc_server_error_counts(lm_rpc_server *srv, uint64_t counts[LM_RPC_CODE_SLOTS]);

/* The server's connections (listener.h), for metrics; zeros for NULL. */
void lm_rpc_server_connection_stats(lm_rpc_server *srv, lm_listener_stats *out);

/* The port actually bound (useful after binding port 0). */
int lm_rpc_server_port(const lm_rpc_server *srv);

/* Stops accepting calls, lets calls in flight finish for up to grace_ms,
 * cancels the rest, then joins the threads. Handlers holding deferred calls
 * see their on_cancel callbacks. Idempotent. */
void lm_rpc_server_shutdown(lm_rpc_server *srv, int64_t grace_ms);

/* Shuts down (grace 0) if still running, then frees. NULL is fine. */
void lm_rpc_server_free(lm_rpc_server *srv);

/* Answers a unary or client-streaming call with a reply and status OK. */
void lm_rpc_reply(lm_rpc_call *call, const ProtobufCMessage *reply);

/* Answers any call with an error status (code must not be LUMEN_OK). */
void lm_rpc_fail(lm_rpc_call *call, lumen_code code, const char *fmt, ...) LM_PRINTF(3, 4);
void lm_rpc_fail_status(lm_rpc_call *call, lumen_status st);

/*
 * Server streaming. `pull` is invoked each time the stream can take another
 * message (first from within lm_rpc_stream, then on a server thread): it
 * either writes exactly one message with lm_rpc_write or ends the call with
 * lm_rpc_finish / lm_rpc_fail. `state_free(state)` runs once when the call
 * ends however it ends (finished, failed, or cancelled by the client).
 */
typedef void (*lm_rpc_pull_fn)(lm_rpc_call *call, void *state);
void lm_rpc_stream(lm_rpc_call *call, lm_rpc_pull_fn pull, void *state, void (*state_free)(void *));
void lm_rpc_write(lm_rpc_call *call, const ProtobufCMessage *msg);
void lm_rpc_finish(lm_rpc_call *call);

/*
 * A deferred handler's hook: `fn(call, arg)` runs once, on a server thread,
 * if the client cancels or the deadline passes before the call is answered.
 * The handler must still answer the call (the answer is then discarded);
 * an answer given on another thread waits until fn has returned, so fn may
 * use state the answering thread frees afterwards. Returns false (and
 * registers nothing) when the call is already cancelled: answer it now.
 * It never calls fn itself, so it may be called under the handler's locks.
 */
bool lm_rpc_call_on_cancel(lm_rpc_call *call, void (*fn)(lm_rpc_call *call, void *arg), void *arg);

/* Per-call state for a handler that sees its call more than once (client
 * streams): data_free(data) runs when the call is freed. */
void lm_rpc_call_set_data(lm_rpc_call *call, void *data, void (*data_free)(void *));
void *lm_rpc_call_data(const lm_rpc_call *call);

/* Milliseconds left before the call's deadline (never negative). */
int64_t lm_rpc_call_remaining_ms(const lm_rpc_call *call);

/* "ipv4:127.0.0.1:5555"-style peer address, for logs; owned by the call. */
const char *lm_rpc_call_peer(lm_rpc_call *call);

/* ---------------------------------------------------------------- client */

typedef struct lm_rpc_client lm_rpc_client;

typedef struct lm_rpc_client_opts {
    const char *token;          /* sent as "authorization: Bearer <token>" when non-empty */
    size_t max_message_bytes;   /* 0: LM_RPC_DEFAULT_MAX_MESSAGE */
    bool wait_for_ready;        /* true: wait (within the deadline) for a peer that is not up yet */
    lm_rpc_tls tls;
    /* true: connections of this client's own, shared with no other client
     * of the process (gRPC shares one per address by default), so its calls
     * never queue behind another's bulk transfers: heartbeats. */
    bool own_connections;
} lm_rpc_client_opts;

lumen_status lm_rpc_client_new(const lm_rpc_client_opts *opts, lm_rpc_client **out);

/* A new client with base's token, TLS and message limit, and connections
 * of its own (own_connections). */
lumen_status lm_rpc_client_new_private(const lm_rpc_client *base, lm_rpc_client **out);

/* Cancels calls in flight (their callbacks run with CANCELLED), then frees. */
void lm_rpc_client_free(lm_rpc_client *cli);

/*
 * A method to call: a service descriptor and the method's name, resolved
 * once (lm_rpc_method_find). Keep them in static storage or a long-lived
 * struct: the client caches per-method state keyed by them.
 */
typedef struct lm_rpc_method {
    const ProtobufCServiceDescriptor *service;
    unsigned index;
} lm_rpc_method;

/* Resolves svc's method `name`; false when there is none. */
bool lm_rpc_method_find(const ProtobufCServiceDescriptor *svc, const char *name,
                        lm_rpc_method *out);

/* Synchronous unary call. On success *reply is the caller's. timeout_ms > 0. */
lumen_status lm_rpc_unary(lm_rpc_client *cli, const char *addr, lm_rpc_method m,
                         const ProtobufCMessage *req, ProtobufCMessage **reply,
                         int64_t timeout_ms);

/*
 * Asynchronous unary call: returns at once; `done` runs exactly once on the
 * client's thread with the outcome (reply is NULL unless st is OK, and is
 * then the callback's to free). If this function itself fails, `done` never
 * runs. `done` must not block.
 */
typedef void (*lm_rpc_done_fn)(void *arg, lumen_status st, ProtobufCMessage *reply);
lumen_status lm_rpc_unary_async(lm_rpc_client *cli, const char *addr, lm_rpc_method m,
                               const ProtobufCMessage *req, int64_t timeout_ms,
                               lm_rpc_done_fn done, void *arg);

/*
 * The same with the request packed already (protobuf_c_message_pack into
 * malloc'd `bytes`, which the call takes in every case): for a sender that
 * builds its requests under a lock of its own and starts the calls once it
 * has released it.
 */
lumen_status lm_rpc_unary_async_packed(lm_rpc_client *cli, const char *addr, lm_rpc_method m, void *bytes,
                                      size_t len, int64_t timeout_ms, lm_rpc_done_fn done, void *arg);

/*
 * Server-streaming call: sends `req`, then gives every message of the reply
 * stream to on_message (still the layer's: copy what you keep). A non-OK
 * status from on_message cancels the call and is returned.
 */
typedef lumen_status (*lm_rpc_message_fn)(void *arg, const ProtobufCMessage *msg);
lumen_status lm_rpc_read_stream(lm_rpc_client *cli, const char *addr, lm_rpc_method m,
                                     const ProtobufCMessage *req, int64_t timeout_ms,
                                     lm_rpc_message_fn on_message, void *arg);

/*
 * Client-streaming call: next() sets *msg to the next message to send (still
 * the producer's, packed before next() is called again) or to NULL at the end
 * of the stream. A non-OK status from next() cancels the call and is
 * returned. On success *reply is the caller's.
 */
typedef lumen_status (*lm_rpc_next_fn)(void *arg, const ProtobufCMessage **msg);
lumen_status lm_rpc_write_stream(lm_rpc_client *cli, const char *addr, lm_rpc_method m,
                                      lm_rpc_next_fn next, void *arg,
                                      ProtobufCMessage **reply, int64_t timeout_ms);

#endif

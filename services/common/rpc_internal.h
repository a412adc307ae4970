/*
 * rpc_internal.h - what the server and client halves of the RPC layer share:
 * completion tags, message codec, deadlines, status translation, credentials.
 * Only rpc*.c include this (it pulls in grpc/grpc.h).
 */
#ifndef LM_RPC_INTERNAL_H
#define LM_RPC_INTERNAL_H

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "rpc.h"

/*
 * Every tag handed to a completion queue is an lm_rpc_tag embedded in a
 * larger struct; a queue's thread dispatches with tag->fn(tag, ok) and the
 * owner finds itself again with container_of.
 */
typedef struct lm_rpc_tag lm_rpc_tag;
struct lm_rpc_tag {
    void (*fn)(lm_rpc_tag *tag, bool ok);
};

#define LM_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* Runs a completion queue until it shuts down, dispatching every event. */
void lm_rpc_cq_run(grpc_completion_queue *cq);

/* Shuts a pluck queue down, drains it, destroys it. */
void lm_rpc_pluck_cq_destroy(grpc_completion_queue *cq);

/* Packs a message into a fresh byte buffer (the caller destroys it). */
grpc_byte_buffer *lm_rpc_pack(const ProtobufCMessage *msg);

/* Decodes a byte buffer; INVALID_ARGUMENT naming the message type when the
 * bytes are not a valid encoding. The buffer stays the caller's. */
lumen_status lm_rpc_unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
                           ProtobufCMessage **out);

/* Channel arguments both ends use; `storage` backs the returned struct. */
#define LM_RPC_NUM_ARGS 7
grpc_channel_args lm_rpc_channel_args(size_t max_message_bytes, grpc_arg storage[LM_RPC_NUM_ARGS]);

/* An absolute deadline timeout_ms from now. */
gpr_timespec lm_rpc_deadline(int64_t timeout_ms);

/* gRPC status + details -> lumen_status (the numbers are the same). */
lumen_status lm_rpc_status_from_grpc(grpc_status_code code, grpc_slice details,
                                     const char *where);

/* "/package.Service/Method" for a method; the caller frees it. */
char *lm_rpc_method_path(const ProtobufCServiceDescriptor *svc, unsigned index);

/* TLS credentials from PEM files (NULL creds and OK when tls is all empty). */
lumen_status lm_rpc_server_credentials(const lm_rpc_tls *tls, grpc_server_credentials **out);
lumen_status lm_rpc_channel_credentials(const lm_rpc_tls *tls, grpc_channel_credentials **out);

/* Duplicates s, or NULL for NULL/empty. */
char *lm_rpc_strdup_nonempty(const char *s);

#endif

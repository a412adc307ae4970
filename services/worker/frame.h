/*
 * frame.h - length-prefixed protobuf-c frames between a worker and its
 * executors, over a Unix stream socket.
 *
 * A frame is a 4-byte little-endian length, then the packed message. File
 * descriptors (memfds holding big arguments or results) ride on the frame's
 * first bytes as SCM_RIGHTS. This module links only protobuf-c: the executor
 * uses it too and must not pull in gRPC, so errors are negative errno values
 * (-EPIPE: the peer closed; -EPROTO: a malformed frame; -EMSGSIZE: too big).
 */
#ifndef LM_FRAME_H
#define LM_FRAME_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#define LM_FRAME_HEADER_BYTES 4
/* Frames stay small: anything big travels in a memfd. */
#define LM_FRAME_MAX_BYTES (256u << 20)
#define LM_FRAME_MAX_FDS 4

/* The codec, without I/O. lm_frame_encode returns a malloc'd buffer of
 * header + message (*len bytes), NULL when the message is too big. */
uint8_t *lm_frame_encode(const ProtobufCMessage *msg, size_t *len);
/* The body length a header announces. */
uint32_t lm_frame_body_len(const uint8_t header[LM_FRAME_HEADER_BYTES]);

/* Sends one frame (blocking) with nfds descriptors attached (the caller
 * keeps them). Returns 0 or a negative errno. */
int lm_frame_send(int sock, const ProtobufCMessage *msg, const int *fds, size_t nfds);

/* Sends pre-encoded frame bytes (async-signal-safe: only write/sendmsg). */
int lm_frame_send_raw(int sock, const uint8_t *buf, size_t len);

/* Receives one frame (blocking) and unpacks it as `desc`; *msg is the
 * caller's (protobuf_c_message_free_unpacked). Received descriptors
 * (close-on-exec) go to fds[0..*nfds); extra ones are closed. On failure
 * nothing is left to free or close. */
int lm_frame_recv(int sock, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg, int *fds,
                  size_t max_fds, size_t *nfds);

#endif

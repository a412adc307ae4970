/*
 * echo_server.h - a real lumentest.Echo server on a loopback port, used by the
 * RPC tests and bench/rpc_bench. Say answers at once, after delay_ms (from a
 * timer thread, i.e. a deferred answer), or never until the client gives up
 * (delay_ms == ECHO_NEVER, answered from on_cancel).
 */
#ifndef LM_ECHO_SERVER_H
#define LM_ECHO_SERVER_H

#include <stdint.h>

#include "echo.pb-c.h"
#include "rpc.h"

#define ECHO_NEVER UINT32_MAX

typedef struct echo_server echo_server;

/* Starts on 127.0.0.1:<free port>; token may be NULL. */
lumen_status echo_server_start(const char *token, int threads, echo_server **out);

/* "127.0.0.1:<port>" */
const char *echo_server_addr(const echo_server *e);

/* Deferred calls the client cancelled (ECHO_NEVER and delayed ones). */
unsigned echo_server_cancels(echo_server *e);

/* The server itself, for shutdown tests. */
lm_rpc_server *echo_server_rpc(echo_server *e);

void echo_server_free(echo_server *e);

/* The byte at offset i of a Download stream, and FNV-1a over a buffer. */
uint8_t echo_byte_at(uint64_t i);
uint64_t echo_fnv1a(uint64_t h, const uint8_t *p, size_t n);
#define ECHO_FNV_INIT 1469598103934665603ULL

/* Methods of the Echo service, resolved once. */
lm_rpc_method echo_method(const char *name);

#endif

/*
 * raw_rpc.h - test-only: what a hostile peer sends a Lumen server, which the
 * RPC layer never would: gRPC calls whose request is any bytes, and plain
 * TCP connections that never speak HTTP/2 properly.
 */
#ifndef LM_TEST_RAW_RPC_H
#define LM_TEST_RAW_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "test_util.h" /* lm_test_tcp_connect */

/*
 * Calls `path` ("/lumen.Scheduler/SubmitTasks") on addr with `bytes` as the
 * one request message - of any method kind: a client stream ends after it -
 * and returns the call's status (OK when the server answered OK). The
 * request may be of any size: only the server's limit applies.
 */
lumen_status lm_test_raw_call(const char *addr, const char *path, const void *bytes, size_t len,
                              int64_t timeout_ms);

/* Writes bytes (a peer that closed is fine), then reads until the server
 * closes or timeout_ms passes. Returns the bytes the server sent. */
size_t lm_test_tcp_exchange(int fd, const void *bytes, size_t len, int64_t timeout_ms);

#endif

/*
 * test_util.h - what every Lumen test shares: a CUnit runner, assertions that
 * print a lumen_status's message, free loopback ports, temp dirs, and child
 * processes that are always reaped.
 */
#ifndef LM_TEST_UTIL_H
#define LM_TEST_UTIL_H

#include <CUnit/CUnit.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "status.h"

/* Runs one suite with the basic runner; returns the process exit code
 * (0 when every assertion held). init/cleanup may be NULL. */
int lm_test_main(const char *suite, CU_TestInfo *tests, int (*init)(void), int (*cleanup)(void));

/* Asserts a lumen_status is OK; on failure prints its code and message. */
#define LM_ASSERT_OK(expr)                                                              \
    do {                                                                                \
        lumen_status lm_st_ = (expr);                                                   \
        if (lm_st_.code != LUMEN_OK)                                                    \
            fprintf(stderr, "\n%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr,       \
                    lumen_code_name(lm_st_.code), lm_st_.msg);                          \
        CU_ASSERT_EQUAL_FATAL(lm_st_.code, LUMEN_OK);                                   \
    } while (0)

/* Asserts a lumen_status has the given code; prints it when it has not. */
#define LM_ASSERT_CODE(expr, want)                                                      \
    do {                                                                                \
        lumen_status lm_st_ = (expr);                                                   \
        if (lm_st_.code != (want))                                                      \
            fprintf(stderr, "\n%s:%d: %s -> %s (%s), wanted %s\n", __FILE__, __LINE__,  \
                    #expr, lumen_code_name(lm_st_.code), lm_st_.msg,                    \
                    lumen_code_name(want));                                             \
        CU_ASSERT_EQUAL(lm_st_.code, (want));                                           \
    } while (0)

/* Deadlines for work whose speed the build changes: sanitizer builds move
 * big buffers several times slower (fresh shadow pages, no reuse while
 * freed memory sits in quarantine), so their deadlines stretch. */
#ifdef LUMEN_SANITIZED
#define LM_TEST_SLOWDOWN 5
#else
#define LM_TEST_SLOWDOWN 1
#endif
#define LM_TEST_TIMEOUT(ms) ((int64_t)(ms) * LM_TEST_SLOWDOWN)

/* A TCP port on 127.0.0.1 that was free a moment ago. */
uint16_t lm_test_free_port(void);

/* A plain TCP connection to addr ("1.2.3.4:port", IPv4); -1 when it cannot connect. */
int lm_test_tcp_connect(const char *addr);

/* A fresh directory under $TMPDIR (or /tmp); free() the result.
 * lm_test_rmtree removes it and everything below it. */
char *lm_test_tmpdir(const char *tag);
void lm_test_rmtree(const char *path);

/* Monotonic clock. */
uint64_t lm_test_now_us(void);
void lm_test_sleep_ms(unsigned ms);

/* Starts argv[0] (searched in PATH) with stdout+stderr appended to log_path
 * (NULL: inherited). Returns the pid, or -1. The child dies with the test
 * process (PR_SET_PDEATHSIG), so a crashed test leaves nothing running. */
pid_t lm_test_spawn(char *const argv[], const char *log_path);

/* The same with RLIMIT_NOFILE set to max_fds, soft and hard (0: inherited):
 * a service that must live with few descriptors. */
pid_t lm_test_spawn_limited(char *const argv[], const char *log_path, int max_fds);

/* Runs argv[0] (a path) to completion with its stdout - and stderr too when
 * with_stderr - written to out_path, then read back into output (at most
 * cap - 1 bytes, NUL-terminated). Returns the exit code, or -1 when it did
 * not exit normally. */
int lm_test_run(char *const argv[], const char *out_path, bool with_stderr, char *output, size_t cap);

/* Sends sig and reaps the child, waiting at most timeout_ms before SIGKILL.
 * Returns the wait status, or -1 if pid was not a child. */
int lm_test_stop(pid_t pid, int sig, unsigned timeout_ms);

#endif

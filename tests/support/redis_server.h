/*
 * redis_server.h - a real redis-server for integration tests.
 *
 * Each server runs on a free loopback port in a temp dir of its own, is
 * ready when it answers PING, can be killed (SIGKILL) and restarted on the
 * same port and dir (so AOF data comes back), and dies with the test process
 * even when the test crashes. Start it from the thread that stays alive
 * (the child gets SIGKILL when its creating thread exits).
 *
 *     lm_test_redis *redis;
 *     LM_ASSERT_OK(lm_test_redis_start(NULL, &redis));
 *     ... lm_test_redis_addr(redis) is "127.0.0.1:<port>" ...
 *     lm_test_redis_stop(redis);
 */
#ifndef LM_TEST_REDIS_SERVER_H
#define LM_TEST_REDIS_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "status.h"

typedef struct lm_test_redis lm_test_redis;

typedef struct lm_test_redis_opts {
    bool appendonly;      /* AOF, fsync always: data written survives kill + restart */
    const char *password; /* --requirepass; NULL or "": none */
} lm_test_redis_opts;

/* Starts redis-server (LUMEN_TEST_REDIS_SERVER) and waits up to 10 s for
 * PING; opts may be NULL. On failure the error quotes the server's log. */
lumen_status lm_test_redis_start(const lm_test_redis_opts *opts, lm_test_redis **out);

/* "127.0.0.1:<port>", valid until lm_test_redis_stop. */
const char *lm_test_redis_addr(const lm_test_redis *r);
/* A raw hiredis connection to "host:port", as a user's redis-cli sees the
 * data: NULL, or a context whose err says why it failed (redisConnect's). */
struct redisContext *lm_test_redis_connect(const char *addr);
uint16_t lm_test_redis_port(const lm_test_redis *r);
const char *lm_test_redis_dir(const lm_test_redis *r);
pid_t lm_test_redis_pid(const lm_test_redis *r); /* -1 while not running */

/* SIGKILL, and reap: the server goes away without a word. */
void lm_test_redis_kill(lm_test_redis *r);

/* Starts the server again on the same port and dir (stopping it first if it
 * runs) and waits for PING, which Redis answers once the AOF is loaded. */
lumen_status lm_test_redis_restart(lm_test_redis *r);

/* Stops the server, removes its dir, frees r; NULL-safe. */
void lm_test_redis_stop(lm_test_redis *r);

#endif

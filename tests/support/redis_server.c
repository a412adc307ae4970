/* redis_server.c - real redis-servers for tests; see redis_server.h. */
#include "redis_server.h"

#include <hiredis/hiredis.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "test_util.h"

#ifndef LUMEN_TEST_REDIS_SERVER
#define LUMEN_TEST_REDIS_SERVER "redis-server"
#endif

#define READY_TIMEOUT_MS 10000u
#define PORT_TRIES 5 /* a free port may be taken before redis binds it */

struct lm_test_redis {
    pid_t pid;
    uint16_t port;
    bool appendonly;
    char *password;
    char *dir;
    char *log;
    char addr[32];
};

/* The last non-empty line of the server's log, for error messages. */
static void log_tail(const char *path, char *out, size_t size) {
    snprintf(out, size, "(no log)");
    FILE *f = fopen(path, "r");
    if (f == NULL) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0]) snprintf(out, size, "%s", line);
    }
    fclose(f);
}

typedef enum { PING_NOT_YET, PING_READY, PING_REFUSED_AUTH } ping_result;

/* One readiness probe: connect, AUTH if needed, PING. */
static ping_result ping(const lm_test_redis *r, char *why, size_t size) {
    struct timeval tv = {0, 200 * 1000};
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    ping_result res = PING_NOT_YET;
    if (ctx == NULL || ctx->err) {
        snprintf(why, size, "%s", ctx ? ctx->errstr : "out of memory");
        redisFree(ctx);
        return res;
    }
    redisSetTimeout(ctx, tv);
    redisReply *rep = r->password ? redisCommand(ctx, "AUTH %s", r->password) : NULL;
    if (rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "LOADING", 7) != 0) {
        snprintf(why, size, "AUTH: %s", rep->str);
        res = PING_REFUSED_AUTH;
    }
    freeReplyObject(rep);
    rep = res == PING_NOT_YET ? redisCommand(ctx, "PING") : NULL;
    if (rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0)
        res = PING_READY;
    else if (rep)
        snprintf(why, size, "PING: %s", rep->str ? rep->str : "unexpected reply");
    else if (res == PING_NOT_YET)
        snprintf(why, size, "PING: %s", ctx->errstr);
    freeReplyObject(rep);
    redisFree(ctx);
    return res;
}

/* Spawns the server and waits for PING. *in_use tells a lost port race. */
static lumen_status launch(lm_test_redis *r, bool *in_use) {
    char port[8];
    snprintf(port, sizeof port, "%u", r->port);
    char *argv[] = {LUMEN_TEST_REDIS_SERVER, "--port", port, "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", r->appendonly ? "yes" : "no",
                    "--appendfsync", "always", "--dir", r->dir, "--daemonize", "no",
                    r->password ? "--requirepass" : NULL, r->password, NULL};
    *in_use = false;
    r->pid = lm_test_spawn(argv, r->log);
    if (r->pid < 0) return lm_status_errno(LUMEN_INTERNAL, errno, "fork redis-server");
    char why[256] = "not started", tail[512];
    uint64_t deadline = lm_test_now_us() + READY_TIMEOUT_MS * 1000u;
    for (;;) {
        int status;
        if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
            r->pid = -1;
            log_tail(r->log, tail, sizeof tail);
            *in_use = strstr(tail, "already in use") != NULL;
            return lm_status(LUMEN_UNAVAILABLE, "redis-server on port %u exited (status %d): %s",
                             r->port, status, tail);
        }
        ping_result res = ping(r, why, sizeof why);
        if (res == PING_READY) return lm_ok();
        if (res == PING_REFUSED_AUTH || lm_test_now_us() > deadline) break;
        lm_test_sleep_ms(10); /* a bounded readiness probe: there is nothing to block on */
    }
    lm_test_stop(r->pid, SIGKILL, 1000);
    r->pid = -1;
    log_tail(r->log, tail, sizeof tail);
    return lm_status(LUMEN_UNAVAILABLE, "redis-server on port %u not ready after %u ms: %s; log: %s",
                     r->port, READY_TIMEOUT_MS, why, tail);
}

lumen_status lm_test_redis_start(const lm_test_redis_opts *opts, lm_test_redis **out) {
    *out = NULL;
    lm_test_redis *r = calloc(1, sizeof *r);
    if (r == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    r->pid = -1;
    r->appendonly = opts && opts->appendonly;
    if (opts && opts->password && *opts->password) r->password = strdup(opts->password);
    r->dir = lm_test_tmpdir("redis");
    if (r->dir == NULL || asprintf(&r->log, "%s/redis.log", r->dir) < 0) {
        r->log = NULL;
        lm_test_redis_stop(r);
        return lm_status_errno(LUMEN_IO, errno, "redis temp dir");
    }
    lumen_status st = lm_status(LUMEN_UNAVAILABLE, "no free port");
    bool in_use = true;
    for (int i = 0; i < PORT_TRIES && in_use; i++) {
        r->port = lm_test_free_port();
        if (r->port == 0) continue;
        st = launch(r, &in_use);
    }
    if (!LM_IS_OK(st)) {
        lm_test_redis_stop(r);
        return st;
    }
    snprintf(r->addr, sizeof r->addr, "127.0.0.1:%u", r->port);
    *out = r;
    return st;
}

const char *lm_test_redis_addr(const lm_test_redis *r) { return r->addr; }

redisContext *lm_test_redis_connect(const char *addr) {
    char host[64];
    int port = 0;
    if (sscanf(addr, "%63[^:]:%d", host, &port) != 2) return NULL;
    return redisConnect(host, port);
}
uint16_t lm_test_redis_port(const lm_test_redis *r) { return r->port; }
const char *lm_test_redis_dir(const lm_test_redis *r) { return r->dir; }
pid_t lm_test_redis_pid(const lm_test_redis *r) { return r->pid; }

void lm_test_redis_kill(lm_test_redis *r) {
    lm_test_stop(r->pid, SIGKILL, 1000);
    r->pid = -1;
}

lumen_status lm_test_redis_restart(lm_test_redis *r) {
    if (r->pid > 0) lm_test_stop(r->pid, SIGTERM, 5000);
    r->pid = -1;
    bool in_use;
    return launch(r, &in_use);
}

void lm_test_redis_stop(lm_test_redis *r) {
    if (r == NULL) return;
    if (r->pid > 0) lm_test_stop(r->pid, SIGTERM, 5000);
    lm_test_rmtree(r->dir);
    free(r->dir);
    free(r->log);
    free(r->password);
    free(r);
}

/* redis_state.c - the Redis key layout over hiredis; see redis_state.h. */
#include "clock.h"
#include "redis_state.h"

#include <hiredis/hiredis.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "tasklog.h"
#include "process.h"

#define DEFAULT_ADDR "127.0.0.1:6379"
#define DEFAULT_PREFIX "lumen:"
#define DEFAULT_CHANNEL "events"
#define DEFAULT_TIMEOUT_MS 2000u
#define BACKOFF_MIN_MS 50u
#define BACKOFF_MAX_MS 2000u

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))


static unsigned next_backoff(unsigned ms) {
    return ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms * 2;
}

/* ---- state words ---- */

static const char *word(const char *const *words, size_t n, int v) {
    return v >= 0 && (size_t)v < n && words[v] ? words[v] : "?";
}

static int word_parse(const char *const *words, size_t n, const char *s, size_t len) {
    for (size_t i = 0; i < n; i++)
        if (strlen(words[i]) == len && memcmp(words[i], s, len) == 0) return (int)i;
    return -1;
}

#define WORDS(type, ...)                                                  \
    static const char *const type##_words[] = {__VA_ARGS__};              \
    const char *type##_name(type v) {                                     \
        return word(type##_words, ARRAY_LEN(type##_words), (int)v);       \
    }                                                                     \
    bool type##_parse(const char *s, type *out) {                         \
        for (size_t i = 0; s && i < ARRAY_LEN(type##_words); i++)         \
            if (type##_words[i] && strcasecmp(s, type##_words[i]) == 0) { \
                *out = (type)i;                                           \
                return true;                                              \
            }                                                             \
        return false;                                                     \
    }
WORDS(lm_node_kind, [LM_NODE_WORKER] = "worker", [LM_NODE_OBJSTORE] = "objstore")
WORDS(lm_node_state, [LM_NODE_ALIVE] = "ALIVE", [LM_NODE_DEAD] = "DEAD")
WORDS(lm_task_state, [LM_TASK_PENDING] = "PENDING", [LM_TASK_READY] = "READY",
      [LM_TASK_RUNNING] = "RUNNING", [LM_TASK_FINISHED] = "FINISHED",
      [LM_TASK_FAILED] = "FAILED")
WORDS(lm_obj_state, [LM_OBJ_PENDING] = "PENDING", [LM_OBJ_READY] = "READY",
      [LM_OBJ_LOST] = "LOST", [LM_OBJ_FAILED] = "FAILED")
WORDS(lm_actor_state, [LM_ACTOR_PENDING] = "PENDING", [LM_ACTOR_ALIVE] = "ALIVE",
      [LM_ACTOR_RESTARTING] = "RESTARTING", [LM_ACTOR_DEAD] = "DEAD")
WORDS(lm_job_state, [LM_JOB_RUNNING] = "RUNNING", [LM_JOB_FINISHED] = "FINISHED")

/* ---- connection settings, shared by lm_redis and the subscriber ---- */

typedef struct conn_cfg {
    char addr[256]; /* as configured, for messages */
    char host[256];
    int port;
    char *password; /* NULL: no AUTH */
    char *prefix;
    unsigned timeout_ms;
} conn_cfg;

static void cfg_fini(conn_cfg *c) {
    free(c->password);
    free(c->prefix);
}

static lumen_status cfg_init(conn_cfg *c, const lm_redis_opts *opts) {
    memset(c, 0, sizeof *c);
    const char *addr = opts && opts->addr && *opts->addr ? opts->addr : DEFAULT_ADDR;
    const char *colon = strrchr(addr, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    size_t hlen = colon ? (size_t)(colon - addr) : 0;
    if (colon == NULL || end == colon + 1 || *end != '\0' || port < 1 || port > 65535 ||
        hlen == 0 || strlen(addr) >= sizeof c->addr)
        return lm_status(LUMEN_INVALID_ARGUMENT, "redis address \"%s\": want host:port", addr);
    if (addr[0] == '[' && hlen > 2 && colon[-1] == ']') /* [::1]:6379 */
        memcpy(c->host, addr + 1, hlen - 2);
    else
        memcpy(c->host, addr, hlen);
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    c->port = (int)port;
    c->timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->prefix = strdup(opts && opts->prefix ? opts->prefix : DEFAULT_PREFIX);
    bool auth = opts && opts->password && *opts->password;
    if (auth) c->password = strdup(opts->password);
    if (c->prefix == NULL || (auth && c->password == NULL)) {
        cfg_fini(c);
        return lm_status(LUMEN_RESOURCE_EXHAUSTED, "redis %s: out of memory", addr);
    }
    return lm_ok();
}

/* ---- hiredis errors -> lumen_status, where they enter ---- */

static bool is_timeout(const redisContext *ctx, int err) {
    return ctx->err == REDIS_ERR_IO && (err == EAGAIN || err == EWOULDBLOCK || err == ETIMEDOUT);
}

/* A broken connection; err is errno right after the failing call. */
static lumen_status ctx_status(const conn_cfg *c, const redisContext *ctx, int err) {
    if (ctx == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "redis %s: out of memory", c->addr);
    if (is_timeout(ctx, err))
        return lm_status(LUMEN_UNAVAILABLE, "redis %s: no answer within %u ms", c->addr,
                         c->timeout_ms);
    char text[sizeof ctx->errstr];
    snprintf(text, sizeof text, "%s", ctx->errstr[0] ? ctx->errstr : "connection error");
    text[0] = (char)tolower((unsigned char)text[0]); /* "Connection refused" mid-sentence */
    return lm_status(LUMEN_UNAVAILABLE, "redis %s: %s", c->addr, text);
}

/* An error reply ("-LOADING ..."): the connection itself is fine. */
static lumen_status reply_status(const conn_cfg *c, const char *what, const redisReply *rep) {
    if (rep->type != REDIS_REPLY_ERROR)
        return lm_status(LUMEN_INTERNAL, "redis %s: %s: unexpected reply type %d", c->addr, what,
                         rep->type);
    static const struct {
        const char *prefix;
        lumen_code code;
    } map[] = {
        {"NOAUTH", LUMEN_UNAUTHENTICATED},  {"WRONGPASS", LUMEN_UNAUTHENTICATED},
        {"NOPERM", LUMEN_PERMISSION_DENIED}, {"LOADING", LUMEN_UNAVAILABLE},
        {"BUSY", LUMEN_UNAVAILABLE},         {"MASTERDOWN", LUMEN_UNAVAILABLE},
        {"TRYAGAIN", LUMEN_UNAVAILABLE},     {"READONLY", LUMEN_UNAVAILABLE},
        {"OOM", LUMEN_RESOURCE_EXHAUSTED},
    };
    lumen_code code = LUMEN_INTERNAL;
    for (size_t i = 0; i < ARRAY_LEN(map); i++)
        if (strncmp(rep->str, map[i].prefix, strlen(map[i].prefix)) == 0) code = map[i].code;
    return lm_status(code, "redis %s: %s: %s", c->addr, what, rep->str);
}

/* Connects, authenticates and checks the server answers: AUTH and PING in
 * one round trip. */
static lumen_status open_conn(const conn_cfg *c, redisContext **out) {
    *out = NULL;
    struct timeval tv = {(time_t)(c->timeout_ms / 1000), (suseconds_t)(c->timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(c->host, c->port, tv);
    if (ctx == NULL || ctx->err) {
        lumen_status st = ctx_status(c, ctx, 0);
        redisFree(ctx);
        return st;
    }
    redisSetTimeout(ctx, tv);
    redisEnableKeepAlive(ctx); /* notice a vanished host on idle connections */
    int n = 0;
    if (c->password) n += redisAppendCommand(ctx, "AUTH %s", c->password) == REDIS_OK;
    n += redisAppendCommand(ctx, "PING") == REDIS_OK;
    lumen_status st = lm_ok();
    for (int i = 0; i < n; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(ctx, (void **)&rep) != REDIS_OK) {
            st = ctx_status(c, ctx, errno);
            break;
        }
        bool auth = c->password && i == 0;
        if (LM_IS_OK(st) && rep->type == REDIS_REPLY_ERROR) {
            st = reply_status(c, auth ? "AUTH" : "PING", rep);
            if (auth) st.code = LUMEN_UNAUTHENTICATED; /* also "no password is set" */
        }
        freeReplyObject(rep);
    }
    if (LM_IS_OK(st) && n != (c->password ? 2 : 1))
        st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "redis %s: out of memory", c->addr);
    if (!LM_IS_OK(st)) {
        redisFree(ctx);
        return st;
    }
    *out = ctx;
    return st;
}

/* ---- building commands: one argv per command, no allocation ---- */

#define CMD_ARGS 32
#define CMD_SCRATCH 1024

typedef struct cmd {
    int argc;
    const char *argv[CMD_ARGS];
    size_t len[CMD_ARGS];
    char scratch[CMD_SCRATCH]; /* keys, numbers and hex ids the argv points into */
    size_t used;
    bool overflow;
} cmd;

static void arg(cmd *c, const void *p, size_t n) {
    if (c->argc == CMD_ARGS) {
        c->overflow = true;
        return;
    }
    c->argv[c->argc] = p;
    c->len[c->argc++] = n;
}

static void arg_str(cmd *c, const char *s) {
    s = s ? s : "";
    arg(c, s, strlen(s));
}

static void argf(cmd *c, const char *fmt, ...) LM_PRINTF(2, 3);
static void argf(cmd *c, const char *fmt, ...) {
    size_t room = CMD_SCRATCH - c->used;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->scratch + c->used, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) {
        c->overflow = true;
        return;
    }
    arg(c, c->scratch + c->used, (size_t)n);
    c->used += (size_t)n + 1;
}

static void arg_id(cmd *c, lm_id id) {
    char hex[LM_ID_HEX_LEN + 1];
    if (lm_id_is_zero(id)) arg(c, "", 0);
    else argf(c, "%s", lm_id_to_hex(id, hex));
}

/* "<p><kind>:<id><suffix>" */
static void arg_key(cmd *c, const conn_cfg *cfg, const char *kind, lm_id id, const char *suffix) {
    char hex[LM_ID_HEX_LEN + 1];
    argf(c, "%s%s:%s%s", cfg->prefix, kind, lm_id_to_hex(id, hex), suffix);
}

/* A SCAN MATCH pattern for keys that start with the literal s. */
static void arg_glob_prefix(cmd *c, const char *s) {
    char *out = c->scratch + c->used;
    size_t room = CMD_SCRATCH - c->used, o = 0;
    for (; *s && o + 3 < room; s++) { /* room for an escaped char, "*" and the NUL */
        if (strchr("*?[]\\", *s)) out[o++] = '\\';
        out[o++] = *s;
    }
    if (*s || o + 2 > room) {
        c->overflow = true;
        return;
    }
    out[o++] = '*';
    out[o] = '\0';
    arg(c, out, o);
    c->used += o + 1;
}

static void cmd_start(cmd *c, const char *verb) {
    c->argc = 0;
    c->used = 0;
    c->overflow = false;
    arg_str(c, verb);
}

/* The shape most writers share: HSET <p><kind>:<id> followed by f_* fields. */
static void hset_start(cmd *c, const conn_cfg *cfg, const char *kind, lm_id id) {
    cmd_start(c, "HSET");
    arg_key(c, cfg, kind, id, "");
}
static void f_str(cmd *c, const char *name, const char *v) {
    arg_str(c, name);
    arg_str(c, v);
}
static void f_u64(cmd *c, const char *name, uint64_t v) {
    arg_str(c, name);
    argf(c, "%" PRIu64, v);
}
static void f_id(cmd *c, const char *name, lm_id v) {
    arg_str(c, name);
    arg_id(c, v);
}
static void f_bytes(cmd *c, const char *name, const void *v, size_t len) {
    arg_str(c, name);
    arg(c, v, len); /* binary-safe: argv carries lengths */
}

/* HSET on an existing hash only, atomically; the reply is -1 when the hash
 * is missing, so a record Redis lost is not half-recreated. */
static const char hset_existing_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end "
    "return redis.call('HSET', KEYS[1], unpack(ARGV))";
static void hset_existing_start(cmd *c, const conn_cfg *cfg, const char *kind, lm_id id) {
    cmd_start(c, "EVAL");
    arg_str(c, hset_existing_lua);
    arg_str(c, "1");
    arg_key(c, cfg, kind, id, "");
}

/* Set member changes: SADD/SREM <p><kind>:<id><suffix> <member>. */
static void set_member(cmd *c, const conn_cfg *cfg, const char *verb, const char *kind, lm_id id,
                       const char *suffix, lm_id member) {
    cmd_start(c, verb);
    arg_key(c, cfg, kind, id, suffix);
    arg_id(c, member);
}

/* ---- batches: commands formatted up front, sent in one round trip ---- */

typedef struct batch {
    char *buf;
    size_t len, cap;
    size_t n; /* commands */
    lumen_status err; /* first build error */
    bool own_errors;  /* error replies go to the caller instead of failing the batch */
} batch;

static void batch_add(batch *b, const cmd *c) {
    if (!LM_IS_OK(b->err)) return;
    if (c->overflow) {
        b->err = lm_status(LUMEN_INVALID_ARGUMENT, "redis %.*s command too large",
                           (int)c->len[0], c->argv[0]);
        return;
    }
    char *s = NULL;
    /* hiredis 0.14 lacks the const; it only reads argv */
    int n = redisFormatCommandArgv(&s, c->argc, (const char **)c->argv, c->len);
    if (n > 0 && b->len + (size_t)n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + (size_t)n) cap *= 2;
        char *p = realloc(b->buf, cap);
        if (p == NULL) {
            n = -1;
        } else {
            b->buf = p;
            b->cap = cap;
        }
    }
    if (n <= 0) {
        b->err = lm_status(LUMEN_RESOURCE_EXHAUSTED, "redis: out of memory formatting a command");
    } else {
        memcpy(b->buf + b->len, s, (size_t)n);
        b->len += (size_t)n;
        b->n++;
    }
    redisFreeCommand(s);
}

static void batch_fini(batch *b) { free(b->buf); }

static void replies_free(redisReply **reps, size_t n) {
    if (reps == NULL) return;
    for (size_t i = 0; i < n; i++) freeReplyObject(reps[i]);
    free(reps);
}

/* ---- scripts: run atomically in Redis, called by their SHA-1 ---- */

/* SHA-1 (FIPS 180-1) of a script, as EVALSHA names it; nothing secret. */
static uint32_t rol32(uint32_t v, int n) { return (v << n) | (v >> (32 - n)); }

static void sha1_block(uint32_t h[5], const uint8_t *p) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
        else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
        else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
        else f = b ^ c ^ d, k = 0xCA62C1D6;
        uint32_t t = rol32(a, 5) + f + e + k + w[i];
        e = d, d = c, c = rol32(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

static void sha1_hex(const char *text, char out[41]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t len = strlen(text), i = 0;
    for (; i + 64 <= len; i += 64) sha1_block(h, (const uint8_t *)text + i);
    uint8_t tail[128] = {0};
    size_t rest = len - i, tlen = rest + 9 <= 64 ? 64 : 128;
    memcpy(tail, text + i, rest);
    tail[rest] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int k = 0; k < 8; k++) tail[tlen - 1 - k] = (uint8_t)(bits >> (8 * k));
    for (size_t k = 0; k < tlen; k += 64) sha1_block(h, tail + k);
    for (int k = 0; k < 5; k++) snprintf(out + 8 * k, 9, "%08x", h[k]);
}

/*
 * A task record's write, with the indexes and counters the dashboard and
 * `lumen status` read instead of walking every key: the state it leaves
 * and enters is counted per function and per job, the task is listed (by a
 * sequence number, newest last) in <p>tasks, <p>tasks:<STATE>,
 * <p>fn:<name>:tasks and <p>job:<id>:tasks. Writing the same state again
 * counts nothing, so a batch may be sent twice.
 * KEYS[1] the task's hash; ARGV: prefix, id, state, attempts, fn, job,
 * submitted_ms, then field/value pairs to write. fn and job "" (a state
 * change only): the record's own.
 */
static const char task_write_lua[] =
    "local k, p, id, st = KEYS[1], ARGV[1], ARGV[2], ARGV[3]\n"
    "local old = redis.call('HMGET', k, 'state', 'attempts', 'seq', 'fn', 'job')\n"
    "local fn, job = ARGV[5], ARGV[6]\n"
    "if fn == '' then fn = old[4] or '' end\n"
    "if job == '' then job = old[5] or '' end\n"
    "local o, seq = old[1], old[3]\n"
    "local first = not seq\n"
    "if first then seq = redis.call('INCR', p .. 'task_seq') end\n"
    "redis.call('HSET', k, 'state', st, 'attempts', ARGV[4], 'seq', seq, unpack(ARGV, 8))\n"
    "local fc, jc = p .. 'fn:' .. fn .. ':counts', p .. 'job:' .. job .. ':counts'\n"
    "local function inc(field, n)\n"
    "  local v = redis.call('HINCRBY', fc, field, n)\n"
    "  if job ~= '' then redis.call('HINCRBY', jc, field, n) end\n"
    "  return v\n"
    "end\n"
    "if first then\n"
    "  redis.call('ZADD', p .. 'tasks', seq, id)\n"
    "  redis.call('ZADD', p .. 'fn:' .. fn .. ':tasks', seq, id)\n"
    "  if job ~= '' then redis.call('ZADD', p .. 'job:' .. job .. ':tasks', seq, id) end\n"
    "  if inc('submitted', 1) == 1 then redis.call('SADD', p .. 'fns', fn) end\n"
    "end\n"
    "if o ~= st then\n"
    "  if o then\n"
    "    redis.call('ZREM', p .. 'tasks:' .. o, id)\n"
    "    inc(o, -1)\n"
    "  end\n"
    "  redis.call('ZADD', p .. 'tasks:' .. st, seq, id)\n"
    "  inc(st, 1)\n"
    "  if st == 'FINISHED' then inc('finished', 1) elseif st == 'FAILED' then inc('failed', 1) end\n"
    "end\n"
    "local att, prev = tonumber(ARGV[4]) or 0, math.max(tonumber(old[2]) or 0, 1)\n"
    "if att > prev then inc('retried', att - prev) end\n"
    "return 1\n";

typedef struct script {
    const char *body;
    char sha[41];
} script;

static script scripts[] = {{task_write_lua, ""}};
static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

static void scripts_hash(void) {
    for (size_t i = 0; i < ARRAY_LEN(scripts); i++) sha1_hex(scripts[i].body, scripts[i].sha);
}

/* EVALSHA <script> <nkeys>; the caller adds the keys and arguments. */
static void evalsha_start(cmd *c, script *sc, int nkeys) {
    pthread_once(&scripts_once, scripts_hash);
    cmd_start(c, "EVALSHA");
    arg_str(c, sc->sha);
    argf(c, "%d", nkeys);
}

/* ---- the shared connection ---- */

struct lm_redis {
    conn_cfg cfg;
    pthread_mutex_t mu;   /* guards everything below */
    redisContext *ctx;    /* NULL while disconnected */
    bool proven;          /* ctx has answered: a failure now means it went stale */
    uint64_t retry_at_ms; /* monotonic; no connect attempt before it */
    unsigned backoff_ms;
    lumen_status last_err; /* why ctx is NULL */
    bool noscript;         /* the last round trip met NOSCRIPT: load the scripts, send again */
};

static void drop_conn(lm_redis *r, lumen_status why) {
    redisFree(r->ctx);
    r->ctx = NULL;
    r->last_err = why;
    r->retry_at_ms = 0; /* a lost connection may be replaced at once; a failed connect may not */
}

static lumen_status ensure_conn(lm_redis *r) {
    if (r->ctx) return lm_ok();
    uint64_t now = lm_mono_ms();
    if (now < r->retry_at_ms)
        return lm_status(r->last_err.code, "%s (next try in %" PRIu64 " ms)", r->last_err.msg,
                         r->retry_at_ms - now);
    lumen_status st = open_conn(&r->cfg, &r->ctx);
    if (LM_IS_OK(st)) {
        r->proven = false;
        r->backoff_ms = BACKOFF_MIN_MS;
        r->retry_at_ms = 0;
        return st;
    }
    r->last_err = st;
    r->retry_at_ms = lm_mono_ms() + r->backoff_ms;
    r->backoff_ms = next_backoff(r->backoff_ms);
    return st;
}

/* Sends the batch and reads its n replies. A broken connection is dropped
 * and *stale says whether it broke fast (closed, reset) rather than by
 * timing out. The first error reply wins; the rest are still read. */
static lumen_status roundtrip(lm_redis *r, const batch *b, const char *what, redisReply ***out,
                              bool *stale) {
    *stale = false;
    if (redisAppendFormattedCommand(r->ctx, b->buf, b->len) != REDIS_OK) {
        lumen_status st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "redis %s: out of memory", r->cfg.addr);
        drop_conn(r, st);
        return st;
    }
    redisReply **reps = out ? calloc(b->n, sizeof *reps) : NULL;
    lumen_status st = lm_ok();
    if (out && reps == NULL)
        st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "redis %s: out of memory", r->cfg.addr);
    for (size_t i = 0; i < b->n; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(r->ctx, (void **)&rep) != REDIS_OK) {
            int err = errno;
            lumen_status cst = ctx_status(&r->cfg, r->ctx, err);
            *stale = !is_timeout(r->ctx, err);
            drop_conn(r, cst);
            replies_free(reps, i);
            return cst;
        }
        if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0) r->noscript = true;
        if (LM_IS_OK(st) && rep->type == REDIS_REPLY_ERROR && !(out && b->own_errors))
            st = reply_status(&r->cfg, what, rep);
        if (reps) reps[i] = rep;
        else freeReplyObject(rep);
    }
    r->proven = true;
    if (out && LM_IS_OK(st)) *out = reps;
    else replies_free(reps, b->n);
    return st;
}

static lumen_status scripts_load(lm_redis *r);

/* Runs a batch; with out, the caller owns the n replies (free with
 * replies_free). Commands are idempotent, so a batch that met a stale
 * connection is sent once more on a fresh one, and one that met a Redis
 * without our scripts (restarted, SCRIPT FLUSH) once more after loading them. */
static lumen_status exec(lm_redis *r, batch *b, const char *what, redisReply ***out) {
    if (!LM_IS_OK(b->err)) return lm_status_wrap(b->err, "%s", what);
    if (b->n == 0) return lm_ok();
    pthread_mutex_lock(&r->mu);
    lumen_status st;
    for (int attempt = 0;; attempt++) {
        st = ensure_conn(r);
        if (!LM_IS_OK(st)) break;
        bool proven = r->proven, stale;
        r->noscript = false;
        st = roundtrip(r, b, what, out, &stale);
        if (r->noscript && attempt == 0) {
            if (LM_IS_OK(st) && out) replies_free(*out, b->n); /* own_errors: retry anyway */
            st = scripts_load(r);
            if (LM_IS_OK(st)) continue;
            break;
        }
        if (LM_IS_OK(st) || r->ctx != NULL || !proven || !stale || attempt > 0) break;
    }
    pthread_mutex_unlock(&r->mu);
    return st;
}

/* SCRIPT LOAD of every script, on r's connection (r->mu held). */
static lumen_status scripts_load(lm_redis *r) {
    batch b = {0};
    cmd c;
    for (size_t i = 0; i < ARRAY_LEN(scripts); i++) {
        cmd_start(&c, "SCRIPT");
        arg_str(&c, "LOAD");
        arg_str(&c, scripts[i].body);
        batch_add(&b, &c);
    }
    bool stale;
    lumen_status st = LM_IS_OK(b.err) ? roundtrip(r, &b, "script load", NULL, &stale) : b.err;
    batch_fini(&b);
    return st;
}

/* A batch of one command. */
static lumen_status run(lm_redis *r, const char *what, const cmd *c, redisReply **out) {
    batch b = {0};
    batch_add(&b, c);
    redisReply **reps = NULL;
    lumen_status st = exec(r, &b, what, out ? &reps : NULL);
    batch_fini(&b);
    if (out && LM_IS_OK(st)) {
        *out = reps[0];
        free(reps);
    }
    return st;
}

lumen_status lm_redis_connect(const lm_redis_opts *opts, lm_redis **out) {
    *out = NULL;
    lm_redis *r = calloc(1, sizeof *r);
    if (r == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "redis: out of memory");
    lumen_status st = cfg_init(&r->cfg, opts);
    if (!LM_IS_OK(st)) {
        free(r);
        return st;
    }
    pthread_mutex_init(&r->mu, NULL);
    r->backoff_ms = BACKOFF_MIN_MS;
    st = ensure_conn(r);
    if (!LM_IS_OK(st)) {
        lm_redis_free(r);
        return st;
    }
    *out = r;
    return st;
}

void lm_redis_free(lm_redis *r) {
    if (r == NULL) return;
    redisFree(r->ctx);
    pthread_mutex_destroy(&r->mu);
    cfg_fini(&r->cfg);
    free(r);
}

lumen_status lm_redis_ping(lm_redis *r) {
    cmd c;
    cmd_start(&c, "PING");
    return run(r, "PING", &c, NULL);
}

lumen_status lm_redis_epoch_next(lm_redis *r, uint64_t *epoch) {
    cmd c;
    cmd_start(&c, "INCR");
    argf(&c, "%sepoch", r->cfg.prefix);
    redisReply *rep = NULL;
    lumen_status st = run(r, "epoch", &c, &rep);
    if (!LM_IS_OK(st)) return st;
    if (rep->type != REDIS_REPLY_INTEGER || rep->integer <= 0)
        st = lm_status(LUMEN_INTERNAL, "redis %s: INCR %sepoch gave no positive number", r->cfg.addr, r->cfg.prefix);
    else *epoch = (uint64_t)rep->integer;
    freeReplyObject(rep);
    return st;
}

/* ---- nodes ---- */

lumen_status lm_redis_node_register(lm_redis *r, const lm_node_record *rec) {
    uint64_t now = lm_wall_ms();
    batch b = {0};
    cmd c;
    hset_start(&c, &r->cfg, "node", rec->id);
    f_str(&c, "kind", lm_node_kind_name(rec->kind));
    f_str(&c, "addr", rec->addr);
    f_u64(&c, "slots", rec->slots);
    f_u64(&c, "slots_free", rec->slots_free);
    f_str(&c, "state", lm_node_state_name(LM_NODE_ALIVE));
    f_u64(&c, "heartbeat_ms", now);
    f_u64(&c, "started_ms", now);
    f_u64(&c, "bytes_used", rec->bytes_used);
    f_u64(&c, "memory_limit", rec->memory_limit);
    batch_add(&b, &c);
    cmd_start(&c, "SADD");
    argf(&c, "%snodes", r->cfg.prefix);
    arg_id(&c, rec->id);
    batch_add(&b, &c);
    lumen_status st = exec(r, &b, "node register", NULL);
    batch_fini(&b);
    return st;
}

/* Runs a hset_existing command on a node's hash. */
static lumen_status node_update(lm_redis *r, const char *what, lm_id node, const cmd *c) {
    redisReply *rep = NULL;
    lumen_status st = run(r, what, c, &rep);
    if (!LM_IS_OK(st)) return st;
    bool missing = rep->type == REDIS_REPLY_INTEGER && rep->integer < 0;
    freeReplyObject(rep);
    char hex[LM_ID_HEX_LEN + 1];
    if (missing)
        return lm_status(LUMEN_NOT_FOUND, "redis %s: %s: node %s is not registered", r->cfg.addr,
                         what, lm_id_to_hex(node, hex));
    return st;
}

lumen_status lm_redis_node_heartbeat(lm_redis *r, lm_id node, uint32_t slots_free,
                                     uint64_t bytes_used) {
    cmd c;
    hset_existing_start(&c, &r->cfg, "node", node);
    f_u64(&c, "slots_free", slots_free);
    f_u64(&c, "bytes_used", bytes_used);
    f_u64(&c, "heartbeat_ms", lm_wall_ms());
    return node_update(r, "node heartbeat", node, &c);
}

lumen_status lm_redis_node_mark_dead(lm_redis *r, lm_id node) {
    cmd c;
    hset_existing_start(&c, &r->cfg, "node", node);
    f_str(&c, "state", lm_node_state_name(LM_NODE_DEAD));
    return node_update(r, "node mark dead", node, &c);
}

void lm_node_list_free(lm_node_list *list) {
    if (list == NULL) return;
    for (size_t i = 0; i < list->count; i++) free((char *)list->nodes[i].addr);
    free(list->nodes);
    free(list);
}

/* SMEMBERS of a set of ids; members that are not ids are skipped. */
static lumen_status members(lm_redis *r, const char *what, const cmd *c, lm_id **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    redisReply *rep = NULL;
    lumen_status st = run(r, what, c, &rep);
    if (!LM_IS_OK(st)) return st;
    lm_id *out = calloc(rep->elements ? rep->elements : 1, sizeof *out);
    if (out == NULL) st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "redis %s: %s: out of memory",
                                    r->cfg.addr, what);
    for (size_t i = 0; out && i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        if (e->type == REDIS_REPLY_STRING && e->len == LM_ID_HEX_LEN &&
            lm_id_from_hex(e->str, &out[*n]))
            (*n)++;
    }
    freeReplyObject(rep);
    *ids = out;
    return st;
}

static uint64_t reply_u64(const redisReply *e) {
    return e->type == REDIS_REPLY_STRING ? strtoull(e->str, NULL, 10) : 0;
}

lumen_status lm_redis_nodes_list(lm_redis *r, lm_node_list **out) {
    static const char *const fields[] = {"kind",         "addr",       "slots",
                                         "slots_free",   "state",      "heartbeat_ms",
                                         "started_ms",   "bytes_used", "memory_limit"};
    *out = NULL;
    lm_id *ids = NULL;
    size_t n = 0;
    cmd c;
    cmd_start(&c, "SMEMBERS");
    argf(&c, "%snodes", r->cfg.prefix);
    lumen_status st = members(r, "nodes list", &c, &ids, &n);
    lm_node_list *list = calloc(1, sizeof *list);
    if (list) list->nodes = calloc(n ? n : 1, sizeof *list->nodes);
    if (LM_IS_OK(st) && (list == NULL || list->nodes == NULL))
        st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "redis %s: nodes list: out of memory", r->cfg.addr);
    batch b = {0};
    for (size_t i = 0; LM_IS_OK(st) && i < n; i++) {
        cmd_start(&c, "HMGET");
        arg_key(&c, &r->cfg, "node", ids[i], "");
        for (size_t f = 0; f < ARRAY_LEN(fields); f++) arg_str(&c, fields[f]);
        batch_add(&b, &c);
    }
    redisReply **reps = NULL;
    if (LM_IS_OK(st)) st = exec(r, &b, "nodes list", &reps);
    for (size_t i = 0; LM_IS_OK(st) && i < n; i++) {
        redisReply **v = reps[i]->element;
        if (reps[i]->type != REDIS_REPLY_ARRAY || reps[i]->elements != ARRAY_LEN(fields) ||
            v[0]->type != REDIS_REPLY_STRING || v[1]->type != REDIS_REPLY_STRING)
            continue; /* the record is gone: not a node */
        int kind = word_parse(lm_node_kind_words, ARRAY_LEN(lm_node_kind_words), v[0]->str,
                              v[0]->len);
        int state = v[4]->type == REDIS_REPLY_STRING
                        ? word_parse(lm_node_state_words, ARRAY_LEN(lm_node_state_words),
                                     v[4]->str, v[4]->len)
                        : -1;
        if (kind < 0) continue;
        char *addr = strdup(v[1]->str);
        if (addr == NULL) {
            st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "redis %s: nodes list: out of memory",
                           r->cfg.addr);
            break;
        }
        list->nodes[list->count++] = (lm_node_record){
            .id = ids[i],
            .kind = (lm_node_kind)kind,
            .addr = addr,
            .slots = (uint32_t)reply_u64(v[2]),
            .slots_free = (uint32_t)reply_u64(v[3]),
            .state = state == LM_NODE_ALIVE ? LM_NODE_ALIVE : LM_NODE_DEAD,
            .heartbeat_ms = reply_u64(v[5]),
            .started_ms = reply_u64(v[6]),
            .bytes_used = reply_u64(v[7]),
            .memory_limit = reply_u64(v[8]),
        };
    }
    if (reps) replies_free(reps, n);
    batch_fini(&b);
    free(ids);
    if (!LM_IS_OK(st)) {
        lm_node_list_free(list);
        return st;
    }
    *out = list;
    return st;
}

/* ---- tasks ---- */

/* The task_write_lua call up to its field/value pairs. */
static void task_write_start(cmd *c, const conn_cfg *cfg, lm_id id, lm_task_state state, uint32_t attempts,
                             const char *fn, lm_id job, uint64_t submitted_ms) {
    evalsha_start(c, &scripts[0], 1);
    arg_key(c, cfg, "task", id, "");
    arg_str(c, cfg->prefix);
    arg_id(c, id);
    arg_str(c, lm_task_state_name(state));
    argf(c, "%" PRIu32, attempts);
    arg_str(c, fn);
    arg_id(c, job);
    argf(c, "%" PRIu64, submitted_ms);
}

lumen_status lm_redis_tasks_put(lm_redis *r, const lm_task_record *recs, size_t n) {
    uint64_t now = lm_wall_ms();
    batch b = {0};
    cmd c;
    for (size_t i = 0; i < n; i++) {
        const lm_task_record *t = &recs[i];
        uint64_t submitted = t->submitted_ms ? t->submitted_ms : now;
        task_write_start(&c, &r->cfg, t->id, t->state, t->attempts, t->fn ? t->fn : "", t->job, submitted);
        f_str(&c, "fn", t->fn);
        f_id(&c, "job", t->job);
        f_id(&c, "worker", t->worker);
        f_str(&c, "error", t->error);
        f_u64(&c, "submitted_ms", submitted);
        f_u64(&c, "finished_ms", t->finished_ms);
        if (t->spec) f_bytes(&c, "spec", t->spec, t->spec_len);
        batch_add(&b, &c);
    }
    lumen_status st = exec(r, &b, "tasks put", NULL);
    batch_fini(&b);
    return st;
}

lumen_status lm_redis_task_set_state(lm_redis *r, lm_id task, lm_task_state state,
                                     lm_id worker, uint32_t attempts, const char *error) {
    bool done = state == LM_TASK_FINISHED || state == LM_TASK_FAILED;
    cmd c;
    lm_id none = {{0}};
    task_write_start(&c, &r->cfg, task, state, attempts, "", none, lm_wall_ms());
    f_id(&c, "worker", worker);
    f_str(&c, "error", error);
    f_u64(&c, "finished_ms", done ? lm_wall_ms() : 0);
    return run(r, "task set state", &c, NULL);
}

/* ---- task logs ---- */

lumen_status lm_redis_task_logs_put(lm_redis *r, const lm_task_log *logs, size_t n) {
    batch b = {0};
    cmd c;
    for (size_t i = 0; i < n; i++) {
        cmd_start(&c, "SET");
        arg_key(&c, &r->cfg, "task", logs[i].id, ":log");
        arg(&c, logs[i].data, logs[i].len);
        batch_add(&b, &c);
    }
    lumen_status st = exec(r, &b, "task logs put", NULL);
    batch_fini(&b);
    return st;
}

lumen_status lm_redis_task_log_get(lm_redis *r, lm_id task, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    batch b = {0};
    cmd c;
    /* A range, not GET: whoever can write to Redis could plant a log of
     * any size, and the reader would hold it all. */
    char last[24];
    snprintf(last, sizeof last, "%u", LM_TASK_LOG_MAX - 1);
    cmd_start(&c, "GETRANGE");
    arg_key(&c, &r->cfg, "task", task, ":log");
    arg_str(&c, "0");
    arg_str(&c, last);
    batch_add(&b, &c);
    cmd_start(&c, "STRLEN");
    arg_key(&c, &r->cfg, "task", task, ":log");
    batch_add(&b, &c);
    cmd_start(&c, "EXISTS");
    arg_key(&c, &r->cfg, "task", task, "");
    batch_add(&b, &c);
    redisReply **reps = NULL;
    lumen_status st = exec(r, &b, "task log get", &reps);
    batch_fini(&b);
    if (!LM_IS_OK(st)) return st;
    const redisReply *log = reps[0];
    long long total = reps[1]->type == REDIS_REPLY_INTEGER ? reps[1]->integer : 0;
    bool known = reps[2]->type == REDIS_REPLY_INTEGER && reps[2]->integer > 0;
    if (log->type == REDIS_REPLY_STRING && log->len > 0) {
        /* Cut like any log past its bound: at a line, with a last line
         * saying how much (tasklog.h). */
        lm_tasklog t = {0};
        lm_tasklog_append(&t, log->str, log->len);
        if (total > (long long)log->len) t.dropped += (uint64_t)total - log->len;
        size_t n = 0;
        char *head = lm_tasklog_take(&t, &n);
        *data = head != NULL ? realloc(head, n + 1) : NULL; /* room for the NUL */
        if (*data == NULL) {
            free(head);
            st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "redis %s: task log get: out of memory", r->cfg.addr);
        } else {
            (*data)[n] = '\0';
            *len = n;
        }
    } else if (known) {
        st = lm_status(LUMEN_NOT_FOUND, "task %s wrote nothing to stdout or stderr (yet)", lm_id_str(task).s);
    } else {
        st = lm_status(LUMEN_NOT_FOUND, "no task %s in redis %s (nor output of an actor call with that id)",
                       lm_id_str(task).s, r->cfg.addr);
    }
    replies_free(reps, 3);
    return st;
}

/* ---- objects ---- */

/* <p>objs lists the objects that have a record (by first sight, ms), so
 * they can be listed without walking every key. */
static void objs_index_add(cmd *c, const conn_cfg *cfg, lm_id obj) {
    cmd_start(c, "ZADD");
    argf(c, "%sobjs", cfg->prefix);
    arg_str(c, "NX");
    argf(c, "%" PRIu64, lm_wall_ms());
    arg_id(c, obj);
}

lumen_status lm_redis_objs_put(lm_redis *r, const lm_obj_record *recs, size_t n) {
    batch b = {0};
    cmd c;
    for (size_t i = 0; i < n; i++) {
        const lm_obj_record *o = &recs[i];
        hset_start(&c, &r->cfg, "obj", o->id);
        f_u64(&c, "size", o->size);
        f_str(&c, "state", lm_obj_state_name(o->state));
        f_id(&c, "task", o->task);
        f_id(&c, "job", o->job);
        f_str(&c, "error", o->error);
        batch_add(&b, &c);
        objs_index_add(&c, &r->cfg, o->id);
        batch_add(&b, &c);
        if (lm_id_is_zero(o->job)) continue;
        set_member(&c, &r->cfg, "SADD", "job", o->job, ":objs", o->id);
        batch_add(&b, &c);
    }
    lumen_status st = exec(r, &b, "objs put", NULL);
    batch_fini(&b);
    return st;
}

lumen_status lm_redis_obj_set_state(lm_redis *r, lm_id obj, lm_obj_state state,
                                    const char *error) {
    cmd c;
    hset_start(&c, &r->cfg, "obj", obj);
    f_str(&c, "state", lm_obj_state_name(state));
    f_str(&c, "error", error);
    return run(r, "obj set state", &c, NULL);
}

static void publish_cmd(cmd *c, const conn_cfg *cfg, const char *type, lm_id id,
                        const char *detail) {
    char hex[LM_ID_HEX_LEN + 1];
    cmd_start(c, "PUBLISH");
    argf(c, "%s%s", cfg->prefix, DEFAULT_CHANNEL);
    argf(c, "%s %s%s%s", type, lm_id_to_hex(id, hex), detail && *detail ? " " : "",
         detail ? detail : "");
}

lumen_status lm_redis_obj_ready(lm_redis *r, lm_id obj, uint64_t size, lm_id store, lm_id job) {
    char hex[LM_ID_HEX_LEN + 1];
    batch b = {0};
    cmd c;
    hset_start(&c, &r->cfg, "obj", obj);
    f_u64(&c, "size", size);
    f_str(&c, "state", lm_obj_state_name(LM_OBJ_READY));
    f_str(&c, "error", "");
    if (!lm_id_is_zero(job)) f_id(&c, "job", job);
    batch_add(&b, &c);
    objs_index_add(&c, &r->cfg, obj);
    batch_add(&b, &c);
    set_member(&c, &r->cfg, "SADD", "obj", obj, ":locs", store);
    batch_add(&b, &c);
    if (!lm_id_is_zero(job)) {
        set_member(&c, &r->cfg, "SADD", "job", job, ":objs", obj);
        batch_add(&b, &c);
    }
    publish_cmd(&c, &r->cfg, LM_EVENT_OBJ_READY, obj, lm_id_to_hex(store, hex));
    batch_add(&b, &c);
    lumen_status st = exec(r, &b, "obj ready", NULL);
    batch_fini(&b);
    return st;
}

lumen_status lm_redis_obj_loc_add(lm_redis *r, lm_id obj, lm_id store) {
    cmd c;
    set_member(&c, &r->cfg, "SADD", "obj", obj, ":locs", store);
    return run(r, "obj loc add", &c, NULL);
}

lumen_status lm_redis_obj_loc_remove(lm_redis *r, lm_id obj, lm_id store) {
    cmd c;
    set_member(&c, &r->cfg, "SREM", "obj", obj, ":locs", store);
    return run(r, "obj loc remove", &c, NULL);
}

lumen_status lm_redis_obj_locs(lm_redis *r, lm_id obj, lm_id **stores, size_t *n) {
    cmd c;
    cmd_start(&c, "SMEMBERS");
    arg_key(&c, &r->cfg, "obj", obj, ":locs");
    return members(r, "obj locs", &c, stores, n);
}

/* Pipelined SMEMBERS of n location sets; out[i] gets object i's stores. */
lumen_status lm_redis_objs_locs(lm_redis *r, const lm_id *objs, size_t n, lm_id_set *out) {
    memset(out, 0, n * sizeof *out);
    if (n == 0) return lm_ok();
    batch b = {0};
    cmd c;
    for (size_t i = 0; i < n; i++) {
        cmd_start(&c, "SMEMBERS");
        arg_key(&c, &r->cfg, "obj", objs[i], ":locs");
        batch_add(&b, &c);
    }
    redisReply **reps = NULL;
    lumen_status st = exec(r, &b, "obj locs", &reps);
    batch_fini(&b);
    if (!LM_IS_OK(st)) return st;
    for (size_t i = 0; i < n; i++) {
        const redisReply *rep = reps[i];
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0) continue;
        out[i].ids = calloc(rep->elements, sizeof *out[i].ids);
        if (out[i].ids == NULL) {
            st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "redis %s: obj locs: out of memory", r->cfg.addr);
            break;
        }
        for (size_t k = 0; k < rep->elements; k++) {
            const redisReply *e = rep->element[k];
            if (e->type == REDIS_REPLY_STRING && e->len == LM_ID_HEX_LEN && lm_id_from_hex(e->str, &out[i].ids[out[i].n]))
                out[i].n++;
        }
    }
    replies_free(reps, n);
    if (!LM_IS_OK(st)) lm_id_sets_free(out, n);
    return st;
}

void lm_id_sets_free(lm_id_set *sets, size_t n) {
    for (size_t i = 0; sets != NULL && i < n; i++) {
        free(sets[i].ids);
        sets[i] = (lm_id_set){0};
    }
}

/* ---- actors ---- */

static void actor_cmd(cmd *c, const conn_cfg *cfg, const lm_actor_record *rec) {
    hset_start(c, cfg, "actor", rec->id);
    f_str(c, "class", rec->class_name);
    f_id(c, "worker", rec->worker);
    f_str(c, "state", lm_actor_state_name(rec->state));
    f_u64(c, "restarts", rec->restarts);
    f_u64(c, "incarnation", rec->incarnation);
    f_u64(c, "calls", rec->calls);
    f_str(c, "name", rec->name);
    f_id(c, "job", rec->job);
    f_str(c, "error", rec->error);
}

/* A copy of a string reply ("" for nil); NULL only when out of memory. */
static char *reply_strdup(const redisReply *e) {
    return e->type == REDIS_REPLY_STRING ? strndup(e->str, e->len) : strdup("");
}

static lm_id reply_id(const redisReply *e) {
    lm_id id = {{0}};
    if (e->type == REDIS_REPLY_STRING) lm_id_from_hex(e->str, &id);
    return id;
}

lumen_status lm_redis_actor_get(lm_redis *r, lm_id actor, lm_actor_record *out) {
    bool found = false;
    memset(out, 0, sizeof *out);
    lumen_status st = lm_redis_actors_get(r, &actor, 1, out, &found);
    if (LM_IS_OK(st) && (out->class_name == NULL || out->name == NULL || out->error == NULL))
        st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "redis %s: actor get: out of memory", r->cfg.addr);
    else if (LM_IS_OK(st) && !found)
        st = lm_status(LUMEN_NOT_FOUND, "redis %s: no record of actor %s", r->cfg.addr, lm_id_str(actor).s);
    if (!LM_IS_OK(st)) lm_redis_actor_record_free(out);
    return st;
}

void lm_redis_actor_record_free(lm_actor_record *rec) {
    free((char *)rec->class_name);
    free((char *)rec->name);
    free((char *)rec->error);
    memset(rec, 0, sizeof *rec);
}

lumen_status lm_redis_actors_put(lm_redis *r, const lm_actor_record *recs, size_t n) {
    batch b = {0};
    cmd c;
    for (size_t i = 0; i < n; i++) {
        actor_cmd(&c, &r->cfg, &recs[i]);
        batch_add(&b, &c);
        cmd_start(&c, "ZADD"); /* <p>actors lists every actor by first sight (ms) */
        argf(&c, "%sactors", r->cfg.prefix);
        arg_str(&c, "NX");
        argf(&c, "%" PRIu64, lm_wall_ms());
        arg_id(&c, recs[i].id);
        batch_add(&b, &c);
    }
    lumen_status st = exec(r, &b, "actors put", NULL);
    batch_fini(&b);
    return st;
}

/* ---- jobs ---- */

/* Job membership of <p>jobs (every job, by start ms) and <p>jobs:running. */
static void job_index_cmd(batch *b, const conn_cfg *cfg, lm_id job, uint64_t now, bool running) {
    cmd c;
    cmd_start(&c, "ZADD");
    argf(&c, "%sjobs", cfg->prefix);
    arg_str(&c, "NX");
    argf(&c, "%" PRIu64, now);
    arg_id(&c, job);
    batch_add(b, &c);
    cmd_start(&c, running ? "SADD" : "SREM");
    argf(&c, "%sjobs:running", cfg->prefix);
    arg_id(&c, job);
    batch_add(b, &c);
}

lumen_status lm_redis_job_start(lm_redis *r, lm_id job) {
    uint64_t now = lm_wall_ms();
    batch b = {0};
    cmd c;
    hset_start(&c, &r->cfg, "job", job);
    f_str(&c, "state", lm_job_state_name(LM_JOB_RUNNING));
    f_u64(&c, "started_ms", now);
    f_u64(&c, "finished_ms", 0);
    f_u64(&c, "tasks", 0);
    batch_add(&b, &c);
    job_index_cmd(&b, &r->cfg, job, now, true);
    lumen_status st = exec(r, &b, "job start", NULL);
    batch_fini(&b);
    return st;
}

lumen_status lm_redis_job_detach(lm_redis *r, lm_id job) {
    cmd c;
    hset_start(&c, &r->cfg, "job", job);
    f_u64(&c, "detached", 1);
    return run(r, "job detach", &c, NULL);
}

lumen_status lm_redis_jobs_running(lm_redis *r, lm_id **jobs, size_t *n) {
    cmd c;
    cmd_start(&c, "SMEMBERS");
    argf(&c, "%sjobs:running", r->cfg.prefix);
    return members(r, "running jobs", &c, jobs, n);
}

lumen_status lm_redis_job_finish(lm_redis *r, lm_id job, uint64_t tasks) {
    uint64_t now = lm_wall_ms();
    batch b = {0};
    cmd c;
    hset_start(&c, &r->cfg, "job", job);
    f_str(&c, "state", lm_job_state_name(LM_JOB_FINISHED));
    f_u64(&c, "finished_ms", now);
    f_u64(&c, "tasks", tasks);
    batch_add(&b, &c);
    job_index_cmd(&b, &r->cfg, job, now, false);
    lumen_status st = exec(r, &b, "job finish", NULL);
    batch_fini(&b);
    return st;
}

lumen_status lm_redis_job_release(lm_redis *r, lm_id job) {
    lm_id *objs = NULL;
    size_t n = 0;
    lumen_status st = lm_redis_job_objs(r, job, &objs, &n);
    if (!LM_IS_OK(st)) return st;
    batch b = {0};
    cmd c;
    for (size_t i = 0; i < n; i++) {
        cmd_start(&c, "DEL");
        arg_key(&c, &r->cfg, "obj", objs[i], "");
        arg_key(&c, &r->cfg, "obj", objs[i], ":locs");
        batch_add(&b, &c);
        cmd_start(&c, "ZREM");
        argf(&c, "%sobjs", r->cfg.prefix);
        arg_id(&c, objs[i]);
        batch_add(&b, &c);
    }
    cmd_start(&c, "DEL");
    arg_key(&c, &r->cfg, "job", job, ":objs");
    batch_add(&b, &c);
    st = exec(r, &b, "job release", NULL);
    batch_fini(&b);
    free(objs);
    return st;
}

lumen_status lm_redis_job_objs(lm_redis *r, lm_id job, lm_id **objs, size_t *n) {
    cmd c;
    cmd_start(&c, "SMEMBERS");
    arg_key(&c, &r->cfg, "job", job, ":objs");
    return members(r, "job objs", &c, objs, n);
}

/* ---- views: indexes and counters, read by the dashboard and the CLI ---- */

static const char *const count_fields[] = {"PENDING", "READY", "RUNNING", "FINISHED", "FAILED",
                                           "submitted", "finished", "failed", "retried"};

static void counts_parse(const redisReply *h, lm_task_counts *out) {
    memset(out, 0, sizeof *out);
    if (h->type != REDIS_REPLY_ARRAY || h->elements != ARRAY_LEN(count_fields)) return;
    uint64_t v[ARRAY_LEN(count_fields)];
    for (size_t i = 0; i < ARRAY_LEN(count_fields); i++) {
        /* counters are never negative, unless a record was edited by hand */
        long long n = h->element[i]->type == REDIS_REPLY_STRING ? strtoll(h->element[i]->str, NULL, 10) : 0;
        v[i] = n > 0 ? (uint64_t)n : 0;
    }
    for (int i = 0; i < LM_TASK_STATES; i++) out->by_state[i] = v[i];
    out->submitted = v[5], out->finished = v[6], out->failed = v[7], out->retried = v[8];
}

/* HMGET of the same fields from n keys made by key(i); one round trip.
 * The caller frees the replies (replies_free(*reps, n)). */
typedef void (*key_fn)(cmd *c, const conn_cfg *cfg, const void *keys, size_t i);

static lumen_status hmget_many(lm_redis *r, const char *what, key_fn key, const void *keys, size_t n,
                               const char *const *fields, size_t nfields, redisReply ***reps) {
    *reps = NULL;
    if (n == 0) return lm_ok();
    batch b = {0};
    cmd c;
    for (size_t i = 0; i < n; i++) {
        cmd_start(&c, "HMGET");
        key(&c, &r->cfg, keys, i);
        for (size_t f = 0; f < nfields; f++) arg_str(&c, fields[f]);
        batch_add(&b, &c);
    }
    lumen_status st = exec(r, &b, what, reps);
    batch_fini(&b);
    for (size_t i = 0; LM_IS_OK(st) && i < n; i++)
        if ((*reps)[i]->type != REDIS_REPLY_ARRAY || (*reps)[i]->elements != nfields) {
            st = lm_status(LUMEN_INTERNAL, "redis %s: %s: unexpected HMGET reply", r->cfg.addr, what);
            replies_free(*reps, n);
            *reps = NULL;
        }
    return st;
}

static void fn_counts_key(cmd *c, const conn_cfg *cfg, const void *keys, size_t i) {
    argf(c, "%sfn:%s:counts", cfg->prefix, ((const char *const *)keys)[i]);
}
static void job_counts_key(cmd *c, const conn_cfg *cfg, const void *keys, size_t i) {
    arg_key(c, cfg, "job", ((const lm_id *)keys)[i], ":counts");
}

static lumen_status counts_get(lm_redis *r, key_fn key, const void *keys, size_t n, lm_task_counts *out) {
    redisReply **reps = NULL;
    lumen_status st = hmget_many(r, "task counts", key, keys, n, count_fields, ARRAY_LEN(count_fields), &reps);
    for (size_t i = 0; LM_IS_OK(st) && i < n; i++) counts_parse(reps[i], &out[i]);
    replies_free(reps, LM_IS_OK(st) ? n : 0);
    return st;
}

lumen_status lm_redis_fn_counts(lm_redis *r, const char *const *fns, size_t n, lm_task_counts *out) {
    return counts_get(r, fn_counts_key, fns, n, out);
}

lumen_status lm_redis_job_counts(lm_redis *r, const lm_id *jobs, size_t n, lm_task_counts *out) {
    return counts_get(r, job_counts_key, jobs, n, out);
}

void lm_strings_free(char **s, size_t n) {
    for (size_t i = 0; s && i < n; i++) free(s[i]);
    free(s);
}

lumen_status lm_redis_task_fns(lm_redis *r, char ***names, size_t *n) {
    *names = NULL;
    *n = 0;
    cmd c;
    cmd_start(&c, "SMEMBERS");
    argf(&c, "%sfns", r->cfg.prefix);
    redisReply *rep = NULL;
    lumen_status st = run(r, "task fns", &c, &rep);
    if (!LM_IS_OK(st)) return st;
    char **out = calloc(rep->elements ? rep->elements : 1, sizeof *out);
    for (size_t i = 0; out && i < rep->elements; i++)
        if (rep->element[i]->type == REDIS_REPLY_STRING &&
            (out[*n] = strndup(rep->element[i]->str, rep->element[i]->len)) != NULL)
            (*n)++;
    freeReplyObject(rep);
    if (out == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "redis %s: task fns: out of memory", r->cfg.addr);
    *names = out;
    return st;
}

/* The sorted set an index names. */
static void arg_index(cmd *c, const conn_cfg *cfg, const lm_index *ix) {
    static const char *const sets[] = {[LM_INDEX_TASKS] = "tasks", [LM_INDEX_JOBS] = "jobs",
                                       [LM_INDEX_ACTORS] = "actors", [LM_INDEX_OBJS] = "objs"};
    switch (ix->kind) {
    case LM_INDEX_TASKS_STATE: argf(c, "%stasks:%s", cfg->prefix, lm_task_state_name(ix->state)); break;
    case LM_INDEX_TASKS_FN: argf(c, "%sfn:%s:tasks", cfg->prefix, ix->fn ? ix->fn : ""); break;
    case LM_INDEX_TASKS_JOB: arg_key(c, cfg, "job", ix->job, ":tasks"); break;
    default: argf(c, "%s%s", cfg->prefix, sets[ix->kind]); break;
    }
}

lumen_status lm_redis_index_count(lm_redis *r, const lm_index *ix, size_t n, uint64_t *counts) {
    batch b = {0};
    cmd c;
    for (size_t i = 0; i < n; i++) {
        cmd_start(&c, "ZCARD");
        arg_index(&c, &r->cfg, &ix[i]);
        batch_add(&b, &c);
    }
    redisReply **reps = NULL;
    lumen_status st = exec(r, &b, "index count", &reps);
    batch_fini(&b);
    for (size_t i = 0; LM_IS_OK(st) && i < n; i++)
        counts[i] = reps[i]->type == REDIS_REPLY_INTEGER && reps[i]->integer > 0 ? (uint64_t)reps[i]->integer : 0;
    if (LM_IS_OK(st)) replies_free(reps, n);
    return st;
}

lumen_status lm_redis_set_count(lm_redis *r, const char *name, uint64_t *count) {
    cmd c;
    cmd_start(&c, "SCARD");
    argf(&c, "%s%s", r->cfg.prefix, name);
    redisReply *rep = NULL;
    lumen_status st = run(r, "set count", &c, &rep);
    if (!LM_IS_OK(st)) return st;
    *count = rep->type == REDIS_REPLY_INTEGER && rep->integer > 0 ? (uint64_t)rep->integer : 0;
    freeReplyObject(rep);
    return st;
}

lumen_status lm_redis_index_page(lm_redis *r, const lm_index *ix, uint64_t before, size_t offset, size_t limit,
                                 lm_id *ids, uint64_t *scores, size_t *n) {
    *n = 0;
    if (limit == 0) return lm_ok();
    cmd c;
    if (before > 0) { /* by score: a cursor that stays put while new members arrive */
        cmd_start(&c, "ZREVRANGEBYSCORE");
        arg_index(&c, &r->cfg, ix);
        argf(&c, "(%" PRIu64, before);
        arg_str(&c, "-inf");
        arg_str(&c, "WITHSCORES");
        arg_str(&c, "LIMIT");
        argf(&c, "%zu", offset);
        argf(&c, "%zu", limit);
    } else {
        cmd_start(&c, "ZREVRANGE");
        arg_index(&c, &r->cfg, ix);
        argf(&c, "%zu", offset);
        argf(&c, "%zu", offset + limit - 1);
        arg_str(&c, "WITHSCORES");
    }
    redisReply *rep = NULL;
    lumen_status st = run(r, "index page", &c, &rep);
    if (!LM_IS_OK(st)) return st;
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i + 1 < rep->elements && *n < limit; i += 2) {
        const redisReply *m = rep->element[i], *sc = rep->element[i + 1];
        if (m->type != REDIS_REPLY_STRING || m->len != LM_ID_HEX_LEN || !lm_id_from_hex(m->str, &ids[*n]))
            continue;
        if (scores) scores[*n] = sc->type == REDIS_REPLY_STRING ? strtoull(sc->str, NULL, 10) : 0;
        (*n)++;
    }
    freeReplyObject(rep);
    return st;
}

static void id_key(cmd *c, const conn_cfg *cfg, const char *kind, const void *keys, size_t i) {
    arg_key(c, cfg, kind, ((const lm_id *)keys)[i], "");
}
static void task_key(cmd *c, const conn_cfg *cfg, const void *keys, size_t i) { id_key(c, cfg, "task", keys, i); }
static void job_key(cmd *c, const conn_cfg *cfg, const void *keys, size_t i) { id_key(c, cfg, "job", keys, i); }
static void actor_key(cmd *c, const conn_cfg *cfg, const void *keys, size_t i) { id_key(c, cfg, "actor", keys, i); }
static void obj_key(cmd *c, const conn_cfg *cfg, const void *keys, size_t i) { id_key(c, cfg, "obj", keys, i); }

static int reply_word(const char *const *words, size_t n, const redisReply *e) {
    return e->type == REDIS_REPLY_STRING ? word_parse(words, n, e->str, e->len) : -1;
}

lumen_status lm_redis_tasks_get(lm_redis *r, const lm_id *ids, size_t n, lm_task_record *out, bool *found) {
    static const char *const fields[] = {"state", "fn", "job", "worker", "attempts", "error", "submitted_ms", "finished_ms"};
    redisReply **reps = NULL;
    lumen_status st = hmget_many(r, "tasks get", task_key, ids, n, fields, ARRAY_LEN(fields), &reps);
    for (size_t i = 0; LM_IS_OK(st) && i < n; i++) {
        redisReply **v = reps[i]->element;
        int state = reply_word(lm_task_state_words, ARRAY_LEN(lm_task_state_words), v[0]);
        found[i] = state >= 0;
        out[i] = (lm_task_record){.id = ids[i], .state = state < 0 ? LM_TASK_PENDING : (lm_task_state)state,
                                  .fn = reply_strdup(v[1]), .job = reply_id(v[2]), .worker = reply_id(v[3]),
                                  .attempts = (uint32_t)reply_u64(v[4]), .error = reply_strdup(v[5]),
                                  .submitted_ms = reply_u64(v[6]), .finished_ms = reply_u64(v[7])};
    }
    replies_free(reps, LM_IS_OK(st) ? n : 0);
    return st;
}

void lm_task_record_fini(lm_task_record *t) {
    free((char *)t->fn);
    free((char *)t->error);
    t->fn = t->error = NULL;
}

lumen_status lm_redis_jobs_get(lm_redis *r, const lm_id *ids, size_t n, lm_job_record *out, bool *found) {
    static const char *const fields[] = {"state", "started_ms", "finished_ms", "tasks", "detached"};
    redisReply **reps = NULL;
    lumen_status st = hmget_many(r, "jobs get", job_key, ids, n, fields, ARRAY_LEN(fields), &reps);
    for (size_t i = 0; LM_IS_OK(st) && i < n; i++) {
        redisReply **v = reps[i]->element;
        int state = reply_word(lm_job_state_words, ARRAY_LEN(lm_job_state_words), v[0]);
        found[i] = state >= 0;
        out[i] = (lm_job_record){.id = ids[i], .state = state == LM_JOB_FINISHED ? LM_JOB_FINISHED : LM_JOB_RUNNING,
                                 .started_ms = reply_u64(v[1]), .finished_ms = reply_u64(v[2]),
                                 .tasks = reply_u64(v[3]), .detached = reply_u64(v[4]) != 0};
    }
    replies_free(reps, LM_IS_OK(st) ? n : 0);
    return st;
}

lumen_status lm_redis_actors_get(lm_redis *r, const lm_id *ids, size_t n, lm_actor_record *out, bool *found) {
    static const char *const fields[] = {"class", "worker", "state",   "restarts", "incarnation",
                                         "calls", "name",   "job",     "error"};
    redisReply **reps = NULL;
    lumen_status st = hmget_many(r, "actors get", actor_key, ids, n, fields, ARRAY_LEN(fields), &reps);
    for (size_t i = 0; LM_IS_OK(st) && i < n; i++) {
        redisReply **v = reps[i]->element;
        int state = reply_word(lm_actor_state_words, ARRAY_LEN(lm_actor_state_words), v[2]);
        found[i] = v[0]->type == REDIS_REPLY_STRING;
        out[i] = (lm_actor_record){
            .id = ids[i], .class_name = reply_strdup(v[0]), .worker = reply_id(v[1]),
            .state = state < 0 ? LM_ACTOR_DEAD : (lm_actor_state)state,
            .restarts = (uint32_t)reply_u64(v[3]), .incarnation = (uint32_t)reply_u64(v[4]),
            .calls = reply_u64(v[5]), .name = reply_strdup(v[6]), .job = reply_id(v[7]), .error = reply_strdup(v[8])};
    }
    replies_free(reps, LM_IS_OK(st) ? n : 0);
    return st;
}

lumen_status lm_redis_objs_get(lm_redis *r, const lm_id *ids, size_t n, lm_obj_record *out, bool *found) {
    static const char *const fields[] = {"state", "size", "task", "job", "error"};
    redisReply **reps = NULL;
    lumen_status st = hmget_many(r, "objs get", obj_key, ids, n, fields, ARRAY_LEN(fields), &reps);
    for (size_t i = 0; LM_IS_OK(st) && i < n; i++) {
        redisReply **v = reps[i]->element;
        int state = reply_word(lm_obj_state_words, ARRAY_LEN(lm_obj_state_words), v[0]);
        found[i] = state >= 0;
        out[i] = (lm_obj_record){.id = ids[i], .state = state < 0 ? LM_OBJ_PENDING : (lm_obj_state)state,
                                 .size = reply_u64(v[1]), .task = reply_id(v[2]), .job = reply_id(v[3]),
                                 .error = reply_strdup(v[4])};
    }
    replies_free(reps, LM_IS_OK(st) ? n : 0);
    return st;
}

/* ---- census ---- */

static void census_tally(lm_census_group *g, const char *state, size_t len, uint64_t bytes) {
    g->total++;
    g->bytes += bytes;
    if (len == 0) state = "?", len = 1;
    if (len > LM_CENSUS_STATE_MAX) len = LM_CENSUS_STATE_MAX;
    for (size_t i = 0; i < g->nby; i++)
        if (strlen(g->by[i].state) == len && memcmp(g->by[i].state, state, len) == 0) {
            g->by[i].n++;
            return;
        }
    lm_census_row *row = &g->by[g->nby < LM_CENSUS_ROWS ? g->nby++ : LM_CENSUS_ROWS - 1];
    if (row->n == 0)
        snprintf(row->state, sizeof row->state, "%.*s", (int)len, state);
    else /* a second state in the full table's last row: name it for what it is */
        snprintf(row->state, sizeof row->state, "other");
    row->n++;
}

/* The group a key "<p><kind>:<32 hex>" counts in; NULL for other keys, and
 * sub-keys like obj:<id>:locs. */
static lm_census_group *census_group_of(const conn_cfg *cfg, lm_census_group *groups, size_t n,
                                        const char *key, size_t len) {
    size_t plen = strlen(cfg->prefix);
    if (len <= plen || memcmp(key, cfg->prefix, plen) != 0) return NULL;
    key += plen;
    len -= plen;
    for (size_t i = 0; i < n; i++) {
        size_t klen = strlen(groups[i].kind);
        if (len != klen + 1 + LM_ID_HEX_LEN || memcmp(key, groups[i].kind, klen) != 0 ||
            key[klen] != ':')
            continue;
        char hex[LM_ID_HEX_LEN + 1];
        memcpy(hex, key + klen + 1, LM_ID_HEX_LEN);
        hex[LM_ID_HEX_LEN] = '\0';
        lm_id id;
        return lm_id_from_hex(hex, &id) ? &groups[i] : NULL;
    }
    return NULL;
}

/* Counts the records among one SCAN reply's keys: one pipelined HMGET. */
static lumen_status census_keys(lm_redis *r, const redisReply *keys, lm_census_group *groups,
                                size_t n) {
    lm_census_group **owner = calloc(keys->elements ? keys->elements : 1, sizeof *owner);
    if (owner == NULL)
        return lm_status(LUMEN_RESOURCE_EXHAUSTED, "redis %s: census: out of memory", r->cfg.addr);
    batch b = {.own_errors = true}; /* a non-hash key is skipped, not fatal */
    cmd c;
    size_t nrec = 0;
    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        lm_census_group *g =
            k->type == REDIS_REPLY_STRING ? census_group_of(&r->cfg, groups, n, k->str, k->len)
                                          : NULL;
        if (g == NULL) continue;
        cmd_start(&c, "HMGET");
        arg(&c, k->str, k->len);
        arg_str(&c, "state");
        arg_str(&c, "size");
        batch_add(&b, &c);
        owner[nrec++] = g;
    }
    redisReply **reps = NULL;
    lumen_status st = exec(r, &b, "census", &reps);
    for (size_t i = 0; LM_IS_OK(st) && reps && i < nrec; i++) {
        const redisReply *h = reps[i];
        if (h->type == REDIS_REPLY_ERROR && strncmp(h->str, "WRONGTYPE", 9) != 0)
            st = reply_status(&r->cfg, "census", h);
        /* no state: the record was deleted after SCAN saw it */
        else if (h->type == REDIS_REPLY_ARRAY && h->elements == 2 &&
                 h->element[0]->type == REDIS_REPLY_STRING)
            census_tally(owner[i], h->element[0]->str, h->element[0]->len,
                         reply_u64(h->element[1]));
    }
    replies_free(reps, nrec);
    batch_fini(&b);
    free(owner);
    return st;
}

lumen_status lm_redis_census(lm_redis *r, lm_census_group *groups, size_t n) {
    for (size_t i = 0; i < n; i++) groups[i] = (lm_census_group){.kind = groups[i].kind};
    char cursor[32] = "0";
    lumen_status st;
    do {
        cmd c;
        cmd_start(&c, "SCAN");
        arg_str(&c, cursor);
        arg_str(&c, "MATCH");
        arg_glob_prefix(&c, r->cfg.prefix);
        arg_str(&c, "COUNT");
        arg_str(&c, "1000");
        redisReply *rep = NULL;
        st = run(r, "census", &c, &rep);
        if (!LM_IS_OK(st)) break;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_STRING ||
            rep->element[0]->len >= sizeof cursor || rep->element[1]->type != REDIS_REPLY_ARRAY)
            st = lm_status(LUMEN_INTERNAL, "redis %s: census: unexpected SCAN reply", r->cfg.addr);
        else {
            memcpy(cursor, rep->element[0]->str, rep->element[0]->len + 1);
            st = census_keys(r, rep->element[1], groups, n);
        }
        freeReplyObject(rep);
    } while (LM_IS_OK(st) && strcmp(cursor, "0") != 0);
    return st;
}

/* ---- events ---- */

lumen_status lm_redis_publish(lm_redis *r, const char *type, lm_id id, const char *detail) {
    if (type == NULL || *type == '\0' || strlen(type) > LM_EVENT_TYPE_MAX || strchr(type, ' '))
        return lm_status(LUMEN_INVALID_ARGUMENT, "event type \"%s\": want 1..%d chars, no spaces",
                         type ? type : "", LM_EVENT_TYPE_MAX);
    cmd c;
    publish_cmd(&c, &r->cfg, type, id, detail);
    return run(r, "publish", &c, NULL);
}

bool lm_redis_event_parse(const char *msg, size_t len, lm_redis_event *ev) {
    const char *sp = msg ? memchr(msg, ' ', len) : NULL;
    if (sp == NULL || sp == msg || (size_t)(sp - msg) > LM_EVENT_TYPE_MAX) return false;
    size_t tlen = (size_t)(sp - msg), rest = len - tlen - 1;
    char hex[LM_ID_HEX_LEN + 1];
    if (rest < LM_ID_HEX_LEN || (rest > LM_ID_HEX_LEN && sp[1 + LM_ID_HEX_LEN] != ' '))
        return false;
    memcpy(hex, sp + 1, LM_ID_HEX_LEN);
    hex[LM_ID_HEX_LEN] = '\0';
    if (!lm_id_from_hex(hex, &ev->id)) return false;
    memcpy(ev->type, msg, tlen);
    ev->type[tlen] = '\0';
    ev->detail = rest > LM_ID_HEX_LEN ? sp + 2 + LM_ID_HEX_LEN : sp + 1 + LM_ID_HEX_LEN;
    ev->detail_len = rest > LM_ID_HEX_LEN ? rest - LM_ID_HEX_LEN - 1 : 0;
    return true;
}

/* ---- the subscriber ---- */

struct lm_redis_subscriber {
    conn_cfg cfg;
    char *channel; /* with the prefix */
    lm_redis_message_fn fn;
    void *arg;
    redisContext *ctx; /* owned by the thread once it runs */
    int wake_fd;       /* eventfd: readable once free() wants the thread gone */
    pthread_t thread;
};

static lumen_status subscribe(lm_redis_subscriber *s) {
    lumen_status st = open_conn(&s->cfg, &s->ctx);
    if (!LM_IS_OK(st)) return st;
    redisReply *rep = redisCommand(s->ctx, "SUBSCRIBE %s", s->channel);
    if (rep == NULL) st = ctx_status(&s->cfg, s->ctx, errno);
    else if (rep->type != REDIS_REPLY_ARRAY) st = reply_status(&s->cfg, "SUBSCRIBE", rep);
    freeReplyObject(rep);
    if (!LM_IS_OK(st)) {
        redisFree(s->ctx);
        s->ctx = NULL;
    }
    return st;
}

/* Hands every complete message the reader holds to the callback; false
 * when the stream is broken. */
static bool deliver(lm_redis_subscriber *s) {
    for (;;) {
        redisReply *rep = NULL;
        if (redisGetReplyFromReader(s->ctx, (void **)&rep) != REDIS_OK) return false;
        if (rep == NULL) return true;
        redisReply **e = rep->element;
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
            e[0]->type == REDIS_REPLY_STRING && strcmp(e[0]->str, "message") == 0 &&
            e[2]->type == REDIS_REPLY_STRING)
            s->fn(s->arg, e[2]->str, e[2]->len);
        freeReplyObject(rep);
    }
}

/* Blocks until the connection is readable (true) or free() wakes us or
 * timeout_ms passes (false); timeout -1: no timeout. */
static bool wait_readable(lm_redis_subscriber *s, int timeout_ms, bool *woken) {
    struct pollfd pf[2] = {{.fd = s->wake_fd, .events = POLLIN},
                           {.fd = s->ctx ? s->ctx->fd : -1, .events = POLLIN}};
    int n;
    do n = poll(pf, 2, timeout_ms);
    while (n < 0 && errno == EINTR);
    *woken = pf[0].revents != 0;
    return !*woken && pf[1].revents != 0;
}

static void *subscriber_main(void *p) {
    lm_thread_name("redis-sub");
    lm_redis_subscriber *s = p;
    unsigned backoff = BACKOFF_MIN_MS;
    bool woken = false;
    while (!woken) {
        if (s->ctx == NULL) {
            lumen_status st = subscribe(s);
            if (LM_IS_OK(st)) {
                lm_info("redis %s: subscriber back on %s", s->cfg.addr, s->channel);
                backoff = BACKOFF_MIN_MS;
                s->fn(s->arg, NULL, 0); /* there was a gap */
                continue;
            }
            lm_debug("subscriber: %s", st.msg);
            wait_readable(s, (int)backoff, &woken);
            backoff = next_backoff(backoff);
            continue;
        }
        bool ok = deliver(s);
        if (ok && wait_readable(s, -1, &woken)) ok = redisBufferRead(s->ctx) == REDIS_OK;
        if (!ok) {
            lm_warn("redis %s: subscriber lost its connection (%s); reconnecting", s->cfg.addr,
                    s->ctx->errstr);
            redisFree(s->ctx);
            s->ctx = NULL;
        }
    }
    return NULL;
}

static void subscriber_destroy(lm_redis_subscriber *s) {
    redisFree(s->ctx);
    if (s->wake_fd >= 0) close(s->wake_fd);
    free(s->channel);
    cfg_fini(&s->cfg);
    free(s);
}

lumen_status lm_redis_subscriber_new(const lm_redis_opts *opts, const char *channel,
                                     lm_redis_message_fn fn, void *arg,
                                     lm_redis_subscriber **out) {
    *out = NULL;
    if (fn == NULL) return lm_status(LUMEN_INVALID_ARGUMENT, "subscriber: no callback");
    lm_redis_subscriber *s = calloc(1, sizeof *s);
    if (s == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "redis: out of memory");
    s->wake_fd = -1;
    lumen_status st = cfg_init(&s->cfg, opts);
    if (!LM_IS_OK(st)) {
        free(s);
        return st;
    }
    s->fn = fn;
    s->arg = arg;
    if (asprintf(&s->channel, "%s%s", s->cfg.prefix, channel ? channel : DEFAULT_CHANNEL) < 0) {
        s->channel = NULL;
        st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "redis: out of memory");
    }
    if (LM_IS_OK(st) && (s->wake_fd = eventfd(0, EFD_CLOEXEC)) < 0)
        st = lm_status_errno(LUMEN_INTERNAL, errno, "subscriber: eventfd");
    if (LM_IS_OK(st)) st = subscribe(s); /* before returning: nothing published later is missed */
    int err = LM_IS_OK(st) ? pthread_create(&s->thread, NULL, subscriber_main, s) : 0;
    if (err) st = lm_status_errno(LUMEN_INTERNAL, err, "subscriber: pthread_create");
    if (!LM_IS_OK(st)) {
        subscriber_destroy(s);
        return st;
    }
    *out = s;
    return st;
}

void lm_redis_subscriber_free(lm_redis_subscriber *s) {
    if (s == NULL) return;
    uint64_t one = 1;
    ssize_t ignored = write(s->wake_fd, &one, sizeof one);
    (void)ignored;
    pthread_join(s->thread, NULL);
    subscriber_destroy(s);
}

/* dir_writer.c - see dir_writer.h. */
#include "clock.h"
#include "dir_writer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "process.h"

#define RETRY_MIN_MS 50
#define RETRY_MAX_MS 2000

typedef enum op_kind { OP_READY, OP_REMOVED } op_kind;

typedef struct dir_op dir_op;
struct dir_op {
    dir_op *next;
    op_kind kind;
    lm_id id, job;
    uint64_t size;
};

struct lm_dir_writer {
    char *addr, *password, *prefix;
    lm_redis_opts opts; /* points at the copies above */
    lm_id store;
    lm_redis *redis;    /* the writer thread's; NULL until connected */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    dir_op *head, *tail; /* queued, oldest first */
    bool fresh;          /* ops arrived since the last pass */
    bool stopping;
};

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void enqueue(lm_dir_writer *w, op_kind kind, lm_id id, lm_id job, uint64_t size) {
    dir_op *op = calloc(1, sizeof *op);
    if (op == NULL) { /* the directory misses one update */
        lm_error("directory update for an object lost: out of memory");
        return;
    }
    op->kind = kind;
    op->id = id;
    op->job = job;
    op->size = size;
    pthread_mutex_lock(&w->mu);
    if (w->tail) w->tail->next = op;
    else w->head = op;
    w->tail = op;
    w->fresh = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

void lm_dir_writer_ready(lm_dir_writer *w, lm_id id, lm_id job, uint64_t size) {
    enqueue(w, OP_READY, id, job, size);
}

void lm_dir_writer_removed(lm_dir_writer *w, lm_id id) { enqueue(w, OP_REMOVED, id, (lm_id){{0}}, 0); }

static lumen_status apply(lm_dir_writer *w, const dir_op *op) {
    if (w->redis == NULL) {
        lumen_status st = lm_redis_connect(&w->opts, &w->redis);
        if (!LM_IS_OK(st)) return st;
        lm_info("connected to redis at %s", w->opts.addr);
    }
    return op->kind == OP_READY ? lm_redis_obj_ready(w->redis, op->id, op->size, w->store, op->job)
                                : lm_redis_obj_loc_remove(w->redis, op->id, w->store);
}

/* Tries ops in order (when `try` says Redis may be asked); once one fails
 * the rest wait their turn (order matters: a removal must not overtake its
 * READY). Returns what is left, oldest first. */
static dir_op *run_pass(lm_dir_writer *w, dir_op *ops, bool try, lumen_status *failed) {
    dir_op *left = NULL, **left_tail = &left;
    if (try) *failed = lm_ok();
    while (ops != NULL) {
        dir_op *op = ops;
        ops = op->next;
        op->next = NULL;
        if (LM_IS_OK(*failed)) *failed = apply(w, op);
        if (LM_IS_OK(*failed)) {
            free(op);
        } else {
            *left_tail = op;
            left_tail = &op->next;
        }
    }
    return left;
}

/* Waits until `until` (monotonic ms) or a signal, whichever comes first. */
static void nap_until(lm_dir_writer *w, uint64_t until) {
    uint64_t now = lm_mono_ms();
    struct timespec ts = lm_timespec_in(CLOCK_REALTIME, until > now ? (int64_t)(until - now) : 0);
    pthread_cond_timedwait(&w->cond, &w->mu, &ts);
}

static void *writer_main(void *arg) {
    lm_thread_name("dir-writer");
    lm_dir_writer *w = arg;
    unsigned backoff = RETRY_MIN_MS;
    uint64_t retry_at = 0;      /* while Redis is away: when to ask it again */
    lumen_status failed = lm_ok();
    bool warned = false;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->head == NULL && !w->stopping) pthread_cond_wait(&w->cond, &w->mu);
        if (w->head == NULL) break; /* stopping, nothing left */
        bool last = w->stopping;
        bool try = last || lm_mono_ms() >= retry_at;
        if (!try && !w->fresh) { /* nothing new: wait for the retry time */
            nap_until(w, retry_at);
            continue;
        }
        dir_op *ops = w->head;
        w->head = w->tail = NULL;
        w->fresh = false;
        pthread_mutex_unlock(&w->mu);

        dir_op *left = run_pass(w, ops, try, &failed);

        pthread_mutex_lock(&w->mu);
        if (left == NULL) {
            if (warned) lm_info("redis is back: the object directory is up to date");
            warned = false;
            backoff = RETRY_MIN_MS;
            retry_at = 0;
            continue;
        }
        size_t n = 0;
        dir_op *end = left;
        for (;; end = end->next) {
            n++;
            if (end->next == NULL) break;
        }
        if (last) { /* stopping: no more retries */
            lm_error("%zu object directory update(s) lost: %s", n, failed.msg);
            for (dir_op *op = left, *next; op != NULL; op = next) next = op->next, free(op);
            continue;
        }
        if (!warned) lm_warn("object directory updates wait for redis (%zu queued): %s", n, failed.msg);
        warned = true;
        end->next = w->head; /* the failed ones stay first */
        if (w->head == NULL) w->tail = end;
        w->head = left;
        if (try) {
            retry_at = lm_mono_ms() + backoff;
            backoff = backoff * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : backoff * 2;
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

lumen_status lm_dir_writer_start(const lm_redis_opts *opts, lm_id store, lm_dir_writer **out) {
    *out = NULL;
    lm_dir_writer *w = calloc(1, sizeof *w);
    if (w == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "directory writer: out of memory");
    w->addr = dup_or_null(opts->addr);
    w->password = dup_or_null(opts->password);
    w->prefix = dup_or_null(opts->prefix);
    w->opts = (lm_redis_opts){w->addr, w->password, w->prefix, opts->timeout_ms};
    w->store = store;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cond);
        free(w->addr), free(w->password), free(w->prefix), free(w);
        return lm_status(LUMEN_INTERNAL, "directory writer: cannot start its thread");
    }
    *out = w;
    return lm_ok();
}

void lm_dir_writer_free(lm_dir_writer *w) {
    if (w == NULL) return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    lm_redis_free(w->redis);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cond);
    free(w->addr);
    free(w->password);
    free(w->prefix);
    free(w);
}

/* resolver.c - see resolver.h. */
#include "resolver.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "idmap.h"
#include "log.h"
#include "process.h"
#include "redis_state.h"

#define BATCH_MAX 512
#define RETRY_MIN_MS 50
#define RETRY_MAX_MS 2000

struct sched_resolver {
    lm_redis *redis;
    lm_redis_subscriber *sub;
    sched_resolved_fn fn;
    void *arg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    lm_id *queue; /* lookups to make, in order */
    size_t nqueue, cap;
    lm_idmap *watched;
    bool stopping;
};

static char watched_mark;

static void queue_push_locked(sched_resolver *r, lm_id id) {
    if (r->nqueue == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        lm_id *q = realloc(r->queue, cap * sizeof *q);
        if (q == NULL) {
            lm_error("resolver: out of memory: a lookup is dropped");
            return;
        }
        r->queue = q;
        r->cap = cap;
    }
    r->queue[r->nqueue++] = id;
    if (r->nqueue == 1) pthread_cond_signal(&r->cond);
}

void sched_resolver_lookup(sched_resolver *r, lm_id obj) {
    pthread_mutex_lock(&r->mu);
    queue_push_locked(r, obj);
    pthread_mutex_unlock(&r->mu);
}

void sched_resolver_watch(sched_resolver *r, lm_id obj) {
    pthread_mutex_lock(&r->mu);
    if (lm_idmap_get(r->watched, obj) == NULL) {
        lm_idmap_put(r->watched, obj, &watched_mark);
        queue_push_locked(r, obj);
    }
    pthread_mutex_unlock(&r->mu);
}

void sched_resolver_unwatch(sched_resolver *r, lm_id obj) {
    pthread_mutex_lock(&r->mu);
    lm_idmap_remove(r->watched, obj);
    pthread_mutex_unlock(&r->mu);
}

static void requeue_watched(void *arg, lm_id key, void *value) {
    (void)value;
    queue_push_locked(arg, key);
}

void sched_resolver_lookup_watched(sched_resolver *r) {
    pthread_mutex_lock(&r->mu);
    lm_idmap_each(r->watched, requeue_watched, r);
    pthread_mutex_unlock(&r->mu);
}

/* The subscriber's thread: announcements of stored objects. */
static void on_event(void *arg, const char *msg, size_t len) {
    sched_resolver *r = arg;
    if (msg == NULL) { /* announcements were lost while it reconnected */
        sched_resolver_lookup_watched(r);
        return;
    }
    lm_redis_event ev;
    char hex[LM_ID_HEX_LEN + 1];
    lm_id store;
    if (!lm_redis_event_parse(msg, len, &ev) || strcmp(ev.type, LM_EVENT_OBJ_READY) != 0 ||
        ev.detail_len != LM_ID_HEX_LEN)
        return;
    memcpy(hex, ev.detail, LM_ID_HEX_LEN);
    hex[LM_ID_HEX_LEN] = '\0';
    if (!lm_id_from_hex(hex, &store)) return;
    pthread_mutex_lock(&r->mu);
    bool wanted = lm_idmap_get(r->watched, ev.id) != NULL;
    pthread_mutex_unlock(&r->mu);
    if (wanted) r->fn(r->arg, ev.id, &store, 1);
}

static void *resolver_main(void *arg) {
    lm_thread_name("resolver");
    sched_resolver *r = arg;
    lm_id batch[BATCH_MAX];
    lm_id_set found[BATCH_MAX];
    unsigned backoff = RETRY_MIN_MS;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (r->nqueue == 0 && !r->stopping) pthread_cond_wait(&r->cond, &r->mu);
        if (r->stopping) break;
        size_t n = r->nqueue < BATCH_MAX ? r->nqueue : BATCH_MAX;
        memcpy(batch, r->queue, n * sizeof *batch);
        memmove(r->queue, r->queue + n, (r->nqueue - n) * sizeof *r->queue);
        r->nqueue -= n;
        pthread_mutex_unlock(&r->mu);
        lumen_status st = lm_redis_objs_locs(r->redis, batch, n, found);
        if (LM_IS_OK(st)) {
            backoff = RETRY_MIN_MS;
            for (size_t i = 0; i < n; i++) r->fn(r->arg, batch[i], found[i].ids, found[i].n);
            lm_id_sets_free(found, n);
            pthread_mutex_lock(&r->mu);
            continue;
        }
        lm_warn("object lookups: %s (retrying in %u ms)", st.msg, backoff);
        pthread_mutex_lock(&r->mu);
        for (size_t i = 0; i < n; i++) queue_push_locked(r, batch[i]);
        struct timespec until = lm_timespec_in(CLOCK_REALTIME, backoff);
        while (!r->stopping && pthread_cond_timedwait(&r->cond, &r->mu, &until) == 0) {
        }
        backoff = backoff * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : backoff * 2;
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

lumen_status sched_resolver_new(const lm_redis_opts *opts, sched_resolved_fn fn, void *arg, sched_resolver **out) {
    *out = NULL;
    sched_resolver *r = calloc(1, sizeof *r);
    if (r == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "resolver: out of memory");
    r->fn = fn;
    r->arg = arg;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cond, NULL);
    r->watched = lm_idmap_new();
    lumen_status st = lm_redis_connect(opts, &r->redis);
    if (LM_IS_OK(st)) st = lm_redis_subscriber_new(opts, NULL, on_event, r, &r->sub);
    if (LM_IS_OK(st) && pthread_create(&r->thread, NULL, resolver_main, r) != 0)
        st = lm_status(LUMEN_INTERNAL, "resolver: cannot start its thread");
    if (!LM_IS_OK(st)) {
        lm_redis_subscriber_free(r->sub);
        lm_redis_free(r->redis);
        lm_idmap_free(r->watched);
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cond);
        free(r);
        return st;
    }
    *out = r;
    return lm_ok();
}

void sched_resolver_free(sched_resolver *r) {
    if (r == NULL) return;
    lm_redis_subscriber_free(r->sub); /* no more announcements */
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    lm_redis_free(r->redis);
    lm_idmap_free(r->watched);
    free(r->queue);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cond);
    free(r);
}

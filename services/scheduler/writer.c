/* writer.c - see writer.h. */
#include "clock.h"
#include "writer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "idmap.h"
#include "log.h"

#define BATCH_MAX 1024
#define RETRY_MS 200
/* Records wait this long for company before a batch is written: one Redis
 * round trip then carries a few milliseconds of work instead of one record. */
#define COALESCE_MS 2

typedef struct queue {
    lm_task_record *tasks;
    size_t ntasks, cap_tasks;
    lm_obj_record *objs;
    size_t nobjs, cap_objs;
} queue;

struct sched_writer {
    lm_redis *redis;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;     /* work arrived / stop */
    pthread_cond_t drained;  /* a batch was written */
    queue pending;
    uint64_t queued, written; /* records, for flush */
    uint64_t signalled_at;    /* `queued` when the writer last took a batch */
    int flushing;             /* callers waiting in sched_writer_flush: no coalescing delay */
    bool stopping;
};

static char *dup_str(const char *s) { return s ? strdup(s) : NULL; }

/* Appends a record whose strings the queue owns from now on. */
static void push_task(queue *q, const lm_task_record *t) {
    if (q->ntasks == q->cap_tasks) {
        q->cap_tasks = q->cap_tasks ? 2 * q->cap_tasks : 256;
        q->tasks = realloc(q->tasks, q->cap_tasks * sizeof *q->tasks);
    }
    q->tasks[q->ntasks++] = *t;
}

static void push_obj(queue *q, const lm_obj_record *o) {
    if (q->nobjs == q->cap_objs) {
        q->cap_objs = q->cap_objs ? 2 * q->cap_objs : 256;
        q->objs = realloc(q->objs, q->cap_objs * sizeof *q->objs);
    }
    q->objs[q->nobjs++] = *o;
}

/* Moves every record of src to the end of dst. */
static void move_all(queue *dst, queue *src) {
    for (size_t i = 0; i < src->ntasks; i++) push_task(dst, &src->tasks[i]);
    for (size_t i = 0; i < src->nobjs; i++) push_obj(dst, &src->objs[i]);
    src->ntasks = src->nobjs = 0;
}

/* Only the first record of a batch wakes the writer: the rest join it
 * during the coalescing wait without a wake-up each. */
static void record_queued(sched_writer *w) {
    if (w->queued++ == w->signalled_at) pthread_cond_signal(&w->cond);
}

void sched_writer_task(sched_writer *w, const lm_task_record *rec) {
    lm_task_record t = *rec;
    t.fn = dup_str(rec->fn);
    t.error = dup_str(rec->error);
    t.spec = NULL; /* specs are not written behind */
    pthread_mutex_lock(&w->mu);
    push_task(&w->pending, &t);
    record_queued(w);
    pthread_mutex_unlock(&w->mu);
}

void sched_writer_obj(sched_writer *w, const lm_obj_record *rec) {
    lm_obj_record o = *rec;
    o.error = dup_str(rec->error);
    pthread_mutex_lock(&w->mu);
    push_obj(&w->pending, &o);
    record_queued(w);
    pthread_mutex_unlock(&w->mu);
}

static void queue_clear(queue *q) {
    for (size_t i = 0; i < q->ntasks; i++) {
        free((char *)q->tasks[i].fn);
        free((char *)q->tasks[i].error);
    }
    for (size_t i = 0; i < q->nobjs; i++) free((char *)q->objs[i].error);
    q->ntasks = q->nobjs = 0;
}

static void queue_free(queue *q) {
    queue_clear(q);
    free(q->tasks);
    free(q->objs);
}

/* A record that a later one in the same batch supersedes need not be
 * written: keep the last record of each id, in order. Under load a task's
 * PENDING, RUNNING and FINISHED often share one batch. */
static void keep_latest(queue *q, lm_idmap *seen) {
    static char mark;
    size_t keep = q->ntasks;
    for (size_t i = q->ntasks; i-- > 0;) {
        lm_task_record *t = &q->tasks[i];
        if (lm_idmap_get(seen, t->id) != NULL) {
            free((char *)t->fn);
            free((char *)t->error);
            continue;
        }
        lm_idmap_put(seen, t->id, &mark);
        q->tasks[--keep] = *t;
    }
    memmove(q->tasks, q->tasks + keep, (q->ntasks - keep) * sizeof *q->tasks);
    q->ntasks -= keep;
    for (size_t i = 0; i < q->ntasks; i++) lm_idmap_remove(seen, q->tasks[i].id);
    keep = q->nobjs;
    for (size_t i = q->nobjs; i-- > 0;) {
        lm_obj_record *o = &q->objs[i];
        if (lm_idmap_get(seen, o->id) != NULL) {
            free((char *)o->error);
            continue;
        }
        lm_idmap_put(seen, o->id, &mark);
        q->objs[--keep] = *o;
    }
    memmove(q->objs, q->objs + keep, (q->nobjs - keep) * sizeof *q->objs);
    q->nobjs -= keep;
    for (size_t i = 0; i < q->nobjs; i++) lm_idmap_remove(seen, q->objs[i].id);
}

static lumen_status write_batch(sched_writer *w, queue *q) {
    lumen_status st = lm_ok();
    for (size_t i = 0; LM_IS_OK(st) && i < q->ntasks; i += BATCH_MAX) {
        size_t n = q->ntasks - i < BATCH_MAX ? q->ntasks - i : BATCH_MAX;
        st = lm_redis_tasks_put(w->redis, q->tasks + i, n);
    }
    for (size_t i = 0; LM_IS_OK(st) && i < q->nobjs; i += BATCH_MAX) {
        size_t n = q->nobjs - i < BATCH_MAX ? q->nobjs - i : BATCH_MAX;
        st = lm_redis_objs_put(w->redis, q->objs + i, n);
    }
    return st;
}

static void timed_wait(pthread_cond_t *c, pthread_mutex_t *m, int64_t ms) {
    struct timespec until = lm_timespec_in(CLOCK_REALTIME, ms);
    pthread_cond_timedwait(c, m, &until);
}

static void *writer_main(void *arg) {
    sched_writer *w = arg;
    queue batch = {0};
    lm_idmap *seen = lm_idmap_new();
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->pending.ntasks == 0 && w->pending.nobjs == 0 && !w->stopping)
            pthread_cond_wait(&w->cond, &w->mu);
        if (w->pending.ntasks == 0 && w->pending.nobjs == 0) break; /* stopping, all written */
        if (!w->stopping && w->pending.ntasks + w->pending.nobjs < BATCH_MAX && !w->flushing)
            timed_wait(&w->cond, &w->mu, COALESCE_MS);
        /* Swap: the hot path keeps queueing while this batch is written. */
        w->signalled_at = w->queued;
        queue tmp = batch;
        batch = w->pending;
        w->pending = tmp;
        uint64_t count = batch.ntasks + batch.nobjs;
        pthread_mutex_unlock(&w->mu);
        keep_latest(&batch, seen);
        lumen_status st = write_batch(w, &batch);
        pthread_mutex_lock(&w->mu);
        if (!LM_IS_OK(st)) {
            /* Keep the batch: it goes back in front of what came since. */
            lm_warn("redis write-behind failed (%s); retrying", st.msg);
            move_all(&batch, &w->pending);
            queue tmp2 = batch;
            batch = w->pending;
            w->pending = tmp2;
            if (w->stopping) break;
            timed_wait(&w->cond, &w->mu, RETRY_MS);
            continue;
        }
        queue_clear(&batch);
        w->written += count;
        pthread_cond_broadcast(&w->drained);
    }
    pthread_mutex_unlock(&w->mu);
    queue_free(&batch);
    lm_idmap_free(seen);
    return NULL;
}

sched_writer *sched_writer_new(lm_redis *r) {
    sched_writer *w = calloc(1, sizeof *w);
    w->redis = r;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
    pthread_cond_init(&w->drained, NULL);
    pthread_create(&w->thread, NULL, writer_main, w);
    return w;
}

bool sched_writer_flush(sched_writer *w, int64_t timeout_ms) {
    pthread_mutex_lock(&w->mu);
    uint64_t target = w->queued;
    w->flushing++;
    pthread_cond_signal(&w->cond);
    uint64_t deadline = lm_mono_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    while (w->written < target) {
        uint64_t now = lm_mono_ms();
        if (now >= deadline) break;
        timed_wait(&w->drained, &w->mu, (int64_t)(deadline - now));
    }
    bool done = w->written >= target;
    w->flushing--;
    pthread_mutex_unlock(&w->mu);
    return done;
}

void sched_writer_free(sched_writer *w) {
    if (w == NULL) return;
    sched_writer_flush(w, 2000);
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    queue_free(&w->pending);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cond);
    pthread_cond_destroy(&w->drained);
    free(w);
}

/* writer.c - see writer.h. */
#include "writer.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "idmap.h"
#include "input_limits.h"
#include "log.h"
#include "process.h"
#include "redis_state.h"
#include "vec.h"

#define BATCH_MAX 1024
#define RETRY_MS 200
/* Records wait this long for company before a batch is written: one Redis
 * round trip then carries a few milliseconds of work instead of one record. */
#define COALESCE_MS 2
/* Bytes of task logs one round trip carries, and the most held in all. */
#define LOG_BATCH_BYTES (4u << 20)
#define LOGS_HELD_MAX (64u << 20)

/* A job that ended: its record finished and its objects' records erased,
 * after every record queued before it. */
typedef struct job_end {
    lm_id id;
    uint64_t tasks;
} job_end;

/* A write about the cluster rather than a task: rare, kept in order. */
typedef enum cluster_op_kind { OP_NODE_UP, OP_NODE_BEAT, OP_NODE_DEAD, OP_JOB_START, OP_EVENT } cluster_op_kind;

typedef struct cluster_op {
    cluster_op_kind kind;
    lm_node_record node; /* NODE_UP, NODE_BEAT (its addr owned); DEAD, JOB_START, EVENT: node.id only */
    char *type, *detail; /* EVENT */
    bool detached;       /* JOB_START */
} cluster_op;

typedef struct queue {
    cluster_op *ops;
    size_t nops, cap_ops;
    lm_task_record *tasks;
    size_t ntasks, cap_tasks;
    lm_obj_record *objs;
    size_t nobjs, cap_objs;
    lm_actor_record *actors;
    size_t nactors, cap_actors;
    job_end *jobs;
    size_t njobs, cap_jobs;
    lm_task_log *logs;
    size_t nlogs, cap_logs;
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
    uint64_t log_bytes;       /* of the logs queued or being written */
    uint64_t logs_dropped;
    pthread_mutex_t tl_mu;    /* the timeline: the writer thread and readers only */
    sched_tick timeline[SCHED_TIMELINE_SECS]; /* by second % SCHED_TIMELINE_SECS */
};

static char *dup_str(const char *s) { return s ? strdup(s) : NULL; }

/* Appends a record whose strings the queue owns from now on. */
static void push_task(queue *q, const lm_task_record *t) {
    q->tasks = lm_vec_grow_or_die(q->tasks, &q->cap_tasks, q->ntasks + 1, sizeof *q->tasks, 256, "the write-behind queue");
    q->tasks[q->ntasks++] = *t;
}

static void push_obj(queue *q, const lm_obj_record *o) {
    q->objs = lm_vec_grow_or_die(q->objs, &q->cap_objs, q->nobjs + 1, sizeof *q->objs, 256, "the write-behind queue");
    q->objs[q->nobjs++] = *o;
}

static void push_actor(queue *q, const lm_actor_record *a) {
    q->actors = lm_vec_grow_or_die(q->actors, &q->cap_actors, q->nactors + 1, sizeof *q->actors, 16, "the write-behind queue");
    q->actors[q->nactors++] = *a;
}

static void push_job(queue *q, const job_end *j) {
    q->jobs = lm_vec_grow_or_die(q->jobs, &q->cap_jobs, q->njobs + 1, sizeof *q->jobs, 8, "the write-behind queue");
    q->jobs[q->njobs++] = *j;
}

static void push_op(queue *q, const cluster_op *op) {
    q->ops = lm_vec_grow_or_die(q->ops, &q->cap_ops, q->nops + 1, sizeof *q->ops, 16, "the write-behind queue");
    q->ops[q->nops++] = *op;
}

static void push_log(queue *q, const lm_task_log *l) {
    q->logs = lm_vec_grow_or_die(q->logs, &q->cap_logs, q->nlogs + 1, sizeof *q->logs, 64, "the write-behind queue");
    q->logs[q->nlogs++] = *l;
}

static size_t queue_len(const queue *q) {
    return q->nops + q->ntasks + q->nobjs + q->nactors + q->njobs + q->nlogs;
}

/* Moves every record of src to the end of dst. */
static void move_all(queue *dst, queue *src) {
    for (size_t i = 0; i < src->nops; i++) push_op(dst, &src->ops[i]);
    for (size_t i = 0; i < src->ntasks; i++) push_task(dst, &src->tasks[i]);
    for (size_t i = 0; i < src->nobjs; i++) push_obj(dst, &src->objs[i]);
    for (size_t i = 0; i < src->nactors; i++) push_actor(dst, &src->actors[i]);
    for (size_t i = 0; i < src->njobs; i++) push_job(dst, &src->jobs[i]);
    for (size_t i = 0; i < src->nlogs; i++) push_log(dst, &src->logs[i]);
    src->nops = src->ntasks = src->nobjs = src->nactors = src->njobs = src->nlogs = 0;
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

void sched_writer_actor(sched_writer *w, const lm_actor_record *rec) {
    lm_actor_record a = *rec;
    a.class_name = dup_str(rec->class_name);
    a.name = dup_str(rec->name);
    a.error = dup_str(rec->error);
    pthread_mutex_lock(&w->mu);
    push_actor(&w->pending, &a);
    record_queued(w);
    pthread_mutex_unlock(&w->mu);
}

void sched_writer_task_log(sched_writer *w, lm_id task, const void *log, size_t len) {
    lm_tasklog cut = {0};
    lm_tasklog_append(&cut, log, len);
    lm_task_log l = {.id = task};
    l.data = lm_tasklog_take(&cut, &l.len);
    if (len > LM_LIMIT_TASK_LOG_BYTES)
        lm_warn("task %s: a log of %zu bytes cut to %d", lm_id_str(task).s, len, LM_LIMIT_TASK_LOG_BYTES);
    pthread_mutex_lock(&w->mu);
    bool keep = l.data != NULL && w->log_bytes + l.len <= LOGS_HELD_MAX;
    if (keep) {
        w->log_bytes += l.len;
        push_log(&w->pending, &l);
        record_queued(w);
    } else if (l.data != NULL && w->logs_dropped++ % 1000 == 0) {
        lm_warn("task logs held for Redis exceed %u bytes: %" PRIu64 " dropped so far", LOGS_HELD_MAX,
                w->logs_dropped);
    }
    pthread_mutex_unlock(&w->mu);
    if (!keep) free((void *)l.data);
}

static void queue_op(sched_writer *w, cluster_op *op) {
    pthread_mutex_lock(&w->mu);
    push_op(&w->pending, op);
    record_queued(w);
    pthread_mutex_unlock(&w->mu);
}

static void queue_node(sched_writer *w, cluster_op_kind kind, const lm_node_record *rec) {
    cluster_op op = {.kind = kind, .node = *rec};
    op.node.addr = dup_str(rec->addr);
    queue_op(w, &op);
}

void sched_writer_node_up(sched_writer *w, const lm_node_record *rec) { queue_node(w, OP_NODE_UP, rec); }

void sched_writer_node_beat(sched_writer *w, const lm_node_record *rec) { queue_node(w, OP_NODE_BEAT, rec); }

void sched_writer_node_dead(sched_writer *w, lm_id node) {
    cluster_op op = {.kind = OP_NODE_DEAD, .node.id = node};
    queue_op(w, &op);
}

void sched_writer_job_start(sched_writer *w, lm_id job, bool detached) {
    cluster_op op = {.kind = OP_JOB_START, .node.id = job, .detached = detached};
    queue_op(w, &op);
}

void sched_writer_event(sched_writer *w, const char *type, lm_id id, const char *detail) {
    cluster_op op = {.kind = OP_EVENT, .node.id = id, .type = dup_str(type), .detail = dup_str(detail)};
    queue_op(w, &op);
}

void sched_writer_job_end(sched_writer *w, lm_id job, uint64_t tasks) {
    job_end j = {job, tasks};
    pthread_mutex_lock(&w->mu);
    push_job(&w->pending, &j);
    record_queued(w);
    pthread_mutex_unlock(&w->mu);
}

/* Frees the strings a queued record owns. */
static void drop_task(void *rec) {
    lm_task_record *t = rec;
    free((char *)t->fn);
    free((char *)t->error);
}

static void drop_obj(void *rec) { free((char *)((lm_obj_record *)rec)->error); }

static void drop_actor(void *rec) {
    lm_actor_record *a = rec;
    free((char *)a->class_name);
    free((char *)a->name);
    free((char *)a->error);
}

static void drop_log(void *rec) { free((void *)((lm_task_log *)rec)->data); }

static void drop_op(cluster_op *op) {
    free((char *)op->node.addr);
    free(op->type);
    free(op->detail);
}

static void queue_clear(queue *q) {
    for (size_t i = 0; i < q->nops; i++) drop_op(&q->ops[i]);
    for (size_t i = 0; i < q->ntasks; i++) drop_task(&q->tasks[i]);
    for (size_t i = 0; i < q->nobjs; i++) drop_obj(&q->objs[i]);
    for (size_t i = 0; i < q->nactors; i++) drop_actor(&q->actors[i]);
    for (size_t i = 0; i < q->nlogs; i++) drop_log(&q->logs[i]);
    q->nops = q->ntasks = q->nobjs = q->nactors = q->njobs = q->nlogs = 0;
}

static void queue_free(queue *q) {
    queue_clear(q);
    free(q->ops);
    free(q->tasks);
    free(q->objs);
    free(q->actors);
    free(q->jobs);
    free(q->logs);
}

/* Keeps only the last record of each id among n records of `size` bytes
 * (each starts with its lm_id), in order; dropped ones are freed. */
static size_t keep_latest_of(void *recs, size_t n, size_t size, void (*drop)(void *), lm_idmap *seen) {
    static char mark;
    char *base = recs;
    if (n == 0) return 0; /* recs may be NULL */
    size_t keep = n;
    for (size_t i = n; i-- > 0;) {
        char *rec = base + i * size;
        lm_id id;
        memcpy(&id, rec, sizeof id);
        if (lm_idmap_get(seen, id) != NULL) {
            drop(rec);
            continue;
        }
        lm_idmap_put(seen, id, &mark);
        memmove(base + --keep * size, rec, size);
    }
    memmove(base, base + keep * size, (n - keep) * size);
    n -= keep;
    for (size_t i = 0; i < n; i++) {
        lm_id id;
        memcpy(&id, base + i * size, sizeof id);
        lm_idmap_remove(seen, id);
    }
    return n;
}

/* A record that a later one in the same batch supersedes need not be
 * written. Under load a task's PENDING, RUNNING and FINISHED often share
 * one batch. */
static void keep_latest(queue *q, lm_idmap *seen) {
    q->ntasks = keep_latest_of(q->tasks, q->ntasks, sizeof *q->tasks, drop_task, seen);
    q->nobjs = keep_latest_of(q->objs, q->nobjs, sizeof *q->objs, drop_obj, seen);
    q->nactors = keep_latest_of(q->actors, q->nactors, sizeof *q->actors, drop_actor, seen);
    q->nlogs = keep_latest_of(q->logs, q->nlogs, sizeof *q->logs, drop_log, seen);
}

static uint64_t logs_bytes(const queue *q) {
    uint64_t n = 0;
    for (size_t i = 0; i < q->nlogs; i++) n += q->logs[i].len;
    return n;
}

static sched_tick *tick_at(sched_writer *w, uint64_t ms) {
    uint64_t sec = ms / 1000;
    sched_tick *t = &w->timeline[sec % SCHED_TIMELINE_SECS];
    if (t->sec != sec) *t = (sched_tick){.sec = sec};
    return t;
}

/* Every task record is an event (submitted, finished, failed): counted
 * before keep_latest drops the ones a later record supersedes. */
static void timeline_count(sched_writer *w, const queue *q) {
    pthread_mutex_lock(&w->tl_mu);
    for (size_t i = 0; i < q->ntasks; i++) {
        const lm_task_record *t = &q->tasks[i];
        if (t->state == LM_TASK_PENDING) tick_at(w, t->submitted_ms ? t->submitted_ms : lm_wall_ms())->submitted++;
        else if (t->state == LM_TASK_FINISHED) tick_at(w, t->finished_ms)->finished++;
        else if (t->state == LM_TASK_FAILED) tick_at(w, t->finished_ms)->failed++;
    }
    pthread_mutex_unlock(&w->tl_mu);
}

void sched_writer_stats(sched_writer *w, uint64_t *queued, uint64_t *written, sched_tick *timeline) {
    pthread_mutex_lock(&w->mu);
    *queued = w->queued;
    *written = w->written;
    pthread_mutex_unlock(&w->mu);
    uint64_t now = lm_wall_ms() / 1000;
    pthread_mutex_lock(&w->tl_mu);
    for (size_t i = 0; i < SCHED_TIMELINE_SECS; i++) {
        uint64_t sec = now - (SCHED_TIMELINE_SECS - 1) + i;
        const sched_tick *t = &w->timeline[sec % SCHED_TIMELINE_SECS];
        timeline[i] = t->sec == sec ? *t : (sched_tick){.sec = sec};
    }
    pthread_mutex_unlock(&w->tl_mu);
}

static lumen_status write_op(lm_redis *r, const cluster_op *op) {
    lumen_status st = lm_ok();
    switch (op->kind) {
    case OP_NODE_UP:
        return lm_redis_node_register(r, &op->node);
    case OP_NODE_BEAT: /* a record Redis lost (it restarted empty) is written whole again */
        st = lm_redis_node_heartbeat(r, op->node.id, op->node.slots_free, op->node.bytes_used);
        return st.code == LUMEN_NOT_FOUND ? lm_redis_node_register(r, &op->node) : st;
    case OP_NODE_DEAD:
        st = lm_redis_node_mark_dead(r, op->node.id);
        return st.code == LUMEN_NOT_FOUND ? lm_ok() : st;
    case OP_JOB_START:
        st = lm_redis_job_start(r, op->node.id);
        return LM_IS_OK(st) && op->detached ? lm_redis_job_detach(r, op->node.id) : st;
    case OP_EVENT:
        return lm_redis_publish(r, op->type, op->node.id, op->detail);
    }
    return st;
}

static lumen_status write_batch(sched_writer *w, queue *q) {
    lumen_status st = lm_ok();
    /* First, in order: nodes and jobs before the task records that name them. */
    size_t done = 0;
    for (; LM_IS_OK(st) && done < q->nops; done++) st = write_op(w->redis, &q->ops[done]);
    if (!LM_IS_OK(st)) done--;
    for (size_t i = 0; i < done; i++) drop_op(&q->ops[i]); /* not again when the batch is retried */
    if (done > 0) memmove(q->ops, q->ops + done, (q->nops - done) * sizeof *q->ops);
    q->nops -= done;
    if (!LM_IS_OK(st)) return st;
    for (size_t i = 0; LM_IS_OK(st) && i < q->ntasks; i += BATCH_MAX) {
        size_t n = q->ntasks - i < BATCH_MAX ? q->ntasks - i : BATCH_MAX;
        st = lm_redis_tasks_put(w->redis, q->tasks + i, n);
    }
    for (size_t i = 0; LM_IS_OK(st) && i < q->nobjs; i += BATCH_MAX) {
        size_t n = q->nobjs - i < BATCH_MAX ? q->nobjs - i : BATCH_MAX;
        st = lm_redis_objs_put(w->redis, q->objs + i, n);
    }
    if (LM_IS_OK(st) && q->nactors > 0) st = lm_redis_actors_put(w->redis, q->actors, q->nactors);
    for (size_t i = 0, n; LM_IS_OK(st) && i < q->nlogs; i += n) { /* a few MiB per round trip */
        uint64_t bytes = 0;
        for (n = 0; i + n < q->nlogs && n < BATCH_MAX && (n == 0 || bytes < LOG_BATCH_BYTES); n++)
            bytes += q->logs[i + n].len;
        st = lm_redis_task_logs_put(w->redis, q->logs + i, n);
    }
    /* Last: a job's objects are erased after their records landed. Both
     * writes set values, so a batch that failed halfway is simply redone. */
    for (size_t i = 0; LM_IS_OK(st) && i < q->njobs; i++) {
        st = lm_redis_job_finish(w->redis, q->jobs[i].id, q->jobs[i].tasks);
        if (LM_IS_OK(st)) st = lm_redis_job_release(w->redis, q->jobs[i].id);
    }
    return st;
}

static void timed_wait(pthread_cond_t *c, pthread_mutex_t *m, int64_t ms) {
    struct timespec until = lm_timespec_in(CLOCK_REALTIME, ms);
    pthread_cond_timedwait(c, m, &until);
}

static void *writer_main(void *arg) {
    lm_thread_name("redis-writer");
    sched_writer *w = arg;
    queue batch = {0};
    lm_idmap *seen = lm_idmap_new();
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (queue_len(&w->pending) == 0 && !w->stopping) pthread_cond_wait(&w->cond, &w->mu);
        if (queue_len(&w->pending) == 0) break; /* stopping, all written */
        if (!w->stopping && queue_len(&w->pending) < BATCH_MAX && !w->flushing)
            timed_wait(&w->cond, &w->mu, COALESCE_MS);
        /* Swap: the hot path keeps queueing while this batch is written. */
        w->signalled_at = w->queued;
        queue tmp = batch;
        batch = w->pending;
        w->pending = tmp;
        uint64_t count = queue_len(&batch), held = logs_bytes(&batch);
        pthread_mutex_unlock(&w->mu);
        timeline_count(w, &batch);
        keep_latest(&batch, seen);
        uint64_t kept = logs_bytes(&batch);
        lumen_status st = write_batch(w, &batch);
        pthread_mutex_lock(&w->mu);
        w->log_bytes -= held - kept; /* logs a later one of the same task replaced */
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
        w->log_bytes -= kept;
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
    pthread_mutex_init(&w->tl_mu, NULL);
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
    pthread_mutex_destroy(&w->tl_mu);
    free(w);
}

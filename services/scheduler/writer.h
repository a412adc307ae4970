/*
 * writer.h - the scheduler's write-behind to Redis. Every record (nodes,
 * jobs, tasks, objects, actors, logs, events) is queued by the hot path (no Redis round trip per task) and written by
 * one thread in pipelined batches; if Redis is down the batch is kept and
 * retried, so nothing queued is dropped while the scheduler lives.
 */
#ifndef LM_SCHED_WRITER_H
#define LM_SCHED_WRITER_H

#include "records.h"
#include "scheduler.h"

typedef struct lm_redis lm_redis;

typedef struct sched_writer sched_writer;

/* Takes no ownership of r, which must outlive the writer. */
sched_writer *sched_writer_new(lm_redis *r);

/* Queues copies of the records (strings are copied). */
void sched_writer_task(sched_writer *w, const lm_task_record *rec);
void sched_writer_obj(sched_writer *w, const lm_obj_record *rec);
void sched_writer_actor(sched_writer *w, const lm_actor_record *rec);

/* Queues what a task wrote (copied, cut to LM_LIMIT_TASK_LOG_BYTES) for
 * <p>task:<id>:log. Logs queued past a bound (Redis down a long time) are
 * dropped with a warning rather than held. */
void sched_writer_task_log(sched_writer *w, lm_id task, const void *log, size_t len);

/* Queues a job's end: its record is finished and its objects' records are
 * erased once everything queued before is written (never on the caller's
 * thread, so a Redis that is down holds up nobody). */
void sched_writer_job_end(sched_writer *w, lm_id job, uint64_t tasks);

/* Cluster records, written behind in the order queued (before the task
 * records queued with them): a node's registration (state ALIVE), its
 * heartbeat (a record Redis lost is written whole again), its death, a
 * job's start, and an event on <p>events. */
void sched_writer_node_up(sched_writer *w, const lm_node_record *rec);
void sched_writer_node_beat(sched_writer *w, const lm_node_record *rec);
void sched_writer_node_dead(sched_writer *w, lm_id node);
void sched_writer_job_start(sched_writer *w, lm_id job, bool detached);
void sched_writer_event(sched_writer *w, const char *type, lm_id id, const char *detail);

/* Waits (up to timeout_ms) until everything queued so far is written. */
bool sched_writer_flush(sched_writer *w, int64_t timeout_ms);

/* What the dashboard shows of it: records queued and written so far, and
 * per second (wall clock, the last SCHED_TIMELINE_SECS, oldest first) the
 * tasks submitted, finished and failed as their records passed by. */
void sched_writer_stats(sched_writer *w, uint64_t *queued, uint64_t *written, sched_tick *timeline);

/* Writes what is queued (bounded wait), then stops. NULL-safe. */
void sched_writer_free(sched_writer *w);

#endif

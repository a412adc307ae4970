/*
 * scheduler.h - lumen-scheduler's core: admits tasks, tracks the objects they
 * make and need, places ready tasks on workers, answers waits, watches node
 * heartbeats. All state lives behind one mutex; RPC handlers and the
 * monitor thread take it, do bounded work, and answer calls after letting go.
 */
#ifndef LM_SCHEDULER_H
#define LM_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "id.h"

typedef struct lm_rpc_server lm_rpc_server;

typedef struct scheduler scheduler;

/* Connects to Redis (retrying in the background if it is down) and starts
 * the monitor and write-behind threads. cfg must outlive the scheduler. */
lumen_status scheduler_new(const lm_config *cfg, scheduler **out);

/* Adds lumen.Scheduler to a server (before it starts). */
lumen_status scheduler_add_service(scheduler *s, lm_rpc_server *srv);

/* ---- what the dashboard and /metrics read from the scheduler's memory ---- */

/* Dispatch latency: a task's time from the ready queue to its RunTasks,
 * counted in buckets with these upper bounds (microseconds), then +Inf. */
#define SCHED_LATENCY_BUCKETS 14
extern const uint64_t sched_latency_bounds_us[SCHED_LATENCY_BUCKETS];
typedef struct sched_latency {
    uint64_t buckets[SCHED_LATENCY_BUCKETS + 1]; /* not cumulative; the last is +Inf */
    uint64_t count, sum_us;
} sched_latency;

typedef struct sched_node_stats {
    lm_id id;
    bool is_worker, alive;
    uint32_t slots;
    uint32_t running; /* tasks sent and not reported done */
    uint64_t bytes_used, memory_limit;
} sched_node_stats;

/* Tasks finished and failed in one second (write-behind's view, wall clock). */
#define SCHED_TIMELINE_SECS 120
typedef struct sched_tick {
    uint64_t sec; /* since the epoch; 0: no record */
    uint32_t submitted, finished, failed;
} sched_tick;

typedef struct sched_stats {
    size_t queued; /* ready tasks waiting for a slot */
    size_t tasks;  /* tasks of jobs still running, in memory */
    size_t jobs;
    sched_latency dispatch;
    sched_node_stats *nodes; /* every node known, dead ones too */
    size_t nnodes;
    sched_tick timeline[SCHED_TIMELINE_SECS]; /* oldest first, ending with the current second */
    uint64_t writer_queued, writer_written;   /* task, object, actor, job records */
} sched_stats;

/* A consistent copy (taken under the scheduler's lock, briefly). */
void scheduler_stats(scheduler *s, sched_stats *out);
void sched_stats_fini(sched_stats *st);

/* The scheduler is going away: from now on a node's watch that ends is not
 * taken as the node's death. Call before shutting the RPC server down. */
void scheduler_stop(scheduler *s);

/* Stops the threads and frees everything. Call after the RPC server is shut
 * down. NULL-safe. */
void scheduler_free(scheduler *s);

#endif

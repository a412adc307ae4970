/*
 * scheduler.h - lumen-scheduler's core: admits tasks, tracks the objects they
 * make and need, places ready tasks on workers, answers waits, watches node
 * heartbeats. All state lives behind one mutex; RPC handlers and the
 * monitor thread take it, do bounded work, and answer calls after letting go.
 */
#ifndef LM_SCHEDULER_H
#define LM_SCHEDULER_H

#include "config.h"
#include "rpc.h"

typedef struct scheduler scheduler;

/* Connects to Redis (retrying in the background if it is down) and starts
 * the monitor and write-behind threads. cfg must outlive the scheduler. */
lumen_status scheduler_new(const lm_config *cfg, scheduler **out);

/* Adds lumen.Scheduler to a server (before it starts). */
lumen_status scheduler_add_service(scheduler *s, lm_rpc_server *srv);

/* The scheduler is going away: from now on a node's watch that ends is not
 * taken as the node's death. Call before shutting the RPC server down. */
void scheduler_stop(scheduler *s);

/* Stops the threads and frees everything. Call after the RPC server is shut
 * down. NULL-safe. */
void scheduler_free(scheduler *s);

#endif

/*
 * worker.h - lumen-worker: serves lumen.Worker and lumen.Health, runs the
 * tasks the scheduler places on it in executor processes, stores or inlines
 * their results and reports them with TaskDone.
 *
 * Threads: the RPC server's threads only queue tasks (RunTasks answers at
 * once); one thread per slot takes a task, fetches its ref arguments and
 * uploaded library, runs it in the executor pool and stores its result; one
 * reporter thread batches finished tasks into TaskDone calls (everything
 * that finished while a call was in flight goes in the next one; failures
 * are retried with backoff); one join thread finds the object store's node
 * id and then starts the node agent (registration + heartbeats).
 */
#ifndef LM_WORKER_H
#define LM_WORKER_H

#include "config.h"
#include "status.h"

typedef struct lm_worker lm_worker;

/* Starts serving on cfg->worker.listen. cfg must outlive the worker. */
lumen_status lm_worker_start(const lm_config *cfg, lm_worker **out);

/* "host:port" the worker advertises. */
const char *lm_worker_addr(const lm_worker *w);

/* Graceful stop: stops accepting, kills the executors (running and queued
 * tasks are reported as WORKER_DIED), flushes reports briefly, frees
 * everything. NULL-safe. */
void lm_worker_free(lm_worker *w);

#endif

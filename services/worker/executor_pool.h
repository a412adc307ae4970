/*
 * executor_pool.h - a worker's executor processes: one lumen-executor per
 * slot, spawned with posix_spawn, each running one task at a time.
 *
 * lm_exec_pool_run is synchronous: the calling thread takes an idle
 * executor (waiting for one), sends the task, and waits in poll() on the
 * executor's socket until the reply arrives, the executor dies, or the
 * task's time limit passes (then SIGKILL). A dead executor becomes the
 * task's error ("f crashed: signal 11 (Segmentation fault)") and is
 * respawned at once. Any number of threads may run tasks at the same time;
 * at most `slots` run at once.
 *
 * Task logs: an executor's stdout and stderr are one pipe per process, read
 * while its task runs (in the same poll() as its socket, so a task that
 * writes nothing costs nothing) into the task's log, bounded (tasklog.h).
 * The executor flushes stdio after each task and before it replies, so
 * everything the task and its threads wrote by then is in the pipe when the
 * reply is; after a crash, a time limit or a kill, what the process wrote
 * before it died is read too. Output written between tasks (a thread an
 * earlier task left running) is no task's: it goes to the worker's log.
 */
#ifndef LM_EXECUTOR_POOL_H
#define LM_EXECUTOR_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "id.h"
#include "shmbuf.h"
#include "status.h"

typedef struct lm_exec_pool lm_exec_pool;

typedef struct lm_exec_pool_opts {
    const char *executor_path; /* the lumen-executor binary */
    const char *library_path;  /* colon-separated directories of .so files; may be "" */
    int slots;                 /* executors, >= 1 */
    const char *const *env;    /* NULL, or NULL-terminated "NAME=value" entries added to the
                                  executors' environment (copied) */
} lm_exec_pool_opts;

/* What a request runs in the executor. */
typedef enum lm_exec_kind {
    LM_EXEC_TASK,       /* the function `function` */
    LM_EXEC_ACTOR_NEW,  /* the constructor of class `function`: the executor then hosts the actor */
    LM_EXEC_ACTOR_CALL, /* method `function` of the actor the executor hosts */
} lm_exec_kind;

typedef struct lm_exec_task {
    lm_id task_id;
    lm_id job_id;
    lm_exec_kind kind;
    const char *function;
    const lumen_bytes *args; /* read during the call only */
    size_t nargs;
    /* NULL, or the caller's buffer args[] lie in from its start, each
     * followed by a NUL byte (so the executor can hand functions C strings):
     * big arguments then go to the executor as its memfd, without a copy.
     * Without it they are copied into a buffer of the executor's. */
    const lm_shmbuf *args_buf;
    uint32_t attempt;
    const char *const *libraries; /* .so paths to load first (uploaded libraries) */
    size_t nlibraries;
    int64_t timeout_ms;    /* 0: none */
    uint64_t memory_limit; /* bytes the task may allocate; 0: none */
} lm_exec_task;

/* A task's outcome: status OK and the result bytes, or the task's error.
 * A big result is a view of the executor's own (reused) result memfd: that
 * executor runs no other task until lm_exec_result_free, so free results
 * promptly. */
typedef struct lm_exec_result {
    lumen_status status;
    const uint8_t *data; /* valid until lm_exec_result_free */
    size_t len;
    void *owned_;        /* internal: malloc'd copy or mapping */
    size_t mapped_len_;
    lm_exec_pool *pool_; /* internal: with held_, the executor the mapping holds */
    void *held_;
    char *log;           /* what the task wrote to stdout and stderr (NULL: nothing), */
    size_t log_len;      /* at most LM_TASK_LOG_MAX bytes; freed with the result */
    bool crashed;        /* the executor died under it (a signal, an unexpected exit),
                            not the function's own failure nor a limit */
} lm_exec_result;

/* Spawns the executors. Strings in opts are copied. */
lumen_status lm_exec_pool_new(const lm_exec_pool_opts *opts, lm_exec_pool **out);

/* Runs one task (see above). Always fills *out; free it with lm_exec_result_free. */
void lm_exec_pool_run(lm_exec_pool *pool, const lm_exec_task *task, lm_exec_result *out);

void lm_exec_result_free(lm_exec_result *r);

/* Hands r's log to the caller (free it), leaving r without one. */
char *lm_exec_result_take_log(lm_exec_result *r, size_t *len);

/* Kills the executor running task_id (its run ends with CANCELLED);
 * false when no executor runs it. */
bool lm_exec_pool_cancel(lm_exec_pool *pool, lm_id task_id);

/* Executors busy now. */
unsigned lm_exec_pool_busy(lm_exec_pool *pool);

/* Executor processes started so far (the initial ones plus respawns). */
unsigned lm_exec_pool_spawns(lm_exec_pool *pool);

/* Kills the executors: running tasks end with WORKER_DIED, later runs fail
 * at once. Idempotent. */
void lm_exec_pool_shutdown(lm_exec_pool *pool);

/* Shuts down, reaps every executor and frees. No run may be in progress
 * and no result may be unfreed. NULL-safe. */
void lm_exec_pool_free(lm_exec_pool *pool);

#endif

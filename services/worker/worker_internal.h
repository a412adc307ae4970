/*
 * worker_internal.h - the worker's state, shared by its modules: worker.c
 * (the service: the task queue, slots, joining), reporter.c (TaskDone),
 * run.c (what running a task or call takes) and actor_host.c (actors).
 * Not an interface for anything outside services/worker.
 */
#ifndef LM_WORKER_INTERNAL_H
#define LM_WORKER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common.pb-c.h"
#include "config.h"
#include "executor_pool.h"
#include "health.h"
#include "id.h"
#include "node_agent.h"
#include "rpc.h"
#include "shmbuf.h"
#include "status.h"
#include "worker.h"

/* A task waiting for a slot. */
typedef struct queued {
    Lumen__TaskSpec *spec; /* our own unpacked copy */
    lm_id id;
    struct queued *next;
} queued;

/* A finished task waiting to be reported. */
typedef struct report {
    lm_id task;
    lumen_status status;
    uint8_t *inline_data; /* NULL unless the result travels inline */
    size_t inline_len;
    bool stored;          /* the result is in our object store ... */
    lm_id store;          /* ... this incarnation of it */
    bool crashed;         /* the process running it died: a system failure */
    uint64_t size;
    lm_id job;   /* the result's job */
    lm_id actor; /* actor method calls (not placed by the scheduler): the actor that made it */
    char *log;      /* what the task wrote (NULL: nothing); for the scheduler only, */
    size_t log_len; /* never in a caller's ActorCallReply */
    lm_id created;        /* actor creations: the actor now hosted here ... */
    uint32_t incarnation; /* ... and which incarnation of it */
    struct report *next;
} report;

/* An uploaded library in run_dir/libs. */
typedef struct library {
    lm_id id;
    char *path;
    bool ready, fetching;
    struct library *next;
} library;

typedef struct slot {
    lm_worker *w;
    pthread_t thread;
    bool active;    /* preparing or running a task */
    bool cancelled; /* its task was cancelled while its arguments were fetched */
    lm_id task, job;
    lm_shmbuf args; /* its tasks' arguments, back to back; reused task after task */
} slot;

#define CANCELLED_EARLY 64

struct lm_worker {
    const lm_config *cfg;
    const lm_worker_config *wc;
    lm_id node_id, objstore_id; /* objstore_id: the store's incarnation when we last heard of it */
    /* The scheduler incarnation we registered with: calls of an older one
     * are refused (it was replaced), a newer one's are taken. */
    atomic_uint_fast64_t epoch;
    char addr[300];
    char *run_dir;
    bool own_run_dir; /* made by us: removed at stop */
    lm_health health;
    lm_rpc_server *srv;
    lm_rpc_client *cli;
    lm_exec_pool *pool;
    lm_node_agent *agent;
    lm_rpc_method task_done;
    atomic_uint_fast64_t inline_max;
    int nslots;

    pthread_mutex_t mu; /* everything below */
    pthread_cond_t work; /* a task was queued, or stopping */
    pthread_cond_t lib_cond;
    pthread_cond_t report_cond;
    bool stopping;
    queued *head, *tail;
    unsigned queued_count;
    /* Tasks cancelled before their RunTasks came (the two calls race): they
     * are dropped when it comes. The newest CANCELLED_EARLY, a ring. */
    lm_id cancelled_early[CANCELLED_EARLY];
    size_t cancelled_early_next, cancelled_early_n;
    slot *slots;
    library *libs;
    report *reports, *reports_tail; /* waiting to be sent */
    bool report_in_flight;
    int64_t report_due_ms; /* monotonic: when the queued reports should go (0: now) */
    bool reporter_stop;
    int64_t retry_at_ms;
    unsigned backoff_ms;

    pthread_t reporter, joiner;
    bool reporter_started, joiner_started;

    /* Actors (actor_host.c), under mu. */
    char *executor_path;          /* the lumen-executor binary */
    char **exec_env;              /* what executors get in their environment */
    struct hosted_actor *actors;  /* alive, stopping or dying */
    unsigned actor_threads;       /* running; lm_worker_free waits for 0 */
    pthread_cond_t actors_gone;
    lm_rpc_method actor_died, wait_objects;
};

/* Retries back off from BACKOFF_MIN_MS, doubling up to BACKOFF_MAX_MS. */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000

/* ---- worker.c ---- */

/* Waits on cond until woken or until the monotonic time `until` (0: none). */
void worker_wait_until(pthread_cond_t *cond, pthread_mutex_t *mu, int64_t until);
/* Pauses a retry loop for *backoff_ms (then doubles it, up to
 * BACKOFF_MAX_MS); false when the worker is stopping: give up. */
bool worker_retry_pause(lm_worker *w, unsigned *backoff_ms);

/* The spec's job id (zero when malformed). */
static inline lm_id worker_spec_job(const Lumen__TaskSpec *spec) {
    lm_id job = {{0}};
    lm_id_from_bytes(spec->job_id.data, spec->job_id.len, &job);
    return job;
}

/* ---- reporter.c: reports to the scheduler ---- */

/* TaskResult messages viewing n reports (valid while they live), for a
 * TaskDone to the scheduler or an ActorCallReply to a caller. */
typedef struct result_msgs {
    Lumen__TaskResult *results;
    Lumen__TaskResult **ptrs; /* the messages' list */
    Lumen__Status *statuses;
    ProtobufCBinaryData *inl;
    uint64_t *sizes;
} result_msgs;

/* False when out of memory (nothing to free then). */
bool worker_results_build(lm_worker *w, report *const *reports, size_t n, result_msgs *m);
void worker_results_free(result_msgs *m);

/* Queues a finished task or call for the next TaskDone. Takes r. */
void worker_report_push(lm_worker *w, report *r);
/* Reports task finished with st (no result). */
void worker_report_status(lm_worker *w, lm_id task, lumen_status st);
/* Frees a list of reports (linked by next). */
void worker_report_free(report *r);
/* The reporter thread: sends what is queued until stopped, then flushes. */
void *worker_reporter_main(void *arg);

/* ---- run.c: running a task or an actor call ---- */

/* Puts a spec's arguments back to back into buf (refs fetched from their
 * object store, inline ones copied) and points args[] at them. */
lumen_status worker_fetch_args(lm_worker *w, lm_shmbuf *buf, const Lumen__TaskSpec *spec, lumen_bytes *args);

/* The local path of the spec's uploaded library (fetched once); *path is
 * the caller's. */
lumen_status worker_ensure_library(lm_worker *w, const Lumen__TaskSpec *spec, char **path);

/* Keeps a successful result: inline in r (small) or in our object store. */
lumen_status worker_keep_result(lm_worker *w, const Lumen__TaskSpec *spec, lm_id task, const lm_exec_result *res,
                                report *r);

/* The end of a run: its log goes to r, a successful result is kept
 * (worker_keep_result), res is freed. Returns the run's status. */
lumen_status worker_finish_run(lm_worker *w, const Lumen__TaskSpec *spec, lm_id task, lm_exec_result *res,
                               report *r);

/* The spec's run time and memory limits, the worker's defaults filled in. */
int64_t worker_timeout_ms(const lm_worker *w, const Lumen__TaskSpec *spec);
uint64_t worker_memory_limit(const lm_worker *w, const Lumen__TaskSpec *spec);

/* ---- worker.c: the service ---- */

/* Whether a call from scheduler incarnation `epoch` may be served (0: a
 * caller that does not say); a newer one is adopted. */
bool worker_epoch_ok(lm_worker *w, uint64_t epoch);

/* ---- actor_host.c ---- */

/* Runs an actor's constructor (a RunTasks spec with actor_id set and no
 * method) in a new executor of its own; on success the actor is hosted
 * here until stopped or dead. Fills r (the creation task's report). */
void actor_host_create(lm_worker *w, const Lumen__TaskSpec *spec, lm_id task, report *r);

/* lumen.Worker handlers. */
void actor_host_call(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx);
void actor_host_stop(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx);

/* Stops every actor (pending calls fail) and waits for their threads. */
void actor_host_stop_all(lm_worker *w);

/* Actors hosted now. mu held. */
unsigned actor_host_count(const lm_worker *w);

/* The actors hosted now and their incarnations (arrays malloc'd; *n
 * entries). mu held. */
void actor_host_list(const lm_worker *w, lm_id **ids, uint32_t **incarnations, size_t *n);

#endif

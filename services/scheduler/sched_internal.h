/*
 * sched_internal.h - the scheduler's state, shared by its modules:
 * scheduler.c (nodes, tasks, objects, waits, jobs) and actors.c (actor
 * lifecycle). Everything here is guarded by scheduler.mu unless it says
 * otherwise. Not an interface for anything outside services/scheduler.
 */
#ifndef LM_SCHED_INTERNAL_H
#define LM_SCHED_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "id.h"
#include "idmap.h"
#include "redis_state.h"
#include "resolver.h"
#include "rpc.h"
#include "scheduler.h"
#include "scheduler.pb-c.h"
#include "writer.h"

#define DISPATCH_DEPTH(slots) ((slots) * 2 + 4) /* tasks queued per worker beyond running */
#define ENDED_JOBS_MAX 4096 /* ended jobs remembered, so their clients hear so */

typedef struct id_vec {
    lm_id *ids;
    size_t n, cap;
} id_vec;

typedef struct ptr_vec {
    void **items;
    size_t n, cap;
} ptr_vec;

typedef enum { OBJ_PENDING, OBJ_READY, OBJ_FAILED } obj_state;
/* HELD: it could not read an argument and waits a moment (task_hold).
 * RESOLVING: sent again after a restart, it waits to hear whether an object
 * store still holds its result (then it is done) before it may run. */
typedef enum { TASK_WAITING, TASK_READY, TASK_RUNNING, TASK_HELD, TASK_RESOLVING, TASK_DONE } task_phase;

typedef struct snode {
    lm_id id;
    bool is_worker;
    char *addr;
    uint32_t slots;
    uint32_t slots_free; /* as its last heartbeat said */
    int in_flight; /* tasks sent to it and not reported done */
    bool alive;
    uint64_t last_beat_ms; /* monotonic: a step of the wall clock kills no node */
    char *objstore_addr; /* workers: the store they keep results in (its id changes when it restarts) */
    uint64_t memory_limit, bytes_used;
    unsigned actors; /* hosted (placed and not dead), for spreading them */
    struct node_watch *watch; /* its open WatchNode call, if any */
} snode;

typedef struct waiter waiter;

typedef struct sobj {
    lm_id id, job;
    obj_state state;
    uint64_t size;
    bool is_inline;
    uint8_t *data; /* inline value */
    char *location; /* object store address when not inline */
    char **replicas; /* a put's other copies (addresses), read when its store dies */
    lm_id *replica_stores; /* the incarnation that took each copy (zero: not known) */
    size_t nreplicas;
    lm_id store;
    lumen_status *error;
    lm_id producer; /* zero for objects the scheduler did not make */
    /* An argument or a wait nobody has made or reported yet: looked up in
     * the stores' directory (resolver.h) until found, made by a task sent
     * later, or timed out (scheduler.unknown_ref_timeout_ms). */
    bool unresolved;
    bool direct;          /* an actor call's result: its worker reports it, it never times out */
    uint64_t unresolved_since_ms; /* monotonic */
    id_vec dependents; /* tasks waiting for it */
    ptr_vec waiters;
    int pins;          /* tasks not finished that take it */
    bool freed;        /* the client let go: drop once unpinned */
} sobj;

typedef struct stask {
    lm_id id, job;
    Lumen__TaskSpec *spec;
    int unresolved;
    task_phase phase;
    lm_id worker;
    uint32_t attempts, max_retries;
    uint64_t submitted_ms;
    uint64_t ready_us; /* monotonic, when it joined the ready queue (dispatch latency) */
    uint64_t held_until_ms; /* HELD: monotonic */
    bool orphan; /* its job ended while it ran */
    bool retry_on_error; /* its own failures are retried too (lumen_call_opts) */
    struct stask *next;
} stask;

/* A task a worker said it holds, placed by an earlier incarnation and not
 * sent again yet: where it runs, and for which job (zero: not told). */
typedef struct sclaim {
    lm_id node, job;
} sclaim;

typedef struct sjob {
    lm_id id;
    id_vec tasks, objs, actors;
    lm_idmap *freed_early; /* ids the client freed before they existed here */
    bool started;          /* its client said StartJob to this scheduler */
    bool detached;         /* outlives its client: no lease, ends by EndJob only */
    struct job_lease *lease; /* the client's open WatchJob call, if any (jobs.c) */
    /* Monotonic ms since when no client holds the job (0: one does, or it
     * is detached): past scheduler.job_grace_ms it ends as if closed. */
    uint64_t unheld_since_ms;
} sjob;

struct waiter {
    scheduler *s;
    lm_rpc_call *call;
    lm_id *ids;
    size_t n;
    size_t need, have;
    bool done;
    bool park_unknown;  /* ids not seen are waited for, not answered NOT_FOUND */
    lm_id job;          /* the caller's, if it said (zero: none) */
    uint64_t until_ms;  /* monotonic: answered with the states as they are then */
    size_t heap_idx;    /* in scheduler.wait_heap; SIZE_MAX: not there */
    atomic_int refs; /* the call's (until it is answered), plus one per object list it is on */
};

/* A call to answer once `mu` is released. */
typedef struct answer {
    lm_rpc_call *call;
    ProtobufCMessage *reply; /* NULL: fail with st */
    void (*reply_free)(ProtobufCMessage *);
    lumen_status st;
    /* NULL, or run once the answer is sent: the call's on_cancel (which
     * may run until then) can use what this releases. */
    void (*after)(void *arg);
    void *after_arg;
} answer;

typedef struct outbox {
    answer *items;
    size_t n, cap;
} outbox;

struct scheduler {
    const lm_config *cfg;
    pthread_mutex_t mu;
    lm_idmap *nodes, *tasks, *objs, *jobs;
    lm_idmap *actors;              /* sactor* by actor id (actors.c) */
    lm_idmap *actors_reported;     /* made but unknown here, by actor id (actors.c) */
    ptr_vec actor_waits;           /* GetActor calls waiting (actors.c) */
    lm_idmap *unknown_waiters; /* ptr_vec of waiters by object id not seen yet */
    ptr_vec wait_heap;         /* waiters by until_ms, a min-heap (each holds a reference) */
    ptr_vec node_list; /* every snode, for placement and lookups by address */
    stask *ready_head, *ready_tail;
    id_vec held; /* HELD tasks (some may have left that phase) */
    size_t nready;              /* tasks in the ready queue (metrics) */
    sched_latency dispatch_lat; /* ready queue to RunTasks (metrics) */

    lm_redis *redis;
    sched_writer *writer;
    sched_resolver *resolver;
    id_vec unresolved;          /* ids of unresolved objects (some may have settled since) */

    /* This incarnation (recovery.c): its epoch, and the recovery window
     * after a start, while the nodes of the previous incarnation register
     * again: nothing is placed until they all have, or until
     * heartbeat_timeout_ms passed, so a task still running on one of them
     * is not placed twice. */
    uint64_t epoch;
    bool recovering;
    uint64_t recovery_ends_ms; /* monotonic */
    lm_idmap *expected;        /* nodes alive before the start, not registered again yet */
    lm_idmap *claims;          /* task id -> sclaim: tasks a node holds that were not sent again yet */

    lm_idmap *ended_jobs;      /* the last ENDED_JOBS_MAX ended jobs (jobs.c) */
    lm_id ended_ring[ENDED_JOBS_MAX];
    size_t ended_next;
    lm_rpc_client *rpc;
    lm_rpc_method run_tasks, release_job, delete_objects, stop_actor, cancel_task;
    uint64_t job_grace_ms, unknown_ref_timeout_ms;

    pthread_t monitor;
    bool monitor_started;
    pthread_cond_t monitor_cond; /* CLOCK_MONOTONIC */
    bool stopping;
};

/* ---- scheduler.c ---- */

void sched_id_push(id_vec *v, lm_id id);
void sched_ptr_push(ptr_vec *v, void *p);
void sched_outbox_add(outbox *o, answer a);
/* Shorthands: answer with a heap reply (freed with reply_free once sent), or fail. */
void sched_outbox_reply(outbox *o, lm_rpc_call *call, ProtobufCMessage *reply, void (*reply_free)(ProtobufCMessage *));
void sched_outbox_fail(outbox *o, lm_rpc_call *call, lumen_status st);
/* Answers everything collected; call without `mu`. */
void sched_outbox_send(outbox *o);
/* Sends req to addr (a method whose answer nothing waits for); a failure is
 * logged as "<what> failed: <why>". what must outlive the call (a literal).
 * Calls to workers carry the epoch in their request (set by the caller). */
void sched_send_and_forget(scheduler *s, const char *addr, lm_rpc_method m, const ProtobufCMessage *req,
                           const char *what);

static inline bool id_field(ProtobufCBinaryData b, lm_id *out) { return lm_id_from_bytes(b.data, b.len, out); }

static inline ProtobufCBinaryData id_bytes(const lm_id *id) {
    ProtobufCBinaryData b = {LM_ID_BYTES, (uint8_t *)id->bytes};
    return b;
}

static inline const char *hex(lm_id id, char buf[LM_ID_HEX_LEN + 1]) { return lm_id_to_hex(id, buf); }

/* Adds a submitted task (taking spec); its failures go to its result ref.
 * resubmit: its client sent it before we (re)started; a result an object
 * store still holds (Redis knows where) counts as made. */
lumen_status sched_admit(scheduler *s, Lumen__TaskSpec *spec, bool resubmit, outbox *out);
/* Places every ready task it can (none while recovering). */
void sched_dispatch(scheduler *s, outbox *out);
/* The job, made if new (then unheld: a job nobody claims ends after the grace). */
sjob *sched_job_get(scheduler *s, lm_id id);
/* The node at addr, a live one first (a restarted node has a new id). */
snode *sched_node_by_addr(scheduler *s, const char *addr);
/* A task that could not finish goes back in line, or fails once it used
 * its retries (with code, and why). */
void sched_task_retry(scheduler *s, stask *t, lumen_code code, const char *why, outbox *out);
/* Unlinks a READY task from the ready queue. */
void sched_ready_remove(scheduler *s, stask *t);
/* A task runs on node w (placed here, or found there after a restart). */
void sched_task_running_on(scheduler *s, stask *t, snode *w);
/* Frees a task (its spec too); it must be out of every queue. */
void sched_task_free(stask *t);
/* Objects of the stores' directory that the resolver answered for. */
void sched_on_resolved(void *arg, lm_id obj, const lm_id *stores, size_t n);
/* Frees what a job holds here (not the job's record). */
void sched_job_free(sjob *j);
/* Forgets a job's tasks and objects and stops its actors and running tasks
 * (its stores are told separately: jobs.c). */
void sched_job_forget(scheduler *s, sjob *j, outbox *out);
/* Asks worker w to stop task, queued or running (its job ended). mu held. */
void sched_cancel_on(scheduler *s, const struct snode *w, lm_id task);
/* Whether the job ended in this incarnation (jobs.c). */
bool sched_job_ended(const scheduler *s, lm_id id);

/* ---- recovery.c ---- */

/* At start, before serving: the epoch and what Redis says the previous
 * incarnation had (live nodes, running jobs, live actors). */
lumen_status recovery_start(scheduler *s);
/* A node registered: it is not waited for any more; its held tasks are
 * claimed (drop gets those placed elsewhere meanwhile). */
void recovery_node_registered(scheduler *s, snode *n, const Lumen__RegisterNodeRequest *req, id_vec *drop,
                              outbox *out);
/* A task sent again after a restart: true when a node claims it (it now
 * runs there). */
bool recovery_claimed(scheduler *s, stask *t);
/* A job ended: the tasks held for it that no client sent again are stopped. */
void recovery_job_ended(scheduler *s, lm_id job);
/* A node is gone: its claims with it. */
void recovery_node_lost(scheduler *s, snode *n);
/* A task's result was reported: its claim is settled. */
void recovery_result_reported(scheduler *s, lm_id task);
/* Ends the window when its time came or every node is back (the monitor,
 * and each registration, call it). */
void recovery_check(scheduler *s, outbox *out);
/* scheduler.c's part of the window's end: tasks and objects that waited
 * for it are looked up again, placeholders' time starts now. */
void sched_recovered(scheduler *s, outbox *out);

/* ---- jobs.c ---- */

void jobs_handle_start(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx);
void jobs_handle_end(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx);
void jobs_handle_watch(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx);
/* Ends the jobs whose client has been gone past the grace (the monitor). */
void jobs_expire(scheduler *s, outbox *out);
/* Renews leases that ran their course, and ends them all when stopping. */
void jobs_renew_leases(scheduler *s, outbox *out);

/* ---- actors.c ---- */

/* The actor whose creation task t is finished: ALIVE on worker `where`, or
 * DEAD with st (its constructor failed, or could not run). */
void actors_created(scheduler *s, const stask *t, lumen_status st, lm_id where, outbox *out);
/* Creation task t, done already, is reported done again from `where`: a
 * second copy (the creation ran twice across a restart) is stopped. */
void actors_created_again(scheduler *s, const stask *t, lm_id where, outbox *out);
/* A worker reports an incarnation up that no task here made (the scheduler
 * restarted since it was placed). */
void actors_reported_up(scheduler *s, lm_id id, uint32_t incarnation, lm_id where, outbox *out);
/* A direct call's result was reported (counts the actor's calls). */
void actors_call_done(scheduler *s, lm_id actor);
/* A node (re)registered: lookups waiting for its actors may be answered. */
void actors_node_up(scheduler *s, outbox *out);
/* A worker registered with the actors it hosts: those it lists are up
 * there, those this scheduler placed there that it does not list are lost. */
void actors_node_registered(scheduler *s, snode *w, const Lumen__RegisterNodeRequest *req, outbox *out);
/* A worker died: its actors restart elsewhere or die. */
void actors_node_lost(scheduler *s, snode *w, outbox *out);
/* A creation task finished after its job ended: the actor is stopped. */
void actors_orphan_created(scheduler *s, const stask *t);
/* A job ended: its actors are stopped and forgotten. */
void actors_job_end(scheduler *s, sjob *j, outbox *out);
/* Answers the lookups that waited past their time (the monitor calls it). */
void actors_expire_waits(scheduler *s, outbox *out);
/* An actor Redis says was alive (recovery.c at start); false if it was
 * not taken (out of memory, or known already). */
bool actors_load(scheduler *s, const lm_actor_record *rec);
/* The recovery window ended: actors whose worker did not come back are lost. */
void actors_recovered(scheduler *s, outbox *out);
/* A constructor call (an actor's creation task), not a method call. */
static inline bool is_actor_creation(const Lumen__TaskSpec *spec) {
    return spec->actor_id.len > 0 && (spec->method == NULL || spec->method[0] == '\0');
}
void actors_free_all(scheduler *s);

void actors_handle_create(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx);
void actors_handle_get(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx);
void actors_handle_kill(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx);
void actors_handle_died(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx);

#endif

/*
 * sched_internal.h - the scheduler's state, shared by its modules, one
 * concept each: objects.c, waiters.c, tasks.c, placement.c, dispatch.c,
 * nodes.c, jobs.c, actors.c, recovery.c; service.c is the RPC face that
 * decodes calls, takes the lock, calls them and sends their outbox.
 * Everything here is guarded by scheduler.mu unless it says otherwise. Not
 * an interface for anything outside services/scheduler.
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
#include "outbox.h"
#include "records.h"
#include "resolver.h"
#include "scheduler.h"
#include "scheduler.pb-c.h"

typedef struct lm_redis lm_redis;
typedef struct lm_rpc_client lm_rpc_client;
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
    uint64_t job_grace_ms, unknown_ref_timeout_ms;

    uint64_t (*clock_ms)(void); /* the monotonic clock in ms: lm_mono_ms, or a test's */

    pthread_t monitor;
    bool monitor_started;
    pthread_cond_t monitor_cond; /* CLOCK_MONOTONIC */
    bool stopping;
};

/* ---- engine.c: the state as a whole, shared helpers ---- */

/* An empty state for cfg (which must outlive it); mu and the threads are
 * the caller's. */
void sched_state_init(scheduler *s, const lm_config *cfg);
/* Frees everything in the state; the calls it still holds are answered
 * through out. */
void sched_state_fini(scheduler *s, outbox *out);
void sched_id_push(id_vec *v, lm_id id);
void sched_ptr_push(ptr_vec *v, void *p);

static inline bool id_field(ProtobufCBinaryData b, lm_id *out) { return lm_id_from_bytes(b.data, b.len, out); }

static inline ProtobufCBinaryData id_bytes(const lm_id *id) {
    ProtobufCBinaryData b = {LM_ID_BYTES, (uint8_t *)id->bytes};
    return b;
}

static inline const char *hex(lm_id id, char buf[LM_ID_HEX_LEN + 1]) { return lm_id_to_hex(id, buf); }

/* Now on the engine's clock (monotonic ms): every time the state keeps is on it. */
static inline uint64_t sched_now_ms(const scheduler *s) { return s->clock_ms(); }

/* Frees a spec as protobuf-c unpacked it (taken from a request); NULL: nothing. */
static inline void spec_free(Lumen__TaskSpec *spec) {
    if (spec != NULL) lumen__task_spec__free_unpacked(spec, NULL);
}

/* ---- service.c: the RPC face ---- */

/* Sends an outbox's requests, then its answers; call without `mu`. */
void sched_outbox_send(scheduler *s, outbox *o);
/* The resolver's answer (resolver.h); takes `mu`. */
void sched_on_resolved(void *arg, lm_id obj, const lm_id *stores, size_t n);
/* Answers the watches whose lease ended (the monitor). */
void watches_renew(scheduler *s, outbox *out);

/* ---- objects.c: objects, their states and placeholders ---- */

void sched_record_obj(scheduler *s, const sobj *o);
sobj *obj_new(scheduler *s, lm_id id, lm_id job);
/* A placeholder for an object nobody made or reported here yet. */
sobj *obj_unresolved(scheduler *s, lm_id id, lm_id job, bool direct);
/* The object is known for what it is now (made, found, or failed). */
void obj_resolved(scheduler *s, sobj *o);
void obj_free(sobj *o);
void obj_set_failed(scheduler *s, sobj *o, lumen_status st, outbox *out);
/* READY in the live store `store` (NULL: a store that is gone: lost). */
void obj_set_stored(scheduler *s, sobj *o, const snode *store, uint64_t size, outbox *out);
/* A reported result: its value inline, or where it was stored. */
void obj_set_result(scheduler *s, sobj *o, const Lumen__TaskResult *r, outbox *out);
/* The live store a reported result was written to, or NULL. */
snode *result_store(scheduler *s, const Lumen__TaskResult *r);
/* Drops an object the client freed once nothing needs it; its store is
 * told through cleanup (NULL: not told). */
void obj_maybe_release(scheduler *s, sobj *o, outbox *cleanup);
/* A READY put held by the store at location (its copies in `copies`). */
sobj *obj_at(scheduler *s, sobj *o, lm_id id, lm_id job, const char *location, const lm_id *incarnation,
             uint64_t size, const Lumen__Arg *copies, outbox *out);
/* Store `store` died: its objects are rebuilt, read from a copy, or lost. */
void objects_lost_with(scheduler *s, const snode *store, outbox *out);
/* Objects in store incarnations that are gone (at addr; NULL: anywhere). */
void objects_of_gone_incarnations(scheduler *s, const char *addr, outbox *out);
/* Where the stores' directory says object `id` is (the resolver's answer):
 * in the first live one of stores[0..n), if any. */
void objects_found(scheduler *s, lm_id id, const lm_id *stores, size_t n, outbox *out);
/* The client let go of ids (of job, if not NULL): each is dropped once
 * nothing needs it, and deleted from its store. */
void objects_free(scheduler *s, const lm_id *job, const ProtobufCBinaryData *ids, size_t n, outbox *out);
/* Placeholders nobody made or stored in time fail (the monitor). */
void unresolved_expire(scheduler *s, outbox *out);
/* The recovery window ended: tasks and objects that waited for it are
 * looked up again, placeholders' time starts now. */
void sched_recovered(scheduler *s, outbox *out);

/* ---- waiters.c: WaitObjects calls parked on objects ---- */

/* A WaitObjects call for n ids (the caller fills them), holding the call's
 * reference; NULL when out of memory. */
waiter *waiter_new(scheduler *s, lm_rpc_call *call, size_t n);
void waiter_unref(waiter *w);
/* Counts w's ids settled already: whether it can be answered now. */
bool waits_settled(scheduler *s, waiter *w);
/* w waits on its pending objects, the ids not seen yet, and its deadline. */
void waits_park(scheduler *s, waiter *w);
/* w's call was cancelled: true when it was not answered yet (then the
 * caller answers it). */
bool waits_cancelled(scheduler *s, waiter *w);
/* Answers w with the states as they are now. */
void waiter_answer(scheduler *s, waiter *w, outbox *out);
/* Object o settled: its waiters count it. */
void waiters_recount(scheduler *s, sobj *o, outbox *out);
/* Takes a finished waiter off the lists of ids it waited for unseen. */
void unknown_detach(scheduler *s, waiter *w);
/* The waiters of an id not seen yet (made if none). */
ptr_vec *unknown_list(scheduler *s, lm_id id);
void wait_heap_add(scheduler *s, waiter *w);
void wait_heap_remove(scheduler *s, waiter *w);
/* Answers the waits whose time ran out; the monotonic ms of the next one (0: none). */
uint64_t waits_expire(scheduler *s, outbox *out);

/* ---- tasks.c: a task's life, the ready queue, lineage ---- */

void sched_record_task(scheduler *s, const stask *t, lm_task_state state, const char *error);
static inline bool task_waits(const stask *t) { return t->phase == TASK_WAITING || t->phase == TASK_RESOLVING; }
/* Adds a submitted task (taking spec); its failures go to its result ref.
 * resubmit: its client sent it before we (re)started; a result an object
 * store still holds (Redis knows where) counts as made. */
lumen_status sched_admit(scheduler *s, Lumen__TaskSpec *spec, bool resubmit, outbox *out);
void ready_push(scheduler *s, stask *t);
/* Unlinks a READY task from the ready queue. */
void sched_ready_remove(scheduler *s, stask *t);
/* One of t's pending arguments settled. */
void task_resolved_arg(scheduler *s, lm_id task_id);
void task_fail(scheduler *s, stask *t, lumen_status st, outbox *out);
/* Finished without running (again): its result is known. */
void task_finished(scheduler *s, stask *t, outbox *cleanup);
/* Whether t cannot run again because an argument failed or was freed. */
bool arg_failed(scheduler *s, const stask *t, lumen_status *why);
/* Held tasks go on: those whose moment passed, or all. */
void tasks_release_held(scheduler *s, bool all, outbox *out);
/* Makes a finished task run again (lineage): its result was lost. */
void task_rearm(scheduler *s, stask *t, const char *why, outbox *out);
/* A task that could not finish goes back in line, or fails once it used
 * its retries (with code, and why). */
void sched_task_retry(scheduler *s, stask *t, lumen_code code, const char *why, outbox *out);
/* A worker (node; zero: a client) reports a task's or actor call's outcome. */
void task_done(scheduler *s, lm_id node, const Lumen__TaskResult *r, outbox *out);
/* Frees a task (its spec too); it must be out of every queue. */
void sched_task_free(stask *t);

/* ---- placement.c: where a ready task runs (the policy) ---- */

/* The object a ref argument names, if known here. */
sobj *sched_arg_obj(scheduler *s, const Lumen__Arg *a);
/* The worker t should run on now, or NULL when none has room. */
snode *placement_pick(scheduler *s, const stask *t);

/* ---- dispatch.c: ready tasks to workers ---- */

/* Places every ready task it can (none while recovering); one RunTasks per
 * worker goes to the outbox. */
void sched_dispatch(scheduler *s, outbox *out);
/* A task runs on node w (placed here, or found there after a restart). */
void sched_task_running_on(scheduler *s, stask *t, snode *w);
/* The tasks of one RunTasks call, for its outcome. */
typedef struct dispatch_batch {
    scheduler *s;
    lm_id worker;
    char *addr;
    id_vec tasks;
} dispatch_batch;

/* A RunTasks batch's outcome: on a failure its tasks run again elsewhere,
 * or fail (the worker refused them). */
void dispatch_outcome(scheduler *s, dispatch_batch *batch, lumen_status st, outbox *out);
void dispatch_batch_free(dispatch_batch *batch);

/* ---- nodes.c: workers and object stores ---- */

/* The node at addr, a live one first (a restarted node has a new id). */
snode *sched_node_by_addr(scheduler *s, const char *addr);
/* A node is gone: what it ran runs again elsewhere, what it held is rebuilt. */
void node_lost(scheduler *s, snode *w, const char *why, outbox *out);
void node_record(const snode *n, lm_node_record *rec);
/* A node (re)registers (a valid request): it is alive from now on; a task
 * it holds that was placed elsewhere meanwhile goes to *drop. */
snode *node_register(scheduler *s, lm_id id, const Lumen__RegisterNodeRequest *req, id_vec *drop, outbox *out);
/* Declares dead the nodes silent past the heartbeat timeout (the monitor). */
void nodes_check_beats(scheduler *s, outbox *out);

/* ---- jobs.c: a job's life, its client's lease, its end ---- */

/* The client's lease is renewed this often (its call answered, then made again). */
#define JOB_LEASE_MS 30000

typedef struct job_lease {
    scheduler *s;
    lm_rpc_call *call;
    lm_id job;
    uint64_t ends_ms; /* monotonic */
    bool done;        /* answered, or being answered */
} job_lease;

/* Why a call of a job this incarnation does not know is refused. */
lumen_status jobs_unknown(lm_id id);
/* Whether job id was started here, by a client that knows this
 * incarnation (epoch; 0: it does not say). */
bool jobs_current(const scheduler *s, lm_id id, uint64_t epoch);
/* StartJob: the job is known and started from now on (ABORTED: it ended). */
lumen_status jobs_start(scheduler *s, lm_id id, bool detached);
/* EndJob: it ends here and in every store (also a job unknown here). */
void jobs_end(scheduler *s, lm_id id, outbox *out);
/* A lease for job on call (NULL: out of memory; freed with free). */
job_lease *jobs_lease_new(scheduler *s, lm_rpc_call *call, lm_id job);
/* Whether job `id` may be held by a lease (it runs here), else why not. */
lumen_status jobs_lease_check(const scheduler *s, lm_id id);
/* l holds its job from now on (a lease it replaces is answered). */
void jobs_lease_hold(scheduler *s, job_lease *l, outbox *out);
/* l's call was cancelled: true when it was not answered yet (then its job
 * is unheld, and l is the caller's to answer and free). */
bool jobs_lease_cancelled(scheduler *s, job_lease *l);

/* The job, made if new (then unheld: a job nobody claims ends after the grace). */
sjob *sched_job_get(scheduler *s, lm_id id);
/* Frees what a job holds here (not the job's record). */
void sched_job_free(sjob *j);
/* Forgets a job's tasks and objects and stops its actors and running tasks
 * (its stores are told separately). */
void sched_job_forget(scheduler *s, sjob *j, outbox *out);
/* Asks worker w to stop task, queued or running (its job ended). */
void sched_cancel_on(scheduler *s, const struct snode *w, lm_id task, outbox *out);
/* Whether the job ended in this incarnation. */
bool sched_job_ended(const scheduler *s, lm_id id);
/* Ends the jobs whose client has been gone past the grace (the monitor). */
void jobs_expire(scheduler *s, outbox *out);
/* Renews leases that ran their course, and ends them all when stopping. */
void jobs_renew_leases(scheduler *s, outbox *out);

/* ---- recovery.c: the restart protocol's window and claims ---- */

/* A new incarnation, before serving: its epoch; the nodes Redis says were
 * alive (the recovery window waits for them); how many jobs and actors
 * were loaded (sched_job_get, actors_load), for the log. */
void recovery_begin(scheduler *s, uint64_t epoch, const lm_id *alive, size_t n, size_t njobs, size_t nactors);
/* A node registered: it is not waited for any more; its held tasks are
 * claimed (drop gets those placed elsewhere meanwhile). */
void recovery_node_registered(scheduler *s, snode *n, const Lumen__RegisterNodeRequest *req, id_vec *drop,
                              outbox *out);
/* A task sent again after a restart: true when a node claims it (it now
 * runs there). */
bool recovery_claimed(scheduler *s, stask *t);
/* A job ended: the tasks held for it that no client sent again are stopped. */
void recovery_job_ended(scheduler *s, lm_id job, outbox *out);
/* A node is gone: its claims with it. */
void recovery_node_lost(scheduler *s, snode *n);
/* A task's result was reported: its claim is settled. */
void recovery_result_reported(scheduler *s, lm_id task);
/* Ends the window when its time came or every node is back (the monitor,
 * and each registration, call it). */
void recovery_check(scheduler *s, outbox *out);
/* ---- actors.c: an actor's life, its lookups ---- */

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
void actors_orphan_created(scheduler *s, const stask *t, outbox *out);
/* A job ended: its actors are stopped and forgotten. */
void actors_job_end(scheduler *s, sjob *j, outbox *out);
/* Answers the lookups that waited past their time (the monitor calls it). */
void actors_expire_waits(scheduler *s, outbox *out);
/* An actor Redis says was alive (scheduler.c's recover, at start); false if it was
 * not taken (out of memory, or known already). */
bool actors_load(scheduler *s, const lm_actor_record *rec);
/* The recovery window ended: actors whose worker did not come back are lost. */
void actors_recovered(scheduler *s, outbox *out);
/* A constructor call (an actor's creation task), not a method call. */
static inline bool is_actor_creation(const Lumen__TaskSpec *spec) {
    return spec->actor_id.len > 0 && (spec->method == NULL || spec->method[0] == '\0');
}
/* Frees every actor; lookups still waiting are answered (UNAVAILABLE). */
void actors_free_all(scheduler *s, outbox *out);

/* CreateActor (a checked request; its spec may be taken): answered through out. */
void actors_create(scheduler *s, lm_rpc_call *call, Lumen__CreateActorRequest *req, outbox *out);
/* GetActor of name (NULL: of id): answered through out, at once or once it
 * is up past incarnation `after` or wait_ms passed; an error: not answered. */
lumen_status actors_lookup(scheduler *s, lm_rpc_call *call, const char *name, lm_id id, uint32_t after,
                           uint64_t wait_ms, outbox *out);
/* KillActor: whether the actor is known. */
bool actors_kill(scheduler *s, lm_id id, outbox *out);
/* A worker says incarnation `incarnation` of actor id it hosted died. */
void actors_died(scheduler *s, lm_id id, lm_id node, uint32_t incarnation, const char *reason, outbox *out);

/* ---- service_jobs.c, service_actors.c: their methods ---- */

void jobs_handle_start(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx);
void jobs_handle_end(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx);
void jobs_handle_watch(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx);
void actors_handle_create(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx);
void actors_handle_get(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx);
void actors_handle_kill(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx);
void actors_handle_died(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx);

#endif

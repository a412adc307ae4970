/*
 * client_internal.h - liblumen's client state, shared by client.c (objects,
 * results, the job's connection), session.c (the job's session with the
 * scheduler: submissions, resending after a restart, the job's lease) and
 * actor.c (actors). Not installed.
 */
#ifndef LUMEN_CLIENT_INTERNAL_H
#define LUMEN_CLIENT_INTERNAL_H

#include <lumen/lumen.h>

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "common.pb-c.h"
#include "id.h"
#include "idmap.h"
#include "rpc.h"

#define DEFAULT_TIMEOUT_MS 10000
/* How long lumen_connect waits for a scheduler that cannot be reached. */
#define CONNECT_WAIT_MS 5000
/* Refs freed by this client that lumen_get recognises as freed (the newest). */
#define FREED_REMEMBERED (1u << 16)

typedef struct lumen_local lumen_local;

/* An object this client put: the stores holding a copy. */
typedef struct put_info {
    char **locations;
    size_t n;
    uint64_t size;
    lm_id *stores; /* stores[i]: the incarnation at locations[i] that took the copy (a store restarted there does not have it) */
} put_info;

/*
 * A task this client submitted, kept for a scheduler that restarts (the
 * lineage lives with the client too): its spec, until nothing can need it,
 * that is until its result is freed and no kept task takes that result.
 */
typedef struct kept_task {
    Lumen__TaskSpec *spec;
    uint64_t seq;       /* submission order */
    bool sent;          /* it left in a SubmitTasks (else it waits in `pending`) */
    bool freed;         /* its result was freed by the client */
    uint32_t consumers; /* kept tasks that take its result */
} kept_task;

struct lumen_client {
    lumen_local *local; /* lumen_connect("local"): no cluster, everything is local.c's */
    lm_rpc_client *rpc;
    char *address;
    int64_t timeout_ms;
    lm_id job;
    char job_hex[LM_ID_HEX_LEN + 1];
    lm_rpc_method submit, wait, cluster_info, free_objects, start_job, end_job, watch_job;

    pthread_mutex_t mu;
    pthread_cond_t acked_cond;
    kept_task **pending;     /* not sent yet, in order */
    size_t npending, cap_pending;
    bool submitting;         /* a session call (StartJob, a SubmitTasks) is in flight */
    size_t in_flight;        /* tasks of the pending queue in the SubmitTasks in flight */
    uint64_t queued, acked;  /* tasks queued / answered by the scheduler (or failed to send) */
    lumen_status submit_error;

    lm_idmap *puts; /* put_info* by object id */
    char **stores;
    size_t nstores, next_store;
    uint64_t inline_max;
    uint32_t put_replicas; /* stores each put is written to */
    bool has_library;
    lm_id library;
    bool joined;   /* works in a job it did not start: close leaves it running */
    bool detached; /* its job outlives it: no lease */
    lm_idmap *kept; /* kept_task* by task id */
    lm_idmap *freed; /* refs freed here: a get of one fails at once */
    lm_id freed_ring[FREED_REMEMBERED];
    size_t freed_next;

    /* The session (session.c), under mu: the scheduler incarnation the job
     * is established with (0: establish it again: StartJob, then every
     * kept task sent again in order, then actors, before anything new). */
    uint64_t epoch;
    lm_id *resend; /* kept tasks to send again, by id, in submission order */
    size_t nresend, resend_pos;
    bool lease_held; /* a WatchJob is in flight */
    lumen_status job_error; /* the job ended under us: calls fail with it */
    pthread_t keeper;       /* re-establishes the session while nothing else asks */
    pthread_cond_t keeper_cond;
    bool keeper_started;

    /* Actors (actor.c), under mu. */
    lm_rpc_method create_actor, get_actor, kill_actor, call_actor, task_done;
    lm_idmap *actors;         /* actor_handle* by actor id */
    lm_idmap *results;        /* call_result* by object id: results of our actor calls */
    pthread_cond_t result_cond; /* a call result arrived */
    bool closing;             /* async completions only clean up */
};

/* ---- client.c ---- */

static inline lm_id ref_id(lumen_ref r) {
    lm_id id;
    memcpy(id.bytes, r.id, LM_ID_BYTES);
    return id;
}

static inline lumen_ref id_ref(lm_id id) {
    lumen_ref r;
    memcpy(r.id, id.bytes, LM_ID_BYTES);
    return r;
}

/* A heap copy of n bytes (protobuf-c frees message fields with free()). */
ProtobufCBinaryData client_bytes_copy(const void *data, size_t n);

/* A spec for calling `function` (a task, or an actor's constructor) with
 * args: ids, job, arguments (big inline values go through the object
 * store), limits and library. The caller frees it (lm_rpc_message_free). */
lumen_status client_spec_new(lumen_client *c, const char *function, const lumen_arg *args, size_t nargs,
                             const lumen_call_opts *opts, Lumen__TaskSpec **out);

/* Fills a spec argument from a lumen_arg. */
lumen_status client_make_arg(lumen_client *c, const lumen_arg *in, Lumen__Arg *out);

/* Refreshes the list of object stores (GetClusterInfo); *epoch (may be
 * NULL) gets the scheduler's incarnation. No lock held. */
lumen_status client_refresh_stores(lumen_client *c, uint64_t *epoch);

/* ---- session.c ---- */

/* Queues a task for the scheduler (taking spec) and keeps it. mu held. */
void session_submit_locked(lumen_client *c, Lumen__TaskSpec *spec, lm_id task);

/* Moves the session along (mu held): establishes it, resends, sends what
 * is queued, keeps the lease; one session call in flight at a time. */
void session_pump_locked(lumen_client *c);

/* A call to the scheduler failed (st) with the session at `epoch`: if the
 * scheduler went away or restarted, the session is established again.
 * mu held. */
void session_lost_locked(lumen_client *c, lumen_status st, uint64_t epoch);

/* Whether the scheduler is away, or back without our job (it restarted). */
bool session_scheduler_forgot(lumen_status st);

/* Waits until every task queued so far reached the scheduler. */
lumen_status session_wait_submitted(lumen_client *c, int64_t timeout_ms);

/* The first submission error, or the job's end, if any. */
lumen_status session_status(lumen_client *c);

/* The result `id` was freed: its task's spec goes once nothing needs it. mu held. */
void session_forget_locked(lumen_client *c, lm_id result);

/* Sets up and tears down the session: init (first), start (the keeper
 * thread, once the job is established), stop (before the RPC client is
 * freed), fini (after). */
void session_init(lumen_client *c);
lumen_status session_start(lumen_client *c);
void session_stop(lumen_client *c);  /* before the RPC client is freed */
void session_fini(lumen_client *c);  /* after */

/* ---- local.c: the API in this process (lumen_connect("local")) ---- */

lumen_status local_connect(lumen_client *c, const lumen_connect_opts *opts);
void local_close(lumen_client *c);
/* Whether job is a local job of this process (a task's client joins it). */
bool local_job_known(lm_id job);
lumen_status local_put(lumen_client *c, const void *data, size_t len, lumen_ref *out);
lumen_status local_call(lumen_client *c, const char *function, const lumen_arg *args, size_t nargs,
                        const lumen_call_opts *opts, lumen_ref *out);
lumen_status local_get(lumen_client *c, const lumen_ref *refs, size_t n, lumen_bytes *out);
void local_ready(lumen_client *c, const lumen_ref *refs, size_t n, int *flags);
void local_free(lumen_client *c, const lumen_ref *refs, size_t n);
lumen_status local_library_upload(lumen_client *c, const char *path);
lumen_status local_actor_new(lumen_client *c, const char *class_name, const lumen_arg *args, size_t nargs,
                             const lumen_actor_opts *opts, lumen_actor *out);
lumen_status local_actor_call(lumen_client *c, lumen_actor actor, const char *method, const lumen_arg *args,
                              size_t nargs, lumen_ref *out);
lumen_status local_actor_kill(lumen_client *c, lumen_actor actor);
lumen_status local_actor_get_named(lumen_client *c, const char *name, lumen_actor *out);

/* ---- actor.c ---- */

/* Tells a restarted scheduler what it forgot of this client's actors,
 * without waiting: CreateActor again for every actor it created (their
 * constructor calls), and the small results and failures of its calls that
 * the dead scheduler held (a task may take them; stored results are in the
 * stores' directory). mu held. */
void actor_resync_locked(lumen_client *c);

/* How a local actor call result stands: unknown (not one of ours), or
 * known. `fill` (may be NULL) gets its value into *arg when it is ready
 * and small, or its location; else the arg is marked direct. mu held. */
bool actor_result_known(lumen_client *c, lm_id id);
void actor_result_to_arg(lumen_client *c, lm_id id, Lumen__Arg *arg);
/* Whether our actor call's result (or error) is here. mu held. */
bool actor_result_here(lumen_client *c, lm_id id);

/* lumen_get / lumen_wait on results of our actor calls, answered here
 * (without the scheduler). */
lumen_status actor_result_get(lumen_client *c, lm_id id, int64_t timeout_ms, lumen_bytes *out);
lumen_status actor_results_wait(lumen_client *c, const lm_id *ids, size_t n, size_t num_ready, int64_t timeout_ms,
                                int *ready, size_t *num_done);
/* Drops a result; false when it is not ours. mu held. */
bool actor_result_forget(lumen_client *c, lm_id id);

/* Sets up and tears down actor.c's part of a client. */
void actor_client_init(lumen_client *c);
void actor_client_fini(lumen_client *c);

#endif

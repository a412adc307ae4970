/*
 * client_internal.h - liblumen's client state, shared by client.c (tasks,
 * objects, the job) and actor.c (actors). Not installed.
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

/* An object this client put: the stores holding a copy. */
typedef struct put_info {
    char **locations;
    size_t n;
    uint64_t size;
} put_info;

struct lumen_client {
    lm_rpc_client *rpc;
    char *address;
    int64_t timeout_ms;
    lm_id job;
    lm_rpc_method submit, wait, cluster_info, free_objects, start_job, end_job;

    pthread_mutex_t mu;
    pthread_cond_t acked_cond;
    Lumen__TaskSpec **pending;
    size_t npending, cap_pending;
    bool submitting;
    size_t in_flight;        /* tasks in the SubmitTasks in flight */
    uint64_t queued, acked;  /* tasks queued / answered by the scheduler (or failed to send) */
    lumen_status submit_error;

    lm_idmap *puts; /* put_info* by object id */
    char **stores;
    size_t nstores, next_store;
    uint64_t inline_max;
    uint32_t put_replicas; /* stores each put is written to */
    bool has_library;
    lm_id library;
    bool joined; /* works in a job it did not start: close leaves it running */
    /* Lineage for a scheduler that restarts: the spec of every task this
     * client submitted, by task id, until its result is freed. */
    lm_idmap *kept;
    bool resync; /* a scheduler call failed UNAVAILABLE: send the job, tasks and actors again */

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
                             uint32_t max_retries, int64_t timeout_ms, uint64_t memory_limit,
                             const lumen_ref *library, Lumen__TaskSpec **out);

/* Fills a spec argument from a lumen_arg. */
lumen_status client_make_arg(lumen_client *c, const lumen_arg *in, Lumen__Arg *out);

/* The scheduler may have restarted (a call failed UNAVAILABLE): the next
 * call first tells it our job, tasks and actors again. mu held. */
void client_need_resync(lumen_client *c, lumen_status st);

/* ---- actor.c ---- */

/* Sends CreateActor again for every actor this client created (a restarted
 * scheduler learns their constructor calls). No lock held. */
lumen_status actor_resync(lumen_client *c);

/* How a local actor call result stands: unknown (not one of ours), or
 * known. `fill` (may be NULL) gets its value into *arg when it is ready
 * and small, or its location; else the arg is marked direct. mu held. */
bool actor_result_known(lumen_client *c, lm_id id);
void actor_result_to_arg(lumen_client *c, lm_id id, Lumen__Arg *arg);

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

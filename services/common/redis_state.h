/*
 * redis_state.h - the cluster's state in Redis: the key layout, named writers
 * and readers for it, and events over pub/sub.
 *
 * The only module that talks to Redis (and the only one that includes
 * hiredis). The key layout is a public interface that users read with
 * redis-cli; <p> is the configured prefix ("lumen:" by default):
 *
 *   <p>nodes          set of node ids (workers and object stores)
 *   <p>node:<id>      hash: kind addr slots slots_free state heartbeat_ms
 *                           started_ms bytes_used memory_limit
 *   <p>task:<id>      hash: fn job state worker attempts error submitted_ms
 *                           finished_ms [spec: the encoded spec, binary]
 *   <p>task:<id>:log  string: what the task (or actor call) wrote to stdout and
 *                     stderr, at most 64 KiB; only when it wrote something
 *   <p>obj:<id>       hash: size state task job error
 *   <p>obj:<id>:locs  set of object-store node ids holding a copy
 *   <p>actor:<id>     hash: class worker state restarts incarnation calls
 *                           name job error
 *   <p>job:<id>       hash: state started_ms finished_ms tasks [detached]
 *   <p>job:<id>:objs  set of object ids the job owns
 *   <p>events         pub/sub channel: "<type> <id>[ <detail>]" per event
 *   <p>epoch          counter: the scheduler's incarnation, one INCR per start
 *
 * Indexes and counters, kept up to date by the writers above so that views
 * never walk every key (task ones by one script per task write, atomically):
 *   <p>task_seq            counter: a task's number (its "seq" field), in order of first write
 *   <p>tasks               zset: every task id, score seq
 *   <p>tasks:<STATE>       zset: the tasks in that state, score seq
 *   <p>fn:<name>:tasks     zset: a function's tasks, score seq
 *   <p>job:<id>:tasks      zset: a job's tasks, score seq
 *   <p>fn:<name>:counts    hash: tasks per state (PENDING ... FAILED) and
 *   <p>job:<id>:counts           submitted finished failed retried (events)
 *   <p>fns                 set: every function name seen
 *   <p>jobs                zset: every job id, score started_ms
 *   <p>jobs:running        set: jobs started and not finished
 *   <p>actors, <p>objs     zset: ids with a record, score ms of first write
 *                          (objects leave it with their record)
 *
 * Ids are 32 lowercase hex digits (a zero id is written as ""), times are ms
 * since the epoch, states are the words below (node kinds are lowercase).
 *
 * Every write sets explicit values (HSET, SADD, SREM), so a failed call may
 * simply be retried; only an event may then be delivered twice.
 *
 * Connections: one lm_redis is one connection that any number of threads
 * may share (calls are serialized). When Redis goes away, calls fail fast
 * with LUMEN_UNAVAILABLE and the reason ("redis 127.0.0.1:6379: connection
 * refused"); later calls reconnect by themselves, no more often than a
 * backoff of 50 ms doubling to 2 s allows, and never sleep. A connection
 * that went stale while idle (Redis restarted) is replaced transparently.
 * The process must ignore SIGPIPE, as every Lumen service does.
 */
#ifndef LM_REDIS_STATE_H
#define LM_REDIS_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "id.h"
#include "records.h"
#include "status.h"

typedef struct lm_redis lm_redis;
typedef struct lm_redis_subscriber lm_redis_subscriber;

typedef struct lm_redis_opts {
    const char *addr;     /* "host:port"; NULL: "127.0.0.1:6379" */
    const char *password; /* sent with AUTH when non-empty, also on reconnect */
    const char *prefix;   /* of every key and channel; NULL: "lumen:" */
    unsigned timeout_ms;  /* connect, and each round trip; 0: 2000 */
} lm_redis_opts;

/* Connects (AUTH + PING); a Redis that is down is LUMEN_UNAVAILABLE, a
 * refused password LUMEN_UNAUTHENTICATED. */
lumen_status lm_redis_connect(const lm_redis_opts *opts, lm_redis **out);
void lm_redis_free(lm_redis *r);

/* One round trip; for health checks. */
lumen_status lm_redis_ping(lm_redis *r);

/* A new scheduler incarnation: INCR <p>epoch, always above every earlier one. */
lumen_status lm_redis_epoch_next(lm_redis *r, uint64_t *epoch);


/* ---- nodes (the record: records.h) ---- */
typedef struct lm_node_list {
    lm_node_record *nodes; /* the list owns the records and their addr strings */
    size_t count;
} lm_node_list;

/* Adds the node to <p>nodes and writes its hash from rec, except that state
 * is ALIVE and started_ms and heartbeat_ms are now. */
lumen_status lm_redis_node_register(lm_redis *r, const lm_node_record *rec);

/* Writes slots_free, bytes_used and heartbeat_ms = now. LUMEN_NOT_FOUND (and
 * nothing written) when the node has no record, e.g. Redis lost its data:
 * register again. */
lumen_status lm_redis_node_heartbeat(lm_redis *r, lm_id node, uint32_t slots_free,
                                     uint64_t bytes_used);

/* state DEAD; the node stays in <p>nodes. LUMEN_NOT_FOUND as above. */
lumen_status lm_redis_node_mark_dead(lm_redis *r, lm_id node);

/* Every member of <p>nodes with a readable hash, dead ones included
 * (two round trips). Free with lm_node_list_free. */
lumen_status lm_redis_nodes_list(lm_redis *r, lm_node_list **out);
void lm_node_list_free(lm_node_list *list);

/* ---- tasks (the record: records.h) ---- */
/* Writes n task hashes in one round trip (pipelined). */
lumen_status lm_redis_tasks_put(lm_redis *r, const lm_task_record *recs, size_t n);

/* Writes state, worker, attempts, error (NULL: "") and finished_ms (now for
 * FINISHED and FAILED, else 0). */
lumen_status lm_redis_task_set_state(lm_redis *r, lm_id task, lm_task_state state,
                                     lm_id worker, uint32_t attempts, const char *error);

/* What a task wrote (tasklog.h); the key <p>task:<id>:log. */
typedef struct lm_task_log {
    lm_id id; /* the task's (or actor call's) */
    const void *data;
    size_t len;
} lm_task_log;

/* Writes n task logs in one round trip (SET: a re-run's log replaces). */
lumen_status lm_redis_task_logs_put(lm_redis *r, const lm_task_log *logs, size_t n);

/* A task's log into *data (malloc'd, NUL-terminated; yours to free) and
 * *len: at most LM_TASK_LOG_MAX bytes read, a longer value (planted by
 * whoever writes to Redis) cut as tasklog.h cuts. NOT_FOUND when there is none, saying whether the task is known and
 * wrote nothing or has no record at all (one round trip). */
lumen_status lm_redis_task_log_get(lm_redis *r, lm_id task, char **data, size_t *len);

/* ---- objects (the record: records.h) ---- */
/* Writes n object hashes (and job memberships) in one round trip. */
lumen_status lm_redis_objs_put(lm_redis *r, const lm_obj_record *recs, size_t n);

/* Writes state and error (NULL: ""). */
lumen_status lm_redis_obj_set_state(lm_redis *r, lm_id obj, lm_obj_state state,
                                    const char *error);

/* The object is stored at store: state READY, size, error "", store added to
 * its locations, the object added to its job's set (job non-zero), then
 * "obj_ready <obj> <store>" published (one round trip, so a subscriber that
 * sees the event can read the record). */
lumen_status lm_redis_obj_ready(lm_redis *r, lm_id obj, uint64_t size, lm_id store, lm_id job);

lumen_status lm_redis_obj_loc_add(lm_redis *r, lm_id obj, lm_id store);
lumen_status lm_redis_obj_loc_remove(lm_redis *r, lm_id obj, lm_id store);

/* The stores holding obj (possibly none); free(*stores) when done. */
lumen_status lm_redis_obj_locs(lm_redis *r, lm_id obj, lm_id **stores, size_t *n);

/* A list of ids (free with lm_id_sets_free). */
typedef struct lm_id_set {
    lm_id *ids;
    size_t n;
} lm_id_set;

/* The stores holding each of n objects, one round trip: out[i] for objs[i]. */
lumen_status lm_redis_objs_locs(lm_redis *r, const lm_id *objs, size_t n, lm_id_set *out);
void lm_id_sets_free(lm_id_set *sets, size_t n);

/* ---- actors (the record: records.h) ---- */
/* n records in one round trip. */
lumen_status lm_redis_actors_put(lm_redis *r, const lm_actor_record *recs, size_t n);

/* An actor's record (its strings are the caller's: lm_redis_actor_record_free);
 * NOT_FOUND when there is none. */
lumen_status lm_redis_actor_get(lm_redis *r, lm_id actor, lm_actor_record *out);
void lm_redis_actor_record_free(lm_actor_record *rec);

/* ---- jobs ---- */
/* state RUNNING, started_ms now, finished_ms 0, tasks 0. */
lumen_status lm_redis_job_start(lm_redis *r, lm_id job);
/* detached 1: the job outlives its client (no lease). */
lumen_status lm_redis_job_detach(lm_redis *r, lm_id job);
/* The members of <p>jobs:running; free(*jobs) when done. */
lumen_status lm_redis_jobs_running(lm_redis *r, lm_id **jobs, size_t *n);
/* state FINISHED, finished_ms now, tasks: how many the job submitted. */
lumen_status lm_redis_job_finish(lm_redis *r, lm_id job, uint64_t tasks);
/* The objects the job owns; free(*objs) when done. */
/* A finished job's objects are gone: deletes their records and locations
 * and the job's object set (the job's own hash stays, as history). */
lumen_status lm_redis_job_release(lm_redis *r, lm_id job);

lumen_status lm_redis_job_objs(lm_redis *r, lm_id job, lm_id **objs, size_t *n);

/* ---- views: the indexes and counters (see the top), for the dashboard and CLI ---- */

typedef struct lm_task_counts {
    uint64_t by_state[LM_TASK_STATES]; /* tasks now in each lm_task_state */
    uint64_t submitted, finished, failed, retried; /* events: first records, entries into
                                                      FINISHED / FAILED, runs after the first */
} lm_task_counts;

/* Counters of n functions (by name) or n jobs, in one round trip; zeros for
 * one never seen. */
lumen_status lm_redis_fn_counts(lm_redis *r, const char *const *fns, size_t n, lm_task_counts *out);
lumen_status lm_redis_job_counts(lm_redis *r, const lm_id *jobs, size_t n, lm_task_counts *out);

/* Every function name that has tasks; free with lm_strings_free. */
lumen_status lm_redis_task_fns(lm_redis *r, char ***names, size_t *n);
void lm_strings_free(char **s, size_t n);

typedef enum lm_index_kind {
    LM_INDEX_TASKS,       /* every task, score seq */
    LM_INDEX_TASKS_STATE, /* .state */
    LM_INDEX_TASKS_FN,    /* .fn */
    LM_INDEX_TASKS_JOB,   /* .job */
    LM_INDEX_JOBS,        /* score started_ms */
    LM_INDEX_ACTORS,      /* score ms */
    LM_INDEX_OBJS,        /* score ms */
} lm_index_kind;

typedef struct lm_index {
    lm_index_kind kind;
    lm_task_state state;
    const char *fn;
    lm_id job;
} lm_index;

/* Members of n indexes (ZCARD each), one round trip. */
lumen_status lm_redis_index_count(lm_redis *r, const lm_index *ix, size_t n, uint64_t *counts);
/* Members of the set <p><name> (SCARD), e.g. "jobs:running". */
lumen_status lm_redis_set_count(lm_redis *r, const char *name, uint64_t *count);

/* Up to limit members, newest (highest score) first, after skipping
 * offset: with before > 0 among those scored below it (a cursor that stays
 * put while new members arrive), else from the top. ids and scores (may be
 * NULL) hold limit entries; *n gets how many were filled. */
lumen_status lm_redis_index_page(lm_redis *r, const lm_index *ix, uint64_t before, size_t offset, size_t limit,
                                 lm_id *ids, uint64_t *scores, size_t *n);

/* Records of n ids, one round trip; found[i] says whether record i exists.
 * Strings in the records are the caller's: lm_task_record_fini,
 * lm_redis_actor_record_free, free(error) of an object. The spec is not read. */
lumen_status lm_redis_tasks_get(lm_redis *r, const lm_id *ids, size_t n, lm_task_record *out, bool *found);
void lm_task_record_fini(lm_task_record *t);

typedef struct lm_job_record {
    lm_id id;
    lm_job_state state;
    uint64_t started_ms, finished_ms;
    uint64_t tasks; /* set when it finished */
    bool detached;  /* it outlives its client */
} lm_job_record;

lumen_status lm_redis_jobs_get(lm_redis *r, const lm_id *ids, size_t n, lm_job_record *out, bool *found);
lumen_status lm_redis_actors_get(lm_redis *r, const lm_id *ids, size_t n, lm_actor_record *out, bool *found);
lumen_status lm_redis_objs_get(lm_redis *r, const lm_id *ids, size_t n, lm_obj_record *out, bool *found);

/* ---- census: records counted by state by walking the key space (O(keys)); views
 * above answer the same from the indexes, this checks them ---- */
#define LM_CENSUS_ROWS 8
#define LM_CENSUS_STATE_MAX 15 /* longer state words are cut */

typedef struct lm_census_row {
    char state[LM_CENSUS_STATE_MAX + 1]; /* "?" for an empty state, "other" for the shared row */
    uint64_t n;
} lm_census_row;

typedef struct lm_census_group {
    const char *kind; /* set by the caller: "task", "obj", "actor", "job" */
    uint64_t total;   /* records <p><kind>:<id> (not sub-keys like obj:<id>:locs) */
    uint64_t bytes;   /* sum of their "size" fields */
    lm_census_row by[LM_CENSUS_ROWS]; /* in order of first sight; once full, the */
    size_t nby;                       /* states left over share the last row */
} lm_census_group;

/* Fills in every group (earlier results are reset) by walking the key space
 * with SCAN ... COUNT 1000 and one pipelined HMGET state size per batch: two
 * round trips per thousand keys in the database, never blocking Redis. Not a
 * snapshot: a record that changes during the walk is counted in either
 * state, one deleted is skipped, and a key that SCAN returns twice (the table
 * shrank meanwhile) is counted twice. Keys of that shape that are not hashes
 * are skipped. */
lumen_status lm_redis_census(lm_redis *r, lm_census_group *groups, size_t n);

/* ---- events ---- */
#define LM_EVENT_TYPE_MAX 31

/* Publishes "<type> <id>[ <detail>]" on <p>events. */
lumen_status lm_redis_publish(lm_redis *r, const char *type, lm_id id, const char *detail);

typedef struct lm_redis_event {
    char type[LM_EVENT_TYPE_MAX + 1];
    lm_id id;
    const char *detail; /* points into the message; not NUL-terminated */
    size_t detail_len;
} lm_redis_event;

/* Splits an event line; false when it is not "<type> <32 hex>[ <detail>]". */
bool lm_redis_event_parse(const char *msg, size_t len, lm_redis_event *ev);

/* Called on the subscriber's thread for each message, in order. msg is NULL
 * (len 0) after a reconnect: messages published while the connection was
 * down are lost, so resynchronize from the records. */
typedef void (*lm_redis_message_fn)(void *arg, const char *msg, size_t len);

/* Subscribes a connection of its own to <p><channel> (NULL: "events") before
 * returning, then delivers messages from a thread that blocks in poll() and
 * reconnects and resubscribes with backoff when Redis restarts. */
lumen_status lm_redis_subscriber_new(const lm_redis_opts *opts, const char *channel,
                                     lm_redis_message_fn fn, void *arg,
                                     lm_redis_subscriber **out);

/* Stops and joins the thread (promptly, unless a connect attempt is in
 * flight: then within timeout_ms). Never call it from the callback. */
void lm_redis_subscriber_free(lm_redis_subscriber *s);

#endif

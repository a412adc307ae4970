/*
 * lumen.h - the public API of Lumen, a distributed computing cluster for C.
 *
 * Naming: everything exported starts with lumen_ / LUMEN_. Errors are values:
 * every fallible call returns a lumen_status whose code is LUMEN_OK (0) on
 * success and otherwise carries a human-readable message.
 */
#ifndef LUMEN_LUMEN_H
#define LUMEN_LUMEN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LUMEN_VERSION_MAJOR 0
#define LUMEN_VERSION_MINOR 1
#define LUMEN_VERSION_PATCH 0
#define LUMEN_STR_(x) #x
#define LUMEN_STR(x) LUMEN_STR_(x)
#define LUMEN_VERSION_STRING \
    LUMEN_STR(LUMEN_VERSION_MAJOR) "." LUMEN_STR(LUMEN_VERSION_MINOR) "." LUMEN_STR(LUMEN_VERSION_PATCH)

#if defined(__GNUC__)
#define LUMEN_EXPORT __attribute__((visibility("default")))
#else
#define LUMEN_EXPORT
#endif

/*
 * Status codes. 0..16 are gRPC's codes with the same numbers, so a status
 * that crossed the wire keeps its meaning; Lumen's own start at 100.
 */
#define LUMEN_CODE_MAP(X)                                              \
    X(OK, 0, "ok")                                                     \
    X(CANCELLED, 1, "cancelled")                                       \
    X(UNKNOWN, 2, "unknown error")                                     \
    X(INVALID_ARGUMENT, 3, "invalid argument")                         \
    X(DEADLINE_EXCEEDED, 4, "deadline exceeded")                       \
    X(NOT_FOUND, 5, "not found")                                       \
    X(ALREADY_EXISTS, 6, "already exists")                             \
    X(PERMISSION_DENIED, 7, "permission denied")                       \
    X(RESOURCE_EXHAUSTED, 8, "resource exhausted")                     \
    X(FAILED_PRECONDITION, 9, "failed precondition")                   \
    X(ABORTED, 10, "aborted")                                          \
    X(OUT_OF_RANGE, 11, "out of range")                                \
    X(UNIMPLEMENTED, 12, "unimplemented")                              \
    X(INTERNAL, 13, "internal error")                                  \
    X(UNAVAILABLE, 14, "unavailable")                                  \
    X(DATA_LOSS, 15, "data loss")                                      \
    X(UNAUTHENTICATED, 16, "unauthenticated")                          \
    X(TASK_FAILED, 100, "task failed")                                 \
    X(OBJECT_LOST, 101, "object lost")                                 \
    X(WORKER_DIED, 102, "worker died")                                 \
    X(IO, 103, "I/O error")                                            \
    X(CONFIG, 104, "configuration error")                              \
    X(ACTOR_DIED, 105, "actor died")

typedef enum lumen_code {
#define LUMEN_CODE_ENUM_(name, value, text) LUMEN_##name = value,
    LUMEN_CODE_MAP(LUMEN_CODE_ENUM_)
#undef LUMEN_CODE_ENUM_
} lumen_code;

/* An error as a value: a code and what went wrong, in words. */
typedef struct lumen_status {
    lumen_code code;
    char msg[252];
} lumen_status;

/* The fixed description of a code ("deadline exceeded"); never NULL. */
LUMEN_EXPORT const char *lumen_strerror(lumen_code code);

/* The code's symbolic name ("DEADLINE_EXCEEDED"); never NULL. */
LUMEN_EXPORT const char *lumen_code_name(lumen_code code);


/* ------------------------------------------------------------------ bytes */

/* A byte string. Buffers Lumen hands to you are yours: free them with
 * lumen_bytes_free (NULL-safe, resets the struct). */
typedef struct lumen_bytes {
    void *data;
    size_t len;
} lumen_bytes;

LUMEN_EXPORT void lumen_bytes_free(lumen_bytes *b);

/* ------------------------------------------------------------- the client */

typedef struct lumen_client lumen_client;

/* A future: the id of an object that exists or will exist in the cluster. */
typedef struct lumen_ref {
    uint8_t id[16];
} lumen_ref;

/* Its id as 32 hex digits (the form in Redis keys): out holds 33 bytes. */
LUMEN_EXPORT char *lumen_ref_hex(lumen_ref ref, char out[33]);

typedef struct lumen_connect_opts {
    const char *token;      /* NULL: $LUMEN_TOKEN, else the token `lumen start` left in its
                               run dir ($LUMEN_RUN_DIR, else /tmp/lumen-<uid>) */
    int64_t rpc_timeout_ms; /* 0: 10000 */
    int64_t connect_timeout_ms; /* how long lumen_connect keeps trying while nothing listens
                                   at the address (the scheduler may be restarting; a scheduler
                                   closing our connections, as a dying one or a TLS mismatch
                                   does, is tried for 1.5 s); 0: 5000, negative: one try */
    const char *job;        /* NULL: start a job of our own. Else the 32-hex-digit id of a
                               running job to work in (a task's lumen_task_job): objects made
                               belong to it, and lumen_close leaves it running. */
    /* TLS, for a cluster whose services have certificates: PEM file paths.
     * NULL: $LUMEN_TLS_CA, $LUMEN_TLS_CERT, $LUMEN_TLS_KEY; all unset or "":
     * plaintext. A cluster with a CA configured wants a client certificate. */
    const char *tls_ca;     /* the CA the services' certificates chain to */
    const char *tls_cert;   /* this client's certificate */
    const char *tls_key;    /* its private key */
    int detached;           /* non-zero: the job outlives this client. Otherwise the job
                               lives as long as the client: if the process dies without
                               lumen_close and does not come back within the scheduler's
                               job_grace_ms (10 s), the job ends as if closed. A detached
                               job ends by lumen_close or `lumen job stop ID`. */
    const char *local_libraries; /* lumen_connect("local", ...): the function libraries to load,
                               colon-separated .so files or directories of them */
} lumen_connect_opts;

/*
 * Connects to the scheduler at `address` ("host:port"; NULL: $LUMEN_ADDRESS,
 * else $LUMEN_SCHEDULER_ADDR, else the address `lumen start` left in its run
 * dir, else 127.0.0.1:7400) and starts a job. Every task and object made
 * through the client belongs to the job and is released by lumen_close. A
 * client may be used from several threads at once. If the scheduler
 * restarts, the client tells the new one its job, its tasks and its actors
 * by itself; calls meanwhile wait (within their timeouts).
 *
 * address "local": no cluster. Remote functions and actors run in this
 * process, from opts->local_libraries, with the same calls, results and
 * errors (tasks run when called; a crash takes the process; time and
 * memory limits are not enforced): for unit tests of function libraries.
 * A task's own client (opts.job = lumen_task_job(ctx)) joins the local job.
 */
LUMEN_EXPORT lumen_status lumen_connect(const char *address, const lumen_connect_opts *opts,
                                        lumen_client **out);

/* The client's job, as 32 hex digits (lumen_connect_opts.job for another
 * client working in it; `lumen job stop ID`). Valid while the client is. */
LUMEN_EXPORT const char *lumen_job_id(const lumen_client *c);

/* Ends the job (its objects are released, its tasks still queued or running
 * are stopped) and frees the client. NULL-safe. */
LUMEN_EXPORT void lumen_close(lumen_client *c);

/* Stores data in the cluster's object store; *out names it. */
LUMEN_EXPORT lumen_status lumen_put(lumen_client *c, const void *data, size_t len, lumen_ref *out);

/* A task argument: inline bytes (copied at the call) or a ref (a future). */
typedef struct lumen_arg {
    const void *data;
    size_t len;
    int is_ref;
    lumen_ref ref;
} lumen_arg;

static inline lumen_arg lumen_arg_bytes(const void *data, size_t len) {
    lumen_arg a = {data, len, 0, {{0}}};
    return a;
}

static inline lumen_arg lumen_arg_ref(lumen_ref ref) {
    lumen_arg a = {NULL, 0, 1, ref};
    return a;
}

typedef struct lumen_call_opts {
    uint32_t max_retries;   /* runs after the first when the process running it dies (a crash,
                               its worker's death), as in Ray; 0: the cluster's default (3) */
    int64_t timeout_ms;     /* task run time limit; 0: the worker's default */
    uint64_t memory_limit;  /* bytes; 0: the worker's default */
    const lumen_ref *library; /* uploaded library holding the function; NULL: the client's default */
    int retry_on_error;     /* non-zero: the function's own failures (lumen_task_fail) are retried
                               too, within max_retries; by default they are final */
} lumen_call_opts;

/*
 * Calls a remote function ("library.name") and returns at once: *out is a
 * future for its result. A task whose args include refs runs once those
 * objects exist. An error of the task itself (unknown function, failure,
 * crash) is reported by lumen_get on *out, not here.
 */
LUMEN_EXPORT lumen_status lumen_call(lumen_client *c, const char *function, const lumen_arg *args,
                                     size_t nargs, const lumen_call_opts *opts, lumen_ref *out);

/*
 * Waits up to timeout_ms (0: not at all) for ref's object and copies it into
 * *out (yours to lumen_bytes_free; a NUL byte follows the data, not counted
 * in len, so text can be used as a C string). DEADLINE_EXCEEDED when it is
 * not there in time; TASK_FAILED (with the task's error) when its producer
 * failed for good; NOT_FOUND at once for a ref this client freed.
 */
LUMEN_EXPORT lumen_status lumen_get(lumen_client *c, lumen_ref ref, int64_t timeout_ms, lumen_bytes *out);

/*
 * lumen_get of n refs at once (one wait at the scheduler for all of them):
 * out[i] gets refs[i]'s value. On failure nothing is left in out[] and the
 * error names the first ref that failed ("ref 3: ...").
 */
LUMEN_EXPORT lumen_status lumen_get_many(lumen_client *c, const lumen_ref *refs, size_t n, int64_t timeout_ms,
                                         lumen_bytes *out);

/*
 * Like ray.wait: returns when num_ready of the n refs are ready (or failed),
 * or when timeout_ms passes (then OK too: count what is ready). At most
 * num_ready refs are reported: ready[i] (ready may be NULL) is 1 for the
 * first ready ones in the order given, 0 for the others; *num_done (may be
 * NULL) gets their count. A ref reported ready can be read at once
 * (lumen_get with timeout 0). num_ready > n is INVALID_ARGUMENT.
 */
LUMEN_EXPORT lumen_status lumen_wait(lumen_client *c, const lumen_ref *refs, size_t n, size_t num_ready,
                                     int64_t timeout_ms, int *ready, size_t *num_done);

/*
 * lumen_wait for all n refs (ready may be NULL), showing a progress bar on
 * stderr while it waits when stderr is a terminal:
 *     label [############        ] 12/20 tasks  4.1/s  2.9s
 * redrawn at most 10 times a second by the waiting thread itself, its line
 * ended when the wait returns. Quiet when stderr is not a terminal.
 */
LUMEN_EXPORT lumen_status lumen_wait_progress(lumen_client *c, const lumen_ref *refs, size_t n,
                                              int64_t timeout_ms, const char *label, int *ready,
                                              size_t *num_done);

/* The objects are no longer needed by this client; the cluster may drop them
 * (a task still to run that takes one keeps it until it ran). */
LUMEN_EXPORT lumen_status lumen_free(lumen_client *c, const lumen_ref *refs, size_t n);

/* Split jobs: one task of `function` per input, refs back at once (out[n]). */
LUMEN_EXPORT lumen_status lumen_map(lumen_client *c, const char *function, const lumen_arg *inputs, size_t n,
                                    const lumen_call_opts *opts, lumen_ref *out);

/*
 * Combines n refs pairwise in a tree of tasks inside the cluster: `function`
 * takes two args and returns their combination. *out is the root's future
 * (for n == 1, refs[0] itself).
 */
LUMEN_EXPORT lumen_status lumen_reduce(lumen_client *c, const char *function, const lumen_ref *refs, size_t n,
                                       const lumen_call_opts *opts, lumen_ref *out);

/*
 * Ships a function library (.so built with <lumen/remote.h>) to the cluster:
 * it is stored as a content-addressed object and workers load it the first
 * time a task needs it. It becomes the client's default library for calls;
 * *out (may be NULL) names it for lumen_call_opts.library.
 */
LUMEN_EXPORT lumen_status lumen_library_upload(lumen_client *c, const char *path, lumen_ref *out);

/* ------------------------------------------------------------- actors */

/*
 * An actor: an instance of a class registered with LUMEN_ACTOR in a function
 * library, living in one worker, whose methods run there one at a time
 * against its private state. A handle is a plain value (the actor's id): copy
 * it, pass it to tasks as lumen_arg_actor, rebuild it with lumen_actor_from_bytes.
 */
typedef struct lumen_actor {
    uint8_t id[16];
} lumen_actor;

typedef struct lumen_actor_opts {
    const char *name;          /* NULL: anonymous. Else unique among the cluster's live actors;
                                  other clients find it with lumen_actor_get_named */
    uint32_t max_restarts;     /* times it is re-created (constructor run again, on another
                                  worker) after its worker or process dies; 0: it stays dead */
    uint32_t max_task_retries; /* times a method call that was running when the actor died (its
                                  process crashed or was killed, or its worker died) is run again
                                  on the restarted actor; 0: such calls fail (ACTOR_DIED) */
    int64_t timeout_ms;        /* run time limit of the constructor and of each method call;
                                  0: the worker's default. A call over it ends the actor. */
    uint64_t memory_limit;     /* bytes the actor may allocate; 0: the worker's default */
    const lumen_ref *library;  /* uploaded library holding the class; NULL: the client's default */
} lumen_actor_opts;

/*
 * Creates an actor of `class_name` ("library.Class"): the scheduler places it
 * on a worker, which runs the constructor with args. Returns at once; calls
 * made meanwhile run once it is up. A constructor's failure fails every call
 * with its error. ALREADY_EXISTS when opts->name is taken. The actor belongs to
 * the client's job and ends with it.
 */
LUMEN_EXPORT lumen_status lumen_actor_new(lumen_client *c, const char *class_name, const lumen_arg *args,
                                          size_t nargs, const lumen_actor_opts *opts, lumen_actor *out);

/*
 * Calls a method and returns at once: *out is a future for its result (read it
 * with lumen_get / lumen_wait, pass it to tasks and other calls). Calls made by
 * one client to one actor run in the order they were made. The call goes to the
 * actor's worker directly, not through the scheduler. Errors of the method
 * (unknown method, failure, the actor dying) are reported by lumen_get on *out.
 */
LUMEN_EXPORT lumen_status lumen_actor_call(lumen_client *c, lumen_actor actor, const char *method,
                                           const lumen_arg *args, size_t nargs, lumen_ref *out);

/* Ends the actor (no restart); calls not yet run fail. NOT_FOUND for an unknown actor. */
LUMEN_EXPORT lumen_status lumen_actor_kill(lumen_client *c, lumen_actor actor);

/* The live actor named `name`, waiting up to timeout_ms for it to be created
 * (0: no wait); NOT_FOUND when there is none. */
LUMEN_EXPORT lumen_status lumen_actor_get_named(lumen_client *c, const char *name, int64_t timeout_ms,
                                                lumen_actor *out);

/* A handle as a task argument (its 16 id bytes, inline), and back. */
static inline lumen_arg lumen_arg_actor(const lumen_actor *actor) {
    return lumen_arg_bytes(actor->id, sizeof actor->id);
}
LUMEN_EXPORT lumen_status lumen_actor_from_bytes(const void *data, size_t len, lumen_actor *out);

/* Its id as 32 hex digits (the form in Redis keys): out holds 33 bytes. */
LUMEN_EXPORT char *lumen_actor_hex(lumen_actor actor, char out[33]);

#ifdef __cplusplus
}
#endif
#endif /* LUMEN_LUMEN_H */

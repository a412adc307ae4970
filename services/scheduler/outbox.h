/*
 * outbox.h - what the scheduler decided to say, said once its lock is
 * released: answers to the calls it holds, and requests to nodes (RunTasks
 * batches, stops, cancels, cleanups), packed under the lock from the state
 * they describe. The state's modules only fill it; service.c sends it, so
 * no RPC starts (and no peer is waited for) while the lock is held.
 */
#ifndef LM_SCHED_OUTBOX_H
#define LM_SCHED_OUTBOX_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

#include "status.h"

typedef struct lm_rpc_call lm_rpc_call;
struct dispatch_batch;

/* A call to answer. */
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

/* The requests the scheduler makes of nodes. */
typedef enum sched_request_kind {
    SCHED_RUN_TASKS,      /* worker: a batch of tasks (its outcome: dispatch_outcome) */
    SCHED_STOP_ACTOR,     /* worker */
    SCHED_CANCEL_TASK,    /* worker: a task of an ended job */
    SCHED_RELEASE_JOB,    /* object store: an ended job's objects */
    SCHED_DELETE_OBJECTS, /* object store: objects nobody holds */
} sched_request_kind;

typedef struct sched_request {
    sched_request_kind kind;
    char *addr;
    void *bytes; /* the packed request */
    size_t len;
    struct dispatch_batch *batch; /* SCHED_RUN_TASKS: the tasks it carries */
} sched_request;

typedef struct outbox {
    answer *answers;
    size_t n, cap;
    sched_request *requests;
    size_t nrequests, requests_cap;
} outbox;

void sched_outbox_add(outbox *o, answer a);
/* Shorthands: answer with a heap reply (freed with reply_free once sent), or fail. */
void sched_outbox_reply(outbox *o, lm_rpc_call *call, ProtobufCMessage *reply, void (*reply_free)(ProtobufCMessage *));
void sched_outbox_fail(outbox *o, lm_rpc_call *call, lumen_status st);
/* Packs req, to be sent to addr. */
void sched_outbox_request(outbox *o, sched_request_kind kind, const char *addr, const ProtobufCMessage *req,
                          struct dispatch_batch *batch);
/* Whether there is anything to send. */
static inline bool sched_outbox_empty(const outbox *o) { return o->n == 0 && o->nrequests == 0; }
/* Frees what is left unsent (answers must have been sent). */
void sched_outbox_clear(outbox *o);

#endif

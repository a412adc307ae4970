/*
 * input_limits.h - what Lumen's services accept from the network, in one place.
 *
 * Every limit is checked where the input arrives and refused with a message
 * that names the limit and the value ("5000 arguments exceed the limit of
 * 4096"): INVALID_ARGUMENT for a malformed or oversized field of a request,
 * RESOURCE_EXHAUSTED for sizes and counts that would cost the service memory
 * or time. The service answers the one request and keeps serving.
 *
 *   what                         limit                       checked by
 *   one gRPC message             LM_LIMIT_MESSAGE_BYTES      gRPC itself (RESOURCE_EXHAUSTED,
 *                                (the worker's:              "received message larger than max")
 *                                LM_LIMIT_WORKER_MESSAGE_BYTES)
 *   one object                   objstore.max_object_bytes   chunk.c (the store's Put)
 *                                (config, default 64 GiB)
 *   chunks of one object         LM_LIMIT_OBJECT_CHUNKS      chunk.c
 *   tasks in one request         LM_LIMIT_BATCH_TASKS        SubmitTasks, RunTasks
 *   arguments of one task        LM_LIMIT_TASK_ARGS          SubmitTasks (the task fails), RunTasks
 *   function and method names    LM_LIMIT_NAME_BYTES         SubmitTasks (the task fails), RunTasks
 *   ids                          exactly LM_ID_BYTES         every handler (lm_limits_id)
 *   field numbers of a task      1..LM_LIMIT_FIELD_NUMBER    SubmitTasks (the task fails), RunTasks
 *   a task's log (TaskResult)    LM_LIMIT_TASK_LOG_BYTES     TaskDone (cut to it, head kept; tasklog.h)
 */
#ifndef LM_INPUT_LIMITS_H
#define LM_INPUT_LIMITS_H

#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "common.pb-c.h"
#include "id.h"
#include "status.h"
#include "tasklog.h"

/* The largest request or stream message a Lumen server decodes (rpc.h's
 * LM_RPC_DEFAULT_MAX_MESSAGE, checked equal in rpc_server.c)... */
#define LM_LIMIT_MESSAGE_BYTES (4u << 20)
/* ...but the worker's: RunTasks and CallActor batches carry the inline
 * arguments of many tasks (worker.c's SERVER_MAX_MESSAGE). */
#define LM_LIMIT_WORKER_MESSAGE_BYTES (64u << 20)

/* Chunks in one object stream. Senders use chunks of 4 KiB at the least
 * (objstore.chunk_bytes), which makes this 64 GiB, the default object limit;
 * it bounds the work a stream of tiny chunks can cause. */
#define LM_LIMIT_OBJECT_CHUNKS (1u << 24)

/* Tasks in one SubmitTasks or RunTasks: the scheduler admits a request under
 * its lock. Clients send batches of at most 4096. */
#define LM_LIMIT_BATCH_TASKS 16384

/* Arguments of one task or actor call: each one is fetched, placed and
 * handed to the executor separately. */
#define LM_LIMIT_TASK_ARGS 4096

/* What a task wrote to stdout and stderr, as a worker reports it: workers
 * cut it to this, and the scheduler cuts a longer one the same way rather
 * than refuse the results it came with. */
#define LM_LIMIT_TASK_LOG_BYTES LM_TASK_LOG_MAX

/* Function ("library.name"), method and actor class names, in bytes. */
#define LM_LIMIT_NAME_BYTES 256

/* A 16-byte id field; INVALID_ARGUMENT naming the field and its length. */
static inline lumen_status lm_limits_id(ProtobufCBinaryData field, const char *what, lm_id *out) {
    if (lm_id_from_bytes(field.data, field.len, out)) return lm_ok();
    return lm_status(LUMEN_INVALID_ARGUMENT, "%s must be %d bytes, got %zu", what, LM_ID_BYTES, field.len);
}

/* A name of 1..LM_LIMIT_NAME_BYTES bytes (0..: when it may be empty). */
static inline lumen_status lm_limits_name(const char *name, const char *what, bool may_be_empty) {
    size_t len = name != NULL ? strlen(name) : 0;
    if (len == 0 && !may_be_empty) return lm_status(LUMEN_INVALID_ARGUMENT, "%s is empty", what);
    if (len > LM_LIMIT_NAME_BYTES)
        return lm_status(LUMEN_INVALID_ARGUMENT, "%s of %zu bytes exceeds the limit of %d bytes", what, len,
                         LM_LIMIT_NAME_BYTES);
    return lm_ok();
}

/* The largest field number protobuf allows. */
#define LM_LIMIT_FIELD_NUMBER 536870911u

/*
 * A decoded message a service may pass on: protobuf-c accepts field numbers
 * 0 and above LM_LIMIT_FIELD_NUMBER (spelled as over-long varints) as unknown
 * fields, keeps them, and re-packs them into bytes that no one decodes - a
 * worker would refuse the RunTasks carrying such a spec. INVALID_ARGUMENT
 * naming the message and the field number; nested messages are checked too.
 */
static inline lumen_status lm_limits_well_formed(const ProtobufCMessage *m) {
    for (unsigned i = 0; i < m->n_unknown_fields; i++) {
        uint32_t field = m->unknown_fields[i].tag;
        if (field == 0 || field > LM_LIMIT_FIELD_NUMBER)
            return lm_status(LUMEN_INVALID_ARGUMENT, "%s: field number %u is not valid protobuf",
                             m->descriptor->name, field);
    }
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned f = 0; f < d->n_fields; f++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[f];
        if (fd->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        const char *member = (const char *)m + fd->offset;
        const char *quantifier = (const char *)m + fd->quantifier_offset;
        const ProtobufCMessage *const *subs = (const ProtobufCMessage *const *)member;
        size_t n = 1;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            subs = *(const ProtobufCMessage *const *const *)member;
            n = *(const size_t *)quantifier;
        } else if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && *(const uint32_t *)quantifier != fd->id) {
            continue; /* another member of the oneof is set */
        }
        for (size_t k = 0; k < n; k++) {
            lumen_status st = subs[k] != NULL ? lm_limits_well_formed(subs[k]) : lm_ok();
            if (!LM_IS_OK(st)) return st;
        }
    }
    return lm_ok();
}

/* The limits of one task spec other than its ids: well-formed, names and
 * argument count. */
static inline lumen_status lm_limits_spec(const Lumen__TaskSpec *spec) {
    lumen_status st = lm_limits_well_formed(&spec->base);
    if (LM_IS_OK(st)) st = lm_limits_name(spec->function, "function name", false);
    if (LM_IS_OK(st)) st = lm_limits_name(spec->method, "method name", true);
    if (LM_IS_OK(st) && spec->n_args > LM_LIMIT_TASK_ARGS)
        st = lm_status(LUMEN_INVALID_ARGUMENT, "%zu arguments exceed the limit of %d", spec->n_args,
                       LM_LIMIT_TASK_ARGS);
    return st;
}

/* A request's task count against LM_LIMIT_BATCH_TASKS (RESOURCE_EXHAUSTED). */
static inline lumen_status lm_limits_batch(size_t n, const char *request) {
    if (n <= LM_LIMIT_BATCH_TASKS) return lm_ok();
    return lm_status(LUMEN_RESOURCE_EXHAUSTED, "%s: %zu tasks exceed the limit of %d per request", request, n,
                     LM_LIMIT_BATCH_TASKS);
}

#endif

/* outbox.c - see outbox.h. Out of memory here is fatal, as everywhere in
 * the scheduler's state: a lost answer would leave a client waiting. */
#include "outbox.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

static void *grow(void *items, size_t *cap, size_t size) {
    *cap = *cap ? 2 * *cap : 8;
    void *bigger = realloc(items, *cap * size);
    if (bigger == NULL) lm_fatal("the scheduler is out of memory (outbox of %zu)", *cap);
    return bigger;
}

void sched_outbox_add(outbox *o, answer a) {
    if (o->n == o->cap) o->answers = grow(o->answers, &o->cap, sizeof *o->answers);
    o->answers[o->n++] = a;
}

void sched_outbox_reply(outbox *o, lm_rpc_call *call, ProtobufCMessage *reply, void (*reply_free)(ProtobufCMessage *)) {
    sched_outbox_add(o, (answer){call, reply, reply_free, lm_ok(), NULL, NULL});
}

void sched_outbox_fail(outbox *o, lm_rpc_call *call, lumen_status st) {
    sched_outbox_add(o, (answer){call, NULL, NULL, st, NULL, NULL});
}

void sched_outbox_request(outbox *o, sched_request_kind kind, const char *addr, const ProtobufCMessage *req,
                          struct dispatch_batch *batch) {
    size_t len = protobuf_c_message_get_packed_size(req);
    sched_request r = {kind, strdup(addr), malloc(len ? len : 1), len, batch};
    if (r.addr == NULL || r.bytes == NULL) lm_fatal("the scheduler is out of memory (a request of %zu bytes)", len);
    protobuf_c_message_pack(req, r.bytes);
    if (o->nrequests == o->requests_cap) o->requests = grow(o->requests, &o->requests_cap, sizeof *o->requests);
    o->requests[o->nrequests++] = r;
}

void sched_outbox_clear(outbox *o) {
    for (size_t i = 0; i < o->nrequests; i++) {
        free(o->requests[i].addr);
        free(o->requests[i].bytes);
    }
    free(o->requests);
    free(o->answers);
    memset(o, 0, sizeof *o);
}

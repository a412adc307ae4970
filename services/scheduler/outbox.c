/* outbox.c - see outbox.h. Out of memory here is fatal (vec.h), as
 * everywhere in the scheduler's state: a lost answer would leave a client
 * waiting. */
#include "outbox.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "vec.h"

void sched_outbox_add(outbox *o, answer a) {
    o->answers = lm_vec_grow_or_die(o->answers, &o->cap, o->n + 1, sizeof *o->answers, 8, "the scheduler's outbox");
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
    o->requests = lm_vec_grow_or_die(o->requests, &o->requests_cap, o->nrequests + 1, sizeof *o->requests, 8,
                                     "the scheduler's outbox");
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

/* objclient.c - see objclient.h. */
#include "objclient.h"

#include <stdlib.h>
#include <string.h>

#include "chunk.h"
#include "objstore.pb-c.h"

static lm_rpc_method method(const char *name) {
    lm_rpc_method m = {0};
    lm_rpc_method_find(&lumen__object_store__descriptor, name, &m);
    return m;
}

/* Names the object in an error unless the store's message already does. */
static lumen_status about(lumen_status st, lm_id id) {
    if (LM_IS_OK(st)) return st;
    char hex[LM_ID_HEX_LEN + 1];
    lm_id_to_hex(id, hex);
    return strstr(st.msg, hex) ? st : lm_status_wrap(st, "object %s", hex);
}

/* ------------------------------------------------------------------ put */

static lumen_status next_chunk(void *arg, const ProtobufCMessage **msg) {
    Lumen__ObjectChunk *c = lm_chunker_next(arg);
    *msg = c ? &c->base : NULL;
    return lm_ok();
}

lumen_status lm_objstore_put(lm_rpc_client *cli, const char *addr, lm_id id, lm_id job, const void *data,
                             size_t len, int64_t timeout_ms, lm_objstore_put_info *info) {
    if (info != NULL) *info = (lm_objstore_put_info){0};
    lm_chunker chunker;
    lm_chunker_init(&chunker, id, job, data, len, 0);
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_write_stream(cli, addr, method("Put"), next_chunk, &chunker, &out, timeout_ms);
    if (LM_IS_OK(st)) {
        Lumen__PutReply *reply = (Lumen__PutReply *)out;
        if (info != NULL) {
            info->already_present = reply->already_present;
            lm_id_from_bytes(reply->node_id.data, reply->node_id.len, &info->store);
        }
        if (reply->size != len)
            st = lm_status(LUMEN_INTERNAL, "store %s holds %llu bytes, %zu were put", addr,
                           (unsigned long long)reply->size, len);
    }
    lm_rpc_message_free(out);
    return about(st, id);
}

/* ------------------------------------------------------------------ get */

typedef struct get_state {
    lm_chunk_asm asm_;
    lm_id want;
    const char *addr;
} get_state;

static lumen_status on_chunk(void *arg, const ProtobufCMessage *msg) {
    get_state *g = arg;
    lumen_status st = lm_chunk_asm_feed(&g->asm_, (const Lumen__ObjectChunk *)msg);
    if (LM_IS_OK(st) && !lm_id_equal(g->asm_.id, g->want))
        st = lm_status(LUMEN_INTERNAL, "store %s answered with another object", g->addr);
    return st;
}

/* Streams the object (or the range) into the assembler opts describe; on
 * success *data and *len are what lm_chunk_asm_take gives. */
static lumen_status get(lm_rpc_client *cli, const char *addr, lm_id id, uint64_t offset, uint64_t length,
                        lm_id job, lm_id store, bool wait, int64_t timeout_ms, const lm_chunk_asm_opts *opts, void **data,
                        size_t *len) {
    *data = NULL;
    *len = 0;
    Lumen__GetRequest req = LUMEN__GET_REQUEST__INIT;
    req.object_id.data = id.bytes;
    req.object_id.len = LM_ID_BYTES;
    if (!lm_id_is_zero(job)) {
        req.job_id.data = job.bytes;
        req.job_id.len = LM_ID_BYTES;
    }
    if (!lm_id_is_zero(store)) {
        req.store_id.data = store.bytes;
        req.store_id.len = LM_ID_BYTES;
    }
    req.wait = wait;
    req.offset = offset;
    req.length = length;
    get_state g = {.want = id, .addr = addr};
    lm_chunk_asm_init(&g.asm_, opts);
    lumen_status st = lm_rpc_read_stream(cli, addr, method("Get"), &req.base, timeout_ms, on_chunk, &g);
    if (LM_IS_OK(st)) st = lm_chunk_asm_finish(&g.asm_);
    if (LM_IS_OK(st)) *data = lm_chunk_asm_take(&g.asm_, len);
    lm_chunk_asm_fini(&g.asm_);
    return about(st, id);
}

lumen_status lm_objstore_get_range(lm_rpc_client *cli, const char *addr, lm_id id, uint64_t offset,
                                   uint64_t length, bool wait, int64_t timeout_ms, void **data, size_t *len) {
    return get(cli, addr, id, offset, length, (lm_id){{0}}, (lm_id){{0}}, wait, timeout_ms, NULL, data, len);
}

lumen_status lm_objstore_get(lm_rpc_client *cli, const char *addr, lm_id id, bool wait, int64_t timeout_ms,
                             void **data, size_t *len) {
    return get(cli, addr, id, 0, 0, (lm_id){{0}}, (lm_id){{0}}, wait, timeout_ms, NULL, data, len);
}

lumen_status lm_objstore_get_into(lm_rpc_client *cli, const char *addr, lm_id id, lm_id job, lm_id store, bool wait,
                                  int64_t timeout_ms, lm_chunk_alloc_fn alloc, void *alloc_arg, size_t *len) {
    lm_chunk_asm_opts opts = {.alloc = alloc, .alloc_arg = alloc_arg};
    void *data;
    return get(cli, addr, id, 0, 0, job, store, wait, timeout_ms, &opts, &data, len);
}

/* ------------------------------------------------------ delete, release */

lumen_status lm_objstore_delete(lm_rpc_client *cli, const char *addr, const lm_id *ids, size_t n,
                                int64_t timeout_ms, uint32_t *deleted) {
    if (deleted != NULL) *deleted = 0;
    Lumen__DeleteRequest req = LUMEN__DELETE_REQUEST__INIT;
    ProtobufCBinaryData *bins = calloc(n ? n : 1, sizeof *bins);
    if (bins == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "delete of %zu objects: out of memory", n);
    for (size_t i = 0; i < n; i++) {
        bins[i].data = (uint8_t *)ids[i].bytes;
        bins[i].len = LM_ID_BYTES;
    }
    req.n_object_ids = n;
    req.object_ids = bins;
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_unary(cli, addr, method("Delete"), &req.base, &out, timeout_ms);
    free(bins);
    if (LM_IS_OK(st) && deleted != NULL) *deleted = ((Lumen__DeleteReply *)out)->deleted;
    lm_rpc_message_free(out);
    return n == 1 ? about(st, ids[0]) : st;
}

lumen_status lm_objstore_release_job(lm_rpc_client *cli, const char *addr, lm_id job, int64_t timeout_ms,
                                     uint32_t *deleted) {
    if (deleted != NULL) *deleted = 0;
    Lumen__ReleaseJobRequest req = LUMEN__RELEASE_JOB_REQUEST__INIT;
    req.job_id.data = job.bytes;
    req.job_id.len = LM_ID_BYTES;
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_unary(cli, addr, method("ReleaseJob"), &req.base, &out, timeout_ms);
    if (LM_IS_OK(st) && deleted != NULL) *deleted = ((Lumen__ReleaseJobReply *)out)->deleted;
    lm_rpc_message_free(out);
    if (LM_IS_OK(st)) return st;
    char hex[LM_ID_HEX_LEN + 1];
    return lm_status_wrap(st, "release of job %s", lm_id_to_hex(job, hex));
}

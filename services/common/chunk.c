/* chunk.c - see chunk.h. */
#include "chunk.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "input_limits.h"
#include "rpc.h"

#define HUGE_PAGE (2u << 20)

void *lm_chunk_buffer_alloc(uint64_t size) {
    if (size > SIZE_MAX - 1) return NULL;
    char *p = malloc((size_t)size + 1);
    if (p != NULL) p[size] = '\0'; /* readers may treat a value as a C string */
#ifdef MADV_HUGEPAGE
    /* Big mallocs are fresh mmaps: huge pages turn 512 faults into one.
     * Only the 2 MiB-aligned interior can use them; advice failing is fine. */
    if (p != NULL && size >= 4 * (uint64_t)HUGE_PAGE) {
        uintptr_t start = ((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
        uintptr_t end = ((uintptr_t)p + size) & ~(uintptr_t)(HUGE_PAGE - 1);
        if (end > start) (void)madvise((void *)start, end - start, MADV_HUGEPAGE);
    }
#endif
    return p;
}

void lm_chunk_asm_init(lm_chunk_asm *a, const lm_chunk_asm_opts *opts) {
    memset(a, 0, sizeof *a);
    if (opts != NULL) a->opts = *opts;
}

static lumen_status refuse(lm_chunk_asm *a, lumen_status st) {
    a->failed = true;
    return st;
}

/* The first chunk: who the object is, how big, and where its bytes go. */
static lumen_status start(lm_chunk_asm *a, const Lumen__ObjectChunk *c) {
    if (!lm_id_from_bytes(c->object_id.data, c->object_id.len, &a->id))
        return lm_status(LUMEN_INVALID_ARGUMENT,
                         "first chunk must carry a 16-byte object id (got %zu bytes)", c->object_id.len);
    if (c->job_id.len != 0 && !lm_id_from_bytes(c->job_id.data, c->job_id.len, &a->job))
        return lm_status(LUMEN_INVALID_ARGUMENT, "object %s: job id must be 16 bytes (got %zu)",
                         lm_id_str(a->id).s, c->job_id.len);
    uint64_t limit = a->opts.max_bytes;
    if ((limit != 0 && c->total_size > limit) || c->total_size > SIZE_MAX - 1) {
        if (limit == 0 || limit > SIZE_MAX - 1) limit = SIZE_MAX - 1;
        return lm_status(LUMEN_RESOURCE_EXHAUSTED, "object %s: object of %llu bytes exceeds the limit of %llu",
                         lm_id_str(a->id).s, (unsigned long long)c->total_size, (unsigned long long)limit);
    }
    a->total = c->total_size;
    if (a->opts.buf != NULL) {
        if (a->total > a->opts.cap)
            return lm_status(LUMEN_RESOURCE_EXHAUSTED, "object %s: %llu bytes do not fit in a buffer of %llu",
                             lm_id_str(a->id).s, (unsigned long long)a->total, (unsigned long long)a->opts.cap);
        a->data = a->opts.buf;
    } else if (a->opts.alloc != NULL) {
        lumen_status st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "no buffer");
        a->data = a->opts.alloc(a->opts.alloc_arg, a->total, &st);
        if (a->data == NULL)
            return strstr(st.msg, lm_id_str(a->id).s) ? st : lm_status_wrap(st, "object %s", lm_id_str(a->id).s);
    } else {
        a->data = lm_chunk_buffer_alloc(a->total);
        if (a->data == NULL)
            return lm_status(LUMEN_RESOURCE_EXHAUSTED, "object %s: cannot allocate %llu bytes", lm_id_str(a->id).s,
                             (unsigned long long)a->total);
        a->owns_buf = true;
    }
    a->started = true;
    return lm_ok();
}

/* A later chunk may repeat the first one's id, size and job, not change them. */
static lumen_status check_repeat(const lm_chunk_asm *a, const Lumen__ObjectChunk *c) {
    lm_id other;
    if (c->object_id.len != 0 &&
        (!lm_id_from_bytes(c->object_id.data, c->object_id.len, &other) || !lm_id_equal(other, a->id)))
        return lm_status(LUMEN_INVALID_ARGUMENT, "object %s: a chunk at offset %llu names another object",
                         lm_id_str(a->id).s, (unsigned long long)c->offset);
    if (c->total_size != 0 && c->total_size != a->total)
        return lm_status(LUMEN_INVALID_ARGUMENT,
                         "object %s: total_size changed from %llu to %llu at offset %llu", lm_id_str(a->id).s,
                         (unsigned long long)a->total, (unsigned long long)c->total_size,
                         (unsigned long long)c->offset);
    if (c->job_id.len != 0 &&
        (!lm_id_from_bytes(c->job_id.data, c->job_id.len, &other) || !lm_id_equal(other, a->job)))
        return lm_status(LUMEN_INVALID_ARGUMENT, "object %s: job id changed at offset %llu", lm_id_str(a->id).s,
                         (unsigned long long)c->offset);
    return lm_ok();
}

/* Every chunk after the first moves the stream forward, and there are not
 * too many of them: a sender cannot keep a stream (and its buffer) busy. */
static lumen_status check_progress(const lm_chunk_asm *a, const Lumen__ObjectChunk *c) {
    uint64_t limit = a->opts.max_chunks ? a->opts.max_chunks : LM_LIMIT_OBJECT_CHUNKS;
    if (a->chunks >= limit)
        return lm_status(LUMEN_RESOURCE_EXHAUSTED, "object %s: more than %llu chunks (the limit) at offset %llu",
                         lm_id_str(a->id).s, (unsigned long long)limit, (unsigned long long)c->offset);
    if (a->chunks > 0 && c->data.len == 0)
        return lm_status(LUMEN_INVALID_ARGUMENT, "object %s: empty chunk at offset %llu (only an empty object's "
                         "single chunk may be empty)", lm_id_str(a->id).s, (unsigned long long)c->offset);
    return lm_ok();
}

lumen_status lm_chunk_asm_feed(lm_chunk_asm *a, const Lumen__ObjectChunk *c) {
    if (a->failed) return lm_status(LUMEN_INVALID_ARGUMENT, "object stream already failed");
    lumen_status st = a->started ? check_repeat(a, c) : start(a, c);
    if (LM_IS_OK(st)) st = check_progress(a, c);
    if (!LM_IS_OK(st)) return refuse(a, st);
    if (c->offset != a->received)
        return refuse(a, lm_status(LUMEN_INVALID_ARGUMENT, "object %s: chunk at offset %llu, expected offset %llu",
                                   lm_id_str(a->id).s, (unsigned long long)c->offset,
                                   (unsigned long long)a->received));
    if (c->data.len > a->total - a->received)
        return refuse(a, lm_status(LUMEN_INVALID_ARGUMENT,
                                   "object %s: chunk of %zu bytes at offset %llu runs past total_size %llu",
                                   lm_id_str(a->id).s, c->data.len, (unsigned long long)c->offset,
                                   (unsigned long long)a->total));
    if (c->data.len > 0) memcpy(a->data + a->received, c->data.data, c->data.len);
    a->received += c->data.len;
    a->chunks++;
    return lm_ok();
}

lumen_status lm_chunk_asm_finish(const lm_chunk_asm *a) {
    if (a->failed) return lm_status(LUMEN_INVALID_ARGUMENT, "object stream failed");
    if (!a->started) return lm_status(LUMEN_INVALID_ARGUMENT, "object stream ended with no chunks");
    if (a->received != a->total)
        return lm_status(LUMEN_INVALID_ARGUMENT, "object %s: got %llu of %llu bytes", lm_id_str(a->id).s,
                         (unsigned long long)a->received, (unsigned long long)a->total);
    return lm_ok();
}

void *lm_chunk_asm_take(lm_chunk_asm *a, size_t *len) {
    if (!a->started) return NULL;
    if (len != NULL) *len = (size_t)a->total;
    a->owns_buf = false;
    return a->data;
}

void lm_chunk_asm_fini(lm_chunk_asm *a) {
    if (a == NULL) return;
    if (a->owns_buf) free(a->data);
    a->owns_buf = false;
    a->data = NULL;
}

/* ---------------------------------------------------------------- chunker */

void lm_chunker_init(lm_chunker *c, lm_id id, lm_id job, const void *data, uint64_t len, size_t chunk_bytes) {
    memset(c, 0, sizeof *c);
    c->data = data;
    c->len = len;
    c->chunk_bytes = chunk_bytes ? chunk_bytes : LM_RPC_CHUNK_BYTES;
    c->id = id;
    c->job = job;
}

Lumen__ObjectChunk *lm_chunker_next(lm_chunker *c) {
    if (c->done) return NULL;
    lumen__object_chunk__init(&c->msg);
    if (c->pos == 0) { /* the first chunk names the object */
        c->msg.object_id.data = c->id.bytes;
        c->msg.object_id.len = LM_ID_BYTES;
        c->msg.total_size = c->len;
        if (!lm_id_is_zero(c->job)) {
            c->msg.job_id.data = c->job.bytes;
            c->msg.job_id.len = LM_ID_BYTES;
        }
    }
    uint64_t n = c->len - c->pos < c->chunk_bytes ? c->len - c->pos : c->chunk_bytes;
    c->msg.offset = c->pos;
    c->msg.data.len = (size_t)n;
    c->msg.data.data = c->data != NULL ? (uint8_t *)c->data + c->pos : NULL;
    c->pos += n;
    if (c->pos == c->len) c->done = true;
    return &c->msg;
}

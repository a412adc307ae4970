/*
 * fuzz_chunk - the chunk assembler (chunk.c) fed any sequence of chunks, and
 * the chunker's output fed back to it.
 *
 * Input: a 4-byte head, then chunk records until the input ends.
 *   head:   [0] bits 0-1 where the bytes go (0 malloc, 1 a buffer of the
 *               caller's, 2 an alloc callback, 3 malloc then taken),
 *           [1] that buffer's or callback's capacity / 64,
 *           [2] max_bytes / 64 (0: none), [3] max_chunks (0: the default)
 *   record: flags, then the fields the flags ask for, then the data:
 *           flags bits 0-1 object_id: absent, the stream's, another id, a
 *                           17-byte one; bit 2 total_size (2 bytes LE);
 *                           bits 3-4 job_id: absent, the stream's, another,
 *                           a 15-byte one; bit 5 an explicit offset (2 bytes
 *                           LE) instead of where the stream is;
 *           then 1 byte of data length and that many bytes.
 * Sizes stay below 64 KiB, so every buffer is small.
 *
 * Checks: errors are INVALID_ARGUMENT or RESOURCE_EXHAUSTED with a message;
 * after one, nothing more is accepted; an accepted chunk moves the stream by
 * its size, never past total_size nor past max_chunks; a stream that
 * finishes holds exactly the bytes fed (kept in a model alongside); cutting
 * it again with the chunker and assembling that gives the same bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunk.h"
#include "input_limits.h"
#include "log.h"

#define MAX_SIZE 65536

typedef struct reader {
    const uint8_t *p, *end;
} reader;

static unsigned take_byte(reader *r) { return r->p < r->end ? *r->p++ : 0; }

static unsigned take_u16(reader *r) {
    unsigned lo = take_byte(r);
    return lo | take_byte(r) << 8;
}

static void fail(const char *why, const char *detail) {
    fprintf(stderr, "fuzz_chunk: %s: %s\n", why, detail);
    abort();
}

static const lm_id stream_id = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}};
static const lm_id other_id = {{16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}};
static uint8_t odd_id[17];
static uint8_t caller_buf[256 * 64];

/* An id field as the flags ask: absent, the stream's, another, or `bad` bytes long. */
static ProtobufCBinaryData id_field(unsigned kind, size_t bad) {
    ProtobufCBinaryData b = {0, NULL};
    if (kind == 1) b = (ProtobufCBinaryData){LM_ID_BYTES, (uint8_t *)stream_id.bytes};
    if (kind == 2) b = (ProtobufCBinaryData){LM_ID_BYTES, (uint8_t *)other_id.bytes};
    if (kind == 3) b = (ProtobufCBinaryData){bad, odd_id};
    return b;
}

/* The alloc callback's buffer: refused (with a reason) past its capacity. */
static void *alloc_cb(void *arg, uint64_t size, lumen_status *st) {
    uint64_t cap = *(const uint64_t *)arg;
    if (size > cap) {
        *st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "%llu bytes over the callback's %llu", (unsigned long long)size,
                        (unsigned long long)cap);
        return NULL;
    }
    return caller_buf;
}

static void check_error(lumen_status st) {
    if (st.code != LUMEN_INVALID_ARGUMENT && st.code != LUMEN_RESOURCE_EXHAUSTED)
        fail("an error of another code", st.msg);
    if (st.msg[0] == '\0') fail("an error without a message", lumen_code_name(st.code));
}

/* The next record as a chunk; its data points into the input. */
static Lumen__ObjectChunk next_chunk(reader *r, uint64_t at) {
    Lumen__ObjectChunk c = LUMEN__OBJECT_CHUNK__INIT;
    unsigned flags = take_byte(r);
    c.object_id = id_field(flags & 3, 17);
    if (flags & 4) c.total_size = take_u16(r);
    c.job_id = id_field((flags >> 3) & 3, 15);
    c.offset = (flags & 32) ? take_u16(r) : at;
    size_t len = take_byte(r);
    if (len > (size_t)(r->end - r->p)) len = (size_t)(r->end - r->p);
    c.data = (ProtobufCBinaryData){len, (uint8_t *)r->p};
    r->p += len;
    return c;
}

/* The assembled bytes, cut by the chunker and assembled again, are the same. */
static void rechunk(const lm_chunk_asm *a, size_t chunk_bytes) {
    lm_chunker ch;
    lm_chunker_init(&ch, a->id, a->job, a->data, a->total, chunk_bytes);
    lm_chunk_asm again;
    lm_chunk_asm_init(&again, NULL);
    for (Lumen__ObjectChunk *c; (c = lm_chunker_next(&ch)) != NULL;) {
        lumen_status st = lm_chunk_asm_feed(&again, c);
        if (!LM_IS_OK(st)) fail("the chunker's chunks are refused", st.msg);
    }
    lumen_status st = lm_chunk_asm_finish(&again);
    if (!LM_IS_OK(st)) fail("the chunker's stream is incomplete", st.msg);
    if (!lm_id_equal(again.id, a->id) || !lm_id_equal(again.job, a->job) || again.total != a->total ||
        (a->total > 0 && memcmp(again.data, a->data, a->total) != 0))
        fail("the chunker's stream assembles into other bytes", "");
    lm_chunk_asm_fini(&again);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    lm_log_set_level(LM_LOG_ERROR);
    memset(odd_id, 0xab, sizeof odd_id);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint8_t model[MAX_SIZE];
    reader r = {data, data + size};
    unsigned mode = take_byte(&r) & 3;
    uint64_t cap = (uint64_t)take_byte(&r) * 64;
    lm_chunk_asm_opts opts = {.max_bytes = (uint64_t)take_byte(&r) * 64, .max_chunks = take_byte(&r)};
    if (mode == 1) opts.buf = caller_buf, opts.cap = cap;
    if (mode == 2) opts.alloc = alloc_cb, opts.alloc_arg = &cap;
    uint64_t max_chunks = opts.max_chunks ? opts.max_chunks : LM_LIMIT_OBJECT_CHUNKS;

    lm_chunk_asm a;
    lm_chunk_asm_init(&a, &opts);
    bool failed = false;
    while (r.p < r.end) {
        uint64_t before = a.received;
        Lumen__ObjectChunk c = next_chunk(&r, a.received);
        lumen_status st = lm_chunk_asm_feed(&a, &c);
        if (!LM_IS_OK(st)) {
            check_error(st);
            failed = true;
            continue;
        }
        if (failed) fail("a chunk was accepted after an error", "");
        if (a.received != before + c.data.len || a.received > a.total || a.chunks > max_chunks)
            fail("an accepted chunk broke the stream's accounting", "");
        if (c.data.len > 0) memcpy(model + before, c.data.data, c.data.len);
    }
    lumen_status st = lm_chunk_asm_finish(&a);
    if (!LM_IS_OK(st)) {
        check_error(st);
    } else {
        if (failed) fail("a failed stream finished", "");
        if (a.total > 0 && memcmp(a.data, model, a.total) != 0)
            fail("the assembled bytes differ from those fed", "");
        rechunk(&a, 64 * (1 + (size % 16)));
    }
    if (mode == 3) free(lm_chunk_asm_take(&a, NULL)); /* NULL before the first chunk: fine */
    lm_chunk_asm_fini(&a);
    return 0;
}

/* Unit tests: the chunk assembler and chunker (services/common/chunk.h). */
#include <stdlib.h>
#include <string.h>

#include "chunk.h"
#include "rpc.h"
#include "test_util.h"

static lm_id id_of(uint8_t seed) {
    lm_id id;
    for (int i = 0; i < LM_ID_BYTES; i++) id.bytes[i] = (uint8_t)(seed + i);
    return id;
}

static uint8_t *pattern(size_t n) {
    uint8_t *p = calloc(n ? n : 1, 1);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 31 + 7);
    return p;
}

/* A chunk by hand: id and total only when first. */
static Lumen__ObjectChunk chunk(const lm_id *id, uint64_t total, uint64_t offset, const void *data,
                                size_t len) {
    Lumen__ObjectChunk c = LUMEN__OBJECT_CHUNK__INIT;
    if (id != NULL) {
        c.object_id.data = (uint8_t *)id->bytes;
        c.object_id.len = LM_ID_BYTES;
        c.total_size = total;
    }
    c.offset = offset;
    c.data.data = (uint8_t *)data;
    c.data.len = len;
    return c;
}

#define ASSERT_MSG(st, code, text)                                                 \
    do {                                                                           \
        lumen_status s_ = (st);                                                    \
        LM_ASSERT_CODE(s_, code);                                                  \
        if (strstr(s_.msg, text) == NULL) fprintf(stderr, "\nmessage: %s\n", s_.msg); \
        CU_ASSERT_PTR_NOT_NULL(strstr(s_.msg, text));                              \
    } while (0)

/* Feeds every chunk of a chunker into an assembler: the round trip. */
static void round_trip(size_t len, size_t chunk_bytes) {
    uint8_t *src = pattern(len);
    lm_id id = id_of(1), job = id_of(100);
    lm_chunker ch;
    lm_chunker_init(&ch, id, job, src, len, chunk_bytes);
    lm_chunk_asm a;
    lm_chunk_asm_init(&a, NULL);
    size_t chunks = 0;
    for (Lumen__ObjectChunk *c; (c = lm_chunker_next(&ch)) != NULL; chunks++) {
        CU_ASSERT_TRUE(c->data.len <= (chunk_bytes ? chunk_bytes : LM_RPC_CHUNK_BYTES));
        if (c->data.len > 0) CU_ASSERT_PTR_EQUAL(c->data.data, src + c->offset); /* no copy */
        LM_ASSERT_OK(lm_chunk_asm_feed(&a, c));
    }
    size_t cb = chunk_bytes ? chunk_bytes : LM_RPC_CHUNK_BYTES;
    CU_ASSERT_EQUAL(chunks, len == 0 ? 1 : (len + cb - 1) / cb);
    LM_ASSERT_OK(lm_chunk_asm_finish(&a));
    CU_ASSERT_TRUE(lm_id_equal(a.id, id));
    CU_ASSERT_TRUE(lm_id_equal(a.job, job));
    size_t got_len = 99;
    uint8_t *got = lm_chunk_asm_take(&a, &got_len);
    lm_chunk_asm_fini(&a); /* taken: nothing freed */
    CU_ASSERT_EQUAL(got_len, len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_EQUAL(memcmp(got, src, len), 0);
    free(got);
    free(src);
}

static void test_round_trips(void) {
    round_trip(0, 0);
    round_trip(1, 0);
    round_trip(LM_RPC_CHUNK_BYTES, 0);
    round_trip(LM_RPC_CHUNK_BYTES + 1, 0);
    round_trip(3 * LM_RPC_CHUNK_BYTES - 1, 0);
    round_trip(1000, 1); /* 1-byte chunks */
    round_trip(1000, 7);
}

static void test_empty_object_is_one_chunk(void) {
    lm_chunker ch;
    lm_chunker_init(&ch, id_of(2), (lm_id){{0}}, NULL, 0, 0);
    Lumen__ObjectChunk *c = lm_chunker_next(&ch);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->object_id.len, LM_ID_BYTES);
    CU_ASSERT_EQUAL(c->total_size, 0);
    CU_ASSERT_EQUAL(c->data.len, 0);
    CU_ASSERT_EQUAL(c->job_id.len, 0); /* zero job: not sent */
    CU_ASSERT_PTR_NULL(lm_chunker_next(&ch));
    CU_ASSERT_PTR_NULL(lm_chunker_next(&ch));
}

static void test_chunker_plans_without_data(void) {
    lm_chunker ch;
    lm_chunker_init(&ch, id_of(3), (lm_id){{0}}, NULL, 10, 4);
    uint64_t offsets[3], lens[3];
    int n = 0;
    for (Lumen__ObjectChunk *c; (c = lm_chunker_next(&ch)) != NULL && n < 3; n++) {
        CU_ASSERT_PTR_NULL(c->data.data);
        CU_ASSERT_EQUAL(c->object_id.len, n == 0 ? LM_ID_BYTES : 0);
        offsets[n] = c->offset;
        lens[n] = c->data.len;
    }
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT_EQUAL(offsets[0], 0);
    CU_ASSERT_EQUAL(offsets[1], 4);
    CU_ASSERT_EQUAL(offsets[2], 8);
    CU_ASSERT_EQUAL(lens[2], 2);
}

static void test_first_chunk_needs_id(void) {
    lm_chunk_asm a;
    lm_chunk_asm_init(&a, NULL);
    Lumen__ObjectChunk c = chunk(NULL, 0, 0, "x", 1);
    ASSERT_MSG(lm_chunk_asm_feed(&a, &c), LUMEN_INVALID_ARGUMENT, "16-byte object id");
    /* After an error nothing more is accepted. */
    lm_id id = id_of(4);
    Lumen__ObjectChunk good = chunk(&id, 1, 0, "x", 1);
    LM_ASSERT_CODE(lm_chunk_asm_feed(&a, &good), LUMEN_INVALID_ARGUMENT);
    LM_ASSERT_CODE(lm_chunk_asm_finish(&a), LUMEN_INVALID_ARGUMENT);
    lm_chunk_asm_fini(&a);

    lm_chunk_asm_init(&a, NULL);
    Lumen__ObjectChunk bad_job = chunk(&id, 1, 0, "x", 1);
    bad_job.job_id.data = (uint8_t *)"abc";
    bad_job.job_id.len = 3;
    ASSERT_MSG(lm_chunk_asm_feed(&a, &bad_job), LUMEN_INVALID_ARGUMENT, "job id must be 16 bytes");
    lm_chunk_asm_fini(&a);
}

static void test_offset_gap_and_overlap(void) {
    lm_id id = id_of(5);
    uint8_t data[8] = {0};
    lm_chunk_asm a;
    lm_chunk_asm_init(&a, NULL);
    Lumen__ObjectChunk c1 = chunk(&id, 8, 0, data, 4);
    LM_ASSERT_OK(lm_chunk_asm_feed(&a, &c1));
    Lumen__ObjectChunk gap = chunk(NULL, 0, 5, data, 3);
    ASSERT_MSG(lm_chunk_asm_feed(&a, &gap), LUMEN_INVALID_ARGUMENT, "chunk at offset 5, expected offset 4");
    lm_chunk_asm_fini(&a);

    lm_chunk_asm_init(&a, NULL);
    LM_ASSERT_OK(lm_chunk_asm_feed(&a, &c1));
    Lumen__ObjectChunk overlap = chunk(NULL, 0, 2, data, 2);
    ASSERT_MSG(lm_chunk_asm_feed(&a, &overlap), LUMEN_INVALID_ARGUMENT, "expected offset 4");
    lm_chunk_asm_fini(&a);

    lm_chunk_asm_init(&a, NULL); /* the first chunk must start at 0 */
    Lumen__ObjectChunk late = chunk(&id, 8, 4, data, 4);
    ASSERT_MSG(lm_chunk_asm_feed(&a, &late), LUMEN_INVALID_ARGUMENT, "expected offset 0");
    lm_chunk_asm_fini(&a);
}

static void test_data_past_total(void) {
    lm_id id = id_of(6);
    uint8_t data[8] = {0};
    lm_chunk_asm a;
    lm_chunk_asm_init(&a, NULL);
    Lumen__ObjectChunk c1 = chunk(&id, 6, 0, data, 4);
    LM_ASSERT_OK(lm_chunk_asm_feed(&a, &c1));
    Lumen__ObjectChunk c2 = chunk(NULL, 0, 4, data, 3);
    ASSERT_MSG(lm_chunk_asm_feed(&a, &c2), LUMEN_INVALID_ARGUMENT, "runs past total_size 6");
    lm_chunk_asm_fini(&a);

    lm_chunk_asm_init(&a, NULL); /* an empty object with bytes */
    Lumen__ObjectChunk e = chunk(&id, 0, 0, data, 1);
    ASSERT_MSG(lm_chunk_asm_feed(&a, &e), LUMEN_INVALID_ARGUMENT, "runs past total_size 0");
    lm_chunk_asm_fini(&a);
}

static void test_later_chunks_must_agree(void) {
    lm_id id = id_of(7), other = id_of(8);
    uint8_t data[8] = {0};
    lm_chunk_asm a;
    lm_chunk_asm_init(&a, NULL);
    Lumen__ObjectChunk c1 = chunk(&id, 8, 0, data, 4);
    LM_ASSERT_OK(lm_chunk_asm_feed(&a, &c1));
    Lumen__ObjectChunk same = chunk(&id, 8, 4, data, 2); /* repeating is fine */
    LM_ASSERT_OK(lm_chunk_asm_feed(&a, &same));
    Lumen__ObjectChunk foreign = chunk(&other, 8, 6, data, 2);
    ASSERT_MSG(lm_chunk_asm_feed(&a, &foreign), LUMEN_INVALID_ARGUMENT, "names another object");
    lm_chunk_asm_fini(&a);

    lm_chunk_asm_init(&a, NULL);
    LM_ASSERT_OK(lm_chunk_asm_feed(&a, &c1));
    Lumen__ObjectChunk resized = chunk(&id, 9, 4, data, 2);
    ASSERT_MSG(lm_chunk_asm_feed(&a, &resized), LUMEN_INVALID_ARGUMENT, "total_size changed from 8 to 9");
    lm_chunk_asm_fini(&a);
}

static void test_short_stream(void) {
    lm_id id = id_of(9);
    char hex[LM_ID_HEX_LEN + 1];
    lm_id_to_hex(id, hex);
    uint8_t data[8] = {0};
    lm_chunk_asm a;
    lm_chunk_asm_init(&a, NULL);
    ASSERT_MSG(lm_chunk_asm_finish(&a), LUMEN_INVALID_ARGUMENT, "no chunks");
    Lumen__ObjectChunk c1 = chunk(&id, 8, 0, data, 3);
    LM_ASSERT_OK(lm_chunk_asm_feed(&a, &c1));
    lumen_status st = lm_chunk_asm_finish(&a);
    ASSERT_MSG(st, LUMEN_INVALID_ARGUMENT, "got 3 of 8 bytes");
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, hex));
    lm_chunk_asm_fini(&a); /* frees the buffer it made */
}

static void test_max_size_boundary(void) {
    lm_id id = id_of(10);
    uint8_t data[16];
    memset(data, 0xab, sizeof data);
    lm_chunk_asm_opts opts = {.max_bytes = 16};
    lm_chunk_asm a;
    lm_chunk_asm_init(&a, &opts);
    Lumen__ObjectChunk exact = chunk(&id, 16, 0, data, 16);
    LM_ASSERT_OK(lm_chunk_asm_feed(&a, &exact));
    LM_ASSERT_OK(lm_chunk_asm_finish(&a));
    lm_chunk_asm_fini(&a);

    lm_chunk_asm_init(&a, &opts);
    Lumen__ObjectChunk over = chunk(&id, 17, 0, data, 16);
    ASSERT_MSG(lm_chunk_asm_feed(&a, &over), LUMEN_RESOURCE_EXHAUSTED,
               "object of 17 bytes exceeds the limit of 16");
    CU_ASSERT_FALSE(lm_chunk_asm_started(&a));
    lm_chunk_asm_fini(&a);

    /* Absurd sizes fail cleanly instead of trying to allocate. */
    lm_chunk_asm_init(&a, NULL);
    Lumen__ObjectChunk huge = chunk(&id, UINT64_MAX, 0, data, 1);
    LM_ASSERT_CODE(lm_chunk_asm_feed(&a, &huge), LUMEN_RESOURCE_EXHAUSTED);
    lm_chunk_asm_fini(&a);
}

static void test_caller_buffer(void) {
    lm_id id = id_of(11);
    uint8_t buf[8], data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    lm_chunk_asm_opts opts = {.buf = buf, .cap = sizeof buf};
    lm_chunk_asm a;
    lm_chunk_asm_init(&a, &opts);
    Lumen__ObjectChunk c = chunk(&id, 8, 0, data, 8);
    LM_ASSERT_OK(lm_chunk_asm_feed(&a, &c));
    LM_ASSERT_OK(lm_chunk_asm_finish(&a));
    CU_ASSERT_PTR_EQUAL(lm_chunk_asm_take(&a, NULL), buf);
    lm_chunk_asm_fini(&a); /* never frees the caller's buffer */
    CU_ASSERT_EQUAL(memcmp(buf, data, 8), 0);

    lm_chunk_asm_init(&a, &opts);
    Lumen__ObjectChunk big = chunk(&id, 9, 0, data, 8);
    ASSERT_MSG(lm_chunk_asm_feed(&a, &big), LUMEN_RESOURCE_EXHAUSTED, "do not fit in a buffer of 8");
    lm_chunk_asm_fini(&a);
}

static void *refuse_alloc(void *arg, uint64_t size, lumen_status *st) {
    (void)arg;
    *st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "store full for %llu bytes", (unsigned long long)size);
    return NULL;
}

static void test_alloc_callback_error(void) {
    lm_id id = id_of(12);
    lm_chunk_asm_opts opts = {.alloc = refuse_alloc};
    lm_chunk_asm a;
    lm_chunk_asm_init(&a, &opts);
    Lumen__ObjectChunk c = chunk(&id, 5, 0, "hello", 5);
    ASSERT_MSG(lm_chunk_asm_feed(&a, &c), LUMEN_RESOURCE_EXHAUSTED, "store full for 5 bytes");
    lm_chunk_asm_fini(&a);
    lm_chunk_asm_fini(NULL);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"round trips (0 B, 1 B, chunk edges, 1-byte chunks)", test_round_trips},
        {"an empty object is one chunk", test_empty_object_is_one_chunk},
        {"the chunker plans without data", test_chunker_plans_without_data},
        {"the first chunk needs an id", test_first_chunk_needs_id},
        {"offset gaps and overlaps", test_offset_gap_and_overlap},
        {"data past total_size", test_data_past_total},
        {"later chunks must agree", test_later_chunks_must_agree},
        {"a stream that ends early", test_short_stream},
        {"max size boundary", test_max_size_boundary},
        {"a caller's buffer", test_caller_buffer},
        {"an allocator's error", test_alloc_callback_error},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("chunk", tests, NULL, NULL);
}

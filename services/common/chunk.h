/*
 * chunk.h - objects as streams of ObjectChunk messages, both directions.
 *
 * No I/O here (so it can be fuzzed): the assembler checks a stream of chunks
 * and copies their bytes into one buffer; the chunker cuts a buffer into the
 * chunk sequence without copying it.
 *
 * Stream rules (protos/common.proto): the first chunk carries the 16-byte
 * object id and total_size (and optionally a 16-byte job_id); every chunk's
 * offset is where the previous one ended; no byte lies past total_size; the
 * stream ends exactly at total_size. An empty object is one chunk with
 * total_size 0; every later chunk carries bytes, and a stream has at most
 * LM_LIMIT_OBJECT_CHUNKS chunks (input_limits.h), so a sender cannot keep a stream
 * going without moving it forward. Later chunks may repeat id and total_size
 * but not change them.
 */
#ifndef LM_CHUNK_H
#define LM_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.pb-c.h"
#include "id.h"
#include "status.h"

/* ------------------------------------------------------------ assembler */

/* Where the assembled bytes go, asked once, at the first chunk, for exactly
 * total_size bytes (the assembler's id and job are already set then).
 * NULL: failure, with the reason in *st (the assembler reports it). */
typedef void *(*lm_chunk_alloc_fn)(void *arg, uint64_t size, lumen_status *st);

typedef struct lm_chunk_asm_opts {
    uint64_t max_bytes;   /* largest total_size accepted; 0: no limit */
    uint64_t max_chunks;  /* most chunks in the stream; 0: LM_LIMIT_OBJECT_CHUNKS */
    /* A buffer of the caller's (never freed by the assembler): total_size
     * must fit in cap. Else, when alloc is set, alloc(alloc_arg, size) gives
     * the buffer (also never freed by the assembler). Else the assembler
     * mallocs one (lm_chunk_buffer_alloc) and frees it unless taken. */
    void *buf;
    uint64_t cap;
    lm_chunk_alloc_fn alloc;
    void *alloc_arg;
} lm_chunk_asm_opts;

typedef struct lm_chunk_asm {
    lm_chunk_asm_opts opts;
    bool started;   /* the first chunk arrived */
    bool failed;    /* a chunk was refused: nothing more is accepted */
    bool owns_buf;  /* data came from lm_chunk_buffer_alloc and was not taken */
    lm_id id, job;  /* job: zero when the stream named none */
    uint64_t total; /* total_size from the first chunk */
    uint64_t received;
    uint64_t chunks;  /* accepted so far */
    uint8_t *data;  /* total bytes, filled up to received */
} lm_chunk_asm;

/* opts may be NULL (no limit, malloc'd buffer). */
void lm_chunk_asm_init(lm_chunk_asm *a, const lm_chunk_asm_opts *opts);

/*
 * Checks one chunk and copies its bytes into place. Errors: INVALID_ARGUMENT
 * for a stream that breaks the rules above, RESOURCE_EXHAUSTED for an object
 * over max_bytes ("object of N bytes exceeds the limit of M"), a stream over
 * max_chunks or a buffer that cannot be had. After an error the assembler
 * accepts nothing more.
 */
lumen_status lm_chunk_asm_feed(lm_chunk_asm *a, const Lumen__ObjectChunk *chunk);

/* The stream ended: OK when every byte arrived, else INVALID_ARGUMENT
 * ("object <hex>: got N of M bytes", or "no chunks" for an empty stream). */
lumen_status lm_chunk_asm_finish(const lm_chunk_asm *a);

/* True once the first chunk was accepted (id, job and total are known). */
static inline bool lm_chunk_asm_started(const lm_chunk_asm *a) { return a->started; }

/* Hands the buffer over (the caller frees an assembler-made one with free());
 * *len gets total_size. NULL before the first chunk. */
void *lm_chunk_asm_take(lm_chunk_asm *a, size_t *len);

/* Frees a buffer the assembler made and did not hand over; NULL-safe. */
void lm_chunk_asm_fini(lm_chunk_asm *a);

/* malloc(size) (at least 1 byte, so an empty object has a buffer) for a
 * buffer that is about to be filled front to back: large ones are asked to
 * use huge pages, which makes first-touch page faults 512 times rarer.
 * Free it with free(). NULL when out of memory. */
void *lm_chunk_buffer_alloc(uint64_t size); /* size + 1 bytes, the last one NUL */

/* -------------------------------------------------------------- chunker */

typedef struct lm_chunker {
    Lumen__ObjectChunk msg; /* the chunk last returned */
    const uint8_t *data;
    uint64_t len, pos;
    size_t chunk_bytes;
    lm_id id, job;
    bool done;
} lm_chunker;

/*
 * Cuts data[0..len) into chunks of chunk_bytes (0: LM_RPC_CHUNK_BYTES) for
 * object id (job: zero for none). Nothing is copied: the chunks point into
 * data, which must outlive them. With data NULL the chunker only plans the
 * sequence: the caller points msg->data.data at the chunk's bytes
 * (msg->offset, msg->data.len) itself before sending it.
 */
void lm_chunker_init(lm_chunker *c, lm_id id, lm_id job, const void *data, uint64_t len,
                     size_t chunk_bytes);

/* The next chunk (the first carries id, total_size and job), valid until the
 * next call; NULL after the last. An empty object yields one empty chunk. */
Lumen__ObjectChunk *lm_chunker_next(lm_chunker *c);

#endif

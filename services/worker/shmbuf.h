/*
 * shmbuf.h - a growable shared-memory buffer: one memfd, mapped read/write
 * once, kept for the owner's life.
 *
 * It exists to reuse pages: fresh pages cost a fault and zeroing each on
 * first touch (on virtual machines more than copying their bytes), so big
 * task arguments go into the same shmem pages task after task, and the
 * memfd itself goes to the executor, which maps the part a task uses.
 * Not thread-safe: one owner (a worker slot, an executor) at a time.
 */
#ifndef LM_SHMBUF_H
#define LM_SHMBUF_H

#include <stdint.h>

#include "status.h"

typedef struct lm_shmbuf {
    const char *name; /* the memfd's name (static storage) */
    int fd;           /* -1 until the first reserve */
    uint8_t *base;    /* the mapping, size bytes; moves when it grows */
    uint64_t size;    /* the memfd's size (it never shrinks) */
    uint64_t touched; /* bytes from 0 whose pages are already in place */
} lm_shmbuf;

void lm_shmbuf_init(lm_shmbuf *b, const char *name);

/* Makes the buffer at least need bytes (at least 1), with the pages of
 * [0, need) in place so filling them faults nothing. Growing remaps: any
 * pointer into the old base is stale afterwards (keep offsets). */
lumen_status lm_shmbuf_reserve(lm_shmbuf *b, uint64_t need);

/* Unmaps and closes; NULL-safe, idempotent. */
void lm_shmbuf_fini(lm_shmbuf *b);

#endif

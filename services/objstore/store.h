/*
 * store.h - the object store's objects: immutable byte strings by id, held
 * in memory up to a limit and spilled to files past it. No RPC here.
 *
 * Memory is accounted exactly: bytes_in_memory is the sum of the sizes of
 * the objects held in memory plus what puts in progress have reserved, and
 * it never exceeds memory_limit. A put reserves its whole size up front;
 * to make room, the least recently used objects that no reader holds are
 * written to spill_dir (one file per object, named by its hex id) and their
 * memory freed. A put that cannot fit even then (bigger than the limit, or
 * the rest is held by readers) writes straight to its file. Nothing is lost
 * by spilling: a spilled object is read from its file. Big buffers of
 * objects that go are kept for later puts (fresh pages are costly on VMs),
 * within the same limit.
 *
 * Readers pin what they read (lm_store_reader): a pinned object is neither
 * spilled from memory nor freed; deleting it only unlists it, and its memory
 * goes when the last reader does.
 *
 * Thread-safe: one mutex guards the tables; file writes happen outside it.
 */
#ifndef LM_OBJSTORE_STORE_H
#define LM_OBJSTORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "id.h"
#include "status.h"

typedef struct lm_store lm_store;
typedef struct lm_store_obj lm_store_obj;
typedef struct lm_store_put lm_store_put;
typedef struct lm_store_reader lm_store_reader;

typedef struct lm_store_opts {
    uint64_t memory_limit;
    const char *spill_dir; /* created if missing; NULL or "": a private one under $TMPDIR */
} lm_store_opts;

lumen_status lm_store_new(const lm_store_opts *opts, lm_store **out);

/* Frees every object and removes the spill files (and a private spill dir).
 * No reader or put may be left. NULL-safe. */
void lm_store_free(lm_store *s);

const char *lm_store_spill_dir(const lm_store *s);

typedef struct lm_store_stats {
    uint64_t objects;
    uint64_t bytes_in_memory; /* objects held in memory + reservations of puts */
    uint64_t bytes_kept;      /* freed buffers kept for later puts (in + kept <= limit) */
    uint64_t bytes_on_disk;   /* objects only in spill files */
    uint64_t peak_in_memory;  /* highest bytes_in_memory so far */
    uint64_t spilled;         /* objects written to spill files so far */
} lm_store_stats;

void lm_store_stats_get(lm_store *s, lm_store_stats *out);

/* ---- writing: begin (reserve), fill the buffer, commit or abort ---- */

/* Reserves size bytes (spilling to make room) for object id of job. */
lumen_status lm_store_put_begin(lm_store *s, lm_id id, lm_id job, uint64_t size, lm_store_put **out);

/* Where the object's bytes go: put_begin's size bytes (at least 1). */
void *lm_store_put_buffer(lm_store_put *p);

/*
 * A reader waiting for an object not stored yet (lm_store_open_or_park):
 * embedded in the caller's state, which the store never frees. When a put
 * of its id commits, the waiter leaves the parked set with `reader` open on
 * the new object and goes to that put's caller.
 */
typedef struct lm_store_waiter lm_store_waiter;
struct lm_store_waiter {
    lm_store_waiter *next;   /* the store's while parked; a woken list after */
    lm_id id;
    lm_id job;               /* the caller's: the reader's job (zero: none) */
    lm_store_reader *reader; /* set when woken (NULL: out of memory, or job_ended) */
    bool cancelled;          /* the store's: lm_store_unpark came first */
    bool job_ended;          /* the store's: woken by the release of its job */
};

/*
 * Lists the object (the first complete put of an id wins: when id is already
 * stored, *already_present is true and p's bytes are dropped) and consumes p.
 * *woken gets the waiters that were parked on id, each with its reader; the
 * caller now answers them.
 */
lumen_status lm_store_put_commit(lm_store *s, lm_store_put *p, bool *already_present,
                                 lm_store_waiter **woken);

/* Drops an unfinished put and its reservation; NULL-safe. */
void lm_store_put_abort(lm_store *s, lm_store_put *p);

/* ---- reading ---- */

/* Opens a reader on object id: NOT_FOUND when the store does not hold it. */
lumen_status lm_store_open(lm_store *s, lm_id id, lm_store_reader **out);

typedef enum lm_store_park {
    LM_STORE_FOUND,     /* the object is here: *out is open on it */
    LM_STORE_PARKED,    /* w waits for a put of id; from now on w is the store's
                           until woken or unparked: the caller must not touch it */
    LM_STORE_REFUSED,   /* w was unparked before it could park, or parking is
                           closed (lm_store_unpark_all): answer it now */
    LM_STORE_JOB_ENDED, /* w's job was released: nothing of it will be put */
} lm_store_park;

/* Like lm_store_open, but when id is absent parks w (zeroed by the caller,
 * who may set w->job). */
lm_store_park lm_store_open_or_park(lm_store *s, lm_id id, lm_store_waiter *w, lm_store_reader **out);

/* Takes w out of the parked set (safe from any thread, also before w was
 * parked: it then never will be). True if it was parked: the caller answers
 * it; false if a put woke it (or it never parked). */
bool lm_store_unpark(lm_store *s, lm_store_waiter *w);

/* Unparks every waiter and refuses new ones (shutdown); returns them. */
lm_store_waiter *lm_store_unpark_all(lm_store *s);

uint64_t lm_store_reader_size(const lm_store_reader *r);
lm_id lm_store_reader_id(const lm_store_reader *r);

/* The object's bytes [off, off + n): a pointer into memory, or into a
 * buffer of the reader's after a read from the spill file. Valid until the
 * next read or the reader's end. */
lumen_status lm_store_reader_read(lm_store_reader *r, uint64_t off, size_t n, const void **bytes);

/* Unpins the object; NULL-safe. */
void lm_store_reader_free(lm_store_reader *r);

/* ---- deleting ---- */

/* Unlists object id; false when the store did not hold it. */
bool lm_store_delete(lm_store *s, lm_id id);

/* Unlists every object of job; *ids (free()) gets their ids. From now on
 * the job's puts are refused and its readers do not wait: *woken gets the
 * waiters parked for it, each with job_ended set; the caller answers them. */
size_t lm_store_release_job(lm_store *s, lm_id job, lm_id **ids, lm_store_waiter **woken);

#endif

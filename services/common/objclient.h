/*
 * objclient.h - talking to any object store (lumen.ObjectStore): what
 * workers, the client library and tests use.
 *
 * Objects move as chunk streams (chunk.h), so any size works within the
 * store's limits. Every call takes the store's "host:port" and a deadline
 * for the whole call; errors name the store and the object id in hex.
 */
#ifndef LM_OBJCLIENT_H
#define LM_OBJCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chunk.h"
#include "id.h"
#include "rpc.h"

/* What a store said of a put. */
typedef struct lm_objstore_put_info {
    bool already_present; /* objects are immutable: the store's copy stays */
    lm_id store;          /* the store's incarnation (node id) that holds it */
} lm_objstore_put_info;

/* Stores data[0..len) as object id of job (zero: none); *info may be NULL. */
lumen_status lm_objstore_put(lm_rpc_client *cli, const char *addr, lm_id id, lm_id job, const void *data,
                             size_t len, int64_t timeout_ms, lm_objstore_put_info *info);

/* Reads object id into a buffer malloc'd once at its size (*data is the
 * caller's to free(); an empty object gives a 1-byte buffer and *len 0).
 * wait: an object not stored yet is waited for within the deadline (then
 * DEADLINE_EXCEEDED); otherwise it is NOT_FOUND. On failure *data is NULL. */
lumen_status lm_objstore_get(lm_rpc_client *cli, const char *addr, lm_id id, bool wait, int64_t timeout_ms,
                             void **data, size_t *len);

/* Like lm_objstore_get, for length bytes from offset (length 0: to the
 * end). A range past the object's end is OUT_OF_RANGE. */
lumen_status lm_objstore_get_range(lm_rpc_client *cli, const char *addr, lm_id id, uint64_t offset,
                                   uint64_t length, bool wait, int64_t timeout_ms, void **data, size_t *len);

/* Like lm_objstore_get, into memory of the caller's: alloc(alloc_arg, size,
 * &st) is called once, when the object's size is known, and returns where
 * its size bytes go (not NULL even for size 0; NULL fails the call with the
 * reason it put in st). *len gets the size. On failure that memory may
 * hold part of the object. job is the reader's (zero: none): a wait ends
 * with FAILED_PRECONDITION when that job ends, as nothing will put the
 * object then. store (zero: any) is the incarnation said to hold it: a
 * store restarted since answers OBJECT_LOST at once instead of waiting. */
lumen_status lm_objstore_get_into(lm_rpc_client *cli, const char *addr, lm_id id, lm_id job, lm_id store, bool wait,
                                  int64_t timeout_ms, lm_chunk_alloc_fn alloc, void *alloc_arg, size_t *len);

/* Deletes the objects the store holds among ids[0..n); *deleted (may be
 * NULL) gets how many it held. Unknown ids are not an error. */
lumen_status lm_objstore_delete(lm_rpc_client *cli, const char *addr, const lm_id *ids, size_t n,
                                int64_t timeout_ms, uint32_t *deleted);

/* Deletes every object of job the store holds; *deleted (may be NULL). */
lumen_status lm_objstore_release_job(lm_rpc_client *cli, const char *addr, lm_id job, int64_t timeout_ms,
                                     uint32_t *deleted);

#endif

/*
 * dir_writer.h - keeps the object directory in Redis (<p>obj:<id> and
 * <p>obj:<id>:locs) in step with what this store holds.
 *
 * Updates are queued and applied in order by one thread, behind the
 * store's answers: a put or a delete never waits on Redis (a reader that
 * looks for an object there before it lands waits for its "obj_ready"
 * announcement). When Redis is down, paused or not up yet (start order does
 * not matter) updates stay queued, in order, and are retried with backoff
 * until they succeed; the store keeps serving meanwhile.
 */
#ifndef LM_OBJSTORE_DIR_WRITER_H
#define LM_OBJSTORE_DIR_WRITER_H

#include <stdint.h>

#include "id.h"
#include "redis_state.h"

typedef struct lm_dir_writer lm_dir_writer;

/* Starts the thread; opts' strings are copied. Never fails for Redis being
 * down. `store` is this store's node id. */
lumen_status lm_dir_writer_start(const lm_redis_opts *opts, lm_id store, lm_dir_writer **out);

/* Object id (size bytes) is here: READY, and this store among its locations. */
void lm_dir_writer_ready(lm_dir_writer *w, lm_id id, lm_id job, uint64_t size);

/* Object id is no longer here: this store leaves its locations. */
void lm_dir_writer_removed(lm_dir_writer *w, lm_id id);

/* Tries what is queued once more, stops the thread and frees. Updates Redis still refuses are logged as lost. NULL-safe. */
void lm_dir_writer_free(lm_dir_writer *w);

#endif

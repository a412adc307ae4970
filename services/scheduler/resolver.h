/*
 * resolver.h - finds objects the scheduler has not seen in the directory
 * that object stores keep in Redis (<p>obj:<id>:locs), off the scheduler's
 * lock and RPC threads.
 *
 * An object can exist without the scheduler having seen it: another
 * client's put (stores write the directory before they answer a put), a
 * task's result stored before the scheduler restarted. The scheduler asks
 * here instead of making a Redis round trip under its lock: a lookup is
 * queued, a thread of its own answers it in batches (one pipelined round
 * trip each), and a watched id is also answered when a store announces it
 * later ("obj_ready" on <p>events), so a wait for a put that is still on
 * its way ends when the put does. After the subscription was broken (Redis
 * restarted) every watched id is looked up again. While Redis is down,
 * lookups wait and are retried; nothing on the task path waits for them.
 */
#ifndef LM_SCHED_RESOLVER_H
#define LM_SCHED_RESOLVER_H

#include <stddef.h>

#include "id.h"
#include "status.h"

struct lm_redis_opts;

typedef struct sched_resolver sched_resolver;

/*
 * The answer for obj: the stores the directory lists for it (n may be 0:
 * none lists it yet). Called on the resolver's thread, without any lock of
 * the resolver's held; a watched id may be answered several times (once per
 * lookup, once per announcement).
 */
typedef void (*sched_resolved_fn)(void *arg, lm_id obj, const lm_id *stores, size_t n);

/* Connects to Redis (its own connections) and starts the thread. */
lumen_status sched_resolver_new(const struct lm_redis_opts *opts, sched_resolved_fn fn, void *arg, sched_resolver **out);

/* Looks obj up once. */
void sched_resolver_lookup(sched_resolver *r, lm_id obj);

/* Looks obj up now and answers again whenever a store announces it, until
 * unwatched. Watching an id twice is watching it once. */
void sched_resolver_watch(sched_resolver *r, lm_id obj);
void sched_resolver_unwatch(sched_resolver *r, lm_id obj);

/* Looks every watched object up again: an object store (re)joined, and
 * the directory may name it for objects found before it was known here. */
void sched_resolver_lookup_watched(sched_resolver *r);

/* Stops the thread; answers still queued are dropped. NULL-safe. */
void sched_resolver_free(sched_resolver *r);

#endif

/*
 * idmap.h - a hash map from 128-bit ids to pointers (open addressing, linear
 * probing, tombstone-free deletion by backward shift). Not thread-safe: the
 * owner locks. Ids are random, so their bytes are already a good hash.
 */
#ifndef LM_IDMAP_H
#define LM_IDMAP_H

#include <stddef.h>

#include "id.h"

typedef struct lm_idmap lm_idmap;

lm_idmap *lm_idmap_new(void);
void lm_idmap_free(lm_idmap *m); /* the values are the caller's; NULL-safe */

void *lm_idmap_get(const lm_idmap *m, lm_id key);          /* NULL when absent */
void lm_idmap_put(lm_idmap *m, lm_id key, void *value);    /* inserts or replaces; value != NULL */
void *lm_idmap_remove(lm_idmap *m, lm_id key);             /* the removed value, or NULL */
size_t lm_idmap_count(const lm_idmap *m);

/* Visits every entry; fn must not change the map. */
void lm_idmap_each(const lm_idmap *m, void (*fn)(void *arg, lm_id key, void *value), void *arg);

#endif

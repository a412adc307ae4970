/*
 * vec.h - growing an array: the one place that does it. An array is a
 * pointer, a count and a capacity its owner keeps; growing doubles the
 * capacity and never loses the block when memory runs out, the mistake of
 * `items = realloc(items, ...)`.
 */
#ifndef LM_VEC_H
#define LM_VEC_H

#include <stddef.h>

/* The block `items` of *cap elements of `size` bytes, grown to hold at
 * least `need` of them (doubling, from `first` at the least): the block,
 * moved or not, with *cap updated; NULL when out of memory (or the size
 * overflows), items and *cap untouched. */
void *lm_vec_grow(void *items, size_t *cap, size_t need, size_t size, size_t first);

/* The same for a service, whose answer to running out of memory is to stop
 * with a log line naming `what` (lm_fatal, as Redis's zmalloc): never NULL.
 * liblumen uses lm_vec_grow and answers RESOURCE_EXHAUSTED instead. */
void *lm_vec_grow_or_die(void *items, size_t *cap, size_t need, size_t size, size_t first, const char *what);

#endif

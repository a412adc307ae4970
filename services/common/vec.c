/* vec.c - see vec.h. */
#include "vec.h"

#include <stdint.h>
#include <stdlib.h>

#include "log.h"

void *lm_vec_grow(void *items, size_t *cap, size_t need, size_t size, size_t first) {
    if (need <= *cap) return items;
    size_t bigger = *cap ? *cap : (first ? first : 1);
    while (bigger < need) {
        if (bigger > SIZE_MAX / 2) return NULL;
        bigger *= 2;
    }
    if (size != 0 && bigger > SIZE_MAX / size) return NULL;
    void *grown = realloc(items, bigger * size);
    if (grown == NULL) return NULL;
    *cap = bigger;
    return grown;
}

void *lm_vec_grow_or_die(void *items, size_t *cap, size_t need, size_t size, size_t first, const char *what) {
    void *grown = lm_vec_grow(items, cap, need, size, first);
    if (grown == NULL) lm_fatal("out of memory: %s (%zu of %zu bytes)", what, need, size);
    return grown;
}

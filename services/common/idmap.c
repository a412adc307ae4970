/* idmap.c - see idmap.h. */
#include "idmap.h"

#include <stdlib.h>
#include <string.h>

typedef struct slot {
    lm_id key;
    void *value; /* NULL: empty */
} slot;

struct lm_idmap {
    slot *slots;
    size_t cap; /* a power of two */
    size_t count;
};

static size_t home(const lm_idmap *m, lm_id key) { return (size_t)lm_id_hash(key) & (m->cap - 1); }

lm_idmap *lm_idmap_new(void) {
    lm_idmap *m = calloc(1, sizeof *m);
    m->cap = 64;
    m->slots = calloc(m->cap, sizeof *m->slots);
    return m;
}

void lm_idmap_free(lm_idmap *m) {
    if (m == NULL) return;
    free(m->slots);
    free(m);
}

static slot *find(const lm_idmap *m, lm_id key) {
    for (size_t i = home(m, key);; i = (i + 1) & (m->cap - 1)) {
        slot *s = &m->slots[i];
        if (s->value == NULL || lm_id_equal(s->key, key)) return s;
    }
}

void *lm_idmap_get(const lm_idmap *m, lm_id key) { return find(m, key)->value; }

static void grow(lm_idmap *m) {
    slot *old = m->slots;
    size_t old_cap = m->cap;
    m->cap *= 2;
    m->slots = calloc(m->cap, sizeof *m->slots);
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].value != NULL) *find(m, old[i].key) = old[i];
    free(old);
}

void lm_idmap_put(lm_idmap *m, lm_id key, void *value) {
    if ((m->count + 1) * 4 > m->cap * 3) grow(m); /* load factor <= 3/4 */
    slot *s = find(m, key);
    if (s->value == NULL) m->count++;
    s->key = key;
    s->value = value;
}

void *lm_idmap_remove(lm_idmap *m, lm_id key) {
    slot *s = find(m, key);
    void *value = s->value;
    if (value == NULL) return NULL;
    m->count--;
    /* Backward shift: pull later entries of the probe run into the hole. */
    size_t hole = (size_t)(s - m->slots);
    for (size_t i = (hole + 1) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        slot *next = &m->slots[i];
        if (next->value == NULL) break;
        size_t h = home(m, next->key);
        /* next may move into the hole only if its home is not in (hole, i]. */
        bool stays = hole <= i ? (h > hole && h <= i) : (h > hole || h <= i);
        if (stays) continue;
        m->slots[hole] = *next;
        hole = i;
    }
    m->slots[hole].value = NULL;
    return value;
}

size_t lm_idmap_count(const lm_idmap *m) { return m->count; }

void lm_idmap_each(const lm_idmap *m, void (*fn)(void *arg, lm_id key, void *value), void *arg) {
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].value != NULL) fn(arg, m->slots[i].key, m->slots[i].value);
}

/* wordtable.c - see wordtable.h. */
#include "wordtable.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The table is linear-probing over 16-byte slots; words live in one arena
 * (a 4-byte length, then the bytes), so growing the table moves no words and
 * a slot is just (count, 32-bit hash, arena offset). The arena keeps 8 bytes
 * of slack after the last word so short words compare as one masked load.
 */
typedef struct slot {
    uint64_t count;
    uint32_t hash;
    uint32_t off; /* of the word's bytes in the arena; 0: empty slot */
} slot;

struct wc_table {
    slot *slots;
    uint32_t mask; /* capacity - 1 */
    size_t used;
    uint8_t *arena;
    size_t arena_len, arena_cap;
};

#define SLACK 8
#define MAX_CAPACITY (UINT32_C(1) << 31)

static const uint8_t space_table[256] = {
    ['\t'] = 1, ['\n'] = 1, ['\v'] = 1, ['\f'] = 1, ['\r'] = 1, [' '] = 1,
};

bool wc_is_space(unsigned char c) { return space_table[c] != 0; }

static inline uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

/* n (1..8) bytes at p as a little-endian integer; loads past p + n only
 * when they stay below limit. */
static inline uint64_t load_upto8(const uint8_t *p, size_t n, const uint8_t *limit) {
    if (p + 8 <= limit) return load64(p) & (~UINT64_C(0) >> (64 - 8 * n));
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* One multiply per 8 bytes: most words take a single step. */
static inline uint32_t hash_word(const uint8_t *p, size_t n, const uint8_t *limit) {
    uint64_t h = (uint64_t)n * UINT64_C(0x9E3779B97F4A7C15);
    while (n > 8) {
        h = (h ^ load64(p)) * UINT64_C(0xbf58476d1ce4e5b9);
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    h = (h ^ load_upto8(p, n, limit)) * UINT64_C(0xbf58476d1ce4e5b9);
    h ^= h >> 32;
    h *= UINT64_C(0x94d049bb133111eb);
    h ^= h >> 29;
    return (uint32_t)h;
}

static inline uint32_t word_len(const wc_table *t, uint32_t off) {
    uint32_t len;
    memcpy(&len, t->arena + off - 4, 4);
    return len;
}

static inline bool same_word(const wc_table *t, uint32_t off, const uint8_t *w, size_t n,
                             const uint8_t *limit) {
    if (word_len(t, off) != n) return false;
    if (n <= 8) return load_upto8(t->arena + off, n, t->arena + t->arena_len + SLACK) ==
                       load_upto8(w, n, limit);
    return memcmp(t->arena + off, w, n) == 0;
}

wc_table *wc_table_new(size_t expected_words) {
    wc_table *t = calloc(1, sizeof *t);
    if (t == NULL) return NULL;
    size_t cap = 1024;
    while (cap < expected_words * 2 && cap < MAX_CAPACITY) cap *= 2;
    t->slots = calloc(cap, sizeof *t->slots);
    t->arena_cap = 64 * 1024;
    t->arena = malloc(t->arena_cap);
    if (t->slots == NULL || t->arena == NULL) {
        wc_table_free(t);
        return NULL;
    }
    t->mask = (uint32_t)(cap - 1);
    t->arena_len = 4; /* offset 0 means "empty slot": the first word starts later */
    memset(t->arena, 0, 4 + SLACK);
    return t;
}

void wc_table_free(wc_table *t) {
    if (t == NULL) return;
    free(t->slots);
    free(t->arena);
    free(t);
}

size_t wc_table_size(const wc_table *t) { return t->used; }

static int grow(wc_table *t) {
    size_t cap = (size_t)t->mask + 1;
    if (cap >= MAX_CAPACITY) return -EFBIG;
    slot *slots = calloc(cap * 2, sizeof *slots);
    if (slots == NULL) return -ENOMEM;
    uint32_t mask = (uint32_t)(cap * 2 - 1);
    for (size_t i = 0; i < cap; i++) {
        const slot *s = &t->slots[i];
        if (s->off == 0) continue;
        uint32_t j = s->hash & mask;
        while (slots[j].off != 0) j = (j + 1) & mask;
        slots[j] = *s;
    }
    free(t->slots);
    t->slots = slots;
    t->mask = mask;
    return 0;
}

static int arena_push(wc_table *t, const uint8_t *w, size_t n, uint32_t *off) {
    size_t need = t->arena_len + 4 + n + SLACK;
    if (n > UINT32_MAX || need > UINT32_MAX) return -EFBIG;
    if (need > t->arena_cap) {
        size_t cap = t->arena_cap;
        while (cap < need) cap *= 2;
        uint8_t *a = realloc(t->arena, cap);
        if (a == NULL) return -ENOMEM;
        t->arena = a;
        t->arena_cap = cap;
    }
    uint32_t len32 = (uint32_t)n;
    memcpy(t->arena + t->arena_len, &len32, 4);
    memcpy(t->arena + t->arena_len + 4, w, n);
    *off = (uint32_t)(t->arena_len + 4);
    t->arena_len += 4 + n;
    memset(t->arena + t->arena_len, 0, SLACK);
    return 0;
}

/* The word's slot, or the empty slot where it would go. */
static inline slot *find(const wc_table *t, const uint8_t *w, size_t n, uint32_t h,
                         const uint8_t *limit) {
    for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
        slot *s = &t->slots[i];
        if (s->off == 0 || (s->hash == h && same_word(t, s->off, w, n, limit))) return s;
    }
}

/* Adds `add` to the word's count, inserting it when new. */
static inline int bump(wc_table *t, const uint8_t *w, size_t n, uint32_t h, const uint8_t *limit,
                       uint64_t add) {
    slot *s = find(t, w, n, h, limit);
    if (s->off != 0) {
        s->count += add;
        return 0;
    }
    uint32_t off;
    int rc = arena_push(t, w, n, &off);
    if (rc != 0) return rc;
    *s = (slot){.count = add, .hash = h, .off = off};
    t->used++;
    return t->used * 2 > (size_t)t->mask + 1 ? grow(t) : 0;
}

int wc_table_add(wc_table *t, const void *word, size_t len, uint64_t n) {
    if (len == 0) return -EINVAL;
    const uint8_t *w = word;
    return bump(t, w, len, hash_word(w, len, w + len), w + len, n);
}

uint64_t wc_table_get(const wc_table *t, const void *word, size_t len) {
    const uint8_t *w = word;
    if (len == 0) return 0;
    return find(t, w, len, hash_word(w, len, w + len), w + len)->count;
}

/* The end of the word starting at p. Eight bytes at a time: any byte below
 * 0x21 may be whitespace (the first one flagged is exact); other control
 * bytes are rare and belong to the word. */
static inline const uint8_t *word_end(const uint8_t *p, const uint8_t *end) {
    while (p + 8 <= end) {
        uint64_t x = load64(p);
        uint64_t low = (x - UINT64_C(0x2121212121212121)) & ~x & UINT64_C(0x8080808080808080);
        if (low == 0) {
            p += 8;
            continue;
        }
        p += __builtin_ctzll(low) >> 3;
        if (space_table[*p]) return p;
        p++;
    }
    while (p < end && !space_table[*p]) p++;
    return p;
}

/* Both counting loops in one body; `known_only` is a constant at each call
 * site, so the compiler specializes it away. */
__attribute__((always_inline)) static inline int count_words(wc_table *t, const void *text, size_t len, bool known_only) {
    const uint8_t *p = text, *end = p + len;
    for (;;) {
        while (p < end && space_table[*p]) p++;
        if (p == end) return 0;
        const uint8_t *w = p;
        p = word_end(p, end);
        size_t n = (size_t)(p - w);
        uint32_t h = hash_word(w, n, end);
        if (known_only) {
            slot *s = find(t, w, n, h, end);
            if (s->off != 0) s->count++;
            continue;
        }
        int rc = bump(t, w, n, h, end, 1);
        if (rc != 0) return rc;
    }
}

int wc_table_count_text(wc_table *t, const void *text, size_t len) {
    return count_words(t, text, len, false);
}

int wc_table_count_known(wc_table *t, const void *text, size_t len) {
    return count_words(t, text, len, true);
}

void wc_table_zero(wc_table *t) {
    for (size_t i = 0; i <= t->mask; i++) t->slots[i].count = 0;
}

int wc_table_each(const wc_table *t, int (*fn)(void *arg, const wc_entry *e), void *arg) {
    for (size_t i = 0; i <= t->mask; i++) {
        const slot *s = &t->slots[i];
        if (s->off == 0) continue;
        wc_entry e = {(const char *)t->arena + s->off, word_len(t, s->off), s->count};
        int rc = fn(arg, &e);
        if (rc != 0) return rc;
    }
    return 0;
}

bool wc_entry_before(const wc_entry *a, const wc_entry *b) {
    if (a->count != b->count) return a->count > b->count;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->word, b->word, n);
    return c != 0 ? c < 0 : a->len < b->len;
}

/* Top-k keeps a heap of the k best so far with the worst at the root. */
typedef struct top_state {
    wc_entry *heap;
    size_t k, n;
} top_state;

static void sift_down(top_state *s, size_t i) {
    for (;;) {
        size_t worst = i, l = 2 * i + 1, r = l + 1;
        if (l < s->n && wc_entry_before(&s->heap[worst], &s->heap[l])) worst = l;
        if (r < s->n && wc_entry_before(&s->heap[worst], &s->heap[r])) worst = r;
        if (worst == i) return;
        wc_entry tmp = s->heap[i];
        s->heap[i] = s->heap[worst];
        s->heap[worst] = tmp;
        i = worst;
    }
}

static int top_visit(void *arg, const wc_entry *e) {
    top_state *s = arg;
    if (s->n < s->k) {
        size_t i = s->n++;
        s->heap[i] = *e;
        while (i > 0 && wc_entry_before(&s->heap[(i - 1) / 2], &s->heap[i])) {
            wc_entry tmp = s->heap[i];
            s->heap[i] = s->heap[(i - 1) / 2];
            s->heap[(i - 1) / 2] = tmp;
            i = (i - 1) / 2;
        }
    } else if (wc_entry_before(e, &s->heap[0])) {
        s->heap[0] = *e;
        sift_down(s, 0);
    }
    return 0;
}

size_t wc_table_top(const wc_table *t, size_t k, wc_entry *out) {
    top_state s = {out, k, 0};
    if (k == 0) return 0;
    wc_table_each(t, top_visit, &s);
    /* Heap-sort in place: the worst goes last. */
    size_t n = s.n;
    while (s.n > 1) {
        wc_entry tmp = s.heap[0];
        s.heap[0] = s.heap[s.n - 1];
        s.heap[s.n - 1] = tmp;
        s.n--;
        sift_down(&s, 0);
    }
    return n;
}

int wc_format_entries(const wc_entry *e, size_t n, char **out, size_t *len) {
    size_t cap = 1;
    for (size_t i = 0; i < n; i++) cap += e[i].len + 22; /* " " + 20 digits + "\n" */
    char *text = malloc(cap);
    if (text == NULL) return -ENOMEM;
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(text + used, e[i].word, e[i].len);
        used += e[i].len;
        used += (size_t)snprintf(text + used, cap - used, " %" PRIu64 "\n", e[i].count);
    }
    text[used] = '\0';
    *out = text;
    *len = used;
    return 0;
}

/* ---- serialization ---- */

static inline uint8_t *put_varint(uint8_t *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static inline bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (b < 0x80) {
            *v = x;
            return true;
        }
    }
    return false;
}

static const char magic[4] = {'L', 'W', 'T', '1'};

int wc_table_serialize(const wc_table *t, void **out, size_t *len) {
    /* Upper bound: varints of at most 5 (len) and 10 (count) bytes. */
    size_t cap = sizeof magic + 10 + t->used * 15 + t->arena_len;
    uint8_t *buf = malloc(cap), *p = buf;
    if (buf == NULL) return -ENOMEM;
    memcpy(p, magic, sizeof magic);
    p = put_varint(p + sizeof magic, t->used);
    for (size_t i = 0; i <= t->mask; i++) {
        const slot *s = &t->slots[i];
        if (s->off == 0) continue;
        uint32_t n = word_len(t, s->off);
        p = put_varint(p, n);
        p = put_varint(p, s->count);
        memcpy(p, t->arena + s->off, n);
        p += n;
    }
    *out = buf;
    *len = (size_t)(p - buf);
    return 0;
}

int wc_table_merge(wc_table *t, const void *data, size_t len) {
    const uint8_t *p = data, *end = p + len;
    uint64_t n, wlen, count;
    if (len < sizeof magic || memcmp(p, magic, sizeof magic) != 0) return -EINVAL;
    p += sizeof magic;
    if (!get_varint(&p, end, &n)) return -EINVAL;
    for (uint64_t i = 0; i < n; i++) {
        if (!get_varint(&p, end, &wlen) || !get_varint(&p, end, &count)) return -EINVAL;
        if (wlen == 0 || wlen > (uint64_t)(end - p)) return -EINVAL;
        int rc = bump(t, p, (size_t)wlen, hash_word(p, (size_t)wlen, end), end, count);
        if (rc != 0) return rc;
        p += wlen;
    }
    return p == end ? 0 : -EINVAL;
}

int wc_table_parse(const void *data, size_t len, wc_table **out) {
    const uint8_t *p = data;
    uint64_t n = 0;
    *out = NULL;
    if (len < sizeof magic) return -EINVAL;
    p += sizeof magic;
    if (!get_varint(&p, p + (len - sizeof magic), &n)) return -EINVAL;
    /* Each entry takes at least 3 bytes: a hostile count cannot size the table. */
    wc_table *t = wc_table_new(n < len / 3 ? (size_t)n : len / 3);
    if (t == NULL) return -ENOMEM;
    int rc = wc_table_merge(t, data, len);
    if (rc != 0) {
        wc_table_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void wc_split(const void *text, size_t len, size_t n, size_t *bounds) {
    const uint8_t *p = text;
    bounds[0] = 0;
    for (size_t i = 1; i < n; i++) {
        size_t b = (len / n) * i + (len % n) * i / n;
        if (b < bounds[i - 1]) b = bounds[i - 1];
        while (b > 0 && b < len && !space_table[p[b - 1]]) b++;
        bounds[i] = b;
    }
    bounds[n] = len;
}

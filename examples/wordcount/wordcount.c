/*
 * wordcount.c - the function library of the word-count examples
 * (libwordcount.so). Tables travel in wordtable.h's serialized form.
 *
 *   wordcount.most_frequent   (chunk)              -> table of its top word
 *   wordcount.count_candidates(chunk, candidates)  -> table of each candidate's
 *                                                     count in the chunk (0s
 *                                                     included); candidates:
 *                                                     a table (counts ignored)
 *   wordcount.count           (chunk)              -> table of every word
 *   wordcount.merge           (table, table, ...)  -> their sum
 *   wordcount.top             (table, K)           -> "WORD COUNT\n" lines of
 *                                                     the K most frequent;
 *                                                     K in decimal text
 *
 * and one actor class, whose state is the word table of every chunk it has
 * been given (so each chunk is counted once, however often it is asked):
 *
 *   wordcount.Counter         (chunk, ...)         constructor: counts them
 *     .add                    (chunk, ...)         -> nothing; counts them too
 *     .most_frequent          ()                   -> as the task, over its table
 *     .count_candidates       (candidates)         -> as the task, over its table
 *     .counts                 ()                   -> its whole table
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <lumen/remote.h>

#include "wordtable.h"

/* A natural-language chunk has tens of thousands of distinct words. */
#define EXPECTED_WORDS 65536

static int fail_rc(lumen_task_ctx *ctx, const char *what, int rc) {
    return lumen_task_fail(ctx, "%s: %s", what,
                           rc == -EINVAL ? "malformed word table" : strerror(-rc));
}

static int want_args(lumen_task_ctx *ctx, const char *fn, size_t nargs, size_t want) {
    return nargs == want ? 0 : lumen_task_fail(ctx, "%s takes %zu argument(s), got %zu", fn, want, nargs);
}

/* Serializes t into *out and frees t. */
static int reply_table(lumen_task_ctx *ctx, wc_table *t, lumen_bytes *out) {
    int rc = wc_table_serialize(t, &out->data, &out->len);
    wc_table_free(t);
    return rc == 0 ? 0 : fail_rc(ctx, "serialize", rc);
}

static int count_chunk(lumen_task_ctx *ctx, const lumen_bytes *chunk, wc_table **out) {
    *out = wc_table_new(EXPECTED_WORDS);
    if (*out == NULL) return lumen_task_fail(ctx, "out of memory");
    int rc = wc_table_count_text(*out, chunk->data, chunk->len);
    if (rc == 0) return 0;
    wc_table_free(*out);
    return fail_rc(ctx, "count", rc);
}

/* Replies with a table of all's most frequent word (empty when all is). */
static int reply_top_word(lumen_task_ctx *ctx, const wc_table *all, lumen_bytes *out) {
    wc_entry top;
    wc_table *one = wc_table_new(1);
    int rc = one == NULL ? -ENOMEM : 0;
    if (rc == 0 && wc_table_top(all, 1, &top) == 1) rc = wc_table_add(one, top.word, top.len, top.count);
    if (rc != 0) {
        wc_table_free(one);
        return fail_rc(ctx, "most_frequent", rc);
    }
    return reply_table(ctx, one, out);
}

static int most_frequent(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    wc_table *all;
    if (want_args(ctx, "wordcount.most_frequent", nargs, 1) || count_chunk(ctx, &args[0], &all)) return -1;
    int rc = reply_top_word(ctx, all, out);
    wc_table_free(all);
    return rc;
}
LUMEN_REMOTE("wordcount.most_frequent", most_frequent);

/* The candidate list (a table, counts ignored) with every count set to 0. */
static int parse_candidates(lumen_task_ctx *ctx, const lumen_bytes *list, wc_table **out) {
    int rc = wc_table_parse(list->data, list->len, out);
    if (rc != 0) return fail_rc(ctx, "candidates", rc);
    wc_table_zero(*out);
    return 0;
}

static int count_candidates(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    wc_table *t;
    if (want_args(ctx, "wordcount.count_candidates", nargs, 2) || parse_candidates(ctx, &args[1], &t)) return -1;
    wc_table_count_known(t, args[0].data, args[0].len);
    return reply_table(ctx, t, out);
}
LUMEN_REMOTE("wordcount.count_candidates", count_candidates);

static int count(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    wc_table *t;
    if (want_args(ctx, "wordcount.count", nargs, 1) || count_chunk(ctx, &args[0], &t)) return -1;
    return reply_table(ctx, t, out);
}
LUMEN_REMOTE("wordcount.count", count);

static int merge(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    if (nargs == 0) return lumen_task_fail(ctx, "wordcount.merge needs at least one table");
    /* Start from the largest table: its words are inserted once, by parsing. */
    size_t big = 0;
    for (size_t i = 1; i < nargs; i++)
        if (args[i].len > args[big].len) big = i;
    wc_table *t;
    int rc = wc_table_parse(args[big].data, args[big].len, &t);
    for (size_t i = 0; rc == 0 && i < nargs; i++)
        if (i != big) rc = wc_table_merge(t, args[i].data, args[i].len);
    if (rc != 0) {
        wc_table_free(t);
        return fail_rc(ctx, "merge", rc);
    }
    return reply_table(ctx, t, out);
}
LUMEN_REMOTE("wordcount.merge", merge);

static int top(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    if (want_args(ctx, "wordcount.top", nargs, 2)) return -1;
    char kbuf[24];
    unsigned long long k = 0;
    char *end = NULL;
    if (args[1].len > 0 && args[1].len < sizeof kbuf) {
        memcpy(kbuf, args[1].data, args[1].len);
        kbuf[args[1].len] = '\0';
        k = strtoull(kbuf, &end, 10);
    }
    if (end == NULL || *end != '\0' || k == 0 || k > (1u << 24))
        return lumen_task_fail(ctx, "wordcount.top: K must be a number in 1..16777216");
    wc_table *t;
    int rc = wc_table_parse(args[0].data, args[0].len, &t);
    if (rc != 0) return fail_rc(ctx, "top", rc);
    size_t n = wc_table_size(t) < k ? wc_table_size(t) : (size_t)k;
    wc_entry *best = malloc((n ? n : 1) * sizeof *best);
    char *text = NULL;
    rc = best == NULL ? -ENOMEM : wc_format_entries(best, wc_table_top(t, n, best), &text, &out->len);
    free(best);
    wc_table_free(t);
    if (rc != 0) return fail_rc(ctx, "top", rc);
    out->data = text;
    return 0;
}
LUMEN_REMOTE("wordcount.top", top);

/* ---- wordcount.Counter: an actor holding the word table of its chunks ---- */

/* Counts every chunk of args into t. */
static int count_chunks(lumen_task_ctx *ctx, wc_table *t, const lumen_bytes *args, size_t nargs) {
    for (size_t i = 0; i < nargs; i++) {
        int rc = wc_table_count_text(t, args[i].data, args[i].len);
        if (rc != 0) return fail_rc(ctx, "count", rc);
    }
    return 0;
}

static int counter_new(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, void **state) {
    wc_table *t = wc_table_new(EXPECTED_WORDS);
    if (t == NULL) return lumen_task_fail(ctx, "out of memory");
    if (count_chunks(ctx, t, args, nargs) != 0) {
        wc_table_free(t);
        return -1;
    }
    *state = t;
    return 0;
}

static void counter_free(void *state) { wc_table_free(state); }

/* A failed add may leave part of its chunk counted: the caller must treat
 * the actor's table as wrong from then on. */
static int counter_add(lumen_task_ctx *ctx, void *state, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    *out = (lumen_bytes){NULL, 0};
    return count_chunks(ctx, state, args, nargs);
}

static int counter_most_frequent(lumen_task_ctx *ctx, void *state, const lumen_bytes *args, size_t nargs,
                                 lumen_bytes *out) {
    (void)args;
    if (want_args(ctx, "wordcount.Counter.most_frequent", nargs, 0)) return -1;
    return reply_top_word(ctx, state, out);
}

/* The candidates' counts are looked up in the table: no text is read again. */
typedef struct lookup {
    const wc_table *counts;
    wc_table *found;
} lookup;

static int lookup_one(void *arg, const wc_entry *e) {
    lookup *l = arg;
    return wc_table_add(l->found, e->word, e->len, wc_table_get(l->counts, e->word, e->len));
}

static int counter_count_candidates(lumen_task_ctx *ctx, void *state, const lumen_bytes *args, size_t nargs,
                                    lumen_bytes *out) {
    wc_table *cands;
    if (want_args(ctx, "wordcount.Counter.count_candidates", nargs, 1) || parse_candidates(ctx, &args[0], &cands))
        return -1;
    lookup l = {state, wc_table_new(wc_table_size(cands))};
    int rc = l.found == NULL ? -ENOMEM : wc_table_each(cands, lookup_one, &l);
    wc_table_free(cands);
    if (rc != 0) {
        wc_table_free(l.found);
        return fail_rc(ctx, "count_candidates", rc);
    }
    return reply_table(ctx, l.found, out);
}

static int counter_counts(lumen_task_ctx *ctx, void *state, const lumen_bytes *args, size_t nargs,
                          lumen_bytes *out) {
    (void)args;
    if (want_args(ctx, "wordcount.Counter.counts", nargs, 0)) return -1;
    int rc = wc_table_serialize(state, &out->data, &out->len);
    return rc == 0 ? 0 : fail_rc(ctx, "serialize", rc);
}

LUMEN_ACTOR("wordcount.Counter", counter_new, counter_free,
            LUMEN_METHOD("add", counter_add),
            LUMEN_METHOD("most_frequent", counter_most_frequent),
            LUMEN_METHOD("count_candidates", counter_count_candidates),
            LUMEN_METHOD("counts", counter_counts));

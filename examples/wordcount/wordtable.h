/*
 * wordtable.h - counting words: the tokenizer, an open-addressing hash table
 * of word counts, and its compact serialized form.
 *
 * Shared by the wordcount function library (the cluster side), the client
 * programs and the single-process counter, so every method counts the same
 * way. A word is a maximal run of bytes that are not ASCII whitespace
 * (space, \t, \n, \v, \f, \r); words are compared byte for byte (case
 * matters). "Most frequent" ties go to the word smallest in byte order.
 *
 * Serialized table ("LWT1"), all integers LEB128 varints:
 *     "LWT1" nwords { len count bytes[len] }*nwords
 * in no particular order, each word at most once. A table of the ~50k
 * distinct words of a natural-language chunk is a few hundred KiB.
 */
#ifndef WC_WORDTABLE_H
#define WC_WORDTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wc_table wc_table;

typedef struct wc_entry {
    const char *word; /* points into the table: valid until it changes */
    size_t len;
    uint64_t count;
} wc_entry;

/* Errors are negative errno values: -ENOMEM, -EINVAL (malformed table),
 * -EFBIG (a word or the table past 4 GiB). */
wc_table *wc_table_new(size_t expected_words);
void wc_table_free(wc_table *t); /* NULL-safe */

/* Adds one to the count of every word of text. */
int wc_table_count_text(wc_table *t, const void *text, size_t len);

/* Adds one to the count of every word of text that t already holds; others
 * are skipped (counting a candidate list). Cannot fail. */
int wc_table_count_known(wc_table *t, const void *text, size_t len);

/* Sets every count to 0, keeping the words. */
void wc_table_zero(wc_table *t);

/* Adds n to word's count (n may be 0: the word is then listed with 0). */
int wc_table_add(wc_table *t, const void *word, size_t len, uint64_t n);

/* The word's count; 0 when absent. */
uint64_t wc_table_get(const wc_table *t, const void *word, size_t len);

size_t wc_table_size(const wc_table *t); /* distinct words */

/* Calls fn for every word, in no particular order; stops at fn's non-zero
 * return and returns it. */
int wc_table_each(const wc_table *t, int (*fn)(void *arg, const wc_entry *e), void *arg);

/* The k most frequent words into out[k], most frequent first, ties by byte
 * order; returns how many there are (min(k, size)). */
size_t wc_table_top(const wc_table *t, size_t k, wc_entry *out);

/* True when a ranks before b: higher count, then smaller in byte order. */
bool wc_entry_before(const wc_entry *a, const wc_entry *b);

/* "WORD COUNT\n" per entry into malloc'ed *out (*len bytes, NUL-terminated). */
int wc_format_entries(const wc_entry *e, size_t n, char **out, size_t *len);

/* The serialized form, in malloc'ed memory (*out, *len). */
int wc_table_serialize(const wc_table *t, void **out, size_t *len);

/* Adds every count of a serialized table to t. On -EINVAL t may hold part
 * of the input. */
int wc_table_merge(wc_table *t, const void *data, size_t len);

/* A serialized table parsed into a new table (*out), or an error. */
int wc_table_parse(const void *data, size_t len, wc_table **out);

/* ---- the tokenizer's rules, for splitting inputs ---- */
bool wc_is_space(unsigned char c);

/*
 * Splits text into n pieces of about equal size without cutting a word:
 * bounds[0] = 0, bounds[n] = len, and each inner bound is moved forward to
 * just after a whitespace byte. Pieces may be empty (a long word, a short
 * text).
 */
void wc_split(const void *text, size_t len, size_t n, size_t *bounds);

#endif

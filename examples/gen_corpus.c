/*
 * gen_corpus - a deterministic text corpus for the word-count examples and
 * benchmarks: lines of 6..17 words drawn from a generated vocabulary with a
 * Zipf distribution (rank r has weight 1/r, like natural language), the
 * first word of some lines capitalized. The same --seed, --bytes and --vocab
 * give the same bytes on every machine.
 *
 *   gen_corpus --bytes 256MiB [--seed S] [--vocab N] --output FILE
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "wordtable.h"

typedef struct rng {
    uint64_t s;
} rng;

/* splitmix64: tiny, fast, and the same everywhere. */
static inline uint64_t next(rng *r) {
    uint64_t z = (r->s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static inline uint32_t below(rng *r, uint32_t n) { return (uint32_t)(((next(r) >> 32) * n) >> 32); }

typedef struct vocab {
    char *pool;
    uint32_t *off;
    uint8_t *len;
    uint32_t n;
    /* Walker's alias method: one random number per word drawn. */
    uint32_t *prob; /* threshold against 32 random bits */
    uint32_t *alias;
} vocab;

static void vocab_free(vocab *v) {
    free(v->pool);
    free(v->off);
    free(v->len);
    free(v->prob);
    free(v->alias);
}

/* n distinct lowercase words of 1..12 letters, short ones likelier. */
static int vocab_words(vocab *v, uint32_t n, rng *r) {
    v->n = n;
    v->pool = malloc((size_t)n * 12);
    v->off = malloc((size_t)n * sizeof *v->off);
    v->len = malloc(n);
    wc_table *seen = wc_table_new(n);
    if (!v->pool || !v->off || !v->len || !seen) {
        wc_table_free(seen);
        return -ENOMEM;
    }
    size_t used = 0;
    for (uint32_t i = 0; i < n;) {
        uint32_t len = 1 + below(r, 4) + below(r, 5) + below(r, 5); /* 1..12, mode ~6 */
        char *w = v->pool + used;
        for (uint32_t k = 0; k < len; k++) w[k] = (char)('a' + below(r, 26));
        if (wc_table_get(seen, w, len) != 0) continue;
        if (wc_table_add(seen, w, len, 1) != 0) {
            wc_table_free(seen);
            return -ENOMEM;
        }
        v->off[i] = (uint32_t)used;
        v->len[i] = (uint8_t)len;
        used += len;
        i++;
    }
    wc_table_free(seen);
    return 0;
}

static int vocab_zipf(vocab *v) {
    uint32_t n = v->n;
    double *p = malloc(n * sizeof *p), sum = 0;
    uint32_t *small = malloc(n * sizeof *small), *large = malloc(n * sizeof *large);
    v->prob = malloc(n * sizeof *v->prob);
    v->alias = malloc(n * sizeof *v->alias);
    int rc = p && small && large && v->prob && v->alias ? 0 : -ENOMEM;
    if (rc == 0) {
        for (uint32_t i = 0; i < n; i++) sum += 1.0 / (i + 1);
        uint32_t ns = 0, nl = 0;
        for (uint32_t i = 0; i < n; i++) {
            p[i] = (1.0 / (i + 1)) / sum * n;
            if (p[i] < 1.0) small[ns++] = i;
            else large[nl++] = i;
        }
        while (ns > 0 && nl > 0) {
            uint32_t s = small[--ns], l = large[--nl];
            v->prob[s] = (uint32_t)(p[s] * 4294967295.0);
            v->alias[s] = l;
            p[l] -= 1.0 - p[s];
            if (p[l] < 1.0) small[ns++] = l;
            else large[nl++] = l;
        }
        while (nl > 0) v->prob[large[--nl]] = UINT32_MAX, v->alias[large[nl]] = large[nl];
        while (ns > 0) v->prob[small[--ns]] = UINT32_MAX, v->alias[small[ns]] = small[ns];
    }
    free(p);
    free(small);
    free(large);
    return rc;
}

static inline uint32_t draw(const vocab *v, rng *r) {
    uint64_t x = next(r);
    uint32_t i = (uint32_t)(((x >> 32) * v->n) >> 32);
    return (uint32_t)x < v->prob[i] ? i : v->alias[i];
}

/* "64MiB", "1G", "1000": 1024-based suffixes. */
static int parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-') return -1;
    uint64_t mul = 1;
    if (*end == 'k' || *end == 'K') mul = 1ull << 10;
    else if (*end == 'm' || *end == 'M') mul = 1ull << 20;
    else if (*end == 'g' || *end == 'G') mul = 1ull << 30;
    if (mul != 1) end++;
    if (*end != '\0' && strcasecmp(end, "iB") != 0 && strcasecmp(end, "B") != 0) return -1;
    if (v > UINT64_MAX / mul) return -1;
    *out = v * mul;
    return 0;
}

static int usage(FILE *f, int code) {
    fprintf(f, "usage: gen_corpus --bytes SIZE [--seed S] [--vocab N] --output FILE\n"
               "  --bytes SIZE   exact output size: bytes, or with K/M/G (1024-based), e.g. 64MiB\n"
               "  --seed S       random seed (default 1); same seed, same corpus\n"
               "  --vocab N      distinct words in the vocabulary (default 50000)\n"
               "  --output FILE  where to write (\"-\": standard output)\n");
    return code;
}

int main(int argc, char **argv) {
    uint64_t bytes = 0, seed = 1, nvocab = 50000;
    const char *output = NULL;
    bool have_bytes = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return usage(stdout, 0);
        if (v == NULL) {
            fprintf(stderr, "gen_corpus: %s needs a value\n", a);
            return usage(stderr, 2);
        }
        i++;
        int bad = 0;
        if (strcmp(a, "--bytes") == 0) bad = parse_size(v, &bytes), have_bytes = true;
        else if (strcmp(a, "--seed") == 0) bad = parse_size(v, &seed);
        else if (strcmp(a, "--vocab") == 0) bad = parse_size(v, &nvocab) || nvocab < 1 || nvocab > 10000000;
        else if (strcmp(a, "--output") == 0) output = v;
        else {
            fprintf(stderr, "gen_corpus: unknown option %s\n", a);
            return usage(stderr, 2);
        }
        if (bad) {
            fprintf(stderr, "gen_corpus: bad value for %s: \"%s\"\n", a, v);
            return 2;
        }
    }
    if (!have_bytes || output == NULL) {
        fprintf(stderr, "gen_corpus: --bytes and --output are required\n");
        return usage(stderr, 2);
    }
    FILE *f = strcmp(output, "-") == 0 ? stdout : fopen(output, "wb");
    if (f == NULL) {
        fprintf(stderr, "gen_corpus: %s: %s\n", output, strerror(errno));
        return 1;
    }
    rng r = {seed};
    vocab v = {0};
    int rc = vocab_words(&v, (uint32_t)nvocab, &r);
    if (rc == 0) rc = vocab_zipf(&v);
    enum { BUF = 1 << 20, LINE_MAX_BYTES = 17 * 13 };
    char *buf = malloc(BUF + LINE_MAX_BYTES);
    if (rc != 0 || buf == NULL) {
        fprintf(stderr, "gen_corpus: out of memory\n");
        return 1;
    }
    /* Whole lines go into buf; each full MiB is written, the rest carried. */
    size_t fill = 0;
    uint64_t left = bytes;
    while (left > 0) {
        while (fill < BUF) {
            uint32_t words = 6 + below(&r, 12);
            bool cap = below(&r, 8) == 0;
            for (uint32_t k = 0; k < words; k++) {
                uint32_t w = draw(&v, &r);
                memcpy(buf + fill, v.pool + v.off[w], v.len[w]);
                if (k == 0 && cap) buf[fill] = (char)(buf[fill] - 'a' + 'A');
                fill += v.len[w];
                buf[fill++] = k + 1 < words ? ' ' : '\n';
            }
        }
        size_t out = left < BUF ? (size_t)left : BUF;
        if (out == left) buf[out - 1] = '\n'; /* end the file with a line break */
        if (fwrite(buf, 1, out, f) != out) break;
        left -= out;
        memmove(buf, buf + out, fill - out);
        fill -= out;
    }
    free(buf);
    vocab_free(&v);
    if ((f == stdout ? fflush(f) : fclose(f)) != 0 || left > 0) {
        fprintf(stderr, "gen_corpus: write %s: %s\n", output, strerror(errno));
        return 1;
    }
    return 0;
}

/* wcclient.c - see wcclient.h. */
#include "wcclient.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lumen/lumen.h>

#include "wordtable.h"

typedef enum method { METHOD_EXACT, METHOD_SEED, METHOD_LOCAL } method;

typedef struct options {
    const char *address; /* NULL: lumen_connect's default */
    const char *input;
    const char *token;
    const char *library; /* a .so to upload, or NULL: the workers' library path */
    size_t chunks;
    size_t k;
    method how;
    int64_t timeout_ms;
} options;

typedef struct input {
    const char *data;
    size_t len;
} input;

/* The state of one cluster run, so every exit path frees the same things. */
typedef struct run {
    const wc_program *prog;
    const options *opt;
    const input *in;
    lumen_client *client;
    lumen_ref *chunks; /* one per chunk, put in the object store */
    lumen_ref *counts; /* exact: each chunk's count task, submitted as soon as it is put */
    size_t n;
    double t0;
} run;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(const wc_program *p, FILE *f) {
    fprintf(f,
            "usage: %s --input FILE [--address HOST:PORT] [--chunks N]%s\n"
            "          [--method exact%s|local] [--token T] [--library LIB.so] [--timeout SECONDS]\n"
            "%s\n"
            "  --input FILE       the text to count (words: runs of non-whitespace bytes)\n"
            "  --address A        the scheduler (default: $LUMEN_ADDRESS, else 127.0.0.1:7400)\n"
            "  --chunks N         pieces the input is split into, one task each (default 16)\n"
            "%s"
            "  --method M         exact: count every word per chunk, merge in a tree in the\n"
            "                     cluster (default)%s; local: one thread in this process\n"
            "  --token T          the cluster's token (default: $LUMEN_TOKEN)\n"
            "  --library LIB.so   upload this function library instead of using the workers'\n"
            "  --timeout SECONDS  give up after this long (default 600)\n",
            p->name, p->top_flag ? " [--top K]" : "", p->seed_method ? "|seed" : "", p->summary,
            p->top_flag ? "  --top K            how many of the most frequent words (default 10)\n" : "",
            p->seed_method ? ";\n                     seed: the two-round course algorithm (may miss the answer)" : "");
}

static int bad_args(const wc_program *p, const char *fmt, const char *arg) {
    fprintf(stderr, "%s: ", p->name);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see %s --help)\n", p->name);
    return 2;
}

static bool parse_count(const char *s, size_t max, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v == 0 || v > max || s[0] == '-') return false;
    *out = (size_t)v;
    return true;
}

static int parse_args(const wc_program *p, int argc, char **argv, options *o) {
    *o = (options){.chunks = 16, .k = p->top_flag ? 10 : 1, .how = METHOD_EXACT, .timeout_ms = 600000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(p, stdout);
            return 0;
        }
        if (strncmp(a, "--", 2) != 0) return bad_args(p, "unexpected argument \"%s\"", a);
        if (i + 1 >= argc) return bad_args(p, "%s needs a value", a);
        const char *v = argv[++i];
        size_t n;
        if (strcmp(a, "--input") == 0) o->input = v;
        else if (strcmp(a, "--address") == 0) o->address = v;
        else if (strcmp(a, "--token") == 0) o->token = v;
        else if (strcmp(a, "--library") == 0) o->library = v;
        else if (strcmp(a, "--chunks") == 0) {
            if (!parse_count(v, 1u << 20, &o->chunks)) return bad_args(p, "--chunks wants 1..1048576, not \"%s\"", v);
        } else if (strcmp(a, "--top") == 0 && p->top_flag) {
            if (!parse_count(v, 1u << 24, &o->k)) return bad_args(p, "--top wants 1..16777216, not \"%s\"", v);
        } else if (strcmp(a, "--timeout") == 0) {
            if (!parse_count(v, 30 * 86400, &n)) return bad_args(p, "--timeout wants seconds, not \"%s\"", v);
            o->timeout_ms = (int64_t)n * 1000;
        } else if (strcmp(a, "--method") == 0) {
            if (strcmp(v, "exact") == 0) o->how = METHOD_EXACT;
            else if (strcmp(v, "local") == 0) o->how = METHOD_LOCAL;
            else if (strcmp(v, "seed") == 0 && p->seed_method) o->how = METHOD_SEED;
            else return bad_args(p, "unknown method \"%s\"", v);
        } else {
            return bad_args(p, "unknown option %s", a);
        }
    }
    if (o->input == NULL) return bad_args(p, "%s is required", "--input");
    return -1;
}

/* Maps the file read-only; an empty file is {NULL, 0}. */
static int input_open(const char *path, input *in, const char *prog) {
    *in = (input){NULL, 0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    if (sb.st_size > 0) {
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (p == MAP_FAILED) {
            fprintf(stderr, "%s: mmap %s: %s\n", prog, path, strerror(errno));
            close(fd);
            return -1;
        }
        madvise(p, (size_t)sb.st_size, MADV_SEQUENTIAL);
        in->data = p;
        in->len = (size_t)sb.st_size;
    }
    close(fd);
    return 0;
}

static void input_close(input *in) {
    if (in->data != NULL) munmap((void *)in->data, in->len);
}

/* The K most frequent words of t as "WORD COUNT\n" lines into *text. */
static int top_text(const char *prog, const wc_table *t, size_t k, lumen_bytes *text) {
    size_t n = wc_table_size(t) < k ? wc_table_size(t) : k;
    wc_entry *best = malloc((n ? n : 1) * sizeof *best);
    char *s = NULL;
    if (best == NULL || wc_format_entries(best, wc_table_top(t, n, best), &s, &text->len) != 0) {
        fprintf(stderr, "%s: out of memory\n", prog);
        free(best);
        return 1;
    }
    free(best);
    text->data = s;
    return 0;
}

/* ---- local: one thread, no cluster ---- */

static int run_local(const wc_program *p, const options *o, const input *in, lumen_bytes *text) {
    double t0 = now_s();
    wc_table *t = wc_table_new(65536);
    int rc = t ? wc_table_count_text(t, in->data, in->len) : -ENOMEM;
    if (rc != 0) {
        fprintf(stderr, "%s: count: %s\n", p->name, strerror(-rc));
        wc_table_free(t);
        return 1;
    }
    double t1 = now_s();
    fprintf(stderr, "%s: local: counted %zu bytes (%zu distinct words) in %.3f s (%.0f MiB/s)\n", p->name,
            in->len, wc_table_size(t), t1 - t0, (double)in->len / (1 << 20) / (t1 - t0 > 0 ? t1 - t0 : 1e-9));
    rc = top_text(p->name, t, o->k, text);
    wc_table_free(t);
    return rc;
}

/* ---- on the cluster ---- */

static int fail(const run *r, const char *what, lumen_status st) {
    fprintf(stderr, "%s: %s: %s\n", r->prog->name, what, st.msg[0] ? st.msg : lumen_strerror(st.code));
    return 1;
}

/* Gets a ref holding a table and adds it to t. */
static int get_merge(run *r, lumen_ref ref, wc_table *t, const char *what) {
    lumen_bytes b = {NULL, 0};
    lumen_status st = lumen_get(r->client, ref, r->opt->timeout_ms, &b);
    if (st.code != LUMEN_OK) return fail(r, what, st);
    int rc = wc_table_merge(t, b.data, b.len);
    lumen_bytes_free(&b);
    if (rc != 0) {
        fprintf(stderr, "%s: %s: bad table from the cluster: %s\n", r->prog->name, what,
                rc == -EINVAL ? "malformed" : strerror(-rc));
        return 1;
    }
    return 0;
}

static void phase(run *r, const char *name) {
    double t = now_s();
    fprintf(stderr, "%s: %-28s %.3f s\n", r->prog->name, name, t - r->t0);
    r->t0 = t;
}

/* Round 1: every chunk's most common word; round 2: every chunk counts
 * every candidate; the client sums and picks. Misses a word that is never
 * first in a chunk but first overall. */
static int run_seed(run *r, wc_table *totals) {
    lumen_ref *round = calloc(r->n, sizeof *round);
    wc_table *cands = wc_table_new(r->n);
    int rc = round && cands ? 0 : 1;
    lumen_arg *args = calloc(r->n ? r->n : 1, sizeof *args);
    for (size_t i = 0; rc == 0 && i < r->n; i++) args[i] = lumen_arg_ref(r->chunks[i]);
    lumen_status st = {LUMEN_OK, ""};
    if (rc == 0 && r->n > 0) st = lumen_map(r->client, "wordcount.most_frequent", args, r->n, NULL, round);
    if (st.code != LUMEN_OK) rc = fail(r, "round 1", st);
    for (size_t i = 0; rc == 0 && i < r->n; i++) rc = get_merge(r, round[i], cands, "round 1");
    void *list = NULL;
    size_t list_len = 0;
    if (rc == 0) {
        phase(r, "round 1 (top word per chunk)");
        fprintf(stderr, "%s: %zu candidate(s) from round 1\n", r->prog->name, wc_table_size(cands));
        rc = wc_table_serialize(cands, &list, &list_len) != 0;
    }
    for (size_t i = 0; rc == 0 && i < r->n; i++) {
        lumen_arg a[2] = {lumen_arg_ref(r->chunks[i]), lumen_arg_bytes(list, list_len)};
        st = lumen_call(r->client, "wordcount.count_candidates", a, 2, NULL, &round[i]);
        if (st.code != LUMEN_OK) rc = fail(r, "round 2", st);
    }
    for (size_t i = 0; rc == 0 && i < r->n; i++) rc = get_merge(r, round[i], totals, "round 2");
    if (rc == 0) phase(r, "round 2 (candidate counts)");
    free(list);
    free(args);
    free(round);
    wc_table_free(cands);
    return rc;
}

/* Counts every word of every chunk (those tasks were submitted as the
 * chunks were put), merges the tables in a tree of tasks in the cluster,
 * and asks the cluster for the top K: only K lines come back. */
static int run_exact(run *r, lumen_bytes *text) {
    int rc = 0;
    lumen_status st;
    lumen_ref root, top;
    if ((st = lumen_reduce(r->client, "wordcount.merge", r->counts, r->n, NULL, &root)).code != LUMEN_OK)
        rc = fail(r, "reduce wordcount.merge", st);
    char kbuf[24];
    snprintf(kbuf, sizeof kbuf, "%zu", r->opt->k);
    lumen_arg targs[2] = {lumen_arg_ref(root), lumen_arg_bytes(kbuf, strlen(kbuf))};
    if (rc == 0 && (st = lumen_call(r->client, "wordcount.top", targs, 2, NULL, &top)).code != LUMEN_OK)
        rc = fail(r, "call wordcount.top", st);
    lumen_bytes got = {NULL, 0};
    if (rc == 0 && (st = lumen_get(r->client, top, r->opt->timeout_ms, &got)).code != LUMEN_OK)
        rc = fail(r, "count, merge and top", st);
    if (rc == 0) {
        phase(r, "merge tree, top");
        /* A malloc'ed copy, like every method's answer. */
        text->data = malloc(got.len + 1);
        text->len = text->data ? got.len : 0;
        if (text->data != NULL && got.len > 0) memcpy(text->data, got.data, got.len);
    }
    lumen_bytes_free(&got);
    return rc;
}

static int run_cluster(const wc_program *p, const options *o, const input *in, lumen_bytes *text) {
    run r = {.prog = p, .opt = o, .in = in, .t0 = now_s()};
    double start = r.t0;
    size_t *bounds = malloc((o->chunks + 1) * sizeof *bounds);
    r.chunks = calloc(o->chunks, sizeof *r.chunks);
    r.counts = calloc(o->chunks, sizeof *r.counts);
    if (bounds == NULL || r.chunks == NULL || r.counts == NULL) {
        fprintf(stderr, "%s: out of memory\n", p->name);
        free(bounds);
        free(r.chunks);
        free(r.counts);
        return 1;
    }
    wc_split(in->data, in->len, o->chunks, bounds);
    lumen_connect_opts copts = {.token = o->token};
    lumen_status st = lumen_connect(o->address, &copts, &r.client);
    int rc = st.code == LUMEN_OK ? 0 : fail(&r, "connect", st);
    if (rc == 0 && o->library != NULL && (st = lumen_library_upload(r.client, o->library, NULL)).code != LUMEN_OK)
        rc = fail(&r, "upload library", st);
    /* Empty pieces (a text shorter than the chunk count) are skipped. */
    for (size_t i = 0; rc == 0 && i < o->chunks; i++) {
        if (bounds[i + 1] == bounds[i]) continue;
        st = lumen_put(r.client, in->data + bounds[i], bounds[i + 1] - bounds[i], &r.chunks[r.n]);
        if (st.code != LUMEN_OK) rc = fail(&r, "put chunk", st);
        lumen_arg chunk = lumen_arg_ref(r.chunks[r.n]);
        if (rc == 0 && o->how == METHOD_EXACT &&
            (st = lumen_call(r.client, "wordcount.count", &chunk, 1, NULL, &r.counts[r.n])).code != LUMEN_OK)
            rc = fail(&r, "call wordcount.count", st);
        r.n++;
    }
    if (rc == 0) {
        fprintf(stderr, "%s: %zu chunk(s) of about %zu bytes\n", p->name, r.n, r.n ? in->len / r.n : 0);
        phase(&r, o->how == METHOD_EXACT ? "connect, split, put, count" : "connect, split, put");
    }
    if (rc == 0 && o->how == METHOD_EXACT) rc = r.n > 0 ? run_exact(&r, text) : 0;
    if (rc == 0 && o->how == METHOD_SEED) {
        wc_table *totals = wc_table_new(64);
        rc = totals ? run_seed(&r, totals) : 1;
        if (rc == 0) rc = top_text(p->name, totals, o->k, text);
        wc_table_free(totals);
    }
    if (rc == 0) fprintf(stderr, "%s: total %.3f s\n", p->name, now_s() - start);
    lumen_close(r.client);
    free(r.chunks);
    free(r.counts);
    free(bounds);
    return rc;
}

int wc_program_main(const wc_program *p, int argc, char **argv) {
    options o;
    int rc = parse_args(p, argc, argv, &o);
    if (rc >= 0) return rc;
    input in;
    if (input_open(o.input, &in, p->name) != 0) return 1;
    lumen_bytes text = {NULL, 0};
    rc = o.how == METHOD_LOCAL ? run_local(p, &o, &in, &text) : run_cluster(p, &o, &in, &text);
    input_close(&in);
    if (rc == 0 && text.len == 0) {
        fprintf(stderr, "%s: %s has no words\n", p->name, o.input);
        rc = 1;
    }
    if (rc == 0) fwrite(text.data, 1, text.len, stdout);
    free(text.data);
    return fflush(stdout) == 0 ? rc : 1;
}

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

/* Runs of the whole job when the cluster lost an object it cannot rebuild
 * (the input's chunks were put, so they die with their object store). */
#define JOB_ATTEMPTS 3
/* Restarts of a --method actors Counter, and re-runs of its calls in flight
 * when it dies with its worker. */
#define ACTOR_RESTARTS 3

typedef enum method { METHOD_EXACT, METHOD_SEED, METHOD_ACTORS, METHOD_ACTORS_EXACT, METHOD_LOCAL } method;

static const char *const method_names[] = {
    [METHOD_EXACT] = "exact", [METHOD_SEED] = "seed", [METHOD_ACTORS] = "actors",
    [METHOD_ACTORS_EXACT] = "actors-exact", [METHOD_LOCAL] = "local",
};

typedef struct options {
    const char *address; /* NULL: lumen_connect's default */
    const char *input;
    const char *token;
    const char *tls_ca, *tls_cert, *tls_key; /* NULL: $LUMEN_TLS_CA, ... */
    const char *library; /* a .so to upload, or NULL: the workers' library path */
    size_t chunks;
    size_t actors; /* actors-exact: how many counters the chunks are dealt to */
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
    lumen_ref library; /* the uploaded library, when uploaded */
    bool uploaded;
    lumen_ref *chunks; /* one per chunk, put in the object store */
    lumen_ref *counts; /* each chunk's work submitted as soon as it is put: exact, its
                          count task; actors-exact, its add call */
    lumen_actor *actors; /* actors: one per chunk; actors-exact: min(--actors, n) */
    size_t n, nactors;
    double t0;
    lumen_code failure; /* the code of the first failure, OK while none */
} run;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(const wc_program *p, FILE *f) {
    fprintf(f,
            "usage: %s --input FILE [--address HOST:PORT] [--chunks N]%s\n"
            "          [--method exact|actors-exact%s|local] [--actors N] [--token T] [--library LIB.so]\n"
            "          [--timeout SECONDS] [--tls-ca FILE --tls-cert FILE --tls-key FILE]\n"
            "%s\n"
            "  --input FILE       the text to count (words: runs of non-whitespace bytes)\n"
            "  --address A        the scheduler (default: $LUMEN_ADDRESS, else 127.0.0.1:7400)\n"
            "  --chunks N         pieces the input is split into, counted in parallel (default 16)\n"
            "%s"
            "  --method M         exact: count every word per chunk, merge in a tree in the\n"
            "                     cluster (default);\n"
            "                     actors-exact: --actors actors each count their share of the\n"
            "                     chunks, their tables are merged in the cluster;\n"
            "%s"
            "                     local: one thread in this process\n"
            "  --actors N         actors-exact: how many counting actors (default 4)\n"
            "  --token T          the cluster's token (default: $LUMEN_TOKEN, else the token\n"
            "                     file of `lumen start` on this machine)\n"
            "  --tls-ca FILE      TLS: the CA of the services' certificates (default $LUMEN_TLS_CA)\n"
            "  --tls-cert FILE    TLS: this client's certificate and key, PEM (default\n"
            "  --tls-key FILE     $LUMEN_TLS_CERT, $LUMEN_TLS_KEY)\n"
            "  --library LIB.so   upload this function library instead of using the workers'\n"
            "  --timeout SECONDS  give up after this long (default 600)\n",
            p->name, p->top_flag ? " [--top K]" : "", p->seed_method ? "|seed|actors" : "", p->summary,
            p->top_flag ? "  --top K            how many of the most frequent words (default 10)\n" : "",
            p->seed_method ? "                     seed: the two-round course algorithm with tasks (may miss\n"
                             "                     the answer);\n"
                             "                     actors: the same two rounds, one actor per chunk;\n"
                           : "");
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

/* The two-round methods (seed, actors) only answer "the most frequent". */
static bool parse_method(const wc_program *p, const char *name, method *out) {
    for (size_t m = 0; m < sizeof method_names / sizeof method_names[0]; m++) {
        if (strcmp(name, method_names[m]) != 0) continue;
        if ((m == METHOD_SEED || m == METHOD_ACTORS) && !p->seed_method) return false;
        *out = (method)m;
        return true;
    }
    return false;
}

static int parse_args(const wc_program *p, int argc, char **argv, options *o) {
    *o = (options){.chunks = 16, .actors = 4, .k = p->top_flag ? 10 : 1, .how = METHOD_EXACT, .timeout_ms = 600000};
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
        else if (strcmp(a, "--tls-ca") == 0) o->tls_ca = v;
        else if (strcmp(a, "--tls-cert") == 0) o->tls_cert = v;
        else if (strcmp(a, "--tls-key") == 0) o->tls_key = v;
        else if (strcmp(a, "--library") == 0) o->library = v;
        else if (strcmp(a, "--chunks") == 0) {
            if (!parse_count(v, 1u << 20, &o->chunks)) return bad_args(p, "--chunks wants 1..1048576, not \"%s\"", v);
        } else if (strcmp(a, "--top") == 0 && p->top_flag) {
            if (!parse_count(v, 1u << 24, &o->k)) return bad_args(p, "--top wants 1..16777216, not \"%s\"", v);
        } else if (strcmp(a, "--timeout") == 0) {
            if (!parse_count(v, 30 * 86400, &n)) return bad_args(p, "--timeout wants seconds, not \"%s\"", v);
            o->timeout_ms = (int64_t)n * 1000;
        } else if (strcmp(a, "--method") == 0) {
            if (!parse_method(p, v, &o->how)) return bad_args(p, "unknown method \"%s\"", v);
        } else if (strcmp(a, "--actors") == 0) {
            if (!parse_count(v, 1u << 20, &o->actors)) return bad_args(p, "--actors wants 1..1048576, not \"%s\"", v);
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

static int fail(run *r, const char *what, lumen_status st) {
    if (r->failure == LUMEN_OK) r->failure = st.code;
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

/* Waits until every ref is ready or failed, with a progress bar when stderr
 * is a terminal. Only a view: what failed, and a wait cut short (a
 * scheduler restarting), is for the lumen_get that follows, which retries. */
static void wait_all(run *r, const lumen_ref *refs, size_t n, const char *what) {
    lumen_wait_progress(r->client, refs, n, r->opt->timeout_ms, what, NULL, NULL);
}

/* Gets a ref only to learn that its producer succeeded. */
static int get_ok(run *r, lumen_ref ref, const char *what) {
    lumen_bytes b = {NULL, 0};
    lumen_status st = lumen_get(r->client, ref, r->opt->timeout_ms, &b);
    lumen_bytes_free(&b);
    return st.code == LUMEN_OK ? 0 : fail(r, what, st);
}

static lumen_actor_opts actor_opts(const run *r) {
    lumen_actor_opts o = {.library = r->uploaded ? &r->library : NULL};
    /* An actors Counter's state is the chunk it was made with and its calls
     * only read it: a restart (the constructor run again) rebuilds it whole,
     * and a call run again answers the same. An actors-exact Counter's adds
     * accumulate: a restart would lose them, so it has none. */
    if (r->opt->how == METHOD_ACTORS) o.max_restarts = o.max_task_retries = ACTOR_RESTARTS;
    return o;
}

/* One chunk's share of a round of the two-round methods: a task on the
 * chunk (seed) or a call of its actor (actors), both named `step`; round 2
 * passes the candidate list. */
static lumen_status submit_step(run *r, size_t i, const char *step, const void *list, size_t list_len,
                                lumen_ref *out) {
    lumen_arg cands = lumen_arg_bytes(list, list_len);
    size_t ncands = list != NULL ? 1 : 0;
    if (r->opt->how == METHOD_ACTORS) return lumen_actor_call(r->client, r->actors[i], step, &cands, ncands, out);
    char fn[64];
    snprintf(fn, sizeof fn, "wordcount.%s", step);
    lumen_arg args[2] = {lumen_arg_ref(r->chunks[i]), cands};
    return lumen_call(r->client, fn, args, 1 + ncands, NULL, out);
}

/* Runs `step` for every chunk and adds the tables it returns to t. */
static int run_round(run *r, const char *step, const void *list, size_t list_len, lumen_ref *refs, wc_table *t) {
    for (size_t i = 0; i < r->n; i++) {
        lumen_status st = submit_step(r, i, step, list, list_len, &refs[i]);
        if (st.code != LUMEN_OK) return fail(r, step, st);
    }
    wait_all(r, refs, r->n, step);
    for (size_t i = 0; i < r->n; i++)
        if (get_merge(r, refs[i], t, step) != 0) return 1;
    return 0;
}

/* Round 1: every chunk's most common word; round 2: every chunk counts
 * every candidate; the client sums and picks. Misses a word that is never
 * first in a chunk but first overall. With actors, each chunk was counted
 * once, when its actor was made: the rounds only read its table. */
static int run_two_rounds(run *r, wc_table *totals) {
    lumen_ref *refs = calloc(r->n ? r->n : 1, sizeof *refs);
    wc_table *cands = wc_table_new(r->n);
    void *list = NULL;
    size_t list_len = 0;
    int rc = refs && cands ? run_round(r, "most_frequent", NULL, 0, refs, cands) : 1;
    if (rc == 0) {
        phase(r, "round 1 (top word per chunk)");
        fprintf(stderr, "%s: %zu candidate(s) from round 1\n", r->prog->name, wc_table_size(cands));
        rc = wc_table_serialize(cands, &list, &list_len) != 0;
    }
    if (rc == 0) rc = run_round(r, "count_candidates", list, list_len, refs, totals);
    if (rc == 0) phase(r, "round 2 (candidate counts)");
    free(list);
    free(refs);
    wc_table_free(cands);
    return rc;
}

/* Merges n tables in a tree of tasks in the cluster and asks it for the top
 * K (only K lines come back): *top is the answer's future. */
static int submit_merge_top(run *r, const lumen_ref *tables, size_t n, lumen_ref *top) {
    lumen_ref root;
    lumen_status st = lumen_reduce(r->client, "wordcount.merge", tables, n, NULL, &root);
    if (st.code != LUMEN_OK) return fail(r, "reduce wordcount.merge", st);
    char kbuf[24];
    snprintf(kbuf, sizeof kbuf, "%zu", r->opt->k);
    lumen_arg targs[2] = {lumen_arg_ref(root), lumen_arg_bytes(kbuf, strlen(kbuf))};
    st = lumen_call(r->client, "wordcount.top", targs, 2, NULL, top);
    return st.code == LUMEN_OK ? 0 : fail(r, "call wordcount.top", st);
}

/* The answer's lines, as a malloc'ed copy like every method's answer. */
static int get_answer(run *r, lumen_ref top, const char *what, lumen_bytes *text) {
    lumen_bytes got = {NULL, 0};
    lumen_status st = lumen_get(r->client, top, r->opt->timeout_ms, &got);
    if (st.code != LUMEN_OK) return fail(r, what, st);
    text->data = malloc(got.len + 1);
    text->len = text->data ? got.len : 0;
    if (text->data != NULL && got.len > 0) memcpy(text->data, got.data, got.len);
    lumen_bytes_free(&got);
    return 0;
}

/* Counts every word of every chunk (those tasks were submitted as the
 * chunks were put), then merges and picks in the cluster. */
static int run_exact(run *r, lumen_bytes *text) {
    lumen_ref top;
    int rc = submit_merge_top(r, r->counts, r->n, &top);
    if (rc == 0) { /* the counts, then the answer: the merges run as counts finish */
        r->counts[r->n] = top;
        wait_all(r, r->counts, r->n + 1, "count");
    }
    if (rc == 0) rc = get_answer(r, top, "count, merge and top", text);
    if (rc == 0) phase(r, "merge tree, top");
    return rc;
}

/* The actors have been adding their chunks since they were put; each one's
 * table is asked for (it runs after its adds: one caller's calls keep their
 * order) and the tables are merged and picked from in the cluster. */
static int run_actors_exact(run *r, lumen_bytes *text) {
    lumen_ref *tables = calloc(r->nactors, sizeof *tables), top;
    int rc = tables != NULL ? 0 : 1;
    for (size_t j = 0; rc == 0 && j < r->nactors; j++) {
        lumen_status st = lumen_actor_call(r->client, r->actors[j], "counts", NULL, 0, &tables[j]);
        if (st.code != LUMEN_OK) rc = fail(r, "call counts", st);
    }
    if (rc == 0) rc = submit_merge_top(r, tables, r->nactors, &top);
    if (rc == 0) {
        r->counts[r->n] = top;
        wait_all(r, r->counts, r->n + 1, "add");
    }
    /* A failed add leaves its actor's table short: the answer would be wrong. */
    for (size_t i = 0; rc == 0 && i < r->n; i++) rc = get_ok(r, r->counts[i], "add a chunk to an actor");
    if (rc == 0) phase(r, "actors counted every chunk");
    if (rc == 0) rc = get_answer(r, top, "actor tables, merge and top", text);
    if (rc == 0) phase(r, "merge tree, top");
    free(tables);
    return rc;
}

/* What each method starts as soon as a chunk is put (chunk r->n). */
static int start_chunk(run *r) {
    size_t i = r->n;
    lumen_arg chunk = lumen_arg_ref(r->chunks[i]);
    lumen_actor_opts aopts = actor_opts(r);
    lumen_status st = {LUMEN_OK, ""};
    switch (r->opt->how) {
    case METHOD_EXACT:
        if ((st = lumen_call(r->client, "wordcount.count", &chunk, 1, NULL, &r->counts[i])).code != LUMEN_OK)
            return fail(r, "call wordcount.count", st);
        return 0;
    case METHOD_ACTORS: /* each actor owns its chunk: made with it, counting it once */
        if ((st = lumen_actor_new(r->client, "wordcount.Counter", &chunk, 1, &aopts, &r->actors[i])).code != LUMEN_OK)
            return fail(r, "create a wordcount.Counter", st);
        r->nactors++;
        return 0;
    case METHOD_ACTORS_EXACT: /* chunks are dealt round-robin; actors are made as needed */
        if (i < r->opt->actors) {
            if ((st = lumen_actor_new(r->client, "wordcount.Counter", NULL, 0, &aopts, &r->actors[i])).code != LUMEN_OK)
                return fail(r, "create a wordcount.Counter", st);
            r->nactors++;
        }
        st = lumen_actor_call(r->client, r->actors[i % r->opt->actors], "add", &chunk, 1, &r->counts[i]);
        return st.code == LUMEN_OK ? 0 : fail(r, "call add", st);
    default:
        return 0;
    }
}

/* Empty pieces (a text shorter than the chunk count) are skipped. */
static int put_chunks(run *r, const size_t *bounds) {
    for (size_t i = 0; i < r->opt->chunks; i++) {
        if (bounds[i + 1] == bounds[i]) continue;
        lumen_status st = lumen_put(r->client, r->in->data + bounds[i], bounds[i + 1] - bounds[i], &r->chunks[r->n]);
        if (st.code != LUMEN_OK) return fail(r, "put chunk", st);
        if (start_chunk(r) != 0) return 1;
        r->n++;
    }
    fprintf(stderr, "%s: %zu chunk(s) of about %zu bytes\n", r->prog->name, r->n, r->n ? r->in->len / r->n : 0);
    static const char *const started[METHOD_LOCAL + 1] = {
        [METHOD_EXACT] = "connect, split, put, count",
        [METHOD_ACTORS] = "connect, split, put, actors",
        [METHOD_ACTORS_EXACT] = "connect, split, put, add",
    };
    phase(r, started[r->opt->how] ? started[r->opt->how] : "connect, split, put");
    return 0;
}

static int connect_cluster(run *r) {
    lumen_connect_opts copts = {
        .token = r->opt->token, .tls_ca = r->opt->tls_ca, .tls_cert = r->opt->tls_cert, .tls_key = r->opt->tls_key};
    lumen_status st = lumen_connect(r->opt->address, &copts, &r->client);
    if (st.code != LUMEN_OK) return fail(r, "connect", st);
    if (r->opt->library == NULL) return 0;
    if ((st = lumen_library_upload(r->client, r->opt->library, &r->library)).code != LUMEN_OK)
        return fail(r, "upload library", st);
    r->uploaded = true;
    return 0;
}

/* The answer from the chunks put (none: no words, an empty answer). */
static int run_method(run *r, lumen_bytes *text) {
    if (r->n == 0) return 0;
    if (r->opt->how == METHOD_EXACT) return run_exact(r, text);
    if (r->opt->how == METHOD_ACTORS_EXACT) return run_actors_exact(r, text);
    wc_table *totals = wc_table_new(64);
    int rc = totals ? run_two_rounds(r, totals) : 1;
    if (rc == 0) rc = top_text(r->prog->name, totals, r->opt->k, text);
    wc_table_free(totals);
    return rc;
}

/* One run of the job: connect (a new job), put the chunks, count. */
static int run_attempt(run *r, const size_t *bounds, lumen_bytes *text) {
    double start = now_s();
    r->t0 = start;
    int rc = connect_cluster(r);
    if (rc == 0) rc = put_chunks(r, bounds);
    if (rc == 0) rc = run_method(r, text);
    if (rc == 0) fprintf(stderr, "%s: total %.3f s\n", r->prog->name, now_s() - start);
    lumen_close(r->client); /* ends the job: its actors and objects go with it */
    r->client = NULL;
    return rc;
}

static int run_cluster(const wc_program *p, const options *o, const input *in, lumen_bytes *text) {
    run r = {.prog = p, .opt = o, .in = in};
    bool with_actors = o->how == METHOD_ACTORS || o->how == METHOD_ACTORS_EXACT;
    size_t *bounds = malloc((o->chunks + 1) * sizeof *bounds);
    r.chunks = calloc(o->chunks, sizeof *r.chunks);
    r.counts = calloc(o->chunks + 1, sizeof *r.counts); /* and the answer's ref, to wait for */
    r.actors = with_actors ? calloc(o->chunks, sizeof *r.actors) : NULL;
    int rc = 0;
    if (bounds == NULL || r.chunks == NULL || r.counts == NULL || (with_actors && r.actors == NULL)) {
        fprintf(stderr, "%s: out of memory\n", p->name);
        rc = 1;
    }
    if (rc == 0) wc_split(in->data, in->len, o->chunks, bounds);
    /* An object put into a store that died is gone for good (no replicas),
     * and so is an accumulating actor that died: the job starts again, the
     * input put again into the stores alive. */
    for (int attempt = 1; rc == 0; attempt++) {
        r.n = r.nactors = 0;
        r.uploaded = false;
        r.failure = LUMEN_OK;
        rc = run_attempt(&r, bounds, text);
        bool lost = r.failure == LUMEN_OBJECT_LOST || r.failure == LUMEN_ACTOR_DIED;
        if (rc == 0 || !lost || attempt == JOB_ATTEMPTS) break;
        fprintf(stderr, "%s: the cluster lost %s it cannot rebuild; running the job again (attempt %d of %d)\n",
                p->name, r.failure == LUMEN_OBJECT_LOST ? "an object" : "an actor", attempt + 1, JOB_ATTEMPTS);
        rc = 0;
    }
    free(r.actors);
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

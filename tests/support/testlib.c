/*
 * testlib.c - a function library for the test suite (build/lib/liblumentest.so).
 * Every worker of a test cluster loads it from its library path.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lumen/remote.h>

/* A malloc'd copy of b as a C string. */
static char *text(const lumen_bytes *b) {
    char *s = malloc(b->len + 1);
    if (s == NULL) return NULL;
    if (b->len) memcpy(s, b->data, b->len);
    s[b->len] = '\0';
    return s;
}

static int reply(lumen_bytes *out, const void *data, size_t len) {
    out->data = malloc(len ? len : 1);
    if (out->data == NULL) return -1;
    if (len) memcpy(out->data, data, len);
    out->len = len;
    return 0;
}

static int reply_str(lumen_bytes *out, const char *s) { return reply(out, s, strlen(s)); }

/* The decimal number in an argument; false when it is not one. */
static bool number(const lumen_bytes *b, long long *v) {
    char *s = text(b), *end = NULL;
    if (s == NULL) return false;
    errno = 0;
    *v = strtoll(s, &end, 10);
    bool ok = errno == 0 && end != s && *end == '\0';
    free(s);
    return ok;
}

static int echo(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    if (nargs < 1) return lumen_task_fail(ctx, "test.echo wants 1 argument, got %zu", nargs);
    return reply(out, args[0].data, args[0].len);
}
LUMEN_REMOTE("test.echo", echo);

static int concat(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    size_t total = 0;
    for (size_t i = 0; i < nargs; i++) total += args[i].len;
    uint8_t *p = malloc(total ? total : 1);
    if (p == NULL) return lumen_task_fail(ctx, "cannot allocate %zu bytes", total);
    size_t off = 0;
    for (size_t i = 0; i < nargs; i++) {
        if (args[i].len) memcpy(p + off, args[i].data, args[i].len);
        off += args[i].len;
    }
    out->data = p;
    out->len = total;
    return 0;
}
LUMEN_REMOTE("test.concat", concat);

/* args[0] repeated args[1] times: a big result from small arguments. */
static int repeat(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    long long times;
    if (nargs != 2 || !number(&args[1], &times) || times < 0 || args[0].len == 0)
        return lumen_task_fail(ctx, "test.repeat wants a text and a count");
    out->data = malloc(args[0].len * (size_t)times + 1);
    if (out->data == NULL) return lumen_task_fail(ctx, "test.repeat: out of memory");
    for (long long i = 0; i < times; i++) memcpy((char *)out->data + (size_t)i * args[0].len, args[0].data, args[0].len);
    out->len = args[0].len * (size_t)times;
    return 0;
}
LUMEN_REMOTE("test.repeat", repeat);

static int add(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    long long sum = 0;
    for (size_t i = 0; i < nargs; i++) {
        long long v;
        if (!number(&args[i], &v)) return lumen_task_fail(ctx, "argument %zu is not a decimal number", i);
        sum += v;
    }
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", sum);
    return reply_str(out, buf);
}
LUMEN_REMOTE("test.add", add);

static int fail(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    (void)out;
    char *s = nargs ? text(&args[0]) : NULL;
    int rc = lumen_task_fail(ctx, "failed on purpose: %s", s ? s : "");
    free(s);
    return rc;
}
LUMEN_REMOTE("test.fail", fail);

static int crash(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    (void)ctx, (void)args, (void)nargs, (void)out;
    raise(SIGSEGV);
    return 0;
}
LUMEN_REMOTE("test.crash", crash);

static int do_abort(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    (void)ctx, (void)args, (void)nargs, (void)out;
    abort();
}
LUMEN_REMOTE("test.abort", do_abort);

static int do_sleep(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    long long ms;
    if (nargs < 1 || !number(&args[0], &ms) || ms < 0)
        return lumen_task_fail(ctx, "test.sleep wants a number of milliseconds");
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    return reply_str(out, "slept");
}
LUMEN_REMOTE("test.sleep", do_sleep);

/* Allocates and touches N MiB in 1 MiB blocks, so a memory limit stops it
 * part-way with malloc returning NULL (errno ENOMEM). */
static int alloc(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    long long mib;
    if (nargs < 1 || !number(&args[0], &mib) || mib < 0)
        return lumen_task_fail(ctx, "test.alloc wants a number of MiB");
    void **blocks = calloc((size_t)mib + 1, sizeof *blocks);
    if (blocks == NULL) return lumen_task_fail(ctx, "cannot allocate the block list");
    long long got = 0;
    for (; got < mib; got++) {
        blocks[got] = malloc(1u << 20);
        if (blocks[got] == NULL) break;
        memset(blocks[got], 0xa5, 1u << 20);
    }
    int saved = errno;
    for (long long i = 0; i < got; i++) free(blocks[i]);
    free(blocks);
    if (got < mib) {
        errno = saved;
        return lumen_task_fail(ctx, "allocated only %lld of %lld MiB", got, mib);
    }
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", mib);
    return reply_str(out, buf);
}
LUMEN_REMOTE("test.alloc", alloc);

static int size(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    (void)ctx;
    uint64_t total = 0;
    for (size_t i = 0; i < nargs; i++) total += args[i].len;
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, total);
    return reply_str(out, buf);
}
LUMEN_REMOTE("test.size", size);

static int print(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    (void)ctx;
    char *s = nargs ? text(&args[0]) : NULL;
    printf("test.print stdout: %s\n", s ? s : "");
    fprintf(stderr, "test.print stderr: %s\n", s ? s : "");
    free(s);
    return reply_str(out, "printed");
}
LUMEN_REMOTE("test.print", print);

/* ------------------------------------------------------ task logs */

/* test.print_lines(text, n): n numbered lines "<text> line <i>" on stdout
 * (n * ~40 bytes: past the 64 KiB a log keeps when n is in the thousands). */
static int print_lines(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    long long n;
    if (nargs != 2 || !number(&args[1], &n) || n < 0) return lumen_task_fail(ctx, "test.print_lines wants a text and a count");
    char *s = text(&args[0]);
    for (long long i = 0; i < n; i++) printf("%s line %06lld of a long output\n", s ? s : "", i);
    free(s);
    return reply_str(out, "printed");
}
LUMEN_REMOTE("test.print_lines", print_lines);

/* test.print_crash(text): a line on stdout, one on stderr, an unfinished
 * line on stdout, then SIGSEGV. */
static int print_crash(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    (void)ctx, (void)out;
    char *s = nargs ? text(&args[0]) : NULL;
    printf("before the crash (stdout): %s\n", s ? s : "");
    fprintf(stderr, "before the crash (stderr): %s\n", s ? s : "");
    printf("an unfinished line: %s", s ? s : "");
    free(s);
    raise(SIGSEGV);
    return 0;
}
LUMEN_REMOTE("test.print_crash", print_crash);

/* "about to <what>: <args[0]>" on stdout, then next(args[1]). */
static int print_then(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, const char *what,
                      lumen_remote_fn next, lumen_bytes *out) {
    if (nargs != 2) return lumen_task_fail(ctx, "wants a text and what to %s", what);
    char *s = text(&args[0]);
    printf("about to %s: %s\n", what, s ? s : "");
    free(s);
    return next(ctx, &args[1], 1, out);
}

/* test.print_sleep(text, ms): a line on stdout, then sleeps (into its time limit). */
static int print_sleep(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    return print_then(ctx, args, nargs, "sleep", do_sleep, out);
}
LUMEN_REMOTE("test.print_sleep", print_sleep);

/* test.print_alloc(text, mib): a line on stdout, then test.alloc(mib) (into its memory limit). */
static int print_alloc(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    return print_then(ctx, args, nargs, "allocate", alloc, out);
}
LUMEN_REMOTE("test.print_alloc", print_alloc);

static void *print_from_thread(void *arg) {
    printf("from a thread of the task: %s\n", (const char *)arg);
    fprintf(stderr, "from a thread of the task (stderr): %s\n", (const char *)arg);
    return NULL;
}

/* test.print_thread(text): a thread the task starts and joins prints. */
static int print_thread(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    char *s = nargs ? text(&args[0]) : NULL;
    pthread_t t;
    int rc = pthread_create(&t, NULL, print_from_thread, s ? s : (char *)"");
    if (rc == 0) pthread_join(t, NULL);
    free(s);
    return rc == 0 ? reply_str(out, "printed") : lumen_task_fail(ctx, "pthread_create: %s", strerror(rc));
}
LUMEN_REMOTE("test.print_thread", print_thread);

/* ------------------------------------------------------------ actors */

/*
 * test.Counter: a running total. Constructor: an optional decimal start
 * value (anything else fails the constructor). Methods (decimal text in and
 * out): add(n) -> the new total, get -> the total, fail(text) -> an error,
 * crash -> SIGSEGV, sleep(ms) -> "slept", pid -> "<pid> <ppid>" (the
 * executor hosting the actor and its parent, the worker), say(text) ->
 * text, printed on stdout, crash_once(path) -> SIGSEGV the first time
 * (it leaves a file at path), "survived" after. The constructor prints its start value.
 */
typedef struct counter {
    long long total;
} counter;

static int counter_new(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, void **state) {
    long long start = 0;
    if (nargs >= 1 && !number(&args[0], &start)) {
        char *s = text(&args[0]);
        int rc = lumen_task_fail(ctx, "test.Counter: start value '%s' is not a decimal number", s ? s : "");
        free(s);
        return rc;
    }
    counter *c = calloc(1, sizeof *c);
    if (c == NULL) return lumen_task_fail(ctx, "test.Counter: out of memory");
    c->total = start;
    printf("test.Counter starts at %lld\n", start);
    *state = c;
    return 0;
}

static void counter_free(void *state) { free(state); }

static int reply_number(lumen_bytes *out, long long v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    return reply_str(out, buf);
}

static int counter_add(lumen_task_ctx *ctx, void *state, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    counter *c = state;
    long long v;
    if (nargs != 1 || !number(&args[0], &v))
        return lumen_task_fail(ctx, "test.Counter.add wants 1 decimal number, got %zu args", nargs);
    c->total += v;
    return reply_number(out, c->total);
}

/* say(text): prints it, returns it. */
static int counter_say(lumen_task_ctx *ctx, void *state, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    (void)ctx, (void)state;
    char *s = nargs ? text(&args[0]) : NULL;
    printf("test.Counter says: %s\n", s ? s : "");
    free(s);
    return nargs ? reply(out, args[0].data, args[0].len) : reply_str(out, "");
}

static int counter_get(lumen_task_ctx *ctx, void *state, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    (void)ctx, (void)args, (void)nargs;
    return reply_number(out, ((counter *)state)->total);
}

static int counter_fail(lumen_task_ctx *ctx, void *state, const lumen_bytes *args, size_t nargs,
                        lumen_bytes *out) {
    (void)state, (void)out;
    char *s = nargs ? text(&args[0]) : NULL;
    int rc = lumen_task_fail(ctx, "failed on purpose: %s", s ? s : "");
    free(s);
    return rc;
}

static int counter_crash(lumen_task_ctx *ctx, void *state, const lumen_bytes *args, size_t nargs,
                         lumen_bytes *out) {
    (void)ctx, (void)state, (void)args, (void)nargs, (void)out;
    raise(SIGSEGV);
    return 0;
}

static int counter_sleep(lumen_task_ctx *ctx, void *state, const lumen_bytes *args, size_t nargs,
                         lumen_bytes *out) {
    (void)state;
    return do_sleep(ctx, args, nargs, out);
}

static int counter_pid(lumen_task_ctx *ctx, void *state, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    (void)ctx, (void)state, (void)args, (void)nargs;
    char buf[48];
    snprintf(buf, sizeof buf, "%ld %ld", (long)getpid(), (long)getppid());
    return reply_str(out, buf);
}

/* crash_once(path): SIGSEGV if the file at path does not exist (creating it
 * first), else "survived": crashes the first incarnation that runs it. */
static int counter_crash_once(lumen_task_ctx *ctx, void *state, const lumen_bytes *args, size_t nargs,
                              lumen_bytes *out) {
    (void)state;
    if (nargs != 1) return lumen_task_fail(ctx, "test.Counter.crash_once wants a path");
    FILE *f = fopen(args[0].data, "wx"); /* args end in a NUL byte */
    if (f != NULL) {
        fclose(f);
        raise(SIGSEGV);
    }
    return reply_str(out, "survived");
}

LUMEN_ACTOR("test.Counter", counter_new, counter_free, LUMEN_METHOD("add", counter_add),
            LUMEN_METHOD("get", counter_get), LUMEN_METHOD("fail", counter_fail),
            LUMEN_METHOD("crash", counter_crash), LUMEN_METHOD("sleep", counter_sleep),
            LUMEN_METHOD("pid", counter_pid), LUMEN_METHOD("say", counter_say),
            LUMEN_METHOD("crash_once", counter_crash_once));

/* A client in the task's own job (the worker gives executors the cluster's
 * address and token); on failure the task's error says why. */
static int job_client(lumen_task_ctx *ctx, const char *who, lumen_client **out) {
    *out = NULL;
    lumen_connect_opts opts = {.job = lumen_task_job(ctx)};
    lumen_status st = lumen_connect(NULL, &opts, out);
    if (st.code != LUMEN_OK)
        return lumen_task_fail(ctx, "%s: connect to job %s: %s: %s", who, opts.job, lumen_code_name(st.code), st.msg);
    return 0;
}

/* Fails the task with st's code and message, after closing c. */
static int fail_with(lumen_task_ctx *ctx, lumen_client *c, const char *what, lumen_status st) {
    lumen_close(c);
    return lumen_task_fail(ctx, "%s: %s: %s", what, lumen_code_name(st.code), st.msg);
}

/*
 * test.call_actor(handle, n): a task that calls an actor. It joins the
 * task's job through the public client API, calls add(n) on the actor whose
 * handle is its first argument, and returns that call's result.
 */
static int call_actor(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    if (nargs != 2) return lumen_task_fail(ctx, "test.call_actor wants (actor handle, number), got %zu args", nargs);
    lumen_actor actor;
    lumen_status st = lumen_actor_from_bytes(args[0].data, args[0].len, &actor);
    if (st.code != LUMEN_OK) return lumen_task_fail(ctx, "test.call_actor: bad handle: %s", st.msg);
    lumen_client *c = NULL;
    if (job_client(ctx, "test.call_actor", &c) != 0) return -1;
    lumen_arg a = lumen_arg_bytes(args[1].data, args[1].len);
    lumen_ref r;
    lumen_bytes b = {0};
    st = lumen_actor_call(c, actor, "add", &a, 1, &r);
    if (st.code == LUMEN_OK) st = lumen_get(c, r, 60000, &b);
    if (st.code != LUMEN_OK) return fail_with(ctx, c, "test.call_actor: add", st);
    lumen_close(c);
    int rc = reply(out, b.data, b.len);
    lumen_bytes_free(&b);
    return rc;
}
LUMEN_REMOTE("test.call_actor", call_actor);

/* ------------------------------------------- the client API inside tasks */

/* A ref from its 32 hex digits (lumen_ref_hex's form); false when it is not one. */
static bool ref_from_hex(const lumen_bytes *b, lumen_ref *out) {
    if (b->len != 2 * sizeof out->id) return false;
    const char *s = b->data;
    for (size_t i = 0; i < sizeof out->id; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) return false;
        out->id[i] = (uint8_t)v;
    }
    return true;
}

/* test.get_hex(hex): the value of the object whose id the argument spells
 * (a ref passed inside a value, not as a ref argument), read by the task's
 * own client. */
static int get_hex(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    lumen_ref ref;
    if (nargs != 1 || !ref_from_hex(&args[0], &ref))
        return lumen_task_fail(ctx, "test.get_hex wants an object id in hex");
    lumen_client *c = NULL;
    if (job_client(ctx, "test.get_hex", &c) != 0) return -1;
    lumen_bytes b = {0};
    lumen_status st = lumen_get(c, ref, 20000, &b);
    if (st.code != LUMEN_OK) return fail_with(ctx, c, "test.get_hex: get", st);
    lumen_close(c);
    out->data = b.data; /* malloc'd by liblumen: the runtime frees it */
    out->len = b.len;
    return 0;
}
LUMEN_REMOTE("test.get_hex", get_hex);

/* test.put_hex(text): puts text through the task's own client and returns
 * the put's id in hex (a ref returned inside a value). */
static int put_hex(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    if (nargs != 1) return lumen_task_fail(ctx, "test.put_hex wants 1 argument, got %zu", nargs);
    lumen_client *c = NULL;
    if (job_client(ctx, "test.put_hex", &c) != 0) return -1;
    lumen_ref ref;
    lumen_status st = lumen_put(c, args[0].data, args[0].len, &ref);
    if (st.code != LUMEN_OK) return fail_with(ctx, c, "test.put_hex: put", st);
    lumen_close(c);
    char hex[33];
    return reply_str(out, lumen_ref_hex(ref, hex));
}
LUMEN_REMOTE("test.put_hex", put_hex);

/* test.nested(n): a task that submits test.add(n, 1) and returns its result. */
static int nested(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    if (nargs != 1) return lumen_task_fail(ctx, "test.nested wants 1 argument, got %zu", nargs);
    lumen_client *c = NULL;
    if (job_client(ctx, "test.nested", &c) != 0) return -1;
    lumen_arg a[2] = {lumen_arg_bytes(args[0].data, args[0].len), lumen_arg_bytes("1", 1)};
    lumen_ref r;
    lumen_bytes b = {0};
    lumen_status st = lumen_call(c, "test.add", a, 2, NULL, &r);
    if (st.code == LUMEN_OK) st = lumen_get(c, r, 20000, &b);
    if (st.code != LUMEN_OK) return fail_with(ctx, c, "test.nested: test.add", st);
    lumen_close(c);
    out->data = b.data;
    out->len = b.len;
    return 0;
}
LUMEN_REMOTE("test.nested", nested);

/* test.job(): the task's job id (lumen_task_job). */
static int job(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    (void)args, (void)nargs;
    return reply_str(out, lumen_task_job(ctx));
}
LUMEN_REMOTE("test.job", job);

/* ------------------------------------------------------------ retries */

/* test.crash_first(text): SIGSEGV on the first attempt; later ones return
 * "attempt <n>: <text>". */
static int crash_first(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    if (lumen_task_attempt(ctx) == 0) raise(SIGSEGV);
    char buf[64];
    snprintf(buf, sizeof buf, "attempt %u: %.40s", lumen_task_attempt(ctx), nargs ? (const char *)args[0].data : "");
    return reply_str(out, buf);
}
LUMEN_REMOTE("test.crash_first", crash_first);

/* test.fail_first(text): lumen_task_fail on the first attempt; later ones
 * return "attempt <n>: <text>". */
static int fail_first(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    if (lumen_task_attempt(ctx) == 0) return lumen_task_fail(ctx, "failed on the first attempt");
    char buf[64];
    snprintf(buf, sizeof buf, "attempt %u: %.40s", lumen_task_attempt(ctx), nargs ? (const char *)args[0].data : "");
    return reply_str(out, buf);
}
LUMEN_REMOTE("test.fail_first", fail_first);

/*
 * executor.c - lumen-executor: runs user functions for one worker slot.
 *
 *   lumen-executor --fd N [--log-fd M] [--library-path DIRS]
 *
 * Spawned by lumen-worker with one end of a socketpair as fd N. Loads every
 * .so of the library path (their constructors register functions and actor
 * classes through lumen_remote_register / lumen_actor_register), then
 * answers ExecRequest frames with ExecReply frames, one at a time, until the
 * socket closes. An executor that constructed an actor hosts it for the rest
 * of its life: later requests call its methods, and its destructor runs when
 * the worker closes the socket. User code runs in
 * this process so that a crash, a leak or an endless loop costs only this
 * process: the worker turns its death into the task's error and spawns a new
 * one. Links protobuf-c, never gRPC.
 *
 * Task logs: once its libraries are loaded, the executor's stdout and
 * stderr become the pipe at fd M, which the worker reads as the running
 * task's log (executor_pool.h). stdout is line-buffered and every stream is
 * flushed before a reply, so a task's output is in the pipe before its
 * reply is on the socket; a crash still writes the line stdout held. The
 * executor's own messages keep the stderr it was started with.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lumen/remote.h>

#include "executor.pb-c.h"
#include "frame.h"
#include "registry.h"

/* Results above this travel in a memfd instead of through the socket. */
#define RESULT_FD_THRESHOLD (64u << 10)

/* The actor this executor hosts (after an EXEC_ACTOR_NEW that succeeded). */
static const lm_actor_class *hosted;
static void *hosted_state;
static int sock = -1;
static atomic_bool task_running;
/* The stderr the worker gave us: the executor's own messages, never a task's log. */
static int diag_fd = STDERR_FILENO;

/* While a memory-limited task runs: the frame the crash handler sends when
 * the process dies of a failed allocation. */
static uint8_t *oom_frame;
static size_t oom_frame_len;

static void die_oom(void) {
    fputs("lumen-executor: out of memory\n", stderr);
    _exit(70);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (p == NULL) die_oom();
    return p;
}

static char *xstrdup(const char *s) {
    char *p = strdup(s);
    if (p == NULL) die_oom();
    return p;
}

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) die_oom();
    va_end(ap);
    return s;
}

/* ASan builds behave like plain ones: a failed allocation returns NULL
 * (memory limits), and a crash kills the process with its signal instead of
 * ASan's exit(1), so the worker can name the signal. */
__attribute__((used, visibility("default"))) const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1:handle_segv=0:handle_sigbus=0:handle_abort=0:handle_sigfpe=0";
}

/* ------------------------------------------------------------ libraries */

/* What cannot be loaded goes to the executor's own stderr. */
static void load_warn(void *arg, const char *msg) {
    (void)arg;
    fprintf(stderr, "lumen-executor: %s\n", msg);
}

/* A message of the registry's, or "out of memory" when it had none. */
static char *own(char *msg) { return msg != NULL ? msg : xstrdup("out of memory"); }

/* --------------------------------------------------------- memory limit */

static uint64_t address_space_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f != NULL) {
        if (fscanf(f, "%lu", &pages) != 1) pages = 0;
        fclose(f);
    }
    return (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The unfinished line stdout holds joins the task's log before the process
 * dies. Read from glibc's FILE without stdio's lock, which the crashing
 * thread may hold: a handler must not wait for it. */
static void salvage_stdout(void) {
#ifdef __GLIBC__
    const char *base = stdout->_IO_write_base, *end = stdout->_IO_write_ptr;
    if (base != NULL && end > base && end - base <= (1 << 20))
        if (write(STDOUT_FILENO, base, (size_t)(end - base)) < 0) return;
#endif
}

/* Every crash: stdout's last line is saved; under a memory limit, a death
 * by a failed allocation is reported first (oom_frame). */
static void on_crash(int sig) {
    int saved = errno;
    if (oom_frame != NULL && saved == ENOMEM) lm_frame_send_raw(sock, oom_frame, oom_frame_len);
    signal(sig, SIG_DFL);
    salvage_stdout();
    raise(sig);
}

static void crash_handlers_install(void) {
    static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_crash;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; i++)
        sigaction(crash_signals[i], &sa, NULL);
}

typedef struct limit_state {
    bool active;
    struct rlimit old;
} limit_state;

/*
 * The limit is on address space the task adds to what the executor already
 * maps (its libraries, and under ASan the sanitizer's shadow), so the same
 * number means the same in every build. The soft limit only: it is raised
 * back after the task.
 */
static void limit_begin(limit_state *ls, uint64_t limit, const char *fn) {
    ls->active = false;
    if (limit == 0 || getrlimit(RLIMIT_AS, &ls->old) != 0) return;
    uint64_t cap = address_space_bytes() + limit;
    if (ls->old.rlim_max != RLIM_INFINITY && cap > ls->old.rlim_max) cap = ls->old.rlim_max;

    Lumen__ExecReply reply = LUMEN__EXEC_REPLY__INIT;
    reply.code = LUMEN_RESOURCE_EXHAUSTED;
    reply.message = xprintf("%s exceeded its memory limit of %llu bytes", fn, (unsigned long long)limit);
    reply.fatal = true;
    oom_frame = lm_frame_encode(&reply.base, &oom_frame_len);
    free(reply.message);

    struct rlimit rl = {.rlim_cur = cap, .rlim_max = ls->old.rlim_max};
    setrlimit(RLIMIT_AS, &rl);
    ls->active = true;
}

static void limit_end(limit_state *ls) {
    if (!ls->active) return;
    setrlimit(RLIMIT_AS, &ls->old);
    free(oom_frame);
    oom_frame = NULL;
}

/* ------------------------------------------------------------- one task */

static void hex(const uint8_t *p, size_t n, char *out, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n && k + 2 < cap; i++, k += 2) snprintf(out + k, 3, "%02x", p[i]);
    out[k] = '\0';
}

typedef struct outcome {
    int code;
    char *message; /* malloc'd */
    lumen_bytes result;
} outcome;

/* The request's arguments: inline, or views of the attached memfd. */
static int map_args(const Lumen__ExecRequest *req, int fd, lumen_bytes **args, size_t *nargs, void **map,
                    size_t *map_len, char **err) {
    *map = NULL;
    *map_len = 0;
    if (!req->args_in_fd) { /* small: copied behind the array, each with its NUL */
        size_t bytes = 0;
        for (size_t i = 0; i < req->n_args; i++) bytes += req->args[i].len + 1;
        *nargs = req->n_args;
        *args = xmalloc(req->n_args * sizeof **args + bytes);
        char *copy = (char *)(*args + req->n_args);
        for (size_t i = 0; i < req->n_args; i++) {
            if (req->args[i].len > 0) memcpy(copy, req->args[i].data, req->args[i].len);
            copy[req->args[i].len] = '\0';
            (*args)[i] = (lumen_bytes){copy, req->args[i].len};
            copy += req->args[i].len + 1;
        }
        return 0;
    }
    /* Back to back in the memfd, each followed by a NUL (executor_pool.h). */
    uint64_t total = 0;
    for (size_t i = 0; i < req->n_arg_sizes; i++) total += req->arg_sizes[i] + 1;
    if (fd < 0) {
        *err = xprintf("arguments announced in a memfd that did not arrive");
        return -1;
    }
    struct stat sb; /* the worker reuses its memfd: it may be bigger, not smaller */
    if (fstat(fd, &sb) != 0 || (uint64_t)sb.st_size < total) {
        *err = xprintf("the arguments' memfd holds less than their %llu bytes", (unsigned long long)total);
        return -1;
    }
    if (total > 0) {
        /* Only the part this task uses, unmapped after it (so the address
         * space a memory limit counts from stays small); populated in one
         * call, as its pages already exist. */
        *map = mmap(NULL, total, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
        if (*map == MAP_FAILED) {
            *map = NULL;
            *err = xprintf("cannot map the arguments (%llu bytes): %s", (unsigned long long)total,
                           strerror(errno));
            return -1;
        }
        *map_len = total;
    }
    *nargs = req->n_arg_sizes;
    *args = xmalloc(req->n_arg_sizes * sizeof **args);
    uint64_t off = 0;
    for (size_t i = 0; i < req->n_arg_sizes; i++) {
        (*args)[i] = (lumen_bytes){(uint8_t *)*map + off, req->arg_sizes[i]};
        off += req->arg_sizes[i] + 1;
    }
    return 0;
}

/* What a request runs, found by name before its arguments are mapped. */
typedef struct target {
    lumen_remote_fn fn;         /* EXEC_TASK */
    const lm_actor_class *cls;  /* EXEC_ACTOR_NEW */
    lumen_method_fn method;     /* EXEC_ACTOR_CALL */
    char *label;                /* for messages: "lib.fn", "lib.Class", "lib.Class.method" */
} target;

static int find_target(const Lumen__ExecRequest *req, target *t, outcome *o) {
    memset(t, 0, sizeof *t);
    switch (req->kind) {
    case LUMEN__EXEC_KIND__EXEC_ACTOR_NEW:
        t->label = xstrdup(req->function);
        if (hosted != NULL) {
            o->code = LUMEN_FAILED_PRECONDITION;
            o->message = xprintf("this executor already hosts an actor of %s", hosted->name);
        } else if ((t->cls = lm_registry_class(req->function)) == NULL) {
            o->code = LUMEN_NOT_FOUND;
            o->message = own(lm_registry_unknown("actor class", req->function, NULL));
        }
        break;
    case LUMEN__EXEC_KIND__EXEC_ACTOR_CALL:
        t->label = xprintf("%s.%s", hosted ? hosted->name : "?", req->function);
        if (hosted == NULL) {
            o->code = LUMEN_FAILED_PRECONDITION;
            o->message = xprintf("no actor lives in this executor");
        } else if ((t->method = lm_registry_method(hosted, req->function)) == NULL) {
            o->code = LUMEN_NOT_FOUND;
            o->message = own(lm_registry_unknown("method", req->function, hosted));
        }
        break;
    default:
        t->label = xstrdup(req->function);
        if ((t->fn = lm_registry_fn(req->function)) == NULL) {
            o->code = LUMEN_NOT_FOUND;
            o->message = own(lm_registry_unknown("function", req->function, NULL));
        }
        break;
    }
    return o->code == 0 ? 0 : -1;
}

/* Runs the target; the return code of the user's function. */
static int invoke(const target *t, lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    if (t->fn != NULL) return t->fn(ctx, args, nargs, out);
    if (t->method != NULL) return t->method(ctx, hosted_state, args, nargs, out);
    void *state = NULL;
    int rc = t->cls->constructor(ctx, args, nargs, &state);
    if (rc == 0) {
        hosted = t->cls;
        hosted_state = state;
    }
    return rc;
}

static outcome run(const Lumen__ExecRequest *req, int args_fd) {
    outcome o = {0};
    for (size_t i = 0; i < req->n_libraries; i++) {
        const char *err = lm_registry_load(req->libraries[i]);
        if (err != NULL) {
            o.code = LUMEN_FAILED_PRECONDITION;
            o.message = xprintf("cannot load library %s: %s", req->libraries[i], err);
            return o;
        }
    }
    target t;
    if (find_target(req, &t, &o) != 0) {
        free(t.label);
        return o;
    }
    lumen_bytes *args = NULL;
    size_t nargs = 0, map_len = 0;
    void *map = NULL;
    char *err = NULL;
    if (map_args(req, args_fd, &args, &nargs, &map, &map_len, &err) != 0) {
        o.code = LUMEN_INTERNAL;
        o.message = err;
        free(t.label);
        return o;
    }
    lumen_task_ctx ctx = {.attempt = req->attempt};
    hex(req->task_id.data, req->task_id.len, ctx.id, sizeof ctx.id);
    hex(req->job_id.data, req->job_id.len, ctx.job, sizeof ctx.job);
    limit_state ls;
    limit_begin(&ls, req->memory_limit, t.label);
    errno = 0;
    int rc = invoke(&t, &ctx, args, nargs, &o.result);
    int after = errno;
    limit_end(&ls);
    fflush(NULL); /* what the function printed joins its log before the reply goes */

    bool oom = ls.active && (ctx.fail_errno == ENOMEM || (ctx.error == NULL && after == ENOMEM));
    if (rc != 0 && oom) {
        o.code = LUMEN_RESOURCE_EXHAUSTED;
        o.message = xprintf("%s exceeded its memory limit of %llu bytes%s%s%s", t.label,
                            (unsigned long long)req->memory_limit, ctx.error ? " (" : "",
                            ctx.error ? ctx.error : "", ctx.error ? ")" : "");
    } else if (rc != 0) {
        o.code = LUMEN_TASK_FAILED;
        o.message = ctx.error ? xstrdup(ctx.error) : xprintf("%s failed (returned %d)", t.label, rc);
    } else if (o.result.data == NULL && o.result.len > 0) {
        o.code = LUMEN_INTERNAL;
        o.message = xprintf("%s returned %zu bytes at NULL", t.label, o.result.len);
        o.result.len = 0;
    }
    if (rc != 0) { /* a failed function's output is not a result */
        free(o.result.data);
        o.result = (lumen_bytes){0};
    }
    free(ctx.error);
    free(args);
    free(t.label);
    if (map != NULL) munmap(map, map_len);
    return o;
}

/* The memfd big results travel in, kept for the process's life: the pages
 * of one result are reused by the next instead of being faulted in and
 * zeroed again. It only grows, so a worker's mapping never runs past its
 * end; the worker holds this executor until it is done reading. */
static int result_fd = -1;
static uint64_t result_fd_size;

/* Writes data to the result memfd; its fd, or -1 (and *err) on failure. */
static int result_memfd(const void *data, size_t len, char **err) {
    if (result_fd < 0) {
        /* Sealed against shrinking: the worker maps it and checks the seal. */
        int fd = memfd_create("lumen-result", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) != 0) {
            *err = xprintf("a sealed result memfd: %s", strerror(errno));
            if (fd >= 0) close(fd);
            return -1;
        }
        result_fd = fd;
    }
    if (len > result_fd_size) {
        if (ftruncate(result_fd, (off_t)len) != 0) {
            *err = xprintf("growing the result memfd to %zu bytes: %s", len, strerror(errno));
            return -1;
        }
        result_fd_size = len;
    }
    for (size_t off = 0; off < len;) {
        ssize_t n = pwrite(result_fd, (const uint8_t *)data + off, len - off, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            *err = xprintf("writing the result to a memfd: %s", strerror(errno));
            return -1;
        }
        off += (size_t)n;
    }
    return result_fd;
}

static int send_outcome(outcome *o) {
    Lumen__ExecReply reply = LUMEN__EXEC_REPLY__INIT;
    int fd = -1;
    char *err = NULL;
    if (o->code == 0 && o->result.len > RESULT_FD_THRESHOLD) {
        fd = result_memfd(o->result.data, o->result.len, &err);
        if (fd < 0) {
            o->code = LUMEN_INTERNAL;
            o->message = err;
        }
    }
    reply.code = o->code;
    reply.message = o->message ? o->message : (char *)"";
    if (o->code == 0) {
        reply.result_size = o->result.len;
        reply.result_in_fd = fd >= 0;
        if (fd < 0) reply.result = (ProtobufCBinaryData){o->result.len, o->result.data};
    }
    int rc = lm_frame_send(sock, &reply.base, &fd, fd >= 0 ? 1 : 0);
    free(o->message);
    free(o->result.data);
    return rc;
}

/* ---------------------------------------------------------------- main */

/* Ends the process when the worker goes away while a task runs (a task in
 * an endless loop would otherwise outlive it); between tasks, main's read
 * sees the end of the socket and exits cleanly. */
static void *watch_worker(void *arg) {
    (void)arg;
    struct pollfd p = {.fd = sock, .events = POLLRDHUP};
    while (poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
    if (atomic_load(&task_running)) _exit(0);
    return NULL;
}

/* stdout and stderr become the pipe log_fd (-1: left alone); libraries
 * loaded before printed to the worker's log. */
static void capture_output(int log_fd) {
    if (log_fd < 0) return;
    fflush(NULL);
    diag_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    if (diag_fd < 0 || dup2(log_fd, STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0) {
        fprintf(stderr, "lumen-executor: task output stays in the worker's log: %s\n", strerror(errno));
        if (diag_fd >= 0) close(diag_fd);
        diag_fd = STDERR_FILENO;
    }
    close(log_fd);
    /* Not a terminal, so stdio would hold 4 KiB: a line is in the log once written. */
    setvbuf(stdout, NULL, _IOLBF, 0);
}

/* Back to the worker's stderr: an actor's destructor and the sanitizers'
 * reports at exit belong to no task. */
static void release_output(void) {
    if (diag_fd == STDERR_FILENO) return;
    fflush(NULL);
    dup2(diag_fd, STDOUT_FILENO);
    dup2(diag_fd, STDERR_FILENO);
    close(diag_fd);
    diag_fd = STDERR_FILENO;
}

static void usage(void) {
    fputs("usage: lumen-executor --fd N [--log-fd M] [--library-path DIR[:DIR...]]\n"
          "Started by lumen-worker; runs one task at a time for it.\n",
          stderr);
}

static void free_all(void) {
    /* An actor ends with its executor: its destructor runs on a clean exit. */
    if (hosted != NULL && hosted->destructor != NULL) hosted->destructor(hosted_state);
    hosted = NULL;
    lm_registry_free();
    if (result_fd >= 0) close(result_fd);
}

int main(int argc, char **argv) {
    const char *library_path = "";
    int log_fd = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--fd") == 0 && i + 1 < argc) sock = atoi(argv[++i]);
        else if (strcmp(argv[i], "--log-fd") == 0 && i + 1 < argc) log_fd = atoi(argv[++i]);
        else if (strcmp(argv[i], "--library-path") == 0 && i + 1 < argc) library_path = argv[++i];
        else {
            usage();
            return 2;
        }
    }
    if (sock < 0) {
        usage();
        return 2;
    }
    static char altstack[64 * 1024]; /* the crash handler runs even after a stack overflow */
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
    sigaltstack(&ss, NULL);

    lm_registry_load_path(library_path, load_warn, NULL);
    capture_output(log_fd);
    crash_handlers_install();
    pthread_t watcher;
    if (pthread_create(&watcher, NULL, watch_worker, NULL) == 0) pthread_detach(watcher);

    for (;;) {
        ProtobufCMessage *msg = NULL;
        int fds[LM_FRAME_MAX_FDS];
        size_t nfds = 0;
        int rc = lm_frame_recv(sock, &lumen__exec_request__descriptor, &msg, fds, LM_FRAME_MAX_FDS, &nfds);
        if (rc == -EPIPE) break; /* the worker closed: done */
        if (rc != 0) {
            dprintf(diag_fd, "lumen-executor: reading a request: %s\n", strerror(-rc));
            break;
        }
        atomic_store(&task_running, true);
        outcome o = run((const Lumen__ExecRequest *)msg, nfds > 0 ? fds[0] : -1);
        atomic_store(&task_running, false);
        for (size_t i = 0; i < nfds; i++) close(fds[i]);
        protobuf_c_message_free_unpacked(msg, NULL);
        rc = send_outcome(&o);
        if (rc != 0) {
            if (rc != -EPIPE) dprintf(diag_fd, "lumen-executor: sending a reply: %s\n", strerror(-rc));
            break;
        }
    }
    release_output();
    free_all();
    return 0;
}

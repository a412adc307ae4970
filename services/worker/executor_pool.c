/* executor_pool.c - see executor_pool.h. */
#include "clock.h"
#include "executor_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "executor.pb-c.h"
#include "frame.h"
#include "log.h"
#include "tasklog.h"

extern char **environ;

/* Arguments totalling more than this travel in a memfd. */
#define ARGS_FD_THRESHOLD (64u << 10)
/* The fd numbers an executor finds its socket and its output pipe at. */
#define EXECUTOR_FD 3
#define EXECUTOR_LOG_FD 4
/* One read of an output pipe (half its default capacity), on the stack. */
#define LOG_READ_BYTES (32u << 10)
/* How long an idle executor gets to exit after its socket closes. */
#define EXIT_GRACE_MS 2000

typedef struct executor {
    pid_t pid;     /* 0: not running (being respawned, or spawn failed) */
    int sock;      /* the worker's end; -1 with pid 0 */
    int log_fd;    /* read end of its stdout/stderr pipe (non-blocking); -1 with pid 0 */
    bool busy;
    bool holding;   /* busy only because a result maps its result memfd */
    bool cancelled; /* the running task was cancelled (its kill is ours) */
    lm_id task;
    lm_shmbuf args; /* big arguments of callers without a buffer of their own */
} executor;

struct lm_exec_pool {
    char *exe, *library_path;
    char **env; /* the executors' environment: ours plus opts.env */
    int slots;
    executor *ex;
    pthread_mutex_t mu;
    pthread_cond_t idle; /* an executor became idle, or stopping */
    bool stopping;
    unsigned spawns;
};

/* The child's copy of fd, above the numbers it is given at, so dup2
 * always makes a fresh fd without close-on-exec (dup2 of an fd onto itself
 * would keep the flag); fd is closed. */
static int child_fd(int fd) {
    int child = fcntl(fd, F_DUPFD_CLOEXEC, EXECUTOR_LOG_FD + 1);
    close(fd);
    return child;
}

/* Starts an executor for e (pid, sock and log_fd). */
static lumen_status spawn(lm_exec_pool *p, executor *e) {
    int sv[2], out[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return lm_status_errno(LUMEN_INTERNAL, errno, "socketpair");
    if (pipe2(out, O_CLOEXEC | O_NONBLOCK) != 0) {
        close(sv[0]);
        close(sv[1]);
        return lm_status_errno(LUMEN_INTERNAL, errno, "pipe2");
    }
    int child = child_fd(sv[1]), log_child = child_fd(out[1]);
    /* Only our end is non-blocking: a task that writes faster than we read waits. */
    if (child < 0 || log_child < 0 || fcntl(log_child, F_SETFL, 0) != 0) {
        lumen_status st = lm_status_errno(LUMEN_INTERNAL, errno, "fcntl");
        close(sv[0]);
        close(out[0]);
        if (child >= 0) close(child);
        if (log_child >= 0) close(log_child);
        return st;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, child, EXECUTOR_FD);
    posix_spawn_file_actions_adddup2(&fa, log_child, EXECUTOR_LOG_FD);
    posix_spawnattr_init(&attr);
    /* The worker blocks SIGTERM/SIGINT and ignores SIGPIPE: the executor
     * starts with the defaults instead. */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char fdarg[16], logarg[16];
    snprintf(fdarg, sizeof fdarg, "%d", EXECUTOR_FD);
    snprintf(logarg, sizeof logarg, "%d", EXECUTOR_LOG_FD);
    char *argv[] = {p->exe, "--fd", fdarg, "--log-fd", logarg, "--library-path", p->library_path, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, p->exe, &fa, &attr, argv, p->env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(child);
    close(log_child);
    if (rc != 0) {
        close(sv[0]);
        close(out[0]);
        return lm_status_errno(LUMEN_INTERNAL, rc, p->exe);
    }
    pthread_mutex_lock(&p->mu);
    e->pid = pid;
    e->sock = sv[0];
    e->log_fd = out[0];
    p->spawns++;
    pthread_mutex_unlock(&p->mu);
    return lm_ok();
}

/* Reads e's output pipe into log (NULL: our own log, as no task's) until
 * it is empty; false at its end (no process writes to it any more). */
static bool drain_log(int fd, lm_tasklog *log) {
    char buf[LOG_READ_BYTES];
    lm_tasklog stray = {0};
    lm_tasklog *into = log ? log : &stray;
    bool open = true;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            open = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
            break;
        }
        lm_tasklog_append(into, buf, (size_t)n);
        if ((size_t)n < sizeof buf) break; /* empty now; more is seen by the next poll */
    }
    if (log == NULL && stray.len > 0)
        lm_info("an executor wrote between tasks (%zu bytes): %.*s", stray.len + (size_t)stray.dropped,
                (int)(stray.len > 1024 ? 1024 : stray.len), stray.data);
    lm_tasklog_fini(&stray);
    return open;
}

/* Takes e's process out of the pool and reaps it (after killing it when
 * `kill_it`); what it wrote until it died goes to log (NULL: dropped).
 * Returns its wait status. */
static int retire(lm_exec_pool *p, executor *e, bool kill_it, lm_tasklog *log) {
    pthread_mutex_lock(&p->mu);
    pid_t pid = e->pid;
    int sock = e->sock, log_fd = e->log_fd;
    e->pid = 0;
    e->sock = e->log_fd = -1;
    pthread_mutex_unlock(&p->mu);
    int status = 0;
    if (pid <= 0) return 0;
    if (kill_it) kill(pid, SIGKILL);
    close(sock);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (log != NULL) drain_log(log_fd, log);
    close(log_fd);
    return status;
}

static bool stopping(lm_exec_pool *p) {
    pthread_mutex_lock(&p->mu);
    bool s = p->stopping;
    pthread_mutex_unlock(&p->mu);
    return s;
}

static void free_env(char **env) {
    for (size_t i = 0; env != NULL && env[i] != NULL; i++) free(env[i]);
    free(env);
}

/* A copy of our environment with extra entries, which replace variables
 * of the same name; NULL when out of memory. */
static char **make_env(const char *const *extra) {
    size_t n = 0, nextra = 0;
    while (environ[n] != NULL) n++;
    while (extra != NULL && extra[nextra] != NULL) nextra++;
    char **env = calloc(n + nextra + 1, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; env != NULL && i < nextra + n; i++) {
        const char *entry = i < nextra ? extra[i] : environ[i - nextra];
        size_t name_len = strcspn(entry, "=");
        bool replaced = false;
        for (size_t j = 0; i >= nextra && j < nextra && !replaced; j++)
            replaced = strncmp(extra[j], entry, name_len) == 0 && extra[j][name_len] == '=';
        if (replaced) continue;
        if ((env[k++] = strdup(entry)) == NULL) {
            free_env(env);
            return NULL;
        }
    }
    return env;
}

/* Respawns e after its process ended; logged, not fatal: the next run on
 * e tries again. */
static void respawn(lm_exec_pool *p, executor *e) {
    if (stopping(p)) return;
    lumen_status st = spawn(p, e);
    if (!LM_IS_OK(st)) lm_error("cannot respawn an executor: %s", st.msg);
}

lumen_status lm_exec_pool_new(const lm_exec_pool_opts *opts, lm_exec_pool **out) {
    *out = NULL;
    if (opts->slots < 1) return lm_status(LUMEN_INVALID_ARGUMENT, "an executor pool needs at least 1 slot");
    if (access(opts->executor_path, X_OK) != 0)
        return lm_status_errno(LUMEN_CONFIG, errno, opts->executor_path);
    lm_exec_pool *p = calloc(1, sizeof *p);
    if (p == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    p->exe = strdup(opts->executor_path);
    p->library_path = strdup(opts->library_path ? opts->library_path : "");
    p->env = make_env(opts->env);
    p->slots = opts->slots;
    p->ex = calloc((size_t)opts->slots, sizeof *p->ex);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->idle, NULL);
    lumen_status st = p->exe && p->library_path && p->env && p->ex ? lm_ok()
                                                         : lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    for (int i = 0; p->ex != NULL && i < p->slots; i++) {
        p->ex[i].sock = p->ex[i].log_fd = -1;
        lm_shmbuf_init(&p->ex[i].args, "lumen-args");
    }
    for (int i = 0; LM_IS_OK(st) && i < p->slots; i++) st = spawn(p, &p->ex[i]);
    if (!LM_IS_OK(st)) {
        lm_exec_pool_free(p);
        return st;
    }
    *out = p;
    return lm_ok();
}

/* -------------------------------------------------------------- results */

/* e takes tasks again. */
static void release(lm_exec_pool *p, executor *e) {
    pthread_mutex_lock(&p->mu);
    e->busy = false;
    e->holding = false;
    pthread_cond_signal(&p->idle);
    pthread_mutex_unlock(&p->mu);
}

void lm_exec_result_free(lm_exec_result *r) {
    if (r == NULL) return;
    if (r->mapped_len_ > 0) munmap(r->owned_, r->mapped_len_);
    else free(r->owned_);
    if (r->held_ != NULL) release(r->pool_, r->held_);
    free(r->log);
    memset(r, 0, sizeof *r);
}

char *lm_exec_result_take_log(lm_exec_result *r, size_t *len) {
    char *log = r->log;
    *len = r->log_len;
    r->log = NULL;
    r->log_len = 0;
    return log;
}

static void fail(lm_exec_result *out, lumen_code code, const char *fmt, ...) LM_PRINTF(3, 4);
static void fail(lm_exec_result *out, lumen_code code, const char *fmt, ...) {
    lm_exec_result_free(out);
    out->status.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->status.msg, sizeof out->status.msg, fmt, ap);
    va_end(ap);
}

/* The reply's result, copied out of the frame or mapped from its memfd. */
static void take_reply(const Lumen__ExecReply *reply, int fd, lm_exec_result *out) {
    if (reply->code != LUMEN_OK) {
        fail(out, (lumen_code)reply->code, "%s", reply->message);
        return;
    }
    out->status = lm_ok();
    if (!reply->result_in_fd) {
        out->owned_ = malloc(reply->result.len ? reply->result.len : 1);
        if (out->owned_ == NULL) {
            fail(out, LUMEN_RESOURCE_EXHAUSTED, "out of memory for a %zu-byte result", reply->result.len);
            return;
        }
        if (reply->result.len) memcpy(out->owned_, reply->result.data, reply->result.len);
        out->data = out->owned_;
        out->len = reply->result.len;
        return;
    }
    /* The executor reuses its memfd, so it may be bigger; sealed against
     * shrinking, or user code could truncate it under our mapping (SIGBUS). */
    struct stat sb;
    int seals = fd < 0 ? -1 : fcntl(fd, F_GET_SEALS);
    if (seals < 0 || (seals & F_SEAL_SHRINK) == 0 || fstat(fd, &sb) != 0 ||
        (uint64_t)sb.st_size < reply->result_size) {
        fail(out, LUMEN_INTERNAL, "the executor's result memfd is missing, too small or not sealed");
        return;
    }
    if (reply->result_size == 0) return;
    /* Populated in one call: the pages exist, only their entries are new. */
    void *map = mmap(NULL, reply->result_size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (map == MAP_FAILED) {
        fail(out, LUMEN_RESOURCE_EXHAUSTED, "cannot map a %llu-byte result: %s",
             (unsigned long long)reply->result_size, strerror(errno));
        return;
    }
    out->owned_ = map;
    out->mapped_len_ = reply->result_size;
    out->data = map;
    out->len = reply->result_size;
}

/* ------------------------------------------------------------- requests */

/* The memfd holding the task's arguments back to back when they are big:
 * the caller's buffer, else e's own, copied into (its pages are reused task
 * after task). -1 when they travel inline. Errors go to *st. */
static int args_memfd(executor *e, const lm_exec_task *t, lumen_status *st) {
    uint64_t total = 0;
    for (size_t i = 0; i < t->nargs; i++) total += t->args[i].len + 1;
    if (total <= ARGS_FD_THRESHOLD) return -1;
    const lm_shmbuf *buf = t->args_buf;
    if (buf != NULL) {
        uint64_t off = 0;
        for (size_t i = 0; i < t->nargs; off += t->args[i].len + 1, i++)
            if (t->args[i].len > 0 && t->args[i].data != buf->base + off) {
                *st = lm_status(LUMEN_INVALID_ARGUMENT, "argument %zu is not at offset %llu of its buffer", i,
                                (unsigned long long)off);
                return -1;
            }
        if (off > buf->size) {
            *st = lm_status(LUMEN_INVALID_ARGUMENT, "%llu bytes of arguments overrun their %llu-byte buffer",
                            (unsigned long long)off, (unsigned long long)buf->size);
            return -1;
        }
        return buf->fd;
    }
    *st = lm_shmbuf_reserve(&e->args, total);
    if (!LM_IS_OK(*st)) return -1;
    uint64_t off = 0;
    for (size_t i = 0; i < t->nargs; off += t->args[i].len + 1, i++) {
        if (t->args[i].len > 0) memcpy(e->args.base + off, t->args[i].data, t->args[i].len);
        e->args.base[off + t->args[i].len] = '\0';
    }
    return e->args.fd;
}

static int send_task(executor *e, const lm_exec_task *t, int args_fd) {
    Lumen__ExecRequest req = LUMEN__EXEC_REQUEST__INIT;
    req.task_id = (ProtobufCBinaryData){LM_ID_BYTES, (uint8_t *)t->task_id.bytes};
    req.job_id = (ProtobufCBinaryData){LM_ID_BYTES, (uint8_t *)t->job_id.bytes};
    req.kind = t->kind == LM_EXEC_ACTOR_NEW    ? LUMEN__EXEC_KIND__EXEC_ACTOR_NEW
               : t->kind == LM_EXEC_ACTOR_CALL ? LUMEN__EXEC_KIND__EXEC_ACTOR_CALL
                                               : LUMEN__EXEC_KIND__EXEC_TASK;
    req.function = (char *)t->function;
    req.attempt = t->attempt;
    req.memory_limit = t->memory_limit;
    req.n_libraries = t->nlibraries;
    req.libraries = (char **)t->libraries;
    ProtobufCBinaryData *inl = NULL;
    uint64_t *sizes = NULL;
    if (args_fd >= 0) {
        req.args_in_fd = true;
        sizes = malloc((t->nargs ? t->nargs : 1) * sizeof *sizes);
        if (sizes == NULL) return -ENOMEM;
        for (size_t i = 0; i < t->nargs; i++) sizes[i] = t->args[i].len;
        req.n_arg_sizes = t->nargs;
        req.arg_sizes = sizes;
    } else {
        inl = malloc((t->nargs ? t->nargs : 1) * sizeof *inl);
        if (inl == NULL) return -ENOMEM;
        for (size_t i = 0; i < t->nargs; i++) inl[i] = (ProtobufCBinaryData){t->args[i].len, t->args[i].data};
        req.n_args = t->nargs;
        req.args = inl;
    }
    int rc = lm_frame_send(e->sock, &req.base, &args_fd, args_fd >= 0 ? 1 : 0);
    free(inl);
    free(sizes);
    return rc;
}

/* True when e's process has gone (its socket hung up while idle). What it
 * wrote while idle goes to our log, found by the same poll. */
static bool hung_up(const executor *e) {
    struct pollfd pf[2] = {{.fd = e->sock, .events = POLLIN}, {.fd = e->log_fd, .events = POLLIN}};
    if (poll(pf, 2, 0) <= 0) return false;
    if (pf[1].revents & POLLIN) drain_log(e->log_fd, NULL);
    return pf[0].revents & (POLLHUP | POLLERR | POLLIN);
}

/* Turns the wait status of an executor that died during a task into the
 * task's error. */
static void died(const lm_exec_task *t, int status, lm_exec_result *out) {
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        if (sig == SIGKILL && t->memory_limit > 0) /* the kernel's OOM killer */
            fail(out, LUMEN_RESOURCE_EXHAUSTED, "%s exceeded its memory limit of %llu bytes", t->function,
                 (unsigned long long)t->memory_limit);
        else
            fail(out, LUMEN_TASK_FAILED, "%s crashed: signal %d (%s)", t->function, sig,
                 sigdescr_np(sig) ? sigdescr_np(sig) : "unknown signal");
    } else {
        fail(out, LUMEN_TASK_FAILED, "%s ended its executor process (exit status %d)", t->function,
             WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    out->crashed = out->status.code == LUMEN_TASK_FAILED;
}

/* Waits for e's reply within the task's time limit, reading what the task
 * writes into log meanwhile. */
static void await_reply(lm_exec_pool *p, executor *e, const lm_exec_task *t, lm_exec_result *out, lm_tasklog *log) {
    int64_t deadline = t->timeout_ms > 0 ? (int64_t)lm_mono_ms() + t->timeout_ms : 0;
    /* The pipe is left out once it ends (the task closed stdout and stderr). */
    struct pollfd pf[2] = {{.fd = e->sock, .events = POLLIN}, {.fd = e->log_fd, .events = POLLIN}};
    for (;;) {
        int wait_ms = -1;
        if (deadline) {
            int64_t left = deadline - (int64_t)lm_mono_ms();
            wait_ms = left <= 0 ? 0 : left > 1000000 ? 1000000 : (int)left;
        }
        int n = poll(pf, 2, wait_ms);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0 && deadline && (int64_t)lm_mono_ms() >= deadline) {
            retire(p, e, true, log);
            fail(out, LUMEN_DEADLINE_EXCEEDED, "%s timed out after %lld ms", t->function,
                 (long long)t->timeout_ms);
            return;
        }
        /* Written before the reply, so found by the poll that finds the reply. */
        if (n > 0 && pf[1].revents && !drain_log(e->log_fd, log)) pf[1].fd = -1;
        if (n > 0 && pf[0].revents) break;
    }
    ProtobufCMessage *msg = NULL;
    int fds[LM_FRAME_MAX_FDS];
    size_t nfds = 0;
    int rc = lm_frame_recv(e->sock, &lumen__exec_reply__descriptor, &msg, fds, LM_FRAME_MAX_FDS, &nfds);
    if (rc == 0) {
        const Lumen__ExecReply *reply = (const Lumen__ExecReply *)msg;
        take_reply(reply, nfds > 0 ? fds[0] : -1, out);
        if (reply->fatal) { /* sent by its crash handler: it is dying */
            retire(p, e, true, log);
            out->crashed = true;
        }
        for (size_t i = 0; i < nfds; i++) close(fds[i]);
        protobuf_c_message_free_unpacked(msg, NULL);
        return;
    }
    bool kill_it = rc != -EPIPE && rc != -ECONNRESET; /* garbage from a live executor */
    int status = retire(p, e, kill_it, log);
    pthread_mutex_lock(&p->mu);
    bool cancelled = e->cancelled, stop = p->stopping;
    pthread_mutex_unlock(&p->mu);
    if (cancelled) fail(out, LUMEN_CANCELLED, "%s was cancelled", t->function);
    else if (stop) fail(out, LUMEN_WORKER_DIED, "the worker is stopping");
    else if (kill_it) fail(out, LUMEN_INTERNAL, "bad reply from the executor: %s", strerror(-rc));
    else died(t, status, out);
}

/* Runs t on e, which is ours (busy). */
static void run_on(lm_exec_pool *p, executor *e, const lm_exec_task *t, lm_exec_result *out) {
    lm_tasklog log = {0};
    lumen_status st = lm_ok();
    int args_fd = args_memfd(e, t, &st); /* not ours to close */
    if (!LM_IS_OK(st)) {
        fail(out, st.code, "%s", st.msg);
        return;
    }
    /* An executor that died while idle is replaced before the task goes out;
     * a send that still fails means it died just now: one more try. */
    for (int attempt = 0;; attempt++) {
        if (stopping(p)) {
            fail(out, LUMEN_WORKER_DIED, "the worker is stopping");
            break;
        }
        if (e->pid > 0 && hung_up(e)) retire(p, e, true, NULL);
        if (e->pid <= 0) st = spawn(p, e);
        if (!LM_IS_OK(st)) {
            fail(out, LUMEN_INTERNAL, "cannot start an executor: %s", st.msg);
            break;
        }
        int rc = send_task(e, t, args_fd);
        if (rc == 0) {
            await_reply(p, e, t, out, &log);
            break;
        }
        retire(p, e, true, NULL);
        if (attempt == 1) {
            fail(out, LUMEN_INTERNAL, "cannot send the task to an executor: %s", strerror(-rc));
            break;
        }
    }
    if (e->pid <= 0) respawn(p, e); /* now, so it loads its libraries while idle */
    out->log = lm_tasklog_take(&log, &out->log_len);
}

void lm_exec_pool_run(lm_exec_pool *p, const lm_exec_task *t, lm_exec_result *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&p->mu);
    executor *e = NULL;
    while (!p->stopping && e == NULL) {
        for (int i = 0; i < p->slots && e == NULL; i++)
            if (!p->ex[i].busy) e = &p->ex[i];
        if (e == NULL) pthread_cond_wait(&p->idle, &p->mu);
    }
    if (e == NULL) {
        pthread_mutex_unlock(&p->mu);
        fail(out, LUMEN_WORKER_DIED, "the worker is stopping");
        return;
    }
    e->busy = true;
    e->cancelled = false;
    e->task = t->task_id;
    pthread_mutex_unlock(&p->mu);

    run_on(p, e, t, out);

    if (out->mapped_len_ == 0) {
        release(p, e);
        return;
    }
    /* The result maps e's result memfd, which e's next task overwrites. */
    pthread_mutex_lock(&p->mu);
    e->holding = true;
    pthread_mutex_unlock(&p->mu);
    out->pool_ = p;
    out->held_ = e;
}

bool lm_exec_pool_cancel(lm_exec_pool *p, lm_id task_id) {
    bool found = false;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->slots; i++) {
        executor *e = &p->ex[i];
        if (!e->busy || e->holding || !lm_id_equal(e->task, task_id)) continue;
        found = true;
        e->cancelled = true;
        if (e->pid > 0) kill(e->pid, SIGKILL); /* pid stays unreaped while set: no reuse */
    }
    pthread_mutex_unlock(&p->mu);
    return found;
}

unsigned lm_exec_pool_busy(lm_exec_pool *p) {
    unsigned n = 0;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->slots; i++) n += p->ex[i].busy;
    pthread_mutex_unlock(&p->mu);
    return n;
}

unsigned lm_exec_pool_spawns(lm_exec_pool *p) {
    pthread_mutex_lock(&p->mu);
    unsigned n = p->spawns;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void lm_exec_pool_shutdown(lm_exec_pool *p) {
    if (p == NULL) return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    for (int i = 0; i < p->slots; i++)
        if (p->ex[i].busy && !p->ex[i].holding && p->ex[i].pid > 0) kill(p->ex[i].pid, SIGKILL);
    pthread_cond_broadcast(&p->idle);
    pthread_mutex_unlock(&p->mu);
}

/* Closes an idle executor's socket and gives it a moment to exit by itself
 * (so it ends cleanly), then kills it. */
static void stop_idle(executor *e) {
    if (e->pid <= 0) return;
    close(e->sock);
    e->sock = -1;
    int status;
    bool exited = false;
    for (int waited = 0; waited < EXIT_GRACE_MS && !exited; waited += 10) {
        pid_t r = waitpid(e->pid, &status, WNOHANG);
        exited = r == e->pid || (r < 0 && errno != EINTR);
        if (!exited) lm_sleep_ms(10);
    }
    if (!exited) {
        kill(e->pid, SIGKILL);
        waitpid(e->pid, &status, 0);
    }
    e->pid = 0;
    /* Open until the process is gone: a write to a pipe no one reads would
     * kill it (SIGPIPE) before its actor's destructor ran. */
    drain_log(e->log_fd, NULL);
    close(e->log_fd);
    e->log_fd = -1;
}

void lm_exec_pool_free(lm_exec_pool *p) {
    if (p == NULL) return;
    lm_exec_pool_shutdown(p);
    for (int i = 0; p->ex && i < p->slots; i++) {
        stop_idle(&p->ex[i]);
        lm_shmbuf_fini(&p->ex[i].args);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->idle);
    free(p->ex);
    free(p->exe);
    free(p->library_path);
    free_env(p->env);
    free(p);
}

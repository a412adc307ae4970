/*
 * supervise.c - the supervisor `lumen start` leaves behind: it is the
 * parent of every process start runs, and starts again any that dies, the
 * way systemd or Kubernetes would, with a backoff (100 ms doubling to 5 s,
 * back to 100 ms after a run of 10 s), so a local cluster heals itself.
 *
 * It is forked by `lumen start` before anything else (so before gRPC is
 * initialised: it never uses gRPC, and its children are exec'ed fresh),
 * and takes start's orders over a pipe: "spawn this command line", which it
 * answers with the pid, then "supervise" once start succeeded (a start
 * that fails closes the pipe instead, and the supervisor leaves).
 * Afterwards it waits in poll() on a signalfd (SIGCHLD, SIGTERM, SIGINT)
 * with the next restart's time as the timeout: nothing polls.
 *
 * A restarted process gets the same command line, so services read their
 * secrets from files named there (--token-file, --redis-password-file).
 * Its pid file is rewritten, and <run_dir>/supervisor-<id>.status lists
 * every process with its restarts ("name restarts pid"), for `lumen status`.
 * SIGTERM (what `lumen stop` sends first) makes it leave its children be
 * and exit, so stop can then stop them in order.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"

#define RESTART_MIN_MS 100
#define RESTART_MAX_MS 5000
#define STABLE_MS 10000 /* a run this long resets the backoff */
#define MAX_CHILDREN 300
#define MSG_MAX 65536

typedef struct child {
    cli_proc proc;
    char log[700];
    char **argv;
    unsigned restarts;
    uint64_t started_ms;    /* monotonic */
    uint64_t restart_at_ms; /* monotonic; 0: running (or given up) */
    uint32_t backoff_ms;
} child;

typedef struct supervisor {
    const char *run_dir;
    char status_name[96];
    child kids[MAX_CHILDREN];
    size_t n;
} supervisor;

/* ---- the pipe protocol: a request is a length and NUL-separated strings
 * (name, log, argv...); the answer is the pid (or -errno) ---- */

static bool write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool read_all(int fd, void *buf, size_t len) {
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Starts argv in a session of its own, stdin from /dev/null, output
 * appended to the log; -errno when it cannot. */
static pid_t launch(const char *log_path, char *const argv[], const char *banner) {
    int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log < 0) return -errno;
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (write(log, banner, strlen(banner)) < 0) { /* the log is best effort */ }
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL); /* ours are blocked for the signalfd */
        dup2(null, 0);
        dup2(log, 1);
        dup2(log, 2);
        close_range(3, ~0u, 0);
        execvp(argv[0], argv);
        dprintf(2, "lumen: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int err = errno;
    close(log);
    if (null >= 0) close(null);
    return pid < 0 ? -err : pid;
}

static void write_status(const supervisor *sv) {
    char *text = malloc((size_t)sv->n * 120 + 1);
    if (text == NULL) return;
    size_t len = 0;
    text[0] = '\0';
    for (size_t i = 0; i < sv->n; i++)
        len += (size_t)snprintf(text + len, 120, "%s %u %d\n", sv->kids[i].proc.name, sv->kids[i].restarts,
                                (int)sv->kids[i].proc.pid);
    cli_write_file(sv->run_dir, sv->status_name, text, 0644);
    free(text);
}

static void start_child(supervisor *sv, child *c, bool restart) {
    char banner[256];
    snprintf(banner, sizeof banner, "---- lumen %s: %s (restart %u)\n", restart ? "supervisor" : "start",
             c->proc.name, c->restarts);
    if (!restart) snprintf(banner, sizeof banner, "---- lumen start: %s\n", c->proc.name);
    pid_t pid = launch(c->log, c->argv, banner);
    c->started_ms = lm_mono_ms();
    c->restart_at_ms = 0;
    if (pid < 0) { /* try again later */
        c->proc.pid = 0;
        c->restart_at_ms = c->started_ms + c->backoff_ms;
        return;
    }
    c->proc.pid = pid;
    c->proc.start_ticks = cli_proc_start_ticks(pid);
    cli_pidfile_write(sv->run_dir, &c->proc);
    if (restart) write_status(sv);
}

/* One order from start; false when start is done (EOF) or said "supervise". */
static bool take_order(supervisor *sv, int in, int out, bool *supervise) {
    uint32_t len;
    if (!read_all(in, &len, sizeof len)) return false;
    if (len == 0) { /* supervise from now on */
        *supervise = true;
        return false;
    }
    char *msg = len <= MSG_MAX ? malloc(len) : NULL;
    int32_t answer = -ENOMEM;
    if (msg == NULL || !read_all(in, msg, len) || msg[len - 1] != '\0' || sv->n == MAX_CHILDREN) {
        free(msg);
        write_all(out, &answer, sizeof answer);
        return msg != NULL;
    }
    size_t nstr = 0;
    for (uint32_t i = 0; i < len; i++) nstr += msg[i] == '\0';
    child *c = &sv->kids[sv->n];
    memset(c, 0, sizeof *c);
    c->argv = calloc(nstr, sizeof *c->argv); /* name, log, then argv: nstr - 2 strings and NULL */
    char *p = msg;
    snprintf(c->proc.name, sizeof c->proc.name, "%s", p);
    p += strlen(p) + 1;
    snprintf(c->log, sizeof c->log, "%s", p);
    p += strlen(p) + 1;
    for (size_t i = 0; c->argv != NULL && i + 2 < nstr; i++, p += strlen(p) + 1) c->argv[i] = strdup(p);
    free(msg);
    c->backoff_ms = RESTART_MIN_MS;
    if (c->argv == NULL) {
        write_all(out, &answer, sizeof answer);
        return true;
    }
    sv->n++;
    start_child(sv, c, false);
    answer = c->proc.pid > 0 ? (int32_t)c->proc.pid : -EAGAIN;
    write_all(out, &answer, sizeof answer);
    return true;
}

/* Reaps every child that ended and schedules its restart. */
static void reap(supervisor *sv) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < sv->n; i++) {
            child *c = &sv->kids[i];
            if (c->proc.pid != pid) continue;
            uint64_t now = lm_mono_ms();
            if (now - c->started_ms >= STABLE_MS) c->backoff_ms = RESTART_MIN_MS;
            c->restart_at_ms = now + c->backoff_ms;
            char line[256];
            int n = WIFSIGNALED(status)
                        ? snprintf(line, sizeof line, "---- lumen supervisor: %s died of signal %d; restart in %u ms\n",
                                   c->proc.name, WTERMSIG(status), c->backoff_ms)
                        : snprintf(line, sizeof line, "---- lumen supervisor: %s exited with status %d; restart in %u ms\n",
                                   c->proc.name, WEXITSTATUS(status), c->backoff_ms);
            int fd = open(c->log, O_WRONLY | O_APPEND | O_CLOEXEC);
            if (fd >= 0) {
                if (write(fd, line, (size_t)n) < 0) { /* best effort */ }
                close(fd);
            }
            c->backoff_ms = c->backoff_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : c->backoff_ms * 2;
            c->proc.pid = 0;
        }
    }
}

/* The time until the next restart is due (-1: none), restarting those due. */
static int restart_due(supervisor *sv) {
    uint64_t now = lm_mono_ms(), next = 0;
    for (size_t i = 0; i < sv->n; i++) {
        child *c = &sv->kids[i];
        if (c->restart_at_ms == 0) continue;
        if (c->restart_at_ms <= now) {
            c->restarts++;
            start_child(sv, c, true);
        }
        if (c->restart_at_ms != 0 && (next == 0 || c->restart_at_ms < next)) next = c->restart_at_ms;
    }
    if (next == 0) return -1;
    now = lm_mono_ms();
    return next > now ? (int)(next - now) : 0;
}

static void supervisor_main(const char *run_dir, const char *id, int in, int out) {
    static supervisor sv;
    sv.run_dir = run_dir;
    snprintf(sv.status_name, sizeof sv.status_name, "supervisor-%s.status", id);
    prctl(PR_SET_NAME, "lumen-supervise");
    setsid(); /* outlives start and its terminal */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC); /* nobody waits on start's output for us */
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        close(null);
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    bool supervise = false;
    /* Start's orders: children that die meanwhile are reaped, not restarted
     * (start sees them gone and gives up). */
    while (take_order(&sv, in, out, &supervise)) {
    }
    close(in);
    close(out);
    if (!supervise || sfd < 0) _exit(0);
    write_status(&sv);
    reap(&sv);
    for (;;) {
        struct pollfd pf = {.fd = sfd, .events = POLLIN};
        int timeout = restart_due(&sv);
        if (poll(&pf, 1, timeout) <= 0) continue;
        struct signalfd_siginfo si;
        if (read(sfd, &si, sizeof si) != sizeof si) continue;
        if (si.ssi_signo == SIGCHLD) reap(&sv);
        else if (si.ssi_signo != SIGHUP) break; /* SIGTERM, SIGINT: `lumen stop` takes it from here */
    }
    char path[800];
    snprintf(path, sizeof path, "%s/%s", run_dir, sv.status_name);
    unlink(path);
    _exit(0);
}

/* ---- start's side ---- */

lumen_status cli_supervisor_fork(const char *run_dir, const char *id, cli_supervisor *out) {
    memset(out, 0, sizeof *out);
    int orders[2], answers[2];
    if (pipe2(orders, O_CLOEXEC) != 0) return lm_status_errno(LUMEN_INTERNAL, errno, "pipe");
    if (pipe2(answers, O_CLOEXEC) != 0) {
        close(orders[0]);
        close(orders[1]);
        return lm_status_errno(LUMEN_INTERNAL, errno, "pipe");
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(orders[1]);
        close(answers[0]);
        supervisor_main(run_dir, id, orders[0], answers[1]);
    }
    int err = errno;
    close(orders[0]);
    close(answers[1]);
    if (pid < 0) {
        close(orders[1]);
        close(answers[0]);
        return lm_status_errno(LUMEN_INTERNAL, err, "fork");
    }
    out->proc.pid = pid;
    out->proc.start_ticks = cli_proc_start_ticks(pid);
    snprintf(out->proc.name, sizeof out->proc.name, "supervisor-%s", id);
    out->orders = orders[1];
    out->answers = answers[0];
    return cli_pidfile_write(run_dir, &out->proc);
}

lumen_status cli_supervisor_spawn(cli_supervisor *sv, const char *name, const char *log, char *const argv[],
                                  pid_t *pid) {
    size_t len = strlen(name) + 1 + strlen(log) + 1;
    for (size_t i = 0; argv[i] != NULL; i++) len += strlen(argv[i]) + 1;
    if (len > MSG_MAX) return lm_status(LUMEN_INVALID_ARGUMENT, "%s: command line too long", name);
    char *msg = malloc(sizeof(uint32_t) + len);
    if (msg == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    uint32_t n32 = (uint32_t)len;
    memcpy(msg, &n32, sizeof n32);
    char *p = msg + sizeof n32;
    p = stpcpy(p, name) + 1;
    p = stpcpy(p, log) + 1;
    for (size_t i = 0; argv[i] != NULL; i++) p = stpcpy(p, argv[i]) + 1;
    int32_t answer = 0;
    bool ok = write_all(sv->orders, msg, sizeof n32 + len) && read_all(sv->answers, &answer, sizeof answer);
    free(msg);
    if (!ok) return lm_status(LUMEN_INTERNAL, "the supervisor is gone");
    if (answer < 0) return lm_status_errno(LUMEN_INTERNAL, -answer, name);
    *pid = answer;
    return lm_ok();
}

void cli_supervisor_release(cli_supervisor *sv, bool supervise) {
    if (sv->orders <= 0) return;
    uint32_t zero = 0;
    if (supervise) write_all(sv->orders, &zero, sizeof zero);
    close(sv->orders);
    close(sv->answers);
    sv->orders = sv->answers = -1;
}

bool cli_supervisor_restarts(const char *run_dir, const char *name, unsigned *restarts) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s", run_dir);
    cli_proc *procs = NULL;
    size_t n = 0;
    bool found = false;
    if (!LM_IS_OK(cli_pidfiles_read(run_dir, &procs, &n))) return false;
    for (size_t i = 0; i < n && !found; i++) {
        if (strncmp(procs[i].name, "supervisor-", 11) != 0) continue;
        char path[800], line[256];
        snprintf(path, sizeof path, "%s/%s.status", run_dir, procs[i].name);
        FILE *f = fopen(path, "re");
        while (f != NULL && !found && fgets(line, sizeof line, f) != NULL) {
            char who[64];
            unsigned r;
            if (sscanf(line, "%63s %u", who, &r) == 2 && strcmp(who, name) == 0) {
                *restarts = r;
                found = true;
            }
        }
        if (f != NULL) fclose(f);
    }
    free(procs);
    return found;
}

/*
 * start.c - `lumen start --head` and `lumen start --address`: runs this
 * machine's part of a cluster as background processes.
 *
 * Order matters for gRPC: every process is forked (and exec'ed) first, and
 * only then does this process initialise gRPC to wait for their Health
 * answers. Redis is waited for before the scheduler starts (hiredis only);
 * object stores and workers retry registering until the scheduler is up.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "cli.h"
#include "config.h"
#include "health.h"
#include "redis_state.h"
#include "rpc.h"
#include "rundir.h"

#define MAX_WORKERS 256
#define MAX_SERVICES (MAX_WORKERS + 3)

typedef struct service {
    cli_proc proc;
    const char *role; /* "redis" | "scheduler" | "objstore" | "worker" */
    char addr[300];   /* where the cluster reaches it */
    char local[300];  /* where this machine checks its health */
    char log[700];
} service;

/* Where the cluster's token came from: it decides what start says. */
typedef enum token_source {
    TOKEN_NEW,     /* generated here (a head given none) */
    TOKEN_GIVEN,   /* --token or $LUMEN_TOKEN */
    TOKEN_RUN_DIR, /* the run dir's token file (a join on the head's machine) */
    TOKEN_NONE,    /* --token "": no authentication, on purpose */
    TOKEN_MISSING, /* a join that found none: the scheduler decides */
} token_source;

typedef struct plan {
    bool head, own_redis;
    const char *run_dir;
    char bin_dir[PATH_MAX];
    char lib_path[PATH_MAX + 8192];
    char bind[256];
    char dashboard_host[256];
    char adv_host[256];   /* the host others reach this machine's services at */
    char local_host[256]; /* the host this machine reaches them at */
    char scheduler[300], redis[300];
    uint16_t port, redis_port, dashboard_port;
    long workers, slots;
    const char *objstore_memory, *log_level;
    int64_t timeout_ms;
    char *token;            /* "": none */
    token_source token_from;
    lm_config cfg;          /* the environment's: Redis password, TLS */
    uint64_t started_ms; /* wall clock: registrations older than this are not ours */
    service svc[MAX_SERVICES];
    size_t n;
    cli_supervisor sv;          /* the parent of every process started here */
    char secrets[PATH_MAX];     /* <run_dir>/secrets-<pid>: what the services' command lines name */
    char token_file[PATH_MAX + 16], password_file[PATH_MAX + 24];
    uint16_t taken[MAX_SERVICES]; /* ports handed out, not yet bound by their owners */
    size_t ntaken;
} plan;

static struct {
    const char *head, *address, *port, *redis, *redis_port, *workers, *slots, *memory, *run_dir, *token,
        *library_path, *bind, *advertise, *dashboard_port, *dashboard_host, *timeout, *log_level;
} f;

static const cli_flag start_flags[] = {
    {"head", NULL, "start a new cluster: Redis, scheduler, object store, workers", &f.head},
    {"address", "HOST:PORT", "join the cluster whose scheduler is at HOST:PORT", &f.address},
    {"port", "PORT", "head: the scheduler's port (default 7400; object store and workers use the "
                     "next free ports); join: the first port to try (default 7401)", &f.port},
    {"redis", "HOST:PORT", "use this Redis (head: start none; join: default HOST:6379 of --address)",
     &f.redis},
    {"redis-port", "PORT", "head: port of the Redis started here (default 6379)", &f.redis_port},
    {"workers", "N", "workers to start on this machine (default 4)", &f.workers},
    {"slots", "N", "executor slots per worker (default: one per CPU)", &f.slots},
    {"objstore-memory", "SIZE", "object store memory before spilling to disk, e.g. 2GiB", &f.memory},
    {"run-dir", "DIR", "logs, pid files, scratch (default $LUMEN_RUN_DIR, else /tmp/lumen-<uid>)",
     &f.run_dir},
    {"token", "T", "the cluster's token: every call must carry it (default $LUMEN_TOKEN, else the run "
                   "dir's; a head without one makes one; \"\": none, the cluster is open)", &f.token},
    {"library-path", "DIRS", "more colon-separated directories of function libraries", &f.library_path},
    {"bind", "HOST", "address the services listen on (default 127.0.0.1; 0.0.0.0 for all)", &f.bind},
    {"advertise", "HOST", "host other machines reach this one at (default: --bind, or the IP of "
                          "the default route when binding all addresses)", &f.advertise},
    {"dashboard-port", "PORT", "head: the scheduler's HTTP dashboard port (default 8265; 0: off)",
     &f.dashboard_port},
    {"dashboard-host", "HOST", "head: address the dashboard listens on (default 127.0.0.1 whatever --bind "
                               "says: it is plain HTTP)", &f.dashboard_host},
    {"timeout", "SECONDS", "how long to wait for every service to answer (default 20)", &f.timeout},
    {"log-level", "LEVEL", "services' log level: debug, info, warn, error (default info)", &f.log_level},
    {NULL, NULL, NULL, NULL},
};

static const cli_command start_cmd = {
    "start",
    "(--head | --address HOST:PORT) [options]",
    "Starts this machine's part of a Lumen cluster as background processes.",
    "Logs go to <run-dir>/logs/<name>.log, pid files to <run-dir>/pids; `lumen stop` stops\n"
    "them all. A head makes a random token unless given one and keeps it in <run-dir>/token\n"
    "(mode 0600), where clients and `lumen` on this machine find it; other machines need it as\n"
    "LUMEN_TOKEN (or --token). A head that starts Redis gives it a random password, kept in\n"
    "<run-dir>/redis_password (mode 0600) and handed to the services; other machines need it as\n"
    "LUMEN_REDIS_PASSWORD. Services listen on 127.0.0.1 unless told --bind; the dashboard stays on\n"
    "127.0.0.1 unless told --dashboard-host. Examples:\n"
    "  lumen start --head --workers 4              a one-machine cluster\n"
    "  lumen start --head --bind 0.0.0.0           a head other machines can join\n"
    "  LUMEN_TOKEN=... lumen start --address 10.0.0.5:7400   join it from another machine\n",
    start_flags,
    0,
};

/* ---- setup ---- */

static bool is_wildcard(const char *host) {
    return host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
}

static bool is_loopback(const char *host) {
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 || strcmp(host, "localhost") == 0;
}

/* Formats host:port, bracketing IPv6 literals. */
static void join_addr(char *out, size_t cap, const char *host, unsigned port) {
    snprintf(out, cap, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}

/* The local IP of the route towards `toward` (no packet is sent): what a
 * service bound to every address should advertise. */
static void route_ip(const char *toward, char *out, size_t cap) {
    snprintf(out, cap, "127.0.0.1");
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM}, *ai = NULL;
    if (getaddrinfo(toward, "53", &hints, &ai) != 0) return;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        getsockname(fd, (struct sockaddr *)&me, &len) == 0)
        inet_ntop(AF_INET, &me.sin_addr, out, (socklen_t)cap);
    if (fd >= 0) close(fd);
    freeaddrinfo(ai);
}

/* Whether a listening socket could bind host:port right now, and if not,
 * why: ALREADY_EXISTS for a port in use, INVALID_ARGUMENT for a host that
 * does not resolve or is not an address of this machine. No SO_REUSEPORT
 * here: a second server must not silently share a port with the first. */
static lumen_status try_bind(const char *host, uint16_t port) {
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    int gai = getaddrinfo(is_wildcard(host) ? NULL : host, service, &hints, &ai);
    if (gai != 0)
        return lm_status(LUMEN_INVALID_ARGUMENT, "host \"%s\" does not resolve (%s)", host,
                         gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
              bind(fd, ai->ai_addr, ai->ai_addrlen) == 0;
    int err = errno;
    if (fd >= 0) close(fd);
    freeaddrinfo(ai);
    if (ok) return lm_ok();
    if (err == EADDRINUSE) return lm_status(LUMEN_ALREADY_EXISTS, "port %u on %s is in use", port, host);
    if (err == EADDRNOTAVAIL)
        return lm_status(LUMEN_INVALID_ARGUMENT, "%s is not an address of this machine (see `ip addr`)", host);
    return lm_status_errno(LUMEN_UNAVAILABLE, err, host);
}

static bool port_free(const char *host, uint16_t port) { return LM_IS_OK(try_bind(host, port)); }

/* --bind and --dashboard-host name addresses of this machine: said at once,
 * before anything starts, not later as a port in use. */
static lumen_status check_hosts(const plan *p) {
    lumen_status st = try_bind(p->bind, 0);
    if (!LM_IS_OK(st)) return lm_status_wrap(st, "--bind %s", p->bind);
    if (p->head && p->dashboard_port != 0 && !LM_IS_OK(st = try_bind(p->dashboard_host, 0)))
        return lm_status_wrap(st, "--dashboard-host %s", p->dashboard_host);
    return lm_ok();
}

static lumen_status take_port(plan *p, uint16_t from, uint16_t *out) {
    for (unsigned port = from; port <= 65535; port++) {
        bool taken = false;
        for (size_t i = 0; i < p->ntaken; i++) taken |= p->taken[i] == port;
        if (!taken && port_free(p->bind, (uint16_t)port)) {
            p->taken[p->ntaken++] = (uint16_t)port;
            *out = (uint16_t)port;
            return lm_ok();
        }
    }
    return lm_status(LUMEN_RESOURCE_EXHAUSTED, "no free port from %u up on %s", from, p->bind);
}

static lumen_status mkdir_p(const char *path, mode_t mode) {
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *s = buf + 1;; s++) {
        if (*s != '/' && *s != '\0') continue;
        char c = *s;
        *s = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST) return lm_status_errno(LUMEN_IO, errno, buf);
        *s = c;
        if (c == '\0') return lm_ok();
    }
}

/* The cluster's token: --token (an empty one: none), else $LUMEN_TOKEN,
 * else for a join the run dir's (the head runs here), else for a head a new
 * random one, so that a cluster is never open unless asked to be. */
static lumen_status start_token(plan *p) {
    const char *env = getenv("LUMEN_TOKEN");
    char saved[CLI_TOKEN_MAX + 56];
    const char *given = f.token != NULL ? f.token : env != NULL && env[0] != '\0' ? env : NULL;
    if (given != NULL) {
        if (!cli_token_valid(given)) /* --token was checked with the other flags */
            return lm_status(LUMEN_INVALID_ARGUMENT, "LUMEN_TOKEN must be printable ASCII without spaces, "
                             "at most %d characters", CLI_TOKEN_MAX);
        p->token_from = given[0] != '\0' ? TOKEN_GIVEN : TOKEN_NONE;
        p->token = strdup(given);
    } else if (!p->head && cli_read_file(p->run_dir, "token", saved, sizeof saved)) {
        p->token_from = TOKEN_RUN_DIR;
        p->token = strdup(saved);
    } else if (!p->head) {
        p->token_from = TOKEN_MISSING;
        p->token = strdup("");
    } else {
        p->token_from = TOKEN_NEW;
        return cli_token_new(&p->token);
    }
    return p->token != NULL ? lm_ok() : lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
}

/* The cluster's Redis password: the environment's (or lumen.cfg's), else
 * the one this machine's `lumen start` keeps for that Redis (a join on the
 * head's machine), else for a head that starts its Redis a new random one:
 * no Redis Lumen starts runs without a password. */
static lumen_status start_redis_password(plan *p) {
    char saved[CLI_TOKEN_MAX + 56];
    if (p->cfg.cluster.redis_password[0] != '\0') return lm_ok();
    if (!p->own_redis) {
        if (!cli_redis_password_of(p->run_dir, p->redis, saved, sizeof saved)) return lm_ok();
        return lm_config_set(&p->cfg, "cluster", "redis_password", saved);
    }
    char *made = NULL;
    lumen_status st = cli_token_new(&made);
    if (LM_IS_OK(st)) st = lm_config_set(&p->cfg, "cluster", "redis_password", made);
    free(made);
    return st;
}

static int parse_start(plan *p) {
    long v;
    p->head = f.head != NULL;
    if (p->head == (f.address != NULL)) return cli_bad_arg(&start_cmd, "give exactly one of --head and --address");
    if (p->head && f.redis != NULL && f.redis_port != NULL)
        return cli_bad_arg(&start_cmd, "--redis-port is for the Redis started here; with --redis none is started");
    if (!p->head && (f.redis_port != NULL || f.dashboard_port != NULL || f.dashboard_host != NULL))
        return cli_bad_arg(&start_cmd, "--redis-port, --dashboard-port and --dashboard-host are for --head");
    p->port = p->head ? 7400 : 7401;
    if (f.port != NULL && !cli_parse_port(f.port, &p->port))
        return cli_bad_arg(&start_cmd, "--port wants 1..65535, not \"%s\"", f.port);
    p->redis_port = 6379;
    if (f.redis_port != NULL && !cli_parse_port(f.redis_port, &p->redis_port))
        return cli_bad_arg(&start_cmd, "--redis-port wants 1..65535, not \"%s\"", f.redis_port);
    p->dashboard_port = 8265;
    if (f.dashboard_port != NULL) {
        if (!cli_parse_int(f.dashboard_port, 0, 65535, &v))
            return cli_bad_arg(&start_cmd, "--dashboard-port wants 0..65535, not \"%s\"", f.dashboard_port);
        p->dashboard_port = (uint16_t)v;
    }
    p->workers = 4;
    if (f.workers != NULL && !cli_parse_int(f.workers, 0, MAX_WORKERS, &p->workers))
        return cli_bad_arg(&start_cmd, "--workers wants 0..%d, not \"%s\"", MAX_WORKERS, f.workers);
    if (f.slots != NULL && !cli_parse_int(f.slots, 1, 4096, &p->slots))
        return cli_bad_arg(&start_cmd, "--slots wants 1..4096, not \"%s\"", f.slots);
    uint64_t size;
    if (f.memory != NULL && !LM_IS_OK(lm_parse_size(f.memory, &size)))
        return cli_bad_arg(&start_cmd, "--objstore-memory wants a size like 512MiB, not \"%s\"", f.memory);
    p->objstore_memory = f.memory;
    if (f.log_level != NULL && lm_log_level_parse(f.log_level) < 0)
        return cli_bad_arg(&start_cmd, "--log-level wants debug, info, warn, error or off, not \"%s\"", f.log_level);
    p->log_level = f.log_level;
    p->timeout_ms = 20000;
    if (f.timeout != NULL) {
        if (!cli_parse_int(f.timeout, 1, 3600, &v))
            return cli_bad_arg(&start_cmd, "--timeout wants seconds (1..3600), not \"%s\"", f.timeout);
        p->timeout_ms = v * 1000;
    }
    if (f.token != NULL && !cli_token_valid(f.token))
        return cli_bad_arg(&start_cmd, "--token wants printable ASCII without spaces, at most %d characters",
                           CLI_TOKEN_MAX);
    if (f.address != NULL && !LM_IS_OK(lm_parse_addr(f.address, 0, NULL, 0, NULL)))
        return cli_bad_arg(&start_cmd, "--address wants HOST:PORT, not \"%s\"", f.address);
    if (f.redis != NULL && !LM_IS_OK(lm_parse_addr(f.redis, 0, NULL, 0, NULL)))
        return cli_bad_arg(&start_cmd, "--redis wants HOST:PORT, not \"%s\"", f.redis);
    snprintf(p->bind, sizeof p->bind, "%s", f.bind != NULL ? f.bind : "127.0.0.1");
    if (p->bind[0] == '\0' || strchr(p->bind, ' ') != NULL)
        return cli_bad_arg(&start_cmd, "--bind wants a host, not \"%s\"", p->bind);
    snprintf(p->local_host, sizeof p->local_host, "%s", is_wildcard(p->bind) ? "127.0.0.1" : p->bind);
    snprintf(p->dashboard_host, sizeof p->dashboard_host, "%s", f.dashboard_host != NULL ? f.dashboard_host : "127.0.0.1");
    if (p->dashboard_host[0] == '\0' || strchr(p->dashboard_host, ' ') != NULL)
        return cli_bad_arg(&start_cmd, "--dashboard-host wants a host, not \"%s\"", p->dashboard_host);

    char sched_host[256] = "";
    if (!p->head) lm_parse_addr(f.address, 0, sched_host, sizeof sched_host, NULL);
    if (f.advertise != NULL) snprintf(p->adv_host, sizeof p->adv_host, "%s", f.advertise);
    else if (!is_wildcard(p->bind)) snprintf(p->adv_host, sizeof p->adv_host, "%s", p->bind);
    else route_ip(p->head ? "8.8.8.8" : sched_host, p->adv_host, sizeof p->adv_host);

    if (p->head) join_addr(p->scheduler, sizeof p->scheduler, p->adv_host, p->port);
    else snprintf(p->scheduler, sizeof p->scheduler, "%s", f.address);
    p->own_redis = p->head && f.redis == NULL;
    if (f.redis != NULL) snprintf(p->redis, sizeof p->redis, "%s", f.redis);
    else if (p->head) join_addr(p->redis, sizeof p->redis, p->adv_host, p->redis_port);
    else join_addr(p->redis, sizeof p->redis, sched_host, 6379);
    p->run_dir = cli_run_dir(f.run_dir);
    return -1;
}

/* The function libraries next to the binaries (<prefix>/lib/lumen, both
 * installed and in a build tree), then --library-path. */
static void library_path(plan *p) {
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/../lib/lumen", p->bin_dir);
    char *real = realpath(dir, NULL);
    snprintf(p->lib_path, sizeof p->lib_path, "%.*s%s%.8000s", PATH_MAX, real ? real : dir,
             f.library_path && f.library_path[0] ? ":" : "", f.library_path ? f.library_path : "");
    free(real);
}

static lumen_status find_binaries(plan *p) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return lm_status_errno(LUMEN_IO, errno, "/proc/self/exe");
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(p->bin_dir, sizeof p->bin_dir, "%s", exe);
    const char *need[] = {p->head ? "lumen-scheduler" : NULL, "lumen-objstore", p->workers ? "lumen-worker" : NULL};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        char path[PATH_MAX + 32];
        if (need[i] == NULL) continue;
        snprintf(path, sizeof path, "%s/%s", p->bin_dir, need[i]);
        if (access(path, X_OK) != 0)
            return lm_status(LUMEN_NOT_FOUND, "%s not found next to lumen (in %s): build or install it",
                             need[i], p->bin_dir);
    }
    return lm_ok();
}

/* ---- running processes ---- */

/* Has the supervisor start argv (in a session of its own, output to the
 * log) and records it. */
static lumen_status spawn(plan *p, service *s, char *const argv[]) {
    pid_t pid = 0;
    lumen_status st = cli_supervisor_spawn(&p->sv, s->proc.name, s->log, argv, &pid);
    if (!LM_IS_OK(st)) return st;
    s->proc.pid = pid;
    /* The start time names this very process: a later `lumen stop` never
     * signals a stranger that reused the pid. */
    s->proc.start_ticks = cli_proc_start_ticks(pid);
    p->n++;
    return cli_pidfile_write(p->run_dir, &s->proc);
}

static service *new_service(plan *p, const char *role, const char *host, uint16_t port) {
    service *s = &p->svc[p->n];
    memset(s, 0, sizeof *s);
    s->role = role;
    char name[sizeof s->proc.name];
    snprintf(name, sizeof name, "%s-%u", role, port);
    memcpy(s->proc.name, name, sizeof name);
    join_addr(s->addr, sizeof s->addr, host, port);
    join_addr(s->local, sizeof s->local, p->local_host, port);
    snprintf(s->log, sizeof s->log, "%s/logs/%s.log", p->run_dir, name);
    return s;
}

/* Has the process exited? (The supervisor reaps it, and does not start it
 * again until start is done.) */
static bool exited(const service *s) { return !cli_proc_alive(&s->proc); }

static lumen_status failed(service *s, lumen_status st) {
    fprintf(stderr, "lumen start: %s (%s) %s: %s\n", s->proc.name, s->addr,
            exited(s) ? "exited" : "did not answer", st.msg);
    cli_print_log_tail(s->log, 15);
    return lm_status(LUMEN_UNAVAILABLE, "%s did not start", s->proc.name);
}

/* Stops, in reverse order, everything this start began (the supervisor
 * first, so that nothing is started again). */
static void undo(plan *p) {
    if (p->sv.proc.pid > 0) {
        cli_supervisor_release(&p->sv, false);
        waitpid(p->sv.proc.pid, NULL, 0);
        cli_pidfile_remove(p->run_dir, p->sv.proc.name);
    }
    for (size_t i = p->n; i-- > 0;) {
        service *s = &p->svc[i];
        if (!exited(s)) cli_proc_stop(&s->proc, 3000);
        cli_pidfile_remove(p->run_dir, s->proc.name);
    }
    if (p->secrets[0] != '\0') { /* this start's: the running cluster's are elsewhere */
        unlink(p->token_file);
        unlink(p->password_file);
        rmdir(p->secrets);
    }
    if (p->n > 0) fprintf(stderr, "lumen start: stopped the %zu process(es) it had started\n", p->n);
}

/* Appends "--name value" pairs to a NULL-terminated argv. */
typedef struct args {
    char *v[48];
    int n;
} args;

static void add(args *a, const char *name, const char *value) {
    if (a->n + 3 > (int)(sizeof a->v / sizeof a->v[0])) return;
    a->v[a->n++] = (char *)name;
    if (value != NULL) a->v[a->n++] = (char *)value;
    a->v[a->n] = NULL;
}

/* s as a double-quoted string of redis.conf. */
static void redis_quote(const char *s, char *out, size_t cap) {
    size_t n = 0;
    out[n++] = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c != '\0' && n + 6 < cap; c++) {
        if (*c < ' ' || *c > '~') {
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", *c);
            continue;
        }
        if (*c == '"' || *c == '\\') out[n++] = '\\';
        out[n++] = (char)*c;
    }
    out[n++] = '"';
    out[n] = '\0';
}

/* The Redis password goes to a file only we can read, not into argv: a
 * command line is visible to every user of the machine. */
static lumen_status redis_conf(const plan *p, const char *rel, char *path, size_t cap) {
    char quoted[1024], text[1100];
    redis_quote(p->cfg.cluster.redis_password, quoted, sizeof quoted);
    snprintf(text, sizeof text, "requirepass %s", quoted);
    snprintf(path, cap, "%s/%s", p->run_dir, rel);
    return cli_write_file(p->run_dir, rel, text, 0600);
}

static lumen_status start_redis(plan *p) {
    service *s = new_service(p, "redis", p->adv_host, p->redis_port);
    lumen_status st = try_bind(p->bind, p->redis_port);
    if (st.code == LUMEN_ALREADY_EXISTS)
        return lm_status(LUMEN_ALREADY_EXISTS,
                         "port %u on %s is in use: a Redis already runs there? Use it with --redis %s, "
                         "or pick another --redis-port", p->redis_port, p->bind, s->addr);
    if (!LM_IS_OK(st)) return st;
    char dir[600], port[8], rel[64], conf[700];
    snprintf(dir, sizeof dir, "%s/redis-%u", p->run_dir, p->redis_port);
    snprintf(port, sizeof port, "%u", p->redis_port);
    snprintf(rel, sizeof rel, "redis-%u/redis.conf", p->redis_port);
    st = mkdir_p(dir, 0700);
    if (LM_IS_OK(st)) st = redis_conf(p, rel, conf, sizeof conf); /* start_redis_password made one */
    /* AOF on: the cluster's state survives a Redis restart. It listens only
     * where it is reached: this machine's loopback and, for --bind beyond
     * it, the address other machines use; always with its password and in
     * protected mode. */
    args a = {.n = 0};
    add(&a, "redis-server", NULL);
    add(&a, conf, NULL); /* a config file comes first */
    add(&a, "--port", port);
    if (!is_wildcard(p->bind)) {
        add(&a, "--bind", p->bind);
    } else {
        add(&a, "--bind", "127.0.0.1");
        if (!is_loopback(p->adv_host)) add(&a, p->adv_host, NULL);
    }
    add(&a, "--dir", dir);
    add(&a, "--appendonly", "yes");
    add(&a, "--daemonize", "no");
    add(&a, "--logfile", "");
    add(&a, "--protected-mode", "yes");
    if (LM_IS_OK(st)) st = spawn(p, s, a.v);
    if (!LM_IS_OK(st)) return st;

    lm_redis_opts ropts = {.addr = s->local, .password = p->cfg.cluster.redis_password, .timeout_ms = 500};
    for (int64_t until = (int64_t)lm_mono_ms() + p->timeout_ms;;) {
        lm_redis *r = NULL;
        st = lm_redis_connect(&ropts, &r);
        lm_redis_free(r);
        if (LM_IS_OK(st)) return st;
        if (exited(s) || (int64_t)lm_mono_ms() > until) return failed(s, st);
        lm_sleep_ms(50);
    }
}

static lumen_status check_redis(const plan *p) {
    lm_redis_opts ropts = {.addr = p->redis, .password = p->cfg.cluster.redis_password, .timeout_ms = 2000};
    lm_redis *r = NULL;
    lumen_status st = lm_redis_connect(&ropts, &r);
    lm_redis_free(r);
    return LM_IS_OK(st) ? st : lm_status_wrap(st, "the cluster's Redis (give it with --redis)");
}

/* The flags every service takes: where it listens, Redis, log level. */
static void service_args(const plan *p, args *a, const char *binary, char *path, size_t cap, char *listen,
                         size_t listen_cap, uint16_t port) {
    snprintf(path, cap, "%s/%s", p->bin_dir, binary);
    a->n = 0;
    add(a, path, NULL);
    join_addr(listen, listen_cap, p->bind, port);
    add(a, "--listen", listen);
    add(a, "--redis-addr", p->redis);
    /* Secrets by file: a command line is visible to every user of the
     * machine, and with the files it is all a restart needs. */
    if (p->token[0] != '\0') add(a, "--token-file", p->token_file);
    if (p->cfg.cluster.redis_password[0] != '\0') add(a, "--redis-password-file", p->password_file);
    if (p->log_level != NULL) add(a, "--log-level", p->log_level);
}

static lumen_status start_scheduler(plan *p) {
    lumen_status st = try_bind(p->bind, p->port);
    if (st.code == LUMEN_ALREADY_EXISTS)
        return lm_status(LUMEN_ALREADY_EXISTS,
                         "port %u on %s is in use: is a cluster already running (lumen status, lumen stop)? "
                         "Else pick another --port", p->port, p->bind);
    if (!LM_IS_OK(st)) return st;
    p->taken[p->ntaken++] = p->port;
    service *s = new_service(p, "scheduler", p->adv_host, p->port);
    args a;
    char path[PATH_MAX + 32], listen[300], dport[8];
    service_args(p, &a, "lumen-scheduler", path, sizeof path, listen, sizeof listen, p->port);
    if (p->dashboard_port == 0) {
        add(&a, "--dashboard", "false");
    } else {
        snprintf(dport, sizeof dport, "%u", p->dashboard_port);
        add(&a, "--dashboard-port", dport);
        add(&a, "--dashboard-host", p->dashboard_host);
    }
    return spawn(p, s, a.v);
}

static lumen_status start_objstore(plan *p, char *objstore_addr, size_t cap) {
    uint16_t port = 0;
    lumen_status st = take_port(p, p->head ? (uint16_t)(p->port + 1) : p->port, &port);
    if (!LM_IS_OK(st)) return st;
    service *s = new_service(p, "objstore", p->adv_host, port);
    args a;
    char path[PATH_MAX + 32], listen[300], spill[600];
    service_args(p, &a, "lumen-objstore", path, sizeof path, listen, sizeof listen, port);
    snprintf(spill, sizeof spill, "%s/spill-%u", p->run_dir, port);
    add(&a, "--advertise", s->addr);
    add(&a, "--scheduler-addr", p->scheduler);
    add(&a, "--spill-dir", spill);
    if (p->objstore_memory != NULL) add(&a, "--memory-limit", p->objstore_memory);
    snprintf(objstore_addr, cap, "%s", s->addr);
    return spawn(p, s, a.v);
}

static lumen_status start_worker(plan *p, const char *objstore_addr, uint16_t from) {
    uint16_t port = 0;
    lumen_status st = take_port(p, from, &port);
    if (!LM_IS_OK(st)) return st;
    service *s = new_service(p, "worker", p->adv_host, port);
    args a;
    char path[PATH_MAX + 32], listen[300], run[600], slots[24];
    service_args(p, &a, "lumen-worker", path, sizeof path, listen, sizeof listen, port);
    snprintf(run, sizeof run, "%s/worker-%u", p->run_dir, port);
    st = mkdir_p(run, 0700);
    if (!LM_IS_OK(st)) return st;
    add(&a, "--advertise", s->addr);
    add(&a, "--scheduler-addr", p->scheduler);
    add(&a, "--objstore-addr", objstore_addr);
    add(&a, "--library-path", p->lib_path);
    add(&a, "--run-dir", run);
    if (p->slots > 0) {
        snprintf(slots, sizeof slots, "%ld", p->slots);
        add(&a, "--slots", slots);
    }
    return spawn(p, s, a.v);
}

/* What a join sent the scheduler, for the message when it is refused. */
static const char *token_sent(const plan *p) {
    switch (p->token_from) {
    case TOKEN_GIVEN: return "the token given (--token or LUMEN_TOKEN)";
    case TOKEN_RUN_DIR: return "the token of the run dir (a previous cluster's?)";
    case TOKEN_MISSING: return "a call without a token (none given, none in the run dir)";
    default: return "a call without a token (--token \"\")";
    }
}

/* A join asks the scheduler first, so that a missing or wrong token fails
 * at once and says what to do, not after the timeout as unregistered nodes. */
static lumen_status check_scheduler(const plan *p, lm_rpc_client *cli) {
    lumen_status st;
    for (int64_t until = (int64_t)lm_mono_ms() + p->timeout_ms;; lm_sleep_ms(200)) {
        st = lm_health_check(cli, p->scheduler, 2000, NULL, NULL);
        if (LM_IS_OK(st) || st.code == LUMEN_UNAUTHENTICATED || (int64_t)lm_mono_ms() > until) break;
    }
    if (st.code == LUMEN_UNAUTHENTICATED)
        return lm_status(st.code, "the scheduler at %s refused %s: set LUMEN_TOKEN (or --token) to the cluster's "
                         "token, which the head keeps in its run dir's token file", p->scheduler, token_sent(p));
    return LM_IS_OK(st) ? st : lm_status_wrap(st, "cannot reach the scheduler at %s", p->scheduler);
}

/* After the last fork: every gRPC service answers Health SERVING. */
static lumen_status wait_healthy(plan *p, lm_rpc_client *cli) {
    lumen_status st = lm_ok();
    int64_t until = (int64_t)lm_mono_ms() + p->timeout_ms;
    for (size_t i = 0; LM_IS_OK(st) && i < p->n; i++) {
        service *s = &p->svc[i];
        if (strcmp(s->role, "redis") == 0) continue;
        for (;;) {
            st = lm_health_check(cli, s->local, 1000, NULL, NULL);
            if (LM_IS_OK(st)) break;
            if (exited(s) || (int64_t)lm_mono_ms() > until) {
                st = failed(s, st);
                break;
            }
            lm_sleep_ms(50);
        }
    }
    return st;
}

/* Every object store and worker started here is ALIVE in Redis, so a
 * `lumen status` right after start shows them. */
static lumen_status wait_registered(plan *p) {
    lm_redis_opts ropts = {.addr = p->redis, .password = p->cfg.cluster.redis_password,
                           .prefix = p->cfg.cluster.key_prefix, .timeout_ms = 2000};
    lm_redis *r = NULL;
    lumen_status st = lm_redis_connect(&ropts, &r);
    int64_t until = (int64_t)lm_mono_ms() + p->timeout_ms;
    while (LM_IS_OK(st)) {
        lm_node_list *list = NULL;
        st = lm_redis_nodes_list(r, &list);
        if (!LM_IS_OK(st)) break;
        service *missing = NULL;
        for (size_t i = 0; i < p->n && missing == NULL; i++) {
            service *s = &p->svc[i];
            if (strcmp(s->role, "objstore") != 0 && strcmp(s->role, "worker") != 0) continue;
            bool found = false;
            for (size_t k = 0; k < list->count && !found; k++) {
                const lm_node_record *rec = &list->nodes[k];
                found = rec->state == LM_NODE_ALIVE && strcmp(rec->addr, s->addr) == 0 &&
                        rec->started_ms + 1000 >= p->started_ms;
            }
            if (!found) missing = s;
        }
        lm_node_list_free(list);
        if (missing == NULL) break;
        if ((int64_t)lm_mono_ms() > until) {
            st = failed(missing, lm_status(LUMEN_DEADLINE_EXCEEDED, "not registered in Redis %s", p->redis));
            break;
        }
        lm_sleep_ms(50);
    }
    lm_redis_free(r);
    return st;
}

/* Health checks and the join's check, after the last fork. */
static lumen_status wait_ready(plan *p) {
    lm_rpc_init();
    lm_rpc_client *cli = NULL;
    lumen_status st = cli_rpc_client_new(p->token, &cli);
    if (LM_IS_OK(st) && !p->head) st = check_scheduler(p, cli);
    if (LM_IS_OK(st)) st = wait_healthy(p, cli);
    if (LM_IS_OK(st)) st = wait_registered(p);
    lm_rpc_client_free(cli);
    lm_rpc_shutdown();
    return st;
}

/* Warnings about what the chosen settings leave open, before anything runs. */
static void warn_open(const plan *p) {
    if (p->head && p->token_from == TOKEN_NONE)
        fprintf(stderr, "lumen start: warning: --token \"\": the cluster has no token, so any process that "
                        "reaches its ports can run code as you\n");
    if (!is_loopback(p->bind) && p->cfg.cluster.tls_cert[0] == '\0')
        fprintf(stderr, "lumen start: warning: services listen on %s without TLS: calls and the token cross the "
                        "network in plaintext (LUMEN_TLS_CERT, see docs/security.md)\n", p->bind);
    if (p->own_redis && !is_loopback(p->bind))
        fprintf(stderr, "lumen start: warning: Redis listens beyond loopback (for the other machines' services): "
                        "its password and data cross the network in plaintext (see docs/security.md)\n");
    if (p->head && p->dashboard_port != 0 && !is_loopback(p->dashboard_host))
        fprintf(stderr, "lumen start: warning: the dashboard listens on %s over plain HTTP: the token crosses "
                        "the network in the clear\n", p->dashboard_host);
}

/* How others join and connect. The token itself is never printed (output
 * ends up in logs): only where it is kept. */
static void print_started(const plan *p) {
    printf("%s (run dir %s):\n", p->head ? "Started a Lumen cluster" : "Joined the Lumen cluster", p->run_dir);
    if (!p->own_redis) printf("  %-16s %-22s (not started here)\n", "redis", p->redis);
    for (size_t i = 0; i < p->n; i++)
        printf("  %-16s %-22s pid %-7d log %s\n", p->svc[i].proc.name, p->svc[i].addr, (int)p->svc[i].proc.pid,
               p->svc[i].log);
    bool token = p->token[0] != '\0';
    char usual[512];
    lm_run_dir(NULL, usual, sizeof usual); /* where clients look by themselves */
    bool own_dir = strcmp(usual, p->run_dir) != 0;
    if (token) printf("\nEvery call must carry the cluster's token, kept in %s/token (mode 0600).\n", p->run_dir);
    else printf("\nThe cluster has no token: anything that reaches its ports can use it.\n");
    if (p->own_redis)
        printf("Redis wants its password, kept in %s/redis_password (mode 0600).\n", p->run_dir);
    printf("To add workers (on another machine%s%s):\n  lumen start --address %s --redis %s\n",
           token ? ", with LUMEN_TOKEN set to the token" : "",
           p->cfg.cluster.redis_password[0] ? " and LUMEN_REDIS_PASSWORD to the Redis password" : "", p->scheduler,
           p->redis);
    if (is_loopback(p->bind))
        printf("  (services listen on %s only: other machines need a head started with --bind)\n", p->bind);
    printf("To connect a client: lumen_connect(\"%s\", ...), or set LUMEN_ADDRESS=%s\n", p->scheduler,
           p->scheduler);
    if (token)
        printf("  on this machine it finds the token by itself%s%s; elsewhere set LUMEN_TOKEN\n",
               own_dir ? " with LUMEN_RUN_DIR=" : "", own_dir ? p->run_dir : "");
    printf("  e.g. most_frequent_word --address %s --input FILE\n", p->scheduler);
    if (p->head && p->dashboard_port != 0) /* the token goes in the URL once; it is not printed */
        printf("The dashboard: http://%s:%u/%s\n", is_wildcard(p->dashboard_host) ? p->local_host : p->dashboard_host,
               p->dashboard_port,
               token ? "?token=<the token>  (or sign in there with it)" : "");
    printf("To see the cluster: lumen status%s%s\nTo stop what runs here: lumen stop%s%s\n",
           f.run_dir ? " --run-dir " : "", f.run_dir ? p->run_dir : "", f.run_dir ? " --run-dir " : "",
           f.run_dir ? p->run_dir : "");
}

/* <run_dir>/secrets-<pid>/token and redis_password (0600 in a 0700 dir). */
static lumen_status write_secrets(plan *p) {
    char rel[64]; /* named by this process: unique among the starts sharing a run dir */
    snprintf(rel, sizeof rel, "secrets-%d", (int)getpid());
    snprintf(p->secrets, sizeof p->secrets, "%s/%s", p->run_dir, rel);
    snprintf(p->token_file, sizeof p->token_file, "%s/token", p->secrets);
    snprintf(p->password_file, sizeof p->password_file, "%s/redis_password", p->secrets);
    lumen_status st = mkdir_p(p->secrets, 0700);
    char file[96];
    snprintf(file, sizeof file, "%s/token", rel);
    if (LM_IS_OK(st) && p->token[0] != '\0') st = cli_write_file(p->run_dir, file, p->token, 0600);
    snprintf(file, sizeof file, "%s/redis_password", rel);
    if (LM_IS_OK(st) && p->cfg.cluster.redis_password[0] != '\0')
        st = cli_write_file(p->run_dir, file, p->cfg.cluster.redis_password, 0600);
    return st;
}

static lumen_status start(plan *p) {
    lumen_status st = find_binaries(p);
    char sub[PATH_MAX];
    if (LM_IS_OK(st)) st = lm_config_load(NULL, &p->cfg);
    if (LM_IS_OK(st)) st = mkdir_p(p->run_dir, 0700);
    if (LM_IS_OK(st)) st = cli_run_dir_check(p->run_dir);
    snprintf(sub, sizeof sub, "%s/logs", p->run_dir);
    if (LM_IS_OK(st)) st = mkdir_p(sub, 0755);
    snprintf(sub, sizeof sub, "%s/pids", p->run_dir);
    if (LM_IS_OK(st)) st = mkdir_p(sub, 0755);
    if (!LM_IS_OK(st)) return st;
    library_path(p);
    st = check_hosts(p);
    if (!LM_IS_OK(st)) return st;
    st = start_token(p);
    if (!LM_IS_OK(st)) return st;
    warn_open(p);
    st = start_redis_password(p);
    if (!LM_IS_OK(st)) return st;
    /* Services read the token and the Redis password from files of this
     * start's (named on their command lines), not from the environment: the
     * supervisor can start them again from their command lines alone. */
    unsetenv("LUMEN_TOKEN");
    unsetenv("LUMEN_REDIS_PASSWORD");
    st = write_secrets(p);
    if (LM_IS_OK(st)) {
        char id[16];
        snprintf(id, sizeof id, "%d", (int)getpid());
        st = cli_supervisor_fork(p->run_dir, id, &p->sv);
    }
    if (!LM_IS_OK(st)) return st;
    p->started_ms = lm_wall_ms();

    if (p->own_redis) st = start_redis(p);
    else st = check_redis(p);
    if (LM_IS_OK(st) && p->head) st = start_scheduler(p);
    char objstore_addr[300] = "";
    if (LM_IS_OK(st)) st = start_objstore(p, objstore_addr, sizeof objstore_addr);
    for (long i = 0; LM_IS_OK(st) && i < p->workers; i++)
        st = start_worker(p, objstore_addr, (uint16_t)(p->taken[p->ntaken - 1] + 1));
    /* The last fork is behind us: gRPC may start now. */
    if (LM_IS_OK(st)) st = wait_ready(p);
    if (LM_IS_OK(st)) st = cli_write_file(p->run_dir, "address", p->scheduler, 0644);
    if (LM_IS_OK(st)) st = cli_write_file(p->run_dir, "redis", p->redis, 0644);
    if (LM_IS_OK(st) && p->token[0] != '\0') st = cli_write_file(p->run_dir, "token", p->token, 0600);
    if (LM_IS_OK(st) && p->token[0] == '\0') cli_remove_file(p->run_dir, "token"); /* a previous cluster's */
    if (LM_IS_OK(st) && p->own_redis)
        st = cli_write_file(p->run_dir, "redis_password", p->cfg.cluster.redis_password, 0600);
    if (LM_IS_OK(st)) cli_supervisor_release(&p->sv, true); /* from now on it heals the cluster */
    return st;
}

int cli_cmd_start(int argc, char **argv) {
    size_t nargs;
    int rc = cli_parse(&start_cmd, argc, argv, NULL, &nargs);
    if (rc >= 0) return rc;
    static plan p;
    memset(&p, 0, sizeof p);
    rc = parse_start(&p);
    if (rc >= 0) return rc;
    lumen_status st = start(&p);
    if (!LM_IS_OK(st)) {
        fprintf(stderr, "lumen start: %s\n", st.msg);
        undo(&p);
        free(p.token);
        lm_config_free(&p.cfg);
        return 1;
    }
    print_started(&p);
    free(p.token);
    lm_config_free(&p.cfg);
    return 0;
}

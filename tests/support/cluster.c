/* cluster.c - see cluster.h. */
#include "cluster.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "health.h"
#include "redis_server.h"
#include "redis_state.h"
#include "rpc.h"
#include "scheduler.pb-c.h"
#include "test_util.h"

/* Room for the replacements a chaos test starts after its kills. */
#define MAX_WORKERS 1024
#define MAX_STORES 256
#define MAX_FLAGS 48

struct lm_test_cluster {
    lm_test_cluster_opts opts;
    char *dir;
    lm_test_redis *redis;
    pid_t scheduler_pid;
    pid_t objstore_pids[MAX_STORES];
    char objstore_addrs[MAX_STORES][32];
    int nstores;
    pid_t worker_pids[MAX_WORKERS];
    char worker_addrs[MAX_WORKERS][32];
    int worker_stores[MAX_WORKERS]; /* the object store each worker uses */
    int nworkers;
    char scheduler_addr[32];
    char slots[16];
    char dashboard_port[8]; /* "" without one */
};

const char *lm_test_bin(const char *name) {
    static __thread char path[512];
    snprintf(path, sizeof path, "%s/%s", LUMEN_TEST_BIN_DIR, name);
    return path;
}

int lm_test_lumen(const char *out_path, char *output, size_t cap, const char *first, ...) {
    char *argv[40];
    int n = 0;
    argv[n++] = (char *)lm_test_bin("lumen");
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a != NULL && n < 39; a = va_arg(ap, const char *)) argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    int code = lm_test_run(argv, out_path, true, output, cap);
    fprintf(stderr, "\n$ lumen %s ... -> %d\n%s", first ? first : "", code, output);
    return code;
}

/* The last lines of a log, for error messages. */
static void log_tail(const char *path, char *out, size_t cap) {
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL) return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)cap - 1 ? size - (long)cap + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    fclose(f);
    for (char *p = out; *p; p++)
        if (*p == '\n') *p = '|';
}

/* What a process that did not come up is doing, for the report: its state
 * and kernel wait channel (a process that prints nothing for seconds is
 * stopped, in the kernel, or spinning; each says something else). */
static void proc_describe(pid_t pid, char *out, size_t cap) {
    char path[64], state[64] = "?", wchan[64] = "?";
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        char line[512];
        char *close_paren = fgets(line, sizeof line, f) ? strrchr(line, ')') : NULL;
        if (close_paren != NULL && close_paren[1] == ' ') snprintf(state, sizeof state, "%c", close_paren[2]);
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%d/wchan", (int)pid);
    if ((f = fopen(path, "r")) != NULL) {
        size_t n = fread(wchan, 1, sizeof wchan - 1, f);
        wchan[n] = '\0';
        fclose(f);
    }
    snprintf(out, cap, "state %s, wchan %s", state, wchan[0] ? wchan : "-");
}

/* lm_test_service_start, with a descriptor limit (0: inherited). */
static lumen_status service_start(const char *role, const char *const flags[], const char *log_path, const char *addr,
                                  const lm_rpc_client_opts *client, int64_t timeout_ms, int max_fds, pid_t *pid) {
    char *argv[MAX_FLAGS + 2];
    char bin[64];
    snprintf(bin, sizeof bin, "lumen-%s", role);
    argv[0] = (char *)lm_test_bin(bin);
    int n = 1;
    for (int i = 0; flags != NULL && flags[i] != NULL && n < MAX_FLAGS; i++) argv[n++] = (char *)flags[i];
    argv[n] = NULL;
    *pid = lm_test_spawn_limited(argv, log_path, max_fds);
    if (*pid < 0) return lm_status(LUMEN_INTERNAL, "cannot start %s", argv[0]);

    lm_rpc_client *cli = NULL;
    lumen_status st = lm_rpc_client_new(client, &cli);
    uint64_t until = lm_test_now_us() + (uint64_t)timeout_ms * 1000;
    while (cli != NULL) {
        st = lm_health_check(cli, addr, 1000, NULL, NULL);
        if (LM_IS_OK(st)) break;
        int status;
        if (waitpid(*pid, &status, WNOHANG) == *pid) {
            *pid = -1;
            st = lm_status(LUMEN_UNAVAILABLE, "%s exited", bin);
            break;
        }
        if (lm_test_now_us() > until) break;
        lm_test_sleep_ms(20);
    }
    lm_rpc_client_free(cli);
    if (!LM_IS_OK(st) && *pid > 0) {
        char what[160];
        proc_describe(*pid, what, sizeof what);
        fprintf(stderr, "%s (pid %d) on %s did not come up in %lld ms: %s\n", bin, (int)*pid, addr,
                (long long)timeout_ms, what);
    }
    if (!LM_IS_OK(st)) {
        if (*pid > 0) lm_test_stop(*pid, SIGKILL, 1000);
        *pid = -1;
        char tail[150]; /* its end, where the reason is: a status message holds 251 bytes */
        log_tail(log_path, tail, sizeof tail);
        return lm_status(st.code, "%s on %s did not come up (%s); log: %s", bin, addr, st.msg, tail);
    }
    return lm_ok();
}

lumen_status lm_test_service_start(const char *role, const char *const flags[], const char *log_path,
                                   const char *addr, const lm_rpc_client_opts *client, int64_t timeout_ms,
                                   pid_t *pid) {
    return service_start(role, flags, log_path, addr, client, timeout_ms, 0, pid);
}

static void free_addr(char *out, size_t cap) {
    snprintf(out, cap, "127.0.0.1:%u", lm_test_free_port());
}

/* Appends the flags every service takes (token, Redis password, TLS) and
 * the terminating NULL; returns the new count. */
static int common_flags(const lm_test_cluster *c, const char **flags, int n) {
    const lm_test_cluster_opts *o = &c->opts;
    const char *pairs[][2] = {{"--token", o->token}, {"--redis-password", o->redis_password},
                              {"--tls-cert", o->tls_cert}, {"--tls-key", o->tls_key}, {"--tls-ca", o->tls_ca}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0] && n < MAX_FLAGS - 2; i++)
        if (pairs[i][1] != NULL) flags[n++] = pairs[i][0], flags[n++] = pairs[i][1];
    flags[n] = NULL;
    return n;
}

/* How the launcher reaches the services: their token and TLS. */
static lm_rpc_client_opts client_opts(const lm_test_cluster *c) {
    return (lm_rpc_client_opts){.token = c->opts.token,
                                .tls = {c->opts.tls_cert, c->opts.tls_key, c->opts.tls_ca}};
}

/* Worker i, using object store `store`. */
static lumen_status start_worker(lm_test_cluster *c, int i, int store) {
    char *addr = c->worker_addrs[i], log[600], run_dir[600];
    c->worker_stores[i] = store;
    free_addr(addr, sizeof c->worker_addrs[i]);
    snprintf(log, sizeof log, "%s/worker-%d.log", c->dir, i);
    snprintf(run_dir, sizeof run_dir, "%s/worker-%d", c->dir, i);
    const char *flags[MAX_FLAGS] = {
        "--listen", addr,
        "--scheduler-addr", c->scheduler_addr,
        "--redis-addr", lm_test_redis_addr(c->redis),
        "--objstore-addr", c->objstore_addrs[store],
        "--slots", c->slots,
        "--library-path", LUMEN_TEST_LIB_DIR,
        "--run-dir", run_dir,
    };
    int n = common_flags(c, flags, 14);
    for (int k = 0; c->opts.worker_flags && c->opts.worker_flags[k] && n < MAX_FLAGS - 1; k++)
        flags[n++] = c->opts.worker_flags[k];
    flags[n] = NULL;
    lm_rpc_client_opts copts = client_opts(c);
    return service_start("worker", flags, log, addr, &copts, 20000, c->opts.max_fds, &c->worker_pids[i]);
}

/* The scheduler on c->scheduler_addr (its log appended to across restarts). */
static lumen_status start_scheduler(lm_test_cluster *c) {
    char log[600];
    snprintf(log, sizeof log, "%s/scheduler.log", c->dir);
    bool dash = c->dashboard_port[0] != '\0';
    const char *flags[MAX_FLAGS] = {"--listen", c->scheduler_addr, "--redis-addr", lm_test_redis_addr(c->redis),
                                    "--dashboard", dash ? "true" : "false", "--dashboard-port",
                                    dash ? c->dashboard_port : "0"};
    int n = common_flags(c, flags, 8);
    for (int k = 0; c->opts.scheduler_flags && c->opts.scheduler_flags[k] && n < MAX_FLAGS - 1; k++)
        flags[n++] = c->opts.scheduler_flags[k];
    flags[n] = NULL;
    lm_rpc_client_opts copts = client_opts(c);
    return service_start("scheduler", flags, log, c->scheduler_addr, &copts, 20000, c->opts.max_fds, &c->scheduler_pid);
}

void lm_test_cluster_kill_scheduler(lm_test_cluster *c, int sig) {
    if (c->scheduler_pid > 0) lm_test_stop(c->scheduler_pid, sig, 5000);
    c->scheduler_pid = -1;
}

lumen_status lm_test_cluster_restart_scheduler(lm_test_cluster *c, int sig) {
    lm_test_cluster_kill_scheduler(c, sig);
    return start_scheduler(c);
}

/* Object store i (the first keeps the names it always had: objstore.log,
 * spill), on a new address, or (again) on the one it had. */
static lumen_status start_objstore(lm_test_cluster *c, int i, bool again) {
    char log[600], spill[600], suffix[16] = "";
    if (i > 0) snprintf(suffix, sizeof suffix, "-%d", i);
    char *addr = c->objstore_addrs[i];
    if (!again) free_addr(addr, sizeof c->objstore_addrs[i]);
    snprintf(log, sizeof log, "%s/objstore%s.log", c->dir, suffix);
    snprintf(spill, sizeof spill, "%s/spill%s", c->dir, suffix);
    const char *flags[MAX_FLAGS] = {"--listen", addr, "--scheduler-addr", c->scheduler_addr,
                                    "--redis-addr", lm_test_redis_addr(c->redis), "--spill-dir", spill,
                                    "--memory-limit", c->opts.objstore_memory ? c->opts.objstore_memory : "2GiB"};
    common_flags(c, flags, 10);
    c->objstore_pids[i] = -1;
    lm_rpc_client_opts copts = client_opts(c);
    return service_start("objstore", flags, log, addr, &copts, 20000, c->opts.max_fds, &c->objstore_pids[i]);
}

lumen_status lm_test_cluster_add_objstore(lm_test_cluster *c, int *index) {
    if (c->nstores == MAX_STORES) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "too many object stores");
    lumen_status st = start_objstore(c, c->nstores, false);
    if (!LM_IS_OK(st)) return st;
    if (index != NULL) *index = c->nstores;
    c->nstores++;
    return lm_ok();
}

lumen_status lm_test_cluster_restart_objstore(lm_test_cluster *c, int i, int sig) {
    if (i < 0 || i >= c->nstores) return lm_status(LUMEN_INVALID_ARGUMENT, "no object store %d", i);
    lm_test_cluster_kill_objstore(c, i, sig);
    return start_objstore(c, i, true);
}

lumen_status lm_test_cluster_start(const lm_test_cluster_opts *opts, lm_test_cluster **out) {
    *out = NULL;
    lm_test_cluster *c = calloc(1, sizeof *c);
    if (opts != NULL) c->opts = *opts;
    if (c->opts.workers <= 0) c->opts.workers = 1;
    if (c->opts.slots <= 0) c->opts.slots = 2;
    snprintf(c->slots, sizeof c->slots, "%d", c->opts.slots);
    if (c->opts.dashboard) snprintf(c->dashboard_port, sizeof c->dashboard_port, "%u", lm_test_free_port());
    if (c->opts.objstores <= 0) c->opts.objstores = 1;
    if (c->opts.objstores > MAX_STORES) c->opts.objstores = MAX_STORES;
    c->scheduler_pid = -1;
    c->dir = lm_test_tmpdir("cluster");
    lm_test_redis_opts ropts = {.appendonly = c->opts.redis_appendonly, .password = c->opts.redis_password};
    lumen_status st = c->dir ? lm_test_redis_start(&ropts, &c->redis) : lm_status(LUMEN_IO, "no temp dir");

    if (LM_IS_OK(st)) {
        free_addr(c->scheduler_addr, sizeof c->scheduler_addr);
        st = start_scheduler(c);
    }
    for (int i = 0; LM_IS_OK(st) && i < c->opts.objstores; i++) st = lm_test_cluster_add_objstore(c, NULL);
    for (int i = 0; LM_IS_OK(st) && i < c->opts.workers; i++) {
        st = start_worker(c, i, i % c->nstores); /* worker i lives with store i mod n */
        if (LM_IS_OK(st)) c->nworkers++;
    }
    if (LM_IS_OK(st)) st = lm_test_cluster_wait_nodes(c, c->nworkers + c->nstores, 20000);
    if (!LM_IS_OK(st)) {
        lm_test_cluster_stop(c);
        return st;
    }
    *out = c;
    return lm_ok();
}

lumen_status lm_test_cluster_wait_nodes(lm_test_cluster *c, int n, int64_t timeout_ms) {
    lm_redis_opts ropts = {.addr = lm_test_redis_addr(c->redis), .password = c->opts.redis_password};
    lm_redis *r = NULL;
    lumen_status st = lm_redis_connect(&ropts, &r);
    uint64_t until = lm_test_now_us() + (uint64_t)timeout_ms * 1000;
    int alive = 0;
    while (LM_IS_OK(st)) {
        lm_node_list *list = NULL;
        st = lm_redis_nodes_list(r, &list);
        if (!LM_IS_OK(st)) break;
        alive = 0;
        for (size_t i = 0; i < list->count; i++) alive += list->nodes[i].state == LM_NODE_ALIVE;
        lm_node_list_free(list);
        if (alive >= n) break;
        if (lm_test_now_us() > until) {
            st = lm_status(LUMEN_DEADLINE_EXCEEDED, "%d of %d nodes registered", alive, n);
            break;
        }
        lm_test_sleep_ms(20);
    }
    lm_redis_free(r);
    return st;
}

/* How many of the running processes at addrs[0..n) the scheduler's list holds. */
static int listed(const Lumen__ClusterInfoReply *info, const char (*addrs)[32], const pid_t *pids, int n,
                  int *running) {
    int found = 0;
    for (int i = 0; i < n; i++) {
        if (pids[i] <= 0) continue;
        (*running)++;
        for (size_t k = 0; k < info->n_nodes; k++)
            if (strcmp(info->nodes[k]->addr, addrs[i]) == 0) {
                found++;
                break;
            }
    }
    return found;
}

lumen_status lm_test_cluster_wait_registered(lm_test_cluster *c, int64_t timeout_ms) {
    lm_rpc_client_opts copts = client_opts(c);
    lm_rpc_client *cli = NULL;
    lm_rpc_method m = {0};
    lumen_status st = lm_rpc_client_new(&copts, &cli);
    if (LM_IS_OK(st) && !lm_rpc_method_find(&lumen__scheduler__descriptor, "GetClusterInfo", &m))
        st = lm_status(LUMEN_INTERNAL, "no method GetClusterInfo");
    uint64_t until = lm_test_now_us() + (uint64_t)timeout_ms * 1000;
    int found = 0, running = 0;
    Lumen__ClusterInfoRequest req = LUMEN__CLUSTER_INFO_REQUEST__INIT;
    while (LM_IS_OK(st)) {
        ProtobufCMessage *reply = NULL;
        lumen_status call = lm_rpc_unary(cli, c->scheduler_addr, m, &req.base, &reply, 2000);
        found = running = 0;
        if (LM_IS_OK(call)) {
            const Lumen__ClusterInfoReply *info = (const Lumen__ClusterInfoReply *)reply;
            found = listed(info, c->worker_addrs, c->worker_pids, c->nworkers, &running) +
                    listed(info, c->objstore_addrs, c->objstore_pids, c->nstores, &running);
        }
        lm_rpc_message_free(reply);
        if (LM_IS_OK(call) && found == running) break;
        if (lm_test_now_us() > until) {
            st = LM_IS_OK(call) ? lm_status(LUMEN_DEADLINE_EXCEEDED, "the scheduler knows %d of %d nodes", found, running)
                                : call;
            break;
        }
        lm_test_sleep_ms(20);
    }
    lm_rpc_client_free(cli);
    return st;
}

lumen_status lm_test_cluster_add_worker(lm_test_cluster *c, int *index) {
    return lm_test_cluster_add_worker_on(c, c->nworkers % c->nstores, index);
}

lumen_status lm_test_cluster_add_worker_on(lm_test_cluster *c, int store, int *index) {
    if (c->nworkers == MAX_WORKERS) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "too many workers");
    if (store < 0 || store >= c->nstores) return lm_status(LUMEN_INVALID_ARGUMENT, "no object store %d", store);
    lumen_status st = start_worker(c, c->nworkers, store);
    if (!LM_IS_OK(st)) return st;
    if (index != NULL) *index = c->nworkers;
    c->nworkers++;
    return lm_ok();
}

const char *lm_test_cluster_scheduler(const lm_test_cluster *c) { return c->scheduler_addr; }
const char *lm_test_cluster_objstore(const lm_test_cluster *c) { return c->objstore_addrs[0]; }
const char *lm_test_cluster_objstore_at(const lm_test_cluster *c, int i) { return c->objstore_addrs[i]; }
int lm_test_cluster_objstores(const lm_test_cluster *c) { return c->nstores; }
pid_t lm_test_cluster_objstore_pid(const lm_test_cluster *c, int i) { return c->objstore_pids[i]; }
int lm_test_cluster_worker_store(const lm_test_cluster *c, int i) { return c->worker_stores[i]; }

void lm_test_cluster_kill_objstore(lm_test_cluster *c, int i, int sig) {
    if (i < 0 || i >= c->nstores || c->objstore_pids[i] <= 0) return;
    lm_test_stop(c->objstore_pids[i], sig, 5000);
    c->objstore_pids[i] = -1;
}
const char *lm_test_cluster_worker(const lm_test_cluster *c, int i) { return c->worker_addrs[i]; }
const char *lm_test_cluster_redis(const lm_test_cluster *c) { return lm_test_redis_addr(c->redis); }
uint16_t lm_test_cluster_dashboard(const lm_test_cluster *c) { return (uint16_t)atoi(c->dashboard_port); }
lm_test_redis *lm_test_cluster_redis_server(lm_test_cluster *c) { return c->redis; }
const char *lm_test_cluster_dir(const lm_test_cluster *c) { return c->dir; }
int lm_test_cluster_workers(const lm_test_cluster *c) { return c->nworkers; }
pid_t lm_test_cluster_worker_pid(const lm_test_cluster *c, int i) { return c->worker_pids[i]; }
pid_t lm_test_cluster_scheduler_pid(const lm_test_cluster *c) { return c->scheduler_pid; }

void lm_test_cluster_kill_worker(lm_test_cluster *c, int i, int sig) {
    if (i < 0 || i >= c->nworkers || c->worker_pids[i] <= 0) return;
    lm_test_stop(c->worker_pids[i], sig, 5000);
    c->worker_pids[i] = -1;
}

void lm_test_cluster_stop(lm_test_cluster *c) {
    if (c == NULL) return;
    for (int i = 0; i < c->nworkers; i++)
        if (c->worker_pids[i] > 0) lm_test_stop(c->worker_pids[i], SIGTERM, 5000);
    for (int i = 0; i < c->nstores; i++)
        if (c->objstore_pids[i] > 0) lm_test_stop(c->objstore_pids[i], SIGTERM, 5000);
    if (c->scheduler_pid > 0) lm_test_stop(c->scheduler_pid, SIGTERM, 5000);
    lm_test_redis_stop(c->redis);
    if (getenv("LUMEN_TEST_KEEP") == NULL) lm_test_rmtree(c->dir);
    else fprintf(stderr, "kept %s\n", c->dir);
    free(c->dir);
    free(c);
}

/*
 * cluster.h - real Lumen services for integration tests: each service is the
 * real binary from build/bin, started on free loopback ports in a temp dir,
 * waited for through its Health RPC, and stopped (SIGTERM, then SIGKILL) when
 * the test ends or fails. Children die with the test process.
 */
#ifndef LM_TEST_CLUSTER_H
#define LM_TEST_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "id.h"
#include "rpc.h"
#include "status.h"

/* build/bin/<name>, e.g. lm_test_bin("lumen-worker"); static storage. */
const char *lm_test_bin(const char *name);

/* Runs `lumen first ...` (NULL-terminated) to completion with its stdout
 * and stderr in out_path, read back into output (cap bytes), and echoed to
 * stderr; returns its exit code (-1 if it did not exit normally). */
int lm_test_lumen(const char *out_path, char *output, size_t cap, const char *first, ...);

/*
 * Starts build/bin/lumen-<role> with the NULL-terminated flags, appending its
 * output to log_path, and waits up to timeout_ms until `addr` answers Health
 * SERVING to a client made with `client` (its token and TLS; NULL: none). On
 * failure nothing is left running and the status quotes the end of the log.
 */
lumen_status lm_test_service_start(const char *role, const char *const flags[], const char *log_path,
                                   const char *addr, const lm_rpc_client_opts *client, int64_t timeout_ms,
                                   pid_t *pid);

typedef struct lm_test_cluster_opts {
    int workers;                  /* 0: 1 */
    int slots;                    /* per worker; 0: 2 */
    const char *token;            /* NULL: no token */
    const char *redis_password;   /* Redis with AUTH, every service given the password; NULL: none */
    /* TLS for every service, as server and as client of the others (PEM
     * files, e.g. from scripts/make-test-ca.sh); NULL: plaintext. */
    const char *tls_cert, *tls_key, *tls_ca;
    const char *objstore_memory;  /* e.g. "64MiB"; NULL: the default */
    const char *const *worker_flags; /* extra flags for every worker, NULL-terminated; may be NULL */
    const char *const *scheduler_flags; /* extra flags for the scheduler, NULL-terminated; may be NULL */
    int objstores;                /* object stores; worker i uses store i mod objstores; 0: 1 */
    bool redis_appendonly;        /* Redis with its append-only file on (it survives kill + restart) */
    int max_fds;                  /* services run with RLIMIT_NOFILE this low, soft and hard; 0: inherited */
    bool dashboard;               /* the scheduler serves its dashboard, on a free port */
} lm_test_cluster_opts;

typedef struct lm_test_cluster lm_test_cluster;

/* Redis + scheduler + object stores (one unless opts say) + N workers, all registered. */
lumen_status lm_test_cluster_start(const lm_test_cluster_opts *opts, lm_test_cluster **out);

const char *lm_test_cluster_scheduler(const lm_test_cluster *c); /* "127.0.0.1:port" */
const char *lm_test_cluster_objstore(const lm_test_cluster *c); /* the first one */
const char *lm_test_cluster_objstore_at(const lm_test_cluster *c, int i);
/* Sends sig to object store i and reaps it. */
void lm_test_cluster_kill_objstore(lm_test_cluster *c, int i, int sig);
/* Object stores started so far (dead ones included) and store i's pid (-1 once killed). */
int lm_test_cluster_objstores(const lm_test_cluster *c);
pid_t lm_test_cluster_objstore_pid(const lm_test_cluster *c, int i);
/* Starts one more object store; *index (may be NULL) gets its number. */
lumen_status lm_test_cluster_add_objstore(lm_test_cluster *c, int *index);
/* Sends sig to object store i (if it runs) and reaps it, then starts it again
 * with its own command line: its address, spill dir and log (appended to). */
lumen_status lm_test_cluster_restart_objstore(lm_test_cluster *c, int i, int sig);
const char *lm_test_cluster_worker(const lm_test_cluster *c, int i); /* worker i's address */
const char *lm_test_cluster_redis(const lm_test_cluster *c);
uint16_t lm_test_cluster_dashboard(const lm_test_cluster *c); /* its port; 0: none */
/* The Redis server itself, to kill and restart it (redis_server.h). */
struct lm_test_redis *lm_test_cluster_redis_server(lm_test_cluster *c);
const char *lm_test_cluster_dir(const lm_test_cluster *c);
int lm_test_cluster_workers(const lm_test_cluster *c); /* started so far, dead ones included */
pid_t lm_test_cluster_worker_pid(const lm_test_cluster *c, int i); /* -1 once killed */
int lm_test_cluster_worker_store(const lm_test_cluster *c, int i); /* the store worker i uses */
pid_t lm_test_cluster_scheduler_pid(const lm_test_cluster *c);

/* Starts one more worker; *index (may be NULL) gets its number i, and it
 * uses object store i mod the number of stores started. */
lumen_status lm_test_cluster_add_worker(lm_test_cluster *c, int *index);
/* The same, using object store `store` (a node of its own: e.g. a
 * replacement for one lost with its store). */
lumen_status lm_test_cluster_add_worker_on(lm_test_cluster *c, int store, int *index);

/* Sends sig to the scheduler (if it runs), reaps it, and starts a new one on
 * the same address (its log goes on in scheduler.log). */
lumen_status lm_test_cluster_restart_scheduler(lm_test_cluster *c, int sig);
/* Sends sig to the scheduler and reaps it; restart_scheduler starts it again. */
void lm_test_cluster_kill_scheduler(lm_test_cluster *c, int sig);

/* Sends sig to worker i and reaps it. */
void lm_test_cluster_kill_worker(lm_test_cluster *c, int i, int sig);

/* Waits until Redis lists `n` ALIVE nodes (workers + object stores). */
lumen_status lm_test_cluster_wait_nodes(lm_test_cluster *c, int n, int64_t timeout_ms);

/* Waits until the scheduler itself lists every worker and object store
 * still running (after its restart they register again, one by one). */
lumen_status lm_test_cluster_wait_registered(lm_test_cluster *c, int64_t timeout_ms);

/* Stops every process it started and removes its temp dir. NULL-safe. */
void lm_test_cluster_stop(lm_test_cluster *c);

#endif

/*
 * attack.h - a stranger's traffic against a Lumen port, for the hostile
 * tests and bench/attack_bench: tests/support/attack.py run in the
 * background, and what a member of the cluster sees meanwhile (its health
 * checks' latency, the services' memory and descriptors).
 *
 *     lm_attack_watch w = {.pids = {sched}, .npids = 1, .rpc = cli, .addr = sched_addr};
 *     const char *args[] = {"rapid-reset", "127.0.0.1", port, "4", "100000", path, NULL};
 *     LM_ASSERT_OK(lm_attack_run(args, &w, 30000));
 *     ... w.rss_peak_kb[0], w.latency ...
 */
#ifndef LM_TEST_ATTACK_H
#define LM_TEST_ATTACK_H

#include <stdint.h>
#include <sys/types.h>

#include "rpc.h"
#include "status.h"

#define LM_ATTACK_MAX_PIDS 8
#define LM_ATTACK_DURING_AFTER_MS 300

/* Latency of calls, in microseconds. */
typedef struct lm_latency {
    double p50_us, p99_us, max_us;
    int calls, failures;
    char last_error[256];
} lm_latency;

/* What to watch while an attack runs, and what was seen. */
typedef struct lm_attack_watch {
    pid_t pids[LM_ATTACK_MAX_PIDS]; /* services whose memory and descriptors are sampled */
    int npids;
    lm_rpc_client *rpc;             /* a member's client (token, TLS)... */
    const char *addr;               /* ...health-checking this address throughout; NULL: none */
    /* Or any call of a member's, timed instead of the health check. */
    lumen_status (*probe)(void *arg);
    void *probe_arg;
    /* Called once, DURING_AFTER_MS into the attack (a job to start, new
     * connections to try); may be NULL. The watch pauses while it runs. */
    void (*during)(void *arg);
    void *during_arg;
    /* Out. */
    uint64_t rss_peak_kb[LM_ATTACK_MAX_PIDS];
    int fds_peak[LM_ATTACK_MAX_PIDS];
    lm_latency latency;
    char output[256]; /* the attacker's summary line */
    int64_t elapsed_ms;
} lm_attack_watch;

/* Runs attack.py with args (its mode and arguments, NULL-terminated) and
 * watches until it exits, or kills it after timeout_ms. Fails when the
 * attacker cannot start or exits with an error (its output quoted). */
lumen_status lm_attack_run(const char *const args[], lm_attack_watch *w, int64_t timeout_ms);

/* What lm_attack_run times during an attack (w's rpc and addr, or its
 * probe), for ms without one: the idle figure to compare with. */
void lm_attack_latency(const lm_attack_watch *w, int64_t ms, lm_latency *out);

/* VmRSS of a process in KiB (0 when gone), and its open descriptors (-1). */
uint64_t lm_test_rss_kb(pid_t pid);
int lm_test_fd_count(pid_t pid);

#endif

/* attack.c - see attack.h. */
#include "attack.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "health.h"
#include "test_util.h"

#define MAX_SAMPLES 100000
#define CHECK_TIMEOUT_MS 5000
#define PAUSE_MS 20 /* between two health checks: a member's pace, not a flood of our own */

uint64_t lm_test_rss_kb(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    uint64_t kb = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmRSS: %lu kB", &kb) == 1) break;
    if (f != NULL) fclose(f);
    return kb;
}

int lm_test_fd_count(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct sampler {
    uint64_t *us;
    int n;
} sampler;

/* One probe into s (failures are counted, not timed). */
static void check_once(const lm_attack_watch *w, sampler *s, lm_latency *out) {
    uint64_t t0 = lm_test_now_us();
    lumen_status st = w->probe != NULL ? w->probe(w->probe_arg)
                                       : lm_health_check(w->rpc, w->addr, CHECK_TIMEOUT_MS, NULL, NULL);
    uint64_t took = lm_test_now_us() - t0;
    out->calls++;
    if (!LM_IS_OK(st)) {
        out->failures++;
        snprintf(out->last_error, sizeof out->last_error, "%.200s", st.msg);
    } else if (s->n < MAX_SAMPLES) {
        s->us[s->n++] = took;
    }
}

static void summarize(sampler *s, lm_latency *out) {
    if (s->n == 0) return;
    qsort(s->us, (size_t)s->n, sizeof *s->us, cmp_u64);
    out->p50_us = (double)s->us[s->n / 2];
    out->p99_us = (double)s->us[(s->n - 1) * 99 / 100];
    out->max_us = (double)s->us[s->n - 1];
}

void lm_attack_latency(const lm_attack_watch *w, int64_t ms, lm_latency *out) {
    memset(out, 0, sizeof *out);
    sampler s = {calloc(MAX_SAMPLES, sizeof(uint64_t)), 0};
    for (uint64_t until = lm_test_now_us() + (uint64_t)ms * 1000; lm_test_now_us() < until;) {
        check_once(w, &s, out);
        lm_test_sleep_ms(PAUSE_MS);
    }
    summarize(&s, out);
    free(s.us);
}

static void sample_services(lm_attack_watch *w) {
    for (int i = 0; i < w->npids; i++) {
        uint64_t rss = lm_test_rss_kb(w->pids[i]);
        int fds = lm_test_fd_count(w->pids[i]);
        if (rss > w->rss_peak_kb[i]) w->rss_peak_kb[i] = rss;
        if (fds > w->fds_peak[i]) w->fds_peak[i] = fds;
    }
}

lumen_status lm_attack_run(const char *const args[], lm_attack_watch *w, int64_t timeout_ms) {
    char *dir = lm_test_tmpdir("attack"), log[600];
    if (dir == NULL) return lm_status(LUMEN_IO, "no temp dir");
    snprintf(log, sizeof log, "%s/attack.log", dir);
    const char *argv[16] = {LUMEN_TEST_PYTHON, LUMEN_TEST_ATTACK_PY};
    int n = 2;
    for (int i = 0; args[i] != NULL && n < 15; i++) argv[n++] = args[i];
    argv[n] = NULL;
    memset(w->rss_peak_kb, 0, sizeof w->rss_peak_kb);
    memset(w->fds_peak, 0, sizeof w->fds_peak);
    memset(&w->latency, 0, sizeof w->latency);
    sampler s = {calloc(MAX_SAMPLES, sizeof(uint64_t)), 0};

    uint64_t t0 = lm_test_now_us();
    pid_t pid = lm_test_spawn((char *const *)argv, log);
    int status = -1;
    bool during_done = w->during == NULL;
    while (pid > 0) {
        if (!during_done && lm_test_now_us() - t0 > LM_ATTACK_DURING_AFTER_MS * 1000u) {
            w->during(w->during_arg);
            during_done = true;
        }
        sample_services(w);
        if (w->addr != NULL || w->probe != NULL) check_once(w, &s, &w->latency);
        lm_test_sleep_ms(PAUSE_MS);
        if (waitpid(pid, &status, WNOHANG) == pid) break;
        if (lm_test_now_us() - t0 > (uint64_t)timeout_ms * 1000) {
            status = lm_test_stop(pid, SIGKILL, 1000);
            break;
        }
    }
    if (!during_done) w->during(w->during_arg); /* an attack shorter than the wait still gets its company */
    sample_services(w);
    w->elapsed_ms = (int64_t)(lm_test_now_us() - t0) / 1000;
    summarize(&s, &w->latency);
    free(s.us);

    w->output[0] = '\0';
    FILE *f = fopen(log, "r");
    size_t len = f != NULL ? fread(w->output, 1, sizeof w->output - 1, f) : 0;
    if (f != NULL) fclose(f);
    w->output[len] = '\0';
    w->output[strcspn(w->output, "\n")] = '\0';
    lm_test_rmtree(dir);
    free(dir);
    if (pid < 0) return lm_status(LUMEN_INTERNAL, "cannot start %s", LUMEN_TEST_PYTHON);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return lm_status(LUMEN_INTERNAL, "attack.py %s failed (status %d): %s", args[0], status, w->output);
    return lm_ok();
}

/*
 * progress.c - lumen_wait_progress: a wait for many refs that shows, on a
 * terminal, how far it got.
 *
 * The bar is drawn by the waiting thread between slices of the wait (each
 * slice is a lumen_wait of up to CLIENT_PROGRESS_REDRAW_MS for the refs not
 * ready yet, parked in the scheduler): no thread of its own, no polling,
 * at most ten redraws a second, and nothing at all when stderr is not a
 * terminal (then it is one plain lumen_wait).
 */
#include <lumen/lumen.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int terminal_width(void) {
    struct winsize ws;
    return ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
}

/* Redraws the bar over its line ("\r", then erase what the last one left). */
static void draw(const char *label, size_t done, size_t total, double seconds) {
    char line[512];
    client_progress_line(line, sizeof line, label, done, total, seconds, terminal_width());
    fprintf(stderr, "\r%s\033[K", line);
    fflush(stderr);
}

lumen_status lumen_wait_progress(lumen_client *c, const lumen_ref *refs, size_t n, int64_t timeout_ms,
                                 const char *label, int *ready, size_t *num_done) {
    int *own = ready ? NULL : calloc(n ? n : 1, sizeof *own);
    if (ready == NULL && own == NULL) return (lumen_status){LUMEN_RESOURCE_EXHAUSTED, "out of memory"};
    if (ready == NULL) ready = own;
    if (!isatty(STDERR_FILENO)) {
        lumen_status st = lumen_wait(c, refs, n, n, timeout_ms, ready, num_done);
        free(own);
        return st;
    }
    lumen_ref *pending = malloc((n ? n : 1) * sizeof *pending);
    size_t *index = malloc((n ? n : 1) * sizeof *index);
    int *got = malloc((n ? n : 1) * sizeof *got);
    lumen_status st = {LUMEN_OK, ""};
    if (pending == NULL || index == NULL || got == NULL) st = (lumen_status){LUMEN_RESOURCE_EXHAUSTED, "out of memory"};
    memset(ready, 0, n * sizeof *ready);
    double start = now_s(), deadline = start + (double)(timeout_ms > 0 ? timeout_ms : 0) / 1000;
    size_t done = 0;
    while (st.code == LUMEN_OK && done < n) { /* one wait at least, as lumen_wait with timeout 0 */
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (!ready[i]) pending[m] = refs[i], index[m++] = i;
        double left_ms = (deadline - now_s()) * 1000;
        int64_t slice = left_ms <= 0 ? 0 : left_ms < CLIENT_PROGRESS_REDRAW_MS ? (int64_t)left_ms + 1
                                                                               : CLIENT_PROGRESS_REDRAW_MS;
        st = lumen_wait(c, pending, m, m, slice, got, NULL);
        for (size_t k = 0; st.code == LUMEN_OK && k < m; k++)
            if (got[k]) ready[index[k]] = 1, done++;
        if (done == n || now_s() >= deadline) break;
        draw(label, done, n, now_s() - start);
    }
    draw(label, done, n, now_s() - start);
    fputc('\n', stderr);
    if (num_done != NULL) *num_done = done;
    free(pending);
    free(index);
    free(got);
    free(own);
    return st;
}

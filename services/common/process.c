/* process.c - see process.h. */
#include "process.h"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "log.h"

void lm_process_tune_malloc(void) {
    const char *env = getenv("LUMEN_MALLOC_TUNE");
    if (env != NULL && strcmp(env, "0") == 0) return;
    mallopt(M_ARENA_MAX, 2);                 /* few arenas: freed chunks are found again */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);     /* chunks come from the heap, not fresh mmaps */
    mallopt(M_TRIM_THRESHOLD, 256 << 20);    /* keep freed heap instead of trimming it */
    mallopt(M_TOP_PAD, 64 << 20);            /* grow the heap in big steps */
}

long lm_process_raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = was;
    }
    return rl.rlim_cur == RLIM_INFINITY ? -1 : (long)rl.rlim_cur;
}

void lm_process_init(const char *name) {
    lm_log_set_name(name);
    signal(SIGPIPE, SIG_IGN);
    lm_process_tune_malloc();
    lm_process_raise_fd_limit();
}

void lm_thread_name(const char *name) {
    char shown[16]; /* the kernel keeps 15 characters */
    snprintf(shown, sizeof shown, "%s", name);
    pthread_setname_np(pthread_self(), shown);
}

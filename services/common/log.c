/* log.c - one formatted write(2) per record so lines from threads never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile lm_log_level log_level = LM_LOG_INFO;
static char log_name[32] = "lumen";

static const char *const level_words[] = {"debug", "info", "warn", "error", "off"};

void lm_log_set_level(lm_log_level level) { log_level = level; }
lm_log_level lm_log_get_level(void) { return log_level; }

void lm_log_set_name(const char *name) {
    snprintf(log_name, sizeof log_name, "%s", name);
}

int lm_log_level_parse(const char *word) {
    for (size_t i = 0; i < sizeof level_words / sizeof level_words[0]; i++)
        if (strcmp(word, level_words[i]) == 0) return (int)i;
    return -1;
}

static void vlog(lm_log_level level, const char *fmt, va_list ap) {
    char line[1024];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld %s[%d] %-5s ", tm.tm_hour,
                     tm.tm_min, tm.tm_sec, (long)tv.tv_usec / 1000, log_name, (int)getpid(),
                     level_words[level]);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, (size_t)n);
    (void)ignored;
}

void lm_log(lm_log_level level, const char *fmt, ...) {
    if (level < log_level || level >= LM_LOG_OFF) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

void lm_fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(LM_LOG_ERROR, fmt, ap);
    va_end(ap);
    abort();
}

/* log.h - leveled logging to stderr, one line per record, safe from any thread. */
#ifndef LM_LOG_H
#define LM_LOG_H

#include "status.h"

typedef enum lm_log_level {
    LM_LOG_DEBUG = 0,
    LM_LOG_INFO,
    LM_LOG_WARN,
    LM_LOG_ERROR,
    LM_LOG_OFF,
} lm_log_level;

/* Process-wide settings; call before starting threads. */
void lm_log_set_level(lm_log_level level);
void lm_log_set_name(const char *name); /* shown in every line, e.g. "scheduler" */
lm_log_level lm_log_get_level(void);

/* "debug", "info", "warn", "error", "off" -> level; -1 when unknown. */
int lm_log_level_parse(const char *word);

void lm_log(lm_log_level level, const char *fmt, ...) LM_PRINTF(2, 3);

/* Logs an error whatever the level and aborts: the services' answer to
 * running out of memory (state half changed is worse than a restart, which
 * the supervisor and the recovery protocol make safe), as Redis's zmalloc. */
_Noreturn void lm_fatal(const char *fmt, ...) LM_PRINTF(1, 2);

#define lm_debug(...) \
    do { if (lm_log_get_level() <= LM_LOG_DEBUG) lm_log(LM_LOG_DEBUG, __VA_ARGS__); } while (0)
#define lm_info(...) lm_log(LM_LOG_INFO, __VA_ARGS__)
#define lm_warn(...) lm_log(LM_LOG_WARN, __VA_ARGS__)
#define lm_error(...) lm_log(LM_LOG_ERROR, __VA_ARGS__)

#endif

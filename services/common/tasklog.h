/*
 * tasklog.h - what a task wrote to stdout and stderr, bounded: the head of
 * it, at most LM_TASK_LOG_MAX bytes in all, and when more was written a last
 * line saying how much was cut ("...[truncated 1234 bytes]").
 *
 * No I/O here: the worker feeds it what it reads from an executor's output
 * pipe, the scheduler passes a log that arrived over the wire through it to
 * hold any sender to the same bound. The head is kept rather than the tail:
 * a task that floods its output usually says what is wrong first.
 */
#ifndef LM_TASKLOG_H
#define LM_TASKLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most a task's log holds, truncation line included. */
#define LM_TASK_LOG_MAX (64u << 10)

typedef struct lm_tasklog {
    char *data;       /* NULL until something is kept */
    size_t len, cap;
    uint64_t dropped; /* bytes written past what is kept */
    bool finished;
} lm_tasklog;

/* Keeps what fits of n more bytes and counts the rest (also what an
 * allocation that failed could not keep). */
void lm_tasklog_append(lm_tasklog *l, const void *p, size_t n);

/* Ends the log: when bytes were dropped, the head is cut back to the end
 * of a line (or, for one long line, of a UTF-8 character) and the
 * truncation line added, all within LM_TASK_LOG_MAX. Idempotent. */
void lm_tasklog_finish(lm_tasklog *l);

/* Hands the finished log's bytes to the caller (free them; NULL when it is
 * empty) and leaves l empty. */
char *lm_tasklog_take(lm_tasklog *l, size_t *len);

/* Frees what l holds; l is empty after. */
void lm_tasklog_fini(lm_tasklog *l);

#endif

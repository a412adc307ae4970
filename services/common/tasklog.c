/* tasklog.c - see tasklog.h. */
#include "tasklog.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room left for the truncation line: "\n...[truncated <20 digits> bytes]\n". */
#define MARKER_ROOM 48
/* How far back a cut looks for the end of a line before it cuts one. */
#define LINE_LOOKBACK 1024

void lm_tasklog_append(lm_tasklog *l, const void *p, size_t n) {
    size_t keep = l->finished || l->len >= LM_TASK_LOG_MAX ? 0 : LM_TASK_LOG_MAX - l->len;
    if (keep > n) keep = n;
    if (keep > 0 && l->len + keep > l->cap) {
        size_t cap = l->cap ? l->cap : 4096;
        while (cap < l->len + keep) cap *= 2;
        if (cap > LM_TASK_LOG_MAX) cap = LM_TASK_LOG_MAX;
        char *grown = realloc(l->data, cap);
        if (grown == NULL) {
            keep = 0;
        } else {
            l->data = grown;
            l->cap = cap;
        }
    }
    if (keep > 0) memcpy(l->data + l->len, p, keep);
    l->len += keep;
    l->dropped += n - keep;
}

/* Where to cut a head of len bytes so it ends a line, or at least a UTF-8
 * character: the end of the last line within LINE_LOOKBACK, else len moved
 * back over continuation bytes. */
static size_t cut_point(const char *s, size_t len) {
    size_t floor = len > LINE_LOOKBACK ? len - LINE_LOOKBACK : 0;
    for (size_t i = len; i > floor; i--)
        if (s[i - 1] == '\n') return i;
    size_t cut = len;
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80) cut--;
    return cut;
}

void lm_tasklog_finish(lm_tasklog *l) {
    if (l->finished) return;
    l->finished = true;
    if (l->dropped == 0) return;
    if (l->len > LM_TASK_LOG_MAX - MARKER_ROOM) {
        size_t cut = cut_point(l->data, LM_TASK_LOG_MAX - MARKER_ROOM);
        l->dropped += l->len - cut;
        l->len = cut;
    }
    if (l->data == NULL || l->cap < l->len + MARKER_ROOM) { /* only when allocations failed */
        char *grown = realloc(l->data, l->len + MARKER_ROOM);
        if (grown == NULL) return;
        l->data = grown;
        l->cap = l->len + MARKER_ROOM;
    }
    bool mid_line = l->len > 0 && l->data[l->len - 1] != '\n';
    l->len += (size_t)snprintf(l->data + l->len, MARKER_ROOM, "%s...[truncated %" PRIu64 " bytes]\n",
                               mid_line ? "\n" : "", l->dropped);
}

char *lm_tasklog_take(lm_tasklog *l, size_t *len) {
    lm_tasklog_finish(l);
    char *data = l->len > 0 ? l->data : NULL;
    *len = data ? l->len : 0;
    if (data == NULL) free(l->data);
    memset(l, 0, sizeof *l);
    return data;
}

void lm_tasklog_fini(lm_tasklog *l) {
    free(l->data);
    memset(l, 0, sizeof *l);
}

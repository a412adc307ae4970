/*
 * json.h - a growable text buffer and the one JSON writer of the services
 * (the dashboard's API, `lumen ... --json`). Writing never fails midway:
 * running out of memory is remembered (lm_buf.oom) and checked once at the
 * end, so renderers need no error path per value.
 *
 * Strings are written as UTF-8; bytes that are not valid UTF-8 (a task's
 * log may hold anything) become U+FFFD, control characters \u00XX.
 */
#ifndef LM_JSON_H
#define LM_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "id.h"
#include "status.h"

typedef struct lm_buf {
    char *data; /* NUL-terminated while not oom */
    size_t len, cap;
    bool oom;
} lm_buf;

void lm_buf_append(lm_buf *b, const void *p, size_t n);
void lm_buf_puts(lm_buf *b, const char *s);
void lm_buf_printf(lm_buf *b, const char *fmt, ...) LM_PRINTF(2, 3);
/* Frees the text and resets the buffer; NULL-safe. */
void lm_buf_fini(lm_buf *b);

#define LM_JSON_DEPTH 16

typedef struct lm_json {
    lm_buf out;
    int depth;
    bool has_item[LM_JSON_DEPTH]; /* an element was written at this level: the next needs a comma */
    bool after_key;
} lm_json;

void lm_json_obj(lm_json *j); /* { */
void lm_json_obj_end(lm_json *j);
void lm_json_arr(lm_json *j); /* [ */
void lm_json_arr_end(lm_json *j);
void lm_json_key(lm_json *j, const char *key);

void lm_json_str(lm_json *j, const char *s); /* NULL: null */
void lm_json_strn(lm_json *j, const char *s, size_t n);
void lm_json_u64(lm_json *j, uint64_t v);
void lm_json_i64(lm_json *j, int64_t v);
void lm_json_double(lm_json *j, double v); /* not finite: null */
void lm_json_bool(lm_json *j, bool v);
void lm_json_null(lm_json *j);
void lm_json_id(lm_json *j, lm_id id); /* 32 hex digits; the zero id: null */

/* key: value in one call, for objects. */
void lm_json_kstr(lm_json *j, const char *key, const char *s);
void lm_json_ku64(lm_json *j, const char *key, uint64_t v);
void lm_json_kid(lm_json *j, const char *key, lm_id id);

#endif

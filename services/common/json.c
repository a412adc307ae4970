/* json.c - see json.h. */
#include "json.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool reserve(lm_buf *b, size_t more) {
    if (b->oom) return false;
    if (b->len + more + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1) cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        b->oom = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void lm_buf_append(lm_buf *b, const void *p, size_t n) {
    if (!reserve(b, n)) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void lm_buf_puts(lm_buf *b, const char *s) { lm_buf_append(b, s, strlen(s)); }

void lm_buf_printf(lm_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void lm_buf_fini(lm_buf *b) {
    if (b == NULL) return;
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- JSON ---- */

/* Before a value or key: the comma its predecessor at this level needs. */
static void sep(lm_json *j) {
    if (j->after_key) {
        j->after_key = false;
        return;
    }
    if (j->depth > 0 && j->depth <= LM_JSON_DEPTH) {
        if (j->has_item[j->depth - 1]) lm_buf_append(&j->out, ",", 1);
        j->has_item[j->depth - 1] = true;
    }
}

static void begin(lm_json *j, char c) {
    sep(j);
    lm_buf_append(&j->out, &c, 1);
    if (j->depth < LM_JSON_DEPTH) j->has_item[j->depth] = false;
    j->depth++;
}

static void close_(lm_json *j, char c) {
    if (j->depth > 0) j->depth--;
    lm_buf_append(&j->out, &c, 1);
}

void lm_json_obj(lm_json *j) { begin(j, '{'); }
void lm_json_obj_end(lm_json *j) { close_(j, '}'); }
void lm_json_arr(lm_json *j) { begin(j, '['); }
void lm_json_arr_end(lm_json *j) { close_(j, ']'); }

/* The length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

static void string_body(lm_buf *b, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0; /* bytes copied as they are, flushed before each escape */
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        const char *esc = NULL;
        char u[8];
        size_t len = 1;
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c < 0x20 || c == 0x7F) snprintf(u, sizeof u, "\\u%04x", c), esc = u;
        else if (c >= 0x80 && (len = utf8_len(p + i, n - i)) == 0) esc = "\\ufffd", len = 1;
        if (esc == NULL) {
            run += len;
            i += len;
            continue;
        }
        lm_buf_append(b, s + i - run, run);
        run = 0;
        lm_buf_puts(b, esc);
        i += len;
    }
    lm_buf_append(b, s + n - run, run);
}

void lm_json_strn(lm_json *j, const char *s, size_t n) {
    sep(j);
    lm_buf_append(&j->out, "\"", 1);
    string_body(&j->out, s, n);
    lm_buf_append(&j->out, "\"", 1);
}

void lm_json_str(lm_json *j, const char *s) {
    if (s == NULL) lm_json_null(j);
    else lm_json_strn(j, s, strlen(s));
}

void lm_json_key(lm_json *j, const char *key) {
    lm_json_str(j, key);
    lm_buf_append(&j->out, ":", 1);
    j->after_key = true;
}

void lm_json_u64(lm_json *j, uint64_t v) {
    sep(j);
    lm_buf_printf(&j->out, "%" PRIu64, v);
}

void lm_json_i64(lm_json *j, int64_t v) {
    sep(j);
    lm_buf_printf(&j->out, "%" PRId64, v);
}

void lm_json_double(lm_json *j, double v) {
    if (!isfinite(v)) {
        lm_json_null(j);
        return;
    }
    sep(j);
    lm_buf_printf(&j->out, "%.6g", v);
}

void lm_json_bool(lm_json *j, bool v) {
    sep(j);
    lm_buf_puts(&j->out, v ? "true" : "false");
}

void lm_json_null(lm_json *j) {
    sep(j);
    lm_buf_puts(&j->out, "null");
}

void lm_json_id(lm_json *j, lm_id id) {
    char hex[LM_ID_HEX_LEN + 1];
    if (lm_id_is_zero(id)) lm_json_null(j);
    else lm_json_str(j, lm_id_to_hex(id, hex));
}

void lm_json_kstr(lm_json *j, const char *key, const char *s) {
    lm_json_key(j, key);
    lm_json_str(j, s);
}

void lm_json_ku64(lm_json *j, const char *key, uint64_t v) {
    lm_json_key(j, key);
    lm_json_u64(j, v);
}

void lm_json_kid(lm_json *j, const char *key, lm_id id) {
    lm_json_key(j, key);
    lm_json_id(j, id);
}

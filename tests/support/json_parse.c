/* json_parse.c - see json_parse.h. Recursive descent, depth-limited. */
#include "json_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    const char *p;
    char *err;
    size_t err_cap;
    bool failed;
    int depth;
} parser;

static void fail(parser *ps, const char *what) {
    if (!ps->failed) snprintf(ps->err, ps->err_cap, "%s at \"%.20s\"", what, ps->p);
    ps->failed = true;
}

static void ws(parser *ps) {
    while (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t') ps->p++;
}

static void value(parser *ps, lm_tj *out);

static char *string(parser *ps) {
    if (*ps->p != '"') {
        fail(ps, "expected a string");
        return NULL;
    }
    ps->p++;
    size_t cap = 16, n = 0;
    char *s = malloc(cap);
    while (!ps->failed && *ps->p != '"') {
        unsigned c = (unsigned char)*ps->p;
        char tmp[4];
        size_t k = 1;
        if (c == 0 || c < 0x20) {
            fail(ps, "bad character in a string");
            break;
        }
        if (c == '\\') {
            ps->p++;
            char e = *ps->p;
            const char *map = strchr("\"\\/bfnrt", e);
            if (e == 'u') {
                unsigned cp = 0;
                if (sscanf(ps->p + 1, "%4x", &cp) != 1) fail(ps, "bad \\u escape");
                ps->p += 4;
                if (cp < 0x80) tmp[0] = (char)cp;
                else if (cp < 0x800) tmp[0] = (char)(0xC0 | cp >> 6), tmp[1] = (char)(0x80 | (cp & 0x3F)), k = 2;
                else tmp[0] = (char)(0xE0 | cp >> 12), tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3F)),
                tmp[2] = (char)(0x80 | (cp & 0x3F)), k = 3;
            } else if (map) {
                tmp[0] = "\"\\/\b\f\n\r\t"[map - "\"\\/bfnrt"];
            } else {
                fail(ps, "bad escape");
            }
        } else {
            tmp[0] = (char)c;
        }
        ps->p++;
        if (n + k + 1 > cap) s = realloc(s, cap *= 2);
        memcpy(s + n, tmp, k);
        n += k;
    }
    if (!ps->failed) ps->p++;
    s[n] = '\0';
    if (ps->failed) {
        free(s);
        return NULL;
    }
    return s;
}

static void push(lm_tj *v, size_t *cap) {
    if (v->n == *cap) {
        *cap = *cap ? 2 * *cap : 4;
        v->items = realloc(v->items, *cap * sizeof *v->items);
        if (v->type == LM_TJ_OBJ) v->keys = realloc(v->keys, *cap * sizeof *v->keys);
    }
    memset(&v->items[v->n], 0, sizeof v->items[0]);
}

static void container(parser *ps, lm_tj *out, bool obj) {
    out->type = obj ? LM_TJ_OBJ : LM_TJ_ARR;
    ps->p++;
    ws(ps);
    size_t cap = 0;
    if (*ps->p == (obj ? '}' : ']')) {
        ps->p++;
        return;
    }
    while (!ps->failed) {
        ws(ps);
        push(out, &cap);
        if (obj) {
            out->keys[out->n] = string(ps);
            if (ps->failed) break;
            ws(ps);
            if (*ps->p++ != ':') {
                fail(ps, "expected ':'");
                out->n++;
                break;
            }
        }
        value(ps, &out->items[out->n]);
        out->n++;
        ws(ps);
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        if (*ps->p == (obj ? '}' : ']')) {
            ps->p++;
            return;
        }
        fail(ps, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static void value(parser *ps, lm_tj *out) {
    ws(ps);
    if (++ps->depth > 64) fail(ps, "too deep");
    char c = *ps->p;
    if (ps->failed) {
    } else if (c == '{' || c == '[') {
        container(ps, out, c == '{');
    } else if (c == '"') {
        out->type = LM_TJ_STR;
        out->str = string(ps);
    } else if (strncmp(ps->p, "true", 4) == 0 || strncmp(ps->p, "false", 5) == 0) {
        out->type = LM_TJ_BOOL;
        out->b = c == 't';
        ps->p += out->b ? 4 : 5;
    } else if (strncmp(ps->p, "null", 4) == 0) {
        out->type = LM_TJ_NULL;
        ps->p += 4;
    } else {
        char *end;
        out->type = LM_TJ_NUM;
        out->num = strtod(ps->p, &end);
        if (end == ps->p) fail(ps, "unexpected character");
        ps->p = end;
    }
    ps->depth--;
}

static void fini(lm_tj *v) {
    free(v->str);
    for (size_t i = 0; i < v->n; i++) {
        fini(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
}

lm_tj *lm_tj_parse(const char *text, char *err, size_t err_cap) {
    parser ps = {text ? text : "", err, err_cap, false, 0};
    lm_tj *v = calloc(1, sizeof *v);
    value(&ps, v);
    ws(&ps);
    if (!ps.failed && *ps.p) fail(&ps, "trailing text");
    if (ps.failed) {
        lm_tj_free(v);
        return NULL;
    }
    return v;
}

void lm_tj_free(lm_tj *v) {
    if (v == NULL) return;
    fini(v);
    free(v);
}

const lm_tj *lm_tj_at(const lm_tj *v, const char *path) {
    char part[128];
    while (v && path && *path) {
        size_t len = strcspn(path, ".");
        snprintf(part, sizeof part, "%.*s", (int)len, path);
        path += len + (path[len] == '.');
        const lm_tj *next = NULL;
        if (v->type == LM_TJ_OBJ) {
            for (size_t i = 0; i < v->n && !next; i++)
                if (strcmp(v->keys[i], part) == 0) next = &v->items[i];
        } else if (v->type == LM_TJ_ARR) {
            char *end;
            unsigned long i = strtoul(part, &end, 10);
            if (*end == '\0' && i < v->n) next = &v->items[i];
        }
        v = next;
    }
    return v;
}

double lm_tj_num(const lm_tj *v, const char *path) {
    const lm_tj *x = lm_tj_at(v, path);
    return x && x->type == LM_TJ_NUM ? x->num : -1;
}

const char *lm_tj_str(const lm_tj *v, const char *path) {
    const lm_tj *x = lm_tj_at(v, path);
    return x && x->type == LM_TJ_STR ? x->str : NULL;
}

size_t lm_tj_len(const lm_tj *v, const char *path) {
    const lm_tj *x = lm_tj_at(v, path);
    return x && x->type == LM_TJ_ARR ? x->n : 0;
}

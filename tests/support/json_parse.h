/*
 * json_parse.h - a small JSON reader for tests: parses a document into a
 * tree and looks values up by path ("tasks.FINISHED", "nodes.0.addr").
 * Test plumbing: the services only write JSON (services/common/json.h).
 */
#ifndef LM_TEST_JSON_PARSE_H
#define LM_TEST_JSON_PARSE_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { LM_TJ_NULL, LM_TJ_BOOL, LM_TJ_NUM, LM_TJ_STR, LM_TJ_ARR, LM_TJ_OBJ } lm_tj_type;

typedef struct lm_tj {
    lm_tj_type type;
    bool b;
    double num;
    char *str;          /* LM_TJ_STR, NUL-terminated (\u0000 is not supported) */
    struct lm_tj *items; /* ARR and OBJ */
    char **keys;         /* OBJ */
    size_t n;
} lm_tj;

/* The parsed document, or NULL with the reason in err. Free with lm_tj_free. */
lm_tj *lm_tj_parse(const char *text, char *err, size_t err_cap);
void lm_tj_free(lm_tj *v);

/* The value at a dotted path (object keys, array indexes); NULL when absent. */
const lm_tj *lm_tj_at(const lm_tj *v, const char *path);
/* Shorthands: the number or string at path (-1 / NULL when absent or another type). */
double lm_tj_num(const lm_tj *v, const char *path);
const char *lm_tj_str(const lm_tj *v, const char *path);
/* Elements of the array at path (0 when absent). */
size_t lm_tj_len(const lm_tj *v, const char *path);

#endif

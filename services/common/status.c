/* status.c - the code table and lumen_status constructors. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *lumen_strerror(lumen_code code) {
    switch (code) {
#define LM_CASE_(name, value, text) case LUMEN_##name: return text;
        LUMEN_CODE_MAP(LM_CASE_)
#undef LM_CASE_
    }
    return "unknown status code";
}

const char *lumen_code_name(lumen_code code) {
    switch (code) {
#define LM_CASE_(name, value, text) case LUMEN_##name: return #name;
        LUMEN_CODE_MAP(LM_CASE_)
#undef LM_CASE_
    }
    return "UNKNOWN_CODE";
}

lumen_status lm_status(lumen_code code, const char *fmt, ...) {
    lumen_status st;
    st.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st.msg, sizeof st.msg, fmt, ap);
    va_end(ap);
    return st;
}

lumen_status lm_status_errno(lumen_code code, int errnum, const char *what) {
    return lm_status(code, "%s: %s", what, strerror(errnum));
}

lumen_status lm_status_wrap(lumen_status st, const char *fmt, ...) {
    if (st.code == LUMEN_OK) return st;
    char prefix[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    lumen_status out;
    out.code = st.code;
    size_t n = strlen(prefix);
    if (n > sizeof out.msg - 3) n = sizeof out.msg - 3;
    memcpy(out.msg, prefix, n);
    memcpy(out.msg + n, ": ", 2);
    n += 2;
    size_t rest = strnlen(st.msg, sizeof st.msg);
    if (rest > sizeof out.msg - 1 - n) rest = sizeof out.msg - 1 - n;
    memcpy(out.msg + n, st.msg, rest);
    out.msg[n + rest] = '\0';
    return out;
}

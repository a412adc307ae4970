/* status.h - building lumen_status values inside Lumen. */
#ifndef LM_STATUS_H
#define LM_STATUS_H

#include <lumen/lumen.h>

#if defined(__GNUC__)
#define LM_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define LM_PRINTF(fmt_index, first_arg)
#endif

static inline lumen_status lm_ok(void) {
    lumen_status st;
    st.code = LUMEN_OK;
    st.msg[0] = '\0';
    return st;
}

/* A status with a printf-style message. */
lumen_status lm_status(lumen_code code, const char *fmt, ...) LM_PRINTF(2, 3);

/* A status for a failed system call: "<what>: <strerror(errnum)>". */
lumen_status lm_status_errno(lumen_code code, int errnum, const char *what);

/* Prefix an existing status's message with context ("objstore 1.2.3.4: ..."). */
lumen_status lm_status_wrap(lumen_status st, const char *fmt, ...) LM_PRINTF(2, 3);

#define LM_IS_OK(st) ((st).code == LUMEN_OK)

#endif

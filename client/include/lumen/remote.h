/*
 * remote.h - writing a Lumen function library.
 *
 * A function library is a shared object (.so) of ordinary C functions, each
 * registered under a name with LUMEN_REMOTE. Workers load it from their
 * library path, or fetch it from the object store after a client's
 * lumen_library_upload. Functions run in executor processes supervised by
 * the worker: a crash fails the task, never the worker.
 *
 *   static int most_frequent(lumen_task_ctx *ctx, const lumen_bytes *args,
 *                            size_t nargs, lumen_bytes *out) {
 *       if (nargs != 1) return lumen_task_fail(ctx, "want 1 arg, got %zu", nargs);
 *       out->data = malloc(...);  out->len = ...;   // the runtime frees it
 *       return 0;
 *   }
 *   LUMEN_REMOTE("wordcount.most_frequent", most_frequent);
 */
#ifndef LUMEN_REMOTE_H
#define LUMEN_REMOTE_H

#include <lumen/lumen.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The running task, for error reporting. */
typedef struct lumen_task_ctx lumen_task_ctx;

/*
 * A remote function. args are read-only and valid during the call. On
 * success it returns 0 with *out set to memory from malloc() (or
 * {NULL, 0}), which the runtime frees. On failure it returns non-zero,
 * best through lumen_task_fail, whose message reaches the caller's get.
 */
typedef int (*lumen_remote_fn)(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out);

/* Records the task's error message (printf-style) and returns -1. */
LUMEN_EXPORT int lumen_task_fail(lumen_task_ctx *ctx, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The task's id as 32 hex digits, and which attempt this is (0 = first). */
LUMEN_EXPORT const char *lumen_task_id(const lumen_task_ctx *ctx);
LUMEN_EXPORT unsigned lumen_task_attempt(const lumen_task_ctx *ctx);

/* Provided by the executor that loads the library; called by LUMEN_REMOTE. */
LUMEN_EXPORT void lumen_remote_register(const char *name, lumen_remote_fn fn);

/* Registers fn under name when the library is loaded. */
#define LUMEN_REMOTE(name, fn)                                                    \
    __attribute__((constructor)) static void lumen_register_##fn##_(void) {     \
        lumen_remote_register((name), (fn));                                      \
    }

#ifdef __cplusplus
}
#endif
#endif /* LUMEN_REMOTE_H */

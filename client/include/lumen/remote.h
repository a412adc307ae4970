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
 *
 * An actor class is a constructor making the instance's state from
 * arguments, methods taking that state, and a destructor:
 *
 *   static int counter_new(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs,
 *                          void **state) { *state = calloc(1, sizeof(long)); return 0; }
 *   static int counter_add(lumen_task_ctx *ctx, void *state, const lumen_bytes *args,
 *                          size_t nargs, lumen_bytes *out) { ... }
 *   static void counter_free(void *state) { free(state); }
 *   LUMEN_ACTOR("test.Counter", counter_new, counter_free,
 *               LUMEN_METHOD("add", counter_add), LUMEN_METHOD("get", counter_get));
 *
 * Each actor lives in an executor process of its own: its methods run one
 * at a time, and a crash ends only that actor.
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
 * A remote function. args are read-only and valid during the call; each is
 * followed by a NUL byte not counted in its len, so a text argument can be
 * read as a C string (strtol(args[0].data, ...)). On
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

/* The job the task belongs to, as 32 hex digits: pass it as
 * lumen_connect_opts.job to work in that job from inside the task (call
 * actors, submit tasks). The worker gives its executors the cluster's
 * address and token in LUMEN_ADDRESS and LUMEN_TOKEN. */
LUMEN_EXPORT const char *lumen_task_job(const lumen_task_ctx *ctx);

/* Provided by the executor that loads the library; called by LUMEN_REMOTE. */
LUMEN_EXPORT void lumen_remote_register(const char *name, lumen_remote_fn fn);

/* ------------------------------------------------------------ actor classes */

/* Makes the instance's state (*state, anything; NULL is fine) from the
 * constructor's arguments. Returns 0, or non-zero through lumen_task_fail. */
typedef int (*lumen_actor_new_fn)(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, void **state);

/* A method: like a remote function, with the instance's state. */
typedef int (*lumen_method_fn)(lumen_task_ctx *ctx, void *state, const lumen_bytes *args, size_t nargs,
                               lumen_bytes *out);

/* Frees the state when the actor ends (killed, its job ended). May be NULL. */
typedef void (*lumen_actor_free_fn)(void *state);

typedef struct lumen_method {
    const char *name;
    lumen_method_fn fn;
} lumen_method;

/* Provided by the executor; called by LUMEN_ACTOR. methods[] must outlive
 * the library (LUMEN_ACTOR keeps it static). */
LUMEN_EXPORT void lumen_actor_register(const char *class_name, lumen_actor_new_fn constructor,
                                       lumen_actor_free_fn destructor, const lumen_method *methods,
                                       size_t nmethods);

#define LUMEN_METHOD(name, fn) {(name), (fn)}

/* Registers an actor class when the library is loaded. A statement:
 * end it with a semicolon (it ends in a declaration, so -Wpedantic is quiet). */
#define LUMEN_ACTOR(name, ctor, dtor, ...)                                                    \
    __attribute__((constructor)) static void lumen_register_actor_##ctor##_(void) {           \
        static const lumen_method lumen_methods_[] = {__VA_ARGS__};                           \
        lumen_actor_register((name), (ctor), (dtor), lumen_methods_,                          \
                             sizeof lumen_methods_ / sizeof lumen_methods_[0]);               \
    }                                                                                         \
    struct lumen_registration_

/* Registers fn under name when the library is loaded: LUMEN_REMOTE("lib.f", f); */
#define LUMEN_REMOTE(name, fn)                                                    \
    __attribute__((constructor)) static void lumen_register_##fn##_(void) {     \
        lumen_remote_register((name), (fn));                                      \
    }                                                                             \
    struct lumen_registration_

#ifdef __cplusplus
}
#endif
#endif /* LUMEN_REMOTE_H */

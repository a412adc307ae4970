/*
 * lumen.h - the public API of Lumen, a distributed computing cluster for C.
 *
 * Naming: everything exported starts with lumen_ / LUMEN_. Errors are values:
 * every fallible call returns a lumen_status whose code is LUMEN_OK (0) on
 * success and otherwise carries a human-readable message.
 */
#ifndef LUMEN_LUMEN_H
#define LUMEN_LUMEN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LUMEN_VERSION_MAJOR 0
#define LUMEN_VERSION_MINOR 1
#define LUMEN_VERSION_PATCH 0
#define LUMEN_STR_(x) #x
#define LUMEN_STR(x) LUMEN_STR_(x)
#define LUMEN_VERSION_STRING \
    LUMEN_STR(LUMEN_VERSION_MAJOR) "." LUMEN_STR(LUMEN_VERSION_MINOR) "." LUMEN_STR(LUMEN_VERSION_PATCH)

#if defined(__GNUC__)
#define LUMEN_EXPORT __attribute__((visibility("default")))
#else
#define LUMEN_EXPORT
#endif

/*
 * Status codes. 0..16 are gRPC's codes with the same numbers, so a status
 * that crossed the wire keeps its meaning; Lumen's own start at 100.
 */
#define LUMEN_CODE_MAP(X)                                              \
    X(OK, 0, "ok")                                                     \
    X(CANCELLED, 1, "cancelled")                                       \
    X(UNKNOWN, 2, "unknown error")                                     \
    X(INVALID_ARGUMENT, 3, "invalid argument")                         \
    X(DEADLINE_EXCEEDED, 4, "deadline exceeded")                       \
    X(NOT_FOUND, 5, "not found")                                       \
    X(ALREADY_EXISTS, 6, "already exists")                             \
    X(PERMISSION_DENIED, 7, "permission denied")                       \
    X(RESOURCE_EXHAUSTED, 8, "resource exhausted")                     \
    X(FAILED_PRECONDITION, 9, "failed precondition")                   \
    X(ABORTED, 10, "aborted")                                          \
    X(OUT_OF_RANGE, 11, "out of range")                                \
    X(UNIMPLEMENTED, 12, "unimplemented")                              \
    X(INTERNAL, 13, "internal error")                                  \
    X(UNAVAILABLE, 14, "unavailable")                                  \
    X(DATA_LOSS, 15, "data loss")                                      \
    X(UNAUTHENTICATED, 16, "unauthenticated")                          \
    X(TASK_FAILED, 100, "task failed")                                 \
    X(OBJECT_LOST, 101, "object lost")                                 \
    X(WORKER_DIED, 102, "worker died")                                 \
    X(IO, 103, "I/O error")                                            \
    X(CONFIG, 104, "configuration error")

typedef enum lumen_code {
#define LUMEN_CODE_ENUM_(name, value, text) LUMEN_##name = value,
    LUMEN_CODE_MAP(LUMEN_CODE_ENUM_)
#undef LUMEN_CODE_ENUM_
} lumen_code;

/* An error as a value: a code and what went wrong, in words. */
typedef struct lumen_status {
    lumen_code code;
    char msg[252];
} lumen_status;

/* The fixed description of a code ("deadline exceeded"); never NULL. */
LUMEN_EXPORT const char *lumen_strerror(lumen_code code);

/* The code's symbolic name ("DEADLINE_EXCEEDED"); never NULL. */
LUMEN_EXPORT const char *lumen_code_name(lumen_code code);

#ifdef __cplusplus
}
#endif
#endif /* LUMEN_LUMEN_H */

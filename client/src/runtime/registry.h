/*
 * registry.h - where <lumen/remote.h>'s functions land: the remote
 * functions and actor classes function libraries register when they are
 * loaded, the running task's context (lumen_task_fail & co.), and the
 * loading of libraries. One implementation serves both places user code
 * runs: lumen-executor (a worker's slot) and liblumen's local mode
 * (lumen_connect("local", ...)). A library loaded into an executor that
 * also links liblumen registers with the executor's copy: the executable's
 * definitions come first in symbol lookup.
 *
 * Not thread-safe: libraries are loaded, and looked up, by one thread at a
 * time (the executor's, or under local mode's lock).
 */
#ifndef LM_RUNTIME_REGISTRY_H
#define LM_RUNTIME_REGISTRY_H

#include <stddef.h>

#include <lumen/remote.h>

/* The running task, as remote.h's functions see it. */
struct lumen_task_ctx {
    char id[33];
    char job[33];
    unsigned attempt;
    char *error;    /* lumen_task_fail's message (free it) */
    int fail_errno; /* errno when lumen_task_fail was called: ENOMEM tells a failed allocation */
};

typedef struct lm_actor_class {
    char *name;
    lumen_actor_new_fn constructor;
    lumen_actor_free_fn destructor;
    const lumen_method *methods;
    size_t nmethods;
} lm_actor_class;

/* Registered by name; NULL when unknown. */
lumen_remote_fn lm_registry_fn(const char *name);
const lm_actor_class *lm_registry_class(const char *name);
lumen_method_fn lm_registry_method(const lm_actor_class *cls, const char *name);

/* `unknown function "x" (registered: a, b)` naming every candidate of the
 * kind (what: "function", "actor class"; or, with cls, its methods);
 * malloc'd, NULL when out of memory. */
char *lm_registry_unknown(const char *what, const char *name, const lm_actor_class *cls);

/* dlopens path once (its constructors register); NULL, or dlerror's text. */
const char *lm_registry_load(const char *path);

/* Loads every .so of each colon-separated entry (a directory, in name
 * order, or a .so file); what cannot be loaded is told to warn(arg, msg). */
void lm_registry_load_path(const char *path, void (*warn)(void *arg, const char *msg), void *arg);

/* Frees the registry at exit (libraries stay loaded). */
void lm_registry_free(void);

#endif

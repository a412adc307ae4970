/* registry.c - see registry.h. */
#include "registry.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct registered_fn {
    char *name; /* first, as in lm_actor_class: names are listed generically */
    lumen_remote_fn fn;
} registered_fn;

static registered_fn *fns;
static size_t nfns, fns_cap;
static lm_actor_class *classes;
static size_t nclasses, classes_cap;
static char **loaded; /* paths dlopen'ed, so each library loads once */
static size_t nloaded, loaded_cap;

/* Grows *items (of size bytes each) to hold one more; false when out of memory. */
static bool grow(void **items, size_t n, size_t *cap, size_t size) {
    if (n < *cap) return true;
    size_t want = *cap ? 2 * *cap : 16;
    void *p = realloc(*items, want * size);
    if (p == NULL) return false;
    *items = p;
    *cap = want;
    return true;
}

/* ------------------------------------------------ the API libraries call */

void lumen_remote_register(const char *name, lumen_remote_fn fn) {
    if (name == NULL || fn == NULL) return;
    for (size_t i = 0; i < nfns; i++)
        if (strcmp(fns[i].name, name) == 0) { /* a later library (an upload) replaces it */
            fns[i].fn = fn;
            return;
        }
    char *copy = strdup(name);
    if (copy == NULL || !grow((void **)&fns, nfns, &fns_cap, sizeof *fns)) { /* unknown when called: said then */
        free(copy);
        return;
    }
    fns[nfns++] = (registered_fn){copy, fn};
}

void lumen_actor_register(const char *class_name, lumen_actor_new_fn constructor, lumen_actor_free_fn destructor,
                          const lumen_method *methods, size_t nmethods) {
    if (class_name == NULL || constructor == NULL || (methods == NULL && nmethods > 0)) return;
    lm_actor_class c = {NULL, constructor, destructor, methods, nmethods};
    for (size_t i = 0; i < nclasses; i++)
        if (strcmp(classes[i].name, class_name) == 0) { /* a later library (an upload) replaces it */
            c.name = classes[i].name;
            classes[i] = c;
            return;
        }
    c.name = strdup(class_name);
    if (c.name == NULL || !grow((void **)&classes, nclasses, &classes_cap, sizeof *classes)) {
        free(c.name);
        return;
    }
    classes[nclasses++] = c;
}

int lumen_task_fail(lumen_task_ctx *ctx, const char *fmt, ...) {
    int saved = errno;
    if (ctx == NULL) return -1;
    ctx->fail_errno = saved;
    free(ctx->error);
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&ctx->error, fmt, ap) < 0) ctx->error = NULL;
    va_end(ap);
    return -1;
}

const char *lumen_task_id(const lumen_task_ctx *ctx) { return ctx ? ctx->id : ""; }

unsigned lumen_task_attempt(const lumen_task_ctx *ctx) { return ctx ? ctx->attempt : 0; }

const char *lumen_task_job(const lumen_task_ctx *ctx) { return ctx ? ctx->job : ""; }

/* ------------------------------------------------------------ lookups */

lumen_remote_fn lm_registry_fn(const char *name) {
    for (size_t i = 0; i < nfns; i++)
        if (strcmp(fns[i].name, name) == 0) return fns[i].fn;
    return NULL;
}

const lm_actor_class *lm_registry_class(const char *name) {
    for (size_t i = 0; i < nclasses; i++)
        if (strcmp(classes[i].name, name) == 0) return &classes[i];
    return NULL;
}

lumen_method_fn lm_registry_method(const lm_actor_class *cls, const char *name) {
    for (size_t i = 0; i < cls->nmethods; i++)
        if (cls->methods[i].name != NULL && strcmp(cls->methods[i].name, name) == 0) return cls->methods[i].fn;
    return NULL;
}

/* The i-th name of n items, stride bytes apart, whose first member is a name. */
static const char *name_at(const void *items, size_t stride, size_t i) {
    const char *name = *(char *const *)((const char *)items + i * stride);
    return name != NULL ? name : "?";
}

char *lm_registry_unknown(const char *what, const char *name, const lm_actor_class *cls) {
    const void *items = cls ? (const void *)cls->methods : what[0] == 'f' ? (const void *)fns : (const void *)classes;
    size_t n = cls ? cls->nmethods : what[0] == 'f' ? nfns : nclasses;
    size_t stride = cls ? sizeof *cls->methods : what[0] == 'f' ? sizeof *fns : sizeof *classes;
    const char *known = cls ? cls->name : "registered";
    size_t cap = 64 + strlen(what) + strlen(name) + strlen(known), len = 0;
    for (size_t i = 0; i < n; i++) cap += strlen(name_at(items, stride, i)) + 2;
    char *s = malloc(cap);
    if (s == NULL) return NULL;
    len += (size_t)snprintf(s, cap, "unknown %s \"%s\" (%s: ", what, name, known);
    for (size_t i = 0; i < n; i++) len += (size_t)snprintf(s + len, cap - len, "%s%s", i ? ", " : "", name_at(items, stride, i));
    snprintf(s + len, cap - len, "%s)", n ? "" : "none");
    return s;
}

/* ------------------------------------------------------------ libraries */

const char *lm_registry_load(const char *path) {
    for (size_t i = 0; i < nloaded; i++)
        if (strcmp(loaded[i], path) == 0) return NULL;
    char *copy = strdup(path);
    if (copy == NULL || !grow((void **)&loaded, nloaded, &loaded_cap, sizeof *loaded)) {
        free(copy);
        return "out of memory";
    }
    /* Never closed: its functions may be referenced by atexit handlers of
     * the libraries themselves. */
    if (dlopen(path, RTLD_NOW | RTLD_LOCAL) == NULL) {
        free(copy);
        return dlerror();
    }
    loaded[nloaded++] = copy;
    return NULL;
}

static bool is_library(const char *name) {
    size_t n = strlen(name);
    return n > 3 && strcmp(name + n - 3, ".so") == 0;
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void warnf(void (*warn)(void *, const char *), void *arg, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void warnf(void (*warn)(void *, const char *), void *arg, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (warn != NULL) warn(arg, msg);
}

/* Loads every .so in one directory, in name order (deterministic overrides). */
static void load_dir(const char *dir, void (*warn)(void *, const char *), void *arg) {
    DIR *d = opendir(dir);
    if (d == NULL) {
        warnf(warn, arg, "library directory %s: %s", dir, strerror(errno));
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!is_library(e->d_name) || !grow((void **)&names, n, &cap, sizeof *names)) continue;
        if (asprintf(&names[n], "%s/%s", dir, e->d_name) >= 0) n++;
    }
    closedir(d);
    if (n > 0) qsort(names, n, sizeof *names, compare_names);
    for (size_t i = 0; i < n; i++) {
        const char *err = lm_registry_load(names[i]);
        if (err != NULL) warnf(warn, arg, "cannot load %s: %s", names[i], err);
        free(names[i]);
    }
    free(names);
}

void lm_registry_load_path(const char *path, void (*warn)(void *arg, const char *msg), void *arg) {
    char *copy = strdup(path ? path : ""), *save = NULL;
    for (char *entry = copy ? strtok_r(copy, ":", &save) : NULL; entry != NULL; entry = strtok_r(NULL, ":", &save)) {
        struct stat st;
        if (stat(entry, &st) == 0 && S_ISREG(st.st_mode)) {
            const char *err = lm_registry_load(entry);
            if (err != NULL) warnf(warn, arg, "cannot load %s: %s", entry, err);
        } else {
            load_dir(entry, warn, arg);
        }
    }
    free(copy);
}

void lm_registry_free(void) {
    for (size_t i = 0; i < nclasses; i++) free(classes[i].name);
    free(classes);
    classes = NULL;
    nclasses = classes_cap = 0;
    for (size_t i = 0; i < nfns; i++) free(fns[i].name);
    free(fns);
    fns = NULL;
    nfns = fns_cap = 0;
    for (size_t i = 0; i < nloaded; i++) free(loaded[i]);
    free(loaded);
    loaded = NULL;
    nloaded = loaded_cap = 0;
}

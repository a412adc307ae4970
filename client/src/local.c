/*
 * local.c - lumen_connect("local", ...): the whole API in the calling
 * process, no cluster. Remote functions and actor classes come from the
 * libraries named in lumen_connect_opts.local_libraries (and any
 * lumen_library_upload), registered as in an executor (runtime/registry.h).
 *
 * For unit tests of function libraries and for trying a program without a
 * cluster: same calls, same results and errors. A task runs when it is
 * called (its arguments exist by then: a ref is made before it can be
 * passed), on the caller's thread; its result, or its failure, waits in a
 * table for lumen_get. Actors run their methods one at a time, in call
 * order. What differs from a cluster: a crash takes the process with it
 * (there is no executor to lose), and time and memory limits are not
 * enforced. A task's own client (lumen_connect with .job =
 * lumen_task_job(ctx)) joins the same local job.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"
#include "registry.h"

typedef struct local_obj {
    lumen_status st;
    uint8_t *data; /* len bytes and a NUL */
    size_t len;
} local_obj;

typedef struct local_actor {
    lm_id id;
    const lm_actor_class *cls;
    void *state;
    char *name;
    bool dead;
    lumen_status error; /* why it is dead */
    pthread_mutex_t calls; /* one method at a time, in order */
} local_actor;

struct lumen_local {
    lm_id job;
    pthread_mutex_t mu; /* the tables */
    lm_idmap *objs;     /* local_obj* */
    lm_idmap *actors;   /* local_actor* */
    unsigned clients;   /* the job's own and those that joined it */
    struct lumen_local *next;
};

/* Every local job of the process (joins find theirs); the registry's lock. */
static pthread_mutex_t locals_mu = PTHREAD_MUTEX_INITIALIZER;
static lumen_local *locals;

/* ------------------------------------------------------------- objects */

static void obj_free(local_obj *o) {
    if (o == NULL) return;
    free(o->data);
    free(o);
}

/* A copy of data with a NUL after it. */
static uint8_t *copy_nul(const void *data, size_t len) {
    uint8_t *p = malloc(len + 1);
    if (p == NULL) return NULL;
    if (len > 0) memcpy(p, data, len);
    p[len] = '\0';
    return p;
}

/* Keeps an outcome under id: a value (taken: malloc'd, len + 1 bytes) or an error. */
static lumen_status keep(lumen_local *l, lm_id id, lumen_status st, uint8_t *data, size_t len) {
    local_obj *o = calloc(1, sizeof *o);
    if (o == NULL) {
        free(data);
        return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    }
    *o = (local_obj){st, data, len};
    pthread_mutex_lock(&l->mu);
    obj_free(lm_idmap_remove(l->objs, id));
    lm_idmap_put(l->objs, id, o);
    pthread_mutex_unlock(&l->mu);
    return lm_ok();
}

lumen_status local_put(lumen_client *c, const void *data, size_t len, lumen_ref *out) {
    if (len > 0 && data == NULL) return lm_status(LUMEN_INVALID_ARGUMENT, "a put of %zu bytes at NULL", len);
    uint8_t *copy = copy_nul(data, len);
    if (copy == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory for %zu bytes", len);
    lm_id id = lm_id_random();
    lumen_status st = keep(c->local, id, lm_ok(), copy, len);
    if (LM_IS_OK(st)) *out = id_ref(id);
    return st;
}

/* The value of id (copied, with a NUL), or its error. */
static lumen_status read_obj(lumen_local *l, lm_id id, lumen_bytes *out) {
    char hex[LM_ID_HEX_LEN + 1];
    pthread_mutex_lock(&l->mu);
    local_obj *o = lm_idmap_get(l->objs, id);
    lumen_status st = o == NULL ? lm_status(LUMEN_NOT_FOUND, "object %s is an unknown object", lm_id_to_hex(id, hex))
                                : o->st;
    if (LM_IS_OK(st)) {
        out->data = copy_nul(o->data, o->len);
        out->len = o->len;
        if (out->data == NULL) st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory for %zu bytes", o->len);
    }
    pthread_mutex_unlock(&l->mu);
    return st;
}

lumen_status local_get(lumen_client *c, const lumen_ref *refs, size_t n, lumen_bytes *out) {
    if (n > 0 && (refs == NULL || out == NULL)) return lm_status(LUMEN_INVALID_ARGUMENT, "NULL refs or out");
    memset(out, 0, n * sizeof *out);
    for (size_t i = 0; i < n; i++) {
        lumen_status st = read_obj(c->local, ref_id(refs[i]), &out[i]);
        if (LM_IS_OK(st)) continue;
        for (size_t k = 0; k < i; k++) lumen_bytes_free(&out[k]);
        return n > 1 ? lm_status_wrap(st, "ref %zu", i) : st;
    }
    return lm_ok();
}

void local_ready(lumen_client *c, const lumen_ref *refs, size_t n, int *flags) {
    pthread_mutex_lock(&c->local->mu);
    for (size_t i = 0; i < n; i++) flags[i] = lm_idmap_get(c->local->objs, ref_id(refs[i])) != NULL;
    pthread_mutex_unlock(&c->local->mu);
}

void local_free(lumen_client *c, const lumen_ref *refs, size_t n) {
    pthread_mutex_lock(&c->local->mu);
    for (size_t i = 0; i < n; i++) obj_free(lm_idmap_remove(c->local->objs, ref_id(refs[i])));
    pthread_mutex_unlock(&c->local->mu);
}

/* ------------------------------------------------------------- running */

/* args as the function sees them: values (with their NUL), refs read. The
 * caller frees every data and the array. */
static lumen_status resolve_args(lumen_local *l, const lumen_arg *args, size_t nargs, lumen_bytes **out) {
    lumen_bytes *v = calloc(nargs ? nargs : 1, sizeof *v);
    if (v == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    lumen_status st = lm_ok();
    for (size_t i = 0; i < nargs && LM_IS_OK(st); i++) {
        if (args[i].is_ref) {
            char hex[LM_ID_HEX_LEN + 1];
            st = read_obj(l, ref_id(args[i].ref), &v[i]);
            if (!LM_IS_OK(st)) st = lm_status_wrap(st, "argument %s", lumen_ref_hex(args[i].ref, hex));
        } else if (args[i].len > 0 && args[i].data == NULL) {
            st = lm_status(LUMEN_INVALID_ARGUMENT, "an argument of %zu bytes at NULL", args[i].len);
        } else {
            v[i].data = copy_nul(args[i].data, args[i].len);
            v[i].len = args[i].len;
            if (v[i].data == NULL) st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
        }
    }
    if (!LM_IS_OK(st)) {
        for (size_t i = 0; i < nargs; i++) lumen_bytes_free(&v[i]);
        free(v);
        return st;
    }
    *out = v;
    return lm_ok();
}

static void free_args(lumen_bytes *v, size_t n) {
    for (size_t i = 0; v != NULL && i < n; i++) lumen_bytes_free(&v[i]);
    free(v);
}

typedef enum run_kind { RUN_FN, RUN_CONSTRUCTOR, RUN_METHOD } run_kind;

/* Runs one function, constructor or method as an executor would: its
 * outcome in *st and, for a function or method, its value (NUL-terminated)
 * in *out. */
static void run_one(lumen_local *l, run_kind kind, const void *target, local_actor *a, const char *label, lm_id task,
                    unsigned attempt, const lumen_bytes *args, size_t nargs, lumen_bytes *out, lumen_status *st) {
    lumen_task_ctx ctx = {.attempt = attempt};
    lm_id_to_hex(task, ctx.id);
    lm_id_to_hex(l->job, ctx.job);
    *out = (lumen_bytes){0};
    int rc;
    if (kind == RUN_FN) rc = ((lumen_remote_fn)target)(&ctx, args, nargs, out);
    else if (kind == RUN_METHOD) rc = ((lumen_method_fn)target)(&ctx, a->state, args, nargs, out);
    else rc = a->cls->constructor(&ctx, args, nargs, &a->state);
    if (rc != 0) {
        *st = lm_status(LUMEN_TASK_FAILED, "%s", ctx.error ? ctx.error : "");
        if (ctx.error == NULL) *st = lm_status(LUMEN_TASK_FAILED, "%s failed (returned %d)", label, rc);
        free(out->data);
        *out = (lumen_bytes){0};
    } else if (out->data == NULL && out->len > 0) {
        *st = lm_status(LUMEN_INTERNAL, "%s returned %zu bytes at NULL", label, out->len);
        *out = (lumen_bytes){0};
    } else if (kind != RUN_CONSTRUCTOR) { /* a constructor has no value */
        *st = lm_ok();
        uint8_t *with_nul = realloc(out->data, out->len + 1);
        if (with_nul == NULL) {
            free(out->data);
            *out = (lumen_bytes){0};
            *st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
        } else {
            with_nul[out->len] = '\0';
            out->data = with_nul;
        }
    } else {
        *st = lm_ok();
    }
    free(ctx.error);
}

lumen_status local_call(lumen_client *c, const char *function, const lumen_arg *args, size_t nargs,
                        const lumen_call_opts *opts, lumen_ref *out) {
    lumen_local *l = c->local;
    lm_id task = lm_id_random();
    lm_id result = lm_id_for_return(task, 0);
    pthread_mutex_lock(&locals_mu);
    lumen_remote_fn fn = lm_registry_fn(function);
    char *unknown = fn == NULL ? lm_registry_unknown("function", function, NULL) : NULL;
    pthread_mutex_unlock(&locals_mu);
    lumen_bytes *values = NULL;
    lumen_status st = fn != NULL ? resolve_args(l, args, nargs, &values)
                                 : lm_status(LUMEN_NOT_FOUND, "%s", unknown ? unknown : "unknown function");
    free(unknown);
    lumen_bytes value = {0};
    /* Its own failures again only when asked (a crash ends the process here). */
    uint32_t tries = opts && opts->retry_on_error ? 1 + opts->max_retries : 1;
    for (uint32_t attempt = 0; LM_IS_OK(st) && attempt < tries; attempt++) {
        run_one(l, RUN_FN, (const void *)fn, NULL, function, task, attempt, values, nargs, &value, &st);
        if (st.code != LUMEN_TASK_FAILED || attempt + 1 == tries) break;
        st = lm_ok();
    }
    free_args(values, nargs);
    lumen_status kept = keep(l, result, st, value.data, value.len); /* a failure is kept for its get */
    if (!LM_IS_OK(kept)) return kept;
    *out = id_ref(result);
    return lm_ok();
}

/* ------------------------------------------------------------- actors */

static void actor_free(local_actor *a) {
    if (a == NULL) return;
    if (!a->dead && a->cls->destructor != NULL) a->cls->destructor(a->state);
    pthread_mutex_destroy(&a->calls);
    free(a->name);
    free(a);
}

typedef struct name_search {
    const char *name;
    local_actor *found;
} name_search;

static void match_name(void *arg, lm_id key, void *value) {
    (void)key;
    name_search *ns = arg;
    local_actor *a = value;
    if (ns->found == NULL && !a->dead && strcmp(a->name, ns->name) == 0) ns->found = a;
}

lumen_status local_actor_new(lumen_client *c, const char *class_name, const lumen_arg *args, size_t nargs,
                             const lumen_actor_opts *opts, lumen_actor *out) {
    lumen_local *l = c->local;
    const char *name = opts && opts->name ? opts->name : "";
    pthread_mutex_lock(&locals_mu);
    const lm_actor_class *cls = lm_registry_class(class_name);
    char *unknown = cls == NULL ? lm_registry_unknown("actor class", class_name, NULL) : NULL;
    pthread_mutex_unlock(&locals_mu);
    if (cls == NULL) {
        lumen_status st = lm_status(LUMEN_NOT_FOUND, "%s", unknown ? unknown : "unknown actor class");
        free(unknown);
        return st;
    }
    local_actor *a = calloc(1, sizeof *a);
    if (a == NULL || (a->name = strdup(name)) == NULL) {
        free(a);
        return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    }
    a->id = lm_id_random();
    a->cls = cls;
    pthread_mutex_init(&a->calls, NULL);
    name_search ns = {name, NULL};
    pthread_mutex_lock(&l->mu);
    if (name[0] != '\0') lm_idmap_each(l->actors, match_name, &ns);
    if (ns.found == NULL) lm_idmap_put(l->actors, a->id, a);
    pthread_mutex_unlock(&l->mu);
    if (ns.found != NULL) {
        char hex[LM_ID_HEX_LEN + 1];
        lumen_status st = lm_status(LUMEN_ALREADY_EXISTS, "an actor named \"%s\" already exists (%s)", name,
                                    lm_id_to_hex(ns.found->id, hex));
        a->dead = true; /* never constructed: no destructor */
        actor_free(a);
        return st;
    }
    lumen_bytes *values = NULL;
    lumen_status st = resolve_args(l, args, nargs, &values);
    lumen_bytes none;
    pthread_mutex_lock(&a->calls);
    if (LM_IS_OK(st)) run_one(l, RUN_CONSTRUCTOR, NULL, a, class_name, a->id, 0, values, nargs, &none, &st);
    if (!LM_IS_OK(st)) { /* its calls fail with the constructor's error, as in a cluster */
        char hex[LM_ID_HEX_LEN + 1];
        a->dead = true;
        a->error = lm_status(st.code, "actor %s (%s) could not be created: %s", lm_id_to_hex(a->id, hex), class_name,
                             st.msg);
    }
    pthread_mutex_unlock(&a->calls);
    free_args(values, nargs);
    memcpy(out->id, a->id.bytes, sizeof out->id);
    return lm_ok();
}

lumen_status local_actor_call(lumen_client *c, lumen_actor actor, const char *method, const lumen_arg *args,
                              size_t nargs, lumen_ref *out) {
    lumen_local *l = c->local;
    lm_id id;
    memcpy(id.bytes, actor.id, LM_ID_BYTES);
    lm_id result = lm_id_for_return(lm_id_random(), 0);
    char hex[LM_ID_HEX_LEN + 1];
    pthread_mutex_lock(&l->mu);
    local_actor *a = lm_idmap_get(l->actors, id);
    pthread_mutex_unlock(&l->mu);
    lumen_status st = lm_ok();
    lumen_bytes value = {0};
    if (a == NULL) {
        st = lm_status(LUMEN_NOT_FOUND, "actor %s is unknown", lm_id_to_hex(id, hex));
    } else {
        pthread_mutex_lock(&a->calls); /* held until the call is done: calls run one at a time, in order */
        lumen_method_fn fn = a->dead ? NULL : lm_registry_method(a->cls, method);
        char label[256];
        snprintf(label, sizeof label, "%s.%s", a->cls->name, method);
        lumen_bytes *values = NULL;
        if (a->dead) st = a->error;
        else if (fn == NULL) st = lm_status(LUMEN_NOT_FOUND, "unknown method \"%s\" of %s", method, a->cls->name);
        else st = resolve_args(l, args, nargs, &values);
        if (LM_IS_OK(st)) run_one(l, RUN_METHOD, (const void *)fn, a, label, result, 0, values, nargs, &value, &st);
        free_args(values, nargs);
        pthread_mutex_unlock(&a->calls);
    }
    lumen_status kept = keep(l, result, st, value.data, value.len);
    if (!LM_IS_OK(kept)) return kept;
    *out = id_ref(result);
    return lm_ok();
}

lumen_status local_actor_kill(lumen_client *c, lumen_actor actor) {
    lumen_local *l = c->local;
    lm_id id;
    memcpy(id.bytes, actor.id, LM_ID_BYTES);
    char hex[LM_ID_HEX_LEN + 1];
    pthread_mutex_lock(&l->mu);
    local_actor *a = lm_idmap_get(l->actors, id);
    pthread_mutex_unlock(&l->mu);
    if (a == NULL) return lm_status(LUMEN_NOT_FOUND, "actor %s is unknown", lm_id_to_hex(id, hex));
    pthread_mutex_lock(&a->calls);
    if (!a->dead) {
        if (a->cls->destructor != NULL) a->cls->destructor(a->state);
        a->dead = true;
        a->error = lm_status(LUMEN_ACTOR_DIED, "actor %s (%s) was killed", lm_id_to_hex(id, hex), a->cls->name);
    }
    pthread_mutex_unlock(&a->calls);
    return lm_ok();
}

lumen_status local_actor_get_named(lumen_client *c, const char *name, lumen_actor *out) {
    name_search ns = {name, NULL};
    pthread_mutex_lock(&c->local->mu);
    lm_idmap_each(c->local->actors, match_name, &ns);
    pthread_mutex_unlock(&c->local->mu);
    if (ns.found == NULL) return lm_status(LUMEN_NOT_FOUND, "no actor is named \"%s\"", name);
    memcpy(out->id, ns.found->id.bytes, sizeof out->id);
    return lm_ok();
}

/* ------------------------------------------------------------- libraries */

typedef struct load_errors {
    char first[200];
} load_errors;

static void note_error(void *arg, const char *msg) {
    load_errors *e = arg;
    if (e->first[0] == '\0') snprintf(e->first, sizeof e->first, "%s", msg);
}

lumen_status local_library_upload(lumen_client *c, const char *path) {
    (void)c;
    pthread_mutex_lock(&locals_mu);
    const char *err = lm_registry_load(path);
    lumen_status st = err ? lm_status(LUMEN_IO, "cannot load %s: %s", path, err) : lm_ok();
    pthread_mutex_unlock(&locals_mu);
    return st;
}

/* ------------------------------------------------------------- lifecycle */

static void free_obj_entry(void *arg, lm_id key, void *value) {
    (void)arg, (void)key;
    obj_free(value);
}

static void free_actor_entry(void *arg, lm_id key, void *value) {
    (void)arg, (void)key;
    actor_free(value);
}

bool local_job_known(lm_id job) {
    pthread_mutex_lock(&locals_mu);
    lumen_local *l = locals;
    while (l != NULL && !lm_id_equal(l->job, job)) l = l->next;
    pthread_mutex_unlock(&locals_mu);
    return l != NULL;
}

lumen_status local_connect(lumen_client *c, const lumen_connect_opts *opts) {
    load_errors errors = {{0}};
    pthread_mutex_lock(&locals_mu);
    lumen_local *l = NULL;
    if (c->joined) { /* a task's own client: the job it runs in */
        for (l = locals; l != NULL && !lm_id_equal(l->job, c->job); l = l->next) {
        }
    } else if ((l = calloc(1, sizeof *l)) != NULL) {
        l->job = c->job;
        pthread_mutex_init(&l->mu, NULL);
        l->objs = lm_idmap_new();
        l->actors = lm_idmap_new();
        l->next = locals;
        locals = l;
    }
    if (l != NULL) l->clients++;
    if (opts != NULL && opts->local_libraries != NULL) lm_registry_load_path(opts->local_libraries, note_error, &errors);
    pthread_mutex_unlock(&locals_mu);
    char hex[LM_ID_HEX_LEN + 1];
    if (l == NULL)
        return c->joined ? lm_status(LUMEN_NOT_FOUND, "no local job %s in this process", lm_id_to_hex(c->job, hex))
                         : lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    c->local = l;
    if (errors.first[0] != '\0') {
        local_close(c);
        return lm_status(LUMEN_IO, "local mode: %s", errors.first);
    }
    return lm_ok();
}

void local_close(lumen_client *c) {
    lumen_local *l = c->local;
    if (l == NULL) return;
    c->local = NULL;
    pthread_mutex_lock(&locals_mu);
    bool last = --l->clients == 0;
    for (lumen_local **pp = &locals; last && *pp != NULL; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    pthread_mutex_unlock(&locals_mu);
    if (!last) return;
    lm_idmap_each(l->actors, free_actor_entry, NULL); /* their destructors run, as when a job ends */
    lm_idmap_free(l->actors);
    lm_idmap_each(l->objs, free_obj_entry, NULL);
    lm_idmap_free(l->objs);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

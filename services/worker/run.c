/*
 * run.c - what running a task or an actor call takes on a worker, whoever
 * runs it (a slot thread or the actor host): the function's library
 * fetched once, the arguments fetched into the slot's shared buffer, the
 * limits, and the result kept (inline, or in the worker's object store).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "objclient.h"
#include "worker_internal.h"

/* A deadline for moving `bytes` through an object store: the RPC timeout
 * plus 100 ms per MiB, so big objects are not cut off at 10 s. */
static int64_t io_timeout_ms(const lm_worker *w, uint64_t bytes) {
    return w->cfg->cluster.rpc_timeout_ms + (int64_t)(bytes >> 20) * 100;
}

static lumen_status write_file(const char *path, const void *data, size_t len) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)gettid()) >= (int)sizeof tmp)
        return lm_status(LUMEN_IO, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (fd < 0) return lm_status_errno(LUMEN_IO, errno, tmp);
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, (const uint8_t *)data + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            lumen_status st = lm_status_errno(LUMEN_IO, n < 0 ? errno : ENOSPC, tmp);
            close(fd);
            unlink(tmp);
            return st;
        }
        off += (size_t)n;
    }
    close(fd);
    if (rename(tmp, path) != 0) { /* whole or absent: executors never see half a file */
        lumen_status st = lm_status_errno(LUMEN_IO, errno, path);
        unlink(tmp);
        return st;
    }
    return lm_ok();
}

/* Other slots needing a library while it is fetched wait for that fetch. */
lumen_status worker_ensure_library(lm_worker *w, const Lumen__TaskSpec *spec, char **path) {
    lm_id id;
    if (!lm_id_from_bytes(spec->library_id.data, spec->library_id.len, &id))
        return lm_status(LUMEN_INVALID_ARGUMENT, "library_id must be 16 bytes, got %zu", spec->library_id.len);
    char hex[LM_ID_HEX_LEN + 1];
    lm_id_to_hex(id, hex);
    pthread_mutex_lock(&w->mu);
    library *lib = w->libs;
    while (lib != NULL && !lm_id_equal(lib->id, id)) lib = lib->next;
    while (lib != NULL && lib->fetching) pthread_cond_wait(&w->lib_cond, &w->mu);
    if (lib != NULL && lib->ready) {
        *path = strdup(lib->path);
        pthread_mutex_unlock(&w->mu);
        return *path ? lm_ok() : lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    }
    if (lib == NULL) {
        lib = calloc(1, sizeof *lib);
        if (lib == NULL) {
            pthread_mutex_unlock(&w->mu);
            return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
        }
        lib->id = id;
        lib->next = w->libs;
        w->libs = lib;
    }
    lib->fetching = true;
    pthread_mutex_unlock(&w->mu);

    char file[PATH_MAX];
    snprintf(file, sizeof file, "%s/libs/%s.so", w->run_dir, hex);
    lumen_status st = lm_ok();
    if (spec->library_location == NULL || spec->library_location[0] == '\0') {
        st = lm_status(LUMEN_FAILED_PRECONDITION, "library %s has no location", hex);
    } else {
        void *data = NULL;
        size_t len = 0;
        st = lm_objstore_get(w->cli, spec->library_location, id, false, io_timeout_ms(w, 64u << 20), &data,
                             &len);
        if (LM_IS_OK(st)) st = write_file(file, data, len);
        free(data);
        if (!LM_IS_OK(st)) st = lm_status_wrap(st, "fetching library %s", hex);
    }
    pthread_mutex_lock(&w->mu);
    lib->fetching = false;
    if (LM_IS_OK(st)) {
        lib->path = strdup(file);
        lib->ready = lib->path != NULL;
    }
    pthread_cond_broadcast(&w->lib_cond);
    pthread_mutex_unlock(&w->mu);
    if (LM_IS_OK(st) && (*path = strdup(file)) == NULL) st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    if (LM_IS_OK(st)) lm_info("fetched library %s from %s", hex, spec->library_location);
    return st;
}

/* Where a fetched argument goes: at its offset in the buffer. */
typedef struct arg_place {
    lm_shmbuf *buf;
    uint64_t off;
} arg_place;

static void *place_arg(void *arg, uint64_t size, lumen_status *st) {
    arg_place *p = arg;
    *st = lm_shmbuf_reserve(p->buf, p->off + size);
    return LM_IS_OK(*st) ? p->buf->base + p->off : NULL;
}

lumen_status worker_fetch_args(lm_worker *w, lm_shmbuf *buf, const Lumen__TaskSpec *spec, lumen_bytes *args) {
    /* One reservation for the sizes the scheduler announced; only a hint
     * (the fetches grow the buffer to the real sizes), so its failure is not. */
    uint64_t expect = 0;
    for (size_t i = 0; i < spec->n_args; i++)
        expect += (spec->args[i]->value_case == LUMEN__ARG__VALUE_INLINE ? spec->args[i]->inline_.len
                                                                           : spec->args[i]->size) + 1;
    (void)lm_shmbuf_reserve(buf, expect);
    lumen_status st = lm_ok();
    uint64_t off = 0;
    /* Each argument is followed by a NUL byte (not counted): functions may
     * read a text argument as a C string. */
    for (size_t i = 0; LM_IS_OK(st) && i < spec->n_args; off += args[i].len + 1, i++) {
        const Lumen__Arg *a = spec->args[i];
        if (a->value_case == LUMEN__ARG__VALUE_INLINE) {
            st = lm_shmbuf_reserve(buf, off + a->inline_.len + 1);
            if (LM_IS_OK(st) && a->inline_.len > 0) memcpy(buf->base + off, a->inline_.data, a->inline_.len);
            if (LM_IS_OK(st)) buf->base[off + a->inline_.len] = '\0';
            args[i].len = a->inline_.len;
            continue;
        }
        lm_id id;
        if (a->value_case != LUMEN__ARG__VALUE_REF || !lm_id_from_bytes(a->ref.data, a->ref.len, &id))
            return lm_status(LUMEN_INVALID_ARGUMENT, "argument %zu is neither inline nor a 16-byte ref", i);
        char hex[LM_ID_HEX_LEN + 1];
        if (a->location == NULL || a->location[0] == '\0')
            return lm_status(LUMEN_OBJECT_LOST, "argument %zu (object %s) has no location", i,
                             lm_id_to_hex(id, hex));
        arg_place place = {buf, off};
        lm_id store = {{0}};
        lm_id_from_bytes(a->store_id.data, a->store_id.len, &store); /* absent: any incarnation */
        st = lm_objstore_get_into(w->cli, a->location, id, worker_spec_job(spec), store, true,
                                  io_timeout_ms(w, a->size), place_arg, &place, &args[i].len);
        if (!LM_IS_OK(st)) return lm_status(LUMEN_OBJECT_LOST, "argument %zu: %s", i, st.msg);
        st = lm_shmbuf_reserve(buf, off + args[i].len + 1);
        if (LM_IS_OK(st)) buf->base[off + args[i].len] = '\0';
    }
    if (!LM_IS_OK(st)) return st;
    /* Only now: the buffer may have moved while it grew. */
    off = 0;
    for (size_t i = 0; i < spec->n_args; off += args[i].len + 1, i++) args[i].data = buf->base + off;
    return lm_ok();
}

lumen_status worker_keep_result(lm_worker *w, const Lumen__TaskSpec *spec, lm_id task, const lm_exec_result *res,
                                report *r) {
    if (res->len <= atomic_load(&w->inline_max)) {
        r->inline_data = malloc(res->len ? res->len : 1);
        if (r->inline_data == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
        if (res->len) memcpy(r->inline_data, res->data, res->len);
        r->inline_len = res->len;
        return lm_ok();
    }
    /* A store restarting on its address (as its supervisor does) refuses
     * connections for a moment: the result waits for it within the I/O
     * deadline, since an actor call cannot run again. */
    lm_objstore_put_info info;
    int64_t timeout_ms = io_timeout_ms(w, res->len), deadline = (int64_t)lm_mono_ms() + timeout_ms;
    unsigned backoff = BACKOFF_MIN_MS;
    lumen_status st;
    for (;;) {
        st = lm_objstore_put(w->cli, w->wc->objstore_addr, lm_id_for_return(task, 0), worker_spec_job(spec), res->data,
                             res->len, timeout_ms, &info);
        if (st.code != LUMEN_UNAVAILABLE || (int64_t)lm_mono_ms() + backoff >= deadline || !worker_retry_pause(w, &backoff))
            break;
    }
    if (!LM_IS_OK(st)) return lm_status_wrap(st, "storing the result");
    r->stored = true;
    r->store = lm_id_is_zero(info.store) ? w->objstore_id : info.store;
    r->size = res->len;
    return lm_ok();
}

lumen_status worker_finish_run(lm_worker *w, const Lumen__TaskSpec *spec, lm_id task, lm_exec_result *res,
                               report *r) {
    r->log = lm_exec_result_take_log(res, &r->log_len);
    r->crashed = res->crashed;
    lumen_status st = res->status;
    if (LM_IS_OK(st)) st = worker_keep_result(w, spec, task, res, r);
    lm_exec_result_free(res);
    return st;
}

int64_t worker_timeout_ms(const lm_worker *w, const Lumen__TaskSpec *spec) {
    return spec->timeout_ms ? (int64_t)spec->timeout_ms : w->wc->task_timeout_ms;
}

uint64_t worker_memory_limit(const lm_worker *w, const Lumen__TaskSpec *spec) {
    return spec->memory_limit ? spec->memory_limit : w->wc->task_memory_limit;
}


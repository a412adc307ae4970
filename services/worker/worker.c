/* worker.c - see worker.h. */
#include "clock.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "executor_pool.h"
#include "health.h"
#include "id.h"
#include "input_limits.h"
#include "log.h"
#include "node_agent.h"
#include "objclient.h"
#include "rpc.h"
#include "scheduler.pb-c.h"
#include "shmbuf.h"
#include "worker.pb-c.h"
#include "worker_internal.h"
#include "process.h"

#define DEFAULT_INLINE_RESULT_MAX (100u << 10)

void worker_wait_until(pthread_cond_t *cond, pthread_mutex_t *mu, int64_t until) {
    if (until == 0) {
        pthread_cond_wait(cond, mu);
        return;
    }
    struct timespec ts = {until / 1000, (long)(until % 1000) * 1000000L};
    pthread_cond_timedwait(cond, mu, &ts);
}

bool worker_retry_pause(lm_worker *w, unsigned *backoff_ms) {
    pthread_mutex_lock(&w->mu);
    if (!w->stopping) worker_wait_until(&w->work, &w->mu, (int64_t)lm_mono_ms() + *backoff_ms);
    bool stop = w->stopping;
    pthread_mutex_unlock(&w->mu);
    *backoff_ms = *backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *backoff_ms * 2;
    return !stop;
}

/* ---------------------------------------------------------------- slots */

static bool slot_cancelled(slot *s) {
    pthread_mutex_lock(&s->w->mu);
    bool c = s->cancelled;
    pthread_mutex_unlock(&s->w->mu);
    return c;
}

static void run_task(slot *s, const Lumen__TaskSpec *spec, lm_id task, report *r) {
    lm_worker *w = s->w;
    if (spec->actor_id.len > 0) { /* an actor's constructor */
        actor_host_create(w, spec, task, r);
        return;
    }
    lumen_bytes *args = calloc(spec->n_args ? spec->n_args : 1, sizeof *args);
    char *lib = NULL;
    lumen_status st = args ? lm_ok() : lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    if (LM_IS_OK(st)) st = worker_fetch_args(w, &s->args, spec, args);
    if (LM_IS_OK(st) && spec->library_id.len > 0) st = worker_ensure_library(w, spec, &lib);
    if (LM_IS_OK(st) && slot_cancelled(s)) st = lm_status(LUMEN_CANCELLED, "%s was cancelled", spec->function);
    if (LM_IS_OK(st)) {
        const char *libs[1] = {lib};
        lm_exec_task t = {
            .task_id = task,
            .job_id = worker_spec_job(spec),
            .kind = LM_EXEC_TASK,
            .function = spec->function,
            .args = args,
            .nargs = spec->n_args,
            .args_buf = &s->args,
            .attempt = spec->attempt,
            .libraries = libs,
            .nlibraries = lib ? 1 : 0,
            .timeout_ms = worker_timeout_ms(w, spec),
            .memory_limit = worker_memory_limit(w, spec),
        };
        lm_exec_result res;
        lm_exec_pool_run(w->pool, &t, &res);
        st = worker_finish_run(w, spec, task, &res, r);
    }
    free(args);
    free(lib);
    r->status = st;
}

/* Takes the next queued task, waiting; NULL when stopping. */
static queued *next_task(slot *s) {
    lm_worker *w = s->w;
    pthread_mutex_lock(&w->mu);
    while (!w->stopping && w->head == NULL) pthread_cond_wait(&w->work, &w->mu);
    queued *q = w->stopping ? NULL : w->head;
    if (q != NULL) {
        w->head = q->next;
        if (w->head == NULL) w->tail = NULL;
        w->queued_count--;
        s->active = true;
        s->cancelled = false;
        s->task = q->id;
        s->job = worker_spec_job(q->spec);
    }
    pthread_mutex_unlock(&w->mu);
    return q;
}

static void *slot_main(void *arg) {
    lm_thread_name("slot");
    slot *s = arg;
    lm_worker *w = s->w;
    for (queued *q; (q = next_task(s)) != NULL;) {
        report *r = calloc(1, sizeof *r);
        if (r != NULL) {
            r->task = q->id;
            r->job = worker_spec_job(q->spec);
            run_task(s, q->spec, q->id, r);
            if (!LM_IS_OK(r->status)) {
                lm_info("task %s (%s) failed: %s", lm_id_to_hex(q->id, (char[LM_ID_HEX_LEN + 1]){0}),
                        q->spec->function, r->status.msg);
                free(r->inline_data);
                r->inline_data = NULL;
                r->stored = false;
            }
            worker_report_push(w, r);
        } else {
            lm_error("out of memory: task dropped");
        }
        pthread_mutex_lock(&w->mu);
        s->active = false;
        pthread_mutex_unlock(&w->mu);
        lumen__task_spec__free_unpacked(q->spec, NULL);
        free(q);
    }
    return NULL;
}

/* ------------------------------------------------------------- handlers */

/* Takes the tasks of *head cancelled before they came out of the list, and
 * out of the ring. mu held. */
static queued *take_cancelled_early(lm_worker *w, queued **head) {
    queued *taken = NULL;
    for (queued **pp = head; w->cancelled_early_n > 0 && *pp != NULL;) {
        queued *q = *pp;
        size_t i = 0;
        while (i < CANCELLED_EARLY && !lm_id_equal(w->cancelled_early[i], q->id)) i++;
        if (i == CANCELLED_EARLY) {
            pp = &q->next;
            continue;
        }
        w->cancelled_early[i] = (lm_id){{0}};
        w->cancelled_early_n--;
        *pp = q->next;
        q->next = taken;
        taken = q;
    }
    return taken;
}

static void run_tasks(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    lm_worker *w = ctx;
    /* Specs are taken from the request rather than copied (as the scheduler
     * does): each is its own allocation, and taken entries are left NULL,
     * which freeing the request skips. */
    Lumen__RunTasksRequest *req = (Lumen__RunTasksRequest *)msg;
    if (!worker_epoch_ok(w, req->epoch)) {
        lm_rpc_fail(call, LUMEN_FAILED_PRECONDITION, "RunTasks from scheduler incarnation %llu, replaced by %llu",
                    (unsigned long long)req->epoch, (unsigned long long)atomic_load(&w->epoch));
        return;
    }
    lumen_status limit = lm_limits_batch(req->n_tasks, "RunTasks");
    if (!LM_IS_OK(limit)) {
        lm_warn("RunTasks from %s refused: %s", lm_rpc_call_peer(call), limit.msg);
        lm_rpc_fail_status(call, limit);
        return;
    }
    queued *head = NULL, **tail = &head;
    uint32_t accepted = 0;
    size_t dropped = 0;
    lumen_status why_dropped = lm_ok();
    for (size_t i = 0; i < req->n_tasks; i++) {
        Lumen__TaskSpec *spec = req->tasks[i];
        lm_id id;
        lumen_status st = lm_limits_id(spec->task_id, "task_id", &id);
        if (!LM_IS_OK(st)) { /* no id to report a failure under: logged below, once */
            if (dropped++ == 0) why_dropped = lm_status_wrap(st, "task %zu", i);
            continue;
        }
        st = lm_limits_spec(spec);
        if (!LM_IS_OK(st)) {
            worker_report_status(w, id, st);
            continue;
        }
        queued *q = calloc(1, sizeof *q);
        if (q == NULL) {
            worker_report_status(w, id, lm_status(LUMEN_RESOURCE_EXHAUSTED, "the worker is out of memory"));
            continue;
        }
        q->spec = spec;
        req->tasks[i] = NULL;
        q->id = id;
        *tail = q;
        tail = &q->next;
        accepted++;
    }
    if (dropped > 0)
        lm_warn("RunTasks from %s: %zu task(s) dropped; the first: %s", lm_rpc_call_peer(call), dropped,
                why_dropped.msg);
    pthread_mutex_lock(&w->mu);
    bool stopping = w->stopping;
    queued *cancelled = take_cancelled_early(w, &head);
    if (!stopping && head != NULL) {
        if (w->tail) w->tail->next = head;
        else w->head = head;
        for (queued *q = head; q; q = q->next) w->tail = q;
        for (queued *q = head; q; q = q->next) w->queued_count++;
        pthread_cond_broadcast(&w->work);
    }
    pthread_mutex_unlock(&w->mu);
    for (queued *q = cancelled, *next; q; q = next) {
        next = q->next;
        worker_report_status(w, q->id, lm_status(LUMEN_CANCELLED, "%s was cancelled", q->spec->function));
        lumen__task_spec__free_unpacked(q->spec, NULL);
        free(q);
    }
    if (stopping) {
        for (queued *q = head, *next; q; q = next) {
            next = q->next;
            lumen__task_spec__free_unpacked(q->spec, NULL);
            free(q);
        }
        lm_rpc_fail(call, LUMEN_UNAVAILABLE, "the worker is stopping");
        return;
    }
    Lumen__RunTasksReply reply = LUMEN__RUN_TASKS_REPLY__INIT;
    reply.accepted = accepted;
    lm_rpc_reply(call, &reply.base);
}

static bool cancel_one(lm_worker *w, lm_id id);

bool worker_epoch_ok(lm_worker *w, uint64_t epoch) {
    uint64_t mine = atomic_load(&w->epoch);
    while (epoch > mine && !atomic_compare_exchange_weak(&w->epoch, &mine, epoch)) {
    }
    return epoch == 0 || epoch >= mine;
}

static void cancel_task(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    lm_worker *w = ctx;
    const Lumen__CancelTaskRequest *req = (const Lumen__CancelTaskRequest *)msg;
    lm_id id;
    if (!lm_id_from_bytes(req->task_id.data, req->task_id.len, &id)) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "task_id must be 16 bytes, got %zu", req->task_id.len);
        return;
    }
    if (!worker_epoch_ok(w, req->epoch)) {
        lm_rpc_fail(call, LUMEN_FAILED_PRECONDITION, "CancelTask from a replaced scheduler incarnation");
        return;
    }
    Lumen__CancelTaskReply reply = LUMEN__CANCEL_TASK_REPLY__INIT;
    reply.found = cancel_one(w, id);
    lm_rpc_reply(call, &reply.base);
}

/* Drops task id, queued (reported CANCELLED) or running (its executor is
 * told to stop); one not here yet is dropped when it comes. */
static bool cancel_one(lm_worker *w, lm_id id) {
    bool found = false;
    queued *removed = NULL;
    pthread_mutex_lock(&w->mu);
    for (queued **pp = &w->head; *pp != NULL; pp = &(*pp)->next) {
        if (!lm_id_equal((*pp)->id, id)) continue;
        removed = *pp;
        *pp = removed->next;
        if (w->tail == removed) {
            w->tail = NULL;
            for (queued *q = w->head; q; q = q->next) w->tail = q;
        }
        w->queued_count--;
        break;
    }
    for (int i = 0; removed == NULL && i < w->nslots; i++)
        if (w->slots[i].active && lm_id_equal(w->slots[i].task, id)) {
            w->slots[i].cancelled = true;
            found = true;
        }
    if (removed == NULL && !found) { /* not here yet, or done: dropped if it comes */
        lm_id *slot = &w->cancelled_early[w->cancelled_early_next++ % CANCELLED_EARLY];
        if (lm_id_is_zero(*slot)) w->cancelled_early_n++;
        *slot = id;
    }
    pthread_mutex_unlock(&w->mu);
    if (removed != NULL) {
        worker_report_status(w, id, lm_status(LUMEN_CANCELLED, "%s was cancelled", removed->spec->function));
        lumen__task_spec__free_unpacked(removed->spec, NULL);
        free(removed);
        found = true;
    } else if (found) {
        lm_exec_pool_cancel(w->pool, id); /* a task still fetching its arguments sees the flag */
    }
    return found;
}

static const lm_rpc_method_impl worker_methods[] = {
    {"RunTasks", LM_RPC_UNARY, run_tasks},
    {"CancelTask", LM_RPC_UNARY, cancel_task},
    {"CallActor", LM_RPC_UNARY, actor_host_call},
    {"StopActor", LM_RPC_UNARY, actor_host_stop},
    {NULL, 0, NULL},
};

/* ----------------------------------------------------- joining the cluster */

static void sample_load(void *arg, lm_node_load *load) {
    lm_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    unsigned active = 0;
    for (int i = 0; i < w->nslots; i++) active += w->slots[i].active;
    unsigned busy = active + w->queued_count;
    load->slots_free = busy >= (unsigned)w->nslots ? 0 : (unsigned)w->nslots - busy;
    load->running = active;
    pthread_mutex_unlock(&w->mu);
}

/* What runs or waits here, and the actors hosted, for a registration. */
static void holdings(void *arg, lm_node_holdings *out) {
    lm_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    size_t n = w->queued_count + (size_t)w->nslots;
    out->tasks = calloc(n ? n : 1, sizeof *out->tasks);
    out->task_jobs = calloc(n ? n : 1, sizeof *out->task_jobs);
    if (out->tasks == NULL || out->task_jobs == NULL) n = 0; /* none told: they may run twice, no worse */
    for (queued *q = w->head; n > 0 && q != NULL; q = q->next) {
        out->task_jobs[out->ntasks] = worker_spec_job(q->spec);
        out->tasks[out->ntasks++] = q->id;
    }
    for (int i = 0; n > 0 && i < w->nslots; i++)
        if (w->slots[i].active && !w->slots[i].cancelled) {
            out->task_jobs[out->ntasks] = w->slots[i].job;
            out->tasks[out->ntasks++] = w->slots[i].task;
        }
    actor_host_list(w, &out->actors, &out->incarnations, &out->nactors);
    pthread_mutex_unlock(&w->mu);
}

static void on_registered(void *arg, const lm_node_registration *reg) {
    lm_worker *w = arg;
    atomic_store(&w->inline_max, reg->inline_result_max ? reg->inline_result_max : DEFAULT_INLINE_RESULT_MAX);
    atomic_store(&w->epoch, reg->epoch);
    /* A scheduler (maybe a new one) is there now: results waiting for it
     * go at once, not after a backoff grown while it was away. */
    pthread_mutex_lock(&w->mu);
    w->backoff_ms = 0;
    w->retry_at_ms = 0;
    pthread_cond_broadcast(&w->report_cond);
    pthread_mutex_unlock(&w->mu);
    /* Tasks it placed elsewhere while we were away (no task runs twice at
     * once), or whose job ended meanwhile. */
    for (size_t i = 0; i < reg->ndrop; i++) cancel_one(w, reg->drop[i]);
    if (reg->ndrop > 0) lm_warn("dropped %zu task(s) the scheduler ran elsewhere or whose job ended meanwhile", reg->ndrop);
}

/* The scheduler gave our work to others (it thought us dead): what is
 * queued or running here is dropped, so no task runs twice at once; our
 * actors live elsewhere now. */
static void on_declared_dead(void *arg) {
    lm_worker *w = arg;
    queued *dropped;
    lm_id *running = calloc((size_t)w->nslots, sizeof *running);
    int nrunning = 0;
    pthread_mutex_lock(&w->mu);
    dropped = w->head;
    w->head = w->tail = NULL;
    w->queued_count = 0;
    for (int i = 0; i < w->nslots; i++)
        if (w->slots[i].active) {
            w->slots[i].cancelled = true;
            if (running != NULL) running[nrunning++] = w->slots[i].task;
        }
    pthread_mutex_unlock(&w->mu);
    for (queued *q = dropped, *next; q; q = next) {
        next = q->next;
        lumen__task_spec__free_unpacked(q->spec, NULL);
        free(q);
    }
    for (int i = 0; i < nrunning; i++) lm_exec_pool_cancel(w->pool, running[i]);
    free(running);
    actor_host_stop_all(w);
}

/* Finds the object store's node id (retrying until it answers), then
 * starts the node agent. */
static void *join_main(void *arg) {
    lm_thread_name("joiner");
    lm_worker *w = arg;
    unsigned backoff = BACKOFF_MIN_MS;
    for (int tries = 0;; tries++) {
        lumen_status st = lm_health_check(w->cli, w->wc->objstore_addr, w->cfg->cluster.rpc_timeout_ms, NULL,
                                          &w->objstore_id);
        if (LM_IS_OK(st)) break;
        if (tries % 10 == 0) lm_warn("object store %s: %s (retrying)", w->wc->objstore_addr, st.msg);
        if (!worker_retry_pause(w, &backoff)) return NULL;
    }
    lm_node_agent_opts ao = {
        .rpc = w->cli,
        .scheduler_addr = w->cfg->cluster.scheduler_addr,
        .rpc_timeout_ms = w->cfg->cluster.rpc_timeout_ms,
        .node_id = w->node_id,
        .kind = "worker",
        .addr = w->addr,
        .slots = (uint32_t)w->nslots,
        .objstore_id = w->objstore_id,
        .objstore_addr = w->wc->objstore_addr,
        .sample = sample_load,
        .sample_arg = w,
        .holdings = holdings,
        .registered = on_registered,
        .declared_dead = on_declared_dead,
        .registered_arg = w,
    };
    lm_node_agent *agent = NULL;
    lumen_status st = lm_node_agent_start(&ao, &agent);
    if (!LM_IS_OK(st)) lm_error("cannot start the node agent: %s", st.msg);
    pthread_mutex_lock(&w->mu);
    w->agent = agent;
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---------------------------------------------------------- start, stop */

/* "host:port" others reach us at: advertise (a bare host takes the bound
 * port), else the listen address, with a wildcard host replaced by our
 * hostname. */
static lumen_status advertise_addr(const lm_worker_config *wc, int port, char *out, size_t cap) {
    char host[256];
    uint16_t p = 0;
    const char *text = wc->advertise[0] ? wc->advertise : wc->listen;
    lumen_status st = lm_parse_addr(text, LM_CONFIG_HOST_OK | LM_CONFIG_PORT0, host, sizeof host, &p);
    if (!LM_IS_OK(st)) return st;
    if (wc->advertise[0] == '\0' || p == 0) p = (uint16_t)port;
    if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) {
        if (gethostname(host, sizeof host) != 0) return lm_status_errno(LUMEN_INTERNAL, errno, "gethostname");
        host[sizeof host - 1] = '\0';
    }
    snprintf(out, cap, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, p);
    return lm_ok();
}

/* The executor binary: configured, else lumen-executor next to us. */
static lumen_status executor_path(const lm_worker_config *wc, char *out, size_t cap) {
    if (wc->executor[0]) {
        snprintf(out, cap, "%s", wc->executor);
        return lm_ok();
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) return lm_status_errno(LUMEN_INTERNAL, errno, "readlink /proc/self/exe");
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash != NULL) *slash = '\0';
    if (snprintf(out, cap, "%s/lumen-executor", self) >= (int)cap)
        return lm_status(LUMEN_CONFIG, "path too long: %s/lumen-executor", self);
    return lm_ok();
}

/* Tasks that call actors or submit tasks connect to the cluster from the
 * executor: they find it, the token and the TLS files in their environment
 * (the client library reads these variables). */
static lumen_status executor_env(lm_worker *w) {
    const lm_cluster_config *cc = &w->cfg->cluster;
    const struct {
        const char *name, *value;
    } vars[] = {
        {"LUMEN_ADDRESS", cc->scheduler_addr}, {"LUMEN_TOKEN", cc->token}, {"LUMEN_TLS_CA", cc->tls_ca},
        {"LUMEN_TLS_CERT", cc->tls_cert},      {"LUMEN_TLS_KEY", cc->tls_key},
    };
    size_t nvars = sizeof vars / sizeof vars[0], n = 0;
    w->exec_env = calloc(nvars + 1, sizeof *w->exec_env);
    if (w->exec_env == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < nvars; i++) {
        if (vars[i].value == NULL || vars[i].value[0] == '\0') continue;
        if (asprintf(&w->exec_env[n], "%s=%s", vars[i].name, vars[i].value) < 0) {
            w->exec_env[n] = NULL;
            return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
        }
        n++;
    }
    return lm_ok();
}

static lumen_status make_dir(const char *path) {
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) { /* mkdir -p */
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return lm_status_errno(LUMEN_IO, errno, buf);
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return lm_status_errno(LUMEN_IO, errno, buf);
    return lm_ok();
}

static lumen_status prepare_run_dir(lm_worker *w) {
    if (w->wc->run_dir[0]) {
        w->run_dir = strdup(w->wc->run_dir);
    } else {
        const char *tmp = getenv("TMPDIR");
        char templ[PATH_MAX];
        snprintf(templ, sizeof templ, "%s/lumen-worker-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        if (mkdtemp(templ) == NULL) return lm_status_errno(LUMEN_IO, errno, templ);
        w->run_dir = strdup(templ);
        w->own_run_dir = true;
    }
    if (w->run_dir == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    char libs[PATH_MAX];
    snprintf(libs, sizeof libs, "%s/libs", w->run_dir);
    lumen_status st = make_dir(w->run_dir);
    return LM_IS_OK(st) ? make_dir(libs) : st;
}

/* Removes the cached libraries (and the run dir when it is ours). */
static void clean_run_dir(lm_worker *w) {
    if (w->run_dir == NULL) return;
    for (library *l = w->libs; l; l = l->next)
        if (l->path) unlink(l->path);
    if (w->own_run_dir) {
        char libs[PATH_MAX];
        snprintf(libs, sizeof libs, "%s/libs", w->run_dir);
        rmdir(libs);
        rmdir(w->run_dir);
    }
}

lumen_status lm_worker_start(const lm_config *cfg, lm_worker **out) {
    *out = NULL;
    lm_worker *w = calloc(1, sizeof *w);
    if (w == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    w->cfg = cfg;
    w->wc = &cfg->worker;
    w->node_id = lm_id_random();
    atomic_init(&w->inline_max, DEFAULT_INLINE_RESULT_MAX);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    w->nslots = w->wc->slots > 0 ? w->wc->slots : cpus > 0 ? (int)cpus : 1;
    pthread_mutex_init(&w->mu, NULL);
    lm_cond_init_monotonic(&w->work);
    lm_cond_init_monotonic(&w->lib_cond);
    lm_cond_init_monotonic(&w->report_cond);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "TaskDone", &w->task_done);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "ActorDied", &w->actor_died);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "WaitObjects", &w->wait_objects);
    lm_cond_init_monotonic(&w->actors_gone);
    w->health.role = "worker";
    w->health.node_id = w->node_id;
    atomic_init(&w->health.serving, false);
    w->slots = calloc((size_t)w->nslots, sizeof *w->slots);
    for (int i = 0; w->slots != NULL && i < w->nslots; i++) lm_shmbuf_init(&w->slots[i].args, "lumen-args");

    const lm_cluster_config *cc = &cfg->cluster;
    lm_rpc_tls tls = {cc->tls_cert, cc->tls_key, cc->tls_ca};
    char exe[PATH_MAX];
    lumen_status st = w->slots ? prepare_run_dir(w) : lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    if (LM_IS_OK(st)) st = executor_path(w->wc, exe, sizeof exe);
    if (LM_IS_OK(st)) st = executor_env(w);
    if (LM_IS_OK(st) && (w->executor_path = strdup(exe)) == NULL) st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    if (LM_IS_OK(st)) {
        lm_exec_pool_opts po = {.executor_path = exe, .library_path = w->wc->library_path, .slots = w->nslots,
                                .env = (const char *const *)w->exec_env};
        st = lm_exec_pool_new(&po, &w->pool);
    }
    if (LM_IS_OK(st)) {
        lm_rpc_client_opts co = {.token = cc->token, .tls = tls};
        st = lm_rpc_client_new(&co, &w->cli);
    }
    if (LM_IS_OK(st)) {
        lm_rpc_server_opts so = {.addr = w->wc->listen, .token = cc->token, .max_message_bytes = LM_LIMIT_WORKER_MESSAGE_BYTES,
                                 .tls = tls};
        st = lm_rpc_server_new(&so, &w->srv);
    }
    if (LM_IS_OK(st)) st = lm_rpc_server_add_service(w->srv, &lumen__worker__descriptor, worker_methods, w);
    if (LM_IS_OK(st)) st = lm_health_add_service(w->srv, &w->health);
    for (int i = 0; LM_IS_OK(st) && i < w->nslots; i++) {
        w->slots[i].w = w; /* set: the thread runs and is joined */
        if (pthread_create(&w->slots[i].thread, NULL, slot_main, &w->slots[i]) != 0) {
            w->slots[i].w = NULL;
            st = lm_status(LUMEN_INTERNAL, "cannot start slot thread %d", i);
        }
    }
    if (LM_IS_OK(st)) {
        w->reporter_started = pthread_create(&w->reporter, NULL, worker_reporter_main, w) == 0;
        if (!w->reporter_started) st = lm_status(LUMEN_INTERNAL, "cannot start the reporter thread");
    }
    if (LM_IS_OK(st)) st = lm_rpc_server_start(w->srv);
    if (LM_IS_OK(st)) st = advertise_addr(w->wc, lm_rpc_server_port(w->srv), w->addr, sizeof w->addr);
    if (LM_IS_OK(st)) {
        w->joiner_started = pthread_create(&w->joiner, NULL, join_main, w) == 0;
        if (!w->joiner_started) st = lm_status(LUMEN_INTERNAL, "cannot start the join thread");
    }
    if (!LM_IS_OK(st)) {
        lm_worker_free(w);
        return st;
    }
    atomic_store(&w->health.serving, true);
    lm_info("worker %s serving on %s with %d slots (object store %s, run dir %s)", w->addr, w->wc->listen,
            w->nslots, w->wc->objstore_addr, w->run_dir);
    *out = w;
    return lm_ok();
}

const char *lm_worker_addr(const lm_worker *w) { return w->addr; }

void lm_worker_free(lm_worker *w) {
    if (w == NULL) return;
    atomic_store(&w->health.serving, false);
    pthread_mutex_lock(&w->mu);
    w->stopping = true; /* RunTasks and new actors are refused from now on */
    pthread_cond_broadcast(&w->work);
    pthread_mutex_unlock(&w->mu);
    /* Before the server's shutdown, which waits for every call to be
     * answered: actors answer their queued calls as they stop. */
    actor_host_stop_all(w);
    if (w->srv) lm_rpc_server_shutdown(w->srv, 0);
    if (w->joiner_started) pthread_join(w->joiner, NULL);
    lm_node_agent_free(w->agent); /* heartbeats stop */

    lm_exec_pool_shutdown(w->pool); /* running tasks end with WORKER_DIED */
    for (int i = 0; w->slots && i < w->nslots; i++) {
        if (w->slots[i].w) pthread_join(w->slots[i].thread, NULL);
        lm_shmbuf_fini(&w->slots[i].args);
    }
    /* What never started is reported too, so the scheduler can place it
     * elsewhere at once. */
    while (w->head) {
        queued *q = w->head;
        w->head = q->next;
        worker_report_status(w, q->id, lm_status(LUMEN_WORKER_DIED, "the worker stopped before running it"));
        lumen__task_spec__free_unpacked(q->spec, NULL);
        free(q);
    }
    if (w->reporter_started) {
        pthread_mutex_lock(&w->mu);
        w->reporter_stop = true;
        pthread_cond_broadcast(&w->report_cond);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->reporter, NULL);
    }
    lm_rpc_server_free(w->srv);
    lm_rpc_client_free(w->cli); /* a TaskDone still in flight is cancelled: its batch is requeued */
    lm_exec_pool_free(w->pool);
    worker_report_free(w->reports);
    clean_run_dir(w);
    for (library *l = w->libs, *next; l; l = next) {
        next = l->next;
        free(l->path);
        free(l);
    }
    free(w->run_dir);
    free(w->slots);
    for (size_t i = 0; w->exec_env != NULL && w->exec_env[i] != NULL; i++) free(w->exec_env[i]);
    free(w->exec_env);
    free(w->executor_path);
    pthread_cond_destroy(&w->actors_gone);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->work);
    pthread_cond_destroy(&w->lib_cond);
    pthread_cond_destroy(&w->report_cond);
    free(w);
}

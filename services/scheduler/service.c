/*
 * service.c - the scheduler's RPC face: the lumen.Scheduler methods (but
 * the jobs' and actors', in jobs.c and actors.c) decode their call, take
 * `mu`, let the state's modules decide, release it, then send what they put
 * in the outbox. Also the resolver's answers and the nodes' watches.
 *
 * Locking: `mu` guards the state. Calls are answered only after it is
 * released (an answer may wait for the call's on_cancel, which takes `mu`);
 * no RPC starts under it (outbox.h). Nothing under `mu` waits for Redis:
 * records go through the write-behind, lookups through the resolver.
 */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "input_limits.h"
#include "log.h"
#include "objstore.pb-c.h"
#include "rpc.h"
#include "sched_internal.h"
#include "worker.pb-c.h"

static void on_request_done(void *arg, lumen_status st, ProtobufCMessage *reply) {
    if (!LM_IS_OK(st)) lm_warn("%s failed: %s", (const char *)arg, st.msg);
    lm_rpc_message_free(reply);
}

/* The method each request kind calls, and what a failure is logged as. */
static const struct {
    const ProtobufCServiceDescriptor *service;
    const char *method, *what;
} request_targets[] = {
    [SCHED_RUN_TASKS] = {&lumen__worker__descriptor, "RunTasks", "RunTasks"},
    [SCHED_STOP_ACTOR] = {&lumen__worker__descriptor, "StopActor", "StopActor"},
    [SCHED_CANCEL_TASK] = {&lumen__worker__descriptor, "CancelTask", "cancelling a task of an ended job"},
    [SCHED_RELEASE_JOB] = {&lumen__object_store__descriptor, "ReleaseJob", "object store cleanup (ReleaseJob)"},
    [SCHED_DELETE_OBJECTS] = {&lumen__object_store__descriptor, "Delete", "object store cleanup (Delete)"},
};
#define REQUEST_KINDS (sizeof request_targets / sizeof request_targets[0])

static lm_rpc_method request_methods[REQUEST_KINDS];
static pthread_once_t request_methods_once = PTHREAD_ONCE_INIT;

static void request_methods_find(void) {
    for (size_t i = 0; i < REQUEST_KINDS; i++)
        if (!lm_rpc_method_find(request_targets[i].service, request_targets[i].method, &request_methods[i]))
            lm_fatal("no method %s in the protocol", request_targets[i].method);
}

static void on_run_tasks_done(void *arg, lumen_status st, ProtobufCMessage *reply) {
    dispatch_batch *batch = arg;
    scheduler *s = batch->s;
    lm_rpc_message_free(reply);
    if (!LM_IS_OK(st)) {
        outbox out = {0};
        pthread_mutex_lock(&s->mu);
        dispatch_outcome(s, batch, st, &out);
        pthread_mutex_unlock(&s->mu);
        sched_outbox_send(s, &out);
    }
    dispatch_batch_free(batch);
}

void sched_outbox_send(scheduler *s, outbox *o) {
    pthread_once(&request_methods_once, request_methods_find);
    int64_t timeout_ms = s->cfg->cluster.rpc_timeout_ms;
    for (size_t i = 0; i < o->nrequests; i++) {
        sched_request *r = &o->requests[i];
        const char *what = request_targets[r->kind].what;
        lm_rpc_method m = request_methods[r->kind];
        lm_rpc_done_fn done = r->kind == SCHED_RUN_TASKS ? on_run_tasks_done : on_request_done;
        void *arg = r->kind == SCHED_RUN_TASKS ? (void *)r->batch : (void *)what;
        lumen_status st = lm_rpc_unary_async_packed(s->rpc, r->addr, m, r->bytes, r->len, timeout_ms, done, arg);
        r->bytes = NULL; /* the call's, sent or not */
        if (!LM_IS_OK(st)) {
            lm_warn("cannot send %s to %s: %s", what, r->addr, st.msg);
            if (r->kind == SCHED_RUN_TASKS) on_run_tasks_done(r->batch, st, NULL); /* the tasks go back in line */
        }
    }
    for (size_t i = 0; i < o->n; i++) {
        answer *a = &o->answers[i];
        if (a->reply != NULL) {
            lm_rpc_reply(a->call, a->reply);
            a->reply_free(a->reply);
        } else {
            lm_rpc_fail_status(a->call, a->st);
        }
        if (a->after != NULL) a->after(a->after_arg);
    }
    sched_outbox_clear(o);
}

/* The resolver's answer: where the stores' directory says obj is. */
void sched_on_resolved(void *arg, lm_id id, const lm_id *stores, size_t n) {
    scheduler *s = arg;
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    objects_found(s, id, stores, n, &out);
    sched_dispatch(s, &out);
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(s, &out);
}

static void handle_register(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    const Lumen__RegisterNodeRequest *req = (const Lumen__RegisterNodeRequest *)msg;
    const Lumen__NodeInfo *info = req->node;
    lm_id id;
    if (info == NULL || !id_field(info->node_id, &id) || info->addr == NULL || info->addr[0] == '\0' ||
        info->kind == NULL || (strcmp(info->kind, "worker") != 0 && strcmp(info->kind, "objstore") != 0)) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "RegisterNode needs node_id, addr and kind worker|objstore");
        return;
    }
    lumen_status limit = lm_limits_batch(req->n_held_tasks, "RegisterNode held_tasks");
    if (LM_IS_OK(limit)) limit = lm_limits_batch(req->n_actors, "RegisterNode actors");
    if (!LM_IS_OK(limit)) {
        lm_rpc_fail_status(call, limit);
        return;
    }
    outbox out = {0};
    id_vec drop = {0};
    pthread_mutex_lock(&s->mu);
    snode *n = node_register(s, id, req, &drop, &out);
    bool store_joined = !n->is_worker;
    pthread_mutex_unlock(&s->mu);
    /* A placeholder looked up while this store was not known here yet (a
     * restart) found it in the directory, but no live store: again now. */
    if (store_joined) sched_resolver_lookup_watched(s->resolver);
    sched_outbox_send(s, &out);

    char h[LM_ID_HEX_LEN + 1];
    lm_info("%s %s joined (%s, %u slots%s)", info->kind, info->addr, hex(id, h), info->slots,
            req->n_held_tasks ? ", holding tasks" : "");
    Lumen__RegisterNodeReply reply = LUMEN__REGISTER_NODE_REPLY__INIT;
    reply.heartbeat_interval_ms = (uint32_t)s->cfg->scheduler.heartbeat_interval_ms;
    reply.inline_result_max = s->cfg->scheduler.inline_result_max;
    reply.epoch = s->epoch;
    ProtobufCBinaryData *drops = calloc(drop.n ? drop.n : 1, sizeof *drops);
    for (size_t i = 0; drops != NULL && i < drop.n; i++) drops[i] = id_bytes(&drop.ids[i]);
    reply.n_drop_tasks = drops != NULL ? drop.n : 0;
    reply.drop_tasks = drops;
    lm_rpc_reply(call, &reply.base);
    free(drops);
    free(drop.ids);
}

/* A node's open WatchNode call: answered when its lease ends, or taken as
 * the node's death when it is cancelled first (the node's connection broke). */
#define WATCH_LEASE_MS 30000

typedef struct node_watch {
    scheduler *s;
    lm_rpc_call *call;
    lm_id node;
    uint64_t ends_ms; /* monotonic */
    bool done;        /* answered, or being answered */
} node_watch;

static void watch_free(void *arg) { free(arg); }

static void watch_reply_free(ProtobufCMessage *m) { free(m); }

/* Ends a watch with OK (its lease is over, or a newer one replaces it). mu held. */
static void watch_end(node_watch *w, outbox *out) {
    w->done = true;
    Lumen__WatchNodeReply *reply = malloc(sizeof *reply);
    lumen__watch_node_reply__init(reply);
    reply->lease_ms = WATCH_LEASE_MS;
    sched_outbox_add(out, (answer){w->call, &reply->base, watch_reply_free, lm_ok(), watch_free, w});
}

static void on_watch_cancel(lm_rpc_call *call, void *arg) {
    node_watch *w = arg;
    scheduler *s = w->s;
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    bool mine = !w->done;
    snode *n = mine ? lm_idmap_get(s->nodes, w->node) : NULL;
    if (mine) w->done = true;
    if (n != NULL && n->watch == w) n->watch = NULL;
    else n = NULL;
    if (n != NULL && s->stopping) n = NULL; /* our own shutdown cancelled it */
    if (n != NULL) {
        node_lost(s, n, "its connection to the scheduler broke", &out);
        sched_dispatch(s, &out);
    }
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(s, &out);
    if (!mine) return; /* the answer under way frees it */
    lm_rpc_fail(call, LUMEN_CANCELLED, "the watch was cancelled");
    free(w);
}

static void handle_watch(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    const Lumen__WatchNodeRequest *req = (const Lumen__WatchNodeRequest *)msg;
    lm_id id;
    if (!id_field(req->node_id, &id)) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "WatchNode needs a 16-byte node_id");
        return;
    }
    node_watch *w = calloc(1, sizeof *w);
    if (w == NULL) {
        lm_rpc_fail(call, LUMEN_RESOURCE_EXHAUSTED, "the scheduler is out of memory");
        return;
    }
    *w = (node_watch){s, call, id, sched_now_ms(s) + WATCH_LEASE_MS, false};
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    snode *n = lm_idmap_get(s->nodes, id);
    if (n == NULL || !n->alive) {
        sched_outbox_fail(&out, call, lm_status(LUMEN_NOT_FOUND, "register the node before watching it"));
        free(w);
    } else if (!lm_rpc_call_on_cancel(call, on_watch_cancel, w)) {
        sched_outbox_fail(&out, call, lm_status(LUMEN_CANCELLED, "the watch was cancelled"));
        free(w);
    } else {
        if (n->watch != NULL) watch_end(n->watch, &out);
        n->watch = w;
    }
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(s, &out);
}

/* Answers the watches whose lease ended (the monitor calls it). mu held. */
void watches_renew(scheduler *s, outbox *out) {
    uint64_t now = sched_now_ms(s);
    for (size_t i = 0; i < s->node_list.n; i++) {
        snode *n = s->node_list.items[i];
        if (n->watch != NULL && (now >= n->watch->ends_ms || !n->alive || s->stopping)) {
            watch_end(n->watch, out);
            n->watch = NULL;
        }
    }
}

static void handle_heartbeat(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    const Lumen__HeartbeatRequest *req = (const Lumen__HeartbeatRequest *)msg;
    lm_id id;
    Lumen__HeartbeatReply reply = LUMEN__HEARTBEAT_REPLY__INIT;
    if (!id_field(req->node_id, &id)) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "Heartbeat needs a 16-byte node_id");
        return;
    }
    pthread_mutex_lock(&s->mu);
    snode *n = lm_idmap_get(s->nodes, id);
    /* Unknown (the scheduler restarted), registered with another
     * incarnation, or declared dead: register again. */
    reply.declared_dead = n != NULL && !n->alive;
    reply.reregister = n == NULL || !n->alive || (req->epoch != 0 && req->epoch != s->epoch);
    if (!reply.reregister) {
        n->last_beat_ms = sched_now_ms(s);
        n->bytes_used = req->bytes_used;
        n->slots_free = req->slots_free;
        lm_node_record rec;
        node_record(n, &rec);
        sched_writer_node_beat(s->writer, &rec);
    }
    pthread_mutex_unlock(&s->mu);
    lm_rpc_reply(call, &reply.base);
}

static void handle_submit(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    /* The specs are taken from the request instead of copied: each is a
     * separate allocation, and NULL entries are skipped when it is freed. */
    Lumen__SubmitTasksRequest *req = (Lumen__SubmitTasksRequest *)msg;
    size_t n = req->n_tasks;
    lumen_status limit = lm_limits_batch(n, "SubmitTasks");
    if (!LM_IS_OK(limit)) {
        lm_rpc_fail_status(call, limit);
        return;
    }
    if (req->epoch != 0 && req->epoch != s->epoch) { /* meant for another incarnation: all or nothing */
        lm_rpc_fail(call, LUMEN_FAILED_PRECONDITION,
                    "the scheduler restarted (incarnation %llu, the batch was for %llu): send the job again",
                    (unsigned long long)s->epoch, (unsigned long long)req->epoch);
        return;
    }
    Lumen__Status *statuses = calloc(n ? n : 1, sizeof *statuses);
    Lumen__Status **status_ptrs = calloc(n ? n : 1, sizeof *status_ptrs);
    char (*messages)[sizeof(((lumen_status *)0)->msg)] = calloc(n ? n : 1, sizeof *messages);
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < n; i++) {
        Lumen__TaskSpec *spec = req->tasks[i];
        req->tasks[i] = NULL;
        lumen_status st = sched_admit(s, spec, req->resubmit, &out);
        lumen__status__init(&statuses[i]);
        statuses[i].code = st.code;
        memcpy(messages[i], st.msg, sizeof messages[i]);
        statuses[i].message = st.code ? messages[i] : (char *)"";
        status_ptrs[i] = &statuses[i];
    }
    sched_dispatch(s, &out);
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(s, &out);
    Lumen__SubmitTasksReply reply = LUMEN__SUBMIT_TASKS_REPLY__INIT;
    reply.n_results = n;
    reply.results = status_ptrs;
    lm_rpc_reply(call, &reply.base);
    free(statuses);
    free(status_ptrs);
    free(messages);
}

/* What a task wrote goes to Redis behind, like its record (the writer holds
 * it to LM_LIMIT_TASK_LOG_BYTES); a task that wrote nothing costs nothing. */
static void record_log(scheduler *s, const Lumen__TaskResult *r) {
    lm_id id;
    if (r->log.len > 0 && id_field(r->task_id, &id)) sched_writer_task_log(s->writer, id, r->log.data, r->log.len);
}

static void handle_task_done(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    const Lumen__TaskDoneRequest *req = (const Lumen__TaskDoneRequest *)msg;
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    /* A result in a store that has not (re)registered yet (we just
     * restarted): the worker sends the batch again a little later, when
     * the store's address is known, instead of the result being lost. */
    for (size_t i = 0; i < req->n_results; i++) {
        lm_id store;
        if (!id_field(req->results[i]->objstore_node_id, &store) || lm_idmap_get(s->nodes, store) != NULL) continue;
        pthread_mutex_unlock(&s->mu);
        char h[LM_ID_HEX_LEN + 1];
        lm_rpc_fail(call, LUMEN_UNAVAILABLE, "object store %s has not registered yet", hex(store, h));
        return;
    }
    lm_id node = {{0}};
    id_field(req->node_id, &node); /* clients report failed actor calls without one */
    for (size_t i = 0; i < req->n_results; i++) task_done(s, node, req->results[i], &out);
    sched_dispatch(s, &out);
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(s, &out);
    for (size_t i = 0; i < req->n_results; i++) record_log(s, req->results[i]);
    Lumen__TaskDoneReply reply = LUMEN__TASK_DONE_REPLY__INIT;
    lm_rpc_reply(call, &reply.base);
}

static void on_wait_cancel(lm_rpc_call *call, void *arg) {
    waiter *w = arg;
    scheduler *s = w->s;
    pthread_mutex_lock(&s->mu);
    bool mine = waits_cancelled(s, w);
    pthread_mutex_unlock(&s->mu);
    if (mine) lm_rpc_fail(call, LUMEN_CANCELLED, "the wait was cancelled by its caller");
}

static void handle_wait(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    const Lumen__WaitObjectsRequest *req = (const Lumen__WaitObjectsRequest *)msg;
    size_t n = req->n_object_ids;
    lumen_status limit = lm_limits_batch(n, "WaitObjects");
    if (!LM_IS_OK(limit)) {
        lm_rpc_fail_status(call, limit);
        return;
    }
    waiter *w = waiter_new(s, call, n);
    if (w == NULL) {
        lm_rpc_fail(call, LUMEN_RESOURCE_EXHAUSTED, "the scheduler is out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (!id_field(req->object_ids[i], &w->ids[i])) {
            waiter_unref(w);
            lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "object id %zu is not 16 bytes", i);
            return;
        }
    }
    w->park_unknown = req->park_unknown;
    /* num_ready 0 or wait_ms 0 asks for the states as they are, without waiting. */
    w->need = req->num_ready > n ? n : req->num_ready;
    if (req->wait_ms == 0) w->need = 0;
    w->until_ms = sched_now_ms(s) + req->wait_ms;
    bool has_job = id_field(req->job_id, &w->job);
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    if (req->job_id.len > 0 && !(has_job && jobs_current(s, w->job, req->epoch))) {
        sched_outbox_fail(&out, call, jobs_unknown(w->job));
        waiter_unref(w);
    } else if (waits_settled(s, w)) {
        waiter_answer(s, w, &out);
    } else if (!lm_rpc_call_on_cancel(call, on_wait_cancel, w)) {
        w->done = true;
        sched_outbox_fail(&out, call, lm_status(LUMEN_CANCELLED, "wait cancelled"));
        waiter_unref(w);
    } else {
        waits_park(s, w);
    }
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(s, &out);
}

static void handle_cluster_info(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    (void)msg;
    scheduler *s = ctx;
    pthread_mutex_lock(&s->mu);
    size_t n = s->node_list.n;
    Lumen__NodeInfo *infos = calloc(n ? n : 1, sizeof *infos);
    Lumen__NodeInfo **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    char **addrs = calloc(n ? n : 1, sizeof *addrs);
    lm_id *ids = calloc(n ? n : 1, sizeof *ids);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        snode *node = s->node_list.items[i];
        if (!node->alive) continue;
        lumen__node_info__init(&infos[k]);
        ids[k] = node->id;
        addrs[k] = strdup(node->addr);
        infos[k].node_id = id_bytes(&ids[k]);
        infos[k].kind = node->is_worker ? (char *)"worker" : (char *)"objstore";
        infos[k].addr = addrs[k];
        infos[k].slots = node->slots;
        infos[k].memory_limit = node->memory_limit;
        ptrs[k] = &infos[k];
        k++;
    }
    pthread_mutex_unlock(&s->mu);
    Lumen__ClusterInfoReply reply = LUMEN__CLUSTER_INFO_REPLY__INIT;
    reply.n_nodes = k;
    reply.nodes = ptrs;
    reply.inline_result_max = s->cfg->scheduler.inline_result_max;
    reply.put_replicas = (uint32_t)s->cfg->scheduler.put_replicas;
    reply.epoch = s->epoch;
    lm_rpc_reply(call, &reply.base);
    for (size_t i = 0; i < k; i++) free(addrs[i]);
    free(addrs);
    free(ids);
    free(infos);
    free(ptrs);
}

static void handle_free(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    const Lumen__FreeObjectsRequest *req = (const Lumen__FreeObjectsRequest *)msg;
    lm_id job;
    bool has_job = id_field(req->job_id, &job);
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    objects_free(s, has_job ? &job : NULL, req->object_ids, req->n_object_ids, &out);
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(s, &out);
    Lumen__FreeObjectsReply reply = LUMEN__FREE_OBJECTS_REPLY__INIT;
    lm_rpc_reply(call, &reply.base);
}

static const lm_rpc_method_impl scheduler_methods[] = {
    {"RegisterNode", LM_RPC_UNARY, handle_register},
    {"Heartbeat", LM_RPC_UNARY, handle_heartbeat},
    {"WatchNode", LM_RPC_UNARY, handle_watch},
    {"WatchJob", LM_RPC_UNARY, jobs_handle_watch},
    {"SubmitTasks", LM_RPC_UNARY, handle_submit},
    {"TaskDone", LM_RPC_UNARY, handle_task_done},
    {"WaitObjects", LM_RPC_UNARY, handle_wait},
    {"GetClusterInfo", LM_RPC_UNARY, handle_cluster_info},
    {"FreeObjects", LM_RPC_UNARY, handle_free},
    {"StartJob", LM_RPC_UNARY, jobs_handle_start},
    {"EndJob", LM_RPC_UNARY, jobs_handle_end},
    {"CreateActor", LM_RPC_UNARY, actors_handle_create},
    {"GetActor", LM_RPC_UNARY, actors_handle_get},
    {"KillActor", LM_RPC_UNARY, actors_handle_kill},
    {"ActorDied", LM_RPC_UNARY, actors_handle_died},
    {NULL, 0, NULL},
};

lumen_status scheduler_add_service(scheduler *s, lm_rpc_server *srv) {
    return lm_rpc_server_add_service(srv, &lumen__scheduler__descriptor, scheduler_methods, s);
}

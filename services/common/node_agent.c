/* node_agent.c - see node_agent.h. */
#include "clock.h"
#include "node_agent.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "scheduler.pb-c.h"
#include "process.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
/* The scheduler answers a watch within its lease (30 s); this covers it. */
#define WATCH_DEADLINE_MS (60 * 1000)

/* The open WatchNode call's state, shared by the agent and the call in
 * flight: the call's completion runs on the RPC client's thread (the
 * client cancels it when it is freed, and the scheduler then sees the node
 * go). */
typedef struct watch {
    atomic_int refs; /* the agent's, plus the call in flight's */
    pthread_mutex_t mu;
    bool in_flight, stopping;
    void (*broken)(void *arg); /* the agent's: the call failed */
    void *broken_arg;
    lm_rpc_client *rpc;
    char *scheduler_addr;
    lm_rpc_method method;
    lm_id node_id;
} watch;

struct lm_node_agent {
    lm_node_agent_opts opts; /* strings below are the agent's copies */
    lm_rpc_client *rpc;      /* the agent's own: a connection no other call queues on */
    char *scheduler_addr, *kind, *addr, *objstore_addr;
    lm_rpc_method register_method, heartbeat_method;
    watch *watch;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stopping;
    bool registered_once;
    bool probing;      /* the watch broke or a beat failed: beat again soon */
    bool wake;         /* end the current nap now */
    uint32_t interval_ms;
    uint64_t epoch;    /* of the scheduler we registered with */
};

/* Sleeps ms or until the agent is stopped; false when stopped. */
static bool nap(lm_node_agent *a, uint32_t ms) {
    struct timespec until = lm_timespec_in(CLOCK_REALTIME, ms);
    pthread_mutex_lock(&a->mu);
    while (!a->stopping && !a->wake)
        if (pthread_cond_timedwait(&a->cond, &a->mu, &until) != 0) break;
    a->wake = false;
    bool go_on = !a->stopping;
    pthread_mutex_unlock(&a->mu);
    return go_on;
}

static void holdings_free(lm_node_holdings *h) {
    free(h->tasks);
    free(h->task_jobs);
    free(h->actors);
    free(h->incarnations);
    memset(h, 0, sizeof *h);
}

static lumen_status register_once(lm_node_agent *a) {
    lm_node_holdings held = {0};
    if (a->opts.holdings != NULL) a->opts.holdings(a->opts.registered_arg, &held);
    ProtobufCBinaryData *tasks = calloc(held.ntasks ? 2 * held.ntasks : 1, sizeof *tasks); /* then their jobs */
    Lumen__HostedActor *actors = calloc(held.nactors ? held.nactors : 1, sizeof *actors);
    Lumen__HostedActor **actor_ptrs = calloc(held.nactors ? held.nactors : 1, sizeof *actor_ptrs);
    if (tasks == NULL || actors == NULL || actor_ptrs == NULL) {
        free(tasks);
        free(actors);
        free(actor_ptrs);
        holdings_free(&held);
        return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < held.ntasks; i++) {
        tasks[i] = (ProtobufCBinaryData){LM_ID_BYTES, held.tasks[i].bytes};
        if (held.task_jobs != NULL)
            tasks[held.ntasks + i] = (ProtobufCBinaryData){LM_ID_BYTES, held.task_jobs[i].bytes};
    }
    for (size_t i = 0; i < held.nactors; i++) {
        lumen__hosted_actor__init(&actors[i]);
        actors[i].actor_id = (ProtobufCBinaryData){LM_ID_BYTES, held.actors[i].bytes};
        actors[i].incarnation = held.incarnations[i];
        actor_ptrs[i] = &actors[i];
    }
    Lumen__NodeInfo node = LUMEN__NODE_INFO__INIT;
    node.node_id.data = a->opts.node_id.bytes;
    node.node_id.len = LM_ID_BYTES;
    node.kind = a->kind;
    node.addr = a->addr;
    node.slots = a->opts.slots;
    node.memory_limit = a->opts.memory_limit;
    if (!lm_id_is_zero(a->opts.objstore_id)) {
        node.objstore_id.data = a->opts.objstore_id.bytes;
        node.objstore_id.len = LM_ID_BYTES;
    }
    node.objstore_addr = a->objstore_addr ? a->objstore_addr : (char *)"";
    Lumen__RegisterNodeRequest req = LUMEN__REGISTER_NODE_REQUEST__INIT;
    req.node = &node;
    req.n_held_tasks = held.ntasks;
    req.held_tasks = tasks;
    req.n_held_task_jobs = held.task_jobs != NULL ? held.ntasks : 0;
    req.held_task_jobs = tasks + held.ntasks;
    req.n_actors = held.nactors;
    req.actors = actor_ptrs;
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_unary(a->rpc, a->scheduler_addr, a->register_method, &req.base, &out,
                                   a->opts.rpc_timeout_ms);
    free(tasks);
    free(actors);
    free(actor_ptrs);
    holdings_free(&held);
    if (!LM_IS_OK(st)) return st;
    Lumen__RegisterNodeReply *reply = (Lumen__RegisterNodeReply *)out;
    a->interval_ms = reply->heartbeat_interval_ms ? reply->heartbeat_interval_ms : 1000;
    a->epoch = reply->epoch;
    lm_id *drop = calloc(reply->n_drop_tasks ? reply->n_drop_tasks : 1, sizeof *drop);
    size_t ndrop = 0;
    for (size_t i = 0; drop != NULL && i < reply->n_drop_tasks; i++)
        if (lm_id_from_bytes(reply->drop_tasks[i].data, reply->drop_tasks[i].len, &drop[ndrop])) ndrop++;
    lm_node_registration reg = {a->interval_ms, reply->inline_result_max, reply->epoch, drop, ndrop};
    if (a->opts.registered != NULL) a->opts.registered(a->opts.registered_arg, &reg);
    free(drop);
    lm_rpc_message_free(out);
    pthread_mutex_lock(&a->mu);
    a->registered_once = true;
    a->probing = false;
    pthread_mutex_unlock(&a->mu);
    return lm_ok();
}

/* One heartbeat; false when the scheduler wants the node to register again. */
static bool heartbeat_once(lm_node_agent *a) {
    lm_node_load load = {0};
    if (a->opts.sample != NULL) a->opts.sample(a->opts.sample_arg, &load);
    Lumen__HeartbeatRequest req = LUMEN__HEARTBEAT_REQUEST__INIT;
    req.node_id.data = a->opts.node_id.bytes;
    req.node_id.len = LM_ID_BYTES;
    req.slots_free = load.slots_free;
    req.running = load.running;
    req.bytes_used = load.bytes_used;
    req.epoch = a->epoch;
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_unary(a->rpc, a->scheduler_addr, a->heartbeat_method, &req.base, &out,
                                   a->opts.rpc_timeout_ms);
    pthread_mutex_lock(&a->mu);
    bool was_probing = a->probing;
    a->probing = !LM_IS_OK(st);
    pthread_mutex_unlock(&a->mu);
    if (!LM_IS_OK(st)) {
        if (!was_probing) lm_warn("heartbeat to %s failed: %s", a->scheduler_addr, st.msg);
        return st.code != LUMEN_NOT_FOUND;
    }
    bool again = ((Lumen__HeartbeatReply *)out)->reregister;
    if (((Lumen__HeartbeatReply *)out)->declared_dead) {
        lm_warn("the scheduler declared this node dead; dropping its work and registering again");
        if (a->opts.declared_dead != NULL) a->opts.declared_dead(a->opts.registered_arg);
    }
    lm_rpc_message_free(out);
    return !again;
}

static void watch_unref(watch *w) {
    if (atomic_fetch_sub(&w->refs, 1) > 1) return;
    pthread_mutex_destroy(&w->mu);
    free(w->scheduler_addr);
    free(w);
}

static void watch_start_locked(watch *w);

static void watch_done(void *arg, lumen_status st, ProtobufCMessage *reply) {
    watch *w = arg;
    lm_rpc_message_free(reply);
    pthread_mutex_lock(&w->mu);
    w->in_flight = false;
    /* A lease that ran its course is renewed at once; after a failure the
     * agent's next beat tries again (no spinning on a scheduler that is down). */
    if (LM_IS_OK(st) && !w->stopping) watch_start_locked(w);
    /* The scheduler may be gone: look for its return. Under w->mu, so the
     * agent (which sets stopping under it before it goes) is still there. */
    if (!LM_IS_OK(st) && !w->stopping) w->broken(w->broken_arg);
    pthread_mutex_unlock(&w->mu);
    watch_unref(w);
}

static void watch_start_locked(watch *w) {
    if (w->in_flight || w->stopping) return;
    Lumen__WatchNodeRequest req = LUMEN__WATCH_NODE_REQUEST__INIT;
    req.node_id = (ProtobufCBinaryData){LM_ID_BYTES, w->node_id.bytes};
    atomic_fetch_add(&w->refs, 1);
    w->in_flight = true;
    lumen_status st = lm_rpc_unary_async(w->rpc, w->scheduler_addr, w->method, &req.base, WATCH_DEADLINE_MS,
                                         watch_done, w);
    if (!LM_IS_OK(st)) {
        w->in_flight = false;
        atomic_fetch_sub(&w->refs, 1); /* never the last: the agent holds one */
    }
}

/* Opens the watch if none is open (each beat: it recovers from failures). */
static void watch_ensure(lm_node_agent *a) {
    pthread_mutex_lock(&a->watch->mu);
    watch_start_locked(a->watch);
    pthread_mutex_unlock(&a->watch->mu);
}

/* The watch's call failed: the next beat comes soon, and then more often
 * until the scheduler answers. Runs on the RPC client's thread, while the
 * agent lives (lm_node_agent_free stops the watch before freeing it). */
static void watch_broken(void *arg) {
    lm_node_agent *a = arg;
    pthread_mutex_lock(&a->mu);
    a->probing = true;
    a->wake = true;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->mu);
}

static watch *watch_new(const lm_node_agent *a) {
    watch *w = calloc(1, sizeof *w);
    if (w == NULL) return NULL;
    atomic_init(&w->refs, 1);
    pthread_mutex_init(&w->mu, NULL);
    w->rpc = a->rpc;
    w->scheduler_addr = strdup(a->scheduler_addr);
    w->node_id = a->opts.node_id;
    w->broken = watch_broken;
    w->broken_arg = (void *)a;
    lm_rpc_method_find(&lumen__scheduler__descriptor, "WatchNode", &w->method);
    return w;
}

/* How long until the next beat: the interval, or while probing for a
 * scheduler that went away a short pause that grows to it. */
static uint32_t next_beat_ms(lm_node_agent *a, uint32_t *probe_ms) {
    pthread_mutex_lock(&a->mu);
    bool probing = a->probing;
    pthread_mutex_unlock(&a->mu);
    if (!probing) {
        *probe_ms = BACKOFF_MIN_MS;
        return a->interval_ms;
    }
    uint32_t ms = *probe_ms < a->interval_ms ? *probe_ms : a->interval_ms;
    *probe_ms = *probe_ms * 2;
    return ms;
}

static void *agent_main(void *arg) {
    lm_thread_name("node-agent");
    lm_node_agent *a = arg;
    uint32_t backoff = BACKOFF_MIN_MS;
    for (;;) {
        lumen_status st = register_once(a);
        if (!LM_IS_OK(st)) {
            lm_warn("cannot register with the scheduler: %s (retrying in %u ms)", st.msg, backoff);
            if (!nap(a, backoff)) return NULL;
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
            continue;
        }
        lm_info("registered with the scheduler at %s as %s %s (incarnation %llu)", a->scheduler_addr, a->kind,
                a->addr, (unsigned long long)a->epoch);
        backoff = BACKOFF_MIN_MS;
        if (a->watch != NULL) watch_ensure(a);
        uint32_t probe_ms = BACKOFF_MIN_MS;
        while (nap(a, next_beat_ms(a, &probe_ms))) {
            if (!heartbeat_once(a)) break; /* the scheduler forgot us: register again */
            if (a->watch != NULL) watch_ensure(a);
        }
        pthread_mutex_lock(&a->mu);
        bool stopping = a->stopping;
        pthread_mutex_unlock(&a->mu);
        if (stopping) return NULL;
    }
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

lumen_status lm_node_agent_start(const lm_node_agent_opts *opts, lm_node_agent **out) {
    *out = NULL;
    if (opts->rpc == NULL || opts->scheduler_addr == NULL || opts->kind == NULL || opts->addr == NULL)
        return lm_status(LUMEN_INVALID_ARGUMENT, "node agent: rpc, scheduler_addr, kind and addr are required");
    lm_node_agent *a = calloc(1, sizeof *a);
    /* Membership calls get a connection of their own: on the process's
     * shared one they would queue behind its bulk transfers (a 64 MiB
     * RunTasks, object chunks) and miss the heartbeat timeout. */
    lumen_status st = lm_rpc_client_new_private(opts->rpc, &a->rpc);
    if (!LM_IS_OK(st)) {
        free(a);
        return st;
    }
    a->opts = *opts;
    a->scheduler_addr = strdup(opts->scheduler_addr);
    a->kind = strdup(opts->kind);
    a->addr = strdup(opts->addr);
    a->objstore_addr = dup_or_null(opts->objstore_addr);
    if (a->opts.rpc_timeout_ms <= 0) a->opts.rpc_timeout_ms = 5000;
    a->interval_ms = 1000;
    lm_rpc_method_find(&lumen__scheduler__descriptor, "RegisterNode", &a->register_method);
    lm_rpc_method_find(&lumen__scheduler__descriptor, "Heartbeat", &a->heartbeat_method);
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cond, NULL);
    a->watch = watch_new(a); /* without it (no memory), death is noticed by heartbeats only */
    pthread_create(&a->thread, NULL, agent_main, a);
    *out = a;
    return lm_ok();
}

bool lm_node_agent_registered(lm_node_agent *a) {
    pthread_mutex_lock(&a->mu);
    bool r = a->registered_once;
    pthread_mutex_unlock(&a->mu);
    return r;
}

void lm_node_agent_free(lm_node_agent *a) {
    if (a == NULL) return;
    pthread_mutex_lock(&a->mu);
    a->stopping = true;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    if (a->watch != NULL) {
        pthread_mutex_lock(&a->watch->mu);
        a->watch->stopping = true;
        pthread_mutex_unlock(&a->watch->mu);
    }
    lm_rpc_client_free(a->rpc); /* cancels the open watch; its callback has run when this returns */
    if (a->watch != NULL) watch_unref(a->watch);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cond);
    free(a->scheduler_addr);
    free(a->kind);
    free(a->addr);
    free(a->objstore_addr);
    free(a);
}

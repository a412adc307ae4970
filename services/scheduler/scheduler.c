/*
 * scheduler.c - see scheduler.h: the state's life (made, recovered from
 * Redis, freed) and the monitor thread that keeps time: heartbeats, waits
 * and placeholders that ran out, held tasks, jobs without a client, leases.
 */
#include "scheduler.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "objstore.pb-c.h"
#include "process.h"
#include "redis_state.h"
#include "rpc.h"
#include "sched_internal.h"
#include "worker.pb-c.h"


static void *monitor_main(void *arg) {
    lm_thread_name("monitor");
    scheduler *s = arg;
    int64_t interval = s->cfg->scheduler.heartbeat_interval_ms;
    int64_t timeout = s->cfg->scheduler.heartbeat_timeout_ms;
    uint64_t next_tick = sched_now_ms(s);
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        outbox out = {0};
        uint64_t wake = waits_expire(s, &out);
        uint64_t now = sched_now_ms(s);
        if (now >= next_tick) {
            /* Ticking late by more than a node may stay silent means this
             * process (or the machine) was stopped: the nodes' silence
             * meanwhile says nothing of them, so they get a timeout anew,
             * as Sentinel's TILT mode does. */
            uint64_t late = now - next_tick;
            if (late > (uint64_t)timeout) {
                lm_warn("the monitor ran %llu ms late (this process was stopped?): every node gets %lld ms to "
                        "send a heartbeat before it is declared dead",
                        (unsigned long long)late, (long long)timeout);
                for (size_t i = 0; i < s->node_list.n; i++) ((snode *)s->node_list.items[i])->last_beat_ms = now;
            }
            next_tick = now + (uint64_t)(interval / 2 > 0 ? interval / 2 : 1);
            nodes_check_beats(s, &out);
            recovery_check(s, &out);
            tasks_release_held(s, false, &out);
            unresolved_expire(s, &out);
            jobs_expire(s, &out);
            sched_dispatch(s, &out);
            actors_expire_waits(s, &out);
            watches_renew(s, &out);
            jobs_renew_leases(s, &out);
        }
        if (!sched_outbox_empty(&out)) {
            pthread_mutex_unlock(&s->mu);
            sched_outbox_send(s, &out);
            pthread_mutex_lock(&s->mu);
            continue; /* time passed: look again before sleeping */
        }
        sched_outbox_clear(&out);
        if (wake == 0 || wake > next_tick) wake = next_tick;
        now = sched_now_ms(s);
        if (wake > now && !s->stopping) {
            struct timespec until = lm_timespec_in(CLOCK_MONOTONIC, (int64_t)(wake - now));
            pthread_cond_timedwait(&s->monitor_cond, &s->mu, &until);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* How long a starting scheduler waits for Redis before it gives up: Redis
 * may be restarting too, loading its append-only file, or slow under load. */
#define START_REDIS_WAIT_MS 30000

/* Runs a start-up step that needs Redis again, with a backoff, while it
 * fails UNAVAILABLE and START_REDIS_WAIT_MS has not passed. */
static lumen_status patiently(lumen_status (*step)(void *arg), void *arg) {
    uint64_t until = lm_mono_ms() + START_REDIS_WAIT_MS;
    unsigned backoff_ms = 100;
    for (;;) {
        lumen_status st = step(arg);
        if (LM_IS_OK(st) || st.code != LUMEN_UNAVAILABLE || lm_mono_ms() + backoff_ms > until) return st;
        lm_warn("%s (retrying in %u ms)", st.msg, backoff_ms);
        lm_sleep_ms(backoff_ms);
        backoff_ms = backoff_ms * 2 > 2000 ? 2000 : backoff_ms * 2;
    }
}

typedef struct redis_dial {
    const lm_redis_opts *opts;
    lm_redis **out;
} redis_dial;

static lumen_status dial_redis(void *arg) {
    redis_dial *d = arg;
    return lm_redis_connect(d->opts, d->out);
}

#define PAGE 1000

/* Live actors, a page at a time. */
static lumen_status load_actors(scheduler *s, size_t *loaded) {
    lm_index ix = {.kind = LM_INDEX_ACTORS};
    lm_id ids[PAGE];
    lm_actor_record recs[PAGE];
    bool found[PAGE];
    for (size_t offset = 0;; offset += PAGE) {
        size_t n = 0;
        lumen_status st = lm_redis_index_page(s->redis, &ix, 0, offset, PAGE, ids, NULL, &n);
        if (LM_IS_OK(st) && n > 0) st = lm_redis_actors_get(s->redis, ids, n, recs, found);
        if (!LM_IS_OK(st)) return st;
        for (size_t i = 0; i < n; i++) {
            if (found[i] && recs[i].state == LM_ACTOR_ALIVE && actors_load(s, &recs[i])) (*loaded)++;
            lm_redis_actor_record_free(&recs[i]);
        }
        if (n < PAGE) return lm_ok();
    }
}

/* Running jobs: a client may come back for each; the others end after the grace. */
static lumen_status load_jobs(scheduler *s, size_t *loaded) {
    lm_id *ids = NULL;
    size_t n = 0;
    lumen_status st = lm_redis_jobs_running(s->redis, &ids, &n);
    for (size_t i = 0; LM_IS_OK(st) && i < n; i += PAGE) {
        size_t k = n - i < PAGE ? n - i : PAGE;
        lm_job_record recs[PAGE];
        bool found[PAGE];
        st = lm_redis_jobs_get(s->redis, ids + i, k, recs, found);
        for (size_t r = 0; LM_IS_OK(st) && r < k; r++) {
            sjob *j = sched_job_get(s, ids[i + r]);
            j->detached = found[r] && recs[r].detached;
            if (j->detached) j->unheld_since_ms = 0;
            (*loaded)++;
        }
    }
    free(ids);
    return st;
}

/* A new incarnation's start, before serving: the epoch and what Redis says
 * the previous one had (live nodes, running jobs, live actors). Idempotent:
 * it may run again (patiently). */
static lumen_status recover(void *arg) {
    scheduler *s = arg;
    uint64_t epoch;
    lumen_status st = lm_redis_epoch_next(s->redis, &epoch);
    if (!LM_IS_OK(st)) return lm_status_wrap(st, "taking the scheduler's epoch");
    lm_node_list *nodes = NULL;
    st = lm_redis_nodes_list(s->redis, &nodes);
    lm_id *alive = LM_IS_OK(st) ? calloc(nodes->count ? nodes->count : 1, sizeof *alive) : NULL;
    size_t nalive = 0;
    for (size_t i = 0; alive != NULL && i < nodes->count; i++)
        if (nodes->nodes[i].state == LM_NODE_ALIVE) alive[nalive++] = nodes->nodes[i].id;
    if (LM_IS_OK(st) && alive == NULL) st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "the scheduler is out of memory");
    lm_node_list_free(nodes);
    size_t njobs = 0, nactors = 0;
    if (LM_IS_OK(st)) st = load_jobs(s, &njobs);
    if (LM_IS_OK(st)) st = load_actors(s, &nactors);
    if (LM_IS_OK(st)) recovery_begin(s, epoch, alive, nalive, njobs, nactors);
    free(alive);
    if (!LM_IS_OK(st)) return lm_status_wrap(st, "reading the previous incarnation's state");
    return lm_ok();
}

lumen_status scheduler_new(const lm_config *cfg, scheduler **out) {
    *out = NULL;
    lm_redis_opts ropts = {.addr = cfg->cluster.redis_addr, .password = cfg->cluster.redis_password,
                           .prefix = cfg->cluster.key_prefix};
    lm_redis *redis = NULL;
    lumen_status st = patiently(dial_redis, &(redis_dial){&ropts, &redis});
    if (!LM_IS_OK(st)) return st;
    scheduler *s = calloc(1, sizeof *s);
    s->cfg = cfg;
    s->redis = redis;
    sched_state_init(s, cfg);
    lm_rpc_client_opts copts = {.token = cfg->cluster.token,
                                .tls = {cfg->cluster.tls_cert, cfg->cluster.tls_key, cfg->cluster.tls_ca}};
    st = lm_rpc_client_new(&copts, &s->rpc);
    if (LM_IS_OK(st)) st = sched_resolver_new(&ropts, sched_on_resolved, s, &s->resolver);
    if (LM_IS_OK(st)) st = patiently(recover, s); /* before the writer: nothing of ours in Redis yet */
    if (!LM_IS_OK(st)) {
        scheduler_free(s);
        return st;
    }
    s->writer = sched_writer_new(redis);
    s->monitor_started = pthread_create(&s->monitor, NULL, monitor_main, s) == 0;
    if (!s->monitor_started) {
        scheduler_free(s);
        return lm_status(LUMEN_INTERNAL, "cannot start the scheduler's monitor thread");
    }
    *out = s;
    return lm_ok();
}

void scheduler_stop(scheduler *s) {
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->monitor_cond);
    pthread_mutex_unlock(&s->mu);
}

void scheduler_free(scheduler *s) {
    if (s == NULL) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->monitor_cond);
    pthread_mutex_unlock(&s->mu);
    if (s->monitor_started) pthread_join(s->monitor, NULL);
    /* Open watches and leases end with the server's shutdown; waits too. */
    sched_resolver_free(s->resolver); /* no more answers from it */
    lm_rpc_client_free(s->rpc);       /* async callbacks finish here */
    sched_writer_free(s->writer);
    outbox out = {0};
    sched_state_fini(s, &out);
    sched_outbox_send(s, &out); /* the calls still held: answered, the RPC server is down */
    lm_redis_free(s->redis);
    free(s);
}

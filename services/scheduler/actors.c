/*
 * actors.c - the scheduler's side of actors: creation, placement, lookups,
 * restarts, kills.
 *
 * An actor is created by a task: its constructor call, admitted and placed
 * like any task (so ref arguments are resolved the same way), on the worker
 * with the fewest actors for its slots. When that task finishes the actor is
 * ALIVE there; clients then call it directly (the scheduler is not on that
 * path; it only hears of the results, through the workers' TaskDone). When
 * its worker dies, or its process does (ActorDied), it is made again by a
 * new creation task while restarts remain (RESTARTING, then ALIVE in the
 * next incarnation), otherwise it is DEAD with the reason. Killing it or
 * ending its job stops it on its worker.
 *
 * Lookups (GetActor) may wait: the waits sit in one list, re-examined
 * whenever an actor changes state and expired by the monitor thread, so no
 * call is held past its wait_ms.
 */
#include "clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "input_limits.h"
#include "log.h"
#include "sched_internal.h"
#include "worker.pb-c.h"


typedef struct sactor {
    lm_id id, job;
    char *class_name, *name; /* name: "" when unnamed */
    Lumen__TaskSpec *spec;   /* the constructor call, run again for a restart */
    lm_actor_state state;
    lm_id worker;            /* where it lives (ALIVE), or was last placed */
    lm_id creation;          /* the creation task of the current incarnation */
    uint32_t incarnation, restarts, max_restarts, max_task_retries;
    uint64_t calls;
    lumen_status error;      /* DEAD: why */
} sactor;

typedef struct actor_wait {
    lm_rpc_call *call;
    lm_id id;           /* by id, unless name is set */
    char *name;
    uint32_t after;     /* by id: answer once ALIVE above this incarnation */
    uint64_t until_ms;  /* monotonic */
} actor_wait;

/* ------------------------------------------------------------- helpers */

static void record(scheduler *s, const sactor *a) {
    lm_actor_record rec = {.id = a->id, .class_name = a->class_name, .worker = a->worker, .state = a->state,
                           .restarts = a->restarts, .incarnation = a->incarnation, .calls = a->calls,
                           .name = a->name, .job = a->job, .error = a->state == LM_ACTOR_DEAD ? a->error.msg : NULL};
    sched_writer_actor(s->writer, &rec);
}

static sactor *by_id(scheduler *s, lm_id id) { return lm_idmap_get(s->actors, id); }

/*
 * An actor Redis says was alive when a new incarnation starts: live actors
 * go on on their workers (their callers reach them directly), and their
 * workers confirm them when they register again. Without its constructor
 * call it cannot restart until its creator sends it again (the client does
 * after it reconnects).
 */
bool actors_load(scheduler *s, const lm_actor_record *rec) {
    if (by_id(s, rec->id) != NULL) return false;
    sactor *a = calloc(1, sizeof *a);
    if (a == NULL) return false;
    a->id = rec->id;
    a->job = rec->job;
    a->class_name = strdup(rec->class_name ? rec->class_name : "");
    a->name = strdup(rec->name ? rec->name : "");
    a->state = LM_ACTOR_ALIVE;
    a->worker = rec->worker;
    a->incarnation = rec->incarnation;
    a->restarts = rec->restarts;
    a->calls = rec->calls;
    lm_idmap_put(s->actors, a->id, a);
    sched_id_push(&sched_job_get(s, a->job)->actors, a->id);
    return true;
}

/* Where an ALIVE actor can be reached, or NULL while its worker has not
 * (re)registered. */
static snode *actor_node(scheduler *s, const sactor *a) {
    snode *w = lm_idmap_get(s->nodes, a->worker);
    return w != NULL && w->alive ? w : NULL;
}

typedef struct name_search {
    const char *name;
    sactor *found;
} name_search;

static void match_name(void *arg, lm_id key, void *value) {
    (void)key;
    name_search *ns = arg;
    sactor *a = value;
    if (ns->found == NULL && a->state != LM_ACTOR_DEAD && strcmp(a->name, ns->name) == 0) ns->found = a;
}

/* The live actor of that name. A scan: actors are few next to tasks, and
 * names are looked up once per handle. */
static sactor *by_name(scheduler *s, const char *name) {
    name_search ns = {name, NULL};
    if (name[0] != '\0') lm_idmap_each(s->actors, match_name, &ns);
    return ns.found;
}

/* A deep copy of a spec (protobuf-c has none: through its encoding). */
static Lumen__TaskSpec *spec_copy(const Lumen__TaskSpec *spec) {
    size_t len = lumen__task_spec__get_packed_size(spec);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) return NULL;
    lumen__task_spec__pack(spec, buf);
    Lumen__TaskSpec *copy = lumen__task_spec__unpack(NULL, len, buf);
    free(buf);
    return copy;
}

static void actor_free(sactor *a) {
    spec_free(a->spec);
    free(a->class_name);
    free(a->name);
    free(a);
}

/* An ActorInfo built from heap pieces, the way protobuf-c's unpacker
 * allocates, so it is sent after `mu` is released and freed as unpacked. */
static Lumen__ActorInfo *info_build(const sactor *a, const char *addr) {
    Lumen__ActorInfo *info = malloc(sizeof *info);
    lumen__actor_info__init(info);
    info->actor_id.len = LM_ID_BYTES;
    info->actor_id.data = malloc(LM_ID_BYTES);
    memcpy(info->actor_id.data, a->id.bytes, LM_ID_BYTES);
    info->job_id.len = LM_ID_BYTES;
    info->job_id.data = malloc(LM_ID_BYTES);
    memcpy(info->job_id.data, a->job.bytes, LM_ID_BYTES);
    info->class_name = strdup(a->class_name);
    info->name = strdup(a->name);
    info->state = strdup(lm_actor_state_name(a->state));
    info->addr = strdup(a->state == LM_ACTOR_ALIVE && addr ? addr : "");
    info->incarnation = a->incarnation;
    info->restarts = a->restarts;
    info->max_task_retries = a->max_task_retries;
    if (a->state == LM_ACTOR_DEAD) {
        info->error = malloc(sizeof *info->error);
        lumen__status__init(info->error);
        info->error->code = a->error.code;
        info->error->message = strdup(a->error.msg);
    }
    return info;
}

static void info_free(ProtobufCMessage *m) { protobuf_c_message_free_unpacked(m, NULL); }

static void answer_info(scheduler *s, lm_rpc_call *call, const sactor *a, outbox *out) {
    snode *w = lm_idmap_get(s->nodes, a->worker);
    Lumen__ActorInfo *info = info_build(a, w ? w->addr : NULL);
    sched_outbox_reply(out, call, &info->base, info_free);
}

/* Asks worker `node` to stop the actor (no answer awaited). */
static void stop_on(scheduler *s, lm_id actor, lm_id node, outbox *out) {
    snode *w = lm_idmap_get(s->nodes, node);
    if (w == NULL || !w->alive) return;
    Lumen__StopActorRequest req = LUMEN__STOP_ACTOR_REQUEST__INIT;
    req.actor_id = id_bytes(&actor);
    req.epoch = s->epoch;
    sched_outbox_request(out, SCHED_STOP_ACTOR, w->addr, &req.base, NULL);
}

/* ------------------------------------------------------------- waits */

/* The state a wait is answered in, or NULL while it should wait on. A wait
 * for an unknown id is answered at once (NOT_FOUND) by the caller. */
static bool wait_satisfied(scheduler *s, const actor_wait *w, sactor **found) {
    sactor *a = w->name ? by_name(s, w->name) : by_id(s, w->id);
    *found = a;
    if (w->name) return a != NULL;
    return a == NULL || a->state == LM_ACTOR_DEAD ||
           (a->state == LM_ACTOR_ALIVE && a->incarnation > w->after && actor_node(s, a) != NULL);
}

static void wait_free(actor_wait *w) {
    free(w->name);
    free(w);
}

static void answer_wait(scheduler *s, actor_wait *w, sactor *a, outbox *out) {
    char h[LM_ID_HEX_LEN + 1];
    if (a != NULL) answer_info(s, w->call, a, out);
    else if (w->name)
        sched_outbox_fail(out, w->call, lm_status(LUMEN_NOT_FOUND, "no actor is named \"%s\"",
                                                                      w->name));
    else
        sched_outbox_fail(out, w->call, lm_status(LUMEN_NOT_FOUND, "actor %s is unknown",
                                                                      hex(w->id, h)));
    wait_free(w);
}

/* Answers the waits an actor's change satisfies. */
static void waits_recheck(scheduler *s, outbox *out) {
    size_t keep = 0;
    for (size_t i = 0; i < s->actor_waits.n; i++) {
        actor_wait *w = s->actor_waits.items[i];
        sactor *a;
        if (wait_satisfied(s, w, &a)) answer_wait(s, w, a, out);
        else s->actor_waits.items[keep++] = w;
    }
    s->actor_waits.n = keep;
}

void actors_node_up(scheduler *s, outbox *out) { waits_recheck(s, out); }

void actors_expire_waits(scheduler *s, outbox *out) {
    uint64_t now = sched_now_ms(s);
    size_t keep = 0;
    for (size_t i = 0; i < s->actor_waits.n; i++) {
        actor_wait *w = s->actor_waits.items[i];
        if (now < w->until_ms) {
            s->actor_waits.items[keep++] = w;
            continue;
        }
        char h[LM_ID_HEX_LEN + 1];
        lumen_status st = w->name ? lm_status(LUMEN_NOT_FOUND, "no actor named \"%s\" appeared in time", w->name)
                                  : lm_status(LUMEN_DEADLINE_EXCEEDED, "actor %s is not up yet", hex(w->id, h));
        sched_outbox_fail(out, w->call, st);
        wait_free(w);
    }
    s->actor_waits.n = keep;
}

/* ------------------------------------------------------------- lifecycle */

/* Admits a creation task for the actor's next incarnation. An actor known
 * from Redis only waits for its creator to send its constructor again. */
static void start_creation(scheduler *s, sactor *a, lm_id task, outbox *out) {
    if (a->spec == NULL) {
        char h[LM_ID_HEX_LEN + 1];
        lm_info("actor %s (%s) waits for its creator to send its constructor again", hex(a->id, h), a->class_name);
        memset(&a->creation, 0, sizeof a->creation);
        return;
    }
    Lumen__TaskSpec *spec = spec_copy(a->spec);
    if (spec == NULL) {
        a->state = LM_ACTOR_DEAD;
        a->error = lm_status(LUMEN_RESOURCE_EXHAUSTED, "the scheduler is out of memory");
        return;
    }
    free(spec->task_id.data);
    spec->task_id.data = malloc(LM_ID_BYTES);
    spec->task_id.len = LM_ID_BYTES;
    memcpy(spec->task_id.data, task.bytes, LM_ID_BYTES);
    spec->incarnation = a->incarnation;
    a->creation = task;
    /* As a resubmission: a restart may come before its client reconnected
     * to a scheduler that restarted. */
    sched_admit(s, spec, true, out); /* its failures come back through actors_created */
}

static void set_dead(scheduler *s, sactor *a, lumen_status why) {
    a->state = LM_ACTOR_DEAD;
    a->error = why;
    lm_warn("%s", why.msg);
    record(s, a);
}

/* The actor's incarnation ended by no one's wish: it is made again while
 * restarts remain, or it is dead. */
static void actor_lost(scheduler *s, sactor *a, const char *why, outbox *out) {
    char h[LM_ID_HEX_LEN + 1];
    snode *w = lm_idmap_get(s->nodes, a->worker);
    if (w != NULL && w->actors > 0) w->actors--;
    if (a->restarts >= a->max_restarts) {
        set_dead(s, a, lm_status(LUMEN_ACTOR_DIED, "actor %s (%s) died: %s (restarts used: %u of %u)", hex(a->id, h),
                                 a->class_name, why, a->restarts, a->max_restarts));
        return;
    }
    a->restarts++;
    a->incarnation++;
    a->state = LM_ACTOR_RESTARTING;
    lm_warn("actor %s (%s) died: %s; restarting it (restart %u of %u)", hex(a->id, h), a->class_name, why,
            a->restarts, a->max_restarts);
    record(s, a);
    start_creation(s, a, lm_id_random(), out);
}

/*
 * An incarnation is up on worker `where`: ALIVE there. A creation can run
 * twice across a scheduler restart (the new scheduler placed it again
 * before the first report reached it): the first report wins and the other
 * copy is stopped, as is one whose actor was killed meanwhile. A report of
 * an older incarnation changes nothing.
 */
static void actor_up(scheduler *s, sactor *a, lm_id where, uint32_t incarnation, outbox *out) {
    if (incarnation != a->incarnation) return;
    bool elsewhere = a->state == LM_ACTOR_ALIVE && !lm_id_equal(a->worker, where);
    if (a->state == LM_ACTOR_DEAD || elsewhere) {
        stop_on(s, a->id, where, out);
        return;
    }
    if (a->state == LM_ACTOR_ALIVE) return; /* the same report again */
    char h[LM_ID_HEX_LEN + 1];
    a->state = LM_ACTOR_ALIVE;
    a->worker = where;
    snode *w = lm_idmap_get(s->nodes, where);
    if (w != NULL) w->actors++;
    lm_info("actor %s (%s) is up on %s, incarnation %u", hex(a->id, h), a->class_name, w ? w->addr : "?",
            a->incarnation);
    record(s, a);
    waits_recheck(s, out);
}

void actors_created(scheduler *s, const stask *t, lumen_status st, lm_id where, outbox *out) {
    lm_id id;
    if (!id_field(t->spec->actor_id, &id)) return;
    sactor *a = by_id(s, id);
    if (a == NULL || !lm_id_equal(a->creation, t->id)) {
        /* Killed, or its job ended, while it was being made. */
        if (LM_IS_OK(st)) stop_on(s, id, where, out);
        return;
    }
    if (LM_IS_OK(st)) {
        actor_up(s, a, where, t->spec->incarnation ? t->spec->incarnation : a->incarnation, out);
    } else if (a->state == LM_ACTOR_PENDING || a->state == LM_ACTOR_RESTARTING) {
        char h[LM_ID_HEX_LEN + 1];
        set_dead(s, a, lm_status(st.code == LUMEN_WORKER_DIED ? LUMEN_ACTOR_DIED : st.code,
                                 "actor %s (%s) could not be created: %s", hex(id, h), a->class_name, st.msg));
        waits_recheck(s, out);
    }
}

void actors_created_again(scheduler *s, const stask *t, lm_id where, outbox *out) {
    lm_id id;
    sactor *a = id_field(t->spec->actor_id, &id) ? by_id(s, id) : NULL;
    if (a != NULL && lm_id_equal(a->creation, t->id)) actor_up(s, a, where, a->incarnation, out);
}

/* Reports of actors made before a restart that the creator has not sent
 * again yet: claimed by its CreateActor. */
typedef struct hosted_report {
    lm_id node;
    uint32_t incarnation;
} hosted_report;

void actors_reported_up(scheduler *s, lm_id id, uint32_t incarnation, lm_id where, outbox *out) {
    sactor *a = by_id(s, id);
    if (a != NULL) {
        actor_up(s, a, where, incarnation, out);
        return;
    }
    hosted_report *hr = lm_idmap_get(s->actors_reported, id);
    if (hr == NULL && (hr = malloc(sizeof *hr)) != NULL) lm_idmap_put(s->actors_reported, id, hr);
    if (hr != NULL) *hr = (hosted_report){where, incarnation};
}

void actors_orphan_created(scheduler *s, const stask *t, outbox *out) {
    lm_id id;
    if (id_field(t->spec->actor_id, &id)) stop_on(s, id, t->worker, out);
}

void actors_call_done(scheduler *s, lm_id actor) {
    sactor *a = by_id(s, actor);
    if (a == NULL) return;
    a->calls++;
    /* The record follows the count loosely: every 100 calls and at the
     * first, so Redis is not written per call. */
    if (a->calls == 1 || a->calls % 100 == 0) record(s, a);
}

typedef struct lost_actors {
    lm_id worker;
    ptr_vec actors;
    scheduler *s;
} lost_actors;

static void collect_on_worker(void *arg, lm_id key, void *value) {
    (void)key;
    lost_actors *la = arg;
    sactor *a = value;
    if (a->state == LM_ACTOR_ALIVE && lm_id_equal(a->worker, la->worker)) sched_ptr_push(&la->actors, a);
}

/* ALIVE on a worker that is not (known and) alive here. */
static void collect_unplaced(void *arg, lm_id key, void *value) {
    (void)key;
    lost_actors *la = arg;
    sactor *a = value;
    scheduler *s = la->s;
    if (a->state == LM_ACTOR_ALIVE && actor_node(s, a) == NULL) sched_ptr_push(&la->actors, a);
}

void actors_node_lost(scheduler *s, snode *w, outbox *out) {
    lost_actors la = {w->id, {0}, s};
    lm_idmap_each(s->actors, collect_on_worker, &la);
    char why[400];
    snprintf(why, sizeof why, "its worker %s died", w->addr);
    for (size_t i = 0; i < la.actors.n; i++) actor_lost(s, la.actors.items[i], why, out);
    free(la.actors.items);
    w->actors = 0;
    if (la.actors.n > 0) waits_recheck(s, out);
}

/* Whether req lists actor a in its incarnation. */
static bool hosted_in(const Lumen__RegisterNodeRequest *req, const sactor *a) {
    for (size_t i = 0; i < req->n_actors; i++) {
        lm_id id;
        if (id_field(req->actors[i]->actor_id, &id) && lm_id_equal(id, a->id) &&
            req->actors[i]->incarnation == a->incarnation)
            return true;
    }
    return false;
}

void actors_node_registered(scheduler *s, snode *w, const Lumen__RegisterNodeRequest *req, outbox *out) {
    lost_actors la = {w->id, {0}, s};
    lm_idmap_each(s->actors, collect_on_worker, &la);
    for (size_t i = 0; i < la.actors.n; i++)
        if (!hosted_in(req, la.actors.items[i]))
            actor_lost(s, la.actors.items[i], "its worker no longer hosts it", out);
    free(la.actors.items);
    for (size_t i = 0; i < req->n_actors; i++) {
        lm_id actor;
        if (id_field(req->actors[i]->actor_id, &actor))
            actors_reported_up(s, actor, req->actors[i]->incarnation, w->id, out);
    }
    waits_recheck(s, out);
}

void actors_recovered(scheduler *s, outbox *out) {
    lost_actors la = {.s = s};
    lm_idmap_each(s->actors, collect_unplaced, &la);
    for (size_t i = 0; i < la.actors.n; i++)
        actor_lost(s, la.actors.items[i], "its worker did not come back after the scheduler restarted", out);
    free(la.actors.items);
    if (la.actors.n > 0) waits_recheck(s, out);
}

void actors_job_end(scheduler *s, sjob *j, outbox *out) {
    for (size_t i = 0; i < j->actors.n; i++) {
        sactor *a = lm_idmap_remove(s->actors, j->actors.ids[i]);
        if (a == NULL) continue;
        if (a->state == LM_ACTOR_ALIVE) {
            stop_on(s, a->id, a->worker, out);
            snode *w = lm_idmap_get(s->nodes, a->worker);
            if (w != NULL && w->actors > 0) w->actors--;
        }
        if (a->state != LM_ACTOR_DEAD) {
            char h[LM_ID_HEX_LEN + 1];
            a->state = LM_ACTOR_DEAD;
            a->error = lm_status(LUMEN_ACTOR_DIED, "actor %s (%s) ended with its job", hex(a->id, h), a->class_name);
            record(s, a);
        }
        actor_free(a);
    }
    if (j->actors.n > 0) waits_recheck(s, out);
}

static void free_actor_entry(void *arg, lm_id key, void *value) {
    (void)arg, (void)key;
    actor_free(value);
}

static void free_report_entry(void *arg, lm_id key, void *value) {
    (void)arg, (void)key;
    free(value);
}

void actors_free_all(scheduler *s, outbox *out) {
    lm_idmap_each(s->actors, free_actor_entry, NULL);
    lm_idmap_each(s->actors_reported, free_report_entry, NULL);
    for (size_t i = 0; i < s->actor_waits.n; i++) {
        actor_wait *w = s->actor_waits.items[i];
        sched_outbox_fail(out, w->call, lm_status(LUMEN_UNAVAILABLE, "the scheduler is stopping"));
        wait_free(w);
    }
    free(s->actor_waits.items);
    s->actor_waits = (ptr_vec){0};
}

/* ------------------------------------------------------------- calls */

void actors_create(scheduler *s, lm_rpc_call *call, Lumen__CreateActorRequest *req, outbox *out) {
    Lumen__TaskSpec *spec = req->spec;
    lm_id id, task, job;
    id_field(spec->actor_id, &id);
    id_field(spec->task_id, &task);
    id_field(spec->job_id, &job);
    char h[LM_ID_HEX_LEN + 1];
    sactor *a = by_id(s, id);
    sactor *named = by_name(s, req->name);
    if (a != NULL) { /* a resubmission: the same actor */
        if (a->spec == NULL) { /* known again from Redis: now it can restart */
            a->spec = spec;
            req->spec = NULL;
            a->max_restarts = req->max_restarts;
            a->max_task_retries = req->max_task_retries;
            if (a->state == LM_ACTOR_RESTARTING && lm_id_is_zero(a->creation)) { /* it waited for this */
                start_creation(s, a, lm_id_random(), out);
                sched_dispatch(s, out);
            }
        }
        answer_info(s, call, a, out);
    } else if (named != NULL) {
        sched_outbox_fail(out, call, lm_status(LUMEN_ALREADY_EXISTS, "an actor named \"%s\" already exists (%s)",
                                               req->name, hex(named->id, h)));
    } else {
        a = calloc(1, sizeof *a);
        a->id = id;
        a->job = job;
        a->class_name = strdup(spec->function);
        a->name = strdup(req->name);
        a->spec = spec;
        req->spec = NULL; /* taken */
        a->state = LM_ACTOR_PENDING;
        a->incarnation = 1;
        a->max_restarts = req->max_restarts;
        a->max_task_retries = req->max_task_retries;
        lm_idmap_put(s->actors, id, a);
        sched_id_push(&sched_job_get(s, job)->actors, id);
        record(s, a);
        hosted_report *made = lm_idmap_remove(s->actors_reported, id);
        if (made != NULL) { /* made before this scheduler restarted */
            a->creation = task;
            a->incarnation = made->incarnation;
            actor_up(s, a, made->node, made->incarnation, out);
            free(made);
        } else {
            start_creation(s, a, task, out);
            sched_dispatch(s, out);
        }
        answer_info(s, call, a, out);
        waits_recheck(s, out); /* someone may wait for its name */
    }
}

lumen_status actors_lookup(scheduler *s, lm_rpc_call *call, const char *name, lm_id id, uint32_t after,
                           uint64_t wait_ms, outbox *out) {
    actor_wait *w = calloc(1, sizeof *w);
    if (w == NULL || (name != NULL && (w->name = strdup(name)) == NULL)) {
        free(w);
        return lm_status(LUMEN_RESOURCE_EXHAUSTED, "the scheduler is out of memory");
    }
    w->call = call;
    w->id = id;
    w->after = after;
    w->until_ms = sched_now_ms(s) + wait_ms;
    sactor *a;
    bool known = w->name != NULL || by_id(s, w->id) != NULL;
    if (!known || wait_ms == 0 || wait_satisfied(s, w, &a)) {
        a = w->name ? by_name(s, w->name) : by_id(s, w->id);
        answer_wait(s, w, a, out);
    } else {
        sched_ptr_push(&s->actor_waits, w);
    }
    return lm_ok();
}

bool actors_kill(scheduler *s, lm_id id, outbox *out) {
    sactor *a = by_id(s, id);
    if (a != NULL && a->state != LM_ACTOR_DEAD) {
        char h[LM_ID_HEX_LEN + 1];
        if (a->state == LM_ACTOR_ALIVE) {
            stop_on(s, id, a->worker, out);
            snode *w = lm_idmap_get(s->nodes, a->worker);
            if (w != NULL && w->actors > 0) w->actors--;
        }
        set_dead(s, a, lm_status(LUMEN_ACTOR_DIED, "actor %s (%s) was killed", hex(id, h), a->class_name));
        waits_recheck(s, out);
    }
    return a != NULL;
}

void actors_died(scheduler *s, lm_id id, lm_id node, uint32_t incarnation, const char *reason, outbox *out) {
    sactor *a = by_id(s, id);
    /* Only the incarnation the worker hosted: a late report changes nothing. */
    if (a != NULL && a->state == LM_ACTOR_ALIVE && a->incarnation == incarnation && lm_id_equal(a->worker, node)) {
        actor_lost(s, a, reason, out);
        sched_dispatch(s, out);
        waits_recheck(s, out);
    }
}

/*
 * test_engine.c - the scheduler's engine without processes: nodes register,
 * tasks are admitted, placed and reported the way the RPC face would call
 * the engine, and what it decides is read from its outbox (the RunTasks,
 * cancels and releases it would send). The write-behind and the resolver
 * are fakes (engine_fakes.c).
 */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "engine_fakes.h"
#include "log.h"
#include "sched_internal.h"
#include "test_util.h"
#include "worker.pb-c.h"

static lm_config cfg;

/* The engine's clock: moved by the tests, never by itself. */
static uint64_t fake_now_ms;
static uint64_t fake_clock(void) { return fake_now_ms; }

static scheduler *engine_new(void) {
    scheduler *s = calloc(1, sizeof *s);
    sched_state_init(s, &cfg);
    s->clock_ms = fake_clock;
    fake_now_ms = 1000000;
    s->epoch = 1;
    return s;
}

static void engine_free(scheduler *s) {
    outbox out = {0};
    sched_state_fini(s, &out);
    CU_ASSERT_EQUAL(out.n, 0); /* these tests hold no calls */
    sched_outbox_clear(&out);
    free(s);
}

/* ------------------------------------------------------------- the outbox */

/* The RunTasks requests in out: per request, its address and task ids. */
typedef struct sent_batch {
    char addr[64];
    lm_id tasks[64];
    size_t n;
    Lumen__RunTasksRequest *req;
} sent_batch;

/* Unpacks out's RunTasks into b (at most max) and forgets the requests, as
 * if they were sent and answered OK; returns how many. */
static size_t take_run_tasks(outbox *out, sent_batch *b, size_t max) {
    size_t k = 0, keep = 0;
    for (size_t i = 0; i < out->nrequests; i++) {
        sched_request *r = &out->requests[i];
        if (r->kind != SCHED_RUN_TASKS) {
            out->requests[keep++] = *r;
            continue;
        }
        CU_ASSERT_FATAL(k < max);
        Lumen__RunTasksRequest *req = lumen__run_tasks_request__unpack(NULL, r->len, r->bytes);
        CU_ASSERT_FATAL(req != NULL);
        snprintf(b[k].addr, sizeof b[k].addr, "%s", r->addr);
        b[k].n = req->n_tasks;
        for (size_t t = 0; t < req->n_tasks && t < 64; t++)
            lm_id_from_bytes(req->tasks[t]->task_id.data, req->tasks[t]->task_id.len, &b[k].tasks[t]);
        b[k].req = req;
        dispatch_batch_free(r->batch);
        free(r->addr);
        free(r->bytes);
        k++;
    }
    out->nrequests = keep;
    return k;
}

static void batches_free(sent_batch *b, size_t n) {
    for (size_t i = 0; i < n; i++) lumen__run_tasks_request__free_unpacked(b[i].req, NULL);
}

/* How many requests of kind out holds (to addr, if not NULL). */
static size_t count_requests(const outbox *out, sched_request_kind kind, const char *addr) {
    size_t n = 0;
    for (size_t i = 0; i < out->nrequests; i++)
        if (out->requests[i].kind == kind && (addr == NULL || strcmp(out->requests[i].addr, addr) == 0)) n++;
    return n;
}

/* The answers out holds for call. */
static size_t count_answers(const outbox *out, const lm_rpc_call *call) {
    size_t n = 0;
    for (size_t i = 0; i < out->n; i++) n += out->answers[i].call == call;
    return n;
}

/* Drops what is left in out as if it was sent (no RunTasks may be left:
 * they hold batches). */
static void out_clear(outbox *out) {
    CU_ASSERT_EQUAL(count_requests(out, SCHED_RUN_TASKS, NULL), 0);
    for (size_t i = 0; i < out->n; i++) {
        answer *a = &out->answers[i];
        if (a->reply != NULL) a->reply_free(a->reply);
        if (a->after != NULL) a->after(a->after_arg);
    }
    sched_outbox_clear(out);
}

/* ------------------------------------------------------------- the cluster */

static snode *add_node(scheduler *s, const char *kind, const char *addr, uint32_t slots, const char *store_addr) {
    lm_id id = lm_id_random();
    Lumen__NodeInfo info = LUMEN__NODE_INFO__INIT;
    info.node_id = id_bytes(&id);
    info.kind = (char *)kind;
    info.addr = (char *)addr;
    info.slots = slots;
    info.objstore_addr = (char *)(store_addr ? store_addr : "");
    Lumen__RegisterNodeRequest req = LUMEN__REGISTER_NODE_REQUEST__INIT;
    req.node = &info;
    outbox out = {0};
    id_vec drop = {0};
    snode *n = node_register(s, id, &req, &drop, &out);
    CU_ASSERT_EQUAL(drop.n, 0);
    free(drop.ids);
    out_clear(&out);
    return n;
}

static lm_id job_start(scheduler *s) {
    lm_id job = lm_id_random();
    CU_ASSERT_EQUAL(jobs_start(s, job, false).code, LUMEN_OK);
    return job;
}

/* The usual start: store s1:1, worker w1:1 with `slots` next to it, and a
 * started job. */
static scheduler *cluster_of_one(uint32_t slots, snode **worker, lm_id *job) {
    scheduler *s = engine_new();
    add_node(s, "objstore", "s1:1", 0, NULL);
    *worker = add_node(s, "worker", "w1:1", slots, "s1:1");
    *job = job_start(s);
    return s;
}

/* An argument: an inline value, a ref, or a put held by a store. */
typedef struct arg {
    const char *value; /* inline, when not NULL */
    lm_id ref;
    const char *location; /* a put: the store holding it */
    uint64_t size;
} arg;

/* Admits function(args) in job as a client's SubmitTasks would; its id. */
static lm_id submit(scheduler *s, lm_id job, const char *function, const arg *args, size_t nargs,
                    uint32_t max_retries, outbox *out) {
    lm_id id = lm_id_random();
    Lumen__Arg a[8], *ap[8];
    CU_ASSERT_FATAL(nargs <= 8);
    for (size_t i = 0; i < nargs; i++) {
        lumen__arg__init(&a[i]);
        if (args[i].value != NULL) {
            a[i].value_case = LUMEN__ARG__VALUE_INLINE;
            a[i].inline_ = (ProtobufCBinaryData){strlen(args[i].value), (uint8_t *)args[i].value};
        } else {
            a[i].value_case = LUMEN__ARG__VALUE_REF;
            a[i].ref = id_bytes(&args[i].ref);
            a[i].location = (char *)(args[i].location ? args[i].location : "");
            a[i].size = args[i].size;
        }
        ap[i] = &a[i];
    }
    Lumen__TaskSpec spec = LUMEN__TASK_SPEC__INIT;
    spec.task_id = id_bytes(&id);
    spec.job_id = id_bytes(&job);
    spec.function = (char *)function;
    spec.n_args = nargs;
    spec.args = ap;
    spec.max_retries = max_retries;
    /* The engine takes a spec as protobuf-c unpacks it from a request. */
    uint8_t buf[4096];
    size_t len = lumen__task_spec__pack(&spec, buf);
    Lumen__TaskSpec *taken = lumen__task_spec__unpack(NULL, len, buf);
    CU_ASSERT_EQUAL(sched_admit(s, taken, false, out).code, LUMEN_OK);
    return id;
}

/* Worker `node` reports task done: an inline value, or (value NULL) a
 * result of size bytes kept in store `store`. */
static void report(scheduler *s, const snode *node, lm_id task, const char *value, const snode *store,
                   uint64_t size, outbox *out) {
    Lumen__TaskResult r = LUMEN__TASK_RESULT__INIT;
    Lumen__Status ok = LUMEN__STATUS__INIT;
    ok.message = (char *)"";
    r.task_id = id_bytes(&task);
    r.status = &ok;
    ProtobufCBinaryData inline_value = {value ? strlen(value) : 0, (uint8_t *)value};
    if (value != NULL) {
        r.n_inline_results = 1;
        r.inline_results = &inline_value;
    } else {
        r.objstore_node_id = id_bytes(&store->id);
        r.n_result_sizes = 1;
        r.result_sizes = &size;
    }
    task_done(s, node->id, &r, out);
}

static obj_state result_state(scheduler *s, lm_id task) {
    sobj *o = lm_idmap_get(s->objs, lm_id_for_return(task, 0));
    CU_ASSERT_FATAL(o != NULL);
    return o->state;
}

static stask *task_of(scheduler *s, lm_id id) { return lm_idmap_get(s->tasks, id); }

/* ------------------------------------------------------------- placement */

static void test_placement_prefers_the_store_of_the_biggest_argument(void) {
    scheduler *s = engine_new();
    add_node(s, "objstore", "s1:1", 0, NULL);
    add_node(s, "objstore", "s2:1", 0, NULL);
    add_node(s, "worker", "w1:1", 2, "s1:1");
    add_node(s, "worker", "w2:1", 2, "s2:1");
    lm_id job = job_start(s);
    outbox out = {0};
    arg small = {.ref = lm_id_random(), .location = "s1:1", .size = 10};
    arg big = {.ref = lm_id_random(), .location = "s2:1", .size = 10 << 20};
    lm_id t = submit(s, job, "f", (arg[]){small, big}, 2, 0, &out);
    sched_dispatch(s, &out);
    sent_batch b[4];
    CU_ASSERT_EQUAL_FATAL(take_run_tasks(&out, b, 4), 1);
    CU_ASSERT_STRING_EQUAL(b[0].addr, "w2:1");
    CU_ASSERT(lm_id_equal(b[0].tasks[0], t));
    /* The put travels with where it is and its size. */
    CU_ASSERT_STRING_EQUAL(b[0].req->tasks[0]->args[1]->location, "s2:1");
    CU_ASSERT_EQUAL(b[0].req->tasks[0]->args[1]->size, 10u << 20);
    batches_free(b, 1);
    out_clear(&out);
    engine_free(s);
}

static void test_placement_spreads_to_the_least_loaded(void) {
    scheduler *s = engine_new();
    add_node(s, "objstore", "s1:1", 0, NULL);
    snode *w1 = add_node(s, "worker", "w1:1", 2, "s1:1");
    snode *w2 = add_node(s, "worker", "w2:1", 2, "s1:1");
    lm_id job = job_start(s);
    outbox out = {0};
    for (int i = 0; i < 4; i++) submit(s, job, "f", (arg[]){{.value = "x"}}, 1, 0, &out);
    sched_dispatch(s, &out);
    sent_batch b[4];
    size_t n = take_run_tasks(&out, b, 4);
    CU_ASSERT_EQUAL(n, 2); /* one RunTasks per worker */
    CU_ASSERT_EQUAL(w1->in_flight, 2);
    CU_ASSERT_EQUAL(w2->in_flight, 2);
    batches_free(b, n);
    out_clear(&out);
    engine_free(s);
}

static void test_placement_bounds_each_workers_queue(void) {
    snode *w;
    lm_id job;
    scheduler *s = cluster_of_one(1, &w, &job);
    outbox out = {0};
    for (int i = 0; i < 10; i++) submit(s, job, "f", (arg[]){{.value = "x"}}, 1, 0, &out);
    sched_dispatch(s, &out);
    sent_batch b[4];
    size_t n = take_run_tasks(&out, b, 4);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT_EQUAL(b[0].n, DISPATCH_DEPTH(1));
    CU_ASSERT_EQUAL(w->in_flight, (int)DISPATCH_DEPTH(1));
    CU_ASSERT_EQUAL(s->nready, 10 - DISPATCH_DEPTH(1)); /* the rest wait for room */
    /* One finishes: one more goes. */
    report(s, w, b[0].tasks[0], "1", NULL, 0, &out);
    sched_dispatch(s, &out);
    sent_batch more[2];
    CU_ASSERT_EQUAL_FATAL(take_run_tasks(&out, more, 2), 1);
    CU_ASSERT_EQUAL(more[0].n, 1);
    batches_free(b, n);
    batches_free(more, 1);
    out_clear(&out);
    engine_free(s);
}

/* ------------------------------------------------------------- dependencies */

static void test_a_task_waits_for_its_argument(void) {
    snode *w;
    lm_id job;
    scheduler *s = cluster_of_one(2, &w, &job);
    outbox out = {0};
    lm_id first = submit(s, job, "f", (arg[]){{.value = "x"}}, 1, 0, &out);
    lm_id second = submit(s, job, "g", (arg[]){{.ref = lm_id_for_return(first, 0)}}, 1, 0, &out);
    sched_dispatch(s, &out);
    sent_batch b[2];
    CU_ASSERT_EQUAL_FATAL(take_run_tasks(&out, b, 2), 1);
    CU_ASSERT_EQUAL(b[0].n, 1); /* only the first: the second waits */
    CU_ASSERT_EQUAL(task_of(s, second)->phase, TASK_WAITING);
    report(s, w, first, "42", NULL, 0, &out);
    CU_ASSERT_EQUAL(result_state(s, first), OBJ_READY);
    sched_dispatch(s, &out);
    sent_batch c[2];
    CU_ASSERT_EQUAL_FATAL(take_run_tasks(&out, c, 2), 1);
    CU_ASSERT(lm_id_equal(c[0].tasks[0], second));
    /* A small result held here travels inline: the worker fetches nothing. */
    Lumen__Arg *a = c[0].req->tasks[0]->args[0];
    CU_ASSERT_EQUAL(a->value_case, LUMEN__ARG__VALUE_INLINE);
    CU_ASSERT(a->inline_.len == 2 && memcmp(a->inline_.data, "42", 2) == 0);
    batches_free(b, 1);
    batches_free(c, 1);
    out_clear(&out);
    engine_free(s);
}

static void test_a_failure_flows_down_the_graph(void) {
    snode *w;
    lm_id job;
    scheduler *s = cluster_of_one(2, &w, &job);
    outbox out = {0};
    lm_id first = submit(s, job, "f", (arg[]){{.value = "x"}}, 1, 0, &out);
    lm_id second = submit(s, job, "g", (arg[]){{.ref = lm_id_for_return(first, 0)}}, 1, 0, &out);
    sched_dispatch(s, &out);
    sent_batch b[2];
    CU_ASSERT_EQUAL_FATAL(take_run_tasks(&out, b, 2), 1);
    Lumen__TaskResult r = LUMEN__TASK_RESULT__INIT;
    Lumen__Status failed = LUMEN__STATUS__INIT;
    failed.code = LUMEN_TASK_FAILED;
    failed.message = (char *)"it broke";
    r.task_id = id_bytes(&first);
    r.status = &failed;
    task_done(s, w->id, &r, &out);
    CU_ASSERT_EQUAL(result_state(s, first), OBJ_FAILED);
    CU_ASSERT_EQUAL_FATAL(result_state(s, second), OBJ_FAILED);
    sobj *o = lm_idmap_get(s->objs, lm_id_for_return(second, 0));
    CU_ASSERT(strstr(o->error->msg, "it broke") != NULL);
    batches_free(b, 1);
    out_clear(&out);
    engine_free(s);
}

/* ------------------------------------------------------------- failures */

static void test_a_dead_workers_tasks_run_again_elsewhere(void) {
    snode *w1;
    lm_id job;
    scheduler *s = cluster_of_one(1, &w1, &job);
    outbox out = {0};
    lm_id again = submit(s, job, "f", (arg[]){{.value = "x"}}, 1, 1, &out);
    lm_id once = submit(s, job, "f", (arg[]){{.value = "y"}}, 1, 0, &out);
    sched_dispatch(s, &out);
    sent_batch b[2];
    CU_ASSERT_EQUAL_FATAL(take_run_tasks(&out, b, 2), 1);
    CU_ASSERT_EQUAL(b[0].n, 2);
    snode *w2 = add_node(s, "worker", "w2:1", 1, "s1:1");
    node_lost(s, w1, "killed", &out);
    sched_dispatch(s, &out);
    /* The one with a retry left runs on w2; the other failed for good. */
    sent_batch c[2];
    CU_ASSERT_EQUAL_FATAL(take_run_tasks(&out, c, 2), 1);
    CU_ASSERT_STRING_EQUAL(c[0].addr, "w2:1");
    CU_ASSERT_EQUAL(c[0].n, 1);
    CU_ASSERT(lm_id_equal(c[0].tasks[0], again));
    CU_ASSERT_EQUAL(c[0].req->tasks[0]->attempt, 1);
    CU_ASSERT_EQUAL_FATAL(result_state(s, once), OBJ_FAILED);
    sobj *o = lm_idmap_get(s->objs, lm_id_for_return(once, 0));
    CU_ASSERT_EQUAL(o->error->code, LUMEN_WORKER_DIED);
    report(s, w2, again, "1", NULL, 0, &out);
    CU_ASSERT_EQUAL(result_state(s, again), OBJ_READY);
    batches_free(b, 1);
    batches_free(c, 1);
    out_clear(&out);
    engine_free(s);
}

static void test_a_lost_result_is_rebuilt_from_lineage(void) {
    scheduler *s = engine_new();
    snode *s1 = add_node(s, "objstore", "s1:1", 0, NULL);
    add_node(s, "objstore", "s2:1", 0, NULL);
    snode *w1 = add_node(s, "worker", "w1:1", 2, "s1:1");
    snode *w2 = add_node(s, "worker", "w2:1", 2, "s2:1");
    lm_id job = job_start(s);
    outbox out = {0};
    lm_id maker = submit(s, job, "f", (arg[]){{.value = "x"}}, 1, 0, &out);
    sched_dispatch(s, &out);
    sent_batch b[2];
    CU_ASSERT_EQUAL_FATAL(take_run_tasks(&out, b, 2), 1);
    snode *ran_on = strcmp(b[0].addr, "w1:1") == 0 ? w1 : w2;
    report(s, ran_on, maker, NULL, s1, 1 << 20, &out); /* a big result, kept in s1 */
    CU_ASSERT_EQUAL(result_state(s, maker), OBJ_READY);
    CU_ASSERT_EQUAL(task_of(s, maker)->phase, TASK_DONE);
    /* s1 dies with it: its maker runs again, and not next to s1. */
    node_lost(s, s1, "killed", &out);
    CU_ASSERT_EQUAL(result_state(s, maker), OBJ_PENDING);
    sched_dispatch(s, &out);
    sent_batch c[2];
    CU_ASSERT_EQUAL_FATAL(take_run_tasks(&out, c, 2), 1);
    CU_ASSERT_STRING_EQUAL(c[0].addr, "w2:1"); /* w1's store is down */
    CU_ASSERT(lm_id_equal(c[0].tasks[0], maker));
    batches_free(b, 1);
    batches_free(c, 1);
    out_clear(&out);
    engine_free(s);
}

static void test_a_lost_put_fails_its_refs(void) {
    scheduler *s = engine_new();
    snode *s1 = add_node(s, "objstore", "s1:1", 0, NULL);
    add_node(s, "objstore", "s2:1", 0, NULL);
    snode *w2 = add_node(s, "worker", "w2:1", 2, "s2:1");
    lm_id job = job_start(s);
    outbox out = {0};
    lm_id put = lm_id_random();
    lm_id gate = submit(s, job, "f", (arg[]){{.value = "x"}}, 1, 0, &out);
    /* It also waits for the gate, so it is still here when s1 dies. */
    lm_id t = submit(s, job, "g", (arg[]){{.ref = put, .location = "s1:1", .size = 100}, {.ref = lm_id_for_return(gate, 0)}},
                     2, 3, &out);
    sched_dispatch(s, &out);
    sent_batch b[2];
    CU_ASSERT_EQUAL_FATAL(take_run_tasks(&out, b, 2), 1);
    node_lost(s, s1, "killed", &out);
    sobj *lost = lm_idmap_get(s->objs, put);
    CU_ASSERT_EQUAL_FATAL(lost->state, OBJ_FAILED);
    CU_ASSERT(strstr(lost->error->msg, "cannot be rebuilt") != NULL); /* a put has no lineage */
    report(s, w2, gate, "1", NULL, 0, &out);
    sched_dispatch(s, &out); /* ready now, but its argument is lost: it fails instead of running */
    CU_ASSERT_EQUAL(count_requests(&out, SCHED_RUN_TASKS, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(result_state(s, t), OBJ_FAILED);
    sobj *o = lm_idmap_get(s->objs, lm_id_for_return(t, 0));
    CU_ASSERT_EQUAL(o->error->code, LUMEN_OBJECT_LOST);
    batches_free(b, 1);
    out_clear(&out);
    engine_free(s);
}

/* ------------------------------------------------------------- restarts, job end */

static void test_a_restart_places_nothing_until_the_nodes_are_back(void) {
    scheduler *s = engine_new();
    lm_id before = lm_id_random();
    recovery_begin(s, 2, &before, 1, 0, 0);
    CU_ASSERT(s->recovering);
    add_node(s, "objstore", "s1:1", 0, NULL);
    snode *w = add_node(s, "worker", "w1:1", 2, "s1:1"); /* a new node: not the one awaited */
    lm_id job = job_start(s);
    outbox out = {0};
    submit(s, job, "f", (arg[]){{.value = "x"}}, 1, 0, &out);
    sched_dispatch(s, &out);
    CU_ASSERT_EQUAL(count_requests(&out, SCHED_RUN_TASKS, NULL), 0);
    /* The awaited node registers again (same id): the window ends. */
    Lumen__NodeInfo info = LUMEN__NODE_INFO__INIT;
    info.node_id = id_bytes(&before);
    info.kind = (char *)"worker";
    info.addr = (char *)"w0:1";
    info.slots = 1;
    info.objstore_addr = (char *)"s1:1";
    Lumen__RegisterNodeRequest req = LUMEN__REGISTER_NODE_REQUEST__INIT;
    req.node = &info;
    id_vec drop = {0};
    node_register(s, before, &req, &drop, &out);
    free(drop.ids);
    recovery_check(s, &out);
    CU_ASSERT(!s->recovering);
    sched_dispatch(s, &out);
    sent_batch b[2];
    CU_ASSERT_EQUAL(take_run_tasks(&out, b, 2), 1);
    CU_ASSERT_EQUAL(w->in_flight + ((snode *)lm_idmap_get(s->nodes, before))->in_flight, 1);
    batches_free(b, 1);
    out_clear(&out);
    engine_free(s);
}

static void test_a_resubmitted_task_first_asks_for_its_result(void) {
    scheduler *s = engine_new();
    add_node(s, "objstore", "s1:1", 0, NULL);
    add_node(s, "worker", "w1:1", 2, "s1:1");
    lm_id job = job_start(s);
    outbox out = {0};
    lm_id id = lm_id_random();
    Lumen__Arg a, *ap = &a;
    lumen__arg__init(&a);
    a.value_case = LUMEN__ARG__VALUE_INLINE;
    a.inline_ = (ProtobufCBinaryData){1, (uint8_t *)"x"};
    Lumen__TaskSpec spec = LUMEN__TASK_SPEC__INIT;
    spec.task_id = id_bytes(&id);
    spec.job_id = id_bytes(&job);
    spec.function = (char *)"f";
    spec.n_args = 1;
    spec.args = &ap;
    uint8_t buf[512];
    size_t len = lumen__task_spec__pack(&spec, buf);
    size_t asked = fake_resolver_lookups;
    CU_ASSERT_EQUAL(sched_admit(s, lumen__task_spec__unpack(NULL, len, buf), true, &out).code, LUMEN_OK);
    /* Made before the restart, maybe: the stores are asked before it runs. */
    CU_ASSERT_EQUAL(task_of(s, id)->phase, TASK_RESOLVING);
    CU_ASSERT_EQUAL(fake_resolver_lookups, asked + 1);
    sched_dispatch(s, &out);
    CU_ASSERT_EQUAL(count_requests(&out, SCHED_RUN_TASKS, NULL), 0);
    /* No store holds it: it runs. A second copy of the same spec changes nothing. */
    objects_found(s, lm_id_for_return(id, 0), NULL, 0, &out);
    CU_ASSERT_EQUAL(sched_admit(s, lumen__task_spec__unpack(NULL, len, buf), true, &out).code, LUMEN_OK);
    sched_dispatch(s, &out);
    sent_batch b[2];
    CU_ASSERT_EQUAL_FATAL(take_run_tasks(&out, b, 2), 1);
    CU_ASSERT_EQUAL(b[0].n, 1);
    batches_free(b, 1);
    out_clear(&out);
    engine_free(s);
}

static void test_a_job_end_cancels_and_releases(void) {
    scheduler *s = engine_new();
    add_node(s, "objstore", "s1:1", 0, NULL);
    add_node(s, "objstore", "s2:1", 0, NULL);
    add_node(s, "worker", "w1:1", 1, "s1:1");
    lm_id job = job_start(s);
    outbox out = {0};
    lm_id running = submit(s, job, "f", (arg[]){{.value = "x"}}, 1, 0, &out);
    for (int i = 0; i < 10; i++) submit(s, job, "f", (arg[]){{.value = "y"}}, 1, 0, &out);
    sched_dispatch(s, &out);
    sent_batch b[2];
    CU_ASSERT_EQUAL_FATAL(take_run_tasks(&out, b, 2), 1);
    jobs_end(s, job, &out);
    /* Each task sent is stopped; every store lets go of the job's objects. */
    CU_ASSERT_EQUAL(count_requests(&out, SCHED_CANCEL_TASK, "w1:1"), b[0].n);
    CU_ASSERT_EQUAL(count_requests(&out, SCHED_RELEASE_JOB, "s1:1"), 1);
    CU_ASSERT_EQUAL(count_requests(&out, SCHED_RELEASE_JOB, "s2:1"), 1);
    CU_ASSERT_EQUAL(s->nready, 0);
    CU_ASSERT(task_of(s, running)->orphan); /* freed when its worker reports */
    CU_ASSERT_EQUAL(jobs_start(s, job, false).code, LUMEN_ABORTED); /* ended for good */
    batches_free(b, 1);
    out_clear(&out);
    engine_free(s);
}


/* ------------------------------------------------------------- time */

/* Stand-ins for calls the engine holds: only compared, never used. */
static char call_marks[4];
#define CALL(i) ((lm_rpc_call *)&call_marks[i])

static void test_a_silent_node_dies_at_the_heartbeat_timeout(void) {
    scheduler *s = engine_new();
    add_node(s, "objstore", "s1:1", 0, NULL);
    snode *w = add_node(s, "worker", "w1:1", 1, "s1:1");
    uint64_t timeout = (uint64_t)cfg.scheduler.heartbeat_timeout_ms;
    outbox out = {0};
    fake_now_ms += timeout;
    nodes_check_beats(s, &out);
    CU_ASSERT(w->alive); /* not past it yet */
    fake_now_ms += 1;
    nodes_check_beats(s, &out);
    CU_ASSERT(!w->alive);
    out_clear(&out);
    engine_free(s);
}

static void test_a_held_task_waits_a_heartbeat(void) {
    snode *w;
    lm_id job;
    scheduler *s = cluster_of_one(1, &w, &job);
    outbox out = {0};
    lm_id t = submit(s, job, "f", (arg[]){{.value = "x"}}, 1, 2, &out);
    sched_dispatch(s, &out);
    sent_batch b[2];
    CU_ASSERT_EQUAL_FATAL(take_run_tasks(&out, b, 2), 1);
    /* It could not read an argument: a store may be dying; it waits. */
    Lumen__TaskResult r = LUMEN__TASK_RESULT__INIT;
    Lumen__Status lost = LUMEN__STATUS__INIT;
    lost.code = LUMEN_UNAVAILABLE;
    lost.message = (char *)"cannot reach the store";
    r.task_id = id_bytes(&t);
    r.status = &lost;
    task_done(s, w->id, &r, &out);
    CU_ASSERT_EQUAL(task_of(s, t)->phase, TASK_HELD);
    fake_now_ms += (uint64_t)cfg.scheduler.heartbeat_interval_ms - 1;
    tasks_release_held(s, false, &out);
    CU_ASSERT_EQUAL(task_of(s, t)->phase, TASK_HELD);
    fake_now_ms += 1;
    tasks_release_held(s, false, &out);
    sched_dispatch(s, &out);
    sent_batch c[2];
    CU_ASSERT_EQUAL_FATAL(take_run_tasks(&out, c, 2), 1);
    CU_ASSERT_EQUAL(c[0].req->tasks[0]->attempt, 1);
    batches_free(b, 1);
    batches_free(c, 1);
    out_clear(&out);
    engine_free(s);
}

/* The client's lease on job, as WatchJob holds it. */
static void hold(scheduler *s, lm_id job, lm_rpc_call *call, outbox *out) {
    CU_ASSERT_EQUAL_FATAL(jobs_lease_check(s, job).code, LUMEN_OK);
    jobs_lease_hold(s, jobs_lease_new(s, call, job), out);
}

static bool job_alive(scheduler *s, lm_id job) { return lm_idmap_get(s->jobs, job) != NULL; }

static void test_a_job_nobody_holds_ends_after_the_grace(void) {
    scheduler *s = engine_new();
    add_node(s, "objstore", "s1:1", 0, NULL);
    lm_id job = job_start(s);
    outbox out = {0};
    hold(s, job, CALL(0), &out);
    uint64_t grace = (uint64_t)cfg.scheduler.job_grace_ms;
    /* A lease runs its course: answered, and the client holds it again. */
    fake_now_ms += JOB_LEASE_MS;
    jobs_renew_leases(s, &out);
    CU_ASSERT_EQUAL(count_answers(&out, CALL(0)), 1);
    fake_now_ms += grace - 1;
    hold(s, job, CALL(1), &out);
    fake_now_ms += 10 * grace;
    jobs_expire(s, &out);
    CU_ASSERT(job_alive(s, job)); /* held */
    /* Its client dies: the lease is cancelled, the grace starts. */
    job_lease *l = ((sjob *)lm_idmap_get(s->jobs, job))->lease;
    CU_ASSERT_FATAL(jobs_lease_cancelled(s, l));
    free(l); /* the face's, once it answered the call */
    fake_now_ms += grace - 1;
    jobs_expire(s, &out);
    CU_ASSERT(job_alive(s, job));
    fake_now_ms += 1;
    jobs_expire(s, &out);
    CU_ASSERT(!job_alive(s, job));
    CU_ASSERT_EQUAL(count_requests(&out, SCHED_RELEASE_JOB, "s1:1"), 1);
    out_clear(&out);
    engine_free(s);
}

static void test_a_restart_counts_the_grace_from_the_windows_end(void) {
    scheduler *s = engine_new();
    lm_id before = lm_id_random(), held = lm_id_random(), orphaned = lm_id_random();
    recovery_begin(s, 2, &before, 1, 2, 0);
    sched_job_get(s, held); /* what Redis said was running (scheduler.c's recover) */
    sched_job_get(s, orphaned);
    uint64_t timeout = (uint64_t)cfg.scheduler.heartbeat_timeout_ms;
    uint64_t grace = (uint64_t)cfg.scheduler.job_grace_ms;
    outbox out = {0};
    /* One client comes back during the window; the other never does. */
    CU_ASSERT_EQUAL(jobs_start(s, held, false).code, LUMEN_OK);
    hold(s, held, CALL(0), &out);
    fake_now_ms += timeout + grace; /* the window stays open until checked */
    jobs_expire(s, &out);
    CU_ASSERT(job_alive(s, orphaned)); /* clients may be on their way back */
    recovery_check(s, &out); /* the node never came back: the window ends now */
    CU_ASSERT(!s->recovering);
    fake_now_ms += grace - 1;
    jobs_expire(s, &out);
    CU_ASSERT(job_alive(s, orphaned));
    fake_now_ms += 1;
    jobs_expire(s, &out);
    CU_ASSERT(!job_alive(s, orphaned));
    CU_ASSERT(job_alive(s, held));
    /* The held one keeps living through its lease's renewals. */
    for (int i = 0; i < 4; i++) {
        fake_now_ms += JOB_LEASE_MS;
        jobs_renew_leases(s, &out);
        hold(s, held, CALL(1 + i % 2), &out);
        jobs_expire(s, &out);
    }
    CU_ASSERT(job_alive(s, held));
    job_lease *l = ((sjob *)lm_idmap_get(s->jobs, held))->lease;
    CU_ASSERT_FATAL(jobs_lease_cancelled(s, l)); /* as the server's shutdown does */
    free(l);
    out_clear(&out);
    engine_free(s);
}

int main(void) {
    if (!LM_IS_OK(lm_config_load(NULL, &cfg))) return 1;
    cfg.scheduler.max_retries = 0; /* a spec's 0 means this: no retry unless a test asks */
    lm_log_set_level(LM_LOG_ERROR);  /* the nodes these tests kill are no news */
    CU_TestInfo tests[] = {
        {"placement prefers the store of the biggest argument", test_placement_prefers_the_store_of_the_biggest_argument},
        {"placement spreads to the least loaded", test_placement_spreads_to_the_least_loaded},
        {"placement bounds each worker's queue", test_placement_bounds_each_workers_queue},
        {"a task waits for its argument", test_a_task_waits_for_its_argument},
        {"a failure flows down the graph", test_a_failure_flows_down_the_graph},
        {"a dead worker's tasks run again elsewhere", test_a_dead_workers_tasks_run_again_elsewhere},
        {"a lost result is rebuilt from lineage", test_a_lost_result_is_rebuilt_from_lineage},
        {"a lost put fails its refs", test_a_lost_put_fails_its_refs},
        {"a restart places nothing until the nodes are back", test_a_restart_places_nothing_until_the_nodes_are_back},
        {"a resubmitted task first asks for its result", test_a_resubmitted_task_first_asks_for_its_result},
        {"a job end cancels and releases", test_a_job_end_cancels_and_releases},
        {"a silent node dies at the heartbeat timeout", test_a_silent_node_dies_at_the_heartbeat_timeout},
        {"a held task waits a heartbeat", test_a_held_task_waits_a_heartbeat},
        {"a job nobody holds ends after the grace", test_a_job_nobody_holds_ends_after_the_grace},
        {"a restart counts the grace from the window's end", test_a_restart_counts_the_grace_from_the_windows_end},
        CU_TEST_INFO_NULL,
    };
    int rc = lm_test_main("engine", tests, NULL, NULL);
    lm_config_free(&cfg);
    return rc;
}

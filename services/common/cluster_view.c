/* cluster_view.c - see cluster_view.h. */
#include "cluster_view.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"

#define DEFAULT_LIMIT 50

static size_t page_limit(size_t limit) {
    return limit == 0 ? DEFAULT_LIMIT : limit > LM_VIEW_LIMIT_MAX ? LM_VIEW_LIMIT_MAX : limit;
}

static lumen_status oom(const char *what) { return lm_status(LUMEN_RESOURCE_EXHAUSTED, "%s: out of memory", what); }

/* ---- summary ---- */

static void add_counts(lm_task_counts *sum, const lm_task_counts *c) {
    for (int i = 0; i < LM_TASK_STATES; i++) sum->by_state[i] += c->by_state[i];
    sum->submitted += c->submitted;
    sum->finished += c->finished;
    sum->failed += c->failed;
    sum->retried += c->retried;
}

/* Tasks by state: the functions' counters, summed (there are few functions). */
static lumen_status task_totals(lm_redis *r, lm_task_counts *out) {
    char **fns = NULL;
    size_t n = 0;
    lumen_status st = lm_redis_task_fns(r, &fns, &n);
    lm_task_counts *c = LM_IS_OK(st) ? calloc(n ? n : 1, sizeof *c) : NULL;
    if (LM_IS_OK(st) && c == NULL) st = oom("task totals");
    if (LM_IS_OK(st)) st = lm_redis_fn_counts(r, (const char *const *)fns, n, c);
    for (size_t i = 0; LM_IS_OK(st) && i < n; i++) add_counts(out, &c[i]);
    free(c);
    lm_strings_free(fns, n);
    return st;
}

static void nodes_tally(const lm_node_list *list, lm_view_summary *s) {
    for (size_t i = 0; i < list->count; i++) {
        const lm_node_record *n = &list->nodes[i];
        if (n->state != LM_NODE_ALIVE) {
            s->nodes.dead++;
            continue;
        }
        s->nodes.alive++;
        if (n->kind == LM_NODE_WORKER) {
            s->nodes.workers++;
            s->nodes.slots += n->slots;
            s->nodes.slots_free += n->slots_free;
        } else {
            s->nodes.objstores++;
            s->nodes.bytes_used += n->bytes_used;
            s->nodes.memory_limit += n->memory_limit;
        }
    }
}

/* Actors by state: read from the newest actors' records (actors are few;
 * past LM_VIEW_SCAN_MAX the oldest are not counted by state). */
static lumen_status actors_tally(lm_redis *r, lm_view_summary *s) {
    lm_view_query q = {.limit = LM_VIEW_LIMIT_MAX};
    for (size_t seen = 0; seen < LM_VIEW_SCAN_MAX;) {
        lm_view_actor_page p = {0};
        lumen_status st = lm_view_actors(r, &q, &p);
        if (!LM_IS_OK(st)) return st;
        for (size_t i = 0; i < p.n; i++)
            if ((size_t)p.actors[i].state < 4) s->actors_by_state[p.actors[i].state]++;
        seen += p.n;
        q.cursor = p.next;
        lm_view_actor_page_fini(&p);
        if (q.cursor == 0) break;
    }
    return lm_ok();
}

lumen_status lm_view_summary_get(lm_redis *r, lm_view_summary *out) {
    memset(out, 0, sizeof *out);
    out->time_ms = lm_wall_ms();
    lm_node_list *nodes = NULL;
    lumen_status st = lm_redis_nodes_list(r, &nodes);
    if (LM_IS_OK(st)) nodes_tally(nodes, out);
    lm_node_list_free(nodes);
    lm_index ix[] = {{.kind = LM_INDEX_TASKS}, {.kind = LM_INDEX_JOBS}, {.kind = LM_INDEX_ACTORS}, {.kind = LM_INDEX_OBJS}};
    uint64_t n[4] = {0};
    if (LM_IS_OK(st)) st = lm_redis_index_count(r, ix, 4, n);
    out->tasks_total = n[0], out->jobs_total = n[1], out->actors_total = n[2], out->objects = n[3];
    if (LM_IS_OK(st)) st = lm_redis_set_count(r, "jobs:running", &out->jobs_running);
    if (LM_IS_OK(st)) st = task_totals(r, &out->tasks);
    if (LM_IS_OK(st) && out->actors_total > 0) st = actors_tally(r, out);
    return st;
}

static void counts_json(const lm_task_counts *c, lm_json *j) {
    for (int i = 0; i < LM_TASK_STATES; i++) lm_json_ku64(j, lm_task_state_name((lm_task_state)i), c->by_state[i]);
    lm_json_ku64(j, "submitted", c->submitted);
    lm_json_ku64(j, "finished", c->finished);
    lm_json_ku64(j, "failed", c->failed);
    lm_json_ku64(j, "retried", c->retried);
}

void lm_view_summary_json(const lm_view_summary *s, lm_json *j) {
    lm_json_ku64(j, "time_ms", s->time_ms);
    lm_json_key(j, "nodes");
    lm_json_obj(j);
    lm_json_ku64(j, "alive", s->nodes.alive);
    lm_json_ku64(j, "dead", s->nodes.dead);
    lm_json_ku64(j, "workers", s->nodes.workers);
    lm_json_ku64(j, "objstores", s->nodes.objstores);
    lm_json_ku64(j, "slots", s->nodes.slots);
    lm_json_ku64(j, "slots_free", s->nodes.slots_free);
    lm_json_ku64(j, "bytes_used", s->nodes.bytes_used);
    lm_json_ku64(j, "memory_limit", s->nodes.memory_limit);
    lm_json_obj_end(j);
    lm_json_key(j, "tasks");
    lm_json_obj(j);
    lm_json_ku64(j, "total", s->tasks_total);
    counts_json(&s->tasks, j);
    lm_json_obj_end(j);
    lm_json_key(j, "jobs");
    lm_json_obj(j);
    lm_json_ku64(j, "total", s->jobs_total);
    lm_json_ku64(j, "running", s->jobs_running);
    lm_json_obj_end(j);
    lm_json_key(j, "actors");
    lm_json_obj(j);
    lm_json_ku64(j, "total", s->actors_total);
    for (int i = 0; i < 4; i++) lm_json_ku64(j, lm_actor_state_name((lm_actor_state)i), s->actors_by_state[i]);
    lm_json_obj_end(j);
    lm_json_key(j, "objects");
    lm_json_obj(j);
    lm_json_ku64(j, "total", s->objects);
    lm_json_ku64(j, "bytes_stored", s->nodes.bytes_used);
    lm_json_obj_end(j);
}

void lm_view_nodes_json(const lm_node_list *nodes, const uint32_t *running, lm_json *j) {
    lm_json_arr(j);
    for (size_t i = 0; nodes && i < nodes->count; i++) {
        const lm_node_record *n = &nodes->nodes[i];
        lm_json_obj(j);
        lm_json_kid(j, "id", n->id);
        lm_json_kstr(j, "kind", lm_node_kind_name(n->kind));
        lm_json_kstr(j, "addr", n->addr);
        lm_json_kstr(j, "state", lm_node_state_name(n->state));
        lm_json_ku64(j, "slots", n->slots);
        lm_json_ku64(j, "slots_free", n->slots_free);
        if (running) lm_json_ku64(j, "running", running[i]);
        lm_json_ku64(j, "heartbeat_ms", n->heartbeat_ms);
        lm_json_ku64(j, "started_ms", n->started_ms);
        lm_json_ku64(j, "bytes_used", n->bytes_used);
        lm_json_ku64(j, "memory_limit", n->memory_limit);
        lm_json_obj_end(j);
    }
    lm_json_arr_end(j);
}

/* ---- walking an index, filtering records ---- */

/* How to read and filter one kind of record. */
typedef struct walk_ops {
    size_t size; /* of a record */
    lumen_status (*get)(lm_redis *r, const lm_id *ids, size_t n, void *recs, bool *found);
    bool (*match)(const void *rec, const void *query);
    void (*fini)(void *rec);
} walk_ops;

typedef struct walk {
    lm_index ix;
    bool by_score;   /* cursor: a score bound (tasks' seq), else an offset */
    bool filtering;  /* the index alone does not answer the query */
    uint64_t cursor;
    size_t limit;
    /* out */
    void *recs;
    uint64_t *scores;
    size_t n;
    uint64_t next;
} walk;

static lumen_status walk_run(lm_redis *r, walk *w, const walk_ops *ops, const void *query) {
    size_t chunk = w->filtering ? (w->limit * 2 > 500 ? w->limit * 2 : 500) : w->limit;
    lm_id *ids = malloc(chunk * sizeof *ids);
    uint64_t *scores = malloc(chunk * sizeof *scores);
    char *tmp = malloc(chunk * ops->size);
    bool *found = malloc(chunk * sizeof *found);
    w->recs = malloc(w->limit * ops->size);
    w->scores = malloc(w->limit * sizeof *w->scores);
    lumen_status st = ids && scores && tmp && found && w->recs && w->scores ? lm_ok() : oom("view");
    uint64_t pos = w->cursor; /* the next record's cursor */
    size_t read = 0;
    w->next = 0;
    while (LM_IS_OK(st)) {
        size_t want = w->filtering ? chunk : w->limit - w->n, k = 0;
        st = w->by_score ? lm_redis_index_page(r, &w->ix, pos, 0, want, ids, scores, &k)
                         : lm_redis_index_page(r, &w->ix, 0, (size_t)pos, want, ids, scores, &k);
        if (LM_IS_OK(st) && k > 0) st = ops->get(r, ids, k, tmp, found);
        if (!LM_IS_OK(st) || k == 0) break;
        size_t i = 0;
        for (; i < k && w->n < w->limit; i++) {
            void *rec = tmp + i * ops->size;
            if (found[i] && ops->match(rec, query)) {
                memcpy((char *)w->recs + w->n * ops->size, rec, ops->size);
                w->scores[w->n++] = scores[i];
            } else {
                ops->fini(rec);
            }
            pos = w->by_score ? scores[i] : pos + 1;
        }
        for (size_t m = i; m < k; m++) ops->fini(tmp + m * ops->size); /* read past a full page */
        read += i;
        bool more = i < k || k == want;
        if (w->n == w->limit || read >= LM_VIEW_SCAN_MAX || !more) {
            w->next = more ? pos : 0;
            break;
        }
    }
    if (w->by_score && w->next == 1) w->next = 0; /* seqs start at 1: nothing below */
    free(ids);
    free(scores);
    free(tmp);
    free(found);
    if (!LM_IS_OK(st)) {
        for (size_t i = 0; i < w->n; i++) ops->fini((char *)w->recs + i * ops->size);
        free(w->recs);
        free(w->scores);
        w->recs = NULL;
        w->scores = NULL;
        w->n = 0;
    }
    return st;
}

/* ---- tasks ---- */

static bool task_match(const void *rec, const void *query) {
    const lm_task_record *t = rec;
    const lm_view_task_query *q = query;
    return (!q->by_state || t->state == q->state) && (!q->by_job || lm_id_equal(t->job, q->job)) &&
           (q->fn == NULL || q->fn[0] == '\0' || (t->fn && strcmp(t->fn, q->fn) == 0));
}

static void task_fini(void *rec) { lm_task_record_fini(rec); }

static lumen_status task_get(lm_redis *r, const lm_id *ids, size_t n, void *recs, bool *found) {
    return lm_redis_tasks_get(r, ids, n, recs, found);
}

static const walk_ops task_ops = {sizeof(lm_task_record), task_get, task_match, task_fini};

lumen_status lm_view_tasks(lm_redis *r, const lm_view_task_query *q, lm_view_task_page *out) {
    memset(out, 0, sizeof *out);
    bool by_fn = q->fn != NULL && q->fn[0] != '\0';
    lm_index cand[3];
    size_t nc = 0;
    if (q->by_state) cand[nc++] = (lm_index){.kind = LM_INDEX_TASKS_STATE, .state = q->state};
    if (q->by_job) cand[nc++] = (lm_index){.kind = LM_INDEX_TASKS_JOB, .job = q->job};
    if (by_fn) cand[nc++] = (lm_index){.kind = LM_INDEX_TASKS_FN, .fn = q->fn};
    if (nc == 0) cand[nc++] = (lm_index){.kind = LM_INDEX_TASKS};
    uint64_t sizes[3];
    lumen_status st = lm_redis_index_count(r, cand, nc, sizes);
    if (!LM_IS_OK(st)) return st;
    size_t best = 0; /* the smallest index, filtered by the other conditions */
    for (size_t i = 1; i < nc; i++)
        if (sizes[i] < sizes[best]) best = i;
    out->has_total = nc == 1;
    out->total = sizes[best];
    walk w = {.ix = cand[best], .by_score = true, .filtering = nc > 1, .cursor = q->cursor,
              .limit = page_limit(q->limit)};
    st = walk_run(r, &w, &task_ops, q);
    out->tasks = w.recs;
    out->seqs = w.scores;
    out->n = w.n;
    out->next = w.next;
    return st;
}

void lm_view_task_page_fini(lm_view_task_page *p) {
    for (size_t i = 0; i < p->n; i++) lm_task_record_fini(&p->tasks[i]);
    free(p->tasks);
    free(p->seqs);
    memset(p, 0, sizeof *p);
}

void lm_view_task_json(const lm_task_record *t, uint64_t seq, lm_json *j) {
    lm_json_obj(j);
    lm_json_kid(j, "id", t->id);
    if (seq) lm_json_ku64(j, "seq", seq);
    lm_json_kstr(j, "fn", t->fn ? t->fn : "");
    lm_json_kid(j, "job", t->job);
    lm_json_kstr(j, "state", lm_task_state_name(t->state));
    lm_json_kid(j, "worker", t->worker);
    lm_json_ku64(j, "attempts", t->attempts);
    lm_json_kstr(j, "error", t->error ? t->error : "");
    lm_json_ku64(j, "submitted_ms", t->submitted_ms);
    lm_json_ku64(j, "finished_ms", t->finished_ms);
    lm_json_obj_end(j);
}

/* "next" and "total" (when known) of a page. */
static void page_tail_json(uint64_t next, bool has_total, uint64_t total, lm_json *j) {
    lm_json_key(j, "next");
    if (next) lm_json_u64(j, next);
    else lm_json_null(j);
    if (has_total) lm_json_ku64(j, "total", total);
}

void lm_view_task_page_json(const lm_view_task_page *p, lm_json *j) {
    lm_json_obj(j);
    lm_json_key(j, "tasks");
    lm_json_arr(j);
    for (size_t i = 0; i < p->n; i++) lm_view_task_json(&p->tasks[i], p->seqs[i], j);
    lm_json_arr_end(j);
    page_tail_json(p->next, p->has_total, p->total, j);
    lm_json_obj_end(j);
}

lumen_status lm_view_task_get(lm_redis *r, lm_id id, lm_task_record *out, char **log, size_t *log_len) {
    *log = NULL;
    *log_len = 0;
    bool found = false;
    lumen_status st = lm_redis_tasks_get(r, &id, 1, out, &found);
    if (!LM_IS_OK(st)) return st;
    if (!found) {
        lm_task_record_fini(out);
        return lm_status(LUMEN_NOT_FOUND, "no task %s", lm_id_str(id).s);
    }
    st = lm_redis_task_log_get(r, id, log, log_len);
    if (st.code == LUMEN_NOT_FOUND) st = lm_ok(); /* it wrote nothing */
    if (!LM_IS_OK(st)) lm_task_record_fini(out);
    return st;
}

/* ---- jobs ---- */

lumen_status lm_view_jobs(lm_redis *r, const lm_view_query *q, lm_view_job_page *out) {
    memset(out, 0, sizeof *out);
    size_t limit = page_limit(q->limit);
    lm_index ix = {.kind = LM_INDEX_JOBS};
    lm_id *ids = calloc(limit, sizeof *ids);
    bool *found = calloc(limit, sizeof *found);
    out->jobs = calloc(limit, sizeof *out->jobs);
    out->counts = calloc(limit, sizeof *out->counts);
    lumen_status st = ids && found && out->jobs && out->counts ? lm_ok() : oom("jobs");
    size_t k = 0;
    if (LM_IS_OK(st)) st = lm_redis_index_count(r, &ix, 1, &out->total);
    if (LM_IS_OK(st)) st = lm_redis_index_page(r, &ix, 0, (size_t)q->cursor, limit, ids, NULL, &k);
    if (LM_IS_OK(st)) st = lm_redis_jobs_get(r, ids, k, out->jobs, found);
    if (LM_IS_OK(st)) st = lm_redis_job_counts(r, ids, k, out->counts);
    if (LM_IS_OK(st)) {
        out->n = k;
        out->next = q->cursor + k < out->total && k == limit ? q->cursor + k : 0;
    }
    free(ids);
    free(found);
    if (!LM_IS_OK(st)) lm_view_job_page_fini(out);
    return st;
}

void lm_view_job_page_fini(lm_view_job_page *p) {
    free(p->jobs);
    free(p->counts);
    memset(p, 0, sizeof *p);
}

void lm_view_job_page_json(const lm_view_job_page *p, lm_json *j) {
    lm_json_obj(j);
    lm_json_key(j, "jobs");
    lm_json_arr(j);
    for (size_t i = 0; i < p->n; i++) {
        const lm_job_record *job = &p->jobs[i];
        const lm_task_counts *c = &p->counts[i];
        lm_json_obj(j);
        lm_json_kid(j, "id", job->id);
        lm_json_kstr(j, "state", lm_job_state_name(job->state));
        lm_json_ku64(j, "started_ms", job->started_ms);
        lm_json_ku64(j, "finished_ms", job->finished_ms);
        lm_json_key(j, "tasks");
        lm_json_obj(j);
        lm_json_ku64(j, "total", c->submitted);
        lm_json_ku64(j, "done", c->by_state[LM_TASK_FINISHED] + c->by_state[LM_TASK_FAILED]);
        counts_json(c, j);
        lm_json_obj_end(j);
        lm_json_obj_end(j);
    }
    lm_json_arr_end(j);
    page_tail_json(p->next, true, p->total, j);
    lm_json_obj_end(j);
}

/* ---- actors and objects ---- */

/* The query's state word, checked against the record's. */
static bool state_match(const lm_view_query *q, const char *state) {
    return q->state == NULL || q->state[0] == '\0' || strcasecmp(q->state, state) == 0;
}

static bool actor_match(const void *rec, const void *query) {
    const lm_actor_record *a = rec;
    const lm_view_query *q = query;
    return (!q->by_job || lm_id_equal(a->job, q->job)) && state_match(q, lm_actor_state_name(a->state));
}

static void actor_fini(void *rec) { lm_redis_actor_record_free(rec); }

static lumen_status actor_get(lm_redis *r, const lm_id *ids, size_t n, void *recs, bool *found) {
    return lm_redis_actors_get(r, ids, n, recs, found);
}

static const walk_ops actor_ops = {sizeof(lm_actor_record), actor_get, actor_match, actor_fini};

static bool obj_match(const void *rec, const void *query) {
    const lm_obj_record *o = rec;
    const lm_view_query *q = query;
    return (!q->by_job || lm_id_equal(o->job, q->job)) && state_match(q, lm_obj_state_name(o->state));
}

static void obj_fini(void *rec) {
    lm_obj_record *o = rec;
    free((char *)o->error);
    o->error = NULL;
}

static lumen_status obj_get(lm_redis *r, const lm_id *ids, size_t n, void *recs, bool *found) {
    return lm_redis_objs_get(r, ids, n, recs, found);
}

static const walk_ops obj_ops = {sizeof(lm_obj_record), obj_get, obj_match, obj_fini};

/* A page of actors or objects: offset cursor, filters applied to the records. */
static lumen_status offset_page(lm_redis *r, lm_index_kind kind, const lm_view_query *q, const walk_ops *ops,
                                void **recs, size_t *n, uint64_t *next, uint64_t *total) {
    lm_index ix = {.kind = kind};
    lumen_status st = lm_redis_index_count(r, &ix, 1, total);
    walk w = {.ix = ix, .filtering = q->by_job || (q->state && q->state[0]), .cursor = q->cursor,
              .limit = page_limit(q->limit)};
    if (LM_IS_OK(st)) st = walk_run(r, &w, ops, q);
    free(w.scores);
    *recs = w.recs;
    *n = w.n;
    *next = w.next;
    return st;
}

lumen_status lm_view_actors(lm_redis *r, const lm_view_query *q, lm_view_actor_page *out) {
    memset(out, 0, sizeof *out);
    void *recs = NULL;
    lumen_status st = offset_page(r, LM_INDEX_ACTORS, q, &actor_ops, &recs, &out->n, &out->next, &out->total);
    out->actors = recs;
    return st;
}

void lm_view_actor_page_fini(lm_view_actor_page *p) {
    for (size_t i = 0; i < p->n; i++) lm_redis_actor_record_free(&p->actors[i]);
    free(p->actors);
    memset(p, 0, sizeof *p);
}

void lm_view_actor_page_json(const lm_view_actor_page *p, lm_json *j) {
    lm_json_obj(j);
    lm_json_key(j, "actors");
    lm_json_arr(j);
    for (size_t i = 0; i < p->n; i++) {
        const lm_actor_record *a = &p->actors[i];
        lm_json_obj(j);
        lm_json_kid(j, "id", a->id);
        lm_json_kstr(j, "class", a->class_name);
        lm_json_kstr(j, "name", a->name);
        lm_json_kstr(j, "state", lm_actor_state_name(a->state));
        lm_json_kid(j, "worker", a->worker);
        lm_json_kid(j, "job", a->job);
        lm_json_ku64(j, "restarts", a->restarts);
        lm_json_ku64(j, "incarnation", a->incarnation);
        lm_json_ku64(j, "calls", a->calls);
        lm_json_kstr(j, "error", a->error);
        lm_json_obj_end(j);
    }
    lm_json_arr_end(j);
    page_tail_json(p->next, true, p->total, j);
    lm_json_obj_end(j);
}

lumen_status lm_view_objects(lm_redis *r, const lm_view_query *q, lm_view_obj_page *out) {
    memset(out, 0, sizeof *out);
    void *recs = NULL;
    lumen_status st = offset_page(r, LM_INDEX_OBJS, q, &obj_ops, &recs, &out->n, &out->next, &out->total);
    out->objs = recs;
    return st;
}

void lm_view_obj_page_fini(lm_view_obj_page *p) {
    for (size_t i = 0; i < p->n; i++) obj_fini(&p->objs[i]);
    free(p->objs);
    memset(p, 0, sizeof *p);
}

void lm_view_obj_page_json(const lm_view_obj_page *p, lm_json *j) {
    lm_json_obj(j);
    lm_json_key(j, "objects");
    lm_json_arr(j);
    for (size_t i = 0; i < p->n; i++) {
        const lm_obj_record *o = &p->objs[i];
        lm_json_obj(j);
        lm_json_kid(j, "id", o->id);
        lm_json_kstr(j, "state", lm_obj_state_name(o->state));
        lm_json_ku64(j, "size", o->size);
        lm_json_kid(j, "task", o->task);
        lm_json_kid(j, "job", o->job);
        lm_json_kstr(j, "error", o->error ? o->error : "");
        lm_json_obj_end(j);
    }
    lm_json_arr_end(j);
    page_tail_json(p->next, true, p->total, j);
    lm_json_obj_end(j);
}

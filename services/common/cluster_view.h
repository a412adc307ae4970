/*
 * cluster_view.h - the cluster as people look at it: a summary, nodes, jobs
 * with their progress, pages of tasks, actors and objects, read from Redis
 * into structs, and their JSON. Shared by the dashboard's /api/ (scheduler)
 * and `lumen status|tasks|actors|objects` (CLI), so both say the same.
 *
 * Everything is read through the indexes and counters that the writers keep
 * (redis_state.h): a summary costs a few round trips whatever the number of
 * tasks, a page of N records one or two more. Nothing walks the key space.
 *
 * Pages go newest first. A page's `next` cursor (0: no more) is given back
 * to get the next one; for tasks it is a task's seq, so pages do not shift
 * while new tasks arrive. Filters the index cannot answer are applied to
 * the records read, at most LM_VIEW_SCAN_MAX of them per page: a page may
 * then be short and still have a next cursor.
 */
#ifndef LM_CLUSTER_VIEW_H
#define LM_CLUSTER_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "redis_state.h"

#define LM_VIEW_LIMIT_MAX 1000 /* records per page */
#define LM_VIEW_SCAN_MAX 5000  /* records read per page when filtering */

typedef struct lm_view_summary {
    uint64_t time_ms;
    struct {
        uint32_t alive, dead, workers, objstores; /* workers and objstores: alive ones */
        uint64_t slots, slots_free;               /* of alive workers */
        uint64_t bytes_used, memory_limit;        /* of alive object stores */
    } nodes;
    uint64_t tasks_total;   /* task records */
    lm_task_counts tasks;   /* summed over every function */
    uint64_t jobs_total, jobs_running;
    uint64_t actors_total;
    uint64_t actors_by_state[4];  /* lm_actor_state; of the newest LM_VIEW_SCAN_MAX actors */
    uint64_t objects;       /* object records (the objects of jobs still running) */
} lm_view_summary;

lumen_status lm_view_summary_get(lm_redis *r, lm_view_summary *out);
/* Writes the summary's members into the object being written. */
void lm_view_summary_json(const lm_view_summary *s, lm_json *j);

/* nodes: lm_redis_nodes_list. running (may be NULL): tasks each node has
 * in flight, as the scheduler knows it, by index in the list. */
void lm_view_nodes_json(const lm_node_list *nodes, const uint32_t *running, lm_json *j);

/* ---- tasks ---- */
typedef struct lm_view_task_query {
    bool by_state;
    lm_task_state state;
    bool by_job;
    lm_id job;
    const char *fn;  /* NULL or "": any function */
    uint64_t cursor; /* 0: from the newest */
    size_t limit;    /* 0: 50; at most LM_VIEW_LIMIT_MAX */
} lm_view_task_query;

typedef struct lm_view_task_page {
    lm_task_record *tasks; /* strings owned by the page */
    uint64_t *seqs;
    size_t n;
    uint64_t next;   /* cursor of the next page; 0: this was the last */
    bool has_total;  /* total: tasks matching the query (one filter or none) */
    uint64_t total;
} lm_view_task_page;

lumen_status lm_view_tasks(lm_redis *r, const lm_view_task_query *q, lm_view_task_page *out);
void lm_view_task_page_fini(lm_view_task_page *p);
/* {"tasks": [...], "next": ..., "total": ...} */
void lm_view_task_page_json(const lm_view_task_page *p, lm_json *j);
void lm_view_task_json(const lm_task_record *t, uint64_t seq, lm_json *j);

/* One task and its log (*log NULL when none; free it). NOT_FOUND without a record. */
lumen_status lm_view_task_get(lm_redis *r, lm_id id, lm_task_record *out, char **log, size_t *log_len);

/* ---- jobs, actors, objects: offset cursors ---- */
typedef struct lm_view_query {
    bool by_job;
    lm_id job;
    const char *state; /* NULL or "": any; else an actor's or object's state word */
    uint64_t cursor;   /* 0: from the newest */
    size_t limit;      /* 0: 50 */
} lm_view_query;

typedef struct lm_view_job_page {
    lm_job_record *jobs;
    lm_task_counts *counts;
    size_t n;
    uint64_t next, total;
} lm_view_job_page;

lumen_status lm_view_jobs(lm_redis *r, const lm_view_query *q, lm_view_job_page *out);
void lm_view_job_page_fini(lm_view_job_page *p);
void lm_view_job_page_json(const lm_view_job_page *p, lm_json *j);

typedef struct lm_view_actor_page {
    lm_actor_record *actors;
    size_t n;
    uint64_t next, total;
} lm_view_actor_page;

lumen_status lm_view_actors(lm_redis *r, const lm_view_query *q, lm_view_actor_page *out);
void lm_view_actor_page_fini(lm_view_actor_page *p);
void lm_view_actor_page_json(const lm_view_actor_page *p, lm_json *j);

typedef struct lm_view_obj_page {
    lm_obj_record *objs;
    size_t n;
    uint64_t next, total;
} lm_view_obj_page;

lumen_status lm_view_objects(lm_redis *r, const lm_view_query *q, lm_view_obj_page *out);
void lm_view_obj_page_fini(lm_view_obj_page *p);
void lm_view_obj_page_json(const lm_view_obj_page *p, lm_json *j);

#endif

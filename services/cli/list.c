/*
 * list.c - `lumen tasks`, `lumen actors`, `lumen objects`: pages of records
 * with filters, newest first, as the dashboard's /api/tasks, /api/actors and
 * /api/objects serve them (cluster_view.h: the same queries, a table or the
 * same JSON with --json).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "cluster_view.h"

static cli_redis_flags f;
static struct {
    const char *state, *job, *fn, *limit, *cursor, *json;
} q;

#define FILTER_ROWS(states)                                                                        \
    {"state", "STATE", "only records in this state (" states ")", &q.state},                       \
    {"job", "JOB_ID", "only this job's (32 hex digits)", &q.job},                                  \
    {"limit", "N", "records per page (default 50, at most 1000)", &q.limit},                       \
    {"cursor", "C", "the page after the one that printed this cursor", &q.cursor},                 \
    {"json", NULL, "print the page as JSON, as the dashboard's API does", &q.json}

static const cli_flag task_flags[] = {
    FILTER_ROWS("PENDING, READY, RUNNING, FINISHED, FAILED"),
    {"fn", "NAME", "only tasks of this function", &q.fn},
    CLI_REDIS_FLAG_ROWS(f),
    {NULL, NULL, NULL, NULL},
};
static const cli_flag actor_flags[] = {
    FILTER_ROWS("PENDING, ALIVE, RESTARTING, DEAD"),
    CLI_REDIS_FLAG_ROWS(f),
    {NULL, NULL, NULL, NULL},
};
static const cli_flag object_flags[] = {
    FILTER_ROWS("PENDING, READY, LOST, FAILED"),
    CLI_REDIS_FLAG_ROWS(f),
    {NULL, NULL, NULL, NULL},
};

#define DETAILS "Newest first. The key prefix and Redis password come from the config file and the\n" \
                "environment (LUMEN_KEY_PREFIX, LUMEN_REDIS_PASSWORD).\n"
static const cli_command tasks_cmd = {
    "tasks", "[--state S] [--job ID] [--fn NAME] [--limit N] [--cursor C] [--json]",
    "Lists task records, with their state, worker, attempts and errors.", DETAILS, task_flags, 0};
static const cli_command actors_cmd = {
    "actors", "[--state S] [--job ID] [--limit N] [--cursor C] [--json]",
    "Lists actors: class, name, state, calls and restarts.", DETAILS, actor_flags, 0};
static const cli_command objects_cmd = {
    "objects", "[--state S] [--job ID] [--limit N] [--cursor C] [--json]",
    "Lists the object records of running jobs: state, size, the task that makes each.", DETAILS, object_flags, 0};

/* The filters shared by the three commands; 2 after saying what is wrong, else -1. */
static int parse_filters(const cli_command *cmd, lm_view_query *out) {
    long v = 0;
    *out = (lm_view_query){.state = q.state};
    if (q.limit && !cli_parse_int(q.limit, 1, LM_VIEW_LIMIT_MAX, &v))
        return cli_bad_arg(cmd, "--limit wants 1..%d, not \"%s\"", LM_VIEW_LIMIT_MAX, q.limit);
    out->limit = (size_t)v;
    if (q.cursor) {
        char *end;
        out->cursor = strtoull(q.cursor, &end, 10);
        if (*end || q.cursor[0] == '-' || q.cursor[0] == '\0')
            return cli_bad_arg(cmd, "--cursor wants the number a page printed, not \"%s\"", q.cursor);
    }
    if (q.job && !(out->by_job = lm_id_from_hex(q.job, &out->job)))
        return cli_bad_arg(cmd, "--job wants 32 hex digits, not \"%s\"", q.job);
    return -1;
}

static const char *short_id(lm_id id, char buf[LM_ID_HEX_LEN + 1]) {
    if (lm_id_is_zero(id)) return "-";
    lm_id_to_hex(id, buf);
    buf[8] = '\0';
    return buf;
}

/* "--cursor N" for the next page, or nothing more. */
static void print_next(uint64_t next, size_t n, bool has_total, uint64_t total) {
    if (has_total) printf("%zu shown of %" PRIu64 ".", n, total);
    else printf("%zu shown.", n);
    if (next) printf(" Next page: --cursor %" PRIu64 "\n", next);
    else printf("\n");
}

/* Prints the page's JSON (json.out); false when out of memory. */
static bool print_json(lm_json *j) {
    bool ok = !j->out.oom;
    if (ok) printf("%s\n", j->out.data);
    lm_buf_fini(&j->out);
    return ok;
}

static int finish(const char *cmd, lumen_status st, cli_redis *r) {
    if (!LM_IS_OK(st)) fprintf(stderr, "lumen %s: %s\n", cmd, st.msg);
    cli_redis_close(r);
    return LM_IS_OK(st) && fflush(stdout) == 0 ? 0 : 1;
}

static int open_query(const cli_command *cmd, int argc, char **argv, lm_view_query *vq, cli_redis *r) {
    size_t nargs;
    int rc = cli_parse(cmd, argc, argv, NULL, &nargs);
    if (rc < 0) rc = parse_filters(cmd, vq);
    if (rc < 0) rc = cli_redis_open(cmd, &f, r);
    return rc;
}

int cli_cmd_tasks(int argc, char **argv) {
    lm_view_query vq;
    cli_redis r;
    int rc = open_query(&tasks_cmd, argc, argv, &vq, &r);
    if (rc >= 0) return rc;
    lm_view_task_query tq = {.by_job = vq.by_job, .job = vq.job, .fn = q.fn, .cursor = vq.cursor, .limit = vq.limit};
    if (q.state && !(tq.by_state = lm_task_state_parse(q.state, &tq.state))) {
        cli_redis_close(&r);
        return cli_bad_arg(&tasks_cmd, "--state wants PENDING, READY, RUNNING, FINISHED or FAILED, not \"%s\"", q.state);
    }
    lm_view_task_page p;
    lumen_status st = lm_view_tasks(r.redis, &tq, &p);
    if (!LM_IS_OK(st)) return finish("tasks", st, &r);
    if (q.json) {
        lm_json j = {0};
        lm_view_task_page_json(&p, &j);
        if (!print_json(&j)) st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        uint64_t now = lm_wall_ms();
        printf("%-32s  %-20s  %-8s  %-3s  %-8s  %-8s  %s\n", "TASK", "FUNCTION", "STATE", "RUN", "WORKER", "AGE", "ERROR");
        for (size_t i = 0; i < p.n; i++) {
            const lm_task_record *t = &p.tasks[i];
            char id[LM_ID_HEX_LEN + 1], w[LM_ID_HEX_LEN + 1], age[16];
            snprintf(age, sizeof age, "%.0fs", t->submitted_ms && now > t->submitted_ms ? (double)(now - t->submitted_ms) / 1000 : 0.0);
            printf("%-32s  %-20.20s  %-8s  %-3u  %-8s  %-8s  %s\n", lm_id_to_hex(t->id, id), t->fn ? t->fn : "",
                   lm_task_state_name(t->state), t->attempts, short_id(t->worker, w), age, t->error ? t->error : "");
        }
        print_next(p.next, p.n, p.has_total, p.total);
    }
    lm_view_task_page_fini(&p);
    return finish("tasks", st, &r);
}

int cli_cmd_actors(int argc, char **argv) {
    lm_view_query vq;
    cli_redis r;
    int rc = open_query(&actors_cmd, argc, argv, &vq, &r);
    if (rc >= 0) return rc;
    lm_actor_state as;
    if (q.state && !lm_actor_state_parse(q.state, &as)) {
        cli_redis_close(&r);
        return cli_bad_arg(&actors_cmd, "--state wants PENDING, ALIVE, RESTARTING or DEAD, not \"%s\"", q.state);
    }
    lm_view_actor_page p;
    lumen_status st = lm_view_actors(r.redis, &vq, &p);
    if (!LM_IS_OK(st)) return finish("actors", st, &r);
    if (q.json) {
        lm_json j = {0};
        lm_view_actor_page_json(&p, &j);
        if (!print_json(&j)) st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        printf("%-32s  %-20s  %-12s  %-10s  %-8s  %-6s  %-8s  %s\n", "ACTOR", "CLASS", "NAME", "STATE", "WORKER", "CALLS",
               "RESTARTS", "ERROR");
        for (size_t i = 0; i < p.n; i++) {
            const lm_actor_record *a = &p.actors[i];
            char id[LM_ID_HEX_LEN + 1], w[LM_ID_HEX_LEN + 1];
            printf("%-32s  %-20.20s  %-12.12s  %-10s  %-8s  %-6" PRIu64 "  %-8u  %s\n", lm_id_to_hex(a->id, id),
                   a->class_name ? a->class_name : "", a->name && a->name[0] ? a->name : "-",
                   lm_actor_state_name(a->state), short_id(a->worker, w), a->calls, a->restarts, a->error ? a->error : "");
        }
        print_next(p.next, p.n, true, p.total);
    }
    lm_view_actor_page_fini(&p);
    return finish("actors", st, &r);
}

int cli_cmd_objects(int argc, char **argv) {
    lm_view_query vq;
    cli_redis r;
    int rc = open_query(&objects_cmd, argc, argv, &vq, &r);
    if (rc >= 0) return rc;
    lm_obj_state os;
    if (q.state && !lm_obj_state_parse(q.state, &os)) {
        cli_redis_close(&r);
        return cli_bad_arg(&objects_cmd, "--state wants PENDING, READY, LOST or FAILED, not \"%s\"", q.state);
    }
    lm_view_obj_page p;
    lumen_status st = lm_view_objects(r.redis, &vq, &p);
    if (!LM_IS_OK(st)) return finish("objects", st, &r);
    if (q.json) {
        lm_json j = {0};
        lm_view_obj_page_json(&p, &j);
        if (!print_json(&j)) st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        printf("%-32s  %-8s  %12s  %-8s  %-8s  %s\n", "OBJECT", "STATE", "BYTES", "TASK", "JOB", "ERROR");
        for (size_t i = 0; i < p.n; i++) {
            const lm_obj_record *o = &p.objs[i];
            char id[LM_ID_HEX_LEN + 1], t[LM_ID_HEX_LEN + 1], j[LM_ID_HEX_LEN + 1];
            printf("%-32s  %-8s  %12" PRIu64 "  %-8s  %-8s  %s\n", lm_id_to_hex(o->id, id), lm_obj_state_name(o->state),
                   o->size, short_id(o->task, t), short_id(o->job, j), o->error ? o->error : "");
        }
        print_next(p.next, p.n, true, p.total);
    }
    lm_view_obj_page_fini(&p);
    return finish("objects", st, &r);
}

/* dashboard.c - see dashboard.h. */
#include "dashboard.h"

#include <microhttpd.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster_view.h"
#include "json.h"
#include "listener.h"
#include "log.h"
#include "redis_state.h"

/* The page, generated at build time from dashboard/index.html. */
extern const unsigned char dashboard_html[];
extern const size_t dashboard_html_len;

#define POOL_THREADS 2
/* Connections (listener.h): a stranger's idle or dribbling ones are
 * unproven and cannot keep the page from its users: past their caps the
 * oldest go, and none lives longer than PROVE_TIMEOUT_MS without a request
 * that carries the token. */
#define MAX_CONNECTIONS 256
#define MAX_UNPROVEN 64
#define MAX_UNPROVEN_PER_PEER 32
#define PROVE_TIMEOUT_MS 10000
#define CONNECTION_TIMEOUT_S 30 /* a proven connection's idle time */
#define FORM_MAX 1024 /* bytes of a login form */
#define COOKIE "lumen_session"

struct dashboard {
    const lm_config *cfg;
    scheduler *sched;
    lm_rpc_server *rpc;
    struct MHD_Daemon *mhd;
    lm_listener *listener;
    int port;
    char session[65]; /* the cookie's value: random, made at start */
    pthread_mutex_t redis_mu; /* guards the lazy connect; the handle serializes itself */
    lm_redis *redis;
};

/* ---- responses ---- */

typedef struct reply {
    unsigned status;
    const char *type;
    lm_buf body;
    const char *location;   /* a redirect */
    bool set_cookie;
    bool challenge;         /* 401: WWW-Authenticate */
} reply;

static enum MHD_Result send_reply(dashboard *d, struct MHD_Connection *conn, reply *r) {
    if (r->body.oom) {
        lm_buf_fini(&r->body);
        r->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        r->type = "application/json";
        lm_buf_puts(&r->body, "{\"error\":\"out of memory\"}");
    }
    size_t len = r->body.len;
    char *data = r->body.data; /* MHD frees it with free() */
    r->body.data = NULL;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, len ? data : (void *)"", len ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        free(data);
        return MHD_NO;
    }
    if (!len) free(data);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->type ? r->type : "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    if (r->location) MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
    if (r->challenge) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"lumen\"");
    if (r->set_cookie) {
        char cookie[128];
        snprintf(cookie, sizeof cookie, COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict", d->session);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE, cookie);
    }
    enum MHD_Result ret = MHD_queue_response(conn, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void json_error(reply *r, unsigned status, const char *fmt, ...) LM_PRINTF(3, 4);
static void json_error(reply *r, unsigned status, const char *fmt, ...) {
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lm_buf_fini(&r->body);
    r->status = status;
    r->type = "application/json";
    lm_json j = {0};
    lm_json_obj(&j);
    lm_json_kstr(&j, "error", msg);
    lm_json_obj_end(&j);
    r->body = j.out;
}

/* A lumen_status as the HTTP error it is. */
static void status_error(reply *r, lumen_status st) {
    unsigned code = st.code == LUMEN_NOT_FOUND          ? MHD_HTTP_NOT_FOUND
                    : st.code == LUMEN_INVALID_ARGUMENT ? MHD_HTTP_BAD_REQUEST
                    : st.code == LUMEN_UNAVAILABLE      ? MHD_HTTP_SERVICE_UNAVAILABLE
                                                        : MHD_HTTP_INTERNAL_SERVER_ERROR;
    json_error(r, code, "%s", st.msg);
}

/* ---- authentication ---- */

static bool equal_ct(const char *a, const char *b) { /* constant time in the secret's length */
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = la != lb;
    for (size_t i = 0; i < lb; i++) diff |= (unsigned char)(a[i % (la ? la : 1)] ^ b[i]);
    return diff == 0 && la > 0;
}

static bool authorized(dashboard *d, struct MHD_Connection *conn) {
    const char *token = d->cfg->cluster.token;
    if (token == NULL || token[0] == '\0') return true;
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth != NULL && strncmp(auth, "Bearer ", 7) == 0 && equal_ct(auth + 7, token)) return true;
    const char *cookie = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, COOKIE);
    return cookie != NULL && equal_ct(cookie, d->session);
}

/* Tells the listener what the request's connection did (listener.h). */
static void note(dashboard *d, struct MHD_Connection *conn, lm_conn_event ev) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci != NULL && ci->client_addr != NULL) lm_listener_note(d->listener, ci->client_addr, ev);
}

static void login_page(reply *r, unsigned status, const char *why) {
    r->status = status;
    r->type = "text/html; charset=utf-8";
    r->challenge = status == MHD_HTTP_UNAUTHORIZED;
    lm_buf_puts(&r->body,
                "<!doctype html><html><head><meta charset=utf-8><title>Lumen: sign in</title>"
                "<style>body{font-family:sans-serif;background:#111827;color:#e5e7eb;display:flex;"
                "justify-content:center;margin-top:12vh}form{background:#1f2937;padding:2em;border-radius:8px}"
                "input{display:block;margin:.6em 0;padding:.5em;width:22em}</style></head><body>"
                "<form method=post action=/login><h2>Lumen dashboard</h2>"
                "<p>This cluster has a token (<code>lumen start</code> wrote it to its run dir).</p>");
    if (why) lm_buf_printf(&r->body, "<p style=color:#f87171>%s</p>", why);
    lm_buf_puts(&r->body, "<input type=password name=token placeholder=token autofocus>"
                          "<input type=submit value='Sign in'></form></body></html>");
}

/* %XX and + of a form or query value, in place. */
static void url_decode(char *s) {
    char *o = s;
    for (; *s; s++) {
        if (*s == '+') *o++ = ' ';
        else if (*s == '%' && s[1] && s[2] && strchr("0123456789abcdefABCDEF", s[1]) &&
                 strchr("0123456789abcdefABCDEF", s[2])) {
            char hex[3] = {s[1], s[2], 0};
            *o++ = (char)strtol(hex, NULL, 16);
            s += 2;
        } else *o++ = *s;
    }
    *o = '\0';
}

/* The token of an "a=b&token=...&c=d" form body; false when absent. */
static bool form_token(char *body, char **out) {
    char *save = NULL; /* strtok_r: requests run on several threads */
    for (char *p = strtok_r(body, "&", &save); p; p = strtok_r(NULL, "&", &save))
        if (strncmp(p, "token=", 6) == 0) {
            *out = p + 6;
            url_decode(*out);
            return true;
        }
    return false;
}

/* ---- Redis ---- */

static lumen_status redis_get(dashboard *d, lm_redis **out) {
    pthread_mutex_lock(&d->redis_mu);
    lumen_status st = lm_ok();
    if (d->redis == NULL) {
        lm_redis_opts o = {.addr = d->cfg->cluster.redis_addr, .password = d->cfg->cluster.redis_password,
                           .prefix = d->cfg->cluster.key_prefix};
        st = lm_redis_connect(&o, &d->redis);
    }
    *out = d->redis;
    pthread_mutex_unlock(&d->redis_mu);
    return st;
}

/* ---- query parameters ---- */

typedef struct params {
    struct MHD_Connection *conn;
    reply *r;
    bool bad;
} params;

static const char *param(params *p, const char *name) {
    const char *v = MHD_lookup_connection_value(p->conn, MHD_GET_ARGUMENT_KIND, name);
    return v && v[0] ? v : NULL;
}

static uint64_t param_u64(params *p, const char *name, uint64_t max) {
    const char *v = param(p, name);
    if (v == NULL || p->bad) return 0;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end || errno || v[0] == '-' || n > max) {
        json_error(p->r, MHD_HTTP_BAD_REQUEST, "%s: want a number 0..%" PRIu64 ", not \"%s\"", name, max, v);
        p->bad = true;
        return 0;
    }
    return n;
}

static bool param_id(params *p, const char *name, lm_id *out) {
    const char *v = param(p, name);
    if (v == NULL || p->bad) return false;
    if (!lm_id_from_hex(v, out)) {
        json_error(p->r, MHD_HTTP_BAD_REQUEST, "%s: want 32 hex digits, not \"%s\"", name, v);
        p->bad = true;
        return false;
    }
    return true;
}

/* ---- the API ---- */

static void api_summary(dashboard *d, lm_redis *redis, reply *r) {
    lm_view_summary sum;
    lumen_status st = lm_view_summary_get(redis, &sum);
    if (!LM_IS_OK(st)) {
        status_error(r, st);
        return;
    }
    sched_stats ss;
    scheduler_stats(d->sched, &ss);
    lm_json j = {0};
    lm_json_obj(&j);
    lm_view_summary_json(&sum, &j);
    lm_json_key(&j, "scheduler");
    lm_json_obj(&j);
    lm_json_ku64(&j, "queued", ss.queued);
    lm_json_ku64(&j, "tasks_in_memory", ss.tasks);
    lm_json_ku64(&j, "jobs_in_memory", ss.jobs);
    lm_json_ku64(&j, "dispatched", ss.dispatch.count);
    lm_json_key(&j, "dispatch_mean_us");
    lm_json_double(&j, ss.dispatch.count ? (double)ss.dispatch.sum_us / (double)ss.dispatch.count : 0);
    lm_json_key(&j, "throughput"); /* tasks per second, oldest first */
    lm_json_arr(&j);
    for (size_t i = 0; i < SCHED_TIMELINE_SECS; i++) {
        const sched_tick *t = &ss.timeline[i];
        lm_json_arr(&j);
        lm_json_u64(&j, t->sec);
        lm_json_u64(&j, t->submitted);
        lm_json_u64(&j, t->finished);
        lm_json_u64(&j, t->failed);
        lm_json_arr_end(&j);
    }
    lm_json_arr_end(&j);
    lm_json_obj_end(&j);
    lm_json_obj_end(&j);
    sched_stats_fini(&ss);
    r->body = j.out;
}

static void api_nodes(dashboard *d, lm_redis *redis, reply *r) {
    lm_node_list *nodes = NULL;
    lumen_status st = lm_redis_nodes_list(redis, &nodes);
    if (!LM_IS_OK(st)) {
        status_error(r, st);
        return;
    }
    sched_stats ss;
    scheduler_stats(d->sched, &ss);
    uint32_t *running = calloc(nodes->count ? nodes->count : 1, sizeof *running);
    for (size_t i = 0; running && i < nodes->count; i++)
        for (size_t k = 0; k < ss.nnodes; k++)
            if (lm_id_equal(ss.nodes[k].id, nodes->nodes[i].id)) running[i] = ss.nodes[k].running;
    lm_json j = {0};
    lm_json_obj(&j);
    lm_json_key(&j, "nodes");
    lm_view_nodes_json(nodes, running, &j);
    lm_json_obj_end(&j);
    r->body = j.out;
    free(running);
    sched_stats_fini(&ss);
    lm_node_list_free(nodes);
}

static void api_tasks(lm_redis *redis, params *p) {
    lm_view_task_query q = {.fn = param(p, "fn"), .cursor = param_u64(p, "cursor", UINT64_MAX),
                            .limit = (size_t)param_u64(p, "limit", LM_VIEW_LIMIT_MAX)};
    q.by_job = param_id(p, "job", &q.job);
    const char *state = param(p, "state");
    if (state && !p->bad && !(q.by_state = lm_task_state_parse(state, &q.state))) {
        json_error(p->r, MHD_HTTP_BAD_REQUEST, "state: want PENDING, READY, RUNNING, FINISHED or FAILED, not \"%s\"",
                   state);
        p->bad = true;
    }
    if (p->bad) return;
    lm_view_task_page page;
    lumen_status st = lm_view_tasks(redis, &q, &page);
    if (!LM_IS_OK(st)) {
        status_error(p->r, st);
        return;
    }
    lm_json j = {0};
    lm_view_task_page_json(&page, &j);
    p->r->body = j.out;
    lm_view_task_page_fini(&page);
}

static void api_task(lm_redis *redis, const char *hex, reply *r) {
    lm_id id;
    if (!lm_id_from_hex(hex, &id)) {
        json_error(r, MHD_HTTP_BAD_REQUEST, "a task id is 32 hex digits, not \"%s\"", hex);
        return;
    }
    lm_task_record t;
    char *log = NULL;
    size_t log_len = 0;
    lumen_status st = lm_view_task_get(redis, id, &t, &log, &log_len);
    if (!LM_IS_OK(st)) {
        status_error(r, st);
        return;
    }
    lm_json j = {0};
    lm_json_obj(&j);
    lm_json_key(&j, "task");
    lm_view_task_json(&t, 0, &j);
    lm_json_key(&j, "log");
    lm_json_strn(&j, log ? log : "", log_len);
    lm_json_obj_end(&j);
    r->body = j.out;
    free(log);
    lm_task_record_fini(&t);
}

/* The query of /api/jobs, /api/actors, /api/objects. */
static bool list_query(params *p, lm_view_query *q) {
    *q = (lm_view_query){.state = param(p, "state"), .cursor = param_u64(p, "cursor", UINT64_MAX),
                         .limit = (size_t)param_u64(p, "limit", LM_VIEW_LIMIT_MAX)};
    q->by_job = param_id(p, "job", &q->job);
    return !p->bad;
}

/* The state filter of /api/actors and /api/objects, checked against its words. */
static bool list_state_ok(const char *what, const char *state, reply *r) {
    lm_actor_state as;
    lm_obj_state os;
    if (state == NULL) return true;
    if (strcmp(what, "actors") == 0 ? lm_actor_state_parse(state, &as) : lm_obj_state_parse(state, &os)) return true;
    json_error(r, MHD_HTTP_BAD_REQUEST, "state: want %s, not \"%s\"",
               strcmp(what, "actors") == 0 ? "PENDING, ALIVE, RESTARTING or DEAD" : "PENDING, READY, LOST or FAILED", state);
    return false;
}

static void api_list(lm_redis *redis, const char *what, params *p) {
    lm_view_query q;
    if (!list_query(p, &q) || (strcmp(what, "jobs") != 0 && !list_state_ok(what, q.state, p->r))) return;
    lm_json j = {0};
    lumen_status st;
    if (strcmp(what, "jobs") == 0) {
        lm_view_job_page page;
        if (LM_IS_OK(st = lm_view_jobs(redis, &q, &page))) {
            lm_view_job_page_json(&page, &j);
            lm_view_job_page_fini(&page);
        }
    } else if (strcmp(what, "actors") == 0) {
        lm_view_actor_page page;
        if (LM_IS_OK(st = lm_view_actors(redis, &q, &page))) {
            lm_view_actor_page_json(&page, &j);
            lm_view_actor_page_fini(&page);
        }
    } else {
        lm_view_obj_page page;
        if (LM_IS_OK(st = lm_view_objects(redis, &q, &page))) {
            lm_view_obj_page_json(&page, &j);
            lm_view_obj_page_fini(&page);
        }
    }
    if (LM_IS_OK(st)) p->r->body = j.out;
    else status_error(p->r, st);
}

/* ---- /metrics (Prometheus text format 0.0.4) ---- */

static void label_value(lm_buf *b, const char *s) {
    for (; *s; s++) {
        if (*s == '\\' || *s == '"') lm_buf_printf(b, "\\%c", *s);
        else if (*s == '\n') lm_buf_puts(b, "\\n");
        else lm_buf_append(b, s, 1);
    }
}

static void metric_head(lm_buf *b, const char *name, const char *type, const char *help) {
    lm_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Per-function counters from Redis; false when Redis did not answer. */
static bool metrics_functions(lm_redis *redis, lm_buf *b) {
    char **fns = NULL;
    size_t n = 0;
    lumen_status st = lm_redis_task_fns(redis, &fns, &n);
    lm_task_counts *c = LM_IS_OK(st) ? calloc(n ? n : 1, sizeof *c) : NULL;
    if (LM_IS_OK(st) && c) st = lm_redis_fn_counts(redis, (const char *const *)fns, n, c);
    bool ok = LM_IS_OK(st) && c;
    static const struct {
        const char *name, *help;
        size_t offset;
    } counters[] = {
        {"lumen_tasks_submitted_total", "Tasks submitted, by function.", offsetof(lm_task_counts, submitted)},
        {"lumen_tasks_finished_total", "Tasks that finished, by function.", offsetof(lm_task_counts, finished)},
        {"lumen_tasks_failed_total", "Tasks that failed, by function.", offsetof(lm_task_counts, failed)},
        {"lumen_tasks_retried_total", "Runs of tasks after their first, by function.", offsetof(lm_task_counts, retried)},
    };
    for (size_t m = 0; ok && m < sizeof counters / sizeof counters[0]; m++) {
        metric_head(b, counters[m].name, "counter", counters[m].help);
        for (size_t i = 0; i < n; i++) {
            lm_buf_printf(b, "%s{fn=\"", counters[m].name);
            label_value(b, fns[i]);
            lm_buf_printf(b, "\"} %" PRIu64 "\n", *(const uint64_t *)((const char *)&c[i] + counters[m].offset));
        }
    }
    if (ok) {
        metric_head(b, "lumen_tasks", "gauge", "Task records by state, by function.");
        for (size_t i = 0; i < n; i++)
            for (int s = 0; s < LM_TASK_STATES; s++) {
                lm_buf_puts(b, "lumen_tasks{fn=\"");
                label_value(b, fns[i]);
                lm_buf_printf(b, "\",state=\"%s\"} %" PRIu64 "\n", lm_task_state_name((lm_task_state)s), c[i].by_state[s]);
            }
    }
    free(c);
    lm_strings_free(fns, n);
    return ok;
}

/* The connections of both servers, from their listeners. */
static void metrics_connections(dashboard *d, lm_buf *b) {
    lm_listener_stats st[2];
    lm_rpc_server_connection_stats(d->rpc, &st[0]);
    lm_listener_stats_get(d->listener, &st[1]);
    static const char *const server[] = {"rpc", "dashboard"};
    metric_head(b, "lumen_connections", "gauge",
                "Open connections, by server and state (unproven: no request with the token yet).");
    for (int i = 0; i < 2; i++)
        lm_buf_printf(b, "lumen_connections{server=\"%s\",state=\"proven\"} %" PRIu64 "\n"
                         "lumen_connections{server=\"%s\",state=\"unproven\"} %" PRIu64 "\n",
                      server[i], st[i].open - st[i].unproven, server[i], st[i].unproven);
    metric_head(b, "lumen_connections_closed_total", "counter",
                "Connections the server closed itself, by reason: refused (over the cap or out of descriptors), "
                "evicted (unproven, for a newcomer), timed_out (unproven too long), dropped (misbehaved).");
    for (int i = 0; i < 2; i++) {
        const struct {
            const char *reason;
            uint64_t n;
        } rows[] = {{"refused", st[i].refused}, {"evicted", st[i].evicted},
                    {"timed_out", st[i].timed_out}, {"dropped", st[i].dropped}};
        for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++)
            lm_buf_printf(b, "lumen_connections_closed_total{server=\"%s\",reason=\"%s\"} %" PRIu64 "\n", server[i],
                          rows[k].reason, rows[k].n);
    }
}

static void metrics(dashboard *d, reply *r) {
    lm_buf *b = &r->body;
    lm_redis *redis = NULL;
    bool redis_up = LM_IS_OK(redis_get(d, &redis)) && metrics_functions(redis, b);
    uint64_t running = 0;
    if (redis_up && LM_IS_OK(lm_redis_set_count(redis, "jobs:running", &running))) {
        metric_head(b, "lumen_jobs_running", "gauge", "Jobs started and not finished.");
        lm_buf_printf(b, "lumen_jobs_running %" PRIu64 "\n", running);
    }
    metric_head(b, "lumen_redis_up", "gauge", "Whether the dashboard could read Redis for this scrape.");
    lm_buf_printf(b, "lumen_redis_up %d\n", redis_up);

    sched_stats ss;
    scheduler_stats(d->sched, &ss);
    metric_head(b, "lumen_queue_length", "gauge", "Tasks ready to run, waiting for a worker slot.");
    lm_buf_printf(b, "lumen_queue_length %zu\n", ss.queued);
    metric_head(b, "lumen_scheduler_tasks", "gauge", "Tasks of running jobs held in the scheduler's memory.");
    lm_buf_printf(b, "lumen_scheduler_tasks %zu\n", ss.tasks);
    metric_head(b, "lumen_dispatch_latency_seconds", "histogram", "Time from the ready queue to a worker's RunTasks.");
    uint64_t cum = 0;
    for (size_t i = 0; i <= SCHED_LATENCY_BUCKETS; i++) {
        cum += ss.dispatch.buckets[i];
        if (i < SCHED_LATENCY_BUCKETS)
            lm_buf_printf(b, "lumen_dispatch_latency_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                          (double)sched_latency_bounds_us[i] / 1e6, cum);
        else
            lm_buf_printf(b, "lumen_dispatch_latency_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    lm_buf_printf(b, "lumen_dispatch_latency_seconds_sum %.6f\nlumen_dispatch_latency_seconds_count %" PRIu64 "\n",
                  (double)ss.dispatch.sum_us / 1e6, ss.dispatch.count);

    uint64_t nodes[2][2] = {{0}}; /* [worker][alive] */
    uint64_t slots = 0, busy = 0;
    metric_head(b, "lumen_objstore_bytes", "gauge", "Bytes an object store holds in memory, by node.");
    for (size_t i = 0; i < ss.nnodes; i++) {
        const sched_node_stats *n = &ss.nodes[i];
        nodes[n->is_worker][n->alive]++;
        if (n->is_worker && n->alive) slots += n->slots, busy += n->running;
        if (!n->is_worker && n->alive)
            lm_buf_printf(b, "lumen_objstore_bytes{node=\"%s\"} %" PRIu64 "\n", lm_id_str(n->id).s, n->bytes_used);
    }
    metric_head(b, "lumen_objstore_memory_limit_bytes", "gauge", "An object store's memory limit, by node.");
    for (size_t i = 0; i < ss.nnodes; i++)
        if (!ss.nodes[i].is_worker && ss.nodes[i].alive)
            lm_buf_printf(b, "lumen_objstore_memory_limit_bytes{node=\"%s\"} %" PRIu64 "\n", lm_id_str(ss.nodes[i].id).s,
                          ss.nodes[i].memory_limit);
    metric_head(b, "lumen_nodes", "gauge", "Nodes the scheduler knows, by kind and state.");
    for (int w = 0; w < 2; w++)
        for (int a = 0; a < 2; a++)
            lm_buf_printf(b, "lumen_nodes{kind=\"%s\",state=\"%s\"} %" PRIu64 "\n", w ? "worker" : "objstore",
                          a ? "alive" : "dead", nodes[w][a]);
    metric_head(b, "lumen_worker_slots", "gauge", "Executor slots of alive workers.");
    lm_buf_printf(b, "lumen_worker_slots %" PRIu64 "\n", slots);
    metric_head(b, "lumen_tasks_running", "gauge", "Tasks sent to workers and not reported done.");
    lm_buf_printf(b, "lumen_tasks_running %" PRIu64 "\n", busy);
    metric_head(b, "lumen_writer_records_total", "counter", "Records queued for and written to Redis by the write-behind.");
    lm_buf_printf(b, "lumen_writer_records_total{stage=\"queued\"} %" PRIu64 "\n", ss.writer_queued);
    lm_buf_printf(b, "lumen_writer_records_total{stage=\"written\"} %" PRIu64 "\n", ss.writer_written);
    sched_stats_fini(&ss);

    uint64_t errors[LM_RPC_CODE_SLOTS];
    lm_rpc_server_error_counts(d->rpc, errors);
    metric_head(b, "lumen_rpc_errors_total", "counter", "Calls the scheduler answered with an error, by code.");
    for (int c = 0; c < LM_RPC_CODE_SLOTS; c++)
        if (errors[c] || c == LUMEN_UNAUTHENTICATED || c == LUMEN_INVALID_ARGUMENT)
            lm_buf_printf(b, "lumen_rpc_errors_total{code=\"%s\"} %" PRIu64 "\n", lumen_code_name((lumen_code)c), errors[c]);
    metrics_connections(d, b);
    r->type = "text/plain; version=0.0.4; charset=utf-8";
}

/* ---- routing ---- */

typedef struct request {
    lm_buf body; /* a POST's, up to FORM_MAX */
    bool too_big;
} request;

static void route_api(dashboard *d, struct MHD_Connection *conn, const char *path, reply *r) {
    lm_redis *redis = NULL;
    lumen_status st = redis_get(d, &redis);
    if (!LM_IS_OK(st)) {
        status_error(r, st);
        return;
    }
    params p = {conn, r, false};
    if (strcmp(path, "summary") == 0) api_summary(d, redis, r);
    else if (strcmp(path, "nodes") == 0) api_nodes(d, redis, r);
    else if (strcmp(path, "tasks") == 0) api_tasks(redis, &p);
    else if (strncmp(path, "tasks/", 6) == 0) api_task(redis, path + 6, r);
    else if (strcmp(path, "jobs") == 0 || strcmp(path, "actors") == 0 || strcmp(path, "objects") == 0)
        api_list(redis, path, &p);
    else json_error(r, MHD_HTTP_NOT_FOUND, "no API /api/%s (see docs/api.md)", path);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    dashboard *d = cls;
    bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
    if (post) { /* the login form: gather its body first */
        request *req = *con_cls;
        if (req == NULL) {
            if ((req = calloc(1, sizeof *req)) == NULL) return MHD_NO;
            *con_cls = req;
            return MHD_YES;
        }
        if (*upload_size > 0) {
            if (req->body.len + *upload_size > FORM_MAX) req->too_big = true;
            else lm_buf_append(&req->body, upload, *upload_size);
            *upload_size = 0;
            return MHD_YES;
        }
    }
    reply r = {.status = MHD_HTTP_OK, .type = "application/json"};
    if (post && strcmp(url, "/login") == 0) {
        request *req = *con_cls;
        char *token = NULL;
        const char *want = d->cfg->cluster.token;
        if (req->too_big || req->body.data == NULL || !form_token(req->body.data, &token)) {
            login_page(&r, MHD_HTTP_BAD_REQUEST, "The form has no token.");
            note(d, conn, LM_CONN_REFUSED);
        } else if (want[0] != '\0' && !equal_ct(token, want)) {
            login_page(&r, MHD_HTTP_UNAUTHORIZED, "Wrong token.");
            note(d, conn, LM_CONN_REFUSED);
        } else {
            r.status = MHD_HTTP_SEE_OTHER, r.location = "/", r.set_cookie = true;
            note(d, conn, LM_CONN_PROVEN);
        }
    } else if (!post && strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        json_error(&r, MHD_HTTP_METHOD_NOT_ALLOWED, "%s: only GET (and POST /login) are served", method);
    } else if (post) {
        json_error(&r, MHD_HTTP_METHOD_NOT_ALLOWED, "POST is for /login only");
    } else if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0) {
        const char *token = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "token");
        const char *want = d->cfg->cluster.token;
        if (token != NULL && want[0] != '\0') {
            /* the token once in the URL: a cookie from now on, and the URL without it */
            bool right = equal_ct(token, want);
            if (right) r.status = MHD_HTTP_SEE_OTHER, r.location = "/", r.set_cookie = true;
            else login_page(&r, MHD_HTTP_UNAUTHORIZED, "Wrong token.");
            note(d, conn, right ? LM_CONN_PROVEN : LM_CONN_REFUSED);
        } else if (!authorized(d, conn)) {
            login_page(&r, MHD_HTTP_UNAUTHORIZED, NULL); /* a first visit: no strike */
        } else {
            note(d, conn, LM_CONN_PROVEN);
            r.type = "text/html; charset=utf-8";
            lm_buf_append(&r.body, dashboard_html, dashboard_html_len);
        }
    } else if (!authorized(d, conn)) {
        note(d, conn, LM_CONN_REFUSED);
        r.challenge = true;
        json_error(&r, MHD_HTTP_UNAUTHORIZED,
                   "this cluster has a token: send Authorization: Bearer <token>, or sign in at /");
    } else if (strncmp(url, "/api/", 5) == 0) {
        note(d, conn, LM_CONN_PROVEN);
        route_api(d, conn, url + 5, &r);
    } else if (strcmp(url, "/metrics") == 0) {
        note(d, conn, LM_CONN_PROVEN);
        metrics(d, &r);
    } else {
        note(d, conn, LM_CONN_PROVEN);
        json_error(&r, MHD_HTTP_NOT_FOUND, "nothing at %s: the page is /, the API /api/..., metrics /metrics", url);
    }
    return send_reply(d, conn, &r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)conn, (void)toe;
    request *req = *con_cls;
    if (req == NULL) return;
    lm_buf_fini(&req->body);
    free(req);
    *con_cls = NULL;
}

/* libmicrohttpd closes its descriptor without shutdown(): the listener
 * hears it from here, and closes its duplicate (the client sees the FIN). */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    (void)socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) note(cls, conn, LM_CONN_CLOSED);
}

static void handoff(void *arg, int listen_fd, int fd) {
    (void)listen_fd;
    dashboard *d = arg;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) close(fd);
    else MHD_add_connection(d->mhd, fd, (struct sockaddr *)&ss, len); /* it closes fd when it fails */
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[300];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    lm_warn("dashboard: %s", msg);
}

lumen_status dashboard_start(const lm_config *cfg, scheduler *s, lm_rpc_server *rpc, dashboard **out) {
    *out = NULL;
    const char *host = cfg->scheduler.dashboard_host;
    char addr[300];
    snprintf(addr, sizeof addr, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, cfg->scheduler.dashboard_port);
    dashboard *d = calloc(1, sizeof *d);
    unsigned char secret[32];
    if (d == NULL || getrandom(secret, sizeof secret, 0) != (ssize_t)sizeof secret) {
        free(d);
        return lm_status(LUMEN_INTERNAL, "dashboard: no memory or no randomness for its session");
    }
    for (size_t i = 0; i < sizeof secret; i++) snprintf(d->session + 2 * i, 3, "%02x", secret[i]);
    d->cfg = cfg;
    d->sched = s;
    d->rpc = rpc;
    pthread_mutex_init(&d->redis_mu, NULL);
    lm_listener_limits lim = {.max_connections = MAX_CONNECTIONS, .max_unproven = MAX_UNPROVEN,
                              .max_unproven_per_peer = MAX_UNPROVEN_PER_PEER, .prove_timeout_ms = PROVE_TIMEOUT_MS};
    lumen_status st = lm_listener_open(addr, &lim, &d->listener);
    if (!LM_IS_OK(st)) {
        dashboard_free(d);
        return lm_status_wrap(st, "dashboard");
    }
    /* Connections come from the listener (MHD_add_connection), none from a
     * socket of libmicrohttpd's own. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET;
    d->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, d,
                              MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, d, /* first: it logs the rest */
                              MHD_OPTION_THREAD_POOL_SIZE, (unsigned)POOL_THREADS,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT_S,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, d,
                              MHD_OPTION_NOTIFY_CONNECTION, on_connection, d,
                              MHD_OPTION_END);
    st = d->mhd != NULL ? lm_listener_start(d->listener, handoff, d)
                        : lm_status(LUMEN_INTERNAL, "dashboard: libmicrohttpd did not start");
    if (!LM_IS_OK(st)) {
        dashboard_free(d);
        return st;
    }
    d->port = lm_listener_port(d->listener);
    *out = d;
    return lm_ok();
}

int dashboard_port(const dashboard *d) { return d->port; }

void dashboard_free(dashboard *d) {
    if (d == NULL) return;
    lm_listener_stop(d->listener); /* no connection goes to a daemon that is stopping */
    if (d->mhd) MHD_stop_daemon(d->mhd);
    lm_listener_free(d->listener);
    lm_redis_free(d->redis);
    pthread_mutex_destroy(&d->redis_mu);
    free(d);
}

/*
 * The scheduler's HTTP side against a real cluster with known work: the
 * JSON API (/api/...), Prometheus /metrics, the token (401 without it, the
 * cookie after /?token= or the login form), and the page itself loaded in
 * headless Chromium (Debian's chromium; scripts/deps.sh installs it): the
 * DOM after its scripts ran must show the nodes and the finished job, and a
 * screenshot is kept as an artifact (build dir: artifacts/dashboard.png).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lumen/lumen.h>

#include "cluster.h"
#include "health.h"
#include "http_client.h"
#include "json_parse.h"
#include "log.h"
#include "test_util.h"

#define TOKEN "dashboard-test-token"
#define ECHOES 20
#define FAILS 3

/* The string at path equals want (says what it was when not). */
#define ASSERT_STR(v, path, want)                                                                 \
    do {                                                                                          \
        const char *s_ = lm_tj_str(v, path), *w_ = (want);                                        \
        if (s_ == NULL || strcmp(s_, w_) != 0) fprintf(stderr, "\n%s = %s, wanted %s\n", path, s_ ? s_ : "(none)", w_); \
        CU_ASSERT(s_ != NULL && strcmp(s_, w_) == 0);                                             \
    } while (0)

static lm_test_cluster *cluster;
static lumen_client *client; /* its job keeps running */
static uint16_t port;
static char finished_job[33]; /* the job of a client that closed */
static char print_task[33];   /* a task that wrote to stdout */

static lumen_status connect_client(lumen_client **out) {
    lumen_connect_opts o = {.token = TOKEN};
    return lumen_connect(lm_test_cluster_scheduler(cluster), &o, out);
}

/* GET path with the token; the body parsed as JSON (NULL when it is not). */
static lm_tj *get_json(const char *path, int *status) {
    lm_http_reply r;
    lm_tj *v = NULL;
    char err[200];
    if (lm_http_get(port, path, TOKEN, &r) == 0) {
        v = lm_tj_parse(r.body, err, sizeof err);
        if (v == NULL) fprintf(stderr, "\n%s: not JSON (%s): %.200s\n", path, err, r.body);
    }
    if (status) *status = r.status;
    lm_http_reply_free(&r);
    return v;
}

/* Polls the summary until the written-behind records show the work. */
static bool wait_summary(const char *path, double want, int64_t timeout_ms) {
    uint64_t until = lm_test_now_us() + (uint64_t)timeout_ms * 1000;
    double got = -1;
    do {
        lm_tj *s = get_json("/api/summary", NULL);
        got = lm_tj_num(s, path);
        lm_tj_free(s);
        if (got >= want) return true;
        lm_test_sleep_ms(50);
    } while (lm_test_now_us() < until);
    fprintf(stderr, "\nsummary %s = %g, wanted %g\n", path, got, want);
    return false;
}

/* Known work: ECHOES echoes and FAILS failures in the running job, an actor
 * with two calls, a task that prints; another client's job of 5 echoes that
 * it ends. */
static int suite_init(void) {
    lm_log_set_level(LM_LOG_WARN);
    lm_test_cluster_opts opts = {.workers = 2, .slots = 2, .token = TOKEN, .dashboard = true};
    lumen_status st = lm_test_cluster_start(&opts, &cluster);
    if (LM_IS_OK(st)) port = lm_test_cluster_dashboard(cluster);
    if (LM_IS_OK(st)) st = connect_client(&client);
    lumen_ref refs[ECHOES + FAILS + 1];
    for (int i = 0; LM_IS_OK(st) && i < ECHOES + FAILS; i++) {
        char arg[16];
        snprintf(arg, sizeof arg, "%d", i);
        lumen_arg a = lumen_arg_bytes(arg, strlen(arg));
        st = lumen_call(client, i < ECHOES ? "test.echo" : "test.fail", &a, 1, NULL, &refs[i]);
    }
    lumen_arg hello = lumen_arg_bytes("hello dashboard", 15);
    if (LM_IS_OK(st)) st = lumen_call(client, "test.print", &hello, 1, NULL, &refs[ECHOES + FAILS]);
    if (LM_IS_OK(st)) { /* the task's id: its result's with the return index (last 8 digits) zeroed */
        lumen_ref_hex(refs[ECHOES + FAILS], print_task);
        memcpy(print_task + 24, "00000000", 8);
    }
    size_t done = 0;
    int ready[ECHOES + FAILS + 1];
    if (LM_IS_OK(st)) st = lumen_wait(client, refs, ECHOES + FAILS + 1, ECHOES + FAILS + 1, 60000, ready, &done);
    lumen_actor actor;
    lumen_arg start = lumen_arg_bytes("5", 1);
    lumen_ref calls[2];
    if (LM_IS_OK(st)) st = lumen_actor_new(client, "test.Counter", &start, 1, NULL, &actor);
    for (int i = 0; LM_IS_OK(st) && i < 2; i++) st = lumen_actor_call(client, actor, "add", &start, 1, &calls[i]);
    if (LM_IS_OK(st)) st = lumen_wait(client, calls, 2, 2, 60000, ready, &done);

    lumen_client *other = NULL;
    if (LM_IS_OK(st)) st = connect_client(&other);
    lumen_ref five[5];
    for (int i = 0; LM_IS_OK(st) && i < 5; i++) st = lumen_call(other, "test.echo", &hello, 1, NULL, &five[i]);
    if (LM_IS_OK(st)) st = lumen_wait(other, five, 5, 5, 60000, ready, &done);
    if (other) lumen_close(other);
    if (!LM_IS_OK(st)) {
        fprintf(stderr, "dashboard suite: %s\n", st.msg);
        return 1;
    }
    /* every record written behind: the echoes of both jobs, the prints, the actor's constructor */
    if (!wait_summary("tasks.FINISHED", ECHOES + 5 + 1, 20000) || !wait_summary("tasks.FAILED", FAILS, 20000) ||
        !wait_summary("jobs.total", 2, 20000))
        return 1;
    for (int tries = 0; finished_job[0] == '\0' && tries < 400; tries++) { /* its end is written behind too */
        lm_tj *jobs = get_json("/api/jobs", NULL);
        for (size_t i = 0; i < lm_tj_len(jobs, "jobs"); i++) {
            char path[64];
            snprintf(path, sizeof path, "jobs.%zu.state", i);
            const char *state = lm_tj_str(jobs, path);
            snprintf(path, sizeof path, "jobs.%zu.id", i);
            if (state && strcmp(state, "FINISHED") == 0) snprintf(finished_job, sizeof finished_job, "%s", lm_tj_str(jobs, path));
        }
        lm_tj_free(jobs);
        if (finished_job[0] == '\0') lm_test_sleep_ms(50);
    }
    if (finished_job[0] == '\0') fprintf(stderr, "dashboard suite: the ended job is not FINISHED in /api/jobs\n");
    return finished_job[0] ? 0 : 1;
}

static int suite_cleanup(void) {
    lumen_close(client);
    lm_test_cluster_stop(cluster);
    return 0;
}

/* ---------------------------------------------------------------- auth */

static void expect_status(const char *method, const char *path, const char *headers, const char *body, int want) {
    lm_http_reply r;
    CU_ASSERT_EQUAL(lm_http_request(port, method, path, headers, body, 10000, &r), 0);
    if (r.status != want) fprintf(stderr, "\n%s %s: %d, wanted %d: %.200s\n", method, path, r.status, want, r.body);
    CU_ASSERT_EQUAL(r.status, want);
    lm_http_reply_free(&r);
}

/* The cookie a 303 sets ("lumen_session=..."), into out. */
static bool session_cookie(const lm_http_reply *r, char *out, size_t cap) {
    char h[256];
    if (lm_http_header(r, "Set-Cookie", h, sizeof h) == NULL) return false;
    CU_ASSERT(strstr(h, "HttpOnly") != NULL);
    CU_ASSERT(strstr(h, "SameSite=Strict") != NULL);
    snprintf(out, cap, "Cookie: %.*s\r\n", (int)strcspn(h, ";"), h);
    return true;
}

static void test_unauthenticated_refused(void) {
    static const char *const paths[] = {"/api/summary", "/api/tasks", "/api/nodes", "/metrics", "/api/tasks/00"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        lm_http_reply r;
        CU_ASSERT_EQUAL_FATAL(lm_http_get(port, paths[i], NULL, &r), 0);
        CU_ASSERT_EQUAL(r.status, 401);
        char h[128];
        CU_ASSERT(lm_http_header(&r, "WWW-Authenticate", h, sizeof h) != NULL);
        lm_tj *v = lm_tj_parse(r.body, h, sizeof h);
        CU_ASSERT(v != NULL && lm_tj_str(v, "error") != NULL); /* JSON saying why */
        lm_tj_free(v);
        lm_http_reply_free(&r);
        CU_ASSERT_EQUAL(lm_http_get(port, paths[i], "wrong", &r), 0);
        CU_ASSERT_EQUAL(r.status, 401);
        lm_http_reply_free(&r);
    }
    /* The page without a token: the login form, never the dashboard. */
    lm_http_reply r;
    CU_ASSERT_EQUAL_FATAL(lm_http_get(port, "/", NULL, &r), 0);
    CU_ASSERT_EQUAL(r.status, 401);
    CU_ASSERT(strstr(r.body, "name=token") != NULL);
    CU_ASSERT(strstr(r.body, "/api/summary") == NULL);
    lm_http_reply_free(&r);
    expect_status("GET", "/?token=wrong", NULL, NULL, 401);
    expect_status("POST", "/login", "Content-Type: application/x-www-form-urlencoded\r\n", "token=wrong", 401);
    expect_status("GET", "/api/summary", "Cookie: lumen_session=guess\r\n", NULL, 401);
}

static void test_token_then_cookie(void) {
    char cookie[256];
    /* Once in the URL: a redirect to / without it, and a session cookie. */
    lm_http_reply r;
    CU_ASSERT_EQUAL_FATAL(lm_http_get(port, "/?token=" TOKEN, NULL, &r), 0);
    CU_ASSERT_EQUAL(r.status, 303);
    char loc[64];
    CU_ASSERT(lm_http_header(&r, "Location", loc, sizeof loc) && strcmp(loc, "/") == 0);
    CU_ASSERT_FATAL(session_cookie(&r, cookie, sizeof cookie));
    lm_http_reply_free(&r);
    expect_status("GET", "/api/summary", cookie, NULL, 200);
    expect_status("GET", "/metrics", cookie, NULL, 200);
    CU_ASSERT_EQUAL_FATAL(lm_http_request(port, "GET", "/", cookie, NULL, 10000, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT(strstr(r.body, "Lumen dashboard") != NULL);
    CU_ASSERT(strstr(r.body, "http://") == NULL && strstr(r.body, "https://") == NULL); /* nothing external */
    lm_http_reply_free(&r);

    /* The login form does the same. */
    CU_ASSERT_EQUAL_FATAL(lm_http_request(port, "POST", "/login", "Content-Type: application/x-www-form-urlencoded\r\n",
                                          "token=" TOKEN, 10000, &r),
                          0);
    CU_ASSERT_EQUAL(r.status, 303);
    CU_ASSERT(session_cookie(&r, cookie, sizeof cookie));
    lm_http_reply_free(&r);
    expect_status("GET", "/api/nodes", cookie, NULL, 200);
}

/* ---------------------------------------------------------------- the API */

static void test_summary_and_nodes(void) {
    int status;
    lm_tj *s = get_json("/api/summary", &status);
    CU_ASSERT_EQUAL_FATAL(status, 200);
    CU_ASSERT_EQUAL(lm_tj_num(s, "nodes.alive"), 3);
    CU_ASSERT_EQUAL(lm_tj_num(s, "nodes.workers"), 2);
    CU_ASSERT_EQUAL(lm_tj_num(s, "nodes.slots"), 4);
    CU_ASSERT_EQUAL(lm_tj_num(s, "tasks.FAILED"), FAILS);
    CU_ASSERT_EQUAL(lm_tj_num(s, "tasks.failed"), FAILS);
    CU_ASSERT_EQUAL(lm_tj_num(s, "tasks.FINISHED"), ECHOES + 5 + 2); /* + the print, the actor's constructor */
    CU_ASSERT_EQUAL(lm_tj_num(s, "tasks.total"), ECHOES + FAILS + 5 + 2);
    CU_ASSERT_EQUAL(lm_tj_num(s, "tasks.submitted"), ECHOES + FAILS + 5 + 2);
    CU_ASSERT_EQUAL(lm_tj_num(s, "jobs.total"), 2);
    CU_ASSERT_EQUAL(lm_tj_num(s, "jobs.running"), 1);
    CU_ASSERT_EQUAL(lm_tj_num(s, "actors.total"), 1);
    CU_ASSERT_EQUAL(lm_tj_num(s, "actors.ALIVE"), 1);
    CU_ASSERT(lm_tj_num(s, "scheduler.dispatched") >= ECHOES + FAILS + 5);
    CU_ASSERT_EQUAL(lm_tj_len(s, "scheduler.throughput"), 120);
    double finished = 0; /* the timeline saw the tasks finish */
    for (size_t i = 0; i < 120; i++) {
        char path[64];
        snprintf(path, sizeof path, "scheduler.throughput.%zu.2", i);
        finished += lm_tj_num(s, path);
    }
    CU_ASSERT(finished >= ECHOES + 5);
    lm_tj_free(s);

    lm_tj *n = get_json("/api/nodes", &status);
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT_EQUAL_FATAL(lm_tj_len(n, "nodes"), 3);
    int workers = 0, seen = 0;
    for (size_t i = 0; i < 3; i++) {
        char path[64];
        snprintf(path, sizeof path, "nodes.%zu.kind", i);
        const char *kind = lm_tj_str(n, path);
        workers += kind && strcmp(kind, "worker") == 0;
        snprintf(path, sizeof path, "nodes.%zu.addr", i);
        const char *addr = lm_tj_str(n, path);
        for (int w = 0; w < 2; w++) seen += addr && strcmp(addr, lm_test_cluster_worker(cluster, w)) == 0;
        snprintf(path, sizeof path, "nodes.%zu.state", i);
        CU_ASSERT(lm_tj_str(n, path) && strcmp(lm_tj_str(n, path), "ALIVE") == 0);
    }
    CU_ASSERT_EQUAL(workers, 2);
    CU_ASSERT_EQUAL(seen, 2);
    lm_tj_free(n);
}

static void test_jobs_progress(void) {
    lm_tj *j = get_json("/api/jobs", NULL);
    CU_ASSERT_EQUAL_FATAL(lm_tj_len(j, "jobs"), 2);
    CU_ASSERT_EQUAL(lm_tj_num(j, "total"), 2);
    for (size_t i = 0; i < 2; i++) {
        char path[64];
        snprintf(path, sizeof path, "jobs.%zu", i);
        const lm_tj *job = lm_tj_at(j, path);
        bool fin = strcmp(lm_tj_str(job, "id"), finished_job) == 0;
        ASSERT_STR(job, "state", fin ? "FINISHED" : "RUNNING");
        CU_ASSERT_EQUAL(lm_tj_num(job, "tasks.total"), fin ? 5 : ECHOES + FAILS + 2);
        CU_ASSERT_EQUAL(lm_tj_num(job, "tasks.done"), fin ? 5 : ECHOES + FAILS + 2);
        CU_ASSERT_EQUAL(lm_tj_num(job, "tasks.FAILED"), fin ? 0 : FAILS);
        CU_ASSERT(lm_tj_num(job, "started_ms") > 0);
    }
    lm_tj_free(j);
}

/* Every page of a query, following its next cursor; the ids seen. */
static size_t walk_pages(const char *query, char ids[][33], size_t cap, size_t *pages) {
    size_t n = 0;
    double next = 0;
    *pages = 0;
    do {
        char path[256];
        snprintf(path, sizeof path, "/api/tasks?%s%s%.0f", query, next > 0 ? "&cursor=" : "", next > 0 ? next : 0.0);
        if (next <= 0) snprintf(path, sizeof path, "/api/tasks?%s", query);
        int status;
        lm_tj *p = get_json(path, &status);
        CU_ASSERT_EQUAL_FATAL(status, 200);
        (*pages)++;
        for (size_t i = 0; i < lm_tj_len(p, "tasks") && n < cap; i++) {
            char ip[48];
            snprintf(ip, sizeof ip, "tasks.%zu.id", i);
            snprintf(ids[n++], 33, "%s", lm_tj_str(p, ip));
        }
        next = lm_tj_num(p, "next"); /* null: -1 */
        lm_tj_free(p);
    } while (next > 0 && *pages < 100);
    return n;
}

static void test_tasks_pages_and_filters(void) {
    static char ids[64][33];
    size_t pages;
    char q[128];
    /* The running job's tasks, 7 a page: every one once, newest first. */
    lm_tj *j = get_json("/api/jobs", NULL);
    char running_job[33] = "";
    for (size_t i = 0; i < 2; i++) {
        char path[32];
        snprintf(path, sizeof path, "jobs.%zu.id", i);
        if (strcmp(lm_tj_str(j, path), finished_job) != 0) snprintf(running_job, sizeof running_job, "%s", lm_tj_str(j, path));
    }
    lm_tj_free(j);
    snprintf(q, sizeof q, "job=%s&limit=7", running_job);
    size_t n = walk_pages(q, ids, 64, &pages);
    CU_ASSERT_EQUAL(n, ECHOES + FAILS + 2);
    CU_ASSERT_EQUAL(pages, (ECHOES + FAILS + 2 + 6) / 7);
    int dup = 0;
    for (size_t a = 0; a < n; a++)
        for (size_t b = a + 1; b < n; b++) dup += strcmp(ids[a], ids[b]) == 0;
    CU_ASSERT_EQUAL(dup, 0);

    /* Failures with their errors. */
    int status;
    lm_tj *f = get_json("/api/tasks?state=failed", &status);
    CU_ASSERT_EQUAL_FATAL(status, 200);
    CU_ASSERT_EQUAL(lm_tj_len(f, "tasks"), FAILS);
    CU_ASSERT_EQUAL(lm_tj_num(f, "total"), FAILS);
    for (size_t i = 0; i < FAILS; i++) {
        char path[48];
        snprintf(path, sizeof path, "tasks.%zu.error", i);
        CU_ASSERT(lm_tj_str(f, path) && strstr(lm_tj_str(f, path), "failed on purpose") != NULL);
        snprintf(path, sizeof path, "tasks.%zu.fn", i);
        CU_ASSERT(lm_tj_str(f, path) && strcmp(lm_tj_str(f, path), "test.fail") == 0);
    }
    lm_tj_free(f);

    /* Two filters: function and state, and function and job (filtered records). */
    n = walk_pages("fn=test.echo&state=FINISHED&limit=4", ids, 64, &pages);
    CU_ASSERT_EQUAL(n, ECHOES + 5);
    snprintf(q, sizeof q, "fn=test.echo&job=%s&limit=50", finished_job);
    n = walk_pages(q, ids, 64, &pages);
    CU_ASSERT_EQUAL(n, 5);
    CU_ASSERT_EQUAL(pages, 1);
    lm_tj *none = get_json("/api/tasks?fn=no.such.fn", NULL);
    CU_ASSERT_EQUAL(lm_tj_len(none, "tasks"), 0);
    CU_ASSERT_EQUAL(lm_tj_num(none, "total"), 0);
    lm_tj_free(none);
}

static void test_task_page_with_log(void) {
    char path[128];
    snprintf(path, sizeof path, "/api/tasks/%s", print_task);
    int status;
    lm_tj *t = NULL;
    const char *log = NULL;
    for (int i = 0; i < 100; i++) { /* the log is written behind too */
        lm_tj_free(t);
        t = get_json(path, &status);
        log = lm_tj_str(t, "log");
        if (log && strstr(log, "hello dashboard")) break;
        lm_test_sleep_ms(50);
    }
    CU_ASSERT_EQUAL(status, 200);
    ASSERT_STR(t, "task.fn", "test.print");
    ASSERT_STR(t, "task.state", "FINISHED");
    CU_ASSERT(log != NULL && strstr(log, "test.print stdout: hello dashboard") != NULL);
    lm_tj_free(t);
}

static void test_actors_objects(void) {
    lm_tj *a = get_json("/api/actors", NULL);
    CU_ASSERT_EQUAL_FATAL(lm_tj_len(a, "actors"), 1);
    ASSERT_STR(a, "actors.0.class", "test.Counter");
    ASSERT_STR(a, "actors.0.state", "ALIVE");
    lm_tj_free(a);
    lm_tj *dead = get_json("/api/actors?state=DEAD", NULL);
    CU_ASSERT_EQUAL(lm_tj_len(dead, "actors"), 0);
    lm_tj_free(dead);
    /* The running job's results are objects with records (the ended job's are gone). */
    lm_tj *o = get_json("/api/objects?limit=1000", NULL);
    CU_ASSERT(lm_tj_len(o, "objects") >= ECHOES);
    CU_ASSERT(lm_tj_num(o, "total") >= ECHOES);
    lm_tj_free(o);
    lm_tj *failed = get_json("/api/objects?state=FAILED", NULL);
    CU_ASSERT_EQUAL(lm_tj_len(failed, "objects"), FAILS);
    lm_tj_free(failed);
}

static void test_bad_requests(void) {
    static const struct {
        const char *path;
        int status;
        const char *says;
    } cases[] = {
        {"/api/tasks?state=BOGUS", 400, "state"},
        {"/api/tasks?limit=abc", 400, "limit"},
        {"/api/tasks?limit=100000", 400, "limit"},
        {"/api/tasks?job=xyz", 400, "job"},
        {"/api/tasks/not-an-id", 400, "32 hex"},
        {"/api/tasks/0123456789abcdef0123456789abcdef", 404, "no task"},
        {"/api/actors?state=SLEEPING", 400, "state"},
        {"/api/nope", 404, "no API"},
        {"/nowhere", 404, "nothing at"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int status;
        lm_tj *v = get_json(cases[i].path, &status);
        if (status != cases[i].status) fprintf(stderr, "\n%s: %d\n", cases[i].path, status);
        CU_ASSERT_EQUAL(status, cases[i].status);
        const char *err = lm_tj_str(v, "error");
        CU_ASSERT(err != NULL && strstr(err, cases[i].says) != NULL);
        lm_tj_free(v);
    }
    expect_status("DELETE", "/api/tasks", "Authorization: Bearer " TOKEN "\r\n", NULL, 405);
}

/* ---------------------------------------------------------------- the CLI */

/* Runs `lumen <args...> --redis <the cluster's>`; its exit code, output in out. */
static int lumen(char *out, size_t cap, const char *a0, const char *a1, const char *a2, const char *a3) {
    char *argv[10] = {(char *)lm_test_bin("lumen"), (char *)a0};
    int n = 2;
    const char *more[] = {a1, a2, a3};
    for (int i = 0; i < 3 && more[i]; i++) argv[n++] = (char *)more[i];
    argv[n++] = "--redis";
    argv[n++] = (char *)lm_test_cluster_redis(cluster);
    argv[n] = NULL;
    char path[700];
    snprintf(path, sizeof path, "%s/cli.out", lm_test_cluster_dir(cluster));
    return lm_test_run(argv, path, true, out, cap);
}

/* `lumen status`, `tasks`, `actors`, `objects`: the same numbers as the API. */
static void test_cli_listings(void) {
    static char out[1 << 16];
    char err[100];
    CU_ASSERT_EQUAL(lumen(out, sizeof out, "status", NULL, NULL, NULL), 0);
    CU_ASSERT(strstr(out, "Nodes: 3 alive (2 workers, 4 slots") != NULL);
    char tasks[128];
    snprintf(tasks, sizeof tasks, "Tasks: %d (PENDING 0, READY 0, RUNNING 0, FINISHED %d, FAILED %d; 0 retried)",
             ECHOES + FAILS + 5 + 2, ECHOES + 5 + 2, FAILS);
    if (strstr(out, tasks) == NULL) fprintf(stderr, "\nwanted \"%s\" in:\n%s\n", tasks, out);
    CU_ASSERT(strstr(out, tasks) != NULL);
    CU_ASSERT(strstr(out, "Jobs: 2 (1 running)") != NULL);
    CU_ASSERT(strstr(out, "Actors: 1, ALIVE 1") != NULL);
    CU_ASSERT_EQUAL(lumen(out, sizeof out, "status", "--json", NULL, NULL), 0);
    lm_tj *cli = lm_tj_parse(out, err, sizeof err), *api = get_json("/api/summary", NULL);
    CU_ASSERT_FATAL(cli != NULL && api != NULL);
    static const char *const same[] = {"tasks.total", "tasks.FINISHED", "tasks.FAILED", "tasks.submitted",
                                       "jobs.total", "jobs.running", "actors.total", "nodes.alive"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) CU_ASSERT_EQUAL(lm_tj_num(cli, same[i]), lm_tj_num(api, same[i]));
    lm_tj_free(cli);
    lm_tj_free(api);

    CU_ASSERT_EQUAL(lumen(out, sizeof out, "tasks", "--state", "failed", NULL), 0);
    int lines = 0;
    for (const char *p = strstr(out, "failed on purpose"); p; p = strstr(p + 1, "failed on purpose")) lines++;
    CU_ASSERT_EQUAL(lines, FAILS);
    CU_ASSERT(strstr(out, "3 shown of 3.") != NULL);
    CU_ASSERT_EQUAL(lumen(out, sizeof out, "tasks", "--fn", "test.echo", "--limit=10"), 0);
    CU_ASSERT(strstr(out, "10 shown of 25. Next page: --cursor ") != NULL);
    CU_ASSERT_EQUAL(lumen(out, sizeof out, "tasks", "--job", finished_job, "--json"), 0);
    lm_tj *page = lm_tj_parse(out, err, sizeof err);
    CU_ASSERT_EQUAL(lm_tj_len(page, "tasks"), 5);
    lm_tj_free(page);
    CU_ASSERT_EQUAL(lumen(out, sizeof out, "actors", NULL, NULL, NULL), 0);
    CU_ASSERT(strstr(out, "test.Counter") != NULL && strstr(out, "ALIVE") != NULL);
    CU_ASSERT_EQUAL(lumen(out, sizeof out, "objects", "--state", "FAILED", NULL), 0);
    CU_ASSERT(strstr(out, "3 shown of ") != NULL);
    CU_ASSERT_EQUAL(lumen(out, sizeof out, "tasks", "--state", "SLEEPING", NULL), 2);
    CU_ASSERT(strstr(out, "--state wants") != NULL);
    CU_ASSERT_EQUAL(lumen(out, sizeof out, "tasks", "--limit", "0", NULL), 2);
}

/* ---------------------------------------------------------------- /metrics */

/* The value of the sample line that starts with `series` ("name{labels}"), or -1. */
static double sample(const char *text, const char *series) {
    size_t len = strlen(series);
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, series, len) == 0 && line[len] == ' ') return strtod(line + len + 1, NULL);
    return -1;
}

static void test_metrics(void) {
    /* A call with a wrong token: an RPC error the metrics count. */
    lm_rpc_client_opts bad = {.token = "wrong"};
    lm_rpc_client *cli = NULL;
    LM_ASSERT_OK(lm_rpc_client_new(&bad, &cli));
    LM_ASSERT_CODE(lm_health_check(cli, lm_test_cluster_scheduler(cluster), 5000, NULL, NULL), LUMEN_UNAUTHENTICATED);
    lm_rpc_client_free(cli);

    lm_http_reply r;
    CU_ASSERT_EQUAL_FATAL(lm_http_get(port, "/metrics", TOKEN, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    char type[128];
    CU_ASSERT(lm_http_header(&r, "Content-Type", type, sizeof type) && strstr(type, "version=0.0.4"));
    /* Every line is a comment or "name{labels} value" with a number. */
    int bad_lines = 0;
    for (char *line = r.body; *line;) {
        char *nl = strchr(line, '\n');
        if (nl == NULL) break;
        *nl = '\0';
        if (line[0] != '#') {
            char *sp = strrchr(line, ' '), *end = NULL;
            if (sp == NULL || (strtod(sp + 1, &end), *end != '\0')) bad_lines++, fprintf(stderr, "\nbad line: %s\n", line);
        }
        *nl = '\n';
        line = nl + 1;
    }
    CU_ASSERT_EQUAL(bad_lines, 0);
    const char *m = r.body;
    CU_ASSERT_EQUAL(sample(m, "lumen_tasks_submitted_total{fn=\"test.echo\"}"), ECHOES + 5);
    CU_ASSERT_EQUAL(sample(m, "lumen_tasks_finished_total{fn=\"test.echo\"}"), ECHOES + 5);
    CU_ASSERT_EQUAL(sample(m, "lumen_tasks_failed_total{fn=\"test.fail\"}"), FAILS);
    CU_ASSERT_EQUAL(sample(m, "lumen_tasks_retried_total{fn=\"test.echo\"}"), 0);
    CU_ASSERT_EQUAL(sample(m, "lumen_tasks{fn=\"test.fail\",state=\"FAILED\"}"), FAILS);
    CU_ASSERT_EQUAL(sample(m, "lumen_queue_length"), 0);
    CU_ASSERT_EQUAL(sample(m, "lumen_nodes{kind=\"worker\",state=\"alive\"}"), 2);
    CU_ASSERT_EQUAL(sample(m, "lumen_nodes{kind=\"objstore\",state=\"alive\"}"), 1);
    CU_ASSERT_EQUAL(sample(m, "lumen_worker_slots"), 4);
    CU_ASSERT_EQUAL(sample(m, "lumen_jobs_running"), 1);
    CU_ASSERT_EQUAL(sample(m, "lumen_redis_up"), 1);
    CU_ASSERT(sample(m, "lumen_rpc_errors_total{code=\"UNAUTHENTICATED\"}") >= 1);
    char store[128];
    snprintf(store, sizeof store, "lumen_objstore_memory_limit_bytes{node=\"");
    CU_ASSERT(strstr(m, store) != NULL);
    /* The histogram: cumulative buckets ending in +Inf = count, which counts every dispatch. */
    double count = sample(m, "lumen_dispatch_latency_seconds_count"), prev = 0;
    CU_ASSERT(count >= ECHOES + FAILS + 5);
    static const char *const les[] = {"5e-05", "0.0001", "0.001", "0.01", "0.1", "1", "5", "+Inf"};
    for (size_t i = 0; i < sizeof les / sizeof les[0]; i++) {
        char series[96];
        snprintf(series, sizeof series, "lumen_dispatch_latency_seconds_bucket{le=\"%s\"}", les[i]);
        double v = sample(m, series);
        CU_ASSERT(v >= prev);
        prev = v;
    }
    CU_ASSERT_EQUAL(prev, count);
    CU_ASSERT(sample(m, "lumen_dispatch_latency_seconds_sum") >= 0);
    lm_http_reply_free(&r);
}

/* ---------------------------------------------------------------- the page */

/* The chromium Debian ships (scripts/deps.sh installs it); NULL when absent. */
static const char *chromium(void) {
    static const char *const paths[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (access(paths[i], X_OK) == 0) return paths[i];
    return NULL;
}

static void test_page_in_chromium(void) {
    const char *browser = chromium();
    if (browser == NULL) {
        fprintf(stderr, "\nno chromium: install it (scripts/deps.sh install) to test the dashboard page\n");
        CU_FAIL_FATAL("chromium is not installed");
    }
    char *profile = lm_test_tmpdir("chromium");
    char url[128], user_dir[600], dom_path[700], shot[700], shot_flag[760];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/?token=%s", port, TOKEN);
    snprintf(user_dir, sizeof user_dir, "--user-data-dir=%s", profile);
    snprintf(dom_path, sizeof dom_path, "%s/dom.html", profile);
    mkdir(LUMEN_TEST_ARTIFACT_DIR, 0755);
    snprintf(shot, sizeof shot, "%s/dashboard.png", LUMEN_TEST_ARTIFACT_DIR);
    snprintf(shot_flag, sizeof shot_flag, "--screenshot=%s", shot);
    /* --virtual-time-budget: the page's scripts run (fetches included) before the dump */
    char *dump[] = {(char *)browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-dev-shm-usage", "--log-level=3", user_dir, "--virtual-time-budget=5000", "--dump-dom", url, NULL};
    static char dom[1 << 20];
    int rc = lm_test_run(dump, dom_path, false, dom, sizeof dom);
    CU_ASSERT_EQUAL(rc, 0);
    /* Signed in through the URL's token, the page shows the cluster: */
    CU_ASSERT(strstr(dom, "Lumen dashboard") != NULL);
    for (int w = 0; w < 2; w++) { /* both workers in the nodes table */
        char row[96];
        snprintf(row, sizeof row, "data-node=\"%s\"", lm_test_cluster_worker(cluster, w));
        if (strstr(dom, row) == NULL) fprintf(stderr, "\nno %s in the DOM\n", row);
        CU_ASSERT(strstr(dom, row) != NULL);
    }
    char job_row[96]; /* the finished job, with its state */
    snprintf(job_row, sizeof job_row, "data-job=\"%s\"", finished_job);
    const char *row = strstr(dom, job_row);
    CU_ASSERT(row != NULL);
    CU_ASSERT(row != NULL && strstr(row, "FINISHED") != NULL && strstr(row, "5 / 5") != NULL);
    CU_ASSERT(strstr(dom, "failed on purpose") != NULL); /* the failures and their errors */
    const char *live = strstr(dom, "id=\"live\""); /* the status line: updated, no error */
    if (live && strncmp(live, "id=\"live\" class=\"live\">live, updated", 36) != 0)
        fprintf(stderr, "\nthe page says: %.160s\n", live);
    CU_ASSERT(live != NULL && strncmp(live, "id=\"live\" class=\"live\">live, updated", 36) == 0);

    /* The screenshot: kept as the test's artifact (the README's picture comes from it). */
    unlink(shot);
    char *snap[] = {(char *)browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-dev-shm-usage", "--log-level=3", "--hide-scrollbars", user_dir, "--window-size=1400,1500",
                    "--virtual-time-budget=5000", shot_flag, url, NULL};
    char out[4096];
    CU_ASSERT_EQUAL(lm_test_run(snap, dom_path, true, out, sizeof out), 0);
    struct stat sb;
    CU_ASSERT(stat(shot, &sb) == 0 && sb.st_size > 10000);
    FILE *png = fopen(shot, "rb");
    unsigned char magic[8] = {0};
    if (png) {
        CU_ASSERT_EQUAL(fread(magic, 1, 8, png), 8);
        fclose(png);
    }
    CU_ASSERT(memcmp(magic, "\x89PNG\r\n\x1a\n", 8) == 0);
    printf("\n  screenshot: %s\n", shot);
    lm_test_rmtree(profile);
    free(profile);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"unauthenticated requests refused (401)", test_unauthenticated_refused},
        {"token once in the URL or the login form, then a cookie", test_token_then_cookie},
        {"/api/summary and /api/nodes", test_summary_and_nodes},
        {"/api/jobs: progress of the running and the finished job", test_jobs_progress},
        {"/api/tasks: pages, cursors and filters", test_tasks_pages_and_filters},
        {"/api/tasks/<id> with the task's log", test_task_page_with_log},
        {"/api/actors and /api/objects", test_actors_objects},
        {"bad requests get 4xx with a JSON error", test_bad_requests},
        {"/metrics parsed and checked", test_metrics},
        {"lumen status, tasks, actors, objects say the same", test_cli_listings},
        {"the page in headless Chromium: nodes, the finished job, a screenshot", test_page_in_chromium},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("dashboard", tests, suite_init, suite_cleanup);
}

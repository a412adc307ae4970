/*
 * cluster_bench - the figures Ray publishes for the same work, measured on a
 * real local cluster (redis-server, lumen-scheduler, lumen-objstore and
 * lumen-workers from build/bin, started on free loopback ports).
 *
 *   cluster_bench [--quick] [--workers N] [--slots N] [--chunks N] [--only NAME]
 *
 * Defaults: 2 workers with 2 slots each (a worker's default is one slot per
 * core; the reference machine has 2) and the job split into 2 chunks per
 * worker.
 * Prints `metric: value unit` lines. most_frequent_word_256mb runs the
 * example programs (gen_corpus, most_frequent_word) on a generated corpus,
 * exact method with 2 workers, beside the single-threaded local count of
 * the same file in the same run. The actor figures (1_1_actor_calls_sync,
 * 1_1_actor_calls_async, n_n_actor_calls_async, actor_creation; --only
 * actors runs all four) call bench.Counter.small from build/lib/lumen/
 * liblumenbench.so, a method returning two bytes like Ray's `small_value`.
 * --only tasks runs the three task figures (tasks_sync, tasks_async,
 * multi_client). worker_death_recovery and scheduler_restart_recovery
 * (after 1, 10 and 60 s down; --quick: 1 s) start clusters of their own.
 * Never passes or fails on time.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lumen/lumen.h>

#include "cluster.h"
#include "log.h"
#include "test_util.h"

static bool quick;
static const char *only;
static int chunks_per_job;
static lm_test_cluster *cluster;

static void die(const char *what, lumen_status st) {
    fprintf(stderr, "cluster_bench: %s: %s\n", what, st.msg);
    lm_test_cluster_stop(cluster);
    exit(1);
}

static bool wanted(const char *name) { return only == NULL || strcmp(only, name) == 0; }

/* name, or every benchmark of its group ("actors"). */
static bool wanted_in(const char *group, const char *name) {
    return wanted(name) || (only != NULL && strcmp(only, group) == 0);
}

static double seconds_since(uint64_t t0) { return (double)(lm_test_now_us() - t0) / 1e6; }

static lumen_client *connect_client(void) {
    lumen_client *c = NULL;
    lumen_status st = lumen_connect(lm_test_cluster_scheduler(cluster), NULL, &c);
    if (!LM_IS_OK(st)) die("connect", st);
    return c;
}

/* ---------------------------------------------------------------- tasks */

static void tasks_sync(void) {
    lumen_client *c = connect_client();
    int n = quick ? 200 : 2000;
    lumen_arg a = lumen_arg_bytes("x", 1);
    uint64_t t0 = lm_test_now_us();
    for (int i = 0; i < n; i++) {
        lumen_ref r;
        lumen_bytes b;
        lumen_status st = lumen_call(c, "test.echo", &a, 1, NULL, &r);
        if (LM_IS_OK(st)) st = lumen_get(c, r, 10000, &b);
        if (!LM_IS_OK(st)) die("sync task", st);
        lumen_bytes_free(&b);
    }
    printf("single_client_tasks_sync: %.0f tasks/s\n", n / seconds_since(t0));
    lumen_close(c);
}

/* Submits n tasks and waits for all of them; returns the seconds taken. */
static double submit_and_wait(lumen_client *c, int n) {
    lumen_ref *refs = malloc((size_t)n * sizeof *refs);
    int *ready = calloc((size_t)n, sizeof *ready);
    lumen_arg a = lumen_arg_bytes("x", 1);
    uint64_t t0 = lm_test_now_us();
    for (int i = 0; i < n; i++) {
        lumen_status st = lumen_call(c, "test.echo", &a, 1, NULL, &refs[i]);
        if (!LM_IS_OK(st)) die("async task", st);
    }
    size_t done = 0;
    lumen_status st = lumen_wait(c, refs, (size_t)n, (size_t)n, 300000, ready, &done);
    if (!LM_IS_OK(st) || done != (size_t)n) die("wait", st);
    double secs = seconds_since(t0);
    lumen_free(c, refs, (size_t)n);
    free(refs);
    free(ready);
    return secs;
}

static void tasks_async(void) {
    lumen_client *c = connect_client();
    int n = quick ? 2000 : 20000;
    submit_and_wait(c, n / 10); /* warm-up */
    printf("single_client_tasks_async: %.0f tasks/s\n", n / submit_and_wait(c, n));
    lumen_close(c);
}

typedef struct client_run {
    int n;
    double secs;
} client_run;

static void *client_thread(void *arg) {
    client_run *run = arg;
    lumen_client *c = connect_client();
    run->secs = submit_and_wait(c, run->n);
    lumen_close(c);
    return NULL;
}

static void tasks_multi_client(void) {
    enum { CLIENTS = 4 };
    int n = quick ? 1000 : 10000;
    pthread_t threads[CLIENTS];
    client_run runs[CLIENTS];
    uint64_t t0 = lm_test_now_us();
    for (int i = 0; i < CLIENTS; i++) {
        runs[i].n = n;
        pthread_create(&threads[i], NULL, client_thread, &runs[i]);
    }
    for (int i = 0; i < CLIENTS; i++) pthread_join(threads[i], NULL);
    printf("multi_client_tasks_async: %.0f tasks/s (%d clients)\n", CLIENTS * n / seconds_since(t0), CLIENTS);
}

/* ---------------------------------------------------------------- objects */

static void put_get_calls(void) {
    lumen_client *c = connect_client();
    int n = quick ? 500 : 5000;
    char payload[64] = "small object";
    lumen_ref *refs = malloc((size_t)n * sizeof *refs);
    uint64_t t0 = lm_test_now_us();
    for (int i = 0; i < n; i++) {
        lumen_status st = lumen_put(c, payload, sizeof payload, &refs[i]);
        if (!LM_IS_OK(st)) die("put", st);
    }
    printf("single_client_put_calls: %.0f calls/s\n", n / seconds_since(t0));
    t0 = lm_test_now_us();
    for (int i = 0; i < n; i++) {
        lumen_bytes b;
        lumen_status st = lumen_get(c, refs[i], 10000, &b);
        if (!LM_IS_OK(st)) die("get", st);
        lumen_bytes_free(&b);
    }
    printf("single_client_get_calls: %.0f calls/s\n", n / seconds_since(t0));
    lumen_free(c, refs, (size_t)n);
    free(refs);
    lumen_close(c);
}

static void put_get_gigabytes(void) {
    lumen_client *c = connect_client();
    size_t len = quick ? 256u << 20 : 1u << 30;
    int rounds = quick ? 1 : 3;
    uint8_t *data = malloc(len);
    memset(data, 0x42, len);
    double put_best = 0, get_best = 0;
    for (int r = 0; r < rounds; r++) {
        lumen_ref ref;
        uint64_t t0 = lm_test_now_us();
        lumen_status st = lumen_put(c, data, len, &ref);
        double put = (double)len / 1e9 / seconds_since(t0);
        if (!LM_IS_OK(st)) die("big put", st);
        lumen_bytes b;
        t0 = lm_test_now_us();
        st = lumen_get(c, ref, 120000, &b);
        double get = (double)len / 1e9 / seconds_since(t0);
        if (!LM_IS_OK(st) || b.len != len) die("big get", st);
        lumen_bytes_free(&b);
        lumen_free(c, &ref, 1);
        if (put > put_best) put_best = put;
        if (get > get_best) get_best = get;
    }
    printf("single_client_put_gigabytes: %.2f GB/s (%zu MiB object, best of %d)\n", put_best, len >> 20, rounds);
    printf("single_client_get_gigabytes: %.2f GB/s (%zu MiB object, best of %d)\n", get_best, len >> 20, rounds);
    free(data);
    lumen_close(c);
}

static void wait_1k_refs(void) {
    lumen_client *c = connect_client();
    enum { N = 1000 };
    lumen_ref refs[N];
    int ready[N];
    lumen_arg a = lumen_arg_bytes("x", 1);
    int rounds = quick ? 5 : 20;
    double total = 0;
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < N; i++) {
            lumen_status st = lumen_call(c, "test.echo", &a, 1, NULL, &refs[i]);
            if (!LM_IS_OK(st)) die("task", st);
        }
        size_t done;
        uint64_t t0 = lm_test_now_us();
        lumen_status st = lumen_wait(c, refs, N, N, 60000, ready, &done);
        total += seconds_since(t0);
        if (!LM_IS_OK(st) || done != N) die("wait 1k", st);
        lumen_free(c, refs, N);
    }
    printf("single_client_wait_1k_refs: %.1f waits/s (submit, then wait for 1,000 refs)\n", rounds / total);
    lumen_close(c);
}

/* ---------------------------------------------------------------- actors */

#define ACTOR_CLASS "bench.Counter"
#define ACTOR_METHOD "small"
#define ACTOR_BATCH 1000
/* Generous: the first call of an actor also waits for its creation. */
#define ACTOR_GET_MS 60000

static lumen_actor actor_new(lumen_client *c) {
    lumen_actor a;
    lumen_status st = lumen_actor_new(c, ACTOR_CLASS, NULL, 0, NULL, &a);
    if (!LM_IS_OK(st)) die("actor_new " ACTOR_CLASS, st);
    return a;
}

static lumen_ref actor_call(lumen_client *c, lumen_actor a) {
    lumen_ref r;
    lumen_status st = lumen_actor_call(c, a, ACTOR_METHOD, NULL, 0, &r);
    if (!LM_IS_OK(st)) die("actor_call " ACTOR_CLASS "." ACTOR_METHOD, st);
    return r;
}

/* Gets the n results in order (checking each is the method's "ok") and frees them. */
static void actor_get_all(lumen_client *c, lumen_ref *refs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        lumen_bytes b;
        lumen_status st = lumen_get(c, refs[i], ACTOR_GET_MS, &b);
        if (!LM_IS_OK(st)) die("get " ACTOR_CLASS "." ACTOR_METHOD " result", st);
        if (b.len != 2 || memcmp(b.data, "ok", 2) != 0) {
            lumen_bytes_free(&b);
            die("get " ACTOR_CLASS "." ACTOR_METHOD " result",
                (lumen_status){.code = LUMEN_INTERNAL, .msg = "unexpected result bytes"});
        }
        lumen_bytes_free(&b);
    }
    lumen_status st = lumen_free(c, refs, n);
    if (!LM_IS_OK(st)) die("free actor results", st);
}

/* One call and its result: the actor is up once this returns. */
static void actor_sync_call(lumen_client *c, lumen_actor a) {
    lumen_ref r = actor_call(c, a);
    actor_get_all(c, &r, 1);
}

static void actor_kill(lumen_client *c, lumen_actor a) {
    lumen_status st = lumen_actor_kill(c, a);
    if (!LM_IS_OK(st)) die("actor_kill", st);
}

/* Ray's pattern: submit a batch of calls, then get all of them; n calls in
 * all. Returns the seconds taken. */
static double actor_calls_async(lumen_client *c, lumen_actor a, int n) {
    lumen_ref refs[ACTOR_BATCH];
    uint64_t t0 = lm_test_now_us();
    for (int done = 0; done < n;) {
        int batch = n - done < ACTOR_BATCH ? n - done : ACTOR_BATCH;
        for (int i = 0; i < batch; i++) refs[i] = actor_call(c, a);
        actor_get_all(c, refs, (size_t)batch);
        done += batch;
    }
    return seconds_since(t0);
}

static void actor_calls_sync_1_1(void) {
    lumen_client *c = connect_client();
    lumen_actor a = actor_new(c);
    for (int i = 0; i < 10; i++) actor_sync_call(c, a); /* created, and warm */
    double budget = quick ? 0.5 : 2.0, secs;
    long n = 0;
    uint64_t t0 = lm_test_now_us();
    do {
        for (int i = 0; i < 50; i++) actor_sync_call(c, a);
        n += 50;
    } while ((secs = seconds_since(t0)) < budget);
    printf("1_1_actor_calls_sync: %.0f calls/s (%ld calls one at a time, %.0f us each)\n", n / secs, n,
           secs * 1e6 / n);
    actor_kill(c, a);
    lumen_close(c);
}

static void actor_calls_async_1_1(void) {
    lumen_client *c = connect_client();
    lumen_actor a = actor_new(c);
    int n = quick ? 2000 : 10000;
    actor_calls_async(c, a, ACTOR_BATCH); /* created, and warm */
    printf("1_1_actor_calls_async: %.0f calls/s (%d calls, in batches of %d submitted then got)\n",
           n / actor_calls_async(c, a, n), n, ACTOR_BATCH);
    actor_kill(c, a);
    lumen_close(c);
}

typedef struct actor_client_run {
    int n;
    pthread_barrier_t *ready; /* every client has its actor up; the clock starts */
} actor_client_run;

static void *actor_client_thread(void *arg) {
    actor_client_run *run = arg;
    lumen_client *c = connect_client();
    lumen_actor a = actor_new(c);
    actor_calls_async(c, a, 100); /* created, and warm */
    pthread_barrier_wait(run->ready);
    actor_calls_async(c, a, run->n);
    actor_kill(c, a);
    lumen_close(c);
    return NULL;
}

/* n clients (threads, each with a lumen_client of its own), each calling an
 * actor of its own; n is the cluster's slot count. */
static void actor_calls_async_n_n(int clients) {
    int n = quick ? 2000 : 10000;
    pthread_t *threads = calloc((size_t)clients, sizeof *threads);
    actor_client_run *runs = calloc((size_t)clients, sizeof *runs);
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, (unsigned)clients + 1);
    for (int i = 0; i < clients; i++) {
        runs[i] = (actor_client_run){.n = n, .ready = &ready};
        pthread_create(&threads[i], NULL, actor_client_thread, &runs[i]);
    }
    pthread_barrier_wait(&ready);
    uint64_t t0 = lm_test_now_us();
    for (int i = 0; i < clients; i++) pthread_join(threads[i], NULL);
    double secs = seconds_since(t0);
    printf("n_n_actor_calls_async: %.0f calls/s (%d clients, an actor each, %d calls each in batches of %d)\n",
           (double)clients * n / secs, clients, n, ACTOR_BATCH);
    pthread_barrier_destroy(&ready);
    free(runs);
    free(threads);
}

/* Creates m actors, then makes one call on each and gets every result, so
 * each creation is really done; kills them after (not timed). */
static void actor_creation(void) {
    lumen_client *c = connect_client();
    lumen_actor warm = actor_new(c); /* the job's first actor, not timed */
    actor_sync_call(c, warm);
    int m = quick ? 20 : 100;
    lumen_actor *actors = malloc((size_t)m * sizeof *actors);
    lumen_ref *refs = malloc((size_t)m * sizeof *refs);
    uint64_t t0 = lm_test_now_us();
    for (int i = 0; i < m; i++) actors[i] = actor_new(c);
    for (int i = 0; i < m; i++) refs[i] = actor_call(c, actors[i]);
    actor_get_all(c, refs, (size_t)m);
    double secs = seconds_since(t0);
    printf("actor_creation: %.0f actors/s (%d actors, each created and called once)\n", m / secs, m);
    for (int i = 0; i < m; i++) actor_kill(c, actors[i]);
    actor_kill(c, warm);
    free(refs);
    free(actors);
    lumen_close(c);
}

/* ---------------------------------------------------------------- the job */

/* Runs argv, returning the wall time; stdout's last line goes to last. */
static double run_program(char *const argv[], char *last, size_t cap) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    uint64_t t0 = lm_test_now_us();
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    char buf[4096];
    size_t used = 0;
    ssize_t n;
    last[0] = '\0';
    while ((n = read(fds[0], buf + used, sizeof buf - 1 - used)) > 0) {
        used += (size_t)n;
        buf[used] = '\0';
        char *nl = strrchr(buf, '\n');
        if (nl != NULL) {
            *nl = '\0';
            const char *line = strrchr(buf, '\n');
            line = line ? line + 1 : buf;
            size_t len = strlen(line) < cap - 1 ? strlen(line) : cap - 1;
            memcpy(last, line, len);
            last[len] = '\0';
            used = 0;
        }
    }
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    double secs = seconds_since(t0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? secs : -1;
}

static void most_frequent_word(void) {
    char corpus[600], size[32];
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", lm_test_cluster_dir(cluster));
    snprintf(size, sizeof size, "%llu", quick ? 32ull << 20 : 256ull << 20);
    char gen[512], mfw[512], last[256];
    snprintf(gen, sizeof gen, "%s", lm_test_bin("gen_corpus"));
    snprintf(mfw, sizeof mfw, "%s", lm_test_bin("most_frequent_word"));
    char *gen_argv[] = {gen, "--bytes", size, "--seed", "1", "--output", corpus, NULL};
    if (run_program(gen_argv, last, sizeof last) < 0) {
        fprintf(stderr, "cluster_bench: gen_corpus failed\n");
        return;
    }
    char *local_argv[] = {mfw, "--input", corpus, "--method", "local", NULL};
    char chunks[16];
    snprintf(chunks, sizeof chunks, "%d", chunks_per_job);
    char *exact_argv[] = {mfw, "--address", (char *)lm_test_cluster_scheduler(cluster), "--input", corpus,
                          "--method", "exact", "--chunks", chunks, NULL};
    /* The first job on a fresh cluster pays for first-touch memory in every
     * process (stores, workers' argument buffers); later jobs reuse it. Both
     * are reported; the comparison uses the best of three warm runs against
     * the best of three local counts. */
    char local_answer[256], exact_answer[256], cold_answer[256];
    double cold = run_program(exact_argv, cold_answer, sizeof cold_answer);
    double exact = 1e9, local = 1e9;
    for (int i = 0; i < 3; i++) {
        double t = run_program(exact_argv, exact_answer, sizeof exact_answer);
        if (t >= 0 && t < exact) exact = t;
        t = run_program(local_argv, local_answer, sizeof local_answer);
        if (t >= 0 && t < local) local = t;
    }
    const char *name = quick ? "most_frequent_word_32mb" : "most_frequent_word_256mb";
    printf("%s: %.2f s (exact, %d workers, %s chunks, best of 3 on a warm cluster; answer \"%s\")\n", name,
           exact, lm_test_cluster_workers(cluster), chunks, exact_answer);
    printf("%s_first_job: %.2f s (the same job on the fresh cluster; answer \"%s\")\n", name, cold, cold_answer);
    printf("%s_local: %.2f s (single-threaded count in one process, best of 3; answer \"%s\")\n", name, local,
           local_answer);
    printf("%s_ratio: %.2f x the local count%s\n", name, exact / local,
           strcmp(exact_answer, local_answer) == 0 && strcmp(cold_answer, local_answer) == 0 ? ""
                                                                                           : " (ANSWERS DIFFER)");
    unlink(corpus);
}

static uint64_t wall_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A cluster of a recovery benchmark's own (the main one is stopped) and a
 * client of it; the status of connecting (the cluster is up, or we died). */
static lumen_status small_cluster(int workers, int slots, lm_test_cluster **out, lumen_client **client) {
    lm_test_cluster_opts opts = {.workers = workers, .slots = slots};
    *out = NULL;
    *client = NULL;
    lumen_status st = lm_test_cluster_start(&opts, out);
    if (!LM_IS_OK(st)) die("recovery cluster", st);
    return lumen_connect(lm_test_cluster_scheduler(*out), NULL, client);
}

/*
 * From a worker's SIGKILL to its tasks running again elsewhere, on a
 * cluster of its own: one worker runs two long tasks, a second worker
 * joins, the first is killed; the re-runs report when they started.
 */
static void worker_death_recovery(void) {
    lm_test_cluster *small;
    lumen_client *c;
    lumen_status st = small_cluster(1, 2, &small, &c);
    lumen_ref refs[2];
    lumen_arg long_sleep = lumen_arg_bytes("60000", 5);
    for (int i = 0; LM_IS_OK(st) && i < 2; i++) st = lumen_call(c, "bench.started_at", &long_sleep, 1, NULL, &refs[i]);
    if (LM_IS_OK(st)) st = lm_test_cluster_add_worker(small, NULL);
    if (LM_IS_OK(st)) st = lm_test_cluster_wait_nodes(small, 3, 20000); /* 2 workers + the store */
    if (!LM_IS_OK(st)) {
        lm_test_cluster_stop(small);
        die("recovery setup", st);
    }
    lm_test_sleep_ms(500); /* both tasks run on worker 0 by now */
    uint64_t killed = wall_us();
    lm_test_cluster_kill_worker(small, 0, SIGKILL);
    double first = 1e18, last = 0;
    int rerun = 0;
    for (int i = 0; i < 2; i++) {
        lumen_bytes out = {0};
        st = lumen_get(c, refs[i], 30000, &out);
        if (!LM_IS_OK(st)) break;
        unsigned long long started = 0;
        unsigned attempt = 0;
        char text[64] = "";
        memcpy(text, out.data, out.len < sizeof text - 1 ? out.len : sizeof text - 1);
        if (sscanf(text, "%llu %u", &started, &attempt) == 2 && attempt > 0) {
            double ms = ((double)started - (double)killed) / 1000.0;
            first = ms < first ? ms : first;
            last = ms > last ? ms : last;
            rerun++;
        }
        lumen_bytes_free(&out);
    }
    lumen_close(c);
    lm_test_cluster_stop(small);
    if (!LM_IS_OK(st)) die("recovery get", st);
    printf("worker_death_recovery: %.1f ms (SIGKILL of a worker to its tasks running again on another; "
           "%d of 2 re-run, the last after %.1f ms)\n",
           rerun ? first : -1.0, rerun, last);
}

/*
 * scheduler_restart_recovery: the scheduler is SIGKILLed, stays down for a
 * while (a supervisor's restart delay), and starts again on its address.
 * Measured from its restart: until every node has registered again, and
 * until a task a client (connected before the kill) submits then runs.
 */
static void scheduler_restart_recovery(int64_t down_ms) {
    lm_test_cluster *small;
    lumen_client *c;
    lumen_status st = small_cluster(2, 1, &small, &c);
    if (LM_IS_OK(st)) kill(lm_test_cluster_scheduler_pid(small), SIGKILL);
    if (LM_IS_OK(st)) lm_test_sleep_ms(down_ms);
    uint64_t restarted = lm_test_now_us();
    if (LM_IS_OK(st)) st = lm_test_cluster_restart_scheduler(small, SIGKILL);
    double up_ms = (double)(lm_test_now_us() - restarted) / 1000.0;
    lumen_ref ref;
    lumen_bytes out = {0};
    lumen_arg a = lumen_arg_bytes("x", 1);
    if (LM_IS_OK(st)) st = lumen_call(c, "test.echo", &a, 1, NULL, &ref);
    if (LM_IS_OK(st)) st = lumen_get(c, ref, 300000, &out);
    double task_ms = (double)(lm_test_now_us() - restarted) / 1000.0;
    lumen_bytes_free(&out);
    if (LM_IS_OK(st)) st = lm_test_cluster_wait_registered(small, 300000);
    double nodes_ms = (double)(lm_test_now_us() - restarted) / 1000.0;
    lumen_close(c);
    lm_test_cluster_stop(small);
    if (!LM_IS_OK(st)) die("restart recovery", st);
    printf("scheduler_restart_recovery_%llds: task %.0f ms, all nodes %.0f ms (from the restart after %lld s down; "
           "the scheduler answered after %.0f ms)\n",
           (long long)down_ms / 1000, task_ms, nodes_ms, (long long)down_ms / 1000, up_ms);
}

int main(int argc, char **argv) {
    int workers = 2, slots = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = true;
        else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) workers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--slots") == 0 && i + 1 < argc) slots = atoi(argv[++i]);
        else if (strcmp(argv[i], "--chunks") == 0 && i + 1 < argc) chunks_per_job = atoi(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: cluster_bench [--quick] [--workers N] [--slots N] [--chunks N] [--only NAME]\n");
            return 2;
        }
    }
    lm_log_set_level(LM_LOG_WARN);
    if (workers < 1 || slots < 1) {
        fprintf(stderr, "cluster_bench: --workers and --slots want a positive number\n");
        return 2;
    }
    if (chunks_per_job <= 0) chunks_per_job = 2 * workers;
    lm_test_cluster_opts opts = {.workers = workers, .slots = slots};
    lumen_status st = lm_test_cluster_start(&opts, &cluster);
    if (!LM_IS_OK(st)) die("cluster", st);
    if (wanted_in("tasks", "tasks_sync")) tasks_sync();
    if (wanted_in("tasks", "tasks_async")) tasks_async();
    if (wanted_in("tasks", "multi_client")) tasks_multi_client();
    if (wanted("put_get_calls")) put_get_calls();
    if (wanted("gigabytes")) put_get_gigabytes();
    if (wanted("wait_1k")) wait_1k_refs();
    if (wanted_in("actors", "1_1_actor_calls_sync")) actor_calls_sync_1_1();
    if (wanted_in("actors", "1_1_actor_calls_async")) actor_calls_async_1_1();
    if (wanted_in("actors", "n_n_actor_calls_async")) actor_calls_async_n_n(workers * slots);
    if (wanted_in("actors", "actor_creation")) actor_creation();
    if (wanted("most_frequent_word")) most_frequent_word();
    lm_test_cluster_stop(cluster);
    cluster = NULL;
    if (wanted("worker_death_recovery")) worker_death_recovery();
    if (wanted("scheduler_restart_recovery")) {
        scheduler_restart_recovery(1000);
        if (!quick) scheduler_restart_recovery(10000);
        if (!quick) scheduler_restart_recovery(60000);
    }
    return 0;
}

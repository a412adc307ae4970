/*
 * test_chaos.c - the word-count job, run again and again on a cluster of 3
 * workers and 2 object stores while, in every round, one process is killed
 * with SIGKILL at a random moment of the job: a worker (a replacement is
 * started on its store), the scheduler (restarted on its address), or a
 * node - an object store with its workers (a new store and as many workers
 * on it replace them). Rounds alternate most_frequent_word --method exact
 * and --method actors; every one must print the single-process answer.
 *
 * Reproducible: the victims and the kill moments (as a fraction of the
 * longest delay) come from a PRNG seeded by $LUMEN_CHAOS_SEED (else a fixed
 * seed), printed with every kill. The longest delay is 1.2 times the job's
 * run time measured without kills ($LUMEN_CHAOS_MAX_DELAY_MS pins it). Bounded:
 * no round starts after the time budget ($LUMEN_CHAOS_SECONDS, else 60 s:
 * fewer rounds in the slower sanitizer builds) or $LUMEN_CHAOS_ROUNDS rounds.
 * $LUMEN_CHAOS_PUT_REPLICAS: the scheduler's put_replicas (default 2: an input chunk outlives a node);
 * $LUMEN_CHAOS_VICTIMS: the kinds killed, e.g. "worker,node" (default all).
 * A failed round stops the test (LUMEN_CHAOS_KEEP_GOING=1: the rounds go on,
 * to count the failures); LUMEN_TEST_KEEP=1 keeps the services' logs.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster.h"
#include "test_util.h"
#include "wordtable.h"

#define DEFAULT_SEED 1
#define CORPUS_SIZE "32MiB"
#define CHUNKS "8"
/* The job gives up on a result after JOB_TIMEOUT_S; the test kills a job
 * still running after JOB_DEADLINE_S (a hang). Both stretch with sanitizers. */
#define JOB_TIMEOUT_S (30 * LM_TEST_SLOWDOWN)
#define JOB_DEADLINE_S (45 * LM_TEST_SLOWDOWN)
#define WORKERS 3
#define STORES 2

typedef enum victim { VICTIM_WORKER, VICTIM_SCHEDULER, VICTIM_NODE, VICTIMS } victim;
static const char *const victim_names[VICTIMS] = {"worker", "scheduler", "node"};

typedef enum method { METHOD_EXACT, METHOD_ACTORS, METHODS } method;
static const char *const method_names[METHODS] = {"exact", "actors"};

static lm_test_cluster *cluster;
static char *dir;
static char corpus[700];
static char want[256]; /* the single-process answer: "WORD COUNT" */

/* ---- a seeded PRNG (splitmix64) ---- */

static uint64_t rng_state;

static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t n) { return n ? rng_next() % n : 0; }

/* The kinds of victim $LUMEN_CHAOS_VICTIMS names (e.g. "worker,node"; unset:
 * all) into kinds[], in victim order; returns their count, 0 if a name is unknown. */
static int chosen_victims(victim kinds[VICTIMS]) {
    const char *list = getenv("LUMEN_CHAOS_VICTIMS");
    bool chosen[VICTIMS] = {false};
    for (const char *p = list; p != NULL && *p != '\0';) {
        size_t len = strcspn(p, ",");
        int v = 0;
        while (v < VICTIMS && !(len == strlen(victim_names[v]) && strncmp(p, victim_names[v], len) == 0)) v++;
        if (v == VICTIMS) return 0;
        chosen[v] = true;
        p += len + (p[len] == ',');
    }
    int n = 0;
    for (int v = 0; v < VICTIMS; v++)
        if (list == NULL || chosen[v]) kinds[n++] = (victim)v;
    return n;
}

static uint64_t env_u64(const char *name, uint64_t fallback) {
    const char *v = getenv(name);
    char *end;
    if (v == NULL || *v == '\0') return fallback;
    unsigned long long n = strtoull(v, &end, 0);
    return *end == '\0' ? (uint64_t)n : fallback;
}

/* ---- the answer, counted here with the examples' own counting code ---- */

static int count_locally(const char *path, char *out, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return -1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *text = malloc(size > 0 ? (size_t)size : 1);
    size_t got = text ? fread(text, 1, (size_t)size, f) : 0;
    fclose(f);
    wc_table *t = wc_table_new(65536);
    wc_entry top;
    int rc = text && t && got == (size_t)size && wc_table_count_text(t, text, got) == 0 && wc_table_top(t, 1, &top) == 1
                 ? 0
                 : -1;
    if (rc == 0) snprintf(out, cap, "%.*s %" PRIu64, (int)top.len, top.word, top.count);
    wc_table_free(t);
    free(text);
    return rc;
}

/* ---- the job: most_frequent_word as a child process ---- */

typedef struct job {
    pid_t pid;
    char out[800], err[800]; /* its stdout and stderr */
    uint64_t started_us;
} job;

/* Starts the job with stdout and stderr in files of their own (the answer
 * is stdout's last line). It dies with the test (PR_SET_PDEATHSIG). */
static int job_start(job *j, method how, int round) {
    /* Next to the services' logs, kept with them (LUMEN_TEST_KEEP). */
    const char *logs = lm_test_cluster_dir(cluster);
    snprintf(j->out, sizeof j->out, "%s/round-%d.out", logs, round);
    snprintf(j->err, sizeof j->err, "%s/round-%d.err", logs, round);
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", JOB_TIMEOUT_S);
    char *argv[] = {(char *)lm_test_bin("most_frequent_word"), "--address", (char *)lm_test_cluster_scheduler(cluster),
                    "--input", corpus, "--method", (char *)method_names[how], "--chunks", CHUNKS,
                    "--timeout", timeout, NULL};
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    j->started_us = lm_test_now_us();
    j->pid = fork();
    if (j->pid != 0) return j->pid > 0 ? 0 : -1;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int out = open(j->out, O_WRONLY | O_CREAT | O_TRUNC, 0644), err = open(j->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0 || err < 0) _exit(126);
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    execv(argv[0], argv);
    _exit(127);
}

/* Reaps the job if it ended: true then, with its wait status. */
static bool job_ended(job *j, int *status) {
    if (j->pid <= 0) return true;
    if (waitpid(j->pid, status, WNOHANG) != j->pid) return false;
    j->pid = -1;
    return true;
}

static uint64_t job_elapsed_ms(const job *j) { return (lm_test_now_us() - j->started_us) / 1000; }

/* A file's text, at most its last cap - 1 bytes. */
static void read_tail(const char *path, char *buf, size_t cap) {
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL) return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > (long)cap - 1 ? size - (long)cap + 1 : 0, SEEK_SET);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* The last line of the job's stdout. */
static void job_answer(const job *j, char *line, size_t cap) {
    char text[4096];
    read_tail(j->out, text, sizeof text);
    size_t len = strlen(text);
    while (len > 0 && text[len - 1] == '\n') len--;
    size_t start = len;
    while (start > 0 && text[start - 1] != '\n') start--;
    snprintf(line, cap, "%.*s", (int)(len - start), text + start);
}

/* How often the job said it ran again (an input lost with its store). */
static int job_reruns(const job *j) {
    char text[64 * 1024];
    read_tail(j->err, text, sizeof text);
    int n = 0;
    for (const char *p = text; (p = strstr(p, "running the job again")) != NULL; p++) n++;
    return n;
}

/* ---- the kills ---- */

/* The index of a live process among n by pid, the pick-th of them (mod their count); -1: none. */
static int pick_alive(int n, pid_t (*pid_of)(const lm_test_cluster *, int), uint64_t pick) {
    int alive = 0;
    for (int i = 0; i < n; i++) alive += pid_of(cluster, i) > 0;
    if (alive == 0) return -1;
    int k = (int)(pick % (uint64_t)alive);
    for (int i = 0; i < n; i++)
        if (pid_of(cluster, i) > 0 && k-- == 0) return i;
    return -1;
}

/* SIGKILLs a worker and starts another on its store. */
static lumen_status kill_worker(uint64_t pick, char *what, size_t cap) {
    int w = pick_alive(lm_test_cluster_workers(cluster), lm_test_cluster_worker_pid, pick), spare = -1;
    if (w < 0) return lm_status(LUMEN_INTERNAL, "no live worker");
    int store = lm_test_cluster_worker_store(cluster, w);
    pid_t pid = lm_test_cluster_worker_pid(cluster, w);
    lm_test_cluster_kill_worker(cluster, w, SIGKILL);
    lumen_status st = lm_test_cluster_add_worker_on(cluster, store, &spare);
    snprintf(what, cap, "worker %d (pid %d, store %d); worker %d replaces it", w, (int)pid, store, spare);
    return st;
}

/* SIGKILLs an object store and every worker on it (a node lost), then
 * starts a new store with as many workers on it. */
static lumen_status kill_node(uint64_t pick, char *what, size_t cap) {
    int s = pick_alive(lm_test_cluster_objstores(cluster), lm_test_cluster_objstore_pid, pick), lost = 0, spare = -1;
    if (s < 0) return lm_status(LUMEN_INTERNAL, "no live object store");
    int len = snprintf(what, cap, "node of store %d (pid %d", s, (int)lm_test_cluster_objstore_pid(cluster, s));
    lm_test_cluster_kill_objstore(cluster, s, SIGKILL);
    for (int w = 0; w < lm_test_cluster_workers(cluster); w++) {
        if (lm_test_cluster_worker_store(cluster, w) != s || lm_test_cluster_worker_pid(cluster, w) <= 0) continue;
        if (len < (int)cap) len += snprintf(what + len, cap - (size_t)len, ", worker %d", w);
        lm_test_cluster_kill_worker(cluster, w, SIGKILL);
        lost++;
    }
    lumen_status st = lm_test_cluster_add_objstore(cluster, &spare);
    for (int i = 0; i < lost && LM_IS_OK(st); i++) st = lm_test_cluster_add_worker_on(cluster, spare, NULL);
    if (len < (int)cap) snprintf(what + len, cap - (size_t)len, "); store %d with %d worker(s) replaces it", spare, lost);
    return st;
}

static lumen_status kill_victim(victim v, uint64_t pick, char *what, size_t cap) {
    switch (v) {
    case VICTIM_WORKER: return kill_worker(pick, what, cap);
    case VICTIM_NODE: return kill_node(pick, what, cap);
    default:
        snprintf(what, cap, "scheduler (pid %d); restarted on its address", (int)lm_test_cluster_scheduler_pid(cluster));
        return lm_test_cluster_restart_scheduler(cluster, SIGKILL);
    }
}

/* ---- the killer thread ---- */

typedef struct plan {
    victim v;          /* VICTIMS: no kill */
    uint64_t pick;     /* which one of its kind */
    uint64_t delay_ms; /* after the job started */
} plan;

/*
 * One thread kills (and starts the replacements) for the whole suite: a
 * child made with PR_SET_PDEATHSIG dies when the *thread* that forked it
 * ends, so the thread lives until the cluster is stopped. The main thread
 * meanwhile waits for the job, so its run time is measured to the ms.
 */
static struct {
    pthread_t thread;
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool quit, armed, done; /* a plan to carry out; carried out */
    plan p;
    int round;
    uint64_t job_start_us;
    bool job_over;    /* the job exited (set by the main thread) */
    bool during_job;  /* the kill came before that */
    lumen_status st;  /* of the replacements */
} killer = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* Sleeps until the plan's moment, or until the job is over (then the kill
 * comes at once, between rounds). True when the job still ran. */
static bool await_moment(uint64_t when_us) {
    for (;;) {
        pthread_mutex_lock(&killer.mu);
        bool over = killer.job_over;
        pthread_mutex_unlock(&killer.mu);
        uint64_t now = lm_test_now_us();
        if (over || now >= when_us) return !over;
        uint64_t left_ms = (when_us - now + 999) / 1000;
        lm_test_sleep_ms(left_ms < 5 ? (unsigned)left_ms : 5);
    }
}

static void *killer_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&killer.mu);
    for (;;) {
        while (!killer.quit && !killer.armed) pthread_cond_wait(&killer.cond, &killer.mu);
        if (killer.quit) break;
        killer.armed = false;
        plan p = killer.p;
        int round = killer.round;
        uint64_t start = killer.job_start_us;
        pthread_mutex_unlock(&killer.mu);

        bool during = await_moment(start + p.delay_ms * 1000);
        uint64_t at_ms = (lm_test_now_us() - start) / 1000;
        char what[300];
        lumen_status st = kill_victim(p.v, p.pick, what, sizeof what);
        fprintf(stderr, "chaos: round %d: t+%" PRIu64 " ms%s: SIGKILL %s\n", round, at_ms,
                during ? "" : " (the job was done)", what);

        pthread_mutex_lock(&killer.mu);
        killer.during_job = during;
        killer.st = st;
        killer.done = true;
        pthread_cond_broadcast(&killer.cond);
    }
    pthread_mutex_unlock(&killer.mu);
    return NULL;
}

static void killer_arm(const plan *p, int round, uint64_t job_start_us) {
    pthread_mutex_lock(&killer.mu);
    killer.p = *p;
    killer.round = round;
    killer.job_start_us = job_start_us;
    killer.job_over = killer.done = false;
    killer.armed = true;
    pthread_cond_broadcast(&killer.cond);
    pthread_mutex_unlock(&killer.mu);
}

static void killer_job_over(void) {
    pthread_mutex_lock(&killer.mu);
    killer.job_over = true;
    pthread_mutex_unlock(&killer.mu);
}

/* Waits until the kill and its replacements are done. */
static void killer_wait(bool *during_job, lumen_status *st) {
    pthread_mutex_lock(&killer.mu);
    while (!killer.done) pthread_cond_wait(&killer.cond, &killer.mu);
    *during_job = killer.during_job;
    *st = killer.st;
    pthread_mutex_unlock(&killer.mu);
}

static void killer_stop(void) {
    if (!killer.running) return;
    pthread_mutex_lock(&killer.mu);
    killer.quit = true;
    pthread_cond_broadcast(&killer.cond);
    pthread_mutex_unlock(&killer.mu);
    pthread_join(killer.thread, NULL);
    killer.running = false;
}

/* ---- rounds ---- */

typedef struct outcome {
    bool ok;                 /* the job printed the right answer, the kill's replacements are up */
    bool killed, during_job; /* the kill happened; before the job ended */
    uint64_t ms;             /* the job's run time */
    int reruns;              /* the job ran again after losing its input */
} outcome;

/* Waits for the job, at most its deadline (then it is killed): its wait
 * status, or -1. */
static int wait_job(job *j, int round, uint64_t *ms) {
    uint64_t deadline_ms = JOB_DEADLINE_S * 1000u;
    int status = -1;
    while (!job_ended(j, &status)) {
        if (job_elapsed_ms(j) > deadline_ms) {
            fprintf(stderr, "chaos: round %d: the job still runs after %" PRIu64 " ms: killed\n", round, deadline_ms);
            lm_test_stop(j->pid, SIGKILL, 1000);
            j->pid = -1;
            status = -1;
            break;
        }
        lm_test_sleep_ms(2);
    }
    *ms = job_elapsed_ms(j);
    return status;
}

/* One round: the job, and the plan's kill during it (none: VICTIMS). */
static void run_round(int round, method how, const plan *p, outcome *o) {
    *o = (outcome){0};
    job j = {.pid = -1};
    if (job_start(&j, how, round) != 0) {
        fprintf(stderr, "chaos: round %d: cannot start most_frequent_word\n", round);
        return;
    }
    if (p->v != VICTIMS) killer_arm(p, round, j.started_us);
    int status = wait_job(&j, round, &o->ms);
    lumen_status replaced = lm_ok();
    if (p->v != VICTIMS) {
        killer_job_over();
        killer_wait(&o->during_job, &replaced);
        o->killed = true;
        if (!LM_IS_OK(replaced))
            fprintf(stderr, "chaos: round %d: a replacement did not start: %s: %s\n", round,
                    lumen_code_name(replaced.code), replaced.msg);
    }
    char got[256];
    job_answer(&j, got, sizeof got);
    o->reruns = job_reruns(&j);
    bool exited_ok = status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    o->ok = LM_IS_OK(replaced) && exited_ok && strcmp(got, want) == 0;
    fprintf(stderr, "chaos: round %d (%s): %s in %" PRIu64 " ms%s: \"%s\"\n", round, method_names[how],
            o->ok ? "right" : "WRONG", o->ms, o->reruns ? " (ran again after losing its input)" : "", got);
    if (!o->ok || o->reruns > 0) { /* what went wrong, or what was lost */
        char err[6000];
        read_tail(j.err, err, sizeof err);
        fprintf(stderr, "chaos: round %d: wanted \"%s\"; exit status %d; its stderr ends:\n%s\n", round, want,
                status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1, err);
    }
}

/* Runs each method twice without a kill: every run must be right; returns
 * the longer of the second (warm) runs' times, the scale of the kill delays. */
static uint64_t calibrate(void) {
    uint64_t longest = 0;
    plan none = {.v = VICTIMS};
    for (int i = 0; i < 2 * METHODS; i++) {
        outcome o;
        run_round(-1 - i, (method)(i % METHODS), &none, &o);
        CU_ASSERT_TRUE(o.ok);
        if (!o.ok) return 0;
        if (i >= METHODS && o.ms > longest) longest = o.ms;
    }
    return longest;
}

/* ---- the suite ---- */

static int suite_cleanup(void) {
    lm_test_cluster_stop(cluster); /* first: the processes the killer started are its children */
    cluster = NULL;
    killer_stop();
    lm_test_rmtree(dir);
    free(dir);
    dir = NULL;
    return 0;
}

/* CUnit runs no cleanup after a failed init: it is done here. */
static int init_failed(const char *what, const char *why) {
    fprintf(stderr, "chaos: %s: %s\n", what, why);
    suite_cleanup();
    return 1;
}

static int suite_init(void) {
    dir = lm_test_tmpdir("chaos");
    if (dir == NULL) return 1;
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
    char out_path[800], output[4096];
    snprintf(out_path, sizeof out_path, "%s/gen_corpus.out", dir);
    char *gen[] = {(char *)lm_test_bin("gen_corpus"), "--bytes", CORPUS_SIZE, "--seed", "7", "--output", corpus, NULL};
    if (lm_test_run(gen, out_path, true, output, sizeof output) != 0) return init_failed("gen_corpus", output);
    if (count_locally(corpus, want, sizeof want) != 0) return init_failed("counting", corpus);
    /* Copies of every put: 1 (the default) loses the job's input with its
     * store, so the example has to run again. */
    static char replicas[16];
    snprintf(replicas, sizeof replicas, "%" PRIu64, env_u64("LUMEN_CHAOS_PUT_REPLICAS", 2));
    static const char *sched_flags[] = {"--put-replicas", replicas, NULL}; /* used again at each restart */
    lm_test_cluster_opts opts = {.workers = WORKERS, .slots = 2, .objstores = STORES, .redis_appendonly = true,
                                 .scheduler_flags = sched_flags};
    lumen_status st = lm_test_cluster_start(&opts, &cluster);
    if (!LM_IS_OK(st)) return init_failed("cluster", st.msg);
    killer.running = pthread_create(&killer.thread, NULL, killer_main, NULL) == 0;
    return killer.running ? 0 : init_failed("killer thread", "cannot start");
}

static void test_chaos(void) {
    uint64_t seed = env_u64("LUMEN_CHAOS_SEED", DEFAULT_SEED);
    uint64_t budget_s = env_u64("LUMEN_CHAOS_SECONDS", 60);
    uint64_t max_rounds = env_u64("LUMEN_CHAOS_ROUNDS", 1000);
    victim kinds[VICTIMS];
    int nkinds = chosen_victims(kinds);
    CU_ASSERT_TRUE_FATAL(nkinds > 0); /* LUMEN_CHAOS_VICTIMS: worker, scheduler, node */
    uint64_t t0 = lm_test_now_us();
    rng_state = seed;
    fprintf(stderr, "\nchaos: seed %" PRIu64 " (LUMEN_CHAOS_SEED), budget %" PRIu64 " s, answer \"%s\"\n", seed,
            budget_s, want);

    uint64_t job_ms = calibrate();
    if (job_ms == 0) return;
    uint64_t max_delay = env_u64("LUMEN_CHAOS_MAX_DELAY_MS", job_ms * 6 / 5);
    fprintf(stderr, "chaos: a job takes about %" PRIu64 " ms without kills: kills at 0..%" PRIu64 " ms\n", job_ms,
            max_delay);

    bool keep_going = env_u64("LUMEN_CHAOS_KEEP_GOING", 0) != 0;
    int rounds = 0, survived = 0, failed = 0, during = 0, reruns = 0, by_kind[VICTIMS] = {0};
    while ((keep_going || failed == 0) && (uint64_t)rounds < max_rounds && lm_test_now_us() - t0 < budget_s * 1000000u) {
        plan p = {.v = kinds[rng_below((uint64_t)nkinds)], .pick = rng_next(), .delay_ms = rng_below(1001) * max_delay / 1000};
        outcome o;
        run_round(rounds, (method)(rounds % METHODS), &p, &o);
        rounds++;
        reruns += o.reruns;
        /* The next round starts on a whole cluster: the scheduler knows every node. */
        lumen_status st = lm_test_cluster_wait_registered(cluster, LM_TEST_TIMEOUT(20000));
        if (!LM_IS_OK(st)) fprintf(stderr, "chaos: after round %d: %s\n", rounds - 1, st.msg);
        if (!o.ok || !o.killed || !LM_IS_OK(st)) {
            fprintf(stderr, "chaos: FAILED in round %d (LUMEN_CHAOS_SEED=%" PRIu64 " reproduces it; LUMEN_TEST_KEEP=1 "
                            "keeps the logs in %s)\n", rounds - 1, seed, lm_test_cluster_dir(cluster));
            failed++;
            continue;
        }
        survived++;
        during += o.during_job;
        by_kind[p.v]++;
    }
    fprintf(stderr,
            "chaos: %d kills survived in %d rounds (seed %" PRIu64 "): %d during a job; %d worker, %d scheduler, "
            "%d node; %d job rerun(s) after a lost input; %d round(s) failed; %.1f s\n",
            survived, rounds, seed, during, by_kind[VICTIM_WORKER], by_kind[VICTIM_SCHEDULER],
            by_kind[VICTIM_NODE], reruns, failed, (double)(lm_test_now_us() - t0) / 1e6);
    CU_ASSERT_EQUAL(failed, 0);
    CU_ASSERT_TRUE(rounds > 0);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"the word-count job stays right while workers, stores and the scheduler are killed", test_chaos},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("chaos", tests, suite_init, suite_cleanup);
}

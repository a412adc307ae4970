/*
 * test_chaos.c - jobs run again and again on a cluster of 3 workers and 2
 * object stores while, in every round, one or two processes are killed
 * with SIGKILL at random moments of the job. The victims (roles):
 *
 *   worker     a worker; a new one is started on its store
 *   executor   a worker's child that runs tasks or hosts an actor (found in
 *              /proc: a lumen-executor whose parent is a live worker); its
 *              worker spawns another by itself
 *   scheduler  restarted on its address with its command line, after a
 *              random downtime (0..500 ms)
 *   objstore   an object store alone, restarted the same way (its address,
 *              spill dir and flags); its workers go on with it
 *   redis      restarted on its port with its dir (AOF on), the same way
 *   node       an object store and its workers; a new store and as many
 *              workers replace them
 *
 * A round kills two victims at independent moments in $LUMEN_CHAOS_DOUBLE
 * percent of the rounds (default 25); the killer carries the kills out one
 * after the other, so a second kill due while the first one's restart is
 * under way comes right after it. Rounds cycle through the jobs:
 * most_frequent_word --method exact, actors-exact, seed and actors, and
 * chain_job (tests/support/chain_job.c: a chain of dependent tasks and an
 * accumulating actor). Every job must print its single-process answer
 * (seed and actors: the answer they give without kills; the test says if
 * that differs from the exact one).
 *
 * Recovery time, per kill: from the SIGKILL until the cluster serves again,
 * i.e. until a new client (a probe thread started at the kill) connects,
 * runs a task (test.add 1 2) and gets its right result. The restarts run
 * meanwhile, as a supervisor's would: the downtime counts. The probe queues
 * behind the job's tasks like any client's. A kill after which the cluster
 * does not serve again within 60 s (x5 with sanitizers), or after which
 * the scheduler does not list every live process again, fails the round.
 * The report also gives, for kills during a job, the time from the kill to
 * the job's end.
 *
 * Reproducible: the victims, the kill moments (as a fraction of the longest
 * delay) and the downtimes come from a PRNG seeded by $LUMEN_CHAOS_SEED
 * (else a fixed seed), printed with every kill. The longest delay is 1.2
 * times the job's run time measured without kills ($LUMEN_CHAOS_MAX_DELAY_MS
 * pins it). Bounded: no round starts after the time budget
 * ($LUMEN_CHAOS_SECONDS, else 60 s: fewer rounds in the slower sanitizer
 * builds) or $LUMEN_CHAOS_ROUNDS rounds.
 *
 * Long mode: $LUMEN_CHAOS_KILLS=N runs until N kills are done (no time
 * budget unless $LUMEN_CHAOS_SECONDS is set too), goes on after a failed
 * round, and ends with a report: kills survived per role, wrong answers,
 * failed jobs, recovery time p50/p99 per role (bench/chaos.sh runs it).
 *
 * $LUMEN_CHAOS_PUT_REPLICAS: the scheduler's put_replicas (default 2: an
 * input chunk outlives a node); $LUMEN_CHAOS_VICTIMS: the roles killed, e.g.
 * "worker,redis" (default all); $LUMEN_CHAOS_METHODS: the jobs, e.g.
 * "exact,chain" (default all). A failed round stops the test
 * (LUMEN_CHAOS_KEEP_GOING=1: the rounds go on, to count the failures);
 * LUMEN_TEST_KEEP=1 keeps the services' logs and the jobs' output.
 */
#include <dirent.h>
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

#include <lumen/lumen.h>

#include "cluster.h"
#include "redis_server.h"
#include "test_util.h"
#include "wordtable.h"

#define DEFAULT_SEED 1
#define CORPUS_SIZE "32MiB"
#define CHUNKS "8"
#define CHAIN_LENGTH 150
/* The job gives up on a result after JOB_TIMEOUT_S; the test kills a job
 * still running after JOB_DEADLINE_S (a hang). Both stretch with sanitizers. */
#define JOB_TIMEOUT_S (30 * LM_TEST_SLOWDOWN)
#define JOB_DEADLINE_S (45 * LM_TEST_SLOWDOWN)
/* A job that answers right but takes longer than this stalled somewhere
 * (a wait that only its timeout ended): the round fails. Recovery takes a
 * few seconds at most (a recovery window or an unknown ref: 5 s). */
#define JOB_STALL_S (20 * LM_TEST_SLOWDOWN)
#define PROBE_DEADLINE_MS LM_TEST_TIMEOUT(60000)
#define MAX_DOWNTIME_MS 500
#define WORKERS 3
#define STORES 2
#define MAX_KILLS_PER_ROUND 2

typedef enum victim { VICTIM_WORKER, VICTIM_EXECUTOR, VICTIM_SCHEDULER, VICTIM_OBJSTORE, VICTIM_REDIS, VICTIM_NODE,
                      VICTIMS } victim;
static const char *const victim_names[VICTIMS] = {"worker", "executor", "scheduler", "objstore", "redis", "node"};

typedef enum method { METHOD_EXACT, METHOD_ACTORS_EXACT, METHOD_SEED, METHOD_ACTORS, METHOD_CHAIN, METHODS } method;
static const char *const method_names[METHODS] = {"exact", "actors-exact", "seed", "actors", "chain"};

static lm_test_cluster *cluster;
static char *dir;
static char corpus[700];
static char want[METHODS][256]; /* each job's right answer, its last line */

/* ---- a seeded PRNG (splitmix64) ---- */

static uint64_t rng_state;

static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t n) { return n ? rng_next() % n : 0; }

/* The names of a comma-separated list $env chooses among names[0..n) into
 * out[], in table order; returns their count (unset: all), 0 if a name is unknown. */
static int chosen(const char *env, const char *const *names, int n, int *out) {
    const char *list = getenv(env);
    bool pick[16] = {false};
    for (const char *p = list; p != NULL && *p != '\0';) {
        size_t len = strcspn(p, ",");
        int v = 0;
        while (v < n && !(len == strlen(names[v]) && strncmp(p, names[v], len) == 0)) v++;
        if (v == n) return 0;
        pick[v] = true;
        p += len + (p[len] == ',');
    }
    int count = 0;
    for (int v = 0; v < n; v++)
        if (list == NULL || *list == '\0' || pick[v]) out[count++] = v;
    return count;
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
    char length[24];
    snprintf(length, sizeof length, "%d", CHAIN_LENGTH);
    /* lm_test_bin's buffer is one per thread: one call. */
    char *bin = (char *)lm_test_bin(how == METHOD_CHAIN ? "chain_job" : "most_frequent_word");
    char *mfw[] = {bin, "--address", (char *)lm_test_cluster_scheduler(cluster),
                   "--input", corpus, "--method", (char *)method_names[how], "--chunks", CHUNKS,
                   "--timeout", timeout, NULL};
    char *chain[] = {bin, "--address", (char *)lm_test_cluster_scheduler(cluster),
                     "--length", length, "--timeout", timeout, NULL};
    char **argv = how == METHOD_CHAIN ? chain : mfw;
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

static bool job_is_over(void); /* the killer's: the round's job exited */

/* One planned kill, and what became of it. */
typedef struct kill_rec {
    victim v;
    uint64_t pick;        /* which one of its kind */
    uint64_t delay_ms;    /* after the job started */
    uint64_t downtime_ms; /* before a restart */
    /* Filled in by the killer: */
    bool done;            /* a process was killed */
    bool during_job;      /* before the job ended */
    uint64_t at_us;       /* the SIGKILL */
    char what[300];
    lumen_status st;      /* of the restart or replacements */
    /* Filled in by the probe: */
    pthread_t probe;
    bool probing;
    uint64_t recovered_us; /* 0: the cluster did not serve again */
    char probe_err[300];
} kill_rec;

static void *probe_main(void *arg) {
    kill_rec *k = arg;
    uint64_t until = k->at_us + (uint64_t)PROBE_DEADLINE_MS * 1000;
    for (uint64_t now = lm_test_now_us(); now < until; now = lm_test_now_us()) {
        int64_t left_ms = (int64_t)(until - now) / 1000 + 1;
        lumen_client *c = NULL;
        lumen_connect_opts opts = {.connect_timeout_ms = left_ms};
        lumen_status st = lumen_connect(lm_test_cluster_scheduler(cluster), &opts, &c);
        lumen_ref r;
        lumen_bytes b = {0};
        lumen_arg args[2] = {lumen_arg_bytes("1", 1), lumen_arg_bytes("2", 1)};
        if (LM_IS_OK(st)) st = lumen_call(c, "test.add", args, 2, NULL, &r);
        if (LM_IS_OK(st)) st = lumen_get(c, r, left_ms, &b);
        bool right = LM_IS_OK(st) && b.len == 1 && memcmp(b.data, "3", 1) == 0;
        if (right) k->recovered_us = lm_test_now_us();
        else if (LM_IS_OK(st))
            snprintf(k->probe_err, sizeof k->probe_err, "1 + 2 = \"%.*s\"", (int)b.len, (const char *)b.data);
        else snprintf(k->probe_err, sizeof k->probe_err, "%s: %s", lumen_code_name(st.code), st.msg);
        lumen_bytes_free(&b);
        lumen_close(c);
        if (right || (LM_IS_OK(st) && !right)) break; /* served, or served wrong: done either way */
        lm_test_sleep_ms(10);
    }
    return NULL;
}

/* The SIGKILL itself (the process stays a zombie until the restart reaps
 * it); the probe starts at once. Only ever a pid > 0: kill(-1) would kill
 * every process we may signal. */
static void kill_now(kill_rec *k, pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    k->at_us = lm_test_now_us();
    k->done = true;
    k->during_job = !job_is_over();
    k->probing = pthread_create(&k->probe, NULL, probe_main, k) == 0;
    if (!k->probing) snprintf(k->probe_err, sizeof k->probe_err, "cannot start the probe thread");
}

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

/* Up to cap lumen-executor processes whose parent is `parent`; their count. */
static int executors_of(pid_t parent, pid_t *out, int cap) {
    DIR *d = opendir("/proc");
    int n = 0;
    for (struct dirent *e; d != NULL && n < cap && (e = readdir(d)) != NULL;) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end != '\0' || pid <= 0) continue;
        char path[64], stat[512];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (f == NULL) continue;
        size_t len = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        stat[len] = '\0';
        /* "pid (comm) state ppid ...": comm may hold spaces, so from the last ')'. */
        char *close = strrchr(stat, ')'), state;
        long ppid;
        if (strstr(stat, "(lumen-executor)") == stat + strcspn(stat, "(") && close != NULL &&
            sscanf(close + 1, " %c %ld", &state, &ppid) == 2 && ppid == (long)parent && state != 'Z')
            out[n++] = (pid_t)pid;
    }
    if (d != NULL) closedir(d);
    return n;
}

/* SIGKILLs a worker and starts another on its store. */
static lumen_status kill_worker(kill_rec *k) {
    int w = pick_alive(lm_test_cluster_workers(cluster), lm_test_cluster_worker_pid, k->pick), spare = -1;
    if (w < 0) return lm_status(LUMEN_INTERNAL, "no live worker");
    int store = lm_test_cluster_worker_store(cluster, w);
    pid_t pid = lm_test_cluster_worker_pid(cluster, w);
    kill_now(k, pid);
    lm_test_cluster_kill_worker(cluster, w, SIGKILL); /* reaps it */
    lumen_status st = lm_test_cluster_add_worker_on(cluster, store, &spare);
    snprintf(k->what, sizeof k->what, "worker %d (pid %d, store %d); worker %d replaces it", w, (int)pid, store, spare);
    return st;
}

/* SIGKILLs an executor of a live worker (the pick-th worker that has one). */
static lumen_status kill_executor(kill_rec *k) {
    int n = lm_test_cluster_workers(cluster);
    for (int tries = 0; tries < n; tries++) {
        int w = pick_alive(n, lm_test_cluster_worker_pid, k->pick + (uint64_t)tries);
        if (w < 0) break;
        pid_t execs[64];
        int m = executors_of(lm_test_cluster_worker_pid(cluster, w), execs, 64);
        if (m == 0) continue;
        pid_t pid = execs[(k->pick >> 32) % (uint64_t)m];
        kill_now(k, pid);
        snprintf(k->what, sizeof k->what, "executor pid %d of worker %d (one of %d); its worker spawns another",
                 (int)pid, w, m);
        return lm_ok();
    }
    return lm_status(LUMEN_INTERNAL, "no live executor");
}

/* SIGKILLs an object store and every worker on it (a node lost), then
 * starts a new store with as many workers on it. */
static lumen_status kill_node(kill_rec *k) {
    int s = pick_alive(lm_test_cluster_objstores(cluster), lm_test_cluster_objstore_pid, k->pick), lost = 0, spare = -1;
    if (s < 0) return lm_status(LUMEN_INTERNAL, "no live object store");
    size_t cap = sizeof k->what;
    int len = snprintf(k->what, cap, "node of store %d (pid %d", s, (int)lm_test_cluster_objstore_pid(cluster, s));
    kill_now(k, lm_test_cluster_objstore_pid(cluster, s));
    for (int w = 0; w < lm_test_cluster_workers(cluster); w++)
        if (lm_test_cluster_worker_store(cluster, w) == s && lm_test_cluster_worker_pid(cluster, w) > 0)
            kill(lm_test_cluster_worker_pid(cluster, w), SIGKILL);
    lm_test_cluster_kill_objstore(cluster, s, SIGKILL);
    for (int w = 0; w < lm_test_cluster_workers(cluster); w++) {
        if (lm_test_cluster_worker_store(cluster, w) != s || lm_test_cluster_worker_pid(cluster, w) <= 0) continue;
        if (len < (int)cap) len += snprintf(k->what + len, cap - (size_t)len, ", worker %d", w);
        lm_test_cluster_kill_worker(cluster, w, SIGKILL);
        lost++;
    }
    lumen_status st = lm_test_cluster_add_objstore(cluster, &spare);
    for (int i = 0; i < lost && LM_IS_OK(st); i++) st = lm_test_cluster_add_worker_on(cluster, spare, NULL);
    if (len < (int)cap)
        snprintf(k->what + len, cap - (size_t)len, "); store %d with %d worker(s) replaces it", spare, lost);
    return st;
}

/* SIGKILLs an object store alone and starts it again with its command line. */
static lumen_status kill_objstore(kill_rec *k) {
    int s = pick_alive(lm_test_cluster_objstores(cluster), lm_test_cluster_objstore_pid, k->pick);
    if (s < 0) return lm_status(LUMEN_INTERNAL, "no live object store");
    pid_t pid = lm_test_cluster_objstore_pid(cluster, s);
    kill_now(k, pid);
    lm_test_sleep_ms((unsigned)k->downtime_ms);
    snprintf(k->what, sizeof k->what, "object store %d (pid %d, %s); restarted on its address after %" PRIu64 " ms",
             s, (int)pid, lm_test_cluster_objstore_at(cluster, s), k->downtime_ms);
    return lm_test_cluster_restart_objstore(cluster, s, SIGKILL);
}

static lumen_status kill_scheduler(kill_rec *k) {
    pid_t pid = lm_test_cluster_scheduler_pid(cluster);
    if (pid <= 0) return lm_status(LUMEN_INTERNAL, "the scheduler does not run (a restart failed)");
    kill_now(k, pid);
    lm_test_sleep_ms((unsigned)k->downtime_ms);
    snprintf(k->what, sizeof k->what, "scheduler (pid %d); restarted on its address after %" PRIu64 " ms", (int)pid,
             k->downtime_ms);
    /* As lumen start's supervisor does: a scheduler that exits as it
     * starts (Redis still loading its append-only file) is started again,
     * after 100 ms doubling; each failure is printed. */
    lumen_status st = lm_test_cluster_restart_scheduler(cluster, SIGKILL);
    for (unsigned pause = 100, tries = 1; !LM_IS_OK(st) && tries < 6; pause *= 2, tries++) {
        fprintf(stderr, "chaos: the scheduler did not start (%s); again in %u ms\n", st.msg, pause);
        lm_test_sleep_ms(pause);
        st = lm_test_cluster_restart_scheduler(cluster, SIGKILL);
    }
    return st;
}

static lumen_status kill_redis(kill_rec *k) {
    lm_test_redis *redis = lm_test_cluster_redis_server(cluster);
    pid_t pid = lm_test_redis_pid(redis);
    if (pid <= 0) return lm_status(LUMEN_INTERNAL, "redis does not run");
    kill_now(k, pid);
    lm_test_redis_kill(redis); /* reaps it */
    lm_test_sleep_ms((unsigned)k->downtime_ms);
    snprintf(k->what, sizeof k->what, "redis (pid %d); restarted on its port and dir after %" PRIu64 " ms", (int)pid,
             k->downtime_ms);
    return lm_test_redis_restart(redis);
}

static lumen_status kill_victim(kill_rec *k) {
    switch (k->v) {
    case VICTIM_WORKER: return kill_worker(k);
    case VICTIM_EXECUTOR: return kill_executor(k);
    case VICTIM_SCHEDULER: return kill_scheduler(k);
    case VICTIM_OBJSTORE: return kill_objstore(k);
    case VICTIM_REDIS: return kill_redis(k);
    default: return kill_node(k);
    }
}

/* ---- the killer thread ---- */

typedef struct plan {
    int nkills;
    kill_rec kills[MAX_KILLS_PER_ROUND]; /* by delay */
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
    plan *p;
    int round;
    uint64_t job_start_us;
    bool job_over; /* the job exited (set by the main thread) */
} killer = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static bool job_is_over(void) {
    pthread_mutex_lock(&killer.mu);
    bool over = killer.job_over;
    pthread_mutex_unlock(&killer.mu);
    return over;
}

/* Sleeps until the plan's moment, or until the job is over (then the kill
 * comes at once, between rounds). */
static void await_moment(uint64_t when_us) {
    for (;;) {
        uint64_t now = lm_test_now_us();
        if (job_is_over() || now >= when_us) return;
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
        plan *p = killer.p;
        int round = killer.round;
        uint64_t start = killer.job_start_us;
        pthread_mutex_unlock(&killer.mu);

        for (int i = 0; i < p->nkills; i++) {
            kill_rec *k = &p->kills[i];
            await_moment(start + k->delay_ms * 1000);
            k->st = kill_victim(k);
            fprintf(stderr, "chaos: round %d: t+%" PRIu64 " ms%s: SIGKILL %s%s%s\n", round,
                    k->done ? (k->at_us - start) / 1000 : 0, k->during_job ? "" : " (the job was done)",
                    k->done ? k->what : victim_names[k->v], LM_IS_OK(k->st) ? "" : ": ",
                    LM_IS_OK(k->st) ? "" : k->st.msg);
        }

        pthread_mutex_lock(&killer.mu);
        killer.done = true;
        pthread_cond_broadcast(&killer.cond);
    }
    pthread_mutex_unlock(&killer.mu);
    return NULL;
}

static void killer_arm(plan *p, int round, uint64_t job_start_us) {
    pthread_mutex_lock(&killer.mu);
    killer.p = p;
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

/* Waits until the kills and their restarts are done. */
static void killer_wait(void) {
    pthread_mutex_lock(&killer.mu);
    while (!killer.done) pthread_cond_wait(&killer.cond, &killer.mu);
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

typedef enum verdict { RIGHT, WRONG_ANSWER, JOB_FAILED, STALLED, UNHEALED } verdict;

typedef struct outcome {
    verdict how;
    uint64_t ms;     /* the job's run time */
    uint64_t end_us; /* when it ended */
    int reruns;      /* the job ran again after losing its input or its actor */
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

/* One round: the job, and the plan's kills during it (none: nkills 0); then
 * the probes' end and every live process registered again. */
static void run_round(int round, method how, plan *p, outcome *o) {
    *o = (outcome){.how = JOB_FAILED};
    job j = {.pid = -1};
    if (job_start(&j, how, round) != 0) {
        fprintf(stderr, "chaos: round %d: cannot start the job\n", round);
        return;
    }
    if (p->nkills > 0) killer_arm(p, round, j.started_us);
    int status = wait_job(&j, round, &o->ms);
    o->end_us = lm_test_now_us();
    bool healed = true;
    if (p->nkills > 0) {
        killer_job_over();
        killer_wait();
        for (int i = 0; i < p->nkills; i++) {
            kill_rec *k = &p->kills[i];
            if (k->probing) pthread_join(k->probe, NULL);
            k->probing = false;
            bool ok = k->done && LM_IS_OK(k->st) && k->recovered_us != 0;
            if (k->done && k->recovered_us != 0)
                fprintf(stderr, "chaos: round %d: %s kill: the cluster served again after %.1f ms\n", round,
                        victim_names[k->v], (double)(k->recovered_us - k->at_us) / 1000);
            if (!LM_IS_OK(k->st))
                fprintf(stderr, "chaos: round %d: the %s kill: %s\n", round, victim_names[k->v], k->st.msg);
            if (k->done && k->recovered_us == 0)
                fprintf(stderr, "chaos: round %d: after the %s kill the cluster did not serve again: %s\n", round,
                        victim_names[k->v], k->probe_err);
            healed = healed && ok;
        }
    }
    /* The next round starts on a whole cluster: the scheduler knows every node. */
    lumen_status reg = lm_test_cluster_wait_registered(cluster, LM_TEST_TIMEOUT(20000));
    if (!LM_IS_OK(reg)) fprintf(stderr, "chaos: after round %d: %s\n", round, reg.msg);
    healed = healed && LM_IS_OK(reg);

    char got[256];
    job_answer(&j, got, sizeof got);
    o->reruns = job_reruns(&j);
    bool exited_ok = status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    o->how = !exited_ok                         ? JOB_FAILED
             : strcmp(got, want[how]) != 0      ? WRONG_ANSWER
             : o->ms > JOB_STALL_S * 1000u      ? STALLED
             : !healed                          ? UNHEALED
                                                : RIGHT;
    static const char *const verdicts[] = {"right", "WRONG", "FAILED", "right, but STALLED",
                                           "right, but the cluster did not heal"};
    fprintf(stderr, "chaos: round %d (%s): %s in %" PRIu64 " ms%s: \"%s\"\n", round, method_names[how],
            verdicts[o->how], o->ms, o->reruns ? " (ran again after a loss)" : "", got);
    /* What went wrong, or what was lost. */
    if (o->how == WRONG_ANSWER || o->how == JOB_FAILED || o->how == STALLED || o->reruns > 0) {
        char err[6000];
        read_tail(j.err, err, sizeof err);
        fprintf(stderr, "chaos: round %d: wanted \"%s\"; exit status %d; its stderr ends:\n%s\n", round, want[how],
                status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1, err);
    }
}

/* Runs each job once without a kill (after a warm-up run): every run must
 * be right (seed and actors: their no-kill answer becomes theirs); fills
 * scale[m] with each one's run time, the scale of its kill delays. */
static bool calibrate(const int *methods, int nmethods, uint64_t scale[METHODS]) {
    plan none = {0};
    for (int i = -1; i < nmethods; i++) {
        method m = (method)methods[i < 0 ? 0 : i];
        bool learn = m == METHOD_SEED || m == METHOD_ACTORS;
        outcome o;
        run_round(-2 - i, m, &none, &o);
        if (learn && o.how == WRONG_ANSWER) { /* its answer without kills becomes its answer */
            job j;
            snprintf(j.out, sizeof j.out, "%s/round-%d.out", lm_test_cluster_dir(cluster), -2 - i);
            char exact[256];
            snprintf(exact, sizeof exact, "%s", want[m]);
            job_answer(&j, want[m], sizeof want[m]);
            fprintf(stderr, "chaos: --method %s answers \"%s\" without kills, not the exact \"%s\": its answer\n",
                    method_names[m], want[m], exact);
            o.how = want[m][0] != '\0' ? RIGHT : WRONG_ANSWER;
        }
        if (o.how != RIGHT) return false;
        scale[m] = o.ms;
    }
    return true;
}

/* ---- the report ---- */

#define MAX_SAMPLES 100000

typedef struct role_stats {
    int kills, survived, after_job;
    uint64_t *recovery_us, *to_end_us; /* samples */
    int nrecovery, nto_end;
} role_stats;

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (nearest rank) of n samples, in ms; sorts them. */
static double quantile_ms(uint64_t *v, int n, double q) {
    if (n == 0) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    int rank = (int)(q * n + 0.999999);
    if (rank < 1) rank = 1;
    return (double)v[rank - 1] / 1000;
}

static void add_sample(uint64_t *v, int *n, uint64_t x) {
    if (*n < MAX_SAMPLES) v[(*n)++] = x;
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
    if (count_locally(corpus, want[METHOD_EXACT], sizeof want[0]) != 0) return init_failed("counting", corpus);
    for (int m = 1; m < METHODS; m++) snprintf(want[m], sizeof want[m], "%s", want[METHOD_EXACT]);
    long long n = CHAIN_LENGTH;
    snprintf(want[METHOD_CHAIN], sizeof want[0], "chain %lld: %lld %lld", n, n * (n + 1) / 2,
             n * (n + 1) * (n + 2) / 6);
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

/* A kill of a random chosen role at a random moment of a job of scale ms. */
static kill_rec random_kill(const int *kinds, int nkinds, uint64_t max_delay_ms) {
    kill_rec k = {.v = (victim)kinds[rng_below((uint64_t)nkinds)], .st = lm_ok()};
    k.pick = rng_next();
    k.delay_ms = rng_below(1001) * max_delay_ms / 1000;
    k.downtime_ms = rng_below(MAX_DOWNTIME_MS + 1);
    return k;
}

static void test_chaos(void) {
    uint64_t seed = env_u64("LUMEN_CHAOS_SEED", DEFAULT_SEED);
    uint64_t want_kills = env_u64("LUMEN_CHAOS_KILLS", 0); /* long mode */
    uint64_t budget_s = env_u64("LUMEN_CHAOS_SECONDS", want_kills ? UINT64_MAX / 2000000 : 60);
    uint64_t max_rounds = env_u64("LUMEN_CHAOS_ROUNDS", want_kills ? UINT64_MAX : 1000);
    uint64_t double_pct = env_u64("LUMEN_CHAOS_DOUBLE", 25);
    int kinds[VICTIMS], methods[METHODS];
    int nkinds = chosen("LUMEN_CHAOS_VICTIMS", victim_names, VICTIMS, kinds);
    int nmethods = chosen("LUMEN_CHAOS_METHODS", method_names, METHODS, methods);
    CU_ASSERT_TRUE_FATAL(nkinds > 0);   /* LUMEN_CHAOS_VICTIMS: worker, executor, scheduler, objstore, redis, node */
    CU_ASSERT_TRUE_FATAL(nmethods > 0); /* LUMEN_CHAOS_METHODS: exact, actors-exact, seed, actors, chain */
    uint64_t t0 = lm_test_now_us();
    rng_state = seed;
    fprintf(stderr, "\nchaos: seed %" PRIu64 " (LUMEN_CHAOS_SEED), budget %" PRIu64 " s, %" PRIu64 " kills wanted, "
                    "answer \"%s\"\n", seed, budget_s, want_kills, want[METHOD_EXACT]);

    uint64_t scale[METHODS] = {0};
    bool calibrated = calibrate(methods, nmethods, scale);
    CU_ASSERT_TRUE_FATAL(calibrated);
    for (int i = 0; i < nmethods; i++)
        fprintf(stderr, "chaos: %s takes about %" PRIu64 " ms without kills: kills at 0..%" PRIu64 " ms\n",
                method_names[methods[i]], scale[methods[i]],
                env_u64("LUMEN_CHAOS_MAX_DELAY_MS", scale[methods[i]] * 6 / 5));

    bool keep_going = want_kills > 0 || env_u64("LUMEN_CHAOS_KEEP_GOING", 0) != 0;
    static role_stats roles[VICTIMS];
    for (int v = 0; v < VICTIMS; v++) {
        free(roles[v].recovery_us);
        free(roles[v].to_end_us);
        roles[v] = (role_stats){.recovery_us = calloc(MAX_SAMPLES, sizeof(uint64_t)),
                                .to_end_us = calloc(MAX_SAMPLES, sizeof(uint64_t))};
        CU_ASSERT_TRUE_FATAL(roles[v].recovery_us != NULL && roles[v].to_end_us != NULL);
    }
    int rounds = 0, failed = 0, wrong = 0, failed_jobs = 0, stalled = 0, unhealed = 0, reruns = 0, kills = 0;
    int survived = 0;
    int during = 0, doubles = 0;
    while ((keep_going || failed == 0) && (uint64_t)rounds < max_rounds &&
           (want_kills ? (uint64_t)kills < want_kills : true) && lm_test_now_us() - t0 < budget_s * 1000000u) {
        method how = (method)methods[rounds % nmethods];
        uint64_t max_delay = env_u64("LUMEN_CHAOS_MAX_DELAY_MS", scale[how] * 6 / 5);
        plan p = {.nkills = 1};
        p.kills[0] = random_kill(kinds, nkinds, max_delay);
        if (rng_below(100) < double_pct) {
            p.kills[1] = random_kill(kinds, nkinds, max_delay);
            p.nkills = 2;
            if (p.kills[1].delay_ms < p.kills[0].delay_ms) {
                kill_rec t = p.kills[0];
                p.kills[0] = p.kills[1];
                p.kills[1] = t;
            }
        }
        outcome o;
        run_round(rounds, how, &p, &o);
        rounds++;
        reruns += o.reruns;
        doubles += p.nkills > 1;
        wrong += o.how == WRONG_ANSWER;
        failed_jobs += o.how == JOB_FAILED;
        stalled += o.how == STALLED;
        unhealed += o.how == UNHEALED;
        for (int i = 0; i < p.nkills; i++) {
            kill_rec *k = &p.kills[i];
            if (!k->done) continue;
            role_stats *r = &roles[k->v];
            kills++;
            r->kills++;
            during += k->during_job;
            r->after_job += !k->during_job;
            if (k->recovered_us != 0) add_sample(r->recovery_us, &r->nrecovery, k->recovered_us - k->at_us);
            if (k->during_job && o.end_us > k->at_us) add_sample(r->to_end_us, &r->nto_end, o.end_us - k->at_us);
            if (o.how == RIGHT) {
                r->survived++;
                survived++;
            }
        }
        bool killed_any = p.kills[0].done || (p.nkills > 1 && p.kills[1].done);
        if (o.how != RIGHT || !killed_any) {
            fprintf(stderr, "chaos: FAILED in round %d (LUMEN_CHAOS_SEED=%" PRIu64 " reproduces it; LUMEN_TEST_KEEP=1 "
                            "keeps the logs in %s)\n", rounds - 1, seed, lm_test_cluster_dir(cluster));
            failed++;
        }
    }
    double secs = (double)(lm_test_now_us() - t0) / 1e6;
    fprintf(stderr,
            "chaos: %d kills survived of %d in %d rounds (seed %" PRIu64 "): %d during a job, %d round(s) with two "
            "kills; %d job rerun(s) after a loss; %d round(s) failed; %.1f s\n",
            survived, kills, rounds, seed, during, doubles, reruns, failed, secs);
    fprintf(stderr, "chaos report: %d kills, %d rounds, seed %" PRIu64 ", %.1f s: %d wrong answer(s), %d failed job(s), "
                    "%d stalled job(s) (right, over %d s), %d round(s) where the cluster did not heal, "
                    "%d job rerun(s) after a loss\n",
            kills, rounds, seed, secs, wrong, failed_jobs, stalled, JOB_STALL_S, unhealed, reruns);
    fprintf(stderr, "chaos report: %-9s %6s %8s %9s | %-27s | %s\n", "role", "kills", "survived", "after job",
            "serves again p50 / p99 ms", "kill to job end p50 / p99 ms");
    for (int v = 0; v < VICTIMS; v++) {
        role_stats *r = &roles[v];
        if (r->kills == 0) continue;
        fprintf(stderr, "chaos report: %-9s %6d %8d %9d | %12.1f / %-12.1f | %12.1f / %.1f\n", victim_names[v],
                r->kills, r->survived, r->after_job, quantile_ms(r->recovery_us, r->nrecovery, 0.5),
                quantile_ms(r->recovery_us, r->nrecovery, 0.99), quantile_ms(r->to_end_us, r->nto_end, 0.5),
                quantile_ms(r->to_end_us, r->nto_end, 0.99));
        free(r->recovery_us);
        free(r->to_end_us);
        r->recovery_us = r->to_end_us = NULL;
    }
    CU_ASSERT_EQUAL(failed, 0);
    CU_ASSERT_TRUE(rounds > 0);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"jobs stay right while schedulers, stores, workers, executors and Redis are killed", test_chaos},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("chaos", tests, suite_init, suite_cleanup);
}

/*
 * test_cli.c - the `lumen` command line tool, run as a user would: start a
 * cluster in a temp run dir on free ports, see it in `lumen status`, ask a
 * service's health, join it from "another machine" (a second run dir), stop
 * it and check every process is gone; bad arguments exit 2 with a message.
 * Security by default: the head makes a token, keeps it 0600 in the run dir
 * and never prints it; `lumen`, joins and clients on the machine find it
 * there; a wrong token is refused at once; `--token ""` opens a cluster.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lumen/lumen.h>

#include "cluster.h"
#include "test_util.h"

static char *dir;       /* this test's temp dir */
static char run_dir[600];
static char out_path[700];
static char output[64 * 1024]; /* the last command's stdout + stderr */

/* `lumen args...`: its exit code, and what it printed in `output`. */
#define lumen(...) lm_test_lumen(out_path, output, sizeof output, __VA_ARGS__)

#define ASSERT_OUTPUT_HAS(text)                                             \
    do {                                                                    \
        if (strstr(output, (text)) == NULL)                                 \
            fprintf(stderr, "\nmissing \"%s\" in output:\n%s", (text), output); \
        CU_ASSERT(strstr(output, (text)) != NULL);                          \
    } while (0)

static int suite_init(void) {
    dir = lm_test_tmpdir("cli");
    if (dir == NULL) return 1;
    snprintf(run_dir, sizeof run_dir, "%s/run", dir);
    snprintf(out_path, sizeof out_path, "%s/out.txt", dir);
    /* The default run dir, where no token is: found only when asked for. */
    setenv("LUMEN_RUN_DIR", dir, 1);
    unsetenv("LUMEN_TOKEN");
    return 0;
}

static int suite_cleanup(void) {
    /* Whatever a failed test left running goes now. */
    lumen("stop", "--run-dir", run_dir, "--timeout", "2", NULL);
    lm_test_rmtree(dir);
    free(dir);
    return 0;
}

static void test_bad_arguments(void) {
    CU_ASSERT_EQUAL(lumen("start", NULL), 2);
    ASSERT_OUTPUT_HAS("exactly one of --head and --address");
    CU_ASSERT_EQUAL(lumen("start", "--head", "--workers", "many", NULL), 2);
    ASSERT_OUTPUT_HAS("--workers");
    CU_ASSERT_EQUAL(lumen("start", "--head", "--port", NULL), 2);
    ASSERT_OUTPUT_HAS("needs a value");
    CU_ASSERT_EQUAL(lumen("start", "--head", "--colour", "blue", NULL), 2);
    ASSERT_OUTPUT_HAS("unknown option --colour");
    CU_ASSERT_EQUAL(lumen("status", "--redis", "nowhere", NULL), 2);
    ASSERT_OUTPUT_HAS("HOST:PORT");
    CU_ASSERT_EQUAL(lumen("health", NULL), 2);
    CU_ASSERT_EQUAL(lumen("frobnicate", NULL), 2);
    ASSERT_OUTPUT_HAS("unknown command");
    CU_ASSERT_EQUAL(lumen(NULL), 2);
    CU_ASSERT_EQUAL(lumen("--help", NULL), 0);
    ASSERT_OUTPUT_HAS("status");
    CU_ASSERT_EQUAL(lumen("start", "--help", NULL), 0);
    ASSERT_OUTPUT_HAS("--workers N");
}

/* pids from the run dir's pid files. */
static int read_pids(pid_t *pids, int cap) {
    char cmd[800];
    snprintf(cmd, sizeof cmd, "cat %s/pids/*.pid 2>/dev/null", run_dir);
    FILE *p = popen(cmd, "r");
    int n = 0, pid;
    unsigned long long ticks;
    while (p != NULL && n < cap && fscanf(p, "%d %llu", &pid, &ticks) == 2) pids[n++] = pid;
    if (p != NULL) pclose(p);
    return n;
}

/* Gone, or a zombie waiting for a reaper that is not us. */
static int process_gone(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *close_paren = strrchr(buf, ')');
    return close_paren != NULL && (close_paren[2] == 'Z' || close_paren[2] == 'X');
}

/* Whether the file holds text (false when it cannot be read). */
static bool file_has(const char *path, const char *text) {
    static char buf[1 << 20];
    FILE *f = fopen(path, "r");
    if (f == NULL) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, text) != NULL;
}

/* A secret the head made (its token, its Redis password): 0600, random
 * hex, in no output and no log. */
static void check_secret_file(const char *name, char *token, size_t cap) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", run_dir, name);
    struct stat st;
    CU_ASSERT_FATAL(stat(path, &st) == 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
    FILE *f = fopen(path, "r");
    CU_ASSERT_FATAL(f != NULL && fgets(token, (int)cap, f) != NULL);
    fclose(f);
    token[strcspn(token, "\n")] = '\0';
    CU_ASSERT(strlen(token) >= 32 && strspn(token, "0123456789abcdef") == strlen(token));
    CU_ASSERT(strstr(output, token) == NULL);
    const char *logs[] = {"scheduler", "objstore", "worker"};
    char cmd[800];
    snprintf(cmd, sizeof cmd, "ls %s/logs/*.log", run_dir);
    FILE *ls = popen(cmd, "r");
    int seen = 0;
    while (ls != NULL && fgets(path, sizeof path, ls) != NULL) {
        path[strcspn(path, "\n")] = '\0';
        CU_ASSERT(!file_has(path, token));
        for (size_t i = 0; i < 3; i++) seen += strstr(path, logs[i]) != NULL;
    }
    if (ls != NULL) pclose(ls);
    CU_ASSERT(seen >= 3);
}

/* A client on this machine finds the token in the run dir by itself. */
static void check_client_finds_token(const char *sched) {
    setenv("LUMEN_RUN_DIR", run_dir, 1);
    lumen_client *c = NULL;
    lumen_status st = lumen_connect(sched, NULL, &c);
    setenv("LUMEN_RUN_DIR", dir, 1);
    if (!LM_IS_OK(st)) fprintf(stderr, "\nconnect: %s\n", st.msg);
    CU_ASSERT_FATAL(LM_IS_OK(st));
    lumen_arg a = lumen_arg_bytes("found it", 8);
    lumen_ref r;
    lumen_bytes b = {0};
    st = lumen_call(c, "test.echo", &a, 1, NULL, &r);
    if (LM_IS_OK(st)) st = lumen_get(c, r, LM_TEST_TIMEOUT(20000), &b);
    LM_ASSERT_OK(st);
    CU_ASSERT(b.len == 8 && memcmp(b.data, "found it", 8) == 0);
    lumen_bytes_free(&b);
    lumen_close(c);
}

/* Joins: on the head's machine with its token; elsewhere with a wrong one,
 * refused at once and told what to do. */
static void check_joins(const char *sched, const char *redis) {
    char port[8], other[700];
    snprintf(port, sizeof port, "%u", lm_test_free_port());
    CU_ASSERT_EQUAL(lumen("start", "--address", sched, "--redis", redis, "--port", port, "--workers", "1",
                          "--slots", "1", "--run-dir", run_dir, NULL),
                    0);
    ASSERT_OUTPUT_HAS("Joined the Lumen cluster");
    CU_ASSERT_EQUAL(lumen("status", "--run-dir", run_dir, NULL), 0);
    ASSERT_OUTPUT_HAS("Nodes: 5 alive (3 workers, 3 slots");

    snprintf(other, sizeof other, "%s/elsewhere", dir);
    snprintf(port, sizeof port, "%u", lm_test_free_port());
    char redis_password[128], path[800];
    snprintf(path, sizeof path, "%s/redis_password", run_dir);
    FILE *f = fopen(path, "r");
    CU_ASSERT_FATAL(f != NULL && fgets(redis_password, sizeof redis_password, f) != NULL);
    fclose(f);
    redis_password[strcspn(redis_password, "\n")] = '\0';
    setenv("LUMEN_REDIS_PASSWORD", redis_password, 1); /* what another machine is told */
    uint64_t t0 = lm_test_now_us();
    CU_ASSERT_EQUAL(lumen("start", "--address", sched, "--redis", redis, "--port", port, "--workers", "0",
                          "--token", "guess", "--run-dir", other, NULL),
                    1);
    unsetenv("LUMEN_REDIS_PASSWORD");
    CU_ASSERT(lm_test_now_us() - t0 < (uint64_t)LM_TEST_TIMEOUT(10000) * 1000);
    ASSERT_OUTPUT_HAS("refused the token given");
    ASSERT_OUTPUT_HAS("LUMEN_TOKEN");
    ASSERT_OUTPUT_HAS("stopped the 1 process(es)");
}

/* The pid in <run_dir>/pids/<name>.pid, 0 when there is none. */
static pid_t pid_of(const char *name) {
    char path[800];
    snprintf(path, sizeof path, "%s/pids/%s.pid", run_dir, name);
    FILE *f = fopen(path, "r");
    int pid = 0;
    if (f != NULL) {
        if (fscanf(f, "%d", &pid) != 1) pid = 0;
        fclose(f);
    }
    return pid;
}

/* The cluster heals itself: a scheduler killed with SIGKILL is started
 * again by the supervisor, on its address, and `lumen status` counts it. */
static void check_supervisor_restarts(const char *sched, uint16_t port) {
    char name[32];
    snprintf(name, sizeof name, "scheduler-%u", port);
    pid_t old = pid_of(name);
    CU_ASSERT_FATAL(old > 0);
    CU_ASSERT_EQUAL(kill(old, SIGKILL), 0);
    pid_t now = old;
    for (int i = 0; i < 200 && (now == old || now == 0 || process_gone(now)); i++) {
        lm_test_sleep_ms(50);
        now = pid_of(name);
    }
    CU_ASSERT(now != old && now > 0 && !process_gone(now));
    int rc = 1;
    for (int i = 0; i < 100 && rc != 0; i++) { /* it answers once it is up */
        rc = lumen("health", sched, "--run-dir", run_dir, NULL);
        if (rc != 0) lm_test_sleep_ms(100);
    }
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(lumen("status", "--run-dir", run_dir, NULL), 0);
    char row[64];
    snprintf(row, sizeof row, "%s", name);
    ASSERT_OUTPUT_HAS(row);
    ASSERT_OUTPUT_HAS("running  1"); /* its restarts */
}

static void test_start_status_health_stop(void) {
    char port[8], redis_port[8], sched[32], redis[32], join[64], token[128];
    uint16_t p = lm_test_free_port(), rp = lm_test_free_port();
    snprintf(port, sizeof port, "%u", p);
    snprintf(redis_port, sizeof redis_port, "%u", rp);
    snprintf(sched, sizeof sched, "127.0.0.1:%u", p);
    snprintf(redis, sizeof redis, "127.0.0.1:%u", rp);
    snprintf(join, sizeof join, "lumen start --address %s", sched);

    CU_ASSERT_EQUAL_FATAL(lumen("start", "--head", "--port", port, "--redis-port", redis_port, "--workers", "2",
                                "--slots", "1", "--run-dir", run_dir, "--dashboard-port", "0", NULL),
                          0);
    ASSERT_OUTPUT_HAS(join);
    ASSERT_OUTPUT_HAS("LUMEN_RUN_DIR="); /* how clients here find the token of this run dir */
    check_secret_file("token", token, sizeof token);
    char redis_password[128];
    check_secret_file("redis_password", redis_password, sizeof redis_password);
    pid_t pids[16];
    int n = read_pids(pids, 16);
    CU_ASSERT_EQUAL(n, 6); /* the supervisor, redis, scheduler, objstore, 2 workers */

    CU_ASSERT_EQUAL(lumen("status", "--run-dir", run_dir, NULL), 0);
    ASSERT_OUTPUT_HAS("Nodes: 3 alive (2 workers, 2 slots");
    ASSERT_OUTPUT_HAS("objstore");
    ASSERT_OUTPUT_HAS("Tasks: 0");

    CU_ASSERT_EQUAL(lumen("health", sched, "--run-dir", run_dir, NULL), 0);
    ASSERT_OUTPUT_HAS("scheduler SERVING");
    CU_ASSERT_EQUAL(lumen("health", sched, NULL), 1); /* no token in the default run dir */
    ASSERT_OUTPUT_HAS("token");
    CU_ASSERT_EQUAL(lumen("health", sched, "--token", "guess", NULL), 1);
    check_client_finds_token(sched);
    check_supervisor_restarts(sched, p);
    check_joins(sched, redis);

    /* A second head on the same ports must refuse, and leave the first alone. */
    CU_ASSERT_EQUAL(lumen("start", "--head", "--port", port, "--redis-port", redis_port, "--run-dir", run_dir,
                          NULL),
                    1);
    ASSERT_OUTPUT_HAS("in use");
    n = read_pids(pids, 16);
    CU_ASSERT_EQUAL(n, 9); /* and the join's supervisor, objstore and worker */

    CU_ASSERT_EQUAL(lumen("stop", "--run-dir", run_dir, NULL), 0);
    ASSERT_OUTPUT_HAS("stopped 9 process(es)");
    for (int i = 0; i < n; i++) CU_ASSERT(process_gone(pids[i]));
    CU_ASSERT_EQUAL(read_pids(pids, 16), 0);
    char path[700];
    snprintf(path, sizeof path, "%s/token", run_dir);
    CU_ASSERT(access(path, F_OK) != 0); /* gone with the cluster */
    snprintf(path, sizeof path, "%s/redis_password", run_dir);
    CU_ASSERT(access(path, F_OK) != 0);
    CU_ASSERT_NOT_EQUAL(lumen("health", sched, "--timeout", "1", NULL), 0);

    CU_ASSERT_EQUAL(lumen("stop", "--run-dir", run_dir, NULL), 0);
    ASSERT_OUTPUT_HAS("nothing to stop");
}

/* --token "" asks for an open cluster: it warns, keeps no token, and
 * anything may call it. Its Redis wants the password of the environment,
 * which the run dir keeps for commands on this machine. */
static void test_open_cluster_redis_password(void) {
    char port[8], redis_port[8], sched[32], path[700];
    uint16_t p = lm_test_free_port();
    snprintf(port, sizeof port, "%u", p);
    snprintf(redis_port, sizeof redis_port, "%u", lm_test_free_port());
    snprintf(sched, sizeof sched, "127.0.0.1:%u", p);
    CU_ASSERT_EQUAL(lumen("start", "--head", "--token", "has space", "--run-dir", run_dir, NULL), 2);
    ASSERT_OUTPUT_HAS("--token wants printable ASCII");
    setenv("LUMEN_REDIS_PASSWORD", "a \"quoted\" pass", 1);
    CU_ASSERT_EQUAL_FATAL(lumen("start", "--head", "--token", "", "--port", port, "--redis-port", redis_port,
                                "--workers", "0", "--run-dir", run_dir, "--dashboard-port", "0", NULL),
                          0);
    ASSERT_OUTPUT_HAS("warning: --token \"\"");
    ASSERT_OUTPUT_HAS("has no token");
    ASSERT_OUTPUT_HAS("LUMEN_REDIS_PASSWORD");
    snprintf(path, sizeof path, "%s/token", run_dir);
    CU_ASSERT(access(path, F_OK) != 0);
    CU_ASSERT_EQUAL(lumen("health", sched, NULL), 0);
    CU_ASSERT_EQUAL(lumen("status", "--run-dir", run_dir, NULL), 0);
    ASSERT_OUTPUT_HAS("Nodes: 1 alive");
    unsetenv("LUMEN_REDIS_PASSWORD");
    CU_ASSERT_EQUAL(lumen("status", "--run-dir", run_dir, NULL), 0);
    char redis[32];
    snprintf(redis, sizeof redis, "127.0.0.1:%s", redis_port);
    CU_ASSERT_EQUAL(lumen("status", "--redis", redis, "--run-dir", dir, NULL), 1); /* a run dir without it */
    ASSERT_OUTPUT_HAS("NOAUTH");
    CU_ASSERT_EQUAL(lumen("stop", "--run-dir", run_dir, NULL), 0);
}

/* A start that fails half-way stops what it had started. */
static void test_failed_start_cleans_up(void) {
    /* Hold the scheduler's port: Redis starts, the scheduler cannot. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CU_ASSERT_FATAL(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 1) == 0);
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    char port[8], redis_port[8];
    snprintf(port, sizeof port, "%u", ntohs(sa.sin_port));
    uint16_t rp = lm_test_free_port();
    snprintf(redis_port, sizeof redis_port, "%u", rp);

    CU_ASSERT_EQUAL(lumen("start", "--head", "--port", port, "--redis-port", redis_port, "--run-dir", run_dir,
                          "--dashboard-port", "0", NULL),
                    1);
    ASSERT_OUTPUT_HAS("in use");
    ASSERT_OUTPUT_HAS("stopped the 1 process(es)");
    pid_t pids[4];
    CU_ASSERT_EQUAL(read_pids(pids, 4), 0);
    close(fd);

    /* Its Redis is gone: the port is free again. */
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in ra = {.sin_family = AF_INET, .sin_port = htons(rp), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CU_ASSERT(connect(probe, (struct sockaddr *)&ra, sizeof ra) != 0);
    close(probe);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"bad arguments exit 2 with a message", test_bad_arguments},
        {"start --head, status, health, stop, stop again", test_start_status_health_stop},
        {"a failed start stops what it started", test_failed_start_cleans_up},
        {"--token \"\": an open cluster on request; a Redis password", test_open_cluster_redis_password},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("cli", tests, suite_init, suite_cleanup);
}

/*
 * test_cli.c - the `lumen` command line tool, run as a user would: start a
 * cluster in a temp run dir on free ports, see it in `lumen status`, ask a
 * service's health, stop it and check every process is gone; bad arguments
 * exit 2 with a message.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster.h"
#include "test_util.h"

static char *dir;       /* this test's temp dir */
static char run_dir[600];
static char out_path[700];
static char output[64 * 1024]; /* the last command's stdout + stderr */

/* Runs `lumen args...` to completion; returns its exit code (-1 if it
 * did not exit normally) and leaves what it printed in `output`. */
static int lumen(const char *first, ...) {
    char *argv[40];
    int n = 0;
    argv[n++] = (char *)lm_test_bin("lumen");
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a != NULL && n < 39; a = va_arg(ap, const char *)) argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    int code = lm_test_run(argv, out_path, true, output, sizeof output);
    fprintf(stderr, "\n$ lumen %s ... -> %d\n%s", first ? first : "", code, output);
    return code;
}

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

static void test_start_status_health_stop(void) {
    char port[8], redis_port[8], sched[32], join[64];
    uint16_t p = lm_test_free_port();
    snprintf(port, sizeof port, "%u", p);
    snprintf(redis_port, sizeof redis_port, "%u", lm_test_free_port());
    snprintf(sched, sizeof sched, "127.0.0.1:%u", p);
    snprintf(join, sizeof join, "lumen start --address %s", sched);

    CU_ASSERT_EQUAL_FATAL(lumen("start", "--head", "--port", port, "--redis-port", redis_port, "--workers", "2",
                                "--slots", "1", "--run-dir", run_dir, "--dashboard-port", "0", NULL),
                          0);
    ASSERT_OUTPUT_HAS(join);
    pid_t pids[16];
    int n = read_pids(pids, 16);
    CU_ASSERT_EQUAL(n, 5); /* redis, scheduler, objstore, 2 workers */

    CU_ASSERT_EQUAL(lumen("status", "--run-dir", run_dir, NULL), 0);
    ASSERT_OUTPUT_HAS("Nodes: 3 alive (2 workers, 2 slots");
    ASSERT_OUTPUT_HAS("objstore");
    ASSERT_OUTPUT_HAS("Tasks: 0");

    CU_ASSERT_EQUAL(lumen("health", sched, NULL), 0);
    ASSERT_OUTPUT_HAS("scheduler SERVING");

    /* A second head on the same ports must refuse, and leave the first alone. */
    CU_ASSERT_EQUAL(lumen("start", "--head", "--port", port, "--redis-port", redis_port, "--run-dir", run_dir,
                          NULL),
                    1);
    ASSERT_OUTPUT_HAS("in use");
    CU_ASSERT_EQUAL(read_pids(pids, 16), 5);

    CU_ASSERT_EQUAL(lumen("stop", "--run-dir", run_dir, NULL), 0);
    ASSERT_OUTPUT_HAS("stopped 5 process(es)");
    for (int i = 0; i < n; i++) CU_ASSERT(process_gone(pids[i]));
    CU_ASSERT_EQUAL(read_pids(pids, 16), 0);
    CU_ASSERT_NOT_EQUAL(lumen("health", sched, "--timeout", "1", NULL), 0);

    CU_ASSERT_EQUAL(lumen("stop", "--run-dir", run_dir, NULL), 0);
    ASSERT_OUTPUT_HAS("nothing to stop");
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
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("cli", tests, suite_init, suite_cleanup);
}

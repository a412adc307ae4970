/* test_util.c - shared test plumbing; see test_util.h. */
#include "test_util.h"

#include <CUnit/Basic.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int lm_test_main(const char *suite, CU_TestInfo *tests, int (*init)(void), int (*cleanup)(void)) {
    /* A peer that vanishes must show up as an error, not kill the test. */
    signal(SIGPIPE, SIG_IGN);
    /* LUMEN_TEST_ONLY=text runs only the tests whose names contain it. */
    const char *only = getenv("LUMEN_TEST_ONLY");
    size_t n = 0, kept = 0;
    while (tests[n].pName != NULL) n++;
    CU_TestInfo chosen[n + 1];
    for (size_t i = 0; i < n; i++)
        if (only == NULL || strstr(tests[i].pName, only) != NULL) chosen[kept++] = tests[i];
    chosen[kept] = (CU_TestInfo)CU_TEST_INFO_NULL;
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    CU_SuiteInfo suites[] = {{suite, init, cleanup, NULL, NULL, chosen}, CU_SUITE_INFO_NULL};
    if (CU_register_suites(suites) != CUE_SUCCESS) {
        fprintf(stderr, "cannot register suite %s: %s\n", suite, CU_get_error_msg());
        CU_cleanup_registry();
        return 2;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}

/* Whether nothing holds the loopback port (plain bind: a port in TIME_WAIT
 * counts as held too). */
static bool port_free(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* The lowest port the kernel hands out to outgoing connections. */
static unsigned ephemeral_low(void) {
    unsigned low = 32768, high;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        if (fscanf(f, "%u %u", &low, &high) != 2) low = 32768;
        fclose(f);
    }
    return low;
}

/*
 * A free port below the kernel's ephemeral range. A port from that range
 * (bind to port 0) can be taken by any outgoing connection while the
 * service that had it is down, and then a service restarted on its address
 * cannot listen there again (seen in it_chaos: a restarted scheduler
 * exited with its port in use). Random, so tests running at once rarely
 * try the same ports.
 */
uint16_t lm_test_free_port(void) {
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static uint64_t state;
    static uint8_t given[65536 / 8]; /* ports this process handed out: never twice */
    unsigned low = 20000, high = ephemeral_low();
    uint16_t found = 0;
    pthread_mutex_lock(&mu);
    if (state == 0) state = ((uint64_t)getpid() << 32) ^ (uint64_t)lm_test_now_us();
    for (int tries = 0; found == 0 && high > low + 1 && tries < 1000; tries++) {
        state = state * 6364136223846793005u + 1442695040888963407u; /* an LCG is enough here */
        uint16_t port = (uint16_t)(low + (unsigned)(state >> 33) % (high - low));
        if (!(given[port / 8] & (1u << (port % 8))) && port_free(port)) found = port;
    }
    if (found != 0) given[found / 8] |= (uint8_t)(1u << (found % 8));
    pthread_mutex_unlock(&mu);
    return found;
}

int lm_test_tcp_connect(const char *addr) {
    char host[64];
    unsigned port;
    if (sscanf(addr, "%63[^:]:%u", host, &port) != 2) return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

char *lm_test_tmpdir(const char *tag) {
    const char *base = getenv("TMPDIR");
    if (base == NULL || *base == '\0') base = "/tmp";
    char *path = NULL;
    if (asprintf(&path, "%s/lumen-%s-XXXXXX", base, tag) < 0) return NULL;
    if (mkdtemp(path) == NULL) {
        free(path);
        return NULL;
    }
    return path;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

void lm_test_rmtree(const char *path) {
    if (path != NULL) nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

uint64_t lm_test_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void lm_test_sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

pid_t lm_test_spawn(char *const argv[], const char *log_path) { return lm_test_spawn_limited(argv, log_path, 0); }

pid_t lm_test_spawn_limited(char *const argv[], const char *log_path, int max_fds) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) return pid;
    /* Child: only async-signal-safe calls until exec. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    struct rlimit rl = {(rlim_t)max_fds, (rlim_t)max_fds};
    if (max_fds > 0 && setrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(126);
    if (log_path != NULL) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
    }
    execvp(argv[0], argv);
    _exit(127);
}

int lm_test_run(char *const argv[], const char *out_path, bool with_stderr, char *output, size_t cap) {
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) _exit(126);
        dup2(fd, STDOUT_FILENO);
        if (with_stderr) dup2(fd, STDERR_FILENO);
        close(fd);
        execv(argv[0], argv);
        _exit(127);
    }
    int status = -1;
    if (pid > 0) waitpid(pid, &status, 0);
    output[0] = '\0';
    FILE *f = fopen(out_path, "r");
    if (f != NULL) {
        size_t len = fread(output, 1, cap - 1, f);
        output[len] = '\0';
        fclose(f);
    }
    return pid > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int lm_test_stop(pid_t pid, int sig, unsigned timeout_ms) {
    if (pid <= 0) return -1;
    kill(pid, sig);
    int status = 0;
    for (unsigned waited = 0;; waited += 10) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (r < 0) return -1;
        if (waited >= timeout_ms) {
            kill(pid, SIGKILL);
            return waitpid(pid, &status, 0) == pid ? status : -1;
        }
        lm_test_sleep_ms(10);
    }
}

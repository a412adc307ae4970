/*
 * rpc_bench - what the RPC layer costs over the bare transport.
 *
 * Prints `metric: value unit` lines: unary round trip (p50, p99) for a small
 * message, calls/s with 64 in flight, and streaming throughput for a 256 MiB
 * payload, each beside the same figure for raw loopback TCP measured in the
 * same run, and the ratios. It never passes or fails on time.
 *
 *   rpc_bench [--quick]     (--quick: smaller counts, for a smoke run)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "echo_server.h"
#include "log.h"
#include "process.h"
#include "test_util.h"

#define SMALL 64        /* bytes per ping-pong message */
#define IN_FLIGHT 64
#define STREAM_CHUNK (256u << 10)

static int unary_calls = 20000;
static int async_calls = 200000;
static uint64_t stream_bytes = 256ull << 20;

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile_us(uint64_t *v, int n, double p) {
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    int i = (int)(p * (n - 1));
    return (double)v[i];
}

/* ------------------------------------------------------------ raw TCP */

typedef struct raw_server {
    int listen_fd;
    uint16_t port;
    int mode; /* 0: echo fixed frames of SMALL bytes; 1: send stream_bytes */
    pthread_t thread;
} raw_server;

static bool read_full(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0) return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

static bool write_full(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static void *raw_server_main(void *arg) {
    raw_server *s = arg;
    int fd = accept(s->listen_fd, NULL, NULL);
    if (fd < 0) return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (s->mode == 0) {
        char buf[SMALL];
        while (read_full(fd, buf, SMALL) && write_full(fd, buf, SMALL)) {
        }
    } else {
        char *buf = malloc(STREAM_CHUNK);
        memset(buf, 7, STREAM_CHUNK);
        for (uint64_t sent = 0; sent < stream_bytes; sent += STREAM_CHUNK)
            if (!write_full(fd, buf, STREAM_CHUNK)) break;
        free(buf);
    }
    close(fd);
    return NULL;
}

static void raw_server_start(raw_server *s, int mode) {
    s->mode = mode;
    s->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    bind(s->listen_fd, (struct sockaddr *)&sa, sizeof sa);
    listen(s->listen_fd, 4);
    getsockname(s->listen_fd, (struct sockaddr *)&sa, &len);
    s->port = ntohs(sa.sin_port);
    pthread_create(&s->thread, NULL, raw_server_main, s);
}

static int raw_connect(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void raw_server_stop(raw_server *s, int client_fd) {
    close(client_fd);
    pthread_join(s->thread, NULL);
    close(s->listen_fd);
}

static void raw_pingpong(double *p50, double *p99) {
    raw_server s;
    raw_server_start(&s, 0);
    int fd = raw_connect(s.port);
    char buf[SMALL] = {0};
    uint64_t *lat = malloc(sizeof *lat * (size_t)unary_calls);
    for (int i = 0; i < unary_calls; i++) {
        uint64_t t0 = lm_test_now_us();
        write_full(fd, buf, SMALL);
        read_full(fd, buf, SMALL);
        lat[i] = lm_test_now_us() - t0;
    }
    *p50 = percentile_us(lat, unary_calls, 0.50);
    *p99 = percentile_us(lat, unary_calls, 0.99);
    free(lat);
    raw_server_stop(&s, fd);
}

/* 64 messages in flight on one connection: a window of pipelined frames. */
static double raw_pipelined_per_s(void) {
    raw_server s;
    raw_server_start(&s, 0);
    int fd = raw_connect(s.port);
    char buf[SMALL * IN_FLIGHT] = {0};
    uint64_t t0 = lm_test_now_us();
    write_full(fd, buf, sizeof buf);
    int sent = IN_FLIGHT;
    for (int got = 0; got < async_calls; got++) {
        read_full(fd, buf, SMALL);
        if (sent < async_calls) {
            write_full(fd, buf, SMALL);
            sent++;
        }
    }
    double secs = (double)(lm_test_now_us() - t0) / 1e6;
    raw_server_stop(&s, fd);
    return async_calls / secs;
}

static double raw_stream_mb_s(void) {
    raw_server s;
    raw_server_start(&s, 1);
    int fd = raw_connect(s.port);
    char *buf = malloc(STREAM_CHUNK);
    uint64_t got = 0, t0 = lm_test_now_us();
    while (got < stream_bytes) {
        ssize_t r = read(fd, buf, STREAM_CHUNK);
        if (r <= 0) break;
        got += (uint64_t)r;
    }
    double secs = (double)(lm_test_now_us() - t0) / 1e6;
    free(buf);
    raw_server_stop(&s, fd);
    return (double)got / 1e6 / secs;
}

/* ------------------------------------------------------------ Lumen RPC */

static void rpc_unary(lm_rpc_client *cli, const char *addr, double *p50, double *p99) {
    char payload[SMALL] = {0};
    Lumentest__EchoRequest req = LUMENTEST__ECHO_REQUEST__INIT;
    req.payload.data = (uint8_t *)payload;
    req.payload.len = SMALL;
    lm_rpc_method say = echo_method("Say");
    uint64_t *lat = malloc(sizeof *lat * (size_t)unary_calls);
    for (int i = 0; i < unary_calls; i++) {
        ProtobufCMessage *out = NULL;
        uint64_t t0 = lm_test_now_us();
        lumen_status st = lm_rpc_unary(cli, addr, say, &req.base, &out, 5000);
        lat[i] = lm_test_now_us() - t0;
        lm_rpc_message_free(out);
        if (!LM_IS_OK(st)) {
            fprintf(stderr, "unary call failed: %s\n", st.msg);
            exit(1);
        }
    }
    *p50 = percentile_us(lat, unary_calls, 0.50);
    *p99 = percentile_us(lat, unary_calls, 0.99);
    free(lat);
}

typedef struct window {
    lm_rpc_client *cli;
    const char *addr;
    Lumentest__EchoRequest req;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int started, finished, failed;
} window;

static void start_one(window *w);

static void on_reply(void *arg, lumen_status st, ProtobufCMessage *reply) {
    window *w = arg;
    lm_rpc_message_free(reply);
    pthread_mutex_lock(&w->mu);
    w->finished++;
    if (!LM_IS_OK(st)) w->failed++;
    bool more = w->started < async_calls;
    if (more) w->started++;
    if (w->finished == async_calls) pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
    if (more) start_one(w);
}

static void start_one(window *w) {
    lumen_status st = lm_rpc_unary_async(w->cli, w->addr, echo_method("Say"), &w->req.base, 10000, on_reply, w);
    if (!LM_IS_OK(st)) {
        fprintf(stderr, "async call failed: %s\n", st.msg);
        exit(1);
    }
}

static double rpc_async_per_s(lm_rpc_client *cli, const char *addr) {
    static char payload[SMALL];
    window w = {.cli = cli, .addr = addr, .mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    lumentest__echo_request__init(&w.req);
    w.req.payload.data = (uint8_t *)payload;
    w.req.payload.len = SMALL;
    uint64_t t0 = lm_test_now_us();
    pthread_mutex_lock(&w.mu);
    w.started = IN_FLIGHT;
    pthread_mutex_unlock(&w.mu);
    for (int i = 0; i < IN_FLIGHT; i++) start_one(&w);
    pthread_mutex_lock(&w.mu);
    while (w.finished < async_calls) pthread_cond_wait(&w.cond, &w.mu);
    pthread_mutex_unlock(&w.mu);
    double secs = (double)(lm_test_now_us() - t0) / 1e6;
    if (w.failed) fprintf(stderr, "%d async calls failed\n", w.failed);
    return async_calls / secs;
}

static lumen_status count_bytes(void *arg, const ProtobufCMessage *msg) {
    *(uint64_t *)arg += ((const Lumentest__EchoReply *)msg)->payload.len;
    return lm_ok();
}

static double rpc_stream_mb_s(lm_rpc_client *cli, const char *addr, uint32_t chunk) {
    Lumentest__EchoRequest req = LUMENTEST__ECHO_REQUEST__INIT;
    req.total_bytes = stream_bytes;
    req.chunk_bytes = chunk;
    req.fast_fill = true;
    uint64_t got = 0, t0 = lm_test_now_us();
    lumen_status st = lm_rpc_read_stream(cli, addr, echo_method("Download"), &req.base, 120000, count_bytes, &got);
    double secs = (double)(lm_test_now_us() - t0) / 1e6;
    if (!LM_IS_OK(st) || got != stream_bytes) {
        fprintf(stderr, "stream failed: %s (%llu bytes)\n", st.msg, (unsigned long long)got);
        exit(1);
    }
    return (double)got / 1e6 / secs;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--quick") == 0) {
        unary_calls = 2000;
        async_calls = 20000;
        stream_bytes = 32ull << 20;
    }
    lm_process_init("rpc_bench");
    lm_log_set_level(LM_LOG_WARN);
    echo_server *server = NULL;
    lm_rpc_client *cli = NULL;
    lumen_status st = echo_server_start(NULL, 2, &server);
    if (LM_IS_OK(st)) st = lm_rpc_client_new(NULL, &cli);
    if (!LM_IS_OK(st)) {
        fprintf(stderr, "rpc_bench: %s\n", st.msg);
        return 1;
    }
    const char *addr = echo_server_addr(server);
    /* Warm up the channel and both sides' allocators. */
    double ignore50, ignore99;
    int saved = unary_calls;
    unary_calls = 500;
    rpc_unary(cli, addr, &ignore50, &ignore99);
    unary_calls = saved;

    double raw50, raw99, rpc50, rpc99;
    raw_pingpong(&raw50, &raw99);
    rpc_unary(cli, addr, &rpc50, &rpc99);
    printf("unary_rtt_p50_raw_tcp: %.1f us\n", raw50);
    printf("unary_rtt_p99_raw_tcp: %.1f us\n", raw99);
    printf("unary_rtt_p50: %.1f us\n", rpc50);
    printf("unary_rtt_p99: %.1f us\n", rpc99);
    printf("unary_rtt_p50_ratio: %.2f x raw\n", rpc50 / raw50);

    double raw_pipe = raw_pipelined_per_s();
    double rpc_async = rpc_async_per_s(cli, addr);
    printf("pipelined_64_raw_tcp: %.0f msgs/s\n", raw_pipe);
    printf("async_64_in_flight: %.0f calls/s\n", rpc_async);
    printf("async_64_ratio: %.2f of raw\n", rpc_async / raw_pipe);

    rpc_stream_mb_s(cli, addr, LM_RPC_CHUNK_BYTES); /* warm-up: first-touch page faults */
    double raw_mb = raw_stream_mb_s();
    double rpc_mb = rpc_stream_mb_s(cli, addr, STREAM_CHUNK);
    double rpc_mb_1m = rpc_stream_mb_s(cli, addr, LM_RPC_CHUNK_BYTES);
    printf("stream_raw_tcp: %.0f MB/s\n", raw_mb);
    printf("stream_256k_chunks: %.0f MB/s\n", rpc_mb);
    printf("stream_1m_chunks: %.0f MB/s\n", rpc_mb_1m);
    printf("stream_ratio: %.2f of raw\n", (rpc_mb > rpc_mb_1m ? rpc_mb : rpc_mb_1m) / raw_mb);

    lm_rpc_client_free(cli);
    echo_server_free(server);
    return 0;
}

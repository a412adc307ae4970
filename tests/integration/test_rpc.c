/*
 * The RPC layer over real loopback sockets: a real lumentest.Echo server and
 * real clients, every kind of call, deadlines, auth, bad input, shutdown.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "echo_server.h"
#include "health.h"
#include "log.h"
#include "scheduler.pb-c.h"
#include "test_util.h"

static echo_server *server;
static lm_rpc_client *client;

static int suite_init(void) {
    lm_log_set_level(LM_LOG_WARN);
    if (!LM_IS_OK(echo_server_start(NULL, 2, &server))) return 1;
    lm_rpc_client_opts opts = {0};
    return LM_IS_OK(lm_rpc_client_new(&opts, &client)) ? 0 : 1;
}

static int suite_cleanup(void) {
    lm_rpc_client_free(client);
    echo_server_free(server);
    return 0;
}

static lumen_status say(lm_rpc_client *cli, const char *addr, const char *text, uint32_t delay_ms,
                        int64_t timeout_ms, char **echoed) {
    Lumentest__EchoRequest req = LUMENTEST__ECHO_REQUEST__INIT;
    req.payload.data = (uint8_t *)text;
    req.payload.len = strlen(text);
    req.delay_ms = delay_ms;
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_unary(cli, addr, echo_method("Say"), &req.base, &out, timeout_ms);
    if (LM_IS_OK(st) && echoed != NULL) {
        Lumentest__EchoReply *reply = (Lumentest__EchoReply *)out;
        *echoed = strndup((const char *)reply->payload.data, reply->payload.len);
    }
    lm_rpc_message_free(out);
    return st;
}

static void test_unary_echo(void) {
    char *echoed = NULL;
    LM_ASSERT_OK(say(client, echo_server_addr(server), "hello lumen", 0, 2000, &echoed));
    CU_ASSERT_STRING_EQUAL(echoed, "hello lumen");
    free(echoed);
}

/* ---- 1,000 asynchronous calls in flight at once */

typedef struct async_batch {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int done, ok, mismatched;
} async_batch;

typedef struct async_one {
    async_batch *batch;
    char text[32];
} async_one;

static void on_async(void *arg, lumen_status st, ProtobufCMessage *reply) {
    async_one *one = arg;
    async_batch *b = one->batch;
    bool match = false;
    if (LM_IS_OK(st)) {
        Lumentest__EchoReply *r = (Lumentest__EchoReply *)reply;
        match = r->payload.len == strlen(one->text) && memcmp(r->payload.data, one->text, r->payload.len) == 0;
    }
    lm_rpc_message_free(reply);
    pthread_mutex_lock(&b->mu);
    b->done++;
    if (LM_IS_OK(st)) b->ok++;
    if (LM_IS_OK(st) && !match) b->mismatched++;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->mu);
}

static void test_async_thousand_in_flight(void) {
    enum { N = 1000 };
    async_batch b = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};
    async_one *ones = calloc(N, sizeof *ones);
    for (int i = 0; i < N; i++) {
        ones[i].batch = &b;
        snprintf(ones[i].text, sizeof ones[i].text, "call-%d", i);
        Lumentest__EchoRequest req = LUMENTEST__ECHO_REQUEST__INIT;
        req.payload.data = (uint8_t *)ones[i].text;
        req.payload.len = strlen(ones[i].text);
        LM_ASSERT_OK(lm_rpc_unary_async(client, echo_server_addr(server), echo_method("Say"), &req.base,
                                        10000, on_async, &ones[i]));
    }
    pthread_mutex_lock(&b.mu);
    while (b.done < N) pthread_cond_wait(&b.cond, &b.mu); /* each call has a 10 s deadline */
    pthread_mutex_unlock(&b.mu);
    CU_ASSERT_EQUAL(b.ok, N);
    CU_ASSERT_EQUAL(b.mismatched, 0);
    free(ones);
}

/* ---- 64 MiB each way, streamed in chunks */

#define BIG (64ull << 20)

typedef struct download_check {
    uint64_t offset, sum, max_chunk;
    bool in_order;
} download_check;

static lumen_status on_chunk(void *arg, const ProtobufCMessage *msg) {
    download_check *d = arg;
    const Lumentest__EchoReply *r = (const Lumentest__EchoReply *)msg;
    for (size_t i = 0; i < r->payload.len; i++)
        if (r->payload.data[i] != echo_byte_at(d->offset + i)) d->in_order = false;
    d->sum = echo_fnv1a(d->sum, r->payload.data, r->payload.len);
    d->offset += r->payload.len;
    if (r->payload.len > d->max_chunk) d->max_chunk = r->payload.len;
    return lm_ok();
}

static void test_download_64mib(void) {
    Lumentest__EchoRequest req = LUMENTEST__ECHO_REQUEST__INIT;
    req.total_bytes = BIG;
    req.chunk_bytes = LM_RPC_CHUNK_BYTES;
    download_check d = {0, ECHO_FNV_INIT, 0, true};
    LM_ASSERT_OK(lm_rpc_read_stream(client, echo_server_addr(server), echo_method("Download"), &req.base,
                                    60000, on_chunk, &d));
    CU_ASSERT_EQUAL(d.offset, BIG);
    CU_ASSERT_TRUE(d.in_order);
    CU_ASSERT_TRUE(d.max_chunk <= LM_RPC_CHUNK_BYTES); /* never one huge message */
}

typedef struct upload_source {
    uint64_t offset, total, sum;
    uint8_t *buf;
    Lumentest__EchoRequest req;
} upload_source;

static lumen_status next_chunk(void *arg, const ProtobufCMessage **msg) {
    upload_source *u = arg;
    if (u->offset == u->total) {
        *msg = NULL;
        return lm_ok();
    }
    size_t n = u->total - u->offset < LM_RPC_CHUNK_BYTES ? (size_t)(u->total - u->offset) : LM_RPC_CHUNK_BYTES;
    for (size_t i = 0; i < n; i++) u->buf[i] = echo_byte_at(u->offset + i);
    u->sum = echo_fnv1a(u->sum, u->buf, n);
    u->offset += n;
    lumentest__echo_request__init(&u->req);
    u->req.payload.data = u->buf;
    u->req.payload.len = n;
    *msg = &u->req.base;
    return lm_ok();
}

static void test_upload_64mib(void) {
    upload_source u = {0, BIG, ECHO_FNV_INIT, malloc(LM_RPC_CHUNK_BYTES), LUMENTEST__ECHO_REQUEST__INIT};
    ProtobufCMessage *out = NULL;
    LM_ASSERT_OK(lm_rpc_write_stream(client, echo_server_addr(server), echo_method("Upload"), next_chunk, &u,
                                     &out, 60000));
    Lumentest__EchoReply *reply = (Lumentest__EchoReply *)out;
    CU_ASSERT_EQUAL(reply->total_bytes, BIG);
    CU_ASSERT_EQUAL(reply->checksum, u.sum);
    lm_rpc_message_free(out);
    free(u.buf);
}

static lumen_status stop_early(void *arg, const ProtobufCMessage *msg) {
    (void)msg;
    int *seen = arg;
    return ++*seen == 3 ? lm_status(LUMEN_ABORTED, "enough") : lm_ok();
}

static void test_stream_abandoned_by_client(void) {
    Lumentest__EchoRequest req = LUMENTEST__ECHO_REQUEST__INIT;
    req.total_bytes = BIG;
    req.chunk_bytes = 65536;
    int seen = 0;
    LM_ASSERT_CODE(lm_rpc_read_stream(client, echo_server_addr(server), echo_method("Download"), &req.base,
                                      10000, stop_early, &seen),
                   LUMEN_ABORTED);
    CU_ASSERT_EQUAL(seen, 3);
    LM_ASSERT_OK(say(client, echo_server_addr(server), "still here", 0, 2000, NULL));
}

/* ---- deadlines */

static void test_deadline_expires(void) {
    unsigned cancels_before = echo_server_cancels(server);
    uint64_t t0 = lm_test_now_us();
    LM_ASSERT_CODE(say(client, echo_server_addr(server), "slow", ECHO_NEVER, 150, NULL), LUMEN_DEADLINE_EXCEEDED);
    uint64_t took_ms = (lm_test_now_us() - t0) / 1000;
    CU_ASSERT_TRUE(took_ms >= 100);
    CU_ASSERT_TRUE(took_ms < 5000);
    /* The server learns of it through on_cancel, which answers the call. */
    for (int i = 0; i < 500 && echo_server_cancels(server) == cancels_before; i++) lm_test_sleep_ms(10);
    CU_ASSERT_EQUAL(echo_server_cancels(server), cancels_before + 1);
    LM_ASSERT_OK(say(client, echo_server_addr(server), "after", 0, 2000, NULL));
}

static void test_deferred_reply_in_time(void) {
    char *echoed = NULL;
    LM_ASSERT_OK(say(client, echo_server_addr(server), "later", 50, 5000, &echoed));
    CU_ASSERT_STRING_EQUAL(echoed, "later");
    free(echoed);
}

static void test_zero_timeout_refused(void) {
    LM_ASSERT_CODE(say(client, echo_server_addr(server), "x", 0, 0, NULL), LUMEN_INVALID_ARGUMENT);
}

/* ---- auth */

static void test_token(void) {
    echo_server *guarded = NULL;
    LM_ASSERT_OK(echo_server_start("s3cret-token", 1, &guarded));
    const char *addr = echo_server_addr(guarded);
    LM_ASSERT_CODE(say(client, addr, "no token", 0, 2000, NULL), LUMEN_UNAUTHENTICATED);

    lm_rpc_client *wrong = NULL, *right = NULL;
    lm_rpc_client_opts opts = {.token = "s3cret-tokeN"};
    LM_ASSERT_OK(lm_rpc_client_new(&opts, &wrong));
    LM_ASSERT_CODE(say(wrong, addr, "wrong token", 0, 2000, NULL), LUMEN_UNAUTHENTICATED);
    opts.token = "s3cret-token";
    LM_ASSERT_OK(lm_rpc_client_new(&opts, &right));
    char *echoed = NULL;
    LM_ASSERT_OK(say(right, addr, "right token", 0, 2000, &echoed));
    CU_ASSERT_STRING_EQUAL(echoed, "right token");
    free(echoed);
    /* Health is guarded too: nothing answers without the token. */
    LM_ASSERT_CODE(lm_health_check(wrong, addr, 2000, NULL, NULL), LUMEN_UNAUTHENTICATED);
    LM_ASSERT_OK(lm_health_check(right, addr, 2000, NULL, NULL));
    lm_rpc_client_free(wrong);
    lm_rpc_client_free(right);
    echo_server_free(guarded);
}

/* ---- bad input */

static void test_malformed_message(void) {
    Lumentest__Malformed bad = LUMENTEST__MALFORMED__INIT;
    bad.payload = 0x0102030405060708ull;
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_unary(client, echo_server_addr(server), echo_method("Say"), &bad.base, &out, 2000);
    LM_ASSERT_CODE(st, LUMEN_INVALID_ARGUMENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "lumentest.EchoRequest"));
    CU_ASSERT_PTR_NULL(out);
    LM_ASSERT_OK(say(client, echo_server_addr(server), "still serving", 0, 2000, NULL));
}

static void test_oversized_message(void) {
    size_t len = LM_RPC_DEFAULT_MAX_MESSAGE + 1024;
    char *big = malloc(len + 1);
    memset(big, 'a', len);
    big[len] = '\0';
    LM_ASSERT_CODE(say(client, echo_server_addr(server), big, 0, 5000, NULL), LUMEN_RESOURCE_EXHAUSTED);
    free(big);
    LM_ASSERT_OK(say(client, echo_server_addr(server), "still serving", 0, 2000, NULL));
}

static void test_unknown_method(void) {
    lm_rpc_method m;
    CU_ASSERT_TRUE(lm_rpc_method_find(&lumen__scheduler__descriptor, "Heartbeat", &m));
    Lumen__HeartbeatRequest req = LUMEN__HEARTBEAT_REQUEST__INIT;
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_unary(client, echo_server_addr(server), m, &req.base, &out, 2000);
    LM_ASSERT_CODE(st, LUMEN_UNIMPLEMENTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "/lumen.Scheduler/Heartbeat"));
    CU_ASSERT_FALSE(lm_rpc_method_find(&lumentest__echo__descriptor, "NoSuchMethod", &m));
}

static void test_unreachable_peer(void) {
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", lm_test_free_port());
    uint64_t t0 = lm_test_now_us();
    LM_ASSERT_CODE(say(client, addr, "anyone?", 0, 5000, NULL), LUMEN_UNAVAILABLE);
    CU_ASSERT_TRUE(lm_test_now_us() - t0 < 4000000); /* fails fast, not at the deadline */
}

static void test_health(void) {
    char *role = NULL;
    LM_ASSERT_OK(lm_health_check(client, echo_server_addr(server), 2000, &role, NULL));
    CU_ASSERT_STRING_EQUAL(role, "echo");
    free(role);
}

/* ---- lifecycle */

static void test_shutdown_drains_calls_in_flight(void) {
    echo_server *e = NULL;
    LM_ASSERT_OK(echo_server_start(NULL, 2, &e));
    async_batch b = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};
    async_one one = {&b, "drained"};
    Lumentest__EchoRequest req = LUMENTEST__ECHO_REQUEST__INIT;
    req.payload.data = (uint8_t *)one.text;
    req.payload.len = strlen(one.text);
    req.delay_ms = 300;
    LM_ASSERT_OK(lm_rpc_unary_async(client, echo_server_addr(e), echo_method("Say"), &req.base, 10000,
                                    on_async, &one));
    lm_test_sleep_ms(100); /* let the call reach the server */
    lm_rpc_server_shutdown(echo_server_rpc(e), 5000);
    pthread_mutex_lock(&b.mu);
    while (b.done < 1) pthread_cond_wait(&b.cond, &b.mu);
    pthread_mutex_unlock(&b.mu);
    CU_ASSERT_EQUAL(b.ok, 1); /* the call in flight finished normally */
    CU_ASSERT_EQUAL(b.mismatched, 0);
    LM_ASSERT_CODE(say(client, echo_server_addr(e), "too late", 0, 1000, NULL), LUMEN_UNAVAILABLE);
    echo_server_free(e);
}

static void test_client_free_cancels_async_calls(void) {
    lm_rpc_client *c = NULL;
    LM_ASSERT_OK(lm_rpc_client_new(NULL, &c));
    async_batch b = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};
    async_one ones[4];
    for (int i = 0; i < 4; i++) {
        ones[i].batch = &b;
        snprintf(ones[i].text, sizeof ones[i].text, "pending-%d", i);
        Lumentest__EchoRequest req = LUMENTEST__ECHO_REQUEST__INIT;
        req.delay_ms = ECHO_NEVER;
        LM_ASSERT_OK(lm_rpc_unary_async(c, echo_server_addr(server), echo_method("Say"), &req.base, 30000,
                                        on_async, &ones[i]));
    }
    lm_rpc_client_free(c); /* every callback runs before this returns */
    CU_ASSERT_EQUAL(b.done, 4);
    CU_ASSERT_EQUAL(b.ok, 0);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"unary echo", test_unary_echo},
        {"1,000 async calls in flight", test_async_thousand_in_flight},
        {"download 64 MiB in chunks", test_download_64mib},
        {"upload 64 MiB in chunks", test_upload_64mib},
        {"stream abandoned by the client", test_stream_abandoned_by_client},
        {"deadline expires, server sees the cancel", test_deadline_expires},
        {"deferred reply within the deadline", test_deferred_reply_in_time},
        {"a call without a deadline is refused", test_zero_timeout_refused},
        {"token required and checked", test_token},
        {"malformed message -> INVALID_ARGUMENT", test_malformed_message},
        {"oversized message -> RESOURCE_EXHAUSTED", test_oversized_message},
        {"unknown method -> UNIMPLEMENTED", test_unknown_method},
        {"unreachable peer -> UNAVAILABLE", test_unreachable_peer},
        {"health check", test_health},
        {"shutdown drains calls in flight", test_shutdown_drains_calls_in_flight},
        {"client free cancels async calls", test_client_free_cancels_async_calls},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("rpc", tests, suite_init, suite_cleanup);
}

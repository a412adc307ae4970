/*
 * test_security.c - security by default, against real services:
 *   - a cluster with a token (and a Redis with a password) refuses every
 *     call without the token: clients of the scheduler, and raw calls to a
 *     worker (RunTasks) and an object store (Put, which is how function
 *     libraries are uploaded); with the token, tasks and uploaded libraries
 *     run;
 *   - a TLS cluster (certificates from scripts/make-test-ca.sh, mutual TLS)
 *     serves TLS clients and refuses plaintext ones and clients without a
 *     certificate, quickly and with a message.
 * `lumen start --head` making the token is in test_cli.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lumen/lumen.h>

#include "cluster.h"
#include "health.h"
#include "log.h"
#include "objstore.pb-c.h"
#include "rpc.h"
#include "scheduler.pb-c.h"
#include "test_util.h"
#include "worker.pb-c.h"

#define TOKEN "security-test-token-0123456789abcdef"

static char *dir;        /* this suite's temp dir */
static char certs[600];  /* the test CA's files */

static int suite_init(void) {
    lm_log_set_level(LM_LOG_WARN);
    dir = lm_test_tmpdir("security");
    if (dir == NULL) return 1;
    /* Nothing found by itself: each test says where its token comes from. */
    setenv("LUMEN_RUN_DIR", dir, 1);
    unsetenv("LUMEN_TOKEN");
    unsetenv("LUMEN_TLS_CA");
    unsetenv("LUMEN_TLS_CERT");
    unsetenv("LUMEN_TLS_KEY");
    snprintf(certs, sizeof certs, "%s/certs", dir);
    return 0;
}

static int suite_cleanup(void) {
    lm_test_rmtree(dir);
    free(dir);
    return 0;
}

static bool has(const char *s, const char *want) {
    bool ok = strstr(s, want) != NULL;
    if (!ok) fprintf(stderr, "\n  \"%s\" lacks \"%s\"\n", s, want);
    return ok;
}

/* Runs test.echo (or upload.hello from `library`) on text; the result. */
static char *echo(lumen_client *c, const char *fn, const lumen_ref *library, const char *text, lumen_status *st) {
    lumen_call_opts opts = {.library = library};
    lumen_arg a = lumen_arg_bytes(text, strlen(text));
    lumen_ref r;
    *st = lumen_call(c, fn, &a, 1, &opts, &r);
    lumen_bytes b = {0};
    if (LM_IS_OK(*st)) *st = lumen_get(c, r, LM_TEST_TIMEOUT(20000), &b);
    char *s = LM_IS_OK(*st) ? strndup(b.data, b.len) : NULL;
    lumen_bytes_free(&b);
    return s;
}

/* ---- raw calls, as anything on the network could make them */

/* A unary call of svc's method `name` with an empty request of its type. */
static lumen_status raw_unary(lm_rpc_client *cli, const char *addr, const ProtobufCServiceDescriptor *svc,
                              const char *name) {
    lm_rpc_method m;
    CU_ASSERT_FATAL(lm_rpc_method_find(svc, name, &m));
    const ProtobufCMessageDescriptor *type = svc->methods[m.index].input;
    ProtobufCMessage *req = calloc(1, type->sizeof_message);
    type->message_init(req);
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_unary(cli, addr, m, req, &out, 5000);
    lm_rpc_message_free(out);
    free(req);
    return st;
}

static lumen_status raw_run_tasks(lm_rpc_client *cli, const char *worker) {
    return raw_unary(cli, worker, &lumen__worker__descriptor, "RunTasks");
}

/* One chunk: a whole object (a function library would travel like this). */
static lumen_status one_chunk(void *arg, const ProtobufCMessage **msg) {
    Lumen__ObjectChunk **chunk = arg;
    *msg = *chunk != NULL ? &(*chunk)->base : NULL;
    *chunk = NULL;
    return lm_ok();
}

static lumen_status raw_put(lm_rpc_client *cli, const char *store) {
    lm_rpc_method m;
    CU_ASSERT_FATAL(lm_rpc_method_find(&lumen__object_store__descriptor, "Put", &m));
    static uint8_t payload[] = "\x7f" "ELF, or so it claims";
    lm_id id = lm_id_random(), job = lm_id_random();
    Lumen__ObjectChunk c = LUMEN__OBJECT_CHUNK__INIT, *next = &c;
    c.object_id = (ProtobufCBinaryData){LM_ID_BYTES, id.bytes};
    c.job_id = (ProtobufCBinaryData){LM_ID_BYTES, job.bytes};
    c.total_size = sizeof payload;
    c.data = (ProtobufCBinaryData){sizeof payload, payload};
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_write_stream(cli, store, m, one_chunk, &next, &out, 5000);
    lm_rpc_message_free(out);
    return st;
}

static lumen_status raw_cluster_info(lm_rpc_client *cli, const char *scheduler) {
    return raw_unary(cli, scheduler, &lumen__scheduler__descriptor, "GetClusterInfo");
}

/* Every service of the cluster refuses a client made with opts. */
static void assert_refused(const lm_test_cluster *cl, const lm_rpc_client_opts *opts) {
    lm_rpc_client *cli = NULL;
    LM_ASSERT_OK(lm_rpc_client_new(opts, &cli));
    const char *sched = lm_test_cluster_scheduler(cl), *store = lm_test_cluster_objstore(cl);
    const char *worker = lm_test_cluster_worker(cl, 0);
    LM_ASSERT_CODE(raw_cluster_info(cli, sched), LUMEN_UNAUTHENTICATED);
    LM_ASSERT_CODE(raw_run_tasks(cli, worker), LUMEN_UNAUTHENTICATED);
    lumen_status st = raw_put(cli, store);
    LM_ASSERT_CODE(st, LUMEN_UNAUTHENTICATED);
    CU_ASSERT(has(st.msg, "token"));
    const char *all[] = {sched, store, worker};
    for (size_t i = 0; i < 3; i++) LM_ASSERT_CODE(lm_health_check(cli, all[i], 5000, NULL, NULL), LUMEN_UNAUTHENTICATED);
    lm_rpc_client_free(cli);
}

static void test_token_on_every_call(void) {
    lm_test_cluster *cl = NULL;
    lm_test_cluster_opts opts = {.workers = 1, .slots = 1, .token = TOKEN, .redis_password = "redis \"pass\" word"};
    LM_ASSERT_OK(lm_test_cluster_start(&opts, &cl));
    const char *addr = lm_test_cluster_scheduler(cl);

    lumen_client *c = NULL;
    lumen_status st = lumen_connect(addr, NULL, &c);
    LM_ASSERT_CODE(st, LUMEN_UNAUTHENTICATED);
    CU_ASSERT(has(st.msg, "token"));
    lumen_connect_opts wrong = {.token = TOKEN "x"};
    LM_ASSERT_CODE(lumen_connect(addr, &wrong, &c), LUMEN_UNAUTHENTICATED);
    CU_ASSERT_PTR_NULL(c);

    assert_refused(cl, &(lm_rpc_client_opts){0});
    assert_refused(cl, &(lm_rpc_client_opts){.token = "not-" TOKEN});

    lumen_connect_opts right = {.token = TOKEN};
    LM_ASSERT_OK(lumen_connect(addr, &right, &c));
    char *s = echo(c, "test.echo", NULL, "with the token", &st);
    LM_ASSERT_OK(st);
    CU_ASSERT_STRING_EQUAL(s, "with the token");
    free(s);
    /* A library shipped through the object store, loaded by the worker. */
    lumen_ref lib;
    LM_ASSERT_OK(lumen_library_upload(c, LUMEN_TEST_UPLOAD_LIB, &lib));
    s = echo(c, "upload.hello", &lib, "token", &st);
    LM_ASSERT_OK(st);
    CU_ASSERT_STRING_EQUAL(s, "hello from an uploaded library, token");
    free(s);
    lumen_close(c);
    lm_test_cluster_stop(cl);
}

/* ---- TLS */

static void cert(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", certs, name); }

static void make_test_ca(void) {
    char script[600], log[700], output[4096];
    snprintf(script, sizeof script, "%s/scripts/make-test-ca.sh", LUMEN_SOURCE_DIR);
    snprintf(log, sizeof log, "%s/make-test-ca.log", dir);
    char *argv[] = {script, certs, NULL};
    int code = lm_test_run(argv, log, true, output, sizeof output);
    if (code != 0) fprintf(stderr, "\nmake-test-ca.sh -> %d:\n%s\n", code, output);
    CU_ASSERT_EQUAL_FATAL(code, 0);
}

/* Connects with the token and the given TLS files ("" for none); the
 * status, and the time it took in *ms. */
static lumen_status tls_connect(const char *addr, const char *ca, const char *crt, const char *key, lumen_client **c,
                                uint64_t *ms) {
    lumen_connect_opts o = {.token = TOKEN, .tls_ca = ca, .tls_cert = crt, .tls_key = key, .rpc_timeout_ms = 3000};
    uint64_t t0 = lm_test_now_us();
    lumen_status st = lumen_connect(addr, &o, c);
    *ms = (lm_test_now_us() - t0) / 1000;
    fprintf(stderr, "\n  connect (ca \"%s\", cert \"%s\"): %s (%llu ms)", ca, crt, st.code ? st.msg : "OK",
            (unsigned long long)*ms);
    return st;
}

static void test_tls(void) {
    make_test_ca();
    char ca[700], srv[700], srv_key[700], cli[700], cli_key[700];
    cert(ca, sizeof ca, "ca.pem");
    cert(srv, sizeof srv, "server.pem");
    cert(srv_key, sizeof srv_key, "server.key");
    cert(cli, sizeof cli, "client.pem");
    cert(cli_key, sizeof cli_key, "client.key");
    lm_test_cluster *cl = NULL;
    lm_test_cluster_opts opts = {.workers = 1, .slots = 1, .token = TOKEN, .tls_cert = srv, .tls_key = srv_key,
                                 .tls_ca = ca};
    LM_ASSERT_OK(lm_test_cluster_start(&opts, &cl));
    const char *addr = lm_test_cluster_scheduler(cl);

    lumen_client *c = NULL;
    uint64_t ms;
    LM_ASSERT_OK(tls_connect(addr, ca, cli, cli_key, &c, &ms));
    lumen_status st;
    char *s = echo(c, "test.echo", NULL, "over TLS", &st);
    LM_ASSERT_OK(st);
    CU_ASSERT_STRING_EQUAL(s, "over TLS");
    free(s);
    /* Big enough to go through the object store both ways, fetched by the
     * worker: every hop is TLS. */
    size_t n = 300 * 1024;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++) big[i] = (char)('a' + i % 26);
    lumen_ref put, r;
    LM_ASSERT_OK(lumen_put(c, big, n, &put));
    lumen_arg a = lumen_arg_ref(put);
    LM_ASSERT_OK(lumen_call(c, "test.echo", &a, 1, NULL, &r));
    lumen_bytes b = {0};
    LM_ASSERT_OK(lumen_get(c, r, LM_TEST_TIMEOUT(20000), &b));
    CU_ASSERT_TRUE(b.len == n && memcmp(b.data, big, n) == 0);
    lumen_bytes_free(&b);
    free(big);
    lumen_close(c);

    /* Plaintext, or TLS without a client certificate: refused, at once. */
    st = tls_connect(addr, "", "", "", &c, &ms);
    CU_ASSERT(!LM_IS_OK(st) && c == NULL);
    CU_ASSERT(has(st.msg, addr) && has(st.msg, "TLS"));
    CU_ASSERT(ms < LM_TEST_TIMEOUT(3500));
    st = tls_connect(addr, ca, "", "", &c, &ms);
    CU_ASSERT(!LM_IS_OK(st) && c == NULL);
    CU_ASSERT(ms < LM_TEST_TIMEOUT(3500));
    /* A missing certificate file is an error of its own. */
    char nowhere[700];
    cert(nowhere, sizeof nowhere, "missing.pem");
    LM_ASSERT_CODE(tls_connect(addr, nowhere, cli, cli_key, &c, &ms), LUMEN_CONFIG);
    /* The token is still wanted over TLS. */
    lm_rpc_client_opts no_token = {.tls = {cli, cli_key, ca}};
    assert_refused(cl, &no_token);
    lm_test_cluster_stop(cl);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"a token is wanted by every service, and enough", test_token_on_every_call},
        {"TLS: clients with the CA, a certificate and the token only", test_tls},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("security", tests, suite_init, suite_cleanup);
}

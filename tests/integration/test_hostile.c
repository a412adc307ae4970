/*
 * Hostile input against a real cluster (redis, scheduler, object store, one
 * worker): to every service port - each service and the lumen.Health every
 * process serves - raw TCP garbage, a truncated HTTP/2 preface, a broken
 * HTTP/2 frame, gRPC calls of every method whose request is garbage, a
 * truncated message or bigger than the servers' limit, ids of the wrong
 * length, and requests over the limits of input_limits.h. Each must get a
 * clear error (or none at all for what is not even HTTP/2), and after each
 * the service must still answer Health SERVING and a task still run through
 * the cluster.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lumen/lumen.h>

#include "client_suite.h"
#include "health.h"
#include "health.pb-c.h"
#include "input_limits.h"
#include "objclient.h"
#include "objstore.pb-c.h"
#include "raw_rpc.h"
#include "scheduler.pb-c.h"
#include "test_util.h"
#include "worker.pb-c.h"

#define RPC_TIMEOUT LM_TEST_TIMEOUT(10000)

static lm_test_cluster *cluster;
static lumen_client *client;
static lm_rpc_client *rpc;
static lm_id job; /* of the tasks this suite sends by hand */

/* A service port, the service it serves besides lumen.Health, and the
 * largest message its server takes. */
typedef struct target {
    const char *role;
    char addr[64];
    const ProtobufCServiceDescriptor *service;
    size_t max_message;
} target;

static target targets[3];

static lm_rpc_method method(const ProtobufCServiceDescriptor *svc, const char *name) {
    lm_rpc_method m = {0};
    if (!lm_rpc_method_find(svc, name, &m)) fprintf(stderr, "no method %s.%s\n", svc->name, name);
    return m;
}

/* The worker's address, as the scheduler knows it. */
static lumen_status find_worker(char *out, size_t cap) {
    Lumen__ClusterInfoRequest req = LUMEN__CLUSTER_INFO_REQUEST__INIT;
    ProtobufCMessage *reply = NULL;
    lumen_status st = lm_rpc_unary(rpc, lm_test_cluster_scheduler(cluster),
                                   method(&lumen__scheduler__descriptor, "GetClusterInfo"), &req.base, &reply,
                                   RPC_TIMEOUT);
    if (!LM_IS_OK(st)) return st;
    const Lumen__ClusterInfoReply *info = (const Lumen__ClusterInfoReply *)reply;
    st = lm_status(LUMEN_NOT_FOUND, "no worker registered");
    for (size_t i = 0; i < info->n_nodes; i++)
        if (strcmp(info->nodes[i]->kind, "worker") == 0) {
            snprintf(out, cap, "%s", info->nodes[i]->addr);
            st = lm_ok();
        }
    lm_rpc_message_free(reply);
    return st;
}

/* Starts or ends the job of the tasks sent by hand. */
static lumen_status job_call(const char *name) {
    Lumen__JobRequest req = LUMEN__JOB_REQUEST__INIT;
    req.job_id = (ProtobufCBinaryData){LM_ID_BYTES, job.bytes};
    req.detached = true; /* no lease held by this raw client: the job lives until EndJob */
    ProtobufCMessage *reply = NULL;
    lumen_status st = lm_rpc_unary(rpc, targets[0].addr, method(&lumen__scheduler__descriptor, name), &req.base,
                                   &reply, RPC_TIMEOUT);
    lm_rpc_message_free(reply);
    return st;
}

static int suite_init(void) {
    lm_test_cluster_opts opts = {.workers = 1, .slots = 2};
    if (lm_test_client_suite_start(&opts, &cluster, &client) != 0) return 1;
    lm_rpc_client_opts copts = {0};
    if (!LM_IS_OK(lm_rpc_client_new(&copts, &rpc))) return 1;
    job = lm_id_random();
    targets[0] = (target){"scheduler", "", &lumen__scheduler__descriptor, LM_LIMIT_MESSAGE_BYTES};
    targets[1] = (target){"objstore", "", &lumen__object_store__descriptor, LM_LIMIT_MESSAGE_BYTES};
    targets[2] = (target){"worker", "", &lumen__worker__descriptor, LM_LIMIT_WORKER_MESSAGE_BYTES};
    snprintf(targets[0].addr, sizeof targets[0].addr, "%s", lm_test_cluster_scheduler(cluster));
    snprintf(targets[1].addr, sizeof targets[1].addr, "%s", lm_test_cluster_objstore(cluster));
    lumen_status st = find_worker(targets[2].addr, sizeof targets[2].addr);
    if (LM_IS_OK(st)) st = job_call("StartJob");
    if (!LM_IS_OK(st)) fprintf(stderr, "suite: %s\n", st.msg);
    return LM_IS_OK(st) ? 0 : 1;
}

static int suite_cleanup(void) {
    job_call("EndJob");
    lm_rpc_client_free(rpc);
    return lm_test_client_suite_stop(cluster, client);
}

/* ------------------------------------------------------------ checks */

/* The service at addr still answers Health SERVING and a task still runs
 * through the cluster; `after` names what was just sent. */
static void assert_alive(const char *addr, const char *after) {
    lumen_status st = lm_health_check(rpc, addr, RPC_TIMEOUT, NULL, NULL);
    if (!LM_IS_OK(st)) fprintf(stderr, "\n  after %s: %s\n", after, st.msg);
    CU_ASSERT_EQUAL_FATAL(st.code, LUMEN_OK);
    static const char text[] = "still serving";
    lumen_arg arg = lumen_arg_bytes(text, strlen(text));
    lumen_ref ref;
    LM_ASSERT_OK(lumen_call(client, "test.echo", &arg, 1, NULL, &ref));
    lumen_bytes out = {0};
    st = lumen_get(client, ref, RPC_TIMEOUT, &out);
    if (!LM_IS_OK(st)) fprintf(stderr, "\n  a task after %s: %s\n", after, st.msg);
    CU_ASSERT_EQUAL_FATAL(st.code, LUMEN_OK);
    CU_ASSERT(out.len == strlen(text) && memcmp(out.data, text, out.len) == 0);
    lumen_bytes_free(&out);
}

/* st has code `want` and its message contains `says` (NULL: anything). */
static void expect(lumen_status st, lumen_code want, const char *says, const char *what) {
    bool ok = st.code == want && (says == NULL || strstr(st.msg, says) != NULL);
    if (!ok)
        fprintf(stderr, "\n  %s: got %s \"%s\", wanted %s \"%s\"\n", what, lumen_code_name(st.code), st.msg,
                lumen_code_name(want), says ? says : "");
    CU_ASSERT(ok);
}

/* ------------------------------------------------- not even gRPC: raw TCP */

static void test_tcp_garbage(void) {
    uint8_t junk[4096];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(i * 131 + 7);
    for (size_t t = 0; t < 3; t++) {
        int fd = lm_test_tcp_connect(targets[t].addr);
        CU_ASSERT_FATAL(fd >= 0);
        lm_test_tcp_exchange(fd, junk, sizeof junk, LM_TEST_TIMEOUT(2000)); /* the server hangs up */
        close(fd);
        assert_alive(targets[t].addr, "TCP garbage");
    }
}

/* A client that stops halfway through the preface holds a connection; the
 * server serves others meanwhile, and forgets it when it goes. */
static void test_truncated_preface(void) {
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    for (size_t t = 0; t < 3; t++) {
        int fd = lm_test_tcp_connect(targets[t].addr);
        CU_ASSERT_FATAL(fd >= 0);
        lm_test_tcp_exchange(fd, preface, 19, 100);
        assert_alive(targets[t].addr, "half a preface (connection open)");
        close(fd);
        assert_alive(targets[t].addr, "half a preface (connection closed)");
    }
}

/* A full preface, then a SETTINGS frame announcing 16 MiB and ending. */
static void test_broken_http2_frame(void) {
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    uint8_t bytes[sizeof preface - 1 + 9 + 16];
    memcpy(bytes, preface, sizeof preface - 1);
    uint8_t *frame = bytes + sizeof preface - 1;
    memset(frame, 0xee, 9 + 16);
    frame[0] = 0xff, frame[1] = 0xff, frame[2] = 0xff; /* length */
    frame[3] = 0x04;                                   /* SETTINGS */
    frame[4] = 0, frame[5] = frame[6] = frame[7] = frame[8] = 0;
    for (size_t t = 0; t < 3; t++) {
        int fd = lm_test_tcp_connect(targets[t].addr);
        CU_ASSERT_FATAL(fd >= 0);
        lm_test_tcp_exchange(fd, bytes, sizeof bytes, LM_TEST_TIMEOUT(2000));
        close(fd);
        assert_alive(targets[t].addr, "a broken HTTP/2 frame");
    }
}

/* ------------------------------------- gRPC calls with broken requests */

/* Every method of svc on t's port gets garbage, a truncated message and a
 * message over t's limit. */
static void bad_payloads(const target *t, const ProtobufCServiceDescriptor *svc) {
    const char *addr = t->addr;
    uint8_t garbage[64];
    memset(garbage, 0xff, sizeof garbage); /* a field tag that never ends */
    static const uint8_t truncated[] = {0x0a, 0x0a, 1, 2, 3}; /* field 1: 10 bytes announced, 3 sent */
    size_t big_len = t->max_message + 1024;
    uint8_t *big = calloc(1, big_len);
    CU_ASSERT_FATAL(big != NULL);
    for (unsigned i = 0; i < svc->n_methods; i++) {
        char path[128];
        snprintf(path, sizeof path, "/%s/%s", svc->name, svc->methods[i].name);
        expect(lm_test_raw_call(addr, path, garbage, sizeof garbage, RPC_TIMEOUT), LUMEN_INVALID_ARGUMENT,
               "malformed", path);
        expect(lm_test_raw_call(addr, path, truncated, sizeof truncated, RPC_TIMEOUT), LUMEN_INVALID_ARGUMENT,
               "malformed", path);
        expect(lm_test_raw_call(addr, path, big, big_len, RPC_TIMEOUT), LUMEN_RESOURCE_EXHAUSTED, "larger than max",
               path);
        assert_alive(addr, path);
    }
    free(big);
}

static void test_bad_payloads_every_method(void) {
    for (size_t t = 0; t < 3; t++) {
        bad_payloads(&targets[t], targets[t].service);
        bad_payloads(&targets[t], &lumen__health__descriptor);
    }
}

/* Methods whose field 1 is an id, and what a wrong length gets: refused,
 * or (reports that carry ids of things that may be gone) ignored. */
typedef struct id_method {
    size_t target;
    const char *name;
    lumen_code code;
} id_method;

static void test_wrong_length_ids(void) {
    static const id_method methods[] = {
        {0, "Heartbeat", LUMEN_INVALID_ARGUMENT},   {0, "TaskDone", LUMEN_OK},
        {0, "WaitObjects", LUMEN_INVALID_ARGUMENT}, {0, "FreeObjects", LUMEN_OK},
        {0, "StartJob", LUMEN_INVALID_ARGUMENT},    {0, "EndJob", LUMEN_INVALID_ARGUMENT},
        {0, "GetActor", LUMEN_INVALID_ARGUMENT},    {0, "KillActor", LUMEN_INVALID_ARGUMENT},
        {0, "ActorDied", LUMEN_INVALID_ARGUMENT},   {1, "Put", LUMEN_INVALID_ARGUMENT},
        {1, "Get", LUMEN_INVALID_ARGUMENT},         {1, "Delete", LUMEN_INVALID_ARGUMENT},
        {1, "ReleaseJob", LUMEN_INVALID_ARGUMENT},  {2, "CancelTask", LUMEN_INVALID_ARGUMENT},
        {2, "CallActor", LUMEN_INVALID_ARGUMENT},   {2, "StopActor", LUMEN_INVALID_ARGUMENT},
    };
    uint8_t msg[2 + 17];
    msg[0] = 0x0a; /* field 1, length-delimited */
    memset(msg + 2, 0x5a, 17);
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
        const target *t = &targets[methods[i].target];
        char path[128];
        snprintf(path, sizeof path, "/%s/%s", t->service->name, methods[i].name);
        for (uint8_t len = 0; len <= 17; len += 17) { /* 0 and 17 bytes */
            msg[1] = len;
            expect(lm_test_raw_call(t->addr, path, msg, 2u + len, RPC_TIMEOUT), methods[i].code, NULL, path);
        }
        assert_alive(t->addr, path);
    }
}

/* ------------------------------------------------ over the limits: scheduler */

static ProtobufCBinaryData bytes_of(const void *p, size_t len) { return (ProtobufCBinaryData){len, (uint8_t *)p}; }

/* A spec of test.echo for the suite's job; the caller sets task_id. */
static Lumen__TaskSpec spec_for(const lm_id *task) {
    Lumen__TaskSpec spec = LUMEN__TASK_SPEC__INIT;
    spec.task_id = bytes_of(task->bytes, LM_ID_BYTES);
    spec.job_id = bytes_of(job.bytes, LM_ID_BYTES);
    spec.function = (char *)"test.echo";
    spec.num_returns = 1;
    return spec;
}

/* The scheduler's answer to a SubmitTasks of specs[0..n), for the first one. */
static lumen_status submit(Lumen__TaskSpec **specs, size_t n) {
    Lumen__SubmitTasksRequest req = LUMEN__SUBMIT_TASKS_REQUEST__INIT;
    req.n_tasks = n;
    req.tasks = specs;
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_unary(rpc, targets[0].addr, method(&lumen__scheduler__descriptor, "SubmitTasks"),
                                   &req.base, &out, RPC_TIMEOUT);
    const Lumen__SubmitTasksReply *reply = (const Lumen__SubmitTasksReply *)out;
    if (LM_IS_OK(st) && reply->n_results > 0 && reply->results[0]->code != LUMEN_OK)
        st = lm_status((lumen_code)reply->results[0]->code, "%s", reply->results[0]->message);
    lm_rpc_message_free(out);
    return st;
}

/* What became of a task: its result's state once settled. */
static lumen_status outcome(lm_id task) {
    lm_id result = lm_id_for_return(task, 0);
    ProtobufCBinaryData id = bytes_of(result.bytes, LM_ID_BYTES);
    Lumen__WaitObjectsRequest req = LUMEN__WAIT_OBJECTS_REQUEST__INIT;
    req.n_object_ids = 1;
    req.object_ids = &id;
    req.num_ready = 1;
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_unary(rpc, targets[0].addr, method(&lumen__scheduler__descriptor, "WaitObjects"),
                                   &req.base, &out, RPC_TIMEOUT);
    const Lumen__WaitObjectsReply *reply = (const Lumen__WaitObjectsReply *)out;
    if (LM_IS_OK(st) && reply->n_objects == 1 && reply->objects[0]->status != NULL &&
        reply->objects[0]->status->code != LUMEN_OK)
        st = lm_status((lumen_code)reply->objects[0]->status->code, "%s", reply->objects[0]->status->message);
    lm_rpc_message_free(out);
    return st;
}

static char *long_name(size_t len) {
    char *s = malloc(len + 1);
    memset(s, 'f', len);
    s[len] = '\0';
    return s;
}

/* Ids of the wrong length are refused in the answer: no task can carry them. */
static void test_submit_bad_ids(void) {
    lm_id task = lm_id_random();
    Lumen__TaskSpec spec = spec_for(&task);
    Lumen__TaskSpec *specs[] = {&spec};
    spec.task_id.len = 0;
    expect(submit(specs, 1), LUMEN_INVALID_ARGUMENT, "task_id must be 16 bytes, got 0", "empty task_id");
    uint8_t long_id[17] = {1};
    spec.task_id = bytes_of(task.bytes, LM_ID_BYTES);
    spec.job_id = bytes_of(long_id, sizeof long_id);
    expect(submit(specs, 1), LUMEN_INVALID_ARGUMENT, "job_id must be 16 bytes, got 17", "17-byte job_id");
    assert_alive(targets[0].addr, "SubmitTasks with bad ids");
}

/* A spec over a limit is a task that fails at once, saying which limit. */
static void test_submit_over_limits(void) {
    char *name = long_name(LM_LIMIT_NAME_BYTES + 44);
    Lumen__Arg arg;
    lumen__arg__init(&arg);
    arg.value_case = LUMEN__ARG__VALUE_INLINE;
    arg.inline_ = bytes_of("x", 1);
    size_t nargs = LM_LIMIT_TASK_ARGS + 904;
    Lumen__Arg **args = calloc(nargs, sizeof *args);
    for (size_t i = 0; i < nargs; i++) args[i] = &arg;

    lm_id tasks[3] = {lm_id_random(), lm_id_random(), lm_id_random()};
    Lumen__TaskSpec specs[3] = {spec_for(&tasks[0]), spec_for(&tasks[1]), spec_for(&tasks[2])};
    specs[0].function = name;
    specs[1].n_args = nargs;
    specs[1].args = args;
    specs[2].method = name;
    Lumen__TaskSpec *ptrs[] = {&specs[0], &specs[1], &specs[2]};
    LM_ASSERT_OK(submit(ptrs, 3));
    expect(outcome(tasks[0]), LUMEN_INVALID_ARGUMENT, "function name of 300 bytes exceeds the limit of 256",
           "a long function name");
    expect(outcome(tasks[1]), LUMEN_INVALID_ARGUMENT, "5000 arguments exceed the limit of 4096", "5000 arguments");
    expect(outcome(tasks[2]), LUMEN_INVALID_ARGUMENT, "method name of 300 bytes exceeds the limit of 256",
           "a long method name");
    assert_alive(targets[0].addr, "SubmitTasks over the limits");

    size_t n = LM_LIMIT_BATCH_TASKS + 3616;
    Lumen__TaskSpec **many = calloc(n, sizeof *many), empty = LUMEN__TASK_SPEC__INIT; /* 2 bytes each */
    for (size_t i = 0; i < n; i++) many[i] = &empty;
    expect(submit(many, n), LUMEN_RESOURCE_EXHAUSTED, "20000 tasks exceed the limit of 16384", "20000 tasks");
    assert_alive(targets[0].addr, "a SubmitTasks of 20000 tasks");
    free(many);
    free(args);
    free(name);
}

/* A spec with a field numbered 0 (spelled as an over-long varint, which
 * protobuf-c accepts but cannot re-pack): it must fail at the scheduler,
 * not be forwarded in a RunTasks the worker refuses. */
static void test_submit_invalid_field_number(void) {
    lm_id task = lm_id_random();
    Lumen__TaskSpec spec = spec_for(&task);
    size_t len = lumen__task_spec__get_packed_size(&spec);
    uint8_t buf[256];
    CU_ASSERT_FATAL(len + 5 < 128);
    buf[0] = 0x0a; /* SubmitTasksRequest.tasks */
    buf[1] = (uint8_t)(len + 3);
    lumen__task_spec__pack(&spec, buf + 2);
    memcpy(buf + 2 + len, "\x80\x00\x01", 3); /* field 0, varint 1 */
    LM_ASSERT_OK(lm_test_raw_call(targets[0].addr, "/lumen.Scheduler/SubmitTasks", buf, len + 5, RPC_TIMEOUT));
    expect(outcome(task), LUMEN_INVALID_ARGUMENT, "field number 0 is not valid", "a spec with field 0");
    assert_alive(targets[0].addr, "a spec with field number 0");
    assert_alive(targets[2].addr, "a spec with field number 0");
}

/* ------------------------------------------------- over the limits: worker */

static lumen_status run_tasks(Lumen__TaskSpec **specs, size_t n, uint32_t *accepted) {
    Lumen__RunTasksRequest req = LUMEN__RUN_TASKS_REQUEST__INIT;
    req.n_tasks = n;
    req.tasks = specs;
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_unary(rpc, targets[2].addr, method(&lumen__worker__descriptor, "RunTasks"), &req.base,
                                   &out, RPC_TIMEOUT);
    if (LM_IS_OK(st)) *accepted = ((const Lumen__RunTasksReply *)out)->accepted;
    lm_rpc_message_free(out);
    return st;
}

static void test_run_tasks_over_limits(void) {
    char *name = long_name(LM_LIMIT_NAME_BYTES + 1);
    Lumen__Arg arg;
    lumen__arg__init(&arg);
    Lumen__Arg **args = calloc(LM_LIMIT_TASK_ARGS + 1, sizeof *args);
    for (size_t i = 0; i <= LM_LIMIT_TASK_ARGS; i++) args[i] = &arg;
    uint8_t long_id[17] = {2};
    lm_id ids[4] = {lm_id_random(), lm_id_random(), lm_id_random(), lm_id_random()};
    Lumen__TaskSpec specs[4] = {spec_for(&ids[0]), spec_for(&ids[1]), spec_for(&ids[2]), spec_for(&ids[3])};
    specs[0].task_id.len = 0;
    specs[1].task_id = bytes_of(long_id, sizeof long_id);
    specs[2].function = name;
    specs[3].n_args = LM_LIMIT_TASK_ARGS + 1;
    specs[3].args = args;
    Lumen__TaskSpec *ptrs[] = {&specs[0], &specs[1], &specs[2], &specs[3]};
    uint32_t accepted = 99;
    LM_ASSERT_OK(run_tasks(ptrs, 4, &accepted));
    CU_ASSERT_EQUAL(accepted, 0);
    assert_alive(targets[2].addr, "RunTasks over the limits");

    size_t n = LM_LIMIT_BATCH_TASKS + 1;
    Lumen__TaskSpec **many = calloc(n, sizeof *many);
    for (size_t i = 0; i < n; i++) many[i] = &specs[0];
    expect(run_tasks(many, n, &accepted), LUMEN_RESOURCE_EXHAUSTED, "16385 tasks exceed the limit", "16385 tasks");
    assert_alive(targets[2].addr, "a RunTasks of 16385 tasks");
    free(many);
    free(args);
    free(name);
}

/* --------------------------------------------- over the limits: object store */

typedef struct chunk_list {
    const Lumen__ObjectChunk *chunks;
    size_t n, next;
} chunk_list;

static lumen_status next_chunk(void *arg, const ProtobufCMessage **msg) {
    chunk_list *l = arg;
    *msg = l->next < l->n ? &l->chunks[l->next++].base : NULL;
    return lm_ok();
}

/* A Put of exactly these chunks. */
static lumen_status put_chunks(const Lumen__ObjectChunk *chunks, size_t n) {
    chunk_list l = {chunks, n, 0};
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_write_stream(rpc, targets[1].addr, method(&lumen__object_store__descriptor, "Put"),
                                          next_chunk, &l, &out, RPC_TIMEOUT);
    lm_rpc_message_free(out);
    return st;
}

static void test_put_over_limits(void) {
    /* Something already stored, which none of this may lose. */
    lm_id kept = lm_id_random();
    static const char value[] = "stored before the attack";
    LM_ASSERT_OK(lm_objstore_put(rpc, targets[1].addr, kept, job, value, sizeof value, RPC_TIMEOUT, NULL));

    lm_id id = lm_id_random();
    uint8_t long_id[17] = {3};
    Lumen__ObjectChunk c[2];
    lumen__object_chunk__init(&c[0]);
    lumen__object_chunk__init(&c[1]);
    c[0].object_id = bytes_of(long_id, sizeof long_id);
    c[0].total_size = 4;
    c[0].data = bytes_of("abcd", 4);
    expect(put_chunks(c, 1), LUMEN_INVALID_ARGUMENT, "16-byte object id (got 17 bytes)", "a 17-byte object id");
    c[0].object_id = bytes_of(id.bytes, LM_ID_BYTES);
    c[0].total_size = 1ull << 40;
    expect(put_chunks(c, 1), LUMEN_RESOURCE_EXHAUSTED, "exceeds the limit", "a 1 TiB object");
    c[0].total_size = 10;
    c[1].offset = 4;
    expect(put_chunks(c, 2), LUMEN_INVALID_ARGUMENT, "empty chunk at offset 4", "an empty second chunk");
    c[1].offset = 7;
    c[1].data = bytes_of("efg", 3);
    expect(put_chunks(c, 2), LUMEN_INVALID_ARGUMENT, "chunk at offset 7, expected offset 4", "a gap");
    expect(put_chunks(c, 1), LUMEN_INVALID_ARGUMENT, "got 4 of 10 bytes", "a stream that stops early");
    assert_alive(targets[1].addr, "Puts over the limits");

    void *data = NULL;
    size_t len = 0;
    LM_ASSERT_OK(lm_objstore_get(rpc, targets[1].addr, kept, false, RPC_TIMEOUT, &data, &len));
    CU_ASSERT(len == sizeof value && memcmp(data, value, len) == 0);
    free(data);
    expect(lm_objstore_get(rpc, targets[1].addr, id, false, RPC_TIMEOUT, &data, &len), LUMEN_NOT_FOUND, NULL,
           "an object whose puts all failed");
}

int main(void) {
    CU_TestInfo tests[] = {
        {"raw TCP garbage", test_tcp_garbage},
        {"a truncated HTTP/2 preface", test_truncated_preface},
        {"a broken HTTP/2 frame", test_broken_http2_frame},
        {"every method: garbage, truncated, oversized", test_bad_payloads_every_method},
        {"ids of 0 and 17 bytes", test_wrong_length_ids},
        {"SubmitTasks: bad ids", test_submit_bad_ids},
        {"SubmitTasks: over the limits", test_submit_over_limits},
        {"SubmitTasks: field number 0", test_submit_invalid_field_number},
        {"RunTasks: over the limits", test_run_tasks_over_limits},
        {"Put: over the limits", test_put_over_limits},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("hostile", tests, suite_init, suite_cleanup);
}

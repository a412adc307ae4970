/*
 * The object store against a real redis-server: the real lumen-objstore
 * binary (no scheduler: its node agent keeps retrying in the background),
 * driven through objclient.h. Round trips, a 1 GiB object, spilling past
 * the memory limit, parked Gets, deletes, malformed streams, SIGTERM.
 */
#include <dirent.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cluster.h"
#include "health.h"
#include "log.h"
#include "objclient.h"
#include "objstore.pb-c.h"
#include "process.h"
#include "redis_server.h"
#include "redis_state.h"
#include "test_util.h"

#define TIMEOUT_MS LM_TEST_TIMEOUT(30000)
#define MAX_OBJECT "1100MiB"
#define MAX_OBJECT_BYTES (1100ull << 20)

typedef struct store_proc {
    pid_t pid;
    char addr[32];
    char spill[600];
    lm_id node_id;
} store_proc;

static char *dir;
static lm_test_redis *redis;
static lm_redis *state;
static lm_rpc_client *client;
static lm_rpc_client *ready_client; /* waits for a peer that is not up yet */
static store_proc main_store;

/* Starts lumen-objstore with the given memory limit; NULL-terminated extra flags. */
static lumen_status start_store(store_proc *s, const char *name, const char *memory, const char *const *extra) {
    char log[600], sched[32];
    snprintf(s->addr, sizeof s->addr, "127.0.0.1:%u", lm_test_free_port());
    snprintf(sched, sizeof sched, "127.0.0.1:%u", lm_test_free_port()); /* nobody there */
    snprintf(log, sizeof log, "%s/%s.log", dir, name);
    snprintf(s->spill, sizeof s->spill, "%s/%s-spill", dir, name);
    const char *flags[32] = {"--listen", s->addr, "--scheduler-addr", sched, "--redis-addr",
                             lm_test_redis_addr(redis), "--memory-limit", memory, "--spill-dir", s->spill,
                             "--max-object-bytes", MAX_OBJECT, "--log-level", "info"};
    int n = 14;
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 31; i++) flags[n++] = extra[i];
    flags[n] = NULL;
    /* lm_test_service_start would do, but its wait loop gives up after the
     * first refused probe; a wait_for_ready Health call waits properly. */
    char *argv[34] = {(char *)lm_test_bin("lumen-objstore")};
    for (int i = 0; i < n; i++) argv[i + 1] = (char *)flags[i];
    s->pid = lm_test_spawn(argv, log);
    if (s->pid < 0) return lm_status(LUMEN_INTERNAL, "cannot start %s", argv[0]);
    lumen_status st = lm_health_check(ready_client, s->addr, 20000, NULL, &s->node_id);
    if (!LM_IS_OK(st)) {
        lm_test_stop(s->pid, SIGKILL, 1000);
        s->pid = -1;
        return lm_status_wrap(st, "lumen-objstore did not come up (log: %s)", log);
    }
    return st;
}

static int suite_init(void) {
    lm_log_set_level(LM_LOG_WARN);
    lm_process_tune_malloc(); /* as every Lumen client does */
    dir = lm_test_tmpdir("objstore");
    lm_rpc_client_opts copts = {0};
    lumen_status st = lm_rpc_client_new(&copts, &client);
    lm_rpc_client_opts wopts = {.wait_for_ready = true};
    if (LM_IS_OK(st)) st = lm_rpc_client_new(&wopts, &ready_client);
    if (LM_IS_OK(st)) st = lm_test_redis_start(NULL, &redis);
    if (LM_IS_OK(st)) {
        lm_redis_opts ropts = {.addr = lm_test_redis_addr(redis)};
        st = lm_redis_connect(&ropts, &state);
    }
    if (LM_IS_OK(st)) st = start_store(&main_store, "main", "2GiB", NULL);
    if (!LM_IS_OK(st)) fprintf(stderr, "\nsetup: %s\n", st.msg);
    return LM_IS_OK(st) ? 0 : 1;
}

static int suite_cleanup(void) {
    /* A clean stop is part of the test: exit 0 (a sanitizer build exits
     * non-zero on leaks). The logs stay when it is not. */
    int status = main_store.pid > 0 ? lm_test_stop(main_store.pid, SIGTERM, 20000) : 0;
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!clean) fprintf(stderr, "\nlumen-objstore exit status 0x%x, see %s/main.log\n", status, dir);
    lm_redis_free(state);
    lm_rpc_client_free(client);
    lm_rpc_client_free(ready_client);
    lm_test_redis_stop(redis);
    if (dir != NULL && clean) lm_test_rmtree(dir);
    free(dir);
    return clean ? 0 : 1;
}

/* ---- helpers */

static void fill(uint8_t *p, size_t n, uint64_t seed) {
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        x += 0x9E3779B97F4A7C15ull;
        memcpy(p + i, &x, 8);
    }
    for (; i < n; i++) p[i] = (uint8_t)(seed + i);
}

static uint8_t *make(size_t n, uint64_t seed) {
    uint8_t *p = malloc(n ? n : 1);
    fill(p, n, seed);
    return p;
}

static void put_ok(const store_proc *s, lm_id id, lm_id job, const void *data, size_t n) {
    lm_objstore_put_info info = {.already_present = true};
    LM_ASSERT_OK(lm_objstore_put(client, s->addr, id, job, data, n, TIMEOUT_MS, &info));
    CU_ASSERT_FALSE(info.already_present);
    CU_ASSERT_FALSE(lm_id_is_zero(info.store)); /* the store says which incarnation holds it */
}

static void get_equals(const store_proc *s, lm_id id, const void *want, size_t n) {
    void *got = NULL;
    size_t len = 0;
    LM_ASSERT_OK(lm_objstore_get(client, s->addr, id, false, TIMEOUT_MS, &got, &len));
    CU_ASSERT_EQUAL(len, n);
    CU_ASSERT_TRUE(got != NULL && len == n && memcmp(got, want, n) == 0);
    free(got);
}

/* Whether Redis lists store among obj's locations, once the store's
 * directory writes (behind its answers) settled: it waits up to 5 s for the
 * answer `expect`, then gives what it sees. */
static bool located(lm_id obj, lm_id store, bool expect) {
    bool found = !expect;
    for (int waited = 0; found != expect && waited < LM_TEST_TIMEOUT(5000); waited += 10) {
        if (waited > 0) lm_test_sleep_ms(10);
        lm_id *stores = NULL;
        size_t n = 0;
        LM_ASSERT_OK(lm_redis_obj_locs(state, obj, &stores, &n));
        found = false;
        for (size_t i = 0; i < n; i++) found |= lm_id_equal(stores[i], store);
        free(stores);
    }
    return found;
}

static bool message_has(lumen_status st, const char *text) {
    if (strstr(st.msg, text) != NULL) return true;
    fprintf(stderr, "\nmessage \"%s\" lacks \"%s\"\n", st.msg, text);
    return false;
}

/* ---- round trips */

static void test_small_and_empty(void) {
    lm_id a = lm_id_random(), e = lm_id_random(), job = lm_id_random();
    const char *text = "hello, object store";
    put_ok(&main_store, a, job, text, strlen(text));
    put_ok(&main_store, e, job, "", 0);
    get_equals(&main_store, a, text, strlen(text));
    get_equals(&main_store, e, "", 0);
    /* Redis has heard of both by the time the put returns. */
    CU_ASSERT_TRUE(located(a, main_store.node_id, true));
    CU_ASSERT_TRUE(located(e, main_store.node_id, true));
    /* The record as redis-cli shows it. */
    char hex[LM_ID_HEX_LEN + 1];
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", lm_test_redis_port(redis), tv);
    CU_ASSERT_FATAL(c != NULL && c->err == 0);
    redisReply *r = redisCommand(c, "HMGET lumen:obj:%s state size", lm_id_to_hex(a, hex));
    CU_ASSERT_FATAL(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    CU_ASSERT_STRING_EQUAL(r->element[0]->str ? r->element[0]->str : "", "READY");
    CU_ASSERT_STRING_EQUAL(r->element[1]->str ? r->element[1]->str : "", "19");
    freeReplyObject(r);
    redisFree(c);
}

static void test_ranges(void) {
    lm_id id = lm_id_random();
    size_t n = 3 * (1u << 20) + 5;
    uint8_t *data = make(n, 3);
    put_ok(&main_store, id, (lm_id){{0}}, data, n);
    void *got = NULL;
    size_t len = 0;
    LM_ASSERT_OK(lm_objstore_get_range(client, main_store.addr, id, 1000, (1u << 20) + 17, false, TIMEOUT_MS,
                                       &got, &len));
    CU_ASSERT_EQUAL(len, (1u << 20) + 17);
    CU_ASSERT_TRUE(got && memcmp(got, data + 1000, len) == 0);
    free(got);
    LM_ASSERT_OK(lm_objstore_get_range(client, main_store.addr, id, n - 3, 0, false, TIMEOUT_MS, &got, &len));
    CU_ASSERT_EQUAL(len, 3);
    CU_ASSERT_TRUE(got && memcmp(got, data + n - 3, 3) == 0);
    free(got);
    LM_ASSERT_CODE(lm_objstore_get_range(client, main_store.addr, id, n - 3, 4, false, TIMEOUT_MS, &got, &len),
                   LUMEN_OUT_OF_RANGE);
    CU_ASSERT_PTR_NULL(got);
    free(data);
}

static void test_missing_is_not_found(void) {
    lm_id id = lm_id_random();
    char hex[LM_ID_HEX_LEN + 1];
    lm_id_to_hex(id, hex);
    void *got = (void *)1;
    size_t len = 1;
    lumen_status st = lm_objstore_get(client, main_store.addr, id, false, TIMEOUT_MS, &got, &len);
    LM_ASSERT_CODE(st, LUMEN_NOT_FOUND);
    CU_ASSERT_TRUE(message_has(st, hex));
    CU_ASSERT_TRUE(message_has(st, "not in store"));
    CU_ASSERT_PTR_NULL(got);
}

static void test_first_put_wins(void) {
    lm_id id = lm_id_random();
    put_ok(&main_store, id, (lm_id){{0}}, "original", 8);
    lm_objstore_put_info info = {0};
    LM_ASSERT_OK(lm_objstore_put(client, main_store.addr, id, (lm_id){{0}}, "impostor", 8, TIMEOUT_MS, &info));
    CU_ASSERT_TRUE(info.already_present);
    get_equals(&main_store, id, "original", 8);
}

/* ---- parked gets */

typedef struct waiter {
    const store_proc *store;
    lm_id id, job;
    lm_id store_id; /* the incarnation the reader expects (zero: any) */
    int64_t timeout_ms;
    lumen_status st;
    void *data;
    size_t len;
    pthread_t thread;
} waiter;

static void *waiter_alloc(void *arg, uint64_t size, lumen_status *st) {
    waiter *w = arg;
    w->data = malloc(size ? size : 1);
    *st = w->data ? lm_ok() : lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    return w->data;
}

static void *wait_main(void *arg) {
    waiter *w = arg;
    w->st = lm_objstore_get_into(client, w->store->addr, w->id, w->job, w->store_id, true, w->timeout_ms,
                                 waiter_alloc, w, &w->len);
    return NULL;
}

/* A Get of id from store s waiting (within timeout_ms) on a thread of its
 * own, as a reader of job (zero: none). */
static void start_waiter(waiter *w, const store_proc *s, lm_id id, lm_id job, int64_t timeout_ms) {
    memset(w, 0, sizeof *w);
    w->store = s;
    w->id = id;
    w->job = job;
    w->timeout_ms = timeout_ms;
    pthread_create(&w->thread, NULL, wait_main, w);
}

static void test_wait_for_put(void) {
    lm_id id = lm_id_random();
    size_t n = 5 * (1u << 20) + 3; /* several chunks */
    uint8_t *data = make(n, 5);
    waiter w[3];
    for (int i = 0; i < 3; i++) start_waiter(&w[i], &main_store, id, (lm_id){{0}}, TIMEOUT_MS);
    lm_test_sleep_ms(300); /* they are parked by now */
    uint64_t t0 = lm_test_now_us();
    put_ok(&main_store, id, (lm_id){{0}}, data, n);
    for (int i = 0; i < 3; i++) {
        pthread_join(w[i].thread, NULL);
        LM_ASSERT_OK(w[i].st);
        CU_ASSERT_EQUAL(w[i].len, n);
        CU_ASSERT_TRUE(w[i].data && memcmp(w[i].data, data, n) == 0);
        free(w[i].data);
    }
    CU_ASSERT_TRUE(lm_test_now_us() - t0 < 5000000); /* woken by the put, not by a poll */
    free(data);
}

static void test_wait_deadline(void) {
    lm_id id = lm_id_random();
    uint64_t t0 = lm_test_now_us();
    void *got = NULL;
    size_t len = 0;
    lumen_status st = lm_objstore_get(client, main_store.addr, id, true, 300, &got, &len);
    LM_ASSERT_CODE(st, LUMEN_DEADLINE_EXCEEDED);
    uint64_t took_ms = (lm_test_now_us() - t0) / 1000;
    CU_ASSERT_TRUE(took_ms >= 250 && took_ms < 5000);
    /* The store forgot the waiter and keeps serving; a later put is fine. */
    put_ok(&main_store, id, (lm_id){{0}}, "late", 4);
    get_equals(&main_store, id, "late", 4);
}

/* ---- delete, release */

static void test_delete(void) {
    lm_id ids[3] = {lm_id_random(), lm_id_random(), lm_id_random()};
    for (int i = 0; i < 3; i++) put_ok(&main_store, ids[i], (lm_id){{0}}, "x", 1);
    lm_id del[3] = {ids[0], ids[1], lm_id_random() /* unknown: not an error */};
    uint32_t deleted = 99;
    LM_ASSERT_OK(lm_objstore_delete(client, main_store.addr, del, 3, TIMEOUT_MS, &deleted));
    CU_ASSERT_EQUAL(deleted, 2);
    void *got = NULL;
    size_t len;
    for (int i = 0; i < 2; i++) {
        LM_ASSERT_CODE(lm_objstore_get(client, main_store.addr, ids[i], false, TIMEOUT_MS, &got, &len),
                       LUMEN_NOT_FOUND);
        CU_ASSERT_FALSE(located(ids[i], main_store.node_id, false));
    }
    CU_ASSERT_TRUE(located(ids[2], main_store.node_id, true));
    get_equals(&main_store, ids[2], "x", 1);
    /* Deleted ids can be put again. */
    put_ok(&main_store, ids[0], (lm_id){{0}}, "y", 1);
    get_equals(&main_store, ids[0], "y", 1);
}

static void test_release_job(void) {
    lm_id job = lm_id_random(), other = lm_id_random();
    lm_id mine[4], theirs = lm_id_random();
    for (int i = 0; i < 4; i++) {
        mine[i] = lm_id_random();
        put_ok(&main_store, mine[i], job, "job data", 8);
    }
    put_ok(&main_store, theirs, other, "other", 5);
    /* Readers waiting for objects: the job's stop waiting when it ends
     * (nothing will put them now), the other job's wait on. */
    static waiter for_job, for_other; /* static: a fatal assert below leaves their threads safe */
    lm_id coming = lm_id_random();
    start_waiter(&for_job, &main_store, lm_id_random(), job, TIMEOUT_MS);
    start_waiter(&for_other, &main_store, coming, other, TIMEOUT_MS);
    lm_test_sleep_ms(300); /* they are parked by now */
    uint64_t t0 = lm_test_now_us();
    uint32_t deleted = 0;
    LM_ASSERT_OK(lm_objstore_release_job(client, main_store.addr, job, TIMEOUT_MS, &deleted));
    CU_ASSERT_EQUAL(deleted, 4);
    pthread_join(for_job.thread, NULL);
    LM_ASSERT_CODE(for_job.st, LUMEN_FAILED_PRECONDITION);
    CU_ASSERT_TRUE(strstr(for_job.st.msg, "has ended") != NULL);
    CU_ASSERT_TRUE(lm_test_now_us() - t0 < 5000000); /* answered by the release, not the deadline */
    free(for_job.data);
    put_ok(&main_store, coming, other, "coming", 6);
    pthread_join(for_other.thread, NULL);
    LM_ASSERT_OK(for_other.st);
    CU_ASSERT_TRUE(for_other.len == 6 && memcmp(for_other.data, "coming", 6) == 0);
    free(for_other.data);
    void *got = NULL;
    size_t len;
    for (int i = 0; i < 4; i++) {
        LM_ASSERT_CODE(lm_objstore_get(client, main_store.addr, mine[i], false, TIMEOUT_MS, &got, &len),
                       LUMEN_NOT_FOUND);
        CU_ASSERT_FALSE(located(mine[i], main_store.node_id, false));
    }
    get_equals(&main_store, theirs, "other", 5);
    CU_ASSERT_TRUE(located(theirs, main_store.node_id, true));
    LM_ASSERT_OK(lm_objstore_release_job(client, main_store.addr, job, TIMEOUT_MS, &deleted));
    CU_ASSERT_EQUAL(deleted, 0);
    /* A task of the ended job still running cannot leave a result behind. */
    lm_id late = lm_id_random();
    LM_ASSERT_CODE(lm_objstore_put(client, main_store.addr, late, job, "late", 4, TIMEOUT_MS, NULL),
                   LUMEN_FAILED_PRECONDITION);
    LM_ASSERT_CODE(lm_objstore_get(client, main_store.addr, late, false, TIMEOUT_MS, &got, &len), LUMEN_NOT_FOUND);
    /* nor wait for one. */
    start_waiter(&for_job, &main_store, late, job, TIMEOUT_MS);
    pthread_join(for_job.thread, NULL);
    LM_ASSERT_CODE(for_job.st, LUMEN_FAILED_PRECONDITION);
    free(for_job.data);
    put_ok(&main_store, lm_id_random(), other, "other", 5); /* other jobs go on */
}

/* ---- malformed put streams */

typedef struct bad_stream {
    Lumen__ObjectChunk chunks[3];
    int n, next;
} bad_stream;

static lumen_status bad_next(void *arg, const ProtobufCMessage **msg) {
    bad_stream *b = arg;
    *msg = b->next < b->n ? &b->chunks[b->next++].base : NULL;
    return lm_ok();
}

static lumen_status put_raw(bad_stream *b) {
    lm_rpc_method m;
    lm_rpc_method_find(&lumen__object_store__descriptor, "Put", &m);
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_write_stream(client, main_store.addr, m, bad_next, b, &out, TIMEOUT_MS);
    lm_rpc_message_free(out);
    return st;
}

static void set_chunk(Lumen__ObjectChunk *c, const lm_id *id, uint64_t total, uint64_t off, const char *data) {
    lumen__object_chunk__init(c);
    if (id != NULL) {
        c->object_id.data = (uint8_t *)id->bytes;
        c->object_id.len = LM_ID_BYTES;
        c->total_size = total;
    }
    c->offset = off;
    c->data.data = (uint8_t *)data;
    c->data.len = strlen(data);
}

static void test_malformed_puts(void) {
    lm_id id = lm_id_random();
    bad_stream b = {.n = 2};
    set_chunk(&b.chunks[0], &id, 10, 0, "abcd");
    set_chunk(&b.chunks[1], NULL, 0, 6, "ef"); /* gap */
    lumen_status st = put_raw(&b);
    LM_ASSERT_CODE(st, LUMEN_INVALID_ARGUMENT);
    CU_ASSERT_TRUE(message_has(st, "expected offset 4"));

    b = (bad_stream){.n = 2};
    set_chunk(&b.chunks[0], &id, 6, 0, "abcd");
    set_chunk(&b.chunks[1], NULL, 0, 4, "efgh"); /* past total_size */
    st = put_raw(&b);
    LM_ASSERT_CODE(st, LUMEN_INVALID_ARGUMENT);
    CU_ASSERT_TRUE(message_has(st, "runs past total_size 6"));

    b = (bad_stream){.n = 1};
    set_chunk(&b.chunks[0], &id, MAX_OBJECT_BYTES + 1, 0, "a"); /* over --max-object-bytes */
    st = put_raw(&b);
    LM_ASSERT_CODE(st, LUMEN_RESOURCE_EXHAUSTED);
    CU_ASSERT_TRUE(message_has(st, "exceeds the limit of"));

    b = (bad_stream){.n = 1};
    set_chunk(&b.chunks[0], &id, 10, 0, "abcd"); /* ends early */
    st = put_raw(&b);
    LM_ASSERT_CODE(st, LUMEN_INVALID_ARGUMENT);
    CU_ASSERT_TRUE(message_has(st, "got 4 of 10 bytes"));

    b = (bad_stream){.n = 0}; /* no chunks at all */
    LM_ASSERT_CODE(put_raw(&b), LUMEN_INVALID_ARGUMENT);

    /* None of them left an object behind, and the store keeps serving. */
    void *got = NULL;
    size_t len;
    LM_ASSERT_CODE(lm_objstore_get(client, main_store.addr, id, false, TIMEOUT_MS, &got, &len), LUMEN_NOT_FOUND);
    put_ok(&main_store, id, (lm_id){{0}}, "fine", 4);
    get_equals(&main_store, id, "fine", 4);
}

/* ---- 1 GiB */

/* Twice: the first round touches fresh memory on both sides (on a VM its
 * first touch costs more than the copy); the second shows the steady state,
 * with the store reusing the memory the first object left. */
static void test_one_gib(void) {
    size_t n = 1ull << 30;
    uint8_t *data = make(n, 42);
    for (int round = 0; round < 2; round++) {
        lm_id id = lm_id_random();
        uint64_t t0 = lm_test_now_us();
        put_ok(&main_store, id, (lm_id){{0}}, data, n);
        uint64_t t1 = lm_test_now_us();
        void *got = NULL;
        size_t len = 0;
        LM_ASSERT_OK(lm_objstore_get(client, main_store.addr, id, false, 120000, &got, &len));
        uint64_t t2 = lm_test_now_us();
        CU_ASSERT_EQUAL(len, n);
        CU_ASSERT_TRUE(got != NULL && memcmp(got, data, n) == 0);
        printf("\n    1 GiB (%s) put: %.2f GB/s (%.0f ms), get: %.2f GB/s (%.0f ms)", round ? "warm" : "cold",
               n / 1e3 / (double)(t1 - t0), (t1 - t0) / 1e3, n / 1e3 / (double)(t2 - t1), (t2 - t1) / 1e3);
        free(got);
        uint32_t deleted = 0;
        LM_ASSERT_OK(lm_objstore_delete(client, main_store.addr, &id, 1, TIMEOUT_MS, &deleted));
        CU_ASSERT_EQUAL(deleted, 1);
    }
    printf("\n");
    free(data);
}

/* ---- spilling, and a clean stop */

static size_t spill_files(const char *path, uint64_t *bytes) {
    size_t n = 0;
    *bytes = 0;
    DIR *d = opendir(path);
    if (d == NULL) return 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strlen(e->d_name) != LM_ID_HEX_LEN) continue; /* <hex>: a spilled object */
        char full[1200];
        struct stat sb;
        snprintf(full, sizeof full, "%s/%s", path, e->d_name);
        if (stat(full, &sb) == 0) *bytes += (uint64_t)sb.st_size, n++;
    }
    closedir(d);
    return n;
}

static void test_spill_and_sigterm(void) {
    enum { N = 12 };
    const size_t size = 16u << 20;
    store_proc small = {0};
    LM_ASSERT_OK(start_store(&small, "small", "64MiB", NULL));
    lm_id ids[N];
    uint8_t *buf = malloc(size);
    uint64_t max_in_memory = 0;
    for (int i = 0; i < N; i++) {
        ids[i] = lm_id_random();
        fill(buf, size, 1000 + (uint64_t)i);
        put_ok(&small, ids[i], (lm_id){{0}}, buf, size);
        /* What is not in a spill file is in memory: never above the limit. */
        uint64_t on_disk = 0;
        spill_files(small.spill, &on_disk);
        uint64_t in_memory = (uint64_t)(i + 1) * size - on_disk;
        if (in_memory > max_in_memory) max_in_memory = in_memory;
    }
    CU_ASSERT_TRUE(max_in_memory <= (64u << 20));
    uint64_t on_disk = 0;
    size_t files = spill_files(small.spill, &on_disk);
    CU_ASSERT_TRUE(files >= N - 4);
    CU_ASSERT_EQUAL(on_disk, files * size);
    for (int i = N - 1; i >= 0; i--) { /* spilled ones come back from their files */
        fill(buf, size, 1000 + (uint64_t)i);
        get_equals(&small, ids[i], buf, size);
    }
    /* A parked Get is answered when the store stops; the exit is clean. */
    waiter w;
    start_waiter(&w, &small, lm_id_random(), (lm_id){{0}}, TIMEOUT_MS);
    lm_test_sleep_ms(300);
    uint64_t t0 = lm_test_now_us();
    int status = lm_test_stop(small.pid, SIGTERM, 20000);
    pthread_join(w.thread, NULL);
    LM_ASSERT_CODE(w.st, LUMEN_UNAVAILABLE);
    CU_ASSERT_TRUE(lm_test_now_us() - t0 < 10000000);
    CU_ASSERT_TRUE(WIFEXITED(status));
    CU_ASSERT_EQUAL(WEXITSTATUS(status), 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "\nobjstore exit status 0x%x (see %s/small.log)\n", status, dir);
    files = spill_files(small.spill, &on_disk);
    CU_ASSERT_EQUAL(files, 0); /* its spill files went with it */
    free(buf);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"small and empty objects round trip", test_small_and_empty},
        {"ranged gets", test_ranges},
        {"a missing object is NOT_FOUND", test_missing_is_not_found},
        {"the first put wins", test_first_put_wins},
        {"gets parked before the put get the object", test_wait_for_put},
        {"a parked get times out, the store goes on", test_wait_deadline},
        {"delete", test_delete},
        {"release job", test_release_job},
        {"malformed put streams", test_malformed_puts},
        {"1 GiB round trip", test_one_gib},
        {"spilling past 64 MiB, then SIGTERM", test_spill_and_sigterm},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("objstore", tests, suite_init, suite_cleanup);
}

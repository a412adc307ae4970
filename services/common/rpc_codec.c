/* rpc_codec.c - the parts of the RPC layer shared by server and client. */
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc_internal.h"

static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static int init_refs;

void lm_rpc_init(void) {
    pthread_mutex_lock(&init_mu);
    if (init_refs++ == 0) grpc_init();
    pthread_mutex_unlock(&init_mu);
}

void lm_rpc_shutdown(void) {
    pthread_mutex_lock(&init_mu);
    if (init_refs > 0 && --init_refs == 0) grpc_shutdown();
    pthread_mutex_unlock(&init_mu);
}

void lm_rpc_message_free(ProtobufCMessage *msg) {
    if (msg != NULL) protobuf_c_message_free_unpacked(msg, NULL);
}

void lm_rpc_cq_run(grpc_completion_queue *cq) {
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) return;
        if (ev.type == GRPC_OP_COMPLETE) {
            lm_rpc_tag *tag = ev.tag;
            tag->fn(tag, ev.success != 0);
        }
    }
}

void lm_rpc_pluck_cq_destroy(grpc_completion_queue *cq) {
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
}

grpc_byte_buffer *lm_rpc_pack(const ProtobufCMessage *msg) {
    size_t len = protobuf_c_message_get_packed_size(msg);
    grpc_slice slice = grpc_slice_malloc(len);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return bb;
}

lumen_status lm_rpc_unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
                           ProtobufCMessage **out) {
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, bb))
        return lm_status(LUMEN_INVALID_ARGUMENT, "cannot read %s message", desc->name);
    /* One contiguous view; readall copies only when the bytes span slices. */
    grpc_slice flat = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    *out = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(flat), GRPC_SLICE_START_PTR(flat));
    size_t len = GRPC_SLICE_LENGTH(flat);
    grpc_slice_unref(flat);
    if (*out == NULL)
        return lm_status(LUMEN_INVALID_ARGUMENT, "malformed %s message (%zu bytes)", desc->name, len);
    return lm_ok();
}

grpc_channel_args lm_rpc_channel_args(size_t max_message_bytes, grpc_arg storage[LM_RPC_NUM_ARGS]) {
    storage[0].type = GRPC_ARG_INTEGER;
    storage[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    storage[0].value.integer = (int)max_message_bytes;
    storage[1].type = GRPC_ARG_INTEGER;
    storage[1].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    storage[1].value.integer = -1; /* the receiver enforces its limit */
    /* A receive window big enough for a few chunks keeps streams flowing
     * without waiting for the window to grow. */
    storage[2].type = GRPC_ARG_INTEGER;
    storage[2].key = GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES;
    storage[2].value.integer = 8 << 20;
    storage[3].type = GRPC_ARG_INTEGER;
    storage[3].key = GRPC_ARG_HTTP2_MAX_FRAME_SIZE;
    storage[3].value.integer = (1 << 24) - 1;
    storage[4].type = GRPC_ARG_INTEGER;
    storage[4].key = GRPC_ARG_HTTP2_WRITE_BUFFER_SIZE;
    storage[4].value.integer = 8 << 20;
    /* A peer that went away (a restarting scheduler) is tried again within
     * a second, however long it was gone: gRPC's own backoff grows to two
     * minutes, which kept nodes from re-registering for up to 17 s after a
     * scheduler down for a minute came back (cluster_bench
     * scheduler_restart_recovery). */
    storage[5].type = GRPC_ARG_INTEGER;
    storage[5].key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
    storage[5].value.integer = 100;
    storage[6].type = GRPC_ARG_INTEGER;
    storage[6].key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
    storage[6].value.integer = 1000;
    grpc_channel_args args = {LM_RPC_NUM_ARGS, storage};
    return args;
}

gpr_timespec lm_rpc_deadline(int64_t timeout_ms) {
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

lumen_status lm_rpc_status_from_grpc(grpc_status_code code, grpc_slice details, const char *where) {
    if (code == GRPC_STATUS_OK) return lm_ok();
    int len = (int)GRPC_SLICE_LENGTH(details);
    if (len == 0) return lm_status((lumen_code)code, "%s: %s", where, lumen_strerror((lumen_code)code));
    return lm_status((lumen_code)code, "%s: %.*s", where, len, (const char *)GRPC_SLICE_START_PTR(details));
}

char *lm_rpc_method_path(const ProtobufCServiceDescriptor *svc, unsigned index) {
    char *path = NULL;
    if (asprintf(&path, "/%s/%s", svc->name, svc->methods[index].name) < 0) return NULL;
    return path;
}

char *lm_rpc_strdup_nonempty(const char *s) {
    return (s != NULL && *s != '\0') ? strdup(s) : NULL;
}

/* Reads a whole PEM file into a NUL-terminated string. */
static lumen_status read_pem(const char *path, char **out) {
    *out = NULL;
    if (path == NULL || *path == '\0') return lm_ok();
    FILE *f = fopen(path, "rb");
    if (f == NULL) return lm_status(LUMEN_CONFIG, "cannot open %s: %m", path);
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while (mem != NULL && (n = fread(chunk, 1, sizeof chunk, f)) > 0) fwrite(chunk, 1, n, mem);
    bool failed = ferror(f) || mem == NULL;
    fclose(f);
    if (mem != NULL) fclose(mem);
    if (failed || len == 0) {
        free(buf);
        return lm_status(LUMEN_CONFIG, "cannot read %s (empty or unreadable)", path);
    }
    *out = buf;
    return lm_ok();
}

typedef struct pem_set {
    char *cert, *key, *ca;
} pem_set;

static void pem_set_free(pem_set *p) {
    free(p->cert);
    free(p->key);
    free(p->ca);
}

static lumen_status pem_set_load(const lm_rpc_tls *tls, pem_set *p) {
    memset(p, 0, sizeof *p);
    lumen_status st = read_pem(tls->cert_file, &p->cert);
    if (LM_IS_OK(st)) st = read_pem(tls->key_file, &p->key);
    if (LM_IS_OK(st)) st = read_pem(tls->ca_file, &p->ca);
    if (LM_IS_OK(st) && (p->cert == NULL) != (p->key == NULL))
        st = lm_status(LUMEN_CONFIG, "TLS needs both a certificate and its key");
    if (!LM_IS_OK(st)) pem_set_free(p);
    return st;
}

static bool tls_configured(const lm_rpc_tls *tls) {
    return (tls->cert_file && *tls->cert_file) || (tls->key_file && *tls->key_file) ||
           (tls->ca_file && *tls->ca_file);
}

lumen_status lm_rpc_server_credentials(const lm_rpc_tls *tls, grpc_server_credentials **out) {
    *out = NULL;
    if (!tls_configured(tls)) return lm_ok();
    pem_set p;
    lumen_status st = pem_set_load(tls, &p);
    if (!LM_IS_OK(st)) return st;
    if (p.cert == NULL) {
        pem_set_free(&p);
        return lm_status(LUMEN_CONFIG, "a TLS server needs tls_cert and tls_key");
    }
    grpc_ssl_pem_key_cert_pair pair = {p.key, p.cert};
    /* With a CA configured, clients must present a certificate it signed. */
    *out = grpc_ssl_server_credentials_create_ex(
        p.ca, &pair, 1,
        p.ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
             : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        NULL);
    pem_set_free(&p);
    return *out ? lm_ok() : lm_status(LUMEN_CONFIG, "invalid TLS certificate or key");
}

lumen_status lm_rpc_channel_credentials(const lm_rpc_tls *tls, grpc_channel_credentials **out) {
    *out = NULL;
    if (!tls_configured(tls)) return lm_ok();
    pem_set p;
    lumen_status st = pem_set_load(tls, &p);
    if (!LM_IS_OK(st)) return st;
    grpc_ssl_pem_key_cert_pair pair = {p.key, p.cert};
    *out = grpc_ssl_credentials_create(p.ca, p.cert ? &pair : NULL, NULL, NULL);
    pem_set_free(&p);
    return *out ? lm_ok() : lm_status(LUMEN_CONFIG, "invalid TLS certificate or key");
}

/* raw_rpc.c - see raw_rpc.h. Calls the gRPC C core directly: the RPC layer
 * only ever sends messages it packed itself. */
#include "raw_rpc.h"

#include <arpa/inet.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rpc.h"

/* One batch does the whole call: send, half-close, receive everything. */
static lumen_status call_once(grpc_call *call, grpc_completion_queue *cq, grpc_byte_buffer *request,
                              const char *path) {
    grpc_metadata_array initial, trailing;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    grpc_byte_buffer *reply = NULL;
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &reply;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
    ops[5].data.recv_status_on_client.status = &code;
    ops[5].data.recv_status_on_client.status_details = &details;
    lumen_status st;
    if (grpc_call_start_batch(call, ops, 6, ops, NULL) != GRPC_CALL_OK) {
        st = lm_status(LUMEN_INTERNAL, "%s: cannot start the call", path);
    } else {
        grpc_completion_queue_pluck(cq, ops, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        int n = (int)GRPC_SLICE_LENGTH(details);
        st = code == GRPC_STATUS_OK ? lm_ok()
                                    : lm_status((lumen_code)code, "%s: %.*s", path, n,
                                                (const char *)GRPC_SLICE_START_PTR(details));
    }
    if (reply != NULL) grpc_byte_buffer_destroy(reply);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    return st;
}

lumen_status lm_test_raw_call(const char *addr, const char *path, const void *bytes, size_t len,
                              int64_t timeout_ms) {
    lm_rpc_init();
    grpc_arg arg = {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, .value.integer = -1};
    grpc_channel_args args = {1, &arg};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *channel = grpc_channel_create(addr, creds, &args);
    grpc_channel_credentials_release(creds);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice method = grpc_slice_from_copied_string(path);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    grpc_call *call = grpc_channel_create_call(channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
                                               deadline, NULL);
    grpc_slice payload = grpc_slice_from_copied_buffer(bytes, len);
    grpc_byte_buffer *request = grpc_raw_byte_buffer_create(&payload, 1);
    lumen_status st = call_once(call, cq, request, path);
    grpc_byte_buffer_destroy(request);
    grpc_slice_unref(payload);
    grpc_call_unref(call);
    grpc_slice_unref(method);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
    grpc_channel_destroy(channel);
    lm_rpc_shutdown();
    return st;
}

size_t lm_test_tcp_exchange(int fd, const void *bytes, size_t len, int64_t timeout_ms) {
    for (size_t off = 0; off < len;) {
        ssize_t n = send(fd, (const char *)bytes + off, len - off, MSG_NOSIGNAL);
        if (n <= 0) break; /* the server hung up on us: what we wanted to see */
        off += (size_t)n;
    }
    size_t got = 0;
    char buf[4096];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (poll(&p, 1, (int)timeout_ms) == 1) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        got += (size_t)n;
    }
    return got;
}

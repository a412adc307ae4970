/*
 * fuzz_frame - the worker <-> executor frame decoder (frame.c) on a real
 * Unix socketpair, descriptors included.
 *
 * Input: byte 0 holds options: bit 0 decodes ExecReply (else ExecRequest),
 * bits 1-2 how many descriptors the peer sends, bit 5 whether they ride on
 * the stream's second byte instead of its first, bits 3-4 how many the
 * receiver takes (the others must be closed). The rest is the byte
 * stream the peer writes before it hangs up; frames are read until an error.
 *
 * Checks: errors are the documented ones (-EPIPE, -EPROTO, -EMSGSIZE); every
 * decoded frame that lm_limits_well_formed accepts (protobuf-c decodes field
 * number 0 but cannot re-pack it; the worker never forwards a frame) sends
 * and receives again unchanged with its descriptors; no descriptor leaks,
 * whatever happened.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "executor.pb-c.h"
#include "frame.h"
#include "input_limits.h"

/* The stream must fit in the socket's buffer: it is written before it is read. */
#define MAX_STREAM (32u << 10)

static int devnull = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return devnull < 0;
}

static void fail(const char *why, int rc) {
    fprintf(stderr, "fuzz_frame: %s (rc %d: %s)\n", why, rc, strerror(rc < 0 ? -rc : rc));
    abort();
}

/* The descriptor the next open would get: equal before and after, no leak. */
static int lowest_free_fd(void) {
    int fd = dup(devnull);
    if (fd < 0) abort();
    close(fd);
    return fd;
}

static void close_all(const int *fds, size_t n) {
    for (size_t i = 0; i < n; i++) close(fds[i]);
}

/* Writes all of data with nfds descriptors (copies of /dev/null) on its first byte. */
static void send_with_fds(int sock, const uint8_t *data, size_t len, size_t nfds) {
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * LM_FRAME_MAX_FDS)];
    } control;
    memset(&control, 0, sizeof control);
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                        .msg_controllen = CMSG_SPACE(sizeof(int) * nfds)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    for (size_t i = 0; i < nfds; i++) memcpy(CMSG_DATA(c) + i * sizeof(int), &devnull, sizeof(int));
    if (sendmsg(sock, &mh, MSG_NOSIGNAL) != (ssize_t)len) abort(); /* fits in the buffer */
}

/* The peer: the whole stream, nfds descriptors riding on byte `at` (so they
 * arrive with a header or in the middle of one), then EOF. */
static void write_stream(int sock, const uint8_t *data, size_t len, size_t nfds, size_t at) {
    if (nfds == 0 || at >= len) {
        if (len > 0 && lm_frame_send_raw(sock, data, len) != 0) abort();
    } else {
        if (at > 0 && lm_frame_send_raw(sock, data, at) != 0) abort();
        send_with_fds(sock, data + at, len - at, nfds);
    }
    shutdown(sock, SHUT_WR);
}

static uint8_t *pack(const ProtobufCMessage *msg, size_t *len) {
    *len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf == NULL) abort();
    protobuf_c_message_pack(msg, buf);
    return buf;
}

/* A decoded frame goes out again (encode, send with its descriptors) and
 * must come back the same. */
static void round_trip(const ProtobufCMessage *msg, const int *fds, size_t nfds) {
    size_t framed;
    uint8_t *frame = lm_frame_encode(msg, &framed);
    if (frame == NULL) fail("a decoded message cannot be encoded", 0);
    if (lm_frame_body_len(frame) != framed - LM_FRAME_HEADER_BYTES) fail("the header lies about the body", 0);
    free(frame);

    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) abort();
    int rc = lm_frame_send(pair[0], msg, fds, nfds);
    if (rc != 0) fail("sending a decoded frame failed", rc);
    ProtobufCMessage *back = NULL;
    int got[LM_FRAME_MAX_FDS];
    size_t ngot = 0;
    rc = lm_frame_recv(pair[1], msg->descriptor, &back, got, LM_FRAME_MAX_FDS, &ngot);
    if (rc != 0) fail("a frame we sent does not decode", rc);
    if (ngot != nfds) fail("descriptors were lost on the way", (int)ngot);
    size_t len1, len2;
    uint8_t *a = pack(msg, &len1), *b = pack(back, &len2);
    if (len1 != len2 || memcmp(a, b, len1) != 0) fail("a frame changed on the way", 0);
    free(a);
    free(b);
    close_all(got, ngot);
    protobuf_c_message_free_unpacked(back, NULL);
    close(pair[0]);
    close(pair[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0 || size - 1 > MAX_STREAM) return 0;
    const ProtobufCMessageDescriptor *desc =
        (data[0] & 1) ? &lumen__exec_reply__descriptor : &lumen__exec_request__descriptor;
    size_t send_fds = (data[0] >> 1) & 3, max_fds = (data[0] >> 3) & 3;
    int before = lowest_free_fd();

    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) abort();
    write_stream(pair[0], data + 1, size - 1, send_fds, (data[0] >> 5) & 1);
    int rc;
    for (;;) {
        ProtobufCMessage *msg = NULL;
        int fds[LM_FRAME_MAX_FDS];
        size_t nfds = 0;
        rc = lm_frame_recv(pair[1], desc, &msg, fds, max_fds, &nfds);
        if (rc != 0) {
            if (msg != NULL || nfds != 0) fail("a failed receive left something behind", rc);
            break;
        }
        if (nfds > max_fds) fail("more descriptors than asked for", (int)nfds);
        if (LM_IS_OK(lm_limits_well_formed(msg))) round_trip(msg, fds, nfds);
        close_all(fds, nfds);
        protobuf_c_message_free_unpacked(msg, NULL);
    }
    if (rc != -EPIPE && rc != -EPROTO && rc != -EMSGSIZE) fail("an undocumented error", rc);
    close(pair[0]);
    close(pair[1]);
    if (lowest_free_fd() != before) fail("a descriptor leaked", lowest_free_fd());
    return 0;
}

/* frame.c - see frame.h. */
#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

uint8_t *lm_frame_encode(const ProtobufCMessage *msg, size_t *len) {
    size_t body = protobuf_c_message_get_packed_size(msg);
    if (body > LM_FRAME_MAX_BYTES) return NULL;
    uint8_t *buf = malloc(LM_FRAME_HEADER_BYTES + body);
    if (buf == NULL) return NULL;
    for (int i = 0; i < LM_FRAME_HEADER_BYTES; i++) buf[i] = (uint8_t)(body >> (8 * i));
    protobuf_c_message_pack(msg, buf + LM_FRAME_HEADER_BYTES);
    *len = LM_FRAME_HEADER_BYTES + body;
    return buf;
}

uint32_t lm_frame_body_len(const uint8_t header[LM_FRAME_HEADER_BYTES]) {
    return (uint32_t)header[0] | (uint32_t)header[1] << 8 | (uint32_t)header[2] << 16 |
           (uint32_t)header[3] << 24;
}

/* Writes all of buf; the descriptors go with the first bytes. */
static int send_all(int sock, const uint8_t *buf, size_t len, const int *fds, size_t nfds) {
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * LM_FRAME_MAX_FDS)];
    } control;
    if (nfds > LM_FRAME_MAX_FDS) return -EINVAL;
    size_t off = 0;
    while (off < len) {
        struct iovec iov = {.iov_base = (void *)(buf + off), .iov_len = len - off};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        if (nfds > 0 && off == 0) {
            memset(&control, 0, sizeof control);
            mh.msg_control = control.buf;
            mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
            struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
            memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
        }
        ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        off += (size_t)n;
    }
    return 0;
}

int lm_frame_send_raw(int sock, const uint8_t *buf, size_t len) { return send_all(sock, buf, len, NULL, 0); }

int lm_frame_send(int sock, const ProtobufCMessage *msg, const int *fds, size_t nfds) {
    size_t len;
    uint8_t *buf = lm_frame_encode(msg, &len);
    if (buf == NULL) return -EMSGSIZE;
    int rc = send_all(sock, buf, len, fds, nfds);
    free(buf);
    return rc;
}

/* Reads exactly len bytes, collecting any descriptors that arrive. */
static int recv_all(int sock, uint8_t *buf, size_t len, int *fds, size_t max_fds, size_t *nfds) {
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * LM_FRAME_MAX_FDS)];
    } control;
    size_t off = 0;
    while (off < len) {
        struct iovec iov = {.iov_base = buf + off, .iov_len = len - off};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                            .msg_controllen = sizeof control.buf};
        ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                if (*nfds < max_fds) fds[(*nfds)++] = fd;
                else close(fd);
            }
        }
        if (n == 0) return -EPIPE;
        off += (size_t)n;
    }
    return 0;
}

int lm_frame_recv(int sock, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg, int *fds,
                  size_t max_fds, size_t *nfds) {
    *msg = NULL;
    *nfds = 0;
    uint8_t header[LM_FRAME_HEADER_BYTES];
    int rc = recv_all(sock, header, sizeof header, fds, max_fds, nfds);
    uint32_t body = rc == 0 ? lm_frame_body_len(header) : 0;
    if (rc == 0 && body > LM_FRAME_MAX_BYTES) rc = -EMSGSIZE;
    uint8_t *buf = NULL;
    if (rc == 0 && (buf = malloc(body ? body : 1)) == NULL) rc = -ENOMEM;
    if (rc == 0) rc = recv_all(sock, buf, body, fds, max_fds, nfds);
    if (rc == 0 && (*msg = protobuf_c_message_unpack(desc, NULL, body, buf)) == NULL) rc = -EPROTO;
    free(buf);
    if (rc != 0) {
        for (size_t i = 0; i < *nfds; i++) close(fds[i]);
        *nfds = 0;
    }
    return rc;
}

/* http_client.c - see http_client.h. */
#include "http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for the socket to be ready for ev until the deadline. */
static int wait_fd(int fd, short ev, long long deadline) {
    struct pollfd p = {.fd = fd, .events = ev};
    long long left = deadline - now_ms();
    return left > 0 && poll(&p, 1, (int)left) == 1 ? 0 : -1;
}

int lm_http_request(uint16_t port, const char *method, const char *path, const char *headers,
                    const char *body, int timeout_ms, lm_http_reply *out) {
    memset(out, 0, sizeof *out);
    long long deadline = now_ms() + timeout_ms;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    size_t blen = body ? strlen(body) : 0;
    size_t cap = strlen(path) + (headers ? strlen(headers) : 0) + blen + 256;
    char *req = malloc(cap);
    int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nConnection: close\r\n%sContent-Length: %zu\r\n\r\n%s",
                     method, path, port, headers ? headers : "", blen, body ? body : "");
    int rc = 0;
    for (int sent = 0; rc == 0 && sent < n;) {
        ssize_t w = send(fd, req + sent, (size_t)(n - sent), MSG_NOSIGNAL);
        if (w <= 0) rc = -1;
        else sent += (int)w;
    }
    free(req);
    size_t len = 0, room = 4096;
    char *buf = malloc(room);
    while (rc == 0) {
        if (wait_fd(fd, POLLIN, deadline) != 0) {
            rc = -1;
            break;
        }
        if (len + 4096 > room) buf = realloc(buf, room *= 2);
        ssize_t r = recv(fd, buf + len, room - len - 1, 0);
        if (r < 0) rc = -1;
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    if (rc != 0 || sep == NULL || sscanf(buf, "HTTP/1.%*d %d", &out->status) != 1) {
        free(buf);
        out->status = 0;
        return -1;
    }
    *sep = '\0';
    out->head = buf;
    out->body_len = len - (size_t)(sep + 4 - buf);
    out->body = malloc(out->body_len + 1);
    memcpy(out->body, sep + 4, out->body_len);
    out->body[out->body_len] = '\0';
    return 0;
}

int lm_http_get(uint16_t port, const char *path, const char *token, lm_http_reply *out) {
    char auth[300] = "";
    if (token) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", token);
    return lm_http_request(port, "GET", path, auth, NULL, 10000, out);
}

const char *lm_http_header(const lm_http_reply *r, const char *name, char *buf, size_t cap) {
    size_t nlen = strlen(name);
    for (const char *line = r->head ? strstr(r->head, "\r\n") : NULL; line; line = strstr(line + 2, "\r\n")) {
        const char *h = line + 2;
        if (strncasecmp(h, name, nlen) == 0 && h[nlen] == ':') {
            h += nlen + 1;
            while (*h == ' ') h++;
            size_t vlen = strcspn(h, "\r\n");
            snprintf(buf, cap, "%.*s", (int)vlen, h);
            return buf;
        }
    }
    return NULL;
}

void lm_http_reply_free(lm_http_reply *r) {
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

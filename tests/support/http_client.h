/*
 * http_client.h - a minimal HTTP/1.1 client for tests of the dashboard:
 * one request per connection (Connection: close), read to the end, with a
 * deadline. Test plumbing, not a general client.
 */
#ifndef LM_TEST_HTTP_CLIENT_H
#define LM_TEST_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

typedef struct lm_http_reply {
    int status;    /* 200, 401, ...; 0 when no reply came */
    char *head;    /* status line and headers, NUL-terminated */
    char *body;    /* NUL-terminated */
    size_t body_len;
} lm_http_reply;

/* Sends METHOD path to 127.0.0.1:port with the extra header lines (each
 * ending in "\r\n"; may be NULL) and body (may be NULL). Returns 0 when a
 * reply was read within timeout_ms, else -1 (out->status 0). */
int lm_http_request(uint16_t port, const char *method, const char *path, const char *headers,
                    const char *body, int timeout_ms, lm_http_reply *out);

/* GET with an optional "Authorization: Bearer <token>" (token NULL: none). */
int lm_http_get(uint16_t port, const char *path, const char *token, lm_http_reply *out);

/* A header's value (case-insensitive name) into buf; NULL when absent. */
const char *lm_http_header(const lm_http_reply *r, const char *name, char *buf, size_t cap);

void lm_http_reply_free(lm_http_reply *r);

#endif

/*
 * listener.h - a listening TCP socket that Lumen owns: it accepts every
 * connection itself, under limits, and hands it to the server it feeds (the
 * gRPC server, the dashboard's HTTP daemon), which owns it from then on.
 *
 * Why Lumen accepts and not the servers: gRPC 1.51's listener stops for
 * good on its first EMFILE, libmicrohttpd's serves a fixed number of
 * connections first come first served, and neither lets a caller drop one
 * connection or tell a stranger's from a member's. Here:
 *
 *  - A connection is unproven until its server reports a request that
 *    carried the token (any request when there is none): unproven ones live
 *    at most prove_timeout_ms, and past max_unproven (or a peer's
 *    max_unproven_per_peer) the oldest is dropped for the newcomer, so idle,
 *    half-open or dribbling connections cannot keep members out.
 *  - An unproven connection's receive window is narrow (4 KiB): its server
 *    reads a flood in small bites and answers in between.
 *  - A connection is handed over only once it has sent its first bytes; one
 *    that closes before that (connection churn) never reaches the server.
 *  - At most max_connections are open; the default follows the descriptor
 *    limit (each connection costs two descriptors: the server's and the
 *    listener's duplicate, see below) and keeps a reserve for the rest of
 *    the process. Past the cap a newcomer replaces the oldest unproven
 *    connection, or is closed at once.
 *  - EMFILE never stops the listener: a reserved descriptor is given up to
 *    accept and close the connection waiting, so the backlog keeps moving
 *    and the socket keeps answering once descriptors are back.
 *  - Misbehaviour reported by the server drops the connection: refused
 *    calls (a wrong or missing token) past max_strikes, calls cancelled by
 *    the client faster than its reset budget (HTTP/2 rapid reset). Its
 *    address is then a suspect for a while: one strike, and its new
 *    connections reach the server one at a time, a few a second.
 *
 * The listener keeps a duplicate of every connection it hands over, so it can
 * drop one (an abortive close: RST, queued bytes discarded, the server's
 * next read fails) and learns that the server closed it (the duplicate
 * reports HUP once the server shut the socket down; a server that closes
 * without shutdown() says so with LM_CONN_CLOSED).
 *
 * Threads: one thread of its own accepts, hands over and times connections
 * out; lm_listener_note is safe from any thread.
 */
#ifndef LM_LISTENER_H
#define LM_LISTENER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "status.h"

typedef struct lm_listener lm_listener;

/* Every field 0: its default (in parentheses). */
typedef struct lm_listener_limits {
    int max_connections;       /* open connections (from RLIMIT_NOFILE, at most 16384) */
    int max_unproven;          /* unproven connections (max_connections / 4, at most 1024) */
    int max_unproven_per_peer; /* unproven connections from one address (64) */
    int64_t prove_timeout_ms;  /* life of an unproven connection (10 s) */
    int max_strikes;           /* refused calls before the connection is dropped (16) */
    int reset_burst;           /* calls a connection may cancel in a burst (2000)... */
    int reset_rate;            /* ...and per second after it (1000) */
} lm_listener_limits;

/* What a server reports of a connection. */
typedef enum lm_conn_event {
    LM_CONN_PROVEN,  /* a request carried the token (or there is none) */
    LM_CONN_REFUSED, /* a request was refused for its token: a strike */
    LM_CONN_RESET,   /* the client cancelled a call before its answer */
    LM_CONN_CLOSED,  /* the server closed it without shutdown() */
} lm_conn_event;

/*
 * Gives a connection to the server: `fd` is connected, non-blocking and
 * close-on-exec, and the server's from now on (it closes it); `listen_fd` is
 * the socket it was accepted on. Runs on the listener's thread.
 */
typedef void (*lm_listener_sink_fn)(void *arg, int listen_fd, int fd);

/*
 * Binds and listens on addr ("host:port", "[v6]:port"; port 0 picks one;
 * every address the host resolves to). Errors say which of the usual three
 * it is: a host that does not resolve, an address that is not this
 * machine's, a port in use.
 */
lumen_status lm_listener_open(const char *addr, const lm_listener_limits *limits, lm_listener **out);

/* The port bound (the one picked for port 0). */
int lm_listener_port(const lm_listener *l);

/* The limits in force, defaults filled in. */
lm_listener_limits lm_listener_limits_of(const lm_listener *l);

/* Starts accepting on the listener's thread, handing connections to sink. */
lumen_status lm_listener_start(lm_listener *l, lm_listener_sink_fn sink, void *arg);

/* Stops accepting: joins the thread, closes the listening sockets and the
 * connections not handed over yet (those handed over stay with their
 * server). Idempotent. */
void lm_listener_stop(lm_listener *l);

/* Stops, closes the listening sockets and the duplicates; NULL is fine. */
void lm_listener_free(lm_listener *l);

/*
 * Reports what the connection from `peer` did. Returns false when the
 * listener dropped it for that (or does not know it: closed already, or not
 * one of its own). Safe from any thread, cheap (a lock and a hash lookup).
 */
bool lm_listener_note(lm_listener *l, const struct sockaddr *peer, lm_conn_event ev);

/* The same for a peer as gRPC names it: "ipv4:1.2.3.4:5678",
 * "ipv6:[::1]:5678" (or percent-encoded brackets). */
bool lm_listener_note_uri(lm_listener *l, const char *peer, lm_conn_event ev);

/* Counters, for /metrics and tests. */
typedef struct lm_listener_stats {
    uint64_t open;      /* connections now open */
    uint64_t unproven;  /* of which unproven */
    uint64_t accepted;  /* since start */
    uint64_t refused;   /* closed at accept: over the cap, or no descriptor left */
    uint64_t evicted;   /* unproven, dropped for a newcomer */
    uint64_t timed_out; /* unproven for prove_timeout_ms */
    uint64_t dropped;   /* for refused calls or resets past their budget */
} lm_listener_stats;

void lm_listener_stats_get(lm_listener *l, lm_listener_stats *out);

#endif

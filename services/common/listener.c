/* listener.c - see listener.h. */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "process.h"

#define MAX_LISTEN_FDS 4    /* addresses a host name may resolve to */
#define BACKLOG 1024
#define ACCEPTS_PER_WAKEUP 128 /* then the connections' own events get a turn */
#define EVENTS_PER_WAIT 128
#define PAUSE_MS 100        /* accepting rests this long when no descriptor is left at all */
#define FD_RESERVE_MIN 256  /* descriptors kept for the rest of the process... */
#define FD_RESERVE_SHARE 4  /* ...or a quarter of the limit, whichever is more */
#define UNPROVEN_WINDOW (4 << 10) /* bytes in flight towards an unproven connection */
#define SUSPECTS 256          /* addresses remembered for a dropped connection... */
#define SUSPECT_MS 10000      /* ...this long after their last one */
#define SUSPECT_TURN_MS 200   /* a suspect address gets a connection heard this often */

/* What an epoll event points at. */
typedef enum { SRC_LISTEN, SRC_WAKE, SRC_CONN } source_kind;
typedef struct source {
    source_kind kind;
    int fd;
} source;

/* A peer: its address (IPv4 as v4-mapped IPv6) and port. */
typedef struct peer_key {
    uint8_t addr[16];
    uint16_t port;
} peer_key;

typedef struct conn conn;
struct conn {
    source src;      /* first: epoll events point here */
    peer_key peer;
    int listen_fd;   /* the socket it came in on */
    bool handed;     /* the server has its duplicate */
    bool unproven;   /* in the unproven list */
    bool suspect;    /* from an address that misbehaved lately */
    bool parked;     /* sent bytes, waits for its address's turn (suspects) */
    bool turn;       /* unparked: its address's turn is its own */
    uint64_t deadline_ms; /* unproven: dropped then */
    int strikes;
    double reset_tokens;
    uint64_t reset_at_ms;
    conn *hnext;            /* hash chain (handed connections), then the graveyard */
    conn *uprev, *unext;    /* the unproven list, oldest first */
    conn *aprev, *anext;    /* every open connection */
};

struct lm_listener {
    lm_listener_limits lim;
    source lsrc[MAX_LISTEN_FDS];
    int nlisten;
    int port;
    source wake;
    int epfd;
    int reserve_fd; /* given up to accept (and close) when EMFILE strikes */

    pthread_t thread;
    bool running;
    lm_listener_sink_fn sink;
    void *sink_arg;

    pthread_mutex_t mu;
    bool stopping;
    bool paused;             /* listening sockets out of epoll (no descriptor left) */
    uint64_t paused_until_ms;
    conn **buckets;          /* handed connections by peer */
    size_t nbuckets;         /* a power of two */
    conn *uhead, *utail;     /* unproven, oldest first */
    conn *all;
    conn *graveyard;         /* closed, freed by the thread between two waits */
    struct suspect {
        uint8_t addr[16];
        uint64_t until_ms;
        uint64_t next_turn_ms; /* when its next connection may reach the server */
    } suspects[SUSPECTS];    /* addresses whose connections were dropped lately */
    int parked;              /* connections waiting for their address's turn */
    lm_listener_stats stats;
};

/* ---------------------------------------------------------------- peers */

static void key_from_sockaddr(const struct sockaddr *sa, peer_key *k) {
    memset(k, 0, sizeof *k);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        k->addr[10] = k->addr[11] = 0xff;
        memcpy(k->addr + 12, &in->sin_addr, 4);
        k->port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(k->addr, &in6->sin6_addr, 16);
        k->port = ntohs(in6->sin6_port);
    }
}

/* "ipv4:1.2.3.4:5", "ipv6:[::1]:5" or "ipv6:%5B::1%5D:5" into a key. */
static bool key_from_uri(const char *uri, peer_key *k) {
    const char *host = strchr(uri, ':'), *colon = strrchr(uri, ':');
    if (host == NULL || colon == host) return false;
    host++;
    char buf[INET6_ADDRSTRLEN + 8];
    size_t n = 0;
    for (const char *p = host; p < colon && n + 1 < sizeof buf; p++) {
        if (*p == '[' || *p == ']') continue;
        if (strncmp(p, "%5B", 3) == 0 || strncmp(p, "%5D", 3) == 0) {
            p += 2;
            continue;
        }
        buf[n++] = *p;
    }
    buf[n] = '\0';
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end != '\0' || port > 65535) return false;
    memset(k, 0, sizeof *k);
    k->port = (uint16_t)port;
    struct in_addr a4;
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        k->addr[10] = k->addr[11] = 0xff;
        memcpy(k->addr + 12, &a4, 4);
        return true;
    }
    return inet_pton(AF_INET6, buf, k->addr) == 1;
}

static size_t key_hash(const peer_key *k, size_t nbuckets) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < 16; i++) h = (h ^ k->addr[i]) * 1099511628211ull;
    h = (h ^ k->port) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29)) & (nbuckets - 1);
}

static bool same_addr(const peer_key *a, const peer_key *b) { return memcmp(a->addr, b->addr, 16) == 0; }

static conn **hash_slot(lm_listener *l, const peer_key *k) {
    conn **pp = &l->buckets[key_hash(k, l->nbuckets)];
    while (*pp != NULL && !(same_addr(&(*pp)->peer, k) && (*pp)->peer.port == k->port)) pp = &(*pp)->hnext;
    return pp;
}

/* -------------------------------------------------------------- suspects */

/* An address whose connection was dropped for misbehaving is a suspect
 * for SUSPECT_MS: its new connections get one strike, and they reach the
 * server one at a time, one per SUSPECT_TURN_MS at most, so that
 * reconnecting after each drop buys an attacker little. (A member at that
 * address is slowed only when it opens a connection meanwhile.) */
static struct suspect *suspect_of(lm_listener *l, const peer_key *k, uint64_t now) {
    for (int i = 0; i < SUSPECTS; i++)
        if (l->suspects[i].until_ms > now && memcmp(l->suspects[i].addr, k->addr, 16) == 0) return &l->suspects[i];
    return NULL;
}

static void suspect_add(lm_listener *l, const peer_key *k, uint64_t now) {
    struct suspect *slot = suspect_of(l, k, now);
    for (int i = 0; slot == NULL && i < SUSPECTS; i++) /* else an expired one, or the oldest */
        if (i == 0 || l->suspects[i].until_ms < slot->until_ms) slot = &l->suspects[i];
    if (slot->until_ms <= now) slot->next_turn_ms = 0;
    memcpy(slot->addr, k->addr, 16);
    slot->until_ms = now + SUSPECT_MS;
}

/* ----------------------------------------------------------- bookkeeping */

/* The receive window of a connection: narrow while it is unproven, so that
 * its server reads a flood in small bites and answers in between (gRPC reads
 * on while the socket has bytes: a wide window let a rapid reset's
 * connection create tens of thousands of calls before its first one was
 * refused), then as wide as the kernel likes. */
static void set_window(int fd, bool narrow) {
    int size = narrow ? UNPROVEN_WINDOW : 1 << 30;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    if (!narrow) setsockopt(fd, IPPROTO_TCP, TCP_WINDOW_CLAMP, &size, sizeof size);
}

static void unproven_unlink(lm_listener *l, conn *c) {
    if (!c->unproven) return;
    if (c->src.fd >= 0) set_window(c->src.fd, false);
    c->unproven = false; /* out of the list for good: proven, or gone */
    if (c->uprev) c->uprev->unext = c->unext;
    else l->uhead = c->unext;
    if (c->unext) c->unext->uprev = c->uprev;
    else l->utail = c->uprev;
    l->stats.unproven--;
    if (c->parked) l->parked--;
    c->parked = false;
}

/* Closes our descriptor of c and retires it: it is freed by the thread
 * after the events already fetched are handled. `abortive`: RST the peer
 * and discard what is queued, so that the server's next read fails. */
static void retire(lm_listener *l, conn *c, bool abortive) {
    unproven_unlink(l, c);
    if (c->handed) {
        conn **pp = hash_slot(l, &c->peer);
        if (*pp == c) *pp = c->hnext;
    }
    if (abortive) {
        /* connect(AF_UNSPEC) disconnects a TCP socket (every descriptor of
         * it): a RST goes out, the queues are purged, the error is reported
         * to pollers. shutdown() is the fallback: the server sees EOF. */
        struct sockaddr unspec = {.sa_family = AF_UNSPEC};
        if (connect(c->src.fd, &unspec, sizeof unspec) != 0) shutdown(c->src.fd, SHUT_RDWR);
    }
    /* The registration belongs to the socket, which the server's duplicate
     * keeps open: it has to be removed by hand before the close. */
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->src.fd, NULL);
    close(c->src.fd);
    c->src.fd = -1;
    if (c->aprev) c->aprev->anext = c->anext;
    else l->all = c->anext;
    if (c->anext) c->anext->aprev = c->aprev;
    c->hnext = l->graveyard;
    l->graveyard = c;
    l->stats.open--;
}

static void bury(lm_listener *l) {
    while (l->graveyard != NULL) {
        conn *c = l->graveyard;
        l->graveyard = c->hnext;
        free(c);
    }
}

/* Makes room for a connection from `peer`: the oldest unproven one of that
 * address past its share, else the oldest of all past the caps. False
 * when the cap is reached and nothing can go. */
static bool make_room(lm_listener *l, const peer_key *peer) {
    int mine = 0;
    conn *my_oldest = NULL;
    for (conn *c = l->uhead; c != NULL; c = c->unext)
        if (same_addr(&c->peer, peer) && mine++ == 0) my_oldest = c;
    if (mine >= l->lim.max_unproven_per_peer) {
        retire(l, my_oldest, true);
        l->stats.evicted++;
    } else if ((int)l->stats.unproven >= l->lim.max_unproven ||
               ((int)l->stats.open >= l->lim.max_connections && l->uhead != NULL)) {
        retire(l, l->uhead, true);
        l->stats.evicted++;
    }
    return (int)l->stats.open < l->lim.max_connections;
}

static void add_conn(lm_listener *l, int listen_fd, int fd, const struct sockaddr *sa) {
    peer_key k;
    key_from_sockaddr(sa, &k);
    conn *c = make_room(l, &k) ? calloc(1, sizeof *c) : NULL;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP};
    if (c != NULL) {
        c->src = (source){SRC_CONN, fd};
        ev.data.ptr = &c->src;
    }
    if (c == NULL || epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        free(c);
        close(fd);
        l->stats.refused++;
        return;
    }
    set_window(fd, true);
    c->peer = k;
    c->listen_fd = listen_fd;
    c->unproven = true;
    c->suspect = suspect_of(l, &k, lm_mono_ms()) != NULL;
    c->deadline_ms = lm_mono_ms() + (uint64_t)l->lim.prove_timeout_ms;
    c->reset_tokens = l->lim.reset_burst;
    c->reset_at_ms = lm_mono_ms();
    c->uprev = l->utail;
    if (l->utail) l->utail->unext = c;
    else l->uhead = c;
    l->utail = c;
    c->anext = l->all;
    if (l->all) l->all->aprev = c;
    l->all = c;
    l->stats.open++;
    l->stats.unproven++;
    l->stats.accepted++;
}

/* --------------------------------------------------------------- accepting */

static void set_paused(lm_listener *l, bool paused) {
    if (l->paused == paused) return;
    l->paused = paused;
    l->paused_until_ms = lm_mono_ms() + PAUSE_MS;
    for (int i = 0; i < l->nlisten; i++) {
        struct epoll_event ev = {.events = paused ? 0 : EPOLLIN, .data.ptr = &l->lsrc[i]};
        epoll_ctl(l->epfd, EPOLL_CTL_MOD, l->lsrc[i].fd, &ev);
    }
}

/* No descriptor left: the reserved one makes room to accept the waiting
 * connection and close it, so clients hear a close, not a silent backlog.
 * False when even that failed (the caller rests a moment). */
static bool shed_one(lm_listener *l, int lfd) {
    if (l->reserve_fd < 0) return false;
    close(l->reserve_fd);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        l->stats.refused++;
    }
    l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0 && l->reserve_fd >= 0;
}

static void accept_some(lm_listener *l, int lfd) {
    for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            add_conn(l, lfd, fd, (struct sockaddr *)&ss);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            if (!shed_one(l, lfd)) {
                lm_warn("listener on port %d: no descriptor left (%s); resting %d ms", l->port, strerror(errno),
                        PAUSE_MS);
                set_paused(l, true);
                return;
            }
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) lm_warn("listener on port %d: accept: %s", l->port, strerror(errno));
        return;
    }
}

/* ------------------------------------------------------------ connections */

typedef struct handoff {
    int fd, listen_fd;
} handoff;

/* A connection sent its first bytes (or went away before any). */
/* Whether a connection from c's address is with the server, unproven. */
static bool address_busy(const lm_listener *l, const conn *c) {
    for (const conn *p = l->uhead; p != NULL; p = p->unext)
        if (p != c && p->handed && same_addr(&p->peer, &c->peer)) return true;
    return false;
}

/* Parked connections whose address's turn has come (the oldest of each)
 * are heard again: first_bytes hands them over. */
static void unpark(lm_listener *l, uint64_t now) {
    for (conn *p = l->uhead; p != NULL && l->parked > 0; p = p->unext) {
        if (!p->parked) continue;
        struct suspect *sus = suspect_of(l, &p->peer, now);
        if (sus != NULL && (now < sus->next_turn_ms || address_busy(l, p))) continue;
        if (sus != NULL) sus->next_turn_ms = now + SUSPECT_TURN_MS;
        p->parked = false;
        p->turn = true;
        l->parked--;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = &p->src};
        epoll_ctl(l->epfd, EPOLL_CTL_MOD, p->src.fd, &ev);
    }
}

/* Whether a suspect's connection waits for its turn (and if not, takes it). */
static bool must_wait(lm_listener *l, conn *c, uint64_t now) {
    struct suspect *sus = suspect_of(l, &c->peer, now);
    if (sus == NULL || c->turn) return false;
    if (now < sus->next_turn_ms || address_busy(l, c)) return true;
    sus->next_turn_ms = now + SUSPECT_TURN_MS;
    return false;
}

static void first_bytes(lm_listener *l, conn *c, uint32_t events, handoff *out, int *nout) {
    char b;
    ssize_t n = recv(c->src.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR) && !(events & (EPOLLHUP | EPOLLERR))) return;
    if (n > 0 && c->suspect && must_wait(l, c, lm_mono_ms())) { /* unheard until its turn or its deadline */
        struct epoll_event ev = {.events = EPOLLET, .data.ptr = &c->src};
        epoll_ctl(l->epfd, EPOLL_CTL_MOD, c->src.fd, &ev);
        c->parked = true;
        l->parked++;
        return;
    }
    int dup = n > 0 ? fcntl(c->src.fd, F_DUPFD_CLOEXEC, 0) : -1;
    struct epoll_event ev = {.events = EPOLLET, .data.ptr = &c->src}; /* HUP and ERR only */
    if (dup < 0 || epoll_ctl(l->epfd, EPOLL_CTL_MOD, c->src.fd, &ev) != 0) {
        if (dup >= 0) close(dup);
        retire(l, c, false);
        return;
    }
    c->handed = true;
    conn **pp = hash_slot(l, &c->peer);
    if (*pp != NULL) retire(l, *pp, false); /* a stale entry: its socket is gone */
    pp = hash_slot(l, &c->peer);
    c->hnext = NULL;
    *pp = c;
    out[(*nout)++] = (handoff){dup, c->listen_fd};
}

static void conn_event(lm_listener *l, conn *c, uint32_t events, handoff *out, int *nout) {
    if (c->src.fd < 0) return; /* retired after this batch was fetched */
    if (!c->handed) first_bytes(l, c, events, out, nout);
    else if (events & EPOLLHUP) retire(l, c, false); /* the server shut it down */
}

/* Unproven connections past their deadline go; returns ms to the next one. */
static int expire(lm_listener *l) {
    uint64_t now = lm_mono_ms();
    while (l->uhead != NULL && l->uhead->deadline_ms <= now) {
        retire(l, l->uhead, true);
        l->stats.timed_out++;
    }
    int64_t wait = -1;
    if (l->uhead != NULL) wait = (int64_t)(l->uhead->deadline_ms - now);
    if (l->parked > 0) { /* turns come with time, and when a connection leaves the server */
        unpark(l, now);
        if (wait < 0 || wait > SUSPECT_TURN_MS) wait = SUSPECT_TURN_MS;
    }
    if (l->paused) {
        if (l->paused_until_ms <= now) set_paused(l, false);
        else if (wait < 0 || (int64_t)(l->paused_until_ms - now) < wait) wait = (int64_t)(l->paused_until_ms - now);
    }
    return (int)(wait < 0 ? -1 : wait + 1);
}

static void *listener_main(void *arg) {
    lm_thread_name("listener");
    lm_listener *l = arg;
    struct epoll_event evs[EVENTS_PER_WAIT];
    handoff ho[EVENTS_PER_WAIT];
    pthread_mutex_lock(&l->mu);
    for (;;) {
        bury(l);
        int timeout = expire(l);
        if (l->stopping) break;
        pthread_mutex_unlock(&l->mu);
        int n = epoll_wait(l->epfd, evs, EVENTS_PER_WAIT, timeout);
        pthread_mutex_lock(&l->mu);
        int nho = 0;
        for (int i = 0; i < n && !l->stopping; i++) {
            source *s = evs[i].data.ptr;
            if (s->kind == SRC_LISTEN) accept_some(l, s->fd);
            else if (s->kind == SRC_CONN) conn_event(l, (conn *)s, evs[i].events, ho, &nho);
        }
        if (nho == 0) continue;
        /* The server gets its connections outside the lock: it may take a
         * while, and its threads report events meanwhile. */
        pthread_mutex_unlock(&l->mu);
        for (int i = 0; i < nho; i++) l->sink(l->sink_arg, ho[i].listen_fd, ho[i].fd);
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* --------------------------------------------------------------- reports */

bool lm_listener_note(lm_listener *l, const struct sockaddr *peer, lm_conn_event ev) {
    peer_key k;
    key_from_sockaddr(peer, &k);
    pthread_mutex_lock(&l->mu);
    conn *c = *hash_slot(l, &k);
    bool kept = c != NULL;
    if (c != NULL && ev == LM_CONN_PROVEN) {
        unproven_unlink(l, c);
    } else if (c != NULL && ev == LM_CONN_REFUSED) {
        kept = ++c->strikes < (c->suspect ? 1 : l->lim.max_strikes);
    } else if (c != NULL && ev == LM_CONN_RESET) {
        uint64_t now = lm_mono_ms();
        c->reset_tokens += (double)(now - c->reset_at_ms) * l->lim.reset_rate / 1000.0;
        if (c->reset_tokens > l->lim.reset_burst) c->reset_tokens = l->lim.reset_burst;
        c->reset_at_ms = now;
        kept = c->reset_tokens >= 1;
        c->reset_tokens -= 1;
    } else if (c != NULL && ev == LM_CONN_CLOSED) {
        retire(l, c, false);
        c = NULL;
    }
    if (c != NULL && !kept) {
        if (!c->suspect) /* said once per suspect period, not per connection */
            lm_warn("listener on port %d: dropped a connection that %s", l->port,
                ev == LM_CONN_REFUSED ? "kept calling without the token" : "reset calls past its budget");
        suspect_add(l, &c->peer, lm_mono_ms());
        retire(l, c, true);
        l->stats.dropped++;
    }
    pthread_mutex_unlock(&l->mu);
    return kept && ev != LM_CONN_CLOSED;
}

bool lm_listener_note_uri(lm_listener *l, const char *peer, lm_conn_event ev) {
    peer_key k;
    if (peer == NULL || !key_from_uri(peer, &k)) return false;
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(k.port)};
    memcpy(&sa.sin6_addr, k.addr, 16);
    return lm_listener_note(l, (const struct sockaddr *)&sa, ev);
}

void lm_listener_stats_get(lm_listener *l, lm_listener_stats *out) {
    pthread_mutex_lock(&l->mu);
    *out = l->stats;
    pthread_mutex_unlock(&l->mu);
}

/* -------------------------------------------------------------- lifecycle */

/* What the descriptor limit leaves for connections: two descriptors each,
 * after a reserve for everything else the process opens. */
static int fd_budget(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 64;
    uint64_t limit = rl.rlim_cur == RLIM_INFINITY ? (1u << 20) : (uint64_t)rl.rlim_cur;
    uint64_t reserve = limit / FD_RESERVE_SHARE > FD_RESERVE_MIN ? limit / FD_RESERVE_SHARE : FD_RESERVE_MIN;
    uint64_t budget = limit > reserve ? (limit - reserve) / 2 : 0;
    return budget < 16 ? 16 : budget > 16384 ? 16384 : (int)budget;
}

static lm_listener_limits fill_limits(const lm_listener_limits *in) {
    lm_listener_limits lim = in ? *in : (lm_listener_limits){0};
    if (lim.max_connections <= 0) lim.max_connections = fd_budget();
    if (lim.max_unproven <= 0) {
        lim.max_unproven = lim.max_connections / 4;
        if (lim.max_unproven > 1024) lim.max_unproven = 1024;
    }
    if (lim.max_unproven < 1) lim.max_unproven = 1;
    if (lim.max_unproven_per_peer <= 0) lim.max_unproven_per_peer = 64;
    if (lim.max_unproven_per_peer > lim.max_unproven) lim.max_unproven_per_peer = lim.max_unproven;
    if (lim.prove_timeout_ms <= 0) lim.prove_timeout_ms = 10000;
    if (lim.max_strikes <= 0) lim.max_strikes = 16;
    if (lim.reset_burst <= 0) lim.reset_burst = 2000;
    if (lim.reset_rate <= 0) lim.reset_rate = 1000;
    return lim;
}

/* One listening socket for ai; errno-style failure in *err. */
static int listen_on(const struct addrinfo *ai, int *err) {
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
        /* accepted sockets inherit it: RPCs are small messages that must not wait */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0 &&
        bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, BACKLOG) == 0)
        return fd;
    *err = errno;
    if (fd >= 0) close(fd);
    return -1;
}

static lumen_status bind_error(const char *addr, const char *host, int err) {
    if (err == EADDRINUSE) return lm_status(LUMEN_ALREADY_EXISTS, "cannot listen on %s: the port is in use", addr);
    if (err == EADDRNOTAVAIL)
        return lm_status(LUMEN_INVALID_ARGUMENT, "cannot listen on %s: %s is not an address of this machine", addr,
                         host);
    if (err == EACCES) return lm_status(LUMEN_PERMISSION_DENIED, "cannot listen on %s: permission denied", addr);
    return lm_status_errno(LUMEN_UNAVAILABLE, err, addr);
}

lumen_status lm_listener_open(const char *addr, const lm_listener_limits *limits, lm_listener **out) {
    *out = NULL;
    char host[256];
    uint16_t port = 0;
    lumen_status st = lm_parse_addr(addr, LM_CONFIG_PORT0, host, sizeof host, &port);
    if (!LM_IS_OK(st)) return st;
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *ai = NULL;
    int gai = getaddrinfo(host, service, &hints, &ai);
    if (gai != 0) return lm_status(LUMEN_INVALID_ARGUMENT, "cannot listen on %s: host \"%s\" does not resolve (%s)", addr,
                                   host, gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));

    lm_listener *l = calloc(1, sizeof *l);
    l->lim = fill_limits(limits);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wake = (source){SRC_WAKE, eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
    l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pthread_mutex_init(&l->mu, NULL);
    for (l->nbuckets = 16; l->nbuckets < 2 * (size_t)l->lim.max_connections;) l->nbuckets *= 2;
    l->buckets = calloc(l->nbuckets, sizeof *l->buckets);
    for (int i = 0; i < MAX_LISTEN_FDS; i++) l->lsrc[i] = (source){SRC_LISTEN, -1};

    int err = 0;
    for (const struct addrinfo *p = ai; p != NULL && l->nlisten < MAX_LISTEN_FDS; p = p->ai_next) {
        struct addrinfo one = *p;
        struct sockaddr_storage ss;
        memcpy(&ss, p->ai_addr, p->ai_addrlen);
        one.ai_addr = (struct sockaddr *)&ss;
        if (l->port != 0) { /* port 0: every address gets the port the first one picked */
            if (ss.ss_family == AF_INET) ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)l->port);
            else ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)l->port);
        }
        int fd = listen_on(&one, &err);
        if (fd < 0) continue;
        l->lsrc[l->nlisten++].fd = fd;
        if (l->port == 0) {
            struct sockaddr_storage bound;
            socklen_t len = sizeof bound;
            getsockname(fd, (struct sockaddr *)&bound, &len);
            l->port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                       : ((struct sockaddr_in6 *)&bound)->sin6_port);
        }
    }
    freeaddrinfo(ai);
    if (l->nlisten == 0) st = bind_error(addr, host, err);
    else if (l->epfd < 0 || l->wake.fd < 0 || l->buckets == NULL) st = lm_status_errno(LUMEN_INTERNAL, errno, "listener");
    for (int i = 0; LM_IS_OK(st) && i < l->nlisten; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->lsrc[i]};
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->lsrc[i].fd, &ev) != 0) st = lm_status_errno(LUMEN_INTERNAL, errno, "epoll");
    }
    struct epoll_event wev = {.events = EPOLLIN, .data.ptr = &l->wake};
    if (LM_IS_OK(st) && epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wake.fd, &wev) != 0)
        st = lm_status_errno(LUMEN_INTERNAL, errno, "epoll");
    if (!LM_IS_OK(st)) {
        lm_listener_free(l);
        return st;
    }
    *out = l;
    return lm_ok();
}

int lm_listener_port(const lm_listener *l) { return l->port; }

lm_listener_limits lm_listener_limits_of(const lm_listener *l) { return l->lim; }

lumen_status lm_listener_start(lm_listener *l, lm_listener_sink_fn sink, void *arg) {
    if (l->running) return lm_status(LUMEN_FAILED_PRECONDITION, "listener already started");
    l->sink = sink;
    l->sink_arg = arg;
    int err = pthread_create(&l->thread, NULL, listener_main, l);
    if (err != 0) return lm_status_errno(LUMEN_INTERNAL, err, "listener thread");
    l->running = true;
    return lm_ok();
}

void lm_listener_stop(lm_listener *l) {
    if (l == NULL || !l->running) return;
    pthread_mutex_lock(&l->mu);
    l->stopping = true;
    pthread_mutex_unlock(&l->mu);
    uint64_t one = 1;
    if (write(l->wake.fd, &one, sizeof one) < 0) { /* the counter is never near its limit */ }
    pthread_join(l->thread, NULL);
    l->running = false;
    /* The port closes (clients hear a refusal, not a silent backlog), and so
     * do connections the server never got. */
    for (int i = 0; i < l->nlisten; i++) {
        close(l->lsrc[i].fd);
        l->lsrc[i].fd = -1;
    }
    l->nlisten = 0;
    for (conn *c = l->all, *next; c != NULL; c = next) {
        next = c->anext;
        if (!c->handed) retire(l, c, true);
    }
    bury(l);
}

void lm_listener_free(lm_listener *l) {
    if (l == NULL) return;
    lm_listener_stop(l);
    while (l->all != NULL) retire(l, l->all, false);
    bury(l);
    for (int i = 0; i < l->nlisten; i++) close(l->lsrc[i].fd);
    if (l->wake.fd >= 0) close(l->wake.fd);
    if (l->epfd >= 0) close(l->epfd);
    if (l->reserve_fd >= 0) close(l->reserve_fd);
    free(l->buckets);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

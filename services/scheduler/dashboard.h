/*
 * dashboard.h - the scheduler's HTTP side (libmicrohttpd): the dashboard
 * page, the JSON API under /api/ (docs/api.md) and Prometheus /metrics.
 *
 * Served by libmicrohttpd's own threads (a small pool polling internally,
 * with connection limits and timeouts); a request reads Redis through the
 * indexes of cluster_view.h and the scheduler's memory through
 * scheduler_stats, never the RPC path's locks for longer than a copy.
 *
 * With a cluster token every path asks for it: `Authorization: Bearer
 * <token>` (scripts, Prometheus), or once in the page's URL (/?token=...)
 * or its login form, which sets an HttpOnly session cookie. Anything else
 * is 401.
 */
#ifndef LM_DASHBOARD_H
#define LM_DASHBOARD_H

#include "config.h"
#include "rpc.h"
#include "scheduler.h"

typedef struct dashboard dashboard;

/* Listens on scheduler.dashboard_host:dashboard_port (port 0: any free
 * one). cfg, s and rpc (for its error counts; may be NULL) must outlive it. */
lumen_status dashboard_start(const lm_config *cfg, scheduler *s, lm_rpc_server *rpc, dashboard **out);

/* The port it listens on. */
int dashboard_port(const dashboard *d);

/* Stops the threads (requests in flight finish) and frees. NULL-safe. */
void dashboard_free(dashboard *d);

#endif

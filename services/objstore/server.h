/*
 * server.h - the lumen-objstore service: lumen.ObjectStore and lumen.Health
 * over a store (store.h), the object directory in Redis (dir_writer.h) and
 * membership in the cluster (node_agent.h).
 */
#ifndef LM_OBJSTORE_SERVER_H
#define LM_OBJSTORE_SERVER_H

#include "config.h"

typedef struct lm_objstore_server lm_objstore_server;

/* Creates the spill dir, binds, and starts serving; the scheduler and Redis
 * may come later (both are retried in the background). */
lumen_status lm_objstore_server_start(const lm_config *cfg, lm_objstore_server **out);

/* The address others reach this store at (host:port). */
const char *lm_objstore_server_addr(const lm_objstore_server *srv);

/* Answers parked Gets (UNAVAILABLE), lets calls in flight finish for up to
 * grace_ms, then stops everything and frees. NULL-safe. */
void lm_objstore_server_stop(lm_objstore_server *srv, int64_t grace_ms);

#endif

/*
 * node_agent.h - a worker's or object store's membership in the cluster:
 * registers with the scheduler, then heartbeats until freed. Runs in its own
 * thread; registration is retried with backoff while the scheduler is
 * unreachable, and repeated when the scheduler asks (it restarted). It also
 * keeps a WatchNode call open, so the scheduler learns of the node's death
 * from its broken connection at once (heartbeats are the fallback for a
 * node that hangs or a network that drops packets silently). When that
 * call breaks (the scheduler died), heartbeats probe for its return every
 * 100 ms doubling to the interval, so the node registers with a new
 * incarnation as soon as it listens.
 */
#ifndef LM_NODE_AGENT_H
#define LM_NODE_AGENT_H

#include <stdint.h>

#include "id.h"
#include "rpc.h"

typedef struct lm_node_agent lm_node_agent;

/* What a heartbeat reports, sampled by the agent each beat. */
typedef struct lm_node_load {
    uint32_t slots_free;
    uint32_t running;
    uint64_t bytes_used;
} lm_node_load;

/* What a worker holds, sent with every registration so that a scheduler
 * that restarted knows what runs where (arrays malloc'd by the callback,
 * freed by the agent). */
typedef struct lm_node_holdings {
    lm_id *tasks; /* queued or running */
    lm_id *task_jobs; /* tasks[i]'s job */
    size_t ntasks;
    lm_id *actors; /* hosted, with their incarnations */
    uint32_t *incarnations;
    size_t nactors;
} lm_node_holdings;

/* What the scheduler answered a registration. */
typedef struct lm_node_registration {
    uint32_t heartbeat_interval_ms;
    uint64_t inline_result_max;
    uint64_t epoch;       /* the scheduler's incarnation */
    const lm_id *drop;    /* held tasks placed elsewhere meanwhile: to drop */
    size_t ndrop;
} lm_node_registration;

typedef struct lm_node_agent_opts {
    lm_rpc_client *rpc;          /* not owned: its token and TLS make the agent's own client */
    const char *scheduler_addr;
    int64_t rpc_timeout_ms;
    lm_id node_id;
    const char *kind;            /* "worker" | "objstore" */
    const char *addr;            /* advertised host:port */
    uint32_t slots;
    uint64_t memory_limit;
    lm_id objstore_id;           /* workers: their object store (zero: none) */
    const char *objstore_addr;
    void (*sample)(void *arg, lm_node_load *load); /* may be NULL */
    void *sample_arg;
    /* Called (on the agent's thread) before each registration; may be NULL. */
    void (*holdings)(void *arg, lm_node_holdings *out);
    /* Called (on the agent's thread) after each successful registration
     * with what the scheduler answered; may be NULL. */
    void (*registered)(void *arg, const lm_node_registration *reg);
    void *registered_arg; /* for every callback */
    /* Called (on the agent's thread) when the scheduler says it declared
     * the node dead and ran its work elsewhere, before registering again;
     * may be NULL. */
    void (*declared_dead)(void *arg);
} lm_node_agent_opts;

/* Starts the agent's thread; strings in opts are copied. */
lumen_status lm_node_agent_start(const lm_node_agent_opts *opts, lm_node_agent **out);

/* True once the scheduler has accepted the node at least once. */
bool lm_node_agent_registered(lm_node_agent *agent);

/* Stops heartbeating (the scheduler will mark the node dead) and frees. */
void lm_node_agent_free(lm_node_agent *agent);

#endif

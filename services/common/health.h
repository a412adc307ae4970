/* health.h - the lumen.Health service every Lumen process answers. */
#ifndef LM_HEALTH_H
#define LM_HEALTH_H

#include <stdatomic.h>

#include "id.h"
#include "rpc.h"

/* What Check reports; owned by the service, must outlive its server. */
typedef struct lm_health {
    const char *role; /* "scheduler" | "objstore" | "worker" */
    lm_id node_id;
    atomic_bool serving;
} lm_health;

lumen_status lm_health_add_service(lm_rpc_server *srv, lm_health *health);

/* Asks addr's Health service; OK only when it answers SERVING. On success
 * *role (may be NULL) receives a copy of the role to free(), and *node_id
 * (may be NULL) the node's id. */
lumen_status lm_health_check(lm_rpc_client *cli, const char *addr, int64_t timeout_ms, char **role,
                             lm_id *node_id);

#endif

/* health.c - lumen.Health: liveness for probes, `lumen health`, tests. */
#include "health.h"

#include <stdlib.h>
#include <string.h>

#include "health.pb-c.h"

static void check(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    (void)msg;
    lm_health *h = ctx;
    Lumen__HealthCheckReply reply = LUMEN__HEALTH_CHECK_REPLY__INIT;
    reply.status = atomic_load(&h->serving) ? LUMEN__HEALTH_CHECK_REPLY__SERVING_STATUS__SERVING
                                            : LUMEN__HEALTH_CHECK_REPLY__SERVING_STATUS__NOT_SERVING;
    reply.role = (char *)h->role;
    reply.node_id.data = h->node_id.bytes;
    reply.node_id.len = sizeof h->node_id.bytes;
    reply.version = (char *)LUMEN_VERSION_STRING;
    lm_rpc_reply(call, &reply.base);
}

static const lm_rpc_method_impl health_methods[] = {
    {"Check", LM_RPC_UNARY, check},
    {NULL, 0, NULL},
};

lumen_status lm_health_add_service(lm_rpc_server *srv, lm_health *health) {
    return lm_rpc_server_add_service(srv, &lumen__health__descriptor, health_methods, health);
}

lumen_status lm_health_check(lm_rpc_client *cli, const char *addr, int64_t timeout_ms, char **role,
                             lm_id *node_id) {
    if (role != NULL) *role = NULL;
    lm_rpc_method check_method;
    lm_rpc_method_find(&lumen__health__descriptor, "Check", &check_method);
    Lumen__HealthCheckRequest req = LUMEN__HEALTH_CHECK_REQUEST__INIT;
    ProtobufCMessage *out = NULL;
    lumen_status st = lm_rpc_unary(cli, addr, check_method, &req.base, &out, timeout_ms);
    if (!LM_IS_OK(st)) return st;
    Lumen__HealthCheckReply *reply = (Lumen__HealthCheckReply *)out;
    if (reply->status != LUMEN__HEALTH_CHECK_REPLY__SERVING_STATUS__SERVING)
        st = lm_status(LUMEN_UNAVAILABLE, "%s: %s is not serving", addr, reply->role);
    else if (role != NULL)
        *role = strdup(reply->role);
    if (LM_IS_OK(st) && node_id != NULL && !lm_id_from_bytes(reply->node_id.data, reply->node_id.len, node_id))
        memset(node_id, 0, sizeof *node_id);
    lm_rpc_message_free(out);
    return st;
}

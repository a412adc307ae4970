/*
 * service_actors.c - the actors' methods of lumen.Scheduler (CreateActor,
 * GetActor, KillActor, ActorDied): checked and decoded here, decided in
 * actors.c.
 */
#include "input_limits.h"
#include "rpc.h"
#include "sched_internal.h"

void actors_handle_create(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    Lumen__CreateActorRequest *req = (Lumen__CreateActorRequest *)msg;
    Lumen__TaskSpec *spec = req->spec;
    lm_id id;
    if (spec == NULL || !id_field(spec->actor_id, &id) || spec->task_id.len != LM_ID_BYTES ||
        spec->job_id.len != LM_ID_BYTES) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "CreateActor needs a spec with 16-byte actor_id, task_id and job_id");
        return;
    }
    lumen_status limit = lm_limits_spec(spec);
    if (LM_IS_OK(limit)) limit = lm_limits_name(req->name, "actor name", true);
    if (!LM_IS_OK(limit)) {
        lm_rpc_fail_status(call, limit);
        return;
    }
    if (spec->method != NULL && spec->method[0] != '\0') {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "a constructor call has no method");
        return;
    }
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    actors_create(s, call, req, &out); /* may take req->spec */
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(s, &out);
}

void actors_handle_get(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    const Lumen__GetActorRequest *req = (const Lumen__GetActorRequest *)msg;
    lm_id id = {{0}};
    bool by_name = req->name[0] != '\0';
    if (!by_name && !id_field(req->actor_id, &id)) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "GetActor needs a 16-byte actor_id or a name");
        return;
    }
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    lumen_status st = actors_lookup(s, call, by_name ? req->name : NULL, id, req->after_incarnation, req->wait_ms, &out);
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(s, &out);
    if (!LM_IS_OK(st)) lm_rpc_fail_status(call, st);
}

void actors_handle_kill(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    const Lumen__KillActorRequest *req = (const Lumen__KillActorRequest *)msg;
    lm_id id;
    if (!id_field(req->actor_id, &id)) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "KillActor needs a 16-byte actor_id");
        return;
    }
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    bool found = actors_kill(s, id, &out);
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(s, &out);
    Lumen__KillActorReply reply = LUMEN__KILL_ACTOR_REPLY__INIT;
    reply.found = found;
    lm_rpc_reply(call, &reply.base);
}

void actors_handle_died(lm_rpc_call *call, const ProtobufCMessage *msg, void *ctx) {
    scheduler *s = ctx;
    const Lumen__ActorDiedRequest *req = (const Lumen__ActorDiedRequest *)msg;
    lm_id id, node;
    if (!id_field(req->actor_id, &id) || !id_field(req->node_id, &node)) {
        lm_rpc_fail(call, LUMEN_INVALID_ARGUMENT, "ActorDied needs a 16-byte actor_id and node_id");
        return;
    }
    const char *why = req->reason && req->reason->message[0] ? req->reason->message : "its process ended";
    outbox out = {0};
    pthread_mutex_lock(&s->mu);
    actors_died(s, id, node, req->incarnation, why, &out);
    pthread_mutex_unlock(&s->mu);
    sched_outbox_send(s, &out);
    Lumen__ActorDiedReply reply = LUMEN__ACTOR_DIED_REPLY__INIT;
    lm_rpc_reply(call, &reply.base);
}

/*
 * records.h - the cluster's records as the services write them and people
 * read them (redis_state.h stores them under the key layout it documents):
 * the words of their state fields, the records, and the event types. Pure
 * data: including it pulls in no Redis code, so the scheduler's engine
 * speaks of records without knowing where they go.
 */
#ifndef LM_RECORDS_H
#define LM_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "id.h"

/* ---- the words stored in state fields ---- */
typedef enum lm_node_kind { LM_NODE_WORKER, LM_NODE_OBJSTORE } lm_node_kind;
typedef enum lm_node_state { LM_NODE_ALIVE, LM_NODE_DEAD } lm_node_state;
typedef enum lm_task_state {
    LM_TASK_PENDING, LM_TASK_READY, LM_TASK_RUNNING, LM_TASK_FINISHED, LM_TASK_FAILED
} lm_task_state;
#define LM_TASK_STATES 5
typedef enum lm_obj_state { LM_OBJ_PENDING, LM_OBJ_READY, LM_OBJ_LOST, LM_OBJ_FAILED } lm_obj_state;
typedef enum lm_actor_state {
    LM_ACTOR_PENDING, LM_ACTOR_ALIVE, LM_ACTOR_RESTARTING, LM_ACTOR_DEAD
} lm_actor_state;
typedef enum lm_job_state { LM_JOB_RUNNING, LM_JOB_FINISHED } lm_job_state;

/* "worker", "ALIVE", "RUNNING", ...; "?" for a value out of range. */
const char *lm_node_kind_name(lm_node_kind kind);
const char *lm_node_state_name(lm_node_state state);
const char *lm_task_state_name(lm_task_state state);
const char *lm_obj_state_name(lm_obj_state state);
const char *lm_actor_state_name(lm_actor_state state);
const char *lm_job_state_name(lm_job_state state);
/* The reverse, ignoring case ("failed" is FAILED); false for another word. */
bool lm_node_kind_parse(const char *s, lm_node_kind *out);
bool lm_node_state_parse(const char *s, lm_node_state *out);
bool lm_task_state_parse(const char *s, lm_task_state *out);
bool lm_obj_state_parse(const char *s, lm_obj_state *out);
bool lm_actor_state_parse(const char *s, lm_actor_state *out);
bool lm_job_state_parse(const char *s, lm_job_state *out);

/* ---- nodes ---- */
typedef struct lm_node_record {
    lm_id id;
    lm_node_kind kind;
    const char *addr; /* host:port where others reach the node */
    uint32_t slots;   /* executor slots; 0 for an object store */
    uint32_t slots_free;
    lm_node_state state;
    uint64_t heartbeat_ms;
    uint64_t started_ms;
    uint64_t bytes_used; /* object store: bytes held */
    uint64_t memory_limit;
} lm_node_record;

/* ---- tasks ---- */
typedef struct lm_task_record {
    lm_id id;
    const char *fn; /* function name */
    lm_id job;
    lm_task_state state;
    lm_id worker; /* zero: not placed */
    uint32_t attempts;
    const char *error;     /* NULL: "" */
    uint64_t submitted_ms; /* 0: now */
    uint64_t finished_ms;  /* 0: not finished */
    const void *spec;      /* optional encoded spec (binary); NULL: field untouched */
    size_t spec_len;
} lm_task_record;

/* ---- objects ---- */
typedef struct lm_obj_record {
    lm_id id;
    uint64_t size;
    lm_obj_state state;
    lm_id task; /* that makes it; zero for a put */
    lm_id job;  /* non-zero: also added to <p>job:<job>:objs */
    const char *error; /* NULL: "" */
} lm_obj_record;

/* ---- actors ---- */
typedef struct lm_actor_record {
    lm_id id;
    const char *class_name; /* field "class" */
    lm_id worker;
    lm_actor_state state;
    uint32_t restarts;
    uint32_t incarnation;
    uint64_t calls;    /* method calls finished */
    const char *name;  /* NULL: "" (unnamed) */
    lm_id job;
    const char *error; /* why it is DEAD; NULL: "" */
} lm_actor_record;

/* ---- events: "<type> <id>[ <detail>]" on <p>events ---- */
#define LM_EVENT_OBJ_READY "obj_ready"     /* <obj> <store> */
#define LM_EVENT_NODE_JOINED "node_joined" /* <node> <addr> */
#define LM_EVENT_NODE_DIED "node_died"     /* <node> */
#define LM_EVENT_TASK_FAILED "task_failed" /* <task> [error] */

#endif

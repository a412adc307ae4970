/*
 * id.h - 128-bit ids of tasks, objects, actors, jobs and nodes.
 *
 * Printed as 32 lowercase hex digits (the form used in Redis keys and logs).
 * A task's result objects derive their ids from the task id and the return
 * index, so a re-run of a task writes the same object ids.
 */
#ifndef LM_ID_H
#define LM_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LM_ID_BYTES 16
#define LM_ID_HEX_LEN 32 /* without the terminating NUL */

typedef struct lm_id {
    uint8_t bytes[LM_ID_BYTES];
} lm_id;

/* A fresh random id (getrandom). The last 4 bytes are zero so that
 * lm_id_for_return() can number a task's results in them. */
lm_id lm_id_random(void);

/* The id of result number `index` of task `task`. */
lm_id lm_id_for_return(lm_id task, uint32_t index);
/* The task whose result `result` is. */
lm_id lm_id_task_of(lm_id result);

/* An id's hex form by value, for messages: lm_id_str(id).s */
typedef struct lm_id_text {
    char s[LM_ID_HEX_LEN + 1];
} lm_id_text;
lm_id_text lm_id_str(lm_id id);

/* out must hold LM_ID_HEX_LEN + 1 bytes; returns out. */
char *lm_id_to_hex(lm_id id, char *out);

/* Parses exactly 32 hex digits (either case); false on anything else. */
bool lm_id_from_hex(const char *hex, lm_id *out);

/* From raw bytes (a protobuf bytes field); false unless len == 16. */
bool lm_id_from_bytes(const void *data, size_t len, lm_id *out);

bool lm_id_equal(lm_id a, lm_id b);
bool lm_id_is_zero(lm_id id);
uint64_t lm_id_hash(lm_id id);

#endif

/*
 * logs.c - `lumen logs TASK_ID`: what a task (or an actor call, or an
 * actor's constructor) wrote to stdout and stderr, as the cluster keeps it
 * in Redis (<p>task:<id>:log, at most 64 KiB: the head, and a last line
 * saying how much was cut). Written behind the scheduler's hot path, so it
 * may trail the task's end by a few milliseconds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "id.h"

static cli_redis_flags f;

static const cli_flag logs_flags[] = {
    CLI_REDIS_FLAG_ROWS(f),
    {NULL, NULL, NULL, NULL},
};

static const cli_command logs_cmd = {
    "logs", "TASK_ID [--redis HOST:PORT] [--config FILE]",
    "Prints what task TASK_ID wrote to stdout and stderr (its first 64 KiB).",
    "TASK_ID is 32 hex digits, as in lumen:task:<id> keys; the id of a task's result\n"
    "(its last 8 digits not zero) names that task. Exits 1 when the task is unknown or\n"
    "wrote nothing.\n",
    logs_flags, 1,
};

int cli_cmd_logs(int argc, char **argv) {
    const char *args[1];
    size_t nargs;
    int rc = cli_parse(&logs_cmd, argc, argv, args, &nargs);
    if (rc >= 0) return rc;
    lm_id task;
    if (nargs != 1) return cli_bad_arg(&logs_cmd, "which task? (TASK_ID)");
    if (strlen(args[0]) != LM_ID_HEX_LEN || !lm_id_from_hex(args[0], &task))
        return cli_bad_arg(&logs_cmd, "TASK_ID is 32 hex digits, not \"%s\"", args[0]);
    memset(task.bytes + 12, 0, 4); /* a result's id is its task's id and a return number */
    cli_redis r;
    if ((rc = cli_redis_open(&logs_cmd, &f, &r)) >= 0) return rc;
    char *log = NULL;
    size_t len = 0;
    lumen_status st = lm_redis_task_log_get(r.redis, task, &log, &len);
    if (LM_IS_OK(st)) {
        fwrite(log, 1, len, stdout);
        if (log[len - 1] != '\n') putchar('\n'); /* a last line the task left open */
    } else {
        fprintf(stderr, "lumen logs: %s\n", st.msg);
    }
    free(log);
    cli_redis_close(&r);
    return LM_IS_OK(st) && fflush(stdout) == 0 ? 0 : 1;
}

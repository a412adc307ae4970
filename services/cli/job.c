/* job.c - `lumen job stop ID`: ends a job as if its client had closed it
 * (its tasks are cancelled, its objects freed, its actors stopped): a
 * detached job, or one whose client hangs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rpc.h"
#include "rundir.h"
#include "scheduler.pb-c.h"

static struct {
    const char *address, *token, *run_dir;
} f;

static const cli_flag job_flags[] = {
    {"address", "HOST:PORT", "the scheduler (default $LUMEN_ADDRESS, else the run dir's, else 127.0.0.1:7400)",
     &f.address},
    {"token", "T", "the cluster's token (default $LUMEN_TOKEN, else the run dir's token file)", &f.token},
    {"run-dir", "DIR", "the run dir of `lumen start` (default $LUMEN_RUN_DIR, else /tmp/lumen-<uid>)", &f.run_dir},
    {NULL, NULL, NULL, NULL},
};

static const cli_command job_cmd = {
    "job", "stop JOB_ID [--address HOST:PORT] [--token T]",
    "stop JOB_ID: ends the job (32 hex digits, as `lumen status` and lumen_job_id show it) as if its\n"
    "client had closed it: its tasks are cancelled, its objects freed, its actors stopped.",
    NULL, job_flags, 2,
};

/* The scheduler's address: --address, $LUMEN_ADDRESS, the run dir's, the default. */
static void scheduler_address(const char *run_dir, char *out, size_t cap) {
    const char *env = getenv("LUMEN_ADDRESS");
    if (f.address != NULL) snprintf(out, cap, "%s", f.address);
    else if (env != NULL && env[0] != '\0') snprintf(out, cap, "%s", env);
    else if (!lm_run_dir_read(run_dir, "address", out, cap)) snprintf(out, cap, "127.0.0.1:7400");
}

int cli_cmd_job(int argc, char **argv) {
    const char *args[2];
    size_t nargs;
    int rc = cli_parse(&job_cmd, argc, argv, args, &nargs);
    if (rc >= 0) return rc;
    if (nargs != 2 || strcmp(args[0], "stop") != 0) return cli_bad_arg(&job_cmd, "usage: lumen job stop JOB_ID");
    lm_id job;
    if (!lm_id_from_hex(args[1], &job)) return cli_bad_arg(&job_cmd, "a job id is 32 hex digits, not \"%s\"", args[1]);
    const char *run_dir = cli_run_dir(f.run_dir);
    char addr[300];
    scheduler_address(run_dir, addr, sizeof addr);
    char *token = cli_token(f.token, run_dir);
    lm_rpc_init();
    lm_rpc_client *cli = NULL;
    lumen_status st = cli_rpc_client_new(token, &cli);
    lm_rpc_method end;
    lm_rpc_method_find(&lumen__scheduler__descriptor, "EndJob", &end);
    Lumen__JobRequest req = LUMEN__JOB_REQUEST__INIT;
    req.job_id = (ProtobufCBinaryData){LM_ID_BYTES, job.bytes};
    ProtobufCMessage *reply = NULL;
    if (LM_IS_OK(st)) st = lm_rpc_unary(cli, addr, end, &req.base, &reply, 10000);
    lm_rpc_message_free(reply);
    if (LM_IS_OK(st)) printf("job %s stopped\n", args[1]);
    else fprintf(stderr, "lumen job stop: %s: %s\n", addr, st.msg);
    lm_rpc_client_free(cli);
    lm_rpc_shutdown();
    free(token);
    return LM_IS_OK(st) ? 0 : 1;
}

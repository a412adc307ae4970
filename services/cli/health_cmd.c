/* health_cmd.c - `lumen health ADDR`: is the service at ADDR serving? For
 * scripts and container HEALTHCHECKs: exit 0 when it answers SERVING. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "config.h"
#include "health.h"
#include "rpc.h"

static struct {
    const char *token, *timeout, *run_dir;
} f;

static const cli_flag health_flags[] = {
    {"token", "T", "the cluster's token (default $LUMEN_TOKEN, else the run dir's token file)", &f.token},
    {"timeout", "SECONDS", "how long to wait for the answer (default 5)", &f.timeout},
    {"run-dir", "DIR", "where `lumen start` left the token (default $LUMEN_RUN_DIR, else /tmp/lumen-<uid>)",
     &f.run_dir},
    {NULL, NULL, NULL, NULL},
};

static const cli_command health_cmd = {
    "health", "HOST:PORT [--token T] [--timeout SECONDS]",
    "Asks the Lumen service at HOST:PORT whether it is serving; prints its role and node id.\n"
    "Exit status: 0 serving, 1 not serving or unreachable, 2 bad arguments.",
    "TLS: the certificate files of LUMEN_TLS_CA, LUMEN_TLS_CERT and LUMEN_TLS_KEY.\n", health_flags, 1,
};

int cli_cmd_health(int argc, char **argv) {
    const char *args[1];
    size_t nargs;
    int rc = cli_parse(&health_cmd, argc, argv, args, &nargs);
    if (rc >= 0) return rc;
    if (nargs != 1) return cli_bad_arg(&health_cmd, "which service? Give its HOST:PORT");
    if (!LM_IS_OK(lm_parse_addr(args[0], 0, NULL, 0, NULL)))
        return cli_bad_arg(&health_cmd, "HOST:PORT wanted, not \"%s\"", args[0]);
    long timeout_s = 5;
    if (f.timeout != NULL && !cli_parse_int(f.timeout, 1, 3600, &timeout_s))
        return cli_bad_arg(&health_cmd, "--timeout wants seconds (1..3600), not \"%s\"", f.timeout);

    char *token = cli_token(f.token, cli_run_dir(f.run_dir));
    lm_rpc_init();
    lm_rpc_client *cli = NULL;
    char *role = NULL;
    lm_id node;
    lumen_status st = cli_rpc_client_new(token, &cli);
    if (LM_IS_OK(st)) st = lm_health_check(cli, args[0], timeout_s * 1000, &role, &node);
    if (LM_IS_OK(st)) {
        char hex[LM_ID_HEX_LEN + 1];
        printf("%s: %s SERVING (node %s)\n", args[0], role, lm_id_is_zero(node) ? "-" : lm_id_to_hex(node, hex));
    } else {
        fprintf(stderr, "lumen health: %s: %s%s\n", args[0], st.msg,
                st.code == LUMEN_UNAUTHENTICATED ? " (give it with --token, LUMEN_TOKEN or --run-dir)" : "");
    }
    free(role);
    lm_rpc_client_free(cli);
    lm_rpc_shutdown();
    free(token);
    return LM_IS_OK(st) ? 0 : 1;
}

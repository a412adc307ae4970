/* auth.c - the cluster's token and the CLI's own RPC client; see cli.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cli.h"
#include "config.h"

lumen_status cli_token_new(char **out) {
    unsigned char raw[CLI_TOKEN_BYTES];
    for (size_t got = 0; got < sizeof raw;) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return lm_status_errno(LUMEN_INTERNAL, errno, "getrandom");
        got += (size_t)n;
    }
    char *hex = malloc(2 * sizeof raw + 1);
    if (hex == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < sizeof raw; i++) snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    *out = hex;
    return lm_ok();
}

bool cli_token_valid(const char *token) {
    /* It travels in an HTTP/2 header and sits on one line of a file. */
    size_t len = strlen(token);
    for (size_t i = 0; i < len; i++)
        if (token[i] <= ' ' || token[i] > '~') return false;
    return len <= CLI_TOKEN_MAX;
}

lumen_status cli_rpc_client_new(const char *token, lm_rpc_client **out) {
    lm_config cfg;
    lumen_status st = lm_config_load(NULL, &cfg);
    if (!LM_IS_OK(st)) return st;
    const lm_cluster_config *cc = &cfg.cluster;
    lm_rpc_client_opts opts = {.token = token, .tls = {cc->tls_cert, cc->tls_key, cc->tls_ca}};
    st = lm_rpc_client_new(&opts, out); /* reads the PEM files now */
    lm_config_free(&cfg);
    return st;
}

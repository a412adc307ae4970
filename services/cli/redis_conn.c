/* redis_conn.c - the cluster's Redis for commands that read it; see cli.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_redis_open(const cli_command *cmd, const cli_redis_flags *f, cli_redis *out) {
    out->redis = NULL;
    if (f->redis != NULL && !LM_IS_OK(lm_parse_addr(f->redis, 0, NULL, 0, NULL)))
        return cli_bad_arg(cmd, "--redis wants HOST:PORT, not \"%s\"", f->redis);
    lumen_status st = lm_config_load(f->config, &out->cfg);
    if (!LM_IS_OK(st)) {
        fprintf(stderr, "lumen %s: %s\n", cmd->name, st.msg);
        return 2;
    }
    /* The flag, else an explicit setting (env or file), else the Redis this
     * machine's `lumen start` used, else the default. */
    const char *env = getenv("LUMEN_REDIS_ADDR");
    char from_run_dir[sizeof out->addr];
    const char *addr = out->cfg.cluster.redis_addr;
    if (f->redis != NULL) addr = f->redis;
    else if ((env == NULL || env[0] == '\0') && f->config == NULL &&
             cli_read_file(cli_run_dir(f->run_dir), "redis", from_run_dir, sizeof from_run_dir))
        addr = from_run_dir;
    snprintf(out->addr, sizeof out->addr, "%s", addr);
    char saved[256];
    if (out->cfg.cluster.redis_password[0] == '\0' &&
        cli_redis_password_of(cli_run_dir(f->run_dir), out->addr, saved, sizeof saved))
        st = lm_config_set(&out->cfg, "cluster", "redis_password", saved);

    lm_redis_opts ropts = {.addr = out->addr, .password = out->cfg.cluster.redis_password,
                           .prefix = out->cfg.cluster.key_prefix};
    if (LM_IS_OK(st)) st = lm_redis_connect(&ropts, &out->redis);
    if (!LM_IS_OK(st)) {
        fprintf(stderr, "lumen %s: %s\n", cmd->name, st.msg);
        lm_config_free(&out->cfg);
        return 1;
    }
    return -1;
}

bool cli_redis_password_of(const char *run_dir, const char *addr, char *out, size_t cap) {
    char started[300];
    return cli_read_file(run_dir, "redis", started, sizeof started) && strcmp(started, addr) == 0 &&
           cli_read_file(run_dir, "redis_password", out, cap);
}

void cli_redis_close(cli_redis *r) {
    if (r->redis == NULL) return;
    lm_redis_free(r->redis);
    lm_config_free(&r->cfg);
    r->redis = NULL;
}

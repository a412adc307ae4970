/* stop.c - `lumen stop`: stops what `lumen start` runs on this machine. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static struct {
    const char *run_dir, *timeout;
} f;

static const cli_flag stop_flags[] = {
    {"run-dir", "DIR", "the run dir of `lumen start` (default $LUMEN_RUN_DIR, else /tmp/lumen-<uid>)",
     &f.run_dir},
    {"timeout", "SECONDS", "how long each process may take to exit before SIGKILL (default 10)", &f.timeout},
    {NULL, NULL, NULL, NULL},
};

static const cli_command stop_cmd = {
    "stop", "[--run-dir DIR] [--timeout SECONDS]",
    "Stops every process `lumen start` began on this machine (from the run dir's pid files): its\n"
    "supervisor first (it would start them again), then workers and object stores, then the scheduler,\n"
    "then Redis; then removes the token and Redis password files.",
    NULL, stop_flags, 0,
};

/* The supervisors first (they would start the others again), then
 * clients first and what they depend on last: a worker still running when
 * the scheduler goes would only log reconnect noise. */
static int tier(const char *name) {
    if (strncmp(name, "supervisor-", 11) == 0) return 0;
    if (strncmp(name, "scheduler-", 10) == 0) return 2;
    if (strncmp(name, "redis-", 6) == 0) return 3;
    return 1;
}

/* The secrets the services were started with (secrets-<pid>/). */
static void remove_secrets(const char *run_dir) {
    DIR *d = opendir(run_dir);
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, "secrets-", 8) != 0) continue;
        char rel[300];
        snprintf(rel, sizeof rel, "%s/token", e->d_name);
        cli_remove_file(run_dir, rel);
        snprintf(rel, sizeof rel, "%s/redis_password", e->d_name);
        cli_remove_file(run_dir, rel);
        snprintf(rel, sizeof rel, "%s/%s", run_dir, e->d_name);
        rmdir(rel);
    }
    if (d != NULL) closedir(d);
}

int cli_cmd_stop(int argc, char **argv) {
    size_t nargs;
    int rc = cli_parse(&stop_cmd, argc, argv, NULL, &nargs);
    if (rc >= 0) return rc;
    long timeout_s = 10;
    if (f.timeout != NULL && !cli_parse_int(f.timeout, 0, 3600, &timeout_s))
        return cli_bad_arg(&stop_cmd, "--timeout wants seconds (0..3600), not \"%s\"", f.timeout);
    const char *run_dir = cli_run_dir(f.run_dir);

    cli_proc *procs;
    size_t n;
    lumen_status st = cli_pidfiles_read(run_dir, &procs, &n);
    if (!LM_IS_OK(st)) {
        fprintf(stderr, "lumen stop: %s\n", st.msg);
        return 1;
    }
    size_t stopped = 0;
    /* Ours or not is decided once, before anything is signalled. */
    bool *alive = calloc(n ? n : 1, sizeof *alive);
    for (size_t i = 0; alive != NULL && i < n; i++) alive[i] = cli_proc_alive(&procs[i]);
    for (int t = 0; alive != NULL && t <= 3; t++) {
        /* SIGTERM the whole tier at once, then wait for each: shutdowns
         * overlap instead of adding up. */
        for (size_t i = 0; i < n; i++)
            if (tier(procs[i].name) == t && alive[i]) kill(procs[i].pid, SIGTERM);
        for (size_t i = 0; i < n; i++) {
            cli_proc *p = &procs[i];
            if (tier(p->name) != t) continue;
            if (alive[i]) {
                bool killed = cli_proc_stop(p, timeout_s * 1000);
                printf("stopped %-16s pid %d%s\n", p->name, (int)p->pid,
                       killed ? " (killed: it did not exit on SIGTERM)" : "");
                stopped++;
            } else {
                printf("%-16s was not running (pid file removed)\n", p->name);
            }
            cli_pidfile_remove(run_dir, p->name);
        }
    }
    free(alive);
    free(procs);
    /* The token of a cluster gone is of no use, and a secret the fewer. */
    cli_remove_file(run_dir, "token");
    cli_remove_file(run_dir, "redis_password");
    remove_secrets(run_dir);
    if (n == 0) printf("nothing to stop in %s\n", run_dir);
    else printf("stopped %zu process(es) in %s\n", stopped, run_dir);
    return 0;
}

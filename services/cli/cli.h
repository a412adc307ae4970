/*
 * cli.h - the `lumen` command line tool's internals (cli_ prefix).
 *
 * Commands return the process exit code: 0 done, 1 failed, 2 bad arguments.
 * Only start.c forks, and it does so before anything initialises gRPC (a
 * process that forks must not have gRPC's threads): health checks run after
 * the last fork.
 */
#ifndef LM_CLI_H
#define LM_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "config.h"
#include "redis_state.h"
#include "rpc.h"
#include "status.h"

/* ---- arguments (args.c) ---- */

/* One --flag of a command. A switch (arg == NULL) stores "1" in *value. */
typedef struct cli_flag {
    const char *name; /* without the dashes */
    const char *arg;  /* the value's placeholder in help ("PORT"); NULL: a switch */
    const char *help;
    const char **value;
} cli_flag;

typedef struct cli_command {
    const char *name;
    const char *usage;   /* after "lumen <name> " */
    const char *summary; /* one line */
    const char *details; /* printed after the flags; may be NULL */
    const cli_flag *flags; /* ends with {NULL} */
    size_t max_args;       /* positional arguments accepted */
} cli_command;

/* Parses argv (argv[0] is the command's name) into the flags' values and
 * up to cmd->max_args positional arguments. Returns -1 to go on, 0 after
 * printing --help, 2 after printing what is wrong. */
int cli_parse(const cli_command *cmd, int argc, char **argv, const char **args, size_t *nargs);
void cli_usage(const cli_command *cmd, FILE *f);

/* Prints "lumen <cmd>: <message> (see lumen <cmd> --help)" and returns 2. */
int cli_bad_arg(const cli_command *cmd, const char *fmt, ...) LM_PRINTF(2, 3);

/* Validators for flag values; false when text is not one. */
bool cli_parse_port(const char *text, uint16_t *out);
bool cli_parse_int(const char *text, long min, long max, long *out);

/* ---- the run dir (rundir.c) ---- */

/* --run-dir, else $LUMEN_RUN_DIR, else /tmp/lumen-<uid>; static storage. */
const char *cli_run_dir(const char *flag);

/* The token services and clients use: the flag, else $LUMEN_TOKEN, else
 * the run dir's token file (written by `lumen start`), else "" (none).
 * Returns a malloc'ed string. */
char *cli_token(const char *flag, const char *run_dir);

/* The run dir is a directory of ours that no one else may write to: the
 * token is written there, and others must not swap files under it. */
lumen_status cli_run_dir_check(const char *run_dir);

/* Small files in the run dir: "<run_dir>/<name>" holding one line, created
 * with exactly `mode` (never through a link or a file left there). */
lumen_status cli_write_file(const char *run_dir, const char *name, const char *text, mode_t mode);
bool cli_read_file(const char *run_dir, const char *name, char *out, size_t cap);
void cli_remove_file(const char *run_dir, const char *name);

/* ---- the cluster's token and the CLI's RPC client (auth.c) ---- */

#define CLI_TOKEN_BYTES 32 /* random bytes of a generated token (64 hex digits) */
#define CLI_TOKEN_MAX 200  /* longest token accepted (the run dir's reader keeps 255) */

/* A new random token (getrandom): CLI_TOKEN_BYTES as hex; free(*out). */
lumen_status cli_token_new(char **out);

/* Printable ASCII without spaces, at most CLI_TOKEN_MAX characters. */
bool cli_token_valid(const char *token);

/* An RPC client carrying token (may be "") and the TLS material of the
 * configuration in the environment (LUMEN_TLS_CERT, _KEY, _CA). */
lumen_status cli_rpc_client_new(const char *token, lm_rpc_client **out);

/* A process `lumen start` runs in the background, known by its pid file
 * <run_dir>/pids/<name>.pid ("<pid> <start time in clock ticks>"). */
typedef struct cli_proc {
    char name[64]; /* "scheduler-7400", "worker-7402", ... */
    pid_t pid;
    unsigned long long start_ticks;
} cli_proc;

/* The process's start time from /proc (0 when it is gone or a zombie). */
unsigned long long cli_proc_start_ticks(pid_t pid);

/* True while the process of the record still runs (same start time: a
 * recycled pid is not ours). */
bool cli_proc_alive(const cli_proc *p);

lumen_status cli_pidfile_write(const char *run_dir, const cli_proc *p);
void cli_pidfile_remove(const char *run_dir, const char *name);

/* Every pid file in the run dir; free(*procs). */
lumen_status cli_pidfiles_read(const char *run_dir, cli_proc **procs, size_t *n);

/* SIGTERM, then SIGKILL to its whole process group after timeout_ms.
 * Only for a process that was ours a moment ago (cli_proc_alive): its group
 * is signalled even when the leader is gone. Returns true when it had to
 * use SIGKILL. */
bool cli_proc_stop(const cli_proc *p, int64_t timeout_ms);

/* ---- the supervisor of what `lumen start` runs (supervise.c) ---- */

typedef struct cli_supervisor {
    cli_proc proc;        /* its pid file: supervisor-<id> */
    int orders, answers;  /* start's ends of its pipes */
} cli_supervisor;

/* Forks the supervisor (before gRPC is initialised); id names it in the run dir. */
lumen_status cli_supervisor_fork(const char *run_dir, const char *id, cli_supervisor *out);
/* Has the supervisor start argv (its child: output to log, pid file name);
 * *pid gets its pid. */
lumen_status cli_supervisor_spawn(cli_supervisor *sv, const char *name, const char *log, char *const argv[],
                                  pid_t *pid);
/* Start is done: supervise (restart what dies) from now on, or leave. */
void cli_supervisor_release(cli_supervisor *sv, bool supervise);
/* How often the supervisors of the run dir restarted process `name`. */
bool cli_supervisor_restarts(const char *run_dir, const char *name, unsigned *restarts);

/* The last lines of a log file, indented, to stderr. */
void cli_print_log_tail(const char *path, int lines);

/* ---- the cluster's Redis, for commands that read it (redis_conn.c) ---- */

typedef struct cli_redis_flags {
    const char *redis, *run_dir, *config;
} cli_redis_flags;

/* The three cli_flag rows of a cli_redis_flags f (a static struct). */
#define CLI_REDIS_FLAG_ROWS(f)                                                                              \
    {"redis", "HOST:PORT", "the cluster's Redis (default: $LUMEN_REDIS_ADDR, else the one `lumen start` "  \
                           "used in the run dir, else 127.0.0.1:6379)", &(f).redis},                        \
    {"run-dir", "DIR", "the run dir of `lumen start` (default $LUMEN_RUN_DIR, else /tmp/lumen-<uid>)",       \
     &(f).run_dir},                                                                                         \
    {"config", "FILE", "read redis_addr, redis_password and key_prefix from this lumen.cfg", &(f).config}

typedef struct cli_redis {
    lm_config cfg; /* the key prefix and password came from here */
    char addr[300];
    lm_redis *redis;
} cli_redis;

/* Connects to the cluster's Redis: --redis, else an explicit setting (the
 * environment or the --config file), else the one this machine's `lumen
 * start` used (its run dir), else the default; with the configured
 * password, else the one `lumen start` keeps for that Redis. Returns -1 when connected
 * (close with cli_redis_close), else the exit code after saying why: 2 bad
 * arguments or configuration, 1 Redis not reachable. */
int cli_redis_open(const cli_command *cmd, const cli_redis_flags *f, cli_redis *out);

/* The password this machine's `lumen start` keeps (<run_dir>/redis_password)
 * for the Redis at addr, the one it started: false for any other Redis. */
bool cli_redis_password_of(const char *run_dir, const char *addr, char *out, size_t cap);
void cli_redis_close(cli_redis *r);

/* ---- commands ---- */
int cli_cmd_start(int argc, char **argv);
int cli_cmd_stop(int argc, char **argv);
int cli_cmd_status(int argc, char **argv);
int cli_cmd_health(int argc, char **argv);
int cli_cmd_logs(int argc, char **argv);
int cli_cmd_job(int argc, char **argv);
int cli_cmd_tasks(int argc, char **argv);   /* list.c */
int cli_cmd_actors(int argc, char **argv);
int cli_cmd_objects(int argc, char **argv);

#endif

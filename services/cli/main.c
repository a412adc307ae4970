/*
 * main.c - `lumen`, the command line tool: starts and stops this machine's
 * part of a cluster, shows the cluster's state, checks a service's health.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "process.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"start", cli_cmd_start, "start a cluster here (--head) or join one (--address HOST:PORT)"},
    {"stop", cli_cmd_stop, "stop what `lumen start` runs on this machine"},
    {"status", cli_cmd_status, "show nodes, tasks, objects and jobs from the cluster's Redis"},
    {"health", cli_cmd_health, "check that the service at HOST:PORT is serving (exit 0)"},
    {"tasks", cli_cmd_tasks, "list tasks (filters: --state, --job, --fn), newest first"},
    {"actors", cli_cmd_actors, "list actors (filters: --state, --job)"},
    {"objects", cli_cmd_objects, "list the object records of running jobs (filters: --state, --job)"},
    {"logs", cli_cmd_logs, "print what task TASK_ID wrote to stdout and stderr"},
    {"job", cli_cmd_job, "stop JOB_ID: end a job (a detached one, or one whose client hangs)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: lumen COMMAND [options]     (lumen COMMAND --help for its options)\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nlumen %s\n", LUMEN_VERSION_STRING);
}

int main(int argc, char **argv) {
    lm_process_init("lumen");
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        if (argc >= 3 && strcmp(argv[1], "help") == 0) {
            char *help[] = {argv[2], "--help", NULL};
            for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
                if (strcmp(argv[2], commands[i].name) == 0) return commands[i].run(2, help);
        }
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("lumen %s\n", LUMEN_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "lumen: unknown command \"%s\" (see lumen --help)\n", argv[1]);
    return 2;
}

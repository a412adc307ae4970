/* args.c - command-line flags of the `lumen` commands; see cli.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cli_usage(const cli_command *cmd, FILE *f) {
    fprintf(f, "usage: lumen %s %s\n%s\n", cmd->name, cmd->usage, cmd->summary);
    if (cmd->flags[0].name != NULL) fprintf(f, "\nOptions:\n");
    for (const cli_flag *fl = cmd->flags; fl->name != NULL; fl++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", fl->name, fl->arg ? " " : "", fl->arg ? fl->arg : "");
        fprintf(f, "  %-26s %s\n", left, fl->help);
    }
    if (cmd->details != NULL) fprintf(f, "\n%s", cmd->details);
}

int cli_bad_arg(const cli_command *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lumen %s: ", cmd->name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see lumen %s --help)\n", cmd->name);
    va_end(ap);
    return 2;
}

static const cli_flag *find_flag(const cli_command *cmd, const char *name, size_t len) {
    for (const cli_flag *fl = cmd->flags; fl->name != NULL; fl++)
        if (strlen(fl->name) == len && strncmp(fl->name, name, len) == 0) return fl;
    return NULL;
}

int cli_parse(const cli_command *cmd, int argc, char **argv, const char **args, size_t *nargs) {
    *nargs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cli_usage(cmd, stdout);
            return 0;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (*nargs == cmd->max_args) return cli_bad_arg(cmd, "unexpected argument \"%s\"", a);
            args[(*nargs)++] = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        const cli_flag *fl = find_flag(cmd, a + 2, len);
        if (fl == NULL) return cli_bad_arg(cmd, "unknown option --%.*s", (int)len, a + 2);
        if (fl->arg == NULL) {
            if (eq != NULL) return cli_bad_arg(cmd, "--%s takes no value", fl->name);
            *fl->value = "1";
        } else if (eq != NULL) {
            *fl->value = eq + 1;
        } else if (i + 1 < argc) {
            *fl->value = argv[++i];
        } else {
            return cli_bad_arg(cmd, "--%s needs a value (%s)", fl->name, fl->arg);
        }
    }
    return -1;
}

bool cli_parse_int(const char *text, long min, long max, long *out) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) return false;
    *out = v;
    return true;
}

bool cli_parse_port(const char *text, uint16_t *out) {
    long v;
    if (!cli_parse_int(text, 1, 65535, &v)) return false;
    *out = (uint16_t)v;
    return true;
}

/* rundir.c - the run dir of `lumen start`: pid files, token, logs; see cli.h. */
#include "clock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "rundir.h"

const char *cli_run_dir(const char *flag) {
    static char dir[512];
    lm_run_dir(flag, dir, sizeof dir);
    return dir;
}

char *cli_token(const char *flag, const char *run_dir) { return lm_cluster_token(flag, run_dir); }

static void path_of(char *out, size_t cap, const char *run_dir, const char *name) {
    snprintf(out, cap, "%s/%s", run_dir, name);
}

lumen_status cli_run_dir_check(const char *run_dir) {
    struct stat st;
    if (lstat(run_dir, &st) != 0) return lm_status_errno(LUMEN_IO, errno, run_dir);
    if (!S_ISDIR(st.st_mode)) return lm_status(LUMEN_FAILED_PRECONDITION, "run dir %s is not a directory", run_dir);
    if (st.st_uid != geteuid())
        return lm_status(LUMEN_FAILED_PRECONDITION, "run dir %s belongs to uid %u, not to you: pick another --run-dir",
                         run_dir, (unsigned)st.st_uid);
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return lm_status(LUMEN_FAILED_PRECONDITION, "run dir %s is writable by others (chmod go-w %s)", run_dir,
                         run_dir);
    return lm_ok();
}

lumen_status cli_write_file(const char *run_dir, const char *name, const char *text, mode_t mode) {
    char path[768], tmp[800];
    path_of(path, sizeof path, run_dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    /* Written whole, then renamed: a reader never sees half a file. A fresh
     * file (O_EXCL, no link followed) gets exactly `mode`, whatever was left
     * under the name before. */
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) return lm_status_errno(LUMEN_IO, errno, tmp);
    size_t len = strlen(text);
    bool ok = fchmod(fd, mode) == 0 && write(fd, text, len) == (ssize_t)len && write(fd, "\n", 1) == 1;
    int err = errno;
    if (close(fd) != 0 && ok) ok = false, err = errno;
    if (!ok || rename(tmp, path) != 0) {
        if (ok) err = errno;
        unlink(tmp);
        return lm_status_errno(LUMEN_IO, err, path);
    }
    return lm_ok();
}

void cli_remove_file(const char *run_dir, const char *name) {
    char path[768];
    path_of(path, sizeof path, run_dir, name);
    unlink(path);
}

bool cli_read_file(const char *run_dir, const char *name, char *out, size_t cap) {
    return lm_run_dir_read(run_dir, name, out, cap);
}

unsigned long long cli_proc_start_ticks(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) state ..." where comm may hold anything: parse after the
     * last ')'. starttime is field 22; state is field 3. */
    char *p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ') return 0;
    char state = p[2];
    if (state == 'Z' || state == 'X') return 0; /* exited, waiting to be reaped */
    p += 2;
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (p == NULL) return 0;
        p++;
    }
    return strtoull(p, NULL, 10);
}

bool cli_proc_alive(const cli_proc *p) {
    unsigned long long t = cli_proc_start_ticks(p->pid);
    return t != 0 && t == p->start_ticks;
}

lumen_status cli_pidfile_write(const char *run_dir, const cli_proc *p) {
    char rel[128], text[64];
    snprintf(rel, sizeof rel, "pids/%s.pid", p->name);
    snprintf(text, sizeof text, "%d %llu", (int)p->pid, p->start_ticks);
    return cli_write_file(run_dir, rel, text, 0644);
}

void cli_pidfile_remove(const char *run_dir, const char *name) {
    char path[800];
    snprintf(path, sizeof path, "%s/pids/%s.pid", run_dir, name);
    unlink(path);
}

lumen_status cli_pidfiles_read(const char *run_dir, cli_proc **procs, size_t *n) {
    *procs = NULL;
    *n = 0;
    char dir[600];
    path_of(dir, sizeof dir, run_dir, "pids");
    DIR *d = opendir(dir);
    if (d == NULL) return errno == ENOENT ? lm_ok() : lm_status_errno(LUMEN_IO, errno, dir);
    size_t cap = 0;
    lumen_status st = lm_ok();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 4 || len - 4 >= sizeof((cli_proc *)0)->name || strcmp(e->d_name + len - 4, ".pid") != 0)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            cli_proc *grown = realloc(*procs, cap * sizeof **procs);
            if (grown == NULL) {
                st = lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
                break;
            }
            *procs = grown;
        }
        cli_proc *p = &(*procs)[*n];
        memset(p, 0, sizeof *p);
        snprintf(p->name, sizeof p->name, "%.*s", (int)(len - 4), e->d_name);
        char rel[sizeof e->d_name + 8], text[64];
        snprintf(rel, sizeof rel, "pids/%s", e->d_name);
        int pid = 0;
        if (!cli_read_file(run_dir, rel, text, sizeof text) || sscanf(text, "%d %llu", &pid, &p->start_ticks) != 2 ||
            pid <= 1) {
            /* Unreadable: a start that died half-way. Listed with pid 0 so
             * stop removes it. */
            pid = 0;
        }
        p->pid = pid;
        (*n)++;
    }
    closedir(d);
    return st;
}

static bool wait_gone(const cli_proc *p, int64_t timeout_ms) {
    for (int64_t waited = 0; cli_proc_alive(p); waited += 20) {
        if (waited >= timeout_ms) return false;
        lm_sleep_ms(20);
    }
    return true;
}

bool cli_proc_stop(const cli_proc *p, int64_t timeout_ms) {
    if (p->pid <= 1) return false;
    if (cli_proc_alive(p)) kill(p->pid, SIGTERM);
    bool killed = !wait_gone(p, timeout_ms);
    if (killed && cli_proc_alive(p)) kill(p->pid, SIGKILL);
    /* Each service leads its own process group (setsid): whatever it left
     * behind (executors) goes with it. The group id cannot be reused while
     * any member lives, so this reaches nothing else. */
    kill(-p->pid, SIGKILL);
    wait_gone(p, 2000);
    return killed;
}

void cli_print_log_tail(const char *path, int lines) {
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        fprintf(stderr, "    (no log at %s)\n", path);
        return;
    }
    char buf[8192];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *start = buf + n;
    for (int seen = 0; start > buf; start--)
        if (start[-1] == '\n' && start != buf + n && ++seen > lines) break;
    fprintf(stderr, "  last lines of %s:\n", path);
    for (char *line = strtok(start, "\n"); line != NULL; line = strtok(NULL, "\n"))
        fprintf(stderr, "    %s\n", line);
}

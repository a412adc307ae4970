/*
 * rundir.h - where `lumen start` keeps a machine's cluster: the run dir
 * (pid files, logs, the token) and the token the CLI and the client
 * library find there by themselves.
 */
#ifndef LM_RUNDIR_H
#define LM_RUNDIR_H

#include <stdbool.h>
#include <stddef.h>

/* flag if given, else $LUMEN_RUN_DIR, else /tmp/lumen-<uid>. */
void lm_run_dir(const char *flag, char *out, size_t cap);

/* The first line of <run_dir>/<name> into out; false when missing or empty. */
bool lm_run_dir_read(const char *run_dir, const char *name, char *out, size_t cap);

/* The cluster token: flag if given, else $LUMEN_TOKEN, else <run dir>/token
 * (run_dir NULL: the default one), else "". The caller frees it. */
char *lm_cluster_token(const char *flag, const char *run_dir);

#endif

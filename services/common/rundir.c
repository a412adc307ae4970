/* rundir.c - see rundir.h. */
#include "rundir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void lm_run_dir(const char *flag, char *out, size_t cap) {
    const char *env = getenv("LUMEN_RUN_DIR");
    if (flag != NULL && flag[0] != '\0') snprintf(out, cap, "%s", flag);
    else if (env != NULL && env[0] != '\0') snprintf(out, cap, "%s", env);
    else snprintf(out, cap, "/tmp/lumen-%u", (unsigned)getuid());
}

bool lm_run_dir_read(const char *run_dir, const char *name, char *out, size_t cap) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", run_dir, name);
    FILE *f = fopen(path, "re");
    if (f == NULL) return false;
    bool ok = fgets(out, (int)cap, f) != NULL;
    fclose(f);
    if (ok) out[strcspn(out, "\r\n")] = '\0';
    return ok && out[0] != '\0';
}

char *lm_cluster_token(const char *flag, const char *run_dir) {
    const char *env = getenv("LUMEN_TOKEN");
    if (flag != NULL && flag[0] != '\0') return strdup(flag);
    if (env != NULL && env[0] != '\0') return strdup(env);
    char dir[512], token[256];
    if (run_dir == NULL) {
        lm_run_dir(NULL, dir, sizeof dir);
        run_dir = dir;
    }
    return strdup(lm_run_dir_read(run_dir, "token", token, sizeof token) ? token : "");
}

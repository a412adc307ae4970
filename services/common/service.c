/* service.c - see service.h. */
#include "service.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "process.h"

static void usage(const char *role, FILE *f) {
    fprintf(f,
            "usage: lumen-%s [--config FILE] [--print-config] [--<setting> VALUE]...\n"
            "Settings (flag, environment variable, meaning):\n",
            role);
    size_t n;
    const lm_config_section *sections = lm_config_sections(&n);
    for (size_t s = 0; s < n; s++) {
        if (strcmp(sections[s].name, "cluster") != 0 && strcmp(sections[s].name, role) != 0) continue;
        for (size_t i = 0; i < sections[s].count; i++) {
            const lm_config_setting *st = &sections[s].settings[i];
            char flag[64];
            snprintf(flag, sizeof flag, "--%s", st->name);
            for (char *p = flag + 2; *p; p++)
                if (*p == '_') *p = '-';
            fprintf(f, "  %-26s %-28s %s\n", flag, st->env ? st->env : "", st->help ? st->help : "");
        }
    }
}

static bool has_setting(const char *section, const char *name) {
    size_t n;
    const lm_config_section *sections = lm_config_sections(&n);
    for (size_t s = 0; s < n; s++) {
        if (strcmp(sections[s].name, section) != 0) continue;
        for (size_t i = 0; i < sections[s].count; i++)
            if (strcmp(sections[s].settings[i].name, name) == 0) return true;
    }
    return false;
}

/* Applies --name VALUE to the role's section, else to cluster. */
static lumen_status set_flag(lm_config *cfg, const char *role, const char *flag, const char *value) {
    char name[64];
    snprintf(name, sizeof name, "%s", flag);
    for (char *p = name; *p; p++)
        if (*p == '-') *p = '_';
    const char *section = has_setting(role, name) ? role : has_setting("cluster", name) ? "cluster" : NULL;
    if (section == NULL) return lm_status(LUMEN_CONFIG, "unknown option --%s (see --help)", flag);
    return lm_config_set(cfg, section, name, value);
}

int lm_service_init(const char *role, int argc, char **argv, lm_config *cfg) {
    char prog[32];
    snprintf(prog, sizeof prog, "%s", role);
    lm_process_init(prog);

    const char *config_path = NULL;
    bool print = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(role, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) config_path = argv[++i];
        else if (strcmp(argv[i], "--print-config") == 0) print = true;
    }
    lumen_status st = lm_config_load(config_path, cfg);
    for (int i = 1; LM_IS_OK(st) && i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strcmp(a, "--print-config") == 0) continue;
        if (strncmp(a, "--", 2) != 0) {
            st = lm_status(LUMEN_CONFIG, "unexpected argument \"%s\"", a);
        } else if (strchr(a, '=') != NULL) { /* --name=value */
            char flag[96];
            snprintf(flag, sizeof flag, "%.*s", (int)(strchr(a, '=') - a - 2), a + 2);
            st = set_flag(cfg, role, flag, strchr(a, '=') + 1);
        } else if (i + 1 >= argc) {
            st = lm_status(LUMEN_CONFIG, "option %s needs a value", a);
        } else {
            st = set_flag(cfg, role, a + 2, argv[++i]);
        }
    }
    if (LM_IS_OK(st)) st = lm_config_read_secrets(cfg);
    if (LM_IS_OK(st)) st = lm_config_check(cfg);
    if (!LM_IS_OK(st)) {
        fprintf(stderr, "lumen-%s: %s\n", role, st.msg);
        lm_config_free(cfg);
        return 2;
    }
    if (print) {
        lm_config_print(cfg, stdout);
        lm_config_free(cfg);
        return 0;
    }
    lm_log_set_level(cfg->cluster.log_level);
    lm_info("lumen-%s starting (pid %d)", role, (int)getpid()); /* marks each (re)start in its log */
    return -1;
}

static sigset_t stop_signals;

void lm_service_block_signals(void) {
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL); /* threads started later inherit it */
}

int lm_service_wait_for_stop(void) {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    return sig;
}

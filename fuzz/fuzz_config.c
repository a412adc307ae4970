/*
 * fuzz_config - the config loader (lm_config_load) on any file.
 *
 * Input: the file's bytes, written to a temp file and loaded. It must never
 * crash; an error must say where: "<file>:<line>: ..." - except the rules
 * that span settings (lm_config_check), which name the settings instead
 * ("scheduler.heartbeat_timeout_ms (...) must be greater than ..."). A config
 * that loads must print (lm_config_print) into text that loads again and
 * prints the same.
 *
 * Inputs with @include are skipped: an include names any file the operator
 * chooses (/dev/zero, a fifo), which the loader trusts like the file itself.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

extern char **environ;

static char path[256];

/* Settings from the environment would make results depend on the shell. */
static void clear_lumen_env(void) {
    for (;;) {
        char name[256] = "";
        for (char **e = environ; *e != NULL && name[0] == '\0'; e++)
            if (strncmp(*e, "LUMEN_", 6) == 0) snprintf(name, sizeof name, "%.*s", (int)strcspn(*e, "="), *e);
        if (name[0] == '\0') return;
        unsetenv(name);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    lm_log_set_level(LM_LOG_ERROR);
    clear_lumen_env();
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path, sizeof path, "%s/lumen-fuzz-config-%d.cfg", tmp, (int)getpid());
    return 0;
}

static void fail(const char *why, const char *detail) {
    fprintf(stderr, "fuzz_config: %s: %s\n", why, detail);
    abort();
}

static void write_file(const char *file, const void *data, size_t size) {
    FILE *f = fopen(file, "wb");
    if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
}

/* "<file>:<digits>: " at the start of msg. */
static bool names_file_line(const char *msg, const char *file) {
    size_t n = strlen(file);
    if (strncmp(msg, file, n) != 0 || msg[n] != ':' || !isdigit((unsigned char)msg[n + 1])) return false;
    const char *p = msg + n + 1;
    while (isdigit((unsigned char)*p)) p++;
    return p[0] == ':' && p[1] == ' ';
}

/* "<section>.<setting> " at the start of msg: a rule spanning settings. */
static bool names_setting(const char *msg) {
    size_t nsec;
    const lm_config_section *secs = lm_config_sections(&nsec);
    for (size_t i = 0; i < nsec; i++)
        for (size_t j = 0; j < secs[i].count; j++) {
            char name[128];
            int n = snprintf(name, sizeof name, "%s.%s ", secs[i].name, secs[i].settings[j].name);
            if (strncmp(msg, name, (size_t)n) == 0) return true;
        }
    return false;
}

/* lm_config_print's text with secrets blanked (they print as comments only). */
static char *print(lm_config *cfg) {
    size_t nsec;
    const lm_config_section *secs = lm_config_sections(&nsec);
    for (size_t i = 0; i < nsec; i++)
        for (size_t j = 0; j < secs[i].count; j++)
            if (secs[i].settings[j].flags & LM_CONFIG_SECRET)
                if (!LM_IS_OK(lm_config_set(cfg, secs[i].name, secs[i].settings[j].name, "")))
                    fail("cannot blank a secret", secs[i].settings[j].name);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL) abort();
    lm_config_print(cfg, f);
    fclose(f);
    return text;
}

/* What a loaded config prints must load again and print the same. */
static void round_trip(lm_config *cfg) {
    char *first = print(cfg);
    write_file(path, first, strlen(first));
    lm_config again;
    lumen_status st = lm_config_load(path, &again);
    if (!LM_IS_OK(st)) fail("a printed config does not load", st.msg);
    char *second = print(&again);
    if (strcmp(first, second) != 0) fail("a printed config changed when loaded again", second);
    free(first);
    free(second);
    lm_config_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (memmem(data, size, "@include", 8) != NULL) return 0;
    write_file(path, data, size);
    lm_config cfg;
    lumen_status st = lm_config_load(path, &cfg);
    if (LM_IS_OK(st)) {
        round_trip(&cfg);
        lm_config_free(&cfg);
    } else if (st.code != LUMEN_CONFIG && st.code != LUMEN_RESOURCE_EXHAUSTED) {
        fail("an error that is not LUMEN_CONFIG", st.msg);
    } else if (!names_file_line(st.msg, path) && !names_setting(st.msg)) {
        fail("an error that names no file:line", st.msg);
    }
    unlink(path);
    return 0;
}

/* config.c - the settings tables and the one loader that walks them. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libconfig.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KIB 1024LL
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)
#define TIB (1024 * GIB)
#define SEC_MS 1000LL
#define MIN_MS (60 * SEC_MS)
#define HOUR_MS (60 * MIN_MS)
#define DAY_MS (24 * HOUR_MS)

/* One table row. The struct field is named like the setting, and its C type
 * must match the setting's type: a mismatch does not compile ("comparison of
 * distinct pointer types"), so the loader can never write the wrong width. */
#define ROW(R, f, ctype, type, flags, lo, hi, def, env, shared, help)                   \
    {#f, type, flags, lo, hi, def, env, shared, help,                                   \
     offsetof(R, f) + 0 * sizeof(&((R *)0)->f == (ctype *)0)}
#define STRING(R, f, flags, def, env, help) \
    ROW(R, f, char *, LM_CONFIG_STRING, flags, 0, 0, def, env, NULL, help)
#define ADDR(R, f, flags, def, env, shared, help) \
    ROW(R, f, char *, LM_CONFIG_ADDR, flags, 0, 0, def, env, shared, help)
#define INT(R, f, lo, hi, def, env, help) \
    ROW(R, f, int, LM_CONFIG_INT, 0, lo, hi, def, env, NULL, help)
#define BOOL(R, f, def, env, help) ROW(R, f, bool, LM_CONFIG_BOOL, 0, 0, 0, def, env, NULL, help)
#define SIZE(R, f, lo, hi, def, env, help) \
    ROW(R, f, uint64_t, LM_CONFIG_SIZE, 0, lo, hi, def, env, NULL, help)
#define DURATION(R, f, lo, hi, def, env, help) \
    ROW(R, f, int64_t, LM_CONFIG_DURATION, 0, lo, hi, def, env, NULL, help)
#define LOG_LEVEL(R, f, def, env, help) \
    ROW(R, f, lm_log_level, LM_CONFIG_LOG_LEVEL, 0, 0, 0, def, env, NULL, help)

#define REQ LM_CONFIG_REQUIRED
#define LISTEN (LM_CONFIG_REQUIRED | LM_CONFIG_PORT0)

static const lm_config_setting cluster_settings[] = {
#define R lm_cluster_config
    ADDR(R, redis_addr, REQ, "127.0.0.1:6379", "LUMEN_REDIS_ADDR", NULL,
         "Redis server that holds the cluster state"),
    STRING(R, redis_password, LM_CONFIG_SECRET, "", "LUMEN_REDIS_PASSWORD",
           "Redis AUTH password; \"\" = none"),
    STRING(R, redis_password_file, 0, "", "LUMEN_REDIS_PASSWORD_FILE",
           "File holding the Redis password, read at start when redis_password is \"\""),
    STRING(R, key_prefix, 0, "lumen:", "LUMEN_KEY_PREFIX",
           "Prefix of every Redis key, so several clusters can share one Redis"),
    STRING(R, token, LM_CONFIG_SECRET, "", "LUMEN_TOKEN",
           "Shared secret every RPC must carry; \"\" = no authentication"),
    STRING(R, token_file, 0, "", "LUMEN_TOKEN_FILE",
           "File holding the token, read at start when token is \"\" (keeps it out of command lines)"),
    ADDR(R, scheduler_addr, REQ, "127.0.0.1:7400", "LUMEN_SCHEDULER_ADDR", NULL,
         "Where workers, object stores and clients reach the scheduler"),
    LOG_LEVEL(R, log_level, "info", "LUMEN_LOG_LEVEL",
              "Verbosity: debug, info, warn, error or off"),
    DURATION(R, rpc_timeout_ms, 1, DAY_MS, "10000", "LUMEN_RPC_TIMEOUT_MS",
             "Deadline of one RPC between Lumen processes"),
    STRING(R, tls_cert, 0, "", "LUMEN_TLS_CERT",
           "PEM certificate file of this process; \"\" = plaintext RPC"),
    STRING(R, tls_key, 0, "", "LUMEN_TLS_KEY", "PEM private key file of tls_cert"),
    STRING(R, tls_ca, 0, "", "LUMEN_TLS_CA", "PEM file of the CA certificates peers must chain to"),
#undef R
};

static const lm_config_setting scheduler_settings[] = {
#define R lm_scheduler_config
    ADDR(R, listen, LISTEN, "127.0.0.1:7400", "LUMEN_SCHEDULER_LISTEN", NULL,
         "gRPC address the scheduler listens on"),
    BOOL(R, dashboard, "true", "LUMEN_SCHEDULER_DASHBOARD",
         "Serve the HTTP dashboard, /api/* and /metrics (docs/api.md)"),
    STRING(R, dashboard_host, REQ, "127.0.0.1", "LUMEN_SCHEDULER_DASHBOARD_HOST",
           "Interface the HTTP dashboard listens on"),
    INT(R, dashboard_port, 0, 65535, "8265", "LUMEN_SCHEDULER_DASHBOARD_PORT",
        "Port of the HTTP dashboard; 0 = any free port"),
    DURATION(R, heartbeat_interval_ms, 10, HOUR_MS, "1000",
             "LUMEN_SCHEDULER_HEARTBEAT_INTERVAL_MS", "How often every node reports in"),
    DURATION(R, heartbeat_timeout_ms, 20, DAY_MS, "5000", "LUMEN_SCHEDULER_HEARTBEAT_TIMEOUT_MS",
             "A node silent this long is declared dead and its work retried"),
    INT(R, max_retries, 0, 1000, "3", "LUMEN_SCHEDULER_MAX_RETRIES",
        "How often a task is re-run after its worker died"),
    SIZE(R, inline_result_max, 0, 16 * MIB, "100KiB", "LUMEN_SCHEDULER_INLINE_RESULT_MAX",
         "Results up to this size travel inside the RPC, larger ones via an object store"),
    INT(R, put_replicas, 1, 8, "1", "LUMEN_SCHEDULER_PUT_REPLICAS",
        "Object stores a client writes each put to (puts have no lineage: a copy survives a store)"),
    DURATION(R, job_grace_ms, 0, DAY_MS, "10000", "LUMEN_SCHEDULER_JOB_GRACE_MS",
             "A job whose client went away without lumen_close ends this long after, unless the client "
             "is back or the job is detached; 0 = at once"),
    DURATION(R, unknown_ref_timeout_ms, 100, DAY_MS, "5000", "LUMEN_SCHEDULER_UNKNOWN_REF_TIMEOUT_MS",
             "A task argument that no task makes and no object store holds fails (NOT_FOUND) after this long"),
#undef R
};

static const lm_config_setting objstore_settings[] = {
#define R lm_objstore_config
    ADDR(R, listen, LISTEN, "127.0.0.1:7401", "LUMEN_OBJSTORE_LISTEN", NULL,
         "gRPC address the object store listens on"),
    ADDR(R, advertise, LM_CONFIG_HOST_OK, "", "LUMEN_OBJSTORE_ADVERTISE", "LUMEN_ADVERTISE_ADDR",
         "Address others reach this store at; a bare host takes the listen port; \"\" = listen"),
    SIZE(R, memory_limit, MIB, 1024 * TIB, "2GiB", "LUMEN_OBJSTORE_MEMORY_LIMIT",
         "Object bytes held in memory; past it objects spill to spill_dir"),
    STRING(R, spill_dir, 0, "", "LUMEN_OBJSTORE_SPILL_DIR",
           "Directory for spilled objects; \"\" = a private directory under $TMPDIR"),
    SIZE(R, chunk_bytes, 4 * KIB, 64 * MIB, "1MiB", "LUMEN_OBJSTORE_CHUNK_BYTES",
         "Objects are streamed in chunks of this size"),
    SIZE(R, max_object_bytes, 1, 1024 * TIB, "64GiB", "LUMEN_OBJSTORE_MAX_OBJECT_BYTES",
         "Largest object a put may create"),
#undef R
};

static const lm_config_setting worker_settings[] = {
#define R lm_worker_config
    ADDR(R, listen, LISTEN, "127.0.0.1:7402", "LUMEN_WORKER_LISTEN", NULL,
         "gRPC address the worker listens on"),
    ADDR(R, advertise, LM_CONFIG_HOST_OK, "", "LUMEN_WORKER_ADVERTISE", "LUMEN_ADVERTISE_ADDR",
         "Address others reach this worker at; a bare host takes the listen port; \"\" = listen"),
    INT(R, slots, 0, 4096, "0", "LUMEN_WORKER_SLOTS",
        "Tasks run at once, one executor process each; 0 = one per CPU"),
    STRING(R, library_path, 0, "", "LUMEN_WORKER_LIBRARY_PATH",
           "Colon-separated directories searched for function libraries (.so)"),
    STRING(R, executor, 0, "", "LUMEN_WORKER_EXECUTOR",
           "Path of the executor binary; \"\" = the one next to lumen-worker"),
    DURATION(R, task_timeout_ms, 0, 30 * DAY_MS, "0", "LUMEN_WORKER_TASK_TIMEOUT_MS",
             "A task running longer is killed and fails; 0 = no limit"),
    SIZE(R, task_memory_limit, 0, 1024 * TIB, "0", "LUMEN_WORKER_TASK_MEMORY_LIMIT",
         "Memory limit of one executor process; 0 = no limit"),
    STRING(R, run_dir, 0, "", "LUMEN_WORKER_RUN_DIR",
           "Directory for sockets and scratch files; \"\" = a private directory under $TMPDIR"),
    ADDR(R, objstore_addr, REQ, "127.0.0.1:7401", "LUMEN_WORKER_OBJSTORE_ADDR", NULL,
         "The object store this worker writes task results to"),
#undef R
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
static const lm_config_section sections[] = {
    {"cluster", offsetof(lm_config, cluster), cluster_settings, COUNT(cluster_settings)},
    {"scheduler", offsetof(lm_config, scheduler), scheduler_settings, COUNT(scheduler_settings)},
    {"objstore", offsetof(lm_config, objstore), objstore_settings, COUNT(objstore_settings)},
    {"worker", offsetof(lm_config, worker), worker_settings, COUNT(worker_settings)},
};

/* Same order as lm_log_level. */
static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

const lm_config_section *lm_config_sections(size_t *count) {
    *count = COUNT(sections);
    return sections;
}

static void *field_of(lm_config *cfg, const lm_config_section *sec, const lm_config_setting *s) {
    return (char *)cfg + sec->offset + s->offset;
}

static const lm_config_section *find_section(const char *name) {
    for (size_t i = 0; i < COUNT(sections); i++)
        if (strcmp(sections[i].name, name) == 0) return &sections[i];
    return NULL;
}

static const lm_config_setting *find_setting(const lm_config_section *sec, const char *name) {
    for (size_t i = 0; i < sec->count; i++)
        if (strcmp(sec->settings[i].name, name) == 0) return &sec->settings[i];
    return NULL;
}

/* A reason (from a parser) restated as a LUMEN_CONFIG error at a place. */
static lumen_status at(lumen_status why, const char *fmt, ...) LM_PRINTF(2, 3);
static lumen_status at(lumen_status why, const char *fmt, ...) {
    char where[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(where, sizeof where, fmt, ap);
    va_end(ap);
    lumen_code code = why.code == LUMEN_RESOURCE_EXHAUSTED ? why.code : LUMEN_CONFIG;
    return lm_status(code, "%s: %s", where, why.msg);
}

#define invalid(...) lm_status(LUMEN_INVALID_ARGUMENT, __VA_ARGS__)

/* ---- value parsers ---- */

/* Decimal digits at *p (no sign, no spaces): 0, EINVAL (none) or ERANGE. */
static int scan_digits(const char **p, uint64_t *out) {
    const char *s = *p;
    uint64_t v = 0;
    if (!isdigit((unsigned char)*s)) return EINVAL;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return ERANGE;
        v = v * 10 + d;
    }
    *p = s;
    *out = v;
    return 0;
}

typedef struct unit {
    const char *suffix;
    uint64_t mult;
} unit;

/* digits [one space] [suffix], times the suffix's multiplier. */
static int scan_with_unit(const char *text, const unit *units, size_t n, uint64_t *out) {
    const char *p = text;
    uint64_t v;
    int err = scan_digits(&p, &v);
    if (err) return err;
    if (*p == '.') return EINVAL; /* fractions: "1.5GiB" is "1536MiB" */
    if (*p == ' ' && isalpha((unsigned char)p[1])) p++;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(p, units[i].suffix) != 0) continue;
        if (v > UINT64_MAX / units[i].mult) return ERANGE;
        *out = v * units[i].mult;
        return 0;
    }
    return ENOENT;
}

lumen_status lm_parse_size(const char *text, uint64_t *out) {
    static const unit units[] = {{"", 1},    {"B", 1},     {"K", KIB}, {"KiB", KIB},
                                 {"M", MIB}, {"MiB", MIB}, {"G", GIB}, {"GiB", GIB},
                                 {"T", TIB}, {"TiB", TIB}};
    static const char hint[] = "a whole number with B, K/KiB, M/MiB, G/GiB or T/TiB, 1024-based";
    if (*text == '-') return invalid("negative size: \"%s\"", text);
    switch (scan_with_unit(text, units, COUNT(units), out)) {
    case 0: return lm_ok();
    case ERANGE: return invalid("size too large: \"%s\"", text);
    case ENOENT: return invalid("bad size suffix: \"%s\" (use %s)", text, hint);
    default: return invalid("not a size: \"%s\" (use %s)", text, hint);
    }
}

lumen_status lm_parse_duration_ms(const char *text, int64_t *out) {
    static const unit units[] = {{"", 1}, {"ms", 1}, {"s", SEC_MS}, {"m", MIN_MS}, {"h", HOUR_MS}};
    uint64_t v;
    if (*text == '-') return invalid("negative duration: \"%s\"", text);
    switch (scan_with_unit(text, units, COUNT(units), &v)) {
    case 0:
        if (v > INT64_MAX) break;
        *out = (int64_t)v;
        return lm_ok();
    case ERANGE: break;
    case ENOENT:
        return invalid("bad duration suffix: \"%s\" (use ms, s, m or h; no suffix = ms)", text);
    default: return invalid("not a duration: \"%s\" (use a whole number with ms, s, m or h)", text);
    }
    return invalid("duration too long: \"%s\"", text);
}

lumen_status lm_parse_bool(const char *text, bool *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < COUNT(yes); i++) {
        if (strcasecmp(text, yes[i]) == 0) return *out = true, lm_ok();
        if (strcasecmp(text, no[i]) == 0) return *out = false, lm_ok();
    }
    return invalid("not a bool: \"%s\" (use true/false, yes/no, on/off or 1/0)", text);
}

static lumen_status parse_int(const char *text, int64_t *out) {
    const char *p = text + (*text == '-');
    uint64_t v;
    int err = scan_digits(&p, &v);
    if (err == ERANGE) return invalid("integer out of range: \"%s\"", text);
    if (err == EINVAL || *p != '\0') return invalid("not an integer: \"%s\"", text);
    if (v > (uint64_t)INT64_MAX) return invalid("integer out of range: \"%s\"", text);
    *out = *text == '-' ? -(int64_t)v : (int64_t)v;
    return lm_ok();
}

lumen_status lm_parse_addr(const char *text, unsigned flags, char *host, size_t host_cap,
                           uint16_t *port) {
    const char *h = text, *end; /* the host is [h, end) */
    const char *rest;           /* ":port" or "" */
    if (*text == '[') {
        h = text + 1;
        end = strchr(h, ']');
        if (end == NULL) return invalid("missing ']' in address \"%s\"", text);
        rest = end + 1;
    } else {
        rest = strchr(text, ':');
        if (rest == NULL) rest = text + strlen(text);
        else if (strchr(rest + 1, ':') != NULL)
            return invalid("IPv6 hosts need brackets (\"[::1]:7400\"): \"%s\"", text);
        end = rest;
    }
    if (end == h) return invalid("missing host in address \"%s\"", text);
    for (const char *c = h; c < end; c++)
        if (isspace((unsigned char)*c) || iscntrl((unsigned char)*c) || *c == '[' || *c == ']')
            return invalid("bad character in host of \"%s\"", text);
    uint64_t p = 0;
    if (*rest == '\0') {
        if (!(flags & LM_CONFIG_HOST_OK)) return invalid("not a host:port address: \"%s\"", text);
    } else {
        const char *digits = rest + 1;
        int err = *rest == ':' ? scan_digits(&digits, &p) : EINVAL;
        if (err == EINVAL || (err == 0 && *digits != '\0'))
            return invalid("bad port in address \"%s\"", text);
        unsigned lo = (flags & LM_CONFIG_PORT0) ? 0 : 1;
        if (err == ERANGE || p < lo || p > 65535)
            return invalid("port must be between %u and 65535 in \"%s\"", lo, text);
    }
    if (host != NULL) {
        size_t n = (size_t)(end - h);
        if (n >= host_cap) return invalid("host too long in \"%s\"", text);
        memcpy(host, h, n);
        host[n] = '\0';
    }
    if (port != NULL) *port = (uint16_t)p;
    return lm_ok();
}

/* ---- formatting (for messages and lm_config_print) ---- */

static const char *format_size(uint64_t v, char buf[32]) {
    static const unit units[] = {{"TiB", TIB}, {"GiB", GIB}, {"MiB", MIB}, {"KiB", KIB}};
    for (size_t i = 0; v != 0 && i < COUNT(units); i++)
        if (v % units[i].mult == 0) {
            snprintf(buf, 32, "%" PRIu64 "%s", v / units[i].mult, units[i].suffix);
            return buf;
        }
    snprintf(buf, 32, "%" PRIu64, v);
    return buf;
}

static const char *format_duration(int64_t ms, char buf[32]) {
    static const unit units[] = {{"h", HOUR_MS}, {"m", MIN_MS}, {"s", SEC_MS}};
    for (size_t i = 0; ms != 0 && i < COUNT(units); i++)
        if (ms % (int64_t)units[i].mult == 0) {
            snprintf(buf, 32, "%" PRId64 "%s", ms / (int64_t)units[i].mult, units[i].suffix);
            return buf;
        }
    snprintf(buf, 32, "%" PRId64 "ms", ms);
    return buf;
}

/* ---- assigning one value, whatever its origin ---- */

/* Validates text as setting s and stores it in field; on error field is
 * untouched and the message gives the reason only (callers add the place). */
static lumen_status assign(const lm_config_setting *s, void *field, const char *text) {
    lumen_status st;
    char a[32], b[32], c[32];
    switch (s->type) {
    case LM_CONFIG_STRING:
    case LM_CONFIG_ADDR: {
        if (*text == '\0' && (s->flags & LM_CONFIG_REQUIRED)) return invalid("must not be empty");
        if (*text != '\0' && s->type == LM_CONFIG_ADDR &&
            !LM_IS_OK(st = lm_parse_addr(text, s->flags, NULL, 0, NULL)))
            return st;
        char *copy = strdup(text);
        if (copy == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
        free(*(char **)field);
        *(char **)field = copy;
        return lm_ok();
    }
    case LM_CONFIG_INT: {
        int64_t v = 0;
        if (!LM_IS_OK(st = parse_int(text, &v))) return st;
        if (v < s->min || v > s->max)
            return invalid("must be between %" PRId64 " and %" PRId64 ", got %" PRId64, s->min,
                           s->max, v);
        *(int *)field = (int)v;
        return lm_ok();
    }
    case LM_CONFIG_BOOL: return lm_parse_bool(text, (bool *)field);
    case LM_CONFIG_SIZE: {
        uint64_t v = 0;
        if (!LM_IS_OK(st = lm_parse_size(text, &v))) return st;
        if (v < (uint64_t)s->min || v > (uint64_t)s->max)
            return invalid("must be between %s and %s, got %s", format_size((uint64_t)s->min, a),
                           format_size((uint64_t)s->max, b), format_size(v, c));
        *(uint64_t *)field = v;
        return lm_ok();
    }
    case LM_CONFIG_DURATION: {
        int64_t v = 0;
        if (!LM_IS_OK(st = lm_parse_duration_ms(text, &v))) return st;
        if (v < s->min || v > s->max)
            return invalid("must be between %s and %s, got %s", format_duration(s->min, a),
                           format_duration(s->max, b), format_duration(v, c));
        *(int64_t *)field = v;
        return lm_ok();
    }
    case LM_CONFIG_LOG_LEVEL: {
        char word[8] = {0}; /* lm_log_level_parse wants lower case; accept "WARN" too */
        for (size_t i = 0; i + 1 < sizeof word && text[i] != '\0'; i++)
            word[i] = (char)tolower((unsigned char)text[i]);
        int level = strlen(text) < sizeof word ? lm_log_level_parse(word) : -1;
        if (level < 0)
            return invalid("unknown log level \"%s\" (use debug, info, warn, error or off)", text);
        *(lm_log_level *)field = (lm_log_level)level;
        return lm_ok();
    }
    }
    return invalid("unknown setting type");
}

/* ---- the file ---- */

static const char *expected(lm_config_type type) {
    switch (type) {
    case LM_CONFIG_STRING: return "a string";
    case LM_CONFIG_INT: return "an integer";
    case LM_CONFIG_BOOL: return "true or false";
    case LM_CONFIG_SIZE: return "a size (an integer or a string such as \"2GiB\")";
    case LM_CONFIG_DURATION: return "milliseconds (an integer or a string such as \"5s\")";
    case LM_CONFIG_ADDR: return "a \"host:port\" string";
    case LM_CONFIG_LOG_LEVEL: return "a log level string such as \"info\"";
    }
    return "?";
}

static const char *got(const config_setting_t *m) {
    switch (config_setting_type(m)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: return "an integer";
    case CONFIG_TYPE_FLOAT: return "a float";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a bool";
    case CONFIG_TYPE_GROUP: return "a group";
    case CONFIG_TYPE_ARRAY: return "an array";
    case CONFIG_TYPE_LIST: return "a list";
    }
    return "something else";
}

/* The file's value as the text assign() takes, if its libconfig type fits. */
static const char *file_text(const lm_config_setting *s, const config_setting_t *m, char buf[32]) {
    bool number = s->type == LM_CONFIG_INT || s->type == LM_CONFIG_SIZE ||
                  s->type == LM_CONFIG_DURATION;
    switch (config_setting_type(m)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        if (!number) return NULL;
        snprintf(buf, 32, "%lld", config_setting_get_int64(m));
        return buf;
    case CONFIG_TYPE_STRING:
        return s->type == LM_CONFIG_INT || s->type == LM_CONFIG_BOOL
                   ? NULL
                   : config_setting_get_string(m);
    case CONFIG_TYPE_BOOL:
        return s->type != LM_CONFIG_BOOL ? NULL : config_setting_get_bool(m) ? "true" : "false";
    }
    return NULL;
}

static const char *source(const config_setting_t *m, const char *path) {
    const char *file = config_setting_source_file(m);
    return file != NULL ? file : path;
}

/* Walks what libconfig parsed; anything not in a table is an error. */
static lumen_status apply_file(lm_config *cfg, const config_setting_t *root, const char *path) {
    for (int i = 0; i < config_setting_length(root); i++) {
        const config_setting_t *group = config_setting_get_elem(root, (unsigned)i);
        const char *gname = config_setting_name(group);
        const lm_config_section *sec = find_section(gname);
        if (sec == NULL)
            return lm_status(LUMEN_CONFIG,
                             "%s:%u: unknown section \"%s\" (use cluster, scheduler, objstore, "
                             "worker)", source(group, path), config_setting_source_line(group),
                             gname);
        if (!config_setting_is_group(group))
            return lm_status(LUMEN_CONFIG, "%s:%u: %s: expected a group: %s = { ... };",
                             source(group, path), config_setting_source_line(group), gname, gname);
        for (int j = 0; j < config_setting_length(group); j++) {
            const config_setting_t *m = config_setting_get_elem(group, (unsigned)j);
            const char *file = source(m, path);
            unsigned line = config_setting_source_line(m);
            const lm_config_setting *s = find_setting(sec, config_setting_name(m));
            if (s == NULL)
                return lm_status(LUMEN_CONFIG, "%s:%u: unknown setting \"%s.%s\"", file, line,
                                 gname, config_setting_name(m));
            char buf[32];
            const char *text = file_text(s, m, buf);
            lumen_status st =
                text != NULL ? assign(s, field_of(cfg, sec, s), text)
                             : invalid("expected %s, got %s", expected(s->type), got(m));
            if (!LM_IS_OK(st)) return at(st, "%s:%u: %s.%s", file, line, gname, s->name);
        }
    }
    return lm_ok();
}

static int digit_value(char c, unsigned base) {
    if (isdigit((unsigned char)c)) return c - '0';
    if (base == 16 && isxdigit((unsigned char)c)) return tolower((unsigned char)c) - 'a' + 10;
    return -1;
}

static bool word_char(char c) {
    return isalnum((unsigned char)c) || c == '_' || c == '*' || c == '-';
}

/* libconfig 1.5 silently wraps integer literals past 32 bits unless they end
 * in L (memory_limit = 5368709120 reads as 1GiB), so refuse them, with their
 * line, before parsing. Skips comments and strings; @include'd files are not
 * checked. */
static lumen_status check_wide_ints(const char *path, const char *text) {
    unsigned line = 1;
    const char *p = text;
    while (*p != '\0') {
        if (*p == '\n') {
            line++, p++;
        } else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
            while (*p != '\0' && *p != '\n') p++;
        } else if (p[0] == '/' && p[1] == '*') {
            for (p += 2; *p != '\0' && !(p[0] == '*' && p[1] == '/'); p++) line += *p == '\n';
            if (*p != '\0') p += 2;
        } else if (*p == '"') {
            for (p++; *p != '\0' && *p != '"'; p++) {
                if (*p == '\\' && p[1] != '\0') p++;
                line += *p == '\n';
            }
            if (*p != '\0') p++;
        } else if (isalpha((unsigned char)*p) || *p == '@') { /* a name, true, @include */
            while (word_char(*p) || *p == '@') p++;
        } else if (isdigit((unsigned char)*p)) {
            const char *tok = p;
            unsigned base = 10;
            uint64_t limit = (tok > text && tok[-1] == '-') ? 2147483648u : INT32_MAX, v = 0;
            if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) base = 16, limit = UINT32_MAX, p += 2;
            for (int d; (d = digit_value(*p, base)) >= 0; p++)
                if (v <= limit) v = v * base + (unsigned)d; /* past it, only count on */
            bool suffixed = false; /* 5L, 1.5, 1e10: not a plain int */
            for (; word_char(*p) || *p == '.'; p++) suffixed = true;
            if (v > limit && !suffixed)
                return lm_status(LUMEN_CONFIG,
                                 "%s:%u: integer %.*s does not fit in 32 bits; write a size as a "
                                 "string (\"5GiB\") or add an L suffix",
                                 path, line, (int)(p - tok), tok);
        } else {
            p++;
        }
    }
    return lm_ok();
}

static lumen_status read_text(const char *path, char **out) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return lm_status(LUMEN_CONFIG, "%s: cannot open: %s", path, strerror(errno));
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    for (size_t n; buf != NULL && (n = fread(buf + len, 1, cap - len - 1, f)) > 0;) {
        len += n;
        if (cap - len - 1 == 0) {
            char *bigger = realloc(buf, cap *= 2);
            if (bigger == NULL) free(buf);
            buf = bigger;
        }
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (buf == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "%s: out of memory", path);
    if (err != 0) {
        free(buf);
        return lm_status(LUMEN_CONFIG, "%s: cannot read: %s", path, strerror(err));
    }
    buf[len] = '\0';
    *out = buf;
    return lm_ok();
}

/* Reads the text ourselves (pipes work, errno is kept), parses it with
 * libconfig, then applies it; @include paths are relative to the file. */
static lumen_status load_file(lm_config *cfg, const char *path) {
    char *text = NULL, *dir = strdup(path);
    lumen_status st = dir != NULL ? read_text(path, &text)
                                  : lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    if (LM_IS_OK(st)) st = check_wide_ints(path, text);
    if (LM_IS_OK(st)) {
        config_t lc;
        config_init(&lc);
        config_set_include_dir(&lc, dirname(dir));
        if (!config_read_string(&lc, text)) {
            const char *file = config_error_file(&lc);
            st = lm_status(LUMEN_CONFIG, "%s:%d: %s", file != NULL ? file : path,
                           config_error_line(&lc), config_error_text(&lc));
        } else {
            st = apply_file(cfg, config_root_setting(&lc), path);
        }
        config_destroy(&lc);
    }
    free(text);
    free(dir);
    return st;
}

/* ---- the API ---- */

static lumen_status apply_env(lm_config *cfg) {
    for (size_t i = 0; i < COUNT(sections); i++) {
        const lm_config_section *sec = &sections[i];
        for (size_t j = 0; j < sec->count; j++) {
            const lm_config_setting *s = &sec->settings[j];
            const char *vars[] = {s->env_shared, s->env}; /* the specific one wins */
            for (size_t k = 0; k < COUNT(vars); k++) {
                const char *value = vars[k] != NULL ? getenv(vars[k]) : NULL;
                if (value == NULL || *value == '\0') continue;
                lumen_status st = assign(s, field_of(cfg, sec, s), value);
                if (!LM_IS_OK(st)) return at(st, "%s", vars[k]);
            }
        }
    }
    return lm_ok();
}

lumen_status lm_config_load(const char *path, lm_config *out) {
    memset(out, 0, sizeof *out);
    lumen_status st = lm_ok();
    for (size_t i = 0; i < COUNT(sections) && LM_IS_OK(st); i++) {
        const lm_config_section *sec = &sections[i];
        for (size_t j = 0; j < sec->count && LM_IS_OK(st); j++) {
            const lm_config_setting *s = &sec->settings[j];
            st = assign(s, field_of(out, sec, s), s->def);
            if (!LM_IS_OK(st)) st = at(st, "built-in default of %s.%s", sec->name, s->name);
        }
    }
    if (LM_IS_OK(st) && path != NULL) st = load_file(out, path);
    if (LM_IS_OK(st)) st = apply_env(out);
    if (LM_IS_OK(st)) st = lm_config_check(out);
    if (!LM_IS_OK(st)) lm_config_free(out);
    return st;
}

void lm_config_free(lm_config *cfg) {
    if (cfg == NULL) return;
    for (size_t i = 0; i < COUNT(sections); i++)
        for (size_t j = 0; j < sections[i].count; j++) {
            const lm_config_setting *s = &sections[i].settings[j];
            if (s->type == LM_CONFIG_STRING || s->type == LM_CONFIG_ADDR)
                free(*(char **)field_of(cfg, &sections[i], s));
        }
    memset(cfg, 0, sizeof *cfg);
}

lumen_status lm_config_set(lm_config *cfg, const char *section, const char *name,
                           const char *value) {
    if (cfg == NULL || section == NULL || name == NULL || value == NULL)
        return lm_status(LUMEN_INVALID_ARGUMENT, "lm_config_set: NULL argument");
    const lm_config_section *sec = find_section(section);
    if (sec == NULL) return lm_status(LUMEN_CONFIG, "unknown section \"%s\"", section);
    const lm_config_setting *s = find_setting(sec, name);
    if (s == NULL) return lm_status(LUMEN_CONFIG, "unknown setting \"%s.%s\"", section, name);
    lumen_status st = assign(s, field_of(cfg, sec, s), value);
    return LM_IS_OK(st) ? st : at(st, "%s.%s", section, name);
}

/* The file's first line, without its line end. */
static lumen_status read_secret_file(const char *path, const char *what, char **out) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return lm_status_errno(LUMEN_CONFIG, errno, path);
    char line[4096];
    bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    line[got ? strcspn(line, "\r\n") : 0] = '\0';
    if (line[0] == '\0') return lm_status(LUMEN_CONFIG, "%s %s is empty", what, path);
    char *copy = strdup(line);
    if (copy == NULL) return lm_status(LUMEN_RESOURCE_EXHAUSTED, "out of memory");
    free(*out);
    *out = copy;
    return lm_ok();
}

lumen_status lm_config_read_secrets(lm_config *cfg) {
    lm_cluster_config *cc = &cfg->cluster;
    lumen_status st = lm_ok();
    if (cc->token[0] == '\0' && cc->token_file[0] != '\0')
        st = read_secret_file(cc->token_file, "cluster.token_file", &cc->token);
    if (LM_IS_OK(st) && cc->redis_password[0] == '\0' && cc->redis_password_file[0] != '\0')
        st = read_secret_file(cc->redis_password_file, "cluster.redis_password_file", &cc->redis_password);
    return st;
}

lumen_status lm_config_check(const lm_config *cfg) {
    const lm_scheduler_config *sc = &cfg->scheduler;
    if (sc->heartbeat_timeout_ms <= sc->heartbeat_interval_ms)
        return lm_status(LUMEN_CONFIG,
                         "scheduler.heartbeat_timeout_ms (%" PRId64 ") must be greater than "
                         "scheduler.heartbeat_interval_ms (%" PRId64 ")",
                         sc->heartbeat_timeout_ms, sc->heartbeat_interval_ms);
    if ((cfg->cluster.tls_cert[0] == '\0') != (cfg->cluster.tls_key[0] == '\0'))
        return lm_status(LUMEN_CONFIG, "cluster.tls_cert and cluster.tls_key must be set together");
    return lm_ok();
}

static bool all_digits(const char *s) {
    if (*s == '\0') return false;
    while (isdigit((unsigned char)*s)) s++;
    return *s == '\0';
}

/* A libconfig string literal. */
static void print_quoted(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\t': fputs("\\t", f); break;
        case '\r': fputs("\\r", f); break;
        case '\f': fputs("\\f", f); break;
        default:
            if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
            else fputc(c, f);
        }
    }
    fputc('"', f);
}

static void print_value(FILE *f, const lm_config_setting *s, const void *field) {
    char buf[32];
    switch (s->type) {
    case LM_CONFIG_STRING:
    case LM_CONFIG_ADDR: print_quoted(f, *(char *const *)field); break;
    case LM_CONFIG_INT: fprintf(f, "%d", *(const int *)field); break;
    case LM_CONFIG_BOOL: fputs(*(const bool *)field ? "true" : "false", f); break;
    case LM_CONFIG_SIZE: { /* "2GiB"; plain digits only where libconfig reads them back */
        uint64_t v = *(const uint64_t *)field;
        const char *text = format_size(v, buf);
        if (all_digits(text) && v <= INT32_MAX) fputs(text, f);
        else print_quoted(f, text);
        break;
    }
    case LM_CONFIG_DURATION: {
        int64_t ms = *(const int64_t *)field;
        if (ms > INT32_MAX) print_quoted(f, format_duration(ms, buf)); /* see check_wide_ints */
        else fprintf(f, "%" PRId64, ms);
        break;
    }
    case LM_CONFIG_LOG_LEVEL: {
        lm_log_level level = *(const lm_log_level *)field;
        print_quoted(f, (size_t)level < COUNT(level_names) ? level_names[level] : "info");
        break;
    }
    }
}

void lm_config_print(const lm_config *cfg, FILE *f) {
    for (size_t i = 0; i < COUNT(sections); i++) {
        const lm_config_section *sec = &sections[i];
        fprintf(f, "%s%s = {\n", i ? "\n" : "", sec->name);
        for (size_t j = 0; j < sec->count; j++) {
            const lm_config_setting *s = &sec->settings[j];
            const void *field = field_of((lm_config *)cfg, sec, s);
            bool quote = s->type != LM_CONFIG_INT && s->type != LM_CONFIG_BOOL &&
                         !((s->type == LM_CONFIG_SIZE || s->type == LM_CONFIG_DURATION) &&
                           all_digits(s->def));
            fprintf(f, "%s  # %s.\n  # env %s", j ? "\n" : "", s->help, s->env);
            if (s->env_shared != NULL) fprintf(f, " (or %s)", s->env_shared);
            fprintf(f, quote ? ", default \"%s\"\n" : ", default %s\n", s->def);
            if ((s->flags & LM_CONFIG_SECRET) && **(char *const *)field != '\0') {
                fprintf(f, "  # %s is set; secrets are not printed\n", s->name);
                continue;
            }
            fprintf(f, "  %s = ", s->name);
            print_value(f, s, field);
            fputs(";\n", f);
        }
        fputs("};\n", f);
    }
}

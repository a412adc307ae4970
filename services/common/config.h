/*
 * config.h - every service's settings: defaults, config/lumen.cfg, LUMEN_* env.
 *
 * Each role's settings are described once, in a table in config.c (name,
 * type, bounds, default, environment variable, help); one generic loader
 * walks the tables and fills the plain structs below. Precedence, lowest
 * first: built-in default < file < environment < lm_config_set (flags).
 *
 * Value syntax, shared by the file, the environment and lm_config_set:
 *   size      integer bytes, or a string with a 1024-based suffix:
 *             B, K/KiB, M/MiB, G/GiB, T/TiB (case-insensitive): "512MiB"
 *   duration  integer milliseconds, or a string with ms, s, m or h: "5s"
 *   address   "host:port" or "[v6addr]:port", port 1..65535 (0 also for
 *             listen addresses: the OS picks one). advertise may also be a
 *             bare host, meaning "this host, the port I listen on".
 *   bool      true/false in the file; also 1/0, yes/no, on/off from env
 * An environment variable set to "" counts as unset. LUMEN_ADVERTISE_ADDR
 * sets both objstore.advertise and worker.advertise (one role per
 * container); LUMEN_OBJSTORE_ADVERTISE and LUMEN_WORKER_ADVERTISE beat it.
 */
#ifndef LM_CONFIG_H
#define LM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"
#include "status.h"

/* Strings are owned copies, never NULL after a successful load ("" = unset). */
typedef struct lm_cluster_config {
    char *redis_addr;
    char *redis_password;
    char *redis_password_file; /* read into redis_password at start when it is "" */
    char *key_prefix;
    char *token;
    char *token_file; /* read into token at start when token is "" */
    char *scheduler_addr;
    lm_log_level log_level;
    int64_t rpc_timeout_ms;
    char *tls_cert;
    char *tls_key;
    char *tls_ca;
} lm_cluster_config;

typedef struct lm_scheduler_config {
    char *listen;
    bool dashboard;
    char *dashboard_host;
    int dashboard_port;
    int64_t heartbeat_interval_ms;
    int64_t heartbeat_timeout_ms;
    int max_retries;
    uint64_t inline_result_max;
    int put_replicas;
    int64_t job_grace_ms;
    int64_t unknown_ref_timeout_ms;
} lm_scheduler_config;

typedef struct lm_objstore_config {
    char *listen;
    char *advertise; /* "host" or "host:port"; "" = derive from listen */
    uint64_t memory_limit;
    char *spill_dir;
    uint64_t chunk_bytes;
    uint64_t max_object_bytes;
} lm_objstore_config;

typedef struct lm_worker_config {
    char *listen;
    char *advertise;       /* "host" or "host:port"; "" = derive from listen */
    int slots;             /* 0 = one per CPU */
    char *library_path;    /* colon-separated directories of function .so files */
    char *executor;        /* "" = next to the worker binary */
    int64_t task_timeout_ms;    /* 0 = none */
    uint64_t task_memory_limit; /* 0 = none */
    char *run_dir;
    char *objstore_addr;   /* the object store results are written to */
} lm_worker_config;

typedef struct lm_config {
    lm_cluster_config cluster;
    lm_scheduler_config scheduler;
    lm_objstore_config objstore;
    lm_worker_config worker;
} lm_config;

/* Fills *out with the defaults, then the file at path (unless NULL; a named
 * file that cannot be read is an error), then the environment, and runs
 * lm_config_check. Errors are LUMEN_CONFIG and name the file and line, or
 * the variable, and the reason. On failure *out holds nothing to free. */
lumen_status lm_config_load(const char *path, lm_config *out);

/* Frees the strings and zeroes *cfg; NULL-safe, idempotent. */
void lm_config_free(lm_config *cfg);

/* Sets one setting from text (a command-line flag), validated like an
 * environment variable. On failure *cfg is unchanged. Call lm_config_check
 * after the last one. */
lumen_status lm_config_set(lm_config *cfg, const char *section, const char *name,
                           const char *value);

/* Rules that span settings (heartbeat timeout > interval, TLS cert with key). */
lumen_status lm_config_check(const lm_config *cfg);

/* Reads cluster.token_file into cluster.token, and redis_password_file into
 * redis_password, when they are unset, so a service's command line (which
 * any user of the machine can see) can name a secret without showing it,
 * and the service can be restarted from that command line alone. */
lumen_status lm_config_read_secrets(lm_config *cfg);

/* Writes the config in libconfig syntax with each setting's help, env var
 * and default as comments; lm_config_load reads it back. Secrets that are
 * set (token, redis_password) are written as a comment, never their value. */
void lm_config_print(const lm_config *cfg, FILE *f);

/* The tables, for --help output and tests. */
typedef enum lm_config_type {
    LM_CONFIG_STRING,
    LM_CONFIG_INT,      /* int */
    LM_CONFIG_BOOL,     /* bool */
    LM_CONFIG_SIZE,     /* uint64_t bytes */
    LM_CONFIG_DURATION, /* int64_t milliseconds */
    LM_CONFIG_ADDR,     /* char *, "host:port" */
    LM_CONFIG_LOG_LEVEL /* lm_log_level */
} lm_config_type;

enum {
    LM_CONFIG_REQUIRED = 1 << 0, /* strings and addresses: "" is an error */
    LM_CONFIG_PORT0 = 1 << 1,    /* addresses: port 0 allowed (listen) */
    LM_CONFIG_SECRET = 1 << 2,   /* never printed */
    LM_CONFIG_HOST_OK = 1 << 3,  /* addresses: a bare "host" is fine too */
};

typedef struct lm_config_setting {
    const char *name;
    lm_config_type type;
    unsigned flags;
    int64_t min, max;       /* INT, SIZE, DURATION */
    const char *def;        /* the default, written as in the file */
    const char *env;        /* LUMEN_... */
    const char *env_shared; /* a variable shared by several settings, applied
                               before env (LUMEN_ADVERTISE_ADDR), or NULL */
    const char *help;
    size_t offset; /* of the field in the role's struct */
} lm_config_setting;

typedef struct lm_config_section {
    const char *name;
    size_t offset; /* of the role's struct in lm_config */
    const lm_config_setting *settings;
    size_t count;
} lm_config_section;

const lm_config_section *lm_config_sections(size_t *count);

/* Value parsers behind the loader, also for flags and protocol fields.
 * They fail with LUMEN_INVALID_ARGUMENT and a reason. */
lumen_status lm_parse_size(const char *text, uint64_t *out);
lumen_status lm_parse_duration_ms(const char *text, int64_t *out);
lumen_status lm_parse_bool(const char *text, bool *out);
/* Splits "host:port" ("[::1]:80" gives host "::1"). flags: LM_CONFIG_PORT0
 * allows port 0, LM_CONFIG_HOST_OK a bare host (port 0 then). host and port
 * may be NULL to only validate. */
lumen_status lm_parse_addr(const char *text, unsigned flags, char *host, size_t host_cap,
                           uint16_t *port);

#endif

/* test_config.c - defaults, the shipped file, env precedence, value syntax,
 * every error path's file:line:reason, lm_config_set and the print round trip. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "test_util.h"

static char *tmpdir;
static char path[512]; /* the file the last write_cfg() wrote */

/* Asserts st is LUMEN_CONFIG and its message contains (or, exact, equals) want. */
#define ASSERT_ERR_(st, want, exact)                                                       \
    do {                                                                                   \
        lumen_status s_ = (st);                                                            \
        int ok_ = s_.code == LUMEN_CONFIG &&                                               \
                  ((exact) ? strcmp(s_.msg, (want)) == 0 : strstr(s_.msg, (want)) != NULL); \
        if (!ok_)                                                                          \
            fprintf(stderr, "\n%s:%d: got %s \"%s\", wanted CONFIG %s \"%s\"\n", __FILE__,  \
                    __LINE__, lumen_code_name(s_.code), s_.msg,                            \
                    (exact) ? "equal to" : "containing", (want));                          \
        CU_ASSERT(ok_);                                                                    \
    } while (0)
#define ASSERT_ERR(st, want) ASSERT_ERR_(st, want, 0)
#define ASSERT_ERR_IS(st, want) ASSERT_ERR_(st, want, 1)

/* "<path>:<line>: <rest>" for the file written last. */
static const char *at_line(int line, const char *rest) {
    static char buf[768];
    snprintf(buf, sizeof buf, "%s:%d: %s", path, line, rest);
    return buf;
}

static void write_cfg(const char *text) {
    static int n;
    snprintf(path, sizeof path, "%s/t%d.cfg", tmpdir, n++);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

static lumen_status load_text(const char *text, lm_config *cfg) {
    write_cfg(text);
    return lm_config_load(path, cfg);
}

static void unset_all_env(void) {
    size_t n;
    const lm_config_section *secs = lm_config_sections(&n);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < secs[i].count; j++) {
            unsetenv(secs[i].settings[j].env);
            if (secs[i].settings[j].env_shared) unsetenv(secs[i].settings[j].env_shared);
        }
}

/* Compares every setting through the tables; skip names one ("cluster.token"). */
static int config_equal(const lm_config *a, const lm_config *b, const char *skip) {
    size_t n;
    const lm_config_section *secs = lm_config_sections(&n);
    int equal = 1;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < secs[i].count; j++) {
            const lm_config_setting *s = &secs[i].settings[j];
            char name[64];
            snprintf(name, sizeof name, "%s.%s", secs[i].name, s->name);
            if (skip && strcmp(skip, name) == 0) continue;
            const char *fa = (const char *)a + secs[i].offset + s->offset;
            const char *fb = (const char *)b + secs[i].offset + s->offset;
            int same;
            switch (s->type) {
            case LM_CONFIG_STRING:
            case LM_CONFIG_ADDR: same = strcmp(*(char *const *)fa, *(char *const *)fb) == 0; break;
            case LM_CONFIG_INT: same = *(const int *)fa == *(const int *)fb; break;
            case LM_CONFIG_BOOL: same = *(const bool *)fa == *(const bool *)fb; break;
            case LM_CONFIG_SIZE: same = *(const uint64_t *)fa == *(const uint64_t *)fb; break;
            case LM_CONFIG_DURATION: same = *(const int64_t *)fa == *(const int64_t *)fb; break;
            case LM_CONFIG_LOG_LEVEL:
                same = *(const lm_log_level *)fa == *(const lm_log_level *)fb;
                break;
            default: same = 0;
            }
            if (!same) fprintf(stderr, "\n  %s differs\n", name);
            equal &= same;
        }
    return equal;
}

static void test_defaults(void) {
    lm_config c;
    LM_ASSERT_OK(lm_config_load(NULL, &c));
    CU_ASSERT_STRING_EQUAL(c.cluster.redis_addr, "127.0.0.1:6379");
    CU_ASSERT_STRING_EQUAL(c.cluster.redis_password, "");
    CU_ASSERT_STRING_EQUAL(c.cluster.key_prefix, "lumen:");
    CU_ASSERT_STRING_EQUAL(c.cluster.token, "");
    CU_ASSERT_STRING_EQUAL(c.cluster.scheduler_addr, "127.0.0.1:7400");
    CU_ASSERT_EQUAL(c.cluster.log_level, LM_LOG_INFO);
    CU_ASSERT_EQUAL(c.cluster.rpc_timeout_ms, 10000);
    CU_ASSERT_STRING_EQUAL(c.cluster.tls_cert, "");
    CU_ASSERT_STRING_EQUAL(c.scheduler.listen, "127.0.0.1:7400");
    CU_ASSERT_TRUE(c.scheduler.dashboard);
    CU_ASSERT_STRING_EQUAL(c.scheduler.dashboard_host, "127.0.0.1");
    CU_ASSERT_EQUAL(c.scheduler.dashboard_port, 8265);
    CU_ASSERT_EQUAL(c.scheduler.heartbeat_interval_ms, 1000);
    CU_ASSERT_EQUAL(c.scheduler.heartbeat_timeout_ms, 5000);
    CU_ASSERT_EQUAL(c.scheduler.max_retries, 3);
    CU_ASSERT_EQUAL(c.scheduler.inline_result_max, 102400);
    CU_ASSERT_STRING_EQUAL(c.objstore.listen, "127.0.0.1:7401");
    CU_ASSERT_STRING_EQUAL(c.objstore.advertise, "");
    CU_ASSERT_EQUAL(c.objstore.memory_limit, 2ull << 30);
    CU_ASSERT_STRING_EQUAL(c.objstore.spill_dir, "");
    CU_ASSERT_EQUAL(c.objstore.chunk_bytes, 1u << 20);
    CU_ASSERT_EQUAL(c.objstore.max_object_bytes, 64ull << 30);
    CU_ASSERT_STRING_EQUAL(c.worker.listen, "127.0.0.1:7402");
    CU_ASSERT_EQUAL(c.worker.slots, 0);
    CU_ASSERT_STRING_EQUAL(c.worker.library_path, "");
    CU_ASSERT_STRING_EQUAL(c.worker.executor, "");
    CU_ASSERT_EQUAL(c.worker.task_timeout_ms, 0);
    CU_ASSERT_EQUAL(c.worker.task_memory_limit, 0);
    CU_ASSERT_STRING_EQUAL(c.worker.run_dir, "");
    lm_config_free(&c);
    CU_ASSERT_PTR_NULL(c.cluster.redis_addr); /* freed and zeroed */
    lm_config_free(&c);                       /* twice is fine */
    lm_config_free(NULL);
}

static void test_shipped_file(void) {
    const char *shipped = LUMEN_SOURCE_DIR "/config/lumen.cfg";
    lm_config defaults, c;
    LM_ASSERT_OK(lm_config_load(NULL, &defaults));
    LM_ASSERT_OK(lm_config_load(shipped, &c));
    CU_ASSERT_TRUE(config_equal(&defaults, &c, NULL));

    /* It documents every setting: its line and its env var are there. */
    FILE *f = fopen(shipped, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    static char text[64 * 1024];
    text[fread(text, 1, sizeof text - 1, f)] = '\0';
    fclose(f);
    size_t n;
    const lm_config_section *secs = lm_config_sections(&n);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < secs[i].count; j++) {
            char line[96];
            snprintf(line, sizeof line, "\n  %s = ", secs[i].settings[j].name);
            if (!strstr(text, line) || !strstr(text, secs[i].settings[j].env))
                fprintf(stderr, "\n  lumen.cfg lacks %s.%s\n", secs[i].name,
                        secs[i].settings[j].name);
            CU_ASSERT_PTR_NOT_NULL(strstr(text, line));
            CU_ASSERT_PTR_NOT_NULL(strstr(text, secs[i].settings[j].env));
        }
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "LUMEN_ADVERTISE_ADDR"));
    lm_config_free(&defaults);
    lm_config_free(&c);
}

static void test_table(void) {
    size_t n;
    const lm_config_section *secs = lm_config_sections(&n);
    CU_ASSERT_EQUAL(n, 4);
    const char *seen[128];
    size_t nseen = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < secs[i].count; j++) {
            const lm_config_setting *s = &secs[i].settings[j];
            CU_ASSERT_TRUE(s->help != NULL && s->help[0] != '\0');
            CU_ASSERT_EQUAL(strncmp(s->env, "LUMEN_", 6), 0);
            if (i > 0) { /* role settings: LUMEN_<ROLE>_ */
                char want[32];
                snprintf(want, sizeof want, "LUMEN_%s_", secs[i].name);
                for (char *p = want; *p; p++) *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
                CU_ASSERT_EQUAL(strncmp(s->env, want, strlen(want)), 0);
            }
            for (size_t k = 0; k < nseen; k++) CU_ASSERT_STRING_NOT_EQUAL(seen[k], s->env);
            if (nseen < 128) seen[nseen++] = s->env;
        }
}

static void test_file_overrides(void) {
    lm_config c;
    LM_ASSERT_OK(load_text("# comment\n"
                           "cluster = {\n"
                           "  redis_addr = \"redis.local:6380\";\n"
                           "  key_prefix = \"a\\\"b\\\\c:\";\n"
                           "  log_level = \"debug\";\n"
                           "  rpc_timeout_ms = \"2m\";\n"
                           "};\n"
                           "scheduler: { dashboard = false; dashboard_port = 0; max_retries = 0;\n"
                           "  listen = \"[::1]:0\"; inline_result_max = 0; };\n"
                           "objstore = { memory_limit = \"512MiB\"; chunk_bytes = 65536;\n"
                           "  max_object_bytes = 5368709120L; advertise = \"10.0.0.7\"; };\n"
                           "worker = { slots = 16; task_timeout_ms = 250;\n"
                           "  task_memory_limit = \"1 g\";\n"
                           "  library_path = \"/opt/a:/opt/b\"; };\n",
                           &c));
    CU_ASSERT_STRING_EQUAL(c.cluster.redis_addr, "redis.local:6380");
    CU_ASSERT_STRING_EQUAL(c.cluster.key_prefix, "a\"b\\c:");
    CU_ASSERT_EQUAL(c.cluster.log_level, LM_LOG_DEBUG);
    CU_ASSERT_EQUAL(c.cluster.rpc_timeout_ms, 120000);
    CU_ASSERT_FALSE(c.scheduler.dashboard);
    CU_ASSERT_EQUAL(c.scheduler.dashboard_port, 0);
    CU_ASSERT_EQUAL(c.scheduler.max_retries, 0);
    CU_ASSERT_STRING_EQUAL(c.scheduler.listen, "[::1]:0");
    CU_ASSERT_EQUAL(c.scheduler.inline_result_max, 0);
    CU_ASSERT_EQUAL(c.objstore.memory_limit, 512u << 20);
    CU_ASSERT_EQUAL(c.objstore.chunk_bytes, 65536);
    CU_ASSERT_EQUAL(c.objstore.max_object_bytes, 5ull << 30);
    CU_ASSERT_STRING_EQUAL(c.objstore.advertise, "10.0.0.7");
    CU_ASSERT_EQUAL(c.worker.slots, 16);
    CU_ASSERT_EQUAL(c.worker.task_timeout_ms, 250);
    CU_ASSERT_EQUAL(c.worker.task_memory_limit, 1u << 30);
    CU_ASSERT_STRING_EQUAL(c.worker.library_path, "/opt/a:/opt/b");
    /* untouched settings keep their defaults */
    CU_ASSERT_STRING_EQUAL(c.cluster.scheduler_addr, "127.0.0.1:7400");
    CU_ASSERT_EQUAL(c.scheduler.heartbeat_timeout_ms, 5000);
    lm_config_free(&c);

    LM_ASSERT_OK(load_text("", &c)); /* an empty file is all defaults */
    CU_ASSERT_EQUAL(c.worker.slots, 0);
    lm_config_free(&c);
}

static void test_env_beats_file(void) {
    lm_config c;
    write_cfg("worker = { slots = 4; advertise = \"file:1\"; };\n"
              "cluster = { log_level = \"error\"; token = \"from-file\"; };\n"
              "scheduler = { dashboard = true; };\n");
    setenv("LUMEN_WORKER_SLOTS", "8", 1);
    setenv("LUMEN_ADVERTISE_ADDR", "10.1.2.3", 1);
    setenv("LUMEN_WORKER_ADVERTISE", "worker-7:7402", 1); /* the specific one wins */
    setenv("LUMEN_LOG_LEVEL", "DEBUG", 1);
    setenv("LUMEN_TOKEN", "", 1); /* empty = unset: the file's value stays */
    setenv("LUMEN_SCHEDULER_DASHBOARD", "no", 1);
    setenv("LUMEN_OBJSTORE_MEMORY_LIMIT", "3GiB", 1);
    setenv("LUMEN_REDIS_ADDR", "redis:6379", 1);
    LM_ASSERT_OK(lm_config_load(path, &c));
    CU_ASSERT_EQUAL(c.worker.slots, 8);
    CU_ASSERT_STRING_EQUAL(c.worker.advertise, "worker-7:7402");
    CU_ASSERT_STRING_EQUAL(c.objstore.advertise, "10.1.2.3");
    CU_ASSERT_EQUAL(c.cluster.log_level, LM_LOG_DEBUG);
    CU_ASSERT_STRING_EQUAL(c.cluster.token, "from-file");
    CU_ASSERT_FALSE(c.scheduler.dashboard);
    CU_ASSERT_EQUAL(c.objstore.memory_limit, 3ull << 30);
    CU_ASSERT_STRING_EQUAL(c.cluster.redis_addr, "redis:6379");
    lm_config_free(&c);

    /* no file: env over defaults */
    LM_ASSERT_OK(lm_config_load(NULL, &c));
    CU_ASSERT_EQUAL(c.worker.slots, 8);
    lm_config_free(&c);
    unset_all_env();
}

static void test_env_errors(void) {
    lm_config c;
    setenv("LUMEN_WORKER_SLOTS", "abc", 1);
    ASSERT_ERR_IS(lm_config_load(NULL, &c), "LUMEN_WORKER_SLOTS: not an integer: \"abc\"");
    CU_ASSERT_PTR_NULL(c.cluster.redis_addr); /* nothing to free after a failure */
    setenv("LUMEN_WORKER_SLOTS", "99999", 1);
    ASSERT_ERR_IS(lm_config_load(NULL, &c),
                  "LUMEN_WORKER_SLOTS: must be between 0 and 4096, got 99999");
    unsetenv("LUMEN_WORKER_SLOTS");
    setenv("LUMEN_OBJSTORE_MEMORY_LIMIT", "2GB", 1);
    ASSERT_ERR(lm_config_load(NULL, &c), "LUMEN_OBJSTORE_MEMORY_LIMIT: bad size suffix: \"2GB\"");
    unsetenv("LUMEN_OBJSTORE_MEMORY_LIMIT");
    setenv("LUMEN_ADVERTISE_ADDR", "host:0", 1);
    ASSERT_ERR(lm_config_load(NULL, &c), "LUMEN_ADVERTISE_ADDR: port must be between 1 and 65535");
    unsetenv("LUMEN_ADVERTISE_ADDR");
    setenv("LUMEN_SCHEDULER_DASHBOARD", "maybe", 1);
    ASSERT_ERR(lm_config_load(NULL, &c), "LUMEN_SCHEDULER_DASHBOARD: not a bool: \"maybe\"");
    unsetenv("LUMEN_SCHEDULER_DASHBOARD");
    setenv("LUMEN_LOG_LEVEL", "verbose", 1);
    ASSERT_ERR(lm_config_load(NULL, &c), "LUMEN_LOG_LEVEL: unknown log level \"verbose\"");
    unset_all_env();
}

static void test_parse_size(void) {
    static const struct {
        const char *text;
        uint64_t want;
    } good[] = {{"0", 0},
                {"1", 1},
                {"1048576", 1048576},
                {"7B", 7},
                {"64k", 65536},
                {"64K", 65536},
                {"2KiB", 2048},
                {"512MiB", 512ull << 20},
                {"512m", 512ull << 20},
                {"2GiB", 2ull << 30},
                {"1 GiB", 1ull << 30},
                {"3TiB", 3ull << 40},
                {"16777215TiB", 16777215ull << 40},
                {"18446744073709551615", UINT64_MAX}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t v = 1234;
        LM_ASSERT_OK(lm_parse_size(good[i].text, &v));
        CU_ASSERT_EQUAL(v, good[i].want);
    }
    static const char *const bad[] = {"",     "-1",     "-0",     "GiB",   "1.5GiB",
                                      "2GB",  "1MB",    "12XB",   "1 ",    " 1",
                                      "1  GiB", "0x10", "1e3",    "1GiBs", "18446744073709551616",
                                      "16777216TiB", "99999999999999999999K"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 1234;
        LM_ASSERT_CODE(lm_parse_size(bad[i], &v), LUMEN_INVALID_ARGUMENT);
        CU_ASSERT_EQUAL(v, 1234); /* untouched */
    }
    uint64_t v;
    lumen_status st = lm_parse_size("16777216TiB", &v);
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "too large"));
    st = lm_parse_size("-5", &v);
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "negative"));
}

static void test_parse_duration(void) {
    static const struct {
        const char *text;
        int64_t want;
    } good[] = {{"0", 0},     {"250", 250},     {"250ms", 250},   {"5s", 5000},
                {"2m", 120000}, {"1h", 3600000}, {"10 s", 10000}, {"3S", 3000},
                {"9223372036854775807", INT64_MAX}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t v = 1234;
        LM_ASSERT_OK(lm_parse_duration_ms(good[i].text, &v));
        CU_ASSERT_EQUAL(v, good[i].want);
    }
    static const char *const bad[] = {"", "-1", "s", "5x", "5sec", "1.5s", "5 ", "1d",
                                      "9223372036854775808", "9223372036854775807s",
                                      "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 1234;
        LM_ASSERT_CODE(lm_parse_duration_ms(bad[i], &v), LUMEN_INVALID_ARGUMENT);
        CU_ASSERT_EQUAL(v, 1234);
    }
}

static void test_parse_bool(void) {
    static const char *const yes[] = {"true", "TRUE", "yes", "on", "1"};
    static const char *const no[] = {"false", "False", "no", "off", "0"};
    for (size_t i = 0; i < 5; i++) {
        bool b = false;
        LM_ASSERT_OK(lm_parse_bool(yes[i], &b));
        CU_ASSERT_TRUE(b);
        LM_ASSERT_OK(lm_parse_bool(no[i], &b));
        CU_ASSERT_FALSE(b);
    }
    static const char *const bad[] = {"", "2", "truth", "y", " true", "-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bool b = true;
        LM_ASSERT_CODE(lm_parse_bool(bad[i], &b), LUMEN_INVALID_ARGUMENT);
    }
}

static void test_parse_addr(void) {
    char host[64];
    uint16_t port = 1;
    LM_ASSERT_OK(lm_parse_addr("127.0.0.1:6379", 0, host, sizeof host, &port));
    CU_ASSERT_STRING_EQUAL(host, "127.0.0.1");
    CU_ASSERT_EQUAL(port, 6379);
    LM_ASSERT_OK(lm_parse_addr("[::1]:65535", 0, host, sizeof host, &port));
    CU_ASSERT_STRING_EQUAL(host, "::1");
    CU_ASSERT_EQUAL(port, 65535);
    LM_ASSERT_OK(lm_parse_addr("redis-0.redis.svc:1", 0, NULL, 0, NULL));
    LM_ASSERT_CODE(lm_parse_addr("localhost:0", 0, NULL, 0, NULL), LUMEN_INVALID_ARGUMENT);
    LM_ASSERT_OK(lm_parse_addr("localhost:0", LM_CONFIG_PORT0, host, sizeof host, &port));
    CU_ASSERT_EQUAL(port, 0);
    LM_ASSERT_CODE(lm_parse_addr("pod-ip", 0, NULL, 0, NULL), LUMEN_INVALID_ARGUMENT);
    port = 9;
    LM_ASSERT_OK(lm_parse_addr("10.0.0.1", LM_CONFIG_HOST_OK, host, sizeof host, &port));
    CU_ASSERT_STRING_EQUAL(host, "10.0.0.1");
    CU_ASSERT_EQUAL(port, 0);
    LM_ASSERT_OK(lm_parse_addr("[fe80::1]", LM_CONFIG_HOST_OK, host, sizeof host, &port));
    CU_ASSERT_STRING_EQUAL(host, "fe80::1");
    static const char *const bad[] = {"", "host:", ":80", "host:65536", "host:-1", "host:80x",
                                      "host: 80", "host:99999999999999999999999", "::1:80",
                                      "[::1", "[::1]80", "[]:80", "a b:80", "host:0x50"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        LM_ASSERT_CODE(lm_parse_addr(bad[i], LM_CONFIG_PORT0 | LM_CONFIG_HOST_OK, host,
                                     sizeof host, &port),
                       LUMEN_INVALID_ARGUMENT);
    char tiny[4];
    LM_ASSERT_CODE(lm_parse_addr("longhost:1", 0, tiny, sizeof tiny, &port),
                   LUMEN_INVALID_ARGUMENT);
}

static void test_error_syntax(void) {
    lm_config c;
    lumen_status st = load_text("cluster = {\n  token = \"x\";\n  redis_addr = ;\n};\n", &c);
    ASSERT_ERR(st, at_line(3, "syntax error"));
    st = load_text("worker = {\n slots = 1;\n slots = 2;\n};\n", &c);
    ASSERT_ERR(st, at_line(3, "duplicate setting name"));
    st = load_text("worker = { slots = 1;\n", &c); /* unterminated */
    ASSERT_ERR(st, path);
    CU_ASSERT_PTR_NULL(c.worker.listen);
}

static void test_error_unknown(void) {
    lm_config c;
    ASSERT_ERR(load_text("cluster = {};\n\nwroker = {\n  slots = 2;\n};\n", &c),
               at_line(3, "unknown section \"wroker\""));
    ASSERT_ERR_IS(load_text("worker = {\n  slots = 2;\n  slotz = 3;\n};\n", &c),
                  at_line(3, "unknown setting \"worker.slotz\""));
    ASSERT_ERR(load_text("slots = 2;\n", &c), at_line(1, "unknown section \"slots\""));
    /* a known name in the wrong section is still unknown there */
    ASSERT_ERR(load_text("worker = { token = \"x\"; };\n", &c),
               at_line(1, "unknown setting \"worker.token\""));
}

static void test_error_wrong_type(void) {
    lm_config c;
    ASSERT_ERR_IS(load_text("worker = {\n  slots = \"4\";\n};\n", &c),
                  at_line(2, "worker.slots: expected an integer, got a string"));
    ASSERT_ERR(load_text("scheduler = {\n\n  dashboard = 1;\n};\n", &c),
               at_line(3, "scheduler.dashboard: expected true or false, got an integer"));
    ASSERT_ERR(load_text("objstore = { memory_limit = 1.5; };\n", &c),
               at_line(1, "objstore.memory_limit: expected a size"));
    ASSERT_ERR(load_text("cluster = { redis_addr = 6379; };\n", &c),
               at_line(1, "cluster.redis_addr: expected a \"host:port\" string, got an integer"));
    ASSERT_ERR(load_text("cluster = { key_prefix = [\"a\"]; };\n", &c),
               at_line(1, "cluster.key_prefix: expected a string, got an array"));
    ASSERT_ERR(load_text("cluster = { log_level = true; };\n", &c),
               at_line(1, "cluster.log_level: expected a log level"));
    ASSERT_ERR(load_text("worker = { slots = { n = 1; }; };\n", &c),
               at_line(1, "worker.slots: expected an integer, got a group"));
    ASSERT_ERR(load_text("\nworker = 3;\n", &c), at_line(2, "worker: expected a group"));
}

static void test_error_bounds(void) {
    lm_config c;
    ASSERT_ERR_IS(load_text("\n\nworker = {\n  slots = 99999;\n};\n", &c),
                  at_line(4, "worker.slots: must be between 0 and 4096, got 99999"));
    ASSERT_ERR_IS(load_text("worker = { slots = -1; };\n", &c),
                  at_line(1, "worker.slots: must be between 0 and 4096, got -1"));
    ASSERT_ERR_IS(load_text("objstore = { memory_limit = \"1KiB\"; };\n", &c),
                  at_line(1, "objstore.memory_limit: must be between 1MiB and 1024TiB, got 1KiB"));
    ASSERT_ERR(load_text("objstore = { memory_limit = -5; };\n", &c),
               at_line(1, "objstore.memory_limit: negative size: \"-5\""));
    ASSERT_ERR_IS(load_text("scheduler = { heartbeat_interval_ms = \"2h\"; };\n", &c),
                  at_line(1, "scheduler.heartbeat_interval_ms: must be between 10ms and 1h, "
                             "got 2h"));
    ASSERT_ERR(load_text("objstore = { chunk_bytes = \"1 MB\"; };\n", &c),
               at_line(1, "objstore.chunk_bytes: bad size suffix"));
    ASSERT_ERR(load_text("cluster = { rpc_timeout_ms = \"5 sec\"; };\n", &c),
               at_line(1, "cluster.rpc_timeout_ms: bad duration suffix"));
    ASSERT_ERR(load_text("cluster = { log_level = \"loud\"; };\n", &c),
               at_line(1, "cluster.log_level: unknown log level \"loud\""));
    ASSERT_ERR(load_text("scheduler = { dashboard_host = \"\"; };\n", &c),
               at_line(1, "scheduler.dashboard_host: must not be empty"));
}

static void test_error_wide_int(void) {
    lm_config c;
    /* libconfig 1.5 would wrap 5368709120 to 1GiB and accept it: must be refused */
    ASSERT_ERR(load_text("objstore = {\n  memory_limit = 5368709120;\n};\n", &c),
               at_line(2, "integer 5368709120 does not fit in 32 bits"));
    ASSERT_ERR(load_text("worker = { slots = 0x100000004; };\n", &c),
               at_line(1, "integer 0x100000004 does not fit in 32 bits"));
    ASSERT_ERR(load_text("\nworker = { slots = 999999999999999999999999; };\n", &c),
               at_line(2, "integer 999999999999999999999999 does not fit"));
    ASSERT_ERR(load_text("worker = { slots = -2147483649; };\n", &c),
               at_line(1, "integer 2147483649 does not fit"));
    /* the L form, and big digits in comments and strings, are fine */
    LM_ASSERT_OK(load_text("# 99999999999\n/* 99999999999\n */ objstore = {\n"
                           "  memory_limit = 5368709120L; // 99999999999\n"
                           "  spill_dir = \"/x/99999999999\"; };\n",
                           &c));
    CU_ASSERT_EQUAL(c.objstore.memory_limit, 5ull << 30);
    CU_ASSERT_STRING_EQUAL(c.objstore.spill_dir, "/x/99999999999");
    lm_config_free(&c);
    /* the largest 32-bit literals pass this check and meet the bounds */
    ASSERT_ERR(load_text("worker = { slots = 2147483647; };\n", &c),
               at_line(1, "worker.slots: must be between 0 and 4096, got 2147483647"));
    ASSERT_ERR(load_text("worker = { slots = -2147483648; };\n", &c),
               at_line(1, "worker.slots: must be between 0 and 4096, got -2147483648"));
}

static void test_error_bad_address(void) {
    lm_config c;
    ASSERT_ERR_IS(load_text("cluster = {\n  redis_addr = \"localhost\";\n};\n", &c),
                  at_line(2, "cluster.redis_addr: not a host:port address: \"localhost\""));
    ASSERT_ERR(load_text("cluster = { scheduler_addr = \"head:0\"; };\n", &c),
               at_line(1, "cluster.scheduler_addr: port must be between 1 and 65535"));
    ASSERT_ERR(load_text("worker = { listen = \"0.0.0.0:70000\"; };\n", &c),
               at_line(1, "worker.listen: port must be between 0 and 65535"));
    ASSERT_ERR(load_text("worker = { advertise = \"fe80::1:7402\"; };\n", &c),
               at_line(1, "worker.advertise: IPv6 hosts need brackets"));
    ASSERT_ERR(load_text("cluster = { redis_addr = \"\"; };\n", &c),
               at_line(1, "cluster.redis_addr: must not be empty"));
    LM_ASSERT_OK(load_text("worker = { listen = \"0.0.0.0:0\"; advertise = \"\"; };\n", &c));
    lm_config_free(&c);
}

static void test_error_missing_file(void) {
    lm_config c;
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no-such.cfg", tmpdir);
    lumen_status st = lm_config_load(missing, &c);
    ASSERT_ERR(st, missing);
    ASSERT_ERR(st, "No such file or directory");
    ASSERT_ERR(lm_config_load(tmpdir, &c), "Is a directory");
}

static void test_cross_checks(void) {
    lm_config c;
    ASSERT_ERR(load_text("scheduler = { heartbeat_interval_ms = 5000; };\n", &c),
               "scheduler.heartbeat_timeout_ms (5000) must be greater than "
               "scheduler.heartbeat_interval_ms (5000)");
    ASSERT_ERR(load_text("cluster = { tls_cert = \"/etc/lumen/cert.pem\"; };\n", &c),
               "cluster.tls_cert and cluster.tls_key must be set together");
    LM_ASSERT_OK(load_text("cluster = { tls_cert = \"c.pem\"; tls_key = \"k.pem\"; };\n", &c));
    LM_ASSERT_OK(lm_config_set(&c, "scheduler", "heartbeat_timeout_ms", "500"));
    ASSERT_ERR(lm_config_check(&c), "heartbeat_timeout_ms (500)");
    lm_config_free(&c);
}

static void test_set(void) {
    lm_config c;
    LM_ASSERT_OK(lm_config_load(NULL, &c));
    LM_ASSERT_OK(lm_config_set(&c, "worker", "slots", "12"));
    CU_ASSERT_EQUAL(c.worker.slots, 12);
    LM_ASSERT_OK(lm_config_set(&c, "worker", "run_dir", "/run/a"));
    LM_ASSERT_OK(lm_config_set(&c, "worker", "run_dir", "/run/b")); /* replaces, no leak */
    CU_ASSERT_STRING_EQUAL(c.worker.run_dir, "/run/b");
    LM_ASSERT_OK(lm_config_set(&c, "scheduler", "dashboard", "off"));
    CU_ASSERT_FALSE(c.scheduler.dashboard);
    LM_ASSERT_OK(lm_config_set(&c, "objstore", "memory_limit", "8G"));
    CU_ASSERT_EQUAL(c.objstore.memory_limit, 8ull << 30);

    ASSERT_ERR_IS(lm_config_set(&c, "worker", "slots", "99999"),
                  "worker.slots: must be between 0 and 4096, got 99999");
    ASSERT_ERR_IS(lm_config_set(&c, "worker", "slots", "12abc"),
                  "worker.slots: not an integer: \"12abc\"");
    ASSERT_ERR_IS(lm_config_set(&c, "worker", "slots", "99999999999999999999"),
                  "worker.slots: integer out of range: \"99999999999999999999\"");
    CU_ASSERT_EQUAL(c.worker.slots, 12); /* unchanged by the failures */
    ASSERT_ERR(lm_config_set(&c, "cluster", "redis_addr", "nohost"), "cluster.redis_addr: ");
    CU_ASSERT_STRING_EQUAL(c.cluster.redis_addr, "127.0.0.1:6379");
    ASSERT_ERR_IS(lm_config_set(&c, "wroker", "slots", "1"), "unknown section \"wroker\"");
    ASSERT_ERR_IS(lm_config_set(&c, "worker", "slotz", "1"), "unknown setting \"worker.slotz\"");
    LM_ASSERT_CODE(lm_config_set(&c, "worker", "slots", NULL), LUMEN_INVALID_ARGUMENT);
    lm_config_free(&c);
}

/* lm_config_print's text, loaded back. */
static lumen_status reload_printed(const lm_config *c, lm_config *out, char **text) {
    size_t len;
    FILE *mem = open_memstream(text, &len);
    lm_config_print(c, mem);
    fclose(mem);
    write_cfg(*text);
    return lm_config_load(path, out);
}

static void test_print_roundtrip(void) {
    lm_config c, back;
    char *text = NULL;
    LM_ASSERT_OK(lm_config_load(NULL, &c));
    LM_ASSERT_OK(reload_printed(&c, &back, &text));
    CU_ASSERT_TRUE(config_equal(&c, &back, NULL));
    lm_config_free(&back);
    free(text);

    /* every kind of value away from its default, strings that need escapes */
    static const char *const sets[][3] = {
        {"cluster", "key_prefix", "we\"ird\\key\n\t\x01:"},
        {"cluster", "redis_addr", "[2001:db8::1]:6379"},
        {"cluster", "log_level", "off"},
        {"cluster", "token", "s3cret-token"},
        {"cluster", "redis_password", "pw-ä"},
        {"cluster", "rpc_timeout_ms", "1234"},
        {"scheduler", "dashboard", "false"},
        {"scheduler", "listen", "0.0.0.0:0"},
        {"scheduler", "max_retries", "1000"},
        {"scheduler", "inline_result_max", "1000"},
        {"objstore", "memory_limit", "5GiB"},
        {"objstore", "max_object_bytes", "4294967297"},
        {"objstore", "advertise", "objstore-3"},
        {"worker", "slots", "4096"},
        {"worker", "task_timeout_ms", "2591999999"}, /* past 2^31: printed as a string */
        {"worker", "task_memory_limit", "3000000000"},
        {"worker", "library_path", "/a b:/c"},
    };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        LM_ASSERT_OK(lm_config_set(&c, sets[i][0], sets[i][1], sets[i][2]));
    LM_ASSERT_OK(reload_printed(&c, &back, &text));
    CU_ASSERT_PTR_NULL(strstr(text, "s3cret-token")); /* secrets never printed */
    CU_ASSERT_PTR_NULL(strstr(text, "pw-"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "memory_limit = \"5GiB\";"));
    CU_ASSERT_STRING_EQUAL(back.cluster.token, "");
    CU_ASSERT_EQUAL(back.worker.task_timeout_ms, 2591999999LL);
    CU_ASSERT_EQUAL(back.objstore.max_object_bytes, 4294967297ULL);
    CU_ASSERT_STRING_EQUAL(back.cluster.key_prefix, "we\"ird\\key\n\t\x01:");
    /* equal but for the secrets, which come back from the environment */
    free(back.cluster.token);
    back.cluster.token = strdup(c.cluster.token);
    free(back.cluster.redis_password);
    back.cluster.redis_password = strdup(c.cluster.redis_password);
    CU_ASSERT_TRUE(config_equal(&c, &back, NULL));
    lm_config_free(&back);
    free(text);
    lm_config_free(&c);
}

static int suite_init(void) {
    unset_all_env(); /* the caller's LUMEN_* must not leak into expectations */
    tmpdir = lm_test_tmpdir("config");
    return tmpdir == NULL;
}

static int suite_cleanup(void) {
    lm_test_rmtree(tmpdir);
    free(tmpdir);
    return 0;
}

int main(void) {
    CU_TestInfo tests[] = {
        {"defaults", test_defaults},
        {"shipped lumen.cfg equals the defaults", test_shipped_file},
        {"table: env names", test_table},
        {"file overrides", test_file_overrides},
        {"env beats file", test_env_beats_file},
        {"env errors name the variable", test_env_errors},
        {"parse sizes", test_parse_size},
        {"parse durations", test_parse_duration},
        {"parse bools", test_parse_bool},
        {"parse addresses", test_parse_addr},
        {"error: syntax", test_error_syntax},
        {"error: unknown section/setting", test_error_unknown},
        {"error: wrong type", test_error_wrong_type},
        {"error: out of bounds", test_error_bounds},
        {"error: wide integer literal", test_error_wide_int},
        {"error: bad address", test_error_bad_address},
        {"error: missing file", test_error_missing_file},
        {"cross-setting checks", test_cross_checks},
        {"lm_config_set", test_set},
        {"print round trip", test_print_roundtrip},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("config", tests, suite_init, suite_cleanup);
}

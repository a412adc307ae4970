/*
 * test_examples.c - the word-count examples: the counting module's rules
 * (whitespace, ties, the serialized table), and most_frequent_word /
 * word_count on generated corpora against real clusters of 1 and 4 workers,
 * where every cluster method (tasks and actors) must agree with the local
 * count - except the two-round methods (seed, actors) on their documented
 * counterexample (examples/README.md). On a terminal the programs show a
 * progress bar on stderr; through a pipe they do not.
 */
#include <errno.h>
#include <poll.h>
#include <pty.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster.h"
#include "test_util.h"
#include "wordtable.h"

static char *dir;
static char corpus[700], counterexample[700], out_path[700];
static char output[256 * 1024]; /* the last program's stdout */

/* Runs build/bin/<prog> args... with stdout to `output` (stderr to the test's
 * stderr, for its timings); returns the exit code. */
static int run(const char *prog, ...) {
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)lm_test_bin(prog);
    va_list ap;
    va_start(ap, prog);
    for (const char *a; n < 31 && (a = va_arg(ap, const char *)) != NULL;) argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    return lm_test_run(argv, out_path, false, output, sizeof output);
}

/* The last line of `output`, into out. */
static void last_line(char *out, size_t cap) {
    size_t len = strlen(output);
    while (len > 0 && output[len - 1] == '\n') len--;
    size_t start = len;
    while (start > 0 && output[start - 1] != '\n') start--;
    snprintf(out, cap, "%.*s", (int)(len - start), output + start);
}

/* Runs most_frequent_word, with one more flag and its value when flag is
 * not NULL, and returns its answer line (static storage). */
static const char *answer_with(const char *addr, const char *file, const char *method, const char *chunks,
                               const char *flag, const char *value) {
    static char line[4][256];
    static int which;
    char *out = line[which++ % 4];
    out[0] = '\0';
    int rc = addr ? run("most_frequent_word", "--address", addr, "--input", file, "--method", method, "--chunks",
                        chunks, flag, value, NULL)
                  : run("most_frequent_word", "--input", file, "--method", method, NULL);
    CU_ASSERT_EQUAL(rc, 0);
    last_line(out, sizeof line[0]);
    fprintf(stderr, "\n  most_frequent_word --method %s --chunks %s %s %s: \"%s\"\n", method, chunks,
            flag ? flag : "", flag ? value : "", out);
    return out;
}

static const char *answer(const char *addr, const char *file, const char *method, const char *chunks) {
    return answer_with(addr, file, method, chunks, NULL, NULL);
}

static int suite_init(void) {
    dir = lm_test_tmpdir("examples");
    if (dir == NULL) return 1;
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
    snprintf(counterexample, sizeof counterexample, "%s/counterexample.txt", dir);
    snprintf(out_path, sizeof out_path, "%s/out.txt", dir);
    /* The counterexample of examples/README.md: three 20-byte lines, one per
     * chunk. "cat" is second in every chunk and first overall. */
    FILE *f = fopen(counterexample, "w");
    if (f == NULL) return 1;
    fputs("ant ant ant cat cat\nbee bee bee cat cat\neel eel eel cat cat\n", f);
    fclose(f);
    return run("gen_corpus", "--bytes", "8MiB", "--seed", "7", "--output", corpus, NULL) == 0 ? 0 : 1;
}

static int suite_cleanup(void) {
    lm_test_rmtree(dir);
    free(dir);
    return 0;
}

/* ---- the counting module, no cluster ---- */

static void test_words_and_ties(void) {
    wc_table *t = wc_table_new(0);
    /* Every ASCII whitespace separates; other bytes (NUL, \x1f, UTF-8) are
     * word bytes; case matters. */
    static const char text[] = " b\ta\nb\vA\fa\rb  a\x1f b caf\xc3\xa9 x\0y ";
    CU_ASSERT_EQUAL(wc_table_count_text(t, text, sizeof text - 1), 0);
    CU_ASSERT_EQUAL(wc_table_get(t, "a", 1), 2);
    CU_ASSERT_EQUAL(wc_table_get(t, "A", 1), 1);
    CU_ASSERT_EQUAL(wc_table_get(t, "b", 1), 4);
    CU_ASSERT_EQUAL(wc_table_get(t, "a\x1f", 2), 1);
    CU_ASSERT_EQUAL(wc_table_get(t, "caf\xc3\xa9", 5), 1);
    CU_ASSERT_EQUAL(wc_table_get(t, "x\0y", 3), 1);
    CU_ASSERT_EQUAL(wc_table_size(t), 6);
    wc_table_free(t);

    /* Ties go to the smaller word in byte order; a prefix sorts first. */
    t = wc_table_new(0);
    static const char tie[] = "bb ab abc ab bb abc z";
    wc_table_count_text(t, tie, sizeof tie - 1);
    wc_entry top[4];
    CU_ASSERT_EQUAL(wc_table_top(t, 4, top), 4);
    CU_ASSERT(top[0].len == 2 && memcmp(top[0].word, "ab", 2) == 0);
    CU_ASSERT(top[1].len == 3 && memcmp(top[1].word, "abc", 3) == 0);
    CU_ASSERT(top[2].len == 2 && memcmp(top[2].word, "bb", 2) == 0);
    CU_ASSERT(top[3].len == 1 && top[3].count == 1);
    wc_table_free(t);
}

static void test_table_roundtrip_and_merge(void) {
    wc_table *a = wc_table_new(0), *b = NULL;
    /* Enough words to make the table grow several times, some longer than 8 bytes. */
    char word[32];
    for (int i = 0; i < 20000; i++) {
        int len = snprintf(word, sizeof word, "w%d%s", i, i % 3 ? "" : "-a-longer-word");
        CU_ASSERT_EQUAL_FATAL(wc_table_add(a, word, (size_t)len, (uint64_t)i + 1), 0);
    }
    void *buf;
    size_t len;
    CU_ASSERT_EQUAL_FATAL(wc_table_serialize(a, &buf, &len), 0);
    CU_ASSERT_EQUAL_FATAL(wc_table_parse(buf, len, &b), 0);
    CU_ASSERT_EQUAL(wc_table_merge(b, buf, len), 0); /* now every count doubled */
    CU_ASSERT_EQUAL(wc_table_size(b), 20000);
    CU_ASSERT_EQUAL(wc_table_get(b, "w3-a-longer-word", 16), 8);
    CU_ASSERT_EQUAL(wc_table_get(b, "w19999", 6), 40000);
    /* Malformed input is refused, never read past its end. */
    wc_table *c = NULL;
    CU_ASSERT_EQUAL(wc_table_parse(buf, len - 1, &c), -EINVAL);
    CU_ASSERT_EQUAL(wc_table_parse("LWT1", 4, &c), -EINVAL);
    CU_ASSERT_EQUAL(wc_table_parse("XXXX\0", 5, &c), -EINVAL);
    CU_ASSERT_EQUAL(wc_table_parse("LWT1\x01\x00\x01", 7, &c), -EINVAL); /* empty word */
    CU_ASSERT_EQUAL(wc_table_parse("LWT1\x01\x05\x01" "ab", 9, &c), -EINVAL); /* past the end */
    CU_ASSERT_PTR_NULL(c);
    free(buf);
    wc_table_free(a);
    wc_table_free(b);
}

static void test_split_never_cuts_a_word(void) {
    static const char text[] = "alpha beta\ngamma delta epsilon zeta eta theta";
    size_t len = sizeof text - 1;
    for (size_t n = 1; n <= 12; n++) {
        size_t bounds[13];
        wc_split(text, len, n, bounds);
        CU_ASSERT_EQUAL(bounds[0], 0);
        CU_ASSERT_EQUAL(bounds[n], len);
        for (size_t i = 1; i < n; i++) {
            CU_ASSERT(bounds[i] >= bounds[i - 1]);
            CU_ASSERT(bounds[i] == len || wc_is_space((unsigned char)text[bounds[i] - 1]));
        }
    }
}

/* ---- the programs ---- */

static void test_local_and_bad_args(void) {
    CU_ASSERT_STRING_EQUAL(answer(NULL, counterexample, "local", "1"), "cat 6");
    CU_ASSERT_EQUAL(run("most_frequent_word", "--input", corpus, "--method", "guess", NULL), 2);
    CU_ASSERT_EQUAL(run("most_frequent_word", "--method", "local", NULL), 2);
    CU_ASSERT_EQUAL(run("word_count", "--input", corpus, "--method", "seed", NULL), 2);
    CU_ASSERT_EQUAL(run("word_count", "--input", corpus, "--method", "actors", NULL), 2);
    CU_ASSERT_EQUAL(run("most_frequent_word", "--input", corpus, "--method", "actors-exact", "--actors", "0", NULL), 2);
    CU_ASSERT_EQUAL(run("most_frequent_word", "--input", "/nonexistent", "--method", "local", NULL), 1);
}

static lm_test_cluster *start_cluster(int workers) {
    lm_test_cluster_opts opts = {.workers = workers, .slots = 2};
    lm_test_cluster *c = NULL;
    LM_ASSERT_OK(lm_test_cluster_start(&opts, &c));
    return c;
}

static void agree_with_local(lm_test_cluster *c) {
    const char *addr = lm_test_cluster_scheduler(c);
    char local[256];
    snprintf(local, sizeof local, "%s", answer(NULL, corpus, "local", "1"));
    CU_ASSERT(strlen(local) > 2);
    CU_ASSERT_STRING_EQUAL(answer(addr, corpus, "exact", "8"), local);
    CU_ASSERT_STRING_EQUAL(answer(addr, corpus, "exact", "1"), local);
    CU_ASSERT_STRING_EQUAL(answer(addr, corpus, "seed", "8"), local);
    /* The seed's rounds with one actor per chunk, and the actors that
     * accumulate: 4 of them (the default) sharing 8 chunks, 1 taking all. */
    CU_ASSERT_STRING_EQUAL(answer(addr, corpus, "actors", "8"), local);
    CU_ASSERT_STRING_EQUAL(answer(addr, corpus, "actors-exact", "8"), local);
    CU_ASSERT_STRING_EQUAL(answer_with(addr, corpus, "actors-exact", "5", "--actors", "1"), local);

    /* word_count's whole top 25 matches too, order and ties included; with
     * actors, 3 of them take 6 chunks round-robin. */
    static char top_local[sizeof output];
    CU_ASSERT_EQUAL(run("word_count", "--input", corpus, "--top", "25", "--method", "local", NULL), 0);
    snprintf(top_local, sizeof top_local, "%s", output);
    CU_ASSERT_EQUAL(run("word_count", "--address", addr, "--input", corpus, "--top", "25", "--chunks", "6", NULL), 0);
    CU_ASSERT_STRING_EQUAL(output, top_local);
    CU_ASSERT_EQUAL(run("word_count", "--address", addr, "--input", corpus, "--top", "25", "--chunks", "6",
                        "--method", "actors-exact", "--actors", "3", NULL), 0);
    CU_ASSERT_STRING_EQUAL(output, top_local);
}

static void test_one_worker(void) {
    lm_test_cluster *c = start_cluster(1);
    if (c == NULL) return;
    agree_with_local(c);
    lm_test_cluster_stop(c);
}

static void test_four_workers_and_the_counterexample(void) {
    lm_test_cluster *c = start_cluster(4);
    if (c == NULL) return;
    agree_with_local(c);
    const char *addr = lm_test_cluster_scheduler(c);
    /* One line per chunk: each chunk's top word (ant, bee, eel: 3 each)
     * becomes a candidate, cat (2 per chunk, 6 in all) never does. */
    CU_ASSERT_STRING_EQUAL(answer(addr, counterexample, "exact", "3"), "cat 6");
    CU_ASSERT_STRING_EQUAL(answer(addr, counterexample, "seed", "3"), "ant 3");
    CU_ASSERT_STRING_EQUAL(answer(addr, counterexample, "actors", "3"), "ant 3");
    CU_ASSERT_STRING_EQUAL(answer(addr, counterexample, "actors-exact", "3"), "cat 6");
    /* An uploaded library: the actors are made from it (lumen_actor_opts.library). */
    const char *library = LUMEN_TEST_LIB_DIR "/libwordcount.so";
    CU_ASSERT_STRING_EQUAL(answer_with(addr, counterexample, "actors", "3", "--library", library), "ant 3");
    CU_ASSERT_STRING_EQUAL(answer_with(addr, counterexample, "actors-exact", "3", "--library", library), "cat 6");
    lm_test_cluster_stop(c);
}

/* Runs argv with stdout and stderr on a new pseudo-terminal of 100 columns
 * (terminal) or a pipe, leaving what it wrote in `output`; its exit code. */
static int run_captured(char *const argv[], bool terminal) {
    int fd = -1, p[2] = {-1, -1};
    struct winsize ws = {.ws_row = 24, .ws_col = 100};
    pid_t pid = terminal ? forkpty(&fd, NULL, NULL, &ws) : pipe(p) == 0 ? fork() : -1;
    if (pid == 0) {
        if (!terminal) {
            dup2(p[1], STDOUT_FILENO);
            dup2(p[1], STDERR_FILENO);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    if (!terminal) {
        close(p[1]);
        fd = p[0];
    }
    size_t len = 0;
    bool stuck = false;
    for (struct pollfd pf = {fd, POLLIN, 0}; pid > 0 && len + 1 < sizeof output;) {
        if ((stuck = poll(&pf, 1, (int)LM_TEST_TIMEOUT(60000)) <= 0)) break;
        ssize_t n = read(fd, output + len, sizeof output - 1 - len);
        if (n <= 0) break; /* the end of the pipe; EIO for a terminal whose other side closed */
        len += (size_t)n;
    }
    output[len] = '\0';
    close(fd);
    int status = -1;
    if (pid > 0 && stuck) kill(pid, SIGKILL);
    if (pid > 0 && waitpid(pid, &status, 0) != pid) status = -1;
    return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static size_t count_of(const char *hay, const char *needle) {
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++) n++;
    return n;
}

/* A bar on a terminal, redrawn in place at most ten times a second and
 * ended with the wait; nothing of it through a pipe. */
static void test_progress_bar(void) {
    lm_test_cluster *c = start_cluster(1);
    if (c == NULL) return;
    char *argv[] = {(char *)lm_test_bin("most_frequent_word"), "--address", (char *)lm_test_cluster_scheduler(c),
                    "--input", corpus, "--chunks", "8", NULL};
    uint64_t t0 = lm_test_now_us();
    CU_ASSERT_EQUAL(run_captured(argv, true), 0);
    uint64_t ms = (lm_test_now_us() - t0) / 1000;
    fprintf(stderr, "\n  on a terminal (%llu ms):\n%s", (unsigned long long)ms, output);
    CU_ASSERT_PTR_NOT_NULL(strstr(output, "\rcount ["));
    CU_ASSERT_PTR_NOT_NULL(strstr(output, "] 9/9 tasks  ")); /* 8 counts and the answer */
    CU_ASSERT_PTR_NOT_NULL(strstr(output, "/s  "));
    CU_ASSERT_PTR_NOT_NULL(strstr(output, "\033[K"));
    CU_ASSERT_TRUE(count_of(output, "\rcount [") <= ms / 100 + 2);
    /* The two-round method: a bar per round. */
    char *seed_argv[] = {argv[0], argv[1], argv[2], argv[3], argv[4], argv[5], "3", "--method", "seed", NULL};
    CU_ASSERT_EQUAL(run_captured(seed_argv, true), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(output, "most_frequent ["));
    CU_ASSERT_PTR_NOT_NULL(strstr(output, "count_candidates ["));

    CU_ASSERT_EQUAL(run_captured(seed_argv, false), 0);
    CU_ASSERT_PTR_NULL(strstr(output, " tasks  "));
    CU_ASSERT_PTR_NULL(strchr(output, '\r'));
    CU_ASSERT_PTR_NULL(strchr(output, '\033'));
    CU_ASSERT_PTR_NOT_NULL(strstr(output, "round 1")); /* its other lines still come */
    lm_test_cluster_stop(c);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"words, whitespace and ties", test_words_and_ties},
        {"serialized tables: round trip, merge, malformed", test_table_roundtrip_and_merge},
        {"splitting never cuts a word", test_split_never_cuts_a_word},
        {"local method and bad arguments", test_local_and_bad_args},
        {"1 worker: exact, seed, actors, actors-exact, top-K agree with local", test_one_worker},
        {"4 workers: agree; seed and actors miss the counterexample", test_four_workers_and_the_counterexample},
        {"a progress bar on a terminal, none through a pipe", test_progress_bar},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("examples", tests, suite_init, suite_cleanup);
}

/* Unit tests: a task's log bounded to its head (tasklog.h). */
#include <stdlib.h>
#include <string.h>

#include "tasklog.h"
#include "test_util.h"

static char *take(lm_tasklog *l, size_t *len) {
    char *s = lm_tasklog_take(l, len);
    CU_ASSERT_EQUAL(l->len, 0);
    CU_ASSERT_PTR_NULL(l->data);
    return s;
}

static void test_small_logs_unchanged(void) {
    lm_tasklog l = {0};
    size_t len;
    CU_ASSERT_PTR_NULL(take(&l, &len)); /* nothing written: nothing at all */
    CU_ASSERT_EQUAL(len, 0);
    lm_tasklog_append(&l, "one\n", 4);
    lm_tasklog_append(&l, "two, no newline", 15);
    char *s = take(&l, &len);
    CU_ASSERT_EQUAL(len, 19);
    CU_ASSERT_EQUAL(memcmp(s, "one\ntwo, no newline", 19), 0);
    free(s);
    /* Exactly the bound: kept whole, no marker. */
    char *full = malloc(LM_TASK_LOG_MAX);
    memset(full, 'x', LM_TASK_LOG_MAX);
    lm_tasklog_append(&l, full, LM_TASK_LOG_MAX);
    s = take(&l, &len);
    CU_ASSERT_EQUAL(len, LM_TASK_LOG_MAX);
    CU_ASSERT_EQUAL(memcmp(s, full, len), 0);
    free(s);
    free(full);
}

/* Lines of 10 bytes in small writes: the head ends a line, then the marker
 * counts every byte not kept. */
static void test_cut_at_a_line(void) {
    lm_tasklog l = {0};
    size_t total = 0;
    for (int i = 0; i < 10000; i++, total += 10) lm_tasklog_append(&l, "123456789\n", 10);
    size_t len;
    char *s = take(&l, &len);
    CU_ASSERT_TRUE(len <= LM_TASK_LOG_MAX);
    const char *marker = strstr(s, "...[truncated ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(marker);
    size_t kept = (size_t)(marker - s);
    CU_ASSERT_EQUAL(kept % 10, 0);
    CU_ASSERT_TRUE(kept > LM_TASK_LOG_MAX - 100);
    unsigned long long cut = 0;
    CU_ASSERT_EQUAL(sscanf(marker, "...[truncated %llu bytes]\n", &cut), 1);
    CU_ASSERT_EQUAL(kept + cut, total);
    CU_ASSERT_EQUAL(s[len - 1], '\n');
    CU_ASSERT_EQUAL(s + len - marker, (long)strlen(marker));
    free(s);
}

/* One endless line of 2-byte UTF-8 characters: cut between characters,
 * and the marker starts a line of its own. */
static void test_cut_one_long_line(void) {
    lm_tasklog l = {0};
    for (int i = 0; i < 50000; i++) lm_tasklog_append(&l, "\xc3\xa9", 2); /* é */
    lm_tasklog_finish(&l);
    lm_tasklog_finish(&l); /* idempotent */
    size_t len;
    char *s = take(&l, &len);
    const char *marker = strstr(s, "\n...[truncated ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(marker);
    size_t kept = (size_t)(marker - s);
    CU_ASSERT_EQUAL(kept % 2, 0);
    CU_ASSERT_EQUAL((unsigned char)s[kept - 1], 0xa9);
    unsigned long long cut = 0;
    CU_ASSERT_EQUAL(sscanf(marker + 1, "...[truncated %llu bytes]", &cut), 1);
    CU_ASSERT_EQUAL(kept + cut, 100000);
    CU_ASSERT_TRUE(len <= LM_TASK_LOG_MAX);
    free(s);
}

/* One big write over the bound, then more after the finish: ignored. */
static void test_one_big_write_and_after_finish(void) {
    size_t n = 3 * LM_TASK_LOG_MAX;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++) big[i] = i % 64 == 63 ? '\n' : 'a';
    lm_tasklog l = {0};
    lm_tasklog_append(&l, big, n);
    CU_ASSERT_EQUAL(l.len, LM_TASK_LOG_MAX);
    CU_ASSERT_EQUAL(l.dropped, n - LM_TASK_LOG_MAX);
    lm_tasklog_finish(&l);
    size_t before = l.len;
    lm_tasklog_append(&l, "late", 4);
    CU_ASSERT_EQUAL(l.len, before);
    CU_ASSERT_PTR_NOT_NULL(strstr(l.data, "...[truncated "));
    lm_tasklog_fini(&l);
    CU_ASSERT_PTR_NULL(l.data);
    free(big);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"small logs come back unchanged", test_small_logs_unchanged},
        {"a flood is cut at a line, the marker counts the rest", test_cut_at_a_line},
        {"one long line is cut between UTF-8 characters", test_cut_one_long_line},
        {"one big write; nothing after the finish", test_one_big_write_and_after_finish},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("tasklog", tests, NULL, NULL);
}

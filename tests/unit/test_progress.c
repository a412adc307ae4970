/* Unit tests: the line of lumen_wait_progress's bar (client/src/progress_line.c). */
#include <string.h>

#include "progress.h"
#include "test_util.h"

static void test_line(void) {
    char buf[256];
    size_t n = client_progress_line(buf, sizeof buf, "count", 8, 16, 2.0, 80);
    CU_ASSERT_STRING_EQUAL(buf, "count [###############               ] 8/16 tasks  4.0/s  2.0s");
    CU_ASSERT_EQUAL(n, strlen(buf));
    client_progress_line(buf, sizeof buf, NULL, 0, 5, 0, 80);
    CU_ASSERT_STRING_EQUAL(buf, "[                              ] 0/5 tasks  0.0/s  0.0s");
    client_progress_line(buf, sizeof buf, "done", 5, 5, 0.02, 80);
    CU_ASSERT_STRING_EQUAL(buf, "done [##############################] 5/5 tasks  250/s  0.0s");
    /* Nothing to wait for is all done; more done than total is total. */
    client_progress_line(buf, sizeof buf, "x", 0, 0, 1, 80);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "[##############################] 0/0 tasks"));
    client_progress_line(buf, sizeof buf, "x", 9, 3, 1, 80);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "] 3/3 tasks  3.0/s"));
}

static void test_elapsed(void) {
    char buf[256];
    client_progress_line(buf, sizeof buf, "t", 1, 2, 187, 80);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "  3m07s"));
    client_progress_line(buf, sizeof buf, "t", 1, 2, 7500, 80);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "  2h05m"));
}

/* Never as wide as the terminal (no wrap): the bar shrinks, then the label goes. */
static void test_narrow_terminals(void) {
    char buf[256];
    for (int width = 1; width <= 120; width++) {
        size_t n = client_progress_line(buf, sizeof buf, "a rather long label", 123, 4567, 12.5, width);
        CU_ASSERT_TRUE(n < (size_t)width);
        CU_ASSERT_EQUAL(n, strlen(buf));
    }
    client_progress_line(buf, sizeof buf, "a rather long label", 123, 4567, 12.5, 50);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "] 123/4567 tasks"));
    CU_ASSERT_PTR_NOT_NULL(strchr(buf, '['));
    char tiny[8];
    CU_ASSERT_EQUAL(client_progress_line(tiny, sizeof tiny, "x", 1, 2, 1, 80), 7);
    CU_ASSERT_EQUAL(strlen(tiny), 7);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"the line: label, bar, count, rate, elapsed", test_line},
        {"elapsed time past a minute and an hour", test_elapsed},
        {"narrow terminals never wrap the line", test_narrow_terminals},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("progress", tests, NULL, NULL);
}

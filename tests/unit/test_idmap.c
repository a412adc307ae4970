/* Unit tests: the id hash map against a plain array as the reference. */
#include <stdlib.h>

#include "idmap.h"
#include "test_util.h"

static void test_put_get_remove_many(void) {
    enum { N = 20000 };
    lm_idmap *m = lm_idmap_new();
    lm_id *ids = malloc(N * sizeof *ids);
    for (int i = 0; i < N; i++) {
        ids[i] = lm_id_random();
        lm_idmap_put(m, ids[i], &ids[i]);
    }
    CU_ASSERT_EQUAL(lm_idmap_count(m), N);
    for (int i = 0; i < N; i++) CU_ASSERT_PTR_EQUAL(lm_idmap_get(m, ids[i]), &ids[i]);
    for (int i = 0; i < N; i += 2) CU_ASSERT_PTR_EQUAL(lm_idmap_remove(m, ids[i]), &ids[i]);
    CU_ASSERT_EQUAL(lm_idmap_count(m), N / 2);
    for (int i = 0; i < N; i++) {
        void *want = i % 2 == 0 ? NULL : &ids[i];
        CU_ASSERT_PTR_EQUAL(lm_idmap_get(m, ids[i]), want);
    }
    CU_ASSERT_PTR_NULL(lm_idmap_remove(m, ids[0]));
    free(ids);
    lm_idmap_free(m);
}

/* Ids that share their hash bucket exercise probing and backward shift. */
static void test_colliding_keys(void) {
    lm_idmap *m = lm_idmap_new();
    lm_id base = lm_id_random();
    lm_id ids[40];
    int values[40];
    for (int i = 0; i < 40; i++) {
        ids[i] = lm_id_for_return(base, (uint32_t)i);
        lm_idmap_put(m, ids[i], &values[i]);
    }
    for (int round = 0; round < 40; round += 3) {
        CU_ASSERT_PTR_EQUAL(lm_idmap_remove(m, ids[round]), &values[round]);
        for (int i = 0; i < 40; i++) {
            bool removed = i <= round && i % 3 == 0;
            void *want = removed ? NULL : &values[i];
            CU_ASSERT_PTR_EQUAL(lm_idmap_get(m, ids[i]), want);
        }
    }
    lm_idmap_put(m, ids[1], &values[0]); /* replace keeps the count */
    CU_ASSERT_PTR_EQUAL(lm_idmap_get(m, ids[1]), &values[0]);
    CU_ASSERT_EQUAL(lm_idmap_count(m), 40 - 14);
    lm_idmap_free(m);
}

static void count_entry(void *arg, lm_id key, void *value) {
    (void)key, (void)value;
    ++*(int *)arg;
}

static void test_each(void) {
    lm_idmap *m = lm_idmap_new();
    int dummy;
    for (int i = 0; i < 100; i++) lm_idmap_put(m, lm_id_random(), &dummy);
    int seen = 0;
    lm_idmap_each(m, count_entry, &seen);
    CU_ASSERT_EQUAL(seen, 100);
    lm_idmap_free(m);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"put/get/remove 20,000", test_put_get_remove_many},
        {"colliding keys", test_colliding_keys},
        {"each", test_each},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("idmap", tests, NULL, NULL);
}

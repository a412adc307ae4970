/* Unit tests: 128-bit ids, their hex form, derived result ids; status text. */
#include <string.h>

#include "id.h"
#include "test_util.h"

static void test_hex_round_trip(void) {
    for (int i = 0; i < 1000; i++) {
        lm_id id = lm_id_random();
        char hex[LM_ID_HEX_LEN + 1];
        lm_id_to_hex(id, hex);
        CU_ASSERT_EQUAL(strlen(hex), 32);
        CU_ASSERT_EQUAL(strspn(hex, "0123456789abcdef"), 32);
        lm_id back;
        CU_ASSERT_TRUE(lm_id_from_hex(hex, &back));
        CU_ASSERT_TRUE(lm_id_equal(id, back));
    }
}

static void test_hex_rejects_bad_input(void) {
    lm_id id;
    CU_ASSERT_FALSE(lm_id_from_hex(NULL, &id));
    CU_ASSERT_FALSE(lm_id_from_hex("", &id));
    CU_ASSERT_FALSE(lm_id_from_hex("0123", &id));
    CU_ASSERT_FALSE(lm_id_from_hex("0123456789abcdef0123456789abcdeg", &id));
    CU_ASSERT_FALSE(lm_id_from_hex("0123456789abcdef0123456789abcdef0", &id));
    CU_ASSERT_TRUE(lm_id_from_hex("0123456789ABCDEF0123456789abcdef", &id));
    CU_ASSERT_EQUAL(id.bytes[0], 0x01);
    CU_ASSERT_EQUAL(id.bytes[15], 0xef);
}

static void test_known_hex(void) {
    lm_id id;
    for (int i = 0; i < LM_ID_BYTES; i++) id.bytes[i] = (uint8_t)(i * 17);
    char hex[LM_ID_HEX_LEN + 1];
    CU_ASSERT_STRING_EQUAL(lm_id_to_hex(id, hex), "00112233445566778899aabbccddeeff");
}

static void test_random_ids_differ(void) {
    lm_id a = lm_id_random(), b = lm_id_random();
    CU_ASSERT_FALSE(lm_id_equal(a, b));
    CU_ASSERT_FALSE(lm_id_is_zero(a));
    CU_ASSERT_NOT_EQUAL(lm_id_hash(a), lm_id_hash(b));
}

static void test_return_ids_are_stable_and_distinct(void) {
    lm_id task = lm_id_random();
    lm_id r0 = lm_id_for_return(task, 0), r1 = lm_id_for_return(task, 1);
    CU_ASSERT_TRUE(lm_id_equal(r0, lm_id_for_return(task, 0))); /* a re-run writes the same ids */
    CU_ASSERT_FALSE(lm_id_equal(r0, r1));
    CU_ASSERT_FALSE(lm_id_equal(r0, task));
    CU_ASSERT_EQUAL(memcmp(r0.bytes, task.bytes, 12), 0);
    lm_id other = lm_id_random();
    CU_ASSERT_FALSE(lm_id_equal(lm_id_for_return(other, 0), r0));
}

static void test_from_bytes(void) {
    uint8_t raw[16] = {1, 2, 3};
    lm_id id;
    CU_ASSERT_TRUE(lm_id_from_bytes(raw, 16, &id));
    CU_ASSERT_EQUAL(id.bytes[2], 3);
    CU_ASSERT_FALSE(lm_id_from_bytes(raw, 15, &id));
    CU_ASSERT_FALSE(lm_id_from_bytes(NULL, 16, &id));
}

static void test_status_text(void) {
    CU_ASSERT_STRING_EQUAL(lumen_strerror(LUMEN_DEADLINE_EXCEEDED), "deadline exceeded");
    CU_ASSERT_STRING_EQUAL(lumen_code_name(LUMEN_UNAUTHENTICATED), "UNAUTHENTICATED");
    CU_ASSERT_STRING_EQUAL(lumen_strerror((lumen_code)999), "unknown status code");
    lumen_status st = lm_status(LUMEN_NOT_FOUND, "object %s", "abc");
    CU_ASSERT_EQUAL(st.code, LUMEN_NOT_FOUND);
    CU_ASSERT_STRING_EQUAL(st.msg, "object abc");
    st = lm_status_wrap(st, "objstore %d", 7);
    CU_ASSERT_STRING_EQUAL(st.msg, "objstore 7: object abc");
    CU_ASSERT_TRUE(LM_IS_OK(lm_status_wrap(lm_ok(), "ignored")));
    char big[400];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    st = lm_status_wrap(lm_status(LUMEN_INTERNAL, "%s", big), "%s", big);
    CU_ASSERT_EQUAL(strlen(st.msg), sizeof st.msg - 1); /* truncated, terminated */
}

int main(void) {
    CU_TestInfo tests[] = {
        {"hex round trip", test_hex_round_trip},
        {"hex rejects bad input", test_hex_rejects_bad_input},
        {"known hex", test_known_hex},
        {"random ids differ", test_random_ids_differ},
        {"return ids stable and distinct", test_return_ids_are_stable_and_distinct},
        {"from bytes", test_from_bytes},
        {"status text", test_status_text},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("ids", tests, NULL, NULL);
}

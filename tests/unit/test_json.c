/* The JSON writer: nesting and commas, escapes, bytes that are not UTF-8,
 * read back by the tests' JSON reader. */
#include <string.h>

#include "json.h"
#include "json_parse.h"
#include "test_util.h"

static void test_nesting_and_values(void) {
    lm_json j = {0};
    lm_json_obj(&j);
    lm_json_ku64(&j, "n", 18446744073709551615ull);
    lm_json_key(&j, "list");
    lm_json_arr(&j);
    lm_json_i64(&j, -5);
    lm_json_bool(&j, true);
    lm_json_null(&j);
    lm_json_double(&j, 0.25);
    lm_json_double(&j, 1.0 / 0.0); /* not finite: null */
    lm_json_obj(&j);
    lm_json_obj_end(&j);
    lm_json_arr_end(&j);
    lm_json_kid(&j, "zero", (lm_id){{0}});
    lm_json_kstr(&j, "s", "x");
    lm_json_obj_end(&j);
    CU_ASSERT_FALSE(j.out.oom);
    CU_ASSERT_STRING_EQUAL(j.out.data, "{\"n\":18446744073709551615,\"list\":[-5,true,null,0.25,null,{}],\"zero\":null,\"s\":\"x\"}");
    lm_buf_fini(&j.out);
}

static void test_escapes_and_utf8(void) {
    static const char text[] = "q\"b\\n\n\t\x01 \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 bad:\xff\xc3 end";
    lm_json j = {0};
    lm_json_strn(&j, text, sizeof text - 1);
    CU_ASSERT_STRING_EQUAL(j.out.data,
                           "\"q\\\"b\\\\n\\n\\t\\u0001 \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 bad:\\ufffd\\ufffd end\"");
    char err[100];
    lm_tj *v = lm_tj_parse(j.out.data, err, sizeof err);
    CU_ASSERT_FATAL(v != NULL);
    CU_ASSERT_EQUAL(v->type, LM_TJ_STR);
    CU_ASSERT(strncmp(v->str, "q\"b\\n\n\t\x01 \xc3\xa9", 11) == 0);
    lm_tj_free(v);
    lm_buf_fini(&j.out);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"nesting, commas and values", test_nesting_and_values},
        {"escapes; bytes that are not UTF-8 become U+FFFD", test_escapes_and_utf8},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("json", tests, NULL, NULL);
}

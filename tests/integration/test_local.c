/*
 * Local mode, lumen_connect("local", ...): the suite's function library run
 * in this process, no cluster, through the same public API and with the
 * same results and errors as on a cluster (tasks, refs, puts, failures,
 * unknown functions, actors and their names, a task's own client, frees).
 */
#include <stdlib.h>
#include <string.h>

#include <lumen/lumen.h>

#include "test_util.h"

#define TESTLIB LUMEN_TEST_LIB_DIR "/liblumentest.so"

static lumen_client *client;

static int suite_init(void) {
    lumen_connect_opts opts = {.local_libraries = TESTLIB};
    lumen_status st = lumen_connect("local", &opts, &client);
    if (!LM_IS_OK(st)) fprintf(stderr, "local connect: %s\n", st.msg);
    return LM_IS_OK(st) ? 0 : 1;
}

static int suite_cleanup(void) {
    lumen_close(client);
    return 0;
}

/* The value of ref as a NUL-terminated string (freed by the caller), or NULL with *st. */
static char *get_str(lumen_ref ref, lumen_status *st) {
    lumen_bytes b = {0};
    *st = lumen_get(client, ref, 0, &b);
    if (!LM_IS_OK(*st)) return NULL;
    CU_ASSERT_EQUAL(((char *)b.data)[b.len], '\0'); /* the NUL after every result */
    return b.data;
}

static void test_tasks_and_refs(void) {
    lumen_ref link;
    LM_ASSERT_OK(lumen_call(client, "test.add", (lumen_arg[]){lumen_arg_bytes("0", 1)}, 1, NULL, &link));
    for (int i = 1; i <= 10; i++) {
        char n[8];
        snprintf(n, sizeof n, "%d", i);
        lumen_arg args[2] = {lumen_arg_ref(link), lumen_arg_bytes(n, strlen(n))};
        LM_ASSERT_OK(lumen_call(client, "test.add", args, 2, NULL, &link));
    }
    lumen_status st;
    char *s = get_str(link, &st);
    LM_ASSERT_OK(st);
    CU_ASSERT_STRING_EQUAL(s, "55");
    free(s);

    lumen_ref put, echoed;
    LM_ASSERT_OK(lumen_put(client, "hello", 5, &put));
    LM_ASSERT_OK(lumen_call(client, "test.echo", (lumen_arg[]){lumen_arg_ref(put)}, 1, NULL, &echoed));
    lumen_ref both[2] = {put, echoed};
    lumen_bytes out[2];
    LM_ASSERT_OK(lumen_get_many(client, both, 2, 0, out));
    CU_ASSERT(out[0].len == 5 && out[1].len == 5 && memcmp(out[1].data, "hello", 5) == 0);
    lumen_bytes_free(&out[0]);
    lumen_bytes_free(&out[1]);
    size_t done = 0;
    LM_ASSERT_OK(lumen_wait(client, both, 2, 1, 0, NULL, &done));
    CU_ASSERT_EQUAL(done, 1); /* at most num_ready, as on a cluster */
}

static void test_errors(void) {
    lumen_ref failed, dependent, unknown;
    lumen_arg why = lumen_arg_bytes("because", 7);
    LM_ASSERT_OK(lumen_call(client, "test.fail", &why, 1, NULL, &failed));
    lumen_arg dep = lumen_arg_ref(failed);
    LM_ASSERT_OK(lumen_call(client, "test.echo", &dep, 1, NULL, &dependent));
    LM_ASSERT_OK(lumen_call(client, "test.nope", NULL, 0, NULL, &unknown));
    lumen_status st;
    free(get_str(failed, &st));
    LM_ASSERT_CODE(st, LUMEN_TASK_FAILED);
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "failed on purpose: because"));
    free(get_str(dependent, &st));
    LM_ASSERT_CODE(st, LUMEN_TASK_FAILED); /* an argument's failure fails its consumer */
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "argument"));
    free(get_str(unknown, &st));
    LM_ASSERT_CODE(st, LUMEN_NOT_FOUND);
    CU_ASSERT_PTR_NOT_NULL(strstr(st.msg, "test.echo")); /* the known ones are listed */

    lumen_ref freed;
    LM_ASSERT_OK(lumen_put(client, "x", 1, &freed));
    LM_ASSERT_OK(lumen_free(client, &freed, 1));
    free(get_str(freed, &st));
    LM_ASSERT_CODE(st, LUMEN_NOT_FOUND);
}

static void test_actors(void) {
    lumen_actor counter, found;
    lumen_actor_opts opts = {.name = "local-counter"};
    LM_ASSERT_OK(lumen_actor_new(client, "test.Counter", NULL, 0, &opts, &counter));
    LM_ASSERT_CODE(lumen_actor_new(client, "test.Counter", NULL, 0, &opts, &found), LUMEN_ALREADY_EXISTS);
    LM_ASSERT_OK(lumen_actor_get_named(client, "local-counter", 0, &found));
    CU_ASSERT_EQUAL(memcmp(found.id, counter.id, sizeof found.id), 0);
    lumen_ref r;
    lumen_arg one = lumen_arg_bytes("1", 1);
    for (int i = 0; i < 5; i++) LM_ASSERT_OK(lumen_actor_call(client, counter, "add", &one, 1, &r));
    lumen_status st;
    char *s = get_str(r, &st);
    LM_ASSERT_OK(st);
    CU_ASSERT_STRING_EQUAL(s, "5");
    free(s);

    /* A task with a client of its own in the job calls the actor. */
    lumen_arg args[2] = {lumen_arg_actor(&counter), lumen_arg_bytes("10", 2)};
    LM_ASSERT_OK(lumen_call(client, "test.call_actor", args, 2, NULL, &r));
    s = get_str(r, &st);
    LM_ASSERT_OK(st);
    CU_ASSERT_STRING_EQUAL(s, "15");
    free(s);

    LM_ASSERT_OK(lumen_actor_kill(client, counter));
    LM_ASSERT_OK(lumen_actor_call(client, counter, "add", &one, 1, &r));
    free(get_str(r, &st));
    LM_ASSERT_CODE(st, LUMEN_ACTOR_DIED);
}

int main(void) {
    CU_TestInfo tests[] = {
        {"tasks, refs, puts, get_many, wait", test_tasks_and_refs},
        {"errors: failures, their consumers, unknown functions, frees", test_errors},
        {"actors: calls in order, names, a task's own client, kill", test_actors},
        CU_TEST_INFO_NULL,
    };
    return lm_test_main("local", tests, suite_init, suite_cleanup);
}

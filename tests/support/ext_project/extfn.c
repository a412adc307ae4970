/*
 * extfn.c - a function library whose task is a client of its own job:
 *   ext.shout(text) -> mine.upper(text), asked from inside the task.
 * The executor provides <lumen/remote.h> only; lumen_connect & co. come
 * from liblumen, which this library links.
 */
#include <stdlib.h>
#include <string.h>

#include <lumen/remote.h>

static int shout(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    if (nargs != 1) return lumen_task_fail(ctx, "want 1 argument, got %zu", nargs);
    lumen_connect_opts opts = {.job = lumen_task_job(ctx)};
    lumen_client *c = NULL;
    lumen_arg text = lumen_arg_bytes(args[0].data, args[0].len);
    lumen_ref upper;
    lumen_bytes got = {0};
    lumen_status st = lumen_connect(NULL, &opts, &c); /* the worker's LUMEN_ADDRESS and LUMEN_TOKEN */
    if (!st.code) st = lumen_call(c, "mine.upper", &text, 1, NULL, &upper);
    if (!st.code) st = lumen_get(c, upper, 30000, &got);
    lumen_close(c);
    if (st.code) return lumen_task_fail(ctx, "mine.upper: %s", st.msg);
    /* The runtime frees *out with free(): hand it memory of our own. */
    out->data = malloc(got.len + 1);
    if (out->data == NULL) {
        lumen_bytes_free(&got);
        return lumen_task_fail(ctx, "out of memory");
    }
    memcpy(out->data, got.data, got.len);
    out->len = got.len;
    lumen_bytes_free(&got);
    return 0;
}
LUMEN_REMOTE("ext.shout", shout);

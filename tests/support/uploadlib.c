/*
 * uploadlib.c - a function library that no worker has on its library path
 * (build/upload/liblumenupload.so): tests ship it with lumen_library_upload.
 */
#include <stdlib.h>
#include <string.h>

#include <lumen/remote.h>

static int hello(lumen_task_ctx *ctx, const lumen_bytes *args, size_t nargs, lumen_bytes *out) {
    (void)ctx;
    const char *greeting = "hello from an uploaded library, ";
    size_t glen = strlen(greeting), nlen = nargs ? args[0].len : 0;
    out->data = malloc(glen + nlen + 1);
    memcpy(out->data, greeting, glen);
    if (nlen) memcpy((char *)out->data + glen, args[0].data, nlen);
    out->len = glen + nlen;
    return 0;
}
LUMEN_REMOTE("upload.hello", hello);

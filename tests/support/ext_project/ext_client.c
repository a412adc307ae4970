/* ext_client LIB TEXT - uploads the function library LIB and prints
 * ext.shout(TEXT): the cluster from $LUMEN_ADDRESS, its token from
 * $LUMEN_RUN_DIR. */
#include <stdio.h>
#include <string.h>

#include <lumen/lumen.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: ext_client LIB TEXT\n");
        return 2;
    }
    lumen_client *c;
    lumen_status st = lumen_connect(NULL, NULL, &c);
    if (st.code) {
        fprintf(stderr, "ext_client: %s\n", st.msg);
        return 1;
    }
    lumen_arg text = lumen_arg_bytes(argv[2], strlen(argv[2]));
    lumen_ref ref;
    lumen_bytes out = {0};
    st = lumen_library_upload(c, argv[1], NULL);
    if (!st.code) st = lumen_call(c, "ext.shout", &text, 1, NULL, &ref);
    if (!st.code) st = lumen_get(c, ref, 60000, &out);
    if (!st.code) printf("%.*s\n", (int)out.len, (const char *)out.data);
    else fprintf(stderr, "ext_client: %s: %s\n", lumen_code_name(st.code), st.msg);
    lumen_bytes_free(&out);
    lumen_close(c);
    return st.code != 0;
}

/* free_port - prints a free loopback port: lm_test_free_port, for the shell
 * tests (tests/integration/test_*.sh). */
#include <stdio.h>

#include "test_util.h"

int main(void) {
    uint16_t port = lm_test_free_port();
    if (port == 0) {
        perror("free_port");
        return 1;
    }
    printf("%u\n", port);
    return 0;
}

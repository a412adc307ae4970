/* main.c - lumen-worker: see worker.h. */
#include <stdlib.h>

#include "log.h"
#include "rpc.h"
#include "service.h"
#include "worker.h"

int main(int argc, char **argv) {
    lm_config cfg;
    int rc = lm_service_init("worker", argc, argv, &cfg);
    if (rc >= 0) return rc;
    lm_service_block_signals(); /* before any thread: they all inherit it */
    lm_rpc_init();
    lm_worker *w = NULL;
    lumen_status st = lm_worker_start(&cfg, &w);
    if (LM_IS_OK(st)) {
        int sig = lm_service_wait_for_stop();
        lm_info("signal %d: stopping", sig);
        lm_worker_free(w);
    } else {
        lm_error("cannot start: %s", st.msg);
    }
    lm_rpc_shutdown();
    lm_config_free(&cfg);
    return LM_IS_OK(st) ? 0 : 1;
}

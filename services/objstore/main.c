/*
 * lumen-objstore - holds objects in memory (spilling to disk past its
 * limit) and streams them in chunks: see server.h and store.h.
 *
 *   lumen-objstore [--config F] [--listen ADDR] [--advertise HOST[:PORT]]
 *                  [--memory-limit SIZE] [--spill-dir DIR] [--scheduler-addr A]
 *                  [--redis-addr A] [--token T] ...      (--help for all)
 */
#include <signal.h>
#include <stdio.h>

#include "log.h"
#include "server.h"
#include "service.h"

/* Calls in flight (streams of big objects) get this long to finish. */
#define STOP_GRACE_MS 5000

int main(int argc, char **argv) {
    lm_config cfg;
    int code = lm_service_init("objstore", argc, argv, &cfg);
    if (code >= 0) return code;
    lm_service_block_signals(); /* before any thread starts */

    lm_objstore_server *srv = NULL;
    lumen_status st = lm_objstore_server_start(&cfg, &srv);
    if (!LM_IS_OK(st)) {
        lm_error("cannot start: %s", st.msg);
        lm_config_free(&cfg);
        return 1;
    }
    int sig = lm_service_wait_for_stop();
    lm_info("%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    lm_objstore_server_stop(srv, STOP_GRACE_MS);
    lm_config_free(&cfg);
    lm_info("stopped");
    return 0;
}

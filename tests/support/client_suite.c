/* client_suite.c - see client_suite.h. */
#include "client_suite.h"

#include <stdio.h>

#include "log.h"

int lm_test_client_suite_start(const lm_test_cluster_opts *opts, lm_test_cluster **cluster, lumen_client **client) {
    lm_log_set_level(LM_LOG_WARN);
    lumen_status st = lm_test_cluster_start(opts, cluster);
    if (!LM_IS_OK(st)) {
        fprintf(stderr, "cluster: %s\n", st.msg);
        return 1;
    }
    st = lumen_connect(lm_test_cluster_scheduler(*cluster), NULL, client);
    if (!LM_IS_OK(st)) fprintf(stderr, "connect: %s\n", st.msg);
    return LM_IS_OK(st) ? 0 : 1;
}

int lm_test_client_suite_stop(lm_test_cluster *cluster, lumen_client *client) {
    lumen_close(client);
    lm_test_cluster_stop(cluster);
    return 0;
}

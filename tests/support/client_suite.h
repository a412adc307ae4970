/*
 * client_suite.h - the fixture of the suites that drive a real cluster
 * through the public client API: a test cluster and one connected client.
 */
#ifndef LM_TEST_CLIENT_SUITE_H
#define LM_TEST_CLIENT_SUITE_H

#include <lumen/lumen.h>

#include "cluster.h"

/* Starts the cluster and connects; 0 on success (CUnit's suite init). */
int lm_test_client_suite_start(const lm_test_cluster_opts *opts, lm_test_cluster **cluster, lumen_client **client);

/* Closes the client, stops the cluster; 0 (CUnit's suite cleanup). */
int lm_test_client_suite_stop(lm_test_cluster *cluster, lumen_client *client);

#endif

/*
 * lumen-scheduler: admits tasks and actors, resolves dependencies, places
 * work on workers, detects dead nodes. See scheduler.h.
 */
#include <stdlib.h>

#include "config.h"
#include "dashboard.h"
#include "health.h"
#include "log.h"
#include "rpc.h"
#include "scheduler.h"
#include "service.h"

/* Membership and health calls have a lane of their own (rpc.h): no flood of
 * other calls, a stranger's included, delays a heartbeat past its timeout. */
static const char *const urgent_methods[] = {"lumen.Scheduler/RegisterNode", "lumen.Scheduler/Heartbeat",
                                             "lumen.Scheduler/WatchNode", "lumen.Health/Check", NULL};

int main(int argc, char **argv) {
    lm_config cfg;
    int code = lm_service_init("scheduler", argc, argv, &cfg);
    if (code >= 0) return code;
    lm_service_block_signals();

    scheduler *sched = NULL;
    lm_rpc_server *srv = NULL;
    dashboard *dash = NULL;
    lm_health health = {.role = "scheduler", .node_id = lm_id_random()};
    atomic_init(&health.serving, true);
    lm_rpc_server_opts opts = {
        .addr = cfg.scheduler.listen,
        .token = cfg.cluster.token,
        .tls = {cfg.cluster.tls_cert, cfg.cluster.tls_key, cfg.cluster.tls_ca},
        .urgent_methods = urgent_methods,
    };
    lumen_status st = scheduler_new(&cfg, &sched);
    if (LM_IS_OK(st)) st = lm_rpc_server_new(&opts, &srv);
    if (LM_IS_OK(st)) st = scheduler_add_service(sched, srv);
    if (LM_IS_OK(st)) st = lm_health_add_service(srv, &health);
    if (LM_IS_OK(st)) st = lm_rpc_server_start(srv);
    if (LM_IS_OK(st) && cfg.scheduler.dashboard) st = dashboard_start(&cfg, sched, srv, &dash);
    if (!LM_IS_OK(st)) {
        lm_error("cannot start: %s", st.msg);
        dashboard_free(dash);
        lm_rpc_server_free(srv);
        scheduler_free(sched);
        lm_config_free(&cfg);
        return 1;
    }
    lm_info("scheduler listening on %s (redis %s)", cfg.scheduler.listen, cfg.cluster.redis_addr);
    if (dash != NULL)
        lm_info("dashboard on http://%s:%d/", cfg.scheduler.dashboard_host, dashboard_port(dash));
    int sig = lm_service_wait_for_stop();
    lm_info("signal %d: stopping", sig);
    atomic_store(&health.serving, false);
    scheduler_stop(sched); /* the calls the shutdown cancels are not nodes dying */
    dashboard_free(dash); /* before what its requests read */
    lm_rpc_server_shutdown(srv, 2000);
    lm_rpc_server_free(srv);
    scheduler_free(sched);
    lm_config_free(&cfg);
    return 0;
}

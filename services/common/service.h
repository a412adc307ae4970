/*
 * service.h - what every Lumen daemon's main() shares: its command line,
 * its configuration, process setup and waiting for a stop signal.
 *
 * Command line of every service (role = scheduler | objstore | worker):
 *   lumen-<role> [--config FILE] [--print-config] [--help]
 *                [--<setting> VALUE]...
 * where <setting> is any setting of the role's section or of `cluster`
 * (dashes or underscores: --redis-addr, --listen, --slots, ...), so every
 * setting of config/lumen.cfg is also a flag. Precedence: default < file <
 * environment < flag.
 */
#ifndef LM_SERVICE_H
#define LM_SERVICE_H

#include "config.h"

/*
 * Parses argv and loads the configuration. Returns -1 to go on (then *cfg
 * is the caller's to lm_config_free), or an exit code to exit with right
 * away: 0 after --help / --print-config, 2 on a bad flag or setting (the
 * reason, with file and line, printed to stderr). Also sets the log name
 * and level and ignores SIGPIPE.
 */
int lm_service_init(const char *role, int argc, char **argv, lm_config *cfg);

/* Blocks until SIGINT or SIGTERM arrives; returns the signal number. Call it
 * from main after lm_service_block_signals() ran before any thread started. */
void lm_service_block_signals(void);
int lm_service_wait_for_stop(void);

#endif

/* process.h - process-wide setup shared by every Lumen binary. */
#ifndef LM_PROCESS_H
#define LM_PROCESS_H

/*
 * Names the process in logs, ignores SIGPIPE (a vanished peer is an error
 * value, not a death), raises the descriptor limit (below) and tunes malloc
 * for streaming: chunk buffers are reused instead of being returned to the
 * kernel and faulted in again, which on virtual machines costs more than the
 * copy itself (measured by bench/rpc_bench: 3-5x streaming throughput).
 * LUMEN_MALLOC_TUNE=0 skips the malloc part.
 */
void lm_process_init(const char *name);

/* Just the malloc part (the client library calls it unless told not to). */
void lm_process_tune_malloc(void);

/*
 * Raises the soft RLIMIT_NOFILE to the hard limit: the default soft limit
 * (1024) is what an attacker's idle connections exhaust first, and
 * listeners size their connection caps from it (listener.h). Returns the
 * limit now in force (-1: unlimited or unknown).
 */
long lm_process_raise_fd_limit(void);

/* Names the calling thread (its first 15 characters) as `top -H`, gdb and
 * /proc/<pid>/task/<tid>/comm show it: a stalled process says which of its
 * threads waits on what. */
void lm_thread_name(const char *name);

#endif

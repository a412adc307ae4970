/* clock.h - the two clocks Lumen reads, and deadlines for timed waits. */
#ifndef LM_CLOCK_H
#define LM_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Milliseconds since the epoch: what records and logs show. */
uint64_t lm_wall_ms(void);

/* Milliseconds on the monotonic clock: what timeouts measure. */
uint64_t lm_mono_ms(void);

/* Microseconds on the monotonic clock: for latency histograms. */
uint64_t lm_mono_us(void);

/* The moment ms milliseconds from now on `clock`, as pthread_cond_timedwait
 * wants it (CLOCK_REALTIME unless the condvar was set to another clock). */
struct timespec lm_timespec_in(clockid_t clock, int64_t ms);

/* A condition variable whose timed waits count on the monotonic clock
 * (deadlines from lm_timespec_in(CLOCK_MONOTONIC, ...)). */
void lm_cond_init_monotonic(pthread_cond_t *c);

/* Sleeps ms milliseconds (a pause between tries, not a wait for an event). */
void lm_sleep_ms(int64_t ms);

#endif

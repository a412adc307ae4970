/* engine_fakes.h - what the engine's faked write-behind and resolver saw. */
#ifndef LM_ENGINE_FAKES_H
#define LM_ENGINE_FAKES_H

#include <stddef.h>

/* sched_resolver_lookup calls so far. */
extern size_t fake_resolver_lookups;

#endif

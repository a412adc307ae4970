/*
 * engine_fakes.c - the scheduler engine's two ways out besides its outbox,
 * faked for its unit tests: the write-behind keeps nothing, the resolver
 * counts what it was asked to look up (engine_fakes.h).
 */
#include "engine_fakes.h"

#include "resolver.h"
#include "writer.h"

size_t fake_resolver_lookups;

void sched_writer_task(sched_writer *w, const lm_task_record *rec) { (void)w, (void)rec; }
void sched_writer_obj(sched_writer *w, const lm_obj_record *rec) { (void)w, (void)rec; }
void sched_writer_actor(sched_writer *w, const lm_actor_record *rec) { (void)w, (void)rec; }
void sched_writer_job_end(sched_writer *w, lm_id job, uint64_t tasks) { (void)w, (void)job, (void)tasks; }
void sched_writer_node_up(sched_writer *w, const lm_node_record *rec) { (void)w, (void)rec; }
void sched_writer_node_dead(sched_writer *w, lm_id node) { (void)w, (void)node; }
void sched_writer_job_start(sched_writer *w, lm_id job, bool detached) { (void)w, (void)job, (void)detached; }
void sched_writer_event(sched_writer *w, const char *type, lm_id id, const char *detail) {
    (void)w, (void)type, (void)id, (void)detail;
}

void sched_resolver_lookup(sched_resolver *r, lm_id obj) {
    (void)r, (void)obj;
    fake_resolver_lookups++;
}
void sched_resolver_watch(sched_resolver *r, lm_id obj) { (void)r, (void)obj; }
void sched_resolver_unwatch(sched_resolver *r, lm_id obj) { (void)r, (void)obj; }

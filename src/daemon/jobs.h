/* jobs.h — a small pool of worker threads for blocking work (libvirt calls).
 * work() runs on a worker and must touch only its argument; done() then runs
 * on the loop's thread, where it may touch cgvd's state. Jobs start in
 * submission order. */
#ifndef JOBS_H
#define JOBS_H

#include "cgv_common.h"
#include "loop.h"

struct jobs;
typedef void (*jobs_fn)(void *arg);

int jobs_new(struct loop *l, unsigned nthreads, struct jobs **out,
             struct cgv_error *err) CGV_WUR;
/* Waits for running jobs to finish; queued ones are dropped (done() is not
 * called for them). */
void jobs_free(struct jobs *j);
void jobs_submit(struct jobs *j, jobs_fn work, jobs_fn done, void *arg);
/* Jobs queued or running. */
unsigned jobs_pending(struct jobs *j);

#endif

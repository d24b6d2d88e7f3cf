/* Topiary's compute thread pool (hand-written C). One pool for the whole engine: workers spin
 * briefly between jobs, since a training step is a chain of short parallel loops, then sleep. */
#ifndef TOPIARY_POOL_H
#define TOPIARY_POOL_H

typedef void (*topiary_pool_task)(void *context, long index);

/* Runs task(context, i) for every i in 0..<count on the calling thread and up to threads - 1
 * workers, and returns when all have run. One job runs at a time: a call made while another is
 * running (from another thread, or from inside a task) runs its items on the calling thread. */
void topiary_pool_run(long count, int threads, topiary_pool_task task, void *context);

#endif

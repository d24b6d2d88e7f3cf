/* Topiary's compute thread pool: see topiary_pool.h.
 *
 * A job is published as one 64-bit word: generation (24 bits), next index to claim (20 bits) and
 * item count (20 bits). Threads claim an index with a compare-and-swap on that word, so a claim
 * can only succeed for the job the word describes; the task and context of a job are written
 * before its word is published and not rewritten until every claimed item has reported done. */
#include "topiary_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define MAX_WORKERS 63
#define SPIN_NS 200000L

#define GEN_SHIFT 40
#define IDX_SHIFT 20
#define FIELD_MASK ((1ULL << 20) - 1)

static struct {
    pthread_mutex_t busy; /* held by the thread whose job is running */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    _Atomic uint64_t word;
    _Atomic long done;
    _Atomic int sleeping;
    topiary_pool_task task;
    void *context;
    int started;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* Claims and runs items of the job whose generation is `gen` until none are left. */
static void run_items(uint64_t gen) {
    uint64_t w = atomic_load_explicit(&pool.word, memory_order_acquire);
    for (;;) {
        if ((w >> GEN_SHIFT) != gen) return;
        uint64_t idx = (w >> IDX_SHIFT) & FIELD_MASK, count = w & FIELD_MASK;
        if (idx >= count) return;
        if (atomic_compare_exchange_weak_explicit(&pool.word, &w, w + (1ULL << IDX_SHIFT), memory_order_acq_rel,
                                                  memory_order_acquire)) {
            pool.task(pool.context, (long)idx);
            atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
            w = atomic_load_explicit(&pool.word, memory_order_acquire);
        }
    }
}

static void *worker(void *arg) {
    (void)arg;
    uint64_t seen = atomic_load(&pool.word) >> GEN_SHIFT;
    for (;;) {
        long start = now_ns();
        uint64_t gen;
        while ((gen = atomic_load_explicit(&pool.word, memory_order_acquire) >> GEN_SHIFT) == seen) {
            relax();
            if (now_ns() - start < SPIN_NS) continue;
            pthread_mutex_lock(&pool.lock);
            atomic_fetch_add(&pool.sleeping, 1);
            while ((atomic_load(&pool.word) >> GEN_SHIFT) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
            atomic_fetch_sub(&pool.sleeping, 1);
            pthread_mutex_unlock(&pool.lock);
            start = now_ns();
        }
        seen = gen;
        run_items(gen);
    }
    return NULL;
}

void topiary_pool_run(long count, int threads, topiary_pool_task task, void *context) {
    if (count <= 0) return;
    /* One job at a time: a second caller (another thread, or a task of the running job) runs
     * its items itself. */
    if (threads <= 1 || count == 1 || (uint64_t)count > FIELD_MASK || pthread_mutex_trylock(&pool.busy) != 0) {
        for (long i = 0; i < count; i++) task(context, i);
        return;
    }
    int want = threads - 1 > MAX_WORKERS ? MAX_WORKERS : threads - 1;
    while (pool.started < want) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, NULL) != 0) break;
        pthread_detach(t);
        pool.started++;
    }
    if (pool.started == 0) {
        for (long i = 0; i < count; i++) task(context, i);
        pthread_mutex_unlock(&pool.busy);
        return;
    }
    uint64_t gen = ((atomic_load(&pool.word) >> GEN_SHIFT) + 1) & ((1ULL << 24) - 1);
    pool.task = task;
    pool.context = context;
    atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
    atomic_store(&pool.word, (gen << GEN_SHIFT) | (uint64_t)count);  /* sequentially consistent */
    if (atomic_load(&pool.sleeping) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    run_items(gen);
    while (atomic_load_explicit(&pool.done, memory_order_acquire) < count) relax();
    pthread_mutex_unlock(&pool.busy);
}

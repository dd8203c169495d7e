#define _GNU_SOURCE   /* SCHED_IDLE, MADV_POPULATE_WRITE */
#include "prefault.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>

#define STEP ((size_t)2 << 20)   /* one huge page per call: stop answers within one */

struct af_prefault {
    char *base;
    size_t bytes, ahead;
    size_t want;                 /* populate up to here (under mu) */
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    pthread_t thread;
};

static void *run(void *arg) {
    af_prefault *p = arg;
    struct sched_param idle = {0};
    pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
    size_t done = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!atomic_load(&p->stop) && done >= p->want) pthread_cond_wait(&p->cond, &p->mu);
        size_t want = p->want;
        pthread_mutex_unlock(&p->mu);
        while (done < want && !atomic_load(&p->stop)) {
            size_t n = want - done < STEP ? want - done : STEP;
            if (madvise(p->base + done, n, MADV_POPULATE_WRITE) != 0) {   /* e.g. no memory: stop trying */
                atomic_store(&p->stop, 1);
                break;
            }
            done += n;
        }
        if (atomic_load(&p->stop)) return NULL;
        pthread_mutex_lock(&p->mu);
    }
}

af_prefault *af_prefault_start(void *base, size_t bytes, size_t ahead) {
#ifndef MADV_POPULATE_WRITE
    (void)base; (void)bytes; (void)ahead;
    return NULL;
#else
    /* Kernels before 5.14 lack it: ask once, on the first step, before starting a thread. */
    size_t first = ahead < bytes ? ahead : bytes;
    if (!first || madvise(base, first < STEP ? first : STEP, MADV_POPULATE_WRITE) != 0) return NULL;
    af_prefault *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->base = base;
    p->bytes = bytes;
    p->ahead = ahead;
    p->want = first;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    if (pthread_create(&p->thread, NULL, run, p) != 0) {
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    return p;
#endif
}

void af_prefault_used(af_prefault *p, size_t used) {
    if (!p) return;
    size_t want = used + p->ahead < p->bytes ? used + p->ahead : p->bytes;
    pthread_mutex_lock(&p->mu);
    if (want > p->want) {
        p->want = want;
        pthread_cond_signal(&p->cond);
    }
    pthread_mutex_unlock(&p->mu);
}

void af_prefault_stop(af_prefault *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

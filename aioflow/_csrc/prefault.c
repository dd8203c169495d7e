#define _GNU_SOURCE   /* SCHED_IDLE, MADV_POPULATE_WRITE */
#include "prefault.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>

#define STEP ((size_t)2 << 20)   /* one huge page per call: stop answers within one */

typedef struct {
    char *base;
    size_t bytes;
    size_t want, done;           /* under mu: populate up to want; done so far */
} region;

struct af_prefault {
    region regions[AF_PREFAULT_REGIONS];
    unsigned count, turn;
    size_t ahead;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    pthread_t thread;
};

/* Under mu: the next region with something left to populate, or NULL. Regions take turns, a
 * step each: the arena grows all along while batch buffers are needed from the first batch on. */
static region *next_work(af_prefault *p) {
    for (unsigned k = 0; k < p->count; k++) {
        region *r = &p->regions[(p->turn + k) % p->count];
        if (r->done < r->want) {
            p->turn = (p->turn + k + 1) % p->count;
            return r;
        }
    }
    return NULL;
}

static void *run(void *arg) {
    af_prefault *p = arg;
    struct sched_param idle = {0};
    pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        region *r = NULL;
        while (!atomic_load(&p->stop) && !(r = next_work(p))) pthread_cond_wait(&p->cond, &p->mu);
        if (atomic_load(&p->stop)) break;
        char *at = r->base + r->done;
        size_t n = r->want - r->done < STEP ? r->want - r->done : STEP;
        pthread_mutex_unlock(&p->mu);   /* regions never move; only want grows meanwhile */
        int failed = madvise(at, n, MADV_POPULATE_WRITE) != 0;
        pthread_mutex_lock(&p->mu);
        r->done = failed ? r->bytes : r->done + n;   /* e.g. out of memory: leave it to first use */
        if (failed) r->want = r->bytes;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
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
    p->regions[0] = (region){.base = base, .bytes = bytes, .want = first};
    p->count = 1;
    p->ahead = ahead;
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

void af_prefault_add(af_prefault *p, void *base, size_t bytes) {
    if (!p || !bytes) return;
    pthread_mutex_lock(&p->mu);
    if (p->count < AF_PREFAULT_REGIONS) {
        p->regions[p->count++] = (region){.base = base, .bytes = bytes, .want = bytes};
        pthread_cond_signal(&p->cond);
    }
    pthread_mutex_unlock(&p->mu);
}

void af_prefault_used(af_prefault *p, size_t used) {
    if (!p) return;
    region *r = &p->regions[0];
    size_t want = used + p->ahead < r->bytes ? used + p->ahead : r->bytes;
    pthread_mutex_lock(&p->mu);
    if (want > r->want) {
        r->want = want;
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

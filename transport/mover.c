/* The copy thread: fills ring slots for sends that return before their copy (sl_transport_send_lent
 * and sl_transport_send_owned), so that a sending rank goes on to its next action while its
 * payload lands in the ring, and the receiver, told first, copies it out behind (ring.c).
 *
 * Jobs run in order on one thread, started with the first. Each touches only its slot and its
 * source; an owned source is freed on this thread once copied. sl__mover_flush waits until every
 * job handed over has run; sl__mover_stop runs the rest and joins the thread. */
#include "transport/transport_impl.h"

#include <stdlib.h>

struct job {
    void *slot;
    const void *src;
    size_t len;
    uint32_t crc;
    sl_free_fn *free_fn; /* NULL: lent, not owned */
    void *hint;
};

#define QUEUE 64

struct sl__mover {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work, idle;
    struct job q[QUEUE];
    unsigned head, count; /* the next job to run, and how many are queued or running */
    int stop;
};

static void *run(void *arg)
{
    sl__mover *m = arg;
    pthread_mutex_lock(&m->mu);
    for (;;) {
        while (!m->count && !m->stop) pthread_cond_wait(&m->work, &m->mu);
        if (!m->count) break;
        struct job j = m->q[m->head % QUEUE];
        pthread_mutex_unlock(&m->mu);
        sl__ring_fill(j.slot, j.src, j.len, j.crc);
        if (j.free_fn) j.free_fn((void *)j.src, j.hint);
        pthread_mutex_lock(&m->mu);
        m->head++;
        if (!--m->count) pthread_cond_broadcast(&m->idle);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

void sl__mover_fill(sl_transport *t, void *slot, const void *src, size_t len, uint32_t crc,
                    sl_free_fn *free_fn, void *hint)
{
    sl__mover *m = t->mover;
    if (!m && (m = calloc(1, sizeof *m))) {
        pthread_mutex_init(&m->mu, NULL);
        pthread_cond_init(&m->work, NULL);
        pthread_cond_init(&m->idle, NULL);
        if (pthread_create(&m->thread, NULL, run, m)) {
            free(m);
            m = NULL;
        }
        t->mover = m;
    }
    if (m) {
        pthread_mutex_lock(&m->mu);
        if (m->count < QUEUE) {
            m->q[(m->head + m->count++) % QUEUE] = (struct job){slot, src, len, crc, free_fn, hint};
            pthread_cond_signal(&m->work);
            pthread_mutex_unlock(&m->mu);
            return;
        }
        pthread_mutex_unlock(&m->mu);
    }
    /* No thread (out of memory or threads), or a full queue: copied here. */
    sl__ring_fill(slot, src, len, crc);
    if (free_fn) free_fn((void *)src, hint);
}

unsigned sl__mover_pending(sl_transport *t)
{
    sl__mover *m = t->mover;
    if (!m) return 0;
    pthread_mutex_lock(&m->mu);
    unsigned n = m->count;
    pthread_mutex_unlock(&m->mu);
    return n;
}

void sl__mover_flush(sl_transport *t)
{
    sl__mover *m = t->mover;
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    while (m->count) pthread_cond_wait(&m->idle, &m->mu);
    pthread_mutex_unlock(&m->mu);
}

void sl__mover_stop(sl_transport *t)
{
    sl__mover *m = t->mover;
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    pthread_cond_signal(&m->work);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->work);
    pthread_cond_destroy(&m->idle);
    free(m);
    t->mover = NULL;
}

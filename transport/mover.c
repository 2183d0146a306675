/* The copy thread: fills ring slots for sends that return before their copy (sl_transport_send_lent
 * and sl_transport_send_owned), so that a sending rank goes on to its next action while its
 * payload lands in the ring, and the receiver, told first, copies it out behind (ring.c); and,
 * when it has no send to fill, copies out the payload of a receive posted ahead
 * (sl_transport_recv_post) as it lands, so that the rank finds it copied when it asks. It
 * watches every link with a receive posted at once (a middle rank of 1F1B has one on each,
 * whichever message comes first), sleeping on their peers' posted counts and its own `wakes`
 * together (futex_waitv).
 *
 * Jobs run in order on one thread, started with the first job or post. Each job touches only its
 * slot and its source; an owned source is freed on this thread once copied. sl__mover_flush waits
 * until every job handed over has run; sl__mover_stop runs the rest and joins the thread. */
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
    sl_transport *t;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work, idle;
    struct job q[QUEUE];
    unsigned head;
    _Atomic unsigned count; /* jobs queued or running */
    _Atomic uint32_t wakes; /* raised for every job, post and stop (sl__ring_wait_posted) */
    int watching;           /* it sleeps on the links' posted counts and `wakes` */
    int stop;
};

/* Copies for the receives posted on t's links what has landed of their messages; when none has
 * any yet, sleeps until one is sent or a job comes (at most 2 ms). 0 when nothing is posted.
 * Called and returns with m->mu held. */
static int prefetch(sl__mover *m)
{
    sl_transport *t = m->t;
    struct sl__link *waiting[2];
    uint32_t seen[2];
    int posted = 0, n = 0;
    uint32_t wakes = atomic_load(&m->wakes); /* a post on a link already looked at raises it */
    for (int i = 0; i < t->nlinks && !atomic_load(&m->count); i++) {
        struct sl__link *l = &t->links[i];
        int state = atomic_load(&l->pre.state);
        if (!l->in.map || (state != SL__PRE_POSTED && state != SL__PRE_PARTIAL)) continue;
        posted++;
        pthread_mutex_unlock(&m->mu);
        if (!sl__ring_prefetch(l, &m->count, &seen[n])) waiting[n++] = l;
        pthread_mutex_lock(&m->mu);
        pthread_cond_broadcast(&m->idle); /* a rank waiting for its post's end */
    }
    if (n == posted && n && !m->count && !m->stop) { /* every message yet to come */
        m->watching = 1;
        pthread_mutex_unlock(&m->mu);
        sl__ring_wait_posted(waiting, seen, n, &m->wakes, wakes, 2);
        pthread_mutex_lock(&m->mu);
        m->watching = 0;
    }
    return posted;
}

/* Tells the thread of a job, a post or its stop, wherever it waits. With m->mu held. */
static void wake(sl__mover *m)
{
    pthread_cond_signal(&m->work);
    sl__ring_wake(&m->wakes, m->watching);
}

static void *run(void *arg)
{
    sl__mover *m = arg;
    pthread_mutex_lock(&m->mu);
    for (;;) {
        while (!m->count && !m->stop)
            if (!prefetch(m) && !m->count && !m->stop) pthread_cond_wait(&m->work, &m->mu);
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

/* The copy thread, started on first use; NULL when it cannot start. */
static sl__mover *mover(sl_transport *t)
{
    sl__mover *m = t->mover;
    if (m || !(m = calloc(1, sizeof *m))) return m;
    m->t = t;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->work, NULL);
    pthread_cond_init(&m->idle, NULL);
    if (pthread_create(&m->thread, NULL, run, m)) {
        pthread_mutex_destroy(&m->mu);
        pthread_cond_destroy(&m->work);
        pthread_cond_destroy(&m->idle);
        free(m);
        return NULL;
    }
    return t->mover = m;
}

void sl__mover_fill(sl_transport *t, void *slot, const void *src, size_t len, uint32_t crc,
                    sl_free_fn *free_fn, void *hint)
{
    sl__mover *m = mover(t);
    if (m) {
        pthread_mutex_lock(&m->mu);
        if (m->count < QUEUE) {
            m->q[(m->head + m->count++) % QUEUE] = (struct job){slot, src, len, crc, free_fn, hint};
            wake(m);
            pthread_mutex_unlock(&m->mu);
            return;
        }
        pthread_mutex_unlock(&m->mu);
    }
    /* No thread (out of memory or threads), or a full queue: copied here. */
    sl__ring_fill(slot, src, len, crc);
    if (free_fn) free_fn((void *)src, hint);
}

int sl__mover_post(sl_transport *t, struct sl__link *l)
{
    sl__mover *m = mover(t);
    if (!m) return sl_fail(SL_ENOMEM, "cannot start the transport's copy thread");
    pthread_mutex_lock(&m->mu);
    atomic_store(&l->pre.state, SL__PRE_POSTED);
    wake(m);
    pthread_mutex_unlock(&m->mu);
    return SL_OK;
}

int sl__mover_settle(sl_transport *t, struct sl__link *l)
{
    for (;;) {
        int state = atomic_load(&l->pre.state);
        if (state == SL__PRE_BUSY) { /* the copy thread has it: until it lets go */
            sl__mover *m = t->mover;
            pthread_mutex_lock(&m->mu);
            while (atomic_load(&l->pre.state) == SL__PRE_BUSY) pthread_cond_wait(&m->idle, &m->mu);
            pthread_mutex_unlock(&m->mu);
        } else if (atomic_compare_exchange_strong(&l->pre.state, &state, SL__PRE_NONE)) {
            return state == SL__PRE_POSTED ? SL__PRE_NONE : state;
        }
    }
}

unsigned sl__mover_pending(sl_transport *t)
{
    sl__mover *m = t->mover;
    return m ? atomic_load(&m->count) : 0;
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
    for (int i = 0; i < t->nlinks; i++) sl__mover_settle(t, &t->links[i]);
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    wake(m);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->work);
    pthread_cond_destroy(&m->idle);
    free(m);
    t->mover = NULL;
}

/* Payload buffers reused from one message to the next; see pool.h. */
#include "transport/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

/* Each buffer starts with this header, one cache line before the data. */
struct slot {
    sl__pool *pool;
    size_t cap;        /* usable bytes after the header */
    struct slot *next; /* in the idle list */
};
#define HEADER 64

struct sl__pool {
    pthread_mutex_t mu;
    struct slot *idle;
    int nidle, max_free;
    atomic_int refs; /* the owner's, plus one per buffer out */
};

sl__pool *sl__pool_create(int max_free)
{
    sl__pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    pthread_mutex_init(&p->mu, NULL);
    p->max_free = max_free > 0 ? max_free : 0;
    atomic_init(&p->refs, 1);
    return p;
}

static void unref(sl__pool *p)
{
    if (atomic_fetch_sub(&p->refs, 1) != 1) return;
    while (p->idle) {
        struct slot *s = p->idle;
        p->idle = s->next;
        free(s);
    }
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void sl__pool_release(sl__pool *p)
{
    if (!p) return;
    /* Idle buffers are of no more use; the ones still out come back to unref. */
    pthread_mutex_lock(&p->mu);
    struct slot *idle = p->idle;
    p->idle = NULL;
    p->nidle = 0;
    p->max_free = 0;
    pthread_mutex_unlock(&p->mu);
    while (idle) {
        struct slot *s = idle;
        idle = s->next;
        free(s);
    }
    unref(p);
}

void *sl__pool_get(sl__pool *p, size_t bytes)
{
    struct slot *s = NULL;
    pthread_mutex_lock(&p->mu);
    for (struct slot **at = &p->idle; *at; at = &(*at)->next) {
        if ((*at)->cap >= bytes && (*at)->cap / 2 <= bytes) {
            s = *at;
            *at = s->next;
            p->nidle--;
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (!s) {
        if (bytes > SIZE_MAX - 2 * HEADER) return NULL;
        size_t cap = (bytes + HEADER - 1) / HEADER * HEADER;
        s = aligned_alloc(HEADER, HEADER + cap);
        if (!s) return NULL;
        s->pool = p;
        s->cap = cap;
    }
    atomic_fetch_add(&p->refs, 1);
    return (uint8_t *)s + HEADER;
}

int sl__pool_idle(sl__pool *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->nidle;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void sl__pool_put(void *data, void *hint)
{
    (void)hint;
    if (!data) return;
    struct slot *s = (struct slot *)((uint8_t *)data - HEADER);
    sl__pool *p = s->pool;
    pthread_mutex_lock(&p->mu);
    if (p->nidle < p->max_free) {
        s->next = p->idle;
        p->idle = s;
        p->nidle++;
        s = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    free(s);
    unref(p);
}

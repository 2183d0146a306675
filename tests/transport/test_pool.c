/* The pool of payload buffers: reuse, the size rule, the idle bound, buffers that come back after
 * their owner let go, and many threads giving buffers back at once (run under ASan in CI). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "transport/pool.h"

Test(pool, reuses_a_buffer_given_back)
{
    sl__pool *p = sl__pool_create(4);
    void *a = sl__pool_get(p, 100000);
    cr_assert_not_null(a);
    cr_assert_eq((uintptr_t)a % 64, 0, "not 64-byte aligned");
    memset(a, 1, 100000);
    sl__pool_put(a, NULL);
    cr_assert_eq(sl__pool_get(p, 100000), a, "an idle buffer of the right size was not reused");
    sl__pool_put(a, NULL);
    /* Up to twice the request is close enough; a smaller or much larger one is not. */
    cr_assert_eq(sl__pool_get(p, 60000), a);
    sl__pool_put(a, NULL);
    void *b = sl__pool_get(p, 40000);
    cr_assert_neq(b, a, "a buffer more than twice the request was lent");
    void *c = sl__pool_get(p, 200000);
    cr_assert_neq(c, a, "a buffer smaller than the request was lent");
    sl__pool_put(b, NULL);
    sl__pool_put(c, NULL);
    sl__pool_release(p);
}

Test(pool, keeps_at_most_max_free_idle)
{
    sl__pool *p = sl__pool_create(2);
    void *b[3];
    for (int i = 0; i < 3; i++) b[i] = sl__pool_get(p, 4096);
    cr_assert_eq(sl__pool_idle(p), 0);
    for (int i = 0; i < 3; i++) sl__pool_put(b[i], NULL); /* the third is freed */
    cr_assert_eq(sl__pool_idle(p), 2);
    void *x = sl__pool_get(p, 4096);
    cr_assert_eq(sl__pool_idle(p), 1);
    sl__pool_put(x, NULL);
    sl__pool_release(p);
}

/* libzmq may free a message after the transport closed: the buffer keeps its pool alive. */
Test(pool, buffers_outlive_the_owner)
{
    sl__pool *p = sl__pool_create(4);
    void *a = sl__pool_get(p, 1 << 20), *b = sl__pool_get(p, 1 << 20);
    sl__pool_put(a, NULL);
    sl__pool_release(p);   /* the idle one goes now */
    memset(b, 7, 1 << 20); /* still ours */
    sl__pool_put(b, NULL); /* the last reference: the pool goes now (ASan checks) */
}

struct churn {
    sl__pool *p;
    int rounds;
};

static void *churn_main(void *arg)
{
    struct churn *c = arg;
    for (int i = 0; i < c->rounds; i++) {
        size_t n = 1000 + (size_t)(i % 7) * 3000;
        unsigned char *x = sl__pool_get(c->p, n);
        if (!x) return arg;
        memset(x, i, n);
        sl__pool_put(x, NULL);
    }
    return NULL;
}

Test(pool, threads_share_one_pool)
{
    sl__pool *p = sl__pool_create(8);
    struct churn c = {p, 20000};
    pthread_t th[4];
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, churn_main, &c);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        cr_assert_null(r, "out of memory in thread %d", i);
    }
    sl__pool_release(p);
}

/* The watchdog (see exec_impl.h): a thread beside the rank's step loop that looks at the action
 * running twice a second. Links detect a dead or silent peer (heartbeats); they cannot see a
 * rank whose process answers heartbeats but makes no progress (a hung kernel, a driver stuck in
 * a call), nor its neighbours waiting on it for ever. This names it, once per action. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "runtime/exec/exec_impl.h"

#define FACTOR 20.0 /* times the action type's mean */
#define FLOOR  2.0  /* seconds, at least */

struct sl__watchdog {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
};

static void *watch(void *arg)
{
    sl__exec *e = arg;
    struct sl__watchdog *w = e->watchdog;
    const sl_action *warned = NULL;
    int64_t warned_step = -1;
    char host[256] = "?";
    gethostname(host, sizeof host);
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 500000000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&w->wake, &w->lock, &ts);
        const sl_action *a = e->cur;
        int64_t step = e->cur_step;
        double t0 = e->cur_t0;
        if (!a || (unsigned)a->type >= SL__EXEC_ACTION_TYPES || e->n_done[a->type] < 3) continue;
        if (a == warned && step == warned_step) continue;
        double avg = e->avg_s[a->type], ran = sl_now() - t0;
        if (ran < FLOOR || ran < FACTOR * avg) continue;
        warned = a;
        warned_step = step;
        char doing[256];
        sl__exec_doing(e, doing, sizeof doing);
        bool comm = a->type == SL_ACTION_RECV_F || a->type == SL_ACTION_RECV_B ||
                    a->type == SL_ACTION_SEND_F || a->type == SL_ACTION_SEND_B;
        sl_log(SL_LOG_WARN,
               "watchdog: rank %d (host %s) has been %s for %.1f s, %.0f times the mean of its "
               "%ld %s actions (%.3g s)%s",
               e->rank, host, doing, ran, avg > 0 ? ran / avg : 0, e->n_done[a->type],
               sl_action_type_name(a->type), avg, comm ? "" : ": a hung device or driver?");
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int sl__watchdog_start(sl__exec *e)
{
    struct sl__watchdog *w = sl_alloc(sizeof *w);
    if (!w) return SL_ENOMEM;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    e->watchdog = w;
    if (pthread_create(&w->thread, NULL, watch, e) != 0) {
        free(w);
        e->watchdog = NULL;
        return sl_fail(SL_ENOMEM, "cannot start the watchdog thread");
    }
    return SL_OK;
}

void sl__watchdog_stop(sl__exec *e)
{
    struct sl__watchdog *w = e->watchdog;
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    free(w);
    e->watchdog = NULL;
}

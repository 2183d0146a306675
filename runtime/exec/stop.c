/* Stopping on a signal (see exec.h): every rank must stop after the same step, or a neighbour
 * would wait for a step that never comes. Ranks agree without a coordinator, over the links they
 * already have, at the end of every step k (before step k+1, when there is one):
 *   gather:    rank 0 sends its flag to rank 1, which ORs in its own and passes it on, up to the
 *              last rank (the links towards NEXT), which then knows D_k, "some rank was asked";
 *   broadcast: at the end of step k+1, D_k goes back from the last rank to rank 0 (towards
 *              PREV), each rank reading it and passing it on; every rank that reads a yes stops
 *              after step k+1, so all stop after the same step.
 * Each rank reads these messages after everything its neighbour sent it for the same step and
 * before anything of the next, so they fall in the links' order with the schedule's messages,
 * and they cost no wait: a rank reads a vote when its neighbour's next step's data would be
 * due anyway. The messages are NORM-typed F64 scalars whose step carries SL_STEP_VOTE (mb 0:
 * gather, mb 1: broadcast). */
#include <signal.h>
#include <stdatomic.h>

#include "runtime/exec/exec_impl.h"

static atomic_int requested;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "a signal handler needs a lock-free atomic");

int sl_exec_request_stop_again(int sig)
{
    return atomic_exchange(&requested, sig > 0 ? sig : SIGINT);
}

void sl_exec_request_stop(int sig)
{
    (void)sl_exec_request_stop_again(sig);
}

int sl_exec_stop_requested(void)
{
    return atomic_load(&requested);
}

static int vote(sl__exec *e, int dir, bool send, int64_t step, int round, double *v)
{
    sl_tensor_meta meta = {.type = SL_MSG_NORM,
                           .step = SL_STEP_VOTE | (uint64_t)step,
                           .mb = (uint32_t)round,
                           .dtype = SL_DTYPE_F64,
                           .ndim = 1,
                           .shape = {1}};
    if (send) return sl_transport_send(e->tr, dir, &meta, v, sizeof *v);
    e->vote_peer = (e->rank + (dir == SL_LINK_NEXT ? 1 : e->world - 1)) % e->world;
    e->cur_step = step;
    int rc = sl_transport_recv(e->tr, dir, &meta, v, sizeof *v, NULL, NULL);
    if (rc == SL_OK) e->vote_peer = -1;
    return rc;
}

int sl__exec_stop_after(sl__exec *e, int64_t step, bool *stop)
{
    *stop = false;
    bool more = step + 1 < e->cfg->train.steps;
    if (e->world == 1) {
        *stop = more && requested;
        return SL_OK;
    }
    int last = e->world - 1;
    if (step > e->start_step) { /* the broadcast of D_{step-1} */
        double d = e->vote;
        if (e->rank != last) SL_TRY(vote(e, SL_LINK_NEXT, false, step - 1, 1, &d));
        if (e->rank != 0) SL_TRY(vote(e, SL_LINK_PREV, true, step - 1, 1, &d));
        *stop = more && d != 0;
    }
    if (*stop || !more) return SL_OK;
    double g = requested ? 1 : 0; /* the gather of D_step */
    if (e->rank != 0) {
        double got;
        SL_TRY(vote(e, SL_LINK_PREV, false, step, 0, &got));
        if (got != 0) g = 1;
    }
    if (e->rank != last) return vote(e, SL_LINK_NEXT, true, step, 0, &g);
    e->vote = g;
    return SL_OK;
}

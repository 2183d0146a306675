/* Stopping on a signal (see exec.h): every rank must stop after the same step, or a neighbour
 * would wait for a step that never comes. Ranks agree without a coordinator, over the links they
 * already have:
 *   gather:    at the end of step k (when there is a step k+1), rank 0 sends its flag to rank 1,
 *              which ORs in its own and passes it on, up to the last rank (the links towards
 *              NEXT), which then knows D_k, "some rank was asked";
 *   broadcast: D_k goes back from the last rank to rank 0 (towards PREV), each rank reading it
 *              and passing it on; every rank stops after step k+1 if D_k says so, so all stop
 *              after the same step.
 * The gather costs no wait: a rank reads its neighbour's flag where that neighbour's next step's
 * data would be due anyway. The broadcast runs against the data: read at the end of step k+1, it
 * would hold rank 0 (which starts every step) until the last rank had ended step k+1 and each
 * rank between had passed the vote on, a hop per rank, which a step ending in a reduction (NORM,
 * TIED) makes wait every step. So the last rank sends D_k as soon as it knows it, at the end of
 * step k, and every other rank reads it inside step k+1, just before its first receive from NEXT,
 * and passes it on at once: the vote comes in just ahead of data the rank waits for anyway, and
 * goes out ahead of anything it sends towards PREV. That holds when, in every rank's list but the
 * last one's, a receive from NEXT comes before any send towards PREV and any reduction
 * (sl_schedule_upstream_read, which sl__exec_vote_setup asks); otherwise every rank reads the
 * broadcast at the end of step k+1, after its actions, where the last rank sends it then. Either
 * way the votes fall in the links' order with the schedule's messages. They are NORM-typed F64
 * scalars whose step carries SL_STEP_VOTE (mb 0: gather, mb 1: broadcast). */
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
    e->vote_peer = (e->rank + (dir == SL_LINK_NEXT ? 1 : e->world - 1)) % e->world;
    e->vote_sends = send;
    e->cur_step = step;
    int rc = send ? sl_transport_send(e->tr, dir, &meta, v, sizeof *v)
                  : sl_transport_recv(e->tr, dir, &meta, v, sizeof *v, NULL, NULL);
    if (rc == SL_OK) e->vote_peer = -1; /* else a failure's report names the exchange */
    return rc;
}

void sl__exec_vote_setup(sl__exec *e)
{
    int last = e->world - 1;
    e->vote_inside = e->world > 1;
    for (int r = 0; r < last && e->vote_inside; r++)
        e->vote_inside = sl_schedule_upstream_read(e->plan->sched, r) >= 0;
    e->vote_at =
        e->vote_inside && e->rank != last ? sl_schedule_upstream_read(e->plan->sched, e->rank) : -1;
}

/* The broadcast of D_{step-1} at this rank: read from NEXT (but on the last rank), passed on
 * towards PREV (but on rank 0). */
static int broadcast(sl__exec *e, int64_t step)
{
    int last = e->world - 1;
    if (e->rank != last) SL_TRY(vote(e, SL_LINK_NEXT, false, step - 1, 1, &e->vote));
    if (e->rank != 0) SL_TRY(vote(e, SL_LINK_PREV, true, step - 1, 1, &e->vote));
    e->vote_pending = false;
    return SL_OK;
}

int sl__exec_vote_read(sl__exec *e, int64_t step)
{
    return e->vote_pending ? broadcast(e, step) : SL_OK;
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
    bool inside = e->vote_inside;
    if (step > e->start_step) { /* D_{step-1}: read in this step, or now */
        if (!inside) e->vote_pending = true;
        SL_TRY(sl__exec_vote_read(e, step));
        *stop = more && e->vote != 0;
    }
    if (*stop || !more) return SL_OK;
    double g = requested ? 1 : 0; /* the gather of D_step */
    if (e->rank != 0) {
        double got;
        SL_TRY(vote(e, SL_LINK_PREV, false, step, 0, &got));
        if (got != 0) g = 1;
    }
    if (e->rank != last) {
        e->vote_pending = inside; /* the broadcast comes in the next step */
        return vote(e, SL_LINK_NEXT, true, step, 0, &g);
    }
    e->vote = g;
    return inside ? vote(e, SL_LINK_PREV, true, step, 1, &e->vote) : SL_OK;
}

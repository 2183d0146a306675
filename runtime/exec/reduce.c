/* The stage executor's reductions across stages and ranks (see exec_impl.h): TIED, SYNC, NORM and
 * the optimizer step. */
#include <math.h>
#include <string.h>

#include "runtime/exec/exec_impl.h"

/* A reduction's messages, timed as transfer rather than compute: a rank that reaches TIED, SYNC
 * or NORM first waits there for its peers, as it waits in a RECV. */
static int xsend(sl__exec *e, int dir, const sl_tensor_meta *meta, const void *data, size_t bytes)
{
    double t0 = sl_now();
    int rc = sl_transport_send(e->tr, dir, meta, data, bytes);
    e->comm_s += sl_now() - t0;
    return rc;
}

static int xrecv(sl__exec *e, int dir, const sl_tensor_meta *meta, void *data, size_t bytes)
{
    double t0 = sl_now();
    int rc = sl_transport_recv(e->tr, dir, meta, data, bytes, NULL, NULL);
    e->comm_s += sl_now() - t0;
    return rc;
}

/* The stage on this rank that holds a copy of the tied parameter, and which parameter it is. */
static int tied_copy(sl__exec *e, int stage, sl_stage **st, int *k)
{
    sl__exec_stage *l = sl__exec_local_of(e, stage);
    *st = l ? l->st : NULL;
    *k = l ? sl_stage_tied_param(l->st) : -1;
    if (*k < 0) return sl_fail(SL_EINTERNAL, "stage %d holds no copy of a tied parameter", stage);
    return SL_OK;
}

/* TIED: the two copies of a tied parameter take g_first + g_last, computed the same way (on the
 * host, in that order) on both ranks, so they stay bit-identical. */
int sl__exec_tied(sl__exec *e, int64_t step, const sl_action *a)
{
    const sl_schedule *sc = e->plan->sched;
    const int first = sc->tied_stages[0], last = sc->tied_stages[1];
    sl_stage *st;
    int k;
    SL_TRY(tied_copy(e, a->stage, &st, &k));
    const sl_param *prm = &e->model->params[st->first_param + k];
    size_t n = prm->numel, bytes = n * sizeof(float);
    for (int i = 0; i < 2; i++)
        if (!e->tied_host[i] && !(e->tied_host[i] = sl_alloc(bytes))) return SL_ENOMEM;
    float *mine = e->tied_host[0], *theirs = e->tied_host[1];
    SL_TRY(sl_buffer_download(st->grad[k], 0, mine, bytes));
    sl_stage *twin_st = NULL;
    int twin_k = -1;
    sl_exchange ex[SL_EXCHANGES_MAX];
    int nex = sl_action_exchanges(sc, e->rank, a, ex);
    if (nex < 0) return sl_fail(SL_EINTERNAL, "TIED does not belong to rank %d", e->rank);
    if (nex == 0) { /* both copies are ours: the other tied stage, or chimera's other replica's */
        int chain = sl_partition_chain_stages(e->part);
        int twin = e->part->chains > 1 ? 2 * chain - 1 - a->stage : first + last - a->stage;
        SL_TRY(tied_copy(e, twin, &twin_st, &twin_k));
        SL_TRY(sl_buffer_download(twin_st->grad[twin_k], 0, theirs, bytes));
    }
    sl_tensor_meta meta = {.type = SL_MSG_TIED,
                           .step = (uint64_t)step,
                           .dtype = SL_DTYPE_F32,
                           .ndim = (uint32_t)prm->spec.ndim};
    for (int d = 0; d < prm->spec.ndim; d++) meta.shape[d] = prm->spec.shape[d];
    for (int i = 0; i < nex; i++) {
        int dir = ex[i].dir ? SL_LINK_PREV : SL_LINK_NEXT;
        meta.stage = (uint32_t)(ex[i].send ? first + last - a->stage : a->stage);
        if (ex[i].send)
            SL_TRY(xsend(e, dir, &meta, mine, bytes));
        else
            SL_TRY(xrecv(e, dir, &meta, theirs, bytes));
    }
    const float *gf = a->stage == first ? mine : theirs, *gl = a->stage == first ? theirs : mine;
    float *sum = a->stage == first ? theirs : mine; /* overwrites the last copy's slot */
    for (size_t i = 0; i < n; i++) sum[i] = gf[i] + gl[i];
    SL_TRY(sl_buffer_upload(st->grad[k], 0, sum, bytes));
    if (twin_st) SL_TRY(sl_buffer_upload(twin_st->grad[twin_k], 0, sum, bytes));
    return SL_OK;
}

/* The floats of all the gradients of model stage `stage` (a tied copy's too), and their copy
 * between a stage's device buffers and `host` (each parameter's in order). */
static size_t stage_floats(const sl__exec *e, int stage)
{
    const sl_model *m = e->model;
    const sl_stage_range *r = &e->part->stages[stage];
    size_t n = 0;
    for (int p = m->first_param[r->first]; p < m->first_param[r->last]; p++)
        n += m->params[p].numel;
    return n;
}

static int grads_copy(const sl__exec *e, sl_stage *st, float *host, bool upload)
{
    for (int k = 0; k < st->nparams; k++) {
        size_t bytes = e->model->params[st->first_param + k].numel * sizeof(float);
        SL_TRY(upload ? sl_buffer_upload(st->grad[k], 0, host, bytes)
                      : sl_buffer_download(st->grad[k], 0, host, bytes));
        host += bytes / sizeof(float);
    }
    return SL_OK;
}

/* The floats of SYNC's message of pair p (ranks p and D-1-p): the gradients of model stages p and
 * D-1-p, which each of the two holds one copy of. */
static size_t pair_floats(const sl__exec *e, int p)
{
    return stage_floats(e, p) + stage_floats(e, e->world - 1 - p);
}

size_t sl__exec_sync_bytes(const sl__exec *e)
{
    size_t most = 0;
    for (int p = 0; e->part->chains > 1 && p < e->world / 2; p++)
        most = SL_MAX(most, pair_floats(e, p));
    return most * sizeof(float);
}

/* SYNC (chimera, see schedule.h): this rank holds model stage r of the down replica and model stage
 * D-1-r of the up replica, its peer D-1-r the twins. Each sends the other all its gradients, its
 * down stage's first, in one message (through the ranks between them, which pass it on), and
 * both sum every pair of copies down's first, so the twins take the same bits. Rank 0, which
 * holds the up replica's last stage, also sends its loss sum to rank D-1, which reports the
 * step's loss. */
int sl__exec_sync(sl__exec *e, int64_t step, const sl_action *a)
{
    int n = sl_partition_chain_stages(e->part), M = e->cfg->train.microbatches;
    sl_stage *down = NULL, *up = NULL;
    for (int i = 0; i < e->nls; i++)
        *(sl__exec_is_replica(e, &e->ls[i]) ? &up : &down) = e->ls[i].st;
    if (!down || !up || a->peer != e->world - 1 - e->rank)
        return sl_fail(SL_EINTERNAL, "SYNC on rank %d without a stage of each replica", e->rank);
    size_t nd = stage_floats(e, e->rank), nu = stage_floats(e, 2 * n - 1 - e->rank);
    size_t most = sl__exec_sync_bytes(e);
    for (int i = 0; i < 3; i++)
        if (!e->sync_host[i] && !(e->sync_host[i] = sl_alloc(most))) return SL_ENOMEM;
    float *mine = e->sync_host[0], *theirs = e->sync_host[1], *relay = e->sync_host[2];
    SL_TRY(grads_copy(e, down, mine, false));
    SL_TRY(grads_copy(e, up, mine + nd, false));
    sl_exchange ex[SL_EXCHANGES_MAX];
    int nex = sl_action_exchanges(e->plan->sched, e->rank, a, ex);
    if (nex <= 0) return sl_fail(SL_EINTERNAL, "SYNC does not belong to rank %d", e->rank);
    for (int i = 0; i < nex; i++) {
        const sl_exchange *x = &ex[i];
        size_t pb = pair_floats(e, x->round) * sizeof(float);
        if (pb == 0) continue; /* stages without parameters: nothing to sum (on every rank) */
        sl_tensor_meta meta = {.type = SL_MSG_SYNC,
                               .step = (uint64_t)step,
                               .stage = (uint32_t)x->round,
                               .dtype = SL_DTYPE_F32,
                               .ndim = 1,
                               .shape = {(int64_t)(pb / sizeof(float))}};
        int dir = x->dir ? SL_LINK_PREV : SL_LINK_NEXT;
        float *buf = x->relay ? relay : x->send ? mine : theirs;
        if (x->send)
            SL_TRY(xsend(e, dir, &meta, buf, pb));
        else
            SL_TRY(xrecv(e, dir, &meta, buf, pb));
    }
    /* The up replica's loss: its last stage is on rank 0, the step's loss reported by rank D-1;
     * the two are pair 0, whose messages go straight between them (ex[0]'s link). */
    int last_down = sl_partition_rank(e->part, n - 1);
    int last_up = sl_partition_rank(e->part, 2 * n - 1);
    e->sync_loss = 0;
    if (e->rank == last_up) SL_TRY(sl__exec_loss_sum(e, 2 * n - 1, M / 2, M, &e->sync_loss));
    if (e->rank == last_up || e->rank == last_down) {
        sl_tensor_meta lm = {.type = SL_MSG_SYNC,
                             .step = (uint64_t)step,
                             .mb = 1,
                             .dtype = SL_DTYPE_F64,
                             .ndim = 1,
                             .shape = {1}};
        int dir = ex[0].dir ? SL_LINK_PREV : SL_LINK_NEXT;
        if (e->rank == last_up)
            SL_TRY(xsend(e, dir, &lm, &e->sync_loss, sizeof e->sync_loss));
        else
            SL_TRY(xrecv(e, dir, &lm, &e->sync_loss, sizeof e->sync_loss));
    }
    /* Model stage r: my down copy + the peer's up copy (its second part); model stage D-1-r: the
     * peer's down copy + my up copy. */
    for (size_t i = 0; i < nd; i++) mine[i] = mine[i] + theirs[nu + i];
    for (size_t i = 0; i < nu; i++) mine[nd + i] = theirs[i] + mine[nd + i];
    SL_TRY(grads_copy(e, down, mine, true));
    return grads_copy(e, up, mine + nd, true);
}

/* NORM: this rank's sum of squared gradients, then the ring all-reduce of sl_action_exchanges:
 * each partial sum is what came from the previous rank plus this rank's own, and the total that
 * the last rank makes is passed on as it is, so every rank ends with the same double. */
int sl__exec_norm(sl__exec *e, int64_t step, const sl_action *a)
{
    double own = 0;
    for (int i = 0; i < e->nls; i++) {
        double part;
        if (sl__exec_is_replica(e, &e->ls[i])) continue;
        SL_TRY(sl_stage_grad_sumsq(e->ls[i].st, &part));
        own += part;
    }
    double v = own;
    sl_exchange ex[SL_EXCHANGES_MAX];
    int nex = sl_action_exchanges(e->plan->sched, e->rank, a, ex);
    if (nex < 0) return sl_fail(SL_EINTERNAL, "NORM does not belong to rank %d", e->rank);
    for (int i = 0; i < nex; i++) {
        sl_tensor_meta meta = {.type = SL_MSG_NORM,
                               .step = (uint64_t)step,
                               .mb = (uint32_t)ex[i].round,
                               .dtype = SL_DTYPE_F64,
                               .ndim = 1,
                               .shape = {1}};
        int dir = ex[i].dir ? SL_LINK_PREV : SL_LINK_NEXT;
        if (ex[i].send) {
            SL_TRY(xsend(e, dir, &meta, &v, sizeof v));
        } else {
            double got;
            SL_TRY(xrecv(e, dir, &meta, &got, sizeof got));
            if (!isfinite(got) || got < 0)
                return sl_fail(SL_EPROTOCOL, "NORM from rank %d: %g is not a sum of squares",
                               ex[i].peer, got);
            v = ex[i].round == 0 ? got + own : got;
        }
    }
    e->sumsq = v;
    e->have_sumsq = true;
    return SL_OK;
}

/* The step's end on this rank's stages. Clipping needs the norm of the whole model: one rank
 * has it when it holds every stage, otherwise the schedule's NORM brought it. */
int sl__exec_optimizer_step(sl__exec *e, int64_t step)
{
    sl_stage *stages[64];
    if (e->nls > (int)SL_ARRAY_LEN(stages))
        return sl_fail(SL_ELIMIT, "%d chunks on one rank (at most %zu)", e->nls,
                       SL_ARRAY_LEN(stages));
    for (int i = 0; i < e->nls; i++) stages[i] = e->ls[i].st;
    if (e->world > 1 && e->cfg->train.grad_clip > 0 && !e->have_sumsq)
        return sl_fail(SL_EINTERNAL, "clipping on %d ranks without the schedule's NORM", e->world);
    int rc = sl_stages_step(stages, e->nls, e->cfg, step, e->world == 1 || e->have_sumsq,
                            e->have_sumsq ? &e->sumsq : NULL, &e->grad_norm, &e->lr);
    e->have_sumsq = false;
    return rc;
}

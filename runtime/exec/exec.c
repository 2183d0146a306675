/* The stage executor. See exec.h.
 *
 * State per local stage and micro-batch: the stage input (device), the stash of activations, the
 * output gradient (device), and host copies of what waits to be sent. Device buffers come from
 * pools that keep what a step freed for the next step, so a schedule that holds fewer micro-batches
 * at once (1F1B) also allocates fewer buffers than one that holds them all (GPipe). */
#define _GNU_SOURCE
#include "runtime/exec/exec.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "runtime/data/data.h"
#include "runtime/launch/launch.h"
#include "runtime/plan/plan.h"
#include "transport/transport.h"

/* ------------------------------------------------------------------------------------------------
 * Buffer pools: free buffers by exact size */

#define POOL_MAX 512

typedef struct pool {
    sl_device *dev;
    sl_buffer *free[POOL_MAX];
    int nfree;
} pool;

static int pool_get(pool *p, size_t bytes, sl_buffer **out)
{
    for (int i = 0; i < p->nfree; i++)
        if (sl_buffer_size(p->free[i]) == bytes) {
            *out = p->free[i];
            p->free[i] = p->free[--p->nfree];
            return SL_OK;
        }
    return sl_buffer_alloc(p->dev, bytes, out);
}

static void pool_put(pool *p, sl_buffer *b)
{
    if (!b) return;
    if (p->nfree < POOL_MAX)
        p->free[p->nfree++] = b;
    else
        sl_buffer_free(b);
}

static void pool_free(pool *p)
{
    for (int i = 0; i < p->nfree; i++) sl_buffer_free(p->free[i]);
    p->nfree = 0;
}

/* ------------------------------------------------------------------------------------------------
 * Per micro-batch state */

typedef struct mb_state {
    sl_buffer *input; /* the stage's input [rows, width(first)] */
    sl_stash *stash;  /* activations between F (or R) and B (or W) */
    sl_buffer *dout;  /* the gradient of the stage's output */
    sl_buffer *loss;  /* last stage: per-row losses [rows] */
    float *send_f;    /* host copy of the output, waiting for SEND_F */
    float *send_b;    /* host copy of the input gradient, waiting for SEND_B */
} mb_state;

typedef struct local_stage {
    int stage; /* model stage index */
    sl_stage *st;
    sl_stash *stash_free[64]; /* stashes kept for reuse */
    int nstash_free;
    mb_state *mb;         /* [M] */
    double f_s, b_s, w_s; /* compute seconds this run, for the timed simulation */
    long nf, nb, nw;
} local_stage;

typedef struct trace_event {
    char name[24];
    double t0, t1;
} trace_event;

typedef struct exec {
    const sl_plan *plan;
    const sl_config *cfg; /* the plan's */
    const sl_model *model;
    const sl_partition *part;
    const sl_exec_options *opt;
    int rank, world;
    sl_data data;
    sl_device *dev;
    sl_transport *tr;
    sl_reporter *rep;
    pool pool;
    local_stage *ls; /* [chunks] */
    int nls;
    size_t rows; /* per micro-batch */
    float *host_x;
    int32_t *host_labels;
    float *host_targets;
    float *host_loss; /* one micro-batch's per-row losses */
    trace_event *trace;
    int ntrace, max_trace;
    double busy;
    double lr, grad_norm; /* of the last optimizer step (the norm: NaN unless it is global) */
    double sumsq;         /* the whole model's sum of squared gradients, after NORM */
    bool have_sumsq;      /* NORM ran this step */
    int eval_share; /* 0: training; 1: evaluating the validation share, 2: the training share */
    int64_t eval_k; /* the evaluation batch the forwards read (sl_data_eval_batch) */
    double eval_s;  /* wall seconds spent evaluating (left out of wall_s and busy_s) */
    float *tied_host[2]; /* TIED: this copy's gradient and the twin's, on the host */
    /* CURVE: this rank's key pair and every rank's public key */
    char secret[41], (*pubs)[41];
    const char **allowed;
    sl_transport_curve curve;
} exec;

static local_stage *local_of(exec *e, int stage)
{
    for (int i = 0; i < e->nls; i++)
        if (e->ls[i].stage == stage) return &e->ls[i];
    return NULL;
}

static size_t act_bytes(const exec *e, int layer)
{
    return e->rows * (size_t)sl_model_width(e->model, layer) * sizeof(float);
}

static int stash_get(exec *e, local_stage *l, sl_stash **out)
{
    if (l->nstash_free > 0) {
        *out = l->stash_free[--l->nstash_free];
        return SL_OK;
    }
    sl_stash *st = sl_alloc(sizeof *st);
    if (!st) return SL_ENOMEM;
    int rc = sl_stash_alloc(l->st, e->rows, st);
    if (rc != SL_OK) {
        free(st);
        return rc;
    }
    *out = st;
    return SL_OK;
}

static void stash_put(local_stage *l, sl_stash *st)
{
    if (!st) return;
    if (l->nstash_free < (int)SL_ARRAY_LEN(l->stash_free)) {
        l->stash_free[l->nstash_free++] = st;
    } else {
        sl_stash_free(st);
        free(st);
    }
}

/* ------------------------------------------------------------------------------------------------
 * Actions */

static sl_tensor_meta meta_for(const exec *e, int type, int64_t step, int stage, int mb, int width)
{
    sl_tensor_meta m = {.type = type,
                        .step = (uint64_t)step,
                        .stage = (uint32_t)stage,
                        .mb = (uint32_t)mb,
                        .dtype = SL_DTYPE_F32,
                        .ndim = 2};
    m.shape[0] = (int64_t)e->rows;
    m.shape[1] = width;
    return m;
}

static void release_mb(exec *e, local_stage *l, mb_state *s)
{
    stash_put(l, s->stash);
    s->stash = NULL;
    pool_put(&e->pool, s->input);
    s->input = NULL;
    pool_put(&e->pool, s->dout);
    s->dout = NULL;
}

static int do_forward(exec *e, int64_t step, int stage, int mb, bool recompute_only)
{
    local_stage *l = local_of(e, stage);
    mb_state *s = &l->mb[mb];
    const sl_stage_range *r = &e->part->stages[stage];
    if (!s->input) {
        if (stage != 0)
            return sl_fail(SL_EINTERNAL, "stage %d has no input for micro-batch %d", stage, mb);
        /* The first stage reads its micro-batch from the data. */
        if (e->eval_share)
            SL_TRY(sl_data_eval_batch(&e->data, e->eval_share == 1, e->eval_k, mb,
                                      (int32_t *)e->host_x, NULL));
        else
            SL_TRY(sl_data_microbatch(&e->data, step, mb, e->host_x, NULL, NULL));
        SL_TRY(pool_get(&e->pool, act_bytes(e, 0), &s->input));
        SL_TRY(sl_buffer_upload(s->input, 0, e->host_x, act_bytes(e, 0)));
    }
    SL_TRY(stash_get(e, l, &s->stash));
    SL_TRY(sl_stage_forward(l->st, e->rows, s->input, s->stash));
    if (recompute_only) return SL_OK;

    sl_buffer *out = sl_stash_output(s->stash);
    if (stage == e->part->nstages - 1) {
        /* The loss and its gradient start the backward pass. */
        const sl_model *m = e->model;
        size_t pos = (size_t)m->positions; /* a GPT's loss is over every position */
        bool labels = sl_loss_get(m->loss)->int_targets;
        size_t tbytes =
            e->rows * sl_loss_target_width(sl_loss_get(m->loss), (size_t)m->outputs, pos) * 4;
        sl_buffer *target;
        if (e->eval_share)
            SL_TRY(sl_data_eval_batch(&e->data, e->eval_share == 1, e->eval_k, mb, NULL,
                                      e->host_labels));
        else
            SL_TRY(sl_data_microbatch(&e->data, step, mb, NULL, e->host_labels, e->host_targets));
        SL_TRY(pool_get(&e->pool, tbytes, &target));
        int rc = sl_buffer_upload(
            target, 0, labels ? (void *)e->host_labels : (void *)e->host_targets, tbytes);
        if (rc == SL_OK) rc = pool_get(&e->pool, e->rows * pos * sizeof(float), &s->loss);
        if (rc == SL_OK) rc = pool_get(&e->pool, act_bytes(e, r->last), &s->dout);
        /* An evaluation keeps only the per-row losses: the output gradient the loss kernel
         * writes as well goes back to the pool unused, and no backward follows. */
        if (rc == SL_OK)
            rc = sl_loss_forward_backward(e->dev, m, e->rows, out, target,
                                          1.0f / (float)((size_t)e->cfg->train.batch * pos),
                                          s->loss, s->dout);
        pool_put(&e->pool, target);
        SL_TRY(rc);
    } else if (sl_partition_rank(e->part, stage + 1) == e->rank) {
        /* The next stage is ours too: hand the output over on the device. */
        mb_state *next = &local_of(e, stage + 1)->mb[mb];
        SL_TRY(pool_get(&e->pool, act_bytes(e, r->last), &next->input));
        SL_TRY(sl_buffer_copy(next->input, 0, out, 0, act_bytes(e, r->last)));
    } else {
        if (!s->send_f && !(s->send_f = sl_transport_alloc(e->tr, act_bytes(e, r->last))))
            return SL_ENOMEM;
        SL_TRY(sl_buffer_download(out, 0, s->send_f, act_bytes(e, r->last)));
    }
    if (e->eval_share) {
        /* Forward only: nothing of this micro-batch is needed once its output is passed on. */
        release_mb(e, l, s);
    } else if (e->cfg->pipeline.recompute) {
        /* Keep only the stage input; R rebuilds the rest before the backward. */
        stash_put(l, s->stash);
        s->stash = NULL;
    }
    return SL_OK;
}

/* After the input gradient of (stage, mb) is in `din`: give it to the previous stage. */
static int route_input_grad(exec *e, int stage, int mb, sl_buffer *din)
{
    size_t bytes = act_bytes(e, e->part->stages[stage].first);
    if (sl_partition_rank(e->part, stage - 1) == e->rank) {
        local_of(e, stage - 1)->mb[mb].dout = din;
        return SL_OK;
    }
    mb_state *s = &local_of(e, stage)->mb[mb];
    int rc = SL_OK;
    if (!s->send_b && !(s->send_b = sl_transport_alloc(e->tr, bytes))) rc = SL_ENOMEM;
    if (rc == SL_OK) rc = sl_buffer_download(din, 0, s->send_b, bytes);
    pool_put(&e->pool, din);
    return rc;
}

static int do_backward(exec *e, int stage, int mb, enum sl_action_type type)
{
    local_stage *l = local_of(e, stage);
    mb_state *s = &l->mb[mb];
    if (!s->stash || !s->input || (type != SL_ACTION_W && !s->dout))
        return sl_fail(SL_EINTERNAL, "stage %d micro-batch %d: backward before its forward", stage,
                       mb);
    sl_buffer *din = NULL;
    if (stage > 0 && type != SL_ACTION_W)
        SL_TRY(pool_get(&e->pool, act_bytes(e, e->part->stages[stage].first), &din));
    int rc;
    if (type == SL_ACTION_B)
        rc = sl_stage_backward(l->st, e->rows, s->input, s->stash, s->dout, din);
    else if (type == SL_ACTION_I)
        rc = sl_stage_backward_input(l->st, e->rows, s->input, s->stash, s->dout, din);
    else
        rc = sl_stage_backward_weight(l->st, e->rows, s->input, s->stash);
    if (rc != SL_OK) {
        pool_put(&e->pool, din);
        return rc;
    }
    if (din) SL_TRY(route_input_grad(e, stage, mb, din));
    if (type == SL_ACTION_I) {
        /* W still needs the stash, the input and the output gradient kept in the stash. */
        pool_put(&e->pool, s->dout);
        s->dout = NULL;
        return SL_OK;
    }
    release_mb(e, l, s);
    return SL_OK;
}

static int do_send(exec *e, int64_t step, const sl_action *a)
{
    bool fwd = a->type == SL_ACTION_SEND_F;
    mb_state *s = &local_of(e, a->stage)->mb[a->mb];
    const sl_stage_range *r = &e->part->stages[a->stage];
    int width = sl_model_width(e->model, fwd ? r->last : r->first);
    float **host = fwd ? &s->send_f : &s->send_b;
    if (!*host)
        return sl_fail(SL_EINTERNAL, "nothing to send for stage %d micro-batch %d", a->stage,
                       a->mb);
    sl_tensor_meta meta = meta_for(e, fwd ? SL_MSG_ACTIVATION : SL_MSG_GRADIENT, step,
                                   fwd ? a->stage + 1 : a->stage - 1, a->mb, width);
    size_t bytes = e->rows * (size_t)width * sizeof(float);
    int rc = sl_transport_send_owned(e->tr, fwd ? SL_LINK_NEXT : SL_LINK_PREV, &meta, *host, bytes,
                                     sl_transport_free, NULL);
    *host = NULL; /* the transport owns it now, whatever happened */
    return rc;
}

static int do_recv(exec *e, int64_t step, const sl_action *a)
{
    bool fwd = a->type == SL_ACTION_RECV_F;
    mb_state *s = &local_of(e, a->stage)->mb[a->mb];
    const sl_stage_range *r = &e->part->stages[a->stage];
    int width = sl_model_width(e->model, fwd ? r->first : r->last);
    size_t bytes = e->rows * (size_t)width * sizeof(float);
    sl_tensor_meta want =
        meta_for(e, fwd ? SL_MSG_ACTIVATION : SL_MSG_GRADIENT, step, a->stage, a->mb, width);
    /* Received straight into the buffer's mapping: the transport checks the CRC while it copies
     * the message there, one pass over the data (where the device's memory is the host's, the
     * mapping is the buffer itself). */
    int dir = fwd ? SL_LINK_PREV : SL_LINK_NEXT;
    sl_buffer **dst = fwd ? &s->input : &s->dout;
    SL_TRY(pool_get(&e->pool, bytes, dst));
    void *host = NULL;
    SL_TRY(sl_buffer_map_write(*dst, 0, bytes, &host));
    int rc = sl_transport_recv(e->tr, dir, &want, host, bytes, NULL, NULL);
    int unmapped = sl_buffer_unmap(*dst, host);
    return rc ? rc : unmapped;
}

/* The stage on this rank that holds a copy of the tied parameter, and which parameter it is. */
static int tied_copy(exec *e, int stage, sl_stage **st, int *k)
{
    local_stage *l = local_of(e, stage);
    *st = l ? l->st : NULL;
    *k = l ? sl_stage_tied_param(l->st) : -1;
    if (*k < 0) return sl_fail(SL_EINTERNAL, "stage %d holds no copy of a tied parameter", stage);
    return SL_OK;
}

/* TIED: the two copies of a tied parameter take g_first + g_last, computed the same way (on the
 * host, in that order) on both ranks, so they stay bit-identical. */
static int do_tied(exec *e, int64_t step, const sl_action *a)
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
    sl_exchange ex[4];
    int nex = sl_action_exchanges(sc, e->rank, a, ex);
    if (nex < 0) return sl_fail(SL_EINTERNAL, "TIED does not belong to rank %d", e->rank);
    if (nex == 0) { /* both copies are ours */
        SL_TRY(tied_copy(e, first + last - a->stage, &twin_st, &twin_k));
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
            SL_TRY(sl_transport_send(e->tr, dir, &meta, mine, bytes));
        else
            SL_TRY(sl_transport_recv(e->tr, dir, &meta, theirs, bytes, NULL, NULL));
    }
    const float *gf = a->stage == first ? mine : theirs, *gl = a->stage == first ? theirs : mine;
    float *sum = a->stage == first ? theirs : mine; /* overwrites the last copy's slot */
    for (size_t i = 0; i < n; i++) sum[i] = gf[i] + gl[i];
    SL_TRY(sl_buffer_upload(st->grad[k], 0, sum, bytes));
    if (twin_st) SL_TRY(sl_buffer_upload(twin_st->grad[twin_k], 0, sum, bytes));
    return SL_OK;
}

/* NORM: this rank's sum of squared gradients, then the ring all-reduce of sl_action_exchanges:
 * each partial sum is what came from the previous rank plus this rank's own, and the total that
 * the last rank makes is passed on as it is, so every rank ends with the same double. */
static int do_norm(exec *e, int64_t step, const sl_action *a)
{
    double own = 0;
    for (int i = 0; i < e->nls; i++) {
        double part;
        SL_TRY(sl_stage_grad_sumsq(e->ls[i].st, &part));
        own += part;
    }
    double v = own;
    sl_exchange ex[4];
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
            SL_TRY(sl_transport_send(e->tr, dir, &meta, &v, sizeof v));
        } else {
            double got;
            SL_TRY(sl_transport_recv(e->tr, dir, &meta, &got, sizeof got, NULL, NULL));
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
static int optimizer_step(exec *e, int64_t step)
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

static void trace_add(exec *e, const sl_action *a, double t0, double t1)
{
    if (e->ntrace >= e->max_trace) return;
    trace_event *ev = &e->trace[e->ntrace++];
    sl_action_format(a, ev->name, sizeof ev->name);
    ev->t0 = t0;
    ev->t1 = t1;
}

static int run_action(exec *e, int64_t step, const sl_action *a)
{
    double t0 = sl_now();
    int rc = SL_OK;
    bool compute = true;
    local_stage *l = a->stage >= 0 ? local_of(e, a->stage) : NULL;
    switch (a->type) {
    case SL_ACTION_F:
        rc = do_forward(e, step, a->stage, a->mb, false);
        break;
    case SL_ACTION_R:
        rc = do_forward(e, step, a->stage, a->mb, true);
        break;
    case SL_ACTION_B:
    case SL_ACTION_I:
    case SL_ACTION_W:
        rc = do_backward(e, a->stage, a->mb, a->type);
        break;
    case SL_ACTION_SEND_F:
    case SL_ACTION_SEND_B:
        compute = false;
        rc = do_send(e, step, a);
        break;
    case SL_ACTION_RECV_F:
    case SL_ACTION_RECV_B:
        compute = false;
        rc = do_recv(e, step, a);
        break;
    case SL_ACTION_TIED:
        rc = do_tied(e, step, a);
        break;
    case SL_ACTION_NORM:
        rc = do_norm(e, step, a);
        break;
    case SL_ACTION_OPT:
        rc = optimizer_step(e, step);
        break;
    }
    if (rc == SL_OK && compute) rc = sl_device_finish(e->dev);
    double t1 = sl_now();
    if (rc != SL_OK) {
        char name[32];
        sl_action_format(a, name, sizeof name);
        if (e->eval_share)
            return sl_fail_context(rc, "rank %d, evaluation batch %lld of the %s share, action %s",
                                   e->rank, (long long)e->eval_k,
                                   e->eval_share == 1 ? "validation" : "training", name);
        return sl_fail_context(rc, "rank %d, step %lld, action %s", e->rank, (long long)step, name);
    }
    if (compute && !e->eval_share) {
        e->busy += t1 - t0;
        if (l && a->type == SL_ACTION_F) l->f_s += t1 - t0, l->nf++;
        if (l && (a->type == SL_ACTION_B || a->type == SL_ACTION_I)) l->b_s += t1 - t0, l->nb++;
        if (l && a->type == SL_ACTION_W) l->w_s += t1 - t0, l->nw++;
    }
    trace_add(e, a, t0, t1);
    return SL_OK;
}

/* The sum of every row's (every position's) loss over the mini-batch's micro-batches, in order. */
static int loss_sum(exec *e, double *sum_out)
{
    local_stage *l = local_of(e, e->part->nstages - 1);
    size_t n = e->rows * (size_t)e->model->positions;
    double sum = 0.0;
    for (int m = 0; m < e->cfg->train.microbatches; m++) {
        mb_state *s = &l->mb[m];
        if (!s->loss) return sl_fail(SL_EINTERNAL, "micro-batch %d has no loss", m);
        SL_TRY(sl_buffer_download(s->loss, 0, e->host_loss, n * sizeof(float)));
        for (size_t i = 0; i < n; i++) sum += e->host_loss[i];
        pool_put(&e->pool, s->loss);
        s->loss = NULL;
    }
    *sum_out = sum;
    return SL_OK;
}

/* The mean loss of the step over the mini-batch. */
static int step_loss(exec *e, double *loss)
{
    double sum;
    SL_TRY(loss_sum(e, &sum));
    *loss = sum / ((double)e->cfg->train.batch * (double)e->model->positions);
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Reports */

static int report(exec *e, cJSON *obj)
{
    cJSON_AddNumberToObject(obj, "rank", e->rank);
    char *text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!text) return sl_fail(SL_ENOMEM, "out of memory formatting a report");
    int rc = sl_reporter_send(e->rep, text);
    free(text);
    return rc;
}

static int report_done(exec *e, double wall)
{
    /* The trace goes first: "done" tells a coordinator under a launcher that this rank has
     * nothing more to say. */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "trace");
    cJSON *evs = cJSON_AddArrayToObject(o, "events");
    for (int i = 0; i < e->ntrace; i++) {
        cJSON *ev = cJSON_CreateArray();
        cJSON_AddItemToArray(ev, cJSON_CreateString(e->trace[i].name));
        cJSON_AddItemToArray(ev, cJSON_CreateNumber(1e6 * e->trace[i].t0));
        cJSON_AddItemToArray(ev, cJSON_CreateNumber(1e6 * (e->trace[i].t1 - e->trace[i].t0)));
        cJSON_AddItemToArray(evs, ev);
    }
    SL_TRY(report(e, o));
    o = cJSON_CreateObject();
    const sl_device_info *info = sl_device_get_info(e->dev);
    cJSON_AddStringToObject(o, "type", "done");
    cJSON_AddStringToObject(o, "device", info->id);
    cJSON_AddStringToObject(o, "device_name", info->name);
    cJSON_AddNumberToObject(o, "peak_bytes", (double)sl_device_peak_allocated(e->dev));
    cJSON_AddNumberToObject(o, "busy_s", e->busy);
    cJSON_AddNumberToObject(o, "wall_s", wall);
    cJSON *stages = cJSON_AddArrayToObject(o, "stages");
    for (int i = 0; i < e->nls; i++) {
        local_stage *l = &e->ls[i];
        cJSON *s = cJSON_CreateObject();
        cJSON_AddNumberToObject(s, "stage", l->stage);
        cJSON_AddNumberToObject(s, "f_ms", l->nf ? 1e3 * l->f_s / (double)l->nf : 0);
        cJSON_AddNumberToObject(s, "b_ms", l->nb ? 1e3 * l->b_s / (double)l->nb : 0);
        cJSON_AddNumberToObject(s, "w_ms", l->nw ? 1e3 * l->w_s / (double)l->nw : 0);
        cJSON_AddItemToArray(stages, s);
    }
    return report(e, o);
}

/* ------------------------------------------------------------------------------------------------
 * Set-up and the step loop */

/* launch.keys holds rank<i>.key and rank<i>.pub for every rank (`sluice keys -n D --out DIR`). */
static int load_keys(exec *e)
{
    const char *dir = e->cfg->launch.keys ? e->cfg->launch.keys : e->opt->keys_dir;
    if (!dir)
        return sl_fail(SL_ECONFIG,
                       "launch.curve needs launch.keys: make them with `sluice keys "
                       "-n %d --out DIR` and give every rank DIR",
                       e->world);
    if (!(e->pubs = sl_alloc((size_t)e->world * sizeof *e->pubs)) ||
        !(e->allowed = sl_alloc((size_t)e->world * sizeof *e->allowed)))
        return SL_ENOMEM;
    char path[4096];
    for (int r = 0; r < e->world; r++) {
        sl_run_path(path, sizeof path, dir, SL_RUN_PUBLIC_KEY, r, 0);
        SL_TRY(sl_transport_read_key(path, e->pubs[r]));
        e->allowed[r] = e->pubs[r];
    }
    sl_run_path(path, sizeof path, dir, SL_RUN_SECRET_KEY, e->rank, 0);
    SL_TRY(sl_transport_read_key(path, e->secret));
    e->curve = (sl_transport_curve){.public_key = e->pubs[e->rank],
                                    .secret_key = e->secret,
                                    .next_public_key = e->pubs[(e->rank + 1) % e->world],
                                    .allowed_keys = e->allowed,
                                    .allowed_count = (size_t)e->world};
    return SL_OK;
}

static int setup(exec *e)
{
    const sl_config *cfg = e->cfg;
    SL_TRY(sl_data_load(cfg, e->model->outputs, &e->data));
    sl_device_options dopt = {.threads = cfg->train.threads};
    SL_TRY(sl_device_open_with(e->plan->rank[e->rank].device, &dopt, &e->dev));
    e->pool.dev = e->dev;
    e->rows = (size_t)(cfg->train.batch / cfg->train.microbatches);

    sl_weights init;
    SL_TRY(sl_weights_from_config(cfg, e->model, &init));
    e->nls = cfg->pipeline.chunks;
    e->ls = sl_alloc((size_t)e->nls * sizeof *e->ls);
    int rc = e->ls ? SL_OK : SL_ENOMEM;
    for (int i = 0; i < e->nls && rc == SL_OK; i++) {
        local_stage *l = &e->ls[i];
        l->stage = sl_plan_stage_of(e->plan, e->rank, i);
        const sl_stage_range *r = &e->part->stages[l->stage];
        rc = sl_stage_create(e->dev, e->model, r->first, r->last, &init, &l->st);
        if (rc == SL_OK && !(l->mb = sl_alloc((size_t)cfg->train.microbatches * sizeof *l->mb)))
            rc = SL_ENOMEM;
    }
    sl_weights_free(&init);
    SL_TRY(rc);

    size_t widest = (size_t)SL_MAX(e->model->max_width, e->model->outputs);
    size_t pos = (size_t)e->model->positions;
    if (!(e->host_x = sl_alloc(e->rows * (size_t)e->model->inputs * sizeof(float))) ||
        !(e->host_labels = sl_alloc(e->rows * pos * sizeof(int32_t))) ||
        !(e->host_targets = sl_alloc(e->rows * (size_t)e->model->outputs * sizeof(float))) ||
        !(e->host_loss = sl_alloc(e->rows * pos * sizeof(float))))
        return SL_ENOMEM;
    e->max_trace = e->opt->max_trace_events > 0 ? e->opt->max_trace_events : 5000;
    if (!(e->trace = sl_alloc((size_t)e->max_trace * sizeof *e->trace))) return SL_ENOMEM;

    if (e->world > 1) {
        sl_transport_options to;
        sl_transport_options_init(&to);
        to.run_id = e->opt->run_id;
        to.config_hash = sl_plan_hash(e->plan);
        to.rank = e->rank;
        to.world = e->world;
        to.bind_endpoint = e->opt->bind_endpoint;
        to.next_endpoint = e->opt->next_endpoint;
        to.heartbeat_timeout_ms = SL_MAX(cfg->launch.heartbeat_ms * 3, 1000);
        to.heartbeat_ivl_ms = SL_MAX(cfg->launch.heartbeat_ms / 2, 100);
        to.in_flight = SL_MAX(cfg->train.microbatches * cfg->pipeline.chunks, 2);
        to.max_tensor_bytes = e->rows * widest * sizeof(float) + 4096;
        for (int i = 0; i < e->nls; i++) { /* TIED sends a whole parameter's gradient */
            int k = sl_stage_tied_param(e->ls[i].st);
            if (k >= 0)
                to.max_tensor_bytes =
                    SL_MAX(to.max_tensor_bytes,
                           e->model->params[e->ls[i].st->first_param + k].numel * sizeof(float));
        }
        if (cfg->launch.curve) {
            SL_TRY(load_keys(e));
            to.curve = &e->curve;
        }
        SL_TRY(sl_transport_open(&to, &e->tr));
    }
    return SL_OK;
}

static void teardown(exec *e)
{
    sl_transport_close(e->tr);
    for (int i = 0; e->ls && i < e->nls; i++) {
        local_stage *l = &e->ls[i];
        for (int m = 0; l->mb && m < e->cfg->train.microbatches; m++) {
            release_mb(e, l, &l->mb[m]);
            pool_put(&e->pool, l->mb[m].loss);
            sl_transport_free(l->mb[m].send_f, NULL);
            sl_transport_free(l->mb[m].send_b, NULL);
        }
        for (int k = 0; k < l->nstash_free; k++) {
            sl_stash_free(l->stash_free[k]);
            free(l->stash_free[k]);
        }
        free(l->mb);
        sl_stage_free(l->st);
    }
    free(e->ls);
    pool_free(&e->pool);
    sl_device_close(e->dev);
    sl_data_free(&e->data);
    free(e->host_x);
    free(e->host_labels);
    free(e->host_targets);
    free(e->host_loss);
    free(e->trace);
    free(e->tied_host[0]);
    free(e->tied_host[1]);
    free(e->pubs);
    free(e->allowed);
    memset(e->secret, 0, sizeof e->secret);
}

static int save_weights(exec *e, int step)
{
    char path[4096];
    sl_run_path(path, sizeof path, e->opt->weights_dir,
                step < 0 ? SL_RUN_RANK_WEIGHTS : SL_RUN_RANK_CHECKPOINT, e->rank, step);
    sl_weights w;
    SL_TRY(sl_weights_alloc(e->model, &w));
    int rc = SL_OK;
    for (int i = 0; i < e->nls && rc == SL_OK; i++) rc = sl_stage_download(e->ls[i].st, &w);
    /* The whole model's names; layers of other ranks hold zeros and are ignored by the merge. */
    if (rc == SL_OK) rc = sl_weights_save(e->model, &w, path);
    sl_weights_free(&w);
    return rc;
}

/* Ends the run on the links in two rounds, so that no message a neighbour still needs is lost
 * when a rank leaves (libzmq drops what a closed connection still held unread):
 * 1. DONE both ways: when both neighbours' DONE arrived, everything they sent has been read.
 * 2. BYE both ways: a neighbour sends BYE only after it read our DONE, so once its BYE (or its
 *    departure) is seen, it needs nothing more from us and we may leave. A departure counts as a
 *    BYE here, which is why errors of this round are not failures. */
static int farewell(exec *e)
{
    if (!e->tr) return SL_OK;
    uint8_t byte = 1;
    sl_tensor_meta m = {.type = SL_MSG_DONE,
                        .step = (uint64_t)e->cfg->train.steps,
                        .dtype = SL_DTYPE_U8,
                        .ndim = 1,
                        .shape = {1}};
    SL_TRY(sl_transport_send(e->tr, SL_LINK_NEXT, &m, &byte, 1));
    SL_TRY(sl_transport_send(e->tr, SL_LINK_PREV, &m, &byte, 1));
    SL_TRY(sl_transport_recv(e->tr, SL_LINK_NEXT, &m, &byte, 1, NULL, NULL));
    SL_TRY(sl_transport_recv(e->tr, SL_LINK_PREV, &m, &byte, 1, NULL, NULL));
    m.step++; /* BYE */
    if (sl_transport_send(e->tr, SL_LINK_NEXT, &m, &byte, 1) == SL_OK &&
        sl_transport_send(e->tr, SL_LINK_PREV, &m, &byte, 1) == SL_OK &&
        sl_transport_recv(e->tr, SL_LINK_NEXT, &m, &byte, 1, NULL, NULL) == SL_OK)
        sl_transport_recv(e->tr, SL_LINK_PREV, &m, &byte, 1, NULL, NULL);
    sl_clear_error();
    return SL_OK;
}

/* Evaluation messages carry this bit in their step, so they can never be taken for a training
 * step's (or the other way round); the rest is the evaluation batch's number in the run. */
#define EVAL_STEP_TAG (UINT64_C(1) << 62)

/* Evaluation number `number`, after step `step`: eval.iters batches of the validation share (when
 * the text has one) and then of the training share's evaluation stream (see data.h), each run
 * through every stage by the plan's forward-only schedule. The last stage sums the losses and
 * reports their means. Nothing here touches a gradient, an optimizer state or the training data
 * position, so training goes on exactly as without it. */
static int evaluate(exec *e, int64_t step, int number)
{
    size_t count;
    const sl_action *acts = sl_schedule_actions(e->plan->eval_sched, e->rank, &count);
    bool last = sl_partition_rank(e->part, e->part->nstages - 1) == e->rank;
    const int iters = e->cfg->eval.iters;
    double t0 = sl_now(), mean[2] = {NAN, NAN};
    int rc = SL_OK;
    for (int share = 0; share < 2 && rc == SL_OK; share++) {
        if (share == 0 && !e->data.val.ids) continue; /* data.val_fraction = 0: no held-out share */
        double sum = 0;
        for (int i = 0; i < iters && rc == SL_OK; i++) {
            e->eval_share = share + 1;
            e->eval_k = (int64_t)number * iters + i;
            uint64_t tag =
                EVAL_STEP_TAG | ((uint64_t)(2 * number + share) * (uint64_t)iters + (uint64_t)i);
            for (size_t a = 0; a < count && rc == SL_OK; a++)
                rc = run_action(e, (int64_t)tag, &acts[a]);
            double part = 0;
            if (rc == SL_OK && last) rc = loss_sum(e, &part);
            sum += part;
        }
        mean[share] = sum / ((double)iters * e->cfg->train.batch * (double)e->model->positions);
    }
    e->eval_share = 0;
    e->eval_s += sl_now() - t0;
    SL_TRY(rc);
    if (!last) return SL_OK;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "eval");
    cJSON_AddNumberToObject(o, "step", (double)step);
    if (!isnan(mean[0])) cJSON_AddNumberToObject(o, "val_loss", mean[0]);
    cJSON_AddNumberToObject(o, "train_loss", mean[1]);
    return report(e, o);
}

static int train_loop(exec *e)
{
    size_t count;
    const sl_action *acts = sl_schedule_actions(e->plan->sched, e->rank, &count);
    bool last = sl_partition_rank(e->part, e->part->nstages - 1) == e->rank;
    double t_start = sl_now();
    /* A test hook: SLUICE_FAIL_AT=RANK:STEP makes that rank fail at that step, so tests can
     * check that one failing rank stops the whole run cleanly; SLUICE_FAIL_AT=RANK:eval:STEP
     * makes it fail in the evaluation after that step. */
    int fail_rank = -1, fail_step = -1, fail_eval = -1, nevals = 0;
    const char *fail_at = getenv("SLUICE_FAIL_AT");
    if (fail_at && sscanf(fail_at, "%d:eval:%d", &fail_rank, &fail_eval) == 2)
        fail_step = -1;
    else if (fail_at && sscanf(fail_at, "%d:%d", &fail_rank, &fail_step) != 2)
        fail_rank = -1;
    for (int64_t step = 0; step < e->cfg->train.steps; step++) {
        if (e->rank == fail_rank && step == fail_step)
            return sl_fail(SL_EDEVICE, "rank %d, step %lld: failure injected by SLUICE_FAIL_AT",
                           e->rank, (long long)step);
        for (int i = 0; i < e->nls; i++) SL_TRY(sl_stage_zero_grad(e->ls[i].st));
        for (size_t i = 0; i < count; i++) SL_TRY(run_action(e, step, &acts[i]));
        if (last) {
            double loss = 0.0;
            SL_TRY(step_loss(e, &loss));
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "type", "step");
            cJSON_AddNumberToObject(o, "step", (double)step);
            cJSON_AddNumberToObject(o, "loss", loss);
            cJSON_AddNumberToObject(o, "lr", e->lr);
            if (!isnan(e->grad_norm)) cJSON_AddNumberToObject(o, "grad_norm", e->grad_norm);
            cJSON_AddNumberToObject(o, "t", sl_now() - t_start);
            SL_TRY(report(e, o));
        }
        /* A text is evaluated every eval.interval steps and after the last one. */
        int done = (int)step + 1, ival = e->cfg->eval.interval;
        if (e->plan->eval_sched &&
            ((ival > 0 && done % ival == 0) || done == e->cfg->train.steps)) {
            if (e->rank == fail_rank && fail_eval == step)
                return sl_fail(SL_EDEVICE,
                               "rank %d, evaluation after step %lld: failure injected by "
                               "SLUICE_FAIL_AT",
                               e->rank, (long long)step);
            SL_TRY(evaluate(e, step, nevals++));
        }
        int every = e->cfg->output.checkpoint_interval;
        if (every > 0 && done % every == 0 && done < e->cfg->train.steps) {
            SL_TRY(save_weights(e, done));
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "type", "checkpoint");
            cJSON_AddNumberToObject(o, "step", done);
            SL_TRY(report(e, o));
        }
    }
    double wall = sl_now() - t_start - e->eval_s;
    SL_TRY(farewell(e));
    SL_TRY(save_weights(e, -1));
    return report_done(e, wall);
}

int sl_exec_rank(const sl_plan *plan, const sl_exec_options *opt)
{
    exec e = {.plan = plan,
              .cfg = &plan->cfg,
              .model = &plan->model,
              .part = &plan->part,
              .opt = opt,
              .rank = opt->rank,
              .world = plan->ranks};
    int rc = sl_reporter_open(opt->report_endpoint, &e.rep);
    if (rc != SL_OK) return rc;
    rc = setup(&e);
    if (rc == SL_OK) rc = train_loop(&e);
    if (rc != SL_OK) {
        char message[2048];
        snprintf(message, sizeof message, "%s",
                 sl_last_error()[0] ? sl_last_error() : sl_strerror(rc));
        if (e.tr) sl_transport_abort(e.tr, message);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "error");
        cJSON_AddNumberToObject(o, "status", rc);
        cJSON_AddStringToObject(o, "message", message);
        report(&e, o);
        sl_fail(rc, "%s", message);
    }
    teardown(&e);
    sl_reporter_close(e.rep);
    return rc;
}

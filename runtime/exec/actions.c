/* The stage executor's actions on micro-batches (see exec_impl.h): buffer pools, stashes, the
 * forward and backward passes, sending and receiving activations and gradients, and running one
 * action of a schedule. */
#include <stdlib.h>
#include <unistd.h>

#include "runtime/exec/exec_impl.h"

/* ------------------------------------------------------------------------------------------------
 * Buffer pools: free buffers by exact size */

static int pool_get(sl__exec_pool *p, size_t bytes, sl_buffer **out)
{
    for (int i = 0; i < p->nfree; i++)
        if (sl_buffer_size(p->free[i]) == bytes) {
            *out = p->free[i];
            p->free[i] = p->free[--p->nfree];
            return SL_OK;
        }
    return sl_buffer_alloc(p->dev, bytes, out);
}

void sl__exec_pool_put(sl__exec_pool *p, sl_buffer *b)
{
    if (!b) return;
    if (p->nfree < SL__EXEC_POOL_MAX)
        p->free[p->nfree++] = b;
    else
        sl_buffer_free(b);
}

void sl__exec_pool_free(sl__exec_pool *p)
{
    for (int i = 0; i < p->nfree; i++) sl_buffer_free(p->free[i]);
    p->nfree = 0;
}

sl__exec_stage *sl__exec_local_of(sl__exec *e, int stage)
{
    for (int i = 0; i < e->nls; i++)
        if (e->ls[i].stage == stage) return &e->ls[i];
    return NULL;
}

static size_t act_bytes(const sl__exec *e, int layer)
{
    return e->rows * (size_t)sl_model_width(e->model, layer) * sizeof(float);
}

/* Counts bytes of micro-batch state taken (+) or given back (-) while training. */
static void hold(sl__exec *e, double bytes)
{
    if (e->eval_share) return;
    e->held_bytes += bytes;
    e->peak_held_bytes = SL_MAX(e->peak_held_bytes, e->held_bytes);
}

/* The bytes a stash holds for the backward: its layers' outputs and what they keep (not its
 * scratch, which is working memory). */
static double stash_bytes(const sl_stash *st)
{
    double n = 0;
    for (int k = 0; k < st->n; k++) {
        n += (double)sl_buffer_size(st->act[k]);
        for (int j = 0; st->keep[k] && st->keep[k][j]; j++)
            n += (double)sl_buffer_size(st->keep[k][j]);
    }
    return n;
}

static int stash_get(sl__exec *e, sl__exec_stage *l, sl_stash **out)
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

static void stash_put(sl__exec_stage *l, sl_stash *st)
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

/* The header of a tensor of `width` elements per row between stages: [rows, width]. */
static sl_tensor_meta meta_for(const sl__exec *e, int type, int64_t step, int stage, int mb,
                               int width)
{
    sl_tensor_meta m = {.type = type,
                        .step = (uint64_t)step,
                        .stage = (uint32_t)stage,
                        .mb = (uint32_t)mb,
                        .dtype = SL_DTYPE_F32,
                        .ndim = 2};
    m.shape[0] = (int64_t)e->rows;
    m.shape[1] = width;
    /* A GPT's activations and their gradients travel as [micro-batch, T, C], the shape every
     * header is checked against. */
    int T = e->model->positions;
    if (T > 1 && width % T == 0) {
        m.ndim = 3;
        m.shape[1] = T;
        m.shape[2] = width / T;
    }
    return m;
}

int sl__exec_settle(sl__exec *e, const sl_stash *stash)
{
    bool needed = !stash;
    for (int i = 0; i < e->nlent && !needed; i++) needed = e->lent[i].stash == stash;
    if (!e->nlent || !needed) return SL_OK;
    sl_transport_flush(e->tr);
    int rc = SL_OK;
    for (int i = 0; i < e->nlent; i++) {
        struct sl__exec_lent *x = &e->lent[i];
        int st = sl_buffer_unmap(x->buf, (void *)x->data);
        rc = rc ? rc : st;
        if (!x->stash) sl__exec_pool_put(&e->pool, x->buf);
    }
    e->nlent = 0;
    return rc;
}

void sl__exec_release_mb(sl__exec *e, sl__exec_stage *l, sl__exec_mb *s)
{
    if (s->stash) sl__exec_settle(e, s->stash); /* its output may still be lent */
    if (s->stash) hold(e, -stash_bytes(s->stash));
    if (s->input) hold(e, -(double)sl_buffer_size(s->input));
    stash_put(l, s->stash);
    s->stash = NULL;
    sl__exec_pool_put(&e->pool, s->input);
    s->input = NULL;
    sl__exec_pool_put(&e->pool, s->dout);
    s->dout = NULL;
}

static int do_forward(sl__exec *e, int64_t step, int stage, int mb, bool recompute_only)
{
    sl__exec_stage *l = sl__exec_local_of(e, stage);
    sl__exec_mb *s = &l->mb[mb];
    const sl_stage_range *r = &e->part->stages[stage];
    if (!s->input) {
        if (!sl_partition_is_first(e->part, stage))
            return sl_fail(SL_EINTERNAL, "stage %d has no input for micro-batch %d", stage, mb);
        /* The first stage (of either chimera replica) reads its micro-batch from the data. */
        if (e->eval_share)
            SL_TRY(sl_data_eval_batch(&e->data, e->eval_share == 1, e->eval_k, mb,
                                      (int32_t *)e->host_x, NULL));
        else
            SL_TRY(sl_data_microbatch(&e->data, step, mb, e->host_x, NULL, NULL));
        SL_TRY(pool_get(&e->pool, act_bytes(e, 0), &s->input));
        hold(e, (double)act_bytes(e, 0));
        SL_TRY(sl_buffer_upload(s->input, 0, e->host_x, act_bytes(e, 0)));
    }
    SL_TRY(stash_get(e, l, &s->stash));
    hold(e, stash_bytes(s->stash));
    SL_TRY(sl_stage_forward(l->st, e->rows, s->input, s->stash));
    if (recompute_only) return SL_OK;

    sl_buffer *out = sl_stash_output(s->stash);
    if (sl_partition_is_last(e->part, stage)) {
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
        sl__exec_pool_put(&e->pool, target);
        SL_TRY(rc);
    } else if (sl_partition_rank(e->part, stage + 1) == e->rank) {
        /* The next stage is ours too: hand the output over on the device. */
        sl__exec_mb *next = &sl__exec_local_of(e, stage + 1)->mb[mb];
        SL_TRY(pool_get(&e->pool, act_bytes(e, r->last), &next->input));
        hold(e, (double)act_bytes(e, r->last));
        SL_TRY(sl_buffer_copy(next->input, 0, out, 0, act_bytes(e, r->last)));
    } else if (sl_device_host_memory(e->dev) && !e->eval_share && !e->cfg->pipeline.recompute) {
        s->send_out = out; /* the stash keeps it until SEND_F, which copies it out once */
    } else {
        if (!s->send_f && !(s->send_f = sl_transport_alloc(e->tr, act_bytes(e, r->last))))
            return SL_ENOMEM;
        SL_TRY(sl_buffer_download(out, 0, s->send_f, act_bytes(e, r->last)));
    }
    if (e->eval_share) {
        /* Forward only: nothing of this micro-batch is needed once its output is passed on. */
        sl__exec_release_mb(e, l, s);
    } else if (e->cfg->pipeline.recompute) {
        /* Keep only the stage input; R rebuilds the rest before the backward. */
        hold(e, -stash_bytes(s->stash));
        stash_put(l, s->stash);
        s->stash = NULL;
    }
    return SL_OK;
}

/* After the input gradient of (stage, mb) is in `din`: give it to the previous stage. */
static int route_input_grad(sl__exec *e, int stage, int mb, sl_buffer *din)
{
    size_t bytes = act_bytes(e, e->part->stages[stage].first);
    if (sl_partition_rank(e->part, stage - 1) == e->rank) {
        sl__exec_local_of(e, stage - 1)->mb[mb].dout = din;
        return SL_OK;
    }
    sl__exec_mb *s = &sl__exec_local_of(e, stage)->mb[mb];
    if (sl_device_host_memory(e->dev)) {
        s->send_din = din; /* back to the pool once SEND_B has copied it out */
        return SL_OK;
    }
    int rc = SL_OK;
    if (!s->send_b && !(s->send_b = sl_transport_alloc(e->tr, bytes))) rc = SL_ENOMEM;
    if (rc == SL_OK) rc = sl_buffer_download(din, 0, s->send_b, bytes);
    sl__exec_pool_put(&e->pool, din);
    return rc;
}

static int do_backward(sl__exec *e, int stage, int mb, enum sl_action_type type)
{
    sl__exec_stage *l = sl__exec_local_of(e, stage);
    sl__exec_mb *s = &l->mb[mb];
    if (s->stash) SL_TRY(sl__exec_settle(e, s->stash)); /* a backward may write its stash */
    if (!s->stash || !s->input || (type != SL_ACTION_W && !s->dout))
        return sl_fail(SL_EINTERNAL, "stage %d micro-batch %d: backward before its forward", stage,
                       mb);
    sl_buffer *din = NULL;
    if (!sl_partition_is_first(e->part, stage) && type != SL_ACTION_W)
        SL_TRY(pool_get(&e->pool, act_bytes(e, e->part->stages[stage].first), &din));
    int rc;
    if (type == SL_ACTION_B)
        rc = sl_stage_backward(l->st, e->rows, s->input, s->stash, s->dout, din);
    else if (type == SL_ACTION_I)
        rc = sl_stage_backward_input(l->st, e->rows, s->input, s->stash, s->dout, din);
    else
        rc = sl_stage_backward_weight(l->st, e->rows, s->input, s->stash);
    if (rc != SL_OK) {
        sl__exec_pool_put(&e->pool, din);
        return rc;
    }
    if (din) SL_TRY(route_input_grad(e, stage, mb, din));
    if (type == SL_ACTION_I) {
        /* W still needs the stash, the input and the output gradient kept in the stash. */
        sl__exec_pool_put(&e->pool, s->dout);
        s->dout = NULL;
        return SL_OK;
    }
    sl__exec_release_mb(e, l, s);
    return SL_OK;
}

/* The link a SEND or RECV action uses. */
static int link_dir(const sl__exec *e, const sl_action *a)
{
    return sl_schedule_link_dir(e->plan->sched, e->rank, a) ? SL_LINK_PREV : SL_LINK_NEXT;
}

static int do_send(sl__exec *e, int64_t step, const sl_action *a)
{
    bool fwd = a->type == SL_ACTION_SEND_F;
    sl__exec_mb *s = &sl__exec_local_of(e, a->stage)->mb[a->mb];
    const sl_stage_range *r = &e->part->stages[a->stage];
    int width = sl_model_width(e->model, fwd ? r->last : r->first);
    float **host = fwd ? &s->send_f : &s->send_b;
    sl_buffer **kept = fwd ? &s->send_out : &s->send_din;
    if (!*host && !*kept)
        return sl_fail(SL_EINTERNAL, "nothing to send for stage %d micro-batch %d", a->stage,
                       a->mb);
    sl_tensor_meta meta = meta_for(e, fwd ? SL_MSG_ACTIVATION : SL_MSG_GRADIENT, step,
                                   fwd ? a->stage + 1 : a->stage - 1, a->mb, width);
    size_t bytes = e->rows * (size_t)width * sizeof(float);
    int dir = link_dir(e, a);
    if (*kept) {
        /* Straight from the device buffer (host memory): the transport's one copy, on its copy
         * thread while this rank goes on; the buffer stays lent until sl__exec_settle. */
        if (e->nlent == SL__EXEC_LENT_MAX || (e->nlent && sl_transport_flushed(e->tr)))
            SL_TRY(sl__exec_settle(e, NULL)); /* full, or free to take back at once */
        const void *data = NULL;
        int rc = sl_buffer_map_read(*kept, 0, bytes, &data);
        if (data)
            e->lent[e->nlent++] = (struct sl__exec_lent){*kept, data, fwd ? s->stash : NULL};
        else if (!fwd)
            sl__exec_pool_put(&e->pool, *kept);
        *kept = NULL;
        if (rc == SL_OK) rc = sl_transport_send_lent(e->tr, dir, &meta, data, bytes);
        return rc;
    }
    int rc = sl_transport_send_owned(e->tr, dir, &meta, *host, bytes, sl_transport_free, NULL);
    *host = NULL; /* the transport owns it now, whatever happened */
    return rc;
}

/* The bytes a RECV action receives. */
static size_t recv_bytes(const sl__exec *e, const sl_action *a)
{
    const sl_stage_range *r = &e->part->stages[a->stage];
    int width = sl_model_width(e->model, a->type == SL_ACTION_RECV_F ? r->first : r->last);
    return e->rows * (size_t)width * sizeof(float);
}

void sl__exec_unpost(sl__exec *e)
{
    for (int d = 0; d < 2; d++) {
        struct sl__exec_posted *p = &e->posted[d];
        if (!p->buf) continue;
        sl_buffer_unmap(p->buf, p->host);
        sl__exec_pool_put(&e->pool, p->buf);
        p->buf = NULL;
    }
}

/* After a training step's RECV a on link dir: a buffer for the next RECV on that link in the
 * step, posted so that the transport's copy thread fills it as its message lands. */
static int post_next(sl__exec *e, int64_t step, const sl_action *a, int dir)
{
    size_t count;
    const sl_action *acts = sl_schedule_actions(e->plan->sched, e->rank, &count);
    if (a < acts || a >= acts + count) return SL_OK; /* not the step's list (an evaluation) */
    const sl_action *b = a + 1;
    while (b < acts + count &&
           !((b->type == SL_ACTION_RECV_F || b->type == SL_ACTION_RECV_B) && link_dir(e, b) == dir))
        b++;
    if (b == acts + count) return SL_OK;
    struct sl__exec_posted *p = &e->posted[dir];
    size_t bytes = recv_bytes(e, b);
    SL_TRY(pool_get(&e->pool, bytes, &p->buf));
    p->a = b;
    p->step = step;
    int rc = sl_buffer_map_write(p->buf, 0, bytes, &p->host);
    if (rc == SL_OK) rc = sl_transport_recv_post(e->tr, dir, p->host, bytes);
    if (rc != SL_OK) {
        if (p->host) sl_buffer_unmap(p->buf, p->host);
        sl__exec_pool_put(&e->pool, p->buf);
        p->buf = NULL;
    }
    return rc;
}

static int do_recv(sl__exec *e, int64_t step, const sl_action *a)
{
    bool fwd = a->type == SL_ACTION_RECV_F;
    sl__exec_mb *s = &sl__exec_local_of(e, a->stage)->mb[a->mb];
    const sl_stage_range *r = &e->part->stages[a->stage];
    int width = sl_model_width(e->model, fwd ? r->first : r->last);
    size_t bytes = recv_bytes(e, a);
    sl_tensor_meta want =
        meta_for(e, fwd ? SL_MSG_ACTIVATION : SL_MSG_GRADIENT, step, a->stage, a->mb, width);
    /* Received straight into the buffer's mapping: the transport checks the CRC while it copies
     * the message there, one pass over the data (where the device's memory is the host's, the
     * mapping is the buffer itself), or, posted ahead, while its copy thread copies it there. */
    int dir = link_dir(e, a);
    sl_buffer **dst = fwd ? &s->input : &s->dout;
    struct sl__exec_posted *p = &e->posted[dir];
    void *host = NULL;
    if (p->buf && p->a == a && p->step == step) {
        *dst = p->buf;
        host = p->host;
        p->buf = NULL;
    } else {
        SL_TRY(pool_get(&e->pool, bytes, dst));
        SL_TRY(sl_buffer_map_write(*dst, 0, bytes, &host));
    }
    if (fwd) hold(e, (double)bytes);
    int rc = sl_transport_recv(e->tr, dir, &want, host, bytes, NULL, NULL);
    int unmapped = sl_buffer_unmap(*dst, host);
    if (rc == SL_OK && !e->eval_share && sl_device_host_memory(e->dev) && !p->buf)
        rc = post_next(e, step, a, dir);
    return rc ? rc : unmapped;
}

static void trace_add(sl__exec *e, const sl_action *a, double t0, double t1)
{
    if (e->ntrace >= e->max_trace) return;
    sl__exec_trace_event *ev = &e->trace[e->ntrace++];
    sl_action_format(a, ev->name, sizeof ev->name);
    ev->t0 = t0;
    ev->t1 = t1;
}

void sl__exec_doing(const sl__exec *e, char *buf, size_t cap)
{
    const sl_action *a = e->cur;
    buf[0] = '\0';
    if (!a && e->vote_peer >= 0 && e->vote_sends)
        snprintf(buf, cap, "sending its stop vote of step %lld to rank %d", (long long)e->cur_step,
                 e->vote_peer);
    else if (!a && e->vote_peer >= 0)
        snprintf(buf, cap, "waiting for rank %d's stop vote of step %lld", e->vote_peer,
                 (long long)e->cur_step);
    if (!a) return;
    bool recv = a->type == SL_ACTION_RECV_F || a->type == SL_ACTION_RECV_B;
    bool send = a->type == SL_ACTION_SEND_F || a->type == SL_ACTION_SEND_B;
    char when[64], peer[32] = "";
    if (e->eval_share)
        snprintf(when, sizeof when, "evaluation batch %lld", (long long)e->eval_k);
    else
        snprintf(when, sizeof when, "step %lld", (long long)e->cur_step);
    if ((recv || send) && a->peer >= 0)
        snprintf(peer, sizeof peer, " %s rank %d", recv ? "from" : "to", a->peer);
    if (a->stage < 0) { /* a reduction or OPT: the action's text names its peer */
        char name[32];
        sl_action_format(a, name, sizeof name);
        snprintf(buf, cap, "running %s in %s", name, when);
        return;
    }
    snprintf(buf, cap, "%s %s(stage %d, micro-batch %d)%s in %s",
             recv   ? "waiting for"
             : send ? "sending"
                    : "running",
             sl_action_type_name(a->type), a->stage, a->mb, peer, when);
}

int sl__exec_run_action(sl__exec *e, int64_t step, const sl_action *a)
{
    double t0 = sl_now();
    e->cur_step = step;
    e->cur_t0 = t0;
    e->cur = a;
    e->comm_s = 0;
    /* A test hook: SLUICE_HANG_AT=RANK:STEP hangs that rank's first forward of that step, as a
     * hung device would (its links still answer heartbeats), for the watchdog's tests. */
    const char *hang = getenv("SLUICE_HANG_AT");
    int hang_rank, hang_step;
    if (hang && a->type == SL_ACTION_F && a->mb == 0 &&
        sscanf(hang, "%d:%d", &hang_rank, &hang_step) == 2 && hang_rank == e->rank &&
        hang_step == step)
        for (;;) sleep(1);
    int rc = SL_OK;
    bool compute = true;
    sl__exec_stage *l = a->stage >= 0 ? sl__exec_local_of(e, a->stage) : NULL;
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
        rc = sl__exec_tied(e, step, a);
        break;
    case SL_ACTION_SYNC:
        rc = sl__exec_sync(e, step, a);
        break;
    case SL_ACTION_NORM:
        rc = sl__exec_norm(e, step, a);
        break;
    case SL_ACTION_OPT:
        rc = sl__exec_optimizer_step(e, step);
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
    if (!compute && !e->eval_share) e->transfer += t1 - t0;
    if (compute && !e->eval_share) {
        e->busy += t1 - t0 - e->comm_s;
        e->transfer += e->comm_s;
        if (l && a->type == SL_ACTION_F) l->f_s += t1 - t0, l->nf++;
        if (l && a->type == SL_ACTION_B) l->b_s += t1 - t0, l->nb++;
        if (l && a->type == SL_ACTION_I) l->i_s += t1 - t0, l->ni++;
        if (l && a->type == SL_ACTION_W) l->w_s += t1 - t0, l->nw++;
    }
    trace_add(e, a, t0, t1);
    e->cur = NULL;
    if ((unsigned)a->type < SL__EXEC_ACTION_TYPES && !e->eval_share) {
        long n = ++e->n_done[a->type];
        e->avg_s[a->type] += (t1 - t0 - e->avg_s[a->type]) / (double)n;
    }
    return SL_OK;
}

int sl__exec_loss_sum(sl__exec *e, int stage, int mb0, int mb1, double *sum_out)
{
    sl__exec_stage *l = sl__exec_local_of(e, stage);
    if (!l) return sl_fail(SL_EINTERNAL, "rank %d holds no stage %d", e->rank, stage);
    size_t n = e->rows * (size_t)e->model->positions;
    double sum = 0.0;
    for (int m = mb0; m < mb1; m++) {
        sl__exec_mb *s = &l->mb[m];
        if (!s->loss) return sl_fail(SL_EINTERNAL, "micro-batch %d has no loss", m);
        SL_TRY(sl_buffer_download(s->loss, 0, e->host_loss, n * sizeof(float)));
        for (size_t i = 0; i < n; i++) sum += e->host_loss[i];
        sl__exec_pool_put(&e->pool, s->loss);
        s->loss = NULL;
    }
    *sum_out = sum;
    return SL_OK;
}

/* The mean loss of the step over the mini-batch. Under chimera the down replica's last stage has
 * the first half of the micro-batches, and SYNC brought the other half's sum. */
int sl__exec_step_loss(sl__exec *e, double *loss)
{
    double sum;
    int M = e->cfg->train.microbatches, chains = e->part->chains > 1 ? 2 : 1;
    SL_TRY(sl__exec_loss_sum(e, sl_partition_chain_stages(e->part) - 1, 0, M / chains, &sum));
    if (chains > 1) sum += e->sync_loss;
    *loss = sum / ((double)e->cfg->train.batch * (double)e->model->positions);
    return SL_OK;
}

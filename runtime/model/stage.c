/* A stage on a device: its parameters and their gradients and optimizer state, and the forward
 * and backward passes of a micro-batch through its layers, each layer run by its kind's entry
 * in the layer table. The pipeline and the one-device trainer both run these, which is what
 * makes their results bit-identical. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/model/model.h"

/* ------------------------------------------------------------------------------------------------
 * Stage parameters */

static int alloc_zero(sl_device *dev, size_t elems, sl_buffer **out)
{
    SL_TRY(sl_buffer_alloc(dev, elems * sizeof(float), out));
    return sl_fill(dev, elems, 0.0f, *out);
}

void sl_stage_free(sl_stage *s)
{
    if (!s) return;
    sl_buffer ***arrays[] = {&s->param, &s->grad, &s->m, &s->v};
    for (size_t a = 0; a < SL_ARRAY_LEN(arrays); a++) {
        sl_buffer **arr = *arrays[a];
        if (!arr) continue;
        for (int k = 0; k < s->nparams; k++)
            if (arr != s->param || !s->alias || s->alias[k] < 0) sl_buffer_free(arr[k]);
        free(arr);
    }
    sl_buffer_free(s->sumsq);
    free(s->sumsq_host);
    free(s->alias);
    free(s);
}

/* Where parameter k's tied twin is in the stage: -1 when it is not tied, or when another stage
 * holds the twin (then this stage keeps a copy of its own, and the schedule's TIED action sums the
 * two copies' gradients before the optimizer step, so they stay equal). */
static int find_alias(const sl_stage *s, int k, int *alias)
{
    const sl_model *m = s->model;
    const sl_param *q = &m->params[s->first_param + k];
    *alias = -1;
    if (!q->spec.tied_to) return SL_OK;
    int t = sl_model_find_param(m, q->spec.tied_to) - s->first_param;
    if (t < -s->first_param)
        return sl_fail(SL_EINTERNAL, "%s is tied to %s, which the model lacks", q->name,
                       q->spec.tied_to);
    if (t < 0 || t >= s->nparams) return SL_OK;
    if (t >= k)
        return sl_fail(SL_EINTERNAL, "%s is tied to %s, which comes after it", q->name,
                       q->spec.tied_to);
    *alias = t;
    return SL_OK;
}

int sl_stage_create(sl_device *dev, const sl_model *model, int first, int last,
                    const sl_weights *init, sl_stage **out)
{
    *out = NULL;
    if (first < 0 || last > model->nlayers || first >= last)
        return sl_fail(SL_EINVAL, "stage: layer range [%d, %d) of %d layers", first, last,
                       model->nlayers);
    sl_stage *s = sl_alloc(sizeof *s);
    if (!s) return SL_ENOMEM;
    s->dev = dev;
    s->model = model;
    s->first = first;
    s->last = last;
    s->first_param = model->first_param[first];
    s->nparams = model->first_param[last] - s->first_param;
    sl_buffer ***arrays[] = {&s->param, &s->grad, &s->m, &s->v};
    for (size_t a = 0; a < SL_ARRAY_LEN(arrays); a++) {
        if (!(*arrays[a] = sl_alloc(sizeof(sl_buffer *) * (size_t)s->nparams))) {
            sl_stage_free(s);
            return SL_ENOMEM;
        }
    }
    if (!(s->alias = sl_alloc(sizeof(int) * (size_t)s->nparams))) {
        sl_stage_free(s);
        return SL_ENOMEM;
    }
    for (int k = 0; k < s->nparams; k++) s->alias[k] = -1;
    int st = SL_OK;
    for (int k = 0; st == SL_OK && k < s->nparams; k++) {
        int p = s->first_param + k, t;
        size_t n = model->params[p].numel;
        if ((st = find_alias(s, k, &t)) != SL_OK) break;
        if (t >= 0) {
            /* One tensor under two names: its twin's parameter, but a gradient of its own, added
             * to the twin's before the step (sl_stage_sum_tied) as a pipeline's TIED action adds
             * the copies on two ranks, so that both give the same bits. */
            s->param[k] = s->param[t];
            s->alias[k] = t;
            st = alloc_zero(dev, n, &s->grad[k]);
            continue;
        }
        st = sl_buffer_alloc(dev, n * sizeof(float), &s->param[k]);
        if (st == SL_OK) st = sl_buffer_upload(s->param[k], 0, init->data[p], n * sizeof(float));
        if (st == SL_OK) st = alloc_zero(dev, n, &s->grad[k]);
    }
    if (st != SL_OK) {
        sl_stage_free(s);
        return st;
    }
    *out = s;
    return SL_OK;
}

int sl_stage_download(sl_stage *s, sl_weights *w)
{
    for (int k = 0; k < s->nparams; k++) {
        int p = s->first_param + k;
        SL_TRY(sl_buffer_download(s->param[k], 0, w->data[p],
                                  s->model->params[p].numel * sizeof(float)));
    }
    return SL_OK;
}

int sl_stage_zero_grad(sl_stage *s)
{
    for (int k = 0; k < s->nparams; k++)
        SL_TRY(sl_fill(s->dev, s->model->params[s->first_param + k].numel, 0.0f, s->grad[k]));
    return SL_OK;
}

int sl_stage_sum_tied(sl_stage *s)
{
    /* twin += own: the first stage's gradient plus the last's, as TIED adds them; the own part
     * is then zero, so that a second call adds nothing */
    for (int k = 0; k < s->nparams; k++) {
        if (s->alias[k] < 0) continue;
        size_t n = s->model->params[s->first_param + k].numel;
        SL_TRY(sl_axpy(s->dev, n, 1.0f, s->grad[k], s->grad[s->alias[k]]));
        SL_TRY(sl_fill(s->dev, n, 0.0f, s->grad[k]));
    }
    return SL_OK;
}

int sl_stage_tied_param(const sl_stage *s)
{
    const sl_model *m = s->model;
    for (int k = 0; k < s->nparams; k++) {
        int p = s->first_param + k;
        if (s->alias[k] >= 0) continue;
        int twin =
            m->params[p].spec.tied_to ? sl_model_find_param(m, m->params[p].spec.tied_to) : -1;
        for (int q = 0; twin < 0 && q < m->ntensors; q++)
            if (m->params[q].spec.tied_to && !strcmp(m->params[q].spec.tied_to, m->params[p].name))
                twin = q;
        if (twin >= 0 && (twin < s->first_param || twin >= s->first_param + s->nparams)) return k;
    }
    return -1;
}

/* Whether parameter k's gradient counts in the norm: a tied parameter counts once, the one that
 * names its twin left out, whether it shares the twin's buffers here or is the copy on another
 * stage (equal after TIED). */
static bool counted(const sl_stage *s, int k)
{
    return s->alias[k] < 0 && !s->model->params[s->first_param + k].spec.tied_to;
}

int sl_stage_grad_sumsq(sl_stage *s, double *sumsq)
{
    *sumsq = 0;
    if (s->nparams == 0) return SL_OK;
    SL_TRY(sl_stage_sum_tied(s)); /* the tied gradient whole, counted once below */
    size_t bytes = (size_t)s->nparams * sizeof(float);
    if (!s->sumsq) SL_TRY(sl_buffer_alloc(s->dev, bytes, &s->sumsq));
    if (!s->sumsq_host && !(s->sumsq_host = sl_alloc(bytes))) return SL_ENOMEM;
    /* Each counted parameter's sum at its index, then one download for them all (one wait, not
     * one per parameter). */
    for (int k = 0; k < s->nparams; k++)
        if (counted(s, k))
            SL_TRY(sl_sum_squares(s->dev, s->model->params[s->first_param + k].numel, s->grad[k],
                                  s->sumsq, (size_t)k));
    SL_TRY(sl_buffer_download(s->sumsq, 0, s->sumsq_host, bytes));
    for (int k = 0; k < s->nparams; k++) {
        const sl_param *p = &s->model->params[s->first_param + k];
        float part = counted(s, k) ? s->sumsq_host[k] : 0.0f;
        if (!isfinite(part))
            return sl_fail(SL_ENONFINITE,
                           "the gradient of '%s' (layer %d, %s) is not finite (its sum of squares "
                           "is %s): training diverged",
                           p->name, p->layer, s->model->layers[p->layer].kind->name,
                           isnan(part) ? "NaN" : "infinite");
        *sumsq += part;
    }
    return SL_OK;
}

int sl_stage_scale_grad(sl_stage *s, float scale)
{
    for (int k = 0; k < s->nparams; k++)
        if (s->alias[k] < 0)
            SL_TRY(sl_scale(s->dev, s->model->params[s->first_param + k].numel, scale, s->grad[k]));
    return SL_OK;
}

/* One parameter tensor's update; state buffers are created (zeroed) on first use. */
static int update(sl_stage *s, const sl_optimizer_config *o, int k, float lr, float weight_decay)
{
    size_t n = s->model->params[s->first_param + k].numel;
    if (o->kind == SL_OPT_SGD) {
        if (o->momentum != 0 && !s->m[k]) SL_TRY(alloc_zero(s->dev, n, &s->m[k]));
        return sl_sgd(s->dev, n, s->param[k], s->grad[k], o->momentum != 0 ? s->m[k] : NULL, lr,
                      (float)o->momentum, weight_decay);
    }
    if (!s->m[k]) SL_TRY(alloc_zero(s->dev, n, &s->m[k]));
    if (!s->v[k]) SL_TRY(alloc_zero(s->dev, n, &s->v[k]));
    int (*adam)(sl_device *, size_t, sl_buffer *, sl_buffer *, sl_buffer *, sl_buffer *, float,
                float, float, float, float, int64_t) = o->kind == SL_OPT_ADAMW ? sl_adamw : sl_adam;
    return adam(s->dev, n, s->param[k], s->grad[k], s->m[k], s->v[k], lr, (float)o->beta1,
                (float)o->beta2, (float)o->eps, weight_decay, s->step);
}

int sl_stage_optimizer_step(sl_stage *s, const sl_optimizer_config *opt, double lr)
{
    s->step++;
    for (int k = 0; k < s->nparams; k++) {
        if (s->alias[k] >= 0) continue; /* its twin's update is its own */
        /* As PyTorch's parameter groups: the kinds say which tensors decay (a layer norm's gain
         * and every bias of a GPT, say, must not be pulled towards zero). */
        bool decay = s->model->params[s->first_param + k].spec.decay;
        SL_TRY(update(s, opt, k, (float)lr, decay ? (float)opt->weight_decay : 0.0f));
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Stash */

int sl_stash_alloc(const sl_stage *s, size_t rows, sl_stash *out)
{
    memset(out, 0, sizeof *out);
    out->rows = rows;
    out->n = s->last - s->first;
    out->act = sl_alloc(sizeof(sl_buffer *) * (size_t)out->n);
    out->keep = sl_alloc(sizeof(sl_buffer **) * (size_t)out->n);
    if (!out->act || !out->keep) {
        sl_stash_free(out);
        return SL_ENOMEM;
    }
    int widest = 1, st = SL_OK;
    for (int i = s->first; i <= s->last; i++) widest = SL_MAX(widest, sl_model_width(s->model, i));
    for (int k = 0; st == SL_OK && k < out->n; k++) {
        const sl_layer *l = &s->model->layers[s->first + k];
        st = sl_buffer_alloc(s->dev, rows * (size_t)l->out * sizeof(float), &out->act[k]);
        size_t widths[SL_LAYER_MAX_KEEP];
        int nkeep = l->kind->keep ? l->kind->keep(l, widths) : 0;
        /* NULL-terminated, so that freeing needs no count */
        if (st == SL_OK && nkeep &&
            !(out->keep[k] = sl_alloc(sizeof(sl_buffer *) * (size_t)(nkeep + 1))))
            st = SL_ENOMEM;
        for (int j = 0; st == SL_OK && j < nkeep; j++)
            st = sl_buffer_alloc(s->dev, rows * widths[j] * sizeof(float), &out->keep[k][j]);
    }
    for (int j = 0; st == SL_OK && j < 2; j++)
        st = sl_buffer_alloc(s->dev, rows * (size_t)widest * sizeof(float), &out->scratch[j]);
    if (st != SL_OK) sl_stash_free(out);
    return st;
}

void sl_stash_free(sl_stash *st)
{
    if (!st) return;
    for (int k = 0; st->keep && k < st->n; k++) {
        for (int j = 0; st->keep[k] && st->keep[k][j]; j++) sl_buffer_free(st->keep[k][j]);
        free(st->keep[k]);
    }
    free(st->keep);
    sl_buffer **arrays[] = {st->act, st->grad};
    for (size_t a = 0; a < SL_ARRAY_LEN(arrays); a++) {
        for (int k = 0; arrays[a] && k < st->n; k++) sl_buffer_free(arrays[a][k]);
        free(arrays[a]);
    }
    sl_buffer_free(st->scratch[0]);
    sl_buffer_free(st->scratch[1]);
    memset(st, 0, sizeof *st);
}

/* ------------------------------------------------------------------------------------------------
 * Forward and backward */

/* The pass of layer `i` of the stage on `rows` rows: its input (the stage input for the first
 * layer, else the layer before's output), output, what it keeps, and its parameters' slice of
 * the stage's buffers. The caller fills dy and dx for a backward. */
static sl_layer_pass layer_pass(sl_stage *s, int i, size_t rows, sl_buffer *input, sl_stash *st)
{
    int k = i - s->first, p = s->model->first_param[i] - s->first_param;
    return (sl_layer_pass){.dev = s->dev,
                           .layer = &s->model->layers[i],
                           .rows = rows,
                           .x = k == 0 ? input : st->act[k - 1],
                           .y = st->act[k],
                           .keep = st->keep[k],
                           .param = s->param + p,
                           .grad = s->grad + p};
}

int sl_stage_forward(sl_stage *s, size_t rows, sl_buffer *input, sl_stash *stash)
{
    if (rows > stash->rows || stash->n != s->last - s->first)
        return sl_fail(SL_EINVAL, "stage forward: %zu rows for a stash of %zu", rows, stash->rows);
    for (int i = s->first; i < s->last; i++) {
        sl_layer_pass p = layer_pass(s, i, rows, input, stash);
        SL_TRY(p.layer->kind->forward(&p));
    }
    return SL_OK;
}

/* Whether layer i owns parameter tensors, so that its weight pass reads its output gradient (a
 * delay layer has a weight pass, being a unit of the partition, but owns none). */
static bool owns_params(const sl_stage *s, int i)
{
    return s->model->first_param[i + 1] > s->model->first_param[i];
}

/* The weight-only pass (zero-bubble's W): each layer with parameters' backward_weight on the
 * output gradient the input-only pass kept for it. */
static int stage_backward_weight(sl_stage *s, size_t rows, sl_buffer *input, sl_stash *stash)
{
    /* From the last layer, as the full backward: tied parameters (a GPT's head and embedding)
     * then sum their two gradients in the same order. */
    for (int i = s->last - 1; i >= s->first; i--) {
        const sl_layer *l = &s->model->layers[i];
        int k = i - s->first;
        if (!sl_layer_has_params(l)) continue;
        sl_layer_pass p = layer_pass(s, i, rows, input, stash);
        if (owns_params(s, i)) {
            if (!stash->grad || !stash->grad[k])
                return sl_fail(SL_EINVAL, "weight gradient of layer %d before its input gradient",
                               i);
            p.dy = stash->grad[k];
        }
        SL_TRY(l->kind->backward_weight(&p));
    }
    return SL_OK;
}

/* The backward of one micro-batch through layers [first, last), from the last, carrying the
 * gradient down to `din` through the two scratch buffers. With `weights` (the full backward)
 * a layer with parameters runs backward_input then backward_weight on the same gradient; without
 * (zero-bubble's I), it keeps a copy of its output gradient in stash->grad for the W pass
 * instead, so that W later makes exactly the kernel calls the full backward would have made. */
static int stage_backward(sl_stage *s, size_t rows, sl_buffer *input, sl_stash *stash,
                          sl_buffer *dout, sl_buffer *din, bool weights)
{
    if (!weights && !stash->grad) {
        stash->grad = sl_alloc(sizeof(sl_buffer *) * (size_t)stash->n);
        if (!stash->grad) return SL_ENOMEM;
    }
    sl_buffer *g = dout;
    int cur = -1; /* which scratch holds g (-1: the caller's dout) */
    for (int i = s->last - 1; i >= s->first; i--) {
        const sl_layer *l = &s->model->layers[i];
        int k = i - s->first;
        int next = cur == 0 ? 1 : 0;
        sl_layer_pass p = layer_pass(s, i, rows, input, stash);
        p.dy = g;
        p.dx = k == 0 ? din : stash->scratch[next];
        if (owns_params(s, i) && !weights) {
            size_t bytes = rows * (size_t)l->out * sizeof(float);
            if (!stash->grad[k]) SL_TRY(sl_buffer_alloc(s->dev, bytes, &stash->grad[k]));
            SL_TRY(sl_buffer_copy(stash->grad[k], 0, g, 0, bytes));
        }
        SL_TRY(l->kind->backward_input(&p));
        if (sl_layer_has_params(l) && weights) SL_TRY(l->kind->backward_weight(&p));
        g = p.dx;
        cur = next;
    }
    return SL_OK;
}

static int check_stash(const sl_stage *s, size_t rows, const sl_stash *stash)
{
    if (rows > stash->rows || stash->n != s->last - s->first)
        return sl_fail(SL_EINVAL, "stage backward: %zu rows for a stash of %zu", rows, stash->rows);
    return SL_OK;
}

int sl_stage_backward(sl_stage *s, size_t rows, sl_buffer *input, sl_stash *stash, sl_buffer *dout,
                      sl_buffer *din)
{
    SL_TRY(check_stash(s, rows, stash));
    return stage_backward(s, rows, input, stash, dout, din, true);
}

int sl_stage_backward_input(sl_stage *s, size_t rows, sl_buffer *input, sl_stash *stash,
                            sl_buffer *dout, sl_buffer *din)
{
    SL_TRY(check_stash(s, rows, stash));
    return stage_backward(s, rows, input, stash, dout, din, false);
}

int sl_stage_backward_weight(sl_stage *s, size_t rows, sl_buffer *input, sl_stash *stash)
{
    SL_TRY(check_stash(s, rows, stash));
    return stage_backward_weight(s, rows, input, stash);
}

int sl_loss_forward_backward(sl_device *dev, const sl_model *m, size_t rows, sl_buffer *out,
                             sl_buffer *target, float scale, sl_buffer *loss, sl_buffer *dout)
{
    const sl_loss *l = sl_loss_get(m->loss);
    if (!l) return sl_fail(SL_EINVAL, "loss: the model's loss kind %d is not a loss", (int)m->loss);
    return l->forward_backward(dev, rows * (size_t)m->positions, (size_t)m->classes, out, target,
                               scale, loss, dout);
}

/* A stage on a device (parameters, forward, backward, optimizer) and the one-device reference
 * trainer built from it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/data/data.h"
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
    sl_buffer ***arrays[] = {&s->weight,  &s->bias,  &s->dweight, &s->dbias,
                             &s->mweight, &s->mbias, &s->vweight, &s->vbias};
    for (size_t a = 0; a < SL_ARRAY_LEN(arrays); a++) {
        sl_buffer **arr = *arrays[a];
        if (!arr) continue;
        for (int k = 0; k < s->last - s->first; k++) sl_buffer_free(arr[k]);
        free(arr);
    }
    free(s);
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
    size_t n = (size_t)(last - first);
    sl_buffer ***arrays[] = {&s->weight,  &s->bias,  &s->dweight, &s->dbias,
                             &s->mweight, &s->mbias, &s->vweight, &s->vbias};
    for (size_t a = 0; a < SL_ARRAY_LEN(arrays); a++) {
        if (!(*arrays[a] = sl_alloc(sizeof(sl_buffer *) * n))) {
            sl_stage_free(s);
            return SL_ENOMEM;
        }
    }
    int st = SL_OK;
    for (int i = first; st == SL_OK && i < last; i++) {
        const sl_layer *l = &model->layers[i];
        if (l->kind != SL_LAYER_LINEAR) continue;
        size_t k = (size_t)(i - first), nw = (size_t)l->out * (size_t)l->in, nb = (size_t)l->out;
        st = sl_buffer_alloc(dev, nw * 4, &s->weight[k]);
        if (st == SL_OK) st = sl_buffer_alloc(dev, nb * 4, &s->bias[k]);
        if (st == SL_OK) st = sl_buffer_upload(s->weight[k], 0, init->weight[i], nw * 4);
        if (st == SL_OK) st = sl_buffer_upload(s->bias[k], 0, init->bias[i], nb * 4);
        if (st == SL_OK) st = alloc_zero(dev, nw, &s->dweight[k]);
        if (st == SL_OK) st = alloc_zero(dev, nb, &s->dbias[k]);
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
    for (int i = s->first; i < s->last; i++) {
        const sl_layer *l = &s->model->layers[i];
        if (l->kind != SL_LAYER_LINEAR) continue;
        size_t k = (size_t)(i - s->first);
        SL_TRY(
            sl_buffer_download(s->weight[k], 0, w->weight[i], (size_t)l->out * (size_t)l->in * 4));
        SL_TRY(sl_buffer_download(s->bias[k], 0, w->bias[i], (size_t)l->out * 4));
    }
    return SL_OK;
}

int sl_stage_zero_grad(sl_stage *s)
{
    for (int i = s->first; i < s->last; i++) {
        const sl_layer *l = &s->model->layers[i];
        if (l->kind != SL_LAYER_LINEAR) continue;
        size_t k = (size_t)(i - s->first);
        SL_TRY(sl_fill(s->dev, (size_t)l->out * (size_t)l->in, 0.0f, s->dweight[k]));
        SL_TRY(sl_fill(s->dev, (size_t)l->out, 0.0f, s->dbias[k]));
    }
    return SL_OK;
}

/* One parameter tensor's update; state buffers are created (zeroed) on first use. */
static int update(sl_stage *s, const sl_optimizer_config *o, size_t n, sl_buffer *p, sl_buffer *g,
                  sl_buffer **m, sl_buffer **v)
{
    if (o->kind == SL_OPT_SGD) {
        if (o->momentum != 0 && !*m) SL_TRY(alloc_zero(s->dev, n, m));
        return sl_sgd(s->dev, n, p, g, o->momentum != 0 ? *m : NULL, (float)o->lr,
                      (float)o->momentum, (float)o->weight_decay);
    }
    if (!*m) SL_TRY(alloc_zero(s->dev, n, m));
    if (!*v) SL_TRY(alloc_zero(s->dev, n, v));
    return sl_adam(s->dev, n, p, g, *m, *v, (float)o->lr, (float)o->beta1, (float)o->beta2,
                   (float)o->eps, (float)o->weight_decay, s->step);
}

int sl_stage_optimizer_step(sl_stage *s, const sl_optimizer_config *opt)
{
    s->step++;
    for (int i = s->first; i < s->last; i++) {
        const sl_layer *l = &s->model->layers[i];
        if (l->kind != SL_LAYER_LINEAR) continue;
        size_t k = (size_t)(i - s->first);
        SL_TRY(update(s, opt, (size_t)l->out * (size_t)l->in, s->weight[k], s->dweight[k],
                      &s->mweight[k], &s->vweight[k]));
        SL_TRY(update(s, opt, (size_t)l->out, s->bias[k], s->dbias[k], &s->mbias[k], &s->vbias[k]));
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Stash, forward, backward, loss */

int sl_stash_alloc(const sl_stage *s, size_t rows, sl_stash *out)
{
    memset(out, 0, sizeof *out);
    out->rows = rows;
    out->n = s->last - s->first;
    out->act = sl_alloc(sizeof(sl_buffer *) * (size_t)out->n);
    if (!out->act) return SL_ENOMEM;
    int widest = 1, st = SL_OK;
    for (int i = s->first; i <= s->last; i++) widest = SL_MAX(widest, sl_model_width(s->model, i));
    for (int k = 0; st == SL_OK && k < out->n; k++)
        st = sl_buffer_alloc(s->dev,
                             rows * (size_t)s->model->layers[s->first + k].out * sizeof(float),
                             &out->act[k]);
    for (int j = 0; st == SL_OK && j < 2; j++)
        st = sl_buffer_alloc(s->dev, rows * (size_t)widest * sizeof(float), &out->scratch[j]);
    if (st != SL_OK) sl_stash_free(out);
    return st;
}

void sl_stash_free(sl_stash *st)
{
    if (!st) return;
    for (int k = 0; st->act && k < st->n; k++) sl_buffer_free(st->act[k]);
    free(st->act);
    for (int k = 0; st->grad && k < st->n; k++) sl_buffer_free(st->grad[k]);
    free(st->grad);
    sl_buffer_free(st->scratch[0]);
    sl_buffer_free(st->scratch[1]);
    memset(st, 0, sizeof *st);
}

int sl_stage_forward(sl_stage *s, size_t rows, sl_buffer *input, sl_stash *stash)
{
    if (rows > stash->rows || stash->n != s->last - s->first)
        return sl_fail(SL_EINVAL, "stage forward: %zu rows for a stash of %zu", rows, stash->rows);
    for (int i = s->first; i < s->last; i++) {
        const sl_layer *l = &s->model->layers[i];
        int k = i - s->first;
        sl_buffer *x = k == 0 ? input : stash->act[k - 1], *y = stash->act[k];
        if (l->kind == SL_LAYER_LINEAR) {
            /* y[rows,out] = x[rows,in] W[out,in]^T + b[out] */
            SL_TRY(sl_gemm(s->dev, false, true, rows, (size_t)l->out, (size_t)l->in, 1.0f, x,
                           s->weight[k], 0.0f, y));
            SL_TRY(sl_bias_add(s->dev, rows, (size_t)l->out, y, s->bias[k]));
        } else {
            SL_TRY(sl_act_forward(s->dev, l->act, rows * (size_t)l->out, x, y));
        }
    }
    return SL_OK;
}

/* The backward of one micro-batch through layers [first, last). `weights` adds the weight and
 * bias gradients; `inputs` carries the gradient down to `din`. The input-only pass (zb-h1's I)
 * keeps each linear layer's output gradient in stash->grad, from which the weight-only pass (W)
 * makes exactly the kernel calls a full backward would have made. */
static int stage_backward(sl_stage *s, size_t rows, sl_buffer *input, sl_stash *stash,
                          sl_buffer *dout, sl_buffer *din, bool weights, bool inputs)
{
    if (rows > stash->rows || stash->n != s->last - s->first)
        return sl_fail(SL_EINVAL, "stage backward: %zu rows for a stash of %zu", rows, stash->rows);
    if (!inputs) {
        for (int i = s->first; i < s->last; i++) {
            const sl_layer *l = &s->model->layers[i];
            int k = i - s->first;
            if (l->kind != SL_LAYER_LINEAR) continue;
            if (!stash->grad || !stash->grad[k])
                return sl_fail(SL_EINVAL, "weight gradient of layer %d before its input gradient",
                               i);
            sl_buffer *x = k == 0 ? input : stash->act[k - 1];
            SL_TRY(sl_gemm(s->dev, true, false, (size_t)l->out, (size_t)l->in, rows, 1.0f,
                           stash->grad[k], x, 1.0f, s->dweight[k]));
            SL_TRY(sl_bias_grad(s->dev, rows, (size_t)l->out, stash->grad[k], 1.0f, s->dbias[k]));
        }
        return SL_OK;
    }
    if (!weights && !stash->grad) {
        stash->grad = sl_alloc(sizeof(sl_buffer *) * (size_t)stash->n);
        if (!stash->grad) return SL_ENOMEM;
    }
    sl_buffer *g = dout;
    int cur = -1; /* which scratch holds g (-1: the caller's dout) */
    for (int i = s->last - 1; i >= s->first; i--) {
        const sl_layer *l = &s->model->layers[i];
        int k = i - s->first;
        sl_buffer *x = k == 0 ? input : stash->act[k - 1];
        int next = cur == 0 ? 1 : 0;
        sl_buffer *dst = k == 0 ? din : stash->scratch[next];
        if (l->kind == SL_LAYER_LINEAR) {
            if (weights) {
                /* dW[out,in] += g[rows,out]^T x[rows,in];  db[out] += colsum(g) */
                SL_TRY(sl_gemm(s->dev, true, false, (size_t)l->out, (size_t)l->in, rows, 1.0f, g, x,
                               1.0f, s->dweight[k]));
                SL_TRY(sl_bias_grad(s->dev, rows, (size_t)l->out, g, 1.0f, s->dbias[k]));
            } else {
                size_t bytes = rows * (size_t)l->out * sizeof(float);
                if (!stash->grad[k]) SL_TRY(sl_buffer_alloc(s->dev, bytes, &stash->grad[k]));
                SL_TRY(sl_buffer_copy(stash->grad[k], 0, g, 0, bytes));
            }
            /* dx[rows,in] = g[rows,out] W[out,in] */
            if (dst)
                SL_TRY(sl_gemm(s->dev, false, false, rows, (size_t)l->in, (size_t)l->out, 1.0f, g,
                               s->weight[k], 0.0f, dst));
        } else if (dst) {
            SL_TRY(sl_act_backward(s->dev, l->act, rows * (size_t)l->out, x, g, dst));
        }
        g = dst;
        cur = next;
    }
    return SL_OK;
}

int sl_stage_backward(sl_stage *s, size_t rows, sl_buffer *input, sl_stash *stash, sl_buffer *dout,
                      sl_buffer *din)
{
    return stage_backward(s, rows, input, stash, dout, din, true, true);
}

int sl_stage_backward_input(sl_stage *s, size_t rows, sl_buffer *input, sl_stash *stash,
                            sl_buffer *dout, sl_buffer *din)
{
    return stage_backward(s, rows, input, stash, dout, din, false, true);
}

int sl_stage_backward_weight(sl_stage *s, size_t rows, sl_buffer *input, sl_stash *stash)
{
    return stage_backward(s, rows, input, stash, NULL, NULL, true, false);
}

int sl_loss_forward_backward(sl_device *dev, const sl_model *m, size_t rows, sl_buffer *out,
                             sl_buffer *target, float scale, sl_buffer *loss, sl_buffer *dout)
{
    if (m->loss == SL_LOSS_CROSS_ENTROPY)
        return sl_softmax_xent(dev, rows, (size_t)m->outputs, out, target, scale, loss, dout);
    return sl_mse(dev, rows, (size_t)m->outputs, out, target, scale, loss, dout);
}

/* ------------------------------------------------------------------------------------------------
 * Evaluation and the reference trainer */

int sl_evaluate(sl_stage *const *stages, int nstages, const sl_dataset *ds, size_t chunk_rows,
                double *loss, double *accuracy)
{
    *loss = 0;
    *accuracy = 0;
    if (ds->rows == 0 || nstages < 1) return SL_OK;
    const sl_model *m = stages[0]->model;
    sl_device *dev = stages[0]->dev;
    size_t in = (size_t)m->inputs, outw = (size_t)m->outputs;
    chunk_rows = SL_MIN(chunk_rows, ds->rows);
    sl_stash *stash = sl_alloc(sizeof(sl_stash) * (size_t)nstages);
    float *hx = sl_alloc(chunk_rows * in * 4), *hout = sl_alloc(chunk_rows * outw * 4);
    float *hloss = sl_alloc(chunk_rows * 4);
    size_t *rows = sl_alloc(chunk_rows * sizeof(size_t));
    sl_buffer *bx = NULL, *by = NULL, *bloss = NULL, *bd = NULL;
    int st = stash && hx && hout && hloss && rows ? SL_OK : SL_ENOMEM;
    for (int k = 0; st == SL_OK && k < nstages; k++)
        st = sl_stash_alloc(stages[k], chunk_rows, &stash[k]);
    if (st == SL_OK) st = sl_buffer_alloc(dev, chunk_rows * in * 4, &bx);
    if (st == SL_OK) st = sl_buffer_alloc(dev, chunk_rows * (ds->labels ? 1 : outw) * 4, &by);
    if (st == SL_OK) st = sl_buffer_alloc(dev, chunk_rows * 4, &bloss);
    if (st == SL_OK) st = sl_buffer_alloc(dev, chunk_rows * outw * 4, &bd);
    double sum = 0;
    size_t correct = 0;
    for (size_t r0 = 0; st == SL_OK && r0 < ds->rows; r0 += chunk_rows) {
        size_t n = SL_MIN(chunk_rows, ds->rows - r0);
        for (size_t i = 0; i < n; i++) rows[i] = r0 + i;
        sl_dataset_gather(ds, rows, n, hx, NULL, NULL);
        st = sl_buffer_upload(bx, 0, hx, n * in * 4);
        if (st == SL_OK)
            st = ds->labels ? sl_buffer_upload(by, 0, ds->labels + r0, n * 4)
                            : sl_buffer_upload(by, 0, ds->targets + r0 * outw, n * outw * 4);
        sl_buffer *x = bx;
        for (int k = 0; st == SL_OK && k < nstages; k++) {
            st = sl_stage_forward(stages[k], n, x, &stash[k]);
            x = sl_stash_output(&stash[k]);
        }
        if (st == SL_OK) st = sl_loss_forward_backward(dev, m, n, x, by, 1.0f, bloss, bd);
        if (st == SL_OK) st = sl_buffer_download(bloss, 0, hloss, n * 4);
        if (st == SL_OK && ds->labels) st = sl_buffer_download(x, 0, hout, n * outw * 4);
        for (size_t i = 0; st == SL_OK && i < n; i++) {
            sum += hloss[i];
            if (!ds->labels) continue;
            size_t best = 0;
            for (size_t c = 1; c < outw; c++)
                if (hout[i * outw + c] > hout[i * outw + best]) best = c;
            correct += (int32_t)best == ds->labels[r0 + i];
        }
    }
    if (st == SL_OK) {
        *loss = sum / (double)ds->rows;
        *accuracy = (double)correct / (double)ds->rows;
    }
    for (int k = 0; stash && k < nstages; k++) sl_stash_free(&stash[k]);
    free(stash);
    free(hx);
    free(hout);
    free(hloss);
    free(rows);
    sl_buffer_free(bx);
    sl_buffer_free(by);
    sl_buffer_free(bloss);
    sl_buffer_free(bd);
    return st;
}

int sl_reference_train(sl_device *dev, const sl_config *cfg, const sl_model *m,
                       const sl_weights *init, sl_data *data, sl_train_result *out)
{
    memset(out, 0, sizeof *out);
    int steps = cfg->train.steps, M = cfg->train.microbatches, batch = cfg->train.batch;
    size_t per = (size_t)(batch / M), in = (size_t)m->inputs, outw = (size_t)m->outputs;
    bool ce = m->loss == SL_LOSS_CROSS_ENTROPY;
    size_t ywidth = ce ? 1 : outw;
    sl_stage *stage = NULL;
    sl_stash stash = {0};
    sl_buffer *bx = NULL, *by = NULL, *bloss = NULL, *bd = NULL;
    float *hx = sl_alloc(per * in * 4), *hy = sl_alloc(per * ywidth * 4),
          *hloss = sl_alloc(per * 4);
    out->steps = steps;
    out->losses = sl_alloc(sizeof(double) * (size_t)steps);
    int st = hx && hy && hloss && out->losses ? SL_OK : SL_ENOMEM;
    if (st == SL_OK) st = sl_stage_create(dev, m, 0, m->nlayers, init, &stage);
    if (st == SL_OK) st = sl_stash_alloc(stage, per, &stash);
    if (st == SL_OK) st = sl_buffer_alloc(dev, per * in * 4, &bx);
    if (st == SL_OK) st = sl_buffer_alloc(dev, per * ywidth * 4, &by);
    if (st == SL_OK) st = sl_buffer_alloc(dev, per * 4, &bloss);
    if (st == SL_OK) st = sl_buffer_alloc(dev, per * outw * 4, &bd);
    double t0 = sl_now();
    for (int step = 0; st == SL_OK && step < steps; step++) {
        double sum = 0;
        st = sl_stage_zero_grad(stage);
        for (int mb = 0; st == SL_OK && mb < M; mb++) {
            st = sl_data_microbatch(data, step, mb, hx, ce ? (int32_t *)hy : NULL, ce ? NULL : hy);
            if (st == SL_OK) st = sl_buffer_upload(bx, 0, hx, per * in * 4);
            if (st == SL_OK) st = sl_buffer_upload(by, 0, hy, per * ywidth * 4);
            if (st == SL_OK) st = sl_stage_forward(stage, per, bx, &stash);
            if (st == SL_OK)
                st = sl_loss_forward_backward(dev, m, per, sl_stash_output(&stash), by,
                                              1.0f / (float)batch, bloss, bd);
            if (st == SL_OK) st = sl_stage_backward(stage, per, bx, &stash, bd, NULL);
            if (st == SL_OK) st = sl_buffer_download(bloss, 0, hloss, per * 4);
            for (size_t r = 0; st == SL_OK && r < per; r++) sum += hloss[r];
        }
        if (st == SL_OK) st = sl_stage_optimizer_step(stage, &cfg->train.optimizer);
        if (st == SL_OK) out->losses[step] = sum / (double)batch;
        if (st == SL_OK && !isfinite(out->losses[step]))
            st = sl_fail(SL_EINTERNAL,
                         "reference: the loss of step %d is not finite (lower "
                         "train.optimizer.lr?)",
                         step);
    }
    if (st == SL_OK) st = sl_device_finish(dev);
    out->train_seconds = sl_now() - t0;
    if (st == SL_OK) st = sl_weights_alloc(m, &out->weights);
    if (st == SL_OK) st = sl_stage_download(stage, &out->weights);
    if (st == SL_OK && data->test.rows) {
        out->test_rows = data->test.rows;
        st = sl_evaluate(&stage, 1, &data->test, 512, &out->test_loss, &out->test_accuracy);
    }
    sl_stash_free(&stash);
    sl_stage_free(stage);
    sl_buffer_free(bx);
    sl_buffer_free(by);
    sl_buffer_free(bloss);
    sl_buffer_free(bd);
    free(hx);
    free(hy);
    free(hloss);
    if (st != SL_OK) sl_train_result_free(out);
    return st;
}

void sl_train_result_free(sl_train_result *r)
{
    if (!r) return;
    free(r->losses);
    sl_weights_free(&r->weights);
    memset(r, 0, sizeof *r);
}

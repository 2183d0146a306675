/* The one-device trainer, the oracle the pipeline must equal (one stage holding every layer),
 * and the evaluation of a model held by stages on a held-out dataset. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/data/data.h"
#include "runtime/model/model.h"

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
    size_t pos = (size_t)m->positions; /* loss rows per sample */
    const sl_loss *loss = sl_loss_get(m->loss);
    if (!loss)
        return sl_fail(SL_EINVAL, "reference: the model's loss kind %d is not a loss",
                       (int)m->loss);
    bool labels = loss->int_targets;
    size_t ywidth = sl_loss_target_width(loss, outw, pos);
    sl_stage *stage = NULL;
    sl_stash stash = {0};
    sl_buffer *bx = NULL, *by = NULL, *bloss = NULL, *bd = NULL;
    float *hx = sl_alloc(per * in * 4), *hy = sl_alloc(per * ywidth * 4),
          *hloss = sl_alloc(per * pos * 4);
    out->steps = steps;
    out->losses = sl_alloc(sizeof(double) * (size_t)steps * 3);
    int st = hx && hy && hloss && out->losses ? SL_OK : SL_ENOMEM;
    if (st == SL_OK) {
        out->lrs = out->losses + steps;
        out->grad_norms = out->lrs + steps;
    }
    if (st == SL_OK) st = sl_stage_create(dev, m, 0, m->nlayers, init, &stage);
    if (st == SL_OK) st = sl_stash_alloc(stage, per, &stash);
    if (st == SL_OK) st = sl_buffer_alloc(dev, per * in * 4, &bx);
    if (st == SL_OK) st = sl_buffer_alloc(dev, per * ywidth * 4, &by);
    if (st == SL_OK) st = sl_buffer_alloc(dev, per * pos * 4, &bloss);
    if (st == SL_OK) st = sl_buffer_alloc(dev, per * outw * 4, &bd);
    double t0 = sl_now();
    for (int step = 0; st == SL_OK && step < steps; step++) {
        double sum = 0;
        st = sl_stage_zero_grad(stage);
        for (int mb = 0; st == SL_OK && mb < M; mb++) {
            st = sl_data_microbatch(data, step, mb, hx, labels ? (int32_t *)hy : NULL,
                                    labels ? NULL : hy);
            /* A GPT's loss is the mean over every position of the mini-batch. */
            float scale = 1.0f / (float)((size_t)batch * pos);
            if (st == SL_OK) st = sl_buffer_upload(bx, 0, hx, per * in * 4);
            if (st == SL_OK) st = sl_buffer_upload(by, 0, hy, per * ywidth * 4);
            if (st == SL_OK) st = sl_stage_forward(stage, per, bx, &stash);
            if (st == SL_OK)
                st = sl_loss_forward_backward(dev, m, per, sl_stash_output(&stash), by, scale,
                                              bloss, bd);
            if (st == SL_OK) st = sl_stage_backward(stage, per, bx, &stash, bd, NULL);
            if (st == SL_OK) st = sl_buffer_download(bloss, 0, hloss, per * pos * 4);
            for (size_t r = 0; st == SL_OK && r < per * pos; r++) sum += hloss[r];
        }
        if (st == SL_OK) {
            st = sl_stages_step(&stage, 1, cfg, step, true, NULL, &out->grad_norms[step],
                                &out->lrs[step]);
            if (st != SL_OK) sl_fail_context(st, "reference, step %d", step);
        }
        if (st == SL_OK) out->losses[step] = sum / ((double)batch * (double)pos);
        if (st == SL_OK && !isfinite(out->losses[step]))
            st = sl_fail(SL_ENONFINITE,
                         "reference, step %d: the loss is not finite: training diverged", step);
        st = sl_config_diverged(cfg, st);
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

/* The end of a training step, shared by the pipeline's executor and the one-device trainer: the
 * learning-rate schedule, the global gradient norm and its clipping, and the optimizer step; and
 * the optimizer state saved into and loaded from checkpoints. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/model/model.h"
#include "runtime/safetensors/safetensors.h"

double sl_lr_at(const sl_config *cfg, int64_t step)
{
    double lr = cfg->train.optimizer.lr;
    const sl_lr_schedule *s = &cfg->train.lr_schedule;
    if (!s->on) return lr;
    if (step < s->warmup_steps) return lr * (double)(step + 1) / (double)(s->warmup_steps + 1);
    if (step > s->decay_steps) return s->min_lr;
    double ratio = (double)(step - s->warmup_steps) / (double)(s->decay_steps - s->warmup_steps);
    double coeff = 0.5 * (1.0 + cos(3.14159265358979323846 * ratio)); /* pi: M_PI is not C11 */
    return s->min_lr + coeff * (lr - s->min_lr);
}

double sl_clip_coef(double max_norm, double norm)
{
    if (!(max_norm > 0)) return 1.0;
    double coef = max_norm / (norm + 1e-6);
    return coef < 1.0 ? coef : 1.0;
}

int sl_stages_step(sl_stage *const *stages, int n, const sl_config *cfg, int64_t step,
                   bool want_norm, const double *sumsq_in, double *norm, double *lr)
{
    *norm = NAN;
    *lr = sl_lr_at(cfg, step);
    for (int i = 0; i < n; i++) SL_TRY(sl_stage_sum_tied(stages[i]));
    double max_norm = cfg->train.grad_clip;
    /* The sum of squares is taken even when no norm is wanted: it is where a gradient that is
     * not finite stops the run (sl_stage_grad_sumsq names it) before an update spreads it. */
    double sumsq = sumsq_in ? *sumsq_in : 0;
    for (int i = 0; !sumsq_in && i < n; i++) {
        double part;
        SL_TRY(sl_stage_grad_sumsq(stages[i], &part));
        sumsq += part;
    }
    if (!isfinite(sumsq)) /* the callers add what to change (sl_config_diverged) */
        return sl_fail(SL_ENONFINITE, "the global gradient norm is not finite: training diverged");
    if (want_norm || max_norm > 0) {
        *norm = sqrt(sumsq);
        double coef = sl_clip_coef(max_norm, *norm);
        /* clip_grad_norm_ multiplies only when the coefficient is below 1 */
        for (int i = 0; coef < 1.0 && i < n; i++)
            SL_TRY(sl_stage_scale_grad(stages[i], (float)coef));
    }
    for (int i = 0; i < n; i++)
        SL_TRY(sl_stage_optimizer_step(stages[i], &cfg->train.optimizer, *lr));
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Optimizer state in checkpoints */

/* The state tensors an optimizer keeps per parameter, in the order of sl_stage's m and v. */
static int state_names(const sl_optimizer_config *o, const char *names[2])
{
    names[0] = names[1] = NULL;
    if (o->kind == SL_OPT_SGD) {
        if (o->momentum != 0) names[0] = "momentum_buffer";
        return o->momentum != 0 ? 1 : 0;
    }
    names[0] = "exp_avg";
    names[1] = "exp_avg_sq";
    return 2;
}

static int push(sl_state_tensors *out, const sl_param *q, const char *suffix, sl_buffer *b)
{
    if (out->n == out->cap) {
        size_t cap = out->cap ? 2 * out->cap : 16;
        sl_tensor *t = realloc(out->t, cap * sizeof *t);
        if (!t) return sl_fail(SL_ENOMEM, "out of memory saving optimizer state");
        out->t = t;
        out->cap = cap;
    }
    size_t len = strlen(q->name) + (suffix ? strlen(suffix) + 1 : 0) + 1;
    char *name = sl_alloc(len);
    float *data = sl_alloc(q->numel * sizeof(float));
    if (!name || !data) {
        free(name);
        free(data);
        return SL_ENOMEM;
    }
    snprintf(name, len, "%s%s%s", q->name, suffix ? "." : "", suffix ? suffix : "");
    sl_tensor *t = &out->t[out->n++];
    *t = (sl_tensor){.name = name, .dtype = SL_DTYPE_F32, .ndim = q->spec.ndim, .data = data};
    memcpy(t->shape, q->spec.shape, sizeof(int64_t) * (size_t)q->spec.ndim);
    return sl_buffer_download(b, 0, data, q->numel * sizeof(float));
}

int sl_stage_state_save(sl_stage *s, const sl_optimizer_config *opt, sl_state_tensors *out)
{
    const char *names[2];
    int nstate = state_names(opt, names);
    for (int k = 0; k < s->nparams; k++) {
        const sl_param *q = &s->model->params[s->first_param + k];
        SL_TRY(push(out, q, NULL, s->param[k]));
        sl_buffer *state[2] = {s->m[k], s->v[k]};
        for (int j = 0; s->alias[k] < 0 && j < nstate; j++)
            if (state[j]) SL_TRY(push(out, q, names[j], state[j]));
    }
    return SL_OK;
}

void sl_state_tensors_free(sl_state_tensors *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free((void *)t->t[i].name);
        free((void *)t->t[i].data);
    }
    free(t->t);
    memset(t, 0, sizeof *t);
}

/* The tensor "<name of p>.<suffix>", or its tied twin's. */
static const sl_tensor *find_state(const sl_model *m, const sl_safetensors *st, int p,
                                   const char *suffix)
{
    char name[sizeof m->params[0].name + 32];
    snprintf(name, sizeof name, "%s.%s", m->params[p].name, suffix);
    const sl_tensor *t = sl_safetensors_find(st, name);
    int twin = sl_model_twin(m, p);
    if (t || twin < 0) return t;
    snprintf(name, sizeof name, "%s.%s", m->params[twin].name, suffix);
    return sl_safetensors_find(st, name);
}

int sl_stage_state_load(sl_stage *s, const sl_optimizer_config *opt, const sl_safetensors *st,
                        const char *source, int64_t step)
{
    const char *names[2];
    int nstate = state_names(opt, names);
    for (int k = 0; k < s->nparams; k++) {
        if (s->alias[k] >= 0) continue;
        int p = s->first_param + k;
        const sl_param *q = &s->model->params[p];
        sl_buffer **state[2] = {&s->m[k], &s->v[k]};
        for (int j = 0; j < nstate; j++) {
            const sl_tensor *t = find_state(s->model, st, p, names[j]);
            if (!t)
                return sl_fail(SL_EFORMAT,
                               "optimizer state %s: no '%s.%s' (was the checkpoint made with "
                               "another train.optimizer?)",
                               source, q->name, names[j]);
            if (t->dtype != SL_DTYPE_F32 || t->elems != q->numel)
                return sl_fail(SL_EFORMAT,
                               "optimizer state %s: '%s' holds %zu %s values, the parameter "
                               "%zu F32",
                               source, t->name, t->elems, sl_dtype_name(t->dtype), q->numel);
            float *host = sl_alloc(q->numel * sizeof(float));
            if (!host) return SL_ENOMEM;
            int rc = sl_tensor_to_f32(t, host);
            if (rc == SL_OK && !*state[j])
                rc = sl_buffer_alloc(s->dev, q->numel * sizeof(float), state[j]);
            if (rc == SL_OK) rc = sl_buffer_upload(*state[j], 0, host, q->numel * sizeof(float));
            free(host);
            SL_TRY(rc);
        }
    }
    s->step = step;
    return SL_OK;
}

/* The end of a training step, shared by the pipeline's executor and the one-device trainer: the
 * learning-rate schedule, the global gradient norm and its clipping, and the optimizer step. */
#include <math.h>

#include "core/core.h"
#include "runtime/model/model.h"

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
    if (!isfinite(sumsq))
        return sl_fail(SL_ENONFINITE,
                       "the global gradient norm is not finite: training diverged; lower "
                       "train.optimizer.lr or set train.grad_clip");
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

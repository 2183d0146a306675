/* The stage executor's evaluation between steps (see exec_impl.h). */
#include <math.h>

#include "runtime/exec/exec_impl.h"

/* Evaluation number `number`, after step `step`: eval.iters batches of the validation share (when
 * the text has one) and then of the training share's evaluation stream (see data.h), each run
 * through every stage by the plan's forward-only schedule. The last stage sums the losses and
 * reports their means. Nothing here touches a gradient, an optimizer state or the training data
 * position, so training goes on exactly as without it. */
int sl__exec_evaluate(sl__exec *e, int64_t step, int number)
{
    size_t count;
    const sl_action *acts = sl_schedule_actions(e->plan->eval_sched, e->rank, &count);
    bool last = sl__exec_has_loss(e);
    const int iters = e->cfg->eval.iters;
    double t0 = sl_now(), mean[2] = {NAN, NAN};
    int rc = SL_OK;
    for (int share = 0; share < 2 && rc == SL_OK; share++) {
        if (share == 0 && !e->data.val.ids) continue; /* data.val_fraction = 0: no held-out share */
        double sum = 0;
        for (int i = 0; i < iters && rc == SL_OK; i++) {
            e->eval_share = share + 1;
            e->eval_k = (int64_t)number * iters + i;
            /* Evaluation messages' steps carry SL_STEP_EVAL, so they can never be taken for a
             * training step's (or the other way round), and count the run's evaluation batches. */
            uint64_t tag =
                SL_STEP_EVAL | ((uint64_t)(2 * number + share) * (uint64_t)iters + (uint64_t)i);
            for (size_t a = 0; a < count && rc == SL_OK; a++)
                rc = sl__exec_run_action(e, (int64_t)tag, &acts[a]);
            double part = 0;
            if (rc == SL_OK && last)
                rc = sl__exec_loss_sum(e, sl_partition_chain_stages(e->part) - 1, 0,
                                       e->cfg->train.microbatches, &part);
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
    return sl__exec_report(e, o);
}

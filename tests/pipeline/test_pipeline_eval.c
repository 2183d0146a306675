/* End-to-end evaluation (eval.interval, eval.iters): a text's losses by forward-only passes through
 * the pipeline equal those computed directly on one CPU stage; a rank failing in an evaluation
 * stops the run. */
#include <criterion/criterion.h>
#include <errno.h>
#include <sys/wait.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "core/core.h"
#include "runtime/config/config.h"
#include "runtime/data/data.h"
#include "runtime/model/model.h"
#include "tests/pipeline/outdir.h"
#include "tests/pipeline/pipeline_run.h"

TestSuite(pipeline, .init = setup, .fini = teardown, .timeout = 0);

/* The mean loss of evaluation `number` on one share, computed directly: the whole model as one
 * CPU stage with the given weights, over the same windows (sl_data_eval_batch), micro-batch by
 * micro-batch as the pipeline cuts them. */
static double direct_eval(const char *json, const char **sets, int nsets, const sl_weights *w,
                          bool val, int number)
{
    sl_config cfg;
    cr_assert_eq(sl_config_parse(json, ".", sets, nsets, &cfg), SL_OK, "%s", sl_last_error());
    sl_model m;
    cr_assert_eq(sl_model_init(&cfg, &m), SL_OK, "%s", sl_last_error());
    sl_data d;
    cr_assert_eq(sl_data_load(&cfg, m.outputs, &d), SL_OK, "%s", sl_last_error());
    sl_device *dev;
    cr_assert_eq(sl_device_open("cpu", &dev), SL_OK);
    sl_stage *st;
    cr_assert_eq(sl_stage_create(dev, &m, 0, m.nlayers, w, &st), SL_OK, "%s", sl_last_error());
    size_t rows = (size_t)(cfg.train.batch / cfg.train.microbatches), T = (size_t)m.positions;
    sl_stash stash;
    cr_assert_eq(sl_stash_alloc(st, rows, &stash), SL_OK);
    int32_t *x = malloc(rows * T * 4), *y = malloc(rows * T * 4);
    float *loss = malloc(rows * T * 4);
    sl_buffer *bx, *by, *bl, *bd;
    cr_assert_eq(sl_buffer_alloc(dev, rows * T * 4, &bx), SL_OK);
    cr_assert_eq(sl_buffer_alloc(dev, rows * T * 4, &by), SL_OK);
    cr_assert_eq(sl_buffer_alloc(dev, rows * T * 4, &bl), SL_OK);
    cr_assert_eq(sl_buffer_alloc(dev, rows * T * (size_t)m.outputs * 4, &bd), SL_OK);
    double sum = 0;
    for (int i = 0; i < cfg.eval.iters; i++)
        for (int mb = 0; mb < cfg.train.microbatches; mb++) {
            cr_assert_eq(
                sl_data_eval_batch(&d, val, (int64_t)number * cfg.eval.iters + i, mb, x, y), SL_OK,
                "%s", sl_last_error());
            cr_assert_eq(sl_buffer_upload(bx, 0, x, rows * T * 4), SL_OK);
            cr_assert_eq(sl_buffer_upload(by, 0, y, rows * T * 4), SL_OK);
            cr_assert_eq(sl_stage_forward(st, rows, bx, &stash), SL_OK, "%s", sl_last_error());
            cr_assert_eq(sl_loss_forward_backward(dev, &m, rows, sl_stash_output(&stash), by,
                                                  1.0f / (float)((size_t)cfg.train.batch * T), bl,
                                                  bd),
                         SL_OK, "%s", sl_last_error());
            cr_assert_eq(sl_buffer_download(bl, 0, loss, rows * T * 4), SL_OK);
            for (size_t k = 0; k < rows * T; k++) sum += loss[k];
        }
    double mean = sum / ((double)cfg.eval.iters * cfg.train.batch * (double)T);
    sl_buffer_free(bx);
    sl_buffer_free(by);
    sl_buffer_free(bl);
    sl_buffer_free(bd);
    free(x);
    free(y);
    free(loss);
    sl_stash_free(&stash);
    sl_stage_free(st);
    sl_device_close(dev);
    sl_data_free(&d);
    sl_model_free(&m);
    sl_config_free(&cfg);
    return mean;
}

/* The evaluations of `got` equal those of `want` within tol relative. */
static void assert_same_evals(const result *got, const result *want, double tol, const char *what)
{
    cr_assert_eq(got->nevals, want->nevals, "%s: %d evaluations vs %d", what, got->nevals,
                 want->nevals);
    for (int e = 0; e < want->nevals; e++) {
        cr_assert_eq(got->eval_steps[e], want->eval_steps[e], "%s: evaluation %d", what, e);
        cr_assert(rel(got->val_losses[e], want->val_losses[e]) <= tol,
                  "%s: evaluation %d val_loss %.9g vs %.9g", what, e, got->val_losses[e],
                  want->val_losses[e]);
        cr_assert(rel(got->train_losses[e], want->train_losses[e]) <= tol,
                  "%s: evaluation %d train_loss %.9g vs %.9g", what, e, got->train_losses[e],
                  want->train_losses[e]);
    }
}

/* Evaluation every 2 steps of an untied and a tied (clipped) GPT: the evaluations are after steps
 * 1 and 3 (the last), on 2 and 4 ranks (and 2 chunks on 2 ranks) they equal the 1-rank run's
 * within 1e-5, the 1-rank run's equal a direct computation with its final weights, and evaluating
 * changes nothing of the training: the step losses and final weights of the 1-rank run equal,
 * bit for bit, those of a run that evaluates only after the last step. summary.json has the last
 * evaluation. */
Test(pipeline, gpt_eval_through_the_pipeline_equals_one_rank)
{
    char json[1024];
    gpt_json(json, sizeof json);
    for (int tied = 0; tied <= 1; tied++) {
        const char *base[] = {tied ? "model.gpt.tie_embeddings=true" : "model.gpt.bias=true",
                              tied ? "train.grad_clip=0.5" : "train.grad_clip=0", "eval.iters=3",
                              "eval.interval=2"};
        result ref, quiet;
        cr_assert_eq(train_config(json, base, 4, &ref), SL_OK, "%s", sl_last_error());
        cr_assert_eq(ref.nevals, 2);
        cr_assert_eq(ref.eval_steps[0], 1);
        cr_assert_eq(ref.eval_steps[1], STEPS - 1);
        for (int e = 0; e < 2; e++)
            cr_assert(isfinite(ref.val_losses[e]) && isfinite(ref.train_losses[e]) &&
                          ref.val_losses[e] > 0 && ref.train_losses[e] > 0,
                      "evaluation %d: %g %g", e, ref.val_losses[e], ref.train_losses[e]);
        cr_assert(ref.train_losses[1] < ref.train_losses[0], "training lowers the training loss");
        /* summary.json: the last evaluation */
        /* (metrics.jsonl prints 9 digits) */
        cr_assert(rel(ref.summary_val, ref.val_losses[1]) <= 1e-8, "%.17g %.17g", ref.summary_val,
                  ref.val_losses[1]);
        cr_assert(rel(ref.summary_train, ref.train_losses[1]) <= 1e-8, "%.17g %.17g",
                  ref.summary_train, ref.train_losses[1]);
        /* the direct computation, with the 1-rank run's final weights */
        for (int val = 0; val <= 1; val++) {
            double want = direct_eval(json, base, 4, &ref.weights, val, 1);
            double got = val ? ref.val_losses[1] : ref.train_losses[1];
            cr_assert(rel(got, want) <= 1e-6, "tied %d %s loss %.9g, directly %.9g", tied,
                      val ? "val" : "train", got, want);
        }
        /* evaluation leaves training alone: bit for bit on one rank */
        const char *once[] = {base[0], base[1], "eval.iters=3", "eval.interval=0"};
        cr_assert_eq(train_config(json, once, 4, &quiet), SL_OK, "%s", sl_last_error());
        cr_assert_eq(quiet.nevals, 1);
        cr_assert_eq(quiet.eval_steps[0], STEPS - 1);
        assert_same(&quiet, &ref, 0, "only a final evaluation vs every 2 steps");
        /* its one evaluation is evaluation number 0: other windows than ref's last */
        for (int val = 0; val <= 1; val++) {
            double want = direct_eval(json, once, 4, &quiet.weights, val, 0);
            double got = val ? quiet.val_losses[0] : quiet.train_losses[0];
            cr_assert(rel(got, want) <= 1e-6, "tied %d %s loss %.9g, directly %.9g", tied,
                      val ? "val" : "train", got, want);
        }
        result_free(&quiet);
        static const struct {
            const char *schedule;
            int chunks, ranks;
        } runs[] = {{"gpipe", 1, 2},
                    {"interleaved", 2, 2},
                    {"1f1b", 1, 4},
                    {"zb-h1", 1, 4},
                    {"chimera", 2, 4}};
        for (size_t i = 0; i < SL_ARRAY_LEN(runs); i++) {
            char a[64], b[64], c[64], what[128];
            snprintf(a, sizeof a, "pipeline.schedule=\"%s\"", runs[i].schedule);
            snprintf(b, sizeof b, "pipeline.chunks=%d", runs[i].chunks);
            snprintf(c, sizeof c, "pipeline.stages=%d", runs[i].ranks);
            snprintf(what, sizeof what, "%s GPT with evaluation, %s on %d ranks, %d chunks",
                     tied ? "tied" : "untied", runs[i].schedule, runs[i].ranks, runs[i].chunks);
            const char *sets[] = {base[0], base[1], base[2], base[3], a, b, c};
            result got;
            cr_assert_eq(train_config(json, sets, 7, &got), SL_OK, "%s: %s", what, sl_last_error());
            /* Chimera sums its replicas' halves: the attention's key biases, whose gradient is
             * only rounding noise, agree within 1e-6 absolute (as in test_pipeline_gpt.c). */
            assert_close(&got, &ref, 1e-5, strcmp(runs[i].schedule, "chimera") ? 0.0 : 1e-6, what);
            assert_same_evals(&got, &ref, 1e-5, what);
            result_free(&got);
        }
        result_free(&ref);
    }
}

/* A rank that fails in an evaluation stops the run as a failure in training does. */
Test(pipeline, a_rank_failing_in_evaluation_stops_the_run)
{
    char json[1024];
    gpt_json(json, sizeof json);
    setenv("SLUICE_FAIL_AT", "1:eval:1", 1); /* rank 1, in the evaluation after step 1 */
    const char *sets[] = {"pipeline.stages=4", "eval.interval=2", "eval.iters=2"};
    result r;
    int st = train_config(json, sets, 3, &r);
    unsetenv("SLUICE_FAIL_AT");
    cr_assert_eq(st, SL_EPEER, "%s", sl_last_error());
    cr_assert(strstr(sl_last_error(), "rank 1") && strstr(sl_last_error(), "evaluation"),
              "the message names the failing rank and the evaluation: %s", sl_last_error());
    int ws;
    cr_assert_eq(waitpid(-1, &ws, WNOHANG), -1);
    cr_assert_eq(errno, ECHILD);
}

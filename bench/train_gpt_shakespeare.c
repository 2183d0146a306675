/* `sluice bench train --model gpt --shakespeare` (not run by default):
 * samples/shakespeare/shakespeare.json trained by sluice as configured (4 stage processes, 1F1B, an
 * evaluation every 500 steps over 200 batches), then PyTorch training the same recipe on one
 * process with its default threads (bench/train_torch_gpt.py, embedded); the wall time until the
 * first evaluation at or below the target validation loss on each side, and their ratio. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/train_impl.h"
#include "core/core.h"
#include "runtime/config/config.h"
#include "runtime/train/train.h"

extern const unsigned char sl_bench_train_torch_gpt_py[];
extern const size_t sl_bench_train_torch_gpt_py_size;

#define SHAKESPEARE_LOSS  1.90 /* the target validation loss of --shakespeare */
#define SHAKESPEARE_EVALS 64

/* The options of `sluice bench train --model gpt` that --shakespeare reads. */
struct options {
    const char *python;
    int no_torch;
    int json;
    const char *shakespeare_config;
};

/* One side of --shakespeare: its evaluations and the wall time of each. */
struct shakespeare_side {
    int nevals;
    int step[SHAKESPEARE_EVALS];
    double val[SHAKESPEARE_EVALS], train[SHAKESPEARE_EVALS], time_s[SHAKESPEARE_EVALS];
    double total_s;
    char note[512]; /* why there are no figures */
};

/* The wall time of the first evaluation at or below the target, or NAN; *at its index. */
static double time_to_target(const struct shakespeare_side *s, int *at)
{
    for (int i = 0; i < s->nevals; i++)
        if (s->val[i] <= SHAKESPEARE_LOSS) {
            *at = i;
            return s->time_s[i];
        }
    *at = -1;
    return NAN;
}

/* Reads sluice's metrics.jsonl: step lines give each step's time_s, evaluation lines (val_loss)
 * are timed by the step line of the same step. */
static int read_metrics(const char *path, int steps, struct shakespeare_side *s)
{
    FILE *f = fopen(path, "r");
    if (!f) return sl_fail(SL_EIO, "bench train: cannot open %s", path);
    double *times = calloc((size_t)steps + 1, sizeof *times);
    if (!times) {
        fclose(f);
        return sl_fail(SL_ENOMEM, "bench train: no memory for %d step times", steps);
    }
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *st = cJSON_GetObjectItem(o, "step"), *t = cJSON_GetObjectItem(o, "time_s"),
                    *val = cJSON_GetObjectItem(o, "val_loss"),
                    *tr = cJSON_GetObjectItem(o, "train_loss");
        int k = cJSON_IsNumber(st) ? st->valueint : -1;
        if (k >= 0 && k < steps && cJSON_IsNumber(t)) {
            times[k] = t->valuedouble;
            if (t->valuedouble > s->total_s) s->total_s = t->valuedouble;
        }
        if (k >= 0 && cJSON_IsNumber(val) && s->nevals < SHAKESPEARE_EVALS) {
            s->step[s->nevals] = k;
            s->val[s->nevals] = val->valuedouble;
            s->train[s->nevals] = cJSON_IsNumber(tr) ? tr->valuedouble : NAN;
            s->nevals++;
        }
        cJSON_Delete(o);
    }
    fclose(f);
    for (int i = 0; i < s->nevals; i++) s->time_s[i] = s->step[i] < steps ? times[s->step[i]] : NAN;
    free(times);
    return SL_OK;
}

/* PyTorch's side: the embedded script with --text; a missing interpreter or torch is a note. */
static void shakespeare_torch(const struct options *o, const char *tmp, const sl_config *cfg,
                              struct shakespeare_side *s, char *version, size_t version_size,
                              int *threads)
{
    char script[1200], cmd[8192];
    if (!sl__bench_train_torch_prepare(
            o->python, o->no_torch, tmp, "train_torch_gpt.py", sl_bench_train_torch_gpt_py,
            sl_bench_train_torch_gpt_py_size, script, sizeof script, s->note, sizeof s->note))
        return;
    const sl_gpt_config *g = &cfg->model.gpt;
    const sl_optimizer_config *opt = &cfg->train.optimizer;
    const sl_lr_schedule *ls = &cfg->train.lr_schedule;
    /* Threads: PyTorch's default (torch.get_num_threads()); nothing is set. */
    snprintf(cmd, sizeof cmd,
             "'%s' '%s' --text '%s' --vocab-size %d --block-size %d --n-layer %d --n-head %d "
             "--n-embd %d%s%s --batch %d --steps %d --lr %.9g --beta1 %.9g --beta2 %.9g "
             "--eps %.9g --weight-decay %.9g --grad-clip %.9g --threads 0 --val-fraction %.9g "
             "--warmup-steps %d --decay-steps %d --min-lr %.9g --eval-interval %d "
             "--eval-iters %d",
             o->python, script, cfg->data.text, g->vocab_size, g->block_size, g->n_layer, g->n_head,
             g->n_embd, g->bias ? "" : " --no-bias", g->tie_embeddings ? "" : " --untied",
             cfg->train.batch, cfg->train.steps, opt->lr, opt->beta1, opt->beta2, opt->eps,
             opt->weight_decay, cfg->train.grad_clip, cfg->data.val_fraction,
             ls->on ? ls->warmup_steps : 0, ls->on ? ls->decay_steps : cfg->train.steps,
             ls->on ? ls->min_lr : opt->lr,
             cfg->eval.interval > 0 ? cfg->eval.interval : cfg->train.steps, cfg->eval.iters);
    cJSON *obj;
    int status;
    if (sl__bench_train_last_json(cmd, o->python, 16384, &obj, &status, s->note, sizeof s->note))
        return;
    const char *err = cJSON_GetStringValue(cJSON_GetObjectItem(obj, "error"));
    if (!obj || err || cJSON_IsNull(cJSON_GetObjectItem(obj, "torch"))) {
        snprintf(s->note, sizeof s->note, "%s: %s (status %d)", o->python, err ? err : "no result",
                 status);
        cJSON_Delete(obj);
        return;
    }
    snprintf(version, version_size, "%s",
             cJSON_GetStringValue(cJSON_GetObjectItem(obj, "torch"))
                 ? cJSON_GetStringValue(cJSON_GetObjectItem(obj, "torch"))
                 : "?");
    *threads = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(obj, "threads"));
    s->total_s = cJSON_GetNumberValue(cJSON_GetObjectItem(obj, "total_s"));
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(obj, "evals"))
    {
        if (s->nevals == SHAKESPEARE_EVALS) break;
        s->step[s->nevals] = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(e, "step"));
        s->val[s->nevals] = cJSON_GetNumberValue(cJSON_GetObjectItem(e, "val_loss"));
        s->train[s->nevals] = cJSON_GetNumberValue(cJSON_GetObjectItem(e, "train_loss"));
        s->time_s[s->nevals] = cJSON_GetNumberValue(cJSON_GetObjectItem(e, "time_s"));
        s->nevals++;
    }
    cJSON_Delete(obj);
    if (!s->nevals) snprintf(s->note, sizeof s->note, "the PyTorch script evaluated nothing");
}

static cJSON *side_json(const struct shakespeare_side *s, double to_target, int at)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *ev = cJSON_AddArrayToObject(j, "evals");
    for (int i = 0; i < s->nevals; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "step", s->step[i]);
        cJSON_AddItemToObject(e, "val_loss", sl__bench_train_number_or_null(s->val[i]));
        cJSON_AddItemToObject(e, "train_loss", sl__bench_train_number_or_null(s->train[i]));
        cJSON_AddItemToObject(e, "time_s", sl__bench_train_number_or_null(s->time_s[i]));
        cJSON_AddItemToArray(ev, e);
    }
    cJSON_AddItemToObject(j, "time_to_target_s", sl__bench_train_number_or_null(to_target));
    cJSON_AddItemToObject(j, "target_step",
                          at >= 0 ? cJSON_CreateNumber(s->step[at]) : cJSON_CreateNull());
    cJSON_AddItemToObject(j, "final_val_loss",
                          sl__bench_train_number_or_null(s->nevals ? s->val[s->nevals - 1] : NAN));
    cJSON_AddItemToObject(j, "total_s", sl__bench_train_number_or_null(s->total_s));
    if (s->note[0]) cJSON_AddStringToObject(j, "note", s->note);
    return j;
}

static void side_row(const char *who, const struct shakespeare_side *s, double to_target, int at)
{
    char tt[64] = "not reached";
    if (at >= 0) snprintf(tt, sizeof tt, "%.1f s (step %d)", to_target, s->step[at] + 1);
    printf("  %-34s %22s %10.4f %9.1f s\n", who, tt, s->nevals ? s->val[s->nevals - 1] : NAN,
           s->total_s);
}

/* --shakespeare: the sample config trained by sluice, then the same recipe by PyTorch. */
static int shakespeare(const struct options *o, const char *tmp)
{
    char set[1200], metrics[1300];
    snprintf(set, sizeof set, "output.dir=%s/shakespeare", tmp);
    snprintf(metrics, sizeof metrics, "%s/shakespeare/metrics.jsonl", tmp);
    const char *sets[] = {set};
    sl_config cfg;
    int rc = sl_config_load(o->shakespeare_config, sets, 1, &cfg);
    if (rc != SL_OK) {
        fprintf(stderr, "sluice bench train: %s\n", sl_last_error());
        return 1;
    }
    if (!cfg.model.has_gpt || !cfg.data.text) {
        fprintf(stderr, "sluice bench train: %s is not a GPT trained on a text\n",
                o->shakespeare_config);
        sl_config_free(&cfg);
        return 1;
    }
    static struct shakespeare_side sl, th;
    memset(&sl, 0, sizeof sl);
    memset(&th, 0, sizeof th);
    fprintf(stderr, "bench train: Shakespeare: sluice, %d stage processes, %d steps (minutes)...\n",
            cfg.pipeline.stages, cfg.train.steps);
    sl_train_options topt = {.progress = 1};
    sl_train_summary sum;
    rc = sl_train(&cfg, &topt, &sum);
    if (rc == SL_OK) rc = read_metrics(metrics, cfg.train.steps, &sl);
    if (rc != SL_OK) {
        fprintf(stderr, "sluice bench train: %s\n", sl_last_error());
        sl_config_free(&cfg);
        return 1;
    }
    fprintf(stderr, "bench train: Shakespeare: PyTorch, 1 process, %d steps (minutes)...\n",
            cfg.train.steps);
    char version[64] = "";
    int threads = 0;
    shakespeare_torch(o, tmp, &cfg, &th, version, sizeof version, &threads);
    int at_sl, at_th;
    double t_sl = time_to_target(&sl, &at_sl), t_th = time_to_target(&th, &at_th);
    double ratio = t_sl > 0 && t_th > 0 ? t_th / t_sl : NAN;
    if (o->json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "name", "train-gpt-shakespeare");
        cJSON_AddStringToObject(root, "baseline",
                                th.nevals ? "PyTorch, the same recipe, 1 process, its default "
                                            "threads"
                                          : "none: no PyTorch figure (see torch.note)");
        cJSON_AddItemToObject(root, "ratio", sl__bench_train_number_or_null(ratio));
        cJSON_AddStringToObject(root, "ratio_is",
                                "PyTorch's wall time to the target over sluice's");
        cJSON_AddNumberToObject(root, "target_val_loss", SHAKESPEARE_LOSS);
        cJSON_AddStringToObject(root, "config", o->shakespeare_config);
        cJSON_AddNumberToObject(root, "stages", cfg.pipeline.stages);
        cJSON_AddStringToObject(root, "schedule", cfg.pipeline.schedule);
        cJSON_AddNumberToObject(root, "steps", cfg.train.steps);
        cJSON_AddNumberToObject(root, "cores", (double)sysconf(_SC_NPROCESSORS_ONLN));
        cJSON_AddItemToObject(root, "sluice", side_json(&sl, t_sl, at_sl));
        cJSON *tj = side_json(&th, t_th, at_th);
        cJSON_AddItemToObject(tj, "version",
                              version[0] ? cJSON_CreateString(version) : cJSON_CreateNull());
        cJSON_AddNumberToObject(tj, "threads", threads);
        cJSON_AddItemToObject(root, "torch", tj);
        sl_bench_print_json(root);
    } else {
        printf("sluice bench train --model gpt --shakespeare  (%s, %ld cores)\n\n",
               o->shakespeare_config, sysconf(_SC_NPROCESSORS_ONLN));
        printf("GPT: vocab %d, block %d, %d layers, %d heads, %d wide; batch %d, %d steps, "
               "evaluation every %d steps over %d batches\n",
               cfg.model.gpt.vocab_size, cfg.model.gpt.block_size, cfg.model.gpt.n_layer,
               cfg.model.gpt.n_head, cfg.model.gpt.n_embd, cfg.train.batch, cfg.train.steps,
               cfg.eval.interval, cfg.eval.iters);
        printf("  %-34s %22s %10s %11s\n", "", "to val loss 1.90", "final val", "wall time");
        char who[96];
        snprintf(who, sizeof who, "sluice (%d stages, %s)", cfg.pipeline.stages,
                 cfg.pipeline.schedule);
        side_row(who, &sl, t_sl, at_sl);
        if (th.nevals) {
            snprintf(who, sizeof who, "PyTorch %s (1 process, %d thr.)", version, threads);
            side_row(who, &th, t_th, at_th);
            if (isfinite(ratio))
                printf("  PyTorch's time to the target over sluice's: %.2fx\n", ratio);
            else
                printf("  no ratio: the target was not reached on both sides\n");
        } else {
            printf("  PyTorch: %s; no ratio\n", th.note);
        }
    }
    sl_config_free(&cfg);
    return 0;
}

int sl__bench_train_gpt_shakespeare(const char *config, const char *python, int no_torch, int json,
                                    const char *tmp)
{
    struct options o = {
        .python = python, .no_torch = no_torch, .json = json, .shakespeare_config = config};
    return shakespeare(&o, tmp);
}

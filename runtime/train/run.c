/* Following a run: the ranks' reports, progress, metrics, checkpoints and the outputs at the end.
 * See train.h for what lands in output.dir. */
#define _GNU_SOURCE /* strsignal */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "core/core.h"
#include "runtime/train/train_impl.h"

/* ------------------------------------------------------------------------------------------------
 * Checks before any rank starts, and the run's state */

static int check_devices(const sl_plan *p)
{
    const sl_device_info *infos;
    size_t count;
    SL_TRY(sl_device_list(&infos, &count));
    for (int r = 0; r < p->ranks; r++) {
        const char *id = p->rank[r].device;
        bool found = false;
        for (size_t i = 0; i < count && !found; i++) found = !strcmp(infos[i].id, id);
        if (found) continue;
        char ids[512] = "";
        for (size_t i = 0; i < count; i++) {
            size_t used = strlen(ids);
            snprintf(ids + used, sizeof ids - used, "%s%s", i ? ", " : "", infos[i].id);
        }
        return sl_fail(SL_ECONFIG,
                       "config: devices: rank %d's device '%s' does not exist here; "
                       "the devices are: %s (see `sluice devices`)",
                       r, id, ids);
    }
    return SL_OK;
}

static int check_keys(const sl_plan *p)
{
    const char *dir = p->cfg.launch.keys;
    for (int r = 0; dir && r < p->ranks; r++) {
        char path[4096];
        sl_run_path(path, sizeof path, dir, SL_RUN_PUBLIC_KEY, r, 0);
        if (access(path, R_OK) != 0)
            return sl_fail(SL_ECONFIG,
                           "config: launch.keys: %s is missing: make one key pair per "
                           "rank with `sluice keys -n %d --out %s`",
                           path, p->ranks, dir);
    }
    return SL_OK;
}

int sl__run_open(sl__run *r, const sl_plan *plan, const sl_train_options *opt)
{
    const sl_config *cfg = &plan->cfg;
    int nstages = plan->part.nstages;
    *r = (sl__run){.plan = plan,
                   .cfg = cfg,
                   .opt = opt,
                   .t_start = sl_now(),
                   .val_loss = NAN,
                   .train_loss = NAN,
                   .lock_fd = -1,
                   .metrics_fd = -1,
                   .tty = isatty(STDERR_FILENO)};
    SL_TRY(check_devices(plan));
    SL_TRY(sl_plan_check_memory(plan));
    SL_TRY(sl_data_load(cfg, plan->model.outputs, &r->data));
    sl_weights w;
    SL_TRY(sl_weights_from_config(cfg, &plan->model, &w));
    sl_weights_free(&w);
    SL_TRY(check_keys(plan));
    SL_TRY(sl__output_open(r));
    char path[4096];
    if (sl_data_vocab_size(&r->data) > 0) {
        sl_run_path(path, sizeof path, cfg->output.dir, SL_RUN_VOCAB, 0, 0);
        SL_TRY(sl_data_write_vocab(&r->data, path));
    }
    size_t nranks = (size_t)r->plan->ranks;
    if (!(r->stage_f = sl_alloc(sizeof(double) * (4 * (size_t)nstages + nranks)))) return SL_ENOMEM;
    r->stage_b = r->stage_f + nstages;
    r->stage_i = r->stage_b + nstages;
    r->stage_w = r->stage_i + nstages;
    r->rank_opt = r->stage_w + nstages;
    int every = cfg->output.checkpoint_interval;
    if (every > 0 &&
        !(r->checkpoints = sl_alloc(sizeof(int) * (size_t)(cfg->train.steps / every + 1))))
        return SL_ENOMEM;
    return sl__trace_init(&r->trace);
}

void sl__run_close(sl__run *r)
{
    if (r->tty && r->opt && r->opt->progress && r->steps_seen &&
        r->steps_seen < r->cfg->train.steps)
        fputc('\n', stderr);
    sl__output_close(r);
    sl__trace_free(&r->trace);
    sl_data_free(&r->data);
    free(r->stage_f);
    free(r->checkpoints);
    memset(r, 0, sizeof *r);
}

int sl__write_json(const sl__run *r, enum sl_run_file file, const cJSON *obj)
{
    char path[4096];
    sl_run_path(path, sizeof path, r->cfg->output.dir, file, 0, 0);
    char *text = cJSON_Print(obj);
    if (!text) return sl_fail(SL_ENOMEM, "out of memory writing %s", path);
    size_t len = strlen(text);
    text[len] = '\n'; /* cJSON_Print's terminator becomes the file's last newline */
    int rc = sl_write_file(path, text, len + 1, 0644);
    free(text);
    return rc;
}

/* ------------------------------------------------------------------------------------------------
 * Weights from the ranks */

/* Takes each model stage's weights from the file its rank left in the weights directory. */
static int merge_weights(const sl__run *r, sl_weights *out)
{
    const sl_plan *p = r->plan;
    SL_TRY(sl_weights_alloc(&p->model, out));
    int rc = SL_OK;
    for (int rank = 0; rank < p->ranks && rc == SL_OK; rank++) {
        char path[4096];
        sl_run_path(path, sizeof path, r->weights_dir, SL_RUN_RANK_WEIGHTS, rank, -1);
        sl_weights w;
        rc = sl_weights_load(&p->model, path, &w);
        unlink(path);
        for (int s = 0; rc == SL_OK && s < p->part.nstages; s++)
            if (sl_partition_rank(&p->part, s) == rank)
                sl_weights_copy_layers(&p->model, p->part.stages[s].first, p->part.stages[s].last,
                                       &w, out);
        if (rc == SL_OK) sl_weights_free(&w);
    }
    if (rc != SL_OK) sl_weights_free(out);
    return rc;
}

/* ------------------------------------------------------------------------------------------------
 * Reports */

static void progress(sl__run *r, int step, double loss, double sps)
{
    int steps = r->cfg->train.steps;
    if (!r->opt->progress) return;
    if (r->tty) {
        int width = 30, done = (int)((double)(step + 1) / steps * width);
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < done ? '=' : (i == done ? '>' : ' ');
        bar[width] = '\0';
        double elapsed = sl_now() - r->t_start;
        double eta = elapsed / (step + 1) * (steps - step - 1);
        char val[32] = "";
        if (!isnan(r->val_loss)) snprintf(val, sizeof val, " val %.4f", r->val_loss);
        fprintf(stderr, "\r  step %*d/%d [%s] loss %.4f%s  %.0f samples/s  ETA %.0fs ",
                (int)snprintf(NULL, 0, "%d", steps), step + 1, steps, bar, loss, val, sps, eta);
        if (step + 1 == steps) fputc('\n', stderr);
        fflush(stderr);
    } else {
        int every = steps >= 20 ? steps / 10 : 1;
        char val[32] = "";
        if (!isnan(r->val_loss)) snprintf(val, sizeof val, "  val %.4f", r->val_loss);
        if ((step + 1) % every == 0 || step == 0 || step + 1 == steps)
            fprintf(stderr, "  step %d/%d  loss %.4f%s  %.0f samples/s\n", step + 1, steps, loss,
                    val, sps);
    }
}

static const char *str(const cJSON *o, const char *key)
{
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(o, key));
    return v ? v : "?";
}

static double num(const cJSON *o, const char *key)
{
    return cJSON_GetNumberValue(cJSON_GetObjectItem(o, key));
}

static int on_step(sl__run *r, int step, const cJSON *o)
{
    double loss = num(o, "loss"), t = num(o, "t");
    bool first = step == r->start_step;
    double dt = first ? t : t - r->last_t;
    double sps = dt > 0 ? r->cfg->train.batch / dt : 0.0;
    if (first) r->first_t = t;
    r->last_t = t;
    r->last_loss = loss;
    r->steps_seen = step + 1;
    /* lr and grad_norm follow the original four keys, which readers take in that order. */
    char extra[96] = "";
    const cJSON *lr = cJSON_GetObjectItem(o, "lr"), *norm = cJSON_GetObjectItem(o, "grad_norm");
    int n =
        cJSON_IsNumber(lr) ? snprintf(extra, sizeof extra, ", \"lr\": %.9g", lr->valuedouble) : 0;
    if (cJSON_IsNumber(norm))
        snprintf(extra + n, sizeof extra - (size_t)n, ", \"grad_norm\": %.9g", norm->valuedouble);
    SL_TRY(sl__metrics_line(
        r, "{\"step\": %d, \"loss\": %.9g, \"samples_per_s\": %.6g, \"time_s\": %.6g%s}", step,
        loss, sps, t, extra));
    progress(r, step, loss, sps);
    return SL_OK;
}

/* An evaluation after `step` (the last rank's): its own metrics line. The progress line shows the
 * latest val loss from the next step on (and the last one's at the end of the run). */
static int on_eval(sl__run *r, int step, const cJSON *o)
{
    const cJSON *val = cJSON_GetObjectItem(o, "val_loss"),
                *tr = cJSON_GetObjectItem(o, "train_loss");
    r->val_loss = cJSON_IsNumber(val) ? val->valuedouble : NAN;
    r->train_loss = cJSON_IsNumber(tr) ? tr->valuedouble : NAN;
    r->evals_seen++;
    char vl[40] = "", tl[40] = "";
    if (!isnan(r->val_loss)) snprintf(vl, sizeof vl, ", \"val_loss\": %.9g", r->val_loss);
    if (!isnan(r->train_loss)) snprintf(tl, sizeof tl, ", \"train_loss\": %.9g", r->train_loss);
    SL_TRY(sl__metrics_line(r, "{\"step\": %d%s%s}", step, vl, tl));
    if (r->opt->progress && !isnan(r->val_loss) && step + 1 == r->cfg->train.steps)
        fprintf(stderr, "  eval after step %d  val %.4f  train %.4f\n", step + 1, r->val_loss,
                r->train_loss);
    return SL_OK;
}

/* A rank stops after `step` steps because a signal asked the run to (exec.h): every rank says so
 * before its part of that step's checkpoint. */
static void on_stop(sl__run *r, int step, const cJSON *o)
{
    int sig = sl_to_int(num(o, "signal"), 0);
    if (sig == SIGUSR1 || sig <= 0) sig = sl_launch_signal(); /* a local run's relay */
    r->stop_signal = SL_MAX(r->stop_signal, sig);
    if (r->stopped_at) return;
    r->stopped_at = step;
    if (!r->opt->progress) return;
    if (r->tty && r->steps_seen) fputc('\n', stderr);
    fprintf(stderr, "  %s: the ranks stop after step %d%s\n",
            r->stop_signal > 0 ? strsignal(r->stop_signal) : "interrupted", step,
            r->cfg->output.checkpoint_interval > 0 ? ", writing its checkpoint" : "");
}

/* The ranks' parts of the checkpoint after `step` steps: the last one to arrive completes it. */
static int on_checkpoint(sl__run *r, int step)
{
    int every = r->cfg->output.checkpoint_interval, steps = r->cfg->train.steps;
    if (every <= 0 || step <= 0 || step >= steps) return SL_OK;
    int *count = step % every == 0       ? &r->checkpoints[step / every]
                 : step == r->stopped_at ? &r->stop_parts
                                         : NULL;
    if (!count || ++*count != r->plan->ranks) return SL_OK;
    SL_TRY(sl__checkpoint_write(r, step));
    if (r->opt->progress && step == r->stopped_at)
        fprintf(stderr, "  checkpoint-%d written: go on with --resume\n", step);
    return SL_OK;
}

static void on_done(sl__run *r, int rank, const cJSON *o)
{
    sl__rank_info *ri = &r->ranks[rank];
    snprintf(ri->device, sizeof ri->device, "%s", str(o, "device"));
    snprintf(ri->device_name, sizeof ri->device_name, "%s", str(o, "device_name"));
    ri->peak_bytes = num(o, "peak_bytes");
    ri->peak_stash_bytes = num(o, "peak_stash_bytes");
    ri->busy_s = num(o, "busy_s");
    ri->wall_s = num(o, "wall_s");
    ri->transfer_s = num(o, "transfer_s");
    r->rank_opt[rank] = num(o, "opt_ms");
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(o, "stages"))
    {
        int stage = sl_to_int(num(s, "stage"), -1);
        if (stage < 0 || stage >= r->plan->part.nstages) continue;
        r->stage_f[stage] = num(s, "f_ms");
        r->stage_b[stage] = num(s, "b_ms");
        r->stage_i[stage] = num(s, "i_ms");
        r->stage_w[stage] = num(s, "w_ms");
    }
}

int sl__run_on_report(void *ctx, const char *json, size_t len)
{
    sl__run *r = ctx;
    cJSON *o = cJSON_ParseWithLength(json, len);
    if (!o) return sl_fail(SL_EPROTOCOL, "a rank sent a report that is not JSON");
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(o, "type"));
    int rank = sl_to_int(num(o, "rank"), -1), step = sl_to_int(num(o, "step"), -1);
    int steps = r->cfg->train.steps;
    int rc = SL_OK;
    if (!type || rank < 0 || rank >= r->plan->ranks) {
        rc = sl_fail(SL_EPROTOCOL, "a rank sent a report without type or rank");
    } else if (!strcmp(type, "step") && (step < 0 || step >= steps)) {
        rc = sl_fail(SL_EPROTOCOL, "rank %d reported a step outside 0..%d", rank, steps - 1);
    } else if (!strcmp(type, "step")) {
        rc = on_step(r, step, o);
    } else if (!strcmp(type, "eval") && (step < 0 || step >= steps)) {
        rc = sl_fail(SL_EPROTOCOL, "rank %d reported an evaluation after a step outside 0..%d",
                     rank, steps - 1);
    } else if (!strcmp(type, "eval")) {
        rc = on_eval(r, step, o);
    } else if (!strcmp(type, "done")) {
        on_done(r, rank, o);
    } else if (!strcmp(type, "stop")) {
        on_stop(r, step, o);
    } else if (!strcmp(type, "checkpoint")) {
        rc = on_checkpoint(r, step);
    } else if (!strcmp(type, "trace")) {
        sl__trace_add(&r->trace, rank, cJSON_GetObjectItem(o, "events"));
    }
    cJSON_Delete(o);
    return rc;
}

/* ------------------------------------------------------------------------------------------------
 * Outputs at the end */

/* Evaluates the merged model on the test rows, on the CPU. */
static int evaluate(const sl__run *r, const sl_weights *w, sl_train_summary *out)
{
    out->eval_loss = out->eval_accuracy = NAN;
    if (r->data.test.rows == 0) return SL_OK;
    const sl_model *m = &r->plan->model;
    sl_device *cpu = NULL;
    sl_stage *st = NULL;
    int rc = sl_device_open("cpu", &cpu);
    if (rc == SL_OK) rc = sl_stage_create(cpu, m, 0, m->nlayers, w, &st);
    if (rc == SL_OK)
        rc = sl_evaluate(&st, 1, &r->data.test, 256, &out->eval_loss, &out->eval_accuracy);
    sl_stage_free(st);
    sl_device_close(cpu);
    return rc;
}

/* The simulator's bubble ratio and step time (ms) for the per-stage costs the ranks measured
 * (NaN when a stage has none). */
static double predicted_bubble(const sl__run *r, double *step_ms)
{
    const sl_schedule *sched = r->plan->sched;
    *step_ms = NAN;
    double *b = sl_alloc(sizeof(double) * (size_t)sched->stages);
    if (!b) return NAN;
    for (int i = 0; i < sched->stages; i++) {
        b[i] = sl_schedule_whole_backward(r->stage_b[i], r->stage_i[i], r->stage_w[i]);
        if (!(r->stage_f[i] > 0 && b[i] > 0)) {
            free(b);
            return NAN;
        }
    }
    sl_schedule_costs costs = {.stage_f = r->stage_f,
                               .stage_b = b,
                               .stage_w = sched->split_backward ? r->stage_w : NULL,
                               .rank_opt = r->rank_opt,
                               .queue_depth = sl_plan_link_depth(r->plan)};
    sl_schedule_sim sim;
    int rc = sl_schedule_simulate(sched, &costs, &sim);
    free(b);
    if (rc != SL_OK) {
        sl_clear_error();
        return NAN;
    }
    double bubble = sim.bubble_ratio;
    *step_ms = sim.makespan;
    sl_schedule_sim_free(&sim);
    return bubble;
}

/* Each rank's most bytes of stashes and stage inputs held at once, as the simulator predicts them
 * from the layer table (NULL when it cannot: the caller leaves the field out). */
static double *predicted_stash_bytes(const sl__run *r)
{
    const sl_plan *p = r->plan;
    const int S = p->sched->stages;
    double *bytes = sl_alloc(sizeof(double) * (size_t)(2 * S));
    double *out = sl_alloc(sizeof(double) * (size_t)p->ranks);
    sl_schedule_sim sim = {0};
    int rc = bytes && out ? SL_OK : SL_ENOMEM;
    if (rc == SL_OK) sl_plan_stage_bytes(p, bytes, bytes + S);
    sl_schedule_costs costs = {.stage_stash_bytes = bytes, .stage_input_bytes = bytes + S};
    if (rc == SL_OK) rc = sl_schedule_simulate(p->sched, &costs, &sim);
    for (int i = 0; rc == SL_OK && i < p->ranks; i++) out[i] = sim.peak_bytes[i];
    sl_schedule_sim_free(&sim);
    free(bytes);
    if (rc == SL_OK) return out;
    free(out);
    return NULL;
}

static int write_summary(const sl__run *r, sl_train_summary *s)
{
    const sl_config *cfg = r->cfg;
    int ranks = r->plan->ranks;
    double busy = 0, wall = 0;
    for (int i = 0; i < ranks; i++) {
        busy += r->ranks[i].busy_s;
        wall = SL_MAX(wall, r->ranks[i].wall_s);
    }
    s->bubble_measured = wall > 0 ? 1.0 - busy / (ranks * wall) : NAN;
    double step_ms;
    s->bubble_predicted = predicted_bubble(r, &step_ms);

    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "steps", s->steps);
    cJSON_AddNumberToObject(o, "final_loss", s->final_loss);
    if (!isnan(s->val_loss)) cJSON_AddNumberToObject(o, "val_loss", s->val_loss);
    if (!isnan(s->train_loss)) cJSON_AddNumberToObject(o, "train_loss", s->train_loss);
    if (!isnan(s->eval_loss)) {
        cJSON_AddNumberToObject(o, "eval_loss", s->eval_loss);
        if (cfg->model.loss == SL_LOSS_CROSS_ENTROPY)
            cJSON_AddNumberToObject(o, "eval_accuracy", s->eval_accuracy);
    }
    cJSON_AddNumberToObject(o, "samples_per_s", s->samples_per_s);
    cJSON_AddStringToObject(o, "schedule", cfg->pipeline.schedule);
    cJSON_AddNumberToObject(o, "stages", ranks);
    cJSON_AddNumberToObject(o, "chunks", cfg->pipeline.chunks);
    cJSON_AddNumberToObject(o, "microbatches", cfg->train.microbatches);
    cJSON_AddBoolToObject(o, "recompute", cfg->pipeline.recompute);
    if (!isnan(s->bubble_measured))
        cJSON_AddNumberToObject(o, "bubble_ratio_measured", s->bubble_measured);
    if (!isnan(s->bubble_predicted))
        cJSON_AddNumberToObject(o, "bubble_ratio_predicted", s->bubble_predicted);
    /* The step time measured (after the first step) beside the simulator's for the measured
     * costs: what the schedule alone would take; the difference is transfers and the runtime. */
    if (r->steps_seen > 1 && r->last_t > r->first_t)
        cJSON_AddNumberToObject(o, "step_time_measured_s",
                                (r->last_t - r->first_t) / (r->steps_seen - 1));
    if (!isnan(step_ms)) cJSON_AddNumberToObject(o, "step_time_predicted_s", step_ms / 1e3);
    double *stash = predicted_stash_bytes(r);
    cJSON *arr = cJSON_AddArrayToObject(o, "ranks");
    for (int i = 0; i < ranks; i++) {
        cJSON *ri = cJSON_CreateObject();
        cJSON_AddNumberToObject(ri, "rank", i);
        cJSON_AddStringToObject(ri, "device", r->ranks[i].device);
        cJSON_AddStringToObject(ri, "device_name", r->ranks[i].device_name);
        cJSON_AddNumberToObject(ri, "peak_memory_bytes", r->ranks[i].peak_bytes);
        cJSON_AddNumberToObject(ri, "stash_bytes_measured", r->ranks[i].peak_stash_bytes);
        if (stash) cJSON_AddNumberToObject(ri, "stash_bytes_predicted", stash[i]);
        /* busy: compute actions; transfer: SEND/RECV actions and the messages of TIED, SYNC and
         * NORM (a wait for a neighbour included); runtime: the executor between actions; idle =
         * wall - busy, the bubble's share. */
        const sl__rank_info *k = &r->ranks[i];
        cJSON_AddNumberToObject(ri, "busy_s", k->busy_s);
        cJSON_AddNumberToObject(ri, "idle_s", k->wall_s - k->busy_s);
        cJSON_AddNumberToObject(ri, "transfer_s", k->transfer_s);
        cJSON_AddNumberToObject(ri, "runtime_s", k->wall_s - k->busy_s - k->transfer_s);
        cJSON_AddNumberToObject(ri, "wall_s", k->wall_s);
        cJSON_AddNumberToObject(ri, "opt_ms", r->rank_opt[i]);
        cJSON_AddItemToArray(arr, ri);
    }
    free(stash);
    int rc = sl__write_json(r, SL_RUN_SUMMARY, o);
    cJSON_Delete(o);
    return rc;
}

int sl__run_finish(sl__run *r, sl_train_summary *out)
{
    const sl_config *cfg = r->cfg;
    out->interrupted = r->stopped_at ? SL_MAX(r->stop_signal, 1) : 0;
    out->checkpoint = r->last_checkpoint;
    out->steps = r->steps_seen;
    out->final_loss = r->last_loss;
    out->val_loss = r->val_loss;
    out->train_loss = r->train_loss;
    out->eval_loss = out->eval_accuracy = NAN;
    /* A stopped run leaves its checkpoint: the final weights and summary are a whole run's. */
    if (r->stopped_at) return SL_OK;
    sl_weights w = {0};
    int rc = merge_weights(r, &w);
    if (rc == SL_OK) {
        char path[4096];
        sl_run_path(path, sizeof path, cfg->output.dir, SL_RUN_FINAL, 0, 0);
        rc = sl_weights_save(&r->plan->model, &w, path);
    }
    double span = r->last_t - r->first_t;
    /* The first step includes kernel builds and connections: time the rest when there is any. */
    int timed = r->steps_seen - r->start_step;
    out->samples_per_s = timed > 1 && span > 0 ? (double)(timed - 1) * cfg->train.batch / span
                                               : (r->last_t > 0 ? cfg->train.batch / r->last_t : 0);
    if (rc == SL_OK) rc = evaluate(r, &w, out);
    if (rc == SL_OK) rc = write_summary(r, out);
    if (rc == SL_OK) rc = sl__trace_write(&r->trace, r);
    if (w.data) sl_weights_free(&w);
    return rc;
}

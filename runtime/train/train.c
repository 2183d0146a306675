/* The coordinator of a training run. See train.h. */
#define _GNU_SOURCE
#include "runtime/train/train.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/backend.h"
#include "runtime/data/data.h"
#include "runtime/exec/exec.h"
#include "runtime/launch/launch.h"
#include "runtime/model/model.h"
#include "runtime/schedule/schedule.h"
#include "transport/transport.h"

/* ------------------------------------------------------------------------------------------------
 * Checks before any rank starts */

static int check_devices(const sl_config *cfg)
{
    const sl_device_info *infos;
    size_t count;
    SL_TRY(sl_device_list(&infos, &count));
    for (int r = 0; r < cfg->pipeline.stages; r++) {
        const char *id = sl_config_device(cfg, r);
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

int sl_train_check(const sl_config *cfg)
{
    sl_model model = {0};
    sl_partition part = {0};
    sl_schedule *sched = NULL;
    sl_data data = {0};
    sl_weights w = {0};
    int rc = sl_model_init(cfg, &model);
    if (rc == SL_OK) rc = sl_partition_from_config(cfg, &model, &part);
    if (rc == SL_OK) {
        rc = sl_exec_schedule(cfg, &sched);
        if (rc != SL_OK)
            rc = sl_fail_context(SL_ECONFIG, "config: pipeline");
        else if ((rc = sl_schedule_validate(sched, 0)) != SL_OK)
            rc = sl_fail_context(rc, "the %s schedule", cfg->pipeline.schedule);
    }
    if (rc == SL_OK) rc = sl_data_load(cfg, model.outputs, &data);
    if (rc == SL_OK) rc = sl_weights_from_config(cfg, &model, &w);
    if (rc == SL_OK) rc = check_devices(cfg);
    for (int r = 0; rc == SL_OK && cfg->launch.keys && r < cfg->pipeline.stages; r++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/rank%d.pub", cfg->launch.keys, r);
        if (access(path, R_OK) != 0)
            rc = sl_fail(SL_ECONFIG,
                         "config: launch.keys: %s is missing: make one key pair per "
                         "rank with `sluice keys -n %d --out %s`",
                         path, cfg->pipeline.stages, cfg->launch.keys);
    }
    sl_weights_free(&w);
    sl_data_free(&data);
    sl_schedule_free(sched);
    sl_partition_free(&part);
    sl_model_free(&model);
    return rc;
}

/* ------------------------------------------------------------------------------------------------
 * Following the ranks */

#define MAX_RANKS 256

typedef struct rank_info {
    bool done;
    char device[32], device_name[256];
    double peak_bytes, busy_s, wall_s;
} rank_info;

typedef struct run {
    const sl_config *cfg;
    const sl_train_options *opt;
    FILE *metrics;
    int steps_seen;
    double last_t, first_t;
    double last_loss;
    double t_start;
    bool tty;
    rank_info ranks[MAX_RANKS];
    double *stage_f, *stage_b, *stage_w; /* measured ms per model stage */
    cJSON *trace_events;
    double trace_t0;
    const char *weights_dir; /* where ranks leave their weights */
    int *checkpoints;        /* ranks that reported each checkpoint, by step / interval */
} run;

static int write_checkpoint(run *r, int step);

static void progress(run *r, int step, double loss, double sps)
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
        fprintf(stderr, "\r  step %*d/%d [%s] loss %.4f  %.0f samples/s  ETA %.0fs ",
                (int)snprintf(NULL, 0, "%d", steps), step + 1, steps, bar, loss, sps, eta);
        if (step + 1 == steps) fputc('\n', stderr);
        fflush(stderr);
    } else {
        int every = steps >= 20 ? steps / 10 : 1;
        if ((step + 1) % every == 0 || step == 0 || step + 1 == steps)
            fprintf(stderr, "  step %d/%d  loss %.4f  %.0f samples/s\n", step + 1, steps, loss,
                    sps);
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

static int on_report(void *ctx, const char *json, size_t len)
{
    run *r = ctx;
    cJSON *o = cJSON_ParseWithLength(json, len);
    if (!o) return sl_fail(SL_EPROTOCOL, "a rank sent a report that is not JSON");
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(o, "type"));
    int rank = sl_to_int(num(o, "rank"), -1), step = sl_to_int(num(o, "step"), -1);
    int rc = SL_OK;
    if (!type || rank < 0 || rank >= MAX_RANKS) {
        rc = sl_fail(SL_EPROTOCOL, "a rank sent a report without type or rank");
    } else if (!strcmp(type, "step") && (step < 0 || step >= r->cfg->train.steps)) {
        rc = sl_fail(SL_EPROTOCOL, "rank %d reported a step outside 0..%d", rank,
                     r->cfg->train.steps - 1);
    } else if (!strcmp(type, "step")) {
        double loss = num(o, "loss"), t = num(o, "t");
        double dt = step == 0 ? t : t - r->last_t;
        double sps = dt > 0 ? r->cfg->train.batch / dt : 0.0;
        if (step == 0) r->first_t = t;
        r->last_t = t;
        r->last_loss = loss;
        r->steps_seen = step + 1;
        fprintf(r->metrics,
                "{\"step\": %d, \"loss\": %.9g, \"samples_per_s\": %.6g, \"time_s\": %.6g}\n", step,
                loss, sps, t);
        progress(r, step, loss, sps);
    } else if (!strcmp(type, "done")) {
        rank_info *ri = &r->ranks[rank];
        ri->done = true;
        snprintf(ri->device, sizeof ri->device, "%s", str(o, "device"));
        snprintf(ri->device_name, sizeof ri->device_name, "%s", str(o, "device_name"));
        ri->peak_bytes = num(o, "peak_bytes");
        ri->busy_s = num(o, "busy_s");
        ri->wall_s = num(o, "wall_s");
        const cJSON *s;
        cJSON_ArrayForEach(s, cJSON_GetObjectItem(o, "stages"))
        {
            int stage = sl_to_int(num(s, "stage"), -1);
            if (stage < 0 || stage >= r->cfg->pipeline.stages * r->cfg->pipeline.chunks) continue;
            r->stage_f[stage] = num(s, "f_ms");
            r->stage_b[stage] = num(s, "b_ms");
            r->stage_w[stage] = num(s, "w_ms");
        }
    } else if (!strcmp(type, "checkpoint")) {
        int every = r->cfg->output.checkpoint_interval;
        if (every > 0 && step > 0 && step % every == 0 && step < r->cfg->train.steps &&
            ++r->checkpoints[step / every] == r->cfg->pipeline.stages)
            rc = write_checkpoint(r, step);
    } else if (!strcmp(type, "trace")) {
        const cJSON *ev;
        cJSON_ArrayForEach(ev, cJSON_GetObjectItem(o, "events"))
        {
            const char *name = cJSON_GetStringValue(cJSON_GetArrayItem(ev, 0));
            double ts = cJSON_GetNumberValue(cJSON_GetArrayItem(ev, 1));
            double dur = cJSON_GetNumberValue(cJSON_GetArrayItem(ev, 2));
            if (!name) continue;
            if (r->trace_t0 == 0 || ts < r->trace_t0) r->trace_t0 = ts;
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", name);
            bool comm = !strncmp(name, "SEND", 4) || !strncmp(name, "RECV", 4);
            cJSON_AddStringToObject(e, "cat", comm ? "comm" : "compute");
            cJSON_AddStringToObject(e, "ph", "X");
            cJSON_AddNumberToObject(e, "pid", 0);
            cJSON_AddNumberToObject(e, "tid", rank);
            cJSON_AddNumberToObject(e, "ts", ts);
            cJSON_AddNumberToObject(e, "dur", dur);
            cJSON_AddItemToArray(r->trace_events, e);
        }
    }
    cJSON_Delete(o);
    return rc;
}

/* ------------------------------------------------------------------------------------------------
 * Outputs */

static int write_json(const char *dir, const char *name, cJSON *obj)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = cJSON_Print(obj);
    if (!text) return sl_fail(SL_ENOMEM, "out of memory writing %s", path);
    size_t len = strlen(text);
    text[len] = '\n'; /* cJSON_Print's terminator becomes the file's last newline */
    int rc = sl_write_file(path, text, len + 1, 0644);
    free(text);
    return rc;
}

static int write_trace(run *r)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *events = r->trace_events;
    r->trace_events = NULL;
    cJSON *e;
    cJSON_ArrayForEach(e, events)
    {
        cJSON *ts = cJSON_GetObjectItem(e, "ts");
        cJSON_SetNumberValue(ts, cJSON_GetNumberValue(ts) - r->trace_t0);
    }
    for (int rank = 0; rank < r->cfg->pipeline.stages; rank++) {
        cJSON *m = cJSON_CreateObject();
        char name[128];
        snprintf(name, sizeof name, "rank %d (%s)", rank, r->ranks[rank].device);
        cJSON_AddStringToObject(m, "name", "thread_name");
        cJSON_AddStringToObject(m, "ph", "M");
        cJSON_AddNumberToObject(m, "pid", 0);
        cJSON_AddNumberToObject(m, "tid", rank);
        cJSON_AddItemToObject(m, "args", cJSON_CreateObject());
        cJSON_AddStringToObject(cJSON_GetObjectItem(m, "args"), "name", name);
        cJSON_AddItemToArray(events, m);
    }
    cJSON_AddItemToObject(root, "traceEvents", events);
    cJSON_AddStringToObject(root, "displayTimeUnit", "ms");
    int rc = write_json(r->cfg->output.dir, "trace.json", root);
    cJSON_Delete(root);
    return rc;
}

/* Takes each layer's weights from the rank that trained it. */
static int merge_weights(const sl_config *cfg, const char *run_dir, int step, const sl_model *m,
                         const sl_partition *part, sl_weights *out)
{
    SL_TRY(sl_weights_alloc(m, out));
    int rc = SL_OK;
    for (int rank = 0; rank < cfg->pipeline.stages && rc == SL_OK; rank++) {
        char path[1200];
        sl_exec_weights_path(path, sizeof path, run_dir, rank, step);
        sl_weights w;
        rc = sl_weights_load(m, path, &w);
        unlink(path);
        for (int s = 0; rc == SL_OK && s < part->nstages; s++)
            if (sl_partition_rank(part, s) == rank)
                sl_weights_copy_layers(m, part->stages[s].first, part->stages[s].last, &w, out);
        if (rc == SL_OK) sl_weights_free(&w);
    }
    if (rc != SL_OK) sl_weights_free(out);
    return rc;
}

/* Merges the ranks' weights after `step` steps into output.dir/checkpoint-<step>.safetensors. */
static int write_checkpoint(run *r, int step)
{
    sl_model model = {0};
    sl_partition part = {0};
    sl_weights w = {0};
    char path[1200];
    snprintf(path, sizeof path, "%s/checkpoint-%d.safetensors", r->cfg->output.dir, step);
    int rc = sl_model_init(r->cfg, &model);
    if (rc == SL_OK) rc = sl_partition_from_config(r->cfg, &model, &part);
    if (rc == SL_OK) rc = merge_weights(r->cfg, r->weights_dir, step, &model, &part, &w);
    if (rc == SL_OK) rc = sl_weights_save(&model, &w, path);
    if (rc == SL_OK) sl_weights_free(&w);
    sl_partition_free(&part);
    sl_model_free(&model);
    return rc == SL_OK ? SL_OK : sl_fail_context(rc, "writing checkpoint %s", path);
}

/* Evaluates the merged model on the test rows, on the CPU. */
static int evaluate(const sl_config *cfg, const sl_model *m, const sl_weights *w,
                    sl_train_summary *out)
{
    out->eval_loss = out->eval_accuracy = NAN;
    sl_data data;
    SL_TRY(sl_data_load(cfg, m->outputs, &data));
    int rc = SL_OK;
    if (data.test.rows > 0) {
        sl_device *cpu = NULL;
        sl_stage *st = NULL;
        rc = sl_device_open("cpu", &cpu);
        if (rc == SL_OK) rc = sl_stage_create(cpu, m, 0, m->nlayers, w, &st);
        if (rc == SL_OK)
            rc = sl_evaluate(&st, 1, &data.test, 256, &out->eval_loss, &out->eval_accuracy);
        sl_stage_free(st);
        sl_device_close(cpu);
    }
    sl_data_free(&data);
    return rc;
}

static int write_summary(run *r, const sl_schedule *sched, sl_train_summary *s)
{
    const sl_config *cfg = r->cfg;
    int ranks = cfg->pipeline.stages;
    double busy = 0, wall = 0;
    for (int i = 0; i < ranks; i++) {
        busy += r->ranks[i].busy_s;
        wall = SL_MAX(wall, r->ranks[i].wall_s);
    }
    s->bubble_measured = wall > 0 ? 1.0 - busy / (ranks * wall) : NAN;
    sl_schedule_costs costs = {.stage_f = r->stage_f,
                               .stage_b = r->stage_b,
                               .stage_w = sched->split_backward ? r->stage_w : NULL};
    sl_schedule_sim sim;
    s->bubble_predicted = NAN;
    bool measured = true;
    for (int i = 0; i < sched->stages; i++)
        measured = measured && r->stage_f[i] > 0 && r->stage_b[i] > 0;
    if (measured && sl_schedule_simulate(sched, &costs, &sim) == SL_OK) {
        s->bubble_predicted = sim.bubble_ratio;
        sl_schedule_sim_free(&sim);
    }

    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "steps", s->steps);
    cJSON_AddNumberToObject(o, "final_loss", s->final_loss);
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
    cJSON *arr = cJSON_AddArrayToObject(o, "ranks");
    for (int i = 0; i < ranks; i++) {
        cJSON *ri = cJSON_CreateObject();
        cJSON_AddNumberToObject(ri, "rank", i);
        cJSON_AddStringToObject(ri, "device", r->ranks[i].device);
        cJSON_AddStringToObject(ri, "device_name", r->ranks[i].device_name);
        cJSON_AddNumberToObject(ri, "peak_memory_bytes", r->ranks[i].peak_bytes);
        cJSON_AddNumberToObject(ri, "busy_s", r->ranks[i].busy_s);
        cJSON_AddItemToArray(arr, ri);
    }
    int rc = write_json(cfg->output.dir, "summary.json", o);
    cJSON_Delete(o);
    return rc;
}

/* ------------------------------------------------------------------------------------------------
 * The run */

static int make_keys(const char *dir, int ranks)
{
    char pub[41];
    for (int r = 0; r < ranks; r++) SL_TRY(sl_transport_write_keypair(dir, r, pub));
    return SL_OK;
}

static int start_ranks(const sl_config *cfg, const sl_train_options *opt, sl_launch *l,
                       uint64_t run_id)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", sl_launch_dir(l));
    char *json = sl_config_to_json(cfg, true);
    if (!json) return sl_fail(SL_ENOMEM, "out of memory writing the run's config");
    if (cfg->launch.curve && !cfg->launch.keys) {
        /* A local run with CURVE and no keys of its own: one key pair per rank, private to the
         * run directory, named in the config the ranks read. */
        int rc = make_keys(sl_launch_dir(l), cfg->pipeline.stages);
        cJSON *root = rc == SL_OK ? cJSON_Parse(json) : NULL;
        free(json);
        if (rc != SL_OK) return rc;
        cJSON_AddStringToObject(cJSON_GetObjectItem(root, "launch"), "keys", sl_launch_dir(l));
        json = cJSON_Print(root);
        cJSON_Delete(root);
        if (!json) return sl_fail(SL_ENOMEM, "out of memory writing the run's config");
    }
    FILE *f = fopen(path, "w");
    int rc = f && fputs(json, f) >= 0 ? SL_OK : sl_fail(SL_EIO, "cannot write %s", path);
    if (f && fclose(f) != 0) rc = sl_fail(SL_EIO, "cannot write %s", path);
    free(json);
    SL_TRY(rc);
    char exe[1024];
    if (opt->exe) {
        snprintf(exe, sizeof exe, "%s", opt->exe);
    } else {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n < 0) return sl_fail(SL_EIO, "cannot find this executable: %s", strerror(errno));
        exe[n] = '\0';
    }
    char id[32];
    snprintf(id, sizeof id, "%" PRIu64, run_id);
    for (int r = 0; r < cfg->pipeline.stages; r++) {
        char rank[16];
        snprintf(rank, sizeof rank, "%d", r);
        char *argv[] = {exe,        "train", "--rank", rank, "--run-dir", (char *)sl_launch_dir(l),
                        "--run-id", id,      NULL};
        SL_TRY(sl_launch_spawn(l, r, argv));
    }
    return SL_OK;
}

static int finish(run *r, const char *weights_dir, sl_train_summary *out)
{
    const sl_config *cfg = r->cfg;
    sl_model model = {0};
    sl_partition part = {0};
    sl_schedule *sched = NULL;
    sl_weights w = {0};
    int rc = sl_model_init(cfg, &model);
    if (rc == SL_OK) rc = sl_partition_from_config(cfg, &model, &part);
    if (rc == SL_OK) rc = merge_weights(cfg, weights_dir, -1, &model, &part, &w);
    if (rc == SL_OK) {
        char path[1200];
        snprintf(path, sizeof path, "%s/final.safetensors", cfg->output.dir);
        rc = sl_weights_save(&model, &w, path);
    }
    out->steps = r->steps_seen;
    out->final_loss = r->last_loss;
    double span = r->last_t - r->first_t;
    /* The first step includes kernel builds and connections: time the rest when there is any. */
    out->samples_per_s = r->steps_seen > 1 && span > 0
                             ? (double)(r->steps_seen - 1) * cfg->train.batch / span
                             : (r->last_t > 0 ? cfg->train.batch / r->last_t : 0);
    if (rc == SL_OK) rc = evaluate(cfg, &model, &w, out);
    if (rc == SL_OK) rc = sl_exec_schedule(cfg, &sched);
    if (rc == SL_OK) rc = write_summary(r, sched, out);
    if (rc == SL_OK) rc = write_trace(r);
    sl_schedule_free(sched);
    sl_weights_free(&w);
    sl_partition_free(&part);
    sl_model_free(&model);
    return rc;
}

static int run_open(run *r, const sl_config *cfg, const sl_train_options *opt)
{
    int nstages = cfg->pipeline.stages * cfg->pipeline.chunks;
    *r = (run){.cfg = cfg, .opt = opt, .t_start = sl_now(), .tty = isatty(STDERR_FILENO)};
    char path[1200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->output.dir);
    r->metrics = fopen(path, "w");
    if (!r->metrics) return sl_fail(SL_EIO, "cannot write '%s': %s", path, strerror(errno));
    r->stage_f = sl_alloc(3 * sizeof(double) * (size_t)nstages);
    r->trace_events = cJSON_CreateArray();
    if (!r->stage_f || !r->trace_events) return SL_ENOMEM;
    r->stage_b = r->stage_f + nstages;
    r->stage_w = r->stage_b + nstages;
    int every = cfg->output.checkpoint_interval;
    if (every > 0 &&
        !(r->checkpoints = sl_alloc(sizeof(int) * (size_t)(cfg->train.steps / every + 1))))
        return SL_ENOMEM;
    return SL_OK;
}

static void run_close(run *r)
{
    if (r->tty && r->opt->progress && r->steps_seen && r->steps_seen < r->cfg->train.steps)
        fputc('\n', stderr);
    if (r->metrics) fclose(r->metrics);
    cJSON_Delete(r->trace_events);
    free(r->stage_f);
    free(r->checkpoints);
}

static uint64_t new_run_id(void)
{
    uint64_t id = 0;
    if (getrandom(&id, sizeof id, 0) != sizeof id) id = (uint64_t)(sl_now() * 1e9);
    return id;
}

int sl_train(const sl_config *cfg, const sl_train_options *opt, sl_train_summary *out)
{
    SL_TRY(sl_train_check(cfg));
    SL_TRY(sl_mkdir_p(cfg->output.dir));
    run r;
    sl_launch *l = NULL;
    int rc = run_open(&r, cfg, opt);
    if (rc == SL_OK) rc = sl_launch_create(opt->keep_run_dir, &l);
    if (rc == SL_OK) r.weights_dir = sl_launch_dir(l);
    if (rc == SL_OK) rc = start_ranks(cfg, opt, l, new_run_id());
    if (rc == SL_OK) rc = sl_launch_wait(l, on_report, &r);
    if (rc == SL_OK) rc = finish(&r, sl_launch_dir(l), out);
    sl_launch_destroy(l);
    run_close(&r);
    return rc;
}

/* ------------------------------------------------------------------------------------------------
 * Under an existing launcher: this process is one rank; rank 0 also coordinates. */

typedef struct coordinator {
    sl_launch *launch;
    run *run;
    int world;
    int status;
    char message[2048];
} coordinator;

static void *coordinate(void *arg)
{
    coordinator *c = arg;
    c->status = sl_launch_wait_reports(c->launch, c->world, on_report, c->run);
    snprintf(c->message, sizeof c->message, "%s", sl_last_error());
    return NULL;
}

int sl_train_launched(const sl_config *cfg, const sl_launch_info *info, const sl_train_options *opt,
                      sl_train_summary *out)
{
    int world = cfg->pipeline.stages, rank = info->rank;
    if (info->world != world)
        return sl_fail(SL_ECONFIG,
                       "%s started %d ranks but pipeline.stages is %d: start one rank "
                       "per pipeline stage",
                       sl_launcher_name(info->launcher), info->world, world);
    SL_TRY(sl_train_check(cfg));
    SL_TRY(sl_mkdir_p(cfg->output.dir));
    char master[300], host[256], bind[300], advertise[300];
    int port;
    SL_TRY(sl_rendezvous_master(master, sizeof master));
    if (cfg->launch.nendpoints > 0) {
        snprintf(bind, sizeof bind, "%s", cfg->launch.endpoints[rank]);
        snprintf(advertise, sizeof advertise, "%s", cfg->launch.endpoints[rank]);
    } else {
        SL_TRY(sl_rendezvous_local(host, sizeof host, &port));
        snprintf(bind, sizeof bind, "tcp://*:%d", port);
        snprintf(advertise, sizeof advertise, "tcp://%s:%d", host, port);
    }
    sl_rendezvous rdv = {0};
    /* Under a launcher the ranks leave their weights in output.dir, which every host shares. */
    sl_exec_options eo = {.rank = rank, .bind_endpoint = bind, .weights_dir = cfg->output.dir};
    const int join_ms = 120000;
    if (rank != 0) {
        SL_TRY(sl_rendezvous_join(master, rank, world, advertise, join_ms, &rdv));
        eo.next_endpoint = rdv.endpoints[(rank + 1) % world];
        eo.report_endpoint = rdv.report;
        eo.run_id = rdv.run_id;
        int rc = sl_exec_rank(cfg, &eo);
        sl_rendezvous_free(&rdv);
        return rc;
    }

    /* Rank 0: the report socket, the rendezvous, then its own stage beside the coordinator. */
    char report_bind[300], report[300];
    int report_port;
    SL_TRY(sl_rendezvous_local(host, sizeof host, &report_port));
    snprintf(report_bind, sizeof report_bind, "tcp://*:%d", report_port);
    snprintf(report, sizeof report, "tcp://%s:%d", host, report_port);
    run r;
    coordinator c = {.run = &r, .world = world};
    int rc = run_open(&r, cfg, opt);
    r.weights_dir = cfg->output.dir;
    if (rc == SL_OK) rc = sl_launch_listen(report_bind, &c.launch);
    if (rc == SL_OK)
        rc = sl_rendezvous_serve(master, world, advertise, report, new_run_id(), join_ms, &rdv);
    pthread_t thread;
    bool started = false;
    if (rc == SL_OK) {
        eo.next_endpoint = rdv.endpoints[1 % world];
        eo.report_endpoint = report;
        eo.run_id = rdv.run_id;
        started = pthread_create(&thread, NULL, coordinate, &c) == 0;
        if (!started) rc = sl_fail(SL_ENOMEM, "cannot start the coordinator thread");
    }
    if (rc == SL_OK) rc = sl_exec_rank(cfg, &eo);
    if (started) {
        pthread_join(thread, NULL);
        /* The first failure anywhere is the one to report. */
        if (c.status != SL_OK) rc = sl_fail(c.status, "%s", c.message);
    }
    if (rc == SL_OK) rc = finish(&r, cfg->output.dir, out);
    sl_rendezvous_free(&rdv);
    sl_launch_destroy(c.launch);
    run_close(&r);
    return rc;
}

int sl_train_rank(const char *run_dir, int rank, unsigned long long run_id)
{
    char path[1200], bind[1200], next[1200];
    snprintf(path, sizeof path, "%s/config.json", run_dir);
    sl_config cfg;
    SL_TRY(sl_config_load(path, NULL, 0, &cfg));
    int world = cfg.pipeline.stages;
    int rc = SL_OK;
    if (rank < 0 || rank >= world)
        rc = sl_fail(SL_EINVAL, "rank %d outside a pipeline of %d ranks", rank, world);
    snprintf(bind, sizeof bind, "ipc://%s/r%d", run_dir, rank);
    snprintf(next, sizeof next, "ipc://%s/r%d", run_dir, (rank + 1) % world);
    sl_exec_options opt = {.rank = rank,
                           .bind_endpoint = bind,
                           .next_endpoint = next,
                           .report_endpoint = getenv("SLUICE_REPORT"),
                           .weights_dir = run_dir,
                           .run_id = run_id};
    if (rc == SL_OK) rc = sl_exec_rank(&cfg, &opt);
    sl_config_free(&cfg);
    return rc;
}

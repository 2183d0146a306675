/* The plan of a run. See plan.h. */
#include "runtime/plan/plan.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

/* ------------------------------------------------------------------------------------------------
 * Building */

/* The plan's own copy of the config: its effective JSON parsed again (paths are already
 * resolved, so they resolve to themselves). */
static int copy_config(const sl_config *cfg, sl_config *out)
{
    char *json = sl_config_to_json(cfg, false);
    if (!json) return sl_fail(SL_ENOMEM, "out of memory copying the config");
    int rc = sl_config_parse(json, cfg->dir, NULL, 0, out);
    free(json);
    return rc;
}

/* The partition and the schedules from the plan's config and model. */
static int build_parts(sl_plan *out)
{
    const sl_config *c = &out->cfg;
    int rc = sl_partition_from_config(c, &out->model, &out->part);
    int tied[2] = {0, 0};
    if (rc == SL_OK) rc = sl_partition_tied_stages(&out->model, &out->part, tied);
    if (rc == SL_OK) {
        /* Tied parameters on two stages sum their gradients (TIED); clipping over several ranks
         * combines the norm (NORM): both are actions of the schedule. */
        sl_schedule_params sp = {.name = c->pipeline.schedule,
                                 .ranks = c->pipeline.stages,
                                 .microbatches = c->train.microbatches,
                                 .chunks = c->pipeline.chunks,
                                 .recompute = c->pipeline.recompute,
                                 .tied_stages = {tied[0], tied[1]},
                                 .norm = c->train.grad_clip > 0};
        rc = sl_schedule_generate(&sp, &out->sched);
        if (rc != SL_OK) rc = sl_fail_context(SL_ECONFIG, "config: pipeline");
        /* Validated with the links the executor opens (SL_MAX(M·v, 2) messages each): looped
         * BFS sends a whole chunk's forwards before it receives any. */
        else if ((rc = sl_schedule_validate(
                      out->sched, SL_MAX(c->train.microbatches * out->sched->chunks, 2))) != SL_OK)
            rc = sl_fail_context(rc, "the %s schedule", c->pipeline.schedule);
    }
    if (rc == SL_OK && c->data.text) {
        /* A text's losses are evaluated between steps (eval.interval) and at the end, by
         * forwards through the same stages: GPipe's forward order, no backward, no OPT. */
        /* Chimera evaluates through its down replica alone (stages 0..D-1, one per rank). */
        bool one = out->part.chains > 1;
        sl_schedule_params ep = {.name = "eval",
                                 .ranks = c->pipeline.stages,
                                 .microbatches = c->train.microbatches,
                                 .chunks = one ? 1 : c->pipeline.chunks,
                                 .forward_only = true,
                                 .placement =
                                     out->part.v_shape && !one ? SL_PLACE_V : SL_PLACE_LOOP};
        rc = sl_schedule_generate(&ep, &out->eval_sched);
        /* Validated with the links the executor opens (SL_MAX(M·v, 2) messages per link, all
         * that one evaluation batch sends on one): with interleaved chunks the order needs more
         * than the training schedule's depth. */
        int depth = SL_MAX(c->train.microbatches * c->pipeline.chunks, 2);
        if (rc == SL_OK && (rc = sl_schedule_validate(out->eval_sched, depth)) != SL_OK)
            rc = sl_fail_context(rc, "the evaluation schedule");
    }
    return rc;
}

static void free_parts(sl_plan *p)
{
    sl_schedule_free(p->sched);
    sl_schedule_free(p->eval_sched);
    p->sched = p->eval_sched = NULL;
    sl_partition_free(&p->part);
}

/* A "time" partition without recorded counts: start from the uniform cut (so the plan can be
 * simulated), profile the ranks' devices, balance, and record the counts in the plan's config. */
static int resolve_time(sl_plan *out, bool refresh)
{
    sl_config *c = &out->cfg;
    int S = sl_partition_chain_stages(&out->part); /* chimera's replicas share one cut */
    sl_profile *profiles = NULL;
    int *counts = sl_alloc(sizeof(int) * (size_t)S);
    if (!counts) return SL_ENOMEM;
    int rc = sl_plan_profiles(out, refresh, &profiles, out->note, sizeof out->note);
    if (rc == SL_OK) rc = sl_plan_balance_time(out, profiles, counts);
    sl_plan_profiles_free(out, profiles);
    if (rc == SL_OK) {
        free(c->pipeline.partition_counts);
        c->pipeline.partition_counts = counts;
        c->pipeline.npartition = S;
        counts = NULL;
        free_parts(out);
        rc = build_parts(out);
    }
    free(counts);
    return rc;
}

int sl_plan_build(const sl_config *cfg, sl_plan *out)
{
    return sl_plan_build_with(cfg, false, out);
}

int sl_plan_build_with(const sl_config *cfg, bool refresh_profile, sl_plan *out)
{
    memset(out, 0, sizeof *out);
    SL_TRY(copy_config(cfg, &out->cfg));
    sl_config *c = &out->cfg;
    out->ranks = c->pipeline.stages;
    out->rows = (size_t)(c->train.batch / c->train.microbatches);
    int rc = sl_model_init(c, &out->model);
    bool time = !strcmp(c->pipeline.partition, "time") && !c->pipeline.npartition;
    /* The uniform cut first: the time partition simulates the plan's schedule on it. */
    char *method = c->pipeline.partition;
    if (time) c->pipeline.partition = (char *)"uniform";
    if (rc == SL_OK) rc = build_parts(out);
    if (time) c->pipeline.partition = method;
    if (rc == SL_OK && !(out->rank = sl_alloc(sizeof *out->rank * (size_t)out->ranks)))
        rc = SL_ENOMEM;
    for (int r = 0; rc == SL_OK && r < out->ranks; r++)
        out->rank[r].device = sl_config_device(c, r);
    if (rc == SL_OK && time) rc = resolve_time(out, refresh_profile);
    if (rc == SL_OK && c->launch.nendpoints > 0)
        sl_plan_set_endpoints(out, (const char *const *)c->launch.endpoints);
    if (rc != SL_OK) sl_plan_free(out);
    return rc;
}

void sl_plan_free(sl_plan *p)
{
    if (!p) return;
    free(p->rank);
    free_parts(p);
    sl_model_free(&p->model);
    sl_config_free(&p->cfg);
    memset(p, 0, sizeof *p);
}

void sl_plan_set_endpoints(sl_plan *p, const char *const *endpoints)
{
    for (int r = 0; r < p->ranks; r++) {
        snprintf(p->rank[r].bind, sizeof p->rank[r].bind, "%s", endpoints[r]);
        snprintf(p->rank[r].next, sizeof p->rank[r].next, "%s", endpoints[(r + 1) % p->ranks]);
    }
}

/* ------------------------------------------------------------------------------------------------
 * plan.json */

static void add_endpoint(cJSON *o, const char *key, const char *endpoint)
{
    if (endpoint[0])
        cJSON_AddStringToObject(o, key, endpoint);
    else
        cJSON_AddNullToObject(o, key);
}

/* The rank's action list in text form, "0F0 0SEND_F0 ... OPT". */
static cJSON *actions_text(const sl_schedule *s, int rank)
{
    size_t n;
    const sl_action *a = sl_schedule_actions(s, rank, &n);
    size_t cap = n * 24 + 1, used = 0;
    char *buf = sl_alloc(cap);
    if (!buf) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (i) buf[used++] = ' ';
        sl_action_format(&a[i], buf + used, cap - used);
        used += strlen(buf + used);
    }
    cJSON *str = cJSON_CreateString(buf);
    free(buf);
    return str;
}

static cJSON *model_json(const sl_plan *p)
{
    const sl_model *m = &p->model;
    cJSON *mo = cJSON_CreateObject();
    cJSON_AddNumberToObject(mo, "inputs", m->inputs);
    cJSON_AddNumberToObject(mo, "outputs", m->outputs);
    cJSON_AddNumberToObject(mo, "params", (double)m->nparams);
    cJSON_AddStringToObject(mo, "loss", sl_loss_get(m->loss)->name);
    cJSON *layers = cJSON_AddArrayToObject(mo, "layers");
    for (int i = 0; i < m->nlayers; i++) {
        cJSON *l = cJSON_CreateObject();
        cJSON_AddNumberToObject(l, "index", i);
        cJSON_AddStringToObject(l, "layer", p->cfg.model.layers[i]);
        cJSON_AddNumberToObject(l, "in", m->layers[i].in);
        cJSON_AddNumberToObject(l, "out", m->layers[i].out);
        cJSON_AddNumberToObject(l, "params", (double)sl_model_params(m, i, i + 1));
        cJSON_AddNumberToObject(l, "stash_bytes_per_row",
                                (double)sl_layer_stash_bytes(&m->layers[i]));
        cJSON_AddItemToArray(layers, l);
    }
    return mo;
}

size_t sl_plan_range_stash_bytes(const sl_plan *p, const sl_stage_range *r)
{
    return p->rows * sl_model_stash_bytes(&p->model, r->first, r->last);
}

size_t sl_plan_range_input_bytes(const sl_plan *p, const sl_stage_range *r)
{
    return p->rows * 4 * (size_t)sl_model_width(&p->model, r->first);
}

size_t sl_plan_stash_bytes(const sl_plan *p, int stage)
{
    return sl_plan_range_stash_bytes(p, &p->part.stages[stage]);
}

size_t sl_plan_input_bytes(const sl_plan *p, int stage)
{
    return sl_plan_range_input_bytes(p, &p->part.stages[stage]);
}

void sl_plan_stage_bytes(const sl_plan *p, double *stash, double *input)
{
    for (int i = 0; i < p->sched->stages; i++) {
        stash[i] = (double)sl_plan_stash_bytes(p, i);
        input[i] = (double)sl_plan_input_bytes(p, i);
    }
}

static cJSON *stage_json(const sl_plan *p, int s)
{
    const sl_model *m = &p->model;
    int first = p->part.stages[s].first, last = p->part.stages[s].last;
    int rank = sl_partition_rank(&p->part, s);
    size_t stash = sl_plan_stash_bytes(p, s);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "stage", s);
    cJSON_AddNumberToObject(o, "rank", rank);
    cJSON_AddStringToObject(o, "device", p->rank[rank].device);
    cJSON_AddNumberToObject(o, "first_layer", first);
    cJSON_AddNumberToObject(o, "last_layer", last);
    cJSON_AddNumberToObject(o, "params", (double)sl_model_params(m, first, last));
    cJSON_AddNumberToObject(o, "input_width", sl_model_width(m, first));
    cJSON_AddNumberToObject(o, "output_width", sl_model_width(m, last));
    cJSON_AddNumberToObject(o, "input_bytes", (double)sl_plan_input_bytes(p, s));
    cJSON_AddNumberToObject(o, "output_bytes", (double)(p->rows * 4 * sl_model_width(m, last)));
    cJSON_AddNumberToObject(o, "stash_bytes", (double)stash);
    return o;
}

static cJSON *plan_json(const sl_plan *p)
{
    const sl_config *cfg = &p->cfg;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "model", model_json(p));
    cJSON *pl = cJSON_AddObjectToObject(root, "pipeline");
    cJSON_AddNumberToObject(pl, "ranks", p->part.ranks);
    cJSON_AddNumberToObject(pl, "chunks", p->part.chunks);
    cJSON_AddNumberToObject(pl, "model_stages", p->part.nstages);
    cJSON_AddStringToObject(pl, "schedule", cfg->pipeline.schedule);
    cJSON_AddStringToObject(pl, "partition", cfg->pipeline.partition);
    cJSON_AddNumberToObject(pl, "microbatches", cfg->train.microbatches);
    cJSON_AddNumberToObject(pl, "microbatch_rows", (double)p->rows);
    cJSON_AddBoolToObject(pl, "recompute", cfg->pipeline.recompute);
    cJSON *stages = cJSON_AddArrayToObject(root, "stages");
    for (int s = 0; s < p->part.nstages; s++) cJSON_AddItemToArray(stages, stage_json(p, s));
    cJSON *ranks = cJSON_AddArrayToObject(root, "ranks");
    for (int r = 0; r < p->ranks; r++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "rank", r);
        cJSON_AddStringToObject(o, "device", p->rank[r].device);
        cJSON *ss = cJSON_AddArrayToObject(o, "stages");
        size_t params = 0;
        for (int s = 0; s < p->part.nstages; s++) {
            if (sl_partition_rank(&p->part, s) != r) continue; /* loop or V placement */
            cJSON_AddItemToArray(ss, cJSON_CreateNumber(s));
            params += sl_model_params(&p->model, p->part.stages[s].first, p->part.stages[s].last);
        }
        cJSON_AddNumberToObject(o, "params", (double)params);
        add_endpoint(o, "bind", p->rank[r].bind);
        add_endpoint(o, "next", p->rank[r].next);
        cJSON_AddItemToObject(o, "actions", actions_text(p->sched, r));
        if (p->eval_sched) cJSON_AddItemToObject(o, "eval_actions", actions_text(p->eval_sched, r));
        cJSON_AddItemToArray(ranks, o);
    }
    char hash[32];
    snprintf(hash, sizeof hash, "%016" PRIx64, sl_config_hash(cfg));
    cJSON_AddStringToObject(root, "config_hash", hash);
    char *effective = sl_config_to_json(cfg, false);
    cJSON *ec = effective ? cJSON_Parse(effective) : NULL;
    free(effective);
    if (!ec) {
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_AddItemToObject(root, "config", ec);
    return root;
}

char *sl_plan_to_json(const sl_plan *p, bool pretty)
{
    cJSON *root = plan_json(p);
    char *text = !root ? NULL : pretty ? cJSON_Print(root) : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

uint64_t sl_plan_hash(const sl_plan *p)
{
    char *text = sl_plan_to_json(p, false);
    uint64_t h = 1469598103934665603ull;
    for (const char *c = text; c && *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;
    free(text);
    return h;
}

int sl_plan_write(const sl_plan *p, const char *dir)
{
    char path[4096];
    sl_run_path(path, sizeof path, dir, SL_RUN_PLAN, 0, 0);
    char *text = sl_plan_to_json(p, true);
    if (!text) return sl_fail(SL_ENOMEM, "out of memory writing %s", path);
    size_t len = strlen(text);
    text[len] = '\n'; /* the terminator becomes the file's last newline */
    int rc = sl_write_file(path, text, len + 1, 0644);
    free(text);
    return rc;
}

/* Sets the endpoints plan.json names (null: not known when it was written). */
static void endpoints_from_json(sl_plan *p, const cJSON *ranks)
{
    for (int r = 0; r < p->ranks; r++) {
        const cJSON *o = cJSON_GetArrayItem(ranks, r);
        const char *bind = cJSON_GetStringValue(cJSON_GetObjectItem(o, "bind"));
        const char *next = cJSON_GetStringValue(cJSON_GetObjectItem(o, "next"));
        snprintf(p->rank[r].bind, sizeof p->rank[r].bind, "%s", bind ? bind : "");
        snprintf(p->rank[r].next, sizeof p->rank[r].next, "%s", next ? next : "");
    }
}

int sl_plan_load(const char *dir, sl_plan *out)
{
    memset(out, 0, sizeof *out);
    char path[4096], *text;
    size_t len;
    sl_run_path(path, sizeof path, dir, SL_RUN_PLAN, 0, 0);
    SL_TRY(sl_read_file(path, &text, &len));
    cJSON *file = cJSON_ParseWithLength(text, len);
    free(text);
    char *config = file ? cJSON_PrintUnformatted(cJSON_GetObjectItem(file, "config")) : NULL;
    sl_config cfg;
    int rc = config ? sl_config_parse(config, dir, NULL, 0, &cfg)
                    : sl_fail(SL_EFORMAT, "%s is not a plan (no \"config\" object in JSON)", path);
    free(config);
    if (rc == SL_OK) {
        rc = sl_plan_build(&cfg, out);
        sl_config_free(&cfg);
    }
    cJSON *rebuilt = NULL;
    if (rc == SL_OK) {
        endpoints_from_json(out, cJSON_GetObjectItem(file, "ranks"));
        if (!(rebuilt = plan_json(out))) rc = SL_ENOMEM;
    }
    if (rc == SL_OK && !cJSON_Compare(file, rebuilt, true))
        rc = sl_fail(SL_EFORMAT,
                     "%s does not describe the plan its config gives (edited, or written by "
                     "another version of sluice): start the run again",
                     path);
    if (rc != SL_OK) {
        sl_plan_free(out);
        rc = sl_fail_context(rc, "%s", path);
    }
    cJSON_Delete(rebuilt);
    cJSON_Delete(file);
    return rc;
}

/* ------------------------------------------------------------------------------------------------
 * Run directory file names */

/* Each file's name; `args` says which numbers its format takes: r(ank), s(tep) or both. */
static const struct {
    const char *format;
    const char *args;
} run_files[] = {
    [SL_RUN_PLAN] = {"plan.json", ""},
    [SL_RUN_METRICS] = {"metrics.jsonl", ""},
    [SL_RUN_SUMMARY] = {"summary.json", ""},
    [SL_RUN_TRACE] = {"trace.json", ""},
    [SL_RUN_FINAL] = {"final.safetensors", ""},
    [SL_RUN_VOCAB] = {"vocab.json", ""},
    [SL_RUN_CHECKPOINT] = {"checkpoint-%d", "s"},
    [SL_RUN_RANK_WEIGHTS] = {".weights-r%d.safetensors", "r"},
    [SL_RUN_RANK_CHECKPOINT] = {".weights-r%d-step%d.safetensors", "rs"},
    [SL_RUN_SECRET_KEY] = {"rank%d.key", "r"},
    [SL_RUN_PUBLIC_KEY] = {"rank%d.pub", "r"},
    [SL_RUN_LINK_SOCKET] = {"r%d", "r"},
    [SL_RUN_REPORT_SOCKET] = {"report", ""},
};

const char *sl_run_path(char *buf, size_t cap, const char *dir, enum sl_run_file file, int rank,
                        int step)
{
    char name[128];
    const char *args = run_files[file].args;
    int first = args[0] == 's' ? step : rank;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(name, sizeof name, run_files[file].format, first, step);
#pragma GCC diagnostic pop
    if (dir)
        snprintf(buf, cap, "%s/%s", dir, name);
    else
        snprintf(buf, cap, "%s", name);
    return buf;
}

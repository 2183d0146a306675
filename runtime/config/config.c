/* The config loader: JSON text -> cJSON tree -> --set overrides -> validation -> sl_config. This
 * file gives the sections their meaning; the JSON helpers it reads them with are in config_get.c.
 */
#include "runtime/config/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/config/config_impl.h"

/* ------------------------------------------------------------------------------------------------
 * Validation */

static const char *const top_keys[] = {"model",   "data",   "train",  "eval", "pipeline",
                                       "devices", "launch", "output", NULL};
static const char *const model_keys[] = {"inputs", "layers", "gpt", "loss", "init", "seed", NULL};
static const char *const gpt_keys[] = {"vocab_size", "block_size", "n_layer",        "n_head",
                                       "n_embd",     "bias",       "tie_embeddings", NULL};
static const char *const data_keys[] = {"path",    "text", "val_fraction", "test_fraction", "scale",
                                        "shuffle", "seed", "inputs",       "labels",        NULL};
static const char *const train_keys[] = {"steps",   "batch",       "microbatches", "optimizer",
                                         "threads", "lr_schedule", "grad_clip",    NULL};
static const char *const lr_keys[] = {"warmup_steps", "decay_steps", "min_lr", NULL};
static const char *const opt_keys[] = {"name",  "lr",  "momentum", "weight_decay",
                                       "betas", "eps", NULL};
static const char *const pipe_keys[] = {"stages",    "schedule",         "chunks", "recompute",
                                        "partition", "partition_counts", NULL};
static const char *const launch_keys[] = {"endpoints", "curve",         "keys", "heartbeat_ms",
                                          "timeout_s", "shared_memory", NULL};
static const char *const output_keys[] = {"dir", "checkpoint_interval", "every_rank",
                                          "keep_checkpoints", NULL};
static const char *const eval_keys[] = {"interval", "iters", NULL};

const char *const sl__config_opt_names[] = {"sgd", "adam", "adamw"};
static const char *const schedule_names[] = {"gpipe", "1f1b", "interleaved", "looped-bfs",
                                             "zb-h1", "zb-v", "dualpipev",   "chimera"};

/* model.gpt: nanoGPT's GPTConfig, expanded into the layer list "embedding", n_layer x "block",
 * "head". The layer strings are not checked through sl_layer_parse: the GPT's layer kinds read
 * their shape from the sl_gpt_config, not from the text. */
static int parse_gpt(sl__config_ctx m, sl_config *cfg)
{
    sl__config_ctx c;
    SL_TRY(sl__config_section(m.obj, "gpt", "model.gpt", true, &c));
    SL_TRY(sl__config_check_keys("model.gpt", c.obj, gpt_keys));
    if (sl__config_get(m, "inputs") || sl__config_get(m, "layers"))
        return sl_fail(SL_ECONFIG,
                       "config: model.gpt and model.%s are mutually exclusive (a GPT's layers and "
                       "inputs come from model.gpt)",
                       sl__config_get(m, "layers") ? "layers" : "inputs");
    sl_gpt_config *g = &cfg->model.gpt;
    SL_TRY(sl__config_get_int(c, "vocab_size", true, 0, 1, 1 << 24, &g->vocab_size));
    SL_TRY(sl__config_get_int(c, "block_size", true, 0, 1, 1 << 20, &g->block_size));
    SL_TRY(sl__config_get_int(c, "n_layer", true, 0, 1, 1024, &g->n_layer));
    SL_TRY(sl__config_get_int(c, "n_head", true, 0, 1, 1024, &g->n_head));
    SL_TRY(sl__config_get_int(c, "n_embd", true, 0, 1, 1 << 16, &g->n_embd));
    SL_TRY(sl__config_get_bool(c, "bias", true, &g->bias));
    SL_TRY(sl__config_get_bool(c, "tie_embeddings", true, &g->tie_embeddings));
    if (g->n_embd % g->n_head != 0)
        return sl_fail(SL_ECONFIG,
                       "config: model.gpt.n_embd (%d) must be a multiple of model.gpt.n_head (%d)",
                       g->n_embd, g->n_head);
    cfg->model.has_gpt = true;
    cfg->model.inputs = g->block_size;
    int n = g->n_layer + 2;
    if (!(cfg->model.layers = sl_alloc(sizeof(char *) * (size_t)n))) return SL_ENOMEM;
    for (int i = 0; i < n; i++) {
        const char *name = i == 0 ? "embedding" : i == n - 1 ? "head" : "block";
        if (!(cfg->model.layers[i] = sl__config_dup_str(name))) return SL_ENOMEM;
        cfg->model.nlayers = i + 1;
    }
    return SL_OK;
}

static int parse_layers(sl__config_ctx c, sl_config *cfg)
{
    SL_TRY(sl__config_get_int(c, "inputs", true, 0, 1, 1 << 24, &cfg->model.inputs));
    cJSON *layers = sl__config_get(c, "layers");
    if (!layers) return sl__config_missing(c, "layers");
    if (!cJSON_IsArray(layers) || cJSON_GetArraySize(layers) == 0)
        return sl_fail(SL_ECONFIG, "config: model.layers must be a non-empty array of strings");
    SL_TRY(sl__config_get_str_list(c, "layers", false, &cfg->model.layers, &cfg->model.nlayers));
    for (int i = 0; i < cfg->model.nlayers; i++) {
        sl_layer l;
        if (sl_layer_parse(cfg->model.layers[i], &l) != SL_OK)
            return sl_fail(SL_ECONFIG, "config: model.layers[%d] '%s' is not a layer (%s)", i,
                           cfg->model.layers[i], sl_layer_kinds_text());
    }
    if (sl_config_param_layers(cfg) == 0)
        return sl_fail(SL_ECONFIG,
                       "config: model.layers has no layer with parameters (such as linear:N)");
    return SL_OK;
}

static int parse_model(cJSON *root, sl_config *cfg)
{
    sl__config_ctx c;
    SL_TRY(sl__config_section(root, "model", "model", true, &c));
    SL_TRY(sl__config_check_keys("model", c.obj, model_keys));
    if (sl__config_get(c, "gpt"))
        SL_TRY(parse_gpt(c, cfg));
    else
        SL_TRY(parse_layers(c, cfg));
    const char *loss_names[SL_LOSS_COUNT];
    for (int k = 0; k < SL_LOSS_COUNT; k++) loss_names[k] = sl_loss_get((enum sl_loss_kind)k)->name;
    int loss;
    SL_TRY(sl__config_get_enum(c, "loss", "cross_entropy", loss_names, SL_LOSS_COUNT, &loss));
    cfg->model.loss = (enum sl_loss_kind)loss;
    if (cfg->model.has_gpt && cfg->model.loss != SL_LOSS_CROSS_ENTROPY)
        return sl_fail(SL_ECONFIG,
                       "config: model.loss '%s' does not apply to model.gpt (a GPT predicts the "
                       "next token with cross_entropy)",
                       loss_names[loss]);
    SL_TRY(sl__config_get_str(c, "init", false, NULL, &cfg->model.init));
    if (cfg->model.init)
        SL_TRY(sl__config_resolve_path("model.init", cfg->dir, false, &cfg->model.init));
    SL_TRY(sl__config_get_u64(c, "seed", &cfg->model.seed));
    return SL_OK;
}

static int parse_data(cJSON *root, sl_config *cfg)
{
    sl__config_ctx c;
    SL_TRY(sl__config_section(root, "data", "data", true, &c));
    SL_TRY(sl__config_check_keys("data", c.obj, data_keys));
    if (sl__config_get(c, "path") && sl__config_get(c, "text"))
        return sl_fail(SL_ECONFIG, "config: data.path and data.text are mutually exclusive (a "
                                   "text is data.text, a safetensors or CSV file data.path)");
    if (!sl__config_get(c, "path") && !sl__config_get(c, "text"))
        return sl_fail(SL_ECONFIG, "config: data.path (or data.text for model.gpt) is required");
    if (sl__config_get(c, "text") && !cfg->model.has_gpt)
        return sl_fail(SL_ECONFIG, "config: data.text needs model.gpt (a text is tokenised for "
                                   "a GPT; other models read data.path)");
    if (sl__config_get(c, "path")) {
        SL_TRY(sl__config_get_str(c, "path", true, NULL, &cfg->data.path));
        SL_TRY(sl__config_resolve_path("data.path", cfg->dir, false, &cfg->data.path));
        size_t n = strlen(cfg->data.path), m = strlen(".safetensors");
        if (cfg->model.has_gpt && (n < m || strcmp(cfg->data.path + n - m, ".safetensors") != 0))
            return sl_fail(SL_ECONFIG,
                           "config: data.path '%s' with model.gpt must be a .safetensors file of "
                           "token windows (or give a text as data.text)",
                           cfg->data.path);
    } else {
        SL_TRY(sl__config_get_str(c, "text", true, NULL, &cfg->data.text));
        SL_TRY(sl__config_resolve_path("data.text", cfg->dir, false, &cfg->data.text));
    }
    SL_TRY(
        sl__config_get_num(c, "val_fraction", false, 0.1, 0.0, 1.0, true, &cfg->data.val_fraction));
    if (cfg->model.has_gpt) {
        /* A GPT's windows are taken in order (fixture) or at random offsets (text): the row
         * options of feature data do not apply. */
        static const char *const row_keys[] = {"test_fraction", "scale", "shuffle"};
        for (size_t i = 0; i < SL_ARRAY_LEN(row_keys); i++)
            if (sl__config_get(c, row_keys[i]))
                return sl_fail(SL_ECONFIG,
                               "config: data.%s does not apply to model.gpt's token data (a "
                               "text holds out data.val_fraction)",
                               row_keys[i]);
    }
    SL_TRY(sl__config_get_num(c, "test_fraction", false, 0.0, 0.0, 1.0, true,
                              &cfg->data.test_fraction));
    SL_TRY(sl__config_get_num(c, "scale", false, 1.0, -1e30, 1e30, false, &cfg->data.scale));
    SL_TRY(sl__config_get_bool(c, "shuffle", false, &cfg->data.shuffle));
    SL_TRY(sl__config_get_u64(c, "seed", &cfg->data.seed));
    SL_TRY(sl__config_get_str(c, "inputs", false, "x", &cfg->data.inputs));
    SL_TRY(sl__config_get_str(c, "labels", false, "y", &cfg->data.labels));
    return SL_OK;
}

static int parse_train(cJSON *root, sl_config *cfg)
{
    sl__config_ctx c, o;
    SL_TRY(sl__config_section(root, "train", "train", true, &c));
    SL_TRY(sl__config_check_keys("train", c.obj, train_keys));
    SL_TRY(sl__config_get_int(c, "steps", true, 0, 1, 1 << 30, &cfg->train.steps));
    SL_TRY(sl__config_get_int(c, "batch", true, 0, 1, 1 << 24, &cfg->train.batch));
    SL_TRY(sl__config_get_int(c, "microbatches", false, 1, 1, 1 << 20, &cfg->train.microbatches));
    SL_TRY(sl__config_get_int(c, "threads", false, 0, 0, 4096, &cfg->train.threads));
    if (cfg->train.batch % cfg->train.microbatches != 0)
        return sl_fail(SL_ECONFIG,
                       "config: train.batch (%d) must be a multiple of "
                       "train.microbatches (%d)",
                       cfg->train.batch, cfg->train.microbatches);

    SL_TRY(sl__config_section(c.obj, "optimizer", "train.optimizer", true, &o));
    SL_TRY(sl__config_check_keys("train.optimizer", o.obj, opt_keys));
    sl_optimizer_config *opt = &cfg->train.optimizer;
    int kind = 0;
    SL_TRY(sl__config_get_enum(o, "name", NULL, sl__config_opt_names, 3, &kind));
    opt->kind = (enum sl_optimizer_kind)kind;
    SL_TRY(sl__config_get_num(o, "lr", true, 0, 0, 1e6, false, &opt->lr));
    if (!(opt->lr > 0)) return sl_fail(SL_ECONFIG, "config: train.optimizer.lr must be > 0");
    SL_TRY(sl__config_get_num(o, "weight_decay", false, opt->kind == SL_OPT_ADAMW ? 0.01 : 0, 0,
                              1e6, false, &opt->weight_decay));
    opt->beta1 = 0.9;
    opt->beta2 = 0.999;
    opt->eps = 1e-8;
    opt->momentum = 0;
    if (opt->kind == SL_OPT_SGD) {
        if (sl__config_get(o, "betas") || sl__config_get(o, "eps"))
            return sl_fail(SL_ECONFIG,
                           "config: train.optimizer.%s is an adam setting; sgd takes "
                           "lr, momentum, weight_decay",
                           sl__config_get(o, "betas") ? "betas" : "eps");
        SL_TRY(sl__config_get_num(o, "momentum", false, 0, 0, 1, true, &opt->momentum));
    } else {
        if (sl__config_get(o, "momentum"))
            return sl_fail(SL_ECONFIG,
                           "config: train.optimizer.momentum is an sgd setting; %s takes lr, "
                           "betas, eps, weight_decay",
                           sl__config_opt_names[opt->kind]);
        cJSON *b = sl__config_get(o, "betas");
        if (b) {
            if (!cJSON_IsArray(b) || cJSON_GetArraySize(b) != 2 ||
                !cJSON_IsNumber(cJSON_GetArrayItem(b, 0)) ||
                !cJSON_IsNumber(cJSON_GetArrayItem(b, 1)))
                return sl_fail(SL_ECONFIG,
                               "config: train.optimizer.betas must be an array of two numbers");
            opt->beta1 = cJSON_GetArrayItem(b, 0)->valuedouble;
            opt->beta2 = cJSON_GetArrayItem(b, 1)->valuedouble;
            if (!(opt->beta1 >= 0 && opt->beta1 < 1 && opt->beta2 >= 0 && opt->beta2 < 1))
                return sl_fail(SL_ECONFIG, "config: train.optimizer.betas must be in [0, 1)");
        }
        SL_TRY(sl__config_get_num(o, "eps", false, 1e-8, 0, 1, false, &opt->eps));
    }

    SL_TRY(sl__config_get_num(c, "grad_clip", false, 0, 0, 1e30, false, &cfg->train.grad_clip));
    sl__config_ctx l;
    SL_TRY(sl__config_section(c.obj, "lr_schedule", "train.lr_schedule", false, &l));
    SL_TRY(sl__config_check_keys("train.lr_schedule", l.obj, lr_keys));
    sl_lr_schedule *lr = &cfg->train.lr_schedule;
    if (!l.obj) return SL_OK;
    lr->on = true;
    SL_TRY(sl__config_get_int(l, "warmup_steps", false, 0, 0, 1 << 30, &lr->warmup_steps));
    SL_TRY(sl__config_get_int(l, "decay_steps", false, cfg->train.steps, 1, 1 << 30,
                              &lr->decay_steps));
    if (lr->decay_steps <= lr->warmup_steps)
        return sl_fail(SL_ECONFIG,
                       "config: train.lr_schedule.decay_steps (%d%s) must be more than "
                       "train.lr_schedule.warmup_steps (%d)",
                       lr->decay_steps, sl__config_get(l, "decay_steps") ? "" : ", train.steps",
                       lr->warmup_steps);
    SL_TRY(sl__config_get_num(l, "min_lr", false, opt->lr / 10, 0, opt->lr, false, &lr->min_lr));
    return SL_OK;
}

/* A list of counts of layers with parameters per model stage (pipeline.partition, or the counts
 * a time partition recorded in pipeline.partition_counts). */
static int parse_counts(const cJSON *p, const char *key, int nstages, int units,
                        const char *unit_text, const char *model_text, sl_config *cfg)
{
    int n = cJSON_GetArraySize(p);
    if (n != nstages)
        return sl_fail(SL_ECONFIG, "config: %s lists %d stages but the model is cut into %d (%s)",
                       key, n, nstages,
                       strcmp(cfg->pipeline.schedule, "chimera")
                           ? "pipeline.stages x pipeline.chunks"
                           : "pipeline.stages: chimera's two replicas share one cut");
    if (!(cfg->pipeline.partition_counts = sl_alloc(sizeof(int) * (size_t)n))) return SL_ENOMEM;
    int sum = 0, i = 0;
    for (cJSON *it = p->child; it; it = it->next, i++) {
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
            it->valuedouble < 1 || it->valuedouble > units)
            return sl_fail(SL_ECONFIG,
                           "config: %s[%d] must be a count of layers with parameters (%s) >= 1",
                           key, i, unit_text);
        cfg->pipeline.partition_counts[i] = (int)it->valuedouble;
        sum += cfg->pipeline.partition_counts[i];
    }
    cfg->pipeline.npartition = n;
    if (sum != units)
        return sl_fail(SL_ECONFIG, "config: %s counts %d layers with parameters but %s has %d", key,
                       sum, model_text, units);
    return SL_OK;
}

static int parse_pipeline(cJSON *root, sl_config *cfg)
{
    sl__config_ctx c;
    SL_TRY(sl__config_section(root, "pipeline", "pipeline", false, &c));
    SL_TRY(sl__config_check_keys("pipeline", c.obj, pipe_keys));
    SL_TRY(sl__config_get_int(c, "stages", false, 1, 1, 1024, &cfg->pipeline.stages));
    int sched;
    SL_TRY(sl__config_get_enum(c, "schedule", "1f1b", schedule_names,
                               (int)SL_ARRAY_LEN(schedule_names), &sched));
    if (!(cfg->pipeline.schedule = sl__config_dup_str(schedule_names[sched]))) return SL_ENOMEM;
    SL_TRY(sl__config_get_int(c, "chunks", false, 1, 1, 1024, &cfg->pipeline.chunks));
    /* The V schedules hold two stages per rank (r and 2D-1-r): two chunks unless told. Chimera
     * holds two too, one of each replica, which share the model's cut into D stages. */
    bool chimera = !strcmp(cfg->pipeline.schedule, "chimera");
    bool v_shape = !strcmp(cfg->pipeline.schedule, "zb-v") ||
                   !strcmp(cfg->pipeline.schedule, "dualpipev") || chimera;
    if (v_shape && !sl__config_get(c, "chunks")) cfg->pipeline.chunks = 2;
    if (v_shape && cfg->pipeline.chunks != 2)
        return sl_fail(SL_ECONFIG,
                       "config: pipeline.schedule \"%s\" places two model stages per rank in a "
                       "V (rank r holds stages r and 2D-1-r): pipeline.chunks must be 2 (got %d)",
                       cfg->pipeline.schedule, cfg->pipeline.chunks);
    SL_TRY(sl__config_get_bool(c, "recompute", false, &cfg->pipeline.recompute));
    /* The model's cut: chimera's two replicas share one of D stages. */
    int chunks = chimera ? 1 : cfg->pipeline.chunks, nstages = cfg->pipeline.stages * chunks;
    int units = sl_config_param_layers(cfg); /* layers with parameters */
    /* What the units are, for messages. */
    const char *unit_text =
        cfg->model.has_gpt ? "the GPT's embedding, blocks and head" : "linear:N";
    const char *model_text = cfg->model.has_gpt ? "model.gpt" : "model.layers";
    cJSON *p = sl__config_get(c, "partition"), *pc = sl__config_get(c, "partition_counts");
    if (p && cJSON_IsArray(p)) {
        if (pc)
            return sl_fail(SL_ECONFIG, "config: pipeline.partition_counts goes with "
                                       "pipeline.partition \"time\" (a list of counts is "
                                       "pipeline.partition itself)");
        SL_TRY(parse_counts(p, "pipeline.partition", nstages, units, unit_text, model_text, cfg));
        if (!(cfg->pipeline.partition = sl__config_dup_str("explicit"))) return SL_ENOMEM;
    } else {
        static const char *const part_names[] = {"uniform", "parameters", "time"};
        int part;
        if (p && !cJSON_IsString(p))
            return sl_fail(SL_ECONFIG,
                           "config: pipeline.partition must be \"uniform\", \"parameters\", "
                           "\"time\" or an array of counts of layers with parameters per stage "
                           "(got %s)",
                           sl__config_type_name(p));
        SL_TRY(sl__config_get_enum(c, "partition", "uniform", part_names,
                                   (int)SL_ARRAY_LEN(part_names), &part));
        if (!(cfg->pipeline.partition = sl__config_dup_str(part_names[part]))) return SL_ENOMEM;
        /* What a time partition gave, as plan.json's config records it so that every rank
         * runs the same cut without profiling again. */
        if (pc && part != 2)
            return sl_fail(SL_ECONFIG,
                           "config: pipeline.partition_counts goes with pipeline.partition "
                           "\"time\" (it records the counts the profile gave), not \"%s\"",
                           part_names[part]);
        if (pc && !cJSON_IsArray(pc))
            return sl_fail(SL_ECONFIG, "config: pipeline.partition_counts must be an array");
        if (pc)
            SL_TRY(parse_counts(pc, "pipeline.partition_counts", nstages, units, unit_text,
                                model_text, cfg));
    }
    if (nstages > units)
        return sl_fail(SL_ECONFIG,
                       "config: pipeline.stages x pipeline.chunks (%d x %d = %d stages) is more "
                       "than the %d layers with parameters (%s) in %s; every stage needs at "
                       "least one",
                       cfg->pipeline.stages, chunks, nstages, units, unit_text, model_text);
    if (cfg->pipeline.chunks > 1 && !v_shape && strcmp(cfg->pipeline.schedule, "interleaved") &&
        strcmp(cfg->pipeline.schedule, "looped-bfs"))
        return sl_fail(SL_ECONFIG,
                       "config: pipeline.chunks (%d) > 1 needs pipeline.schedule \"interleaved\" "
                       "or \"looped-bfs\" (got \"%s\")",
                       cfg->pipeline.chunks, cfg->pipeline.schedule);
    return SL_OK;
}

/* eval: the periodic evaluation of a text's held-out and training loss (after train, which it
 * checks against, and data). */
static int parse_eval(cJSON *root, sl_config *cfg)
{
    sl__config_ctx c;
    SL_TRY(sl__config_section(root, "eval", "eval", false, &c));
    SL_TRY(sl__config_check_keys("eval", c.obj, eval_keys));
    SL_TRY(sl__config_get_int(c, "interval", false, 0, 0, 1 << 30, &cfg->eval.interval));
    SL_TRY(sl__config_get_int(c, "iters", false, 20, 1, 1 << 20, &cfg->eval.iters));
    if (cfg->eval.interval > 0 && !cfg->data.text)
        return sl_fail(SL_ECONFIG,
                       "config: eval.interval (%d) needs a text (data.text with model.gpt): other "
                       "data is evaluated once, on its test rows (data.test_fraction), at the end",
                       cfg->eval.interval);
    return SL_OK;
}

static int parse_rest(cJSON *root, sl_config *cfg)
{
    sl__config_ctx top = {"", root};
    cJSON *d = sl__config_get(top, "devices");
    if (d) {
        SL_TRY(sl__config_get_str_list(top, "devices", true, &cfg->devices, &cfg->ndevices));
        if (cfg->ndevices != 1 && cfg->ndevices != cfg->pipeline.stages)
            return sl_fail(SL_ECONFIG,
                           "config: devices lists %d ids but pipeline.stages is %d (give one id "
                           "for all ranks or one per rank)",
                           cfg->ndevices, cfg->pipeline.stages);
    } else {
        if (!(cfg->devices = sl_alloc(sizeof(char *))) ||
            !(cfg->devices[0] = sl__config_dup_str("cpu")))
            return SL_ENOMEM;
        cfg->ndevices = 1;
    }

    sl__config_ctx c;
    SL_TRY(sl__config_section(root, "launch", "launch", false, &c));
    SL_TRY(sl__config_check_keys("launch", c.obj, launch_keys));
    SL_TRY(sl__config_get_str_list(c, "endpoints", false, &cfg->launch.endpoints,
                                   &cfg->launch.nendpoints));
    if (sl__config_get(c, "endpoints") && cfg->launch.nendpoints != cfg->pipeline.stages)
        return sl_fail(SL_ECONFIG,
                       "config: launch.endpoints lists %d endpoints but pipeline.stages is %d",
                       cfg->launch.nendpoints, cfg->pipeline.stages);
    for (int i = 0; i < cfg->launch.nendpoints; i++)
        if (!strstr(cfg->launch.endpoints[i], "://"))
            return sl_fail(SL_ECONFIG,
                           "config: launch.endpoints[%d] '%s' is not an endpoint such as "
                           "tcp://host:5555",
                           i, cfg->launch.endpoints[i]);
    SL_TRY(sl__config_get_bool(c, "curve", false, &cfg->launch.curve));
    SL_TRY(sl__config_get_str(c, "keys", false, NULL, &cfg->launch.keys));
    if (cfg->launch.keys)
        SL_TRY(sl__config_resolve_path("launch.keys", cfg->dir, true, &cfg->launch.keys));
    if (cfg->launch.keys && !cfg->launch.curve)
        return sl_fail(SL_ECONFIG, "config: launch.keys is set but launch.curve is false; set "
                                   "launch.curve to true to encrypt the links");
    SL_TRY(
        sl__config_get_int(c, "heartbeat_ms", false, 1000, 1, 3600000, &cfg->launch.heartbeat_ms));
    SL_TRY(sl__config_get_int(c, "timeout_s", false, 120, 1, 86400, &cfg->launch.timeout_s));
    SL_TRY(sl__config_get_bool(c, "shared_memory", true, &cfg->launch.shared_memory));

    SL_TRY(sl__config_section(root, "output", "output", false, &c));
    SL_TRY(sl__config_check_keys("output", c.obj, output_keys));
    char def[256] = "runs/run";
    if (cfg->file[0]) {
        const char *base = strrchr(cfg->file, '/');
        base = base ? base + 1 : cfg->file;
        size_t n = strcspn(base, ".");
        if (n > 0 && n < 200) snprintf(def, sizeof def, "runs/%.*s", (int)n, base);
    }
    SL_TRY(sl__config_get_str(c, "dir", false, def, &cfg->output.dir));
    SL_TRY(sl__config_get_int(c, "checkpoint_interval", false, 0, 0, 1 << 30,
                              &cfg->output.checkpoint_interval));
    SL_TRY(sl__config_get_bool(c, "every_rank", false, &cfg->output.every_rank));
    SL_TRY(sl__config_get_int(c, "keep_checkpoints", false, 0, 0, 1 << 30,
                              &cfg->output.keep_checkpoints));
    return SL_OK;
}

static int parse_tree(cJSON *root, sl_config *cfg)
{
    if (!cJSON_IsObject(root))
        return sl_fail(SL_ECONFIG, "config: the top level must be a JSON object");
    SL_TRY(sl__config_check_keys("", root, top_keys));
    SL_TRY(parse_model(root, cfg));
    SL_TRY(parse_data(root, cfg));
    SL_TRY(parse_train(root, cfg));
    SL_TRY(parse_eval(root, cfg));
    SL_TRY(parse_pipeline(root, cfg));
    SL_TRY(parse_rest(root, cfg));
    return SL_OK;
}

/* The line of json[0..at) that `at` is on, for messages. */
static int line_of(const char *json, const char *at)
{
    int line = 1;
    for (const char *p = json; p < at; p++) line += *p == '\n';
    return line;
}

static int config_parse(const char *json, size_t len, const char *dir, const char *file,
                        const char *const *sets, int nsets, sl_config *out)
{
    memset(out, 0, sizeof *out);
    if (!json) return sl_fail(SL_EINVAL, "config: no text");
    const char *nul = memchr(json, '\0', len);
    if (nul)
        return sl_fail(SL_ECONFIG, "config: a NUL byte at line %d (byte %zu): not a JSON text",
                       line_of(json, nul), (size_t)(nul - json));
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        if (!at || at < json || at > json + len) at = json + len;
        return sl_fail(SL_ECONFIG, "config: not valid JSON (near line %d: \"%.*s\")",
                       line_of(json, at), (int)SL_MIN((size_t)20, (size_t)(json + len - at)), at);
    }
    while (end < json + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (end < json + len) {
        cJSON_Delete(root);
        return sl_fail(SL_ECONFIG,
                       "config: text after the JSON object at line %d (\"%.*s\"): one object "
                       "is the whole config",
                       line_of(json, end), (int)SL_MIN((size_t)20, (size_t)(json + len - end)),
                       end);
    }
    int st = SL_OK;
    if (!(out->file = sl__config_dup_str(file))) st = SL_ENOMEM;
    if (st == SL_OK && !(out->dir = sl__config_dup_str(dir ? dir : "."))) st = SL_ENOMEM;
    for (int i = 0; st == SL_OK && i < nsets; i++) st = sl__config_apply_set(root, sets[i]);
    if (st == SL_OK) st = parse_tree(root, out);
    cJSON_Delete(root);
    if (st != SL_OK) sl_config_free(out);
    return st;
}

int sl_config_parse(const char *json, const char *dir, const char *const *sets, int nsets,
                    sl_config *out)
{
    return config_parse(json, json ? strlen(json) : 0, dir, "", sets, nsets, out);
}

int sl_config_load(const char *path, const char *const *sets, int nsets, sl_config *out)
{
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t size = 0;
    int st = sl_read_file_max(path, SL_CONFIG_MAX_BYTES, &text, &size);
    if (st != SL_OK) return sl_fail_context(st, "config %s", path);
    char *dir = sl__config_dup_str(path);
    if (!dir) {
        free(text);
        return SL_ENOMEM;
    }
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[slash == dir ? 1 : 0] = '\0';
    else
        strcpy(dir, ".");
    st = config_parse(text, size, dir, path, sets, nsets, out);
    free(text);
    free(dir);
    if (st != SL_OK && strncmp(sl_last_error(), "config: ", 8) == 0) {
        /* Name the file in the message: "config samples/x.json: train.batch ..." */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", sl_last_error() + 8);
        sl_fail(st, "config %s: %s", path, msg);
    }
    return st;
}

static void free_list(char **list, int n)
{
    if (!list) return;
    for (int i = 0; i < n; i++) free(list[i]);
    free(list);
}

void sl_config_free(sl_config *cfg)
{
    if (!cfg) return;
    free(cfg->file);
    free(cfg->dir);
    free_list(cfg->model.layers, cfg->model.nlayers);
    free(cfg->model.init);
    free(cfg->launch.keys);
    free(cfg->data.path);
    free(cfg->data.text);
    free(cfg->data.inputs);
    free(cfg->data.labels);
    free(cfg->pipeline.schedule);
    free(cfg->pipeline.partition);
    free(cfg->pipeline.partition_counts);
    free_list(cfg->devices, cfg->ndevices);
    free_list(cfg->launch.endpoints, cfg->launch.nendpoints);
    free(cfg->output.dir);
    memset(cfg, 0, sizeof *cfg);
}

/* The effective config as JSON (every default filled in), its hash, and small accessors. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/config/config.h"
#include "runtime/config/config_impl.h"

/* ------------------------------------------------------------------------------------------------
 * Effective config and hash */

static cJSON *str_array(char **items, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(items[i]));
    return a;
}

char *sl_config_to_json(const sl_config *cfg, bool pretty)
{
    cJSON *root = cJSON_CreateObject(), *o, *p;
    o = cJSON_AddObjectToObject(root, "model");
    if (cfg->model.has_gpt) {
        /* The GPT's shape, not the layer list expanded from it: parsing this back expands it. */
        const sl_gpt_config *g = &cfg->model.gpt;
        p = cJSON_AddObjectToObject(o, "gpt");
        cJSON_AddNumberToObject(p, "vocab_size", g->vocab_size);
        cJSON_AddNumberToObject(p, "block_size", g->block_size);
        cJSON_AddNumberToObject(p, "n_layer", g->n_layer);
        cJSON_AddNumberToObject(p, "n_head", g->n_head);
        cJSON_AddNumberToObject(p, "n_embd", g->n_embd);
        cJSON_AddBoolToObject(p, "bias", g->bias);
        cJSON_AddBoolToObject(p, "tie_embeddings", g->tie_embeddings);
    } else {
        cJSON_AddNumberToObject(o, "inputs", cfg->model.inputs);
        cJSON_AddItemToObject(o, "layers", str_array(cfg->model.layers, cfg->model.nlayers));
    }
    cJSON_AddStringToObject(o, "loss", sl_loss_get(cfg->model.loss)->name);
    if (cfg->model.init) cJSON_AddStringToObject(o, "init", cfg->model.init);
    cJSON_AddNumberToObject(o, "seed", (double)cfg->model.seed);

    /* The keys that apply: a GPT's token data has no row options, and a text no tensor names. */
    o = cJSON_AddObjectToObject(root, "data");
    if (cfg->data.text) {
        cJSON_AddStringToObject(o, "text", cfg->data.text);
        cJSON_AddNumberToObject(o, "val_fraction", cfg->data.val_fraction);
    } else {
        cJSON_AddStringToObject(o, "path", cfg->data.path);
    }
    if (!cfg->model.has_gpt) {
        cJSON_AddNumberToObject(o, "test_fraction", cfg->data.test_fraction);
        cJSON_AddNumberToObject(o, "scale", cfg->data.scale);
        cJSON_AddBoolToObject(o, "shuffle", cfg->data.shuffle);
    }
    cJSON_AddNumberToObject(o, "seed", (double)cfg->data.seed);
    if (!cfg->data.text) {
        cJSON_AddStringToObject(o, "inputs", cfg->data.inputs);
        cJSON_AddStringToObject(o, "labels", cfg->data.labels);
    }

    o = cJSON_AddObjectToObject(root, "train");
    cJSON_AddNumberToObject(o, "steps", cfg->train.steps);
    cJSON_AddNumberToObject(o, "batch", cfg->train.batch);
    cJSON_AddNumberToObject(o, "microbatches", cfg->train.microbatches);
    cJSON_AddNumberToObject(o, "threads", cfg->train.threads);
    p = cJSON_AddObjectToObject(o, "optimizer");
    const sl_optimizer_config *opt = &cfg->train.optimizer;
    cJSON_AddStringToObject(p, "name", sl__config_opt_names[opt->kind]);
    cJSON_AddNumberToObject(p, "lr", opt->lr);
    if (opt->kind == SL_OPT_SGD) {
        cJSON_AddNumberToObject(p, "momentum", opt->momentum);
    } else {
        double betas[2] = {opt->beta1, opt->beta2};
        cJSON_AddItemToObject(p, "betas", cJSON_CreateDoubleArray(betas, 2));
        cJSON_AddNumberToObject(p, "eps", opt->eps);
    }
    cJSON_AddNumberToObject(p, "weight_decay", opt->weight_decay);
    if (cfg->train.lr_schedule.on) {
        const sl_lr_schedule *lr = &cfg->train.lr_schedule;
        p = cJSON_AddObjectToObject(o, "lr_schedule");
        cJSON_AddNumberToObject(p, "warmup_steps", lr->warmup_steps);
        cJSON_AddNumberToObject(p, "decay_steps", lr->decay_steps);
        cJSON_AddNumberToObject(p, "min_lr", lr->min_lr);
    }
    cJSON_AddNumberToObject(o, "grad_clip", cfg->train.grad_clip);

    o = cJSON_AddObjectToObject(root, "eval");
    cJSON_AddNumberToObject(o, "interval", cfg->eval.interval);
    cJSON_AddNumberToObject(o, "iters", cfg->eval.iters);

    o = cJSON_AddObjectToObject(root, "pipeline");
    cJSON_AddNumberToObject(o, "stages", cfg->pipeline.stages);
    cJSON_AddStringToObject(o, "schedule", cfg->pipeline.schedule);
    cJSON_AddNumberToObject(o, "chunks", cfg->pipeline.chunks);
    cJSON_AddBoolToObject(o, "recompute", cfg->pipeline.recompute);
    bool listed = cfg->pipeline.npartition && !strcmp(cfg->pipeline.partition, "explicit");
    if (listed)
        cJSON_AddItemToObject(
            o, "partition",
            cJSON_CreateIntArray(cfg->pipeline.partition_counts, cfg->pipeline.npartition));
    else
        cJSON_AddStringToObject(o, "partition", cfg->pipeline.partition);
    if (cfg->pipeline.npartition && !listed) /* what a time partition gave */
        cJSON_AddItemToObject(
            o, "partition_counts",
            cJSON_CreateIntArray(cfg->pipeline.partition_counts, cfg->pipeline.npartition));

    if (cfg->ndevices == 1)
        cJSON_AddStringToObject(root, "devices", cfg->devices[0]);
    else
        cJSON_AddItemToObject(root, "devices", str_array(cfg->devices, cfg->ndevices));

    o = cJSON_AddObjectToObject(root, "launch");
    if (cfg->launch.nendpoints)
        cJSON_AddItemToObject(o, "endpoints",
                              str_array(cfg->launch.endpoints, cfg->launch.nendpoints));
    cJSON_AddBoolToObject(o, "curve", cfg->launch.curve);
    if (cfg->launch.keys) cJSON_AddStringToObject(o, "keys", cfg->launch.keys);
    cJSON_AddNumberToObject(o, "heartbeat_ms", cfg->launch.heartbeat_ms);
    cJSON_AddNumberToObject(o, "timeout_s", cfg->launch.timeout_s);
    cJSON_AddBoolToObject(o, "shared_memory", cfg->launch.shared_memory);

    o = cJSON_AddObjectToObject(root, "output");
    cJSON_AddStringToObject(o, "dir", cfg->output.dir);
    cJSON_AddNumberToObject(o, "checkpoint_interval", cfg->output.checkpoint_interval);
    cJSON_AddBoolToObject(o, "every_rank", cfg->output.every_rank);
    cJSON_AddNumberToObject(o, "keep_checkpoints", cfg->output.keep_checkpoints);

    char *text = pretty ? cJSON_Print(root) : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

uint64_t sl_config_hash(const sl_config *cfg)
{
    char *text = sl_config_to_json(cfg, false);
    uint64_t h = 14695981039346656037ull;
    for (const unsigned char *p = (const unsigned char *)text; p && *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    free(text);
    return h;
}

const char *sl_config_device(const sl_config *cfg, int rank)
{
    if (cfg->ndevices <= 1) return cfg->devices ? cfg->devices[0] : "cpu";
    return cfg->devices[rank % cfg->ndevices];
}

int sl_config_diverged(const sl_config *cfg, int rc)
{
    if (rc != SL_ENONFINITE) return rc;
    char what[1024];
    snprintf(what, sizeof what, "%s", sl_last_error());
    if (cfg->train.grad_clip > 0)
        return sl_fail(rc, "%s; lower train.optimizer.lr or train.grad_clip (now %g)", what,
                       cfg->train.grad_clip);
    return sl_fail(rc, "%s; lower train.optimizer.lr or set train.grad_clip", what);
}

int sl_config_param_layers(const sl_config *cfg)
{
    /* A GPT's embedding, blocks and head all own parameters; their kinds are not parsed here. */
    if (cfg->model.has_gpt) return cfg->model.gpt.n_layer + 2;
    int n = 0;
    for (int i = 0; i < cfg->model.nlayers; i++) {
        sl_layer l;
        n += sl_layer_parse(cfg->model.layers[i], &l) == SL_OK && sl_layer_has_params(&l);
    }
    return n;
}

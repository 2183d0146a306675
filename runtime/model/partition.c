/* The partition of a model's layers into pipeline stages. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/model/model.h"

int sl_partition_make(const sl_model *m, int nstages, const int *counts, sl_stage_range *out)
{
    /* Units: the layers with parameters, which carry the work and the memory. */
    int units = 0;
    for (int i = 0; i < m->nlayers; i++) units += sl_layer_has_params(&m->layers[i]);
    if (nstages < 1) return sl_fail(SL_EINVAL, "partition: %d stages", nstages);
    if (nstages > units)
        return sl_fail(SL_ECONFIG,
                       "partition: %d stages but the model has only %d layers with parameters "
                       "(every stage needs at least one)",
                       nstages, units);
    /* before: how many units the stages so far hold. */
    int before = 0, layer = 0;
    for (int s = 0; s < nstages; s++) {
        int want = counts ? counts[s] : units / nstages + (s < units % nstages);
        if (want < 1)
            return sl_fail(SL_ECONFIG, "partition: stage %d gets %d layers with parameters", s,
                           want);
        out[s].first = s == 0 ? 0 : layer;
        int seen = 0;
        /* Take `want` units, each with the layers without parameters that follow it. */
        while (layer < m->nlayers && seen < want) {
            if (sl_layer_has_params(&m->layers[layer])) seen++;
            layer++;
            while (layer < m->nlayers && !sl_layer_has_params(&m->layers[layer])) layer++;
        }
        if (seen != want)
            return sl_fail(SL_ECONFIG,
                           "partition: stage %d wants %d layers with parameters, %d are left", s,
                           want, seen);
        before += seen;
        out[s].last = layer;
    }
    if (before != units || layer != m->nlayers)
        return sl_fail(SL_ECONFIG, "partition: the stages hold %d of %d layers with parameters",
                       before, units);
    return SL_OK;
}

/* The model stage that holds layer i. */
static int stage_of(const sl_stage_range *stages, int nstages, int layer)
{
    for (int s = 0; s < nstages; s++)
        if (layer >= stages[s].first && layer < stages[s].last) return s;
    return -1;
}

int sl_partition_tied_stages(const sl_model *m, const sl_partition *part, int out[2])
{
    out[0] = out[1] = 0;
    for (int p = 0; p < m->ntensors; p++) {
        const char *tied = m->params[p].spec.tied_to;
        int twin = tied ? sl_model_find_param(m, tied) : -1;
        if (twin < 0) continue;
        int a = stage_of(part->stages, part->nstages, m->params[twin].layer);
        int b = stage_of(part->stages, part->nstages, m->params[p].layer);
        if (a == b) continue; /* one stage: the two names share one buffer there */
        int lo = SL_MIN(a, b), hi = SL_MAX(a, b);
        if (out[0] != out[1] && (out[0] != lo || out[1] != hi))
            return sl_fail(SL_ECONFIG,
                           "config: tied parameters span stages %d and %d and also %d and %d: "
                           "one pair of stages is supported",
                           out[0], out[1], lo, hi);
        out[0] = lo;
        out[1] = hi;
    }
    return SL_OK;
}

int sl_partition_from_config(const sl_config *cfg, const sl_model *m, sl_partition *out)
{
    memset(out, 0, sizeof *out);
    out->ranks = cfg->pipeline.stages;
    out->chunks = cfg->pipeline.chunks;
    out->v_shape =
        !strcmp(cfg->pipeline.schedule, "zb-v") || !strcmp(cfg->pipeline.schedule, "dualpipev");
    out->nstages = out->ranks * out->chunks;
    out->stages = sl_alloc(sizeof(sl_stage_range) * (size_t)out->nstages);
    if (!out->stages) return SL_ENOMEM;
    int st = sl_partition_make(m, out->nstages,
                               cfg->pipeline.npartition ? cfg->pipeline.partition_counts : NULL,
                               out->stages);
    if (st != SL_OK) sl_partition_free(out);
    return st;
}

void sl_partition_free(sl_partition *p)
{
    if (!p) return;
    free(p->stages);
    memset(p, 0, sizeof *p);
}

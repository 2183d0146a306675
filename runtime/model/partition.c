/* The partition of a model's layers into pipeline stages. */
#include <math.h>
#include <stdbool.h>
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

int sl_partition_units(const sl_model *m, int *first)
{
    int units = 0;
    for (int i = 0; i < m->nlayers; i++) {
        if (!sl_layer_has_params(&m->layers[i])) continue;
        /* The layers without parameters before the first unit belong to it. */
        if (first) first[units] = units == 0 ? 0 : i;
        units++;
    }
    if (first) first[units] = m->nlayers;
    return units;
}

/* The least cost of the worst stage over every cut of units [0, j) into stages [0, s], and with
 * `cap` the least sum of squared stage costs among the cuts whose every stage costs at most cap
 * (the second pass: of the cuts as good as the best, the most even). cost[s * units + u]. */
static int balance_pass(int units, int nstages, const double *cost, double cap, int *counts,
                        double *best_max)
{
    /* Ties (equal or zero costs) go to the cut whose unit counts are the most even. */
    double tie = 1e-12 * (cap * cap > 1e-200 ? cap * cap : 1.0);
    size_t cells = (size_t)(nstages + 1) * (size_t)(units + 1);
    double *best = sl_alloc(cells * sizeof *best);
    int *from = sl_alloc(cells * sizeof *from);
    if (!best || !from) {
        free(best);
        free(from);
        return SL_ENOMEM;
    }
#define AT(s, j) ((size_t)(s) * (size_t)(units + 1) + (size_t)(j))
    for (size_t k = 0; k < cells; k++) best[k] = INFINITY;
    best[AT(0, 0)] = 0;
    for (int s = 1; s <= nstages; s++) {
        /* Stage s-1 takes units [i, j); every later stage needs at least one unit. */
        for (int j = s; j <= units - (nstages - s); j++) {
            double stage = 0;
            for (int i = j - 1; i >= s - 1; i--) {
                stage += cost[(size_t)(s - 1) * (size_t)units + (size_t)i];
                double prev = best[AT(s - 1, i)];
                if (isinf(prev)) continue;
                double v;
                if (cap < 0)
                    v = SL_MAX(prev, stage);
                else if (stage > cap)
                    break; /* longer stages only cost more */
                else
                    v = prev + stage * stage + tie * (double)(j - i) * (double)(j - i);
                if (v < best[AT(s, j)]) {
                    best[AT(s, j)] = v;
                    from[AT(s, j)] = i;
                }
            }
        }
    }
    int rc = SL_OK;
    if (isinf(best[AT(nstages, units)])) {
        rc = sl_fail(SL_EINTERNAL, "partition: no cut of %d units into %d stages", units, nstages);
    } else {
        *best_max = best[AT(nstages, units)];
        for (int s = nstages, j = units; s > 0; s--) {
            int i = from[AT(s, j)];
            counts[s - 1] = j - i;
            j = i;
        }
    }
#undef AT
    free(best);
    free(from);
    return rc;
}

int sl_partition_balance(int units, int nstages, const double *cost, int *counts)
{
    if (nstages < 1 || nstages > units)
        return sl_fail(SL_ECONFIG,
                       "partition: %d stages for %d layers with parameters (every stage needs at "
                       "least one)",
                       nstages, units);
    for (size_t k = 0; k < (size_t)units * (size_t)nstages; k++)
        if (!(cost[k] >= 0) || isinf(cost[k]))
            return sl_fail(SL_EINVAL, "partition: unit %zu's cost on stage %zu is %g", k % units,
                           k / units, cost[k]);
    double worst, unused;
    SL_TRY(balance_pass(units, nstages, cost, -1, counts, &worst));
    /* The same worst stage with the stages as even as they can be (a relative margin for the
     * rounding of the sums). */
    return balance_pass(units, nstages, cost, worst * (1 + 1e-9) + 1e-300, counts, &unused);
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

/* Counts that balance the parameters of the stages: a unit costs its parameters plus one, so
 * that units without any (delay layers) still spread evenly. */
static int balance_parameters(const sl_model *m, int nstages, int *counts)
{
    int units = sl_partition_units(m, NULL);
    int *first = sl_alloc(sizeof(int) * (size_t)(units + 1));
    double *cost = sl_alloc(sizeof(double) * (size_t)units * (size_t)nstages);
    int rc = first && cost ? SL_OK : SL_ENOMEM;
    if (rc == SL_OK) {
        sl_partition_units(m, first);
        for (int u = 0; u < units; u++)
            for (int s = 0; s < nstages; s++)
                cost[(size_t)s * (size_t)units + (size_t)u] =
                    1.0 + (double)sl_model_params(m, first[u], first[u + 1]);
        rc = sl_partition_balance(units, nstages, cost, counts);
    }
    free(first);
    free(cost);
    return rc;
}

int sl_partition_cut(const sl_model *m, const sl_partition *p, const int *counts,
                     sl_stage_range *out)
{
    int n = sl_partition_chain_stages(p);
    SL_TRY(sl_partition_make(m, n, counts, out));
    for (int s = n; s < p->nstages; s++) out[s] = out[s % n];
    return SL_OK;
}

int sl_partition_from_config(const sl_config *cfg, const sl_model *m, sl_partition *out)
{
    memset(out, 0, sizeof *out);
    const char *sched = cfg->pipeline.schedule;
    out->ranks = cfg->pipeline.stages;
    out->chunks = cfg->pipeline.chunks;
    out->chains = !strcmp(sched, "chimera") ? 2 : 1;
    out->v_shape = !strcmp(sched, "zb-v") || !strcmp(sched, "dualpipev") || out->chains == 2;
    out->nstages = out->ranks * out->chunks;
    int n = sl_partition_chain_stages(out);
    out->stages = sl_alloc(sizeof(sl_stage_range) * (size_t)out->nstages);
    int *counts = sl_alloc(sizeof(int) * (size_t)n);
    int st = out->stages && counts ? SL_OK : SL_ENOMEM;
    const char *method = cfg->pipeline.partition ? cfg->pipeline.partition : "uniform";
    bool given = cfg->pipeline.npartition > 0;
    if (st == SL_OK && given)
        memcpy(counts, cfg->pipeline.partition_counts, sizeof(int) * (size_t)n);
    else if (st == SL_OK && !strcmp(method, "parameters"))
        st = balance_parameters(m, n, counts);
    else if (st == SL_OK && !strcmp(method, "time"))
        st = sl_fail(SL_EINVAL, "partition: a \"time\" partition comes from the plan, which "
                                "profiles the layers (sl_plan_build)");
    bool uniform = !given && !strcmp(method, "uniform");
    if (st == SL_OK) st = sl_partition_cut(m, out, uniform ? NULL : counts, out->stages);
    free(counts);
    if (st != SL_OK) sl_partition_free(out);
    return st;
}

void sl_partition_free(sl_partition *p)
{
    if (!p) return;
    free(p->stages);
    memset(p, 0, sizeof *p);
}

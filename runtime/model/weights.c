/* Host weights: init from a seed, load and save with nn.Sequential names. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/model/model.h"
#include "runtime/safetensors/safetensors.h"

int sl_weights_alloc(const sl_model *m, sl_weights *out)
{
    memset(out, 0, sizeof *out);
    out->nlayers = m->nlayers;
    out->weight = sl_alloc(sizeof(float *) * (size_t)(m->nlayers + 1));
    out->bias = sl_alloc(sizeof(float *) * (size_t)(m->nlayers + 1));
    if (!out->weight || !out->bias) goto fail;
    for (int i = 0; i < m->nlayers; i++) {
        const sl_layer *l = &m->layers[i];
        if (l->kind != SL_LAYER_LINEAR) continue;
        out->weight[i] = sl_alloc(sizeof(float) * (size_t)l->out * (size_t)l->in);
        out->bias[i] = sl_alloc(sizeof(float) * (size_t)l->out);
        if (!out->weight[i] || !out->bias[i]) goto fail;
    }
    return SL_OK;
fail:
    sl_weights_free(out);
    return SL_ENOMEM;
}

void sl_weights_free(sl_weights *w)
{
    if (!w) return;
    for (int i = 0; i < w->nlayers; i++) {
        if (w->weight) free(w->weight[i]);
        if (w->bias) free(w->bias[i]);
    }
    free(w->weight);
    free(w->bias);
    memset(w, 0, sizeof *w);
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int sl_weights_init(const sl_model *m, uint64_t seed, sl_weights *out)
{
    SL_TRY(sl_weights_alloc(m, out));
    uint64_t s = seed;
    for (int i = 0; i < m->nlayers; i++) {
        const sl_layer *l = &m->layers[i];
        if (l->kind != SL_LAYER_LINEAR) continue;
        float bound = 1.0f / sqrtf((float)l->in);
        size_t nw = (size_t)l->out * (size_t)l->in;
        for (size_t k = 0; k < nw; k++) {
            float u = (float)(splitmix64(&s) >> 40) * 0x1.0p-24f;
            out->weight[i][k] = (2.0f * u - 1.0f) * bound;
        }
        for (int k = 0; k < l->out; k++) {
            float u = (float)(splitmix64(&s) >> 40) * 0x1.0p-24f;
            out->bias[i][k] = (2.0f * u - 1.0f) * bound;
        }
    }
    return SL_OK;
}

static int check_tensor(const sl_tensor *t, const char *source, const char *name, int64_t d0,
                        int64_t d1, int ndim)
{
    if (!t)
        return sl_fail(SL_EFORMAT, "weights %s: tensor '%s' is missing (the model needs it)",
                       source, name);
    if (t->dtype != SL_DTYPE_F32 && t->dtype != SL_DTYPE_F64)
        return sl_fail(SL_EFORMAT, "weights %s: tensor '%s' is %s, expected F32", source, name,
                       sl_dtype_name(t->dtype));
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        char got[128] = "[";
        for (int d = 0; d < t->ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "",
                     (long long)t->shape[d]);
        strcat(got, "]");
        if (ndim == 2)
            return sl_fail(SL_EFORMAT,
                           "weights %s: tensor '%s' has shape %s, the model needs "
                           "[%lld, %lld]",
                           source, name, got, (long long)d0, (long long)d1);
        return sl_fail(SL_EFORMAT, "weights %s: tensor '%s' has shape %s, the model needs [%lld]",
                       source, name, got, (long long)d0);
    }
    return SL_OK;
}

int sl_weights_from_safetensors(const sl_model *m, const sl_safetensors *st, const char *prefix,
                                const char *source, sl_weights *out)
{
    SL_TRY(sl_weights_alloc(m, out));
    size_t plen = strlen(prefix);
    int rc = SL_OK;
    char name[96];
    size_t used = 0;
    for (int i = 0; rc == SL_OK && i < m->nlayers; i++) {
        const sl_layer *l = &m->layers[i];
        if (l->kind != SL_LAYER_LINEAR) continue;
        snprintf(name, sizeof name, "%s%d.weight", prefix, i);
        const sl_tensor *t = sl_safetensors_find(st, name);
        rc = check_tensor(t, source, name, l->out, l->in, 2);
        if (rc == SL_OK) rc = sl_tensor_to_f32(t, out->weight[i]);
        snprintf(name, sizeof name, "%s%d.bias", prefix, i);
        t = sl_safetensors_find(st, name);
        if (rc == SL_OK) rc = check_tensor(t, source, name, l->out, 0, 1);
        if (rc == SL_OK) rc = sl_tensor_to_f32(t, out->bias[i]);
        used += 2;
    }
    /* Any other tensor under the prefix is one the model does not have. */
    for (size_t k = 0; rc == SL_OK && k < st->count; k++) {
        const char *n = st->tensors[k].name;
        if (strncmp(n, prefix, plen) != 0) continue;
        char *end;
        long idx = strtol(n + plen, &end, 10);
        bool known = end != n + plen && idx >= 0 && idx < m->nlayers &&
                     m->layers[idx].kind == SL_LAYER_LINEAR &&
                     (!strcmp(end, ".weight") || !strcmp(end, ".bias"));
        if (!known)
            rc = sl_fail(SL_EFORMAT,
                         "weights %s: tensor '%s' does not belong to the model (linear layers "
                         "own '{index}.weight' and '{index}.bias', index as in model.layers)",
                         source, n);
    }
    (void)used;
    if (rc != SL_OK) sl_weights_free(out);
    return rc;
}

int sl_weights_load(const sl_model *m, const char *path, sl_weights *out)
{
    sl_safetensors st;
    memset(out, 0, sizeof *out);
    int rc = sl_safetensors_load(path, &st);
    if (rc != SL_OK) return sl_fail_context(rc, "weights: ");
    rc = sl_weights_from_safetensors(m, &st, "", path, out);
    sl_safetensors_free(&st);
    return rc;
}

int sl_weights_save(const sl_model *m, const sl_weights *w, const char *path)
{
    sl_tensor *t = sl_alloc(sizeof(sl_tensor) * (size_t)(2 * m->nlayers + 1));
    char(*names)[32] = sl_alloc(32 * (size_t)(2 * m->nlayers + 1));
    if (!t || !names) {
        free(t);
        free(names);
        return SL_ENOMEM;
    }
    size_t n = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const sl_layer *l = &m->layers[i];
        if (l->kind != SL_LAYER_LINEAR) continue;
        snprintf(names[n], 32, "%d.weight", i);
        t[n] = (sl_tensor){.name = names[n],
                           .dtype = SL_DTYPE_F32,
                           .ndim = 2,
                           .shape = {l->out, l->in},
                           .data = w->weight[i]};
        n++;
        snprintf(names[n], 32, "%d.bias", i);
        t[n] = (sl_tensor){.name = names[n],
                           .dtype = SL_DTYPE_F32,
                           .ndim = 1,
                           .shape = {l->out},
                           .data = w->bias[i]};
        n++;
    }
    const char *k[] = {"format"}, *v[] = {"pt"};
    int rc = sl_safetensors_save(path, t, n, k, v, 1);
    free(t);
    free(names);
    return rc;
}

int sl_weights_from_config(const sl_config *cfg, const sl_model *m, sl_weights *out)
{
    if (cfg->model.init) return sl_weights_load(m, cfg->model.init, out);
    return sl_weights_init(m, cfg->model.seed, out);
}

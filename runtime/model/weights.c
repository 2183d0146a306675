/* Host weights, one array per parameter tensor: init from a seed, load and save by parameter
 * name, and the merge of the ranks' layers. */
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
    out->ntensors = m->ntensors;
    out->data = sl_alloc(sizeof(float *) * (size_t)m->ntensors);
    if (!out->data) goto fail;
    for (int p = 0; p < m->ntensors; p++)
        if (!(out->data[p] = sl_alloc(sizeof(float) * m->params[p].numel))) goto fail;
    return SL_OK;
fail:
    sl_weights_free(out);
    return SL_ENOMEM;
}

void sl_weights_free(sl_weights *w)
{
    if (!w) return;
    for (int p = 0; w->data && p < w->ntensors; p++) free(w->data[p]);
    free(w->data);
    memset(w, 0, sizeof *w);
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A uniform number in [0, 1) with the 24 bits a float holds exactly. */
static float uniform01(uint64_t *s)
{
    return (float)(splitmix64(s) >> 40) * 0x1.0p-24f;
}

/* A standard normal number by Box-Muller's cosine branch: two draws from the stream per number
 * (the sine branch is not kept, so each element costs the same two draws wherever it falls).
 * The first draw is moved to (0, 1] so that its log is finite. Computed in double: the float
 * result does not then depend on how the math library rounds logf or cosf. */
static float normal01(uint64_t *s)
{
    double u1 = ((double)(splitmix64(s) >> 40) + 1.0) * 0x1.0p-24;
    double u2 = (double)(splitmix64(s) >> 40) * 0x1.0p-24;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

int sl_weights_init(const sl_model *m, uint64_t seed, sl_weights *out)
{
    SL_TRY(sl_weights_alloc(m, out));
    /* One stream for the whole model, so a parameter's values depend on the seed and on the
     * parameters before it, not on how the model is cut into stages. */
    uint64_t s = seed;
    for (int p = 0; p < m->ntensors; p++) {
        const sl_param_spec *spec = &m->params[p].spec;
        float *x = out->data[p], scale = spec->scale;
        size_t n = m->params[p].numel;
        int twin = spec->tied_to ? sl_model_find_param(m, spec->tied_to) : -1;
        if (twin >= 0) { /* one tensor under two names: it takes no numbers of its own */
            memcpy(x, out->data[twin], n * sizeof(float));
            continue;
        }
        switch (spec->init) {
        case SL_INIT_UNIFORM:
            for (size_t k = 0; k < n; k++) {
                float u = uniform01(&s);
                x[k] = (2.0f * u - 1.0f) * scale;
            }
            break;
        case SL_INIT_NORMAL:
            for (size_t k = 0; k < n; k++) x[k] = normal01(&s) * scale;
            break;
        case SL_INIT_ZEROS:
            for (size_t k = 0; k < n; k++) x[k] = 0.0f;
            break;
        case SL_INIT_ONES:
            for (size_t k = 0; k < n; k++) x[k] = 1.0f;
            break;
        default:
            sl_weights_free(out);
            return sl_fail(SL_EINTERNAL,
                           "weights: parameter '%s' has init rule %d, which is not one",
                           m->params[p].name, (int)spec->init);
        }
    }
    return SL_OK;
}

/* "[a, b]" for a shape. */
static void shape_text(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    snprintf(buf, cap, "[");
    for (int d = 0; d < ndim; d++)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%lld", d ? ", " : "",
                 (long long)shape[d]);
    snprintf(buf + strlen(buf), cap - strlen(buf), "]");
}

static int check_tensor(const sl_tensor *t, const char *source, const char *name,
                        const sl_param_spec *spec)
{
    if (!t)
        return sl_fail(SL_EFORMAT, "weights %s: tensor '%s' is missing (the model needs it)",
                       source, name);
    if (t->dtype != SL_DTYPE_F32 && t->dtype != SL_DTYPE_F64)
        return sl_fail(SL_EFORMAT, "weights %s: tensor '%s' is %s, expected F32", source, name,
                       sl_dtype_name(t->dtype));
    bool same = t->ndim == spec->ndim;
    for (int d = 0; same && d < spec->ndim; d++) same = t->shape[d] == spec->shape[d];
    if (!same) {
        char got[128], want[128];
        shape_text(got, sizeof got, t->ndim, t->shape);
        shape_text(want, sizeof want, spec->ndim, spec->shape);
        return sl_fail(SL_EFORMAT, "weights %s: tensor '%s' has shape %s, the model needs %s",
                       source, name, got, want);
    }
    return SL_OK;
}

/* The tensor of parameter p in the file, or NULL. */
static const sl_tensor *find(const sl_model *m, const sl_safetensors *st, const char *prefix, int p)
{
    char name[sizeof m->params[0].name + 64];
    snprintf(name, sizeof name, "%s%s", prefix, m->params[p].name);
    return sl_safetensors_find(st, name);
}

/* A tensor PyTorch keeps in a state dict that is not a parameter: the causal-mask buffer
 * (attn.bias, attn.masked_bias) nanoGPT registers under PyTorch before 2.0. */
static bool is_buffer(const char *name)
{
    size_t n = strlen(name);
    return (n >= 10 && !strcmp(name + n - 10, ".attn.bias")) ||
           (n >= 17 && !strcmp(name + n - 17, ".attn.masked_bias"));
}

int sl_model_twin(const sl_model *m, int p)
{
    if (m->params[p].spec.tied_to) return sl_model_find_param(m, m->params[p].spec.tied_to);
    for (int q = 0; q < m->ntensors; q++)
        if (m->params[q].spec.tied_to && !strcmp(m->params[q].spec.tied_to, m->params[p].name))
            return q;
    return -1;
}

int sl_weights_from_safetensors(const sl_model *m, const sl_safetensors *st, const char *prefix,
                                const char *source, sl_weights *out)
{
    SL_TRY(sl_weights_alloc(m, out));
    size_t plen = strlen(prefix);
    int rc = SL_OK;
    char name[sizeof m->params[0].name + 64];
    /* Tied parameters are one tensor: a file may hold it under either name (safetensors keeps
     * one name of a shared tensor), and the missing name takes the other's values. */
    for (int p = 0; rc == SL_OK && p < m->ntensors; p++) {
        snprintf(name, sizeof name, "%s%s", prefix, m->params[p].name);
        const sl_tensor *t = find(m, st, prefix, p);
        int twin = sl_model_twin(m, p);
        if (!t && twin >= 0 && find(m, st, prefix, twin)) continue;
        rc = check_tensor(t, source, name, &m->params[p].spec);
        /* A NaN, an infinity or an F64 value beyond float's range is refused, naming it. */
        if (rc == SL_OK && (rc = sl_tensor_to_f32(t, out->data[p])) != SL_OK)
            sl_fail_context(rc, "weights %s", source);
    }
    for (int p = 0; rc == SL_OK && p < m->ntensors; p++) {
        int twin = sl_model_twin(m, p);
        if (twin >= 0 && !find(m, st, prefix, p))
            memcpy(out->data[p], out->data[twin], sizeof(float) * m->params[p].numel);
    }
    /* Any other tensor under the prefix is one the model does not have: most likely weights of
     * another model, which must not half-load. */
    for (size_t k = 0; rc == SL_OK && k < st->count; k++) {
        const char *n = st->tensors[k].name;
        if (strncmp(n, prefix, plen) != 0) continue;
        if (sl_model_find_param(m, n + plen) >= 0 || is_buffer(n + plen)) continue;
        if (m->ntensors == 0)
            rc = sl_fail(SL_EFORMAT,
                         "weights %s: tensor '%s' does not belong to the model (it has no "
                         "parameters)",
                         source, n);
        else
            rc = sl_fail(SL_EFORMAT,
                         "weights %s: tensor '%s' does not belong to the model (its parameters "
                         "are '{index}.{name}', index as in model.layers: '%s' to '%s')",
                         source, n, m->params[0].name, m->params[m->ntensors - 1].name);
    }
    if (rc != SL_OK) sl_weights_free(out);
    return rc;
}

int sl_weights_load(const sl_model *m, const char *path, sl_weights *out)
{
    sl_safetensors st;
    memset(out, 0, sizeof *out);
    int rc = sl_safetensors_load(path, &st);
    if (rc != SL_OK) return sl_fail_context(rc, "weights");
    rc = sl_weights_from_safetensors(m, &st, "", path, out);
    sl_safetensors_free(&st);
    return rc;
}

int sl_weights_save(const sl_model *m, const sl_weights *w, const char *path)
{
    sl_tensor *t = sl_alloc(sizeof(sl_tensor) * (size_t)m->ntensors);
    if (!t) return SL_ENOMEM;
    for (int p = 0; p < m->ntensors; p++) {
        const sl_param *q = &m->params[p];
        t[p] = (sl_tensor){
            .name = q->name, .dtype = SL_DTYPE_F32, .ndim = q->spec.ndim, .data = w->data[p]};
        memcpy(t[p].shape, q->spec.shape, sizeof(int64_t) * (size_t)q->spec.ndim);
    }
    const char *k[] = {"format"}, *v[] = {"pt"};
    int rc = sl_safetensors_save(path, t, (size_t)m->ntensors, k, v, 1);
    free(t);
    return rc;
}

/* Initial weights must hold one value per tied matrix: the two copies a pipeline keeps would
 * otherwise start apart and stay apart. (The ranks' own files, merged at the end, hold other
 * ranks' layers as they were: they are not checked.) */
static int check_tied_equal(const sl_model *m, const sl_weights *w, const char *source)
{
    for (int p = 0; p < m->ntensors; p++) {
        int twin = sl_model_twin(m, p);
        if (twin > p && memcmp(w->data[p], w->data[twin], sizeof(float) * m->params[p].numel) != 0)
            return sl_fail(SL_EFORMAT,
                           "weights %s: '%s' and '%s' are one tied matrix, but the file holds "
                           "different values under the two names (set model.gpt.tie_embeddings "
                           "false to train them apart)",
                           source, m->params[p].name, m->params[twin].name);
    }
    return SL_OK;
}

int sl_weights_from_config(const sl_config *cfg, const sl_model *m, sl_weights *out)
{
    if (!cfg->model.init) return sl_weights_init(m, cfg->model.seed, out);
    SL_TRY(sl_weights_load(m, cfg->model.init, out));
    int rc = check_tied_equal(m, out, cfg->model.init);
    if (rc != SL_OK) sl_weights_free(out);
    return rc;
}

void sl_weights_copy_layers(const sl_model *m, int first, int last, const sl_weights *src,
                            sl_weights *dst)
{
    for (int p = m->first_param[first]; p < m->first_param[last]; p++)
        memcpy(dst->data[p], src->data[p], sizeof(float) * m->params[p].numel);
}

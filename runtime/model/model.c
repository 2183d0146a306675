/* The model: its layers shaped one after another through the layer table, and the list of its
 * parameters with their full names. */
#include "runtime/model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

/* Parses and shapes every layer, giving each its prefix; counts the parameter tensors. */
static int build_layers(const sl_config *cfg, sl_model *m, int *ntensors)
{
    int width = m->inputs;
    m->max_width = width;
    *ntensors = 0;
    for (int i = 0; i < m->nlayers; i++) {
        sl_layer *l = &m->layers[i];
        if (sl_layer_parse(cfg->model.layers[i], l) != SL_OK)
            return sl_fail_context(SL_ECONFIG, "config: model.layers[%d]", i);
        l->in = width;
        l->gpt = cfg->model.gpt;
        for (int j = 0; j < i; j++) l->index += m->layers[j].kind == l->kind;
        snprintf(l->prefix, sizeof l->prefix, "%d.", i);
        if (l->kind->shape(l) != SL_OK)
            return sl_fail_context(SL_ECONFIG, "config: model.layers[%d]", i);
        if (l->kind->params) {
            sl_param_spec spec[SL_LAYER_MAX_PARAMS];
            *ntensors += l->kind->params(l, spec);
        }
        width = l->out;
        m->max_width = SL_MAX(m->max_width, width);
    }
    m->outputs = width;
    return SL_OK;
}

/* Lists every layer's parameters in model order with their full names and sizes. */
static int build_params(sl_model *m)
{
    int p = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const sl_layer *l = &m->layers[i];
        m->first_param[i] = p;
        if (!l->kind->params) continue;
        sl_param_spec spec[SL_LAYER_MAX_PARAMS];
        int n = l->kind->params(l, spec);
        for (int j = 0; j < n; j++, p++) {
            sl_param *q = &m->params[p];
            int len = snprintf(q->name, sizeof q->name, "%s%s", l->prefix, spec[j].name);
            if (len < 0 || (size_t)len >= sizeof q->name)
                return sl_fail(SL_EINTERNAL, "model: parameter name '%s%s' is longer than %zu",
                               l->prefix, spec[j].name, sizeof q->name - 1);
            q->layer = i;
            q->spec = spec[j];
            q->numel = 1;
            for (int d = 0; d < spec[j].ndim; d++) q->numel *= (size_t)spec[j].shape[d];
            if (!spec[j].tied_to) m->nparams += q->numel;
        }
    }
    m->first_param[m->nlayers] = p;
    return SL_OK;
}

int sl_model_init(const sl_config *cfg, sl_model *out)
{
    memset(out, 0, sizeof *out);
    out->inputs = cfg->model.inputs;
    out->nlayers = cfg->model.nlayers;
    out->loss = cfg->model.loss;
    const sl_loss *loss = sl_loss_get(out->loss);
    if (!loss) return sl_fail(SL_ECONFIG, "config: model.loss %d is not a loss", (int)out->loss);
    out->layers = sl_alloc(sizeof(sl_layer) * (size_t)out->nlayers);
    out->first_param = sl_alloc(sizeof(int) * (size_t)(out->nlayers + 1));
    int st = out->layers && out->first_param ? SL_OK : SL_ENOMEM;
    if (st == SL_OK) st = build_layers(cfg, out, &out->ntensors);
    if (st == SL_OK && !(out->params = sl_alloc(sizeof(sl_param) * (size_t)out->ntensors)))
        st = SL_ENOMEM;
    if (st == SL_OK) st = build_params(out);
    out->positions = cfg->model.has_gpt ? cfg->model.gpt.block_size : 1;
    out->classes = out->outputs / out->positions;
    if (st == SL_OK && out->classes < loss->min_outputs)
        st = sl_fail(SL_ECONFIG,
                     "config: model.loss %s needs at least %d classes (the last layer gives %d)",
                     loss->name, loss->min_outputs, out->classes);
    if (st != SL_OK) sl_model_free(out);
    return st;
}

void sl_model_free(sl_model *m)
{
    if (!m) return;
    free(m->layers);
    free(m->first_param);
    free(m->params);
    memset(m, 0, sizeof *m);
}

size_t sl_model_params(const sl_model *m, int first, int last)
{
    size_t n = 0;
    for (int p = m->first_param[first]; p < m->first_param[last]; p++)
        if (!m->params[p].spec.tied_to) n += m->params[p].numel;
    return n;
}

size_t sl_model_stash_bytes(const sl_model *m, int first, int last)
{
    size_t n = 0;
    for (int i = first; i < last; i++) n += sl_layer_stash_bytes(&m->layers[i]);
    return n;
}

int sl_model_width(const sl_model *m, int i)
{
    if (i >= m->nlayers) return m->outputs;
    return m->layers[i].in;
}

int sl_model_find_param(const sl_model *m, const char *name)
{
    for (int p = 0; p < m->ntensors; p++)
        if (!strcmp(m->params[p].name, name)) return p;
    return -1;
}

/* Layers and model shapes. */
#include "runtime/model/model.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

int sl_layer_parse(const char *text, sl_layer *out)
{
    memset(out, 0, sizeof *out);
    if (!text) return sl_fail(SL_EINVAL, "layer: no text");
    if (!strncmp(text, "linear:", 7)) {
        const char *p = text + 7;
        char *end;
        errno = 0;
        long n = strtol(p, &end, 10);
        if (end == p || *end || errno || n < 1 || n > (1L << 24) || *p == '+' || *p == ' ')
            return sl_fail(SL_EINVAL, "layer '%s': linear needs a width 1..16777216", text);
        out->kind = SL_LAYER_LINEAR;
        out->out = (int)n;
        return SL_OK;
    }
    enum sl_activation act;
    for (int a = 0; a < SL_ACT_COUNT; a++) {
        if (!strcmp(text, sl_activation_name((enum sl_activation)a))) {
            act = (enum sl_activation)a;
            out->kind = SL_LAYER_ACTIVATION;
            out->act = act;
            return SL_OK;
        }
    }
    return sl_fail(SL_EINVAL, "unknown layer '%s' (linear:N, relu, tanh, sigmoid, gelu)", text);
}

int sl_model_init(const sl_config *cfg, sl_model *out)
{
    memset(out, 0, sizeof *out);
    out->inputs = cfg->model.inputs;
    out->nlayers = cfg->model.nlayers;
    out->loss = cfg->model.loss;
    out->layers = sl_alloc(sizeof(sl_layer) * (size_t)(out->nlayers + 1));
    if (!out->layers) return SL_ENOMEM;
    int width = out->inputs;
    out->max_width = width;
    for (int i = 0; i < out->nlayers; i++) {
        sl_layer *l = &out->layers[i];
        int st = sl_layer_parse(cfg->model.layers[i], l);
        if (st != SL_OK) {
            sl_model_free(out);
            return sl_fail_context(SL_ECONFIG, "config: model.layers[%d]: ", i);
        }
        l->in = width;
        if (l->kind == SL_LAYER_ACTIVATION)
            l->out = width;
        else
            out->nparams += (size_t)l->out * (size_t)l->in + (size_t)l->out;
        width = l->out;
        out->max_width = SL_MAX(out->max_width, width);
    }
    out->outputs = width;
    if (out->loss == SL_LOSS_CROSS_ENTROPY && width < 2) {
        sl_model_free(out);
        return sl_fail(SL_ECONFIG,
                       "config: model.loss cross_entropy needs at least 2 outputs "
                       "(the last linear layer has %d)",
                       width);
    }
    return SL_OK;
}

void sl_model_free(sl_model *m)
{
    if (!m) return;
    free(m->layers);
    memset(m, 0, sizeof *m);
}

size_t sl_model_params(const sl_model *m, int first, int last)
{
    size_t n = 0;
    for (int i = first; i < last; i++)
        if (m->layers[i].kind == SL_LAYER_LINEAR)
            n += (size_t)m->layers[i].out * (size_t)m->layers[i].in + (size_t)m->layers[i].out;
    return n;
}

int sl_model_width(const sl_model *m, int i)
{
    if (i >= m->nlayers) return m->outputs;
    return m->layers[i].in;
}

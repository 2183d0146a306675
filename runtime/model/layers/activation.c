/* Elementwise activations (relu, tanh, sigmoid, gelu): one table row each, all sharing the
 * functions below, which read the activation from the layer (set by parse from the row's name). */
#include "core/core.h"
#include "runtime/model/layers/layers_impl.h"

static int act_parse(const sl_layer_kind *kind, const char *arg, sl_layer *l)
{
    if (arg) return sl_fail(SL_EINVAL, "%s takes no argument", kind->name);
    /* The row's name is the backends' name for the activation, so the two cannot drift apart. */
    if (sl_activation_parse(kind->name, &l->act) != SL_OK)
        return sl_fail(SL_EINTERNAL, "layer kind %s is not an activation the backends know",
                       kind->name);
    return SL_OK;
}

static int act_shape(sl_layer *l)
{
    l->out = l->in;
    return SL_OK;
}

static int act_forward(const sl_layer_pass *p)
{
    return sl_act_forward(p->dev, p->layer->act, p->rows * (size_t)p->layer->out, p->x, p->y);
}

static int act_backward_input(const sl_layer_pass *p)
{
    if (!p->dx) return SL_OK;
    /* The derivative is taken at the layer's input, which the stage keeps anyway (it is the
     * previous layer's output), so nothing extra is kept. */
    return sl_act_backward(p->dev, p->layer->act, p->rows * (size_t)p->layer->out, p->x, p->dy,
                           p->dx);
}

static double act_flops(const sl_layer *l, enum sl_layer_phase phase)
{
    /* Counted as one operation per element each way: next to the linear layers' products this
     * is noise, and the true cost of tanh or erf depends on the backend's math library. */
    return phase == SL_PHASE_W ? 0.0 : (double)l->out;
}

#define ACTIVATION_ROW(NAME)                                                                       \
    {                                                                                              \
        .name = NAME, .syntax = NAME, .parse = act_parse, .shape = act_shape, .params = NULL,      \
        .keep = NULL, .forward = act_forward, .backward_input = act_backward_input,                \
        .backward_weight = NULL, .flops = act_flops,                                               \
    }

const sl_layer_kind sl__layer_relu = ACTIVATION_ROW("relu");
const sl_layer_kind sl__layer_tanh = ACTIVATION_ROW("tanh");
const sl_layer_kind sl__layer_sigmoid = ACTIVATION_ROW("sigmoid");
const sl_layer_kind sl__layer_gelu = ACTIVATION_ROW("gelu");
const sl_layer_kind sl__layer_gelu_tanh = ACTIVATION_ROW("gelu_tanh");

/* linear:N, PyTorch's nn.Linear(in, N): y = x W^T + b with W [N, in] and b [N]. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "core/core.h"
#include "runtime/model/layers/layers_impl.h"

/* The widest layer allowed: 2^24 keeps every [rows, width] offset the kernels compute well
 * inside their index types. */
#define LINEAR_MAX_WIDTH (1L << 24)

static int linear_parse(const sl_layer_kind *kind, const char *arg, sl_layer *l)
{
    (void)kind;
    /* strtol alone would take a sign or leading blanks ("linear:+3", "linear: 3"); the config
     * text has to be the plain number. */
    if (arg) {
        char *end;
        errno = 0;
        long n = strtol(arg, &end, 10);
        if (end != arg && !*end && !errno && n >= 1 && n <= LINEAR_MAX_WIDTH && *arg != '+' &&
            *arg != ' ') {
            l->arg = (int)n;
            return SL_OK;
        }
    }
    return sl_fail(SL_EINVAL, "linear needs a width 1..%ld", LINEAR_MAX_WIDTH);
}

static int linear_shape(sl_layer *l)
{
    l->out = l->arg;
    return SL_OK;
}

static int linear_params(const sl_layer *l, sl_param_spec *out)
{
    /* nn.Linear's reset_parameters: both tensors uniform in +-1/sqrt(fan_in). Both decay, as
     * they do in PyTorch when the whole model is one parameter group. */
    float bound = 1.0f / sqrtf((float)l->in);
    out[0] = (sl_param_spec){.name = "weight",
                             .ndim = 2,
                             .shape = {l->out, l->in},
                             .init = SL_INIT_UNIFORM,
                             .scale = bound,
                             .decay = true};
    out[1] = (sl_param_spec){.name = "bias",
                             .ndim = 1,
                             .shape = {l->out},
                             .init = SL_INIT_UNIFORM,
                             .scale = bound,
                             .decay = true};
    return 2;
}

static int linear_forward(const sl_layer_pass *p)
{
    const sl_layer *l = p->layer;
    return sl__linear_forward(p->dev, p->rows, (size_t)l->in, (size_t)l->out, p->x, p->param[0],
                              p->param[1], p->y);
}

static int linear_backward_input(const sl_layer_pass *p)
{
    const sl_layer *l = p->layer;
    if (!p->dx) return SL_OK;
    return sl__linear_backward_input(p->dev, p->rows, (size_t)l->in, (size_t)l->out, p->dy,
                                     p->param[0], p->dx);
}

static int linear_backward_weight(const sl_layer_pass *p)
{
    const sl_layer *l = p->layer;
    return sl__linear_backward_weight(p->dev, p->rows, (size_t)l->in, (size_t)l->out, p->dy, p->x,
                                      p->grad[0], p->grad[1]);
}

static double linear_flops(const sl_layer *l, enum sl_layer_phase phase)
{
    /* A multiply and an add per weight for each of the three products; the bias adds one per
     * output to the forward (the add) and to the weight pass (the column sum). */
    double mac = 2.0 * (double)l->in * (double)l->out;
    return phase == SL_PHASE_I ? mac : mac + (double)l->out;
}

const sl_layer_kind sl__layer_linear = {
    .name = "linear",
    .syntax = "linear:N",
    .parse = linear_parse,
    .shape = linear_shape,
    .params = linear_params,
    .keep = NULL, /* the backward needs only the input and the weights */
    .forward = linear_forward,
    .backward_input = linear_backward_input,
    .backward_weight = linear_backward_weight,
    .flops = linear_flops,
};

/* embedding: the GPT's token and learned position embedding, nanoGPT's
 * transformer.wte(idx) + transformer.wpe(pos). Input: block_size int32 tokens per sample; output
 * [block_size, n_embd]. The first layer of a GPT: no gradient flows to its input. */
#include <stdio.h>

#include "core/core.h"
#include "runtime/model/layers/layers_impl.h"

static int embedding_parse(const sl_layer_kind *kind, const char *arg, sl_layer *l)
{
    (void)kind;
    (void)l;
    return arg ? sl_fail(SL_EINVAL, "embedding takes no argument (its shape is model.gpt's)")
               : SL_OK;
}

static int embedding_shape(sl_layer *l)
{
    const sl_gpt_config *g = &l->gpt;
    if (g->block_size < 1 || l->in != g->block_size)
        return sl_fail(SL_EINVAL, "embedding takes the model's block_size tokens (%d), not %d",
                       g->block_size, l->in);
    l->out = g->block_size * g->n_embd;
    snprintf(l->prefix, sizeof l->prefix, "transformer.");
    return SL_OK;
}

static int embedding_params(const sl_layer *l, sl_param_spec *out)
{
    const sl_gpt_config *g = &l->gpt;
    out[0] = sl__gpt_param("wte.weight", g->vocab_size, g->n_embd, SL_INIT_NORMAL, 0.02f);
    out[1] = sl__gpt_param("wpe.weight", g->block_size, g->n_embd, SL_INIT_NORMAL, 0.02f);
    return 2;
}

static int embedding_forward(const sl_layer_pass *p)
{
    const sl_gpt_config *g = &p->layer->gpt;
    return sl_embedding_forward(p->dev, p->rows, (size_t)g->block_size, (size_t)g->n_embd,
                                (size_t)g->vocab_size, p->x, p->param[0], p->param[1], p->y);
}

static int embedding_backward_input(const sl_layer_pass *p)
{
    if (p->dx)
        return sl_fail(SL_EINVAL, "embedding: tokens have no gradient (it must be the first "
                                  "layer)");
    return SL_OK;
}

static int embedding_backward_weight(const sl_layer_pass *p)
{
    const sl_gpt_config *g = &p->layer->gpt;
    return sl_embedding_backward(p->dev, p->rows, (size_t)g->block_size, (size_t)g->n_embd,
                                 (size_t)g->vocab_size, p->x, p->dy, p->grad[0], p->grad[1]);
}

static double embedding_flops(const sl_layer *l, enum sl_layer_phase phase)
{
    /* one add per output element forward, one per element of the gradient sums */
    return phase == SL_PHASE_I ? 0.0 : 2.0 * (double)l->out;
}

const sl_layer_kind sl__layer_embedding = {
    .name = "embedding",
    .syntax = "embedding",
    .parse = embedding_parse,
    .shape = embedding_shape,
    .params = embedding_params,
    .keep = NULL,
    .forward = embedding_forward,
    .backward_input = embedding_backward_input,
    .backward_weight = embedding_backward_weight,
    .flops = embedding_flops,
};

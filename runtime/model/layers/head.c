/* head: the GPT's final layer norm and vocabulary projection, nanoGPT's
 * lm_head(transformer.ln_f(x)): [block_size, n_embd] -> [block_size, vocab_size] logits. With
 * tie_embeddings, lm_head.weight is transformer.wte.weight (one tensor, nanoGPT's weight tying). */
#include <stdio.h>

#include "core/core.h"
#include "runtime/model/layers/layers_impl.h"

enum { LNF_W, LNF_B, LM_W };
enum { K_LNF, K_MEAN, K_RSTD, K_DLNF, K_COUNT };
_Static_assert(K_COUNT <= SL_LAYER_MAX_KEEP, "the head keeps more buffers than a layer may");

static int head_parse(const sl_layer_kind *kind, const char *arg, sl_layer *l)
{
    (void)kind;
    (void)l;
    return arg ? sl_fail(SL_EINVAL, "head takes no argument (its shape is model.gpt's)") : SL_OK;
}

static int head_shape(sl_layer *l)
{
    const sl_gpt_config *g = &l->gpt;
    if (l->in != g->block_size * g->n_embd)
        return sl_fail(SL_EINVAL, "head takes [block_size, n_embd] activations (%d), not %d",
                       g->block_size * g->n_embd, l->in);
    if (!g->bias)
        return sl_fail(SL_EUNSUPPORTED, "model.gpt.bias false is not supported yet (ln_f has a "
                                        "bias)");
    l->out = g->block_size * g->vocab_size;
    l->prefix[0] = '\0'; /* its names are whole: transformer.ln_f.*, lm_head.weight */
    return SL_OK;
}

static int head_params(const sl_layer *l, sl_param_spec *out)
{
    const sl_gpt_config *g = &l->gpt;
    out[LNF_W] = sl__gpt_param("transformer.ln_f.weight", g->n_embd, 0, SL_INIT_ONES, 0);
    out[LNF_B] = sl__gpt_param("transformer.ln_f.bias", g->n_embd, 0, SL_INIT_ZEROS, 0);
    out[LM_W] = sl__gpt_param("lm_head.weight", g->vocab_size, g->n_embd, SL_INIT_NORMAL, 0.02f);
    if (g->tie_embeddings) out[LM_W].tied_to = "transformer.wte.weight";
    return LM_W + 1;
}

static int head_keep(const sl_layer *l, size_t *w)
{
    size_t T = (size_t)l->gpt.block_size, C = (size_t)l->gpt.n_embd;
    w[K_LNF] = T * C;
    w[K_MEAN] = T;
    w[K_RSTD] = T;
    w[K_DLNF] = T * C;
    return K_COUNT;
}

static int head_forward(const sl_layer_pass *p)
{
    const sl_gpt_config *g = &p->layer->gpt;
    size_t N = p->rows * (size_t)g->block_size, C = (size_t)g->n_embd;
    SL_TRY(sl_layernorm_forward(p->dev, N, C, p->x, p->param[LNF_W], p->param[LNF_B],
                                p->keep[K_LNF], p->keep[K_MEAN], p->keep[K_RSTD]));
    return sl__linear_forward(p->dev, N, C, (size_t)g->vocab_size, p->keep[K_LNF], p->param[LM_W],
                              NULL, p->y);
}

static int head_backward_input(const sl_layer_pass *p)
{
    const sl_gpt_config *g = &p->layer->gpt;
    size_t N = p->rows * (size_t)g->block_size, C = (size_t)g->n_embd;
    SL_TRY(sl__linear_backward_input(p->dev, N, C, (size_t)g->vocab_size, p->dy, p->param[LM_W],
                                     p->keep[K_DLNF]));
    /* ln_f's gain and bias take their gradient here, with dx (see the block) */
    sl_buffer *dx = p->dx ? p->dx : p->keep[K_DLNF];
    return sl_layernorm_backward(p->dev, N, C, p->keep[K_DLNF], p->x, p->keep[K_MEAN],
                                 p->keep[K_RSTD], p->param[LNF_W], dx, p->grad[LNF_W],
                                 p->grad[LNF_B]);
}

static int head_backward_weight(const sl_layer_pass *p)
{
    const sl_gpt_config *g = &p->layer->gpt;
    size_t N = p->rows * (size_t)g->block_size;
    return sl__linear_backward_weight(p->dev, N, (size_t)g->n_embd, (size_t)g->vocab_size, p->dy,
                                      p->keep[K_LNF], p->grad[LM_W], NULL);
}

static double head_flops(const sl_layer *l, enum sl_layer_phase phase)
{
    double T = l->gpt.block_size, C = l->gpt.n_embd, V = l->gpt.vocab_size;
    return 2.0 * T * C * V + (phase == SL_PHASE_W ? 0.0 : 8.0 * T * C);
}

const sl_layer_kind sl__layer_head = {
    .name = "head",
    .syntax = "head",
    .parse = head_parse,
    .shape = head_shape,
    .params = head_params,
    .keep = head_keep,
    .forward = head_forward,
    .backward_input = head_backward_input,
    .backward_weight = head_backward_weight,
    .flops = head_flops,
};

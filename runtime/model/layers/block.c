/* block: one GPT-2 decoder block as nanoGPT's Block, pre-LN:
 *   x2 = x + c_proj(attn(ln_1(x)));  out = x2 + mlp.c_proj(gelu(mlp.c_fc(ln_2(x2))))
 * with causal multi-head self-attention from one c_attn projection [3C, C]. Activations are
 * [B, T, C] (B = the pass's rows, T = block_size, C = n_embd, H = n_head heads of hs = C/H). */
#include <math.h>
#include <stdio.h>

#include "core/core.h"
#include "runtime/model/layers/layers_impl.h"

/* Parameters, in nanoGPT's state-dict order. */
enum { LN1_W, LN1_B, ATTN_W, ATTN_B, APROJ_W, APROJ_B, LN2_W, LN2_B, FC_W, FC_B, MPROJ_W, MPROJ_B };

/* What the forward keeps for the backward (the first group) and what the input pass leaves for
 * the weight pass or uses as work space (the second). */
enum {
    K_LN1,   /* ln_1(x) [T, C] */
    K_MEAN1, /* its mean and rstd [T] */
    K_RSTD1,
    K_QKV, /* c_attn's output [T, 3C]: q, k, v, each head read in place (hs of each C) */
    K_ATT, /* attention probabilities [H, T, T] */
    K_Y,   /* att @ v, written head by head into [T, C]: attn.c_proj's input */
    K_X2,  /* the first residual [T, C] */
    K_LN2, /* ln_2(x2) [T, C], mean and rstd [T] */
    K_MEAN2,
    K_RSTD2,
    K_FC,   /* mlp.c_fc's output [T, 4C] */
    K_GELU, /* gelu of it: mlp.c_proj's input */
    /* the input pass's: */
    K_DX2,  /* the gradient at x2 (attn.c_proj's output gradient) [T, C] */
    K_DQKV, /* c_attn's output gradient [T, 3C] */
    K_DFC,  /* mlp.c_fc's output gradient [T, 4C] */
    K_DTMP, /* work space [T, 4C] */
    K_DATT, /* the attention's work space: the gradient of its scores [H, T, T] */
    K_DLN1, /* ln_1's input gradient where the pass has no dx [T, C] */
    K_COUNT
};
_Static_assert(K_COUNT <= SL_LAYER_MAX_KEEP, "the block keeps more buffers than a layer may");

typedef struct dims {
    size_t B, T, C, H, hs, N; /* N = B*T rows of C */
    float scale;              /* 1 / sqrt(hs) */
} dims;

static dims dims_of(const sl_layer_pass *p)
{
    const sl_gpt_config *g = &p->layer->gpt;
    dims d = {
        .B = p->rows, .T = (size_t)g->block_size, .C = (size_t)g->n_embd, .H = (size_t)g->n_head};
    d.hs = d.C / d.H;
    d.N = d.B * d.T;
    d.scale = 1.0f / sqrtf((float)d.hs);
    return d;
}

static int block_parse(const sl_layer_kind *kind, const char *arg, sl_layer *l)
{
    (void)kind;
    (void)l;
    return arg ? sl_fail(SL_EINVAL, "block takes no argument (its shape is model.gpt's)") : SL_OK;
}

static int block_shape(sl_layer *l)
{
    const sl_gpt_config *g = &l->gpt;
    if (g->n_head < 1 || g->n_embd % g->n_head)
        return sl_fail(SL_EINVAL, "block: n_embd %d is not a multiple of n_head %d", g->n_embd,
                       g->n_head);
    if (l->in != g->block_size * g->n_embd)
        return sl_fail(SL_EINVAL, "block takes [block_size, n_embd] activations (%d), not %d",
                       g->block_size * g->n_embd, l->in);
    if (!g->bias)
        return sl_fail(SL_EUNSUPPORTED, "model.gpt.bias false is not supported yet (the layer "
                                        "norms and linear layers of a block have biases)");
    l->out = l->in;
    snprintf(l->prefix, sizeof l->prefix, "transformer.h.%d.", l->index);
    return SL_OK;
}

static int block_params(const sl_layer *l, sl_param_spec *out)
{
    const sl_gpt_config *g = &l->gpt;
    int64_t C = g->n_embd;
    /* nanoGPT: normal(0, 0.02) for every linear weight, the residual projections scaled by
     * 1/sqrt(2 n_layer); biases zero; layer norms one and zero. */
    float proj = 0.02f / sqrtf(2.0f * (float)g->n_layer);
    out[LN1_W] = sl__gpt_param("ln_1.weight", C, 0, SL_INIT_ONES, 0);
    out[LN1_B] = sl__gpt_param("ln_1.bias", C, 0, SL_INIT_ZEROS, 0);
    out[ATTN_W] = sl__gpt_param("attn.c_attn.weight", 3 * C, C, SL_INIT_NORMAL, 0.02f);
    out[ATTN_B] = sl__gpt_param("attn.c_attn.bias", 3 * C, 0, SL_INIT_ZEROS, 0);
    out[APROJ_W] = sl__gpt_param("attn.c_proj.weight", C, C, SL_INIT_NORMAL, proj);
    out[APROJ_B] = sl__gpt_param("attn.c_proj.bias", C, 0, SL_INIT_ZEROS, 0);
    out[LN2_W] = sl__gpt_param("ln_2.weight", C, 0, SL_INIT_ONES, 0);
    out[LN2_B] = sl__gpt_param("ln_2.bias", C, 0, SL_INIT_ZEROS, 0);
    out[FC_W] = sl__gpt_param("mlp.c_fc.weight", 4 * C, C, SL_INIT_NORMAL, 0.02f);
    out[FC_B] = sl__gpt_param("mlp.c_fc.bias", 4 * C, 0, SL_INIT_ZEROS, 0);
    out[MPROJ_W] = sl__gpt_param("mlp.c_proj.weight", C, 4 * C, SL_INIT_NORMAL, proj);
    out[MPROJ_B] = sl__gpt_param("mlp.c_proj.bias", C, 0, SL_INIT_ZEROS, 0);
    return MPROJ_B + 1;
}

static int block_keep(const sl_layer *l, size_t *w)
{
    size_t T = (size_t)l->gpt.block_size, C = (size_t)l->gpt.n_embd, H = (size_t)l->gpt.n_head;
    size_t TC = T * C;
    size_t widths[K_COUNT] = {
        [K_LN1] = TC,         [K_MEAN1] = T,     [K_RSTD1] = T,    [K_QKV] = 3 * TC,
        [K_ATT] = H * T * T,  [K_Y] = TC,        [K_X2] = TC,      [K_LN2] = TC,
        [K_MEAN2] = T,        [K_RSTD2] = T,     [K_FC] = 4 * TC,  [K_GELU] = 4 * TC,
        [K_DX2] = TC,         [K_DQKV] = 3 * TC, [K_DFC] = 4 * TC, [K_DTMP] = 4 * TC,
        [K_DATT] = H * T * T, [K_DLN1] = TC,
    };
    for (int i = 0; i < K_COUNT; i++) w[i] = widths[i];
    return K_COUNT;
}

static int block_forward(const sl_layer_pass *p)
{
    dims d = dims_of(p);
    sl_device *dev = p->dev;
    sl_buffer **k = p->keep, **w = p->param;
    /* attention: q, k, v from ln_1(x), causal softmax of q k^T / sqrt(hs), times v */
    SL_TRY(sl_layernorm_forward(dev, d.N, d.C, p->x, w[LN1_W], w[LN1_B], k[K_LN1], k[K_MEAN1],
                                k[K_RSTD1]));
    SL_TRY(sl__linear_forward(dev, d.N, d.C, 3 * d.C, k[K_LN1], w[ATTN_W], w[ATTN_B], k[K_QKV]));
    SL_TRY(sl_attention_forward(dev, d.B, d.T, d.H, d.hs, d.scale, k[K_QKV], k[K_ATT], k[K_Y]));
    /* x2 = x + c_proj(y) */
    SL_TRY(sl__linear_forward(dev, d.N, d.C, d.C, k[K_Y], w[APROJ_W], w[APROJ_B], k[K_X2]));
    SL_TRY(sl_axpy(dev, d.N * d.C, 1.0f, p->x, k[K_X2]));
    /* out = x2 + mlp(ln_2(x2)) */
    SL_TRY(sl_layernorm_forward(dev, d.N, d.C, k[K_X2], w[LN2_W], w[LN2_B], k[K_LN2], k[K_MEAN2],
                                k[K_RSTD2]));
    SL_TRY(sl__linear_forward(dev, d.N, d.C, 4 * d.C, k[K_LN2], w[FC_W], w[FC_B], k[K_FC]));
    SL_TRY(sl_act_forward(dev, SL_ACT_GELU, d.N * 4 * d.C, k[K_FC], k[K_GELU]));
    SL_TRY(sl__linear_forward(dev, d.N, 4 * d.C, d.C, k[K_GELU], w[MPROJ_W], w[MPROJ_B], p->y));
    return sl_axpy(dev, d.N * d.C, 1.0f, k[K_X2], p->y);
}

/* The gradients at every internal activation, from dy: the layer norms' parameter gradients are
 * made here (their kernel makes them with the input gradient); the three other output gradients
 * the weight pass needs stay in keep (K_DX2, K_DQKV, K_DFC). */
static int block_backward_input(const sl_layer_pass *p)
{
    dims d = dims_of(p);
    sl_device *dev = p->dev;
    sl_buffer **k = p->keep, **w = p->param, **g = p->grad;
    size_t NC = d.N * d.C;
    /* the MLP branch: dy -> dgelu -> dfc -> dln2 -> dx2 (plus dy, the residual) */
    SL_TRY(sl__linear_backward_input(dev, d.N, 4 * d.C, d.C, p->dy, w[MPROJ_W], k[K_DTMP]));
    SL_TRY(sl_gelu_backward(dev, d.N * 4 * d.C, k[K_FC], k[K_GELU], k[K_DTMP], k[K_DFC]));
    SL_TRY(sl__linear_backward_input(dev, d.N, d.C, 4 * d.C, k[K_DFC], w[FC_W], k[K_DTMP]));
    SL_TRY(sl_layernorm_backward(dev, d.N, d.C, k[K_DTMP], k[K_X2], k[K_MEAN2], k[K_RSTD2],
                                 w[LN2_W], k[K_DX2], g[LN2_W], g[LN2_B]));
    SL_TRY(sl_axpy(dev, NC, 1.0f, p->dy, k[K_DX2]));
    /* the attention branch: dx2 -> dy (merged heads, in K_DTMP) -> dq, dk, dv, written into
     * c_attn's output gradient */
    SL_TRY(sl__linear_backward_input(dev, d.N, d.C, d.C, k[K_DX2], w[APROJ_W], k[K_DTMP]));
    SL_TRY(sl_attention_backward(dev, d.B, d.T, d.H, d.hs, d.scale, k[K_QKV], k[K_ATT], k[K_DTMP],
                                 k[K_DATT], k[K_DQKV]));
    /* c_attn and ln_1 back to x, plus dx2 through the first residual */
    SL_TRY(sl__linear_backward_input(dev, d.N, d.C, 3 * d.C, k[K_DQKV], w[ATTN_W], k[K_DTMP]));
    sl_buffer *dx = p->dx ? p->dx : k[K_DLN1]; /* the layer norm's gradients are needed anyway */
    SL_TRY(sl_layernorm_backward(dev, d.N, d.C, k[K_DTMP], p->x, k[K_MEAN1], k[K_RSTD1], w[LN1_W],
                                 dx, g[LN1_W], g[LN1_B]));
    return p->dx ? sl_axpy(dev, NC, 1.0f, k[K_DX2], p->dx) : SL_OK;
}

static int block_backward_weight(const sl_layer_pass *p)
{
    dims d = dims_of(p);
    sl_device *dev = p->dev;
    sl_buffer **k = p->keep, **g = p->grad;
    SL_TRY(sl__linear_backward_weight(dev, d.N, 4 * d.C, d.C, p->dy, k[K_GELU], g[MPROJ_W],
                                      g[MPROJ_B]));
    SL_TRY(
        sl__linear_backward_weight(dev, d.N, d.C, 4 * d.C, k[K_DFC], k[K_LN2], g[FC_W], g[FC_B]));
    SL_TRY(
        sl__linear_backward_weight(dev, d.N, d.C, d.C, k[K_DX2], k[K_Y], g[APROJ_W], g[APROJ_B]));
    return sl__linear_backward_weight(dev, d.N, d.C, 3 * d.C, k[K_DQKV], k[K_LN1], g[ATTN_W],
                                      g[ATTN_B]);
}

static double block_flops(const sl_layer *l, enum sl_layer_phase phase)
{
    /* per sample: the four linear maps 24 T C^2 (each pass), attention 4 T^2 C forward and
     * 8 T^2 C in the input pass */
    double T = l->gpt.block_size, C = l->gpt.n_embd;
    double linear = 24.0 * T * C * C, att = 4.0 * T * T * C;
    return phase == SL_PHASE_F ? linear + att : phase == SL_PHASE_I ? linear + 2 * att : linear;
}

const sl_layer_kind sl__layer_block = {
    .name = "block",
    .syntax = "block",
    .parse = block_parse,
    .shape = block_shape,
    .params = block_params,
    .keep = block_keep,
    .forward = block_forward,
    .backward_input = block_backward_input,
    .backward_weight = block_backward_weight,
    .flops = block_flops,
};

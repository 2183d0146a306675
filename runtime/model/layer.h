/* sluice layer kinds: the table every part of the runtime reads to know what a layer is.
 *
 * Each layer kind is one entry of a table filled with designated initializers, as the backends
 * are: how its config text parses, which parameters it owns (name, shape, initialisation rule,
 * whether weight decay applies), its forward pass, its backward pass split into the input
 * gradient and the weight gradient (zero-bubble's I and W), what it keeps between the forward
 * and the backward, and its FLOPs. Adding a layer kind is one source file under
 * runtime/model/layers/, one row in the table (layers.c) and its kernels; nothing else in the
 * runtime changes. Losses are a second, smaller table of the same shape.
 *
 * Widths are counted in 4-byte elements per sample (row): a layer maps [rows, in] to
 * [rows, out]. This header includes nothing of the config, so the config validates layer text
 * through it without a cycle. */
#ifndef SL_LAYER_H
#define SL_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sl_layer_kind;

/* A GPT's shape with nanoGPT's GPTConfig names (the config's model.gpt). The GPT's layers
 * (embedding, block, head) read it from their sl_layer. */
typedef struct sl_gpt_config {
    int vocab_size, block_size, n_layer, n_head, n_embd;
    bool bias;           /* biases in the linear layers and layer norms */
    bool tie_embeddings; /* lm_head.weight is transformer.wte.weight */
} sl_gpt_config;

/* One layer of a model, as parsed from its config text and shaped by the model. */
typedef struct sl_layer {
    const struct sl_layer_kind *kind;
    int in, out;            /* widths of the layer's input and output, per sample */
    int arg;                /* the kind's parsed argument: linear's width */
    enum sl_activation act; /* the activation kinds */
    char prefix[64];        /* parameter names start with it: "3." for model.layers[3] (the
                               GPT's kinds set their own in shape(): "transformer.h.0.") */
    int index;              /* how many layers of its kind come before it (a block's number) */
    sl_gpt_config gpt;      /* the GPT's layers: the model's shape */
} sl_layer;

/* How a parameter's initial values are drawn (sl_weights_init). */
enum sl_init {
    SL_INIT_UNIFORM, /* uniform in [-scale, scale): nn.Linear's rule with scale = 1/sqrt(fan_in) */
    SL_INIT_NORMAL,  /* normal with mean 0 and standard deviation `scale` */
    SL_INIT_ZEROS,
    SL_INIT_ONES,
};

/* One parameter tensor of a layer. */
typedef struct sl_param_spec {
    const char *name; /* after the layer's prefix: "weight", "bias" */
    int ndim;
    int64_t shape[4]; /* PyTorch's layout: nn.Linear's weight is [out, in] */
    enum sl_init init;
    float scale; /* the init rule's bound or standard deviation */
    bool decay;  /* weight decay applies (every parameter of linear, as one PyTorch param group) */
    const char *tied_to; /* the full name of the parameter this one shares (lm_head.weight is
                            transformer.wte.weight when a GPT ties them), or NULL */
} sl_param_spec;

#define SL_LAYER_MAX_PARAMS 16
#define SL_LAYER_MAX_KEEP   32

/* What one pass of one layer reads and writes, for rows samples. Buffers are fp32 device buffers
 * of the stage's device; the kind's entry points only enqueue kernels. */
typedef struct sl_layer_pass {
    sl_device *dev;
    const sl_layer *layer;
    size_t rows;
    sl_buffer *x;      /* the layer's input [rows, in] */
    sl_buffer *y;      /* its output [rows, out] (forward writes it; backward may read it) */
    sl_buffer **keep;  /* [nkeep] what the forward keeps for the backward (and the backward's
                          work space), keep[j] of [rows, widths[j]] as keep() lists them */
    sl_buffer *dy;     /* the output gradient [rows, out] (backward; read only) */
    sl_buffer *dx;     /* the input gradient [rows, in] to write (backward_input), NULL when no
                          one needs it (the model's first layer) */
    sl_buffer **param; /* [nparams] the layer's parameters, in the order params() lists them */
    sl_buffer **grad;  /* [nparams] their gradients, accumulated (+=) by backward_weight */
} sl_layer_pass;

/* Which pass FLOPs are counted for. */
enum sl_layer_phase { SL_PHASE_F, SL_PHASE_I, SL_PHASE_W };

typedef struct sl_layer_kind {
    const char *name;   /* "linear", "relu": the config text is NAME or NAME:ARG */
    const char *syntax; /* for messages: "linear:N" */
    /* Parses ARG (the text after "NAME:", NULL when there is none) into l->arg / l->act.
     * SL_EINVAL with a message saying what is allowed. */
    int (*parse)(const struct sl_layer_kind *kind, const char *arg, sl_layer *l);
    /* Sets l->out from l->in (the model calls it layer by layer). */
    int (*shape)(sl_layer *l);
    /* The layer's parameters, written to out[SL_LAYER_MAX_PARAMS]; returns how many. NULL: none.
     * A kind with parameters is a unit of the partition: layers without follow the one before. */
    int (*params)(const sl_layer *l, sl_param_spec *out);
    /* The buffers the forward keeps for the backward beyond its output (and the backward's work
     * space), as floats per sample, written to widths[SL_LAYER_MAX_KEEP]; returns how many.
     * NULL: none. */
    int (*keep)(const sl_layer *l, size_t *widths);
    int (*forward)(const sl_layer_pass *p);
    /* dx from dy (and x, y, keep, param); dx may be NULL (nothing needs it). It may leave in
     * keep what backward_weight needs, and it may accumulate the gradient of small parameters
     * whose kernel makes it with dx (a layer norm's gain and bias). */
    int (*backward_input)(const sl_layer_pass *p);
    /* grad += from dy, x and what backward_input kept. NULL for a kind without parameters. A
     * full backward is backward_input then backward_weight, on the same dy. */
    int (*backward_weight)(const sl_layer_pass *p);
    /* Floating-point operations per sample of each pass. */
    double (*flops)(const sl_layer *l, enum sl_layer_phase phase);
} sl_layer_kind;

/* Parses a layer's config text ("linear:128", "relu") through the table into `out` (kind, arg;
 * widths are set by the model). SL_EINVAL naming the text: an unknown name lists the kinds, a
 * bad argument says what the kind allows. */
int sl_layer_parse(const char *text, sl_layer *out);

/* Whether the layer's kind owns parameters (and so is a unit of the partition). */
static inline bool sl_layer_has_params(const sl_layer *l)
{
    return l->kind->params != NULL;
}

/* The syntax of every layer kind, for messages: "linear:N, relu, tanh, sigmoid, gelu". */
const char *sl_layer_kinds_text(void);

/* Bytes per sample a micro-batch's stash holds for this layer: its output and what it keeps. */
size_t sl_layer_stash_bytes(const sl_layer *l);

/* ------------------------------------------------------------------------------------------------
 * Losses */

enum sl_loss_kind { SL_LOSS_CROSS_ENTROPY, SL_LOSS_MSE, SL_LOSS_COUNT };

typedef struct sl_loss {
    const char *name; /* "cross_entropy", "mse" */
    bool int_targets; /* targets are int32 class ids [rows] (else f32 [rows, outputs]) */
    int min_outputs;  /* the last layer's width must be at least this */
    /* loss[rows] gets each row's unscaled loss; dout[rows, outputs] = scale * dloss/dout. */
    int (*forward_backward)(sl_device *dev, size_t rows, size_t outputs, sl_buffer *out,
                            sl_buffer *target, float scale, sl_buffer *loss, sl_buffer *dout);
} sl_loss;

/* The loss table entry of a kind, and the kind of a name (SL_EINVAL for an unknown one). */
const sl_loss *sl_loss_get(enum sl_loss_kind kind);
int sl_loss_parse(const char *name, enum sl_loss_kind *out);
/* 4-byte elements per sample of a loss's targets: one class id per position (a GPT's block_size
 * of them, else 1), or the outputs for f32 targets. */
static inline size_t sl_loss_target_width(const sl_loss *loss, size_t outputs, size_t positions)
{
    return loss->int_targets ? positions : outputs;
}

#ifdef __cplusplus
}
#endif
#endif

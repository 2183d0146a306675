/* sluice model: the layer list (each layer an entry of the layer table, layer.h), its parameters
 * by name, weight init and safetensors load/save, the partition into pipeline stages, and the
 * stage passes on a device that walk the layer table, plus the one-device trainer that is the
 * oracle the pipeline must equal.
 *
 * Names and shapes follow nn.Sequential: the index of a layer in model.layers is its module index,
 * so a linear layer i owns "{i}.weight" [out, in] and "{i}.bias" [out]; activations own nothing.
 *
 * Stage passes (sl_stage_forward / sl_stage_backward) do exactly the same kernel calls in the
 * same order whether a stage runs alone or in a pipeline, so a pipeline that feeds each stage the
 * same micro-batches in the same order gets bit-identical weights to sl_reference_train. */
#ifndef SL_MODEL_H
#define SL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"
#include "runtime/config/config.h"
#include "runtime/model/layer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------------
 * Layers and model */

/* One parameter tensor of the model, in model order (layer by layer, each layer's parameters in
 * the order its kind lists them). */
typedef struct sl_param {
    char name[96]; /* the full name: the layer's prefix + the kind's name, "0.weight" */
    int layer;     /* the layer that owns it */
    sl_param_spec spec;
    size_t numel;
} sl_param;

typedef struct sl_model {
    int inputs;  /* width of the model's input */
    int outputs; /* width of the last layer: classes for cross_entropy */
    int nlayers;
    sl_layer *layers; /* [nlayers] */
    int *first_param; /* [nlayers + 1]: layer i owns params [first_param[i], first_param[i+1]) */
    int ntensors;
    sl_param *params; /* [ntensors] */
    enum sl_loss_kind loss;
    int positions;  /* targets per sample: a GPT's block_size, else 1 */
    int classes;    /* the loss's classes per target: outputs / positions */
    size_t nparams; /* total parameter count, a tied parameter counted once */
    int max_width;  /* the widest activation (inputs included) */
} sl_model;

/* Builds the model from cfg->model (already validated by the config loader). */
int sl_model_init(const sl_config *cfg, sl_model *out);
void sl_model_free(sl_model *m);

/* Parameters (elements) of layers [first, last), a tied parameter counted where its twin is. */
size_t sl_model_params(const sl_model *m, int first, int last);
/* Bytes per sample a micro-batch's stash holds for layers [first, last) (sl_layer_stash_bytes). */
size_t sl_model_stash_bytes(const sl_model *m, int first, int last);
/* Width of the input of layer i (i == nlayers: the model's output width). */
int sl_model_width(const sl_model *m, int i);
/* The index of the parameter called `name`, or -1. */
int sl_model_find_param(const sl_model *m, const char *name);
/* The other name of tied parameter p (lm_head.weight <-> transformer.wte.weight), or -1. */
int sl_model_twin(const sl_model *m, int p);

/* ------------------------------------------------------------------------------------------------
 * Host weights */

/* One host array per parameter tensor of the model, in model order: data[p] holds
 * m->params[p].numel floats. */
typedef struct sl_weights {
    int ntensors;
    float **data;
} sl_weights;

int sl_weights_alloc(const sl_model *m, sl_weights *out);
void sl_weights_free(sl_weights *w);

/* Each parameter drawn by its init rule. Uniform and normal numbers come from one splitmix64
 * stream seeded with `seed`, parameter by parameter in model order, elements row-major: uniform
 * u = (next() >> 40) * 2^-24, value = (2u - 1) * scale (so linear layers get PyTorch's nn.Linear
 * rule, weight then bias). Normal numbers take two draws each, Box-Muller's cosine branch on
 * u1 = ((next() >> 40) + 1) * 2^-24 and u2 = (next() >> 40) * 2^-24, computed in double; zeros
 * and ones take no draws. (Not torch's RNG: the same seed gives the same weights here on every
 * machine, not the same as torch.manual_seed.) */
int sl_weights_init(const sl_model *m, uint64_t seed, sl_weights *out);

/* Loads every parameter by name from a safetensors file (F32, or F64 converted), checking every
 * name, dtype and shape; a missing tensor, an extra tensor or a wrong shape is SL_EFORMAT naming
 * the tensor. */
int sl_weights_load(const sl_model *m, const char *path, sl_weights *out);

/* The same from an already-parsed safetensors file, with tensor names prefixed by `prefix` ("" for
 * plain names); tensors outside that prefix are ignored when prefix is non-empty. */
struct sl_safetensors;
int sl_weights_from_safetensors(const sl_model *m, const struct sl_safetensors *st,
                                const char *prefix, const char *source, sl_weights *out);

/* Writes every parameter under its name. */
int sl_weights_save(const sl_model *m, const sl_weights *w, const char *path);

/* The weights the config asks for: model.init when given, else sl_weights_init(model.seed). */
int sl_weights_from_config(const sl_config *cfg, const sl_model *m, sl_weights *out);

/* Copies the parameters of layers [first, last) from `src` into `dst` (the merge of the weights
 * that the ranks of a pipeline trained, each its own layers). */
void sl_weights_copy_layers(const sl_model *m, int first, int last, const sl_weights *src,
                            sl_weights *dst);

/* ------------------------------------------------------------------------------------------------
 * Partition */

typedef struct sl_stage_range {
    int first, last; /* layers [first, last) */
} sl_stage_range;

typedef struct sl_partition {
    int nstages;            /* model stages S = ranks * chunks */
    int ranks;              /* pipeline.stages */
    int chunks;             /* pipeline.chunks */
    sl_stage_range *stages; /* [nstages]; model stage s runs on rank s mod ranks, or in a V */
    bool v_shape;           /* zb-v, dualpipev, chimera: rank r holds stages r and 2·ranks-1-r */
    /* Pipelines through the stages: 1, or 2 for chimera, whose stages 0..ranks-1 are the model cut
     * into `ranks` stages (the down replica) and stages ranks..2·ranks-1 the same cut again (the
     * up replica: stage ranks+k holds stage k's layers, on rank ranks-1-k). */
    int chains;
} sl_partition;

/* The stages of one chain (a whole model): nstages, or ranks for chimera's two replicas. */
static inline int sl_partition_chain_stages(const sl_partition *p)
{
    return p->chains > 1 ? p->nstages / p->chains : p->nstages;
}
/* Whether `stage` is the first of its chain (it reads the data) or the last (it has the loss). */
static inline bool sl_partition_is_first(const sl_partition *p, int stage)
{
    return stage % sl_partition_chain_stages(p) == 0;
}
static inline bool sl_partition_is_last(const sl_partition *p, int stage)
{
    return (stage + 1) % sl_partition_chain_stages(p) == 0;
}

/* Cuts the model into `nstages` model stages holding `counts[s]` layers with parameters each (NULL:
 * uniform, i.e. L/S each with the first L mod S stages taking one more). A layer without
 * parameters goes with the layer before it; those before the first layer with parameters go to
 * stage 0. More stages than layers with parameters is SL_ECONFIG. */
int sl_partition_make(const sl_model *m, int nstages, const int *counts, sl_stage_range *out);

/* The stages of a partition shaped like `p` (its nstages and chains) with `counts` layers with
 * parameters in each stage of one chain (sl_partition_chain_stages of them; NULL: uniform):
 * sl_partition_make, and for chimera the cut again for the up replica. */
int sl_partition_cut(const sl_model *m, const sl_partition *p, const int *counts,
                     sl_stage_range *out);

/* The units of the partition: unit u is layers [first[u], first[u+1]), a layer with parameters
 * with the layers without that follow it (unit 0 also takes those before it). Returns the number
 * of units; `first` (NULL: only count) gets units + 1 entries. */
int sl_partition_units(const sl_model *m, int *first);

/* The contiguous cut of `units` units into `nstages` stages (each at least one unit, in order)
 * whose costliest stage costs least, cost[s * units + u] being unit u's cost on model stage s
 * (stages may run on devices of different speeds); among the cuts as good as that, the one with
 * the most even stages (least sum of squared stage costs). Writes layers-with-parameters counts
 * per stage to counts[nstages]. SL_ECONFIG when nstages is not in 1..units, SL_EINVAL for a
 * negative or non-finite cost. */
int sl_partition_balance(int units, int nstages, const double *cost, int *counts);

/* The two model stages that hold the copies of a tied parameter (a GPT's wte and lm_head), first <
 * last, in out[0..1]; equal (both 0) when no tied parameter spans two stages. SL_ECONFIG when
 * tied parameters span more than one pair of stages (one pair is supported). */
int sl_partition_tied_stages(const sl_model *m, const sl_partition *p, int out[2]);

/* The partition the config asks for (pipeline.stages x pipeline.chunks): "uniform", an explicit
 * list, "parameters" (sl_partition_balance on each unit's parameters + 1), or "time" once the
 * plan has resolved its counts (pipeline.partition_counts); an unresolved "time" is SL_EINVAL. */
int sl_partition_from_config(const sl_config *cfg, const sl_model *m, sl_partition *out);
void sl_partition_free(sl_partition *p);
static inline int sl_partition_rank(const sl_partition *p, int stage)
{
    if (p->v_shape) return stage < p->ranks ? stage : 2 * p->ranks - 1 - stage;
    return stage % p->ranks;
}

/* ------------------------------------------------------------------------------------------------
 * A stage on a device: parameters, gradients, optimizer state */

typedef struct sl_stage {
    sl_device *dev;
    const sl_model *model;
    int first, last;          /* layers [first, last) */
    int first_param, nparams; /* the model's parameters [first_param, first_param + nparams) */
    /* Indexed by parameter - first_param. All fp32 device buffers of the parameter's shape: the
     * parameter, its gradient, and optimizer state made on first use (m: SGD's momentum, Adam's
     * first moment; v: Adam's second moment). */
    sl_buffer **param, **grad, **m, **v;
    int *alias;        /* [nparams]: -1, or the index whose parameter buffer a tied parameter shares
                          (it keeps a gradient of its own, summed into the twin's before the step, and
                          takes no update of its own) */
    int64_t step;      /* optimizer steps taken (Adam's t) */
    sl_buffer *sumsq;  /* [nparams] floats: sl_stage_grad_sumsq's sums, made on first use */
    float *sumsq_host; /* [nparams]: the same, read back */
} sl_stage;

/* Creates the stage's buffers on `dev` and uploads its layers' weights from `init` (a whole
 * model's host weights); gradients start at zero. A tied parameter shares the buffers of the one
 * it is tied to when that is in the same stage; when another stage holds the twin, each stage
 * keeps its own copy (equal at the start, since `init` has the same values under both names) and
 * the pipeline sums the two gradients before every optimizer step (the schedule's TIED), so the
 * copies stay bit-identical. The stage keeps a pointer to `model`. */
int sl_stage_create(sl_device *dev, const sl_model *model, int first, int last,
                    const sl_weights *init, sl_stage **out);
void sl_stage_free(sl_stage *s);

/* Downloads the stage's weights into the matching parameters of `w` (others untouched). */
int sl_stage_download(sl_stage *s, sl_weights *w);

/* Sets every gradient to zero (the start of a step). */
int sl_stage_zero_grad(sl_stage *s);

/* Adds the gradient of each tied parameter whose twin is on the same stage to the twin's and
 * zeroes its own (so a second call adds nothing); sl_stage_grad_sumsq and sl_stages_step call
 * it before they read the gradients. */
int sl_stage_sum_tied(sl_stage *s);

/* One optimizer step over every parameter of the stage at learning rate `lr` (increments s->step
 * first); weight decay applies to the parameters whose spec says so. */
int sl_stage_optimizer_step(sl_stage *s, const sl_optimizer_config *opt, double lr);

/* The index (parameter - first_param) of the stage's copy of a tied parameter whose twin another
 * stage holds, or -1 when it has none. */
int sl_stage_tied_param(const sl_stage *s);

/* The sum of the squares of every gradient of the stage (a tied parameter once: the one that names
 * its twin in tied_to is left out, also when the twin is on another stage), for the global
 * gradient norm; computed on the device, summed on the host in double. A parameter whose sum is
 * NaN or infinite is SL_ENONFINITE naming it and its layer. */
int sl_stage_grad_sumsq(sl_stage *s, double *sumsq);

/* Multiplies every gradient of the stage by `scale` (clip_grad_norm_'s clip coefficient). */
int sl_stage_scale_grad(sl_stage *s, float scale);

/* Optimizer state by parameter name, as PyTorch's optimizer state_dict names it: tensors
 * "<param>.exp_avg" and "<param>.exp_avg_sq" for Adam and AdamW, "<param>.momentum_buffer" for
 * SGD with momentum (plain SGD has none), fp32 of the parameter's shape; a parameter that shares
 * its tied twin's buffers has none of its own. (sl_stage.step, Adam's t, is the checkpoint's
 * step, kept by the caller.) */
typedef struct sl_state_tensors {
    size_t n, cap;
    struct sl_tensor *t; /* names and data owned */
} sl_state_tensors;

/* Appends the stage's weights (under the parameters' names, a tied twin's too) and its optimizer
 * state (as above) to `out`, downloaded from the device. */
int sl_stage_state_save(sl_stage *s, const sl_optimizer_config *opt, sl_state_tensors *out);
void sl_state_tensors_free(sl_state_tensors *t);

/* Loads the stage's optimizer state from `st` (an optimizer.safetensors, `source` its path for
 * messages), a tied parameter's from its twin's name when its own is absent (a checkpoint of
 * another partition), and sets s->step = step. A missing tensor or a wrong shape is SL_EFORMAT
 * naming it. */
struct sl_safetensors;
int sl_stage_state_load(sl_stage *s, const sl_optimizer_config *opt,
                        const struct sl_safetensors *st, const char *source, int64_t step);

/* The learning rate of step `step` (from 0): train.optimizer.lr, or nanoGPT's get_lr with
 * train.lr_schedule (linear warm-up to lr over warmup_steps as lr * (step + 1) /
 * (warmup_steps + 1), cosine decay to min_lr at decay_steps, min_lr after). */
double sl_lr_at(const sl_config *cfg, int64_t step);

/* clip_grad_norm_'s coefficient for a global gradient norm: max_norm / (norm + 1e-6) when that
 * is below 1, else 1 (also when clipping is off: max_norm 0). */
double sl_clip_coef(double max_norm, double norm);

/* The end of a step over the stages one process holds, as PyTorch's loop does it: the gradient
 * norm (when `want_norm` or train.grad_clip is set, else NaN), clipping to train.grad_clip, then
 * each stage's optimizer step at sl_lr_at(step), given back in `lr`. The norm is the square root
 * of `*sumsq` when that is given (the whole model's sum of squares, combined across ranks), else
 * of the sum over `stages`, which covers the whole model only when they hold all of it. That sum
 * is taken in every case, so a gradient that is not finite is SL_ENONFINITE naming its parameter
 * (sl_stage_grad_sumsq), before any update. */
int sl_stages_step(sl_stage *const *stages, int n, const sl_config *cfg, int64_t step,
                   bool want_norm, const double *sumsq, double *norm, double *lr);

/* What a stage keeps between a micro-batch's forward and backward: act[k] is the output of layer
 * first + k [rows, width], keep[k] the buffers its kind keeps (NULL for most). The stage input is
 * not part of the stash: the caller keeps it until the backward. Two scratch buffers of [rows,
 * widest] carry gradients through the backward. */
typedef struct sl_stash {
    size_t rows;
    int n; /* last - first */
    sl_buffer **act;
    sl_buffer ***keep;
    sl_buffer *scratch[2];
    /* Zero-bubble: the output gradient of each layer that owns parameter tensors, kept from I to
     * W (made by the first input-only pass; NULL for a stash that only ever ran full backwards,
     * and for a layer without tensors, such as delay, whose weight pass reads none). */
    sl_buffer **grad;
} sl_stash;

int sl_stash_alloc(const sl_stage *s, size_t rows, sl_stash *out);
void sl_stash_free(sl_stash *st);
/* The stage's output of the last forward ([rows, width(last)]). */
static inline sl_buffer *sl_stash_output(const sl_stash *st)
{
    return st->act[st->n - 1];
}

/* Forward of one micro-batch: each layer's kind's forward, in order.
 * input [rows, width(first)] -> stash->act[k] for each layer; output = sl_stash_output(stash). */
int sl_stage_forward(sl_stage *s, size_t rows, sl_buffer *input, sl_stash *stash);

/* Backward of one micro-batch, after its forward (the stash and `input` must be intact), layer by
 * layer from the last: each kind's backward_weight, then its backward_input.
 * dout [rows, width(last)] (read only) -> din [rows, width(first)] (NULL: not needed, as on the
 * first stage). Gradients are accumulated, so call sl_stage_zero_grad at the start of a step and
 * run the micro-batches in a fixed order. */
int sl_stage_backward(sl_stage *s, size_t rows, sl_buffer *input, sl_stash *stash, sl_buffer *dout,
                      sl_buffer *din);

/* Zero-bubble's split of sl_stage_backward (same arguments): the input pass carries the gradient
 * to `din` and keeps the output gradient of each layer with parameters in the stash; the weight
 * pass, later, runs the kinds' backward_weight on them: the same kernel calls a full backward
 * makes, so a split schedule trains to the same weights. */
int sl_stage_backward_input(sl_stage *s, size_t rows, sl_buffer *input, sl_stash *stash,
                            sl_buffer *dout, sl_buffer *din);
int sl_stage_backward_weight(sl_stage *s, size_t rows, sl_buffer *input, sl_stash *stash);

/* Loss of a micro-batch on the last stage's output, with its gradient (the model's loss kind).
 * out [rows, outputs]; target: int32 labels [rows] or f32 targets [rows, outputs] (as the loss
 * says); loss [rows] gets each row's unscaled loss; dout [rows, outputs] = scale * dloss/dout.
 * Pass scale = 1/batch so the step's loss is the mean over the mini-batch. */
int sl_loss_forward_backward(sl_device *dev, const sl_model *m, size_t rows, sl_buffer *out,
                             sl_buffer *target, float scale, sl_buffer *loss, sl_buffer *dout);

/* ------------------------------------------------------------------------------------------------
 * The one-device trainer: the oracle */

struct sl_data;

typedef struct sl_train_result {
    int steps;
    double *losses;       /* [steps]: mean loss over each step's mini-batch */
    double *lrs;          /* [steps]: the learning rate each step used */
    double *grad_norms;   /* [steps]: the gradient norm before clipping */
    sl_weights weights;   /* final weights */
    size_t test_rows;     /* 0 when there is no held-out share */
    double test_loss;     /* mean loss on the test rows */
    double test_accuracy; /* cross_entropy: share of test rows whose argmax is the label */
    double train_seconds;
} sl_train_result;

/* Trains the model on one device the way the pipeline does: for every step, the mini-batch's M
 * micro-batches in order, each forward then backward through the whole model (one stage holding
 * all layers), gradients accumulated, loss scaled by 1/batch, then one optimizer step. Then
 * evaluates on the test rows. Steps, batch, micro-batches and optimizer come from `cfg`. */
int sl_reference_train(sl_device *dev, const sl_config *cfg, const sl_model *m,
                       const sl_weights *init, struct sl_data *data, sl_train_result *out);
void sl_train_result_free(sl_train_result *r);

/* Evaluates the model held by `stages` (in order, covering every layer) on a whole dataset in
 * chunks of at most `chunk_rows` rows: mean loss and (cross_entropy) accuracy. */
struct sl_dataset;
int sl_evaluate(sl_stage *const *stages, int nstages, const struct sl_dataset *ds,
                size_t chunk_rows, double *loss, double *accuracy);

/* ------------------------------------------------------------------------------------------------
 * Sampling text from a GPT, as nanoGPT's sample.py does (sample.c)
 *
 * The model runs as one stage holding every layer, on one row: the context is cropped to its last
 * block_size tokens T, put at positions 0..n-1 of the window and padded with token 0 after them
 * (causal attention makes the logits of position n-1 depend on positions 0..n-1 alone), and the
 * logits of position n-1 give the next token. That token is drawn as sample.py draws it: logits /
 * temperature, top-k (the k largest kept, ties with the k-th kept too, the rest -inf), softmax,
 * one draw. The draws come from the PRNG below, not torch's: a seed gives the same text on every
 * machine (for the same logits), not the text torch.multinomial would give. */

/* xoshiro256** (Blackman and Vigna), its state filled by four outputs of splitmix64 started at
 * the seed. */
typedef struct sl_rng {
    uint64_t s[4];
} sl_rng;

void sl_rng_seed(sl_rng *r, uint64_t seed);
uint64_t sl_rng_next(sl_rng *r);
/* Uniform in [0, 1): (next() >> 11) * 2^-53. */
double sl_rng_uniform(sl_rng *r);

/* Picks the next token from logits[0..n-1]: each logit divided by `temperature` (> 0) in float,
 * top_k (0: off; k >= n is off too) keeps the logits not below the k-th largest, softmax in
 * double over what is kept, and one draw u = sl_rng_uniform: the first token whose cumulative
 * probability exceeds u. top_k 1 is the argmax (the lowest id among equal maxima) and takes no
 * draw. `work` holds n floats. A NaN logit is SL_EFORMAT; the token id goes to *token. */
int sl_sample_pick(const float *logits, int n, float temperature, int top_k, sl_rng *rng,
                   float *work, int *token);

/* A GPT on one device for generation: the stage, its stash of one row, the input window. */
typedef struct sl_generator sl_generator;

/* Puts every layer of `m` (a GPT: embedding first) on `dev` with weights `w` (a whole model's;
 * copied to the device, so `w` may be freed after). SL_EINVAL when `m` is not a GPT. */
int sl_generator_create(sl_device *dev, const sl_model *m, const sl_weights *w, sl_generator **out);
void sl_generator_free(sl_generator *g);

/* The logits of the token after context ids[0..n-1] (n >= 1; only the last block_size tokens
 * count) into logits[0 .. vocab_size-1]. */
int sl_generator_logits(sl_generator *g, const int32_t *ids, size_t n, float *logits);

typedef struct sl_sample_options {
    float temperature; /* > 0 */
    int top_k;         /* 0: off */
    uint64_t seed;     /* the PRNG's seed */
    int classes;       /* draw among token ids [0, classes) only (the vocabulary's size when it is
                          smaller than the model's vocab_size); 0: all of vocab_size */
} sl_sample_options;

/* Generates `count` tokens after the context ids[0..n-1] (n >= 1), appending them to ids (which
 * has room for n + count), one sl_generator_logits and one sl_sample_pick each from one PRNG
 * seeded with opt->seed. `emit`, when not NULL, gets each token as it is drawn (and may stop
 * generation by returning non-zero; its status is then returned). */
int sl_generate(sl_generator *g, int32_t *ids, size_t n, size_t count, const sl_sample_options *opt,
                int (*emit)(int32_t token, void *ctx), void *ctx);

#ifdef __cplusplus
}
#endif
#endif

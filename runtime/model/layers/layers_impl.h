/* The layer table's rows, shared between the kinds' files and the table (layers.c): each kind's
 * file defines its entry and layers.c lists it. Internal to runtime/model. */
#ifndef SL_LAYERS_IMPL_H
#define SL_LAYERS_IMPL_H

#include "runtime/model/layer.h"

/* linear.c */
extern const sl_layer_kind sl__layer_linear;

/* activation.c: one row per activation, so that each is looked up, listed and documented as a
 * kind of its own. */
extern const sl_layer_kind sl__layer_relu;
extern const sl_layer_kind sl__layer_tanh;
extern const sl_layer_kind sl__layer_sigmoid;
extern const sl_layer_kind sl__layer_gelu;
extern const sl_layer_kind sl__layer_gelu_tanh;

/* The GPT's kinds: embedding.c, block.c, head.c */
extern const sl_layer_kind sl__layer_embedding;
extern const sl_layer_kind sl__layer_block;
extern const sl_layer_kind sl__layer_head;

/* delay.c: a synthetic layer that sleeps, for benchmarks */
extern const sl_layer_kind sl__layer_delay;

/* gpt_ops.c: what they share. A linear map y = x W^T (+ b) over [rows, in] with its input and
 * weight gradients (b and db may be NULL: no bias), and a parameter spec that decays when it has
 * two dimensions, as nanoGPT's optimizer groups do. */
int sl__linear_forward(sl_device *dev, size_t rows, size_t in, size_t out, sl_buffer *x,
                       sl_buffer *w, sl_buffer *b, sl_buffer *y);
int sl__linear_backward_input(sl_device *dev, size_t rows, size_t in, size_t out, sl_buffer *dy,
                              sl_buffer *w, sl_buffer *dx);
int sl__linear_backward_weight(sl_device *dev, size_t rows, size_t in, size_t out, sl_buffer *dy,
                               sl_buffer *x, sl_buffer *dw, sl_buffer *db);
sl_param_spec sl__gpt_param(const char *name, int64_t d0, int64_t d1, enum sl_init init,
                            float scale);

/* loss.c */
extern const sl_loss sl__loss_cross_entropy;
extern const sl_loss sl__loss_mse;

#endif

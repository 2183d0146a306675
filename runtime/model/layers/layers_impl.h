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

/* loss.c */
extern const sl_loss sl__loss_cross_entropy;
extern const sl_loss sl__loss_mse;

#endif

/* The loss table's rows: each names its backend kernel and the targets it reads. */
#include "runtime/model/layers/layers_impl.h"

const sl_loss sl__loss_cross_entropy = {
    .name = "cross_entropy",
    .int_targets = true, /* class ids, as nn.CrossEntropyLoss takes them */
    .min_outputs = 2,    /* a softmax over one class is constant: nothing would train */
    .forward_backward = sl_softmax_xent,
};

const sl_loss sl__loss_mse = {
    .name = "mse",
    .int_targets = false,
    .min_outputs = 1,
    .forward_backward = sl_mse,
};

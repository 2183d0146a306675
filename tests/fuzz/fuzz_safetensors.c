/* libFuzzer target for the safetensors reader and what reads through it: any bytes must parse or
 * be refused, never crash, read out of bounds or overflow; an accepted file must be
 * self-consistent (every tensor inside the data, its size its shape's), and its tensors then go
 * through the readers of data (features and labels, a GPT's token windows) and of initial weights
 * (a small MLP and a tied GPT), each of which must accept or refuse them cleanly. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/config/config.h"
#include "runtime/data/data_impl.h"
#include "runtime/model/model.h"
#include "runtime/safetensors/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *mlp_layers[] = {"linear:3", "relu", "linear:2"};
static char *gpt_layers[] = {"embedding", "block", "head"};

/* Configs filled by hand: the readers only look at these fields. */
static void mlp_config(sl_config *c)
{
    memset(c, 0, sizeof *c);
    c->model.inputs = 2;
    c->model.nlayers = 3;
    c->model.layers = mlp_layers;
    c->model.loss = SL_LOSS_CROSS_ENTROPY;
    c->data.inputs = "x";
    c->data.labels = "y";
}

static void gpt_config(sl_config *c)
{
    memset(c, 0, sizeof *c);
    c->model.has_gpt = true;
    c->model.gpt = (sl_gpt_config){.vocab_size = 5,
                                   .block_size = 2,
                                   .n_layer = 1,
                                   .n_head = 1,
                                   .n_embd = 2,
                                   .bias = true,
                                   .tie_embeddings = true};
    c->model.inputs = 2;
    c->model.nlayers = 3;
    c->model.layers = gpt_layers;
    c->model.loss = SL_LOSS_CROSS_ENTROPY;
    c->data.inputs = "x";
    c->data.labels = "y";
}

static void as_weights(const sl_config *c, const sl_safetensors *st)
{
    sl_model m;
    if (sl_model_init(c, &m) != SL_OK) abort(); /* a fixed, valid model */
    sl_weights w;
    if (sl_weights_from_safetensors(&m, st, "", "fuzz", &w) == SL_OK) sl_weights_free(&w);
    sl_model_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_safetensors st;
    if (sl_safetensors_parse(data, size, &st) != SL_OK) return 0;
    const char *begin = st.blob, *end = begin + st.blob_size;
    for (size_t i = 0; i < st.count; i++) {
        const sl_tensor *t = &st.tensors[i];
        size_t elems = 1;
        for (int d = 0; d < t->ndim; d++) elems *= (size_t)t->shape[d];
        if (elems != t->elems || t->nbytes != elems * sl_dtype_size(t->dtype)) abort();
        if ((const char *)t->data < begin || (const char *)t->data + t->nbytes > end) abort();
        if (sl_safetensors_find(&st, t->name) != t) abort();
        /* The data lies within the file, so this is at most 4 bytes per byte of input. */
        void *out = malloc(elems * 4 + 1);
        if (!out) abort();
        sl_tensor_to_f32(t, out);
        sl_tensor_to_i32(t, out);
        free(out);
    }
    sl_config c;
    sl_dataset ds;
    mlp_config(&c);
    memset(&ds, 0, sizeof ds);
    sl__data_safetensors_dataset(&c, 3, "fuzz", &st, &ds);
    sl_dataset_free(&ds);
    as_weights(&c, &st);
    gpt_config(&c);
    memset(&ds, 0, sizeof ds);
    sl__data_token_dataset(&c, "fuzz", &st, &ds);
    sl_dataset_free(&ds);
    as_weights(&c, &st);
    sl_safetensors_free(&st);
    return 0;
}

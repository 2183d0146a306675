/* libFuzzer target for a GPT's text readers: the first byte picks the reader, the rest is its
 * input. Even: data.text, tokenised by character and split (vocab_size 24, block_size 3,
 * val_fraction 0.2), then a training micro-batch and an evaluation batch of each share drawn
 * from it; every token id must be below the vocabulary's size. Odd: a vocab.json. Any input must
 * be read or refused, never crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/config/config.h"
#include "runtime/data/data_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void text(const uint8_t *b, size_t n)
{
    sl_config c;
    memset(&c, 0, sizeof c);
    c.model.has_gpt = true;
    c.model.gpt =
        (sl_gpt_config){.vocab_size = 24, .block_size = 3, .n_layer = 1, .n_head = 1, .n_embd = 2};
    c.model.inputs = 3;
    c.data.val_fraction = 0.2;
    c.train.batch = 2;
    c.train.microbatches = 1;
    sl_data d;
    memset(&d, 0, sizeof d);
    d.batch = 2;
    d.microbatches = 1;
    d.tokens = true;
    d.block_size = 3;
    d.label_width = 3;
    if (sl__data_text_from_bytes(&c, "fuzz.txt", b, n, &d) == SL_OK) {
        int32_t x[6], y[6];
        if (sl_data_microbatch(&d, 7, 0, x, y, NULL) != SL_OK) abort();
        for (int i = 0; i < 6; i++)
            if (x[i] < 0 || x[i] >= d.nvocab || y[i] < 0 || y[i] >= d.nvocab) abort();
        if (sl_data_eval_batch(&d, false, 3, 0, x, y) != SL_OK) abort();
        if (sl_data_eval_batch(&d, true, 3, 0, x, y) != SL_OK) abort();
        for (int i = 0; i < 6; i++)
            if (x[i] < 0 || x[i] >= d.nvocab || y[i] < 0 || y[i] >= d.nvocab) abort();
    }
    sl_data_free(&d);
}

static void vocab(const uint8_t *b, size_t n)
{
    char *t = malloc(n + 1);
    if (!t) return;
    memcpy(t, b, n);
    t[n] = '\0';
    uint32_t *v;
    int nv;
    if (sl__data_parse_vocab("fuzz.json", t, n, &v, &nv) == SL_OK) {
        if (nv < 1) abort();
        for (int i = 0; i < nv; i++)
            if (v[i] > 0x10ffff) abort();
        free(v);
    }
    free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (data[0] & 1)
        vocab(data + 1, size - 1);
    else
        text(data + 1, size - 1);
    return 0;
}

/* Internals of the data module shared by its files: data.c (feature data, the split and the rows
 * of a step) and tokens.c (a GPT's token data). */
#ifndef SL_DATA_IMPL_H
#define SL_DATA_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/data/data.h"

/* data.c: one step of splitmix64. The permutations (data.c) and a text's window offsets (tokens.c)
 * both draw from it, as data.h documents. */
uint64_t sl__data_splitmix64(uint64_t *s);

/* tokens.c: a GPT's token safetensors fixture (x and y I32/I64 [N, T]) into ds, for
 * sl_dataset_load. */
int sl__data_load_token_fixture(const sl_config *cfg, sl_dataset *ds);

/* tokens.c: data.text read, tokenised and split into d's training and validation shares, for
 * sl_data_load. */
int sl__data_load_text(const sl_config *cfg, sl_data *d);

/* tokens.c: micro-batch mb of batch k of a text's share (val: the validation share), for
 * sl_data_microbatch and sl_data_eval_batch. */
int sl__data_text_microbatch(const sl_data *d, bool val, bool eval, int64_t k, int mb, int32_t *x,
                             int32_t *labels);

#endif

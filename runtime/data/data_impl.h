/* Internals of the data module shared by its files: data.c (feature data, the split and the rows
 * of a step) and tokens.c (a GPT's token data). */
#ifndef SL_DATA_IMPL_H
#define SL_DATA_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/data/data.h"
#include "runtime/safetensors/safetensors.h"

/* data.c: one step of splitmix64. The permutations (data.c) and a text's window offsets (tokens.c)
 * both draw from it, as data.h documents. */
uint64_t sl__data_splitmix64(uint64_t *s);

/* data.c: a whole regular file, plain or gzip'd (read through zlib), of at most
 * SL_DATA_MAX_BYTES once decompressed, into out[0..len-1] (with a NUL after; free() it). A
 * truncated or corrupt gzip stream is SL_EIO naming the file. */
int sl__data_read_file(const char *path, unsigned char **out, size_t *len);

/* data.c: the CSV rows of bytes[0..n-1] (bytes[n] must be '\0'), checked against cfg and
 * `outputs` as data.h describes, into ds; messages name `path`. */
int sl__data_csv_dataset(const sl_config *cfg, int outputs, const char *path, const char *bytes,
                         size_t n, sl_dataset *ds);

/* data.c: the features and labels (or targets) of a parsed safetensors file, checked against cfg
 * and `outputs`, into ds; messages name `path`. */
int sl__data_safetensors_dataset(const sl_config *cfg, int outputs, const char *path,
                                 const sl_safetensors *st, sl_dataset *ds);

/* tokens.c: a GPT's token windows (x and y I32/I64 [N, T]) of a parsed safetensors file, checked
 * against cfg->model.gpt, into ds; messages name `path`. */
int sl__data_token_dataset(const sl_config *cfg, const char *path, const sl_safetensors *st,
                           sl_dataset *ds);

/* tokens.c: a text's bytes b[0..n-1] tokenised and split into d's training and validation
 * shares (data.h); messages name `path`. */
int sl__data_text_from_bytes(const sl_config *cfg, const char *path, const unsigned char *b,
                             size_t n, sl_data *d);

/* tokens.c: a vocab.json's text[0..len-1] into *vocab and *nvocab (sl_data_read_vocab). */
int sl__data_parse_vocab(const char *path, const char *text, size_t len, uint32_t **vocab,
                         int *nvocab);

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

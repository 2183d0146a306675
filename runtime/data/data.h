/* sluice data: the training set of a run, loaded once, checked, split into training and test rows,
 * and cut into mini-batches and micro-batches.
 *
 * Sources
 * - safetensors: tensors data.inputs (default "x", F32/F64 [N, inputs]) and data.labels (default
 *   "y": I32/I64 [N] class ids for cross_entropy, or F32/F64 [N, outputs] (or [N] when outputs is
 *   1) targets for mse).
 * - CSV or gzip'd CSV (.csv, .csv.gz; read through zlib, which also reads plain files): one row a
 *   line, comma-separated numbers; the last column is the class id (cross_entropy) or the last
 *   `outputs` columns are the targets (mse). Blank lines and lines starting with '#' are skipped.
 * data.scale multiplies every feature (both sources). NaN or infinite values, values beyond
 * float's range (a CSV's 1e39, an F64 tensor's), class ids outside [0, outputs) or non-integer
 * ones, a feature count other than model.inputs, an empty column and a NUL byte are SL_ECONFIG
 * naming the file, row and column (or tensor); a truncated gzip stream is SL_EIO.
 *
 * Train/test split (data.test_fraction = f > 0), as scikit-learn's train_test_split(shuffle=True):
 * n_test = ceil(f * N); a permutation P of 0..N-1 is drawn with the PRNG below seeded with
 * data.seed; the test rows are P[0 .. n_test-1] and the training rows P[n_test .. N-1], in that
 * order. With f = 0 every row is a training row in file order.
 *
 * Rows of a step. Let N be the number of training rows and g = k*batch + i the i-th row of step k:
 * without data.shuffle it is training row g mod N. With shuffle, epoch e = g div N uses its own
 * permutation Q_e of 0..N-1 (the PRNG seeded with data.seed + 1 + e, so the same every run), and
 * the row is training row Q_e[g mod N]. Micro-batch j of a step is the step's rows
 * j*batch/M .. (j+1)*batch/M - 1.
 *
 * The PRNG is splitmix64 (Steele et al.): state += 0x9e3779b97f4a7c15, then two xor-shift-multiply
 * rounds. A permutation is Fisher-Yates from the identity: for i = N-1 down to 1, j =
 * floor(u*(i+1)) with u = (next() >> 11) * 2^-53, swap P[i] and P[j].
 *
 * Token data (model.gpt; T = model.gpt.block_size, V = model.gpt.vocab_size). A micro-batch's x
 * is int32 token ids [rows, T] and its labels int32 [rows, T], the next token of each position
 * (targets are not used). Two sources:
 * - data.text: a UTF-8 text (plain, or gzip'd: read through zlib), tokenised by character as
 *   nanoGPT's shakespeare_char: the vocabulary is the sorted set of the distinct Unicode code
 *   points of the text and a character's token id is its index in it. Bytes that are not UTF-8
 *   (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF, no truncated sequence)
 *   and a vocabulary larger than V are SL_ECONFIG naming the byte offset or both sizes.
 *   Of the n tokens the first n_train = floor(n * (1 - data.val_fraction)) train (sl_data.text)
 *   and the rest are held out (sl_data.val), as nanoGPT's data[:int(n*0.9)]; the training share,
 *   and the held-out one when data.val_fraction > 0, must hold at least T + 1 tokens.
 *   Windows, as nanoGPT's get_batch: a window at offset o of a stream S is x = S[o .. o+T-1],
 *   y = S[o+1 .. o+T]. Step k draws `batch` offsets from the splitmix64 stream whose state starts
 *   at data.seed ^ mix(2k) (mix(v) = the first output of splitmix64 from state v); window i is
 *   the i-th draw: o_i = floor(u_i * (L - T)) with u_i = (next() >> 11) * 2^-53 and L = len(S),
 *   so o_i is in [0, L - T - 1] (torch.randint(L - T)). Evaluation batch k of the validation
 *   share uses the same rule from state data.seed ^ mix(2k + 1). So every rank can compute any
 *   window of any step on its own. Evaluation batch k of the training share (the training loss
 *   that eval.interval reports) uses the same odd stream, data.seed ^ mix(2k + 1), over the
 *   training share: training steps only ever draw from the even streams mix(2k), so evaluating
 *   never takes or moves a training window. Evaluation number e (counted from 0 over the run)
 *   uses batches k = e * eval.iters + i, i = 0..eval.iters-1, of both shares.
 * - data.path: a safetensors file whose tensors data.inputs ("x") and data.labels ("y") are
 *   I32/I64 [N, T] token ids in [0, V) (an id outside is SL_ECONFIG naming the tensor, row and
 *   column). Row i of step k is row (k*batch + i) mod N, never shuffled; no held-out share.
 * Micro-batch j of a step is the step's windows (or rows) j*batch/M .. (j+1)*batch/M - 1. */
#ifndef SL_DATA_H
#define SL_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/config/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest CSV or text sluice reads (once decompressed): it holds the whole file in memory.
 * Data files must be regular files (a FIFO or a device is refused, not waited on). */
#define SL_DATA_MAX_BYTES ((size_t)256 << 20)

/* Rows held on the host. Exactly one of labels and targets is set. */
typedef struct sl_dataset {
    size_t rows;
    int inputs;      /* features per row (tokens: T) */
    int outputs;     /* classes (labels) or target width (targets); tokens: V */
    bool tokens;     /* rows of token ids: ids is set instead of x */
    int label_width; /* int32 labels per row: 1 (class ids) or T (next tokens); 0 with targets */
    float *x;        /* [rows, inputs], or NULL for tokens */
    int32_t *ids;    /* tokens: [rows, inputs] token ids, else NULL */
    int32_t *labels; /* [rows, label_width] class ids or token ids in [0, outputs), or NULL */
    float *targets;  /* [rows, outputs], or NULL */
} sl_dataset;

/* A stream of token ids (a share of a tokenised text). */
typedef struct sl_tokens {
    int32_t *ids;
    size_t len;
} sl_tokens;

typedef struct sl_data {
    sl_dataset train, test; /* test.rows is 0 without a held-out share; a text has no rows */
    int batch, microbatches;
    bool shuffle;
    uint64_t seed;
    /* What a micro-batch holds: x is int32 token ids [rows, T] when tokens is set (else float
     * features [rows, inputs]); labels are int32 [rows, label_width] (0: targets instead). */
    bool tokens;
    int label_width;
    int block_size;  /* T for token data, else 0 */
    sl_tokens text;  /* data.text: the training share of the tokens, else empty */
    sl_tokens val;   /* data.text: the held-out share (sl_data_eval_batch), else empty */
    uint32_t *vocab; /* data.text: the code point of each token id, sorted */
    int nvocab;
    /* Shuffle cache: the permutation of one epoch. */
    int64_t perm_epoch;
    size_t *perm;
} sl_data;

/* Loads cfg->data for a model with cfg->model.inputs inputs and `outputs` outputs whose loss is
 * cfg->model.loss, checks every value, and splits it. With cfg->model.has_gpt the data is token
 * data (above) checked against cfg->model.gpt, and `outputs` is not used. */
int sl_data_load(const sl_config *cfg, int outputs, sl_data *out);
void sl_data_free(sl_data *d);

/* Loads a file into one dataset without splitting (same checks; a GPT's token safetensors too,
 * not a text: SL_EINVAL). */
int sl_dataset_load(const sl_config *cfg, int outputs, sl_dataset *out);
void sl_dataset_free(sl_dataset *ds);

/* The training-row indices of step `step` (counted from 0): rows[0 .. batch-1]. A text has no
 * rows (SL_EINVAL): see sl_data_windows. */
int sl_data_batch_rows(sl_data *d, int64_t step, size_t *rows);

/* Copies rows[0..n-1] of `ds` into x [n, inputs] (float features, or int32 ids for tokens) and
 * labels [n, label_width] or targets [n, outputs] (any may be NULL when not wanted). */
void sl_dataset_gather(const sl_dataset *ds, const size_t *rows, size_t n, void *x, int32_t *labels,
                       float *targets);

/* Micro-batch `mb` of step `step` from the training data: x [batch/M, inputs] of 4-byte elements
 * (float features, or int32 token ids [batch/M, T] when d->tokens), and labels
 * [batch/M, label_width] or targets as above (NULL when not wanted). */
int sl_data_microbatch(sl_data *d, int64_t step, int mb, void *x, int32_t *labels, float *targets);

/* A text's window offsets of training step `k`: offsets[0 .. batch-1], by the rule above.
 * SL_EINVAL without a text. */
int sl_data_windows(const sl_data *d, int64_t k, size_t *offsets);

/* Evaluation batches of either share of a text (val: the validation share; else the training
 * share's own evaluation stream, see above): the window offsets of batch k, and micro-batch mb of
 * it, x int32 [batch/M, T] and labels int32 [batch/M, T] (either may be NULL). SL_EINVAL without a
 * text (or without a validation share for val). */
int sl_data_eval_windows(const sl_data *d, bool val, int64_t k, size_t *offsets);
int sl_data_eval_batch(const sl_data *d, bool val, int64_t k, int mb, int32_t *x, int32_t *labels);

/* The number of tokens of a text's vocabulary (0 when the data is not a text). */
int sl_data_vocab_size(const sl_data *d);

/* Writes the vocabulary as vocab.json at `path`: a JSON array of one-character strings in token
 * order (nanoGPT's meta.pkl itos). SL_EINVAL without a text, SL_EIO when it cannot be written. */
int sl_data_write_vocab(const sl_data *d, const char *path);

/* Reads a vocab.json that sl_data_write_vocab wrote: the code point of each token id, in order,
 * into *vocab (free() it) and their number into *nvocab. SL_EIO when it cannot be read;
 * SL_EFORMAT naming the file and the entry when it is not a non-empty JSON array of distinct
 * one-character strings. */
int sl_data_read_vocab(const char *path, uint32_t **vocab, int *nvocab);

/* UTF-8 (RFC 3629), as data.text is read. sl_utf8_next decodes the sequence at b[i] of b[0..n-1]
 * into *cp and its length into *used; on a byte that cannot be there (overlong forms, surrogates,
 * above U+10FFFF, a truncated sequence) it returns false with *bad = that byte's offset.
 * sl_utf8_put writes code point cp (at most U+10FFFF) into out[0..3] and returns its length. */
bool sl_utf8_next(const unsigned char *b, size_t n, size_t i, uint32_t *cp, size_t *used,
                  size_t *bad);
size_t sl_utf8_put(uint32_t cp, char *out);

/* The split's permutation helper, exposed for tests: fills perm[0..n-1] with a permutation of
 * 0..n-1 drawn from `seed` as described above. */
void sl_data_permutation(uint64_t seed, size_t n, size_t *perm);

#ifdef __cplusplus
}
#endif
#endif

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
 * data.scale multiplies every feature (both sources). NaN or infinite values, class ids outside
 * [0, outputs) or non-integer ones, and a feature count other than model.inputs are SL_ECONFIG
 * naming the file, row and column (or tensor).
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
 * floor(u*(i+1)) with u = (next() >> 11) * 2^-53, swap P[i] and P[j]. */
#ifndef SL_DATA_H
#define SL_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/config/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rows held on the host. Exactly one of labels and targets is set. */
typedef struct sl_dataset {
    size_t rows;
    int inputs;      /* features per row */
    int outputs;     /* classes (labels) or target width (targets) */
    float *x;        /* [rows, inputs] */
    int32_t *labels; /* [rows] class ids in [0, outputs), or NULL */
    float *targets;  /* [rows, outputs], or NULL */
} sl_dataset;

typedef struct sl_data {
    sl_dataset train, test; /* test.rows is 0 without a held-out share */
    int batch, microbatches;
    bool shuffle;
    uint64_t seed;
    /* Shuffle cache: the permutation of one epoch. */
    int64_t perm_epoch;
    size_t *perm;
} sl_data;

/* Loads cfg->data for a model with cfg->model.inputs inputs and `outputs` outputs whose loss is
 * cfg->model.loss, checks every value, and splits it. */
int sl_data_load(const sl_config *cfg, int outputs, sl_data *out);
void sl_data_free(sl_data *d);

/* Loads a file into one dataset without splitting (same checks). */
int sl_dataset_load(const sl_config *cfg, int outputs, sl_dataset *out);
void sl_dataset_free(sl_dataset *ds);

/* The training-row indices of step `step` (counted from 0): rows[0 .. batch-1]. */
int sl_data_batch_rows(sl_data *d, int64_t step, size_t *rows);

/* Copies rows[0..n-1] of `ds` into x [n, inputs] and labels [n] or targets [n, outputs] (either
 * may be NULL when not wanted). */
void sl_dataset_gather(const sl_dataset *ds, const size_t *rows, size_t n, float *x,
                       int32_t *labels, float *targets);

/* Micro-batch `mb` of step `step` from the training rows: x [batch/M, inputs], and labels or
 * targets as above (NULL when not wanted). */
int sl_data_microbatch(sl_data *d, int64_t step, int mb, float *x, int32_t *labels, float *targets);

/* The split's permutation helper, exposed for tests: fills perm[0..n-1] with a permutation of
 * 0..n-1 drawn from `seed` as described above. */
void sl_data_permutation(uint64_t seed, size_t n, size_t *perm);

#ifdef __cplusplus
}
#endif
#endif

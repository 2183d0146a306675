/* The internals of `sluice bench kernels`, shared by its files and by nothing else:
 *
 *   kernels.c              the command: options, the timing rule, the GEMM and elementwise rows
 *                          against the FMA peak, OpenBLAS and a device copy, and the JSON
 *   kernels_blas.c         the OpenBLAS baseline: the host GEMM, and the child process
 *                          `sluice bench kernels --blas-only` that runs it under the best core
 *   kernels_transformer.c  the transformer rows: layer norm, causal softmax and embedding
 *                          against a device copy, and batched GEMM against an OpenBLAS loop
 *   kernels_tune.c         `sluice bench kernels --tune` (bench/bench.h)
 *
 * Names shared between the files are sl__bench_* (SL__BENCH_* for constants); the rest are
 * static. */
#ifndef SL_BENCH_KERNELS_IMPL_H
#define SL_BENCH_KERNELS_IMPL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "backends/backend.h"

#define SL__BENCH_MAX_SIZES 8

struct sl__bench_kernels_options {
    const char *devices[16];
    int ndevices;
    size_t sizes[SL__BENCH_MAX_SIZES];
    int nsizes;
    size_t elems; /* elementwise length */
    double min_time;
    int json;
};

/* The one timing rule for devices and OpenBLAS alike: batches of doubling size (while a batch
 * takes under 50 ms) until at least min_time seconds and 3 batches have run; the result is the
 * best batch's seconds per call. `batch` runs `reps` calls and reports their seconds. */
typedef int (*sl__bench_batch_fn)(void *ctx, int reps, double *seconds);

int sl__bench_best_batch(sl__bench_batch_fn batch, void *ctx, double min_time, double *seconds);

typedef int (*sl__bench_fn)(sl_device *dev, void *ctx);

/* Seconds per fn(ctx) on the device after one warm-up, by sl__bench_best_batch. */
int sl__bench_time_op(sl_device *dev, sl__bench_fn fn, void *ctx, double min_time, double *seconds);

/* The device's GEMM and OpenBLAS's in alternating rounds, so that both see the same moments of a
 * shared machine; the best time of each. */
#define SL__BENCH_GEMM_ROUNDS 3

/* kernels_blas.c ------------------------------------------------------------------------------ */

/* OpenBLAS on this CPU, the baseline: C = A B at n x n on the host. */
struct sl__bench_host_gemm {
    int n;
    float *a, *b, *c;
};

int sl__bench_host_gemm_init(struct sl__bench_host_gemm *h, size_t n);
void sl__bench_host_gemm_free(struct sl__bench_host_gemm *h);
void sl__bench_host_gemm_run(const struct sl__bench_host_gemm *h);
/* reps OpenBLAS calls, timed by the host clock. */
int sl__bench_host_batch_run(void *p, int reps, double *seconds);

/* The baseline's child process (kernels_blas.c says how it works). */
struct sl__bench_blas_ref {
    pid_t pid; /* 0: no child, the baseline runs in this process */
    FILE *to, *from;
    char core[32]; /* the baseline's openblas_get_corename() */
    char how[160]; /* how its core was chosen, for the output */
};

extern struct sl__bench_blas_ref sl__bench_blas_ref;

/* `sluice bench kernels --blas-only`: the child's side. Returns an exit status. */
int sl__bench_blas_only(void);
void sl__bench_blas_ref_start(void);
void sl__bench_blas_ref_stop(void);
/* Seconds per n x n OpenBLAS GEMM in the child, by sl__bench_best_batch over min_time. */
int sl__bench_blas_ref_time(size_t n, double min_time, double *seconds);

/* kernels_transformer.c ----------------------------------------------------------------------- */

/* The transformer kernels' rows: the "transformer" array into `out`, and the table. */
int sl__bench_transformer(sl_device *dev, const struct sl__bench_kernels_options *o, cJSON *out);
/* The batched GEMM rows: the "batched_gemm" array into `out`, and the table. */
int sl__bench_batched_gemm(sl_device *dev, const struct sl__bench_kernels_options *o, cJSON *out);
/* The attention row (the device's way against the composed one): "attention" into `out`. */
int sl__bench_attention(sl_device *dev, const struct sl__bench_kernels_options *o, cJSON *out);

#endif

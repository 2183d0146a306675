/* `sluice bench kernels`' transformer rows (bench/kernels.c is the command). Transformer kernels:
 * layer norm, causal softmax and embedding forward in GB/s against a device-to-device copy that
 * moves the same bytes (half of them read, half written), batched GEMM at attention's shapes
 * against OpenBLAS running the same batch as a loop of cblas_sgemm, and causal self-attention as
 * the device runs it (fused on cpu) against the same attention composed of batched GEMMs and the
 * softmax kernels on the same device. */
#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "backends/backend.h"
#include "backends/backend_impl.h"
#include "bench/kernels_impl.h"

/* GPT-2 small's width; nanoGPT's shakespeare-char block size for the softmax; GPT-2's vocabulary
 * (capped at the token count so that small --elems stay small). */
#define TF_COLS    768
#define TF_SEQ     256
#define TF_VOCAB   50257
#define TF_ROUNDS  2
#define BGEMM_ROWS 3

enum tf_kind { TF_LAYERNORM, TF_SOFTMAX, TF_EMBEDDING, TF_KINDS };
static const char *const tf_names[] = {"layernorm", "causal_softmax", "embedding"};

struct tf_ctx {
    enum tf_kind kind;
    size_t rows, cols;             /* layernorm: x [rows, cols] */
    size_t heads, seq;             /* softmax: s [heads, seq, seq]; embedding: batch, seq */
    size_t batch, vocab;           /* embedding: tokens [batch * seq], wte [vocab, cols] */
    sl_buffer *in, *out, *p1, *p2; /* x/s/tokens, y/p/out, weight/wte, bias/wpe */
    sl_buffer *mean, *rstd;        /* layernorm */
    double bytes;                  /* what the kernel must move, by the rule in tf_shape */
};

/* The kernel's shape from --elems (its main tensor holds about that many floats) and the bytes it
 * moves: layer norm reads x, weight and bias and writes y, mean and rstd; the causal softmax reads
 * the kept scores (j <= t) and writes every probability (zeros beyond t); the embedding reads each
 * token id and the wte and wpe rows it adds and writes out. */
static void tf_shape(struct tf_ctx *t, size_t elems)
{
    switch (t->kind) {
    case TF_LAYERNORM:
        t->cols = TF_COLS;
        t->rows = SL_MAX(elems / TF_COLS, (size_t)1);
        t->bytes = 4.0 * (2.0 * t->rows * t->cols + 2.0 * t->rows + 2.0 * t->cols);
        break;
    case TF_SOFTMAX:
        t->seq = TF_SEQ;
        t->heads = SL_MAX(elems / (TF_SEQ * TF_SEQ), (size_t)1);
        t->bytes = 4.0 * t->heads * (t->seq * (t->seq + 1) / 2.0 + (double)t->seq * t->seq);
        break;
    default:
        t->cols = TF_COLS;
        t->seq = TF_SEQ;
        t->batch = SL_MAX(elems / (TF_SEQ * TF_COLS), (size_t)1);
        t->vocab = SL_MIN((size_t)TF_VOCAB, t->batch * t->seq);
        t->bytes = 4.0 * t->batch * t->seq * (1.0 + 3.0 * t->cols);
        break;
    }
}

static void tf_describe(const struct tf_ctx *t, char *buf, size_t size)
{
    if (t->kind == TF_LAYERNORM)
        snprintf(buf, size, "%zu x %zu", t->rows, t->cols);
    else if (t->kind == TF_SOFTMAX)
        snprintf(buf, size, "%zu x %zu x %zu", t->heads, t->seq, t->seq);
    else
        snprintf(buf, size, "%zu x %zu x %zu, vocab %zu", t->batch, t->seq, t->cols, t->vocab);
}

static int tf_alloc(sl_device *dev, size_t floats, float value, sl_buffer **out)
{
    SL_TRY(sl_buffer_alloc(dev, floats * sizeof(float), out));
    return sl_fill(dev, floats, value, *out);
}

/* Random token ids in [0, vocab), uploaded. */
static int tf_tokens(sl_device *dev, size_t n, size_t vocab, sl_buffer **out)
{
    int32_t *ids = sl_alloc(n * sizeof *ids);
    if (!ids) return SL_ENOMEM;
    uint64_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((s >> 33) % vocab);
    }
    int st = sl_buffer_alloc(dev, n * sizeof *ids, out);
    if (st == SL_OK) st = sl_buffer_upload(*out, 0, ids, n * sizeof *ids);
    free(ids);
    return st;
}

static int tf_setup(sl_device *dev, struct tf_ctx *t)
{
    switch (t->kind) {
    case TF_LAYERNORM:
        SL_TRY(tf_alloc(dev, t->rows * t->cols, 0.5f, &t->in));
        SL_TRY(tf_alloc(dev, t->rows * t->cols, 0.0f, &t->out));
        SL_TRY(tf_alloc(dev, t->cols, 1.0f, &t->p1));
        SL_TRY(tf_alloc(dev, t->cols, 0.0f, &t->p2));
        SL_TRY(tf_alloc(dev, t->rows, 0.0f, &t->mean));
        return tf_alloc(dev, t->rows, 0.0f, &t->rstd);
    case TF_SOFTMAX:
        SL_TRY(tf_alloc(dev, t->heads * t->seq * t->seq, 0.25f, &t->in));
        return tf_alloc(dev, t->heads * t->seq * t->seq, 0.0f, &t->out);
    default:
        SL_TRY(tf_tokens(dev, t->batch * t->seq, t->vocab, &t->in));
        SL_TRY(tf_alloc(dev, t->batch * t->seq * t->cols, 0.0f, &t->out));
        SL_TRY(tf_alloc(dev, t->vocab * t->cols, 0.02f, &t->p1));
        return tf_alloc(dev, t->seq * t->cols, 0.01f, &t->p2);
    }
}

static void tf_free(struct tf_ctx *t)
{
    sl_buffer *bufs[] = {t->in, t->out, t->p1, t->p2, t->mean, t->rstd};
    for (size_t i = 0; i < SL_ARRAY_LEN(bufs); i++)
        if (bufs[i]) sl_buffer_free(bufs[i]);
}

static int run_tf(sl_device *dev, void *p)
{
    struct tf_ctx *t = p;
    switch (t->kind) {
    case TF_LAYERNORM:
        return sl_layernorm_forward(dev, t->rows, t->cols, t->in, t->p1, t->p2, t->out, t->mean,
                                    t->rstd);
    case TF_SOFTMAX:
        return sl_causal_softmax_forward(dev, t->heads, t->seq, 0.125f, t->in, t->out);
    default:
        return sl_embedding_forward(dev, t->batch, t->seq, t->cols, t->vocab, t->in, t->p1, t->p2,
                                    t->out);
    }
}

/* A device copy of `bytes` bytes: it reads and writes 2 * bytes. */
struct tf_copy {
    size_t bytes;
    sl_buffer *src, *dst;
};

static int run_tf_copy(sl_device *dev, void *p)
{
    (void)dev;
    struct tf_copy *c = p;
    return sl_buffer_copy(c->dst, 0, c->src, 0, c->bytes);
}

/* One transformer kernel and the copy of its bytes, in alternating rounds; the best of each. */
static int tf_measure(sl_device *dev, struct tf_ctx *t, double min_time, double *gbs,
                      double *copy_gbs)
{
    struct tf_copy c = {.bytes = ((size_t)(t->bytes / 2) + 3) / 4 * 4};
    int st = tf_setup(dev, t);
    if (st == SL_OK) st = tf_alloc(dev, c.bytes / 4, 0.5f, &c.src);
    if (st == SL_OK) st = tf_alloc(dev, c.bytes / 4, 0.0f, &c.dst);
    double sec = 1e30, copy_sec = 1e30;
    for (int r = 0; r < TF_ROUNDS && st == SL_OK; r++) {
        double d = 0.0;
        st = sl__bench_time_op(dev, run_tf, t, min_time / TF_ROUNDS, &d);
        sec = SL_MIN(sec, d);
        if (st == SL_OK) st = sl__bench_time_op(dev, run_tf_copy, &c, min_time / TF_ROUNDS, &d);
        copy_sec = SL_MIN(copy_sec, d);
    }
    tf_free(t);
    if (c.src) sl_buffer_free(c.src);
    if (c.dst) sl_buffer_free(c.dst);
    if (st == SL_OK) {
        *gbs = t->bytes / sec * 1e-9;
        *copy_gbs = 2.0 * (double)c.bytes / copy_sec * 1e-9;
    }
    return st;
}

/* The transformer kernels' rows: the "transformer" array into `out`, and the table. */
int sl__bench_transformer(sl_device *dev, const struct sl__bench_kernels_options *o, cJSON *out)
{
    cJSON *rows = cJSON_AddArrayToObject(out, "transformer");
    if (!o->json)
        printf("  %-15s %-30s %9s %10s %9s\n", "kernel", "shape", "GB/s", "copy GB/s", "of copy");
    for (int k = 0; k < TF_KINDS; k++) {
        struct tf_ctx t = {.kind = (enum tf_kind)k};
        tf_shape(&t, o->elems);
        double gbs = 0.0, copy_gbs = 0.0;
        SL_TRY(tf_measure(dev, &t, o->min_time, &gbs, &copy_gbs));
        char shape[96];
        tf_describe(&t, shape, sizeof shape);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "kernel", tf_names[k]);
        cJSON_AddStringToObject(j, "shape", shape);
        cJSON_AddNumberToObject(j, "bytes", t.bytes);
        cJSON_AddNumberToObject(j, "gb_per_s", gbs);
        cJSON_AddNumberToObject(j, "copy_gb_per_s", copy_gbs);
        cJSON_AddNumberToObject(j, "ratio_to_copy", gbs / copy_gbs);
        cJSON_AddItemToArray(rows, j);
        if (!o->json)
            printf("  %-15s %-30s %9.1f %10.1f %8.1f%%\n", tf_names[k], shape, gbs, copy_gbs,
                   100 * gbs / copy_gbs);
    }
    return SL_OK;
}

/* Batched GEMM at attention's shapes (batch * heads = 48 matrices, T = 64, head size 32): the
 * scores q k^T, the brief's square 64^3, and the values p v. */
static const struct bgemm_shape {
    const char *name;
    size_t batch, m, n, k;
    bool trans_b;
} bgemm_shapes[BGEMM_ROWS] = {
    {"attn q.k^T", 48, 64, 64, 32, true},
    {"64^3", 48, 64, 64, 64, false},
    {"attn p.v", 48, 64, 32, 64, false},
};

struct bgemm_ctx {
    const struct bgemm_shape *s;
    sl_buffer *a, *b, *c;
    float *ha, *hb, *hc; /* the host copies OpenBLAS works on */
};

static int run_bgemm(sl_device *dev, void *p)
{
    struct bgemm_ctx *g = p;
    const struct bgemm_shape *s = g->s;
    return sl_gemm_strided_batched(dev, false, s->trans_b, s->m, s->n, s->k, 1.0f, g->a,
                                   s->m * s->k, g->b, s->k * s->n, 0.0f, g->c, s->m * s->n,
                                   s->batch);
}

/* OpenBLAS doing the same batch: one cblas_sgemm per matrix. */
static void host_bgemm_run(const struct bgemm_ctx *g)
{
    const struct bgemm_shape *s = g->s;
    int m = (int)s->m, n = (int)s->n, k = (int)s->k;
    for (size_t i = 0; i < s->batch; i++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, s->trans_b ? CblasTrans : CblasNoTrans, m, n, k,
                    1.0f, g->ha + i * s->m * s->k, k, g->hb + i * s->k * s->n, s->trans_b ? k : n,
                    0.0f, g->hc + i * s->m * s->n, n);
}

static int host_bgemm_batch(void *p, int reps, double *seconds)
{
    double t0 = sl_now();
    for (int r = 0; r < reps; r++) host_bgemm_run(p);
    *seconds = sl_now() - t0;
    return SL_OK;
}

/* GFLOP/s of the device's batched GEMM and of OpenBLAS's loop, in alternating rounds timed by the
 * GEMM rows' rule; the best of each. */
static int bgemm_at(sl_device *dev, const struct bgemm_shape *s, double min_time, double *gflops,
                    double *blas)
{
    struct bgemm_ctx g = {.s = s};
    size_t na = s->batch * s->m * s->k, nb = s->batch * s->k * s->n, nc = s->batch * s->m * s->n;
    g.ha = calloc(na, sizeof(float));
    g.hb = calloc(nb, sizeof(float));
    g.hc = calloc(nc, sizeof(float));
    int st = g.ha && g.hb && g.hc ? SL_OK : sl_fail(SL_ENOMEM, "no host memory for %s", s->name);
    for (size_t i = 0; st == SL_OK && i < na; i++) g.ha[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; st == SL_OK && i < nb; i++) g.hb[i] = (float)(i % 5) * 0.1f;
    if (st == SL_OK) st = sl_buffer_alloc(dev, na * sizeof(float), &g.a);
    if (st == SL_OK) st = sl_buffer_alloc(dev, nb * sizeof(float), &g.b);
    if (st == SL_OK) st = sl_buffer_alloc(dev, nc * sizeof(float), &g.c);
    if (st == SL_OK) st = sl_buffer_upload(g.a, 0, g.ha, na * sizeof(float));
    if (st == SL_OK) st = sl_buffer_upload(g.b, 0, g.hb, nb * sizeof(float));
    if (st == SL_OK) host_bgemm_run(&g); /* warm-up: threads, page faults */
    double sec = 1e30, host_sec = 1e30;
    for (int r = 0; r < SL__BENCH_GEMM_ROUNDS && st == SL_OK; r++) {
        double d = 0.0;
        st = sl__bench_time_op(dev, run_bgemm, &g, min_time / SL__BENCH_GEMM_ROUNDS, &d);
        sec = SL_MIN(sec, d);
        if (st == SL_OK)
            st = sl__bench_best_batch(host_bgemm_batch, &g, min_time / SL__BENCH_GEMM_ROUNDS, &d);
        host_sec = SL_MIN(host_sec, d);
    }
    if (g.a) sl_buffer_free(g.a);
    if (g.b) sl_buffer_free(g.b);
    if (g.c) sl_buffer_free(g.c);
    free(g.ha);
    free(g.hb);
    free(g.hc);
    double flop = 2.0 * (double)s->batch * s->m * s->n * s->k;
    if (st == SL_OK) {
        *gflops = flop / sec * 1e-9;
        *blas = flop / host_sec * 1e-9;
    }
    return st;
}

/* The batched GEMM rows: the "batched_gemm" array into `out`, and the table. */
int sl__bench_batched_gemm(sl_device *dev, const struct sl__bench_kernels_options *o, cJSON *out)
{
    cJSON *rows = cJSON_AddArrayToObject(out, "batched_gemm");
    if (!o->json)
        printf("  %-15s %-30s %9s %10s %9s\n", "batched GEMM", "batch x m x n x k", "GFLOP/s",
               "OpenBLAS", "ratio");
    for (int i = 0; i < BGEMM_ROWS; i++) {
        const struct bgemm_shape *s = &bgemm_shapes[i];
        double gf = 0.0, blas = 0.0;
        SL_TRY(bgemm_at(dev, s, o->min_time, &gf, &blas));
        char shape[96];
        snprintf(shape, sizeof shape, "%zu x %zu x %zu x %zu%s", s->batch, s->m, s->n, s->k,
                 s->trans_b ? " (B^T)" : "");
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", s->name);
        cJSON_AddNumberToObject(j, "batch", (double)s->batch);
        cJSON_AddNumberToObject(j, "m", (double)s->m);
        cJSON_AddNumberToObject(j, "n", (double)s->n);
        cJSON_AddNumberToObject(j, "k", (double)s->k);
        cJSON_AddBoolToObject(j, "trans_b", s->trans_b);
        cJSON_AddNumberToObject(j, "gflops", gf);
        cJSON_AddNumberToObject(j, "openblas_gflops", blas);
        cJSON_AddNumberToObject(j, "ratio_to_openblas", gf / blas);
        cJSON_AddItemToArray(rows, j);
        if (!o->json)
            printf("  %-15s %-30s %9.1f %10.1f %8.1f%%\n", s->name, shape, gf, blas,
                   100 * gf / blas);
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Attention at the GPT bench's shape (batch 12, block 64, 4 heads of 32): forward and backward. */

#define ATT_B  12
#define ATT_T  64
#define ATT_H  4
#define ATT_HS 32

struct att_ctx {
    bool composed;
    sl_buffer *qkv, *att, *y, *dy, *work, *dqkv;
};

static int run_att(sl_device *dev, void *p)
{
    const struct att_ctx *a = p;
    float scale = 1.0f / sqrtf((float)ATT_HS);
    if (a->composed) {
        SL_TRY(sl__attention_forward_composed(dev, ATT_B, ATT_T, ATT_H, ATT_HS, scale, a->qkv,
                                              a->att, a->y));
        return sl__attention_backward_composed(dev, ATT_B, ATT_T, ATT_H, ATT_HS, scale, a->qkv,
                                               a->att, a->dy, a->work, a->dqkv);
    }
    SL_TRY(sl_attention_forward(dev, ATT_B, ATT_T, ATT_H, ATT_HS, scale, a->qkv, a->att, a->y));
    return sl_attention_backward(dev, ATT_B, ATT_T, ATT_H, ATT_HS, scale, a->qkv, a->att, a->dy,
                                 a->work, a->dqkv);
}

/* The attention row: the "attention" object into `out`, and the table. */
int sl__bench_attention(sl_device *dev, const struct sl__bench_kernels_options *o, cJSON *out)
{
    size_t C = ATT_H * ATT_HS, n_qkv = ATT_B * ATT_T * 3 * C, n_y = ATT_B * ATT_T * C,
           n_att = ATT_B * ATT_H * ATT_T * ATT_T;
    struct att_ctx a = {0};
    int st = tf_alloc(dev, n_qkv, 0.25f, &a.qkv);
    if (st == SL_OK) st = tf_alloc(dev, n_att, 0.0f, &a.att);
    if (st == SL_OK) st = tf_alloc(dev, n_y, 0.0f, &a.y);
    if (st == SL_OK) st = tf_alloc(dev, n_y, 0.5f, &a.dy);
    if (st == SL_OK) st = tf_alloc(dev, n_att, 0.0f, &a.work);
    if (st == SL_OK) st = tf_alloc(dev, n_qkv, 0.0f, &a.dqkv);
    double sec = 1e30, composed_sec = 1e30;
    for (int r = 0; r < TF_ROUNDS && st == SL_OK; r++) {
        double d = 0.0;
        a.composed = false;
        st = sl__bench_time_op(dev, run_att, &a, o->min_time / TF_ROUNDS, &d);
        sec = SL_MIN(sec, d);
        a.composed = true;
        if (st == SL_OK) st = sl__bench_time_op(dev, run_att, &a, o->min_time / TF_ROUNDS, &d);
        composed_sec = SL_MIN(composed_sec, d);
    }
    sl_buffer *bufs[] = {a.qkv, a.att, a.y, a.dy, a.work, a.dqkv};
    for (size_t i = 0; i < SL_ARRAY_LEN(bufs); i++)
        if (bufs[i]) sl_buffer_free(bufs[i]);
    SL_TRY(st);
    bool fused = dev->ops->attention_forward != NULL;
    char shape[96];
    snprintf(shape, sizeof shape, "%d x %d, %d heads of %d", ATT_B, ATT_T, ATT_H, ATT_HS);
    cJSON *j = cJSON_AddObjectToObject(out, "attention");
    cJSON_AddStringToObject(j, "shape", shape);
    cJSON_AddBoolToObject(j, "fused", fused);
    cJSON_AddNumberToObject(j, "ms", sec * 1e3);
    cJSON_AddNumberToObject(j, "composed_ms", composed_sec * 1e3);
    cJSON_AddNumberToObject(j, "speedup", composed_sec / sec);
    if (!o->json) {
        printf("  %-15s %-30s %9s %10s %9s\n", "attention", "forward + backward", "ms", "composed",
               "speedup");
        printf("  %-15s %-30s %9.3f %10.3f %8.2fx\n", fused ? "fused" : "composed", shape,
               sec * 1e3, composed_sec * 1e3, composed_sec / sec);
    }
    return SL_OK;
}

/* `sluice bench kernels`: GEMM GFLOP/s per device against the device's own FMA peak and against
 * OpenBLAS on this CPU under the best OpenBLAS core for it, measured in the same run; elementwise
 * kernels in GB/s against a device-to-device copy of the same size. */
#define _GNU_SOURCE
#include <cblas.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/cpu/cpu.h"
#include "bench/bench.h"
#include "runtime/cli/cli.h"

#include "backends/opencl/opencl.h"

#define MAX_SIZES 8

struct options {
    const char *devices[16];
    int ndevices;
    size_t sizes[MAX_SIZES];
    int nsizes;
    size_t elems; /* elementwise length */
    double min_time;
    int json;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice bench kernels [--device ID]... [--sizes N,N,...] [--elems N]\n"
            "                            [--min-time S] [--json] [--tune]\n\n"
            "GEMM GFLOP/s per device at each size, as a fraction of the device's FMA peak\n"
            "(measured with a chain-of-FMA kernel) and of OpenBLAS cblas_sgemm on this CPU\n"
            "under the best OpenBLAS core for it, measured in the same run by a child process\n"
            "with OPENBLAS_CORETYPE set to that core (a value you set is kept); elementwise\n"
            "kernels in GB/s against a device copy; layer norm, causal softmax and embedding\n"
            "forward in GB/s against a device copy of the same bytes; batched GEMM at\n"
            "attention's shapes against an OpenBLAS loop. Where this process's OpenBLAS fell\n"
            "back to a generic core, the command first starts itself again with the best core.\n\n"
            "  --device ID    a device from `sluice devices` (repeatable; default: all)\n"
            "  --sizes LIST   square GEMM sizes (default 256,512,1024,2048)\n"
            "  --elems N      elementwise length in floats (default 8388608); the layer norm,\n"
            "                 causal softmax and embedding rows size their tensors from it\n"
            "  --min-time S   time each figure over at least S seconds (default 0.3)\n"
            "  --json         one JSON object instead of the tables\n"
            "  --tune         search CLBlast GEMM parameters for every OpenCL device and store\n"
            "                 the best in the cache that devices read when they open\n");
}

/* The one timing rule for devices and OpenBLAS alike: batches of doubling size (while a batch
 * takes under 50 ms) until at least min_time seconds and 3 batches have run; the result is the
 * best batch's seconds per call. `batch` runs `reps` calls and reports their seconds. */
typedef int (*batch_fn)(void *ctx, int reps, double *seconds);

static int best_batch(batch_fn batch, void *ctx, double min_time, double *seconds)
{
    double best = 1e30, total = 0.0;
    int reps = 1;
    for (int batches = 0; total < min_time || batches < 3; batches++) {
        double dt = 0.0;
        SL_TRY(batch(ctx, reps, &dt));
        best = SL_MIN(best, dt / reps);
        total += dt;
        if (dt < 0.05) reps *= 2;
    }
    *seconds = best;
    return SL_OK;
}

typedef int (*bench_fn)(sl_device *dev, void *ctx);

struct device_batch {
    sl_device *dev;
    bench_fn fn;
    void *ctx;
};

/* reps calls of fn, timed by the device's events. */
static int device_batch_run(void *p, int reps, double *seconds)
{
    struct device_batch *b = p;
    sl_event *e0, *e1;
    SL_TRY(sl_event_record(b->dev, &e0));
    int st = SL_OK;
    for (int r = 0; r < reps && st == SL_OK; r++) st = b->fn(b->dev, b->ctx);
    double ms = 0.0;
    if (st == SL_OK) st = sl_event_record(b->dev, &e1);
    if (st == SL_OK) {
        st = sl_event_wait(e1);
        if (st == SL_OK) st = sl_event_elapsed_ms(e0, e1, &ms);
        sl_event_free(e1);
    }
    sl_event_free(e0);
    *seconds = ms * 1e-3;
    return st;
}

/* Seconds per fn(ctx) on the device after one warm-up, by best_batch. */
static int time_op(sl_device *dev, bench_fn fn, void *ctx, double min_time, double *seconds)
{
    SL_TRY(fn(dev, ctx)); /* warm-up: kernel builds, caches, page faults */
    SL_TRY(sl_device_finish(dev));
    struct device_batch b = {dev, fn, ctx};
    return best_batch(device_batch_run, &b, min_time, seconds);
}

struct gemm_ctx {
    size_t n;
    sl_buffer *a, *b, *c;
};

static int run_gemm(sl_device *dev, void *p)
{
    struct gemm_ctx *g = p;
    return sl_gemm(dev, false, false, g->n, g->n, g->n, 1.0f, g->a, g->b, 0.0f, g->c);
}

struct elem_ctx {
    int kind;
    size_t n;
    sl_buffer *x, *y;
};

static const char *elem_names[] = {"copy", "axpy", "scale", "fill", "relu"};
/* bytes moved per element by each kind */
static const double elem_bytes[] = {8.0, 12.0, 8.0, 4.0, 8.0};

static int run_elem(sl_device *dev, void *p)
{
    struct elem_ctx *e = p;
    switch (e->kind) {
    case 0:
        return sl_buffer_copy(e->y, 0, e->x, 0, e->n * sizeof(float));
    case 1:
        return sl_axpy(dev, e->n, 0.5f, e->x, e->y);
    case 2:
        return sl_scale(dev, e->n, 0.999f, e->y);
    case 3:
        return sl_fill(dev, e->n, 1.0f, e->y);
    default:
        return sl_act_forward(dev, SL_ACT_RELU, e->n, e->x, e->y);
    }
}

/* OpenBLAS on this CPU, the baseline: C = A B at n x n on the host. */
struct host_gemm {
    int n;
    float *a, *b, *c;
};

static int host_gemm_init(struct host_gemm *h, size_t n)
{
    h->n = (int)n;
    h->a = calloc(n * n, sizeof(float));
    h->b = calloc(n * n, sizeof(float));
    h->c = calloc(n * n, sizeof(float));
    if (!h->a || !h->b || !h->c) return sl_fail(SL_ENOMEM, "no host memory for a %zu GEMM", n);
    for (size_t i = 0; i < n * n; i++) h->a[i] = h->b[i] = (float)(i % 7) * 0.1f;
    return SL_OK;
}

static void host_gemm_free(struct host_gemm *h)
{
    free(h->a);
    free(h->b);
    free(h->c);
}

static void host_gemm_run(const struct host_gemm *h)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, h->n, h->n, h->n, 1.0f, h->a, h->n, h->b,
                h->n, 0.0f, h->c, h->n);
}

/* reps OpenBLAS calls, timed by the host clock. */
static int host_batch_run(void *p, int reps, double *seconds)
{
    double t0 = sl_now();
    for (int r = 0; r < reps; r++) host_gemm_run(p);
    *seconds = sl_now() - t0;
    return SL_OK;
}

/* The baseline runs in a child process, `sluice bench kernels --blas-only`, because OpenBLAS
 * picks its core once, when it loads: the child starts with OPENBLAS_CORETYPE=<the best core for
 * this CPU> (backends/cpu/cpu.h) unless OPENBLAS_CORETYPE is set, which it inherits. It prints
 * "core NAME", then answers each line "N MIN_TIME" on its stdin with the seconds per n x n GEMM
 * (best_batch's rule) until its stdin closes. Where the child cannot start, the baseline is this
 * process's OpenBLAS, and the output says so. */
static struct blas_ref {
    pid_t pid; /* 0: no child, the baseline runs in this process */
    FILE *to, *from;
    char core[32]; /* the baseline's openblas_get_corename() */
    char how[160]; /* how its core was chosen, for the output */
} blas_ref;

/* OpenBLAS's threads spin for a while after a call (THREAD_TIMEOUT, about 0.1 s) before they
 * sleep; with the baseline in another process they would take cores from the next measurement.
 * So each side pauses before the other measures: 0.15 s, or twice the round's time if less (the
 * smoke test's tiny --min-time). */
static void blas_settle(double min_time)
{
    usleep((useconds_t)(1e6 * SL_MIN(0.15, 2.0 * min_time)));
}

static int blas_only(void)
{
    printf("core %s\n", openblas_get_corename());
    fflush(stdout);
    struct host_gemm h = {0};
    size_t n;
    double min_time;
    int st = SL_OK;
    while (st == SL_OK && scanf("%zu %lf", &n, &min_time) == 2) {
        if (n != (size_t)h.n) {
            host_gemm_free(&h);
            st = host_gemm_init(&h, n);
            if (st != SL_OK) break;
            host_gemm_run(&h); /* warm-up: threads, page faults */
        }
        double sec = 0.0;
        st = best_batch(host_batch_run, &h, min_time, &sec);
        blas_settle(min_time);
        printf("%.9g\n", sec);
        fflush(stdout);
    }
    host_gemm_free(&h);
    return st == SL_OK ? 0 : sl_cli_error("bench kernels --blas-only", st);
}

static void blas_ref_start(void)
{
    sl_cpu_blas b;
    sl_cpu_blas_detect(&b);
    const char *set = getenv("OPENBLAS_CORETYPE");
    if (set && b.set_by_sluice)
        snprintf(blas_ref.how, sizeof blas_ref.how,
                 "OPENBLAS_CORETYPE=%s, set by sluice: the library chose %s", set, b.fallback_of);
    else if (set)
        snprintf(blas_ref.how, sizeof blas_ref.how, "OPENBLAS_CORETYPE=%s as set", set);
    else if (b.best[0])
        snprintf(blas_ref.how, sizeof blas_ref.how,
                 "OPENBLAS_CORETYPE=%s, the best core for this CPU", b.best);
    else
        snprintf(blas_ref.how, sizeof blas_ref.how, "OpenBLAS's own choice");
    int to[2], from[2];
    if (pipe(to) != 0) goto in_process;
    if (pipe(from) != 0) {
        close(to[0]), close(to[1]);
        goto in_process;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[0]), close(to[1]), close(from[0]), close(from[1]);
        if (!set && b.best[0]) setenv("OPENBLAS_CORETYPE", b.best, 0);
        execl("/proc/self/exe", "sluice", "bench", "kernels", "--blas-only", (char *)NULL);
        _exit(127);
    }
    close(to[0]), close(from[1]);
    if (pid < 0) {
        close(to[1]), close(from[0]);
        goto in_process;
    }
    blas_ref.pid = pid;
    blas_ref.to = fdopen(to[1], "w");
    blas_ref.from = fdopen(from[0], "r");
    if (blas_ref.to && blas_ref.from && fscanf(blas_ref.from, "core %31s", blas_ref.core) == 1) {
        snprintf(blas_ref.how + strlen(blas_ref.how), sizeof blas_ref.how - strlen(blas_ref.how),
                 ", in a child process");
        return;
    }
    sl_log(SL_LOG_WARN, "the OpenBLAS baseline's child process did not start: measuring "
                        "OpenBLAS in this process");
    if (blas_ref.to) fclose(blas_ref.to);
    if (blas_ref.from) fclose(blas_ref.from);
    waitpid(pid, NULL, 0);
    blas_ref.pid = 0;
in_process:
    snprintf(blas_ref.core, sizeof blas_ref.core, "%s", b.core);
    snprintf(blas_ref.how, sizeof blas_ref.how, "this process's own OpenBLAS");
}

static void blas_ref_stop(void)
{
    if (!blas_ref.pid) return;
    fclose(blas_ref.to);
    fclose(blas_ref.from);
    waitpid(blas_ref.pid, NULL, 0);
    blas_ref.pid = 0;
}

/* Seconds per n x n OpenBLAS GEMM in the child, by best_batch over min_time. */
static int blas_ref_time(size_t n, double min_time, double *seconds)
{
    blas_settle(min_time); /* this process's own OpenBLAS threads, after a cpu device GEMM */
    if (fprintf(blas_ref.to, "%zu %.9g\n", n, min_time) < 0 || fflush(blas_ref.to) != 0 ||
        fscanf(blas_ref.from, "%lf", seconds) != 1 || !(*seconds > 0))
        return sl_fail(SL_EIO, "the OpenBLAS baseline's child process stopped answering");
    return SL_OK;
}

/* The device's GEMM and OpenBLAS's in alternating rounds, so that both see the same moments of a
 * shared machine; the best time of each. */
#define GEMM_ROUNDS 3
static int time_gemm_pair(sl_device *dev, struct gemm_ctx *g, double min_time, double *dev_s,
                          double *host_s)
{
    struct host_gemm h = {0};
    int st = blas_ref.pid ? SL_OK : host_gemm_init(&h, g->n);
    if (st == SL_OK && !blas_ref.pid) host_gemm_run(&h); /* warm-up: threads, page faults */
    *dev_s = *host_s = 1e30;
    for (int r = 0; r < GEMM_ROUNDS && st == SL_OK; r++) {
        double d = 0.0;
        st = time_op(dev, run_gemm, g, min_time / GEMM_ROUNDS, &d);
        if (st != SL_OK) break;
        *dev_s = SL_MIN(*dev_s, d);
        if (blas_ref.pid)
            st = blas_ref_time(g->n, min_time / GEMM_ROUNDS, &d);
        else
            st = best_batch(host_batch_run, &h, min_time / GEMM_ROUNDS, &d);
        *host_s = SL_MIN(*host_s, d);
    }
    host_gemm_free(&h);
    return st;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    *o = (struct options){
        .sizes = {256, 512, 1024, 2048}, .nsizes = 4, .elems = 8u << 20, .min_time = 0.3};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(arg, "--json")) {
            o->json = 1;
        } else if (!strcmp(arg, "--device") && val && o->ndevices < 16) {
            o->devices[o->ndevices++] = val;
            i++;
        } else if (!strcmp(arg, "--sizes") && val) {
            o->nsizes = 0;
            char *copy = strdup(val), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t && o->nsizes < MAX_SIZES;
                 t = strtok_r(NULL, ",", &save))
                o->sizes[o->nsizes++] = strtoul(t, NULL, 10);
            free(copy);
            i++;
        } else if (!strcmp(arg, "--elems") && val) {
            o->elems = strtoul(val, NULL, 10);
            i++;
        } else if (!strcmp(arg, "--min-time") && val) {
            o->min_time = atof(val);
            i++;
        } else {
            fprintf(stderr,
                    "sluice bench kernels: unknown or incomplete option '%s' (try --help)\n", arg);
            return 2;
        }
    }
    for (int s = 0; s < o->nsizes; s++)
        if (o->sizes[s] == 0) {
            fprintf(stderr, "sluice bench kernels: --sizes takes positive integers\n");
            return 2;
        }
    if (o->elems == 0 || o->min_time <= 0) {
        fprintf(stderr, "sluice bench kernels: --elems and --min-time must be positive\n");
        return 2;
    }
    return 0;
}

/* The device's FMA peak: the better of two measurements, one before and one after the GEMMs. A
 * peak is the best rate the device reaches, and on a shared machine a single measurement can read
 * far below it (the "FMA peak" line of `sluice bench kernels`; runs in bench/kernels.md). */
static double measure_peak(sl_device *dev, double best)
{
    double g = 0.0;
    if (sl_device_peak_gflops(dev, &g) != SL_OK) {
        sl_log(SL_LOG_WARN, "%s: no FMA peak: %s", sl_device_get_info(dev)->id, sl_last_error());
        return best;
    }
    return SL_MAX(best, g);
}

/* GFLOP/s of the device's GEMM and of OpenBLAS's at n x n x n, timed by time_gemm_pair. */
static int gemm_at(sl_device *dev, size_t n, double min_time, double *gflops, double *blas)
{
    struct gemm_ctx g = {.n = n};
    size_t bytes = g.n * g.n * sizeof(float);
    double sec = 0.0, host_sec = 0.0;
    int st = sl_buffer_alloc(dev, bytes, &g.a);
    if (st == SL_OK) st = sl_buffer_alloc(dev, bytes, &g.b);
    if (st == SL_OK) st = sl_buffer_alloc(dev, bytes, &g.c);
    if (st == SL_OK) st = sl_fill(dev, g.n * g.n, 0.5f, g.a);
    if (st == SL_OK) st = sl_fill(dev, g.n * g.n, 0.25f, g.b);
    if (st == SL_OK) st = time_gemm_pair(dev, &g, min_time, &sec, &host_sec);
    sl_buffer_free(g.a);
    sl_buffer_free(g.b);
    sl_buffer_free(g.c);
    double flop = 2.0 * (double)g.n * g.n * g.n;
    if (st == SL_OK) {
        *gflops = flop / sec * 1e-9;
        *blas = flop / host_sec * 1e-9;
    }
    return st;
}

/* The device's GEMM at every size against its FMA peak and OpenBLAS: the device's name, its peak
 * and the "gemm" array into `out`, and the table. */
static int bench_gemm(sl_device *dev, const struct options *o, cJSON *out)
{
    const sl_device_info *info = sl_device_get_info(dev);
    double peak = measure_peak(dev, 0.0);
    double gf[MAX_SIZES], blas[MAX_SIZES];
    for (int s = 0; s < o->nsizes; s++)
        SL_TRY(gemm_at(dev, o->sizes[s], o->min_time, &gf[s], &blas[s]));
    peak = measure_peak(dev, peak);

    cJSON_AddStringToObject(out, "device", info->id);
    cJSON_AddStringToObject(out, "device_name", info->name);
    cJSON_AddNumberToObject(out, "peak_gflops", peak);
    cJSON *gemms = cJSON_AddArrayToObject(out, "gemm");
    if (!o->json)
        printf("\n%s  %s\nFMA peak %.1f GFLOP/s; OpenBLAS: core %s (%s)\n  %6s %10s %9s %11s "
               "%9s\n",
               info->id, info->name, peak, blas_ref.core, blas_ref.how, "size", "GFLOP/s",
               "of peak", "OpenBLAS", "ratio");
    for (int s = 0; s < o->nsizes; s++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "size", (double)o->sizes[s]);
        cJSON_AddNumberToObject(e, "gflops", gf[s]);
        cJSON_AddNumberToObject(e, "fraction_of_peak", peak > 0 ? gf[s] / peak : 0);
        cJSON_AddNumberToObject(e, "openblas_gflops", blas[s]);
        cJSON_AddNumberToObject(e, "ratio_to_openblas", gf[s] / blas[s]);
        cJSON_AddItemToArray(gemms, e);
        if (!o->json)
            printf("  %6zu %10.1f %8.1f%% %11.1f %8.1f%%\n", o->sizes[s], gf[s],
                   peak > 0 ? 100 * gf[s] / peak : 0, blas[s], 100 * gf[s] / blas[s]);
    }
    return SL_OK;
}

/* The elementwise kernels in GB/s against a device-to-device copy: the "elementwise" array into
 * `out`, and the table. */
static int bench_elementwise(sl_device *dev, const struct options *o, cJSON *out)
{
    struct elem_ctx e = {.n = o->elems};
    int st = sl_buffer_alloc(dev, e.n * sizeof(float), &e.x);
    if (st == SL_OK) st = sl_buffer_alloc(dev, e.n * sizeof(float), &e.y);
    if (st == SL_OK) st = sl_fill(dev, e.n, 0.5f, e.x);
    if (st == SL_OK) st = sl_fill(dev, e.n, 0.25f, e.y);
    double copy_gbs = 0.0;
    cJSON *elems = cJSON_AddArrayToObject(out, "elementwise");
    if (!o->json && st == SL_OK)
        printf("  %-8s %9s %9s   (%zu floats)\n", "kernel", "GB/s", "of copy", e.n);
    for (e.kind = 0; e.kind < (int)SL_ARRAY_LEN(elem_names) && st == SL_OK; e.kind++) {
        double sec = 0.0;
        st = time_op(dev, run_elem, &e, o->min_time, &sec);
        if (st != SL_OK) break;
        double gbs = elem_bytes[e.kind] * (double)e.n / sec * 1e-9;
        if (e.kind == 0) copy_gbs = gbs;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "kernel", elem_names[e.kind]);
        cJSON_AddNumberToObject(j, "gb_per_s", gbs);
        cJSON_AddNumberToObject(j, "ratio_to_copy", gbs / copy_gbs);
        cJSON_AddItemToArray(elems, j);
        if (!o->json)
            printf("  %-8s %9.1f %8.1f%%\n", elem_names[e.kind], gbs, 100 * gbs / copy_gbs);
    }
    sl_buffer_free(e.x);
    sl_buffer_free(e.y);
    return st;
}

/* ------------------------------------------------------------------------------------------------
 * Transformer kernels: layer norm, causal softmax and embedding forward in GB/s against a
 * device-to-device copy that moves the same bytes (half of them read, half written), and batched
 * GEMM at attention's shapes against OpenBLAS running the same batch as a loop of cblas_sgemm. */

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
        st = time_op(dev, run_tf, t, min_time / TF_ROUNDS, &d);
        sec = SL_MIN(sec, d);
        if (st == SL_OK) st = time_op(dev, run_tf_copy, &c, min_time / TF_ROUNDS, &d);
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
static int bench_transformer(sl_device *dev, const struct options *o, cJSON *out)
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
    for (int r = 0; r < GEMM_ROUNDS && st == SL_OK; r++) {
        double d = 0.0;
        st = time_op(dev, run_bgemm, &g, min_time / GEMM_ROUNDS, &d);
        sec = SL_MIN(sec, d);
        if (st == SL_OK) st = best_batch(host_bgemm_batch, &g, min_time / GEMM_ROUNDS, &d);
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
static int bench_batched_gemm(sl_device *dev, const struct options *o, cJSON *out)
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

/* Benchmarks one device; adds its object to `out`. */
static int bench_device(sl_device *dev, const struct options *o, cJSON *out)
{
    SL_TRY(bench_gemm(dev, o, out));
    SL_TRY(bench_elementwise(dev, o, out));
    SL_TRY(bench_transformer(dev, o, out));
    return bench_batched_gemm(dev, o, out);
}

int sl_bench_kernels(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--tune")) return sl_bench_kernels_tune(argc, argv);
    if (argc == 2 && !strcmp(argv[1], "--blas-only")) return blas_only();
    if (sl_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    struct options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc;
    sl_cpu_blas_reexec(); /* this process's cpu device on the best core (backends/cpu/cpu.h) */
    const sl_device_info *infos;
    size_t count;
    int st = sl_device_list(&infos, &count);
    if (st != SL_OK) return sl_cli_error("bench kernels", st);
    if (o.ndevices == 0)
        for (size_t i = 0; i < count && o.ndevices < 16; i++) o.devices[o.ndevices++] = infos[i].id;

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "name", "kernels");
    blas_ref_start();
    cJSON_AddStringToObject(
        root, "baseline",
        "GEMM: OpenBLAS cblas_sgemm on this CPU at the same size under the best OpenBLAS core "
        "for it (a child process with OPENBLAS_CORETYPE set to that core unless it was set), in "
        "rounds alternating with the device's GEMM and timed by the same rule; elementwise: a "
        "device-to-device copy of the same length");
    cJSON_AddStringToObject(
        root, "baseline_transformer",
        "layernorm, causal_softmax, embedding: a device-to-device copy moving the same bytes "
        "(half read, half written), in alternating rounds; batched_gemm: OpenBLAS on this CPU "
        "running the same batch as a loop of cblas_sgemm, in alternating rounds");
    cJSON_AddStringToObject(root, "openblas_core", blas_ref.core);
    cJSON_AddStringToObject(root, "openblas_core_how", blas_ref.how);
    cJSON_AddStringToObject(root, "openblas_core_here", openblas_get_corename());
    cJSON_AddNumberToObject(root, "ratio_target", 0.8);
    cJSON_AddStringToObject(root, "ratio_is",
                            "first device's GEMM GFLOP/s at 1024 (or the "
                            "largest size) over OpenBLAS's");
    cJSON *devs = cJSON_AddArrayToObject(root, "devices");
    double headline = 0.0;
    int headline_size = 0;
    for (int s = 0; s < o.nsizes; s++)
        if (o.sizes[s] == 1024 ||
            (o.sizes[s] > o.sizes[headline_size] && o.sizes[headline_size] != 1024))
            headline_size = s;
    for (int d = 0; d < o.ndevices; d++) {
        sl_device *dev;
        st = sl_device_open(o.devices[d], &dev);
        if (st != SL_OK) {
            cJSON_Delete(root);
            blas_ref_stop();
            return sl_cli_error("bench kernels", st);
        }
        cJSON *obj = cJSON_CreateObject();
        cJSON_AddItemToArray(devs, obj);
        st = bench_device(dev, &o, obj);
        sl_device_close(dev);
        if (st != SL_OK) {
            cJSON_Delete(root);
            blas_ref_stop();
            return sl_cli_error("bench kernels", st);
        }
        if (d == 0) {
            cJSON *g = cJSON_GetArrayItem(cJSON_GetObjectItem(obj, "gemm"), headline_size);
            headline = cJSON_GetNumberValue(cJSON_GetObjectItem(g, "ratio_to_openblas"));
        }
    }
    blas_ref_stop();
    cJSON_AddNumberToObject(root, "ratio", headline);
    if (o.json)
        sl_bench_print_json(root);
    else
        cJSON_Delete(root);
    return 0;
}

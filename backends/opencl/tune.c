/* CLBlast parameters for the OpenCL backend: the per-device cache of tuned Xgemm parameters, the
 * built-in set for CPU devices, and the small search behind `sluice bench kernels --tune`.
 *
 * CLBlast ships a database of tuned parameters, mostly for GPUs; for PoCL's CPU device it falls
 * back to GPU-shaped defaults (local memory tiles, small vectors) that reach about a tenth of
 * OpenBLAS. CLBlastOverrideParameters() replaces a kernel's parameters for one device in this
 * process; we call it at device open with the cached set for the device's name, or the built-in
 * CPU set. */
#include "backends/opencl/opencl_impl.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <clblast_c.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* CLBlast 1.5's Xgemm parameters, all of which an override must give. */
static const char *const XGEMM_NAMES[] = {"GEMMK", "KREG",  "KWG",   "KWI", "MDIMA", "MDIMC",
                                          "MWG",   "NDIMB", "NDIMC", "NWG", "SA",    "SB",
                                          "STRM",  "STRN",  "VWM",   "VWN"};
#define XGEMM_NPARAMS SL_ARRAY_LEN(XGEMM_NAMES)

/* One candidate: the Xgemm parameters in XGEMM_NAMES order, and the GEMM size (cube root of
 * m*n*k) from which CLBlast uses the indirect Xgemm kernel instead of XgemmDirect. */
struct params {
    size_t x[XGEMM_NPARAMS];
    size_t min_indirect;
};

/* For CPUs: float8 vectors (one AVX register) along M, a 16x4 register tile per work-item
 * (MWG/MDIMC x NWG/NDIMC: 8 float8 accumulators, which fit the 16 AVX registers), 8x8
 * work-groups, and local memory tiles (SA=SB=1) with KWG=64, KWI=8.
 *
 * Why local memory on a CPU: PoCL runs a work-group's items one after another. Without barriers
 * each item streams its whole K range alone, so nothing is reused between items and only a large
 * per-item tile keeps the loads down, which then spills its accumulators to the stack (the earlier
 * built-in set in CANDIDATES, 16x16 per item, as perf annotate of PoCL's compiled Xgemm shows).
 * The barriers around the local tiles cut the K loop into regions that PoCL runs for all items in
 * turn, so a tile loaded once serves the whole work-group from cache, and the small register tile
 * stays in registers. The explicit float8 vectors matter as much: PoCL does not vectorize across
 * work-items here, so VWM=1 sets (CLBlast's style for Intel CPUs) are far slower. CLBlast 1.5.3's
 * kernel computes wrong results with KREG=4 in 8x8 work-groups, which is why the search checks
 * every candidate's result.
 *
 * One set serves every size: switching with CLBlastOverrideParameters costs about 1 ms (CLBlast
 * keeps each set's compiled program), more than a 256^3 GEMM takes, and no set won at one size by
 * that much. Measure a set against OpenBLAS (the cached or built-in set; SLUICE_CLBLAST_PARAMS=
 * default for CLBlast's), at square sizes and at a stage's micro-batch rows x 1024 x 1024:
 *   build-ci/tests/opencl/opencl_gemm_vs_openblas 1024 1024 1024 opencl:0 8 nn */
/* CLBlast uses XgemmDirect where m*n*k < XGEMM_MIN_INDIRECT_SIZE^3. On PoCL the indirect kernel
 * beat the direct one at every shape measured from 64x128x128 up, while a thin 64x10x128 ran
 * faster direct (opencl_gemm_vs_openblas M N K at such shapes). */
#define CPU_MIN_INDIRECT 64
static const struct params CPU_BUILTIN = {
    /* GEMMK KREG KWG KWI MDIMA MDIMC MWG NDIMB NDIMC NWG SA SB STRM STRN VWM VWN */
    {0, 1, 64, 8, 8, 8, 128, 8, 8, 32, 1, 1, 0, 0, 8, 4},
    CPU_MIN_INDIRECT};

/* The search space of sl_opencl_tune_gemm: the built-in CPU set and its neighbours first, the
 * earlier built-in set and its neighbours, then a few GPU-shaped sets (small vectors), which
 * CLBlast rejects where they do not fit. */
static const struct params CANDIDATES[] = {
    {{0, 1, 64, 8, 8, 8, 128, 8, 8, 32, 1, 1, 0, 0, 8, 4}, CPU_MIN_INDIRECT},
    {{0, 1, 128, 2, 8, 8, 128, 8, 8, 32, 1, 1, 0, 0, 8, 4}, CPU_MIN_INDIRECT},
    {{0, 1, 64, 4, 8, 8, 128, 8, 8, 32, 1, 1, 0, 0, 8, 4}, CPU_MIN_INDIRECT},
    /* The earlier built-in set (no local memory, 16x16 per work-item) and its neighbours. */
    {{0, 1, 32, 2, 8, 8, 128, 8, 8, 128, 0, 0, 0, 0, 8, 8}, CPU_MIN_INDIRECT},
    {{0, 1, 32, 2, 16, 16, 256, 16, 16, 256, 0, 0, 0, 0, 8, 8}, CPU_MIN_INDIRECT},
    {{0, 1, 16, 2, 8, 8, 128, 8, 8, 128, 0, 0, 0, 0, 8, 8}, CPU_MIN_INDIRECT},
    {{0, 1, 64, 2, 8, 8, 128, 8, 8, 128, 0, 0, 0, 0, 8, 8}, CPU_MIN_INDIRECT},
    {{0, 1, 32, 2, 8, 8, 128, 4, 4, 64, 0, 0, 0, 0, 8, 8}, CPU_MIN_INDIRECT},
    {{0, 1, 32, 2, 8, 8, 128, 8, 8, 128, 0, 0, 0, 0, 4, 8}, CPU_MIN_INDIRECT},
    {{0, 1, 32, 2, 16, 16, 256, 8, 8, 128, 0, 0, 0, 0, 8, 8}, CPU_MIN_INDIRECT},
    {{0, 1, 32, 2, 8, 8, 128, 8, 8, 64, 0, 0, 0, 0, 8, 4}, CPU_MIN_INDIRECT},
    {{0, 1, 32, 2, 8, 8, 64, 8, 8, 64, 0, 0, 0, 0, 8, 8}, CPU_MIN_INDIRECT},
    {{0, 1, 32, 2, 8, 8, 64, 8, 8, 64, 0, 0, 0, 0, 4, 4}, CPU_MIN_INDIRECT},
    {{0, 1, 32, 2, 16, 16, 64, 16, 16, 64, 1, 1, 0, 0, 4, 4}, 384},
    {{0, 1, 16, 2, 16, 16, 64, 16, 16, 128, 1, 1, 1, 0, 4, 8}, 384},
    {{0, 1, 32, 2, 8, 8, 32, 32, 32, 64, 1, 1, 0, 0, 4, 2}, 384},
    {{0, 1, 32, 2, 16, 16, 128, 16, 16, 128, 1, 1, 0, 0, 4, 4}, 384},
    /* Neighbours of the earlier set that came close on PoCL (see CPU_BUILTIN): single K unroll,
     * strided accesses, 16x16 work-groups with 8x8 per work-item, and the GEMMK=1 kernel. */
    {{0, 1, 32, 1, 8, 8, 128, 8, 8, 128, 0, 0, 0, 0, 8, 8}, CPU_MIN_INDIRECT},
    {{0, 1, 32, 2, 8, 8, 128, 8, 8, 128, 0, 0, 1, 1, 8, 8}, CPU_MIN_INDIRECT},
    {{0, 1, 32, 2, 16, 16, 128, 16, 16, 128, 0, 0, 0, 0, 8, 8}, CPU_MIN_INDIRECT},
    {{1, 8, 32, 1, 16, 16, 128, 16, 16, 128, 0, 0, 0, 0, 8, 8}, CPU_MIN_INDIRECT},
};

static void format_params(const struct params *p, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < XGEMM_NPARAMS && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s=%zu", i ? " " : "", XGEMM_NAMES[i],
                                 p->x[i]);
    if (used < cap)
        snprintf(buf + used, cap - used, " XGEMM_MIN_INDIRECT_SIZE=%zu", p->min_indirect);
}

static int apply_params(struct sl__cl_device *d, const struct params *p)
{
    const char *names[XGEMM_NPARAMS];
    for (size_t i = 0; i < XGEMM_NPARAMS; i++) names[i] = XGEMM_NAMES[i];
    CLBlastStatusCode s = CLBlastOverrideParameters(d->device, "Xgemm", CLBlastPrecisionSingle,
                                                    XGEMM_NPARAMS, names, p->x);
    if (s != CLBlastSuccess) return sl__clblast_fail(s, "CLBlastOverrideParameters (Xgemm)");
    const char *rname[1] = {"XGEMM_MIN_INDIRECT_SIZE"};
    size_t rval[1] = {p->min_indirect};
    s = CLBlastOverrideParameters(d->device, "GemmRoutine", CLBlastPrecisionSingle, 1, rname, rval);
    if (s != CLBlastSuccess) return sl__clblast_fail(s, "CLBlastOverrideParameters (GemmRoutine)");
    format_params(p, d->gemm_params, sizeof d->gemm_params);
    return SL_OK;
}

const char *sl__cl_gemm_params(const sl_device *dev)
{
    return dev && dev->ops == &sl__opencl_backend ? CLDEV(dev)->gemm_params : "";
}

/* ------------------------------------------------------------------------------------------------
 * The cache file */

int sl_opencl_cache_path(char *buf, size_t cap)
{
    const char *dir = getenv("SLUICE_CACHE_DIR");
    int n;
    if (dir && *dir) {
        n = snprintf(buf, cap, "%s/clblast.json", dir);
    } else if ((dir = getenv("XDG_CACHE_HOME")) && *dir) {
        n = snprintf(buf, cap, "%s/sluice/clblast.json", dir);
    } else if ((dir = getenv("HOME")) && *dir) {
        n = snprintf(buf, cap, "%s/.cache/sluice/clblast.json", dir);
    } else {
        return sl_fail(SL_EIO, "no cache directory: set SLUICE_CACHE_DIR, XDG_CACHE_HOME or HOME");
    }
    if (n < 0 || (size_t)n >= cap) return sl_fail(SL_EINVAL, "cache path too long");
    return SL_OK;
}

/* Reads the cache (an empty object when there is none yet). */
static int load_cache(cJSON **out)
{
    char path[1024];
    SL_TRY(sl_opencl_cache_path(path, sizeof path));
    char *text = NULL;
    size_t size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        *out = cJSON_CreateObject();
        return *out ? SL_OK : sl_fail(SL_ENOMEM, "no memory for the tuning cache");
    }
    fclose(f);
    SL_TRY(sl_read_file(path, &text, &size));
    cJSON *root = cJSON_ParseWithLength(text, size);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return sl_fail(SL_EFORMAT,
                       "%s is not a JSON object; delete it and run `sluice bench "
                       "kernels --tune` again",
                       path);
    }
    *out = root;
    return SL_OK;
}

static int mkdirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        int r = mkdir(path, 0755);
        *p = '/';
        if (r != 0 && errno != EEXIST) return -1;
    }
    return 0;
}

static int save_cache(cJSON *root)
{
    char path[1024], tmp[1100];
    SL_TRY(sl_opencl_cache_path(path, sizeof path));
    if (mkdirs(path) != 0)
        return sl_fail(SL_EIO, "could not create the directory of %s: %s", path, strerror(errno));
    char *text = cJSON_Print(root);
    if (!text) return sl_fail(SL_ENOMEM, "no memory to print the tuning cache");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f) ok = (fclose(f) == 0) && ok;
    free(text);
    /* Written beside and renamed, so that a reader never sees half a file. */
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return sl_fail(SL_EIO, "could not write %s: %s", path, strerror(errno));
    }
    return SL_OK;
}

/* The parameters of a device's cache entry; false if it has none or it is malformed. */
static bool entry_params(const cJSON *entry, struct params *p)
{
    const cJSON *xg = cJSON_GetObjectItemCaseSensitive(entry, "Xgemm");
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(entry, "GemmRoutine");
    if (!cJSON_IsObject(xg)) return false;
    for (size_t i = 0; i < XGEMM_NPARAMS; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(xg, XGEMM_NAMES[i]);
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 4096) return false;
        p->x[i] = (size_t)v->valuedouble;
    }
    const cJSON *mi = cJSON_GetObjectItemCaseSensitive(rt, "XGEMM_MIN_INDIRECT_SIZE");
    p->min_indirect =
        cJSON_IsNumber(mi) && mi->valuedouble >= 0 ? (size_t)mi->valuedouble : CPU_MIN_INDIRECT;
    return true;
}

int sl__cl_apply_tuning(sl_device *dev)
{
    struct sl__cl_device *d = CLDEV(dev);
    const char *mode = getenv("SLUICE_CLBLAST_PARAMS");
    /* "default" keeps CLBlast's own database, for comparisons. */
    if (mode && !strcmp(mode, "default")) return SL_OK;
    cJSON *root = NULL;
    struct params p;
    bool have = false;
    if (load_cache(&root) == SL_OK) {
        const cJSON *devs = cJSON_GetObjectItemCaseSensitive(root, "devices");
        const cJSON *entry = cJSON_GetObjectItemCaseSensitive(devs, dev->info.name);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(entry, "clblast_default"))) {
            /* Tuning found CLBlast's own parameters best for this device. */
            cJSON_Delete(root);
            return SL_OK;
        }
        if (entry) {
            have = entry_params(entry, &p);
            if (!have)
                sl_log(SL_LOG_WARN, "opencl: ignoring the malformed tuning cache entry for '%s'",
                       dev->info.name);
        }
    } else {
        sl_log(SL_LOG_WARN, "opencl: ignoring the tuning cache: %s", sl_last_error());
        sl_clear_error();
    }
    cJSON_Delete(root);
    if (!have && dev->info.kind == SL_DEVICE_CPU) {
        p = CPU_BUILTIN;
        have = true;
    }
    if (!have) return SL_OK;
    if (apply_params(d, &p) != SL_OK) {
        /* CLBlast's defaults still work: say so and go on. */
        sl_log(SL_LOG_WARN, "opencl: could not apply tuned GEMM parameters for '%s': %s",
               dev->info.name, sl_last_error());
        sl_clear_error();
        return SL_OK;
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * The search */

/* The machine this runs on may be shared and its load may change from one candidate to the
 * next, so every candidate is timed against OpenBLAS on the host, the runs interleaved, and
 * candidates are ranked by that ratio rather than by raw GFLOP/s. */
struct timing {
    double gflops;      /* the device, best of the runs */
    double host_gflops; /* OpenBLAS, best of the runs beside them */
    double ratio;       /* device time / host time inverted: > 1 is faster than OpenBLAS */
};

struct host_mats {
    const float *a, *b;
    float *c;
};

/* Runs C = A B (n x n) at least `reps` times on the device and on the host, alternating, and
 * until each side has run for TIME_MIN_S (at most TIME_MAX_REPS pairs); wall-clock around clFinish
 * for the device. Five pairs alone were too few at n=256 (under a millisecond each) on a loaded
 * machine: one lucky OpenBLAS slot or one unlucky device slot moved a ratio 5-10x. */
#define TIME_MIN_S    0.25
#define TIME_MAX_REPS 200
static int time_gemm(sl_device *dev, size_t n, sl_buffer *a, sl_buffer *b, sl_buffer *c,
                     const struct host_mats *h, int reps, struct timing *out)
{
    double best = INFINITY, best_host = INFINITY, total = 0.0, total_host = 0.0;
    for (int r = 0;
         r < reps || ((total < TIME_MIN_S || total_host < TIME_MIN_S) && r < TIME_MAX_REPS); r++) {
        double t0 = sl_now();
        SL_TRY(sl_gemm(dev, false, false, n, n, n, 1.0f, a, b, 0.0f, c));
        SL_TRY(sl_device_finish(dev));
        double t1 = sl_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)n, (blasint)n, (blasint)n,
                    1.0f, h->a, (blasint)n, h->b, (blasint)n, 0.0f, h->c, (blasint)n);
        double t2 = sl_now();
        best = SL_MIN(best, t1 - t0);
        best_host = SL_MIN(best_host, t2 - t1);
        total += t1 - t0;
        total_host += t2 - t1;
    }
    double flop = 2.0 * (double)n * (double)n * (double)n;
    out->gflops = flop / best * 1e-9;
    out->host_gflops = flop / best_host * 1e-9;
    out->ratio = best_host / best;
    return SL_OK;
}

/* Largest |got - ref| / (1e-3 + 1e-3 |ref|); <= 1 passes. */
static double worst_error(const float *got, const float *ref, size_t count)
{
    double worst = 0.0;
    for (size_t i = 0; i < count; i++) {
        double e = fabs((double)got[i] - (double)ref[i]) / (1e-3 + 1e-3 * fabs((double)ref[i]));
        if (!(e <= worst)) worst = e; /* NaN counts as the worst */
    }
    return worst;
}

/* One candidate: warm up (CLBlast compiles the kernel on first use), check, time. */
static int try_params(sl_device *dev, size_t n, sl_buffer *a, sl_buffer *b, sl_buffer *c,
                      const float *ref, float *got, const struct host_mats *h, struct timing *t)
{
    SL_TRY(sl_gemm(dev, false, false, n, n, n, 1.0f, a, b, 0.0f, c));
    SL_TRY(sl_buffer_download(c, 0, got, n * n * sizeof(float)));
    double err = worst_error(got, ref, n * n);
    if (err > 1.0) return sl_fail(SL_EINTERNAL, "wrong result (error %.3g of tolerance)", err);
    return time_gemm(dev, n, a, b, c, h, 5, t);
}

int sl_opencl_tune_gemm(sl_device *dev, size_t n, int verbose, sl_opencl_tune_result *res)
{
    if (!dev || !res || n == 0) return sl_fail(SL_EINVAL, "sl_opencl_tune_gemm: bad argument");
    if (dev->ops != &sl__opencl_backend)
        return sl_fail(SL_EINVAL, "%s is not an OpenCL device", dev->info.id);
    memset(res, 0, sizeof *res);
    struct sl__cl_device *d = CLDEV(dev);
    size_t count = n * n, bytes = count * sizeof(float);
    float *ha = malloc(bytes), *hb = malloc(bytes), *ref = malloc(bytes), *got = malloc(bytes);
    float *hc = malloc(bytes);
    const struct host_mats host = {ha, hb, hc};
    sl_buffer *a = NULL, *b = NULL, *c = NULL;
    int st = ha && hb && ref && got && hc ? SL_OK : sl_fail(SL_ENOMEM, "no memory for tuning GEMM");
    if (st == SL_OK) {
        uint32_t s = 12345;
        for (size_t i = 0; i < count; i++) {
            s = s * 1664525u + 1013904223u;
            ha[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
            s = s * 1664525u + 1013904223u;
            hb[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)n, (blasint)n, (blasint)n,
                    1.0f, ha, (blasint)n, hb, (blasint)n, 0.0f, ref, (blasint)n);
    }
    if (st == SL_OK) st = sl_buffer_alloc(dev, bytes, &a);
    if (st == SL_OK) st = sl_buffer_alloc(dev, bytes, &b);
    if (st == SL_OK) st = sl_buffer_alloc(dev, bytes, &c);
    if (st == SL_OK) st = sl_buffer_upload(a, 0, ha, bytes);
    if (st == SL_OK) st = sl_buffer_upload(b, 0, hb, bytes);

    /* What is in use now: CLBlast's defaults when nothing was applied at open (then the figure is
     * the default), else the cached or built-in set. */
    struct timing now = {0};
    if (st == SL_OK) {
        int s2 = try_params(dev, n, a, b, c, ref, got, &host, &now);
        if (s2 != SL_OK) {
            if (verbose) printf("  parameters in use: %s\n", sl_last_error());
            sl_clear_error();
            memset(&now, 0, sizeof now);
        } else if (verbose) {
            printf("  %-15s %6.1f GFLOP/s, %.2fx OpenBLAS (%.1f)\n",
                   d->gemm_params[0] ? "in use" : "CLBlast default", now.gflops, now.ratio,
                   now.host_gflops);
        }
        res->builtin_gflops = now.gflops;
        res->builtin_vs_openblas = now.ratio;
        if (!d->gemm_params[0]) {
            res->default_gflops = now.gflops;
            res->default_vs_openblas = now.ratio;
        }
    }

    int best = -1;
    for (size_t i = 0; st == SL_OK && i < SL_ARRAY_LEN(CANDIDATES); i++) {
        char desc[512];
        format_params(&CANDIDATES[i], desc, sizeof desc);
        struct timing t = {0};
        res->candidates++;
        int s2 = apply_params(d, &CANDIDATES[i]);
        if (s2 == SL_OK) s2 = try_params(dev, n, a, b, c, ref, got, &host, &t);
        if (s2 != SL_OK) {
            res->failed++;
            if (verbose) printf("  [%2zu] failed: %s\n       %s\n", i, sl_last_error(), desc);
            sl_clear_error();
            /* A failed kernel may leave the queue in error; drain it. */
            clFinish(d->queue);
            continue;
        }
        if (verbose) {
            printf("  [%2zu] %6.1f GFLOP/s, %.2fx OpenBLAS (%.1f)  %s\n", i, t.gflops, t.ratio,
                   t.host_gflops, desc);
            fflush(stdout);
        }
        if (t.ratio > res->best_vs_openblas) {
            res->best_gflops = t.gflops;
            res->best_vs_openblas = t.ratio;
            best = (int)i;
        }
    }

    if (st == SL_OK && best < 0)
        st = sl_fail(SL_EDEVICE, "no CLBlast parameter set worked on %s", dev->info.name);
    /* CLBlast's database may beat every candidate (on GPUs it often will). CLBlast cannot undo an
     * override within a process, so the best candidate stays in use here, and the cache records
     * that later processes should keep CLBlast's defaults. */
    bool keep_default = st == SL_OK && res->default_vs_openblas > res->best_vs_openblas;
    if (st == SL_OK) {
        st = apply_params(d, &CANDIDATES[best]);
        if (keep_default) {
            snprintf(res->best, sizeof res->best, "CLBlast's defaults");
            res->best_gflops = res->default_gflops;
            res->best_vs_openblas = res->default_vs_openblas;
        } else {
            format_params(&CANDIDATES[best], res->best, sizeof res->best);
        }
    }
    if (st == SL_OK) {
        cJSON *root = NULL;
        if (load_cache(&root) != SL_OK) { /* a broken cache is replaced */
            sl_clear_error();
            root = cJSON_CreateObject();
        }
        cJSON *devs = cJSON_GetObjectItemCaseSensitive(root, "devices");
        if (!cJSON_IsObject(devs)) {
            cJSON_DeleteItemFromObjectCaseSensitive(root, "devices");
            devs = cJSON_AddObjectToObject(root, "devices");
        }
        cJSON_DeleteItemFromObjectCaseSensitive(devs, dev->info.name);
        cJSON *entry = cJSON_AddObjectToObject(devs, dev->info.name);
        if (keep_default) cJSON_AddBoolToObject(entry, "clblast_default", true);
        cJSON *xg = cJSON_AddObjectToObject(entry, "Xgemm");
        for (size_t i = 0; i < XGEMM_NPARAMS; i++)
            cJSON_AddNumberToObject(xg, XGEMM_NAMES[i], (double)CANDIDATES[best].x[i]);
        cJSON *rt = cJSON_AddObjectToObject(entry, "GemmRoutine");
        cJSON_AddNumberToObject(rt, "XGEMM_MIN_INDIRECT_SIZE",
                                (double)CANDIDATES[best].min_indirect);
        cJSON_AddNumberToObject(entry, "n", (double)n);
        cJSON_AddNumberToObject(entry, "gflops", res->best_gflops);
        cJSON_AddNumberToObject(entry, "vs_openblas", res->best_vs_openblas);
        cJSON_AddStringToObject(entry, "driver", dev->info.driver);
        st = save_cache(root);
        cJSON_Delete(root);
    }
    sl_buffer_free(a);
    sl_buffer_free(b);
    sl_buffer_free(c);
    free(ha);
    free(hb);
    free(ref);
    free(got);
    free(hc);
    return st;
}

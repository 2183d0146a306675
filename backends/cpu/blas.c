/* The CPU backend's view of the processor and of OpenBLAS's core: the CPU's features, whether
 * OpenBLAS fell back to a generic core, and the restart that fixes it (backends/cpu/cpu.h). */
#define _GNU_SOURCE
#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "backends/cpu/cpu.h"
#include "core/core.h"

void sl_cpu_features_read(sl_cpu_features *f)
{
    memset(f, 0, sizeof *f);
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d, max = __get_cpuid_max(0, NULL);
    if (max < 1 || !__get_cpuid(1, &a, &b, &c, &d)) return;
    unsigned long long xcr0 = 0;
    if (c & bit_OSXSAVE) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = ((unsigned long long)hi << 32) | lo;
    }
    bool ymm = (xcr0 & 0x6) == 0x6;           /* SSE and AVX state */
    bool zmm = (xcr0 & 0xe6) == 0xe6;         /* ... and opmask, ZMM0-15 upper, ZMM16-31 */
    bool tiles = (xcr0 & 0x60000) == 0x60000; /* XTILECFG, XTILEDATA */
    f->avx = ymm && (c & bit_AVX);
    f->fma = f->avx && (c & bit_FMA);
    if (max < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    unsigned subleaves = a;
    f->avx2 = f->avx && (b & bit_AVX2);
    f->avx512f = zmm && (b & bit_AVX512F);
    f->avx512dq = f->avx512f && (b & bit_AVX512DQ);
    f->avx512bw = f->avx512f && (b & bit_AVX512BW);
    f->avx512vl = f->avx512f && (b & bit_AVX512VL);
    f->amx = tiles && (d & (1u << 24)) && (d & (1u << 22)); /* AMX-TILE, AMX-BF16 */
    if (subleaves >= 1) {
        __cpuid_count(7, 1, a, b, c, d);
        f->avx512_bf16 = f->avx512f && (a & (1u << 5));
    }
#endif
}

bool sl_cpu_features_avx512(const sl_cpu_features *f)
{
    return f->avx512f && f->avx512bw && f->avx512dq && f->avx512vl;
}

void sl_cpu_features_describe(const sl_cpu_features *f, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s%s%s%s%s", f->avx ? "AVX " : "", f->avx2 ? "AVX2 " : "",
             f->fma ? "FMA " : "",
             sl_cpu_features_avx512(f) ? "AVX-512 "
             : f->avx512f              ? "AVX-512F "
                                       : "",
             f->avx512_bf16 ? "AVX512-BF16 " : "", f->amx ? "AMX " : "");
    size_t n = strlen(out);
    if (n) out[n - 1] = '\0';
}

/* OpenBLAS 0.3.21's DYNAMIC_ARCH core names (driver/others/dynamic.c) by vector class. */
static const struct {
    const char *name;
    int vector_class;
} blas_cores[] = {
    {"Katmai", 0},  {"Coppermine", 0},  {"Northwood", 0},    {"Prescott", 0},   {"Banias", 0},
    {"Atom", 0},    {"Core2", 0},       {"Penryn", 0},       {"Dunnington", 0}, {"Nehalem", 0},
    {"Athlon", 0},  {"Opteron", 0},     {"Opteron_SSE3", 0}, {"Barcelona", 0},  {"Nano", 0},
    {"Bobcat", 0},  {"Sandybridge", 1}, {"Bulldozer", 1},    {"Piledriver", 1}, {"Steamroller", 1},
    {"Haswell", 2}, {"Excavator", 2},   {"Zen", 2},          {"SkylakeX", 3},   {"Cooperlake", 3},
};

int sl_cpu_blas_core_class(const char *core)
{
    for (size_t i = 0; core && i < SL_ARRAY_LEN(blas_cores); i++)
        if (!strcasecmp(core, blas_cores[i].name)) return blas_cores[i].vector_class;
    return -1;
}

const char *sl_cpu_blas_best_core(const sl_cpu_features *f)
{
    if (sl_cpu_features_avx512(f)) return f->avx512_bf16 ? "Cooperlake" : "SkylakeX";
    if (f->avx2 && f->fma) return "Haswell";
    if (f->avx) return "Sandybridge";
    return NULL;
}

void sl_cpu_blas_decide(const sl_cpu_features *f, const char *core, const char *coretype_env,
                        const char *fallback_env, sl_cpu_blas *out)
{
    memset(out, 0, sizeof *out);
    out->features = *f;
    snprintf(out->core, sizeof out->core, "%s", core ? core : "");
    const char *best = sl_cpu_blas_best_core(f);
    snprintf(out->best, sizeof out->best, "%s", best ? best : "");
    int have = sl_cpu_blas_core_class(core);
    out->fallback = best && have >= 0 && have < sl_cpu_blas_core_class(best);
    out->coretype_set = coretype_env != NULL;
    snprintf(out->coretype, sizeof out->coretype, "%s", coretype_env ? coretype_env : "");
    out->set_by_sluice = coretype_env && fallback_env && *fallback_env;
    if (out->set_by_sluice) snprintf(out->fallback_of, sizeof out->fallback_of, "%s", fallback_env);
    if (out->fallback && !out->coretype_set)
        snprintf(out->rank_coretype, sizeof out->rank_coretype, "%s", best);
}

void sl_cpu_blas_detect(sl_cpu_blas *out)
{
    sl_cpu_features f;
    sl_cpu_features_read(&f);
    sl_cpu_blas_decide(&f, openblas_get_corename(), getenv("OPENBLAS_CORETYPE"),
                       getenv("SLUICE_OPENBLAS_FALLBACK"), out);
}

void sl_cpu_blas_describe(const sl_cpu_blas *b, char *out, size_t cap)
{
    if (b->rank_coretype[0])
        snprintf(out, cap, "%s (fallback; ranks use %s)", b->core, b->rank_coretype);
    else if (b->set_by_sluice)
        snprintf(out, cap, "%s (set by sluice; the library chose %s)", b->core, b->fallback_of);
    else if (b->coretype_set && b->fallback)
        snprintf(out, cap, "%s (OPENBLAS_CORETYPE=%s, set by the user; best for this CPU: %s)",
                 b->core, b->coretype, b->best);
    else if (b->coretype_set)
        snprintf(out, cap, "%s (OPENBLAS_CORETYPE=%s, set by the user)", b->core, b->coretype);
    else
        snprintf(out, cap, "%s", b->core);
}

void sl_cpu_blas_reexec(void)
{
    sl_cpu_blas b;
    sl_cpu_blas_detect(&b);
    if (!b.rank_coretype[0] || getenv("SLUICE_OPENBLAS_FALLBACK")) return;
    /* The arguments as this process got them: /proc/self/cmdline, NUL-separated. */
    static char args[65536];
    char *argv[256];
    int argc = 0;
    FILE *f = fopen("/proc/self/cmdline", "r");
    size_t n = f ? fread(args, 1, sizeof args - 1, f) : 0;
    bool whole = f && feof(f);
    if (f) fclose(f);
    for (size_t i = 0; whole && i < n && argc < (int)SL_ARRAY_LEN(argv) - 1;
         i += strlen(args + i) + 1)
        argv[argc++] = args + i;
    argv[argc] = NULL;
    if (!whole || argc == 0 || argc == (int)SL_ARRAY_LEN(argv) - 1) {
        sl_log(SL_LOG_WARN,
               "OpenBLAS runs its %s core on this CPU (best: %s), and this process "
               "cannot read its arguments to start again with OPENBLAS_CORETYPE=%s",
               b.core, b.best, b.best);
        return;
    }
    sl_log(SL_LOG_INFO,
           "OpenBLAS fell back to its %s core on this CPU: starting again with "
           "OPENBLAS_CORETYPE=%s",
           b.core, b.rank_coretype);
    fflush(NULL);
    setenv("OPENBLAS_CORETYPE", b.rank_coretype, 0);
    setenv("SLUICE_OPENBLAS_FALLBACK", b.core, 0);
    execv("/proc/self/exe", argv);
    int e = errno;
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv("SLUICE_OPENBLAS_FALLBACK");
    sl_log(SL_LOG_WARN, "cannot start again with OPENBLAS_CORETYPE=%s: %s; going on with %s",
           b.rank_coretype, strerror(e), b.core);
}

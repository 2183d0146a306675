/* The CPU backend's OpenBLAS core: which of OpenBLAS's kernel sets ("cores") the library loaded,
 * which one the processor supports, and what sluice does when the library fell back to a generic
 * core.
 *
 * Debian's OpenBLAS 0.3.21 is built with DYNAMIC_ARCH: when the library loads it picks a core
 * from the CPU's vendor, family and model, and a model it does not know (a processor newer than
 * the library) gets a generic SSE core such as Prescott, at a fifth of the CPU's GEMM speed or
 * less. The library reads OPENBLAS_CORETYPE, once, when it loads; so sluice cannot change the
 * core of a process that is already running, only that of the processes it starts:
 *
 * - the ranks that `sluice train` starts (runtime/launch) get OPENBLAS_CORETYPE=<best core>;
 * - `sluice bench kernels` runs the CPU device in its own process, so it re-executes itself once
 *   with OPENBLAS_CORETYPE set (sl_cpu_blas_reexec);
 * - `sluice devices` says which core the library uses and, for a fallback, what the ranks use.
 *
 * Only where OPENBLAS_CORETYPE is unset: a value the user set, even an empty one, is theirs
 * (some machines set it because an OpenBLAS build computes wrong results with its own choice).
 * SLUICE_OPENBLAS_FALLBACK, set beside it, names the core the library had fallen back to: it tells
 * a started process that sluice, not the user, chose the core, and keeps a re-exec from looping. */
#ifndef SL_CPU_H
#define SL_CPU_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What the processor can run and the operating system saves the registers of (XCR0): a feature
 * the kernel does not enable reads false. All false off x86-64. */
typedef struct sl_cpu_features {
    bool avx, fma, avx2;
    bool avx512f, avx512bw, avx512dq, avx512vl; /* the set OpenBLAS's SkylakeX kernels use */
    bool avx512_bf16;                           /* Cooper Lake, Sapphire Rapids, Zen 4 */
    bool amx;                                   /* AMX-TILE and AMX-BF16 (Sapphire Rapids) */
} sl_cpu_features;

/* The features of the processor this process runs on (cpuid and xgetbv). */
void sl_cpu_features_read(sl_cpu_features *f);

/* Whether the AVX-512 that OpenBLAS's SkylakeX kernels need (F, BW, DQ, VL) is usable. */
bool sl_cpu_features_avx512(const sl_cpu_features *f);

/* The vector class of an OpenBLAS 0.3.21 DYNAMIC_ARCH core name (case-insensitive): 0 for the
 * SSE cores (Katmai ... Nehalem, Athlon ... Barcelona, Nano, Bobcat), 1 for AVX without FMA
 * kernels (Sandybridge, Bulldozer, Piledriver, Steamroller), 2 for AVX2 and FMA (Haswell,
 * Excavator, Zen), 3 for AVX-512 (SkylakeX, Cooperlake); -1 for a name 0.3.21 does not have. */
int sl_cpu_blas_core_class(const char *core);

/* The best OpenBLAS 0.3.21 DYNAMIC_ARCH core for these features, by the names that version
 * accepts in OPENBLAS_CORETYPE: Cooperlake (AVX-512 with BF16: Cooper Lake, and Sapphire Rapids
 * with AMX, which 0.3.21's DYNAMIC_ARCH has no core of its own for), SkylakeX (AVX-512 F, BW, DQ,
 * VL), Haswell (AVX2 and FMA), Sandybridge (AVX); NULL where the SSE cores are all there is. */
const char *sl_cpu_blas_best_core(const sl_cpu_features *f);

typedef struct sl_cpu_blas {
    sl_cpu_features features;
    char core[32];      /* the core the library runs on (openblas_get_corename) */
    char best[32];      /* sl_cpu_blas_best_core, "" where there is none */
    bool fallback;      /* core is of a lower vector class than best: the library fell back */
    bool coretype_set;  /* OPENBLAS_CORETYPE was set when the process started */
    char coretype[32];  /* its value, "" if unset */
    bool set_by_sluice; /* ... by sluice, for the core in fallback_of (SLUICE_OPENBLAS_FALLBACK) */
    char fallback_of[32];
    char rank_coretype[32]; /* what OPENBLAS_CORETYPE the processes sluice starts get; "" none */
} sl_cpu_blas;

/* The decision, a pure function: features, the library's core name and the environment's
 * OPENBLAS_CORETYPE and SLUICE_OPENBLAS_FALLBACK (NULL: unset). rank_coretype is best exactly
 * when the core is a fallback and OPENBLAS_CORETYPE is unset: a set value is never overridden. A
 * core name this version of OpenBLAS does not have is never called a fallback. */
void sl_cpu_blas_decide(const sl_cpu_features *f, const char *core, const char *coretype_env,
                        const char *fallback_env, sl_cpu_blas *out);

/* sl_cpu_blas_decide for this process: its processor, its OpenBLAS and its environment. */
void sl_cpu_blas_detect(sl_cpu_blas *out);

/* One line on the core for people: "Prescott (fallback; ranks use SkylakeX)", "SkylakeX",
 * "Prescott (OPENBLAS_CORETYPE=Prescott, set by the user; best for this CPU: SkylakeX)" or
 * "SkylakeX (set by sluice; the library chose Prescott)". */
void sl_cpu_blas_describe(const sl_cpu_blas *b, char *out, size_t cap);

/* The processor's features as words ("AVX2 FMA AVX-512 AVX512-BF16 AMX"), "" for none. */
void sl_cpu_features_describe(const sl_cpu_features *f, char *out, size_t cap);

/* For a process that runs the CPU device itself: where this process's OpenBLAS fell back and
 * OPENBLAS_CORETYPE is unset, executes /proc/self/exe again with the same arguments and
 * OPENBLAS_CORETYPE=<best>, SLUICE_OPENBLAS_FALLBACK=<the fallback core>. Returns only where
 * nothing was to be done or the exec failed (logged; the process goes on with the fallback).
 * Never twice: a process that has SLUICE_OPENBLAS_FALLBACK does not re-exec. */
void sl_cpu_blas_reexec(void);

#ifdef __cplusplus
}
#endif

#endif

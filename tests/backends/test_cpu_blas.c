/* The CPU backend's OpenBLAS core (backends/cpu/cpu.h): which core a feature set gets, when the
 * library's own choice is a fallback, and that a set OPENBLAS_CORETYPE is never overridden. The
 * decision is a pure function, tested here over made-up feature sets and core names; the last
 * tests check this process's own detection. */
#include <cblas.h>
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backends/cpu/cpu.h"

static const sl_cpu_features none = {0};
static const sl_cpu_features avx = {.avx = true};
static const sl_cpu_features avx2 = {.avx = true, .fma = true, .avx2 = true};
static const sl_cpu_features skx = {.avx = true,
                                    .fma = true,
                                    .avx2 = true,
                                    .avx512f = true,
                                    .avx512bw = true,
                                    .avx512dq = true,
                                    .avx512vl = true};
static const sl_cpu_features spr = {.avx = true,
                                    .fma = true,
                                    .avx2 = true,
                                    .avx512f = true,
                                    .avx512bw = true,
                                    .avx512dq = true,
                                    .avx512vl = true,
                                    .avx512_bf16 = true,
                                    .amx = true};

static const char *best(sl_cpu_features f)
{
    const char *b = sl_cpu_blas_best_core(&f);
    return b ? b : "(none)";
}

Test(blas_core, best_core_by_features)
{
    cr_expect_str_eq(best(none), "(none)");
    cr_expect_str_eq(best(avx), "Sandybridge");
    cr_expect_str_eq(best((sl_cpu_features){.avx = true, .avx2 = true}), "Sandybridge",
                     "AVX2 without FMA is not Haswell");
    cr_expect_str_eq(best((sl_cpu_features){.avx = true, .fma = true}), "Sandybridge");
    cr_expect_str_eq(best(avx2), "Haswell");
    sl_cpu_features f = avx2;
    f.avx512f = true; /* Knights Landing-like: F without BW, DQ, VL */
    cr_expect_str_eq(best(f), "Haswell");
    cr_expect_str_eq(best(skx), "SkylakeX");
    f = skx;
    f.avx512_bf16 = true;
    cr_expect_str_eq(best(f), "Cooperlake");
    f = skx;
    f.amx = true; /* no BF16: 0.3.21 has no SapphireRapids core, and Cooperlake needs BF16 */
    cr_expect_str_eq(best(f), "SkylakeX");
    cr_expect_str_eq(best(spr), "Cooperlake");
}

Test(blas_core, every_best_core_is_a_name_0_3_21_accepts)
{
    const sl_cpu_features sets[] = {avx, avx2, skx, spr};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        cr_expect_geq(sl_cpu_blas_core_class(sl_cpu_blas_best_core(&sets[i])), 1);
}

Test(blas_core, vector_classes)
{
    const char *sse[] = {"Katmai",       "Coppermine", "Northwood", "Prescott",
                         "Banias",       "Atom",       "Core2",     "Penryn",
                         "Dunnington",   "Nehalem",    "Athlon",    "Opteron",
                         "Opteron_SSE3", "Barcelona",  "Nano",      "Bobcat"};
    for (size_t i = 0; i < sizeof sse / sizeof sse[0]; i++)
        cr_expect_eq(sl_cpu_blas_core_class(sse[i]), 0, "%s", sse[i]);
    cr_expect_eq(sl_cpu_blas_core_class("Sandybridge"), 1);
    cr_expect_eq(sl_cpu_blas_core_class("Haswell"), 2);
    cr_expect_eq(sl_cpu_blas_core_class("Zen"), 2);
    cr_expect_eq(sl_cpu_blas_core_class("SkylakeX"), 3);
    cr_expect_eq(sl_cpu_blas_core_class("Cooperlake"), 3);
    cr_expect_eq(sl_cpu_blas_core_class("skylakex"), 3, "names match as OpenBLAS matches them");
    cr_expect_eq(sl_cpu_blas_core_class("SapphireRapids"), -1, "not a 0.3.21 DYNAMIC_ARCH core");
    cr_expect_eq(sl_cpu_blas_core_class("Unknown"), -1);
    cr_expect_eq(sl_cpu_blas_core_class(""), -1);
    cr_expect_eq(sl_cpu_blas_core_class(NULL), -1);
}

static sl_cpu_blas decide(sl_cpu_features f, const char *core, const char *env, const char *marker)
{
    sl_cpu_blas b;
    sl_cpu_blas_decide(&f, core, env, marker, &b);
    return b;
}

Test(blas_core, generic_core_on_a_better_cpu_is_a_fallback)
{
    /* The machine: 0.3.21 does not know the model and loads Prescott. */
    sl_cpu_blas b = decide(skx, "Prescott", NULL, NULL);
    cr_expect(b.fallback);
    cr_expect_str_eq(b.best, "SkylakeX");
    cr_expect_str_eq(b.rank_coretype, "SkylakeX");
    cr_expect_not(b.coretype_set);
    b = decide(spr, "Prescott", NULL, NULL);
    cr_expect_str_eq(b.rank_coretype, "Cooperlake");
    const char *generic[] = {"Katmai", "Core2", "Nehalem", "Prescott", "Sandybridge"};
    for (size_t i = 0; i < sizeof generic / sizeof generic[0]; i++) {
        b = decide(avx2, generic[i], NULL, NULL);
        cr_expect(b.fallback, "%s on AVX2", generic[i]);
        cr_expect_str_eq(b.rank_coretype, "Haswell", "%s on AVX2", generic[i]);
    }
    b = decide(skx, "Haswell", NULL, NULL); /* AVX2 kernels on an AVX-512 CPU */
    cr_expect(b.fallback);
    cr_expect_str_eq(b.rank_coretype, "SkylakeX");
}

Test(blas_core, a_core_of_the_best_class_is_not_a_fallback)
{
    /* SkylakeX and Cooperlake run the same SGEMM kernels: either is right on a BF16 CPU. */
    sl_cpu_blas b = decide(spr, "SkylakeX", NULL, NULL);
    cr_expect_not(b.fallback);
    cr_expect_str_eq(b.rank_coretype, "");
    cr_expect_str_eq(b.best, "Cooperlake");
    b = decide(avx2, "Zen", NULL, NULL);
    cr_expect_not(b.fallback);
    cr_expect_str_eq(b.rank_coretype, "");
    b = decide(skx, "Cooperlake", NULL, NULL); /* better than best: never "fallback" */
    cr_expect_not(b.fallback);
    b = decide(none, "Prescott", NULL, NULL); /* an SSE-only CPU: nothing better exists */
    cr_expect_not(b.fallback);
    cr_expect_str_eq(b.best, "");
    cr_expect_str_eq(b.rank_coretype, "");
    b = decide(spr, "SapphireRapids", NULL, NULL); /* a newer OpenBLAS's own name */
    cr_expect_not(b.fallback);
    b = decide(spr, "", NULL, NULL);
    cr_expect_not(b.fallback);
}

Test(blas_core, a_set_coretype_is_never_overridden)
{
    const char *values[] = {"Prescott", "SkylakeX", "Haswell", "", "bogus"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        sl_cpu_blas b = decide(skx, "Prescott", values[i], NULL);
        cr_expect(b.fallback, "the core is still a fallback: '%s'", values[i]);
        cr_expect(b.coretype_set);
        cr_expect_str_eq(b.coretype, values[i]);
        cr_expect_str_eq(b.rank_coretype, "", "OPENBLAS_CORETYPE='%s' is kept", values[i]);
        cr_expect_not(b.set_by_sluice);
    }
}

Test(blas_core, a_coretype_sluice_set_is_told_apart)
{
    sl_cpu_blas b = decide(skx, "SkylakeX", "SkylakeX", "Prescott");
    cr_expect(b.set_by_sluice);
    cr_expect_str_eq(b.fallback_of, "Prescott");
    cr_expect_str_eq(b.rank_coretype, "");
    b = decide(skx, "Prescott", NULL, "Prescott"); /* the marker alone sets nothing */
    cr_expect_not(b.set_by_sluice);
    cr_expect_str_eq(b.rank_coretype, "SkylakeX");
}

static const char *describe(sl_cpu_blas b)
{
    static char line[256];
    sl_cpu_blas_describe(&b, line, sizeof line);
    return line;
}

Test(blas_core, descriptions)
{
    cr_expect_str_eq(describe(decide(skx, "Prescott", NULL, NULL)),
                     "Prescott (fallback; ranks use SkylakeX)");
    cr_expect_str_eq(describe(decide(skx, "SkylakeX", NULL, NULL)), "SkylakeX");
    cr_expect_str_eq(describe(decide(skx, "Prescott", "Prescott", NULL)),
                     "Prescott (OPENBLAS_CORETYPE=Prescott, set by the user; best for this CPU: "
                     "SkylakeX)");
    cr_expect_str_eq(describe(decide(skx, "Haswell", "Haswell", NULL)),
                     "Haswell (OPENBLAS_CORETYPE=Haswell, set by the user; best for this CPU: "
                     "SkylakeX)");
    cr_expect_str_eq(describe(decide(avx2, "Haswell", "Haswell", NULL)),
                     "Haswell (OPENBLAS_CORETYPE=Haswell, set by the user)");
    cr_expect_str_eq(describe(decide(skx, "SkylakeX", "SkylakeX", "Prescott")),
                     "SkylakeX (set by sluice; the library chose Prescott)");
    char words[160];
    sl_cpu_features_describe(&spr, words, sizeof words);
    cr_expect_str_eq(words, "AVX AVX2 FMA AVX-512 AVX512-BF16 AMX");
    sl_cpu_features_describe(&none, words, sizeof words);
    cr_expect_str_eq(words, "");
}

/* This process: the detection reads the library's own core; under tests/backends/
 * with_best_blas_core (SLUICE_EXPECT_BLAS_CORE set) that core is the one it asked for, so a
 * name the library does not take would fail here rather than quietly test another core. */
Test(blas_core, this_process)
{
    sl_cpu_blas b;
    sl_cpu_blas_detect(&b);
    cr_expect_str_eq(b.core, openblas_get_corename());
    const char *env = getenv("OPENBLAS_CORETYPE");
    cr_expect_eq(b.coretype_set, env != NULL);
    if (env) cr_expect_str_eq(b.rank_coretype, "", "a set OPENBLAS_CORETYPE is kept");
    const char *expect = getenv("SLUICE_EXPECT_BLAS_CORE");
    if (expect)
        cr_expect(!strcasecmp(b.core, expect), "OPENBLAS_CORETYPE=%s loaded %s", expect, b.core);
    if (b.fallback) cr_log_warn("OpenBLAS runs %s on a CPU that has %s", b.core, b.best);
}

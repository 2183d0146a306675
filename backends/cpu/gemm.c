/* The CPU backend's own GEMM for the shapes where OpenBLAS loses to its packing: C = op(A) B
 * (+ C) with B's rows read in place, on one thread, where the CPU has AVX-512.
 *
 * OpenBLAS copies A and B into packed panels on every call. For a transformer's linear maps
 * (hundreds of rows, a few hundred columns, K of one or a few hundred) that copying is about a
 * quarter of the call, and in a training step it reads operands that come from memory rather
 * than the cache, to write them once more. Here C is made in tiles of MR rows by NR = 64 columns
 * whose 24 accumulators stay in registers: each step over k loads four vectors of B's row k and
 * broadcasts one element of A for each of the tile's rows (A read in place, by rows or, for
 * A^T, by columns), so neither operand is copied. K is taken KC at a time, the tile's part of B
 * (KC x 64) staying in L1 while the row tiles go by; beyond the first block C is read back and
 * added to. Each element of C is one sum over k in increasing order with FMA, so a shape gives
 * the same bits on every call.
 *
 * It is used where it measured faster than OpenBLAS on one core (bench/train.md): B not
 * transposed, alpha 1, beta 0 or 1, N a multiple of 64, K of 64 or more, M of 16 or more, and A
 * read at most DIRECT_A_TRAFFIC bytes in all (once per 64 columns of C); otherwise, and when
 * OpenBLAS runs more than one thread, the caller goes to OpenBLAS. */
#include "backends/cpu/cpu_impl.h"

#include <cblas.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SL_DIRECT_AVX512 1
#endif

#define MR               6          /* rows of C per tile */
#define NV               4          /* vectors of 16 per tile row: NR = 64 columns */
#define KC               128        /* k per block */
#define DIRECT_A_TRAFFIC (8u << 20) /* bytes of A read over the whole product, at most */

static bool direct_off;

void sl__cpu_gemm_direct_use(bool use)
{
    direct_off = !use;
}

bool sl__cpu_gemm_direct_fits(bool trans_b, size_t m, size_t n, size_t k, float alpha, float beta)
{
    if (direct_off || trans_b || alpha != 1.0f || (beta != 0.0f && beta != 1.0f)) return false;
    if (n % (16 * NV) != 0 || k < 64 || m < 16) return false;
    if ((double)m * (double)k * 4.0 * (double)(n / (16 * NV)) > (double)DIRECT_A_TRAFFIC)
        return false;
#ifdef SL_DIRECT_AVX512
    return __builtin_cpu_supports("avx512f") && openblas_get_num_threads() == 1;
#else
    return false;
#endif
}

#ifdef SL_DIRECT_AVX512
/* Rows [0, R) (R <= MR, a constant in each instance) of one tile: c[r*ldc + j] = (acc ? c : 0) +
 * sum over kk < kn of a[r*ar + kk*ak] b[kk*ldb + j], j < 64. */
__attribute__((target("avx512f"), always_inline)) static inline void
tile(int R, size_t kn, const float *a, size_t ar, size_t ak, const float *b, size_t ldb, float *c,
     size_t ldc, bool acc)
{
    __m512 cc[MR][NV];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++)
            cc[r][v] = acc ? _mm512_loadu_ps(c + r * ldc + 16 * v) : _mm512_setzero_ps();
    for (size_t kk = 0; kk < kn; kk++, a += ak, b += ldb) {
        __m512 bv[NV];
        for (int v = 0; v < NV; v++) bv[v] = _mm512_loadu_ps(b + 16 * v);
        for (int r = 0; r < R; r++) {
            __m512 av = _mm512_set1_ps(a[r * ar]);
            for (int v = 0; v < NV; v++) cc[r][v] = _mm512_fmadd_ps(av, bv[v], cc[r][v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(c + r * ldc + 16 * v, cc[r][v]);
}

#define TILE_CASE(R)                                                                               \
    case R:                                                                                        \
        tile(R, kn, a, ar, ak, b, ldb, c, ldc, acc);                                               \
        break

/* A tile of the given rows (1..MR), each row count its own instance of tile(). */
__attribute__((target("avx512f"))) static void tile_rows(int rows, size_t kn, const float *a,
                                                         size_t ar, size_t ak, const float *b,
                                                         size_t ldb, float *c, size_t ldc, bool acc)
{
    switch (rows) {
        TILE_CASE(1);
        TILE_CASE(2);
        TILE_CASE(3);
        TILE_CASE(4);
        TILE_CASE(5);
        TILE_CASE(6);
    default:
        break; /* not reached: rows is 1..MR */
    }
}
_Static_assert(MR == 6, "tile_rows() has a case for each row count up to MR");

void sl__cpu_gemm_direct(bool trans_a, size_t m, size_t n, size_t k, const float *a, const float *b,
                         float beta, float *c)
{
    /* A[i][kk] is a[i*k + kk], or a[kk*m + i] transposed; B is k x n and C m x n, row-major. */
    const size_t ar = trans_a ? 1 : k, ak = trans_a ? m : 1;
    for (size_t k0 = 0; k0 < k; k0 += KC) {
        size_t kn = SL_MIN((size_t)KC, k - k0);
        bool acc = k0 > 0 || beta == 1.0f;
        for (size_t j = 0; j < n; j += 16 * NV)
            for (size_t i = 0; i < m; i += MR)
                tile_rows((int)SL_MIN((size_t)MR, m - i), kn, a + i * ar + k0 * ak, ar, ak,
                          b + k0 * n + j, n, c + i * n + j, n, acc);
    }
}
#else
/* Not reached: without AVX-512 sl__cpu_gemm_direct_fits() is false. */
void sl__cpu_gemm_direct(bool trans_a, size_t m, size_t n, size_t k, const float *a, const float *b,
                         float beta, float *c)
{
    (void)trans_a, (void)m, (void)n, (void)k, (void)a, (void)b, (void)beta, (void)c;
}
#endif

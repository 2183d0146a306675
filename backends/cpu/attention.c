/* The CPU backend's attention: the causal softmax kernels, and causal self-attention fused head
 * by head (sl_attention_forward and _backward, backends/backend.h).
 *
 * Fused, one head's q, k, v (T x hs each, read in place from the c_attn rows) stay in the cache
 * while its scores are made, normalised and multiplied, a block of MK_ROWS rows at a time, and
 * only the causal part of each product is computed: about half the work of the dense products,
 * no scores or score gradients written out and read back, and one call per head instead of a
 * BLAS call per product. Every product is one shape, mk(): rows of a (read one element at a time,
 * in any layout) times the rows of b (contiguous), summed over d in increasing order. On a CPU
 * with AVX-512 the products keep their accumulators in registers (FMA, so they round once where
 * the loops round twice) and the softmax rows and transposes run as masked vectors (the same bits
 * as the loops); elsewhere, and when a test asks, every piece runs as plain loops. */
#include "backends/cpu/cpu_impl.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SL_MK_AVX512 1
#endif

/* ------------------------------------------------------------------------------------------------
 * Causal softmax: row t of each [seq, seq] block keeps columns 0..t. */

/* p[0..seq) of row t from its scores s (p may be s): softmax of scale * s over columns 0..t,
 * zero beyond. */
static inline void softmax_row(const float *s, float *p, size_t t, size_t seq, float scale)
{
    size_t n = t + 1;
    for (size_t j = 0; j < n; j++) p[j] = scale * s[j];
    float mx = sl_cpu_max(p, n);
    for (size_t j = 0; j < n; j++) p[j] = sl_cpu_exp(p[j] - mx);
    float inv = 1.0f / sl_cpu_sum(p, n);
    for (size_t j = 0; j < n; j++) p[j] *= inv;
    for (size_t j = n; j < seq; j++) p[j] = 0.0f;
}

/* ds[0..seq) of row t from p and dp (ds may be dp): scale p (dp - p . dp) over 0..t, zero
 * beyond. */
static inline void softmax_row_backward(const float *p, const float *dp, float *ds, size_t t,
                                        size_t seq, float scale)
{
    float dot = sl_cpu_dot(p, dp, t + 1);
    for (size_t j = 0; j <= t; j++) ds[j] = scale * p[j] * (dp[j] - dot);
    for (size_t j = t + 1; j < seq; j++) ds[j] = 0.0f;
}

SL_CPU_CLONES int sl__cpu_causal_softmax_forward(sl_device *dev, size_t heads, size_t seq,
                                                 float scale, sl_buffer *s, sl_buffer *p)
{
    (void)dev;
    for (size_t row = 0; row < heads * seq; row++)
        softmax_row(F(s) + row * seq, F(p) + row * seq, row % seq, seq, scale);
    return SL_OK;
}

SL_CPU_CLONES int sl__cpu_causal_softmax_backward(sl_device *dev, size_t heads, size_t seq,
                                                  float scale, sl_buffer *p, sl_buffer *dp,
                                                  sl_buffer *ds)
{
    (void)dev;
    for (size_t row = 0; row < heads * seq; row++)
        softmax_row_backward(F(p) + row * seq, F(dp) + row * seq, F(ds) + row * seq, row % seq, seq,
                             scale);
    return SL_OK;
}

/* ------------------------------------------------------------------------------------------------
 * The product: for r < rows (at most MK_ROWS) and j < n,
 *   c[r*ldc + j] = sum over d in [k0, k1), increasing, of a[r*ar + d*ad] * b[d*ldb + j]. */

#define MK_ROWS 8 /* rows per call */
#define MK_VECS 4 /* columns in blocks of MK_VECS x 16 */

typedef struct mk_args {
    size_t rows, n, k0, k1;
    const float *a;
    size_t ar, ad;
    const float *b;
    size_t ldb;
    float *c;
    size_t ldc;
} mk_args;

static void mk_loops(const mk_args *m)
{
    for (size_t r = 0; r < m->rows; r++) {
        float *c = m->c + r * m->ldc;
        for (size_t j = 0; j < m->n; j++) c[j] = 0.0f;
        for (size_t d = m->k0; d < m->k1; d++) {
            float a = m->a[r * m->ar + d * m->ad];
            const float *b = m->b + d * m->ldb;
            for (size_t j = 0; j < m->n; j++) c[j] += a * b[j];
        }
    }
}

#ifdef SL_MK_AVX512
/* Rows [r0, r0 + R) by one block of columns [j0, j0 + 16 (V - 1) + the last vector's width), R
 * and V constants in each specialisation below, so that the R x V accumulators (at most 16 of
 * the 32 registers) live in registers. */
__attribute__((target("avx512f"), always_inline)) static inline void
mk_block(const mk_args *m, size_t r0, size_t j0, int R, int V, __mmask16 last)
{
    __m512 acc[MK_ROWS][MK_VECS];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) acc[r][v] = _mm512_setzero_ps();
    const size_t ldb = m->ldb, ar = m->ar, ad = m->ad;
    const float *b = m->b + m->k0 * ldb + j0, *a = m->a + r0 * ar + m->k0 * ad;
    for (size_t d = m->k0; d < m->k1; d++, b += ldb, a += ad) {
        __m512 bv[MK_VECS];
        for (int v = 0; v < V - 1; v++) bv[v] = _mm512_loadu_ps(b + 16 * v);
        bv[V - 1] = _mm512_maskz_loadu_ps(last, b + 16 * (V - 1));
        for (int r = 0; r < R; r++) {
            __m512 av = _mm512_set1_ps(a[r * ar]);
            for (int v = 0; v < V; v++) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < R; r++) {
        float *c = m->c + (r0 + r) * m->ldc + j0;
        for (int v = 0; v < V - 1; v++) _mm512_storeu_ps(c + 16 * v, acc[r][v]);
        _mm512_mask_storeu_ps(c + 16 * (V - 1), last, acc[r][V - 1]);
    }
}

#define MK_CASE(R, V)                                                                              \
    case (R)*8 + (V):                                                                              \
        mk_block(m, r0, j0, R, V, last);                                                           \
        break
#define MK_NARROW(R)                                                                               \
    MK_CASE(R, 1);                                                                                 \
    MK_CASE(R, 2)
#define MK_WIDE(R)                                                                                 \
    MK_CASE(R, 3);                                                                                 \
    MK_CASE(R, 4)

/* Up to 8 rows of one or two vectors, or 4 of three or four, per pass over d. */
__attribute__((target("avx512f"))) static void mk_avx512(const mk_args *m)
{
    for (size_t j0 = 0; j0 < m->n; j0 += 16 * MK_VECS) {
        size_t w = SL_MIN(16 * MK_VECS, m->n - j0);
        int vecs = (int)((w + 15) / 16);
        __mmask16 last = (__mmask16)(w % 16 ? (1u << (w % 16)) - 1 : 0xffffu);
        size_t step = vecs <= 2 ? 8 : 4;
        for (size_t r0 = 0; r0 < m->rows; r0 += step) {
            switch ((int)SL_MIN(step, m->rows - r0) * 8 + vecs) {
                MK_NARROW(1);
                MK_NARROW(2);
                MK_NARROW(3);
                MK_NARROW(4);
                MK_NARROW(5);
                MK_NARROW(6);
                MK_NARROW(7);
                MK_NARROW(8);
                MK_WIDE(1);
                MK_WIDE(2);
                MK_WIDE(3);
                MK_WIDE(4);
            default:
                break; /* not reached */
            }
        }
    }
}
#endif

#ifdef SL_MK_AVX512
/* The row kernels in AVX-512, a masked vector at a time: the same operations in the same order
 * as the loops above (element j in lane j % 16, the lanes added as sl_cpu_lanes_sum adds them,
 * e^x by sl_cpu_exp's polynomial without FMA), so the same bits. */
__attribute__((target("avx512f"))) static inline __mmask16 tail(size_t n, size_t j)
{
    return n - j >= 16 ? (__mmask16)0xffffu : (__mmask16)((1u << (n - j)) - 1);
}

/* sl_cpu_lanes_sum's order in registers: lanes l and l + 8, then l and l + 4, then
 * (0 + 2) + (1 + 3). */
__attribute__((target("avx512f"))) static inline float lanes_sum(__m512 acc)
{
    __m256 a8 = _mm256_add_ps(_mm512_castps512_ps256(acc),
                              _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1)));
    __m128 a4 = _mm_add_ps(_mm256_castps256_ps128(a8), _mm256_extractf128_ps(a8, 1));
    __m128 a2 = _mm_add_ps(a4, _mm_movehl_ps(a4, a4)); /* a0 + a2, a1 + a3 */
    return _mm_cvtss_f32(_mm_add_ss(a2, _mm_movehdup_ps(a2)));
}

__attribute__((target("avx512f"))) static inline __m512 exp_avx512(__m512 x)
{
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    /* x <= 0 here: -87.33 and below give 0; MAXPS returns its second operand, x, when x is NaN,
     * and the NaN goes through as in sl_cpu_exp */
    x = _mm512_max_ps(_mm512_set1_ps(-87.5f), x);
    __m512 t = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), magic);
    __m512 n = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_sub_ps(_mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(0.693359375f))),
                             _mm512_mul_ps(n, _mm512_set1_ps(-2.12194440e-4f)));
    __m512 p = _mm512_set1_ps(1.381461043e-03f);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.368710056e-03f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.166838899e-02f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.666652113e-01f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.999999404e-01f));
    __m512i bits = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4b400000)),
                         _mm512_set1_epi32(127)),
        23);
    __m512 e = _mm512_mul_ps(_mm512_add_ps(_mm512_set1_ps(1.0f),
                                           _mm512_add_ps(r, _mm512_mul_ps(_mm512_mul_ps(r, r), p))),
                             _mm512_castsi512_ps(bits));
    __mmask16 zero = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.33f), _CMP_LT_OQ);
    return _mm512_mask_mov_ps(e, zero, _mm512_setzero_ps());
}

__attribute__((target("avx512f"))) static void softmax_row_avx512(const float *s, float *p,
                                                                  size_t t, size_t seq, float scale)
{
    size_t n = t + 1;
    const __m512 vscale = _mm512_set1_ps(scale);
    __m512 mx = _mm512_set1_ps(scale * s[0]);
    for (size_t j = 0; j < n; j += 16) {
        __mmask16 m = tail(n, j);
        __m512 v = _mm512_mul_ps(vscale, _mm512_maskz_loadu_ps(m, s + j));
        _mm512_mask_storeu_ps(p + j, m, v);
        mx = _mm512_mask_max_ps(mx, m, v, mx);
    }
    const __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 acc = _mm512_setzero_ps();
    for (size_t j = 0; j < n; j += 16) {
        __mmask16 m = tail(n, j);
        __m512 e = exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, p + j), vmax));
        e = _mm512_maskz_mov_ps(m, e);
        _mm512_mask_storeu_ps(p + j, m, e);
        acc = _mm512_add_ps(acc, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / lanes_sum(acc));
    for (size_t j = 0; j < seq; j += 16) {
        __mmask16 m = tail(seq, j), keep = j < n ? tail(n, j) : 0;
        __m512 v = _mm512_maskz_mul_ps(keep, _mm512_maskz_loadu_ps(keep, p + j), inv);
        _mm512_mask_storeu_ps(p + j, m, v);
    }
}

__attribute__((target("avx512f"))) static void softmax_row_backward_avx512(const float *p,
                                                                           const float *dp,
                                                                           float *ds, size_t t,
                                                                           size_t seq, float scale)
{
    size_t n = t + 1;
    __m512 acc = _mm512_setzero_ps();
    for (size_t j = 0; j < n; j += 16) {
        __mmask16 m = tail(n, j);
        acc = _mm512_add_ps(
            acc, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p + j), _mm512_maskz_loadu_ps(m, dp + j)));
    }
    const __m512 dot = _mm512_set1_ps(lanes_sum(acc)), vscale = _mm512_set1_ps(scale);
    for (size_t j = 0; j < seq; j += 16) {
        __mmask16 m = tail(seq, j), keep = j < n ? tail(n, j) : 0;
        __m512 sp = _mm512_mul_ps(vscale, _mm512_maskz_loadu_ps(keep, p + j));
        __m512 v =
            _mm512_maskz_mul_ps(keep, sp, _mm512_sub_ps(_mm512_maskz_loadu_ps(keep, dp + j), dot));
        _mm512_mask_storeu_ps(ds + j, m, v);
    }
}

/* out[d*T + j] = x[j*ld + d] by gathering 16 rows' elements at a time (ld*15 < 2^31: see
 * kernels_of()). */
__attribute__((target("avx512f"))) static void
transpose_head_avx512(const float *x, size_t ld, size_t T, size_t hs, float *out)
{
    const __m512i rows =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32((int)ld));
    for (size_t j0 = 0; j0 < T; j0 += 16) {
        __mmask16 m = tail(T, j0);
        const float *base = x + j0 * ld;
        for (size_t d = 0; d < hs; d++)
            _mm512_mask_storeu_ps(
                out + d * T + j0, m,
                _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, rows, base + d, 4));
    }
}
#endif

/* out[d*T + j] = x[j*ld + d]: a head's k or v as hs rows of T, the b of the products over j. */
static void transpose_head(const float *x, size_t ld, size_t T, size_t hs, float *out)
{
    for (size_t j = 0; j < T; j++)
        for (size_t d = 0; d < hs; d++) out[d * T + j] = x[j * ld + d];
}

SL_CPU_CLONES static void softmax_row_loops(const float *s, float *p, size_t t, size_t seq,
                                            float scale)
{
    softmax_row(s, p, t, seq, scale);
}

SL_CPU_CLONES static void softmax_row_backward_loops(const float *p, const float *dp, float *ds,
                                                     size_t t, size_t seq, float scale)
{
    softmax_row_backward(p, dp, ds, t, seq, scale);
}

/* The fused attention's pieces: AVX-512 where the CPU has it (and the strides fit its gathers),
 * unless a test asks for the loops. */
typedef struct att_kernels {
    void (*mk)(const mk_args *m);
    void (*softmax)(const float *s, float *p, size_t t, size_t seq, float scale);
    void (*softmax_backward)(const float *p, const float *dp, float *ds, size_t t, size_t seq,
                             float scale);
    void (*transpose)(const float *x, size_t ld, size_t T, size_t hs, float *out);
} att_kernels;

static bool use_loops;

void sl__cpu_attention_use_loops(bool loops)
{
    use_loops = loops;
}

static att_kernels kernels_of(size_t ld3)
{
#ifdef SL_MK_AVX512
    if (!use_loops && __builtin_cpu_supports("avx512f") && ld3 <= INT32_MAX / 16)
        return (att_kernels){mk_avx512, softmax_row_avx512, softmax_row_backward_avx512,
                             transpose_head_avx512};
#else
    (void)ld3;
#endif
    return (att_kernels){mk_loops, softmax_row_loops, softmax_row_backward_loops, transpose_head};
}

/* ------------------------------------------------------------------------------------------------
 * Fused attention, one head at a time. */

typedef struct head {
    size_t T, hs, ld3, ldy; /* q, k, v rows are ld3 apart, y's and dy's ldy */
    float scale;
    const float *q, *k, *v; /* the head's first elements in the c_attn rows */
    float *att;             /* its [T, T] probabilities */
} head;

/* Head h of sample b in [batch, T, ld] rows: its first element. */
static float *head_in(float *rows, size_t b, size_t h, size_t T, size_t ld, size_t hs)
{
    return rows + b * T * ld + h * hs;
}

static head head_at(size_t b, size_t h, size_t T, size_t H, size_t hs, float scale, float *qkv,
                    float *att)
{
    size_t C = H * hs;
    const float *q = head_in(qkv, b, h, T, 3 * C, hs);
    return (head){.T = T,
                  .hs = hs,
                  .ld3 = 3 * C,
                  .ldy = C,
                  .scale = scale,
                  .q = q,
                  .k = q + C,
                  .v = q + 2 * C,
                  .att = att + (b * H + h) * T * T};
}

/* Rows [i0, i0 + rows) of A B where A is [T, T] and zero above its diagonal (rows of `a`, ldA
 * apart) and B is [T, cols]: only A's columns up to the block's last row are read. */
static mk_args lower_rows(size_t i0, size_t rows, const float *a, size_t lda, const float *b,
                          size_t ldb, size_t cols, float *c, size_t ldc)
{
    return (mk_args){.rows = rows,
                     .n = cols,
                     .k0 = 0,
                     .k1 = i0 + rows,
                     .a = a + i0 * lda,
                     .ar = lda,
                     .ad = 1,
                     .b = b,
                     .ldb = ldb,
                     .c = c + i0 * ldc,
                     .ldc = ldc};
}

/* Rows [j0, j0 + rows) of A^T B, A as above: only A's rows from j0 on are read. */
static mk_args lower_t_rows(size_t j0, size_t rows, size_t T, const float *a, const float *b,
                            size_t ldb, size_t cols, float *c, size_t ldc)
{
    return (mk_args){.rows = rows,
                     .n = cols,
                     .k0 = j0,
                     .k1 = T,
                     .a = a + j0,
                     .ar = 1,
                     .ad = T,
                     .b = b,
                     .ldb = ldb,
                     .c = c + j0 * ldc,
                     .ldc = ldc};
}

/* Rows [i0, i0 + rows) of X Y^T for X's rows (ldx apart, `cols` wide) and Y^T given as
 * yt [cols, T]: the columns up to the block's last row. */
static mk_args scores_rows(size_t i0, size_t rows, const float *x, size_t ldx, const float *yt,
                           size_t T, size_t cols, float *c)
{
    return (mk_args){.rows = rows,
                     .n = i0 + rows,
                     .k0 = 0,
                     .k1 = cols,
                     .a = x + i0 * ldx,
                     .ar = ldx,
                     .ad = 1,
                     .b = yt,
                     .ldb = T,
                     .c = c + i0 * T,
                     .ldc = T};
}

static void head_forward(const att_kernels *ks, const head *hd, float *kt, float *y)
{
    size_t T = hd->T, hs = hd->hs;
    ks->transpose(hd->k, hd->ld3, T, hs, kt);
    for (size_t i0 = 0; i0 < T; i0 += MK_ROWS) {
        size_t rows = SL_MIN(MK_ROWS, T - i0);
        mk_args s = scores_rows(i0, rows, hd->q, hd->ld3, kt, T, hs, hd->att);
        ks->mk(&s);
        for (size_t i = i0; i < i0 + rows; i++)
            ks->softmax(hd->att + i * T, hd->att + i * T, i, T, hd->scale);
        mk_args o = lower_rows(i0, rows, hd->att, T, hd->v, hd->ld3, hs, y, hd->ldy);
        ks->mk(&o);
    }
}

/* dq, dk, dv of the head (in the gradient's c_attn rows, ld3 apart) from dy; vt and ds are
 * scratch of hs x T and T x T. */
static void head_backward(const att_kernels *ks, const head *hd, const float *dy, float *vt,
                          float *ds, float *dq)
{
    size_t T = hd->T, hs = hd->hs, C = hd->ldy;
    float *dk = dq + C, *dv = dq + 2 * C;
    ks->transpose(hd->v, hd->ld3, T, hs, vt);
    for (size_t i0 = 0; i0 < T; i0 += MK_ROWS) {
        size_t rows = SL_MIN(MK_ROWS, T - i0);
        mk_args dp = scores_rows(i0, rows, dy, hd->ldy, vt, T, hs, ds);
        ks->mk(&dp);
        for (size_t i = i0; i < i0 + rows; i++)
            ks->softmax_backward(hd->att + i * T, ds + i * T, ds + i * T, i, T, hd->scale);
        mk_args g = lower_rows(i0, rows, ds, T, hd->k, hd->ld3, hs, dq, hd->ld3);
        ks->mk(&g);
    }
    for (size_t j0 = 0; j0 < T; j0 += MK_ROWS) {
        size_t rows = SL_MIN(MK_ROWS, T - j0);
        mk_args gk = lower_t_rows(j0, rows, T, ds, hd->q, hd->ld3, hs, dk, hd->ld3);
        ks->mk(&gk);
        mk_args gv = lower_t_rows(j0, rows, T, hd->att, dy, hd->ldy, hs, dv, hd->ld3);
        ks->mk(&gv);
    }
}

int sl__cpu_attention_forward(sl_device *dev, size_t batch, size_t seq, size_t heads, size_t hs,
                              float scale, sl_buffer *qkv, sl_buffer *att, sl_buffer *y)
{
    (void)dev;
    float *kt = sl_alloc(hs * seq * sizeof *kt);
    if (!kt) return SL_ENOMEM;
    att_kernels ks = kernels_of(3 * heads * hs);
    for (size_t b = 0; b < batch; b++)
        for (size_t h = 0; h < heads; h++) {
            head hd = head_at(b, h, seq, heads, hs, scale, F(qkv), F(att));
            head_forward(&ks, &hd, kt, head_in(F(y), b, h, seq, heads * hs, hs));
        }
    free(kt);
    return SL_OK;
}

int sl__cpu_attention_backward(sl_device *dev, size_t batch, size_t seq, size_t heads, size_t hs,
                               float scale, sl_buffer *qkv, sl_buffer *att, sl_buffer *dy,
                               sl_buffer *work, sl_buffer *dqkv)
{
    (void)dev;
    float *vt = sl_alloc(hs * seq * sizeof *vt);
    if (!vt) return SL_ENOMEM;
    att_kernels ks = kernels_of(3 * heads * hs);
    size_t C = heads * hs;
    for (size_t b = 0; b < batch; b++)
        for (size_t h = 0; h < heads; h++) {
            head hd = head_at(b, h, seq, heads, hs, scale, F(qkv), F(att));
            /* the head's score gradients in its own [T, T] of work */
            head_backward(&ks, &hd, head_in(F(dy), b, h, seq, C, hs), vt,
                          F(work) + (b * heads + h) * seq * seq,
                          head_in(F(dqkv), b, h, seq, 3 * C, hs));
        }
    free(vt);
    return SL_OK;
}

/* The CPU oracle's transformer kernels (layer norm, embedding, causal softmax, fused attention,
 * strided copy, batched GEMM, sum of squares) and the wide cross-entropy rows, against plain loops
 * in double and finite differences, and their argument checks. test_reference.c holds the rest of
 * the oracle's checks.
 */
#include "kernel_util.h"

#include "backends/cpu/cpu_impl.h"

static sl_device *cpu;

static void open_cpu(void)
{
    OK(sl_device_open("cpu", &cpu));
}

static void close_cpu(void)
{
    sl_device_close(cpu);
}

TestSuite(reference, .init = open_cpu, .fini = close_cpu);

/* ------------------------------------------------------------------------------------------------
 * Transformer kernels against plain loops in double and finite differences */

Test(reference, sum_squares_matches_double_sum)
{
    const size_t ns[] = {1, 7, 100003};
    for (size_t i = 0; i < SL_ARRAY_LEN(ns); i++) {
        float *x = vec_rand(ns[i], 50, -2, 2);
        double s = 0;
        for (size_t j = 0; j < ns[i]; j++) s += (double)x[j] * x[j];
        cr_assert_float_eq(run_sum_squares(cpu, ns[i], x), s, 1e-7 * s);
        free(x);
    }
    float one = 3.0f;
    cr_assert_eq(run_sum_squares(cpu, 0, &one), 0.0f, "n = 0 writes 0");
}

Test(reference, softmax_xent_wide_rows_match_naive_loops)
{
    static const size_t shapes[][2] = {{7, 65}, {3, 5000}};
    for (size_t s = 0; s < SL_ARRAY_LEN(shapes); s++) {
        size_t rows = shapes[s][0], cols = shapes[s][1];
        float *x = vec_rand(rows * cols, 51, -6, 6), *loss;
        int32_t *labels = calloc(rows, sizeof *labels);
        for (size_t r = 0; r < rows; r++) labels[r] = (int32_t)((r * 7919 + 11) % cols);
        float *d = run_softmax_xent(cpu, rows, cols, x, labels, 0.5f, &loss);
        for (size_t r = 0; r < rows; r++) {
            double mx = -1e30, sum = 0;
            for (size_t c = 0; c < cols; c++) mx = fmax(mx, x[r * cols + c]);
            for (size_t c = 0; c < cols; c++) sum += exp(x[r * cols + c] - mx);
            double lse = mx + log(sum);
            cr_assert_float_eq(loss[r], lse - x[r * cols + labels[r]], 1e-5);
            for (size_t c = 0; c < cols; c++) {
                double want = 0.5 * (exp(x[r * cols + c] - lse) - ((int32_t)c == labels[r]));
                cr_assert_float_eq(d[r * cols + c], want, 1e-7 + 1e-5 * fabs(want), "[%zu,%zu]", r,
                                   c);
            }
        }
        free(x), free(loss), free(d), free(labels);
    }
}

/* Double-precision layer norm of one row, for the checks below. */
static void naive_layernorm(size_t cols, const float *x, const float *w, const float *b, double *y,
                            double *mean, double *rstd)
{
    double mu = 0, var = 0;
    for (size_t c = 0; c < cols; c++) mu += x[c];
    mu /= (double)cols;
    for (size_t c = 0; c < cols; c++) var += (x[c] - mu) * (x[c] - mu);
    double rs = 1.0 / sqrt(var / (double)cols + 1e-5);
    for (size_t c = 0; c < cols; c++) y[c] = (x[c] - mu) * rs * w[c] + b[c];
    *mean = mu;
    *rstd = rs;
}

Test(reference, layernorm_matches_naive_loops_and_finite_differences)
{
    size_t rows = 3, cols = 7;
    float *x = vec_rand(rows * cols, 52, -2, 2), *w = vec_rand(cols, 53, -1, 1);
    float *b = vec_rand(cols, 54, -1, 1), *g = vec_rand(rows * cols, 55, -1, 1);
    float *dw0 = vec_rand(cols, 56, -1, 1), *db0 = vec_rand(cols, 57, -1, 1);
    float *mean, *rstd, *y = run_layernorm_forward(cpu, rows, cols, x, w, b, &mean, &rstd);
    double yr[7], mu, rs;
    for (size_t r = 0; r < rows; r++) {
        naive_layernorm(cols, x + r * cols, w, b, yr, &mu, &rs);
        cr_assert_float_eq(mean[r], mu, 1e-6);
        cr_assert_float_eq(rstd[r], rs, 1e-5 * rs);
        for (size_t c = 0; c < cols; c++) cr_assert_float_eq(y[r * cols + c], yr[c], 1e-5);
    }
    /* L = sum(y * g) in double; the kernel's gradients (dweight, dbias accumulated onto dw0, db0)
     * against central differences. */
    float *dw, *db;
    float *dx = run_layernorm_backward(cpu, rows, cols, g, x, mean, rstd, w, dw0, db0, &dw, &db);
    struct {
        float *param, *grad, *base;
        size_t n;
        const char *name;
    } ps[] = {{x, dx, NULL, rows * cols, "dx"},
              {w, dw, dw0, cols, "dweight"},
              {b, db, db0, cols, "dbias"}};
    const float h = 1e-2f;
    for (size_t p = 0; p < 3; p++)
        for (size_t i = 0; i < ps[p].n; i++) {
            double l[2];
            float keep = ps[p].param[i];
            for (int sgn = 0; sgn < 2; sgn++) {
                ps[p].param[i] = keep + (sgn ? -h : h);
                l[sgn] = 0;
                for (size_t r = 0; r < rows; r++) {
                    naive_layernorm(cols, x + r * cols, w, b, yr, &mu, &rs);
                    for (size_t c = 0; c < cols; c++) l[sgn] += yr[c] * g[r * cols + c];
                }
            }
            ps[p].param[i] = keep;
            double want = (l[0] - l[1]) / (2 * h) + (ps[p].base ? ps[p].base[i] : 0.0);
            cr_assert_float_eq(ps[p].grad[i], want, 2e-3, "%s[%zu]", ps[p].name, i);
        }
    free(x), free(w), free(b), free(g), free(dw0), free(db0), free(mean), free(rstd), free(y);
    free(dw), free(db), free(dx);
}

Test(reference, embedding_matches_naive_loops)
{
    size_t bsz = 3, seq = 5, cols = 4, vocab = 6, n = bsz * seq;
    int32_t tok[15] = {0, 5, 5, 2, 1, 3, 3, 3, 0, 5, 1, 6, 2, 4, 4}; /* 6 is out of range */
    float *wte = vec_rand(vocab * cols, 58, -1, 1), *wpe = vec_rand(seq * cols, 59, -1, 1);
    float *dout = vec_rand(n * cols, 60, -1, 1);
    float *out = run_embedding_forward(cpu, bsz, seq, cols, vocab, tok, wte, wpe);
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < cols; c++) {
            float te = tok[i] < (int32_t)vocab ? wte[tok[i] * cols + c] : 0.0f;
            cr_assert_eq(out[i * cols + c], te + wpe[(i % seq) * cols + c]);
        }
    float *dwpe,
        *dwte = run_embedding_backward(cpu, bsz, seq, cols, vocab, tok, dout, wte, wpe, &dwpe);
    for (size_t c = 0; c < cols; c++) {
        for (size_t v = 0; v < vocab; v++) {
            double s = wte[v * cols + c];
            for (size_t i = 0; i < n; i++)
                if (tok[i] == (int32_t)v) s += dout[i * cols + c];
            cr_assert_float_eq(dwte[v * cols + c], s, 1e-6, "dwte[%zu,%zu]", v, c);
        }
        for (size_t t = 0; t < seq; t++) {
            double s = wpe[t * cols + c];
            for (size_t b = 0; b < bsz; b++) s += dout[(b * seq + t) * cols + c];
            cr_assert_float_eq(dwpe[t * cols + c], s, 1e-6, "dwpe[%zu,%zu]", t, c);
        }
    }
    free(wte), free(wpe), free(dout), free(out), free(dwte), free(dwpe);
}

Test(reference, causal_softmax_matches_naive_loops_and_finite_differences)
{
    size_t heads = 2, seq = 5, e = heads * seq * seq;
    const float scale = 0.7f;
    float *s = vec_rand(e, 61, -3, 3), *g = vec_rand(e, 62, -1, 1);
    float *p = run_causal_softmax(cpu, heads, seq, scale, s, NULL, false);
    /* L = sum(p * g) in double, for the finite differences. */
#define CSM_LOSS(res)                                                                              \
    do {                                                                                           \
        double l_ = 0;                                                                             \
        for (size_t row = 0; row < heads * seq; row++) {                                           \
            size_t t = row % seq;                                                                  \
            double mx = -1e30, z = 0;                                                              \
            for (size_t j = 0; j <= t; j++) mx = fmax(mx, scale * (double)s[row * seq + j]);       \
            for (size_t j = 0; j <= t; j++) z += exp(scale * (double)s[row * seq + j] - mx);       \
            for (size_t j = 0; j < seq; j++) {                                                     \
                double pj = j <= t ? exp(scale * (double)s[row * seq + j] - mx) / z : 0.0;         \
                if (check_p) cr_assert_float_eq(p[row * seq + j], pj, 1e-6, "p[%zu,%zu]", row, j); \
                l_ += pj * g[row * seq + j];                                                       \
            }                                                                                      \
        }                                                                                          \
        (res) = l_;                                                                                \
    } while (0)
    double l0;
    bool check_p = true;
    CSM_LOSS(l0);
    check_p = false;
    float *ds = run_causal_softmax(cpu, heads, seq, scale, p, g, false);
    const float h = 1e-2f;
    for (size_t i = 0; i < e; i++) {
        double lp, lm;
        float keep = s[i];
        s[i] = keep + h;
        CSM_LOSS(lp);
        s[i] = keep - h;
        CSM_LOSS(lm);
        s[i] = keep;
        cr_assert_float_eq(ds[i], (lp - lm) / (2 * h), 1e-4, "ds[%zu]", i);
    }
#undef CSM_LOSS
    (void)l0;
    free(s), free(g), free(p), free(ds);
}

/* Causal self-attention in double, head by head: att and y, and with dy the gradients dqkv. */
static void naive_attention(size_t B, size_t T, size_t H, size_t hs, double scale, const float *qkv,
                            const float *dy, double *att, double *y, double *dqkv)
{
    size_t C = H * hs, C3 = 3 * C;
    double *dp = calloc(T * T, sizeof *dp);
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++) {
            const float *q = qkv + b * T * C3 + h * hs, *k = q + C, *v = q + 2 * C;
            double *p = att + (b * H + h) * T * T;
            for (size_t i = 0; i < T; i++) {
                double mx = -1e300, z = 0;
                for (size_t j = 0; j <= i; j++) {
                    double sij = 0;
                    for (size_t d = 0; d < hs; d++) sij += (double)q[i * C3 + d] * k[j * C3 + d];
                    p[i * T + j] = scale * sij;
                    mx = fmax(mx, p[i * T + j]);
                }
                for (size_t j = 0; j < T; j++) {
                    p[i * T + j] = j <= i ? exp(p[i * T + j] - mx) : 0.0;
                    z += p[i * T + j];
                }
                for (size_t j = 0; j < T; j++) p[i * T + j] /= z;
                for (size_t d = 0; d < hs; d++) {
                    double yd = 0;
                    for (size_t j = 0; j <= i; j++) yd += p[i * T + j] * v[j * C3 + d];
                    y[(b * T + i) * C + h * hs + d] = yd;
                }
            }
            if (!dy) continue;
            const float *g = dy + b * T * C + h * hs;
            double *dq = dqkv + b * T * C3 + h * hs, *dk = dq + C, *dv = dq + 2 * C;
            for (size_t i = 0; i < T; i++) {
                double dot = 0;
                for (size_t j = 0; j <= i; j++) {
                    double s = 0;
                    for (size_t d = 0; d < hs; d++) s += (double)g[i * C + d] * v[j * C3 + d];
                    dp[i * T + j] = s;
                    dot += p[i * T + j] * s;
                }
                for (size_t j = 0; j <= i; j++)
                    dp[i * T + j] = scale * p[i * T + j] * (dp[i * T + j] - dot);
            }
            for (size_t i = 0; i < T; i++)
                for (size_t d = 0; d < hs; d++) {
                    double sq = 0, sk = 0, sv = 0;
                    for (size_t j = 0; j <= i; j++) sq += dp[i * T + j] * k[j * C3 + d];
                    for (size_t r = i; r < T; r++) {
                        sk += dp[r * T + i] * q[r * C3 + d];
                        sv += p[r * T + i] * g[r * C + d];
                    }
                    dq[i * C3 + d] = sq, dk[i * C3 + d] = sk, dv[i * C3 + d] = sv;
                }
        }
    free(dp);
}

/* |got - want| <= atol + rtol |want| for n elements. */
static void assert_close_d(const double *want, const float *got, size_t n, double atol, double rtol,
                           const char *what)
{
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs(got[i] - want[i]) <= atol + rtol * fabs(want[i]),
                  "%s: element %zu is %.9g, expected %.9g", what, i, (double)got[i], want[i]);
}

/* The fused kernel (its AVX-512 pieces where this CPU has them, and its loops) and the composed
 * path, against the loops above, at shapes that cross every block edge: seq past one and two
 * blocks of 64 columns and not a multiple of the 8-row blocks, head sizes of 1, odd, 16, 32. */
Test(reference, attention_matches_naive_loops)
{
    static const size_t shapes[][4] = {{1, 1, 1, 1},   {2, 5, 3, 7},   {1, 17, 2, 32},
                                       {2, 64, 4, 32}, {1, 70, 1, 33}, {1, 131, 2, 16}};
    for (size_t s = 0; s < SL_ARRAY_LEN(shapes); s++) {
        size_t B = shapes[s][0], T = shapes[s][1], H = shapes[s][2], hs = shapes[s][3];
        size_t e_qkv = B * T * 3 * H * hs, e_att = B * H * T * T, e_y = B * T * H * hs;
        float scale = 1.0f / sqrtf((float)hs);
        float *qkv = vec_rand(e_qkv, 71, -2, 2), *dy = vec_rand(e_y, 72, -1, 1);
        double *att = calloc(e_att, sizeof *att), *y = calloc(e_y, sizeof *y),
               *dqkv = calloc(e_qkv, sizeof *dqkv);
        naive_attention(B, T, H, hs, scale, qkv, dy, att, y, dqkv);
        for (int way = 0; way < 3; way++) { /* fused, fused as loops, composed */
            char what[96];
            snprintf(what, sizeof what, "%s, B %zu T %zu H %zu hs %zu",
                     way == 0   ? "fused"
                     : way == 1 ? "fused loops"
                                : "composed",
                     B, T, H, hs);
            sl__cpu_attention_use_loops(way == 1);
            float *pa, *py = run_attention(cpu, way == 2, B, T, H, hs, scale, qkv, NULL, NULL, &pa);
            assert_close_d(att, pa, e_att, 1e-6, 1e-5, what);
            assert_close_d(y, py, e_y, 1e-6, 1e-5, what);
            float *pd = run_attention(cpu, way == 2, B, T, H, hs, scale, qkv, pa, dy, NULL);
            assert_close_d(dqkv, pd, e_qkv, 1e-5, 1e-4, what);
            free(pa), free(py), free(pd);
        }
        sl__cpu_attention_use_loops(false);
        free(qkv), free(dy), free(att), free(y), free(dqkv);
    }
}

/* The gradients the fused kernel makes against finite differences of sum(y * g), in double. */
Test(reference, attention_backward_matches_finite_differences)
{
    size_t B = 2, T = 4, H = 2, hs = 3, C = H * hs, e_qkv = B * T * 3 * C, e_y = B * T * C;
    float scale = 0.6f, *qkv = vec_rand(e_qkv, 73, -1, 1), *g = vec_rand(e_y, 74, -1, 1), *pa;
    double *att = calloc(B * H * T * T, sizeof *att), *y = calloc(e_y, sizeof *y);
    float *py = run_attention(cpu, false, B, T, H, hs, scale, qkv, NULL, NULL, &pa);
    float *pd = run_attention(cpu, false, B, T, H, hs, scale, qkv, pa, g, NULL);
    const float h = 1e-2f;
    for (size_t i = 0; i < e_qkv; i++) {
        double l[2];
        float keep = qkv[i];
        for (int side = 0; side < 2; side++) {
            qkv[i] = keep + (side ? -h : h);
            naive_attention(B, T, H, hs, scale, qkv, NULL, att, y, NULL);
            l[side] = 0;
            for (size_t j = 0; j < e_y; j++) l[side] += y[j] * g[j];
        }
        qkv[i] = keep;
        cr_assert_float_eq(pd[i], (l[0] - l[1]) / (2 * h), 1e-4, "dqkv[%zu]", i);
    }
    free(qkv), free(g), free(pa), free(py), free(pd), free(att), free(y);
}

/* A NaN in one key reaches the output of every row that sees it (rows 5 on), on every path:
 * nothing turns it into a zero weight. */
Test(reference, attention_passes_a_nan_on)
{
    size_t B = 1, T = 20, H = 1, hs = 16, e_qkv = B * T * 3 * H * hs;
    float *qkv = vec_rand(e_qkv, 75, -1, 1), *att;
    qkv[5 * 3 * hs + hs + 3] = NAN; /* k of row 5 */
    for (int way = 0; way < 3; way++) {
        sl__cpu_attention_use_loops(way == 1);
        float *y = run_attention(cpu, way == 2, B, T, H, hs, 0.25f, qkv, NULL, NULL, &att);
        for (size_t i = 0; i < T * hs; i++)
            cr_assert_eq(isnan(y[i]), i / hs >= 5, "way %d: y[%zu] = %g", way, i, (double)y[i]);
        free(y), free(att);
    }
    sl__cpu_attention_use_loops(false);
    free(qkv);
}

Test(reference, attention_refuses_bad_shapes)
{
    sl_buffer *b = buf_f(cpu, NULL, 64);
    cr_assert_eq(sl_attention_forward(cpu, 1, 2, 1, 0, 1.0f, b, b, b), SL_EINVAL);
    cr_assert(strstr(sl_last_error(), "head size 0"), "%s", sl_last_error());
    /* 64 floats: seq 4 fits (qkv 4 x 12, att 2 x 4 x 4), seq 6 does not (qkv 72) */
    cr_assert_eq(sl_attention_forward(cpu, 1, 4, 2, 2, 1.0f, b, b, b), SL_OK);
    cr_assert_eq(sl_attention_forward(cpu, 1, 6, 2, 2, 1.0f, b, b, b), SL_ERANGE);
    cr_assert(strstr(sl_last_error(), "qkv"), "%s", sl_last_error());
    cr_assert_eq(sl_attention_backward(cpu, SIZE_MAX / 2, 4, 2, 2, 1.0f, b, b, b, b, b), SL_ERANGE);
    sl_buffer_free(b);
}

Test(reference, gemm_strided_batched_matches_naive_loops)
{
    size_t m = 5, n = 7, k = 3, batch = 3, sa = m * k + 2, sb = 0, sc = m * n + 1;
    size_t na = sa * (batch - 1) + m * k, nb = k * n, nc = sc * (batch - 1) + m * n;
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        float *a = vec_rand(na, 63, -1, 1), *b = vec_rand(nb, 64, -1, 1),
              *c0 = vec_rand(nc, 65, -1, 1);
        for (int beta = 0; beta <= 1; beta++) {
            float *got = run_gemm_batched(cpu, ta, tb, m, n, k, 0.5f, a, sa, na, b, sb, nb,
                                          (float)beta, c0, sc, nc, batch);
            for (size_t i = 0; i < batch; i++) {
                float *ref =
                    naive_gemm(ta, tb, m, n, k, 0.5f, a + i * sa, b, (float)beta, c0 + i * sc);
                assert_close(ref, got + i * sc, m * n, 1e-5f, 1e-5f, "gemm batched");
                free(ref);
                if (i + 1 < batch) /* the gap between C matrices is left alone */
                    cr_assert_eq(got[i * sc + m * n], c0[i * sc + m * n]);
            }
            free(got);
        }
        free(a), free(b), free(c0);
    }
}

/* Heads side by side in wider rows (offset, ld, stride hs), as the GPT block reads q, k, v in place
 * and writes its outputs: against naive loops over the matrices copied out; beta 0 overwrites the
 * NaN in C, and whatever lies outside the C views is left alone. */
Test(reference, gemm_batched_views_match_naive_loops)
{
    size_t m = 5, n = 4, k = 3, batch = 3;
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        size_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
        /* A and B beside each other in rows of 3 * batch * cols + 1 (from the second third), C
         * in rows with a gap after the batch */
        sl_gemm_view va = {NULL, batch * ac + 2, 3 * batch * ac + 1, ac, 0, 0};
        sl_gemm_view vb = {NULL, 1, batch * bc + 3, bc, 0, 0};
        sl_gemm_view vc = {NULL, 2, batch * n + 2, n, 0, 0};
        size_t na = va.offset + ar * va.ld, nb = vb.offset + br * vb.ld, nc = vc.offset + m * vc.ld;
        float *a = vec_rand(na, 66, -1, 1), *b = vec_rand(nb, 67, -1, 1);
        float *c0 = vec_rand(nc, 68, -1, 1), *cnan = vec_rand(nc, 68, -1, 1);
        for (size_t i = 0; i < batch; i++)
            for (size_t r = 0; r < m; r++)
                for (size_t j = 0; j < n; j++)
                    cnan[vc.offset + i * vc.stride + r * vc.ld + j] = NAN;
        for (int beta = 0; beta <= 1; beta++) {
            const float *cin = beta ? c0 : cnan;
            float *got = run_gemm_views(cpu, ta, tb, m, n, k, 0.5f, a, na, va, b, nb, vb,
                                        (float)beta, cin, nc, vc, batch);
            float *outside = vec_new(nc), *want = vec_new(nc);
            memcpy(outside, got, nc * 4), memcpy(want, cin, nc * 4);
            for (size_t i = 0; i < batch; i++) {
                float *pa = view_take(a, va, i, ar, ac), *pb = view_take(b, vb, i, br, bc);
                float *pc = view_take(cin, vc, i, m, n);
                float *ref = naive_gemm(ta, tb, m, n, k, 0.5f, pa, pb, (float)beta, pc);
                float *out = view_take(got, vc, i, m, n);
                assert_close(ref, out, m * n, 1e-5f, 1e-5f, "gemm batched views");
                free(ref), free(pa), free(pb), free(pc), free(out);
                for (size_t r = 0; r < m; r++)
                    for (size_t j = 0; j < n; j++)
                        outside[vc.offset + i * vc.stride + r * vc.ld + j] =
                            want[vc.offset + i * vc.stride + r * vc.ld + j] = 0.0f;
            }
            cr_assert(!memcmp(outside, want, nc * 4), "gemm batched views wrote outside C");
            free(outside), free(want), free(got);
        }
        free(a), free(b), free(c0), free(cnan);
    }
}

Test(reference, copy_strided_splits_and_merges_attention_heads)
{
    /* q, k and v heads out of [B, T, 3C] rows (C = H * hs) into packed [B, H, T, hs], and back. */
    const size_t B = 2, T = 5, H = 3, hs = 4, C = H * hs, n = B * T * 3 * C,
                 packed = B * H * T * hs;
    const size_t shape[4] = {B, H, T, hs};
    const size_t rows[4] = {T * 3 * C, hs, 3 * C, 1}, heads[4] = {H * T * hs, T * hs, hs, 1};
    float *qkv = vec_rand(n, 70, -1, 1);
    sl_buffer *back = buf_f(cpu, NULL, n);
    for (size_t j = 0; j < 3; j++) {
        float *sentinel = vec_rand(packed, 71, 5, 6);
        float *got = run_copy_strided(cpu, shape, qkv, n, j * C, rows, sentinel, packed, 0, heads);
        for (size_t b = 0; b < B; b++)
            for (size_t h = 0; h < H; h++)
                for (size_t t = 0; t < T; t++)
                    for (size_t e = 0; e < hs; e++)
                        cr_assert_eq(got[((b * H + h) * T + t) * hs + e],
                                     qkv[(b * T + t) * 3 * C + j * C + h * hs + e],
                                     "split %zu [%zu,%zu,%zu,%zu]", j, b, h, t, e);
        /* The merge back, into the j-th third of each row of `back`. */
        sl_buffer *bp = buf_f(cpu, got, packed);
        OK(sl_copy_strided(cpu, shape, bp, 0, heads, back, j * C, rows));
        sl_buffer_free(bp);
        free(got), free(sentinel);
    }
    float *round = buf_take(back, n);
    cr_assert(!memcmp(round, qkv, n * 4), "split then merge is not the identity");
    free(round), free(qkv);
}

Test(reference, copy_strided_arguments_are_checked)
{
    sl_buffer *b = buf_f(cpu, NULL, 16), *c = buf_f(cpu, NULL, 16);
    const size_t shape[4] = {2, 2, 2, 2}, packed[4] = {8, 4, 2, 1};
    OK(sl_copy_strided(cpu, shape, b, 0, packed, c, 0, packed));
    /* One element past the end of src, of dst (through its offset), or of a stride. */
    cr_assert_eq(sl_copy_strided(cpu, shape, b, 1, packed, c, 0, packed), SL_ERANGE);
    cr_assert_eq(sl_copy_strided(cpu, shape, b, 0, packed, c, 1, packed), SL_ERANGE);
    const size_t wide[4] = {8, 4, 2, 2};
    cr_assert_eq(sl_copy_strided(cpu, shape, b, 0, wide, c, 0, packed), SL_ERANGE);
    const size_t huge[4] = {SIZE_MAX / 2, 4, 2, 1};
    cr_assert_eq(sl_copy_strided(cpu, shape, b, 0, packed, c, 0, huge), SL_ERANGE);
    cr_assert_eq(sl_copy_strided(cpu, shape, b, SIZE_MAX, packed, c, 0, packed), SL_ERANGE);
    /* The same buffer, and destinations that must repeat, are refused. */
    cr_assert_eq(sl_copy_strided(cpu, shape, b, 0, packed, b, 0, packed), SL_EINVAL);
    const size_t repeat[4] = {8, 4, 0, 1};
    cr_assert_eq(sl_copy_strided(cpu, shape, b, 0, packed, c, 0, repeat), SL_EINVAL);
    /* A zero dimension copies nothing, whatever the strides. */
    const size_t empty[4] = {2, 0, 2, 2};
    OK(sl_copy_strided(cpu, empty, b, 100, huge, c, 100, huge));
    sl_buffer_free(b);
    sl_buffer_free(c);
}

Test(reference, transformer_arguments_are_checked)
{
    sl_buffer *b = buf_f(cpu, NULL, 16), *c = buf_f(cpu, NULL, 16);
    cr_assert_eq(sl_layernorm_forward(cpu, 2, 0, b, b, b, c, c, c), SL_EINVAL);
    cr_assert_eq(sl_layernorm_forward(cpu, 4, 5, b, b, b, c, c, c), SL_ERANGE);
    cr_assert_eq(sl_embedding_forward(cpu, 1, 2, 2, 0, b, b, b, c), SL_EINVAL);
    cr_assert_eq(sl_embedding_backward(cpu, 2, 2, 2, 9, b, b, c, c), SL_ERANGE);
    cr_assert_eq(sl_causal_softmax_forward(cpu, 1, 5, 1.0f, b, c), SL_ERANGE);
    /* C matrices that overlap are refused; so is a batch beyond the buffer. */
    cr_assert_eq(
        sl_gemm_strided_batched(cpu, false, false, 2, 2, 2, 1.0f, b, 4, b, 4, 0.0f, c, 3, 2),
        SL_EINVAL);
    cr_assert_eq(
        sl_gemm_strided_batched(cpu, false, false, 2, 2, 2, 1.0f, b, 4, b, 4, 0.0f, c, 4, 5),
        SL_ERANGE);
    cr_assert_eq(sl_gemm_strided_batched(cpu, false, false, 2, 2, 2, 1.0f, b, SIZE_MAX / 2, b, 4,
                                         0.0f, c, 4, 3),
                 SL_ERANGE);
    /* Views: C matrices that overlap (neither after nor beside each other), an ld shorter than
     * a row, a view past the buffer's end, k = 0 with beta other than 1. */
    sl_gemm_view va = {b, 0, 2, 4, 0, 0}, vc = {c, 0, 2, 4, 0, 0};
    OK(sl_gemm_batched(cpu, false, false, 2, 2, 2, 1.0f, va, va, 0.0f, vc, 4));
    sl_gemm_view beside = {c, 0, 8, 2, 0, 0}, clash = {c, 0, 3, 2, 0, 0},
                 shortld = {b, 0, 1, 4, 0, 0};
    OK(sl_gemm_batched(cpu, false, false, 2, 2, 2, 1.0f, va, va, 0.0f, beside, 4));
    cr_assert_eq(sl_gemm_batched(cpu, false, false, 2, 2, 2, 1.0f, va, va, 0.0f, clash, 2),
                 SL_EINVAL);
    cr_assert_eq(sl_gemm_batched(cpu, false, false, 2, 2, 2, 1.0f, shortld, va, 0.0f, vc, 1),
                 SL_EINVAL);
    cr_assert_eq(sl_gemm_batched(cpu, false, false, 2, 2, 2, 1.0f, va, va, 0.0f, vc, 5), SL_ERANGE);
    sl_gemm_view far = {b, SIZE_MAX / 2, 2, 4, 0, 0};
    cr_assert_eq(sl_gemm_batched(cpu, false, false, 2, 2, 2, 1.0f, far, va, 0.0f, vc, 1),
                 SL_ERANGE);
    cr_assert_eq(sl_gemm_batched(cpu, false, false, 2, 2, 0, 1.0f, va, va, 0.0f, vc, 1),
                 SL_EUNSUPPORTED);
    OK(sl_gemm_batched(cpu, false, false, 2, 2, 0, 1.0f, va, va, 1.0f, vc, 1));
    cr_assert_eq(sl_adamw(cpu, 4, b, b, b, c, 0.1f, 0.9f, 1.0f, 1e-8f, 0, 1), SL_EINVAL);
    cr_assert_eq(sl_sum_squares(cpu, 17, b, c, 0), SL_ERANGE);
    sl_buffer_free(b);
    sl_buffer_free(c);
}

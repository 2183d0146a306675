/* The fp32 FMA peak, measured as clpeak does: every work-item runs independent chains of
 * x = fma(x, a, b) on float8 values, enough of them that neither a GPU's nor a CPU's pipelines wait
 * on a result. 8 chains x 8 lanes x 16 unrolled steps x 2 flops = 2048 flops per loop iteration.
 * With a just under 1 the values converge to b / (1 - a) and never become denormal (which would
 * be slow on CPUs). The sum is stored so that no chain is optimised away.
 * fma, not clpeak's mad: without -cl-mad-enable PoCL compiles mad as a multiply and an add, which
 * measured half the peak on an AVX2 CPU; every current GPU and CPU has a fused multiply-add. */
#define STEP(x) x = fma(x, a, b)
#define STEP8                                                                                      \
    STEP(x0); STEP(x1); STEP(x2); STEP(x3); STEP(x4); STEP(x5); STEP(x6); STEP(x7)
#define STEP16 STEP8; STEP8; STEP8; STEP8; STEP8; STEP8; STEP8; STEP8; STEP8; STEP8; STEP8; STEP8; \
    STEP8; STEP8; STEP8; STEP8

__kernel void peak_fma(__global float *out, float a, float b, int iters)
{
    const float s = (float)get_global_id(0) * 1e-6f;
    float8 x0 = (float8)(s + 0.0f), x1 = (float8)(s + 0.1f), x2 = (float8)(s + 0.2f);
    float8 x3 = (float8)(s + 0.3f), x4 = (float8)(s + 0.4f), x5 = (float8)(s + 0.5f);
    float8 x6 = (float8)(s + 0.6f), x7 = (float8)(s + 0.7f);
    for (int i = 0; i < iters; i++) {
        STEP16;
    }
    float8 t = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;
    out[get_global_id(0)] = t.s0 + t.s1 + t.s2 + t.s3 + t.s4 + t.s5 + t.s6 + t.s7;
}

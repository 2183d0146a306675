// The texel-buffer twin of gemm.comp, used where texel fetches are cheaper than storage-buffer
// loads (CPU drivers) and the operands fit maxTexelBufferElements.
// C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, row-major, either operand transposed.
// Register-blocked, no shared memory and no barriers (lavapipe runs those slowly; GPUs cache the
// re-reads well enough): each invocation computes a TM x (4*TN4) block of C. Invocations along x
// of a work-group take neighbouring column blocks of the same rows, so the A reads of a
// work-group are uniform and the B reads are neighbouring vec4s. TM, TN4 and the work-group size
// are specialization constants chosen per device. No subgroup size is assumed.
// Edges: loads use clamped indices (always in range) and only in-range elements are stored.
// Loops over the tile are marked [[unroll]] so the accumulators become registers once the
// specialization constants are known.
#version 450
#extension GL_EXT_control_flow_attributes : require
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint TM = 8;
layout(constant_id = 2) const uint TN4 = 2;
layout(push_constant) uniform P {
    uint base_x; uint base_y; uint m; uint n; uint k; uint trans_a; uint trans_b;
    float alpha; float beta;
} p;
// A and B come through uniform texel buffers (R32F views, and an RGBA32F view of B for vec4
// reads): lavapipe fetches texels for all SIMD lanes at once, where it loads storage buffers one
// lane and one component at a time through the stack.
layout(binding = 0) uniform samplerBuffer ta;
layout(binding = 1) uniform samplerBuffer tb;
layout(std430, binding = 2) buffer C { float c[]; };
layout(binding = 3) uniform samplerBuffer tb4; // B again as vec4s (only read when its rows are
                                               // whole vec4s: n % 4 == 0, or k % 4 == 0 for B^T)
layout(binding = 4) uniform samplerBuffer ta4; // A again as vec4s along k (only read for NN
                                               // when k % 4 == 0)

void main()
{
    uint cb = (p.base_x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    uint row0 = (p.base_y + gl_WorkGroupID.y) * TM;
    uint col0 = cb * TN4 * 4u;
    // No early return for invocations past the edge: indices are clamped instead, so no branch
    // before the stores depends on the invocation and the A addresses stay provably uniform.

    // A(i, kk) = a[i * sai + kk * sak]; B(kk, j) = b[kk * sbk + j * sbj].
    uint sai = p.trans_a != 0u ? 1u : p.k, sak = p.trans_a != 0u ? p.m : 1u;
    uint sbk = p.trans_b != 0u ? 1u : p.n, sbj = p.trans_b != 0u ? p.k : 1u;

    uint arow[TM];
    [[unroll]] for (uint i = 0u; i < TM; i++) arow[i] = min(row0 + i, p.m - 1u) * sai;

    vec4 acc[TM][TN4];
    [[unroll]] for (uint i = 0u; i < TM; i++)
        [[unroll]] for (uint j = 0u; j < TN4; j++) acc[i][j] = vec4(0.0);

    if (p.trans_a == 0u && p.trans_b == 0u && ((p.n | p.k) & 3u) == 0u) {
        // A rows and B rows are whole vec4s: per 4 steps of k, one vec4 of A per row and one
        // vec4 of B per 4 columns and step.
        uint n4 = p.n >> 2u, k4 = p.k >> 2u;
        uint bc[TN4], ar4[TM];
        [[unroll]] for (uint j = 0u; j < TN4; j++) bc[j] = min((col0 >> 2u) + j, n4 - 1u);
        [[unroll]] for (uint i = 0u; i < TM; i++) ar4[i] = min(row0 + i, p.m - 1u) * k4;
        for (uint kq = 0u; kq < k4; kq++) {
            vec4 av[TM];
            [[unroll]] for (uint i = 0u; i < TM; i++) av[i] = texelFetch(ta4, int(ar4[i] + kq));
            [[unroll]] for (uint s = 0u; s < 4u; s++) {
                uint bk = (kq * 4u + s) * n4;
                vec4 bv[TN4];
                [[unroll]] for (uint j = 0u; j < TN4; j++) bv[j] = texelFetch(tb4, int(bk + bc[j]));
                [[unroll]] for (uint i = 0u; i < TM; i++)
                    [[unroll]] for (uint j = 0u; j < TN4; j++)
                        acc[i][j] = fma(vec4(av[i][s]), bv[j], acc[i][j]);
            }
        }
    } else if (p.trans_b == 0u && (p.n & 3u) == 0u) {
        // B rows are whole vec4s: one vec4 load per 4 columns.
        uint n4 = p.n >> 2u;
        uint bc[TN4];
        [[unroll]] for (uint j = 0u; j < TN4; j++) bc[j] = min((col0 >> 2u) + j, n4 - 1u);
        for (uint kk = 0u; kk < p.k; kk++) {
            vec4 bv[TN4];
            [[unroll]] for (uint j = 0u; j < TN4; j++) bv[j] = texelFetch(tb4, int(kk * n4 + bc[j]));
            uint ak = kk * sak;
            [[unroll]] for (uint i = 0u; i < TM; i++) {
                float av = texelFetch(ta, int(arow[i] + ak)).x;
                [[unroll]] for (uint j = 0u; j < TN4; j++) acc[i][j] = fma(vec4(av), bv[j], acc[i][j]);
            }
        }
    } else if (p.trans_b != 0u && (p.k & 3u) == 0u) {
        // B^T rows run along k and are whole vec4s: one vec4 load per column covers 4 steps
        // of k (in place of 4 scalar fetches).
        uint k4 = p.k >> 2u;
        uint bq4[TN4 * 4u];
        [[unroll]] for (uint j = 0u; j < TN4 * 4u; j++) bq4[j] = min(col0 + j, p.n - 1u) * k4;
        for (uint kq = 0u; kq < k4; kq++) {
            vec4 bq[TN4 * 4u];
            [[unroll]] for (uint j = 0u; j < TN4 * 4u; j++) bq[j] = texelFetch(tb4, int(bq4[j] + kq));
            [[unroll]] for (uint s = 0u; s < 4u; s++) {
                vec4 bv[TN4];
                [[unroll]] for (uint j = 0u; j < TN4; j++)
                    bv[j] = vec4(bq[4u * j][s], bq[4u * j + 1u][s], bq[4u * j + 2u][s], bq[4u * j + 3u][s]);
                uint ak = (kq * 4u + s) * sak;
                [[unroll]] for (uint i = 0u; i < TM; i++) {
                    float av = texelFetch(ta, int(arow[i] + ak)).x;
                    [[unroll]] for (uint j = 0u; j < TN4; j++) acc[i][j] = fma(vec4(av), bv[j], acc[i][j]);
                }
            }
        }
    } else {
        uint bc[TN4 * 4u];
        [[unroll]] for (uint j = 0u; j < TN4 * 4u; j++) bc[j] = min(col0 + j, p.n - 1u) * sbj;
        for (uint kk = 0u; kk < p.k; kk++) {
            vec4 bv[TN4];
            uint bk = kk * sbk;
            [[unroll]] for (uint j = 0u; j < TN4; j++)
                bv[j] = vec4(texelFetch(tb, int(bk + bc[4u * j])).x, texelFetch(tb, int(bk + bc[4u * j + 1u])).x, texelFetch(tb, int(bk + bc[4u * j + 2u])).x,
                             texelFetch(tb, int(bk + bc[4u * j + 3u])).x);
            uint ak = kk * sak;
            [[unroll]] for (uint i = 0u; i < TM; i++) {
                float av = texelFetch(ta, int(arow[i] + ak)).x;
                [[unroll]] for (uint j = 0u; j < TN4; j++) acc[i][j] = fma(vec4(av), bv[j], acc[i][j]);
            }
        }
    }

    // beta = 0 overwrites C without reading it, so NaN in C does not leak into the result.
    [[unroll]] for (uint i = 0u; i < TM; i++) {
        uint r = row0 + i;
        if (r >= p.m) continue;
        [[unroll]] for (uint j = 0u; j < TN4; j++) {
            [[unroll]] for (uint e = 0u; e < 4u; e++) {
                uint col = col0 + 4u * j + e;
                if (col < p.n) {
                    uint idx = r * p.n + col;
                    float v = p.alpha * acc[i][j][e];
                    c[idx] = p.beta == 0.0 ? v : v + p.beta * c[idx];
                }
            }
        }
    }
}

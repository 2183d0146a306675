// C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, row-major, either operand transposed; for
// a batch, work-group z multiplies the matrices that start at off_a + z * stride_a, off_b +
// z * stride_b and off_c + z * stride_c (all 0 for a single GEMM), whose stored rows lie lda, ldb
// and ldc apart.
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
    float alpha; float beta; uint stride_a; uint stride_b; uint stride_c; uint base_z;
    uint lda; uint ldb; uint ldc; uint off_a; uint off_b; uint off_c;
    uint group; uint gstride_a; uint gstride_b; uint gstride_c; // matrices in groups (0: none)
} p;
layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) buffer C { float c[]; };
layout(std430, binding = 3) readonly buffer B4 { vec4 b4[]; }; // B again, read as vec4

void main()
{
    uint cb = (p.base_x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    uint row0 = (p.base_y + gl_WorkGroupID.y) * TM;
    uint col0 = cb * TN4 * 4u;
    uint z = p.base_z + gl_WorkGroupID.z;
    uint zg = p.group != 0u ? z / p.group : 0u, zi = p.group != 0u ? z % p.group : z;
    uint oa = p.off_a + zg * p.gstride_a + zi * p.stride_a;
    uint ob = p.off_b + zg * p.gstride_b + zi * p.stride_b;
    uint oc = p.off_c + zg * p.gstride_c + zi * p.stride_c;
    // No early return for invocations past the edge: indices are clamped instead, so no branch
    // before the stores depends on the invocation and the A addresses stay provably uniform.

    // A(i, kk) = a[i * sai + kk * sak]; B(kk, j) = b[kk * sbk + j * sbj].
    uint sai = p.trans_a != 0u ? 1u : p.lda, sak = p.trans_a != 0u ? p.lda : 1u;
    uint sbk = p.trans_b != 0u ? 1u : p.ldb, sbj = p.trans_b != 0u ? p.ldb : 1u;

    uint arow[TM];
    [[unroll]] for (uint i = 0u; i < TM; i++) arow[i] = oa + min(row0 + i, p.m - 1u) * sai;

    vec4 acc[TM][TN4];
    [[unroll]] for (uint i = 0u; i < TM; i++)
        [[unroll]] for (uint j = 0u; j < TN4; j++) acc[i][j] = vec4(0.0);

    if (p.trans_b == 0u && ((p.n | p.ldb | ob) & 3u) == 0u) {
        // B rows are whole vec4s: one vec4 load per 4 columns.
        uint n4 = p.n >> 2u, ld4 = p.ldb >> 2u, ob4 = ob >> 2u;
        uint bc[TN4];
        [[unroll]] for (uint j = 0u; j < TN4; j++) bc[j] = min((col0 >> 2u) + j, n4 - 1u);
        for (uint kk = 0u; kk < p.k; kk++) {
            vec4 bv[TN4];
            [[unroll]] for (uint j = 0u; j < TN4; j++) bv[j] = b4[ob4 + kk * ld4 + bc[j]];
            uint ak = kk * sak;
            [[unroll]] for (uint i = 0u; i < TM; i++) {
                float av = a[arow[i] + ak];
                [[unroll]] for (uint j = 0u; j < TN4; j++) acc[i][j] = fma(vec4(av), bv[j], acc[i][j]);
            }
        }
    } else {
        uint bc[TN4 * 4u];
        [[unroll]] for (uint j = 0u; j < TN4 * 4u; j++) bc[j] = min(col0 + j, p.n - 1u) * sbj;
        for (uint kk = 0u; kk < p.k; kk++) {
            vec4 bv[TN4];
            uint bk = ob + kk * sbk;
            [[unroll]] for (uint j = 0u; j < TN4; j++)
                bv[j] = vec4(b[bk + bc[4u * j]], b[bk + bc[4u * j + 1u]], b[bk + bc[4u * j + 2u]],
                             b[bk + bc[4u * j + 3u]]);
            uint ak = kk * sak;
            [[unroll]] for (uint i = 0u; i < TM; i++) {
                float av = a[arow[i] + ak];
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
                    uint idx = oc + r * p.ldc + col;
                    float v = p.alpha * acc[i][j][e];
                    c[idx] = p.beta == 0.0 ? v : v + p.beta * c[idx];
                }
            }
        }
    }
}

// The strided 4-D copy, one invocation per element: the flat index splits into (i0, i1, i2, i3),
// innermost i3, and dst[dst_off + i . dst_strides] = src[src_off + i . src_strides]. The host
// has checked that every index fits in 32 bits.
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P {
    uint base;
    uint total;
    uint shape1, shape2, shape3;
    uint src_off, s0, s1, s2, s3;
    uint dst_off, d0, d1, d2, d3;
} p;
layout(std430, binding = 0) readonly buffer S { float src[]; };
layout(std430, binding = 1) writeonly buffer D { float dst[]; };
void main()
{
    uint i = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i >= p.total) return;
    uint i3 = i % p.shape3;
    i /= p.shape3;
    uint i2 = i % p.shape2;
    i /= p.shape2;
    uint i1 = i % p.shape1, i0 = i / p.shape1;
    dst[p.dst_off + i0 * p.d0 + i1 * p.d1 + i2 * p.d2 + i3 * p.d3] =
        src[p.src_off + i0 * p.s0 + i1 * p.s1 + i2 * p.s2 + i3 * p.s3];
}

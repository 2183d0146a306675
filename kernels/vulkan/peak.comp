// The fp32 FMA peak: CHAINS independent chains of vec4 fma per invocation, ITERS times unrolled by
// 4, so the compiler can neither fold them nor serialise them. Flops per invocation:
// iters * 4 * CHAINS * 4 lanes * 2. The sum is written out so nothing is dead code.
#version 450
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint CHAINS = 4;
layout(push_constant) uniform P { uint base; uint iters; float mul; float add; } p;
layout(std430, binding = 0) writeonly buffer O { float o[]; };
void main()
{
    uint gid = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    vec4 x[CHAINS];
    for (uint c = 0u; c < CHAINS; c++) x[c] = vec4(float(gid & 7u) * 0.001 + float(c), 1.0, 2.0, 3.0);
    vec4 m = vec4(p.mul), a = vec4(p.add);
    for (uint i = 0u; i < p.iters; i++) {
        for (uint c = 0u; c < CHAINS; c++) x[c] = fma(x[c], m, a);
        for (uint c = 0u; c < CHAINS; c++) x[c] = fma(x[c], m, a);
        for (uint c = 0u; c < CHAINS; c++) x[c] = fma(x[c], m, a);
        for (uint c = 0u; c < CHAINS; c++) x[c] = fma(x[c], m, a);
    }
    vec4 s = vec4(0.0);
    for (uint c = 0u; c < CHAINS; c++) s += x[c];
    o[gid] = s.x + s.y + s.z + s.w;
}

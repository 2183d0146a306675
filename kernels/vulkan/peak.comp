// The fp32 FMA peak: CHAINS (1..8) independent chains of vec4 fma per invocation, 16 steps per
// loop iteration, so the compiler can neither fold them nor serialise them. Flops per
// invocation: iters * 16 * CHAINS * 4 lanes * 2. The chains are separate variables guarded by the
// specialization constant (folded at pipeline creation) rather than an array, so no compiler
// keeps them in memory. The sum is written out so nothing is dead code.
#version 450
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint CHAINS = 4;
layout(push_constant) uniform P { uint base; uint iters; float mul; float add; } p;
layout(std430, binding = 0) writeonly buffer O { float o[]; };

#define STEP(x) x = fma(x, m, a)
#define CHAIN_STEP                                                                                \
    STEP(x0);                                                                                      \
    if (CHAINS > 1u) STEP(x1);                                                                     \
    if (CHAINS > 2u) STEP(x2);                                                                     \
    if (CHAINS > 3u) STEP(x3);                                                                     \
    if (CHAINS > 4u) STEP(x4);                                                                     \
    if (CHAINS > 5u) STEP(x5);                                                                     \
    if (CHAINS > 6u) STEP(x6);                                                                     \
    if (CHAINS > 7u) STEP(x7)

void main()
{
    uint gid = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    float f = float(gid & 7u) * 0.001;
    vec4 x0 = vec4(f, 1.0, 2.0, 3.0), x1 = x0 + 1.0, x2 = x0 + 2.0, x3 = x0 + 3.0;
    vec4 x4 = x0 + 4.0, x5 = x0 + 5.0, x6 = x0 + 6.0, x7 = x0 + 7.0;
    vec4 m = vec4(p.mul), a = vec4(p.add);
    for (uint i = 0u; i < p.iters; i++) {
        CHAIN_STEP; CHAIN_STEP; CHAIN_STEP; CHAIN_STEP;
        CHAIN_STEP; CHAIN_STEP; CHAIN_STEP; CHAIN_STEP;
        CHAIN_STEP; CHAIN_STEP; CHAIN_STEP; CHAIN_STEP;
        CHAIN_STEP; CHAIN_STEP; CHAIN_STEP; CHAIN_STEP;
    }
    vec4 s = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;
    o[gid] = s.x + s.y + s.z + s.w;
}

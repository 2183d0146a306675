// Causal softmax backward, one invocation per row of length seq (t = row % seq):
// ds = scale * p * (dp - sum_{k<=t} p_k dp_k) for j <= t, 0 beyond. ds may be dp.
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint rows; uint seq; float scale; } p;
layout(std430, binding = 0) readonly buffer Pr { float pr[]; };
layout(std430, binding = 1) readonly buffer DP { float dp[]; };
layout(std430, binding = 2) writeonly buffer DS { float ds[]; };
void main()
{
    uint row = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (row >= p.rows) return;
    uint t = row % p.seq, o = row * p.seq;
    float dot = 0.0;
    for (uint j = 0u; j <= t; j++) dot += pr[o + j] * dp[o + j];
    for (uint j = 0u; j <= t; j++) ds[o + j] = p.scale * pr[o + j] * (dp[o + j] - dot);
    for (uint j = t + 1u; j < p.seq; j++) ds[o + j] = 0.0;
}

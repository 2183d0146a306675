// Causal softmax over rows of length seq, one invocation per row: row index % seq = t keeps
// columns 0..t, p = softmax(scale * s) there and 0 beyond. p may be s.
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint rows; uint seq; float scale; } p;
layout(std430, binding = 0) readonly buffer S { float s[]; };
layout(std430, binding = 1) writeonly buffer Pr { float pr[]; };
void main()
{
    uint row = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (row >= p.rows) return;
    uint t = row % p.seq, o = row * p.seq;
    float mx = p.scale * s[o];
    for (uint j = 1u; j <= t; j++) mx = max(mx, p.scale * s[o + j]);
    float sum = 0.0;
    for (uint j = 0u; j <= t; j++) sum += exp(p.scale * s[o + j] - mx);
    float inv = 1.0 / sum;
    // The exponentials again rather than stored and reread: writeonly p may alias s.
    for (uint j = 0u; j <= t; j++) pr[o + j] = exp(p.scale * s[o + j] - mx) * inv;
    for (uint j = t + 1u; j < p.seq; j++) pr[o + j] = 0.0;
}

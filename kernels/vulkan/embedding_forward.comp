// out[n,c] = wte[tokens[n],c] + wpe[n % seq,c], one invocation per element of out. A token
// outside [0, vocab) reads as a zero row.
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint total; uint seq; uint cols; uint vocab; } p;
layout(std430, binding = 0) readonly buffer T { int tokens[]; };
layout(std430, binding = 1) readonly buffer WTE { float wte[]; };
layout(std430, binding = 2) readonly buffer WPE { float wpe[]; };
layout(std430, binding = 3) writeonly buffer O { float o[]; };
void main()
{
    uint i = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i >= p.total) return;
    uint n = i / p.cols, c = i % p.cols;
    int tok = tokens[n];
    float te = tok >= 0 && uint(tok) < p.vocab ? wte[uint(tok) * p.cols + c] : 0.0;
    o[i] = te + wpe[(n % p.seq) * p.cols + c];
}

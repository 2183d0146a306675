// dwte[tokens[n],c] += dout[n,c] for n in order, one invocation per column c: no two invocations
// touch the same element and every sum has a fixed order, so no atomics and the same bits on every
// run. Tokens outside [0, vocab) contribute nothing.
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint ntok; uint cols; uint vocab; } p;
layout(std430, binding = 0) readonly buffer T { int tokens[]; };
layout(std430, binding = 1) readonly buffer DO { float dout[]; };
layout(std430, binding = 2) buffer DWTE { float dwte[]; };
void main()
{
    uint c = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (c >= p.cols) return;
    for (uint n = 0u; n < p.ntok; n++) {
        int tok = tokens[n];
        if (tok >= 0 && uint(tok) < p.vocab) dwte[uint(tok) * p.cols + c] += dout[n * p.cols + c];
    }
}

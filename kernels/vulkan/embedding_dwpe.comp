// dwpe[t,c] += dout[b*seq + t,c] for b in order, one invocation per element of dwpe[seq,cols].
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint batch; uint seq; uint cols; } p;
layout(std430, binding = 0) readonly buffer DO { float dout[]; };
layout(std430, binding = 1) buffer DWPE { float dwpe[]; };
void main()
{
    uint i = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    uint per = p.seq * p.cols;
    if (i >= per) return;
    float acc = dwpe[i];
    for (uint b = 0u; b < p.batch; b++) acc += dout[b * per + i];
    dwpe[i] = acc;
}

// y[rows,cols] += bias[cols]; one invocation per element of y (n = rows * cols).
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint n; uint cols; } p;
layout(std430, binding = 0) buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer Bias { float bias[]; };
void main()
{
    uint i = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i < p.n) y[i] += bias[i % p.cols];
}

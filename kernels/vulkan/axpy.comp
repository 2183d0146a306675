// y[n] += alpha * x[n]
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint n; float alpha; } p;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) buffer Y { float y[]; };
void main()
{
    uint i = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i < p.n) y[i] += p.alpha * x[i];
}

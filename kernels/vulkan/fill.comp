// x[n] = value
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint n; float value; } p;
layout(std430, binding = 0) writeonly buffer X { float x[]; };
void main()
{
    uint i = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i < p.n) x[i] = p.value;
}

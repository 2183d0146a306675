// y[n] = act(x[n]); y may be x (then both bindings name the same buffer).
#version 450
#extension GL_GOOGLE_include_directive : require
#include "act.glsl"
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint n; uint act; } p;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer Y { float y[]; };
void main()
{
    uint i = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i < p.n) y[i] = act_f(p.act, x[i]);
}

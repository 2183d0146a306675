// dx[n] = dy[n] * act'(x[n]); dx may be dy.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "act.glsl"
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint n; uint act; } p;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer DY { float dy[]; };
layout(std430, binding = 2) writeonly buffer DX { float dx[]; };
void main()
{
    uint i = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i < p.n) dx[i] = dy[i] * act_df(p.act, x[i]);
}

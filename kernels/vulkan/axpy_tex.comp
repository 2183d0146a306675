// y[n] += alpha * x[n]; x and y read as texels (xt, yt), y written through ys.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "vec4.glsl"
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint n; float alpha; } p;
layout(binding = 0) uniform samplerBuffer xt;
layout(binding = 1) uniform samplerBuffer yt;
layout(std430, binding = 2) writeonly buffer Y { vec4 ys[]; };
void main()
{
    uint i = VEC4_INDEX();
    if (4u * i >= p.n) return;
    vec4 r = texelFetch(yt, int(i)) + p.alpha * texelFetch(xt, int(i));
    STORE4(ys, i, p.n, r)
}

// x[n] *= alpha; x read as texels (xt), written through xs.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "vec4.glsl"
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint n; float alpha; } p;
layout(binding = 0) uniform samplerBuffer xt;
layout(std430, binding = 1) writeonly buffer X { vec4 xs[]; };
void main()
{
    uint i = VEC4_INDEX();
    if (4u * i >= p.n) return;
    vec4 r = p.alpha * texelFetch(xt, int(i));
    STORE4(xs, i, p.n, r)
}

// x[n] = value, four elements per invocation (vec4 stores, masked tail).
#version 450
#extension GL_GOOGLE_include_directive : require
#include "vec4.glsl"
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint n; float value; } p;
layout(std430, binding = 0) writeonly buffer X { vec4 x[]; };
void main()
{
    uint i = VEC4_INDEX();
    if (4u * i >= p.n) return;
    vec4 r = vec4(p.value);
    STORE4(x, i, p.n, r)
}

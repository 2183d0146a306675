// y[n] = act(x[n]); x read as texels; y may be x.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "act.glsl"
#include "vec4.glsl"
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint n; uint act; } p;
// The activation is a specialization constant (one pipeline each): llvmpipe runs both sides of
// every branch under a mask, so a run-time choice would cost every activation's exp and tanh.
layout(constant_id = 1) const uint ACT = 0u;
layout(binding = 0) uniform samplerBuffer xt;
layout(std430, binding = 1) writeonly buffer Y { vec4 y[]; };
void main()
{
    uint i = VEC4_INDEX();
    if (4u * i >= p.n) return;
    vec4 r = act_f4(ACT, texelFetch(xt, int(i)));
    STORE4(y, i, p.n, r)
}

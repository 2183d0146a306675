// dx[n] = dy[n] * act'(x[n]); x and dy read as texels; dx may be dy.
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
layout(binding = 1) uniform samplerBuffer dyt;
layout(std430, binding = 2) writeonly buffer DX { vec4 dx[]; };
void main()
{
    uint i = VEC4_INDEX();
    if (4u * i >= p.n) return;
    vec4 r = texelFetch(dyt, int(i)) * act_df4(ACT, texelFetch(xt, int(i)));
    STORE4(dx, i, p.n, r)
}

// SGD as sgd.comp, four elements per invocation: param, grad and mom read as texels, param and mom
// written through storage buffers. Without momentum the host binds param in mom's slots.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "vec4.glsl"
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint n; uint has_momentum; float lr; float momentum; float wd; } p;
layout(binding = 0) uniform samplerBuffer pt;
layout(binding = 1) uniform samplerBuffer gt;
layout(binding = 2) uniform samplerBuffer mt;
layout(std430, binding = 3) writeonly buffer Param { vec4 param[]; };
layout(std430, binding = 4) writeonly buffer Mom { vec4 mom[]; };
void main()
{
    uint i = VEC4_INDEX();
    if (4u * i >= p.n) return;
    vec4 w = texelFetch(pt, int(i));
    vec4 d = texelFetch(gt, int(i)) + p.wd * w;
    if (p.has_momentum != 0u) {
        d = p.momentum * texelFetch(mt, int(i)) + d;
        STORE4(mom, i, p.n, d)
    }
    vec4 r = w - p.lr * d;
    STORE4(param, i, p.n, r)
}

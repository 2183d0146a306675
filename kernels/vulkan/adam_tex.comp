// Adam or AdamW as adam.comp, four elements per invocation: param, grad, m and v read as texels, param, m
// and v written through storage buffers.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "vec4.glsl"
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P {
    uint base; uint n; float lr; float b1; float b2; float eps; float wd; float bc1; float bc2;
    uint decoupled;
} p;
layout(binding = 0) uniform samplerBuffer pt;
layout(binding = 1) uniform samplerBuffer gt;
layout(binding = 2) uniform samplerBuffer mt;
layout(binding = 3) uniform samplerBuffer vt;
layout(std430, binding = 4) writeonly buffer Param { vec4 param[]; };
layout(std430, binding = 5) writeonly buffer M { vec4 m[]; };
layout(std430, binding = 6) writeonly buffer V { vec4 v[]; };
void main()
{
    uint i = VEC4_INDEX();
    if (4u * i >= p.n) return;
    vec4 w = texelFetch(pt, int(i));
    vec4 g = texelFetch(gt, int(i));
    if (p.decoupled != 0u)
        w *= 1.0 - p.lr * p.wd;
    else
        g += p.wd * w;
    vec4 mi = p.b1 * texelFetch(mt, int(i)) + (1.0 - p.b1) * g;
    vec4 vi = p.b2 * texelFetch(vt, int(i)) + (1.0 - p.b2) * g * g;
    STORE4(m, i, p.n, mi)
    STORE4(v, i, p.n, vi)
    vec4 r = w - (p.lr / p.bc1) * mi / (sqrt(vi) / sqrt(p.bc2) + p.eps);
    STORE4(param, i, p.n, r)
}

// The exact GELU's backward from its output as well: dx[n] = dy[n] * (Phi(x) + x phi(x)) with
// Phi(x) = y / x (0.5 where |x| < 2^-60, where it rounds to that), so erf is not computed again;
// dx may be dy.
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint n; } p;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Y { float y[]; };
layout(std430, binding = 2) readonly buffer DY { float dy[]; };
layout(std430, binding = 3) writeonly buffer DX { float dx[]; };
const float INV_SQRT2PI = 0.39894228040143268;
void main()
{
    uint i = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i >= p.n) return;
    float v = x[i];
    float cdf = abs(v) < 1.0 / 1152921504606846976.0 ? 0.5 : y[i] / v;
    dx[i] = dy[i] * (cdf + v * exp(-0.5 * v * v) * INV_SQRT2PI);
}

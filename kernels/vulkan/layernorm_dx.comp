// Layer norm backward, input gradient, one invocation per row:
// dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), dnorm = weight * dy. dx may be dy.
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint rows; uint cols; } p;
layout(std430, binding = 0) readonly buffer DY { float dy[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) readonly buffer Mean { float mean[]; };
layout(std430, binding = 3) readonly buffer Rstd { float rstd[]; };
layout(std430, binding = 4) readonly buffer W { float w[]; };
layout(std430, binding = 5) writeonly buffer DX { float dx[]; };
void main()
{
    uint r = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (r >= p.rows) return;
    uint o = r * p.cols;
    float mu = mean[r], rs = rstd[r];
    float a = 0.0, bsum = 0.0;
    for (uint c = 0u; c < p.cols; c++) {
        float dn = w[c] * dy[o + c];
        a += dn;
        bsum += dn * ((x[o + c] - mu) * rs);
    }
    a /= float(p.cols);
    bsum /= float(p.cols);
    for (uint c = 0u; c < p.cols; c++) {
        float norm = (x[o + c] - mu) * rs;
        dx[o + c] = (w[c] * dy[o + c] - a - norm * bsum) * rs;
    }
}

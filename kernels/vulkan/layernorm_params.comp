// Layer norm backward, parameter gradients: dweight[c] += sum_r dy * norm, dbias[c] += sum_r dy,
// one invocation per column with rows in order (no atomics: the same bits on every run). Runs
// before layernorm_dx, which may overwrite dy.
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint rows; uint cols; } p;
layout(std430, binding = 0) readonly buffer DY { float dy[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) readonly buffer Mean { float mean[]; };
layout(std430, binding = 3) readonly buffer Rstd { float rstd[]; };
layout(std430, binding = 4) buffer DW { float dw[]; };
layout(std430, binding = 5) buffer DB { float db[]; };
void main()
{
    uint c = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (c >= p.cols) return;
    float sw = 0.0, sb = 0.0;
    for (uint r = 0u; r < p.rows; r++) {
        float g = dy[r * p.cols + c];
        sw += g * ((x[r * p.cols + c] - mean[r]) * rstd[r]);
        sb += g;
    }
    dw[c] += sw;
    db[c] += sb;
}

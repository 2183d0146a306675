// Layer norm forward (PyTorch's nn.LayerNorm, eps 1e-5, biased variance), one invocation per row
// of x[rows,cols]: mean, then the variance about it, in column order as the C reference sums.
// y may be x (then both bindings name the same buffer).
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint rows; uint cols; } p;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { float w[]; };
layout(std430, binding = 2) readonly buffer B { float b[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };
layout(std430, binding = 4) writeonly buffer Mean { float mean[]; };
layout(std430, binding = 5) writeonly buffer Rstd { float rstd[]; };
void main()
{
    uint r = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (r >= p.rows) return;
    uint o = r * p.cols;
    float s = 0.0;
    for (uint c = 0u; c < p.cols; c++) s += x[o + c];
    float mu = s / float(p.cols);
    float v = 0.0;
    for (uint c = 0u; c < p.cols; c++) {
        float d = x[o + c] - mu;
        v += d * d;
    }
    float rs = 1.0 / sqrt(v / float(p.cols) + 1e-5);
    for (uint c = 0u; c < p.cols; c++) y[o + c] = (x[o + c] - mu) * rs * w[c] + b[c];
    mean[r] = mu;
    rstd[r] = rs;
}

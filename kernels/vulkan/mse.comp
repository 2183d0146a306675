// Mean-squared error, one invocation per row of pred[rows,cols]:
// loss[r] = sum_c (pred - target)^2 / cols; dpred = scale * 2 * (pred - target) / cols.
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint rows; uint cols; float scale; } p;
layout(std430, binding = 0) readonly buffer Pr { float pred[]; };
layout(std430, binding = 1) readonly buffer T { float target[]; };
layout(std430, binding = 2) writeonly buffer Loss { float loss[]; };
layout(std430, binding = 3) writeonly buffer D { float dpred[]; };
void main()
{
    uint r = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (r >= p.rows) return;
    float inv = 1.0 / float(p.cols);
    float s = 0.0;
    for (uint c = 0u; c < p.cols; c++) {
        uint i = r * p.cols + c;
        float d = pred[i] - target[i];
        s += d * d;
        dpred[i] = p.scale * 2.0 * d * inv;
    }
    loss[r] = s * inv;
}

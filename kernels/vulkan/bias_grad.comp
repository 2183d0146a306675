// dbias[cols] = beta * dbias + sum over rows of dy[rows,cols]; one invocation per column, so
// neighbouring invocations read neighbouring addresses and no shared memory or subgroup is needed.
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint rows; uint cols; float beta; } p;
layout(std430, binding = 0) readonly buffer DY { float dy[]; };
layout(std430, binding = 1) buffer DB { float db[]; };
void main()
{
    uint c = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (c >= p.cols) return;
    float s = 0.0;
    for (uint r = 0u; r < p.rows; r++) s += dy[r * p.cols + c];
    db[c] = (p.beta == 0.0 ? 0.0 : db[c]) + s;
}

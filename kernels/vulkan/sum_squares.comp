// One pass of the sum of squares: work-group g of `groups` writes out[at + g] = the sum, over its
// invocations, of (square ? x^2 : x) for the elements i = id, id + groups * size, ..., added up by
// a tree in shared memory that halves the active count each step (any work-group size; no
// subgroup operations, so no subgroup size is assumed). The shape depends only on n, groups and
// the work-group size, never on scheduling: the same bits on every run.
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint n; uint square; uint groups; uint at; } p;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) writeonly buffer O { float o[]; };
shared float acc[gl_WorkGroupSize.x];
void main()
{
    uint g = p.base + gl_WorkGroupID.x, lid = gl_LocalInvocationID.x;
    uint stride = p.groups * gl_WorkGroupSize.x;
    float s = 0.0;
    for (uint i = g * gl_WorkGroupSize.x + lid; i < p.n; i += stride) {
        float v = x[i];
        s += p.square != 0u ? v * v : v;
    }
    acc[lid] = s;
    barrier();
    for (uint w = gl_WorkGroupSize.x; w > 1u;) {
        uint h = (w + 1u) / 2u;
        if (lid < w - h) acc[lid] += acc[lid + h];
        barrier();
        w = h;
    }
    if (lid == 0u) o[p.at + g] = acc[0];
}

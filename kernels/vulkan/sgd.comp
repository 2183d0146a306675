// SGD with momentum and weight decay (PyTorch, dampening 0, no Nesterov):
// g = grad + wd * p; buf = momentum * buf + g; p -= lr * (momentum ? buf : g).
// Without momentum the host binds param as the (unused) momentum buffer.
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint n; uint has_momentum; float lr; float momentum; float wd; } p;
layout(std430, binding = 0) buffer Param { float param[]; };
layout(std430, binding = 1) readonly buffer Grad { float grad[]; };
layout(std430, binding = 2) buffer Mom { float mom[]; };
void main()
{
    uint i = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i >= p.n) return;
    float w = param[i];
    float d = grad[i] + p.wd * w;
    if (p.has_momentum != 0u) {
        d = p.momentum * mom[i] + d;
        mom[i] = d;
    }
    param[i] = w - p.lr * d;
}

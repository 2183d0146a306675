// Adam (PyTorch, L2 weight decay added to the gradient), or with `decoupled` AdamW (PyTorch's
// torch.optim.AdamW: p *= 1 - lr wd, the gradient left alone); bc1 = 1 - b1^t, bc2 = 1 - b2^t:
// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps).
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P {
    uint base; uint n; float lr; float b1; float b2; float eps; float wd; float bc1; float bc2;
    uint decoupled;
} p;
layout(std430, binding = 0) buffer Param { float param[]; };
layout(std430, binding = 1) readonly buffer Grad { float grad[]; };
layout(std430, binding = 2) buffer M { float m[]; };
layout(std430, binding = 3) buffer V { float v[]; };
void main()
{
    uint i = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i >= p.n) return;
    float w = param[i];
    float g = grad[i];
    if (p.decoupled != 0u)
        w *= 1.0 - p.lr * p.wd;
    else
        g += p.wd * w;
    float mi = p.b1 * m[i] + (1.0 - p.b1) * g;
    float vi = p.b2 * v[i] + (1.0 - p.b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = w - (p.lr / p.bc1) * mi / (sqrt(vi) / sqrt(p.bc2) + p.eps);
}

// Softmax cross-entropy, one invocation per row of logits[rows,classes] with int32 labels[rows]:
// loss[r] = logsumexp(logits[r,:]) - logits[r,label]; dlogits = scale * (softmax - onehot).
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint rows; uint classes; float scale; } p;
layout(std430, binding = 0) readonly buffer L { float logits[]; };
layout(std430, binding = 1) readonly buffer Y { int labels[]; };
layout(std430, binding = 2) writeonly buffer Loss { float loss[]; };
layout(std430, binding = 3) writeonly buffer D { float dlogits[]; };
void main()
{
    uint r = (p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (r >= p.rows) return;
    uint o = r * p.classes;
    float mx = logits[o];
    for (uint c = 1u; c < p.classes; c++) mx = max(mx, logits[o + c]);
    float sum = 0.0;
    for (uint c = 0u; c < p.classes; c++) sum += exp(logits[o + c] - mx);
    float lse = mx + log(sum);
    int y = labels[r];
    loss[r] = lse - logits[o + uint(y)];
    for (uint c = 0u; c < p.classes; c++)
        dlogits[o + c] = p.scale * (exp(logits[o + c] - lse) - (int(c) == y ? 1.0 : 0.0));
}

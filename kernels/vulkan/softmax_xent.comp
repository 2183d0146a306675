// Softmax cross-entropy, one work-group per row of logits[rows,classes] with int32 labels[rows]:
// loss[r] = logsumexp(logits[r,:]) - logits[r,label]; dlogits = scale * (softmax - onehot).
// The group's invocations take columns i, i + size, i + 2 size, ... and combine their maxima and
// sums by a tree in shared memory, in a fixed order (the same bits on every run). A row per group
// rather than per invocation also keeps each invocation's loops short: lavapipe ends any
// invocation after 65535 loop iterations in all, which cut rows of over 32768 classes short
// (GPT-2's 50257).
#version 450
layout(local_size_x_id = 0) in;
layout(push_constant) uniform P { uint base; uint rows; uint classes; float scale; } p;
layout(std430, binding = 0) readonly buffer L { float logits[]; };
layout(std430, binding = 1) readonly buffer Y { int labels[]; };
layout(std430, binding = 2) writeonly buffer Loss { float loss[]; };
layout(std430, binding = 3) writeonly buffer D { float dlogits[]; };
shared float red[gl_WorkGroupSize.x];

// Combines every invocation's v (by max, or by sum) and gives the result to all. The group size
// need not be a power of two: the part above the largest power of two, top, is folded in first.
float combine(float v, bool take_max)
{
    uint i = gl_LocalInvocationID.x, n = gl_WorkGroupSize.x, top = 1u;
    while (top * 2u <= n) top *= 2u;
    red[i] = v;
    barrier();
    if (i + top < n) red[i] = take_max ? max(red[i], red[i + top]) : red[i] + red[i + top];
    barrier();
    for (uint s = top / 2u; s > 0u; s >>= 1u) {
        if (i < s) red[i] = take_max ? max(red[i], red[i + s]) : red[i] + red[i + s];
        barrier();
    }
    float r = red[0];
    barrier(); // red is written again by the next call
    return r;
}

void main()
{
    uint r = p.base + gl_WorkGroupID.x;
    if (r >= p.rows) return; // the whole group: one row per group
    uint o = r * p.classes, i = gl_LocalInvocationID.x, n = gl_WorkGroupSize.x;
    float mx = -3.402823466e38;
    for (uint c = i; c < p.classes; c += n) mx = max(mx, logits[o + c]);
    mx = combine(mx, true);
    float sum = 0.0;
    for (uint c = i; c < p.classes; c += n) sum += exp(logits[o + c] - mx);
    float lse = mx + log(combine(sum, false));
    int y = labels[r];
    if (i == 0u) loss[r] = lse - logits[o + uint(y)];
    for (uint c = i; c < p.classes; c += n)
        dlogits[o + c] = p.scale * (exp(logits[o + c] - lse) - (int(c) == y ? 1.0 : 0.0));
}

// Activations and their derivatives, shared by act_forward.comp and act_backward.comp.
// Codes follow enum sl_activation: 0 relu, 1 tanh, 2 sigmoid, 3 gelu (PyTorch's tanh form).
const float GELU_K = 0.7978845608028654;
const float GELU_C = 0.044715;

// tanh through exp can overflow to inf/inf = NaN for large |x| on some drivers; fp32 tanh is
// exactly +-1 beyond |x| = 10, so clamping keeps the value and avoids the NaN.
float safe_tanh(float x)
{
    return tanh(clamp(x, -10.0, 10.0));
}

float act_f(uint act, float x)
{
    if (act == 0u) return x > 0.0 ? x : 0.0;
    if (act == 1u) return safe_tanh(x);
    if (act == 2u) return 1.0 / (1.0 + exp(-x));
    return 0.5 * x * (1.0 + safe_tanh(GELU_K * (x + GELU_C * x * x * x)));
}

float act_df(uint act, float x)
{
    if (act == 0u) return x > 0.0 ? 1.0 : 0.0;
    if (act == 1u) {
        float t = safe_tanh(x);
        return 1.0 - t * t;
    }
    if (act == 2u) {
        float s = 1.0 / (1.0 + exp(-x));
        return s * (1.0 - s);
    }
    float t = safe_tanh(GELU_K * (x + GELU_C * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_K * (1.0 + 3.0 * GELU_C * x * x);
}

vec4 act_f4(uint act, vec4 x)
{
    return vec4(act_f(act, x.x), act_f(act, x.y), act_f(act, x.z), act_f(act, x.w));
}

vec4 act_df4(uint act, vec4 x)
{
    return vec4(act_df(act, x.x), act_df(act, x.y), act_df(act, x.z), act_df(act, x.w));
}
